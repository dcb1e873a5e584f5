//! `RAINLOGS_SECRETS_ID`: a function binary takes its settings from a Secrets Manager
//! secret, as the AWS template deploys it (infra/aws/template.yaml: no secret in any
//! function's environment). No AWS here: a stand-in answers Secrets Manager's
//! `GetSecretValue` (the AWS SDK's own endpoint override, `AWS_ENDPOINT_URL_SECRETS_MANAGER`,
//! and dummy static credentials), and checks that the request is SigV4-signed for the
//! service. The binary — `rainlogs-upload`, run once over an `upload.probe` event — has
//! no env file and no `RAINLOGS_*` setting but the secret's name, and still writes its
//! probe to this test's Postgres database and Garage prefix.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use rainlogs_core::task::kinds;
use rainlogs_core::{TaskEnvelope, TaskSpec};
use rainlogs_integration_tests::TestEnv;

const SECRET_NAME: &str = "rainlogs/test/settings";

struct StandIn {
    /// The secret's JSON text.
    secret: String,
    /// (X-Amz-Target, Authorization) of each request.
    requests: Mutex<Vec<(String, String)>>,
}

async fn secrets_manager(
    State(s): State<Arc<StandIn>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, String) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    s.requests
        .lock()
        .unwrap()
        .push((header("x-amz-target"), header("authorization")));
    let asked: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut h = HeaderMap::new();
    h.insert(
        "content-type",
        "application/x-amz-json-1.1".parse().unwrap(),
    );
    if asked["SecretId"] != SECRET_NAME {
        let body = serde_json::json!({"__type": "ResourceNotFoundException",
            "message": "Secrets Manager can't find the specified secret."});
        return (StatusCode::BAD_REQUEST, h, body.to_string());
    }
    let body = serde_json::json!({"ARN": "arn:aws:secretsmanager:eu-central-1:000000000000:secret:rainlogs/test/settings-AbCdEf",
        "Name": SECRET_NAME, "SecretString": s.secret, "VersionId": "v1"});
    (StatusCode::OK, h, body.to_string())
}

fn upload_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_rainlogs")).with_file_name("rainlogs-upload");
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

#[tokio::test]
async fn a_function_takes_its_settings_from_a_secrets_manager_secret() {
    let env = TestEnv::new().await;
    let settings: serde_json::Map<String, serde_json::Value> = env
        .src
        .pairs()
        .filter(|(k, _)| k.starts_with("RAINLOGS_"))
        .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v.to_owned())))
        .collect();
    let stand_in = Arc::new(StandIn {
        secret: serde_json::Value::Object(settings).to_string(),
        requests: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/", post(secrets_manager))
        .with_state(stand_in.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // No env file anywhere above the working directory, no RAINLOGS_* but the name.
    let dir = tempfile::tempdir().unwrap();
    let task = TaskEnvelope::new(
        TaskSpec::new(
            "secrets",
            kinds::UPLOAD_PROBE,
            serde_json::json!({"note": "settings from Secrets Manager"}),
        ),
        chrono::Utc::now(),
    );
    let event = dir.path().join("event.json");
    std::fs::write(&event, serde_json::to_vec(&task).unwrap()).unwrap();
    let run = |secret_id: &str| {
        tokio::process::Command::new(upload_binary())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RAINLOGS_SECRETS_ID", secret_id)
            .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", &endpoint)
            .env("AWS_REGION", "eu-central-1")
            .env("AWS_ACCESS_KEY_ID", "AKIDRAINLOGSTEST")
            .env("AWS_SECRET_ACCESS_KEY", "dummy-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .arg(&event)
            .current_dir(dir.path())
            .kill_on_drop(true)
            .output()
    };
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), run(SECRET_NAME))
        .await
        .expect("the function finishes within a minute")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = answer["result"]["object_key"].as_str().unwrap().to_owned();
    let (row_key,): (String,) =
        sqlx::query_as("SELECT object_key FROM probe_runs WHERE task_id = $1")
            .bind(task.id)
            .fetch_one(&env.app.pool)
            .await
            .expect("the probe row is in this test's database");
    assert_eq!(row_key, key);
    env.app
        .store
        .get(&key)
        .await
        .expect("and its object in Garage");

    // A secret that does not exist: the binary refuses to start, naming the setting and
    // the secret, and printing none of the settings.
    let out = run("rainlogs/missing").await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("RAINLOGS_SECRETS_ID") && err.contains("rainlogs/missing"),
        "{err}"
    );
    assert!(err.contains("ResourceNotFoundException"), "{err}");
    assert!(!err.contains(env.database_url().as_str()), "{err}");

    let requests = stand_in.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    for (target, auth) in &requests {
        assert_eq!(target, "secretsmanager.GetSecretValue");
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDRAINLOGSTEST/")
                && auth.contains("/eu-central-1/secretsmanager/aws4_request"),
            "{auth}"
        );
    }
    server.abort();
    env.teardown().await;
}
