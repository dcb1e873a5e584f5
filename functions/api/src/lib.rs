//! The Rainlogs HTTP API (docs/API.md): versioned JSON under `/v1/…` over the archive
//! domain — tenants, zones, windows, coverage, verify, the audit log, users and API
//! keys — for people who need answers without shell access to the server.
//!
//! Every endpoint is a front end like a CLI command: it parses, calls one function of
//! `rainlogs_archive` (the same the `rainlogs` CLI calls), and renders. What the API
//! adds is the edge: API keys and roles ([`auth`], over `catalog::account`), the route
//! table every request is authorized by ([`routes`]), RFC 9457 problem+json errors
//! with stable codes ([`problem`]), AIP-158 pagination ([`page`]), request ids, body
//! limits, timeouts and a per-key rate limit ([`edge`]), and the OpenAPI 3.1 document
//! generated from the handlers ([`openapi`]).
//!
//! [`Api::router`] is served by the `rainlogs-api` binary on `RAINLOGS_API_ADDR`, or
//! under a Lambda runtime through `lambda_http` ([`lambda`]): the same router either way.

pub mod auth;
pub mod edge;
mod handlers;
pub mod lambda;
pub mod monitor;
pub mod openapi;
pub mod page;
pub mod problem;
pub mod routes;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rainlogs_core::config::{ConfigError, ConfigSource};
use rainlogs_core::storage::ObjectStore;
use rainlogs_dispatcher::queue::Queue;
use rainlogs_fetch::logpull::LogpullConfig;
use rainlogs_fetch::CloudflareApi;
use rainlogs_kms::KmsService;
use rainlogs_sealed::kms::Kms;
use sqlx::PgPool;

/// The function's name (kms audit actor, logs).
pub const NAME: &str = "api";
/// Address the binary listens on.
pub const ADDR_VAR: &str = "RAINLOGS_API_ADDR";
/// The default of [`ADDR_VAR`].
pub const DEFAULT_ADDR: &str = "127.0.0.1:8788";

/// The API's settings (`RAINLOGS_API_*`); unset variables keep the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Largest request body (`RAINLOGS_API_MAX_BODY_BYTES`, default 64 KiB): requests
    /// are small JSON documents.
    pub max_body_bytes: usize,
    /// Longest a request may take before it is answered 503 (`RAINLOGS_API_TIMEOUT_SECS`).
    pub timeout: Duration,
    /// Requests per second a key may make on average (`RAINLOGS_API_RATE_PER_SEC`).
    pub rate_per_sec: u32,
    /// Requests a key may make at once after a quiet spell (`RAINLOGS_API_RATE_BURST`).
    pub rate_burst: u32,
    /// The `<env>` of keys this deployment issues (`RAINLOGS_API_KEY_ENV`: `live`,
    /// `test`, …): secret scanners and people tell environments apart by it.
    pub key_env: String,
    /// Accept `simulator_url` when adding a zone (`RAINLOGS_API_ALLOW_SIMULATOR`, off):
    /// a zone's token goes to its endpoint, so letting API callers name any URL would
    /// let them send tokens anywhere. Tests and demos switch it on.
    pub allow_simulator: bool,
    /// Most findings a verify call returns (`RAINLOGS_API_VERIFY_MAX_FINDINGS`); all are
    /// counted.
    pub verify_max_findings: usize,
    /// The monitor web UI (`RAINLOGS_MONITOR_*`, docs/MONITOR.md).
    pub monitor: monitor::MonitorConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            timeout: Duration::from_secs(60),
            rate_per_sec: 20,
            rate_burst: 100,
            key_env: rainlogs_archive::catalog::account::DEFAULT_KEY_ENV.to_owned(),
            allow_simulator: false,
            verify_max_findings: 1000,
            monitor: monitor::MonitorConfig::default(),
        }
    }
}

