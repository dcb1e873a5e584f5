//! Evidence bundles: what an auditor needs to check a tenant's chains, checkpoints,
//! deletions and coverage without Rainlogs' code (`rainlogs evidence export`,
//! docs/CHAIN.md "Evidence bundle").
//!
//! A bundle is a directory of JSON and JSON-lines files plus the documents that define
//! them (docs/CHAIN.md, docs/VERIFY.md, docs/RETENTION.md, embedded in the binary that
//! wrote it, so they describe exactly its formats). `docs/tools/chain_check.py`,
//! written from docs/CHAIN.md alone, checks one. Reading is paged: memory is bounded by
//! one page of links or windows; the files are streamed.
//!
//! [`Bundle`] is the in-memory form the conformance bundle is generated from; the
//! export streams the same records from Postgres and the bucket.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::chain::{self, ChainKey};
use crate::checkpoint;
use rainlogs_core::db::DbError;
use rainlogs_core::storage::{ObjectStore, StorageError};
use rainlogs_sealed::kms::KeyError;

/// The manifest's `format`.
pub const FORMAT: &str = "rainlogs.evidence.v1";

/// The documents every bundle carries, as this build has them.
pub const DOCS: [(&str, &str); 3] = [
    ("CHAIN.md", include_str!("../../../docs/CHAIN.md")),
    ("VERIFY.md", include_str!("../../../docs/VERIFY.md")),
    ("RETENTION.md", include_str!("../../../docs/RETENTION.md")),
];

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub created_at: DateTime<Utc>,
    pub tenant_id: Uuid,
    pub tenant_name: String,
    /// The instant receipts are judged at (retention in force is the zone's, below).
    pub zones: Vec<ZoneEvidence>,
    /// Whether `chain-keys/` holds the tenant's chain keys (only when the operator
    /// asked: `--include-chain-key`).
    pub chain_keys_included: bool,
    /// Whether `objects/` holds copies of the archive objects (`--with-objects`).
    pub objects_included: bool,
}

/// One zone's entry in the manifest: the rules in force when the bundle was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneEvidence {
    pub zone_id: Uuid,
    pub name: String,
    /// Retention in force (the zone's override, else the tenant's), in days of 24 h.
    pub retention_days: i32,
    /// A legal hold on the tenant or the zone is in force.
    pub legal_hold: bool,
    /// When the audit log shows the hold was set (`null`: no audit row says).
    pub hold_since: Option<DateTime<Utc>>,
    pub links: u64,
    pub windows: u64,
    pub receipts: u64,
    pub checkpoints: u64,
    pub objects: u64,
}

/// One line of `zones/{zone}/chain.jsonl`: a link with its window's bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    pub seq: i64,
    pub window_id: i64,
    pub version: i16,
    pub key_version: Option<i32>,
    pub window_start_us: i64,
    pub window_end_us: i64,
    pub prev_hash: String,
    pub link_hash: String,
    pub object_sha256: Option<String>,
    pub plaintext_sha256: Option<String>,
    pub record_count: i64,
}

/// One line of `zones/{zone}/windows.jsonl`: a window, its state and catalog row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowRecord {
    pub window_id: i64,
    pub start_us: i64,
    pub end_us: i64,
    pub state: String,
    pub object_key: Option<String>,
    pub size_bytes: Option<i64>,
    pub object_sha256: Option<String>,
}

/// One line of `zones/{zone}/receipts.jsonl`: a deletion receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptRecord {
    pub id: i64,
    pub run_id: Uuid,
    pub rule: String,
    pub window_id: Option<i64>,
    pub object_key: String,
    pub object_sha256: Option<String>,
    pub size_bytes: Option<i64>,
    pub deleted_at_us: i64,
}

