//! The prune function against real Postgres and Garage: the retention boundary to the
//! second (injectable clock), legal holds on tenant and zone, the zone override, the
//! orphan and stale-staging sweeps, dry run, idempotent re-runs, a crash between
//! DeleteObjects and the commit healed by the next run, a million catalog rows in
//! bounded pages, the chain still verifying afterwards, the scheduled-Lambda event and
//! the CLI's tenant/zone settings with their audit rows.
//!
//! The long suite (`cargo test -p rainlogs-integration-tests --test integration prune:: -- --ignored`)
//! prunes a million windows through Garage's DeleteObjects and prints the rate.

use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rainlogs_archive::catalog::tenant::{self, RetentionChange};
use rainlogs_archive::catalog::zone::{self, ZoneRetentionChange};
use rainlogs_archive::chain::{self, LinkContent, LinkInput};
use rainlogs_archive::pipeline::{archive_key, staging_key};
use rainlogs_core::function::Function;
use rainlogs_core::task::TaskEnvelope;
use rainlogs_integration_tests::TestEnv;
use rainlogs_prune::{prune, PruneError, PruneFunction, PruneOptions, PruneReport, PruneTask};
use sha2::{Digest, Sha256};
use uuid::Uuid;

const DAY: TimeDelta = TimeDelta::days(1);

/// The clock of a test: now, to the second (Postgres keeps microseconds; whole seconds
/// keep the ±1 s arithmetic exact).
fn clock() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(TimeDelta::seconds(1))
        .expect("truncates")
}

fn opts(as_of: DateTime<Utc>) -> PruneOptions {
    PruneOptions::at(as_of)
}

async fn run(env: &TestEnv, o: &PruneOptions) -> PruneReport {
    prune(&env.app.pool, &env.app.store, o)
        .await
        .expect("prune run")
}

struct Zone {
    id: Uuid,
    tenant: Uuid,
}

async fn zone(env: &TestEnv) -> Zone {
    let id = env.insert_zone(60, Utc::now() - DAY).await;
    let tenant = sqlx::query_scalar("SELECT tenant_id FROM zones WHERE id = $1")
        .bind(id)
        .fetch_one(&env.app.pool)
        .await
        .unwrap();
    Zone { id, tenant }
}

/// A second zone of the same tenant.
async fn sibling(env: &TestEnv, of: &Zone) -> Zone {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO zones (id, tenant_id, cf_zone_id, name, backfill_from)
         VALUES ($1, $2, $3, 'sibling.example', now())",
    )
    .bind(id)
    .bind(of.tenant)
    .bind(id.simple().to_string())
    .execute(&env.app.pool)
    .await
    .unwrap();
    Zone {
        id,
        tenant: of.tenant,
    }
}

/// A window in `state` ending at `end` (one minute long).
async fn window(env: &TestEnv, z: &Zone, end: DateTime<Utc>, state: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO windows (zone_id, start_at, end_at, state)
         VALUES ($1, $2, $3, $4::window_state) RETURNING id",
    )
    .bind(z.id)
    .bind(end - TimeDelta::minutes(1))
    .bind(end)
    .bind(state)
    .fetch_one(&env.app.pool)
    .await
    .expect("insert window")
}

/// An archived window ending at `end`: its object in Garage, its catalog row and its
/// chain link (appended after the zone's previous links).
async fn archived(env: &TestEnv, z: &Zone, end: DateTime<Utc>) -> (i64, String) {
    let id = window(env, z, end, "archived").await;
    let start = end - TimeDelta::minutes(1);
    let key = archive_key(z.tenant, z.id, start, end);
    let body = format!("sealed object of window {id}");
    env.app
        .store
        .put(&key, Bytes::from(body.clone()))
        .await
        .unwrap();
    let sha: [u8; 32] = Sha256::digest(body.as_bytes()).into();
    sqlx::query(
        "INSERT INTO archived_objects (window_id, object_key, size_bytes, object_sha256,
                                       plaintext_sha256, plaintext_bytes, record_count, key_version)
         VALUES ($1, $2, $3, $4, $4, 10, 1, 1)",
    )
    .bind(id)
    // The catalog records the full bucket key (the store's prefix included).
    .bind(env.app.store.full_key(&key))
    .bind(body.len() as i64)
    .bind(&sha[..])
    .execute(&env.app.pool)
    .await
    .unwrap();
    let mut tx = env.app.pool.begin().await.unwrap();
    chain::append(
        &mut tx,
        id,
        &LinkInput {
            zone_id: z.id,
            window_start: start,
            window_end: end,
            content: LinkContent::Archived {
                object_sha256: sha,
                plaintext_sha256: sha,
                record_count: 1,
            },
        },
        &rainlogs_integration_tests::test_chain_key(z.tenant),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (id, key)
}

