//! Redis connection with a start-up check and classified errors.
//!
//! Redis is transport only (Postgres holds the truth), so callers just need a
//! multiplexed, auto-reconnecting connection and a clear message when it is not there.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret;

use crate::config::{redact_url, RedisConfig};

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis: cannot connect to {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// Connects and PINGs once, so a wrong URL fails here rather than at first use.
pub async fn connect(cfg: &RedisConfig) -> Result<ConnectionManager, RedisError> {
    let url = cfg.url.expose_secret();
    let unreachable = |reason: String| RedisError::Unreachable {
        url: redact_url(url),
        reason,
    };
    let client = redis::Client::open(url).map_err(|e| unreachable(e.to_string()))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(3)))
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_number_of_retries(2);
    let mut conn = tokio::time::timeout(
        Duration::from_secs(5),
        ConnectionManager::new_with_config(client, config),
    )
    .await
    .map_err(|_| unreachable("timed out after 5 s".into()))?
    .map_err(|e| unreachable(e.to_string()))?;
    let _: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    Ok(conn)
}
