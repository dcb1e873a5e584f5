//! The per-zone hash chain: what a link commits to, and appending links without forks.
//!
//! Every window of a zone that reaches an end state gets one link: archived windows
//! commit to their object's and plaintext's SHA-256 and record count; empty windows
//! commit to "empty" with zero records. Pruning deletes the object but keeps the link,
//! so missing (no link), empty, pruned (link, no object, a deletion receipt) and
//! tampered (object hash ≠ link) are four different, provable answers.
//!
//! Two link versions, specified to the byte in docs/CHAIN.md:
//!
//! - version 1 (links written before migration 0018): `link_hash = SHA-256(v1 input)`,
//!   which anyone who can write to Postgres can recompute;
//! - version 2 (every link written since): `link_hash = HMAC-SHA-256(chain key, v2
//!   input)`, under the tenant's chain key derived by the kms from a tenant key version
//!   (`key_version` on the link) and never stored: a database writer cannot forge one.
//!
//! A zone's chain switches from version 1 to 2 at its first version-2 link, whose MAC
//! covers the last version-1 link's hash and so anchors the whole plain prefix; a
//! version-1 link after a version-2 one is a finding.
//!
//! Appending serialises on the zone's row (`SELECT … FOR UPDATE`), reads the tip and
//! inserts the next link in the same transaction; the primary key `(zone_id, seq)` is a
//! second guard. A window that already has a link gets that link back, so replays of
//! the upload stage are harmless.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use rainlogs_core::db::DbError;
pub use rainlogs_sealed::kms::ChainKey;

const DOMAIN: &[u8] = b"rainlogs.chain.v1";
const DOMAIN_V2: &[u8] = b"rainlogs.chain.v2";
const GENESIS_DOMAIN: &[u8] = b"rainlogs.chain.v1.genesis";

/// Link format version 1: plain SHA-256 (before migration 0018).
pub const V1: i16 = 1;
/// Link format version 2: HMAC-SHA-256 under the tenant's chain key.
pub const V2: i16 = 2;

/// One tenant's chain keys by tenant key version: what checking version-2 links needs.
pub type ChainKeys = HashMap<u32, ChainKey>;

/// What a window's link says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkContent {
    /// The window's logs are in a sealed object with these hashes.
    Archived {
        object_sha256: [u8; 32],
        plaintext_sha256: [u8; 32],
        record_count: u64,
    },
    /// Cloudflare returned no records for the window.
    Empty,
}

/// The facts one link commits to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkInput {
    pub zone_id: Uuid,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub content: LinkContent,
}

/// A link as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    pub zone_id: Uuid,
    pub seq: i64,
    pub window_id: i64,
    pub prev_hash: [u8; 32],
    pub link_hash: [u8; 32],
    /// [`V1`] or [`V2`].
    pub version: i16,
    /// The tenant key version whose chain key MACed a version-2 link.
    pub key_version: Option<i32>,
}

/// The `prev_hash` of a zone's first link.
pub fn genesis_hash(zone_id: Uuid) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(GENESIS_DOMAIN);
    h.update(zone_id.as_bytes());
    h.finalize().into()
}

/// Kind byte, object hash, plaintext hash and record count of a link's content.
fn content_fields(content: &LinkContent) -> (u8, [u8; 32], [u8; 32], u64) {
    match *content {
        LinkContent::Archived {
            object_sha256,
            plaintext_sha256,
            record_count,
        } => (1u8, object_sha256, plaintext_sha256, record_count),
        LinkContent::Empty => (2u8, [0u8; 32], [0u8; 32], 0),
    }
}

