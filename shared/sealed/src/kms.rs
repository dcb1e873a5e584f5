//! The key-management contract: what the encrypt stage, the CLI and offline tools ask of
//! the kms, and the wrapping primitives both sides share.
//!
//! The hierarchy (docs/FORMAT.md §Keys): master keys (versioned keyring, held by the kms
//! process only) wrap per-tenant keys (versioned, stored wrapped in Postgres); a tenant
//! key wraps the fresh data key of each sealed object and encrypts credential secrets.
//! The [`Kms`] trait is implemented in-process by the `rainlogs-kms` crate (Postgres
//! backed) and here by [`StaticKms`] (fixed tenant keys: exported key files, tests and
//! the committed test vectors).
//!
//! Key material lives only in [`SecretKey`]: zeroized on drop, redacted in `Debug`,
//! never part of an error message.

use std::collections::HashMap;
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub use crate::SealContext;
use rainlogs_core::error::{Classify, ErrorClass, TaskError};

/// Length of every key in the hierarchy (AES-256).
pub const KEY_LEN: usize = 32;
/// Length of a wrapped key: 12-byte nonce, 32-byte ciphertext, 16-byte tag.
pub const WRAPPED_KEY_LEN: usize = 12 + KEY_LEN + 16;
/// Associated-data label of a data key wrapped under a tenant key.
pub const DATA_KEY_LABEL: &[u8] = b"rainlogs sealed v1 data-key\0";
/// Associated-data label of a credential secret encrypted under a tenant key.
pub const SECRET_LABEL: &[u8] = b"rainlogs secret v1\0";
/// First bytes of an encrypted secret blob.
pub const SECRET_MAGIC: &[u8; 4] = b"RLS1";
/// The `format` value of an exported tenant key file.
pub const KEY_FILE_FORMAT: &str = "rainlogs-tenant-key-v1";
/// The message a tenant key version MACs to derive its chain key (docs/CHAIN.md §Keys).
pub const CHAIN_KEY_LABEL: &[u8] = b"rainlogs.chain.v2.key";
/// The `format` value of an exported chain key file (docs/CHAIN.md §Keys).
pub const CHAIN_KEY_FILE_FORMAT: &str = "rainlogs-chain-key-v1";

/// 32 bytes of key material. Zeroized on drop; `Debug` prints nothing of it.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretKey([u8; KEY_LEN]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A fresh key from the operating system's CSPRNG.
    pub fn random() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Parses 64 hex digits; the error never echoes the input.
    pub fn from_hex(what: &'static str, hex_str: &str) -> Result<Self, KeyError> {
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(hex_str.trim(), &mut bytes).map_err(|_| KeyError::Invalid {
            what,
            reason: format!("expected {} hex digits", KEY_LEN * 2),
        })?;
        Ok(Self(bytes))
    }

    /// Hex form, for export files only; zeroized when dropped.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0))
    }

    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&self.0).into())
    }
}

/// A fresh data key as the kms hands it out: plaintext for sealing, wrapped for the header.
#[derive(Clone)]
pub struct GeneratedDataKey {
    pub key: SecretKey,
    pub wrapped: Vec<u8>,
    pub tenant_key_version: u32,
}

impl fmt::Debug for GeneratedDataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedDataKey")
            .field("tenant_key_version", &self.tenant_key_version)
            .finish_non_exhaustive()
    }
}

/// What a credential secret is bound to: it decrypts only for the same three.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretBinding {
    pub tenant: Uuid,
    pub zone: Uuid,
    /// e.g. `cloudflare-api-token`; 1-64 bytes of `a-z 0-9 - _ .`.
    pub purpose: String,
}

impl SecretBinding {
    fn validate(&self) -> Result<(), KeyError> {
        let ok = (1..=64).contains(&self.purpose.len())
            && self.purpose.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        if ok {
            Ok(())
        } else {
            Err(KeyError::Invalid {
                what: "secret purpose",
                reason: "must be 1-64 chars of a-z 0-9 - _ .".into(),
            })
        }
    }

