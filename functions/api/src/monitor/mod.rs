//! The monitor (docs/MONITOR.md): server-rendered pages over the queues and the
//! archive, served by the API under a configurable prefix (`RAINLOGS_MONITOR_PREFIX`,
//! default `/monitor`). Like the JSON endpoints it is a front end: every page reads
//! through the domain (the dispatcher's `queue` for Redis, `rainlogs_archive` for the
//! ledger), every action calls the same function the CLI or the API calls.
//!
//! What it adds is the browser's edge:
//! - **sessions**: the login form takes an API key and opens a session
//!   (`catalog::session`); the browser holds only the session secret, in an HttpOnly,
//!   SameSite=Strict cookie (Secure unless `RAINLOGS_MONITOR_INSECURE_COOKIE` is set
//!   for plain-HTTP local use). A request without a live session is sent to the login
//!   page. The session acts as its key's user and role, re-read on every request.
//! - **CSRF**: every POST must carry its session's token (compared in constant time),
//!   and a POST a browser marks as cross-site (`Sec-Fetch-Site`) or whose `Origin` is
//!   not this host is refused before anything else — login included.
//! - **roles**: pages need the permissions the matching API routes need; forms for
//!   actions are only drawn for a role that may act (and not in read-only mode,
//!   `RAINLOGS_MONITOR_READ_ONLY`), and the handler checks again: a POST without the
//!   permission is refused 403.
//! - **audit**: queue actions write an audit row each (`queue.*`), zone actions are
//!   audited by their domain function, sign-in and sign-out by the session's.
//!
//! Templates (minijinja, autoescaped) and the stylesheet and script are embedded in
//! the binary: nothing is fetched, nothing is built.

mod queues;
mod strip;
mod zones;

use std::sync::OnceLock;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{TimeDelta, Utc};
use cookie::{Cookie, SameSite};
use minijinja::Environment;
use rainlogs_archive::catalog::account::Permission;
use rainlogs_archive::catalog::session::{self, Session};
use rainlogs_core::config::{ConfigError, ConfigSource};
use secrecy::ExposeSecret;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::problem::Problem;
use crate::Api;

/// The session cookie.
pub const SESSION_COOKIE: &str = "rl_monitor";
/// The login form's CSRF cookie (double submit: there is no session yet).
pub const LOGIN_COOKIE: &str = "rl_monitor_login";
/// The form field carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf";

/// The monitor's settings (`RAINLOGS_MONITOR_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorConfig {
    /// Where the monitor is served (`RAINLOGS_MONITOR_PREFIX`, default `/monitor`;
    /// `off`: not served).
    pub prefix: Option<String>,
    /// Cookies without `Secure` (`RAINLOGS_MONITOR_INSECURE_COOKIE`, off): only for
    /// plain-HTTP use on one's own machine; behind TLS leave it off.
    pub insecure_cookie: bool,
    /// Pages only, no actions (`RAINLOGS_MONITOR_READ_ONLY`, off).
    pub read_only: bool,
    /// How long a session lasts (`RAINLOGS_MONITOR_SESSION_HOURS`, default 12).
    pub session_ttl: TimeDelta,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            prefix: Some("/monitor".into()),
            insecure_cookie: false,
            read_only: false,
            session_ttl: TimeDelta::hours(12),
        }
    }
}

