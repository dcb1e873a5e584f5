//! The `ingest.landing` stage: for Logpush jobs with an S3-compatible destination,
//! Cloudflare writes gzip NDJSON objects into the landing bucket
//! (`RAINLOGS_LANDING_BUCKET`) under the destination's prefix; this stage lists them and
//! puts each one through **the receiver's own ingest core** (`ingest::ingest_stream`:
//! gunzip → line checks → seal → staging → `push_batches` row and batch window, content
//! hash dedupe per destination), then deletes it. docs/INGEST.md "S3-compatible
//! destination" is the contract.
//!
//! Exactly once: the object is deleted only after its batch is committed (or found to
//! be a duplicate), so a crash between the two leaves the object, which the next pass
//! ingests again as a duplicate and deletes. Cloudflare's validation object
//! (`test.txt.gz`, `{"content":"tests"}`) marks the destination validated and is deleted.
//! An object that cannot be ingested (not gzip, over a limit) is never deleted unread:
//! it is copied to `rejected/{key}`, recorded in `landing_rejects` (what an operator
//! sees: `rainlogs logpush rejects`), then removed from the destination's prefix.
//! Postgres, Garage or the kms unavailable → a retryable error; the object stays.
//!
//! One task per destination (`ingest.landing {destination}`, idempotency key
//! `ingest.landing:{destination}`), enqueued by the scheduler every pass; a task takes
//! one listing page (up to 1000 objects) or [`TASK_TIME_BUDGET`], whichever ends first.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use chrono::Utc;
use futures::Stream;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use rainlogs_archive::landing::{self, Landed, Reject};
use rainlogs_archive::push::{self, Destination};
use rainlogs_core::config::{ConfigError, ConfigSource, S3Config};
use rainlogs_core::db::DbError;
use rainlogs_core::error::{Classify, ErrorClass};
use rainlogs_core::function::{unsupported_kind, Function};
use rainlogs_core::storage::{ObjectInfo, ObjectStore, StorageError};
use rainlogs_core::task::{kinds, Priority, TaskSpec};
use rainlogs_core::{HandlerOutput, TaskEnvelope, TaskError};
use rainlogs_sealed::kms::Kms;

use crate::ingest::{ingest_stream, Core, StreamFault};
use crate::{Accepted, ReceiverLimits, Refusal};

/// The function's name: the first segment of `ingest.landing`.
pub const NAME: &str = "ingest";
/// The queue `ingest.landing` travels on.
pub const QUEUE: &str = "default";
/// Objects listed (and at most ingested) by one task.
pub const PAGE: i32 = 1000;
/// Wall time one task spends before leaving the rest to the next scheduler pass.
pub const TASK_TIME_BUDGET: Duration = Duration::from_secs(600);

/// The payload of `ingest.landing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandingTask {
    pub destination: Uuid,
}

impl LandingTask {
    /// The task, keyed so that scheduler passes do not pile tasks up for a destination.
    /// Live lane, as pushed batches' encrypt: landing objects are the newest logs, and
    /// plaintext until ingested.
    pub fn spec(&self) -> TaskSpec {
        TaskSpec::new(
            QUEUE,
            kinds::INGEST_LANDING,
            serde_json::json!({ "destination": self.destination }),
        )
        .idempotency_key(format!("{}:{}", kinds::INGEST_LANDING, self.destination))
        .priority(Priority::Live)
    }
}

/// The landing bucket and the limits its objects are held to (the receiver's).
#[derive(Clone, Debug)]
pub struct Landing {
    pub store: ObjectStore,
    pub limits: ReceiverLimits,
}

impl Landing {
    /// The landing bucket of this configuration (`None` without
    /// `RAINLOGS_LANDING_BUCKET`): the archive's S3 settings with that bucket.
    pub async fn from_config(src: &ConfigSource) -> Result<Option<Self>, ConfigError> {
        let limits = ReceiverLimits::from_source(src)?;
        let Some(cfg) = S3Config::from_source(src)?.landing(src)? else {
            return Ok(None);
        };
        Ok(Some(Self {
            store: ObjectStore::connect(&cfg).await,
            limits,
        }))
    }

