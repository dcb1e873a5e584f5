//! What one `logs/received` request asks for, checked against Cloudflare's rules before
//! anything goes on the wire.
//!
//! Cloudflare answers a bad window with a 400 only after a round trip (and counts it
//! against the rate limit); checking locally turns the same mistake into a typed,
//! permanent [`RequestError`] that names the rule broken.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

/// How far back Cloudflare keeps logs: `start` may be at most this old.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How recent a window may end: `end` must be at least this old.
pub const MIN_AGE: Duration = Duration::from_secs(60);
/// The longest window one request may cover.
pub const MAX_RANGE: Duration = Duration::from_secs(3600);
/// `sample` bounds, inclusive.
pub const SAMPLE_MIN: f64 = 0.001;
pub const SAMPLE_MAX: f64 = 1.0;

/// A request Cloudflare would refuse, caught before sending.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("zone id {0:?} is not 32 lowercase hex characters")]
    ZoneId(String),
    #[error("window [{start}, {end}): start must be before end")]
    StartNotBeforeEnd { start: String, end: String },
    #[error("window [{start}, {end}): start is older than Cloudflare's 7-day retention (earliest {earliest})")]
    TooEarly {
        start: String,
        end: String,
        earliest: String,
    },
    /// Not wrong, only early: the window becomes fetchable in `ready_in_secs` (clock
    /// skew between planner and fetcher). Retryable with that delay
    /// ([`super::LogpullError::retry_after`]).
    #[error(
        "window [{start}, {end}): end must be at least 1 minute in the past (latest {latest}; fetchable in {ready_in_secs} s)"
    )]
    TooLate {
        start: String,
        end: String,
        latest: String,
        ready_in_secs: u64,
    },
    #[error("window [{start}, {end}): {secs} s is longer than the 1 hour a request may cover")]
    TooLong {
        start: String,
        end: String,
        secs: i64,
    },
    #[error("field name {0:?} is not a Logpull field name (ASCII letters and digits)")]
    FieldName(String),
    #[error("count must be positive")]
    Count,
    #[error("sample {0} is outside [0.001, 1.0]")]
    Sample(f64),
}

/// A Cloudflare zone ID: 32 lowercase hex characters. Parsed once, so a URL can never
/// be built from an arbitrary string.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ZoneId(String);

impl ZoneId {
    pub fn parse(s: &str) -> Result<Self, RequestError> {
        if s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(RequestError::ZoneId(s.chars().take(64).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ZoneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ZoneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ZoneId({})", self.0)
    }
}

/// How Cloudflare renders timestamp fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Timestamps {
    /// Integer nanoseconds (Cloudflare's default).
    #[default]
    UnixNano,
    /// Integer seconds.
    Unix,
    /// RFC 3339 strings.
    Rfc3339,
}

impl Timestamps {
    pub fn as_str(self) -> &'static str {
        match self {
            Timestamps::UnixNano => "unixnano",
            Timestamps::Unix => "unix",
            Timestamps::Rfc3339 => "rfc3339",
        }
    }
}

/// One `logs/received` request: a zone and a window `[start, end)`, plus options.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRequest {
    pub zone: ZoneId,
    /// Inclusive.
    pub start: DateTime<Utc>,
    /// Exclusive.
    pub end: DateTime<Utc>,
    /// `None`: Cloudflare's default field list.
    pub fields: Option<Vec<String>>,
    pub timestamps: Timestamps,
    pub count: Option<u64>,
    pub sample: Option<f64>,
}

impl WindowRequest {
    pub fn new(zone: ZoneId, start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Self {
            zone,
            start,
            end,
            fields: None,
            timestamps: Timestamps::default(),
            count: None,
            sample: None,
        }
    }

