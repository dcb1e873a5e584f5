//! Pushed batches from acknowledgement to restore, against real Postgres, Redis and
//! Garage: each accepted batch is a `staged` window of its zone; the scheduler's push
//! pass hands it to encrypt (once, whatever the number of passes); encrypt and upload
//! archive it under its batch key with one chain link; restore by time gives back
//! exactly the acknowledged records, each once (duplicates included), per dataset;
//! verify finds nothing wrong and reports no time gaps for a push zone; the sweep keeps
//! a batch in flight and removes a staged object that was never acknowledged.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use rainlogs_archive::chain;
use rainlogs_archive::pipeline::parse_archive_key;
use rainlogs_archive::push;
use rainlogs_archive::restore::{self, Observer, Request, Source};
use rainlogs_archive::verify::{Verifier, ZoneScope};
use rainlogs_core::function::Function;
use rainlogs_core::task::{kinds, TaskEnvelope, TaskSpec};
use rainlogs_dispatcher::reconcile;
use rainlogs_encrypt::EncryptFunction;
use rainlogs_receiver::ReceiverLimits;
use rainlogs_upload::UploadFunction;
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::push::{bearer, gzip, json, ndjson, post, serve, Setup};

/// Runs `spec` through the encrypt and upload stages in-process, following each
/// stage's follow-up tasks to the end; returns the kinds run, in order.
async fn drive(s: &Setup, spec: TaskSpec) -> Vec<String> {
    drive_stages(&s.env.app.pool, &s.env.app.store, &s.kms, spec).await
}

/// [`drive`] for any zone's windows.
pub(crate) async fn drive_stages(
    pool: &sqlx::PgPool,
    store: &rainlogs_core::storage::ObjectStore,
    kms: &Arc<dyn rainlogs_sealed::kms::Kms>,
    spec: TaskSpec,
) -> Vec<String> {
    let encrypt = EncryptFunction::with_clients(pool.clone(), store.clone(), kms.clone());
    let upload = UploadFunction::new(pool.clone(), store.clone()).with_kms(kms.clone());
    let mut todo = vec![spec];
    let mut ran = Vec::new();
    while let Some(spec) = todo.pop() {
        ran.push(spec.kind.clone());
        let task = TaskEnvelope::new(spec, Utc::now());
        let out = match task.function() {
            Some("encrypt") => encrypt.handle(task).await,
            Some("upload") => upload.handle(task).await,
            other => panic!("no stage for {other:?}"),
        }
        .expect("stage succeeds");
        todo.extend(out.next);
    }
    ran
}

/// The zone's windows that hold batches: (batch id, state), by window id.
async fn batch_windows(s: &Setup) -> Vec<(Uuid, String)> {
    sqlx::query_as(
        "SELECT batch_id, state::text FROM windows
         WHERE zone_id = $1 AND batch_id IS NOT NULL ORDER BY id",
    )
    .bind(s.zone)
    .fetch_all(&s.env.app.pool)
    .await
    .unwrap()
}

#[derive(Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl Observer for Warnings {
    fn warn(&mut self, message: &str) {
        self.0.lock().unwrap().push(message.to_owned());
    }
}

/// Restores `[from, to)` of the setup's zone for `dataset`: its lines, and warnings.
async fn restore_lines(
    s: &Setup,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    dataset: &str,
) -> (Vec<String>, Vec<String>) {
    restore_zone(
        &s.env.app.pool,
        &s.env.app.store,
        &s.kms,
        s.zone,
        (from, to),
        dataset,
    )
    .await
}

/// [`restore_lines`] for any zone.
pub(crate) async fn restore_zone(
    pool: &sqlx::PgPool,
    store: &rainlogs_core::storage::ObjectStore,
    kms: &Arc<dyn rainlogs_sealed::kms::Kms>,
    zone: Uuid,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    dataset: &str,
) -> (Vec<String>, Vec<String>) {
    let source = Source::Catalog {
        pool: pool.clone(),
        store: store.clone(),
        kms: kms.clone(),
    };
    let req = Request {
        zone: zone.to_string(),
        tenant: None,
        from,
        to,
        filters: Vec::new(),
        match_any: false,
        max_window_bytes: 1 << 20,
        dataset: dataset.to_owned(),
    };
    let out = SharedBuf::default();
    let mut warnings = Warnings::default();
    restore::restore(&source, &req, Box::new(out.clone()), &mut warnings)
        .await
        .expect("restore succeeds");
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines = text.lines().map(str::to_owned).collect();
    let warned = warnings.0.lock().unwrap().clone();
    (lines, warned)
}

