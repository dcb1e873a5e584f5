//! The monitor's pages with a million pending tasks (issue 14): time to first byte of
//! the queue overview, of the first, a middle and the last page of the ready list, of
//! a kind filter and of a search by idempotency key, with BENCH_MONITOR_TASKS (default
//! 1,000,000) tasks pending in one queue, served by the API server in this process
//! over a real socket, on the local stack (its own database and Redis prefix, deleted
//! afterwards).
//!
//! ```text
//! bash infra/local/stack.sh up
//! cargo bench -p rainlogs-bench --bench monitor
//! BENCH_MONITOR_TASKS=100000 BENCH_MONITOR_RUNS=50 cargo bench -p rainlogs-bench --bench monitor
//! ```
//! Results are printed; docs/BENCHMARKS.md records them.

use std::time::{Duration, Instant};

use chrono::Utc;
use rainlogs_api::monitor::MonitorConfig;
use rainlogs_api::{Api, ApiConfig, Services};
use rainlogs_archive::catalog::account::{self, Role};
use rainlogs_core::TaskSpec;
use rainlogs_integration_tests::TestEnv;
use secrecy::ExposeSecret;

fn env_or(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Time to the first byte of the answer to GET `url`, and the status.
async fn ttfb(client: &reqwest::Client, url: &str, cookie: &str) -> (Duration, u16) {
    let started = Instant::now();
    let mut resp = client
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .expect("answered");
    let status = resp.status().as_u16();
    let _first = resp.chunk().await.expect("a body");
    let t = started.elapsed();
    while resp.chunk().await.expect("the body").is_some() {}
    (t, status)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let tasks = env_or("BENCH_MONITOR_TASKS", 1_000_000);
    let runs = env_or("BENCH_MONITOR_RUNS", 30);
    let env = TestEnv::new().await;
    let queue = env.app.queue.clone();

    // Tasks as the scheduler sends them: fetches with idempotency keys, in 10 tenants'
    // fairness groups of the backfill lane, plus some of another kind.
    let started = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..tasks {
        let kind = if i % 100 == 0 {
            "prune.run"
        } else {
            "fetch.window"
        };
        let mut spec = TaskSpec::new("bench", kind, serde_json::json!({"window": i}))
            .idempotency_key(format!("fetch:{i}"));
        spec.group = Some(format!("tenant-{}", i % 10));
        spec.priority = Some(rainlogs_core::task::Priority::Backfill);
        batch.push(spec);
        if batch.len() == 10_000 {
            queue
                .enqueue_many(std::mem::take(&mut batch))
                .await
                .expect("enqueue");
        }
    }
    if !batch.is_empty() {
        queue.enqueue_many(batch).await.expect("enqueue");
    }
    let stats = queue.stats("bench").await.expect("stats");
    let info = queue.redis_info().await.expect("info");
    println!(
        "enqueued {} tasks in {:.1} s; ready {}; redis {} using {}",
        tasks,
        started.elapsed().as_secs_f64(),
        stats.depth.ready,
        info.version,
        info.used_memory_human
    );

    let services = Services {
        pool: env.app.pool.clone(),
        store: env.app.store.clone(),
        kms: None,
        cloudflare: env.app.cloudflare.clone(),
        logpull: env.app.logpull.clone(),
        queue: Some(queue.clone()),
    };
    let config = ApiConfig {
        rate_per_sec: 1_000_000,
        rate_burst: 1_000_000,
        monitor: MonitorConfig {
            insecure_cookie: true,
            ..MonitorConfig::default()
        },
        ..ApiConfig::default()
    };
    let api = Api::new(services, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/monitor", listener.local_addr().unwrap());
    let server = tokio::spawn(rainlogs_api::serve(listener, api));

    let pool = &env.app.pool;
    let user = account::add_user(pool, None, "bench", Role::Admin, "bench")
        .await
        .unwrap();
    let key = account::create_key(pool, user, "k", "live", None, Utc::now(), "bench")
        .await
        .unwrap();
    let opened = rainlogs_archive::catalog::session::open(
        pool,
        key.secret.expose_secret(),
        chrono::TimeDelta::hours(1),
        Utc::now(),
    )
    .await
    .unwrap();
    let cookie = format!(
        "{}={}",
        rainlogs_api::monitor::SESSION_COOKIE,
        opened.secret.expose_secret()
    );
    let client = reqwest::Client::new();
    let middle = tasks / 2;
    let last = tasks.saturating_sub(50);
    let pages = [
        ("queues overview", format!("{base}/queues")),
        (
            "ready, first page",
            format!("{base}/queues/bench?state=ready"),
        ),
        (
            "ready, middle page",
            format!("{base}/queues/bench?state=ready&offset={middle}"),
        ),
        (
            "ready, last page",
            format!("{base}/queues/bench?state=ready&offset={last}"),
        ),
        (
            "kind filter (1 in 100)",
            format!("{base}/queues/bench?state=ready&kind=prune.run"),
        ),
        (
            "find by idempotency key",
            format!("{base}/queues/bench?find=fetch:{middle}"),
        ),
    ];
    println!("{runs} runs each, time to first byte (ms):");
    println!("{:<26} {:>8} {:>8} {:>8}", "page", "p50", "p99", "max");
    for (name, url) in &pages {
        // One warm-up (script loading, connection).
        let (_, status) = ttfb(&client, url, &cookie).await;
        assert_eq!(status, 200, "{name}: {url}");
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            times.push(ttfb(&client, url, &cookie).await.0);
        }
        times.sort();
        println!(
            "{:<26} {:>8.1} {:>8.1} {:>8.1}",
            name,
            pct(&times, 0.5),
            pct(&times, 0.99),
            pct(&times, 1.0)
        );
    }
    server.abort();
    let removed = queue.delete_all().await.unwrap_or(0);
    println!("removed {removed} redis keys");
}
