//! The receiver binary under a Lambda runtime: this test serves the Lambda Runtime API
//! (the interface every Lambda-compatible runtime offers: `invocation/next`, then
//! `invocation/{id}/response`) and hands the real `rainlogs-receiver` two function URL
//! events (payload format 2.0, body base64): a gzip batch with the destination's secret
//! → the invocation's response is 200 with the batch id, and the batch is recorded and
//! staged; the same with a wrong secret → 401, nothing stored.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use chrono::Utc;
use flate2::write::GzEncoder;
use flate2::Compression;
use rainlogs_archive::push;
use rainlogs_integration_tests::{wait_for, TestEnv};
use secrecy::ExposeSecret;

const MASTER: &str = "1:8989898989898989898989898989898989898989898989898989898989898989";

#[derive(Default)]
struct Runtime {
    /// Events still to hand out: (request id, event JSON).
    events: VecDeque<(String, serde_json::Value)>,
    /// Responses the function posted: (request id, response JSON).
    responses: Vec<(String, serde_json::Value)>,
    errors: Vec<String>,
}

type Shared = Arc<Mutex<Runtime>>;

async fn next(State(rt): State<Shared>) -> impl IntoResponse {
    // Long-poll as the real API does: wait until there is an event.
    loop {
        if let Some((id, event)) = rt.lock().unwrap().events.pop_front() {
            let mut headers = HeaderMap::new();
            headers.insert(
                "lambda-runtime-aws-request-id",
                HeaderValue::from_str(&id).unwrap(),
            );
            let deadline = (Utc::now().timestamp_millis() + 60_000).to_string();
            headers.insert(
                "lambda-runtime-deadline-ms",
                HeaderValue::from_str(&deadline).unwrap(),
            );
            headers.insert(
                "lambda-runtime-invoked-function-arn",
                HeaderValue::from_static(
                    "arn:aws:lambda:eu-central-1:000000000000:function:receiver",
                ),
            );
            headers.insert(
                "lambda-runtime-trace-id",
                HeaderValue::from_static("Root=1-0-0"),
            );
            return (headers, axum::Json(event));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn response(
    State(rt): State<Shared>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    rt.lock().unwrap().responses.push((id, value));
    StatusCode::ACCEPTED
}

async fn error(State(rt): State<Shared>, body: axum::body::Bytes) -> StatusCode {
    rt.lock()
        .unwrap()
        .errors
        .push(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}

/// A function URL event (payload format 2.0) for `POST path` with a gzip body.
fn function_url_event(path: &str, authorization: &str, gz: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "authorization": authorization,
            "content-encoding": "gzip",
            "content-type": "application/json",
            "host": "abc.lambda-url.eu-central-1.on.aws",
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abc",
            "domainName": "abc.lambda-url.eu-central-1.on.aws",
            "domainPrefix": "abc",
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.7",
                "userAgent": "Go-http-client/2.0",
            },
            "requestId": "req",
            "routeKey": "$default",
            "stage": "$default",
            "time": "07/Dec/2026:16:00:00 +0000",
            "timeEpoch": 1796659200000u64,
        },
        "body": base64::engine::general_purpose::STANDARD.encode(gz),
        "isBase64Encoded": true,
    })
}

#[tokio::test]
async fn the_receiver_binary_serves_function_url_invocations() {
    let mut env = TestEnv::new().await;
    env.src.set("RAINLOGS_MASTER_KEYS", MASTER);
    let zone = env.insert_zone(60, Utc::now()).await;
    let created = push::create_destination(&env.app.pool, zone, "http_requests")
        .await
        .unwrap();
    let secret = created.secret.expose_secret().to_owned();

    let rt: Shared = Arc::default();
    let path = format!("/push/{}", created.destination.id);
    let mut plain = Vec::new();
    for i in 0..25 {
        writeln!(
            plain,
            r#"{{"RayID":"l{i}","EdgeStartTimestamp":{},"EdgeResponseStatus":200}}"#,
            Utc::now().timestamp_nanos_opt().unwrap()
        )
        .unwrap();
    }
    let mut enc = GzEncoder::new(Vec::new(), Compression::new(6));
    enc.write_all(&plain).unwrap();
    let gz = enc.finish().unwrap();
    {
        let mut r = rt.lock().unwrap();
        r.events.push_back((
            "req-ok".into(),
            function_url_event(&path, &format!("Bearer {secret}"), &gz),
        ));
        r.events.push_back((
            "req-bad".into(),
            function_url_event(&path, "Bearer wrong", &gz),
        ));
    }
    let api = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(error))
        .with_state(rt.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, api).await;
    });

    let dir = std::env::temp_dir().join(format!("rainlogs-lambda-{}", env.id));
    std::fs::create_dir_all(&dir).unwrap();
    let env_file = dir.join("env");
    rainlogs_integration_tests::write_env_file(&env.src, &env_file);
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_rainlogs")).with_file_name("rainlogs-receiver");
    assert!(
        bin.is_file(),
        "{} is missing: build the workspace first",
        bin.display()
    );
    let mut child = Command::new(bin)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RAINLOGS_ENV_FILE", &env_file)
        .env("RAINLOGS_LOG", "info")
        .env("AWS_LAMBDA_RUNTIME_API", api_addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "receiver")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/receiver")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("receiver starts");

    let answers = wait_for(
        "both invocations answered",
        Duration::from_secs(120),
        || {
            let rt = rt.clone();
            async move {
                let r = rt.lock().unwrap();
                assert!(r.errors.is_empty(), "invocation errors: {:?}", r.errors);
                (r.responses.len() == 2).then(|| r.responses.clone())
            }
        },
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    server.abort();

    let (id, ok) = &answers[0];
    assert_eq!(id, "req-ok");
    assert_eq!(ok["statusCode"], 200, "{ok}");
    let answer: serde_json::Value = serde_json::from_str(ok["body"].as_str().unwrap()).unwrap();
    assert_eq!(answer["records"], 25);
    let (id, bad) = &answers[1];
    assert_eq!(id, "req-bad");
    assert_eq!(bad["statusCode"], 401, "{bad}");

    let (rows, windows): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM push_batches),
                (SELECT count(*) FROM windows WHERE batch_id IS NOT NULL AND state = 'staged')",
    )
    .fetch_one(&env.app.pool)
    .await
    .unwrap();
    assert_eq!(
        (rows, windows),
        (1, 1),
        "one batch recorded and staged, none for the 401"
    );
    let _ = std::fs::remove_dir_all(&dir);
    env.teardown().await;
}
