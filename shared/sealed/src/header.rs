//! The sealed header: fixed layout (docs/FORMAT.md §Header), parsed without trusting
//! any length it declares, and the encryption context it binds.

use std::io::Read;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::SealError;
use super::{
    ALG_ZSTD_AES256GCM_STREAM, FORMAT_VERSION, HEADER_LEN, MAGIC, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE,
};
use crate::kms::WRAPPED_KEY_LEN;

/// Byte offset of the header tag; everything before it is what the tag authenticates.
pub const TAG_OFFSET: usize = 146;
/// Byte range of the context binding (tenant, key version, zone, window) in the header.
pub const BINDING_RANGE: std::ops::Range<usize> = 16..68;

/// What a sealed object belongs to. Bound into the wrapped data key and, through the
/// header tag, into every chunk: an object cannot pass for another tenant's, zone's or
/// window's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealContext {
    pub tenant: Uuid,
    pub zone: Uuid,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
}

impl SealContext {
    /// The 52 bytes binding this context and a tenant key version (header bytes 16..68).
    pub fn binding_bytes(&self, tenant_key_version: u32) -> [u8; 52] {
        let mut out = [0u8; 52];
        out[0..16].copy_from_slice(self.tenant.as_bytes());
        out[16..20].copy_from_slice(&tenant_key_version.to_be_bytes());
        out[20..36].copy_from_slice(self.zone.as_bytes());
        out[36..44].copy_from_slice(&self.window_start.timestamp_micros().to_be_bytes());
        out[44..52].copy_from_slice(&self.window_end.timestamp_micros().to_be_bytes());
        out
    }

    fn window_label(&self) -> String {
        format!(
            "[{}, {})",
            self.window_start.to_rfc3339(),
            self.window_end.to_rfc3339()
        )
    }
}

/// A parsed header. `raw` keeps the exact bytes for tag verification.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedHeader {
    pub chunk_size: u32,
    pub context: SealContext,
    pub tenant_key_version: u32,
    pub salt: [u8; 16],
    pub wrapped_key: [u8; WRAPPED_KEY_LEN],
    pub tag: [u8; 32],
    raw: [u8; HEADER_LEN],
}

impl std::fmt::Debug for SealedHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The wrapped key is not secret, but it is noise in logs.
        f.debug_struct("SealedHeader")
            .field("chunk_size", &self.chunk_size)
            .field("context", &self.context)
            .field("tenant_key_version", &self.tenant_key_version)
            .finish_non_exhaustive()
    }
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn be_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}

fn uuid_at(b: &[u8]) -> Uuid {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Uuid::from_bytes(a)
}

impl SealedHeader {
    /// Lays out a header; `tag` is filled by the sealer once the object keys are derived.
    pub(crate) fn build(
        chunk_size: u32,
        context: &SealContext,
        tenant_key_version: u32,
        salt: [u8; 16],
        wrapped_key: [u8; WRAPPED_KEY_LEN],
    ) -> Self {
        let mut raw = [0u8; HEADER_LEN];
        raw[0..8].copy_from_slice(&MAGIC);
        raw[8] = FORMAT_VERSION;
        raw[9] = ALG_ZSTD_AES256GCM_STREAM;
        raw[10..12].copy_from_slice(&(HEADER_LEN as u16).to_be_bytes());
        raw[12..16].copy_from_slice(&chunk_size.to_be_bytes());
        raw[BINDING_RANGE].copy_from_slice(&context.binding_bytes(tenant_key_version));
        raw[68..84].copy_from_slice(&salt);
        raw[84..86].copy_from_slice(&(WRAPPED_KEY_LEN as u16).to_be_bytes());
        raw[86..TAG_OFFSET].copy_from_slice(&wrapped_key);
        Self {
            chunk_size,
            context: *context,
            tenant_key_version,
            salt,
            wrapped_key,
            tag: [0u8; 32],
            raw,
        }
    }

    pub(crate) fn set_tag(&mut self, tag: [u8; 32]) {
        self.tag = tag;
        self.raw[TAG_OFFSET..].copy_from_slice(&tag);
    }

    /// The exact header bytes.
    pub fn as_bytes(&self) -> &[u8; HEADER_LEN] {
        &self.raw
    }

    /// The bytes the header tag authenticates.
    pub fn tagged_bytes(&self) -> &[u8] {
        &self.raw[..TAG_OFFSET]
    }

