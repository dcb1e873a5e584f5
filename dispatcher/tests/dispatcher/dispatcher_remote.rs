//! The remote invoker against a Lambda Invoke API endpoint. No Lambda service runs
//! here, so the test stands up what the Runtime Interface Emulator is: an Invoke API
//! in front of a Runtime API — the shim, running the real `rainlogs-testkit` binary —
//! and calls it in both modes: plain, and signed through the AWS SDK (dummy static
//! credentials: this endpoint, like the emulators, does not check the signature, but
//! the test checks that there is one). A second stand-in throttles, as Lambda does
//! past its concurrency, to show the SDK's retries and the classification after them.
//! (`cli/tests/cli/cargo_lambda.rs` calls `cargo lambda watch` the same way.)

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_lambda::config::{Credentials, Region, SharedCredentialsProvider};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::post;
use rainlogs_core::{ErrorClass, TaskEnvelope, TaskSpec};
use rainlogs_dispatcher::config::{RemoteApi, RemoteConfig, ShimConfig, ShimFunction};
use rainlogs_dispatcher::invoker::Invoker;
use rainlogs_dispatcher::remote::Remote;
use rainlogs_dispatcher::shim::Shim;
use serde_json::json;

/// The Invoke API in front of the shim; it keeps the `Authorization` header of every
/// request it was sent.
struct Emulator {
    shim: Shim,
    authorizations: Mutex<Vec<String>>,
}

async fn invoke(
    State(emulator): State<Arc<Emulator>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    emulator.authorizations.lock().unwrap().push(
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
    );
    let shim = &emulator.shim;
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
    let emulator = Arc::new(Emulator {
        shim,
        authorizations: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new()
        .route("/2015-03-31/functions/{name}/invocations", post(invoke))
        .with_state(emulator.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let plain = remote(
        RemoteApi::Plain {
            endpoint: format!("http://{addr}"),
        },
        "rainlogs-{function}",
    );
    let signed = remote(aws_api(&format!("http://{addr}"), 3), "rainlogs-{function}");
    for remote in [&plain, &signed] {
        speaks_the_invoke_api(remote).await;
    }
    let auth = emulator.authorizations.lock().unwrap().clone();
    assert_eq!(auth.len(), 6);
    assert!(
        auth[..3].iter().all(String::is_empty),
        "plain requests are not signed: {auth:?}"
    );
    for a in &auth[3..] {
        assert!(
            a.starts_with("AWS4-HMAC-SHA256 Credential=AKIDRAINLOGSTEST/")
                && a.contains("/eu-central-1/lambda/aws4_request")
                && a.contains("Signature="),
            "SigV4 over the lambda service in the configured region: {a}"
        );
        assert!(!a.contains(SECRET), "the secret itself never travels");
    }

    // A function that does not exist is the service's refusal, permanent, in both modes.
    for missing in [
        remote(
            RemoteApi::Plain {
                endpoint: format!("http://{addr}"),
            },
            "other-{function}",
        ),
        remote(aws_api(&format!("http://{addr}"), 3), "other-{function}"),
    ] {
        let err = missing
            .invoke("testfn", ev("testfn.echo"))
            .await
            .unwrap_err();
        assert_eq!(
            (err.class, err.code.as_str()),
            (ErrorClass::Permanent, "remote.rejected"),
            "{err:?}"
        );
    }
    // Nothing listening: retryable, in both modes.
    for down in [
        remote(
            RemoteApi::Plain {
                endpoint: "http://127.0.0.1:1".into(),
            },
            "x",
        ),
        remote(aws_api("http://127.0.0.1:1", 1), "x"),
    ] {
        let err = down.invoke("testfn", ev("testfn.echo")).await.unwrap_err();
        assert_eq!(
            (err.class, err.code.as_str()),
            (ErrorClass::Retryable, "remote.unreachable"),
            "{err:?}"
        );
        assert!(!err.message.contains(SECRET));
    }
    let _ = stop_tx.send(true);
}

const SECRET: &str = "dummy-secret-never-sent";

/// The AWS mode at a local endpoint, in eu-central-1, with static dummy credentials.
fn aws_api(endpoint: &str, max_attempts: u32) -> RemoteApi {
    RemoteApi::Aws {
        endpoint_url: Some(endpoint.to_owned()),
        region: Some("eu-central-1".into()),
        max_attempts,
    }
}

fn remote(api: RemoteApi, function_name: &str) -> Remote {
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDRAINLOGSTEST",
            SECRET,
            None,
            None,
            "test",
        )))
        .build();
    Remote::with_sdk_config(
        &RemoteConfig {
            api,
            function_name: function_name.into(),
            timeout: Duration::from_secs(20),
        },
        Some(&sdk),
    )
}

fn ev(kind: &str) -> serde_json::Value {
    serde_json::to_value(TaskEnvelope::new(
        TaskSpec::new("q", kind, json!({"n": 7})),
        chrono::Utc::now(),
    ))
    .unwrap()
}

/// An answer, a permanent and a retryable function error, each classified as the
/// function classified it.
async fn speaks_the_invoke_api(remote: &Remote) {
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
}

/// Lambda past its concurrency answers 429 `TooManyRequestsException`: the SDK retries
/// it (backing off), and when its attempts are spent the task fails retryably, with
/// Lambda's `Retry-After` as the hint — never permanently.
#[tokio::test]
async fn throttling_is_retried_by_the_sdk_then_retryable() {
    // Throttles the first `throttle` requests, then answers.
    struct Throttler {
        throttle: usize,
        seen: AtomicUsize,
    }
    async fn throttled(State(t): State<Arc<Throttler>>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let n = t.seen.fetch_add(1, Ordering::SeqCst);
        let mut h = HeaderMap::new();
        if n < t.throttle {
            h.insert(
                "x-amzn-errortype",
                HeaderValue::from_static("TooManyRequestsException"),
            );
            h.insert("retry-after", HeaderValue::from_static("7"));
            let body = json!({"Type": "User", "message": "Rate Exceeded.",
                              "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"});
            return (
                StatusCode::TOO_MANY_REQUESTS,
                h,
                serde_json::to_vec(&body).unwrap(),
            );
        }
        (
            StatusCode::OK,
            h,
            serde_json::to_vec(&json!({"result": {"ok": true}})).unwrap(),
        )
    }
    let serve = |throttle: usize| async move {
        let t = Arc::new(Throttler {
            throttle,
            seen: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/2015-03-31/functions/{name}/invocations", post(throttled))
            .with_state(t.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), t)
    };

    // Two throttles, three attempts: the SDK's retries absorb them.
    let (endpoint, t) = serve(2).await;
    let out = remote(aws_api(&endpoint, 3), "rainlogs-{function}")
        .invoke("fetch", ev("fetch.window"))
        .await
        .expect("the third attempt answers");
    assert_eq!(out["result"]["ok"], true);
    assert_eq!(t.seen.load(Ordering::SeqCst), 3);

    // Throttled on every attempt: retryable, with Lambda's hint, after exactly the
    // configured attempts.
    let (endpoint, t) = serve(usize::MAX).await;
    let err = remote(aws_api(&endpoint, 2), "rainlogs-{function}")
        .invoke("fetch", ev("fetch.window"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.class, err.code.as_str()),
        (ErrorClass::Retryable, "remote.throttled"),
        "{err:?}"
    );
    assert_eq!(err.retry_after_ms, Some(7000));
    assert!(err.message.contains("rainlogs-fetch"), "{}", err.message);
    assert_eq!(t.seen.load(Ordering::SeqCst), 2);
}
