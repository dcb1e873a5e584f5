//! What a prune run carries: its options (the clock among them), the parts of its
//! report, its errors, and the run context the passes share. The passes
//! (`retention`, `sweep`) and the orchestration (`run`) build on this module; it builds
//! on none of them.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use rainlogs_core::db::DbError;
use rainlogs_core::error::{Classify, ErrorClass};
use rainlogs_core::storage::{ObjectStore, StorageError};
use rainlogs_core::TaskError;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// Most keys one S3 DeleteObjects call takes, hence the largest page.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Windows (or listed objects) handled per page unless told otherwise.
pub const DEFAULT_PAGE_SIZE: u32 = 1000;
/// Uploads put the object before committing its catalog row: an uncatalogued object
/// younger than this may be a window in the middle of its upload.
pub const DEFAULT_ORPHAN_GRACE: TimeDelta = TimeDelta::hours(24);
/// A staged payload older than this whose window is final (or gone) is left over.
pub const DEFAULT_STAGING_MAX_AGE: TimeDelta = TimeDelta::hours(48);
/// Keys listed per category in the report (what a dry run shows an operator).
pub const DEFAULT_SAMPLE: usize = 20;

/// What a run does, and the time it judges by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneOptions {
    /// The clock: retention and object ages are measured at this instant.
    pub as_of: DateTime<Utc>,
    /// Report what would go; delete and mark nothing.
    pub dry_run: bool,
    /// Windows / listed objects per page, 1..=[`MAX_PAGE_SIZE`].
    pub page_size: u32,
    /// Only this tenant (its windows, `archive/{tenant}/`, its zones' staging).
    pub tenant: Option<Uuid>,
    pub orphan_grace: TimeDelta,
    pub staging_max_age: TimeDelta,
    /// How many keys each part of the report lists.
    pub sample: usize,
    /// Stop after the page that crosses this much wall time (the report then says
    /// `complete: false`; the next run carries on where this one stopped).
    pub time_budget: Option<Duration>,
    /// Who runs it, for the audit row (`prune` for the function, `cli:<user>`).
    pub actor: String,
}

impl PruneOptions {
    /// Defaults judged at `as_of`.
    pub fn at(as_of: DateTime<Utc>) -> Self {
        Self {
            as_of,
            dry_run: false,
            page_size: DEFAULT_PAGE_SIZE,
            tenant: None,
            orphan_grace: DEFAULT_ORPHAN_GRACE,
            staging_max_age: DEFAULT_STAGING_MAX_AGE,
            sample: DEFAULT_SAMPLE,
            time_budget: None,
            actor: crate::NAME.to_owned(),
        }
    }

    pub(crate) fn check(&self) -> Result<(), PruneError> {
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return Err(PruneError::InvalidOption {
                option: "page_size",
                reason: format!("must be 1-{MAX_PAGE_SIZE}, got {}", self.page_size),
            });
        }
        for (option, d) in [
            ("orphan_grace", self.orphan_grace),
            ("staging_max_age", self.staging_max_age),
        ] {
            if d < TimeDelta::zero() {
                return Err(PruneError::InvalidOption {
                    option,
                    reason: "must not be negative".into(),
                });
            }
        }
        Ok(())
    }
}

/// The retention part of a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// Windows pruned (dry run: that would be).
    pub windows: u64,
    pub bytes: u64,
    /// Pages that held at least one window, and the largest page seen (never above
    /// the page size: that is the memory bound).
    pub pages: u64,
    pub largest_page: u64,
    /// Past retention but kept by a legal hold on the tenant or the zone.
    pub held_windows: u64,
    pub held_bytes: u64,
    /// Archived windows still inside their retention.
    pub inside_retention: u64,
    /// Objects DeleteObjects refused; their windows stay archived for the next run.
    pub failed: u64,
    /// The first keys (in window order).
    pub sample: Vec<String>,
}

/// An orphan or staging sweep's part of a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Objects listed under the prefix.
    pub listed: u64,
    /// Deleted (dry run: that would be), and their bytes (for orphans: the reported
    /// objects' bytes).
    pub deleted: u64,
    pub bytes: u64,
    /// Orphans found and left in place: the orphan sweep reports, it never deletes
    /// (docs/RETENTION.md, "Orphans").
    pub reported: u64,
    /// Kept: younger than the grace period / age threshold.
    pub kept_young: u64,
    /// Kept: their window is still in flight.
    pub kept_in_flight: u64,
    /// Listing pages read.
    pub pages: u64,
    pub failed: u64,
    pub sample: Vec<String>,
}

/// What a run did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    pub run_id: Uuid,
    pub as_of: DateTime<Utc>,
    pub dry_run: bool,
    pub tenant: Option<Uuid>,
    pub page_size: u32,
    pub retention: RetentionReport,
    pub orphans: SweepReport,
    pub staging: SweepReport,
    /// False when the time budget stopped the run early.
    pub complete: bool,
    pub elapsed_ms: u64,
}

