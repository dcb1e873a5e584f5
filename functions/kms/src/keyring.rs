//! The master keyring: versioned 32-byte keys that wrap tenant keys, held only by the
//! kms process.
//!
//! Configured by `RAINLOGS_MASTER_KEYS` (`1:<64 hex>,2:<64 hex>`) or
//! `RAINLOGS_MASTER_KEYS_FILE` (one `version:hex` a line, `#` comments), and
//! `RAINLOGS_MASTER_KEY_ACTIVE` (the version new tenant keys are wrapped under; default
//! the highest). Retiring a master version = rotate to a newer one (re-wraps every
//! tenant key), then drop the old one from the configuration.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rainlogs_core::config::{ConfigError, ConfigSource};
use rainlogs_sealed::kms::{KeyError, SecretKey, TenantKey, WRAPPED_KEY_LEN};
use rand::RngCore;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Associated-data label of a tenant key wrapped under a master key.
pub const TENANT_KEY_LABEL: &[u8] = b"rainlogs tenant-key v1\0";

/// The configured master keys. `Debug` shows versions only.
#[derive(Clone)]
pub struct MasterKeyring {
    keys: BTreeMap<u32, SecretKey>,
    active: u32,
}

impl fmt::Debug for MasterKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKeyring")
            .field("versions", &self.versions())
            .field("active", &self.active)
            .finish()
    }
}

impl MasterKeyring {
    pub const KEYS: &'static str = "RAINLOGS_MASTER_KEYS";
    pub const KEYS_FILE: &'static str = "RAINLOGS_MASTER_KEYS_FILE";
    pub const ACTIVE: &'static str = "RAINLOGS_MASTER_KEY_ACTIVE";

    /// Whether the configuration names a keyring at all (either variable set).
    pub fn configured(src: &ConfigSource) -> bool {
        [Self::KEYS, Self::KEYS_FILE]
            .iter()
            .any(|var| src.get(var).is_some())
    }

