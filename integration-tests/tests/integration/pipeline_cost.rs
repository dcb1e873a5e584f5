//! What archiving one window costs in round trips, counted against real Postgres,
//! Garage, the kms and the Logpull simulator (issue 20 item 3; docs/BENCHMARKS.md,
//! "Scale"): S3 requests per operation from the store's own counts, Postgres
//! transactions as connection checkouts of a pool only the stages use (a statement on
//! the pool is one autocommit transaction, a `begin()` one transaction, each one
//! checkout). The budgets below are what the design needs; a change that adds a round
//! trip to every window fails here and has to say why.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DurationRound, TimeDelta, Utc};
use rainlogs_archive::ledger::WindowState;
use rainlogs_archive::pipeline::CLOUDFLARE_TOKEN_PURPOSE;
use rainlogs_core::function::Function;
use rainlogs_core::task::{kinds, TaskEnvelope, TaskSpec};
use rainlogs_encrypt::EncryptFunction;
use rainlogs_fetch::logpull::{LogpullConfig, RetryPolicy};
use rainlogs_fetch::FetchFunction;
use rainlogs_integration_tests::TestEnv;
use rainlogs_kms::{KmsService, MasterKeyring};
use rainlogs_logpull_sim::{SimConfig, Simulator, ZoneVolume};
use rainlogs_sealed::kms::{Kms, SecretBinding};
use rainlogs_upload::UploadFunction;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

const TOKEN: &str = "cost-test-token";
const MASTER: &str = "1:3232323232323232323232323232323232323232323232323232323232323232";
const WINDOWS: usize = 8;
/// Windows run at once in the concurrent round (as a dispatcher runs them).
const CONCURRENT: usize = 16;

/// A pool that counts its checkouts: one per transaction the stages run.
async fn counting_pool(env: &TestEnv) -> (sqlx::PgPool, Arc<AtomicU64>) {
    let checkouts = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&checkouts);
    let pool = PgPoolOptions::new()
        .max_connections(4)
        // Every checkout ends in a release (a fresh connection skips `before_acquire`).
        .after_release(move |_, _| {
            counter.fetch_add(1, Ordering::Relaxed);
            Box::pin(async { Ok(true) })
        })
        .connect(&env.database_url())
        .await
        .expect("stage pool connects");
    (pool, checkouts)
}