    fn aad(&self, tenant_key_version: u32) -> Vec<u8> {
        let mut aad = Vec::with_capacity(SECRET_LABEL.len() + 40 + self.purpose.len());
        aad.extend_from_slice(SECRET_LABEL);
        aad.extend_from_slice(self.tenant.as_bytes());
        aad.extend_from_slice(self.zone.as_bytes());
        aad.extend_from_slice(&(self.purpose.len() as u32).to_be_bytes());
        aad.extend_from_slice(self.purpose.as_bytes());
        aad.extend_from_slice(&tenant_key_version.to_be_bytes());
        aad
    }
}

/// Why a key operation failed. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("kms: tenant {tenant} has no keys")]
    UnknownTenant { tenant: Uuid },
    #[error("kms: tenant {tenant} has no active key version")]
    NoActiveKey { tenant: Uuid },
    #[error("kms: tenant {tenant} has no key version {version}")]
    UnknownKeyVersion { tenant: Uuid, version: u32 },
    #[error("kms: tenant {tenant} key version {version} was shredded; data under it is gone")]
    Shredded { tenant: Uuid, version: u32 },
    #[error("kms: master key version {master_version} is not in the keyring (retired or never configured)")]
    MasterKeyUnavailable { master_version: u32 },
    #[error("kms: {what} of tenant {tenant} does not open under key version {version}: altered, bound to another context, or not this key")]
    Unwrap {
        what: &'static str,
        tenant: Uuid,
        version: u32,
    },
    #[error("kms: key file is for tenant {file_tenant} version {file_version}, the object needs tenant {tenant} version {version}")]
    KeyFileMismatch {
        tenant: Uuid,
        version: u32,
        file_tenant: Uuid,
        file_version: u32,
    },
    #[error("kms: invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("kms: backend: {reason}")]
    Backend { reason: String, retryable: bool },
}

impl Classify for KeyError {
    fn class(&self) -> ErrorClass {
        match self {
            KeyError::Backend {
                retryable: true, ..
            } => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            KeyError::UnknownTenant { .. } => "kms.unknown_tenant",
            KeyError::NoActiveKey { .. } => "kms.no_active_key",
            KeyError::UnknownKeyVersion { .. } => "kms.unknown_key_version",
            KeyError::Shredded { .. } => "kms.shredded",
            KeyError::MasterKeyUnavailable { .. } => "kms.master_key_unavailable",
            KeyError::Unwrap { .. } => "kms.unwrap_failed",
            KeyError::KeyFileMismatch { .. } => "kms.key_file_mismatch",
            KeyError::Invalid { .. } => "kms.invalid",
            KeyError::Backend { .. } => "kms.backend",
        }
    }
}

impl From<KeyError> for TaskError {
    fn from(e: KeyError) -> Self {
        TaskError::classified(&e)
    }
}

/// What every stage needs from the kms. Implemented in-process by `rainlogs_kms::Kms`.
#[async_trait]
pub trait Kms: Send + Sync {
    /// A fresh data key for one sealed object, wrapped under the tenant's active key and
    /// bound to `context`.
    async fn generate_data_key(&self, context: &SealContext) -> Result<GeneratedDataKey, KeyError>;

    /// Unwraps a data key read from an object header, for the same context and version.
    async fn decrypt_data_key(
        &self,
        context: &SealContext,
        tenant_key_version: u32,
        wrapped: &[u8],
    ) -> Result<SecretKey, KeyError>;

    /// Encrypts a credential (e.g. a Cloudflare API token) bound to tenant, zone, purpose.
    async fn encrypt_secret(
        &self,
        binding: &SecretBinding,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KeyError>;

    /// Decrypts a blob from [`Kms::encrypt_secret`] for the same binding.
    async fn decrypt_secret(
        &self,
        binding: &SecretBinding,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError>;

    /// The tenant's chain key (docs/CHAIN.md §Keys): of tenant key `version`, or of the
    /// active version when `None` (what new links are MACed under).
    async fn chain_key(&self, tenant: Uuid, version: Option<u32>) -> Result<ChainKey, KeyError>;
}

/// The associated data binding a wrapped data key to its object (FORMAT.md §Data key).
pub fn data_key_aad(context: &SealContext, tenant_key_version: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(DATA_KEY_LABEL.len() + 52);
    aad.extend_from_slice(DATA_KEY_LABEL);
    aad.extend_from_slice(&context.binding_bytes(tenant_key_version));
    aad
}

/// One version of one tenant's key, in the clear (only inside the kms or an offline tool).
#[derive(Clone)]
pub struct TenantKey {
    pub tenant: Uuid,
    pub version: u32,
    key: SecretKey,
}

impl fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantKey")
            .field("tenant", &self.tenant)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    format: String,
    tenant_id: Uuid,
    version: u32,
    key_hex: String,
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        self.key_hex.zeroize();
    }
}