/// The bytes a version-1 link hashes (docs/CHAIN.md, "Version 1").
pub fn link_input_v1(input: &LinkInput, seq: u64, prev_hash: &[u8; 32]) -> Vec<u8> {
    let (kind, object, plaintext, records) = content_fields(&input.content);
    let mut m = Vec::with_capacity(DOMAIN.len() + 16 + 8 + 32 + 16 + 1 + 64 + 8);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(input.zone_id.as_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(prev_hash);
    m.extend_from_slice(&input.window_start.timestamp_micros().to_be_bytes());
    m.extend_from_slice(&input.window_end.timestamp_micros().to_be_bytes());
    m.push(kind);
    m.extend_from_slice(&object);
    m.extend_from_slice(&plaintext);
    m.extend_from_slice(&records.to_be_bytes());
    m
}

/// The bytes a version-2 link MACs (docs/CHAIN.md, "Version 2"): the version-1 layout
/// under its own domain, with the key version after the zone.
pub fn link_input_v2(
    input: &LinkInput,
    key_version: u32,
    seq: u64,
    prev_hash: &[u8; 32],
) -> Vec<u8> {
    let (kind, object, plaintext, records) = content_fields(&input.content);
    let mut m = Vec::with_capacity(DOMAIN_V2.len() + 16 + 4 + 8 + 32 + 16 + 1 + 64 + 8);
    m.extend_from_slice(DOMAIN_V2);
    m.extend_from_slice(input.zone_id.as_bytes());
    m.extend_from_slice(&key_version.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(prev_hash);
    m.extend_from_slice(&input.window_start.timestamp_micros().to_be_bytes());
    m.extend_from_slice(&input.window_end.timestamp_micros().to_be_bytes());
    m.push(kind);
    m.extend_from_slice(&object);
    m.extend_from_slice(&plaintext);
    m.extend_from_slice(&records.to_be_bytes());
    m
}

/// The hash of version-1 link `seq` following `prev_hash`.
pub fn link_hash(input: &LinkInput, seq: u64, prev_hash: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(link_input_v1(input, seq, prev_hash)).into()
}

/// The MAC of version-2 link `seq` following `prev_hash`, under `key`.
pub fn link_mac(key: &ChainKey, input: &LinkInput, seq: u64, prev_hash: &[u8; 32]) -> [u8; 32] {
    key.mac(&link_input_v2(input, key.version, seq, prev_hash))
}

fn to32(bytes: Vec<u8>, what: &'static str) -> Result<[u8; 32], DbError> {
    bytes.try_into().map_err(|_| DbError::Query {
        op: what,
        reason: "stored hash is not 32 bytes".into(),
        retryable: false,
    })
}

/// Appends the version-2 link for `window_id` to its zone's chain inside `tx`, MACed
/// under `key` (the zone's tenant's chain key, from the kms), or returns the link the
/// window already has. The caller commits.
pub async fn append(
    tx: &mut Transaction<'_, Postgres>,
    window_id: i64,
    input: &LinkInput,
    key: &ChainKey,
) -> Result<ChainLink, DbError> {
    let conn: &mut PgConnection = tx;
    // Serialise appends per zone: every appender waits here for the one before it.
    let tenant = sqlx::query_scalar!(
        "SELECT tenant_id FROM zones WHERE id = $1 FOR UPDATE",
        input.zone_id
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| DbError::query("lock zone for chain append", e))?
    .ok_or_else(|| DbError::Query {
        op: "lock zone for chain append",
        reason: format!("zone {} does not exist", input.zone_id),
        retryable: false,
    })?;
    if tenant != key.tenant {
        return Err(DbError::Query {
            op: "append chain link",
            reason: format!(
                "chain key of tenant {} offered for zone {} of tenant {tenant}",
                key.tenant, input.zone_id
            ),
            retryable: false,
        });
    }

    if let Some(existing) = sqlx::query!(
        "SELECT zone_id, seq, window_id, prev_hash, link_hash, version, key_version
         FROM chain_links WHERE window_id = $1",
        window_id
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| DbError::query("read existing link", e))?
    {
        return Ok(ChainLink {
            zone_id: existing.zone_id,
            seq: existing.seq,
            window_id: existing.window_id,
            prev_hash: to32(existing.prev_hash, "read existing link")?,
            link_hash: to32(existing.link_hash, "read existing link")?,
            version: existing.version,
            key_version: existing.key_version,
        });
    }

    let tip = sqlx::query!(
        "SELECT seq, link_hash FROM chain_links WHERE zone_id = $1 ORDER BY seq DESC LIMIT 1",
        input.zone_id
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| DbError::query("read chain tip", e))?;
    let (seq, prev_hash) = match tip {
        Some(t) => (t.seq + 1, to32(t.link_hash, "read chain tip")?),
        None => (0, genesis_hash(input.zone_id)),
    };
    let hash = link_mac(key, input, seq as u64, &prev_hash);
    let key_version = i32::try_from(key.version).map_err(|_| DbError::Query {
        op: "append chain link",
        reason: format!("key version {} out of range", key.version),
        retryable: false,
    })?;
    let (object, plaintext, records) = match input.content {
        LinkContent::Archived {
            object_sha256,
            plaintext_sha256,
            record_count,
        } => (
            Some(object_sha256.to_vec()),
            Some(plaintext_sha256.to_vec()),
            record_count as i64,
        ),
        LinkContent::Empty => (None, None, 0),
    };
    sqlx::query!(
        "INSERT INTO chain_links
           (zone_id, seq, window_id, prev_hash, link_hash, object_sha256, plaintext_sha256,
            record_count, version, key_version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        input.zone_id,
        seq,
        window_id,
        &prev_hash[..],
        &hash[..],
        object,
        plaintext,
        records,
        V2,
        key_version,
    )
    .execute(&mut *conn)
    .await
    .map_err(|e| DbError::query("insert chain link", e))?;
    Ok(ChainLink {
        zone_id: input.zone_id,
        seq,
        window_id,
        prev_hash,
        link_hash: hash,
        version: V2,
        key_version: Some(key_version),
    })
}

/// Why a zone's chain does not verify, at the first link that fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// The link's `seq` is not the next number: a link is missing before it.
    Gap { expected_seq: i64 },
    /// The link's `prev_hash` is not the previous link's hash (or the genesis hash).
    PrevHashMismatch,
    /// The stored `link_hash` differs from the hash recomputed from the window and link.
    HashMismatch,
    /// The link's columns cannot be a valid link (e.g. a hash that is not 32 bytes, a
    /// plaintext hash without an object hash, an unknown version).
    Malformed(String),
    /// A version-1 (unkeyed) link after the zone's first version-2 link: written by
    /// someone without the chain key (docs/CHAIN.md "Switching from version 1").
    Downgrade,
    /// The chain key of this tenant key version is not available (shredded, or not in
    /// the key material given): the link's MAC was not checked. Reported once per
    /// version, at its first link.
    KeyUnavailable { key_version: i32 },
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainBreak::Gap { expected_seq } => {
                write!(f, "link missing: expected seq {expected_seq}")
            }
            ChainBreak::PrevHashMismatch => f.write_str("prev_hash does not match previous link"),
            ChainBreak::HashMismatch => f.write_str("link_hash does not match the recomputed hash"),
            ChainBreak::Malformed(why) => write!(f, "malformed link: {why}"),
            ChainBreak::Downgrade => {
                f.write_str("unkeyed (version 1) link after the chain's first keyed link")
            }
            ChainBreak::KeyUnavailable { key_version } => write!(
                f,
                "chain key of tenant key version {key_version} unavailable: MACs under it not checked"
            ),
        }
    }
}

