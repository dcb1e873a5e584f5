//! The Cloudflare Logpull client: pulls one window of a zone's `http_requests` logs as
//! a stream of checked NDJSON, and reads the fields and retention endpoints.
//!
//! - [`request`]: the window and its options, checked against Cloudflare's rules;
//! - [`credentials`]: API token or legacy key, held in `secrecy` types;
//! - [`body`]: streaming gzip decoding and line-by-line NDJSON checking, with record
//!   and byte counts and the SHA-256 of the raw NDJSON;
//! - [`error`]: typed failures, classified retryable or permanent.
//!
//! Retries inside the client are bounded and happen only before the body starts (429
//! honouring Retry-After up to [`RetryPolicy::max_wait`], 5xx, connection failures,
//! head timeouts): once bytes have gone to a sink, only the caller can restart the
//! window cleanly. docs/LOGPULL.md describes the behaviour in full.

pub mod body;
pub mod credentials;
pub mod error;
pub mod request;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_compression::tokio::bufread::GzipDecoder;
use futures::TryStreamExt;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER,
};
use reqwest::{Response, StatusCode};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::io::StreamReader;

pub use body::{MalformedLine, MalformedPolicy, WindowBody, WindowSummary};
pub use credentials::Credentials;
pub use error::LogpullError;
pub use request::{RequestError, Timestamps, WindowRequest, ZoneId};

use body::TransportError;
use rainlogs_core::error::{error_chain, Classify};

/// Cloudflare's API base (the domain's constant).
pub use rainlogs_archive::endpoint::CLOUDFLARE_API;
/// The most of an error body read to find Cloudflare's reason.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Bounded retries before the body starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// First backoff for 5xx and network errors; doubles each attempt.
    pub base_backoff: Duration,
    /// The longest the client waits before a retry; a longer Retry-After is returned
    /// to the caller as [`LogpullError::RateLimited`] instead.
    pub max_wait: Duration,
}

impl RetryPolicy {
    /// No retries: every failure goes straight to the caller (the dispatcher retries).
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            base_backoff: Duration::ZERO,
            max_wait: Duration::ZERO,
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_backoff: Duration::from_millis(500),
            max_wait: Duration::from_secs(10),
        }
    }
}

/// How the client talks to Cloudflare.
#[derive(Debug, Clone)]
pub struct LogpullConfig {
    /// API base, `https://api.cloudflare.com` (or a simulator's URL).
    pub base_url: String,
    pub connect_timeout: Duration,
    /// From sending the request to the response's status and headers.
    pub first_byte_timeout: Duration,
    /// The longest gap between two pieces of body.
    pub idle_timeout: Duration,
    pub retry: RetryPolicy,
    pub malformed: MalformedPolicy,
    /// Ask for gzip (recommended: its trailer makes truncation always detectable).
    pub gzip: bool,
}

impl Default for LogpullConfig {
    fn default() -> Self {
        Self {
            base_url: CLOUDFLARE_API.to_owned(),
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            malformed: MalformedPolicy::default(),
            gzip: true,
        }
    }
}

/// A Logpull client for one set of credentials. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LogpullClient {
    http: reqwest::Client,
    config: LogpullConfig,
    auth: HeaderMap,
}

impl LogpullClient {
    /// Builds the HTTP client (rustls, no I/O yet).
    pub fn new(config: LogpullConfig, credentials: &Credentials) -> Result<Self, LogpullError> {
        let auth = credentials.headers()?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            // Logpull never redirects; following one could carry the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("rainlogs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LogpullError::Client(e.to_string()))?;
        Ok(Self { http, config, auth })
    }

    pub fn config(&self) -> &LogpullConfig {
        &self.config
    }

    fn url(&self, zone: &ZoneId, tail: &str) -> String {
        format!(
            "{}/client/v4/zones/{}/logs/{tail}",
            self.config.base_url.trim_end_matches('/'),
            zone.as_str()
        )
    }

