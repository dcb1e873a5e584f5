//! Cloudflare's Logpush jobs API, as a client: `{base}/client/v4/zones/{zone}/logpush/jobs`
//! create, list, get, update and delete, in Cloudflare's envelope
//! `{success, errors, messages, result}`.
//!
//! The base is the zone's ([`CloudflareApi::base_for`]: the allow-listed Cloudflare API
//! for a real zone, its simulator for a simulated one) and the token is the zone's, so
//! this client sends a token exactly where the Logpull client does. Redirects are not
//! followed. A job's `destination_conf` carries the destination's secret: it is sent
//! once, at creation, and never read back, logged or kept ([`RemoteJob`] has no such
//! field); error messages are scrubbed of it ([`scrub`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use rainlogs_core::error::{error_chain, Classify, ErrorClass};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use crate::endpoint::{CloudflareApi, ZoneEndpoint};

/// How long one call to the jobs API may take (creation includes Cloudflare's
/// validation upload to the receiver).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A job as Cloudflare reports it (without `destination_conf`, which holds a secret).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RemoteJob {
    pub id: i64,
    #[serde(default)]
    pub dataset: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, deserialize_with = "count")]
    pub max_upload_bytes: Option<i64>,
    #[serde(default, deserialize_with = "count")]
    pub max_upload_records: Option<i64>,
    #[serde(default, deserialize_with = "count")]
    pub max_upload_interval_seconds: Option<i64>,
    /// The end of the last log interval pushed completely.
    #[serde(default)]
    pub last_complete: Option<DateTime<Utc>>,
    /// When the job last failed; `None` once it has succeeded since.
    #[serde(default)]
    pub last_error: Option<DateTime<Utc>>,
    #[serde(default)]
    pub error_message: Option<String>,
}

/// A number Cloudflare may also write as a float (`5e+06`) or a string of one.
fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    let n = match &v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Some(Value::String(s)) => s.parse::<f64>().ok().map(|f| f as i64),
        _ => None,
    };
    n.map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("not a count: {v:?}")))
}

/// What a new job is made of. `Debug` leaves the destination (and its secret) out.
pub struct JobRequest {
    pub dataset: String,
    pub name: String,
    pub destination_conf: SecretString,
    pub fields: Vec<String>,
    /// `unixnano`, `unix` or `rfc3339`.
    pub timestamp_format: String,
    pub max_upload_bytes: Option<u64>,
    pub max_upload_records: Option<u64>,
    pub max_upload_interval_seconds: Option<u64>,
}

impl std::fmt::Debug for JobRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRequest")
            .field("dataset", &self.dataset)
            .field("name", &self.name)
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

impl JobRequest {
    /// What an error message must not repeat: the destination, and each `header_*`
    /// value in it — raw, decoded, and without its `Bearer ` — longest first.
    fn secret_parts(&self) -> Vec<String> {
        let conf = self.destination_conf.expose_secret();
        let mut parts = vec![conf.to_owned()];
        if let Ok(url) = reqwest::Url::parse(conf) {
            for (name, value) in url.query_pairs() {
                // An S3-compatible destination carries its write key's secret.
                if name.starts_with("header_") || name == "secret-access-key" {
                    let value = value.into_owned();
                    if let Some(token) = value.strip_prefix("Bearer ") {
                        parts.push(token.to_owned());
                    }
                    parts.push(value);
                }
            }
            if let Some(query) = url.query() {
                parts.extend(
                    query
                        .split('&')
                        .filter(|p| p.starts_with("header_") || p.starts_with("secret-access-key="))
                        .filter_map(|p| p.split_once('=').map(|(_, v)| v.to_owned())),
                );
            }
        }
        parts.retain(|p| p.len() >= 8);
        parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
        parts.dedup();
        parts
    }