async fn state(env: &TestEnv, window: i64) -> String {
    sqlx::query_scalar("SELECT state::text FROM windows WHERE id = $1")
        .bind(window)
        .fetch_one(&env.app.pool)
        .await
        .unwrap()
}

async fn exists(env: &TestEnv, key: &str) -> bool {
    env.app.store.head(key).await.unwrap().is_some()
}

/// (rule, window, zone, tenant, sha256, size) of the receipt for `key`.
type Receipt = (
    String,
    Option<i64>,
    Option<Uuid>,
    Option<Uuid>,
    Option<Vec<u8>>,
    Option<i64>,
);

async fn receipts_for(env: &TestEnv, key: &str) -> Vec<Receipt> {
    sqlx::query_as(
        "SELECT rule, window_id, zone_id, tenant_id, object_sha256, size_bytes
         FROM deletion_receipts WHERE object_key IN ($1, $2) ORDER BY id",
    )
    // Retention receipts name the catalog's full key; sweep receipts the listed one.
    .bind(key)
    .bind(env.app.store.full_key(key))
    .fetch_all(&env.app.pool)
    .await
    .unwrap()
}

async fn count(env: &TestEnv, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&env.app.pool)
        .await
        .unwrap()
}

async fn chain_verifies(env: &TestEnv, z: &Zone) -> u64 {
    let report = chain::verify_zone(
        &env.app.pool,
        &rainlogs_integration_tests::test_kms(z.tenant),
        z.id,
    )
    .await
    .unwrap();
    assert!(report.is_valid(), "{report:?}");
    report.links_checked
}

#[tokio::test]
async fn retention_boundary_is_exact_to_the_second_and_receipts_keep_the_hash() {
    let env = TestEnv::new().await;
    let z = zone(&env).await;
    let now = clock();
    let retention = DAY * 395;
    let (past, past_key) = archived(&env, &z, now - retention - TimeDelta::seconds(1)).await;
    let (inside, inside_key) = archived(&env, &z, now - retention + TimeDelta::seconds(1)).await;
    let (exact, exact_key) = archived(&env, &z, now - retention + TimeDelta::seconds(2)).await;

    let report = run(&env, &opts(now)).await;
    assert_eq!(report.retention.windows, 1, "{report:?}");
    // The sample names catalog keys: full bucket keys.
    assert_eq!(
        report.retention.sample,
        vec![env.app.store.full_key(&past_key)]
    );
    assert_eq!(report.retention.inside_retention, 2);
    assert!(report.complete);
    assert_eq!(state(&env, past).await, "pruned");
    assert_eq!(state(&env, inside).await, "archived");
    assert!(
        !exists(&env, &past_key).await,
        "one second past retention goes"
    );
    assert!(exists(&env, &inside_key).await, "one second inside stays");

    let catalog_sha: Vec<u8> =
        sqlx::query_scalar("SELECT object_sha256 FROM archived_objects WHERE window_id = $1")
            .bind(past)
            .fetch_one(&env.app.pool)
            .await
            .expect("the catalog row outlives the object");
    let receipts = receipts_for(&env, &past_key).await;
    assert_eq!(receipts.len(), 1);
    let (rule, window, zone_id, tenant_id, sha, size) = receipts[0].clone();
    assert_eq!(rule, "retention:395d");
    assert_eq!(
        (window, zone_id, tenant_id),
        (Some(past), Some(z.id), Some(z.tenant))
    );
    assert_eq!(sha, Some(catalog_sha));
    assert!(size.unwrap() > 0);
    assert_eq!(chain_verifies(&env, &z).await, 3, "links outlive objects");

    // The clock moves two seconds: the window that was one second inside goes; the one
    // that now ends exactly at the boundary (end + retention == as_of) still stays.
    let later = run(&env, &opts(now + TimeDelta::seconds(2))).await;
    assert_eq!(
        later.retention.sample,
        vec![env.app.store.full_key(&inside_key)]
    );
    assert_eq!(state(&env, exact).await, "archived");
    assert!(exists(&env, &exact_key).await);

    let audit: Vec<(String, String, serde_json::Value)> = sqlx::query_as(
        "SELECT actor, result, detail FROM audit_events WHERE operation = 'prune.run' ORDER BY id",
    )
    .fetch_all(&env.app.pool)
    .await
    .unwrap();
    assert_eq!(audit.len(), 2, "one audit row per run");
    assert_eq!(audit[0].0, "prune");
    assert_eq!(audit[0].1, "ok");
    assert_eq!(audit[0].2["run_id"], report.run_id.to_string());
    assert_eq!(audit[0].2["retention"]["windows"], 1);
    assert!(
        audit[0].2["retention"].get("sample").is_none(),
        "counts only"
    );
    env.teardown().await;
}

