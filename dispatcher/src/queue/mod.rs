//! The task queue on Redis: lists and sorted sets driven by Lua scripts.
//!
//! Every state change is one Lua script, so a task is always in exactly one place
//! (ready, delayed, active, dead) and several dispatchers can share a queue without
//! locks. Scripts take and settle tasks *in batches* (one round trip for hundreds of
//! tasks), which is what makes the dispatcher fast. docs/QUEUE.md explains the layout
//! and why lists + Lua were chosen over Streams; in short, per queue:
//!
//! - `tasks`   hash   id → envelope bytes (the one copy of each pending task);
//! - `ready:{lane}:{group}` lists of ready ids, pushed left, popped right (FIFO per
//!   group), with `ring:{lane}` listing the groups that have some: reserve serves the
//!   lanes in [`Lane`] order and, within a lane, the groups round robin; `route` hash
//!   id → lane and group, `lanes` hash: per lane the tasks pending and running (the
//!   in-flight bound, docs/QUEUE.md "Order and fairness");
//! - `delayed` zset   id → due time (retries, not-before);
//! - `active`  zset   `id|token` → lease deadline; the token fences a settle or
//!   heartbeat from a holder whose lease already moved to someone else;
//! - `dead`    hash   id → [`DeadLetter`] JSON, with `dead_idx` zset id → time;
//! - `unique`  hash   idempotency key → id, while the task is pending or active;
//! - `stats`   hash   cluster-wide counters; `wake` list: a token for idle waiters.
//!
//! Times inside scripts come from the Redis server clock (`TIME`), so leases and
//! delays mean the same for every dispatcher whatever their clocks say.
//! Postgres remains the truth for pipeline work: Redis may lose messages without
//! losing windows (DESIGN.md, invariant 1).
//!
//! The scripts live in `lua/` (one file each, `common.lua` prepended to all), the key
//! names in [`keys`].

mod browse;
mod keys;

pub use browse::{
    Acted, Presence, RedisInfo, TaskPage, TaskState, TaskView, FILTER_BUDGET, PRESENCE_FRESH,
};
pub use keys::Keys;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rainlogs_core::task::{kinds, EnvelopeError, Priority, TaskEnvelope, TaskSpec};
use rainlogs_core::TaskError;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A queue operation failed in Redis itself (always retryable: Redis is transport).
#[derive(Debug, thiserror::Error)]
#[error("redis queue {queue}: {op}: {source}")]
pub struct QueueError {
    pub queue: String,
    pub op: &'static str,
    #[source]
    pub source: redis::RedisError,
}

impl From<QueueError> for TaskError {
    fn from(e: QueueError) -> Self {
        TaskError::retryable("queue.unavailable", e.to_string())
    }
}

/// An operator request about a single task that cannot be carried out.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("queue {queue}: no dead letter {id}")]
    NoSuchDeadLetter { queue: String, id: String },
    #[error("queue {queue}: dead letter {id} cannot be re-driven: {reason}")]
    NotRedrivable {
        queue: String,
        id: String,
        reason: String,
    },
}

/// Lua shared by the scripts: key names, the server clock and the one enqueue path.
/// Keys are built inside the scripts from the prefix (follow-up tasks may go to any
/// queue), which ties the design to a single Redis node; see docs/QUEUE.md.
const LUA_COMMON: &str = include_str!("lua/common.lua");

/// ARGV: prefix, then (queue, id, body, due_ms, unique_key, lane, group)*. Returns per
/// task the id of the pending duplicate, or '' when enqueued.
const LUA_ENQUEUE: &str = include_str!("lua/enqueue.lua");

/// ARGV: prefix, queue, max, lease_ms, in-flight bound (0: none). Promotes due delayed
/// tasks, then moves up to `max` ready tasks, lane by lane and round robin over each
/// lane's groups, into `active` under fresh lease tokens; starts only while the started
/// units in flight are under the bound.
/// Returns {status, next_due_ms, more, (member, body)*}; status 'paused' or 'ok'.
const LUA_RESERVE: &str = include_str!("lua/reserve.lua");

/// ARGV: prefix, queue, unique_key*. Returns per key 1 when a pending or running task
/// holds it, else 0 (the reconciler asks before re-sending).
const LUA_PENDING: &str = include_str!("lua/pending.lua");

/// ARGV: prefix, queue. Returns {legacy ready, (ready, pending, active) per lane}.
const LUA_DEPTH: &str = include_str!("lua/depth.lua");

/// ARGV: prefix, queue, lease_ms, max. Takes over up to `max` tasks whose lease ran
/// out (their holder died or hung) under a fresh token for this caller, which then
/// settles them as failed attempts. Returns (member, body)*.
const LUA_REAP: &str = include_str!("lua/reap.lua");

/// ARGV: prefix, lease_ms, (queue, member)*. Extends leases still held; returns per
/// member 1 if extended, 0 if the lease was lost.
const LUA_HEARTBEAT: &str = include_str!("lua/heartbeat.lua");

