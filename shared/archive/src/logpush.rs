//! Logpush jobs, operated from Rainlogs: the domain functions behind `rainlogs logpush
//! create|list|status|disable|delete` (and the HTTP API to come). docs/INGEST.md
//! "Operators" is the step-by-step.
//!
//! [`create`] makes (or renews) the zone's push destination for the dataset — a fresh
//! 32-byte secret, stored only as its hash ([`crate::push`]) — and creates the job at
//! Cloudflare through the zone's own endpoint ([`api::JobsClient`]: the allow-listed
//! Cloudflare API for a real zone, its simulator for a simulated one) with the zone's
//! token from the kms. Its destination is
//! `{public}/push/{destination}?header_Authorization=Bearer%20{secret}`: the secret goes
//! to Cloudflare in that one request and nowhere else (never stored, printed or
//! logged). Cloudflare sends its validation upload before it answers, so a job exists
//! only once the receiver has accepted it (`push_destinations.validated_at`). A zone in
//! `pull` mode is switched to `push` (or `hybrid`) after the job exists: the minutes
//! between the two may be archived by both paths, never by neither.
//!
//! [`create_s3`] does the same with an S3-compatible destination into the landing
//! bucket ([`S3Landing`]: `s3://BUCKET/{destination}/{DATE}?…` with a write-only key the
//! operator gives, sent to Cloudflare only); `ingest.landing` empties it.
//!
//! [`status`] polls each job and records every change of its `enabled`,
//! `last_complete`, `last_error` and `error_message` in `logpush_job_changes`
//! (migration 0013). [`disable`] switches the job off at Cloudflare, then refuses its
//! destination; [`delete`] deletes it at Cloudflare, then does the same. Every change is
//! audited (`logpush.*`).

pub mod api;

use chrono::{DateTime, Utc};
use rainlogs_core::db::DbError;
use rainlogs_core::error::{Classify, ErrorClass};
use rainlogs_sealed::kms::{KeyError, Kms, SecretBinding};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::{self, AuditEvent};
use crate::catalog::zone::{self, ProbeError, ProbeReport, ZoneError, ZoneMode, ZoneProbe};
use crate::endpoint::{CloudflareApi, EndpointKind, ZoneEndpoint};
use crate::pipeline::CLOUDFLARE_TOKEN_PURPOSE;
use crate::push;

pub use api::{ApiError, JobRequest, JobsClient, RemoteJob};

/// Cloudflare's batch limits: `max_upload_bytes` (uncompressed), 0 switches it off.
pub const UPLOAD_BYTES: (u64, u64) = (5_000_000, 1_000_000_000);
/// `max_upload_records`.
pub const UPLOAD_RECORDS: (u64, u64) = (1_000, 1_000_000);
/// `max_upload_interval_seconds`.
pub const UPLOAD_INTERVAL_SECS: (u64, u64) = (30, 300);

/// The http_requests fields every job gets, added when missing: restore and coverage
/// select records by edge time, and hybrid repair matches records by Ray ID.
pub const REQUIRED_HTTP_FIELDS: &[&str] = &["EdgeStartTimestamp", "EdgeEndTimestamp", "RayID"];
/// Cloudflare's default, and the most precise: the receiver and restore read all three.
pub const TIMESTAMP_FORMAT: &str = "unixnano";
/// What `error_message` reads when the job is no longer at Cloudflare.
pub const GONE: &str = "the job no longer exists at Cloudflare (deleted outside Rainlogs)";

/// Why a Logpush operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum LogpushError {
    #[error("{0:?} is not a dataset name (lowercase letters, digits and '_', e.g. http_requests)")]
    InvalidDataset(String),
    #[error("dataset {0}: no fields to push (--fields lists none)")]
    FieldsRequired(String),
    #[error("{0:?} is not a field name")]
    InvalidField(String),
    #[error("{name} must be between {min} and {max}, got {value}")]
    InvalidLimit {
        name: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("job name {0:?} may contain only letters, digits, '-' and '.' (Cloudflare's rule)")]
    InvalidName(String),
    #[error("public URL {url:?}: {reason}")]
    InvalidPublicUrl { url: String, reason: String },
    #[error("S3-compatible destination: {0}")]
    InvalidLanding(String),
    #[error("zone {0} has no Cloudflare token (rainlogs zone set --token-env)")]
    NoToken(String),
    #[error("zone {zone}: the stored Cloudflare token cannot be used: {reason}")]
    BadToken { zone: String, reason: String },
    #[error("zone {zone} already has Logpush job {job} for {dataset} (rainlogs logpush delete --zone {zone} --dataset {dataset} first)")]
    JobExists {
        zone: String,
        dataset: String,
        job: i64,
    },
    #[error("zone {zone} has no Logpush job for {dataset}")]
    NoJob { zone: String, dataset: String },
    // Not a `#[source]`: the message already says it, and chains would repeat it.
    #[error("zone {zone}: {error}")]
    Api { zone: String, error: ApiError },
    #[error(transparent)]
    Zone(#[from] ZoneError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Classify for LogpushError {
    fn class(&self) -> ErrorClass {
        match self {
            LogpushError::Api { error, .. } => error.class(),
            LogpushError::Zone(e) => e.class(),
            LogpushError::Key(e) => e.class(),
            LogpushError::Db(e) => e.class(),
            _ => ErrorClass::Permanent,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            LogpushError::InvalidDataset(_) => "logpush.invalid_dataset",
            LogpushError::FieldsRequired(_) => "logpush.fields_required",
            LogpushError::InvalidField(_) => "logpush.invalid_field",
            LogpushError::InvalidLimit { .. } => "logpush.invalid_limit",
            LogpushError::InvalidName(_) => "logpush.invalid_name",
            LogpushError::InvalidPublicUrl { .. } => "logpush.invalid_public_url",
            LogpushError::InvalidLanding(_) => "logpush.invalid_landing",
            LogpushError::NoToken(_) => "logpush.no_token",
            LogpushError::BadToken { .. } => "logpush.bad_token",
            LogpushError::JobExists { .. } => "logpush.job_exists",
            LogpushError::NoJob { .. } => "logpush.no_job",
            LogpushError::Api { error, .. } => error.code(),
            LogpushError::Zone(e) => e.code(),
            LogpushError::Key(e) => e.code(),
            LogpushError::Db(e) => e.code(),
        }
    }
}

/// A job's batch limits; `None` leaves Cloudflare's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadLimits {
    pub max_upload_bytes: Option<u64>,
    pub max_upload_records: Option<u64>,
    pub max_upload_interval_seconds: Option<u64>,
}

