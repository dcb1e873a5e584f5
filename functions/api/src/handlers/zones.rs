//! `/v1/tenants/{tenant}/zones` and `/v1/zones/{zone}/…`: list, add (with a Cloudflare
//! token, probed at the zone's endpoint and stored only sealed), get, pause, resume,
//! mode, retry failed windows, coverage and the window ledger — over `catalog::zone`,
//! `verify::window_page` and the dispatcher's `enqueue_fetches`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, TimeZone, Utc};
use rainlogs_archive::catalog::zone::{
    self, NewZone, ZoneMode, ZoneProbe, ZoneRetentionChange, ZoneRow,
};
use rainlogs_archive::endpoint::{EndpointKind, ZoneEndpoint};
use rainlogs_archive::verify::{self as verification, WindowRow};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{created, tenant_of, zone_of, Body, Path, Query};
use crate::auth::Principal;
use crate::page::{slice, PageRequest};
use crate::problem::{Problem, ProblemBody};
use crate::Api;

/// How a zone's logs arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Logpull windows (Enterprise zones).
    Pull,
    /// Logpush batches only.
    Push,
    /// Logpush batches, Logpull repairing gaps younger than 7 days.
    Hybrid,
}

impl From<Mode> for ZoneMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Pull => ZoneMode::Pull,
            Mode::Push => ZoneMode::Push,
            Mode::Hybrid => ZoneMode::Hybrid,
        }
    }
}

impl From<ZoneMode> for Mode {
    fn from(m: ZoneMode) -> Self {
        match m {
            ZoneMode::Pull => Mode::Pull,
            ZoneMode::Push => Mode::Push,
            ZoneMode::Hybrid => Mode::Hybrid,
        }
    }
}

/// A zone (never its token).
#[derive(Debug, Serialize, ToSchema)]
pub struct Zone {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub tenant: String,
    /// Cloudflare's zone id.
    pub cf_zone_id: String,
    pub name: String,
    pub cadence_seconds: i32,
    pub mode: Mode,
    pub paused: bool,
    /// Why Rainlogs parked (paused) the zone by itself.
    pub paused_reason: Option<String>,
    pub has_token: bool,
    pub last_error: Option<String>,
    /// `cloudflare`, or `simulator` (demos and tests).
    pub endpoint: String,
    pub simulator_url: Option<String>,
}

impl From<ZoneRow> for Zone {
    fn from(z: ZoneRow) -> Self {
        Self {
            id: z.id,
            tenant_id: z.tenant_id,
            tenant: z.tenant,
            cf_zone_id: z.cf_zone_id,
            name: z.name,
            cadence_seconds: z.cadence_seconds,
            mode: z.mode.into(),
            paused: z.paused,
            paused_reason: z.paused_reason,
            has_token: z.has_token,
            last_error: z.last_error,
            endpoint: match z.endpoint {
                EndpointKind::Cloudflare => "cloudflare",
                EndpointKind::Simulator => "simulator",
            }
            .into(),
            simulator_url: z.simulator_url,
        }
    }
}

/// One page of zones.
#[derive(Debug, Serialize, ToSchema)]
pub struct ZonePage {
    pub zones: Vec<Zone>,
    /// The next page's `page_token`; empty on the last page.
    pub next_page_token: String,
}

/// A Cloudflare API token: read once into a secret, never echoed or logged.
pub struct Token(SecretString);

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Token(SecretString::from(String::deserialize(d)?)))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

/// A zone to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewZoneRequest {
    /// Cloudflare zone id: 32 lowercase hex characters.
    pub cf_zone_id: String,
    /// Display name (usually the domain).
    pub name: String,
    /// The zone's Cloudflare API token (Logs Read); checked at the zone's endpoint
    /// before it is stored, stored only encrypted, never returned.
    #[schema(value_type = String, format = Password)]
    pub token: Token,
    /// Default `pull`.
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// Window length, 15-3600 seconds (default 60).
    #[serde(default = "default_cadence")]
    pub cadence_seconds: i32,
    /// How far back to start, 0-10080 minutes (default 30).
    #[serde(default = "default_backfill")]
    pub backfill_minutes: i64,
    /// Switch the zone's Logpull log retention on if it is off.
    #[serde(default)]
    pub enable_retention: bool,
    /// Fetch from a Logpull simulator at this URL (only where the API allows it:
    /// `RAINLOGS_API_ALLOW_SIMULATOR`).
    pub simulator_url: Option<String>,
    /// Archive only these Logpull fields, each checked against the zone's fields
    /// endpoint (`zone.unknown_fields` otherwise). Default: every field Cloudflare
    /// offers for the zone — a field not fetched within its 7 days is lost for good.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
}