/// The result of walking a zone's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub zone_id: Uuid,
    /// Links that verified before the first break (all links if none).
    pub links_checked: u64,
    /// The first link that does not verify, by its stored `seq`, and why.
    pub first_break: Option<(i64, ChainBreak)>,
}

impl ChainReport {
    pub fn is_valid(&self) -> bool {
        self.first_break.is_none()
    }
}

fn content_of(
    object: Option<Vec<u8>>,
    plaintext: Option<Vec<u8>>,
    records: i64,
) -> Result<LinkContent, ChainBreak> {
    let records = u64::try_from(records)
        .map_err(|_| ChainBreak::Malformed(format!("negative record_count {records}")))?;
    let hash32 = |v: Vec<u8>, what: &str| -> Result<[u8; 32], ChainBreak> {
        v.try_into()
            .map_err(|_| ChainBreak::Malformed(format!("{what} is not 32 bytes")))
    };
    match (object, plaintext) {
        (Some(o), Some(p)) => Ok(LinkContent::Archived {
            object_sha256: hash32(o, "object_sha256")?,
            plaintext_sha256: hash32(p, "plaintext_sha256")?,
            record_count: records,
        }),
        (Some(_), None) => Err(ChainBreak::Malformed(
            "object_sha256 without plaintext_sha256".into(),
        )),
        // Kind is decided by object_sha256 alone (docs/CHAIN.md); an empty link with a
        // stray plaintext hash or a record count will simply not recompute.
        (None, _) if records == 0 => Ok(LinkContent::Empty),
        (None, _) => Err(ChainBreak::Malformed(format!(
            "empty link with record_count {records}"
        ))),
    }
}

