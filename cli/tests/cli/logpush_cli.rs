//! `rainlogs logpush create|list|status|disable|delete`, the real binary, against real
//! Postgres and the kms, with the Logpush simulator standing in for Cloudflare and the
//! receiver serving in this test process: the job is created (validated at the
//! receiver, the zone switched to push), listed, polled while healthy and while a wrong
//! secret makes it fail (exit 1, the 401 shown), disabled and deleted; bad limits are
//! refused naming the limit; the destination's secret appears in no output; a push-only
//! zone is added with `zone add --mode push`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use rainlogs_archive::catalog::{tenant, zone};
use rainlogs_archive::endpoint::ZoneEndpoint;
use rainlogs_integration_tests::TestEnv;
use rainlogs_kms::{KmsService, MasterKeyring};
use rainlogs_logpull_sim::{PushClock, PushConfig, PushFault, PushFaultRule, SimConfig, Simulator};
use rainlogs_receiver::{Receiver, ReceiverLimits};
use rainlogs_sealed::kms::Kms;
use secrecy::SecretString;

const MASTER: &str = "1:7171717171717171717171717171717171717171717171717171717171717171";
const TOKEN: &str = "logpush-cli-zone-token";
const CF: &str = "c0ffeec0ffeec0ffeec0ffeec0ffee00";
const CF2: &str = "c0ffeec0ffeec0ffeec0ffeec0ffee01";

struct Run {
    ok: bool,
    out: String,
}

