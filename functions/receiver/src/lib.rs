//! The Logpush receiver: accepts Cloudflare Logpush HTTP batches at
//! `POST /push/{destination_id}` and acknowledges a batch only once it is sealed in
//! staging and its `push_batches` row is committed (docs/INGEST.md is the contract).
//!
//! [`Receiver::router`] is an axum router: served by the `rainlogs-receiver` binary
//! over HTTPS ([`tls::serve_tls`]) or plain HTTP ([`serve`]), or mounted elsewhere. The per-destination secret is checked against its
//! stored hash before a byte of the body is read; limits on body size, decompressed
//! size and batches in flight answer 413/429 with `Retry-After`; trouble with Postgres,
//! Garage, the kms or the spool answers 503, so Cloudflare retries.

mod ingest;
pub mod lambda;
pub mod landing;
pub mod lines;
pub mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use sqlx::PgPool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use rainlogs_archive::push;
use rainlogs_core::config::{ConfigError, ConfigSource};
use rainlogs_core::storage::ObjectStore;
use rainlogs_core::TaskError;
use rainlogs_sealed::kms::Kms;

pub use ingest::Accepted;

/// The function's name (kms audit actor, logs).
pub const NAME: &str = "receiver";
/// Address the binary listens on (`RAINLOGS_RECEIVER_LISTEN`, default 127.0.0.1:8787).
pub const LISTEN_VAR: &str = "RAINLOGS_RECEIVER_LISTEN";
/// Header Cloudflare sends the secret in when the destination URL has
/// `header_X-Rainlogs-Secret=…` (the alternative is `Authorization: Bearer …`).
pub const SECRET_HEADER: &str = "x-rainlogs-secret";

/// What the receiver accepts at once, and how big.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverLimits {
    /// Compressed body bytes per request (`RAINLOGS_RECEIVER_MAX_BODY_BYTES`).
    pub max_body_bytes: u64,
    /// Decompressed NDJSON bytes per request (`RAINLOGS_RECEIVER_MAX_NDJSON_BYTES`): set
    /// above the jobs' `max_upload_bytes`; a gzip bomb stops here.
    pub max_ndjson_bytes: u64,
    /// Longest line parsed for its timestamps (`RAINLOGS_RECEIVER_MAX_LINE_BYTES`);
    /// longer lines are sealed but counted malformed.
    pub max_line_bytes: usize,
    /// Batches in flight over all destinations (`RAINLOGS_RECEIVER_MAX_IN_FLIGHT`).
    pub max_in_flight: usize,
    /// Batches in flight per destination (`RAINLOGS_RECEIVER_MAX_IN_FLIGHT_PER_DESTINATION`).
    pub max_in_flight_per_destination: usize,
    /// The `Retry-After` sent with 413, 429 and 503 (`RAINLOGS_RECEIVER_RETRY_AFTER_SECS`).
    pub retry_after: Duration,
    /// Longest wait for the next piece of a body (`RAINLOGS_RECEIVER_BODY_IDLE_SECS`):
    /// a stalled sender gives its permit back instead of holding it forever (408).
    pub body_idle: Duration,
}

impl Default for ReceiverLimits {
    fn default() -> Self {
        Self {
            // Cloudflare's largest batch is 1 GB of NDJSON; gzip of Logpush NDJSON is
            // ~10 %, so 512 MiB of body is far beyond a real batch.
            max_body_bytes: 512 << 20,
            max_ndjson_bytes: 1280 << 20,
            max_line_bytes: 1 << 20,
            max_in_flight: 16,
            max_in_flight_per_destination: 4,
            retry_after: Duration::from_secs(30),
            body_idle: Duration::from_secs(60),
        }
    }
}

