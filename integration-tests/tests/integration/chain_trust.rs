//! Issue 11 item 10 (trust) against real Postgres and Garage: a database writer
//! without keys cannot rewrite the chain, roll it back or cut it short unnoticed;
//! deletion receipts are judged against retention and holds; the evidence bundle is
//! checked by the outside tool written from docs/CHAIN.md (docs/tools/chain_check.py).

use chrono::{TimeDelta, Utc};
use rainlogs_archive::chain::{self, LinkContent, LinkInput};
use rainlogs_archive::checkpoint;
use rainlogs_archive::evidence::{self, ExportRequest};
use rainlogs_archive::verify::Finding;
use rainlogs_sealed::kms::Kms;
use uuid::Uuid;

use super::verify_restore::{archive, Archive};

/// Every link of the zone, in seq order: (seq, window, start, end, object, plaintext, records).
type Row = (
    i64,
    i64,
    chrono::DateTime<Utc>,
    chrono::DateTime<Utc>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    i64,
);

async fn rows(a: &Archive) -> Vec<Row> {
    sqlx::query_as(
        "SELECT l.seq, l.window_id, w.start_at, w.end_at, l.object_sha256, l.plaintext_sha256,
                l.record_count
         FROM chain_links l JOIN windows w ON w.id = l.window_id
         WHERE l.zone_id = $1 ORDER BY l.seq",
    )
    .bind(a.zone)
    .fetch_all(&a.env.app.pool)
    .await
    .unwrap()
}

/// What an attacker with database access but no keys does: edit the record count of
/// the link at `edit_seq` (and its catalog row), then recompute every link as the
/// documented plain SHA-256 (version 1), consistently from the genesis.
async fn rewrite_with_plain_sha256(a: &Archive, edit_seq: i64) {
    let pool = &a.env.app.pool;
    let mut prev = chain::genesis_hash(a.zone);
    let mut tx = pool.begin().await.unwrap();
    for (seq, window, start, end, object, plaintext, mut records) in rows(a).await {
        if seq == edit_seq {
            records += 1;
            sqlx::query("UPDATE archived_objects SET record_count = $2 WHERE window_id = $1")
                .bind(window)
                .bind(records)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        let content = match (&object, &plaintext) {
            (Some(o), Some(p)) => LinkContent::Archived {
                object_sha256: o.clone().try_into().unwrap(),
                plaintext_sha256: p.clone().try_into().unwrap(),
                record_count: records as u64,
            },
            _ => LinkContent::Empty,
        };
        let input = LinkInput {
            zone_id: a.zone,
            window_start: start,
            window_end: end,
            content,
        };
        let hash = chain::link_hash(&input, seq as u64, &prev);
        sqlx::query(
            "UPDATE chain_links SET version = 1, key_version = NULL, prev_hash = $3,
                    link_hash = $4, record_count = $5
             WHERE zone_id = $1 AND seq = $2",
        )
        .bind(a.zone)
        .bind(seq)
        .bind(&prev[..])
        .bind(&hash[..])
        .bind(records)
        .execute(&mut *tx)
        .await
        .unwrap();
        prev = hash;
    }
    tx.commit().await.unwrap();
}

fn kinds(findings: &[Finding]) -> Vec<&'static str> {
    findings.iter().map(Finding::kind).collect()
}

#[tokio::test]
async fn a_chain_rewritten_consistently_with_plain_sha256_is_reported() {
    let a = archive(6, 30).await;
    assert_eq!(
        a.verify(false).await,
        vec![],
        "a fresh keyed chain verifies"
    );
    let links = rows(&a).await;
    assert!(links.len() >= 5);

    // Links written now are keyed: not the SHA-256 anyone could recompute.
    let versions: Vec<i16> =
        sqlx::query_scalar("SELECT version FROM chain_links WHERE zone_id = $1")
            .bind(a.zone)
            .fetch_all(&a.env.app.pool)
            .await
            .unwrap();
    assert!(versions.iter().all(|v| *v == chain::V2), "{versions:?}");

    rewrite_with_plain_sha256(&a, 2).await;
    let findings = a.verify(false).await;
    // With no checkpoint yet, unkeyed links nothing keyed vouches for are the finding
    // (on the code before keyed chains this rewrite verified clean).
    assert!(
        findings.iter().any(
            |f| matches!(f, Finding::ChainUnkeyed { from_seq: 0, to_seq, .. }
            if *to_seq == links.len() as i64 - 1)
        ),
        "{findings:?}"
    );
    // No link is reported broken: the rewrite is consistent — only the key tells.
    assert!(
        !kinds(&findings).contains(&"chain_link_broken"),
        "{findings:?}"
    );

    // Written as version 2 with the plain hash instead: every MAC fails.
    sqlx::query("UPDATE chain_links SET version = 2, key_version = 1 WHERE zone_id = $1")
        .bind(a.zone)
        .execute(&a.env.app.pool)
        .await
        .unwrap();
    let findings = a.verify(false).await;
    let broken = findings
        .iter()
        .filter(
            |f| matches!(f, Finding::ChainLinkBroken { reason, .. } if reason == "hash_mismatch"),
        )
        .count();
    assert_eq!(broken, links.len(), "{findings:?}");
    a.env.teardown().await;
}

