//! Integrity verification: what `rainlogs verify` and the periodic `verify.sample` task
//! check, and the typed [`Finding`]s they report.
//!
//! Per zone: the hash chain link by link (every break, not only the first), each
//! window in range against its catalog row, its link and its object (exists, recorded
//! size and SHA-256; deep: decrypts, checks the header's context is this tenant, zone and
//! window, and the plaintext SHA-256, length and record count), pruned windows (object
//! gone, deletion receipt present when receipts exist), and coverage (every stretch of
//! time archived, empty or pruned; failed windows, windows in flight and time without a
//! window are gaps). Windows and links are read in pages and objects are streamed, so
//! memory stays bounded however large the archive is; findings go to a callback as they
//! are found. Operational failures (Postgres or S3 unreachable) are errors, not
//! findings: a verification that could not look has not found anything.
//!
//! docs/VERIFY.md documents every finding and the JSON report.

pub mod bucket;
pub mod overlap;
pub mod run;

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::chain::{self, ChainBreak, ChainChecker, ChainKeys};
use crate::checkpoint;
use crate::coverage::{Cover, CoverageWalk};
use rainlogs_core::db::DbError;
use rainlogs_core::error::{ErrorClass, TaskError};
use rainlogs_core::storage::{ObjectStore, StorageError};
use rainlogs_sealed::kms::Kms;
use rainlogs_sealed::SealContext;

/// The dataset Logpull serves, so the dataset of every pulled window.
pub const PULL_DATASET: &str = "http_requests";
/// Windows read per page.
pub const WINDOW_PAGE: i64 = 500;
/// Objects checked at once.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// The window a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowRef {
    pub zone_id: Uuid,
    pub window_id: i64,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
}

impl std::fmt::Display for WindowRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "zone {} window {} [{}, {})",
            self.zone_id,
            self.window_id,
            self.window_start.format("%Y-%m-%dT%H:%M:%SZ"),
            self.window_end.format("%Y-%m-%dT%H:%M:%SZ")
        )
    }
}

