//! The Rainlogs dispatcher and operator tooling.
//!
//! - [`queue`] — the task queue on Redis (ready, active, delayed, dead);
//! - [`worker`] — the loop that takes tasks, invokes functions and settles outcomes;
//! - [`invoker`] — how a task reaches a function (in-process today);
//! - [`app`] — wiring from configuration to running services;
//! - [`cli`] — the `rainlogs` subcommands.

pub mod app;
pub mod cli;
pub mod invoker;
pub mod queue;
pub mod worker;
