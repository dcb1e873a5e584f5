//! A Cloudflare Logpull API simulator, for tests, the demo and benchmarks.
//!
//! - [`generator`]: deterministic, realistic `http_requests` records per
//!   (seed, zone, minute), produced lazily;
//! - [`fields`]: the field catalogue served by `logs/received/fields`;
//! - [`faults`]: injectable failures (429, 5xx, resets, truncation, malformed lines,
//!   slow first byte, bad token) and which requests they hit;
//! - [`server`]: the HTTP endpoints with Cloudflare's parameters, validation rules and
//!   error envelope, startable in-process on a random port.
//!
//! docs/LOGPULL.md describes the endpoints, parameters and faults.

pub mod faults;
pub mod fields;
pub mod generator;
pub mod server;

pub use faults::{Fault, FaultBook, FaultRule};
pub use fields::{Field, DEFAULT_FIELDS};
pub use generator::{Generator, Selection, TimestampFormat, ZoneVolume};
pub use server::{credential_fingerprint, SimConfig, Simulator};
