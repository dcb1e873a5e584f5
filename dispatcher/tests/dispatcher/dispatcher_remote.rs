//! The remote invoker against a Lambda Invoke API endpoint. No Lambda service runs
//! here, so the test stands up what the Runtime Interface Emulator is: an Invoke API
//! in front of a Runtime API — the shim, running the real `rainlogs-testkit` binary.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::post;
use rainlogs_core::{ErrorClass, TaskEnvelope, TaskSpec};
use rainlogs_dispatcher::config::{RemoteConfig, ShimConfig, ShimFunction};
use rainlogs_dispatcher::invoker::Invoker;
use rainlogs_dispatcher::remote::Remote;
use rainlogs_dispatcher::shim::Shim;
use serde_json::json;

async fn invoke(
    State(shim): State<Arc<Shim>>,
    Path(name): Path<String>,
    body: Bytes,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let Some(function) = name.strip_prefix("rainlogs-") else {
        return (
            StatusCode::NOT_FOUND,
            HeaderMap::new(),
            b"{\"Type\":\"User\",\"message\":\"Function not found\"}".to_vec(),
        );
    };
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    match shim.invoke(function, event).await {
        Ok(v) => (
            StatusCode::OK,
            HeaderMap::new(),
            serde_json::to_vec(&v).unwrap(),
        ),
        Err(e) => {
            let mut h = HeaderMap::new();
            h.insert(
                "x-amz-function-error",
                HeaderValue::from_static("Unhandled"),
            );
            let body = json!({"errorType": e.lambda_error_type(), "errorMessage": e.lambda_error_message()});
            (StatusCode::OK, h, serde_json::to_vec(&body).unwrap())
        }
    }
}

#[tokio::test]
async fn remote_invoker_speaks_the_lambda_invoke_api() {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shim = Shim::start(
        &ShimConfig {
            functions_dir: PathBuf::from("/nonexistent"),
            functions: vec![ShimFunction {
                name: "testfn".into(),
                binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_rainlogs-testkit"))),
            }],
            instances: 1,
            timeout: Duration::from_secs(20),
        },
        stop_rx,
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/2015-03-31/functions/{name}/invocations", post(invoke))
        .with_state(Arc::new(shim));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let remote = Remote::new(&RemoteConfig {
        endpoint: format!("http://{addr}"),
        function_name: "rainlogs-{function}".into(),
        timeout: Duration::from_secs(20),
    });
    let ev = |kind: &str| {
        serde_json::to_value(TaskEnvelope::new(
            TaskSpec::new("q", kind, json!({"n": 7})),
            chrono::Utc::now(),
        ))
        .unwrap()
    };
    let ok = remote
        .invoke("testfn", ev("testfn.echo"))
        .await
        .expect("success");
    assert_eq!(ok["result"]["echo"], json!({"n": 7}));
    let err = remote
        .invoke("testfn", ev("testfn.fail"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.class, err.code.as_str()),
        (ErrorClass::Permanent, "testfn.refused")
    );
    let hinted = remote
        .invoke("testfn", ev("testfn.retry"))
        .await
        .unwrap_err();
    assert_eq!(
        (hinted.class, hinted.code.as_str()),
        (ErrorClass::Retryable, "testfn.busy")
    );
    let missing = Remote::new(&RemoteConfig {
        endpoint: format!("http://{addr}"),
        function_name: "other-{function}".into(),
        timeout: Duration::from_secs(5),
    })
    .invoke("testfn", ev("testfn.echo"))
    .await
    .unwrap_err();
    assert_eq!(
        (missing.class, missing.code.as_str()),
        (ErrorClass::Permanent, "remote.rejected")
    );
    let down = Remote::new(&RemoteConfig {
        endpoint: "http://127.0.0.1:1".into(),
        function_name: "x".into(),
        timeout: Duration::from_secs(5),
    })
    .invoke("testfn", ev("testfn.echo"))
    .await
    .unwrap_err();
    assert_eq!(
        (down.class, down.code.as_str()),
        (ErrorClass::Retryable, "remote.unreachable")
    );
    let _ = stop_tx.send(true);
}