fn default_mode() -> Mode {
    Mode::Pull
}
fn default_cadence() -> i32 {
    60
}
fn default_backfill() -> i64 {
    30
}

/// A new mode.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModeRequest {
    pub mode: Mode,
}

/// A mode change.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModeChange {
    pub zone: Uuid,
    pub from: Mode,
    pub to: Mode,
}

/// Which failed windows to retry (by window start).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// Default: the oldest start Logpull still serves (7 days).
    pub from: Option<DateTime<Utc>>,
    /// Default: now.
    pub to: Option<DateTime<Utc>>,
}

/// What a retry did.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetryReport {
    pub zone: Uuid,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Windows moved from `failed_permanent` back to `planned`, oldest first.
    pub replanned: Vec<i64>,
    /// Failed windows older than Cloudflare's 7 days: lost for good.
    pub unrecoverable: i64,
    /// The zone is paused: the windows wait until it is resumed.
    pub paused: bool,
    /// Fetch tasks sent now; `null` when not sent (paused, nothing to send, or no
    /// queue: a running scheduler's reconciler sends planned windows by itself).
    pub enqueued: Option<u64>,
}

/// A time range.
#[derive(Debug, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    /// Start (RFC 3339); default: the zone's backfill start.
    pub from: Option<DateTime<Utc>>,
    /// End (RFC 3339, exclusive); default: now.
    pub to: Option<DateTime<Utc>>,
}

/// One stretch of time of one kind.
#[derive(Debug, Serialize, ToSchema)]
pub struct Span {
    /// `archived`, `empty`, `failed`, `in_flight`, `pruned` or `missing`.
    pub kind: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Coverage of a zone's pulled windows over a range.
#[derive(Debug, Serialize, ToSchema)]
pub struct Coverage {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Windows per state.
    pub states: std::collections::BTreeMap<String, u64>,
    /// Maximal stretches of one kind, in time order.
    pub spans: Vec<Span>,
    /// Push and hybrid zones: records and quiet stretches per dataset, each
    /// destination's delivery health (with a silence alert) and the periods Cloudflare
    /// reported the zone's Logpush jobs failing (docs/INGEST.md); absent for pull zones.
    #[schema(value_type = Option<Object>)]
    pub push: Option<serde_json::Value>,
}

/// Windows of a zone: a range, a dataset, a page.
#[derive(Debug, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WindowsQuery {
    /// Windows ending after this (RFC 3339); default: all.
    pub from: Option<DateTime<Utc>>,
    /// Windows starting before this (RFC 3339); default: all.
    pub to: Option<DateTime<Utc>>,
    /// Only this dataset's windows (pulled windows are `http_requests`).
    pub dataset: Option<String>,
    /// Items per page (default 50, at most 500).
    pub page_size: Option<i64>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// One window of the ledger, with its object and chain link when it has them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Window {
    pub id: i64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// `planned`, `fetching`, `staged`, `sealed`, `archived`, `empty`,
    /// `failed_permanent`, `pruned` or `split`.
    pub state: String,
    pub state_since: DateTime<Utc>,
    pub last_error: Option<String>,
    pub object_key: Option<String>,
    pub size_bytes: Option<i64>,
    pub record_count: Option<i64>,
    /// The window's chain link.
    pub seq: Option<i64>,
    /// The Logpush batch the window holds; `null` for a pulled window.
    pub batch_id: Option<Uuid>,
    pub dataset: String,
}

