//! One pushed batch, from a byte stream to committed ledger row: body byte limit →
//! gunzip → decompressed limit → line checks → `Sealer` → spool file → staging object →
//! `push_batches` row. Nothing here answers 2xx before the row is committed; every
//! failure is a [`Refusal`] that tells Cloudflare whether (and when) to retry.
//!
//! Two sources feed the same core ([`ingest_stream`]): an HTTP request body (the
//! receiver's `POST /push/{destination}`) and an object of the landing bucket (the
//! `ingest.landing` stage, [`crate::landing`]), so both kinds of destination are
//! sealed, deduplicated and recorded by one piece of code.
//!
//! Memory: one 64 KiB read buffer, the decoder's window, the sealer's batches and one
//! partial line — never the body, whatever its size or compression ratio.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_compression::tokio::bufread::GzipDecoder;
use axum::body::Body;
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use futures::{Stream, TryStreamExt};
use sqlx::PgPool;
use tokio::io::AsyncReadExt;
use tokio_util::io::StreamReader;
use uuid::Uuid;

use rainlogs_archive::landing::Landed;
use rainlogs_archive::pipeline::{blocking, put_file, spool_error, Spool};
use rainlogs_archive::push::{self, Destination, NewBatch, Recorded};
use rainlogs_core::storage::ObjectStore;
use rainlogs_core::TaskError;
use rainlogs_sealed::kms::Kms;
use rainlogs_sealed::{SealContext, SealParams, Sealer};

use crate::lines::LineChecker;
use crate::{Inner, ReceiverLimits, Refusal};

/// What the ingest core needs: the ledger, the archive bucket (staging), the kms and
/// the limits. Borrowed from the receiver or from the landing stage.
#[derive(Clone, Copy)]
pub(crate) struct Core<'a> {
    pub(crate) pool: &'a PgPool,
    pub(crate) store: &'a ObjectStore,
    pub(crate) kms: &'a dyn Kms,
    pub(crate) limits: ReceiverLimits,
}

/// Decompressed bytes read per step.
const READ_BUF: usize = 64 * 1024;

/// What happened to an accepted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// A new batch: sealed, staged and recorded.
    Batch { id: Uuid, records: u64 },
    /// The destination already had this content: nothing stored again.
    Duplicate { id: Uuid },
    /// Cloudflare's validation upload: recorded on the destination, not archived.
    Validation,
    /// A body without a single byte of NDJSON: nothing to store.
    Empty,
}

/// Why the body stream stopped, carried through the decoder inside an `io::Error`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamFault {
    #[error("request body is over {0} bytes")]
    BodyTooLarge(u64),
    #[error("reading the request body: {0}")]
    Body(String),
    /// The source failed to deliver bytes it has (a landing object's read broke off):
    /// nothing is wrong with the batch, retry.
    #[error("reading the batch: {0}")]
    Source(String),
}

impl StreamFault {
    /// A read error of a source whose bytes are fine but did not arrive (retryable).
    pub(crate) fn source(e: impl std::fmt::Display) -> io::Error {
        io::Error::other(StreamFault::Source(e.to_string()))
    }
}

fn fault(e: &io::Error) -> Option<&StreamFault> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<StreamFault>())
}

/// Microseconds, as Postgres and the sealed header keep time.
fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

struct Streamed {
    checker: LineChecker,
    /// The sealed spool and what sealing reported; `None` when nothing is to be stored.
    sealed: Option<(Spool, rainlogs_sealed::SealSummary)>,
}

/// Streams, seals, stages and records one batch for `dest` from a request body.
pub(crate) async fn ingest(
    inner: &Inner,
    dest: &Destination,
    body: Body,
) -> Result<Accepted, Refusal> {
    let core = Core {
        pool: &inner.pool,
        store: &inner.store,
        kms: inner.kms.as_ref(),
        limits: inner.limits,
    };
    let stream = body
        .into_data_stream()
        .map_err(|e| io::Error::other(StreamFault::Body(e.to_string())));
    ingest_stream(core, dest, stream, None).await
}

