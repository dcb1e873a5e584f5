//! Shared support for the dispatcher tests: a real Redis under a per-test key prefix,
//! a recording test function, fast settings and condition waits with deadlines.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rainlogs_core::config::{ConfigSource, RedisConfig};
use rainlogs_core::function::{unsupported_kind, Function};
use rainlogs_core::{HandlerOutput, TaskEnvelope, TaskError, TaskSpec};
use rainlogs_dispatcher::config::{DispatcherConfig, QueueLimit};
use rainlogs_dispatcher::invoker::InProcess;
use rainlogs_dispatcher::queue::Queue;
use rainlogs_dispatcher::worker::Worker;
use secrecy::ExposeSecret;
use tokio::sync::{watch, Semaphore};

/// Redis URL: RAINLOGS_REDIS_URL (environment or env file) or the local default.
pub fn redis_url() -> String {
    ConfigSource::from_env()
        .ok()
        .and_then(|src| src.get(RedisConfig::URL).map(str::to_owned))
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".to_owned())
}

/// One test's slice of Redis.
pub struct TestRedis {
    pub prefix: String,
    pub queue: Queue,
}

impl TestRedis {
    pub async fn new() -> Self {
        let prefix = format!("rltest:{}", uuid::Uuid::new_v4().simple());
        let src = ConfigSource::from_pairs([
            (RedisConfig::URL, redis_url()),
            (RedisConfig::KEY_PREFIX, prefix.clone()),
        ]);
        let cfg = RedisConfig::from_source(&src).expect("redis config");
        let conn = rainlogs_core::redis_client::connect(&cfg)
            .await
            .expect("redis answers");
        let client = redis::Client::open(cfg.url.expose_secret()).expect("redis url");
        Self {
            queue: Queue::new(conn, prefix.clone()).with_client(client),
            prefix,
        }
    }

    /// Environment for a child dispatcher sharing this prefix.
    pub fn child_env(&self) -> Vec<(String, String)> {
        vec![
            (RedisConfig::URL.into(), redis_url()),
            (RedisConfig::KEY_PREFIX.into(), self.prefix.clone()),
        ]
    }

    pub async fn cleanup(self) {
        if let Ok(client) = redis::Client::open(redis_url()) {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{}:*", self.prefix))
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
                }
            }
        }
    }
}

/// Fast settings for tests: short lease, quick reaping, tiny backoff.
pub fn fast_config(queue: &str, concurrency: usize) -> DispatcherConfig {
    DispatcherConfig {
        queues: vec![QueueLimit {
            name: queue.into(),
            concurrency,
        }],
        lease: Duration::from_millis(1500),
        heartbeat: Duration::from_millis(300),
        reap_interval: Duration::from_millis(100),
        batch: 64,
        shutdown_grace: Duration::from_secs(10),
        retry_base: Duration::from_millis(20),
        retry_cap: Duration::from_millis(80),
        idle_wait: Duration::from_millis(200),
        // Fixed limits: a busy test machine must not change what a test runs at once.
        // The adaptive-concurrency test turns it on itself.
        lag_target: Duration::ZERO,
        ..DispatcherConfig::default()
    }
}

/// What the recording function saw at the start of one attempt.
#[derive(Debug, Clone)]
pub struct Start {
    pub id: uuid::Uuid,
    pub kind: String,
    pub attempt: u32,
    pub started: DateTime<Utc>,
    pub not_before: Option<DateTime<Utc>>,
    pub idempotency_key: Option<String>,
    pub payload: serde_json::Value,
    pub worker: String,
}

#[derive(Default)]
pub struct Record {
    pub starts: Vec<Start>,
    pub done: Vec<uuid::Uuid>,
    pub running: HashSet<uuid::Uuid>,
    pub max_running: usize,
    /// A task seen running twice at once (must stay empty).
    pub overlaps: Vec<uuid::Uuid>,
    pub attempts_by_id: HashMap<uuid::Uuid, u32>,
}

/// A function named `t` that records every attempt. Kinds: `t.ok`, `t.sleep`
/// (payload `ms`), `t.spin` (holds its runtime thread for payload `ms`, as CPU-heavy
/// work does), `t.gate` (waits for a permit from `gate`), `t.retry` (payload
/// `retry_after_ms`, `succeed_on`), `t.fail`, `t.next` (returns follow-ups from
/// payload `next`), `t.panic` (panics with payload `message` until attempt
/// `succeed_on`).
#[derive(Clone)]
pub struct Recorder {
    pub name: String,
    pub record: Arc<Mutex<Record>>,
    pub gate: Arc<Semaphore>,
}