    /// What waits in a destination's landing prefix: one listing page (the first
    /// [`PAGE`] objects), so that asking stays one request however large the backlog
    /// (`capped` then says there are more).
    pub async fn backlog(&self, destination: Uuid) -> Result<Backlog, StorageError> {
        let (objects, more) = self
            .store
            .list_page(&landing::prefix(destination), None, PAGE)
            .await?;
        Ok(Backlog {
            objects: objects.len() as u64,
            bytes: objects.iter().map(|o| o.size).sum(),
            oldest: objects.iter().filter_map(|o| o.last_modified).min(),
            capped: more.is_some(),
        })
    }
}

/// Objects waiting in a destination's landing prefix (plaintext at rest until ingested).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub objects: u64,
    pub bytes: u64,
    /// The oldest object's LastModified: how long plaintext has rested there.
    pub oldest: Option<chrono::DateTime<Utc>>,
    /// More objects than one listing page holds: `objects` and `bytes` are lower bounds.
    pub capped: bool,
}

/// Why a landing pass stopped. Objects refused for their content are not errors (they
/// are moved and recorded); these are the failures that leave objects where they are.
#[derive(Debug, thiserror::Error)]
pub enum LandingError {
    #[error("landing ingest is not configured in this process: {0}")]
    NotConfigured(&'static str),
    #[error("push destination {0} is not a landing (S3-compatible) destination")]
    UnknownDestination(Uuid),
    #[error("landing object {key}: {error}")]
    Object { key: String, error: TaskError },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Classify for LandingError {
    fn class(&self) -> ErrorClass {
        match self {
            LandingError::NotConfigured(_) | LandingError::UnknownDestination(_) => {
                ErrorClass::Permanent
            }
            LandingError::Object { error, .. } => error.class,
            LandingError::Storage(e) => e.class(),
            LandingError::Db(e) => e.class(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            LandingError::NotConfigured(_) => "landing.not_configured",
            LandingError::UnknownDestination(_) => "landing.unknown_destination",
            LandingError::Object { .. } => "landing.object",
            LandingError::Storage(e) => e.code(),
            LandingError::Db(e) => e.code(),
        }
    }
}

impl From<LandingError> for TaskError {
    fn from(e: LandingError) -> Self {
        let mut out = TaskError::classified(&e);
        if let LandingError::Object { error, .. } = &e {
            // Keep the core's own code (`db.*`, `s3.*`, `kms.*`): it says what failed.
            out.code = error.code.clone();
        }
        out
    }
}

/// What one pass over a destination's landing objects did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandingReport {
    pub destination: Uuid,
    /// Objects handled (ingested, duplicates, validations, empty, rejected).
    pub objects: u64,
    pub batches: u64,
    pub records: u64,
    pub duplicates: u64,
    pub validations: u64,
    pub empty: u64,
    pub rejected: u64,
    /// Longest time an object handled here rested in landing: from its LastModified to
    /// its deletion (milliseconds).
    pub max_residence_ms: Option<i64>,
    /// False when objects were left for the next pass (a full page, the time budget).
    pub complete: bool,
}

/// The clients a landing pass uses.
#[derive(Clone)]
struct Clients {
    pool: PgPool,
    archive: ObjectStore,
    kms: Arc<dyn Kms>,
    landing: Landing,
}

/// Ingests one destination's landing objects (see the module doc).
pub async fn ingest_destination(
    pool: &PgPool,
    archive: &ObjectStore,
    kms: &dyn Kms,
    landing: &Landing,
    destination: Uuid,
    budget: Duration,
) -> Result<LandingReport, LandingError> {
    let started = Instant::now();
    let target = landing::destination(pool, destination)
        .await?
        .ok_or(LandingError::UnknownDestination(destination))?;
    let dest = push::load_destination(pool, destination)
        .await?
        .ok_or(LandingError::UnknownDestination(destination))?;
    let core = Core {
        pool,
        store: archive,
        kms,
        limits: landing.limits,
    };
    let mut report = LandingReport {
        destination,
        ..LandingReport::default()
    };
    let (objects, more) = landing.store.list_page(&target.prefix, None, PAGE).await?;
    report.complete = more.is_none();
    for object in objects {
        if started.elapsed() > budget {
            report.complete = false;
            break;
        }
        // Folder markers hold nothing; Cloudflare does not write them.
        if object.key.ends_with('/') {
            continue;
        }
        one_object(core, &landing.store, &dest, &object, &mut report).await?;
    }
    if report.objects > 0 {
        tracing::info!(
            destination = %destination,
            objects = report.objects,
            batches = report.batches,
            duplicates = report.duplicates,
            rejected = report.rejected,
            max_residence_ms = report.max_residence_ms,
            "landing objects ingested"
        );
    }
    Ok(report)
}

/// A landing object's body as the ingest core reads it: chunks as they arrive, a
/// broken read being the source's fault (retryable), never the batch's.
fn object_stream(body: ByteStream) -> impl Stream<Item = Result<Bytes, io::Error>> + Send {
    futures::stream::unfold(body, |mut body| async move {
        body.next()
            .await
            .map(|chunk| (chunk.map_err(StreamFault::source), body))
    })
}

async fn one_object(
    core: Core<'_>,
    store: &ObjectStore,
    dest: &Destination,
    object: &ObjectInfo,
    report: &mut LandingReport,
) -> Result<(), LandingError> {
    let landed = Landed {
        key: object.key.clone(),
        // Garage and S3 always list LastModified; without it, now (a lower bound).
        at: object.last_modified.unwrap_or_else(Utc::now),
    };
    let max_body = core.limits.max_body_bytes;
    if object.size > max_body {
        return reject(
            core.pool,
            store,
            dest,
            object,
            &landed,
            "landing.too_large",
            format!("the object is {} bytes, over the limit of {max_body} bytes of gzip (RAINLOGS_RECEIVER_MAX_BODY_BYTES)", object.size),
            report,
        )
        .await;
    }
    let body = match store.get_stream(&object.key).await {
        Ok(body) => body,
        // Taken by a concurrent pass since the listing: nothing left to do.
        Err(StorageError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let outcome = ingest_stream(core, dest, object_stream(body), Some(&landed)).await;
    let (code, why) = match outcome {
        Ok(accepted) => {
            match accepted {
                Accepted::Batch { records, .. } => {
                    report.batches += 1;
                    report.records += records;
                }
                Accepted::Duplicate { .. } => report.duplicates += 1,
                Accepted::Validation => report.validations += 1,
                Accepted::Empty => report.empty += 1,
            }
            // Committed (or already there): only now may the plaintext go.
            store.delete(&object.key).await?;
            report.objects += 1;
            let rested = (Utc::now() - landed.at).num_milliseconds();
            report.max_residence_ms = Some(report.max_residence_ms.unwrap_or(0).max(rested));
            return Ok(());
        }
        Err(Refusal::BadRequest(why)) => ("landing.not_gzip", why),
        Err(Refusal::TooLarge(why)) => ("landing.too_large", why),
        Err(Refusal::Unavailable(error)) => {
            return Err(LandingError::Object {
                key: object.key.clone(),
                error,
            })
        }
        Err(Refusal::Stalled(idle)) => {
            return Err(LandingError::Object {
                key: object.key.clone(),
                error: TaskError::retryable(
                    "landing.stalled",
                    format!("no bytes for {} s while reading the object", idle.as_secs()),
                ),
            })
        }
        Err(other @ (Refusal::Unauthorized | Refusal::Busy)) => {
            return Err(LandingError::Object {
                key: object.key.clone(),
                error: TaskError::retryable("landing.refused", format!("{other:?}")),
            })
        }
    };
    reject(
        core.pool,
        store,
        dest,
        object,
        &landed,
        code,
        why.to_string(),
        report,
    )
    .await
}

/// Moves a refused object to `rejected/{key}`, records it, then removes the original:
/// in that order, so a crash anywhere leaves the object in one place or both, never
/// neither.
#[allow(clippy::too_many_arguments)]
async fn reject(
    pool: &PgPool,
    store: &ObjectStore,
    dest: &Destination,
    object: &ObjectInfo,
    landed: &Landed,
    code: &str,
    reason: String,
    report: &mut LandingReport,
) -> Result<(), LandingError> {
    let moved = landing::rejected_key(&object.key);
    match store.copy(&object.key, &moved).await {
        Ok(()) => {}
        // Moved by a concurrent pass since the listing: its row says so.
        Err(StorageError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    landing::record_reject(
        pool,
        &Reject {
            destination_id: dest.id,
            landing_key: object.key.clone(),
            rejected_key: moved.clone(),
            size_bytes: object.size,
            landed_at: Some(landed.at),
            code: code.to_owned(),
            reason: reason.clone(),
            rejected_at: Utc::now(),
        },
    )
    .await?;
    store.delete(&object.key).await?;
    tracing::warn!(
        destination = %dest.id,
        key = %object.key,
        moved_to = %moved,
        code,
        reason = %reason,
        "landing object rejected"
    );
    report.objects += 1;
    report.rejected += 1;
    Ok(())
}

/// The `ingest` function: serves `ingest.landing`.
#[derive(Clone, Default)]
pub struct LandingFunction {
    clients: Option<Clients>,
    /// Why there are no clients (for the error a task gets).
    missing: &'static str,
}

impl LandingFunction {
    /// With every client: the ledger, the archive bucket, the kms and the landing bucket.
    pub fn new(pool: PgPool, archive: ObjectStore, kms: Arc<dyn Kms>, landing: Landing) -> Self {
        Self {
            clients: Some(Clients {
                pool,
                archive,
                kms,
                landing,
            }),
            missing: "",
        }
    }

    /// Without clients: every task is refused (permanently) with `why`.
    pub fn unconfigured(why: &'static str) -> Self {
        Self {
            clients: None,
            missing: why,
        }
    }

    /// Builds the clients from configuration (a master keyring and
    /// `RAINLOGS_LANDING_BUCKET` are needed).
    pub async fn from_config(src: &ConfigSource) -> anyhow::Result<Self> {
        let Some(landing) = Landing::from_config(src).await? else {
            anyhow::bail!("{} is not set", rainlogs_core::config::LANDING_BUCKET);
        };
        landing.store.check().await?;
        let (pool, archive) = rainlogs_core::function::connect_stores(src).await?;
        let kms = Arc::new(rainlogs_kms::KmsService::from_config(
            pool.clone(),
            src,
            NAME,
        )?);
        Ok(Self::new(pool, archive, kms, landing))
    }
}

#[async_trait]
impl Function for LandingFunction {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn handle(&self, task: TaskEnvelope) -> Result<HandlerOutput, TaskError> {
        if task.kind != kinds::INGEST_LANDING {
            return Err(unsupported_kind(NAME, &task));
        }
        let payload: LandingTask = task.payload_as()?;
        let Some(c) = &self.clients else {
            return Err(LandingError::NotConfigured(self.missing).into());
        };
        let report = ingest_destination(
            &c.pool,
            &c.archive,
            c.kms.as_ref(),
            &c.landing,
            payload.destination,
            TASK_TIME_BUDGET,
        )
        .await?;
        Ok(HandlerOutput::done(
            serde_json::to_value(&report).unwrap_or_default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_per_destination_so_passes_do_not_pile_up() {
        let d = Uuid::from_u128(9);
        let spec = LandingTask { destination: d }.spec();
        assert_eq!(spec.kind, "ingest.landing");
        assert_eq!(
            spec.idempotency_key.as_deref(),
            Some(format!("ingest.landing:{d}").as_str())
        );
        assert_eq!(spec.priority, Some(Priority::Live));
        let back: LandingTask = serde_json::from_value(spec.payload).unwrap();
        assert_eq!(back.destination, d);
    }

    #[test]
    fn failures_keep_their_class() {
        let e: TaskError = LandingError::Object {
            key: "k".into(),
            error: TaskError::retryable("db.unavailable", "down"),
        }
        .into();
        assert!(e.is_retryable());
        assert_eq!(e.code, "db.unavailable");
        let e: TaskError = LandingError::UnknownDestination(Uuid::nil()).into();
        assert!(!e.is_retryable());
    }
}
