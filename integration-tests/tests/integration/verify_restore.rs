//! `rainlogs verify` and `rainlogs logs get` against real Postgres, Redis and Garage, on
//! archives built by the demo machinery (simulator → fetch → encrypt → upload).
//!
//! Verify: a clean archive is clean (exit 0); each tamper case — object deleted, object
//! replaced by another valid object, catalog row edited, link removed, links reordered —
//! is reported with the right finding naming the window and object (exit 1); Postgres
//! unreachable is exit 2; the periodic sample writes its audit row. Restore: hours of
//! windows equal, record for record, what the simulator served; edges are trimmed; the
//! filter works; a big-window (two-pass) restore and an offline restore (no Postgres,
//! exported key) give the same bytes; a wrong key file and a missing object stop with an
//! error naming what is wrong, leaving no output file.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rainlogs_archive::restore::RestoreError;
use rainlogs_archive::verify::run::{self as verify_run, Outcome};
use rainlogs_archive::verify::{Finding, Verifier};
use rainlogs_cli::demo::{run_demo, DemoOptions, DemoReport};
use rainlogs_cli::logs::{self, GetArgs};
use rainlogs_cli::verify::{self, VerifyArgs};
use rainlogs_core::storage::ObjectStore;
use rainlogs_integration_tests::TestEnv;
use rainlogs_kms::{KmsService, MasterKeyring};
use rainlogs_logpull_sim::{Field, Generator, Selection, TimestampFormat, ZoneVolume};
use rainlogs_sealed::kms::{Kms, SecretKey, TenantKey};
use uuid::Uuid;

const MASTER: &str = "1:5656565656565656565656565656565656565656565656565656565656565656";
/// The demo's simulator seed (`rainlogs demo` serves the same logs on every run).
const SEED: u64 = 42;

pub(crate) struct Archive {
    pub(crate) env: TestEnv,
    pub(crate) kms: KmsService,
    pub(crate) zone: Uuid,
    pub(crate) tenant: Uuid,
    pub(crate) cf: String,
    pub(crate) name: String,
    pub(crate) rpm: u64,
    /// First window start and last window end of the zone.
    pub(crate) first: DateTime<Utc>,
    pub(crate) last: DateTime<Utc>,
    /// The Logpull fields the zone archives (stored at `zone add`: all the simulator
    /// offers), in the order it requests them.
    pub(crate) fields: Vec<Field>,
}

/// One archived window of the zone: id, key, seq, in chain order.
#[derive(Debug, Clone)]
pub(crate) struct Archived {
    pub(crate) window_id: i64,
    pub(crate) key: String,
    pub(crate) seq: i64,
}

/// Gives `env` this module's master keyring (for the kms and for commands run on its
/// configuration); returns the kms.
pub(crate) fn with_keyring(env: &mut TestEnv) -> KmsService {
    let keyring = MasterKeyring::parse(MASTER, None).expect("keyring");
    let kms = KmsService::new(env.app.pool.clone(), keyring, "verify-test");
    env.app.kms = Some(kms.clone());
    env.src.set("RAINLOGS_MASTER_KEYS", MASTER);
    kms
}

/// The demo machinery archiving `minutes` of one simulated zone with `rpm` records a minute.
pub(crate) fn one_zone(minutes: i64, rpm: u64) -> DemoOptions {
    let mut opts = DemoOptions::new(minutes, Duration::from_secs(600));
    opts.zones = vec![("restore.example".into(), rpm)];
    opts.push_zone = None;
    opts
}

/// Archives `minutes` of one simulated zone with `rpm` records a minute.
pub(crate) async fn archive(minutes: i64, rpm: u64) -> Archive {
    let mut env = TestEnv::new().await;
    let kms = with_keyring(&mut env);
    let report: DemoReport = run_demo(&env.app, &one_zone(minutes, rpm))
        .await
        .expect("demo runs");
    assert!(report.succeeded(), "{report:?}");
    Archive::of(env, kms, &report, rpm).await
}

