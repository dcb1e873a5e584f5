//! What the three window stages (fetch → encrypt → upload) share: the payload of their
//! tasks, the object keys they hand data on through, the window facts they read from
//! the ledger, and the blocking-I/O bridges that keep memory bounded (a sealed stream is
//! spooled to a temporary file and uploaded in parts; objects are read as a stream).
//!
//! docs/PIPELINE.md describes the flow and why it is idempotent.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::endpoint::{EndpointKind, ZoneEndpoint};
use crate::ledger::{StageAction, WindowState};
use rainlogs_core::db::DbError;
use rainlogs_core::error::TaskError;
use rainlogs_core::storage::{ObjectStore, StorageError, MIN_PART_SIZE};
use rainlogs_core::task::{HandlerOutput, Priority, TaskSpec};
use rainlogs_sealed::SealContext;

/// Notes a window stage's failure on its window (`windows.last_error`), so operators
/// see why a window is not moving while the dispatcher retries it. Best effort: a
/// failure to record is logged, never allowed to mask the stage's own error.
pub async fn note_failure<T>(
    pool: &PgPool,
    task: &rainlogs_core::task::TaskEnvelope,
    result: &Result<T, TaskError>,
) {
    let Err(e) = result else { return };
    let Ok(WindowTask { window_id }) = task.payload_as::<WindowTask>() else {
        return;
    };
    let what = format!("attempt {}: {} ({})", task.attempt, e.message, e.code);
    if let Err(db) = crate::ledger::note_error(pool, window_id, &what).await {
        tracing::warn!(window = window_id, error = %db, "could not record the window's error");
    }
}

/// Error codes no retry of a window can fix while its zone stays as it is: Cloudflare
/// refused the token (401/403), the zone has no token or one that does not open, the
/// tenant was shredded or is gone, the keyring lacks the master key of the tenant's
/// keys. Retrying such a window only adds dead letters (and Cloudflare requests with a
/// bad token), and the reconciler would re-send it forever; the zone is parked instead
/// ([`park_window`]). Object-level failures (a staged object that does not open, a
/// tampered archive object) are not here: they concern one window.
pub const ZONE_BLOCKING_CODES: &[&str] = &[
    "logpull.forbidden",
    "zone.no_token",
    "zone.bad_token",
    "kms.shredded",
    "kms.unknown_tenant",
    "kms.master_key_unavailable",
];

/// Whether `err` is one no retry of the window can fix ([`ZONE_BLOCKING_CODES`]).
pub fn blocks_zone(err: &TaskError) -> bool {
    !err.is_retryable() && ZONE_BLOCKING_CODES.contains(&err.code.as_str())
}

/// How a window stage ends an attempt: a zone-blocking failure ([`blocks_zone`]) parks
/// the zone and ends the message ([`park_window`]); any other failure is noted on the
/// window ([`note_failure`]) and returned for the dispatcher to retry or dead-letter.
pub async fn finish_attempt(
    pool: &PgPool,
    task: &rainlogs_core::task::TaskEnvelope,
    stage: &str,
    result: Result<rainlogs_core::task::HandlerOutput, TaskError>,
) -> Result<rainlogs_core::task::HandlerOutput, TaskError> {
    if let Err(err) = &result {
        if blocks_zone(err) {
            if let Ok(WindowTask { window_id }) = task.payload_as::<WindowTask>() {
                let reason = format!("{stage}: {} [{}]", err.message, err.code);
                return park_window(pool, window_id, &reason, stage).await;
            }
        }
    }
    note_failure(pool, task, &result).await;
    result
}

