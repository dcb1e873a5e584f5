//! The sealed archive format and the key contract: how a window's NDJSON is stored at
//! rest.
//!
//! `zstd(NDJSON)` encrypted with AES-256-GCM in fixed-size chunks under a STREAM-style
//! construction (chunk counter and last-chunk flag in the nonce), behind a header that
//! names the keys and binds the encryption context. The byte layout is specified in
//! docs/FORMAT.md with committed test vectors; this module is the reference
//! implementation.
//!
//! - [`header`]: the header layout, its parser and the [`SealContext`] it binds;
//! - [`seal`]: [`Sealer`], a `std::io::Write` that streams plaintext in and sealed
//!   bytes out, memory bounded by the chunk size;
//! - [`open`]: [`Opener`], a `std::io::Read` that authenticates each chunk before it
//!   releases a byte, and checks the trailer (record count, length, SHA-256) at the end;
//! - [`error`]: [`SealError`], one variant per way an object can be wrong.
//!
//! - [`kms`]: the key contract — the [`kms::Kms`] trait every stage calls, data keys,
//!   tenant keys and their zeroizing wrappers (the kms function implements it).
//!
//! Keys come from the kms: the caller gets a data key (plaintext and wrapped) for
//! sealing, or unwraps the header's wrapped key for opening. This crate depends only on
//! `rainlogs-core` (for the error classification), so the fuzz targets and the test
//! vectors follow the format alone.

mod crypto;
pub mod error;
pub mod header;
pub mod kms;
pub mod open;
pub mod seal;

pub use error::SealError;
pub use header::{SealContext, SealedHeader};
pub use open::{open_with_kms, open_with_tenant_key, OpenSummary, Opener};
pub use seal::{SealParams, SealSummary, Sealer};

/// First eight bytes of every sealed object.
pub const MAGIC: [u8; 8] = *b"RLSEALED";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Algorithm 1: zstd, AES-256-GCM STREAM chunks, HKDF-SHA256, HMAC-SHA256 header tag.
pub const ALG_ZSTD_AES256GCM_STREAM: u8 = 1;
/// Header length of format version 1.
pub const HEADER_LEN: usize = 178;
/// Length of the trailer at the end of the final chunk's plaintext.
pub const TRAILER_LEN: usize = 48;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Length of the footer (body length) after the final chunk.
pub const FOOTER_LEN: usize = 8;
/// Smallest chunk size a header may declare.
pub const MIN_CHUNK_SIZE: u32 = 64;
/// Largest chunk size a header may declare: bounds an opener's memory.
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// The chunk size the pipeline seals with.
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
/// zstd level used for sealing.
pub const ZSTD_LEVEL: i32 = 3;
/// Earliest window instant a header may hold: 1970-01-01T00:00:00Z (µs since the epoch).
pub const MIN_INSTANT_MICROS: i64 = 0;
/// Latest window instant a header may hold: 9999-12-31T23:59:59.999999Z. Object keys
/// and RFC 3339 write four-digit years; Cloudflare's logs are never before 1970.
pub const MAX_INSTANT_MICROS: i64 = 253_402_300_799_999_999;

/// Whether `t` is a window instant the format accepts (docs/FORMAT.md §3).
pub fn valid_instant(t: chrono::DateTime<chrono::Utc>) -> bool {
    (MIN_INSTANT_MICROS..=MAX_INSTANT_MICROS).contains(&t.timestamp_micros())
}
