//! Redis through the project's own client and queue: a value round trip and a task
//! that goes in, comes out intact and leaves nothing behind once acknowledged.

use std::time::Duration;

use rainlogs_core::config::RedisConfig;
use rainlogs_core::task::TaskSpec;
use rainlogs_dispatcher::queue::{Settle, Settlement};
use rainlogs_integration_tests::TestEnv;
use redis::AsyncCommands;

#[tokio::test]
async fn value_round_trip_under_the_test_prefix() {
    let env = TestEnv::new().await;
    let cfg = RedisConfig::from_source(&env.src).unwrap();
    let mut conn = rainlogs_core::redis_client::connect(&cfg).await.unwrap();
    let key = format!("{}:roundtrip", cfg.key_prefix);
    let _: () = conn.set_ex(&key, "hello", 60).await.unwrap();
    let back: String = conn.get(&key).await.unwrap();
    assert_eq!(back, "hello");
    let _: () = conn.del(&key).await.unwrap();
    let gone: Option<String> = conn.get(&key).await.unwrap();
    assert_eq!(gone, None);
    env.teardown().await;
}

#[tokio::test]
async fn a_task_comes_out_as_it_went_in_and_ack_clears_it() {
    let env = TestEnv::new().await;
    let queue = &env.app.queue;
    let spec = TaskSpec::new(
        "rt",
        "upload.probe",
        serde_json::json!({"note": "round trip"}),
    )
    .idempotency_key("rt-1");
    let sent = queue.enqueue(spec).await.unwrap();
    let depth = queue.depth("rt").await.unwrap();
    assert_eq!((depth.ready, depth.active), (1, 0));

    let mut reserved = queue
        .reserve("rt", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(reserved.deliveries.len(), 1, "the task is delivered");
    let delivery = reserved.deliveries.remove(0);
    assert_eq!(delivery.envelope.as_ref().unwrap(), &sent);
    let depth = queue.depth("rt").await.unwrap();
    assert_eq!(
        (depth.ready, depth.active),
        (0, 1),
        "taken tasks stay visible as active"
    );

    let settled = queue
        .settle(&[Settle {
            delivery,
            settlement: Settlement::Ack { next: Vec::new() },
        }])
        .await
        .unwrap();
    assert_eq!(settled, vec![true]);
    let depth = queue.depth("rt").await.unwrap();
    assert_eq!((depth.ready, depth.active, depth.dead), (0, 0, 0));
    env.teardown().await;
}

#[tokio::test]
async fn unreachable_redis_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let src = rainlogs_core::config::ConfigSource::from_pairs([(
        RedisConfig::URL,
        format!("redis://127.0.0.1:{port}/0"),
    )]);
    let err = rainlogs_core::redis_client::connect(&RedisConfig::from_source(&src).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.starts_with("redis: cannot connect"), "{err}");
}

#[tokio::test]
async fn an_unreadable_dead_letter_stays_listed_with_its_reason() {
    let env = TestEnv::new().await;
    let cfg = RedisConfig::from_source(&env.src).unwrap();
    let mut conn = rainlogs_core::redis_client::connect(&cfg).await.unwrap();
    let keys = env.app.queue.keys();
    let _: () = conn
        .hset(keys.dead("dl"), "broken-1", "{not a dead letter")
        .await
        .unwrap();
    let _: () = conn
        .zadd(keys.dead_index("dl"), "broken-1", 1)
        .await
        .unwrap();

    let letters = env.app.queue.dead_letters("dl").await.unwrap();
    assert_eq!(letters.len(), 1, "never hidden");
    assert_eq!(letters[0].error.code, "dead_letter.unreadable");
    assert_eq!(letters[0].raw, "{not a dead letter");
    let one = env
        .app
        .queue
        .dead_letter("dl", "broken-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.error.code, "dead_letter.unreadable");
    env.teardown().await;
}
