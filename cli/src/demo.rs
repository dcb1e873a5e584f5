//! `rainlogs demo`: the archive pipeline end to end on this machine, in one command.
//!
//! Starts the Logpull simulator in-process, registers a fresh demo tenant with three
//! pulled zones (busy, quiet, all-empty) and one pushed zone (a Logpush job of the
//! simulator delivering to a receiver served in this process, [`crate::demo_push`]),
//! runs the stage worker and a plan/enqueue loop until every planned window and pushed
//! batch of those zones is final, then reports volumes, compression, throughput and
//! whether each zone's hash chain verifies.
//!
//! The demo is isolated from whatever else runs on the same stack: its zones are
//! registered as *demo zones fetched from its own simulator* (their endpoint is the
//! simulator's URL, so no token of theirs can go anywhere else, and `rainlogs run`'s
//! scheduler and reconciler leave them alone); its tasks travel on a private Redis key
//! prefix (`{prefix}:demo:{run}`) that no other worker reads, and its worker reads only
//! that prefix, so it never takes another zone's task; its objects live under its own
//! zones' keys. When it ends — success, failure or timeout — its zones are paused and
//! its private queue keys deleted.
//!
//! Its steps — [`register`] (tenant, zones, planned windows), [`archive`] (a stage
//! worker plus the enqueue loop until nothing is in flight) and [`summarise`] (counts,
//! bytes, chain) — are public so the end-to-end benchmark (`dispatcher/benches/e2e.rs`)
//! runs the very same flow against an out-of-process simulator.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use rainlogs_archive::chain::{self, ChainReport};
use rainlogs_archive::endpoint::ZoneEndpoint;
use rainlogs_archive::ledger::{self, WindowState};
use rainlogs_archive::pipeline::{WindowTask, PIPELINE_QUEUE};
use rainlogs_core::task::{kinds, TaskSpec};
use rainlogs_logpull_sim::{PushClock, PushConfig, SimConfig, Simulator, ZoneVolume};
use secrecy::SecretString;
use tokio::sync::watch;
use uuid::Uuid;

use rainlogs_archive::catalog::{tenant, zone};
use rainlogs_dispatcher::app::App;
use rainlogs_dispatcher::invoker::Invoker;
use rainlogs_dispatcher::worker::Worker;

use crate::demo_push::{self, PushSummary};

/// Fixed so every run serves the same logs.
const SEED: u64 = 42;
/// Accepted by the in-process simulator only; never a real Cloudflare token.
const SIM_TOKEN: &str = "rainlogs-demo-simulator-token";
/// Pause between plan/enqueue passes and progress checks.
const POLL: Duration = Duration::from_millis(500);

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub backfill_minutes: i64,
    pub timeout: Duration,
    /// (zone name, records per non-empty minute); 0 makes every minute empty.
    pub zones: Vec<(String, u64)>,
    /// A zone pushed by a Logpush job: (zone name, records per minute); `None` for
    /// pulled zones only.
    pub push_zone: Option<(String, u64)>,
    /// Records the simulated Cloudflare receives late, as (fraction, at most seconds):
    /// Logpull serves them in a later window than their own time. None by default.
    pub late: (f64, u32),
}

impl DemoOptions {
    pub fn new(backfill_minutes: i64, timeout: Duration) -> Self {
        Self {
            backfill_minutes,
            timeout,
            zones: vec![
                ("busy.demo.example".into(), 200),
                ("quiet.demo.example".into(), 40),
                ("silent.demo.example".into(), 0),
            ],
            push_zone: Some(("pushed.demo.example".into(), 150)),
            late: (0.0, 0),
        }
    }
}

/// One demo zone's outcome.
#[derive(Debug, Clone)]
pub struct ZoneSummary {
    pub name: String,
    pub zone_id: Uuid,
    pub archived: u64,
    pub empty: u64,
    pub failed: u64,
    /// Windows not final when the demo stopped (non-zero only on timeout).
    pub in_flight: u64,
    /// Plaintext NDJSON bytes of the archived windows.
    pub raw_bytes: u64,
    /// Sealed object bytes in S3.
    pub stored_bytes: u64,
    pub chain: ChainReport,
}

/// The demo's outcome.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub tenant: String,
    pub zones: Vec<ZoneSummary>,
    pub elapsed: Duration,
    pub timed_out: bool,
    /// Fingerprints of the credentials the demo's simulator was shown, with counts
    /// (`rainlogs_logpull_sim::credential_fingerprint`): only the demo's own token.
    pub simulator_credentials: HashMap<String, u64>,
    /// The pushed zone, when the demo had one.
    pub push: Option<PushSummary>,
}

