//! Test services in containers, on any machine with a Docker engine.
//!
//! Enabled by the `containers` feature. [`services`] starts PostgreSQL 15, Redis 7 and a
//! single Garage 2.5.0 node once per test process, configures Garage like
//! `infra/local/stack.sh` does (layout, the development key, the bucket) and returns a
//! configuration pointing at them; the harness uses it when `RAINLOGS_TEST_SERVICES=containers`
//! or when no endpoints are configured. [`GarageCluster`] starts a three-node Garage
//! (replication factor 3) on its own Docker network for the node-loss tests.
//!
//! Images: built here by `infra/images/build.sh` (`rainlogs-local/...`, nothing pulled:
//! our machines have no registry) unless `RAINLOGS_TEST_IMAGE_{POSTGRES,REDIS,GARAGE,RAINLOGS}`
//! names others — e.g. `postgres:15`, `redis:7`, `dxflrs/garage:v2.5.0` where a registry
//! is reachable (testcontainers pulls what is missing).
//!
//! Cleaning up: testcontainers-rs has no reaper container (the Ryuk image other
//! testcontainers libraries pull could not be pulled here anyway). It removes a container
//! when its handle drops — also while a failing test unwinds — but the shared services
//! live in a static that never drops, and a killed test process drops nothing. So every
//! container, network and volume made here carries this process's session label, and
//! [`session`] starts a reaper of our own the first time: a `sh` in its own process group
//! (a Ctrl-C in the terminal does not reach it) holding the read end of a pipe whose write
//! end only this process holds. When the process ends, however it ends, the kernel closes
//! the pipe and the reaper removes everything with the label.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use rainlogs_core::config::{ConfigSource, DatabaseConfig, RedisConfig, S3Config};
use sqlx::Connection;
use testcontainers::bollard::Docker;
use testcontainers::core::{ExecCommand, IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio::sync::OnceCell;

use crate::wait_for;

/// The label every Docker object of one test process carries (value: [`session`]).
pub const SESSION_LABEL: &str = "org.rainlogs.test-session";
/// Forces the harness onto these containers even where an env file names a stack.
pub const SERVICES_VAR: &str = "RAINLOGS_TEST_SERVICES";

pub const DEV_KEY_ID: &str = "GK0123456789abcdef01234567";
pub const DEV_KEY_SECRET: &str = "5ecdeb6e1d2f0c3b4a59687766554433221100ffeeddccbbaa99887766554433";
pub const BUCKET: &str = "rainlogs";
/// The Garage admin API token of the test nodes (not a secret: test containers only).
pub const GARAGE_ADMIN_TOKEN: &str = "rainlogs-test-admin-token";
const GARAGE_RPC_SECRET: &str = "0000000000000000000000000000000000000000000000000000000000000001";

/// The images the tests start, each overridable by its variable.
#[derive(Debug, Clone, Copy)]
pub enum TestImage {
    Postgres,
    Redis,
    Garage,
    Rainlogs,
}

impl TestImage {
    fn var_and_default(self) -> (&'static str, &'static str) {
        match self {
            Self::Postgres => ("RAINLOGS_TEST_IMAGE_POSTGRES", "rainlogs-local/postgres:15"),
            Self::Redis => ("RAINLOGS_TEST_IMAGE_REDIS", "rainlogs-local/redis:7"),
            Self::Garage => ("RAINLOGS_TEST_IMAGE_GARAGE", "rainlogs-local/garage:v2.5.0"),
            Self::Rainlogs => (
                "RAINLOGS_TEST_IMAGE_RAINLOGS",
                "rainlogs-local/rainlogs:latest",
            ),
        }
    }

    /// `name:tag` from the variable, else the locally built image.
    pub fn reference(self) -> String {
        let (var, default) = self.var_and_default();
        std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| default.to_owned())
    }

    /// A request for this image, labelled with the session; fails with what to do when a
    /// locally built image is missing (no registry would give it).
    pub async fn request(self) -> anyhow::Result<GenericImage> {
        let reference = self.reference();
        let (name, tag) = match reference.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n.to_owned(), t.to_owned()),
            _ => (reference.clone(), "latest".to_owned()),
        };
        if name.starts_with("rainlogs-local/") && docker()?.inspect_image(&reference).await.is_err()
        {
            let (var, _) = self.var_and_default();
            anyhow::bail!(
                "image {reference} is not on this Docker engine: build it with \
                 `bash infra/images/build.sh`, or set {var} to an image a registry serves"
            );
        }
        Ok(GenericImage::new(name, tag))
    }
}

