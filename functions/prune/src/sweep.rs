//! The sweeps: objects no rule of the catalog accounts for.
//!
//! - Orphans: objects under `archive/` without an `archived_objects` row, older than
//!   the grace period (upload puts the object *before* committing its row, so a young
//!   uncatalogued object may be a window mid-upload) and whose window — read back from
//!   the key — is not in flight. They are **reported, never deleted**: an archive object
//!   the catalog does not know may be the only copy of a window (a Postgres restored
//!   from an older backup, two deployments sharing a bucket, catalog rows dropped by a
//!   database-only attacker), and it is self-describing, so it can be re-adopted.
//! - Stale staging: objects under `staging/` older than the age threshold whose window
//!   is final or gone (a window in flight still needs its staged payload). Receipt
//!   rule `staging-stale`.
//!
//! The bucket is listed one page at a time (ListObjectsV2, `page_size` keys) and each
//! page is judged and deleted before the next is read, so memory is bounded by the
//! page. Per page, one transaction share-locks the windows the keys name (a window
//! cannot move back into flight while its object is being deleted), DeleteObjects
//! removes the page's doomed keys, and the receipts are committed.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use rainlogs_archive::pipeline::{parse_archive_key, parse_staging_key};
use rainlogs_core::storage::ObjectInfo;
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use crate::context::{db, storage, PruneError, Run, SweepReport};

/// The window states that still need their objects (see `WindowState::IN_FLIGHT`).
/// Compared as text so a state added by a later migration is simply "not in flight".
const IN_FLIGHT: &str = "w.state::text IN ('planned', 'fetching', 'staged', 'sealed')";

/// One object a sweep deletes, with what its receipt records.
struct Doomed {
    key: String,
    size: u64,
    window: Option<i64>,
    zone: Option<Uuid>,
    tenant: Option<Uuid>,
}

/// Orphan sweep over `archive/` (or `archive/{tenant}/`); `Ok(false)` when the time
/// budget stopped it.
pub(crate) async fn orphans(
    run: &mut Run<'_>,
    report: &mut SweepReport,
) -> Result<bool, PruneError> {
    let prefix = match run.opts.tenant {
        Some(t) => format!("archive/{t}/"),
        None => "archive/".to_owned(),
    };
    sweep(run, report, &prefix, Sweep::Orphans).await
}

