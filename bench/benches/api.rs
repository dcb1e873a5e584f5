//! The HTTP API (issue 13): authenticated read endpoints' latency (p50/p99/max) at a
//! fixed request rate (an open-loop load generator: requests are sent on schedule
//! whatever the answers take, so queueing shows in the figures); restore throughput
//! through the API against `rainlogs logs get` on the same range; and a data-subject
//! search's scan rate. The API server runs in this process over a real socket, on the
//! local stack (its own database, Redis and bucket prefixes, deleted afterwards), over
//! a zone archived through the pipeline from the Logpull simulator.
//!
//! ```text
//! bash infra/local/stack.sh up
//! cargo bench -p rainlogs-bench --bench api
//! BENCH_API_RATE=400 BENCH_API_SECS=20 BENCH_API_MINUTES=60 BENCH_API_RPM=2000 cargo bench -p rainlogs-bench --bench api
//! ```
//! Results are printed; docs/BENCHMARKS.md records them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rainlogs_api::{Api, ApiConfig, Services};
use rainlogs_archive::catalog::account::{self, Role};
use rainlogs_cli::logs::GetArgs;
use rainlogs_integration_tests::TestEnv;
use rainlogs_kms::{KmsService, MasterKeyring};
use rainlogs_logpull_sim::{SimConfig, Simulator, ZoneVolume};
use secrecy::ExposeSecret;
use uuid::Uuid;

const MASTER: &str = "1:4242424242424242424242424242424242424242424242424242424242424242";
const TOKEN: &str = "bench-token";