/// Parks window `window_id`'s zone with `reason` (`catalog::zone::park`: paused, the
/// reason in `zones.paused_reason` and `last_error`, audited) and leaves the window to
/// wait: a `fetching` window goes back to `planned` (it is not failed — nothing about
/// it is wrong), a later one keeps its state; the reason is noted on it. The message
/// ends successfully with `"parked"` in its result: nothing is lost (the ledger holds
/// the window), nothing is dead-lettered, and once the zone is resumed the reconciler
/// sends it again.
pub async fn park_window(
    pool: &PgPool,
    window_id: i64,
    reason: &str,
    stage: &str,
) -> Result<rainlogs_core::task::HandlerOutput, TaskError> {
    let zone: Uuid = sqlx::query_scalar("SELECT zone_id FROM windows WHERE id = $1")
        .bind(window_id)
        .fetch_one(pool)
        .await
        .map_err(|e| DbError::query("read window's zone", e))?;
    crate::catalog::zone::park(pool, zone, reason, stage).await?;
    sqlx::query(
        "UPDATE windows
         SET state = CASE WHEN state = 'fetching' THEN 'planned'::window_state ELSE state END,
             state_since = CASE WHEN state = 'fetching' THEN now() ELSE state_since END,
             last_error = $2
         WHERE id = $1 AND state IN ('planned', 'fetching', 'staged', 'sealed')",
    )
    .bind(window_id)
    .bind(reason)
    .execute(pool)
    .await
    .map_err(|e| DbError::query("park window", e))?;
    tracing::warn!(window = window_id, %zone, %reason, "window parked with its zone");
    Ok(rainlogs_core::task::HandlerOutput::done(
        serde_json::json!({
            "window_id": window_id,
            "zone": zone,
            "parked": reason,
        }),
    ))
}

/// The queue window tasks travel on.
pub const PIPELINE_QUEUE: &str = "default";
/// Objects up to this size are written with one PutObject, larger ones in parts of it.
pub const PART_SIZE: usize = 2 * MIN_PART_SIZE;
/// Purpose a zone's Cloudflare token is bound to in the kms.
pub const CLOUDFLARE_TOKEN_PURPOSE: &str = "cloudflare-token";

/// The payload of `fetch.window`, `encrypt.window` and `upload.window`: identifiers
/// only. Never log data, never secrets; every fact is re-read from the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowTask {
    pub window_id: i64,
}

impl WindowTask {
    /// The follow-up task of `kind` for this window. The idempotency key makes a
    /// replayed stage hand on at most one live message per (kind, window).
    pub fn spec(self, kind: &str) -> TaskSpec {
        TaskSpec::new(
            PIPELINE_QUEUE,
            kind,
            serde_json::json!({ "window_id": self.window_id }),
        )
        .idempotency_key(format!("{kind}:{}", self.window_id))
    }
}

impl WindowTask {
    /// [`WindowTask::spec`] in the lane of `priority` and the fairness group of its
    /// tenant (docs/QUEUE.md, "Order and fairness"). The scheduler and reconciler send
    /// windows this way; a stage's follow-up inherits both from the task it finishes.
    /// Pushed Logpush batches are real-time by nature: their `encrypt.window` goes
    /// [`Priority::Live`].
    pub fn routed(self, kind: &str, priority: Priority, tenant: Uuid) -> TaskSpec {
        self.spec(kind).priority(priority).group(tenant.to_string())
    }

    /// What a stage answers given [`WindowState::for_stage`]: `None` for
    /// [`StageAction::Work`] (do the work); otherwise done with `result`, handing on the
    /// task the window waits for when it is past this stage.
    pub fn answer(self, action: StageAction, result: serde_json::Value) -> Option<HandlerOutput> {
        match action {
            StageAction::Work => None,
            StageAction::HandOn(kind) => Some(HandlerOutput {
                result,
                next: vec![self.spec(kind)],
            }),
            StageAction::Nothing => Some(HandlerOutput::done(result)),
        }
    }
}

/// A window with the zone facts every stage needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowFacts {
    pub id: i64,
    pub zone_id: Uuid,
    pub tenant_id: Uuid,
    pub cf_zone_id: String,
    pub fields: Vec<String>,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub state: WindowState,
    /// Where the zone's logs are fetched from (docs/PIPELINE.md).
    pub endpoint: ZoneEndpoint,
    /// Why Rainlogs parked the zone (`zones.paused_reason`), if it did.
    pub parked: Option<String>,
    /// Set when the window is a pushed Logpush batch (docs/INGEST.md).
    pub batch: Option<BatchFacts>,
    /// The zone's Cloudflare token, sealed by the kms (`zones.token_ciphertext`): read
    /// with the window so fetch needs no round trip of its own for it.
    pub token_ciphertext: Option<Vec<u8>>,
}