/// Stale-staging sweep over `staging/` (or the tenant's zones' staging prefixes).
pub(crate) async fn staging(
    run: &mut Run<'_>,
    report: &mut SweepReport,
) -> Result<bool, PruneError> {
    let prefixes: Vec<String> = match run.opts.tenant {
        None => vec!["staging/".to_owned()],
        Some(t) => {
            let zones: Vec<Uuid> =
                sqlx::query_scalar!("SELECT id FROM zones WHERE tenant_id = $1 ORDER BY id", t)
                    .fetch_all(run.pool)
                    .await
                    .map_err(db(format!("list zones of tenant {t}")))?;
            zones.iter().map(|z| format!("staging/{z}/")).collect()
        }
    };
    for prefix in prefixes {
        if !sweep(run, report, &prefix, Sweep::Staging).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

#[derive(Clone, Copy)]
enum Sweep {
    Orphans,
    Staging,
}

impl Sweep {
    fn rule(self) -> &'static str {
        match self {
            Sweep::Orphans => "orphan",
            Sweep::Staging => "staging-stale",
        }
    }
}

async fn sweep(
    run: &mut Run<'_>,
    report: &mut SweepReport,
    prefix: &str,
    kind: Sweep,
) -> Result<bool, PruneError> {
    let min_age = match kind {
        Sweep::Orphans => run.opts.orphan_grace,
        Sweep::Staging => run.opts.staging_max_age,
    };
    let mut token = None;
    loop {
        let (objects, next) = run
            .store
            .list_page(prefix, token, run.opts.page_size as i32)
            .await
            .map_err(storage(format!("{} sweep: list {prefix}", kind.rule())))?;
        report.pages += 1;
        report.listed += objects.len() as u64;
        let old: Vec<ObjectInfo> = objects
            .into_iter()
            .filter(|o| {
                let old_enough = older_than(o.last_modified, min_age, run.opts.as_of);
                if !old_enough {
                    report.kept_young += 1;
                }
                old_enough
            })
            .collect();
        if !old.is_empty() {
            page(run, report, old, kind).await?;
        }
        match next {
            None => return Ok(true),
            Some(t) => token = Some(t),
        }
        if run.out_of_time() {
            return Ok(false);
        }
    }
}

/// Whether an object written at `modified` is older than `min_age` at `as_of`. An
/// object whose age the listing does not tell is treated as young: never guess towards
/// deleting.
fn older_than(
    modified: Option<DateTime<Utc>>,
    min_age: chrono::TimeDelta,
    as_of: DateTime<Utc>,
) -> bool {
    modified.is_some_and(|m| m + min_age < as_of)
}

/// Judges, deletes and receipts one listing page of old-enough objects.
async fn page(
    run: &mut Run<'_>,
    report: &mut SweepReport,
    objects: Vec<ObjectInfo>,
    kind: Sweep,
) -> Result<(), PruneError> {
    let first_key = objects.first().map(|o| o.key.clone()).unwrap_or_default();
    let at = format!("{} sweep page from {first_key}", kind.rule());
    let mut tx = run.pool.begin().await.map_err(db(format!("begin {at}")))?;
    let doomed = match kind {
        Sweep::Orphans => judge_orphans(&mut tx, run.store, objects, report, &at).await?,
        Sweep::Staging => judge_staging(&mut tx, objects, report, &at).await?,
    };
    if doomed.is_empty() {
        return Ok(());
    }
    if matches!(kind, Sweep::Orphans) {
        // Report only: nothing under archive/ is deleted by a sweep.
        for d in &doomed {
            report.reported += 1;
            report.bytes += d.size;
            if report.sample.len() < run.opts.sample {
                report.sample.push(d.key.clone());
            }
            tracing::warn!(key = %d.key, window = ?d.window, "archive object without a catalog row (reported, kept)");
        }
        return Ok(());
    }
    let deleted: Vec<&Doomed> = if run.opts.dry_run {
        doomed.iter().collect()
    } else {
        let keys: Vec<String> = doomed.iter().map(|d| d.key.clone()).collect();
        let refused: HashSet<String> = run
            .store
            .delete_many(&keys)
            .await
            .map_err(storage(at.clone()))?
            .into_iter()
            .collect();
        let deleted: Vec<&Doomed> = doomed
            .iter()
            .filter(|d| {
                let no = refused.contains(&d.key);
                if no {
                    run.refusals.add(&d.key, d.window);
                }
                !no
            })
            .collect();
        report.failed += (doomed.len() - deleted.len()) as u64;
        receipts(&mut tx, &deleted, run.run_id, kind.rule(), &at).await?;
        tx.commit().await.map_err(db(format!("commit {at}")))?;
        deleted
    };
    for d in deleted {
        report.deleted += 1;
        report.bytes += d.size;
        if report.sample.len() < run.opts.sample {
            report.sample.push(d.key.clone());
        }
    }
    Ok(())
}

/// Of old archive objects: those without a catalog row whose window (if the key names
/// one) is not in flight.
async fn judge_orphans(
    tx: &mut Transaction<'_, Postgres>,
    store: &rainlogs_core::storage::ObjectStore,
    objects: Vec<ObjectInfo>,
    report: &mut SweepReport,
    at: &str,
) -> Result<Vec<Doomed>, PruneError> {
    // The catalog records full bucket keys; the listing is relative to the prefix.
    let keys: Vec<String> = objects.iter().map(|o| store.full_key(&o.key)).collect();
    let catalogued: HashSet<String> = sqlx::query_scalar!(
        "SELECT object_key FROM archived_objects WHERE object_key = ANY($1)",
        &keys
    )
    .fetch_all(&mut **tx)
    .await
    .map_err(db(format!("read catalog, {at}")))?
    .into_iter()
    .collect();
    let mut doomed = Vec::new();
    for o in objects {
        if catalogued.contains(&store.full_key(&o.key)) {
            continue;
        }
        let parts = parse_archive_key(&o.key);
        doomed.push(Doomed {
            key: o.key,
            size: o.size,
            window: None,
            zone: parts.as_ref().map(|p| p.zone),
            tenant: parts.as_ref().map(|p| p.tenant),
        });
    }
    // The windows the uncatalogued keys name, share-locked for this page.
    let (mut qk, mut qz, mut qs, mut qe, mut qb) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for d in &doomed {
        if let Some(p) = parse_archive_key(&d.key) {
            qk.push(d.key.clone());
            qz.push(p.zone);
            qs.push(p.start);
            qe.push(p.end);
            qb.push(p.batch.map(|(id, _)| id));
        }
    }
    // A pushed batch's key names its batch (batch spans may repeat); a pulled
    // window's key names its span, unique among pulled windows.
    let windows: Vec<WindowOf> = sqlx::query_as(&format!(
        "SELECT k.key, w.id, {IN_FLIGHT}, NULL::uuid
         FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::timestamptz[], $5::uuid[])
              AS k(key, zone, s, e, batch)
         JOIN windows w ON w.zone_id = k.zone AND w.start_at = k.s AND w.end_at = k.e
                       AND w.batch_id IS NOT DISTINCT FROM k.batch
         FOR SHARE OF w"
    ))
    .bind(&qk)
    .bind(&qz)
    .bind(&qs)
    .bind(&qe)
    .bind(&qb)
    .fetch_all(&mut **tx)
    .await
    .map_err(db(format!("read windows of uncatalogued objects, {at}")))?;
    Ok(claim(doomed, windows, report))
}

