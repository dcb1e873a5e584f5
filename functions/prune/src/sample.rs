//! `prune.verify_sample`: continuous verification by sampling.
//!
//! A full `rainlogs verify` reads every object; this periodic task reads a few random
//! archived objects each run, so tampering or loss surfaces between full runs. Each run
//! checks `objects` random archived windows — catalog row against link, object size and
//! SHA-256, and, for `deep_fraction` of them, decryption against the window's context
//! and the plaintext hash and record count — with the same checks as `rainlogs verify`
//! ([`rainlogs_archive::verify`]), then writes one `audit_events` row (operation
//! `verify.sample`, result `ok` or `findings`, the counts and findings in `detail`) and
//! returns the same summary.
//!
//! The kind is `prune.verify_sample` because a task's function is the first segment of
//! its kind: this function serves it.

use std::sync::Arc;

use rainlogs_archive::audit::{self, AuditEvent};
use rainlogs_archive::verify::{self, Finding, Verifier, VerifyError};
use rainlogs_core::db::DbError;
use rainlogs_core::storage::ObjectStore;
use rainlogs_core::task::TaskSpec;
use rainlogs_core::TaskError;
use rainlogs_sealed::kms::Kms;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// The task kind.
pub const KIND: &str = "prune.verify_sample";
/// The audit operation each run records.
pub const AUDIT_OPERATION: &str = "verify.sample";
/// Suggested schedule: every hour at minute 41 (`RAINLOGS_SCHEDULES_FILE` syntax).
pub const CRON: &str = "0 41 * * * *";
/// Suggested schedule name.
pub const SCHEDULE_NAME: &str = "verify-sample-hourly";
/// At most this many objects per run (bounds the run's time and the audit row).
pub const MAX_OBJECTS: u32 = 1000;

fn default_objects() -> u32 {
    16
}

fn default_deep_fraction() -> f64 {
    0.25
}

/// The payload; `{}` takes the defaults (16 objects, a quarter of them deep).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleTask {
    #[serde(default = "default_objects")]
    pub objects: u32,
    #[serde(default = "default_deep_fraction")]
    pub deep_fraction: f64,
}

impl Default for SampleTask {
    fn default() -> Self {
        Self {
            objects: default_objects(),
            deep_fraction: default_deep_fraction(),
        }
    }
}

impl SampleTask {
    /// The task carrying this payload, on the default queue.
    pub fn spec(&self) -> TaskSpec {
        TaskSpec::new(
            "default",
            KIND,
            serde_json::to_value(self).unwrap_or_default(),
        )
    }

    fn validate(&self) -> Result<(), TaskError> {
        if self.objects == 0 || self.objects > MAX_OBJECTS {
            return Err(TaskError::permanent(
                "verify_sample.invalid",
                format!("objects must be 1-{MAX_OBJECTS}, got {}", self.objects),
            ));
        }
        if !(0.0..=1.0).contains(&self.deep_fraction) {
            return Err(TaskError::permanent(
                "verify_sample.invalid",
                format!(
                    "deep_fraction must be in [0, 1], got {}",
                    self.deep_fraction
                ),
            ));
        }
        Ok(())
    }
}

/// What one run checked and found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleSummary {
    /// `ok` or `findings`.
    pub result: String,
    pub archived_objects: u64,
    pub sampled: u64,
    pub deep: u64,
    /// Why fewer objects were checked deep than asked (no kms in this process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deep_skipped: Option<String>,
    pub findings: Vec<Finding>,
}

fn db(e: DbError) -> TaskError {
    TaskError::classified(&e)
}

fn operational(e: VerifyError) -> TaskError {
    match e {
        VerifyError::Operational(t) => t,
        VerifyError::Db(d) => db(d),
        VerifyError::NoKms | VerifyError::NoChainKey { .. } => {
            TaskError::permanent("verify_sample.no_kms", e.to_string())
        }
    }
}

