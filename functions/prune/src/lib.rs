//! The prune stage: deletes archived objects past their retention, writes deletion
//! receipts and sweeps orphaned objects; scheduled daily. It also runs the periodic
//! sampled verification ([`sample`], kind `prune.verify_sample`).
//!
//! Retention itself is not served yet: any other kind is refused with a permanent
//! `kind.unsupported` error rather than a pretended success.

pub mod sample;

use std::sync::Arc;

use async_trait::async_trait;
use rainlogs_shared::function::Function;
use rainlogs_shared::kms::Kms;
use rainlogs_shared::storage::ObjectStore;
use rainlogs_shared::{HandlerOutput, TaskEnvelope, TaskError};
use sqlx::PgPool;

/// The function's name, the first segment of the task kinds it serves.
pub const NAME: &str = "prune";

/// The prune function. Stateless: holds only clients built at start-up.
#[derive(Clone, Default)]
pub struct PruneFunction {
    clients: Option<Clients>,
}

/// Postgres, the bucket and (for deep sampling) the kms.
#[derive(Clone)]
struct Clients {
    pool: PgPool,
    store: ObjectStore,
    kms: Option<Arc<dyn Kms>>,
}

impl PruneFunction {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the clients from configuration (the kms only when a master keyring is
    /// configured: without it sampling stays shallow).
    pub async fn from_config(src: &rainlogs_shared::config::ConfigSource) -> anyhow::Result<Self> {
        let (pool, store) = rainlogs_shared::function::connect_stores(src).await?;
        let kms: Option<Arc<dyn Kms>> = if rainlogs_kms::MasterKeyring::configured(src) {
            Some(Arc::new(rainlogs_kms::KmsService::from_config(
                pool.clone(),
                src,
                NAME,
            )?))
        } else {
            None
        };
        Ok(Self::with_clients(pool, store, kms))
    }

    /// With Postgres, the bucket and (for deep sampling) the kms.
    pub fn with_clients(pool: PgPool, store: ObjectStore, kms: Option<Arc<dyn Kms>>) -> Self {
        Self {
            clients: Some(Clients { pool, store, kms }),
        }
    }
}

#[async_trait]
impl Function for PruneFunction {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn handle(&self, task: TaskEnvelope) -> Result<HandlerOutput, TaskError> {
        match (task.kind.as_str(), &self.clients) {
            (sample::KIND, Some(c)) => {
                let summary =
                    sample::run(&c.pool, &c.store, c.kms.clone(), &task.payload_as()?).await?;
                Ok(HandlerOutput::done(
                    serde_json::to_value(summary).unwrap_or_default(),
                ))
            }
            _ => Err(rainlogs_shared::function::unsupported_kind(NAME, &task)),
        }
    }
}
