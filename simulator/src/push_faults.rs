//! Injectable faults of the Logpush side: what can go wrong when the simulated
//! Cloudflare delivers a batch to a job's destination, and which deliveries it hits.
//!
//! A [`PushFaultRule`] picks deliveries (one job, a zone's jobs, or all; for the next N
//! hits or forever) and applies one [`PushFault`]. Two moments ask for a fault:
//! planning a batch ([`PushFault::HugeBatch`], [`PushFault::Duplicate`]) and each HTTP
//! attempt of a batch (the others). So a `reset` with `times=1` breaks one attempt and
//! the retry goes through, as on a real network; a `wrong-secret` without a budget makes
//! every attempt fail until the retries give up and the batch is dropped.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::faults::{Budgeted, RuleBook};

/// One way a delivery goes wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PushFault {
    /// The batch is delivered again after its first 2xx: a re-delivery whose
    /// acknowledgement Cloudflare did not see.
    Duplicate,
    /// The connection is dropped after `after_bytes` bytes of the gzip body (no
    /// terminating chunk): the receiver sees a broken body, the sender no answer.
    ResetMidBody { after_bytes: u64 },
    /// Every body chunk (~64 KiB of NDJSON, gzipped) is held back `chunk_delay_ms`.
    SlowBody { chunk_delay_ms: u64 },
    /// The batch ignores the job's record and byte limits and grows to `bytes` of NDJSON,
    /// taking the zone's next records (past the interval if needed), so every record is
    /// still delivered once; for the 1 GB benchmark.
    HugeBatch { bytes: u64 },
    /// The `header_*` values are replaced by wrong ones (the receiver answers 401).
    WrongSecret,
}

impl PushFault {
    /// Whether this fault is decided once per batch (else once per attempt).
    pub fn per_batch(&self) -> bool {
        matches!(self, PushFault::Duplicate | PushFault::HugeBatch { .. })
    }

    pub fn chunk_delay(&self) -> Option<Duration> {
        match self {
            PushFault::SlowBody { chunk_delay_ms } => Some(Duration::from_millis(*chunk_delay_ms)),
            _ => None,
        }
    }
}

/// Which deliveries a push fault hits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushFaultRule {
    /// Job id; `None` hits every job (of `zone`, if given).
    #[serde(default)]
    pub job: Option<u64>,
    /// Zone ID; `None` hits every zone.
    #[serde(default)]
    pub zone: Option<String>,
    /// How many deliveries it hits; `None` means every one.
    #[serde(default)]
    pub times: Option<u64>,
    pub fault: PushFault,
}

impl PushFaultRule {
    /// A rule hitting every delivery of job `job`.
    pub fn job(job: u64, fault: PushFault) -> Self {
        Self {
            job: Some(job),
            zone: None,
            times: None,
            fault,
        }
    }

    /// A rule hitting every delivery of every job.
    pub fn any(fault: PushFault) -> Self {
        Self {
            job: None,
            zone: None,
            times: None,
            fault,
        }
    }

    /// Limits the rule to the next `n` matching deliveries.
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }

    fn matches(&self, job: u64, zone: &str, per_batch: bool) -> bool {
        self.times != Some(0)
            && self.fault.per_batch() == per_batch
            && self.job.is_none_or(|j| j == job)
            && self.zone.as_deref().is_none_or(|z| z == zone)
    }

    /// Parses the command-line form `kind[:arg][,job=N][,zone=Z][,times=N]`: kinds
    /// `duplicate`, `reset[:after_bytes]`, `slow[:chunk_delay_ms]`, `huge[:bytes]`,
    /// `wrong-secret`.
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
                    .map_err(|_| format!("push fault {s:?}: {a:?} is not a number")),
            }
        };
        let fault = match kind {
            "duplicate" => PushFault::Duplicate,
            "reset" => PushFault::ResetMidBody {
                after_bytes: num(16 * 1024)?,
            },
            "slow" => PushFault::SlowBody {
                chunk_delay_ms: num(500)?,
            },
            "huge" => PushFault::HugeBatch {
                bytes: num(1_000_000_000)?,
            },
            "wrong-secret" => PushFault::WrongSecret,
            other => {
                return Err(format!(
                    "push fault {s:?}: unknown kind {other:?} (duplicate, reset, slow, huge, wrong-secret)"
                ))
            }
        };
        let mut rule = PushFaultRule::any(fault);
        for part in parts {
            let bad = |what: &str| format!("push fault {s:?}: {what}");
            match part.split_once('=') {
                Some(("job", n)) => {
                    rule.job = Some(n.parse().map_err(|_| bad("job= is not a number"))?)
                }
                Some(("zone", z)) => rule.zone = Some(z.to_owned()),
                Some(("times", n)) => {
                    rule.times = Some(n.parse().map_err(|_| bad("times= is not a number"))?)
                }
                _ => {
                    return Err(bad(&format!(
                        "unknown option {part:?} (job=, zone=, times=)"
                    )))
                }
            }
        }
        Ok(rule)
    }
}

impl Budgeted for PushFaultRule {
    fn budget(&mut self) -> &mut Option<u64> {
        &mut self.times
    }
}

/// The live push fault rules of a running simulator.
pub type PushFaultBook = RuleBook<PushFaultRule>;

impl RuleBook<PushFaultRule> {
    /// The per-batch fault for the next batch of `job`, spending one use of its rule.
    pub fn take_batch(&self, job: u64, zone: &str) -> Option<PushFault> {
        self.take_first(|r| r.matches(job, zone, true))
            .map(|r| r.fault)
    }

    /// The per-attempt fault for the next HTTP attempt of `job`, spending one use.
    pub fn take_attempt(&self, job: u64, zone: &str) -> Option<PushFault> {
        self.take_first(|r| r.matches(job, zone, false))
            .map(|r| r.fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_and_attempt_faults_are_taken_at_their_own_moment() {
        let book = PushFaultBook::new(vec![
            PushFaultRule::job(7, PushFault::Duplicate).times(1),
            PushFaultRule::any(PushFault::ResetMidBody { after_bytes: 10 }).times(2),
        ]);
        assert_eq!(
            book.take_attempt(7, "z"),
            Some(PushFault::ResetMidBody { after_bytes: 10 })
        );
        assert_eq!(
            book.take_batch(8, "z"),
            None,
            "the duplicate rule is job 7's"
        );
        assert_eq!(book.take_batch(7, "z"), Some(PushFault::Duplicate));
        assert_eq!(book.take_batch(7, "z"), None, "budget spent");
        assert!(book.take_attempt(9, "z").is_some());
        assert!(book.take_attempt(9, "z").is_none());
    }

    #[test]
    fn cli_forms_parse() {
        let r = PushFaultRule::parse_cli("reset:4096,job=3,times=1").unwrap();
        assert_eq!(r.fault, PushFault::ResetMidBody { after_bytes: 4096 });
        assert_eq!((r.job, r.times), (Some(3), Some(1)));
        assert_eq!(
            PushFaultRule::parse_cli("huge").unwrap().fault,
            PushFault::HugeBatch {
                bytes: 1_000_000_000
            }
        );
        let w = PushFaultRule::parse_cli("wrong-secret,zone=abc").unwrap();
        assert_eq!(
            (w.fault, w.zone.as_deref()),
            (PushFault::WrongSecret, Some("abc"))
        );
        assert!(PushFaultRule::parse_cli("explode").is_err());
        assert!(PushFaultRule::parse_cli("slow:x").is_err());
        assert!(PushFaultRule::parse_cli("duplicate,job=x").is_err());
    }
}