/// One thing wrong with the archive, naming exactly where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Finding {
    /// Chain links are missing: seqs `missing_from..=missing_to` do not exist before
    /// the link at `seq`.
    ChainGap {
        #[serde(flatten)]
        window: WindowRef,
        seq: i64,
        missing_from: i64,
        missing_to: i64,
    },
    /// A link whose `prev_hash` is not the previous link's hash, whose hash does not
    /// recompute from its window and columns, or whose columns are malformed.
    ChainLinkBroken {
        #[serde(flatten)]
        window: WindowRef,
        seq: i64,
        /// `prev_hash_mismatch`, `hash_mismatch` or `malformed`.
        reason: String,
        detail: String,
    },
    /// A window in a final state (archived, empty, pruned) without a chain link.
    LinkMissing {
        #[serde(flatten)]
        window: WindowRef,
        state: String,
    },
    /// A link whose kind disagrees with the window: an empty link on an archived or
    /// pruned window, an archived link on an empty one, or any link on a window that is
    /// not final.
    LinkStateMismatch {
        #[serde(flatten)]
        window: WindowRef,
        seq: i64,
        state: String,
        link_kind: String,
    },
    /// An archived or pruned window without its catalog row (`archived_objects`).
    CatalogRowMissing {
        #[serde(flatten)]
        window: WindowRef,
        state: String,
    },
    /// A catalog row on a window that should have no object (empty, failed, in flight).
    CatalogRowUnexpected {
        #[serde(flatten)]
        window: WindowRef,
        state: String,
        object_key: String,
    },
    /// The catalog row and the chain link disagree (a catalog row was edited, or the
    /// link was): the fields that differ.
    CatalogLinkMismatch {
        #[serde(flatten)]
        window: WindowRef,
        object_key: String,
        seq: i64,
        fields: Vec<String>,
    },
    /// The catalog's key is not the window's deterministic archive key.
    ObjectKeyMismatch {
        #[serde(flatten)]
        window: WindowRef,
        object_key: String,
        expected_key: String,
    },
    /// An archived window's object is not in the bucket.
    ObjectMissing {
        #[serde(flatten)]
        window: WindowRef,
        object_key: String,
    },
    /// The object's size differs from the catalog's.
    ObjectSizeMismatch {
        #[serde(flatten)]
        window: WindowRef,
        object_key: String,
        expected: u64,
        actual: u64,
    },
    /// The object's SHA-256 differs from the catalog's. `matches_link` says whether it
    /// equals the chain link's object hash instead (then the catalog was edited).
    ObjectHashMismatch {
        #[serde(flatten)]
        window: WindowRef,
        object_key: String,
        expected_sha256: String,
        actual_sha256: String,
        matches_link: bool,
    },
    /// Deep: the object's header binds another tenant, zone or window (e.g. another
    /// window's valid object copied over this one).
    HeaderContextMismatch {
        #[serde(flatten)]
        window: WindowRef,
        object_key: String,
        code: String,
        detail: String,
    },
    /// Deep: the object does not open (tampered chunk, header, truncation, wrong key…).
    ObjectUnreadable {
        #[serde(flatten)]
        window: WindowRef,
        object_key: String,
        code: String,
        detail: String,
    },
    /// Deep: the decrypted content differs from what the catalog and link record.
    PlaintextMismatch {
        #[serde(flatten)]
        window: WindowRef,
        object_key: String,
        /// `sha256`, `length` or `record_count`.
        what: String,
        expected: String,
        actual: String,
    },
    /// A pruned window's object is still in the bucket.
    PrunedObjectPresent {
        #[serde(flatten)]
        window: WindowRef,
        object_key: String,
        size: u64,
    },
    /// A pruned window without a deletion receipt.
    PrunedWithoutReceipt {
        #[serde(flatten)]
        window: WindowRef,
        object_key: Option<String>,
    },
    /// A pruned window's deletion receipt is dated while the window was still inside
    /// the retention in force (zone override, else tenant), counted from its end.
    ReceiptInsideRetention {
        #[serde(flatten)]
        window: WindowRef,
        deleted_at: DateTime<Utc>,
        retention_days: i32,
        retained_until: DateTime<Utc>,
    },
    /// A pruned window's deletion receipt is dated while a legal hold on its tenant or
    /// zone was in force (`hold_since`: when the audit log shows it was set; `null`: no
    /// audit row, the hold is taken to have always applied).
    ReceiptUnderHold {
        #[serde(flatten)]
        window: WindowRef,
        deleted_at: DateTime<Utc>,
        hold_since: Option<DateTime<Utc>>,
    },
    /// A checkpoint object that is not valid: unparseable, another zone's, or its MAC
    /// does not verify under the chain key.
    CheckpointInvalid {
        zone_id: Uuid,
        object_key: String,
        detail: String,
    },
    /// The link at a checkpointed seq is not the one the checkpoint recorded.
    CheckpointMismatch {
        #[serde(flatten)]
        window: WindowRef,
        seq: i64,
        object_key: String,
        checkpoint_hash: String,
        link_hash: String,
    },
    /// The chain ends before a checkpoint's seq: links were cut off its end (or the
    /// database was rolled back).
    ChainBehindCheckpoint {
        zone_id: Uuid,
        tip_seq: Option<i64>,
        checkpoint_seq: u64,
        object_key: String,
    },
    /// A zone with links but no checkpoint although its oldest link is older than the
    /// checkpoint grace: the series outside Postgres is missing.
    CheckpointMissing {
        zone_id: Uuid,
        links: u64,
        oldest_link_at: DateTime<Utc>,
    },
    /// Version-1 (unkeyed) links nothing keyed vouches for: not followed by a keyed
    /// link nor covered by a checkpoint, or after the seq where the oldest checkpoint
    /// says keyed links begin. Anyone who can write to Postgres could have written them.
    ChainUnkeyed {
        zone_id: Uuid,
        from_seq: i64,
        to_seq: i64,
        detail: String,
    },
    /// The chain key of a tenant key version is unavailable (shredded tenant, or not in
    /// the key files given): the MACs of the links under it were not checked.
    ChainKeyUnavailable { zone_id: Uuid, key_version: i32 },
    /// An object under the zone's archive prefix that no catalog row names: a stray,
    /// a second object for a window, an object whose row was deleted, an object for a
    /// window recorded `empty` or `pruned` (`state`). The window fields are set when
    /// the key parses: its span (`window_start`, `window_end`), and the window with
    /// that span or batch when one exists (`window_id`, `state`). The same name and
    /// meaning as docs/tools/chain_check.py's.
    ObjectUnexpected {
        zone_id: Uuid,
        object_key: String,
        size: u64,
        window_id: Option<i64>,
        window_start: Option<DateTime<Utc>>,
        window_end: Option<DateTime<Utc>>,
        state: Option<String>,
    },
    /// Two pulled windows of the zone overlap (the window named is the later one in
    /// time order; `other_*` the earlier window reaching furthest). Pushed batches are
    /// not compared: they may overlap each other and repair windows (docs/VERIFY.md).
    WindowsOverlap {
        #[serde(flatten)]
        window: WindowRef,
        state: String,
        other_window_id: i64,
        other_window_start: DateTime<Utc>,
        other_window_end: DateTime<Utc>,
        other_state: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    /// Two archived pulled windows hold the same time `[from, to)`: the same minutes
    /// archived twice, in two objects.
    ObjectsOverlap {
        #[serde(flatten)]
        window: WindowRef,
        object_key: Option<String>,
        other_window_id: i64,
        other_window_start: DateTime<Utc>,
        other_window_end: DateTime<Utc>,
        other_object_key: Option<String>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    /// A window that ended `failed_permanent`: its time is not archived.
    WindowFailed {
        #[serde(flatten)]
        window: WindowRef,
        last_error: Option<String>,
    },
    /// A window still in flight (planned, fetching, staged, sealed) inside the range.
    WindowInFlight {
        #[serde(flatten)]
        window: WindowRef,
        state: String,
        state_since: DateTime<Utc>,
    },
    /// Time inside the range that no window covers.
    TimeMissing {
        zone_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    /// A push zone: Cloudflare reported the dataset's Logpush job failing over this
    /// period (polled from its jobs API; docs/INGEST.md "Coverage for push"): records
    /// of it may never have been delivered. `to` is `None` while it still fails.
    PushDeliveryFailed {
        zone_id: Uuid,
        dataset: String,
        from: DateTime<Utc>,
        to: Option<DateTime<Utc>>,
        error_message: Option<String>,
    },
    /// A push zone: a destination silent for longer than its job's upload interval
    /// allows although the zone had traffic before.
    PushSilent {
        zone_id: Uuid,
        dataset: String,
        destination: Uuid,
        detail: String,
    },
}

impl Finding {
    /// The finding's type as it appears in the JSON report.
    pub fn kind(&self) -> &'static str {
        match self {
            Finding::ChainGap { .. } => "chain_gap",
            Finding::ChainLinkBroken { .. } => "chain_link_broken",
            Finding::LinkMissing { .. } => "link_missing",
            Finding::LinkStateMismatch { .. } => "link_state_mismatch",
            Finding::CatalogRowMissing { .. } => "catalog_row_missing",
            Finding::CatalogRowUnexpected { .. } => "catalog_row_unexpected",
            Finding::CatalogLinkMismatch { .. } => "catalog_link_mismatch",
            Finding::ObjectKeyMismatch { .. } => "object_key_mismatch",
            Finding::ObjectMissing { .. } => "object_missing",
            Finding::ObjectSizeMismatch { .. } => "object_size_mismatch",
            Finding::ObjectHashMismatch { .. } => "object_hash_mismatch",
            Finding::HeaderContextMismatch { .. } => "header_context_mismatch",
            Finding::ObjectUnreadable { .. } => "object_unreadable",
            Finding::PlaintextMismatch { .. } => "plaintext_mismatch",
            Finding::PrunedObjectPresent { .. } => "pruned_object_present",
            Finding::PrunedWithoutReceipt { .. } => "pruned_without_receipt",
            Finding::ReceiptInsideRetention { .. } => "receipt_inside_retention",
            Finding::ReceiptUnderHold { .. } => "receipt_under_hold",
            Finding::CheckpointInvalid { .. } => "checkpoint_invalid",
            Finding::CheckpointMismatch { .. } => "checkpoint_mismatch",
            Finding::ChainBehindCheckpoint { .. } => "chain_behind_checkpoint",
            Finding::CheckpointMissing { .. } => "checkpoint_missing",
            Finding::ChainUnkeyed { .. } => "chain_unkeyed",
            Finding::ChainKeyUnavailable { .. } => "chain_key_unavailable",
            Finding::ObjectUnexpected { .. } => "object_unexpected",
            Finding::WindowsOverlap { .. } => "windows_overlap",
            Finding::ObjectsOverlap { .. } => "objects_overlap",
            Finding::WindowFailed { .. } => "window_failed",
            Finding::WindowInFlight { .. } => "window_in_flight",
            Finding::TimeMissing { .. } => "time_missing",
            Finding::PushDeliveryFailed { .. } => "push_delivery_failed",
            Finding::PushSilent { .. } => "push_silent",
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = |d: &DateTime<Utc>| d.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        match self {
            Finding::ChainGap {
                window,
                seq,
                missing_from,
                missing_to,
            } => write!(
                f,
                "chain gap: links {missing_from}..={missing_to} missing before seq {seq} ({window})"
            ),
            Finding::ChainLinkBroken {
                window,
                seq,
                detail,
                ..
            } => write!(f, "chain link seq {seq} broken: {detail} ({window})"),
            Finding::LinkMissing { window, state } => {
                write!(f, "{state} window has no chain link: {window}")
            }
            Finding::LinkStateMismatch {
                window,
                seq,
                state,
                link_kind,
            } => write!(
                f,
                "{state} window has a {link_kind} chain link (seq {seq}): {window}"
            ),
            Finding::CatalogRowMissing { window, state } => {
                write!(f, "{state} window has no catalog row: {window}")
            }
            Finding::CatalogRowUnexpected {
                window,
                state,
                object_key,
            } => write!(
                f,
                "{state} window has a catalog row for {object_key}: {window}"
            ),
            Finding::CatalogLinkMismatch {
                window,
                object_key,
                seq,
                fields,
            } => write!(
                f,
                "catalog row of {object_key} disagrees with chain link seq {seq} on {}: {window}",
                fields.join(", ")
            ),
            Finding::ObjectKeyMismatch {
                window,
                object_key,
                expected_key,
            } => write!(
                f,
                "catalog key {object_key} is not the window's key {expected_key}: {window}"
            ),
            Finding::ObjectMissing { window, object_key } => {
                write!(f, "object {object_key} is missing: {window}")
            }
            Finding::ObjectSizeMismatch {
                window,
                object_key,
                expected,
                actual,
            } => write!(
                f,
                "object {object_key} is {actual} bytes, catalog says {expected}: {window}"
            ),
            Finding::ObjectHashMismatch {
                window,
                object_key,
                expected_sha256,
                actual_sha256,
                matches_link,
            } => write!(
                f,
                "object {object_key} has SHA-256 {actual_sha256}, catalog says {expected_sha256}{}: {window}",
                if *matches_link { " (it matches the chain link: the catalog row was edited)" } else { "" }
            ),
            Finding::HeaderContextMismatch {
                window,
                object_key,
                detail,
                ..
            } => write!(f, "object {object_key} is not this window's: {detail}: {window}"),
            Finding::ObjectUnreadable {
                window,
                object_key,
                detail,
                ..
            } => write!(f, "object {object_key} does not open: {detail}: {window}"),
            Finding::PlaintextMismatch {
                window,
                object_key,
                what,
                expected,
                actual,
            } => write!(
                f,
                "object {object_key} plaintext {what} is {actual}, recorded {expected}: {window}"
            ),
            Finding::PrunedObjectPresent {
                window,
                object_key,
                size,
            } => write!(
                f,
                "pruned window's object {object_key} is still stored ({size} bytes): {window}"
            ),
            Finding::PrunedWithoutReceipt { window, object_key } => write!(
                f,
                "pruned window has no deletion receipt{}: {window}",
                object_key
                    .as_deref()
                    .map(|k| format!(" for {k}"))
                    .unwrap_or_default()
            ),
            Finding::ReceiptInsideRetention {
                window,
                deleted_at,
                retention_days,
                retained_until,
            } => write!(
                f,
                "deletion receipt of {} is inside the {retention_days}-day retention (until {}): {window}",
                t(deleted_at),
                t(retained_until)
            ),
            Finding::ReceiptUnderHold {
                window,
                deleted_at,
                hold_since,
            } => write!(
                f,
                "deletion receipt of {} while a legal hold applies (since {}): {window}",
                t(deleted_at),
                hold_since.as_ref().map(t).unwrap_or_else(|| "always".into())
            ),
            Finding::CheckpointInvalid {
                zone_id,
                object_key,
                detail,
            } => write!(f, "zone {zone_id}: checkpoint {object_key} invalid: {detail}"),
            Finding::CheckpointMismatch {
                window,
                seq,
                object_key,
                checkpoint_hash,
                link_hash,
            } => write!(
                f,
                "chain link seq {seq} has hash {link_hash}, checkpoint {object_key} recorded {checkpoint_hash}: {window}"
            ),
            Finding::ChainBehindCheckpoint {
                zone_id,
                tip_seq,
                checkpoint_seq,
                object_key,
            } => write!(
                f,
                "zone {zone_id}: chain ends at seq {}, behind checkpoint {object_key} (seq {checkpoint_seq})",
                tip_seq.map(|s| s.to_string()).unwrap_or_else(|| "none".into())
            ),
            Finding::CheckpointMissing {
                zone_id,
                links,
                oldest_link_at,
            } => write!(
                f,
                "zone {zone_id}: {links} links since {} but no checkpoint in the bucket",
                t(oldest_link_at)
            ),
            Finding::ChainUnkeyed {
                zone_id,
                from_seq,
                to_seq,
                detail,
            } => write!(
                f,
                "zone {zone_id}: unkeyed links {from_seq}..={to_seq}: {detail}"
            ),
            Finding::ChainKeyUnavailable {
                zone_id,
                key_version,
            } => write!(
                f,
                "zone {zone_id}: chain key of tenant key version {key_version} unavailable: MACs under it not checked"
            ),
            Finding::ObjectUnexpected {
                zone_id,
                object_key,
                size,
                window_id,
                window_start,
                window_end,
                state,
            } => {
                write!(
                    f,
                    "zone {zone_id}: object {object_key} ({size} bytes) has no catalog row"
                )?;
                match (window_id, state, window_start, window_end) {
                    (Some(id), Some(state), _, _) => write!(f, " ({state} window {id} has its span)"),
                    (_, _, Some(s), Some(e)) => write!(
                        f,
                        " (its key names [{}, {}), which no window of the zone has)",
                        t(s),
                        t(e)
                    ),
                    _ => write!(f, " (its key is not an archive key)"),
                }
            }
            Finding::WindowsOverlap {
                window,
                state,
                other_window_id,
                other_state,
                from,
                to,
                ..
            } => write!(
                f,
                "{state} window overlaps {other_state} window {other_window_id} over [{}, {}): {window}",
                t(from),
                t(to)
            ),
            Finding::ObjectsOverlap {
                window,
                other_window_id,
                from,
                to,
                ..
            } => write!(
                f,
                "archived window and archived window {other_window_id} both hold [{}, {}): {window}",
                t(from),
                t(to)
            ),
            Finding::WindowFailed { window, last_error } => write!(
                f,
                "window failed permanently{}: {window}",
                last_error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ),
            Finding::WindowInFlight {
                window,
                state,
                state_since,
            } => write!(
                f,
                "window still {state} since {}: {window}",
                t(state_since)
            ),
            Finding::TimeMissing { zone_id, from, to } => write!(
                f,
                "no window covers zone {zone_id} [{}, {})",
                t(from),
                t(to)
            ),
            Finding::PushDeliveryFailed {
                zone_id,
                dataset,
                from,
                to,
                error_message,
            } => write!(
                f,
                "zone {zone_id}: Cloudflare reported {dataset} delivery failing from {} to {}: {}",
                t(from),
                to.as_ref().map(t).unwrap_or_else(|| "now".into()),
                error_message.as_deref().unwrap_or("no message")
            ),
            Finding::PushSilent {
                zone_id,
                dataset,
                destination,
                detail,
            } => write!(
                f,
                "zone {zone_id}: destination {destination} ({dataset}) is silent: {detail}"
            ),
        }
    }
}

/// Why verification could not run (not a finding: nothing was proven either way).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Operational(TaskError),
    #[error("deep verification needs the kms (master keyring) or a tenant key file")]
    NoKms,
    #[error("zone {zone}'s chain is keyed (docs/CHAIN.md version 2): verification needs the kms (master keyring), a tenant key file or a chain key file")]
    NoChainKey { zone: Uuid },
}

impl From<StorageError> for VerifyError {
    fn from(e: StorageError) -> Self {
        VerifyError::Operational(e.into())
    }
}

/// One window with its catalog row and chain link, as verification reads them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WindowRow {
    pub id: i64,
    pub zone_id: Uuid,
    pub tenant_id: Uuid,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    /// `state::text`, so states this build does not know yet still read.
    pub state: String,
    pub last_error: Option<String>,
    pub state_since: DateTime<Utc>,
    pub object_key: Option<String>,
    pub size_bytes: Option<i64>,
    pub object_sha256: Option<Vec<u8>>,
    pub plaintext_sha256: Option<Vec<u8>>,
    pub plaintext_bytes: Option<i64>,
    pub record_count: Option<i64>,
    pub seq: Option<i64>,
    pub link_object_sha256: Option<Vec<u8>>,
    pub link_plaintext_sha256: Option<Vec<u8>>,
    pub link_record_count: Option<i64>,
    /// `None` when deletion receipts do not exist in this database.
    pub has_receipt: Option<bool>,
    /// When the window's first deletion receipt was written (pruned windows).
    pub receipt_at: Option<DateTime<Utc>>,
    /// The retention in force for the window's zone (its override, else the tenant's).
    pub retention_days: i32,
    /// Whether a legal hold on the tenant or the zone is in force.
    pub held: bool,
    /// Pruned windows under hold: when the audit log last shows a hold being set on the
    /// tenant or zone (`None`: no audit row says when).
    pub hold_since: Option<DateTime<Utc>>,
    /// The pushed batch this window holds (docs/INGEST.md); `None` for a pulled window.
    pub batch_id: Option<Uuid>,
    /// The Logpush dataset of a batch window; pulled windows are `http_requests`.
    pub dataset: Option<String>,
    /// A pulled window's earliest and latest record time (migration 0020; `None` before
    /// it, for empty windows, or when no record had a time): see [`crate::restore`].
    pub first_record_at: Option<DateTime<Utc>>,
    pub last_record_at: Option<DateTime<Utc>>,
}