impl MonitorConfig {
    pub fn from_source(src: &ConfigSource) -> Result<Self, ConfigError> {
        let d = Self::default();
        let prefix = match src.get("RAINLOGS_MONITOR_PREFIX") {
            None => d.prefix,
            Some("off") => None,
            Some(p) => {
                let ok = p.len() >= 2
                    && p.len() <= 100
                    && p.starts_with('/')
                    && !p.ends_with('/')
                    && !p.contains("//")
                    && p != "/v1"
                    && !p.starts_with("/v1/")
                    && p[1..]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_'));
                if !ok {
                    return Err(ConfigError::Invalid {
                        var: "RAINLOGS_MONITOR_PREFIX".into(),
                        reason: "must be a path like /monitor (letters, digits, - _ /; not /v1; no trailing /), or off".into(),
                    });
                }
                Some(p.to_owned())
            }
        };
        let hours: u64 = src.parsed_or("RAINLOGS_MONITOR_SESSION_HOURS", 12)?;
        if !(1..=24 * 30).contains(&hours) {
            return Err(ConfigError::Invalid {
                var: "RAINLOGS_MONITOR_SESSION_HOURS".into(),
                reason: "must be 1-720".into(),
            });
        }
        Ok(Self {
            prefix,
            insecure_cookie: src.bool_or("RAINLOGS_MONITOR_INSECURE_COOKIE", d.insecure_cookie)?,
            read_only: src.bool_or("RAINLOGS_MONITOR_READ_ONLY", d.read_only)?,
            session_ttl: TimeDelta::hours(hours as i64),
        })
    }
}

/// The monitor's routes under its prefix; `None` when it is switched off.
pub(crate) fn router(api: Api) -> Option<Router> {
    let prefix = api.config().monitor.prefix.clone()?;
    let pages = Router::new()
        .route("/", get(queues::home))
        .route("/queues", get(queues::overview))
        .route("/queues/{queue}", get(queues::queue))
        .route("/queues/{queue}/tasks/{id}", get(queues::task))
        .route("/queues/{queue}/pause", post(queues::pause))
        .route("/queues/{queue}/resume", post(queues::resume))
        .route("/queues/{queue}/tasks/{id}/{action}", post(queues::act))
        .route("/queues/{queue}/dead/{action}", post(queues::act_all_dead))
        .route("/zones", get(zones::list))
        .route("/zones/{zone}", get(zones::zone))
        .route("/zones/{zone}/retry-failed", post(zones::retry_failed))
        .route("/logout", post(logout))
        .route_layer(from_fn_with_state(api.clone(), require_session))
        .route("/login", get(login_page).post(login))
        .route("/static/monitor.css", get(stylesheet))
        .route("/static/monitor.js", get(script))
        .fallback(not_found)
        .layer(from_fn(refuse_cross_site))
        .layer(from_fn(page_headers))
        .with_state(api);
    Some(Router::new().nest(&prefix, pages))
}

// ------------------------------------------------------------------ rendering

const CSS: &str = include_str!("static/monitor.css");
const JS: &str = include_str!("static/monitor.js");

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, body) in [
            ("layout.html", include_str!("templates/layout.html")),
            ("login.html", include_str!("templates/login.html")),
            ("error.html", include_str!("templates/error.html")),
            ("overview.html", include_str!("templates/overview.html")),
            ("queue.html", include_str!("templates/queue.html")),
            ("task.html", include_str!("templates/task.html")),
            ("zones.html", include_str!("templates/zones.html")),
            ("zone.html", include_str!("templates/zone.html")),
        ] {
            // Embedded templates are checked by the tests (every page is rendered).
            if let Err(e) = env.add_template(name, body) {
                tracing::error!(template = name, error = %e, "monitor template does not parse");
            }
        }
        env
    })
}

/// What every page's layout needs.
#[derive(Debug, Serialize)]
pub(crate) struct Chrome {
    pub prefix: String,
    pub csrf: String,
    pub user: String,
    pub role: String,
    pub tenant: Option<String>,
    /// May see the queues (provider-wide, pipeline health).
    pub sees_queues: bool,
    pub read_only: bool,
}

impl Chrome {
    pub(crate) fn of(api: &Api, s: &Session) -> Self {
        Self {
            prefix: prefix(api),
            csrf: s.csrf_token.clone(),
            user: s.principal.user_name.clone(),
            role: s.principal.role.to_string(),
            tenant: s.principal.tenant_name.clone(),
            sees_queues: may(s, Permission::ReadHealth, true),
            read_only: api.config().monitor.read_only,
        }
    }
}

pub(crate) fn prefix(api: &Api) -> String {
    api.config().monitor.prefix.clone().unwrap_or_default()
}

