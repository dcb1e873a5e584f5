//! The window ledger: every planned window of every zone and where it stands.
//!
//! Postgres is the truth; Redis only carries messages about these rows. Planning is
//! idempotent (a window is identified by zone, start and end), state changes are
//! conditional on the state a stage expects (so a late or replayed message cannot move
//! a window backwards), and windows stuck in a non-final state are found by age, so a
//! reconciler can re-enqueue them after Redis lost everything.

use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use rainlogs_core::db::DbError;
use rainlogs_core::task::kinds;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::chain::{self, ChainLink, LinkInput};

/// Logpull serves at most this far back.
pub const LOGPULL_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::days(7);
/// Logpull's `end` must be at least this far in the past.
pub const LOGPULL_MIN_DELAY: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// How far behind `now` the planner stays: the newest window it plans ends at least
/// `margin` ago. Logpull needs one minute; the margin on top absorbs clock skew between
/// this host, the fetcher's and Cloudflare's (a window planned up to exactly one minute
/// ago by a clock a few seconds ahead is refused as "too late"). docs/PIPELINE.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanPolicy {
    pub margin: chrono::TimeDelta,
}

impl PlanPolicy {
    /// `RAINLOGS_PLAN_MARGIN_SECS`: 60 (Logpull's minimum) to 86400; default 300.
    pub const MARGIN_VAR: &'static str = "RAINLOGS_PLAN_MARGIN_SECS";
    pub const DEFAULT_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
    pub const MAX_MARGIN: chrono::TimeDelta = chrono::TimeDelta::days(1);

    pub fn from_source(
        src: &rainlogs_core::config::ConfigSource,
    ) -> Result<Self, rainlogs_core::config::ConfigError> {
        let secs: i64 = src.parsed_or(Self::MARGIN_VAR, Self::DEFAULT_MARGIN.num_seconds())?;
        let (min, max) = (
            LOGPULL_MIN_DELAY.num_seconds(),
            Self::MAX_MARGIN.num_seconds(),
        );
        if !(min..=max).contains(&secs) {
            return Err(rainlogs_core::config::ConfigError::Invalid {
                var: Self::MARGIN_VAR.into(),
                reason: format!(
                    "{secs} is outside {min}..={max} seconds (Logpull refuses windows ending less than a minute ago)"
                ),
            });
        }
        Ok(Self {
            margin: chrono::TimeDelta::seconds(secs),
        })
    }

    /// Logpull's bare minimum, for a planner, fetcher and simulator that share one
    /// clock (the demo, tests on one host): no skew to absorb.
    pub fn same_clock() -> Self {
        Self {
            margin: LOGPULL_MIN_DELAY,
        }
    }
}

impl Default for PlanPolicy {
    fn default() -> Self {
        Self {
            margin: Self::DEFAULT_MARGIN,
        }
    }
}

/// `last_error` of a window upload sent back to encrypt because its archive object
/// failed verification (the fact itself is `windows.resealed`, see [`reseal`]).
pub const RESEAL_NOTE: &str = "archive object failed verification, sealing again";

/// Where a window stands (Postgres enum `window_state`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type, serde::Serialize, serde::Deserialize,
)]
#[sqlx(type_name = "window_state", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum WindowState {
    Planned,
    Fetching,
    Staged,
    Sealed,
    Archived,
    Empty,
    FailedPermanent,
    Pruned,
    /// Replaced by its two halves (too large or too slow to fetch in one request): no
    /// object and no link of its own; the halves' rows name it as their parent.
    Split,
}

impl WindowState {
    /// States a window leaves only by work still to be done.
    pub const IN_FLIGHT: [WindowState; 4] = [
        WindowState::Planned,
        WindowState::Fetching,
        WindowState::Staged,
        WindowState::Sealed,
    ];

    pub fn is_final(self) -> bool {
        !Self::IN_FLIGHT.contains(&self)
    }

