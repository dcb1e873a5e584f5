//! Tenants: the customers whose zones are archived, their retention and legal hold
//! (docs/RETENTION.md). Every front end — the `rainlogs tenant` commands, the HTTP API —
//! calls these functions; each change to retention or hold writes an audit row in the
//! same transaction.

use rainlogs_core::db::DbError;
use rainlogs_core::error::{Classify, ErrorClass};
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::{self, AuditEvent};

/// Longest retention `set` accepts (100 years): beyond it day arithmetic is nonsense.
pub const MAX_RETENTION_DAYS: i32 = 36_500;

/// The shortest retention accepted without an explicit confirmation: 395 days, 13
/// months of 30.4 days — the log retention NIS2-style rules ask of the entities
/// Rainlogs is for (docs/RETENTION.md). Shorter is allowed (a tenant not bound by
/// them, a test) but only with `confirm_short_retention`, because prune then deletes
/// archives the law may still require.
pub const LEGAL_MIN_RETENTION_DAYS: i32 = 395;

/// Refuses a retention below [`LEGAL_MIN_RETENTION_DAYS`] unless it is confirmed.
pub fn check_short_retention(days: i32, confirmed: bool) -> Result<(), TenantError> {
    if days < LEGAL_MIN_RETENTION_DAYS && !confirmed {
        return Err(TenantError::ShortRetention {
            days,
            minimum: LEGAL_MIN_RETENTION_DAYS,
        });
    }
    Ok(())
}

/// A change to the retention settings of a tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionChange {
    pub retention_days: Option<i32>,
    pub legal_hold: Option<bool>,
    /// Accept `retention_days` below [`LEGAL_MIN_RETENTION_DAYS`].
    pub confirm_short_retention: bool,
}

impl RetentionChange {
    fn is_empty(&self) -> bool {
        self.retention_days.is_none() && self.legal_hold.is_none()
    }
}

/// Why a tenant operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("tenant name must be 1-200 characters")]
    InvalidName,
    #[error("retention must be 1-36500 days (at least one day), got {0}")]
    InvalidRetention(i32),
    #[error("tenant {0:?} already exists")]
    Exists(String),
    #[error("no tenant {0:?} (give its name or id)")]
    Unknown(String),
    #[error("nothing to change: give --retention-days and/or --legal-hold")]
    NothingToChange,
    #[error("retention of {days} days is below the legal minimum of {minimum} days (13 months, NIS2-style log retention): prune would delete archives the law may still require; pass --confirm-short-retention if these logs are not bound by it")]
    ShortRetention { days: i32, minimum: i32 },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Classify for TenantError {
    fn class(&self) -> ErrorClass {
        match self {
            TenantError::Db(e) => e.class(),
            _ => ErrorClass::Permanent,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            TenantError::InvalidName => "tenant.invalid_name",
            TenantError::InvalidRetention(_) => "tenant.invalid_retention",
            TenantError::Exists(_) => "tenant.exists",
            TenantError::Unknown(_) => "tenant.unknown",
            TenantError::NothingToChange => "tenant.nothing_to_change",
            TenantError::ShortRetention { .. } => "tenant.short_retention",
            TenantError::Db(e) => e.code(),
        }
    }
}

/// A tenant's retention settings after [`set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub id: Uuid,
    pub retention_days: i32,
    pub legal_hold: bool,
}

/// One row of `tenant list`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantRow {
    pub id: Uuid,
    pub name: String,
    pub retention_days: i32,
    pub legal_hold: bool,
    pub zones: i64,
}

/// Adds tenant `name`; returns its id.
pub async fn add(pool: &PgPool, name: &str, retention_days: i32) -> Result<Uuid, TenantError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| DbError::query("insert tenant", e))?;
    insert(&mut conn, name, retention_days).await
}

/// [`add`] with one `tenant.add` audit row in the same transaction (what the CLI and
/// the HTTP API call: who added it, with which retention).
pub async fn create(
    pool: &PgPool,
    name: &str,
    retention_days: i32,
    actor: &str,
) -> Result<Uuid, TenantError> {
    let op = |what| move |e| DbError::query(what, e);
    let mut tx = pool.begin().await.map_err(op("begin tenant add"))?;
    let id = insert(&mut tx, name, retention_days).await?;
    let event = AuditEvent {
        tenant: Some(id),
        detail: serde_json::json!({ "name": name, "retention_days": retention_days }),
        ..AuditEvent::new(actor, "tenant.add", "ok")
    };
    audit::record(&mut *tx, &event)
        .await
        .map_err(op("write tenant audit row"))?;
    tx.commit().await.map_err(op("commit tenant add"))?;
    Ok(id)
}

