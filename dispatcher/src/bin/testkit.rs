//! `rainlogs-testkit`: test support for the dispatcher's own tests (not shipped).
//!
//! - With `AWS_LAMBDA_RUNTIME_API` set it is a function binary like the stage
//!   binaries (same `run_binary`, same `lambda_runtime` client), serving `testfn.*`
//!   kinds, so the runtime shim is tested against a real Lambda runtime client.
//! - Otherwise it runs a dispatcher over `RAINLOGS_*` settings with the same function
//!   in-process until SIGTERM/SIGINT: the child process the kill -9 and graceful
//!   shutdown tests stop.
//!
//! Kinds: `testfn.echo` (returns the payload), `testfn.fail` (permanent error),
//! `testfn.retry` (retryable, payload `retry_after_ms` as hint), `testfn.crash` (aborts
//! the process), `testfn.hang` (never returns), `testfn.sleep` (payload `ms`, then ok).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rainlogs_core::config::{ConfigSource, RedisConfig};
use rainlogs_core::function::{unsupported_kind, Function};
use rainlogs_core::{HandlerOutput, TaskEnvelope, TaskError};
use rainlogs_dispatcher::config::DispatcherConfig;
use rainlogs_dispatcher::invoker::InProcess;
use rainlogs_dispatcher::queue::Queue;
use rainlogs_dispatcher::worker::Worker;

struct TestFn;

#[async_trait]
impl Function for TestFn {
    fn name(&self) -> &'static str {
        "testfn"
    }

    async fn handle(&self, task: TaskEnvelope) -> Result<HandlerOutput, TaskError> {
        let ms = |field: &str| task.payload.get(field).and_then(|v| v.as_u64());
        match task.kind.as_str() {
            "testfn.echo" => Ok(HandlerOutput::done(serde_json::json!({
                "echo": task.payload,
                "attempt": task.attempt,
                "pid": std::process::id(),
            }))),
            "testfn.fail" => Err(TaskError::permanent(
                "testfn.refused",
                format!("task {} refused", task.id),
            )),
            "testfn.retry" => {
                let mut err = TaskError::retryable("testfn.busy", format!("task {} busy", task.id));
                if let Some(after) = ms("retry_after_ms") {
                    err = err.with_retry_after(Duration::from_millis(after));
                }
                Err(err)
            }
            "testfn.crash" => std::process::abort(),
            "testfn.hang" => {
                futures::future::pending::<()>().await;
                unreachable!("pending never resolves")
            }
            "testfn.sleep" => {
                tokio::time::sleep(Duration::from_millis(ms("ms").unwrap_or(100))).await;
                Ok(HandlerOutput::done(
                    serde_json::json!({"slept_ms": ms("ms")}),
                ))
            }
            _ => Err(unsupported_kind("testfn", &task)),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return rainlogs_core::function::run_binary(|| async { Ok(TestFn) }).await;
    }
    rainlogs_core::telemetry::init();
    match dispatch().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A status line on stdout; the reader may be gone, which is no error here.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn dispatch() -> anyhow::Result<()> {
    let src = ConfigSource::from_env()?;
    let cfg = DispatcherConfig::from_source(&src)?;
    let redis = RedisConfig::from_source(&src)?;
    let conn = rainlogs_core::redis_client::connect(&redis).await?;
    let client = redis::Client::open(secrecy::ExposeSecret::expose_secret(&redis.url))?;
    let queue = Queue::new(conn, redis.key_prefix).with_client(client);
    let worker = Worker::with_config(queue, Arc::new(InProcess::new().with(TestFn)), cfg);
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: cannot install SIGTERM handler: {e}");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let _ = tx.send(true);
    });
    // Tests wait for this line before acting on the child (and may stop reading).
    say("testkit dispatcher ready");
    worker.run(rx).await?;
    say("testkit dispatcher stopped");
    Ok(())
}
