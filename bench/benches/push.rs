//! Push ingestion benchmark (issue 12): the real receiver binary (`rainlogs-receiver`,
//! release) against the local stack, fed Cloudflare-like NDJSON from the simulator's
//! generator, gzip-compressed before the clock starts (compression is Cloudflare's
//! cost, not ours). Prints, for one run:
//!
//! 1. acknowledgement throughput (raw NDJSON MB/s, request sent → 2xx) and latency
//!    p50/p99, for 5 MB and 100 MB batches, one at a time;
//! 2. the archive step for the same batches (encrypt → upload of their windows,
//!    in-process), and push end to end (acknowledgement + archive);
//! 3. the pull pipeline on the same records: a Logpull zone of the in-process simulator
//!    whose generator is the 100 MB batches' (same seed, zone id, volume and fields),
//!    one-minute windows over the minutes of the first 100 MB batch, fetch → encrypt →
//!    upload in this process one window at a time; and the simulator alone (GET of the
//!    same windows, body discarded) — its generating and gzipping share the 2 cores;
//! 4. the standard-tools pipeline on the same gzip bytes:
//!    `gzip -d | zstd -3 -T1 | age -r KEY | aws s3 cp - s3://…` (when the tools exist;
//!    bench/push.sh installs them as bench/e2e.sh does);
//! 5. peak RSS (`VmHWM`) of a fresh receiver process after one streamed 1 GB batch
//!    (`PUSH_BENCH_BIG_MB`, default 1024), generated and gzipped on the fly by this
//!    process so that neither side holds it;
//! 6. 50 concurrent pushers (`PUSH_BENCH_PUSHERS`), each its own zone and destination,
//!    5 batches of 500 KB each, re-sending on 429/503 as Logpush does: errors must be 0.
//!
//! Run: `bash bench/push.sh` (builds the release receiver, then `cargo bench --bench push`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use rainlogs_archive::pipeline::WindowTask;
use rainlogs_archive::push;
use rainlogs_core::function::Function;
use rainlogs_core::task::{kinds, TaskEnvelope};
use rainlogs_integration_tests::{wait_for, TestEnv};
use rainlogs_kms::{KmsService, MasterKeyring};
use rainlogs_logpull_sim::{Generator, Selection, TimestampFormat, ZoneVolume, DEFAULT_FIELDS};
use rainlogs_sealed::kms::Kms;
use secrecy::ExposeSecret;
use uuid::Uuid;

const MASTER: &str = "1:7878787878787878787878787878787878787878787878787878787878787878";
/// The generator's seed for every batch, and the pull phase's simulator's.
const SEED: u64 = 20261207;
/// Records per minute of the generated traffic (push batches and the pulled zone).
const RPM: u64 = 20_000;
const PULL_TOKEN: &str = "push-bench-pull-token";
const MB: usize = 1_000_000;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Cloudflare-like NDJSON from the generator, `minute` onwards, until `bytes` are
/// written (whole records), into `sink`.
fn generate(zone: &str, minute: i64, bytes: usize, sink: &mut dyn FnMut(&[u8])) {
    let start_ns = minute * 60_000_000_000;
    let mut records = Generator::new(SEED).window(
        zone,
        ZoneVolume {
            records_per_minute: RPM,
            empty_ratio: 0.0,
            late_ratio: 0.0,
            late_max_seconds: 0,
        },
        Selection {
            start_ns,
            end_ns: start_ns + 60_000_000_000 * 60 * 24 * 30,
            fields: DEFAULT_FIELDS.to_vec(),
            timestamps: TimestampFormat::UnixNano,
            count: None,
            sample: None,
            by_received: false,
        },
    );
    let (mut written, mut line) = (0usize, Vec::with_capacity(4096));
    while written < bytes {
        line.clear();
        if !records.write_next(&mut line) {
            break;
        }
        written += line.len();
        sink(&line);
    }
}

fn ndjson(zone: &str, minute: i64, bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + 4096);
    generate(zone, minute, bytes, &mut |l| out.extend_from_slice(l));
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::new(6));
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// The release receiver next to this bench executable (target/release/).
fn receiver_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
    let bin = dir.join("rainlogs-receiver");
    assert!(
        bin.is_file(),
        "{} is missing: `cargo build --release -p rainlogs-receiver` (bench/push.sh does)",
        bin.display()
    );
    bin
}

struct Receiver {
    child: Child,
    base: String,
}

