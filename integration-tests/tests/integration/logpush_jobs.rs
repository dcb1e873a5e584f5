//! Logpush jobs end to end, against real Postgres and Garage, the real receiver over
//! HTTP and the simulator as Cloudflare: `logpush::create` makes the destination and the
//! job (Cloudflare's validation upload reaches the receiver first), the simulator pushes
//! the generator's records interval by interval, the batches go through encrypt and
//! upload, and restore gives back exactly the generator's records of those intervals,
//! each once — with duplicate deliveries and connections cut mid-body. A wrong secret is
//! 401 at the receiver, recorded as the job's `last_error` by `status`; the simulator
//! gives up after its retry bound and reports what it dropped; every status change is
//! in the job's history. Bad input is refused before anything reaches Cloudflare.
//!
//! The simulator's push clock is manual: tests move it and wait until what became due
//! is delivered or dropped, never on wall time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rainlogs_archive::catalog::tenant;
use rainlogs_archive::catalog::zone::{self, NewZone, ZoneMode};
use rainlogs_archive::endpoint::{CloudflareApi, ZoneEndpoint};
use rainlogs_archive::logpush::{self, LogpushError, NewLogpushJob, UploadLimits};
use rainlogs_archive::pipeline::WindowTask;
use rainlogs_archive::verify::{Verifier, ZoneScope};
use rainlogs_core::task::kinds;
use rainlogs_integration_tests::TestEnv;
use rainlogs_kms::{KmsService, MasterKeyring};
use rainlogs_logpull_sim::{
    Field, Generator, PushClock, PushConfig, PushFault, PushFaultRule, Selection, SimConfig,
    Simulator, TimestampFormat, ZoneVolume,
};
use rainlogs_receiver::{Receiver, ReceiverLimits};
use rainlogs_sealed::kms::Kms;
use secrecy::SecretString;
use uuid::Uuid;

use crate::push::{serve, Server};
use crate::push_archive::{drive_stages, restore_zone};

const MASTER: &str = "1:5858585858585858585858585858585858585858585858585858585858585858";
const TOKEN: &str = "logpush-jobs-zone-token";
const CF: &str = "feedfacefeedfacefeedfacefeedface";
const SEED: u64 = 1212;
const VOLUME: ZoneVolume = ZoneVolume {
    records_per_minute: 3000,
    empty_ratio: 0.0,
    late_ratio: 0.0,
    late_max_seconds: 0,
};

/// A zone on the simulator with its token in the kms, and the receiver serving.
struct Stack {
    env: TestEnv,
    kms: Arc<dyn Kms>,
    sim: Simulator,
    receiver: Server,
    zone: Uuid,
    /// The push clock's start: the first interval begins here.
    t0: DateTime<Utc>,
}

impl Stack {
    async fn new() -> Self {
        let env = TestEnv::new().await;
        let keyring = MasterKeyring::parse(MASTER, None).expect("keyring");
        let kms: Arc<dyn Kms> = Arc::new(KmsService::new(env.app.pool.clone(), keyring, "test"));
        let t0 = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap() - TimeDelta::hours(1);
        let sim = Simulator::start_local(SimConfig {
            seed: SEED,
            tokens: vec![TOKEN.into()],
            default_volume: VOLUME,
            push: PushConfig {
                clock: PushClock::Manual { start: t0 },
                retry_base: Duration::from_millis(20),
                retry_cap: Duration::from_millis(100),
                give_up_after: Duration::from_millis(600),
                ..PushConfig::default()
            },
            ..SimConfig::default()
        })
        .await
        .expect("simulator starts");
        tenant::add(&env.app.pool, "acme", 400).await.unwrap();
        let probe = rainlogs_fetch::LogpullProbe::new(
            rainlogs_fetch::logpull::LogpullConfig::default(),
            CloudflareApi::default(),
        );
        let new = NewZone {
            tenant: "acme",
            cf_zone_id: CF,
            name: "push.example",
            cadence_seconds: 60,
            backfill_minutes: 0,
            endpoint: ZoneEndpoint::Simulator {
                url: sim.base_url(),
            },
            demo: false,
            fields: None,
        };
        let zone = zone::add(
            &env.app.pool,
            kms.as_ref(),
            &probe,
            &new,
            &SecretString::from(TOKEN),
            Utc::now(),
        )
        .await
        .expect("zone added");
        let receiver = serve(Receiver::new(
            env.app.pool.clone(),
            env.app.store.clone(),
            kms.clone(),
            ReceiverLimits::default(),
        ))
        .await;
        Self {
            env,
            kms,
            sim,
            receiver,
            zone,
            t0,
        }
    }

