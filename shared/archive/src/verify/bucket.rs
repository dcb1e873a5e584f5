//! The bucket compared with the catalog: every object under the zone's archive prefix
//! (`archive/{tenant}/{zone}/`) is listed, and each one no catalog row names is an
//! `object_unexpected` finding, with the window its key names when it parses (a
//! stray, a second object for a window, an object whose row was deleted, an object
//! for a window recorded `empty` or `pruned`). The other direction, a catalog row whose object is gone, is the window
//! pass's `object_missing`; objects with a catalog row are checked there too.
//!
//! The listing is paged (ListObjectsV2, [`LIST_PAGE`] keys) and each page is judged in
//! one query before the next is read, so memory is bounded by the page over millions of
//! objects. One query per page reads catalog rows and windows together, so an upload
//! committing its row between the two cannot look like a stray; an object whose window
//! is still in flight is left alone (upload puts the object before committing its row).
//!
//! Which keys are listed: a range that starts after the zone's first window begins
//! after the day folder before `from`'s (a window that overlaps `from` starts at most
//! a day before it), and a range that ends before the day of the zone's last window
//! stops after `to`'s day folder. Otherwise the listing runs to the prefix's end, so
//! the default range sees every object of the zone, whatever its key.

use chrono::{DateTime, Datelike, TimeDelta, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{Finding, VerifyError, ZoneScope};
use crate::pipeline::parse_archive_key;
use rainlogs_core::db::DbError;
use rainlogs_core::storage::{ObjectInfo, ObjectStore};

/// Keys listed per page.
pub const LIST_PAGE: i32 = 1000;

/// The zone's archive prefix (relative to the store's prefix).
pub fn zone_prefix(tenant: Uuid, zone: Uuid) -> String {
    format!("archive/{tenant}/{zone}/")
}

fn day_folder(t: DateTime<Utc>) -> String {
    format!("{:04}/{:02}/{:02}", t.year(), t.month(), t.day())
}

/// Where the listing of `scope` starts (exclusive) and stops (keys at or after it).
fn band(
    prefix: &str,
    scope: &ZoneScope,
    first_start: Option<DateTime<Utc>>,
    last_start: Option<DateTime<Utc>>,
) -> (Option<String>, Option<String>) {
    let start_after = first_start
        .filter(|first| scope.from > *first)
        .map(|_| format!("{prefix}{}", day_folder(scope.from - TimeDelta::days(1))));
    // A key of `to`'s day is `…/{day}/…`; '/' sorts before '0', so every key of that day
    // sorts before `…/{day}0` and every key of a later day after it.
    let stop_at = last_start
        .filter(|last| day_folder(scope.to) < day_folder(*last))
        .map(|_| format!("{prefix}{}0", day_folder(scope.to)));
    (start_after, stop_at)
}

/// What the comparison looked at.
#[derive(Debug, Default)]
pub struct BucketOutcome {
    pub listed: u64,
}

/// One listed object that no catalog row names, with the window its key names.
#[derive(Debug, sqlx::FromRow)]
struct Judged {
    key: String,
    catalogued: bool,
    window_id: Option<i64>,
    window_start: Option<DateTime<Utc>>,
    window_end: Option<DateTime<Utc>>,
    state: Option<String>,
}

/// Lists the zone's archive prefix, `page_size` keys at a time ([`LIST_PAGE`] in a
/// verification run), and reports the objects no catalog row accounts for.
pub async fn compare(
    pool: &PgPool,
    store: &ObjectStore,
    tenant: Uuid,
    scope: &ZoneScope,
    page_size: i32,
    sink: &mut (dyn FnMut(Finding) -> Result<(), VerifyError> + Send),
) -> Result<BucketOutcome, VerifyError> {
    let zone = scope.zone_id;
    let (first_start, last_start) = zone_bounds(pool, zone).await?;
    let prefix = zone_prefix(tenant, zone);
    let (start_after, stop_at) = band(&prefix, scope, first_start, last_start);
    let mut out = BucketOutcome::default();
    let mut token = None;
    loop {
        let (mut page, next) = store
            .list_page_after(&prefix, start_after.as_deref(), token, page_size.max(1))
            .await?;
        let done = match &stop_at {
            Some(stop) if page.last().is_some_and(|o| o.key >= *stop) => {
                page.retain(|o| o.key < *stop);
                true
            }
            _ => next.is_none(),
        };
        out.listed += page.len() as u64;
        for f in judge(pool, store, zone, scope, &page).await? {
            sink(f)?;
        }
        if done {
            return Ok(out);
        }
        token = next;
    }
}

/// The zone's first and last window start (`None` without windows).
async fn zone_bounds(
    pool: &PgPool,
    zone: Uuid,
) -> Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>), DbError> {
    let r = sqlx::query!(
        "SELECT min(start_at) AS first, max(start_at) AS last FROM windows WHERE zone_id = $1",
        zone
    )
    .fetch_one(pool)
    .await
    .map_err(|e| DbError::query("read the zone's window bounds", e))?;
    Ok((r.first, r.last))
}