/// ARGV: prefix, dead-letter cap, dead-letter TTL (ms; 0 = none for either), then
/// operations, each `op, queue, member, id, ...`:
///   ack     ukey, n, (queue, id, body, due, ukey)*n   – done; enqueue follow-ups
///   retry   body, due                                 – another attempt later
///   dead    ukey, letter                              – to the dead letters
///   requeue                                           – hand back untouched
/// Each applies only if the caller still holds the lease (`member` in active).
/// Returns per operation 1 (applied) or 0 (lease lost: someone else owns the task).
const LUA_SETTLE: &str = include_str!("lua/settle.lua");

/// ARGV: prefix, queue, id, body, ukey, lane, group. Moves a dead letter back to ready (unless
/// its idempotency key is held by another pending task). Returns '' or the holder,
/// or 'missing' when there is no such dead letter.
const LUA_REDRIVE: &str = include_str!("lua/redrive.lua");

/// ARGV: prefix, name, fire_ms, then one task as for enqueue (7 values). Enqueues a periodic
/// task only if this period has not fired yet (on any dispatcher). Returns 1 if fired.
const LUA_FIRE: &str = include_str!("lua/fire.lua");

/// ARGV: prefix, queue, state, offset, count: one page of a state's tasks (browse.rs).
const LUA_PAGE: &str = include_str!("lua/page.lua");

/// ARGV: prefix, queue, op, id[, letter]: find a pending task, or run, delete or
/// cancel it (browse.rs).
const LUA_ADMIN: &str = include_str!("lua/admin.lua");

fn script(body: &str) -> redis::Script {
    redis::Script::new(&format!("{LUA_COMMON}\n{body}"))
}

/// The compiled scripts (their SHA1s are computed once; Redis caches the bodies).
struct Scripts {
    enqueue: redis::Script,
    reserve: redis::Script,
    reap: redis::Script,
    heartbeat: redis::Script,
    settle: redis::Script,
    redrive: redis::Script,
    fire: redis::Script,
    pending: redis::Script,
    depth: redis::Script,
    page: redis::Script,
    admin: redis::Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            enqueue: script(LUA_ENQUEUE),
            reserve: script(LUA_RESERVE),
            reap: script(LUA_REAP),
            heartbeat: script(LUA_HEARTBEAT),
            settle: script(LUA_SETTLE),
            redrive: script(LUA_REDRIVE),
            fire: script(LUA_FIRE),
            pending: script(LUA_PENDING),
            depth: script(LUA_DEPTH),
            page: script(LUA_PAGE),
            admin: script(LUA_ADMIN),
        }
    }
}

/// The lanes of a queue, served in this order (docs/QUEUE.md, "Order and fairness"):
/// live work before anything else, then tasks without a priority, then backfill; at
/// each priority, tasks that finish started work ([`kinds::finishes_started_work`])
/// before tasks that start new work. Starts (live and backfill) are also held back while
/// the queue's started units in flight reach its bound ([`Queue::with_in_flight_max`]);
/// when room frees, live starts take it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lane {
    LiveFinish = 1,
    LiveStart = 2,
    Normal = 3,
    BackfillFinish = 4,
    BackfillStart = 5,
}

impl Lane {
    /// Every lane, in the order reserve serves them.
    pub const ALL: [Lane; 5] = [
        Lane::LiveFinish,
        Lane::LiveStart,
        Lane::Normal,
        Lane::BackfillFinish,
        Lane::BackfillStart,
    ];

    /// The lane of a task of `kind` at `priority`.
    pub fn of(priority: Priority, kind: &str) -> Lane {
        let finish = kinds::finishes_started_work(kind);
        match (priority, finish) {
            (Priority::Live, true) => Lane::LiveFinish,
            (Priority::Live, false) => Lane::LiveStart,
            (Priority::Normal, _) => Lane::Normal,
            (Priority::Backfill, true) => Lane::BackfillFinish,
            (Priority::Backfill, false) => Lane::BackfillStart,
        }
    }

    /// The lane of an envelope.
    pub fn of_envelope(env: &TaskEnvelope) -> Lane {
        Lane::of(env.priority, &env.kind)
    }

    /// The number the scripts know the lane by.
    pub fn number(self) -> u8 {
        self as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            Lane::LiveFinish => "live-finish",
            Lane::LiveStart => "live-start",
            Lane::Normal => "normal",
            Lane::BackfillFinish => "backfill-finish",
            Lane::BackfillStart => "backfill-start",
        }
    }
}

/// How many started units (windows between their fetch and their upload) may be
/// unfinished before fetches wait (`RAINLOGS_IN_FLIGHT_MAX`; docs/QUEUE.md): the
/// staged and sealed objects in flight stay within this number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlightMax(pub usize);

impl InFlightMax {
    pub const VAR: &'static str = "RAINLOGS_IN_FLIGHT_MAX";
    /// Started units per CPU core by default: enough to keep every stage of a core busy
    /// (a unit spends most of its life waiting on Logpull, S3 or Postgres), few enough
    /// that a backfill never piles up thousands of staged objects.
    pub const PER_CORE: usize = 32;

