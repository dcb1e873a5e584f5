//! Restore: a zone's logs for a time range as NDJSON, verified before a byte of an
//! object is emitted. The engine every front end calls (`rainlogs logs get`, the HTTP
//! API's export); the front end chooses the [`Source`], the output and the [`Observer`].
//!
//! Windows come out ordered by start; inside a window, records keep the order the object
//! stores them in (the order Logpull served them). Windows wholly inside `[from, to)` are
//! copied as stored; in a window that straddles an edge each record is kept when its
//! `EdgeEndTimestamp` (else `EdgeStartTimestamp`; integer seconds, milliseconds,
//! microseconds or nanoseconds, or an RFC 3339 string) lies in `[from, to)` — the field
//! Logpull selects windows by — and a record without a readable timestamp is kept (and
//! counted) rather than dropped. A [`Filter`] keeps records whose top-level or dotted
//! nested field equals a value (all must match).
//!
//! Nothing unverified is emitted: each window's output is held (up to
//! [`Request::max_window_bytes`]) until its object has been read to the end and checked
//! — SHA-256 and size against the catalog, header context (tenant, zone, window), every
//! AEAD chunk, the trailer, and the plaintext SHA-256 and record count against the
//! catalog. A bigger window is verified in a first pass and streamed in a second one,
//! whose hash is checked again. A failure stops the restore with an error naming the
//! object.
//!
//! Without Postgres ([`Source::Bucket`], disaster recovery) the windows come from
//! listing `archive/{tenant}/{zone}/{yyyy}/{mm}/{dd}/` and their keys; the object's own
//! header and trailer are what is verified, since no catalog hash exists to compare with.

use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use rainlogs_core::error::ErrorClass;
use rainlogs_core::storage::ObjectStore;
use rainlogs_core::TaskError;
use rainlogs_sealed::kms::Kms;
use rainlogs_sealed::SealContext;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::coverage::{Cover, CoverageWalk};
use crate::pipeline::{open_object, VerifiedObject};
use crate::verify::{self, WindowRow};

/// Exit code for a restore stopped by an object that failed verification.
pub const EXIT_VERIFICATION: u8 = 1;
/// Exit code for everything else that stops a restore (input, Postgres, S3, output).
pub const EXIT_OTHER: u8 = 2;
/// Longest NDJSON line accepted when records are parsed (trim or filter).
const MAX_LINE: usize = 16 * 1024 * 1024;
/// How long after its own time a record may reach Cloudflare and be served, by Logpull,
/// in the window of its receipt — assumed where a window's record span is not known
/// (windows staged before migration 0020; restores without Postgres). docs/VERIFY.md,
/// "Late records".
pub const ASSUMED_LAG: TimeDelta = TimeDelta::minutes(5);
/// How far past `--to` restore looks for pulled windows whose recorded record span
/// reaches into the range (only catalog rows are read for that; objects are opened only
/// when their span overlaps).
pub const SEARCH_LAG: TimeDelta = TimeDelta::hours(1);

/// One `--filter field=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub field: String,
    pub value: String,
}

impl std::str::FromStr for Filter {
    type Err = RestoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((field, value)) if !field.is_empty() => Ok(Self {
                field: field.to_owned(),
                value: value.to_owned(),
            }),
            _ => Err(RestoreError::Input(format!(
                "--filter {s:?}: expected FIELD=VALUE (e.g. EdgeResponseStatus=404)"
            ))),
        }
    }
}

impl Filter {
    /// Whether a line can only hold a match if it contains the value's bytes as they
    /// are: a value no JSON encoder escapes (letters, digits, `. _ : - + @ ~`) and that
    /// is not a number (a number may be written another way, `4.04e2` for `404`). An IP
    /// address or a cookie value is; then a line without those bytes is skipped
    /// unparsed (a data-subject search reads most records only this far).
    fn literal(&self) -> Option<&[u8]> {
        let safe = !self.value.is_empty()
            && self
                .value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-+@~".contains(&b))
            && self.value.parse::<f64>().is_err();
        safe.then_some(self.value.as_bytes())
    }

    /// The field: a top-level key as written, else a dotted path into nested objects.
    fn lookup<'v>(&self, record: &'v Value) -> Option<&'v Value> {
        if let Some(v) = record.get(&self.field) {
            return Some(v);
        }
        self.field
            .split('.')
            .try_fold(record, |v, part| v.get(part))
    }

    pub fn matches(&self, record: &Value) -> bool {
        match self.lookup(record) {
            None => false,
            Some(Value::String(s)) => *s == self.value,
            Some(Value::Number(n)) => {
                n.to_string() == self.value
                    || matches!((n.as_f64(), self.value.parse::<f64>()), (Some(a), Ok(b)) if a == b)
            }
            Some(Value::Bool(b)) => b.to_string() == self.value,
            Some(Value::Null) => self.value == "null",
            // Arrays and objects compare as their compact JSON text.
            Some(other) => serde_json::to_string(other).is_ok_and(|text| text == self.value),
        }
    }
}

/// Why a restore stopped.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// An object failed verification: nothing of it was emitted.
    #[error(
        "object {object_key} (window [{window_start}, {window_end})) failed verification: {reason}"
    )]
    Verification {
        object_key: String,
        window_start: String,
        window_end: String,
        reason: String,
    },
    /// The zone's tenant was erased (GDPR Art. 17): keys destroyed, objects deleted.
    #[error("tenant {tenant} was erased by data-subject request {request} (confirmed {at}): its keys are destroyed and its objects deleted; nothing of it can be restored")]
    Erased {
        tenant: Uuid,
        request: Uuid,
        at: DateTime<Utc>,
    },
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Operational(String),
}

