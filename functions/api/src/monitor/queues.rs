//! The queue pages: every queue with its counts by state, one queue's lanes and a
//! paged task list per state (search by id, idempotency key or kind), one task in
//! full, and the actions — pause, resume, run now, delete, cancel, re-drive — each
//! one call of the dispatcher's `queue` and one audit row (`queue.<action>`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::Extension;
use rainlogs_archive::audit::{self, AuditEvent};
use rainlogs_archive::catalog::account::Permission;
use rainlogs_archive::catalog::session::Session;
use rainlogs_dispatcher::queue::{Acted, Queue, TaskState, TaskView};
use serde::{Deserialize, Serialize};

use super::{back, need, need_action, prefix, render, Chrome, Form, PageError, PageResult};
use crate::Api;

/// Tasks per page.
const PAGE: u64 = 50;

fn queue_of(api: &Api) -> Result<&Queue, PageError> {
    api.services().queue.as_ref().ok_or_else(|| {
        PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this API runs without Redis (RAINLOGS_REDIS_URL): there are no queues to show",
        )
    })
}

/// `name` if it is a queue Redis knows (else 404: pages and actions never create one).
async fn known(queue: &Queue, name: &str) -> Result<(), PageError> {
    let all = queue.known_queues().await.map_err(PageError::redis)?;
    if all.iter().any(|q| q == name) {
        Ok(())
    } else {
        Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("no queue {name:?}"),
        ))
    }
}

/// The first page: the queues for who may see them, else the zones.
pub(crate) async fn home(State(api): State<Api>, Extension(s): Extension<Session>) -> PageResult {
    let to = if super::may(&s, Permission::ReadHealth, true) {
        "queues"
    } else {
        "zones"
    };
    Ok(Redirect::to(&format!("{}/{to}", prefix(&api))).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct Note {
    note: Option<String>,
}

pub(crate) async fn overview(
    State(api): State<Api>,
    Extension(s): Extension<Session>,
    Query(q): Query<Note>,
) -> PageResult {
    need(&s, Permission::ReadHealth, true)?;
    let queue = queue_of(&api)?;
    let mut queues = Vec::new();
    for name in queue.known_queues().await.map_err(PageError::redis)? {
        queues.push(queue.stats(&name).await.map_err(PageError::redis)?);
    }
    let redis = queue.redis_info().await.map_err(PageError::redis)?;
    let dispatchers = queue.dispatchers().await.map_err(PageError::redis)?;
    render(
        "overview.html",
        minijinja::context! {
            chrome => Chrome::of(&api, &s),
            title => "Queues",
            queues => queues,
            redis => redis,
            dispatchers => dispatchers,
            can_act => may_act(&api, &s),
            note => q.note,
        },
    )
}

fn may_act(api: &Api, s: &Session) -> bool {
    !api.config().monitor.read_only && super::may(s, Permission::ManageQueues, true)
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    state: Option<String>,
    offset: Option<u64>,
    kind: Option<String>,
    /// A task id or an idempotency key.
    find: Option<String>,
    note: Option<String>,
}

/// A task as a row of the list.
#[derive(Debug, Serialize)]
struct Row {
    id: String,
    state: &'static str,
    kind: String,
    lane: String,
    attempt: String,
    key: String,
    enqueued_at: String,
    at: String,
    error: String,
    unreadable: Option<String>,
}

fn row(t: &TaskView) -> Row {
    let env = t.envelope.as_ref();
    Row {
        id: t.id.clone(),
        state: t.state.as_str(),
        kind: t.kind().to_owned(),
        lane: t.lane().map(|l| l.name().to_owned()).unwrap_or_default(),
        attempt: env
            .map(|e| format!("{}/{}", e.attempt, e.max_attempts))
            .unwrap_or_default(),
        key: t.idempotency_key().unwrap_or("").to_owned(),
        enqueued_at: env.map(|e| time(e.enqueued_at)).unwrap_or_default(),
        at: t.at.map(time).unwrap_or_default(),
        error: t
            .dead
            .as_ref()
            .map(|d| format!("{}: {}", d.error.code, d.error.message))
            .unwrap_or_default(),
        unreadable: t.unreadable.clone(),
    }
}

pub(crate) fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

pub(crate) async fn queue(
    State(api): State<Api>,
    Extension(s): Extension<Session>,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    need(&s, Permission::ReadHealth, true)?;
    let queue = queue_of(&api)?;
    known(queue, &name).await?;
    let state = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => TaskState::Ready,
        Some(st) => TaskState::parse(st).ok_or_else(|| {
            PageError::bad_request(format!(
                "no task state {st:?} (ready, active, delayed, dead)"
            ))
        })?,
    };
    let stats = queue.stats(&name).await.map_err(PageError::redis)?;
    let offset = q.offset.unwrap_or(0);
    let kind = q.kind.as_deref().map(str::trim).filter(|k| !k.is_empty());
    let find = q.find.as_deref().map(str::trim).filter(|k| !k.is_empty());
    let (rows, total, next, searched) = if let Some(needle) = find {
        let found = if uuid::Uuid::parse_str(needle).is_ok() {
            queue.find(&name, needle).await
        } else {
            queue.find_by_key(&name, needle).await
        }
        .map_err(PageError::redis)?;
        let rows: Vec<Row> = found.iter().map(row).collect();
        (rows, 0, None, true)
    } else {
        let page = match kind {
            Some(k) => queue.page_of_kind(&name, state, k, offset, PAGE).await,
            None => queue.page(&name, state, offset, PAGE).await,
        }
        .map_err(PageError::redis)?;
        (
            page.tasks.iter().map(row).collect(),
            page.total,
            page.next_offset,
            false,
        )
    };
    render(
        "queue.html",
        minijinja::context! {
            chrome => Chrome::of(&api, &s),
            title => format!("Queue {name}"),
            queue => name,
            stats => stats,
            state => state.as_str(),
            states => TaskState::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            rows => rows,
            total => total,
            offset => offset,
            prev_offset => offset.checked_sub(PAGE).or((offset > 0).then_some(0)),
            next_offset => next,
            kind => kind.unwrap_or(""),
            find => find.unwrap_or(""),
            searched => searched,
            can_act => may_act(&api, &s),
            note => q.note,
        },
    )
}

pub(crate) async fn task(
    State(api): State<Api>,
    Extension(s): Extension<Session>,
    Path((name, id)): Path<(String, String)>,
) -> PageResult {
    need(&s, Permission::ReadHealth, true)?;
    let queue = queue_of(&api)?;
    known(queue, &name).await?;
    let t = queue
        .find(&name, &id)
        .await
        .map_err(PageError::redis)?
        .ok_or_else(|| {
            PageError::new(
                StatusCode::NOT_FOUND,
                format!("queue {name}: no task {id} (done, or never there)"),
            )
        })?;
    let pretty = |raw: &str| {
        serde_json::from_str::<serde_json::Value>(raw)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| raw.to_owned())
    };
    render(
        "task.html",
        minijinja::context! {
            chrome => Chrome::of(&api, &s),
            title => format!("Task {id}"),
            queue => name,
            task => row(&t),
            envelope => pretty(&t.raw),
            dead => t.dead.as_ref().map(|d| minijinja::context! {
                code => d.error.code,
                message => d.error.message,
                attempts => d.attempts,
                dead_at => time(d.dead_at),
                last_attempt_at => d.last_attempt_at.map(time),
            }),
            can_act => may_act(&api, &s),
        },
    )
}

