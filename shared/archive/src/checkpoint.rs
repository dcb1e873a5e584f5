//! Checkpoints: each zone's chain tip, MACed under its tenant's chain key and written
//! into the bucket — outside Postgres — so someone who can rewrite the database cannot
//! also roll the chain back, cut its tail off or replace it with unkeyed links
//! unnoticed (docs/CHAIN.md "Checkpoints").
//!
//! A checkpoint is a small self-describing JSON object at
//! `checkpoints/{tenant}/{zone}/{seq:020}.json` (zero-padded, so a listing is in seq
//! order). `rainlogs run` writes one per zone whose tip moved, every
//! `RAINLOGS_CHECKPOINT_INTERVAL_SECONDS` (default 3600); `rainlogs checkpoint` writes
//! them on demand. Before writing, the links since the zone's previous checkpoint are
//! checked (MACs, continuity, the previous checkpoint's link unchanged, no unkeyed link
//! after it): a checkpoint never vouches for a chain that does not verify.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::chain::{self, ChainChecker, ChainKey, ChainKeys};
use rainlogs_core::db::DbError;
use rainlogs_core::error::TaskError;
use rainlogs_core::storage::{ObjectStore, StorageError};
use rainlogs_sealed::kms::{KeyError, Kms};

/// The `format` of a checkpoint object, and the domain its MAC input starts with.
pub const FORMAT: &str = "rainlogs.checkpoint.v1";
/// Where checkpoints live in the bucket (under the store's prefix).
pub const PREFIX: &str = "checkpoints/";
/// Default interval of the scheduled pass (`RAINLOGS_CHECKPOINT_INTERVAL_SECONDS`).
pub const DEFAULT_INTERVAL_SECONDS: u64 = 3600;
/// The longest interval the scheduled pass may be configured to.
pub const MAX_INTERVAL_SECONDS: u64 = 3600;
/// How old a zone's oldest link may be with no checkpoint before `verify` reports the
/// series missing: two of the longest intervals and a margin for a late pass.
pub const MISSING_GRACE: chrono::TimeDelta = chrono::TimeDelta::minutes(135);

/// The key of `zone`'s checkpoint at `seq`.
pub fn checkpoint_key(tenant: Uuid, zone: Uuid, seq: u64) -> String {
    format!("{PREFIX}{tenant}/{zone}/{seq:020}.json")
}

/// The prefix of `zone`'s checkpoints.
pub fn zone_prefix(tenant: Uuid, zone: Uuid) -> String {
    format!("{PREFIX}{tenant}/{zone}/")
}

/// One checkpoint object (docs/CHAIN.md "Checkpoints" defines every field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: String,
    pub tenant_id: Uuid,
    pub zone_id: Uuid,
    /// The tip's seq: the checkpoint vouches for links `0..=seq`.
    pub seq: u64,
    /// The tip's stored `link_hash`, lowercase hex.
    pub link_hash: String,
    /// The zone's first version-2 link (`null`: none yet; links up to `seq` are all
    /// version 1, anchored by this checkpoint).
    pub first_keyed_seq: Option<u64>,
    /// The tenant key version whose chain key MACed this checkpoint.
    pub key_version: u32,
    /// When it was made, microseconds since the Unix epoch (MACed) and as RFC 3339.
    pub created_at_us: i64,
    pub created_at: DateTime<Utc>,
    /// HMAC-SHA-256 of [`Checkpoint::mac_input`], lowercase hex.
    pub mac: String,
}

impl Checkpoint {
    /// A checkpoint of `zone`'s tip, MACed under `key`.
    pub fn new(
        key: &ChainKey,
        zone_id: Uuid,
        seq: u64,
        link_hash: &[u8],
        first_keyed_seq: Option<u64>,
        now: DateTime<Utc>,
    ) -> Self {
        let created_at_us = now.timestamp_micros();
        let mut c = Checkpoint {
            format: FORMAT.into(),
            tenant_id: key.tenant,
            zone_id,
            seq,
            link_hash: hex::encode(link_hash),
            first_keyed_seq,
            key_version: key.version,
            created_at_us,
            created_at: Utc.timestamp_micros(created_at_us).single().unwrap_or(now),
            mac: String::new(),
        };
        c.mac = hex::encode(key.mac(&c.mac_input().unwrap_or_default()));
        c
    }

