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
    #[error("retention of {days} days is below the legal minimum of {minimum} days (13 months, NIS2-style log retention): prune would delete archives the law may still require; pass --confirm-short-retention if these logs are not bound by it")]
    ShortRetention { days: i32, minimum: i32 },
    #[error("cannot retry windows starting before {earliest}: Cloudflare keeps Logpull data for 7 days, so failed windows from {from} on are lost for good and stay failed_permanent (give --from {earliest} or later)")]
    BeyondLogpull {
        from: DateTime<Utc>,
        earliest: DateTime<Utc>,
    },
    #[error("Cloudflare refused the token for zone {zone}: {reason} (check the token is valid and has Logs Read on this zone; nothing was stored)")]
    TokenRefused { zone: String, reason: String },
    #[error("log retention is switched off for Cloudflare zone {zone}: Logpull keeps nothing to fetch (switch it on: POST /zones/{zone}/logs/control/retention/flag {{\"flag\": true}}, or pass --enable-retention); nothing was stored")]
    RetentionOff { zone: String },
    #[error(
        "could not check the token for zone {zone} at its endpoint: {reason}; nothing was stored"
    )]
    ProbeFailed {
        zone: String,
        reason: String,
        retryable: bool,
    },
    #[error("zone {zone}: Cloudflare does not offer the Logpull field(s) {} (`logs/received/fields` lists what it offers); nothing was stored", unknown.join(", "))]
    UnknownFields { zone: String, unknown: Vec<String> },
    #[error("--fields is empty: give the fields to keep, or leave it out to archive every field Cloudflare offers")]
    NoFields,
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
            ZoneError::ProbeFailed {
                retryable: true, ..
            } => ErrorClass::Retryable,
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
            ZoneError::ShortRetention { .. } => "zone.short_retention",
            ZoneError::BeyondLogpull { .. } => "zone.beyond_logpull",
            ZoneError::TokenRefused { .. } => "zone.token_refused",
            ZoneError::RetentionOff { .. } => "zone.retention_off",
            ZoneError::ProbeFailed { .. } => "zone.probe_failed",
            ZoneError::UnknownFields { .. } => "zone.unknown_fields",
            ZoneError::NoFields => "zone.no_fields",
            ZoneError::Key(e) => e.code(),
            ZoneError::Db(e) => e.code(),
        }
    }
}

/// What a probe of a zone's token at its endpoint found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// The zone's log-retention flag (`logs/control/retention/flag`), after the probe
    /// switched it on if it was allowed to.
    pub retention: bool,
    /// The probe switched retention on (it was off).
    pub retention_enabled: bool,
    /// The fields the zone's Logpull offers (`logs/received/fields`).
    pub fields: Vec<String>,
}

/// Why a probe did not pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// 401/403: the token is wrong, expired, revoked or lacks Logs Read on the zone.
    #[error("{0}")]
    Refused(String),
    /// Anything else (unreachable, 5xx, an unexpected answer); `retryable` as classified.
    #[error("{reason}")]
    Failed { reason: String, retryable: bool },
}

/// Checks a token against a zone's Logpull endpoint before it is stored: the retention
/// flag and the fields list both need it. Implemented by the fetch stage's Logpull
/// client (`rainlogs_fetch::LogpullProbe`), which knows where a zone's endpoint is.
#[async_trait::async_trait]
pub trait ZoneProbe: Send + Sync {
    async fn probe(
        &self,
        endpoint: &ZoneEndpoint,
        cf_zone_id: &str,
        token: &SecretString,
    ) -> Result<ProbeReport, ProbeError>;
}