impl UploadLimits {
    /// Cloudflare's ranges (0 is refused here: leave the limit out for the default).
    pub fn check(&self) -> Result<(), LogpushError> {
        for (name, value, (min, max)) in [
            ("max_upload_bytes", self.max_upload_bytes, UPLOAD_BYTES),
            (
                "max_upload_records",
                self.max_upload_records,
                UPLOAD_RECORDS,
            ),
            (
                "max_upload_interval_seconds",
                self.max_upload_interval_seconds,
                UPLOAD_INTERVAL_SECS,
            ),
        ] {
            if let Some(value) = value {
                if !(min..=max).contains(&value) {
                    return Err(LogpushError::InvalidLimit {
                        name,
                        value,
                        min,
                        max,
                    });
                }
            }
        }
        Ok(())
    }
}

/// What [`create`] sets up.
#[derive(Debug, Clone)]
pub struct NewLogpushJob<'a> {
    /// Cloudflare zone id, Rainlogs id or name.
    pub zone: &'a str,
    pub dataset: &'a str,
    /// Empty: the defaults (http_requests only).
    pub fields: &'a [String],
    /// Where Cloudflare reaches the receiver, `https://logs.example.com` (a path prefix
    /// is kept; `/push/{destination}` is appended).
    pub public_url: &'a str,
    pub limits: UploadLimits,
    /// Job name; default `rainlogs-{dataset}` (with `-` for `_`).
    pub name: Option<&'a str>,
    /// Switch a `pull` zone to `hybrid` rather than `push`.
    pub hybrid: bool,
}

/// A Logpush job Rainlogs manages, as recorded (status as last polled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogpushJob {
    pub id: Uuid,
    pub zone_id: Uuid,
    pub zone_name: String,
    pub cf_zone_id: String,
    pub cf_job_id: i64,
    pub dataset: String,
    pub name: String,
    pub fields: Vec<String>,
    pub public_url: String,
    pub destination_id: Uuid,
    pub max_upload_bytes: Option<i64>,
    pub max_upload_records: Option<i64>,
    pub max_upload_interval_seconds: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub enabled: bool,
    pub last_complete: Option<DateTime<Utc>>,
    pub last_error: Option<DateTime<Utc>>,
    pub error_message: Option<String>,
    pub polled_at: Option<DateTime<Utc>>,
    /// When the destination last received Cloudflare's validation upload.
    pub validated_at: Option<DateTime<Utc>>,
    /// When the destination last accepted a batch.
    pub last_batch_at: Option<DateTime<Utc>>,
}

/// What [`create`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub job: LogpushJob,
    /// The zone's mode before and after, when create switched it.
    pub mode_change: Option<(ZoneMode, ZoneMode)>,
    /// An earlier destination of the zone and dataset was given a new secret and reused.
    pub renewed_destination: bool,
}

/// One recorded change of a job's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobChange {
    pub observed_at: DateTime<Utc>,
    pub enabled: bool,
    pub last_complete: Option<DateTime<Utc>>,
    pub last_error: Option<DateTime<Utc>>,
    pub error_message: Option<String>,
    pub gone: bool,
}

/// A period in which Cloudflare reported a job's deliveries failing (its `last_error`
/// after its `last_complete`), had the job switched off outside Rainlogs, or no longer
/// had it: an explicit, dated gap in a push zone's coverage. Records of the period may
/// still have arrived (Cloudflare retries a failed batch for a while); push coverage
/// says what did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FailedPeriod {
    pub job: Uuid,
    pub dataset: String,
    /// Logs from here on may not have been delivered: the job's last completed push
    /// before the failure was seen (the first poll seeing it when the job had none).
    pub from: DateTime<Utc>,
    /// Delivery completed again at this time; `None`: still failing at the last poll.
    pub to: Option<DateTime<Utc>>,
    /// Cloudflare's last error message of the period (or why it counts as failed).
    pub error_message: Option<String>,
    /// The poll that first saw the failure.
    pub first_seen: DateTime<Utc>,
}

/// What `error_message` of a failed period reads when the job was switched off at
/// Cloudflare by someone other than Rainlogs.
pub const DISABLED_OUTSIDE: &str = "the job was disabled at Cloudflare (not by Rainlogs)";

