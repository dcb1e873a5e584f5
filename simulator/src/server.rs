//! The HTTP side of the simulator: Cloudflare's Logpull endpoints, its validation
//! rules and error envelope, authentication, gzip, and the fault hooks.
//!
//! Responses stream: the body is a lazy stream of ~64 KiB chunks produced from the
//! [`Generator`](crate::generator::Generator) (and gzip-compressed chunk by chunk when
//! the client accepts gzip), so a window of any size is served in constant memory.
//!
//! The Logpush jobs API (`/client/v4/zones/{zone}/logpush/jobs`) is [`crate::logpush`],
//! its deliveries [`crate::pusher`].
//!
//! Besides the Cloudflare endpoints, `/__sim/faults` (GET, POST a [`FaultRule`], DELETE),
//! `/__sim/logpush/faults` (the same for [`PushFaultRule`]s), `/__sim/logpush/clock`
//! (GET the push clock; POST `{"advance_secs": N}` moves a manual one and waits until
//! what became due is delivered) and `/__sim/stats` let a test or the demo steer a
//! simulator running as a process.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::faults::{Fault, FaultBook, FaultRule};
use crate::fields::{Field, DEFAULT_FIELDS};
use crate::generator::{Generator, Selection, TimestampFormat, WindowRecords, ZoneVolume};
use crate::logpush;
use crate::push_faults::PushFaultRule;
use crate::pusher::{JobStats, PushConfig, Pusher};

/// How far back Cloudflare keeps logs.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How recent a window's end may be.
pub const MIN_AGE: Duration = Duration::from_secs(60);
/// The longest window one request may ask for.
pub const MAX_RANGE: Duration = Duration::from_secs(3600);

/// What a simulator instance serves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// Volume of zones not listed in `zones`.
    pub default_volume: ZoneVolume,
    pub zones: HashMap<String, ZoneVolume>,
    /// Accepted API tokens (`Authorization: Bearer`).
    pub tokens: Vec<String>,
    /// Accepted `(X-Auth-Email, X-Auth-Key)` pairs.
    pub api_keys: Vec<(String, String)>,
    pub faults: Vec<FaultRule>,
    /// gzip level 0-9 for responses to clients that accept gzip.
    pub gzip_level: u32,
    /// Whether log retention starts switched on for every zone.
    pub retention_default: bool,
    /// Size of the raw NDJSON chunks the body is produced in.
    pub chunk_size: usize,
    /// How far the simulated Cloudflare's clock lags this host's: a client whose clock
    /// runs ahead of Cloudflare's sees windows it thinks old enough refused as "too
    /// late" (clock-skew tests; docs/LOGPULL.md).
    pub clock_lag: Duration,
    /// The Logpush side: its clock, retries and faults.
    pub push: PushConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            default_volume: ZoneVolume::default(),
            zones: HashMap::new(),
            tokens: vec!["sim-token".to_owned()],
            api_keys: Vec::new(),
            faults: Vec::new(),
            gzip_level: 1,
            retention_default: true,
            chunk_size: 64 * 1024,
            clock_lag: Duration::ZERO,
            push: PushConfig::default(),
        }
    }
}

/// Each zone's volume, shared by the Logpull handlers and the pusher.
#[derive(Clone)]
pub(crate) struct Volumes {
    default: ZoneVolume,
    zones: Arc<Mutex<HashMap<String, ZoneVolume>>>,
}

impl Volumes {
    pub(crate) fn get(&self, zone: &str) -> ZoneVolume {
        lock(&self.zones).get(zone).copied().unwrap_or(self.default)
    }

    fn set(&self, zone: &str, volume: ZoneVolume) {
        lock(&self.zones).insert(zone.to_owned(), volume);
    }
}

pub(crate) struct SimState {
    generator: Generator,
    volumes: Volumes,
    pub(crate) pusher: Arc<Pusher>,
    retention: Mutex<HashMap<String, bool>>,
    retention_default: bool,
    tokens: Vec<String>,
    api_keys: Vec<(String, String)>,
    faults: FaultBook,
    received: Mutex<HashMap<String, u64>>,
    /// Fingerprints of the credentials presented, accepted or not, with counts.
    presented: Mutex<HashMap<String, u64>>,
    gzip_level: u32,
    chunk_size: usize,
    clock_lag: chrono::Duration,
}