    /// The one place that says which stage moves a window on: the task kind a window
    /// in this state waits for (planned/fetching → fetch, staged → encrypt, sealed →
    /// upload), `None` for a final state. The reconciler re-sends it; a stage that gets
    /// a message for a window past it hands this on ([`WindowState::for_stage`]).
    pub fn next_task(self) -> Option<&'static str> {
        match self {
            WindowState::Planned | WindowState::Fetching => Some(kinds::FETCH_WINDOW),
            WindowState::Staged => Some(kinds::ENCRYPT_WINDOW),
            WindowState::Sealed => Some(kinds::UPLOAD_WINDOW),
            _ => None,
        }
    }

    /// What a message of kind `stage` should do for a window in this state.
    pub fn for_stage(self, stage: &str) -> StageAction {
        let order = |kind: Option<&str>| {
            [
                kinds::FETCH_WINDOW,
                kinds::ENCRYPT_WINDOW,
                kinds::UPLOAD_WINDOW,
            ]
            .iter()
            .position(|k| Some(*k) == kind)
        };
        match (order(self.next_task()), order(Some(stage))) {
            (Some(at), Some(of)) if at == of => StageAction::Work,
            // Past this stage but not done: the task it waits for may have been lost
            // with the run that moved it, so hand it on again (idempotency keys absorb
            // a duplicate).
            (Some(at), Some(of)) if at > of => StageAction::HandOn(
                self.next_task()
                    .expect("an in-flight state has a next task"),
            ),
            // Final, or not yet at this stage (a message ahead of its window): the ledger
            // and the reconciler drive it; this message has nothing to add.
            _ => StageAction::Nothing,
        }
    }
}

/// What a stage does with a message, given the window's state ([`WindowState::for_stage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageAction {
    /// The window waits for this stage: do the work.
    Work,
    /// The window is past this stage: send this task kind on.
    HandOn(&'static str),
    /// Nothing to do (final, or not yet at this stage).
    Nothing,
}

/// One row of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Window {
    pub id: i64,
    pub zone_id: Uuid,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub state: WindowState,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub state_since: DateTime<Utc>,
}

/// Plans every window of `zone_id` from its backfill start (or its last planned window)
/// up to `policy.margin` before `now` (never closer than Logpull's minute). Returns how
/// many were added.
///
/// Windows older than Logpull's 7 days are not planned: they can never be fetched.
pub async fn plan_zone(
    pool: &PgPool,
    zone_id: Uuid,
    now: DateTime<Utc>,
    policy: &PlanPolicy,
) -> Result<u64, DbError> {
    let zone = sqlx::query!(
        r#"SELECT cadence_seconds, backfill_from, paused, mode::text AS "mode!",
                (SELECT max(end_at) FROM windows WHERE zone_id = zones.id AND batch_id IS NULL)
                    AS last_end
         FROM zones WHERE id = $1"#,
        zone_id
    )
    .fetch_optional(pool)
    .await
    .map_err(|e| DbError::query("read zone for planning", e))?
    .ok_or_else(|| DbError::Query {
        op: "plan windows",
        reason: format!("zone {zone_id} does not exist"),
        retryable: false,
    })?;
    // Push and hybrid zones get their logs from Logpush: nothing to plan for Logpull
    // (hybrid repair plans the gaps it finds itself).
    if zone.paused || zone.mode != "pull" {
        return Ok(0);
    }
    let cadence = chrono::TimeDelta::seconds(i64::from(zone.cadence_seconds));
    let align = |t: DateTime<Utc>| t.duration_trunc(cadence).unwrap_or(t);
    let horizon = align(now - policy.margin.max(LOGPULL_MIN_DELAY));
    let earliest = align(now - LOGPULL_MAX_AGE) + cadence;
    let start = zone
        .last_end
        .unwrap_or_else(|| align(zone.backfill_from))
        .max(earliest);
    if start + cadence > horizon {
        return Ok(0);
    }
    let added = sqlx::query!(
        "INSERT INTO windows (zone_id, start_at, end_at)
         SELECT $1, t, t + make_interval(secs => $2)
         FROM generate_series($3::timestamptz, $4::timestamptz - make_interval(secs => $2),
                              make_interval(secs => $2)) AS t
         ON CONFLICT (zone_id, start_at, end_at) WHERE batch_id IS NULL DO NOTHING",
        zone_id,
        f64::from(zone.cadence_seconds),
        start,
        horizon,
    )
    .execute(pool)
    .await
    .map_err(|e| DbError::query("insert planned windows", e))?;
    Ok(added.rows_affected())
}

