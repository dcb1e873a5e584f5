//! The Rainlogs dispatcher: moves task messages from Redis to the functions.
//!
//! - [`queue`]: the task queue on Redis (ready, active, delayed, dead; Lua scripts);
//! - [`worker`]: the loop that takes tasks in batches, invokes functions, heartbeats
//!   leases, reaps expired ones and settles outcomes;
//! - [`reconcile`]: the window scheduler and reconciler (ledger → queue);
//! - [`schedule`]: cron schedules firing once per period across dispatchers;
//! - [`invoker`]: how a task reaches a function (in-process, runtime shim, remote);
//! - [`config`]: dispatcher settings; [`metrics`]: Prometheus metrics; [`serve`]: HTTP serving;
//! - [`app`]: wiring from configuration to running services.
//!
//! The `rainlogs` operator CLI is its own crate (`cli/`, docs/ARCHITECTURE.md).

pub mod app;
pub mod config;
pub mod invoker;
pub mod metrics;
pub mod queue;
pub mod reconcile;
pub mod remote;
pub mod schedule;
pub mod serve;
pub mod shim;
pub mod worker;
