//! A verification run over a selection of zones — a tenant's, one zone, or all — each
//! over its range (default: from the exact start of its first window, else its
//! backfill start, to [`DEFAULT_SETTLE`] ago); the outcome states each zone's range. What
//! `rainlogs verify` and the HTTP API call; the checks themselves are [`super::Verifier`].

use chrono::{DateTime, TimeDelta, Utc};
use rainlogs_core::db::DbError;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::{Counts, Finding, Verifier, VerifyError, ZoneScope};
use crate::catalog::tenant::{self, TenantError};
use crate::catalog::zone::{self, ZoneError};

/// Default distance of the range's end from now: recent windows are still being archived.
pub const DEFAULT_SETTLE: TimeDelta = TimeDelta::minutes(15);

/// What to verify.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Only this tenant's zones (name or id).
    pub tenant: Option<String>,
    /// Only this zone (Rainlogs id, Cloudflare zone id or name).
    pub zone: Option<String>,
    /// Start of the range; default the start of each zone's first window (its backfill
    /// start when it has none).
    pub from: Option<DateTime<Utc>>,
    /// End of the range (exclusive); default [`DEFAULT_SETTLE`] before now.
    pub to: Option<DateTime<Utc>>,
    /// Also decrypt every object (needs the verifier's kms).
    pub deep: bool,
}

/// Why the selection of zones failed.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    Zone(#[from] ZoneError),
    #[error("zone {zone:?} does not belong to tenant {tenant:?}")]
    NotOfTenant { zone: String, tenant: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Why a run could not complete (findings are not errors: they are the result).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
}

/// What a verification run selected and found.
#[derive(Debug, Clone, Serialize)]
pub struct ZoneResult {
    pub zone_id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub counts: Counts,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub zones: Vec<ZoneResult>,
    pub counts: Counts,
}

impl Outcome {
    pub fn clean(&self) -> bool {
        self.counts.findings == 0
    }
}

#[derive(Debug)]
struct ZoneSel {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    backfill_from: DateTime<Utc>,
    /// The start of the zone's first window (`None` before it has any).
    first_start: Option<DateTime<Utc>>,
}

/// The zones `req` selects, by tenant then name.
async fn select_zones(pool: &PgPool, req: &Request) -> Result<Vec<ZoneSel>, SelectError> {
    let tenant = match &req.tenant {
        None => None,
        Some(t) => Some(tenant::resolve(pool, t).await?),
    };
    let zone = match &req.zone {
        None => None,
        Some(z) => Some(zone::resolve(pool, z).await?),
    };
    let zones: Vec<ZoneSel> = sqlx::query_as!(
        ZoneSel,
        "SELECT z.id, z.tenant_id, z.name, z.backfill_from,
                (SELECT min(w.start_at) FROM windows w WHERE w.zone_id = z.id) AS first_start
         FROM zones z JOIN tenants t ON t.id = z.tenant_id
         WHERE ($1::uuid IS NULL OR z.tenant_id = $1) AND ($2::uuid IS NULL OR z.id = $2)
         ORDER BY t.name, z.name, z.id",
        tenant,
        zone,
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("list zones to verify", e))?;
    if zones.is_empty() && zone.is_some() {
        return Err(SelectError::NotOfTenant {
            zone: req.zone.clone().unwrap_or_default(),
            tenant: req.tenant.clone().unwrap_or_default(),
        });
    }
    Ok(zones)
}

/// Runs the checks `req` asks for; every finding goes to `on_finding` as it is found.
pub async fn verify(
    verifier: &Verifier,
    req: &Request,
    now: DateTime<Utc>,
    on_finding: &mut (dyn FnMut(Finding) -> Result<(), VerifyError> + Send),
) -> Result<Outcome, RunError> {
    if req.deep && verifier.kms.is_none() {
        return Err(VerifyError::NoKms.into());
    }
    let mut outcome = Outcome::default();
    for z in select_zones(&verifier.pool, req).await? {
        // Exactly where the zone's first window starts: the planner aligns windows to
        // the cadence and plans none older than Logpull's 7 days, and pushed batches
        // start anywhere, so the backfill start (rounded or not) may lie before any
        // window could, and the time before the first window would be a false gap.
        let from = req.from.or(z.first_start).unwrap_or(z.backfill_from);
        let to = req.to.unwrap_or(now - DEFAULT_SETTLE).max(from);
        let counts = verifier
            .verify_zone(
                ZoneScope {
                    zone_id: z.id,
                    from,
                    to,
                },
                req.deep,
                &mut |f| on_finding(f),
            )
            .await?;
        outcome.counts.add(&counts);
        outcome.zones.push(ZoneResult {
            zone_id: z.id,
            tenant_id: z.tenant_id,
            name: z.name,
            from,
            to,
            counts,
        });
    }
    Ok(outcome)
}
