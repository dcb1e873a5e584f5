//! Prometheus metrics of one dispatcher process, and the HTTP endpoint serving them
//! (`/metrics`) with the process's health (`/healthz`, for container health checks).
//!
//! Counters and the enqueue-to-start histogram are this process's own (Prometheus
//! sums them across dispatchers); queue depth is read from Redis at scrape time, so
//! every dispatcher reports the same, cluster-wide depth. With [`Metrics::watch_archive`]
//! the endpoint also reports push delivery (silence, failing Logpush jobs, failed
//! periods) from Postgres and the landing bucket's backlog, read at scrape time too.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use sqlx::PgPool;

use rainlogs_receiver::landing::Landing;

use crate::queue::Queue;

/// Buckets of the enqueue-to-start latency, in seconds (0.5 ms … 5 min).
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// Buckets of a task's run time, in seconds (1 ms … 15 min: a stage's whole range).
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0,
];

/// The dispatcher's metrics (cheap to clone).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub depth: IntGaugeVec,
    /// Per queue and lane: ready, pending and running tasks (cluster-wide, from Redis).
    pub lane_depth: IntGaugeVec,
    /// Per queue: started units unfinished, as the in-flight bound counts them.
    pub queue_in_flight: IntGaugeVec,
    /// Per queue: how many tasks the governor lets this dispatcher run at once.
    pub concurrency_limit: IntGaugeVec,
    /// How late the main runtime woke the governor's last timer.
    pub runtime_lag: Gauge,
    /// Run time of each attempt, per queue and kind (what leases must cover).
    pub task_seconds: HistogramVec,
    pub in_flight: IntGaugeVec,
    pub processed: IntCounterVec,
    pub failed: IntCounterVec,
    pub retried: IntCounterVec,
    pub dead: IntCounterVec,
    pub lease_lost: IntCounterVec,
    pub start_latency: HistogramVec,
    /// Push delivery and landing gauges, when this endpoint watches the archive.
    archive: Option<Arc<ArchiveGauges>>,
}

/// Labels of the per-destination push gauges.
const DESTINATION_LABELS: &[&str] = &["zone", "zone_id", "dataset", "destination", "kind"];