#[tokio::test]
async fn legal_hold_on_zone_or_tenant_blocks_deletion_and_is_reported() {
    let env = TestEnv::new().await;
    let a = zone(&env).await;
    let b = sibling(&env, &a).await;
    let now = clock();
    let old = now - DAY * 400;
    let (wa, ka) = archived(&env, &a, old).await;
    let (wb, kb) = archived(&env, &b, old).await;

    zone::set_retention(
        &env.app.pool,
        &a.id.to_string(),
        ZoneRetentionChange {
            legal_hold: Some(true),
            ..Default::default()
        },
        "test",
    )
    .await
    .unwrap();
    tenant::set(
        &env.app.pool,
        &a.tenant.to_string(),
        RetentionChange {
            legal_hold: Some(true),
            ..Default::default()
        },
        "test",
    )
    .await
    .unwrap();
    let held = run(&env, &opts(now)).await;
    assert_eq!(held.retention.windows, 0);
    assert_eq!(held.retention.held_windows, 2);
    assert!(held.retention.held_bytes > 0);
    assert!(exists(&env, &ka).await && exists(&env, &kb).await);

    // Lift the tenant hold: the zone hold still keeps zone a.
    tenant::set(
        &env.app.pool,
        &a.tenant.to_string(),
        RetentionChange {
            legal_hold: Some(false),
            ..Default::default()
        },
        "test",
    )
    .await
    .unwrap();
    let report = run(&env, &opts(now)).await;
    assert_eq!(report.retention.windows, 1);
    assert_eq!(report.retention.held_windows, 1);
    assert_eq!(state(&env, wa).await, "archived");
    assert_eq!(state(&env, wb).await, "pruned");
    assert!(exists(&env, &ka).await);
    assert!(!exists(&env, &kb).await);

    let audit: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT operation, detail FROM audit_events
         WHERE operation IN ('zone.set', 'tenant.set') ORDER BY id",
    )
    .fetch_all(&env.app.pool)
    .await
    .unwrap();
    let ops: Vec<&str> = audit.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(ops, ["zone.set", "tenant.set", "tenant.set"]);
    assert_eq!(
        audit[2].1["legal_hold"],
        serde_json::json!({"from": true, "to": false})
    );
    env.teardown().await;
}

#[tokio::test]
async fn zone_override_beats_tenant_retention() {
    let env = TestEnv::new().await;
    let short = zone(&env).await;
    let default = sibling(&env, &short).await;
    zone::set_retention(
        &env.app.pool,
        &short.id.to_string(),
        ZoneRetentionChange {
            retention_days: Some(Some(30)),
            confirm_short_retention: true,
            ..Default::default()
        },
        "test",
    )
    .await
    .unwrap();
    let now = clock();
    let (ws, ks) = archived(&env, &short, now - DAY * 31).await;
    let (wd, _) = archived(&env, &default, now - DAY * 31).await;
    let report = run(&env, &opts(now)).await;
    assert_eq!(report.retention.windows, 1);
    assert_eq!(state(&env, ws).await, "pruned");
    assert_eq!(state(&env, wd).await, "archived");
    assert_eq!(receipts_for(&env, &ks).await[0].0, "retention:30d");

    // Back to the tenant's 395 days: nothing else goes; invalid values are refused.
    zone::set_retention(
        &env.app.pool,
        &short.id.to_string(),
        ZoneRetentionChange {
            retention_days: Some(None),
            ..Default::default()
        },
        "test",
    )
    .await
    .unwrap();
    assert!(matches!(
        zone::set_retention(
            &env.app.pool,
            &short.id.to_string(),
            ZoneRetentionChange {
                retention_days: Some(Some(0)),
                ..Default::default()
            },
            "test",
        )
        .await,
        Err(zone::ZoneError::InvalidRetention(0))
    ));
    let (w2, _) = archived(&env, &short, now - DAY * 31 - TimeDelta::minutes(1)).await;
    assert_eq!(run(&env, &opts(now)).await.retention.windows, 0);
    assert_eq!(state(&env, w2).await, "archived");
    env.teardown().await;
}

