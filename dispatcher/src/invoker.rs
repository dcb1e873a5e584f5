//! How a task reaches its function.
//!
//! Every invoker takes the function's name and the event (the task envelope as JSON)
//! and returns the function's JSON output or its [`TaskError`]; a handler therefore
//! sees the same event whichever invoker runs it. The walking skeleton has the
//! in-process invoker; the runtime shim and the remote Lambda invoker plug in here.

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use async_trait::async_trait;
use futures::FutureExt;
use rainlogs_core::function::Function;
use rainlogs_core::TaskError;

/// Delivers an event to a named function.
#[async_trait]
pub trait Invoker: Send + Sync {
    async fn invoke(
        &self,
        function: &str,
        event: serde_json::Value,
    ) -> Result<serde_json::Value, TaskError>;

    /// The functions this invoker can reach.
    fn functions(&self) -> Vec<String>;
}

/// Calls handler libraries linked into this process.
#[derive(Default, Clone)]
pub struct InProcess {
    functions: BTreeMap<&'static str, Arc<dyn Function>>,
}

impl InProcess {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a function under its own name.
    pub fn with(mut self, function: impl Function) -> Self {
        self.functions.insert(function.name(), Arc::new(function));
        self
    }
}

#[async_trait]
impl Invoker for InProcess {
    async fn invoke(
        &self,
        function: &str,
        event: serde_json::Value,
    ) -> Result<serde_json::Value, TaskError> {
        let Some(f) = self.functions.get(function) else {
            return Err(TaskError::permanent(
                "function.unknown",
                format!(
                    "no function {function:?} in this dispatcher (has: {})",
                    self.functions().join(", ")
                ),
            ));
        };
        settle_panic(function, f.invoke_json(event)).await
    }

    fn functions(&self) -> Vec<String> {
        self.functions.keys().map(|k| (*k).to_owned()).collect()
    }
}

/// The longest panic message kept in a [`TaskError`] (a dead letter is no place for a
/// whole dump).
const PANIC_MESSAGE_MAX: usize = 500;

/// Runs an invocation and turns a panic in it into a retryable `function.panicked`
/// failure carrying the panic message, so the worker settles it like any failure: the
/// lease ends, the idempotency key is released, the task is retried or dead-lettered.
/// Without this a panic would end the worker's task silently while the heartbeat kept
/// the lease (and the window's dedup key) alive until the process restarted.
///
/// Retryable because a panic is a bug or a broken invariant in our code, not a verdict
/// on the input: a few attempts cost little, and the attempt limit still dead-letters
/// a task that panics every time, with the message as its reason.
pub async fn settle_panic<F>(function: &str, invocation: F) -> Result<serde_json::Value, TaskError>
where
    F: Future<Output = Result<serde_json::Value, TaskError>>,
{
    match AssertUnwindSafe(invocation).catch_unwind().await {
        Ok(result) => result,
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            tracing::error!(function, panic = %message, "handler panicked; settled as a retryable failure");
            Err(TaskError::retryable(
                "function.panicked",
                format!("function {function:?} panicked: {message}"),
            ))
        }
    }
}

/// The text of a panic payload (`panic!("…")` gives `&str` or `String`), shortened.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic payload that is not a string)".to_owned()
    };
    if text.len() <= PANIC_MESSAGE_MAX {
        return text;
    }
    let mut end = PANIC_MESSAGE_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_a_retryable_error_with_its_message() {
        let err = settle_panic("t", async { panic!("boom at window {}", 7) })
            .await
            .unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(err.code, "function.panicked");
        assert!(err.message.contains("boom at window 7"), "{err}");
    }

    #[test]
    fn long_panic_messages_are_shortened_on_a_char_boundary() {
        let long = "é".repeat(400);
        let msg = panic_message(&long);
        assert!(
            msg.len() < 600 && msg.ends_with("(800 bytes in all)"),
            "{msg}"
        );
    }
}