/// Runs `probe` and turns what it found into the zone's refusal, if any.
async fn probe_token(
    probe: &dyn ZoneProbe,
    endpoint: &ZoneEndpoint,
    cf_zone_id: &str,
    token: &SecretString,
) -> Result<ProbeReport, ZoneError> {
    let zone = cf_zone_id.to_owned();
    let report = probe
        .probe(endpoint, cf_zone_id, token)
        .await
        .map_err(|e| match e {
            ProbeError::Refused(reason) => ZoneError::TokenRefused {
                zone: zone.clone(),
                reason,
            },
            ProbeError::Failed { reason, retryable } => ZoneError::ProbeFailed {
                zone: zone.clone(),
                reason,
                retryable,
            },
        })?;
    if !report.retention {
        return Err(ZoneError::RetentionOff { zone });
    }
    Ok(report)
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
    /// The Logpull fields to archive. `None`: every field the zone's Logpull offers (its
    /// fields endpoint, read by the probe) — what is not fetched within Cloudflare's 7
    /// days can never be added later. `Some`: only these, each checked against that list.
    pub fields: Option<&'a [String]>,
}

/// The fields a zone archives: `wanted` (deduplicated, in order, each one offered) or,
/// without it, everything `offered`. A probe that reports no list (a push zone's: its
/// records come from its Logpush jobs) leaves `wanted` unchecked.
pub fn choose_fields(
    cf_zone_id: &str,
    offered: &[String],
    wanted: Option<&[String]>,
) -> Result<Vec<String>, ZoneError> {
    let Some(wanted) = wanted else {
        return Ok(offered.to_vec());
    };
    let mut out: Vec<String> = Vec::new();
    for f in wanted.iter().map(|f| f.trim()).filter(|f| !f.is_empty()) {
        if !out.iter().any(|o| o == f) {
            out.push(f.to_owned());
        }
    }
    if out.is_empty() {
        return Err(ZoneError::NoFields);
    }
    let unknown: Vec<String> = out
        .iter()
        .filter(|f| !offered.is_empty() && !offered.contains(f))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(ZoneError::UnknownFields {
            zone: cf_zone_id.to_owned(),
            unknown,
        });
    }
    Ok(out)
}

/// One row of `zone list`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ZoneRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub tenant: String,
    pub cf_zone_id: String,
    pub name: String,
    pub cadence_seconds: i32,
    pub paused: bool,
    /// Why Rainlogs parked (paused) the zone by itself; `None` if it runs or an
    /// operator paused it.
    pub paused_reason: Option<String>,
    pub has_token: bool,
    pub last_error: Option<String>,
    pub endpoint: EndpointKind,
    pub simulator_url: Option<String>,
    pub demo: bool,
    pub mode: ZoneMode,
}

/// Registers a zone with its token sealed by `kms`; returns the zone's Rainlogs id.
/// The token is first probed at the zone's endpoint (`probe`): a token Cloudflare
/// refuses, or a zone whose log retention is off, is refused and nothing is stored.
pub async fn add(
    pool: &PgPool,
    kms: &dyn Kms,
    probe: &dyn ZoneProbe,
    zone: &NewZone<'_>,
    token: &SecretString,
    now: DateTime<Utc>,
) -> Result<Uuid, ZoneError> {
    add_in_mode(pool, kms, probe, zone, token, ZoneMode::Pull, now).await
}

/// [`add`] for a zone that starts in `mode`, stored with the zone so the scheduler
/// never sees it in another. A `push` zone (any plan: Logpush only) is probed with a
/// probe of its Logpush jobs API (`logpush::JobsProbe`) rather than Logpull, which
/// zones below Enterprise do not have.
pub async fn add_in_mode(
    pool: &PgPool,
    kms: &dyn Kms,
    probe: &dyn ZoneProbe,
    zone: &NewZone<'_>,
    token: &SecretString,
    mode: ZoneMode,
    now: DateTime<Utc>,
) -> Result<Uuid, ZoneError> {
    add_audited(pool, kms, probe, zone, token, mode, now, None).await
}

