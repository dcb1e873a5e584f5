//! The scheduler and the reconciler: Postgres (the window ledger) is the truth, Redis
//! only carries messages about it, so both re-derive what to enqueue from the ledger.
//!
//! Demo zones (`zones.demo`) are left out of both: a `rainlogs demo` run drives its own
//! zones on its own queue scope, and nothing else may.
//!
//! - [`plan_and_enqueue`] plans the windows of every non-paused zone
//!   ([`ledger::plan_zone`], `App::plan`'s safety margin behind now) and enqueues a `fetch.window` task for each `planned` window;
//! - [`enqueue_pushed`] sends `encrypt.window` for pushed batches the receiver staged;
//! - [`enqueue_landing`] sends `ingest.landing` for every S3-compatible destination
//!   (its landing objects become pushed batches through the receiver's ingest core);
//! - [`reconcile`] re-enqueues the task a window in flight waits for once it has sat in
//!   its state longer than a timeout (planned/fetching → fetch, staged → encrypt,
//!   sealed → upload), so emptying Redis entirely loses nothing.
//!
//! Both use the stages' own idempotency keys (`{kind}:{window_id}`), so a task that is
//! still pending or active absorbs the new one: running either any number of times never
//! puts two live messages for one (kind, window) in the queue. Both read the ledger in
//! keyset-paged batches of [`BATCH`] rows, so memory stays bounded whatever the backlog.
//!
//! Every window task they send carries its window's priority and its tenant as the
//! fairness group (docs/QUEUE.md, "Order and fairness"): a window ending within
//! [`LiveEdge`] of the planning horizon is `live` (the real-time edge), an older one
//! `backfill`; the stages' follow-ups inherit both.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rainlogs_archive::ledger::{self, WindowState};
use rainlogs_archive::pipeline::WindowTask;
use rainlogs_core::config::{ConfigError, ConfigSource};
use rainlogs_core::db::DbError;
use rainlogs_core::error::{Classify, ErrorClass};
use rainlogs_core::task::{kinds, Priority, TaskSpec};
use tokio::sync::watch;
use uuid::Uuid;

use crate::app::App;
use crate::queue::{Enqueued, QueueError};

/// Rows read from the ledger (and tasks pushed to Redis) per round trip.
pub const BATCH: i64 = 500;