/// Everything the sweeps judge, planted at "now" (the tests age it with the clock).
struct Planted {
    orphan_no_window: String,
    orphan_final_window: (String, i64),
    orphan_in_flight: String,
    stray: String,
    catalogued: String,
    staged_final: (String, i64),
    staged_in_flight: String,
    staged_no_window: String,
}

async fn plant(env: &TestEnv, z: &Zone) -> Planted {
    let now = clock();
    let put = |key: String| async move {
        env.app
            .store
            .put(&key, Bytes::from_static(b"x"))
            .await
            .unwrap();
        key
    };
    let end = now - TimeDelta::hours(2);
    let orphan_no_window = put(archive_key(
        z.tenant,
        z.id,
        end - TimeDelta::minutes(1),
        end,
    ))
    .await;
    let failed_end = now - TimeDelta::hours(3);
    let failed = window(env, z, failed_end, "failed_permanent").await;
    let orphan_final = put(archive_key(
        z.tenant,
        z.id,
        failed_end - TimeDelta::minutes(1),
        failed_end,
    ))
    .await;
    let sealed_end = now - TimeDelta::hours(4);
    window(env, z, sealed_end, "sealed").await;
    let orphan_in_flight = put(archive_key(
        z.tenant,
        z.id,
        sealed_end - TimeDelta::minutes(1),
        sealed_end,
    ))
    .await;
    let stray = put(format!("archive/{}/notes.txt", z.tenant)).await;
    let (_, catalogued) = archived(env, z, now - TimeDelta::hours(5)).await;
    let empty = window(env, z, now - TimeDelta::hours(6), "empty").await;
    let staged_final = put(staging_key(z.id, empty)).await;
    let staged = window(env, z, now - TimeDelta::hours(7), "staged").await;
    let staged_in_flight = put(staging_key(z.id, staged)).await;
    let staged_no_window = put(staging_key(z.id, 987_654_321)).await;
    Planted {
        orphan_no_window,
        orphan_final_window: (orphan_final, failed),
        orphan_in_flight,
        stray,
        catalogued,
        staged_final: (staged_final, empty),
        staged_in_flight,
        staged_no_window,
    }
}

#[tokio::test]
async fn orphans_are_reported_never_deleted_and_stale_staging_waits_out_its_age() {
    let env = TestEnv::new().await;
    let z = zone(&env).await;
    let p = plant(&env, &z).await;

    // Freshly written: within the 24 h grace and the 48 h staging age, all stays.
    let fresh = run(&env, &opts(Utc::now())).await;
    assert_eq!(fresh.orphans.deleted + fresh.staging.deleted, 0);
    assert_eq!(fresh.orphans.listed, 5);
    assert_eq!(fresh.orphans.kept_young, 5);
    assert_eq!(fresh.staging.kept_young, 3);

    // 25 h later: orphans are old enough — and only reported. An archive object the
    // catalog does not know (no window at all, a final window, a key of no window) may
    // be the only copy of its logs: it stays, with no receipt.
    let day_on = run(&env, &opts(Utc::now() + TimeDelta::hours(25))).await;
    assert_eq!(day_on.orphans.reported, 3, "{:?}", day_on.orphans);
    assert_eq!(day_on.orphans.deleted, 0, "{:?}", day_on.orphans);
    assert_eq!(day_on.orphans.sample.len(), 3);
    assert_eq!(day_on.orphans.kept_in_flight, 1);
    assert_eq!(day_on.staging.deleted, 0);
    for key in [&p.orphan_no_window, &p.orphan_final_window.0, &p.stray] {
        assert!(exists(&env, key).await, "{key} must survive the sweep");
        assert!(
            receipts_for(&env, key).await.is_empty(),
            "{key}: no receipt"
        );
    }
    assert!(
        exists(&env, &p.orphan_in_flight).await,
        "window still in flight"
    );
    assert!(
        exists(&env, &p.catalogued).await,
        "catalogued: not an orphan"
    );

    // 49 h later: stale staged payloads of final or unknown windows go.
    let later = run(&env, &opts(Utc::now() + TimeDelta::hours(49))).await;
    assert_eq!(later.staging.deleted, 2, "{:?}", later.staging);
    assert_eq!(later.staging.kept_in_flight, 1);
    assert!(!exists(&env, &p.staged_final.0).await);
    assert!(!exists(&env, &p.staged_no_window).await);
    assert!(exists(&env, &p.staged_in_flight).await);
    let r = receipts_for(&env, &p.staged_final.0).await;
    assert_eq!(
        (r[0].0.as_str(), r[0].1, r[0].3),
        ("staging-stale", Some(p.staged_final.1), Some(z.tenant))
    );
    assert_eq!(receipts_for(&env, &p.staged_no_window).await.len(), 1);
    env.teardown().await;
}

