//! The remote invoker: the Lambda Invoke API, signed through the AWS SDK or plain.
//!
//! Two modes ([`RemoteApi`], `RAINLOGS_REMOTE_MODE`, docs/QUEUE.md):
//! - **aws**: `aws-sdk-lambda`'s `Invoke` — SigV4-signed with credentials from the
//!   standard chain (environment, profile, web identity, ECS/EC2 roles), the SDK's
//!   standard retries (throttling, `TooManyRequestsException`, among them), an
//!   optional endpoint override (`cargo lambda watch`, an emulator: they ignore the
//!   signature).
//! - **plain**: unsigned `POST {endpoint}/2015-03-31/functions/{name}/invocations`,
//!   for the Runtime Interface Emulator and `cargo lambda watch`.
//!
//! Both call synchronously (`RequestResponse`) and read an answer the same way: a
//! function error is a 200 with `X-Amz-Function-Error` and `{errorType, errorMessage}`
//! in the body (`cargo lambda watch`: a 500 with that body), which
//! [`TaskError::from_lambda`] turns back into the handler's own classified error. The service refusing (throttled, 5xx, not ready) is retryable; a
//! missing function or a bad request is permanent. Errors name the function, never a
//! credential.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rainlogs_core::error::error_chain;
use rainlogs_core::TaskError;

use crate::config::{RemoteApi, RemoteConfig};
use crate::invoker::Invoker;

/// Largest response accepted (Lambda's own synchronous limit is 6 MB).
const MAX_RESPONSE: usize = 6 * 1024 * 1024;

pub struct Remote {
    transport: Transport,
    function_name: String,
    timeout: Duration,
}

enum Transport {
    Aws(aws_sdk_lambda::Client),
    // Boxed: the hyper client is much larger than the SDK's (a shared handle).
    Plain {
        client: Box<Client<HttpConnector, Full<Bytes>>>,
        endpoint: String,
    },
}

impl Remote {
    /// The invoker `cfg` describes; the AWS mode loads the standard credential and
    /// region chain (no network call: credentials are resolved at the first request).
    pub async fn connect(cfg: &RemoteConfig) -> Self {
        match &cfg.api {
            RemoteApi::Plain { .. } => Self::with_sdk_config(cfg, None),
            RemoteApi::Aws { .. } => {
                let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .load()
                    .await;
                Self::with_sdk_config(cfg, Some(&sdk))
            }
        }
    }

    /// The invoker over a given SDK configuration (tests: static dummy credentials).
    /// `sdk` is used in the AWS mode only; `None` there means an empty configuration.
    pub fn with_sdk_config(cfg: &RemoteConfig, sdk: Option<&aws_config::SdkConfig>) -> Self {
        let transport = match &cfg.api {
            RemoteApi::Plain { endpoint } => {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(Duration::from_secs(5)));
                Transport::Plain {
                    client: Box::new(Client::builder(TokioExecutor::new()).build(connector)),
                    endpoint: endpoint.clone(),
                }
            }
            RemoteApi::Aws {
                endpoint_url,
                region,
                max_attempts,
            } => {
                let base = sdk.cloned().unwrap_or_else(|| {
                    aws_config::SdkConfig::builder()
                        .behavior_version(aws_config::BehaviorVersion::latest())
                        .build()
                });
                let mut conf = aws_sdk_lambda::config::Builder::from(&base)
                    .retry_config(
                        aws_config::retry::RetryConfig::standard().with_max_attempts(*max_attempts),
                    )
                    .timeout_config(
                        aws_config::timeout::TimeoutConfig::builder()
                            .connect_timeout(Duration::from_secs(5))
                            .operation_timeout(cfg.timeout)
                            .build(),
                    );
                if let Some(url) = endpoint_url {
                    conf = conf.endpoint_url(url);
                }
                if let Some(region) = region {
                    conf = conf.region(aws_config::Region::new(region.clone()));
                }
                Transport::Aws(aws_sdk_lambda::Client::from_conf(conf.build()))
            }
        };
        Self {
            transport,
            function_name: cfg.function_name.clone(),
            timeout: cfg.timeout,
        }
    }

    /// The Lambda function name for a stage.
    pub fn lambda_name(&self, function: &str) -> String {
        self.function_name.replace("{function}", function)
    }

    async fn invoke_aws(
        &self,
        client: &aws_sdk_lambda::Client,
        name: &str,
        body: Vec<u8>,
    ) -> Result<Answer, TaskError> {
        let output = client
            .invoke()
            .function_name(name)
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(body))
            .send()
            .await
            .map_err(|e| aws_error(name, self.timeout, e))?;
        Ok(Answer {
            function_error: output.function_error().map(str::to_owned),
            body: output
                .payload
                .map(Blob::into_inner)
                .unwrap_or_default()
                .into(),
        })
    }

    async fn invoke_plain(
        &self,
        client: &Client<HttpConnector, Full<Bytes>>,
        endpoint: &str,
        name: &str,
        body: Vec<u8>,
    ) -> Result<Answer, TaskError> {
        let url = format!("{endpoint}/2015-03-31/functions/{name}/invocations");
        let where_ = || format!("lambda invoke {url}");
        let request = hyper::Request::post(&url)
            .header("content-type", "application/json")
            .header("x-amz-invocation-type", "RequestResponse")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| TaskError::permanent("remote.request", format!("{}: {e}", where_())))?;
        let response = tokio::time::timeout(self.timeout, client.request(request))
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
            if let Some(err) = FunctionError::in_refusal(&bytes) {
                return Err(err);
            }
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
        Ok(Answer {
            function_error,
            body: bytes,
        })
    }
}

