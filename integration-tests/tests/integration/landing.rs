//! Landing ingest end to end, against real Postgres and Garage with the simulator as
//! Cloudflare writing to an S3-compatible destination: `logpush::create_s3` builds the
//! `s3://…` destination into the landing bucket, the simulator writes its validation
//! object and gzip NDJSON batches (one delivered twice), `ingest.landing` puts each
//! object through the receiver's ingest core and deletes it, the batches go through
//! encrypt and upload, and restore gives back exactly the generator's records once. A
//! batch object put back after its commit (a crash before the delete) is a duplicate; a
//! bad object and a gzip bomb are moved to `rejected/` and recorded; Postgres or Garage
//! down leaves the objects where they are. The landing residence time (LastModified →
//! deleted) is printed.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rainlogs_archive::catalog::tenant;
use rainlogs_archive::catalog::zone::{self, NewZone};
use rainlogs_archive::endpoint::{CloudflareApi, ZoneEndpoint};
use rainlogs_archive::logpush::{self, NewLogpushJob, S3Landing, UploadLimits};
use rainlogs_archive::pipeline::WindowTask;
use rainlogs_core::config::{S3Config, LANDING_BUCKET};
use rainlogs_core::function::Function;
use rainlogs_core::storage::ObjectStore;
use rainlogs_core::task::kinds;
use rainlogs_core::{TaskEnvelope, TaskError};
use rainlogs_integration_tests::{base_source, TestEnv};
use rainlogs_kms::{KmsService, MasterKeyring};
use rainlogs_logpull_sim::{
    Field, Generator, PushClock, PushConfig, PushFault, PushFaultRule, Selection, SimConfig,
    Simulator, TimestampFormat, ZoneVolume,
};
use rainlogs_receiver::landing::{Landing, LandingFunction, LandingReport, LandingTask};
use rainlogs_receiver::ReceiverLimits;
use rainlogs_sealed::kms::Kms;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::push_archive::{drive_stages, restore_zone};

const MASTER: &str = "1:6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a";
const TOKEN: &str = "landing-zone-token";
const CF: &str = "1a2d1a2d1a2d1a2d1a2d1a2d1a2d1a2d";
const SEED: u64 = 1616;
const VOLUME: ZoneVolume = ZoneVolume {
    records_per_minute: 3000,
    empty_ratio: 0.0,
    late_ratio: 0.0,
    late_max_seconds: 0,
};

struct Stack {
    env: TestEnv,
    kms: Arc<dyn Kms>,
    sim: Simulator,
    landing: Landing,
    zone: Uuid,
    t0: DateTime<Utc>,
}

impl Stack {
    async fn new() -> Self {
        // The dev stack's landing bucket, under this test's prefix; Cloudflare's side
        // (the simulator) writes with the stack's write-only key, as in production.
        let bucket = dev_landing().await.bucket;
        let env = TestEnv::with_overrides(&[(LANDING_BUCKET, bucket)]).await;
        let landing = env.app.landing.clone().expect("landing configured");
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
                give_up_after: Duration::from_secs(5),
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
            name: "landing.example",
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
        Self {
            env,
            kms,
            sim,
            landing,
            zone,
            t0,
        }
    }

    /// The landing bucket as Cloudflare is told about it: with the stack's write-only
    /// key (`infra/local/stack.sh` grants it write and nothing else on that bucket).
    async fn s3_landing(&self) -> S3Landing {
        let s3 = S3Config::from_source(&self.env.src).unwrap();
        let dev = dev_landing().await;
        S3Landing {
            bucket: self.landing.store.bucket().to_owned(),
            key_prefix: self.landing.store.prefix().to_owned(),
            region: s3.region.clone(),
            endpoint: s3.endpoint.clone().expect("the stack's Garage"),
            writer_key_id: dev.writer_key_id,
            writer_secret: dev.writer_secret,
        }
    }

    async fn create(&self) -> logpush::Created {
        logpush::create_s3(
            &self.env.app.pool,
            self.kms.as_ref(),
            &CloudflareApi::default(),
            &NewLogpushJob {
                zone: CF,
                dataset: "http_requests",
                fields: &[],
                public_url: "",
                limits: UploadLimits {
                    max_upload_bytes: None,
                    max_upload_records: Some(1000),
                    max_upload_interval_seconds: Some(30),
                },
                name: None,
                hybrid: false,
            },
            &self.s3_landing().await,
            "test",
        )
        .await
        .expect("job created")
    }