impl ReceiverLimits {
    /// The limits from configuration; unset variables keep the defaults.
    pub fn from_source(src: &ConfigSource) -> Result<Self, ConfigError> {
        let d = Self::default();
        let at_least_one = |var: &str, v: u64| {
            if v == 0 {
                Err(ConfigError::Invalid {
                    var: var.to_owned(),
                    reason: "must be at least 1".into(),
                })
            } else {
                Ok(v)
            }
        };
        let get = |var: &str, default: u64| -> Result<u64, ConfigError> {
            at_least_one(var, src.parsed_or(var, default)?)
        };
        Ok(Self {
            max_body_bytes: get("RAINLOGS_RECEIVER_MAX_BODY_BYTES", d.max_body_bytes)?,
            max_ndjson_bytes: get("RAINLOGS_RECEIVER_MAX_NDJSON_BYTES", d.max_ndjson_bytes)?,
            max_line_bytes: get("RAINLOGS_RECEIVER_MAX_LINE_BYTES", d.max_line_bytes as u64)?
                as usize,
            max_in_flight: get("RAINLOGS_RECEIVER_MAX_IN_FLIGHT", d.max_in_flight as u64)? as usize,
            max_in_flight_per_destination: get(
                "RAINLOGS_RECEIVER_MAX_IN_FLIGHT_PER_DESTINATION",
                d.max_in_flight_per_destination as u64,
            )? as usize,
            retry_after: Duration::from_secs(get(
                "RAINLOGS_RECEIVER_RETRY_AFTER_SECS",
                d.retry_after.as_secs(),
            )?),
            body_idle: Duration::from_secs(get(
                "RAINLOGS_RECEIVER_BODY_IDLE_SECS",
                d.body_idle.as_secs(),
            )?),
        })
    }
}

pub(crate) struct Inner {
    pub(crate) pool: PgPool,
    pub(crate) store: ObjectStore,
    pub(crate) kms: Arc<dyn Kms>,
    pub(crate) limits: ReceiverLimits,
    global: Arc<Semaphore>,
    per_destination: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
}

/// The receiver: clients built at start-up and the in-flight counters.
#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Inner>,
}

impl Receiver {
    pub fn new(
        pool: PgPool,
        store: ObjectStore,
        kms: Arc<dyn Kms>,
        limits: ReceiverLimits,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                store,
                kms,
                global: Arc::new(Semaphore::new(limits.max_in_flight)),
                per_destination: Mutex::new(HashMap::new()),
                limits,
            }),
        }
    }

    /// Builds the clients from configuration (needs a master keyring for the kms).
    pub async fn from_config(src: &ConfigSource) -> anyhow::Result<Self> {
        // Limits first: a bad setting is reported before any connection is tried.
        let limits = ReceiverLimits::from_source(src)?;
        let (pool, store) = rainlogs_core::function::connect_stores(src).await?;
        let kms = Arc::new(rainlogs_kms::KmsService::from_config(
            pool.clone(),
            src,
            NAME,
        )?);
        Ok(Self::new(pool, store, kms, limits))
    }

    /// `POST /push/{destination_id}`; bodies are streamed, never buffered whole.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/push/{destination}", post(push_batch))
            .route("/healthz", axum::routing::get(health))
            .layer(DefaultBodyLimit::disable())
            .with_state(self.clone())
    }

    /// Batches being received right now (admitted, not yet answered).
    pub fn in_flight(&self) -> usize {
        self.inner
            .limits
            .max_in_flight
            .saturating_sub(self.inner.global.available_permits())
    }

    /// Permits for one batch of `destination`, or `None` when the receiver is full.
    fn admit(&self, destination: Uuid) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
        let per = {
            let mut map = self
                .inner
                .per_destination
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            map.entry(destination)
                .or_insert_with(|| {
                    Arc::new(Semaphore::new(
                        self.inner.limits.max_in_flight_per_destination,
                    ))
                })
                .clone()
        };
        let one = per.try_acquire_owned().ok()?;
        let all = self.inner.global.clone().try_acquire_owned().ok()?;
        Some((one, all))
    }
}

/// Serves the receiver's router on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, receiver: Receiver) -> std::io::Result<()> {
    axum::serve(listener, receiver.router()).await
}

/// Why a request is not acknowledged, and what Cloudflare should do about it.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Unknown or disabled destination, missing or wrong secret.
    Unauthorized,
    /// Not gzip, corrupt gzip, a broken request body: retrying the same bytes won't help.
    BadRequest(String),
    /// Over the body or decompressed limit.
    TooLarge(String),
    /// The body stopped arriving for longer than `body_idle`.
    Stalled(Duration),
    /// Too many batches in flight.
    Busy,
    /// Postgres, Garage, the kms or the spool failed: retry later.
    Unavailable(TaskError),
}

