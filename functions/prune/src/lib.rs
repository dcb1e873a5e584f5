//! The prune stage: deletes archived objects past their retention, writes deletion
//! receipts and sweeps orphaned and stale staged objects; scheduled daily.
//!
//! Kinds: `prune.run` (payload [`PruneTask`]) and `prune.verify_sample`, the periodic
//! sampled verification ([`sample`]; deep checks need the kms, shallow ones do not). The work is the library function
//! [`prune`] (options with an injectable clock, a report, typed errors), which the
//! `rainlogs prune` CLI and the tests call directly. Rules, receipts and the schedule
//! are described in docs/RETENTION.md.
//!
//! As a scheduled Lambda the binary also accepts a bare EventBridge/Scheduler event (or
//! `{}`) and treats it as a `prune.run` with the event's `detail` as payload.

mod context;
mod retention;
mod run;
pub mod sample;
mod sweep;

use std::sync::Arc;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use rainlogs_core::config::ConfigSource;
use rainlogs_core::function::{invoke_envelope, unsupported_kind, Function};
use rainlogs_core::storage::ObjectStore;
use rainlogs_core::task::{kinds, TaskSpec};
use rainlogs_core::{HandlerOutput, TaskEnvelope, TaskError};
use rainlogs_sealed::kms::Kms;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

pub use context::{
    check_as_of, PruneError, PruneOptions, PruneReport, RetentionReport, SweepReport,
    DEFAULT_ORPHAN_GRACE, DEFAULT_PAGE_SIZE, DEFAULT_SAMPLE, DEFAULT_STAGING_MAX_AGE,
    MAX_PAGE_SIZE,
};
pub use run::prune;

/// The function's name, the first segment of the task kinds it serves.
pub const NAME: &str = "prune";
/// The queue `prune.run` travels on.
pub const QUEUE: &str = "default";
/// Wall time a `prune.run` task spends before it hands the rest to a follow-up task
/// (Lambda stops a function at 15 minutes, the shim at its timeout).
pub const TASK_TIME_BUDGET: Duration = Duration::from_secs(600);
/// The shortest grace / staging age a task may ask for: a queued message must not be
/// able to sweep objects that are merely in the middle of their upload.
pub const MIN_TASK_SWEEP_AGE: TimeDelta = TimeDelta::hours(1);

/// The payload of `prune.run`; every field is optional (`{}` is the daily run).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneTask {
    /// Report only; delete nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Judge as of this instant (RFC 3339); refused when later than the clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphan_grace_hours: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging_max_age_hours: Option<u32>,
}

impl PruneTask {
    /// The run options this payload asks for, judged against the real clock `now`.
    pub fn options(&self, now: DateTime<Utc>) -> Result<PruneOptions, PruneError> {
        let as_of = self.as_of.unwrap_or(now);
        check_as_of(as_of, now)?;
        let mut opts = PruneOptions::at(as_of);
        opts.dry_run = self.dry_run;
        opts.tenant = self.tenant;
        if let Some(p) = self.page_size {
            opts.page_size = p;
        }
        for (option, hours, field) in [
            (
                "orphan_grace_hours",
                self.orphan_grace_hours,
                &mut opts.orphan_grace,
            ),
            (
                "staging_max_age_hours",
                self.staging_max_age_hours,
                &mut opts.staging_max_age,
            ),
        ] {
            if let Some(h) = hours {
                let age = TimeDelta::hours(i64::from(h));
                if age < MIN_TASK_SWEEP_AGE {
                    return Err(PruneError::InvalidOption {
                        option,
                        reason: format!("must be at least {} h", MIN_TASK_SWEEP_AGE.num_hours()),
                    });
                }
                *field = age;
            }
        }
        Ok(opts)
    }

    /// The `prune.run` task carrying this payload.
    pub fn spec(&self) -> TaskSpec {
        TaskSpec::new(
            QUEUE,
            kinds::PRUNE_RUN,
            serde_json::to_value(self).unwrap_or_default(),
        )
    }
}

/// The prune function: a Postgres pool, the archive bucket and, for deep sampled
/// verification, the kms; built once.
#[derive(Clone)]
pub struct PruneFunction {
    pool: PgPool,
    store: ObjectStore,
    kms: Option<Arc<dyn Kms>>,
}

impl PruneFunction {
    pub fn new(pool: PgPool, store: ObjectStore) -> Self {
        Self {
            pool,
            store,
            kms: None,
        }
    }

    /// Lets `prune.verify_sample` decrypt objects (deep checks).
    pub fn with_kms(mut self, kms: Option<Arc<dyn Kms>>) -> Self {
        self.kms = kms;
        self
    }

    /// Builds the clients from configuration and checks both services answer; the kms
    /// only when a master keyring is configured (without it sampling stays shallow).
    pub async fn from_config(src: &ConfigSource) -> anyhow::Result<Self> {
        let (pool, store) = rainlogs_core::function::connect_stores(src).await?;
        let kms: Option<Arc<dyn Kms>> = if rainlogs_kms::MasterKeyring::configured(src) {
            Some(Arc::new(rainlogs_kms::KmsService::from_config(
                pool.clone(),
                src,
                NAME,
            )?))
        } else {
            None
        };
        Ok(Self::new(pool, store).with_kms(kms))
    }