/// [`add_in_mode`] with one `zone.add` audit row (who, the zone's id, name, mode,
/// cadence, backfill and endpoint — never the token) in the transaction that inserts
/// it: what the CLI and the HTTP API call.
#[allow(clippy::too_many_arguments)]
pub async fn add_by(
    pool: &PgPool,
    kms: &dyn Kms,
    probe: &dyn ZoneProbe,
    zone: &NewZone<'_>,
    token: &SecretString,
    mode: ZoneMode,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<Uuid, ZoneError> {
    add_audited(pool, kms, probe, zone, token, mode, now, Some(actor)).await
}

#[allow(clippy::too_many_arguments)]
async fn add_audited(
    pool: &PgPool,
    kms: &dyn Kms,
    probe: &dyn ZoneProbe,
    zone: &NewZone<'_>,
    token: &SecretString,
    mode: ZoneMode,
    now: DateTime<Utc>,
    actor: Option<&str>,
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
    let exists: Option<Uuid> = sqlx::query_scalar("SELECT id FROM zones WHERE cf_zone_id = $1")
        .bind(cf)
        .fetch_optional(pool)
        .await
        .map_err(|e| DbError::query("find zone", e))?;
    if exists.is_some() {
        return Err(ZoneError::Exists(cf.to_owned()));
    }
    let report = probe_token(probe, &zone.endpoint, cf, token).await?;
    let fields = choose_fields(cf, &report.fields, zone.fields)?;
    let id = Uuid::new_v4();
    let binding = SecretBinding {
        tenant,
        zone: id,
        purpose: CLOUDFLARE_TOKEN_PURPOSE.to_owned(),
    };
    let sealed = kms
        .encrypt_secret(&binding, token.expose_secret().as_bytes())
        .await?;
    let op = |what| move |e| DbError::query(what, e);
    let mut tx = pool.begin().await.map_err(op("begin zone add"))?;
    let inserted = sqlx::query(
        "INSERT INTO zones (id, tenant_id, cf_zone_id, name, cadence_seconds, backfill_from,
                            token_ciphertext, endpoint, simulator_url, demo, mode, fields)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
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
    .bind(mode)
    .bind(&fields)
    .execute(&mut *tx)
    .await
    .map_err(op("insert zone"))?;
    if inserted.rows_affected() == 0 {
        return Err(ZoneError::Exists(cf.to_owned()));
    }
    if let Some(actor) = actor {
        let event = AuditEvent {
            tenant: Some(tenant),
            zone: Some(id),
            detail: serde_json::json!({
                "cf_zone_id": cf, "name": zone.name, "mode": mode,
                "cadence_seconds": zone.cadence_seconds,
                "backfill_minutes": zone.backfill_minutes,
                "endpoint": zone.endpoint.kind(),
                "fields": fields,
            }),
            ..AuditEvent::new(actor, "zone.add", "ok")
        };
        audit::record(&mut *tx, &event)
            .await
            .map_err(op("write zone audit row"))?;
    }
    tx.commit().await.map_err(op("commit zone add"))?;
    Ok(id)
}

const ZONE_ROW: &str = "SELECT z.id, z.tenant_id, t.name AS tenant, z.cf_zone_id, z.name,
        z.cadence_seconds, z.paused, z.paused_reason,
        z.token_ciphertext IS NOT NULL AS has_token, z.last_error, z.endpoint,
        z.simulator_url, z.demo, z.mode
    FROM zones z JOIN tenants t ON t.id = z.tenant_id";

/// Every zone, by tenant and name.
pub async fn list(pool: &PgPool) -> Result<Vec<ZoneRow>, ZoneError> {
    list_of(pool, None).await
}

/// The zones of `tenant` (`Some`) or of every tenant, by tenant and name.
pub async fn list_of(pool: &PgPool, tenant: Option<Uuid>) -> Result<Vec<ZoneRow>, ZoneError> {
    Ok(sqlx::query_as(&format!(
        "{ZONE_ROW} WHERE $1::uuid IS NULL OR z.tenant_id = $1 ORDER BY t.name, z.name, z.id"
    ))
    .bind(tenant)
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("list zones", e))?)
}

/// One zone, given as [`resolve`] takes it.
pub async fn get(pool: &PgPool, zone: &str) -> Result<ZoneRow, ZoneError> {
    let id = resolve(pool, zone).await?;
    Ok(sqlx::query_as(&format!("{ZONE_ROW} WHERE z.id = $1"))
        .bind(id)
        .fetch_one(pool)
        .await
        .map_err(|e| DbError::query("read zone", e))?)
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

/// Pauses or resumes a zone; returns its Rainlogs id. Resuming also clears a parked
/// zone's reason ([`park`]): the operator says the cause is fixed.
pub async fn set_paused(pool: &PgPool, zone: &str, paused: bool) -> Result<Uuid, ZoneError> {
    Ok(set_paused_by(pool, zone, paused, "unknown").await?.id)
}

/// What [`set_paused_by`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseChange {
    pub id: Uuid,
    pub tenant: Uuid,
    pub was_paused: bool,
    /// The park reason a resume cleared.
    pub cleared_reason: Option<String>,
}

