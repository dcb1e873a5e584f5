//! The kms itself: tenant keys in Postgres wrapped under the master keyring, the
//! [`Kms`] operations every stage calls, and the admin operations (rotate, shred).
//!
//! Every operation, successful or not, writes one `audit_events` row: operation,
//! tenant, zone, key version, actor, result — never key material.

use std::sync::Arc;

use async_trait::async_trait;
use rainlogs_archive::audit::{self, AuditEvent};
use rainlogs_core::error::Classify;
use rainlogs_sealed::kms::{
    secret_blob_version, ChainKey, GeneratedDataKey, KeyError, Kms, SealContext, SecretBinding,
    SecretKey, TenantKey,
};
use serde::Serialize;
use serde_json::json;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::keyring::MasterKeyring;

/// Audit operation names (the `operation` column).
pub mod ops {
    pub const GENERATE_DATA_KEY: &str = "generate_data_key";
    pub const DECRYPT_DATA_KEY: &str = "decrypt_data_key";
    pub const ENCRYPT_SECRET: &str = "encrypt_secret";
    pub const DECRYPT_SECRET: &str = "decrypt_secret";
    pub const ROTATE_MASTER: &str = "rotate_master";
    pub const ROTATE_TENANT: &str = "rotate_tenant";
    pub const SHRED_TENANT: &str = "shred_tenant";
    pub const EXPORT_TENANT_KEY: &str = "export_tenant_key";
    pub const EXPORT_CHAIN_KEY: &str = "export_chain_key";
}

fn db(op: &'static str) -> impl Fn(sqlx::Error) -> KeyError {
    move |e| {
        let retryable = matches!(
            rainlogs_core::db::DbError::query(op, e),
            rainlogs_core::db::DbError::Query {
                retryable: true,
                ..
            }
        );
        KeyError::Backend {
            reason: format!("postgres: {op} failed"),
            retryable,
        }
    }
}

/// One row of `tenant_keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantKeyRow {
    pub tenant_id: Uuid,
    pub version: u32,
    pub master_version: u32,
    pub state: String,
    /// Encryptions under this version with a random nonce (data-key wraps, secrets).
    pub wraps: u64,
}

/// The default for [`KmsService::ROTATE_AFTER_WRAPS`]: 2^31, half of the 2^32
/// random-nonce encryptions NIST SP 800-38D allows under one AES-GCM key.
pub const DEFAULT_ROTATE_AFTER_WRAPS: u64 = 1 << 31;

/// The most a tenant key version may ever encrypt with random 96-bit nonces
/// (NIST SP 800-38D, 8.3): the threshold cannot be configured above it.
pub const MAX_WRAPS_PER_KEY: u64 = 1 << 32;

/// How often the kms tries to get a usable active key when rotations race it. Every
/// round some caller makes progress (a use, or a rotation that frees `threshold` more),
/// so only a tiny threshold under heavy concurrency needs more than one or two.
const WRAP_ATTEMPTS: usize = 100;

/// What `rainlogs kms status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct KmsStatus {
    pub master_versions: Vec<u32>,
    pub active_master_version: u32,
    /// (master version, state, count) over all tenant keys.
    pub tenant_keys: Vec<(u32, String, i64)>,
    /// Tenant keys wrapped under a master version not in the keyring.
    pub unreadable_tenant_keys: i64,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotateMasterReport {
    pub to_master_version: u32,
    pub rewrapped: u64,
}

/// The Postgres-backed kms. Cheap to clone.
#[derive(Clone)]
pub struct KmsService {
    pool: PgPool,
    keyring: Arc<MasterKeyring>,
    actor: String,
    rotate_after_wraps: u64,
    /// Audit rows of concurrent operations go to Postgres together (group commit).
    audit: Arc<audit::AuditBatch>,
}

impl std::fmt::Debug for KmsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsService")
            .field("keyring", &self.keyring)
            .field("actor", &self.actor)
            .field("rotate_after_wraps", &self.rotate_after_wraps)
            .finish_non_exhaustive()
    }
}

struct Audit {
    op: &'static str,
    tenant: Option<Uuid>,
    zone: Option<Uuid>,
    version: Option<u32>,
    detail: serde_json::Value,
}

