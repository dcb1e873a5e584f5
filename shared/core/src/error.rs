//! Error classification shared by every stage.
//!
//! A handler's failure crosses process boundaries (in-process call, Lambda Runtime API,
//! Lambda Invoke API), so it travels as a plain, serialisable [`TaskError`]: a stable
//! machine-readable `code` saying *what* failed, a human `message` saying *where*, and a
//! [`ErrorClass`] telling the dispatcher whether retrying can help. Typed errors inside
//! each crate convert into it at the handler's edge.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Whether a failure is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Transient (network, service down, throttled): retry with backoff.
    Retryable,
    /// Retrying the same message cannot succeed (bad input, missing key, tampering):
    /// dead-letter at once with the reason.
    Permanent,
}

/// A handler failure as it crosses the function boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct TaskError {
    pub class: ErrorClass,
    /// Stable, dotted identifier, e.g. `s3.unavailable`, `event.invalid`.
    pub code: String,
    /// What went wrong and where; never holds secrets or log data.
    pub message: String,
    /// A hint from the handler (e.g. an upstream Retry-After) for the next attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl TaskError {
    pub fn retryable(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Retryable,
            code: code.into(),
            message: message.into(),
            retry_after_ms: None,
        }
    }

    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Permanent,
            code: code.into(),
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// The boundary form of a crate's typed error: its class, its code, its message.
    pub fn classified<E: Classify + std::fmt::Display + ?Sized>(e: &E) -> Self {
        Self {
            class: e.class(),
            code: e.code().to_owned(),
            message: e.to_string(),
            retry_after_ms: None,
        }
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after_ms = Some(after.as_millis() as u64);
        self
    }

    pub fn is_retryable(&self) -> bool {
        self.class == ErrorClass::Retryable
    }

    /// The Lambda `errorType` this error is reported under: `Class.code`.
    pub fn lambda_error_type(&self) -> String {
        let class = match self.class {
            ErrorClass::Retryable => "Retryable",
            ErrorClass::Permanent => "Permanent",
        };
        format!("{class}.{}", self.code)
    }

    /// Rebuilds a `TaskError` from a Lambda `errorType`/`errorMessage` pair. An error
    /// type that is not ours (a runtime crash, a timeout) is treated as retryable:
    /// the function never got to judge the input.
    pub fn from_lambda(error_type: &str, error_message: &str) -> Self {
        // The message may carry the whole serialised error (see `lambda_error_message`).
        if let Ok(err) = serde_json::from_str::<TaskError>(error_message) {
            return err;
        }
        match error_type.split_once('.') {
            Some(("Permanent", code)) => Self::permanent(code, error_message),
            Some(("Retryable", code)) => Self::retryable(code, error_message),
            _ => Self::retryable("function.crashed", format!("{error_type}: {error_message}")),
        }
    }

    /// The Lambda `errorMessage`: the serialised error, so nothing is lost in transit.
    pub fn lambda_error_message(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| self.message.clone())
    }
}

/// Implemented by each crate's typed errors to say how the dispatcher should treat them.
pub trait Classify {
    fn class(&self) -> ErrorClass;
    fn code(&self) -> &'static str;
}

/// Flattens an error and its sources into one line, each distinct message once (SDK and
/// HTTP client errors nest deeply and repeat themselves).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_round_trip_keeps_class_code_and_hint() {
        let err = TaskError::retryable("cloudflare.throttled", "zone z: 429")
            .with_retry_after(Duration::from_secs(7));
        let back = TaskError::from_lambda(&err.lambda_error_type(), &err.lambda_error_message());
        assert_eq!(back, err);
    }

    #[test]
    fn foreign_lambda_errors_are_retryable_crashes() {
        let err = TaskError::from_lambda("Runtime.ExitError", "exit status 101");
        assert!(err.is_retryable());
        assert_eq!(err.code, "function.crashed");
    }

    #[test]
    fn typed_error_type_without_json_message_keeps_class() {
        let err = TaskError::from_lambda("Permanent.event.invalid", "missing field");
        assert_eq!(err.class, ErrorClass::Permanent);
        assert_eq!(err.code, "event.invalid");
    }
}