/// What a batch window carries beyond a pulled one: the receiver staged it under its
/// receive time (the edge span is only known once the stream has ended) at its own key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchFacts {
    pub id: Uuid,
    pub dataset: String,
    pub received_at: DateTime<Utc>,
    pub staging_key: String,
}

impl BatchFacts {
    /// The encryption context of the staged batch: the receive instant, 1 µs long.
    pub fn staging_context(&self, tenant: Uuid, zone: Uuid) -> SealContext {
        SealContext {
            tenant,
            zone,
            window_start: self.received_at,
            window_end: self.received_at + chrono::TimeDelta::microseconds(1),
        }
    }
}

impl WindowFacts {
    /// Reads window `id` and its zone; a window that does not exist is permanent.
    pub async fn load(pool: &PgPool, id: i64) -> Result<Self, TaskError> {
        let row = sqlx::query!(
            r#"SELECT w.id, w.zone_id, z.tenant_id, z.cf_zone_id, z.fields, w.start_at, w.end_at,
                      w.state AS "state: WindowState", z.endpoint AS "endpoint: EndpointKind",
                      z.simulator_url, z.paused_reason, z.token_ciphertext, w.batch_id,
                      d.dataset AS "dataset?", b.received_at AS "received_at?",
                      b.staging_key AS "batch_staging_key?"
               FROM windows w JOIN zones z ON z.id = w.zone_id
               LEFT JOIN push_batches b ON b.id = w.batch_id
               LEFT JOIN push_destinations d ON d.id = b.destination_id
               WHERE w.id = $1"#,
            id
        )
        .fetch_optional(pool)
        .await
        .map_err(|e| DbError::query("read window", e))?
        .ok_or_else(|| {
            TaskError::permanent("window.unknown", format!("window {id} does not exist"))
        })?;
        let endpoint =
            ZoneEndpoint::from_columns(row.endpoint, row.simulator_url).map_err(|e| {
                TaskError::permanent("zone.bad_endpoint", format!("zone {}: {e}", row.zone_id))
            })?;
        Ok(Self {
            id: row.id,
            zone_id: row.zone_id,
            tenant_id: row.tenant_id,
            cf_zone_id: row.cf_zone_id,
            fields: row.fields,
            start_at: row.start_at,
            end_at: row.end_at,
            state: row.state,
            endpoint,
            parked: row.paused_reason,
            batch: match (
                row.batch_id,
                row.dataset,
                row.received_at,
                row.batch_staging_key,
            ) {
                (None, ..) => None,
                (Some(id), Some(dataset), Some(received_at), Some(staging_key)) => {
                    Some(BatchFacts {
                        id,
                        dataset,
                        received_at,
                        staging_key,
                    })
                }
                (Some(id), ..) => {
                    return Err(TaskError::permanent(
                        "window.bad_batch",
                        format!("window {id}: its push batch row is incomplete"),
                    ))
                }
            },
            token_ciphertext: row.token_ciphertext,
        })
    }

    /// The encryption context of this window's objects (staged and archived alike).
    pub fn context(&self) -> SealContext {
        SealContext {
            tenant: self.tenant_id,
            zone: self.zone_id,
            window_start: self.start_at,
            window_end: self.end_at,
        }
    }

    /// The encryption context of the staged payload: the window's own, except for a
    /// pushed batch (its receive instant, [`BatchFacts::staging_context`]).
    pub fn staging_context(&self) -> SealContext {
        match &self.batch {
            Some(b) => b.staging_context(self.tenant_id, self.zone_id),
            None => self.context(),
        }
    }

    /// Where fetch (or, for a batch, the receiver) staged the (sealed) payload.
    pub fn staging_key(&self) -> String {
        match &self.batch {
            Some(b) => b.staging_key.clone(),
            None => staging_key(self.zone_id, self.id),
        }
    }

