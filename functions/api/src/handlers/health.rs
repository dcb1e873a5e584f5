//! `GET /v1/health` (liveness, no key) and `GET /v1/health/pipeline` (provider-wide
//! operators and admins): the task queues' depth and counters, as `rainlogs queue
//! stats` shows them, and the windows stuck in flight (`ledger::stuck`, served by the
//! `windows (state, state_since)` index: cheap however large the ledger).

use std::time::Duration;

use axum::extract::State;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use rainlogs_core::error::ErrorClass;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::problem::{Problem, ProblemBody};
use crate::Api;

/// A window in flight longer than this counts as stuck here (the reconciler re-sends
/// such windows' tasks after `RAINLOGS_RECONCILE_AFTER_MS`, 5 minutes by default).
pub const STUCK_AFTER: Duration = Duration::from_secs(15 * 60);
/// Most stuck windows looked at.
const STUCK_LIMIT: i64 = 100;

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Live {
    /// `ok`.
    pub status: String,
}

/// Windows in flight for longer than 15 minutes.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stuck {
    /// How many (at most 100 are counted).
    pub windows: usize,
    /// More than counted.
    pub capped: bool,
    /// Since when the oldest has been in its state.
    pub oldest_since: Option<DateTime<Utc>>,
}

/// The pipeline's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineHealth {
    /// Per queue: paused, depth (ready, active, delayed, dead), counters, lanes;
    /// `null` when this API runs without Redis.
    #[schema(value_type = Option<Vec<Object>>)]
    pub queues: Option<Vec<serde_json::Value>>,
    pub stuck: Stuck,
}

/// The API process answers.
#[utoipa::path(get, path = "/v1/health", tag = "health",
    responses((status = 200, body = Live)))]
pub async fn live() -> Json<Live> {
    Json(Live {
        status: "ok".into(),
    })
}

/// Queue depth and counters, and windows stuck in flight (provider-wide operators and
/// admins).
#[utoipa::path(get, path = "/v1/health/pipeline", tag = "health",
    responses((status = 200, body = PipelineHealth),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
              (status = 503, body = ProblemBody, content_type = "application/problem+json",
               description = "Redis or Postgres does not answer")),
    security(("api_key" = [])))]
pub async fn pipeline(
    State(api): State<Api>,
    Extension(_p): Extension<Principal>,
) -> Result<Json<PipelineHealth>, Problem> {
    let services = api.services();
    let queues = match &services.queue {
        None => None,
        Some(queue) => {
            let failed = |e: &dyn std::fmt::Display| {
                Problem::internal("redis.query", ErrorClass::Retryable, e)
            };
            let mut all = Vec::new();
            for name in queue.known_queues().await.map_err(|e| failed(&e))? {
                let stats = queue.stats(&name).await.map_err(|e| failed(&e))?;
                all.push(serde_json::to_value(&stats).unwrap_or_default());
            }
            Some(all)
        }
    };
    let stuck = rainlogs_archive::ledger::stuck(&services.pool, STUCK_AFTER, STUCK_LIMIT).await?;
    Ok(Json(PipelineHealth {
        queues,
        stuck: Stuck {
            windows: stuck.len(),
            capped: stuck.len() as i64 >= STUCK_LIMIT,
            oldest_since: stuck.first().map(|w| w.state_since),
        },
    }))
}
