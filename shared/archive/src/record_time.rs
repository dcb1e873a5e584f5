//! A log record's time: the timestamp fields Cloudflare's datasets carry, in every
//! format Logpull and Logpush write them.
//!
//! One reading for every place that asks "when is this record?" — fetch (a pulled
//! window's edge span), the receiver (a pushed batch's span and per-minute counts) and
//! restore (trimming to `--from`/`--to`) — so they agree on which record belongs to
//! which time. A record's time is its `EdgeEndTimestamp`, else its start
//! (`EdgeStartTimestamp`, then `Datetime` of firewall_events, then `Timestamp` of
//! dns_logs): the field Logpull's own examples select by, and the one restore trims by.
//!
//! Integers are scaled by magnitude (seconds, milliseconds, microseconds, nanoseconds:
//! `timestamps=unix|unixnano` and Logpush's `timestamp_format`), floats are seconds,
//! strings are RFC 3339 or an integer. A field of any other shape (an object, `true`)
//! is no time, never an error: the record is still a record.

use chrono::{DateTime, Utc};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

/// The timestamp fields of the zone datasets (http_requests, firewall_events, dns_logs).
#[derive(Deserialize)]
struct Fields {
    #[serde(rename = "EdgeStartTimestamp")]
    edge_start: Option<Stamp>,
    #[serde(rename = "EdgeEndTimestamp")]
    edge_end: Option<Stamp>,
    #[serde(rename = "Datetime")]
    datetime: Option<Stamp>,
    #[serde(rename = "Timestamp")]
    timestamp: Option<Stamp>,
}

/// A timestamp value as written; `Other` takes any shape that is not a time.
#[derive(Deserialize)]
#[serde(untagged)]
enum Stamp {
    Int(i64),
    Float(f64),
    Text(String),
    Other(IgnoredAny),
}

impl Stamp {
    fn ns(&self) -> Option<i64> {
        match self {
            Stamp::Int(n) => scale_int(*n),
            Stamp::Float(f) => float_seconds_ns(*f),
            Stamp::Text(s) => text_ns(s),
            Stamp::Other(_) => None,
        }
    }
}

/// Seconds, milliseconds, microseconds or nanoseconds since the epoch, told apart by
/// magnitude (any date between 1973 and 5138 reads right in each unit).
fn scale_int(n: i64) -> Option<i64> {
    let a = n.unsigned_abs();
    if a < 100_000_000_000 {
        n.checked_mul(1_000_000_000)
    } else if a < 100_000_000_000_000 {
        n.checked_mul(1_000_000)
    } else if a < 100_000_000_000_000_000 {
        n.checked_mul(1_000)
    } else {
        Some(n)
    }
}

fn float_seconds_ns(f: f64) -> Option<i64> {
    let ns = (f * 1e9).round();
    (f.is_finite() && ns.abs() < i64::MAX as f64).then_some(ns as i64)
}

fn text_ns(s: &str) -> Option<i64> {
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) => t.timestamp_nanos_opt(),
        Err(_) => s.parse::<i64>().ok().and_then(scale_int),
    }
}

/// A record's times in nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordTimes {
    /// When the request started (`EdgeStartTimestamp`, else `Datetime`, `Timestamp`).
    pub start_ns: Option<i64>,
    /// The record's time: `EdgeEndTimestamp`, else the start.
    pub time_ns: Option<i64>,
}

/// Why a line is not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotARecord {
    #[error("empty line")]
    Empty,
    #[error("does not start with '{{'")]
    NotAnObject,
    #[error("{0}")]
    Json(String),
}

/// Reads one NDJSON line: a JSON object is a record (with whatever times it carries);
/// anything else is [`NotARecord`].
pub fn parse_line(line: &[u8]) -> Result<RecordTimes, NotARecord> {
    match line.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(NotARecord::Empty),
        Some(b'{') => {}
        Some(_) => return Err(NotARecord::NotAnObject),
    }
    match serde_json::from_slice::<Fields>(line) {
        Ok(f) => {
            let start_ns = f
                .edge_start
                .as_ref()
                .or(f.datetime.as_ref())
                .or(f.timestamp.as_ref())
                .and_then(Stamp::ns);
            let end_ns = f.edge_end.as_ref().and_then(Stamp::ns);
            Ok(RecordTimes {
                start_ns,
                time_ns: end_ns.or(start_ns),
            })
        }
        // Valid JSON the struct refuses (a duplicated timestamp key): still a record,
        // of unknown time.
        Err(_) => serde_json::from_slice::<IgnoredAny>(line)
            .map(|_| RecordTimes::default())
            .map_err(|e| NotARecord::Json(e.to_string())),
    }
}