/// Streams, seals, stages and records one batch for `dest` from any stream of gzip
/// bytes; `landed` names the landing object it came from (recorded with the batch).
pub(crate) async fn ingest_stream<S>(
    inner: Core<'_>,
    dest: &Destination,
    source: S,
    landed: Option<&Landed>,
) -> Result<Accepted, Refusal>
where
    S: Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
{
    let limits = inner.limits;
    let received_at = now_micros();
    let context = SealContext {
        tenant: dest.tenant_id,
        zone: dest.zone_id,
        window_start: received_at,
        window_end: received_at + TimeDelta::microseconds(1),
    };
    let data_key = inner
        .kms
        .generate_data_key(&context)
        .await
        .map_err(|e| Refusal::infra(TaskError::from(e)))?;
    let (spool, file) = Spool::create().map_err(|e| Refusal::infra(spool_error(e)))?;
    let sealer = Sealer::new(
        io::BufWriter::new(file),
        SealParams::new(context, &data_key),
    )
    .map_err(|e| Refusal::infra(TaskError::from(e)))?;
    drop(data_key);

    let gzip_bytes = Arc::new(AtomicU64::new(0));
    let counted = gzip_bytes.clone();
    let max_body = limits.max_body_bytes;
    let stream = source.and_then(move |chunk| {
        let seen = counted.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
        futures::future::ready(if seen > max_body {
            Err(io::Error::other(StreamFault::BodyTooLarge(max_body)))
        } else {
            Ok(chunk)
        })
    });
    let mut decoder = GzipDecoder::new(StreamReader::new(Box::pin(stream)));
    decoder.multiple_members(true);

    let handle = tokio::runtime::Handle::current();
    let streamed = blocking("seal pushed batch", move || {
        Ok(seal_stream(handle, decoder, sealer, spool, limits))
    })
    .await
    .map_err(Refusal::infra)??;

    let Streamed { checker, sealed } = streamed;
    if checker.is_validation() {
        push::mark_validated(inner.pool, dest.id)
            .await
            .map_err(|e| Refusal::infra(e.into()))?;
        tracing::info!(destination = %dest.id, "validation upload received");
        return Ok(Accepted::Validation);
    }
    let Some((spool, summary)) = sealed else {
        return Ok(Accepted::Empty);
    };

    let db = |e: rainlogs_core::db::DbError| Refusal::infra(e.into());
    if let Some(id) = push::find_batch(inner.pool, dest.id, &summary.plaintext_sha256)
        .await
        .map_err(db)?
    {
        push::note_delivery(inner.pool, dest.id).await.map_err(db)?;
        tracing::info!(destination = %dest.id, batch = %id, "duplicate delivery acknowledged");
        return Ok(Accepted::Duplicate { id });
    }

    let id = Uuid::now_v7();
    let staging_key = push::staging_key(dest.zone_id, id);
    put_file(inner.store, &staging_key, spool.path())
        .await
        .map_err(Refusal::infra)?;
    drop(spool);
    let batch = NewBatch {
        id,
        destination_id: dest.id,
        zone_id: dest.zone_id,
        content_sha256: summary.plaintext_sha256,
        record_count: summary.record_count,
        malformed_lines: checker.malformed,
        ndjson_bytes: summary.plaintext_len,
        gzip_bytes: gzip_bytes.load(Ordering::Relaxed),
        edge_span: checker.edge_span(),
        received_at,
        staging_key: staging_key.clone(),
        minute_counts: checker.minute_counts(),
    };
    let recorded = match push::record_batch_from(inner.pool, &batch, landed).await {
        Ok(recorded) => recorded,
        Err(e) => {
            // Not acknowledged: Cloudflare retries and stores it anew. Remove what this
            // attempt staged (only a crash right here still leaves a sealed stray).
            if let Err(del) = inner.store.delete(&staging_key).await {
                tracing::warn!(key = %staging_key, error = %del, "could not delete an unrecorded staged batch");
            }
            return Err(db(e));
        }
    };
    match recorded {
        Recorded::New { window_id } => {
            tracing::info!(
                destination = %dest.id,
                batch = %id,
                window = window_id,
                records = summary.record_count,
                malformed = checker.malformed,
                ndjson_bytes = summary.plaintext_len,
                "batch accepted"
            );
            Ok(Accepted::Batch {
                id,
                records: summary.record_count,
            })
        }
        Recorded::Duplicate(other) => {
            // A concurrent delivery of the same content committed first: ours is surplus.
            if let Err(e) = inner.store.delete(&staging_key).await {
                tracing::warn!(key = %staging_key, error = %e, "could not delete a surplus staged batch");
            }
            Ok(Accepted::Duplicate { id: other })
        }
    }
}

/// The blocking half: reads decompressed bytes, checks lines, seals into the spool.
fn seal_stream<R>(
    handle: tokio::runtime::Handle,
    mut decoder: R,
    mut sealer: Sealer<io::BufWriter<std::fs::File>>,
    spool: Spool,
    limits: crate::ReceiverLimits,
) -> Result<Streamed, Refusal>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut checker = LineChecker::new(limits.max_line_bytes);
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let read = handle.block_on(tokio::time::timeout(
            limits.body_idle,
            decoder.read(&mut buf),
        ));
        let n = match read {
            Err(_) => return Err(Refusal::Stalled(limits.body_idle)),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                return Err(match fault(&e) {
                    Some(StreamFault::BodyTooLarge(max)) => Refusal::TooLarge(format!(
                        "the gzip body is over the receiver's limit of {max} bytes"
                    )),
                    Some(StreamFault::Body(why)) => Refusal::BadRequest(why.clone()),
                    Some(StreamFault::Source(why)) => {
                        Refusal::infra(TaskError::retryable("push.source_read", why.clone()))
                    }
                    None => Refusal::BadRequest(format!("the body is not valid gzip: {e}")),
                })
            }
        };
        if n == 0 {
            break;
        }
        if checker.total + n as u64 > limits.max_ndjson_bytes {
            return Err(Refusal::TooLarge(format!(
                "the batch decompresses to more than the receiver's limit of {} bytes",
                limits.max_ndjson_bytes
            )));
        }
        checker.update(&buf[..n]);
        sealer
            .write_all(&buf[..n])
            .map_err(|e| Refusal::infra(spool_error(e)))?;
    }
    checker.finish();
    if checker.total == 0 || checker.is_validation() {
        return Ok(Streamed {
            checker,
            sealed: None,
        });
    }
    let (writer, summary) = sealer
        .finish()
        .map_err(|e| Refusal::infra(TaskError::from(e)))?;
    let file = writer
        .into_inner()
        .map_err(|e| Refusal::infra(spool_error(e.into_error())))?;
    drop(file);
    Ok(Streamed {
        checker,
        sealed: Some((spool, summary)),
    })
}