impl WindowRow {
    pub fn window_ref(&self) -> WindowRef {
        WindowRef {
            zone_id: self.zone_id,
            window_id: self.id,
            window_start: self.start_at,
            window_end: self.end_at,
        }
    }

    pub fn context(&self) -> SealContext {
        SealContext {
            tenant: self.tenant_id,
            zone: self.zone_id,
            window_start: self.start_at,
            window_end: self.end_at,
        }
    }
}

/// Whether the `deletion_receipts` table (added by the prune migration) exists here.
pub async fn receipts_exist(pool: &PgPool) -> Result<bool, DbError> {
    sqlx::query_scalar("SELECT to_regclass('deletion_receipts') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(|e| DbError::query("look for deletion receipts", e))
}

fn select_rows(receipts: bool) -> String {
    let (receipt, receipt_at) = if receipts {
        (
            "EXISTS (SELECT 1 FROM deletion_receipts r WHERE r.window_id = w.id)",
            // A confirmed erasure's receipts (docs/GDPR.md) are judged by the request,
            // not by retention: the time left out is that of a receipt naming an
            // erasure of this tenant confirmed before the deletion. A receipt naming an
            // unconfirmed or another tenant's request is judged like any other.
            "(SELECT min(r.deleted_at) FROM deletion_receipts r WHERE r.window_id = w.id
               AND NOT EXISTS (SELECT 1 FROM gdpr_requests g
                               WHERE r.rule = 'erasure:' || g.id::text AND g.tenant_id = t.id
                                 AND g.kind = 'erasure' AND g.confirmed_at <= r.deleted_at))",
        )
    } else {
        ("NULL::boolean", "NULL::timestamptz")
    };
    format!(
        "SELECT w.id, w.zone_id, z.tenant_id, w.start_at, w.end_at, w.state::text AS state,
                w.last_error, w.state_since, a.object_key, a.size_bytes, a.object_sha256,
                a.plaintext_sha256, a.plaintext_bytes, a.record_count, l.seq,
                l.object_sha256 AS link_object_sha256,
                l.plaintext_sha256 AS link_plaintext_sha256,
                l.record_count AS link_record_count,
                {receipt} AS has_receipt, {receipt_at} AS receipt_at,
                coalesce(z.retention_days, t.retention_days) AS retention_days,
                (z.legal_hold OR t.legal_hold) AS held,
                CASE WHEN w.state = 'pruned' AND (z.legal_hold OR t.legal_hold) THEN
                  (SELECT max(e.at) FROM audit_events e
                   WHERE ((e.operation = 'tenant.set' AND e.tenant_id = t.id)
                          OR (e.operation = 'zone.set' AND e.zone_id = z.id))
                     AND e.detail->'legal_hold'->>'to' = 'true'
                     AND e.detail->'legal_hold'->>'from' = 'false')
                END AS hold_since,
                w.batch_id, d.dataset, w.first_record_at, w.last_record_at
         FROM windows w JOIN zones z ON z.id = w.zone_id JOIN tenants t ON t.id = z.tenant_id
         LEFT JOIN archived_objects a ON a.window_id = w.id
         LEFT JOIN chain_links l ON l.window_id = w.id
         LEFT JOIN push_batches b ON b.id = w.batch_id
         LEFT JOIN push_destinations d ON d.id = b.destination_id"
    )
}

