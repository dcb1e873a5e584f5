//! What can go wrong fetching a window, classified for the dispatcher.
//!
//! Retryable: throttling (429, with Cloudflare's Retry-After carried in
//! [`LogpullError::retry_after`] and in the [`TaskError`]), 5xx, network failures,
//! timeouts, a body cut short (reset, truncated gzip, a last line without its newline),
//! a corrupt gzip stream and a failing sink — and a window that is only *too recent*
//! (Cloudflare's 400 "too late: end must be at least 1m0s in the past", or our own
//! check of the same rule): clock skew between hosts, not a bad window, so it is
//! retried after a delay (`logpull.too_recent`). Permanent: anything Cloudflare or our
//! own checks reject as such — other 400s and 401/403 (with Cloudflare's reason),
//! other 4xx, a request breaking the other window rules (a start older than 7 days
//! stays permanent: waiting only makes it older), an unknown field, and (under
//! [`MalformedPolicy::Reject`]) a malformed line. Messages name the zone and window,
//! never credentials.
//!
//! [`MalformedPolicy::Reject`]: super::MalformedPolicy::Reject

use std::time::Duration;

use rainlogs_core::error::{Classify, ErrorClass};
use rainlogs_core::TaskError;

use super::credentials::InvalidCredential;
use super::request::{RequestError, MIN_AGE};

/// Extra wait on top of "fetchable in N s", so a retry does not land on the edge again.
const TOO_RECENT_SLACK: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum LogpullError {
    #[error("logpull: invalid request: {0}")]
    InvalidRequest(#[from] RequestError),
    #[error("logpull: {0}")]
    Credentials(#[from] InvalidCredential),
    #[error("logpull: cannot build the HTTP client: {0}")]
    Client(String),
    #[error("logpull {what}: throttled by Cloudflare (429, retry after {}): {reason}", fmt_after(.retry_after))]
    RateLimited {
        what: String,
        retry_after: Option<Duration>,
        reason: String,
    },
    #[error("logpull {what}: Cloudflare server error {status}: {reason}")]
    Server {
        what: String,
        status: u16,
        reason: String,
    },
    #[error("logpull {what}: Cloudflare rejected the request (400): {reason}")]
    BadRequest { what: String, reason: String },
    /// Cloudflare's 400 for a window whose end is not yet old enough *by its clock*:
    /// ours runs ahead of it. Retried after [`MIN_AGE`].
    #[error("logpull {what}: Cloudflare says the window is too recent (400, our clock is ahead of Cloudflare's; retried in {} s): {reason}", MIN_AGE.as_secs())]
    TooRecent { what: String, reason: String },
    #[error("logpull {what}: Cloudflare refused the credentials ({status}): {reason}")]
    Forbidden {
        what: String,
        status: u16,
        reason: String,
    },
    #[error("logpull {what}: unexpected HTTP status {status}: {reason}")]
    Status {
        what: String,
        status: u16,
        reason: String,
        retryable: bool,
    },
    #[error("logpull {what}: cannot reach Cloudflare: {reason}")]
    Unreachable { what: String, reason: String },
    #[error("logpull {what}: no {phase} within {after:?}")]
    Timeout {
        what: String,
        phase: &'static str,
        after: Duration,
    },
    #[error("logpull {what}: connection lost after {raw_bytes} bytes of NDJSON: {reason}")]
    BodyInterrupted {
        what: String,
        raw_bytes: u64,
        reason: String,
    },
    #[error("logpull {what}: response truncated after {raw_bytes} bytes of NDJSON ({detail})")]
    Truncated {
        what: String,
        raw_bytes: u64,
        detail: String,
    },
    #[error("logpull {what}: corrupt gzip stream after {wire_bytes} compressed bytes: {reason}")]
    CorruptGzip {
        what: String,
        wire_bytes: u64,
        reason: String,
    },
    #[error("logpull {what}: line {line} at byte offset {offset} is not a JSON object: {reason}")]
    MalformedLine {
        what: String,
        line: u64,
        offset: u64,
        reason: String,
    },
    #[error("logpull {what}: line {line} at byte offset {offset} exceeds {limit} bytes without a newline")]
    LineTooLong {
        what: String,
        line: u64,
        offset: u64,
        limit: usize,
    },
    #[error("logpull zone {zone}: field {field:?} is not offered by Cloudflare for this zone")]
    UnknownField { zone: String, field: String },
    #[error("logpull {what}: unexpected response: {reason}")]
    UnexpectedResponse { what: String, reason: String },
    #[error("logpull {what}: writing the payload failed: {reason}")]
    Sink { what: String, reason: String },
}

fn fmt_after(d: &Option<Duration>) -> String {
    match d {
        Some(d) => format!("{} s", d.as_secs()),
        None => "unspecified".to_owned(),
    }
}

impl LogpullError {
    /// How long Cloudflare asked us to wait, when it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LogpullError::RateLimited { retry_after, .. } => *retry_after,
            LogpullError::TooRecent { .. } => Some(MIN_AGE + TOO_RECENT_SLACK),
            LogpullError::InvalidRequest(RequestError::TooLate { ready_in_secs, .. }) => {
                Some(Duration::from_secs(*ready_in_secs) + TOO_RECENT_SLACK)
            }
            _ => None,
        }
    }

    /// Cloudflare's 400, typed: "too recent" (retryable) or any other rejection.
    pub fn bad_request(what: String, reason: String) -> Self {
        if says_too_recent(&reason) {
            LogpullError::TooRecent { what, reason }
        } else {
            LogpullError::BadRequest { what, reason }
        }
    }
}

