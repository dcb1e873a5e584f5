//! The runtime shim running a real function binary (`rainlogs-testkit` in Lambda mode:
//! the same `run_binary` + `lambda_runtime` client as every stage binary) — a success,
//! a handler error and a child that crashes — directly and through the queue.

use rainlogs_integration_tests::dispatch as common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rainlogs_core::{ErrorClass, TaskEnvelope, TaskSpec};
use rainlogs_dispatcher::config::{ShimConfig, ShimFunction};
use rainlogs_dispatcher::invoker::Invoker;
use rainlogs_dispatcher::shim::Shim;
use rainlogs_dispatcher::worker::Worker;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn shim_config() -> ShimConfig {
    ShimConfig {
        functions_dir: PathBuf::from("/nonexistent"),
        functions: vec![ShimFunction {
            name: "testfn".into(),
            binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_rainlogs-testkit"))),
        }],
        instances: 1,
        timeout: Duration::from_secs(20),
    }
}

fn event(kind: &str, payload: serde_json::Value) -> serde_json::Value {
    let env = TaskEnvelope::new(TaskSpec::new("shim", kind, payload), chrono::Utc::now());
    serde_json::to_value(env).unwrap()
}

#[tokio::test]
async fn shim_runs_the_binary_reports_errors_and_restarts_a_crashed_child() {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shim = Shim::start(&shim_config(), stop_rx)
        .await
        .expect("shim starts");

    let ok = shim
        .invoke("testfn", event("testfn.echo", json!({"x": 1})))
        .await
        .expect("success");
    assert_eq!(ok["result"]["echo"], json!({"x": 1}));
    let pid = ok["result"]["pid"].as_u64().unwrap();
    assert_ne!(pid, u64::from(std::process::id()), "ran in a child process");

    let err = shim
        .invoke("testfn", event("testfn.fail", json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        (err.class, err.code.as_str()),
        (ErrorClass::Permanent, "testfn.refused"),
        "{err}"
    );
    let hinted = shim
        .invoke(
            "testfn",
            event("testfn.retry", json!({"retry_after_ms": 1500})),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (hinted.class, hinted.retry_after_ms),
        (ErrorClass::Retryable, Some(1500))
    );

    let crash = shim
        .invoke("testfn", event("testfn.crash", json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        (crash.class, crash.code.as_str()),
        (ErrorClass::Retryable, "function.crashed"),
        "{crash}"
    );

    let again = shim
        .invoke("testfn", event("testfn.echo", json!({"x": 2})))
        .await
        .expect("restarted");
    assert_ne!(
        again["result"]["pid"].as_u64().unwrap(),
        pid,
        "a new child serves after the crash"
    );

    let unknown = shim
        .invoke("nosuch", event("nosuch.run", json!({})))
        .await
        .unwrap_err();
    assert_eq!(unknown.code, "function.unknown");
    let _ = stop_tx.send(true);
}

#[tokio::test]
async fn tasks_flow_through_the_shim_with_retries_and_dead_letters() {
    let r = TestRedis::new().await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shim = Shim::start(&shim_config(), stop_rx)
        .await
        .expect("shim starts");
    let (tx, h) = spawn_worker(Worker::with_config(
        r.queue.clone(),
        Arc::new(shim),
        fast_config("shim", 4),
    ));

    let ok = r
        .queue
        .enqueue(spec("shim", "testfn.echo", json!({})))
        .await
        .unwrap();
    let bad = r
        .queue
        .enqueue(spec("shim", "testfn.fail", json!({})))
        .await
        .unwrap();
    let mut crash = spec("shim", "testfn.crash", json!({}));
    crash.max_attempts = Some(2);
    let crash = r.queue.enqueue(crash).await.unwrap();
    let after = r
        .queue
        .enqueue(spec("shim", "testfn.echo", json!({})))
        .await
        .unwrap();

    wait_for("two done, two dead", WAIT, || async {
        let s = r.queue.stats("shim").await.unwrap();
        (s.processed == 2 && s.depth.dead == 2).then_some(())
    })
    .await;
    let bad_letter = r
        .queue
        .dead_letter("shim", &bad.id.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (bad_letter.attempts, bad_letter.error.code.as_str()),
        (1, "testfn.refused")
    );
    let crash_letter = r
        .queue
        .dead_letter("shim", &crash.id.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (crash_letter.attempts, crash_letter.error.code.as_str()),
        (2, "function.crashed")
    );
    let s = r.queue.stats("shim").await.unwrap();
    assert_eq!(
        s.retried, 1,
        "the crash was retried once before its attempt limit"
    );
    let _ = (ok, after);
    stop(tx, h).await;
    let _ = stop_tx.send(true);
    r.cleanup().await;
}