    /// The create body: enabled at once, NDJSON with the chosen fields and timestamps.
    fn body(&self) -> Value {
        let mut body = json!({
            "dataset": self.dataset,
            "name": self.name,
            "enabled": true,
            "destination_conf": self.destination_conf.expose_secret(),
            "output_options": {
                "output_type": "ndjson",
                "field_names": self.fields,
                "timestamp_format": self.timestamp_format,
            },
        });
        for (key, value) in [
            ("max_upload_bytes", self.max_upload_bytes),
            ("max_upload_records", self.max_upload_records),
            (
                "max_upload_interval_seconds",
                self.max_upload_interval_seconds,
            ),
        ] {
            if let Some(v) = value {
                body[key] = json!(v);
            }
        }
        body
    }
}

/// Why a call to the jobs API failed. Messages are Cloudflare's own (scrubbed of
/// secrets by the caller that knows them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("Cloudflare refused the zone's token (HTTP {status}: {message}); managing Logpush jobs needs a token with Logs Write on the zone (rainlogs zone set --token-env)")]
    Refused { status: u16, message: String },
    #[error("no Logpush job {job} at Cloudflare")]
    NotFound { job: i64 },
    #[error("Cloudflare refused the request (HTTP {status}{}): {message}", .code.map(|c| format!(", error {c}")).unwrap_or_default())]
    Rejected {
        status: u16,
        code: Option<i64>,
        message: String,
    },
    #[error("Cloudflare's jobs API is unavailable (HTTP {status}): {message}")]
    Unavailable { status: u16, message: String },
    #[error("could not reach the jobs API at {base}: {reason}")]
    Unreachable { base: String, reason: String },
    #[error("unexpected answer from the jobs API: {0}")]
    BadAnswer(String),
    #[error("HTTP client: {0}")]
    Client(String),
}

impl ApiError {
    /// The same error with `secret` replaced wherever a message repeats it.
    pub fn scrub(self, secret: &str) -> Self {
        let s = |m: String| scrub(&m, secret);
        match self {
            ApiError::Refused { status, message } => ApiError::Refused {
                status,
                message: s(message),
            },
            ApiError::Rejected {
                status,
                code,
                message,
            } => ApiError::Rejected {
                status,
                code,
                message: s(message),
            },
            ApiError::Unavailable { status, message } => ApiError::Unavailable {
                status,
                message: s(message),
            },
            ApiError::Unreachable { base, reason } => ApiError::Unreachable {
                base,
                reason: s(reason),
            },
            ApiError::BadAnswer(m) => ApiError::BadAnswer(s(m)),
            other => other,
        }
    }
}

/// `text` with every occurrence of `secret` (non-empty) replaced by `[secret]`.
pub fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, "[secret]")
    }
}

impl Classify for ApiError {
    fn class(&self) -> ErrorClass {
        match self {
            ApiError::Unavailable { .. } | ApiError::Unreachable { .. } => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Refused { .. } => "logpush.refused",
            ApiError::NotFound { .. } => "logpush.no_such_job",
            ApiError::Rejected { .. } => "logpush.rejected",
            ApiError::Unavailable { .. } => "logpush.unavailable",
            ApiError::Unreachable { .. } => "logpush.unreachable",
            ApiError::BadAnswer(_) => "logpush.bad_answer",
            ApiError::Client(_) => "logpush.client",
        }
    }
}

/// The jobs API of one zone, with its token.
pub struct JobsClient {
    http: reqwest::Client,
    base: String,
    zone: String,
    token: SecretString,
}

impl std::fmt::Debug for JobsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobsClient")
            .field("base", &self.base)
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<CfError>,
    #[serde(default)]
    result: Value,
}

#[derive(Deserialize)]
struct CfError {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: String,
}

