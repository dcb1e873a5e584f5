//! Zones: the Cloudflare zones of a tenant, where their logs come from, their token
//! (stored only sealed by the kms, bound to tenant, zone and `cloudflare-token`), their
//! retention override and legal hold (docs/RETENTION.md), and their coverage. Every
//! front end calls these functions; a zone is named by its Cloudflare zone id, its
//! Rainlogs id or its name ([`resolve`]).

use chrono::{DateTime, TimeDelta, Utc};
use rainlogs_core::db::DbError;
use rainlogs_core::error::{Classify, ErrorClass};
use rainlogs_sealed::kms::{KeyError, Kms, SecretBinding};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::{self, AuditEvent};
use crate::coverage::{coverage_of, Coverage};
use crate::endpoint::{EndpointKind, ZoneEndpoint};
use crate::ledger;
use crate::pipeline::CLOUDFLARE_TOKEN_PURPOSE;

/// The furthest back a zone can start: Logpull keeps 7 days.
pub const MAX_BACKFILL_MINUTES: i64 = 7 * 24 * 60;

/// Why a zone operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("zone id must be 32 lowercase hex characters")]
    InvalidZoneId,
    #[error("cadence must be 15-3600 seconds, got {0}")]
    InvalidCadence(i32),
    #[error("backfill must be 0-{MAX_BACKFILL_MINUTES} minutes, got {0}")]
    InvalidBackfill(i64),
    #[error("the Cloudflare token is empty")]
    EmptyToken,
    #[error("simulator URL {0:?} must be an http(s) URL")]
    InvalidSimulatorUrl(String),
    #[error("only a simulated zone can be a demo zone")]
    DemoNotSimulated,
    #[error("no tenant named {0:?}")]
    UnknownTenant(String),
    #[error("no zone {0:?} (give its Cloudflare zone id, its Rainlogs id or its name)")]
    UnknownZone(String),
    #[error("zone name {0:?} is used by several zones; give its Rainlogs or Cloudflare zone id")]
    Ambiguous(String),
    #[error("zone {0} is already registered")]
    Exists(String),
    #[error("coverage range is empty: --from must be before --to")]
    EmptyRange,
    #[error("retention must be 1-36500 days, got {0}")]
    InvalidRetention(i32),
    #[error("nothing to change: give --retention-days, --inherit-retention and/or --legal-hold")]
    NothingToChange,
    #[error("storing the token: {0}")]
    Key(#[from] KeyError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Classify for ZoneError {
    fn class(&self) -> ErrorClass {
        match self {
            ZoneError::Key(e) => e.class(),
            ZoneError::Db(e) => e.class(),
            _ => ErrorClass::Permanent,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ZoneError::InvalidZoneId => "zone.invalid_id",
            ZoneError::InvalidCadence(_) => "zone.invalid_cadence",
            ZoneError::InvalidBackfill(_) => "zone.invalid_backfill",
            ZoneError::EmptyToken => "zone.empty_token",
            ZoneError::InvalidSimulatorUrl(_) => "zone.invalid_simulator_url",
            ZoneError::DemoNotSimulated => "zone.demo_not_simulated",
            ZoneError::UnknownTenant(_) => "zone.unknown_tenant",
            ZoneError::UnknownZone(_) => "zone.unknown",
            ZoneError::Ambiguous(_) => "zone.ambiguous",
            ZoneError::Exists(_) => "zone.exists",
            ZoneError::EmptyRange => "zone.empty_range",
            ZoneError::InvalidRetention(_) => "zone.invalid_retention",
            ZoneError::NothingToChange => "zone.nothing_to_change",
            ZoneError::Key(e) => e.code(),
            ZoneError::Db(e) => e.code(),
        }
    }
}

/// What `zone add` registers.
pub struct NewZone<'a> {
    pub tenant: &'a str,
    pub cf_zone_id: &'a str,
    pub name: &'a str,
    pub cadence_seconds: i32,
    pub backfill_minutes: i64,
    /// Where its logs are fetched from (and its token sent).
    pub endpoint: ZoneEndpoint,
    /// A `rainlogs demo` zone: left alone by `rainlogs run` (needs a simulator endpoint).
    pub demo: bool,
}

