//! Dispatcher processes dying and stopping: kill -9 mid-task, SIGTERM with a deadline.
//! The child is `rainlogs-testkit` (a real dispatcher process over the same Redis).

use rainlogs_integration_tests::dispatch as common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// Starts a testkit dispatcher on `queue` and waits until it says it is ready.
fn start_child(r: &TestRedis, queue: &str, extra: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rainlogs-testkit"));
    cmd.env_remove("AWS_LAMBDA_RUNTIME_API")
        .env("RAINLOGS_ENV_FILE", "/dev/null")
        .env("RAINLOGS_QUEUES", format!("{queue}:4"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in r.child_env() {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("testkit starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("child writes a ready line");
    assert_eq!(line.trim(), "testkit dispatcher ready");
    child
}

#[tokio::test]
async fn a_task_held_by_a_killed_dispatcher_is_redelivered_and_completes_once() {
    let r = TestRedis::new().await;
    let mut child = start_child(
        &r,
        "kill",
        &[
            ("RAINLOGS_LEASE_MS", "1000"),
            ("RAINLOGS_HEARTBEAT_MS", "200"),
        ],
    );
    // The child's handler for t.gate does not exist: use testfn.hang there, which
    // never returns. The task is routed by kind, so enqueue the hang kind, then let
    // our own worker (with a function serving testfn) finish it after the kill.
    let env = r
        .queue
        .enqueue(spec("kill", "testfn.hang", json!({})))
        .await
        .unwrap();
    wait_for("child holds the task", WAIT, || async {
        (r.queue.stats("kill").await.unwrap().depth.active == 1).then_some(())
    })
    .await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    // A surviving dispatcher whose `testfn` completes the task.
    let rec = Recorder::new("survivor");
    let survivor = rainlogs_dispatcher::worker::Worker::with_config(
        r.queue.clone(),
        std::sync::Arc::new(
            rainlogs_dispatcher::invoker::InProcess::new().with(Completer(rec.clone())),
        ),
        fast_config("kill", 4),
    );
    let (tx, h) = spawn_worker(survivor);
    wait_for("redelivered and done", WAIT, || async {
        (r.queue.stats("kill").await.unwrap().processed == 1).then_some(())
    })
    .await;
    stop(tx, h).await;
    let starts = rec.starts();
    assert_eq!(starts.len(), 1, "completed once");
    assert_eq!(
        (starts[0].id, starts[0].attempt),
        (env.id, 2),
        "the dead holder's attempt counted"
    );
    let s = r.queue.stats("kill").await.unwrap();
    assert_eq!(
        (s.depth.ready, s.depth.active, s.depth.delayed, s.depth.dead),
        (0, 0, 0, 0)
    );
    r.cleanup().await;
}

/// Serves `testfn.*` in the test process by recording and succeeding.
struct Completer(Recorder);

#[async_trait::async_trait]
impl rainlogs_core::function::Function for Completer {
    fn name(&self) -> &'static str {
        "testfn"
    }
    async fn handle(
        &self,
        mut task: rainlogs_core::TaskEnvelope,
    ) -> Result<rainlogs_core::HandlerOutput, rainlogs_core::TaskError> {
        task.kind = "t.ok".into();
        self.0.handle(task).await
    }
}

#[tokio::test]
async fn sigterm_finishes_the_task_in_hand_then_exits_cleanly() {
    let r = TestRedis::new().await;
    let mut child = start_child(&r, "term", &[("RAINLOGS_SHUTDOWN_GRACE_MS", "20000")]);
    r.queue
        .enqueue(spec("term", "testfn.sleep", json!({"ms": 600})))
        .await
        .unwrap();
    wait_for("child running the task", WAIT, || async {
        (r.queue.stats("term").await.unwrap().depth.active == 1).then_some(())
    })
    .await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "clean exit after SIGTERM: {exit}");
    let s = r.queue.stats("term").await.unwrap();
    assert_eq!(
        (s.processed, s.depth.active, s.depth.ready),
        (1, 0, 0),
        "finished, not abandoned"
    );
    r.cleanup().await;
}

#[tokio::test]
async fn sigterm_past_the_deadline_hands_the_task_back() {
    let r = TestRedis::new().await;
    let mut child = start_child(&r, "term2", &[("RAINLOGS_SHUTDOWN_GRACE_MS", "100")]);
    let env = r
        .queue
        .enqueue(spec("term2", "testfn.hang", json!({})))
        .await
        .unwrap();
    wait_for("child running the task", WAIT, || async {
        (r.queue.stats("term2").await.unwrap().depth.active == 1).then_some(())
    })
    .await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit}");
    let got = r
        .queue
        .reserve("term2", 1, Duration::from_secs(5))
        .await
        .unwrap();
    let back = got.deliveries[0].envelope.as_ref().unwrap();
    assert_eq!(
        (back.id, back.attempt),
        (env.id, 1),
        "handed back at once, attempt not spent"
    );
    r.cleanup().await;
}
