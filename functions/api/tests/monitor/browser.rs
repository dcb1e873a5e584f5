//! The monitor in real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! installed by `infra/dev/browser.sh`, which `infra/test.sh` runs), driven through
//! WebDriver (fantoccini) against the API server on the real stack: sign in, see the
//! queues and zones, re-drive a dead letter, pause and resume a queue, open a zone's
//! coverage, retry its failed windows; a viewer gets no buttons.
//!
//! With `RAINLOGS_MONITOR_SCREENSHOTS=DIR` it also saves screenshots of the main pages
//! there (docs/monitor/ holds the committed ones).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use rainlogs_api::monitor::MonitorConfig;
use rainlogs_api::ApiConfig;
use rainlogs_archive::catalog::account::Role;
use rainlogs_archive::catalog::tenant;
use rainlogs_core::task::TaskSpec;
use rainlogs_integration_tests::TestEnv;
use serde_json::json;

use super::{dead_letter, zone_with_failures};
use crate::{test_config, user_key, Server};

const DEADLINE: Duration = Duration::from_secs(30);

/// A chromedriver child on a free port, stopped on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("chromedriver does not start ({e}): install Debian's chromium and chromium-driver with `bash infra/dev/browser.sh`")
            });
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < DEADLINE,
                "chromedriver did not listen within {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--lang=en-US"],
            }),
        );
        // Two rustls providers are linked (ring, aws-lc-rs): pick one (an error only
        // says one was picked already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = ClientBuilder::rustls().expect("rustls");
        builder.capabilities(caps);
        builder
            .connect(&self.url)
            .await
            .expect("a chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the current page's source holds `needle`.
async fn wait_for_text(b: &Client, needle: &str) -> String {
    let started = Instant::now();
    loop {
        let src = b.source().await.unwrap();
        if src.contains(needle) {
            return src;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "page never showed {needle:?}:\n{src}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn click(b: &Client, css: &str) {
    b.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Clicks a button that asks first (the monitor's script), and says yes.
async fn click_confirmed(b: &Client, css: &str) {
    click(b, css).await;
    let started = Instant::now();
    while b.accept_alert().await.is_err() {
        assert!(
            started.elapsed() < DEADLINE,
            "no confirmation asked for {css}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sign_in(b: &Client, base: &str, key: &str) {
    b.goto(&format!("{base}/monitor/queues")).await.unwrap();
    // Unauthenticated: the login page.
    assert!(b
        .current_url()
        .await
        .unwrap()
        .as_str()
        .ends_with("/monitor/login"));
    b.find(Locator::Id("key"))
        .await
        .unwrap()
        .send_keys(key)
        .await
        .unwrap();
    click(b, "#sign-in").await;
    wait_for_text(b, "Sign out").await;
}

async fn shot(b: &Client, name: &str) {
    let Ok(dir) = std::env::var("RAINLOGS_MONITOR_SCREENSHOTS") else {
        return;
    };
    let png = b.screenshot().await.unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(format!("{dir}/{name}.png"), png).unwrap();
}

#[tokio::test]
async fn in_chromium_an_operator_signs_in_redrives_pauses_and_retries_and_a_viewer_cannot() {
    let env = TestEnv::new().await;
    // Secure cookies as in production (Chromium keeps them on http://127.0.0.1).
    let config = ApiConfig {
        monitor: MonitorConfig::default(),
        ..test_config()
    };
    let server = Server::start(&env, config).await;
    let base = server.base.clone();
    let acme = tenant::add(&env.app.pool, "acme", 400).await.unwrap();
    let zone = zone_with_failures(&env, acme, 4).await;
    let q = &env.app.queue;
    let dead = dead_letter(q, "default", "prune.run").await;
    for i in 0..3 {
        q.enqueue(
            TaskSpec::new("default", "fetch.window", json!({"window": i}))
                .idempotency_key(format!("window:{i}")),
        )
        .await
        .unwrap();
    }
    let (_, admin) = user_key(&env, None, "root", Role::Operator).await;
    let (_, viewer) = user_key(&env, None, "watcher", Role::Viewer).await;

    let driver = Driver::start();
    let b = driver.browser().await;
    b.goto(&format!("{base}/monitor")).await.unwrap();
    wait_for_text(&b, "API key").await;
    shot(&b, "login").await;
    sign_in(&b, &base, &admin).await;

    // The queues, with their counts.
    b.goto(&format!("{base}/monitor/queues")).await.unwrap();
    let page = wait_for_text(&b, "data-queue=\"default\"").await;
    assert!(page.contains("Dispatchers") && page.contains("version"));
    shot(&b, "queues").await;

    // A dead letter, re-driven: it leaves the dead state and is ready again.
    b.goto(&format!("{base}/monitor/queues/default?state=dead"))
        .await
        .unwrap();
    wait_for_text(&b, &dead).await;
    shot(&b, "dead-letters").await;
    click(&b, &format!("tr[data-task=\"{dead}\"] button.redrive")).await;
    wait_for_text(&b, "re-driven").await;
    assert_eq!(q.stats("default").await.unwrap().depth.dead, 0);
    b.goto(&format!("{base}/monitor/queues/default/tasks/{dead}"))
        .await
        .unwrap();
    let page = wait_for_text(&b, "id=\"task-state\"").await;
    assert!(page.contains("id=\"task-state\">ready<"), "{page}");
    shot(&b, "task").await;
    b.goto(&format!("{base}/monitor/queues/default?state=ready"))
        .await
        .unwrap();
    wait_for_text(&b, "window:2").await;
    shot(&b, "ready-tasks").await;

    // Pause and resume the queue.
    b.goto(&format!("{base}/monitor/queues")).await.unwrap();
    click_confirmed(&b, "tr[data-queue=\"default\"] button.pause").await;
    wait_for_text(&b, "queue default paused").await;
    assert!(q.stats("default").await.unwrap().paused);
    click_confirmed(&b, "tr[data-queue=\"default\"] button.resume").await;
    wait_for_text(&b, "queue default resumed").await;
    assert!(!q.stats("default").await.unwrap().paused);

    // The zones, a zone's coverage, and a retry of its failed windows.
    click(&b, "#nav-zones").await;
    wait_for_text(&b, &zone.to_string()).await;
    shot(&b, "zones").await;
    b.goto(&format!("{base}/monitor/zones/{zone}"))
        .await
        .unwrap();
    let page = wait_for_text(&b, "id=\"strip-hours\"").await;
    assert!(page.contains("cell failed") && page.contains("token refused (test)"));
    shot(&b, "zone").await;
    click_confirmed(&b, "#retry-failed").await;
    wait_for_text(&b, "4 failed windows re-planned").await;
    let failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM windows WHERE zone_id = $1 AND state = 'failed_permanent'",
    )
    .bind(zone)
    .fetch_one(&env.app.pool)
    .await
    .unwrap();
    assert_eq!(failed, 0);

    // Phone-sized: the same pages, tables scroll inside the page.
    b.set_window_size(390, 844).await.unwrap();
    b.goto(&format!("{base}/monitor/queues")).await.unwrap();
    wait_for_text(&b, "data-queue=\"default\"").await;
    shot(&b, "queues-phone").await;
    b.set_window_size(1280, 900).await.unwrap();

    // Sign out; then a viewer: sees the zone, no buttons.
    click(&b, "#logout").await;
    wait_for_text(&b, "id=\"login-form\"").await;
    sign_in(&b, &base, &viewer).await;
    b.goto(&format!("{base}/monitor/zones/{zone}"))
        .await
        .unwrap();
    let page = wait_for_text(&b, "id=\"strip-hours\"").await;
    assert!(!page.contains("retry-failed") && !page.contains("button class=\"pause\""));
    b.goto(&format!("{base}/monitor/queues")).await.unwrap();
    wait_for_text(&b, "403").await;
    b.close().await.unwrap();
}