    async fn run(&self, task: &TaskEnvelope) -> Result<HandlerOutput, TaskError> {
        let payload: PruneTask = task.payload_as()?;
        let mut opts = payload.options(Utc::now())?;
        opts.time_budget = Some(TASK_TIME_BUDGET);
        let report = prune(&self.pool, &self.store, &opts).await?;
        let mut out = HandlerOutput::done(serde_json::to_value(&report).unwrap_or_default());
        if !report.complete {
            // Hand the rest to a follow-up judged at the same instant; what this run
            // already did is not selected again.
            let rest = PruneTask {
                as_of: Some(report.as_of),
                ..payload
            };
            out.next.push(rest.spec().idempotency_key(format!(
                "{}:continue:{}",
                kinds::PRUNE_RUN,
                report.run_id
            )));
        }
        Ok(out)
    }
}

/// An EventBridge / EventBridge Scheduler event (`"source": "aws.events"` or
/// `"aws.scheduler"`) or a bare `{}` as the scheduled Lambda receives it: a
/// `prune.run` whose payload is the event's `detail` (absent or `{}`: the daily run) —
/// or, with `"kind": "prune.verify_sample"`, the sampled verification
/// (infra/aws/template.yaml schedules both). Another `kind` is not a scheduled event.
fn scheduled_event(event: &serde_json::Value) -> Option<serde_json::Value> {
    let map = event.as_object()?;
    let scheduled = map.is_empty()
        || matches!(
            map.get("source").and_then(|s| s.as_str()),
            Some("aws.events" | "aws.scheduler")
        );
    if !scheduled {
        return None;
    }
    let kind = match map.get("kind").map(|k| k.as_str()) {
        None => kinds::PRUNE_RUN,
        Some(Some(kinds::PRUNE_RUN)) => kinds::PRUNE_RUN,
        Some(Some(sample::KIND)) => sample::KIND,
        Some(_) => return None,
    };
    let payload = map
        .get("detail")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    let mut spec = TaskSpec::new(QUEUE, kind, payload);
    spec.trace_id = map.get("id").and_then(|i| i.as_str()).map(str::to_owned);
    serde_json::to_value(TaskEnvelope::new(spec, Utc::now())).ok()
}

#[async_trait]
impl Function for PruneFunction {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn handle(&self, task: TaskEnvelope) -> Result<HandlerOutput, TaskError> {
        match task.kind.as_str() {
            kinds::PRUNE_RUN => self.run(&task).await,
            sample::KIND => {
                let summary = sample::run(
                    &self.pool,
                    &self.store,
                    self.kms.clone(),
                    &task.payload_as()?,
                )
                .await?;
                Ok(HandlerOutput::done(
                    serde_json::to_value(summary).unwrap_or_default(),
                ))
            }
            _ => Err(unsupported_kind(NAME, &task)),
        }
    }

    async fn invoke_json(&self, event: serde_json::Value) -> Result<serde_json::Value, TaskError> {
        let event = scheduled_event(&event).unwrap_or(event);
        invoke_envelope(self, event).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_payload_is_the_daily_run_at_the_clock() {
        let now = Utc::now();
        let opts = PruneTask::default().options(now).unwrap();
        assert_eq!(opts.as_of, now);
        assert!(!opts.dry_run);
        assert_eq!(opts.page_size, DEFAULT_PAGE_SIZE);
        assert_eq!(opts.orphan_grace, DEFAULT_ORPHAN_GRACE);
    }

    #[test]
    fn payload_refuses_future_as_of_unknown_fields_and_tiny_grace() {
        let now = Utc::now();
        let future = PruneTask {
            as_of: Some(now + TimeDelta::seconds(1)),
            ..Default::default()
        };
        assert!(matches!(
            future.options(now),
            Err(PruneError::AsOfInFuture { .. })
        ));
        assert!(serde_json::from_value::<PruneTask>(serde_json::json!({"dry": true})).is_err());
        let tiny = PruneTask {
            orphan_grace_hours: Some(0),
            ..Default::default()
        };
        assert!(matches!(
            tiny.options(now),
            Err(PruneError::InvalidOption {
                option: "orphan_grace_hours",
                ..
            })
        ));
    }

    #[test]
    fn scheduled_events_become_prune_run_envelopes() {
        let eb = serde_json::json!({
            "version": "0", "id": "abc", "detail-type": "Scheduled Event",
            "source": "aws.events", "time": "2026-11-30T03:17:00Z", "detail": {}
        });
        let env = scheduled_event(&eb).unwrap();
        let env = TaskEnvelope::parse(env.to_string().as_bytes()).unwrap();
        assert_eq!(env.kind, kinds::PRUNE_RUN);
        assert_eq!(env.trace_id, "abc");
        let bare = scheduled_event(&serde_json::json!({})).unwrap();
        assert_eq!(bare["kind"], kinds::PRUNE_RUN);
        let with_detail = scheduled_event(
            &serde_json::json!({"source": "aws.scheduler", "detail": {"dry_run": true}}),
        )
        .unwrap();
        assert_eq!(with_detail["payload"]["dry_run"], true);
        let sample = scheduled_event(&serde_json::json!({"source": "aws.scheduler",
            "kind": sample::KIND, "detail": {"objects": 4}}))
        .unwrap();
        assert_eq!(
            (sample["kind"].as_str(), &sample["payload"]["objects"]),
            (Some(sample::KIND), &serde_json::json!(4))
        );
        assert!(
            scheduled_event(&serde_json::json!({"source": "aws.scheduler", "kind": "kms.rotate"}))
                .is_none(),
            "a scheduled event starts prune runs and samples, nothing else"
        );
        // An envelope is not a scheduled event: it goes through unchanged.
        let task = TaskEnvelope::new(PruneTask::default().spec(), Utc::now());
        assert!(scheduled_event(&serde_json::to_value(task).unwrap()).is_none());
    }
}