    /// The deterministic archive key of the window's sealed object.
    pub fn archive_key(&self) -> String {
        window_archive_key(
            self.tenant_id,
            self.zone_id,
            self.start_at,
            self.end_at,
            self.batch.as_ref().map(|b| (b.id, b.dataset.as_str())),
        )
    }
}

/// The archive key of a window: [`archive_key`] for a pulled one, [`batch_archive_key`]
/// for a pushed batch.
pub fn window_archive_key(
    tenant: Uuid,
    zone: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    batch: Option<(Uuid, &str)>,
) -> String {
    match batch {
        Some((batch, dataset)) => batch_archive_key(tenant, zone, start, end, batch, dataset),
        None => archive_key(tenant, zone, start, end),
    }
}

/// `archive/{tenant}/{zone}/{yyyy}/{mm}/{dd}/{start}_{end}_{batch}.{dataset}.sealed` for
/// a pushed batch, times as `YYYYMMDDTHHMMSS.ffffffZ`: batches may share a span, so the
/// key names the batch; it keeps the span to the microsecond because the span is the
/// object's encryption context, and the dataset, so that a restore without Postgres
/// can read both from the key.
pub fn batch_archive_key(
    tenant: Uuid,
    zone: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    batch: Uuid,
    dataset: &str,
) -> String {
    let fmt = "%Y%m%dT%H%M%S%.6fZ";
    format!(
        "archive/{tenant}/{zone}/{:04}/{:02}/{:02}/{}_{}_{batch}.{dataset}.sealed",
        start.year(),
        start.month(),
        start.day(),
        start.format(fmt),
        end.format(fmt)
    )
}

/// Completes catalog keys written before migration 0019, which were relative to the
/// writer's bucket prefix: prefixes them with `prefix` (the configured
/// `RAINLOGS_S3_PREFIX`, the same for every process of a deployment) so that every row
/// holds the full bucket key. Rows already full are left alone (a relative key starts
/// with `archive/`, a full one with the prefix), so it is safe to run at every start;
/// with an empty prefix relative and full keys are the same and nothing changes.
/// Returns how many rows changed.
pub async fn complete_catalog_keys(pool: &sqlx::PgPool, prefix: &str) -> Result<u64, DbError> {
    if prefix.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query!(
        "UPDATE archived_objects SET object_key = $1 || object_key
         WHERE object_key LIKE 'archive/%' AND left(object_key, length($1)) <> $1",
        prefix
    )
    .execute(pool)
    .await
    .map_err(|e| DbError::query("complete catalog keys with the bucket prefix", e))?;
    Ok(done.rows_affected())
}

/// `staging/{zone}/{window_id}.sealed`.
pub fn staging_key(zone: Uuid, window_id: i64) -> String {
    format!("staging/{zone}/{window_id}.sealed")
}

/// `archive/{tenant}/{zone}/{yyyy}/{mm}/{dd}/{start}_{end}.sealed`, times as
/// `YYYYMMDDTHHMMSSZ` (UTC) so keys sort by time.
pub fn archive_key(tenant: Uuid, zone: Uuid, start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    let fmt = "%Y%m%dT%H%M%SZ";
    format!(
        "archive/{tenant}/{zone}/{:04}/{:02}/{:02}/{}_{}.sealed",
        start.year(),
        start.month(),
        start.day(),
        start.format(fmt),
        end.format(fmt)
    )
}

/// The parts of an archive key, as [`parse_archive_key`] reads them back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveKeyParts {
    pub tenant: Uuid,
    pub zone: Uuid,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The pushed batch the object holds and its dataset ([`batch_archive_key`]);
    /// `None` for a pulled window.
    pub batch: Option<(Uuid, String)>,
}

