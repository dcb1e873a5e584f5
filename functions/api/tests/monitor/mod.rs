//! The monitor (docs/MONITOR.md) against the real stack: the queue layer's pages and
//! actions on Redis, sessions, CSRF and roles over plain HTTP, and the pages in real
//! headless Chromium driven through WebDriver (`browser`).

mod browser;

use std::collections::HashMap;

use chrono::{TimeDelta, Utc};
use rainlogs_api::monitor::{MonitorConfig, CSRF_FIELD, LOGIN_COOKIE, SESSION_COOKIE};
use rainlogs_api::ApiConfig;
use rainlogs_archive::catalog::account::Role;
use rainlogs_archive::catalog::tenant;
use rainlogs_core::task::TaskSpec;
use rainlogs_dispatcher::queue::{Acted, Queue, Settle, Settlement, TaskState};
use rainlogs_integration_tests::TestEnv;
use reqwest::header;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use super::{insert_zone, test_config, user_key, Server};

/// A monitor config over plain HTTP on the loopback (no `Secure` cookies there for the
/// HTTP client's sake; the browser tests keep them Secure).
pub(crate) fn monitor_config(read_only: bool) -> ApiConfig {
    ApiConfig {
        monitor: MonitorConfig {
            insecure_cookie: true,
            read_only,
            ..MonitorConfig::default()
        },
        ..test_config()
    }
}

