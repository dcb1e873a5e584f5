//! The route table: every route of the API with the permission it needs and how the
//! tenant boundary applies to it. [`crate::auth::authorize`] checks every request
//! against it (a route missing here is refused to everyone), and the authorization
//! matrix test walks it — with the OpenAPI document — so a new route without a rule
//! fails the tests.

use axum::http::Method;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post, put};
use axum::Router;

use crate::auth::{self, Permission};
use crate::handlers::{audit, health, tenants, users, verify, zones};
use crate::Api;

/// How a route relates to tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// No key needed (the OpenAPI document, liveness).
    Public,
    /// Any authenticated caller; about the caller itself.
    Caller,
    /// The route names a tenant's resource (in its path or body): another tenant's
    /// answers 404, exactly as an unknown one.
    Tenant,
    /// Provider-wide users only (shared infrastructure, creating tenants).
    Provider,
}

/// One route and its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    /// As axum and OpenAPI write it: `/v1/zones/{zone}`.
    pub path: &'static str,
    /// `None`: public.
    pub permission: Option<Permission>,
    pub scope: Scope,
}

const fn route(
    method: &'static str,
    path: &'static str,
    permission: Permission,
    scope: Scope,
) -> Route {
    Route {
        method,
        path,
        permission: Some(permission),
        scope,
    }
}

use Permission::*;
use Scope::*;

/// Every route of the API.
pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/v1/openapi.json",
        permission: None,
        scope: Public,
    },
    Route {
        method: "GET",
        path: "/v1/health",
        permission: None,
        scope: Public,
    },
    route("GET", "/v1/health/queues", ReadHealth, Provider),
    route("GET", "/v1/me", ReadMetadata, Caller),
    route("GET", "/v1/tenants", ReadMetadata, Caller),
    route("POST", "/v1/tenants", ManageTenants, Provider),
    route("GET", "/v1/tenants/{tenant}", ReadMetadata, Tenant),
    route("PATCH", "/v1/tenants/{tenant}", ManageTenants, Tenant),
    route("GET", "/v1/tenants/{tenant}/zones", ReadMetadata, Tenant),
    route("POST", "/v1/tenants/{tenant}/zones", ManageZones, Tenant),
    route(
        "GET",
        "/v1/tenants/{tenant}/audit-events",
        ReadAudit,
        Tenant,
    ),
    route("POST", "/v1/tenants/{tenant}/verify", Verify, Tenant),
    route("GET", "/v1/tenants/{tenant}/users", ManageUsers, Tenant),
    route("POST", "/v1/tenants/{tenant}/users", ManageUsers, Tenant),
    route("GET", "/v1/zones/{zone}", ReadMetadata, Tenant),
    route("PATCH", "/v1/zones/{zone}", ManageTenants, Tenant),
    route("POST", "/v1/zones/{zone}/pause", ManageZones, Tenant),
    route("POST", "/v1/zones/{zone}/resume", ManageZones, Tenant),
    route("PUT", "/v1/zones/{zone}/mode", ManageZones, Tenant),
    route("POST", "/v1/zones/{zone}/retry-failed", ManageZones, Tenant),
    route("GET", "/v1/zones/{zone}/coverage", ReadMetadata, Tenant),
    route("GET", "/v1/zones/{zone}/windows", ReadMetadata, Tenant),
    route("POST", "/v1/users/{user}/disable", ManageUsers, Tenant),
    route("GET", "/v1/users/{user}/keys", ManageUsers, Tenant),
    route("POST", "/v1/users/{user}/keys", ManageUsers, Tenant),
    route("POST", "/v1/keys/{key}/revoke", ManageUsers, Tenant),
];

/// The rule of `method path` (the route's template, as matched).
pub fn find(method: &Method, path: &str) -> Option<&'static Route> {
    // axum answers HEAD with the GET handler: the GET rule applies.
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ROUTES.iter().find(|r| r.path == path && r.method == method)
}

/// The routes and their handlers, behind the authorization layer.
pub(crate) fn router(api: Api) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(crate::openapi::serve))
        .route("/v1/health", get(health::live))
        .route("/v1/health/queues", get(health::queues))
        .route("/v1/me", get(users::me))
        .route("/v1/tenants", get(tenants::list).post(tenants::create))
        .route(
            "/v1/tenants/{tenant}",
            get(tenants::get).patch(tenants::update),
        )
        .route(
            "/v1/tenants/{tenant}/zones",
            get(zones::list).post(zones::add),
        )
        .route("/v1/tenants/{tenant}/audit-events", get(audit::list))
        .route("/v1/tenants/{tenant}/verify", post(verify::run))
        .route(
            "/v1/tenants/{tenant}/users",
            get(users::list).post(users::add),
        )
        .route("/v1/zones/{zone}", get(zones::get).patch(zones::update))
        .route("/v1/zones/{zone}/pause", post(zones::pause))
        .route("/v1/zones/{zone}/resume", post(zones::resume))
        .route("/v1/zones/{zone}/mode", put(zones::set_mode))
        .route("/v1/zones/{zone}/retry-failed", post(zones::retry_failed))
        .route("/v1/zones/{zone}/coverage", get(zones::coverage))
        .route("/v1/zones/{zone}/windows", get(zones::windows))
        .route("/v1/users/{user}/disable", post(users::disable))
        .route(
            "/v1/users/{user}/keys",
            get(users::keys).post(users::create_key),
        )
        .route("/v1/keys/{key}/revoke", post(users::revoke_key))
        .route_layer(from_fn_with_state(api.clone(), auth::authorize))
        .with_state(api)
}
