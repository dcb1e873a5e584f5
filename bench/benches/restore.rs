//! Restore and verify benchmark on an archive made by the demo machinery.
//!
//! ```text
//! cargo bench -p rainlogs-dispatcher --bench restore                     # 60 min, 200 rec/min
//! BENCH_MINUTES=120 BENCH_RPM=400 cargo bench -p rainlogs-dispatcher --bench restore
//! ```
//! Needs the local stack (`.rainlogs/env`) and a master keyring
//! (`RAINLOGS_MASTER_KEYS_FILE`); point `RAINLOGS_DATABASE_URL` at a scratch database.
//! Phases, each timed on its own:
//! 1. archive: `rainlogs demo`'s pipeline (in-process simulator → fetch → encrypt →
//!    upload) over BENCH_MINUTES one-minute windows of one zone at BENCH_RPM records/min;
//! 2. restore: `logs get` of the whole range to a byte counter, online (catalog checks)
//!    and offline (bucket listing + exported key): MB/s of NDJSON out;
//! 3. verify: the zone shallow (stream + SHA-256) and deep (decrypt + plaintext checks):
//!    objects/s and MB/s of sealed objects.
//!
//! Results are printed; docs/BENCHMARKS.md records them.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rainlogs_archive::restore::{self, Observer, Request, Source, Stats};
use rainlogs_archive::verify::{Verifier, ZoneScope};
use rainlogs_cli::demo::{run_demo, DemoOptions};
use rainlogs_core::config::ConfigSource;
use rainlogs_dispatcher::app::App;
use rainlogs_sealed::kms::{Kms, StaticKms};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Counts bytes; keeps none.
struct Counter(Arc<AtomicU64>);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Quiet;

impl Observer for Quiet {
    fn warn(&mut self, message: &str) {
        eprintln!("warning: {message}");
    }
}

async fn restore(source: &Source, req: &Request) -> anyhow::Result<(Stats, u64, Duration)> {
    let bytes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let (_, stats) = restore::restore(source, req, Box::new(Counter(bytes.clone())), &mut Quiet)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((stats, bytes.load(Ordering::Relaxed), started.elapsed()))
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let minutes: i64 = env_or("BENCH_MINUTES", 60);
    let rpm: u64 = env_or("BENCH_RPM", 200);
    let src = ConfigSource::from_env()?;
    let app = App::connect(&src).await?;
    let Some(kms) = app.kms.clone() else {
        anyhow::bail!(
            "set RAINLOGS_MASTER_KEYS_FILE (the local stack writes .rainlogs/master_keys)"
        );
    };

    let mut opts = DemoOptions::new(minutes, Duration::from_secs(3600));
    opts.zones = vec![("bench.restore.example".into(), rpm)];
    // The pull pipeline only: a push zone would change what the timing covers.
    opts.push_zone = None;
    let report = run_demo(&app, &opts).await?;
    let z = &report.zones[0];
    anyhow::ensure!(report.succeeded(), "archive run failed: {report:?}");
    println!(
        "archive: {} windows ({} archived), {} B NDJSON -> {} B sealed in {:.1} s",
        z.archived + z.empty,
        z.archived,
        z.raw_bytes,
        z.stored_bytes,
        report.elapsed.as_secs_f64()
    );
    let (tenant, from, to): (uuid::Uuid, DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
        "SELECT z.tenant_id, min(w.start_at), max(w.end_at) FROM windows w
         JOIN zones z ON z.id = w.zone_id WHERE w.zone_id = $1 GROUP BY z.tenant_id",
    )
    .bind(z.zone_id)
    .fetch_one(&app.pool)
    .await?;
    let req = Request {
        zone: z.zone_id.to_string(),
        tenant: None,
        from,
        to,
        filters: Vec::new(),
        match_any: false,
        max_window_bytes: 256 << 20,
        dataset: rainlogs_archive::verify::PULL_DATASET.into(),
    };
    let kms_dyn: Arc<dyn Kms> = Arc::new(kms.clone());

    let online = Source::Catalog {
        pool: app.pool.clone(),
        store: app.store.clone(),
        kms: kms_dyn.clone(),
    };
    let (stats, bytes, took) = restore(&online, &req).await?;
    println!(
        "restore online:  {} windows, {} records, {} B NDJSON in {:.2} s = {:.1} MB/s",
        stats.windows_restored,
        stats.records_out,
        bytes,
        took.as_secs_f64(),
        mbps(bytes, took)
    );
    let key = kms.export_tenant_key(tenant, 1).await?;
    let offline = Source::Bucket {
        store: app.store.clone(),
        kms: Arc::new(StaticKms::new().with_key(key)),
        tenant,
    };
    let (stats, bytes, took) = restore(&offline, &req).await?;
    println!(
        "restore offline: {} windows, {} records, {} B NDJSON in {:.2} s = {:.1} MB/s",
        stats.windows_restored,
        stats.records_out,
        bytes,
        took.as_secs_f64(),
        mbps(bytes, took)
    );
    let mut filtered = req.clone();
    filtered.filters = vec!["EdgeResponseStatus=404"
        .parse()
        .map_err(|e| anyhow::anyhow!("{e}"))?];
    let (stats, _, took) = restore(&online, &filtered).await?;
    println!(
        "restore online with --filter: {} of {} records in {:.2} s = {:.1} MB/s of NDJSON read",
        stats.records_out,
        stats.records_read,
        took.as_secs_f64(),
        mbps(z.raw_bytes, took)
    );

    let verifier = Verifier {
        pool: app.pool.clone(),
        store: app.store.clone(),
        kms: Some(kms_dyn),
        concurrency: env_or(
            "BENCH_CONCURRENCY",
            rainlogs_archive::verify::DEFAULT_CONCURRENCY,
        ),
    };
    for deep in [false, true] {
        let started = Instant::now();
        let mut findings = 0u64;
        let counts = verifier
            .verify_zone(
                ZoneScope {
                    zone_id: z.zone_id,
                    from,
                    to,
                },
                deep,
                &mut |_| {
                    findings += 1;
                    Ok(())
                },
            )
            .await?;
        let took = started.elapsed();
        println!(
            "verify {}: {} objects ({} B sealed) in {:.2} s = {:.0} objects/s, {:.1} MB/s; {} findings",
            if deep { "deep   " } else { "shallow" },
            counts.objects_checked,
            counts.object_bytes,
            took.as_secs_f64(),
            counts.objects_checked as f64 / took.as_secs_f64().max(1e-9),
            mbps(counts.object_bytes, took),
            findings
        );
    }
    Ok(())
}