    pub fn from_source(
        src: &rainlogs_core::config::ConfigSource,
    ) -> Result<Self, rainlogs_core::config::ConfigError> {
        let n: usize = src.parsed_or(Self::VAR, Self::default().0)?;
        if !(1..=1_000_000).contains(&n) {
            return Err(rainlogs_core::config::ConfigError::Invalid {
                var: Self::VAR.into(),
                reason: format!("{n} is outside 1..=1000000"),
            });
        }
        Ok(Self(n))
    }
}

impl Default for InFlightMax {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self(Self::PER_CORE * cores)
    }
}

/// One task taken from a queue under a lease.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub queue: String,
    /// The task id as stored in the queue (the envelope's id when it parses).
    pub id: String,
    /// The lease: `id|token`. Only the holder of this exact member may settle it.
    pub lease: String,
    /// The stored bytes (verbatim, so a poison message stays inspectable).
    pub raw: Vec<u8>,
    pub envelope: Result<TaskEnvelope, EnvelopeError>,
}

impl Delivery {
    fn new(queue: &str, lease: Vec<u8>, raw: Vec<u8>) -> Self {
        let lease = String::from_utf8_lossy(&lease).into_owned();
        let id = lease
            .rsplit_once('|')
            .map(|(id, _)| id.to_owned())
            .unwrap_or_else(|| lease.clone());
        Self {
            queue: queue.to_owned(),
            envelope: TaskEnvelope::parse(&raw),
            id,
            lease,
            raw,
        }
    }

    /// Just the lease (queue, id, token), without the body: enough to hand the task
    /// back or extend its lease, and cheap to keep for every running task.
    pub fn lease_only(&self) -> Delivery {
        Delivery {
            queue: self.queue.clone(),
            id: self.id.clone(),
            lease: self.lease.clone(),
            raw: Vec::new(),
            envelope: Err(EnvelopeError::Malformed(
                "body not kept with the lease".into(),
            )),
        }
    }

    /// The idempotency key to release when this task ends ('' when none).
    fn unique_key(&self) -> &str {
        self.envelope
            .as_ref()
            .ok()
            .and_then(|e| e.idempotency_key.as_deref())
            .unwrap_or("")
    }
}

/// A batch reserved from one queue.
#[derive(Debug, Default)]
pub struct Reserved {
    pub paused: bool,
    /// When the earliest delayed task falls due (server clock, ms), if any.
    pub next_due_ms: Option<i64>,
    /// More ready tasks remain after this batch.
    pub more: bool,
    pub deliveries: Vec<Delivery>,
}

/// A dead-lettered task with its last error, attempts and times.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The task id in the queue.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub queue: String,
    /// The envelope as it was delivered (verbatim, so a poison message stays inspectable).
    pub raw: String,
    /// The error of the last attempt.
    pub error: TaskError,
    /// Attempts made (0 when the envelope never parsed).
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueued_at: Option<DateTime<Utc>>,
    /// When the last attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub dead_at: DateTime<Utc>,
}

/// How a delivery ends, as handed to [`Queue::settle`].
#[derive(Debug, Clone)]
pub enum Settlement {
    /// Done; `next` are follow-up tasks enqueued in the same script.
    Ack { next: Vec<TaskEnvelope> },
    /// Another attempt: `envelope` (attempt already incremented) due at `due`.
    Retry {
        envelope: TaskEnvelope,
        due: DateTime<Utc>,
    },
    /// To the dead letters.
    Dead(DeadLetter),
    /// Handed back untouched to the front of the queue (shutdown).
    Requeue,
}

/// A settle request: which delivery, and how it ends.
#[derive(Debug, Clone)]
pub struct Settle {
    pub delivery: Delivery,
    pub settlement: Settlement,
}

/// What enqueueing did.
#[derive(Debug, Clone, PartialEq)]
pub enum Enqueued {
    New(TaskEnvelope),
    /// A pending or active task already holds the idempotency key.
    Duplicate {
        existing: Uuid,
    },
}

/// Parses a stored dead letter. One that does not parse (written by another version,
/// or damaged in Redis) stays listed with its bytes and the reason, never hidden.
fn read_dead_letter(queue: &str, stored: &[u8]) -> DeadLetter {
    serde_json::from_slice(stored).unwrap_or_else(|e| DeadLetter {
        id: String::new(),
        queue: queue.to_owned(),
        raw: String::from_utf8_lossy(stored).into_owned(),
        error: TaskError::permanent(
            "dead_letter.unreadable",
            format!("stored dead letter does not parse: {e}"),
        ),
        attempts: 0,
        enqueued_at: None,
        last_attempt_at: None,
        dead_at: Utc::now(),
    })
}

