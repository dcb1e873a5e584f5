//! The API as a Lambda function behind a function URL, API Gateway (HTTP or REST API)
//! or an ALB: `lambda_http` turns each invocation's event into an HTTP request for the
//! same router the server runs — authentication, limits and errors are the same code.
//! Behind an API Gateway stage set `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH=true` so that
//! paths are `/v1/…`.

use crate::Api;

/// Largest answer read back from the router: a page of 500 windows or the OpenAPI
/// document are far below it; Lambda itself answers at most 6 MB.
const MAX_ANSWER: usize = 6 * 1024 * 1024;

/// Serves Lambda invocations until the runtime stops the process.
pub async fn run(api: Api) -> Result<(), lambda_http::Error> {
    rainlogs_core::http_lambda::serve(api.router(), MAX_ANSWER).await
}