/// Locks a mutex whose data stays consistent even if a holder panicked (single-step updates).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SimState {
    fn volume(&self, zone: &str) -> ZoneVolume {
        self.volumes.get(zone)
    }

    fn retention(&self, zone: &str) -> bool {
        lock(&self.retention)
            .get(zone)
            .copied()
            .unwrap_or(self.retention_default)
    }

    pub(crate) fn authorised(&self, headers: &HeaderMap) -> bool {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let seen = |credential: &str| {
            *lock(&self.presented)
                .entry(credential_fingerprint(credential))
                .or_default() += 1;
        };
        if let Some(token) = text("authorization").and_then(|v| v.strip_prefix("Bearer ")) {
            seen(token);
            return self.tokens.iter().any(|t| t == token);
        }
        match (text("x-auth-email"), text("x-auth-key")) {
            (Some(email), Some(key)) => {
                seen(&format!("{email}:{key}"));
                self.api_keys.iter().any(|(e, k)| e == email && k == key)
            }
            _ => false,
        }
    }
}

/// A short, one-way fingerprint of a credential (the first 16 hex digits of its
/// SHA-256; `email:key` for the legacy pair): what the request log keeps instead of it.
pub fn credential_fingerprint(credential: &str) -> String {
    let digest = Sha256::digest(credential.as_bytes());
    hex::encode(&digest[..8])
}