#[tokio::test]
async fn checkpoints_in_the_bucket_catch_rewrites_truncation_and_forged_checkpoints() {
    let a = archive(6, 30).await;
    let (pool, store) = (&a.env.app.pool, &a.env.app.store);
    let now = Utc::now();
    let pass = checkpoint::checkpoint_all(pool, store, &a.kms, None, now)
        .await
        .unwrap();
    assert_eq!((pass.zones, pass.written), (1, 1), "{pass:?}");
    let again = checkpoint::checkpoint_all(pool, store, &a.kms, None, now)
        .await
        .unwrap();
    assert_eq!(
        again.written, 0,
        "an unchanged tip is not checkpointed twice"
    );
    let listed = checkpoint::list_zone(store, a.tenant, a.zone)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let cp = listed[0].parsed.clone().unwrap();
    assert_eq!(cp.first_keyed_seq, Some(0));
    assert_eq!(a.verify(false).await, vec![], "chain and checkpoint agree");

    // Links cut off the end (rolled back): the tip is behind the checkpoint.
    let links = rows(&a).await;
    let last = links.last().unwrap().clone();
    sqlx::query("DELETE FROM chain_links WHERE zone_id = $1 AND seq = $2")
        .bind(a.zone)
        .bind(last.0)
        .execute(pool)
        .await
        .unwrap();
    let findings = a.verify(false).await;
    assert!(
        findings.iter().any(
            |f| matches!(f, Finding::ChainBehindCheckpoint { checkpoint_seq, .. }
            if *checkpoint_seq == last.0 as u64)
        ),
        "{findings:?}"
    );
    // A checkpoint over a truncated chain is refused.
    let refused = checkpoint::checkpoint_zone(pool, store, &a.kms, a.zone, now).await;
    assert!(
        matches!(
            refused,
            Err(checkpoint::CheckpointError::ChainBroken { .. })
        ),
        "{refused:?}"
    );

    // The whole chain rewritten in plain SHA-256 (the last link too, with a new hash):
    // the checkpoint says keyed links begin at 0 and records another tip hash.
    let archive2 = archive(6, 30).await;
    let b = &archive2;
    checkpoint::checkpoint_all(&b.env.app.pool, &b.env.app.store, &b.kms, None, now)
        .await
        .unwrap();
    rewrite_with_plain_sha256(b, 1).await;
    let findings = b.verify(false).await;
    let k = kinds(&findings);
    assert!(k.contains(&"chain_unkeyed"), "{findings:?}");
    assert!(k.contains(&"checkpoint_mismatch"), "{findings:?}");

    // A checkpoint object edited in the bucket (its seq moved on) fails its MAC.
    let key = listed[0].key.clone();
    let mut forged = cp.clone();
    forged.link_hash = hex::encode([7u8; 32]);
    store
        .put(&key, serde_json::to_vec(&forged).unwrap().into())
        .await
        .unwrap();
    let findings = a.verify(false).await;
    assert!(
        findings.iter().any(
            |f| matches!(f, Finding::CheckpointInvalid { object_key, .. } if *object_key == key)
        ),
        "{findings:?}"
    );
    archive2.env.teardown().await;
    a.env.teardown().await;
}

