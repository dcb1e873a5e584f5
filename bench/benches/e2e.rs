//! End-to-end benchmark (issue 5, item 7): one large zone from the Logpull simulator to
//! Garage, through the real pipeline, against the same work done by standard tools.
//!
//! Phases, in one run, over the same windows of the same zone (same simulator process,
//! same seed, so the same bytes):
//! 1. **rainlogs**: the `rainlogs demo` flow ([`demo::register`], [`demo::archive`],
//!    [`demo::summarise`]): fetch → encrypt → upload stages in this process, Redis
//!    queue, Postgres ledger and chain, Garage; default worker settings (concurrency
//!    [`DispatcherConfig::DEFAULT_CONCURRENCY`]). Peak RSS is this process's `VmHWM`;
//!    every stage call is timed (count, sum, max per stage) through a wrapping invoker.
//! 2. **tools**: per window, `curl (gzip) | gzip -d | zstd -3 | age -r … | aws s3 cp -`
//!    into the same bucket, `E2E_TOOLS_PARALLEL` windows at a time (default 1:
//!    sequential; each pipeline's five processes already run concurrently). Peak RSS
//!    is the sum of the resident sets of all pipeline processes, sampled every 50 ms.
//! 3. **sim**: the simulator alone over HTTP: `curl (gzip) -o /dev/null` per window, at
//!    the tools' parallelism and at Rainlogs' (all windows at once, capped by its
//!    concurrency), the ceiling both pipelines share.
//! 4. **generator**: the record generator alone, in this process (no HTTP, no gzip);
//!    also counts the raw NDJSON bytes the tools pipeline carried (the simulator is
//!    deterministic) and checks them against what Rainlogs archived.
//!
//! The simulator runs as its own process (`rainlogs-logpull-sim`, built next to this
//! bench, or `E2E_SIM_BIN`), so neither pipeline's RSS includes it; its CPU time per
//! phase is reported. Redis keys and S3 keys live under a per-run prefix; the bench's
//! objects are deleted at the end (`E2E_KEEP=1` keeps them).
//!
//! ```text
//! bash bench/e2e.sh                     # installs tools, builds, runs both cadences
//! cargo build --release -p rainlogs-logpull-sim
//! E2E_CADENCE=3600 cargo bench -p rainlogs-dispatcher --bench e2e
//! # knobs: E2E_CADENCE (60) E2E_MINUTES (60) E2E_RPM (9000) E2E_SEED (7)
//! #        E2E_PHASES (rainlogs,tools,sim,generator) E2E_TOOLS_PARALLEL (1)
//! #        E2E_TIMEOUT (1800 s) E2E_SIM_BIN E2E_KEEP
//! ```
//! Needs the local stack's environment (`source <(bash infra/local/stack.sh env)`),
//! including the master keyring. Results: docs/BENCHMARKS.md, "End-to-end (issue 5)".

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use async_trait::async_trait;
use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};
use rainlogs_archive::ledger;
use rainlogs_cli::demo::{self, FlowZone};
use rainlogs_core::config::{ConfigSource, RedisConfig, S3Config};
use rainlogs_core::storage::ObjectStore;
use rainlogs_core::TaskError;
use rainlogs_dispatcher::app::App;
use rainlogs_dispatcher::config::DispatcherConfig;
use rainlogs_dispatcher::invoker::Invoker;
use rainlogs_logpull_sim::{Field, Generator, Selection, TimestampFormat, ZoneVolume};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Semaphore;
use uuid::Uuid;

/// Accepted by the bench's own simulator only; never a real Cloudflare token.
const SIM_TOKEN: &str = "rainlogs-bench-simulator-token";
/// The bar of issue 5.
const RSS_LIMIT_MIB: f64 = 256.0;
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not valid")),
        _ => Ok(default),
    }
}

/// What one run measures.
struct Knobs {
    cadence: i32,
    minutes: i64,
    rpm: u64,
    seed: u64,
    phases: HashSet<String>,
    tools_parallel: usize,
    timeout: Duration,
    keep: bool,
}

