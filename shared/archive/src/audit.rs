//! The audit trail: one `audit_events` row per operator or system action (who, what,
//! for which tenant/zone/key version, with what result). Rows never hold key material
//! or log data; `detail` carries counts, ids and before/after values only.

use sqlx::PgExecutor;
use uuid::Uuid;

/// One row of `audit_events`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent<'a> {
    pub actor: &'a str,
    /// Dotted operation name, e.g. `tenant.set`, `prune.run`.
    pub operation: &'a str,
    pub tenant: Option<Uuid>,
    pub zone: Option<Uuid>,
    pub key_version: Option<i32>,
    /// `ok`, or what went otherwise (`error`, `dry_run`, `findings`, an error code).
    pub result: &'a str,
    pub detail: serde_json::Value,
}

impl<'a> AuditEvent<'a> {
    /// An event with no tenant, zone or key version and an empty detail.
    pub fn new(actor: &'a str, operation: &'a str, result: &'a str) -> Self {
        Self {
            actor,
            operation,
            tenant: None,
            zone: None,
            key_version: None,
            result,
            detail: serde_json::json!({}),
        }
    }
}

/// Writes `event` through `executor` (a pool, or a transaction the caller commits with
/// the change it audits).
pub async fn record<'e, E: PgExecutor<'e>>(
    executor: E,
    event: &AuditEvent<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO audit_events (actor, operation, tenant_id, zone_id, key_version, result, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        event.actor,
        event.operation,
        event.tenant,
        event.zone,
        event.key_version,
        event.result,
        &event.detail,
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Writes `events` in one statement (one round trip, one transaction).
pub async fn record_many<'e, E: PgExecutor<'e>>(
    executor: E,
    events: &[AuditEvent<'_>],
) -> Result<(), sqlx::Error> {
    let actors: Vec<&str> = events.iter().map(|e| e.actor).collect();
    let operations: Vec<&str> = events.iter().map(|e| e.operation).collect();
    let tenants: Vec<Option<Uuid>> = events.iter().map(|e| e.tenant).collect();
    let zones: Vec<Option<Uuid>> = events.iter().map(|e| e.zone).collect();
    let versions: Vec<Option<i32>> = events.iter().map(|e| e.key_version).collect();
    let results: Vec<&str> = events.iter().map(|e| e.result).collect();
    let details: Vec<serde_json::Value> = events.iter().map(|e| e.detail.clone()).collect();
    sqlx::query!(
        "INSERT INTO audit_events (actor, operation, tenant_id, zone_id, key_version, result, detail)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::uuid[], $4::uuid[], $5::int4[],
                              $6::text[], $7::jsonb[])",
        &actors as &[&str],
        &operations as &[&str],
        &tenants as &[Option<Uuid>],
        &zones as &[Option<Uuid>],
        &versions as &[Option<i32>],
        &results as &[&str],
        &details as &[serde_json::Value],
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Which audit rows [`list`] returns; every field narrows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub tenant: Option<Uuid>,
    pub zone: Option<Uuid>,
    /// An operation (`tenant.set`), or a family of them (`zone.*`).
    pub operation: Option<String>,
    pub actor: Option<String>,
    pub result: Option<String>,
    /// `at >= from`.
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// `at < to`.
    pub to: Option<chrono::DateTime<chrono::Utc>>,
}

/// One row of `audit_events` as [`list`] reads it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor: String,
    pub operation: String,
    pub tenant_id: Option<Uuid>,
    pub zone_id: Option<Uuid>,
    pub key_version: Option<i32>,
    pub result: String,
    pub detail: serde_json::Value,
}

/// Audit rows matching `filter`, newest first, with ids below `before` (the keyset
/// cursor of a page: the last id of the previous one), at most `limit`.
pub async fn list(
    pool: &sqlx::PgPool,
    filter: &AuditFilter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditRow>, rainlogs_core::db::DbError> {
    let (exact, family) = match filter.operation.as_deref() {
        Some(op) => match op.strip_suffix('*') {
            Some(prefix) => (None, Some(prefix)),
            None => (Some(op), None),
        },
        None => (None, None),
    };
    sqlx::query_as!(
        AuditRow,
        "SELECT id, at, actor, operation, tenant_id, zone_id, key_version, result, detail
         FROM audit_events
         WHERE ($1::uuid IS NULL OR tenant_id = $1) AND ($2::uuid IS NULL OR zone_id = $2)
           AND ($3::text IS NULL OR operation = $3)
           AND ($4::text IS NULL OR starts_with(operation, $4))
           AND ($5::text IS NULL OR actor = $5) AND ($6::text IS NULL OR result = $6)
           AND ($7::timestamptz IS NULL OR at >= $7) AND ($8::timestamptz IS NULL OR at < $8)
           AND ($9::bigint IS NULL OR id < $9)
         ORDER BY id DESC LIMIT $10",
        filter.tenant,
        filter.zone,
        exact,
        family,
        filter.actor,
        filter.result,
        filter.from,
        filter.to,
        before,
        limit,
    )
    .fetch_all(pool)
    .await
    .map_err(|e| rainlogs_core::db::DbError::query("list audit events", e))
}

/// An [`AuditEvent`] that owns its strings, waiting in an [`AuditBatch`].
struct Queued {
    actor: String,
    operation: String,
    tenant: Option<Uuid>,
    zone: Option<Uuid>,
    key_version: Option<i32>,
    result: String,
    detail: serde_json::Value,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

impl Queued {
    fn event(&self) -> AuditEvent<'_> {
        AuditEvent {
            actor: &self.actor,
            operation: &self.operation,
            tenant: self.tenant,
            zone: self.zone,
            key_version: self.key_version,
            result: &self.result,
            detail: self.detail.clone(),
        }
    }
}

/// Group commit for audit rows written one per operation by many concurrent callers
/// (the kms audits every data-key operation: several per archived window). Each
/// [`AuditBatch::record`] returns only once its row is committed — an operation is
/// never used unaudited — but rows that arrive while one insert is in flight go
/// together in the next one: under load one transaction carries many rows instead of
/// one each. Alone, a caller writes its row at once, as [`record`] does.
///
/// Cancel-safe: a writer dropped mid-insert releases the flush lock, and the callers
/// whose rows it carried write them again themselves (a row may then be written twice:
/// an audit trail may say too much, never too little).
#[derive(Default)]
pub struct AuditBatch {
    queue: std::sync::Mutex<Vec<Queued>>,
    flush: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for AuditBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditBatch").finish_non_exhaustive()
    }
}

/// The most rows one insert carries.
const AUDIT_BATCH_MAX: usize = 500;

impl AuditBatch {
    pub fn new() -> Self {
        Self::default()
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Queued>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `event` through `pool`, with whatever other rows are waiting.
    pub async fn record(
        &self,
        pool: &sqlx::PgPool,
        event: &AuditEvent<'_>,
    ) -> Result<(), sqlx::Error> {
        loop {
            let (done, mut written) = tokio::sync::oneshot::channel();
            self.queue().push(Queued {
                actor: event.actor.to_owned(),
                operation: event.operation.to_owned(),
                tenant: event.tenant,
                zone: event.zone,
                key_version: event.key_version,
                result: event.result.to_owned(),
                detail: event.detail.clone(),
                done,
            });
            let _flushing = self.flush.lock().await;
            match written.try_recv() {
                // The writer before us carried our row.
                Ok(result) => return result.map_err(|e| sqlx::Error::Io(std::io::Error::other(e))),
                // Its writer was dropped mid-insert: queue the row again.
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => continue,
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
            }
            // Our turn to write: everything waiting, ours included.
            while written.is_empty() {
                let batch: Vec<Queued> = {
                    let mut q = self.queue();
                    let take = q.len().min(AUDIT_BATCH_MAX);
                    q.drain(..take).collect()
                };
                if batch.is_empty() {
                    break;
                }
                let events: Vec<AuditEvent<'_>> = batch.iter().map(Queued::event).collect();
                let result = record_many(pool, &events).await.map_err(|e| e.to_string());
                for q in batch {
                    let _ = q.done.send(result.clone());
                }
            }
            match written.try_recv() {
                Ok(result) => return result.map_err(|e| sqlx::Error::Io(std::io::Error::other(e))),
                Err(_) => continue,
            }
        }
    }
}