#[tokio::test]
async fn a_receipt_inside_retention_or_under_hold_is_reported() {
    let a = archive(4, 30).await;
    let pool = &a.env.app.pool;
    // A database writer deletes an object inside retention and covers it with a
    // receipt, as if prune had done it.
    let (window, key, end): (i64, String, chrono::DateTime<Utc>) = sqlx::query_as(
        "SELECT w.id, a.object_key, w.end_at FROM windows w
         JOIN archived_objects a ON a.window_id = w.id
         WHERE w.zone_id = $1 AND w.state = 'archived' ORDER BY w.id LIMIT 1",
    )
    .bind(a.zone)
    .fetch_one(pool)
    .await
    .unwrap();
    a.env.app.store.root().delete(&key).await.unwrap();
    sqlx::query("UPDATE windows SET state = 'pruned' WHERE id = $1")
        .bind(window)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO deletion_receipts (run_id, rule, window_id, zone_id, tenant_id, object_key)
         VALUES ($1, 'retention:395d', $2, $3, $4, $5)",
    )
    .bind(Uuid::new_v4())
    .bind(window)
    .bind(a.zone)
    .bind(a.tenant)
    .bind(&key)
    .execute(pool)
    .await
    .unwrap();
    let findings = a.verify(false).await;
    assert!(
        findings.iter().any(
            |f| matches!(f, Finding::ReceiptInsideRetention { window: w, .. }
            if w.window_id == window)
        ),
        "{findings:?}"
    );
    assert_eq!(findings.len(), 1, "{findings:?}");

    // Dated past a 1-day retention: fine, unless a hold applies.
    sqlx::query("UPDATE tenants SET retention_days = 1 WHERE id = $1")
        .bind(a.tenant)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE deletion_receipts SET deleted_at = $2 WHERE window_id = $1")
        .bind(window)
        .bind(end + TimeDelta::days(2))
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(a.verify(false).await, vec![]);
    sqlx::query("UPDATE zones SET legal_hold = true WHERE id = $1")
        .bind(a.zone)
        .execute(pool)
        .await
        .unwrap();
    let findings = a.verify(false).await;
    assert!(
        findings.iter().any(
            |f| matches!(f, Finding::ReceiptUnderHold { window: w, hold_since: None, .. }
            if w.window_id == window)
        ),
        "{findings:?}"
    );
    a.env.teardown().await;
}

#[tokio::test]
async fn the_evidence_bundle_passes_the_outside_checker_and_shows_tampering() {
    let a = archive(4, 30).await;
    let (pool, store) = (&a.env.app.pool, &a.env.app.store);
    checkpoint::checkpoint_all(pool, store, &a.kms, None, Utc::now())
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("rl-evidence-{}", Uuid::new_v4()));
    let req = ExportRequest {
        tenant: a.tenant.to_string(),
        zone: None,
        out: dir.clone(),
        include_chain_key: true,
        with_objects: true,
        actor: "test".into(),
    };
    let m = evidence::export(pool, store, Some(&a.kms), &req, Utc::now())
        .await
        .unwrap();
    assert_eq!(m.zones.len(), 1);
    assert!(m.chain_keys_included);
    assert_eq!(m.zones[0].checkpoints, 1);
    for doc in ["CHAIN.md", "VERIFY.md", "RETENTION.md"] {
        assert!(dir.join("docs").join(doc).exists(), "{doc}");
    }
    let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/tools/chain_check.py");
    let check = |dir: &std::path::Path| {
        std::process::Command::new("python3")
            .arg(tool)
            .arg(dir)
            .output()
            .expect("python3 runs the checker")
    };
    let out = check(&dir);
    assert!(
        out.status.success(),
        "clean bundle: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // One record count edited in the bundle's chain: the checker finds the broken MAC.
    let chain_file = dir.join(format!("zones/{}/chain.jsonl", a.zone));
    let text = std::fs::read_to_string(&chain_file).unwrap();
    let mut lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let edited = lines
        .iter_mut()
        .find(|l| l["object_sha256"].is_string())
        .unwrap();
    edited["record_count"] = (edited["record_count"].as_i64().unwrap() + 1).into();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&chain_file, text).unwrap();
    let out = check(&dir);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hash_mismatch"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
    a.env.teardown().await;
}