async fn audited(
    api: &Api,
    s: &Session,
    operation: &str,
    result: &str,
    detail: serde_json::Value,
) -> Result<(), PageError> {
    let actor = s.principal.actor();
    let event = AuditEvent {
        detail,
        ..AuditEvent::new(&actor, operation, result)
    };
    audit::record(&api.services().pool, &event)
        .await
        .map_err(|e| {
            PageError::from(crate::problem::Problem::of(
                &rainlogs_core::db::DbError::query("write queue audit row", e),
            ))
        })
}

async fn set_paused(api: Api, s: Session, name: String, paused: bool) -> PageResult {
    need_action(&api, &s, Permission::ManageQueues, true)?;
    let queue = queue_of(&api)?;
    known(queue, &name).await?;
    queue
        .set_paused(&name, paused)
        .await
        .map_err(PageError::redis)?;
    let op = if paused {
        "queue.pause"
    } else {
        "queue.resume"
    };
    audited(&api, &s, op, "ok", serde_json::json!({ "queue": name })).await?;
    Ok(back(
        &format!("{}/queues", prefix(&api)),
        &format!("queue {name} {}", if paused { "paused" } else { "resumed" }),
    ))
}

pub(crate) async fn pause(
    State(api): State<Api>,
    Extension(s): Extension<Session>,
    Path(name): Path<String>,
) -> PageResult {
    set_paused(api, s, name, true).await
}