impl RestoreError {
    /// A stable code for audit rows and API problems.
    pub fn code(&self) -> &'static str {
        match self {
            RestoreError::Verification { .. } => "logs.verification_failed",
            RestoreError::Erased { .. } => "gdpr.erased",
            RestoreError::Input(_) => "logs.invalid",
            RestoreError::Operational(_) => "logs.restore",
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            RestoreError::Verification { .. } => EXIT_VERIFICATION,
            _ => EXIT_OTHER,
        }
    }

    fn verification(ctx: &SealContext, key: &str, reason: impl Into<String>) -> Self {
        RestoreError::Verification {
            object_key: key.to_owned(),
            window_start: ctx.window_start.to_rfc3339(),
            window_end: ctx.window_end.to_rfc3339(),
            reason: reason.into(),
        }
    }

    /// Anything that stopped the restore other than input or verification.
    pub fn operational(e: impl std::fmt::Display) -> Self {
        RestoreError::Operational(e.to_string())
    }
}

impl From<rainlogs_core::db::DbError> for RestoreError {
    fn from(e: rainlogs_core::db::DbError) -> Self {
        RestoreError::operational(e)
    }
}

/// Where windows come from.
pub enum Source {
    /// Postgres: the catalog gives the windows and the hashes to check objects against.
    Catalog {
        pool: PgPool,
        store: ObjectStore,
        kms: Arc<dyn Kms>,
    },
    /// Disaster recovery: the bucket's listing and exported tenant keys only.
    Bucket {
        store: ObjectStore,
        kms: Arc<dyn Kms>,
        tenant: Uuid,
    },
}

/// What to restore.
#[derive(Debug, Clone)]
pub struct Request {
    pub zone: String,
    pub tenant: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub filters: Vec<Filter>,
    /// Keep records matching *any* of `filters` (a data-subject search: this IP or that
    /// cookie) instead of all of them.
    pub match_any: bool,
    pub max_window_bytes: usize,
    /// The Logpush dataset to restore (`http_requests`, `firewall_events`, …); pulled
    /// windows are `http_requests` ([`verify::PULL_DATASET`]).
    pub dataset: String,
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub zone_id: Uuid,
    /// Objects opened, verified and emitted.
    pub windows_restored: u64,
    /// Windows known to be empty (Postgres only).
    pub windows_empty: u64,
    /// Records read from the objects / written out.
    pub records_read: u64,
    pub records_out: u64,
    /// NDJSON bytes written.
    pub bytes_out: u64,
    /// Sealed bytes read (both passes of a large window count).
    pub object_bytes: u64,
    /// Records of straddling windows kept because their timestamp was unreadable.
    pub untimed_records: u64,
    /// Lines of straddling or filtered windows that are not JSON records (quarantined
    /// by fetch): passed through when only trimming, skipped when filtering.
    pub malformed_lines: u64,
    /// Stretches of the range without restorable logs (pruned, failed, in flight,
    /// missing; offline: no object).
    pub gaps: u64,
    /// Windows larger than the buffer, verified then streamed.
    pub two_pass_windows: u64,
    /// Pushed records not written because an archived pulled window (a Logpull repair)
    /// holds their time: Logpull serves every record of its span, so each is out once
    /// (docs/INGEST.md, "Hybrid repair").
    pub superseded_records: u64,
    /// Pulled windows within [`ASSUMED_LAG`] after `to` are not all archived yet: records
    /// of the range that Cloudflare received late may still come (Postgres only).
    pub late_unsettled: bool,
}

/// Warnings (gaps) and progress, reported on the side of the data.
pub trait Observer: Send {
    fn warn(&mut self, message: &str);
    fn progress(&mut self, _stats: &Stats) {}
}

/// Where a window's output goes while its object is read.
enum SinkOut {
    /// Held until the object verifies; `limit` bounds memory.
    Buffer { buf: Vec<u8>, limit: usize },
    /// Straight out (second pass of a large window, already verified once).
    Stream(Box<dyn Write + Send>),
    /// Verification pass: nothing kept.
    Discard,
}

/// Turns a window's plaintext into output lines: trimmed and filtered when asked.
struct LineSink {
    trim: Option<(i64, i64)>,
    filters: Arc<Vec<Filter>>,
    /// [`Request::match_any`].
    match_any: bool,
    partial: Vec<u8>,
    out: SinkOut,
    records_out: u64,
    bytes_out: u64,
    untimed: u64,
    /// Lines that are not JSON records: quarantined verbatim by fetch (docs/LOGPULL.md),
    /// inside an object that verified — not tampering. Kept when only trimming (they
    /// have no time to trim by), skipped when filtering (no field can match); counted.
    malformed: u64,
    line_no: u64,
    /// Why the sink refused a write (the opener only sees an I/O error).
    failure: Arc<Mutex<Option<SinkFailure>>>,
    /// Spans (ns) whose records this window must not write: a pushed batch's records in
    /// the time of an archived pulled window.
    exclude: Vec<(i64, i64)>,
    superseded: u64,
}

#[derive(Debug, Clone)]
enum SinkFailure {
    BufferFull,
    BadRecord(String),
    Output(String),
}

impl LineSink {
    /// Whether `line` can hold a match, judged on its bytes ([`Filter::literal`]):
    /// with `match_any`, some filter's literal is in it (or a filter has none); else
    /// every literal is. A line skipped here is neither parsed nor counted.
    fn may_match(&self, line: &[u8]) -> bool {
        let found = |f: &Filter| {
            f.literal()
                .is_none_or(|lit| memchr::memmem::find(line, lit).is_some())
        };
        if self.match_any {
            self.filters.iter().any(found)
        } else {
            self.filters.iter().all(found)
        }
    }

    fn parses(&self) -> bool {
        self.trim.is_some() || !self.filters.is_empty() || !self.exclude.is_empty()
    }