impl Archive {
    /// The archive of `report`'s (only) zone, made on `env` with `kms`.
    pub(crate) async fn of(env: TestEnv, kms: KmsService, report: &DemoReport, rpm: u64) -> Self {
        let zone = report.zones[0].zone_id;
        let (tenant, cf, name, fields): (Uuid, String, String, Vec<String>) =
            sqlx::query_as("SELECT tenant_id, cf_zone_id, name, fields FROM zones WHERE id = $1")
                .bind(zone)
                .fetch_one(&env.app.pool)
                .await
                .unwrap();
        assert_eq!(
            fields.len(),
            Field::ALL.len(),
            "zone add stores every field the zone's Logpull offers"
        );
        let fields = fields
            .iter()
            .map(|f| Field::parse(f).unwrap_or_else(|| panic!("stored field {f:?}")))
            .collect();
        let (first, last): (DateTime<Utc>, DateTime<Utc>) =
            sqlx::query_as("SELECT min(start_at), max(end_at) FROM windows WHERE zone_id = $1")
                .bind(zone)
                .fetch_one(&env.app.pool)
                .await
                .unwrap();
        Archive {
            env,
            kms,
            zone,
            tenant,
            cf,
            name,
            rpm,
            first,
            last,
            fields,
        }
    }

    pub(crate) async fn archived(&self) -> Vec<Archived> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT w.id, a.object_key, l.seq FROM windows w
             JOIN archived_objects a ON a.window_id = w.id
             JOIN chain_links l ON l.window_id = w.id
             WHERE w.zone_id = $1 ORDER BY l.seq",
        )
        .bind(self.zone)
        .fetch_all(&self.env.app.pool)
        .await
        .unwrap();
        rows.into_iter()
            .map(|(window_id, key, seq)| Archived {
                window_id,
                key,
                seq,
            })
            .collect()
    }

    pub(crate) fn args(&self, deep: bool) -> VerifyArgs {
        VerifyArgs {
            tenant: None,
            zone: Some(self.zone.to_string()),
            from: Some(self.first),
            to: Some(self.last),
            deep,
            json: false,
            report: None,
            key_file: Vec::new(),
            chain_key_file: Vec::new(),
            concurrency: 4,
        }
    }

    pub(crate) async fn verify_with(&self, args: &VerifyArgs) -> (Outcome, Vec<Finding>) {
        self.verify_through(self.env.app.store.clone(), args).await
    }

    /// Verifies reading the objects through `store` (another S3 endpoint of the bucket).
    pub(crate) async fn verify_through(
        &self,
        store: ObjectStore,
        args: &VerifyArgs,
    ) -> (Outcome, Vec<Finding>) {
        let verifier = Verifier {
            pool: self.env.app.pool.clone(),
            store,
            kms: Some(Arc::new(self.kms.clone()) as Arc<dyn Kms>),
            concurrency: 4,
        };
        let mut findings = Vec::new();
        let outcome = verify_run::verify(&verifier, &args.request(), Utc::now(), &mut |f| {
            findings.push(f);
            Ok(())
        })
        .await
        .expect("verification runs");
        assert_eq!(outcome.counts.findings, findings.len() as u64);
        (outcome, findings)
    }

    pub(crate) async fn verify(&self, deep: bool) -> Vec<Finding> {
        self.verify_with(&self.args(deep)).await.1
    }

    /// What the simulator serves for this zone over `[from, to)`, as lines.
    pub(crate) fn served(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<String> {
        let body = Generator::new(SEED).window_body(
            &self.cf,
            ZoneVolume {
                records_per_minute: self.rpm,
                empty_ratio: 0.0,
                late_ratio: 0.0,
                late_max_seconds: 0,
            },
            &Selection {
                start_ns: from.timestamp_nanos_opt().unwrap(),
                end_ns: to.timestamp_nanos_opt().unwrap(),
                fields: self.fields.clone(),
                timestamps: TimestampFormat::UnixNano,
                count: None,
                sample: None,
                by_received: false,
            },
        );
        lines(&body)
    }

    /// Disaster recovery's inputs: a configuration whose Postgres is unreachable, and
    /// the tenant's exported key file.
    pub(crate) async fn offline(
        &self,
    ) -> (rainlogs_core::config::ConfigSource, std::path::PathBuf) {
        let key = self.kms.export_tenant_key(self.tenant, 1).await.unwrap();
        let key_file = tmp("tenant.key");
        std::fs::write(&key_file, key.to_key_file().as_bytes()).unwrap();
        let mut offline_src = self.env.src.clone();
        offline_src.set(
            "RAINLOGS_DATABASE_URL",
            "postgres://rainlogs@127.0.0.1:1/nothing",
        );
        (offline_src, key_file)
    }

    pub(crate) fn get_args(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        out: &std::path::Path,
    ) -> GetArgs {
        GetArgs {
            zone: self.zone.to_string(),
            from,
            to,
            filters: Vec::new(),
            match_any: false,
            out: Some(out.to_path_buf()),
            tenant: None,
            key_file: Vec::new(),
            max_window_mib: 256,
            dataset: "http_requests".into(),
        }
    }
}

