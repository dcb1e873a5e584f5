//! Everything that can be wrong with a sealed object, one variant per cause, so a
//! verifier (and an auditor) can tell tampering from truncation from a missing key.

use std::io;

use uuid::Uuid;

use crate::kms::KeyError;
use rainlogs_core::error::{Classify, ErrorClass, TaskError};

/// Why sealing or opening failed. Never holds key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("sealed object: {op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("sealed object: ends inside the header after {have} bytes")]
    TruncatedHeader { have: usize },
    #[error("sealed object: not a sealed object (bad magic)")]
    NotSealed,
    #[error("sealed object: format version {found} is not supported (this build reads 1)")]
    UnsupportedVersion { found: u8 },
    #[error("sealed object: algorithm {found} is not supported (this build reads 1)")]
    UnsupportedAlgorithm { found: u8 },
    #[error("sealed object: header field {field} is invalid: {reason}")]
    MalformedHeader { field: &'static str, reason: String },
    #[error("sealed object: header fails authentication ({reason}): the header was altered or the key is not the one that sealed it")]
    HeaderTampered { reason: &'static str },
    #[error("sealed object: belongs to tenant {found}, expected tenant {expected}")]
    WrongTenant { expected: Uuid, found: Uuid },
    #[error("sealed object: belongs to zone {found}, expected zone {expected}")]
    WrongZone { expected: Uuid, found: Uuid },
    #[error("sealed object: covers window {found}, expected window {expected}")]
    WrongWindow { expected: String, found: String },
    #[error("sealed object: key unavailable: {0}")]
    Key(KeyError),
    #[error(
        "sealed object: chunk {index} fails authentication: its ciphertext or tag was altered"
    )]
    ChunkTampered { index: u64 },
    #[error("sealed object: chunk at position {position} is chunk {belongs_at}: chunks were reordered, swapped or removed")]
    ChunksReordered { position: u64, belongs_at: u64 },
    #[error("sealed object: truncated: body is {actual} bytes, footer declares {}", .declared.map(|d| d.to_string()).unwrap_or_else(|| "nothing (no room for final chunk and footer)".into()))]
    Truncated { declared: Option<u64>, actual: u64 },
    #[error(
        "sealed object: truncated at a chunk boundary: no final chunk after chunk {last_index}"
    )]
    MissingFinalChunk { last_index: u64 },
    #[error("sealed object: body is {actual} bytes but its footer declares {declared}: bytes were added")]
    TrailingData { declared: u64, actual: u64 },
    #[error("sealed object: authenticated payload is not valid zstd: {reason}")]
    Decompress { reason: String },
    #[error("sealed object: plaintext {what} does not match the trailer")]
    TrailerMismatch { what: &'static str },
    #[error("sealed object: more than 2^32 chunks; use a larger chunk size")]
    TooLong,
    #[error("sealed object: invalid parameters: {reason}")]
    InvalidParams { reason: String },
    #[error("sealed object: internal: {0}")]
    Internal(&'static str),
}

impl SealError {
    /// Recovers the typed error a [`std::io::Read`]/[`std::io::Write`] wrapper carried.
    pub fn from_io(err: io::Error, op: &'static str) -> Self {
        if err.get_ref().is_some_and(|e| e.is::<SealError>()) {
            if let Some(inner) = err.into_inner() {
                if let Ok(seal) = inner.downcast::<SealError>() {
                    return *seal;
                }
                return SealError::Internal("io error lost its cause");
            }
            return SealError::Internal("io error lost its cause");
        }
        SealError::Io { op, source: err }
    }

    /// Wraps this error for a `Read`/`Write` boundary; [`SealError::from_io`] undoes it.
    pub fn into_io(self) -> io::Error {
        // I/O failures keep their kind (a retrying caller may look at it) but stay
        // wrapped, so they are not mistaken for zstd errors on the way back.
        let kind = match &self {
            SealError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, self)
    }
}

impl From<KeyError> for SealError {
    /// A wrapped data key that does not open under the key the header names means the
    /// header (which binds it) was altered, or the key is not the one that sealed it.
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Unwrap { .. } => SealError::HeaderTampered {
                reason: "wrapped data key does not open for this header",
            },
            other => SealError::Key(other),
        }
    }
}

impl Classify for SealError {
    fn class(&self) -> ErrorClass {
        match self {
            SealError::Io { .. } => ErrorClass::Retryable,
            SealError::Key(k) => k.class(),
            _ => ErrorClass::Permanent,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            SealError::Io { .. } => "sealed.io",
            SealError::TruncatedHeader { .. } => "sealed.truncated_header",
            SealError::NotSealed => "sealed.not_sealed",
            SealError::UnsupportedVersion { .. } => "sealed.unsupported_version",
            SealError::UnsupportedAlgorithm { .. } => "sealed.unsupported_algorithm",
            SealError::MalformedHeader { .. } => "sealed.malformed_header",
            SealError::HeaderTampered { .. } => "sealed.header_tampered",
            SealError::WrongTenant { .. } => "sealed.wrong_tenant",
            SealError::WrongZone { .. } => "sealed.wrong_zone",
            SealError::WrongWindow { .. } => "sealed.wrong_window",
            SealError::Key(k) => k.code(),
            SealError::ChunkTampered { .. } => "sealed.chunk_tampered",
            SealError::ChunksReordered { .. } => "sealed.chunks_reordered",
            SealError::Truncated { .. } => "sealed.truncated",
            SealError::MissingFinalChunk { .. } => "sealed.missing_final_chunk",
            SealError::TrailingData { .. } => "sealed.trailing_data",
            SealError::Decompress { .. } => "sealed.decompress",
            SealError::TrailerMismatch { .. } => "sealed.trailer_mismatch",
            SealError::TooLong => "sealed.too_long",
            SealError::InvalidParams { .. } => "sealed.invalid_params",
            SealError::Internal(_) => "sealed.internal",
        }
    }
}

impl From<SealError> for TaskError {
    fn from(e: SealError) -> Self {
        let message = e.to_string();
        match e.class() {
            ErrorClass::Retryable => TaskError::retryable(e.code(), message),
            ErrorClass::Permanent => TaskError::permanent(e.code(), message),
        }
    }
}
