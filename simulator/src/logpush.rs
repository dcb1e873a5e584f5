//! The Logpush jobs API of the simulator: `/client/v4/zones/{zone}/logpush/jobs`
//! (create, list, get, update, delete) with Cloudflare's fields, validation ranges and
//! response envelope, authenticated like the Logpull endpoints.
//!
//! A job here is what Cloudflare keeps: dataset, name, `destination_conf`, fields
//! (`output_options.field_names`, or the older `logpull_options` string), the three
//! `max_upload_*` limits, `enabled`, and the status fields `last_complete`, `last_error`
//! and `error_message`. Creating a job (and every update that leaves it enabled, as
//! Cloudflare re-validates on PUT) first sends the validation upload — the gzip of
//! `{"content":"tests"}` — to the destination, with its `header_*` parameters as
//! headers; anything but a 2xx refuses the job with Cloudflare's error 1002. Delivery
//! itself is [`crate::pusher`]'s.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::fields::{Field, DEFAULT_FIELDS};
use crate::generator::TimestampFormat;
use crate::s3_destination::{self, S3Destination};
use crate::server::{auth_error, cf_error, cf_result, SimState};

/// `max_upload_bytes`: 5 MB – 1 GB of uncompressed NDJSON, or 0 (off).
pub const UPLOAD_BYTES: (u64, u64) = (5_000_000, 1_000_000_000);
/// `max_upload_records`: 1,000 – 1,000,000 lines, or 0 (off).
pub const UPLOAD_RECORDS: (u64, u64) = (1_000, 1_000_000);
/// `max_upload_interval_seconds`: 30 – 300 s, or 0 (off: the default applies).
pub const UPLOAD_INTERVAL_SECS: (u64, u64) = (30, 300);
/// The batch interval of a job without `max_upload_interval_seconds`.
pub const DEFAULT_INTERVAL_SECS: u64 = 30;
/// The longest `destination_conf` Cloudflare takes.
pub const MAX_DESTINATION_CONF: usize = 4096;

/// Error codes of the jobs API (Cloudflare documents 1002 for a failed destination
/// validation; the others are the simulator's, in the same envelope).
pub mod codes {
    /// The body or a field is invalid.
    pub const INVALID: u32 = 1001;
    /// The destination did not accept the validation upload.
    pub const DESTINATION: u32 = 1002;
    /// No such job in this zone.
    pub const NOT_FOUND: u32 = 1003;
}

/// A job's `output_options`: the options the simulator honours, the rest kept as given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<f64>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    pub id: u64,
    pub dataset: String,
    pub name: Option<String>,
    pub enabled: bool,
    /// As given, `header_*` secrets included (Cloudflare shows it back the same way).
    pub destination_conf: String,
    pub logpull_options: Option<String>,
    pub output_options: Option<OutputOptions>,
    pub max_upload_bytes: Option<u64>,
    pub max_upload_records: Option<u64>,
    pub max_upload_interval_seconds: Option<u64>,
    pub frequency: String,
    pub kind: String,
    /// The end of the last log interval pushed completely (log time, not wall time).
    pub last_complete: Option<DateTime<Utc>>,
    /// When the job last failed; `null` again after a success.
    pub last_error: Option<DateTime<Utc>>,
    pub error_message: Option<String>,
}

/// The body of a create or update request (absent and `null` both mean "not given").
#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobBody {
    pub dataset: Option<String>,
    pub destination_conf: Option<String>,
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub logpull_options: Option<String>,
    pub output_options: Option<OutputOptions>,
    pub max_upload_bytes: Option<u64>,
    pub max_upload_records: Option<u64>,
    pub max_upload_interval_seconds: Option<u64>,
    pub frequency: Option<String>,
    pub kind: Option<String>,
}

/// An HTTP destination: the URL posted to (without its `header_*` parameters) and the
/// headers those parameters ask for. Debug hides header values (they are secrets).
#[derive(Clone, PartialEq, Eq)]
pub struct HttpDestination {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for HttpDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpDestination")
            .field("url", &self.url)
            .field("headers", &names)
            .finish()
    }
}

/// Where a job delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Http(HttpDestination),
    /// An S3-compatible bucket ([`crate::s3_destination`]).
    S3(S3Destination),
}