impl Recorder {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            record: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
        }
    }

    pub fn shared_with(&self, name: &str) -> Self {
        Self {
            name: name.into(),
            record: Arc::clone(&self.record),
            gate: Arc::clone(&self.gate),
        }
    }

    pub fn starts(&self) -> Vec<Start> {
        self.record.lock().unwrap().starts.clone()
    }

    pub fn done(&self) -> Vec<uuid::Uuid> {
        self.record.lock().unwrap().done.clone()
    }

    pub fn worker(&self, queue: &Queue, cfg: DispatcherConfig) -> Worker {
        Worker::with_config(
            queue.clone(),
            Arc::new(InProcess::new().with(self.clone())),
            cfg,
        )
    }
}

#[async_trait]
impl Function for Recorder {
    fn name(&self) -> &'static str {
        "t"
    }

    async fn handle(&self, task: TaskEnvelope) -> Result<HandlerOutput, TaskError> {
        {
            let mut r = self.record.lock().unwrap();
            r.starts.push(Start {
                id: task.id,
                kind: task.kind.clone(),
                attempt: task.attempt,
                started: Utc::now(),
                not_before: task.not_before,
                idempotency_key: task.idempotency_key.clone(),
                payload: task.payload.clone(),
                worker: self.name.clone(),
            });
            if !r.running.insert(task.id) {
                r.overlaps.push(task.id);
            }
            r.max_running = r.max_running.max(r.running.len());
            *r.attempts_by_id.entry(task.id).or_default() += 1;
        }
        let result = self.run(&task).await;
        let mut r = self.record.lock().unwrap();
        r.running.remove(&task.id);
        if result.is_ok() {
            r.done.push(task.id);
        }
        result
    }
}

impl Recorder {
    async fn run(&self, task: &TaskEnvelope) -> Result<HandlerOutput, TaskError> {
        let num = |f: &str| task.payload.get(f).and_then(|v| v.as_u64());
        match task.kind.as_str() {
            "t.ok" => Ok(HandlerOutput::done(serde_json::json!({"ok": true}))),
            "t.sleep" => {
                tokio::time::sleep(Duration::from_millis(num("ms").unwrap_or(50))).await;
                Ok(HandlerOutput::default())
            }
            "t.spin" => {
                // Blocks the thread the task runs on, on purpose: CPU work done inline
                // keeps the runtime from running anything else on that thread.
                std::thread::sleep(Duration::from_millis(num("ms").unwrap_or(50)));
                Ok(HandlerOutput::default())
            }
            "t.gate" => {
                let permit = self.gate.acquire().await;
                drop(permit);
                Ok(HandlerOutput::default())
            }
            "t.retry" => {
                if num("succeed_on").is_some_and(|n| u64::from(task.attempt) >= n) {
                    return Ok(HandlerOutput::default());
                }
                let mut e = TaskError::retryable("t.busy", format!("attempt {}", task.attempt));
                if let Some(ms) = num("retry_after_ms") {
                    e = e.with_retry_after(Duration::from_millis(ms));
                }
                Err(e)
            }
            "t.fail" => Err(TaskError::permanent("t.refused", "refused for good")),
            "t.panic" => {
                if num("succeed_on").is_some_and(|n| u64::from(task.attempt) >= n) {
                    return Ok(HandlerOutput::default());
                }
                let message = task.payload["message"].as_str().unwrap_or("t.panic");
                panic!("{message} (attempt {})", task.attempt)
            }
            "t.next" => {
                let next: Vec<TaskSpec> = serde_json::from_value(task.payload["next"].clone())
                    .map_err(|e| TaskError::permanent("event.invalid", e.to_string()))?;
                Ok(HandlerOutput {
                    result: serde_json::Value::Null,
                    next,
                })
            }
            _ => Err(unsupported_kind("t", task)),
        }
    }
}

/// Runs `worker` in the background; returns the shutdown sender and its join handle.
pub fn spawn_worker(
    worker: Worker,
) -> (
    watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), rainlogs_dispatcher::queue::QueueError>>,
) {
    let (tx, rx) = watch::channel(false);
    let handle = tokio::spawn(async move { worker.run(rx).await });
    (tx, handle)
}

/// Stops a spawned worker and waits for its graceful shutdown.
pub async fn stop(
    tx: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<Result<(), rainlogs_dispatcher::queue::QueueError>>,
) {
    let _ = tx.send(true);
    tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .expect("worker stops within 30 s")
        .expect("worker task does not panic")
        .expect("worker ends cleanly");
}

pub use crate::wait_for;

pub fn spec(queue: &str, kind: &str, payload: serde_json::Value) -> TaskSpec {
    TaskSpec::new(queue, kind, payload)
}
