//! Re-adoption of orphaned archive objects: objects under `archive/` that no catalog
//! row accounts for — a Postgres restored from an older backup, catalog rows dropped by
//! a database-only attacker — get their window, catalog row and chain link back.
//!
//! Prune never deletes such an object (it may be the only copy of its logs; the orphan
//! sweep only reports it). The sealed format is self-describing: the key names tenant,
//! zone and window, the header binds exactly those, and opening the object proves it
//! was sealed for them under the tenant's key. So an object is adopted only when it
//! opens and verifies end to end for the window its key names, its zone is in the
//! catalog under that tenant, and the ledger has no other say on that time:
//!
//! - no window covers its span → the window is created and archived;
//! - its window is `failed_permanent` (the pipeline gave up, but the object was
//!   written) → the window becomes archived;
//! - anything else is reported and left alone: a window in flight (the pipeline owns
//!   it), archived with another object, recorded `empty` (its Empty link says there were
//!   no logs), `pruned` (a receipt says the logs were deleted), an overlapping window,
//!   a pushed batch's object (its batch row cannot be rebuilt from the object), a zone
//!   the catalog does not know, or an object that does not verify.
//!
//! The adopted window's link is appended to the zone's chain (MACed under the tenant's
//! chain key, docs/CHAIN.md) with the object's hashes read now, and each adoption is one
//! transaction with its `orphan.adopt` audit row. `dry_run` verifies and reports, and
//! writes nothing. docs/RETENTION.md, "Orphans".

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rainlogs_core::db::DbError;
use rainlogs_core::error::ErrorClass;
use rainlogs_core::storage::ObjectStore;
use rainlogs_sealed::kms::Kms;
use rainlogs_sealed::SealContext;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::{self, AuditEvent};
use crate::chain::LinkInput;
use crate::ledger::{self, WindowState};
use crate::pipeline::{open_object, parse_archive_key, ArchiveKeyParts};
use crate::record_time::{parse_line, TimeSpan};

/// Listing page size.
const PAGE: i32 = 1000;

/// What to adopt.
#[derive(Debug, Clone)]
pub struct AdoptRequest {
    /// Only this tenant's objects (`archive/{tenant}/`).
    pub tenant: Option<Uuid>,
    /// Only this zone's objects (needs `tenant`: `archive/{tenant}/{zone}/`).
    pub zone: Option<Uuid>,
    /// Verify and report; write nothing.
    pub dry_run: bool,
    /// Who asks (audit rows).
    pub actor: String,
}

/// Why an orphan was left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason", content = "detail")]
pub enum Skip {
    /// Not a key Rainlogs writes (a stray object).
    NotAnArchiveKey,
    /// A pushed batch's object: its batch row cannot be rebuilt from the object.
    PushedBatch,
    /// The catalog has no such zone, or it belongs to another tenant.
    UnknownZone,
    /// Its window is being worked on: the pipeline will write its own object.
    WindowInFlight,
    /// Its window is archived with another object.
    WindowArchivedElsewhere,
    /// Its window is recorded empty: the chain says it held no logs.
    WindowEmpty,
    /// Its window was pruned: a receipt says the logs were deleted.
    WindowPruned,
    /// Another window of the zone overlaps its span.
    Overlaps,
    /// It did not open and verify for the window its key names (wrong key, tampered,
    /// another window's object under this key): the reason.
    DoesNotVerify(String),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::NotAnArchiveKey => f.write_str("not an archive object name"),
            Skip::PushedBatch => f.write_str("a pushed batch's object (not adoptable)"),
            Skip::UnknownZone => f.write_str("its zone is not in the catalog under its tenant"),
            Skip::WindowInFlight => f.write_str("its window is in flight"),
            Skip::WindowArchivedElsewhere => {
                f.write_str("its window is archived with another object")
            }
            Skip::WindowEmpty => f.write_str("its window is recorded empty"),
            Skip::WindowPruned => f.write_str("its window was pruned (deletion receipt)"),
            Skip::Overlaps => f.write_str("another window of its zone overlaps it"),
            Skip::DoesNotVerify(why) => write!(f, "does not verify: {why}"),
        }
    }
}

