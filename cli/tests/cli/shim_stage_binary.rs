//! The runtime shim running a real stage binary: `rainlogs-upload`, exactly as it
//! deploys to Lambda, serves an `upload.probe` handed to it over the Lambda Runtime API
//! and leaves its object in Garage and its row in Postgres.
//!
//! The binary is a sibling of `rainlogs` in the target directory; `cargo test
//! --workspace` (the README's test command) builds it before any test runs.

use std::path::PathBuf;
use std::time::Duration;

use rainlogs_core::config::ConfigSource;
use rainlogs_core::task::kinds;
use rainlogs_core::{TaskEnvelope, TaskSpec};
use rainlogs_dispatcher::app::App;
use rainlogs_dispatcher::config::{ShimConfig, ShimFunction};
use rainlogs_dispatcher::invoker::Invoker;
use rainlogs_dispatcher::shim::Shim;

fn upload_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_rainlogs")).with_file_name("rainlogs-upload");
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (`cargo build --workspace`)",
        path.display()
    );
    path
}

#[tokio::test]
async fn the_upload_binary_serves_a_probe_through_the_runtime_api() {
    // The child reads the same env file (found upwards from the working directory).
    let src = ConfigSource::from_env().expect("env file");
    let app = App::connect(&src).await.expect("services answer");
    rainlogs_core::db::migrate(&app.pool).await.unwrap();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shim = Shim::start(
        &ShimConfig {
            functions_dir: PathBuf::from("/nonexistent"),
            functions: vec![ShimFunction {
                name: "upload".into(),
                binary: Some(upload_binary()),
            }],
            instances: 1,
            timeout: Duration::from_secs(30),
        },
        stop_rx,
    )
    .await
    .expect("shim starts");

    let task = TaskEnvelope::new(
        TaskSpec::new(
            "shim",
            kinds::UPLOAD_PROBE,
            serde_json::json!({"note": "via shim"}),
        ),
        chrono::Utc::now(),
    );
    let output = shim
        .invoke("upload", serde_json::to_value(&task).unwrap())
        .await
        .expect("the stage binary answers");
    let key = output["result"]["object_key"].as_str().unwrap().to_owned();
    assert_eq!(key, format!("probes/{}.json", task.id));

    let (row_key, size): (String, i64) =
        sqlx::query_as("SELECT object_key, size_bytes FROM probe_runs WHERE task_id = $1")
            .bind(task.id)
            .fetch_one(&app.pool)
            .await
            .expect("the child wrote its row");
    assert_eq!(row_key, key);
    let body = app
        .store
        .get(&key)
        .await
        .expect("the child wrote its object");
    assert_eq!(body.len() as i64, size);

    // A task the binary refuses comes back classified, through the Runtime API.
    let refused = TaskEnvelope::new(
        TaskSpec::new("shim", "upload.nonsense", serde_json::json!({})),
        chrono::Utc::now(),
    );
    let err = shim
        .invoke("upload", serde_json::to_value(&refused).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code, "kind.unsupported");
    assert!(!err.is_retryable());

    app.store.delete(&key).await.unwrap();
    let _ = stop_tx.send(true);
}
