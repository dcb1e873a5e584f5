//! The scheduler and the reconciler: Postgres (the window ledger) is the truth, Redis
//! only carries messages about it, so both re-derive what to enqueue from the ledger.
//!
//! Demo zones (`zones.demo`) are left out of both: a `rainlogs demo` run drives its own
//! zones on its own queue scope, and nothing else may.
//!
//! - [`plan_and_enqueue`] plans the windows of every non-paused zone
//!   ([`ledger::plan_zone`], `App::plan`'s safety margin behind now) and enqueues a `fetch.window` task for each `planned` window;
//! - [`enqueue_pushed`] sends `encrypt.window` for pushed batches the receiver staged;
//! - [`reconcile`] re-enqueues the task a window in flight waits for once it has sat in
//!   its state longer than a timeout (planned/fetching → fetch, staged → encrypt,
//!   sealed → upload), so emptying Redis entirely loses nothing.
//!
//! Both use the stages' own idempotency keys (`{kind}:{window_id}`), so a task that is
//! still pending or active absorbs the new one: running either any number of times never
//! puts two live messages for one (kind, window) in the queue. Both read the ledger in
//! keyset-paged batches of [`BATCH`] rows, so memory stays bounded whatever the backlog.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rainlogs_archive::ledger::{self, WindowState};
use rainlogs_archive::pipeline::WindowTask;
use rainlogs_core::config::{ConfigError, ConfigSource};
use rainlogs_core::db::DbError;
use rainlogs_core::error::{Classify, ErrorClass};
use rainlogs_core::task::{kinds, TaskSpec};
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
    let mut after = Uuid::nil();
    loop {
        let zones: Vec<Uuid> = sqlx::query_scalar!(
            // Only pull zones are planned window by window: push zones receive their
            // logs from Logpush, hybrid zones will be repaired gap by gap (docs/INGEST.md).
            "SELECT id FROM zones
             WHERE NOT paused AND NOT demo AND mode = 'pull' AND id > $1 ORDER BY id LIMIT $2",
            after,
            BATCH,
        )
        .fetch_all(&app.pool)
        .await
        .map_err(|e| DbError::query("list zones to plan", e))?;
        let Some(last) = zones.last().copied() else {
            break;
        };
        for zone in zones {
            report.planned += ledger::plan_zone(&app.pool, zone, now, &app.plan).await?;
        }
        after = last;
    }
    let mut after_id = newest_before;
    loop {
        // Paused zones keep their planned windows parked until they resume.
        let ids: Vec<i64> = sqlx::query_scalar!(
            "SELECT w.id FROM windows w JOIN zones z ON z.id = w.zone_id
             WHERE w.state = 'planned' AND NOT z.paused AND NOT z.demo AND w.id > $1
             ORDER BY w.id LIMIT $2",
            after_id,
            BATCH,
        )
        .fetch_all(&app.pool)
        .await
        .map_err(|e| DbError::query("list planned windows", e))?;
        let Some(last) = ids.last().copied() else {
            break;
        };
        let specs: Vec<TaskSpec> = ids
            .into_iter()
            .map(|window_id| WindowTask { window_id }.spec(kinds::FETCH_WINDOW))
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
        let ids: Vec<i64> = sqlx::query_scalar!(
            "SELECT w.id FROM windows w JOIN zones z ON z.id = w.zone_id
             WHERE w.batch_id IS NOT NULL AND w.state = 'staged'
               AND NOT z.paused AND NOT z.demo AND w.id > $1
             ORDER BY w.id LIMIT $2",
            after_id,
            BATCH,
        )
        .fetch_all(&app.pool)
        .await
        .map_err(|e| DbError::query("list staged push batches", e))?;
        let Some(last) = ids.last().copied() else {
            break;
        };
        let specs: Vec<TaskSpec> = ids
            .into_iter()
            .map(|window_id| WindowTask { window_id }.spec(kinds::ENCRYPT_WINDOW))
            .collect();
        report.count(&app.queue.enqueue_many(specs).await?);
        after_id = last;
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
        let ids = rainlogs_archive::repair::plan_repairs(&app.pool, zone, now, &app.repair).await?;
        report.planned += ids.len() as u64;
        for chunk in ids.chunks(BATCH as usize) {
            let specs: Vec<TaskSpec> = chunk
                .iter()
                .map(|&window_id| WindowTask { window_id }.spec(kinds::FETCH_WINDOW))
                .collect();
            report.count(&app.queue.enqueue_many(specs).await?);
        }
    }
    Ok(report)
}

