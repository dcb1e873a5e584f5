//! The upload stage: puts sealed objects at their archive key in Garage and, in one
//! Postgres transaction, appends the zone's chain link and marks the window archived.
//!
//! Walking skeleton: this crate serves `upload.probe`, the end-to-end health probe
//! (Redis → dispatcher → function → Garage + Postgres). Archiving windows arrives with
//! the pipeline; until then `upload.window` and every other kind are refused with a
//! permanent `kind.unsupported` error.

mod probe;

use async_trait::async_trait;
use rainlogs_shared::config::{ConfigSource, DatabaseConfig, S3Config};
use rainlogs_shared::function::{unsupported_kind, Function};
use rainlogs_shared::storage::ObjectStore;
use rainlogs_shared::task::kinds;
use rainlogs_shared::{HandlerOutput, TaskEnvelope, TaskError};
use sqlx::PgPool;

pub use probe::{probe_object_key, ProbePayload, ProbeResult, PROBE_PREFIX};

/// The function's name, the first segment of the task kinds it serves.
pub const NAME: &str = "upload";

/// The upload function: a Postgres pool and the archive bucket, built once.
#[derive(Clone, Debug)]
pub struct UploadFunction {
    pool: PgPool,
    store: ObjectStore,
}

impl UploadFunction {
    pub fn new(pool: PgPool, store: ObjectStore) -> Self {
        Self { pool, store }
    }

    /// Builds the clients from configuration and checks both services answer.
    pub async fn from_config(src: &ConfigSource) -> anyhow::Result<Self> {
        let db = DatabaseConfig::from_source(src)?;
        let s3 = S3Config::from_source(src)?;
        let pool = rainlogs_shared::db::connect(&db).await?;
        let store = ObjectStore::connect(&s3).await;
        store.check().await?;
        Ok(Self::new(pool, store))
    }
}

#[async_trait]
impl Function for UploadFunction {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn handle(&self, task: TaskEnvelope) -> Result<HandlerOutput, TaskError> {
        match task.kind.as_str() {
            kinds::UPLOAD_PROBE => probe::run(&self.pool, &self.store, &task).await,
            _ => Err(unsupported_kind(NAME, &task)),
        }
    }
}