/// Windows of `zone` overlapping `[from, to)` after the keyset cursor `after`
/// (`(start_at, end_at, id)` of the previous page's last row), in time order; with
/// `dataset`, only that dataset's (pulled windows are [`PULL_DATASET`]).
#[allow(clippy::too_many_arguments)]
pub async fn window_page(
    pool: &PgPool,
    receipts: bool,
    zone: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    dataset: Option<&str>,
    after: Option<(DateTime<Utc>, DateTime<Utc>, i64)>,
    limit: i64,
) -> Result<Vec<WindowRow>, DbError> {
    let sql = format!(
        "{} WHERE w.zone_id = $1 AND w.end_at > $2 AND w.start_at < $3
              AND ($4::timestamptz IS NULL OR (w.start_at, w.end_at, w.id) > ($4, $5, $6))
              AND ($8::text IS NULL OR coalesce(d.dataset, '{PULL_DATASET}') = $8)
            ORDER BY w.start_at, w.end_at, w.id LIMIT $7",
        select_rows(receipts)
    );
    sqlx::query_as(&sql)
        .bind(zone)
        .bind(from)
        .bind(to)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(after.map(|a| a.2))
        .bind(limit)
        .bind(dataset)
        .fetch_all(pool)
        .await
        .map_err(|e| DbError::query("read windows for verification", e))
}

