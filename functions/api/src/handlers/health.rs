//! `GET /v1/health` (liveness, no key) and `GET /v1/health/queues` (provider-wide
//! operators and admins: the task queues' depth and counters, as `rainlogs queue
//! stats` shows them).

use axum::extract::State;
use axum::{Extension, Json};
use rainlogs_core::error::ErrorClass;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::problem::{Problem, ProblemBody};
use crate::Api;

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Live {
    /// `ok`.
    pub status: String,
}

/// The task queues.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueHealth {
    /// Per queue: paused, depth (ready, active, delayed, dead), counters, lanes.
    #[schema(value_type = Vec<Object>)]
    pub queues: Vec<serde_json::Value>,
}

/// The API process answers.
#[utoipa::path(get, path = "/v1/health", tag = "health",
    responses((status = 200, body = Live)))]
pub async fn live() -> Json<Live> {
    Json(Live {
        status: "ok".into(),
    })
}

/// Queue depth and counters (provider-wide operators and admins).
#[utoipa::path(get, path = "/v1/health/queues", tag = "health",
    responses((status = 200, body = QueueHealth),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
              (status = 503, body = ProblemBody, content_type = "application/problem+json",
               description = "no queue configured, or Redis does not answer")),
    security(("api_key" = [])))]
pub async fn queues(
    State(api): State<Api>,
    Extension(_p): Extension<Principal>,
) -> Result<Json<QueueHealth>, Problem> {
    let Some(queue) = &api.services().queue else {
        return Err(Problem::unavailable(
            "queue.unavailable",
            "this API runs without Redis (RAINLOGS_REDIS_URL)",
        ));
    };
    let failed =
        |e: &dyn std::fmt::Display| Problem::internal("redis.query", ErrorClass::Retryable, e);
    let mut queues = Vec::new();
    for name in queue.known_queues().await.map_err(|e| failed(&e))? {
        let stats = queue.stats(&name).await.map_err(|e| failed(&e))?;
        queues.push(serde_json::to_value(&stats).unwrap_or_default());
    }
    Ok(Json(QueueHealth { queues }))
}
