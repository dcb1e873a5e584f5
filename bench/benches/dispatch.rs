//! Dispatcher benchmark: no-op tasks through a real Redis with one in-process dispatcher,
//! and the same workload through Python RQ on the same Redis, in the same run.
//!
//! ```text
//! cargo bench -p rainlogs-bench --bench dispatch            # defaults
//! BENCH_TASKS=200000 BENCH_RATE=10000 cargo bench -p rainlogs-bench --bench dispatch
//! ```
//! Phases:
//! 1. throughput: BENCH_TASKS tasks enqueued first, then drained by one dispatcher;
//! 2. latency: a producer enqueues BENCH_RATE tasks/s (batches every millisecond) for
//!    BENCH_SECS seconds while the dispatcher runs; enqueue-to-start p50/p99/max is
//!    measured in the handler from the envelope's `enqueued_at`;
//! 3. RQ: `python3 bench/rq/bench_rq.py` (needs `pip install rq`) drains the same
//!    number of no-op jobs with a SimpleWorker; skipped with a note if RQ is missing.
//!
//! Results are printed; docs/BENCHMARKS.md records them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use rainlogs_core::config::{ConfigSource, RedisConfig};
use rainlogs_core::function::Function;
use rainlogs_core::{HandlerOutput, TaskEnvelope, TaskError, TaskSpec};
use rainlogs_dispatcher::config::{DispatcherConfig, QueueLimit};
use rainlogs_dispatcher::invoker::InProcess;
use rainlogs_dispatcher::queue::Queue;
use rainlogs_dispatcher::worker::Worker;
use secrecy::ExposeSecret;

/// Does nothing but note how long the task waited.
struct Noop {
    latencies_us: Arc<Mutex<Vec<u64>>>,
}

#[async_trait]
impl Function for Noop {
    fn name(&self) -> &'static str {
        "noop"
    }
    async fn handle(&self, task: TaskEnvelope) -> Result<HandlerOutput, TaskError> {
        let waited = (Utc::now() - task.enqueued_at)
            .num_microseconds()
            .unwrap_or(0)
            .max(0) as u64;
        if let Ok(mut l) = self.latencies_us.lock() {
            l.push(waited);
        }
        Ok(HandlerOutput::default())
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

fn summary(label: &str, lat: &mut [u64]) {
    lat.sort_unstable();
    println!(
        "{label}: n={} enqueue-to-start p50={:.2} ms p99={:.2} ms max={:.2} ms",
        lat.len(),
        percentile(lat, 0.50),
        percentile(lat, 0.99),
        lat.last().copied().unwrap_or(0) as f64 / 1000.0
    );
}

struct Bench {
    queue: Queue,
    redis_url: String,
    prefix: String,
}

impl Bench {
    fn worker(&self, q: &str, latencies: &Arc<Mutex<Vec<u64>>>) -> Worker {
        let cfg = DispatcherConfig {
            queues: vec![QueueLimit {
                name: q.into(),
                concurrency: env_or("BENCH_CONCURRENCY", 512),
            }],
            batch: env_or("BENCH_BATCH", 512),
            ..DispatcherConfig::default()
        };
        let invoker = InProcess::new().with(Noop {
            latencies_us: Arc::clone(latencies),
        });
        Worker::with_config(self.queue.clone(), Arc::new(invoker), cfg)
    }

    async fn processed(&self, q: &str) -> u64 {
        self.queue.stats(q).await.map(|s| s.processed).unwrap_or(0)
    }
}

async fn throughput(b: &Bench, n: usize) -> f64 {
    let q = "bench-tp";
    let t0 = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let specs = chunk
            .iter()
            .map(|_| TaskSpec::new(q, "noop.run", serde_json::Value::Null))
            .collect();
        b.queue.enqueue_many(specs).await.expect("enqueue");
    }
    let enq = t0.elapsed();
    println!(
        "enqueue: {n} tasks in {:.2} s = {:.0} tasks/s (batches of 1000)",
        enq.as_secs_f64(),
        n as f64 / enq.as_secs_f64()
    );
    let lat = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let worker = b.worker(q, &lat);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let t1 = Instant::now();
    let h = tokio::spawn(async move { worker.run(rx).await });
    while b.processed(q).await < n as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = t1.elapsed();
    let _ = tx.send(true);
    let _ = h.await;
    let rate = n as f64 / took.as_secs_f64();
    println!(
        "throughput: {n} no-op tasks drained in {:.2} s = {:.0} tasks/s (one dispatcher, in-process)",
        took.as_secs_f64(),
        rate
    );
    rate
}