    fn job<'a>(&'a self, limits: UploadLimits) -> NewLogpushJob<'a> {
        NewLogpushJob {
            zone: CF,
            dataset: "http_requests",
            fields: &[],
            public_url: &self.receiver.base,
            limits,
            name: None,
            hybrid: false,
        }
    }

    async fn create(&self, limits: UploadLimits) -> Result<logpush::Created, LogpushError> {
        logpush::create(
            &self.env.app.pool,
            self.kms.as_ref(),
            &CloudflareApi::default(),
            &self.job(limits),
            "test",
        )
        .await
    }

    async fn status(&self) -> logpush::Polled {
        let mut polled = logpush::status(
            &self.env.app.pool,
            self.kms.as_ref(),
            &CloudflareApi::default(),
            Some(CF),
            None,
        )
        .await
        .unwrap();
        assert_eq!(polled.len(), 1);
        polled.pop().unwrap().1.expect("polled")
    }

    /// Moves the push clock and waits until everything due is delivered or dropped.
    async fn push_for(&self, seconds: i64) {
        self.sim
            .logpush()
            .advance(Duration::from_secs(seconds as u64))
            .unwrap();
        tokio::time::timeout(Duration::from_secs(120), self.sim.logpush().settled())
            .await
            .expect("the simulator settles");
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.env.app.pool)
            .await
            .unwrap()
    }

    /// Encrypt and upload every staged batch window, as the dispatcher would.
    async fn archive_batches(&self) {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM windows WHERE zone_id = $1 AND state = 'staged' ORDER BY id",
        )
        .bind(self.zone)
        .fetch_all(&self.env.app.pool)
        .await
        .unwrap();
        for window_id in ids {
            let spec = WindowTask { window_id }.spec(kinds::ENCRYPT_WINDOW);
            drive_stages(&self.env.app.pool, &self.env.app.store, &self.kms, spec).await;
        }
    }
}

