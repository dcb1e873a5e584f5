//! The encrypt stage: opens a staged payload, checks its records, compresses it and seals
//! it in the archive format (docs/FORMAT.md) under the tenant's data key, at the
//! window's archive key ([`window`]; docs/PIPELINE.md).
//!
//! Needs the kms: built without one ([`EncryptFunction::new`]), every task is refused
//! with a permanent `kind.unsupported` error rather than a pretended success.

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

/// The function's name, the first segment of the task kinds it serves.
pub const NAME: &str = "encrypt";

/// The clients the stage works with, built once.
#[derive(Clone)]
struct Clients {
    pool: PgPool,
    store: ObjectStore,
    kms: Arc<dyn Kms>,
}

/// The encrypt function. Stateless: holds only clients built at start-up.
#[derive(Default, Clone)]
pub struct EncryptFunction {
    clients: Option<Clients>,
}

impl EncryptFunction {
    /// A function that refuses every task (no kms configured).
    pub fn new() -> Self {
        Self::default()
    }

    /// A function serving `encrypt.window`.
    pub fn with_clients(pool: PgPool, store: ObjectStore, kms: Arc<dyn Kms>) -> Self {
        Self {
            clients: Some(Clients { pool, store, kms }),
        }
    }

    /// Builds the clients from configuration (needs a master keyring).
    pub async fn from_config(src: &ConfigSource) -> anyhow::Result<Self> {
        let (pool, store) = rainlogs_core::function::connect_stores(src).await?;
        let kms = Arc::new(rainlogs_kms::KmsService::from_config(
            pool.clone(),
            src,
            NAME,
        )?);
        Ok(Self::with_clients(pool, store, kms))
    }
}

#[async_trait]
impl Function for EncryptFunction {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn handle(&self, task: TaskEnvelope) -> Result<HandlerOutput, TaskError> {
        match (task.kind.as_str(), &self.clients) {
            (kinds::ENCRYPT_WINDOW, Some(c)) => {
                let result = window::run(&c.pool, &c.store, c.kms.clone(), &task).await;
                rainlogs_archive::pipeline::finish_attempt(&c.pool, &task, NAME, result).await
            }
            _ => Err(unsupported_kind(NAME, &task)),
        }
    }
}
