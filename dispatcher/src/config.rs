//! Dispatcher settings from `RAINLOGS_*` variables, parsed once at start-up in the
//! same style as `rainlogs_core::config`: a bad value is a [`ConfigError`] naming
//! the variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rainlogs_core::config::{ConfigError, ConfigSource};

use crate::schedule::Schedule;

/// Which invoker carries tasks to functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokerConfig {
    /// Handler libraries linked into the dispatcher (default).
    InProcess,
    /// The dispatcher serves the Lambda Runtime API to function binaries it runs.
    Shim(ShimConfig),
    /// The Lambda Invoke API at an endpoint.
    Remote(RemoteConfig),
}

/// Runtime-shim settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimConfig {
    /// Where the function binaries `rainlogs-<function>` are.
    pub functions_dir: PathBuf,
    /// Functions to run (default: every stage, and `ingest` when a landing bucket is
    /// configured).
    pub functions: Vec<ShimFunction>,
    /// Child processes per function (each takes one invocation at a time).
    pub instances: usize,
    /// How long one invocation may take before the child is killed and restarted.
    pub timeout: Duration,
}

/// A function the shim runs, and optionally its binary (else `rainlogs-<name>` in
/// the functions directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimFunction {
    pub name: String,
    pub binary: Option<PathBuf>,
}

impl ShimFunction {
    pub fn binary(&self, dir: &std::path::Path) -> PathBuf {
        self.binary
            .clone()
            .unwrap_or_else(|| dir.join(format!("rainlogs-{}", self.name)))
    }
}

/// Remote (Lambda Invoke API) settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    /// How requests reach the Invoke API: signed through the AWS SDK, or plain HTTP.
    pub api: RemoteApi,
    /// Lambda function name for a stage; `{function}` is replaced by the stage name.
    /// A full ARN (with an alias or version) works in the AWS mode.
    pub function_name: String,
    /// How long one invocation may take, the SDK's retries included.
    pub timeout: Duration,
}

/// The two ways of calling the Lambda Invoke API (`RAINLOGS_REMOTE_MODE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteApi {
    /// AWS Lambda through the AWS SDK: SigV4-signed, credentials and region from the
    /// standard chain, the SDK's retries (throttling among them).
    Aws {
        /// An endpoint instead of AWS's (`cargo lambda watch`, an emulator); requests
        /// are still signed, the endpoint may ignore it.
        endpoint_url: Option<String>,
        /// A region instead of the chain's (`AWS_REGION`, the profile).
        region: Option<String>,
        /// Attempts per invocation the SDK makes on retryable errors (1 = no retry).
        max_attempts: u32,
    },
    /// Unsigned `POST {endpoint}/2015-03-31/functions/{name}/invocations`: the Runtime
    /// Interface Emulator, `cargo lambda watch`.
    Plain { endpoint: String },
}

/// One queue this dispatcher consumes and how many of its tasks may run at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLimit {
    pub name: String,
    pub concurrency: usize,
}

/// Everything the dispatch loop needs to know.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    pub queues: Vec<QueueLimit>,
    /// How long a reserved task stays ours without a heartbeat.
    pub lease: Duration,
    pub heartbeat: Duration,
    /// How often expired leases are looked for.
    pub reap_interval: Duration,
    /// Most tasks reserved (or settled) in one script call.
    pub batch: usize,
    /// How long in-flight tasks may finish after SIGTERM/SIGINT before they are handed back.
    pub shutdown_grace: Duration,
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// The longest a handler's Retry-After hint may delay a retry (docs/QUEUE.md).
    pub retry_after_max: Duration,
    /// Longest idle blocking wait (also bounds how late a delayed task is noticed
    /// when no enqueue wakes the worker).
    pub idle_wait: Duration,
    pub metrics_addr: Option<SocketAddr>,
    pub schedules: Vec<Schedule>,
    pub invoker: InvokerConfig,
    /// The runtime lag above which the dispatcher takes fewer tasks (adaptive
    /// concurrency, docs/QUEUE.md); zero keeps every queue at its configured limit.
    pub lag_target: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            queues: vec![QueueLimit {
                name: "default".into(),
                concurrency: Self::DEFAULT_CONCURRENCY,
            }],
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            reap_interval: Duration::from_secs(5),
            batch: 256,
            shutdown_grace: Duration::from_secs(25),
            retry_base: Duration::from_millis(500),
            retry_cap: Duration::from_secs(300),
            retry_after_max: Duration::from_secs(900),
            idle_wait: Duration::from_secs(1),
            metrics_addr: None,
            schedules: Vec::new(),
            invoker: InvokerConfig::InProcess,
            lag_target: Duration::from_millis(50),
        }
    }
}

