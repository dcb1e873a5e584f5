//! Reading a `logs/received` body: gzip decoded as a stream, NDJSON checked line by
//! line, counted and hashed as it passes.
//!
//! [`WindowBody::next_chunk`] hands out runs of whole, checked lines, exactly the bytes
//! Cloudflare sent (after gzip decoding): nothing is re-serialised, so the SHA-256 in
//! the [`WindowSummary`] is the hash of the raw NDJSON, and the payload archived is
//! the payload served. Memory is one read buffer plus at most one partial line
//! (bounded by [`MAX_LINE`]), whatever the window's size.
//!
//! The body is complete only if the transport ended cleanly, the gzip stream (if any)
//! ended with its trailer, and the last byte was a newline. Anything else is a typed,
//! retryable error, so a cut-off window is never reported as complete.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rainlogs_archive::record_time::{parse_line, TimeSpan};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::error::LogpullError;

/// The longest line accepted; a line this long without a newline ends the window
/// with [`LogpullError::LineTooLong`] instead of growing the buffer without bound.
pub const MAX_LINE: usize = 4 * 1024 * 1024;
/// How many malformed-line positions a summary keeps (the count is always exact).
pub const MALFORMED_KEPT: usize = 16;
const READ_SIZE: usize = 64 * 1024;

/// What to do with a line that is not a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MalformedPolicy {
    /// Keep the line verbatim in the payload, count it and record where it is. The
    /// window completes; the caller records the count on the window. See
    /// docs/LOGPULL.md for why this is the default.
    #[default]
    Quarantine,
    /// Fail the window with a permanent [`LogpullError::MalformedLine`].
    Reject,
}

/// Where a malformed line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedLine {
    /// 1-based line number.
    pub line: u64,
    /// Byte offset of the line's first byte in the raw NDJSON.
    pub offset: u64,
    pub reason: String,
}

/// The result of reading a whole window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSummary {
    /// Lines that are JSON objects.
    pub records: u64,
    /// Lines that are not (kept verbatim under [`MalformedPolicy::Quarantine`]).
    pub malformed_lines: u64,
    /// The first [`MALFORMED_KEPT`] malformed lines' positions.
    pub malformed: Vec<MalformedLine>,
    /// Raw (decoded) NDJSON bytes.
    pub raw_bytes: u64,
    /// Bytes as received (compressed when gzip).
    pub wire_bytes: u64,
    /// SHA-256 of the raw NDJSON.
    pub sha256: [u8; 32],
    pub gzip: bool,
    /// Earliest and latest record time (`EdgeEndTimestamp`, else the start): Logpull
    /// serves a window by the time Cloudflare *received* its records, so a record can
    /// be minutes older than its window (docs/LOGPULL.md, "Late records").
    pub span: TimeSpan,
    /// Records without a readable time (a zone whose fields leave out the timestamps).
    pub untimed: u64,
}

/// Marks an I/O error that came from the transport (reset, closed early) rather than
/// from gzip decoding, so the two get different error kinds.
#[derive(Debug)]
pub(crate) struct TransportError(pub String);

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TransportError {}

/// The body of one `logs/received` response, read incrementally.
pub struct WindowBody {
    reader: Box<dyn AsyncRead + Send + Unpin>,
    what: String,
    gzip: bool,
    wire_bytes: Arc<AtomicU64>,
    idle_timeout: Duration,
    policy: MalformedPolicy,
    buf: BytesMut,
    /// Bytes of `buf` already scanned for newlines (all before the last partial line).
    scanned: usize,
    hasher: Sha256,
    records: u64,
    span: TimeSpan,
    untimed: u64,
    malformed_lines: u64,
    malformed: Vec<MalformedLine>,
    /// Raw bytes handed out (whole lines) so far.
    raw_bytes: u64,
    lines: u64,
    done: bool,
}

impl std::fmt::Debug for WindowBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowBody")
            .field("what", &self.what)
            .field("gzip", &self.gzip)
            .field("records", &self.records)
            .field("raw_bytes", &self.raw_bytes)
            .finish_non_exhaustive()
    }
}

