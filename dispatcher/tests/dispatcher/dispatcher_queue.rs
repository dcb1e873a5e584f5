//! Queue semantics against a real Redis: retries, dead letters, poison messages, dedup,
//! delays, schedules, pause, concurrency, heartbeats and several dispatchers at once.

use rainlogs_integration_tests::dispatch as common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use rainlogs_core::TaskEnvelope;
use rainlogs_dispatcher::queue::{DeadLetterPolicy, Enqueued, Settlement};
use rainlogs_dispatcher::schedule::Schedule;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn retries_back_off_in_order_until_the_attempt_limit_then_dead_letter() {
    let r = TestRedis::new().await;
    let rec = Recorder::new("w");
    let (tx, h) = spawn_worker(rec.worker(&r.queue, fast_config("retry", 4)));
    let mut s = spec("retry", "t.retry", json!({}));
    s.max_attempts = Some(4);
    let env = r.queue.enqueue(s).await.unwrap();

    let letter = wait_for("dead letter", WAIT, || async {
        r.queue
            .dead_letter("retry", &env.id.to_string())
            .await
            .unwrap()
    })
    .await;
    let starts = rec.starts();
    let attempts: Vec<u32> = starts.iter().map(|s| s.attempt).collect();
    assert_eq!(
        attempts,
        vec![1, 2, 3, 4],
        "one start per attempt, in order"
    );
    for pair in starts.windows(2) {
        let nb = pair[1].not_before.expect("a retry carries its due time");
        assert!(nb >= pair[0].started, "retry due after the failed attempt");
        assert!(pair[1].started >= nb, "retry not started before it was due");
        // Full jitter: the delay never exceeds the exponential ceiling (20 ms · 2^(n-1), cap 80 ms).
        let ceiling_ms = (20i64 << (pair[0].attempt - 1)).min(80);
        assert!((nb - pair[0].started).num_milliseconds() <= ceiling_ms + 50);
    }
    assert_eq!(letter.attempts, 4);
    assert_eq!(letter.error.code, "t.busy");
    assert!(
        letter.error.is_retryable(),
        "keeps the last error as it was"
    );
    assert!(letter.last_attempt_at.is_some() && letter.enqueued_at.is_some());
    let stats = r.queue.stats("retry").await.unwrap();
    assert_eq!(
        (stats.retried, stats.dead_lettered, stats.failed),
        (3, 1, 4)
    );
    assert_eq!(
        stats.depth.ready + stats.depth.active + stats.depth.delayed,
        0
    );
    stop(tx, h).await;
    r.cleanup().await;
}

#[tokio::test]
async fn retry_after_hint_is_honoured() {
    let r = TestRedis::new().await;
    let rec = Recorder::new("w");
    let (tx, h) = spawn_worker(rec.worker(&r.queue, fast_config("hint", 4)));
    r.queue
        .enqueue(spec(
            "hint",
            "t.retry",
            json!({"retry_after_ms": 600, "succeed_on": 2}),
        ))
        .await
        .unwrap();
    wait_for("second attempt succeeds", WAIT, || async {
        (rec.done().len() == 1).then_some(())
    })
    .await;
    let starts = rec.starts();
    assert_eq!(starts.len(), 2);
    let gap = starts[1].started - starts[0].started;
    assert!(
        gap.num_milliseconds() >= 600,
        "hint of 600 ms honoured, got {gap}"
    );
    stop(tx, h).await;
    r.cleanup().await;
}

#[tokio::test]
async fn a_huge_retry_after_hint_is_capped_by_configuration() {
    // Issue 11 item 13: a Retry-After of ten days parked the task — and its window's
    // dedup key — past Cloudflare's 7 days.
    let r = TestRedis::new().await;
    let rec = Recorder::new("w");
    let cfg = rainlogs_dispatcher::config::DispatcherConfig {
        retry_after_max: Duration::from_millis(300),
        ..fast_config("hintcap", 4)
    };
    let (tx, h) = spawn_worker(rec.worker(&r.queue, cfg));
    let ten_days_ms = 10 * 86_400 * 1000u64;
    let env = r
        .queue
        .enqueue(spec(
            "hintcap",
            "t.retry",
            json!({"retry_after_ms": ten_days_ms, "succeed_on": 2}),
        ))
        .await
        .unwrap();
    wait_for(
        "the second attempt, after the capped wait",
        WAIT,
        || async { rec.done().contains(&env.id).then_some(()) },
    )
    .await;
    let starts = rec.starts();
    let due = starts[1].not_before.expect("a retry carries its due time");
    assert!(due - starts[0].started < chrono::Duration::days(1), "{due}");
    stop(tx, h).await;
    r.cleanup().await;
}