    fn fail(&self, why: SinkFailure) -> std::io::Error {
        let text = format!("{why:?}");
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(why);
        }
        std::io::Error::other(text)
    }

    fn emit(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.bytes_out += bytes.len() as u64;
        let result = match &mut self.out {
            SinkOut::Buffer { buf, limit } => {
                if buf.len() + bytes.len() > *limit {
                    Err(SinkFailure::BufferFull)
                } else {
                    buf.extend_from_slice(bytes);
                    Ok(())
                }
            }
            SinkOut::Stream(w) => w
                .write_all(bytes)
                .map_err(|e| SinkFailure::Output(e.to_string())),
            SinkOut::Discard => Ok(()),
        };
        result.map_err(|why| self.fail(why))
    }

    fn line(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.line_no += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        if !self.filters.is_empty() && !self.may_match(line) {
            return Ok(());
        }
        let Ok(record) = serde_json::from_slice::<Value>(line) else {
            self.malformed += 1;
            if self.filters.is_empty() {
                self.records_out += 1;
                self.emit(line)?;
                self.emit(b"\n")?;
            }
            return Ok(());
        };
        let time = if self.trim.is_some() || !self.exclude.is_empty() {
            crate::record_time::value_time_ns(&record)
        } else {
            None
        };
        if let Some(t) = time {
            if self.exclude.iter().any(|&(a, b)| t >= a && t < b) {
                self.superseded += 1;
                return Ok(());
            }
        }
        if let Some((from, to)) = self.trim {
            match time {
                Some(t) if t < from || t >= to => return Ok(()),
                Some(_) => {}
                None => self.untimed += 1,
            }
        }
        let keep = if self.match_any {
            self.filters.iter().any(|f| f.matches(&record))
        } else {
            self.filters.iter().all(|f| f.matches(&record))
        };
        if !keep {
            return Ok(());
        }
        self.records_out += 1;
        self.emit(line)?;
        self.emit(b"\n")
    }

    /// The last line when the plaintext does not end with a newline.
    fn finish(&mut self) -> std::io::Result<()> {
        if self.parses() && !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.line(&rest)?;
        }
        Ok(())
    }
}

impl Write for LineSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if !self.parses() {
            self.emit(data)?;
            return Ok(data.len());
        }
        let mut rest = data;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let line = if self.partial.is_empty() {
                &rest[..nl]
            } else {
                self.partial.extend_from_slice(&rest[..nl]);
                &self.partial[..]
            };
            let line = line.to_vec();
            self.partial.clear();
            self.line(&line)?;
            rest = &rest[nl + 1..];
        }
        if self.partial.len() + rest.len() > MAX_LINE {
            return Err(self.fail(SinkFailure::BadRecord(format!(
                "line {} is longer than {MAX_LINE} bytes",
                self.line_no + 1
            ))));
        }
        self.partial.extend_from_slice(rest);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.out {
            SinkOut::Stream(w) => w.flush(),
            _ => Ok(()),
        }
    }
}

/// One window to restore.
struct Target {
    context: SealContext,
    key: String,
    /// From the catalog; `None` offline.
    catalog: Option<Catalog>,
    /// A pushed batch (its records may be superseded by a pulled window).
    batch: bool,
    /// Every record's time lies in the range: copied as stored, not parsed.
    whole: bool,
}

/// What the catalog records about an object: object SHA-256 and size, plaintext
/// SHA-256, length and record count.
type Catalog = ([u8; 32], u64, [u8; 32], u64, u64);

fn to32(v: &Option<Vec<u8>>) -> Option<[u8; 32]> {
    v.as_deref().and_then(|b| b.try_into().ok())
}

impl Target {
    fn from_row(row: &WindowRow, whole: bool) -> Option<Self> {
        let catalog = (
            to32(&row.object_sha256)?,
            u64::try_from(row.size_bytes?).ok()?,
            to32(&row.plaintext_sha256)?,
            u64::try_from(row.plaintext_bytes?).ok()?,
            u64::try_from(row.record_count?).ok()?,
        );
        Some(Self {
            context: row.context(),
            key: row.object_key.clone()?,
            catalog: Some(catalog),
            batch: row.batch_id.is_some(),
            whole,
        })
    }

    /// Compares what reading the object proved with the catalog.
    fn check(&self, v: &VerifiedObject) -> Result<(), RestoreError> {
        let Some((sha, size, plain_sha, plain_len, records)) = self.catalog else {
            return Ok(());
        };
        let fail = |why: String| Err(RestoreError::verification(&self.context, &self.key, why));
        if v.object_sha256 != sha {
            return fail(format!(
                "object SHA-256 {} differs from the catalog's {}",
                hex::encode(v.object_sha256),
                hex::encode(sha)
            ));
        }
        if v.object_len != size {
            return fail(format!(
                "object is {} bytes, the catalog says {size}",
                v.object_len
            ));
        }
        if v.plaintext.plaintext_sha256 != plain_sha || v.plaintext.plaintext_len != plain_len {
            return fail("plaintext SHA-256 or length differs from the catalog".into());
        }
        if v.plaintext.record_count != records {
            return fail(format!(
                "{} records, the catalog says {records}",
                v.plaintext.record_count
            ));
        }
        Ok(())
    }
}

/// Restores `req` from `source` into `out`; returns `out` and what was done.
pub async fn restore(
    source: &Source,
    req: &Request,
    out: Box<dyn Write + Send>,
    observer: &mut dyn Observer,
) -> Result<(Box<dyn Write + Send>, Stats), RestoreError> {
    if req.from >= req.to {
        return Err(RestoreError::Input(
            "empty range: --from must be before --to".into(),
        ));
    }
    if !crate::push::valid_dataset(&req.dataset) {
        return Err(RestoreError::Input(format!(
            "dataset {:?} is not a dataset name (like http_requests)",
            req.dataset
        )));
    }
    let mut run = Run {
        req,
        filters: Arc::new(req.filters.clone()),
        out: Some(out),
        stats: Stats::default(),
        authoritative: Vec::new(),
    };
    match source {
        Source::Catalog { pool, store, kms } => {
            run.restore_catalog(pool, store, kms, observer).await?
        }
        Source::Bucket { store, kms, tenant } => {
            run.restore_bucket(store, kms, *tenant, observer).await?
        }
    }
    let mut out = run
        .out
        .take()
        .ok_or_else(|| RestoreError::Operational("output lost after a failed window".into()))?;
    out.flush()
        .map_err(|e| RestoreError::Operational(format!("write output: {e}")))?;
    Ok((out, run.stats))
}