impl Audit {
    fn new(op: &'static str) -> Self {
        Self {
            op,
            tenant: None,
            zone: None,
            version: None,
            detail: json!({}),
        }
    }
    fn tenant(mut self, t: Uuid) -> Self {
        self.tenant = Some(t);
        self
    }
    fn zone(mut self, z: Uuid) -> Self {
        self.zone = Some(z);
        self
    }
}

impl KmsService {
    /// Encryptions under one tenant key version after which the kms rotates the tenant
    /// key by itself (default [`DEFAULT_ROTATE_AFTER_WRAPS`], at most
    /// [`MAX_WRAPS_PER_KEY`]).
    pub const ROTATE_AFTER_WRAPS: &'static str = "RAINLOGS_KMS_ROTATE_AFTER_WRAPS";

    /// The service over `pool` with the keyring (and rotation threshold) the
    /// configuration names.
    pub fn from_config(
        pool: PgPool,
        src: &rainlogs_core::config::ConfigSource,
        actor: impl Into<String>,
    ) -> Result<Self, rainlogs_core::config::ConfigError> {
        let threshold = rotate_after_wraps(src)?;
        Ok(Self::new(pool, MasterKeyring::from_source(src)?, actor)
            .with_rotate_after_wraps(threshold))
    }

    /// The Postgres pool the kms keeps its keys (and approvals) in.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn new(pool: PgPool, keyring: MasterKeyring, actor: impl Into<String>) -> Self {
        Self {
            pool,
            keyring: Arc::new(keyring),
            actor: actor.into(),
            rotate_after_wraps: DEFAULT_ROTATE_AFTER_WRAPS,
            audit: Arc::new(audit::AuditBatch::new()),
        }
    }

    /// Rotates a tenant key once one of its versions has encrypted `n` times
    /// (clamped to 1..=[`MAX_WRAPS_PER_KEY`]).
    pub fn with_rotate_after_wraps(mut self, n: u64) -> Self {
        self.rotate_after_wraps = n.clamp(1, MAX_WRAPS_PER_KEY);
        self
    }

    pub fn rotate_after_wraps(&self) -> u64 {
        self.rotate_after_wraps
    }

    /// The same kms acting for someone else (audit `actor`).
    pub fn with_actor(&self, actor: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            ..self.clone()
        }
    }

    pub fn keyring(&self) -> &MasterKeyring {
        &self.keyring
    }

    /// Writes the audit row for `result`; an audit failure fails the operation (an
    /// unaudited key operation must not happen silently). The row is committed before
    /// this returns, in one insert with the rows of operations running at the same time.
    async fn audited<T>(
        &self,
        mut audit: Audit,
        result: Result<(T, Option<u32>), KeyError>,
    ) -> Result<T, KeyError> {
        let outcome = match &result {
            Ok((_, version)) => {
                audit.version = audit.version.or(*version);
                "ok".to_owned()
            }
            Err(e) => {
                if let KeyError::UnknownKeyVersion { version, .. }
                | KeyError::Shredded { version, .. }
                | KeyError::Unwrap { version, .. } = e
                {
                    audit.version = Some(*version);
                }
                if let serde_json::Value::Object(m) = &mut audit.detail {
                    m.insert("error".into(), json!(e.to_string()));
                }
                e.code().to_owned()
            }
        };
        let event = AuditEvent {
            tenant: audit.tenant,
            zone: audit.zone,
            key_version: audit.version.map(|v| v as i32),
            detail: audit.detail,
            ..AuditEvent::new(&self.actor, audit.op, &outcome)
        };
        // Committed before the operation's result is returned; rows of concurrent
        // operations share one insert (`AuditBatch`: several per archived window).
        self.audit
            .record(&self.pool, &event)
            .await
            .map_err(db("write audit event"))?;
        result.map(|(v, _)| v)
    }

    /// The tenant's active key for one more encryption under a random nonce, counted
    /// in `tenant_keys.wraps`; version 1 is created on first use. A tenant whose keys
    /// were all shredded gets no new key: it was erased.
    ///
    /// The count is taken *before* the key is used (one `UPDATE … RETURNING`), so it
    /// is an upper bound on the key's uses even across crashes and concurrent callers.
    /// A use that would go past the threshold rotates the tenant key first and takes
    /// the new one; the use that reaches the threshold rotates after itself, so the
    /// next caller finds a fresh key. A version therefore encrypts at most
    /// `rotate_after_wraps` times.
    async fn key_for_encryption(&self, tenant: Uuid) -> Result<TenantKey, KeyError> {
        for _ in 0..WRAP_ATTEMPTS {
            let row: Option<(i32, i32, Option<Vec<u8>>, i64)> = sqlx::query_as(
                "UPDATE tenant_keys SET wraps = wraps + 1
                 WHERE tenant_id = $1 AND state = 'active'
                 RETURNING version, master_version, wrapped_key, wraps",
            )
            .bind(tenant)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("count tenant key use"))?;
            let Some((version, master, wrapped, wraps)) = row else {
                // No active key yet (or a rotation between two statements): make one.
                let mut tx = self.begin().await?;
                self.rotate_in(&mut tx, tenant, true).await?;
                tx.commit().await.map_err(db("commit first tenant key"))?;
                continue;
            };
            let version = version as u32;
            let Some(wrapped) = wrapped else {
                return Err(KeyError::Shredded { tenant, version });
            };
            let wraps = wraps.max(0) as u64;
            if wraps > self.rotate_after_wraps {
                // Over budget (the rotation after the last allowed use failed, or the
                // threshold was lowered): rotate, then count on the new version.
                self.rotate_for_wraps(tenant, version, wraps).await?;
                continue;
            }
            let key = self
                .keyring
                .unwrap(tenant, version, master as u32, &wrapped)?;
            if wraps == self.rotate_after_wraps {
                // The last allowed use: rotate now. A failure here is not this
                // caller's: the next one finds the key over budget and retries.
                if let Err(e) = self.rotate_for_wraps(tenant, version, wraps).await {
                    tracing::warn!(%tenant, version, error = %e, "automatic tenant key rotation failed; the next encryption retries it");
                }
            }
            return Ok(key);
        }
        Err(KeyError::Backend {
            reason: format!(
                "tenant {tenant}: no usable active key after {WRAP_ATTEMPTS} attempts (concurrent rotations)"
            ),
            retryable: true,
        })
    }

    /// Rotates the tenant key because version `version` used up its encryptions —
    /// unless another caller already did. Audited as `rotate_tenant` with the reason.
    async fn rotate_for_wraps(
        &self,
        tenant: Uuid,
        version: u32,
        wraps: u64,
    ) -> Result<(), KeyError> {
        let result = async {
            let mut tx = self.begin().await?;
            // rotate_in locks the tenant row; check under that lock that `version` is
            // still the active one, so racing callers rotate once.
            let lock: Option<(Uuid,)> =
                sqlx::query_as("SELECT id FROM tenants WHERE id = $1 FOR UPDATE")
                    .bind(tenant)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db("lock tenant"))?;
            if lock.is_none() {
                return Err(KeyError::UnknownTenant { tenant });
            }
            let active: Option<(i32,)> = sqlx::query_as(
                "SELECT version FROM tenant_keys WHERE tenant_id = $1 AND state = 'active'",
            )
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("read active tenant key"))?;
            if active.map(|(v,)| v as u32) != Some(version) {
                return Ok((None, None));
            }
            let key = self.rotate_in(&mut tx, tenant, false).await?;
            tx.commit()
                .await
                .map_err(db("commit automatic tenant rotation"))?;
            Ok((Some(key.version), Some(key.version)))
        }
        .await;
        if let Ok((None, _)) = result {
            return Ok(()); // someone else rotated: nothing happened here to audit
        }
        let mut audit = Audit::new(ops::ROTATE_TENANT).tenant(tenant);
        audit.detail = json!({
            "automatic": true,
            "reason": "wrap_limit",
            "from_version": version,
            "wraps": wraps,
            "rotate_after_wraps": self.rotate_after_wraps,
        });
        self.audited(audit, result).await?;
        Ok(())
    }

    async fn key_version(&self, tenant: Uuid, version: u32) -> Result<TenantKey, KeyError> {
        let row: Option<(i32, Option<Vec<u8>>, String)> = sqlx::query_as(
            "SELECT master_version, wrapped_key, state::text FROM tenant_keys
             WHERE tenant_id = $1 AND version = $2",
        )
        .bind(tenant)
        .bind(version as i32)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("read tenant key"))?;
        match row {
            Some((master, Some(wrapped), _)) => {
                self.keyring
                    .unwrap(tenant, version, master as u32, &wrapped)
            }
            Some((_, None, _)) => Err(KeyError::Shredded { tenant, version }),
            None => {
                let any: Option<(i32,)> =
                    sqlx::query_as("SELECT 1 FROM tenant_keys WHERE tenant_id = $1 LIMIT 1")
                        .bind(tenant)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db("read tenant keys"))?;
                Err(match any {
                    Some(_) => KeyError::UnknownKeyVersion { tenant, version },
                    None => KeyError::UnknownTenant { tenant },
                })
            }
        }
    }

    /// The tenant's active key without counting a use (a chain key derivation is a MAC,
    /// not an AES-GCM encryption under a random nonce); version 1 is created on first use.
    async fn active_key(&self, tenant: Uuid) -> Result<TenantKey, KeyError> {
        let row: Option<(i32, i32, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT version, master_version, wrapped_key FROM tenant_keys
             WHERE tenant_id = $1 AND state = 'active'",
        )
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("read active tenant key"))?;
        match row {
            Some((version, master, Some(wrapped))) => {
                self.keyring
                    .unwrap(tenant, version as u32, master as u32, &wrapped)
            }
            Some((version, _, None)) => Err(KeyError::Shredded {
                tenant,
                version: version as u32,
            }),
            None => {
                let mut tx = self.begin().await?;
                let key = self.rotate_in(&mut tx, tenant, true).await?;
                tx.commit().await.map_err(db("commit first tenant key"))?;
                Ok(key)
            }
        }
    }

    /// The chain key of tenant key `version` for an auditor (`rainlogs evidence export
    /// --include-chain-key`); audited like a tenant key export.
    pub async fn export_chain_key(&self, tenant: Uuid, version: u32) -> Result<ChainKey, KeyError> {
        let result = self
            .key_version(tenant, version)
            .await
            .map(|tk| (ChainKey::derive(&tk), Some(version)));
        self.audited(Audit::new(ops::EXPORT_CHAIN_KEY).tenant(tenant), result)
            .await
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, KeyError> {
        self.pool.begin().await.map_err(db("begin"))
    }

    /// Locks the tenant (so two rotations cannot race) and makes a new active version.
    /// With `only_if_none`, returns the existing active key if one appeared meanwhile.
    async fn rotate_in(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        tenant: Uuid,
        only_if_none: bool,
    ) -> Result<TenantKey, KeyError> {
        let exists: Option<(Uuid,)> =
            sqlx::query_as("SELECT id FROM tenants WHERE id = $1 FOR UPDATE")
                .bind(tenant)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db("lock tenant"))?;
        if exists.is_none() {
            return Err(KeyError::UnknownTenant { tenant });
        }
        let rows: Vec<(i32, i32, Option<Vec<u8>>, String)> = sqlx::query_as(
            "SELECT version, master_version, wrapped_key, state::text FROM tenant_keys
             WHERE tenant_id = $1 ORDER BY version",
        )
        .bind(tenant)
        .fetch_all(&mut **tx)
        .await
        .map_err(db("read tenant keys"))?;
        if let Some((version, _, _, _)) = rows.iter().find(|r| r.3 == "shredded") {
            return Err(KeyError::Shredded {
                tenant,
                version: *version as u32,
            });
        }
        if only_if_none {
            if let Some((version, master, Some(wrapped), _)) = rows.iter().find(|r| r.3 == "active")
            {
                return self
                    .keyring
                    .unwrap(tenant, *version as u32, *master as u32, wrapped);
            }
        }
        let next = rows.last().map_or(1, |r| r.0 as u32 + 1);
        let key = TenantKey::new(tenant, next, SecretKey::random());
        let master = self.keyring.active_version();
        let wrapped = self.keyring.wrap(&key, master)?;
        sqlx::query(
            "UPDATE tenant_keys SET state = 'retired' WHERE tenant_id = $1 AND state = 'active'",
        )
        .bind(tenant)
        .execute(&mut **tx)
        .await
        .map_err(db("retire tenant key"))?;
        sqlx::query(
            "INSERT INTO tenant_keys (tenant_id, version, master_version, wrapped_key, state)
             VALUES ($1, $2, $3, $4, 'active')",
        )
        .bind(tenant)
        .bind(next as i32)
        .bind(master as i32)
        .bind(&wrapped)
        .execute(&mut **tx)
        .await
        .map_err(db("insert tenant key"))?;
        Ok(key)
    }

    /// RotateTenant: a new key version for new objects; older versions stay readable.
    pub async fn rotate_tenant(&self, tenant: Uuid) -> Result<u32, KeyError> {
        let result = async {
            let mut tx = self.begin().await?;
            let key = self.rotate_in(&mut tx, tenant, false).await?;
            tx.commit().await.map_err(db("commit tenant rotation"))?;
            Ok((key.version, Some(key.version)))
        }
        .await;
        self.audited(Audit::new(ops::ROTATE_TENANT).tenant(tenant), result)
            .await
    }

    /// RotateMaster: re-wraps every live tenant key under the active master version.
    /// No object is rewritten. Needs the old master versions still in the keyring.
    pub async fn rotate_master(&self) -> Result<RotateMasterReport, KeyError> {
        let to = self.keyring.active_version();
        let result = async {
            let mut tx = self.begin().await?;
            let rows: Vec<(Uuid, i32, i32, Vec<u8>)> = sqlx::query_as(
                "SELECT tenant_id, version, master_version, wrapped_key FROM tenant_keys
                 WHERE wrapped_key IS NOT NULL AND master_version <> $1
                 ORDER BY tenant_id, version FOR UPDATE",
            )
            .bind(to as i32)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("read tenant keys to rewrap"))?;
            let mut rewrapped = 0u64;
            for (tenant, version, master, wrapped) in rows {
                let key = self
                    .keyring
                    .unwrap(tenant, version as u32, master as u32, &wrapped)?;
                let new = self.keyring.wrap(&key, to)?;
                sqlx::query(
                    "UPDATE tenant_keys SET wrapped_key = $3, master_version = $4
                     WHERE tenant_id = $1 AND version = $2",
                )
                .bind(tenant)
                .bind(version)
                .bind(&new)
                .bind(to as i32)
                .execute(&mut *tx)
                .await
                .map_err(db("rewrap tenant key"))?;
                rewrapped += 1;
            }
            tx.commit().await.map_err(db("commit master rotation"))?;
            Ok((
                RotateMasterReport {
                    to_master_version: to,
                    rewrapped,
                },
                None,
            ))
        }
        .await;
        let mut audit = Audit::new(ops::ROTATE_MASTER);
        audit.detail = json!({ "to_master_version": to });
        if let Ok((r, _)) = &result {
            audit.detail["rewrapped"] = json!(r.rewrapped);
        }
        self.audited(audit, result).await
    }

    /// ShredTenant: destroys every key version of the tenant. Every object and secret
    /// under them, wherever copies live, becomes unreadable. Irreversible.
    pub async fn shred_tenant(&self, tenant: Uuid) -> Result<u64, KeyError> {
        let result = async {
            let mut tx = self.begin().await?;
            let exists: Option<(Uuid,)> =
                sqlx::query_as("SELECT id FROM tenants WHERE id = $1 FOR UPDATE")
                    .bind(tenant)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db("lock tenant"))?;
            if exists.is_none() {
                return Err(KeyError::UnknownTenant { tenant });
            }
            let done = sqlx::query(
                "UPDATE tenant_keys SET state = 'shredded', wrapped_key = NULL, shredded_at = now()
                 WHERE tenant_id = $1 AND state <> 'shredded'",
            )
            .bind(tenant)
            .execute(&mut *tx)
            .await
            .map_err(db("shred tenant keys"))?
            .rows_affected();
            // Nothing of the tenant can be fetched or sealed any more: park its zones
            // (with the reason) instead of letting their windows fail and loop.
            let reason = format!(
                "tenant {tenant} was crypto-shredded: its keys are destroyed, nothing of it can be fetched or sealed again"
            );
            rainlogs_archive::catalog::zone::park_tenant_zones(&mut tx, tenant, &reason, &self.actor)
                .await
                .map_err(|e| KeyError::Backend {
                    reason: format!("postgres: park the tenant's zones failed: {e}"),
                    retryable: rainlogs_core::error::Classify::class(&e)
                        == rainlogs_core::ErrorClass::Retryable,
                })?;
            tx.commit().await.map_err(db("commit shred"))?;
            Ok((done, None))
        }
        .await;
        let mut audit = Audit::new(ops::SHRED_TENANT).tenant(tenant);
        if let Ok((n, _)) = &result {
            audit.detail = json!({ "versions_shredded": n });
        }
        self.audited(audit, result).await
    }

    /// A tenant key in the clear, for an offline key file. Audited like any operation.
    pub async fn export_tenant_key(
        &self,
        tenant: Uuid,
        version: u32,
    ) -> Result<TenantKey, KeyError> {
        let result = self
            .key_version(tenant, version)
            .await
            .map(|k| (k, Some(version)));
        self.audited(Audit::new(ops::EXPORT_TENANT_KEY).tenant(tenant), result)
            .await
    }

    /// The tenant's key versions in the clear for offline key files: `version` alone
    /// (`UnknownKeyVersion` when the tenant has none such, `Shredded` when destroyed),
    /// or every version not shredded. Each export is audited like any operation.
    pub async fn export_tenant_keys(
        &self,
        tenant: Uuid,
        version: Option<u32>,
    ) -> Result<Vec<(TenantKeyRow, TenantKey)>, KeyError> {
        let rows: Vec<TenantKeyRow> = self
            .tenant_keys(Some(tenant))
            .await?
            .into_iter()
            .filter(|r| version.is_none_or(|v| v == r.version))
            .collect();
        match (version, rows.first()) {
            (Some(version), None) => return Err(KeyError::UnknownKeyVersion { tenant, version }),
            (Some(version), Some(r)) if r.state == "shredded" => {
                return Err(KeyError::Shredded { tenant, version })
            }
            _ => {}
        }
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows.into_iter().filter(|r| r.state != "shredded") {
            let key = self.export_tenant_key(tenant, row.version).await?;
            keys.push((row, key));
        }
        Ok(keys)
    }

    /// Key versions of one tenant, or of all.
    pub async fn tenant_keys(&self, tenant: Option<Uuid>) -> Result<Vec<TenantKeyRow>, KeyError> {
        let rows: Vec<(Uuid, i32, i32, String, i64)> = sqlx::query_as(
            "SELECT tenant_id, version, master_version, state::text, wraps FROM tenant_keys
             WHERE $1::uuid IS NULL OR tenant_id = $1 ORDER BY tenant_id, version",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await
        .map_err(db("list tenant keys"))?;
        Ok(rows
            .into_iter()
            .map(|(tenant_id, version, master, state, wraps)| TenantKeyRow {
                tenant_id,
                version: version as u32,
                master_version: master as u32,
                state,
                wraps: wraps.max(0) as u64,
            })
            .collect())
    }

    pub async fn status(&self) -> Result<KmsStatus, KeyError> {
        let rows: Vec<(i32, String, i64)> = sqlx::query_as(
            "SELECT master_version, state::text, count(*) FROM tenant_keys
             GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("count tenant keys"))?;
        let versions = self.keyring.versions();
        let unreadable = rows
            .iter()
            .filter(|(m, s, _)| s != "shredded" && !versions.contains(&(*m as u32)))
            .map(|r| r.2)
            .sum();
        Ok(KmsStatus {
            master_versions: versions,
            active_master_version: self.keyring.active_version(),
            tenant_keys: rows.into_iter().map(|(m, s, n)| (m as u32, s, n)).collect(),
            unreadable_tenant_keys: unreadable,
        })
    }
}

