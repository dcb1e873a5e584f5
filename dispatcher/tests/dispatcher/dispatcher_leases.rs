//! Leases on a busy machine: the heartbeat keeps a lease while CPU work holds the
//! dispatcher's runtime, a lease lost anyway is counted and its task stopped, and a
//! saturated dispatcher takes fewer tasks (docs/QUEUE.md, "Leases on a busy machine").

use rainlogs_integration_tests::dispatch as common;

use std::time::Duration;

use common::*;
use redis::AsyncCommands;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_keeps_its_lease_while_cpu_work_holds_the_runtime() {
    let r = TestRedis::new().await;
    let q = "busy";
    let rec = Recorder::new("busy");
    let mut cfg = fast_config(q, 1);
    cfg.lease = Duration::from_millis(600);
    cfg.heartbeat = Duration::from_millis(150);
    // Three leases long, and nothing on the runtime runs meanwhile: its only thread is
    // the one the task holds.
    let env = r
        .queue
        .enqueue(spec(q, "t.spin", json!({ "ms": 1800 })))
        .await
        .unwrap();
    let worker = rec.worker(&r.queue, cfg.clone());
    let metrics = worker.metrics().clone();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let busy = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(worker.run(rx))
    });
    wait_for("the busy dispatcher starts the task", WAIT, || async {
        (!rec.starts().is_empty()).then_some(())
    })
    .await;
    // A second dispatcher reaps every few milliseconds: it would take the task over
    // the moment its lease expired.
    let other = Recorder::new("other");
    let mut reaper_cfg = fast_config(q, 1);
    reaper_cfg.lease = cfg.lease;
    reaper_cfg.reap_interval = Duration::from_millis(20);
    let (tx2, h2) = spawn_worker(other.worker(&r.queue, reaper_cfg));
    wait_for("the task done", WAIT, || async {
        (r.queue.stats(q).await.unwrap().processed == 1).then_some(())
    })
    .await;
    stop(tx2, h2).await;
    tx.send(true).unwrap();
    busy.join()
        .expect("the busy dispatcher does not panic")
        .expect("it ends cleanly");
    let starts = rec.starts();
    assert_eq!(starts.len(), 1, "run once");
    assert_eq!(starts[0].id, env.id);
    assert!(other.starts().is_empty(), "never taken over");
    assert_eq!(metrics.lease_lost.with_label_values(&[q]).get(), 0);
    let stats = r.queue.stats(q).await.unwrap();
    assert_eq!(
        (stats.failed, stats.retried),
        (0, 0),
        "no lease.expired attempt"
    );
    r.cleanup().await;
}

#[tokio::test]
async fn a_lease_lost_while_running_is_counted_once_and_its_task_stopped() {
    let r = TestRedis::new().await;
    let q = "lost";
    let rec = Recorder::new("w");
    let mut cfg = fast_config(q, 2);
    // No reaper in this dispatcher's way: the test takes the lease away itself.
    cfg.reap_interval = Duration::from_secs(3600);
    let worker = rec.worker(&r.queue, cfg);
    let metrics = worker.metrics().clone();
    let (tx, h) = spawn_worker(worker);
    r.queue.enqueue(spec(q, "t.gate", json!({}))).await.unwrap();
    wait_for("the task runs", WAIT, || async {
        (!rec.starts().is_empty()).then_some(())
    })
    .await;
    // The lease vanishes (as when another dispatcher reaped it after a stall).
    let mut conn = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let members: Vec<String> = conn.zrange(r.queue.keys().active(q), 0, -1).await.unwrap();
    assert_eq!(members.len(), 1);
    let _: i64 = conn
        .zrem(r.queue.keys().active(q), &members[0])
        .await
        .unwrap();
    wait_for("the loss is counted", WAIT, || async {
        (metrics.lease_lost.with_label_values(&[q]).get() == 1).then_some(())
    })
    .await;
    wait_for("the task is stopped", WAIT, || async {
        (metrics.in_flight.with_label_values(&[q]).get() == 0).then_some(())
    })
    .await;
    // Opening the gate now finishes nothing: the aborted attempt is gone.
    rec.gate.add_permits(1);
    stop(tx, h).await;
    assert!(rec.done().is_empty(), "the aborted attempt never completed");
    assert_eq!(
        metrics.lease_lost.with_label_values(&[q]).get(),
        1,
        "counted once"
    );
    r.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_dispatcher_takes_fewer_tasks() {
    let r = TestRedis::new().await;
    let q = "saturated";
    let rec = Recorder::new("w");
    let mut cfg = fast_config(q, 16);
    cfg.lag_target = Duration::from_millis(20);
    // Every task holds its runtime thread far longer than the lag target.
    let specs = (0..64)
        .map(|_| spec(q, "t.spin", json!({ "ms": 100 })))
        .collect();
    r.queue.enqueue_many(specs).await.unwrap();
    let worker = rec.worker(&r.queue, cfg);
    let metrics = worker.metrics().clone();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let busy = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(worker.run(rx))
    });
    wait_for(
        "the dispatcher starts at its configured limit",
        WAIT,
        || async { (metrics.concurrency_limit.with_label_values(&[q]).get() == 16).then_some(()) },
    )
    .await;
    wait_for("the limit comes down", WAIT, || async {
        let limit = metrics.concurrency_limit.with_label_values(&[q]).get();
        (limit < 16).then_some(())
    })
    .await;
    assert!(metrics.concurrency_limit.with_label_values(&[q]).get() >= 1);
    assert!(metrics.runtime_lag.get() > 0.0, "the lag is reported");
    wait_for("every task done", WAIT, || async {
        (r.queue.stats(q).await.unwrap().processed == 64).then_some(())
    })
    .await;
    tx.send(true).unwrap();
    busy.join().expect("no panic").expect("clean end");
    assert_eq!(rec.done().len(), 64, "fewer at once, none lost");
    r.cleanup().await;
}
