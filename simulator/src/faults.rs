//! Injectable faults: what can go wrong with a Logpull response, and which requests it
//! hits.
//!
//! A [`FaultRule`] picks requests (a zone or all zones, optionally only those whose
//! window overlaps a given range, for the next N matching requests or forever) and
//! applies one [`Fault`] to them. Rules are checked in order; the first live rule that
//! matches is used and its budget decremented. They apply to `logs/received` only.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One way a response goes wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// 429 with `Retry-After: secs` and Cloudflare's rate-limit error body.
    RateLimited { retry_after_secs: u64 },
    /// A 5xx status with an error body.
    ServerError { status: u16 },
    /// Headers and `after_bytes` bytes of the (encoded) body, then the connection is
    /// aborted without the terminating chunk.
    ResetMidBody { after_bytes: u64 },
    /// The body ends cleanly (valid chunked framing) after `after_bytes` bytes of its
    /// encoded form: a gzip stream without its trailer, or plain NDJSON cut mid-line.
    Truncated { after_bytes: u64 },
    /// Line `line` (1-based) is replaced by a cut-off JSON object; the body stays
    /// complete and well-framed, so only line checking can catch it.
    MalformedLine { line: u64 },
    /// Headers and `after_bytes` bytes of the (encoded) body, then nothing for
    /// `stall_ms` before the rest follows: a stalled transfer.
    StallMidBody { after_bytes: u64, stall_ms: u64 },
    /// The response (status and headers) is held back this long.
    SlowFirstByte { delay_ms: u64 },
    /// 403 with Cloudflare's authentication error, whatever the credentials.
    BadToken,
}

impl Fault {
    pub fn slow_delay(&self) -> Option<Duration> {
        match self {
            Fault::SlowFirstByte { delay_ms } => Some(Duration::from_millis(*delay_ms)),
            _ => None,
        }
    }
}

/// Which requests a fault hits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// Zone ID; `None` hits every zone.
    #[serde(default)]
    pub zone: Option<String>,
    /// Only requests whose `[start, end)` overlaps this range (nanoseconds since the
    /// epoch, `[from, to)`).
    #[serde(default)]
    pub window_ns: Option<(i64, i64)>,
    /// How many matching requests it hits; `None` means every one.
    #[serde(default)]
    pub times: Option<u64>,
    pub fault: Fault,
}

impl FaultRule {
    /// A rule hitting every request for `zone`.
    pub fn zone(zone: impl Into<String>, fault: Fault) -> Self {
        Self {
            zone: Some(zone.into()),
            window_ns: None,
            times: None,
            fault,
        }
    }

    /// Limits the rule to the next `n` matching requests.
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }

    /// Limits the rule to requests overlapping `[from_ns, to_ns)`.
    pub fn window(mut self, from_ns: i64, to_ns: i64) -> Self {
        self.window_ns = Some((from_ns, to_ns));
        self
    }

    fn matches(&self, zone: &str, start_ns: i64, end_ns: i64) -> bool {
        if self.times == Some(0) {
            return false;
        }
        if self.zone.as_deref().is_some_and(|z| z != zone) {
            return false;
        }
        match self.window_ns {
            Some((from, to)) => start_ns < to && from < end_ns,
            None => true,
        }
    }

    /// Parses the command-line form: `kind[:arg][,zone=Z][,times=N][,window=FROM-TO]`
    /// (FROM and TO in unix seconds, `[FROM, TO)`), e.g.
    /// `429:5,zone=abc,times=2`, `500`, `reset:65536`, `truncate:32768`, `malformed:10`,
    /// `slow:3000`, `bad-token,zone=abc`.
    pub fn parse_cli(s: &str) -> Result<Self, String> {
        let mut parts = s.split(',');
        let head = parts.next().unwrap_or_default();
        let (kind, arg) = match head.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (head, None),
        };
        let num = |default: u64| -> Result<u64, String> {
            match arg {
                None => Ok(default),
                Some(a) => a
                    .parse()
                    .map_err(|_| format!("fault {s:?}: {a:?} is not a number")),
            }
        };
        let fault = match kind {
            "429" => Fault::RateLimited { retry_after_secs: num(1)? },
            "500" | "502" | "503" | "504" => Fault::ServerError {
                status: kind.parse().map_err(|_| format!("fault {s:?}: bad status"))?,
            },
            "reset" => Fault::ResetMidBody { after_bytes: num(32 * 1024)? },
            "truncate" => Fault::Truncated { after_bytes: num(32 * 1024)? },
            "malformed" => Fault::MalformedLine { line: num(1)? },
            "stall" => Fault::StallMidBody {
                after_bytes: 32 * 1024,
                stall_ms: num(10_000)?,
            },
            "slow" => Fault::SlowFirstByte { delay_ms: num(2000)? },
            "bad-token" => Fault::BadToken,
            other => return Err(format!("fault {s:?}: unknown kind {other:?} (429, 5xx, reset, truncate, malformed, stall, slow, bad-token)")),
        };
        let mut rule = FaultRule {
            zone: None,
            window_ns: None,
            times: None,
            fault,
        };
        for part in parts {
            match part.split_once('=') {
                Some(("zone", z)) => rule.zone = Some(z.to_owned()),
                Some(("times", n)) => {
                    rule.times = Some(
                        n.parse()
                            .map_err(|_| format!("fault {s:?}: times={n:?} is not a number"))?,
                    )
                }
                Some(("window", w)) => {
                    let bad =
                        || format!("fault {s:?}: window={w:?} must be FROM-TO in unix seconds");
                    let secs = |x: &str| {
                        x.parse::<i64>()
                            .ok()
                            .and_then(|v| v.checked_mul(1_000_000_000))
                            .ok_or_else(bad)
                    };
                    let (from, to) = w.split_once('-').ok_or_else(bad)?;
                    rule.window_ns = Some((secs(from)?, secs(to)?));
                }
                _ => {
                    return Err(format!(
                        "fault {s:?}: unknown option {part:?} (zone=, times=, window=)"
                    ))
                }
            }
        }
        Ok(rule)
    }
}

