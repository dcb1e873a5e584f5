//! How a stage function runs: one trait for the handler, one runner for its binary.
//!
//! Each function crate implements [`Function`] over the task envelope. Its binary calls
//! [`run_binary`], which serves the AWS Lambda Runtime API through `lambda_runtime` when
//! `AWS_LAMBDA_RUNTIME_API` is set (AWS, the dispatcher's runtime shim, `cargo lambda
//! watch`), and otherwise runs one event read from a file argument or stdin, printing
//! the output as JSON — handy for debugging a single task by hand.

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use async_trait::async_trait;
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};

use crate::error::TaskError;
use crate::task::{HandlerOutput, TaskEnvelope};

/// A stateless stage handler. Clients (pool, S3) are built once and shared by calls.
#[async_trait]
pub trait Function: Send + Sync + 'static {
    /// The function's name: the first segment of the task kinds it serves.
    fn name(&self) -> &'static str;

    /// Handles one task. Must be idempotent: the same envelope may arrive many times.
    async fn handle(&self, task: TaskEnvelope) -> Result<HandlerOutput, TaskError>;

    /// The JSON boundary every invoker goes through, so all of them see the same thing.
    async fn invoke_json(&self, event: serde_json::Value) -> Result<serde_json::Value, TaskError> {
        invoke_envelope(self, event).await
    }
}

/// What [`Function::invoke_json`] does by default: parse the event as an envelope,
/// check it is for this function, handle it, serialise the output. A function that
/// also accepts another event shape (the prune function takes a bare scheduled event)
/// converts it and calls this.
pub async fn invoke_envelope<F: Function + ?Sized>(
    function: &F,
    event: serde_json::Value,
) -> Result<serde_json::Value, TaskError> {
    let bytes = serde_json::to_vec(&event).map_err(|e| {
        TaskError::permanent("event.invalid", format!("event does not serialise: {e}"))
    })?;
    let task = TaskEnvelope::parse(&bytes)?;
    if task.function() != Some(function.name()) {
        return Err(TaskError::permanent(
            "event.wrong_function",
            format!(
                "task {} of kind {:?} was sent to function {:?}",
                task.id,
                task.kind,
                function.name()
            ),
        ));
    }
    let output = function.handle(task).await?;
    serde_json::to_value(output).map_err(|e| {
        TaskError::permanent("output.invalid", format!("output does not serialise: {e}"))
    })
}

#[derive(Debug)]
struct LambdaError(TaskError);

impl From<LambdaError> for Diagnostic {
    fn from(e: LambdaError) -> Self {
        Diagnostic {
            error_type: e.0.lambda_error_type(),
            error_message: e.0.lambda_error_message(),
        }
    }
}

/// Runs a function binary: under the Lambda Runtime API when `AWS_LAMBDA_RUNTIME_API`
/// is set, else once over the event in `args[1]` (a file, `-` for stdin).
///
/// `build` constructs the function (config, clients); its error is printed as one line.
pub async fn run_binary<F, B, Fut>(build: B) -> ExitCode
where
    F: Function,
    B: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<F>>,
{
    crate::telemetry::init();
    let function = match build().await {
        Ok(f) => Arc::new(f),
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        let handler = service_fn(move |event: LambdaEvent<serde_json::Value>| {
            let function = Arc::clone(&function);
            async move {
                function
                    .invoke_json(event.payload)
                    .await
                    .map_err(LambdaError)
            }
        });
        return match lambda_runtime::run(handler).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: lambda runtime: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let source = std::env::args().nth(1).unwrap_or_else(|| "-".to_owned());
    let raw = if source == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).map(|_| buf)
    } else {
        std::fs::read(&source)
    };
    let raw = match raw {
        Ok(raw) => raw,
        Err(e) => {
            eprintln!("error: cannot read event from {source}: {e}");
            return ExitCode::from(2);
        }
    };
    let event = match serde_json::from_slice::<serde_json::Value>(&raw) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: event in {source} is not JSON: {e}");
            return ExitCode::from(2);
        }
    };
    match function.invoke_json(event).await {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The error for a task kind a function does not (yet) serve: permanent, so the
/// dispatcher dead-letters it with this reason instead of retrying forever.
pub fn unsupported_kind(function: &str, task: &TaskEnvelope) -> TaskError {
    TaskError::permanent(
        "kind.unsupported",
        format!(
            "function {function:?} does not serve task kind {:?} (task {})",
            task.kind, task.id
        ),
    )
}

/// Postgres and the archive bucket, both checked to answer: what every stage binary
/// that touches the archive builds at start-up.
pub async fn connect_stores(
    src: &crate::config::ConfigSource,
) -> anyhow::Result<(sqlx::PgPool, crate::storage::ObjectStore)> {
    let db = crate::config::DatabaseConfig::from_source(src)?;
    let s3 = crate::config::S3Config::from_source(src)?;
    let pool = crate::db::connect(&db).await?;
    let store = crate::storage::ObjectStore::connect(&s3).await;
    store.check().await?;
    Ok((pool, store))
}