/// A dead letter of `queue`: enqueued, reserved and settled dead (as a dispatcher
/// does after the last attempt).
pub(crate) async fn dead_letter(queue: &Queue, name: &str, kind: &str) -> String {
    let env = queue
        .enqueue(TaskSpec::new(name, kind, json!({"n": 1})))
        .await
        .unwrap();
    let reserved = queue
        .reserve(name, 100, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let delivery = reserved
        .deliveries
        .into_iter()
        .find(|d| d.id == env.id.to_string())
        .expect("the task is reserved");
    let letter = rainlogs_dispatcher::queue::DeadLetter {
        id: delivery.id.clone(),
        queue: name.to_owned(),
        raw: String::from_utf8_lossy(&delivery.raw).into_owned(),
        error: rainlogs_core::TaskError::permanent("test.poison", "made to fail by the test"),
        attempts: 1,
        enqueued_at: Some(env.enqueued_at),
        last_attempt_at: Some(Utc::now()),
        dead_at: Utc::now(),
    };
    let applied = queue
        .settle(&[Settle {
            delivery,
            settlement: Settlement::Dead(letter),
        }])
        .await
        .unwrap();
    assert_eq!(applied, vec![true]);
    env.id.to_string()
}

/// A zone of `tenant` with planned windows over the last 30 minutes, the oldest
/// `failed` of them failed for good with a reason.
pub(crate) async fn zone_with_failures(env: &TestEnv, tenant: Uuid, failed: i64) -> Uuid {
    let zone = insert_zone(env, tenant).await;
    let pool = &env.app.pool;
    rainlogs_archive::ledger::plan_zone(
        pool,
        zone,
        Utc::now(),
        &rainlogs_archive::ledger::PlanPolicy {
            margin: TimeDelta::minutes(1),
        },
    )
    .await
    .unwrap();
    sqlx::query(
        "UPDATE windows SET state = 'failed_permanent', last_error = 'logpull.forbidden: token refused (test)'
         WHERE id IN (SELECT id FROM windows WHERE zone_id = $1 ORDER BY start_at LIMIT $2)",
    )
    .bind(zone)
    .bind(failed)
    .execute(pool)
    .await
    .unwrap();
    zone
}

/// An HTTP client that keeps the monitor's cookies and follows no redirects.
pub(crate) struct Client {
    base: String,
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

impl Client {
    pub(crate) fn new(server: &Server) -> Self {
        Self {
            base: format!("{}/monitor", server.base),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, resp: &reqwest::Response) -> Vec<String> {
        let set: Vec<String> = resp
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        for c in &set {
            let pair = c.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        set
    }

    pub(crate) async fn get(&mut self, path: &str) -> (StatusCode, String, Option<String>) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header(header::COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(&resp);
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        (status, resp.text().await.unwrap(), location)
    }

    /// POSTs a form, as a same-origin browser would (Origin: this host), unless
    /// `headers` say otherwise.
    pub(crate) async fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> (StatusCode, String, Option<String>, Vec<String>) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header(header::COOKIE, self.cookie_header())
            .form(form);
        let host = self
            .base
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("origin"))
        {
            req = req.header(header::ORIGIN, format!("http://{host}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let set = self.keep(&resp);
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        (status, resp.text().await.unwrap(), location, set)
    }

    /// Signs in with `key`: the login page's token, then the form.
    pub(crate) async fn login(&mut self, key: &str) -> Vec<String> {
        let (status, page, _) = self.get("/login").await;
        assert_eq!(status, StatusCode::OK);
        let csrf = hidden(&page, CSRF_FIELD).expect("login form carries a token");
        let (status, body, location, set) = self
            .post("/login", &[("csrf", &csrf), ("key", key)], &[])
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        assert_eq!(location.as_deref(), Some("/monitor"));
        assert!(self.cookies.contains_key(SESSION_COOKIE));
        set
    }

    /// The session's CSRF token, from a page's sign-out form.
    pub(crate) async fn csrf(&mut self) -> String {
        let (status, page, _) = self.get("/zones").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        hidden(&page, CSRF_FIELD).expect("pages carry the session's token")
    }
}

/// The value of the first hidden input `name` of `html`.
pub(crate) fn hidden(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_owned())
}

#[tokio::test]
async fn the_queue_layer_pages_finds_and_acts_on_single_tasks() {
    let env = TestEnv::new().await;
    let q = &env.app.queue;
    let name = "mon";
    let mut ids = Vec::new();
    for i in 0..7 {
        let spec = TaskSpec::new(
            name,
            if i % 2 == 0 { "t.even" } else { "t.odd" },
            json!({"i": i}),
        )
        .idempotency_key(format!("key-{i}"));
        ids.push(q.enqueue(spec).await.unwrap().id.to_string());
    }
    let mut later = TaskSpec::new(name, "t.later", json!({}));
    later.not_before = Some(Utc::now() + TimeDelta::hours(1));
    let later = q.enqueue(later).await.unwrap().id.to_string();

    // Pages in serving order (oldest first), with the total and where to go on.
    let p1 = q.page(name, TaskState::Ready, 0, 3).await.unwrap();
    assert_eq!(p1.total, 7);
    assert_eq!(
        p1.tasks.iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
        ids[..3]
    );
    assert_eq!(p1.next_offset, Some(3));
    let p3 = q.page(name, TaskState::Ready, 6, 3).await.unwrap();
    assert_eq!(p3.tasks.len(), 1);
    assert_eq!(p3.next_offset, None);
    let odd = q
        .page_of_kind(name, TaskState::Ready, "t.odd", 0, 2)
        .await
        .unwrap();
    assert_eq!(
        odd.tasks.iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
        [ids[1].clone(), ids[3].clone()]
    );
    let delayed = q.page(name, TaskState::Delayed, 0, 10).await.unwrap();
    assert_eq!(
        (delayed.total, delayed.tasks[0].id.as_str()),
        (1, later.as_str())
    );
    assert!(delayed.tasks[0].at.unwrap() > Utc::now());

    // Found by id and by idempotency key, with the state they are in.
    assert_eq!(
        q.find(name, &ids[2]).await.unwrap().unwrap().state,
        TaskState::Ready
    );
    assert_eq!(
        q.find_by_key(name, "key-4").await.unwrap().unwrap().id,
        ids[4]
    );
    assert!(q
        .find(name, &Uuid::new_v4().to_string())
        .await
        .unwrap()
        .is_none());

    // Delete frees the key; run makes a delayed task ready now.
    assert_eq!(
        q.delete_pending(name, &ids[0]).await.unwrap(),
        Acted::Done(TaskState::Ready)
    );
    assert!(q.find_by_key(name, "key-0").await.unwrap().is_none());
    assert_eq!(q.stats(name).await.unwrap().depth.ready, 6);
    assert_eq!(
        q.run_now(name, &ids[1]).await.unwrap(),
        Acted::NotApplicable(TaskState::Ready)
    );
    assert_eq!(
        q.run_now(name, &later).await.unwrap(),
        Acted::Done(TaskState::Delayed)
    );
    assert_eq!(q.stats(name).await.unwrap().depth.delayed, 0);

    // Cancel a running task: its lease ends, it is a dead letter, its settle refused.
    let reserved = q
        .reserve(name, 1, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let running = reserved.deliveries[0].clone();
    assert_eq!(
        q.find(name, &running.id).await.unwrap().unwrap().state,
        TaskState::Active
    );
    assert_eq!(
        q.cancel(name, &running.id, "test").await.unwrap(),
        Acted::Done(TaskState::Active)
    );
    let dead = q.find(name, &running.id).await.unwrap().unwrap();
    assert_eq!(dead.state, TaskState::Dead);
    assert_eq!(dead.dead.unwrap().error.code, "task.cancelled");
    let settled = q
        .settle(&[Settle {
            delivery: running.clone(),
            settlement: Settlement::Ack { next: vec![] },
        }])
        .await
        .unwrap();
    assert_eq!(settled, vec![false], "a cancelled task's settle is refused");
    let stats = q.stats(name).await.unwrap();
    assert_eq!((stats.depth.active, stats.depth.dead), (0, 1));
    let (redriven, refused) = q.redrive_all(name).await.unwrap();
    assert_eq!((redriven, refused.len()), (1, 0));
    assert_eq!(q.stats(name).await.unwrap().depth.dead, 0);

    // Dispatchers seen lately are listed; one silent for hours is dropped.
    let seen = |ago: TimeDelta, host: &str| rainlogs_dispatcher::queue::Presence {
        id: Uuid::new_v4(),
        host: host.into(),
        pid: 7,
        started_at: Utc::now() - TimeDelta::hours(3),
        seen_at: Utc::now() - ago,
        queues: vec![(name.into(), 8, 6, 2)],
    };
    q.announce(&seen(TimeDelta::seconds(5), "alive"))
        .await
        .unwrap();
    q.announce(&seen(TimeDelta::minutes(5), "quiet"))
        .await
        .unwrap();
    q.announce(&seen(TimeDelta::hours(2), "gone"))
        .await
        .unwrap();
    let listed = q.dispatchers().await.unwrap();
    assert_eq!(
        listed.iter().map(|d| d.host.as_str()).collect::<Vec<_>>(),
        ["alive"]
    );
    assert_eq!(listed[0].queues, vec![(name.to_owned(), 8, 6, 2)]);

    let info = q.redis_info().await.unwrap();
    assert!(!info.version.is_empty() && !info.used_memory_human.is_empty());
}

#[tokio::test]
async fn sessions_csrf_and_cross_site_posts() {
    let env = TestEnv::new().await;
    let server = Server::start(&env, monitor_config(false)).await;
    let (_, admin) = user_key(&env, None, "root", Role::Admin).await;
    dead_letter(&env.app.queue, "default", "t.poison").await;
    let mut c = Client::new(&server);

    // Unauthenticated: every page sends to the login page; actions too.
    for path in ["", "/queues", "/queues/default", "/zones"] {
        let (status, _, location) = c.get(path).await;
        assert_eq!(
            (status, location.as_deref()),
            (StatusCode::SEE_OTHER, Some("/monitor/login")),
            "{path}"
        );
    }
    let (status, _, location, _) = c.post("/queues/default/pause", &[("csrf", "x")], &[]).await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/monitor/login"))
    );

    // A wrong key answers the form again; the login form needs its own token.
    let (_, page, _) = c.get("/login").await;
    let token = hidden(&page, CSRF_FIELD).unwrap();
    assert!(c.cookies.contains_key(LOGIN_COOKIE));
    let (status, page, _, _) = c
        .post("/login", &[("csrf", &token), ("key", "rl_test_nope")], &[])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("not a Rainlogs API key"), "{page}");
    let (status, ..) = c
        .post("/login", &[("csrf", "forged"), ("key", &admin)], &[])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A cross-site form post is refused before anything reads it, login included.
    let (_, page, _) = c.get("/login").await;
    let token = hidden(&page, CSRF_FIELD).unwrap();
    for headers in [
        vec![("origin", "http://evil.example")],
        vec![("sec-fetch-site", "cross-site")],
        vec![("origin", "null")],
    ] {
        let (status, body, ..) = c
            .post("/login", &[("csrf", &token), ("key", &admin)], &headers)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{headers:?}");
        assert!(body.contains("cross-site"), "{body}");
    }

    // Signed in: the cookie is HttpOnly, SameSite=Strict, scoped to the prefix.
    let set = c.login(&admin).await;
    let session = set.iter().find(|s| s.starts_with(SESSION_COOKIE)).unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/monitor"] {
        assert!(session.contains(flag), "{session}");
    }
    assert!(!session.contains(&admin), "the cookie never holds the key");
    let (status, page, _) = c.get("/queues").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("data-queue=\"default\""), "{page}");

    // An action without the session's token, or from another site, changes nothing.
    let csrf = c.csrf().await;
    let (status, ..) = c
        .post(
            "/queues/default/pause",
            &[("csrf", "0".repeat(64).as_str())],
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, ..) = c.post("/queues/default/pause", &[], &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, ..) = c
        .post(
            "/queues/default/pause",
            &[("csrf", &csrf)],
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!env.app.queue.stats("default").await.unwrap().paused);
    // With it: done, and audited.
    let (status, _, location, _) = c
        .post("/queues/default/pause", &[("csrf", &csrf)], &[])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(location.unwrap().starts_with("/monitor/queues?note="));
    assert!(env.app.queue.stats("default").await.unwrap().paused);
    let audited: Vec<(String, String)> = sqlx::query_as(
        "SELECT operation, actor FROM audit_events WHERE operation LIKE 'queue.%' OR operation LIKE 'session.%' ORDER BY id",
    )
    .fetch_all(&env.app.pool)
    .await
    .unwrap();
    assert_eq!(
        audited.iter().map(|(o, _)| o.as_str()).collect::<Vec<_>>(),
        ["session.open", "queue.pause"]
    );
    assert_eq!(audited[1].1, "api:root@provider:admin");

    // Signed out: the session is over, its cookie no longer works.
    let old = c.cookies.clone();
    let (status, _, location, _) = c.post("/logout", &[("csrf", &csrf)], &[]).await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/monitor/login"))
    );
    c.cookies = old;
    let (status, _, location) = c.get("/queues").await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/monitor/login"))
    );

    // A revoked key ends its sessions at once.
    let mut c2 = Client::new(&server);
    c2.login(&admin).await;
    sqlx::query("UPDATE api_keys SET revoked_at = now()")
        .execute(&env.app.pool)
        .await
        .unwrap();
    let (status, _, _) = c2.get("/queues").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_viewer_sees_but_cannot_act_and_read_only_mode_refuses_everyone() {
    let env = TestEnv::new().await;
    let server = Server::start(&env, monitor_config(false)).await;
    let acme = tenant::add(&env.app.pool, "acme", 400).await.unwrap();
    let other = tenant::add(&env.app.pool, "other", 400).await.unwrap();
    let zone = zone_with_failures(&env, acme, 3).await;
    let hidden_zone = insert_zone(&env, other).await;
    dead_letter(&env.app.queue, "default", "t.poison").await;
    let (_, viewer) = user_key(&env, None, "watcher", Role::Viewer).await;
    let (_, tenant_op) = user_key(&env, Some("acme"), "alice", Role::Operator).await;

    let mut v = Client::new(&server);
    v.login(&viewer).await;
    // The home page sends a viewer to the zones (queues need pipeline health).
    let (_, _, location) = v.get("").await;
    assert_eq!(location.as_deref(), Some("/monitor/zones"));
    let (status, page, _) = v.get(&format!("/zones/{zone}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("logpull.forbidden: token refused (test)"),
        "failures with reasons"
    );
    assert!(
        page.contains("class=\"cell failed\""),
        "the strip shows failed hours"
    );
    assert!(!page.contains("retry-failed"), "no button for a viewer");
    let (status, ..) = v.get("/queues").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let csrf = v.csrf().await;
    let (status, ..) = v
        .post(
            &format!("/zones/{zone}/retry-failed"),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, ..) = v
        .post("/queues/default/pause", &[("csrf", &csrf)], &[])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM windows WHERE zone_id = $1 AND state = 'failed_permanent'",
    )
    .bind(zone)
    .fetch_one(&env.app.pool)
    .await
    .unwrap();
    assert_eq!(failed, 3);

    // A tenant's operator acts on its own zones only; other tenants' are unknown.
    let mut o = Client::new(&server);
    o.login(&tenant_op).await;
    let (_, page, _) = o.get("/zones").await;
    assert!(page.contains(&zone.to_string()) && !page.contains(&hidden_zone.to_string()));
    let (status, ..) = o.get(&format!("/zones/{hidden_zone}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, ..) = o.get("/queues").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "queues are provider-wide");
    let csrf = o.csrf().await;
    let (_, page, _) = o.get(&format!("/zones/{zone}")).await;
    assert!(page.contains("id=\"retry-failed\""));
    let (status, _, location, _) = o
        .post(
            &format!("/zones/{zone}/retry-failed"),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(location.unwrap().contains("3+failed+windows+re-planned"));
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE operation = 'zone.retry_failed' AND actor = 'api:alice@acme:operator'")
        .fetch_one(&env.app.pool)
        .await
        .unwrap();
    assert_eq!(audited, 1);

    // Read-only mode: no buttons, and every action refused, whatever the role.
    let ro = Server::start(&env, monitor_config(true)).await;
    let (_, admin) = user_key(&env, None, "root", Role::Admin).await;
    let mut a = Client::new(&ro);
    a.login(&admin).await;
    let (_, page, _) = a.get("/queues").await;
    assert!(
        page.contains("read-only") && !page.contains("class=\"pause\""),
        "{page}"
    );
    let (_, page, _) = a.get("/queues/default?state=dead").await;
    assert!(page.contains("t.poison") && !page.contains("redrive-all"));
    let csrf = a.csrf().await;
    let (status, ..) = a
        .post("/queues/default/dead/redrive", &[("csrf", &csrf)], &[])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(env.app.queue.stats("default").await.unwrap().depth.dead, 1);
}