/// One object adopted (or, in a dry run, that would be).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Adopted {
    /// Its full bucket key, as the catalog records it (docs/VERIFY.md, "Catalog keys").
    pub key: String,
    pub zone_id: Uuid,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub record_count: u64,
    /// The window row (`None` in a dry run for a window not yet in the ledger).
    pub window_id: Option<i64>,
    /// The chain link's sequence number (`None` in a dry run).
    pub seq: Option<i64>,
}

/// What a run found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AdoptReport {
    /// Objects listed under the prefix.
    pub listed: u64,
    /// Of them, catalogued (not orphans).
    pub catalogued: u64,
    /// Orphans adopted (in a dry run: that would be).
    pub adopted_count: u64,
    /// Orphans left alone.
    pub skipped_count: u64,
    /// The first [`REPORT_SAMPLE`] adopted, in listing order (each one is also logged):
    /// a lost catalog may mean millions of orphans, and the report stays bounded.
    pub adopted: Vec<Adopted>,
    /// The first [`REPORT_SAMPLE`] left alone (full bucket keys), with why (each one is
    /// also logged as a warning).
    pub skipped: Vec<(String, Skip)>,
    pub dry_run: bool,
}

/// How many adopted and skipped objects a report lists by name.
pub const REPORT_SAMPLE: usize = 1000;

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("--zone needs --tenant (orphans are listed under archive/{{tenant}}/{{zone}}/)")]
    ZoneWithoutTenant,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("list {prefix}: {reason}")]
    List { prefix: String, reason: String },
    /// The bucket or the kms failed (not the object): nothing more was adopted.
    #[error("{0}")]
    Operational(String),
}

