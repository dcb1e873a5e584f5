//! The window ledger and the hash chain against real Postgres: planning is idempotent
//! and bounded by Logpull's limits, state changes are conditional, stuck windows are
//! found, and concurrent appends never fork a zone's chain.

use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};
use rainlogs_archive::chain::{self, genesis_hash, link_mac, ChainKey, LinkContent, LinkInput};
use rainlogs_archive::ledger::{self, WindowState};
use rainlogs_integration_tests::TestEnv;
use rainlogs_sealed::kms::{Kms, SecretKey, StaticKms, TenantKey};

/// A kms holding one fixed key for `zone`'s tenant, and that tenant's chain key.
async fn chain_kms(env: &TestEnv, zone: uuid::Uuid) -> (StaticKms, ChainKey) {
    let tenant = chain::zone_tenant(&env.app.pool, zone).await.unwrap();
    let kms = StaticKms::new().with_key(TenantKey::new(tenant, 1, SecretKey::random()));
    let key = kms.chain_key(tenant, None).await.unwrap();
    (kms, key)
}

#[tokio::test]
async fn planning_covers_backfill_to_the_logpull_horizon_once() {
    let env = TestEnv::new().await;
    let now = Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 30).unwrap();
    let zone = env.insert_zone(60, now - TimeDelta::minutes(30)).await;

    let added = ledger::plan_zone(&env.app.pool, zone, now, &env.app.plan)
        .await
        .unwrap();
    // 09:30 .. 09:59 start times; the window ending 10:00 is not a minute old at 10:00:30.
    assert_eq!(added, 29);
    let again = ledger::plan_zone(&env.app.pool, zone, now, &env.app.plan)
        .await
        .unwrap();
    assert_eq!(again, 0, "planning twice adds nothing");

    let windows = ledger::windows_between(&env.app.pool, zone, now - TimeDelta::hours(1), now)
        .await
        .unwrap();
    assert_eq!(windows.len(), 29);
    assert_eq!(
        windows[0].start_at,
        Utc.with_ymd_and_hms(2026, 11, 30, 9, 30, 0).unwrap()
    );
    assert_eq!(
        windows[28].end_at,
        Utc.with_ymd_and_hms(2026, 11, 30, 9, 59, 0).unwrap()
    );
    for pair in windows.windows(2) {
        assert_eq!(pair[0].end_at, pair[1].start_at, "no gap, no overlap");
    }
    assert!(windows.iter().all(|w| w.state == WindowState::Planned));

    let later = ledger::plan_zone(
        &env.app.pool,
        zone,
        now + TimeDelta::minutes(5),
        &env.app.plan,
    )
    .await
    .unwrap();
    assert_eq!(later, 5, "later planning continues from the last window");
    env.teardown().await;
}

#[tokio::test]
async fn planning_stays_a_safety_margin_behind_now() {
    // Issue 11 item 2: windows were planned up to exactly one minute ago, so a host a
    // few seconds ahead of Cloudflare got "too late" for the newest window.
    let env = TestEnv::new().await;
    let now = Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 30).unwrap();
    let zone = env.insert_zone(60, now - TimeDelta::minutes(30)).await;
    let default = ledger::PlanPolicy::default();
    assert_eq!(default.margin, TimeDelta::minutes(5));
    let added = ledger::plan_zone(&env.app.pool, zone, now, &default)
        .await
        .unwrap();
    // 09:30 .. 09:54 start times: the newest window ends 09:55, five minutes back.
    assert_eq!(added, 25);
    let newest = ledger::windows_between(&env.app.pool, zone, now - TimeDelta::hours(1), now)
        .await
        .unwrap()
        .last()
        .map(|w| w.end_at)
        .unwrap();
    assert_eq!(
        newest,
        Utc.with_ymd_and_hms(2026, 11, 30, 9, 55, 0).unwrap()
    );
    assert!(now - newest >= default.margin);
    // A wider margin plans nothing newer; the window ending 09:50 is already there.
    let wide = ledger::PlanPolicy {
        margin: TimeDelta::minutes(10),
    };
    assert_eq!(
        ledger::plan_zone(&env.app.pool, zone, now + TimeDelta::minutes(4), &wide)
            .await
            .unwrap(),
        0
    );
    // A margin below Logpull's minute is never used, even if a caller builds one.
    let too_small = ledger::PlanPolicy {
        margin: TimeDelta::seconds(1),
    };
    let later = now + TimeDelta::minutes(5);
    ledger::plan_zone(&env.app.pool, zone, later, &too_small)
        .await
        .unwrap();
    let newest = ledger::windows_between(&env.app.pool, zone, now - TimeDelta::hours(1), later)
        .await
        .unwrap()
        .last()
        .map(|w| w.end_at)
        .unwrap();
    assert!(later - newest >= TimeDelta::minutes(1), "{newest}");
    env.teardown().await;
}