/// Renders template `name` with `ctx`.
pub(crate) fn render(name: &str, ctx: impl Serialize) -> Result<Response, PageError> {
    let html = templates()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| {
            tracing::error!(template = name, error = %format!("{e:#}"), "monitor page did not render");
            PageError::new(StatusCode::INTERNAL_SERVER_ERROR, "this page could not be drawn; the cause is in the server's log")
        })?;
    Ok(Html(html).into_response())
}

/// A page that cannot be shown: its status and why, as an HTML page.
#[derive(Debug)]
pub(crate) struct PageError {
    pub status: StatusCode,
    pub message: String,
}

impl PageError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A Redis failure: the queue is unreachable (logged with its cause).
    pub(crate) fn redis(e: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %e, "monitor: redis");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the queue did not answer: {e}"),
        )
    }
}

impl From<Problem> for PageError {
    fn from(p: Problem) -> Self {
        Self::new(p.status, p.detail)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let html = templates()
            .get_template("error.html")
            .and_then(|t| {
                t.render(minijinja::context! {
                    status => self.status.as_u16(),
                    reason => self.status.canonical_reason().unwrap_or(""),
                    message => self.message,
                })
            })
            .unwrap_or_else(|_| format!("{} {}", self.status.as_u16(), self.message));
        (self.status, Html(html)).into_response()
    }
}

pub(crate) type PageResult = Result<Response, PageError>;

/// A redirect after an action (POST → 303 → GET), with a note for the next page.
pub(crate) fn back(to: &str, note: &str) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    let q = serde_urlencoded::to_string([("note", note)]).unwrap_or_default();
    Redirect::to(&format!("{to}{sep}{q}")).into_response()
}

// ------------------------------------------------------------------ permissions

/// Whether the session's role grants `permission` (and, for `provider`, whether its
/// user is provider-wide: queues are shared by every tenant).
pub(crate) fn may(s: &Session, permission: Permission, provider: bool) -> bool {
    s.principal.role.grants(permission) && (!provider || s.principal.tenant_id.is_none())
}

/// Refuses unless `may`: 403 with what is missing.
pub(crate) fn need(s: &Session, permission: Permission, provider: bool) -> Result<(), PageError> {
    if may(s, permission, provider) {
        Ok(())
    } else {
        Err(PageError::forbidden(format!(
            "role {}{} may not do this{}",
            s.principal.role,
            if s.principal.tenant_id.is_some() {
                " of one tenant"
            } else {
                ""
            },
            if provider {
                " (provider-wide operators and admins only)"
            } else {
                ""
            }
        )))
    }
}

/// Refuses an action in read-only mode, or without the permission.
pub(crate) fn need_action(
    api: &Api,
    s: &Session,
    permission: Permission,
    provider: bool,
) -> Result<(), PageError> {
    if api.config().monitor.read_only {
        return Err(PageError::forbidden(
            "the monitor is read-only here (RAINLOGS_MONITOR_READ_ONLY)",
        ));
    }
    need(s, permission, provider)
}

// ------------------------------------------------------------------ edge

/// Headers of every monitor answer: pages are never cached or framed, and run only
/// the monitor's own script and stylesheet.
async fn page_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// Whether a POST comes from another site: the browser says so (`Sec-Fetch-Site`), or
/// its `Origin` is not this host.
fn cross_site(headers: &HeaderMap) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return Some(format!("Sec-Fetch-Site: {site}"));
        }
    }
    let origin = headers.get(header::ORIGIN)?.to_str().unwrap_or("?");
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
    (origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host))
        .then(|| format!("Origin {origin} is not this host ({host})"))
}

