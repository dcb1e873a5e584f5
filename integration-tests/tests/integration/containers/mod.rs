//! Tests that need a Docker engine and the images `infra/images/build.sh` builds (the
//! `containers` feature): the `rainlogs` image run against the services, Garage as a
//! three-container cluster losing nodes, and the compose stack archiving the demo.
//! `infra/test.sh` runs them in its container suite (docs/TESTING.md).

mod compose;
mod garage_cluster;
mod rainlogs_image;
