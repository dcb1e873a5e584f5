//! Prometheus metrics of one dispatcher process, and the HTTP endpoint serving them
//! (`/metrics`) with the process's health (`/healthz`, for container health checks).
//!
//! Counters and the enqueue-to-start histogram are this process's own (Prometheus
//! sums them across dispatchers); queue depth is read from Redis at scrape time, so
//! every dispatcher reports the same, cluster-wide depth.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

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
        }
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
