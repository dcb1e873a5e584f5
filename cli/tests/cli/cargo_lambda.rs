//! A stage binary under cargo-lambda's emulator, end to end against the local stack.
//!
//! `cargo lambda watch --only-lambda-apis` (cargo-lambda from PyPI, pinned and installed
//! by `infra/dev/deploy-tools.sh`, which `infra/test.sh` runs) serves the Lambda Runtime
//! and Invoke APIs; `rainlogs-upload`, the binary exactly as `cargo test --workspace`
//! built it (no second build on 2 cores), polls it as it polls AWS Lambda;
//! `cargo lambda invoke` sends it an `upload.probe` envelope, and the probe's object lands
//! in Garage and its row in Postgres (this test's own database and bucket prefix). The
//! dispatcher's remote invoker then calls the same emulator in both modes — signed
//! through the AWS SDK (dummy static credentials: the emulator ignores the signature) and
//! plain — and a task the function refuses comes back with the function's own class.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_lambda::config::{Credentials, Region, SharedCredentialsProvider};
use rainlogs_core::task::kinds;
use rainlogs_core::{ErrorClass, TaskEnvelope, TaskSpec};
use rainlogs_dispatcher::config::{RemoteApi, RemoteConfig};
use rainlogs_dispatcher::invoker::Invoker;
use rainlogs_dispatcher::remote::Remote;
use rainlogs_integration_tests::{wait_for, TestEnv};

/// The `cargo-lambda` executable: `RAINLOGS_CARGO_LAMBDA`, else on `PATH`, else where
/// `infra/dev/deploy-tools.sh` installs it.
fn cargo_lambda() -> PathBuf {
    if let Some(p) = std::env::var_os("RAINLOGS_CARGO_LAMBDA") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("cargo-lambda"))
            .find(|p| p.is_file())
    });
    let installed = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/rainlogs/deploy-tools/bin/cargo-lambda"));
    on_path
        .or(installed.filter(|p| p.is_file()))
        .unwrap_or_else(|| {
            panic!("cargo-lambda is not installed: run `bash infra/dev/deploy-tools.sh`")
        })
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ is in the workspace")
        .to_path_buf()
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A child process killed when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn probe(note: &str) -> TaskEnvelope {
    TaskEnvelope::new(
        TaskSpec::new(
            "lambda",
            kinds::UPLOAD_PROBE,
            serde_json::json!({ "note": note }),
        ),
        chrono::Utc::now(),
    )
}

#[tokio::test]
async fn a_stage_binary_under_cargo_lambda_watch_answers_cargo_lambda_invoke_and_the_signed_invoker(
) {
    let env = TestEnv::new().await;
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env");
    rainlogs_integration_tests::write_env_file(&env.src, &env_file);
    let upload = PathBuf::from(env!("CARGO_BIN_EXE_rainlogs")).with_file_name("rainlogs-upload");
    assert!(
        upload.is_file(),
        "{} is missing: build the workspace first",
        upload.display()
    );

    // The emulator, from the workspace root (it reads the workspace's binaries to
    // know which function names exist). Its log goes to a file shown on failure.
    let port = free_port();
    let log = dir.path().join("watch.log");
    let _watch = Child(
        Command::new(cargo_lambda())
            .args(["lambda", "watch", "--only-lambda-apis"])
            .args(["--invoke-address", "127.0.0.1", "--invoke-port"])
            .arg(port.to_string())
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("watch.err")).unwrap())
            .spawn()
            .expect("cargo lambda watch starts"),
    );
    wait_for(
        "cargo lambda watch listening",
        Duration::from_secs(60),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
        },
    )
    .await;

    // The function, as Lambda runs it: the Runtime API from the environment.
    let _function = Child(
        Command::new(&upload)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RAINLOGS_ENV_FILE", &env_file)
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt/rainlogs-upload"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "rainlogs-upload")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rainlogs-upload starts"),
    );

    // `cargo lambda invoke` with a real event: the probe envelope.
    let first = probe("cargo lambda invoke");
    let event = dir.path().join("event.json");
    std::fs::write(&event, serde_json::to_vec(&first).unwrap()).unwrap();
    let invoke = tokio::process::Command::new(cargo_lambda())
        .args(["lambda", "invoke", "--invoke-address", "127.0.0.1"])
        .args([
            "--invoke-port",
            &port.to_string(),
            "--output-format",
            "json",
        ])
        .arg("--data-file")
        .arg(&event)
        .arg("rainlogs-upload")
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), invoke)
        .await
        .expect("cargo lambda invoke answers within 2 minutes")
        .expect("cargo lambda invoke runs");
    assert!(
        out.status.success(),
        "cargo lambda invoke failed: {}\nwatch log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let key = answer["result"]["object_key"].as_str().unwrap().to_owned();
    assert_eq!(key, format!("probes/{}.json", first.id));

    // The same emulator through the dispatcher's remote invoker, signed and plain.
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(Region::new("eu-central-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDRAINLOGSTEST",
            "dummy-secret",
            None,
            None,
            "test",
        )))
        .build();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut probes = vec![first];
    for api in [
        RemoteApi::Aws {
            endpoint_url: Some(endpoint.clone()),
            region: None,
            max_attempts: 1,
        },
        RemoteApi::Plain {
            endpoint: endpoint.clone(),
        },
    ] {
        let remote = Remote::with_sdk_config(
            &RemoteConfig {
                api,
                function_name: "rainlogs-{function}".into(),
                timeout: Duration::from_secs(60),
            },
            Some(&sdk),
        );
        let task = probe("remote invoker");
        let output = remote
            .invoke("upload", serde_json::to_value(&task).unwrap())
            .await
            .expect("the function answers through the emulator");
        assert_eq!(
            output["result"]["object_key"],
            format!("probes/{}.json", task.id)
        );
        probes.push(task);

        // A task the function refuses: its own permanent class, through the emulator.
        let refused = TaskEnvelope::new(
            TaskSpec::new("lambda", "upload.nonsense", serde_json::json!({})),
            chrono::Utc::now(),
        );
        let err = remote
            .invoke("upload", serde_json::to_value(&refused).unwrap())
            .await
            .unwrap_err();
        assert_eq!(
            (err.class, err.code.as_str()),
            (ErrorClass::Permanent, "kind.unsupported"),
            "{err:?}"
        );
    }

    // Every probe left its row in this test's database and its object in Garage.
    for task in &probes {
        let (row_key, size): (String, i64) =
            sqlx::query_as("SELECT object_key, size_bytes FROM probe_runs WHERE task_id = $1")
                .bind(task.id)
                .fetch_one(&env.app.pool)
                .await
                .expect("the function wrote its row");
        assert_eq!(row_key, format!("probes/{}.json", task.id));
        let body = env
            .app
            .store
            .get(&row_key)
            .await
            .expect("the function wrote its object");
        assert_eq!(body.len() as i64, size);
    }
    env.teardown().await;
}