/// The rows of the given windows (any zone), in id order.
pub async fn window_rows(
    pool: &PgPool,
    receipts: bool,
    ids: &[i64],
) -> Result<Vec<WindowRow>, DbError> {
    let sql = format!(
        "{} WHERE w.id = ANY($1) ORDER BY w.id",
        select_rows(receipts)
    );
    sqlx::query_as(&sql)
        .bind(ids)
        .fetch_all(pool)
        .await
        .map_err(|e| DbError::query("read windows for verification", e))
}

/// What was looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub zones: u64,
    pub links: u64,
    pub windows: u64,
    pub archived: u64,
    pub empty: u64,
    pub pruned: u64,
    pub objects_checked: u64,
    pub objects_deep: u64,
    pub object_bytes: u64,
    /// Objects listed under the zones' archive prefixes (compared with the catalog).
    #[serde(default)]
    pub objects_listed: u64,
    pub findings: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.zones += o.zones;
        self.links += o.links;
        self.windows += o.windows;
        self.archived += o.archived;
        self.empty += o.empty;
        self.pruned += o.pruned;
        self.objects_checked += o.objects_checked;
        self.objects_deep += o.objects_deep;
        self.object_bytes += o.object_bytes;
        self.objects_listed += o.objects_listed;
        self.findings += o.findings;
    }
}

/// The services verification reads, and how hard it looks.
#[derive(Clone)]
pub struct Verifier {
    pub pool: PgPool,
    pub store: ObjectStore,
    /// Needed for deep checks only.
    pub kms: Option<Arc<dyn Kms>>,
    pub concurrency: usize,
}

/// One zone and the time range to verify.
#[derive(Debug, Clone, Copy)]
pub struct ZoneScope {
    pub zone_id: Uuid,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// What checking one object found.
#[derive(Debug, Default)]
pub struct ObjectOutcome {
    pub findings: Vec<Finding>,
    pub bytes: u64,
    pub deep: bool,
}

fn hex32(v: &Option<Vec<u8>>) -> String {
    v.as_deref().map(hex::encode).unwrap_or_default()
}

/// Whether the catalog key `key` is the object key `expected` under some bucket prefix
/// (the writer's: catalog keys are full bucket keys since migration 0019, and rows
/// written with an empty prefix are the key itself).
pub fn names_key(key: &str, expected: &str) -> bool {
    key.strip_suffix(expected)
        .is_some_and(|prefix| prefix.is_empty() || prefix.ends_with('/'))
}

/// A permanent failure of an object is a finding; a retryable one is operational.
fn object_error(row: &WindowRow, key: &str, e: TaskError) -> Result<Finding, VerifyError> {
    if e.class == ErrorClass::Retryable {
        return Err(VerifyError::Operational(e));
    }
    let window = row.window_ref();
    let object_key = key.to_owned();
    Ok(match e.code.as_str() {
        "s3.not_found" => Finding::ObjectMissing { window, object_key },
        "sealed.wrong_tenant" | "sealed.wrong_zone" | "sealed.wrong_window" => {
            Finding::HeaderContextMismatch {
                window,
                object_key,
                code: e.code,
                detail: e.message,
            }
        }
        _ => Finding::ObjectUnreadable {
            window,
            object_key,
            code: e.code,
            detail: e.message,
        },
    })
}

impl Verifier {
    /// Checks an archived window's object: shallow streams it and compares size and
    /// SHA-256 with the catalog; deep also decrypts it against this window's context
    /// and compares the plaintext with the catalog and the link.
    pub async fn check_object(
        &self,
        row: &WindowRow,
        deep: bool,
    ) -> Result<ObjectOutcome, VerifyError> {
        let mut out = ObjectOutcome {
            deep,
            ..ObjectOutcome::default()
        };
        let Some(key) = row.object_key.as_deref() else {
            return Ok(out);
        };
        let window = row.window_ref();
        let (object_sha, object_len) = if deep {
            let kms = self.kms.clone().ok_or(VerifyError::NoKms)?;
            match crate::pipeline::open_object(
                &self.store.root(),
                kms,
                key,
                row.context(),
                std::io::sink(),
            )
            .await
            {
                Ok((verified, _)) => {
                    let p = &verified.plaintext;
                    let (sha, records) =
                        (hex::encode(p.plaintext_sha256), p.record_count.to_string());
                    let mut checks = vec![
                        ("sha256", hex32(&row.plaintext_sha256), sha.clone()),
                        (
                            "length",
                            row.plaintext_bytes.unwrap_or(-1).to_string(),
                            p.plaintext_len.to_string(),
                        ),
                        (
                            "record_count",
                            row.record_count.unwrap_or(-1).to_string(),
                            records.clone(),
                        ),
                    ];
                    if row.seq.is_some() && row.link_plaintext_sha256.is_some() {
                        checks.push((
                            "sha256 (chain link)",
                            hex32(&row.link_plaintext_sha256),
                            sha,
                        ));
                        checks.push((
                            "record_count (chain link)",
                            row.link_record_count.unwrap_or(-1).to_string(),
                            records,
                        ));
                    }
                    for (what, expected, actual) in checks {
                        if expected != actual {
                            out.findings.push(Finding::PlaintextMismatch {
                                window: window.clone(),
                                object_key: key.to_owned(),
                                what: what.to_owned(),
                                expected,
                                actual,
                            });
                        }
                    }
                    (verified.object_sha256, verified.object_len)
                }
                Err(e) => {
                    let missing = e.code == "s3.not_found";
                    out.findings.push(object_error(row, key, e)?);
                    if missing {
                        return Ok(out);
                    }
                    // The object did not open, but its size and hash still say whether
                    // it is the one the catalog recorded: read it again, shallow, so no
                    // finding is lost to the deep one (a tampered object is rare, so
                    // the second read costs nothing in a clean archive).
                    match self.stream_hash(row, key).await? {
                        Ok(hashed) => hashed,
                        Err(f) => {
                            out.findings.push(f);
                            return Ok(out);
                        }
                    }
                }
            }
        } else {
            match self.stream_hash(row, key).await? {
                Ok(hashed) => hashed,
                Err(f) => {
                    out.findings.push(f);
                    return Ok(out);
                }
            }
        };
        out.bytes = object_len;
        let expected_len = row.size_bytes.unwrap_or(-1);
        if i64::try_from(object_len).ok() != Some(expected_len) {
            out.findings.push(Finding::ObjectSizeMismatch {
                window: window.clone(),
                object_key: key.to_owned(),
                expected: u64::try_from(expected_len).unwrap_or(0),
                actual: object_len,
            });
        }
        if row.object_sha256.as_deref() != Some(&object_sha[..]) {
            out.findings.push(Finding::ObjectHashMismatch {
                window,
                object_key: key.to_owned(),
                expected_sha256: hex32(&row.object_sha256),
                actual_sha256: hex::encode(object_sha),
                matches_link: row.link_object_sha256.as_deref() == Some(&object_sha[..]),
            });
        }
        Ok(out)
    }

