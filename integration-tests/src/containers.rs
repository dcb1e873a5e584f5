//! Test services in containers, for machines with a Docker engine and no stack.
//!
//! Enabled by the `containers` feature. When no `RAINLOGS_DATABASE_URL` is configured
//! and a Docker engine answers, starts PostgreSQL 15, Redis 7 and Garage 2.5.0 once per
//! test process, configures Garage like `infra/local/stack.sh` does (layout, the
//! development key, the bucket) and returns a configuration pointing at them. The
//! containers live as long as the test process (testcontainers' reaper removes them).
//!
//! Not yet exercised by the suite: it expects upstream images, and this project's machines
//! have a Docker engine but no registry (images built here are the containers issue's work).

use rainlogs_core::config::{ConfigSource, DatabaseConfig, RedisConfig, S3Config};
use testcontainers::core::{ExecCommand, IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio::sync::OnceCell;

const DEV_KEY_ID: &str = "GK0123456789abcdef01234567";
const DEV_KEY_SECRET: &str = "5ecdeb6e1d2f0c3b4a59687766554433221100ffeeddccbbaa99887766554433";
const BUCKET: &str = "rainlogs";

const GARAGE_TOML: &str = r#"metadata_dir = "/var/lib/garage/meta"
data_dir = "/var/lib/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "0.0.0.0:3901"
rpc_public_addr = "127.0.0.1:3901"
rpc_secret = "0000000000000000000000000000000000000000000000000000000000000001"

[s3_api]
s3_region = "garage"
api_bind_addr = "0.0.0.0:3900"

[admin]
api_bind_addr = "0.0.0.0:3903"
admin_token = "rainlogs-test-admin-token"
"#;

struct Services {
    source: ConfigSource,
    _postgres: ContainerAsync<GenericImage>,
    _redis: ContainerAsync<GenericImage>,
    _garage: ContainerAsync<GenericImage>,
}

static SERVICES: OnceCell<Option<Services>> = OnceCell::const_new();

/// The containers' configuration, starting them on first use; `None` without Docker.
pub async fn start_if_docker() -> Option<ConfigSource> {
    SERVICES
        .get_or_init(|| async {
            match start().await {
                Ok(services) => Some(services),
                Err(e) => {
                    eprintln!("testcontainers: cannot start services: {e}");
                    None
                }
            }
        })
        .await
        .as_ref()
        .map(|s| s.source.clone())
}

async fn start() -> anyhow::Result<Services> {
    let postgres = GenericImage::new("postgres", "15")
        .with_exposed_port(5432.tcp())
        .with_wait_for(WaitFor::message_on_stderr(
            "database system is ready to accept connections",
        ))
        .with_env_var("POSTGRES_HOST_AUTH_METHOD", "trust")
        .with_env_var("POSTGRES_DB", "rainlogs")
        .start()
        .await?;
    let redis = GenericImage::new("redis", "7")
        .with_exposed_port(6379.tcp())
        .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
        .start()
        .await?;
    let garage = GenericImage::new("dxflrs/garage", "v2.5.0")
        .with_exposed_port(3900.tcp())
        .with_wait_for(WaitFor::message_on_stderr("S3 API server listening"))
        .with_copy_to("/etc/garage.toml", GARAGE_TOML.as_bytes().to_vec())
        .start()
        .await?;

    let node = exec(&garage, &["/garage", "node", "id", "-q"]).await?;
    let node = node.trim().split('@').next().unwrap_or_default().to_owned();
    exec(
        &garage,
        &[
            "/garage", "layout", "assign", "-z", "dc1", "-c", "1G", &node,
        ],
    )
    .await?;
    exec(&garage, &["/garage", "layout", "apply", "--version", "1"]).await?;
    exec(
        &garage,
        &[
            "/garage",
            "key",
            "import",
            "--yes",
            "-n",
            "rainlogs-dev",
            DEV_KEY_ID,
            DEV_KEY_SECRET,
        ],
    )
    .await?;
    exec(&garage, &["/garage", "bucket", "create", BUCKET]).await?;
    exec(
        &garage,
        &[
            "/garage", "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key",
            DEV_KEY_ID,
        ],
    )
    .await?;

    let pg_port = postgres.get_host_port_ipv4(5432).await?;
    let redis_port = redis.get_host_port_ipv4(6379).await?;
    let s3_port = garage.get_host_port_ipv4(3900).await?;
    let source = ConfigSource::from_pairs([
        (
            DatabaseConfig::URL.to_owned(),
            format!("postgres://postgres@127.0.0.1:{pg_port}/rainlogs"),
        ),
        (
            RedisConfig::URL.to_owned(),
            format!("redis://127.0.0.1:{redis_port}/0"),
        ),
        (
            S3Config::ENDPOINT.to_owned(),
            format!("http://127.0.0.1:{s3_port}"),
        ),
        (S3Config::BUCKET.to_owned(), BUCKET.to_owned()),
        (S3Config::ACCESS_KEY_ID.to_owned(), DEV_KEY_ID.to_owned()),
        (
            S3Config::SECRET_ACCESS_KEY.to_owned(),
            DEV_KEY_SECRET.to_owned(),
        ),
    ]);
    Ok(Services {
        source,
        _postgres: postgres,
        _redis: redis,
        _garage: garage,
    })
}

async fn exec(container: &ContainerAsync<GenericImage>, cmd: &[&str]) -> anyhow::Result<String> {
    let mut result = container
        .exec(ExecCommand::new(cmd.iter().copied()))
        .await?;
    let stdout = result.stdout_to_vec().await?;
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}