/// A handle on the queues of one deployment (cheap to clone).
#[derive(Clone)]
pub struct Queue {
    conn: ConnectionManager,
    /// For blocking waits, which need a connection of their own.
    client: Option<redis::Client>,
    keys: Keys,
    scripts: std::sync::Arc<Scripts>,
    dead_letters: DeadLetterPolicy,
    in_flight_max: InFlightMax,
}

/// How many dead letters a queue keeps, and for how long (docs/QUEUE.md). Applied each
/// time a task is dead-lettered: letters past `ttl` expire, and beyond `max` the oldest
/// go; both counted in the queue's `dead_dropped` counter. Nothing of the archive is
/// lost with a dropped letter: window tasks are re-derived from the Postgres ledger by
/// the reconciler; a dead letter is the diagnosis, not the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterPolicy {
    /// Most dead letters kept per queue (0 = no cap).
    pub max: u64,
    /// Longest a dead letter is kept (zero = forever).
    pub ttl: std::time::Duration,
}

impl DeadLetterPolicy {
    pub const MAX: &'static str = "RAINLOGS_DEAD_LETTER_MAX";
    pub const TTL_DAYS: &'static str = "RAINLOGS_DEAD_LETTER_TTL_DAYS";

    pub fn from_source(
        src: &rainlogs_core::config::ConfigSource,
    ) -> Result<Self, rainlogs_core::config::ConfigError> {
        let d = Self::default();
        let days: u64 = src.parsed_or(Self::TTL_DAYS, d.ttl.as_secs() / 86_400)?;
        if days > 3650 {
            return Err(rainlogs_core::config::ConfigError::Invalid {
                var: Self::TTL_DAYS.into(),
                reason: format!("{days} days is more than 10 years (0 keeps them forever)"),
            });
        }
        Ok(Self {
            max: src.parsed_or(Self::MAX, d.max)?,
            ttl: std::time::Duration::from_secs(days * 86_400),
        })
    }
}

impl Default for DeadLetterPolicy {
    fn default() -> Self {
        Self {
            max: 10_000,
            ttl: std::time::Duration::from_secs(30 * 86_400),
        }
    }
}