/// One stored link with its window's bounds, as verification reads it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredLink {
    pub seq: i64,
    pub window_id: i64,
    pub prev_hash: Vec<u8>,
    pub link_hash: Vec<u8>,
    pub version: i16,
    pub key_version: Option<i32>,
    pub object_sha256: Option<Vec<u8>>,
    pub plaintext_sha256: Option<Vec<u8>>,
    pub record_count: i64,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
}

/// Links of `zone_id` with `seq > after`, in `seq` order, at most `limit`: verification
/// pages through a chain of any length with bounded memory.
pub async fn links_page(
    pool: &sqlx::PgPool,
    zone_id: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredLink>, DbError> {
    sqlx::query_as!(
        StoredLink,
        "SELECT l.seq, l.window_id, l.prev_hash, l.link_hash, l.version, l.key_version,
                l.object_sha256,
                l.plaintext_sha256, l.record_count, w.start_at, w.end_at
         FROM chain_links l JOIN windows w ON w.id = l.window_id
         WHERE l.zone_id = $1 AND l.seq > $2 ORDER BY l.seq LIMIT $3",
        zone_id,
        after,
        limit,
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("read chain for verification", e))
}

/// When link `seq` of `zone_id` was written (`created_at`; the checkpoint grace).
pub async fn link_created_at(
    pool: &sqlx::PgPool,
    zone_id: Uuid,
    seq: i64,
) -> Result<Option<DateTime<Utc>>, DbError> {
    sqlx::query_scalar!(
        "SELECT created_at FROM chain_links WHERE zone_id = $1 AND seq = $2",
        zone_id,
        seq
    )
    .fetch_optional(pool)
    .await
    .map_err(|e| DbError::query("read link time", e))
}

/// What a link commits to, from its stored columns.
pub fn stored_content(link: &StoredLink) -> Result<LinkContent, ChainBreak> {
    content_of(
        link.object_sha256.clone(),
        link.plaintext_sha256.clone(),
        link.record_count,
    )
}

/// Checks links one by one in `seq` order and reports every break, not just the first.
///
/// Each link is judged on its own: its `seq` must follow the previous one, its
/// `prev_hash` must be the previous stored link's hash (the genesis hash for seq 0), and
/// its hash must recompute from its own columns, window and stored `prev_hash` — a
/// SHA-256 for version 1, an HMAC under the chain key of its `key_version` for version
/// 2. Judging locally keeps one edit from being reported again at every later link;
/// after a gap the `prev_hash` check of the next link is skipped (the link it points to
/// is gone, which the gap already says).
#[derive(Debug, Clone)]
pub struct ChainChecker {
    zone_id: Uuid,
    keys: ChainKeys,
    expected_seq: i64,
    prev: Option<[u8; 32]>,
    checked: u64,
    first_v2: Option<i64>,
    last_v1: Option<i64>,
    tip: Option<(i64, Vec<u8>)>,
    unavailable: BTreeSet<i32>,
}

impl ChainChecker {
    /// A checker for `zone_id`'s chain; `keys` are its tenant's chain keys (version-2
    /// links under a version not in `keys` are reported as [`ChainBreak::KeyUnavailable`]).
    pub fn new(zone_id: Uuid, keys: ChainKeys) -> Self {
        Self {
            zone_id,
            keys,
            expected_seq: 0,
            prev: Some(genesis_hash(zone_id)),
            checked: 0,
            first_v2: None,
            last_v1: None,
            tip: None,
            unavailable: BTreeSet::new(),
        }
    }

    /// Links seen so far.
    pub fn links_seen(&self) -> u64 {
        self.checked
    }

    /// The `seq` after which the next page starts.
    pub fn last_seq(&self) -> i64 {
        self.expected_seq - 1
    }

    /// The seq of the first version-2 link seen.
    pub fn first_keyed_seq(&self) -> Option<i64> {
        self.first_v2
    }

    /// The seq of the last version-1 link seen.
    pub fn last_unkeyed_seq(&self) -> Option<i64> {
        self.last_v1
    }

    /// The last link seen: its seq and stored hash.
    pub fn tip(&self) -> Option<&(i64, Vec<u8>)> {
        self.tip.as_ref()
    }

    /// Checks the next link; returns its breaks (empty when it verifies).
    pub fn check(&mut self, link: &StoredLink) -> Vec<ChainBreak> {
        let mut breaks = Vec::new();
        let after_gap = link.seq != self.expected_seq;
        if after_gap {
            breaks.push(ChainBreak::Gap {
                expected_seq: self.expected_seq,
            });
        }
        match link.version {
            V1 => {
                if self.first_v2.is_some() {
                    breaks.push(ChainBreak::Downgrade);
                }
                self.last_v1 = Some(link.seq);
            }
            V2 => {
                self.first_v2.get_or_insert(link.seq);
            }
            _ => {}
        }
        let prev_hash: Option<[u8; 32]> = link.prev_hash.as_slice().try_into().ok();
        let stored_hash: Option<[u8; 32]> = link.link_hash.as_slice().try_into().ok();
        match (prev_hash, stored_hash) {
            (Some(prev_hash), Some(stored_hash)) => {
                if !after_gap && self.prev.is_some_and(|p| p != prev_hash) {
                    breaks.push(ChainBreak::PrevHashMismatch);
                }
                match stored_content(link) {
                    Err(why) => breaks.push(why),
                    Ok(content) => {
                        let input = LinkInput {
                            zone_id: self.zone_id,
                            window_start: link.start_at,
                            window_end: link.end_at,
                            content,
                        };
                        let seq = u64::try_from(link.seq).unwrap_or(0);
                        if let Some(why) = self.check_hash(link, &input, seq, &prev_hash) {
                            breaks.push(why);
                        }
                    }
                }
                self.prev = Some(stored_hash);
            }
            _ => {
                breaks.push(ChainBreak::Malformed(
                    "prev_hash or link_hash is not 32 bytes".into(),
                ));
                self.prev = None;
            }
        }
        self.tip = Some((link.seq, link.link_hash.clone()));
        self.expected_seq = link.seq.saturating_add(1);
        self.checked += 1;
        breaks
    }

    fn check_hash(
        &mut self,
        link: &StoredLink,
        input: &LinkInput,
        seq: u64,
        prev_hash: &[u8; 32],
    ) -> Option<ChainBreak> {
        match (link.version, link.key_version) {
            (V1, None) => (link_hash(input, seq, prev_hash)[..] != link.link_hash[..])
                .then_some(ChainBreak::HashMismatch),
            (V2, Some(kv)) => {
                let key = u32::try_from(kv).ok().and_then(|v| self.keys.get(&v));
                match key {
                    Some(key) => (!key.verify(
                        &link_input_v2(input, key.version, seq, prev_hash),
                        &link.link_hash,
                    ))
                    .then_some(ChainBreak::HashMismatch),
                    None => self
                        .unavailable
                        .insert(kv)
                        .then_some(ChainBreak::KeyUnavailable { key_version: kv }),
                }
            }
            (v, kv) => Some(ChainBreak::Malformed(format!(
                "version {v} with key_version {kv:?}"
            ))),
        }
    }
}

/// The tenant key versions `zone_id`'s version-2 links are MACed under.
pub async fn key_versions(pool: &sqlx::PgPool, zone_id: Uuid) -> Result<Vec<i32>, DbError> {
    sqlx::query_scalar!(
        r#"SELECT DISTINCT key_version AS "key_version!" FROM chain_links
           WHERE zone_id = $1 AND key_version IS NOT NULL ORDER BY 1"#,
        zone_id
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("read chain key versions", e))
}

/// The tenant a zone belongs to.
pub async fn zone_tenant(pool: &sqlx::PgPool, zone_id: Uuid) -> Result<Uuid, DbError> {
    sqlx::query_scalar!("SELECT tenant_id FROM zones WHERE id = $1", zone_id)
        .fetch_optional(pool)
        .await
        .map_err(|e| DbError::query("read zone tenant", e))?
        .ok_or_else(|| DbError::Query {
            op: "read zone tenant",
            reason: format!("zone {zone_id} does not exist"),
            retryable: false,
        })
}

/// The chain keys checking `zone_id`'s links needs, from `kms`. A version the kms
/// cannot give (shredded, not in a key file) is left out: the checker reports it.
pub async fn keys_for_zone(
    pool: &sqlx::PgPool,
    kms: &dyn rainlogs_sealed::kms::Kms,
    zone_id: Uuid,
) -> Result<ChainKeys, DbError> {
    let tenant = zone_tenant(pool, zone_id).await?;
    let mut keys = ChainKeys::new();
    for v in key_versions(pool, zone_id).await? {
        let Ok(v) = u32::try_from(v) else { continue };
        match kms.chain_key(tenant, Some(v)).await {
            Ok(k) => {
                keys.insert(v, k);
            }
            Err(rainlogs_sealed::kms::KeyError::Backend {
                reason,
                retryable: true,
            }) => {
                return Err(DbError::Query {
                    op: "read chain key",
                    reason,
                    retryable: true,
                })
            }
            Err(_) => {}
        }
    }
    Ok(keys)
}

/// Links read per page by [`verify_zone`] and the verifier.
pub const LINK_PAGE: i64 = 1000;

/// Walks `zone_id`'s chain in `seq` order, recomputing every link hash (MAC, under
/// chain keys from `kms`) from its window row and link columns and checking that each
/// `prev_hash` is the hash before it. Stops at the first break; a zone without links
/// verifies with zero links. Paged, so memory does not grow with the chain.
/// (`rainlogs verify` reports every break through [`ChainChecker`], and checks the
/// chain against its checkpoints.)
pub async fn verify_zone(
    pool: &sqlx::PgPool,
    kms: &dyn rainlogs_sealed::kms::Kms,
    zone_id: Uuid,
) -> Result<ChainReport, DbError> {
    let keys = keys_for_zone(pool, kms, zone_id).await?;
    let mut checker = ChainChecker::new(zone_id, keys);
    let mut verified = 0u64;
    loop {
        let page = links_page(pool, zone_id, checker.last_seq(), LINK_PAGE).await?;
        if page.is_empty() {
            return Ok(ChainReport {
                zone_id,
                links_checked: verified,
                first_break: None,
            });
        }
        for link in &page {
            if let Some(why) = checker.check(link).into_iter().next() {
                return Ok(ChainReport {
                    zone_id,
                    links_checked: verified,
                    first_break: Some((link.seq, why)),
                });
            }
            verified += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn input(content: LinkContent) -> LinkInput {
        LinkInput {
            zone_id: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            window_start: Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap(),
            window_end: Utc.with_ymd_and_hms(2026, 11, 30, 8, 1, 0).unwrap(),
            content,
        }
    }

    #[test]
    fn every_committed_field_changes_the_hash() {
        let archived = LinkContent::Archived {
            object_sha256: [1; 32],
            plaintext_sha256: [2; 32],
            record_count: 10,
        };
        let base = link_hash(&input(archived), 5, &[9; 32]);
        let mut variants = vec![
            link_hash(&input(archived), 6, &[9; 32]),
            link_hash(&input(archived), 5, &[8; 32]),
            link_hash(&input(LinkContent::Empty), 5, &[9; 32]),
        ];
        for content in [
            LinkContent::Archived {
                object_sha256: [3; 32],
                plaintext_sha256: [2; 32],
                record_count: 10,
            },
            LinkContent::Archived {
                object_sha256: [1; 32],
                plaintext_sha256: [3; 32],
                record_count: 10,
            },
            LinkContent::Archived {
                object_sha256: [1; 32],
                plaintext_sha256: [2; 32],
                record_count: 11,
            },
        ] {
            variants.push(link_hash(&input(content), 5, &[9; 32]));
        }
        let mut other_zone = input(archived);
        other_zone.zone_id = Uuid::from_u128(1);
        variants.push(link_hash(&other_zone, 5, &[9; 32]));
        let mut other_window = input(archived);
        other_window.window_end += chrono::Duration::seconds(1);
        variants.push(link_hash(&other_window, 5, &[9; 32]));
        for v in variants {
            assert_ne!(v, base);
        }
    }

    #[test]
    fn genesis_differs_per_zone() {
        assert_ne!(
            genesis_hash(Uuid::from_u128(1)),
            genesis_hash(Uuid::from_u128(2))
        );
    }

    #[test]
    fn known_vector() {
        // Pinned so a change to the link layout cannot slip in unnoticed (docs/CHAIN.md).
        let h = link_hash(
            &input(LinkContent::Empty),
            0,
            &genesis_hash(input(LinkContent::Empty).zone_id),
        );
        assert_eq!(hex::encode(h), KNOWN_EMPTY_LINK_0);
    }

    /// A valid chain of `n` empty links of one zone, one minute each.
    fn chain(n: i64) -> Vec<StoredLink> {
        let zone = input(LinkContent::Empty).zone_id;
        let mut prev = genesis_hash(zone);
        (0..n)
            .map(|seq| {
                let mut i = input(LinkContent::Empty);
                i.window_start += chrono::Duration::minutes(seq);
                i.window_end += chrono::Duration::minutes(seq);
                let hash = link_hash(&i, seq as u64, &prev);
                let link = StoredLink {
                    seq,
                    window_id: 100 + seq,
                    prev_hash: prev.to_vec(),
                    link_hash: hash.to_vec(),
                    version: V1,
                    key_version: None,
                    object_sha256: None,
                    plaintext_sha256: None,
                    record_count: 0,
                    start_at: i.window_start,
                    end_at: i.window_end,
                };
                prev = hash;
                link
            })
            .collect()
    }

    fn breaks(links: &[StoredLink]) -> Vec<(i64, ChainBreak)> {
        let mut checker = ChainChecker::new(input(LinkContent::Empty).zone_id, ChainKeys::new());
        links
            .iter()
            .flat_map(|l| checker.check(l).into_iter().map(|b| (l.seq, b)))
            .collect()
    }

    #[test]
    fn checker_reports_every_break_once_where_it_is() {
        assert_eq!(breaks(&chain(6)), vec![]);

        let mut removed = chain(6);
        removed.remove(2);
        assert_eq!(
            breaks(&removed),
            vec![(3, ChainBreak::Gap { expected_seq: 2 })]
        );

        let mut swapped = chain(6);
        swapped[1].seq = 4;
        swapped[4].seq = 1;
        swapped.swap(1, 4);
        let found = breaks(&swapped);
        assert!(found.contains(&(1, ChainBreak::HashMismatch)), "{found:?}");
        assert!(found.contains(&(4, ChainBreak::HashMismatch)), "{found:?}");
        assert!(
            found.iter().all(|(seq, _)| [1, 2, 4, 5].contains(seq)),
            "{found:?}"
        );

        let mut edited = chain(6);
        edited[3].record_count = 0;
        edited[3].end_at += chrono::Duration::seconds(1);
        assert_eq!(breaks(&edited), vec![(3, ChainBreak::HashMismatch)]);
    }

    fn key() -> ChainKey {
        ChainKey::derive(&rainlogs_sealed::kms::TenantKey::new(
            Uuid::from_u128(9),
            1,
            rainlogs_sealed::kms::SecretKey::from_bytes([0x22; 32]),
        ))
    }

    /// `n` links: the first `plain` version 1, the rest version 2 under [`key`].
    fn mixed_chain(n: i64, plain: i64) -> Vec<StoredLink> {
        let mut links = chain(n);
        let k = key();
        let mut prev = genesis_hash(input(LinkContent::Empty).zone_id);
        for l in links.iter_mut() {
            let mut i = input(LinkContent::Empty);
            i.window_start = l.start_at;
            i.window_end = l.end_at;
            l.prev_hash = prev.to_vec();
            let hash = if l.seq < plain {
                link_hash(&i, l.seq as u64, &prev)
            } else {
                l.version = V2;
                l.key_version = Some(1);
                link_mac(&k, &i, l.seq as u64, &prev)
            };
            l.link_hash = hash.to_vec();
            prev = hash;
        }
        links
    }

    fn keyed_breaks(links: &[StoredLink], keys: ChainKeys) -> Vec<(i64, ChainBreak)> {
        let mut checker = ChainChecker::new(input(LinkContent::Empty).zone_id, keys);
        links
            .iter()
            .flat_map(|l| checker.check(l).into_iter().map(|b| (l.seq, b)))
            .collect()
    }

    #[test]
    fn a_chain_switching_from_v1_to_v2_verifies_and_a_downgrade_or_forgery_does_not() {
        let keys: ChainKeys = [(1, key())].into_iter().collect();
        let links = mixed_chain(6, 3);
        assert_eq!(keyed_breaks(&links, keys.clone()), vec![]);

        // A keyed link recomputed as plain SHA-256 by someone without the key.
        let mut forged = links.clone();
        let mut i = input(LinkContent::Empty);
        i.window_start = forged[4].start_at;
        i.window_end = forged[4].end_at;
        let prev: [u8; 32] = forged[4].prev_hash.clone().try_into().unwrap();
        forged[4].link_hash = link_hash(&i, 4, &prev).to_vec();
        let found = keyed_breaks(&forged, keys.clone());
        assert!(found.contains(&(4, ChainBreak::HashMismatch)), "{found:?}");
        // …and marked version 1: an unkeyed link after a keyed one.
        forged[4].version = V1;
        forged[4].key_version = None;
        let found = keyed_breaks(&forged, keys.clone());
        assert!(found.contains(&(4, ChainBreak::Downgrade)), "{found:?}");

        // Without the key the MACs are not checked, and that is said once.
        let found = keyed_breaks(&links, ChainKeys::new());
        assert_eq!(
            found,
            vec![(3, ChainBreak::KeyUnavailable { key_version: 1 })]
        );
    }

    // Computed independently (Python hashlib) from the layout in the module docs.
    const KNOWN_EMPTY_LINK_0: &str =
        "9d30d714f99b2339a4f67b02efbf3149ea4e531649ea833e7476408d0656d423";
}
