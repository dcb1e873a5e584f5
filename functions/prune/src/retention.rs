//! The retention pass: archived windows whose end lies further back than their
//! retention (the zone's override, else the tenant's; days of 24 h) lose their object.
//!
//! Keyset pages by window id, at most `page_size` windows each, so memory is bounded
//! whatever the catalog holds. Per page, in ONE transaction: lock the page's windows
//! (and share-lock their zone and tenant rows, so a legal hold set meanwhile waits for
//! the page and then applies to everything after it), delete the objects with one
//! DeleteObjects call, mark the windows `pruned` and write a receipt per window, commit.
//! A crash before the commit leaves the windows `archived`: the next run deletes the
//! (already missing) keys again — S3 treats that as success — and commits. The
//! catalog rows (archived_objects) and chain links stay.

use std::collections::HashSet;

use rainlogs_core::storage::ObjectStore;
use uuid::Uuid;

use crate::context::{db, storage, PruneError, RetentionReport, Run};

/// `end_at + retention < as_of`, retention from the zone override else the tenant.
/// Days are 24-hour periods (no calendar or DST arithmetic).
const PAST_RETENTION: &str =
    "w.end_at + COALESCE(z.retention_days, t.retention_days) * interval '24 hours' < $1";

type Candidate = (i64, String, i64);

/// Runs the pass; `Ok(false)` when the time budget stopped it before the end.
pub(crate) async fn run(
    run: &mut Run<'_>,
    report: &mut RetentionReport,
) -> Result<bool, PruneError> {
    let opts = run.opts;
    let (held_windows, held_bytes, inside): (i64, i64, i64) = sqlx::query_as(&format!(
        "SELECT count(*) FILTER (WHERE past AND held),
                COALESCE(sum(size_bytes) FILTER (WHERE past AND held), 0)::bigint,
                count(*) FILTER (WHERE NOT past)
         FROM (SELECT a.size_bytes, (z.legal_hold OR t.legal_hold) AS held,
                      {PAST_RETENTION} AS past
               FROM windows w
               JOIN archived_objects a ON a.window_id = w.id
               JOIN zones z ON z.id = w.zone_id
               JOIN tenants t ON t.id = z.tenant_id
               WHERE w.state = 'archived' AND ($2::uuid IS NULL OR z.tenant_id = $2)) x"
    ))
    .bind(opts.as_of)
    .bind(opts.tenant)
    .fetch_one(run.pool)
    .await
    .map_err(db("count held and retained windows"))?;
    report.held_windows = held_windows as u64;
    report.held_bytes = held_bytes as u64;
    report.inside_retention = inside as u64;

    // A dry run takes no locks: it changes nothing and must not stall uploads.
    let locking = if opts.dry_run {
        ""
    } else {
        "FOR UPDATE OF w FOR SHARE OF z, t"
    };
    let page_sql = format!(
        "SELECT w.id, a.object_key, a.size_bytes
         FROM windows w
         JOIN archived_objects a ON a.window_id = w.id
         JOIN zones z ON z.id = w.zone_id
         JOIN tenants t ON t.id = z.tenant_id
         WHERE w.state = 'archived' AND w.id > $2
           AND ($3::uuid IS NULL OR z.tenant_id = $3)
           AND NOT z.legal_hold AND NOT t.legal_hold
           AND {PAST_RETENTION}
         ORDER BY w.id
         LIMIT $4
         {locking}"
    );
    let mut cursor = 0i64;
    loop {
        let mut tx = run.pool.begin().await.map_err(db("begin retention page"))?;
        let page: Vec<Candidate> = sqlx::query_as(&page_sql)
            .bind(opts.as_of)
            .bind(cursor)
            .bind(opts.tenant)
            .bind(i64::from(opts.page_size))
            .fetch_all(&mut *tx)
            .await
            .map_err(db(format!("read retention page after window {cursor}")))?;
        let (Some(first), Some(last)) = (page.first(), page.last()) else {
            return Ok(true);
        };
        let (first, last) = (first.0, last.0);
        cursor = last;
        report.pages += 1;
        report.largest_page = report.largest_page.max(page.len() as u64);
        let pruned: Vec<&Candidate> = if opts.dry_run {
            page.iter().collect()
        } else {
            let at = format!("retention page of windows {first}..={last}");
            let refused = delete(run.store, &page, &at).await?;
            let kept: Vec<&Candidate> = page
                .iter()
                .filter(|(id, key, _)| {
                    let no = refused.contains(key.as_str());
                    if no {
                        run.refusals.add(key, Some(*id));
                    }
                    !no
                })
                .collect();
            report.failed += (page.len() - kept.len()) as u64;
            commit(&mut tx, &kept, run.run_id, &at).await?;
            tx.commit().await.map_err(db(format!("commit {at}")))?;
            kept
        };
        for (_, key, size) in pruned {
            report.windows += 1;
            report.bytes += *size as u64;
            if report.sample.len() < opts.sample {
                report.sample.push(key.clone());
            }
        }
        if run.out_of_time() {
            return Ok(false);
        }
    }
}

/// One DeleteObjects call for the page; returns the keys S3 refused.
async fn delete(
    store: &ObjectStore,
    page: &[Candidate],
    at: &str,
) -> Result<HashSet<String>, PruneError> {
    // Catalog keys are full bucket keys (with the writer's prefix): deleted as such.
    let keys: Vec<String> = page.iter().map(|(_, key, _)| key.clone()).collect();
    let refused = store.root().delete_many(&keys).await.map_err(storage(at))?;
    Ok(refused.into_iter().collect())
}

/// Marks the windows pruned (only those still archived) and writes their receipts.
async fn commit(
    tx: &mut sqlx::PgConnection,
    windows: &[&Candidate],
    run_id: Uuid,
    at: &str,
) -> Result<(), PruneError> {
    let ids: Vec<i64> = windows.iter().map(|(id, _, _)| *id).collect();
    let moved: Vec<i64> = sqlx::query_scalar(
        "UPDATE windows SET state = 'pruned', state_since = now(), last_error = NULL
         WHERE id = ANY($1) AND state = 'archived'
         RETURNING id",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(db(format!("mark windows pruned, {at}")))?;
    // The rule is read under the page's share lock on zone and tenant, so it is the
    // retention the deletion was judged by.
    sqlx::query(
        "INSERT INTO deletion_receipts
           (run_id, rule, window_id, zone_id, tenant_id, object_key, object_sha256, size_bytes)
         SELECT $1, 'retention:' || COALESCE(z.retention_days, t.retention_days) || 'd',
                w.id, w.zone_id, z.tenant_id, a.object_key, a.object_sha256, a.size_bytes
         FROM windows w
         JOIN archived_objects a ON a.window_id = w.id
         JOIN zones z ON z.id = w.zone_id
         JOIN tenants t ON t.id = z.tenant_id
         WHERE w.id = ANY($2)
         ON CONFLICT (window_id) WHERE rule LIKE 'retention:%' DO NOTHING",
    )
    .bind(run_id)
    .bind(&moved)
    .execute(&mut *tx)
    .await
    .map_err(db(format!("write deletion receipts, {at}")))?;
    Ok(())
}