impl Queue {
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            client: None,
            keys: Keys::new(prefix),
            scripts: std::sync::Arc::new(Scripts::new()),
            dead_letters: DeadLetterPolicy::default(),
            in_flight_max: InFlightMax::default(),
        }
    }

    /// Applies `policy` to the dead letters this queue writes.
    pub fn with_dead_letters(mut self, policy: DeadLetterPolicy) -> Self {
        self.dead_letters = policy;
        self
    }

    /// Holds starts back while `max` started units are unfinished (per queue,
    /// cluster-wide: the count lives in Redis; each reserve applies its caller's bound).
    pub fn with_in_flight_max(mut self, max: InFlightMax) -> Self {
        self.in_flight_max = max;
        self
    }

    pub fn in_flight_max(&self) -> InFlightMax {
        self.in_flight_max
    }

    /// The client blocking waits and the heartbeat thread connect with, if any.
    pub fn client(&self) -> Option<&redis::Client> {
        self.client.as_ref()
    }

    /// Lets idle workers block on Redis for new work instead of polling.
    pub fn with_client(mut self, client: redis::Client) -> Self {
        self.client = Some(client);
        self
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The same Redis, under the key prefix `{prefix}:{scope}`: a private set of queues
    /// no worker of the parent prefix sees (the demo runs its tasks this way).
    pub fn scoped(&self, scope: &str) -> Queue {
        Queue {
            conn: self.conn.clone(),
            client: self.client.clone(),
            keys: Keys::new(format!("{}:{scope}", self.keys.prefix())),
            scripts: self.scripts.clone(),
            dead_letters: self.dead_letters,
            in_flight_max: self.in_flight_max,
        }
    }

    /// Deletes every key under this queue's prefix (`{prefix}:*`); returns how many.
    /// For a private scope that is done with ([`Queue::scoped`]), never a shared prefix.
    pub async fn delete_all(&self) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}:*", self.keys.prefix());
        let mut cursor = 0u64;
        let mut deleted = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await
                .map_err(Self::err("*", "SCAN"))?;
            if !keys.is_empty() {
                let n: u64 = conn.del(&keys).await.map_err(Self::err("*", "DEL"))?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
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

    /// Enqueues a new task; returns its envelope, or — when a pending task holds the
    /// same idempotency key — that task's stored envelope.
    pub async fn enqueue(&self, spec: TaskSpec) -> Result<TaskEnvelope, QueueError> {
        let queue = spec.queue.clone();
        match self.enqueue_checked(spec).await? {
            Enqueued::New(env) => Ok(env),
            Enqueued::Duplicate { existing } => {
                let mut conn = self.conn.clone();
                let raw: Option<Vec<u8>> = conn
                    .hget(self.keys.tasks(&queue), existing.to_string())
                    .await
                    .map_err(Self::err(&queue, "HGET task"))?;
                raw.and_then(|r| TaskEnvelope::parse(&r).ok())
                    .ok_or_else(|| QueueError {
                        queue: queue.clone(),
                        op: "enqueue",
                        source: redis::RedisError::from((
                            redis::ErrorKind::Client,
                            "duplicate task vanished while reading it; enqueue again",
                        )),
                    })
            }
        }
    }

    /// Enqueues a new task and says whether it was a duplicate.
    pub async fn enqueue_checked(&self, spec: TaskSpec) -> Result<Enqueued, QueueError> {
        let envelope = TaskEnvelope::new(spec, Utc::now());
        let mut out = self.push_many(std::slice::from_ref(&envelope)).await?;
        Ok(out.pop().unwrap_or(Enqueued::New(envelope)))
    }

    /// Enqueues many tasks in one round trip (producers, benchmarks).
    pub async fn enqueue_many(&self, specs: Vec<TaskSpec>) -> Result<Vec<Enqueued>, QueueError> {
        let now = Utc::now();
        let envelopes: Vec<TaskEnvelope> = specs
            .into_iter()
            .map(|s| TaskEnvelope::new(s, now))
            .collect();
        self.push_many(&envelopes).await
    }

    /// Pushes an envelope as it is: ready now, or delayed until `not_before`.
    pub async fn push(&self, envelope: &TaskEnvelope) -> Result<Enqueued, QueueError> {
        let mut out = self.push_many(std::slice::from_ref(envelope)).await?;
        Ok(out.pop().unwrap_or_else(|| Enqueued::New(envelope.clone())))
    }

    /// Pushes envelopes as they are, in one script call.
    pub async fn push_many(&self, envelopes: &[TaskEnvelope]) -> Result<Vec<Enqueued>, QueueError> {
        let Some(first) = envelopes.first() else {
            return Ok(Vec::new());
        };
        let mut inv = self.scripts.enqueue.prepare_invoke();
        inv.arg(self.keys.prefix());
        for env in envelopes {
            push_task_args(&mut inv, env);
        }
        let mut conn = self.conn.clone();
        let holders: Vec<String> = inv
            .invoke_async(&mut conn)
            .await
            .map_err(Self::err(&first.queue, "enqueue"))?;
        Ok(envelopes
            .iter()
            .zip(holders)
            .map(|(env, holder)| match Uuid::parse_str(&holder) {
                Ok(existing) => Enqueued::Duplicate { existing },
                Err(_) => Enqueued::New(env.clone()),
            })
            .collect())
    }

    /// Pushes raw bytes as a ready task (tests and tools injecting messages); returns
    /// the id it is stored under.
    pub async fn push_raw(&self, queue: &str, raw: &[u8]) -> Result<String, QueueError> {
        let id = Uuid::now_v7().to_string();
        let mut inv = self.scripts.enqueue.prepare_invoke();
        inv.arg(self.keys.prefix())
            .arg(queue)
            .arg(&id)
            .arg(raw)
            .arg(0)
            .arg("")
            .arg(Lane::Normal.number())
            .arg("");
        let mut conn = self.conn.clone();
        inv.invoke_async::<Vec<String>>(&mut conn)
            .await
            .map_err(Self::err(queue, "push raw"))?;
        Ok(id)
    }

    /// Takes up to `max` ready tasks (promoting due delayed ones first) under a lease.
    pub async fn reserve(
        &self,
        queue: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Reserved, QueueError> {
        let mut inv = self.scripts.reserve.prepare_invoke();
        inv.arg(self.keys.prefix())
            .arg(queue)
            .arg(max)
            .arg(lease.as_millis() as u64)
            .arg(self.in_flight_max.0);
        let mut conn = self.conn.clone();
        let reply: Vec<Vec<u8>> = inv
            .invoke_async(&mut conn)
            .await
            .map_err(Self::err(queue, "reserve"))?;
        let mut it = reply.into_iter();
        let status = it.next().unwrap_or_default();
        let next_due_ms = it
            .next()
            .and_then(|b| String::from_utf8_lossy(&b).parse::<f64>().ok())
            .filter(|v| *v >= 0.0)
            .map(|v| v as i64);
        let more = it.next().is_some_and(|b| b == b"1");
        let mut deliveries = Vec::new();
        while let (Some(member), Some(body)) = (it.next(), it.next()) {
            deliveries.push(Delivery::new(queue, member, body));
        }
        Ok(Reserved {
            paused: status == b"paused",
            next_due_ms,
            more,
            deliveries,
        })
    }

    /// Takes over up to `max` tasks whose lease expired, under a fresh lease.
    pub async fn reap(
        &self,
        queue: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut inv = self.scripts.reap.prepare_invoke();
        inv.arg(self.keys.prefix())
            .arg(queue)
            .arg(lease.as_millis() as u64)
            .arg(max);
        let mut conn = self.conn.clone();
        let reply: Vec<Vec<u8>> = inv
            .invoke_async(&mut conn)
            .await
            .map_err(Self::err(queue, "reap"))?;
        let mut it = reply.into_iter();
        let mut out = Vec::new();
        while let (Some(member), Some(body)) = (it.next(), it.next()) {
            out.push(Delivery::new(queue, member, body));
        }
        Ok(out)
    }

    /// Extends the leases of `(queue, lease)` pairs; returns which are still held.
    pub async fn heartbeat(
        &self,
        leases: &[(String, String)],
        lease: Duration,
    ) -> Result<Vec<bool>, QueueError> {
        let mut conn = self.conn.clone();
        self.heartbeat_on(&mut conn, leases, lease).await
    }

    /// [`Queue::heartbeat`] over a connection of the caller's: the heartbeat thread
    /// has its own, driven by its own runtime, so a busy main runtime cannot hold
    /// its Redis traffic back.
    pub async fn heartbeat_on<C: redis::aio::ConnectionLike + Send>(
        &self,
        conn: &mut C,
        leases: &[(String, String)],
        lease: Duration,
    ) -> Result<Vec<bool>, QueueError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.scripts.heartbeat.prepare_invoke();
        inv.arg(self.keys.prefix()).arg(lease.as_millis() as u64);
        for (queue, member) in leases {
            inv.arg(queue).arg(member);
        }
        let held: Vec<i64> = inv
            .invoke_async(conn)
            .await
            .map_err(Self::err(&leases[0].0, "heartbeat"))?;
        Ok(held.into_iter().map(|h| h == 1).collect())
    }

    /// Which of `keys` a pending or running task of `queue` holds (one round trip): the
    /// reconciler re-sends only what is missing instead of pushing a whole backlog's
    /// envelopes through the dedup check on every pass.
    pub async fn holds_keys(&self, queue: &str, keys: &[String]) -> Result<Vec<bool>, QueueError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.scripts.pending.prepare_invoke();
        inv.arg(self.keys.prefix()).arg(queue);
        for key in keys {
            inv.arg(key);
        }
        let mut conn = self.conn.clone();
        let held: Vec<i64> = inv
            .invoke_async(&mut conn)
            .await
            .map_err(Self::err(queue, "check pending keys"))?;
        Ok(held.into_iter().map(|h| h == 1).collect())
    }

    /// Settles a batch of deliveries in one script; returns per item whether the lease
    /// was still held (false: the task had been handed to someone else; nothing done).
    pub async fn settle(&self, batch: &[Settle]) -> Result<Vec<bool>, QueueError> {
        let Some(first) = batch.first() else {
            return Ok(Vec::new());
        };
        let mut inv = self.scripts.settle.prepare_invoke();
        inv.arg(self.keys.prefix())
            .arg(self.dead_letters.max)
            .arg(self.dead_letters.ttl.as_millis() as u64);
        for item in batch {
            let d = &item.delivery;
            let op = match &item.settlement {
                Settlement::Ack { .. } => "ack",
                Settlement::Retry { .. } => "retry",
                Settlement::Dead(_) => "dead",
                Settlement::Requeue => "requeue",
            };
            inv.arg(op).arg(&d.queue).arg(&d.lease).arg(&d.id);
            match &item.settlement {
                Settlement::Ack { next } => {
                    inv.arg(d.unique_key()).arg(next.len());
                    for env in next {
                        push_task_args(&mut inv, env);
                    }
                }
                Settlement::Retry { envelope, due } => {
                    inv.arg(envelope.to_json()).arg(due_ms(*due));
                }
                Settlement::Dead(letter) => {
                    let json = serde_json::to_vec(letter).unwrap_or_else(|e| {
                        // A DeadLetter is plain data; this cannot fail, but never panic.
                        format!("{{\"serialise_error\":{:?}}}", e.to_string()).into_bytes()
                    });
                    inv.arg(d.unique_key()).arg(json);
                }
                Settlement::Requeue => {}
            }
        }
        let mut conn = self.conn.clone();
        let held: Vec<i64> = inv
            .invoke_async(&mut conn)
            .await
            .map_err(Self::err(&first.delivery.queue, "settle"))?;
        Ok(held.into_iter().map(|h| h == 1).collect())
    }

    /// Fires schedule `name` for the period starting at `at` with `envelope`, unless
    /// some dispatcher already fired that period. Returns whether this call fired it.
    pub async fn fire_schedule(
        &self,
        name: &str,
        at: DateTime<Utc>,
        envelope: &TaskEnvelope,
    ) -> Result<bool, QueueError> {
        let mut inv = self.scripts.fire.prepare_invoke();
        inv.arg(self.keys.prefix())
            .arg(name)
            .arg(at.timestamp_millis());
        push_task_args(&mut inv, envelope);
        let mut conn = self.conn.clone();
        let fired: i64 = inv
            .invoke_async(&mut conn)
            .await
            .map_err(Self::err(&envelope.queue, "fire schedule"))?;
        Ok(fired == 1)
    }

    /// Blocks up to `wait` for an enqueue signal on `queue` (idle workers only).
    /// Returns at once without a blocking client (then the caller polls).
    pub async fn wait_for_work(
        &self,
        conn: &mut Option<redis::aio::MultiplexedConnection>,
        queue: &str,
        wait: Duration,
    ) -> Result<(), QueueError> {
        let Some(client) = &self.client else {
            tokio::time::sleep(wait.min(Duration::from_millis(50))).await;
            return Ok(());
        };
        if conn.is_none() {
            // Its own TCP connection: a blocking command stalls everything queued behind it.
            let cfg = redis::AsyncConnectionConfig::new()
                .set_response_timeout(Some(wait + Duration::from_secs(5)));
            *conn = Some(
                client
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await
                    .map_err(Self::err(queue, "connect for blocking wait"))?,
            );
        }
        let Some(c) = conn.as_mut() else {
            return Ok(());
        };
        let secs = wait.as_secs_f64().max(0.001);
        let res: Result<Option<(String, String)>, _> = c.blpop(self.keys.wake(queue), secs).await;
        if let Err(e) = res {
            *conn = None;
            return Err(Self::err(queue, "BLPOP wake")(e));
        }
        Ok(())
    }

    /// The dead letters of a queue, newest first (at most `limit`, 0 = all).
    pub async fn dead_letters_limit(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let mut conn = self.conn.clone();
        let stop = if limit == 0 { -1 } else { limit as isize - 1 };
        let ids: Vec<String> = conn
            .zrevrange(self.keys.dead_index(queue), 0, stop)
            .await
            .map_err(Self::err(queue, "ZREVRANGE dead"))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(self.keys.dead(queue))
            .arg(&ids)
            .query_async(&mut conn)
            .await
            .map_err(Self::err(queue, "HMGET dead"))?;
        Ok(raw
            .into_iter()
            .flatten()
            .map(|r| read_dead_letter(queue, &r))
            .collect())
    }

    /// The dead letters of a queue, newest first.
    pub async fn dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>, QueueError> {
        self.dead_letters_limit(queue, 0).await
    }

    /// One dead letter by task id.
    pub async fn dead_letter(
        &self,
        queue: &str,
        id: &str,
    ) -> Result<Option<DeadLetter>, QueueError> {
        let mut conn = self.conn.clone();
        let raw: Option<Vec<u8>> = conn
            .hget(self.keys.dead(queue), id)
            .await
            .map_err(Self::err(queue, "HGET dead"))?;
        Ok(raw.map(|r| read_dead_letter(queue, &r)))
    }

    /// Re-drives a dead letter: a fresh first attempt, same id. Fails when the
    /// envelope never parsed or another pending task holds its idempotency key.
    pub async fn redrive(&self, queue: &str, id: &str) -> Result<TaskEnvelope, AdminError> {
        let letter =
            self.dead_letter(queue, id)
                .await?
                .ok_or_else(|| AdminError::NoSuchDeadLetter {
                    queue: queue.to_owned(),
                    id: id.to_owned(),
                })?;
        let not_redrivable = |reason: String| AdminError::NotRedrivable {
            queue: queue.to_owned(),
            id: id.to_owned(),
            reason,
        };
        let mut env = TaskEnvelope::parse(letter.raw.as_bytes())
            .map_err(|e| not_redrivable(e.to_string()))?;
        env.attempt = 1;
        env.not_before = None;
        let mut inv = self.scripts.redrive.prepare_invoke();
        inv.arg(self.keys.prefix())
            .arg(queue)
            .arg(id)
            .arg(env.to_json())
            .arg(env.idempotency_key.as_deref().unwrap_or(""))
            .arg(Lane::of_envelope(&env).number())
            .arg(env.group.as_deref().unwrap_or(""));
        let mut conn = self.conn.clone();
        let holder: String = inv
            .invoke_async(&mut conn)
            .await
            .map_err(Self::err(queue, "redrive"))?;
        match holder.as_str() {
            "" => Ok(env),
            "missing" => Err(AdminError::NoSuchDeadLetter {
                queue: queue.to_owned(),
                id: id.to_owned(),
            }),
            other => Err(not_redrivable(format!(
                "pending task {other} holds its idempotency key"
            ))),
        }
    }

    /// Deletes dead letters: the given ids, or all when `ids` is empty. Returns how many.
    pub async fn purge_dead(&self, queue: &str, ids: &[String]) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        if ids.is_empty() {
            let n: u64 = conn
                .hlen(self.keys.dead(queue))
                .await
                .map_err(Self::err(queue, "HLEN dead"))?;
            redis::pipe()
                .atomic()
                .del(self.keys.dead(queue))
                .del(self.keys.dead_index(queue))
                .query_async::<()>(&mut conn)
                .await
                .map_err(Self::err(queue, "purge dead"))?;
            return Ok(n);
        }
        let (n, _): (u64, u64) = redis::pipe()
            .atomic()
            .hdel(self.keys.dead(queue), ids)
            .zrem(self.keys.dead_index(queue), ids)
            .query_async(&mut conn)
            .await
            .map_err(Self::err(queue, "purge dead"))?;
        Ok(n)
    }

    /// Stops (or resumes) handing out tasks of `queue` to every dispatcher.
    pub async fn set_paused(&self, queue: &str, paused: bool) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let r: Result<(), _> = if paused {
            redis::pipe()
                .sadd(self.keys.paused(), queue)
                .sadd(self.keys.queues(), queue)
                .query_async(&mut conn)
                .await
        } else {
            conn.srem(self.keys.paused(), queue).await
        };
        r.map_err(Self::err(queue, "pause/resume"))
    }

    /// Every queue that ever had a task or was paused.
    pub async fn known_queues(&self) -> Result<Vec<String>, QueueError> {
        let mut conn = self.conn.clone();
        let mut queues: Vec<String> = conn
            .smembers(self.keys.queues())
            .await
            .map_err(Self::err("*", "SMEMBERS queues"))?;
        queues.sort();
        Ok(queues)
    }

    /// Counts of tasks in each state of one queue.
    pub async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError> {
        Ok(self.stats(queue).await?.depth)
    }

    /// Depth, pause state and the cluster-wide counters of one queue.
    pub async fn stats(&self, queue: &str) -> Result<QueueStats, QueueError> {
        let mut conn = self.conn.clone();
        #[allow(clippy::type_complexity)]
        let (active, delayed, dead, paused, counters): (
            u64,
            u64,
            u64,
            bool,
            BTreeMap<String, u64>,
        ) = redis::pipe()
            .zcard(self.keys.active(queue))
            .zcard(self.keys.delayed(queue))
            .hlen(self.keys.dead(queue))
            .sismember(self.keys.paused(), queue)
            .hgetall(self.keys.stats(queue))
            .query_async(&mut conn)
            .await
            .map_err(Self::err(queue, "stats"))?;
        let mut inv = self.scripts.depth.prepare_invoke();
        inv.arg(self.keys.prefix()).arg(queue);
        let depth: Vec<i64> = inv
            .invoke_async(&mut conn)
            .await
            .map_err(Self::err(queue, "lane depth"))?;
        let n = |i: usize| depth.get(i).copied().unwrap_or(0).max(0) as u64;
        let lanes: Vec<LaneDepth> = Lane::ALL
            .iter()
            .enumerate()
            .map(|(i, &lane)| LaneDepth {
                lane,
                ready: n(1 + 3 * i),
                pending: n(2 + 3 * i),
                running: n(3 + 3 * i),
            })
            .collect();
        let ready = n(0) + lanes.iter().map(|l| l.ready).sum::<u64>();
        let lane = |l: Lane| lanes[l as usize - 1];
        let in_flight = lane(Lane::LiveFinish).pending
            + lane(Lane::LiveStart).running
            + lane(Lane::BackfillFinish).pending
            + lane(Lane::BackfillStart).running;
        let c = |name: &str| counters.get(name).copied().unwrap_or(0);
        Ok(QueueStats {
            queue: queue.to_owned(),
            paused,
            depth: QueueDepth {
                ready,
                active,
                delayed,
                dead,
            },
            in_flight,
            lanes,
            enqueued: c("enqueued"),
            processed: c("processed"),
            failed: c("failed"),
            retried: c("retried"),
            dead_lettered: c("dead"),
            dead_dropped: c("dead_dropped"),
        })
    }
}