/// Reads an [`archive_key`] or a [`batch_archive_key`] back; `None` unless `key` is
/// exactly what they write for the parsed parts (so a stray object is never mistaken
/// for a window's).
pub fn parse_archive_key(key: &str) -> Option<ArchiveKeyParts> {
    let rest = key.strip_prefix("archive/")?;
    let mut parts = rest.split('/');
    let tenant = Uuid::parse_str(parts.next()?).ok()?;
    let zone = Uuid::parse_str(parts.next()?).ok()?;
    let file = parts.nth(3)?.strip_suffix(".sealed")?;
    let (file, dataset) = match file.rsplit_once('.') {
        Some((rest, dataset)) if crate::push::valid_dataset(dataset) => (rest, Some(dataset)),
        _ => (file, None),
    };
    let mut fields = file.split('_');
    let (start, end) = (fields.next()?, fields.next()?);
    let batch = match (fields.next(), dataset) {
        (Some(id), Some(dataset)) => Some((Uuid::parse_str(id).ok()?, dataset.to_owned())),
        (None, None) => None,
        _ => return None,
    };
    let fmt = if batch.is_some() {
        "%Y%m%dT%H%M%S%.6fZ"
    } else {
        "%Y%m%dT%H%M%SZ"
    };
    let time = |s: &str| {
        chrono::NaiveDateTime::parse_from_str(s, fmt)
            .ok()
            .map(|t| t.and_utc())
    };
    let parsed = ArchiveKeyParts {
        tenant,
        zone,
        start: time(start)?,
        end: time(end)?,
        batch,
    };
    let batch = parsed.batch.as_ref().map(|(id, d)| (*id, d.as_str()));
    (parsed.start < parsed.end
        && window_archive_key(tenant, zone, parsed.start, parsed.end, batch) == key)
        .then_some(parsed)
}

/// Reads a [`staging_key`] back into (zone, window id); `None` unless canonical.
pub fn parse_staging_key(key: &str) -> Option<(Uuid, i64)> {
    let (zone, file) = key.strip_prefix("staging/")?.split_once('/')?;
    let zone = Uuid::parse_str(zone).ok()?;
    let window = file.strip_suffix(".sealed")?.parse::<i64>().ok()?;
    (staging_key(zone, window) == key).then_some((zone, window))
}

/// The error for a failing spool file: local disk trouble, worth retrying.
pub fn spool_error(e: io::Error) -> TaskError {
    TaskError::retryable("spool.io", format!("sealed spool file: {e}"))
}

/// A temporary file removed when dropped (spool for sealed output).
pub struct Spool {
    path: PathBuf,
}

impl Spool {
    /// A new, empty spool file in the system temporary directory, readable only by us.
    pub fn create() -> io::Result<(Self, std::fs::File)> {
        let path = std::env::temp_dir().join(format!("rainlogs-spool-{}", Uuid::new_v4()));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let file = opts.open(&path)?;
        Ok((Self { path }, file))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // Best effort: the spool holds sealed bytes only, never plaintext.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Uploads a file to `key`: one PutObject when small, else multipart in [`PART_SIZE`]
/// parts, so memory stays at one part whatever the object size.
pub async fn put_file(store: &ObjectStore, key: &str, path: &Path) -> Result<(), TaskError> {
    use tokio::io::AsyncReadExt;
    let io_err = |e: io::Error| TaskError::retryable("spool.io", format!("spool for {key}: {e}"));
    let mut file = tokio::fs::File::open(path).await.map_err(io_err)?;
    let len = file.metadata().await.map_err(io_err)?.len();
    if len <= PART_SIZE as u64 {
        let mut buf = Vec::with_capacity(len as usize);
        file.read_to_end(&mut buf).await.map_err(io_err)?;
        store.put(key, Bytes::from(buf)).await?;
        return Ok(());
    }
    let mut upload = store.start_multipart(key).await?;
    loop {
        let mut part = Vec::with_capacity(PART_SIZE);
        (&mut file)
            .take(PART_SIZE as u64)
            .read_to_end(&mut part)
            .await
            .map_err(io_err)?;
        if part.is_empty() {
            break;
        }
        if let Err(e) = upload.put_part(Bytes::from(part)).await {
            let _ = upload.abort().await;
            return Err(e.into());
        }
    }
    upload.complete().await?;
    Ok(())
}

/// A blocking `Read` over an object's body stream, for the sealed-format readers.
/// Use only on a blocking thread (`spawn_blocking`): it blocks on the runtime `handle`.
pub struct BlockingBody {
    stream: ByteStream,
    handle: tokio::runtime::Handle,
    buf: Bytes,
    key: String,
}

impl BlockingBody {
    pub fn new(stream: ByteStream, handle: tokio::runtime::Handle, key: &str) -> Self {
        Self {
            stream,
            handle,
            buf: Bytes::new(),
            key: key.to_owned(),
        }
    }
}

impl Read for BlockingBody {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => {
                    return Err(io::Error::other(StorageError::Body {
                        op: "GetObject",
                        key: self.key.clone(),
                        reason: e.to_string(),
                    }))
                }
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        let _ = self.buf.split_to(n);
        Ok(n)
    }
}

/// Runs blocking work (sealing, opening) off the async threads; a panic there is a
/// retryable crash, not a silent success.
pub async fn blocking<T, F>(what: &'static str, f: F) -> Result<T, TaskError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, TaskError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TaskError::retryable("function.crashed", format!("{what}: {e}")))?
}

/// What reading a sealed object end to end proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedObject {
    pub object_sha256: [u8; 32],
    pub object_len: u64,
    pub plaintext: rainlogs_sealed::OpenSummary,
    pub tenant_key_version: u32,
}