    /// Streams the object at `key` and returns its SHA-256 and length, or the finding
    /// when it cannot be read (gone); memory does not depend on the object's size.
    async fn stream_hash(
        &self,
        row: &WindowRow,
        key: &str,
    ) -> Result<Result<([u8; 32], u64), Finding>, VerifyError> {
        // Catalog keys are full bucket keys (with the writer's prefix).
        let mut body = match self.store.root().get_stream(key).await {
            Ok(b) => b,
            Err(e) => return Ok(Err(object_error(row, key, e.into())?)),
        };
        let mut sha = Sha256::new();
        let mut len = 0u64;
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| {
                VerifyError::from(StorageError::Body {
                    op: "GetObject",
                    key: key.to_owned(),
                    reason: e.to_string(),
                })
            })?;
            sha.update(&piece);
            len += piece.len() as u64;
        }
        Ok(Ok((sha.finalize().into(), len)))
    }

    /// The database-only checks of one window: its state against its catalog row and
    /// link, the catalog row against the link, and coverage gaps (failed, in flight).
    pub fn check_row(row: &WindowRow) -> Vec<Finding> {
        let mut out = Vec::new();
        let window = row.window_ref();
        let state = row.state.as_str();
        let link_kind = match (row.seq, &row.link_object_sha256) {
            (None, _) => None,
            (Some(_), Some(_)) => Some("archived"),
            (Some(_), None) => Some("empty"),
        };
        let wants_object = matches!(state, "archived" | "pruned");
        match (state, link_kind) {
            ("archived" | "pruned" | "empty", None) => out.push(Finding::LinkMissing {
                window: window.clone(),
                state: state.to_owned(),
            }),
            ("archived" | "pruned", Some("archived")) | ("empty", Some("empty")) => {}
            (_, Some(kind)) => out.push(Finding::LinkStateMismatch {
                window: window.clone(),
                seq: row.seq.unwrap_or(-1),
                state: state.to_owned(),
                link_kind: kind.to_owned(),
            }),
            (_, None) => {}
        }
        match (&row.object_key, wants_object) {
            (None, true) => out.push(Finding::CatalogRowMissing {
                window: window.clone(),
                state: state.to_owned(),
            }),
            (Some(key), false) => out.push(Finding::CatalogRowUnexpected {
                window: window.clone(),
                state: state.to_owned(),
                object_key: key.clone(),
            }),
            _ => {}
        }
        if let (Some(key), Some(seq), Some("archived")) = (&row.object_key, row.seq, link_kind) {
            let mut fields = Vec::new();
            if row.object_sha256 != row.link_object_sha256 {
                fields.push("object_sha256".to_owned());
            }
            if row.plaintext_sha256 != row.link_plaintext_sha256 {
                fields.push("plaintext_sha256".to_owned());
            }
            if row.record_count != row.link_record_count {
                fields.push("record_count".to_owned());
            }
            if !fields.is_empty() {
                out.push(Finding::CatalogLinkMismatch {
                    window: window.clone(),
                    object_key: key.clone(),
                    seq,
                    fields,
                });
            }
            let expected_key = crate::pipeline::window_archive_key(
                row.tenant_id,
                row.zone_id,
                row.start_at,
                row.end_at,
                row.batch_id
                    .map(|id| (id, row.dataset.as_deref().unwrap_or_default())),
            );
            if !names_key(key, &expected_key) {
                out.push(Finding::ObjectKeyMismatch {
                    window: window.clone(),
                    object_key: key.clone(),
                    expected_key,
                });
            }
        }
        if state == "pruned" && row.has_receipt == Some(false) {
            out.push(Finding::PrunedWithoutReceipt {
                window: window.clone(),
                object_key: row.object_key.clone(),
            });
        }
        if let (Some(deleted_at), "pruned") = (row.receipt_at, state) {
            // docs/RETENTION.md: past retention when end + retention < as_of.
            let retained_until = row.end_at + TimeDelta::days(i64::from(row.retention_days));
            if deleted_at <= retained_until {
                out.push(Finding::ReceiptInsideRetention {
                    window: window.clone(),
                    deleted_at,
                    retention_days: row.retention_days,
                    retained_until,
                });
            }
            if row.held && row.hold_since.is_none_or(|since| deleted_at >= since) {
                out.push(Finding::ReceiptUnderHold {
                    window: window.clone(),
                    deleted_at,
                    hold_since: row.hold_since,
                });
            }
        }
        match Cover::of_state_text(state) {
            Some(Cover::Failed) => out.push(Finding::WindowFailed {
                window,
                last_error: row.last_error.clone(),
            }),
            Some(Cover::InFlight) => out.push(Finding::WindowInFlight {
                window,
                state: state.to_owned(),
                state_since: row.state_since,
            }),
            _ => {}
        }
        out
    }

    /// The chain keys `zone`'s links and checkpoints need, from the verifier's kms.
    /// Without a kms, a zone with keyed links or checkpoints cannot be verified.
    async fn chain_keys(
        &self,
        tenant: Uuid,
        zone: Uuid,
        checkpoint_versions: &[u32],
    ) -> Result<ChainKeys, VerifyError> {
        let versions = chain::key_versions(&self.pool, zone).await?;
        if versions.is_empty() && checkpoint_versions.is_empty() {
            return Ok(ChainKeys::new());
        }
        let kms = self.kms.as_ref().ok_or(VerifyError::NoChainKey { zone })?;
        let mut keys = chain::keys_for_zone(&self.pool, kms.as_ref(), zone).await?;
        for v in checkpoint_versions {
            if !keys.contains_key(v) {
                if let Ok(k) = kms.chain_key(tenant, Some(*v)).await {
                    keys.insert(*v, k);
                }
            }
        }
        Ok(keys)
    }

    /// Walks `zone`'s whole chain (chain continuity does not depend on the time range)
    /// and reports every break, then checks it against its checkpoints in the bucket:
    /// each checkpoint's MAC, the link at each checkpointed seq, a tip behind the last
    /// checkpoint, unkeyed links nothing keyed vouches for, and a missing series.
    pub async fn verify_chain(
        &self,
        zone: Uuid,
        sink: &mut (dyn FnMut(Finding) -> Result<(), VerifyError> + Send),
    ) -> Result<u64, VerifyError> {
        let tenant = chain::zone_tenant(&self.pool, zone).await?;
        let stored = checkpoint::list_zone(&self.store, tenant, zone).await?;
        let versions: Vec<u32> = stored
            .iter()
            .filter_map(|s| s.parsed.as_ref().ok().map(|c| c.key_version))
            .collect();
        let keys = self.chain_keys(tenant, zone, &versions).await?;
        // Valid checkpoints by seq (a zone has one per interval its tip moved in).
        let mut checkpoints = std::collections::BTreeMap::new();
        for s in stored {
            let verdict = s
                .parsed
                .and_then(|c| c.check(&keys, zone, &s.key).map(|_| c));
            match verdict {
                Ok(c) => {
                    checkpoints.insert(c.seq, (s.key, c));
                }
                Err(detail) => sink(Finding::CheckpointInvalid {
                    zone_id: zone,
                    object_key: s.key,
                    detail,
                })?,
            }
        }
        // The oldest checkpoint says where keyed links begin (or that all links up to
        // it are unkeyed): no unkeyed link may come after that.
        let unkeyed_limit: Option<i64> = checkpoints
            .values()
            .next()
            .map(|(_, c)| c.first_keyed_seq.map_or(c.seq as i64, |f| f as i64 - 1));
        let mut unkeyed_after_limit: Option<(i64, i64)> = None;
        let mut checker = ChainChecker::new(zone, keys);
        let mut oldest_link_at: Option<DateTime<Utc>> = None;
        loop {
            let page =
                chain::links_page(&self.pool, zone, checker.last_seq(), chain::LINK_PAGE).await?;
            if page.is_empty() {
                break;
            }
            if oldest_link_at.is_none() {
                oldest_link_at = chain::link_created_at(&self.pool, zone, page[0].seq).await?;
            }
            for link in &page {
                let expected = checker.last_seq() + 1;
                let window = WindowRef {
                    zone_id: zone,
                    window_id: link.window_id,
                    window_start: link.start_at,
                    window_end: link.end_at,
                };
                for why in checker.check(link) {
                    let finding = match why {
                        ChainBreak::Gap { .. } => Finding::ChainGap {
                            window: window.clone(),
                            seq: link.seq,
                            missing_from: expected,
                            missing_to: link.seq - 1,
                        },
                        ChainBreak::KeyUnavailable { key_version } => {
                            Finding::ChainKeyUnavailable {
                                zone_id: zone,
                                key_version,
                            }
                        }
                        other => Finding::ChainLinkBroken {
                            window: window.clone(),
                            seq: link.seq,
                            reason: match &other {
                                ChainBreak::PrevHashMismatch => "prev_hash_mismatch",
                                ChainBreak::HashMismatch => "hash_mismatch",
                                ChainBreak::Downgrade => "unkeyed_after_keyed",
                                _ => "malformed",
                            }
                            .to_owned(),
                            detail: other.to_string(),
                        },
                    };
                    sink(finding)?;
                }
                if let Some((key, c)) = u64::try_from(link.seq)
                    .ok()
                    .and_then(|seq| checkpoints.get(&seq))
                {
                    let link_hash = hex::encode(&link.link_hash);
                    if link_hash != c.link_hash {
                        sink(Finding::CheckpointMismatch {
                            window: window.clone(),
                            seq: link.seq,
                            object_key: key.clone(),
                            checkpoint_hash: c.link_hash.clone(),
                            link_hash,
                        })?;
                    }
                }
                if link.version == chain::V1 && unkeyed_limit.is_some_and(|l| link.seq > l) {
                    let range = unkeyed_after_limit.get_or_insert((link.seq, link.seq));
                    range.1 = link.seq;
                }
            }
        }
        if let Some((from_seq, to_seq)) = unkeyed_after_limit {
            sink(Finding::ChainUnkeyed {
                zone_id: zone,
                from_seq,
                to_seq,
                detail: format!(
                    "after seq {}, where the oldest checkpoint says keyed links begin",
                    unkeyed_limit.unwrap_or(-1)
                ),
            })?;
        }
        let tip = checker.tip().map(|(seq, _)| *seq);
        if let Some((seq, (key, _))) = checkpoints.iter().next_back() {
            if tip.is_none_or(|t| t < *seq as i64) {
                sink(Finding::ChainBehindCheckpoint {
                    zone_id: zone,
                    tip_seq: tip,
                    checkpoint_seq: *seq,
                    object_key: key.clone(),
                })?;
            }
        }
        // Unkeyed links need a keyed link after them or a checkpoint over them.
        if let (Some(last_v1), None, None) = (
            checker.last_unkeyed_seq(),
            checker.first_keyed_seq(),
            checkpoints.keys().next_back(),
        ) {
            sink(Finding::ChainUnkeyed {
                zone_id: zone,
                from_seq: 0,
                to_seq: last_v1,
                detail: "no keyed link follows them and no checkpoint covers them (run `rainlogs checkpoint`)".into(),
            })?;
        }
        if let (Some(at), true) = (oldest_link_at, checkpoints.is_empty()) {
            if at < Utc::now() - checkpoint::MISSING_GRACE {
                sink(Finding::CheckpointMissing {
                    zone_id: zone,
                    links: checker.links_seen(),
                    oldest_link_at: at,
                })?;
            }
        }
        Ok(checker.links_seen())
    }

    /// Verifies one zone over a time range: chain, windows, objects, pruned windows and
    /// coverage. Findings go to `sink` as they are found.
    pub async fn verify_zone(
        &self,
        scope: ZoneScope,
        deep: bool,
        sink: &mut (dyn FnMut(Finding) -> Result<(), VerifyError> + Send),
    ) -> Result<Counts, VerifyError> {
        let mut counts = Counts {
            zones: 1,
            ..Counts::default()
        };
        let mut found = 0u64;
        {
            let mut counting = |f: Finding| {
                found += 1;
                sink(f)
            };
            counts.links = self.verify_chain(scope.zone_id, &mut counting).await?;
        }
        let receipts = receipts_exist(&self.pool).await?;
        // Time coverage is a promise of pulled windows, which tile a pull zone's time.
        // Pushed batches do not tile time; push and hybrid zones' coverage is judged from
        // delivery (docs/INGEST.md), not here.
        let mode = zone_mode(&self.pool, scope.zone_id).await?;
        let tiles = mode == "pull";
        let mut walk = CoverageWalk::new(scope.from, scope.to);
        let mut overlaps = overlap::OverlapWalk::new(scope.from, scope.to);
        let mut spans = Vec::new();
        let mut after = None;
        loop {
            let page = window_page(
                &self.pool,
                receipts,
                scope.zone_id,
                scope.from,
                scope.to,
                None,
                after,
                WINDOW_PAGE,
            )
            .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.start_at, last.end_at, last.id));
            // Objects are checked concurrently, findings reported in window order.
            let checks = futures::stream::iter(page.iter().map(|row| async move {
                let mut findings = Self::check_row(row);
                let mut outcome = None;
                match row.state.as_str() {
                    "archived" if row.object_key.is_some() => {
                        let o = self.check_object(row, deep).await?;
                        findings.extend(o.findings.iter().cloned());
                        outcome = Some(o);
                    }
                    "pruned" => {
                        if let Some(key) = row.object_key.as_deref() {
                            if let Some(size) = self.store.root().head(key).await? {
                                findings.push(Finding::PrunedObjectPresent {
                                    window: row.window_ref(),
                                    object_key: key.to_owned(),
                                    size,
                                });
                            }
                        }
                    }
                    _ => {}
                }
                Ok::<_, VerifyError>((findings, outcome))
            }))
            .buffered(self.concurrency.max(1));
            futures::pin_mut!(checks);
            let mut rows = page.iter();
            while let Some(result) = checks.next().await {
                let (findings, outcome) = result?;
                let Some(row) = rows.next() else { break };
                counts.windows += 1;
                match row.state.as_str() {
                    "archived" => counts.archived += 1,
                    "empty" => counts.empty += 1,
                    "pruned" => counts.pruned += 1,
                    _ => {}
                }
                if let Some(o) = outcome {
                    counts.objects_checked += 1;
                    counts.objects_deep += u64::from(o.deep);
                    counts.object_bytes += o.bytes;
                }
                if let Some(cover) = Cover::of_state_text(&row.state) {
                    if tiles && row.batch_id.is_none() {
                        walk.window(cover, row.start_at, row.end_at, &mut spans);
                    }
                }
                for f in findings.into_iter().chain(overlaps.window(row)) {
                    found += 1;
                    sink(f)?;
                }
                for f in missing_time(scope.zone_id, &mut spans) {
                    found += 1;
                    sink(f)?;
                }
            }
        }
        if tiles {
            walk.finish(&mut spans);
        }
        for f in missing_time(scope.zone_id, &mut spans) {
            found += 1;
            sink(f)?;
        }
        // The other direction: every object in the bucket the catalog should know.
        let tenant = chain::zone_tenant(&self.pool, scope.zone_id).await?;
        {
            let mut counting = |f: Finding| {
                found += 1;
                sink(f)
            };
            let listed = bucket::compare(
                &self.pool,
                &self.store,
                tenant,
                &scope,
                bucket::LIST_PAGE,
                &mut counting,
            )
            .await?;
            counts.objects_listed = listed.listed;
        }
        if mode == "push" {
            // A push zone's coverage is what delivery reports (a hybrid zone's gaps are
            // re-fetched through Logpull and checked as windows above).
            for f in push_findings(&self.pool, scope).await? {
                found += 1;
                sink(f)?;
            }
        }
        counts.findings = found;
        Ok(counts)
    }
}