/// The failed periods in a job's recorded status changes (oldest first). A change
/// counts as failing when the job is gone, switched off while Rainlogs had not
/// disabled it (`disabled_at`), or its `last_error` is later than its `last_complete`;
/// the period ends at the first later change that is not failing, at its
/// `last_complete`. Failures that came and went between two polls are not seen
/// (Cloudflare keeps only the latest).
pub fn failed_periods(
    job: Uuid,
    dataset: &str,
    disabled_at: Option<DateTime<Utc>>,
    changes: &[JobChange],
) -> Vec<FailedPeriod> {
    let mut out = Vec::new();
    let mut open: Option<FailedPeriod> = None;
    for c in changes {
        if disabled_at.is_some_and(|d| c.observed_at >= d) {
            // Switched off by Rainlogs: from here on silence is intended.
            break;
        }
        let erring = match (c.last_error, c.last_complete) {
            (Some(err), Some(ok)) => err > ok,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let why = if c.gone {
            Some(GONE.to_owned())
        } else if !c.enabled {
            Some(DISABLED_OUTSIDE.to_owned())
        } else if erring {
            Some(
                c.error_message
                    .clone()
                    .unwrap_or_else(|| "delivery failing (no message)".to_owned()),
            )
        } else {
            None
        };
        match (why, open.as_mut()) {
            (Some(why), None) => {
                open = Some(FailedPeriod {
                    job,
                    dataset: dataset.to_owned(),
                    from: c.last_complete.unwrap_or(c.observed_at),
                    to: None,
                    error_message: Some(why),
                    first_seen: c.observed_at,
                })
            }
            (Some(why), Some(period)) => period.error_message = Some(why),
            (None, Some(_)) => {
                if let Some(mut period) = open.take() {
                    period.to = Some(c.last_complete.unwrap_or(c.observed_at).max(period.from));
                    out.push(period);
                }
            }
            (None, None) => {}
        }
    }
    out.extend(open);
    out
}

/// The failed periods of every job of `zone` (deleted jobs included) that overlap
/// `[from, to)`, in time order.
pub async fn delivery_gaps(
    pool: &PgPool,
    zone: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<FailedPeriod>, LogpushError> {
    let mut out = Vec::new();
    for job in select(pool, None, Some(zone), None, true).await? {
        let changes = history(pool, job.id).await?;
        out.extend(
            failed_periods(job.id, &job.dataset, job.disabled_at, &changes)
                .into_iter()
                .filter(|p| p.from < to && p.to.is_none_or(|end| end > from)),
        );
    }
    out.sort_by_key(|p| (p.from, p.dataset.clone()));
    Ok(out)
}

/// What one poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled {
    /// The job with its status as just polled.
    pub job: LogpushJob,
    /// The status differed from the last poll (a change row was written).
    pub changed: bool,
    /// Cloudflare no longer has the job.
    pub gone: bool,
}

/// The zone columns the jobs API needs.
struct ZoneInfo {
    id: Uuid,
    tenant: Uuid,
    cf_zone_id: String,
    endpoint: ZoneEndpoint,
    token: Option<Vec<u8>>,
    mode: ZoneMode,
}

async fn zone_info(pool: &PgPool, zone_ref: &str) -> Result<ZoneInfo, LogpushError> {
    let id = zone::resolve(pool, zone_ref).await?;
    let row = sqlx::query!(
        r#"SELECT tenant_id, cf_zone_id, endpoint AS "endpoint: EndpointKind", simulator_url,
                  token_ciphertext, mode AS "mode: ZoneMode"
           FROM zones WHERE id = $1"#,
        id
    )
    .fetch_one(pool)
    .await
    .map_err(|e| DbError::query("read zone", e))?;
    let endpoint = ZoneEndpoint::from_columns(row.endpoint, row.simulator_url).map_err(|e| {
        DbError::Query {
            op: "read zone endpoint",
            reason: format!("zone {id}: {e}"),
            retryable: false,
        }
    })?;
    Ok(ZoneInfo {
        id,
        tenant: row.tenant_id,
        cf_zone_id: row.cf_zone_id,
        endpoint,
        token: row.token_ciphertext,
        mode: row.mode,
    })
}

/// The jobs API of a zone, with its token opened by the kms.
async fn client(
    kms: &dyn Kms,
    cloudflare: &CloudflareApi,
    zone: &ZoneInfo,
) -> Result<JobsClient, LogpushError> {
    let blob = zone
        .token
        .as_deref()
        .ok_or_else(|| LogpushError::NoToken(zone.cf_zone_id.clone()))?;
    let binding = SecretBinding {
        tenant: zone.tenant,
        zone: zone.id,
        purpose: CLOUDFLARE_TOKEN_PURPOSE.to_owned(),
    };
    let plain = kms.decrypt_secret(&binding, blob).await?;
    let token = std::str::from_utf8(&plain).map_err(|_| LogpushError::BadToken {
        zone: zone.cf_zone_id.clone(),
        reason: "it is not UTF-8".into(),
    })?;
    JobsClient::new(
        cloudflare,
        &zone.endpoint,
        &zone.cf_zone_id,
        SecretString::from(token.to_owned()),
    )
    .map_err(|error| LogpushError::Api {
        zone: zone.cf_zone_id.clone(),
        error,
    })
}

/// The token probe of a push zone (`rainlogs zone add --mode push`, and `zone set
/// --token-env` of a push zone): it lists the zone's Logpush jobs at the zone's
/// endpoint, which only a token valid for the zone's logs may do. Logpull is not asked —
/// zones below Enterprise do not have it — so it reports no fields, and retention as on
/// (Logpull's retention flag does not concern a pushed zone).
#[derive(Debug, Clone, Default)]
pub struct JobsProbe {
    cloudflare: CloudflareApi,
}

impl JobsProbe {
    pub fn new(cloudflare: CloudflareApi) -> Self {
        Self { cloudflare }
    }
}

#[async_trait::async_trait]
impl ZoneProbe for JobsProbe {
    async fn probe(
        &self,
        endpoint: &ZoneEndpoint,
        cf_zone_id: &str,
        token: &SecretString,
    ) -> Result<ProbeReport, ProbeError> {
        let failed = |e: ApiError| match e {
            ApiError::Refused { .. } => ProbeError::Refused(e.to_string()),
            e => ProbeError::Failed {
                retryable: e.class() == ErrorClass::Retryable,
                reason: e.to_string(),
            },
        };
        let client = JobsClient::new(&self.cloudflare, endpoint, cf_zone_id, token.clone())
            .map_err(failed)?;
        client.list().await.map_err(failed)?;
        Ok(ProbeReport {
            retention: true,
            retention_enabled: false,
            fields: Vec::new(),
        })
    }
}

/// The receiver's public base URL, checked: `https://` (plain `http://` only for a
/// simulated zone), a host, no credentials, query or fragment; no trailing `/`.
pub fn public_base(public_url: &str, endpoint: &ZoneEndpoint) -> Result<String, LogpushError> {
    let bad = |reason: &str| LogpushError::InvalidPublicUrl {
        url: public_url.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(public_url.trim()).map_err(|e| bad(&e.to_string()))?;
    match (url.scheme(), endpoint) {
        ("https", _) | ("http", ZoneEndpoint::Simulator { .. }) => {}
        ("http", ZoneEndpoint::Cloudflare) => {
            return Err(bad(
                "Cloudflare pushes only to https:// with a publicly trusted certificate",
            ))
        }
        _ => return Err(bad("must be an https:// URL")),
    }
    if url.host_str().is_none() {
        return Err(bad("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// The fields a job asks for: the given ones (checked; when none are given, the caller
/// passes every field Cloudflare offers for the dataset), with the required
/// http_requests fields added.
pub fn job_fields(dataset: &str, fields: &[String]) -> Result<Vec<String>, LogpushError> {
    let mut out: Vec<String> = Vec::new();
    for f in fields.iter().map(|f| f.trim()).filter(|f| !f.is_empty()) {
        let ok = f.len() <= 100
            && f.starts_with(|c: char| c.is_ascii_alphabetic())
            && f.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !ok {
            return Err(LogpushError::InvalidField(f.to_owned()));
        }
        if !out.iter().any(|x| x == f) {
            out.push(f.to_owned());
        }
    }
    if out.is_empty() {
        return Err(LogpushError::FieldsRequired(dataset.to_owned()));
    }
    if dataset == "http_requests" {
        for f in REQUIRED_HTTP_FIELDS {
            if !out.iter().any(|x| x == f) {
                out.push((*f).to_owned());
            }
        }
    }
    Ok(out)
}

/// `rainlogs-http-requests` for `http_requests`.
pub fn default_name(dataset: &str) -> String {
    format!("rainlogs-{}", dataset.replace('_', "-"))
}

fn check_name(name: &str) -> Result<(), LogpushError> {
    let ok = !name.is_empty()
        && name.len() <= 512
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(LogpushError::InvalidName(name.to_owned()))
    }
}

/// Times as Postgres keeps them (microseconds), so a poll compares like with like.
fn micros(t: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    t.map(|t| DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t))
}

/// Where a job sends its batches: the receiver over HTTPS, or the landing bucket.
#[derive(Clone, Copy)]
enum Target<'a> {
    Http,
    S3(&'a S3Landing),
}

/// An S3-compatible destination into the landing bucket (`RAINLOGS_LANDING_BUCKET`):
/// Cloudflare writes gzip NDJSON objects under `{key_prefix}{destination}/{DATE}/` with
/// a write-only key of its own; Rainlogs reads and deletes them with its own credentials
/// (`ingest.landing`, docs/INGEST.md "S3-compatible destination").
pub struct S3Landing {
    pub bucket: String,
    /// The landing store's key prefix (`RAINLOGS_S3_PREFIX`; usually empty).
    pub key_prefix: String,
    pub region: String,
    /// Where Cloudflare reaches the bucket: `https://host[:port]` or a bare host
    /// (plain `http://` only for a simulated zone).
    pub endpoint: String,
    /// The write-only key Cloudflare writes with (never Rainlogs' own).
    pub writer_key_id: String,
    /// Its secret: goes to Cloudflare inside the one create request, nowhere else.
    pub writer_secret: SecretString,
}

impl std::fmt::Debug for S3Landing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Landing")
            .field("bucket", &self.bucket)
            .field("key_prefix", &self.key_prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("writer_key_id", &self.writer_key_id)
            .finish_non_exhaustive()
    }
}

/// Where `rainlogs logpush create --s3-landing` reads the write-only key's id, unless
/// given as an argument.
pub const WRITER_KEY_ID_VAR: &str = "RAINLOGS_LANDING_WRITER_KEY_ID";
/// Where it reads the write-only key's secret by default (never an argument).
pub const WRITER_SECRET_VAR: &str = "RAINLOGS_LANDING_WRITER_SECRET";
/// The endpoint Cloudflare writes to, when it is not `RAINLOGS_S3_ENDPOINT` (Rainlogs
/// may reach Garage on a private address Cloudflare cannot).
pub const LANDING_ENDPOINT_VAR: &str = "RAINLOGS_LANDING_ENDPOINT";

impl S3Landing {
    /// The landing destination of this configuration: `RAINLOGS_LANDING_BUCKET`, the
    /// archive's region and key prefix, `endpoint` (else `RAINLOGS_LANDING_ENDPOINT`,
    /// else `RAINLOGS_S3_ENDPOINT`), the write key's id (`key_id`, else
    /// `RAINLOGS_LANDING_WRITER_KEY_ID`) and its secret from the variable `secret_var`.
    /// Rainlogs' own key is refused: Cloudflare gets a key that can only write.
    pub fn from_source(
        src: &rainlogs_core::config::ConfigSource,
        key_id: Option<&str>,
        secret_var: &str,
        endpoint: Option<&str>,
    ) -> Result<Self, LogpushError> {
        use rainlogs_core::config::{S3Config, LANDING_BUCKET};
        let bad = |reason: String| LogpushError::InvalidLanding(reason);
        let s3 = S3Config::from_source(src).map_err(|e| bad(e.to_string()))?;
        let landing = s3
            .landing(src)
            .map_err(|e| bad(e.to_string()))?
            .ok_or_else(|| bad(format!("{LANDING_BUCKET} is not set (the landing bucket)")))?;
        let writer_key_id = key_id
            .or_else(|| src.get(WRITER_KEY_ID_VAR))
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                bad(format!(
                    "no write-only key id (--s3-key-id or {WRITER_KEY_ID_VAR})"
                ))
            })?;
        if writer_key_id == s3.access_key_id {
            return Err(bad(format!(
                "{writer_key_id} is Rainlogs' own key: give Cloudflare a key that can only write to the landing bucket (docs/INGEST.md)"
            )));
        }
        let writer_secret = src
            .secret(secret_var, "the write-only key's secret")
            .map_err(|e| bad(e.to_string()))?;
        let endpoint = endpoint
            .or_else(|| src.get(LANDING_ENDPOINT_VAR))
            .map(str::to_owned)
            .or(s3.endpoint.clone())
            .ok_or_else(|| {
                bad(format!(
                    "no endpoint for Cloudflare (--s3-endpoint or {LANDING_ENDPOINT_VAR})"
                ))
            })?;
        Ok(Self {
            bucket: landing.bucket,
            key_prefix: landing.key_prefix,
            region: landing.region,
            endpoint,
            writer_key_id,
            writer_secret,
        })
    }

    /// `s3://{bucket}/{key_prefix}{destination}/{DATE}`: the destination without its
    /// query (what `logpush_jobs.public_url` keeps: no key, no secret).
    pub fn public(&self, destination: Uuid) -> String {
        format!(
            "s3://{}/{}{}{{DATE}}",
            self.bucket,
            self.key_prefix,
            crate::landing::prefix(destination)
        )
    }

    /// The full destination Cloudflare is given, checked: a write key and its secret,
    /// an `https://` endpoint (plain `http://` only for a simulated zone).
    pub fn destination_conf(
        &self,
        destination: Uuid,
        zone_endpoint: &ZoneEndpoint,
    ) -> Result<SecretString, LogpushError> {
        let bad = |reason: &str| LogpushError::InvalidLanding(reason.to_owned());
        if self.writer_key_id.trim().is_empty() {
            return Err(bad("the write-only key id is empty"));
        }
        if self.writer_secret.expose_secret().is_empty() {
            return Err(bad("the write-only key's secret is empty"));
        }
        let endpoint = self.endpoint.trim().trim_end_matches('/');
        let with_scheme = if endpoint.contains("://") {
            endpoint.to_owned()
        } else {
            format!("https://{endpoint}")
        };
        let url = Url::parse(&with_scheme).map_err(|e| bad(&format!("endpoint: {e}")))?;
        match (url.scheme(), zone_endpoint) {
            ("https", _) | ("http", ZoneEndpoint::Simulator { .. }) => {}
            _ => return Err(bad("the endpoint Cloudflare writes to must be https://")),
        }
        if url.host_str().is_none() {
            return Err(bad("the endpoint has no host"));
        }
        let mut conf = Url::parse(&format!("s3://{}", self.bucket))
            .map_err(|e| bad(&format!("bucket: {e}")))?;
        conf.set_path(&format!(
            "/{}{}{{DATE}}",
            self.key_prefix,
            crate::landing::prefix(destination)
        ));
        conf.query_pairs_mut()
            .append_pair("region", &self.region)
            .append_pair("access-key-id", self.writer_key_id.trim())
            .append_pair("secret-access-key", self.writer_secret.expose_secret())
            .append_pair("endpoint", &with_scheme);
        // `{DATE}` is Cloudflare's placeholder: keep its braces as written.
        Ok(SecretString::from(
            conf.as_str().replace("%7BDATE%7D", "{DATE}"),
        ))
    }
}

/// Creates the Logpush job of a zone and dataset (see the module doc).
pub async fn create(
    pool: &PgPool,
    kms: &dyn Kms,
    cloudflare: &CloudflareApi,
    new: &NewLogpushJob<'_>,
    actor: &str,
) -> Result<Created, LogpushError> {
    create_to(pool, kms, cloudflare, new, Target::Http, actor).await
}

/// Creates the Logpush job of a zone and dataset with an S3-compatible destination into
/// the landing bucket (`new.public_url` is not used). Like [`create`] otherwise.
pub async fn create_s3(
    pool: &PgPool,
    kms: &dyn Kms,
    cloudflare: &CloudflareApi,
    new: &NewLogpushJob<'_>,
    landing: &S3Landing,
    actor: &str,
) -> Result<Created, LogpushError> {
    create_to(pool, kms, cloudflare, new, Target::S3(landing), actor).await
}

async fn create_to(
    pool: &PgPool,
    kms: &dyn Kms,
    cloudflare: &CloudflareApi,
    new: &NewLogpushJob<'_>,
    target: Target<'_>,
    actor: &str,
) -> Result<Created, LogpushError> {
    if !push::valid_dataset(new.dataset) {
        return Err(LogpushError::InvalidDataset(new.dataset.to_owned()));
    }
    // Given fields are checked before anything is asked of Cloudflare.
    if !new.fields.is_empty() {
        job_fields(new.dataset, new.fields)?;
    }
    new.limits.check()?;
    let name = new
        .name
        .map(str::to_owned)
        .unwrap_or_else(|| default_name(new.dataset));
    check_name(&name)?;
    let zone = zone_info(pool, new.zone).await?;
    let base = match target {
        Target::Http => public_base(new.public_url, &zone.endpoint)?,
        Target::S3(landing) => {
            // Checked before anything is created; the destination's id is not known yet.
            landing.destination_conf(Uuid::nil(), &zone.endpoint)?;
            String::new()
        }
    };
    if let Some(job) = find_live(pool, zone.id, new.dataset).await? {
        return Err(LogpushError::JobExists {
            zone: zone.cf_zone_id.clone(),
            dataset: new.dataset.to_owned(),
            job: job.cf_job_id,
        });
    }
    let api = client(kms, cloudflare, &zone).await?;
    // Without --fields the job pushes every field the dataset offers: a field not
    // pushed is lost for good (Logpush cannot backfill).
    let fields = if new.fields.is_empty() {
        let offered = api
            .dataset_fields(new.dataset)
            .await
            .map_err(|error| LogpushError::Api {
                zone: zone.cf_zone_id.clone(),
                error,
            })?;
        job_fields(new.dataset, &offered)?
    } else {
        job_fields(new.dataset, new.fields)?
    };
    let (destination, renewed) = match push::find_destination(pool, zone.id, new.dataset).await? {
        Some(id) => (push::renew_destination(pool, id).await?, true),
        None => (
            push::create_destination(pool, zone.id, new.dataset).await?,
            false,
        ),
    };
    let destination_id = destination.destination.id;
    let (base, destination_conf) = match target {
        Target::Http => {
            crate::landing::make_http(pool, destination_id).await?;
            let conf = SecretString::from(format!(
                "{base}/push/{destination_id}?header_Authorization=Bearer%20{}",
                destination.secret.expose_secret()
            ));
            (base, conf)
        }
        Target::S3(landing) => {
            // Its HTTP secret is never handed out: pushes to /push/{id} stay 401.
            crate::landing::make_landing(pool, destination_id).await?;
            (
                landing.public(destination_id),
                landing.destination_conf(destination_id, &zone.endpoint)?,
            )
        }
    };
    let request = JobRequest {
        dataset: new.dataset.to_owned(),
        name: name.clone(),
        destination_conf,
        fields: fields.clone(),
        timestamp_format: TIMESTAMP_FORMAT.to_owned(),
        max_upload_bytes: new.limits.max_upload_bytes,
        max_upload_records: new.limits.max_upload_records,
        max_upload_interval_seconds: new.limits.max_upload_interval_seconds,
    };
    drop(destination);
    let remote = match api.create(&request).await {
        Ok(job) => job,
        Err(source) => {
            // The secret went out in the request: retire it with the destination.
            push::disable_destination(pool, destination_id).await?;
            let event = AuditEvent {
                tenant: Some(zone.tenant),
                zone: Some(zone.id),
                detail: serde_json::json!({
                    "dataset": new.dataset, "destination": destination_id,
                    "error": source.to_string(),
                }),
                ..AuditEvent::new(actor, "logpush.create", source.code())
            };
            audit::record(pool, &event)
                .await
                .map_err(|e| DbError::query("write logpush audit row", e))?;
            return Err(LogpushError::Api {
                zone: zone.cf_zone_id.clone(),
                error: source,
            });
        }
    };
    drop(request);
    let id = Uuid::new_v4();
    let recorded = record_created(
        pool,
        &zone,
        id,
        destination_id,
        &remote,
        new,
        &name,
        &fields,
        &base,
        actor,
    )
    .await;
    if let Err(e) = recorded {
        // Not recorded: take the job back rather than leave one nobody manages.
        let _ = api.delete(remote.id).await;
        push::disable_destination(pool, destination_id).await?;
        return Err(e);
    }
    let mode_change = match (zone.mode, new.hybrid) {
        (ZoneMode::Pull, hybrid) => {
            let to = if hybrid {
                ZoneMode::Hybrid
            } else {
                ZoneMode::Push
            };
            zone::set_mode(pool, &zone.id.to_string(), to, actor).await?;
            Some((ZoneMode::Pull, to))
        }
        (ZoneMode::Push, true) => {
            zone::set_mode(pool, &zone.id.to_string(), ZoneMode::Hybrid, actor).await?;
            Some((ZoneMode::Push, ZoneMode::Hybrid))
        }
        _ => None,
    };
    let job = load(pool, id).await?;
    Ok(Created {
        job,
        mode_change,
        renewed_destination: renewed,
    })
}

/// Records a job Cloudflare created: its row, its first status and the audit row.
#[allow(clippy::too_many_arguments)]
async fn record_created(
    pool: &PgPool,
    zone: &ZoneInfo,
    id: Uuid,
    destination: Uuid,
    remote: &RemoteJob,
    new: &NewLogpushJob<'_>,
    name: &str,
    fields: &[String],
    base: &str,
    actor: &str,
) -> Result<(), LogpushError> {
    let op = |what| move |e| DbError::query(what, e);
    let to_i64 = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    let interval = new
        .limits
        .max_upload_interval_seconds
        .map(|v| i32::try_from(v).unwrap_or(i32::MAX));
    let mut tx = pool.begin().await.map_err(op("begin logpush create"))?;
    sqlx::query!(
        "INSERT INTO logpush_jobs
           (id, zone_id, destination_id, cf_job_id, dataset, name, fields, public_url,
            max_upload_bytes, max_upload_records, max_upload_interval_seconds, enabled,
            last_complete, last_error, error_message, polled_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, now())",
        id,
        zone.id,
        destination,
        remote.id,
        new.dataset,
        name,
        fields,
        base,
        to_i64(new.limits.max_upload_bytes),
        to_i64(new.limits.max_upload_records),
        interval,
        remote.enabled,
        micros(remote.last_complete),
        micros(remote.last_error),
        remote.error_message.as_deref(),
    )
    .execute(&mut *tx)
    .await
    .map_err(op("record logpush job"))?;
    sqlx::query!(
        "INSERT INTO logpush_job_changes (job_id, enabled, last_complete, last_error, error_message)
         VALUES ($1, $2, $3, $4, $5)",
        id,
        remote.enabled,
        micros(remote.last_complete),
        micros(remote.last_error),
        remote.error_message.as_deref(),
    )
    .execute(&mut *tx)
    .await
    .map_err(op("record logpush job status"))?;
    let event = AuditEvent {
        tenant: Some(zone.tenant),
        zone: Some(zone.id),
        detail: serde_json::json!({
            "job": id, "cf_job_id": remote.id, "dataset": new.dataset,
            "destination": destination, "public_url": base, "fields": fields,
        }),
        ..AuditEvent::new(actor, "logpush.create", "ok")
    };
    audit::record(&mut *tx, &event)
        .await
        .map_err(op("write logpush audit row"))?;
    tx.commit().await.map_err(op("commit logpush create"))?;
    Ok(())
}

/// The jobs Rainlogs manages (of one zone, one dataset), deleted ones with `all`.
pub async fn list(
    pool: &PgPool,
    zone_ref: Option<&str>,
    dataset: Option<&str>,
    all: bool,
) -> Result<Vec<LogpushJob>, LogpushError> {
    let zone_id = match zone_ref {
        Some(z) => Some(zone::resolve(pool, z).await?),
        None => None,
    };
    select(pool, None, zone_id, dataset, all).await
}

async fn select(
    pool: &PgPool,
    id: Option<Uuid>,
    zone_id: Option<Uuid>,
    dataset: Option<&str>,
    all: bool,
) -> Result<Vec<LogpushJob>, LogpushError> {
    Ok(sqlx::query_as!(
        LogpushJob,
        "SELECT j.id, j.zone_id, z.name AS zone_name, z.cf_zone_id, j.cf_job_id, j.dataset,
                j.name, j.fields, j.public_url, j.destination_id, j.max_upload_bytes,
                j.max_upload_records, j.max_upload_interval_seconds, j.created_at,
                j.disabled_at, j.deleted_at, j.enabled, j.last_complete, j.last_error,
                j.error_message, j.polled_at, d.validated_at, d.last_batch_at
         FROM logpush_jobs j
         JOIN zones z ON z.id = j.zone_id
         JOIN push_destinations d ON d.id = j.destination_id
         WHERE ($1::uuid IS NULL OR j.id = $1)
           AND ($2::uuid IS NULL OR j.zone_id = $2)
           AND ($3::text IS NULL OR j.dataset = $3)
           AND ($4 OR j.deleted_at IS NULL)
         ORDER BY z.name, j.dataset, j.created_at",
        id,
        zone_id,
        dataset,
        all,
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("list logpush jobs", e))?)
}

async fn load(pool: &PgPool, id: Uuid) -> Result<LogpushJob, LogpushError> {
    select(pool, Some(id), None, None, true)
        .await?
        .pop()
        .ok_or_else(|| {
            LogpushError::Db(DbError::Query {
                op: "read logpush job",
                reason: format!("job {id} vanished"),
                retryable: false,
            })
        })
}

async fn find_live(
    pool: &PgPool,
    zone_id: Uuid,
    dataset: &str,
) -> Result<Option<LogpushJob>, LogpushError> {
    Ok(select(pool, None, Some(zone_id), Some(dataset), false)
        .await?
        .pop())
}

/// The recorded status changes of a job, oldest first.
pub async fn history(pool: &PgPool, job: Uuid) -> Result<Vec<JobChange>, LogpushError> {
    Ok(sqlx::query_as!(
        JobChange,
        "SELECT observed_at, enabled, last_complete, last_error, error_message, gone
         FROM logpush_job_changes WHERE job_id = $1 ORDER BY id",
        job
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("read logpush job history", e))?)
}

/// Polls every live job (of one zone, one dataset) at Cloudflare and records what
/// changed; each job's outcome on its own (one failing zone does not hide the others).
pub async fn status(
    pool: &PgPool,
    kms: &dyn Kms,
    cloudflare: &CloudflareApi,
    zone_ref: Option<&str>,
    dataset: Option<&str>,
) -> Result<Vec<(LogpushJob, Result<Polled, LogpushError>)>, LogpushError> {
    let jobs = list(pool, zone_ref, dataset, false).await?;
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        let polled = poll(pool, kms, cloudflare, &job).await;
        out.push((job, polled));
    }
    Ok(out)
}