#[tokio::test]
async fn archiving_a_window_costs_a_known_number_of_round_trips() {
    let env = TestEnv::new().await;
    let sim = Simulator::start_local(SimConfig {
        seed: 11,
        default_volume: ZoneVolume {
            records_per_minute: 20,
            empty_ratio: 0.0,
            late_ratio: 0.0,
            late_max_seconds: 0,
        },
        tokens: vec![TOKEN.to_owned()],
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let (pool, checkouts) = counting_pool(&env).await;
    let keyring = MasterKeyring::parse(MASTER, None).expect("keyring");
    let kms: Arc<dyn Kms> = Arc::new(KmsService::new(pool.clone(), keyring, "test"));
    let store = env.app.store.clone();
    let fetch = FetchFunction::with_clients(
        pool.clone(),
        store.clone(),
        kms.clone(),
        LogpullConfig {
            base_url: sim.base_url(),
            retry: RetryPolicy::none(),
            ..LogpullConfig::default()
        },
    );
    let encrypt = EncryptFunction::with_clients(pool.clone(), store.clone(), kms.clone());
    let upload = UploadFunction::new(pool.clone(), store.clone()).with_kms(kms.clone());

    let zone = env.insert_zone(60, Utc::now() - TimeDelta::hours(1)).await;
    let tenant: Uuid = sqlx::query_scalar("SELECT tenant_id FROM zones WHERE id = $1")
        .bind(zone)
        .fetch_one(&env.app.pool)
        .await
        .unwrap();
    let binding = SecretBinding {
        tenant,
        zone,
        purpose: CLOUDFLARE_TOKEN_PURPOSE.to_owned(),
    };
    let blob = kms
        .encrypt_secret(&binding, TOKEN.as_bytes())
        .await
        .unwrap();
    sqlx::query(
        "UPDATE zones SET token_ciphertext = $2, endpoint = 'simulator', simulator_url = $3
         WHERE id = $1",
    )
    .bind(zone)
    .bind(blob)
    .bind(sim.base_url())
    .execute(&env.app.pool)
    .await
    .unwrap();
    let end = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap() - TimeDelta::minutes(5);
    let mut ids = Vec::new();
    for i in 0..(WINDOWS + CONCURRENT) as i32 {
        let e = end - TimeDelta::minutes(i64::from(i));
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO windows (zone_id, start_at, end_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(zone)
        .bind(e - TimeDelta::minutes(1))
        .bind(e)
        .fetch_one(&env.app.pool)
        .await
        .unwrap();
        ids.push(id);
    }
    let concurrent_ids = ids.split_off(WINDOWS);
    // The first use of a tenant creates its key: not a per-window cost.
    let warm = kms
        .generate_data_key(&rainlogs_sealed::SealContext {
            tenant,
            zone,
            window_start: end,
            window_end: end,
        })
        .await
        .unwrap();
    drop(warm);

    let stages = [
        (&fetch as &dyn Function, kinds::FETCH_WINDOW),
        (&encrypt as &dyn Function, kinds::ENCRYPT_WINDOW),
        (&upload as &dyn Function, kinds::UPLOAD_WINDOW),
    ];
    let task = |kind: &str, id: i64| {
        TaskEnvelope::new(
            TaskSpec::new("default", kind, serde_json::json!({ "window_id": id })),
            Utc::now(),
        )
    };
    let mut per_stage = Vec::new();
    for (function, kind) in stages {
        let (tx_before, s3_before) = (checkouts.load(Ordering::Relaxed), store.operations());
        for &id in &ids {
            function
                .handle(task(kind, id))
                .await
                .expect("stage succeeds");
        }
        let tx = checkouts.load(Ordering::Relaxed) - tx_before;
        let s3: Vec<(&str, u64)> = store
            .operations()
            .into_iter()
            .map(|(op, n)| (op, n - s3_before.get(op).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect();
        per_stage.push((kind, tx as f64 / WINDOWS as f64, s3));
    }
    // The same stages with many windows at once: the kms's audit rows share inserts.
    let mut concurrent = Vec::new();
    for (function, kind) in stages {
        let tx_before = checkouts.load(Ordering::Relaxed);
        let runs = concurrent_ids
            .iter()
            .map(|&id| function.handle(task(kind, id)));
        for result in futures::future::join_all(runs).await {
            result.expect("stage succeeds");
        }
        let tx = checkouts.load(Ordering::Relaxed) - tx_before;
        concurrent.push((kind, tx as f64 / CONCURRENT as f64));
    }
    ids.extend(&concurrent_ids);
    for &id in &ids {
        let state: WindowState = sqlx::query_scalar("SELECT state FROM windows WHERE id = $1")
            .bind(id)
            .fetch_one(&env.app.pool)
            .await
            .unwrap();
        assert_eq!(state, WindowState::Archived);
    }
    for ((kind, tx, s3), (_, at_once)) in per_stage.iter().zip(&concurrent) {
        eprintln!(
            "{kind}: {tx:.2} postgres transactions per window one at a time, {at_once:.2} with {CONCURRENT} at once; S3 {s3:?} for {WINDOWS} windows"
        );
    }
    let n = WINDOWS as u64;
    let s3 = |i: usize| per_stage[i].2.clone();
    assert_eq!(s3(0), vec![("PutObject", n)], "fetch: one staged object");
    assert_eq!(
        s3(1),
        vec![("GetObject", n), ("PutObject", n)],
        "encrypt: read the staged object, write the archive object"
    );
    assert_eq!(
        s3(2),
        vec![("DeleteObject", n), ("GetObject", n)],
        "upload: read the archive object back, delete the staged one"
    );
    let total: f64 = per_stage.iter().map(|(_, tx, _)| tx).sum();
    assert!(
        total <= BUDGET_TRANSACTIONS,
        "{total:.2} Postgres transactions per window, budget {BUDGET_TRANSACTIONS}: {per_stage:?}"
    );
    let at_once: f64 = concurrent.iter().map(|(_, tx)| tx).sum();
    assert!(
        at_once <= total,
        "running windows at once never costs more per window: {at_once:.2} vs {total:.2}"
    );
    pool.close().await;
    env.teardown().await;
}

/// Postgres transactions one archived window may cost across the three stages, one
/// window at a time: fetch 7, encrypt 6, upload 5 — the chain link's key (chain format
/// v2) is one read of the tenant's active key (docs/BENCHMARKS.md, "Scale") — with
/// room for the pool's own occasional extra release over a run of windows.
const BUDGET_TRANSACTIONS: f64 = 18.5;
