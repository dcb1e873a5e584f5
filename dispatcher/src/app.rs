//! Wiring: configuration in, connected clients and a dispatcher out.
//!
//! Kept in one place so `main` stays short and tests build the very same thing
//! against their own database, key prefix and bucket prefix.

use rainlogs_kms::MasterKeyring;
use std::sync::Arc;

use rainlogs_core::config::{ConfigSource, DatabaseConfig, RedisConfig, S3Config};
use rainlogs_core::storage::ObjectStore;
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
    /// The key service, when a master keyring is configured (`RAINLOGS_MASTER_KEYS[_FILE]`).
    pub kms: Option<rainlogs_kms::KmsService>,
    /// The Logpull client settings of the fetch stage (the base URL comes from each zone).
    pub logpull: rainlogs_fetch::logpull::LogpullConfig,
    /// The Cloudflare API base real zones are fetched from (`RAINLOGS_CLOUDFLARE_API`,
    /// checked against `RAINLOGS_CLOUDFLARE_API_ALLOW`; docs/PIPELINE.md).
    pub cloudflare: rainlogs_fetch::CloudflareApi,
    /// When the fetch stage splits a window (`RAINLOGS_FETCH_SPLIT_*`).
    pub fetch_split: rainlogs_fetch::SplitPolicy,
    /// How far behind now the scheduler plans (`RAINLOGS_PLAN_MARGIN_SECS`).
    pub plan: rainlogs_archive::ledger::PlanPolicy,
    /// Hybrid zones' Logpull repair (`RAINLOGS_REPAIR_LAG_SECS`).
    pub repair: rainlogs_archive::repair::RepairPolicy,
    /// Which windows the scheduler and reconciler send as live (`RAINLOGS_LIVE_EDGE_SECS`).
    pub live_edge: crate::reconcile::LiveEdge,
    /// The landing bucket S3-compatible Logpush destinations write to
    /// (`RAINLOGS_LANDING_BUCKET`; docs/INGEST.md), when configured.
    pub landing: Option<rainlogs_receiver::landing::Landing>,
}

impl App {
    /// Connects to Postgres, Redis and S3, checking each answers.
    pub async fn connect(src: &ConfigSource) -> anyhow::Result<Self> {
        let db = DatabaseConfig::from_source(src)?;
        let redis = RedisConfig::from_source(src)?;
        let s3 = S3Config::from_source(src)?;
        // Checked before connecting: a worker that would send real zones' tokens to a
        // base off the allow-list must not start at all.
        let cloudflare = rainlogs_fetch::CloudflareApi::from_source(src)?;
        let pool = rainlogs_core::db::connect(&db).await?;
        let conn = rainlogs_core::redis_client::connect(&redis).await?;
        let client = redis::Client::open(secrecy::ExposeSecret::expose_secret(&redis.url))?;
        let store = ObjectStore::connect(&s3).await;
        store.check().await?;
        let landing = rainlogs_receiver::landing::Landing::from_config(src).await?;
        if let Some(landing) = &landing {
            landing.store.check().await?;
        }
        let kms = if MasterKeyring::configured(src) {
            Some(rainlogs_kms::KmsService::from_config(
                pool.clone(),
                src,
                "dispatcher",
            )?)
        } else {
            None
        };
        Ok(Self {
            pool,
            store,
            kms,
            logpull: rainlogs_fetch::FetchFunction::logpull_config(src),
            cloudflare,
            fetch_split: rainlogs_fetch::SplitPolicy::from_source(src)?,
            plan: rainlogs_archive::ledger::PlanPolicy::from_source(src)?,
            repair: rainlogs_archive::repair::RepairPolicy::from_source(src)?,
            live_edge: crate::reconcile::LiveEdge::from_source(src)?,
            landing,
            queue: Queue::new(conn, redis.key_prefix)
                .with_client(client)
                .with_dead_letters(crate::queue::DeadLetterPolicy::from_source(src)?)
                .with_in_flight_max(crate::queue::InFlightMax::from_source(src)?),
        })
    }

    /// Why this process must not run the archive pipeline (plan, reconcile, the window
    /// stages), if it must not: the window stages run in this process (`invoker`
    /// in-process) and no master keyring is configured, so every window would be
    /// refused. With the shim or a remote invoker the stages have their own keyring.
    pub fn pipeline_off_reason(&self, invoker: &InvokerConfig) -> Option<String> {
        (self.kms.is_none() && *invoker == InvokerConfig::InProcess).then(|| {
            format!(
                "no master keyring ({} or {} is not set; docs/KMS.md): the window stages \
                 cannot open tokens or seal logs in this process",
                MasterKeyring::KEYS,
                MasterKeyring::KEYS_FILE
            )
        })
    }

    /// Every stage function, linked into this process.
    pub fn in_process_functions(&self) -> InProcess {
        // The window stages need the kms; without a keyring they refuse their kinds.
        let kms = self
            .kms
            .clone()
            .map(|k| Arc::new(k) as Arc<dyn rainlogs_sealed::kms::Kms>);
        let upload = rainlogs_upload::UploadFunction::new(self.pool.clone(), self.store.clone());
        let (fetch, encrypt, upload) = match kms {
            Some(kms) => (
                rainlogs_fetch::FetchFunction::with_clients(
                    self.pool.clone(),
                    self.store.clone(),
                    kms.clone(),
                    self.logpull.clone(),
                )
                .with_cloudflare(self.cloudflare.clone())
                .with_split(self.fetch_split),
                rainlogs_encrypt::EncryptFunction::with_clients(
                    self.pool.clone(),
                    self.store.clone(),
                    kms.clone(),
                ),
                upload.with_kms(kms),
            ),
            None => (
                rainlogs_fetch::FetchFunction::new(),
                rainlogs_encrypt::EncryptFunction::new(),
                upload,
            ),
        };
        let ingest = match (&self.landing, &self.kms) {
            (Some(landing), Some(kms)) => rainlogs_receiver::landing::LandingFunction::new(
                self.pool.clone(),
                self.store.clone(),
                Arc::new(kms.clone()),
                landing.clone(),
            ),
            (None, _) => rainlogs_receiver::landing::LandingFunction::unconfigured(
                "RAINLOGS_LANDING_BUCKET is not set",
            ),
            (_, None) => rainlogs_receiver::landing::LandingFunction::unconfigured(
                "no master keyring (RAINLOGS_MASTER_KEYS)",
            ),
        };
        InProcess::new()
            .with(ingest)
            .with(fetch)
            .with(encrypt)
            .with(upload)
            .with(
                rainlogs_prune::PruneFunction::new(self.pool.clone(), self.store.clone()).with_kms(
                    self.kms
                        .clone()
                        .map(|k| Arc::new(k) as Arc<dyn rainlogs_sealed::kms::Kms>),
                ),
            )
            .with(match &self.kms {
                Some(service) => rainlogs_kms::KmsFunction::with_service(service.clone()),
                None => rainlogs_kms::KmsFunction::new(),
            })
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
            InvokerConfig::Remote(remote) => Arc::new(crate::remote::Remote::connect(remote).await),
        })
    }

    /// A worker with the given settings and invoker.
    pub fn worker_with(&self, cfg: DispatcherConfig, invoker: Arc<dyn Invoker>) -> Worker {
        Worker::with_config(self.queue.clone(), invoker, cfg)
    }
}