#[tokio::test]
async fn dry_run_reports_exactly_what_the_real_run_deletes_and_deletes_nothing() {
    let env = TestEnv::new().await;
    let z = zone(&env).await;
    let now = clock();
    let mut keys = Vec::new();
    for i in 0..5 {
        keys.push(archived(&env, &z, now - DAY * 400 - TimeDelta::minutes(i)).await);
    }
    plant(&env, &z).await;
    let as_of = Utc::now() + TimeDelta::hours(49);
    let mut o = opts(as_of);
    o.dry_run = true;
    o.page_size = 2;
    let dry = run(&env, &o).await;
    assert!(dry.dry_run);
    assert_eq!(dry.retention.windows, 5);
    assert_eq!(dry.retention.pages, 3, "pages of at most 2");
    assert_eq!((dry.orphans.reported, dry.orphans.deleted), (3, 0));
    assert_eq!(dry.staging.deleted, 2);
    for (w, k) in &keys {
        assert_eq!(state(&env, *w).await, "archived");
        assert!(exists(&env, k).await);
    }
    assert_eq!(
        count(&env, "SELECT count(*) FROM deletion_receipts").await,
        0
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_events WHERE operation = 'prune.run' AND result = 'dry_run'"
        )
        .await,
        1
    );

    o.dry_run = false;
    let real = run(&env, &o).await;
    assert_eq!(real.retention.windows, dry.retention.windows);
    assert_eq!(real.retention.bytes, dry.retention.bytes);
    assert_eq!(real.retention.sample, dry.retention.sample);
    assert_eq!(real.orphans.sample, dry.orphans.sample);
    assert_eq!(real.staging.sample, dry.staging.sample);
    assert_eq!(real.orphans.bytes, dry.orphans.bytes);
    assert_eq!(
        count(&env, "SELECT count(*) FROM deletion_receipts").await,
        7,
        "5 retention + 2 staging receipts; orphans are only reported"
    );

    // Idempotent: a second run finds nothing and writes no receipt.
    let again = run(&env, &o).await;
    assert_eq!(
        again.retention.windows + again.orphans.deleted + again.staging.deleted,
        0
    );
    assert_eq!(
        count(&env, "SELECT count(*) FROM deletion_receipts").await,
        7
    );
    assert_eq!(chain_verifies(&env, &z).await, 6);
    env.teardown().await;
}

#[tokio::test]
async fn a_crash_between_delete_objects_and_the_commit_is_healed_by_the_next_run() {
    let env = TestEnv::new().await;
    let z = zone(&env).await;
    let now = clock();
    let mut windows = Vec::new();
    for i in 0..3 {
        windows.push(archived(&env, &z, now - DAY * 400 - TimeDelta::minutes(i)).await);
    }
    // The commit fails after DeleteObjects succeeded — what a crash at that point
    // leaves behind: objects gone, windows still archived, no receipts.
    for ddl in [
        "CREATE FUNCTION crash() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'simulated crash before commit'; END $$",
        "CREATE TRIGGER crash BEFORE UPDATE ON windows FOR EACH ROW
           WHEN (NEW.state = 'pruned') EXECUTE FUNCTION crash()",
    ] {
        sqlx::query(ddl).execute(&env.app.pool).await.unwrap();
    }
    let err = prune(&env.app.pool, &env.app.store, &opts(now))
        .await
        .unwrap_err();
    assert!(matches!(err, PruneError::Db { .. }), "{err}");
    assert!(err.to_string().contains("mark windows pruned"), "{err}");
    for (w, k) in &windows {
        assert_eq!(state(&env, *w).await, "archived");
        assert!(
            !exists(&env, k).await,
            "the delete happened before the crash"
        );
    }
    assert_eq!(
        count(&env, "SELECT count(*) FROM deletion_receipts").await,
        0
    );
    let audit: (String, serde_json::Value) =
        sqlx::query_as("SELECT result, detail FROM audit_events WHERE operation = 'prune.run'")
            .fetch_one(&env.app.pool)
            .await
            .unwrap();
    assert_eq!(audit.0, "error");
    assert_eq!(audit.1["code"], "postgres.query");
    assert!(audit.1["error"]
        .as_str()
        .unwrap()
        .contains("simulated crash"));

    sqlx::query("DROP TRIGGER crash ON windows")
        .execute(&env.app.pool)
        .await
        .unwrap();
    let healed = run(&env, &opts(now)).await;
    assert_eq!(healed.retention.windows, 3);
    assert_eq!(
        healed.retention.failed, 0,
        "deleting a missing key succeeds"
    );
    for (w, k) in &windows {
        assert_eq!(state(&env, *w).await, "pruned");
        assert_eq!(receipts_for(&env, k).await.len(), 1);
    }
    assert_eq!(chain_verifies(&env, &z).await, 3);
    env.teardown().await;
}