/// A running simulator, serving until dropped or shut down.
pub struct Simulator {
    addr: SocketAddr,
    state: Arc<SimState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Simulator {
    /// Binds `addr` (port 0 picks a free port) and serves in a background task.
    pub async fn start(config: SimConfig, addr: SocketAddr) -> std::io::Result<Self> {
        let generator = Generator::new(config.seed);
        let volumes = Volumes {
            default: config.default_volume,
            zones: Arc::new(Mutex::new(config.zones)),
        };
        let pusher = Pusher::new(
            generator,
            volumes.clone(),
            config.push,
            config.gzip_level,
            config.chunk_size,
        )
        .map_err(std::io::Error::other)?;
        let state = Arc::new(SimState {
            generator,
            volumes,
            pusher,
            retention: Mutex::new(HashMap::new()),
            retention_default: config.retention_default,
            tokens: config.tokens,
            api_keys: config.api_keys,
            faults: FaultBook::new(config.faults),
            received: Mutex::new(HashMap::new()),
            presented: Mutex::new(HashMap::new()),
            gzip_level: config.gzip_level.min(9),
            chunk_size: config.chunk_size.max(1024),
            clock_lag: chrono::Duration::from_std(config.clock_lag).unwrap_or_default(),
        });
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
        });
        Ok(Self {
            addr,
            state,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Starts on a free port of 127.0.0.1.
    pub async fn start_local(config: SimConfig) -> std::io::Result<Self> {
        Self::start(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: what a Logpull client takes as its API base.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn faults(&self) -> &FaultBook {
        &self.state.faults
    }

    pub fn generator(&self) -> Generator {
        self.state.generator
    }

    pub fn volume(&self, zone: &str) -> ZoneVolume {
        self.state.volume(zone)
    }

    pub fn set_volume(&self, zone: &str, volume: ZoneVolume) {
        self.state.volumes.set(zone, volume);
    }

    /// The Logpush side: jobs, clock, push faults and delivery stats.
    pub fn logpush(&self) -> &Pusher {
        &self.state.pusher
    }

    /// How many `logs/received` requests for `zone` reached the handler.
    pub fn received_requests(&self, zone: &str) -> u64 {
        lock(&self.state.received).get(zone).copied().unwrap_or(0)
    }

    /// Fingerprints ([`credential_fingerprint`]) of every credential presented to this
    /// simulator, accepted or not, with how often: which tokens reached it, without
    /// keeping the tokens themselves.
    pub fn credentials_seen(&self) -> HashMap<String, u64> {
        lock(&self.state.presented).clone()
    }

    /// Stops accepting, lets in-flight responses finish, and waits for the server task.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        self.state.pusher.stop();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            None => Ok(()),
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.state.pusher.stop();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/client/v4/zones/{zone}/logs/received", get(received))
        .route("/client/v4/zones/{zone}/logs/received/fields", get(fields))
        .route("/client/v4/zones/{zone}/logs/rayids/{ray}", get(ray_lookup))
        .route(
            "/client/v4/zones/{zone}/logpush/datasets/{dataset}/fields",
            get(logpush_fields),
        )
        .route(
            "/client/v4/zones/{zone}/logs/control/retention/flag",
            get(retention_get).post(retention_set),
        )
        .route(
            "/__sim/faults",
            get(faults_list).post(faults_add).delete(faults_clear),
        )
        .route(
            "/client/v4/zones/{zone}/logpush/jobs",
            get(logpush::list).post(logpush::create),
        )
        .route(
            "/client/v4/zones/{zone}/logpush/jobs/{job}",
            get(logpush::get)
                .put(logpush::update)
                .delete(logpush::delete),
        )
        .route(
            "/__sim/logpush/faults",
            get(push_faults_list)
                .post(push_faults_add)
                .delete(push_faults_clear),
        )
        .route(
            "/__sim/logpush/clock",
            get(push_clock).post(push_clock_advance),
        )
        .route("/__sim/logpush/stats", get(push_stats))
        .route("/__sim/stats", get(stats))
        .with_state(state)
}

/// Cloudflare's v4 error envelope.
pub(crate) fn cf_error(status: StatusCode, code: u32, message: impl Into<String>) -> Response {
    let body = json!({
        "success": false,
        "errors": [{ "code": code, "message": message.into() }],
        "messages": [],
        "result": null,
    });
    (status, Json(body)).into_response()
}

pub(crate) fn cf_result(result: serde_json::Value) -> Response {
    Json(json!({ "success": true, "errors": [], "messages": [], "result": result })).into_response()
}

pub(crate) fn auth_error() -> Response {
    cf_error(StatusCode::FORBIDDEN, 10000, "Authentication error")
}

fn bad_query(message: impl std::fmt::Display) -> Response {
    cf_error(
        StatusCode::BAD_REQUEST,
        1010,
        format!("bad query: {message}"),
    )
}

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

async fn received(
    AxumState(state): AxumState<Arc<SimState>>,
    Path(zone): Path<String>,
    params: Params,
    headers: HeaderMap,
) -> Response {
    if !state.authorised(&headers) {
        return auth_error();
    }
    *lock(&state.received).entry(zone.clone()).or_default() += 1;
    let params = match params {
        Ok(Query(p)) => p,
        Err(e) => return bad_query(e.body_text()),
    };
    let sel = match parse_selection(&params, Utc::now() - state.clock_lag) {
        Ok(sel) => sel,
        Err(resp) => return *resp,
    };
    if !state.retention(&zone) {
        return cf_error(
            StatusCode::BAD_REQUEST,
            1002,
            "log retention is disabled for this zone; enable it with logs/control/retention/flag",
        );
    }
    let fault = state.faults.take(&zone, sel.start_ns, sel.end_ns);
    if let Some(delay) = fault.as_ref().and_then(Fault::slow_delay) {
        tokio::time::sleep(delay).await;
    }
    match fault {
        Some(Fault::RateLimited { retry_after_secs }) => {
            let mut resp = cf_error(
                StatusCode::TOO_MANY_REQUESTS,
                971,
                "Please wait and consider throttling your request speed",
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            return resp;
        }
        Some(Fault::ServerError { status }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return cf_error(status, 1000, "Internal Server Error");
        }
        Some(Fault::BadToken) => return auth_error(),
        _ => {}
    }
    let gzip = accepts_gzip(&headers);
    let records = state.generator.window(&zone, state.volume(&zone), sel);
    let producer = BodyProducer {
        records,
        gzip: gzip.then(|| GzEncoder::new(Vec::new(), Compression::new(state.gzip_level))),
        fault,
        line: 0,
        sent: 0,
        stalled: false,
        chunk_size: state.chunk_size,
        state: Progress::Streaming,
    };
    let stream = futures::stream::unfold(producer, |mut p| async move {
        if p.state == Progress::ResetPending {
            // Give the partial chunk time to leave before the connection is dropped.
            tokio::time::sleep(Duration::from_millis(20)).await;
            p.state = Progress::Done;
            return Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "simulated connection reset",
                )),
                p,
            ));
        }
        if let (
            Some(Fault::StallMidBody {
                after_bytes,
                stall_ms,
            }),
            false,
        ) = (&p.fault, p.stalled)
        {
            if p.sent >= *after_bytes {
                p.stalled = true;
                tokio::time::sleep(Duration::from_millis(*stall_ms)).await;
            }
        }
        let item = p.next_chunk()?;
        Some((Ok::<Bytes, std::io::Error>(item), p))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|enc| {
            enc.split(';')
                .next()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case("gzip"))
        })
}

/// Applies Cloudflare's rules to a `logs/received` query. `Err` is the 400 response.
fn parse_selection(
    params: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Selection, Box<Response>> {
    let time = |name: &str| -> Result<DateTime<Utc>, Box<Response>> {
        let raw = params.get(name).ok_or_else(|| {
            Box::new(bad_query(format!("error parsing time: {name} is required")))
        })?;
        parse_time(raw).ok_or_else(|| {
            Box::new(bad_query(format!(
                "error parsing time: cannot parse {name} {raw:?} as RFC 3339 or unix seconds"
            )))
        })
    };
    let start = time("start")?;
    let end = time("end")?;
    let range_err = |what: &str| {
        Box::new(bad_query(format!(
            "error parsing time: invalid time range: {what}"
        )))
    };
    if start >= end {
        return Err(range_err("start must be earlier than end"));
    }
    if start < now - chrono::Duration::from_std(RETENTION).unwrap_or_default() {
        return Err(range_err(
            "too early: logs older than 168h0m0s are not available",
        ));
    }
    if end > now - chrono::Duration::from_std(MIN_AGE).unwrap_or_default() {
        return Err(range_err("too late: end must be at least 1m0s in the past"));
    }
    if end - start > chrono::Duration::from_std(MAX_RANGE).unwrap_or_default() {
        return Err(range_err(
            "too long: maximum query range (difference between start and end) is 1h0m0s",
        ));
    }
    let fields = match params.get("fields").map(String::as_str) {
        None | Some("") => DEFAULT_FIELDS.to_vec(),
        Some(list) => {
            let mut fields = Vec::new();
            for name in list.split(',').map(str::trim) {
                let f = Field::parse(name)
                    .ok_or_else(|| Box::new(bad_query(format!("unknown field: {name:?}"))))?;
                if !fields.contains(&f) {
                    fields.push(f);
                }
            }
            fields
        }
    };
    let timestamps = match params.get("timestamps") {
        None => TimestampFormat::UnixNano,
        Some(t) => TimestampFormat::parse(t).ok_or_else(|| {
            Box::new(bad_query(format!(
                "invalid timestamps {t:?}: must be one of unixnano, unix, rfc3339"
            )))
        })?,
    };
    let count = match params.get("count") {
        None => None,
        Some(c) => match c.parse::<u64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(Box::new(bad_query(format!(
                    "invalid count {c:?}: must be a positive integer"
                ))))
            }
        },
    };
    let sample = match params.get("sample") {
        None => None,
        Some(s) => match s.parse::<f64>() {
            Ok(x) if (0.001..=1.0).contains(&x) => Some(x),
            _ => {
                return Err(Box::new(bad_query(format!(
                    "invalid sample {s:?}: must be between 0.001 and 1.0"
                ))))
            }
        },
    };
    let ns = |t: DateTime<Utc>| t.timestamp_nanos_opt().unwrap_or(i64::MAX);
    Ok(Selection {
        start_ns: ns(start),
        end_ns: ns(end),
        fields,
        timestamps,
        count,
        sample,
        by_received: true,
    })
}

