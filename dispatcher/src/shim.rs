//! The runtime shim: the dispatcher plays AWS Lambda for the real function binaries.
//!
//! For each function it runs `instances` child processes (the very binaries deployed
//! to Lambda) and gives each its own loopback listener serving the Lambda Runtime API
//! (`GET /2018-06-01/runtime/invocation/next`, `POST …/invocation/{id}/response`,
//! `POST …/invocation/{id}/error`, `POST …/init/error`), named to the child through
//! `AWS_LAMBDA_RUNTIME_API`. One listener per child means the shim always knows which
//! invocation a child holds, so when a child dies mid-invocation that invocation fails
//! at once as retryable `function.crashed` and the child is restarted (with backoff).
//! An invocation past its deadline fails as `function.timeout` and its child is
//! killed and restarted, as Lambda does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rainlogs_core::TaskError;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::config::ShimConfig;
use crate::invoker::Invoker;

type Reply = oneshot::Sender<Result<serde_json::Value, TaskError>>;

/// One invocation waiting for, or held by, a child.
struct Invocation {
    request_id: String,
    event: Vec<u8>,
    deadline_ms: i64,
    trace_id: String,
    reply: Reply,
}

/// One child process and the Runtime API endpoint it talks to.
struct Instance {
    function: String,
    arn: String,
    /// Invocations of this function, shared by its instances.
    inbox: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>>,
    /// The invocation this child holds (at most one: a Lambda runtime is serial).
    held: Mutex<Option<(String, Reply)>>,
    /// Asks the supervisor to kill the child (a timed-out invocation).
    kill: Notify,
}

impl Instance {
    fn held(&self) -> std::sync::MutexGuard<'_, Option<(String, Reply)>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Completes the held invocation if it is `request_id`.
    fn complete(&self, request_id: &str, result: Result<serde_json::Value, TaskError>) -> bool {
        let mut held = self.held();
        match held.take() {
            Some((id, reply)) if id == request_id => {
                let _ = reply.send(result);
                true
            }
            other => {
                *held = other;
                false
            }
        }
    }

    /// Fails whatever the child held (it died or was killed).
    fn fail_held(&self, error: TaskError) {
        if let Some((_, reply)) = self.held().take() {
            let _ = reply.send(Err(error));
        }
    }
}

struct Pool {
    sender: mpsc::UnboundedSender<Invocation>,
    instances: Vec<Arc<Instance>>,
}

/// The runtime-shim invoker.
pub struct Shim {
    pools: HashMap<String, Pool>,
    timeout: Duration,
}

impl Shim {
    /// Binds the listeners and starts the children; they stop when `shutdown` fires.
    pub async fn start(cfg: &ShimConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<Self> {
        let mut pools = HashMap::new();
        for f in &cfg.functions {
            let binary = f.binary(&cfg.functions_dir);
            if !binary.is_file() {
                anyhow::bail!(
                    "runtime shim: function binary {} for {:?} not found (build it, or set RAINLOGS_SHIM_FUNCTIONS_DIR / RAINLOGS_SHIM_FUNCTIONS=name=path)",
                    binary.display(),
                    f.name
                );
            }
            let (sender, rx) = mpsc::unbounded_channel();
            let inbox = Arc::new(tokio::sync::Mutex::new(rx));
            let mut instances = Vec::new();
            for n in 0..cfg.instances {
                let instance = Arc::new(Instance {
                    function: f.name.clone(),
                    arn: format!(
                        "arn:aws:lambda:local:000000000000:function:rainlogs-{}",
                        f.name
                    ),
                    inbox: Arc::clone(&inbox),
                    held: Mutex::new(None),
                    kill: Notify::new(),
                });
                let addr = serve(Arc::clone(&instance), shutdown.clone()).await?;
                tokio::spawn(supervise(
                    Arc::clone(&instance),
                    binary.clone(),
                    addr,
                    n,
                    shutdown.clone(),
                ));
                instances.push(instance);
            }
            pools.insert(f.name.clone(), Pool { sender, instances });
        }
        Ok(Self {
            pools,
            timeout: cfg.timeout,
        })
    }
}

#[async_trait]
impl Invoker for Shim {
    async fn invoke(
        &self,
        function: &str,
        event: serde_json::Value,
    ) -> Result<serde_json::Value, TaskError> {
        let Some(pool) = self.pools.get(function) else {
            return Err(TaskError::permanent(
                "function.unknown",
                format!(
                    "runtime shim runs no function {function:?} (has: {})",
                    self.functions().join(", ")
                ),
            ));
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        let trace_id = event
            .get("trace_id")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_owned();
        let body = serde_json::to_vec(&event).map_err(|e| {
            TaskError::permanent("event.invalid", format!("event does not serialise: {e}"))
        })?;
        let (reply, rx) = oneshot::channel();
        let deadline_ms = chrono::Utc::now().timestamp_millis() + self.timeout.as_millis() as i64;
        pool.sender
            .send(Invocation {
                request_id: request_id.clone(),
                event: body,
                deadline_ms,
                trace_id,
                reply,
            })
            .map_err(|_| TaskError::retryable("shim.stopped", "runtime shim is shutting down"))?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(TaskError::retryable(
                "function.crashed",
                format!(
                    "function {function}: invocation {request_id} lost with its runtime connection"
                ),
            )),
            Err(_) => {
                for i in &pool.instances {
                    if i.held().as_ref().is_some_and(|(id, _)| *id == request_id) {
                        i.kill.notify_one();
                    }
                }
                Err(TaskError::retryable(
                    "function.timeout",
                    format!(
                        "function {function}: no answer within {:?}; child restarted",
                        self.timeout
                    ),
                ))
            }
        }
    }