/// Parses a `destination_conf`: an HTTP destination (the URL and the headers its
/// `header_*` parameters ask for; `https://` anywhere, plain `http://` only to a
/// loopback host unless `allow_http` — Cloudflare itself takes HTTPS only, the
/// simulator's receivers in tests listen on 127.0.0.1), or an S3-compatible one
/// (`s3://BUCKET/PATH?region=…&access-key-id=…&secret-access-key=…&endpoint=…`).
pub fn parse_destination(conf: &str, allow_http: bool) -> Result<Destination, String> {
    if conf.len() > MAX_DESTINATION_CONF {
        return Err(format!(
            "destination_conf is longer than {MAX_DESTINATION_CONF} characters"
        ));
    }
    let url = Url::parse(conf).map_err(|e| format!("destination_conf is not a URL: {e}"))?;
    let loopback = matches!(
        url.host_str(),
        Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
    );
    match url.scheme() {
        "https" => {}
        "http" if allow_http || loopback => {}
        "http" => {
            return Err(
                "destination_conf must be an https:// URL (HTTP destinations need TLS)".into(),
            )
        }
        "s3" => return s3_destination::parse(&url, allow_http).map(Destination::S3),
        "r2" | "gs" | "azure" | "sentinelone" | "datadog" | "splunk" => {
            return Err(format!(
                "the simulator delivers to HTTP and S3-compatible destinations only, not {}://",
                url.scheme()
            ))
        }
        other => return Err(format!("destination_conf has unsupported scheme {other:?}")),
    }
    if url.host_str().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err("destination_conf needs a host and no user:password@".into());
    }
    let mut headers = Vec::new();
    let mut kept = Vec::new();
    for (name, value) in url.query_pairs() {
        match name.strip_prefix("header_") {
            Some(header) if !header.is_empty() => {
                if axum::http::HeaderName::from_bytes(header.as_bytes()).is_err()
                    || axum::http::HeaderValue::from_str(&value).is_err()
                {
                    return Err(format!(
                        "destination_conf parameter header_{header} is not a valid HTTP header"
                    ));
                }
                headers.push((header.to_owned(), value.into_owned()));
            }
            _ => kept.push((name.into_owned(), value.into_owned())),
        }
    }
    let mut target = url.clone();
    target.set_fragment(None);
    if kept.is_empty() {
        target.set_query(None);
    } else {
        target.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok(Destination::Http(HttpDestination {
        url: target.to_string(),
        headers,
    }))
}

/// What the pusher needs of a job, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliverySpec {
    pub destination: Destination,
    pub fields: Vec<Field>,
    pub timestamps: TimestampFormat,
    pub sample: Option<f64>,
    pub max_bytes: Option<u64>,
    pub max_records: Option<u64>,
    pub interval_secs: u64,
}

impl DeliverySpec {
    pub fn interval_ns(&self) -> i64 {
        self.interval_secs as i64 * 1_000_000_000
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        code: codes::INVALID,
        message: message.into(),
    }
}

/// A refused request: status, code and message of Cloudflare's error envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub message: String,
}

impl ApiError {
    pub(crate) fn destination(message: impl std::fmt::Display) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: codes::DESTINATION,
            message: format!("error validating destination: {message}"),
        }
    }

    fn into_response(self) -> Response {
        cf_error(self.status, self.code, self.message)
    }
}

/// A limit: `None` or 0 switch it off, anything else must lie in `range`.
fn limit(
    name: &str,
    value: Option<u64>,
    range: (u64, u64),
    unit: &str,
) -> Result<Option<u64>, ApiError> {
    match value {
        None | Some(0) => Ok(None),
        Some(v) if (range.0..=range.1).contains(&v) => Ok(Some(v)),
        Some(v) => Err(invalid(format!(
            "{name} must be between {} and {}{unit}, or 0 to disable it; got {v}",
            range.0, range.1
        ))),
    }
}

/// A job name: letters, digits, `-` and `.` (Cloudflare's rule), at most 512.
fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = name.len() <= 512
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "name {name:?} may contain only letters, digits, '-' and '.' (at most 512)"
        )))
    }
}

fn parse_fields(list: &[String]) -> Result<Vec<Field>, ApiError> {
    let mut fields = Vec::new();
    for name in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let f = Field::parse(name)
            .ok_or_else(|| invalid(format!("unknown field {name:?} for dataset http_requests")))?;
        if !fields.contains(&f) {
            fields.push(f);
        }
    }
    Ok(if fields.is_empty() {
        DEFAULT_FIELDS.to_vec()
    } else {
        fields
    })
}