impl From<WindowRow> for Window {
    fn from(w: WindowRow) -> Self {
        Self {
            id: w.id,
            start: w.start_at,
            end: w.end_at,
            state: w.state,
            state_since: w.state_since,
            last_error: w.last_error,
            object_key: w.object_key,
            size_bytes: w.size_bytes,
            record_count: w.record_count,
            seq: w.seq,
            batch_id: w.batch_id,
            dataset: w
                .dataset
                .unwrap_or_else(|| verification::PULL_DATASET.to_owned()),
        }
    }
}

/// One page of windows, in time order.
#[derive(Debug, Serialize, ToSchema)]
pub struct WindowPage {
    pub windows: Vec<Window>,
    /// The next page's `page_token`; empty on the last page.
    pub next_page_token: String,
}

/// Zones of a tenant, by name.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/zones", tag = "zones",
    params(("tenant" = String, Path, description = "tenant name or id"), super::tenants::PageQuery),
    responses((status = 200, body = ZonePage),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn list(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(tenant): Path<String>,
    Query(q): Query<super::tenants::PageQuery>,
) -> Result<Json<ZonePage>, Problem> {
    let t = tenant_of(&api, &p, &tenant).await?;
    let req =
        PageRequest::<(String, Uuid)>::parse("zones", &t.id, q.page_size, q.page_token.as_deref())?;
    let zones = zone::list_of(&api.services().pool, Some(t.id)).await?;
    let (page, next_page_token) = slice(zones, |z| (z.name.clone(), z.id), &req);
    Ok(Json(ZonePage {
        zones: page.into_iter().map(Zone::from).collect(),
        next_page_token,
    }))
}

/// Where a zone's token is checked: the Logpush jobs API for a push zone, Logpull
/// otherwise (switching Cloudflare's log retention on when asked).
fn probe_for(
    services: &crate::Services,
    mode: ZoneMode,
    enable_retention: bool,
) -> Box<dyn ZoneProbe> {
    match mode {
        ZoneMode::Push => Box::new(rainlogs_archive::logpush::JobsProbe::new(
            services.cloudflare.clone(),
        )),
        ZoneMode::Pull | ZoneMode::Hybrid => Box::new(
            rainlogs_fetch::LogpullProbe::new(
                services.logpull.clone(),
                services.cloudflare.clone(),
            )
            .enabling_retention(enable_retention),
        ),
    }
}

/// Adds a zone to a tenant (operators, admins): the token is probed at the zone's
/// endpoint (Logpull, or the Logpush jobs API for a `push` zone) and stored only
/// encrypted. Audited as `zone.add`.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/zones", tag = "zones", request_body = NewZoneRequest,
    params(("tenant" = String, Path, description = "tenant name or id")),
    responses((status = 201, body = Zone),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
              (status = 502, body = ProblemBody, content_type = "application/problem+json",
               description = "the zone's endpoint could not be asked about the token"),
              (status = 503, body = ProblemBody, content_type = "application/problem+json",
               description = "no kms (master keyring) configured")),
    security(("api_key" = [])))]
pub async fn add(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(tenant): Path<String>,
    Body(req): Body<NewZoneRequest>,
) -> Result<(StatusCode, Json<Zone>), Problem> {
    let services = api.services();
    let t = tenant_of(&api, &p, &tenant).await?;
    let endpoint = match req.simulator_url {
        Some(_) if !api.config().allow_simulator => {
            return Err(Problem::unprocessable(
                "zone.simulator_not_allowed",
                "simulator_url is refused: this API does not allow simulated zones (RAINLOGS_API_ALLOW_SIMULATOR)",
            ))
        }
        Some(url) => ZoneEndpoint::Simulator { url },
        None => ZoneEndpoint::Cloudflare,
    };
    let mode = ZoneMode::from(req.mode);
    if mode == ZoneMode::Push && req.enable_retention {
        return Err(Problem::unprocessable(
            "zone.retention_not_for_push",
            "enable_retention is for Logpull; a push zone does not use it",
        ));
    }
    let Some(kms) = services.kms.as_deref() else {
        return Err(Problem::unavailable(
            "kms.unavailable",
            "zones cannot be added: this API runs without a master keyring to seal their tokens",
        ));
    };
    let probe = probe_for(services, mode, req.enable_retention);
    let new = NewZone {
        tenant: &t.name,
        cf_zone_id: &req.cf_zone_id,
        name: &req.name,
        cadence_seconds: req.cadence_seconds,
        backfill_minutes: req.backfill_minutes,
        endpoint,
        demo: false,
        fields: req.fields.as_deref(),
    };
    let id = zone::add_by(
        &services.pool,
        kms,
        probe.as_ref(),
        &new,
        &req.token.0,
        mode,
        Utc::now(),
        &p.actor(),
    )
    .await?;
    Ok(created(
        zone::get(&services.pool, &id.to_string()).await?.into(),
    ))
}