/// Migration 0018 leaves existing links version 1: they keep verifying, the first
/// keyed link anchors them, and until one exists a checkpoint does.
#[tokio::test]
async fn existing_unkeyed_chains_still_verify_and_are_anchored_by_a_keyed_link_or_checkpoint() {
    use rainlogs_archive::ledger;
    use rainlogs_archive::verify::{Verifier, ZoneScope};
    use std::sync::Arc;

    let env = rainlogs_integration_tests::TestEnv::new().await;
    let pool = &env.app.pool;
    let now = Utc::now();
    let zone = env.insert_zone(60, now - TimeDelta::minutes(10)).await;
    ledger::plan_zone(pool, zone, now, &env.app.plan)
        .await
        .unwrap();
    let windows = ledger::windows_between(pool, zone, now - TimeDelta::hours(1), now)
        .await
        .unwrap();
    let tenant = chain::zone_tenant(pool, zone).await.unwrap();
    // Three links as the code before migration 0018 wrote them (plain SHA-256).
    let mut prev = chain::genesis_hash(zone);
    for (seq, w) in windows.iter().take(3).enumerate() {
        let input = LinkInput {
            zone_id: zone,
            window_start: w.start_at,
            window_end: w.end_at,
            content: LinkContent::Empty,
        };
        let hash = chain::link_hash(&input, seq as u64, &prev);
        sqlx::query("UPDATE windows SET state = 'empty' WHERE id = $1")
            .bind(w.id)
            .execute(pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO chain_links (zone_id, seq, window_id, prev_hash, link_hash, record_count,
                                      version)
             VALUES ($1, $2, $3, $4, $5, 0, 1)",
        )
        .bind(zone)
        .bind(seq as i64)
        .bind(w.id)
        .bind(&prev[..])
        .bind(&hash[..])
        .execute(pool)
        .await
        .unwrap();
        prev = hash;
    }
    let kms = Arc::new(rainlogs_integration_tests::test_kms(tenant));
    let verifier = Verifier {
        pool: pool.clone(),
        store: env.app.store.clone(),
        kms: Some(kms.clone()),
        concurrency: 2,
    };
    let scope = ZoneScope {
        zone_id: zone,
        from: windows[0].start_at,
        to: windows[2].end_at,
    };
    let verify = || async {
        let mut found = Vec::new();
        verifier
            .verify_zone(scope, false, &mut |f| {
                found.push(f);
                Ok(())
            })
            .await
            .unwrap();
        found
    };
    // Plain links nothing keyed vouches for yet.
    let found = verify().await;
    assert_eq!(kinds(&found), vec!["chain_unkeyed"], "{found:?}");
    assert!(chain::verify_zone(pool, kms.as_ref(), zone)
        .await
        .unwrap()
        .is_valid());

    // A checkpoint anchors them.
    let c = checkpoint::checkpoint_zone(pool, &env.app.store, kms.as_ref(), zone, now)
        .await
        .unwrap()
        .expect("checkpoint written");
    assert_eq!((c.seq, c.first_keyed_seq), (2, None));
    assert_eq!(verify().await, vec![]);

    // The next link is keyed and follows the last plain one.
    let w = &windows[3];
    sqlx::query("UPDATE windows SET state = 'empty' WHERE id = $1")
        .bind(w.id)
        .execute(pool)
        .await
        .unwrap();
    let key = kms.chain_key(tenant, None).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let link = chain::append(
        &mut tx,
        w.id,
        &LinkInput {
            zone_id: zone,
            window_start: w.start_at,
            window_end: w.end_at,
            content: LinkContent::Empty,
        },
        &key,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        (link.seq, link.version, link.prev_hash),
        (3, chain::V2, prev)
    );
    let scope4 = ZoneScope {
        to: w.end_at,
        ..scope
    };
    let mut found = Vec::new();
    verifier
        .verify_zone(scope4, false, &mut |f| {
            found.push(f);
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(found, vec![]);
    // A plain link written after the checkpoint said "all plain up to 2" is reported.
    sqlx::query(
        "UPDATE chain_links SET version = 1, key_version = NULL WHERE zone_id = $1 AND seq = 3",
    )
    .bind(zone)
    .execute(pool)
    .await
    .unwrap();
    let mut found = Vec::new();
    verifier
        .verify_zone(scope4, false, &mut |f| {
            found.push(f);
            Ok(())
        })
        .await
        .unwrap();
    let k = kinds(&found);
    assert!(k.contains(&"chain_unkeyed"), "{found:?}");
    env.teardown().await;
}