/// The findings of one listing page.
async fn judge(
    pool: &PgPool,
    store: &ObjectStore,
    zone: Uuid,
    scope: &ZoneScope,
    page: &[ObjectInfo],
) -> Result<Vec<Finding>, VerifyError> {
    if page.is_empty() {
        return Ok(Vec::new());
    }
    let (mut keys, mut starts, mut ends, mut batches) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for o in page {
        let parts = parse_archive_key(&o.key).filter(|p| p.zone == zone);
        // The catalog records full bucket keys (with the prefix); so do the findings.
        keys.push(store.full_key(&o.key));
        starts.push(parts.as_ref().map(|p| p.start));
        ends.push(parts.as_ref().map(|p| p.end));
        batches.push(parts.and_then(|p| p.batch.map(|(id, _)| id)));
    }
    // A pulled window's key names its span (unique among pulled windows); a pushed
    // batch's key names its batch (batch spans may repeat). Catalog and windows are
    // read in one statement: one snapshot.
    let judged: Vec<Judged> = sqlx::query_as!(
        Judged,
        r#"SELECT k.key AS "key!",
                  EXISTS (SELECT 1 FROM archived_objects a WHERE a.object_key = k.key)
                      AS "catalogued!",
                  coalesce(wb.id, wp.id) AS window_id,
                  k.s AS window_start, k.e AS window_end,
                  coalesce(wb.state, wp.state)::text AS state
           FROM unnest($2::text[], $3::timestamptz[], $4::timestamptz[], $5::uuid[])
                AS k(key, s, e, b)
           LEFT JOIN windows wp ON k.b IS NULL AND wp.zone_id = $1 AND wp.batch_id IS NULL
                                AND wp.start_at = k.s AND wp.end_at = k.e
           LEFT JOIN windows wb ON wb.batch_id = k.b AND wb.zone_id = $1"#,
        zone,
        &keys,
        &starts as &[Option<DateTime<Utc>>],
        &ends as &[Option<DateTime<Utc>>],
        &batches as &[Option<Uuid>],
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("compare the bucket listing with the catalog", e))?;
    let sizes: std::collections::HashMap<String, u64> = page
        .iter()
        .map(|o| (store.full_key(&o.key), o.size))
        .collect();
    let mut out = Vec::new();
    for j in judged {
        if j.catalogued {
            continue;
        }
        // A key naming a span outside the range is another run's; one naming no span
        // at all is reported by every run that lists it.
        if let (Some(s), Some(e)) = (j.window_start, j.window_end) {
            if e <= scope.from || s >= scope.to {
                continue;
            }
        }
        let size = sizes.get(&j.key).copied().unwrap_or(0);
        // Upload puts the object before it commits the row: not a finding yet.
        if matches!(
            j.state.as_deref(),
            Some("planned" | "fetching" | "staged" | "sealed")
        ) {
            continue;
        }
        let f = Finding::ObjectUnexpected {
            zone_id: zone,
            object_key: j.key,
            size,
            window_id: j.window_id,
            window_start: j.window_start,
            window_end: j.window_end,
            state: j.state,
        };
        out.push(f);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_band_lists_everything_for_the_whole_history_and_days_for_a_slice() {
        let at = |d, h| Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap();
        let p = "archive/t/z/";
        let whole = ZoneScope {
            zone_id: Uuid::nil(),
            from: at(1, 0),
            to: at(30, 12),
        };
        assert_eq!(
            band(p, &whole, Some(at(1, 0)), Some(at(30, 11))),
            (None, None)
        );
        let slice = ZoneScope {
            zone_id: Uuid::nil(),
            from: at(10, 0),
            to: at(12, 5),
        };
        let (after, stop) = band(p, &slice, Some(at(1, 0)), Some(at(30, 11)));
        assert_eq!(after.as_deref(), Some("archive/t/z/2026/11/09"));
        assert_eq!(stop.as_deref(), Some("archive/t/z/2026/11/120"));
        let stop = stop.unwrap();
        assert!("archive/t/z/2026/11/12/20261112T235900Z_20261113T000000Z.sealed" < stop.as_str());
        assert!("archive/t/z/2026/11/13/x" > stop.as_str());
        assert!("archive/t/z/2026/12/01/x" > stop.as_str());
        assert!("archive/t/z/2026/11/09/x" > after.unwrap().as_str());
    }
}