    /// The bytes the MAC covers: `"rainlogs.checkpoint.v1"` (22 ASCII bytes) ||
    /// tenant_id (16) || zone_id (16) || key_version (u32 BE) || seq (u64 BE) ||
    /// link_hash (32) || first_keyed_seq (i64 BE, -1 when null) || created_at_us (i64 BE).
    pub fn mac_input(&self) -> Result<Vec<u8>, String> {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&self.link_hash, &mut hash)
            .map_err(|_| "link_hash is not 64 hex digits".to_owned())?;
        let first = match self.first_keyed_seq {
            None => -1i64,
            Some(s) => i64::try_from(s).map_err(|_| "first_keyed_seq out of range")?,
        };
        let mut m = Vec::with_capacity(22 + 16 + 16 + 4 + 8 + 32 + 8 + 8);
        m.extend_from_slice(FORMAT.as_bytes());
        m.extend_from_slice(self.tenant_id.as_bytes());
        m.extend_from_slice(self.zone_id.as_bytes());
        m.extend_from_slice(&self.key_version.to_be_bytes());
        m.extend_from_slice(&self.seq.to_be_bytes());
        m.extend_from_slice(&hash);
        m.extend_from_slice(&first.to_be_bytes());
        m.extend_from_slice(&self.created_at_us.to_be_bytes());
        Ok(m)
    }

    /// Checks format, MAC and that it belongs to `zone` at `key` (its object key).
    pub fn check(&self, keys: &ChainKeys, zone: Uuid, object_key: &str) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("format is {:?}, not {FORMAT:?}", self.format));
        }
        if self.zone_id != zone || object_key != checkpoint_key(self.tenant_id, zone, self.seq) {
            return Err(format!(
                "names zone {} seq {}, not what its key {object_key} says",
                self.zone_id, self.seq
            ));
        }
        let input = self.mac_input()?;
        let key = keys
            .get(&self.key_version)
            .ok_or_else(|| format!("chain key version {} unavailable", self.key_version))?;
        let mut tag = [0u8; 32];
        hex::decode_to_slice(&self.mac, &mut tag).map_err(|_| "mac is not 64 hex digits")?;
        if !key.verify(&input, &tag) {
            return Err("MAC does not verify: altered, or not made with the chain key".into());
        }
        Ok(())
    }
}

/// Why checkpointing could not proceed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The chain does not verify since the previous checkpoint: nothing is vouched for.
    #[error("zone {zone}: not checkpointed, its chain does not verify: {detail}")]
    ChainBroken { zone: Uuid, detail: String },
}

impl From<CheckpointError> for TaskError {
    fn from(e: CheckpointError) -> Self {
        match e {
            CheckpointError::Db(e) => e.into(),
            CheckpointError::Storage(e) => e.into(),
            CheckpointError::Key(e) => e.into(),
            e @ CheckpointError::ChainBroken { .. } => {
                TaskError::permanent("checkpoint.chain_broken", e.to_string())
            }
        }
    }
}

/// A checkpoint object as listed and read: its key and what it parses to.
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: String,
    pub parsed: Result<Checkpoint, String>,
}

/// Every checkpoint of `zone`, in seq order (paged listing; a zone has one per
/// checkpoint interval in which its tip moved, so a few thousand a year).
pub async fn list_zone(
    store: &ObjectStore,
    tenant: Uuid,
    zone: Uuid,
) -> Result<Vec<Stored>, StorageError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let (page, next) = store
            .list_page(&zone_prefix(tenant, zone), token, 1000)
            .await?;
        for o in page {
            let body = store.get(&o.key).await?;
            let parsed = serde_json::from_slice::<Checkpoint>(&body)
                .map_err(|e| format!("not a checkpoint: {e}"));
            out.push(Stored { key: o.key, parsed });
        }
        match next {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// What one checkpointing pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassReport {
    pub zones: u64,
    pub written: u64,
    pub unchanged: u64,
    /// Zones whose chain did not verify (not checkpointed): `zone: reason`.
    pub refused: Vec<String>,
}