/// What the Invoke API answered with a 2xx: the payload, and whether it is the
/// function's error.
struct Answer {
    function_error: Option<String>,
    body: Bytes,
}

/// A function's error body, `{errorType, errorMessage}`.
#[derive(serde::Deserialize, Default)]
struct FunctionError {
    #[serde(default, rename = "errorType")]
    error_type: String,
    #[serde(default, rename = "errorMessage")]
    error_message: String,
}

impl FunctionError {
    /// The function's own error when `body` is one: `cargo lambda watch` answers a
    /// function error with HTTP 500 and this body, without `X-Amz-Function-Error`
    /// (AWS answers 200 with the header). Lambda's service errors have no `errorType`.
    fn in_refusal(body: &[u8]) -> Option<TaskError> {
        let b: FunctionError = serde_json::from_slice(body).ok()?;
        (!b.error_type.is_empty()).then(|| TaskError::from_lambda(&b.error_type, &b.error_message))
    }
}

impl Answer {
    fn into_result(self, name: &str) -> Result<serde_json::Value, TaskError> {
        if let Some(kind) = self.function_error {
            let b: FunctionError = serde_json::from_slice(&self.body).unwrap_or_default();
            let error_type = if b.error_type.is_empty() {
                kind
            } else {
                b.error_type
            };
            return Err(TaskError::from_lambda(&error_type, &b.error_message));
        }
        if self.body.len() > MAX_RESPONSE {
            return Err(TaskError::permanent(
                "output.invalid",
                format!(
                    "lambda invoke {name}: answer of {} bytes is over {MAX_RESPONSE}",
                    self.body.len()
                ),
            ));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            TaskError::permanent(
                "output.invalid",
                format!("lambda invoke {name}: answer is not JSON: {e}"),
            )
        })
    }
}

/// The class of an Invoke the service (not the function) refused, once the SDK's own
/// retries are spent: throttled, unavailable and not-ready-yet come back later;
/// a missing function, a bad payload or a denied permission do not.
fn aws_error(name: &str, timeout: Duration, err: SdkError<InvokeError>) -> TaskError {
    let where_ = format!("lambda invoke {name}");
    match &err {
        SdkError::TimeoutError(_) => TaskError::retryable(
            "function.timeout",
            format!("{where_}: no answer within {timeout:?}"),
        ),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => TaskError::retryable(
            "remote.unreachable",
            format!("{where_}: {}", error_chain(&err)),
        ),
        SdkError::ConstructionFailure(_) => {
            TaskError::permanent("remote.request", format!("{where_}: {}", error_chain(&err)))
        }
        SdkError::ServiceError(ctx) => {
            if let Some(err) = ctx.raw().body().bytes().and_then(FunctionError::in_refusal) {
                return err;
            }
            let status = ctx.raw().status().as_u16();
            let service = ctx.err();
            let code = service.code().unwrap_or("unknown");
            let msg = format!(
                "{where_}: HTTP {status} {code}: {}",
                service.message().unwrap_or("")
            );
            match service {
                InvokeError::TooManyRequestsException(t) => {
                    let err = TaskError::retryable("remote.throttled", msg);
                    match t
                        .retry_after_seconds()
                        .and_then(|s| s.trim().parse::<u64>().ok())
                    {
                        Some(s) => err.with_retry_after(Duration::from_secs(s)),
                        None => err,
                    }
                }
                // The function is being created or updated, its network interfaces are
                // not ready, or a dependency had a moment: all pass.
                InvokeError::ResourceConflictException(_)
                | InvokeError::ResourceNotReadyException(_)
                | InvokeError::EniLimitReachedException(_)
                | InvokeError::SubnetIpAddressLimitReachedException(_)
                | InvokeError::SnapStartNotReadyException(_)
                | InvokeError::SnapStartTimeoutException(_)
                | InvokeError::EfsMountTimeoutException(_)
                | InvokeError::EfsioException(_)
                | InvokeError::ServiceException(_) => {
                    TaskError::retryable("remote.unavailable", msg)
                }
                _ if status == 429 || status >= 500 => {
                    TaskError::retryable("remote.unavailable", msg)
                }
                _ => TaskError::permanent("remote.rejected", msg),
            }
        }
        _ => TaskError::retryable(
            "remote.unreachable",
            format!("{where_}: {}", error_chain(&err)),
        ),
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
        let body = serde_json::to_vec(&event).map_err(|e| {
            TaskError::permanent("event.invalid", format!("event does not serialise: {e}"))
        })?;
        let answer = match &self.transport {
            Transport::Aws(client) => self.invoke_aws(client, &name, body).await?,
            Transport::Plain { client, endpoint } => {
                self.invoke_plain(client, endpoint, &name, body).await?
            }
        };
        answer.into_result(&name)
    }

    fn functions(&self) -> Vec<String> {
        crate::config::STAGE_FUNCTIONS
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }
}