/// Cloudflare takes RFC 3339 or unix seconds for `start` and `end`.
fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        return DateTime::from_timestamp(raw.parse().ok()?, 0);
    }
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    Streaming,
    ResetPending,
    Done,
}

/// Produces the response body chunk by chunk, applying body faults on the way.
struct BodyProducer {
    records: WindowRecords,
    gzip: Option<GzEncoder<Vec<u8>>>,
    fault: Option<Fault>,
    line: u64,
    /// Encoded bytes handed to the server so far.
    sent: u64,
    /// Whether a `StallMidBody` fault has already paused this body.
    stalled: bool,
    chunk_size: usize,
    state: Progress,
}

impl BodyProducer {
    fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if self.state != Progress::Streaming {
                return None;
            }
            let mut raw = Vec::with_capacity(self.chunk_size + 4096);
            let mut finished = false;
            while raw.len() < self.chunk_size {
                let before = raw.len();
                if !self.records.write_next(&mut raw) {
                    finished = true;
                    break;
                }
                self.line += 1;
                if self.fault == Some(Fault::MalformedLine { line: self.line }) {
                    // Cut the object in half: still one line, no longer JSON.
                    let cut = before + (raw.len() - before) / 2;
                    raw.truncate(cut);
                    raw.push(b'\n');
                }
            }
            let mut out = gzip_step(&mut self.gzip, raw, finished);
            if finished {
                self.state = Progress::Done;
            }
            if let Some(Fault::ResetMidBody { after_bytes } | Fault::Truncated { after_bytes }) =
                self.fault
            {
                if self.sent + out.len() as u64 >= after_bytes {
                    out.truncate((after_bytes - self.sent) as usize);
                    let plain_cut =
                        self.gzip.is_none() && matches!(self.fault, Some(Fault::Truncated { .. }));
                    if plain_cut && out.last() == Some(&b'\n') {
                        // A cut exactly after a newline would look complete; cut mid-line.
                        out.pop();
                    }
                    self.state = match self.fault {
                        Some(Fault::ResetMidBody { .. }) => Progress::ResetPending,
                        _ => Progress::Done,
                    };
                    self.sent += out.len() as u64;
                    return Some(Bytes::from(out));
                }
            }
            self.sent += out.len() as u64;
            if !out.is_empty() {
                return Some(Bytes::from(out));
            }
        }
    }
}