impl WindowBody {
    pub(crate) fn new(
        reader: Box<dyn AsyncRead + Send + Unpin>,
        what: String,
        gzip: bool,
        wire_bytes: Arc<AtomicU64>,
        idle_timeout: Duration,
        policy: MalformedPolicy,
    ) -> Self {
        Self {
            reader,
            what,
            gzip,
            wire_bytes,
            idle_timeout,
            policy,
            buf: BytesMut::with_capacity(READ_SIZE * 2),
            scanned: 0,
            hasher: Sha256::new(),
            records: 0,
            span: TimeSpan::default(),
            untimed: 0,
            malformed_lines: 0,
            malformed: Vec::new(),
            raw_bytes: 0,
            lines: 0,
            done: false,
        }
    }

    /// The next run of whole, checked lines, or `None` once the body ended completely.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, LogpullError> {
        loop {
            if self.done {
                return Ok(None);
            }
            if let Some(chunk) = self.take_lines()? {
                return Ok(Some(chunk));
            }
            if self.buf.len() >= MAX_LINE {
                return Err(LogpullError::LineTooLong {
                    what: self.what.clone(),
                    line: self.lines + 1,
                    offset: self.raw_bytes,
                    limit: MAX_LINE,
                });
            }
            self.buf.reserve(READ_SIZE);
            let read =
                tokio::time::timeout(self.idle_timeout, self.reader.read_buf(&mut self.buf)).await;
            let n = match read {
                Err(_) => {
                    return Err(LogpullError::Timeout {
                        what: self.what.clone(),
                        phase: "body data",
                        after: self.idle_timeout,
                    })
                }
                Ok(Err(e)) => return Err(self.read_error(e)),
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                if !self.buf.is_empty() {
                    return Err(LogpullError::Truncated {
                        what: self.what.clone(),
                        raw_bytes: self.raw_bytes + self.buf.len() as u64,
                        detail: format!(
                            "line {} at byte offset {} has no final newline",
                            self.lines + 1,
                            self.raw_bytes
                        ),
                    });
                }
                self.done = true;
            }
        }
    }

    /// Splits off every complete line in the buffer, checking each.
    fn take_lines(&mut self) -> Result<Option<Bytes>, LogpullError> {
        let Some(last_nl) = self.buf[self.scanned..].iter().rposition(|&b| b == b'\n') else {
            self.scanned = self.buf.len();
            return Ok(None);
        };
        let chunk = self.buf.split_to(self.scanned + last_nl + 1).freeze();
        self.scanned = 0;
        let mut offset = self.raw_bytes;
        for line in chunk.split_inclusive(|&b| b == b'\n') {
            self.lines += 1;
            let body = &line[..line.len() - 1];
            match parse_line(body) {
                Ok(times) => {
                    self.records += 1;
                    match times.time_ns {
                        Some(t) => self.span.add(t),
                        None => self.untimed += 1,
                    }
                }
                Err(reason) => {
                    let reason = reason.to_string();
                    if self.policy == MalformedPolicy::Reject {
                        return Err(LogpullError::MalformedLine {
                            what: self.what.clone(),
                            line: self.lines,
                            offset,
                            reason,
                        });
                    }
                    self.malformed_lines += 1;
                    if self.malformed.len() < MALFORMED_KEPT {
                        self.malformed.push(MalformedLine {
                            line: self.lines,
                            offset,
                            reason,
                        });
                    }
                }
            }
            offset += line.len() as u64;
        }
        self.hasher.update(&chunk);
        self.raw_bytes += chunk.len() as u64;
        Ok(Some(chunk))
    }

    fn read_error(&self, e: io::Error) -> LogpullError {
        let raw_bytes = self.raw_bytes + self.buf.len() as u64;
        if let Some(t) = e.get_ref().and_then(|i| i.downcast_ref::<TransportError>()) {
            return LogpullError::BodyInterrupted {
                what: self.what.clone(),
                raw_bytes,
                reason: t.0.clone(),
            };
        }
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return LogpullError::Truncated {
                what: self.what.clone(),
                raw_bytes,
                detail: "gzip stream ended before its trailer".to_owned(),
            };
        }
        LogpullError::CorruptGzip {
            what: self.what.clone(),
            wire_bytes: self.wire_bytes.load(Ordering::Relaxed),
            reason: e.to_string(),
        }
    }

    /// The window's figures; complete only after `next_chunk` returned `None`.
    pub fn summary(&self) -> WindowSummary {
        WindowSummary {
            records: self.records,
            malformed_lines: self.malformed_lines,
            malformed: self.malformed.clone(),
            raw_bytes: self.raw_bytes,
            wire_bytes: self.wire_bytes.load(Ordering::Relaxed),
            sha256: self.hasher.clone().finalize().into(),
            gzip: self.gzip,
            span: self.span,
            untimed: self.untimed,
        }
    }

    /// Running counts while streaming: (records, raw bytes).
    pub fn progress(&self) -> (u64, u64) {
        (self.records, self.raw_bytes)
    }

    pub fn is_complete(&self) -> bool {
        self.done
    }

    /// The body as a stream of checked chunks.
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<Bytes, LogpullError>> + Send {
        futures::stream::try_unfold(self, |mut body| async move {
            Ok(body.next_chunk().await?.map(|chunk| (chunk, body)))
        })
    }
}