/// [`set_paused`] with one `zone.pause` / `zone.resume` audit row (old and new) in the
/// same transaction.
pub async fn set_paused_by(
    pool: &PgPool,
    zone: &str,
    paused: bool,
    actor: &str,
) -> Result<PauseChange, ZoneError> {
    let id = resolve(pool, zone).await?;
    let op = |what| move |e| DbError::query(what, e);
    let mut tx = pool.begin().await.map_err(op("begin zone pause"))?;
    let (tenant, was_paused, reason): (Uuid, bool, Option<String>) = sqlx::query_as(
        "SELECT tenant_id, paused, paused_reason FROM zones WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await
    .map_err(op("lock zone"))?;
    sqlx::query(
        "UPDATE zones SET paused = $2,
                          paused_reason = CASE WHEN $2 THEN paused_reason END
         WHERE id = $1",
    )
    .bind(id)
    .bind(paused)
    .execute(&mut *tx)
    .await
    .map_err(op("pause zone"))?;
    let cleared_reason = if paused { None } else { reason };
    let event = AuditEvent {
        tenant: Some(tenant),
        zone: Some(id),
        detail: serde_json::json!({
            "paused": {"from": was_paused, "to": paused},
            "cleared_park_reason": cleared_reason,
        }),
        ..AuditEvent::new(
            actor,
            if paused { "zone.pause" } else { "zone.resume" },
            "ok",
        )
    };
    audit::record(&mut *tx, &event)
        .await
        .map_err(op("write zone audit row"))?;
    tx.commit().await.map_err(op("commit zone pause"))?;
    Ok(PauseChange {
        id,
        tenant,
        was_paused,
        cleared_reason,
    })
}

/// A change to a zone's retention settings: `retention_days` is `Some(None)` to drop
/// the override, `Some(Some(n))` to set it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZoneRetentionChange {
    pub retention_days: Option<Option<i32>>,
    pub legal_hold: Option<bool>,
    /// Accept an override below `tenant::LEGAL_MIN_RETENTION_DAYS`.
    pub confirm_short_retention: bool,
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
        if days < crate::catalog::tenant::LEGAL_MIN_RETENTION_DAYS
            && !change.confirm_short_retention
        {
            return Err(ZoneError::ShortRetention {
                days,
                minimum: crate::catalog::tenant::LEGAL_MIN_RETENTION_DAYS,
            });
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

/// How a zone's logs arrive (`zones.mode`, docs/INGEST.md "Modes").
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type, serde::Serialize, serde::Deserialize,
)]
#[sqlx(type_name = "zone_mode", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum ZoneMode {
    /// Logpull windows, planned by the scheduler (Enterprise zones).
    Pull,
    /// Logpush batches only: nothing is planned for Logpull.
    Push,
    /// Logpush batches, with Logpull repairing delivery gaps younger than 7 days.
    Hybrid,
}

impl ZoneMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ZoneMode::Pull => "pull",
            ZoneMode::Push => "push",
            ZoneMode::Hybrid => "hybrid",
        }
    }
}