/// Every stage function, the default set the shim runs.
pub const STAGE_FUNCTIONS: &[&str] = &["fetch", "encrypt", "upload", "prune", "kms"];
/// The landing ingest function (`rainlogs-ingest`), which the shim also runs by default
/// when a landing bucket is configured (`RAINLOGS_LANDING_BUCKET`): without one the
/// binary refuses to start and no `ingest.landing` task is ever sent.
pub const LANDING_FUNCTION: &str = "ingest";

impl DispatcherConfig {
    pub const QUEUES: &'static str = "RAINLOGS_QUEUES";
    pub const CONCURRENCY: &'static str = "RAINLOGS_QUEUE_CONCURRENCY";
    pub const LEASE_MS: &'static str = "RAINLOGS_LEASE_MS";
    pub const HEARTBEAT_MS: &'static str = "RAINLOGS_HEARTBEAT_MS";
    pub const REAP_INTERVAL_MS: &'static str = "RAINLOGS_REAP_INTERVAL_MS";
    pub const BATCH: &'static str = "RAINLOGS_RESERVE_BATCH";
    pub const SHUTDOWN_GRACE_MS: &'static str = "RAINLOGS_SHUTDOWN_GRACE_MS";
    pub const RETRY_BASE_MS: &'static str = "RAINLOGS_RETRY_BASE_MS";
    pub const RETRY_CAP_MS: &'static str = "RAINLOGS_RETRY_CAP_MS";
    pub const RETRY_AFTER_MAX_MS: &'static str = "RAINLOGS_RETRY_AFTER_MAX_MS";
    pub const IDLE_WAIT_MS: &'static str = "RAINLOGS_IDLE_WAIT_MS";
    pub const METRICS_ADDR: &'static str = "RAINLOGS_METRICS_ADDR";
    pub const SCHEDULES_FILE: &'static str = "RAINLOGS_SCHEDULES_FILE";
    pub const INVOKER: &'static str = "RAINLOGS_INVOKER";
    pub const SHIM_FUNCTIONS_DIR: &'static str = "RAINLOGS_SHIM_FUNCTIONS_DIR";
    pub const SHIM_FUNCTIONS: &'static str = "RAINLOGS_SHIM_FUNCTIONS";
    pub const SHIM_INSTANCES: &'static str = "RAINLOGS_SHIM_INSTANCES";
    pub const SHIM_TIMEOUT_MS: &'static str = "RAINLOGS_SHIM_TIMEOUT_MS";
    pub const REMOTE_ENDPOINT: &'static str = "RAINLOGS_REMOTE_ENDPOINT";
    pub const REMOTE_FUNCTION_NAME: &'static str = "RAINLOGS_REMOTE_FUNCTION_NAME";
    pub const REMOTE_TIMEOUT_MS: &'static str = "RAINLOGS_REMOTE_TIMEOUT_MS";
    pub const REMOTE_MODE: &'static str = "RAINLOGS_REMOTE_MODE";
    pub const REMOTE_REGION: &'static str = "RAINLOGS_REMOTE_REGION";
    pub const REMOTE_MAX_ATTEMPTS: &'static str = "RAINLOGS_REMOTE_MAX_ATTEMPTS";
    pub const LAG_TARGET_MS: &'static str = "RAINLOGS_LAG_TARGET_MS";

