//! The API as a Lambda function behind a function URL, API Gateway (HTTP or REST API)
//! or an ALB: `lambda_http` turns each invocation's event into an HTTP request for the
//! same router the server runs — authentication, limits and errors are the same code.
//! Behind an API Gateway stage set `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH=true` so that
//! paths are `/v1/…`.

use axum::body::Body;
use tower::ServiceExt;

use crate::Api;

/// Largest answer read back from the router: a page of 500 windows or the OpenAPI
/// document are far below it; Lambda itself answers at most 6 MB.
const MAX_ANSWER: usize = 6 * 1024 * 1024;

/// Serves Lambda invocations until the runtime stops the process.
pub async fn run(api: Api) -> Result<(), lambda_http::Error> {
    let router = api.router();
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