/// Lists the archive prefix and adopts every orphan that can be proven (module docs).
pub async fn adopt_orphans(
    pool: &PgPool,
    store: &ObjectStore,
    kms: Arc<dyn Kms>,
    req: &AdoptRequest,
) -> Result<AdoptReport, AdoptError> {
    let prefix = match (req.tenant, req.zone) {
        (Some(t), Some(z)) => format!("archive/{t}/{z}/"),
        (Some(t), None) => format!("archive/{t}/"),
        (None, None) => "archive/".to_owned(),
        (None, Some(_)) => return Err(AdoptError::ZoneWithoutTenant),
    };
    let mut report = AdoptReport {
        dry_run: req.dry_run,
        ..AdoptReport::default()
    };
    let mut token = None;
    loop {
        let (page, next) =
            store
                .list_page(&prefix, token, PAGE)
                .await
                .map_err(|e| AdoptError::List {
                    prefix: prefix.clone(),
                    reason: e.to_string(),
                })?;
        report.listed += page.len() as u64;
        let keys: Vec<String> = page.into_iter().map(|o| o.key).collect();
        // The catalog records full bucket keys (the store's prefix included).
        let full: Vec<String> = keys.iter().map(|k| store.full_key(k)).collect();
        let known: std::collections::HashSet<String> = sqlx::query_scalar!(
            "SELECT object_key FROM archived_objects WHERE object_key = ANY($1)",
            &full
        )
        .fetch_all(pool)
        .await
        .map_err(|e| DbError::query("read catalogued objects", e))?
        .into_iter()
        .collect();
        for (key, full) in keys.iter().zip(&full) {
            if known.contains(full) {
                report.catalogued += 1;
                continue;
            }
            match adopt_one(pool, store, &kms, key, req).await? {
                Ok(adopted) => {
                    report.adopted_count += 1;
                    if report.adopted.len() < REPORT_SAMPLE {
                        report.adopted.push(adopted);
                    }
                }
                Err(skip) => {
                    tracing::warn!(key = %full, reason = %skip, "orphan left alone");
                    report.skipped_count += 1;
                    if report.skipped.len() < REPORT_SAMPLE {
                        report.skipped.push((full.clone(), skip));
                    }
                }
            }
        }
        match next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    Ok(report)
}

/// Where an orphan's window stands in the ledger.
enum Slot {
    /// No window covers the span.
    Free,
    /// A `failed_permanent` window of exactly the span.
    Failed(i64),
}

async fn adopt_one(
    pool: &PgPool,
    store: &ObjectStore,
    kms: &Arc<dyn Kms>,
    key: &str,
    req: &AdoptRequest,
) -> Result<Result<Adopted, Skip>, AdoptError> {
    let Some(parts) = parse_archive_key(key) else {
        return Ok(Err(Skip::NotAnArchiveKey));
    };
    if parts.batch.is_some() {
        return Ok(Err(Skip::PushedBatch));
    }
    let owner = sqlx::query_scalar!("SELECT tenant_id FROM zones WHERE id = $1", parts.zone)
        .fetch_optional(pool)
        .await
        .map_err(|e| DbError::query("read orphan's zone", e))?;
    if owner != Some(parts.tenant) {
        return Ok(Err(Skip::UnknownZone));
    }
    if let Err(skip) = slot(pool, &parts).await? {
        return Ok(Err(skip));
    }
    // Open and verify it whole for the window its key names, reading the record span.
    let context = SealContext {
        tenant: parts.tenant,
        zone: parts.zone,
        window_start: parts.start,
        window_end: parts.end,
    };
    let verified = match open_object(store, kms.clone(), key, context, SpanSink::default()).await {
        Ok(done) => done,
        // The bucket or the kms failing is not the object's fault: stop, adopt later.
        Err(e) if e.class == ErrorClass::Retryable && !e.code.starts_with("sealed.") => {
            return Err(AdoptError::Operational(format!("{key}: {e}")))
        }
        Err(e) => return Ok(Err(Skip::DoesNotVerify(e.to_string()))),
    };
    let (object, mut sink) = verified;
    sink.finish();
    let span = if sink.untimed {
        None
    } else {
        sink.span.instants()
    };
    let catalog_key = store.full_key(key);
    let mut adopted = Adopted {
        key: catalog_key.clone(),
        zone_id: parts.zone,
        window_start: parts.start,
        window_end: parts.end,
        record_count: object.plaintext.record_count,
        window_id: None,
        seq: None,
    };
    if req.dry_run {
        return Ok(Ok(adopted));
    }
    let chain_key = kms
        .chain_key(parts.tenant, None)
        .await
        .map_err(|e| AdoptError::Operational(e.to_string()))?;
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| DbError::query("begin adoption", e))?;
    // Judged again inside the transaction, with the zone's windows locked: the
    // pipeline may have planned the span since.
    sqlx::query!("SELECT id FROM zones WHERE id = $1 FOR UPDATE", parts.zone)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| DbError::query("lock orphan's zone", e))?;
    let window_id = match slot(&mut *tx, &parts).await? {
        Err(skip) => return Ok(Err(skip)),
        Ok(Slot::Failed(id)) => {
            sqlx::query!(
                "UPDATE windows SET state = 'sealed', state_since = now() WHERE id = $1",
                id
            )
            .execute(&mut *tx)
            .await
            .map_err(|e| DbError::query("reopen failed window for adoption", e))?;
            id
        }
        Ok(Slot::Free) => sqlx::query_scalar!(
            "INSERT INTO windows (zone_id, start_at, end_at, state)
             VALUES ($1, $2, $3, 'sealed') RETURNING id",
            parts.zone,
            parts.start,
            parts.end,
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| DbError::query("insert adopted window", e))?,
    };
    sqlx::query!(
        "UPDATE windows SET first_record_at = $2, last_record_at = $3, last_error = NULL
         WHERE id = $1",
        window_id,
        span.map(|s| s.0),
        span.map(|s| s.1),
    )
    .execute(&mut *tx)
    .await
    .map_err(|e| DbError::query("record adopted window's span", e))?;
    // The slot was judged free of objects under the zone lock: a row here is a bug.
    if !object.catalogue(&mut tx, window_id, &catalog_key).await? {
        return Err(DbError::Query {
            op: "insert adopted object",
            reason: format!("window {window_id} already has a catalog row"),
            retryable: false,
        }
        .into());
    }
    let link = ledger::settle(
        &mut tx,
        window_id,
        WindowState::Sealed,
        WindowState::Archived,
        &LinkInput {
            zone_id: parts.zone,
            window_start: parts.start,
            window_end: parts.end,
            content: object.link_content(),
        },
        &chain_key,
    )
    .await?
    .ok_or_else(|| DbError::Query {
        op: "settle adopted window",
        reason: format!("window {window_id} left 'sealed' inside the adoption"),
        retryable: true,
    })?;
    let event = AuditEvent {
        tenant: Some(parts.tenant),
        zone: Some(parts.zone),
        detail: serde_json::json!({
            "object_key": key,
            "window_id": window_id,
            "window": [parts.start, parts.end],
            "seq": link.seq,
            "object_sha256": hex::encode(object.object_sha256),
            "record_count": object.plaintext.record_count,
        }),
        ..AuditEvent::new(&req.actor, "orphan.adopt", "ok")
    };
    audit::record(&mut *tx, &event)
        .await
        .map_err(|e| DbError::query("write adoption audit row", e))?;
    tx.commit()
        .await
        .map_err(|e| DbError::query("commit adoption", e))?;
    tracing::info!(key = %adopted.key, window = window_id, seq = link.seq, "orphan adopted");
    adopted.window_id = Some(window_id);
    adopted.seq = Some(link.seq);
    Ok(Ok(adopted))
}

