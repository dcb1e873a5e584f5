//! A Cloudflare Logpull API simulator, for tests, the demo and benchmarks.
//!
//! - [`generator`]: deterministic, realistic `http_requests` records per
//!   (seed, zone, minute), produced lazily;
//! - [`fields`]: the field catalogue served by `logs/received/fields`;
//! - [`faults`]: injectable failures (429, 5xx, resets, truncation, malformed lines,
//!   slow first byte, bad token) and which requests they hit;
//! - [`server`]: the HTTP endpoints with Cloudflare's parameters, validation rules and
//!   error envelope, startable in-process on a random port;
//! - [`logpush`]: the Logpush jobs API (create/list/get/update/delete, the validation
//!   upload, Cloudflare's limits and job status);
//! - [`pusher`]: Logpush delivery — batches from the generator by each job's limits,
//!   gzip NDJSON to its HTTP destination, retries that give up, a controllable clock;
//! - [`push_faults`]: injectable delivery failures (duplicate delivery, reset mid-body,
//!   slow body, a huge batch, a wrong secret);
//! - [`s3_destination`]: the S3-compatible destination (gzip NDJSON objects, named as
//!   Cloudflare names them).
//!
//! docs/LOGPULL.md describes the Logpull endpoints, parameters and faults; docs/INGEST.md
//! the Logpush side.

pub mod faults;
pub mod fields;
pub mod generator;
pub mod logpush;
pub mod push_faults;
pub mod pusher;
pub mod s3_destination;
pub mod server;

pub use faults::{Fault, FaultBook, FaultRule};
pub use fields::{Field, DEFAULT_FIELDS};
pub use generator::{Generator, Selection, TimestampFormat, ZoneVolume};
pub use logpush::Job;
pub use push_faults::{PushFault, PushFaultBook, PushFaultRule};
pub use pusher::{DroppedBatch, JobStats, PushClock, PushConfig, Pusher};
pub use server::{credential_fingerprint, SimConfig, Simulator};