/// The time (ns) of a record already parsed: `EdgeEndTimestamp`, else the start.
pub fn value_time_ns(record: &Value) -> Option<i64> {
    let stamp = |v: &Value| match v {
        Value::Number(n) => n
            .as_i64()
            .and_then(scale_int)
            .or_else(|| n.as_f64().and_then(float_seconds_ns)),
        Value::String(s) => text_ns(s),
        _ => None,
    };
    let end = record.get("EdgeEndTimestamp").and_then(stamp);
    let start = ["EdgeStartTimestamp", "Datetime", "Timestamp"]
        .iter()
        .find_map(|k| record.get(*k))
        .and_then(stamp);
    end.or(start)
}

/// An instant from nanoseconds.
pub fn instant(ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(ns)
}

/// The earliest and latest record time seen in a stream of records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeSpan {
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
}

impl TimeSpan {
    pub fn add(&mut self, t: i64) {
        self.first_ns = Some(self.first_ns.map_or(t, |f| f.min(t)));
        self.last_ns = Some(self.last_ns.map_or(t, |l| l.max(t)));
    }

    /// `(first, last)` as instants, when any record had a time.
    pub fn instants(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        Some((instant(self.first_ns?), instant(self.last_ns?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_764_489_601_000_000_000; // 2025-11-30T08:00:01Z

    #[test]
    fn every_format_reads_the_same_instant() {
        for line in [
            format!(r#"{{"EdgeEndTimestamp":{T}}}"#),
            format!(r#"{{"EdgeEndTimestamp":{}}}"#, T / 1_000_000_000),
            format!(r#"{{"EdgeEndTimestamp":{}}}"#, T / 1_000_000),
            format!(r#"{{"EdgeEndTimestamp":{}}}"#, T / 1_000),
            r#"{"EdgeEndTimestamp":"2025-11-30T08:00:01Z"}"#.to_owned(),
            r#"{"EdgeEndTimestamp":1764489601.0}"#.to_owned(),
            format!(r#"{{"EdgeEndTimestamp":"{T}"}}"#),
        ] {
            let times = parse_line(line.as_bytes()).unwrap();
            assert_eq!(times.time_ns, Some(T), "{line}");
            let value: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(value_time_ns(&value), Some(T), "{line}");
        }
    }

    #[test]
    fn the_end_wins_the_start_stands_in_and_other_datasets_have_their_own_field() {
        let both = parse_line(br#"{"EdgeStartTimestamp":5,"EdgeEndTimestamp":7}"#).unwrap();
        assert_eq!(both.start_ns, Some(5_000_000_000));
        assert_eq!(both.time_ns, Some(7_000_000_000));
        let start = parse_line(br#"{"EdgeStartTimestamp":5}"#).unwrap();
        assert_eq!(start.time_ns, Some(5_000_000_000));
        let fw = parse_line(br#"{"Datetime":"2025-11-30T08:00:01Z","Action":"block"}"#).unwrap();
        assert_eq!(fw.time_ns, Some(T));
        let dns = parse_line(br#"{"Timestamp":1764489601}"#).unwrap();
        assert_eq!(dns.time_ns, Some(T));
    }

    #[test]
    fn odd_time_fields_are_no_time_and_non_objects_are_not_records() {
        for line in [
            &br#"{"EdgeEndTimestamp":{"x":1}}"#[..],
            br#"{"EdgeEndTimestamp":true,"a":[1,2]}"#,
            br#"{"EdgeEndTimestamp":"yesterday"}"#,
            br#"{"EdgeEndTimestamp":1,"EdgeEndTimestamp":2}"#,
            br#"{"a":1}"#,
        ] {
            assert_eq!(parse_line(line).unwrap().time_ns, None, "{line:?}");
        }
        assert_eq!(parse_line(b"  "), Err(NotARecord::Empty));
        assert_eq!(parse_line(b"[1,2]"), Err(NotARecord::NotAnObject));
        assert!(matches!(parse_line(b"{\"a\":"), Err(NotARecord::Json(_))));
    }

    #[test]
    fn a_span_keeps_the_earliest_and_latest() {
        let mut span = TimeSpan::default();
        assert_eq!(span.instants(), None);
        for t in [30, 10, 20] {
            span.add(t);
        }
        assert_eq!((span.first_ns, span.last_ns), (Some(10), Some(30)));
    }
}
