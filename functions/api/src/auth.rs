//! Who is calling, and may they: the `Authorization: Bearer rl_…` key becomes a
//! [`Principal`] (`catalog::account::authenticate`: shape and checksum first, no I/O;
//! then one indexed lookup and a constant-time hash comparison), the key's rate limit
//! is taken, and the matched route's rule ([`crate::routes::Route`]) decides: the
//! role must grant the route's permission (else 403), a provider-only route needs a
//! provider-wide user (else 403). The tenant boundary is the handlers' part: a
//! resource of another tenant answers exactly as an unknown one (404).
//!
//! A failure is logged with its reason and, once a key is found, the key's id —
//! never the presented secret.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use rainlogs_archive::catalog::account::{self, AuthError};
use rainlogs_core::error::Classify;

pub use rainlogs_archive::catalog::account::{Permission, Principal, Role};

use crate::problem::Problem;
use crate::routes::{self, Scope};
use crate::Api;

/// The key presented as `Authorization: Bearer <key>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn unauthorized(e: &AuthError) -> Response {
    let mut resp = Problem::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string()).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"rainlogs\""),
    );
    resp
}

/// The route layer: authenticates and authorizes by the matched route's rule.
pub async fn authorize(State(api): State<Api>, mut req: Request, next: Next) -> Response {
    let Some(route) = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|m| routes::find(req.method(), m.as_str()))
    else {
        // Fail closed: a route the table does not know is served to no one.
        tracing::error!(path = req.uri().path(), method = %req.method(), "route without a rule");
        return Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "route.no_rule",
            "this route has no authorization rule",
        )
        .into_response();
    };
    let Some(permission) = route.permission else {
        return next.run(req).await;
    };
    let principal = match bearer(req.headers()) {
        None => Err(AuthError::Missing),
        Some(key) => account::authenticate(&api.services().pool, key, Utc::now()).await,
    };
    let principal = match principal {
        Ok(p) => p,
        Err(AuthError::Db(e)) => return Problem::of(&e).into_response(),
        Err(e) => {
            tracing::warn!(code = e.code(), reason = %e, path = req.uri().path(), "authentication failed");
            return unauthorized(&e);
        }
    };
    if let Err(wait) = api.inner.limiter.take(principal.key_id, Instant::now()) {
        tracing::warn!(key = %principal.key_id, "rate limited");
        return Problem {
            retry_after: Some(wait.as_secs().max(1)),
            ..Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "auth.rate_limited",
                format!(
                    "this key makes more than {} requests a second (burst {}); retry later",
                    api.config().rate_per_sec,
                    api.config().rate_burst
                ),
            )
        }
        .into_response();
    }
    if !principal.role.grants(permission) {
        return Problem::forbidden(format!(
            "role {} may not {} {}",
            principal.role,
            req.method(),
            route.path
        ))
        .into_response();
    }
    if route.scope == Scope::Provider && principal.tenant_id.is_some() {
        return Problem::forbidden(format!(
            "{} {} is for provider-wide users only",
            req.method(),
            route.path
        ))
        .into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// Refuses a resource of a tenant `principal` does not see, exactly as an unknown one.
pub fn visible(
    principal: &Principal,
    tenant: Option<uuid::Uuid>,
    unknown: impl FnOnce() -> Problem,
) -> Result<(), Problem> {
    let sees = match tenant {
        Some(t) => principal.sees(t),
        // Provider-wide things (a provider-wide user) only to provider-wide users.
        None => principal.tenant_id.is_none(),
    };
    if sees {
        Ok(())
    } else {
        Err(unknown())
    }
}
