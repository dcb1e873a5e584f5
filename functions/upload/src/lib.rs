//! The upload stage: puts sealed objects at their archive key in Garage and, in one
//! Postgres transaction, appends the zone's chain link and marks the window archived.
//!
//! Kinds: `upload.window` (see [`window`]: verify the archive object, one transaction
//! for object row + chain link + state) and `upload.probe`, the end-to-end health probe
//! (Redis → dispatcher → function → Garage + Postgres). `upload.window` needs the kms
//! (to verify the object end to end); built without one, it is refused permanently.

mod probe;
mod window;

use std::sync::Arc;

use async_trait::async_trait;
use rainlogs_core::config::ConfigSource;
use rainlogs_core::function::{unsupported_kind, Function};
use rainlogs_core::storage::ObjectStore;
use rainlogs_core::task::kinds;
use rainlogs_core::{HandlerOutput, TaskEnvelope, TaskError};
use rainlogs_sealed::kms::Kms;
use sqlx::PgPool;

pub use probe::{probe_object_key, ProbePayload, ProbeResult, PROBE_PREFIX};

/// The function's name, the first segment of the task kinds it serves.
pub const NAME: &str = "upload";

/// The upload function: a Postgres pool and the archive bucket, built once.
#[derive(Clone)]
pub struct UploadFunction {
    pool: PgPool,
    store: ObjectStore,
    kms: Option<Arc<dyn Kms>>,
}

impl UploadFunction {
    /// Serves `upload.probe` only.
    pub fn new(pool: PgPool, store: ObjectStore) -> Self {
        Self {
            pool,
            store,
            kms: None,
        }
    }

    /// Serves `upload.window` too, verifying objects through `kms`.
    pub fn with_kms(mut self, kms: Arc<dyn Kms>) -> Self {
        self.kms = Some(kms);
        self
    }

    /// Builds the clients from configuration and checks both services answer.
    pub async fn from_config(src: &ConfigSource) -> anyhow::Result<Self> {
        let (pool, store) = rainlogs_core::function::connect_stores(src).await?;
        let function = Self::new(pool.clone(), store);
        // Without a master keyring the binary still serves the probe.
        if !rainlogs_kms::MasterKeyring::configured(src) {
            return Ok(function);
        }
        let kms = rainlogs_kms::KmsService::from_config(pool, src, NAME)?;
        Ok(function.with_kms(Arc::new(kms)))
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
            kinds::UPLOAD_WINDOW => match &self.kms {
                Some(kms) => {
                    let result = window::run(&self.pool, &self.store, kms.clone(), &task).await;
                    rainlogs_archive::pipeline::finish_attempt(&self.pool, &task, NAME, result)
                        .await
                }
                None => Err(unsupported_kind(NAME, &task)),
            },
            _ => Err(unsupported_kind(NAME, &task)),
        }
    }
}