/// One line of `zones/{zone}/objects.jsonl`: an object the bucket listing holds under
/// the zone's archive prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub key: String,
    pub size: u64,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("evidence: {what} {path}: {reason}")]
    Io {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("evidence: --include-chain-key needs the kms (master keyring)")]
    NoKms,
    #[error("evidence: output directory {0} exists and is not empty")]
    OutNotEmpty(PathBuf),
    #[error("evidence: zone {zone:?} is not a zone of tenant {tenant:?}")]
    NotOfTenant { zone: String, tenant: String },
    #[error(transparent)]
    Tenant(#[from] crate::catalog::tenant::TenantError),
    #[error(transparent)]
    Zone(#[from] crate::catalog::zone::ZoneError),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl Fn(std::io::Error) -> EvidenceError + 'a {
    move |e| EvidenceError::Io {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// A bundle being written: files under `root`.
pub struct BundleWriter {
    root: PathBuf,
}

impl BundleWriter {
    /// Creates `root` (refusing a non-empty directory) and writes the documents.
    pub fn create(root: &Path) -> Result<Self, EvidenceError> {
        if root.exists()
            && std::fs::read_dir(root)
                .map_err(io("read", root))?
                .next()
                .is_some()
        {
            return Err(EvidenceError::OutNotEmpty(root.to_owned()));
        }
        let w = Self {
            root: root.to_owned(),
        };
        for (name, text) in DOCS {
            w.file(&format!("docs/{name}"), text.as_bytes())?;
        }
        Ok(w)
    }

    /// Writes `rel` (creating its directory).
    pub fn file(&self, rel: &str, bytes: &[u8]) -> Result<(), EvidenceError> {
        let path = self.root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io("create directory", dir))?;
        }
        std::fs::write(&path, bytes).map_err(io("write", &path))
    }

    /// A JSON-lines file to append records to.
    pub fn lines(&self, rel: &str) -> Result<Lines, EvidenceError> {
        let path = self.root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io("create directory", dir))?;
        }
        let f = std::fs::File::create(&path).map_err(io("create", &path))?;
        Ok(Lines {
            out: std::io::BufWriter::new(f),
            path,
            count: 0,
        })
    }

    /// Writes a chain key file (`chain-keys/{tenant}_v{version}.json`, mode 0600).
    pub fn chain_key(&self, key: &ChainKey) -> Result<(), EvidenceError> {
        let rel = format!("chain-keys/{}_v{}.json", key.tenant, key.version);
        self.file(&rel, key.to_key_file().as_bytes())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = self.root.join(&rel);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(io("restrict", &path))?;
        }
        Ok(())
    }

    pub fn manifest(&self, m: &Manifest) -> Result<(), EvidenceError> {
        let text = serde_json::to_vec_pretty(m).unwrap_or_default();
        self.file("manifest.json", &text)
    }
}

/// An open JSON-lines file.
pub struct Lines {
    out: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
    count: u64,
}