/// A push zone's delivery findings over the scope: Cloudflare's failed periods and
/// silent destinations (`push::coverage`).
async fn push_findings(pool: &PgPool, scope: ZoneScope) -> Result<Vec<Finding>, DbError> {
    let now = Utc::now();
    let c = crate::push::coverage(pool, scope.zone_id, scope.from, scope.to, now).await?;
    let mut out: Vec<Finding> = c
        .failed
        .into_iter()
        .map(|p| Finding::PushDeliveryFailed {
            zone_id: scope.zone_id,
            dataset: p.dataset,
            from: p.from,
            to: p.to,
            error_message: p.error_message,
        })
        .collect();
    // Silence is about now: only a scope reaching the present can show it.
    if scope.to + crate::push::SILENCE_ALLOWED >= now {
        out.extend(c.destinations.into_iter().filter_map(|h| {
            Some(Finding::PushSilent {
                zone_id: scope.zone_id,
                dataset: h.dataset,
                destination: h.id,
                detail: h.alert?,
            })
        }));
    }
    Ok(out)
}

/// How the zone's logs arrive (`zones.mode`: pull, push or hybrid).
pub async fn zone_mode(pool: &PgPool, zone: Uuid) -> Result<String, DbError> {
    sqlx::query_scalar!(
        r#"SELECT mode::text AS "mode!" FROM zones WHERE id = $1"#,
        zone
    )
    .fetch_optional(pool)
    .await
    .map_err(|e| DbError::query("read zone mode", e))?
    .ok_or_else(|| DbError::Query {
        op: "read zone mode",
        reason: format!("zone {zone} does not exist"),
        retryable: false,
    })
}

