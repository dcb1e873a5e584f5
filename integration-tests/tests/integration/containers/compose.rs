//! `infra/local/compose.yaml` with the locally built images: `up -d` brings up Postgres,
//! Redis, Garage (set up by garage-init) and a dispatcher; a zone of the demo profile's
//! simulator, added in the dispatcher's container, is archived by that dispatcher and
//! verifies clean; `down -v` takes everything away with its volumes. The project name is
//! this test process's, and free host ports are used, so it runs beside any local stack.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use rainlogs_integration_tests::containers::{compose_project, docker_cli};
use rainlogs_integration_tests::wait_for;

fn compose_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/local/compose.yaml")
}

/// `docker compose` (the plugin) where it exists, else Compose v1's `docker-compose`.
fn compose_command() -> std::process::Command {
    let plugin = std::process::Command::new("docker")
        .args(["compose", "version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let mut cmd = if plugin {
        let mut c = std::process::Command::new("docker");
        c.arg("compose");
        c
    } else {
        std::process::Command::new("docker-compose")
    };
    cmd.arg("-p")
        .arg(compose_project())
        .arg("-f")
        .arg(compose_file())
        .args(["--profile", "demo"]);
    // Empty ports: Docker picks free ones (the test asks `port` where they landed).
    for var in ["PG", "REDIS", "S3", "ADMIN", "METRICS"] {
        cmd.env(format!("RAINLOGS_COMPOSE_{var}_PORT"), "");
    }
    cmd
}

async fn compose(args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = tokio::process::Command::from(compose_command());
    let out = cmd.args(args).output().await?;
    anyhow::ensure!(
        out.status.success(),
        "compose {} exited {}: {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Takes the project down with its volumes however the test ends.
struct Down;

impl Drop for Down {
    fn drop(&mut self) {
        let _ = compose_command()
            .args(["down", "-v", "--remove-orphans"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_up_archives_the_demo_zone_and_down_removes_everything() {
    let down = Down;
    compose(&["up", "-d"]).await.expect("compose up");
    let dispatcher = compose(&["ps", "-q", "dispatcher"]).await.unwrap();
    let dispatcher = dispatcher.trim().to_owned();
    wait_for(
        "the dispatcher healthy",
        Duration::from_secs(180),
        || async {
            let status = docker_cli(&[
                "inspect",
                "--format",
                "{{.State.Health.Status}}",
                &dispatcher,
            ])
            .await
            .ok()?;
            (status.trim() == "healthy").then_some(())
        },
    )
    .await;

    let zone_id = uuid::Uuid::new_v4().simple().to_string();
    compose(&[
        "exec",
        "-T",
        "dispatcher",
        "rainlogs",
        "tenant",
        "add",
        "demo",
    ])
    .await
    .expect("tenant add");
    compose(&[
        "exec",
        "-T",
        "-e",
        "SIM_TOKEN=sim-token",
        "dispatcher",
        "rainlogs",
        "zone",
        "add",
        "--tenant",
        "demo",
        "--zone-id",
        &zone_id,
        "--name",
        "demo.example",
        "--token-env",
        "SIM_TOKEN",
        "--backfill-minutes",
        "10",
        "--simulator",
        "http://simulator:8787",
    ])
    .await
    .expect("zone add");

    let pg = compose(&["port", "postgres", "5432"]).await.unwrap();
    let url = format!("postgres://postgres@{}/rainlogs", pg.trim());
    let db = sqlx::PgPool::connect(&url).await.expect("compose postgres");
    let windows: i64 = wait_for("the demo zone archived", Duration::from_secs(240), || {
        let (db, zone_id) = (&db, &zone_id);
        async move {
            let (all, done): (i64, i64) = sqlx::query_as(
                "SELECT count(*), count(*) FILTER (WHERE w.state IN ('archived', 'empty'))
                 FROM windows w JOIN zones z ON z.id = w.zone_id WHERE z.cf_zone_id = $1",
            )
            .bind(zone_id)
            .fetch_one(db)
            .await
            .ok()?;
            (all >= 3 && all == done).then_some(all)
        }
    })
    .await;
    let archived: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM archived_objects a JOIN windows w ON w.id = a.window_id
         JOIN zones z ON z.id = w.zone_id WHERE z.cf_zone_id = $1",
    )
    .bind(&zone_id)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        archived, windows,
        "the simulator's zone has records every minute"
    );
    db.close().await;
    // Verified where the keyring is: in the dispatcher's container.
    compose(&[
        "exec",
        "-T",
        "dispatcher",
        "rainlogs",
        "verify",
        "--zone",
        &zone_id,
        "--deep",
    ])
    .await
    .expect("verify is clean (exit 0)");

    let volumes_before = docker_cli(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={}", compose_project()),
    ])
    .await
    .unwrap();
    assert_eq!(volumes_before.lines().count(), 4, "{volumes_before}");
    drop(down);
    let project = format!("label=com.docker.compose.project={}", compose_project());
    for what in [["ps", "-aq"], ["network", "ls"], ["volume", "ls"]] {
        let mut args = what.to_vec();
        if what[0] != "ps" {
            args.push("-q");
        }
        args.extend(["--filter", &project]);
        let left = docker_cli(&args).await.unwrap();
        assert_eq!(left.trim(), "", "compose down -v leaves no {}", what[0]);
    }
}