/// Validates a job and derives its delivery settings. `output_options` wins over
/// `logpull_options` when both are given, as at Cloudflare.
pub fn delivery_spec(job: &Job, allow_http: bool) -> Result<DeliverySpec, ApiError> {
    if job.dataset != "http_requests" {
        return Err(invalid(format!(
            "dataset {:?}: the simulator generates http_requests only",
            job.dataset
        )));
    }
    if let Some(name) = &job.name {
        check_name(name)?;
    }
    let destination = parse_destination(&job.destination_conf, allow_http).map_err(invalid)?;
    let (mut fields, mut timestamps, mut sample) = (DEFAULT_FIELDS.to_vec(), None, None);
    if let Some(opts) = &job.logpull_options {
        for (k, v) in form_pairs(opts) {
            match k.as_str() {
                "fields" => {
                    fields = parse_fields(&v.split(',').map(str::to_owned).collect::<Vec<_>>())?
                }
                "timestamps" => timestamps = Some(v),
                "sample" => {
                    sample = Some(v.parse::<f64>().map_err(|_| {
                        invalid(format!("logpull_options sample={v:?} is not a number"))
                    })?)
                }
                "CVE-2021-44228" => {}
                other => {
                    return Err(invalid(format!(
                        "logpull_options: unknown option {other:?}"
                    )))
                }
            }
        }
    }
    if let Some(out) = &job.output_options {
        if let Some(names) = &out.field_names {
            fields = parse_fields(names)?;
        }
        if let Some(t) = &out.timestamp_format {
            timestamps = Some(t.clone());
        }
        if out.sample_rate.is_some() {
            sample = out.sample_rate;
        }
        if let Some(kind) = out.output_type.as_deref() {
            if kind != "ndjson" {
                return Err(invalid(format!(
                    "output_type {kind:?}: the simulator writes ndjson only"
                )));
            }
        }
    }
    let timestamps = match timestamps.as_deref() {
        None => TimestampFormat::UnixNano,
        Some(t) => TimestampFormat::parse(t).ok_or_else(|| {
            invalid(format!(
                "timestamp format {t:?} must be one of unixnano, unix, rfc3339"
            ))
        })?,
    };
    let sample = match sample {
        None => None,
        Some(1.0) => None,
        Some(s) if (0.001..1.0).contains(&s) => Some(s),
        Some(s) => return Err(invalid(format!("sample rate {s} must be in 0.001..=1"))),
    };
    let max_bytes = limit(
        "max_upload_bytes",
        job.max_upload_bytes,
        UPLOAD_BYTES,
        " bytes",
    )?;
    let max_records = limit(
        "max_upload_records",
        job.max_upload_records,
        UPLOAD_RECORDS,
        " records",
    )?;
    let interval = limit(
        "max_upload_interval_seconds",
        job.max_upload_interval_seconds,
        UPLOAD_INTERVAL_SECS,
        " seconds",
    )?;
    Ok(DeliverySpec {
        destination,
        fields,
        timestamps,
        sample,
        max_bytes,
        max_records,
        interval_secs: interval.unwrap_or(DEFAULT_INTERVAL_SECS),
    })
}

