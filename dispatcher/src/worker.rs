//! The dispatch loop: reserve tasks in batches, run them concurrently through an
//! invoker, and settle the outcomes (ack, retry, dead-letter) in batches.
//!
//! One [`Worker::run`] drives, per queue, a fetch loop bounded by that queue's
//! concurrency limit, plus helpers shared by all queues:
//! - the *settler* turns finished tasks into one settle script call per batch;
//! - the *heartbeat* extends the leases of every task still running. It runs on a
//!   thread of its own, with its own single-threaded runtime and Redis connection, so
//!   handlers that keep the main runtime's threads busy (CPU work, a saturated
//!   machine) cannot make it late: a lease is lost only when the process stops or
//!   cannot reach Redis. A lease it finds lost anyway is counted and its task aborted
//!   (the new holder runs it; stages are idempotent);
//! - the *governor* measures how late the main runtime wakes a timer (its lag: the
//!   time runnable work waits for a CPU) and adapts every queue's concurrency to it,
//!   additive increase and multiplicative decrease, so a saturated dispatcher takes
//!   fewer tasks instead of slowing all of them down;
//! - the *reaper* takes over tasks whose holder stopped heartbeating (a dead or hung
//!   process) and settles them as failed attempts, so they are retried or dead-lettered;
//! - the *scheduler* fires cron schedules.
//!
//! Shutdown (the watch channel turning true) stops reserving, lets running tasks
//! finish until the grace deadline, then hands the rest back to the front of their
//! queue, flushes the settler and returns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use rainlogs_core::task::{HandlerOutput, TaskEnvelope};
use rainlogs_core::TaskError;
use rand::Rng;
use tokio::sync::{mpsc, oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use crate::config::{DispatcherConfig, QueueLimit};
use crate::invoker::Invoker;
use crate::metrics::Metrics;
use crate::queue::{DeadLetter, Delivery, Queue, QueueError, Settle, Settlement};

/// Retry timing: exponential backoff with full jitter, capped; a handler's Retry-After
/// hint is honoured up to `max_hint`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// The longest a Retry-After hint may delay a retry: an upstream's huge or hostile
    /// Retry-After must not park a task (and its window's dedup key) for days — past
    /// Cloudflare's 7 days the window would be lost.
    pub max_hint: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(300),
            max_hint: Duration::from_secs(900),
        }
    }
}

impl Backoff {
    /// The largest delay after failed attempt `attempt`: min(cap, base·2^(attempt-1)).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30)))
            .min(self.cap)
    }

    /// Delay before attempt `attempt + 1`: uniform in [0, ceiling(attempt)] ("full
    /// jitter"), so retries of many tasks failing together spread out.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let ms = rand::thread_rng().gen_range(0..=ceiling.as_millis() as u64);
        Duration::from_millis(ms)
    }

    /// The delay for a failed attempt: the jittered backoff, but never shorter than
    /// the handler's Retry-After hint — itself never longer than `max_hint`.
    pub fn delay_with_hint(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        let hint = hint.unwrap_or_default();
        if hint > self.max_hint {
            tracing::warn!(
                hint_ms = hint.as_millis() as u64,
                max_ms = self.max_hint.as_millis() as u64,
                "Retry-After hint capped"
            );
        }
        self.delay(attempt).max(hint.min(self.max_hint))
    }
}

/// A task this process holds a lease on.
struct InFlight {
    queue: String,
    abort: Option<AbortHandle>,
    delivery: Delivery,
    /// The heartbeat found the lease gone: counted there, once.
    lost: bool,
    /// Its settle is on the way to Redis: the lease leaves `active` there, which a
    /// heartbeat racing it must not take for a lost lease.
    settling: bool,
}

// Settles are the hot path and travel unboxed; the rare Close is the small one.
#[allow(clippy::large_enum_variant)]
enum SettleMsg {
    /// A finished task, with its concurrency permit: released only once settled, so
    /// running plus unsettled tasks stay within the queue's limit (bounded memory).
    Settle(Settle, Option<OwnedSemaphorePermit>),
    /// Flush what is queued, then stop.
    Close(oneshot::Sender<()>),
}