    fn functions(&self) -> Vec<String> {
        let mut names: Vec<String> = self.pools.keys().cloned().collect();
        names.sort();
        names
    }
}

/// Serves the Runtime API for one instance on an ephemeral loopback port.
async fn serve(
    instance: Arc<Instance>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(instance);
    crate::serve::spawn_until_shutdown(listener, app, shutdown, "runtime API listener");
    Ok(addr)
}

async fn next(State(i): State<Arc<Instance>>) -> Response {
    // A runtime asks for the next event only after answering the last one; if it
    // did not, that invocation is lost: fail it rather than leave it hanging.
    i.fail_held(TaskError::retryable(
        "function.crashed",
        format!(
            "function {}: runtime asked for the next event without answering",
            i.function
        ),
    ));
    let inv = {
        let mut inbox = i.inbox.lock().await;
        match inbox.recv().await {
            Some(inv) => inv,
            None => return StatusCode::GONE.into_response(),
        }
    };
    let mut headers = HeaderMap::new();
    let header =
        |v: &str| HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    headers.insert("lambda-runtime-aws-request-id", header(&inv.request_id));
    headers.insert(
        "lambda-runtime-deadline-ms",
        header(&inv.deadline_ms.to_string()),
    );
    headers.insert("lambda-runtime-invoked-function-arn", header(&i.arn));
    headers.insert(
        "lambda-runtime-trace-id",
        header(&format!("Root={}", inv.trace_id)),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    *i.held() = Some((inv.request_id, inv.reply));
    (StatusCode::OK, headers, inv.event).into_response()
}

async fn response(
    State(i): State<Arc<Instance>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let result = serde_json::from_slice::<serde_json::Value>(&body).map_err(|e| {
        TaskError::permanent(
            "output.invalid",
            format!("function {} answered non-JSON: {e}", i.function),
        )
    });
    if i.complete(&id, result) {
        StatusCode::ACCEPTED
    } else {
        StatusCode::BAD_REQUEST
    }
}

#[derive(serde::Deserialize, Default)]
struct LambdaErrorBody {
    #[serde(default, rename = "errorType")]
    error_type: String,
    #[serde(default, rename = "errorMessage")]
    error_message: String,
}

async fn error(State(i): State<Arc<Instance>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let e: LambdaErrorBody = serde_json::from_slice(&body).unwrap_or_default();
    if i.complete(
        &id,
        Err(TaskError::from_lambda(&e.error_type, &e.error_message)),
    ) {
        StatusCode::ACCEPTED
    } else {
        StatusCode::BAD_REQUEST
    }
}

async fn init_error(State(i): State<Arc<Instance>>, body: Bytes) -> StatusCode {
    let e: LambdaErrorBody = serde_json::from_slice(&body).unwrap_or_default();
    tracing::error!(function = %i.function, error_type = %e.error_type, error = %e.error_message, "function failed to initialise");
    StatusCode::ACCEPTED
}

/// Runs one child, restarting it when it exits, until shutdown.
async fn supervise(
    instance: Arc<Instance>,
    binary: PathBuf,
    addr: SocketAddr,
    n: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    while !*shutdown.borrow() {
        let started = Instant::now();
        let mut cmd = tokio::process::Command::new(&binary);
        cmd.env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env(
                "AWS_LAMBDA_FUNCTION_NAME",
                format!("rainlogs-{}", instance.function),
            )
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", format!("rainlogs-shim-{n}"))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(function = %instance.function, binary = %binary.display(), error = %e, "cannot start function binary");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        tracing::debug!(function = %instance.function, pid = ?child.id(), %addr, "function child started");
        enum Event {
            Exited(std::io::Result<std::process::ExitStatus>),
            Kill,
            Shutdown,
        }
        let event = tokio::select! {
            status = child.wait() => Event::Exited(status),
            _ = instance.kill.notified() => Event::Kill,
            _ = shutdown.wait_for(|s| *s) => Event::Shutdown,
        };
        let exit = match event {
            Event::Exited(status) => Some(status),
            Event::Kill => {
                let _ = child.start_kill();
                Some(child.wait().await)
            }
            Event::Shutdown => None,
        };
        let Some(status) = exit else {
            let _ = child.start_kill();
            let _ = child.wait().await;
            instance.fail_held(TaskError::retryable(
                "shim.stopped",
                "runtime shim shut down mid-invocation",
            ));
            return;
        };
        let status = status
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        tracing::warn!(function = %instance.function, %status, "function child exited; restarting");
        instance.fail_held(TaskError::retryable(
            "function.crashed",
            format!(
                "function {} child exited ({status}) during the invocation",
                instance.function
            ),
        ));
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}
