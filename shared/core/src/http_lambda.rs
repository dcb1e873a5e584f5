//! An HTTP function's axum router served under a Lambda runtime (function URL, API
//! Gateway HTTP or REST API, ALB): `lambda_http` turns each invocation's event into an
//! HTTP request for the same router the server runs, so every rule of the router holds
//! unchanged. The receiver and the API use it.

use axum::body::Body;
use tower::ServiceExt;

/// Serves Lambda invocations with `router` until the runtime stops the process;
/// answers are read back up to `max_answer` bytes (Lambda itself returns at most 6 MB).
pub async fn serve(router: axum::Router, max_answer: usize) -> Result<(), lambda_http::Error> {
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
            let bytes = axum::body::to_bytes(body, max_answer).await?;
            let body = match String::from_utf8(bytes.to_vec()) {
                Ok(text) => lambda_http::Body::Text(text),
                Err(e) => lambda_http::Body::Binary(e.into_bytes()),
            };
            Ok::<_, lambda_http::Error>(lambda_http::Response::from_parts(parts, body))
        }
    }))
    .await
}