#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn lines_of(ndjson: &[u8]) -> Vec<String> {
    String::from_utf8(ndjson.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn pushed_batches_are_archived_once_and_restored_exactly() {
    let s = Setup::new().await;
    sqlx::query("UPDATE zones SET mode = 'push' WHERE id = $1")
        .bind(s.zone)
        .execute(&s.env.app.pool)
        .await
        .unwrap();
    let firewall = push::create_destination(&s.env.app.pool, s.zone, "firewall_events")
        .await
        .unwrap();
    let server = serve(s.receiver(ReceiverLimits::default())).await;
    let t0 = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    // Two batches of the same minutes (overlapping spans), one later, one re-delivered,
    // and a firewall_events batch of the same minutes on its own destination.
    let a = ndjson(120, t0, "a");
    let b = ndjson(90, t0 + TimeDelta::seconds(30), "b");
    let c = ndjson(60, t0 + TimeDelta::minutes(10), "c");
    for (body, duplicate) in [(&a, false), (&b, false), (&c, false), (&b, true)] {
        let resp = post(&s.url(&server), bearer(&s.secret), gzip(body, 6)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(json(resp).await["duplicate"], duplicate);
    }
    let fw = format!(
        "{{\"RayID\":\"fw1\",\"Action\":\"block\",\"Datetime\":\"{}\"}}\n",
        (t0 + TimeDelta::seconds(45)).to_rfc3339()
    );
    let fw_url = format!("{}/push/{}", server.base, firewall.destination.id);
    let resp = post(
        &fw_url,
        bearer(firewall.secret.expose_secret()),
        gzip(fw.as_bytes(), 6),
    )
    .await;
    assert_eq!(resp.status(), 200);
    drop(server);

    // Every accepted batch is a staged window: four, one per batch (not per delivery).
    let staged = batch_windows(&s).await;
    assert_eq!(staged.len(), 4, "{staged:?}");
    assert!(staged.iter().all(|(_, state)| state == "staged"));

    // The scheduler's push pass hands each to encrypt; passes repeat without doubling.
    let first = reconcile::enqueue_pushed(&s.env.app).await.unwrap();
    assert_eq!((first.enqueued, first.duplicates), (4, 0));
    let again = reconcile::enqueue_pushed(&s.env.app).await.unwrap();
    assert_eq!((again.enqueued, again.duplicates), (0, 4));

    // Encrypt → upload for each, as the dispatcher would run them.
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM windows WHERE zone_id = $1 AND batch_id IS NOT NULL ORDER BY id",
    )
    .bind(s.zone)
    .fetch_all(&s.env.app.pool)
    .await
    .unwrap();
    for &window_id in &ids {
        let spec = rainlogs_archive::pipeline::WindowTask { window_id }.spec(kinds::ENCRYPT_WINDOW);
        assert_eq!(
            drive(&s, spec.clone()).await,
            vec![kinds::ENCRYPT_WINDOW, kinds::UPLOAD_WINDOW]
        );
        // A replay is harmless: nothing to encrypt, one object, one link.
        assert_eq!(drive(&s, spec).await, vec![kinds::ENCRYPT_WINDOW]);
    }
    assert!(batch_windows(&s)
        .await
        .iter()
        .all(|(_, st)| st == "archived"));
    assert_eq!(
        s.staged().await,
        Vec::<String>::new(),
        "staging is cleaned up"
    );

    // Each batch has one archive object under its batch key, and one chain link.
    let objects: Vec<(String, Uuid)> = sqlx::query_as(
        "SELECT a.object_key, w.batch_id FROM archived_objects a
         JOIN windows w ON w.id = a.window_id WHERE w.zone_id = $1",
    )
    .bind(s.zone)
    .fetch_all(&s.env.app.pool)
    .await
    .unwrap();
    assert_eq!(objects.len(), 4);
    for (key, batch) in &objects {
        // The catalog records the full bucket key: the store's prefix, then the key.
        let relative = key
            .strip_prefix(s.env.app.store.prefix())
            .expect("a full bucket key");
        let parts = parse_archive_key(relative).expect("a batch archive key");
        assert_eq!(parts.batch.as_ref().map(|b| b.0), Some(*batch), "{key}");
    }
    let report = chain::verify_zone(&s.env.app.pool, s.kms.as_ref(), s.zone)
        .await
        .unwrap();
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.links_checked, 4);

    // Restore by time: exactly the acknowledged http_requests records, each once.
    let (from, to) = (t0 - TimeDelta::hours(1), t0 + TimeDelta::hours(1));
    let (all, warnings) = restore_lines(&s, from, to, "http_requests").await;
    let expected: Vec<String> = [&a, &b, &c].iter().flat_map(|x| lines_of(x)).collect();
    assert_eq!(sorted(all), sorted(expected));
    assert_eq!(
        warnings,
        Vec::<String>::new(),
        "a push zone has no pull gaps"
    );

    // A range inside the overlapping batches: only records whose edge end is in it.
    let (lo, hi) = (t0 + TimeDelta::seconds(40), t0 + TimeDelta::seconds(100));
    let (part, _) = restore_lines(&s, lo, hi, "http_requests").await;
    let mut per_batch: BTreeMap<char, usize> = BTreeMap::new();
    for line in &part {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let end = DateTime::parse_from_rfc3339(v["EdgeEndTimestamp"].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc);
        assert!(end >= lo && end < hi, "{line}");
        *per_batch
            .entry(v["RayID"].as_str().unwrap().chars().next().unwrap())
            .or_default() += 1;
    }
    // a: seconds 40..=99 end in range (60 records); b: seconds 30+10..=30+69 (60).
    assert_eq!(per_batch, BTreeMap::from([('a', 60), ('b', 60)]));

    // The other dataset restores on its own.
    let (fw_lines, _) = restore_lines(&s, from, to, "firewall_events").await;
    assert_eq!(fw_lines, lines_of(fw.as_bytes()));

    // Verify (deep): nothing wrong, and no missing time for a push zone.
    let verifier = Verifier {
        pool: s.env.app.pool.clone(),
        store: s.env.app.store.clone(),
        kms: Some(s.kms.clone()),
        concurrency: 4,
    };
    let mut findings = Vec::new();
    let counts = verifier
        .verify_zone(
            ZoneScope {
                zone_id: s.zone,
                from,
                to,
            },
            true,
            &mut |f| {
                findings.push(f);
                Ok(())
            },
        )
        .await
        .unwrap();
    assert_eq!(findings, vec![]);
    assert_eq!((counts.archived, counts.objects_deep), (4, 4));
    s.env.teardown().await;
}