    pub const DEFAULT_CONCURRENCY: usize = 64;

    pub fn from_source(src: &ConfigSource) -> Result<Self, ConfigError> {
        let d = Self::default();
        let invalid = |var: &str, reason: String| ConfigError::Invalid {
            var: var.to_owned(),
            reason,
        };
        let concurrency: usize = src.parsed_or(Self::CONCURRENCY, Self::DEFAULT_CONCURRENCY)?;
        if concurrency == 0 {
            return Err(invalid(Self::CONCURRENCY, "must be at least 1".into()));
        }
        let queues = parse_queues(src.get(Self::QUEUES).unwrap_or("default"), concurrency)
            .map_err(|reason| invalid(Self::QUEUES, reason))?;
        let lease = src.duration_ms_or(Self::LEASE_MS, d.lease)?;
        if lease < Duration::from_millis(100) {
            return Err(invalid(Self::LEASE_MS, "must be at least 100 ms".into()));
        }
        let heartbeat = src.duration_ms_or(Self::HEARTBEAT_MS, lease / 3)?;
        if heartbeat.is_zero() || heartbeat >= lease {
            return Err(invalid(
                Self::HEARTBEAT_MS,
                format!(
                    "must be above 0 and below the lease ({} ms)",
                    lease.as_millis()
                ),
            ));
        }
        let batch: usize = src.parsed_or(Self::BATCH, d.batch)?;
        if !(1..=5000).contains(&batch) {
            return Err(invalid(Self::BATCH, "must be 1-5000".into()));
        }
        let metrics_addr = match src.get(Self::METRICS_ADDR).map(str::trim) {
            None | Some("off") => None,
            Some(raw) => Some(raw.parse::<SocketAddr>().map_err(|e| {
                invalid(
                    Self::METRICS_ADDR,
                    format!("{e} (expected host:port or `off`)"),
                )
            })?),
        };
        // Unset: the built-in schedules (the daily prune); `off`: none; else the file's
        // list replaces the built-in one.
        let schedules = match src.get(Self::SCHEDULES_FILE).map(str::trim) {
            None => crate::schedule::default_schedules()
                .map_err(|e| invalid(Self::SCHEDULES_FILE, format!("built-in schedule: {e}")))?,
            Some("off") => Vec::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid(Self::SCHEDULES_FILE, format!("cannot read {path}: {e}"))
                })?;
                crate::schedule::parse_schedules(&text)
                    .map_err(|e| invalid(Self::SCHEDULES_FILE, format!("{path}: {e}")))?
            }
        };
        let invoker = match src
            .get(Self::INVOKER)
            .map(str::trim)
            .unwrap_or("in-process")
        {
            "in-process" => InvokerConfig::InProcess,
            "shim" => InvokerConfig::Shim(ShimConfig::from_source(src)?),
            "remote" => InvokerConfig::Remote(RemoteConfig::from_source(src)?),
            other => {
                return Err(invalid(
                    Self::INVOKER,
                    format!("expected in-process, shim or remote, got {other:?}"),
                ))
            }
        };
        Ok(Self {
            queues,
            lease,
            heartbeat,
            reap_interval: src
                .duration_ms_or(Self::REAP_INTERVAL_MS, (lease / 4).min(d.reap_interval))?,
            batch,
            shutdown_grace: src.duration_ms_or(Self::SHUTDOWN_GRACE_MS, d.shutdown_grace)?,
            retry_base: src.duration_ms_or(Self::RETRY_BASE_MS, d.retry_base)?,
            retry_cap: src.duration_ms_or(Self::RETRY_CAP_MS, d.retry_cap)?,
            retry_after_max: {
                let max = src.duration_ms_or(Self::RETRY_AFTER_MAX_MS, d.retry_after_max)?;
                if max > Duration::from_secs(24 * 3600) {
                    return Err(invalid(
                        Self::RETRY_AFTER_MAX_MS,
                        "must be at most 86400000 (a day): a longer wait can push a window past Cloudflare's 7 days".into(),
                    ));
                }
                max
            },
            idle_wait: src
                .duration_ms_or(Self::IDLE_WAIT_MS, d.idle_wait)?
                .max(Duration::from_millis(1)),
            metrics_addr,
            schedules,
            invoker,
            lag_target: src.duration_ms_or(Self::LAG_TARGET_MS, d.lag_target)?,
        })
    }

    /// The same settings consuming `names` at the default concurrency.
    pub fn with_queue_names(mut self, names: &[String]) -> Self {
        let concurrency = self
            .queues
            .first()
            .map(|q| q.concurrency)
            .unwrap_or(Self::DEFAULT_CONCURRENCY);
        self.queues = names
            .iter()
            .map(|n| QueueLimit {
                name: n.clone(),
                concurrency,
            })
            .collect();
        self
    }
}