async fn latency(b: &Bench, rate: usize, secs: u64) {
    let q = "bench-lat";
    let lat = Arc::new(Mutex::new(Vec::new()));
    let worker = b.worker(q, &lat);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let h = tokio::spawn(async move { worker.run(rx).await });
    // Let the worker reach its idle wait first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let per_ms = (rate / 1000).max(1);
    let total = per_ms * secs as usize * 1000;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0;
    while sent < total {
        tick.tick().await;
        let specs = (0..per_ms)
            .map(|_| TaskSpec::new(q, "noop.run", serde_json::Value::Null))
            .collect();
        b.queue.enqueue_many(specs).await.expect("enqueue");
        sent += per_ms;
    }
    while b.processed(q).await < total as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = tx.send(true);
    let _ = h.await;
    let mut l = lat.lock().map(|l| l.clone()).unwrap_or_default();
    summary(
        &format!("latency at {} tasks/s offered for {secs} s", per_ms * 1000),
        &mut l,
    );
}

fn rq(b: &Bench, n: usize) -> Option<f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/rq/bench_rq.py");
    let out = std::process::Command::new(
        std::env::var("BENCH_PYTHON").unwrap_or_else(|_| "python3".into()),
    )
    .arg(script)
    .args([
        "--count",
        &n.to_string(),
        "--redis-url",
        &b.redis_url,
        "--prefix",
        &b.prefix,
    ])
    .output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            print!("{text}");
            text.lines()
                .find_map(|l| l.strip_prefix("rq_throughput_tasks_per_s="))
                .and_then(|v| v.trim().parse().ok())
        }
        Ok(o) => {
            println!("RQ: skipped: {}", String::from_utf8_lossy(&o.stderr).trim());
            None
        }
        Err(e) => {
            println!("RQ: skipped: cannot run python3: {e}");
            None
        }
    }
}

#[tokio::main]
async fn main() {
    let redis_url = ConfigSource::from_env()
        .ok()
        .and_then(|s| s.get(RedisConfig::URL).map(str::to_owned))
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
    let prefix = format!("rlbench:{}", uuid::Uuid::new_v4().simple());
    let src = ConfigSource::from_pairs([
        (RedisConfig::URL, redis_url.clone()),
        (RedisConfig::KEY_PREFIX, prefix.clone()),
    ]);
    let cfg = RedisConfig::from_source(&src).expect("redis config");
    let conn = rainlogs_core::redis_client::connect(&cfg)
        .await
        .expect("redis answers");
    let client = redis::Client::open(cfg.url.expose_secret()).expect("redis url");
    let b = Bench {
        queue: Queue::new(conn, prefix.clone()).with_client(client),
        redis_url,
        prefix: prefix.clone(),
    };
    let n: usize = env_or("BENCH_TASKS", 100_000);
    println!(
        "machine: {} cores; redis {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        b.redis_url
    );
    let ours = throughput(&b, n).await;
    latency(&b, env_or("BENCH_RATE", 10_000), env_or("BENCH_SECS", 5)).await;
    latency(&b, 1_000, 3).await;
    let rq_n: usize = env_or("BENCH_RQ_TASKS", n.min(20_000));
    if let Some(theirs) = rq(&b, rq_n) {
        println!("ratio: rainlogs / RQ throughput = {:.1}x", ours / theirs);
    }
    // Clean up this run's keys.
    if let Ok(c) = redis::Client::open(b.redis_url.as_str()) {
        if let Ok(mut conn) = c.get_multiplexed_async_connection().await {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}:*"))
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            for chunk in keys.chunks(500) {
                let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
            }
        }
    }
}