#[tokio::test]
async fn a_sealed_object_that_fails_verification_is_sealed_again_from_staging() {
    // The batch's staged payload stays until upload commits, so a damaged archive
    // object is re-sealed from it, as for a pulled window.
    let s = Setup::new().await;
    let server = serve(s.receiver(ReceiverLimits::default())).await;
    let body = ndjson(40, Utc::now() - TimeDelta::minutes(5), "r");
    let resp = post(&s.url(&server), bearer(&s.secret), gzip(&body, 6)).await;
    assert_eq!(resp.status(), 200);
    drop(server);
    let window_id: i64 =
        sqlx::query_scalar("SELECT id FROM windows WHERE zone_id = $1 AND batch_id IS NOT NULL")
            .bind(s.zone)
            .fetch_one(&s.env.app.pool)
            .await
            .unwrap();
    let task = |kind| rainlogs_archive::pipeline::WindowTask { window_id }.spec(kind);
    // Encrypt only, then damage the archive object before upload reads it.
    let encrypt = EncryptFunction::with_clients(
        s.env.app.pool.clone(),
        s.env.app.store.clone(),
        s.kms.clone(),
    );
    encrypt
        .handle(TaskEnvelope::new(task(kinds::ENCRYPT_WINDOW), Utc::now()))
        .await
        .unwrap();
    let listed = s.env.app.store.list_all("archive/").await.unwrap();
    assert_eq!(listed.len(), 1, "encrypt wrote the archive object");
    let key = listed[0].key.clone();
    let mut damaged = s.env.app.store.get(&key).await.unwrap().to_vec();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    s.env.app.store.put(&key, damaged.into()).await.unwrap();

    let ran = drive(&s, task(kinds::UPLOAD_WINDOW)).await;
    assert_eq!(
        ran,
        vec![
            kinds::UPLOAD_WINDOW,
            kinds::ENCRYPT_WINDOW,
            kinds::UPLOAD_WINDOW
        ]
    );
    assert_eq!(
        batch_windows(&s).await[0].1,
        "archived",
        "re-sealed from the staged batch"
    );
    let (lines, _) = restore_lines(
        &s,
        Utc::now() - TimeDelta::hours(1),
        Utc::now(),
        "http_requests",
    )
    .await;
    assert_eq!(sorted(lines), sorted(lines_of(&body)));
    s.env.teardown().await;
}