/// The generator's records for `[from, to)` with `fields` (unixnano), sorted.
fn generated(fields: &[String], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<String> {
    let sel = Selection {
        start_ns: from.timestamp_nanos_opt().unwrap(),
        end_ns: to.timestamp_nanos_opt().unwrap(),
        fields: fields.iter().map(|f| Field::parse(f).unwrap()).collect(),
        timestamps: TimestampFormat::UnixNano,
        count: None,
        sample: None,
        by_received: false,
    };
    let body = Generator::new(SEED).window_body(CF, VOLUME, &sel);
    sorted(
        String::from_utf8(body)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect(),
    )
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn limits() -> UploadLimits {
    UploadLimits {
        max_upload_bytes: None,
        max_upload_records: Some(1000),
        max_upload_interval_seconds: Some(30),
    }
}

#[tokio::test]
async fn a_simulated_job_pushes_into_the_archive_and_restore_gives_each_record_once() {
    let s = Stack::new().await;
    let created = s.create(limits()).await.expect("job created");
    let job = &created.job;
    assert!(
        job.validated_at.is_some(),
        "the validation upload reached the receiver"
    );
    assert_eq!(created.mode_change, Some((ZoneMode::Pull, ZoneMode::Push)));
    assert!(!created.renewed_destination);
    assert!(job.enabled && job.error_message.is_none());
    // No --fields: the job pushes every field the dataset offers (a field not pushed
    // is lost for good), as Cloudflare's field list names them.
    let mut offered: Vec<String> = Field::ALL.iter().map(|f| f.name().to_owned()).collect();
    offered.sort();
    assert_eq!(job.fields, offered);
    let at_cloudflare = s.sim.logpush().jobs(CF)[0].output_options.clone();
    assert_eq!(
        at_cloudflare.and_then(|o| o.field_names).map(|f| f.len()),
        Some(Field::ALL.len())
    );
    assert_eq!(
        s.count("SELECT count(*) FROM push_batches").await,
        0,
        "the validation upload is not archived"
    );
    let remote = s.sim.logpush().jobs(CF);
    assert_eq!(remote.len(), 1);
    assert_eq!(remote[0].id as i64, job.cf_job_id);
    assert_eq!(remote[0].max_upload_records, Some(1000));

    // A re-delivered batch and two connections cut mid-body.
    let id = job.cf_job_id as u64;
    let faults = s.sim.logpush().faults();
    faults.add(PushFaultRule::job(id, PushFault::Duplicate).times(1));
    faults.add(PushFaultRule::job(id, PushFault::ResetMidBody { after_bytes: 8192 }).times(2));

    // Four intervals of 30 s at 3000 records a minute: 1500 records, two batches each.
    s.push_for(120).await;
    let stats = s.sim.logpush().stats()[&id].clone();
    assert_eq!(
        (stats.batches_delivered, stats.records_delivered),
        (8, 6000)
    );
    assert_eq!((stats.duplicates_sent, stats.failed_attempts), (1, 2));
    assert_eq!(stats.batches_dropped, 0);
    assert_eq!(
        s.count("SELECT count(*) FROM push_batches").await,
        8,
        "the duplicate is stored once, the cut bodies not at all"
    );

    s.archive_batches().await;
    assert_eq!(
        s.count("SELECT count(*) FROM windows WHERE batch_id IS NOT NULL AND state = 'archived'")
            .await,
        8
    );
    let (restored, warnings) = restore_zone(
        &s.env.app.pool,
        &s.env.app.store,
        &s.kms,
        s.zone,
        (s.t0 - TimeDelta::hours(1), s.t0 + TimeDelta::hours(1)),
        "http_requests",
    )
    .await;
    assert_eq!(warnings, Vec::<String>::new());
    let want = generated(&job.fields, s.t0, s.t0 + TimeDelta::seconds(120));
    assert_eq!(want.len(), 6000);
    assert_eq!(
        sorted(restored),
        want,
        "exactly the generator's records, each once"
    );

    // Status: the job completed up to the end of the fourth interval.
    let polled = s.status().await;
    assert!(polled.changed);
    assert_eq!(
        polled.job.last_complete,
        Some(s.t0 + TimeDelta::seconds(120))
    );
    assert!(polled.job.last_batch_at.is_some());
    let again = s.status().await;
    assert!(!again.changed, "an unchanged job records nothing new");
    assert_eq!(
        logpush::history(&s.env.app.pool, job.id)
            .await
            .unwrap()
            .len(),
        2
    );
    s.env.teardown().await;
}

#[tokio::test]
async fn a_wrong_secret_becomes_the_jobs_last_error_and_the_dropped_records_are_reported() {
    let s = Stack::new().await;
    let created = s.create(limits()).await.expect("job created");
    let id = created.job.cf_job_id as u64;
    s.sim
        .logpush()
        .faults()
        .add(PushFaultRule::job(id, PushFault::WrongSecret));
    s.push_for(30).await;

    // Every attempt was refused (401) until the simulator gave up on both batches.
    let stats = s.sim.logpush().stats()[&id].clone();
    assert_eq!((stats.batches_dropped, stats.records_dropped), (2, 1500));
    assert!(stats.failed_attempts >= 4, "{stats:?}");
    assert!(
        stats.dropped.iter().all(|b| b.error.contains("401")),
        "{stats:?}"
    );
    assert_eq!(s.count("SELECT count(*) FROM push_batches").await, 0);

    let failing = s.status().await;
    assert!(failing.changed);
    let message = failing
        .job
        .error_message
        .clone()
        .expect("last error recorded");
    assert!(message.contains("401"), "{message}");
    assert!(failing.job.last_error.is_some());
    assert_eq!(failing.job.last_complete, None);

    // Cloudflare's report is an explicit, dated gap: in coverage and in verify.
    let (from, to) = (s.t0 - TimeDelta::days(1), Utc::now() + TimeDelta::days(1));
    let gaps = logpush::delivery_gaps(&s.env.app.pool, s.zone, from, to)
        .await
        .unwrap();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(
        (gaps[0].dataset.as_str(), gaps[0].to),
        ("http_requests", None)
    );
    assert!(
        gaps[0]
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("401")),
        "{gaps:?}"
    );
    let coverage = rainlogs_archive::push::coverage(&s.env.app.pool, s.zone, from, to, Utc::now())
        .await
        .unwrap();
    assert_eq!(coverage.failed, gaps);
    let verifier = Verifier {
        pool: s.env.app.pool.clone(),
        store: s.env.app.store.clone(),
        kms: None,
        concurrency: 2,
    };
    let mut findings = Vec::new();
    verifier
        .verify_zone(
            ZoneScope {
                zone_id: s.zone,
                from,
                to,
            },
            false,
            &mut |f| {
                findings.push(f);
                Ok(())
            },
        )
        .await
        .unwrap();
    assert_eq!(
        findings.iter().map(|f| f.kind()).collect::<Vec<_>>(),
        ["push_delivery_failed"],
        "{findings:?}"
    );

    // And on the metrics endpoint: the job failing, one failed period.
    let label = format!("destination=\"{}\"", created.job.destination_id);
    let metric =
        |body: &str, name: &str| rainlogs_integration_tests::metric_value(body, name, &label);
    let metrics = rainlogs_integration_tests::archive_metrics(&s.env).await;
    assert_eq!(
        metric(&metrics, "rainlogs_push_job_failing"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "rainlogs_push_failed_periods"), Some(1.0));

    // The scheduler's poll claims only jobs due: polled just now, nothing is due within
    // an hour; with no interval the job is polled again (and nothing changed).
    let (pool, kms) = (&s.env.app.pool, &s.kms);
    let poll = |every| async move {
        logpush::poll_due(pool, kms.as_ref(), &CloudflareApi::default(), every, 50)
            .await
            .unwrap()
    };
    assert!(poll(Duration::from_secs(3600)).await.is_empty());
    let polled = poll(Duration::ZERO).await;
    assert_eq!(polled.len(), 1);
    assert_eq!(polled[0].0, created.job.id);
    assert!(!polled[0].1.as_ref().expect("polled").changed);

    // The fault goes away: the next interval arrives and the error clears.
    s.sim.logpush().faults().clear();
    s.push_for(30).await;
    let healed = s.status().await;
    assert_eq!(healed.job.error_message, None);
    assert_eq!(
        healed.job.last_complete,
        Some(s.t0 + TimeDelta::seconds(60))
    );
    let history = logpush::history(&s.env.app.pool, created.job.id)
        .await
        .unwrap();
    let errors: Vec<Option<&str>> = history.iter().map(|c| c.error_message.as_deref()).collect();
    assert_eq!(errors.len(), 3, "created, failing, healed: {history:?}");
    assert!(errors[1].is_some_and(|m| m.contains("401")) && errors[2].is_none());
    assert_eq!(s.count("SELECT count(*) FROM push_batches").await, 2);
    // The gap is closed by the push that completed again.
    let gaps = logpush::delivery_gaps(&s.env.app.pool, s.zone, from, to)
        .await
        .unwrap();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(gaps[0].to.is_some(), "{gaps:?}");
    let metrics = rainlogs_integration_tests::archive_metrics(&s.env).await;
    assert_eq!(
        metric(&metrics, "rainlogs_push_job_failing"),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "rainlogs_push_failed_periods"), Some(1.0));
    s.env.teardown().await;
}

