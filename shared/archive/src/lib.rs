//! The archive domain of Rainlogs: what a window, a zone and a tenant are, and the
//! operations every front end (the `rainlogs` CLI, the HTTP API, the receiver) calls.
//!
//! - [`catalog`] — tenants and zones (add, list, resolve, retention, hold, coverage);
//! - [`ledger`] — the window ledger and its state machine;
//! - [`chain`] — the per-zone hash chain (keyed links); [`checkpoint`] — its tips,
//!   MACed into the bucket; [`evidence`] — the auditor's bundle; [`coverage`] — which stretches of time are
//!   archived, empty, pruned, failed, in flight or missing;
//! - [`endpoint`] — where a zone's logs are fetched from (Cloudflare or a simulator),
//!   and the allow-listed Cloudflare API base a real zone's token may go to;
//! - [`pipeline`] — what the window stages share (task payload, object keys, window
//!   facts, spooling);
//! - [`verify`] — integrity findings: chain, objects, catalog and coverage checks;
//! - [`restore`] — verified NDJSON restore, from the catalog or from the bucket alone;
//! - [`push`] — Logpush destinations and the batches they deliver (docs/INGEST.md);
//! - [`record_time`] — a log record's time, one reading for fetch, receiver and restore;
//! - [`logpush`] — Logpush jobs at Cloudflare: create, list, status, disable, delete;
//! - [`audit`] — the audit log; [`adopt`] — orphaned archive objects re-adopted;
//! - [`gdpr`] — data-subject requests: access searches and tenant erasures.
//!
//! It builds on `rainlogs-core` (platform) and `rainlogs-sealed` (format and keys);
//! docs/ARCHITECTURE.md draws the layers.

pub mod adopt;
pub mod audit;
pub mod catalog;
pub mod chain;
pub mod checkpoint;
pub mod coverage;
pub mod endpoint;
pub mod evidence;
pub mod gdpr;
pub mod landing;
pub mod ledger;
pub mod logpush;
pub mod pipeline;
pub mod push;
pub mod record_time;
pub mod repair;
pub mod restore;
pub mod verify;