/// Records a read of `zone`'s log content (`logs.read`) with what was asked and how
/// it ended — counts and gaps, or the error — through the one audit writer. Every
/// front end that restores from the catalog calls it.
pub async fn record_read(
    pool: &PgPool,
    actor: &str,
    tenant: Option<Uuid>,
    zone: Uuid,
    asked: serde_json::Value,
    outcome: Result<&Stats, &RestoreError>,
) -> Result<(), rainlogs_core::db::DbError> {
    let (result, mut detail) = match outcome {
        Ok(s) => (
            "ok",
            serde_json::json!({"windows": s.windows_restored, "records": s.records_out,
                               "bytes": s.bytes_out, "gaps": s.gaps,
                               "late_unsettled": s.late_unsettled}),
        ),
        Err(e) => (e.code(), serde_json::json!({"error": e.to_string()})),
    };
    detail["request"] = asked;
    let event = crate::audit::AuditEvent {
        tenant,
        zone: Some(zone),
        detail,
        ..crate::audit::AuditEvent::new(actor, "logs.read", result)
    };
    crate::audit::record(pool, &event)
        .await
        .map_err(|e| rainlogs_core::db::DbError::query("write logs.read audit row", e))
}

/// A window's archived object as stored, handed out whole (downloads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub window: i64,
    /// The full bucket key (read from the bucket's root).
    pub key: String,
    pub sha256: Vec<u8>,
    pub size: u64,
}

/// Why a window's object cannot be handed out.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("no window {window} in zone {zone}")]
    UnknownWindow { zone: Uuid, window: i64 },
    #[error("window {window}'s object was deleted (pruned or erased; see its deletion receipt)")]
    Deleted { window: i64 },
    #[error("window {window} is {state}: it has no archived object")]
    NoObject { window: i64, state: String },
    #[error(transparent)]
    Db(#[from] rainlogs_core::db::DbError),
}

/// The archived object of `zone`'s `window`, recorded as downloaded by `actor`
/// (`object.download`, with its key and catalog hash) before a byte is handed out.
pub async fn object_for_download(
    pool: &PgPool,
    zone: Uuid,
    window: i64,
    actor: &str,
) -> Result<StoredObject, ObjectError> {
    let receipts = verify::receipts_exist(pool).await?;
    let row = verify::window_rows(pool, receipts, &[window])
        .await?
        .into_iter()
        .find(|r| r.zone_id == zone)
        .ok_or(ObjectError::UnknownWindow { zone, window })?;
    let object = match (row.state.as_str(), row.object_key, row.object_sha256) {
        ("archived", Some(key), Some(sha256)) => StoredObject {
            window,
            key,
            sha256,
            size: row.size_bytes.unwrap_or(0).max(0) as u64,
        },
        ("pruned", ..) => return Err(ObjectError::Deleted { window }),
        (state, ..) => {
            return Err(ObjectError::NoObject {
                window,
                state: state.to_owned(),
            })
        }
    };
    let event = crate::audit::AuditEvent {
        tenant: Some(row.tenant_id),
        zone: Some(zone),
        detail: serde_json::json!({"window": window, "object_key": object.key,
                                   "object_sha256": hex::encode(&object.sha256),
                                   "size_bytes": object.size}),
        ..crate::audit::AuditEvent::new(actor, "object.download", "ok")
    };
    crate::audit::record(pool, &event)
        .await
        .map_err(|e| rainlogs_core::db::DbError::query("write object.download audit row", e))?;
    Ok(object)
}

/// The half-open span of a window's record times: a pushed batch's window is its
/// records' span already; a pulled window's recorded span (migration 0020) is
/// `[first, last + 1 µs)` (stored truncated to microseconds); without one, a pulled
/// window's records were received inside it and are at most [`ASSUMED_LAG`] older.
fn record_span(row: &WindowRow) -> (DateTime<Utc>, DateTime<Utc>) {
    match (row.batch_id, row.first_record_at, row.last_record_at) {
        (Some(_), _, _) => (row.start_at, row.end_at),
        (None, Some(first), Some(last)) => (first, last + TimeDelta::microseconds(1)),
        _ => (row.start_at - ASSUMED_LAG, row.end_at),
    }
}

struct Run<'a> {
    req: &'a Request,
    filters: Arc<Vec<Filter>>,
    out: Option<Box<dyn Write + Send>>,
    stats: Stats,
    /// Archived pulled windows (ns spans, by start) of a zone that also has pushed
    /// batches: they are authoritative for their time.
    authoritative: Vec<(i64, i64)>,
}

