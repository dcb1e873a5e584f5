//! Long answers streamed from a worker: a restore or a data-subject search writes
//! through `std::io::Write` while it verifies, on a blocking thread of its own driven
//! by the runtime's handle ([`spawn`]); what it writes reaches the client as it is
//! produced, gzip-compressed when the client accepts it ([`wants_gzip`]), in chunks of
//! [`CHUNK`] bytes with back-pressure (a slow client slows the worker, memory stays
//! bounded). [`respond`] waits for the first bytes (or the end) before answering, so an
//! error found before any output is a proper problem+json answer; one found after the
//! first byte aborts the response without its terminating chunk, so a cut-off export
//! never looks complete to the client.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use flate2::write::GzEncoder;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};

use crate::problem::Problem;

/// Bytes gathered before they are sent on.
pub const CHUNK: usize = 64 * 1024;
/// NDJSON's media type.
pub const NDJSON: &str = "application/x-ndjson";

/// What the worker sends: bytes, then how it ended.
pub enum Msg {
    Data(Bytes),
    End(Result<(), Problem>),
}

struct ChannelWriter {
    tx: mpsc::Sender<Msg>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let bytes = Bytes::from(std::mem::take(&mut self.buf));
        // The worker's thread is its own: blocking it while the client reads is the
        // back-pressure.
        futures::executor::block_on(self.tx.send(Msg::Data(bytes))).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

enum Sink {
    Plain(ChannelWriter),
    Gzip(GzEncoder<ChannelWriter>),
}

/// The worker's output (cheap to clone; every clone writes to the same response).
#[derive(Clone)]
pub struct Output {
    sink: Arc<Mutex<Option<Sink>>>,
    written: Arc<AtomicU64>,
}

impl Output {
    /// Bytes written so far (before compression).
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Ends the compressed stream and sends what is left.
    fn finish(&self) -> std::io::Result<()> {
        let sink = self.sink.lock().unwrap_or_else(|p| p.into_inner()).take();
        match sink {
            Some(Sink::Plain(mut w)) => w.flush(),
            Some(Sink::Gzip(g)) => g.finish()?.flush(),
            None => Ok(()),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        let n = match sink.as_mut() {
            Some(Sink::Plain(w)) => w.write(buf)?,
            Some(Sink::Gzip(g)) => g.write(buf)?,
            None => return Err(std::io::Error::other("the answer is already finished")),
        };
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.sink.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            Some(Sink::Plain(w)) => w.flush(),
            Some(Sink::Gzip(g)) => g.flush(),
            None => Ok(()),
        }
    }
}

/// Whether the request's `Accept-Encoding` takes gzip (and does not refuse it, q=0).
pub fn wants_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            coding.eq_ignore_ascii_case("gzip") && !refused
        })
}

/// Runs `work` on a blocking thread, driven by the current runtime's handle (its
/// future need not be `Send`), writing to the [`Output`] it is given; returns what
/// [`respond`] streams.
pub fn spawn<F, Fut>(gzip: bool, work: F) -> mpsc::Receiver<Msg>
where
    F: FnOnce(Output) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), Problem>>,
{
    let (tx, rx) = mpsc::channel(4);
    let writer = ChannelWriter {
        tx: tx.clone(),
        buf: Vec::with_capacity(CHUNK),
    };
    let sink = if gzip {
        Sink::Gzip(GzEncoder::new(writer, flate2::Compression::fast()))
    } else {
        Sink::Plain(writer)
    };
    let output = Output {
        sink: Arc::new(Mutex::new(Some(sink))),
        written: Arc::new(AtomicU64::new(0)),
    };
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let result = handle.block_on(work(output.clone()));
        // A failure before any output is answered as a problem: nothing of the body
        // (not even a gzip header) may go out first.
        let finished = if result.is_err() && output.written() == 0 {
            Ok(())
        } else {
            output.finish()
        };
        let result = match (result, finished) {
            (Ok(()), Err(e)) => Err(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "response.write_failed",
                format!("the answer could not be written to the end: {e}"),
            )),
            (result, _) => result,
        };
        let mut tx = tx;
        // The client may be gone: then nobody needs to hear how it ended.
        let _ = futures::executor::block_on(tx.send(Msg::End(result)));
    });
    rx
}

/// Answers with what the worker streams: waits up to `first_wait` for its first bytes
/// or its end — an end with an error before any byte is the answer's problem — then
/// streams (200) with `content_type`, gzip-encoded when `gzip`.
pub async fn respond(
    mut rx: mpsc::Receiver<Msg>,
    content_type: &'static str,
    gzip: bool,
    first_wait: Duration,
    extra: HeaderMap,
) -> Response {
    let head =
        match tokio::time::timeout(first_wait, rx.next()).await {
            Ok(Some(Msg::End(Err(problem)))) => return problem.into_response(),
            Ok(None) => return Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "response.worker_failed",
                "the worker producing the answer stopped without finishing (see the server log)",
            )
            .into_response(),
            Ok(Some(msg)) => Some(msg),
            // Slow to start (a long stretch with no match): answer now and stream on.
            Err(_) => None,
        };
    let body = futures::stream::unfold(
        (head, rx, false),
        |(mut pending, mut rx, stopped)| async move {
            if stopped {
                return None;
            }
            let msg = match pending.take() {
                Some(m) => Some(m),
                None => rx.next().await,
            };
            match msg {
                Some(Msg::Data(b)) => Some((Ok(b), (None, rx, false))),
                Some(Msg::End(Ok(()))) => None,
                Some(Msg::End(Err(p))) => Some((
                    Err(std::io::Error::other(format!("{}: {}", p.code, p.detail))),
                    (None, rx, true),
                )),
                None => Some((
                    Err(std::io::Error::other(
                        "the worker stopped without finishing",
                    )),
                    (None, rx, true),
                )),
            }
        },
    );
    let mut resp = (StatusCode::OK, Body::from_stream(body)).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    headers.extend(extra);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_taken_when_accepted_and_not_refused() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            wants_gzip(&m)
        };
        assert!(h("gzip"));
        assert!(h("br, GZIP;q=0.5"));
        assert!(!h("gzip;q=0"));
        assert!(!h("br, identity"));
        assert!(!wants_gzip(&HeaderMap::new()));
    }
}