/// A zone's new Cloudflare token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The new token; probed at the zone's endpoint before it is stored, stored only
    /// encrypted, never returned.
    #[schema(value_type = String, format = Password)]
    pub token: Token,
}

/// What replacing a token did.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenReplaced {
    pub zone: Zone,
    /// Rainlogs had parked the zone (a refused token, for instance): it runs again.
    pub resumed: bool,
    /// An operator paused the zone: it stays paused until resumed.
    pub still_paused: bool,
}

/// Replaces the zone's Cloudflare token (operators, admins): probed first — a token
/// Cloudflare refuses is not stored — then sealed by the kms; a zone Rainlogs parked
/// runs again. Audited as `zone.set_token` (never the token).
#[utoipa::path(put, path = "/v1/zones/{zone}/token", tag = "zones", request_body = TokenRequest,
    params(("zone" = String, Path, description = "Rainlogs zone id or Cloudflare zone id")),
    responses((status = 200, body = TokenReplaced),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
              (status = 502, body = ProblemBody, content_type = "application/problem+json",
               description = "the zone's endpoint could not be asked about the token"),
              (status = 503, body = ProblemBody, content_type = "application/problem+json",
               description = "no kms (master keyring) configured")),
    security(("api_key" = [])))]
pub async fn set_token(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(zone): Path<String>,
    Body(req): Body<TokenRequest>,
) -> Result<Json<TokenReplaced>, Problem> {
    let services = api.services();
    let z = zone_of(&api, &p, &zone).await?;
    let Some(kms) = services.kms.as_deref() else {
        return Err(Problem::unavailable(
            "kms.unavailable",
            "tokens cannot be replaced: this API runs without a master keyring to seal them",
        ));
    };
    let probe = probe_for(services, z.mode, false);
    let r = zone::set_token(
        &services.pool,
        kms,
        probe.as_ref(),
        &z.id.to_string(),
        &req.token.0,
        &p.actor(),
    )
    .await?;
    Ok(Json(TokenReplaced {
        zone: zone::get(&services.pool, &z.id.to_string()).await?.into(),
        resumed: r.resumed,
        still_paused: r.still_paused,
    }))
}

/// One zone, by Rainlogs id or Cloudflare zone id.
#[utoipa::path(get, path = "/v1/zones/{zone}", tag = "zones",
    params(("zone" = String, Path, description = "Rainlogs zone id or Cloudflare zone id")),
    responses((status = 200, body = Zone),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn get(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(zone): Path<String>,
) -> Result<Json<Zone>, Problem> {
    Ok(Json(zone_of(&api, &p, &zone).await?.into()))
}

async fn set_paused(
    api: &Api,
    p: &Principal,
    zone: &str,
    paused: bool,
) -> Result<Json<Zone>, Problem> {
    let z = zone_of(api, p, zone).await?;
    let pool = &api.services().pool;
    zone::set_paused_by(pool, &z.id.to_string(), paused, &p.actor()).await?;
    Ok(Json(zone::get(pool, &z.id.to_string()).await?.into()))
}

/// A change of a zone's retention override and/or legal hold.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ZoneChange {
    /// Keep this zone's archives this many days (1-36500), overriding the tenant's;
    /// below 395 needs `confirm_short_retention`.
    pub retention_days: Option<i32>,
    /// Drop the override: the tenant's retention applies again.
    #[serde(default)]
    pub inherit_retention: bool,
    /// A legal hold stops every deletion of the zone's archives.
    pub legal_hold: Option<bool>,
    #[serde(default)]
    pub confirm_short_retention: bool,
}