    pub fn fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fields = Some(fields.into_iter().map(Into::into).collect());
        self
    }

    pub fn timestamps(mut self, t: Timestamps) -> Self {
        self.timestamps = t;
        self
    }

    pub fn count(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }

    pub fn sample(mut self, s: f64) -> Self {
        self.sample = Some(s);
        self
    }

    /// `zone … [start, end)`: how errors name the window.
    pub fn describe(&self) -> String {
        format!(
            "zone {} [{}, {})",
            self.zone,
            fmt_time(self.start),
            fmt_time(self.end)
        )
    }

    /// Checks Cloudflare's rules as of `now`.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), RequestError> {
        let (start, end) = (fmt_time(self.start), fmt_time(self.end));
        if self.start >= self.end {
            return Err(RequestError::StartNotBeforeEnd { start, end });
        }
        let earliest = now - chrono_duration(RETENTION);
        if self.start < earliest {
            return Err(RequestError::TooEarly {
                start,
                end,
                earliest: fmt_time(earliest),
            });
        }
        let latest = now - chrono_duration(MIN_AGE);
        if self.end > latest {
            let early = self.end - latest;
            let ready_in_secs = (early.num_milliseconds().max(0) as u64).div_ceil(1000);
            return Err(RequestError::TooLate {
                start,
                end,
                latest: fmt_time(latest),
                ready_in_secs,
            });
        }
        let len = self.end - self.start;
        if len > chrono_duration(MAX_RANGE) {
            return Err(RequestError::TooLong {
                start,
                end,
                secs: len.num_seconds(),
            });
        }
        for f in self.fields.iter().flatten() {
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(RequestError::FieldName(f.chars().take(64).collect()));
            }
        }
        if self.count == Some(0) {
            return Err(RequestError::Count);
        }
        if let Some(s) = self.sample {
            if !(SAMPLE_MIN..=SAMPLE_MAX).contains(&s) {
                return Err(RequestError::Sample(s));
            }
        }
        Ok(())
    }

    /// The query string parameters, in a stable order.
    pub(crate) fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = vec![("start", fmt_time(self.start)), ("end", fmt_time(self.end))];
        if let Some(fields) = &self.fields {
            q.push(("fields", fields.join(",")));
        }
        q.push(("timestamps", self.timestamps.as_str().to_owned()));
        if let Some(c) = self.count {
            q.push(("count", c.to_string()));
        }
        if let Some(s) = self.sample {
            q.push(("sample", s.to_string()));
        }
        q
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// RFC 3339, whole seconds when the time has no fraction.
pub(crate) fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> ZoneId {
        ZoneId::parse("0123456789abcdef0123456789abcdef").expect("valid zone id")
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn zone_ids_must_be_32_lowercase_hex() {
        assert!(ZoneId::parse("0123456789ABCDEF0123456789abcdef").is_err());
        assert!(ZoneId::parse("../../etc").is_err());
        assert!(ZoneId::parse("").is_err());
    }

    #[test]
    fn cloudflare_window_rules_are_checked_locally() {
        let ok = WindowRequest::new(
            zone(),
            at("2026-11-30T11:00:00Z"),
            at("2026-11-30T11:59:00Z"),
        );
        assert_eq!(ok.validate(now()), Ok(()));
        let r = |s, e| WindowRequest::new(zone(), at(s), at(e)).validate(now());
        assert!(matches!(
            r("2026-11-30T11:00:00Z", "2026-11-30T11:00:00Z"),
            Err(RequestError::StartNotBeforeEnd { .. })
        ));
        assert!(matches!(
            r("2026-11-23T11:59:59Z", "2026-11-23T12:01:00Z"),
            Err(RequestError::TooEarly { .. })
        ));
        assert!(matches!(
            r("2026-11-30T11:58:00Z", "2026-11-30T11:59:01Z"),
            Err(RequestError::TooLate { .. })
        ));
        assert!(matches!(
            r("2026-11-30T10:00:00Z", "2026-11-30T11:00:01Z"),
            Err(RequestError::TooLong { secs: 3601, .. })
        ));
        assert_eq!(r("2026-11-30T10:00:00Z", "2026-11-30T11:00:00Z"), Ok(()));
        assert_eq!(r("2026-11-23T12:00:00Z", "2026-11-23T12:01:00Z"), Ok(()));
    }

    #[test]
    fn options_are_checked_locally() {
        let base = WindowRequest::new(
            zone(),
            at("2026-11-30T11:00:00Z"),
            at("2026-11-30T11:01:00Z"),
        );
        assert_eq!(
            base.clone().count(0).validate(now()),
            Err(RequestError::Count)
        );
        assert_eq!(
            base.clone().sample(0.0001).validate(now()),
            Err(RequestError::Sample(0.0001))
        );
        assert_eq!(
            base.clone().sample(1.5).validate(now()),
            Err(RequestError::Sample(1.5))
        );
        assert!(base.clone().sample(0.001).validate(now()).is_ok());
        assert_eq!(
            base.clone().fields(["RayID", "Ray&ID=1"]).validate(now()),
            Err(RequestError::FieldName("Ray&ID=1".into()))
        );
        let q = base
            .fields(["RayID", "ClientIP"])
            .timestamps(Timestamps::Rfc3339)
            .count(5)
            .query();
        assert_eq!(q[0], ("start", "2026-11-30T11:00:00Z".to_owned()));
        assert!(q.contains(&("fields", "RayID,ClientIP".to_owned())));
        assert!(q.contains(&("timestamps", "rfc3339".to_owned())));
        assert!(q.contains(&("count", "5".to_owned())));
    }
}