#[tokio::test]
async fn bad_requests_are_refused_and_a_deleted_job_can_be_created_again() {
    let s = Stack::new().await;
    let pool = &s.env.app.pool;
    // Refused before anything reaches Cloudflare: limits, fields, URLs.
    let bad_limits = UploadLimits {
        max_upload_records: Some(10),
        ..limits()
    };
    assert_eq!(
        rainlogs_core::error::Classify::code(&s.create(bad_limits).await.unwrap_err()),
        "logpush.invalid_limit"
    );
    let no_fields = NewLogpushJob {
        dataset: "firewall_events",
        ..s.job(limits())
    };
    assert!(matches!(
        logpush::create(
            pool,
            s.kms.as_ref(),
            &CloudflareApi::default(),
            &no_fields,
            "t"
        )
        .await,
        Err(LogpushError::Api { error, .. }) if error.to_string().contains("firewall_events")
    ));
    assert_eq!(
        s.count("SELECT count(*) FROM push_destinations").await,
        0,
        "nothing is made when the dataset's fields cannot be read"
    );
    let with_query = format!("{}/?x=1", s.receiver.base);
    let bad_url = NewLogpushJob {
        public_url: &with_query,
        ..s.job(limits())
    };
    assert!(matches!(
        logpush::create(
            pool,
            s.kms.as_ref(),
            &CloudflareApi::default(),
            &bad_url,
            "t"
        )
        .await,
        Err(LogpushError::InvalidPublicUrl { .. })
    ));
    assert!(s.sim.logpush().jobs(CF).is_empty());
    assert_eq!(s.count("SELECT count(*) FROM push_destinations").await, 0);

    // A public URL where no receiver listens: Cloudflare's validation fails (1002), no
    // job exists, and the destination whose secret went out is disabled.
    let nowhere = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let unreachable = NewLogpushJob {
        public_url: &nowhere,
        ..s.job(limits())
    };
    let e = logpush::create(
        pool,
        s.kms.as_ref(),
        &CloudflareApi::default(),
        &unreachable,
        "t",
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("1002"), "{e}");
    assert!(s.sim.logpush().jobs(CF).is_empty());
    assert_eq!(
        s.count("SELECT count(*) FROM push_destinations WHERE disabled_at IS NOT NULL")
            .await,
        1
    );
    assert_eq!(s.count("SELECT count(*) FROM logpush_jobs").await, 0);

    // Now for real; a second job for the same dataset is refused.
    let first = s.create(limits()).await.expect("job created");
    assert!(
        first.renewed_destination,
        "the failed attempt's destination is reused"
    );
    assert!(matches!(
        s.create(limits()).await,
        Err(LogpushError::JobExists { .. })
    ));

    // Disable: off at Cloudflare, the destination refuses pushes.
    let disabled = logpush::disable(
        pool,
        s.kms.as_ref(),
        &CloudflareApi::default(),
        CF,
        "http_requests",
        "t",
    )
    .await
    .unwrap();
    assert!(!disabled.enabled && disabled.disabled_at.is_some());
    assert!(!s.sim.logpush().jobs(CF)[0].enabled);
    // Delete: gone at Cloudflare, kept (deleted) here with its history.
    let deleted = logpush::delete(
        pool,
        s.kms.as_ref(),
        &CloudflareApi::default(),
        CF,
        "http_requests",
        "t",
    )
    .await
    .unwrap();
    assert!(deleted.deleted_at.is_some());
    assert!(s.sim.logpush().jobs(CF).is_empty());
    assert!(logpush::list(pool, Some(CF), None, false)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        logpush::list(pool, Some(CF), None, true)
            .await
            .unwrap()
            .len(),
        1
    );

    // And created again: same destination, new secret, validated again.
    let second = s.create(limits()).await.expect("job created again");
    assert!(second.renewed_destination);
    assert_eq!(second.job.destination_id, first.job.destination_id);
    assert!(second.job.validated_at.is_some());
    assert_ne!(second.job.cf_job_id, first.job.cf_job_id);
    assert_eq!(
        s.count("SELECT count(*) FROM audit_events WHERE operation LIKE 'logpush.%'")
            .await,
        5,
        "create (failed), create, disable, delete, create"
    );
    s.env.teardown().await;
}