/// A zone's retention settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct ZoneRetention {
    pub zone: Uuid,
    /// The zone's own retention; `null`: the tenant's applies.
    pub retention_days: Option<i32>,
    pub legal_hold: bool,
}

/// Changes a zone's retention override and/or legal hold (admins). Audited as
/// `zone.set` with the old and new values.
#[utoipa::path(patch, path = "/v1/zones/{zone}", tag = "zones", request_body = ZoneChange,
    params(("zone" = String, Path, description = "Rainlogs zone id or Cloudflare zone id")),
    responses((status = 200, body = ZoneRetention),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn update(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(zone): Path<String>,
    Body(change): Body<ZoneChange>,
) -> Result<Json<ZoneRetention>, Problem> {
    let z = zone_of(&api, &p, &zone).await?;
    if change.inherit_retention && change.retention_days.is_some() {
        return Err(Problem::unprocessable(
            "zone.conflicting_retention",
            "give retention_days or inherit_retention, not both",
        ));
    }
    let change = ZoneRetentionChange {
        retention_days: if change.inherit_retention {
            Some(None)
        } else {
            change.retention_days.map(Some)
        },
        legal_hold: change.legal_hold,
        confirm_short_retention: change.confirm_short_retention,
    };
    let applied =
        zone::set_retention(&api.services().pool, &z.id.to_string(), change, &p.actor()).await?;
    Ok(Json(ZoneRetention {
        zone: applied.id,
        retention_days: applied.retention_days,
        legal_hold: applied.legal_hold,
    }))
}

/// Pauses a zone: no new windows are planned or fetched. Audited as `zone.pause`.
#[utoipa::path(post, path = "/v1/zones/{zone}/pause", tag = "zones",
    params(("zone" = String, Path, description = "Rainlogs zone id or Cloudflare zone id")),
    responses((status = 200, body = Zone),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn pause(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(zone): Path<String>,
) -> Result<Json<Zone>, Problem> {
    set_paused(&api, &p, &zone, true).await
}

/// Resumes a zone (and clears the reason Rainlogs parked it for). Audited as
/// `zone.resume`.
#[utoipa::path(post, path = "/v1/zones/{zone}/resume", tag = "zones",
    params(("zone" = String, Path, description = "Rainlogs zone id or Cloudflare zone id")),
    responses((status = 200, body = Zone),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn resume(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(zone): Path<String>,
) -> Result<Json<Zone>, Problem> {
    set_paused(&api, &p, &zone, false).await
}

/// Sets how the zone's logs arrive. Audited as `zone.mode`.
#[utoipa::path(put, path = "/v1/zones/{zone}/mode", tag = "zones", request_body = ModeRequest,
    params(("zone" = String, Path, description = "Rainlogs zone id or Cloudflare zone id")),
    responses((status = 200, body = ModeChange),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn set_mode(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(zone): Path<String>,
    Body(req): Body<ModeRequest>,
) -> Result<Json<ModeChange>, Problem> {
    let z = zone_of(&api, &p, &zone).await?;
    let old = zone::set_mode(
        &api.services().pool,
        &z.id.to_string(),
        req.mode.into(),
        &p.actor(),
    )
    .await?;
    Ok(Json(ModeChange {
        zone: z.id,
        from: old.into(),
        to: req.mode,
    }))
}

/// Re-plans the zone's failed windows still inside Cloudflare's 7 days and sends
/// their fetches. Audited as `zone.retry_failed`.
#[utoipa::path(post, path = "/v1/zones/{zone}/retry-failed", tag = "zones", request_body = RetryRequest,
    params(("zone" = String, Path, description = "Rainlogs zone id or Cloudflare zone id")),
    responses((status = 200, body = RetryReport),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn retry_failed(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(zone): Path<String>,
    Body(req): Body<RetryRequest>,
) -> Result<Json<RetryReport>, Problem> {
    let z = zone_of(&api, &p, &zone).await?;
    let services = api.services();
    let r = zone::retry_failed(
        &services.pool,
        &z.id.to_string(),
        req.from,
        req.to,
        Utc::now(),
        &p.actor(),
    )
    .await?;
    let enqueued = match &services.queue {
        Some(queue) if !r.paused && !r.replanned.is_empty() => {
            match rainlogs_dispatcher::reconcile::enqueue_fetches(queue, r.tenant, &r.replanned)
                .await
            {
                Ok(report) => Some(report.enqueued + report.duplicates),
                Err(e) => {
                    // Planned in the ledger: the reconciler sends them; not an error.
                    tracing::warn!(zone = %z.id, error = %e, "re-planned windows not enqueued now");
                    None
                }
            }
        }
        _ => None,
    };
    Ok(Json(RetryReport {
        zone: r.zone,
        from: r.from,
        to: r.to,
        replanned: r.replanned,
        unrecoverable: r.unrecoverable,
        paused: r.paused,
        enqueued,
    }))
}

/// Which stretches of the range are archived, empty, failed, in flight, pruned or
/// missing (the zone's pulled windows); for push and hybrid zones also what push
/// delivered, the destinations' health and Cloudflare's reported failures.
#[utoipa::path(get, path = "/v1/zones/{zone}/coverage", tag = "zones",
    params(("zone" = String, Path, description = "Rainlogs zone id or Cloudflare zone id"), RangeQuery),
    responses((status = 200, body = Coverage),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn coverage(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(zone): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<Coverage>, Problem> {
    let z = zone_of(&api, &p, &zone).await?;
    let c = zone::coverage(
        &api.services().pool,
        &z.id.to_string(),
        q.from,
        q.to,
        Utc::now(),
    )
    .await?;
    let push = match z.mode {
        ZoneMode::Pull => None,
        ZoneMode::Push | ZoneMode::Hybrid => {
            let p = rainlogs_archive::push::coverage(
                &api.services().pool,
                z.id,
                c.from,
                c.to,
                Utc::now(),
            )
            .await?;
            serde_json::to_value(&p).ok()
        }
    };
    Ok(Json(Coverage {
        push,
        from: c.from,
        to: c.to,
        states: c.states.into_iter().collect(),
        spans: c
            .spans
            .into_iter()
            .map(|(kind, from, to)| Span {
                kind: serde_json::to_value(kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                from,
                to,
            })
            .collect(),
    }))
}

/// The zone's windows (pulled windows and pushed batches) with their states, objects
/// and chain links, in time order.
#[utoipa::path(get, path = "/v1/zones/{zone}/windows", tag = "zones",
    params(("zone" = String, Path, description = "Rainlogs zone id or Cloudflare zone id"), WindowsQuery),
    responses((status = 200, body = WindowPage),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn windows(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(zone): Path<String>,
    Query(q): Query<WindowsQuery>,
) -> Result<Json<WindowPage>, Problem> {
    let z = zone_of(&api, &p, &zone).await?;
    let pool = &api.services().pool;
    let filters = (z.id, q.from, q.to, &q.dataset);
    type Cursor = (DateTime<Utc>, DateTime<Utc>, i64);
    let req =
        PageRequest::<Cursor>::parse("windows", &filters, q.page_size, q.page_token.as_deref())?;
    // Postgres' timestamptz spans these; chrono's own extremes it does not.
    let from = q
        .from
        .unwrap_or_else(|| Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap());
    let to =
        q.to.unwrap_or_else(|| Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 0).unwrap());
    if from >= to {
        return Err(Problem::unprocessable(
            "request.empty_range",
            "from must be before to",
        ));
    }
    let receipts = verification::receipts_exist(pool).await?;
    let mut rows = verification::window_page(
        pool,
        receipts,
        z.id,
        from,
        to,
        q.dataset.as_deref(),
        req.after,
        req.size as i64 + 1,
    )
    .await?;
    let more = rows.len() > req.size;
    rows.truncate(req.size);
    let next_page_token = match (more, rows.last()) {
        (true, Some(last)) => req.token_after((last.start_at, last.end_at, last.id)),
        _ => String::new(),
    };
    Ok(Json(WindowPage {
        windows: rows.into_iter().map(Window::from).collect(),
        next_page_token,
    }))
}
