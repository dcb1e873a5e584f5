//! Reading a queue page by page and acting on single tasks, for the monitor
//! (docs/MONITOR.md) and the `rainlogs queue` commands: paged lists per state in
//! serving order (`lua/page.lua`: only the page is read, never every task), finding a
//! task by id or idempotency key, and the operator's actions — run a delayed task now,
//! delete a pending one, cancel a running one (to the dead letters, re-drivable),
//! re-drive every dead letter — each one script, atomic with finding where the task is
//! (`lua/admin.lua`). Redis' own version and memory for the overview.

use chrono::{DateTime, TimeZone, Utc};
use rainlogs_core::task::TaskEnvelope;
use rainlogs_core::TaskError;
use serde::Serialize;

use super::{read_dead_letter, AdminError, DeadLetter, Lane, Queue, QueueError};

/// Where a task is. `Ready` is what the monitor calls pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Ready,
    Delayed,
    Active,
    Dead,
}

impl TaskState {
    pub const ALL: [TaskState; 4] = [
        TaskState::Ready,
        TaskState::Active,
        TaskState::Delayed,
        TaskState::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Ready => "ready",
            TaskState::Delayed => "delayed",
            TaskState::Active => "active",
            TaskState::Dead => "dead",
        }
    }

    /// Parses [`TaskState::as_str`]'s names (and `pending` for ready).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ready" | "pending" => TaskState::Ready,
            "delayed" | "scheduled" | "retry" => TaskState::Delayed,
            "active" => TaskState::Active,
            "dead" => TaskState::Dead,
            _ => return None,
        })
    }
}

/// One task as listed: its envelope when it parses, else the reason, with the raw
/// bytes kept (a poison message stays inspectable).
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub id: String,
    pub queue: String,
    pub state: TaskState,
    pub envelope: Option<TaskEnvelope>,
    /// Why the stored bytes are not an envelope.
    pub unreadable: Option<String>,
    pub raw: String,
    /// Delayed: when due; active: when the lease ends; dead: when it died.
    pub at: Option<DateTime<Utc>>,
    /// Dead letters: the letter (last error, attempts, times).
    pub dead: Option<DeadLetter>,
}

impl TaskView {
    pub fn kind(&self) -> &str {
        self.envelope.as_ref().map_or("", |e| e.kind.as_str())
    }

    pub fn idempotency_key(&self) -> Option<&str> {
        self.envelope.as_ref()?.idempotency_key.as_deref()
    }

    pub fn lane(&self) -> Option<Lane> {
        self.envelope.as_ref().map(Lane::of_envelope)
    }

    fn new(queue: &str, state: TaskState, id: String, stored: &[u8], score: &str) -> Self {
        let at = score
            .parse::<f64>()
            .ok()
            .and_then(|ms| Utc.timestamp_millis_opt(ms as i64).single());
        let (raw, dead) = if state == TaskState::Dead {
            let letter = read_dead_letter(queue, stored);
            (letter.raw.clone(), Some(letter))
        } else {
            (String::from_utf8_lossy(stored).into_owned(), None)
        };
        let (envelope, unreadable) = match TaskEnvelope::parse(raw.as_bytes()) {
            Ok(env) => (Some(env), None),
            Err(e) => (None, Some(e.to_string())),
        };
        Self {
            id,
            queue: queue.to_owned(),
            state,
            envelope,
            unreadable,
            raw,
            at,
            dead,
        }
    }
}

/// One page of a state's tasks.
#[derive(Debug, Clone, Serialize)]
pub struct TaskPage {
    /// Tasks in the state (all of them, not only this page).
    pub total: u64,
    pub offset: u64,
    pub tasks: Vec<TaskView>,
    /// Where the next page starts; `None` after the last. With a kind filter, the
    /// position after the last task looked at.
    pub next_offset: Option<u64>,
}

/// Most tasks one filtered page looks at, so a kind search over a million tasks costs
/// a bounded read per page (the page says where to go on).
pub const FILTER_BUDGET: u64 = 5_000;

/// What an operator's action found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acted {
    /// Done; the task was in this state.
    Done(TaskState),
    /// Not applicable to the state the task is in (nothing changed).
    NotApplicable(TaskState),
    /// No pending task of that id.
    Missing,
}