    /// Parses a header from the start of `bytes`. Never panics, whatever the input.
    pub fn parse(bytes: &[u8]) -> Result<Self, SealError> {
        if bytes.len() < 12 {
            if bytes.len() >= 8 && bytes[..8] != MAGIC {
                return Err(SealError::NotSealed);
            }
            return Err(SealError::TruncatedHeader { have: bytes.len() });
        }
        if bytes[..8] != MAGIC {
            return Err(SealError::NotSealed);
        }
        if bytes[8] != FORMAT_VERSION {
            return Err(SealError::UnsupportedVersion { found: bytes[8] });
        }
        if bytes[9] != ALG_ZSTD_AES256GCM_STREAM {
            return Err(SealError::UnsupportedAlgorithm { found: bytes[9] });
        }
        let declared = u16::from_be_bytes([bytes[10], bytes[11]]) as usize;
        if declared != HEADER_LEN {
            return Err(SealError::MalformedHeader {
                field: "header_len",
                reason: format!("is {declared}, version 1 headers are {HEADER_LEN} bytes"),
            });
        }
        if bytes.len() < HEADER_LEN {
            return Err(SealError::TruncatedHeader { have: bytes.len() });
        }
        let b = &bytes[..HEADER_LEN];
        let chunk_size = be_u32(&b[12..16]);
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(SealError::MalformedHeader {
                field: "chunk_size",
                reason: format!("{chunk_size} is outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}"),
            });
        }
        let tenant = uuid_at(&b[16..32]);
        let tenant_key_version = be_u32(&b[32..36]);
        if tenant_key_version == 0 {
            return Err(SealError::MalformedHeader {
                field: "tenant_key_version",
                reason: "versions start at 1".into(),
            });
        }
        let zone = uuid_at(&b[36..52]);
        let time = |field: &'static str, at: usize| {
            let micros = be_i64(&b[at..at + 8]);
            if !(crate::MIN_INSTANT_MICROS..=crate::MAX_INSTANT_MICROS).contains(&micros) {
                return Err(SealError::MalformedHeader {
                    field,
                    reason: format!(
                        "{micros} µs is outside 1970-01-01T00:00:00Z ..= 9999-12-31T23:59:59.999999Z"
                    ),
                });
            }
            DateTime::<Utc>::from_timestamp_micros(micros).ok_or(SealError::MalformedHeader {
                field,
                reason: format!("{micros} µs is not a representable time"),
            })
        };
        let window_start = time("window_start", 52)?;
        let window_end = time("window_end", 60)?;
        if window_end <= window_start {
            return Err(SealError::MalformedHeader {
                field: "window_end",
                reason: "must be after window_start".into(),
            });
        }
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&b[68..84]);
        let wrapped_len = u16::from_be_bytes([b[84], b[85]]) as usize;
        if wrapped_len != WRAPPED_KEY_LEN {
            return Err(SealError::MalformedHeader {
                field: "wrapped_key_len",
                reason: format!("is {wrapped_len}, must be {WRAPPED_KEY_LEN}"),
            });
        }
        let mut wrapped_key = [0u8; WRAPPED_KEY_LEN];
        wrapped_key.copy_from_slice(&b[86..TAG_OFFSET]);
        let mut tag = [0u8; 32];
        tag.copy_from_slice(&b[TAG_OFFSET..HEADER_LEN]);
        let mut raw = [0u8; HEADER_LEN];
        raw.copy_from_slice(b);
        Ok(Self {
            chunk_size,
            context: SealContext {
                tenant,
                zone,
                window_start,
                window_end,
            },
            tenant_key_version,
            salt,
            wrapped_key,
            tag,
            raw,
        })
    }

    /// Reads and parses exactly one header from `reader`.
    pub fn read_from<R: Read>(reader: &mut R) -> Result<Self, SealError> {
        let mut buf = [0u8; HEADER_LEN];
        let mut have = 0;
        while have < HEADER_LEN {
            match reader.read(&mut buf[have..]) {
                Ok(0) => break,
                Ok(n) => {
                    have += n;
                    // Fail fast on a foreign object instead of waiting for 178 bytes.
                    if (12..HEADER_LEN).contains(&have) {
                        Self::parse(&buf[..have]).map(|_| ()).or_else(|e| match e {
                            SealError::TruncatedHeader { .. } => Ok(()),
                            other => Err(other),
                        })?;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SealError::from_io(e, "read header")),
            }
        }
        Self::parse(&buf[..have])
    }

    /// Checks the header belongs where the caller expects it (tenant, zone, window).
    pub fn check_context(&self, expected: &SealContext) -> Result<(), SealError> {
        let found = &self.context;
        if found.tenant != expected.tenant {
            return Err(SealError::WrongTenant {
                expected: expected.tenant,
                found: found.tenant,
            });
        }
        if found.zone != expected.zone {
            return Err(SealError::WrongZone {
                expected: expected.zone,
                found: found.zone,
            });
        }
        if found.window_start != expected.window_start || found.window_end != expected.window_end {
            return Err(SealError::WrongWindow {
                expected: expected.window_label(),
                found: found.window_label(),
            });
        }
        Ok(())
    }
}
