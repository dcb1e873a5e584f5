//! The kms function: data keys, credential secrets, master and tenant key rotation and
//! tenant shredding, under Rainlogs' own key hierarchy (docs/FORMAT.md §1).
//!
//! - [`keyring`]: the master keyring from `RAINLOGS_MASTER_KEYS[_FILE]`;
//! - [`service`]: [`KmsService`], tenant keys in Postgres, the
//!   [`rainlogs_sealed::kms::Kms`] operations the other stages call in-process, and the
//!   admin operations, each audited.
//!
//! As a queue-driven function it serves the admin operations (`kms.rotate_master`,
//! `kms.rotate_tenant`, and `kms.shred_tenant` only with an operator's [`approval`]).
//! Data-key and secret operations return key
//! material, which must never travel through the task queue or its results: stages call
//! them in-process through the `Kms` trait.

pub mod approval;
pub mod keyring;
pub mod service;

use async_trait::async_trait;
use rainlogs_core::config::ConfigSource;
use rainlogs_core::function::Function;
use rainlogs_core::{HandlerOutput, TaskEnvelope, TaskError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use keyring::MasterKeyring;
pub use service::KmsService;

/// The function's name, the first segment of the task kinds it serves.
pub const NAME: &str = "kms";

/// Task kinds served.
pub mod kinds {
    pub const ROTATE_MASTER: &str = "kms.rotate_master";
    pub const ROTATE_TENANT: &str = "kms.rotate_tenant";
    pub const SHRED_TENANT: &str = "kms.shred_tenant";
}

/// Payload of `kms.rotate_tenant`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPayload {
    pub tenant: Uuid,
}

/// Payload of `kms.shred_tenant`: the tenant and the id of an operator's approval
/// ([`approval::approve`]); without a valid one the task is refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShredPayload {
    pub tenant: Uuid,
    #[serde(default)]
    pub approval: Option<Uuid>,
}

/// The kms function. Without a keyring (none configured) it refuses every task with a
/// permanent `kms.not_configured` rather than pretending.
#[derive(Debug, Default, Clone)]
pub struct KmsFunction {
    service: Option<KmsService>,
}

impl KmsFunction {
    /// A function with no keyring: refuses tasks.
    pub fn new() -> Self {
        Self { service: None }
    }

    pub fn with_service(service: KmsService) -> Self {
        Self {
            service: Some(service),
        }
    }

    /// Connects Postgres and loads the keyring from configuration.
    pub async fn from_source(src: &ConfigSource) -> anyhow::Result<Self> {
        let db = rainlogs_core::config::DatabaseConfig::from_source(src)?;
        let keyring = MasterKeyring::from_source(src)?;
        let pool = rainlogs_core::db::connect(&db).await?;
        Ok(Self::with_service(KmsService::new(
            pool,
            keyring,
            "kms-function",
        )))
    }
}

#[async_trait]
impl Function for KmsFunction {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn handle(&self, task: TaskEnvelope) -> Result<HandlerOutput, TaskError> {
        let Some(service) = &self.service else {
            return Err(TaskError::permanent(
                "kms.not_configured",
                format!(
                    "task {} ({}): this process has no master keyring (set {} or {})",
                    task.id,
                    task.kind,
                    MasterKeyring::KEYS,
                    MasterKeyring::KEYS_FILE
                ),
            ));
        };
        let service = service.with_actor(format!("task:{}", task.id));
        let result = match task.kind.as_str() {
            kinds::ROTATE_MASTER => serde_json::to_value(service.rotate_master().await?),
            kinds::ROTATE_TENANT => {
                let p: TenantPayload = task.payload_as()?;
                let version = service.rotate_tenant(p.tenant).await?;
                Ok(serde_json::json!({ "tenant": p.tenant, "active_version": version }))
            }
            kinds::SHRED_TENANT => {
                let p: ShredPayload = task.payload_as()?;
                approval::consume(service.pool(), p.approval, kinds::SHRED_TENANT, p.tenant)
                    .await?;
                let n = service.shred_tenant(p.tenant).await?;
                Ok(serde_json::json!({ "tenant": p.tenant, "versions_shredded": n }))
            }
            _ => return Err(rainlogs_core::function::unsupported_kind(NAME, &task)),
        };
        let result = result.map_err(|e| {
            TaskError::permanent(
                "output.invalid",
                format!("kms result does not serialise: {e}"),
            )
        })?;
        Ok(HandlerOutput::done(result))
    }
}