/// One row of `zone list`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ZoneRow {
    pub id: Uuid,
    pub tenant: String,
    pub cf_zone_id: String,
    pub name: String,
    pub cadence_seconds: i32,
    pub paused: bool,
    pub has_token: bool,
    pub last_error: Option<String>,
    pub endpoint: EndpointKind,
    pub simulator_url: Option<String>,
    pub demo: bool,
}

/// Registers a zone with its token sealed by `kms`; returns the zone's Rainlogs id.
pub async fn add(
    pool: &PgPool,
    kms: &dyn Kms,
    zone: &NewZone<'_>,
    token: &SecretString,
    now: DateTime<Utc>,
) -> Result<Uuid, ZoneError> {
    let cf = zone.cf_zone_id;
    if cf.len() != 32 || !cf.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(ZoneError::InvalidZoneId);
    }
    if !(15..=3600).contains(&zone.cadence_seconds) {
        return Err(ZoneError::InvalidCadence(zone.cadence_seconds));
    }
    if !(0..=MAX_BACKFILL_MINUTES).contains(&zone.backfill_minutes) {
        return Err(ZoneError::InvalidBackfill(zone.backfill_minutes));
    }
    if token.expose_secret().trim().is_empty() {
        return Err(ZoneError::EmptyToken);
    }
    if let ZoneEndpoint::Simulator { url } = &zone.endpoint {
        let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
        if !scheme_ok || url.len() < 10 || url.chars().any(char::is_whitespace) {
            return Err(ZoneError::InvalidSimulatorUrl(url.clone()));
        }
    } else if zone.demo {
        return Err(ZoneError::DemoNotSimulated);
    }
    let tenant: Uuid = sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1")
        .bind(zone.tenant)
        .fetch_optional(pool)
        .await
        .map_err(|e| DbError::query("find tenant", e))?
        .ok_or_else(|| ZoneError::UnknownTenant(zone.tenant.to_owned()))?;
    let id = Uuid::new_v4();
    let binding = SecretBinding {
        tenant,
        zone: id,
        purpose: CLOUDFLARE_TOKEN_PURPOSE.to_owned(),
    };
    let sealed = kms
        .encrypt_secret(&binding, token.expose_secret().as_bytes())
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO zones (id, tenant_id, cf_zone_id, name, cadence_seconds, backfill_from,
                            token_ciphertext, endpoint, simulator_url, demo)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (cf_zone_id) DO NOTHING",
    )
    .bind(id)
    .bind(tenant)
    .bind(cf)
    .bind(zone.name)
    .bind(zone.cadence_seconds)
    .bind(now - TimeDelta::minutes(zone.backfill_minutes))
    .bind(sealed)
    .bind(zone.endpoint.kind())
    .bind(zone.endpoint.simulator_url())
    .bind(zone.demo)
    .execute(pool)
    .await
    .map_err(|e| DbError::query("insert zone", e))?;
    if inserted.rows_affected() == 0 {
        return Err(ZoneError::Exists(cf.to_owned()));
    }
    Ok(id)
}

/// Every zone, by tenant and name.
pub async fn list(pool: &PgPool) -> Result<Vec<ZoneRow>, ZoneError> {
    Ok(sqlx::query_as(
        "SELECT z.id, t.name AS tenant, z.cf_zone_id, z.name, z.cadence_seconds, z.paused,
                z.token_ciphertext IS NOT NULL AS has_token, z.last_error, z.endpoint,
                z.simulator_url, z.demo
         FROM zones z JOIN tenants t ON t.id = z.tenant_id ORDER BY t.name, z.name",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("list zones", e))?)
}

/// The Rainlogs id of a zone given by its Cloudflare zone id, its Rainlogs id or its
/// name (a name shared by zones of several tenants is refused as ambiguous).
pub async fn resolve(pool: &PgPool, zone: &str) -> Result<Uuid, ZoneError> {
    let by_id = Uuid::parse_str(zone).ok();
    let found: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM zones WHERE cf_zone_id = $1 OR id = $2
         UNION SELECT id FROM zones WHERE name = $1 LIMIT 2",
    )
    .bind(zone)
    .bind(by_id)
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("find zone", e))?;
    match found[..] {
        [id] => Ok(id),
        [] => Err(ZoneError::UnknownZone(zone.to_owned())),
        _ => Err(ZoneError::Ambiguous(zone.to_owned())),
    }
}

