//! Periodic tasks: cron expressions that enqueue a task once per period, however many
//! dispatchers run them.
//!
//! Every dispatcher evaluates every schedule; the Lua script behind
//! [`Queue::fire_schedule`] records the last fired period per schedule name and
//! enqueues only when the period is newer, so exactly one dispatcher wins each
//! period. A period missed while no dispatcher ran is not caught up (the ledger in
//! Postgres, not the schedule, is what guarantees pipeline work).

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rainlogs_core::task::{TaskEnvelope, TaskSpec};
use serde::Deserialize;

use crate::queue::{Queue, QueueError};

/// One periodic task.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Unique name: the key its last fired period is kept under.
    pub name: String,
    /// The cron expression (with seconds: `sec min hour day month weekday [year]`).
    pub cron: cron::Schedule,
    /// What to enqueue each period.
    pub spec: TaskSpec,
}

// `cron::Schedule` has no PartialEq; compare by source text.
impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.cron.to_string() == other.cron.to_string()
            && self.spec == other.spec
    }
}

/// Why a schedule definition is not usable.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedules are not valid JSON: {0}")]
    Json(String),
    #[error("schedule {name:?}: cron expression {expr:?} is invalid: {reason}")]
    Cron {
        name: String,
        expr: String,
        reason: String,
    },
    #[error("schedule name {0:?} is used twice")]
    Duplicate(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFile {
    name: String,
    cron: String,
    #[serde(flatten)]
    spec: TaskSpec,
}

impl Schedule {
    pub fn new(
        name: impl Into<String>,
        cron_expr: &str,
        spec: TaskSpec,
    ) -> Result<Self, ScheduleError> {
        let name = name.into();
        let cron = cron::Schedule::from_str(cron_expr).map_err(|e| ScheduleError::Cron {
            name: name.clone(),
            expr: cron_expr.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self { name, cron, spec })
    }

    /// The latest fire time in `(after, now]`, if the schedule fired in between.
    pub fn due_between(&self, after: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.after(&after).take_while(|t| *t <= now).last()
    }

    /// The first fire time after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.after(&t).next()
    }

    /// Fires the period at `at` unless another dispatcher already did.
    pub async fn fire(&self, queue: &Queue, at: DateTime<Utc>) -> Result<bool, QueueError> {
        let mut spec = self.spec.clone();
        // Dedup key per period: a redelivered or doubled fire can never enqueue twice.
        spec.idempotency_key
            .get_or_insert_with(|| format!("schedule:{}:{}", self.name, at.timestamp_millis()));
        let envelope = TaskEnvelope::new(spec, at.max(Utc::now()));
        queue.fire_schedule(&self.name, at, &envelope).await
    }
}

/// Name of the built-in daily prune schedule.
pub const PRUNE_SCHEDULE: &str = "prune-daily";
/// When it fires: 03:17:00 UTC every day (off the hour, away from other cron jobs).
pub const PRUNE_CRON: &str = "0 17 3 * * *";

/// The schedules a dispatcher has when `RAINLOGS_SCHEDULES_FILE` is not set: the daily
/// `prune.run` (docs/RETENTION.md) and the hourly `prune.verify_sample` (docs/VERIFY.md). A schedules file replaces this list; `off` empties it.
pub fn default_schedules() -> Result<Vec<Schedule>, ScheduleError> {
    use rainlogs_prune::sample;
    Ok(vec![
        Schedule::new(
            PRUNE_SCHEDULE,
            PRUNE_CRON,
            rainlogs_prune::PruneTask::default().spec(),
        )?,
        // Continuous integrity sampling (docs/VERIFY.md): a few objects every hour.
        Schedule::new(
            sample::SCHEDULE_NAME,
            sample::CRON,
            sample::SampleTask::default().spec(),
        )?,
    ])
}

/// Parses a JSON array of `{"name", "cron", "queue", "kind", "payload"?, ...TaskSpec}`.
pub fn parse_schedules(json: &str) -> Result<Vec<Schedule>, ScheduleError> {
    let raw: Vec<ScheduleFile> =
        serde_json::from_str(json).map_err(|e| ScheduleError::Json(e.to_string()))?;
    let mut out: Vec<Schedule> = Vec::new();
    for s in raw {
        if out.iter().any(|o| o.name == s.name) {
            return Err(ScheduleError::Duplicate(s.name));
        }
        out.push(Schedule::new(s.name, &s.cron, s.spec)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_and_rejects_bad_cron() {
        let s = parse_schedules(
            r#"[{"name":"prune","cron":"0 */5 * * * *","queue":"default","kind":"prune.run"}]"#,
        )
        .unwrap();
        assert_eq!(s[0].spec.kind, "prune.run");
        let err =
            parse_schedules(r#"[{"name":"x","cron":"every tuesday","queue":"q","kind":"a.b"}]"#)
                .unwrap_err();
        assert!(err.to_string().contains("\"x\""), "{err}");
    }

    #[test]
    fn the_built_in_schedules_prune_daily_at_03_17_utc_and_sample_hourly() {
        use chrono::TimeZone;
        let s = default_schedules().unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].spec.kind, rainlogs_prune::sample::KIND);
        let noon = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        assert_eq!(
            s[1].next_after(noon),
            Some(Utc.with_ymd_and_hms(2026, 11, 30, 12, 41, 0).unwrap())
        );
        assert_eq!(s[0].name, PRUNE_SCHEDULE);
        assert_eq!(s[0].spec.kind, rainlogs_core::task::kinds::PRUNE_RUN);
        assert_eq!(s[0].spec.payload, serde_json::json!({}));
        let t = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        assert_eq!(
            s[0].next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 12, 1, 3, 17, 0).unwrap())
        );
    }

    #[test]
    fn due_between_takes_the_latest_period_only() {
        let s = Schedule::new(
            "t",
            "*/10 * * * * *",
            TaskSpec::new("q", "a.b", serde_json::Value::Null),
        )
        .unwrap();
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:01Z")
            .unwrap()
            .with_timezone(&Utc);
        let t1 = DateTime::parse_from_rfc3339("2026-01-01T00:00:35Z")
            .unwrap()
            .with_timezone(&Utc);
        let due = s.due_between(t0, t1).unwrap();
        assert_eq!(due.to_rfc3339(), "2026-01-01T00:00:30+00:00");
        assert!(s.due_between(t1, t1).is_none());
    }
}