/// Refuses cross-site POSTs before anything else reads them (login included).
async fn refuse_cross_site(req: Request, next: Next) -> Response {
    if req.method() == Method::POST {
        if let Some(why) = cross_site(req.headers()) {
            tracing::warn!(path = req.uri().path(), reason = %why, "monitor: cross-site post refused");
            return PageError::forbidden(format!("cross-site form post refused ({why})"))
                .into_response();
        }
    }
    next.run(req).await
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

fn set_cookie(api: &Api, name: &str, value: String, max_age: Option<TimeDelta>) -> HeaderValue {
    let mut c = Cookie::build((name.to_owned(), value))
        .path(prefix(api))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(!api.config().monitor.insecure_cookie);
    if let Some(age) = max_age {
        c = c.max_age(cookie::time::Duration::seconds(age.num_seconds()));
    }
    HeaderValue::from_str(&c.build().to_string()).unwrap_or(HeaderValue::from_static(""))
}

fn to_login(api: &Api) -> Response {
    Redirect::to(&format!("{}/login", prefix(api))).into_response()
}

/// The parsed fields of a form body.
#[derive(Debug, Clone, Default)]
pub(crate) struct Form(pub Vec<(String, String)>);

impl Form {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn read_form(req: Request) -> Result<(axum::http::request::Parts, Form), PageError> {
    let (parts, body) = req.into_parts();
    // The edge's body limit applies (DefaultBodyLimit): forms are small.
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|e| PageError::bad_request(format!("the form could not be read: {e}")))?;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| PageError::bad_request(format!("the form does not parse: {e}")))?;
    Ok((parts, Form(fields)))
}

fn tokens_equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().ct_eq(b.as_bytes()).unwrap_u8() == 1
}

/// The session layer: a live session or the login page; the key's rate limit; on a
/// POST, the session's CSRF token.
async fn require_session(State(api): State<Api>, req: Request, next: Next) -> Response {
    let pool = &api.services().pool;
    let session = match cookie_value(req.headers(), SESSION_COOKIE) {
        None => None,
        Some(secret) => match session::resume(pool, &secret, Utc::now()).await {
            Ok(s) => s,
            Err(rainlogs_archive::catalog::account::AuthError::Db(e)) => {
                return PageError::from(Problem::of(&e)).into_response()
            }
            Err(e) => {
                tracing::warn!(reason = %e, "monitor: session's key no longer authenticates");
                None
            }
        },
    };
    let Some(session) = session else {
        return to_login(&api);
    };
    if let Err(wait) = api
        .inner
        .limiter
        .take(session.principal.key_id, Instant::now())
    {
        let mut resp = PageError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests from this account; wait a moment",
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    let req = if req.method() == Method::POST {
        let (mut parts, form) = match read_form(req).await {
            Ok(x) => x,
            Err(e) => return e.into_response(),
        };
        let presented = form.get(CSRF_FIELD).unwrap_or("");
        if !tokens_equal(presented, &session.csrf_token) {
            tracing::warn!(path = parts.uri.path(), user = %session.principal.user_name, "monitor: post without this session's csrf token refused");
            return PageError::forbidden(
                "this form is not from this session (CSRF token missing or wrong); reload the page",
            )
            .into_response();
        }
        parts.extensions.insert(form);
        Request::from_parts(parts, Body::empty())
    } else {
        req
    };
    let mut req = req;
    req.extensions_mut().insert(session);
    next.run(req).await
}

// ------------------------------------------------------------------ pages

async fn not_found() -> PageError {
    PageError::new(StatusCode::NOT_FOUND, "no such page")
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        JS,
    )
        .into_response()
}

async fn login_page(State(api): State<Api>, req: Request) -> Response {
    let error = req
        .uri()
        .query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .and_then(|q| q.into_iter().find(|(k, _)| k == "error").map(|(_, v)| v));
    login_form(&api, error.as_deref(), StatusCode::OK)
}

fn login_form(api: &Api, error: Option<&str>, status: StatusCode) -> Response {
    let token = session::random_token();
    match render(
        "login.html",
        minijinja::context! { prefix => prefix(api), csrf => token.clone(), error => error },
    ) {
        Ok(mut resp) => {
            *resp.status_mut() = status;
            resp.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(api, LOGIN_COOKIE, token, Some(TimeDelta::hours(1))),
            );
            resp
        }
        Err(e) => e.into_response(),
    }
}

