//! The coverage strip: a zone's coverage spans (from the coverage domain functions)
//! cut into equal buckets — an hour or a day — each drawn as the most telling kind it
//! holds (a failed or missing stretch shows even when the rest of the hour is
//! archived).

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

/// Kinds from most to least telling; a bucket takes the first it overlaps.
pub(crate) const PRIORITY: &[&str] = &[
    "failed",
    "lost",
    "missing",
    "quiet",
    "in_flight",
    "archived",
    "received",
    "empty",
    "pruned",
];

/// One bucket of the strip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Cell {
    pub kind: &'static str,
    pub from: DateTime<Utc>,
    /// `kind` and the bucket's time, for the tooltip.
    pub title: String,
}

/// Cuts `spans` (kind, from, to) into `n` buckets of `step` ending at `end`. Time no
/// span covers is `none`.
pub(crate) fn strip(
    spans: &[(&'static str, DateTime<Utc>, DateTime<Utc>)],
    end: DateTime<Utc>,
    step: TimeDelta,
    n: usize,
) -> Vec<Cell> {
    let start = end - step * n as i32;
    (0..n)
        .map(|i| {
            let from = start + step * i as i32;
            let to = from + step;
            let kind = PRIORITY
                .iter()
                .copied()
                .find(|k| spans.iter().any(|(s, a, b)| s == k && *a < to && *b > from))
                .unwrap_or("none");
            let fmt = if step >= TimeDelta::days(1) {
                "%Y-%m-%d"
            } else {
                "%Y-%m-%d %H:%M"
            };
            Cell {
                kind,
                from,
                title: format!("{} {}", from.format(fmt), kind.replace('_', " ")),
            }
        })
        .collect()
}

/// `t` floored to a multiple of `step` (from the epoch).
pub(crate) fn floor(t: DateTime<Utc>, step: TimeDelta) -> DateTime<Utc> {
    let s = step.num_seconds().max(1);
    DateTime::from_timestamp(t.timestamp().div_euclid(s) * s, 0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_shows_its_most_telling_kind() {
        let t0 = DateTime::from_timestamp(1_800_000_000 / 3600 * 3600, 0).unwrap();
        let h = TimeDelta::hours(1);
        let m = TimeDelta::minutes(1);
        let spans = vec![
            ("archived", t0, t0 + h * 2),
            ("failed", t0 + h + m * 10, t0 + h + m * 11),
            ("in_flight", t0 + h * 2, t0 + h * 3),
        ];
        let cells = strip(&spans, t0 + h * 4, h, 4);
        let kinds: Vec<&str> = cells.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, ["archived", "failed", "in_flight", "none"]);
        assert_eq!(cells[1].from, t0 + h);
        assert!(cells[1].title.ends_with("failed"));
        assert_eq!(floor(t0 + m * 59, h), t0);
    }
}
