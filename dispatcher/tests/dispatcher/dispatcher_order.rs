//! Order and fairness against a real Redis (docs/QUEUE.md, "Order and fairness"): live
//! tasks before everything, a started window's encrypt and upload before new fetches,
//! backfill starts held to the in-flight bound, fairness groups served in turns, and
//! the lane counters back at zero once the queue is empty.

use rainlogs_integration_tests::dispatch as common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use common::*;
use rainlogs_core::function::Function;
use rainlogs_core::task::{kinds, Priority};
use rainlogs_core::{HandlerOutput, TaskEnvelope, TaskError, TaskSpec};
use rainlogs_dispatcher::invoker::InProcess;
use rainlogs_dispatcher::queue::{Delivery, InFlightMax, Lane, Queue, Settle, Settlement};
use rainlogs_dispatcher::worker::Worker;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const LEASE: Duration = Duration::from_secs(30);

fn window(queue: &str, kind: &str, id: i64, priority: Priority, group: &str) -> TaskSpec {
    spec(queue, kind, json!({ "window_id": id }))
        .idempotency_key(format!("{kind}:{id}"))
        .priority(priority)
        .group(group)
}

fn window_of(d: &Delivery) -> (String, i64) {
    let env = d.envelope.as_ref().expect("envelope parses");
    (env.kind.clone(), env.payload["window_id"].as_i64().unwrap())
}

/// Reserves one task at a time until the queue hands out nothing, acking each (with
/// `next` deciding its follow-ups), and returns what came out, in order.
async fn drain_one_by_one(
    queue: &Queue,
    q: &str,
    next: impl Fn(&TaskEnvelope) -> Vec<TaskEnvelope>,
) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    loop {
        let mut got = queue.reserve(q, 1, LEASE).await.unwrap().deliveries;
        let Some(d) = got.pop() else { break };
        out.push(window_of(&d));
        let follow = next(d.envelope.as_ref().unwrap());
        let held = queue
            .settle(&[Settle {
                delivery: d,
                settlement: Settlement::Ack { next: follow },
            }])
            .await
            .unwrap();
        assert_eq!(held, vec![true]);
    }
    out
}

/// The follow-up a window stage hands on, in the parent's lane and group (what the
/// worker does for a handler's follow-ups).
fn next_stage(env: &TaskEnvelope) -> Vec<TaskEnvelope> {
    let kind = match env.kind.as_str() {
        kinds::FETCH_WINDOW => kinds::ENCRYPT_WINDOW,
        kinds::ENCRYPT_WINDOW => kinds::UPLOAD_WINDOW,
        _ => return Vec::new(),
    };
    let id = env.payload["window_id"].as_i64().unwrap();
    let s = window(
        &env.queue,
        kind,
        id,
        env.priority,
        env.group.as_deref().unwrap_or("g"),
    );
    vec![TaskEnvelope::new(s, Utc::now())]
}

async fn assert_counters_back_at_zero(queue: &Queue, q: &str) {
    let stats = queue.stats(q).await.unwrap();
    assert_eq!(stats.in_flight, 0, "{stats:?}");
    for lane in &stats.lanes {
        assert_eq!(
            (lane.ready, lane.pending, lane.running),
            (0, 0, 0),
            "{stats:?}"
        );
    }
    assert_eq!(
        stats.depth.ready + stats.depth.active + stats.depth.delayed,
        0
    );
}

