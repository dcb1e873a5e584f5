//! Coverage: which stretches of a zone's time are archived, empty, pruned, failed, in
//! flight, or covered by no window at all.
//!
//! One computation shared by `rainlogs zone coverage` (which collects every span) and
//! `rainlogs verify` (which streams windows page by page and only keeps the span being
//! extended, so memory stays constant over millions of windows). Windows must arrive in
//! time order (`ORDER BY start_at, end_at`); overlapping windows count from where the
//! previous one ended.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::ledger::{Window, WindowState};

/// What a span of time is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Cover {
    Archived,
    Empty,
    Failed,
    InFlight,
    Pruned,
    /// No window covers it.
    Missing,
    /// No window covers it and Logpull no longer serves it (older than its 7 days, e.g.
    /// a zone paused longer than that): lost for good, not merely missing yet.
    Lost,
}

impl std::fmt::Display for Cover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cover::Archived => "archived",
            Cover::Empty => "empty",
            Cover::Failed => "failed",
            Cover::InFlight => "in flight",
            Cover::Pruned => "pruned",
            Cover::Missing => "missing",
            Cover::Lost => "lost",
        })
    }
}

impl Cover {
    pub fn of(state: WindowState) -> Self {
        match state {
            WindowState::Archived => Cover::Archived,
            WindowState::Empty => Cover::Empty,
            WindowState::FailedPermanent => Cover::Failed,
            WindowState::Pruned => Cover::Pruned,
            WindowState::Planned
            | WindowState::Fetching
            | WindowState::Staged
            | WindowState::Sealed => Cover::InFlight,
            // Not listed by `ledger::windows_between`: its halves cover its time. Should
            // one appear anyway, it is work not yet settled, not coverage.
            WindowState::Split => Cover::InFlight,
        }
    }

    /// From a state as text (`state::text`), so readers keep working when new states
    /// appear in the database before this build knows them. `None` for a window that
    /// covers nothing itself (`split`: its children cover it). Unknown states count as
    /// in flight: not proven, so a gap.
    pub fn of_state_text(state: &str) -> Option<Self> {
        Some(match state {
            "archived" => Cover::Archived,
            "empty" => Cover::Empty,
            "failed_permanent" => Cover::Failed,
            "pruned" => Cover::Pruned,
            "split" => return None,
            _ => Cover::InFlight,
        })
    }

    /// Archived, empty and pruned are proven answers; the rest are gaps.
    pub fn is_gap(self) -> bool {
        matches!(
            self,
            Cover::Failed | Cover::InFlight | Cover::Missing | Cover::Lost
        )
    }
}

/// One maximal span of one kind.
pub type Span = (Cover, DateTime<Utc>, DateTime<Utc>);

/// Streams windows in time order into maximal spans over `[from, to)`. Completed spans
/// are handed to the caller as they close; only the open span is kept.
#[derive(Debug, Clone)]
pub struct CoverageWalk {
    to: DateTime<Utc>,
    cursor: DateTime<Utc>,
    open: Option<Span>,
    /// Uncovered time before this is [`Cover::Lost`] rather than [`Cover::Missing`].
    lost_before: Option<DateTime<Utc>>,
}

impl CoverageWalk {
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        Self {
            to,
            cursor: from,
            open: None,
            lost_before: None,
        }
    }

    /// Uncovered time before `horizon` (now less Logpull's 7 days) is reported as
    /// [`Cover::Lost`]: no window can be planned there any more.
    pub fn lost_before(mut self, horizon: DateTime<Utc>) -> Self {
        self.lost_before = Some(horizon);
        self
    }

    /// Uncovered time `[start, end)`: lost before the horizon, missing after it.
    fn uncovered(&mut self, start: DateTime<Utc>, end: DateTime<Utc>, out: &mut Vec<Span>) {
        if let Some(h) = self.lost_before {
            self.push(Cover::Lost, start, end.min(h), out);
            self.push(Cover::Missing, start.max(h), end, out);
        } else {
            self.push(Cover::Missing, start, end, out);
        }
    }

    fn push(&mut self, kind: Cover, start: DateTime<Utc>, end: DateTime<Utc>, out: &mut Vec<Span>) {
        if start >= end {
            return;
        }
        match &mut self.open {
            Some((k, _, e)) if *k == kind && *e == start => *e = end,
            open => {
                if let Some(done) = open.replace((kind, start, end)) {
                    out.push(done);
                }
            }
        }
    }

    /// Adds the next window (in time order); appends spans that closed to `out`.
    pub fn window(
        &mut self,
        kind: Cover,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        out: &mut Vec<Span>,
    ) {
        let end = end.min(self.to);
        if start > self.cursor {
            let cursor = self.cursor;
            self.uncovered(cursor, start.min(self.to), out);
        }
        // Overlapping windows (a split) count from where the previous one ended.
        self.push(kind, start.max(self.cursor), end, out);
        self.cursor = self.cursor.max(end);
    }

    /// Closes the walk: time after the last window up to `to` is missing.
    pub fn finish(mut self, out: &mut Vec<Span>) {
        let (cursor, to) = (self.cursor, self.to);
        self.uncovered(cursor, to, out);
        if let Some(open) = self.open.take() {
            out.push(open);
        }
    }
}