fn env_or(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Sends GETs to `paths` in turn, `rate` a second for `secs`, on schedule; prints each
/// path's latency percentiles.
async fn open_loop(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    paths: &[String],
    rate: u64,
    secs: u64,
) {
    let lat: Arc<Mutex<Vec<Vec<Duration>>>> = Arc::new(Mutex::new(vec![Vec::new(); paths.len()]));
    let errors = Arc::new(Mutex::new(0u64));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = rate * secs;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        tick.tick().await;
        let which = (i as usize) % paths.len();
        let url = format!("{base}{}", paths[which]);
        let (client, key, lat, errors) =
            (client.clone(), key.to_owned(), lat.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let ok = match client.get(&url).bearer_auth(&key).send().await {
                Ok(resp) => resp.status().is_success() && resp.bytes().await.is_ok(),
                Err(_) => false,
            };
            let took = t.elapsed();
            if ok {
                lat.lock().unwrap()[which].push(took);
            } else {
                *errors.lock().unwrap() += 1;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let wall = started.elapsed().as_secs_f64();
    println!(
        "read endpoints: {total} requests at {rate}/s offered, {:.0}/s achieved over {wall:.1} s, {} errors",
        total as f64 / wall,
        errors.lock().unwrap()
    );
    let mut all = Vec::new();
    for (path, mut l) in paths.iter().zip(lat.lock().unwrap().iter().cloned()) {
        l.sort();
        println!(
            "  GET {path:<60} n={:<6} p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms",
            l.len(),
            pct(&l, 0.5),
            pct(&l, 0.99),
            pct(&l, 1.0)
        );
        all.extend(l);
    }
    all.sort();
    println!(
        "  all: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(&all, 0.5),
        pct(&all, 0.99),
        pct(&all, 1.0)
    );
}

#[tokio::main]
async fn main() {
    let rate = env_or("BENCH_API_RATE", 200);
    let secs = env_or("BENCH_API_SECS", 10);
    let minutes = env_or("BENCH_API_MINUTES", 60) as i64;
    let rpm = env_or("BENCH_API_RPM", 2000);
    let runs = env_or("BENCH_API_RUNS", 3);

    let mut env = TestEnv::new().await;
    let kms = KmsService::new(
        env.app.pool.clone(),
        MasterKeyring::parse(MASTER, None).unwrap(),
        "bench",
    );
    env.app.kms = Some(kms.clone());
    env.src.set("RAINLOGS_MASTER_KEYS", MASTER);
    let cf = Uuid::new_v4().simple().to_string();
    let sim = Simulator::start_local(SimConfig {
        tokens: vec![TOKEN.to_owned()],
        zones: [(cf.clone(), ZoneVolume::steady(rpm))]
            .into_iter()
            .collect(),
        ..SimConfig::default()
    })
    .await
    .unwrap();

    // A zone archived through the pipeline.
    let flow = rainlogs_cli::demo::FlowZone {
        name: "bench.example".into(),
        cf_zone_id: cf.clone(),
        cadence_seconds: 60,
        backfill_minutes: minutes,
        fields: Vec::new(),
    };
    let source = rainlogs_cli::demo::FlowSource {
        simulator_url: sim.base_url(),
        demo: false,
    };
    let token = secrecy::SecretString::from(TOKEN.to_owned());
    let zone_ids = rainlogs_cli::demo::register(
        &env.app,
        &kms,
        "bench",
        &[flow],
        &source,
        &token,
        Utc::now(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let invoker = Arc::new(env.app.in_process_functions());
    let (_, timed_out) =
        rainlogs_cli::demo::archive(&env.app, invoker, &zone_ids, Duration::from_secs(1800))
            .await
            .unwrap();
    assert!(!timed_out, "archived in time");
    let zone = zone_ids[0];
    let (from, to, windows, raw, sealed): (DateTime<Utc>, DateTime<Utc>, i64, i64, i64) =
        sqlx::query_as(
            "SELECT min(w.start_at), max(w.end_at), count(a.window_id),
                COALESCE(sum(a.plaintext_bytes), 0)::bigint, COALESCE(sum(a.size_bytes), 0)::bigint
         FROM windows w LEFT JOIN archived_objects a ON a.window_id = w.id WHERE w.zone_id = $1",
        )
        .bind(zone)
        .fetch_one(&env.app.pool)
        .await
        .unwrap();
    println!(
        "archived {windows} windows ({minutes} min at {rpm} records/min): {:.1} MB raw NDJSON, {:.1} MB sealed, in {:.1} s",
        raw as f64 / 1e6,
        sealed as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    let services = Services {
        pool: env.app.pool.clone(),
        store: env.app.store.clone(),
        kms: Some(Arc::new(kms.clone())),
        cloudflare: env.app.cloudflare.clone(),
        logpull: env.app.logpull.clone(),
        queue: Some(env.app.queue.clone()),
    };
    let config = ApiConfig {
        rate_per_sec: 1_000_000,
        rate_burst: 1_000_000,
        ..ApiConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(rainlogs_api::serve(listener, Api::new(services, config)));
    let pool = &env.app.pool;
    let user = account::add_user(pool, Some("bench"), "auditor", Role::Auditor, "bench")
        .await
        .unwrap();
    let key = account::create_key(pool, user, "k", "live", None, Utc::now(), "bench")
        .await
        .unwrap();
    let key = key.secret.expose_secret().to_owned();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();

    // 1. Read endpoints at a fixed rate.
    let paths = vec![
        "/v1/me".to_owned(),
        "/v1/tenants/bench".to_owned(),
        format!("/v1/zones/{cf}"),
        format!("/v1/zones/{cf}/windows?page_size=50"),
        format!("/v1/zones/{cf}/coverage"),
        "/v1/tenants/bench/audit-events?page_size=50".to_owned(),
    ];
    open_loop(&client, &base, &key, &paths, rate, secs).await;

    // 2. Restore through the API against `rainlogs logs get`, the same range, alternating.
    let q = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let url = format!("{base}/v1/zones/{cf}/logs?from={}&to={}", q(from), q(to));
    let out = std::env::temp_dir().join(format!("rl-bench-api-{}.ndjson", Uuid::new_v4()));
    let (mut api_t, mut cli_t) = (Vec::new(), Vec::new());
    let mut bytes = 0u64;
    for _ in 0..runs {
        let t = Instant::now();
        let mut resp = client.get(&url).bearer_auth(&key).send().await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        let mut n = 0u64;
        while let Some(chunk) = resp.chunk().await.unwrap() {
            n += chunk.len() as u64;
        }
        api_t.push(t.elapsed().as_secs_f64());
        bytes = n;
        let t = Instant::now();
        let args = GetArgs {
            zone: zone.to_string(),
            from,
            to,
            filters: Vec::new(),
            match_any: false,
            out: Some(out.clone()),
            tenant: None,
            key_file: Vec::new(),
            max_window_mib: 256,
            dataset: "http_requests".into(),
        };
        let stats = rainlogs_cli::logs::get(&env.src, &args).await.unwrap();
        cli_t.push(t.elapsed().as_secs_f64());
        assert_eq!(
            stats.bytes_out, n,
            "the API and the CLI restore the same bytes"
        );
    }
    // The subject: the first record's address (and one that is nowhere).
    let first: serde_json::Value = std::fs::read_to_string(&out)
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| serde_json::from_str(l).ok()))
        .unwrap_or_default();
    let ip = first["ClientIP"].as_str().unwrap_or("192.0.2.1").to_owned();
    let _ = std::fs::remove_file(&out);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, c) = (median(&mut api_t), median(&mut cli_t));
    println!(
        "restore {:.1} MB NDJSON ({windows} windows), median of {runs}: API {:.1} MB/s ({a:.2} s), CLI {:.1} MB/s ({c:.2} s), API/CLI {:.2}",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / a,
        bytes as f64 / 1e6 / c,
        c / a
    );

    // 3. A data-subject search over the whole range.
    let search = serde_json::json!({"matches": [format!("ClientIP={ip}"), "ClientIP=198.51.100.7"],
                                    "from": from, "to": to});
    let t = Instant::now();
    let text = client
        .post(format!("{base}/v1/tenants/bench/gdpr/search"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(search.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let took = t.elapsed().as_secs_f64();
    let done: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(done["type"], "done", "{done}");
    let p = &done["progress"];
    println!(
        "gdpr search: {} windows, {:.1} MB sealed ({:.1} MB raw) scanned in {took:.2} s: {:.1} MB/s sealed, {:.1} MB/s raw NDJSON, {} records found",
        p["windows_scanned"],
        p["bytes_scanned"].as_f64().unwrap_or(0.0) / 1e6,
        raw as f64 / 1e6,
        p["bytes_scanned"].as_f64().unwrap_or(0.0) / 1e6 / took,
        raw as f64 / 1e6 / took,
        p["records_found"]
    );

    server.abort();
    sim.shutdown().await.unwrap();
    env.teardown().await;
}
