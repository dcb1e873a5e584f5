//! The catalog: tenants, their zones and the API accounts (users, keys) — what is archived, for whom, from where, for
//! how long. The operations every front end calls (docs/ARCHITECTURE.md).

pub mod account;
pub mod session;
pub mod tenant;
pub mod zone;
