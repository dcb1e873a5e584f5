//! The HTTP API against the real stack (a TestEnv's own database, Redis prefix and
//! bucket prefix), served on 127.0.0.1:0 and called through a real HTTP client:
//! the authorization matrix generated from the route table, problem+json for bad
//! input, refused keys, the rate limit, and the flow from a bootstrapped admin to a
//! zone's windows. The monitor's tests (`monitor`) share this binary and its server.

mod content;
mod monitor;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use rainlogs_api::routes::{Route, Scope, ROUTES};
use rainlogs_api::{Api, ApiConfig, Services};
use rainlogs_archive::catalog::account::{self, Role};
use rainlogs_archive::catalog::tenant;
use rainlogs_integration_tests::TestEnv;
use rainlogs_kms::{KmsService, MasterKeyring};
use rainlogs_logpull_sim::{SimConfig, Simulator};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use uuid::Uuid;

const MASTER: &str = "1:4141414141414141414141414141414141414141414141414141414141414141";
const CF_TOKEN: &str = "api-test-cloudflare-token";

/// A running API over a test environment.
struct Server {
    base: String,
    client: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(env: &TestEnv, config: ApiConfig) -> Self {
        let pool = env.app.pool.clone();
        let kms = KmsService::new(
            pool.clone(),
            MasterKeyring::parse(MASTER, None).unwrap(),
            "api",
        );
        let services = Services {
            pool,
            store: env.app.store.clone(),
            kms: Some(Arc::new(kms)),
            cloudflare: env.app.cloudflare.clone(),
            logpull: env.app.logpull.clone(),
            queue: Some(env.app.queue.clone()),
        };
        let api = Api::new(services, config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            rainlogs_api::serve(listener, api).await.expect("serve");
        });
        Self {
            base,
            client: reqwest::Client::new(),
            task,
        }
    }

    async fn call(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request answered");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn test_config() -> ApiConfig {
    ApiConfig {
        rate_per_sec: 10_000,
        rate_burst: 10_000,
        key_env: "test".into(),
        allow_simulator: true,
        ..ApiConfig::default()
    }
}

/// A user with `role` (of `tenant`, or provider-wide) and its key.
async fn user_key(env: &TestEnv, tenant: Option<&str>, name: &str, role: Role) -> (Uuid, String) {
    let pool = &env.app.pool;
    let user = account::add_user(pool, tenant, name, role, "test")
        .await
        .unwrap();
    let key = account::create_key(pool, user, "k", "test", None, Utc::now(), "test")
        .await
        .unwrap();
    (user, key.secret.expose_secret().to_owned())
}

/// A zone row of `tenant` (fixture: the matrix needs zones, not their pipeline).
async fn insert_zone(env: &TestEnv, tenant: Uuid) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO zones (id, tenant_id, cf_zone_id, name, cadence_seconds, backfill_from)
         VALUES ($1, $2, $3, $4, 60, now() - interval '30 minutes')",
    )
    .bind(id)
    .bind(tenant)
    .bind(id.simple().to_string())
    .bind(format!("zone-{id}.example"))
    .execute(&env.app.pool)
    .await
    .unwrap();
    id
}

/// What one side of the matrix holds: a tenant, a zone, a user and a key of it.
struct Side {
    tenant: Uuid,
    zone: Uuid,
    user: Uuid,
    key: Uuid,
    /// The user the disable route disables (the others' key routes need theirs live).
    doomed: Uuid,
    /// An archived window of the zone, its object in the bucket (bytes, not a sealed
    /// object: the download hands out what is stored).
    window: i64,
    /// An erasure request of the tenant awaiting confirmation (the matrix confirms it
    /// with a wrong token: reaching the check is what authorization allows).
    erasure: Uuid,
}

