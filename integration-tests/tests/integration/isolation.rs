//! Where a zone's token may go, and what a demo may touch (issue 21; docs/PIPELINE.md,
//! "Where logs come from"): a zone is fetched from its own recorded endpoint whatever the
//! worker was pointed at; a worker pointed off the Cloudflare allow-list refuses to
//! start; `rainlogs demo` on a stack with live zones changes nothing of theirs.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rainlogs_archive::catalog::{tenant, zone};
use rainlogs_archive::endpoint::ZoneEndpoint;
use rainlogs_archive::ledger::WindowState;
use rainlogs_archive::pipeline::PIPELINE_QUEUE;
use rainlogs_cli::demo::{run_demo, DemoOptions};
use rainlogs_dispatcher::app::App;
use rainlogs_dispatcher::reconcile;
use rainlogs_integration_tests::cloudflare_stand_in;
use rainlogs_integration_tests::{wait_for, TestEnv};
use rainlogs_kms::{KmsService, MasterKeyring};
use rainlogs_logpull_sim::{credential_fingerprint, SimConfig, Simulator};
use secrecy::SecretString;
use uuid::Uuid;

const MASTER: &str = "1:5656565656565656565656565656565656565656565656565656565656565656";
const TOKEN_A: &str = "token-of-the-live-zone-on-simulator-a";

fn with_kms(app: &mut App) {
    let keyring = MasterKeyring::parse(MASTER, None).expect("keyring");
    app.kms = Some(KmsService::new(app.pool.clone(), keyring, "isolation-test"));
}

