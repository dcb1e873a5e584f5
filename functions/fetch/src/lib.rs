//! The fetch stage: pulls one window of a zone's logs from the Cloudflare Logpull API
//! and stages the payload, sealed, for the encrypt stage ([`window`];
//! docs/PIPELINE.md).
//!
//! [`logpull`] is the Cloudflare Logpull client the stage uses. The stage needs the kms
//! (the zone's token is stored encrypted, and staging is sealed): built without one
//! ([`FetchFunction::new`]), every task is refused with a permanent `kind.unsupported`.

pub mod endpoint;
pub mod logpull;
pub mod probe;
mod window;

pub use endpoint::{CloudflareApi, EndpointError, CLOUDFLARE_API_ALLOW_VAR, CLOUDFLARE_API_VAR};
pub use probe::LogpullProbe;
pub use window::{SplitPolicy, MIN_WINDOW_VAR, SPLIT_AFTER_VAR, SPLIT_BYTES_VAR};

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
pub const NAME: &str = "fetch";

#[derive(Clone)]
struct Clients {
    pool: PgPool,
    store: ObjectStore,
    kms: Arc<dyn Kms>,
    /// Client settings; the base URL is replaced per zone ([`CloudflareApi::base_for`]).
    logpull: logpull::LogpullConfig,
    cloudflare: CloudflareApi,
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

    /// A function serving `fetch.window` with the client settings `logpull` (its base URL
    /// is not used: each zone's endpoint decides, see [`Self::with_cloudflare`]).
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
                cloudflare: CloudflareApi::default(),
                split: SplitPolicy::default(),
            }),
        }
    }

    /// Sets the Cloudflare API base real zones are fetched from (default Cloudflare's).
    pub fn with_cloudflare(mut self, api: CloudflareApi) -> Self {
        if let Some(c) = self.clients.as_mut() {
            c.cloudflare = api;
        }
        self
    }

    /// Sets when windows are split (default [`SplitPolicy::default`]).
    pub fn with_split(mut self, policy: SplitPolicy) -> Self {
        if let Some(c) = self.clients.as_mut() {
            c.split = policy;
        }
        self
    }

    /// The Logpull client settings from configuration (today: the defaults).
    pub fn logpull_config(_src: &ConfigSource) -> logpull::LogpullConfig {
        logpull::LogpullConfig::default()
    }

    /// Builds the clients from configuration (needs a master keyring).
    pub async fn from_config(src: &ConfigSource) -> anyhow::Result<Self> {
        let (pool, store) = rainlogs_core::function::connect_stores(src).await?;
        let kms = Arc::new(rainlogs_kms::KmsService::from_config(
            pool.clone(),
            src,
            NAME,
        )?);
        Ok(
            Self::with_clients(pool, store, kms, Self::logpull_config(src))
                .with_cloudflare(CloudflareApi::from_source(src)?)
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
                    &c.cloudflare,
                    &c.split,
                    &task,
                )
                .await;
                rainlogs_archive::pipeline::finish_attempt(&c.pool, &task, NAME, result).await
            }
            _ => Err(unsupported_kind(NAME, &task)),
        }
    }
}