impl Knobs {
    fn from_env() -> anyhow::Result<Self> {
        let k = Self {
            cadence: env_or("E2E_CADENCE", 60)?,
            minutes: env_or("E2E_MINUTES", 60)?,
            rpm: env_or("E2E_RPM", 9_000)?,
            seed: env_or("E2E_SEED", 7)?,
            phases: env_or("E2E_PHASES", "rainlogs,tools,sim,generator".to_owned())?
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
            tools_parallel: env_or("E2E_TOOLS_PARALLEL", 1)?,
            timeout: Duration::from_secs(env_or("E2E_TIMEOUT", 1800)?),
            keep: env_or("E2E_KEEP", 0u8)? != 0,
        };
        ensure!(
            k.cadence >= 60 && 3600 % k.cadence == 0,
            "E2E_CADENCE must divide an hour and be at least 60 s"
        );
        ensure!(
            k.minutes > 0 && (k.minutes * 60) % i64::from(k.cadence) == 0,
            "E2E_MINUTES must be a positive multiple of the cadence"
        );
        ensure!(
            k.tools_parallel >= 1,
            "E2E_TOOLS_PARALLEL must be at least 1"
        );
        for p in &k.phases {
            ensure!(
                ["rainlogs", "tools", "sim", "generator"].contains(&p.as_str()),
                "E2E_PHASES: unknown phase {p:?}"
            );
        }
        Ok(k)
    }

    fn runs(&self, phase: &str) -> bool {
        self.phases.contains(phase)
    }
}

// ------------------------------------------------------------------ /proc readings

/// A `kB` line of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Fields of `/proc/<pid>/stat` after the command name (index 0 is the state).
fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    Some(
        after
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// CPU seconds of `pid` itself and of its waited-for children (USER_HZ is 100 on Linux).
fn cpu_secs(pid: &str) -> (f64, f64) {
    let Some(f) = stat_fields(pid) else {
        return (0.0, 0.0);
    };
    // After the state: ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    // utime stime cutime cstime (indices 0..=13 here).
    let at = |i: usize| f.get(i).copied().unwrap_or(0) as f64 / 100.0;
    (at(10) + at(11), at(12) + at(13))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Resets this process's peak RSS to its current RSS (`clear_refs` 5, Linux ≥ 4.0).
fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Samples the summed RSS of this process's descendants (the simulator excluded) until
/// stopped; keeps the peak.
struct TreeSampler {
    stop: Arc<AtomicBool>,
    peak_kib: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl TreeSampler {
    fn start(exclude: Option<u32>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kib = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak_kib.clone());
        let me = std::process::id();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(descendants_rss_kib(me, exclude), Ordering::Relaxed);
                std::thread::sleep(SAMPLE_EVERY);
            }
        });
        Self {
            stop,
            peak_kib,
            thread,
        }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peak_kib.load(Ordering::Relaxed)
    }
}

fn descendants_rss_kib(root: u32, exclude: Option<u32>) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(ppid) = stat_fields(&pid.to_string()).and_then(|f| f.first().copied()) {
            children.entry(ppid as u32).or_default().push(pid);
        }
    }
    let mut total = 0;
    let mut todo = children.get(&root).cloned().unwrap_or_default();
    while let Some(pid) = todo.pop() {
        if Some(pid) == exclude {
            continue;
        }
        total += status_kib(&pid.to_string(), "VmRSS:").unwrap_or(0);
        todo.extend(children.get(&pid).cloned().unwrap_or_default());
    }
    total
}

// ------------------------------------------------------------------ simulator

/// The simulator process this bench started.
struct SimProcess {
    child: tokio::process::Child,
    url: String,
    pid: u32,
}