/// A `chain_links` row, as deleted and put back by the tamper test.
type LinkRow = (
    Uuid,
    i64,
    i64,
    Vec<u8>,
    Vec<u8>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    i64,
    i16,
    Option<i32>,
);

pub(crate) fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8(bytes.to_vec())
        .expect("utf-8 NDJSON")
        .lines()
        .map(str::to_owned)
        .collect()
}

pub(crate) fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rl-verify-restore-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

pub(crate) fn window_of(f: &Finding) -> Option<i64> {
    let v = serde_json::to_value(f).unwrap();
    v.get("window_id").and_then(|w| w.as_i64())
}

#[tokio::test]
async fn clean_archive_verifies_exit_codes_report_and_coverage() {
    let a = archive(8, 30).await;
    assert_eq!(a.verify(false).await, vec![]);
    let (outcome, findings) = a.verify_with(&a.args(true)).await;
    assert_eq!(findings, vec![]);
    assert!(outcome.counts.archived >= 6, "{outcome:?}");
    assert_eq!(outcome.counts.objects_deep, outcome.counts.archived);
    assert_eq!(outcome.counts.links, outcome.counts.windows);

    // The CLI entry: exit 0 and a JSON report that says clean.
    let report = tmp("report.json");
    let mut args = a.args(true);
    args.report = Some(report.clone());
    assert_eq!(
        verify::run(&a.env.src, &args).await.unwrap(),
        ExitCode::SUCCESS
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).expect("report is JSON");
    assert_eq!(json["format"], "rainlogs.verify.v1");
    assert_eq!(json["result"], "clean");
    assert_eq!(json["findings"], serde_json::json!([]));
    assert_eq!(json["zones"][0]["zone_id"], a.zone.to_string());

    // Coverage: time after the last window is reported with its exact bounds.
    let mut args = a.args(false);
    args.to = Some(a.last + TimeDelta::minutes(5));
    let (_, findings) = a.verify_with(&args).await;
    assert_eq!(
        findings,
        vec![Finding::TimeMissing {
            zone_id: a.zone,
            from: a.last,
            to: a.last + TimeDelta::minutes(5),
        }]
    );
    // The same through the CLI: exit 1, the finding in the report.
    args.report = Some(report.clone());
    assert_eq!(
        verify::run(&a.env.src, &args).await.unwrap(),
        ExitCode::from(1)
    );
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["result"], "findings");
    assert_eq!(json["findings"][0]["type"], "time_missing");

    // Postgres unreachable: exit 2, not a clean bill of health.
    let mut down = a.env.src.clone();
    down.set(
        "RAINLOGS_DATABASE_URL",
        "postgres://rainlogs@127.0.0.1:1/nothing",
    );
    down.set("RAINLOGS_DATABASE_CONNECT_TIMEOUT_MS", "500");
    let mut args = a.args(false);
    args.report = Some(report.clone());
    assert_eq!(verify::run(&down, &args).await.unwrap(), ExitCode::from(2));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["result"], "error");
    a.env.teardown().await;
}