/// Redis' version and memory, from `INFO`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RedisInfo {
    pub version: String,
    pub used_memory_human: String,
    pub maxmemory_human: String,
    pub uptime_days: String,
    pub connected_clients: String,
}

impl Queue {
    /// One page of `state`'s tasks of `queue`, starting at `offset`, at most `limit`.
    pub async fn page(
        &self,
        queue: &str,
        state: TaskState,
        offset: u64,
        limit: u64,
    ) -> Result<TaskPage, QueueError> {
        let mut inv = self.scripts.page.prepare_invoke();
        inv.arg(self.keys.prefix())
            .arg(queue)
            .arg(state.as_str())
            .arg(offset)
            .arg(limit);
        let mut conn = self.conn.clone();
        let (total, rows): (u64, Vec<(String, Vec<u8>, String)>) = {
            let v: Vec<redis::Value> = inv
                .invoke_async(&mut conn)
                .await
                .map_err(Self::err(queue, "page"))?;
            let mut it = v.into_iter();
            let total: u64 = it
                .next()
                .map(|v| redis::from_redis_value(v).unwrap_or(0))
                .unwrap_or(0);
            let rest: Vec<redis::Value> = it.collect();
            let mut rows = Vec::with_capacity(rest.len() / 3);
            for c in rest.chunks_exact(3) {
                let id: String = redis::from_redis_value(c[0].clone()).unwrap_or_default();
                let body: Vec<u8> = redis::from_redis_value(c[1].clone()).unwrap_or_default();
                let score: String = redis::from_redis_value(c[2].clone()).unwrap_or_default();
                rows.push((id, body, score));
            }
            (total, rows)
        };
        let n = rows.len() as u64;
        let tasks = rows
            .into_iter()
            .map(|(id, body, score)| TaskView::new(queue, state, id, &body, &score))
            .collect();
        Ok(TaskPage {
            total,
            offset,
            tasks,
            next_offset: (n == limit && offset + n < total).then_some(offset + n),
        })
    }

    /// A page of `state`'s tasks of kind `kind`: reads on from `offset` in chunks until
    /// `limit` match or [`FILTER_BUDGET`] tasks were looked at.
    pub async fn page_of_kind(
        &self,
        queue: &str,
        state: TaskState,
        kind: &str,
        offset: u64,
        limit: u64,
    ) -> Result<TaskPage, QueueError> {
        const CHUNK: u64 = 500;
        let mut tasks = Vec::new();
        let mut at = offset;
        let mut total = 0;
        let mut more = true;
        while more && (tasks.len() as u64) < limit && at - offset < FILTER_BUDGET {
            let chunk = self.page(queue, state, at, CHUNK).await?;
            total = chunk.total;
            more = chunk.next_offset.is_some();
            for t in chunk.tasks {
                at += 1;
                if t.kind() == kind {
                    tasks.push(t);
                    if tasks.len() as u64 == limit {
                        more = at < total;
                        break;
                    }
                }
            }
        }
        Ok(TaskPage {
            total,
            offset,
            tasks,
            next_offset: more.then_some(at),
        })
    }

    /// The task `id` of `queue`, wherever it is (pending, running or dead).
    pub async fn find(&self, queue: &str, id: &str) -> Result<Option<TaskView>, QueueError> {
        match self.admin(queue, "find", id, None).await? {
            Some(view) => Ok(Some(view)),
            None => Ok(self
                .dead_letter(queue, id)
                .await?
                .map(|letter| dead_view(queue, id, letter))),
        }
    }

    /// The pending task holding idempotency key `key` in `queue`, if any.
    pub async fn find_by_key(
        &self,
        queue: &str,
        key: &str,
    ) -> Result<Option<TaskView>, QueueError> {
        let mut conn = self.conn.clone();
        let id: Option<String> = redis::cmd("HGET")
            .arg(self.keys.unique(queue))
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(Self::err(queue, "HGET unique"))?;
        match id {
            Some(id) => self.admin(queue, "find", &id, None).await,
            None => Ok(None),
        }
    }

    /// Makes delayed task `id` ready now (next in its group).
    pub async fn run_now(&self, queue: &str, id: &str) -> Result<Acted, QueueError> {
        self.act(queue, "run", id, None, TaskState::Delayed).await
    }

