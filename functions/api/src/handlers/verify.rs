//! `POST /v1/tenants/{tenant}/verify`: runs `verify::run` over the tenant's zones (or
//! one), answers the counts and the findings (the first `RAINLOGS_API_VERIFY_MAX_FINDINGS`;
//! all are counted). Audited as `verify.run`.

use axum::extract::State;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use rainlogs_archive::audit::{self, AuditEvent};
use rainlogs_archive::verify::run::{self, Request};
use rainlogs_archive::verify::{Counts, Verifier, DEFAULT_CONCURRENCY};
use rainlogs_core::db::DbError;
use rainlogs_core::error::ErrorClass;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{tenant_of, zone_of, Body, Path};
use crate::auth::Principal;
use crate::problem::{Problem, ProblemBody};
use crate::Api;

/// What to verify.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// Only this zone (Rainlogs or Cloudflare zone id); default: every zone of the tenant.
    pub zone: Option<String>,
    /// Start of the range; default: each zone's backfill start.
    pub from: Option<DateTime<Utc>>,
    /// End of the range (exclusive); default: 15 minutes ago.
    pub to: Option<DateTime<Utc>>,
    /// Also decrypt every object (needs the kms).
    #[serde(default)]
    pub deep: bool,
}

/// What was looked at.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyCounts {
    pub zones: u64,
    pub links: u64,
    pub windows: u64,
    pub archived: u64,
    pub empty: u64,
    pub pruned: u64,
    pub objects_checked: u64,
    pub objects_deep: u64,
    pub object_bytes: u64,
    pub findings: u64,
}

impl From<Counts> for VerifyCounts {
    fn from(c: Counts) -> Self {
        Self {
            zones: c.zones,
            links: c.links,
            windows: c.windows,
            archived: c.archived,
            empty: c.empty,
            pruned: c.pruned,
            objects_checked: c.objects_checked,
            objects_deep: c.objects_deep,
            object_bytes: c.object_bytes,
            findings: c.findings,
        }
    }
}

/// One zone's part of a run.
#[derive(Debug, Serialize, ToSchema)]
pub struct ZoneVerified {
    pub zone_id: Uuid,
    pub name: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub counts: VerifyCounts,
}

/// The outcome of a verification run.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyReport {
    /// No findings.
    pub clean: bool,
    pub counts: VerifyCounts,
    pub zones: Vec<ZoneVerified>,
    /// Findings as docs/VERIFY.md describes them (`type` names the kind).
    #[schema(value_type = Vec<Object>)]
    pub findings: Vec<serde_json::Value>,
    /// More findings than returned (all are in `counts.findings`).
    pub findings_truncated: bool,
}

/// Verifies the tenant's archive (auditors, operators, admins): chain, objects,
/// catalog, pruned windows and coverage; `deep` also decrypts every object.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/verify", tag = "verify", request_body = VerifyRequest,
    params(("tenant" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = VerifyReport),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn run(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(tenant): Path<String>,
    Body(req): Body<VerifyRequest>,
) -> Result<Json<VerifyReport>, Problem> {
    let t = tenant_of(&api, &p, &tenant).await?;
    let zone = match &req.zone {
        Some(z) => {
            let z = zone_of(&api, &p, z).await?;
            if z.tenant_id != t.id {
                return Err(Problem::not_found(
                    "zone.unknown",
                    format!("no zone {:?} in tenant {:?}", z.cf_zone_id, t.name),
                ));
            }
            Some(z.id.to_string())
        }
        None => None,
    };
    let services = api.services();
    let verifier = Verifier {
        pool: services.pool.clone(),
        store: services.store.clone(),
        kms: api.opener(),
        concurrency: DEFAULT_CONCURRENCY,
    };
    let request = Request {
        tenant: Some(t.id.to_string()),
        zone,
        from: req.from,
        to: req.to,
        deep: req.deep,
    };
    let max = api.config().verify_max_findings;
    // The verifier's future is not provably `Send` for every lifetime of its row
    // callbacks (a limit of rustc's inference), which an axum handler must be: it runs
    // on a blocking thread of its own, driven there by the runtime's handle. (A request
    // that times out stops waiting for it; the run itself finishes on that thread.)
    let handle = tokio::runtime::Handle::current();
    let zone_scope = request.zone.clone();
    let (outcome, findings, truncated) = tokio::task::spawn_blocking(move || {
        handle.block_on(async move {
            let mut findings = Vec::new();
            let mut truncated = false;
            let outcome = run::verify(&verifier, &request, Utc::now(), &mut |f| {
                if findings.len() < max {
                    findings.push(serde_json::to_value(&f).unwrap_or_default());
                } else {
                    truncated = true;
                }
                Ok(())
            })
            .await?;
            Ok::<_, run::RunError>((outcome, findings, truncated))
        })
    })
    .await
    .map_err(|e| Problem::internal("verify.task", ErrorClass::Permanent, &e))??;
    let actor = p.actor();
    let event = AuditEvent {
        tenant: Some(t.id),
        detail: serde_json::json!({
            "zone": zone_scope, "from": req.from, "to": req.to, "deep": req.deep,
            "zones": outcome.zones.len(), "findings": outcome.counts.findings,
        }),
        ..AuditEvent::new(
            &actor,
            "verify.run",
            if outcome.clean() { "ok" } else { "findings" },
        )
    };
    audit::record(&services.pool, &event)
        .await
        .map_err(|e| DbError::query("write verify audit row", e))?;
    Ok(Json(VerifyReport {
        clean: outcome.clean(),
        counts: outcome.counts.clone().into(),
        zones: outcome
            .zones
            .into_iter()
            .map(|z| ZoneVerified {
                zone_id: z.zone_id,
                name: z.name,
                from: z.from,
                to: z.to,
                counts: z.counts.into(),
            })
            .collect(),
        findings,
        findings_truncated: truncated,
    }))
}