impl Refusal {
    pub(crate) fn infra(e: TaskError) -> Self {
        Refusal::Unavailable(e)
    }
}

fn error_body(
    status: StatusCode,
    code: &str,
    message: &str,
    retry_after: Option<Duration>,
) -> Response {
    let mut resp = (
        status,
        Json(serde_json::json!({ "error": code, "message": message })),
    )
        .into_response();
    if let Some(after) = retry_after {
        if let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

impl Refusal {
    fn into_response(self, retry_after: Duration) -> Response {
        match self {
            Refusal::Unauthorized => error_body(
                StatusCode::UNAUTHORIZED,
                "push.unauthorized",
                "unknown destination or wrong secret",
                None,
            ),
            Refusal::BadRequest(why) => {
                error_body(StatusCode::BAD_REQUEST, "push.bad_body", &why, None)
            }
            Refusal::TooLarge(why) => error_body(
                StatusCode::PAYLOAD_TOO_LARGE,
                "push.too_large",
                &why,
                Some(retry_after),
            ),
            Refusal::Stalled(idle) => error_body(
                StatusCode::REQUEST_TIMEOUT,
                "push.body_stalled",
                &format!("no body bytes for {} s", idle.as_secs()),
                None,
            ),
            Refusal::Busy => error_body(
                StatusCode::TOO_MANY_REQUESTS,
                "push.busy",
                "too many batches in flight; retry later",
                Some(retry_after),
            ),
            Refusal::Unavailable(e) => {
                tracing::warn!(code = %e.code, error = %e.message, "push not acknowledged");
                error_body(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &e.code,
                    "the batch could not be stored durably; retry later",
                    Some(retry_after),
                )
            }
        }
    }
}

/// The secret the request presents: `Authorization: Bearer …` or `X-Rainlogs-Secret`.
fn presented_secret(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(SECRET_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// `GET /healthz`: 200 `ok` when Postgres answers within 2 s, else 503 with the reason
/// — without Postgres no batch can be acknowledged, so a load balancer (a Kubernetes
/// readiness probe: infra/k8s/receiver.yaml) should send Logpush elsewhere.
async fn health(State(receiver): State<Receiver>) -> (StatusCode, String) {
    let ping = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&receiver.inner.pool);
    match tokio::time::timeout(std::time::Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => (StatusCode::OK, "ok\n".into()),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("postgres: {}\n", rainlogs_core::error::error_chain(&e)),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "postgres: no answer within 2 s\n".into(),
        ),
    }
}

async fn push_batch(
    State(receiver): State<Receiver>,
    Path(destination): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let retry_after = receiver.inner.limits.retry_after;
    match accept(&receiver, &destination, &headers, body).await {
        Ok(accepted) => {
            let body = match accepted {
                Accepted::Batch { id, records } => {
                    serde_json::json!({ "batch_id": id, "records": records, "duplicate": false })
                }
                Accepted::Duplicate { id } => {
                    serde_json::json!({ "batch_id": id, "duplicate": true })
                }
                Accepted::Validation => serde_json::json!({ "validation": true }),
                Accepted::Empty => serde_json::json!({ "records": 0 }),
            };
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(refusal) => refusal.into_response(retry_after),
    }
}

async fn accept(
    receiver: &Receiver,
    destination: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Accepted, Refusal> {
    // Everything up to the secret check reads only the path and the headers.
    let id = Uuid::parse_str(destination).map_err(|_| Refusal::Unauthorized)?;
    let secret = presented_secret(headers).ok_or(Refusal::Unauthorized)?;
    let dest = push::load_destination(&receiver.inner.pool, id)
        .await
        .map_err(|e| Refusal::infra(e.into()))?
        .ok_or(Refusal::Unauthorized)?;
    if !dest.accepts(secret) {
        tracing::warn!(destination = %id, "push refused: wrong secret or disabled destination");
        return Err(Refusal::Unauthorized);
    }
    let max_body = receiver.inner.limits.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body) {
        return Err(Refusal::TooLarge(format!(
            "the gzip body is over the receiver's limit of {max_body} bytes"
        )));
    }
    let _permits = receiver.admit(id).ok_or(Refusal::Busy)?;
    ingest::ingest(&receiver.inner, &dest, body).await
}