/// The next piece of a body produced chunk by chunk: `raw` itself without an encoder,
/// else what the gzip encoder emits for it (its whole tail, and the encoder gone, once
/// `finished`).
pub(crate) fn gzip_step(
    gzip: &mut Option<GzEncoder<Vec<u8>>>,
    raw: Vec<u8>,
    finished: bool,
) -> Vec<u8> {
    let Some(enc) = gzip.as_mut() else {
        return raw;
    };
    // Writing into a Vec-backed encoder cannot fail.
    let _ = enc.write_all(&raw);
    if finished {
        match gzip.take().map(GzEncoder::finish) {
            Some(Ok(tail)) => tail,
            _ => Vec::new(),
        }
    } else {
        std::mem::take(enc.get_mut())
    }
}

async fn fields(
    AxumState(state): AxumState<Arc<SimState>>,
    Path(_zone): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !state.authorised(&headers) {
        return auth_error();
    }
    Json(field_list()).into_response()
}

/// Logpush's field list of a dataset (Cloudflare's envelope, `result` = name →
/// description). The simulator generates http_requests only.
async fn logpush_fields(
    AxumState(state): AxumState<Arc<SimState>>,
    Path((_zone, dataset)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !state.authorised(&headers) {
        return auth_error();
    }
    if dataset != "http_requests" {
        return cf_error(
            StatusCode::BAD_REQUEST,
            1004,
            format!("dataset {dataset:?}: the simulator generates http_requests only"),
        );
    }
    cf_result(field_list())
}

/// Every http_requests field with its description: what Logpull's and Logpush's field
/// lists answer.
fn field_list() -> serde_json::Value {
    serde_json::Value::Object(
        Field::ALL
            .iter()
            .map(|f| (f.name().to_owned(), f.description().into()))
            .collect(),
    )
}

async fn ray_lookup(
    AxumState(state): AxumState<Arc<SimState>>,
    Path((zone, ray)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
) -> Response {
    if !state.authorised(&headers) {
        return auth_error();
    }
    let params = match params {
        Ok(Query(p)) => p,
        Err(e) => return bad_query(e.body_text()),
    };
    let fields = match params.get("fields").map(String::as_str) {
        None | Some("") => DEFAULT_FIELDS.to_vec(),
        Some(list) => {
            let mut out = Vec::new();
            for name in list.split(',').map(str::trim) {
                match Field::parse(name) {
                    Some(f) => out.push(f),
                    None => return bad_query(format!("unknown field: {name:?}")),
                }
            }
            out
        }
    };
    let timestamps = match params.get("timestamps").map(|t| TimestampFormat::parse(t)) {
        None => TimestampFormat::UnixNano,
        Some(Some(t)) => t,
        Some(None) => {
            return bad_query("invalid timestamps: must be one of unixnano, unix, rfc3339")
        }
    };
    let mut out = Vec::new();
    if !state.generator.lookup_ray(
        &zone,
        &ray,
        &state.volume(&zone),
        &fields,
        timestamps,
        &mut out,
    ) {
        return cf_error(
            StatusCode::NOT_FOUND,
            1004,
            format!("ray ID {ray} not found"),
        );
    }
    ([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response()
}

#[derive(Deserialize)]
struct RetentionBody {
    flag: bool,
}

async fn retention_get(
    AxumState(state): AxumState<Arc<SimState>>,
    Path(zone): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !state.authorised(&headers) {
        return auth_error();
    }
    cf_result(json!({ "flag": state.retention(&zone) }))
}

async fn retention_set(
    AxumState(state): AxumState<Arc<SimState>>,
    Path(zone): Path<String>,
    headers: HeaderMap,
    body: Result<Json<RetentionBody>, JsonRejection>,
) -> Response {
    if !state.authorised(&headers) {
        return auth_error();
    }
    let Ok(Json(body)) = body else {
        return cf_error(
            StatusCode::BAD_REQUEST,
            1001,
            "body must be {\"flag\": true|false}",
        );
    };
    lock(&state.retention).insert(zone, body.flag);
    cf_result(json!({ "flag": body.flag }))
}

async fn faults_list(AxumState(state): AxumState<Arc<SimState>>) -> Json<Vec<FaultRule>> {
    Json(state.faults.list())
}

async fn faults_add(
    AxumState(state): AxumState<Arc<SimState>>,
    body: Result<Json<FaultRule>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(rule)) => {
            state.faults.add(rule);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    }
}

async fn faults_clear(AxumState(state): AxumState<Arc<SimState>>) -> StatusCode {
    state.faults.clear();
    StatusCode::NO_CONTENT
}

#[derive(Serialize)]
struct Stats {
    seed: u64,
    received_requests: HashMap<String, u64>,
    credentials_seen: HashMap<String, u64>,
    /// Per Logpush job id: what it delivered, retried and dropped.
    logpush: std::collections::BTreeMap<u64, JobStats>,
}

async fn stats(AxumState(state): AxumState<Arc<SimState>>) -> Json<Stats> {
    Json(Stats {
        seed: state.generator.seed(),
        received_requests: lock(&state.received).clone(),
        credentials_seen: lock(&state.presented).clone(),
        logpush: state.pusher.stats(),
    })
}

async fn push_stats(
    AxumState(state): AxumState<Arc<SimState>>,
) -> Json<std::collections::BTreeMap<u64, JobStats>> {
    Json(state.pusher.stats())
}

async fn push_faults_list(AxumState(state): AxumState<Arc<SimState>>) -> Json<Vec<PushFaultRule>> {
    Json(state.pusher.faults().list())
}

async fn push_faults_add(
    AxumState(state): AxumState<Arc<SimState>>,
    body: Result<Json<PushFaultRule>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(rule)) => {
            state.pusher.faults().add(rule);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    }
}

async fn push_faults_clear(AxumState(state): AxumState<Arc<SimState>>) -> StatusCode {
    state.pusher.faults().clear();
    StatusCode::NO_CONTENT
}

fn clock_view(pusher: &Pusher) -> serde_json::Value {
    json!({ "now": pusher.now(), "manual": pusher.manual_clock() })
}

async fn push_clock(AxumState(state): AxumState<Arc<SimState>>) -> Json<serde_json::Value> {
    Json(clock_view(&state.pusher))
}

#[derive(Deserialize)]
struct Advance {
    advance_secs: u64,
    /// Wait until what became due is delivered or dropped (default true).
    #[serde(default)]
    wait: Option<bool>,
}

async fn push_clock_advance(
    AxumState(state): AxumState<Arc<SimState>>,
    body: Result<Json<Advance>, JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return (
            StatusCode::BAD_REQUEST,
            "body must be {\"advance_secs\": N[, \"wait\": bool]}",
        )
            .into_response();
    };
    if let Err(e) = state.pusher.advance(Duration::from_secs(body.advance_secs)) {
        return (StatusCode::CONFLICT, e).into_response();
    }
    if body.wait.unwrap_or(true) {
        state.pusher.settled().await;
    }
    Json(clock_view(&state.pusher)).into_response()
}
