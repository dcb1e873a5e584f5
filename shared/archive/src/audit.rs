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
