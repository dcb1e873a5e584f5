//! The route table: every route of the API with the permission it needs and how the
//! tenant boundary applies to it. A handler is registered only through the table
//! (building the router panics on a route without a rule), [`crate::auth::authorize`]
//! checks every request against it (fail closed), and the authorization matrix test
//! walks it — with the OpenAPI document — so a new route without a rule, or without
//! its place in the document, fails the tests.

use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::from_fn_with_state;
use axum::routing::{on, MethodFilter};
use axum::Router;

use crate::auth::{self, Permission};
use crate::handlers::{audit, gdpr, health, logs, tenants, users, verify, zones};
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
    route("GET", "/v1/health/pipeline", ReadHealth, Provider),
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
    route("PUT", "/v1/zones/{zone}/token", ManageZones, Tenant),
    route("POST", "/v1/zones/{zone}/retry-failed", ManageZones, Tenant),
    route("GET", "/v1/zones/{zone}/coverage", ReadMetadata, Tenant),
    route("GET", "/v1/zones/{zone}/windows", ReadMetadata, Tenant),
    route("GET", "/v1/zones/{zone}/logs", ReadLogs, Tenant),
    route(
        "GET",
        "/v1/zones/{zone}/windows/{window}/object",
        ExportArchive,
        Tenant,
    ),
    route(
        "POST",
        "/v1/tenants/{tenant}/key-export",
        ExportArchive,
        Tenant,
    ),
    route(
        "POST",
        "/v1/tenants/{tenant}/gdpr/search",
        DataSubjectAccess,
        Tenant,
    ),
    route(
        "GET",
        "/v1/tenants/{tenant}/gdpr/requests",
        DataSubjectAccess,
        Tenant,
    ),
    route("POST", "/v1/tenants/{tenant}/gdpr/erasures", Erase, Tenant),
    route(
        "POST",
        "/v1/tenants/{tenant}/gdpr/erasures/{request}/confirm",
        Erase,
        Tenant,
    ),
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

/// Registers `handler` for `method path`, which must have a rule in [`ROUTES`]: a
/// route cannot be served without one (building the router panics, so every test
/// of the API fails).
fn ruled<H, T>(router: Router<Api>, method: Method, path: &'static str, handler: H) -> Router<Api>
where
    H: Handler<T, Api>,
    T: 'static,
{
    assert!(
        find(&method, path).is_some(),
        "route {method} {path} has no rule in routes::ROUTES"
    );
    let filter = MethodFilter::try_from(method).expect("a method axum routes");
    router.route(path, on(filter, handler))
}

/// The routes and their handlers, behind the authorization layer.
pub(crate) fn router(api: Api) -> Router {
    let (get, post, put, patch) = (Method::GET, Method::POST, Method::PUT, Method::PATCH);
    let mut r = Router::new();
    r = ruled(r, get.clone(), "/v1/openapi.json", crate::openapi::serve);
    r = ruled(r, get.clone(), "/v1/health", health::live);
    r = ruled(r, get.clone(), "/v1/health/pipeline", health::pipeline);
    r = ruled(r, get.clone(), "/v1/me", users::me);
    r = ruled(r, get.clone(), "/v1/tenants", tenants::list);
    r = ruled(r, post.clone(), "/v1/tenants", tenants::create);
    r = ruled(r, get.clone(), "/v1/tenants/{tenant}", tenants::get);
    r = ruled(r, patch.clone(), "/v1/tenants/{tenant}", tenants::update);
    r = ruled(r, get.clone(), "/v1/tenants/{tenant}/zones", zones::list);
    r = ruled(r, post.clone(), "/v1/tenants/{tenant}/zones", zones::add);
    r = ruled(
        r,
        get.clone(),
        "/v1/tenants/{tenant}/audit-events",
        audit::list,
    );
    r = ruled(r, post.clone(), "/v1/tenants/{tenant}/verify", verify::run);
    r = ruled(r, get.clone(), "/v1/tenants/{tenant}/users", users::list);
    r = ruled(r, post.clone(), "/v1/tenants/{tenant}/users", users::add);
    r = ruled(r, get.clone(), "/v1/zones/{zone}", zones::get);
    r = ruled(r, patch, "/v1/zones/{zone}", zones::update);
    r = ruled(r, post.clone(), "/v1/zones/{zone}/pause", zones::pause);
    r = ruled(r, post.clone(), "/v1/zones/{zone}/resume", zones::resume);
    r = ruled(r, put.clone(), "/v1/zones/{zone}/mode", zones::set_mode);
    r = ruled(r, put, "/v1/zones/{zone}/token", zones::set_token);
    r = ruled(
        r,
        post.clone(),
        "/v1/zones/{zone}/retry-failed",
        zones::retry_failed,
    );
    r = ruled(r, get.clone(), "/v1/zones/{zone}/coverage", zones::coverage);
    r = ruled(r, get.clone(), "/v1/zones/{zone}/windows", zones::windows);
    r = ruled(r, get.clone(), "/v1/zones/{zone}/logs", logs::get);
    r = ruled(
        r,
        get.clone(),
        "/v1/zones/{zone}/windows/{window}/object",
        logs::object,
    );
    r = ruled(
        r,
        post.clone(),
        "/v1/tenants/{tenant}/key-export",
        logs::key_export,
    );
    r = ruled(
        r,
        post.clone(),
        "/v1/tenants/{tenant}/gdpr/search",
        gdpr::search,
    );
    r = ruled(
        r,
        get.clone(),
        "/v1/tenants/{tenant}/gdpr/requests",
        gdpr::requests,
    );
    r = ruled(
        r,
        post.clone(),
        "/v1/tenants/{tenant}/gdpr/erasures",
        gdpr::request_erasure,
    );
    r = ruled(
        r,
        post.clone(),
        "/v1/tenants/{tenant}/gdpr/erasures/{request}/confirm",
        gdpr::confirm_erasure,
    );
    r = ruled(r, post.clone(), "/v1/users/{user}/disable", users::disable);
    r = ruled(r, get, "/v1/users/{user}/keys", users::keys);
    r = ruled(r, post.clone(), "/v1/users/{user}/keys", users::create_key);
    r = ruled(r, post, "/v1/keys/{key}/revoke", users::revoke_key);
    r.route_layer(from_fn_with_state(api.clone(), auth::authorize))
        .with_state(api)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_has_one_rule_and_head_takes_the_get_rule() {
        let mut seen = std::collections::BTreeSet::new();
        for r in ROUTES {
            assert!(
                seen.insert((r.method, r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
            assert!(r.path.starts_with("/v1/"), "{}", r.path);
            assert_eq!(
                r.permission.is_none(),
                r.scope == Scope::Public,
                "{}",
                r.path
            );
        }
        assert_eq!(
            find(&Method::HEAD, "/v1/tenants"),
            find(&Method::GET, "/v1/tenants")
        );
        assert!(find(&Method::DELETE, "/v1/tenants").is_none());
    }
}