/// `default:64,fetch:8` → queue limits; a name without `:n` gets `concurrency`.
pub fn parse_queues(raw: &str, concurrency: usize) -> Result<Vec<QueueLimit>, String> {
    let mut out: Vec<QueueLimit> = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, n) = match item.split_once(':') {
            Some((name, n)) => {
                let n: usize = n
                    .trim()
                    .parse()
                    .map_err(|_| format!("{item:?}: concurrency must be a positive integer"))?;
                (name.trim(), n)
            }
            None => (item, concurrency),
        };
        if n == 0 {
            return Err(format!("{item:?}: concurrency must be at least 1"));
        }
        if !valid_queue_name(name) {
            return Err(format!(
                "{name:?} is not a queue name (1-64 chars of a-z, 0-9, '-', '_')"
            ));
        }
        if out.iter().any(|q| q.name == name) {
            return Err(format!("queue {name:?} is listed twice"));
        }
        out.push(QueueLimit {
            name: name.to_owned(),
            concurrency: n,
        });
    }
    if out.is_empty() {
        return Err("names no queue".into());
    }
    Ok(out)
}

/// The rule the envelope applies to its `queue` field.
pub fn valid_queue_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl ShimConfig {
    fn from_source(src: &ConfigSource) -> Result<Self, ConfigError> {
        let functions_dir = match src.get(DispatcherConfig::SHIM_FUNCTIONS_DIR) {
            Some(dir) => PathBuf::from(dir),
            // Next to the running `rainlogs` binary: cargo puts every binary of the
            // workspace in one target directory, and packages ship them together.
            None => std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(PathBuf::from))
                .ok_or_else(|| ConfigError::Missing {
                    var: DispatcherConfig::SHIM_FUNCTIONS_DIR.into(),
                    hint: "the directory holding the rainlogs-<function> binaries",
                })?,
        };
        // `upload,fetch` or `testfn=/path/to/binary`.
        let functions: Vec<ShimFunction> = match src.get(DispatcherConfig::SHIM_FUNCTIONS) {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|item| match item.split_once('=') {
                    Some((name, path)) => ShimFunction {
                        name: name.trim().to_owned(),
                        binary: Some(PathBuf::from(path.trim())),
                    },
                    None => ShimFunction {
                        name: item.to_owned(),
                        binary: None,
                    },
                })
                .collect(),
            None => {
                let landing = src
                    .get(rainlogs_core::config::LANDING_BUCKET)
                    .is_some_and(|b| !b.trim().is_empty());
                STAGE_FUNCTIONS
                    .iter()
                    .copied()
                    .chain(landing.then_some(LANDING_FUNCTION))
                    .map(|s| ShimFunction {
                        name: s.to_owned(),
                        binary: None,
                    })
                    .collect()
            }
        };
        if let Some(bad) = functions
            .iter()
            .map(|f| &f.name)
            .find(|f| !valid_queue_name(f))
        {
            return Err(ConfigError::Invalid {
                var: DispatcherConfig::SHIM_FUNCTIONS.into(),
                reason: format!("{bad:?} is not a function name"),
            });
        }
        let instances: usize = src.parsed_or(DispatcherConfig::SHIM_INSTANCES, 1)?;
        if instances == 0 {
            return Err(ConfigError::Invalid {
                var: DispatcherConfig::SHIM_INSTANCES.into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(Self {
            functions_dir,
            functions,
            instances,
            timeout: src
                .duration_ms_or(DispatcherConfig::SHIM_TIMEOUT_MS, Duration::from_secs(900))?,
        })
    }
}

impl RemoteConfig {
    /// `RAINLOGS_REMOTE_MODE`: `aws` or `plain`; unset, `plain` when an endpoint is
    /// given (the emulator set-up from before the AWS mode) and `aws` otherwise.
    fn from_source(src: &ConfigSource) -> Result<Self, ConfigError> {
        let invalid = |var: &str, reason: String| ConfigError::Invalid {
            var: var.to_owned(),
            reason,
        };
        let endpoint = src
            .get(DispatcherConfig::REMOTE_ENDPOINT)
            .map(|e| e.trim().trim_end_matches('/').to_owned())
            .filter(|e| !e.is_empty());
        let mode = src
            .get(DispatcherConfig::REMOTE_MODE)
            .map(str::trim)
            .unwrap_or(if endpoint.is_some() { "plain" } else { "aws" });
        let api = match mode {
            "plain" => {
                let endpoint = endpoint.ok_or_else(|| ConfigError::Missing {
                    var: DispatcherConfig::REMOTE_ENDPOINT.into(),
                    hint: "the Lambda Invoke API base URL, e.g. http://127.0.0.1:9000",
                })?;
                if !endpoint.starts_with("http://") {
                    return Err(invalid(
                        DispatcherConfig::REMOTE_ENDPOINT,
                        "the plain mode speaks unsigned http:// only; RAINLOGS_REMOTE_MODE=aws \
                         signs requests (docs/QUEUE.md)"
                            .into(),
                    ));
                }
                RemoteApi::Plain { endpoint }
            }
            "aws" => {
                if let Some(e) = &endpoint {
                    if !(e.starts_with("http://") || e.starts_with("https://")) {
                        return Err(invalid(
                            DispatcherConfig::REMOTE_ENDPOINT,
                            "expected an http:// or https:// URL".into(),
                        ));
                    }
                }
                let max_attempts: u32 = src.parsed_or(DispatcherConfig::REMOTE_MAX_ATTEMPTS, 3)?;
                if !(1..=10).contains(&max_attempts) {
                    return Err(invalid(
                        DispatcherConfig::REMOTE_MAX_ATTEMPTS,
                        "must be 1-10".into(),
                    ));
                }
                RemoteApi::Aws {
                    endpoint_url: endpoint,
                    region: src
                        .get(DispatcherConfig::REMOTE_REGION)
                        .map(str::trim)
                        .filter(|r| !r.is_empty())
                        .map(str::to_owned),
                    max_attempts,
                }
            }
            other => {
                return Err(invalid(
                    DispatcherConfig::REMOTE_MODE,
                    format!("{other:?} is not a mode (aws or plain)"),
                ))
            }
        };
        let function_name = src
            .get(DispatcherConfig::REMOTE_FUNCTION_NAME)
            .unwrap_or("rainlogs-{function}")
            .trim()
            .to_owned();
        Ok(Self {
            api,
            function_name,
            timeout: src.duration_ms_or(
                DispatcherConfig::REMOTE_TIMEOUT_MS,
                Duration::from_secs(900),
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_with_and_without_limits() {
        let q = parse_queues("default:8, fetch", 3).unwrap();
        assert_eq!(
            q[0],
            QueueLimit {
                name: "default".into(),
                concurrency: 8
            }
        );
        assert_eq!(
            q[1],
            QueueLimit {
                name: "fetch".into(),
                concurrency: 3
            }
        );
        assert!(parse_queues("a:0", 1).is_err());
        assert!(parse_queues("Bad Name", 1).is_err());
        assert!(parse_queues("a,a", 1).is_err());
        assert!(parse_queues(" , ", 1).is_err());
    }

    #[test]
    fn retry_after_max_defaults_to_15_minutes_and_stays_under_a_day() {
        let cfg = DispatcherConfig::from_source(&ConfigSource::default()).unwrap();
        assert_eq!(cfg.retry_after_max, Duration::from_secs(900));
        let src = ConfigSource::from_pairs([(DispatcherConfig::RETRY_AFTER_MAX_MS, "60000")]);
        let cfg = DispatcherConfig::from_source(&src).unwrap();
        assert_eq!(cfg.retry_after_max, Duration::from_secs(60));
        let src = ConfigSource::from_pairs([(DispatcherConfig::RETRY_AFTER_MAX_MS, "604800000")]);
        let err = DispatcherConfig::from_source(&src).unwrap_err();
        assert_eq!(err.subject(), DispatcherConfig::RETRY_AFTER_MAX_MS);
    }

    #[test]
    fn the_shim_runs_the_landing_ingest_function_only_with_a_landing_bucket() {
        let names = |pairs: &[(&str, &str)]| {
            let mut all = vec![
                (DispatcherConfig::INVOKER, "shim"),
                (DispatcherConfig::SHIM_FUNCTIONS_DIR, "/opt/rainlogs"),
            ];
            all.extend_from_slice(pairs);
            match DispatcherConfig::from_source(&ConfigSource::from_pairs(all))
                .unwrap()
                .invoker
            {
                InvokerConfig::Shim(shim) => shim
                    .functions
                    .into_iter()
                    .map(|f| f.name)
                    .collect::<Vec<_>>(),
                other => panic!("not the shim: {other:?}"),
            }
        };
        assert_eq!(names(&[]), STAGE_FUNCTIONS);
        assert_eq!(
            names(&[(rainlogs_core::config::LANDING_BUCKET, " ")]),
            STAGE_FUNCTIONS
        );
        let with_landing = names(&[(rainlogs_core::config::LANDING_BUCKET, "landing")]);
        assert_eq!(
            with_landing.last().map(String::as_str),
            Some(LANDING_FUNCTION)
        );
        assert_eq!(with_landing[..STAGE_FUNCTIONS.len()], *STAGE_FUNCTIONS);
        // An explicit list is taken as it is.
        assert_eq!(
            names(&[
                (rainlogs_core::config::LANDING_BUCKET, "landing"),
                (DispatcherConfig::SHIM_FUNCTIONS, "upload")
            ]),
            ["upload"]
        );
    }

    #[test]
    fn unknown_invoker_names_the_variable() {
        let src = ConfigSource::from_pairs([(DispatcherConfig::INVOKER, "carrier-pigeon")]);
        let err = DispatcherConfig::from_source(&src).unwrap_err();
        assert_eq!(err.subject(), DispatcherConfig::INVOKER);
    }

    #[test]
    fn remote_mode_follows_the_endpoint_unless_named() {
        let remote = |pairs: &[(&str, &str)]| {
            let mut all = vec![(DispatcherConfig::INVOKER, "remote")];
            all.extend_from_slice(pairs);
            DispatcherConfig::from_source(&ConfigSource::from_pairs(all)).map(|c| match c.invoker {
                InvokerConfig::Remote(r) => r,
                other => panic!("not remote: {other:?}"),
            })
        };
        // No endpoint: AWS Lambda itself, signed, three attempts.
        assert_eq!(
            remote(&[]).unwrap().api,
            RemoteApi::Aws {
                endpoint_url: None,
                region: None,
                max_attempts: 3
            }
        );
        // An endpoint alone: the unsigned emulator mode, as before.
        assert_eq!(
            remote(&[(DispatcherConfig::REMOTE_ENDPOINT, "http://127.0.0.1:9000/")])
                .unwrap()
                .api,
            RemoteApi::Plain {
                endpoint: "http://127.0.0.1:9000".into()
            }
        );
        // Signed requests to a local endpoint (cargo lambda watch) in another region.
        assert_eq!(
            remote(&[
                (DispatcherConfig::REMOTE_MODE, "aws"),
                (DispatcherConfig::REMOTE_ENDPOINT, "http://127.0.0.1:9000"),
                (DispatcherConfig::REMOTE_REGION, "eu-central-1"),
                (DispatcherConfig::REMOTE_MAX_ATTEMPTS, "5"),
            ])
            .unwrap()
            .api,
            RemoteApi::Aws {
                endpoint_url: Some("http://127.0.0.1:9000".into()),
                region: Some("eu-central-1".into()),
                max_attempts: 5
            }
        );
        let subject = |pairs: &[(&str, &str)]| remote(pairs).unwrap_err().subject();
        assert_eq!(
            subject(&[(DispatcherConfig::REMOTE_MODE, "plain")]),
            DispatcherConfig::REMOTE_ENDPOINT
        );
        assert_eq!(
            subject(&[(DispatcherConfig::REMOTE_ENDPOINT, "https://lambda.example")]),
            DispatcherConfig::REMOTE_ENDPOINT,
            "plain is unsigned http only"
        );
        assert_eq!(
            subject(&[(DispatcherConfig::REMOTE_MODE, "pigeon")]),
            DispatcherConfig::REMOTE_MODE
        );
        assert_eq!(
            subject(&[(DispatcherConfig::REMOTE_MAX_ATTEMPTS, "0")]),
            DispatcherConfig::REMOTE_MAX_ATTEMPTS
        );
    }

    #[test]
    fn heartbeat_must_be_below_lease() {
        let src = ConfigSource::from_pairs([
            (DispatcherConfig::LEASE_MS, "1000"),
            (DispatcherConfig::HEARTBEAT_MS, "1000"),
        ]);
        let err = DispatcherConfig::from_source(&src).unwrap_err();
        assert_eq!(err.subject(), DispatcherConfig::HEARTBEAT_MS);
    }

    #[test]
    fn defaults_are_in_process_with_one_default_queue() {
        let cfg = DispatcherConfig::from_source(&ConfigSource::default()).unwrap();
        assert_eq!(cfg.invoker, InvokerConfig::InProcess);
        assert_eq!(cfg.queues.len(), 1);
        assert_eq!(cfg.heartbeat, cfg.lease / 3);
        assert!(cfg.metrics_addr.is_none());
        let names: Vec<&str> = cfg.schedules.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                crate::schedule::PRUNE_SCHEDULE,
                rainlogs_prune::sample::SCHEDULE_NAME
            ],
            "prunes daily and samples hourly out of the box"
        );
    }

    #[test]
    fn schedules_file_replaces_the_built_in_list_and_off_disables_it() {
        let off = ConfigSource::from_pairs([(DispatcherConfig::SCHEDULES_FILE, "off")]);
        assert!(DispatcherConfig::from_source(&off)
            .unwrap()
            .schedules
            .is_empty());
        let path = std::env::temp_dir().join(format!("rl-schedules-{}.json", uuid::Uuid::new_v4()));
        std::fs::write(
            &path,
            r#"[{"name":"prune-weekly","cron":"0 0 4 * * Sun","queue":"default","kind":"prune.run"}]"#,
        )
        .unwrap();
        let file =
            ConfigSource::from_pairs([(DispatcherConfig::SCHEDULES_FILE, path.to_str().unwrap())]);
        let cfg = DispatcherConfig::from_source(&file).unwrap();
        std::fs::remove_file(&path).unwrap();
        let names: Vec<&str> = cfg.schedules.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["prune-weekly"]);
    }
}