/// Why a scheduling or reconciling pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("scheduler: {0}")]
    Db(#[from] DbError),
    #[error("scheduler: {0}")]
    Queue(#[from] QueueError),
}

impl Classify for ReconcileError {
    fn class(&self) -> ErrorClass {
        match self {
            ReconcileError::Db(e) => e.class(),
            // Redis is transport: a failed push is retried on the next pass.
            ReconcileError::Queue(_) => ErrorClass::Retryable,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ReconcileError::Db(e) => e.code(),
            ReconcileError::Queue(_) => "queue.unavailable",
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Windows newly added to the ledger (scheduler only).
    pub planned: u64,
    /// Tasks that entered the queue.
    pub enqueued: u64,
    /// Tasks absorbed by a pending or active task with the same idempotency key.
    pub duplicates: u64,
}

impl PassReport {
    fn count(&mut self, outcomes: &[Enqueued]) {
        for o in outcomes {
            match o {
                Enqueued::New(_) => self.enqueued += 1,
                Enqueued::Duplicate { .. } => self.duplicates += 1,
            }
        }
    }
}

/// How close to the planning horizon (now − `RAINLOGS_PLAN_MARGIN_SECS`) a window must
/// end to be `live` rather than `backfill`: the larger of this and its zone's cadence,
/// so a zone's newest window is always live (`RAINLOGS_LIVE_EDGE_SECS`, default 120).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveEdge(pub Duration);

impl LiveEdge {
    pub const VAR: &'static str = "RAINLOGS_LIVE_EDGE_SECS";

    pub fn from_source(src: &ConfigSource) -> Result<Self, ConfigError> {
        let secs: u64 = src.parsed_or(Self::VAR, Self::default().0.as_secs())?;
        if !(1..=86_400).contains(&secs) {
            return Err(ConfigError::Invalid {
                var: Self::VAR.into(),
                reason: format!("{secs} is outside 1..=86400 seconds"),
            });
        }
        Ok(Self(Duration::from_secs(secs)))
    }

    /// Seconds, as the SQL below takes them.
    fn secs(self) -> f64 {
        self.0.as_secs_f64()
    }
}

impl Default for LiveEdge {
    fn default() -> Self {
        Self(Duration::from_secs(120))
    }
}

/// A window task in its window's lane and its tenant's fairness group.
fn window_spec(window_id: i64, kind: &str, live: bool, tenant: Uuid) -> TaskSpec {
    let priority = if live {
        Priority::Live
    } else {
        Priority::Backfill
    };
    WindowTask { window_id }.routed(kind, priority, tenant)
}

/// Plans every non-paused pull zone up to `now` and enqueues `fetch.window` for the windows
/// this pass planned. Windows planned earlier whose task went missing (Redis emptied, an
/// enqueue that failed) are the reconciler's: re-sending every planned window on every
/// pass would push a whole 7-day backfill through Redis every few seconds.
pub async fn plan_and_enqueue(app: &App, now: DateTime<Utc>) -> Result<PassReport, ReconcileError> {
    let mut report = PassReport::default();
    // Window ids only grow: everything above this one is planned by this pass.
    let newest_before: i64 =
        sqlx::query_scalar!(r#"SELECT coalesce(max(id), 0) AS "newest!" FROM windows"#)
            .fetch_one(&app.pool)
            .await
            .map_err(|e| DbError::query("read newest window id", e))?;
    // Only pull zones are planned window by window: push zones receive their logs from
    // Logpush, hybrid zones will be repaired gap by gap (docs/INGEST.md). One statement
    // for every zone: a pass costs the same few round trips for 10 zones or 10,000.
    report.planned += ledger::plan_pull_zones(&app.pool, now, &app.plan).await?;
    let horizon = now - app.plan.margin.max(ledger::LOGPULL_MIN_DELAY);
    let mut after_id = newest_before;
    loop {
        // Paused zones keep their planned windows parked until they resume.
        let rows = sqlx::query!(
            r#"SELECT w.id, z.tenant_id,
                      w.end_at > $3::timestamptz - make_interval(secs => greatest(z.cadence_seconds::float8, $4::float8))
                        AS "live!"
               FROM windows w JOIN zones z ON z.id = w.zone_id
               WHERE w.state = 'planned' AND NOT z.paused AND NOT z.demo AND w.id > $1
               ORDER BY w.id LIMIT $2"#,
            after_id,
            BATCH,
            horizon,
            app.live_edge.secs(),
        )
        .fetch_all(&app.pool)
        .await
        .map_err(|e| DbError::query("list planned windows", e))?;
        let Some(last) = rows.last().map(|r| r.id) else {
            break;
        };
        let specs: Vec<TaskSpec> = rows
            .into_iter()
            .map(|r| window_spec(r.id, kinds::FETCH_WINDOW, r.live, r.tenant_id))
            .collect();
        report.count(&app.queue.enqueue_many(specs).await?);
        after_id = last;
    }
    Ok(report)
}

/// Enqueues `encrypt.window` for every pushed batch the receiver has staged (windows
/// with a `batch_id` in state `staged`), so a batch moves on within one scheduler
/// interval of its acknowledgement. The receiver does not talk to Redis: the ledger row
/// it commits is the hand-off, as it is for planned windows. Re-sending a batch whose
/// task is pending or active is absorbed by its idempotency key.
pub async fn enqueue_pushed(app: &App) -> Result<PassReport, ReconcileError> {
    let mut report = PassReport::default();
    let mut after_id = 0i64;
    loop {
        let rows = sqlx::query!(
            "SELECT w.id, z.tenant_id FROM windows w JOIN zones z ON z.id = w.zone_id
             WHERE w.batch_id IS NOT NULL AND w.state = 'staged'
               AND NOT z.paused AND NOT z.demo AND w.id > $1
             ORDER BY w.id LIMIT $2",
            after_id,
            BATCH,
        )
        .fetch_all(&app.pool)
        .await
        .map_err(|e| DbError::query("list staged push batches", e))?;
        let Some(last) = rows.last().map(|r| r.id) else {
            break;
        };
        // A pushed batch is the newest data there is: the live lane.
        let specs: Vec<TaskSpec> = rows
            .iter()
            .map(|r| window_spec(r.id, kinds::ENCRYPT_WINDOW, true, r.tenant_id))
            .collect();
        report.count(&app.queue.enqueue_many(specs).await?);
        after_id = last;
    }
    Ok(report)
}

/// Enqueues `ingest.landing` for every S3-compatible destination when a landing bucket
/// is configured (and the kms, which sealing needs): one task per destination, its
/// idempotency key absorbing passes while it is pending or running. Disabled
/// destinations too: what Cloudflare already wrote is only in landing.
pub async fn enqueue_landing(app: &App) -> Result<PassReport, ReconcileError> {
    let mut report = PassReport::default();
    if app.landing.is_none() || app.kms.is_none() {
        return Ok(report);
    }
    let specs: Vec<TaskSpec> = rainlogs_archive::landing::destinations(&app.pool)
        .await?
        .iter()
        .map(|d| rainlogs_receiver::landing::LandingTask { destination: d.id }.spec())
        .collect();
    if !specs.is_empty() {
        report.count(&app.queue.enqueue_many(specs).await?);
    }
    Ok(report)
}

/// Plans every hybrid zone's Logpull repair windows (`repair::plan_repairs`: slots
/// push delivered nothing for) and enqueues their fetches.
pub async fn plan_repairs_and_enqueue(
    app: &App,
    now: DateTime<Utc>,
) -> Result<PassReport, ReconcileError> {
    let mut report = PassReport::default();
    for zone in rainlogs_archive::repair::hybrid_zones(&app.pool).await? {
        let ids =
            rainlogs_archive::repair::plan_repairs(&app.pool, zone.zone, now, &app.repair).await?;
        report.planned += ids.len() as u64;
        // Repairs fill past gaps (at least the repair lag old): the backfill lane.
        let sent = enqueue_fetches(&app.queue, zone.tenant, &ids).await?;
        report.enqueued += sent.enqueued;
        report.duplicates += sent.duplicates;
    }
    Ok(report)
}

/// Enqueues `fetch.window` for these windows of `tenant` now (windows re-planned by
/// `rainlogs zone retry-failed`: old, so backfill), in batches; duplicates are absorbed
/// by the idempotency keys. Without it the reconciler sends them once they are
/// `RAINLOGS_RECONCILE_AFTER_MS` old.
pub async fn enqueue_fetches(
    queue: &crate::queue::Queue,
    tenant: Uuid,
    window_ids: &[i64],
) -> Result<PassReport, ReconcileError> {
    let mut report = PassReport::default();
    for chunk in window_ids.chunks(BATCH as usize) {
        let specs: Vec<TaskSpec> = chunk
            .iter()
            .map(|&window_id| window_spec(window_id, kinds::FETCH_WINDOW, false, tenant))
            .collect();
        report.count(&queue.enqueue_many(specs).await?);
    }
    Ok(report)
}

/// Re-enqueues the next task of every window in flight (planned, fetching, staged,
/// sealed) whose state is older than `older_than`.
pub async fn reconcile(app: &App, older_than: Duration) -> Result<PassReport, ReconcileError> {
    let age = chrono::TimeDelta::from_std(older_than).unwrap_or(chrono::TimeDelta::MAX);
    let cutoff = Utc::now()
        .checked_sub_signed(age)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    // A window re-sent here was at the live edge when it was planned if it ends within
    // the edge of where the horizon stood `older_than` ago.
    let horizon = cutoff
        .checked_sub_signed(app.plan.margin.max(ledger::LOGPULL_MIN_DELAY))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut report = PassReport::default();
    let mut after_id = 0i64;
    loop {
        let rows = sqlx::query!(
            r#"SELECT w.id, w.state AS "state: WindowState", z.tenant_id,
                      w.end_at > $4::timestamptz - make_interval(secs => greatest(z.cadence_seconds::float8, $5::float8))
                        AS "live!"
               FROM windows w JOIN zones z ON z.id = w.zone_id
               WHERE w.state IN ('planned', 'fetching', 'staged', 'sealed')
                 AND w.state_since < $1 AND NOT z.paused AND NOT z.demo AND w.id > $2
               ORDER BY w.id LIMIT $3"#,
            cutoff,
            after_id,
            BATCH,
            horizon,
            app.live_edge.secs(),
        )
        .fetch_all(&app.pool)
        .await
        .map_err(|e| DbError::query("list stuck windows", e))?;
        let Some(last) = rows.last().map(|r| r.id) else {
            break;
        };
        let specs: Vec<TaskSpec> = rows
            .into_iter()
            .filter_map(|r| {
                r.state
                    .next_task()
                    .map(|kind| window_spec(r.id, kind, r.live, r.tenant_id))
            })
            .collect();
        // A backlog waiting its turn in the queue is not stuck: ask Redis which windows
        // still have their task (one round trip) and re-send only the rest.
        let keys: Vec<String> = specs
            .iter()
            .map(|s| s.idempotency_key.clone().unwrap_or_default())
            .collect();
        let held = app
            .queue
            .holds_keys(rainlogs_archive::pipeline::PIPELINE_QUEUE, &keys)
            .await?;
        let (pending, missing): (Vec<_>, Vec<_>) =
            specs.into_iter().zip(held).partition(|(_, held)| *held);
        report.duplicates += pending.len() as u64;
        let missing: Vec<TaskSpec> = missing.into_iter().map(|(spec, _)| spec).collect();
        if !missing.is_empty() {
            report.count(&app.queue.enqueue_many(missing).await?);
        }
        after_id = last;
    }
    Ok(report)
}

/// Polls the Logpush jobs due (`logpush::poll_due`) and logs what changed; a job
/// reported failing is a warning, the change row is the record (`rainlogs zone
/// coverage`, `rainlogs verify`).
pub async fn poll_logpush_jobs(app: &App, every: Duration) {
    let Some(kms) = app.kms.as_ref() else {
        return;
    };
    let polled = rainlogs_archive::logpush::poll_due(
        &app.pool,
        kms,
        &app.cloudflare,
        every,
        SchedulerConfig::LOGPUSH_POLLS_PER_PASS,
    )
    .await;
    match polled {
        Err(e) => tracing::warn!(code = e.code(), error = %e, "logpush poll pass failed"),
        Ok(results) => {
            for (job, result) in results {
                match result {
                    Ok(p) if p.changed => tracing::warn!(
                        %job,
                        zone = %p.job.zone_name,
                        dataset = %p.job.dataset,
                        enabled = p.job.enabled,
                        gone = p.gone,
                        last_complete = ?p.job.last_complete,
                        last_error = ?p.job.last_error,
                        error_message = p.job.error_message.as_deref().unwrap_or(""),
                        "logpush job status changed"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(%job, code = e.code(), error = %e, "logpush job poll failed")
                    }
                }
            }
        }
    }
}

/// How often the scheduler runs and when a window counts as stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Pause between passes; zero turns the scheduler and reconciler off in this process.
    pub interval: Duration,
    /// A window in flight longer than this in one state is re-enqueued.
    pub reconcile_after: Duration,
    /// How often each Logpush job's status is polled at Cloudflare (zero: never).
    pub logpush_poll: Duration,
}

impl SchedulerConfig {
    pub const INTERVAL_MS: &'static str = "RAINLOGS_SCHEDULER_INTERVAL_MS";
    pub const RECONCILE_AFTER_MS: &'static str = "RAINLOGS_RECONCILE_AFTER_MS";
    pub const LOGPUSH_POLL_SECS: &'static str = "RAINLOGS_LOGPUSH_POLL_SECS";
    /// Jobs polled in one scheduler pass at most (the rest wait for the next pass).
    pub const LOGPUSH_POLLS_PER_PASS: i64 = 50;

    pub fn from_source(src: &ConfigSource) -> Result<Self, ConfigError> {
        Ok(Self {
            interval: src.duration_ms_or(Self::INTERVAL_MS, Duration::from_secs(15))?,
            reconcile_after: src
                .duration_ms_or(Self::RECONCILE_AFTER_MS, Duration::from_secs(300))?,
            logpush_poll: {
                // Cloudflare's API allows 1,200 requests in 5 minutes per user: a poll a
                // job every 5 minutes by default, never more often than every 30 s.
                let secs: u64 = src.parsed_or(Self::LOGPUSH_POLL_SECS, 300)?;
                if secs != 0 && secs < 30 {
                    return Err(ConfigError::Invalid {
                        var: Self::LOGPUSH_POLL_SECS.into(),
                        reason: format!("{secs}: 0 (off) or at least 30 seconds"),
                    });
                }
                Duration::from_secs(secs)
            },
        })
    }
}

/// Plans, enqueues and reconciles every `cfg.interval` until `shutdown` turns true.
/// A failed pass is logged and retried on the next tick: the ledger is unchanged by a
/// failure, so nothing is lost by waiting.
pub async fn run_loop(app: App, cfg: SchedulerConfig, mut shutdown: watch::Receiver<bool>) {
    if cfg.interval.is_zero() {
        tracing::info!("scheduler off ({} = 0)", SchedulerConfig::INTERVAL_MS);
        return;
    }
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
        match plan_and_enqueue(&app, Utc::now()).await {
            Ok(r) if r.planned + r.enqueued > 0 => {
                tracing::info!(planned = r.planned, enqueued = r.enqueued, "scheduler pass")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(code = e.code(), error = %e, "scheduler pass failed"),
        }
        match plan_repairs_and_enqueue(&app, Utc::now()).await {
            Ok(r) if r.planned > 0 => {
                tracing::info!(
                    planned = r.planned,
                    "hybrid zones: push gaps sent to Logpull"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(code = e.code(), error = %e, "repair pass failed"),
        }
        match enqueue_pushed(&app).await {
            Ok(r) if r.enqueued > 0 => {
                tracing::info!(enqueued = r.enqueued, "pushed batches sent to encrypt")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(code = e.code(), error = %e, "push pass failed"),
        }
        match enqueue_landing(&app).await {
            Ok(r) if r.enqueued > 0 => {
                tracing::debug!(enqueued = r.enqueued, "landing destinations sent to ingest")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(code = e.code(), error = %e, "landing pass failed"),
        }
        if !cfg.logpush_poll.is_zero() {
            poll_logpush_jobs(&app, cfg.logpush_poll).await;
        }
        match reconcile(&app, cfg.reconcile_after).await {
            Ok(r) if r.enqueued > 0 => {
                tracing::info!(
                    enqueued = r.enqueued,
                    "reconciler re-enqueued stuck windows"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(code = e.code(), error = %e, "reconciler pass failed"),
        }
    }
    tracing::info!("scheduler stopped");
}