/// `RAINLOGS_KMS_ROTATE_AFTER_WRAPS`: 1..=2^32, default 2^31.
fn rotate_after_wraps(
    src: &rainlogs_core::config::ConfigSource,
) -> Result<u64, rainlogs_core::config::ConfigError> {
    let var = KmsService::ROTATE_AFTER_WRAPS;
    let n: u64 = src.parsed_or(var, DEFAULT_ROTATE_AFTER_WRAPS)?;
    if n == 0 || n > MAX_WRAPS_PER_KEY {
        return Err(rainlogs_core::config::ConfigError::Invalid {
            var: var.into(),
            reason: format!(
                "{n} is outside 1..={MAX_WRAPS_PER_KEY}: AES-GCM with random nonces allows at most 2^32 encryptions per key (NIST SP 800-38D)"
            ),
        });
    }
    Ok(n)
}

fn context_detail(ctx: &SealContext) -> serde_json::Value {
    json!({
        "window_start": ctx.window_start.to_rfc3339(),
        "window_end": ctx.window_end.to_rfc3339(),
    })
}

#[async_trait]
impl Kms for KmsService {
    async fn generate_data_key(&self, ctx: &SealContext) -> Result<GeneratedDataKey, KeyError> {
        let result = self.key_for_encryption(ctx.tenant).await.map(|tk| {
            let key = SecretKey::random();
            let wrapped = tk.wrap_data_key(ctx, &key);
            let v = tk.version;
            (
                GeneratedDataKey {
                    key,
                    wrapped,
                    tenant_key_version: v,
                },
                Some(v),
            )
        });
        let mut audit = Audit::new(ops::GENERATE_DATA_KEY)
            .tenant(ctx.tenant)
            .zone(ctx.zone);
        audit.detail = context_detail(ctx);
        self.audited(audit, result).await
    }

