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

use axum::body::Body;
use tower::ServiceExt;

use crate::Receiver;

/// Largest answer read back from the router (answers are small JSON documents).
const MAX_ANSWER: usize = 64 * 1024;

/// Serves Lambda invocations until the runtime stops the process.
pub async fn run(receiver: Receiver) -> Result<(), lambda_http::Error> {
    let router = receiver.router();
    lambda_http::run(lambda_http::service_fn(move |req: lambda_http::Request| {
        let router = router.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = match body {
                lambda_http::Body::Empty => Body::empty(),
                lambda_http::Body::Text(text) => Body::from(text),
                lambda_http::Body::Binary(bytes) => Body::from(bytes),
                other => Body::from(other.to_vec()),
            };
            let answer = match router
                .oneshot(axum::http::Request::from_parts(parts, body))
                .await
            {
                Ok(answer) => answer,
                Err(never) => match never {},
            };
            let (parts, body) = answer.into_parts();
            let bytes = axum::body::to_bytes(body, MAX_ANSWER).await?;
            let body = match String::from_utf8(bytes.to_vec()) {
                Ok(text) => lambda_http::Body::Text(text),
                Err(e) => lambda_http::Body::Binary(e.into_bytes()),
            };
            Ok::<_, lambda_http::Error>(lambda_http::Response::from_parts(parts, body))
        }
    }))
    .await
}