async fn side(env: &TestEnv, name: &str, sim: &str) -> Side {
    let tenant = tenant::create(&env.app.pool, name, 400, "test")
        .await
        .unwrap();
    let zone = insert_zone(env, tenant).await;
    // Its endpoint is the simulator: replacing its token probes there.
    sqlx::query("UPDATE zones SET endpoint = 'simulator', simulator_url = $2 WHERE id = $1")
        .bind(zone)
        .bind(sim)
        .execute(&env.app.pool)
        .await
        .unwrap();
    let (user, _) = user_key(env, Some(name), "target", Role::Viewer).await;
    let key = account::list_keys(&env.app.pool, Some(user), None)
        .await
        .unwrap()[0]
        .id;
    let (doomed, _) = user_key(env, Some(name), "doomed", Role::Viewer).await;
    let object_key = env.app.store.full_key(&format!("matrix/{zone}.sealed"));
    env.app
        .store
        .root()
        .put(&object_key, axum::body::Bytes::from_static(b"sealed bytes"))
        .await
        .unwrap();
    let window: i64 = sqlx::query_scalar(
        "INSERT INTO windows (zone_id, start_at, end_at, state)
         VALUES ($1, now() - interval '20 minutes', now() - interval '19 minutes', 'archived')
         RETURNING id",
    )
    .bind(zone)
    .fetch_one(&env.app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO archived_objects (window_id, object_key, size_bytes, object_sha256,
           plaintext_sha256, plaintext_bytes, record_count, key_version)
         VALUES ($1, $2, 12, $3, $3, 0, 0, 1)",
    )
    .bind(window)
    .bind(&object_key)
    .bind(vec![7u8; 32])
    .execute(&env.app.pool)
    .await
    .unwrap();
    let erasure = rainlogs_archive::gdpr::request_erasure(
        &env.app.pool,
        tenant,
        "test",
        "matrix fixture",
        Utc::now(),
    )
    .await
    .unwrap()
    .id;
    Side {
        tenant,
        zone,
        user,
        key,
        doomed,
        window,
        erasure,
    }
}

/// The request the matrix sends for `route` against `side`; every route needs one.
fn request_for(route: &Route, side: &Side, sim: &str, n: usize) -> (String, Option<Value>) {
    let (t, z, k) = (side.tenant, side.zone, side.key);
    let u = if route.path.ends_with("/disable") {
        side.doomed
    } else {
        side.user
    };
    let path = route
        .path
        .replace("{tenant}", &t.to_string())
        .replace("{zone}", &z.to_string())
        .replace("{user}", &u.to_string())
        .replace("{key}", &k.to_string())
        .replace("{window}", &side.window.to_string())
        .replace("{request}", &side.erasure.to_string());
    let path = if route.path.ends_with("/logs") {
        format!("{path}?from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z")
    } else {
        path
    };
    let body = match (route.method, route.path) {
        ("POST", "/v1/tenants") => Some(json!({"name": format!("matrix-{n}")})),
        ("PATCH", "/v1/tenants/{tenant}") => Some(json!({"legal_hold": false})),
        ("POST", "/v1/tenants/{tenant}/zones") => Some(json!({
            "cf_zone_id": format!("{:032x}", n as u128 + 1), "name": format!("z{n}.example"),
            "token": CF_TOKEN, "simulator_url": sim,
        })),
        ("POST", "/v1/tenants/{tenant}/verify") => Some(json!({})),
        ("POST", "/v1/tenants/{tenant}/users") => {
            Some(json!({"name": format!("u{n}"), "role": "viewer"}))
        }
        ("PATCH", "/v1/zones/{zone}") => Some(json!({"legal_hold": true})),
        ("PUT", "/v1/zones/{zone}/mode") => Some(json!({"mode": "pull"})),
        ("PUT", "/v1/zones/{zone}/token") => Some(json!({"token": CF_TOKEN})),
        ("POST", "/v1/zones/{zone}/retry-failed") => Some(json!({})),
        ("POST", "/v1/users/{user}/keys") => Some(json!({"name": format!("k{n}")})),
        ("POST", "/v1/tenants/{tenant}/key-export") => Some(json!({})),
        ("POST", "/v1/tenants/{tenant}/gdpr/search") => Some(json!({
            "matches": ["ClientIP=192.0.2.1"],
            "from": "2026-01-01T00:00:00Z", "to": "2026-01-01T01:00:00Z",
        })),
        ("POST", "/v1/tenants/{tenant}/gdpr/erasures") => {
            Some(json!({"reason": format!("matrix {n}")}))
        }
        ("POST", "/v1/tenants/{tenant}/gdpr/erasures/{request}/confirm") => {
            Some(json!({"confirm_token": "rle_not_the_token"}))
        }
        ("GET", _)
        | ("POST", "/v1/zones/{zone}/pause")
        | ("POST", "/v1/zones/{zone}/resume")
        | ("POST", "/v1/users/{user}/disable")
        | ("POST", "/v1/keys/{key}/revoke") => None,
        _ => panic!(
            "no matrix request for {} {}: add one (and its rule in routes::ROUTES)",
            route.method, route.path
        ),
    };
    (path, body)
}

/// What the rule of `route` says a caller with `role` (of tenant A, or provider-wide)
/// gets for a resource of A (`own`) or of B.
fn expected(route: &Route, role: Role, provider: bool, own: bool) -> Result<(), StatusCode> {
    let Some(permission) = route.permission else {
        return Ok(());
    };
    if !role.grants(permission) {
        return Err(StatusCode::FORBIDDEN);
    }
    match route.scope {
        Scope::Provider if !provider => Err(StatusCode::FORBIDDEN),
        Scope::Tenant if !provider && !own => Err(StatusCode::NOT_FOUND),
        _ => Ok(()),
    }
}