    async fn decrypt_data_key(
        &self,
        ctx: &SealContext,
        version: u32,
        wrapped: &[u8],
    ) -> Result<SecretKey, KeyError> {
        let result = async {
            let tk = self.key_version(ctx.tenant, version).await?;
            Ok((tk.unwrap_data_key(ctx, wrapped)?, Some(version)))
        }
        .await;
        let mut audit = Audit::new(ops::DECRYPT_DATA_KEY)
            .tenant(ctx.tenant)
            .zone(ctx.zone);
        audit.detail = context_detail(ctx);
        self.audited(audit, result).await
    }

    async fn encrypt_secret(
        &self,
        binding: &SecretBinding,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let result = async {
            let tk = self.key_for_encryption(binding.tenant).await?;
            Ok((tk.encrypt_secret(binding, plaintext)?, Some(tk.version)))
        }
        .await;
        let mut audit = Audit::new(ops::ENCRYPT_SECRET)
            .tenant(binding.tenant)
            .zone(binding.zone);
        audit.detail = json!({ "purpose": binding.purpose });
        self.audited(audit, result).await
    }

    async fn decrypt_secret(
        &self,
        binding: &SecretBinding,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let result = async {
            let version = secret_blob_version(blob)?;
            let tk = self.key_version(binding.tenant, version).await?;
            Ok((tk.decrypt_secret(binding, blob)?, Some(version)))
        }
        .await;
        let mut audit = Audit::new(ops::DECRYPT_SECRET)
            .tenant(binding.tenant)
            .zone(binding.zone);
        audit.detail = json!({ "purpose": binding.purpose });
        self.audited(audit, result).await
    }