#[tokio::test]
async fn live_windows_go_before_normal_tasks_and_those_before_backfill() {
    let r = TestRedis::new().await;
    let q = "order";
    // Enqueued in the worst order: the backfill first, the live windows last.
    let mut specs: Vec<TaskSpec> = (1..=20)
        .map(|i| window(q, kinds::FETCH_WINDOW, i, Priority::Backfill, "tenant-a"))
        .collect();
    specs.push(spec(q, "prune.run", json!({ "window_id": 100 })));
    specs
        .extend((201..=203).map(|i| window(q, kinds::FETCH_WINDOW, i, Priority::Live, "tenant-b")));
    specs.push(window(
        q,
        kinds::ENCRYPT_WINDOW,
        300,
        Priority::Live,
        "tenant-c",
    ));
    r.queue.enqueue_many(specs).await.unwrap();

    let order = drain_one_by_one(&r.queue, q, |_| Vec::new()).await;
    let ids: Vec<i64> = order.iter().map(|(_, id)| *id).collect();
    assert_eq!(
        &ids[..5],
        &[300, 201, 202, 203, 100],
        "a live window's encrypt, then live fetches, then the normal task: {order:?}"
    );
    assert_eq!(
        ids[5..].to_vec(),
        (1..=20).collect::<Vec<_>>(),
        "then the backfill, in order"
    );
    assert_counters_back_at_zero(&r.queue, q).await;
    r.cleanup().await;
}

#[tokio::test]
async fn a_started_windows_encrypt_and_upload_go_before_new_fetches_within_the_bound() {
    let r = TestRedis::new().await;
    let queue = r.queue.clone().with_in_flight_max(InFlightMax(3));
    let q = "bound";
    let specs: Vec<TaskSpec> = (1..=6)
        .map(|i| window(q, kinds::FETCH_WINDOW, i, Priority::Backfill, "g"))
        .collect();
    queue.enqueue_many(specs).await.unwrap();

    // Asked for everything, the queue hands out only as many fetches as the bound.
    let first = queue.reserve(q, 100, LEASE).await.unwrap();
    assert_eq!(first.deliveries.len(), 3, "three windows may be in flight");
    assert!(
        !first.more,
        "the rest waits for the bound, not for a free slot"
    );
    assert_eq!(queue.stats(q).await.unwrap().in_flight, 3);
    assert!(queue
        .reserve(q, 100, LEASE)
        .await
        .unwrap()
        .deliveries
        .is_empty());

    // Window 1's fetch finishes and hands on its encrypt: still three in flight, and
    // the encrypt is what comes next — not window 4's fetch.
    let mut held = first.deliveries;
    let one = held.remove(0);
    let follow = next_stage(one.envelope.as_ref().unwrap());
    queue
        .settle(&[Settle {
            delivery: one,
            settlement: Settlement::Ack { next: follow },
        }])
        .await
        .unwrap();
    let got = queue.reserve(q, 100, LEASE).await.unwrap().deliveries;
    assert_eq!(
        got.iter().map(window_of).collect::<Vec<_>>(),
        vec![(kinds::ENCRYPT_WINDOW.to_owned(), 1)]
    );
    assert_eq!(queue.stats(q).await.unwrap().in_flight, 3);
    held.extend(got);

    // Then every window runs to the end one task at a time; the bound holds throughout
    // and each window's stages come before the next window's fetch.
    let mut order = Vec::new();
    let mut max_in_flight = 0;
    loop {
        if held.is_empty() {
            held.extend(queue.reserve(q, 1, LEASE).await.unwrap().deliveries);
        }
        if held.is_empty() {
            break;
        }
        let d = held.remove(0);
        order.push(window_of(&d));
        let follow = next_stage(d.envelope.as_ref().unwrap());
        queue
            .settle(&[Settle {
                delivery: d,
                settlement: Settlement::Ack { next: follow },
            }])
            .await
            .unwrap();
        max_in_flight = max_in_flight.max(queue.stats(q).await.unwrap().in_flight);
    }
    assert!(
        max_in_flight <= 3,
        "in flight at most the bound, saw {max_in_flight}"
    );
    let fetch_pos = |id: i64| {
        order
            .iter()
            .position(|(k, w)| k == kinds::FETCH_WINDOW && *w == id)
            .unwrap_or_else(|| panic!("window {id} fetched: {order:?}"))
    };
    let upload_pos = |id: i64| {
        order
            .iter()
            .position(|(k, w)| k == kinds::UPLOAD_WINDOW && *w == id)
            .unwrap_or_else(|| panic!("window {id} uploaded: {order:?}"))
    };
    // Windows 4..6 start only once an earlier window is archived.
    assert!(fetch_pos(4) > upload_pos(1), "{order:?}");
    assert!(fetch_pos(5) > upload_pos(2).min(upload_pos(3)), "{order:?}");
    assert_eq!(order.len(), 6 * 3 - 1, "every stage of every window once");
    assert_counters_back_at_zero(&queue, q).await;
    r.cleanup().await;
}