async fn login(State(api): State<Api>, req: Request) -> Response {
    let expected = cookie_value(req.headers(), LOGIN_COOKIE).unwrap_or_default();
    let (_, form) = match read_form(req).await {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    if expected.is_empty() || !tokens_equal(form.get(CSRF_FIELD).unwrap_or(""), &expected) {
        return PageError::forbidden(
            "this login form is not from this browser's visit (CSRF token missing or wrong); reload the page",
        )
        .into_response();
    }
    let key = form.get("key").unwrap_or("").trim();
    let pool = &api.services().pool;
    match session::open(pool, key, api.config().monitor.session_ttl, Utc::now()).await {
        Ok(opened) => {
            let mut resp = Redirect::to(&prefix(&api)).into_response();
            let h = resp.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(
                    &api,
                    SESSION_COOKIE,
                    opened.secret.expose_secret().to_owned(),
                    Some(api.config().monitor.session_ttl),
                ),
            );
            h.append(
                header::SET_COOKIE,
                set_cookie(&api, LOGIN_COOKIE, String::new(), Some(TimeDelta::zero())),
            );
            tracing::info!(user = %opened.session.principal.user_name, session = %opened.session.id, "monitor: signed in");
            resp
        }
        Err(rainlogs_archive::catalog::account::AuthError::Db(e)) => {
            PageError::from(Problem::of(&e)).into_response()
        }
        Err(e) => {
            use rainlogs_core::error::Classify;
            tracing::warn!(code = e.code(), "monitor: sign-in refused");
            login_form(&api, Some(&e.to_string()), StatusCode::UNAUTHORIZED)
        }
    }
}

async fn logout(State(api): State<Api>, Extension(s): Extension<Session>) -> Response {
    if let Err(e) = session::end(&api.services().pool, &s, Utc::now()).await {
        return PageError::from(Problem::of(&e)).into_response();
    }
    let mut resp = to_login(&api);
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&api, SESSION_COOKIE, String::new(), Some(TimeDelta::zero())),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_posts_are_told_apart_from_same_origin_ones() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert!(cross_site(&h(&[("host", "a.example")])).is_none());
        assert!(cross_site(&h(&[
            ("host", "a.example"),
            ("origin", "https://a.example")
        ]))
        .is_none());
        assert!(cross_site(&h(&[
            ("host", "a.example"),
            ("sec-fetch-site", "same-origin")
        ]))
        .is_none());
        assert!(cross_site(&h(&[
            ("host", "a.example"),
            ("origin", "https://evil.example")
        ]))
        .is_some());
        assert!(cross_site(&h(&[("host", "a.example"), ("origin", "null")])).is_some());
        assert!(cross_site(&h(&[
            ("host", "a.example"),
            ("sec-fetch-site", "cross-site")
        ]))
        .is_some());
        assert!(cross_site(&h(&[
            ("host", "a.example"),
            ("sec-fetch-site", "same-site")
        ]))
        .is_some());
    }

    #[test]
    fn every_template_parses() {
        let env = templates();
        for name in [
            "layout.html",
            "login.html",
            "error.html",
            "overview.html",
            "queue.html",
            "task.html",
            "zones.html",
            "zone.html",
        ] {
            env.get_template(name)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
    }

    #[test]
    fn prefixes_are_checked() {
        let src = |v: &str| ConfigSource::from_pairs([("RAINLOGS_MONITOR_PREFIX", v)]);
        for bad in ["monitor", "/monitor/", "/v1", "/v1/x", "/a b", "/"] {
            assert!(MonitorConfig::from_source(&src(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            MonitorConfig::from_source(&src("/ops/monitor"))
                .unwrap()
                .prefix
                .as_deref(),
            Some("/ops/monitor")
        );
        assert_eq!(
            MonitorConfig::from_source(&src("off")).unwrap().prefix,
            None
        );
    }
}