/// Pauses or resumes a zone; returns its Rainlogs id.
pub async fn set_paused(pool: &PgPool, zone: &str, paused: bool) -> Result<Uuid, ZoneError> {
    let id = resolve(pool, zone).await?;
    sqlx::query("UPDATE zones SET paused = $2 WHERE id = $1")
        .bind(id)
        .bind(paused)
        .execute(pool)
        .await
        .map_err(|e| DbError::query("pause zone", e))?;
    Ok(id)
}

/// A change to a zone's retention settings: `retention_days` is `Some(None)` to drop
/// the override, `Some(Some(n))` to set it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZoneRetentionChange {
    pub retention_days: Option<Option<i32>>,
    pub legal_hold: Option<bool>,
}

/// A zone's retention settings after [`set_retention`]: its own override (`None`:
/// the tenant's applies) and legal hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneRetention {
    pub id: Uuid,
    pub retention_days: Option<i32>,
    pub legal_hold: bool,
}

/// Applies `change` to a zone and writes one `zone.set` audit row (old and new values)
/// in the same transaction; returns the settings now in force. The row lock waits for a
/// prune page in progress, so once a legal hold is set nothing more of the zone is
/// deleted.
pub async fn set_retention(
    pool: &PgPool,
    zone: &str,
    change: ZoneRetentionChange,
    actor: &str,
) -> Result<ZoneRetention, ZoneError> {
    if change.retention_days.is_none() && change.legal_hold.is_none() {
        return Err(ZoneError::NothingToChange);
    }
    if let Some(Some(days)) = change.retention_days {
        if !(1..=crate::catalog::tenant::MAX_RETENTION_DAYS).contains(&days) {
            return Err(ZoneError::InvalidRetention(days));
        }
    }
    let id = resolve(pool, zone).await?;
    let op = |what| move |e| DbError::query(what, e);
    let mut tx = pool.begin().await.map_err(op("begin zone set"))?;
    let (tenant, days, hold): (Uuid, Option<i32>, bool) = sqlx::query_as(
        "SELECT tenant_id, retention_days, legal_hold FROM zones WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await
    .map_err(op("lock zone"))?;
    let new_days = change.retention_days.unwrap_or(days);
    let new_hold = change.legal_hold.unwrap_or(hold);
    sqlx::query("UPDATE zones SET retention_days = $2, legal_hold = $3 WHERE id = $1")
        .bind(id)
        .bind(new_days)
        .bind(new_hold)
        .execute(&mut *tx)
        .await
        .map_err(op("update zone"))?;
    let event = AuditEvent {
        tenant: Some(tenant),
        zone: Some(id),
        detail: serde_json::json!({
            "retention_days": {"from": days, "to": new_days},
            "legal_hold": {"from": hold, "to": new_hold},
        }),
        ..AuditEvent::new(actor, "zone.set", "ok")
    };
    audit::record(&mut *tx, &event)
        .await
        .map_err(op("write zone audit row"))?;
    tx.commit().await.map_err(op("commit zone set"))?;
    Ok(ZoneRetention {
        id,
        retention_days: new_days,
        legal_hold: new_hold,
    })
}

/// Coverage of a zone over `[from, to)`; defaults: its backfill start, and `now`.
pub async fn coverage(
    pool: &PgPool,
    zone: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Coverage, ZoneError> {
    let id = resolve(pool, zone).await?;
    let backfill: DateTime<Utc> =
        sqlx::query_scalar("SELECT backfill_from FROM zones WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .map_err(|e| DbError::query("read zone", e))?;
    let from = from.unwrap_or(backfill);
    let to = to.unwrap_or(now);
    if from >= to {
        return Err(ZoneError::EmptyRange);
    }
    let windows = ledger::windows_between(pool, id, from, to).await?;
    Ok(coverage_of(&windows, from, to))
}