    /// Validates `req`, sends it (retrying per the policy until the body starts) and
    /// returns the body to read.
    pub async fn open(&self, req: &WindowRequest) -> Result<WindowBody, LogpullError> {
        req.validate(chrono::Utc::now())?;
        let what = req.describe();
        let url = self.url(&req.zone, "received");
        let query = req.query();
        let resp = self
            .send_with_retries(&what, || {
                let mut builder = self.http.get(&url).query(&query).headers(self.auth.clone());
                if self.config.gzip {
                    builder = builder.header(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
                }
                builder
            })
            .await?;
        let gzip = match resp
            .headers()
            .get(CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("?"))
        {
            None | Some("identity") => false,
            Some(e) if e.eq_ignore_ascii_case("gzip") => true,
            Some(other) => {
                return Err(LogpullError::UnexpectedResponse {
                    what,
                    reason: format!("unsupported Content-Encoding {other:?}"),
                })
            }
        };
        let wire = Arc::new(AtomicU64::new(0));
        let counter = wire.clone();
        let stream = resp
            .bytes_stream()
            .inspect_ok(move |chunk| {
                counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            })
            .map_err(|e| std::io::Error::other(TransportError(error_chain(&e))));
        let raw = StreamReader::new(stream);
        let reader: Box<dyn tokio::io::AsyncRead + Send + Unpin> = if gzip {
            let mut dec = GzipDecoder::new(raw);
            // Concatenated gzip members are one valid gzip stream.
            dec.multiple_members(true);
            Box::new(dec)
        } else {
            Box::new(raw)
        };
        Ok(WindowBody::new(
            reader,
            what,
            gzip,
            wire,
            self.config.idle_timeout,
            self.config.malformed,
        ))
    }

    /// Pulls a whole window into `sink`, returning its summary. On error the sink holds
    /// a partial payload the caller must discard.
    pub async fn fetch_into<W>(
        &self,
        req: &WindowRequest,
        sink: &mut W,
    ) -> Result<WindowSummary, LogpullError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let mut body = self.open(req).await?;
        while let Some(chunk) = body.next_chunk().await? {
            sink.write_all(&chunk)
                .await
                .map_err(|e| LogpullError::Sink {
                    what: req.describe(),
                    reason: e.to_string(),
                })?;
        }
        sink.flush().await.map_err(|e| LogpullError::Sink {
            what: req.describe(),
            reason: e.to_string(),
        })?;
        Ok(body.summary())
    }

    /// The fields Cloudflare offers for `zone`.
    pub async fn fields(&self, zone: &ZoneId) -> Result<Vec<String>, LogpullError> {
        let what = format!("zone {zone} fields");
        let url = self.url(zone, "received/fields");
        let resp = self
            .send_with_retries(&what, || self.http.get(&url).headers(self.auth.clone()))
            .await?;
        let map: serde_json::Map<String, serde_json::Value> = read_json(resp, &what).await?;
        Ok(map.into_iter().map(|(k, _)| k).collect())
    }

    /// Checks a configured field list against what Cloudflare offers for `zone`;
    /// the first unknown field is named in [`LogpullError::UnknownField`].
    pub async fn validate_fields(
        &self,
        zone: &ZoneId,
        wanted: &[String],
    ) -> Result<(), LogpullError> {
        let offered = self.fields(zone).await?;
        match wanted.iter().find(|w| !offered.contains(w)) {
            Some(field) => Err(LogpullError::UnknownField {
                zone: zone.to_string(),
                field: field.chars().take(128).collect(),
            }),
            None => Ok(()),
        }
    }

    /// Whether log retention is switched on for `zone`.
    pub async fn retention(&self, zone: &ZoneId) -> Result<bool, LogpullError> {
        let what = format!("zone {zone} retention flag");
        let url = self.url(zone, "control/retention/flag");
        let resp = self
            .send_with_retries(&what, || self.http.get(&url).headers(self.auth.clone()))
            .await?;
        retention_flag(read_json(resp, &what).await?, &what)
    }

    /// Switches log retention on or off for `zone`; returns the flag now set.
    pub async fn set_retention(&self, zone: &ZoneId, on: bool) -> Result<bool, LogpullError> {
        let what = format!("zone {zone} retention flag");
        let url = self.url(zone, "control/retention/flag");
        let body = serde_json::json!({ "flag": on }).to_string();
        let resp = self
            .send_with_retries(&what, || {
                self.http
                    .post(&url)
                    .headers(self.auth.clone())
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(body.clone())
            })
            .await?;
        retention_flag(read_json(resp, &what).await?, &what)
    }

