//! `rainlogs verify` as an outsider's evidence (issue 18, items 4–8), against real
//! Postgres, Redis and Garage on archives built by the demo machinery:
//!
//! - the bucket is compared with the catalog both ways: a stray object, an object for a
//!   window recorded empty, an object naming a span no window has (`object_unexpected`,
//!   with the window when the key parses) and an object the catalog names but the
//!   bucket lacks (`object_missing`), the same whatever the listing page size, and from
//!   a key on (a slice of the history);
//! - windows are checked against each other: two archived windows over the same
//!   minutes (`objects_overlap`), overlapping windows (`windows_overlap`), and time
//!   between windows (`time_missing`);
//! - `--deep` keeps the size and hash findings of an object that does not open;
//! - the default range starts exactly at the zone's first window and the report says
//!   which range was checked;
//! - the catalog records full bucket keys: verify and restore find every object through
//!   the bucket's root or another prefix, and rows from before migration 0019 are
//!   completed with the configured prefix, once.

use chrono::{DateTime, TimeDelta, Utc};
use rainlogs_archive::pipeline::archive_key;
use rainlogs_archive::verify::{bucket, Finding, ZoneScope};
use rainlogs_cli::verify;
use sha2::{Digest, Sha256};

use super::verify_restore::{archive, tmp, window_of, Archive};

/// A window of the zone as the tampering below needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Row {
    id: i64,
    start_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
    object_key: String,
}

/// The zone's archived windows in time order.
async fn by_time(a: &Archive) -> Vec<Row> {
    sqlx::query_as(
        "SELECT w.id, w.start_at, w.end_at, a.object_key FROM windows w
         JOIN archived_objects a ON a.window_id = w.id
         WHERE w.zone_id = $1 AND w.state = 'archived' ORDER BY w.start_at",
    )
    .bind(a.zone)
    .fetch_all(&a.env.app.pool)
    .await
    .unwrap()
}

/// Inserts a pulled window of the zone in `state`; returns its id.
async fn insert_window(a: &Archive, start: DateTime<Utc>, end: DateTime<Utc>, state: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO windows (zone_id, start_at, end_at, state)
         VALUES ($1, $2, $3, $4::window_state) RETURNING id",
    )
    .bind(a.zone)
    .bind(start)
    .bind(end)
    .bind(state)
    .fetch_one(&a.env.app.pool)
    .await
    .unwrap()
}

fn kinds(findings: &[Finding]) -> Vec<&'static str> {
    let mut k: Vec<_> = findings.iter().map(Finding::kind).collect();
    k.sort();
    k
}