struct Shared {
    queue: Queue,
    invoker: Arc<dyn Invoker>,
    cfg: DispatcherConfig,
    backoff: Backoff,
    metrics: Metrics,
    in_flight: Mutex<HashMap<String, InFlight>>,
    /// Signalled whenever a settled task leaves `in_flight`.
    drained: Notify,
    /// Signalled whenever a concurrency slot frees up or the governor raises a limit.
    slots: Notify,
    /// Per queue (in `cfg.queues` order), how many tasks the governor allows at once.
    limits: Vec<AtomicUsize>,
    /// This process as the monitor lists it (announced with each heartbeat tick).
    id: uuid::Uuid,
    started_at: chrono::DateTime<Utc>,
}

impl Shared {
    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, InFlight>> {
        // A panic while holding this lock leaves a plain map behind: keep using it.
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a lease the heartbeat found lost: counts it (once) and aborts its task,
    /// whose new holder runs it again; running on would only do the work twice.
    fn lose(&self, lease: &str) {
        let mut map = self.in_flight();
        let Some(entry) = map.get_mut(lease) else {
            return;
        };
        if entry.lost || entry.settling {
            return;
        }
        entry.lost = true;
        tracing::warn!(queue = %entry.queue, %lease, "lease lost while running (expired before a heartbeat); task aborted, its new holder runs it");
        self.metrics
            .lease_lost
            .with_label_values(&[entry.queue.as_str()])
            .inc();
        if let Some(abort) = &entry.abort {
            abort.abort();
        }
    }
}

/// Held by a running task: keeps the in-flight gauge honest and, when the task is
/// aborted (lost lease) before handing its result to the settler, removes it from
/// the in-flight map so nothing heartbeats a lease nobody settles.
struct Running {
    shared: Arc<Shared>,
    lease: String,
    gauge: prometheus::IntGauge,
    handed_over: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.gauge.dec();
        if !self.handed_over {
            self.shared.in_flight().remove(&self.lease);
            self.shared.drained.notify_waiters();
            self.shared.slots.notify_waiters();
        }
    }
}

/// Consumes queues and runs tasks through an invoker.
pub struct Worker {
    queue: Queue,
    invoker: Arc<dyn Invoker>,
    cfg: DispatcherConfig,
    backoff: Backoff,
    metrics: Metrics,
}

impl Worker {
    /// A worker over `queues` with default settings.
    pub fn new(queue: Queue, invoker: Arc<dyn Invoker>, queues: Vec<String>) -> Self {
        Self::with_config(
            queue,
            invoker,
            DispatcherConfig::default().with_queue_names(&queues),
        )
    }

    pub fn with_config(queue: Queue, invoker: Arc<dyn Invoker>, cfg: DispatcherConfig) -> Self {
        let backoff = Backoff {
            base: cfg.retry_base,
            cap: cfg.retry_cap,
            max_hint: cfg.retry_after_max,
        };
        Self {
            queue,
            invoker,
            cfg,
            backoff,
            metrics: Metrics::new(),
        }
    }

    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Reports into `metrics` (e.g. the registry the HTTP endpoint serves).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn config(&self) -> &DispatcherConfig {
        &self.cfg
    }