/// Of old staging objects: those whose window is final or gone.
async fn judge_staging(
    tx: &mut Transaction<'_, Postgres>,
    objects: Vec<ObjectInfo>,
    report: &mut SweepReport,
    at: &str,
) -> Result<Vec<Doomed>, PruneError> {
    let (mut qk, mut qz, mut qw) = (Vec::new(), Vec::new(), Vec::new());
    let doomed: Vec<Doomed> = objects
        .into_iter()
        .map(|o| {
            let parts = parse_staging_key(&o.key);
            // A pushed batch's staged object (`staging/push/…`) is found through its
            // batch row; one without a row was never acknowledged.
            qk.push(o.key.clone());
            qz.push(parts.map(|p| p.0));
            qw.push(parts.map(|p| p.1));
            Doomed {
                key: o.key,
                size: o.size,
                window: None,
                zone: parts.map(|p| p.0),
                tenant: None,
            }
        })
        .collect();
    let windows: Vec<WindowOf> = sqlx::query_as(&format!(
        "SELECT k.key, w.id, {IN_FLIGHT}, z.tenant_id
         FROM unnest($1::text[], $2::uuid[], $3::bigint[]) AS k(key, zone, id)
         LEFT JOIN push_batches b ON k.id IS NULL AND b.staging_key = k.key
         JOIN windows w ON (w.id = k.id AND w.zone_id = k.zone) OR w.batch_id = b.id
         JOIN zones z ON z.id = w.zone_id
         FOR SHARE OF w"
    ))
    .bind(&qk)
    .bind(&qz)
    .bind(&qw)
    .fetch_all(&mut **tx)
    .await
    .map_err(db(format!("read windows of staged objects, {at}")))?;
    Ok(claim(doomed, windows, report))
}

/// The window a key names: (key, window id, in flight, its tenant when looked up).
type WindowOf = (String, i64, bool, Option<Uuid>);

/// Attaches each doomed object's window; objects of in-flight windows are kept.
fn claim(doomed: Vec<Doomed>, windows: Vec<WindowOf>, report: &mut SweepReport) -> Vec<Doomed> {
    let by_key: HashMap<String, (i64, bool, Option<Uuid>)> = windows
        .into_iter()
        .map(|(k, id, in_flight, tenant)| (k, (id, in_flight, tenant)))
        .collect();
    doomed
        .into_iter()
        .filter_map(|mut d| match by_key.get(&d.key) {
            Some((_, true, _)) => {
                report.kept_in_flight += 1;
                None
            }
            Some((id, false, tenant)) => {
                d.window = Some(*id);
                d.tenant = tenant.or(d.tenant);
                Some(d)
            }
            None => Some(d),
        })
        .collect()
}

async fn receipts(
    tx: &mut PgConnection,
    deleted: &[&Doomed],
    run_id: Uuid,
    rule: &str,
    at: &str,
) -> Result<(), PruneError> {
    let windows: Vec<Option<i64>> = deleted.iter().map(|d| d.window).collect();
    let zones: Vec<Option<Uuid>> = deleted.iter().map(|d| d.zone).collect();
    let tenants: Vec<Option<Uuid>> = deleted.iter().map(|d| d.tenant).collect();
    let keys: Vec<&str> = deleted.iter().map(|d| d.key.as_str()).collect();
    let sizes: Vec<i64> = deleted.iter().map(|d| d.size as i64).collect();
    sqlx::query!(
        "INSERT INTO deletion_receipts
           (run_id, rule, window_id, zone_id, tenant_id, object_key, size_bytes)
         SELECT $1, $2, r.window_id, r.zone_id, r.tenant_id, r.object_key, r.size_bytes
         FROM unnest($3::bigint[], $4::uuid[], $5::uuid[], $6::text[], $7::bigint[])
              AS r(window_id, zone_id, tenant_id, object_key, size_bytes)",
        run_id,
        rule,
        &windows as &[Option<i64>],
        &zones as &[Option<Uuid>],
        &tenants as &[Option<Uuid>],
        &keys as &[&str],
        &sizes,
    )
    .execute(tx)
    .await
    .map_err(db(format!("write deletion receipts, {at}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn age_is_strict_and_unknown_age_is_young() {
        let now = Utc::now();
        let grace = TimeDelta::hours(24);
        assert!(older_than(
            Some(now - grace - TimeDelta::seconds(1)),
            grace,
            now
        ));
        assert!(!older_than(Some(now - grace), grace, now));
        assert!(!older_than(Some(now), grace, now));
        assert!(!older_than(None, grace, now));
    }
}
