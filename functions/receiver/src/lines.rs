//! Line checks on a pushed batch's NDJSON as it streams: which lines are JSON objects,
//! the batch's edge time span, and whether the batch is Cloudflare's validation upload.
//!
//! Memory is one partial line, at most `max_line_bytes`; a longer line is counted
//! malformed without being buffered (it is still sealed verbatim: nothing is dropped).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rainlogs_archive::record_time::{self, parse_line};

/// What Cloudflare uploads when a job is created (gzip of this, maybe with a newline).
pub const VALIDATION_CONTENT: &[u8] = br#"{"content":"tests"}"#;

/// Running line statistics of one batch.
#[derive(Debug)]
pub struct LineChecker {
    max_line: usize,
    partial: Vec<u8>,
    /// The current line is over `max_line`: skip to its end.
    overlong: bool,
    pub lines: u64,
    pub malformed: u64,
    pub first_edge: Option<DateTime<Utc>>,
    pub last_edge: Option<DateTime<Utc>>,
    /// The first bytes of the stream, to recognise the validation upload.
    head: Vec<u8>,
    pub total: u64,
    /// Records per minute of edge time (end, else start): push coverage (docs/INGEST.md). At most
    /// [`MAX_MINUTES`] distinct minutes are kept; records beyond are counted in
    /// `minutes_overflow` (a batch spans a few minutes: only a malformed one gets there).
    pub minutes: BTreeMap<i64, u64>,
    pub minutes_overflow: u64,
}

/// Distinct edge minutes counted per batch.
pub const MAX_MINUTES: usize = 10_000;

impl LineChecker {
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line,
            partial: Vec::new(),
            overlong: false,
            lines: 0,
            malformed: 0,
            first_edge: None,
            last_edge: None,
            head: Vec::new(),
            total: 0,
            minutes: BTreeMap::new(),
            minutes_overflow: 0,
        }
    }

    /// Feeds the next piece of NDJSON.
    pub fn update(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        if self.head.len() < 64 {
            let take = (64 - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
        }
        while let Some(nl) = memchr(b'\n', data) {
            let (line, rest) = (&data[..nl], &data[nl + 1..]);
            if self.overlong || self.partial.len() + line.len() > self.max_line {
                self.finish_overlong();
            } else if self.partial.is_empty() {
                self.check(line);
            } else {
                self.partial.extend_from_slice(line);
                let full = std::mem::take(&mut self.partial);
                self.check(&full);
                self.partial = full;
                self.partial.clear();
            }
            data = rest;
        }
        if !data.is_empty() {
            if self.overlong || self.partial.len() + data.len() > self.max_line {
                self.overlong = true;
                self.partial.clear();
            } else {
                self.partial.extend_from_slice(data);
            }
        }
    }

    /// Ends the stream (a last line without `\n` is a line).
    pub fn finish(&mut self) {
        if self.overlong {
            self.finish_overlong();
        } else if !self.partial.is_empty() {
            let full = std::mem::take(&mut self.partial);
            self.check(&full);
        }
    }

    /// Whether the whole stream was Cloudflare's validation upload.
    pub fn is_validation(&self) -> bool {
        self.total <= 64 && self.head.trim_ascii() == VALIDATION_CONTENT
    }

    /// Records per edge minute, as (minute start, records), in time order.
    pub fn minute_counts(&self) -> Vec<(DateTime<Utc>, u64)> {
        self.minutes
            .iter()
            .filter_map(|(&m, &n)| DateTime::from_timestamp(m * 60, 0).map(|t| (t, n)))
            .collect()
    }

    /// The edge time span seen, when any line had a timestamp.
    pub fn edge_span(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        self.first_edge.zip(self.last_edge)
    }

    fn finish_overlong(&mut self) {
        self.lines += 1;
        self.malformed += 1;
        self.overlong = false;
        self.partial.clear();
    }

    fn check(&mut self, line: &[u8]) {
        self.lines += 1;
        let Ok(t) = parse_line(line) else {
            self.malformed += 1;
            return;
        };
        // The span runs from the earliest request start (else record time) to the
        // latest record time; a record counts in the minute of its record time (end,
        // else start): the time Logpull selects windows by and restore trims by, so
        // push coverage and a Logpull repair window speak of the same records.
        if let Some(s) = t.start_ns.or(t.time_ns) {
            let s = record_time::instant(s);
            self.first_edge = Some(self.first_edge.map_or(s, |f| f.min(s)));
        }
        if let Some(e) = t.time_ns {
            let minute = e.div_euclid(60_000_000_000);
            let room = self.minutes.len() < MAX_MINUTES;
            match self.minutes.get_mut(&minute) {
                Some(n) => *n += 1,
                None if room => {
                    self.minutes.insert(minute, 1);
                }
                None => self.minutes_overflow += 1,
            }
            let e = record_time::instant(e);
            self.last_edge = Some(self.last_edge.map_or(e, |l| l.max(e)));
        }
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pieces: &[&[u8]], max_line: usize) -> LineChecker {
        let mut c = LineChecker::new(max_line);
        for p in pieces {
            c.update(p);
        }
        c.finish();
        c
    }

    #[test]
    fn lines_across_pieces_and_timestamp_formats() {
        let c = run(
            &[
                br#"{"EdgeStartTimestamp":"2026-12-01T10:00:05Z","EdgeEndTimestamp":"2026-12-01T10:00:06Z"}
{"EdgeStartTim"#,
                br#"estamp":1796119200,"RayID":"x"}
not json
{"EdgeStartTimestamp":1796119300000000000}"#,
            ],
            1024,
        );
        assert_eq!(c.lines, 4);
        assert_eq!(c.malformed, 1);
        let (first, last) = c.edge_span().unwrap();
        assert_eq!(first, DateTime::from_timestamp(1_796_119_200, 0).unwrap());
        assert_eq!(last, DateTime::from_timestamp(1_796_119_300, 0).unwrap());
        assert!(!c.is_validation());
        // Records per edge minute: 10:00 twice, 10:01 once; the malformed line nowhere.
        let minute = |t: i64| DateTime::from_timestamp(t, 0).unwrap();
        assert_eq!(
            c.minute_counts(),
            vec![(minute(1_796_119_200), 2), (minute(1_796_119_260), 1)]
        );
    }

    #[test]
    fn overlong_lines_are_malformed_not_buffered() {
        let long = vec![b'a'; 100];
        let c = run(&[b"{}\n", &long, &long, b"\n{}"], 50);
        assert_eq!((c.lines, c.malformed), (3, 1));
        assert!(c.partial.capacity() <= 100);
    }

    #[test]
    fn validation_upload() {
        assert!(run(&[br#"{"content":"tests"}"#], 1024).is_validation());
        assert!(run(&[b"{\"content\":\"tests\"}\n"], 1024).is_validation());
        assert!(!run(&[b"{\"content\":\"tests\"}\n{}\n"], 1024).is_validation());
        assert!(!run(&[br#"{"content":"other"}"#], 1024).is_validation());
    }
}