/// A due time in whole milliseconds, rounded up: Redis compares milliseconds, and a
/// task must never start before its `not_before`, not even by a fraction of one.
fn due_ms(t: DateTime<Utc>) -> i64 {
    let extra = i64::from(t.timestamp_subsec_nanos() % 1_000_000 != 0);
    t.timestamp_millis() + extra
}

fn push_task_args(inv: &mut redis::ScriptInvocation<'_>, env: &TaskEnvelope) {
    let due = env.not_before.map(due_ms).unwrap_or(0);
    inv.arg(&env.queue)
        .arg(env.id.to_string())
        .arg(env.to_json())
        .arg(due)
        .arg(env.idempotency_key.as_deref().unwrap_or(""))
        .arg(Lane::of_envelope(env).number())
        .arg(env.group.as_deref().unwrap_or(""));
}

/// One lane of a queue: tasks ready in it, pending in all (ready, delayed or running)
/// and running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LaneDepth {
    pub lane: Lane,
    pub ready: u64,
    pub pending: u64,
    pub running: u64,
}

/// Counts of tasks in each state of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    pub ready: u64,
    pub active: u64,
    pub delayed: u64,
    pub dead: u64,
}

/// A queue's state and its cluster-wide counters (every dispatcher adds to them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    pub queue: String,
    pub paused: bool,
    pub depth: QueueDepth,
    pub enqueued: u64,
    pub processed: u64,
    pub failed: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    /// Dead letters expired or dropped over the cap ([`DeadLetterPolicy`]).
    pub dead_dropped: u64,
    /// Started units not yet finished, as the in-flight bound counts them: live and
    /// backfill finish tasks pending, live and backfill start tasks running.
    pub in_flight: u64,
    /// Per lane, in serving order.
    pub lanes: Vec<LaneDepth>,
}