impl std::fmt::Display for ZoneMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sets how a zone's logs arrive, with one `zone.mode` audit row (old and new) in the
/// same transaction; returns the previous mode. From the next scheduler pass on, a
/// `push` or `hybrid` zone gets no new Logpull windows (windows already planned are
/// still fetched: they cover time before the switch); a zone switched back to `pull` is
/// planned from where its pulled windows end.
pub async fn set_mode(
    pool: &PgPool,
    zone: &str,
    mode: ZoneMode,
    actor: &str,
) -> Result<ZoneMode, ZoneError> {
    let id = resolve(pool, zone).await?;
    let op = |what| move |e| DbError::query(what, e);
    let mut tx = pool.begin().await.map_err(op("begin zone mode"))?;
    let row = sqlx::query!(
        r#"SELECT tenant_id, mode AS "mode: ZoneMode" FROM zones WHERE id = $1 FOR UPDATE"#,
        id
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(op("lock zone"))?;
    let (tenant, old) = (row.tenant_id, row.mode);
    sqlx::query!(
        "UPDATE zones SET mode = $2 WHERE id = $1",
        id,
        mode as ZoneMode
    )
    .execute(&mut *tx)
    .await
    .map_err(op("set zone mode"))?;
    let event = AuditEvent {
        tenant: Some(tenant),
        zone: Some(id),
        detail: serde_json::json!({ "mode": {"from": old, "to": mode} }),
        ..AuditEvent::new(actor, "zone.mode", "ok")
    };
    audit::record(&mut *tx, &event)
        .await
        .map_err(op("write zone audit row"))?;
    tx.commit().await.map_err(op("commit zone mode"))?;
    Ok(old)
}

/// How a zone's logs arrive.
pub async fn mode(pool: &PgPool, zone: &str) -> Result<ZoneMode, ZoneError> {
    let id = resolve(pool, zone).await?;
    Ok(sqlx::query_scalar("SELECT mode FROM zones WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .map_err(|e| DbError::query("read zone mode", e))?)
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
    Ok(coverage_of(&windows, from, to, now))
}

/// How close to Cloudflare's 7-day edge `retry-failed` still re-plans a window: it must
/// remain fetchable until a fetch gets to it.
pub const RETRY_HEADROOM: TimeDelta = TimeDelta::minutes(10);

/// What [`retry_failed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryReport {
    pub zone: Uuid,
    /// The zone's tenant (the fairness group its windows' tasks go in).
    pub tenant: Uuid,
    /// The range looked at: `[from, to)` by window start.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Windows moved from `failed_permanent` back to `planned`, oldest first.
    pub replanned: Vec<i64>,
    /// Failed windows of the zone starting before Cloudflare's 7 days (minus
    /// [`RETRY_HEADROOM`]): lost for good, left as they are.
    pub unrecoverable: i64,
    /// The zone is paused: the re-planned windows wait until it is resumed.
    pub paused: bool,
}

/// Re-plans the zone's `failed_permanent` windows starting in `[from, to)` (defaults:
/// the oldest start Logpull can still serve, and `now`), so the pipeline fetches them
/// again — after a token was fixed, a clock-skew failure, an outage at Cloudflare.
/// A `from` older than Cloudflare's 7 days (less [`RETRY_HEADROOM`]) is refused:
/// those windows cannot be fetched any more. One `zone.retry_failed` audit row.
pub async fn retry_failed(
    pool: &PgPool,
    zone: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<RetryReport, ZoneError> {
    let id = resolve(pool, zone).await?;
    let earliest = now - ledger::LOGPULL_MAX_AGE + RETRY_HEADROOM;
    if let Some(from) = from {
        if from < earliest {
            return Err(ZoneError::BeyondLogpull { from, earliest });
        }
    }
    let from = from.unwrap_or(earliest);
    let to = to.unwrap_or(now);
    if from >= to {
        return Err(ZoneError::EmptyRange);
    }
    let op = |what| move |e| DbError::query(what, e);
    let mut tx = pool.begin().await.map_err(op("begin retry-failed"))?;
    let (tenant, paused): (Uuid, bool) =
        sqlx::query_as("SELECT tenant_id, paused FROM zones WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(op("lock zone"))?;
    let replanned: Vec<i64> = sqlx::query_scalar(
        "WITH moved AS (
             UPDATE windows
             -- A pushed batch has no Logpull window to fetch again: it goes back to
             -- its staged payload (a fetch message for it hands on to encrypt).
             SET state = CASE WHEN batch_id IS NULL THEN 'planned'::window_state
                              ELSE 'staged'::window_state END,
                 state_since = now(), resealed = false,
                 last_error = 'retry requested; it failed with: ' || coalesce(last_error, '(no reason)')
             WHERE zone_id = $1 AND state = 'failed_permanent' AND start_at >= $2 AND start_at < $3
             RETURNING id, start_at)
         SELECT id FROM moved ORDER BY start_at",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *tx)
    .await
    .map_err(op("re-plan failed windows"))?;
    let unrecoverable: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM windows
         WHERE zone_id = $1 AND state = 'failed_permanent' AND start_at < $2",
    )
    .bind(id)
    .bind(earliest)
    .fetch_one(&mut *tx)
    .await
    .map_err(op("count unrecoverable windows"))?;
    let event = AuditEvent {
        tenant: Some(tenant),
        zone: Some(id),
        detail: serde_json::json!({
            "from": from, "to": to,
            "replanned": replanned.len(),
            "unrecoverable": unrecoverable,
        }),
        ..AuditEvent::new(actor, "zone.retry_failed", "ok")
    };
    audit::record(&mut *tx, &event)
        .await
        .map_err(op("write zone audit row"))?;
    tx.commit().await.map_err(op("commit retry-failed"))?;
    Ok(RetryReport {
        zone: id,
        tenant,
        from,
        to,
        replanned,
        unrecoverable,
        paused,
    })
}

/// Parks a zone: pauses it with `reason` (`zones.paused_reason`, also its `last_error`)
/// because an error no retry of a window can fix stopped it — Cloudflare refused its
/// token, it has none, its tenant was shredded, its keys cannot be opened. Its windows
/// stay where they are (the fetch stage puts a `fetching` one back to `planned`); the
/// scheduler and the reconciler leave the zone alone until `zone resume` or a new
/// token. Returns whether this call parked it (the first reason is kept); audited as
/// `zone.parked`.
pub async fn park(
    pool: &PgPool,
    zone_id: Uuid,
    reason: &str,
    actor: &str,
) -> Result<bool, DbError> {
    let op = |what| move |e| DbError::query(what, e);
    let mut tx = pool.begin().await.map_err(op("begin zone park"))?;
    let parked = park_in(&mut tx, "id", zone_id, reason, actor).await?;
    tx.commit().await.map_err(op("commit zone park"))?;
    Ok(parked > 0)
}

/// Parks every zone of `tenant` in `tx` (a shredded tenant: nothing of it can be
/// fetched or sealed again); returns how many were newly parked.
pub async fn park_tenant_zones(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant: Uuid,
    reason: &str,
    actor: &str,
) -> Result<u64, DbError> {
    park_in(tx, "tenant_id", tenant, reason, actor).await
}

async fn park_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    column: &'static str,
    id: Uuid,
    reason: &str,
    actor: &str,
) -> Result<u64, DbError> {
    let op = |what| move |e| DbError::query(what, e);
    let parked: Vec<(Uuid, Uuid)> = sqlx::query_as(&format!(
        "UPDATE zones SET paused = true, paused_reason = $2, last_error = $2
         WHERE {column} = $1 AND paused_reason IS NULL
         RETURNING id, tenant_id"
    ))
    .bind(id)
    .bind(reason)
    .fetch_all(&mut **tx)
    .await
    .map_err(op("park zone"))?;
    for (zone, tenant) in &parked {
        let event = AuditEvent {
            tenant: Some(*tenant),
            zone: Some(*zone),
            detail: serde_json::json!({ "reason": reason }),
            ..AuditEvent::new(actor, "zone.parked", "ok")
        };
        audit::record(&mut **tx, &event)
            .await
            .map_err(op("write zone audit row"))?;
        tracing::error!(%zone, %reason, "zone parked: paused until the cause is fixed");
    }
    Ok(parked.len() as u64)
}

/// What [`set_token`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetTokenReport {
    pub zone: Uuid,
    pub probe: ProbeReport,
    /// The zone was parked and is running again.
    pub resumed: bool,
    /// The zone stays paused (an operator paused it): `zone resume` to run it.
    pub still_paused: bool,
}

/// Replaces a zone's Cloudflare token: probed at the zone's endpoint first (refused
/// tokens are not stored), then sealed through `kms` like `zone add` does. A zone
/// Rainlogs parked is resumed (its cause was most likely the old token; if not, the
/// next failure parks it again). Audited as `zone.set_token` (never the token).
pub async fn set_token(
    pool: &PgPool,
    kms: &dyn Kms,
    probe: &dyn ZoneProbe,
    zone: &str,
    token: &SecretString,
    actor: &str,
) -> Result<SetTokenReport, ZoneError> {
    if token.expose_secret().trim().is_empty() {
        return Err(ZoneError::EmptyToken);
    }
    let id = resolve(pool, zone).await?;
    let op = |what| move |e| DbError::query(what, e);
    let (tenant, cf, kind, url): (Uuid, String, EndpointKind, Option<String>) = sqlx::query_as(
        "SELECT tenant_id, cf_zone_id, endpoint, simulator_url FROM zones WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .map_err(op("read zone"))?;
    let endpoint = ZoneEndpoint::from_columns(kind, url).map_err(|e| DbError::Query {
        op: "read zone endpoint",
        reason: format!("zone {id}: {e}"),
        retryable: false,
    })?;
    let report = probe_token(probe, &endpoint, &cf, token).await?;
    let binding = SecretBinding {
        tenant,
        zone: id,
        purpose: CLOUDFLARE_TOKEN_PURPOSE.to_owned(),
    };
    let sealed = kms
        .encrypt_secret(&binding, token.expose_secret().as_bytes())
        .await?;
    let mut tx = pool.begin().await.map_err(op("begin zone token change"))?;
    let (was_parked, paused): (bool, bool) = sqlx::query_as(
        "SELECT paused_reason IS NOT NULL, paused FROM zones WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await
    .map_err(op("lock zone"))?;
    sqlx::query(
        "UPDATE zones SET token_ciphertext = $2,
                paused = CASE WHEN paused_reason IS NOT NULL THEN false ELSE paused END,
                last_error = CASE WHEN paused_reason IS NOT NULL THEN NULL ELSE last_error END,
                paused_reason = NULL
         WHERE id = $1",
    )
    .bind(id)
    .bind(sealed)
    .execute(&mut *tx)
    .await
    .map_err(op("store zone token"))?;
    let event = AuditEvent {
        tenant: Some(tenant),
        zone: Some(id),
        detail: serde_json::json!({
            "resumed": was_parked,
            "retention_enabled": report.retention_enabled,
        }),
        ..AuditEvent::new(actor, "zone.set_token", "ok")
    };
    audit::record(&mut *tx, &event)
        .await
        .map_err(op("write zone audit row"))?;
    tx.commit().await.map_err(op("commit zone token change"))?;
    Ok(SetTokenReport {
        zone: id,
        probe: report,
        resumed: was_parked,
        still_paused: paused && !was_parked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn without_fields_a_zone_archives_everything_offered_and_narrowing_is_checked() {
        let offered = list(&["ClientIP", "RayID", "ClientRequestUserAgent", "WAFRuleID"]);
        let cf = "0123456789abcdef0123456789abcdef";
        assert_eq!(choose_fields(cf, &offered, None).unwrap(), offered);
        let narrowed = list(&[" RayID", "ClientIP", "RayID", ""]);
        assert_eq!(
            choose_fields(cf, &offered, Some(&narrowed)).unwrap(),
            list(&["RayID", "ClientIP"]),
            "trimmed, deduplicated, in the order given"
        );
        let bad = list(&["RayID", "ClientIp", "Nope"]);
        match choose_fields(cf, &offered, Some(&bad)) {
            Err(e @ ZoneError::UnknownFields { .. }) => {
                assert_eq!(e.code(), "zone.unknown_fields");
                let text = e.to_string();
                assert!(
                    text.contains("ClientIp, Nope") && text.contains(cf),
                    "{text}"
                );
            }
            other => panic!("unknown fields refused: {other:?}"),
        }
        assert!(matches!(
            choose_fields(cf, &offered, Some(&list(&[" ", ""]))),
            Err(ZoneError::NoFields)
        ));
        // A probe without a list (a push zone's) cannot check: taken as given.
        assert_eq!(
            choose_fields(cf, &[], Some(&list(&["RayID"]))).unwrap(),
            list(&["RayID"])
        );
        assert!(choose_fields(cf, &[], None).unwrap().is_empty());
    }
}