/// Plans every active pull zone at once, as [`plan_zone`] plans one: each zone's windows
/// from its backfill start (or its last planned window) up to `policy.margin` before
/// `now`, none older than Logpull's 7 days. One statement for all zones, so a scheduler
/// pass costs the same for 10 zones or 10,000 (paused and demo zones are left alone;
/// push and hybrid zones are not planned window by window). Returns how many were added.
pub async fn plan_pull_zones(
    pool: &PgPool,
    now: DateTime<Utc>,
    policy: &PlanPolicy,
) -> Result<u64, DbError> {
    let added = sqlx::query!(
        // A zone's last window is the one starting last (windows follow each other;
        // split halves end where their parent does), found through the
        // (zone_id, start_at, end_at) index instead of scanning every window for max().
        // Times are aligned to the cadence as `DateTime::duration_trunc` does: whole
        // multiples since the Unix epoch.
        "WITH z AS (
             SELECT id, cadence_seconds AS c, backfill_from,
                    (SELECT w.end_at FROM windows w
                     WHERE w.zone_id = zones.id AND w.batch_id IS NULL
                     ORDER BY w.start_at DESC, w.end_at DESC LIMIT 1) AS last_end
             FROM zones WHERE NOT paused AND NOT demo AND mode = 'pull'
         ), span AS (
             SELECT id, make_interval(secs => c) AS step,
                    to_timestamp(floor(extract(epoch FROM $1::timestamptz) / c) * c) AS horizon,
                    greatest(
                        coalesce(last_end,
                                 to_timestamp(floor(extract(epoch FROM backfill_from) / c) * c)),
                        to_timestamp(floor(extract(epoch FROM $2::timestamptz) / c) * c)
                            + make_interval(secs => c)) AS first
             FROM z
         )
         INSERT INTO windows (zone_id, start_at, end_at)
         SELECT span.id, t, t + span.step
         FROM span, generate_series(span.first, span.horizon - span.step, span.step) AS t
         ON CONFLICT (zone_id, start_at, end_at) WHERE batch_id IS NULL DO NOTHING",
        now - policy.margin.max(LOGPULL_MIN_DELAY),
        now - LOGPULL_MAX_AGE,
    )
    .execute(pool)
    .await
    .map_err(|e| DbError::query("plan pull zones", e))?;
    Ok(added.rows_affected())
}

/// Moves a window to `to` if it is in one of `from`; returns whether it moved.
/// Entering `fetching` counts an attempt.
pub async fn transition(
    pool: &PgPool,
    window_id: i64,
    from: &[WindowState],
    to: WindowState,
    error: Option<&str>,
) -> Result<bool, DbError> {
    let moved = sqlx::query!(
        "UPDATE windows
         SET state = $3, state_since = now(), last_error = $4,
             attempts = attempts + CASE WHEN $3 = 'fetching'::window_state THEN 1 ELSE 0 END
         WHERE id = $1 AND state = ANY($2)",
        window_id,
        from as &[WindowState],
        to as WindowState,
        error,
    )
    .execute(pool)
    .await
    .map_err(|e| DbError::query("transition window", e))?;
    Ok(moved.rows_affected() == 1)
}

