//! The task envelope: the one message format that travels through Redis to a function.
//!
//! Documented in docs/TASKS.md. An envelope is versioned JSON; the function that serves
//! it is named by the first dotted segment of its `kind` (`upload.probe` → `upload`).
//! A function's event *is* the envelope, so a handler sees the same input whether the
//! dispatcher calls it in-process, through the runtime shim or through Lambda Invoke.
//! Handlers hand work on by returning follow-up [`TaskSpec`]s; the dispatcher enqueues
//! them, so functions never need a Redis connection of their own.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::TaskError;

/// The envelope version this build writes and reads.
pub const ENVELOPE_VERSION: u32 = 1;
/// Attempts a task gets unless its spec says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 25;

/// Which lane of its queue a task waits in (docs/QUEUE.md, "Order and fairness"):
/// every `live` task goes before every `normal` one, and those before `backfill`.
/// Window tasks at the real-time edge are `live`, catching up on the past is
/// `backfill`; everything else (prune, kms, probes) is `normal`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Live,
    #[default]
    Normal,
    Backfill,
}

impl Priority {
    pub fn is_normal(&self) -> bool {
        *self == Priority::Normal
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Live => "live",
            Priority::Normal => "normal",
            Priority::Backfill => "backfill",
        }
    }
}

/// Task kinds the pipeline knows. Kept in one place so dispatcher and functions agree.
pub mod kinds {
    /// End-to-end health probe: writes a marker object to the bucket and a row to Postgres.
    pub const UPLOAD_PROBE: &str = "upload.probe";
    /// Pull one window from Logpull and stage it sealed (payload: `pipeline::WindowTask`).
    pub const FETCH_WINDOW: &str = "fetch.window";
    /// Seal a staged window into its archive object.
    pub const ENCRYPT_WINDOW: &str = "encrypt.window";
    /// Verify the archive object, append the chain link, mark the window archived.
    pub const UPLOAD_WINDOW: &str = "upload.window";
    /// Delete what retention and the sweeps say must go (payload: `rainlogs_prune::PruneTask`).
    pub const PRUNE_RUN: &str = "prune.run";
    /// Ingest one S3-compatible destination's landing objects (payload:
    /// `rainlogs_receiver::landing::LandingTask`).
    pub const INGEST_LANDING: &str = "ingest.landing";

    /// Whether a task of `kind` finishes a unit of work an earlier task started (a
    /// window's encrypt and upload finish what its fetch started: a staged or sealed
    /// object is waiting for them). The queue runs these before tasks that start new
    /// work of the same priority, and counts them against its in-flight bound
    /// (docs/QUEUE.md, "Order and fairness").
    pub fn finishes_started_work(kind: &str) -> bool {
        matches!(kind, ENCRYPT_WINDOW | UPLOAD_WINDOW)
    }

    /// Whether a task of kind `parent` may hand on a follow-up of kind `child`: a
    /// function emits its own kinds, and the window stages the next stage's (fetch →
    /// encrypt/upload, encrypt → upload, upload → encrypt for the one re-seal). Nothing
    /// emits `kms.*`: key operations come only from an operator path. Any other follow-up
    /// is refused by the dispatcher (`output.forbidden_follow_up`), so a compromised or
    /// buggy handler cannot reach another function's operations through the queue.
    pub fn may_emit(parent: &str, child: &str) -> bool {
        let function = |kind: &str| kind.split_once('.').map_or(kind, |(f, _)| f).to_owned();
        let (from, to) = (function(parent), function(child));
        if to == "kms" {
            return false;
        }
        from == to
            || matches!(
                (from.as_str(), child),
                ("fetch", ENCRYPT_WINDOW | UPLOAD_WINDOW)
                    | ("encrypt", UPLOAD_WINDOW)
                    | ("upload", ENCRYPT_WINDOW)
            )
    }
}

/// A task as stored in the queue and passed to a function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskEnvelope {
    /// Envelope format version, [`ENVELOPE_VERSION`].
    pub v: u32,
    pub id: Uuid,
    pub queue: String,
    pub kind: String,
    #[serde(default)]
    pub payload: serde_json::Value,
    /// 1 on the first delivery.
    pub attempt: u32,
    pub max_attempts: u32,
    pub enqueued_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub trace_id: String,
    /// The lane the task waits in; `normal` is not written (so a normal task's bytes
    /// are what a dispatcher of before priorities reads).
    #[serde(default, skip_serializing_if = "Priority::is_normal")]
    pub priority: Priority,
    /// The fairness group: within a lane, groups take turns (the window stages use the
    /// tenant id, so tenants share the capacity evenly). `None`: the anonymous group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Why raw bytes are not a usable envelope. Always permanent: dead-letter with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("envelope is not valid JSON for version {ENVELOPE_VERSION}: {0}")]
    Malformed(String),
    #[error("envelope version {found} is not supported (this build reads {ENVELOPE_VERSION})")]
    UnsupportedVersion { found: u32 },
    #[error("envelope field {field} is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
}