/// A rule with a budget of hits (`None`: unlimited).
pub trait Budgeted {
    fn budget(&mut self) -> &mut Option<u64>;
}

impl Budgeted for FaultRule {
    fn budget(&mut self) -> &mut Option<u64> {
        &mut self.times
    }
}

/// The live rules of a running simulator, Logpull's ([`FaultBook`]) or Logpush's
/// ([`crate::push_faults::PushFaultBook`]).
#[derive(Debug)]
pub struct RuleBook<R> {
    rules: Mutex<Vec<R>>,
}

impl<R> Default for RuleBook<R> {
    fn default() -> Self {
        Self {
            rules: Mutex::new(Vec::new()),
        }
    }
}

impl<R: Clone + Budgeted> RuleBook<R> {
    pub fn new(rules: Vec<R>) -> Self {
        Self {
            rules: Mutex::new(rules),
        }
    }

    pub fn add(&self, rule: R) {
        self.lock().push(rule);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn list(&self) -> Vec<R> {
        self.lock().clone()
    }

    /// The first rule `matches` accepts, spending one use of its budget.
    pub(crate) fn take_first(&self, matches: impl Fn(&R) -> bool) -> Option<R> {
        let mut rules = self.lock();
        let rule = rules.iter_mut().find(|r| matches(r))?;
        if let Some(n) = rule.budget().as_mut() {
            *n -= 1;
        }
        Some(rule.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<R>> {
        // A panic while holding this lock cannot leave the list inconsistent (every
        // update is a single push, clear or decrement), so a poisoned lock is still usable.
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The live Logpull fault rules.
pub type FaultBook = RuleBook<FaultRule>;

impl RuleBook<FaultRule> {
    /// The fault for this request, if any, spending one use of its rule.
    pub fn take(&self, zone: &str, start_ns: i64, end_ns: i64) -> Option<Fault> {
        self.take_first(|r| r.matches(zone, start_ns, end_ns))
            .map(|r| r.fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_with_a_budget_hits_that_many_requests() {
        let book = FaultBook::new(vec![FaultRule::zone(
            "a",
            Fault::ServerError { status: 503 },
        )
        .times(2)]);
        assert!(book.take("b", 0, 10).is_none());
        assert!(book.take("a", 0, 10).is_some());
        assert!(book.take("a", 0, 10).is_some());
        assert!(book.take("a", 0, 10).is_none());
    }

    #[test]
    fn a_window_rule_hits_only_overlapping_requests() {
        let book = FaultBook::new(vec![FaultRule::zone("a", Fault::BadToken).window(100, 200)]);
        assert!(book.take("a", 0, 100).is_none());
        assert!(book.take("a", 200, 300).is_none());
        assert_eq!(book.take("a", 150, 250), Some(Fault::BadToken));
    }

    #[test]
    fn cli_forms_parse() {
        let r = FaultRule::parse_cli("429:5,zone=abc,times=2").expect("parses");
        assert_eq!(
            r.fault,
            Fault::RateLimited {
                retry_after_secs: 5
            }
        );
        assert_eq!((r.zone.as_deref(), r.times), (Some("abc"), Some(2)));
        assert_eq!(
            FaultRule::parse_cli("502").map(|r| r.fault),
            Ok(Fault::ServerError { status: 502 })
        );
        let w = FaultRule::parse_cli("truncate,window=60-120").expect("parses");
        assert_eq!(w.window_ns, Some((60_000_000_000, 120_000_000_000)));
        assert!(FaultRule::parse_cli("500,window=60").is_err());
        assert!(FaultRule::parse_cli("explode").is_err());
        assert!(FaultRule::parse_cli("reset:x").is_err());
    }
}