/// Where the archive gauges come from, and the gauges.
struct ArchiveGauges {
    pool: PgPool,
    landing: Option<Landing>,
    /// 1 when the last scrape read everything; 0 names a failure in the log.
    ok: IntGauge,
    since_delivery: GaugeVec,
    silent: IntGaugeVec,
    failing: IntGaugeVec,
    failed_periods: IntGaugeVec,
    landing_objects: IntGaugeVec,
    landing_bytes: IntGaugeVec,
    landing_oldest: GaugeVec,
    landing_capped: IntGaugeVec,
    near_edge: IntGaugeVec,
    near_edge_oldest: GaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &["queue"])
                .unwrap_or_else(|e| unreachable!("static metric {name} is valid: {e}"));
            // Registering fixed, distinct names into a fresh registry cannot collide.
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let processed = counter(
            "rainlogs_tasks_processed_total",
            "Tasks completed successfully.",
        );
        let failed = counter(
            "rainlogs_tasks_failed_total",
            "Task attempts that failed (retried or dead-lettered).",
        );
        let retried = counter(
            "rainlogs_tasks_retried_total",
            "Failed attempts scheduled for another try.",
        );
        let dead = counter(
            "rainlogs_tasks_dead_total",
            "Tasks moved to the dead letters.",
        );
        let lease_lost = counter(
            "rainlogs_tasks_lease_lost_total",
            "Leases lost while this dispatcher held the task (found by a heartbeat or at settle): the task runs again under its new holder.",
        );
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable!("static metric {name} is valid: {e}"));
            let _ = registry.register(Box::new(g.clone()));
            g
        };
        let lane_depth = gauge_vec(
            "rainlogs_queue_lane_tasks",
            "Tasks per queue, lane and state (ready, pending, running; cluster-wide, read from Redis).",
            &["queue", "lane", "state"],
        );
        let queue_in_flight = gauge_vec(
            "rainlogs_queue_in_flight_units",
            "Started units (windows between fetch and upload) not yet finished, per queue (cluster-wide).",
            &["queue"],
        );
        let concurrency_limit = gauge_vec(
            "rainlogs_concurrency_limit",
            "Tasks this dispatcher lets itself run at once per queue (adapted to the runtime lag).",
            &["queue"],
        );
        let runtime_lag = Gauge::with_opts(Opts::new(
            "rainlogs_runtime_lag_seconds",
            "How late the dispatcher's runtime woke its last probe timer (time runnable work waits for a CPU).",
        ))
        .unwrap_or_else(|e| unreachable!("static metric is valid: {e}"));
        let _ = registry.register(Box::new(runtime_lag.clone()));
        let task_seconds = HistogramVec::new(
            HistogramOpts::new(
                "rainlogs_task_seconds",
                "Run time of task attempts in this dispatcher, per queue and kind.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["queue", "kind"],
        )
        .unwrap_or_else(|e| unreachable!("static metric is valid: {e}"));
        let _ = registry.register(Box::new(task_seconds.clone()));
        let depth = IntGaugeVec::new(
            Opts::new(
                "rainlogs_queue_depth",
                "Tasks per queue and state (cluster-wide, read from Redis).",
            ),
            &["queue", "state"],
        )
        .unwrap_or_else(|e| unreachable!("static metric is valid: {e}"));
        let _ = registry.register(Box::new(depth.clone()));
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "rainlogs_tasks_in_flight",
                "Tasks this dispatcher is running now.",
            ),
            &["queue"],
        )
        .unwrap_or_else(|e| unreachable!("static metric is valid: {e}"));
        let _ = registry.register(Box::new(in_flight.clone()));
        let start_latency = HistogramVec::new(
            HistogramOpts::new(
                "rainlogs_task_start_latency_seconds",
                "Time from enqueue (or not-before) to the start of an attempt.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["queue"],
        )
        .unwrap_or_else(|e| unreachable!("static metric is valid: {e}"));
        let _ = registry.register(Box::new(start_latency.clone()));
        Self {
            registry,
            depth,
            lane_depth,
            queue_in_flight,
            concurrency_limit,
            runtime_lag,
            task_seconds,
            in_flight,
            processed,
            failed,
            retried,
            dead,
            lease_lost,
            start_latency,
            archive: None,
        }
    }

    /// Also reports, at each scrape, every enabled push destination's delivery
    /// (`rainlogs_push_*`: seconds since its last batch, silent past what its zone's
    /// traffic allows, its Logpush job failing, failed periods in the last 7 days) and,
    /// with a landing bucket, each S3 destination's backlog (`rainlogs_landing_*`); and
    /// pulled windows not fetched yet within a day of Logpull's 7-day edge
    /// (`rainlogs_windows_near_logpull_edge`).
    pub fn watch_archive(mut self, pool: PgPool, landing: Option<Landing>) -> Self {
        let registry = &self.registry;
        let register = |c: Box<dyn prometheus::core::Collector>| {
            // Fixed, distinct names in this registry: registering cannot collide.
            let _ = registry.register(c);
        };
        let int = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable!("static metric {name} is valid: {e}"));
            register(Box::new(g.clone()));
            g
        };
        let float = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable!("static metric {name} is valid: {e}"));
            register(Box::new(g.clone()));
            g
        };
        let ok = IntGauge::new(
            "rainlogs_archive_metrics_ok",
            "1 when the last scrape read the push and landing state; 0: see the process log.",
        )
        .unwrap_or_else(|e| unreachable!("static metric is valid: {e}"));
        register(Box::new(ok.clone()));
        const LANDING: &[&str] = &["zone", "zone_id", "dataset", "destination"];
        const EDGE_LABELS: &[&str] = &["zone", "zone_id"];
        let gauges = ArchiveGauges {
            pool,
            landing,
            ok,
            since_delivery: float(
                "rainlogs_push_seconds_since_delivery",
                "Seconds since the destination's last batch (or its validation; absent: never heard from).",
                DESTINATION_LABELS,
            ),
            silent: int(
                "rainlogs_push_silent",
                "1 when the destination is silent longer than two upload intervals although its zone had traffic (alert).",
                DESTINATION_LABELS,
            ),
            failing: int(
                "rainlogs_push_job_failing",
                "1 while Cloudflare reports the zone's Logpush job for this dataset failing, off or gone (an open failed period).",
                DESTINATION_LABELS,
            ),
            failed_periods: int(
                "rainlogs_push_failed_periods",
                "Failed periods of the zone's Logpush job for this dataset in the last 7 days (dated gaps in coverage).",
                DESTINATION_LABELS,
            ),
            landing_objects: int(
                "rainlogs_landing_backlog_objects",
                "Objects waiting in the destination's landing prefix (plaintext until ingested; capped at one listing page).",
                LANDING,
            ),
            landing_bytes: int(
                "rainlogs_landing_backlog_bytes",
                "Bytes waiting in the destination's landing prefix (of the objects counted).",
                LANDING,
            ),
            landing_oldest: float(
                "rainlogs_landing_oldest_object_seconds",
                "Age of the oldest object waiting in the destination's landing prefix: how long plaintext has rested there.",
                LANDING,
            ),
            landing_capped: int(
                "rainlogs_landing_backlog_capped",
                "1 when more objects wait than one listing page holds (the backlog gauges are lower bounds).",
                LANDING,
            ),
            near_edge: int(
                "rainlogs_windows_near_logpull_edge",
                "Pulled windows of the zone not fetched yet and within a day of Logpull's 7-day edge (alert: past it they are lost).",
                EDGE_LABELS,
            ),
            near_edge_oldest: float(
                "rainlogs_oldest_unfetched_window_age_seconds",
                "Age of the oldest such window's start (Logpull serves 604800 seconds).",
                EDGE_LABELS,
            ),
        };
        self.archive = Some(Arc::new(gauges));
        self
    }

    /// Refreshes the depth gauges from Redis, then renders the text exposition format.
    pub async fn render(&self, queue: &Queue) -> String {
        if let Ok(queues) = queue.known_queues().await {
            for q in queues {
                if let Ok(stats) = queue.stats(&q).await {
                    let d = stats.depth;
                    for (state, n) in [
                        ("ready", d.ready),
                        ("active", d.active),
                        ("delayed", d.delayed),
                        ("dead", d.dead),
                    ] {
                        self.depth
                            .with_label_values(&[q.as_str(), state])
                            .set(n as i64);
                    }
                    for l in &stats.lanes {
                        for (state, n) in [
                            ("ready", l.ready),
                            ("pending", l.pending),
                            ("running", l.running),
                        ] {
                            self.lane_depth
                                .with_label_values(&[q.as_str(), l.lane.name(), state])
                                .set(n as i64);
                        }
                    }
                    self.queue_in_flight
                        .with_label_values(&[q.as_str()])
                        .set(stats.in_flight as i64);
                }
            }
        }
        if let Some(archive) = &self.archive {
            match archive.refresh().await {
                Ok(()) => archive.ok.set(1),
                Err(e) => {
                    tracing::warn!(error = %e, "push and landing metrics not read");
                    archive.ok.set(0);
                }
            }
        }
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "metrics do not encode");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Serves `GET /metrics` and `GET /healthz` on `addr` until `shutdown` fires;
    /// returns the bound address.
    pub async fn serve(
        self,
        queue: Queue,
        addr: SocketAddr,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let state = Arc::new((self, queue));
        let app = axum::Router::new()
            .route("/metrics", get(metrics_handler))
            .route("/healthz", get(health_handler))
            .with_state(state);
        crate::serve::spawn_until_shutdown(listener, app, shutdown, "metrics server");
        Ok(bound)
    }
}