impl DemoReport {
    pub fn succeeded(&self) -> bool {
        !self.timed_out
            && self
                .zones
                .iter()
                .all(|z| z.failed == 0 && z.in_flight == 0 && z.chain.is_valid())
            && self.push.as_ref().is_none_or(PushSummary::succeeded)
            && self.foreign_credentials() == 0
    }

    /// How many credentials other than the demo's own token reached its simulator
    /// (always 0: anything else means a zone's token went where it must not).
    pub fn foreign_credentials(&self) -> usize {
        let own = rainlogs_logpull_sim::credential_fingerprint(SIM_TOKEN);
        self.simulator_credentials
            .keys()
            .filter(|k| **k != own)
            .count()
    }
}

/// One zone of a flow: how Rainlogs archives it (the simulator decides its volume).
#[derive(Debug, Clone)]
pub struct FlowZone {
    /// Display name; made unique per run with a prefix of the Cloudflare id.
    pub name: String,
    /// 32 lowercase hex digits.
    pub cf_zone_id: String,
    pub cadence_seconds: i32,
    pub backfill_minutes: i64,
    /// Logpull fields to archive; empty: every field the zone's Logpull offers (as
    /// `zone add` without `--fields`).
    pub fields: Vec<String>,
}

/// Where the zones of a flow come from: always a simulator (a flow never registers a
/// real Cloudflare zone), and whether they are demo zones (driven only by this flow).
#[derive(Debug, Clone)]
pub struct FlowSource {
    pub simulator_url: String,
    pub demo: bool,
}

/// Runs the demo against `app`'s Postgres, Redis and S3. `app` must have a kms.
pub async fn run_demo(app: &App, opts: &DemoOptions) -> anyhow::Result<DemoReport> {
    let Some(kms) = app.kms.clone() else {
        bail!("rainlogs demo needs the master keyring: set RAINLOGS_MASTER_KEYS_FILE");
    };
    rainlogs_core::db::migrate(&app.pool).await?;

    let flow_zone = |name: &String| FlowZone {
        name: name.clone(),
        cf_zone_id: Uuid::new_v4().simple().to_string(),
        cadence_seconds: 60,
        backfill_minutes: opts.backfill_minutes,
        fields: Vec::new(),
    };
    let push_zone = opts
        .push_zone
        .as_ref()
        .map(|(name, rpm)| (flow_zone(name), *rpm));
    let zones: Vec<FlowZone> = opts
        .zones
        .iter()
        .map(|(name, _)| FlowZone {
            name: name.clone(),
            cf_zone_id: Uuid::new_v4().simple().to_string(),
            cadence_seconds: 60,
            backfill_minutes: opts.backfill_minutes,
            fields: Vec::new(),
        })
        .collect();
    let volumes: HashMap<String, ZoneVolume> = zones
        .iter()
        .zip(opts.zones.iter().map(|(_, rpm)| *rpm))
        .chain(push_zone.as_ref().map(|(z, rpm)| (z, *rpm)))
        .map(|(z, rpm)| {
            let volume = ZoneVolume {
                records_per_minute: rpm,
                empty_ratio: if rpm == 0 { 1.0 } else { 0.0 },
                late_ratio: opts.late.0,
                late_max_seconds: opts.late.1,
            };
            (z.cf_zone_id.clone(), volume)
        })
        .collect();
    let now = Utc::now();
    // The push clock starts `backfill` minutes ago, at a whole minute, and stands
    // still until the demo moves it (demo_push).
    let push_start = now
        - chrono::TimeDelta::seconds(now.timestamp().rem_euclid(60))
        - chrono::TimeDelta::minutes(opts.backfill_minutes.max(0));
    let sim = Simulator::start_local(SimConfig {
        seed: SEED,
        zones: volumes,
        tokens: vec![SIM_TOKEN.to_owned()],
        push: PushConfig {
            clock: PushClock::Manual { start: push_start },
            ..PushConfig::default()
        },
        ..SimConfig::default()
    })
    .await
    .context("start the logpull simulator on 127.0.0.1")?;
    let source = FlowSource {
        simulator_url: sim.base_url(),
        demo: true,
    };
    let tenant_name = format!("demo-{}", now.format("%Y%m%d-%H%M%S-%3f"));
    // A private queue scope: this run's worker sees only this run's tasks.
    let mut app = app.clone();
    app.queue = app
        .queue
        .scoped(&format!("demo:{}", Uuid::new_v4().simple()));

    let token = SecretString::from(SIM_TOKEN.to_owned());
    let zone_ids = register(&app, &kms, &tenant_name, &zones, &source, &token, now).await?;
    let pushed = match &push_zone {
        Some((z, _)) => {
            let started = demo_push::start(&app, &kms, &tenant_name, z, &token, &sim, now).await;
            match started {
                Ok(p) => Some(p),
                Err(e) => {
                    end(&app, &zone_ids).await?;
                    return Err(e);
                }
            }
        }
        None => None,
    };
    let mut all_zones = zone_ids.clone();
    all_zones.extend(pushed.as_ref().map(|p| p.zone_id));
    let invoker = Arc::new(app.in_process_functions());
    let archived = archive(&app, invoker, &all_zones, opts.timeout).await;
    // Whatever happened, leave nothing running: the zones paused (their simulator dies
    // with this process), the push job disabled and its receiver stopped, the private
    // queue gone.
    let ended = end(&app, &all_zones).await;
    let push_info = pushed.as_ref().map(|p| (p.zone_id, p.job, p.validated));
    let push_ended = match pushed {
        Some(p) => p.end(&app, &kms).await,
        None => Ok(()),
    };
    let (elapsed, timed_out) = archived?;
    ended?;
    push_ended?;

    let mut summaries = Vec::new();
    for (id, (name, _)) in zone_ids.iter().zip(&opts.zones) {
        summaries.push(summarise(&app, *id, name).await?);
    }
    let push = match (push_info, &push_zone) {
        (Some((id, job, validated)), Some((z, _))) => {
            Some(demo_push::summarise(&app, &sim, id, job, validated, &z.name).await?)
        }
        _ => None,
    };
    Ok(DemoReport {
        tenant: tenant_name,
        zones: summaries,
        elapsed,
        timed_out,
        simulator_credentials: sim.credentials_seen(),
        push,
    })
}