impl TenantKey {
    pub fn new(tenant: Uuid, version: u32, key: SecretKey) -> Self {
        Self {
            tenant,
            version,
            key,
        }
    }

    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    /// Wraps `data_key` bound to `context` with a random nonce.
    pub fn wrap_data_key(&self, context: &SealContext, data_key: &SecretKey) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        self.wrap_data_key_with_nonce(context, data_key, nonce)
    }

    /// Deterministic form for test vectors: a nonce must never repeat under one key.
    pub fn wrap_data_key_with_nonce(
        &self,
        context: &SealContext,
        data_key: &SecretKey,
        nonce: [u8; 12],
    ) -> Vec<u8> {
        let aad = data_key_aad(context, self.version);
        let ct = self
            .key
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: data_key.expose(),
                    aad: &aad,
                },
            )
            // AES-GCM encryption fails only for messages over 64 GiB.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(WRAPPED_KEY_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Unwraps a data key from an object header.
    pub fn unwrap_data_key(
        &self,
        context: &SealContext,
        wrapped: &[u8],
    ) -> Result<SecretKey, KeyError> {
        let fail = || KeyError::Unwrap {
            what: "wrapped data key",
            tenant: context.tenant,
            version: self.version,
        };
        if wrapped.len() != WRAPPED_KEY_LEN {
            return Err(fail());
        }
        let aad = data_key_aad(context, self.version);
        let plain = Zeroizing::new(
            self.key
                .cipher()
                .decrypt(
                    Nonce::from_slice(&wrapped[..12]),
                    Payload {
                        msg: &wrapped[12..],
                        aad: &aad,
                    },
                )
                .map_err(|_| fail())?,
        );
        let bytes: [u8; KEY_LEN] = plain.as_slice().try_into().map_err(|_| fail())?;
        Ok(SecretKey(bytes))
    }

    /// Encrypts a credential: `RLS1 ‖ version u32 ‖ nonce 12 ‖ ciphertext ‖ tag 16`.
    pub fn encrypt_secret(
        &self,
        binding: &SecretBinding,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        binding.validate()?;
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = binding.aad(self.version);
        let ct = self
            .key
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| KeyError::Invalid {
                what: "secret",
                reason: "too long to encrypt".into(),
            })?;
        let mut out = Vec::with_capacity(20 + ct.len());
        out.extend_from_slice(SECRET_MAGIC);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts a secret blob for the same binding.
    pub fn decrypt_secret(
        &self,
        binding: &SecretBinding,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        binding.validate()?;
        let version = secret_blob_version(blob)?;
        let fail = || KeyError::Unwrap {
            what: "secret",
            tenant: binding.tenant,
            version,
        };
        if version != self.version {
            return Err(fail());
        }
        let aad = binding.aad(version);
        self.key
            .cipher()
            .decrypt(
                Nonce::from_slice(&blob[8..20]),
                Payload {
                    msg: &blob[20..],
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| fail())
    }

    /// The exported key file (JSON). Handle like the key itself.
    pub fn to_key_file(&self) -> Zeroizing<String> {
        let file = KeyFile {
            format: KEY_FILE_FORMAT.into(),
            tenant_id: self.tenant,
            version: self.version,
            key_hex: self.key.to_hex().to_string(),
        };
        Zeroizing::new(serde_json::to_string_pretty(&file).unwrap_or_default())
    }

    /// Parses an exported key file; errors never echo the file's content.
    pub fn from_key_file(text: &str) -> Result<Self, KeyError> {
        let file: KeyFile = serde_json::from_str(text).map_err(|e| KeyError::Invalid {
            what: "tenant key file",
            reason: format!("not a key file (line {}, column {})", e.line(), e.column()),
        })?;
        if file.format != KEY_FILE_FORMAT {
            return Err(KeyError::Invalid {
                what: "tenant key file",
                reason: format!("format must be {KEY_FILE_FORMAT:?}"),
            });
        }
        let key = SecretKey::from_hex("tenant key file key_hex", &file.key_hex)?;
        Ok(Self::new(file.tenant_id, file.version, key))
    }
}

