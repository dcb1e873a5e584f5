//! Hybrid repair: for a `hybrid` zone (push primary, Logpull available), plan pulled
//! windows for the cadence slots in which push delivered nothing, while Cloudflare
//! still serves them (7 days). docs/INGEST.md, "Hybrid repair".
//!
//! A slot is a gap when `push_minutes` holds no `http_requests` record for any of its
//! minutes, it ended at least `lag` ago (a Logpush job sends at least every 300 s and
//! retries), it starts after the zone's first destination existed, and no pulled window
//! overlaps it. Repair windows are ordinary `planned` windows: fetch, encrypt, upload,
//! chain, verify and prune treat them as any other. Restore makes an archived pulled
//! window authoritative for its span, so a batch that arrives after the repair is not
//! restored twice (`restore`, `Stats::superseded_records`).

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use rainlogs_core::config::{ConfigError, ConfigSource};
use rainlogs_core::db::DbError;

/// How far behind now a slot must have ended before it counts as a push gap, and how
/// many repair windows one pass plans per zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairPolicy {
    pub lag: TimeDelta,
    pub max_per_pass: i64,
}

impl RepairPolicy {
    /// `RAINLOGS_REPAIR_LAG_SECS`: 300 to 86400; default 1800.
    pub const LAG_VAR: &'static str = "RAINLOGS_REPAIR_LAG_SECS";

    pub fn from_source(src: &ConfigSource) -> Result<Self, ConfigError> {
        let secs: i64 = src.parsed_or(Self::LAG_VAR, 1800)?;
        if !(300..=86_400).contains(&secs) {
            return Err(ConfigError::Invalid {
                var: Self::LAG_VAR.into(),
                reason: format!("{secs} is outside 300..=86400 seconds"),
            });
        }
        Ok(Self {
            lag: TimeDelta::seconds(secs),
            ..Self::default()
        })
    }
}

impl Default for RepairPolicy {
    fn default() -> Self {
        Self {
            lag: TimeDelta::seconds(1800),
            max_per_pass: 1000,
        }
    }
}

/// Oldest slot start a repair plans: Logpull serves 7 days, less an hour so the window
/// is still there when its fetch runs.
const REPAIR_HORIZON: TimeDelta = TimeDelta::hours(7 * 24 - 1);

/// Plans repair windows for `zone_id` (nothing unless it is `hybrid` and not paused);
/// returns the new windows' ids.
pub async fn plan_repairs(
    pool: &PgPool,
    zone_id: Uuid,
    now: DateTime<Utc>,
    policy: &RepairPolicy,
) -> Result<Vec<i64>, DbError> {
    sqlx::query_scalar!(
        r#"WITH z AS (
             SELECT zones.id, make_interval(secs => zones.cadence_seconds) AS step,
                    greatest($2::timestamptz,
                             (SELECT min(d.created_at) FROM push_destinations d
                              WHERE d.zone_id = zones.id AND d.dataset = 'http_requests'))
                      AS since
             FROM zones WHERE zones.id = $1 AND zones.mode = 'hybrid' AND NOT zones.paused
         ), slots AS (
             SELECT z.id, s AS start_at, s + z.step AS end_at
             FROM z, generate_series(
                 date_bin(z.step, z.since, timestamptz 'epoch') + z.step,
                 $3::timestamptz - z.step,
                 z.step) AS s
             WHERE z.since IS NOT NULL
         )
         INSERT INTO windows (zone_id, start_at, end_at, state)
         SELECT s.id, s.start_at, s.end_at, 'planned' FROM slots s
         WHERE NOT EXISTS (
                 SELECT 1 FROM push_minutes m
                 WHERE m.zone_id = s.id AND m.dataset = 'http_requests'
                   AND m.minute >= date_trunc('minute', s.start_at) AND m.minute < s.end_at)
           AND NOT EXISTS (
                 SELECT 1 FROM windows w
                 WHERE w.zone_id = s.id AND w.batch_id IS NULL
                   AND w.start_at < s.end_at AND w.end_at > s.start_at)
         ORDER BY s.start_at
         LIMIT $4
         ON CONFLICT (zone_id, start_at, end_at) WHERE batch_id IS NULL DO NOTHING
         RETURNING id"#,
        zone_id,
        now - REPAIR_HORIZON,
        now - policy.lag,
        policy.max_per_pass,
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("plan repair windows", e))
}

/// A hybrid zone and its tenant (the tenant is the fairness group its repairs queue in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HybridZone {
    pub zone: Uuid,
    pub tenant: Uuid,
}

/// The hybrid zones a repair pass looks at (not paused, not demo).
pub async fn hybrid_zones(pool: &PgPool) -> Result<Vec<HybridZone>, DbError> {
    sqlx::query_as!(
        HybridZone,
        r#"SELECT id AS zone, tenant_id AS tenant FROM zones
           WHERE mode = 'hybrid' AND NOT paused AND NOT demo ORDER BY id"#
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("list hybrid zones", e))
}