impl VerifiedObject {
    /// The chain link content of the window this object archives.
    pub fn link_content(&self) -> crate::chain::LinkContent {
        crate::chain::LinkContent::Archived {
            object_sha256: self.object_sha256,
            plaintext_sha256: self.plaintext.plaintext_sha256,
            record_count: self.plaintext.record_count,
        }
    }

    /// Writes the window's `archived_objects` row from what reading the object proved,
    /// under `catalog_key` (the full bucket key, docs/VERIFY.md "Catalog keys"). `false`
    /// when the window already has a row (written by a concurrent run). One row for
    /// upload and for re-adoption (`crate::adopt`).
    pub async fn catalogue(
        &self,
        tx: &mut sqlx::PgConnection,
        window_id: i64,
        catalog_key: &str,
    ) -> Result<bool, DbError> {
        let inserted = sqlx::query!(
            "INSERT INTO archived_objects
               (window_id, object_key, size_bytes, object_sha256, plaintext_sha256,
                plaintext_bytes, record_count, key_version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (window_id) DO NOTHING",
            window_id,
            catalog_key,
            self.object_len as i64,
            &self.object_sha256[..],
            &self.plaintext.plaintext_sha256[..],
            self.plaintext.plaintext_len as i64,
            self.plaintext.record_count as i64,
            self.tenant_key_version as i32,
        )
        .execute(tx)
        .await
        .map_err(|e| DbError::query("insert archived_objects", e))?;
        Ok(inserted.rows_affected() == 1)
    }
}

/// SHA-256 and length of everything read through it.
struct HashingRead<R> {
    inner: R,
    sha: sha2::Sha256,
    len: u64,
}

impl<R: Read> Read for HashingRead<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(out)?;
        self.sha.update(&out[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Streams the sealed object at `key`, checks its header against `expected`, has the
/// kms unwrap its data key, authenticates every chunk and the trailer, and writes the
/// plaintext to `sink` as it goes. Memory: one chunk plus one body piece.
pub async fn open_object<W>(
    store: &ObjectStore,
    kms: std::sync::Arc<dyn rainlogs_sealed::kms::Kms>,
    key: &str,
    expected: SealContext,
    sink: W,
) -> Result<(VerifiedObject, W), TaskError>
where
    W: io::Write + Send + 'static,
{
    let stream = store.get_stream(key).await?;
    let handle = tokio::runtime::Handle::current();
    let key = key.to_owned();
    blocking("open sealed object", move || {
        use sha2::Digest;
        let mut reader = HashingRead {
            inner: BlockingBody::new(stream, handle.clone(), &key),
            sha: sha2::Sha256::new(),
            len: 0,
        };
        // Header first (blocking reads), then the kms call on its own: the body reader
        // blocks on the runtime itself, so it must not run inside another `block_on`.
        let header = rainlogs_sealed::SealedHeader::read_from(&mut reader)?;
        header.check_context(&expected)?;
        let data_key = handle.block_on(kms.decrypt_data_key(
            &header.context,
            header.tenant_key_version,
            &header.wrapped_key,
        ))?;
        let opener = rainlogs_sealed::Opener::new(&mut reader, &header, &data_key)?;
        drop(data_key);
        let mut sink = sink;
        let plaintext = opener.copy_to(&mut sink)?;
        // The opener stops at the footer; anything after it would be trailing data it
        // reports itself, but drain to be sure the hash covers the whole object.
        // Counted, not collected: a tampered object may carry any amount after its end.
        let trailing = io::copy(&mut reader, &mut io::sink())
            .map_err(|e| TaskError::retryable("s3.body", format!("read {key}: {e}")))?;
        if trailing > 0 {
            return Err(TaskError::permanent(
                "sealed.trailing_data",
                format!("{key}: {trailing} bytes after the sealed object's end"),
            ));
        }
        Ok((
            VerifiedObject {
                object_sha256: reader.sha.finalize().into(),
                object_len: reader.len,
                plaintext,
                tenant_key_version: header.tenant_key_version,
            },
            sink,
        ))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn archive_key_is_deterministic_and_sorts_by_time() {
        let t = Uuid::from_u128(1);
        let z = Uuid::from_u128(2);
        let s = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 0).unwrap();
        let e = s + chrono::TimeDelta::minutes(1);
        assert_eq!(
            archive_key(t, z, s, e),
            format!("archive/{t}/{z}/2026/03/04/20260304T050600Z_20260304T050700Z.sealed")
        );
        assert_eq!(staging_key(z, 7), format!("staging/{z}/7.sealed"));
    }

    #[test]
    fn keys_parse_back_and_strays_do_not() {
        let t = Uuid::from_u128(1);
        let z = Uuid::from_u128(2);
        let s = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 0).unwrap();
        let e = s + chrono::TimeDelta::minutes(1);
        let key = archive_key(t, z, s, e);
        assert_eq!(
            parse_archive_key(&key),
            Some(ArchiveKeyParts {
                tenant: t,
                zone: z,
                start: s,
                end: e,
                batch: None,
            })
        );
        let b = Uuid::from_u128(9);
        let (bs, be) = (
            s + chrono::TimeDelta::microseconds(123_456),
            s + chrono::TimeDelta::microseconds(123_457),
        );
        let batch_key = batch_archive_key(t, z, bs, be, b, "http_requests");
        assert_eq!(
            batch_key,
            format!("archive/{t}/{z}/2026/03/04/20260304T050600.123456Z_20260304T050600.123457Z_{b}.http_requests.sealed")
        );
        assert_eq!(
            parse_archive_key(&batch_key),
            Some(ArchiveKeyParts {
                tenant: t,
                zone: z,
                start: bs,
                end: be,
                batch: Some((b, "http_requests".into())),
            })
        );
        for stray in [
            batch_key.replace(&b.to_string(), "x"),
            batch_key.replace(".http_requests", ""),
            batch_key.replace(".http_requests", ".HTTP"),
            batch_key.replace(".123456Z", "Z"),
        ] {
            assert_eq!(parse_archive_key(&stray), None, "{stray}");
        }
        assert_eq!(parse_staging_key(&staging_key(z, 7)), Some((z, 7)));
        for stray in [
            "archive/x",
            &key.replace("/03/04/", "/03/05/"),
            &format!("{key}.bak"),
            &key.replace(".sealed", ""),
            "staging/big.sealed",
            &format!("staging/{z}/007.sealed"),
        ] {
            assert_eq!(parse_archive_key(stray), None, "{stray}");
            assert_eq!(parse_staging_key(stray), None, "{stray}");
        }
    }
}