/// Settles a window in `tx`: moves it from `from` to the final state `to` (`empty` or
/// `archived`) and appends its chain link, or returns `None` when the window was not in
/// `from` (another run settled it first; its transaction holds the truth). The one
/// transition that writes a link — fetch (empty windows) and upload (archived ones)
/// both go through it. The window row is locked before the zone's chain, in that
/// order everywhere. `key` is the zone's tenant's chain key (the kms's
/// `chain_key(tenant, None)`), taken before the transaction. The caller commits.
pub async fn settle(
    tx: &mut Transaction<'_, Postgres>,
    window_id: i64,
    from: WindowState,
    to: WindowState,
    link: &LinkInput,
    key: &chain::ChainKey,
) -> Result<Option<ChainLink>, DbError> {
    debug_assert!(to.is_final(), "settle moves a window to a final state");
    let moved = sqlx::query!(
        "UPDATE windows SET state = $3, state_since = now(), last_error = NULL
         WHERE id = $1 AND state = $2",
        window_id,
        from as WindowState,
        to as WindowState,
    )
    .execute(&mut **tx)
    .await
    .map_err(|e| DbError::query("settle window", e))?;
    if moved.rows_affected() != 1 {
        return Ok(None);
    }
    Ok(Some(chain::append(tx, window_id, link, key).await?))
}

/// Records why the latest attempt on an in-flight window failed, leaving its state as
/// it is (the dispatcher retries); a settled window keeps its final reason.
pub async fn note_error(pool: &PgPool, window_id: i64, error: &str) -> Result<(), DbError> {
    sqlx::query!(
        "UPDATE windows SET last_error = $2
         WHERE id = $1 AND state IN ('planned', 'fetching', 'staged', 'sealed')",
        window_id,
        error,
    )
    .execute(pool)
    .await
    .map_err(|e| DbError::query("record window error", e))?;
    Ok(())
}

/// Sends a `sealed` window back to `staged` (to be sealed again from its staged
/// payload) with `reason`, once in its life: returns `false` when it was already
/// re-sealed before (or is no longer `sealed`), so a second failure ends the message
/// instead of looping.
pub async fn reseal(pool: &PgPool, window_id: i64, reason: &str) -> Result<bool, DbError> {
    let moved = sqlx::query!(
        "UPDATE windows SET state = 'staged', state_since = now(), last_error = $2, resealed = true
         WHERE id = $1 AND state = 'sealed' AND NOT resealed",
        window_id,
        reason,
    )
    .execute(pool)
    .await
    .map_err(|e| DbError::query("send window back to encrypt", e))?;
    Ok(moved.rows_affected() == 1)
}

/// Windows in a non-final state for longer than `older_than`, oldest first.
pub async fn stuck(
    pool: &PgPool,
    older_than: Duration,
    limit: i64,
) -> Result<Vec<Window>, DbError> {
    let cutoff =
        Utc::now() - chrono::TimeDelta::from_std(older_than).unwrap_or(chrono::TimeDelta::MAX);
    sqlx::query_as!(
        Window,
        r#"SELECT id, zone_id, start_at, end_at, state AS "state: WindowState", attempts, last_error, state_since
           FROM windows
           WHERE state IN ('planned', 'fetching', 'staged', 'sealed') AND state_since < $1
           ORDER BY state_since
           LIMIT $2"#,
        cutoff,
        limit,
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("find stuck windows", e))
}

/// How long before Logpull's 7-day edge an unfetched window is reported as at risk.
pub const EDGE_WARNING: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// A zone's pulled windows that are not fetched yet and close to Logpull's 7-day edge:
/// once past it they can never be fetched (a long Retry-After, an outage, a paused
/// zone). Reported on the metrics endpoint as an alert (docs/QUEUE.md, "Metrics").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeRisk {
    pub zone_id: Uuid,
    pub zone_name: String,
    /// Planned or fetching windows starting more than `7 days - within` ago.
    pub windows: i64,
    pub oldest_start: DateTime<Utc>,
}