#[tokio::test]
async fn permanent_error_goes_to_the_dead_letters_at_once() {
    let r = TestRedis::new().await;
    let rec = Recorder::new("w");
    let (tx, h) = spawn_worker(rec.worker(&r.queue, fast_config("perm", 4)));
    let env = r
        .queue
        .enqueue(spec("perm", "t.fail", json!({})))
        .await
        .unwrap();
    let letter = wait_for("dead letter", WAIT, || async {
        r.queue
            .dead_letter("perm", &env.id.to_string())
            .await
            .unwrap()
    })
    .await;
    assert_eq!(rec.starts().len(), 1, "no retry of a permanent error");
    assert_eq!(
        (letter.attempts, letter.error.code.as_str()),
        (1, "t.refused")
    );
    stop(tx, h).await;
    r.cleanup().await;
}

#[tokio::test]
async fn a_panicking_handler_is_a_retryable_failure_that_releases_lease_and_key() {
    // Issue 11 item 8: before, the panic ended the worker's task silently; the
    // heartbeat kept the lease and the idempotency key held until a restart.
    let r = TestRedis::new().await;
    let rec = Recorder::new("w");
    let (tx, h) = spawn_worker(rec.worker(&r.queue, fast_config("panic", 4)));
    let mut s = spec("panic", "t.panic", json!({"message": "handler bug"}))
        .idempotency_key("zone-1:window-1");
    s.max_attempts = Some(3);
    let always = r.queue.enqueue(s).await.unwrap();
    let mut s = spec(
        "panic",
        "t.panic",
        json!({"message": "flaky", "succeed_on": 2}),
    );
    s.max_attempts = Some(3);
    let once = r.queue.enqueue(s).await.unwrap();

    let letter = wait_for("the always-panicking task dead-lettered", WAIT, || async {
        r.queue
            .dead_letter("panic", &always.id.to_string())
            .await
            .unwrap()
    })
    .await;
    assert_eq!(letter.attempts, 3, "retried up to the attempt limit");
    assert_eq!(letter.error.code, "function.panicked");
    assert!(letter.error.is_retryable());
    assert!(
        letter.error.message.contains("handler bug (attempt 3)"),
        "carries the panic message: {}",
        letter.error.message
    );
    wait_for(
        "the flaky task succeeds on its second attempt",
        WAIT,
        || async { rec.done().contains(&once.id).then_some(()) },
    )
    .await;
    wait_for("nothing left active", WAIT, || async {
        let st = r.queue.stats("panic").await.unwrap();
        (st.depth.active + st.depth.ready + st.depth.delayed == 0 && st.processed == 1)
            .then_some(())
    })
    .await;
    // The idempotency key was released with the dead letter.
    let again = r
        .queue
        .enqueue_checked(spec("panic", "t.ok", json!({})).idempotency_key("zone-1:window-1"))
        .await
        .unwrap();
    assert!(
        matches!(again, Enqueued::New(ref e) if e.id != always.id),
        "key is free after the panic was settled"
    );
    stop(tx, h).await;
    r.cleanup().await;
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_while_other_tasks_keep_flowing() {
    let r = TestRedis::new().await;
    let rec = Recorder::new("w");
    let (tx, h) = spawn_worker(rec.worker(&r.queue, fast_config("poison", 8)));
    let garbage = r
        .queue
        .push_raw("poison", b"{not json at all")
        .await
        .unwrap();
    let future = r
        .queue
        .push_raw("poison", br#"{"v":99,"id":"x"}"#)
        .await
        .unwrap();
    let unknown = r
        .queue
        .enqueue(spec("poison", "nosuch.thing", json!({})))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(
            r.queue
                .enqueue(spec("poison", "t.ok", json!({"i": i})))
                .await
                .unwrap()
                .id,
        );
    }
    wait_for("50 done and 3 dead", WAIT, || async {
        let s = r.queue.stats("poison").await.unwrap();
        (s.processed == 50 && s.depth.dead == 3).then_some(())
    })
    .await;
    let reason = |id: String| {
        let q = r.queue.clone();
        async move { q.dead_letter("poison", &id).await.unwrap().unwrap() }
    };
    let g = reason(garbage).await;
    assert_eq!(g.error.code, "envelope.invalid");
    assert_eq!(g.raw, "{not json at all", "poison kept verbatim");
    let f = reason(future).await;
    assert!(f.error.message.contains("version 99"), "{}", f.error);
    let u = reason(unknown.id.to_string()).await;
    assert_eq!(u.error.code, "function.unknown");
    let mut done = rec.done();
    done.sort();
    ids.sort();
    assert_eq!(done, ids);
    stop(tx, h).await;
    r.cleanup().await;
}

#[tokio::test]
async fn idempotency_key_dedups_while_pending_or_active_and_frees_after() {
    let r = TestRedis::new().await;
    r.queue.set_paused("dedup", true).await.unwrap();
    let first = r
        .queue
        .enqueue_checked(spec("dedup", "t.gate", json!({})).idempotency_key("zone-1:window-9"))
        .await
        .unwrap();
    let Enqueued::New(first) = first else {
        panic!("first enqueue is new")
    };
    let again = r
        .queue
        .enqueue_checked(spec("dedup", "t.gate", json!({})).idempotency_key("zone-1:window-9"))
        .await
        .unwrap();
    assert_eq!(
        again,
        Enqueued::Duplicate { existing: first.id },
        "pending duplicate"
    );
    let other_key = r
        .queue
        .enqueue_checked(spec("dedup", "t.ok", json!({})).idempotency_key("zone-1:window-10"))
        .await
        .unwrap();
    assert!(matches!(other_key, Enqueued::New(_)));
    // Same key on another queue is another task: keys are scoped per queue.
    let elsewhere = r
        .queue
        .enqueue_checked(spec("dedup-other", "t.ok", json!({})).idempotency_key("zone-1:window-9"))
        .await
        .unwrap();
    assert!(matches!(elsewhere, Enqueued::New(_)));

    let rec = Recorder::new("w");
    let (tx, h) = spawn_worker(rec.worker(&r.queue, fast_config("dedup", 4)));
    r.queue.set_paused("dedup", false).await.unwrap();
    wait_for("gated task active", WAIT, || async {
        rec.starts().iter().any(|s| s.id == first.id).then_some(())
    })
    .await;
    let while_active = r
        .queue
        .enqueue(spec("dedup", "t.gate", json!({})).idempotency_key("zone-1:window-9"))
        .await
        .unwrap();
    assert_eq!(
        while_active.id, first.id,
        "active duplicate returns the running task"
    );
    rec.gate.add_permits(1);
    wait_for("gated task done", WAIT, || async {
        rec.done().contains(&first.id).then_some(())
    })
    .await;
    wait_for("ack settled", WAIT, || async {
        (r.queue.stats("dedup").await.unwrap().processed == 2).then_some(())
    })
    .await;
    let after = r
        .queue
        .enqueue_checked(spec("dedup", "t.ok", json!({})).idempotency_key("zone-1:window-9"))
        .await
        .unwrap();
    assert!(
        matches!(after, Enqueued::New(ref e) if e.id != first.id),
        "key is free once done"
    );
    stop(tx, h).await;
    r.cleanup().await;
}

#[tokio::test]
async fn delayed_task_does_not_start_before_its_time() {
    let r = TestRedis::new().await;
    let rec = Recorder::new("w");
    let (tx, h) = spawn_worker(rec.worker(&r.queue, fast_config("later", 4)));
    let mut s = spec("later", "t.ok", json!({}));
    let due = Utc::now() + chrono::Duration::milliseconds(700);
    s.not_before = Some(due);
    let env = r.queue.enqueue(s).await.unwrap();
    r.queue
        .enqueue(spec("later", "t.ok", json!({})))
        .await
        .unwrap();
    wait_for("both done", WAIT, || async {
        (rec.done().len() == 2).then_some(())
    })
    .await;
    let starts = rec.starts();
    let delayed = starts.iter().find(|s| s.id == env.id).unwrap();
    assert!(
        delayed.started >= due,
        "started {} before due {due}",
        delayed.started
    );
    assert_eq!(starts[1].id, env.id, "the undelayed task ran first");
    stop(tx, h).await;
    r.cleanup().await;
}

#[tokio::test]
async fn cron_schedule_fires_once_per_period_across_two_dispatchers() {
    let r = TestRedis::new().await;
    let rec = Recorder::new("a");
    let schedule = Schedule::new("tick", "* * * * * *", spec("cron", "t.ok", json!({}))).unwrap();
    let mut cfg = fast_config("cron", 4);
    cfg.schedules = vec![schedule];
    let (tx1, h1) = spawn_worker(rec.worker(&r.queue, cfg.clone()));
    let (tx2, h2) = spawn_worker(rec.shared_with("b").worker(&r.queue, cfg));
    wait_for("four periods", WAIT, || async {
        (rec.done().len() >= 4).then_some(())
    })
    .await;
    stop(tx1, h1).await;
    stop(tx2, h2).await;
    let starts = rec.starts();
    let mut periods: Vec<String> = starts
        .iter()
        .filter_map(|s| s.idempotency_key.clone())
        .collect();
    let n = periods.len();
    periods.sort();
    periods.dedup();
    assert_eq!(periods.len(), n, "no period fired twice: {periods:?}");
    assert_eq!(n, starts.len(), "every run came from a schedule period");
    r.cleanup().await;
}

#[tokio::test]
async fn paused_queue_hands_out_nothing_until_resumed() {
    let r = TestRedis::new().await;
    r.queue.set_paused("pz", true).await.unwrap();
    for _ in 0..5 {
        r.queue
            .enqueue(spec("pz", "t.ok", json!({})))
            .await
            .unwrap();
    }
    let reserved = r
        .queue
        .reserve("pz", 10, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(reserved.paused && reserved.deliveries.is_empty());
    let stats = r.queue.stats("pz").await.unwrap();
    assert!(stats.paused);
    assert_eq!(stats.depth.ready, 5);

    let rec = Recorder::new("w");
    let (tx, h) = spawn_worker(rec.worker(&r.queue, fast_config("pz", 4)));
    r.queue.set_paused("pz", false).await.unwrap();
    wait_for("all five done", WAIT, || async {
        (rec.done().len() == 5).then_some(())
    })
    .await;
    stop(tx, h).await;
    r.cleanup().await;
}

#[tokio::test]
async fn concurrency_limit_caps_running_tasks() {
    let r = TestRedis::new().await;
    let rec = Recorder::new("w");
    let (tx, h) = spawn_worker(rec.worker(&r.queue, fast_config("cap", 3)));
    for _ in 0..24 {
        r.queue
            .enqueue(spec("cap", "t.sleep", json!({"ms": 20})))
            .await
            .unwrap();
    }
    wait_for("all done", WAIT, || async {
        (rec.done().len() == 24).then_some(())
    })
    .await;
    let max = rec.record.lock().unwrap().max_running;
    assert!(max <= 3, "at most 3 at once, saw {max}");
    assert!(max >= 2, "ran concurrently, saw {max}");
    stop(tx, h).await;
    r.cleanup().await;
}

#[tokio::test]
async fn heartbeats_keep_a_long_task_leased() {
    let r = TestRedis::new().await;
    let rec = Recorder::new("w");
    let mut cfg = fast_config("long", 2);
    cfg.lease = Duration::from_millis(400);
    cfg.heartbeat = Duration::from_millis(100);
    let worker = rec.worker(&r.queue, cfg);
    let metrics = worker.metrics().clone();
    let (tx, h) = spawn_worker(worker);
    // Runs for three leases' time: only heartbeats keep it from being reaped.
    let env = r
        .queue
        .enqueue(spec("long", "t.sleep", json!({"ms": 1300})))
        .await
        .unwrap();
    wait_for("done", WAIT, || async {
        (r.queue.stats("long").await.unwrap().processed == 1).then_some(())
    })
    .await;
    assert_eq!(rec.starts().len(), 1, "never redelivered");
    assert_eq!(rec.starts()[0].id, env.id);
    assert_eq!(metrics.lease_lost.with_label_values(&["long"]).get(), 0);
    stop(tx, h).await;
    r.cleanup().await;
}

#[tokio::test]
async fn two_dispatchers_never_run_one_task_at_the_same_time() {
    let r = TestRedis::new().await;
    let rec = Recorder::new("a");
    let (tx1, h1) = spawn_worker(rec.worker(&r.queue, fast_config("pair", 8)));
    let (tx2, h2) = spawn_worker(
        rec.shared_with("b")
            .worker(&r.queue, fast_config("pair", 8)),
    );
    let specs = (0..300)
        .map(|i| spec("pair", "t.sleep", json!({"ms": i % 7})))
        .collect();
    r.queue.enqueue_many(specs).await.unwrap();
    wait_for("all done", WAIT, || async {
        (rec.done().len() >= 300).then_some(())
    })
    .await;
    stop(tx1, h1).await;
    stop(tx2, h2).await;
    {
        let record = rec.record.lock().unwrap();
        assert!(
            record.overlaps.is_empty(),
            "ran concurrently: {:?}",
            record.overlaps
        );
        assert_eq!(record.attempts_by_id.len(), 300);
        assert!(
            record.attempts_by_id.values().all(|n| *n == 1),
            "each task ran once"
        );
        let workers: std::collections::HashSet<&str> =
            record.starts.iter().map(|s| s.worker.as_str()).collect();
        assert_eq!(workers.len(), 2, "both dispatchers took work");
    }
    let s = r.queue.stats("pair").await.unwrap();
    assert_eq!((s.processed, s.depth.active, s.depth.ready), (300, 0, 0));
    r.cleanup().await;
}

#[tokio::test]
async fn follow_ups_are_enqueued_with_the_ack_and_inherit_the_trace() {
    let r = TestRedis::new().await;
    let rec = Recorder::new("w");
    let (tx, h) = spawn_worker(rec.worker(&r.queue, fast_config("chain", 4)));
    let next = json!([{"queue": "chain", "kind": "t.ok", "payload": {"step": 2}}]);
    let parent = r
        .queue
        .enqueue(spec("chain", "t.next", json!({"next": next})))
        .await
        .unwrap();
    wait_for("child done", WAIT, || async {
        (rec.done().len() == 2).then_some(())
    })
    .await;
    let starts = rec.starts();
    assert_eq!(starts[1].payload, json!({"step": 2}));
    stop(tx, h).await;
    let _ = parent;
    r.cleanup().await;
}

#[tokio::test]
async fn a_follow_up_the_function_does_not_own_is_refused_and_never_enqueued() {
    let r = TestRedis::new().await;
    let rec = Recorder::new("w");
    let (tx, h) = spawn_worker(rec.worker(&r.queue, fast_config("own", 4)));
    // A handler (compromised or buggy) tries to reach the kms through the queue.
    let next = json!([{"queue": "own", "kind": "kms.shred_tenant",
                       "payload": {"tenant": "00000000-0000-0000-0000-000000000001"}}]);
    r.queue
        .enqueue(spec("own", "t.next", json!({"next": next})))
        .await
        .unwrap();
    let dead = wait_for("the parent dead-lettered", WAIT, || async {
        let d = r.queue.dead_letters("own").await.unwrap();
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].error.code, "output.forbidden_follow_up",
        "{:?}",
        dead[0]
    );
    assert!(dead[0].error.message.contains("kms.shred_tenant"));
    stop(tx, h).await;
    assert_eq!(rec.starts().len(), 1, "the kms task never ran");
    let s = r.queue.stats("own").await.unwrap();
    assert_eq!((s.depth.ready, s.depth.delayed, s.depth.active), (0, 0, 0));
    r.cleanup().await;
}

#[tokio::test]
async fn graceful_shutdown_lets_running_tasks_finish_and_leaves_the_rest_queued() {
    let r = TestRedis::new().await;
    let rec = Recorder::new("w");
    let (tx, h) = spawn_worker(rec.worker(&r.queue, fast_config("grace", 2)));
    for _ in 0..6 {
        r.queue
            .enqueue(spec("grace", "t.sleep", json!({"ms": 400})))
            .await
            .unwrap();
    }
    wait_for("two running", WAIT, || async {
        (rec.starts().len() == 2).then_some(())
    })
    .await;
    stop(tx, h).await;
    assert_eq!(rec.done().len(), 2, "in-flight tasks finished");
    let s = r.queue.stats("grace").await.unwrap();
    assert_eq!((s.processed, s.depth.ready, s.depth.active), (2, 4, 0));
    r.cleanup().await;
}

#[tokio::test]
async fn tasks_still_running_at_the_deadline_are_handed_back_untouched() {
    let r = TestRedis::new().await;
    let rec = Recorder::new("w");
    let mut cfg = fast_config("handback", 2);
    cfg.shutdown_grace = Duration::from_millis(200);
    let (tx, h) = spawn_worker(rec.worker(&r.queue, cfg));
    let a = r
        .queue
        .enqueue(spec("handback", "t.gate", json!({})))
        .await
        .unwrap();
    wait_for("running", WAIT, || async {
        (rec.starts().len() == 1).then_some(())
    })
    .await;
    stop(tx, h).await;
    let s = r.queue.stats("handback").await.unwrap();
    assert_eq!(
        (s.depth.ready, s.depth.active, s.processed, s.failed),
        (1, 0, 0, 0)
    );
    let got = r
        .queue
        .reserve("handback", 1, Duration::from_secs(5))
        .await
        .unwrap();
    let env = got.deliveries[0].envelope.as_ref().unwrap();
    assert_eq!(
        (env.id, env.attempt),
        (a.id, 1),
        "same task, attempt not spent"
    );
    r.cleanup().await;
}

#[tokio::test]
async fn dead_letters_can_be_listed_redriven_and_purged() {
    let r = TestRedis::new().await;
    let rec = Recorder::new("w");
    let (tx, h) = spawn_worker(rec.worker(&r.queue, fast_config("dlq", 4)));
    let a = r
        .queue
        .enqueue(spec("dlq", "t.fail", json!({"n": 1})))
        .await
        .unwrap();
    let b = r
        .queue
        .enqueue(spec("dlq", "t.fail", json!({"n": 2})))
        .await
        .unwrap();
    wait_for("two dead", WAIT, || async {
        (r.queue.dead_letters("dlq").await.unwrap().len() == 2).then_some(())
    })
    .await;
    let redriven = r.queue.redrive("dlq", &a.id.to_string()).await.unwrap();
    assert_eq!((redriven.id, redriven.attempt), (a.id, 1));
    wait_for("a dead again after a fresh attempt", WAIT, || async {
        (rec.starts().iter().filter(|s| s.id == a.id).count() == 2
            && r.queue
                .dead_letter("dlq", &a.id.to_string())
                .await
                .unwrap()
                .is_some())
        .then_some(())
    })
    .await;
    assert_eq!(
        r.queue
            .purge_dead("dlq", &[b.id.to_string()])
            .await
            .unwrap(),
        1
    );
    let left: Vec<String> = r
        .queue
        .dead_letters("dlq")
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(left, vec![a.id.to_string()]);
    assert_eq!(r.queue.purge_dead("dlq", &[]).await.unwrap(), 1);
    assert!(
        r.queue.redrive("dlq", &a.id.to_string()).await.is_err(),
        "nothing left to redrive"
    );
    stop(tx, h).await;
    r.cleanup().await;
}

#[tokio::test]
async fn dead_letters_are_capped_and_expire_by_policy() {
    // Issue 11 item 4: dead letters grew without bound (a window that could never
    // succeed added one every reconcile). Policy: at most `max`, none older than `ttl`.
    let r = TestRedis::new().await;
    let queue = r.queue.clone().with_dead_letters(DeadLetterPolicy {
        max: 3,
        ttl: Duration::from_secs(86_400),
    });
    // A letter from two days ago (as an older dispatcher would have left it).
    let mut conn = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let old_ms = (Utc::now() - chrono::Duration::days(2)).timestamp_millis();
    let _: () = redis::pipe()
        .hset(queue.keys().dead("dlcap"), "ancient", "{}")
        .zadd(queue.keys().dead_index("dlcap"), "ancient", old_ms)
        .query_async(&mut conn)
        .await
        .unwrap();
    let rec = Recorder::new("w");
    let (tx, h) = spawn_worker(rec.worker(&queue, fast_config("dlcap", 1)));
    let mut ids = Vec::new();
    for n in 0..5 {
        let env = queue
            .enqueue(spec("dlcap", "t.fail", json!({ "n": n })))
            .await
            .unwrap();
        ids.push(env.id.to_string());
        // One at a time, so "oldest" is well defined.
        wait_for("dead-lettered", WAIT, || async {
            queue
                .dead_letter("dlcap", &env.id.to_string())
                .await
                .unwrap()
                .map(|_| ())
        })
        .await;
    }
    stop(tx, h).await;
    let left: Vec<String> = queue
        .dead_letters("dlcap")
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(
        left,
        vec![ids[4].clone(), ids[3].clone(), ids[2].clone()],
        "the newest three"
    );
    let stats = queue.stats("dlcap").await.unwrap();
    assert_eq!(stats.depth.dead, 3);
    assert_eq!(stats.dead_lettered, 5);
    assert_eq!(
        stats.dead_dropped, 3,
        "the expired one and two over the cap"
    );
    r.cleanup().await;
}

#[test]
fn dead_letter_policy_reads_its_variables() {
    use rainlogs_core::config::ConfigSource;
    let d = DeadLetterPolicy::from_source(&ConfigSource::default()).unwrap();
    assert_eq!((d.max, d.ttl), (10_000, Duration::from_secs(30 * 86_400)));
    let p = DeadLetterPolicy::from_source(&ConfigSource::from_pairs([
        (DeadLetterPolicy::MAX, "0"),
        (DeadLetterPolicy::TTL_DAYS, "7"),
    ]))
    .unwrap();
    assert_eq!((p.max, p.ttl), (0, Duration::from_secs(7 * 86_400)));
    let err = DeadLetterPolicy::from_source(&ConfigSource::from_pairs([(
        DeadLetterPolicy::TTL_DAYS,
        "99999",
    )]))
    .unwrap_err();
    assert_eq!(err.subject(), DeadLetterPolicy::TTL_DAYS);
}

#[tokio::test]
async fn a_stale_holder_cannot_settle_a_task_that_was_redelivered() {
    let r = TestRedis::new().await;
    let env = r
        .queue
        .enqueue(spec("fence", "t.ok", json!({})))
        .await
        .unwrap();
    let lease = Duration::from_millis(150);
    let first = r
        .queue
        .reserve("fence", 1, lease)
        .await
        .unwrap()
        .deliveries
        .remove(0);
    let reaped = wait_for("lease expiry", WAIT, || async {
        let got = r
            .queue
            .reap("fence", 10, Duration::from_secs(30))
            .await
            .unwrap();
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(reaped[0].id, env.id.to_string());
    let stale = rainlogs_dispatcher::queue::Settle {
        delivery: first,
        settlement: Settlement::Ack { next: vec![] },
    };
    assert_eq!(
        r.queue.settle(&[stale]).await.unwrap(),
        vec![false],
        "stale ack refused"
    );
    let mut retry: TaskEnvelope = reaped[0].envelope.clone().unwrap();
    retry.attempt += 1;
    let fresh = rainlogs_dispatcher::queue::Settle {
        delivery: reaped[0].clone(),
        settlement: Settlement::Retry {
            envelope: retry,
            // Already due: straight back to ready.
            due: Utc::now() - chrono::Duration::seconds(1),
        },
    };
    assert_eq!(r.queue.settle(&[fresh]).await.unwrap(), vec![true]);
    let again = r
        .queue
        .reserve("fence", 1, lease)
        .await
        .unwrap()
        .deliveries
        .remove(0);
    assert_eq!(again.envelope.unwrap().attempt, 2);
    r.cleanup().await;
}
