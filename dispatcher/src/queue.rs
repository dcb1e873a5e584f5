//! The task queue on Redis.
//!
//! Walking-skeleton version: per queue a `ready` list, an `active` list that holds
//! what workers took (moved atomically with BLMOVE, so a taken task is never only in
//! a worker's memory), a `delayed` sorted set for retries, and a `dead` list. Leases,
//! heartbeats, dedup, schedules and multi-dispatcher recovery come with the dispatcher
//! issue; Postgres remains the truth for pipeline work, so Redis may lose messages
//! without losing windows.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rainlogs_shared::task::{EnvelopeError, TaskEnvelope, TaskSpec};
use rainlogs_shared::TaskError;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

/// A queue operation failed in Redis itself (always retryable: Redis is transport).
#[derive(Debug, thiserror::Error)]
#[error("redis queue {queue}: {op}: {source}")]
pub struct QueueError {
    pub queue: String,
    pub op: &'static str,
    #[source]
    pub source: redis::RedisError,
}

/// Redis key names for one deployment prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn ready(&self, queue: &str) -> String {
        format!("{}:q:{queue}:ready", self.prefix)
    }
    pub fn active(&self, queue: &str) -> String {
        format!("{}:q:{queue}:active", self.prefix)
    }
    pub fn delayed(&self, queue: &str) -> String {
        format!("{}:q:{queue}:delayed", self.prefix)
    }
    pub fn dead(&self, queue: &str) -> String {
        format!("{}:q:{queue}:dead", self.prefix)
    }
}

/// One task taken from a queue: the raw bytes (to remove it from `active` exactly)
/// and the parsed envelope, or why it does not parse.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub queue: String,
    pub raw: Vec<u8>,
    pub envelope: Result<TaskEnvelope, EnvelopeError>,
}

/// A dead-lettered task with its last error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The envelope as it was delivered (verbatim, so a poison message stays inspectable).
    pub raw: String,
    pub error: TaskError,
    pub dead_at: DateTime<Utc>,
}

/// A handle on the queues of one deployment (cheap to clone).
#[derive(Clone)]
pub struct Queue {
    conn: ConnectionManager,
    keys: Keys,
}

