//! One prune run's orchestration — retention pass, orphan sweep, staging sweep, one
//! audit row.
//!
//! The library is what the `prune.run` task, the `rainlogs prune` CLI and the tests
//! all call; the clock is the `as_of` option, so tests move time instead of waiting.

use std::time::Instant;

use rainlogs_archive::audit::{self, AuditEvent};
use rainlogs_core::error::Classify;
use rainlogs_core::storage::ObjectStore;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::context::{
    db, PruneError, PruneOptions, PruneReport, Refusals, RetentionReport, Run, SweepReport,
};

/// Runs retention, then the orphan sweep, then the staging sweep, and writes one
/// audit row (`prune.run`, result `ok`, `dry_run` or `error`). Returns the
/// report, or the first error (the audit row then carries the counts so far).
pub async fn prune(
    pool: &PgPool,
    store: &ObjectStore,
    opts: &PruneOptions,
) -> Result<PruneReport, PruneError> {
    opts.check()?;
    let mut report = PruneReport {
        run_id: Uuid::now_v7(),
        as_of: opts.as_of,
        dry_run: opts.dry_run,
        tenant: opts.tenant,
        page_size: opts.page_size,
        retention: RetentionReport::default(),
        orphans: SweepReport::default(),
        staging: SweepReport::default(),
        complete: false,
        elapsed_ms: 0,
    };
    let mut run = Run {
        pool,
        store,
        opts,
        run_id: report.run_id,
        started: Instant::now(),
        refusals: Refusals::default(),
    };
    let outcome = passes(&mut run, &mut report).await;
    report.elapsed_ms = run.started.elapsed().as_millis() as u64;
    let outcome = outcome.and_then(|()| match run.refusals.first.take() {
        Some((first_key, first_window)) => Err(PruneError::DeleteRefused {
            count: run.refusals.count,
            first_key,
            first_window,
        }),
        None => Ok(()),
    });
    let result = match &outcome {
        Ok(()) if opts.dry_run => "dry_run",
        Ok(()) => "ok",
        Err(_) => "error",
    };
    let mut detail = serde_json::json!({
        "run_id": report.run_id,
        "as_of": report.as_of,
        "dry_run": report.dry_run,
        "complete": report.complete,
        "elapsed_ms": report.elapsed_ms,
        "retention": counts(&report.retention),
        "orphans": counts(&report.orphans),
        "staging": counts(&report.staging),
    });
    if let Err(e) = &outcome {
        detail["error"] = serde_json::Value::String(e.to_string());
        detail["code"] = serde_json::Value::String(e.code().to_owned());
    }
    // An unaudited run must not pass silently: a failed audit write fails the run.
    let event = AuditEvent {
        tenant: opts.tenant,
        detail,
        ..AuditEvent::new(&opts.actor, "prune.run", result)
    };
    audit::record(pool, &event).await.map_err(db(format!(
        "write audit row of prune run {}",
        report.run_id
    )))?;
    outcome.map(|()| report)
}

/// A report part without its key sample (the audit row holds counts only).
fn counts<T: Serialize>(part: &T) -> serde_json::Value {
    let mut v = serde_json::to_value(part).unwrap_or_default();
    if let serde_json::Value::Object(m) = &mut v {
        m.remove("sample");
    }
    v
}

async fn passes(run: &mut Run<'_>, report: &mut PruneReport) -> Result<(), PruneError> {
    if let Some(tenant) = run.opts.tenant {
        let known: bool = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1) AS "known!""#,
            tenant
        )
        .fetch_one(run.pool)
        .await
        .map_err(db("look up tenant"))?;
        if !known {
            return Err(PruneError::UnknownTenant(tenant));
        }
    }
    if !crate::retention::run(run, &mut report.retention).await? {
        return Ok(());
    }
    if !crate::sweep::orphans(run, &mut report.orphans).await? {
        return Ok(());
    }
    if !crate::sweep::staging(run, &mut report.staging).await? {
        return Ok(());
    }
    report.complete = true;
    Ok(())
}