#[tokio::test]
async fn the_task_refuses_an_early_clock_and_a_scheduled_event_runs_a_prune() {
    let env = TestEnv::new().await;
    let z = zone(&env).await;
    let (w, _) = archived(&env, &z, clock() - DAY * 400).await;
    let f = PruneFunction::new(env.app.pool.clone(), env.app.store.clone());

    let early = PruneTask {
        as_of: Some(Utc::now() + TimeDelta::days(30)),
        ..Default::default()
    };
    let task = TaskEnvelope::new(early.spec(), Utc::now());
    let err = f.handle(task).await.unwrap_err();
    assert_eq!(err.code, "prune.as_of_in_future");
    assert!(!err.is_retryable());

    // EventBridge's scheduled event, detail as payload: a dry run changes nothing.
    let out = f
        .invoke_json(serde_json::json!({
            "version": "0", "id": "e1", "detail-type": "Scheduled Event",
            "source": "aws.events", "detail": {"dry_run": true}
        }))
        .await
        .unwrap();
    assert_eq!(out["result"]["dry_run"], true);
    assert_eq!(out["result"]["retention"]["windows"], 1);
    assert_eq!(state(&env, w).await, "archived");
    // The bare `{}` a Lambda schedule may send is the daily run.
    let out = f.invoke_json(serde_json::json!({})).await.unwrap();
    assert_eq!(out["result"]["retention"]["windows"], 1);
    assert_eq!(state(&env, w).await, "pruned");
    env.teardown().await;
}

/// Inserts `n` archived windows of `z` (ids in time order) whose objects do not exist
/// in Garage (DeleteObjects of a missing key succeeds): the first `past` end more than
/// 395 days before `now`, the rest inside retention.
async fn catalog_rows(env: &TestEnv, z: &Zone, n: i64, past: i64, now: DateTime<Utc>) {
    let first_end = now - DAY * 395 - TimeDelta::minutes(past);
    sqlx::query(
        "INSERT INTO windows (zone_id, start_at, end_at, state, state_since)
         SELECT $1, $2 + make_interval(mins => g - 1), $2 + make_interval(mins => g), 'archived', now()
         FROM generate_series(1, $3::int) AS g",
    )
    .bind(z.id)
    .bind(first_end - TimeDelta::minutes(1))
    .bind(n)
    .execute(&env.app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO archived_objects (window_id, object_key, size_bytes, object_sha256,
                                       plaintext_sha256, plaintext_bytes, record_count, key_version)
         SELECT w.id, 'archive/' || $2::text || '/' || w.zone_id || '/bulk/' || w.id || '.sealed',
                1000, sha256(w.id::text::bytea), sha256(w.id::text::bytea), 5000, 10, 1
         FROM windows w WHERE w.zone_id = $1",
    )
    .bind(z.id)
    .bind(z.tenant)
    .execute(&env.app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_million_catalog_rows_are_walked_in_bounded_pages() {
    let env = TestEnv::new().await;
    let z = zone(&env).await;
    let now = clock();
    const ROWS: i64 = 1_000_000;
    const PAST: i64 = 20_000;
    let t = Instant::now();
    catalog_rows(&env, &z, ROWS, PAST, now).await;
    eprintln!("inserted {ROWS} catalog rows in {:?}", t.elapsed());

    let t = Instant::now();
    let report = run(&env, &opts(now)).await;
    eprintln!(
        "pruned {} of {ROWS} windows in {:?}",
        report.retention.windows,
        t.elapsed()
    );
    let r = &report.retention;
    assert_eq!(r.windows, PAST as u64);
    assert_eq!(r.inside_retention, (ROWS - PAST) as u64);
    assert_eq!(r.pages, (PAST / 1000) as u64);
    assert_eq!(r.largest_page, 1000, "no page above the page size");
    assert_eq!(r.bytes, PAST as u64 * 1000);
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM deletion_receipts WHERE rule = 'retention:395d'"
        )
        .await,
        PAST
    );
    assert_eq!(
        count(&env, "SELECT count(*) FROM windows WHERE state = 'pruned'").await,
        PAST
    );
    assert_eq!(
        count(&env, "SELECT count(*) FROM archived_objects").await,
        ROWS,
        "catalog rows stay"
    );
    env.teardown().await;
}