/// Whether a 400's reason is Cloudflare's "end is not old enough yet" (its words: "too
/// late: end must be at least 1m0s in the past"; also matched: "too recent", and a
/// "too early" that is not about the 7-day limit). "too early: logs older than …" is
/// the 7-day limit and is not matched.
fn says_too_recent(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    if r.contains("older than") {
        return false;
    }
    r.contains("too late")
        || r.contains("too recent")
        || r.contains("too early")
        || (r.contains("end must be") && r.contains("in the past"))
}

impl Classify for LogpullError {
    fn class(&self) -> ErrorClass {
        use LogpullError as E;
        match self {
            E::RateLimited { .. }
            | E::Server { .. }
            | E::Unreachable { .. }
            | E::Timeout { .. }
            | E::BodyInterrupted { .. }
            | E::Truncated { .. }
            | E::CorruptGzip { .. }
            | E::UnexpectedResponse { .. }
            | E::Sink { .. }
            | E::TooRecent { .. }
            | E::InvalidRequest(RequestError::TooLate { .. })
            | E::Status {
                retryable: true, ..
            } => ErrorClass::Retryable,
            E::InvalidRequest(_)
            | E::Credentials(_)
            | E::Client(_)
            | E::BadRequest { .. }
            | E::Forbidden { .. }
            | E::Status {
                retryable: false, ..
            }
            | E::MalformedLine { .. }
            | E::LineTooLong { .. }
            | E::UnknownField { .. } => ErrorClass::Permanent,
        }
    }

    fn code(&self) -> &'static str {
        use LogpullError as E;
        match self {
            E::TooRecent { .. } | E::InvalidRequest(RequestError::TooLate { .. }) => {
                "logpull.too_recent"
            }
            E::InvalidRequest(_) => "logpull.request_invalid",
            E::Credentials(_) => "logpull.credentials_invalid",
            E::Client(_) => "logpull.client",
            E::RateLimited { .. } => "logpull.rate_limited",
            E::Server { .. } => "logpull.server_error",
            E::BadRequest { .. } => "logpull.bad_request",
            E::Forbidden { .. } => "logpull.forbidden",
            E::Status { .. } => "logpull.http_status",
            E::Unreachable { .. } => "logpull.unreachable",
            E::Timeout { .. } => "logpull.timeout",
            E::BodyInterrupted { .. } => "logpull.body_interrupted",
            E::Truncated { .. } => "logpull.truncated",
            E::CorruptGzip { .. } => "logpull.gzip_corrupt",
            E::MalformedLine { .. } => "logpull.malformed_line",
            E::LineTooLong { .. } => "logpull.line_too_long",
            E::UnknownField { .. } => "logpull.unknown_field",
            E::UnexpectedResponse { .. } => "logpull.unexpected_response",
            E::Sink { .. } => "logpull.sink",
        }
    }
}

impl From<LogpullError> for TaskError {
    fn from(e: LogpullError) -> Self {
        let err = TaskError::classified(&e);
        match e.retry_after() {
            Some(after) => err.with_retry_after(after),
            None => err,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_converts_to_a_retryable_task_error_with_its_hint() {
        let e = LogpullError::RateLimited {
            what: "zone z [a, b)".into(),
            retry_after: Some(Duration::from_secs(7)),
            reason: "slow down".into(),
        };
        let t = TaskError::from(e);
        assert!(t.is_retryable());
        assert_eq!(t.code, "logpull.rate_limited");
        assert_eq!(t.retry_after_ms, Some(7000));
    }

    #[test]
    fn too_recent_400s_are_retryable_with_a_delay_and_the_7_day_limit_is_not() {
        let what = || "zone z [a, b)".to_owned();
        for reason in [
            "bad query: error parsing time: invalid time range: too late: end must be at least 1m0s in the past",
            "end is too recent",
            "too early: try again later",
        ] {
            let e = LogpullError::bad_request(what(), reason.into());
            assert!(matches!(e, LogpullError::TooRecent { .. }), "{reason}");
            let t = TaskError::from(e);
            assert!(t.is_retryable(), "{reason}");
            assert_eq!(t.code, "logpull.too_recent");
            assert_eq!(t.retry_after_ms, Some(65_000));
        }
        for reason in [
            "bad query: error parsing time: invalid time range: too early: logs older than 168h0m0s are not available",
            "unknown field: \"X\"",
        ] {
            let e = LogpullError::bad_request(what(), reason.into());
            assert!(matches!(e, LogpullError::BadRequest { .. }), "{reason}");
            assert!(!TaskError::from(e).is_retryable(), "{reason}");
        }
    }

    #[test]
    fn cloudflare_rejections_are_permanent() {
        let e = LogpullError::Forbidden {
            what: "zone z".into(),
            status: 403,
            reason: "Authentication error".into(),
        };
        let t = TaskError::from(e);
        assert!(!t.is_retryable());
        assert!(t.message.contains("Authentication error"));
    }
}