    /// Deletes ready or delayed task `id` (its idempotency key is freed). A dead
    /// letter is deleted with [`Queue::purge_dead`].
    pub async fn delete_pending(&self, queue: &str, id: &str) -> Result<Acted, QueueError> {
        self.act(queue, "delete", id, None, TaskState::Ready).await
    }

    /// Cancels running task `id`: its lease ends at once, the task goes to the dead
    /// letters with error `task.cancelled` (so it can be re-driven), and its
    /// dispatcher stops the run at its next heartbeat (its settle is refused).
    pub async fn cancel(&self, queue: &str, id: &str, by: &str) -> Result<Acted, QueueError> {
        let Some(view) = self.admin(queue, "find", id, None).await? else {
            return Ok(Acted::Missing);
        };
        let now = Utc::now();
        let letter = DeadLetter {
            id: id.to_owned(),
            queue: queue.to_owned(),
            raw: view.raw.clone(),
            error: TaskError::permanent("task.cancelled", format!("cancelled by {by}")),
            attempts: view.envelope.as_ref().map_or(0, |e| e.attempt),
            enqueued_at: view.envelope.as_ref().map(|e| e.enqueued_at),
            last_attempt_at: None,
            dead_at: now,
        };
        let letter = serde_json::to_string(&letter).unwrap_or_default();
        self.act(queue, "cancel", id, Some(&letter), TaskState::Active)
            .await
    }

    /// Re-drives every dead letter of `queue` that can be (a page at a time); returns
    /// how many went back and the ones that could not, with why.
    pub async fn redrive_all(&self, queue: &str) -> Result<(u64, Vec<AdminError>), QueueError> {
        let mut done = 0;
        let mut refused = Vec::new();
        let mut offset = 0;
        loop {
            let page = self.page(queue, TaskState::Dead, offset, 500).await?;
            if page.tasks.is_empty() {
                break;
            }
            for t in &page.tasks {
                match self.redrive(queue, &t.id).await {
                    Ok(_) => done += 1,
                    Err(AdminError::Queue(e)) => return Err(e),
                    Err(AdminError::NoSuchDeadLetter { .. }) => {}
                    // Stays a dead letter: the next page starts after it.
                    Err(e) => {
                        offset += 1;
                        refused.push(e);
                    }
                }
            }
        }
        Ok((done, refused))
    }

    /// Redis' version and memory use.
    pub async fn redis_info(&self) -> Result<RedisInfo, QueueError> {
        let mut conn = self.conn.clone();
        let text: String = redis::cmd("INFO")
            .query_async(&mut conn)
            .await
            .map_err(Self::err("*", "INFO"))?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .unwrap_or("")
                .trim()
                .to_owned()
        };
        Ok(RedisInfo {
            version: field("redis_version"),
            used_memory_human: field("used_memory_human"),
            maxmemory_human: field("maxmemory_human"),
            uptime_days: field("uptime_in_days"),
            connected_clients: field("connected_clients"),
        })
    }

    async fn act(
        &self,
        queue: &str,
        op: &str,
        id: &str,
        letter: Option<&str>,
        applies: TaskState,
    ) -> Result<Acted, QueueError> {
        Ok(match self.admin(queue, op, id, letter).await? {
            None => Acted::Missing,
            Some(v) if v.state == applies || (op == "delete" && v.state == TaskState::Delayed) => {
                Acted::Done(v.state)
            }
            Some(v) => Acted::NotApplicable(v.state),
        })
    }

    /// Runs `lua/admin.lua`; `None` when no pending task has that id.
    async fn admin(
        &self,
        queue: &str,
        op: &str,
        id: &str,
        letter: Option<&str>,
    ) -> Result<Option<TaskView>, QueueError> {
        let mut inv = self.scripts.admin.prepare_invoke();
        inv.arg(self.keys.prefix())
            .arg(queue)
            .arg(op)
            .arg(id)
            .arg(letter.unwrap_or(""));
        let mut conn = self.conn.clone();
        let (state, body, score): (String, Vec<u8>, String) = inv
            .invoke_async(&mut conn)
            .await
            .map_err(Self::err(queue, "admin"))?;
        let state = match state.as_str() {
            "ready" => TaskState::Ready,
            "delayed" => TaskState::Delayed,
            "active" => TaskState::Active,
            _ => return Ok(None),
        };
        Ok(Some(TaskView::new(
            queue,
            state,
            id.to_owned(),
            &body,
            &score,
        )))
    }
}