/// The long suite: a million windows past retention, every one through Garage's
/// DeleteObjects (1000 calls of 1000 keys). Prints the rate for docs/BENCHMARKS.md.
#[tokio::test]
#[ignore = "long suite: a million deletes through Garage (minutes)"]
async fn a_million_windows_are_pruned_through_delete_objects() {
    let env = TestEnv::new().await;
    let z = zone(&env).await;
    let now = clock();
    const ROWS: i64 = 1_000_000;
    let t = Instant::now();
    catalog_rows(&env, &z, ROWS, ROWS, now).await;
    eprintln!("inserted {ROWS} catalog rows in {:?}", t.elapsed());
    let t = Instant::now();
    let report = run(&env, &opts(now)).await;
    let took = t.elapsed();
    eprintln!(
        "pruned {} windows in {} pages in {took:?}: {:.0} windows/s",
        report.retention.windows,
        report.retention.pages,
        report.retention.windows as f64 / took.as_secs_f64().max(f64::EPSILON)
    );
    assert_eq!(report.retention.windows, ROWS as u64);
    assert_eq!(report.retention.pages, 1000);
    assert_eq!(report.retention.largest_page, 1000);
    assert_eq!(
        count(&env, "SELECT count(*) FROM deletion_receipts").await,
        ROWS
    );
    let again = run(&env, &opts(now)).await;
    assert_eq!(again.retention.windows, 0);
    env.teardown().await;
}