/// Every zone with unfetched pulled windows within `within` of Logpull's 7-day edge
/// at `now`.
pub async fn near_logpull_edge(
    pool: &PgPool,
    now: DateTime<Utc>,
    within: chrono::TimeDelta,
) -> Result<Vec<EdgeRisk>, DbError> {
    let cutoff = now - LOGPULL_MAX_AGE + within;
    sqlx::query_as!(
        EdgeRisk,
        r#"SELECT w.zone_id, z.name AS zone_name, count(*) AS "windows!",
                  min(w.start_at) AS "oldest_start!"
           FROM windows w JOIN zones z ON z.id = w.zone_id
           WHERE w.state IN ('planned', 'fetching') AND w.batch_id IS NULL
             AND w.start_at < $1
           GROUP BY w.zone_id, z.name
           ORDER BY min(w.start_at)"#,
        cutoff,
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("find windows near Logpull's 7-day edge", e))
}

/// A zone's pulled windows overlapping `[from, to)`, in time order. Split windows are
/// left out: their halves (which are in the result) are what covers their time. Pushed
/// batches' windows are left out too: they do not tile time (docs/INGEST.md).
pub async fn windows_between(
    pool: &PgPool,
    zone_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Window>, DbError> {
    sqlx::query_as!(
        Window,
        r#"SELECT id, zone_id, start_at, end_at, state AS "state: WindowState", attempts, last_error, state_since
           FROM windows
           WHERE zone_id = $1 AND end_at > $2 AND start_at < $3 AND state <> 'split'
             AND batch_id IS NULL
           ORDER BY start_at, end_at"#,
        zone_id,
        from,
        to,
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("read windows", e))
}

/// Why a window is being split, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitOutcome {
    /// The window is now `split`; these are its halves (ids), earlier half first.
    Split { halves: [i64; 2] },
    /// The window was not in `fetching` any more (another run settled it first).
    NotFetching,
}

/// The instant halving `[start, end)` on a whole second, or `None` when the window is
/// too narrow to halve into two windows of at least `min_width` each.
pub fn split_point(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    min_width: chrono::TimeDelta,
) -> Option<DateTime<Utc>> {
    // Logpull takes whole seconds in practice; halves on second boundaries keep every
    // request expressible (and keys readable).
    let half_secs = (end - start).num_seconds() / 2;
    let mid = start + chrono::TimeDelta::seconds(half_secs);
    (mid - start >= min_width && end - mid >= min_width && half_secs > 0).then_some(mid)
}

/// Replaces window `window_id` (which must be `fetching`) by its halves at `mid`, in one
/// transaction: the window becomes `split` with `reason`, and the halves are planned
/// with it as their parent. Idempotent: halves that already exist are reused.
pub async fn split(
    pool: &PgPool,
    window_id: i64,
    mid: DateTime<Utc>,
    reason: &str,
) -> Result<SplitOutcome, DbError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| DbError::query("begin window split", e))?;
    let parent = sqlx::query!(
        "UPDATE windows SET state = 'split', state_since = now(), last_error = $2
         WHERE id = $1 AND state = 'fetching' AND start_at < $3 AND end_at > $3
         RETURNING zone_id, start_at, end_at",
        window_id,
        reason,
        mid,
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| DbError::query("mark window split", e))?;
    let Some(parent) = parent else {
        return Ok(SplitOutcome::NotFetching);
    };
    sqlx::query!(
        "INSERT INTO windows (zone_id, start_at, end_at, parent_id)
         VALUES ($1, $2, $3, $5), ($1, $3, $4, $5)
         ON CONFLICT (zone_id, start_at, end_at) WHERE batch_id IS NULL DO NOTHING",
        parent.zone_id,
        parent.start_at,
        mid,
        parent.end_at,
        window_id,
    )
    .execute(&mut *tx)
    .await
    .map_err(|e| DbError::query("plan window halves", e))?;
    let halves = split_halves(&mut *tx, window_id).await?;
    tx.commit()
        .await
        .map_err(|e| DbError::query("commit window split", e))?;
    Ok(SplitOutcome::Split { halves })
}