    async fn push_for(&self, seconds: u64) {
        self.sim
            .logpush()
            .advance(Duration::from_secs(seconds))
            .unwrap();
        tokio::time::timeout(Duration::from_secs(120), self.sim.logpush().settled())
            .await
            .expect("the simulator settles");
    }

    fn function(&self, pool: sqlx::PgPool, landing: Landing) -> LandingFunction {
        LandingFunction::new(pool, self.env.app.store.clone(), self.kms.clone(), landing)
    }

    /// One `ingest.landing` task for `destination`, as the dispatcher runs it.
    async fn ingest_with(
        &self,
        f: &LandingFunction,
        destination: Uuid,
    ) -> Result<LandingReport, TaskError> {
        let spec = LandingTask { destination }.spec();
        assert_eq!(spec.kind, kinds::INGEST_LANDING);
        let out = f.handle(TaskEnvelope::new(spec, Utc::now())).await?;
        assert!(out.next.is_empty());
        Ok(serde_json::from_value(out.result).unwrap())
    }

    async fn ingest(&self, destination: Uuid) -> LandingReport {
        let f = self.function(self.env.app.pool.clone(), self.landing.clone());
        self.ingest_with(&f, destination)
            .await
            .expect("ingest succeeds")
    }

    async fn landing_keys(&self, prefix: &str) -> Vec<String> {
        self.landing
            .store
            .list_all(prefix)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect()
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.env.app.pool)
            .await
            .unwrap()
    }

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

/// The dev stack's landing bucket and the write-only key it grants Cloudflare's side
/// (`infra/local/stack.sh up` makes both and writes them to the env file).
struct DevLanding {
    bucket: String,
    writer_key_id: String,
    writer_secret: SecretString,
}

async fn dev_landing() -> DevLanding {
    let src = base_source().await;
    let var = |name: &str| {
        src.get(name).map(str::to_owned).unwrap_or_else(|| {
            panic!("{name} is not set: the landing tests need the dev stack's landing bucket and write-only key (`bash infra/local/stack.sh up` writes them to the env file)")
        })
    };
    DevLanding {
        bucket: var("RAINLOGS_DEV_LANDING_BUCKET"),
        writer_key_id: var("RAINLOGS_DEV_LANDING_WRITER_KEY_ID"),
        writer_secret: SecretString::from(var("RAINLOGS_DEV_LANDING_WRITER_SECRET")),
    }
}