#[tokio::test]
async fn live_fetches_wait_for_room_under_the_bound_and_take_it_first() {
    let r = TestRedis::new().await;
    let queue = r.queue.clone().with_in_flight_max(InFlightMax(2));
    let q = "room";
    queue
        .enqueue_many(
            (1..=2)
                .map(|i| window(q, kinds::FETCH_WINDOW, i, Priority::Backfill, "g"))
                .collect(),
        )
        .await
        .unwrap();
    let mut running = queue.reserve(q, 10, LEASE).await.unwrap().deliveries;
    assert_eq!(running.len(), 2);
    // A live window arrives, then more backfill: the bound is full, nothing starts.
    queue
        .enqueue(window(q, kinds::FETCH_WINDOW, 100, Priority::Live, "g"))
        .await
        .unwrap();
    queue
        .enqueue(window(q, kinds::FETCH_WINDOW, 3, Priority::Backfill, "g"))
        .await
        .unwrap();
    assert!(queue
        .reserve(q, 10, LEASE)
        .await
        .unwrap()
        .deliveries
        .is_empty());
    // Window 1 turns out empty (its unit ends with its fetch): the room goes to the
    // live window.
    queue
        .settle(&[Settle {
            delivery: running.remove(0),
            settlement: Settlement::Ack { next: vec![] },
        }])
        .await
        .unwrap();
    let got = queue.reserve(q, 10, LEASE).await.unwrap().deliveries;
    assert_eq!(
        got.iter().map(window_of).collect::<Vec<_>>(),
        vec![(kinds::FETCH_WINDOW.to_owned(), 100)]
    );
    assert_eq!(queue.stats(q).await.unwrap().in_flight, 2);
    running.extend(got);
    for d in running {
        queue
            .settle(&[Settle {
                delivery: d,
                settlement: Settlement::Ack { next: vec![] },
            }])
            .await
            .unwrap();
    }
    assert_eq!(drain_one_by_one(&queue, q, |_| Vec::new()).await.len(), 1);
    assert_counters_back_at_zero(&queue, q).await;
    r.cleanup().await;
}

#[tokio::test]
async fn groups_take_turns_so_one_tenants_backfill_does_not_hold_another_back() {
    let r = TestRedis::new().await;
    let q = "fair";
    // Tenant A's week of backfill is queued first; tenant B's hour arrives later.
    let a: Vec<TaskSpec> = (1..=40)
        .map(|i| window(q, kinds::FETCH_WINDOW, i, Priority::Backfill, "tenant-a"))
        .collect();
    r.queue.enqueue_many(a).await.unwrap();
    let b: Vec<TaskSpec> = (101..=105)
        .map(|i| window(q, kinds::FETCH_WINDOW, i, Priority::Backfill, "tenant-b"))
        .collect();
    r.queue.enqueue_many(b).await.unwrap();
    // And a live window of tenant A's goes before both.
    r.queue
        .enqueue(window(
            q,
            kinds::FETCH_WINDOW,
            900,
            Priority::Live,
            "tenant-a",
        ))
        .await
        .unwrap();

    let order = drain_one_by_one(&r.queue, q, |_| Vec::new()).await;
    let ids: Vec<i64> = order.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids[0], 900, "live first: {ids:?}");
    // Within backfill the two tenants alternate while both have work.
    let first_ten: BTreeSet<i64> = ids[1..11].iter().copied().collect();
    let from_b = first_ten.iter().filter(|id| **id > 100).count();
    assert_eq!(
        from_b, 5,
        "B's five windows are among the first ten: {ids:?}"
    );
    for pair in ids[1..11].chunks(2) {
        assert_ne!(pair[0] > 100, pair[1] > 100, "turns alternate: {ids:?}");
    }
    // Each tenant's own windows stay in order.
    let a_order: Vec<i64> = ids.iter().copied().filter(|id| *id <= 40).collect();
    assert_eq!(a_order, (1..=40).collect::<Vec<_>>());
    assert_counters_back_at_zero(&r.queue, q).await;
    r.cleanup().await;
}

