//! `upload.probe`: the end-to-end health probe.
//!
//! Writes a small marker object (no log data) under `probes/` and records it in
//! `probe_runs`. The object's bytes derive from the envelope alone, so any number of
//! deliveries of one task write the same object and leave exactly one row.

use bytes::Bytes;
use rainlogs_core::db::DbError;
use rainlogs_core::storage::ObjectStore;
use rainlogs_core::{HandlerOutput, TaskEnvelope, TaskError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// Where probe objects live, relative to the store's prefix.
pub const PROBE_PREFIX: &str = "probes/";

/// The probe task's payload.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbePayload {
    /// Free text carried into the marker object (e.g. who asked for the probe).
    #[serde(default)]
    pub note: Option<String>,
}

/// What the probe reports back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub object_key: String,
    pub sha256: String,
    pub size_bytes: i64,
    /// The attempt whose write was recorded (the first that completed).
    pub recorded_attempt: i32,
}

pub fn probe_object_key(task: &TaskEnvelope) -> String {
    format!("{PROBE_PREFIX}{}.json", task.id)
}

pub(crate) async fn run(
    pool: &PgPool,
    store: &ObjectStore,
    task: &TaskEnvelope,
) -> Result<HandlerOutput, TaskError> {
    let payload: ProbePayload = task.payload_as()?;
    if payload.note.as_ref().is_some_and(|n| n.len() > 1024) {
        return Err(TaskError::permanent(
            "event.invalid",
            format!("task {}: probe note longer than 1024 bytes", task.id),
        ));
    }
    let key = probe_object_key(task);
    let body = serde_json::to_vec_pretty(&serde_json::json!({
        "probe": task.id,
        "trace_id": task.trace_id,
        "enqueued_at": task.enqueued_at,
        "note": payload.note,
    }))
    .expect("json values serialise");
    let sha256 = Sha256::digest(&body).to_vec();
    let size = body.len() as i64;

    store.put(&key, Bytes::from(body)).await?;

    // The object is in place before the row: a row always points at a real object.
    let attempt = i32::try_from(task.attempt).unwrap_or(i32::MAX);
    sqlx::query!(
        "INSERT INTO probe_runs (task_id, object_key, sha256, size_bytes, attempt)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (task_id) DO NOTHING",
        task.id,
        key,
        sha256,
        size,
        attempt,
    )
    .execute(pool)
    .await
    .map_err(|e| DbError::query("insert probe_runs", e))?;

    let row = sqlx::query!(
        "SELECT object_key, sha256, size_bytes, attempt FROM probe_runs WHERE task_id = $1",
        task.id
    )
    .fetch_one(pool)
    .await
    .map_err(|e| DbError::query("select probe_runs", e))?;

    let result = ProbeResult {
        object_key: row.object_key,
        sha256: hex::encode(row.sha256),
        size_bytes: row.size_bytes,
        recorded_attempt: row.attempt,
    };
    tracing::info!(task = %task.id, key = %result.object_key, "probe written");
    Ok(HandlerOutput::done(
        serde_json::to_value(&result).expect("probe result serialises"),
    ))
}