impl Receiver {
    async fn start(env_file: &PathBuf) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(receiver_bin())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RAINLOGS_ENV_FILE", env_file)
            .env("RAINLOGS_LOG", "warn")
            .env("RAINLOGS_RECEIVER_LISTEN", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .spawn()
            .expect("receiver starts");
        let base = format!("http://127.0.0.1:{port}");
        let probe = format!("{base}/push/{}", Uuid::nil());
        wait_for("the receiver to serve", Duration::from_secs(60), || {
            let probe = probe.clone();
            async move {
                reqwest::Client::new()
                    .post(probe)
                    .send()
                    .await
                    .ok()
                    .map(|_| ())
            }
        })
        .await;
        Self { child, base }
    }

    fn peak_rss_mib(&self) -> f64 {
        status_kib(self.child.id(), "VmHWM:").unwrap_or(0) as f64 / 1024.0
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    body: reqwest::Body,
) -> (reqwest::StatusCode, Duration) {
    let t = Instant::now();
    let resp = client
        .post(url)
        .header("authorization", format!("Bearer {secret}"))
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = resp.status();
    let _ = resp.bytes().await;
    (status, t.elapsed())
}

/// The minute (since the epoch) of the last record of a generated batch.
fn last_minute(ndjson: &[u8]) -> i64 {
    let line = ndjson
        .split(|b| *b == b'\n')
        .rfind(|l| !l.is_empty())
        .expect("a record");
    let record: serde_json::Value = serde_json::from_slice(line).expect("a JSON record");
    let ns = record["EdgeStartTimestamp"]
        .as_i64()
        .expect("EdgeStartTimestamp in nanoseconds");
    ns.div_euclid(60_000_000_000)
}

/// The encrypt and upload stages, in this process, on the bench's services.
fn archive_stages(
    env: &TestEnv,
    kms: &Arc<dyn Kms>,
) -> (
    rainlogs_encrypt::EncryptFunction,
    rainlogs_upload::UploadFunction,
) {
    let pool = env.app.pool.clone();
    (
        rainlogs_encrypt::EncryptFunction::with_clients(
            pool.clone(),
            env.app.store.clone(),
            kms.clone(),
        ),
        rainlogs_upload::UploadFunction::new(pool, env.app.store.clone()).with_kms(kms.clone()),
    )
}

/// What the pull phase measured.
struct Pulled {
    raw: usize,
    pipeline: Duration,
    simulator_alone: Duration,
}

/// Archives `minutes` one-minute windows of `zone` from `minute0` through the pull
/// stages (fetch → encrypt → upload, this process, one window at a time), from an
/// in-process simulator generating the push batches' records; then fetches the same
/// windows from the simulator alone.
async fn pull_pipeline(
    env: &TestEnv,
    kms: &Arc<dyn Kms>,
    zone: Uuid,
    cf: &str,
    minute0: i64,
    minutes: i64,
) -> Result<Pulled, String> {
    use rainlogs_logpull_sim::{SimConfig, Simulator};
    let sim = Simulator::start_local(SimConfig {
        seed: SEED,
        default_volume: ZoneVolume {
            records_per_minute: RPM,
            empty_ratio: 0.0,
            late_ratio: 0.0,
            late_max_seconds: 0,
        },
        tokens: vec![PULL_TOKEN.to_owned()],
        ..SimConfig::default()
    })
    .await
    .map_err(|e| format!("simulator: {e}"))?;
    let pool = &env.app.pool;
    let tenant: Uuid = sqlx::query_scalar("SELECT tenant_id FROM zones WHERE id = $1")
        .bind(zone)
        .fetch_one(pool)
        .await
        .map_err(|e| e.to_string())?;
    let binding = rainlogs_sealed::kms::SecretBinding {
        tenant,
        zone,
        purpose: rainlogs_archive::pipeline::CLOUDFLARE_TOKEN_PURPOSE.to_owned(),
    };
    let token = kms
        .encrypt_secret(&binding, PULL_TOKEN.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    sqlx::query(
        "UPDATE zones SET token_ciphertext = $2, endpoint = 'simulator', simulator_url = $3
         WHERE id = $1",
    )
    .bind(zone)
    .bind(token)
    .bind(sim.base_url())
    .execute(pool)
    .await
    .map_err(|e| e.to_string())?;
    let minute = |m: i64| chrono::DateTime::from_timestamp(m * 60, 0).expect("a minute");
    let mut ids = Vec::new();
    for m in minute0..minute0 + minutes {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO windows (zone_id, start_at, end_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(zone)
        .bind(minute(m))
        .bind(minute(m + 1))
        .fetch_one(pool)
        .await
        .map_err(|e| e.to_string())?;
        ids.push(id);
    }
    let fetch = rainlogs_fetch::FetchFunction::with_clients(
        pool.clone(),
        env.app.store.clone(),
        kms.clone(),
        rainlogs_fetch::logpull::LogpullConfig {
            base_url: sim.base_url(),
            ..Default::default()
        },
    );
    let (encrypt, upload) = archive_stages(env, kms);
    let stages: [(&dyn Function, &str); 3] = [
        (&fetch, kinds::FETCH_WINDOW),
        (&encrypt, kinds::ENCRYPT_WINDOW),
        (&upload, kinds::UPLOAD_WINDOW),
    ];
    let mut raw = 0usize;
    let t = Instant::now();
    for &window_id in &ids {
        for (function, kind) in stages {
            let task = TaskEnvelope::new(WindowTask { window_id }.spec(kind), Utc::now());
            let out = function
                .handle(task)
                .await
                .map_err(|e| format!("{kind} of window {window_id}: {e:?}"))?;
            if kind == kinds::FETCH_WINDOW {
                raw += out.result["raw_bytes"].as_u64().unwrap_or(0) as usize;
            }
        }
    }
    let pipeline = t.elapsed();
    // The simulator alone: the same requests, the body read and dropped.
    let client = reqwest::Client::new();
    let t = Instant::now();
    for m in minute0..minute0 + minutes {
        let url = format!(
            "{}/client/v4/zones/{cf}/logs/received?start={}&end={}&fields={}&timestamps=unixnano",
            sim.base_url(),
            minute(m).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            minute(m + 1).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            DEFAULT_FIELDS
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(",")
        );
        let resp = client
            .get(url)
            .bearer_auth(PULL_TOKEN)
            .header("Accept-Encoding", "gzip")
            .send()
            .await
            .map_err(|e| format!("simulator alone: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("simulator alone: HTTP {}", resp.status()));
        }
        resp.bytes()
            .await
            .map_err(|e| format!("simulator alone: {e}"))?;
    }
    let simulator_alone = t.elapsed();
    Ok(Pulled {
        raw,
        pipeline,
        simulator_alone,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / MB as f64 / d.as_secs_f64()
}

/// The standard-tools pipeline on `gz` (gzip bytes): seconds, or why it did not run.
fn tools_pipeline(
    gz: &[u8],
    settings: &rainlogs_core::config::ConfigSource,
) -> Result<Duration, String> {
    for tool in ["gzip", "zstd", "age", "age-keygen", "aws"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            return Err(format!("{tool} not installed (bench/push.sh installs it)"));
        }
    }
    let dir = std::env::temp_dir().join(format!("rl-push-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("batch.gz");
    std::fs::write(&input, gz).unwrap();
    let key = dir.join("age.key");
    Command::new("age-keygen")
        .args(["-o", key.to_str().unwrap()])
        .stderr(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    let recipient = String::from_utf8(
        Command::new("age-keygen")
            .args(["-y", key.to_str().unwrap()])
            .output()
            .map_err(|e| e.to_string())?
            .stdout,
    )
    .unwrap();
    let get = |k: &str| settings.get(k).unwrap_or_default().to_owned();
    let target = format!(
        "s3://{}/{}bench-tools/{}.zst.age",
        get("RAINLOGS_S3_BUCKET"),
        get("RAINLOGS_S3_KEY_PREFIX"),
        Uuid::new_v4()
    );
    let script = format!(
        "gzip -d < {} | zstd -3 -T1 -q | age -r {} | aws s3 cp --quiet - {target} --endpoint-url {}",
        input.display(),
        recipient.trim(),
        get("RAINLOGS_S3_ENDPOINT")
    );
    let t = Instant::now();
    let status = Command::new("bash")
        .args(["-o", "pipefail", "-c", &script])
        .env("AWS_ACCESS_KEY_ID", get("RAINLOGS_S3_ACCESS_KEY_ID"))
        .env(
            "AWS_SECRET_ACCESS_KEY",
            get("RAINLOGS_S3_SECRET_ACCESS_KEY"),
        )
        .env("AWS_DEFAULT_REGION", get("RAINLOGS_S3_REGION"))
        .status()
        .map_err(|e| e.to_string())?;
    let took = t.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    if status.success() {
        Ok(took)
    } else {
        Err(format!("pipeline failed: {status}"))
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let big_mb = knob("PUSH_BENCH_BIG_MB", 1024);
    let pushers = knob("PUSH_BENCH_PUSHERS", 50);
    let mut env = TestEnv::new().await;
    env.src.set("RAINLOGS_MASTER_KEYS", MASTER);
    let mut settings = env.src.clone();
    settings.set("RAINLOGS_RECEIVER_MAX_IN_FLIGHT", "64");
    settings.set("RAINLOGS_RECEIVER_RETRY_AFTER_SECS", "1");
    let dir = std::env::temp_dir().join(format!("rl-push-bench-{}", env.id));
    std::fs::create_dir_all(&dir).unwrap();
    let env_file = dir.join("env");
    rainlogs_integration_tests::write_env_file(&settings, &env_file);
    let pool = env.app.pool.clone();
    let kms: Arc<dyn Kms> = Arc::new(KmsService::new(
        pool.clone(),
        MasterKeyring::parse(MASTER, None).unwrap(),
        "bench",
    ));

    let zone = env.insert_zone(60, Utc::now()).await;
    // The pull phase's zone; the 100 MB batches carry its generator's records, at
    // minutes Logpull still serves (its 7 days), so both pipelines get the same records.
    let pull_zone = env.insert_zone(60, Utc::now()).await;
    let pull_cf = pull_zone.simple().to_string();
    let pull_minute0 = (Utc::now() - TimeDelta::days(3)).timestamp() / 60;
    let mut pull_minutes = 0i64;
    let dest = push::create_destination(&pool, zone, "http_requests")
        .await
        .unwrap();
    let secret = dest.secret.expose_secret().to_owned();
    let receiver = Receiver::start(&env_file).await;
    let url = format!("{}/push/{}", receiver.base, dest.destination.id);
    let client = reqwest::Client::new();
    let minute0 = (Utc::now() - TimeDelta::days(1)).timestamp() / 60;
    println!(
        "machine: {} cores, load {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    // 1. Acknowledgement throughput and latency.
    let mut rows = Vec::new();
    let mut tools_input = Vec::new();
    for (size_mb, count) in [(5usize, 10usize), (100, 2)] {
        let mut lat = Vec::new();
        let mut raw = 0usize;
        for i in 0..count {
            let plain = if size_mb == 100 {
                ndjson(&pull_cf, pull_minute0 + i as i64 * 60, size_mb * MB)
            } else {
                ndjson(
                    "bench.example",
                    minute0 + (size_mb * 1000 + i) as i64 * 10,
                    size_mb * MB,
                )
            };
            if size_mb == 100 && i == 0 {
                pull_minutes = last_minute(&plain) - pull_minute0 + 1;
            }
            let gz = gzip(&plain);
            raw += plain.len();
            let (status, took) = post(&client, &url, &secret, gz.clone().into()).await;
            assert!(status.is_success(), "{size_mb} MB batch: {status}");
            lat.push(took);
            if size_mb == 100 && tools_input.is_empty() {
                tools_input = gz;
            }
        }
        let total: Duration = lat.iter().sum();
        lat.sort();
        rows.push((
            size_mb,
            count,
            raw,
            total,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
        ));
    }
    println!("\n| batch | batches | raw MB | ack MB/s | ack p50 | ack p99 |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (size, count, raw, total, p50, p99) in &rows {
        println!(
            "| {size} MB | {count} | {:.0} | {:.1} | {:.0} ms | {:.0} ms |",
            *raw as f64 / MB as f64,
            mbps(*raw, *total),
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0
        );
    }

    // 2. The archive step for the same batches: encrypt → upload of each window.
    let (encrypt, upload) = archive_stages(&env, &kms);
    let windows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT w.id, b.ndjson_bytes FROM windows w JOIN push_batches b ON b.id = w.batch_id
         WHERE w.zone_id = $1 ORDER BY w.id",
    )
    .bind(zone)
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut per_size: std::collections::BTreeMap<bool, (usize, Duration)> = Default::default();
    for (window_id, bytes) in windows {
        let t = Instant::now();
        for kind in [kinds::ENCRYPT_WINDOW, kinds::UPLOAD_WINDOW] {
            let task = TaskEnvelope::new(WindowTask { window_id }.spec(kind), Utc::now());
            let out = if kind == kinds::ENCRYPT_WINDOW {
                encrypt.handle(task).await
            } else {
                upload.handle(task).await
            };
            out.expect("archive step");
        }
        let e = per_size.entry(bytes as usize > 50 * MB).or_default();
        e.0 += bytes as usize;
        e.1 += t.elapsed();
    }
    println!("\n| batch | archive step (encrypt → upload) MB/s | push end to end MB/s |");
    println!("|---|---:|---:|");
    for (size, _, raw, ack, _, _) in &rows {
        let (bytes, took) = per_size[&(*size > 50)];
        assert_eq!(bytes, *raw);
        println!(
            "| {size} MB | {:.1} | {:.1} |",
            mbps(bytes, took),
            mbps(bytes, took + *ack)
        );
    }

    // 3. The pull pipeline over the same records, and the simulator alone.
    match pull_pipeline(&env, &kms, pull_zone, &pull_cf, pull_minute0, pull_minutes).await {
        Ok(p) => println!(
            "\npull pipeline (Logpull simulator in this process → fetch → encrypt → upload, one-minute windows one at a time) over the first 100 MB batch's {} minutes: {:.0} MB raw, {:.1} MB/s; the simulator alone (GET, body discarded): {:.1} MB/s",
            pull_minutes,
            p.raw as f64 / MB as f64,
            mbps(p.raw, p.pipeline),
            mbps(p.raw, p.simulator_alone)
        ),
        Err(why) => println!("\npull pipeline: not run ({why})"),
    }

    // 4. Standard tools on the same bytes (one 100 MB batch).
    let raw_100 = rows[1].2 / rows[1].1;
    match tools_pipeline(&tools_input, &settings) {
        Ok(took) => println!(
            "\nstandard tools (gzip -d | zstd -3 -T1 | age | aws s3 cp), one 100 MB batch: {:.1} MB/s",
            mbps(raw_100, took)
        ),
        Err(why) => println!("\nstandard tools: not run ({why})"),
    }

    // 5. Peak RSS of a fresh receiver with one streamed big batch.
    receiver.stop();
    let receiver = Receiver::start(&env_file).await;
    let url = format!("{}/push/{}", receiver.base, dest.destination.id);
    let idle_rss = receiver.peak_rss_mib();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(8);
    let big_bytes = big_mb * 1024 * 1024;
    let producer = std::thread::spawn(move || {
        struct ChannelWriter(tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>);
        impl Write for ChannelWriter {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                self.0
                    .blocking_send(Ok(bytes::Bytes::copy_from_slice(data)))
                    .map_err(|_| std::io::Error::other("receiver hung up"))?;
                Ok(data.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut gz = GzEncoder::new(
            std::io::BufWriter::with_capacity(256 * 1024, ChannelWriter(tx)),
            Compression::new(1),
        );
        generate("big.example", minute0 - 100_000, big_bytes, &mut |l| {
            gz.write_all(l).unwrap()
        });
        gz.finish().unwrap().flush().unwrap();
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let (status, took) = post(&client, &url, &secret, reqwest::Body::wrap_stream(stream)).await;
    producer.join().unwrap();
    assert!(status.is_success(), "big batch: {status}");
    let peak = receiver.peak_rss_mib();
    println!(
        "\nbig batch: {big_mb} MiB of NDJSON streamed in {:.1} s ({:.1} MB/s incl. generating it); receiver peak RSS {:.1} MiB (idle {:.1} MiB) — limit 256 MiB: {}",
        took.as_secs_f64(),
        mbps(big_bytes, took),
        peak,
        idle_rss,
        if peak <= 256.0 { "met" } else { "MISSED" }
    );

    // 6. Concurrent pushers, each its own zone and destination.
    let mut targets = Vec::new();
    for _ in 0..pushers {
        let z = env.insert_zone(60, Utc::now()).await;
        let d = push::create_destination(&pool, z, "http_requests")
            .await
            .unwrap();
        targets.push((
            format!("{}/push/{}", receiver.base, d.destination.id),
            d.secret.expose_secret().to_owned(),
        ));
    }
    let t = Instant::now();
    let tasks: Vec<_> = targets
        .into_iter()
        .enumerate()
        .map(|(p, (url, secret))| {
            let client = client.clone();
            tokio::spawn(async move {
                let (mut errors, mut retries) = (0u32, 0u32);
                for i in 0..5 {
                    let gz = gzip(&ndjson(&format!("p{p}.example"), minute0 + i * 7, MB / 2));
                    let mut attempts = 0;
                    loop {
                        let (status, _) = post(&client, &url, &secret, gz.clone().into()).await;
                        if status.is_success() {
                            break;
                        }
                        attempts += 1;
                        if (status == 429 || status.is_server_error()) && attempts < 60 {
                            retries += 1;
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            continue;
                        }
                        errors += 1;
                        break;
                    }
                }
                (errors, retries)
            })
        })
        .collect();
    let (mut errors, mut retries) = (0, 0);
    for task in tasks {
        let (e, r) = task.await.unwrap();
        errors += e;
        retries += r;
    }
    println!(
        "\n{pushers} concurrent pushers × 5 batches of 0.5 MB: {:.1} s, {errors} errors, {retries} re-sends after 429/503; receiver peak RSS {:.1} MiB",
        t.elapsed().as_secs_f64(),
        receiver.peak_rss_mib()
    );
    receiver.stop();
    let _ = std::fs::remove_dir_all(&dir);
    env.teardown().await;
}