/// The key a tenant's chain links and checkpoints are MACed under (chain format
/// version 2, docs/CHAIN.md §Keys): HMAC-SHA-256 of [`CHAIN_KEY_LABEL`] under one tenant
/// key version. It is derived, never stored: whoever can MAC a link holds the tenant key
/// (the kms) or a chain key file exported for an auditor. Knowing it does not reveal the
/// tenant key, so an auditor given it cannot open any archive.
#[derive(Clone)]
pub struct ChainKey {
    pub tenant: Uuid,
    /// The tenant key version it is derived from (recorded on every link it MACs).
    pub version: u32,
    key: SecretKey,
}

impl fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainKey")
            .field("tenant", &self.tenant)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct ChainKeyFile {
    format: String,
    tenant_id: Uuid,
    version: u32,
    key_hex: String,
}

impl Drop for ChainKeyFile {
    fn drop(&mut self) {
        self.key_hex.zeroize();
    }
}

impl ChainKey {
    pub fn new(tenant: Uuid, version: u32, key: SecretKey) -> Self {
        Self {
            tenant,
            version,
            key,
        }
    }

    /// The chain key of a tenant key version.
    pub fn derive(tenant_key: &TenantKey) -> Self {
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(tenant_key.key().expose())
                // HMAC accepts keys of any length.
                .expect("HMAC takes any key length");
        hmac::Mac::update(&mut mac, CHAIN_KEY_LABEL);
        let bytes: [u8; KEY_LEN] = hmac::Mac::finalize(mac).into_bytes().into();
        Self::new(tenant_key.tenant, tenant_key.version, SecretKey(bytes))
    }

    /// Hex form, for chain key files and test vectors only; zeroized when dropped.
    pub fn to_hex(&self) -> Zeroizing<String> {
        self.key.to_hex()
    }

    /// HMAC-SHA-256 of `message` under this key.
    pub fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(self.key.expose())
            .expect("HMAC takes any key length");
        hmac::Mac::update(&mut mac, message);
        hmac::Mac::finalize(mac).into_bytes().into()
    }

    /// Whether `tag` is the MAC of `message` (compared in constant time).
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(self.key.expose())
            .expect("HMAC takes any key length");
        hmac::Mac::update(&mut mac, message);
        hmac::Mac::verify_slice(mac, tag).is_ok()
    }

    /// The chain key file an auditor checks MACs with (JSON, `key_hex` lowercase).
    pub fn to_key_file(&self) -> Zeroizing<String> {
        let file = ChainKeyFile {
            format: CHAIN_KEY_FILE_FORMAT.into(),
            tenant_id: self.tenant,
            version: self.version,
            key_hex: self.key.to_hex().to_string(),
        };
        Zeroizing::new(serde_json::to_string_pretty(&file).unwrap_or_default())
    }

    /// Parses a chain key file; errors never echo the file's content.
    pub fn from_key_file(text: &str) -> Result<Self, KeyError> {
        let file: ChainKeyFile = serde_json::from_str(text).map_err(|e| KeyError::Invalid {
            what: "chain key file",
            reason: format!("not a key file (line {}, column {})", e.line(), e.column()),
        })?;
        if file.format != CHAIN_KEY_FILE_FORMAT {
            return Err(KeyError::Invalid {
                what: "chain key file",
                reason: format!("format must be {CHAIN_KEY_FILE_FORMAT:?}"),
            });
        }
        let key = SecretKey::from_hex("chain key file key_hex", &file.key_hex)?;
        Ok(Self::new(file.tenant_id, file.version, key))
    }
}

/// The tenant key version an encrypted secret blob was made under.
pub fn secret_blob_version(blob: &[u8]) -> Result<u32, KeyError> {
    if blob.len() < 4 + 4 + 12 + 16 || &blob[..4] != SECRET_MAGIC {
        return Err(KeyError::Invalid {
            what: "secret blob",
            reason: "not an encrypted Rainlogs secret".into(),
        });
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&blob[4..8]);
    Ok(u32::from_be_bytes(v))
}

