//! The receiver as a Lambda function behind a function URL, API Gateway (HTTP or REST
//! API) or an ALB: `lambda_http` turns each invocation's event into an HTTP request for
//! the same axum router the server runs, so authentication, limits, sealing and the
//! 2xx-only-after-commit rule are the same code.
//!
//! What differs is the transport: Lambda hands the whole request body in the event
//! (at most 6 MB for a function URL or API Gateway), so Logpush jobs pointed at a
//! Lambda URL need `max_upload_bytes` at 5 MB (the minimum) and a good compression
//! ratio; larger batches need the server (docs/INGEST.md, "Running it"). Behind an
//! API Gateway stage set `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH=true` so that the path
//! is `/push/{destination}`.

use crate::Receiver;

/// Largest answer read back from the router (answers are small JSON documents).
const MAX_ANSWER: usize = 64 * 1024;

/// Serves Lambda invocations until the runtime stops the process.
pub async fn run(receiver: Receiver) -> Result<(), lambda_http::Error> {
    rainlogs_core::http_lambda::serve(receiver.router(), MAX_ANSWER).await
}
