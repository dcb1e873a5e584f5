//! Approvals for destructive key operations reaching the kms through the queue.
//!
//! Redis is transport, not an authority: anyone who can write a message must not be
//! able to crypto-shred a tenant. So `kms.shred_tenant` is served only with the id of an
//! approval row an operator wrote through an authenticated path (today the CLI, later
//! the HTTP API), for that operation and tenant, unexpired and unused; serving it uses
//! the approval up. Rotations are not destructive (old versions stay readable) and need
//! none. The operator's own `rainlogs kms shred-tenant` calls the kms in-process and is
//! its own approval.

use chrono::{DateTime, TimeDelta, Utc};
use rainlogs_core::db::DbError;
use rainlogs_core::error::{Classify, ErrorClass};
use sqlx::PgPool;
use uuid::Uuid;

/// How long an approval stays usable by default.
pub const DEFAULT_TTL: TimeDelta = TimeDelta::hours(1);

/// Why an operation was refused for want of a valid approval.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("{operation} of tenant {tenant} needs an approval (rainlogs kms approve …) and the task carries none")]
    Missing { operation: String, tenant: Uuid },
    #[error("approval {id} is not an approval of {operation} for tenant {tenant}")]
    Unknown {
        id: Uuid,
        operation: String,
        tenant: Uuid,
    },
    #[error("approval {id} expired at {expired}")]
    Expired { id: Uuid, expired: DateTime<Utc> },
    #[error("approval {id} was already used at {used}")]
    Used { id: Uuid, used: DateTime<Utc> },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Classify for ApprovalError {
    fn class(&self) -> ErrorClass {
        match self {
            ApprovalError::Db(e) => e.class(),
            _ => ErrorClass::Permanent,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApprovalError::Missing { .. } => "kms.approval_required",
            ApprovalError::Unknown { .. } => "kms.approval_unknown",
            ApprovalError::Expired { .. } => "kms.approval_expired",
            ApprovalError::Used { .. } => "kms.approval_used",
            ApprovalError::Db(e) => e.code(),
        }
    }
}

impl From<ApprovalError> for rainlogs_core::TaskError {
    fn from(e: ApprovalError) -> Self {
        rainlogs_core::TaskError::classified(&e)
    }
}

/// Writes an approval of `operation` on `tenant` by `actor`, usable for `ttl`.
pub async fn approve(
    pool: &PgPool,
    operation: &str,
    tenant: Uuid,
    actor: &str,
    ttl: TimeDelta,
) -> Result<Uuid, ApprovalError> {
    let id = Uuid::new_v4();
    sqlx::query!(
        "INSERT INTO kms_approvals (id, operation, tenant_id, approved_by, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
        id,
        operation,
        tenant,
        actor,
        ttl.num_seconds() as f64,
    )
    .execute(pool)
    .await
    .map_err(|e| DbError::query("write kms approval", e))?;
    Ok(id)
}

/// Uses approval `id` for `operation` on `tenant`: refused unless it exists for exactly
/// these, has not expired and was not used.
pub async fn consume(
    pool: &PgPool,
    id: Option<Uuid>,
    operation: &str,
    tenant: Uuid,
) -> Result<(), ApprovalError> {
    let Some(id) = id else {
        return Err(ApprovalError::Missing {
            operation: operation.to_owned(),
            tenant,
        });
    };
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| DbError::query("begin approval", e))?;
    let row = sqlx::query!(
        r#"SELECT expires_at, used_at, now() AS "now!" FROM kms_approvals
           WHERE id = $1 AND operation = $2 AND tenant_id = $3 FOR UPDATE"#,
        id,
        operation,
        tenant,
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| DbError::query("read kms approval", e))?
    .ok_or_else(|| ApprovalError::Unknown {
        id,
        operation: operation.to_owned(),
        tenant,
    })?;
    if let Some(used) = row.used_at {
        return Err(ApprovalError::Used { id, used });
    }
    if row.expires_at <= row.now {
        return Err(ApprovalError::Expired {
            id,
            expired: row.expires_at,
        });
    }
    sqlx::query!("UPDATE kms_approvals SET used_at = now() WHERE id = $1", id)
        .execute(&mut *tx)
        .await
        .map_err(|e| DbError::query("use kms approval", e))?;
    tx.commit()
        .await
        .map_err(|e| DbError::query("commit kms approval", e))?;
    Ok(())
}