/// Enqueues `fetch.window` for these windows now (windows re-planned by `rainlogs zone
/// retry-failed`), in batches; duplicates are absorbed by the idempotency keys. Without
/// it the reconciler sends them once they are `RAINLOGS_RECONCILE_AFTER_MS` old.
pub async fn enqueue_fetches(
    queue: &crate::queue::Queue,
    window_ids: &[i64],
) -> Result<PassReport, ReconcileError> {
    let mut report = PassReport::default();
    for chunk in window_ids.chunks(BATCH as usize) {
        let specs: Vec<TaskSpec> = chunk
            .iter()
            .map(|&window_id| WindowTask { window_id }.spec(kinds::FETCH_WINDOW))
            .collect();
        report.count(&queue.enqueue_many(specs).await?);
    }
    Ok(report)
}

/// Re-enqueues the next task of every window in flight (planned, fetching, staged,
/// sealed) whose state is older than `older_than`.
pub async fn reconcile(app: &App, older_than: Duration) -> Result<PassReport, ReconcileError> {
    let cutoff =
        Utc::now() - chrono::TimeDelta::from_std(older_than).unwrap_or(chrono::TimeDelta::MAX);
    let mut report = PassReport::default();
    let mut after_id = 0i64;
    loop {
        let rows: Vec<(i64, WindowState)> = sqlx::query!(
            r#"SELECT w.id, w.state AS "state: WindowState"
               FROM windows w JOIN zones z ON z.id = w.zone_id
               WHERE w.state IN ('planned', 'fetching', 'staged', 'sealed')
                 AND w.state_since < $1 AND NOT z.paused AND NOT z.demo AND w.id > $2
               ORDER BY w.id LIMIT $3"#,
            cutoff,
            after_id,
            BATCH,
        )
        .fetch_all(&app.pool)
        .await
        .map_err(|e| DbError::query("list stuck windows", e))?
        .into_iter()
        .map(|r| (r.id, r.state))
        .collect();
        let Some(&(last, _)) = rows.last() else {
            break;
        };
        let specs: Vec<TaskSpec> = rows
            .into_iter()
            .filter_map(|(window_id, state)| {
                state
                    .next_task()
                    .map(|kind| WindowTask { window_id }.spec(kind))
            })
            .collect();
        if !specs.is_empty() {
            report.count(&app.queue.enqueue_many(specs).await?);
        }
        after_id = last;
    }
    Ok(report)
}

/// How often the scheduler runs and when a window counts as stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Pause between passes; zero turns the scheduler and reconciler off in this process.
    pub interval: Duration,
    /// A window in flight longer than this in one state is re-enqueued.
    pub reconcile_after: Duration,
}

impl SchedulerConfig {
    pub const INTERVAL_MS: &'static str = "RAINLOGS_SCHEDULER_INTERVAL_MS";
    pub const RECONCILE_AFTER_MS: &'static str = "RAINLOGS_RECONCILE_AFTER_MS";

    pub fn from_source(src: &ConfigSource) -> Result<Self, ConfigError> {
        Ok(Self {
            interval: src.duration_ms_or(Self::INTERVAL_MS, Duration::from_secs(15))?,
            reconcile_after: src
                .duration_ms_or(Self::RECONCILE_AFTER_MS, Duration::from_secs(300))?,
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
