//! The shared/sealed tests as one test binary (linking sqlx and the AWS SDK once, not once a
//! file); each module is one former test file.

mod sealed;
mod sealed_props;
mod vectors;