#[tokio::test]
async fn the_bucket_is_compared_with_the_catalog_both_ways() {
    let a = archive(8, 30).await;
    let rows = by_time(&a).await;
    assert!(rows.len() >= 6, "{rows:?}");
    let store = &a.env.app.store;
    // Catalog keys are full bucket keys: objects named by them are reached from the root.
    let root = store.root();
    let prefix = bucket::zone_prefix(a.tenant, a.zone);

    // A stray: under the zone's prefix, not an archive key at all.
    let stray = format!("{prefix}notes/readme.txt");
    store
        .put(&stray, "not an archive object".into())
        .await
        .unwrap();
    // An object for a window recorded empty (one minute after the last window).
    let empty = insert_window(&a, a.last, a.last + TimeDelta::minutes(1), "empty").await;
    let empty_key = archive_key(a.tenant, a.zone, a.last, a.last + TimeDelta::minutes(1));
    root.copy(&rows[0].object_key, &store.full_key(&empty_key))
        .await
        .unwrap();
    // An object naming a span no window has (inside the range).
    let (s, e) = (
        rows[1].start_at + TimeDelta::seconds(30),
        rows[1].end_at + TimeDelta::seconds(30),
    );
    let unknown_key = archive_key(a.tenant, a.zone, s, e);
    root.copy(&rows[1].object_key, &store.full_key(&unknown_key))
        .await
        .unwrap();
    // The other direction: the catalog names an object the bucket lacks.
    let gone = &rows[3];
    root.delete(&gone.object_key).await.unwrap();

    let mut args = a.args(false);
    args.to = Some(a.last + TimeDelta::minutes(1));
    let (outcome, findings) = a.verify_with(&args).await;
    assert_eq!(
        kinds(&findings),
        vec![
            "link_missing",
            "object_missing",
            "object_unexpected",
            "object_unexpected",
            "object_unexpected"
        ],
        "{findings:#?}"
    );
    let unexpected = |key: &str| {
        findings.iter().find_map(|f| match f {
            Finding::ObjectUnexpected {
                object_key,
                window_id,
                window_start,
                window_end,
                state,
                size,
                ..
            } if object_key == key => {
                Some((*window_id, *window_start, *window_end, state.clone(), *size))
            }
            _ => None,
        })
    };
    // Findings name the full bucket keys, as the catalog does.
    let (stray, empty_key, unknown_key) = (
        store.full_key(&stray),
        store.full_key(&empty_key),
        store.full_key(&unknown_key),
    );
    assert_eq!(
        unexpected(&stray),
        Some((None, None, None, None, 21)),
        "{findings:#?}"
    );
    let (id, start, end, state, _) = unexpected(&empty_key).expect("empty window's object");
    assert_eq!(
        (id, start, end, state.as_deref()),
        (
            Some(empty),
            Some(a.last),
            Some(a.last + TimeDelta::minutes(1)),
            Some("empty")
        )
    );
    let (id, start, end, state, _) = unexpected(&unknown_key).expect("unknown span's object");
    assert_eq!((id, start, end, state), (None, Some(s), Some(e), None));
    assert!(findings.iter().any(|f| matches!(f,
        Finding::ObjectMissing { window, object_key }
            if window.window_id == gone.id && *object_key == gone.object_key)));
    // Every object under the prefix was listed: the archive's, less one, plus three.
    assert_eq!(outcome.counts.objects_listed, rows.len() as u64 + 2);

    // Paged listing: two keys a page finds the same.
    let scope = ZoneScope {
        zone_id: a.zone,
        from: a.first,
        to: a.last + TimeDelta::minutes(1),
    };
    let mut paged = Vec::new();
    let listed = bucket::compare(&a.env.app.pool, store, a.tenant, &scope, 2, &mut |f| {
        paged.push(f);
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(listed.listed, rows.len() as u64 + 2);
    let mut want: Vec<Finding> = findings
        .iter()
        .filter(|f| f.kind() == "object_unexpected")
        .cloned()
        .collect();
    want.sort_by_key(|f| f.to_string());
    paged.sort_by_key(|f| f.to_string());
    assert_eq!(paged, want);

    // A slice of the history starts the listing after a key (StartAfter), and pages
    // through the rest one key at a time.
    let slice = ZoneScope {
        from: rows[1].start_at,
        to: rows[1].end_at,
        ..scope
    };
    let mut sliced = Vec::new();
    bucket::compare(&a.env.app.pool, store, a.tenant, &slice, 1, &mut |f| {
        sliced.push(f);
        Ok(())
    })
    .await
    .unwrap();
    let mut sliced_keys: Vec<String> = sliced
        .iter()
        .map(|f| {
            serde_json::to_value(f).unwrap()["object_key"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    sliced_keys.sort();
    let mut want_keys = vec![stray.clone(), unknown_key.clone()];
    want_keys.sort();
    assert_eq!(sliced_keys, want_keys, "{sliced:#?}");

    // A range of one window lists only its days and reports only its objects.
    let mut narrow = a.args(false);
    narrow.from = Some(rows[1].start_at);
    narrow.to = Some(rows[1].end_at);
    let (_, findings) = a.verify_with(&narrow).await;
    assert_eq!(
        kinds(&findings),
        vec!["object_unexpected", "object_unexpected"],
        "{findings:#?}"
    );

    // The JSON report names the finding and its window's state.
    let report = tmp("report.json");
    args.report = Some(report.clone());
    verify::run(&a.env.src, &args).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let f = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["object_key"] == empty_key.as_str())
        .expect("in the report");
    assert_eq!(f["type"], "object_unexpected");
    assert_eq!(f["state"], "empty");
    assert_eq!(f["window_id"], empty);
    a.env.teardown().await;
}

#[tokio::test]
async fn overlapping_windows_double_archived_minutes_and_gaps_are_named() {
    let a = archive(8, 30).await;
    let rows = by_time(&a).await;
    assert!(rows.len() >= 7, "{rows:?}");
    let pool = &a.env.app.pool;
    let store = &a.env.app.store;

    // The minutes of rows[0] and rows[1] archived a second time, by a window straddling
    // them, with its own object and catalog row (a copy of rows[0]'s).
    let (s, e) = (
        rows[0].start_at + TimeDelta::seconds(30),
        rows[0].end_at + TimeDelta::seconds(30),
    );
    let twice = insert_window(&a, s, e, "archived").await;
    let twice_key = store.full_key(&archive_key(a.tenant, a.zone, s, e));
    store
        .root()
        .copy(&rows[0].object_key, &twice_key)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO archived_objects (window_id, object_key, size_bytes, object_sha256,
             plaintext_sha256, plaintext_bytes, record_count, key_version)
         SELECT $1, $2, size_bytes, object_sha256, plaintext_sha256, plaintext_bytes,
                record_count, key_version FROM archived_objects WHERE window_id = $3",
    )
    .bind(twice)
    .bind(&twice_key)
    .bind(rows[0].id)
    .execute(pool)
    .await
    .unwrap();
    // An empty window inside rows[3]'s minute.
    let inside = insert_window(
        &a,
        rows[3].start_at + TimeDelta::seconds(10),
        rows[3].start_at + TimeDelta::seconds(20),
        "empty",
    )
    .await;
    // rows[5]'s window gone from the ledger (its link and catalog row with it).
    let gone = &rows[5];
    for sql in [
        "DELETE FROM chain_links WHERE window_id = $1",
        "DELETE FROM archived_objects WHERE window_id = $1",
        "DELETE FROM windows WHERE id = $1",
    ] {
        sqlx::query(sql).bind(gone.id).execute(pool).await.unwrap();
    }

    let findings = a.verify(false).await;
    let overlaps: Vec<&Finding> = findings
        .iter()
        .filter(|f| matches!(f.kind(), "objects_overlap" | "windows_overlap"))
        .collect();
    assert_eq!(overlaps.len(), 3, "{findings:#?}");
    assert!(
        findings.iter().any(|f| matches!(f,
            Finding::ObjectsOverlap { window, other_window_id, object_key, other_object_key, from, to, .. }
                if window.window_id == twice && *other_window_id == rows[0].id
                   && object_key.as_deref() == Some(twice_key.as_str())
                   && other_object_key.as_deref() == Some(rows[0].object_key.as_str())
                   && (*from, *to) == (s, rows[0].end_at))),
        "{findings:#?}"
    );
    assert!(
        findings.iter().any(|f| matches!(f,
            Finding::ObjectsOverlap { window, other_window_id, from, to, .. }
                if window.window_id == rows[1].id && *other_window_id == twice
                   && (*from, *to) == (rows[1].start_at, e))),
        "{findings:#?}"
    );
    assert!(
        findings.iter().any(|f| matches!(f,
            Finding::WindowsOverlap { window, state, other_window_id, other_state, from, to, .. }
                if window.window_id == inside && state == "empty"
                   && *other_window_id == rows[3].id && other_state == "archived"
                   && *from == rows[3].start_at + TimeDelta::seconds(10)
                   && *to == rows[3].start_at + TimeDelta::seconds(20))),
        "{findings:#?}"
    );
    assert!(
        findings.contains(&Finding::TimeMissing {
            zone_id: a.zone,
            from: gone.start_at,
            to: gone.end_at,
        }),
        "{findings:#?}"
    );
    // The removed window's object is still in the bucket, its span named by its key.
    assert!(
        findings.iter().any(|f| matches!(f,
            Finding::ObjectUnexpected { object_key, window_id: None, window_start, .. }
                if *object_key == gone.object_key && *window_start == Some(gone.start_at))),
        "{findings:#?}"
    );
    a.env.teardown().await;
}

#[tokio::test]
async fn deep_keeps_every_finding_of_an_object_that_does_not_open() {
    let a = archive(8, 30).await;
    let rows = by_time(&a).await;
    let root = a.env.app.store.root();
    let store = &root;
    let (victim, other) = (&rows[2], &rows[4]);

    // Another window's valid object copied over this one's.
    let original = store.get(&victim.object_key).await.unwrap();
    let foreign = store.get(&other.object_key).await.unwrap();
    store
        .put(&victim.object_key, foreign.clone())
        .await
        .unwrap();
    let shallow = a.verify(false).await;
    let deep = a.verify(true).await;
    assert!(
        deep.iter().any(
            |f| matches!(f, Finding::HeaderContextMismatch { window, code, .. }
            if window.window_id == victim.id && code == "sealed.wrong_window")
        ),
        "{deep:#?}"
    );
    let foreign_sha = hex::encode(Sha256::digest(&foreign));
    assert!(
        deep.iter().any(|f| matches!(f, Finding::ObjectHashMismatch { window, actual_sha256, matches_link: false, .. }
            if window.window_id == victim.id && *actual_sha256 == foreign_sha)),
        "deep reports the hash too: {deep:#?}"
    );
    for f in &shallow {
        assert!(deep.contains(f), "deep lost {f:?}: {deep:#?}");
    }
    assert!(
        deep.iter().all(|f| window_of(f) == Some(victim.id)),
        "{deep:#?}"
    );

    // Its own object truncated: does not open, and is shorter and different.
    store
        .put(&victim.object_key, original.slice(..original.len() / 2))
        .await
        .unwrap();
    let deep = a.verify(true).await;
    let mut k = kinds(&deep);
    k.dedup();
    assert!(
        [
            "object_hash_mismatch",
            "object_size_mismatch",
            "object_unreadable"
        ]
        .iter()
        .all(|want| k.contains(want)),
        "{deep:#?}"
    );
    a.env.teardown().await;
}

#[tokio::test]
async fn the_default_range_starts_exactly_at_the_first_window_and_is_reported() {
    let a = archive(8, 30).await;
    // A backfill start the planner could not honour to the second (it aligns windows to
    // the cadence, and plans none older than Logpull's 7 days).
    sqlx::query("UPDATE zones SET backfill_from = $2 WHERE id = $1")
        .bind(a.zone)
        .bind(a.first - TimeDelta::seconds(150))
        .execute(&a.env.app.pool)
        .await
        .unwrap();
    let mut args = a.args(false);
    args.from = None;
    let (outcome, findings) = a.verify_with(&args).await;
    assert_eq!(
        findings,
        vec![],
        "no time is missing before the first window"
    );
    assert_eq!(
        (outcome.zones[0].from, outcome.zones[0].to),
        (a.first, a.last)
    );

    // The report states the range checked, to the microsecond.
    let report = tmp("report.json");
    args.report = Some(report.clone());
    verify::run(&a.env.src, &args).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let zone = &json["zones"][0];
    let at = |v: &serde_json::Value| {
        DateTime::parse_from_rfc3339(v.as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    assert_eq!((at(&zone["from"]), at(&zone["to"])), (a.first, a.last));
    assert_eq!(json["result"], "clean");
    a.env.teardown().await;
}

#[tokio::test]
async fn catalog_keys_are_full_bucket_keys_read_whatever_the_readers_prefix() {
    let a = archive(6, 20).await;
    let pool = &a.env.app.pool;
    let store = &a.env.app.store;
    assert!(
        !store.prefix().is_empty(),
        "tests write under their own prefix"
    );
    let rows = by_time(&a).await;
    for r in &rows {
        assert!(
            r.object_key.starts_with(store.prefix()) && r.object_key.contains("/archive/"),
            "the catalog records the full bucket key: {}",
            r.object_key
        );
    }

    // Verify reading through the bucket's root, and through another prefix: every
    // object found (the listing of another prefix holds none of them: nothing stray).
    let args = a.args(true);
    let (outcome, findings) = a.verify_through(store.root(), &args).await;
    assert_eq!(findings, vec![]);
    assert_eq!(outcome.counts.objects_deep, rows.len() as u64);
    let mut src = a.env.src.clone();
    src.set("RAINLOGS_S3_PREFIX", "another-deployment/");
    let cfg = rainlogs_core::config::S3Config::from_source(&src).unwrap();
    let other = rainlogs_core::storage::ObjectStore::connect(&cfg).await;
    let (_, findings) = a.verify_through(other, &args).await;
    assert_eq!(findings, vec![]);

    // Restore by a process configured with another prefix gives the same records.
    let out = tmp("restore.ndjson");
    rainlogs_cli::logs::get(&src, &a.get_args(a.first, a.last, &out))
        .await
        .expect("restore through another prefix");
    assert_eq!(
        super::verify_restore::lines(&std::fs::read(&out).unwrap()),
        a.served(a.first, a.last)
    );

    // Rows from before migration 0019 (relative to the writer's prefix) are completed
    // with the configured prefix, once.
    sqlx::query("UPDATE archived_objects SET object_key = substr(object_key, length($1) + 1)")
        .bind(store.prefix())
        .execute(pool)
        .await
        .unwrap();
    // Unmigrated, a reader cannot tell where they are: missing from where the catalog
    // points, and the listed objects unknown to the catalog.
    let before = a.verify(false).await;
    assert_eq!(
        kinds(&before)
            .iter()
            .filter(|k| **k == "object_missing")
            .count(),
        rows.len(),
        "{before:#?}"
    );
    assert!(
        before
            .iter()
            .all(|f| matches!(f.kind(), "object_missing" | "object_unexpected")),
        "{before:#?}"
    );
    let done = rainlogs_archive::pipeline::complete_catalog_keys(pool, store.prefix())
        .await
        .unwrap();
    assert_eq!(done, rows.len() as u64);
    assert_eq!(
        rainlogs_archive::pipeline::complete_catalog_keys(pool, store.prefix())
            .await
            .unwrap(),
        0,
        "a second run changes nothing"
    );
    assert_eq!(a.verify(true).await, vec![]);
    a.env.teardown().await;
}