/// Routes whose allowed callers reach a check of the request's own state rather than a
/// 2xx: a confirmation with a wrong token; an erasure request once the matrix has put a
/// legal hold on the zone (the PATCH route runs before).
fn passed_authorization(route: &Route, status: StatusCode, answer: &Value) -> bool {
    match (route.method, route.path) {
        ("POST", "/v1/tenants/{tenant}/gdpr/erasures/{request}/confirm") => {
            status == StatusCode::UNPROCESSABLE_ENTITY && answer["code"] == "gdpr.bad_token"
        }
        ("POST", "/v1/tenants/{tenant}/gdpr/erasures") => {
            status == StatusCode::CONFLICT && answer["code"] == "gdpr.legal_hold"
        }
        _ => false,
    }
}

#[tokio::test]
async fn authorization_matrix_follows_the_route_table() {
    let env = TestEnv::new().await;
    let server = Server::start(&env, test_config()).await;
    let sim = Simulator::start_local(SimConfig {
        tokens: vec![CF_TOKEN.to_owned()],
        ..SimConfig::default()
    })
    .await
    .unwrap();

    // The route table and the OpenAPI document list the same operations.
    let (status, doc) = server
        .call(None, Method::GET, "/v1/openapi.json", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let ruled: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(
        documented, ruled,
        "every documented route has a rule, and every rule a documented route"
    );

    let a = side(&env, "tenant-a", &sim.base_url()).await;
    let b = side(&env, "tenant-b", &sim.base_url()).await;
    let mut callers = Vec::new();
    for role in Role::ALL {
        let (_, key) = user_key(&env, Some("tenant-a"), &format!("a-{role}"), role).await;
        callers.push((role, false, key));
        let (_, key) = user_key(&env, None, &format!("p-{role}"), role).await;
        callers.push((role, true, key));
    }

    let mut n = 0;
    let mut checked = 0;
    for route in ROUTES {
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        // Without a key: every route but the public ones is 401.
        let (path, body) = request_for(route, &a, &sim.base_url(), n);
        let (status, problem) = server.call(None, method.clone(), &path, body).await;
        if route.permission.is_some() {
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{} {path}: {problem}",
                route.method
            );
            assert_eq!(problem["code"], "auth.missing");
        }
        for (role, provider, key) in &callers {
            for (own, target) in [(true, &a), (false, &b)] {
                n += 1;
                let (path, body) = request_for(route, target, &sim.base_url(), n);
                let (status, answer) = server.call(Some(key), method.clone(), &path, body).await;
                let who = format!(
                    "{} {} as {role} ({}) on {} tenant",
                    route.method,
                    route.path,
                    if *provider {
                        "provider-wide"
                    } else {
                        "of tenant A"
                    },
                    if own { "its own" } else { "another" }
                );
                match expected(route, *role, *provider, own) {
                    Ok(()) => assert!(
                        status.is_success() || passed_authorization(route, status, &answer),
                        "{who}: want 2xx, got {status}: {answer}"
                    ),
                    Err(want) => {
                        assert_eq!(status, want, "{who}: {answer}");
                        assert!(
                            answer["code"].is_string(),
                            "{who}: a problem body: {answer}"
                        );
                    }
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, ROUTES.len() * 16);
    drop(server);
    sim.shutdown().await.unwrap();
    env.teardown().await;
}

#[tokio::test]
async fn bad_input_answers_problem_json_never_a_500() {
    let env = TestEnv::new().await;
    let server = Server::start(
        &env,
        ApiConfig {
            max_body_bytes: 4096,
            ..test_config()
        },
    )
    .await;
    tenant::create(&env.app.pool, "acme", 400, "test")
        .await
        .unwrap();
    let (_, key) = user_key(&env, None, "root", Role::Admin).await;
    let url = |p: &str| format!("{}{p}", server.base);
    let c = &server.client;

    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode, &str)> = vec![
        ("malformed JSON", c.post(url("/v1/tenants")).header("content-type", "application/json").body("{\"name\": "),
         StatusCode::BAD_REQUEST, "request.malformed_json"),
        ("wrong type", c.post(url("/v1/tenants")).json(&json!({"name": "x", "retention_days": "many"})),
         StatusCode::UNPROCESSABLE_ENTITY, "request.invalid_body"),
        ("unknown field", c.patch(url("/v1/tenants/acme")).json(&json!({"legal_hold": true, "legalhold": true})),
         StatusCode::UNPROCESSABLE_ENTITY, "request.invalid_body"),
        ("missing field", c.post(url("/v1/tenants")).json(&json!({})),
         StatusCode::UNPROCESSABLE_ENTITY, "request.invalid_body"),
        ("not JSON", c.post(url("/v1/tenants")).header("content-type", "text/plain").body("name=x"),
         StatusCode::UNSUPPORTED_MEDIA_TYPE, "request.unsupported_media_type"),
        ("huge body", c.post(url("/v1/tenants")).header("content-type", "application/json")
            .body(format!("{{\"name\": \"{}\"}}", "x".repeat(64 * 1024))),
         StatusCode::PAYLOAD_TOO_LARGE, "request.too_large"),
        ("bad page token", c.get(url("/v1/tenants?page_token=not-a-token")),
         StatusCode::BAD_REQUEST, "request.invalid_page_token"),
        ("page token of another listing", c.get(url("/v1/tenants/acme/audit-events?page_token=eyJ2IjoxLCJsIjoidGVuYW50cyIsImYiOiIwMDAwMDAwMDAwMDAwMDAwIiwiYyI6ImEifQ")),
         StatusCode::BAD_REQUEST, "request.invalid_page_token"),
        ("negative page size", c.get(url("/v1/tenants?page_size=-3")),
         StatusCode::BAD_REQUEST, "request.invalid_page_size"),
        ("page size of the wrong type", c.get(url("/v1/tenants?page_size=ten")),
         StatusCode::BAD_REQUEST, "request.invalid_query"),
        ("unknown query parameter", c.get(url("/v1/tenants/acme/audit-events?form=2026-01-01T00:00:00Z")),
         StatusCode::BAD_REQUEST, "request.invalid_query"),
        ("bad timestamp", c.get(url("/v1/tenants/acme/audit-events?from=yesterday")),
         StatusCode::BAD_REQUEST, "request.invalid_query"),
        ("user id not a UUID", c.get(url("/v1/users/alice/keys")),
         StatusCode::BAD_REQUEST, "request.invalid_path"),
        ("unknown tenant", c.get(url("/v1/tenants/nobody")),
         StatusCode::NOT_FOUND, "tenant.unknown"),
        ("unknown zone", c.get(url("/v1/zones/0123456789abcdef0123456789abcdef")),
         StatusCode::NOT_FOUND, "zone.unknown"),
        ("short retention unconfirmed", c.patch(url("/v1/tenants/acme")).json(&json!({"retention_days": 30})),
         StatusCode::UNPROCESSABLE_ENTITY, "tenant.short_retention"),
        ("duplicate tenant", c.post(url("/v1/tenants")).json(&json!({"name": "acme"})),
         StatusCode::CONFLICT, "tenant.exists"),
        ("unknown route", c.get(url("/v2/tenants")), StatusCode::NOT_FOUND, "route.not_found"),
        ("wrong method", c.delete(url("/v1/tenants")), StatusCode::METHOD_NOT_ALLOWED, "route.method_not_allowed"),
        ("NUL in a body", c.post(url("/v1/tenants")).json(&json!({"name": "a\u{0}b"})),
         StatusCode::UNPROCESSABLE_ENTITY, "request.nul_character"),
        ("NUL in a path", c.get(url("/v1/tenants/a%00b")), StatusCode::BAD_REQUEST, "request.nul_character"),
        ("NUL in a query", c.get(url("/v1/tenants/acme/audit-events?actor=%00")),
         StatusCode::BAD_REQUEST, "request.nul_character"),
        ("bad role", c.post(url("/v1/tenants/acme/users")).json(&json!({"name": "x", "role": "root"})),
         StatusCode::UNPROCESSABLE_ENTITY, "request.invalid_body"),
    ];
    for (what, req, status, code) in cases {
        let resp = req
            .bearer_auth(&key)
            .header("x-request-id", "case-1")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{what}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{what}"
        );
        assert_eq!(resp.headers()["x-request-id"], "case-1", "{what}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], code, "{what}: {body}");
        assert_eq!(body["status"], status.as_u16(), "{what}");
        assert_eq!(
            body["type"],
            format!("urn:rainlogs:problem:{code}"),
            "{what}"
        );
        assert_eq!(body["request_id"], "case-1", "{what}");
        assert!(!body["detail"].as_str().unwrap().is_empty(), "{what}");
    }
    // A fresh request id when none (or a silly one) is given.
    let resp = c
        .get(url("/v1/health"))
        .header("x-request-id", "has spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(resp.headers()["x-request-id"], "has spaces");
    env.teardown().await;
}

#[tokio::test]
async fn refused_keys_answer_401_and_the_rate_limit_429() {
    let env = TestEnv::new().await;
    let server = Server::start(
        &env,
        ApiConfig {
            rate_per_sec: 1,
            rate_burst: 3,
            ..test_config()
        },
    )
    .await;
    let pool = &env.app.pool;
    tenant::create(pool, "acme", 400, "test").await.unwrap();
    let me = |key: String| {
        let server = &server;
        async move { server.call(Some(&key), Method::GET, "/v1/me", None).await }
    };

    let (user, key) = user_key(&env, Some("acme"), "alice", Role::Viewer).await;
    let (status, body) = me(key.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["role"], "viewer");
    assert_eq!(body["tenant"], "acme");

    let (status, body) = me("rl_test_nonsense".into()).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::UNAUTHORIZED, &json!("auth.malformed"))
    );
    let (unknown, _, _) = account::generate_key("test").unwrap();
    let (status, body) = me(unknown.expose_secret().to_owned()).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::UNAUTHORIZED, &json!("auth.unknown_key"))
    );

    // Expired: a key whose expiry has passed (moved into the past for the test).
    let expiring = account::create_key(
        pool,
        user,
        "short",
        "test",
        Some(Utc::now() + TimeDelta::hours(1)),
        Utc::now(),
        "test",
    )
    .await
    .unwrap();
    sqlx::query("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(expiring.key.id)
        .execute(pool)
        .await
        .unwrap();
    let (status, body) = me(expiring.secret.expose_secret().to_owned()).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::UNAUTHORIZED, &json!("auth.key_expired"))
    );
    assert!(!body.to_string().contains(expiring.secret.expose_secret()));

    // Revoked and disabled.
    let revoked = account::create_key(pool, user, "r", "test", None, Utc::now(), "test")
        .await
        .unwrap();
    account::revoke_key(pool, revoked.key.id, "test")
        .await
        .unwrap();
    let (status, body) = me(revoked.secret.expose_secret().to_owned()).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::UNAUTHORIZED, &json!("auth.key_revoked"))
    );
    let (other, other_key) = user_key(&env, Some("acme"), "bob", Role::Admin).await;
    account::disable_user(pool, other, "test").await.unwrap();
    let (status, body) = me(other_key).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::UNAUTHORIZED, &json!("auth.user_disabled"))
    );

    // The rate limit: a burst of 3, then 429 with Retry-After; other keys unaffected.
    let (_, busy) = user_key(&env, Some("acme"), "carol", Role::Viewer).await;
    for _ in 0..3 {
        assert_eq!(me(busy.clone()).await.0, StatusCode::OK);
    }
    let resp = server
        .client
        .get(format!("{}/v1/me", server.base))
        .bearer_auth(&busy)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "auth.rate_limited");
    env.teardown().await;
}