#[tokio::test]
async fn a_deleted_or_replaced_object_is_named() {
    let a = archive(8, 30).await;
    let archived = a.archived().await;
    assert!(archived.len() >= 6, "{archived:?}");
    let (victim, other) = (&archived[2], &archived[4]);
    // Catalog keys are full bucket keys: read and written from the bucket's root.
    let root = a.env.app.store.root();
    let store = &root;
    let original = store.get(&victim.key).await.unwrap();

    // Deleted.
    store.delete(&victim.key).await.unwrap();
    let findings = a.verify(false).await;
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(
        matches!(&findings[0], Finding::ObjectMissing { window, object_key }
            if window.window_id == victim.window_id && *object_key == victim.key),
        "{findings:?}"
    );
    let mut args = a.args(false);
    args.report = Some(tmp("report.json"));
    assert_eq!(
        verify::run(&a.env.src, &args).await.unwrap(),
        ExitCode::from(1)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(args.report.as_ref().unwrap()).unwrap()).unwrap();
    assert_eq!(json["findings"][0]["type"], "object_missing");
    assert_eq!(json["findings"][0]["object_key"], victim.key);
    assert_eq!(json["findings"][0]["window_id"], victim.window_id);

    // Replaced by another window's valid sealed object.
    let foreign = store.get(&other.key).await.unwrap();
    store.put(&victim.key, foreign).await.unwrap();
    let shallow = a.verify(false).await;
    assert!(!shallow.is_empty());
    assert!(
        shallow
            .iter()
            .all(|f| window_of(f) == Some(victim.window_id)),
        "only the victim is reported: {shallow:?}"
    );
    assert!(
        shallow.iter().any(|f| matches!(f, Finding::ObjectHashMismatch { object_key, matches_link: false, .. } if *object_key == victim.key)),
        "{shallow:?}"
    );
    let deep = a.verify(true).await;
    assert!(
        deep.iter().any(|f| matches!(f, Finding::HeaderContextMismatch { object_key, code, window, .. }
            if *object_key == victim.key && code == "sealed.wrong_window" && window.window_id == victim.window_id)),
        "{deep:?}"
    );
    assert!(
        deep.iter().all(|f| window_of(f) == Some(victim.window_id)),
        "{deep:?}"
    );

    store.put(&victim.key, original).await.unwrap();
    assert_eq!(a.verify(true).await, vec![]);
    a.env.teardown().await;
}