/// Polls the jobs whose last poll is older than `every` (at most `limit` of them), as
/// the scheduler does on each pass: each job is claimed first (its `polled_at` set in
/// one statement that skips rows another dispatcher holds), so several dispatchers
/// poll each job once per interval between them. Each job's outcome on its own.
pub async fn poll_due(
    pool: &PgPool,
    kms: &dyn Kms,
    cloudflare: &CloudflareApi,
    every: std::time::Duration,
    limit: i64,
) -> Result<Vec<(Uuid, Result<Polled, LogpushError>)>, LogpushError> {
    let every = chrono::TimeDelta::from_std(every).unwrap_or(chrono::TimeDelta::MAX);
    let claimed = sqlx::query_scalar!(
        "UPDATE logpush_jobs SET polled_at = now()
         WHERE id IN (SELECT id FROM logpush_jobs
                      WHERE deleted_at IS NULL
                        AND (polled_at IS NULL OR polled_at <= now() - $1::interval)
                      ORDER BY polled_at NULLS FIRST LIMIT $2
                      FOR UPDATE SKIP LOCKED)
         RETURNING id",
        sqlx::postgres::types::PgInterval::try_from(every).unwrap_or(
            sqlx::postgres::types::PgInterval {
                months: 0,
                days: 0,
                microseconds: i64::MAX,
            }
        ),
        limit,
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("claim logpush jobs to poll", e))?;
    let mut out = Vec::with_capacity(claimed.len());
    for id in claimed {
        let polled = match load(pool, id).await {
            Ok(job) => poll(pool, kms, cloudflare, &job).await,
            Err(e) => Err(e),
        };
        out.push((id, polled));
    }
    Ok(out)
}