/// A zone's coverage of `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Windows per state.
    pub states: BTreeMap<WindowStateName, u64>,
    /// Maximal contiguous spans of one kind, in time order; adjacent spans of the same
    /// kind are merged.
    pub spans: Vec<Span>,
}

/// A window state's name, ordered for printing.
pub type WindowStateName = String;

/// Coverage of `[from, to)` at `now` from the windows overlapping it (in time order, as
/// [`crate::ledger::windows_between`] returns them). Time no window covers is `Missing`,
/// or `Lost` when Logpull no longer serves it (older than its 7 days at `now`: a zone
/// paused longer than that can never fetch it).
pub fn coverage_of(
    windows: &[Window],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Coverage {
    let mut states = BTreeMap::new();
    let mut spans = Vec::new();
    let mut walk = CoverageWalk::new(from, to).lost_before(now - crate::ledger::LOGPULL_MAX_AGE);
    for w in windows {
        *states.entry(state_name(w.state)).or_insert(0) += 1;
        walk.window(Cover::of(w.state), w.start_at, w.end_at, &mut spans);
    }
    walk.finish(&mut spans);
    Coverage {
        from,
        to,
        states,
        spans,
    }
}

fn state_name(s: WindowState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn m(i: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap() + chrono::TimeDelta::minutes(i)
    }

    #[test]
    fn walk_merges_and_reports_missing_time() {
        let mut out = Vec::new();
        let mut walk = CoverageWalk::new(m(0), m(10));
        walk.window(Cover::Archived, m(0), m(1), &mut out);
        walk.window(Cover::Archived, m(1), m(2), &mut out);
        assert!(out.is_empty(), "the open span is still growing");
        walk.window(Cover::Empty, m(3), m(4), &mut out);
        walk.window(Cover::Failed, m(4), m(5), &mut out);
        walk.finish(&mut out);
        assert_eq!(
            out,
            vec![
                (Cover::Archived, m(0), m(2)),
                (Cover::Missing, m(2), m(3)),
                (Cover::Empty, m(3), m(4)),
                (Cover::Failed, m(4), m(5)),
                (Cover::Missing, m(5), m(10)),
            ]
        );
    }

    #[test]
    fn windows_are_clipped_to_the_range_and_splits_cover_nothing() {
        let mut out = Vec::new();
        let mut walk = CoverageWalk::new(m(1), m(3));
        walk.window(Cover::Archived, m(0), m(2), &mut out);
        walk.window(Cover::Pruned, m(2), m(9), &mut out);
        walk.finish(&mut out);
        assert_eq!(
            out,
            vec![(Cover::Archived, m(1), m(2)), (Cover::Pruned, m(2), m(3))]
        );
        assert_eq!(Cover::of_state_text("split"), None);
        assert_eq!(Cover::of_state_text("pruned"), Some(Cover::Pruned));
        assert_eq!(Cover::of_state_text("who-knows"), Some(Cover::InFlight));
        assert!(Cover::Missing.is_gap() && !Cover::Pruned.is_gap());
    }

    #[test]
    fn uncovered_time_beyond_logpulls_reach_is_lost_not_missing() {
        let mut out = Vec::new();
        let mut walk = CoverageWalk::new(m(0), m(10)).lost_before(m(3));
        walk.window(Cover::Archived, m(0), m(1), &mut out);
        // A pause from m(1) to m(6): lost up to the horizon, missing after it.
        walk.window(Cover::Archived, m(6), m(7), &mut out);
        walk.finish(&mut out);
        assert_eq!(
            out,
            vec![
                (Cover::Archived, m(0), m(1)),
                (Cover::Lost, m(1), m(3)),
                (Cover::Missing, m(3), m(6)),
                (Cover::Archived, m(6), m(7)),
                (Cover::Missing, m(7), m(10)),
            ]
        );
        assert!(Cover::Lost.is_gap());
    }
}