/// Pauses the demo's zones and deletes its private queue keys.
async fn end(app: &App, zone_ids: &[Uuid]) -> anyhow::Result<()> {
    sqlx::query!(
        "UPDATE zones SET paused = true WHERE id = ANY($1) AND demo",
        zone_ids
    )
    .execute(&app.pool)
    .await
    .context("pause the demo zones")?;
    app.queue
        .delete_all()
        .await
        .context("delete the demo's queue keys")?;
    Ok(())
}

/// Adds tenant `tenant_name` and `zones`, fetched from `source`'s simulator (their
/// token stored through the kms), and plans each zone's windows once, as of `now`: a
/// fixed stretch, not a moving one. Returns the zones' ids in order.
pub async fn register(
    app: &App,
    kms: &rainlogs_kms::KmsService,
    tenant_name: &str,
    zones: &[FlowZone],
    source: &FlowSource,
    token: &SecretString,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Uuid>> {
    tenant::add(&app.pool, tenant_name, 30).await?;
    let mut zone_ids = Vec::new();
    // The token is probed at the simulator like any zone's (retention, fields).
    let probe = rainlogs_fetch::LogpullProbe::new(app.logpull.clone(), app.cloudflare.clone());
    for z in zones {
        // Zone names are unique per run too, so several flows can share a database.
        let prefix = z.cf_zone_id.get(..8).unwrap_or(&z.cf_zone_id);
        let unique = format!("{prefix}-{}", z.name);
        let id = zone::add(
            &app.pool,
            kms,
            &probe,
            &zone::NewZone {
                tenant: tenant_name,
                cf_zone_id: &z.cf_zone_id,
                name: &unique,
                cadence_seconds: z.cadence_seconds,
                backfill_minutes: z.backfill_minutes,
                endpoint: ZoneEndpoint::Simulator {
                    url: source.simulator_url.clone(),
                },
                demo: source.demo,
                fields: (!z.fields.is_empty()).then_some(&z.fields[..]),
            },
            token,
            now,
        )
        .await?;
        // The demo's simulator runs on this host's clock: Logpull's minute is enough.
        ledger::plan_zone(&app.pool, id, now, &ledger::PlanPolicy::same_clock()).await?;
        zone_ids.push(id);
    }
    Ok(zone_ids)
}

/// Runs a stage worker (default settings, `invoker` for the functions) and enqueues
/// the zones' planned windows until none is in flight or `timeout` passes. Returns the
/// time taken and whether it timed out.
pub async fn archive(
    app: &App,
    invoker: Arc<dyn Invoker>,
    zone_ids: &[Uuid],
    timeout: Duration,
) -> anyhow::Result<(Duration, bool)> {
    let started = Instant::now();
    let (stop, stopped) = watch::channel(false);
    let worker = Worker::new(app.queue.clone(), invoker, vec![PIPELINE_QUEUE.to_owned()]);
    let running = tokio::spawn(async move { worker.run(stopped).await });
    let outcome = drive(app, zone_ids, started, timeout).await;
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .context("worker did not stop within 30 s")?
        .context("worker task panicked")?
        .context("worker")?;
    let timed_out = outcome?;
    Ok((started.elapsed(), timed_out))
}

/// Enqueues fetches for the zones' planned windows until none is in flight or the
/// timeout passes; returns whether it timed out.
async fn drive(
    app: &App,
    zone_ids: &[Uuid],
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<bool> {
    loop {
        let planned: Vec<i64> = sqlx::query_scalar!(
            "SELECT id FROM windows WHERE zone_id = ANY($1) AND state = 'planned' ORDER BY id",
            zone_ids
        )
        .fetch_all(&app.pool)
        .await
        .context("list the planned windows")?;
        if !planned.is_empty() {
            // Idempotency keys absorb windows whose fetch is already queued.
            let specs: Vec<TaskSpec> = planned
                .into_iter()
                .map(|window_id| WindowTask { window_id }.spec(kinds::FETCH_WINDOW))
                .collect();
            app.queue.enqueue_many(specs).await?;
        }
        // Pushed batches arrive staged: they go on to encrypt (what the scheduler's push
        // pass does for zones that are not demo zones).
        let pushed: Vec<i64> = sqlx::query_scalar!(
            "SELECT id FROM windows
             WHERE zone_id = ANY($1) AND state = 'staged' AND batch_id IS NOT NULL ORDER BY id",
            zone_ids
        )
        .fetch_all(&app.pool)
        .await
        .context("list the staged pushed batches")?;
        if !pushed.is_empty() {
            let specs: Vec<TaskSpec> = pushed
                .into_iter()
                .map(|window_id| WindowTask { window_id }.spec(kinds::ENCRYPT_WINDOW))
                .collect();
            app.queue.enqueue_many(specs).await?;
        }
        let in_flight: i64 = sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM windows WHERE zone_id = ANY($1) AND state = ANY($2)"#,
            zone_ids,
            &WindowState::IN_FLIGHT[..] as &[WindowState]
        )
        .fetch_one(&app.pool)
        .await
        .context("count the windows in flight")?;
        if in_flight == 0 {
            return Ok(false);
        }
        if started.elapsed() >= timeout {
            return Ok(true);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One zone's windows by state, archived bytes and chain status.
pub async fn summarise(app: &App, zone_id: Uuid, name: &str) -> anyhow::Result<ZoneSummary> {
    let states: Vec<(WindowState, i64)> = sqlx::query!(
        r#"SELECT state AS "state: WindowState", count(*) AS "n!"
           FROM windows WHERE zone_id = $1 GROUP BY state"#,
        zone_id
    )
    .fetch_all(&app.pool)
    .await
    .context("count the windows by state")?
    .into_iter()
    .map(|r| (r.state, r.n))
    .collect();
    let count = |want: &[WindowState]| -> u64 {
        states
            .iter()
            .filter(|(s, _)| want.contains(s))
            .map(|(_, n)| u64::try_from(*n).unwrap_or(0))
            .sum()
    };
    let bytes = sqlx::query!(
        r#"SELECT coalesce(sum(a.plaintext_bytes), 0)::bigint AS "raw!",
                  coalesce(sum(a.size_bytes), 0)::bigint AS "stored!"
           FROM archived_objects a JOIN windows w ON w.id = a.window_id WHERE w.zone_id = $1"#,
        zone_id
    )
    .fetch_one(&app.pool)
    .await
    .context("sum the archived bytes")?;
    let (raw, stored) = (bytes.raw, bytes.stored);
    Ok(ZoneSummary {
        name: name.to_owned(),
        zone_id,
        archived: count(&[WindowState::Archived]),
        empty: count(&[WindowState::Empty]),
        failed: count(&[WindowState::FailedPermanent]),
        in_flight: count(&WindowState::IN_FLIGHT),
        raw_bytes: u64::try_from(raw).unwrap_or(0),
        stored_bytes: u64::try_from(stored).unwrap_or(0),
        chain: match &app.kms {
            Some(kms) => chain::verify_zone(&app.pool, kms, zone_id).await?,
            None => anyhow::bail!("the demo needs the kms to check its keyed chains"),
        },
    })
}

fn ratio(raw: u64, stored: u64) -> String {
    if stored == 0 {
        "-".into()
    } else {
        format!("{:.1}x", raw as f64 / stored as f64)
    }
}

fn chain_status(report: &ChainReport) -> String {
    match &report.first_break {
        None => format!("chain verified: {} links", report.links_checked),
        Some((seq, why)) => format!(
            "CHAIN BROKEN at seq {seq}: {why} ({} links verified before it)",
            report.links_checked
        ),
    }
}

/// Prints the report and turns it into the process's exit code.
pub fn print(report: &DemoReport) -> ExitCode {
    println!("tenant {}", report.tenant);
    let mut total = (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let pushed = report.push.as_ref().map(|p| &p.zone);
    for z in report.zones.iter().chain(pushed) {
        println!(
            "zone {:<22} {}  archived {:>3}  empty {:>3}  failed {:>3}  in flight {:>3}  raw {:>10} B  stored {:>9} B  ratio {:>6}  {}",
            z.name,
            z.zone_id,
            z.archived,
            z.empty,
            z.failed,
            z.in_flight,
            z.raw_bytes,
            z.stored_bytes,
            ratio(z.raw_bytes, z.stored_bytes),
            chain_status(&z.chain),
        );
        total.0 += z.archived;
        total.1 += z.empty;
        total.2 += z.failed;
        total.3 += z.in_flight;
        total.4 += z.raw_bytes;
        total.5 += z.stored_bytes;
    }
    if let Some(p) = &report.push {
        println!(
            "  {} pushed by Logpush job {} (validation {}): {} batches ({} records) delivered, {} dropped, {} records acknowledged",
            p.zone.name,
            p.job,
            if p.validated { "received" } else { "NOT received" },
            p.batches_delivered,
            p.records_delivered,
            p.batches_dropped,
            p.records_acknowledged,
        );
    }
    let secs = report.elapsed.as_secs_f64();
    let mbps = if secs > 0.0 {
        total.4 as f64 / 1e6 / secs
    } else {
        0.0
    };
    println!(
        "total: archived {}  empty {}  failed {}  in flight {}  raw {} B  stored {} B  ratio {}  in {:.1} s ({:.2} MB/s raw)",
        total.0,
        total.1,
        total.2,
        total.3,
        total.4,
        total.5,
        ratio(total.4, total.5),
        secs,
        mbps
    );
    let requests: u64 = report.simulator_credentials.values().sum();
    let foreign = report.foreign_credentials();
    println!(
        "simulator: {requests} authenticated requests, {} (demo zones are paused; they never reach Cloudflare)",
        if foreign == 0 {
            "all with the demo's own token".to_owned()
        } else {
            format!("{foreign} OTHER credential(s) seen")
        }
    );
    if report.timed_out {
        println!("demo timed out with windows still in flight");
    }
    if report.succeeded() {
        println!("demo ok");
        ExitCode::SUCCESS
    } else {
        println!("demo FAILED");
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rainlogs_archive::chain::ChainBreak;

    fn zone(failed: u64, in_flight: u64, first_break: Option<(i64, ChainBreak)>) -> ZoneSummary {
        ZoneSummary {
            name: "z".into(),
            zone_id: Uuid::nil(),
            archived: 3,
            empty: 1,
            failed,
            in_flight,
            raw_bytes: 10,
            stored_bytes: 5,
            chain: ChainReport {
                zone_id: Uuid::nil(),
                links_checked: 4,
                first_break,
            },
        }
    }

    fn report(zones: Vec<ZoneSummary>, timed_out: bool) -> DemoReport {
        DemoReport {
            tenant: "t".into(),
            zones,
            elapsed: Duration::from_secs(1),
            timed_out,
            simulator_credentials: HashMap::new(),
            push: None,
        }
    }

    #[test]
    fn only_a_clean_run_succeeds() {
        assert!(report(vec![zone(0, 0, None)], false).succeeded());
        assert!(!report(vec![zone(0, 0, None)], true).succeeded());
        assert!(!report(vec![zone(1, 0, None)], false).succeeded());
        assert!(!report(vec![zone(0, 2, None)], false).succeeded());
        let broken = Some((2, ChainBreak::HashMismatch));
        assert!(!report(vec![zone(0, 0, None), zone(0, 0, broken)], false).succeeded());
    }

    #[test]
    fn chain_status_names_the_break() {
        assert_eq!(
            chain_status(&zone(0, 0, None).chain),
            "chain verified: 4 links"
        );
        let s = chain_status(&zone(0, 0, Some((6, ChainBreak::Gap { expected_seq: 5 }))).chain);
        assert!(s.contains("seq 6") && s.contains("expected seq 5"), "{s}");
    }
}