#[tokio::test]
async fn planning_never_reaches_past_logpulls_seven_days() {
    let env = TestEnv::new().await;
    let now = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
    let zone = env.insert_zone(3600, now - TimeDelta::days(30)).await;
    ledger::plan_zone(&env.app.pool, zone, now, &env.app.plan)
        .await
        .unwrap();
    let windows = ledger::windows_between(&env.app.pool, zone, now - TimeDelta::days(60), now)
        .await
        .unwrap();
    assert!(
        windows[0].start_at > now - TimeDelta::days(7),
        "{:?}",
        windows[0]
    );
    assert_eq!(windows.len(), 7 * 24 - 2);
    env.teardown().await;
}

#[tokio::test]
async fn a_paused_zone_plans_nothing() {
    let env = TestEnv::new().await;
    let now = Utc::now();
    let zone = env.insert_zone(60, now - TimeDelta::minutes(10)).await;
    sqlx::query("UPDATE zones SET paused = true WHERE id = $1")
        .bind(zone)
        .execute(&env.app.pool)
        .await
        .unwrap();
    assert_eq!(
        ledger::plan_zone(&env.app.pool, zone, now, &env.app.plan)
            .await
            .unwrap(),
        0
    );
    env.teardown().await;
}

#[tokio::test]
async fn transitions_only_move_from_the_expected_state_and_count_attempts() {
    let env = TestEnv::new().await;
    let now = Utc::now();
    let zone = env.insert_zone(60, now - TimeDelta::minutes(3)).await;
    ledger::plan_zone(&env.app.pool, zone, now, &env.app.plan)
        .await
        .unwrap();
    let w = &ledger::windows_between(&env.app.pool, zone, now - TimeDelta::hours(1), now)
        .await
        .unwrap()[0];
    let pool = &env.app.pool;
    use WindowState::*;
    assert!(ledger::transition(pool, w.id, &[Planned], Fetching, None)
        .await
        .unwrap());
    assert!(
        !ledger::transition(pool, w.id, &[Planned], Fetching, None)
            .await
            .unwrap(),
        "a replayed message cannot move it again"
    );
    assert!(
        ledger::transition(pool, w.id, &[Fetching], Planned, Some("cloudflare 503"))
            .await
            .unwrap()
    );
    assert!(ledger::transition(pool, w.id, &[Planned], Fetching, None)
        .await
        .unwrap());
    let after = &ledger::windows_between(pool, zone, w.start_at, w.end_at)
        .await
        .unwrap()[0];
    assert_eq!(after.attempts, 2);
    assert_eq!(after.state, Fetching);
    assert_eq!(after.last_error, None);
    env.teardown().await;
}

