//! The walking skeleton end to end: a task enqueued in Redis is taken by the
//! dispatcher, run by the upload function, and leaves an object in Garage and a row in
//! Postgres — all checked from outside. Bad messages are dead-lettered with their
//! reason while good ones keep flowing.

use std::time::Duration;

use rainlogs_core::task::{kinds, TaskEnvelope, TaskSpec};
use rainlogs_core::ErrorClass;
use rainlogs_dispatcher::invoker::Invoker;
use rainlogs_integration_tests::{wait_for, TestEnv};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use uuid::Uuid;

const Q: &str = "default";

fn probe(note: &str) -> TaskSpec {
    TaskSpec::new(Q, kinds::UPLOAD_PROBE, serde_json::json!({ "note": note }))
}

async fn probe_row(env: &TestEnv, id: Uuid) -> Option<(String, Vec<u8>, i64)> {
    sqlx::query_as("SELECT object_key, sha256, size_bytes FROM probe_runs WHERE task_id = $1")
        .bind(id)
        .fetch_optional(&env.app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_probe_travels_from_redis_through_the_dispatcher_to_garage_and_postgres() {
    let env = TestEnv::new().await;
    let (stop, stopped) = watch::channel(false);
    let worker = env.app.worker(vec![Q.into()]);
    let running = tokio::spawn(async move { worker.run(stopped).await });

    let sent = env.app.queue.enqueue(probe("e2e")).await.unwrap();
    let (key, sha, size) = wait_for("the probe row", Duration::from_secs(20), || {
        probe_row(&env, sent.id)
    })
    .await;

    assert_eq!(key, format!("probes/{}.json", sent.id));
    let body = env
        .app
        .store
        .get(&key)
        .await
        .expect("object exists in Garage");
    assert_eq!(body.len() as i64, size);
    assert_eq!(
        Sha256::digest(&body).to_vec(),
        sha,
        "recorded hash matches the bytes"
    );
    let marker: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(marker["probe"], sent.id.to_string());
    assert_eq!(marker["note"], "e2e");

    wait_for("the queue to drain", Duration::from_secs(10), || async {
        let d = env.app.queue.depth(Q).await.unwrap();
        (d.ready + d.active + d.delayed + d.dead == 0).then_some(())
    })
    .await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    env.teardown().await;
}

#[tokio::test]
async fn the_same_probe_delivered_twice_leaves_one_object_and_one_row() {
    let env = TestEnv::new().await;
    let envelope = TaskEnvelope::new(probe("twice"), chrono::Utc::now());
    let functions = env.app.in_process_functions();
    let event = serde_json::to_value(&envelope).unwrap();
    let first = functions.invoke("upload", event.clone()).await.unwrap();
    let second = functions.invoke("upload", event).await.unwrap();
    assert_eq!(first, second, "a replay reports the recorded result");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM probe_runs")
        .fetch_one(&env.app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    let objects = env.app.store.list_all("probes/").await.unwrap();
    assert_eq!(objects.len(), 1);
    env.teardown().await;
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_while_good_tasks_keep_flowing() {
    let env = TestEnv::new().await;
    env.app
        .queue
        .push_raw(Q, b"{\"v\":1,\"this is\":\"not an envelope\"")
        .await
        .unwrap();
    let (stop, stopped) = watch::channel(false);
    let worker = env.app.worker(vec![Q.into()]);
    let running = tokio::spawn(async move { worker.run(stopped).await });

    let good = env.app.queue.enqueue(probe("after poison")).await.unwrap();
    wait_for("the good probe", Duration::from_secs(20), || {
        probe_row(&env, good.id)
    })
    .await;

    let dead = env.app.queue.dead_letters(Q).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].error.code, "envelope.invalid");
    assert_eq!(dead[0].error.class, ErrorClass::Permanent);
    assert!(
        dead[0].raw.contains("not an envelope"),
        "the message is kept verbatim"
    );
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    env.teardown().await;
}

/// Runs a dispatcher until the queue holds one dead letter; returns it.
async fn run_until_dead(env: &TestEnv) -> rainlogs_dispatcher::queue::DeadLetter {
    let (stop, stopped) = watch::channel(false);
    let worker = env.app.worker(vec![Q.into()]);
    let running = tokio::spawn(async move { worker.run(stopped).await });
    let letter = wait_for("a dead letter", Duration::from_secs(20), || async {
        env.app
            .queue
            .dead_letters(Q)
            .await
            .unwrap()
            .into_iter()
            .next()
    })
    .await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    letter
}

#[tokio::test]
async fn a_kind_no_function_serves_is_dead_lettered_at_once_not_retried() {
    let env = TestEnv::new().await;
    let sent = env
        .app
        .queue
        .enqueue(TaskSpec::new(Q, "fetch.window", serde_json::json!({})))
        .await
        .unwrap();
    let dead = run_until_dead(&env).await;
    assert_eq!(dead.error.code, "kind.unsupported");
    assert_eq!(dead.error.class, ErrorClass::Permanent);
    assert_eq!(dead.attempts, 1, "a permanent error is not retried");
    assert!(
        dead.error.message.contains(&sent.id.to_string()),
        "{}",
        dead.error.message
    );
    let depth = env.app.queue.depth(Q).await.unwrap();
    assert_eq!(
        (depth.ready, depth.active, depth.delayed, depth.dead),
        (0, 0, 0, 1)
    );
    env.teardown().await;
}

#[tokio::test]
async fn a_probe_with_an_invalid_payload_is_a_permanent_event_error() {
    let env = TestEnv::new().await;
    env.app
        .queue
        .enqueue(TaskSpec::new(
            Q,
            kinds::UPLOAD_PROBE,
            serde_json::json!({"nope": 1}),
        ))
        .await
        .unwrap();
    let dead = run_until_dead(&env).await;
    assert_eq!(dead.error.code, "event.invalid");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM probe_runs")
        .fetch_one(&env.app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "nothing written for a rejected task");
    env.teardown().await;
}
