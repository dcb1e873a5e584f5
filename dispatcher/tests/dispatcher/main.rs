//! The dispatcher tests as one test binary (linking sqlx and the AWS SDK once, not once a
//! file); each module is one former test file.

mod dispatcher_leases;
mod dispatcher_order;
mod dispatcher_process;
mod dispatcher_queue;
mod dispatcher_remote;
mod dispatcher_shim;