/// Issue 11 item 1: orphaned archive objects are re-adopted from what they prove about
/// themselves. A Postgres restored from an older backup lacks the last windows of a
/// zone (rows and links gone, objects still in the bucket); one window the pipeline
/// gave up on after its object was written is `failed_permanent`. `rainlogs adopt`
/// verifies each orphan, rebuilds window, catalog row and chain link, and verify is
/// clean again; an orphan of an unknown zone and another window's object under a free
/// key are left alone, with why.
#[tokio::test]
async fn orphans_are_readopted_with_their_window_row_and_link_and_verify_clean() {
    use rainlogs_archive::adopt::Skip;
    use rainlogs_cli::adopt::{adopt, AdoptArgs};

    let a = crate::verify_restore::archive(12, 20).await;
    let pool = &a.env.app.pool;
    let store = &a.env.app.store;
    // An older backup holds a prefix of the chain: the last three links (by sequence,
    // which is not time order: windows settle concurrently) and their rows are gone.
    let mut tail: Vec<(i64, DateTime<Utc>, DateTime<Utc>, String)> = sqlx::query_as(
        "SELECT w.id, w.start_at, w.end_at, o.object_key FROM windows w
         JOIN archived_objects o ON o.window_id = w.id
         JOIN chain_links l ON l.window_id = w.id
         WHERE w.zone_id = $1 ORDER BY l.seq DESC LIMIT 3",
    )
    .bind(a.zone)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(tail.len(), 3);
    tail.sort_by_key(|t| t.1);
    let tip_before: i64 = sqlx::query_scalar("SELECT max(seq) FROM chain_links WHERE zone_id = $1")
        .bind(a.zone)
        .fetch_one(pool)
        .await
        .unwrap();
    let ids: Vec<i64> = tail.iter().map(|t| t.0).collect();
    for sql in [
        "DELETE FROM chain_links WHERE window_id = ANY($1)",
        "DELETE FROM archived_objects WHERE window_id = ANY($1)",
    ] {
        sqlx::query(sql).bind(&ids).execute(pool).await.unwrap();
    }
    // The earliest of the three: the pipeline gave up on it; the other two: gone.
    sqlx::query("UPDATE windows SET state = 'failed_permanent' WHERE id = $1")
        .bind(ids[0])
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM windows WHERE id = ANY($1)")
        .bind(&ids[1..])
        .execute(pool)
        .await
        .unwrap();
    // Left alone: a copy under a zone the catalog does not know, and one window's
    // object under the key of a free window after the archive.
    // (The catalog records full bucket keys: read through the bucket's root.)
    let bytes = store.root().get(&tail[2].3).await.unwrap();
    let stranger = archive_key(a.tenant, Uuid::new_v4(), tail[2].1, tail[2].2);
    store.put(&stranger, bytes.clone()).await.unwrap();
    let later = a.last + TimeDelta::minutes(30);
    let misplaced = archive_key(a.tenant, a.zone, later, later + TimeDelta::minutes(1));
    store.put(&misplaced, bytes).await.unwrap();
    let (stranger_full, misplaced_full) = (store.full_key(&stranger), store.full_key(&misplaced));
    let windows = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM windows WHERE zone_id = $1")
            .bind(a.zone)
            .fetch_one(pool)
            .await
            .unwrap()
    };
    let before = windows().await;

    let args = |dry_run: bool| AdoptArgs {
        tenant: Some(a.tenant.to_string()),
        zone: None,
        dry_run,
        json: false,
    };
    let skipped = |r: &rainlogs_archive::adopt::AdoptReport| {
        let mut s: Vec<(String, bool)> = r
            .skipped
            .iter()
            .map(|(k, why)| (k.clone(), matches!(why, Skip::DoesNotVerify(_))))
            .collect();
        s.sort();
        s
    };
    let mut want_skipped = vec![
        (stranger_full.clone(), false),
        (misplaced_full.clone(), true),
    ];
    want_skipped.sort();

    // Dry run: all three proven, nothing written.
    let dry = adopt(&a.env.src, &args(true)).await.expect("dry run");
    assert_eq!(dry.adopted.len(), 3, "{dry:?}");
    assert_eq!((dry.adopted_count, dry.skipped_count), (3, 2));
    assert_eq!(skipped(&dry), want_skipped, "{dry:?}");
    assert!(dry
        .skipped
        .iter()
        .any(|(k, why)| *k == stranger_full && *why == Skip::UnknownZone));
    assert_eq!(windows().await, before);
    assert!(
        !a.verify(false).await.is_empty(),
        "the tail is missing before adoption"
    );

    let done = adopt(&a.env.src, &args(false)).await.expect("adoption");
    let mut adopted: Vec<(String, i64)> = done
        .adopted
        .iter()
        .map(|x| (x.key.clone(), x.seq.expect("linked")))
        .collect();
    adopted.sort_by_key(|x| x.1);
    let keys: Vec<String> = tail.iter().map(|t| t.3.clone()).collect();
    assert_eq!(
        adopted,
        keys.iter()
            .cloned()
            .zip(tip_before - 2..)
            .collect::<Vec<_>>(),
        "adopted in key (time) order, linked after the surviving tip"
    );
    assert_eq!(skipped(&done), want_skipped);
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE operation = 'orphan.adopt' AND zone_id = $1",
    )
    .bind(a.zone)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(audited, 3);
    let spans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM windows w JOIN archived_objects o ON o.window_id = w.id
         WHERE w.zone_id = $1 AND w.state = 'archived' AND w.first_record_at IS NOT NULL
           AND o.object_key = ANY($2)",
    )
    .bind(a.zone)
    .bind(&keys)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        spans, 3,
        "adopted windows are archived with their record span"
    );

    // The chain, the catalog and every object verify clean; the logs restore.
    assert_eq!(a.verify(true).await, vec![]);
    let out = crate::verify_restore::tmp("adopted.ndjson");
    rainlogs_cli::logs::get(&a.env.src, &a.get_args(a.first, a.last, &out))
        .await
        .expect("restore");
    assert_eq!(
        crate::verify_restore::lines(&std::fs::read(&out).unwrap()),
        a.served(a.first, a.last)
    );

    // Again: nothing more to adopt; the two strays are still left alone.
    let again = adopt(&a.env.src, &args(false)).await.expect("second run");
    assert!(again.adopted.is_empty(), "{again:?}");
    assert_eq!(skipped(&again), want_skipped);
    for key in [&stranger, &misplaced] {
        store.delete(key).await.unwrap();
    }
    a.env.teardown().await;
}