/// The Docker engine's API client (the socket named by DOCKER_HOST, else the default).
pub fn docker() -> anyhow::Result<Docker> {
    Ok(Docker::connect_with_defaults()?)
}

/// This process's session id (the value of [`SESSION_LABEL`]); starts the reaper once.
pub fn session() -> &'static str {
    static SESSION: OnceLock<String> = OnceLock::new();
    static REAPER: OnceLock<Mutex<Option<ChildStdin>>> = OnceLock::new();
    let id =
        SESSION.get_or_init(|| format!("rl{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    REAPER.get_or_init(|| Mutex::new(start_reaper(id)));
    id
}

/// The compose project name of this session: the reaper removes its objects too.
pub fn compose_project() -> String {
    format!("{}compose", session())
}

fn start_reaper(session: &str) -> Option<ChildStdin> {
    // `cat` returns at end of file: when the last holder of the write end — this process —
    // has exited. Signals are ignored so a terminal's Ctrl-C or a killed test run does not
    // stop the cleanup it exists for.
    const SCRIPT: &str = r#"trap '' INT TERM HUP
cat >/dev/null
for f in "label=org.rainlogs.test-session=$RL_SESSION" "label=com.docker.compose.project=${RL_SESSION}compose"; do
  docker ps -aq --filter "$f" | xargs -r docker rm -f -v >/dev/null 2>&1
  docker network ls -q --filter "$f" | xargs -r docker network rm >/dev/null 2>&1
  docker volume ls -q --filter "$f" | xargs -r docker volume rm -f >/dev/null 2>&1
done
"#;
    let child = Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .env("RL_SESSION", session)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    match child {
        Ok(mut child) => child.stdin.take(),
        Err(e) => {
            eprintln!(
                "testcontainers: the reaper did not start ({e}); containers may outlive this run"
            );
            None
        }
    }
}

/// Labels for a Docker object of this session.
pub fn session_labels() -> HashMap<String, String> {
    HashMap::from([(SESSION_LABEL.to_owned(), session().to_owned())])
}

// ------------------------------------------------------------------ shared services

struct Services {
    source: ConfigSource,
    _postgres: ContainerAsync<GenericImage>,
    _redis: ContainerAsync<GenericImage>,
    _garage: ContainerAsync<GenericImage>,
}

static SERVICES: OnceCell<Result<Services, String>> = OnceCell::const_new();

/// Whether `RAINLOGS_TEST_SERVICES=containers` asks for containers over any env file.
pub fn forced() -> bool {
    std::env::var(SERVICES_VAR).is_ok_and(|v| v.trim() == "containers")
}

/// The shared containers' configuration over `base`, starting them on first use.
pub async fn services(base: ConfigSource) -> Result<ConfigSource, String> {
    let services = SERVICES
        .get_or_init(|| async { start().await.map_err(|e| format!("{e:#}")) })
        .await
        .as_ref()
        .map_err(Clone::clone)?;
    let mut src = base;
    for key in [
        DatabaseConfig::URL,
        RedisConfig::URL,
        S3Config::ENDPOINT,
        S3Config::BUCKET,
        S3Config::ACCESS_KEY_ID,
        S3Config::SECRET_ACCESS_KEY,
        S3Config::REGION,
        S3Config::FORCE_PATH_STYLE,
    ] {
        match services.source.get(key) {
            Some(v) => src.set(key, v),
            None => src.remove(key),
        }
    }
    Ok(src)
}

async fn start() -> anyhow::Result<Services> {
    let labels = session_labels();
    let postgres = TestImage::Postgres
        .request()
        .await?
        .with_exposed_port(5432.tcp())
        .with_wait_for(WaitFor::message_on_stderr(
            "database system is ready to accept connections",
        ))
        .with_env_var("POSTGRES_HOST_AUTH_METHOD", "trust")
        .with_env_var("POSTGRES_DB", "rainlogs")
        .with_labels(labels.clone())
        .start()
        .await?;
    let redis = TestImage::Redis
        .request()
        .await?
        .with_exposed_port(6379.tcp())
        .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
        .with_labels(labels.clone())
        .start()
        .await?;
    let garage = start_garage_node(&GarageNodeSpec::single()).await?;
    assign_layout(&garage.container, std::slice::from_ref(&garage.id)).await?;
    provision_bucket(&garage.container).await?;

    let pg_port = postgres.get_host_port_ipv4(5432).await?;
    let redis_port = redis.get_host_port_ipv4(6379).await?;
    let database_url = format!("postgres://postgres@127.0.0.1:{pg_port}/rainlogs");
    // Upstream postgres:15 prints the readiness line for its first-start server too
    // (which listens on a socket only): a TCP connection is the real answer.
    wait_for("postgres in its container", Duration::from_secs(60), || {
        let url = database_url.clone();
        async move { sqlx::PgConnection::connect(&url).await.ok().map(|_| ()) }
    })
    .await;
    let source = ConfigSource::from_pairs([
        (DatabaseConfig::URL.to_owned(), database_url),
        (
            RedisConfig::URL.to_owned(),
            format!("redis://127.0.0.1:{redis_port}/0"),
        ),
        (S3Config::ENDPOINT.to_owned(), garage.s3_endpoint().await?),
        (S3Config::BUCKET.to_owned(), BUCKET.to_owned()),
        (S3Config::ACCESS_KEY_ID.to_owned(), DEV_KEY_ID.to_owned()),
        (
            S3Config::SECRET_ACCESS_KEY.to_owned(),
            DEV_KEY_SECRET.to_owned(),
        ),
        (S3Config::REGION.to_owned(), "garage".to_owned()),
        (S3Config::FORCE_PATH_STYLE.to_owned(), "true".to_owned()),
    ]);
    Ok(Services {
        source,
        _postgres: postgres,
        _redis: redis,
        _garage: garage.container,
    })
}

// ------------------------------------------------------------------ Garage

/// How to start one Garage node.
pub struct GarageNodeSpec {
    /// Replication factor written into the node's configuration.
    pub replication: usize,
    /// Garage's `consistency_mode`: `consistent` (reads and writes need a quorum) or
    /// `degraded` (writes need a quorum, one node answers reads).
    pub consistency: &'static str,
    /// Docker network and the node's name on it (`None`: the default bridge, alone).
    pub network: Option<(String, String)>,
}

impl GarageNodeSpec {
    fn single() -> Self {
        Self {
            replication: 1,
            consistency: "consistent",
            network: None,
        }
    }

    fn config(&self) -> String {
        // A node on a network advertises its name there (resolved when it starts);
        // a single node talks to itself only.
        let public = match &self.network {
            Some((_, host)) => format!("{host}:3901"),
            None => "127.0.0.1:3901".to_owned(),
        };
        format!(
            r#"metadata_dir = "/var/lib/garage/meta"
data_dir = "/var/lib/garage/data"
db_engine = "sqlite"
replication_factor = {replication}
consistency_mode = "{consistency}"
rpc_bind_addr = "0.0.0.0:3901"
rpc_public_addr = "{public}"
rpc_secret = "{GARAGE_RPC_SECRET}"

[s3_api]
s3_region = "garage"
api_bind_addr = "0.0.0.0:3900"

[admin]
api_bind_addr = "0.0.0.0:3903"
admin_token = "{GARAGE_ADMIN_TOKEN}"
"#,
            replication = self.replication,
            consistency = self.consistency
        )
    }
}

/// One running Garage node.
pub struct GarageNode {
    pub container: ContainerAsync<GenericImage>,
    /// The node's id (hex public key).
    pub id: String,
}

impl GarageNode {
    /// The node's S3 API, as the host reaches it.
    pub async fn s3_endpoint(&self) -> anyhow::Result<String> {
        Ok(format!(
            "http://127.0.0.1:{}",
            self.container.get_host_port_ipv4(3900).await?
        ))
    }

    /// The node's admin API, as the host reaches it.
    pub async fn admin_endpoint(&self) -> anyhow::Result<String> {
        Ok(format!(
            "http://127.0.0.1:{}",
            self.container.get_host_port_ipv4(3903).await?
        ))
    }

    /// Runs the `garage` CLI in the node's container.
    pub async fn garage(&self, args: &[&str]) -> anyhow::Result<String> {
        garage_cli(&self.container, args).await
    }

    /// Data blocks the node holds on its own disk: the files under its data directory
    /// (half-written `.tmp` files excepted). Exact, unlike Garage's own counters (the
    /// reference-count table says which blocks a node should hold, not which it has).
    pub async fn stored_blocks(&self) -> anyhow::Result<u64> {
        let out = docker_cli(&[
            "exec",
            self.container.id(),
            "find",
            "/var/lib/garage/data",
            "-type",
            "f",
            "-not",
            "-name",
            "*.tmp",
        ])
        .await?;
        Ok(out.lines().filter(|l| !l.trim().is_empty()).count() as u64)
    }
}

/// Starts one node and reads its id.
pub async fn start_garage_node(spec: &GarageNodeSpec) -> anyhow::Result<GarageNode> {
    let mut request = TestImage::Garage
        .request()
        .await?
        .with_exposed_port(3900.tcp())
        .with_exposed_port(3903.tcp())
        .with_wait_for(WaitFor::message_on_either_std("S3 API server listening"))
        .with_copy_to("/etc/garage.toml", spec.config().into_bytes())
        .with_labels(session_labels());
    if let Some((network, host)) = &spec.network {
        request = request
            .with_network(network.clone())
            .with_hostname(host.clone())
            // Peers find each other by container name through Docker's DNS.
            .with_container_name(host.clone());
    }
    let container = request.start().await?;
    let id = garage_cli(&container, &["node", "id", "-q"]).await?;
    let id = id.trim().split('@').next().unwrap_or_default().to_owned();
    anyhow::ensure!(!id.is_empty(), "garage node id printed nothing");
    Ok(GarageNode { container, id })
}

/// Gives every node a role (one zone each, 1 GB) and applies the layout, through the
/// first node.
pub async fn assign_layout(
    first: &ContainerAsync<GenericImage>,
    ids: &[String],
) -> anyhow::Result<()> {
    for (n, id) in ids.iter().enumerate() {
        let zone = format!("dc{}", n + 1);
        garage_cli(first, &["layout", "assign", "-z", &zone, "-c", "1G", id]).await?;
    }
    garage_cli(first, &["layout", "apply", "--version", "1"]).await?;
    Ok(())
}

/// Imports the development key and creates the bucket it owns, through `node`.
pub async fn provision_bucket(node: &ContainerAsync<GenericImage>) -> anyhow::Result<()> {
    garage_cli(
        node,
        &[
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
    garage_cli(node, &["bucket", "create", BUCKET]).await?;
    garage_cli(
        node,
        &[
            "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", DEV_KEY_ID,
        ],
    )
    .await?;
    Ok(())
}

/// Runs `/garage ARGS` in `container`; a non-zero exit is an error with its output.
pub async fn garage_cli(
    container: &ContainerAsync<GenericImage>,
    args: &[&str],
) -> anyhow::Result<String> {
    let mut cmd = vec!["/garage"];
    cmd.extend_from_slice(args);
    let mut result = container
        .exec(ExecCommand::new(cmd.iter().copied()))
        .await?;
    let stdout = String::from_utf8_lossy(&result.stdout_to_vec().await?).into_owned();
    let stderr = String::from_utf8_lossy(&result.stderr_to_vec().await?).into_owned();
    match result.exit_code().await? {
        Some(0) | None => Ok(stdout),
        Some(code) => anyhow::bail!("garage {} exited {code}: {stdout}{stderr}", args.join(" ")),
    }
}

/// Runs `docker ARGS` (the CLI: the same commands an operator types), returning stdout.
pub async fn docker_cli(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("docker")
        .args(args)
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("docker {}: {e}", args.join(" ")))?;
    anyhow::ensure!(
        out.status.success(),
        "docker {} exited {}: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One node's view of its own data, from Garage's admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeData {
    /// Items per metadata table (object, version, block_ref, …).
    pub tables: std::collections::BTreeMap<String, u64>,
    /// Block reference counters (≈ blocks the node must hold).
    pub blocks: u64,
    /// Blocks still to fetch or repair, and blocks whose resync failed.
    pub resync_queue: u64,
    pub resync_errors: u64,
}

/// A Garage cluster of containers on its own Docker network, every node holding a
/// replica (replication factor = node count). Node 0 is the S3 and admin entry point;
/// the tests take the others away. Dropping it removes the containers and the network.
pub struct GarageCluster {
    pub network: String,
    pub nodes: Vec<GarageNode>,
}

impl GarageCluster {
    /// Starts `n` nodes in `consistency` mode (see [`GarageNodeSpec`]), connects them,
    /// applies a layout with one zone per node and waits until the cluster is healthy;
    /// then imports the key and creates the bucket.
    pub async fn start(n: usize, consistency: &'static str) -> anyhow::Result<Self> {
        let network = format!(
            "{}-garage-{}",
            session(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        docker_cli(&[
            "network",
            "create",
            "--label",
            &format!("{SESSION_LABEL}={}", session()),
            &network,
        ])
        .await?;
        // From here on, Drop removes whatever was made, also when a step fails.
        let mut cluster = Self {
            network: network.clone(),
            nodes: Vec::new(),
        };
        for i in 1..=n {
            let spec = GarageNodeSpec {
                replication: n,
                consistency,
                network: Some((network.clone(), format!("{network}-node{i}"))),
            };
            cluster.nodes.push(start_garage_node(&spec).await?);
        }
        for (i, node) in cluster.nodes.iter().enumerate().skip(1) {
            let peer = format!("{}@{network}-node{}:3901", node.id, i + 1);
            cluster.nodes[0].garage(&["node", "connect", &peer]).await?;
        }
        let ids: Vec<String> = cluster.nodes.iter().map(|n| n.id.clone()).collect();
        assign_layout(&cluster.nodes[0].container, &ids).await?;
        // Writes need a quorum of replicas: wait until every node is connected.
        cluster
            .wait_status("healthy", Duration::from_secs(60))
            .await?;
        provision_bucket(&cluster.nodes[0].container).await?;
        Ok(cluster)
    }

    /// The entry node's S3 API.
    pub async fn s3_endpoint(&self) -> anyhow::Result<String> {
        self.nodes[0].s3_endpoint().await
    }

    /// `GET /v2/{call}` on the entry node's admin API, as JSON.
    pub async fn admin(&self, call: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}/v2/{call}", self.nodes[0].admin_endpoint().await?);
        let resp = reqwest::Client::new()
            .get(&url)
            .bearer_auth(GARAGE_ADMIN_TOKEN)
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .error_for_status()?;
        Ok(serde_json::from_slice(&resp.bytes().await?)?)
    }

    /// The entry node's view of the cluster: `healthy`, `degraded` or `unavailable`.
    pub async fn status(&self) -> anyhow::Result<String> {
        let health = self.admin("GetClusterHealth").await?;
        Ok(health["status"].as_str().unwrap_or_default().to_owned())
    }

    /// Waits until the entry node reports `want`.
    pub async fn wait_status(&self, want: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let now = self.status().await;
            if matches!(&now, Ok(s) if s == want) {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "garage cluster not {want} within {timeout:?} (last: {now:?})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// What node `i` holds, as it reports itself (through the entry node).
    pub async fn node_data(&self, i: usize) -> anyhow::Result<NodeData> {
        let id = &self.nodes[i].id;
        let stats = self.admin(&format!("GetNodeStatistics?node={id}")).await?;
        let node = stats["success"]
            .as_object()
            .and_then(|m| m.values().next())
            .ok_or_else(|| anyhow::anyhow!("node {i} gave no statistics: {stats}"))?;
        let tables = node["tableStats"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| Some((t["tableName"].as_str()?.to_owned(), t["items"].as_u64()?)))
            .collect();
        let blocks = &node["blockManagerStats"];
        Ok(NodeData {
            tables,
            blocks: blocks["rcEntries"].as_u64().unwrap_or_default(),
            resync_queue: blocks["resyncQueueLen"].as_u64().unwrap_or_default(),
            resync_errors: blocks["resyncErrors"].as_u64().unwrap_or_default(),
        })
    }

    /// `docker kill` of node `i`: SIGKILL, no shutdown.
    pub async fn kill(&self, i: usize) -> anyhow::Result<()> {
        docker_cli(&["kill", self.nodes[i].container.id()])
            .await
            .map(drop)
    }

    /// Starts node `i` again (same data, same identity) after a kill.
    pub async fn restart(&self, i: usize) -> anyhow::Result<()> {
        self.nodes[i].container.start().await?;
        Ok(())
    }

    /// `docker network disconnect` / `connect` of node `i` on the cluster's network.
    pub async fn disconnect(&self, i: usize) -> anyhow::Result<()> {
        docker_cli(&[
            "network",
            "disconnect",
            &self.network,
            self.nodes[i].container.id(),
        ])
        .await
        .map(drop)
    }

    pub async fn connect(&self, i: usize) -> anyhow::Result<()> {
        docker_cli(&[
            "network",
            "connect",
            &self.network,
            self.nodes[i].container.id(),
        ])
        .await
        .map(drop)
    }
}

impl Drop for GarageCluster {
    fn drop(&mut self) {
        // The containers first (each handle removes its own), then their network.
        self.nodes.clear();
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Prints a container's last log lines when the test holding it fails — what a failed
/// run in CI needs to be understood.
pub struct LogsOnPanic(pub String);

impl Drop for LogsOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(out) = Command::new("docker")
                .args(["logs", "--tail", "80", &self.0])
                .output()
            {
                eprintln!(
                    "--- last logs of container {}:\n{}{}",
                    self.0,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}
