//! `/v1/tenants`: list (the caller's own, or all for provider-wide users), create
//! (provider-wide admins), get, and change retention and legal hold — over
//! `catalog::tenant`, each change audited there.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use rainlogs_archive::catalog::tenant::{self, RetentionChange, TenantRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{created, tenant_of, Body, Path, Query};
use crate::auth::Principal;
use crate::page::{slice, PageRequest};
use crate::problem::{Problem, ProblemBody};
use crate::Api;

/// A tenant: a customer whose zones are archived.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    /// Days archives are kept after their window ends (zones may override).
    pub retention_days: i32,
    /// A legal hold stops every deletion of the tenant's archives.
    pub legal_hold: bool,
    /// Zones of the tenant.
    pub zones: i64,
}

impl From<TenantRow> for Tenant {
    fn from(t: TenantRow) -> Self {
        Self {
            id: t.id,
            name: t.name,
            retention_days: t.retention_days,
            legal_hold: t.legal_hold,
            zones: t.zones,
        }
    }
}

/// One page of tenants.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantPage {
    pub tenants: Vec<Tenant>,
    /// The next page's `page_token`; empty on the last page.
    pub next_page_token: String,
}

/// Pagination only.
#[derive(Debug, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Items per page (default 50, at most 500).
    pub page_size: Option<i64>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// A new tenant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// 1-200 characters, unique.
    pub name: String,
    /// Default 395 (13 months); below that needs `confirm_short_retention`.
    #[serde(default = "default_retention")]
    pub retention_days: i32,
    #[serde(default)]
    pub confirm_short_retention: bool,
}

fn default_retention() -> i32 {
    tenant::LEGAL_MIN_RETENTION_DAYS
}

/// A change of a tenant's retention and/or legal hold.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantChange {
    /// 1-36500; below 395 needs `confirm_short_retention`.
    pub retention_days: Option<i32>,
    pub legal_hold: Option<bool>,
    #[serde(default)]
    pub confirm_short_retention: bool,
}

/// Tenants the caller sees, by name.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", params(PageQuery),
    responses((status = 200, body = TenantPage),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn list(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Query(q): Query<PageQuery>,
) -> Result<Json<TenantPage>, Problem> {
    let req = PageRequest::<String>::parse("tenants", &(), q.page_size, q.page_token.as_deref())?;
    let all = tenant::list(&api.services().pool).await?;
    let mine: Vec<TenantRow> = all.into_iter().filter(|t| p.sees(t.id)).collect();
    let (page, next_page_token) = slice(mine, |t| t.name.clone(), &req);
    Ok(Json(TenantPage {
        tenants: page.into_iter().map(Tenant::from).collect(),
        next_page_token,
    }))
}

/// Creates a tenant (provider-wide admins). Audited as `tenant.add`.
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = NewTenant,
    responses((status = 201, body = Tenant),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn create(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Body(new): Body<NewTenant>,
) -> Result<(StatusCode, Json<Tenant>), Problem> {
    let pool = &api.services().pool;
    tenant::check_short_retention(new.retention_days, new.confirm_short_retention)?;
    let id = tenant::create(pool, &new.name, new.retention_days, &p.actor()).await?;
    Ok(created(tenant::get(pool, &id.to_string()).await?.into()))
}

/// One tenant, by name or id.
#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = Tenant),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn get(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(tenant): Path<String>,
) -> Result<Json<Tenant>, Problem> {
    Ok(Json(tenant_of(&api, &p, &tenant).await?.into()))
}

/// Changes a tenant's retention and/or legal hold (admins). Audited as `tenant.set`
/// with the old and new values.
#[utoipa::path(patch, path = "/v1/tenants/{tenant}", tag = "tenants", request_body = TenantChange,
    params(("tenant" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = Tenant),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn update(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(tenant): Path<String>,
    Body(change): Body<TenantChange>,
) -> Result<Json<Tenant>, Problem> {
    let pool = &api.services().pool;
    let row = tenant_of(&api, &p, &tenant).await?;
    let change = RetentionChange {
        retention_days: change.retention_days,
        legal_hold: change.legal_hold,
        confirm_short_retention: change.confirm_short_retention,
    };
    tenant::set(pool, &row.id.to_string(), change, &p.actor()).await?;
    Ok(Json(tenant::get(pool, &row.id.to_string()).await?.into()))
}