fn ns(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

impl Run<'_> {
    async fn restore_catalog(
        &mut self,
        pool: &PgPool,
        store: &ObjectStore,
        kms: &Arc<dyn Kms>,
        observer: &mut dyn Observer,
    ) -> Result<(), RestoreError> {
        let zone = crate::catalog::zone::resolve(pool, &self.req.zone)
            .await
            .map_err(|e| match e {
                crate::catalog::zone::ZoneError::Db(d) => RestoreError::operational(d),
                other => RestoreError::Input(other.to_string()),
            })?;
        self.stats.zone_id = zone;
        if let Some((tenant, request, at)) = crate::gdpr::erasure_of_zone(pool, zone).await? {
            return Err(RestoreError::Erased {
                tenant,
                request,
                at,
            });
        }
        if let Some(t) = &self.req.tenant {
            let owner: Option<(Uuid, String)> = sqlx::query!(
                "SELECT t.id, t.name FROM zones z JOIN tenants t ON t.id = z.tenant_id WHERE z.id = $1",
                zone
            )
            .fetch_optional(pool)
            .await
            .map_err(RestoreError::operational)?
            .map(|r| (r.id, r.name));
            if !owner.is_some_and(|(id, name)| id.to_string() == *t || name == *t) {
                return Err(RestoreError::Input(format!(
                    "zone {} does not belong to tenant {t}",
                    self.req.zone
                )));
            }
        }
        let receipts = verify::receipts_exist(pool).await?;
        // Gaps are a statement about pulled windows, which tile a pull zone's time;
        // pushed batches do not (docs/INGEST.md), so push and hybrid zones get no gap
        // warnings from here.
        let tiles = verify::zone_mode(pool, zone).await? == "pull";
        if !tiles {
            // A zone with pushed batches may also have pulled windows (hybrid repair, or
            // time pulled before a switch): those hold every record of their span.
            let spans = sqlx::query!(
                "SELECT start_at, end_at FROM windows
                 WHERE zone_id = $1 AND batch_id IS NULL AND state = 'archived'
                   AND end_at > $2 AND start_at < $3
                 ORDER BY start_at",
                zone,
                self.req.from,
                self.req.to,
            )
            .fetch_all(pool)
            .await
            .map_err(RestoreError::operational)?;
            self.authoritative = spans
                .into_iter()
                .map(|r| (ns(r.start_at), ns(r.end_at)))
                .collect();
        }
        let mut walk = CoverageWalk::new(self.req.from, self.req.to);
        let mut spans = Vec::new();
        let mut after = None;
        // Logpull serves records by the time Cloudflare received them, which may be
        // after their own time: windows after `to` can hold records of the range
        // (docs/VERIFY.md, "Late records"). `tail` follows the pulled windows after `to`
        // that are settled (archived or empty) without a break.
        let mut tail = Tail::new(self.req.to);
        loop {
            let page = verify::window_page(
                pool,
                receipts,
                zone,
                self.req.from,
                self.req.to + SEARCH_LAG,
                Some(&self.req.dataset),
                after,
                verify::WINDOW_PAGE,
            )
            .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.start_at, last.end_at, last.id));
            for row in &page {
                let Some(cover) = Cover::of_state_text(&row.state) else {
                    continue; // split: its children carry its time
                };
                let in_range = row.start_at < self.req.to;
                if tiles && row.batch_id.is_none() {
                    if in_range {
                        walk.window(cover, row.start_at, row.end_at, &mut spans);
                        self.warn_gaps(&mut spans, zone, observer);
                    }
                    if row.end_at > self.req.to {
                        tail.window(cover, row.start_at, row.end_at);
                    }
                }
                match cover {
                    Cover::Archived => {
                        let (first, end) = record_span(row);
                        if first >= self.req.to || end <= self.req.from {
                            continue; // none of its records is of the range
                        }
                        let whole = first >= self.req.from && end <= self.req.to;
                        let target = Target::from_row(row, whole).ok_or_else(|| {
                            RestoreError::verification(
                                &row.context(),
                                row.object_key.as_deref().unwrap_or("(no catalog row)"),
                                "archived window without a complete catalog row",
                            )
                        })?;
                        // Catalog keys are full bucket keys (with the writer's
                        // prefix): read from the bucket's root.
                        self.window(&store.root(), kms, &target).await?;
                        observer.progress(&self.stats);
                    }
                    Cover::Empty if in_range => self.stats.windows_empty += 1,
                    _ => {}
                }
            }
        }
        if tiles {
            walk.finish(&mut spans);
            self.warn_gaps(&mut spans, zone, observer);
            if let Some(unsettled) = tail.unsettled(ASSUMED_LAG) {
                self.stats.late_unsettled = true;
                observer.warn(&format!(
                    "zone {zone}: records of the range received late (up to {} min after their time) may be in windows from {} on, which are not archived yet: restore again once they are",
                    ASSUMED_LAG.num_minutes(),
                    unsettled.to_rfc3339()
                ));
            }
        }
        Ok(())
    }

    fn warn_gaps(
        &mut self,
        spans: &mut Vec<crate::coverage::Span>,
        zone: Uuid,
        observer: &mut dyn Observer,
    ) {
        for (kind, from, to) in spans.drain(..) {
            let why = match kind {
                Cover::Pruned => "pruned under retention (logs deleted)",
                Cover::Failed => "failed permanently (never archived)",
                Cover::InFlight => "not archived yet (in flight)",
                Cover::Missing => "no window planned",
                Cover::Lost => "no window planned, and beyond Logpull's 7 days (lost)",
                Cover::Archived | Cover::Empty => continue,
            };
            self.stats.gaps += 1;
            observer.warn(&format!(
                "zone {zone} [{}, {}) has no logs to restore: {why}",
                from.to_rfc3339(),
                to.to_rfc3339()
            ));
        }
    }

    async fn restore_bucket(
        &mut self,
        store: &ObjectStore,
        kms: &Arc<dyn Kms>,
        tenant: Uuid,
        observer: &mut dyn Observer,
    ) -> Result<(), RestoreError> {
        let zone = Uuid::parse_str(&self.req.zone).map_err(|_| {
            RestoreError::Input(format!(
                "--zone {:?}: without Postgres give the zone's Rainlogs id (a UUID)",
                self.req.zone
            ))
        })?;
        self.stats.zone_id = zone;
        // A window starts at most an hour before it ends (Logpull's limit), so one that
        // overlaps `from` starts no earlier than the day of `from - 1h`.
        let mut day = (self.req.from - TimeDelta::hours(1)).date_naive();
        // Late records of the range may be in pulled windows up to ASSUMED_LAG after it.
        let last_day = (self.req.to + ASSUMED_LAG - TimeDelta::nanoseconds(1)).date_naive();
        let mut covered_to = self.req.from;
        let (mut pulled, mut pushed) = (false, false);
        while day <= last_day {
            let prefix = format!("archive/{tenant}/{zone}/{}/", day.format("%Y/%m/%d"));
            let mut token = None;
            loop {
                let (page, next) = store
                    .list_page(&prefix, token, 1000)
                    .await
                    .map_err(RestoreError::operational)?;
                for object in page {
                    let Some(parts) = crate::pipeline::parse_archive_key(&object.key) else {
                        observer.warn(&format!(
                            "{}: not an archive object name; skipped",
                            object.key
                        ));
                        continue;
                    };
                    let (start, end) = (parts.start, parts.end);
                    // The span of its records' time: a batch's key names it; a pulled
                    // window's records were received inside it, at most ASSUMED_LAG
                    // after their time (no catalog here to say more).
                    let first = match parts.batch {
                        Some(_) => start,
                        None => start - ASSUMED_LAG,
                    };
                    if end <= self.req.from || first >= self.req.to {
                        continue;
                    }
                    let whole = first >= self.req.from && end <= self.req.to;
                    match &parts.batch {
                        // A pushed batch: restored when it is of the dataset asked for.
                        // Batches do not tile time, so they say nothing about gaps.
                        Some((_, dataset)) => {
                            if *dataset != self.req.dataset {
                                continue;
                            }
                            pushed = true;
                        }
                        None => {
                            if self.req.dataset != verify::PULL_DATASET {
                                continue;
                            }
                            if start >= self.req.to {
                                // After the range: only its late records are of it.
                            } else if start < covered_to && end <= covered_to {
                                observer.warn(&format!(
                                    "{}: overlaps windows already restored; skipped",
                                    object.key
                                ));
                                continue;
                            } else if start > covered_to {
                                self.stats.gaps += 1;
                                observer.warn(&format!(
                                    "zone {zone} [{}, {}) has no object: empty, pruned or missing (cannot tell without Postgres)",
                                    covered_to.to_rfc3339(),
                                    start.to_rfc3339()
                                ));
                            }
                            if start < self.req.to {
                                covered_to = covered_to.max(end);
                            }
                            pulled = true;
                        }
                    }
                    let target = Target {
                        context: SealContext {
                            tenant,
                            zone,
                            window_start: start,
                            window_end: end,
                        },
                        key: object.key,
                        catalog: None,
                        // Offline nothing says which pulled windows are archived.
                        batch: false,
                        whole,
                    };
                    self.window(store, kms, &target).await?;
                    observer.progress(&self.stats);
                }
                match next {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
            day = match day.succ_opt() {
                Some(d) => d,
                None => break,
            };
        }
        // A zone whose logs were pushed has no pulled windows to tile its time.
        let push_only = pushed && !pulled;
        if covered_to < self.req.to && !push_only {
            self.stats.gaps += 1;
            observer.warn(&format!(
                "zone {zone} [{}, {}) has no object: empty, pruned or missing (cannot tell without Postgres)",
                covered_to.to_rfc3339(),
                self.req.to.to_rfc3339()
            ));
        }
        Ok(())
    }

    fn sink(&self, target: &Target, out: SinkOut) -> (LineSink, Arc<Mutex<Option<SinkFailure>>>) {
        let failure = Arc::new(Mutex::new(None));
        let sink = LineSink {
            trim: (!target.whole).then(|| (ns(self.req.from), ns(self.req.to))),
            filters: self.filters.clone(),
            match_any: self.req.match_any,
            partial: Vec::new(),
            out,
            records_out: 0,
            bytes_out: 0,
            untimed: 0,
            malformed: 0,
            line_no: 0,
            failure: failure.clone(),
            exclude: if target.batch {
                let (a, b) = (
                    ns(target.context.window_start),
                    ns(target.context.window_end),
                );
                self.authoritative
                    .iter()
                    .copied()
                    .filter(|&(s, e)| s < b && e > a)
                    .collect()
            } else {
                Vec::new()
            },
            superseded: 0,
        };
        (sink, failure)
    }

    /// Why reading a window stopped: too big for the buffer (go two-pass), or a
    /// failure that ends the restore.
    fn failed(
        &self,
        target: &Target,
        error: Option<TaskError>,
        failure: &Arc<Mutex<Option<SinkFailure>>>,
    ) -> Failed {
        let failure = failure.lock().ok().and_then(|f| f.clone());
        let stop = |e| Failed::Stop(e);
        match (failure, error) {
            (Some(SinkFailure::BufferFull), _) => Failed::TooBig,
            (Some(SinkFailure::BadRecord(why)), _) => stop(RestoreError::verification(
                &target.context,
                &target.key,
                why,
            )),
            (Some(SinkFailure::Output(why)), _) => {
                stop(RestoreError::Operational(format!("write output: {why}")))
            }
            (None, Some(e))
                if e.class == ErrorClass::Retryable && !e.code.starts_with("sealed.") =>
            {
                stop(RestoreError::Operational(format!("{}: {e}", target.key)))
            }
            (None, Some(e)) => stop(RestoreError::verification(
                &target.context,
                &target.key,
                e.to_string(),
            )),
            (None, None) => stop(RestoreError::Operational(format!(
                "{}: output failed",
                target.key
            ))),
        }
    }

    /// Opens `target` through `sink` and checks it against the catalog; the sink comes
    /// back only when everything verified.
    async fn read(
        &self,
        store: &ObjectStore,
        kms: &Arc<dyn Kms>,
        target: &Target,
        out: SinkOut,
    ) -> Result<(VerifiedObject, LineSink), Failed> {
        let (sink, failure) = self.sink(target, out);
        let (verified, mut sink) =
            match open_object(store, kms.clone(), &target.key, target.context, sink).await {
                Ok(done) => done,
                Err(e) => return Err(self.failed(target, Some(e), &failure)),
            };
        if sink.finish().is_err() {
            return Err(self.failed(target, None, &failure));
        }
        target.check(&verified).map_err(Failed::Stop)?;
        Ok((verified, sink))
    }

    fn account(&mut self, v: &VerifiedObject, sink: &LineSink) {
        self.stats.windows_restored += 1;
        self.stats.records_read += v.plaintext.record_count;
        self.stats.records_out += if sink.parses() {
            sink.records_out
        } else {
            v.plaintext.record_count
        };
        self.stats.bytes_out += sink.bytes_out;
        self.stats.untimed_records += sink.untimed;
        self.stats.superseded_records += sink.superseded;
        self.stats.malformed_lines += sink.malformed;
    }

    /// Restores one window: buffered and verified, or verified then streamed.
    async fn window(
        &mut self,
        store: &ObjectStore,
        kms: &Arc<dyn Kms>,
        target: &Target,
    ) -> Result<(), RestoreError> {
        let buffer = SinkOut::Buffer {
            buf: Vec::new(),
            limit: self.req.max_window_bytes,
        };
        match self.read(store, kms, target, buffer).await {
            Ok((verified, sink)) => {
                self.stats.object_bytes += verified.object_len;
                let SinkOut::Buffer { buf, .. } = &sink.out else {
                    return Err(RestoreError::Operational("window sink mode changed".into()));
                };
                let out = self.out.as_mut().ok_or_else(|| {
                    RestoreError::Operational("output lost after a failed window".into())
                })?;
                out.write_all(buf)
                    .map_err(|e| RestoreError::Operational(format!("write output: {e}")))?;
                self.account(&verified, &sink);
                Ok(())
            }
            Err(Failed::Stop(e)) => Err(e),
            Err(Failed::TooBig) => self.two_pass(store, kms, target).await,
        }
    }

    /// A window too big to hold: verify it whole first, then stream it and check that
    /// the second read was the same object.
    async fn two_pass(
        &mut self,
        store: &ObjectStore,
        kms: &Arc<dyn Kms>,
        target: &Target,
    ) -> Result<(), RestoreError> {
        self.stats.two_pass_windows += 1;
        let unverified = |why: &str| {
            RestoreError::verification(
                &target.context,
                &target.key,
                format!("{why}: output of this window written so far is NOT verified"),
            )
        };
        let (first, _) = match self.read(store, kms, target, SinkOut::Discard).await {
            Ok(done) => done,
            Err(Failed::Stop(e)) => return Err(e),
            Err(Failed::TooBig) => {
                return Err(RestoreError::Operational(
                    "verification pass buffered output".into(),
                ))
            }
        };
        self.stats.object_bytes += first.object_len;
        let out = self
            .out
            .take()
            .ok_or_else(|| RestoreError::Operational("output lost after a failed window".into()))?;
        match self.read(store, kms, target, SinkOut::Stream(out)).await {
            Ok((second, sink)) => {
                self.stats.object_bytes += second.object_len;
                if second.object_sha256 != first.object_sha256 {
                    return Err(unverified(
                        "the object changed between the verification pass and the output pass",
                    ));
                }
                self.account(&second, &sink);
                let SinkOut::Stream(out) = sink.out else {
                    return Err(RestoreError::Operational("window sink mode changed".into()));
                };
                self.out = Some(out);
                Ok(())
            }
            Err(Failed::Stop(RestoreError::Verification { reason, .. })) => {
                Err(unverified(&format!("output pass failed ({reason})")))
            }
            Err(Failed::Stop(e)) => Err(e),
            Err(Failed::TooBig) => Err(unverified("output pass failed")),
        }
    }
}

/// How reading one window ended when it did not verify.
enum Failed {
    TooBig,
    Stop(RestoreError),
}

/// The pulled windows after a range's end, in time order: how far past `to` they are
/// settled (archived, empty or pruned) without a break, so late records are in.
struct Tail {
    to: DateTime<Utc>,
    settled_to: DateTime<Utc>,
    broken: bool,
}

impl Tail {
    fn new(to: DateTime<Utc>) -> Self {
        Self {
            to,
            settled_to: to,
            broken: false,
        }
    }

    fn window(&mut self, cover: Cover, start: DateTime<Utc>, end: DateTime<Utc>) {
        if self.broken || start > self.settled_to {
            self.broken = true;
            return;
        }
        match cover {
            Cover::Archived | Cover::Empty | Cover::Pruned => {
                self.settled_to = self.settled_to.max(end)
            }
            _ => self.broken = true,
        }
    }

    /// Where the settled tail stops, when that is short of `to + lag`.
    fn unsettled(&self, lag: TimeDelta) -> Option<DateTime<Utc>> {
        (self.settled_to < self.to + lag).then_some(self.settled_to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink as restore builds one: `filters` all matching, trimmed to `trim` (ns),
    /// buffering up to `limit` bytes.
    fn test_sink(trim: Option<(i64, i64)>, filters: Vec<Filter>, limit: usize) -> LineSink {
        LineSink {
            trim,
            filters: Arc::new(filters),
            match_any: false,
            partial: Vec::new(),
            out: SinkOut::Buffer {
                buf: Vec::new(),
                limit,
            },
            records_out: 0,
            bytes_out: 0,
            untimed: 0,
            malformed: 0,
            line_no: 0,
            failure: Arc::new(Mutex::new(None)),
            exclude: Vec::new(),
            superseded: 0,
        }
    }

    #[test]
    fn filters_match_top_level_nested_and_numbers() {
        let r: Value = serde_json::json!({
            "EdgeResponseStatus": 404, "ClientCountry": "de",
            "Cache": {"Status": "hit"}, "WAF.Score": 5, "Flag": true
        });
        let f = |s: &str| s.parse::<Filter>().unwrap();
        assert!(f("EdgeResponseStatus=404").matches(&r));
        assert!(!f("EdgeResponseStatus=200").matches(&r));
        assert!(f("ClientCountry=de").matches(&r));
        assert!(f("Cache.Status=hit").matches(&r));
        assert!(f("WAF.Score=5").matches(&r), "a literal dotted key wins");
        assert!(f("Flag=true").matches(&r));
        assert!(!f("Missing=x").matches(&r));
        assert!("novalue".parse::<Filter>().is_err());
        assert!("=x".parse::<Filter>().is_err());
    }

    #[test]
    fn sink_trims_filters_and_bounds_its_buffer() {
        let failure = Arc::new(Mutex::new(None));
        let mut sink = test_sink(
            Some((10_000_000_000, 20_000_000_000)),
            vec!["a=1".parse().unwrap()],
            64,
        );
        sink.failure = failure.clone();
        let data = b"{\"a\":1,\"EdgeEndTimestamp\":5}\n{\"a\":1,\"EdgeEndTimestamp\":15}\n{\"a\":2,\"EdgeEndTimestamp\":15}\n{\"a\":1}";
        sink.write_all(&data[..20]).unwrap();
        sink.write_all(&data[20..]).unwrap();
        sink.finish().unwrap();
        let SinkOut::Buffer { buf, .. } = &sink.out else {
            panic!()
        };
        assert_eq!(
            String::from_utf8_lossy(buf),
            "{\"a\":1,\"EdgeEndTimestamp\":15}\n{\"a\":1}\n"
        );
        assert_eq!((sink.records_out, sink.untimed), (2, 1));
        let big = format!(
            "{{\"a\":1,\"EdgeEndTimestamp\":15,\"pad\":\"{}\"}}\n",
            "x".repeat(80)
        );
        assert!(sink.write_all(big.as_bytes()).is_err());
        assert!(matches!(
            *failure.lock().unwrap(),
            Some(SinkFailure::BufferFull)
        ));
    }

    #[test]
    fn match_any_keeps_a_record_matching_one_filter_of_several() {
        let mut sink = test_sink(
            None,
            vec![
                "ClientIP=192.0.2.1".parse().unwrap(),
                "Cookies.session=abc".parse().unwrap(),
            ],
            1 << 20,
        );
        sink.match_any = true;
        let data = concat!(
            "{\"r\":1,\"ClientIP\":\"192.0.2.1\"}\n",
            "{\"r\":2,\"ClientIP\":\"192.0.2.9\",\"Cookies\":{\"session\":\"abc\"}}\n",
            "{\"r\":3,\"ClientIP\":\"192.0.2.9\"}\n",
            // The value's bytes, but not in the field: parsed, and not a match.
            "{\"r\":4,\"ClientIP\":\"192.0.2.9\",\"Referer\":\"192.0.2.1\"}\n",
            "not json\n",
            "not json 192.0.2.1\n",
        );
        sink.write_all(data.as_bytes()).unwrap();
        sink.finish().unwrap();
        let SinkOut::Buffer { buf, .. } = &sink.out else {
            panic!("buffer")
        };
        let out = String::from_utf8_lossy(buf);
        assert!(out.contains("\"r\":1") && out.contains("\"r\":2"), "{out}");
        assert!(
            !out.contains("\"r\":3") && !out.contains("\"r\":4") && !out.contains("not json"),
            "{out}"
        );
        // Lines without any value's bytes are skipped unparsed (not counted); the
        // malformed line holding one is parsed, counted and skipped.
        assert_eq!((sink.records_out, sink.malformed), (2, 1));
    }

    #[test]
    fn only_escape_free_non_numeric_values_prefilter_lines() {
        let lit = |v: &str| {
            format!("F={v}")
                .parse::<Filter>()
                .unwrap()
                .literal()
                .is_some()
        };
        assert!(lit("192.0.2.1") && lit("2001:db8::1") && lit("abc-DEF_1"));
        // Numbers may be written otherwise; these characters may be escaped.
        assert!(!lit("404") && !lit("1.5") && !lit("") && !lit("a&b") && !lit("a/b"));
        assert!(!lit("say \"hi\"") && !lit("caf\u{e9}"));
    }

    #[test]
    fn a_quarantined_line_passes_through_a_trim_and_is_skipped_by_a_filter_never_an_error() {
        let run = |filters: Vec<Filter>| {
            let mut sink = test_sink(Some((10_000_000_000, 20_000_000_000)), filters, 1 << 20);
            let data = b"{\"a\":1,\"EdgeEndTimestamp\":15}\nnot json {\n{\"a\":1,\"EdgeEndTimestamp\":16}\n";
            sink.write_all(data)
                .expect("a malformed line is not a failure");
            sink.finish().unwrap();
            let SinkOut::Buffer { buf, .. } = &sink.out else {
                panic!()
            };
            (
                String::from_utf8_lossy(buf).into_owned(),
                sink.malformed,
                sink.records_out,
            )
        };
        let (out, malformed, n) = run(Vec::new());
        assert_eq!(malformed, 1);
        assert_eq!(n, 3);
        assert!(out.contains("not json {\n"), "{out}");
        let (out, malformed, n) = run(vec!["a=1".parse().unwrap()]);
        assert_eq!((malformed, n), (1, 2));
        assert!(!out.contains("not json"), "{out}");
    }

    #[test]
    fn records_in_an_authoritative_span_are_superseded_not_written() {
        let mut sink = test_sink(None, Vec::new(), 1 << 20);
        sink.exclude = vec![(10_000_000_000, 20_000_000_000)];
        let data =
            b"{\"r\":1,\"EdgeEndTimestamp\":5}\n{\"r\":2,\"EdgeEndTimestamp\":15}\n{\"r\":3}\n";
        sink.write_all(data).unwrap();
        sink.finish().unwrap();
        assert_eq!(sink.superseded, 1);
        let SinkOut::Buffer { buf, .. } = &sink.out else {
            panic!("buffer")
        };
        assert_eq!(
            buf.as_slice(),
            b"{\"r\":1,\"EdgeEndTimestamp\":5}\n{\"r\":3}\n".as_slice()
        );
    }
}