/// The closed spans no window covers, as findings (other spans are judged per window).
fn missing_time(zone_id: Uuid, spans: &mut Vec<crate::coverage::Span>) -> Vec<Finding> {
    spans
        .drain(..)
        .filter(|(kind, _, _)| *kind == Cover::Missing)
        .map(|(_, from, to)| Finding::TimeMissing { zone_id, from, to })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn row(state: &str) -> WindowRow {
        let start = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
        let end = start + chrono::TimeDelta::minutes(1);
        let (tenant, zone) = (Uuid::from_u128(1), Uuid::from_u128(2));
        WindowRow {
            id: 7,
            zone_id: zone,
            tenant_id: tenant,
            start_at: start,
            end_at: end,
            state: state.to_owned(),
            last_error: None,
            state_since: start,
            object_key: Some(crate::pipeline::archive_key(tenant, zone, start, end)),
            size_bytes: Some(10),
            object_sha256: Some(vec![1; 32]),
            plaintext_sha256: Some(vec![2; 32]),
            plaintext_bytes: Some(20),
            record_count: Some(3),
            seq: Some(4),
            link_object_sha256: Some(vec![1; 32]),
            link_plaintext_sha256: Some(vec![2; 32]),
            link_record_count: Some(3),
            has_receipt: None,
            receipt_at: None,
            retention_days: 395,
            held: false,
            hold_since: None,
            batch_id: None,
            dataset: None,
            first_record_at: None,
            last_record_at: None,
        }
    }

    #[test]
    fn consistent_rows_have_no_findings() {
        assert_eq!(Verifier::check_row(&row("archived")), vec![]);
        let mut empty = row("empty");
        empty.object_key = None;
        empty.link_object_sha256 = None;
        empty.link_plaintext_sha256 = None;
        empty.link_record_count = Some(0);
        assert_eq!(Verifier::check_row(&empty), vec![]);
        let mut pruned = row("pruned");
        pruned.has_receipt = Some(true);
        assert_eq!(Verifier::check_row(&pruned), vec![]);
    }

    #[test]
    fn edited_catalog_and_missing_pieces_are_named() {
        let mut r = row("archived");
        r.record_count = Some(4);
        let f = Verifier::check_row(&r);
        assert!(
            matches!(&f[..], [Finding::CatalogLinkMismatch { fields, seq: 4, .. }] if fields == &["record_count"]),
            "{f:?}"
        );
        let mut r = row("archived");
        r.seq = None;
        assert_eq!(Verifier::check_row(&r)[0].kind(), "link_missing");
        let mut r = row("pruned");
        r.has_receipt = Some(false);
        assert_eq!(Verifier::check_row(&r)[0].kind(), "pruned_without_receipt");
        let mut r = row("fetching");
        r.object_key = None;
        r.seq = None;
        assert_eq!(Verifier::check_row(&r)[0].kind(), "window_in_flight");
    }

    #[test]
    fn findings_serialize_flat_with_their_type() {
        let f = Finding::ObjectMissing {
            window: row("archived").window_ref(),
            object_key: "archive/k".into(),
        };
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["type"], "object_missing");
        assert_eq!(v["window_id"], 7);
        assert_eq!(v["object_key"], "archive/k");
        let back: Finding = serde_json::from_value(v).unwrap();
        assert_eq!(back, f);
        assert!(f.to_string().contains("archive/k") && f.to_string().contains("window 7"));
    }
}