/// `a=b&c=d` pairs, percent-decoded (form decoding of the URL parser).
fn form_pairs(s: &str) -> Vec<(String, String)> {
    match Url::parse(&format!("http://x/?{s}")) {
        Ok(u) => u
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A new job from a create request (status fields empty, id not yet given).
pub fn job_from_create(body: JobBody) -> Result<Job, ApiError> {
    let destination_conf = body
        .destination_conf
        .ok_or_else(|| invalid("destination_conf is required"))?;
    Ok(Job {
        id: 0,
        dataset: body.dataset.unwrap_or_else(|| "http_requests".to_owned()),
        name: body.name,
        // Cloudflare creates jobs disabled unless asked.
        enabled: body.enabled.unwrap_or(false),
        destination_conf,
        logpull_options: body.logpull_options,
        output_options: body.output_options,
        max_upload_bytes: body.max_upload_bytes,
        max_upload_records: body.max_upload_records,
        max_upload_interval_seconds: body.max_upload_interval_seconds,
        frequency: body.frequency.unwrap_or_else(|| "high".to_owned()),
        kind: body.kind.unwrap_or_default(),
        last_complete: None,
        last_error: None,
        error_message: None,
    })
}

/// `job` with an update request applied (the dataset cannot change).
pub fn job_updated(job: &Job, body: JobBody) -> Result<Job, ApiError> {
    if body.dataset.as_ref().is_some_and(|d| *d != job.dataset) {
        return Err(invalid("dataset cannot be changed; create a new job"));
    }
    let mut next = job.clone();
    if let Some(v) = body.destination_conf {
        next.destination_conf = v;
    }
    if let Some(v) = body.name {
        next.name = Some(v);
    }
    if let Some(v) = body.enabled {
        next.enabled = v;
    }
    if let Some(v) = body.logpull_options {
        next.logpull_options = Some(v);
    }
    if let Some(v) = body.output_options {
        next.output_options = Some(v);
    }
    if let Some(v) = body.max_upload_bytes {
        next.max_upload_bytes = Some(v);
    }
    if let Some(v) = body.max_upload_records {
        next.max_upload_records = Some(v);
    }
    if let Some(v) = body.max_upload_interval_seconds {
        next.max_upload_interval_seconds = Some(v);
    }
    if let Some(v) = body.frequency {
        next.frequency = v;
    }
    if let Some(v) = body.kind {
        next.kind = v;
    }
    Ok(next)
}

fn body_error(e: JsonRejection) -> Response {
    invalid(format!("invalid request body: {}", e.body_text())).into_response()
}

fn not_found(id: u64) -> Response {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: codes::NOT_FOUND,
        message: format!("logpush job {id} not found"),
    }
    .into_response()
}

pub(crate) async fn create(
    AxumState(state): AxumState<Arc<SimState>>,
    Path(zone): Path<String>,
    headers: HeaderMap,
    body: Result<Json<JobBody>, JsonRejection>,
) -> Response {
    if !state.authorised(&headers) {
        return auth_error();
    }
    let body = match body {
        Ok(Json(b)) => b,
        Err(e) => return body_error(e),
    };
    match state.pusher.create_job(&zone, body).await {
        Ok(job) => cf_result(json!(job)),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn list(
    AxumState(state): AxumState<Arc<SimState>>,
    Path(zone): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !state.authorised(&headers) {
        return auth_error();
    }
    cf_result(json!(state.pusher.jobs(&zone)))
}

pub(crate) async fn get(
    AxumState(state): AxumState<Arc<SimState>>,
    Path((zone, id)): Path<(String, u64)>,
    headers: HeaderMap,
) -> Response {
    if !state.authorised(&headers) {
        return auth_error();
    }
    match state.pusher.job(&zone, id) {
        Some(job) => cf_result(json!(job)),
        None => not_found(id),
    }
}

pub(crate) async fn update(
    AxumState(state): AxumState<Arc<SimState>>,
    Path((zone, id)): Path<(String, u64)>,
    headers: HeaderMap,
    body: Result<Json<JobBody>, JsonRejection>,
) -> Response {
    if !state.authorised(&headers) {
        return auth_error();
    }
    let body = match body {
        Ok(Json(b)) => b,
        Err(e) => return body_error(e),
    };
    match state.pusher.update_job(&zone, id, body).await {
        Ok(Some(job)) => cf_result(json!(job)),
        Ok(None) => not_found(id),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn delete(
    AxumState(state): AxumState<Arc<SimState>>,
    Path((zone, id)): Path<(String, u64)>,
    headers: HeaderMap,
) -> Response {
    if !state.authorised(&headers) {
        return auth_error();
    }
    if state.pusher.delete_job(&zone, id) {
        cf_result(json!({ "id": id }))
    } else {
        not_found(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(conf: &str) -> Job {
        job_from_create(JobBody {
            destination_conf: Some(conf.to_owned()),
            ..JobBody::default()
        })
        .unwrap()
    }

    #[test]
    fn header_parameters_become_headers_and_leave_the_url() {
        let Ok(Destination::Http(d)) = parse_destination(
            "https://logs.example.com/push/abc?header_Authorization=Bearer%20s3cret&tags=a,b&header_X-Extra=1",
            false,
        ) else {
            panic!("an HTTP destination")
        };
        assert_eq!(d.url, "https://logs.example.com/push/abc?tags=a%2Cb");
        assert_eq!(
            d.headers,
            vec![
                ("Authorization".to_owned(), "Bearer s3cret".to_owned()),
                ("X-Extra".to_owned(), "1".to_owned())
            ]
        );
        assert!(
            !format!("{d:?}").contains("s3cret"),
            "Debug hides header values"
        );
    }

    #[test]
    fn plain_http_only_to_loopback_and_no_object_stores() {
        assert!(parse_destination("http://127.0.0.1:9/push/x", false).is_ok());
        assert!(parse_destination("http://logs.example.com/push/x", false).is_err());
        assert!(parse_destination("http://logs.example.com/push/x", true).is_ok());
        let e = parse_destination("s3://bucket/path?region=x", false).unwrap_err();
        assert!(e.contains("access-key-id"), "{e}");
        assert!(matches!(
            parse_destination(
                "s3://b/p?region=r&access-key-id=k&secret-access-key=s",
                false
            ),
            Ok(Destination::S3(_))
        ));
        let e = parse_destination("gs://bucket/path", false).unwrap_err();
        assert!(e.contains("S3-compatible destinations only"), "{e}");
        assert!(parse_destination("https://h/?header_Bad%20Name=x", false).is_err());
    }

    #[test]
    fn limits_follow_cloudflares_ranges_and_zero_switches_off() {
        let base = job("https://h/p");
        let with = |f: &dyn Fn(&mut Job)| {
            let mut j = base.clone();
            f(&mut j);
            delivery_spec(&j, false)
        };
        assert!(with(&|j| j.max_upload_bytes = Some(4_999_999)).is_err());
        assert!(with(&|j| j.max_upload_bytes = Some(1_000_000_001)).is_err());
        assert!(with(&|j| j.max_upload_records = Some(999)).is_err());
        assert!(with(&|j| j.max_upload_records = Some(1_000_001)).is_err());
        assert!(with(&|j| j.max_upload_interval_seconds = Some(29)).is_err());
        assert!(with(&|j| j.max_upload_interval_seconds = Some(301)).is_err());
        let ok = with(&|j| {
            j.max_upload_bytes = Some(5_000_000);
            j.max_upload_records = Some(0);
            j.max_upload_interval_seconds = Some(300);
        })
        .unwrap();
        assert_eq!(
            (ok.max_bytes, ok.max_records, ok.interval_secs),
            (Some(5_000_000), None, 300)
        );
        let e = with(&|j| j.max_upload_records = Some(5)).unwrap_err();
        assert!(
            e.message.contains("max_upload_records") && e.message.contains("1000"),
            "{e:?}"
        );
    }

    #[test]
    fn output_options_win_over_logpull_options() {
        let mut j = job("https://h/p");
        j.logpull_options = Some("fields=RayID,ClientIP&timestamps=rfc3339".into());
        let spec = delivery_spec(&j, false).unwrap();
        assert_eq!(spec.fields, vec![Field::RayID, Field::ClientIP]);
        assert_eq!(spec.timestamps, TimestampFormat::Rfc3339);
        j.output_options = Some(OutputOptions {
            field_names: Some(vec!["EdgeEndTimestamp".into(), "RayID".into()]),
            timestamp_format: Some("unix".into()),
            ..OutputOptions::default()
        });
        let spec = delivery_spec(&j, false).unwrap();
        assert_eq!(spec.fields, vec![Field::EdgeEndTimestamp, Field::RayID]);
        assert_eq!(spec.timestamps, TimestampFormat::Unix);
        j.output_options = Some(OutputOptions {
            field_names: Some(vec!["NoSuchField".into()]),
            ..OutputOptions::default()
        });
        assert!(delivery_spec(&j, false).is_err());
    }

    #[test]
    fn names_and_datasets_are_checked_and_the_dataset_is_fixed() {
        let mut j = job("https://h/p");
        j.name = Some("rainlogs-http.example".into());
        assert!(delivery_spec(&j, false).is_ok());
        j.name = Some("under_score".into());
        assert!(delivery_spec(&j, false).is_err());
        let mut f = job("https://h/p");
        f.dataset = "firewall_events".into();
        assert!(delivery_spec(&f, false).is_err());
        let e = job_updated(
            &j,
            JobBody {
                dataset: Some("dns_logs".into()),
                ..JobBody::default()
            },
        )
        .unwrap_err();
        assert!(e.message.contains("dataset"), "{e:?}");
        assert!(
            !job("https://h/p").enabled,
            "jobs are created disabled unless asked"
        );
    }
}