pub(crate) async fn resume(
    State(api): State<Api>,
    Extension(s): Extension<Session>,
    Path(name): Path<String>,
) -> PageResult {
    set_paused(api, s, name, false).await
}

/// One task: `run` (a delayed one now), `delete` (pending or dead), `cancel` (a
/// running one, to the dead letters), `redrive` (a dead letter).
pub(crate) async fn act(
    State(api): State<Api>,
    Extension(s): Extension<Session>,
    Extension(form): Extension<Form>,
    Path((name, id, action)): Path<(String, String, String)>,
) -> PageResult {
    need_action(&api, &s, Permission::ManageQueues, true)?;
    let queue = queue_of(&api)?;
    known(queue, &name).await?;
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(PageError::bad_request(format!("{id:?} is not a task id")));
    }
    let dead = queue
        .dead_letter(&name, &id)
        .await
        .map_err(PageError::redis)?
        .is_some();
    let outcome: Result<String, String> = match (action.as_str(), dead) {
        ("redrive", true) => match queue.redrive(&name, &id).await {
            Ok(_) => Ok("re-driven: ready again as attempt 1".into()),
            Err(rainlogs_dispatcher::queue::AdminError::Queue(e)) => {
                return Err(PageError::redis(e))
            }
            Err(e) => Err(e.to_string()),
        },
        ("delete", true) => {
            queue
                .purge_dead(&name, std::slice::from_ref(&id))
                .await
                .map_err(PageError::redis)?;
            Ok("dead letter deleted".into())
        }
        ("run" | "delete" | "cancel", false) => {
            let acted = match action.as_str() {
                "run" => queue.run_now(&name, &id).await,
                "delete" => queue.delete_pending(&name, &id).await,
                _ => queue.cancel(&name, &id, &s.principal.actor()).await,
            }
            .map_err(PageError::redis)?;
            match acted {
                Acted::Done(_) => Ok(match action.as_str() {
                    "run" => "runs now",
                    "delete" => "deleted",
                    _ => "cancelled: in the dead letters",
                }
                .into()),
                Acted::NotApplicable(st) => {
                    Err(format!("cannot {action} a task that is {}", st.as_str()))
                }
                Acted::Missing => Err("no such task (done already?)".into()),
            }
        }
        ("redrive", false) => Err("only a dead letter can be re-driven".into()),
        _ => return Err(PageError::bad_request(format!("no action {action:?}"))),
    };
    let (result, note) = match &outcome {
        Ok(n) => ("ok", format!("task {id}: {n}")),
        Err(why) => ("refused", format!("task {id}: {why}")),
    };
    audited(
        &api,
        &s,
        &format!("queue.{action}"),
        result,
        serde_json::json!({ "queue": name, "task": id, "detail": outcome.as_ref().err() }),
    )
    .await?;
    let state = form
        .get("state")
        .and_then(TaskState::parse)
        .unwrap_or(TaskState::Ready);
    Ok(back(
        &format!("{}/queues/{name}?state={}", prefix(&api), state.as_str()),
        &note,
    ))
}

/// Every dead letter of a queue: `redrive` or `delete`.
pub(crate) async fn act_all_dead(
    State(api): State<Api>,
    Extension(s): Extension<Session>,
    Path((name, action)): Path<(String, String)>,
) -> PageResult {
    need_action(&api, &s, Permission::ManageQueues, true)?;
    let queue = queue_of(&api)?;
    known(queue, &name).await?;
    let (detail, note) = match action.as_str() {
        "redrive" => {
            let (done, refused) = queue.redrive_all(&name).await.map_err(PageError::redis)?;
            let first: Vec<String> = refused.iter().take(5).map(|e| e.to_string()).collect();
            (
                serde_json::json!({ "queue": name, "redriven": done, "refused": refused.len(), "first_refusals": first }),
                format!(
                    "{done} dead letters re-driven{}",
                    if refused.is_empty() {
                        String::new()
                    } else {
                        format!(", {} refused: {}", refused.len(), first.join("; "))
                    }
                ),
            )
        }
        "delete" => {
            let n = queue
                .purge_dead(&name, &[])
                .await
                .map_err(PageError::redis)?;
            (
                serde_json::json!({ "queue": name, "deleted": n }),
                format!("{n} dead letters deleted"),
            )
        }
        _ => return Err(PageError::bad_request(format!("no action {action:?}"))),
    };
    audited(&api, &s, &format!("queue.{action}_all_dead"), "ok", detail).await?;
    Ok(back(
        &format!("{}/queues/{name}?state=dead", prefix(&api)),
        &note,
    ))
}