impl ArchiveGauges {
    /// Re-reads every gauge; destinations gone or disabled since the last scrape vanish.
    async fn refresh(&self) -> Result<(), String> {
        let now = chrono::Utc::now();
        let status = rainlogs_archive::push::delivery_status(&self.pool, now)
            .await
            .map_err(|e| e.to_string())?;
        for g in [&self.silent, &self.failing, &self.failed_periods] {
            g.reset();
        }
        self.since_delivery.reset();
        for g in [
            &self.landing_objects,
            &self.landing_bytes,
            &self.landing_capped,
        ] {
            g.reset();
        }
        self.landing_oldest.reset();
        self.near_edge.reset();
        self.near_edge_oldest.reset();
        let at_risk = rainlogs_archive::ledger::near_logpull_edge(
            &self.pool,
            now,
            rainlogs_archive::ledger::EDGE_WARNING,
        )
        .await
        .map_err(|e| e.to_string())?;
        for r in &at_risk {
            let zone_id = r.zone_id.to_string();
            let labels = [r.zone_name.as_str(), zone_id.as_str()];
            self.near_edge.with_label_values(&labels).set(r.windows);
            self.near_edge_oldest
                .with_label_values(&labels)
                .set((now - r.oldest_start).num_milliseconds() as f64 / 1000.0);
        }
        let mut landing_error = None;
        for d in &status {
            let (zone_id, destination) = (d.zone_id.to_string(), d.destination.to_string());
            let labels = [
                d.zone_name.as_str(),
                zone_id.as_str(),
                d.dataset.as_str(),
                destination.as_str(),
                d.kind.as_str(),
            ];
            if let Some(heard) = d.last_heard {
                self.since_delivery
                    .with_label_values(&labels)
                    .set((now - heard).num_milliseconds() as f64 / 1000.0);
            }
            self.silent
                .with_label_values(&labels)
                .set(i64::from(d.silent.is_some()));
            self.failing
                .with_label_values(&labels)
                .set(i64::from(d.failing_since.is_some()));
            self.failed_periods
                .with_label_values(&labels)
                .set(d.failed_periods as i64);
            let (Some(landing), "s3") = (&self.landing, d.kind.as_str()) else {
                continue;
            };
            match landing.backlog(d.destination).await {
                Ok(b) => {
                    let labels = &labels[..4];
                    self.landing_objects
                        .with_label_values(labels)
                        .set(b.objects as i64);
                    self.landing_bytes
                        .with_label_values(labels)
                        .set(b.bytes as i64);
                    self.landing_capped
                        .with_label_values(labels)
                        .set(i64::from(b.capped));
                    self.landing_oldest.with_label_values(labels).set(
                        b.oldest
                            .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
                            .unwrap_or(0.0),
                    );
                }
                // Keep reading the other destinations; the scrape reports the failure.
                Err(e) => landing_error = Some(format!("landing backlog of {destination}: {e}")),
            }
        }
        landing_error.map_or(Ok(()), Err)
    }
}

/// 200 `ok` while this process serves and Redis — where its work comes from — answers;
/// 503 naming the failure otherwise.
async fn health_handler(State(state): State<Arc<(Metrics, Queue)>>) -> impl IntoResponse {
    match state.1.known_queues().await {
        Ok(_) => (StatusCode::OK, "ok\n".to_owned()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("redis: {e}\n")),
    }
}

async fn metrics_handler(State(state): State<Arc<(Metrics, Queue)>>) -> impl IntoResponse {
    let body = state.0.render(&state.1).await;
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
