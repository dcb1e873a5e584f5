//! The fetch stage: pulls one window of a zone's logs from the Cloudflare Logpull API
//! and stages the payload, sealed, for the encrypt stage ([`window`];
//! docs/PIPELINE.md).
//!
//! [`logpull`] is the Cloudflare Logpull client the stage uses. The stage needs the kms
//! (the zone's token is stored encrypted, and staging is sealed): built without one
//! ([`FetchFunction::new`]), every task is refused with a permanent `kind.unsupported`.

pub mod logpull;
mod window;

pub use window::{SplitPolicy, MIN_WINDOW_VAR, SPLIT_AFTER_VAR, SPLIT_BYTES_VAR};

use std::sync::Arc;

use async_trait::async_trait;
use rainlogs_shared::config::ConfigSource;
use rainlogs_shared::function::{unsupported_kind, Function};
use rainlogs_shared::kms::Kms;
use rainlogs_shared::storage::ObjectStore;
use rainlogs_shared::task::kinds;
use rainlogs_shared::{HandlerOutput, TaskEnvelope, TaskError};
use sqlx::PgPool;

/// The function's name, the first segment of the task kinds it serves.
pub const NAME: &str = "fetch";
/// Optional: the Logpull API base (default `https://api.cloudflare.com`), e.g. the
/// simulator's URL.
pub const CLOUDFLARE_API_VAR: &str = "RAINLOGS_CLOUDFLARE_API";

#[derive(Clone)]
struct Clients {
    pool: PgPool,
    store: ObjectStore,
    kms: Arc<dyn Kms>,
    logpull: logpull::LogpullConfig,
    split: SplitPolicy,
}

/// The fetch function. Stateless: holds only clients built at start-up.
#[derive(Default, Clone)]
pub struct FetchFunction {
    clients: Option<Clients>,
}

impl FetchFunction {
    /// A function that refuses every task (no kms configured).
    pub fn new() -> Self {
        Self::default()
    }

    /// A function serving `fetch.window` against the Logpull API `logpull` describes.
    pub fn with_clients(
        pool: PgPool,
        store: ObjectStore,
        kms: Arc<dyn Kms>,
        logpull: logpull::LogpullConfig,
    ) -> Self {
        Self {
            clients: Some(Clients {
                pool,
                store,
                kms,
                logpull,
                split: SplitPolicy::default(),
            }),
        }
    }

    /// Sets when windows are split (default [`SplitPolicy::default`]).
    pub fn with_split(mut self, policy: SplitPolicy) -> Self {
        if let Some(c) = self.clients.as_mut() {
            c.split = policy;
        }
        self
    }

    /// The Logpull settings from configuration: the API base from
    /// [`CLOUDFLARE_API_VAR`], the rest defaults.
    pub fn logpull_config(src: &ConfigSource) -> logpull::LogpullConfig {
        let mut config = logpull::LogpullConfig::default();
        if let Some(base) = src.get(CLOUDFLARE_API_VAR) {
            config.base_url = base.to_owned();
        }
        config
    }

    /// Builds the clients from configuration (needs a master keyring).
    pub async fn from_config(src: &ConfigSource) -> anyhow::Result<Self> {
        let (pool, store) = rainlogs_shared::function::connect_stores(src).await?;
        let kms = Arc::new(rainlogs_kms::KmsService::from_config(
            pool.clone(),
            src,
            NAME,
        )?);
        Ok(
            Self::with_clients(pool, store, kms, Self::logpull_config(src))
                .with_split(SplitPolicy::from_source(src)?),
        )
    }
}

#[async_trait]
impl Function for FetchFunction {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn handle(&self, task: TaskEnvelope) -> Result<HandlerOutput, TaskError> {
        match (task.kind.as_str(), &self.clients) {
            (kinds::FETCH_WINDOW, Some(c)) => {
                let result = window::run(
                    &c.pool,
                    &c.store,
                    c.kms.clone(),
                    &c.logpull,
                    &c.split,
                    &task,
                )
                .await;
                rainlogs_shared::pipeline::note_failure(&c.pool, &task, &result).await;
                result
            }
            _ => Err(unsupported_kind(NAME, &task)),
        }
    }
}