impl SimProcess {
    async fn start(rpm: u64, seed: u64) -> anyhow::Result<Self> {
        let bin = match std::env::var_os("E2E_SIM_BIN") {
            Some(p) => PathBuf::from(p),
            // target/<profile>/deps/e2e-<hash> → target/<profile>/rainlogs-logpull-sim
            None => std::env::current_exe()?
                .parent()
                .and_then(|deps| deps.parent())
                .map(|dir| dir.join("rainlogs-logpull-sim"))
                .context("locate the target directory")?,
        };
        ensure!(
            bin.exists(),
            "simulator binary {} not found: run `cargo build --release -p rainlogs-logpull-sim` \
             (same CARGO_TARGET_DIR) or set E2E_SIM_BIN",
            bin.display()
        );
        let mut child = tokio::process::Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", "0", "--token", SIM_TOKEN])
            .args(["--records-per-minute", &rpm.to_string()])
            .args(["--seed", &seed.to_string()])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let pid = child.id().context("simulator pid")?;
        let stdout = child.stdout.take().context("simulator stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.split("listening on ").nth(1) {
                    return Ok(url.trim().to_owned());
                }
            }
            bail!("simulator exited before listening")
        })
        .await
        .context("simulator did not start within 30 s")??;
        Ok(Self { child, url, pid })
    }

    fn cpu(&self) -> f64 {
        cpu_secs(&self.pid.to_string()).0
    }
}

// ------------------------------------------------------------------ timing invoker

#[derive(Default, Clone, Copy)]
struct StageTime {
    calls: u32,
    total: Duration,
    max: Duration,
}

/// Times every function call (per function) on its way to the real invoker.
struct Timed {
    inner: Arc<dyn Invoker>,
    spent: Mutex<BTreeMap<String, StageTime>>,
}

#[async_trait]
impl Invoker for Timed {
    async fn invoke(
        &self,
        function: &str,
        event: serde_json::Value,
    ) -> Result<serde_json::Value, TaskError> {
        let t = Instant::now();
        let out = self.inner.invoke(function, event).await;
        let took = t.elapsed();
        if let Ok(mut spent) = self.spent.lock() {
            let s = spent.entry(function.to_owned()).or_default();
            s.calls += 1;
            s.total += took;
            s.max = s.max.max(took);
        }
        out
    }

    fn functions(&self) -> Vec<String> {
        self.inner.functions()
    }
}

// ------------------------------------------------------------------ phases

struct Window {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

/// The measured outcome of one pipeline.
struct Outcome {
    label: String,
    raw: u64,
    stored: u64,
    wall: Duration,
    peak_rss_kib: u64,
    rss_note: String,
    cpu: f64,
    sim_cpu: f64,
    notes: Vec<String>,
}

impl Outcome {
    fn mbps(&self) -> f64 {
        self.raw as f64 / 1e6 / self.wall.as_secs_f64().max(1e-9)
    }

