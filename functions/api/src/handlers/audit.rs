//! `GET /v1/tenants/{tenant}/audit-events`: a tenant's audit log, newest first,
//! filtered and paginated — over `audit::list`.

use axum::extract::State;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use rainlogs_archive::audit::{self, AuditFilter, AuditRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{tenant_of, zone_of, Path, Query};
use crate::auth::Principal;
use crate::page::PageRequest;
use crate::problem::{Problem, ProblemBody};
use crate::Api;

/// Filters of the audit log; each narrows.
#[derive(Debug, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// An operation (`tenant.set`) or a family (`zone.*`).
    pub operation: Option<String>,
    /// Only events about this zone (Rainlogs or Cloudflare zone id).
    pub zone: Option<String>,
    /// Only events by this actor (e.g. `api:alice@acme:admin`, `cli:root:tenant`).
    pub actor: Option<String>,
    /// `ok`, or what went otherwise.
    pub result: Option<String>,
    /// Events at or after this (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Events before this (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// Items per page (default 50, at most 500).
    pub page_size: Option<i64>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// One audit event: who did what, when, with what result; `detail` holds counts, ids
/// and old → new values, never key material or log data.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub operation: String,
    pub tenant_id: Option<Uuid>,
    pub zone_id: Option<Uuid>,
    pub key_version: Option<i32>,
    pub result: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<AuditRow> for AuditEvent {
    fn from(r: AuditRow) -> Self {
        Self {
            id: r.id,
            at: r.at,
            actor: r.actor,
            operation: r.operation,
            tenant_id: r.tenant_id,
            zone_id: r.zone_id,
            key_version: r.key_version,
            result: r.result,
            detail: r.detail,
        }
    }
}

/// One page of audit events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// The next page's `page_token`; empty on the last page.
    pub next_page_token: String,
}

/// The tenant's audit log (auditors, admins), newest first.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/audit-events", tag = "audit",
    params(("tenant" = String, Path, description = "tenant name or id"), AuditQuery),
    responses((status = 200, body = AuditPage),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn list(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(tenant): Path<String>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditPage>, Problem> {
    let t = tenant_of(&api, &p, &tenant).await?;
    let zone = match &q.zone {
        Some(z) => {
            let z = zone_of(&api, &p, z).await?;
            if z.tenant_id != t.id {
                return Err(Problem::not_found(
                    "zone.unknown",
                    format!("no zone {:?} in tenant {:?}", z.cf_zone_id, t.name),
                ));
            }
            Some(z.id)
        }
        None => None,
    };
    let filter = AuditFilter {
        tenant: Some(t.id),
        zone,
        operation: q.operation.clone(),
        actor: q.actor.clone(),
        result: q.result.clone(),
        from: q.from,
        to: q.to,
    };
    let filters = (t.id, zone, &q.operation, &q.actor, &q.result, q.from, q.to);
    let req = PageRequest::<i64>::parse(
        "audit-events",
        &filters,
        q.page_size,
        q.page_token.as_deref(),
    )?;
    let mut rows = audit::list(
        &api.services().pool,
        &filter,
        req.after,
        req.size as i64 + 1,
    )
    .await?;
    let more = rows.len() > req.size;
    rows.truncate(req.size);
    let next_page_token = match (more, rows.last()) {
        (true, Some(last)) => req.token_after(last.id),
        _ => String::new(),
    };
    Ok(Json(AuditPage {
        events: rows.into_iter().map(AuditEvent::from).collect(),
        next_page_token,
    }))
}
