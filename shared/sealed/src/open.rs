//! Opening: a `std::io::Read` that yields the NDJSON of a sealed object, verifying as it
//! goes.
//!
//! Every chunk is authenticated before a byte of it is released. Order, truncation and
//! the plaintext trailer (record count, length, SHA-256) can only be judged at the end:
//! the reader returns end-of-stream (`Ok(0)`) only once all of it checked out, and an
//! error otherwise, so a consumer must treat output as provisional until then.
//! Memory: two chunks of lookahead and zstd's window, whatever the object's size.

use std::io::{self, BufReader, Read, Write};

use sha2::{Digest, Sha256};

use super::crypto::ObjectKeys;
use super::error::SealError;
use super::header::{SealContext, SealedHeader};
use super::seal::PlainStats;
use super::{FOOTER_LEN, TAG_LEN, TRAILER_LEN};
use crate::kms::{KeyError, Kms, SecretKey, TenantKey};

/// How far around a failing chunk the opener looks for where it belongs.
const REORDER_SEARCH_AHEAD: u64 = 64;
const REORDER_SEARCH_MAX: u64 = 4096;

/// What an opened object proved about its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSummary {
    pub plaintext_sha256: [u8; 32],
    pub plaintext_len: u64,
    pub record_count: u64,
    pub chunks: u64,
}

/// The STREAM layer in reverse: authenticated compressed bytes out.
struct ChunkReader<R: Read> {
    inner: R,
    keys: ObjectKeys,
    header_tag: [u8; 32],
    chunk_size: usize,
    raw: Vec<u8>,
    eof: bool,
    counter: u64,
    consumed: u64,
    out: Vec<u8>,
    out_pos: usize,
    trailer: Option<[u8; TRAILER_LEN]>,
}

impl<R: Read> ChunkReader<R> {
    /// Largest possible final segment: a full final chunk, trailer, tag, footer.
    fn max_final(&self) -> usize {
        self.chunk_size + TRAILER_LEN + TAG_LEN + FOOTER_LEN
    }

