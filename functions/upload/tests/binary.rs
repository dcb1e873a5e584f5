//! The upload function binary outside Lambda: one event in, JSON out, and a clear
//! one-line failure for bad configuration or a bad event.

use std::io::Write;
use std::process::{Command, Stdio};

fn run(event: &str, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rainlogs-upload"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(event.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn env_file() -> String {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join(".rainlogs/env"))
        .find(|p| p.is_file())
        .expect("run `bash infra/local/stack.sh up` first")
        .display()
        .to_string()
}

#[test]
fn missing_configuration_is_one_line_naming_the_variable() {
    let empty = std::env::temp_dir().join(format!("rl-upload-empty-{}", std::process::id()));
    std::fs::write(&empty, "").unwrap();
    let out = run("{}", &[("RAINLOGS_ENV_FILE", empty.to_str().unwrap())]);
    std::fs::remove_file(&empty).ok();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("RAINLOGS_DATABASE_URL is not set"),
        "{stderr}"
    );
}

#[test]
fn an_event_that_is_not_an_envelope_is_refused_with_its_reason() {
    let file = env_file();
    let out = run(
        r#"{"v": 1, "kind": "upload.probe"}"#,
        &[("RAINLOGS_ENV_FILE", &file), ("RAINLOGS_LOG", "off")],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: envelope.invalid"), "{stderr}");
    assert!(stderr.contains("missing field"), "{stderr}");
}

#[tokio::test]
async fn a_probe_event_runs_once_and_prints_its_result() {
    use rainlogs_core::config::{ConfigSource, DatabaseConfig};
    use secrecy::ExposeSecret;
    use sqlx::Connection;

    // A database of its own, migrated, so the test touches nothing shared.
    let file = env_file();
    let mut src = ConfigSource::from_pairs(Vec::<(String, String)>::new());
    src.set(
        DatabaseConfig::URL,
        dotenvy::from_path_iter(&file)
            .unwrap()
            .filter_map(Result::ok)
            .find(|(k, _)| k == DatabaseConfig::URL)
            .map(|(_, v)| v)
            .unwrap(),
    );
    let admin_url = DatabaseConfig::from_source(&src)
        .unwrap()
        .url
        .expose_secret()
        .to_owned();
    let server = admin_url.rsplit_once('/').unwrap().0.to_owned();
    let db = format!("rl_test_upload_bin_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE \"{db}\""))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = format!("{server}/{db}");
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    rainlogs_core::db::migrate(&pool).await.unwrap();

    let id = uuid::Uuid::new_v4();
    let event = serde_json::json!({
        "v": 1,
        "id": id,
        "queue": "default",
        "kind": "upload.probe",
        "payload": {"note": "binary test"},
        "attempt": 1,
        "max_attempts": 3,
        "enqueued_at": "2026-01-01T00:00:00Z",
        "trace_id": "t"
    });
    let out = run(
        &event.to_string(),
        &[
            ("RAINLOGS_ENV_FILE", &file),
            ("RAINLOGS_LOG", "off"),
            ("RAINLOGS_DATABASE_URL", &url),
            ("RAINLOGS_S3_PREFIX", "tests/upload-binary/"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["result"]["object_key"], format!("probes/{id}.json"));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM probe_runs WHERE task_id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1, "the row is in the database the binary was given");
    pool.close().await;
    sqlx::query(&format!("DROP DATABASE \"{db}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
}
