//! The archive pages: the zones a session sees, each with a coverage strip of the last
//! day by hour, and one zone with its strips (48 hours by hour, 30 days by day), its
//! failed windows with their reasons and a retry button (`zone::retry_failed`, as
//! `POST /v1/zones/{zone}/retry-failed` calls it). Pulled zones are drawn from the
//! window ledger (`coverage_of`), push zones from what push delivered
//! (`push::coverage`: received, quiet, failed job periods).

use axum::extract::{Path, Query, State};
use axum::Extension;
use chrono::{DateTime, TimeDelta, Utc};
use rainlogs_archive::catalog::account::Permission;
use rainlogs_archive::catalog::session::Session;
use rainlogs_archive::catalog::zone::{self, ZoneMode, ZoneRow};
use rainlogs_archive::coverage::{coverage_of, Cover};
use rainlogs_archive::ledger::{self, WindowState};
use serde::{Deserialize, Serialize};

use super::queues::time;
use super::strip::{floor, strip, Cell};
use super::{back, need, need_action, prefix, render, Chrome, PageError, PageResult};
use crate::auth::visible;
use crate::problem::Problem;
use crate::Api;

/// Zones per page.
const PAGE: usize = 50;

type Spans = Vec<(&'static str, DateTime<Utc>, DateTime<Utc>)>;

fn cover_name(c: Cover) -> &'static str {
    match c {
        Cover::Archived => "archived",
        Cover::Empty => "empty",
        Cover::Failed => "failed",
        Cover::InFlight => "in_flight",
        Cover::Pruned => "pruned",
        Cover::Missing => "missing",
        Cover::Lost => "lost",
    }
}

/// The zone's coverage spans over `[from, to)` in the terms of its mode, and (pulled
/// zones) its failed windows with their reasons.
async fn spans(
    api: &Api,
    z: &ZoneRow,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(Spans, Vec<ledger::Window>), PageError> {
    let pool = &api.services().pool;
    if z.mode == ZoneMode::Push {
        let c = rainlogs_archive::push::coverage(pool, z.id, from, to, Utc::now())
            .await
            .map_err(|e| PageError::from(Problem::of(&e)))?;
        let mut out: Spans = vec![("received", c.from, c.to)];
        for d in &c.datasets {
            out.extend(d.quiet.iter().map(|(a, b)| ("quiet", *a, *b)));
        }
        for f in &c.failed {
            out.push(("failed", f.from, f.to.unwrap_or(to)));
        }
        return Ok((out, Vec::new()));
    }
    let windows = ledger::windows_between(pool, z.id, from, to)
        .await
        .map_err(|e| PageError::from(Problem::of(&e)))?;
    // Before the zone's first window nothing was asked of it: drawn as nothing, not as
    // missing (the planner starts at the zone's backfill start).
    let Some(first) = windows.first().map(|w| w.start_at) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let c = coverage_of(&windows, from.max(first), to, Utc::now());
    let failed = windows
        .into_iter()
        .filter(|w| w.state == WindowState::FailedPermanent)
        .collect();
    Ok((
        c.spans
            .into_iter()
            .map(|(k, a, b)| (cover_name(k), a, b))
            .collect(),
        failed,
    ))
}

#[derive(Debug, Serialize)]
struct ZoneItem {
    id: String,
    name: String,
    tenant: String,
    mode: String,
    paused: bool,
    paused_reason: Option<String>,
    last_error: Option<String>,
    cells: Vec<Cell>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    offset: Option<usize>,
    note: Option<String>,
}

pub(crate) async fn list(
    State(api): State<Api>,
    Extension(s): Extension<Session>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    need(&s, Permission::ReadMetadata, false)?;
    let all = zone::list_of(&api.services().pool, s.principal.tenant_id)
        .await
        .map_err(Problem::from)?;
    let offset = q.offset.unwrap_or(0).min(all.len());
    let now = Utc::now();
    let end = floor(now, TimeDelta::hours(1)) + TimeDelta::hours(1);
    let mut zones = Vec::new();
    for z in all.iter().skip(offset).take(PAGE) {
        let (sp, _) = spans(&api, z, end - TimeDelta::hours(24), now).await?;
        zones.push(ZoneItem {
            id: z.id.to_string(),
            name: z.name.clone(),
            tenant: z.tenant.clone(),
            mode: format!("{:?}", z.mode).to_lowercase(),
            paused: z.paused,
            paused_reason: z.paused_reason.clone(),
            last_error: z.last_error.clone(),
            cells: strip(&sp, end, TimeDelta::hours(1), 24),
        });
    }
    render(
        "zones.html",
        minijinja::context! {
            chrome => Chrome::of(&api, &s),
            title => "Zones",
            zones => zones,
            total => all.len(),
            offset => offset,
            prev_offset => (offset > 0).then(|| offset.saturating_sub(PAGE)),
            next_offset => (offset + PAGE < all.len()).then_some(offset + PAGE),
            note => q.note,
        },
    )
}

/// The zone of a path parameter (Rainlogs id), if the session sees it (else 404, as
/// an unknown one).
async fn zone_of(api: &Api, s: &Session, id: &str) -> Result<ZoneRow, PageError> {
    let unknown = || Problem::from(zone::ZoneError::UnknownZone(id.to_owned()));
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(unknown().into());
    }
    let z = zone::get(&api.services().pool, id)
        .await
        .map_err(Problem::from)?;
    visible(&s.principal, Some(z.tenant_id), unknown)?;
    Ok(z)
}