    fn fill(&mut self) -> Result<(), SealError> {
        // One byte beyond the largest final segment tells a middle chunk from the last.
        let want = self.chunk_size + TAG_LEN + self.max_final() + 1;
        while !self.eof && self.raw.len() < want {
            let have = self.raw.len();
            self.raw.resize(want, 0);
            match self.inner.read(&mut self.raw[have..]) {
                Ok(0) => {
                    self.raw.truncate(have);
                    self.eof = true;
                }
                Ok(n) => self.raw.truncate(have + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.raw.truncate(have),
                Err(e) => {
                    self.raw.truncate(have);
                    return Err(SealError::Io {
                        op: "read sealed object",
                        source: e,
                    });
                }
            }
        }
        Ok(())
    }

    fn counter(&self) -> Result<u32, SealError> {
        u32::try_from(self.counter).map_err(|_| SealError::TooLong)
    }

    /// Decrypts the next chunk into `out`. Returns false once the final chunk is done.
    fn next_chunk(&mut self) -> Result<bool, SealError> {
        if self.trailer.is_some() {
            return Ok(false);
        }
        self.fill()?;
        let seg = self.chunk_size + TAG_LEN;
        let counter = self.counter()?;
        self.out.clear();
        self.out_pos = 0;
        if self.raw.len() > self.max_final() {
            self.out.extend_from_slice(&self.raw[..self.chunk_size]);
            let (tag_at, aad) = (self.chunk_size, self.header_tag);
            if !self
                .keys
                .open_chunk(counter, false, &aad, &mut self.out, &self.raw[tag_at..seg])
            {
                self.out.clear();
                return Err(self.diagnose(&self.raw[..seg], None));
            }
            self.raw.drain(..seg);
            self.consumed += seg as u64;
            self.counter += 1;
            return Ok(true);
        }
        // The rest is the final segment: final chunk then footer.
        let actual_total = self.consumed + self.raw.len() as u64;
        if self.raw.len() < TRAILER_LEN + TAG_LEN + FOOTER_LEN {
            return Err(SealError::Truncated {
                declared: None,
                actual: actual_total,
            });
        }
        let footer_at = self.raw.len() - FOOTER_LEN;
        let mut footer = [0u8; FOOTER_LEN];
        footer.copy_from_slice(&self.raw[footer_at..]);
        let declared = u64::from_be_bytes(footer);
        let actual = self.consumed + footer_at as u64;
        if declared > actual {
            return Err(SealError::Truncated {
                declared: Some(declared),
                actual,
            });
        }
        if declared < actual {
            return Err(SealError::TrailingData { declared, actual });
        }
        let tag_at = footer_at - TAG_LEN;
        let mut aad = [0u8; 40];
        aad[..32].copy_from_slice(&self.header_tag);
        aad[32..].copy_from_slice(&footer);
        self.out.extend_from_slice(&self.raw[..tag_at]);
        if !self.keys.open_chunk(
            counter,
            true,
            &aad,
            &mut self.out,
            &self.raw[tag_at..footer_at],
        ) {
            self.out.clear();
            return Err(self.diagnose(&self.raw[..footer_at], Some(aad)));
        }
        let split = self.out.len() - TRAILER_LEN;
        let mut trailer = [0u8; TRAILER_LEN];
        trailer.copy_from_slice(&self.out[split..]);
        self.out.truncate(split);
        self.trailer = Some(trailer);
        self.raw.clear();
        self.counter += 1;
        Ok(true)
    }

    /// A chunk failed authentication: find out whether it is a genuine chunk of this
    /// object in the wrong place (reordered, swapped, dropped) or altered bytes.
    fn diagnose(&self, segment: &[u8], final_aad: Option<[u8; 40]>) -> SealError {
        let position = self.counter;
        let (body, tag) = segment.split_at(segment.len() - TAG_LEN);
        let lo = (position + REORDER_SEARCH_AHEAD).saturating_sub(REORDER_SEARCH_MAX);
        let hi = (position + REORDER_SEARCH_AHEAD).min(u64::from(u32::MAX));
        let mut scratch = Vec::with_capacity(body.len());
        for j in lo..=hi {
            let Ok(c) = u32::try_from(j) else { break };
            let mut attempts: Vec<(bool, &[u8])> = Vec::with_capacity(2);
            if j != position || final_aad.is_some() {
                attempts.push((false, &self.header_tag));
            }
            if let Some(aad) = &final_aad {
                if j != position {
                    attempts.push((true, aad));
                }
            }
            for (last, aad) in attempts {
                scratch.clear();
                scratch.extend_from_slice(body);
                if self.keys.open_chunk(c, last, aad, &mut scratch, tag) {
                    if j == position {
                        // A genuine middle chunk where the final one should be.
                        return SealError::MissingFinalChunk {
                            last_index: position,
                        };
                    }
                    return SealError::ChunksReordered {
                        position,
                        belongs_at: j,
                    };
                }
            }
        }
        SealError::ChunkTampered { index: position }
    }
}

impl<R: Read> Read for ChunkReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.out_pos == self.out.len() {
            if !self.next_chunk().map_err(SealError::into_io)? {
                return Ok(0);
            }
        }
        let n = (self.out.len() - self.out_pos).min(buf.len());
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

/// Streams the NDJSON out of a sealed object, verifying as it goes.
pub struct Opener<R: Read> {
    decoder: zstd::stream::read::Decoder<'static, BufReader<ChunkReader<R>>>,
    stats: PlainStats,
    summary: Option<OpenSummary>,
}

impl<R: Read> Opener<R> {
    /// `reader` is positioned just after `header`; `data_key` is the header's wrapped
    /// key, unwrapped by the kms. Checks the header tag (key commitment) first.
    pub fn new(reader: R, header: &SealedHeader, data_key: &SecretKey) -> Result<Self, SealError> {
        let keys = ObjectKeys::derive(data_key, &header.salt);
        if !keys.verify_header_tag(header.tagged_bytes(), &header.tag) {
            return Err(SealError::HeaderTampered {
                reason: "header tag (key commitment) does not verify",
            });
        }
        let chunk_size = header.chunk_size as usize;
        let chunks = ChunkReader {
            inner: reader,
            keys,
            header_tag: header.tag,
            chunk_size,
            raw: Vec::with_capacity(2 * chunk_size + 2 * TAG_LEN + TRAILER_LEN + FOOTER_LEN + 1),
            eof: false,
            counter: 0,
            consumed: 0,
            out: Vec::with_capacity(chunk_size + TRAILER_LEN),
            out_pos: 0,
            trailer: None,
        };
        let decoder = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(
            chunk_size.min(128 * 1024),
            chunks,
        ))
        .map_err(|e| SealError::Decompress {
            reason: e.to_string(),
        })?;
        Ok(Self {
            decoder,
            stats: PlainStats::default(),
            summary: None,
        })
    }