#[tokio::test]
async fn windows_stuck_in_flight_are_found_by_age() {
    let env = TestEnv::new().await;
    let now = Utc::now();
    let zone = env.insert_zone(60, now - TimeDelta::minutes(4)).await;
    ledger::plan_zone(&env.app.pool, zone, now, &env.app.plan)
        .await
        .unwrap();
    let windows = ledger::windows_between(&env.app.pool, zone, now - TimeDelta::hours(1), now)
        .await
        .unwrap();
    assert!(windows.len() >= 2);
    // One window has sat in `fetching` for an hour; the others are fresh.
    sqlx::query("UPDATE windows SET state = 'fetching', state_since = now() - interval '1 hour' WHERE id = $1")
        .bind(windows[0].id)
        .execute(&env.app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE windows SET state = 'archived', state_since = now() - interval '1 hour' WHERE id = $1")
        .bind(windows[1].id)
        .execute(&env.app.pool)
        .await
        .unwrap();
    let stuck = ledger::stuck(&env.app.pool, Duration::from_secs(600), 100)
        .await
        .unwrap();
    assert_eq!(
        stuck.iter().map(|w| w.id).collect::<Vec<_>>(),
        vec![windows[0].id]
    );
    env.teardown().await;
}

#[tokio::test]
async fn concurrent_appends_build_one_unforked_chain_and_replays_return_the_same_link() {
    let env = TestEnv::new().await;
    let now = Utc::now();
    let zone = env.insert_zone(60, now - TimeDelta::minutes(25)).await;
    ledger::plan_zone(&env.app.pool, zone, now, &env.app.plan)
        .await
        .unwrap();
    let windows = ledger::windows_between(&env.app.pool, zone, now - TimeDelta::hours(1), now)
        .await
        .unwrap();
    assert!(windows.len() >= 20);

    let input_for = |w: &ledger::Window, i: usize| LinkInput {
        zone_id: zone,
        window_start: w.start_at,
        window_end: w.end_at,
        content: if i % 3 == 0 {
            LinkContent::Empty
        } else {
            LinkContent::Archived {
                object_sha256: [i as u8; 32],
                plaintext_sha256: [i as u8 ^ 0xff; 32],
                record_count: i as u64 * 10,
            }
        },
    };
    let (_kms, key) = chain_kms(&env, zone).await;
    // Every window appended twice, all at once: 40 racing transactions.
    let mut tasks = Vec::new();
    for (i, w) in windows.iter().take(20).enumerate() {
        for _ in 0..2 {
            let pool = env.app.pool.clone();
            let (id, input, key) = (w.id, input_for(w, i), key.clone());
            tasks.push(tokio::spawn(async move {
                let mut tx = pool.begin().await.unwrap();
                let link = chain::append(&mut tx, id, &input, &key).await.unwrap();
                tx.commit().await.unwrap();
                link
            }));
        }
    }
    let mut links = Vec::new();
    for t in tasks {
        links.push(t.await.unwrap());
    }
    // Replays got the very same link.
    for pair in links.chunks(2) {
        assert_eq!(pair[0], pair[1]);
    }

    let rows: Vec<(i64, i64, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT seq, window_id, prev_hash, link_hash FROM chain_links WHERE zone_id = $1 ORDER BY seq",
    )
    .bind(zone)
    .fetch_all(&env.app.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 20, "one link per window");
    let mut prev = genesis_hash(zone);
    for (expected_seq, (seq, window_id, prev_hash, hash)) in rows.into_iter().enumerate() {
        assert_eq!(seq, expected_seq as i64, "sequence numbers are contiguous");
        assert_eq!(
            prev_hash,
            prev.to_vec(),
            "link {seq} follows link {}",
            seq - 1
        );
        let i = windows.iter().position(|w| w.id == window_id).unwrap();
        let recomputed = link_mac(&key, &input_for(&windows[i], i), seq as u64, &prev);
        assert_eq!(hash, recomputed.to_vec(), "link {seq} verifies");
        prev = recomputed;
    }
    env.teardown().await;
}

#[tokio::test]
async fn verify_zone_accepts_a_valid_chain_and_finds_edits_and_removed_links() {
    let env = TestEnv::new().await;
    let now = Utc::now();
    let zone = env.insert_zone(60, now - TimeDelta::minutes(12)).await;
    ledger::plan_zone(&env.app.pool, zone, now, &env.app.plan)
        .await
        .unwrap();
    let windows = ledger::windows_between(&env.app.pool, zone, now - TimeDelta::hours(1), now)
        .await
        .unwrap();
    assert!(windows.len() >= 8);
    let (kms, key) = chain_kms(&env, zone).await;
    for (i, w) in windows.iter().take(8).enumerate() {
        let input = LinkInput {
            zone_id: zone,
            window_start: w.start_at,
            window_end: w.end_at,
            content: if i % 2 == 0 {
                LinkContent::Empty
            } else {
                LinkContent::Archived {
                    object_sha256: [i as u8; 32],
                    plaintext_sha256: [i as u8 ^ 0xff; 32],
                    record_count: i as u64 * 7,
                }
            },
        };
        let mut tx = env.app.pool.begin().await.unwrap();
        chain::append(&mut tx, w.id, &input, &key).await.unwrap();
        tx.commit().await.unwrap();
    }

    let report = chain::verify_zone(&env.app.pool, &kms, zone).await.unwrap();
    assert_eq!(report.links_checked, 8);
    assert!(report.is_valid(), "{report:?}");

    // An edited record count breaks exactly that link.
    sqlx::query(
        "UPDATE chain_links SET record_count = record_count + 1 WHERE zone_id = $1 AND seq = 3",
    )
    .bind(zone)
    .execute(&env.app.pool)
    .await
    .unwrap();
    let report = chain::verify_zone(&env.app.pool, &kms, zone).await.unwrap();
    assert_eq!(report.links_checked, 3);
    assert_eq!(
        report.first_break,
        Some((3, chain::ChainBreak::HashMismatch))
    );

    sqlx::query(
        "UPDATE chain_links SET record_count = record_count - 1 WHERE zone_id = $1 AND seq = 3",
    )
    .bind(zone)
    .execute(&env.app.pool)
    .await
    .unwrap();
    assert!(chain::verify_zone(&env.app.pool, &kms, zone)
        .await
        .unwrap()
        .is_valid());

    // A removed link is reported at the link after the hole.
    sqlx::query("DELETE FROM chain_links WHERE zone_id = $1 AND seq = 5")
        .bind(zone)
        .execute(&env.app.pool)
        .await
        .unwrap();
    let report = chain::verify_zone(&env.app.pool, &kms, zone).await.unwrap();
    assert_eq!(report.links_checked, 5);
    assert_eq!(
        report.first_break,
        Some((6, chain::ChainBreak::Gap { expected_seq: 5 }))
    );

    // An edited window row (the link commits to its bounds) breaks its link too.
    let other = env.insert_zone(60, now - TimeDelta::minutes(5)).await;
    ledger::plan_zone(&env.app.pool, other, now, &env.app.plan)
        .await
        .unwrap();
    let ws = ledger::windows_between(&env.app.pool, other, now - TimeDelta::hours(1), now)
        .await
        .unwrap();
    let w = &ws[0];
    let (other_kms, other_key) = chain_kms(&env, other).await;
    let mut tx = env.app.pool.begin().await.unwrap();
    chain::append(
        &mut tx,
        w.id,
        &LinkInput {
            zone_id: other,
            window_start: w.start_at,
            window_end: w.end_at,
            content: LinkContent::Empty,
        },
        &other_key,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(chain::verify_zone(&env.app.pool, &other_kms, other)
        .await
        .unwrap()
        .is_valid());
    sqlx::query("UPDATE windows SET end_at = end_at + interval '1 second' WHERE id = $1")
        .bind(w.id)
        .execute(&env.app.pool)
        .await
        .unwrap();
    let report = chain::verify_zone(&env.app.pool, &other_kms, other)
        .await
        .unwrap();
    assert_eq!(
        report.first_break,
        Some((0, chain::ChainBreak::HashMismatch))
    );
    env.teardown().await;
}

/// The scheduler plans every zone in one statement (`plan_pull_zones`): it must plan
/// exactly what planning each zone on its own (`plan_zone`) plans, and leave paused,
/// demo and push zones alone.
#[tokio::test]
async fn planning_every_pull_zone_at_once_plans_what_planning_each_would() {
    let env = TestEnv::new().await;
    let pool = &env.app.pool;
    let now = Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 30).unwrap();
    let policy = ledger::PlanPolicy::default();
    let zones = [
        env.insert_zone(60, now - TimeDelta::minutes(90)).await,
        env.insert_zone(15, now - TimeDelta::minutes(20)).await,
        env.insert_zone(3600, now - TimeDelta::hours(7)).await,
        // Backfill past Logpull's 7 days: starts at the oldest window Logpull serves.
        env.insert_zone(300, now - TimeDelta::days(9)).await,
        // Unaligned backfill start, and a zone whose windows are all still ahead.
        env.insert_zone(60, now - TimeDelta::seconds(437)).await,
        env.insert_zone(60, now).await,
    ];
    let skipped = [
        env.insert_zone(60, now - TimeDelta::minutes(30)).await,
        env.insert_zone(60, now - TimeDelta::minutes(30)).await,
        env.insert_zone(60, now - TimeDelta::minutes(30)).await,
    ];
    for (zone, change) in skipped.iter().zip([
        "paused = true",
        "demo = true, endpoint = 'simulator', simulator_url = 'http://127.0.0.1:9'",
        "mode = 'push'::zone_mode",
    ]) {
        sqlx::query(&format!("UPDATE zones SET {change} WHERE id = $1"))
            .bind(zone)
            .execute(pool)
            .await
            .unwrap();
    }
    // One zone already has windows: planning continues after its last one.
    ledger::plan_zone(pool, zones[0], now - TimeDelta::minutes(40), &policy)
        .await
        .unwrap();

    type Plan = Vec<(uuid::Uuid, chrono::DateTime<Utc>, chrono::DateTime<Utc>)>;
    let windows = || async {
        let rows: Plan = sqlx::query_as(
            "SELECT zone_id, start_at, end_at FROM windows ORDER BY zone_id, start_at, end_at",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        rows
    };
    let before = windows().await;
    let all_at_once = ledger::plan_pull_zones(pool, now, &policy).await.unwrap();
    let batch = windows().await;
    assert!(all_at_once > 0);
    assert_eq!(batch.len() - before.len(), all_at_once as usize);
    assert_eq!(
        ledger::plan_pull_zones(pool, now, &policy).await.unwrap(),
        0,
        "planning twice adds nothing"
    );

    // The same, zone by zone, from the same starting point.
    sqlx::query("DELETE FROM windows")
        .execute(pool)
        .await
        .unwrap();
    ledger::plan_zone(pool, zones[0], now - TimeDelta::minutes(40), &policy)
        .await
        .unwrap();
    for zone in zones {
        ledger::plan_zone(pool, zone, now, &policy).await.unwrap();
    }
    assert_eq!(
        batch,
        windows().await,
        "one statement plans what each zone would"
    );
    assert!(
        batch.iter().all(|(zone, _, _)| !skipped.contains(zone)),
        "paused, demo and push zones are not planned"
    );
    assert!(batch.iter().any(|(zone, _, _)| *zone == zones[3]));
    env.teardown().await;
}
