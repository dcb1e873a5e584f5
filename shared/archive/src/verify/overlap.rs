//! Windows checked against each other: pulled windows of a zone tile its time, so two
//! of them overlapping (`windows_overlap`), or two archived objects holding the same
//! minutes (`objects_overlap`), is a finding.
//!
//! Windows arrive in time order (`start_at, end_at, id`), page by page; the walk keeps
//! only the earlier window reaching furthest (and the furthest-reaching archived one),
//! so memory is constant however many windows a zone has. Each window overlapping an
//! earlier one is reported once, against the earlier window that reaches furthest.
//!
//! What is not compared, and why: a `split` window covers nothing itself (its halves
//! cover its span, so they overlap it by design); pushed batches (`batch_id`) may
//! overlap each other (batches of the same minutes, several datasets) and a hybrid
//! zone's repair windows (a batch arriving after its minute was repaired), which
//! restore resolves (docs/INGEST.md "Hybrid repair").

use chrono::{DateTime, Utc};

use super::{Finding, WindowRow};

/// An earlier window, as much of it as a finding names.
#[derive(Debug, Clone)]
struct Seen {
    id: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    state: String,
    object_key: Option<String>,
}

impl Seen {
    fn of(row: &WindowRow) -> Self {
        Seen {
            id: row.id,
            start: row.start_at,
            end: row.end_at,
            state: row.state.clone(),
            object_key: row.object_key.clone(),
        }
    }
}

/// The streaming comparison of a zone's pulled windows over `[from, to)`.
#[derive(Debug, Clone)]
pub struct OverlapWalk {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// The earlier window reaching furthest.
    reach: Option<Seen>,
    /// The earlier archived window reaching furthest.
    archived_reach: Option<Seen>,
}

impl OverlapWalk {
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        Self {
            from,
            to,
            reach: None,
            archived_reach: None,
        }
    }

    /// The next window in time order; the finding when it overlaps an earlier one
    /// inside the range.
    pub fn window(&mut self, row: &WindowRow) -> Option<Finding> {
        if row.batch_id.is_some() || row.state == "split" {
            return None;
        }
        let archived = row.state == "archived";
        let overlap = |other: &Option<Seen>| {
            other.as_ref().and_then(|o| {
                let (from, to) = (row.start_at.max(o.start), row.end_at.min(o.end));
                // Only an overlap inside the verified range is this run's finding.
                (from < to && from.max(self.from) < to.min(self.to)).then(|| (o.clone(), from, to))
            })
        };
        let finding = match (
            archived,
            overlap(&self.archived_reach),
            overlap(&self.reach),
        ) {
            (true, Some((o, from, to)), _) => Some(Finding::ObjectsOverlap {
                window: row.window_ref(),
                object_key: row.object_key.clone(),
                other_window_id: o.id,
                other_window_start: o.start,
                other_window_end: o.end,
                other_object_key: o.object_key,
                from,
                to,
            }),
            (_, _, Some((o, from, to))) => Some(Finding::WindowsOverlap {
                window: row.window_ref(),
                state: row.state.clone(),
                other_window_id: o.id,
                other_window_start: o.start,
                other_window_end: o.end,
                other_state: o.state,
                from,
                to,
            }),
            _ => None,
        };
        if self.reach.as_ref().is_none_or(|r| row.end_at > r.end) {
            self.reach = Some(Seen::of(row));
        }
        if archived
            && self
                .archived_reach
                .as_ref()
                .is_none_or(|r| row.end_at > r.end)
        {
            self.archived_reach = Some(Seen::of(row));
        }
        finding
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};
    use uuid::Uuid;

    fn m(i: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap() + TimeDelta::minutes(i)
    }

    fn row(id: i64, start: i64, end: i64, state: &str) -> WindowRow {
        WindowRow {
            id,
            zone_id: Uuid::from_u128(2),
            tenant_id: Uuid::from_u128(1),
            start_at: m(start),
            end_at: m(end),
            state: state.to_owned(),
            last_error: None,
            state_since: m(0),
            object_key: (state == "archived").then(|| format!("k{id}")),
            size_bytes: None,
            object_sha256: None,
            plaintext_sha256: None,
            plaintext_bytes: None,
            record_count: None,
            seq: None,
            link_object_sha256: None,
            link_plaintext_sha256: None,
            link_record_count: None,
            has_receipt: None,
            receipt_at: None,
            retention_days: 395,
            held: false,
            hold_since: None,
            batch_id: None,
            dataset: None,
            first_record_at: None,
            last_record_at: None,
        }
    }

    #[test]
    fn tiling_windows_and_splits_do_not_overlap() {
        let mut w = OverlapWalk::new(m(0), m(10));
        for r in [
            row(1, 0, 1, "archived"),
            row(2, 1, 3, "split"),
            row(3, 1, 2, "archived"),
            row(4, 2, 3, "empty"),
            row(5, 3, 4, "pruned"),
        ] {
            assert!(w.window(&r).is_none(), "{r:?}");
        }
    }

    #[test]
    fn overlaps_are_named_with_the_earlier_window() {
        let mut w = OverlapWalk::new(m(0), m(10));
        assert!(w.window(&row(1, 0, 2, "archived")).is_none());
        match w.window(&row(2, 1, 3, "empty")) {
            Some(Finding::WindowsOverlap {
                other_window_id: 1,
                from,
                to,
                ..
            }) => assert_eq!((from, to), (m(1), m(2))),
            other => panic!("{other:?}"),
        }
        // An archived window over time another archived window holds: two objects.
        match w.window(&row(3, 1, 2, "archived")) {
            Some(Finding::ObjectsOverlap {
                other_window_id: 1,
                other_object_key,
                ..
            }) => assert_eq!(other_object_key.as_deref(), Some("k1")),
            other => panic!("{other:?}"),
        }
        // Pushed batches are never compared.
        let mut batch = row(4, 0, 5, "archived");
        batch.batch_id = Some(Uuid::from_u128(9));
        assert!(w.window(&batch).is_none());
        // An overlap before the range is another run's.
        let mut w = OverlapWalk::new(m(5), m(10));
        assert!(w.window(&row(1, 0, 3, "archived")).is_none());
        assert!(w.window(&row(2, 2, 6, "archived")).is_none());
    }
}