    /// Sends a request until it gets a 2xx head, retrying retryable failures within
    /// the policy; maps the final failure to a typed error.
    async fn send_with_retries<F>(&self, what: &str, build: F) -> Result<Response, LogpullError>
    where
        F: Fn() -> reqwest::RequestBuilder,
    {
        let policy = self.config.retry;
        let mut attempt = 1;
        loop {
            let err =
                match tokio::time::timeout(self.config.first_byte_timeout, build().send()).await {
                    Err(_) => LogpullError::Timeout {
                        what: what.to_owned(),
                        phase: "response",
                        after: self.config.first_byte_timeout,
                    },
                    Ok(Err(e)) => LogpullError::Unreachable {
                        what: what.to_owned(),
                        reason: error_chain(&e),
                    },
                    Ok(Ok(resp)) if resp.status().is_success() => return Ok(resp),
                    Ok(Ok(resp)) => status_error(resp, what).await,
                };
            if attempt >= policy.max_attempts
                || !err.class().eq(&rainlogs_core::ErrorClass::Retryable)
            {
                return Err(err);
            }
            let wait = match err.retry_after() {
                Some(after) if after > policy.max_wait => return Err(err),
                Some(after) => after,
                None if matches!(err, LogpullError::RateLimited { .. }) => policy.base_backoff,
                None => {
                    (policy.base_backoff * 2u32.saturating_pow(attempt - 1)).min(policy.max_wait)
                }
            };
            tracing::warn!(%what, attempt, wait_ms = wait.as_millis() as u64, error = %err, "logpull: retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// Maps a non-2xx response to its typed error, with Cloudflare's reason.
async fn status_error(resp: Response, what: &str) -> LogpullError {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let reason = error_reason(resp).await;
    let what = what.to_owned();
    match status {
        StatusCode::TOO_MANY_REQUESTS => LogpullError::RateLimited {
            what,
            retry_after,
            reason,
        },
        StatusCode::BAD_REQUEST => LogpullError::bad_request(what, reason),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => LogpullError::Forbidden {
            what,
            status: status.as_u16(),
            reason,
        },
        s if s.is_server_error() => LogpullError::Server {
            what,
            status: s.as_u16(),
            reason,
        },
        s => LogpullError::Status {
            what,
            status: s.as_u16(),
            reason,
            retryable: s == StatusCode::REQUEST_TIMEOUT,
        },
    }
}

/// Cloudflare's `errors[].message`s, or the start of the body when it is not the
/// v4 envelope. Bounded in size; Cloudflare's messages carry no credentials.
async fn error_reason(mut resp: Response) -> String {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_LIMIT {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            _ => break,
        }
    }
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(default)]
        errors: Vec<Message>,
    }
    #[derive(serde::Deserialize)]
    struct Message {
        #[serde(default)]
        code: Option<i64>,
        #[serde(default)]
        message: String,
    }
    let reason = match serde_json::from_slice::<Envelope>(&body) {
        Ok(env) if !env.errors.is_empty() => env
            .errors
            .iter()
            .map(|m| match m.code {
                Some(c) => format!("{} (code {c})", m.message),
                None => m.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ if body.is_empty() => "empty body".to_owned(),
        _ => String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
    };
    reason.chars().take(500).collect()
}

async fn read_json<T: serde::de::DeserializeOwned>(
    resp: Response,
    what: &str,
) -> Result<T, LogpullError> {
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| LogpullError::BodyInterrupted {
            what: what.to_owned(),
            raw_bytes: 0,
            reason: error_chain(&e),
        })?;
    serde_json::from_slice(&bytes).map_err(|e| LogpullError::UnexpectedResponse {
        what: what.to_owned(),
        reason: format!("not the expected JSON: {e}"),
    })
}

fn retention_flag(v: serde_json::Value, what: &str) -> Result<bool, LogpullError> {
    v.pointer("/result/flag")
        .and_then(serde_json::Value::as_bool)
        .ok_or_else(|| LogpullError::UnexpectedResponse {
            what: what.to_owned(),
            reason: "no result.flag in the response".to_owned(),
        })
}