impl From<EnvelopeError> for TaskError {
    fn from(e: EnvelopeError) -> Self {
        TaskError::permanent("envelope.invalid", e.to_string())
    }
}

impl TaskEnvelope {
    /// A fresh envelope for `spec`, first attempt, enqueued now.
    pub fn new(spec: TaskSpec, now: DateTime<Utc>) -> Self {
        Self {
            v: ENVELOPE_VERSION,
            id: Uuid::now_v7(),
            queue: spec.queue,
            kind: spec.kind,
            payload: spec.payload,
            attempt: 1,
            max_attempts: spec.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
            enqueued_at: now,
            not_before: spec.not_before,
            idempotency_key: spec.idempotency_key,
            trace_id: spec
                .trace_id
                .unwrap_or_else(|| Uuid::new_v4().simple().to_string()),
            priority: spec.priority.unwrap_or_default(),
            group: spec.group,
        }
    }

    /// Parses and checks an envelope from queue bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        // Read the version first so a future format is reported as such, not as garbage.
        #[derive(Deserialize)]
        struct VersionOnly {
            v: Option<u32>,
        }
        let probe: VersionOnly =
            serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        match probe.v {
            Some(ENVELOPE_VERSION) => {}
            Some(found) => return Err(EnvelopeError::UnsupportedVersion { found }),
            None => return Err(EnvelopeError::Malformed("missing field `v`".into())),
        }
        let env: TaskEnvelope =
            serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        env.validate()?;
        Ok(env)
    }

    fn validate(&self) -> Result<(), EnvelopeError> {
        let invalid = |field, reason: &str| {
            Err(EnvelopeError::InvalidField {
                field,
                reason: reason.to_owned(),
            })
        };
        if !valid_name(&self.queue) {
            return invalid("queue", "must be 1-64 chars of a-z, 0-9, '-', '_'");
        }
        if self.function().is_none() {
            return invalid("kind", "must look like `function.action`");
        }
        if self.max_attempts == 0 {
            return invalid("max_attempts", "must be at least 1");
        }
        if self.attempt == 0 {
            return invalid("attempt", "starts at 1");
        }
        if let Some(key) = &self.idempotency_key {
            if key.is_empty() || key.len() > 512 {
                return invalid("idempotency_key", "must be 1-512 bytes");
            }
        }
        if let Some(group) = &self.group {
            // Part of a Redis key name: kept to the queue-name alphabet.
            if !valid_name(group) {
                return invalid("group", "must be 1-64 chars of a-z, 0-9, '-', '_'");
            }
        }
        Ok(())
    }

    /// The function serving this kind: its first dotted segment.
    pub fn function(&self) -> Option<&str> {
        let (function, action) = self.kind.split_once('.')?;
        (valid_name(function) && !action.is_empty()).then_some(function)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope always serialises")
    }

    /// Decodes the payload into the handler's typed event.
    pub fn payload_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, TaskError> {
        serde_json::from_value(self.payload.clone()).map_err(|e| {
            TaskError::permanent(
                "event.invalid",
                format!(
                    "task {} ({}): payload does not parse: {e}",
                    self.id, self.kind
                ),
            )
        })
    }
}

fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A request to enqueue a task (what producers and handlers hand to the dispatcher).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub queue: String,
    pub kind: String,
    #[serde(default)]
    pub payload: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The task's lane; unset: a follow-up inherits its parent's, anything else is
    /// `normal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// The fairness group; unset: a follow-up inherits its parent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl TaskSpec {
    pub fn new(
        queue: impl Into<String>,
        kind: impl Into<String>,
        payload: serde_json::Value,
    ) -> Self {
        Self {
            queue: queue.into(),
            kind: kind.into(),
            payload,
            max_attempts: None,
            not_before: None,
            idempotency_key: None,
            trace_id: None,
            priority: None,
            group: None,
        }
    }

    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Puts the task in `priority`'s lane.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Puts the task in fairness group `group` (1-64 chars of a-z, 0-9, '-', '_').
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }
}