fn dead_view(queue: &str, id: &str, letter: DeadLetter) -> TaskView {
    let (envelope, unreadable) = match TaskEnvelope::parse(letter.raw.as_bytes()) {
        Ok(env) => (Some(env), None),
        Err(e) => (None, Some(e.to_string())),
    };
    TaskView {
        id: id.to_owned(),
        queue: queue.to_owned(),
        state: TaskState::Dead,
        envelope,
        unreadable,
        raw: letter.raw.clone(),
        at: Some(letter.dead_at),
        dead: Some(letter),
    }
}

/// A dispatcher as it announces itself with each heartbeat tick (`P:dispatchers`):
/// what it consumes, how many tasks it may and does run. The monitor lists those seen
/// within [`PRESENCE_FRESH`].
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Presence {
    pub id: uuid::Uuid,
    pub host: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub seen_at: DateTime<Utc>,
    /// Per queue consumed: (name, configured concurrency, current limit, running).
    pub queues: Vec<(String, usize, usize, usize)>,
}

/// A dispatcher not seen for this long is not listed (a heartbeat tick is a third of
/// the lease: 10 s by default).
pub const PRESENCE_FRESH: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// Presence records older than this are removed when the list is read.
const PRESENCE_KEEP: chrono::TimeDelta = chrono::TimeDelta::hours(1);

impl Queue {
    fn presence_keys(&self) -> (String, String) {
        let p = self.keys.prefix();
        (format!("{p}:dispatchers"), format!("{p}:dispatchers:seen"))
    }

    /// Records `presence` (a dispatcher's heartbeat tick), over `conn`.
    pub async fn announce_on<C: redis::aio::ConnectionLike + Send>(
        &self,
        conn: &mut C,
        presence: &Presence,
    ) -> Result<(), QueueError> {
        let (all, seen) = self.presence_keys();
        redis::pipe()
            .hset(
                &all,
                presence.id.to_string(),
                serde_json::to_string(presence).unwrap_or_default(),
            )
            .zadd(
                &seen,
                presence.id.to_string(),
                presence.seen_at.timestamp_millis(),
            )
            .query_async::<()>(conn)
            .await
            .map_err(Self::err("*", "announce dispatcher"))
    }

    /// Records `presence` over the queue's connection.
    pub async fn announce(&self, presence: &Presence) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        self.announce_on(&mut conn, presence).await
    }

    /// The dispatchers seen within [`PRESENCE_FRESH`], by host; older records are
    /// dropped after [`PRESENCE_KEEP`].
    pub async fn dispatchers(&self) -> Result<Vec<Presence>, QueueError> {
        let (all, seen) = self.presence_keys();
        let mut conn = self.conn.clone();
        let now = Utc::now();
        let stale: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&seen)
            .arg("-inf")
            .arg((now - PRESENCE_KEEP).timestamp_millis())
            .query_async(&mut conn)
            .await
            .map_err(Self::err("*", "ZRANGEBYSCORE dispatchers"))?;
        if !stale.is_empty() {
            redis::pipe()
                .hdel(&all, &stale)
                .zrem(&seen, &stale)
                .query_async::<()>(&mut conn)
                .await
                .map_err(Self::err("*", "drop stale dispatchers"))?;
        }
        let fresh: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&seen)
            .arg((now - PRESENCE_FRESH).timestamp_millis())
            .arg("+inf")
            .query_async(&mut conn)
            .await
            .map_err(Self::err("*", "ZRANGEBYSCORE dispatchers"))?;
        if fresh.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&all)
            .arg(&fresh)
            .query_async(&mut conn)
            .await
            .map_err(Self::err("*", "HMGET dispatchers"))?;
        let mut out: Vec<Presence> = raw
            .into_iter()
            .flatten()
            .filter_map(|r| serde_json::from_str(&r).ok())
            .collect();
        out.sort_by(|a, b| (&a.host, a.pid).cmp(&(&b.host, b.pid)));
        Ok(out)
    }
}
