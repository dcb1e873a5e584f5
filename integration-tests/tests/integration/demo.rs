//! `rainlogs demo`'s core against real Postgres, Redis and Garage: a short backfill of
//! the three pulled demo zones ends with every window archived or empty and every chain
//! valid; the pushed zone's Logpush job delivers its history to the demo's receiver,
//! every batch acknowledged once and archived with one chain link.

use std::time::Duration;

use rainlogs_cli::demo::{run_demo, DemoOptions};
use rainlogs_integration_tests::TestEnv;
use rainlogs_kms::{KmsService, MasterKeyring};

const MASTER: &str = "1:3434343434343434343434343434343434343434343434343434343434343434";

#[tokio::test]
async fn the_demo_archives_every_window_and_every_chain_verifies() {
    let mut env = TestEnv::new().await;
    let keyring = MasterKeyring::parse(MASTER, None).expect("keyring");
    env.app.kms = Some(KmsService::new(env.app.pool.clone(), keyring, "demo-test"));

    let report = run_demo(&env.app, &DemoOptions::new(5, Duration::from_secs(120)))
        .await
        .expect("demo runs");

    assert!(!report.timed_out, "{report:?}");
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(report.zones.len(), 3);
    for z in &report.zones {
        let windows = z.archived + z.empty;
        // 5 minutes of backfill: 4 or 5 windows are old enough for Logpull.
        assert!((4..=5).contains(&windows), "{z:?}");
        assert_eq!(z.failed + z.in_flight, 0, "{z:?}");
        assert!(z.chain.is_valid(), "{z:?}");
        assert_eq!(
            z.chain.links_checked, windows,
            "one verified link per window"
        );
    }
    let (busy, quiet, silent) = (&report.zones[0], &report.zones[1], &report.zones[2]);
    assert_eq!(busy.empty, 0, "{busy:?}");
    assert!(busy.raw_bytes > quiet.raw_bytes && quiet.raw_bytes > 0);
    assert!(busy.stored_bytes > 0 && busy.stored_bytes < busy.raw_bytes);
    assert_eq!(silent.archived, 0, "{silent:?}");
    assert_eq!((silent.raw_bytes, silent.stored_bytes), (0, 0));

    // The pushed zone: five minutes of history, one batch a minute, all archived.
    let push = report.push.as_ref().expect("a push zone");
    assert!(push.succeeded(), "{push:?}");
    assert!(push.validated);
    assert_eq!(push.batches_delivered, 5, "{push:?}");
    assert_eq!(push.records_delivered, 5 * 150);
    assert_eq!(push.zone.archived, 5);
    assert_eq!(push.zone.chain.links_checked, 5);
    let (mode, enabled): (String, bool) = sqlx::query_as(
        "SELECT z.mode::text, NOT j.enabled FROM zones z JOIN logpush_jobs j ON j.zone_id = z.id
         WHERE z.id = $1",
    )
    .bind(push.zone.zone_id)
    .fetch_one(&env.app.pool)
    .await
    .unwrap();
    assert_eq!(
        (mode.as_str(), enabled),
        ("push", true),
        "a push zone, its job disabled once the demo ended"
    );
    env.teardown().await;
}

#[tokio::test]
async fn the_demo_without_a_keyring_names_the_setting() {
    let env = TestEnv::new().await;
    assert!(env.app.kms.is_none());
    let err = run_demo(&env.app, &DemoOptions::new(5, Duration::from_secs(5)))
        .await
        .expect_err("no keyring");
    assert!(
        err.to_string().contains("RAINLOGS_MASTER_KEYS_FILE"),
        "{err}"
    );
    env.teardown().await;
}