/// What a function returns on success.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HandlerOutput {
    /// A small, secret-free summary of what was done (for logs and the CLI).
    #[serde(default)]
    pub result: serde_json::Value,
    /// Follow-up tasks for the dispatcher to enqueue once this one is acknowledged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next: Vec<TaskSpec>,
}

impl HandlerOutput {
    pub fn done(result: serde_json::Value) -> Self {
        Self {
            result,
            next: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TaskEnvelope {
        TaskEnvelope::new(
            TaskSpec::new(
                "default",
                kinds::UPLOAD_PROBE,
                serde_json::json!({"note": "x"}),
            ),
            Utc::now(),
        )
    }

    #[test]
    fn round_trips_through_json() {
        let env = sample();
        assert_eq!(TaskEnvelope::parse(&env.to_json()).unwrap(), env);
        assert_eq!(env.function(), Some("upload"));
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            TaskEnvelope::parse(b"{not json"),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    #[test]
    fn future_version_is_reported_as_unsupported() {
        let mut json: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        json["v"] = 9.into();
        let err = TaskEnvelope::parse(json.to_string().as_bytes()).unwrap_err();
        assert_eq!(err, EnvelopeError::UnsupportedVersion { found: 9 });
    }

    #[test]
    fn kind_without_function_is_invalid() {
        let mut env = sample();
        env.kind = "noaction".into();
        let err = TaskEnvelope::parse(&env.to_json()).unwrap_err();
        assert!(matches!(
            err,
            EnvelopeError::InvalidField { field: "kind", .. }
        ));
    }

    #[test]
    fn payload_mismatch_is_a_permanent_event_error() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Needs {
            zone: String,
        }
        let err = sample().payload_as::<Needs>().unwrap_err();
        assert!(!err.is_retryable());
        assert_eq!(err.code, "event.invalid");
    }

    #[test]
    fn priority_and_group_round_trip_and_normal_is_not_written() {
        let plain = sample();
        let json = String::from_utf8(plain.to_json()).unwrap();
        assert!(
            !json.contains("priority") && !json.contains("group"),
            "{json}"
        );
        let env = TaskEnvelope::new(
            TaskSpec::new("default", kinds::FETCH_WINDOW, serde_json::json!({}))
                .priority(Priority::Backfill)
                .group("0192f7c4-7d1e-7c53-9a51-2f6f0f3c8a11"),
            Utc::now(),
        );
        let back = TaskEnvelope::parse(&env.to_json()).unwrap();
        assert_eq!(back.priority, Priority::Backfill);
        assert_eq!(back, env);
        let mut bad = env.clone();
        bad.group = Some("Tenant A".into());
        assert!(matches!(
            TaskEnvelope::parse(&bad.to_json()),
            Err(EnvelopeError::InvalidField { field: "group", .. })
        ));
        assert!(kinds::finishes_started_work(kinds::UPLOAD_WINDOW));
        assert!(!kinds::finishes_started_work(kinds::FETCH_WINDOW));
    }

    #[test]
    fn follow_ups_stay_within_what_each_function_owns() {
        use super::kinds::*;
        assert!(may_emit(FETCH_WINDOW, FETCH_WINDOW), "split halves");
        assert!(may_emit(FETCH_WINDOW, ENCRYPT_WINDOW));
        assert!(
            may_emit(FETCH_WINDOW, UPLOAD_WINDOW),
            "hand on a sealed window"
        );
        assert!(may_emit(ENCRYPT_WINDOW, UPLOAD_WINDOW));
        assert!(may_emit(UPLOAD_WINDOW, ENCRYPT_WINDOW), "the one re-seal");
        assert!(may_emit(PRUNE_RUN, PRUNE_RUN), "the rest of a long run");
        assert!(may_emit("t.next", "t.ok"));
        for parent in [
            FETCH_WINDOW,
            UPLOAD_WINDOW,
            PRUNE_RUN,
            "kms.rotate_tenant",
            "t.next",
        ] {
            assert!(!may_emit(parent, "kms.shred_tenant"), "{parent}");
            assert!(!may_emit(parent, "kms.rotate_master"), "{parent}");
        }
        assert!(!may_emit(ENCRYPT_WINDOW, PRUNE_RUN));
        assert!(!may_emit(PRUNE_RUN, FETCH_WINDOW));
        assert!(!may_emit("t.next", FETCH_WINDOW));
    }
}