/// Where the orphan's span stands among the zone's pulled windows.
async fn slot<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    parts: &ArchiveKeyParts,
) -> Result<Result<Slot, Skip>, DbError> {
    let rows = sqlx::query!(
        r#"SELECT w.id, w.start_at, w.end_at, w.state::text AS "state!",
                  EXISTS (SELECT 1 FROM archived_objects a WHERE a.window_id = w.id) AS "has_object!"
           FROM windows w
           WHERE w.zone_id = $1 AND w.batch_id IS NULL AND w.state <> 'split'
             AND w.start_at < $3 AND w.end_at > $2"#,
        parts.zone,
        parts.start,
        parts.end,
    )
    .fetch_all(executor)
    .await
    .map_err(|e| DbError::query("read orphan's window", e))?;
    let Some(row) = rows.first() else {
        return Ok(Ok(Slot::Free));
    };
    if rows.len() > 1 || row.start_at != parts.start || row.end_at != parts.end {
        return Ok(Err(Skip::Overlaps));
    }
    Ok(match row.state.as_str() {
        "failed_permanent" if !row.has_object => Ok(Slot::Failed(row.id)),
        "failed_permanent" | "archived" => Err(Skip::WindowArchivedElsewhere),
        "empty" => Err(Skip::WindowEmpty),
        "pruned" => Err(Skip::WindowPruned),
        _ => Err(Skip::WindowInFlight),
    })
}

/// Reads the record span of a plaintext as it streams past.
#[derive(Default)]
struct SpanSink {
    partial: Vec<u8>,
    span: TimeSpan,
    /// A line without a time: no span is recorded (restore assumes the lag).
    untimed: bool,
}

impl SpanSink {
    fn line(&mut self, line: &[u8]) {
        match parse_line(line).map(|t| t.time_ns) {
            Ok(Some(t)) => self.span.add(t),
            // A record without a time, or a quarantined line: restore must keep it
            // with the window's time, so no span is recorded.
            Ok(None) | Err(_) => self.untimed = true,
        }
    }

    fn finish(&mut self) {
        let rest = std::mem::take(&mut self.partial);
        if !rest.is_empty() {
            self.line(&rest);
        }
    }
}

impl std::io::Write for SpanSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut rest = data;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            if self.partial.is_empty() {
                self.line(&rest[..nl]);
            } else {
                self.partial.extend_from_slice(&rest[..nl]);
                let full = std::mem::take(&mut self.partial);
                self.line(&full);
            }
            rest = &rest[nl + 1..];
        }
        self.partial.extend_from_slice(rest);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