/// Checkpoints one zone's tip if it moved since its last checkpoint; returns the new
/// checkpoint, or `None` when the zone has no links or its tip is checkpointed.
pub async fn checkpoint_zone(
    pool: &PgPool,
    store: &ObjectStore,
    kms: &dyn Kms,
    zone: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<Checkpoint>, CheckpointError> {
    let tenant = chain::zone_tenant(pool, zone).await?;
    let tip = sqlx::query!(
        "SELECT seq, link_hash FROM chain_links WHERE zone_id = $1 ORDER BY seq DESC LIMIT 1",
        zone
    )
    .fetch_optional(pool)
    .await
    .map_err(|e| DbError::query("read chain tip for checkpoint", e))?;
    let Some(tip) = tip else { return Ok(None) };
    let tip_seq = u64::try_from(tip.seq).unwrap_or(0);
    if store
        .head(&checkpoint_key(tenant, zone, tip_seq))
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let keys = chain::keys_for_zone(pool, kms, zone).await?;
    let key = kms.chain_key(tenant, None).await?;
    let mut all_keys = keys.clone();
    all_keys.insert(key.version, key.clone());
    let previous = list_zone(store, tenant, zone)
        .await?
        .into_iter()
        .filter_map(|s| {
            let c = s.parsed.ok()?;
            c.check(&all_keys, zone, &s.key).ok().map(|_| c)
        })
        .next_back();
    // Check the whole chain up to the tip (links before the previous checkpoint are
    // what it vouched for: their tip must still be its hash).
    let broken = |detail: String| CheckpointError::ChainBroken { zone, detail };
    let mut checker = ChainChecker::new(zone, all_keys);
    loop {
        let page = chain::links_page(pool, zone, checker.last_seq(), chain::LINK_PAGE).await?;
        if page.is_empty() {
            break;
        }
        for link in &page {
            if let Some(why) = checker.check(link).into_iter().next() {
                return Err(broken(format!("link seq {}: {why}", link.seq)));
            }
            if let Some(p) = &previous {
                if link.seq as u64 == p.seq && hex::encode(&link.link_hash) != p.link_hash {
                    return Err(broken(format!(
                        "link seq {} differs from its checkpoint",
                        p.seq
                    )));
                }
                if link.version == chain::V1 && link.seq as u64 > p.seq {
                    return Err(broken(format!(
                        "unkeyed link seq {} after checkpoint seq {}",
                        link.seq, p.seq
                    )));
                }
            }
        }
    }
    if let Some(p) = &previous {
        if checker.last_seq() < p.seq as i64 {
            return Err(broken(format!(
                "chain ends at seq {}, behind checkpoint seq {}",
                checker.last_seq(),
                p.seq
            )));
        }
    }
    let Some((seq, hash)) = checker.tip().cloned() else {
        return Ok(None);
    };
    let first_keyed = checker
        .first_keyed_seq()
        .and_then(|s| u64::try_from(s).ok());
    let c = Checkpoint::new(&key, zone, seq as u64, &hash, first_keyed, now);
    let body = serde_json::to_vec_pretty(&c).unwrap_or_default();
    store
        .put(&checkpoint_key(tenant, zone, c.seq), body.into())
        .await?;
    Ok(Some(c))
}

/// Checkpoints every zone with links (or `tenant`'s): the scheduled pass and
/// `rainlogs checkpoint`. A zone whose chain does not verify is refused (reported,
/// logged), the others still checkpointed; operational errors stop the pass.
pub async fn checkpoint_all(
    pool: &PgPool,
    store: &ObjectStore,
    kms: &dyn Kms,
    tenant: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<PassReport, CheckpointError> {
    let zones = sqlx::query_scalar!(
        "SELECT z.id FROM zones z
         WHERE ($1::uuid IS NULL OR z.tenant_id = $1)
           AND EXISTS (SELECT 1 FROM chain_links l WHERE l.zone_id = z.id)
         ORDER BY z.id",
        tenant
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("list zones to checkpoint", e))?;
    let mut report = PassReport::default();
    for zone in zones {
        report.zones += 1;
        match checkpoint_zone(pool, store, kms, zone, now).await {
            Ok(Some(_)) => report.written += 1,
            Ok(None) => report.unchanged += 1,
            Err(e @ CheckpointError::ChainBroken { .. }) => {
                tracing::error!(%zone, error = %e, "chain not checkpointed");
                report.refused.push(e.to_string());
            }
            // A shredded tenant has no chain key any more: nothing to checkpoint.
            Err(CheckpointError::Key(KeyError::Shredded { .. })) => report.unchanged += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

/// The setting of the scheduled pass's interval in seconds (`0`: off).
pub const INTERVAL_VAR: &str = "RAINLOGS_CHECKPOINT_INTERVAL_SECONDS";

/// The scheduled pass's interval from `src` (default one hour, at most one hour — the
/// `checkpoint_missing` grace assumes it; `0` turns it off).
pub fn interval_from(
    src: &rainlogs_core::config::ConfigSource,
) -> Result<std::time::Duration, rainlogs_core::config::ConfigError> {
    let secs: u64 = src.parsed_or(INTERVAL_VAR, DEFAULT_INTERVAL_SECONDS)?;
    if secs > MAX_INTERVAL_SECONDS {
        return Err(rainlogs_core::config::ConfigError::Invalid {
            var: INTERVAL_VAR.into(),
            reason: format!("{secs}: at most {MAX_INTERVAL_SECONDS} seconds (0 turns it off)"),
        });
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// Runs [`checkpoint_all`] every `interval` until `shutdown` turns true: the
/// checkpoint pass of `rainlogs run`. A failed pass is logged and retried next time.
pub async fn run_loop(
    pool: PgPool,
    store: ObjectStore,
    kms: std::sync::Arc<dyn Kms>,
    interval: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    if interval.is_zero() {
        return;
    }
    loop {
        match checkpoint_all(&pool, &store, kms.as_ref(), None, Utc::now()).await {
            Ok(r) => tracing::info!(
                zones = r.zones,
                written = r.written,
                refused = r.refused.len(),
                "checkpoint pass"
            ),
            Err(e) => tracing::warn!(error = %e, "checkpoint pass failed; retried next interval"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
