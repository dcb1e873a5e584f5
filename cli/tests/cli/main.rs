//! The cli tests as one test binary (linking sqlx and the AWS SDK once, not once a
//! file); each module is one former test file.

mod account_cli;
mod cargo_lambda;
mod cli_config;
mod dispatcher_ops;
mod logpush_cli;
mod receiver_kill;
mod receiver_lambda;
mod run_e2e;
mod run_without_keyring;
mod secrets_manager;
mod shim_stage_binary;