#[tokio::test]
async fn a_push_zone_is_registered_with_its_token_checked_at_the_jobs_api_not_logpull() {
    // A zone whose Logpull has nothing to give (retention off stands for a plan without
    // Logpull): `zone add` in pull mode refuses it; in push mode the token is checked at
    // the Logpush jobs API instead, and the zone is never planned for Logpull.
    let env = TestEnv::new().await;
    let pool = &env.app.pool;
    let keyring = MasterKeyring::parse(MASTER, None).expect("keyring");
    let kms = KmsService::new(pool.clone(), keyring, "test");
    let sim = Simulator::start_local(SimConfig {
        tokens: vec![TOKEN.into()],
        retention_default: false,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    tenant::add(pool, "acme", 400).await.unwrap();
    let new = NewZone {
        tenant: "acme",
        cf_zone_id: CF,
        name: "free-plan.example",
        cadence_seconds: 60,
        backfill_minutes: 30,
        endpoint: ZoneEndpoint::Simulator {
            url: sim.base_url(),
        },
        demo: false,
        fields: None,
    };
    let logpull = rainlogs_fetch::LogpullProbe::new(
        rainlogs_fetch::logpull::LogpullConfig::default(),
        CloudflareApi::default(),
    );
    let token = SecretString::from(TOKEN);
    assert!(matches!(
        zone::add(pool, &kms, &logpull, &new, &token, Utc::now()).await,
        Err(zone::ZoneError::RetentionOff { .. })
    ));
    let jobs = logpush::JobsProbe::new(CloudflareApi::default());
    let wrong = SecretString::from("not-the-token");
    assert!(matches!(
        zone::add_in_mode(pool, &kms, &jobs, &new, &wrong, ZoneMode::Push, Utc::now()).await,
        Err(zone::ZoneError::TokenRefused { .. })
    ));
    let zones: i64 = sqlx::query_scalar("SELECT count(*) FROM zones")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(zones, 0, "a refused token stores nothing");

    let id = zone::add_in_mode(pool, &kms, &jobs, &new, &token, ZoneMode::Push, Utc::now())
        .await
        .expect("push zone added");
    assert_eq!(zone::mode(pool, CF).await.unwrap(), ZoneMode::Push);
    let planned = rainlogs_archive::ledger::plan_zone(
        pool,
        id,
        Utc::now(),
        &rainlogs_archive::ledger::PlanPolicy::same_clock(),
    )
    .await
    .unwrap();
    assert_eq!(planned, 0, "nothing is planned for Logpull");
    // Replacing its token probes at the jobs API too.
    let report = zone::set_token(pool, &kms, &jobs, CF, &token, "test")
        .await
        .expect("token replaced");
    assert_eq!(report.zone, id);
    env.teardown().await;
}

#[tokio::test]
async fn the_simulator_writes_batches_as_gzip_objects_to_an_s3_destination_in_garage() {
    // The simulator's S3-compatible destination against the stack's Garage: the
    // validation object, then one gzip NDJSON object per batch under `{DATE}`, named as
    // Cloudflare names them; a duplicate delivery is a second object with the same
    // content; a wrong secret and a cut body are retried; the objects hold exactly the
    // generator's records.
    use std::io::Read;

    use rainlogs_core::config::S3Config;
    use rainlogs_logpull_sim::logpush::JobBody;
    use secrecy::ExposeSecret;

    let env = TestEnv::new().await;
    let s3 = S3Config::from_source(&env.src).unwrap();
    let t0 = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap() - TimeDelta::hours(1);
    let sim = Simulator::start_local(SimConfig {
        seed: SEED,
        default_volume: VOLUME,
        push: PushConfig {
            clock: PushClock::Manual { start: t0 },
            retry_base: Duration::from_millis(20),
            retry_cap: Duration::from_millis(100),
            give_up_after: Duration::from_secs(5),
            ..PushConfig::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let conf = |secret: &str| {
        reqwest::Url::parse_with_params(
            &format!("s3://{}/{}landing/{{DATE}}", s3.bucket, s3.key_prefix),
            [
                ("region", s3.region.as_str()),
                ("access-key-id", s3.access_key_id.as_str()),
                ("secret-access-key", secret),
                (
                    "endpoint",
                    s3.endpoint.as_deref().expect("the stack's Garage"),
                ),
            ],
        )
        .unwrap()
        .to_string()
    };
    let job = |conf: String| JobBody {
        dataset: Some("http_requests".into()),
        destination_conf: Some(conf),
        enabled: Some(true),
        max_upload_records: Some(1000),
        max_upload_interval_seconds: Some(30),
        ..JobBody::default()
    };
    // Wrong credentials: the validation object cannot be written, no job (1002).
    let refused = sim
        .logpush()
        .create_job(CF, job(conf("not-the-secret-key")))
        .await
        .unwrap_err();
    assert_eq!(refused.code, 1002, "{refused:?}");
    let created = sim
        .logpush()
        .create_job(CF, job(conf(s3.secret_access_key.expose_secret())))
        .await
        .expect("job created");
    let id = created.id;
    let faults = sim.logpush().faults();
    faults.add(PushFaultRule::job(id, PushFault::Duplicate).times(1));
    faults.add(PushFaultRule::job(id, PushFault::WrongSecret).times(1));
    faults.add(PushFaultRule::job(id, PushFault::ResetMidBody { after_bytes: 4096 }).times(1));
    sim.logpush().advance(Duration::from_secs(60)).unwrap();
    tokio::time::timeout(Duration::from_secs(120), sim.logpush().settled())
        .await
        .expect("settles");
    let stats = sim.logpush().stats()[&id].clone();
    assert_eq!(
        (
            stats.batches_delivered,
            stats.duplicates_sent,
            stats.failed_attempts
        ),
        (4, 1, 2),
        "{stats:?}"
    );
    assert_eq!(stats.batches_dropped, 0);

    let objects = env.app.store.list_all("landing/").await.unwrap();
    let day = t0.format("%Y%m%d").to_string();
    let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys.len(),
        6,
        "validation, four batches, one duplicate: {keys:?}"
    );
    let mut contents = Vec::new();
    for key in &keys {
        let gz = env.app.store.get(key).await.unwrap();
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut plain)
            .expect("a gzip object");
        if key.ends_with("/test.txt.gz") {
            assert_eq!(plain, br#"{"content":"tests"}"#);
            continue;
        }
        let name = key
            .strip_prefix(&format!("landing/{day}/"))
            .expect("{DATE} in the key");
        assert!(
            name.ends_with(".log.gz") && name.split('_').count() == 3,
            "{name}"
        );
        contents.push(plain);
    }
    contents.sort();
    contents.dedup();
    assert_eq!(
        contents.len(),
        4,
        "the duplicate object holds the same batch"
    );
    let mut lines: Vec<String> = contents
        .iter()
        .flat_map(|c| {
            String::from_utf8(c.clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    let fields: Vec<String> = rainlogs_logpull_sim::DEFAULT_FIELDS
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    let want = generated(&fields, t0, t0 + TimeDelta::seconds(60));
    assert_eq!(lines, want, "exactly the generator's records");

    // A batch whose gzip passes one part goes up as a multipart upload, whole.
    faults.add(PushFaultRule::job(id, PushFault::HugeBatch { bytes: 60_000_000 }).times(1));
    sim.logpush().advance(Duration::from_secs(30)).unwrap();
    tokio::time::timeout(Duration::from_secs(300), sim.logpush().settled())
        .await
        .expect("settles");
    let after = sim.logpush().stats()[&id].clone();
    assert_eq!(
        (after.batches_delivered, after.batches_dropped),
        (5, 0),
        "{after:?}"
    );
    let big = env
        .app
        .store
        .list_all("landing/")
        .await
        .unwrap()
        .into_iter()
        .max_by_key(|o| o.size)
        .unwrap();
    assert!(
        big.size > rainlogs_logpull_sim::s3_destination::PART_BYTES as u64,
        "{big:?}"
    );
    let gz = env.app.store.get(&big.key).await.unwrap();
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut plain)
        .expect("a whole gzip object");
    assert_eq!(
        plain.len() as u64,
        after.bytes_delivered - stats.bytes_delivered
    );
    env.teardown().await;
}