impl ApiConfig {
    pub fn from_source(src: &ConfigSource) -> Result<Self, ConfigError> {
        let d = Self::default();
        let positive = |var: &str, v: u64| {
            if v == 0 {
                Err(ConfigError::Invalid {
                    var: var.to_owned(),
                    reason: "must be at least 1".into(),
                })
            } else {
                Ok(v)
            }
        };
        let get = |var: &str, default: u64| positive(var, src.parsed_or(var, default)?);
        let key_env = src
            .get("RAINLOGS_API_KEY_ENV")
            .unwrap_or(&d.key_env)
            .to_owned();
        if !rainlogs_archive::catalog::account::valid_env(&key_env) {
            return Err(ConfigError::Invalid {
                var: "RAINLOGS_API_KEY_ENV".into(),
                reason: "must be 1-16 lowercase letters or digits".into(),
            });
        }
        Ok(Self {
            max_body_bytes: get("RAINLOGS_API_MAX_BODY_BYTES", d.max_body_bytes as u64)? as usize,
            timeout: Duration::from_secs(get("RAINLOGS_API_TIMEOUT_SECS", d.timeout.as_secs())?),
            rate_per_sec: get("RAINLOGS_API_RATE_PER_SEC", u64::from(d.rate_per_sec))?
                .min(u64::from(u32::MAX)) as u32,
            rate_burst: get("RAINLOGS_API_RATE_BURST", u64::from(d.rate_burst))?
                .min(u64::from(u32::MAX)) as u32,
            key_env,
            allow_simulator: src.bool_or("RAINLOGS_API_ALLOW_SIMULATOR", d.allow_simulator)?,
            verify_max_findings: get(
                "RAINLOGS_API_VERIFY_MAX_FINDINGS",
                d.verify_max_findings as u64,
            )? as usize,
            monitor: monitor::MonitorConfig::from_source(src)?,
        })
    }
}

/// What the handlers reach: clients built once at start-up.
pub struct Services {
    pub pool: PgPool,
    pub store: ObjectStore,
    /// Seals zone tokens, opens objects (deep verification, restore, search), exports
    /// tenant keys and shreds them (erasure); `None` without a master keyring (those
    /// calls answer 503 then).
    pub kms: Option<Arc<KmsService>>,
    /// Where real zones' tokens are probed (the allow-listed Cloudflare API base).
    pub cloudflare: CloudflareApi,
    pub logpull: LogpullConfig,
    /// The task queue, to enqueue re-planned windows and report its health; `None`
    /// without Redis (the scheduler's reconciler then sends planned windows).
    pub queue: Option<Queue>,
}

pub(crate) struct Inner {
    pub(crate) services: Services,
    pub(crate) config: ApiConfig,
    pub(crate) limiter: edge::RateLimiter,
}

/// The API: its services and settings; cheap to clone.
#[derive(Clone)]
pub struct Api {
    pub(crate) inner: Arc<Inner>,
}

impl Api {
    pub fn new(services: Services, config: ApiConfig) -> Self {
        let limiter = edge::RateLimiter::new(config.rate_per_sec, config.rate_burst);
        Self {
            inner: Arc::new(Inner {
                services,
                config,
                limiter,
            }),
        }
    }

    /// Builds the clients from configuration: Postgres and S3 required, the kms when a
    /// master keyring is configured, Redis when `RAINLOGS_REDIS_URL` is set.
    pub async fn from_config(src: &ConfigSource) -> anyhow::Result<Self> {
        // Settings first: a bad one is reported before any connection is tried.
        let config = ApiConfig::from_source(src)?;
        let cloudflare = CloudflareApi::from_source(src)?;
        let (pool, store) = rainlogs_core::function::connect_stores(src).await?;
        let kms = if rainlogs_kms::MasterKeyring::configured(src) {
            Some(Arc::new(KmsService::from_config(pool.clone(), src, NAME)?))
        } else {
            None
        };
        let queue = match src.get(rainlogs_core::config::RedisConfig::URL) {
            Some(_) => {
                let redis = rainlogs_core::config::RedisConfig::from_source(src)?;
                let conn = rainlogs_core::redis_client::connect(&redis).await?;
                Some(Queue::new(conn, redis.key_prefix))
            }
            None => None,
        };
        let services = Services {
            pool,
            store,
            kms,
            cloudflare,
            logpull: rainlogs_fetch::FetchFunction::logpull_config(src),
            queue,
        };
        Ok(Self::new(services, config))
    }

    pub(crate) fn services(&self) -> &Services {
        &self.inner.services
    }

    /// The kms as the sealed format's interface, for opening objects.
    pub(crate) fn opener(&self) -> Option<Arc<dyn Kms>> {
        self.services().kms.clone().map(|k| k as Arc<dyn Kms>)
    }

    pub(crate) fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    /// The whole API: `/v1/…` routes, authorization, the monitor under its prefix,
    /// and the edge layers.
    pub fn router(&self) -> Router {
        let mut router = routes::router(self.clone());
        if let Some(monitor) = monitor::router(self.clone()) {
            router = router.merge(monitor);
        }
        edge::wrap(router, self.config())
    }
}

/// Serves the API's router on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, api: Api) -> std::io::Result<()> {
    axum::serve(listener, api.router()).await
}