#[derive(Debug, Serialize)]
struct Failure {
    id: i64,
    start: String,
    end: String,
    attempts: i32,
    error: String,
    since: String,
}

pub(crate) async fn zone(
    State(api): State<Api>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    need(&s, Permission::ReadMetadata, false)?;
    let z = zone_of(&api, &s, &id).await?;
    let now = Utc::now();
    let hour_end = floor(now, TimeDelta::hours(1)) + TimeDelta::hours(1);
    let day_end = floor(now, TimeDelta::days(1)) + TimeDelta::days(1);
    let (hours, _) = spans(&api, &z, hour_end - TimeDelta::hours(48), now).await?;
    let (days, failed_30) = spans(&api, &z, day_end - TimeDelta::days(30), now).await?;
    // Failed windows of the last 30 days, newest first (the retry re-plans those
    // still inside Cloudflare's 7 days).
    let mut failures: Vec<Failure> = failed_30
        .iter()
        .map(|w| Failure {
            id: w.id,
            start: time(w.start_at),
            end: time(w.end_at),
            attempts: w.attempts,
            error: w.last_error.clone().unwrap_or_default(),
            since: time(w.state_since),
        })
        .collect();
    failures.reverse();
    let can_act = !api.config().monitor.read_only && super::may(&s, Permission::ManageZones, false);
    render(
        "zone.html",
        minijinja::context! {
            chrome => Chrome::of(&api, &s),
            title => format!("Zone {}", z.name),
            zone => minijinja::context! {
                id => z.id.to_string(),
                name => z.name,
                tenant => z.tenant,
                cf_zone_id => z.cf_zone_id,
                mode => format!("{:?}", z.mode).to_lowercase(),
                paused => z.paused,
                paused_reason => z.paused_reason,
                last_error => z.last_error,
                cadence => z.cadence_seconds,
            },
            hours => strip(&hours, hour_end, TimeDelta::hours(1), 48),
            days => strip(&days, day_end, TimeDelta::days(1), 30),
            failures => failures.iter().take(200).collect::<Vec<_>>(),
            failures_total => failures.len(),
            can_act => can_act && z.mode != ZoneMode::Push,
            note => q.note,
        },
    )
}

pub(crate) async fn retry_failed(
    State(api): State<Api>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> PageResult {
    need_action(&api, &s, Permission::ManageZones, false)?;
    let z = zone_of(&api, &s, &id).await?;
    let services = api.services();
    let r = zone::retry_failed(
        &services.pool,
        &z.id.to_string(),
        None,
        None,
        Utc::now(),
        &s.principal.actor(),
    )
    .await
    .map_err(|e| PageError::from(Problem::from(e)))?;
    let mut note = format!(
        "{} failed windows re-planned, {} too old for Cloudflare's 7 days",
        r.replanned.len(),
        r.unrecoverable
    );
    if r.paused {
        note.push_str("; the zone is paused: they wait until it is resumed");
    } else if let (Some(queue), false) = (&services.queue, r.replanned.is_empty()) {
        match rainlogs_dispatcher::reconcile::enqueue_fetches(queue, r.tenant, &r.replanned).await {
            Ok(report) => note.push_str(&format!(
                "; {} fetches sent",
                report.enqueued + report.duplicates
            )),
            // Planned in the ledger: the reconciler sends them; not an error.
            Err(e) => {
                tracing::warn!(zone = %z.id, error = %e, "re-planned windows not enqueued now")
            }
        }
    }
    Ok(back(&format!("{}/zones/{}", prefix(&api), z.id), &note))
}