#[tokio::test]
async fn an_edited_catalog_row_a_removed_link_and_reordered_links_are_named() {
    let a = archive(8, 30).await;
    let archived = a.archived().await;
    assert!(archived.len() >= 6, "{archived:?}");
    let pool = &a.env.app.pool;
    let victim = &archived[2];

    // Catalog row edited: one record fewer claimed.
    sqlx::query("UPDATE archived_objects SET record_count = record_count - 1 WHERE window_id = $1")
        .bind(victim.window_id)
        .execute(pool)
        .await
        .unwrap();
    let shallow = a.verify(false).await;
    assert_eq!(shallow.len(), 1, "{shallow:?}");
    assert!(
        matches!(&shallow[0], Finding::CatalogLinkMismatch { window, object_key, seq, fields }
            if window.window_id == victim.window_id && *object_key == victim.key
               && *seq == victim.seq && fields == &["record_count"]),
        "{shallow:?}"
    );
    let deep = a.verify(true).await;
    assert!(
        deep.iter().any(
            |f| matches!(f, Finding::PlaintextMismatch { what, object_key, .. }
            if what == "record_count" && *object_key == victim.key)
        ),
        "{deep:?}"
    );
    sqlx::query("UPDATE archived_objects SET record_count = record_count + 1 WHERE window_id = $1")
        .bind(victim.window_id)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(a.verify(false).await, vec![]);

    // A link removed: a gap at the next seq, and the window without its link.
    let link: LinkRow = sqlx::query_as(
        "DELETE FROM chain_links WHERE window_id = $1 RETURNING zone_id, seq, window_id,
               prev_hash, link_hash, object_sha256, plaintext_sha256, record_count, version,
               key_version",
    )
    .bind(victim.window_id)
    .fetch_one(pool)
    .await
    .unwrap();
    let findings = a.verify(false).await;
    let next = &archived[3];
    assert_eq!(findings.len(), 2, "{findings:?}");
    assert!(
        findings.iter().any(
            |f| matches!(f, Finding::ChainGap { seq, missing_from, missing_to, window }
        if *seq == victim.seq + 1 && *missing_from == victim.seq && *missing_to == victim.seq
           && window.window_id == next.window_id)
        ),
        "{findings:?}"
    );
    assert!(
        findings
            .iter()
            .any(|f| matches!(f, Finding::LinkMissing { window, state }
        if window.window_id == victim.window_id && state == "archived")),
        "{findings:?}"
    );
    sqlx::query(
        "INSERT INTO chain_links (zone_id, seq, window_id, prev_hash, link_hash, object_sha256,
                                  plaintext_sha256, record_count, version, key_version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(link.0)
    .bind(link.1)
    .bind(link.2)
    .bind(link.3)
    .bind(link.4)
    .bind(link.5)
    .bind(link.6)
    .bind(link.7)
    .bind(link.8)
    .bind(link.9)
    .execute(pool)
    .await
    .unwrap();
    assert_eq!(a.verify(false).await, vec![]);

    // Links reordered: seqs of two links swapped.
    let (i, j) = (archived[1].clone(), archived[4].clone());
    let swap = |from: i64, to: i64| {
        sqlx::query("UPDATE chain_links SET seq = $3 WHERE zone_id = $1 AND seq = $2")
            .bind(a.zone)
            .bind(from)
            .bind(to)
    };
    swap(i.seq, 1_000_000).execute(pool).await.unwrap();
    swap(j.seq, i.seq).execute(pool).await.unwrap();
    swap(1_000_000, j.seq).execute(pool).await.unwrap();
    let findings = a.verify(false).await;
    for (seq, window) in [(i.seq, j.window_id), (j.seq, i.window_id)] {
        assert!(
            findings.iter().any(
                |f| matches!(f, Finding::ChainLinkBroken { seq: s, reason, window: w, .. }
                if *s == seq && reason == "hash_mismatch" && w.window_id == window)
            ),
            "seq {seq}: {findings:?}"
        );
    }
    assert!(
        findings
            .iter()
            .all(|f| matches!(f, Finding::ChainLinkBroken { .. })),
        "only chain breaks: {findings:?}"
    );
    swap(i.seq, 1_000_000).execute(pool).await.unwrap();
    swap(j.seq, i.seq).execute(pool).await.unwrap();
    swap(1_000_000, j.seq).execute(pool).await.unwrap();
    assert_eq!(a.verify(true).await, vec![]);
    a.env.teardown().await;
}

#[tokio::test]
async fn the_periodic_sample_audits_each_run() {
    let a = archive(6, 20).await;
    let archived = a.archived().await;
    let pool = &a.env.app.pool;
    let kms: Arc<dyn Kms> = Arc::new(a.kms.clone());
    let task = rainlogs_prune::sample::SampleTask {
        objects: 100,
        deep_fraction: 0.5,
    };
    let clean = rainlogs_prune::sample::run(pool, &a.env.app.store, Some(kms.clone()), &task)
        .await
        .expect("sample runs");
    assert_eq!(clean.result, "ok", "{clean:?}");
    assert_eq!(clean.sampled, archived.len() as u64);
    assert_eq!(clean.deep, (archived.len() as u64).div_ceil(2));

    a.env
        .app
        .store
        .root()
        .delete(&archived[0].key)
        .await
        .unwrap();
    let found = rainlogs_prune::sample::run(pool, &a.env.app.store, Some(kms), &task)
        .await
        .expect("sample runs");
    assert_eq!(found.result, "findings");
    assert!(found.findings.iter().any(
        |f| matches!(f, Finding::ObjectMissing { object_key, .. } if *object_key == archived[0].key)
    ));

    let audits: Vec<(String, String, serde_json::Value)> = sqlx::query_as(
        "SELECT operation, result, detail FROM audit_events WHERE operation = 'verify.sample' ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(audits.len(), 2);
    assert_eq!(
        (audits[0].1.as_str(), audits[1].1.as_str()),
        ("ok", "findings")
    );
    assert_eq!(audits[1].2["findings"][0]["object_key"], archived[0].key);
    a.env.teardown().await;
}

/// Issue 11 item 6: Logpull serves records by the time Cloudflare received them, so a
/// record can sit in a window after its own time. Restore selects by the records' own
/// time (each window's recorded span) and trims every window that is not wholly inside.
#[tokio::test]
async fn late_records_are_restored_by_their_own_time_online_and_offline() {
    let mut env = TestEnv::new().await;
    let kms = with_keyring(&mut env);
    let mut opts = one_zone(18, 120);
    opts.late = (0.25, 90);
    let report = run_demo(&env.app, &opts).await.expect("demo runs");
    assert!(report.succeeded(), "{report:?}");
    let a = Archive::of(env, kms, &report, 120).await;
    let pool = &a.env.app.pool;

    // Fetch recorded each window's record span; late records reach before its start.
    type Span = (DateTime<Utc>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let spans: Vec<Span> = sqlx::query_as(
        "SELECT start_at, first_record_at, last_record_at FROM windows
             WHERE zone_id = $1 AND state = 'archived' ORDER BY start_at",
    )
    .bind(a.zone)
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(spans.len() >= 15, "{}", spans.len());
    assert!(
        a.last >= a.first + TimeDelta::minutes(14),
        "{} .. {}",
        a.first,
        a.last
    );
    assert!(spans.iter().all(|(_, f, l)| f.is_some() && l.is_some()));
    let late_windows = spans
        .iter()
        .filter(|(start, first, _)| first.unwrap() < *start)
        .count();
    assert!(
        late_windows >= 10,
        "windows holding late records: {late_windows}"
    );

    let from = a.first + TimeDelta::minutes(3) + TimeDelta::seconds(20);
    let to = a.first + TimeDelta::minutes(8);
    let expected = a.served(from, to);
    assert!(expected.len() > 500, "{}", expected.len());
    let out = tmp("late.ndjson");
    let stats = logs::get(&a.env.src, &a.get_args(from, to, &out))
        .await
        .expect("restore");
    let mut got = lines(&std::fs::read(&out).unwrap());
    // Windows come out in order; records inside them in Logpull's order: compare sets.
    got.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(got.len(), want.len(), "each record of the range once");
    assert_eq!(got, want);
    assert!(
        !stats.late_unsettled,
        "the windows after the range are archived"
    );
    // The windows the range's records were received in: not fewer than its minutes.
    assert!(stats.windows_restored >= 5, "{stats:?}");

    // Offline (no catalog spans: the documented lag is assumed) gives the same records.
    let (offline_src, key_file) = a.offline().await;
    let out2 = tmp("late-offline.ndjson");
    let mut args = a.get_args(from, to, &out2);
    args.key_file = vec![key_file];
    args.tenant = Some(a.tenant.to_string());
    logs::get(&offline_src, &args)
        .await
        .expect("offline restore");
    let mut offline = lines(&std::fs::read(&out2).unwrap());
    offline.sort();
    assert_eq!(offline, want, "offline equals the simulator too");

    // A range ending at the last archived window: records received after it may still
    // come, and the restore says so.
    let out3 = tmp("late-edge.ndjson");
    let stats = logs::get(&a.env.src, &a.get_args(from, a.last, &out3))
        .await
        .expect("restore to the end");
    assert!(stats.late_unsettled, "{stats:?}");
    a.env.teardown().await;
}

#[tokio::test]
async fn restore_over_hours_equals_what_the_simulator_served() {
    // 3 h 20 min of 1-minute windows; the restore covers 3 hours of them.
    let a = archive(200, 12).await;
    let from = a.first + TimeDelta::minutes(5);
    let to = from + TimeDelta::hours(3);
    assert!(to <= a.last, "archive too short: {} .. {}", a.first, a.last);
    let expected = a.served(from, to);
    assert_eq!(expected.len(), 180 * 12);

    // Online, by Rainlogs zone id.
    let out = tmp("restore.ndjson");
    let stats = logs::get(&a.env.src, &a.get_args(from, to, &out))
        .await
        .expect("restore");
    let online = std::fs::read(&out).unwrap();
    assert_eq!(lines(&online), expected, "record for record");
    assert_eq!(stats.windows_restored, 180);
    assert_eq!(stats.records_out, expected.len() as u64);
    assert_eq!(stats.gaps, 0);

    // Edges inside windows are trimmed by timestamp; zone given by Cloudflare id, name.
    let (from2, to2) = (
        from + TimeDelta::seconds(30),
        from + TimeDelta::minutes(10) + TimeDelta::seconds(15),
    );
    for zone in [a.cf.clone(), a.name.clone()] {
        let out2 = tmp("trim.ndjson");
        let mut args = a.get_args(from2, to2, &out2);
        args.zone = zone;
        logs::get(&a.env.src, &args).await.expect("restore");
        assert_eq!(lines(&std::fs::read(&out2).unwrap()), a.served(from2, to2));
    }

    // Windows bigger than the buffer: verified in a first pass, streamed in a second.
    let out3 = tmp("two-pass.ndjson");
    let mut args = a.get_args(from, to, &out3);
    args.max_window_mib = 0;
    let stats = logs::get(&a.env.src, &args).await.expect("restore");
    assert_eq!(stats.two_pass_windows, 180);
    assert_eq!(std::fs::read(&out3).unwrap(), online);

    // Filter: the records with that status, nothing else.
    let out4 = tmp("filter.ndjson");
    let mut args = a.get_args(from, to, &out4);
    args.filters = vec!["EdgeResponseStatus=200".into()];
    logs::get(&a.env.src, &args).await.expect("restore");
    let want: Vec<String> = expected
        .iter()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["EdgeResponseStatus"] == 200
        })
        .cloned()
        .collect();
    let got = lines(&std::fs::read(&out4).unwrap());
    assert!(!want.is_empty() && want.len() < expected.len());
    assert_eq!(got, want);

    // Disaster recovery: no Postgres, the bucket and an exported key only.
    let (offline_src, key_file) = a.offline().await;
    let out5 = tmp("offline.ndjson");
    let mut args = a.get_args(from, to, &out5);
    args.key_file = vec![key_file.clone()];
    args.tenant = Some(a.tenant.to_string());
    let stats = logs::get(&offline_src, &args)
        .await
        .expect("offline restore");
    assert_eq!(
        std::fs::read(&out5).unwrap(),
        online,
        "offline equals online"
    );
    // Without Postgres no window's record span is known: the windows up to
    // ASSUMED_LAG after the range are opened for late records too.
    assert_eq!(
        stats.windows_restored,
        180 + rainlogs_archive::restore::ASSUMED_LAG.num_minutes() as u64
    );

    // A key file of another tenant is refused up front, naming both tenants.
    let stranger = TenantKey::new(Uuid::new_v4(), 1, SecretKey::random());
    let wrong = tmp("wrong.key");
    std::fs::write(&wrong, stranger.to_key_file().as_bytes()).unwrap();
    let out6 = tmp("wrong.ndjson");
    args.out = Some(out6.clone());
    args.key_file = vec![wrong.clone()];
    let err = logs::get(&offline_src, &args)
        .await
        .expect_err("wrong key file");
    let text = err.to_string();
    assert!(
        text.contains(&stranger.tenant.to_string()) && text.contains(&a.tenant.to_string()),
        "{text}"
    );
    // The right tenant but not its key: the first object refuses, by name.
    let forged = TenantKey::new(a.tenant, 1, SecretKey::random());
    std::fs::write(&wrong, forged.to_key_file().as_bytes()).unwrap();
    let err = logs::get(&offline_src, &args)
        .await
        .expect_err("forged key");
    assert!(
        matches!(&err, RestoreError::Verification { object_key, .. } if object_key.contains(&a.zone.to_string())),
        "{err}"
    );
    assert_eq!(err.exit_code(), 1);
    assert!(!out6.exists(), "no output file after a failure");

    // A missing object stops the online restore naming it; no output file.
    let victim: String = sqlx::query_scalar(
        "SELECT a.object_key FROM archived_objects a JOIN windows w ON w.id = a.window_id
         WHERE w.zone_id = $1 AND w.start_at = $2",
    )
    .bind(a.zone)
    .bind(from + TimeDelta::minutes(20))
    .fetch_one(&a.env.app.pool)
    .await
    .unwrap();
    a.env.app.store.root().delete(&victim).await.unwrap();
    let out7 = tmp("missing.ndjson");
    let err = logs::get(&a.env.src, &a.get_args(from, to, &out7))
        .await
        .expect_err("missing object");
    assert!(
        matches!(&err, RestoreError::Verification { object_key, .. } if *object_key == victim),
        "{err}"
    );
    assert!(!out7.exists());
    a.env.teardown().await;
}
