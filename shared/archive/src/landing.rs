//! The landing bucket's ledger: Logpush jobs with an S3-compatible destination write
//! gzip NDJSON objects into the landing bucket (`RAINLOGS_LANDING_BUCKET`) under their
//! destination's prefix (`{destination}/`), and the `ingest.landing` stage
//! (`rainlogs_receiver::landing`) seals each object through the receiver's own path,
//! records it, then deletes it. This module says which destinations land and where
//! ([`make_landing`], [`destinations`]), and keeps the objects that could not be
//! ingested (`landing_rejects`: [`record_reject`], [`rejects`]) — an object is never
//! deleted unread. docs/INGEST.md "S3-compatible destination" is the contract.
//! Queries are checked at compile time (`sqlx::query!`, `.sqlx/`).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use rainlogs_core::db::DbError;

/// Where refused objects are moved inside the landing bucket.
pub const REJECTED_PREFIX: &str = "rejected/";

/// The landing prefix of a destination: `{destination}/` (Cloudflare's `{DATE}` folders
/// go below it).
pub fn prefix(destination: Uuid) -> String {
    format!("{destination}/")
}

/// Where a refused landing object is moved: `rejected/{key}`.
pub fn rejected_key(key: &str) -> String {
    format!("{REJECTED_PREFIX}{key}")
}

/// A landing object as a batch remembers it: its key (relative to the landing store's
/// prefix) and when Cloudflare wrote it (the object's LastModified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    pub key: String,
    pub at: DateTime<Utc>,
}

/// A destination Cloudflare reaches through the landing bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandingDestination {
    pub id: Uuid,
    pub zone_id: Uuid,
    pub dataset: String,
    /// `{id}/`, relative to the landing store's prefix.
    pub prefix: String,
    /// A disabled destination's objects are still ingested: Cloudflare counted them
    /// delivered once written, so they are the only copy.
    pub disabled: bool,
}

type DestinationRow = (Uuid, Uuid, String, String, bool);

fn destination_of(row: DestinationRow) -> LandingDestination {
    let (id, zone_id, dataset, prefix, disabled) = row;
    LandingDestination {
        id,
        zone_id,
        dataset,
        prefix,
        disabled,
    }
}

/// Makes destination `id` an S3-compatible one: its batches arrive as objects under
/// [`prefix`]`(id)` of the landing bucket (its HTTP secret is never handed out).
pub async fn make_landing(pool: &PgPool, id: Uuid) -> Result<String, DbError> {
    let prefix = prefix(id);
    sqlx::query!(
        "UPDATE push_destinations SET kind = 's3', landing_prefix = $2 WHERE id = $1",
        id,
        prefix,
    )
    .execute(pool)
    .await
    .map_err(|e| DbError::query("make push destination a landing one", e))?;
    Ok(prefix)
}

/// Makes destination `id` an HTTP one again (a new job for the receiver); objects its
/// S3 job left in landing are no longer listed — ingest them first.
pub async fn make_http(pool: &PgPool, id: Uuid) -> Result<(), DbError> {
    sqlx::query!(
        "UPDATE push_destinations SET kind = 'http', landing_prefix = NULL
         WHERE id = $1 AND kind <> 'http'",
        id,
    )
    .execute(pool)
    .await
    .map_err(|e| DbError::query("make push destination an HTTP one", e))?;
    Ok(())
}

/// Every landing destination of a non-demo zone, disabled ones included (their objects
/// still get ingested).
pub async fn destinations(pool: &PgPool) -> Result<Vec<LandingDestination>, DbError> {
    let rows = sqlx::query!(
        r#"SELECT d.id, d.zone_id, d.dataset, d.landing_prefix AS "landing_prefix!",
                  d.disabled_at IS NOT NULL AS "disabled!"
           FROM push_destinations d JOIN zones z ON z.id = d.zone_id
           WHERE d.kind = 's3' AND NOT z.demo ORDER BY d.id"#,
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("list landing destinations", e))?;
    Ok(rows
        .into_iter()
        .map(|r| destination_of((r.id, r.zone_id, r.dataset, r.landing_prefix, r.disabled)))
        .collect())
}

/// The landing destination `id`, if it is one.
pub async fn destination(pool: &PgPool, id: Uuid) -> Result<Option<LandingDestination>, DbError> {
    let row = sqlx::query!(
        r#"SELECT id, zone_id, dataset, landing_prefix AS "landing_prefix!",
                  disabled_at IS NOT NULL AS "disabled!"
           FROM push_destinations WHERE kind = 's3' AND id = $1"#,
        id,
    )
    .fetch_optional(pool)
    .await
    .map_err(|e| DbError::query("read landing destination", e))?;
    Ok(row.map(|r| destination_of((r.id, r.zone_id, r.dataset, r.landing_prefix, r.disabled))))
}

/// A landing object that could not be ingested, moved to [`rejected_key`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reject {
    pub destination_id: Uuid,
    pub landing_key: String,
    pub rejected_key: String,
    pub size_bytes: u64,
    pub landed_at: Option<DateTime<Utc>>,
    /// Typed error code (`landing.not_gzip`, `landing.too_large`).
    pub code: String,
    /// What is wrong with the object (never its content).
    pub reason: String,
    pub rejected_at: DateTime<Utc>,
}

/// Records a refused object (once per key: a retried move finds its row).
pub async fn record_reject(pool: &PgPool, reject: &Reject) -> Result<(), DbError> {
    sqlx::query!(
        "INSERT INTO landing_rejects
           (destination_id, landing_key, rejected_key, size_bytes, landed_at, code, reason, rejected_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (destination_id, landing_key) DO NOTHING",
        reject.destination_id,
        reject.landing_key,
        reject.rejected_key,
        i64::try_from(reject.size_bytes).unwrap_or(i64::MAX),
        reject.landed_at,
        reject.code,
        reject.reason,
        reject.rejected_at,
    )
    .execute(pool)
    .await
    .map_err(|e| DbError::query("record landing reject", e))?;
    Ok(())
}

/// The refused landing objects (of one zone's destinations, or all), oldest first.
pub async fn rejects(pool: &PgPool, zone: Option<Uuid>) -> Result<Vec<Reject>, DbError> {
    let rows = sqlx::query!(
        "SELECT r.destination_id, r.landing_key, r.rejected_key, r.size_bytes, r.landed_at,
                r.code, r.reason, r.rejected_at
         FROM landing_rejects r JOIN push_destinations d ON d.id = r.destination_id
         WHERE $1::uuid IS NULL OR d.zone_id = $1
         ORDER BY r.rejected_at, r.id",
        zone,
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("list landing rejects", e))?;
    Ok(rows
        .into_iter()
        .map(|r| Reject {
            destination_id: r.destination_id,
            landing_key: r.landing_key,
            rejected_key: r.rejected_key,
            size_bytes: r.size_bytes.max(0) as u64,
            landed_at: r.landed_at,
            code: r.code,
            reason: r.reason,
            rejected_at: r.rejected_at,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_keep_destinations_and_rejects_apart() {
        let id = Uuid::from_u128(7);
        assert_eq!(prefix(id), format!("{id}/"));
        let key = format!("{}20261207/a_b_0000abcd.log.gz", prefix(id));
        let moved = rejected_key(&key);
        assert!(moved.starts_with(REJECTED_PREFIX));
        assert!(!moved.starts_with(&prefix(id)), "never listed again");
    }
}
