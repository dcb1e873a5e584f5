//! The `rainlogs` image (`infra/images/build.sh`) runs: started with `docker run`'s
//! equivalent against the test's services (host networking: they and the Logpull
//! simulator listen on this host's loopback), its `rainlogs run` archives a simulator
//! zone, its own health check turns healthy, `/healthz` answers, and its process runs
//! as the image's non-root user.

use std::time::Duration;

use chrono::Utc;
use rainlogs_archive::chain;
use rainlogs_cli::demo::{register, FlowSource, FlowZone};
use rainlogs_integration_tests::containers::{session_labels, LogsOnPanic, TestImage};
use rainlogs_integration_tests::{wait_for, TestEnv};
use rainlogs_logpull_sim::{SimConfig, Simulator};
use secrecy::SecretString;
use testcontainers::core::WaitFor;
use testcontainers::runners::AsyncRunner;
use testcontainers::ImageExt;

use crate::verify_restore::with_keyring;

const TOKEN: &str = "image-test-token";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rainlogs_image_archives_a_zone_reports_healthy_and_runs_as_non_root() {
    let mut env = TestEnv::new().await;
    let kms = with_keyring(&mut env);
    let sim = Simulator::start_local(SimConfig {
        tokens: vec![TOKEN.to_owned()],
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let zones = [FlowZone {
        name: "image.example".into(),
        cf_zone_id: uuid::Uuid::new_v4().simple().to_string(),
        cadence_seconds: 60,
        backfill_minutes: 5,
        fields: Vec::new(),
    }];
    let source = FlowSource {
        simulator_url: sim.base_url(),
        demo: false,
    };
    let token = SecretString::from(TOKEN.to_owned());
    let zone = register(
        &env.app,
        &kms,
        &format!("image-{}", env.id),
        &zones,
        &source,
        &token,
        Utc::now(),
    )
    .await
    .expect("zone registered")[0];

    let health_port = free_port();
    let mut request = TestImage::Rainlogs
        .request()
        .await
        .expect("the rainlogs image")
        .with_wait_for(WaitFor::healthcheck())
        .with_network("host")
        .with_labels(session_labels())
        .with_startup_timeout(Duration::from_secs(120));
    let mut settings = env.src.clone();
    settings.set("RAINLOGS_METRICS_ADDR", format!("127.0.0.1:{health_port}"));
    settings.set("RAINLOGS_SCHEDULER_INTERVAL_MS", "500");
    // The windows `register` planned are the reconciler's to send: do it soon.
    settings.set("RAINLOGS_RECONCILE_AFTER_MS", "2000");
    settings.set("RAINLOGS_SCHEDULES_FILE", "off");
    for (key, value) in settings.pairs() {
        request = request.with_env_var(key, value);
    }
    // Returns once the image's HEALTHCHECK (`rainlogs health`) has passed.
    let container = request
        .start()
        .await
        .expect("rainlogs run starts and turns healthy");
    let _logs = LogsOnPanic(container.id().to_owned());

    let health = reqwest::get(format!("http://127.0.0.1:{health_port}/healthz"))
        .await
        .expect("/healthz answers");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");

    let pid = rainlogs_integration_tests::containers::docker_cli(&[
        "inspect",
        "--format",
        "{{.State.Pid}}",
        container.id(),
    ])
    .await
    .expect("docker inspect");
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).expect("proc status");
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid line");
    assert!(
        uid.split_whitespace().all(|id| id == "10001"),
        "the process runs as the image's user, not root: Uid {uid}"
    );

    let pool = &env.app.pool;
    let windows: i64 = wait_for(
        "the zone archived by the container",
        Duration::from_secs(120),
        || async {
            let (all, done): (i64, i64) = sqlx::query_as(
                "SELECT count(*), count(*) FILTER (WHERE state IN ('archived', 'empty'))
             FROM windows WHERE zone_id = $1",
            )
            .bind(zone)
            .fetch_one(pool)
            .await
            .expect("windows");
            (all >= 3 && all == done).then_some(all)
        },
    )
    .await;
    let report = chain::verify_zone(pool, &kms, zone).await.expect("chain");
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.links_checked, windows as u64);
    drop(container);
    env.teardown().await;
}