/// A line is a record when it is one JSON object (and nothing else).
#[cfg(test)]
mod tests {
    use super::*;

    fn body(data: &'static [u8], policy: MalformedPolicy) -> WindowBody {
        WindowBody::new(
            Box::new(data),
            "test".into(),
            false,
            Arc::new(AtomicU64::new(0)),
            Duration::from_secs(5),
            policy,
        )
    }

    async fn drain(mut b: WindowBody) -> Result<(Vec<u8>, WindowSummary), LogpullError> {
        let mut out = Vec::new();
        while let Some(c) = b.next_chunk().await? {
            out.extend_from_slice(&c);
        }
        Ok((out, b.summary()))
    }

    #[tokio::test]
    async fn complete_ndjson_passes_through_unchanged_and_hashed() {
        let data = b"{\"a\":1}\n{\"b\":\"\xc3\xbc\"}\n";
        let (out, s) = drain(body(data, MalformedPolicy::Reject))
            .await
            .expect("complete");
        assert_eq!(out, data);
        assert_eq!(
            (s.records, s.raw_bytes, s.malformed_lines),
            (2, data.len() as u64, 0)
        );
        assert_eq!(s.sha256, <[u8; 32]>::from(Sha256::digest(data)));
    }

    #[tokio::test]
    async fn a_missing_final_newline_is_a_truncation() {
        let err = drain(body(b"{\"a\":1}\n{\"b\":2}", MalformedPolicy::Quarantine))
            .await
            .expect_err("truncated");
        assert!(
            matches!(err, LogpullError::Truncated { raw_bytes: 15, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn malformed_lines_are_kept_and_counted_or_rejected() {
        let data = b"{\"a\":1}\n{\"b\":\n[1]\n\n{\"c\":3}\n";
        let (out, s) = drain(body(data, MalformedPolicy::Quarantine))
            .await
            .expect("quarantined");
        assert_eq!(out, data);
        assert_eq!((s.records, s.malformed_lines), (2, 3));
        assert_eq!(s.malformed[0].line, 2);
        assert_eq!(s.malformed[0].offset, 8);
        assert_eq!((s.malformed[1].line, s.malformed[1].offset), (3, 14));
        assert_eq!(s.malformed[2].reason, "empty line");
        let err = drain(body(data, MalformedPolicy::Reject))
            .await
            .expect_err("rejected");
        assert!(
            matches!(
                err,
                LogpullError::MalformedLine {
                    line: 2,
                    offset: 8,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_empty_body_is_a_complete_empty_window() {
        let (out, s) = drain(body(b"", MalformedPolicy::Reject))
            .await
            .expect("empty");
        assert!(out.is_empty());
        assert_eq!(s.records, 0);
        assert_eq!(s.sha256, <[u8; 32]>::from(Sha256::digest(b"")));
    }
}