impl Lines {
    pub fn push<T: Serialize>(&mut self, record: &T) -> Result<(), EvidenceError> {
        let line = serde_json::to_string(record).unwrap_or_default();
        writeln!(self.out, "{line}").map_err(io("write", &self.path))?;
        self.count += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<u64, EvidenceError> {
        self.out.flush().map_err(io("write", &self.path))?;
        Ok(self.count)
    }
}

/// What to export.
#[derive(Debug, Clone, Default)]
pub struct ExportRequest {
    /// Tenant name or id.
    pub tenant: String,
    /// One zone only (Rainlogs id, Cloudflare zone id or name).
    pub zone: Option<String>,
    pub out: PathBuf,
    /// Copy the tenant's chain keys into the bundle (needs the kms).
    pub include_chain_key: bool,
    /// Copy every archive object of the zones into `objects/`.
    pub with_objects: bool,
    /// Who exports (the `evidence.export` audit row's actor).
    pub actor: String,
}

const PAGE: i64 = 1000;

fn hex_opt(v: Option<Vec<u8>>) -> Option<String> {
    v.map(hex::encode)
}

/// Writes the bundle `req` asks for; returns its manifest. Chain keys come from
/// `kms` (the operator's explicit `--include-chain-key`; audited by the kms).
pub async fn export(
    pool: &PgPool,
    store: &ObjectStore,
    kms: Option<&dyn rainlogs_sealed::kms::Kms>,
    req: &ExportRequest,
    now: DateTime<Utc>,
) -> Result<Manifest, EvidenceError> {
    let tenant = crate::catalog::tenant::resolve(pool, &req.tenant).await?;
    let zone = match &req.zone {
        None => None,
        Some(z) => Some(crate::catalog::zone::resolve(pool, z).await?),
    };
    let tenant_name = sqlx::query_scalar!("SELECT name FROM tenants WHERE id = $1", tenant)
        .fetch_one(pool)
        .await
        .map_err(|e| DbError::query("read tenant for evidence", e))?;
    let zones = sqlx::query!(
        r#"SELECT z.id, z.name, coalesce(z.retention_days, t.retention_days) AS "retention_days!",
                  (z.legal_hold OR t.legal_hold) AS "held!",
                  (SELECT max(e.at) FROM audit_events e
                   WHERE ((e.operation = 'tenant.set' AND e.tenant_id = t.id)
                          OR (e.operation = 'zone.set' AND e.zone_id = z.id))
                     AND e.detail->'legal_hold'->>'to' = 'true'
                     AND e.detail->'legal_hold'->>'from' = 'false') AS hold_since
           FROM zones z JOIN tenants t ON t.id = z.tenant_id
           WHERE z.tenant_id = $1 AND ($2::uuid IS NULL OR z.id = $2)
           ORDER BY z.name, z.id"#,
        tenant,
        zone,
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("list zones for evidence", e))?;
    if zones.is_empty() && zone.is_some() {
        return Err(EvidenceError::NotOfTenant {
            zone: req.zone.clone().unwrap_or_default(),
            tenant: req.tenant.clone(),
        });
    }
    let w = BundleWriter::create(&req.out)?;
    let mut manifest = Manifest {
        format: FORMAT.into(),
        created_at: now,
        tenant_id: tenant,
        tenant_name,
        zones: Vec::new(),
        chain_keys_included: false,
        objects_included: req.with_objects,
    };
    let mut key_versions = std::collections::BTreeSet::new();
    for z in zones {
        let dir = format!("zones/{}", z.id);
        // Chain links, paged by seq.
        let mut links = w.lines(&format!("{dir}/chain.jsonl"))?;
        let mut after = -1i64;
        loop {
            let page = chain::links_page(pool, z.id, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for l in page {
                if let Some(v) = l.key_version {
                    key_versions.insert(v);
                }
                links.push(&LinkRecord {
                    seq: l.seq,
                    window_id: l.window_id,
                    version: l.version,
                    key_version: l.key_version,
                    window_start_us: l.start_at.timestamp_micros(),
                    window_end_us: l.end_at.timestamp_micros(),
                    prev_hash: hex::encode(&l.prev_hash),
                    link_hash: hex::encode(&l.link_hash),
                    object_sha256: hex_opt(l.object_sha256),
                    plaintext_sha256: hex_opt(l.plaintext_sha256),
                    record_count: l.record_count,
                })?;
            }
        }
        let links = links.finish()?;
        // Windows with their catalog rows, paged by id.
        let mut windows = w.lines(&format!("{dir}/windows.jsonl"))?;
        let mut after = 0i64;
        loop {
            let page = sqlx::query!(
                r#"SELECT w.id, w.start_at, w.end_at, w.state::text AS "state!",
                          a.object_key AS "object_key?", a.size_bytes AS "size_bytes?",
                          a.object_sha256 AS "object_sha256?"
                   FROM windows w LEFT JOIN archived_objects a ON a.window_id = w.id
                   WHERE w.zone_id = $1 AND w.id > $2 ORDER BY w.id LIMIT $3"#,
                z.id,
                after,
                PAGE
            )
            .fetch_all(pool)
            .await
            .map_err(|e| DbError::query("read windows for evidence", e))?;
            let Some(last) = page.last() else { break };
            after = last.id;
            for r in page {
                windows.push(&WindowRecord {
                    window_id: r.id,
                    start_us: r.start_at.timestamp_micros(),
                    end_us: r.end_at.timestamp_micros(),
                    state: r.state,
                    object_key: r.object_key,
                    size_bytes: r.size_bytes,
                    object_sha256: hex_opt(r.object_sha256),
                })?;
            }
        }
        let windows = windows.finish()?;
        // Deletion receipts of the zone, paged by id.
        let mut receipts = w.lines(&format!("{dir}/receipts.jsonl"))?;
        let mut after = 0i64;
        loop {
            let page = sqlx::query!(
                "SELECT id, run_id, rule, window_id, object_key, object_sha256, size_bytes,
                        deleted_at
                 FROM deletion_receipts WHERE zone_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                z.id,
                after,
                PAGE
            )
            .fetch_all(pool)
            .await
            .map_err(|e| DbError::query("read receipts for evidence", e))?;
            let Some(last) = page.last() else { break };
            after = last.id;
            for r in page {
                receipts.push(&ReceiptRecord {
                    id: r.id,
                    run_id: r.run_id,
                    rule: r.rule,
                    window_id: r.window_id,
                    object_key: r.object_key,
                    object_sha256: hex_opt(r.object_sha256),
                    size_bytes: r.size_bytes,
                    deleted_at_us: r.deleted_at.timestamp_micros(),
                })?;
            }
        }
        let receipts = receipts.finish()?;
        // Checkpoints: the bucket objects, byte for byte.
        let mut checkpoints = 0u64;
        let mut token = None;
        let prefix = checkpoint::zone_prefix(tenant, z.id);
        loop {
            let (page, next) = store.list_page(&prefix, token, 1000).await?;
            for o in page {
                let body = store.get(&o.key).await?;
                let name = o.key.rsplit('/').next().unwrap_or_default();
                w.file(&format!("{dir}/checkpoints/{name}"), &body)?;
                checkpoints += 1;
            }
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        // The bucket's archive objects of the zone: listed, copied on request.
        let mut objects = w.lines(&format!("{dir}/objects.jsonl"))?;
        let mut token = None;
        let prefix = format!("archive/{tenant}/{}/", z.id);
        loop {
            let (page, next) = store.list_page(&prefix, token, 1000).await?;
            for o in page {
                // Full bucket keys, as the catalog (windows.jsonl) records them.
                let key = store.full_key(&o.key);
                if req.with_objects {
                    let body = store.get(&o.key).await?;
                    w.file(&format!("objects/{key}"), &body)?;
                }
                objects.push(&ObjectRecord { key, size: o.size })?;
            }
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        let objects = objects.finish()?;
        manifest.zones.push(ZoneEvidence {
            zone_id: z.id,
            name: z.name,
            retention_days: z.retention_days,
            legal_hold: z.held,
            hold_since: z.hold_since,
            links,
            windows,
            receipts,
            checkpoints,
            objects,
        });
    }
    let mut exported = Vec::new();
    if req.include_chain_key {
        let kms = kms.ok_or(EvidenceError::NoKms)?;
        for v in key_versions {
            let Ok(v) = u32::try_from(v) else { continue };
            w.chain_key(&kms.chain_key(tenant, Some(v)).await?)?;
            exported.push(v);
        }
        manifest.chain_keys_included = true;
    }
    w.manifest(&manifest)?;
    // A bundle with chain keys lets its holder forge links of this tenant: every
    // export is audited, naming the key versions it carried.
    let event = crate::audit::AuditEvent {
        tenant: Some(tenant),
        detail: serde_json::json!({
            "out": req.out.display().to_string(),
            "zones": manifest.zones.len(),
            "chain_key_versions": exported,
            "objects_included": req.with_objects,
        }),
        ..crate::audit::AuditEvent::new(&req.actor, "evidence.export", "ok")
    };
    crate::audit::record(pool, &event)
        .await
        .map_err(|e| DbError::query("audit evidence export", e))?;
    Ok(manifest)
}

/// The committed vectors and conformance bundle (docs/tools/chain_vectors/), generated
/// from one fixed scenario. The test compares what it generates with the committed
/// files byte for byte; `RAINLOGS_BLESS=1` rewrites them after a deliberate change.
#[cfg(test)]
mod fixtures {
    use super::*;
    use crate::chain::{genesis_hash, link_hash, link_input_v1, link_input_v2, link_mac};
    use crate::chain::{LinkContent, LinkInput};
    use crate::checkpoint::Checkpoint;
    use chrono::TimeZone;
    use rainlogs_sealed::kms::{SecretKey, TenantKey, CHAIN_KEY_LABEL};
    use sha2::{Digest, Sha256};
    use std::collections::BTreeMap;

    const TENANT: Uuid = Uuid::from_u128(0x7e7a_0000_0000_4000_8000_0000_0000_0001);
    const ZONE: Uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);

    fn t(m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 8, m, 0).unwrap()
    }

    fn tenant_key() -> TenantKey {
        TenantKey::new(TENANT, 1, SecretKey::from_bytes([0x11; 32]))
    }

    fn chain_key() -> ChainKey {
        ChainKey::derive(&tenant_key())
    }

    fn object(n: u8) -> Vec<u8> {
        // Stand-ins for sealed objects: a checker only hashes them. Equal lengths, so a
        // swap changes hashes, not sizes.
        (0..64u8)
            .map(|i| i.wrapping_mul(31).wrapping_add(n))
            .collect()
    }

    struct Scenario {
        links: Vec<LinkRecord>,
        windows: Vec<WindowRecord>,
        receipts: Vec<ReceiptRecord>,
        objects: BTreeMap<String, Vec<u8>>,
        checkpoints: Vec<Checkpoint>,
    }

    /// w1 empty (v1), w2 archived (v1), w3 archived (v2, the switch), w4 empty (v2),
    /// w5 pruned (v2, receipt past retention), w6 archived after a re-seal (v2);
    /// a checkpoint at seq 5. Retention 30 days.
    fn scenario() -> Scenario {
        let key = chain_key();
        // (state, has object, version)
        let plan = [
            ("empty", false, 1),
            ("archived", true, 1),
            ("archived", true, 2),
            ("empty", false, 2),
            ("pruned", true, 2),
            ("archived", true, 2),
        ];
        let mut s = Scenario {
            links: vec![],
            windows: vec![],
            receipts: vec![],
            objects: BTreeMap::new(),
            checkpoints: vec![],
        };
        let mut prev = genesis_hash(ZONE);
        for (i, (state, has_object, version)) in plan.into_iter().enumerate() {
            let (id, seq) = (i as i64 + 1, i as u64);
            let (start, end) = (t(i as u32), t(i as u32 + 1));
            let bytes = object(i as u8);
            let key_name = crate::pipeline::archive_key(TENANT, ZONE, start, end);
            let content = if has_object {
                LinkContent::Archived {
                    object_sha256: Sha256::digest(&bytes).into(),
                    plaintext_sha256: Sha256::digest([i as u8]).into(),
                    record_count: 10 + seq,
                }
            } else {
                LinkContent::Empty
            };
            let input = LinkInput {
                zone_id: ZONE,
                window_start: start,
                window_end: end,
                content,
            };
            let hash = if version == 1 {
                link_hash(&input, seq, &prev)
            } else {
                link_mac(&key, &input, seq, &prev)
            };
            let (o, p, r) = match content {
                LinkContent::Archived {
                    object_sha256,
                    plaintext_sha256,
                    record_count,
                } => (
                    Some(hex::encode(object_sha256)),
                    Some(hex::encode(plaintext_sha256)),
                    record_count as i64,
                ),
                LinkContent::Empty => (None, None, 0),
            };
            s.links.push(LinkRecord {
                seq: seq as i64,
                window_id: id,
                version,
                key_version: (version == 2).then_some(1),
                window_start_us: start.timestamp_micros(),
                window_end_us: end.timestamp_micros(),
                prev_hash: hex::encode(prev),
                link_hash: hex::encode(hash),
                object_sha256: o.clone(),
                plaintext_sha256: p,
                record_count: r,
            });
            s.windows.push(WindowRecord {
                window_id: id,
                start_us: start.timestamp_micros(),
                end_us: end.timestamp_micros(),
                state: state.into(),
                object_key: has_object.then(|| key_name.clone()),
                size_bytes: has_object.then_some(bytes.len() as i64),
                object_sha256: o.clone(),
            });
            if state == "archived" {
                s.objects.insert(key_name.clone(), bytes);
            }
            if state == "pruned" {
                s.receipts.push(ReceiptRecord {
                    id: 1,
                    run_id: Uuid::from_u128(0x5eed),
                    rule: "retention:30d".into(),
                    window_id: Some(id),
                    object_key: key_name,
                    object_sha256: o,
                    size_bytes: Some(64),
                    deleted_at_us: (end + chrono::TimeDelta::days(31)).timestamp_micros(),
                });
            }
            prev = hash;
        }
        s.checkpoints.push(Checkpoint::new(
            &key,
            ZONE,
            5,
            &prev,
            Some(2),
            Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap(),
        ));
        s
    }

    fn jsonl<T: Serialize>(rows: &[T]) -> String {
        rows.iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect()
    }

    /// The files of a bundle of `s`, by relative path.
    fn bundle(s: &Scenario, expected: serde_json::Value) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        let dir = format!("zones/{ZONE}");
        let manifest = Manifest {
            format: FORMAT.into(),
            created_at: Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap(),
            tenant_id: TENANT,
            tenant_name: "conformance".into(),
            zones: vec![ZoneEvidence {
                zone_id: ZONE,
                name: "conformance.example".into(),
                retention_days: 30,
                legal_hold: false,
                hold_since: None,
                links: s.links.len() as u64,
                windows: s.windows.len() as u64,
                receipts: s.receipts.len() as u64,
                checkpoints: s.checkpoints.len() as u64,
                objects: s.objects.len() as u64,
            }],
            chain_keys_included: true,
            objects_included: true,
        };
        let mut put = |k: String, v: Vec<u8>| {
            files.insert(k, v);
        };
        put(
            "manifest.json".into(),
            serde_json::to_vec_pretty(&manifest).unwrap(),
        );
        put(format!("{dir}/chain.jsonl"), jsonl(&s.links).into_bytes());
        put(
            format!("{dir}/windows.jsonl"),
            jsonl(&s.windows).into_bytes(),
        );
        put(
            format!("{dir}/receipts.jsonl"),
            jsonl(&s.receipts).into_bytes(),
        );
        let listing: Vec<ObjectRecord> = s
            .objects
            .iter()
            .map(|(k, v)| ObjectRecord {
                key: k.clone(),
                size: v.len() as u64,
            })
            .collect();
        put(format!("{dir}/objects.jsonl"), jsonl(&listing).into_bytes());
        for (k, v) in &s.objects {
            put(format!("objects/{k}"), v.clone());
        }
        for c in &s.checkpoints {
            put(
                format!("{dir}/checkpoints/{:020}.json", c.seq),
                serde_json::to_vec_pretty(c).unwrap(),
            );
        }
        put(
            format!("chain-keys/{TENANT}_v1.json"),
            chain_key().to_key_file().as_bytes().to_vec(),
        );
        put(
            "expected.json".into(),
            serde_json::to_vec_pretty(&expected).unwrap(),
        );
        files
    }

    fn finding(kind: &str, window_id: Option<i64>, seq: Option<i64>) -> serde_json::Value {
        serde_json::json!({"type": kind, "zone_id": ZONE, "window_id": window_id, "seq": seq})
    }

    /// Every conformance bundle: name → files.
    fn conformance() -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
        let mut out = BTreeMap::new();
        let expect = |f: Vec<serde_json::Value>| serde_json::json!({ "findings": f });
        out.insert("clean".into(), bundle(&scenario(), expect(vec![])));

        let mut s = scenario();
        s.links[2].record_count += 1;
        out.insert(
            "link_edited".into(),
            bundle(
                &s,
                expect(vec![finding("chain_link_broken", Some(3), Some(2))]),
            ),
        );

        let mut s = scenario();
        let keys: Vec<String> = s.objects.keys().cloned().collect();
        let (a, b) = (s.objects[&keys[1]].clone(), s.objects[&keys[2]].clone());
        s.objects.insert(keys[1].clone(), b);
        s.objects.insert(keys[2].clone(), a);
        out.insert(
            "object_swapped".into(),
            bundle(
                &s,
                expect(vec![
                    finding("object_hash_mismatch", Some(3), None),
                    finding("object_hash_mismatch", Some(6), None),
                ]),
            ),
        );

        let mut s = scenario();
        s.receipts[0].deleted_at_us = t(30).timestamp_micros();
        out.insert(
            "receipt_inside_retention".into(),
            bundle(
                &s,
                expect(vec![finding("receipt_inside_retention", Some(5), None)]),
            ),
        );

        let mut s = scenario();
        s.objects.insert(
            crate::pipeline::archive_key(TENANT, ZONE, t(3), t(4)),
            object(3),
        );
        out.insert(
            "object_for_empty_window".into(),
            bundle(
                &s,
                expect(vec![finding("object_unexpected", Some(4), None)]),
            ),
        );

        // An attacker without keys rewrites links 2..=5 as plain SHA-256 (version 1),
        // consistently, with an edited record count.
        let mut s = scenario();
        let mut prev: [u8; 32] = hex::decode(&s.links[1].link_hash)
            .unwrap()
            .try_into()
            .unwrap();
        for l in s.links.iter_mut().skip(2) {
            if l.seq == 2 {
                l.record_count += 1;
            }
            l.version = 1;
            l.key_version = None;
            l.prev_hash = hex::encode(prev);
            let content = match &l.object_sha256 {
                Some(o) => LinkContent::Archived {
                    object_sha256: hex::decode(o).unwrap().try_into().unwrap(),
                    plaintext_sha256: hex::decode(l.plaintext_sha256.as_ref().unwrap())
                        .unwrap()
                        .try_into()
                        .unwrap(),
                    record_count: l.record_count as u64,
                },
                None => LinkContent::Empty,
            };
            let input = LinkInput {
                zone_id: ZONE,
                window_start: Utc.timestamp_micros(l.window_start_us).unwrap(),
                window_end: Utc.timestamp_micros(l.window_end_us).unwrap(),
                content,
            };
            prev = link_hash(&input, l.seq as u64, &prev);
            l.link_hash = hex::encode(prev);
        }
        out.insert(
            "rewritten_unkeyed".into(),
            bundle(
                &s,
                expect(vec![
                    finding("chain_unkeyed", None, Some(2)),
                    finding("checkpoint_mismatch", Some(6), Some(5)),
                ]),
            ),
        );

        let mut s = scenario();
        s.links.pop();
        out.insert(
            "truncated".into(),
            bundle(
                &s,
                expect(vec![
                    finding("link_missing", Some(6), None),
                    finding("chain_behind_checkpoint", None, Some(5)),
                ]),
            ),
        );
        out
    }