async fn simulator(tokens: &[&str]) -> Simulator {
    Simulator::start_local(SimConfig {
        seed: 21,
        tokens: tokens.iter().map(|t| t.to_string()).collect(),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

/// Adds a tenant and a zone fetched from `endpoint` with `token`, 10 minutes of
/// backfill, planned and enqueued on the shared queue as `rainlogs run`'s scheduler does.
async fn live_zone(env: &TestEnv, endpoint: ZoneEndpoint, token: &str) -> Uuid {
    let kms = env.app.kms.clone().expect("kms");
    let tenant_name = format!("live-{}", Uuid::new_v4().simple());
    tenant::add(&env.app.pool, &tenant_name, 395)
        .await
        .expect("tenant add");
    let cf = Uuid::new_v4().simple().to_string();
    // Real zones' tokens are probed at a stand-in, never at Cloudflare; simulated zones
    // at their own simulator.
    let (_stand_in, probe) = cloudflare_stand_in(&[token]).await;
    let id = zone::add(
        &env.app.pool,
        &kms,
        &probe,
        &zone::NewZone {
            tenant: &tenant_name,
            cf_zone_id: &cf,
            name: "live.example",
            cadence_seconds: 60,
            backfill_minutes: 10,
            endpoint,
            demo: false,
            fields: None,
        },
        &SecretString::from(token.to_owned()),
        Utc::now(),
    )
    .await
    .expect("zone add");
    let pass = reconcile::plan_and_enqueue(&env.app, Utc::now())
        .await
        .expect("plan and enqueue");
    assert!(pass.planned >= 8, "{pass:?}");
    id
}

async fn windows(env: &TestEnv, zone: Uuid) -> Vec<(i64, WindowState, DateTime<Utc>)> {
    sqlx::query_as("SELECT id, state, state_since FROM windows WHERE zone_id = $1 ORDER BY id")
        .bind(zone)
        .fetch_all(&env.app.pool)
        .await
        .expect("read windows")
}

/// Runs a worker of `app` on the pipeline queue until every window of `zone` is final.
async fn archive_with(app: &App, env: &TestEnv, zone: Uuid) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = app.worker(vec![PIPELINE_QUEUE.into()]);
    let running = tokio::spawn(async move { worker.run(stopped).await });
    wait_for(
        "the live zone's windows to be final",
        Duration::from_secs(120),
        || async {
            let w = windows(env, zone).await;
            w.iter().all(|(_, s, _)| s.is_final()).then_some(())
        },
    )
    .await;
    stop.send(true).expect("stop");
    running.await.expect("worker joins").expect("worker");
}

fn fingerprints(sim: &Simulator) -> HashSet<String> {
    sim.credentials_seen().into_keys().collect()
}

#[tokio::test]
async fn the_demo_leaves_a_live_zone_and_its_queued_tasks_alone() {
    let mut env = TestEnv::new().await;
    with_kms(&mut env.app);
    let sim_a = simulator(&[TOKEN_A]).await;
    let live = live_zone(
        &env,
        ZoneEndpoint::Simulator {
            url: sim_a.base_url(),
        },
        TOKEN_A,
    )
    .await;
    let before = windows(&env, live).await;
    let queued = env.app.queue.depth(PIPELINE_QUEUE).await.unwrap();
    assert_eq!(queued.ready, before.len() as u64, "one fetch per window");
    // `zone add` probed the token at sim A; nothing else has reached it yet.
    let probed = sim_a.credentials_seen();

    let report = run_demo(&env.app, &DemoOptions::new(3, Duration::from_secs(120)))
        .await
        .expect("demo runs");
    assert!(report.succeeded(), "{report:?}");

    // Nothing of the live zone moved: same windows, same states, same state times, its
    // fetches still queued; no request reached its simulator.
    assert_eq!(windows(&env, live).await, before);
    let after = env.app.queue.depth(PIPELINE_QUEUE).await.unwrap();
    assert_eq!(
        (after.ready, after.active, after.dead),
        (queued.ready, 0, 0)
    );
    assert_eq!(
        sim_a.credentials_seen(),
        probed,
        "the demo sent nothing to A"
    );
    // The demo's simulator saw the demo's token only.
    assert_eq!(report.foreign_credentials(), 0, "{report:?}");
    assert!(!report
        .simulator_credentials
        .contains_key(&credential_fingerprint(TOKEN_A)));
    // Its zones are demo zones, paused, and its private queue keys are gone.
    let demo_zones: Vec<(bool, bool)> = sqlx::query_as(
        "SELECT demo, paused FROM zones z JOIN tenants t ON t.id = z.tenant_id WHERE t.name = $1",
    )
    .bind(&report.tenant)
    .fetch_all(&env.app.pool)
    .await
    .unwrap();
    assert_eq!(
        demo_zones,
        vec![(true, true); 4],
        "three pulled zones, one pushed"
    );
    let mut redis = env.redis().await;
    let leftover: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:demo:*", env.app.queue.keys().prefix()))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(leftover.is_empty(), "{leftover:?}");

    // The live zone's own worker then archives it from its simulator, with its token.
    archive_with(&env.app, &env, live).await;
    assert!(windows(&env, live)
        .await
        .iter()
        .all(|(_, s, _)| matches!(s, WindowState::Archived | WindowState::Empty)));
    assert_eq!(
        fingerprints(&sim_a),
        HashSet::from([credential_fingerprint(TOKEN_A)])
    );
    env.teardown().await;
}

#[tokio::test]
async fn a_worker_pointed_at_another_api_fetches_each_zone_from_its_own_endpoint() {
    let mut env = TestEnv::new().await;
    with_kms(&mut env.app);
    let sim_a = simulator(&[TOKEN_A]).await;
    // B would even accept A's token: a misrouted fetch would succeed silently.
    let sim_b = simulator(&[TOKEN_A]).await;
    let live = live_zone(
        &env,
        ZoneEndpoint::Simulator {
            url: sim_a.base_url(),
        },
        TOKEN_A,
    )
    .await;

    // A second worker process whose Cloudflare base is B (allow-listed, so it starts).
    let mut src = env.src.clone();
    src.set("RAINLOGS_CLOUDFLARE_API", sim_b.base_url());
    src.set("RAINLOGS_CLOUDFLARE_API_ALLOW", sim_b.base_url());
    let mut other = App::connect(&src).await.expect("the other worker connects");
    with_kms(&mut other);
    archive_with(&other, &env, live).await;

    assert!(windows(&env, live)
        .await
        .iter()
        .all(|(_, s, _)| matches!(s, WindowState::Archived | WindowState::Empty)));
    assert!(
        sim_b.credentials_seen().is_empty(),
        "a token reached the worker's own endpoint: {:?}",
        sim_b.credentials_seen()
    );
    assert_eq!(
        fingerprints(&sim_a),
        HashSet::from([credential_fingerprint(TOKEN_A)])
    );
    env.teardown().await;
}

#[tokio::test]
async fn a_worker_pointed_off_the_allow_list_refuses_to_start() {
    let mut env = TestEnv::new().await;
    with_kms(&mut env.app);
    let sim_b = simulator(&["real-token"]).await;
    // A real Cloudflare zone, its fetches queued.
    let real = live_zone(&env, ZoneEndpoint::Cloudflare, "real-token").await;
    let before = windows(&env, real).await;

    let mut src = env.src.clone();
    src.set("RAINLOGS_CLOUDFLARE_API", sim_b.base_url());
    let err = match App::connect(&src).await {
        Ok(_) => panic!("a worker pointed at {} started", sim_b.base_url()),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("RAINLOGS_CLOUDFLARE_API") && err.contains("RAINLOGS_CLOUDFLARE_API_ALLOW"),
        "{err}"
    );
    assert_eq!(windows(&env, real).await, before);
    assert!(sim_b.credentials_seen().is_empty());
    env.teardown().await;
}
