//! Wiring: configuration in, connected clients and a dispatcher out.
//!
//! Kept in one place so `main` stays short and tests build the very same thing
//! against their own database, key prefix and bucket prefix.

use std::sync::Arc;

use rainlogs_shared::config::{ConfigSource, DatabaseConfig, RedisConfig, S3Config};
use rainlogs_shared::storage::ObjectStore;
use sqlx::PgPool;

use crate::config::{DispatcherConfig, InvokerConfig};
use crate::invoker::{InProcess, Invoker};
use crate::queue::Queue;
use crate::worker::Worker;

/// The queue every skeleton task goes to unless told otherwise.
pub const DEFAULT_QUEUE: &str = "default";

/// Connected services, built once per process.
#[derive(Clone)]
pub struct App {
    pub pool: PgPool,
    pub store: ObjectStore,
    pub queue: Queue,
}

impl App {
    /// Connects to Postgres, Redis and S3, checking each answers.
    pub async fn connect(src: &ConfigSource) -> anyhow::Result<Self> {
        let db = DatabaseConfig::from_source(src)?;
        let redis = RedisConfig::from_source(src)?;
        let s3 = S3Config::from_source(src)?;
        let pool = rainlogs_shared::db::connect(&db).await?;
        let conn = rainlogs_shared::redis_client::connect(&redis).await?;
        let client = redis::Client::open(secrecy::ExposeSecret::expose_secret(&redis.url))?;
        let store = ObjectStore::connect(&s3).await;
        store.check().await?;
        Ok(Self {
            pool,
            store,
            queue: Queue::new(conn, redis.key_prefix).with_client(client),
        })
    }

    /// Every stage function, linked into this process.
    pub fn in_process_functions(&self) -> InProcess {
        InProcess::new()
            .with(rainlogs_fetch::FetchFunction::new())
            .with(rainlogs_encrypt::EncryptFunction::new())
            .with(rainlogs_upload::UploadFunction::new(
                self.pool.clone(),
                self.store.clone(),
            ))
            .with(rainlogs_prune::PruneFunction::new())
            .with(rainlogs_kms::KmsFunction::new())
    }

    /// A worker over `queues` with the in-process invoker.
    pub fn worker(&self, queues: Vec<String>) -> Worker {
        Worker::new(
            self.queue.clone(),
            Arc::new(self.in_process_functions()),
            queues,
        )
    }

    /// The invoker the configuration asks for. Shim children stop when `shutdown` fires.
    pub async fn invoker(
        &self,
        cfg: &InvokerConfig,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<Arc<dyn Invoker>> {
        Ok(match cfg {
            InvokerConfig::InProcess => Arc::new(self.in_process_functions()),
            InvokerConfig::Shim(shim) => Arc::new(crate::shim::Shim::start(shim, shutdown).await?),
            InvokerConfig::Remote(remote) => Arc::new(crate::remote::Remote::new(remote)),
        })
    }

    /// A worker with the given settings and invoker.
    pub fn worker_with(&self, cfg: DispatcherConfig, invoker: Arc<dyn Invoker>) -> Worker {
        Worker::with_config(self.queue.clone(), invoker, cfg)
    }
}
