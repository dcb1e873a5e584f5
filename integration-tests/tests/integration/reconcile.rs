//! The scheduler and reconciler against real Postgres and Redis: planning enqueues one
//! `fetch.window` per planned window; a second pass adds nothing while those are
//! pending; after the deployment's Redis keys are wiped, the reconciler re-enqueues
//! every window stuck past the timeout with the task its state waits for.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use rainlogs_archive::pipeline::PIPELINE_QUEUE;
use rainlogs_core::config::RedisConfig;
use rainlogs_core::task::{kinds, TaskEnvelope};
use rainlogs_dispatcher::reconcile::{self, PassReport};
use rainlogs_integration_tests::TestEnv;
use secrecy::ExposeSecret;

/// (kind, window_id) of every task stored in the pipeline queue.
async fn queued(env: &TestEnv) -> BTreeMap<(String, i64), usize> {
    let cfg = RedisConfig::from_source(&env.src).expect("redis config");
    let client = redis::Client::open(cfg.url.expose_secret().to_owned()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connects");
    let raw: Vec<Vec<u8>> = redis::cmd("HVALS")
        .arg(env.app.queue.keys().tasks(PIPELINE_QUEUE))
        .query_async(&mut conn)
        .await
        .expect("HVALS tasks");
    let mut out = BTreeMap::new();
    for r in raw {
        let env = TaskEnvelope::parse(&r).expect("stored envelope parses");
        let id = env.payload["window_id"].as_i64().expect("window_id");
        *out.entry((env.kind, id)).or_insert(0) += 1;
    }
    out
}

/// Deletes every Redis key of this test's prefix (FLUSHALL for one deployment).
async fn flush_prefix(env: &TestEnv) {
    let cfg = RedisConfig::from_source(&env.src).expect("redis config");
    let client = redis::Client::open(cfg.url.expose_secret().to_owned()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connects");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", cfg.key_prefix))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    assert!(!keys.is_empty(), "the queue left keys to delete");
    let _: () = redis::cmd("DEL")
        .arg(keys)
        .query_async(&mut conn)
        .await
        .expect("DEL");
}