impl Queue {
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            keys: Keys::new(prefix),
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn err<'a>(
        queue: &'a str,
        op: &'static str,
    ) -> impl FnOnce(redis::RedisError) -> QueueError + 'a {
        move |source| QueueError {
            queue: queue.to_owned(),
            op,
            source,
        }
    }

    /// Enqueues a new task; returns its envelope.
    pub async fn enqueue(&self, spec: TaskSpec) -> Result<TaskEnvelope, QueueError> {
        let envelope = TaskEnvelope::new(spec, Utc::now());
        self.push(&envelope).await?;
        Ok(envelope)
    }

    /// Pushes an envelope as it is: ready now, or delayed until `not_before`.
    pub async fn push(&self, envelope: &TaskEnvelope) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let q = &envelope.queue;
        match envelope.not_before.filter(|t| *t > Utc::now()) {
            Some(at) => conn
                .zadd::<_, _, _, ()>(
                    self.keys.delayed(q),
                    envelope.to_json(),
                    at.timestamp_millis(),
                )
                .await
                .map_err(Self::err(q, "ZADD delayed")),
            None => conn
                .lpush::<_, _, ()>(self.keys.ready(q), envelope.to_json())
                .await
                .map_err(Self::err(q, "LPUSH ready")),
        }
    }

    /// Pushes raw bytes onto a queue's ready list (tests and tools injecting messages).
    pub async fn push_raw(&self, queue: &str, raw: &[u8]) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        conn.lpush::<_, _, ()>(self.keys.ready(queue), raw)
            .await
            .map_err(Self::err(queue, "LPUSH ready"))
    }

    /// Moves delayed tasks whose time has come to the ready list.
    pub async fn promote_due(&self, queue: &str) -> Result<usize, QueueError> {
        // One script, so a task is never in both places nor in neither.
        let script = redis::Script::new(
            r"
            local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
            for _, raw in ipairs(due) do
                redis.call('ZREM', KEYS[1], raw)
                redis.call('LPUSH', KEYS[2], raw)
            end
            return #due
            ",
        );
        let mut conn = self.conn.clone();
        script
            .key(self.keys.delayed(queue))
            .key(self.keys.ready(queue))
            .arg(Utc::now().timestamp_millis())
            .invoke_async(&mut conn)
            .await
            .map_err(Self::err(queue, "promote delayed"))
    }

    /// Takes the oldest ready task into `active`, waiting up to `wait` for one.
    pub async fn reserve(
        &self,
        queue: &str,
        wait: Duration,
    ) -> Result<Option<Delivery>, QueueError> {
        let mut conn = self.conn.clone();
        let (ready, active) = (self.keys.ready(queue), self.keys.active(queue));
        let (right, left) = (redis::Direction::Right, redis::Direction::Left);
        // BLMOVE with a zero timeout blocks forever: a zero wait must not block at all.
        let raw: Option<Vec<u8>> = if wait.is_zero() {
            conn.lmove(ready, active, right, left)
                .await
                .map_err(Self::err(queue, "LMOVE ready→active"))?
        } else {
            conn.blmove(ready, active, right, left, wait.as_secs_f64())
                .await
                .map_err(Self::err(queue, "BLMOVE ready→active"))?
        };
        Ok(raw.map(|raw| Delivery {
            queue: queue.to_owned(),
            envelope: TaskEnvelope::parse(&raw),
            raw,
        }))
    }

    /// Completes a delivery and enqueues its follow-ups in one transaction, so a
    /// completed task never loses the work it handed on.
    pub async fn ack(&self, delivery: &Delivery, next: &[TaskEnvelope]) -> Result<(), QueueError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for envelope in next {
            pipe.lpush(self.keys.ready(&envelope.queue), envelope.to_json())
                .ignore();
        }
        pipe.lrem(self.keys.active(&delivery.queue), 1, &delivery.raw)
            .ignore();
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(Self::err(&delivery.queue, "ack"))
    }

    /// Puts a failed delivery back for another attempt after `delay`.
    pub async fn retry(
        &self,
        delivery: &Delivery,
        envelope: &TaskEnvelope,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let mut next = envelope.clone();
        next.attempt += 1;
        let due = Utc::now() + chrono::Duration::milliseconds(delay.as_millis() as i64);
        next.not_before = Some(due);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .zadd(
                self.keys.delayed(&delivery.queue),
                next.to_json(),
                due.timestamp_millis(),
            )
            .ignore()
            .lrem(self.keys.active(&delivery.queue), 1, &delivery.raw)
            .ignore();
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(Self::err(&delivery.queue, "retry"))
    }

    /// Moves a delivery to the dead letter list with its reason.
    pub async fn dead_letter(
        &self,
        delivery: &Delivery,
        error: TaskError,
    ) -> Result<(), QueueError> {
        let letter = DeadLetter {
            raw: String::from_utf8_lossy(&delivery.raw).into_owned(),
            error,
            dead_at: Utc::now(),
        };
        let mut pipe = redis::pipe();
        pipe.atomic()
            .lpush(
                self.keys.dead(&delivery.queue),
                serde_json::to_vec(&letter).expect("dead letters serialise"),
            )
            .ignore()
            .lrem(self.keys.active(&delivery.queue), 1, &delivery.raw)
            .ignore();
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(Self::err(&delivery.queue, "dead-letter"))
    }

    /// The dead letters of a queue, newest first.
    pub async fn dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>, QueueError> {
        let mut conn = self.conn.clone();
        let raw: Vec<Vec<u8>> = conn
            .lrange(self.keys.dead(queue), 0, -1)
            .await
            .map_err(Self::err(queue, "LRANGE dead"))?;
        Ok(raw
            .iter()
            .filter_map(|r| serde_json::from_slice(r).ok())
            .collect())
    }

    /// Number of tasks ready, active, delayed and dead.
    pub async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError> {
        let mut conn = self.conn.clone();
        let (ready, active, delayed, dead): (u64, u64, u64, u64) = redis::pipe()
            .llen(self.keys.ready(queue))
            .llen(self.keys.active(queue))
            .zcard(self.keys.delayed(queue))
            .llen(self.keys.dead(queue))
            .query_async(&mut conn)
            .await
            .map_err(Self::err(queue, "depth"))?;
        Ok(QueueDepth {
            ready,
            active,
            delayed,
            dead,
        })
    }
}

/// Counts of tasks in each state of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    pub ready: u64,
    pub active: u64,
    pub delayed: u64,
    pub dead: u64,
}