#[tokio::test]
async fn retried_and_handed_back_tasks_keep_their_lane() {
    let r = TestRedis::new().await;
    let q = "keep";
    r.queue
        .enqueue(window(q, kinds::FETCH_WINDOW, 1, Priority::Backfill, "g"))
        .await
        .unwrap();
    r.queue
        .enqueue(window(q, kinds::FETCH_WINDOW, 2, Priority::Live, "g"))
        .await
        .unwrap();
    let live = r
        .queue
        .reserve(q, 1, LEASE)
        .await
        .unwrap()
        .deliveries
        .remove(0);
    assert_eq!(window_of(&live).1, 2);
    // The live task fails and is retried at once: it goes before the backfill again.
    let mut retry = live.envelope.clone().unwrap();
    retry.attempt += 1;
    r.queue
        .settle(&[Settle {
            delivery: live,
            settlement: Settlement::Retry {
                envelope: retry,
                due: Utc::now() - chrono::Duration::seconds(1),
            },
        }])
        .await
        .unwrap();
    let again = r
        .queue
        .reserve(q, 1, LEASE)
        .await
        .unwrap()
        .deliveries
        .remove(0);
    assert_eq!(window_of(&again).1, 2, "a retried live task stays live");
    // Handed back at shutdown: still first.
    r.queue
        .settle(&[Settle {
            delivery: again,
            settlement: Settlement::Requeue,
        }])
        .await
        .unwrap();
    let stats = r.queue.stats(q).await.unwrap();
    let lane = |l: Lane| stats.lanes[l as usize - 1];
    assert_eq!(lane(Lane::LiveStart).ready, 1);
    assert_eq!(lane(Lane::BackfillStart).ready, 1);
    let order = drain_one_by_one(&r.queue, q, |_| Vec::new()).await;
    assert_eq!(
        order.iter().map(|(_, id)| *id).collect::<Vec<_>>(),
        vec![2, 1]
    );
    assert_counters_back_at_zero(&r.queue, q).await;
    r.cleanup().await;
}

/// Stand-ins for the three window stages: each records its start and hands on the
/// next stage like the real ones (without priority or group: the worker passes the
/// parent's on).
#[derive(Clone)]
struct Stage {
    name: &'static str,
    log: Arc<Mutex<StageLog>>,
}

#[derive(Default)]
struct StageLog {
    starts: Vec<(String, i64)>,
    /// Windows fetched and not yet uploaded, now and at most.
    open: BTreeSet<i64>,
    max_open: usize,
    archived: usize,
}

#[async_trait]
impl Function for Stage {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn handle(&self, task: TaskEnvelope) -> Result<HandlerOutput, TaskError> {
        let id = task.payload["window_id"].as_i64().unwrap_or(-1);
        let next = {
            let mut log = self.log.lock().unwrap();
            log.starts.push((task.kind.clone(), id));
            match task.kind.as_str() {
                kinds::FETCH_WINDOW => {
                    log.open.insert(id);
                    log.max_open = log.max_open.max(log.open.len());
                    Some(kinds::ENCRYPT_WINDOW)
                }
                kinds::ENCRYPT_WINDOW => Some(kinds::UPLOAD_WINDOW),
                _ => {
                    log.open.remove(&id);
                    log.archived += 1;
                    None
                }
            }
        };
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(HandlerOutput {
            result: json!({}),
            next: next
                .map(|kind| {
                    vec![TaskSpec::new(&task.queue, kind, json!({ "window_id": id }))
                        .idempotency_key(format!("{kind}:{id}"))]
                })
                .unwrap_or_default(),
        })
    }
}

