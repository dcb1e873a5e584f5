//! The integration-tests tests as one test binary (linking sqlx and the AWS SDK once, not once a
//! file); each module is one former test file.

mod chain_trust;
#[cfg(feature = "containers")]
mod containers;
mod demo;
mod isolation;
mod kms_cli;
mod kms_service;
mod landing;
mod ledger_chain;
mod logpush_jobs;
mod migrations;
mod pipeline_cost;
mod pipeline_stages;
mod prune;
mod push;
mod push_archive;
mod reconcile;
mod redis_roundtrip;
mod skeleton_flow;
mod storage;
mod verify_bucket;
mod verify_restore;
mod zone_cli;