/// The halves of split window `window_id`, earlier half first.
pub async fn split_halves<'e, E>(executor: E, window_id: i64) -> Result<[i64; 2], DbError>
where
    E: sqlx::PgExecutor<'e>,
{
    let ids = sqlx::query_scalar!(
        "SELECT id FROM windows WHERE parent_id = $1 ORDER BY start_at",
        window_id
    )
    .fetch_all(executor)
    .await
    .map_err(|e| DbError::query("read window halves", e))?;
    <[i64; 2]>::try_from(ids.as_slice()).map_err(|_| DbError::Query {
        op: "read window halves",
        reason: format!(
            "split window {window_id} has {} halves instead of 2",
            ids.len()
        ),
        retryable: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn plan_margin_defaults_to_five_minutes_and_never_goes_below_logpulls_minute() {
        use rainlogs_core::config::ConfigSource;
        let with = |v: &str| {
            PlanPolicy::from_source(&ConfigSource::from_pairs([(PlanPolicy::MARGIN_VAR, v)]))
        };
        assert_eq!(
            PlanPolicy::from_source(&ConfigSource::default()).unwrap(),
            PlanPolicy::default()
        );
        assert_eq!(PlanPolicy::default().margin, chrono::TimeDelta::minutes(5));
        assert_eq!(with("60").unwrap(), PlanPolicy::same_clock());
        for bad in ["59", "0", "-300", "86401", "soon"] {
            let err = with(bad).unwrap_err();
            assert_eq!(err.subject(), PlanPolicy::MARGIN_VAR, "{bad}");
        }
    }

    #[test]
    fn split_point_halves_on_whole_seconds_and_stops_at_min_width() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
        let sec = chrono::TimeDelta::seconds;
        assert_eq!(split_point(t0, t0 + sec(60), sec(1)), Some(t0 + sec(30)));
        assert_eq!(split_point(t0, t0 + sec(15), sec(1)), Some(t0 + sec(7)));
        assert_eq!(split_point(t0, t0 + sec(2), sec(1)), Some(t0 + sec(1)));
        assert_eq!(split_point(t0, t0 + sec(1), sec(1)), None);
        assert_eq!(split_point(t0, t0 + sec(10), sec(6)), None);
        assert_eq!(
            split_point(t0, t0 + chrono::TimeDelta::milliseconds(1500), sec(0)),
            None
        );
    }

    #[test]
    fn one_state_machine_says_which_stage_works_hands_on_or_does_nothing() {
        use StageAction::*;
        use WindowState::*;
        let (f, e, u) = (
            kinds::FETCH_WINDOW,
            kinds::ENCRYPT_WINDOW,
            kinds::UPLOAD_WINDOW,
        );
        let table = [
            (Planned, [Work, Nothing, Nothing]),
            (Fetching, [Work, Nothing, Nothing]),
            (Staged, [HandOn(e), Work, Nothing]),
            (Sealed, [HandOn(u), HandOn(u), Work]),
            (Archived, [Nothing, Nothing, Nothing]),
            (Empty, [Nothing, Nothing, Nothing]),
            (FailedPermanent, [Nothing, Nothing, Nothing]),
            (Pruned, [Nothing, Nothing, Nothing]),
            (Split, [Nothing, Nothing, Nothing]),
        ];
        for (state, want) in table {
            let got = [state.for_stage(f), state.for_stage(e), state.for_stage(u)];
            assert_eq!(got, want, "{state:?}");
            assert_eq!(state.next_task().is_some(), !state.is_final(), "{state:?}");
        }
    }
}