#[tokio::test]
async fn plan_dedup_and_reconcile_after_redis_loss() {
    let env = TestEnv::new().await;
    let now = Utc::now();
    let zone = env.insert_zone(60, now - TimeDelta::minutes(10)).await;
    let paused = env.insert_zone(60, now - TimeDelta::minutes(10)).await;
    sqlx::query("UPDATE zones SET paused = true WHERE id = $1")
        .bind(paused)
        .execute(&env.app.pool)
        .await
        .unwrap();

    let first = reconcile::plan_and_enqueue(&env.app, now).await.unwrap();
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM windows WHERE zone_id = $1 ORDER BY id")
        .bind(zone)
        .fetch_all(&env.app.pool)
        .await
        .unwrap();
    assert!(ids.len() >= 8, "ten minutes back plans about nine windows");
    assert_eq!(
        first,
        PassReport {
            planned: ids.len() as u64,
            enqueued: ids.len() as u64,
            duplicates: 0
        }
    );
    let paused_windows: i64 = sqlx::query_scalar("SELECT count(*) FROM windows WHERE zone_id = $1")
        .bind(paused)
        .fetch_one(&env.app.pool)
        .await
        .unwrap();
    assert_eq!(paused_windows, 0, "a paused zone is not planned");
    let expected: BTreeMap<(String, i64), usize> = ids
        .iter()
        .map(|&id| ((kinds::FETCH_WINDOW.to_owned(), id), 1))
        .collect();
    assert_eq!(queued(&env).await, expected);

    // Second pass: nothing new is planned, so nothing is sent again (left-over planned
    // windows are the reconciler's), and the queue holds the same tasks.
    let second = reconcile::plan_and_enqueue(&env.app, now).await.unwrap();
    assert_eq!(second, PassReport::default());
    assert_eq!(queued(&env).await, expected);

    // Windows are fresh: a reconcile with a long timeout touches nothing.
    let idle = reconcile::reconcile(&env.app, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(idle, PassReport::default());

    // Move windows along by hand, age them, and lose Redis entirely.
    sqlx::query("UPDATE windows SET state = 'fetching' WHERE id = $1")
        .bind(ids[1])
        .execute(&env.app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE windows SET state = 'staged' WHERE id = $1")
        .bind(ids[2])
        .execute(&env.app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE windows SET state = 'sealed' WHERE id = $1")
        .bind(ids[3])
        .execute(&env.app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE windows SET state = 'archived' WHERE id = $1")
        .bind(ids[4])
        .execute(&env.app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE windows SET state_since = now() - interval '10 minutes'")
        .execute(&env.app.pool)
        .await
        .unwrap();
    flush_prefix(&env).await;
    assert!(queued(&env).await.is_empty());

    let rescued = reconcile::reconcile(&env.app, Duration::from_secs(60))
        .await
        .unwrap();
    let in_flight = ids.len() as u64 - 1;
    assert_eq!(
        rescued,
        PassReport {
            planned: 0,
            enqueued: in_flight,
            duplicates: 0
        }
    );
    let mut expected: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for (i, &id) in ids.iter().enumerate() {
        let kind = match i {
            2 => kinds::ENCRYPT_WINDOW,
            3 => kinds::UPLOAD_WINDOW,
            4 => continue,
            _ => kinds::FETCH_WINDOW,
        };
        expected.insert((kind.to_owned(), id), 1);
    }
    assert_eq!(queued(&env).await, expected);

    // Reconciling again while those are pending adds nothing.
    let again = reconcile::reconcile(&env.app, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(again.enqueued, 0);
    assert_eq!(again.duplicates, in_flight);
    assert_eq!(queued(&env).await, expected);

    env.teardown().await;
}

/// The background loop `rainlogs run` starts: it plans and enqueues on its own, and
/// stops when the shutdown signal fires.
#[tokio::test]
async fn run_loop_plans_until_shutdown() {
    let env = TestEnv::new().await;
    let zone = env
        .insert_zone(60, Utc::now() - TimeDelta::minutes(5))
        .await;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let cfg = reconcile::SchedulerConfig {
        interval: Duration::from_millis(50),
        reconcile_after: Duration::from_secs(300),
        logpush_poll: Duration::ZERO,
    };
    let handle = tokio::spawn(reconcile::run_loop(env.app.clone(), cfg, rx));
    let windows: i64 = rainlogs_integration_tests::wait_for(
        "the loop plans and enqueues the zone",
        Duration::from_secs(30),
        || async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM windows WHERE zone_id = $1")
                .bind(zone)
                .fetch_one(&env.app.pool)
                .await
                .ok()?;
            (n > 0 && queued(&env).await.len() as i64 == n).then_some(n)
        },
    )
    .await;
    assert!(windows >= 3);
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .expect("the loop stops on shutdown")
        .expect("the loop does not panic");
    env.teardown().await;
}

/// The scheduler sends the windows at the real-time edge as `live` and the rest of a
/// backfill as `backfill`, each in its tenant's fairness group (docs/QUEUE.md).
#[tokio::test]
async fn planned_windows_carry_their_priority_and_their_tenant() {
    use rainlogs_core::task::Priority;
    let env = TestEnv::new().await;
    let now = Utc::now();
    let zone = env.insert_zone(60, now - TimeDelta::minutes(30)).await;
    let tenant: uuid::Uuid = sqlx::query_scalar("SELECT tenant_id FROM zones WHERE id = $1")
        .bind(zone)
        .fetch_one(&env.app.pool)
        .await
        .unwrap();
    reconcile::plan_and_enqueue(&env.app, now).await.unwrap();
    let cfg = RedisConfig::from_source(&env.src).expect("redis config");
    let client = redis::Client::open(cfg.url.expose_secret().to_owned()).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let raw: Vec<Vec<u8>> = redis::cmd("HVALS")
        .arg(env.app.queue.keys().tasks(PIPELINE_QUEUE))
        .query_async(&mut conn)
        .await
        .unwrap();
    let horizon = now - env.app.plan.margin;
    let edge = TimeDelta::from_std(env.app.live_edge.0).unwrap();
    let mut live = 0;
    for r in &raw {
        let task = TaskEnvelope::parse(r).unwrap();
        assert_eq!(task.group.as_deref(), Some(tenant.to_string().as_str()));
        let id = task.payload["window_id"].as_i64().unwrap();
        let end: chrono::DateTime<Utc> =
            sqlx::query_scalar("SELECT end_at FROM windows WHERE id = $1")
                .bind(id)
                .fetch_one(&env.app.pool)
                .await
                .unwrap();
        let want = if end > horizon - edge.max(TimeDelta::minutes(1)) {
            live += 1;
            Priority::Live
        } else {
            Priority::Backfill
        };
        assert_eq!(task.priority, want, "window ending {end}");
    }
    assert!(live >= 1, "the newest window is live");
    assert!(raw.len() > live, "the older ones are backfill");
    let stats = env.app.queue.stats(PIPELINE_QUEUE).await.unwrap();
    let ready = |lane: rainlogs_dispatcher::queue::Lane| stats.lanes[lane as usize - 1].ready;
    assert_eq!(
        ready(rainlogs_dispatcher::queue::Lane::LiveStart),
        live as u64
    );
    env.teardown().await;
}

#[test]
fn scheduler_config_defaults_and_overrides() {
    use rainlogs_core::config::ConfigSource;
    use rainlogs_dispatcher::reconcile::SchedulerConfig;
    let d = SchedulerConfig::from_source(&ConfigSource::from_pairs(Vec::<(String, String)>::new()))
        .unwrap();
    assert_eq!(d.interval, Duration::from_secs(15));
    assert_eq!(d.reconcile_after, Duration::from_secs(300));
    let o = SchedulerConfig::from_source(&ConfigSource::from_pairs([
        (SchedulerConfig::INTERVAL_MS, "0"),
        (SchedulerConfig::RECONCILE_AFTER_MS, "1000"),
    ]))
    .unwrap();
    assert!(o.interval.is_zero());
    assert_eq!(o.reconcile_after, Duration::from_secs(1));
    assert!(SchedulerConfig::from_source(&ConfigSource::from_pairs([(
        SchedulerConfig::INTERVAL_MS,
        "soon"
    )]))
    .is_err());
}
