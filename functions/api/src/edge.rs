//! What every request goes through before and after its handler: a request id (the
//! caller's `X-Request-Id` when it is sane, else a fresh one; echoed on the answer, in
//! error bodies and in the log line), a body-size limit, a timeout (503 problem), a
//! panic caught and answered as a 500 problem (never a dropped connection), one log
//! line per request, problem+json for unknown routes and methods — and the per-key
//! rate limit [`crate::auth`] applies.
//!
//! The rate limit is a token bucket per API key held in this process: each instance
//! (a server, a warm Lambda) counts on its own, so N instances allow up to N times the
//! rate. Good enough against a runaway script; a shared limit (Redis) is for later.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::FutureExt;
use uuid::Uuid;

use crate::problem::{Problem, REQUEST_ID};
use crate::ApiConfig;

/// The request id header, read and written.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Wraps the routed API in the edge layers.
pub fn wrap(router: Router, config: &ApiConfig) -> Router {
    router
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(from_fn_with_state(config.timeout, guard))
}

async fn unknown_route(req: Request) -> Problem {
    Problem::not_found(
        "route.not_found",
        format!(
            "no route {} (the API lives under /v1/; see /v1/openapi.json)",
            req.uri().path()
        ),
    )
}

async fn wrong_method(req: Request) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "route.method_not_allowed",
        format!("{} does not take {}", req.uri().path(), req.method()),
    )
}

/// A caller's request id is kept when it is 1-128 visible ASCII characters.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::new_v4().to_string())
}

/// Whether the path or query hold an encoded NUL, which no parameter accepts (and
/// Postgres text cannot hold).
fn has_nul(req: &Request) -> bool {
    let raw = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("");
    raw.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

async fn guard(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    let id = request_id(&req);
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let started = Instant::now();
    let nul = has_nul(&req);
    let mut resp = REQUEST_ID
        .scope(id.clone(), async move {
            if nul {
                return Problem::bad_request(
                    "request.nul_character",
                    "the path or query holds a NUL character (%00), which no parameter accepts",
                )
                .into_response();
            }
            let run = AssertUnwindSafe(next.run(req)).catch_unwind();
            match tokio::time::timeout(timeout, run).await {
                Ok(Ok(resp)) => resp,
                Ok(Err(_panic)) => Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server.panic",
                    "the request failed inside the server; see its log",
                )
                .into_response(),
                Err(_) => Problem::unavailable(
                    "request.timeout",
                    format!(
                        "no answer within {} s; retry later, or ask for less",
                        timeout.as_secs()
                    ),
                )
                .into_response(),
            }
        })
        .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    tracing::info!(
        request_id = %id,
        %method,
        path,
        status = resp.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "api request"
    );
    resp
}

/// Token buckets per API key ([module docs](self)).
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<Uuid, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_sec: u32, burst: u32) -> Self {
        Self {
            per_sec: f64::from(per_sec.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token of `key`'s bucket, or says how long until one is there.
    pub fn take(&self, key: Uuid, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry(key).or_insert((self.burst, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * self.per_sec;
        *tokens = (*tokens + refill).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    async fn answer(router: Router, path: &str) -> (StatusCode, serde_json::Value) {
        let resp = router
            .oneshot(axum::http::Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(resp.headers().contains_key(REQUEST_ID_HEADER));
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn a_hung_handler_times_out_and_a_panicking_one_answers_500_as_problems() {
        let config = ApiConfig {
            timeout: Duration::from_millis(50),
            ..ApiConfig::default()
        };
        let router = wrap(
            Router::new()
                .route("/hang", get(std::future::pending::<&'static str>))
                .route("/panic", get(|| async { panic!("a bug") as &'static str })),
            &config,
        );
        let (status, body) = answer(router.clone(), "/hang").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["code"], "request.timeout");
        let (status, body) = answer(router.clone(), "/panic").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["code"], "server.panic");
        assert!(body["request_id"].is_string());
        let (status, body) = answer(router, "/nowhere").await;
        assert_eq!(
            (status, &body["code"]),
            (StatusCode::NOT_FOUND, &serde_json::json!("route.not_found"))
        );
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let limiter = RateLimiter::new(2, 3);
        let (key, other) = (Uuid::new_v4(), Uuid::new_v4());
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.take(key, t0).unwrap();
        }
        let wait = limiter.take(key, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        limiter.take(other, t0).expect("buckets are per key");
        limiter
            .take(key, t0 + Duration::from_millis(500))
            .expect("one token back after 1/rate");
        assert!(limiter.take(key, t0 + Duration::from_millis(500)).is_err());
    }
}