/// Polls one job and records its status (a change row when it differs).
pub async fn poll(
    pool: &PgPool,
    kms: &dyn Kms,
    cloudflare: &CloudflareApi,
    job: &LogpushJob,
) -> Result<Polled, LogpushError> {
    let zone = zone_info(pool, &job.zone_id.to_string()).await?;
    let api = client(kms, cloudflare, &zone).await?;
    let remote = match api.get(job.cf_job_id).await {
        Ok(r) => Some(r),
        Err(ApiError::NotFound { .. }) => None,
        Err(source) => {
            return Err(LogpushError::Api {
                zone: zone.cf_zone_id,
                error: source,
            })
        }
    };
    let gone = remote.is_none();
    let changed = record_poll(pool, job, remote.as_ref()).await?;
    Ok(Polled {
        job: load(pool, job.id).await?,
        changed,
        gone,
    })
}

/// Writes a poll's outcome: the job's status columns, and a change row when any of
/// `enabled`, `last_complete`, `last_error`, `error_message` differs from the last poll.
async fn record_poll(
    pool: &PgPool,
    job: &LogpushJob,
    remote: Option<&RemoteJob>,
) -> Result<bool, LogpushError> {
    let op = |what| move |e| DbError::query(what, e);
    let mut tx = pool.begin().await.map_err(op("begin logpush poll"))?;
    let old = sqlx::query!(
        "SELECT enabled, last_complete, last_error, error_message
         FROM logpush_jobs WHERE id = $1 FOR UPDATE",
        job.id
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(op("lock logpush job"))?;
    let new = match remote {
        Some(r) => (
            r.enabled,
            micros(r.last_complete),
            micros(r.last_error),
            r.error_message.clone(),
        ),
        None => (
            false,
            old.last_complete,
            old.last_error,
            Some(GONE.to_owned()),
        ),
    };
    let changed = new
        != (
            old.enabled,
            old.last_complete,
            old.last_error,
            old.error_message.clone(),
        );
    if changed {
        sqlx::query!(
            "INSERT INTO logpush_job_changes
               (job_id, enabled, last_complete, last_error, error_message, gone)
             VALUES ($1, $2, $3, $4, $5, $6)",
            job.id,
            new.0,
            new.1,
            new.2,
            new.3.as_deref(),
            remote.is_none(),
        )
        .execute(&mut *tx)
        .await
        .map_err(op("record logpush job status"))?;
    }
    sqlx::query!(
        "UPDATE logpush_jobs SET enabled = $2, last_complete = $3, last_error = $4,
                error_message = $5, polled_at = now()
         WHERE id = $1",
        job.id,
        new.0,
        new.1,
        new.2,
        new.3.as_deref(),
    )
    .execute(&mut *tx)
    .await
    .map_err(op("update logpush job status"))?;
    tx.commit().await.map_err(op("commit logpush poll"))?;
    Ok(changed)
}

/// Switches the zone's job for `dataset` off at Cloudflare, then refuses its
/// destination (401 from then on). A job Cloudflare no longer has is only recorded off.
pub async fn disable(
    pool: &PgPool,
    kms: &dyn Kms,
    cloudflare: &CloudflareApi,
    zone_ref: &str,
    dataset: &str,
    actor: &str,
) -> Result<LogpushJob, LogpushError> {
    let (zone, job, api) = live_job(pool, kms, cloudflare, zone_ref, dataset).await?;
    let remote = match api.set_enabled(job.cf_job_id, false).await {
        Ok(r) => Some(r),
        Err(ApiError::NotFound { .. }) => None,
        Err(source) => {
            return Err(LogpushError::Api {
                zone: zone.cf_zone_id,
                error: source,
            })
        }
    };
    record_poll(pool, &job, remote.as_ref()).await?;
    finish(pool, &zone, &job, "disable", actor).await
}

/// Deletes the zone's job for `dataset` at Cloudflare (already gone is fine), then
/// refuses its destination; the job's row and history stay, marked deleted.
pub async fn delete(
    pool: &PgPool,
    kms: &dyn Kms,
    cloudflare: &CloudflareApi,
    zone_ref: &str,
    dataset: &str,
    actor: &str,
) -> Result<LogpushJob, LogpushError> {
    let (zone, job, api) = live_job(pool, kms, cloudflare, zone_ref, dataset).await?;
    match api.delete(job.cf_job_id).await {
        Ok(()) | Err(ApiError::NotFound { .. }) => {}
        Err(source) => {
            return Err(LogpushError::Api {
                zone: zone.cf_zone_id,
                error: source,
            })
        }
    }
    finish(pool, &zone, &job, "delete", actor).await
}

async fn live_job(
    pool: &PgPool,
    kms: &dyn Kms,
    cloudflare: &CloudflareApi,
    zone_ref: &str,
    dataset: &str,
) -> Result<(ZoneInfo, LogpushJob, JobsClient), LogpushError> {
    let zone = zone_info(pool, zone_ref).await?;
    let job = find_live(pool, zone.id, dataset)
        .await?
        .ok_or_else(|| LogpushError::NoJob {
            zone: zone.cf_zone_id.clone(),
            dataset: dataset.to_owned(),
        })?;
    let api = client(kms, cloudflare, &zone).await?;
    Ok((zone, job, api))
}

/// After `disable` or `delete` at Cloudflare: the destination refused, the row marked,
/// one audit row, in one transaction.
async fn finish(
    pool: &PgPool,
    zone: &ZoneInfo,
    job: &LogpushJob,
    what: &'static str,
    actor: &str,
) -> Result<LogpushJob, LogpushError> {
    let op = |what| move |e| DbError::query(what, e);
    let mut tx = pool.begin().await.map_err(op("begin logpush change"))?;
    sqlx::query!(
        "UPDATE push_destinations SET disabled_at = coalesce(disabled_at, now()) WHERE id = $1",
        job.destination_id
    )
    .execute(&mut *tx)
    .await
    .map_err(op("disable push destination"))?;
    let deleted = what == "delete";
    sqlx::query!(
        "UPDATE logpush_jobs SET enabled = false,
                disabled_at = coalesce(disabled_at, now()),
                deleted_at = CASE WHEN $2 THEN now() ELSE deleted_at END
         WHERE id = $1",
        job.id,
        deleted
    )
    .execute(&mut *tx)
    .await
    .map_err(op("mark logpush job"))?;
    let event = AuditEvent {
        tenant: Some(zone.tenant),
        zone: Some(zone.id),
        detail: serde_json::json!({
            "job": job.id, "cf_job_id": job.cf_job_id, "dataset": job.dataset,
            "destination": job.destination_id,
        }),
        ..AuditEvent::new(
            actor,
            if deleted {
                "logpush.delete"
            } else {
                "logpush.disable"
            },
            "ok",
        )
    };
    audit::record(&mut *tx, &event)
        .await
        .map_err(op("write logpush audit row"))?;
    tx.commit().await.map_err(op("commit logpush change"))?;
    load(pool, job.id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_landing_destination_is_cloudflares_format_and_keeps_its_secret() {
        let landing = S3Landing {
            bucket: "rainlogs-landing".into(),
            key_prefix: String::new(),
            region: "garage".into(),
            endpoint: "s3.example.com".into(),
            writer_key_id: "GKwriteonly".into(),
            writer_secret: SecretString::from("w+s/ecret=0123456789"),
        };
        let id = Uuid::from_u128(0xabc);
        let conf = landing
            .destination_conf(id, &ZoneEndpoint::Cloudflare)
            .unwrap();
        let conf = conf.expose_secret();
        assert!(
            conf.starts_with(&format!(
                "s3://rainlogs-landing/{id}/{{DATE}}?region=garage&"
            )),
            "{conf}"
        );
        let url = Url::parse(conf).unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["access-key-id"], "GKwriteonly");
        assert_eq!(q["secret-access-key"], "w+s/ecret=0123456789");
        assert_eq!(q["endpoint"], "https://s3.example.com");
        assert_eq!(
            landing.public(id),
            format!("s3://rainlogs-landing/{id}/{{DATE}}")
        );
        assert!(!format!("{landing:?}").contains("ecret"));
        // Cloudflare writes only to https; a simulated zone may use a local http Garage.
        let mut plain = landing;
        plain.endpoint = "http://127.0.0.1:3900".into();
        assert!(matches!(
            plain.destination_conf(id, &ZoneEndpoint::Cloudflare),
            Err(LogpushError::InvalidLanding(_))
        ));
        let sim = ZoneEndpoint::Simulator {
            url: "http://127.0.0.1:1".into(),
        };
        assert!(plain.destination_conf(id, &sim).is_ok());
        plain.writer_secret = SecretString::from("");
        assert!(plain.destination_conf(id, &sim).is_err());
    }

    fn at(min: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + min * 60, 0).unwrap()
    }

    fn change(obs: i64, complete: Option<i64>, error: Option<i64>, msg: Option<&str>) -> JobChange {
        JobChange {
            observed_at: at(obs),
            enabled: true,
            last_complete: complete.map(at),
            last_error: error.map(at),
            error_message: msg.map(str::to_owned),
            gone: false,
        }
    }

    #[test]
    fn a_failure_runs_from_the_last_completed_push_to_the_next_one() {
        let job = Uuid::nil();
        let changes = [
            change(0, Some(0), None, None),
            change(5, Some(4), None, None),
            // Failing from after 4 (the last push that went through) …
            change(10, Some(4), Some(9), Some("connection refused")),
            change(15, Some(4), Some(14), Some("HTTP 503")),
            // … until a push completed at 18.
            change(20, Some(18), Some(14), Some("HTTP 503")),
            // A second failure, still open at the last poll.
            change(30, Some(18), Some(29), None),
        ];
        let periods = failed_periods(job, "http_requests", None, &changes);
        assert_eq!(periods.len(), 2, "{periods:?}");
        assert_eq!((periods[0].from, periods[0].to), (at(4), Some(at(18))));
        assert_eq!(periods[0].error_message.as_deref(), Some("HTTP 503"));
        assert_eq!(periods[0].first_seen, at(10));
        assert_eq!((periods[1].from, periods[1].to), (at(18), None));
        assert_eq!(
            periods[1].error_message.as_deref(),
            Some("delivery failing (no message)")
        );
    }

    #[test]
    fn a_job_gone_or_switched_off_outside_rainlogs_is_a_gap_but_rainlogs_disabling_it_is_not() {
        let job = Uuid::nil();
        let mut off = change(10, Some(8), None, None);
        off.enabled = false;
        let periods = failed_periods(
            job,
            "dns_logs",
            None,
            &[change(0, Some(0), None, None), off.clone()],
        );
        assert_eq!(periods.len(), 1);
        assert_eq!((periods[0].from, periods[0].to), (at(8), None));
        assert_eq!(periods[0].error_message.as_deref(), Some(DISABLED_OUTSIDE));
        // Rainlogs disabled it at minute 9: the change seen at 10 is intended silence.
        assert!(failed_periods(job, "dns_logs", Some(at(9)), &[off]).is_empty());

        let mut gone = change(12, Some(11), None, None);
        gone.gone = true;
        let periods = failed_periods(job, "dns_logs", None, &[gone]);
        assert_eq!(periods[0].error_message.as_deref(), Some(GONE));
        assert_eq!(periods[0].from, at(11));
        // A job that never completed a push fails from the first poll that saw it.
        let periods = failed_periods(job, "dns_logs", None, &[change(3, None, Some(2), None)]);
        assert_eq!((periods[0].from, periods[0].to), (at(3), None));
        assert!(failed_periods(job, "dns_logs", None, &[]).is_empty());
    }

    #[test]
    fn limits_follow_cloudflares_ranges() {
        let ok = UploadLimits {
            max_upload_bytes: Some(5_000_000),
            max_upload_records: Some(1_000_000),
            max_upload_interval_seconds: Some(30),
        };
        assert!(ok.check().is_ok());
        for bad in [
            UploadLimits {
                max_upload_bytes: Some(4_999_999),
                ..ok
            },
            UploadLimits {
                max_upload_records: Some(999),
                ..ok
            },
            UploadLimits {
                max_upload_interval_seconds: Some(301),
                ..ok
            },
        ] {
            let e = bad.check().unwrap_err();
            assert_eq!(e.code(), "logpush.invalid_limit", "{e}");
        }
    }

    #[test]
    fn public_urls_must_be_https_for_real_zones() {
        let cf = ZoneEndpoint::Cloudflare;
        let sim = ZoneEndpoint::Simulator {
            url: "http://127.0.0.1:9".into(),
        };
        assert_eq!(
            public_base("https://logs.example.com/rainlogs/", &cf).unwrap(),
            "https://logs.example.com/rainlogs"
        );
        assert!(public_base("http://logs.example.com", &cf).is_err());
        assert_eq!(
            public_base("http://127.0.0.1:8787", &sim).unwrap(),
            "http://127.0.0.1:8787"
        );
        for bad in [
            "https://u:p@h",
            "https://h/?x=1",
            "https://h/#f",
            "ftp://h",
            "not a url",
        ] {
            assert!(public_base(bad, &cf).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_requests_jobs_always_carry_time_and_ray_id() {
        let f = job_fields("http_requests", &["ClientIP".into(), "ClientIP".into()]).unwrap();
        assert_eq!(
            f,
            [
                "ClientIP",
                "EdgeStartTimestamp",
                "EdgeEndTimestamp",
                "RayID"
            ]
        );
        for dataset in ["http_requests", "firewall_events"] {
            assert!(matches!(
                job_fields(dataset, &[" ".into()]),
                Err(LogpushError::FieldsRequired(_))
            ));
        }
        assert!(job_fields("dns_logs", &["QueryName".into()]).is_ok());
        assert!(job_fields("http_requests", &["Bad Field".into()]).is_err());
        assert_eq!(default_name("http_requests"), "rainlogs-http-requests");
        assert!(check_name(&default_name("firewall_events")).is_ok());
        assert!(check_name("a_b").is_err());
    }
}