async fn rainlogs(env_file: &Path, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rainlogs"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RAINLOGS_ENV_FILE", env_file)
        .env("LOGPUSH_CLI_TOKEN", TOKEN)
        // Debug logging: the secret must not appear even there.
        .env("RAINLOGS_LOG", "debug")
        .output()
        .await
        .expect("rainlogs runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Run {
        ok: out.status.success(),
        out: text,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logpush_commands_manage_a_job_at_the_simulator() {
    let mut env = TestEnv::new().await;
    env.src.set("RAINLOGS_MASTER_KEYS", MASTER);
    let keyring = MasterKeyring::parse(MASTER, None).expect("keyring");
    let kms: Arc<dyn Kms> = Arc::new(KmsService::new(env.app.pool.clone(), keyring, "test"));
    let t0 = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap() - TimeDelta::hours(1);
    let sim = Simulator::start_local(SimConfig {
        tokens: vec![TOKEN.into()],
        push: PushConfig {
            clock: PushClock::Manual { start: t0 },
            retry_base: Duration::from_millis(20),
            retry_cap: Duration::from_millis(50),
            give_up_after: Duration::from_millis(300),
            ..PushConfig::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    tenant::add(&env.app.pool, "acme", 400).await.unwrap();
    let probe = rainlogs_fetch::LogpullProbe::new(
        rainlogs_fetch::logpull::LogpullConfig::default(),
        rainlogs_fetch::CloudflareApi::default(),
    );
    zone::add(
        &env.app.pool,
        kms.as_ref(),
        &probe,
        &zone::NewZone {
            tenant: "acme",
            cf_zone_id: CF,
            name: "cli.example",
            cadence_seconds: 60,
            backfill_minutes: 0,
            endpoint: ZoneEndpoint::Simulator {
                url: sim.base_url(),
            },
            demo: false,
            fields: None,
        },
        &SecretString::from(TOKEN),
        Utc::now(),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = format!("http://{}", listener.local_addr().unwrap());
    let receiver = Receiver::new(
        env.app.pool.clone(),
        env.app.store.clone(),
        kms.clone(),
        ReceiverLimits::default(),
    );
    let serving = tokio::spawn(async move {
        let _ = rainlogs_receiver::serve(listener, receiver).await;
    });
    let dir: PathBuf = std::env::temp_dir().join(format!("rainlogs-logpush-cli-{}", env.id));
    std::fs::create_dir_all(&dir).unwrap();
    let env_file = dir.join("env");
    let body: String = env
        .src
        .pairs()
        .map(|(k, v)| format!("{k}='{}'\n", v.replace('\'', "")))
        .collect();
    std::fs::write(&env_file, body).unwrap();
    let mut outputs = String::new();

    // Limits outside Cloudflare's ranges: refused, naming the limit, nothing created.
    let bad = rainlogs(
        &env_file,
        &[
            "logpush",
            "create",
            "--zone",
            CF,
            "--dataset",
            "http_requests",
            "--public-url",
            &public,
            "--max-upload-records",
            "5",
        ],
    )
    .await;
    assert!(
        !bad.ok && bad.out.contains("max_upload_records"),
        "{}",
        bad.out
    );
    assert!(sim.logpush().jobs(CF).is_empty());

    let created = rainlogs(
        &env_file,
        &[
            "logpush",
            "create",
            "--zone",
            CF,
            "--dataset",
            "http_requests",
            "--public-url",
            &public,
            "--max-upload-records",
            "1000",
            "--max-upload-interval-seconds",
            "30",
        ],
    )
    .await;
    assert!(created.ok, "{}", created.out);
    assert!(
        created.out.contains("validation upload received"),
        "{}",
        created.out
    );
    assert!(
        created.out.contains("zone mode pull -> push"),
        "{}",
        created.out
    );
    outputs.push_str(&created.out);
    let jobs = sim.logpush().jobs(CF);
    assert_eq!(jobs.len(), 1);
    let job_id = jobs[0].id;
    let secret = jobs[0]
        .destination_conf
        .split("Bearer%20")
        .nth(1)
        .expect("the job carries the secret")
        .to_owned();
    assert!(secret.len() >= 64);

    let list = rainlogs(&env_file, &["logpush", "list"]).await;
    assert!(
        list.ok && list.out.contains(&format!("job {job_id}")),
        "{}",
        list.out
    );
    assert!(list.out.contains("enabled"), "{}", list.out);
    outputs.push_str(&list.out);

    // Healthy: two intervals delivered; status shows where the job completed.
    sim.logpush().advance(Duration::from_secs(60)).unwrap();
    sim.logpush().settled().await;
    let status = rainlogs(&env_file, &["logpush", "status", "--history"]).await;
    assert!(status.ok, "{}", status.out);
    let complete = (t0 + TimeDelta::seconds(60))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    assert!(
        status.out.contains(&format!("last complete {complete}")),
        "{}",
        status.out
    );
    outputs.push_str(&status.out);

    // A wrong secret: the job fails at the receiver (401); status says so and exits 1.
    sim.logpush()
        .faults()
        .add(PushFaultRule::job(job_id, PushFault::WrongSecret));
    sim.logpush().advance(Duration::from_secs(30)).unwrap();
    sim.logpush().settled().await;
    let failing = rainlogs(&env_file, &["logpush", "status", "--zone", CF]).await;
    assert!(!failing.ok, "{}", failing.out);
    assert!(
        failing.out.contains("FAILING") && failing.out.contains("401"),
        "{}",
        failing.out
    );
    outputs.push_str(&failing.out);

    let disabled = rainlogs(
        &env_file,
        &[
            "logpush",
            "disable",
            "--zone",
            CF,
            "--dataset",
            "http_requests",
        ],
    )
    .await;
    assert!(disabled.ok, "{}", disabled.out);
    assert!(!sim.logpush().jobs(CF)[0].enabled);
    outputs.push_str(&disabled.out);

    let deleted = rainlogs(
        &env_file,
        &[
            "logpush",
            "delete",
            "--zone",
            CF,
            "--dataset",
            "http_requests",
        ],
    )
    .await;
    assert!(deleted.ok, "{}", deleted.out);
    assert!(sim.logpush().jobs(CF).is_empty());
    outputs.push_str(&deleted.out);
    let none = rainlogs(&env_file, &["logpush", "list"]).await;
    assert!(none.out.contains("no Logpush jobs"), "{}", none.out);
    let all = rainlogs(&env_file, &["logpush", "list", "--all"]).await;
    assert!(all.out.contains("deleted"), "{}", all.out);
    outputs.push_str(&all.out);
    let missing = rainlogs(
        &env_file,
        &[
            "logpush",
            "delete",
            "--zone",
            CF,
            "--dataset",
            "http_requests",
        ],
    )
    .await;
    assert!(
        !missing.ok && missing.out.contains("no Logpush job"),
        "{}",
        missing.out
    );

    // A push-only zone is registered with its token checked at the Logpush jobs API.
    let sim_url = sim.base_url();
    let push_zone = rainlogs(
        &env_file,
        &[
            "zone",
            "add",
            "--tenant",
            "acme",
            "--zone-id",
            CF2,
            "--name",
            "push.example",
            "--token-env",
            "LOGPUSH_CLI_TOKEN",
            "--simulator",
            &sim_url,
            "--mode",
            "push",
        ],
    )
    .await;
    assert!(push_zone.ok, "{}", push_zone.out);
    assert!(push_zone.out.contains("mode push") && push_zone.out.contains("Logpush jobs API"));
    let zones = rainlogs(&env_file, &["zone", "list"]).await;
    let line = zones
        .out
        .lines()
        .find(|l| l.contains(CF2))
        .unwrap_or_default();
    assert!(line.contains(" push "), "{}", zones.out);

    assert!(
        !outputs.contains(&secret),
        "the destination's secret was printed or logged"
    );
    serving.abort();
    let _ = std::fs::remove_dir_all(&dir);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logpush_create_s3_landing_takes_the_write_key_from_a_variable_and_never_shows_it() {
    const MARKER: &str = "landing-writer-s3cret-0123456789";
    let mut env = TestEnv::new().await;
    env.src.set("RAINLOGS_MASTER_KEYS", MASTER);
    let keyring = MasterKeyring::parse(MASTER, None).expect("keyring");
    let kms: Arc<dyn Kms> = Arc::new(KmsService::new(env.app.pool.clone(), keyring, "test"));
    let sim = Simulator::start_local(SimConfig {
        tokens: vec![TOKEN.into()],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    tenant::add(&env.app.pool, "acme", 400).await.unwrap();
    let probe = rainlogs_fetch::LogpullProbe::new(
        rainlogs_fetch::logpull::LogpullConfig::default(),
        rainlogs_fetch::CloudflareApi::default(),
    );
    zone::add(
        &env.app.pool,
        kms.as_ref(),
        &probe,
        &zone::NewZone {
            tenant: "acme",
            cf_zone_id: CF,
            name: "cli.example",
            cadence_seconds: 60,
            backfill_minutes: 0,
            endpoint: ZoneEndpoint::Simulator {
                url: sim.base_url(),
            },
            demo: false,
            fields: None,
        },
        &SecretString::from(TOKEN),
        Utc::now(),
    )
    .await
    .unwrap();
    let dir: PathBuf = std::env::temp_dir().join(format!("rainlogs-landing-cli-{}", env.id));
    std::fs::create_dir_all(&dir).unwrap();
    let env_file = dir.join("env");
    let write_env = |src: &rainlogs_core::config::ConfigSource| {
        let body: String = src
            .pairs()
            .map(|(k, v)| format!("{k}='{}'\n", v.replace('\'', "")))
            .collect();
        std::fs::write(&env_file, body).unwrap();
    };
    let create = |key: &'static str| {
        vec![
            "logpush",
            "create",
            "--zone",
            CF,
            "--dataset",
            "http_requests",
            "--s3-landing",
            "--s3-key-id",
            key,
        ]
    };
    let mut outputs = String::new();
    env.src.set("RAINLOGS_LANDING_WRITER_SECRET", MARKER);

    // No landing bucket configured: refused, naming the variable.
    write_env(&env.src);
    let run = rainlogs(&env_file, &create("GKcloudflarewriter")).await;
    assert!(
        !run.ok && run.out.contains("RAINLOGS_LANDING_BUCKET"),
        "{}",
        run.out
    );
    outputs.push_str(&run.out);

    let bucket = env.app.store.bucket().to_owned();
    env.src.set("RAINLOGS_LANDING_BUCKET", bucket);
    write_env(&env.src);
    // Rainlogs' own key is not a write-only key.
    let own = env.src.get("RAINLOGS_S3_ACCESS_KEY_ID").unwrap().to_owned();
    let own: &'static str = Box::leak(own.into_boxed_str());
    let run = rainlogs(&env_file, &create(own)).await;
    assert!(
        !run.ok && run.out.contains("Rainlogs' own key"),
        "{}",
        run.out
    );
    outputs.push_str(&run.out);
    // A key Garage does not know: the validation write fails, Cloudflare refuses the job
    // (1002) and its error does not repeat the secret.
    let run = rainlogs(&env_file, &create("GKnotakeygarageknows")).await;
    assert!(!run.ok && run.out.contains("1002"), "{}", run.out);
    outputs.push_str(&run.out);
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM logpush_jobs")
        .fetch_one(&env.app.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 0);
    // The operator's view of rejected objects: none, then one (as `ingest.landing`
    // records it), in `logpush rejects` (exit 1) and in the zone's coverage.
    let run = rainlogs(&env_file, &["logpush", "rejects"]).await;
    assert!(
        run.ok && run.out.contains("no rejected landing objects"),
        "{}",
        run.out
    );
    let pool = &env.app.pool;
    let zone_id = zone::resolve(pool, CF).await.unwrap();
    // The refused create left its destination (disabled): a landing one.
    let dest = rainlogs_archive::push::find_destination(pool, zone_id, "http_requests")
        .await
        .unwrap()
        .expect("the destination of the refused create");
    let key = rainlogs_archive::landing::make_landing(pool, dest)
        .await
        .unwrap()
        + "20261207/bad.log.gz";
    rainlogs_archive::landing::record_reject(
        pool,
        &rainlogs_archive::landing::Reject {
            destination_id: dest,
            landing_key: key.clone(),
            rejected_key: rainlogs_archive::landing::rejected_key(&key),
            size_bytes: 16,
            landed_at: Some(Utc::now()),
            code: "landing.not_gzip".into(),
            reason: "the body is not valid gzip".into(),
            rejected_at: Utc::now(),
        },
    )
    .await
    .unwrap();
    zone::set_mode(pool, CF, zone::ZoneMode::Push, "test")
        .await
        .unwrap();
    let run = rainlogs(&env_file, &["logpush", "rejects", "--zone", CF]).await;
    assert!(!run.ok, "exit 1 while a rejected object waits: {}", run.out);
    assert!(
        run.out.contains(&format!("rejected/{key}")) && run.out.contains("landing.not_gzip"),
        "{}",
        run.out
    );
    let run = rainlogs(&env_file, &["zone", "coverage", CF]).await;
    assert!(
        run.ok && run.out.contains("REJECTED 1 landing objects"),
        "{}",
        run.out
    );
    assert!(
        !outputs.contains(MARKER),
        "the write key's secret was shown"
    );
    assert!(!outputs.contains("ecret-0123456789"));
    std::fs::remove_dir_all(&dir).ok();
    env.teardown().await;
}