    fn vectors() -> serde_json::Value {
        let s = scenario();
        let mut v = vec![
            serde_json::json!({
                "name": "genesis", "kind": "genesis", "zone_id": ZONE,
                "input_hex": hex::encode([&b"rainlogs.chain.v1.genesis"[..], ZONE.as_bytes()].concat()),
                "expected_hex": hex::encode(genesis_hash(ZONE)),
            }),
            serde_json::json!({
                "name": "chain key of tenant key version 1", "kind": "chain_key",
                "tenant_key_hex": hex::encode([0x11u8; 32]),
                "input_hex": hex::encode(CHAIN_KEY_LABEL),
                "expected_hex": chain_key_hex(),
            }),
        ];
        let names = [
            "v1 empty (seq 0, genesis prev)",
            "v1 archived",
            "v2 archived (the switch: prev is the last v1 hash)",
            "v2 empty",
            "v2 pruned (hashes what it hashed when archived)",
            "v2 archived after a re-seal (the stored object's hashes)",
        ];
        for (l, name) in s.links.iter().zip(names) {
            let content = match &l.object_sha256 {
                Some(o) => LinkContent::Archived {
                    object_sha256: hex::decode(o).unwrap().try_into().unwrap(),
                    plaintext_sha256: hex::decode(l.plaintext_sha256.as_ref().unwrap())
                        .unwrap()
                        .try_into()
                        .unwrap(),
                    record_count: l.record_count as u64,
                },
                None => LinkContent::Empty,
            };
            let input = LinkInput {
                zone_id: ZONE,
                window_start: Utc.timestamp_micros(l.window_start_us).unwrap(),
                window_end: Utc.timestamp_micros(l.window_end_us).unwrap(),
                content,
            };
            let prev: [u8; 32] = hex::decode(&l.prev_hash).unwrap().try_into().unwrap();
            let bytes = if l.version == 1 {
                link_input_v1(&input, l.seq as u64, &prev)
            } else {
                link_input_v2(&input, 1, l.seq as u64, &prev)
            };
            let mut entry = serde_json::json!({
                "name": name, "kind": "link", "zone_id": ZONE, "link": l,
                "input_hex": hex::encode(bytes), "expected_hex": l.link_hash,
            });
            if l.version == 2 {
                entry["chain_key_hex"] = chain_key_hex().into();
            }
            v.push(entry);
        }
        // The same pruned window as version 1, for implementations checking old chains.
        let pruned = &s.links[4];
        let prev: [u8; 32] = hex::decode(&pruned.prev_hash).unwrap().try_into().unwrap();
        let input = LinkInput {
            zone_id: ZONE,
            window_start: t(4),
            window_end: t(5),
            content: LinkContent::Archived {
                object_sha256: hex::decode(pruned.object_sha256.as_ref().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap(),
                plaintext_sha256: hex::decode(pruned.plaintext_sha256.as_ref().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap(),
                record_count: pruned.record_count as u64,
            },
        };
        let mut v1 = pruned.clone();
        v1.version = 1;
        v1.key_version = None;
        v1.link_hash = hex::encode(link_hash(&input, 4, &prev));
        v.push(serde_json::json!({
            "name": "v1 pruned", "kind": "link", "zone_id": ZONE, "link": v1,
            "input_hex": hex::encode(link_input_v1(&input, 4, &prev)),
            "expected_hex": v1.link_hash,
        }));
        let c = &s.checkpoints[0];
        v.push(serde_json::json!({
            "name": "checkpoint at seq 5", "kind": "checkpoint", "checkpoint": c,
            "chain_key_hex": chain_key_hex(),
            "input_hex": hex::encode(c.mac_input().unwrap()),
            "expected_hex": c.mac,
        }));
        serde_json::json!({
            "format": "rainlogs.chain-vectors.v1",
            "spec": "docs/CHAIN.md version 2",
            "vectors": v,
        })
    }

    fn chain_key_hex() -> String {
        // The chain key itself, for the vectors only (a fixed test tenant key).
        chain_key().to_hex().to_string()
    }

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/tools/chain_vectors")
    }

    #[test]
    fn committed_vectors_and_conformance_bundle_match() {
        let mut files: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
        files.insert(
            root().join("vectors.json"),
            serde_json::to_vec_pretty(&vectors()).unwrap(),
        );
        for (name, bundle) in conformance() {
            for (rel, bytes) in bundle {
                files.insert(root().join("conformance").join(&name).join(rel), bytes);
            }
        }
        let bless = std::env::var_os("RAINLOGS_BLESS").is_some();
        let mut stale = Vec::new();
        for (path, bytes) in &files {
            if bless {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, bytes).unwrap();
            } else if std::fs::read(path).ok().as_deref() != Some(&bytes[..]) {
                stale.push(path.display().to_string());
            }
        }
        assert!(
            stale.is_empty(),
            "committed chain vectors differ from the code (RAINLOGS_BLESS=1 rewrites them after a deliberate format change): {stale:?}"
        );
    }

    #[test]
    fn known_v1_vector_is_unchanged() {
        // The version-1 vector docs/CHAIN.md has always given: old chains still verify.
        let input = LinkInput {
            zone_id: ZONE,
            window_start: t(0),
            window_end: t(1),
            content: LinkContent::Empty,
        };
        assert_eq!(
            hex::encode(link_hash(&input, 0, &genesis_hash(ZONE))),
            "9d30d714f99b2339a4f67b02efbf3149ea4e531649ea833e7476408d0656d423"
        );
    }
}