    pub fn from_source(src: &ConfigSource) -> Result<Self, ConfigError> {
        let (var, text) = match (src.get(Self::KEYS), src.get(Self::KEYS_FILE)) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    var: Self::KEYS.into(),
                    reason: format!("set {} or {}, not both", Self::KEYS, Self::KEYS_FILE),
                })
            }
            (Some(v), None) => (Self::KEYS, Zeroizing::new(v.to_owned())),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
                    var: Self::KEYS_FILE.into(),
                    reason: format!("cannot read {path}: {e}"),
                })?;
                (Self::KEYS_FILE, Zeroizing::new(text))
            }
            (None, None) => {
                return Err(ConfigError::Missing {
                    var: Self::KEYS.into(),
                    hint: "e.g. 1:<64 hex digits>; generate with `openssl rand -hex 32`, or set RAINLOGS_MASTER_KEYS_FILE",
                })
            }
        };
        let active = src
            .get(Self::ACTIVE)
            .map(|raw| {
                raw.trim().parse::<u32>().map_err(|e| ConfigError::Invalid {
                    var: Self::ACTIVE.into(),
                    reason: format!("{e} (got {raw:?})"),
                })
            })
            .transpose()?;
        Self::parse(&text, active).map_err(|reason| ConfigError::Invalid {
            var: var.into(),
            reason,
        })
    }

    /// Parses `version:hex` entries separated by commas or newlines. Errors name the
    /// entry by position, never by content.
    pub fn parse(text: &str, active: Option<u32>) -> Result<Self, String> {
        let mut keys = BTreeMap::new();
        let entries = text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.starts_with('#'));
        for (i, entry) in entries.enumerate() {
            let n = i + 1;
            let (version, hex) = entry
                .split_once(':')
                .ok_or_else(|| format!("entry {n} is not `version:hex`"))?;
            let version: u32 = version
                .trim()
                .parse()
                .ok()
                .filter(|v| *v >= 1)
                .ok_or_else(|| format!("entry {n}: version must be an integer ≥ 1"))?;
            let key = SecretKey::from_hex("master key", hex)
                .map_err(|_| format!("entry {n} (version {version}): key must be 64 hex digits"))?;
            if keys.insert(version, key).is_some() {
                return Err(format!("version {version} appears twice"));
            }
        }
        let highest = *keys.keys().next_back().ok_or("no master keys")?;
        let active = active.unwrap_or(highest);
        if !keys.contains_key(&active) {
            return Err(format!("active version {active} is not in the keyring"));
        }
        Ok(Self { keys, active })
    }

    pub fn active_version(&self) -> u32 {
        self.active
    }

    pub fn versions(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    fn key(&self, version: u32) -> Result<&SecretKey, KeyError> {
        self.keys
            .get(&version)
            .ok_or(KeyError::MasterKeyUnavailable {
                master_version: version,
            })
    }

    fn aad(tenant: Uuid, version: u32, master_version: u32) -> Vec<u8> {
        let mut aad = TENANT_KEY_LABEL.to_vec();
        aad.extend_from_slice(tenant.as_bytes());
        aad.extend_from_slice(&version.to_be_bytes());
        aad.extend_from_slice(&master_version.to_be_bytes());
        aad
    }

    /// Wraps a tenant key under master `master_version`.
    pub fn wrap(&self, tk: &TenantKey, master_version: u32) -> Result<Vec<u8>, KeyError> {
        let mk = self.key(master_version)?;
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = Self::aad(tk.tenant, tk.version, master_version);
        let ct = Aes256Gcm::new(mk.expose().into())
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: tk.key().expose(),
                    aad: &aad,
                },
            )
            .map_err(|_| KeyError::Invalid {
                what: "tenant key",
                reason: "cannot be wrapped".into(),
            })?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Unwraps tenant key `(tenant, version)` stored under master `master_version`.
    pub fn unwrap(
        &self,
        tenant: Uuid,
        version: u32,
        master_version: u32,
        wrapped: &[u8],
    ) -> Result<TenantKey, KeyError> {
        let mk = self.key(master_version)?;
        let fail = || KeyError::Unwrap {
            what: "tenant key",
            tenant,
            version,
        };
        if wrapped.len() != WRAPPED_KEY_LEN {
            return Err(fail());
        }
        let aad = Self::aad(tenant, version, master_version);
        let plain = Zeroizing::new(
            Aes256Gcm::new(mk.expose().into())
                .decrypt(
                    Nonce::from_slice(&wrapped[..12]),
                    Payload {
                        msg: &wrapped[12..],
                        aad: &aad,
                    },
                )
                .map_err(|_| fail())?,
        );
        let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| fail())?;
        Ok(TenantKey::new(
            tenant,
            version,
            SecretKey::from_bytes(bytes),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const K2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn parses_versions_and_defaults_active_to_highest() {
        let ring = MasterKeyring::parse(&format!("1:{K1}, 2:{K2}"), None).unwrap();
        assert_eq!(ring.versions(), vec![1, 2]);
        assert_eq!(ring.active_version(), 2);
        let ring = MasterKeyring::parse(&format!("# keys\n1:{K1}\n2:{K2}\n"), Some(1)).unwrap();
        assert_eq!(ring.active_version(), 1);
    }

    #[test]
    fn errors_never_echo_key_material() {
        for bad in [
            format!("1:{}", &K1[..10]),
            format!("x:{K1}"),
            format!("1:{K1},1:{K1}"),
        ] {
            let err = MasterKeyring::parse(&bad, None).unwrap_err();
            assert!(!err.contains("1111111111"), "{err}");
        }
        assert!(MasterKeyring::parse(&format!("1:{K1}"), Some(3)).is_err());
        let ring = MasterKeyring::parse(&format!("1:{K1}"), None).unwrap();
        assert!(!format!("{ring:?}").contains("1111"));
    }

    #[test]
    fn tenant_key_wrap_round_trips_and_binds_identity() {
        let ring = MasterKeyring::parse(&format!("1:{K1},2:{K2}"), None).unwrap();
        let tenant = Uuid::from_u128(5);
        let tk = TenantKey::new(tenant, 3, SecretKey::random());
        let wrapped = ring.wrap(&tk, 2).unwrap();
        let back = ring.unwrap(tenant, 3, 2, &wrapped).unwrap();
        assert_eq!(back.key(), tk.key());
        assert!(matches!(
            ring.unwrap(tenant, 4, 2, &wrapped),
            Err(KeyError::Unwrap { .. })
        ));
        assert!(matches!(
            ring.unwrap(Uuid::nil(), 3, 2, &wrapped),
            Err(KeyError::Unwrap { .. })
        ));
        assert!(matches!(
            ring.unwrap(tenant, 3, 1, &wrapped),
            Err(KeyError::Unwrap { .. })
        ));
        assert!(matches!(
            ring.unwrap(tenant, 3, 7, &wrapped),
            Err(KeyError::MasterKeyUnavailable { master_version: 7 })
        ));
    }
}