/// The generator's records for `[from, to)` with the default job fields — every field
/// the dataset offers, in the order Cloudflare's field list gives them — sorted.
fn generated(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<String> {
    let mut offered: Vec<String> = Field::ALL.iter().map(|f| f.name().to_owned()).collect();
    offered.sort();
    let fields: Vec<Field> = logpush::job_fields("http_requests", &offered)
        .unwrap()
        .iter()
        .map(|f| Field::parse(f).unwrap())
        .collect();
    let sel = Selection {
        start_ns: from.timestamp_nanos_opt().unwrap(),
        end_ns: to.timestamp_nanos_opt().unwrap(),
        fields,
        timestamps: TimestampFormat::UnixNano,
        count: None,
        sample: None,
        by_received: false,
    };
    let body = Generator::new(SEED).window_body(CF, VOLUME, &sel);
    let mut lines: Vec<String> = String::from_utf8(body)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn landing_objects_are_archived_once_deleted_and_restored_exactly() {
    let s = Stack::new().await;
    let created = s.create().await;
    let dest = created.job.destination_id;
    let prefix = rainlogs_archive::landing::prefix(dest);
    assert_eq!(
        created.job.public_url,
        format!(
            "s3://{}/{}{prefix}{{DATE}}",
            s.landing.store.bucket(),
            s.landing.store.prefix()
        ),
        "the destination is kept without its key and secret"
    );
    let secret = S3Config::from_source(&s.env.src).unwrap().secret_access_key;
    let stored: String = sqlx::query_scalar("SELECT public_url FROM logpush_jobs")
        .fetch_one(&s.env.app.pool)
        .await
        .unwrap();
    assert!(!stored.contains(secret.expose_secret()));
    let validation = s.landing_keys(&prefix).await;
    assert_eq!(validation.len(), 1, "{validation:?}");
    assert!(validation[0].ends_with("/test.txt.gz"));

    // Two intervals of 1500 records, 1000 a batch: four batches, one delivered twice.
    let id = created.job.cf_job_id as u64;
    s.sim
        .logpush()
        .faults()
        .add(PushFaultRule::job(id, PushFault::Duplicate).times(1));
    s.push_for(60).await;
    let landed = s.landing_keys(&prefix).await;
    assert_eq!(landed.len(), 6, "validation, four batches, a duplicate");
    // Keep one batch object's bytes: put back later, as if the delete had not happened.
    let kept_key = landed
        .iter()
        .find(|k| k.ends_with(".log.gz"))
        .unwrap()
        .clone();
    let kept = s.landing.store.get(&kept_key).await.unwrap();

    // Before ingest: the backlog on the metrics endpoint (validation, four batches, a
    // duplicate), its oldest object's age; nothing heard from the destination yet.
    let label = format!("destination=\"{dest}\"");
    let metrics = rainlogs_integration_tests::archive_metrics(&s.env).await;
    let metric =
        |body: &str, name: &str| rainlogs_integration_tests::metric_value(body, name, &label);
    assert_eq!(
        metric(&metrics, "rainlogs_landing_backlog_objects"),
        Some(6.0),
        "{metrics}"
    );
    assert!(metric(&metrics, "rainlogs_landing_backlog_bytes").unwrap() > 0.0);
    assert!(metric(&metrics, "rainlogs_landing_oldest_object_seconds").unwrap() >= 0.0);
    assert_eq!(
        metric(&metrics, "rainlogs_landing_backlog_capped"),
        Some(0.0)
    );
    assert_eq!(
        metric(&metrics, "rainlogs_push_seconds_since_delivery"),
        None
    );
    assert_eq!(metric(&metrics, "rainlogs_push_silent"), Some(0.0));
    assert!(
        metrics.contains("rainlogs_archive_metrics_ok 1"),
        "{metrics}"
    );

    let report = s.ingest(dest).await;
    assert_eq!(
        (
            report.objects,
            report.batches,
            report.duplicates,
            report.validations,
            report.rejected
        ),
        (6, 4, 1, 1, 0),
        "{report:?}"
    );
    assert_eq!(report.records, 3000);
    assert!(report.complete);
    assert!(s.landing_keys(&prefix).await.is_empty(), "landing emptied");
    assert_eq!(
        s.count(
            "SELECT count(*) FROM push_destinations WHERE validated_at IS NOT NULL AND kind = 's3'"
        )
        .await,
        1,
        "the validation object validated the destination"
    );
    assert_eq!(
        s.count("SELECT count(*) FROM push_batches WHERE landed_at IS NOT NULL AND landing_key IS NOT NULL")
            .await,
        4
    );
    // Residence: from Cloudflare's write (LastModified) to the batch's commit, in the
    // ledger; to the delete, in the report.
    let committed_ms: i64 = s
        .count(
            "SELECT (extract(epoch FROM max(received_at - landed_at)) * 1000)::bigint FROM push_batches",
        )
        .await;
    println!(
        "landing residence: LastModified → ingest start ≤ {committed_ms} ms, → deleted ≤ {} ms (ingest run right after the writes)",
        report.max_residence_ms.unwrap()
    );

    let metrics = rainlogs_integration_tests::archive_metrics(&s.env).await;
    assert_eq!(
        metric(&metrics, "rainlogs_landing_backlog_objects"),
        Some(0.0),
        "{metrics}"
    );
    assert!(metric(&metrics, "rainlogs_push_seconds_since_delivery").unwrap() < 600.0);
    assert_eq!(metric(&metrics, "rainlogs_push_silent"), Some(0.0));
    // Twenty minutes without a batch after an hour with traffic: silent, an alert.
    sqlx::query("UPDATE push_destinations SET last_batch_at = now() - interval '20 minutes'")
        .execute(&s.env.app.pool)
        .await
        .unwrap();
    let metrics = rainlogs_integration_tests::archive_metrics(&s.env).await;
    assert_eq!(
        metric(&metrics, "rainlogs_push_silent"),
        Some(1.0),
        "{metrics}"
    );
    assert!(metric(&metrics, "rainlogs_push_seconds_since_delivery").unwrap() >= 1200.0);

    // A crash after the commit, before the delete: the object is still there.
    s.landing.store.put(&kept_key, kept).await.unwrap();
    let again = s.ingest(dest).await;
    assert_eq!((again.objects, again.duplicates, again.batches), (1, 1, 0));
    assert!(s.landing_keys(&prefix).await.is_empty());
    assert_eq!(s.count("SELECT count(*) FROM push_batches").await, 4);

    s.archive_batches().await;
    assert_eq!(
        s.count("SELECT count(*) FROM windows WHERE state = 'archived' AND batch_id IS NOT NULL")
            .await,
        4
    );
    let (lines, warnings) = restore_zone(
        &s.env.app.pool,
        &s.env.app.store,
        &s.kms,
        s.zone,
        (s.t0, s.t0 + TimeDelta::seconds(60)),
        "http_requests",
    )
    .await;
    let mut lines = lines;
    lines.sort();
    assert_eq!(
        lines,
        generated(s.t0, s.t0 + TimeDelta::seconds(60)),
        "each pushed record once"
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    s.env.teardown().await;
}

#[tokio::test]
async fn bad_objects_are_moved_and_recorded_and_outages_leave_objects_in_place() {
    let s = Stack::new().await;
    let created = s.create().await;
    let dest = created.job.destination_id;
    let prefix = rainlogs_archive::landing::prefix(dest);
    let day = Utc::now().format("%Y%m%d");
    let bad = format!("{prefix}{day}/20261207T000000Z_20261207T000030Z_0badbad0.log.gz");
    s.landing
        .store
        .put(&bad, bytes::Bytes::from_static(b"this is not gzip"))
        .await
        .unwrap();
    // A bomb for a receiver limited to 64 KiB of NDJSON.
    let bomb = format!("{prefix}{day}/20261207T000000Z_20261207T000030Z_b0b0b0b0.log.gz");
    let line = br#"{"EdgeStartTimestamp":1796119200000000000,"RayID":"a"}"#.to_vec();
    let body: Vec<u8> = line
        .iter()
        .chain(b"\n")
        .copied()
        .cycle()
        .take(4 << 20)
        .collect();
    let bomb_bytes = gzip(&body);
    s.landing
        .store
        .put(&bomb, bomb_bytes.clone().into())
        .await
        .unwrap();

    // Postgres down: a retryable error, nothing moved or deleted.
    let dead_pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy("postgres://postgres@127.0.0.1:9/none")
        .unwrap();
    let err = s
        .ingest_with(&s.function(dead_pool, s.landing.clone()), dest)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    // Garage down: the same.
    let mut cfg = S3Config::from_source(&s.env.src).unwrap();
    cfg.endpoint = Some("http://127.0.0.1:9".into());
    cfg.timeout = Duration::from_secs(2);
    let down = Landing {
        store: ObjectStore::connect(&cfg).await,
        limits: s.landing.limits,
    };
    let err = s
        .ingest_with(&s.function(s.env.app.pool.clone(), down), dest)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(s.landing_keys(&prefix).await.len(), 3, "nothing moved");

    let small = Landing {
        store: s.landing.store.clone(),
        limits: ReceiverLimits {
            max_ndjson_bytes: 64 << 10,
            ..ReceiverLimits::default()
        },
    };
    let report = s
        .ingest_with(&s.function(s.env.app.pool.clone(), small), dest)
        .await
        .unwrap();
    assert_eq!(
        (report.objects, report.validations, report.rejected),
        (3, 1, 2),
        "{report:?}"
    );
    assert!(s.landing_keys(&prefix).await.is_empty());
    let rejects = rainlogs_archive::landing::rejects(&s.env.app.pool, Some(s.zone))
        .await
        .unwrap();
    let mut codes: Vec<(&str, &str)> = rejects
        .iter()
        .map(|r| (r.landing_key.as_str(), r.code.as_str()))
        .collect();
    codes.sort();
    let mut want = vec![
        (bomb.as_str(), "landing.too_large"),
        (bad.as_str(), "landing.not_gzip"),
    ];
    want.sort();
    assert_eq!(codes, want);
    // Nothing lost: both are kept, byte for byte, under rejected/.
    let moved = s
        .landing
        .store
        .get(&rainlogs_archive::landing::rejected_key(&bad))
        .await
        .unwrap();
    assert_eq!(&moved[..], b"this is not gzip");
    let moved = s
        .landing
        .store
        .get(&rainlogs_archive::landing::rejected_key(&bomb))
        .await
        .unwrap();
    assert_eq!(moved.len(), bomb_bytes.len());
    assert_eq!(s.count("SELECT count(*) FROM push_batches").await, 0);
    // The next pass finds nothing to do (the rejects are outside the prefix).
    let idle = s.ingest(dest).await;
    assert_eq!(idle.objects, 0);
    s.env.teardown().await;
}

#[tokio::test]
async fn the_scheduler_sends_one_task_per_destination_and_the_dispatcher_empties_landing() {
    use rainlogs_dispatcher::reconcile;
    use rainlogs_integration_tests::dispatch::{fast_config, spawn_worker, stop};
    use rainlogs_integration_tests::wait_for;

    let s = Stack::new().await;
    let created = s.create().await;
    let dest = created.job.destination_id;
    let prefix = rainlogs_archive::landing::prefix(dest);
    s.push_for(30).await;
    assert_eq!(
        s.landing_keys(&prefix).await.len(),
        3,
        "validation, two batches"
    );

    // The dispatcher as `rainlogs run` builds it, with a keyring.
    let mut app = s.env.app.clone();
    app.kms = Some(KmsService::new(
        app.pool.clone(),
        MasterKeyring::parse(MASTER, None).unwrap(),
        "test",
    ));
    let first = reconcile::enqueue_landing(&app).await.unwrap();
    assert_eq!(first.enqueued, 1);
    let again = reconcile::enqueue_landing(&app).await.unwrap();
    assert_eq!(
        (again.enqueued, again.duplicates),
        (0, 1),
        "passes do not pile up"
    );
    let worker = app.worker_with(
        fast_config(rainlogs_receiver::landing::QUEUE, 2),
        Arc::new(app.in_process_functions()),
    );
    let (tx, handle) = spawn_worker(worker);
    wait_for(
        "the landing prefix emptied",
        Duration::from_secs(60),
        || async { s.landing_keys(&prefix).await.is_empty().then_some(()) },
    )
    .await;
    stop(tx, handle).await;
    assert_eq!(s.count("SELECT count(*) FROM push_batches").await, 2);
    assert_eq!(
        s.count("SELECT count(*) FROM windows WHERE state = 'staged' AND batch_id IS NOT NULL")
            .await,
        2,
        "handed on like any pushed batch"
    );
    assert_eq!(
        s.count("SELECT count(*) FROM push_destinations WHERE validated_at IS NOT NULL")
            .await,
        1
    );
    s.env.teardown().await;
}

/// The key Cloudflare is given can put objects (single and multipart) into the landing
/// bucket and nothing else of what it would need to read logs back: no get, no head, no
/// listing, no access to the archive bucket. (Garage's write permission includes
/// DeleteObject; docs/INGEST.md says so.)
#[tokio::test]
async fn the_landing_writer_key_can_write_but_not_read_list_or_reach_the_archive() {
    let s = Stack::new().await;
    let dev = dev_landing().await;
    let mut cfg = S3Config::from_source(&s.env.src).unwrap();
    cfg.bucket = dev.bucket.clone();
    cfg.access_key_id = dev.writer_key_id.clone();
    cfg.secret_access_key = dev.writer_secret.clone();
    let writer = ObjectStore::connect(&cfg).await;
    let key = "writer-probe/20261207/object.log.gz";
    writer
        .put(key, bytes::Bytes::from(gzip(b"{\"RayID\":\"w\"}\n")))
        .await
        .expect("the writer key puts an object");
    let mut upload = writer
        .start_multipart("writer-probe/20261207/multipart.log.gz")
        .await
        .expect("the writer key starts a multipart upload");
    upload
        .put_part(bytes::Bytes::from(gzip(b"{\"RayID\":\"m\"}\n")))
        .await
        .expect("and uploads a part");
    upload.complete().await.expect("and completes it");
    // Rainlogs' own key sees both.
    let keys = s.landing_keys("writer-probe/").await;
    assert_eq!(keys.len(), 2, "{keys:?}");

    let denied = |what: &str, r: Result<String, rainlogs_core::storage::StorageError>| {
        let e = r.expect_err(what);
        assert!(
            e.to_string().contains("403") || e.to_string().to_lowercase().contains("denied"),
            "{what}: {e}"
        );
    };
    denied("get", writer.get(key).await.map(|b| format!("{b:?}")));
    denied("head", writer.head(key).await.map(|h| format!("{h:?}")));
    denied(
        "list",
        writer
            .list_page("writer-probe/", None, 10)
            .await
            .map(|(p, _)| format!("{p:?}")),
    );
    let mut archive = cfg.clone();
    archive.bucket = S3Config::from_source(&s.env.src).unwrap().bucket;
    let archive = ObjectStore::connect(&archive).await;
    denied(
        "put into the archive bucket",
        archive
            .put("writer-probe/x", bytes::Bytes::from_static(b"x"))
            .await
            .map(|()| String::new()),
    );
    denied(
        "list the archive bucket",
        archive
            .list_page("", None, 10)
            .await
            .map(|(p, _)| format!("{p:?}")),
    );
    for k in keys {
        s.landing.store.delete(&k).await.unwrap();
    }
    s.env.teardown().await;
}