    /// Not audited per call: a chain key MACs integrity evidence and opens no data, and
    /// every archived or empty window takes one (the link's key version is on the link).
    async fn chain_key(&self, tenant: Uuid, version: Option<u32>) -> Result<ChainKey, KeyError> {
        let tk = match version {
            Some(v) => self.key_version(tenant, v).await?,
            None => self.active_key(tenant).await?,
        };
        Ok(ChainKey::derive(&tk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rainlogs_core::config::ConfigSource;

    #[test]
    fn rotation_threshold_defaults_to_2_pow_31_and_refuses_beyond_nist() {
        assert_eq!(
            rotate_after_wraps(&ConfigSource::default()).unwrap(),
            1 << 31
        );
        let with = |v: &str| {
            rotate_after_wraps(&ConfigSource::from_pairs([(
                KmsService::ROTATE_AFTER_WRAPS,
                v,
            )]))
        };
        assert_eq!(with("1000").unwrap(), 1000);
        assert_eq!(with("4294967296").unwrap(), 1 << 32);
        for bad in ["0", "4294967297", "lots"] {
            let err = with(bad).unwrap_err();
            assert_eq!(
                err.subject(),
                KmsService::ROTATE_AFTER_WRAPS,
                "{bad}: {err}"
            );
        }
    }
}
