//! The window ledger: every planned window of every zone and where it stands.
//!
//! Postgres is the truth; Redis only carries messages about these rows. Planning is
//! idempotent (a window is identified by zone, start and end), state changes are
//! conditional on the state a stage expects (so a late or replayed message cannot move
//! a window backwards), and windows stuck in a non-final state are found by age, so a
//! reconciler can re-enqueue them after Redis lost everything.

use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::db::DbError;

/// Logpull serves at most this far back.
pub const LOGPULL_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::days(7);
/// Logpull's `end` must be at least this far in the past.
pub const LOGPULL_MIN_DELAY: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

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
/// up to the newest window Logpull can serve at `now`. Returns how many were added.
///
/// Windows older than Logpull's 7 days are not planned: they can never be fetched.
pub async fn plan_zone(pool: &PgPool, zone_id: Uuid, now: DateTime<Utc>) -> Result<u64, DbError> {
    let zone = sqlx::query!(
        "SELECT cadence_seconds, backfill_from, paused,
                (SELECT max(end_at) FROM windows WHERE zone_id = zones.id) AS last_end
         FROM zones WHERE id = $1",
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
    if zone.paused {
        return Ok(0);
    }
    let cadence = chrono::TimeDelta::seconds(i64::from(zone.cadence_seconds));
    let align = |t: DateTime<Utc>| t.duration_trunc(cadence).unwrap_or(t);
    let horizon = align(now - LOGPULL_MIN_DELAY);
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
         ON CONFLICT (zone_id, start_at, end_at) DO NOTHING",
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

/// A zone's windows overlapping `[from, to)`, in time order.
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
           WHERE zone_id = $1 AND end_at > $2 AND start_at < $3
           ORDER BY start_at, end_at"#,
        zone_id,
        from,
        to,
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("read windows", e))
}