/// Why a run failed, naming the window, key or page.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("prune option {option}: {reason}")]
    InvalidOption {
        option: &'static str,
        reason: String,
    },
    #[error("as_of {as_of} is later than the clock ({now}): a run may never prune early")]
    AsOfInFuture {
        as_of: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    #[error("no tenant {0}")]
    UnknownTenant(Uuid),
    #[error("{at}: {source}")]
    Db {
        at: String,
        #[source]
        source: DbError,
    },
    #[error("{at}: {source}")]
    Storage {
        at: String,
        #[source]
        source: StorageError,
    },
    #[error("DeleteObjects refused {count} object(s), first {first_key}{}; they stay for the next run", window_note(.first_window))]
    DeleteRefused {
        count: u64,
        first_key: String,
        first_window: Option<i64>,
    },
}

fn window_note(window: &Option<i64>) -> String {
    window.map(|w| format!(" (window {w})")).unwrap_or_default()
}

impl Classify for PruneError {
    fn class(&self) -> ErrorClass {
        match self {
            PruneError::Db { source, .. } => source.class(),
            PruneError::Storage { source, .. } => source.class(),
            PruneError::DeleteRefused { .. } => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            PruneError::InvalidOption { .. } => "prune.invalid_option",
            PruneError::AsOfInFuture { .. } => "prune.as_of_in_future",
            PruneError::UnknownTenant(_) => "prune.unknown_tenant",
            PruneError::Db { source, .. } => source.code(),
            PruneError::Storage { source, .. } => source.code(),
            PruneError::DeleteRefused { .. } => "prune.delete_refused",
        }
    }
}

impl From<PruneError> for TaskError {
    fn from(e: PruneError) -> Self {
        TaskError::classified(&e)
    }
}

/// Wraps a database error with where it happened.
pub(crate) fn db(at: impl Into<String>) -> impl FnOnce(sqlx::Error) -> PruneError {
    let at = at.into();
    move |e| PruneError::Db {
        source: DbError::query("prune", e),
        at,
    }
}

/// Wraps a storage error with where it happened.
pub(crate) fn storage(at: impl Into<String>) -> impl FnOnce(StorageError) -> PruneError {
    let at = at.into();
    move |source| PruneError::Storage { at, source }
}

/// Checks that a requested `as_of` is not in the future of the real clock `now`, so
/// a queued or hand-made request can never prune early.
pub fn check_as_of(as_of: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), PruneError> {
    if as_of > now {
        return Err(PruneError::AsOfInFuture { as_of, now });
    }
    Ok(())
}

/// The first DeleteObjects refusal of a run, reported once the run has done the rest.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    pub count: u64,
    pub first: Option<(String, Option<i64>)>,
}

impl Refusals {
    pub fn add(&mut self, key: &str, window: Option<i64>) {
        self.count += 1;
        self.first.get_or_insert_with(|| (key.to_owned(), window));
    }
}

/// Mutable state of one run, shared by its passes.
pub(crate) struct Run<'a> {
    pub pool: &'a PgPool,
    pub store: &'a ObjectStore,
    pub opts: &'a PruneOptions,
    pub run_id: Uuid,
    pub started: Instant,
    pub refusals: Refusals,
}

impl Run<'_> {
    /// Whether the time budget is spent (checked between pages).
    pub fn out_of_time(&self) -> bool {
        self.opts
            .time_budget
            .is_some_and(|b| self.started.elapsed() >= b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_may_not_be_in_the_future() {
        let now = Utc::now();
        assert!(check_as_of(now, now).is_ok());
        assert!(check_as_of(now - TimeDelta::days(3), now).is_ok());
        let err = check_as_of(now + TimeDelta::seconds(1), now).unwrap_err();
        assert_eq!(err.code(), "prune.as_of_in_future");
        assert_eq!(err.class(), ErrorClass::Permanent);
    }

    #[test]
    fn page_size_is_bounded_by_delete_objects() {
        let mut o = PruneOptions::at(Utc::now());
        o.page_size = MAX_PAGE_SIZE + 1;
        assert!(o.check().is_err());
        o.page_size = 0;
        assert!(o.check().is_err());
        o.page_size = 1;
        assert!(o.check().is_ok());
    }

    #[test]
    fn refusals_are_retryable_and_name_the_first_key_and_window() {
        let e = PruneError::DeleteRefused {
            count: 3,
            first_key: "archive/a".into(),
            first_window: Some(7),
        };
        assert_eq!(e.class(), ErrorClass::Retryable);
        assert!(e.to_string().contains("archive/a (window 7)"), "{e}");
    }
}
