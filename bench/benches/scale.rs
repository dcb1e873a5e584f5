//! Scale benchmark (issue 20 item 4): many zones on one machine, a backfill of all of
//! them while live windows keep arriving, through the real scheduler, queue and stages.
//!
//! One process runs what `rainlogs run` runs — the scheduler and reconciler
//! (`reconcile::run_loop`), the dispatcher (`Worker`, in-process stages, the metrics)
//! — against a database of its own (created and dropped here), a per-run Redis prefix
//! and S3 prefix, and the Logpull simulator (in this process: its CPU and memory are
//! in this process's figures). Zones are spread over tenants; most are quiet, a few
//! busy. Every zone starts with `SCALE_BACKFILL_MIN` minutes of backfill; the run goes
//! on until the backfill is archived and `SCALE_LIVE_SECS` more have passed (live
//! windows arriving all the while), or `SCALE_MAX_SECS`.
//!
//! ```text
//! source <(bash infra/local/stack.sh env)
//! cargo bench -p rainlogs-bench --bench scale
//! # knobs: SCALE_ZONES (1000) SCALE_TENANTS (10) SCALE_BUSY (10) SCALE_RPM (20)
//! #        SCALE_BUSY_RPM (2000) SCALE_BACKFILL_MIN (60) SCALE_LIVE_SECS (120)
//! #        SCALE_MAX_SECS (1800) SCALE_SAMPLE_SECS (10); RAINLOGS_* as for `rainlogs run`
//! ```
//! Reports every sample: windows archived and per second, staged and sealed windows
//! (the backlog the in-flight bound holds), live lag; at the end: time to the first
//! archived window, backfill time, windows/s, live lag p50/p99/max (archived − window
//! end; the plan margin of 60 s is part of it), leases lost, S3 requests and Postgres
//! transactions per window, CPU per window, peak RSS. Results: docs/BENCHMARKS.md,
//! "Scale".

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use rainlogs_cli::demo::{self, FlowSource, FlowZone};
use rainlogs_core::config::{ConfigSource, DatabaseConfig, RedisConfig, S3Config};
use rainlogs_dispatcher::app::App;
use rainlogs_dispatcher::config::DispatcherConfig;
use rainlogs_dispatcher::metrics::Metrics;
use rainlogs_dispatcher::reconcile::{self, SchedulerConfig};
use rainlogs_logpull_sim::{SimConfig, Simulator, ZoneVolume};
use secrecy::SecretString;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

const SIM_TOKEN: &str = "scale-bench-token";

fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of this process, in seconds.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// A `/proc/PID/status` value in KiB.
fn status_kib(pid: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Peak resident set of every process named `name` (largest one), in MiB.
fn peak_rss_mib(name: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .map(|pid| status_kib(&pid, "VmHWM:"))
        .max()
        .unwrap_or(0) as f64
        / 1024.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The database of this run: the stack's URL with another database name.
fn with_database(url: &str, db: &str) -> anyhow::Result<String> {
    let (base, rest) = url.rsplit_once('/').context("database URL has no path")?;
    let query = rest
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    Ok(format!("{base}/{db}{query}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not: stay out of it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("scale: skipped (needs the local stack; run `cargo bench --bench scale`)");
        return Ok(());
    }
    let zones_n: usize = knob("SCALE_ZONES", 1000);
    let tenants_n: usize = knob("SCALE_TENANTS", 10).max(1);
    let busy_n: usize = knob("SCALE_BUSY", 10);
    let rpm: u64 = knob("SCALE_RPM", 20);
    let busy_rpm: u64 = knob("SCALE_BUSY_RPM", 2000);
    let backfill: i64 = knob("SCALE_BACKFILL_MIN", 60);
    let live_secs: u64 = knob("SCALE_LIVE_SECS", 120);
    let max_secs: u64 = knob("SCALE_MAX_SECS", 1800);
    let sample = Duration::from_secs(knob("SCALE_SAMPLE_SECS", 10));

    let run = Uuid::new_v4().simple().to_string()[..12].to_owned();
    let mut src = ConfigSource::from_env()?;
    let admin_url = DatabaseConfig::from_source(&src)?.url;
    let admin_url = secrecy::ExposeSecret::expose_secret(&admin_url).to_owned();
    let db = format!("rainlogs_scale_{run}");
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await
        .context("connect to Postgres")?;
    sqlx::query(&format!("CREATE DATABASE \"{db}\""))
        .execute(&admin)
        .await?;
    src.set(DatabaseConfig::URL, with_database(&admin_url, &db)?);
    src.set(
        RedisConfig::KEY_PREFIX,
        format!("rainlogs-bench-scale-{run}"),
    );
    src.set(S3Config::KEY_PREFIX, format!("bench-scale/{run}/"));
    // The simulator runs on this host's clock: Logpull's minute is the whole margin.
    if src.get("RAINLOGS_PLAN_MARGIN_SECS").is_none() {
        src.set("RAINLOGS_PLAN_MARGIN_SECS", "60");
    }

    let sim = Simulator::start_local(SimConfig {
        seed: 20,
        default_volume: ZoneVolume {
            records_per_minute: rpm,
            empty_ratio: 0.0,
            late_ratio: 0.0,
            late_max_seconds: 0,
        },
        tokens: vec![SIM_TOKEN.to_owned()],
        ..SimConfig::default()
    })
    .await?;
    let app = App::connect(&src).await?;
    let Some(kms) = app.kms.clone() else {
        bail!("the benchmark needs the master keyring: set RAINLOGS_MASTER_KEYS_FILE");
    };
    rainlogs_core::db::migrate(&app.pool).await?;
    let result = run_bench(
        &app, &kms, &sim, &src, &admin, &db, zones_n, tenants_n, busy_n, busy_rpm, backfill,
        live_secs, max_secs, sample,
    )
    .await;
    app.pool.close().await;
    let _ = app.queue.delete_all().await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
        .execute(&admin)
        .await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn run_bench(
    app: &App,
    kms: &rainlogs_kms::KmsService,
    sim: &Simulator,
    src: &ConfigSource,
    admin: &sqlx::PgPool,
    db: &str,
    zones_n: usize,
    tenants_n: usize,
    busy_n: usize,
    busy_rpm: u64,
    backfill: i64,
    live_secs: u64,
    max_secs: u64,
    sample: Duration,
) -> anyhow::Result<()> {
    let registered = Instant::now();
    let token = SecretString::from(SIM_TOKEN.to_owned());
    let source = FlowSource {
        simulator_url: sim.base_url(),
        demo: false,
    };
    let now = Utc::now();
    for t in 0..tenants_n {
        let zones: Vec<FlowZone> = (0..zones_n)
            .filter(|z| z % tenants_n == t)
            .map(|z| {
                let cf = format!("{:032x}", (z as u128 + 1) * 7919);
                if z < busy_n {
                    sim.set_volume(
                        &cf,
                        ZoneVolume {
                            records_per_minute: busy_rpm,
                            empty_ratio: 0.0,
                            late_ratio: 0.0,
                            late_max_seconds: 0,
                        },
                    );
                }
                FlowZone {
                    name: format!("z{z}.scale.example"),
                    cf_zone_id: cf,
                    cadence_seconds: 60,
                    backfill_minutes: backfill,
                    fields: Vec::new(),
                }
            })
            .collect();
        demo::register(
            app,
            kms,
            &format!("tenant-{t}"),
            &zones,
            &source,
            &token,
            now,
        )
        .await?;
    }
    let planned: i64 = sqlx::query_scalar("SELECT count(*) FROM windows")
        .fetch_one(&app.pool)
        .await?;
    println!(
        "== scale {}: {zones_n} zones ({busy_n} busy at {busy_rpm} records/min, the rest at {} ), {tenants_n} tenants, {backfill} min of backfill each = {planned} windows; registered in {:.1} s; load average {}",
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
        knob("SCALE_RPM", 20u64),
        registered.elapsed().as_secs_f64(),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );

    let cfg = DispatcherConfig::from_source(src)?;
    let scheduler = SchedulerConfig::from_source(src)?;
    let metrics = Metrics::new();
    let invoker = Arc::new(app.in_process_functions());
    let worker = app.worker_with(cfg, invoker).with_metrics(metrics.clone());
    let xact = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
        )
        .bind(db)
        .fetch_one(admin)
        .await
        .unwrap_or(0)
    };
    let (xact0, s3_0, cpu0) = (xact().await, app.store.operations(), cpu_secs());
    let started = Instant::now();
    let start_at: DateTime<Utc> = Utc::now();
    // The windows already planned go out as the scheduler sends them (live or backfill).
    reconcile::reconcile(app, Duration::ZERO).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let planner = tokio::spawn(reconcile::run_loop(app.clone(), scheduler, stopped.clone()));
    let running = tokio::spawn(async move { worker.run(stopped).await });

    let mut first_archived: Option<f64> = None;
    let mut backfill_done: Option<f64> = None;
    let mut last_final = 0i64;
    let mut max_backlog = 0i64;
    let mut min_limit = i64::MAX;
    println!("   t(s)  final  win/s  planned fetching staged sealed  live p99 lag(s)  lease lost  limit  runtime lag(ms)");
    loop {
        tokio::time::sleep(sample).await;
        let t = started.elapsed().as_secs_f64();
        let counts: Vec<(String, i64)> =
            sqlx::query_as("SELECT state::text, count(*) FROM windows GROUP BY state")
                .fetch_all(&app.pool)
                .await?;
        let n = |s: &str| {
            counts
                .iter()
                .filter(|(k, _)| k.as_str() == s)
                .map(|(_, v)| *v)
                .sum::<i64>()
        };
        let finals = n("archived") + n("empty") + n("failed_permanent");
        max_backlog = max_backlog.max(n("staged") + n("sealed"));
        if first_archived.is_none() && n("archived") > 0 {
            let first: DateTime<Utc> =
                sqlx::query_scalar("SELECT min(state_since) FROM windows WHERE state = 'archived'")
                    .fetch_one(&app.pool)
                    .await?;
            first_archived = Some((first - start_at).num_milliseconds() as f64 / 1000.0);
        }
        let backfill_left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM windows WHERE end_at <= $1
               AND state IN ('planned', 'fetching', 'staged', 'sealed')",
        )
        .bind(start_at)
        .fetch_one(&app.pool)
        .await?;
        let lags = live_lags(
            app,
            start_at,
            Some(Utc::now() - chrono::TimeDelta::from_std(sample)?),
        )
        .await?;
        let limit = metrics
            .concurrency_limit
            .with_label_values(&["default"])
            .get();
        min_limit = min_limit.min(limit);
        println!(
            "  {t:5.0} {finals:6} {:6.1} {:7} {:8} {:6} {:6}  {:15.1}  {:10}  {:5}  {:15.1}",
            (finals - last_final) as f64 / sample.as_secs_f64(),
            n("planned"),
            n("fetching"),
            n("staged"),
            n("sealed"),
            percentile(&lags, 0.99),
            metrics.lease_lost.with_label_values(&["default"]).get(),
            limit,
            metrics.runtime_lag.get() * 1000.0
        );
        std::io::stdout().flush()?;
        last_final = finals;
        if backfill_done.is_none() && backfill_left == 0 {
            backfill_done = Some(t);
        }
        if backfill_done.is_some_and(|d| t >= d + live_secs as f64) || t >= max_secs as f64 {
            break;
        }
    }
    let _ = stop.send(true);
    running.await??;
    planner.await?;
    let wall = started.elapsed().as_secs_f64();
    let (cpu1, s3_1) = (cpu_secs(), app.store.operations());
    // Let every backend's statistics reach pg_stat_database before reading it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let xact1 = xact().await;
    let archived: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM windows WHERE state = 'archived' AND state_since >= $1",
    )
    .bind(start_at)
    .fetch_one(&app.pool)
    .await?;
    let done: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM windows WHERE state IN ('archived', 'empty') AND state_since >= $1",
    )
    .bind(start_at)
    .fetch_one(&app.pool)
    .await?;
    let lags = live_lags(app, start_at, None).await?;
    let s3: u64 = s3_1
        .iter()
        .map(|(op, n)| n - s3_0.get(op).copied().unwrap_or(0))
        .sum();
    let per = |x: f64| x / done.max(1) as f64;
    println!("== results");
    println!(
        "   windows settled {done} ({archived} archived) in {wall:.1} s: {:.1} windows/s",
        done as f64 / wall
    );
    println!(
        "   first archived window {:.1} s after the start; backfill ({planned} windows) archived after {}",
        first_archived.unwrap_or(f64::NAN),
        backfill_done.map_or("(not finished)".to_owned(), |t| format!(
            "{t:.0} s (≥ {:.1} windows/s: done by that sample)",
            planned as f64 / t
        ))
    );
    println!(
        "   live windows (ending after the start): {} archived; lag archived − end p50 {:.1} s, p99 {:.1} s, max {:.1} s",
        lags.len(),
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "   staged + sealed at most {max_backlog} (sampled); the governor's concurrency limit at least {min_limit} (sampled)"
    );
    println!(
        "   leases lost {}; S3 requests {:.2} per window {:?}; Postgres transactions {:.1} per window",
        metrics.lease_lost.with_label_values(&["default"]).get(),
        per(s3 as f64),
        s3_1
            .iter()
            .map(|(op, n)| (*op, n - s3_0.get(op).copied().unwrap_or(0)))
            .collect::<Vec<_>>(),
        per((xact1 - xact0) as f64)
    );
    println!(
        "   CPU of this process (stages, dispatcher, scheduler and the simulator) {:.1} ms per window",
        per((cpu1 - cpu0) * 1000.0)
    );
    println!(
        "   peak RSS: this process {:.0} MiB, redis-server {:.0} MiB, garage {:.0} MiB, largest postgres process {:.0} MiB",
        status_kib("self", "VmHWM:") as f64 / 1024.0,
        peak_rss_mib("redis-server"),
        peak_rss_mib("garage"),
        peak_rss_mib("postgres")
    );
    Ok(())
}

/// Lags (archived − window end, seconds, sorted) of the windows that ended after the
/// run started and are archived or empty, settled since `since` when given.
async fn live_lags(
    app: &App,
    start_at: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
) -> anyhow::Result<Vec<f64>> {
    let mut lags: Vec<f64> = sqlx::query_scalar::<_, f64>(
        "SELECT extract(epoch FROM state_since - end_at)::float8 FROM windows
         WHERE end_at > $1 AND state IN ('archived', 'empty') AND state_since >= $2",
    )
    .bind(start_at)
    .bind(since.unwrap_or(start_at))
    .fetch_all(&app.pool)
    .await?;
    lags.sort_by(|a, b| a.total_cmp(b));
    Ok(lags)
}