/// Picks up to `n` distinct random archived windows: random probes into the id range,
/// each taking the next archived window at or after it (one indexed lookup per probe,
/// so the cost does not grow with the archive).
async fn pick(pool: &PgPool, n: u32) -> Result<(u64, Vec<i64>), TaskError> {
    let row = sqlx::query!(
        r#"SELECT count(*) AS "count!", min(a.window_id) AS lo, max(a.window_id) AS hi
           FROM archived_objects a JOIN windows w ON w.id = a.window_id
           WHERE w.state = 'archived'"#
    )
    .fetch_one(pool)
    .await
    .map_err(|e| db(DbError::query("count archived objects", e)))?;
    let (count, lo, hi) = (row.count, row.lo, row.hi);
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok((0, Vec::new()));
    };
    let want = u64::from(n).min(u64::try_from(count).unwrap_or(0));
    if u64::try_from(count).unwrap_or(0) <= u64::from(n) {
        // Asked for at least everything: take everything (no probe can miss one).
        let ids: Vec<i64> = sqlx::query_scalar!(
            "SELECT a.window_id FROM archived_objects a JOIN windows w ON w.id = a.window_id
             WHERE w.state = 'archived' ORDER BY a.window_id",
        )
        .fetch_all(pool)
        .await
        .map_err(|e| db(DbError::query("list archived objects", e)))?;
        return Ok((ids.len() as u64, ids));
    }
    let mut ids: Vec<i64> = Vec::new();
    // A bounded number of probes: dense id ranges need about `want`, sparse ones more.
    for _ in 0..want * 4 {
        if ids.len() as u64 >= want {
            break;
        }
        let probe = rand::Rng::gen_range(&mut rand::thread_rng(), lo..=hi);
        let id: Option<i64> = sqlx::query_scalar!(
            "SELECT coalesce(
                (SELECT a.window_id FROM archived_objects a JOIN windows w ON w.id = a.window_id
                 WHERE a.window_id >= $1 AND w.state = 'archived'
                 ORDER BY a.window_id LIMIT 1),
                (SELECT a.window_id FROM archived_objects a JOIN windows w ON w.id = a.window_id
                 WHERE w.state = 'archived' ORDER BY a.window_id LIMIT 1))",
            probe
        )
        .fetch_one(pool)
        .await
        .map_err(|e| db(DbError::query("pick a random archived object", e)))?;
        if let Some(id) = id {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    Ok((u64::try_from(count).unwrap_or(0), ids))
}

/// One sampling run: checks, the audit row, the summary.
pub async fn run(
    pool: &PgPool,
    store: &ObjectStore,
    kms: Option<Arc<dyn Kms>>,
    task: &SampleTask,
) -> Result<SampleSummary, TaskError> {
    task.validate()?;
    let (archived, ids) = pick(pool, task.objects).await?;
    let receipts = verify::receipts_exist(pool).await.map_err(db)?;
    let rows = verify::window_rows(pool, receipts, &ids)
        .await
        .map_err(db)?;
    let deep_wanted = (rows.len() as f64 * task.deep_fraction).ceil() as usize;
    let deep_skipped = (deep_wanted > 0 && kms.is_none())
        .then(|| "no kms configured in this process: deep checks skipped".to_owned());
    let has_kms = kms.is_some();
    let verifier = Verifier {
        pool: pool.clone(),
        store: store.clone(),
        kms,
        concurrency: verify::DEFAULT_CONCURRENCY,
    };
    let mut findings = Vec::new();
    let mut deep = 0u64;
    for (i, row) in rows.iter().enumerate() {
        findings.extend(Verifier::check_row(row));
        let go_deep = has_kms && i < deep_wanted;
        let outcome = verifier
            .check_object(row, go_deep)
            .await
            .map_err(operational)?;
        deep += u64::from(outcome.deep);
        findings.extend(outcome.findings);
    }
    let summary = SampleSummary {
        result: if findings.is_empty() {
            "ok"
        } else {
            "findings"
        }
        .to_owned(),
        archived_objects: archived,
        sampled: rows.len() as u64,
        deep,
        deep_skipped,
        findings,
    };
    let event = AuditEvent {
        detail: serde_json::to_value(&summary).unwrap_or_default(),
        ..AuditEvent::new(super::NAME, AUDIT_OPERATION, &summary.result)
    };
    audit::record(pool, &event)
        .await
        .map_err(|e| db(DbError::query("write the verify.sample audit row", e)))?;
    if !summary.findings.is_empty() {
        tracing::warn!(
            findings = summary.findings.len(),
            sampled = summary.sampled,
            "verify.sample found problems (see audit_events)"
        );
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_defaults_and_limits() {
        let t: SampleTask = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(t, SampleTask::default());
        assert!(t.validate().is_ok());
        let zero = SampleTask {
            objects: 0,
            ..SampleTask::default()
        };
        assert!(zero.validate().is_err());
        let frac = SampleTask {
            deep_fraction: 1.5,
            ..SampleTask::default()
        };
        assert!(frac.validate().is_err());
        assert!(serde_json::from_value::<SampleTask>(serde_json::json!({"n": 1})).is_err());
        assert_eq!(t.spec().kind, KIND);
    }
}