async fn insert(
    conn: &mut sqlx::PgConnection,
    name: &str,
    retention_days: i32,
) -> Result<Uuid, TenantError> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(TenantError::InvalidName);
    }
    if !(1..=MAX_RETENTION_DAYS).contains(&retention_days) {
        return Err(TenantError::InvalidRetention(retention_days));
    }
    let id = Uuid::new_v4();
    let inserted = sqlx::query(
        "INSERT INTO tenants (id, name, retention_days) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(id)
    .bind(name)
    .bind(retention_days)
    .execute(conn)
    .await
    .map_err(|e| DbError::query("insert tenant", e))?;
    if inserted.rows_affected() == 0 {
        return Err(TenantError::Exists(name.to_owned()));
    }
    Ok(id)
}

/// One tenant, by name or id.
pub async fn get(pool: &PgPool, tenant: &str) -> Result<TenantRow, TenantError> {
    let id = resolve(pool, tenant).await?;
    Ok(sqlx::query_as(
        "SELECT t.id, t.name, t.retention_days, t.legal_hold,
                (SELECT count(*) FROM zones z WHERE z.tenant_id = t.id) AS zones
         FROM tenants t WHERE t.id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .map_err(|e| DbError::query("read tenant", e))?)
}

/// Every tenant, by name.
pub async fn list(pool: &PgPool) -> Result<Vec<TenantRow>, TenantError> {
    Ok(sqlx::query_as(
        "SELECT t.id, t.name, t.retention_days, t.legal_hold,
                (SELECT count(*) FROM zones z WHERE z.tenant_id = t.id) AS zones
         FROM tenants t ORDER BY t.name",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("list tenants", e))?)
}

/// The id of a tenant given by name or id.
pub async fn resolve(pool: &PgPool, tenant: &str) -> Result<Uuid, TenantError> {
    let by_id = Uuid::parse_str(tenant).ok();
    sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1 OR id = $2")
        .bind(tenant)
        .bind(by_id)
        .fetch_optional(pool)
        .await
        .map_err(|e| DbError::query("find tenant", e))?
        .ok_or_else(|| TenantError::Unknown(tenant.to_owned()))
}

/// Applies `change` to a tenant and writes one `tenant.set` audit row (old and new
/// values) in the same transaction; returns the settings now in force. The row lock
/// waits for a prune page in progress, so once a legal hold is set nothing more of it
/// is deleted.
pub async fn set(
    pool: &PgPool,
    tenant: &str,
    change: RetentionChange,
    actor: &str,
) -> Result<Retention, TenantError> {
    if change.is_empty() {
        return Err(TenantError::NothingToChange);
    }
    if let Some(days) = change.retention_days {
        if !(1..=MAX_RETENTION_DAYS).contains(&days) {
            return Err(TenantError::InvalidRetention(days));
        }
        check_short_retention(days, change.confirm_short_retention)?;
    }
    let id = resolve(pool, tenant).await?;
    let op = |what| move |e| DbError::query(what, e);
    let mut tx = pool.begin().await.map_err(op("begin tenant set"))?;
    let (days, hold): (i32, bool) =
        sqlx::query_as("SELECT retention_days, legal_hold FROM tenants WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(op("lock tenant"))?;
    let new_days = change.retention_days.unwrap_or(days);
    let new_hold = change.legal_hold.unwrap_or(hold);
    sqlx::query("UPDATE tenants SET retention_days = $2, legal_hold = $3 WHERE id = $1")
        .bind(id)
        .bind(new_days)
        .bind(new_hold)
        .execute(&mut *tx)
        .await
        .map_err(op("update tenant"))?;
    let event = AuditEvent {
        tenant: Some(id),
        detail: serde_json::json!({
            "retention_days": {"from": days, "to": new_days},
            "legal_hold": {"from": hold, "to": new_hold},
            "confirmed_short_retention": new_days < LEGAL_MIN_RETENTION_DAYS
                && change.retention_days.is_some(),
        }),
        ..AuditEvent::new(actor, "tenant.set", "ok")
    };
    audit::record(&mut *tx, &event)
        .await
        .map_err(op("write tenant audit row"))?;
    tx.commit().await.map_err(op("commit tenant set"))?;
    Ok(Retention {
        id,
        retention_days: new_days,
        legal_hold: new_hold,
    })
}
