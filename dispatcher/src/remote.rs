//! The remote invoker: the Lambda Invoke API at a configured endpoint.
//!
//! `POST {endpoint}/2015-03-31/functions/{name}/invocations` with the envelope as the
//! body, synchronous (`RequestResponse`). A function error comes back as 200 with an
//! `X-Amz-Function-Error` header and `{errorType, errorMessage}` in the body, which
//! [`TaskError::from_lambda`] turns back into the handler's classified error. Works
//! with the AWS Runtime Interface Emulator and `cargo lambda watch`; requests are not
//! SigV4-signed, so real AWS Lambda needs a signing proxy in front (docs/QUEUE.md).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rainlogs_core::TaskError;

use crate::config::RemoteConfig;
use crate::invoker::Invoker;

/// Largest response accepted (Lambda's own synchronous limit is 6 MB).
const MAX_RESPONSE: usize = 6 * 1024 * 1024;

pub struct Remote {
    client: Client<HttpConnector, Full<Bytes>>,
    endpoint: String,
    function_name: String,
    timeout: Duration,
}

impl Remote {
    pub fn new(cfg: &RemoteConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            endpoint: cfg.endpoint.clone(),
            function_name: cfg.function_name.clone(),
            timeout: cfg.timeout,
        }
    }

    /// The Lambda function name for a stage.
    pub fn lambda_name(&self, function: &str) -> String {
        self.function_name.replace("{function}", function)
    }
}

#[async_trait]
impl Invoker for Remote {
    async fn invoke(
        &self,
        function: &str,
        event: serde_json::Value,
    ) -> Result<serde_json::Value, TaskError> {
        let name = self.lambda_name(function);
        let url = format!("{}/2015-03-31/functions/{name}/invocations", self.endpoint);
        let where_ = || format!("lambda invoke {url}");
        let body = serde_json::to_vec(&event).map_err(|e| {
            TaskError::permanent("event.invalid", format!("event does not serialise: {e}"))
        })?;
        let request = hyper::Request::post(&url)
            .header("content-type", "application/json")
            .header("x-amz-invocation-type", "RequestResponse")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| TaskError::permanent("remote.request", format!("{}: {e}", where_())))?;
        let response = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| {
                TaskError::retryable(
                    "function.timeout",
                    format!("{}: no answer within {:?}", where_(), self.timeout),
                )
            })?
            .map_err(|e| {
                TaskError::retryable("remote.unreachable", format!("{}: {e}", where_()))
            })?;
        let status = response.status();
        let function_error = response
            .headers()
            .get("x-amz-function-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let limited = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE);
        let bytes = tokio::time::timeout(self.timeout, limited.collect())
            .await
            .map_err(|_| {
                TaskError::retryable(
                    "function.timeout",
                    format!("{}: body not complete within {:?}", where_(), self.timeout),
                )
            })?
            .map_err(|e| TaskError::retryable("remote.body", format!("{}: {e}", where_())))?
            .to_bytes();
        if !status.is_success() {
            // The service, not the function, refused: throttling and 5xx are transient,
            // a missing function or a bad request is not.
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
            let msg = format!("{}: HTTP {status}: {text}", where_());
            let err = if status.as_u16() == 429 || status.is_server_error() {
                TaskError::retryable("remote.unavailable", msg)
            } else {
                TaskError::permanent("remote.rejected", msg)
            };
            return Err(match retry_after {
                Some(s) => err.with_retry_after(Duration::from_secs(s)),
                None => err,
            });
        }
        if let Some(kind) = function_error {
            #[derive(serde::Deserialize, Default)]
            struct Body {
                #[serde(default, rename = "errorType")]
                error_type: String,
                #[serde(default, rename = "errorMessage")]
                error_message: String,
            }
            let b: Body = serde_json::from_slice(&bytes).unwrap_or_default();
            let error_type = if b.error_type.is_empty() {
                kind
            } else {
                b.error_type
            };
            return Err(TaskError::from_lambda(&error_type, &b.error_message));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            TaskError::permanent(
                "output.invalid",
                format!("{}: answer is not JSON: {e}", where_()),
            )
        })
    }

    fn functions(&self) -> Vec<String> {
        crate::config::STAGE_FUNCTIONS
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }
}