    fn print(&self) {
        let gb = self.raw as f64 / 1e9;
        println!(
            "{:<14} raw {:>13} B  stored {:>11} B ({:.1} %)  wall {:>6.1} s  {:>6.1} MB/s  peak RSS {:>6.1} MiB ({})  CPU {:.1} s ({:.1} s/GB)  simulator CPU {:.1} s",
            self.label,
            self.raw,
            self.stored,
            100.0 * self.stored as f64 / (self.raw.max(1)) as f64,
            self.wall.as_secs_f64(),
            self.mbps(),
            mib(self.peak_rss_kib),
            self.rss_note,
            self.cpu,
            self.cpu / gb.max(1e-9),
            self.sim_cpu,
        );
        for n in &self.notes {
            println!("{:<14} {n}", "");
        }
    }
}

fn logpull_url(base: &str, cf: &str, w: &Window, fields: &[String]) -> String {
    format!(
        "{base}/client/v4/zones/{cf}/logs/received?start={}&end={}&fields={}&timestamps=unixnano",
        w.start.to_rfc3339_opts(SecondsFormat::Secs, true),
        w.end.to_rfc3339_opts(SecondsFormat::Secs, true),
        fields.join(",")
    )
}

async fn run_rainlogs(
    app: &App,
    zone_id: Uuid,
    windows: usize,
    sim: &SimProcess,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let timed = Arc::new(Timed {
        inner: Arc::new(app.in_process_functions()),
        spent: Mutex::new(BTreeMap::new()),
    });
    let before_kib = status_kib("self", "VmRSS:").unwrap_or(0);
    reset_hwm();
    let (cpu0, sim0) = (cpu_secs("self").0, sim.cpu());
    let (wall, timed_out) = demo::archive(app, timed.clone(), &[zone_id], timeout).await?;
    let (cpu1, sim1) = (cpu_secs("self").0, sim.cpu());
    let hwm = status_kib("self", "VmHWM:").unwrap_or(0);
    let summary = demo::summarise(app, zone_id, "bench").await?;
    let mut notes = vec![format!(
        "windows archived {}/{windows}  empty {}  failed {}  in flight {}{}  {}",
        summary.archived,
        summary.empty,
        summary.failed,
        summary.in_flight,
        if timed_out { "  TIMED OUT" } else { "" },
        match &summary.chain.first_break {
            None => format!("chain verified: {} links", summary.chain.links_checked),
            Some((seq, why)) => format!("CHAIN BROKEN at seq {seq}: {why}"),
        }
    )];
    if let Ok(spent) = timed.spent.lock() {
        let stages: Vec<String> = spent
            .iter()
            .map(|(f, s)| {
                format!(
                    "{f} {} calls, sum {:.1} s, mean {:.2} s, max {:.2} s",
                    s.calls,
                    s.total.as_secs_f64(),
                    s.total.as_secs_f64() / f64::from(s.calls.max(1)),
                    s.max.as_secs_f64()
                )
            })
            .collect();
        notes.push(format!("stages: {}", stages.join("; ")));
    }
    ensure!(
        !timed_out && summary.failed == 0 && summary.chain.is_valid(),
        "rainlogs phase did not finish cleanly: {}",
        notes.join(" / ")
    );
    Ok(Outcome {
        label: "rainlogs".into(),
        raw: summary.raw_bytes,
        stored: summary.stored_bytes,
        wall,
        peak_rss_kib: hwm,
        rss_note: format!(
            "VmHWM of this process; {:.1} MiB before the phase",
            mib(before_kib)
        ),
        cpu: cpu1 - cpu0,
        sim_cpu: sim1 - sim0,
        notes,
    })
}

/// Runs `script` once per window through `bash -o pipefail`, `parallel` at a time, with
/// the window's URL and object key in `E2E_URL` / `E2E_KEY`.
async fn per_window(
    script: &str,
    jobs: Vec<(String, String)>,
    parallel: usize,
    env: &[(String, String)],
) -> anyhow::Result<Vec<String>> {
    let sem = Arc::new(Semaphore::new(parallel));
    let mut running = Vec::new();
    for (url, key) in jobs {
        let permit = sem.clone().acquire_owned().await?;
        let mut cmd = tokio::process::Command::new("bash");
        cmd.args(["-o", "pipefail", "-c", script])
            .env("E2E_URL", url)
            .env("E2E_KEY", key)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().context("spawn bash")?;
        running.push(tokio::spawn(async move {
            let out = child.wait_with_output().await;
            drop(permit);
            out
        }));
    }
    let mut outputs = Vec::new();
    for r in running {
        let out = r.await?.context("wait for a window pipeline")?;
        ensure!(
            out.status.success(),
            "pipeline failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        outputs.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    }
    Ok(outputs)
}

/// The standard-tools pipeline over the same windows.
#[allow(clippy::too_many_arguments)]
async fn run_tools(
    store: &ObjectStore,
    s3: &S3Config,
    sim: &SimProcess,
    cf: &str,
    windows: &[Window],
    fields: &[String],
    parallel: usize,
    workdir: &std::path::Path,
) -> anyhow::Result<Outcome> {
    // age identity and an aws CLI profile for Garage (path style; checksums only when
    // required, as our own client does, since Garage lacks some algorithms).
    let identity = workdir.join("age-identity.txt");
    let keygen = std::process::Command::new("age-keygen")
        .arg("-o")
        .arg(&identity)
        .output()
        .context("age-keygen (Debian package age)")?;
    ensure!(keygen.status.success(), "age-keygen failed");
    let recipient = String::from_utf8_lossy(&keygen.stderr)
        .split("Public key:")
        .nth(1)
        .map(|s| s.trim().to_owned())
        .context("age-keygen printed no public key")?;
    let aws_config = workdir.join("aws-config");
    std::fs::write(
        &aws_config,
        format!(
            "[default]\nregion = {}\nrequest_checksum_calculation = when_required\n\
             response_checksum_validation = when_required\ns3 =\n    addressing_style = path\n",
            s3.region
        ),
    )?;
    let endpoint = s3
        .endpoint
        .clone()
        .context("RAINLOGS_S3_ENDPOINT (Garage) is not set")?;
    let env = vec![
        (
            "AWS_CONFIG_FILE".to_owned(),
            aws_config.display().to_string(),
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE".to_owned(),
            "/dev/null".to_owned(),
        ),
        ("AWS_ACCESS_KEY_ID".to_owned(), s3.access_key_id.clone()),
        (
            "AWS_SECRET_ACCESS_KEY".to_owned(),
            s3.secret_access_key.expose_secret().to_owned(),
        ),
        ("E2E_ENDPOINT".to_owned(), endpoint),
        ("E2E_RECIPIENT".to_owned(), recipient),
        ("E2E_TOKEN".to_owned(), SIM_TOKEN.to_owned()),
    ];
    let script = "curl -sS --fail -H 'Accept-Encoding: gzip' -H \"Authorization: Bearer $E2E_TOKEN\" \"$E2E_URL\" \
                  | gzip -d | zstd -3 -q -c | age -r \"$E2E_RECIPIENT\" \
                  | aws s3 cp - \"$E2E_KEY\" --endpoint-url \"$E2E_ENDPOINT\" --only-show-errors";
    let jobs = windows
        .iter()
        .map(|w| {
            let key = format!(
                "s3://{}/{}tools/{}_{}.ndjson.zst.age",
                store.bucket(),
                store.prefix(),
                w.start.format("%Y%m%dT%H%M%SZ"),
                w.end.format("%Y%m%dT%H%M%SZ")
            );
            (logpull_url(&sim.url, cf, w, fields), key)
        })
        .collect();

    let sampler = TreeSampler::start(Some(sim.pid));
    let (children0, sim0) = (cpu_secs("self").1, sim.cpu());
    let t = Instant::now();
    per_window(script, jobs, parallel, &env).await?;
    let wall = t.elapsed();
    let (children1, sim1) = (cpu_secs("self").1, sim.cpu());
    let peak = sampler.finish();

    let objects = store.list_all("tools/").await?;
    Ok(Outcome {
        label: format!("tools (P={parallel})"),
        raw: 0, // filled in from the generator (the simulator is deterministic)
        stored: objects.iter().map(|o| o.size).sum(),
        wall,
        peak_rss_kib: peak,
        rss_note: format!(
            "sum over the pipelines' processes, sampled every {} ms",
            SAMPLE_EVERY.as_millis()
        ),
        cpu: children1 - children0,
        sim_cpu: sim1 - sim0,
        notes: vec![format!(
            "objects stored {}/{}  (curl | gzip -d | zstd -3 | age | aws s3 cp -)",
            objects.len(),
            windows.len()
        )],
    })
}

/// The simulator alone over HTTP: gzip responses read by curl and thrown away.
async fn run_sim_alone(
    sim: &SimProcess,
    cf: &str,
    windows: &[Window],
    fields: &[String],
    parallel: usize,
) -> anyhow::Result<(Duration, u64, f64)> {
    let script =
        "curl -sS --fail -H 'Accept-Encoding: gzip' -H \"Authorization: Bearer $E2E_TOKEN\" \
                  -o /dev/null -w '%{size_download}' \"$E2E_URL\"";
    let jobs = windows
        .iter()
        .map(|w| (logpull_url(&sim.url, cf, w, fields), String::new()))
        .collect();
    let env = [("E2E_TOKEN".to_owned(), SIM_TOKEN.to_owned())];
    let sim0 = sim.cpu();
    let t = Instant::now();
    let outs = per_window(script, jobs, parallel, &env).await?;
    let wall = t.elapsed();
    let wire = outs.iter().map(|o| o.parse::<u64>().unwrap_or(0)).sum();
    Ok((wall, wire, sim.cpu() - sim0))
}

/// Raw NDJSON bytes of the windows, straight from the generator (and how fast it is).
fn generate(knobs: &Knobs, cf: &str, windows: &[Window]) -> (u64, Duration) {
    let generator = Generator::new(knobs.seed);
    let volume = ZoneVolume {
        records_per_minute: knobs.rpm,
        empty_ratio: 0.0,
        late_ratio: 0.0,
        late_max_seconds: 0,
    };
    let t = Instant::now();
    let mut total = 0u64;
    let mut buf = Vec::with_capacity(2 << 20);
    for w in windows {
        let sel = Selection {
            start_ns: w.start.timestamp_nanos_opt().unwrap_or(0),
            end_ns: w.end.timestamp_nanos_opt().unwrap_or(0),
            fields: Field::ALL.to_vec(),
            timestamps: TimestampFormat::UnixNano,
            count: None,
            sample: None,
            by_received: false,
        };
        let mut it = generator.window(cf, volume, sel);
        while it.write_next(&mut buf) {
            if buf.len() > 1 << 20 {
                total += buf.len() as u64;
                buf.clear();
            }
        }
        total += buf.len() as u64;
        buf.clear();
    }
    (total, t.elapsed())
}

/// Deletes every object under the store's (per-run) prefix.
async fn clean_up(store: &ObjectStore) -> anyhow::Result<()> {
    let keys: Vec<String> = store
        .list_all("")
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    for chunk in keys.chunks(1000) {
        let failed = store.delete_many(chunk).await?;
        ensure!(
            failed.is_empty(),
            "could not delete {} objects",
            failed.len()
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not: stay out of it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("e2e: skipped (needs the local stack; run `cargo bench` or bench/e2e.sh)");
        return Ok(());
    }
    let knobs = Knobs::from_env()?;
    let run = Uuid::new_v4().simple().to_string();
    let run = &run[..12];

    let mut src = ConfigSource::from_env()?;
    // Per-run Redis and S3 prefixes: no other worker takes our tasks, and clean-up
    // deletes only this run's objects.
    src.set(RedisConfig::KEY_PREFIX, format!("rainlogs-bench-e2e-{run}"));
    src.set(S3Config::KEY_PREFIX, format!("bench-e2e/{run}/"));
    let s3 = S3Config::from_source(&src)?;
    let sim = SimProcess::start(knobs.rpm, knobs.seed).await?;
    let app = App::connect(&src).await?;
    let Some(kms) = app.kms.clone() else {
        bail!("the benchmark needs the master keyring: set RAINLOGS_MASTER_KEYS_FILE");
    };
    rainlogs_core::db::migrate(&app.pool).await?;

    // The stretch: the `minutes` before the last full hour that ended ≥ 1 h ago, planned
    // as of one minute past that hour, so windows are exactly cadence-aligned.
    let hour = TimeDelta::hours(1);
    let end = Utc::now().duration_trunc(hour)? - hour;
    let cf = Uuid::new_v4().simple().to_string();
    let fields: Vec<String> = Field::ALL.iter().map(|f| f.name().to_owned()).collect();
    let zone = FlowZone {
        name: "large.bench.example".into(),
        cf_zone_id: cf.clone(),
        cadence_seconds: knobs.cadence,
        backfill_minutes: knobs.minutes + 1,
        fields: fields.clone(),
    };
    let tenant = format!("bench-e2e-{run}");
    let token = SecretString::from(SIM_TOKEN.to_owned());
    let now = end + TimeDelta::minutes(1);
    let source = demo::FlowSource {
        simulator_url: sim.url.clone(),
        demo: false,
    };
    let zone_id = demo::register(&app, &kms, &tenant, &[zone], &source, &token, now).await?[0];
    let windows: Vec<Window> = ledger::windows_between(
        &app.pool,
        zone_id,
        end - TimeDelta::minutes(knobs.minutes),
        end,
    )
    .await?
    .into_iter()
    .map(|w| Window {
        start: w.start_at,
        end: w.end_at,
    })
    .collect();
    ensure!(
        windows.len() as i64 == knobs.minutes * 60 / i64::from(knobs.cadence),
        "planned {} windows, expected {}",
        windows.len(),
        knobs.minutes * 60 / i64::from(knobs.cadence)
    );
    let concurrency = DispatcherConfig::DEFAULT_CONCURRENCY;
    println!(
        "== e2e {}: zone {cf}, {} windows of {} s from {} to {}, {} records/min, all {} fields, seed {}",
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
        windows.len(),
        knobs.cadence,
        windows[0].start.format("%H:%M"),
        end.format("%H:%M"),
        knobs.rpm,
        fields.len(),
        knobs.seed,
    );
    println!(
        "   rainlogs worker concurrency {concurrency} (default); tools {} window(s) at a time; load average {}",
        knobs.tools_parallel,
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    std::io::stdout().flush()?;

    let workdir = std::env::temp_dir().join(format!("rainlogs-bench-e2e-{run}"));
    std::fs::create_dir_all(&workdir)?;
    let result = async {
        let mut outcomes = Vec::new();
        if knobs.runs("rainlogs") {
            let o = run_rainlogs(&app, zone_id, windows.len(), &sim, knobs.timeout).await?;
            o.print();
            outcomes.push(o);
        }
        if knobs.runs("tools") {
            let o = run_tools(
                &app.store,
                &s3,
                &sim,
                &cf,
                &windows,
                &fields,
                knobs.tools_parallel,
                &workdir,
            )
            .await?;
            outcomes.push(o);
        }
        if knobs.runs("sim") {
            let all = windows.len().min(concurrency);
            let mut levels = vec![knobs.tools_parallel.min(windows.len())];
            if all != levels[0] {
                levels.push(all);
            }
            for p in levels {
                let (wall, wire, sim_cpu) = run_sim_alone(&sim, &cf, &windows, &fields, p).await?;
                println!(
                    "simulator alone (curl gzip → /dev/null, P={p}): wall {:.1} s, {} wire B, simulator CPU {sim_cpu:.1} s",
                    wall.as_secs_f64(),
                    wire
                );
                outcomes.push(Outcome {
                    label: format!("sim (P={p})"),
                    raw: 0,
                    stored: 0,
                    wall,
                    peak_rss_kib: 0,
                    rss_note: String::new(),
                    cpu: 0.0,
                    sim_cpu,
                    notes: Vec::new(),
                });
            }
        }
        let (raw, gen_time) = generate(&knobs, &cf, &windows);
        if knobs.runs("generator") {
            println!(
                "generator alone (in-process, no HTTP or gzip): {:.1} MB/s ({raw} B in {:.1} s)",
                raw as f64 / 1e6 / gen_time.as_secs_f64(),
                gen_time.as_secs_f64()
            );
        }
        for o in outcomes.iter_mut().filter(|o| o.label != "rainlogs") {
            o.raw = raw;
        }
        if let Some(r) = outcomes.iter().find(|o| o.label == "rainlogs") {
            ensure!(
                r.raw == raw,
                "rainlogs archived {} raw bytes, the generator made {raw}",
                r.raw
            );
        }
        for o in outcomes.iter().filter(|o| o.label != "rainlogs") {
            if o.label.starts_with("sim") {
                println!(
                    "{:<14} {:>6.1} MB/s raw NDJSON served (wall {:.1} s, simulator CPU {:.1} s)",
                    o.label,
                    o.mbps(),
                    o.wall.as_secs_f64(),
                    o.sim_cpu
                );
            } else {
                o.print();
            }
        }
        let rainlogs = outcomes.iter().find(|o| o.label == "rainlogs");
        let tools = outcomes.iter().find(|o| o.label.starts_with("tools"));
        if let (Some(r), Some(t)) = (rainlogs, tools) {
            println!(
                "verdict: rainlogs {:.1} MB/s vs tools {:.1} MB/s = {:.2}x ({}); rainlogs peak RSS {:.1} MiB ({} {RSS_LIMIT_MIB} MiB)",
                r.mbps(),
                t.mbps(),
                r.mbps() / t.mbps(),
                if r.mbps() >= t.mbps() { "bar met" } else { "bar MISSED" },
                mib(r.peak_rss_kib),
                if mib(r.peak_rss_kib) <= RSS_LIMIT_MIB { "≤" } else { "ABOVE" },
            );
        }
        anyhow::Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&workdir);
    if !knobs.keep {
        clean_up(&app.store)
            .await
            .context("delete the bench's objects")?;
    }
    let mut sim = sim;
    let _ = sim.child.kill().await;
    result
}
