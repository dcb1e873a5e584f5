//! The endpoints, one module per resource. Each handler parses (the extractors below
//! turn every malformed body, query or path into a problem naming what and where),
//! checks the tenant boundary, calls one domain function and renders its result.

pub mod audit;
pub mod gdpr;
pub mod health;
pub mod logs;
pub mod tenants;
pub mod users;
pub mod verify;
pub mod zones;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use rainlogs_archive::catalog::tenant::{self, TenantError, TenantRow};
use rainlogs_archive::catalog::zone::{self, ZoneError, ZoneRow};
use serde::de::DeserializeOwned;

use crate::auth::{visible, Principal};
use crate::problem::Problem;
use crate::Api;

/// A JSON body; refusals are problems: malformed JSON 400 `request.malformed_json`,
/// wrong types, missing or unknown fields 422 `request.invalid_body`, too large 413
/// `request.too_large`, not JSON 415 `request.unsupported_media_type`.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "request.unsupported_media_type",
                "the body must be JSON: send Content-Type: application/json",
            ));
        }
        // Read within the body limit (413 beyond), then parse.
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => bytes,
            Err(rejection) => {
                return Err(Problem::new(
                    rejection.status(),
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        "request.too_large"
                    } else {
                        "request.unreadable_body"
                    },
                    rejection.body_text(),
                ))
            }
        };
        // Postgres text cannot hold NUL: refused here, not as a failed query later.
        if bytes.windows(6).any(|w| w == b"\\u0000") {
            return Err(Problem::unprocessable(
                "request.nul_character",
                "the body holds a NUL character (\\u0000), which no field accepts",
            ));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(rejection) => Err(json_problem(&rejection)),
        }
    }
}

fn json_problem(rejection: &JsonRejection) -> Problem {
    let code = match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => "request.too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "request.unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "request.invalid_body",
        StatusCode::BAD_REQUEST => "request.malformed_json",
        _ => "request.unreadable_body",
    };
    let status = match rejection.status() {
        s if s.is_client_error() => s,
        _ => StatusCode::BAD_REQUEST,
    };
    Problem::new(status, code, rejection.body_text())
}

/// Query parameters; a wrong type or an unknown parameter is 400 `request.invalid_query`.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(rejection) => Err(query_problem(&rejection)),
        }
    }
}

fn query_problem(rejection: &QueryRejection) -> Problem {
    Problem::bad_request("request.invalid_query", rejection.body_text())
}

/// Path parameters; one that does not parse (a user id that is no UUID) is 400
/// `request.invalid_path`.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(rejection) => Err(path_problem(&rejection)),
        }
    }
}

fn path_problem(rejection: &PathRejection) -> Problem {
    Problem::bad_request("request.invalid_path", rejection.body_text())
}

/// The tenant named by a path parameter (name or id), if `principal` sees it; another
/// tenant's answers as an unknown one.
pub(crate) async fn tenant_of(
    api: &Api,
    principal: &Principal,
    tenant: &str,
) -> Result<TenantRow, Problem> {
    let row = tenant::get(&api.services().pool, tenant).await?;
    visible(principal, Some(row.id), || {
        TenantError::Unknown(tenant.to_owned()).into()
    })?;
    Ok(row)
}

/// The zone named by a path parameter (Rainlogs id or Cloudflare zone id), if
/// `principal` sees it; another tenant's answers as an unknown one.
pub(crate) async fn zone_of(
    api: &Api,
    principal: &Principal,
    zone: &str,
) -> Result<ZoneRow, Problem> {
    let unknown = || Problem::from(ZoneError::UnknownZone(zone.to_owned()));
    // Names are not accepted here: a name shared across tenants would be refused as
    // ambiguous, telling a caller that another tenant has a zone of that name.
    let is_cf_id = zone.len() == 32 && zone.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if uuid::Uuid::parse_str(zone).is_err() && !is_cf_id {
        return Err(unknown());
    }
    let row = zone::get(&api.services().pool, zone).await?;
    visible(principal, Some(row.tenant_id), unknown)?;
    Ok(row)
}

/// The `201 Created` answer of a handler that made something.
pub(crate) fn created<T: serde::Serialize>(body: T) -> (StatusCode, axum::Json<T>) {
    (StatusCode::CREATED, axum::Json(body))
}