    /// Runs until `shutdown` turns true, then shuts down gracefully (see module doc).
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> Result<(), QueueError> {
        let shared = Arc::new(Shared {
            queue: self.queue.clone(),
            invoker: Arc::clone(&self.invoker),
            cfg: self.cfg.clone(),
            backoff: self.backoff,
            metrics: self.metrics.clone(),
            in_flight: Mutex::new(HashMap::new()),
            drained: Notify::new(),
            slots: Notify::new(),
            limits: self
                .cfg
                .queues
                .iter()
                .map(|q| AtomicUsize::new(q.concurrency))
                .collect(),
            id: uuid::Uuid::new_v4(),
            started_at: Utc::now(),
        });
        for q in &self.cfg.queues {
            self.metrics
                .concurrency_limit
                .with_label_values(&[q.name.as_str()])
                .set(q.concurrency as i64);
        }
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = watch::channel(false);
        let settler = tokio::spawn(settler(Arc::clone(&shared), settle_rx));
        // Without a client of its own (a queue built without one), the heartbeat runs
        // on this runtime as a task, as it did before it had a thread.
        let heartbeat_thread = spawn_heartbeat_thread(Arc::clone(&shared), stop_rx.clone());
        let heartbeat_task = match heartbeat_thread {
            Some(_) => None,
            None => Some(tokio::spawn(heartbeat(
                Arc::clone(&shared),
                stop_rx.clone(),
                None,
            ))),
        };
        let helpers = [
            tokio::spawn(governor(Arc::clone(&shared), stop_rx.clone())),
            tokio::spawn(reaper(
                Arc::clone(&shared),
                settle_tx.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(scheduler(Arc::clone(&shared), stop_rx.clone())),
        ];
        let fetchers: Vec<_> = self
            .cfg
            .queues
            .iter()
            .enumerate()
            .map(|(index, limit)| {
                tokio::spawn(fetch_loop(
                    Arc::clone(&shared),
                    index,
                    limit.clone(),
                    settle_tx.clone(),
                    shutdown.clone(),
                ))
            })
            .collect();
        // Wait for shutdown; the fetch loops see it too and stop reserving.
        let _ = shutdown.wait_for(|s| *s).await;
        for f in fetchers {
            let _ = f.await;
        }
        let deadline = tokio::time::Instant::now() + self.cfg.shutdown_grace;
        loop {
            let notified = shared.drained.notified();
            if shared.in_flight().is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        // Past the deadline: stop what still runs and give it back to its queue.
        let leftovers: Vec<Delivery> = shared
            .in_flight()
            .values()
            .map(|f| {
                if let Some(a) = &f.abort {
                    a.abort();
                }
                f.delivery.clone()
            })
            .collect();
        if !leftovers.is_empty() {
            tracing::warn!(
                count = leftovers.len(),
                "grace period over; handing unfinished tasks back"
            );
        }
        for delivery in leftovers {
            let _ = settle_tx.send(SettleMsg::Settle(
                Settle {
                    delivery,
                    settlement: Settlement::Requeue,
                },
                None,
            ));
        }
        let (done_tx, done_rx) = oneshot::channel();
        let _ = settle_tx.send(SettleMsg::Close(done_tx));
        let _ = done_rx.await;
        let _ = stop_tx.send(true);
        for h in helpers {
            let _ = h.await;
        }
        if let Some(h) = heartbeat_task {
            let _ = h.await;
        }
        if let Some(thread) = heartbeat_thread {
            // The thread sees the stop at its next tick at the latest.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        let _ = settler.await;
        Ok(())
    }
}

async fn fetch_loop(
    shared: Arc<Shared>,
    index: usize,
    limit: QueueLimit,
    settle_tx: mpsc::UnboundedSender<SettleMsg>,
    mut shutdown: watch::Receiver<bool>,
) {
    let q = limit.name.as_str();
    let sem = Arc::new(Semaphore::new(limit.concurrency));
    let mut blocking = None;
    let lease = shared.cfg.lease;
    while !*shutdown.borrow() {
        // Registered before looking, so a slot freed in between is not missed.
        let slot_freed = shared.slots.notified();
        tokio::pin!(slot_freed);
        slot_freed.as_mut().enable();
        let running = limit.concurrency - sem.available_permits();
        let allowed = shared.limits[index].load(Ordering::Relaxed);
        let free = allowed.saturating_sub(running).min(sem.available_permits());
        if free == 0 {
            tokio::select! {
                _ = slot_freed => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let reserved = match shared
            .queue
            .reserve(q, free.min(shared.cfg.batch), lease)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(queue = q, error = %e, "cannot reserve tasks; retrying in 1 s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        };
        let got = reserved.deliveries.len();
        for delivery in reserved.deliveries {
            match Arc::clone(&sem).try_acquire_owned() {
                Ok(permit) => start(&shared, delivery, permit, &settle_tx),
                // Cannot happen (only this loop takes permits), but never drop a task.
                Err(_) => {
                    let _ = settle_tx.send(SettleMsg::Settle(
                        Settle {
                            delivery,
                            settlement: Settlement::Requeue,
                        },
                        None,
                    ));
                }
            }
        }
        if got > 0 || reserved.more {
            continue;
        }
        let mut wait = shared.cfg.idle_wait;
        if let Some(due) = reserved.next_due_ms {
            let until = (due - Utc::now().timestamp_millis()).max(1) as u64;
            wait = wait.min(Duration::from_millis(until));
        }
        if reserved.paused {
            tokio::select! {
                _ = tokio::time::sleep(shared.cfg.idle_wait) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        tokio::select! {
            r = shared.queue.wait_for_work(&mut blocking, q, wait) => {
                if let Err(e) = r {
                    tracing::warn!(queue = q, error = %e, "idle wait failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            _ = shutdown.changed() => {}
        }
    }
}

/// Starts one task; its permit is released when the handler returns.
fn start(
    shared: &Arc<Shared>,
    delivery: Delivery,
    permit: OwnedSemaphorePermit,
    settle_tx: &mpsc::UnboundedSender<SettleMsg>,
) {
    let lease = delivery.lease.clone();
    let queue = delivery.queue.clone();
    let gauge = shared
        .metrics
        .in_flight
        .with_label_values(&[queue.as_str()]);
    gauge.inc();
    shared.in_flight().insert(
        lease.clone(),
        InFlight {
            queue,
            abort: None,
            delivery: delivery.lease_only(),
            lost: false,
            settling: false,
        },
    );
    let task_shared = Arc::clone(shared);
    let tx = settle_tx.clone();
    let mut running = Running {
        shared: Arc::clone(shared),
        lease: lease.clone(),
        gauge,
        handed_over: false,
    };
    let handle = tokio::spawn(async move {
        let settle = execute(&task_shared, delivery).await;
        running.handed_over = true;
        drop(running);
        let _ = tx.send(SettleMsg::Settle(settle, Some(permit)));
    });
    if let Some(entry) = shared.in_flight().get_mut(&lease) {
        entry.abort = Some(handle.abort_handle());
    }
}

/// Runs one delivery through its function and decides how it ends.
async fn execute(shared: &Shared, delivery: Delivery) -> Settle {
    let envelope = match &delivery.envelope {
        Ok(env) => env.clone(),
        Err(e) => {
            let err = TaskError::from(e.clone());
            tracing::warn!(queue = %delivery.queue, id = %delivery.id, error = %err, "poison message dead-lettered");
            let letter = dead_letter(&delivery, None, err, None);
            return Settle {
                delivery,
                settlement: Settlement::Dead(letter),
            };
        }
    };
    let started = Utc::now();
    let since = envelope
        .not_before
        .map_or(envelope.enqueued_at, |nb| nb.max(envelope.enqueued_at));
    let latency = (started - since).to_std().unwrap_or_default();
    shared
        .metrics
        .start_latency
        .with_label_values(&[delivery.queue.as_str()])
        .observe(latency.as_secs_f64());
    let result = match envelope.function() {
        Some(function) => match serde_json::to_value(&envelope) {
            // Every invoker is guarded, not only the in-process one: a panic anywhere
            // under `invoke` is a failed attempt, never a task lost to an ended future.
            Ok(event) => {
                crate::invoker::settle_panic(function, shared.invoker.invoke(function, event)).await
            }
            Err(e) => Err(TaskError::permanent("envelope.invalid", e.to_string())),
        },
        None => Err(TaskError::permanent(
            "envelope.invalid",
            "kind names no function",
        )),
    };
    shared
        .metrics
        .task_seconds
        .with_label_values(&[delivery.queue.as_str(), envelope.kind.as_str()])
        .observe(
            (Utc::now() - started)
                .to_std()
                .unwrap_or_default()
                .as_secs_f64(),
        );
    let settlement = decide(&shared.backoff, &delivery, &envelope, result, started);
    Settle {
        delivery,
        settlement,
    }
}

/// The end of one attempt: ack with follow-ups, another attempt, or the dead letters.
pub fn decide(
    backoff: &Backoff,
    delivery: &Delivery,
    envelope: &TaskEnvelope,
    result: Result<serde_json::Value, TaskError>,
    started: chrono::DateTime<Utc>,
) -> Settlement {
    let result = result.and_then(|value| {
        let output: HandlerOutput = serde_json::from_value(value).map_err(|e| {
            TaskError::permanent(
                "output.invalid",
                format!("function output does not parse: {e}"),
            )
        })?;
        follow_ups(envelope, output)
    });
    match result {
        Ok(next) => {
            tracing::debug!(task = %envelope.id, kind = %envelope.kind, attempt = envelope.attempt, "task done");
            Settlement::Ack { next }
        }
        Err(err) if err.is_retryable() && envelope.attempt < envelope.max_attempts => {
            let delay = backoff.delay_with_hint(
                envelope.attempt,
                err.retry_after_ms.map(Duration::from_millis),
            );
            tracing::warn!(task = %envelope.id, kind = %envelope.kind, attempt = envelope.attempt, error = %err, ?delay, "task failed, will retry");
            let due = Utc::now() + chrono::Duration::milliseconds(delay.as_millis() as i64);
            let mut next = envelope.clone();
            next.attempt += 1;
            next.not_before = Some(due);
            Settlement::Retry {
                envelope: next,
                due,
            }
        }
        Err(err) => {
            tracing::warn!(task = %envelope.id, kind = %envelope.kind, attempt = envelope.attempt, error = %err, "task dead-lettered");
            Settlement::Dead(dead_letter(delivery, Some(envelope), err, Some(started)))
        }
    }
}

/// Turns a handler's follow-up specs into envelopes, refusing ones that would not parse.
fn follow_ups(
    parent: &TaskEnvelope,
    output: HandlerOutput,
) -> Result<Vec<TaskEnvelope>, TaskError> {
    let now = Utc::now();
    output
        .next
        .into_iter()
        .map(|mut spec| {
            if !rainlogs_core::task::kinds::may_emit(&parent.kind, &spec.kind) {
                return Err(TaskError::permanent(
                    "output.forbidden_follow_up",
                    format!(
                        "task {} ({}) may not hand on a {} task",
                        parent.id, parent.kind, spec.kind
                    ),
                ));
            }
            spec.trace_id.get_or_insert_with(|| parent.trace_id.clone());
            // A window's next stage waits in its window's lane and group: a backfill
            // fetch hands on a backfill encrypt, a live one a live encrypt.
            spec.priority.get_or_insert(parent.priority);
            if spec.group.is_none() {
                spec.group = parent.group.clone();
            }
            let env = TaskEnvelope::new(spec, now);
            TaskEnvelope::parse(&env.to_json()).map_err(|e| {
                TaskError::permanent(
                    "output.invalid",
                    format!("task {}: follow-up task is invalid: {e}", parent.id),
                )
            })
        })
        .collect()
}

fn dead_letter(
    delivery: &Delivery,
    envelope: Option<&TaskEnvelope>,
    error: TaskError,
    started: Option<chrono::DateTime<Utc>>,
) -> DeadLetter {
    DeadLetter {
        id: delivery.id.clone(),
        queue: delivery.queue.clone(),
        raw: String::from_utf8_lossy(&delivery.raw).into_owned(),
        error,
        attempts: envelope.map_or(0, |e| e.attempt),
        enqueued_at: envelope.map(|e| e.enqueued_at),
        last_attempt_at: started,
        dead_at: Utc::now(),
    }
}

/// Collects settle requests and applies them in batches, one script call each.
async fn settler(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<SettleMsg>) {
    let mut closing: Option<oneshot::Sender<()>> = None;
    while closing.is_none() {
        let mut batch = Vec::new();
        let mut permits = Vec::new();
        match rx.recv().await {
            None => break,
            Some(SettleMsg::Close(done)) => closing = Some(done),
            Some(SettleMsg::Settle(s, p)) => {
                batch.push(s);
                permits.push(p);
            }
        }
        while batch.len() < shared.cfg.batch && closing.is_none() {
            match rx.try_recv() {
                Ok(SettleMsg::Settle(s, p)) => {
                    batch.push(s);
                    permits.push(p);
                }
                Ok(SettleMsg::Close(done)) => closing = Some(done),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        {
            let mut map = shared.in_flight();
            for item in &batch {
                if let Some(entry) = map.get_mut(&item.delivery.lease) {
                    entry.settling = true;
                }
            }
        }
        let mut tries = 0u32;
        let held = loop {
            match shared.queue.settle(&batch).await {
                Ok(held) => break Some(held),
                Err(e) => {
                    tries += 1;
                    // Unsettled tasks are not lost: their leases expire and the reaper
                    // (here or in another dispatcher) takes them over.
                    if closing.is_some() && tries >= 5 {
                        tracing::error!(error = %e, count = batch.len(), "cannot settle tasks; leaving them to lease expiry");
                        break None;
                    }
                    tracing::warn!(error = %e, count = batch.len(), "cannot settle tasks; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(tries.min(10)))).await;
                }
            }
        };
        let m = &shared.metrics;
        let mut map = shared.in_flight();
        for (i, item) in batch.iter().enumerate() {
            let q = item.delivery.queue.as_str();
            match held.as_ref().map(|h| h.get(i).copied().unwrap_or(false)) {
                Some(true) => match &item.settlement {
                    Settlement::Ack { .. } => m.processed.with_label_values(&[q]).inc(),
                    Settlement::Retry { .. } => {
                        m.failed.with_label_values(&[q]).inc();
                        m.retried.with_label_values(&[q]).inc();
                    }
                    Settlement::Dead(_) => {
                        m.failed.with_label_values(&[q]).inc();
                        m.dead.with_label_values(&[q]).inc();
                    }
                    Settlement::Requeue => {}
                },
                Some(false) if !matches!(item.settlement, Settlement::Requeue) => {
                    // Counted once per lost lease: here, unless the heartbeat already did.
                    if !map.get(&item.delivery.lease).is_some_and(|f| f.lost) {
                        tracing::warn!(queue = q, id = %item.delivery.id, "lease lost before settling; the new holder's result stands");
                        m.lease_lost.with_label_values(&[q]).inc();
                    }
                }
                Some(false) | None => {}
            }
            map.remove(&item.delivery.lease);
        }
        drop(map);
        drop(permits);
        shared.drained.notify_waiters();
        shared.slots.notify_waiters();
    }
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// The leases to extend: every running task's not yet found lost.
fn leases_to_extend(shared: &Shared) -> Vec<(String, String)> {
    shared
        .in_flight()
        .iter()
        .filter(|(_, f)| !f.lost)
        .map(|(lease, f)| (f.queue.clone(), lease.clone()))
        .collect()
}

/// Extends the lease of every running task, every `cfg.heartbeat`. With `client`, over
/// a connection of its own made here (the heartbeat thread: its I/O must not depend
/// on the main runtime); without, over the queue's connection.
async fn heartbeat(
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    client: Option<redis::Client>,
) {
    let every = shared.cfg.heartbeat;
    // An answer later than one beat is no use: drop the connection, try anew.
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(every))
        .set_response_timeout(Some(every));
    let mut own: Option<redis::aio::MultiplexedConnection> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let leases = leases_to_extend(&shared);
        if let (Some(client), None) = (&client, &own) {
            match client
                .get_multiplexed_async_connection_with_config(&cfg)
                .await
            {
                Ok(c) => own = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "heartbeat cannot connect to redis");
                    continue;
                }
            }
        }
        // Seen by the monitor; a failure here only hides this dispatcher from it.
        let presence = presence(&shared);
        let announced = match own.as_mut() {
            Some(c) => shared.queue.announce_on(c, &presence).await,
            None => shared.queue.announce(&presence).await,
        };
        if let Err(e) = announced {
            tracing::debug!(error = %e, "dispatcher presence not recorded");
        }
        for chunk in leases.chunks(1000) {
            let answer = match own.as_mut() {
                Some(c) => shared.queue.heartbeat_on(c, chunk, shared.cfg.lease).await,
                None => shared.queue.heartbeat(chunk, shared.cfg.lease).await,
            };
            match answer {
                Ok(held) => heartbeat_answered(&shared, chunk, &held),
                Err(e) => {
                    tracing::warn!(error = %e, "heartbeat failed");
                    own = None;
                    break;
                }
            }
        }
    }
}

/// This dispatcher's presence record: its queues, limits and running tasks.
fn presence(shared: &Shared) -> crate::queue::Presence {
    let running: HashMap<String, usize> =
        shared
            .in_flight()
            .values()
            .fold(HashMap::new(), |mut m, f| {
                *m.entry(f.queue.clone()).or_default() += 1;
                m
            });
    crate::queue::Presence {
        id: shared.id,
        host: hostname(),
        pid: std::process::id(),
        started_at: shared.started_at,
        seen_at: Utc::now(),
        queues: shared
            .cfg
            .queues
            .iter()
            .zip(&shared.limits)
            .map(|(q, limit)| {
                (
                    q.name.clone(),
                    q.concurrency,
                    limit.load(Ordering::Relaxed),
                    running.get(&q.name).copied().unwrap_or(0),
                )
            })
            .collect(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Starts the heartbeat on a thread of its own: a single-threaded runtime and a Redis
/// connection made there, so neither the timer nor the connection's I/O depends on
/// the main runtime's threads, which CPU-heavy handlers may keep busy for seconds.
/// `None` when the queue has no client to connect with, or the thread cannot start
/// (then the caller runs the heartbeat as a task).
fn spawn_heartbeat_thread(
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> Option<std::thread::JoinHandle<()>> {
    let client = shared.queue.client()?.clone();
    let spawned = std::thread::Builder::new()
        .name("rainlogs-heartbeat".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(heartbeat(shared, stop, Some(client))),
                Err(e) => {
                    tracing::error!(error = %e, "heartbeat thread has no runtime; leases will expire")
                }
            }
        });
    match spawned {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the heartbeat thread; heartbeating on the main runtime");
            None
        }
    }
}

/// Acts on a heartbeat's answer: leases not extended are lost.
fn heartbeat_answered(shared: &Shared, chunk: &[(String, String)], held: &[bool]) {
    for ((_, lease), ok) in chunk.iter().zip(held) {
        if !ok {
            shared.lose(lease);
        }
    }
}

/// Adapts every queue's concurrency to the main runtime's lag (see the module doc).
/// Every [`GOVERNOR_TICK`] it sleeps and measures how late it woke; above the target it
/// cuts each limit by a quarter (then waits a second for the cut to show), well below
/// it raises by one each limit that is in full use, up to the configured concurrency.
async fn governor(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let target = shared.cfg.lag_target;
    let mut calm_until = tokio::time::Instant::now();
    loop {
        let due = tokio::time::Instant::now() + GOVERNOR_TICK;
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = tokio::time::Instant::now();
        let lag = now.saturating_duration_since(due);
        shared.metrics.runtime_lag.set(lag.as_secs_f64());
        if target.is_zero() || now < calm_until {
            continue;
        }
        let running: HashMap<String, usize> =
            shared
                .in_flight()
                .values()
                .fold(HashMap::new(), |mut acc, f| {
                    *acc.entry(f.queue.clone()).or_default() += 1;
                    acc
                });
        for (index, q) in shared.cfg.queues.iter().enumerate() {
            let limit = &shared.limits[index];
            let current = limit.load(Ordering::Relaxed);
            let floor = (q.concurrency / 16).clamp(1, q.concurrency);
            let next = if lag > target {
                (current * 3 / 4).max(floor)
            } else if lag < target / 2 && running.get(&q.name).copied().unwrap_or(0) >= current {
                (current + 1).min(q.concurrency)
            } else {
                current
            };
            if next != current {
                limit.store(next, Ordering::Relaxed);
                shared
                    .metrics
                    .concurrency_limit
                    .with_label_values(&[q.name.as_str()])
                    .set(next as i64);
                if next < current {
                    tracing::debug!(queue = %q.name, limit = next, lag_ms = lag.as_millis() as u64, "saturated: taking fewer tasks");
                    calm_until = now + Duration::from_secs(1);
                } else {
                    shared.slots.notify_waiters();
                }
            }
        }
    }
}

/// How often the governor measures the runtime's lag.
const GOVERNOR_TICK: Duration = Duration::from_millis(100);

/// Takes over tasks whose lease expired and settles them as failed attempts.
async fn reaper(
    shared: Arc<Shared>,
    settle_tx: mpsc::UnboundedSender<SettleMsg>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(shared.cfg.reap_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        for limit in &shared.cfg.queues {
            let q = limit.name.as_str();
            let reaped = match shared
                .queue
                .reap(q, shared.cfg.batch, shared.cfg.lease)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(queue = q, error = %e, "cannot look for expired leases");
                    continue;
                }
            };
            for delivery in reaped {
                let settlement = match &delivery.envelope {
                    Ok(env) => {
                        let err = TaskError::retryable(
                            "lease.expired",
                            format!(
                                "task {} attempt {} was held by a dispatcher that stopped heartbeating",
                                env.id, env.attempt
                            ),
                        );
                        tracing::warn!(queue = q, task = %env.id, attempt = env.attempt, "lease expired; redelivering");
                        decide(&shared.backoff, &delivery, env, Err(err), Utc::now())
                    }
                    Err(e) => Settlement::Dead(dead_letter(
                        &delivery,
                        None,
                        TaskError::from(e.clone()),
                        None,
                    )),
                };
                let _ = settle_tx.send(SettleMsg::Settle(
                    Settle {
                        delivery,
                        settlement,
                    },
                    None,
                ));
            }
        }
    }
}

/// Fires cron schedules; the queue script makes each period fire once cluster-wide.
async fn scheduler(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let schedules = &shared.cfg.schedules;
    if schedules.is_empty() {
        return;
    }
    let mut last = Utc::now();
    loop {
        let next = schedules.iter().filter_map(|s| s.next_after(last)).min();
        let wait = next
            .and_then(|t| (t - Utc::now()).to_std().ok())
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(60));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = Utc::now();
        for s in schedules {
            if let Some(at) = s.due_between(last, now) {
                match s.fire(&shared.queue, at).await {
                    Ok(true) => tracing::info!(schedule = %s.name, %at, "schedule fired"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(schedule = %s.name, error = %e, "cannot fire schedule")
                    }
                }
            }
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_exponential_ceiling_and_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            ..Backoff::default()
        };
        for attempt in 1..40 {
            let ceiling = Duration::from_millis(100 * 2u64.pow((attempt - 1).min(20)))
                .min(Duration::from_secs(1));
            assert_eq!(b.ceiling(attempt), ceiling);
            for _ in 0..50 {
                assert!(b.delay(attempt) <= ceiling);
            }
        }
    }

    #[test]
    fn retry_after_hint_is_a_floor() {
        let b = Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
            ..Backoff::default()
        };
        for _ in 0..50 {
            assert!(b.delay_with_hint(1, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
        }
    }

    #[test]
    fn a_huge_retry_after_hint_is_capped() {
        // Issue 11 item 13: a Retry-After of days parked the task (and its window's
        // dedup key) past Cloudflare's 7 days.
        let b = Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
            max_hint: Duration::from_secs(900),
        };
        let ten_days = Duration::from_secs(10 * 86_400);
        for _ in 0..50 {
            assert_eq!(
                b.delay_with_hint(1, Some(ten_days)),
                Duration::from_secs(900)
            );
        }
        assert_eq!(Backoff::default().max_hint, Duration::from_secs(900));
    }
}