/// A dispatcher running the stand-in stages, logging into `log` (several dispatchers
/// may share one: a window may be fetched by one and uploaded by another).
fn stage_worker(queue: &Queue, q: &str, concurrency: usize, log: &Arc<Mutex<StageLog>>) -> Worker {
    let stage = |name| Stage {
        name,
        log: Arc::clone(log),
    };
    let invoker = InProcess::new()
        .with(stage("fetch"))
        .with(stage("encrypt"))
        .with(stage("upload"));
    Worker::with_config(
        queue.clone(),
        Arc::new(invoker),
        fast_config(q, concurrency),
    )
}

#[tokio::test]
async fn a_dispatcher_finishes_each_backfill_window_before_fetching_the_next() {
    let r = TestRedis::new().await;
    let q = "pipe";
    let specs: Vec<TaskSpec> = (1..=5)
        .map(|i| window(q, kinds::FETCH_WINDOW, i, Priority::Backfill, "g"))
        .collect();
    r.queue.enqueue_many(specs).await.unwrap();
    // One task at a time: the order the queue hands tasks out is the order they run.
    let log = Arc::default();
    let (tx, h) = spawn_worker(stage_worker(&r.queue, q, 1, &log));
    wait_for("five windows archived", WAIT, || async {
        (log.lock().unwrap().archived == 5).then_some(())
    })
    .await;
    stop(tx, h).await;
    let starts = log.lock().unwrap().starts.clone();
    let expected: Vec<(String, i64)> = (1..=5)
        .flat_map(|i| {
            [
                kinds::FETCH_WINDOW,
                kinds::ENCRYPT_WINDOW,
                kinds::UPLOAD_WINDOW,
            ]
            .map(|k| (k.to_owned(), i))
        })
        .collect();
    assert_eq!(
        starts, expected,
        "fetch, encrypt, upload of one window, then the next"
    );
    assert_counters_back_at_zero(&r.queue, q).await;
    r.cleanup().await;
}

#[tokio::test]
async fn concurrent_dispatchers_keep_the_in_flight_bound_and_archive_everything() {
    let r = TestRedis::new().await;
    let q = "many";
    let queue = r.queue.clone().with_in_flight_max(InFlightMax(4));
    let specs: Vec<TaskSpec> = (1..=60)
        .map(|i| {
            let group = if i % 3 == 0 { "tenant-b" } else { "tenant-a" };
            window(q, kinds::FETCH_WINDOW, i, Priority::Backfill, group)
        })
        .collect();
    queue.enqueue_many(specs).await.unwrap();
    let log: Arc<Mutex<StageLog>> = Arc::default();
    let (tx1, h1) = spawn_worker(stage_worker(&queue, q, 8, &log));
    let (tx2, h2) = spawn_worker(stage_worker(&queue, q, 8, &log));
    wait_for("sixty windows archived", WAIT, || async {
        (log.lock().unwrap().archived == 60).then_some(())
    })
    .await;
    stop(tx1, h1).await;
    stop(tx2, h2).await;
    let (max_open, starts) = {
        let log = log.lock().unwrap();
        (log.max_open, log.starts.clone())
    };
    // Windows fetched and not yet uploaded, across both dispatchers: at most the bound
    // (the queue's count also holds handed-on tasks not started yet, so it is higher
    // or equal; the stages' own count is what a user's staged objects are).
    assert!(
        max_open <= 4,
        "at most 4 windows between fetch and upload, saw {max_open}"
    );
    let mut runs: HashMap<(String, i64), usize> = HashMap::new();
    for s in starts {
        *runs.entry(s).or_default() += 1;
    }
    assert_eq!(runs.len(), 180, "every stage of every window");
    assert!(runs.values().all(|n| *n == 1), "each exactly once");
    assert_counters_back_at_zero(&queue, q).await;
    r.cleanup().await;
}