    /// Set once the whole object verified (after `read` returned `Ok(0)`).
    pub fn summary(&self) -> Option<&OpenSummary> {
        self.summary.as_ref()
    }

    fn read_typed(&mut self, buf: &mut [u8]) -> Result<usize, SealError> {
        if self.summary.is_some() || buf.is_empty() {
            return Ok(0);
        }
        let n = self.decoder.read(buf).map_err(|e| {
            if e.get_ref().is_some_and(|inner| inner.is::<SealError>()) {
                SealError::from_io(e, "open")
            } else {
                // Not ours, so it came from zstd itself.
                SealError::Decompress {
                    reason: e.to_string(),
                }
            }
        })?;
        if n > 0 {
            self.stats.update(&buf[..n]);
            return Ok(n);
        }
        self.verify_end()?;
        Ok(0)
    }

    fn verify_end(&mut self) -> Result<(), SealError> {
        // zstd may stop at the end of its frame: the rest of the payload must be empty.
        let mut rest = [0u8; 1];
        let more = self
            .decoder
            .get_mut()
            .read(&mut rest)
            .map_err(|e| SealError::from_io(e, "open"))?;
        if more != 0 {
            return Err(SealError::Decompress {
                reason: "payload continues after the zstd stream".into(),
            });
        }
        let chunks = self.decoder.get_ref().get_ref();
        let trailer = chunks
            .trailer
            .ok_or(SealError::Internal("payload ended before the final chunk"))?;
        let (sha, len, records) = std::mem::take(&mut self.stats).finish();
        let mut be = [0u8; 8];
        be.copy_from_slice(&trailer[0..8]);
        if u64::from_be_bytes(be) != records {
            return Err(SealError::TrailerMismatch {
                what: "record count",
            });
        }
        be.copy_from_slice(&trailer[8..16]);
        if u64::from_be_bytes(be) != len {
            return Err(SealError::TrailerMismatch { what: "length" });
        }
        if trailer[16..48] != sha {
            return Err(SealError::TrailerMismatch { what: "SHA-256" });
        }
        self.summary = Some(OpenSummary {
            plaintext_sha256: sha,
            plaintext_len: len,
            record_count: records,
            chunks: chunks.counter,
        });
        Ok(())
    }

    /// Copies the whole plaintext to `out`; returns what was verified.
    pub fn copy_to<W: Write + ?Sized>(mut self, out: &mut W) -> Result<OpenSummary, SealError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.read_typed(&mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(|e| SealError::Io {
                op: "write plaintext",
                source: e,
            })?;
        }
        self.summary
            .ok_or(SealError::Internal("opened without summary"))
    }
}

impl<R: Read> Read for Opener<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_typed(buf).map_err(SealError::into_io)
    }
}

/// Opens with one tenant key (an exported key file): header, context, key, tag.
pub fn open_with_tenant_key<R: Read>(
    mut reader: R,
    key: &TenantKey,
    expected: Option<&SealContext>,
) -> Result<Opener<R>, SealError> {
    let header = SealedHeader::read_from(&mut reader)?;
    if let Some(expected) = expected {
        header.check_context(expected)?;
    }
    let (tenant, version) = (header.context.tenant, header.tenant_key_version);
    if key.tenant != tenant || key.version != version {
        return Err(SealError::Key(KeyError::KeyFileMismatch {
            tenant,
            version,
            file_tenant: key.tenant,
            file_version: key.version,
        }));
    }
    let dk = key.unwrap_data_key(&header.context, &header.wrapped_key)?;
    Opener::new(reader, &header, &dk)
}

/// Opens through a [`Kms`]: reads the header, checks the context, asks the kms to
/// unwrap the data key. The header read is blocking I/O on `reader`.
pub async fn open_with_kms<R: Read>(
    kms: &dyn Kms,
    mut reader: R,
    expected: Option<&SealContext>,
) -> Result<(SealedHeader, Opener<R>), SealError> {
    let header = SealedHeader::read_from(&mut reader)?;
    if let Some(expected) = expected {
        header.check_context(expected)?;
    }
    let dk = kms
        .decrypt_data_key(
            &header.context,
            header.tenant_key_version,
            &header.wrapped_key,
        )
        .await?;
    let opener = Opener::new(reader, &header, &dk)?;
    Ok((header, opener))
}

/// SHA-256 helper for callers that verify an object's stored digest.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}