/// A [`Kms`] over fixed tenant keys: offline decryption with exported key files, the
/// test vectors, and unit tests. Keys marked shredded answer [`KeyError::Shredded`].
#[derive(Debug, Default, Clone)]
pub struct StaticKms {
    keys: HashMap<(Uuid, u32), TenantKey>,
    chain_keys: HashMap<(Uuid, u32), ChainKey>,
    shredded: Vec<(Uuid, u32)>,
}

impl StaticKms {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_key(mut self, key: TenantKey) -> Self {
        self.keys.insert((key.tenant, key.version), key);
        self
    }

    /// Adds a chain key on its own (an auditor's exported chain key file): it checks
    /// chain MACs without opening any object.
    pub fn with_chain_key(mut self, key: ChainKey) -> Self {
        self.chain_keys.insert((key.tenant, key.version), key);
        self
    }

    /// Forgets a key version, as `ShredTenant` does.
    pub fn shred(&mut self, tenant: Uuid, version: u32) {
        self.keys.remove(&(tenant, version));
        self.shredded.push((tenant, version));
    }

    fn key(&self, tenant: Uuid, version: u32) -> Result<&TenantKey, KeyError> {
        if self.shredded.contains(&(tenant, version)) {
            return Err(KeyError::Shredded { tenant, version });
        }
        if let Some(key) = self.keys.get(&(tenant, version)) {
            return Ok(key);
        }
        if self.keys.keys().any(|(t, _)| *t == tenant) {
            return Err(KeyError::UnknownKeyVersion { tenant, version });
        }
        Err(KeyError::UnknownTenant { tenant })
    }

    fn active(&self, tenant: Uuid) -> Result<&TenantKey, KeyError> {
        self.keys
            .values()
            .filter(|k| k.tenant == tenant)
            .max_by_key(|k| k.version)
            .ok_or(KeyError::NoActiveKey { tenant })
    }
}

#[async_trait]
impl Kms for StaticKms {
    async fn generate_data_key(&self, context: &SealContext) -> Result<GeneratedDataKey, KeyError> {
        let tk = self.active(context.tenant)?;
        let key = SecretKey::random();
        let wrapped = tk.wrap_data_key(context, &key);
        Ok(GeneratedDataKey {
            key,
            wrapped,
            tenant_key_version: tk.version,
        })
    }

    async fn decrypt_data_key(
        &self,
        context: &SealContext,
        tenant_key_version: u32,
        wrapped: &[u8],
    ) -> Result<SecretKey, KeyError> {
        self.key(context.tenant, tenant_key_version)?
            .unwrap_data_key(context, wrapped)
    }

    async fn encrypt_secret(
        &self,
        binding: &SecretBinding,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        self.active(binding.tenant)?
            .encrypt_secret(binding, plaintext)
    }

    async fn decrypt_secret(
        &self,
        binding: &SecretBinding,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let version = secret_blob_version(blob)?;
        self.key(binding.tenant, version)?
            .decrypt_secret(binding, blob)
    }

    async fn chain_key(&self, tenant: Uuid, version: Option<u32>) -> Result<ChainKey, KeyError> {
        let version = match version {
            Some(v) => v,
            None => match self.active(tenant) {
                Ok(k) => k.version,
                Err(e) => self
                    .chain_keys
                    .keys()
                    .filter(|(t, _)| *t == tenant)
                    .map(|(_, v)| *v)
                    .max()
                    .ok_or(e)?,
            },
        };
        if let Some(k) = self.chain_keys.get(&(tenant, version)) {
            return Ok(k.clone());
        }
        Ok(ChainKey::derive(self.key(tenant, version)?))
    }
}

#[cfg(test)]
mod tests {
    /// Compiles only when the AES key schedule under `Aes256Gcm` is wiped on drop (the
    /// `zeroize` features in the workspace Cargo.toml); issue 11 item 12.
    #[test]
    fn aes_key_schedules_are_zeroized_on_drop() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wiped_on_drop::<aes::Aes256>();
        wiped_on_drop::<aes::Aes256Enc>();
    }
}
