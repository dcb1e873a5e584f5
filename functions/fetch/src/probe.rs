//! The token probe behind `rainlogs zone add` and `zone set --token-env`
//! ([`rainlogs_archive::catalog::zone::ZoneProbe`]): before a token is stored, it must
//! read the zone's log-retention flag and its Logpull fields list at the zone's own
//! endpoint (Cloudflare through the allow-listed base, or the zone's simulator) — the
//! same endpoints, the same client and the same credential rules as the fetch stage.

use async_trait::async_trait;
use rainlogs_archive::catalog::zone::{ProbeError, ProbeReport, ZoneProbe};
use rainlogs_archive::endpoint::ZoneEndpoint;
use rainlogs_core::error::{Classify, ErrorClass};
use secrecy::{ExposeSecret, SecretString};

use crate::endpoint::CloudflareApi;
use crate::logpull::{Credentials, LogpullClient, LogpullConfig, LogpullError, ZoneId};

/// Probes tokens with the Logpull client.
#[derive(Debug, Clone)]
pub struct LogpullProbe {
    config: LogpullConfig,
    cloudflare: CloudflareApi,
    enable_retention: bool,
}

impl LogpullProbe {
    /// A probe with the client settings `config` (its base URL is replaced per zone:
    /// `cloudflare` for real zones, the zone's simulator otherwise).
    pub fn new(config: LogpullConfig, cloudflare: CloudflareApi) -> Self {
        Self {
            config,
            cloudflare,
            enable_retention: false,
        }
    }

    /// Switches log retention on when the probe finds it off (`--enable-retention`).
    pub fn enabling_retention(mut self, on: bool) -> Self {
        self.enable_retention = on;
        self
    }
}

fn probe_error(e: LogpullError) -> ProbeError {
    match e {
        LogpullError::Forbidden { .. } => ProbeError::Refused(e.to_string()),
        e => ProbeError::Failed {
            retryable: e.class() == ErrorClass::Retryable,
            reason: e.to_string(),
        },
    }
}

#[async_trait]
impl ZoneProbe for LogpullProbe {
    async fn probe(
        &self,
        endpoint: &ZoneEndpoint,
        cf_zone_id: &str,
        token: &SecretString,
    ) -> Result<ProbeReport, ProbeError> {
        let config = LogpullConfig {
            base_url: self.cloudflare.base_for(endpoint).to_owned(),
            ..self.config.clone()
        };
        let zone = ZoneId::parse(cf_zone_id).map_err(|e| ProbeError::Failed {
            reason: e.to_string(),
            retryable: false,
        })?;
        let client = LogpullClient::new(config, &Credentials::token(token.expose_secret()))
            .map_err(probe_error)?;
        let mut retention = client.retention(&zone).await.map_err(probe_error)?;
        let mut retention_enabled = false;
        if !retention && self.enable_retention {
            retention = client
                .set_retention(&zone, true)
                .await
                .map_err(probe_error)?;
            retention_enabled = retention;
        }
        let fields = client.fields(&zone).await.map_err(probe_error)?;
        Ok(ProbeReport {
            retention,
            retention_enabled,
            fields,
        })
    }
}