#[tokio::test]
async fn a_bootstrapped_admin_builds_a_tenant_whose_operator_adds_a_zone_and_lists_its_windows() {
    let env = TestEnv::new().await;
    let server = Server::start(&env, test_config()).await;
    let sim = Simulator::start_local(SimConfig {
        tokens: vec![CF_TOKEN.to_owned()],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    // Bootstrap: what `rainlogs user add root --provider --role admin` and
    // `rainlogs key create --user root` call.
    let (_, root) = user_key(&env, None, "root", Role::Admin).await;

    let (status, t) = server
        .call(
            Some(&root),
            Method::POST,
            "/v1/tenants",
            Some(json!({"name": "acme", "retention_days": 400})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    assert_eq!(t["retention_days"], 400);
    let (status, alice) = server
        .call(
            Some(&root),
            Method::POST,
            "/v1/tenants/acme/users",
            Some(json!({"name": "alice", "role": "operator"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{alice}");
    let alice_id = alice["id"].as_str().unwrap();
    let (status, created) = server
        .call(
            Some(&root),
            Method::POST,
            &format!("/v1/users/{alice_id}/keys"),
            Some(json!({"name": "laptop"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let alice_key = created["secret"].as_str().unwrap().to_owned();
    assert!(alice_key.starts_with("rl_test_"));
    // The secret is shown once: listing keys never has it.
    let (_, keys) = server
        .call(
            Some(&root),
            Method::GET,
            &format!("/v1/users/{alice_id}/keys"),
            None,
        )
        .await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    assert!(!keys.to_string().contains(&alice_key));

    // The operator adds a zone against the Logpull simulator; its token is never echoed.
    let cf = "0123456789abcdef0123456789abcdef";
    let new_zone = json!({"cf_zone_id": cf, "name": "acme.example", "token": CF_TOKEN,
                          "simulator_url": sim.base_url(), "backfill_minutes": 30});
    let (status, zone) = server
        .call(
            Some(&alice_key),
            Method::POST,
            "/v1/tenants/acme/zones",
            Some(new_zone.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{zone}");
    assert!(!zone.to_string().contains(CF_TOKEN));
    assert_eq!(zone["has_token"], true);
    let zone_id: Uuid = zone["id"].as_str().unwrap().parse().unwrap();

    // A wrong token is refused by the zone's endpoint; nothing is stored.
    let mut wrong = new_zone.clone();
    wrong["cf_zone_id"] = json!("fedcba9876543210fedcba9876543210");
    wrong["token"] = json!("not-the-token");
    let (status, problem) = server
        .call(
            Some(&alice_key),
            Method::POST,
            "/v1/tenants/acme/zones",
            Some(wrong),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["code"], "zone.token_refused");
    assert!(!problem.to_string().contains("not-the-token"));

    // The scheduler plans its windows (here called directly); the API pages through them.
    let planned = rainlogs_archive::ledger::plan_zone(
        &env.app.pool,
        zone_id,
        Utc::now(),
        &rainlogs_archive::ledger::PlanPolicy::same_clock(),
    )
    .await
    .unwrap();
    assert!(planned >= 20, "{planned}");
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let (status, page) = server
            .call(
                Some(&alice_key),
                Method::GET,
                &format!("/v1/zones/{cf}/windows?page_size=7&page_token={token}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for w in page["windows"].as_array().unwrap() {
            assert_eq!(w["state"], "planned");
            seen.push(w["id"].as_i64().unwrap());
        }
        token = page["next_page_token"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len() as u64, planned);
    assert!(seen.windows(2).all(|w| w[0] != w[1]), "no window twice");
    let (status, coverage) = server
        .call(
            Some(&alice_key),
            Method::GET,
            &format!("/v1/zones/{zone_id}/coverage"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{coverage}");
    assert_eq!(coverage["states"]["planned"].as_u64(), Some(planned));

    // Pipeline health is for provider-wide operators and admins.
    let (status, health) = server
        .call(Some(&root), Method::GET, "/v1/health/pipeline", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert!(health["queues"].is_array(), "{health}");
    assert_eq!(health["stuck"]["windows"], 0, "just planned is not stuck");
    let (status, _) = server
        .call(Some(&alice_key), Method::GET, "/v1/health/pipeline", None)
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a tenant's operator does not see shared queues"
    );

    // The operator may not manage users, nor see another tenant.
    tenant::create(&env.app.pool, "globex", 400, "test")
        .await
        .unwrap();
    let (status, _) = server
        .call(
            Some(&alice_key),
            Method::POST,
            "/v1/tenants/acme/users",
            Some(json!({"name": "eve", "role": "admin"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server
        .call(Some(&alice_key), Method::GET, "/v1/tenants/globex", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, tenants) = server
        .call(Some(&alice_key), Method::GET, "/v1/tenants", None)
        .await;
    assert_eq!(tenants["tenants"].as_array().unwrap().len(), 1);

    // Keys record their last use (alice's has been used by now); expiry must lie ahead.
    let (_, keys) = server
        .call(
            Some(&root),
            Method::GET,
            &format!("/v1/users/{alice_id}/keys"),
            None,
        )
        .await;
    assert!(keys["keys"][0]["last_used_at"].is_string(), "{keys}");
    let (status, problem) = server
        .call(
            Some(&root),
            Method::POST,
            &format!("/v1/users/{alice_id}/keys"),
            Some(json!({"name": "old", "expires_at": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(
        (status, &problem["code"]),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!("key.invalid_expiry")
        )
    );

    // Retention and legal hold are an admin's: of the tenant, and of a zone.
    let (status, _) = server
        .call(
            Some(&alice_key),
            Method::PATCH,
            &format!("/v1/zones/{cf}"),
            Some(json!({"legal_hold": true})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, held) = server
        .call(
            Some(&root),
            Method::PATCH,
            &format!("/v1/zones/{cf}"),
            Some(json!({"legal_hold": true, "retention_days": 500})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{held}");
    assert_eq!(
        (&held["legal_hold"], &held["retention_days"]),
        (&json!(true), &json!(500))
    );

    // Every change is in the audit log: who (and in which role), what, old → new.
    let (status, paused) = server
        .call(
            Some(&alice_key),
            Method::POST,
            &format!("/v1/zones/{zone_id}/pause"),
            None,
        )
        .await;
    assert_eq!((status, &paused["paused"]), (StatusCode::OK, &json!(true)));
    let (status, log) = server
        .call(
            Some(&root),
            Method::GET,
            "/v1/tenants/acme/audit-events?operation=zone.*",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let events = log["events"].as_array().unwrap();
    let ops: Vec<&str> = events
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["zone.pause", "zone.set", "zone.add"], "newest first");
    assert_eq!(events[0]["actor"], "api:alice@acme:operator");
    assert_eq!(
        events[0]["detail"]["paused"],
        json!({"from": false, "to": true})
    );
    let (_, all) = server
        .call(
            Some(&root),
            Method::GET,
            "/v1/tenants/acme/audit-events?page_size=2",
            None,
        )
        .await;
    assert_eq!(all["events"].as_array().unwrap().len(), 2);
    assert!(!all["next_page_token"].as_str().unwrap().is_empty());

    drop(server);
    sim.shutdown().await.unwrap();
    env.teardown().await;
}

/// The `rainlogs-api` binary reads the same env file as every Rainlogs binary, serves
/// on `RAINLOGS_API_ADDR`, refuses a bad setting naming it, and logs failed
/// authentications with their reason but never the presented key.
#[tokio::test]
async fn the_binary_serves_from_the_env_file_names_a_bad_setting_and_logs_no_key() {
    let env = TestEnv::new().await;
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env");
    let mut src = env.src.clone();
    src.set("RAINLOGS_API_RATE_PER_SEC", "0");
    rainlogs_integration_tests::write_env_file(&src, &env_file);
    let run = |file: &std::path::Path| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_rainlogs-api"))
            .env_clear()
            .env("RAINLOGS_ENV_FILE", file)
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("rainlogs-api starts")
    };
    let out = run(&env_file).wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("RAINLOGS_API_RATE_PER_SEC"), "{stderr}");

    // A free port: bound and released (another process could take it between; rare).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    src.remove("RAINLOGS_API_RATE_PER_SEC");
    src.set("RAINLOGS_API_ADDR", addr.to_string());
    rainlogs_integration_tests::write_env_file(&src, &env_file);
    let mut child = run(&env_file);
    // The log goes to stderr: read it as it comes, to look for secrets afterwards.
    let mut stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut text = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
        text
    });
    let client = reqwest::Client::new();
    let health = rainlogs_integration_tests::wait_for(
        "the API answers /v1/health",
        std::time::Duration::from_secs(30),
        || {
            let client = client.clone();
            async move {
                let resp = client
                    .get(format!("http://{addr}/v1/health"))
                    .send()
                    .await
                    .ok()?;
                resp.json::<Value>().await.ok()
            }
        },
    )
    .await;
    assert_eq!(health["status"], "ok");
    let resp = client
        .get(format!("http://{addr}/v1/tenants"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"rainlogs\""
    );
    // Failed authentications are logged with their reason, never the presented key.
    let (unknown, _, _) = account::generate_key("test").unwrap();
    tenant::create(&env.app.pool, "acme", 400, "test")
        .await
        .unwrap();
    let (user, _) = user_key(&env, Some("acme"), "alice", Role::Viewer).await;
    let revoked = account::create_key(&env.app.pool, user, "r", "test", None, Utc::now(), "test")
        .await
        .unwrap();
    account::revoke_key(&env.app.pool, revoked.key.id, "test")
        .await
        .unwrap();
    let secrets = [
        unknown.expose_secret().to_owned(),
        revoked.secret.expose_secret().to_owned(),
        "rl_test_malformed-key-value".to_owned(),
    ];
    for secret in &secrets {
        let resp = client
            .get(format!("http://{addr}/v1/me"))
            .bearer_auth(secret)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    child.kill().await.unwrap();
    let log = log.await.unwrap();
    for code in ["auth.unknown_key", "auth.key_revoked", "auth.malformed"] {
        assert!(log.contains(code), "{code} logged: {log}");
    }
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a presented key in the log: {log}"
        );
        assert!(
            !log.contains(&secret[8..20]),
            "part of a presented key in the log"
        );
    }
    env.teardown().await;
}

/// The Lambda Runtime API, as far as a function uses it: hands out events, collects
/// responses and errors.
mod runtime {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::{get, post};
    use axum::Router;
    use serde_json::Value;

    #[derive(Default)]
    pub struct Runtime {
        pub events: VecDeque<(String, Value)>,
        pub responses: Vec<(String, Value)>,
        pub errors: Vec<String>,
    }

    pub type Shared = Arc<Mutex<Runtime>>;

    async fn next(State(rt): State<Shared>) -> impl IntoResponse {
        // Long-polls as the real API does: answers once there is an event.
        loop {
            if let Some((id, event)) = rt.lock().unwrap().events.pop_front() {
                let mut headers = HeaderMap::new();
                headers.insert(
                    "lambda-runtime-aws-request-id",
                    HeaderValue::from_str(&id).unwrap(),
                );
                let deadline = (chrono::Utc::now().timestamp_millis() + 60_000).to_string();
                headers.insert(
                    "lambda-runtime-deadline-ms",
                    HeaderValue::from_str(&deadline).unwrap(),
                );
                headers.insert(
                    "lambda-runtime-invoked-function-arn",
                    HeaderValue::from_static(
                        "arn:aws:lambda:eu-central-1:000000000000:function:api",
                    ),
                );
                headers.insert(
                    "lambda-runtime-trace-id",
                    HeaderValue::from_static("Root=1-0-0"),
                );
                return (headers, axum::Json(event));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn response(
        State(rt): State<Shared>,
        Path(id): Path<String>,
        body: axum::body::Bytes,
    ) -> StatusCode {
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        rt.lock().unwrap().responses.push((id, value));
        StatusCode::ACCEPTED
    }

    async fn error(State(rt): State<Shared>, body: axum::body::Bytes) -> StatusCode {
        rt.lock()
            .unwrap()
            .errors
            .push(String::from_utf8_lossy(&body).into_owned());
        StatusCode::ACCEPTED
    }

    pub fn router(rt: Shared) -> Router {
        Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(error))
            .with_state(rt)
    }

    /// A function URL event (payload format 2.0).
    pub fn function_url_event(method: &str, path: &str, key: &str, body: Option<&str>) -> Value {
        serde_json::json!({
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": {"authorization": format!("Bearer {key}"), "content-type": "application/json",
                        "host": "abc.lambda-url.eu-central-1.on.aws"},
            "requestContext": {
                "accountId": "anonymous", "apiId": "abc", "domainName": "abc.lambda-url.eu-central-1.on.aws",
                "domainPrefix": "abc",
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "198.51.100.7",
                         "userAgent": "curl/8"},
                "requestId": "req", "routeKey": "$default", "stage": "$default",
                "time": "07/Dec/2026:16:00:00 +0000", "timeEpoch": 1796659200000u64,
            },
            "body": body, "isBase64Encoded": false,
        })
    }
}

/// Under a Lambda runtime (`AWS_LAMBDA_RUNTIME_API`) the binary serves function URL
/// invocations with the same router: authentication, answers and problems alike.
#[tokio::test]
async fn the_binary_serves_function_url_invocations_under_a_lambda_runtime() {
    let env = TestEnv::new().await;
    tenant::create(&env.app.pool, "acme", 400, "test")
        .await
        .unwrap();
    let (_, key) = user_key(&env, Some("acme"), "alice", Role::Admin).await;
    let rt: runtime::Shared = Default::default();
    {
        let mut r = rt.lock().unwrap();
        r.events.push_back((
            "me".into(),
            runtime::function_url_event("GET", "/v1/me", &key, None),
        ));
        r.events.push_back((
            "hidden".into(),
            runtime::function_url_event("GET", "/v1/tenants/globex", &key, None),
        ));
        r.events.push_back((
            "malformed".into(),
            runtime::function_url_event(
                "PATCH",
                "/v1/tenants/acme",
                &key,
                Some("{\"legal_hold\": "),
            ),
        ));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let runtime_addr = listener.local_addr().unwrap();
    let router = runtime::router(rt.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env");
    rainlogs_integration_tests::write_env_file(&env.src, &env_file);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rainlogs-api"))
        .env_clear()
        .env("RAINLOGS_ENV_FILE", &env_file)
        .env("AWS_LAMBDA_RUNTIME_API", runtime_addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "api")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/api")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("rainlogs-api starts");
    let answers = rainlogs_integration_tests::wait_for(
        "three invocations answered",
        std::time::Duration::from_secs(60),
        || {
            let rt = rt.clone();
            async move {
                let r = rt.lock().unwrap();
                assert!(r.errors.is_empty(), "invocation errors: {:?}", r.errors);
                (r.responses.len() == 3).then(|| r.responses.clone())
            }
        },
    )
    .await;
    child.kill().await.unwrap();
    server.abort();
    let body = |i: usize| -> Value {
        serde_json::from_str(answers[i].1["body"].as_str().unwrap()).unwrap()
    };
    assert_eq!(answers[0].0, "me");
    assert_eq!(answers[0].1["statusCode"], 200, "{}", answers[0].1);
    assert_eq!(body(0)["user"], "alice");
    assert_eq!(answers[1].1["statusCode"], 404, "{}", answers[1].1);
    assert_eq!(body(1)["code"], "tenant.unknown");
    assert_eq!(answers[2].1["statusCode"], 400, "{}", answers[2].1);
    assert_eq!(body(2)["code"], "request.malformed_json");
    env.teardown().await;
}