impl JobsClient {
    /// The client for Cloudflare zone `cf_zone_id` whose endpoint is `endpoint`.
    pub fn new(
        cloudflare: &CloudflareApi,
        endpoint: &ZoneEndpoint,
        cf_zone_id: &str,
        token: SecretString,
    ) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(CALL_TIMEOUT)
            // A redirect could carry the token to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("rainlogs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Client(e.to_string()))?;
        Ok(Self {
            http,
            base: cloudflare.base_for(endpoint).to_owned(),
            zone: cf_zone_id.to_owned(),
            token,
        })
    }

    fn url(&self, job: Option<i64>) -> String {
        match job {
            None => format!("{}/client/v4/zones/{}/logpush/jobs", self.base, self.zone),
            Some(id) => format!(
                "{}/client/v4/zones/{}/logpush/jobs/{id}",
                self.base, self.zone
            ),
        }
    }

    /// Creates an enabled job. Cloudflare first sends the validation upload to its
    /// destination and refuses the job (error 1002) unless that is accepted.
    pub async fn create(&self, job: &JobRequest) -> Result<RemoteJob, ApiError> {
        let result = self
            .call(reqwest::Method::POST, None, Some(job.body()))
            .await
            .map_err(|e| {
                job.secret_parts()
                    .iter()
                    .fold(e, |e, secret| e.scrub(secret))
            })?;
        parse(result)
    }

    /// Every job of the zone.
    pub async fn list(&self) -> Result<Vec<RemoteJob>, ApiError> {
        parse(self.call(reqwest::Method::GET, None, None).await?)
    }

    pub async fn get(&self, job: i64) -> Result<RemoteJob, ApiError> {
        parse(self.call(reqwest::Method::GET, Some(job), None).await?)
    }

    /// Switches a job on or off (Cloudflare validates the destination again when on).
    pub async fn set_enabled(&self, job: i64, enabled: bool) -> Result<RemoteJob, ApiError> {
        let body = json!({ "enabled": enabled });
        parse(
            self.call(reqwest::Method::PUT, Some(job), Some(body))
                .await?,
        )
    }

    pub async fn delete(&self, job: i64) -> Result<(), ApiError> {
        self.call(reqwest::Method::DELETE, Some(job), None).await?;
        Ok(())
    }

    /// Every field Cloudflare offers for `dataset` on this zone
    /// (`GET …/logpush/datasets/{dataset}/fields`), sorted: what a job pushes when no
    /// fields are given, since a field not pushed is lost for good.
    pub async fn dataset_fields(&self, dataset: &str) -> Result<Vec<String>, ApiError> {
        let url = format!(
            "{}/client/v4/zones/{}/logpush/datasets/{dataset}/fields",
            self.base, self.zone
        );
        let result = self.call_at(reqwest::Method::GET, url, None, None).await?;
        let fields: std::collections::BTreeMap<String, Value> = parse(result)?;
        if fields.is_empty() {
            return Err(ApiError::BadAnswer(format!(
                "Cloudflare lists no fields for dataset {dataset}"
            )));
        }
        Ok(fields.into_keys().collect())
    }

    async fn call(
        &self,
        method: reqwest::Method,
        job: Option<i64>,
        body: Option<Value>,
    ) -> Result<Value, ApiError> {
        self.call_at(method, self.url(job), job, body).await
    }

    async fn call_at(
        &self,
        method: reqwest::Method,
        url: String,
        job: Option<i64>,
        body: Option<Value>,
    ) -> Result<Value, ApiError> {
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(self.token.expose_secret());
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let resp = req.send().await.map_err(|e| ApiError::Unreachable {
            base: self.base.clone(),
            // Without the URL: reqwest's message repeats it, and the base is named.
            reason: error_chain(&e.without_url()),
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| ApiError::Unreachable {
            base: self.base.clone(),
            reason: error_chain(&e.without_url()),
        })?;
        let envelope: Option<Envelope> = serde_json::from_str(&text).ok();
        let message = || match &envelope {
            Some(e) if !e.errors.is_empty() => e
                .errors
                .iter()
                .map(|x| x.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            _ => text.chars().take(300).collect::<String>().trim().to_owned(),
        };
        let code = || envelope.as_ref().and_then(|e| e.errors.first()?.code);
        match status {
            s if s.is_success() => match envelope {
                Some(e) if e.success => Ok(e.result),
                Some(_) => Err(ApiError::Rejected {
                    status: s.as_u16(),
                    code: code(),
                    message: message(),
                }),
                None => Err(ApiError::BadAnswer(format!(
                    "HTTP {s} without Cloudflare's JSON envelope"
                ))),
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(ApiError::Refused {
                status: status.as_u16(),
                message: message(),
            }),
            StatusCode::NOT_FOUND if job.is_some() => Err(ApiError::NotFound {
                job: job.unwrap_or_default(),
            }),
            StatusCode::TOO_MANY_REQUESTS => Err(ApiError::Unavailable {
                status: status.as_u16(),
                message: message(),
            }),
            s if s.is_server_error() => Err(ApiError::Unavailable {
                status: s.as_u16(),
                message: message(),
            }),
            s => Err(ApiError::Rejected {
                status: s.as_u16(),
                code: code(),
                message: message(),
            }),
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::BadAnswer(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_reads_cloudflares_fields_and_never_holds_the_destination() {
        let job: RemoteJob = serde_json::from_value(json!({
            "id": 7, "dataset": "http_requests", "enabled": true,
            "destination_conf": "https://h/push/x?header_Authorization=Bearer%20s3cret",
            "max_upload_bytes": "5e+06", "max_upload_records": 1000.0,
            "max_upload_interval_seconds": 30,
            "last_complete": "2018-07-23T10:01:00Z", "last_error": null, "error_message": null
        }))
        .unwrap();
        assert_eq!(job.max_upload_bytes, Some(5_000_000));
        assert_eq!(job.max_upload_records, Some(1000));
        assert_eq!(
            job.last_complete.map(|t| t.to_rfc3339()),
            Some("2018-07-23T10:01:00+00:00".into())
        );
        assert!(!format!("{job:?}").contains("s3cret"));
    }

    #[test]
    fn an_s3_destinations_secret_key_is_scrubbed_from_errors() {
        let req = JobRequest {
            dataset: "http_requests".into(),
            name: "n".into(),
            destination_conf: SecretString::from(
                "s3://b/d/{DATE}?region=garage&access-key-id=GKw&secret-access-key=w%2Bs%2Fecret0123456789&endpoint=https%3A%2F%2Fs3.example.com",
            ),
            fields: vec!["RayID".into()],
            timestamp_format: "unixnano".into(),
            max_upload_bytes: None,
            max_upload_records: None,
            max_upload_interval_seconds: None,
        };
        let parts = req.secret_parts();
        for echoed in ["w+s/ecret0123456789", "w%2Bs%2Fecret0123456789"] {
            let e = ApiError::BadAnswer(format!("got {echoed} back"));
            let e = parts.iter().fold(e, |e, p| e.scrub(p));
            assert!(!e.to_string().contains("ecret0123456789"), "{e}");
        }
    }

    #[test]
    fn the_request_debug_and_errors_keep_the_secret_out() {
        let req = JobRequest {
            dataset: "http_requests".into(),
            name: "n".into(),
            destination_conf: SecretString::from(
                "https://h/push/x?header_Authorization=Bearer%20s3cret0123456789",
            ),
            fields: vec!["RayID".into()],
            timestamp_format: "unixnano".into(),
            max_upload_bytes: None,
            max_upload_records: Some(1000),
            max_upload_interval_seconds: None,
        };
        assert!(!format!("{req:?}").contains("s3cret0123456789"));
        // Cloudflare may repeat the destination, the header value or the bare secret.
        let parts = req.secret_parts();
        for echoed in [
            "https://h/push/x?header_Authorization=Bearer%20s3cret0123456789",
            "Bearer%20s3cret0123456789",
            "Bearer s3cret0123456789",
            "s3cret0123456789",
        ] {
            let e = ApiError::BadAnswer(format!("got {echoed} back"));
            let e = parts.iter().fold(e, |e, p| e.scrub(p));
            assert!(!e.to_string().contains("s3cret0123456789"), "{e}");
        }
        assert_eq!(req.body()["max_upload_records"], 1000);
        assert!(req.body().get("max_upload_bytes").is_none());
        let e = ApiError::Rejected {
            status: 400,
            code: Some(1002),
            message: "error validating destination: POST https://h/push/x?header_Authorization=Bearer%20s3cret0123456789".into(),
        }
        .scrub("s3cret0123456789");
        assert!(
            !e.to_string().contains("s3cret0123456789") && e.to_string().contains("1002"),
            "{e}"
        );
    }
}