#[tokio::test]
async fn push_coverage_counts_records_per_edge_minute_and_alerts_on_silence() {
    let s = Setup::new().await;
    let server = serve(s.receiver(ReceiverLimits::default())).await;
    let now = Utc::now();
    let t0 =
        DateTime::from_timestamp((now - TimeDelta::hours(2)).timestamp() / 60 * 60, 0).unwrap();
    // 120 records one second apart from t0 (minutes 0 and 1), 90 from t0 + 30 s (minutes
    // 0 and 1 again), a re-delivery that must not count twice, then 60 at t0 + 30 min.
    let a = ndjson(120, t0, "a");
    let b = ndjson(90, t0 + TimeDelta::seconds(30), "b");
    let c = ndjson(60, t0 + TimeDelta::minutes(30), "c");
    for body in [&a, &b, &b, &c] {
        let resp = post(&s.url(&server), bearer(&s.secret), gzip(body, 6)).await;
        assert_eq!(resp.status(), 200);
    }
    drop(server);
    let cov = push::coverage(&s.env.app.pool, s.zone, t0, t0 + TimeDelta::hours(1), now)
        .await
        .unwrap();
    assert_eq!(cov.datasets.len(), 1);
    let d = &cov.datasets[0];
    assert_eq!(d.records, 120 + 90 + 60);
    assert_eq!(d.minutes_with_records, 3);
    let per_minute: Vec<(DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT minute, records FROM push_minutes WHERE zone_id = $1 ORDER BY minute",
    )
    .bind(s.zone)
    .fetch_all(&s.env.app.pool)
    .await
    .unwrap();
    let m = |k: i64| t0 + TimeDelta::minutes(k);
    assert_eq!(
        per_minute,
        vec![(m(0), 60 + 30), (m(1), 60 + 60), (m(30), 60)]
    );
    // Quiet stretches of 10 minutes or more: minutes 2..30 and 31..60.
    assert_eq!(d.quiet, vec![(m(2), m(30)), (m(31), m(60))]);
    // Delivering now: healthy.
    assert_eq!(cov.destinations.len(), 1);
    assert_eq!(cov.destinations[0].alert, None);

    // Silent for 20 minutes after traffic: an alert naming the dataset.
    let later = now + TimeDelta::minutes(20);
    let sql = "UPDATE push_destinations SET last_batch_at = $2 WHERE id = $1";
    sqlx::query(sql)
        .bind(s.destination)
        .bind(t0 + TimeDelta::minutes(31))
        .execute(&s.env.app.pool)
        .await
        .unwrap();
    let silent = push::coverage(&s.env.app.pool, s.zone, t0, later, later)
        .await
        .unwrap();
    let alert = silent.destinations[0].alert.clone().expect("silence alert");
    assert!(
        alert.contains("http_requests") && alert.contains("records in the hour before"),
        "{alert}"
    );
    // Silent without traffic before (a quiet zone): no alert.
    sqlx::query(sql)
        .bind(s.destination)
        .bind(t0 + TimeDelta::minutes(100))
        .execute(&s.env.app.pool)
        .await
        .unwrap();
    let quiet_zone = push::coverage(
        &s.env.app.pool,
        s.zone,
        t0,
        later + TimeDelta::hours(2),
        later + TimeDelta::hours(2),
    )
    .await
    .unwrap();
    assert_eq!(quiet_zone.destinations[0].alert, None);
    // A disabled destination is not expected to deliver.
    push::disable_destination(&s.env.app.pool, s.destination)
        .await
        .unwrap();
    sqlx::query(sql)
        .bind(s.destination)
        .bind(t0 + TimeDelta::minutes(31))
        .execute(&s.env.app.pool)
        .await
        .unwrap();
    let disabled = push::coverage(&s.env.app.pool, s.zone, t0, later, later)
        .await
        .unwrap();
    assert_eq!(disabled.destinations[0].alert, None);
    assert!(disabled.destinations[0].disabled);
    s.env.teardown().await;
}
