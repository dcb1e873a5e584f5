//! Errors as RFC 9457 problem details (`application/problem+json`): every refusal has
//! a stable `code` (the domain error's `Classify::code`, or one of the API's own
//! `request.*`, `auth.*`, `route.*`), a status, a one-line `detail` naming what is
//! wrong and where, and the request's id. Server-side failures say only that they
//! happened (the cause is logged with the request id), never a query or a secret.

use std::borrow::Cow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rainlogs_core::error::{Classify, ErrorClass};
use serde::Serialize;
use utoipa::ToSchema;

tokio::task_local! {
    /// The id of the request being served ([`crate::edge`] sets it), for error bodies.
    pub static REQUEST_ID: String;
}

/// The media type of error bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub detail: String,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

/// The body of an error answer (RFC 9457, with `code` and `request_id` extensions).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemBody {
    /// `urn:rainlogs:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    pub status: u16,
    /// What is wrong, and where.
    pub detail: String,
    /// The stable error code, e.g. `zone.unknown`, `request.invalid_body`.
    pub code: String,
    /// The request's id (`X-Request-Id`), also in the server's log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "auth.forbidden", detail)
    }

    pub fn unavailable(code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            retry_after: Some(5),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail)
        }
    }

    /// A failure of this server or what it depends on: logged in full, answered with
    /// only its code (a retryable one as 503 with Retry-After, else 500).
    pub fn internal(code: &str, class: ErrorClass, cause: &dyn std::fmt::Display) -> Self {
        let request_id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
        tracing::error!(%request_id, code, error = %cause, "request failed");
        match class {
            ErrorClass::Retryable => Self::unavailable(
                "server.unavailable",
                format!("a service the API depends on failed ({code}); retry later"),
            ),
            ErrorClass::Permanent => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server.error",
                format!("the request failed inside the server ({code}); see its log for request {request_id}"),
            ),
        }
    }

    /// A domain error: its code picks the status; infrastructure failures become
    /// [`Problem::internal`].
    pub fn of<E: Classify + std::fmt::Display>(e: &E) -> Self {
        let code = e.code();
        let status = match code {
            "kms.shredded" => StatusCode::CONFLICT,
            c if c.starts_with("postgres.")
                || c.starts_with("kms.")
                || c.starts_with("s3.")
                || c.starts_with("storage.")
                || c.starts_with("redis.") =>
            {
                return Self::internal(code, e.class(), e);
            }
            c if c.ends_with(".unknown") || c.ends_with(".unknown_tenant") => StatusCode::NOT_FOUND,
            c if c.ends_with(".exists") || c.ends_with(".ambiguous") => StatusCode::CONFLICT,
            "zone.probe_failed" => StatusCode::BAD_GATEWAY,
            _ if e.class() == ErrorClass::Retryable => {
                return Self::internal(code, e.class(), e);
            }
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self::new(status, code.to_owned(), e.to_string())
    }

    pub fn body(&self) -> ProblemBody {
        ProblemBody {
            kind: format!("urn:rainlogs:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_string(),
            request_id: REQUEST_ID.try_with(Clone::clone).ok(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = (self.status, body).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(after) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&after.max(1).to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

macro_rules! from_domain {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for Problem {
            fn from(e: $t) -> Self {
                Problem::of(&e)
            }
        }
    )*};
}

from_domain!(
    rainlogs_archive::catalog::tenant::TenantError,
    rainlogs_archive::catalog::zone::ZoneError,
    rainlogs_archive::catalog::account::AccountError,
    rainlogs_core::db::DbError,
);

impl From<rainlogs_archive::verify::run::RunError> for Problem {
    fn from(e: rainlogs_archive::verify::run::RunError) -> Self {
        use rainlogs_archive::verify::run::{RunError, SelectError};
        use rainlogs_archive::verify::VerifyError;
        match e {
            RunError::Select(SelectError::Tenant(e)) => e.into(),
            RunError::Select(SelectError::Zone(e)) => e.into(),
            RunError::Select(SelectError::Db(e)) => e.into(),
            RunError::Select(e @ SelectError::NotOfTenant { .. }) => {
                Problem::not_found("zone.unknown", e.to_string())
            }
            RunError::Verify(VerifyError::NoKms) => Problem::unavailable(
                "kms.unavailable",
                "deep verification needs the kms: this API runs without a master keyring",
            ),
            RunError::Verify(e @ VerifyError::NoChainKey { .. }) => {
                Problem::unavailable("kms.unavailable", e.to_string())
            }
            RunError::Verify(VerifyError::Db(e)) => e.into(),
            RunError::Verify(VerifyError::Operational(e)) => {
                let class = if e.is_retryable() {
                    ErrorClass::Retryable
                } else {
                    ErrorClass::Permanent
                };
                Problem::internal(&e.code, class, &e.message)
            }
        }
    }
}
