//! `rainlogs run` without a master keyring (issue 11 item 13): it used to plan every
//! zone's windows and have its own window stages refuse each one, dead letter after
//! dead letter, every reconcile. Now it says loudly that the archive pipeline is off,
//! and plans nothing.

use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use rainlogs_integration_tests::{wait_for, TestEnv};

#[tokio::test]
async fn run_without_a_keyring_says_the_pipeline_is_off_and_plans_nothing() {
    let env = TestEnv::new().await;
    assert!(env.src.get("RAINLOGS_MASTER_KEYS").is_none());
    assert!(env.src.get("RAINLOGS_MASTER_KEYS_FILE").is_none());
    // An active zone, ten minutes behind: a running scheduler would plan it at once.
    let zone = env
        .insert_zone(60, Utc::now() - TimeDelta::minutes(10))
        .await;
    let dir = std::env::temp_dir().join(format!("rainlogs-nokeys-{}", env.id));
    std::fs::create_dir_all(&dir).unwrap();
    let env_file = dir.join("env");
    let mut settings = env.src.clone();
    settings.set("RAINLOGS_SCHEDULER_INTERVAL_MS", "50");
    rainlogs_integration_tests::write_env_file(&settings, &env_file);
    let log = dir.join("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rainlogs"))
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RAINLOGS_ENV_FILE", &env_file)
        .env("RAINLOGS_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("rainlogs run starts");
    let text = wait_for(
        "the pipeline-off notice and the running dispatcher",
        Duration::from_secs(60),
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let ready =
                text.contains("archive pipeline OFF") && text.contains("dispatcher running");
            async move { ready.then_some(text) }
        },
    )
    .await;
    assert!(
        text.contains("RAINLOGS_MASTER_KEYS"),
        "names the setting:\n{text}"
    );
    assert!(text.contains("ERROR"), "loudly:\n{text}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = wait_for("graceful exit", Duration::from_secs(60), || {
        let done = child.try_wait().unwrap();
        async move { done }
    })
    .await;
    assert!(exited.success(), "{exited:?}");
    let windows: i64 = sqlx::query_scalar("SELECT count(*) FROM windows WHERE zone_id = $1")
        .bind(zone)
        .fetch_one(&env.app.pool)
        .await
        .unwrap();
    assert_eq!(
        windows,
        0,
        "nothing planned:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    std::fs::remove_dir_all(&dir).ok();
    env.teardown().await;
}
