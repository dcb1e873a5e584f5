//! The catalog: tenants and their zones — what is archived, for whom, from where, for
//! how long. The operations every front end calls (docs/ARCHITECTURE.md).

pub mod tenant;
pub mod zone;
