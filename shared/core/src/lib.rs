//! The platform layer of Rainlogs: what every crate needs, whatever the domain.
//!
//! - [`config`] — typed configuration from `RAINLOGS_*` variables and the env file;
//! - [`error`] — the retryable/permanent classification every failure carries;
//! - [`task`] — the versioned task envelope moving through Redis to the functions;
//! - [`function`] — the handler trait and the runner behind every function binary;
//! - [`db`], [`storage`], [`redis_client`] — Postgres (and the migrations), S3 (Garage)
//!   and Redis access;
//! - [`secrets`] — settings from AWS Secrets Manager (`RAINLOGS_SECRETS_ID`);
//! - [`telemetry`] — logging;
//! - `http_lambda` (feature `http-lambda`) — an axum router served under a Lambda runtime.
//!
//! Nothing here knows about windows, zones or sealed objects: those are
//! `rainlogs-sealed` (the format and the key contract) and `rainlogs-archive` (the
//! archive domain), which build on this crate (docs/ARCHITECTURE.md).

pub mod config;
pub mod db;
pub mod error;
pub mod function;
#[cfg(feature = "http-lambda")]
pub mod http_lambda;
pub mod redis_client;
pub mod secrets;
pub mod storage;
pub mod task;
pub mod telemetry;

pub use error::{ErrorClass, TaskError};
pub use task::{HandlerOutput, TaskEnvelope, TaskSpec};
