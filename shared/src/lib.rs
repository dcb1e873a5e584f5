//! The common library of Rainlogs: what every stage, the dispatcher and the CLI share.
//!
//! - [`config`] — typed configuration from `RAINLOGS_*` variables and the env file;
//! - [`error`] — the retryable/permanent classification every failure carries;
//! - [`task`] — the versioned task envelope moving through Redis to the functions;
//! - [`function`] — the handler trait and the runner behind every function binary;
//! - [`endpoint`] — where a zone's logs are fetched from (Cloudflare or a simulator);
//! - [`ledger`], [`chain`], [`coverage`] — the window ledger, the per-zone hash chain
//!   and which stretches of time are covered;
//! - [`verify`] — integrity findings: chain, objects, catalog and coverage checks;
//! - [`db`], [`storage`], [`redis_client`] — Postgres, S3 (Garage) and Redis access;
//! - [`sealed`], [`kms`] — the sealed archive format and the key-management contract;
//! - [`telemetry`] — logging.

pub mod audit;
pub mod chain;
pub mod config;
pub mod coverage;
pub mod db;
pub mod endpoint;
pub mod error;
pub mod function;
pub mod kms;
pub mod ledger;
pub mod pipeline;
pub mod redis_client;
pub mod sealed;
pub mod storage;
pub mod task;
pub mod telemetry;
pub mod verify;

pub use error::{ErrorClass, TaskError};
pub use task::{HandlerOutput, TaskEnvelope, TaskSpec};
