//! Logpull throughput: simulator → client, in MB/s of raw NDJSON.
//!
//! Starts the simulator in-process, pulls ≥ 1 GiB of raw NDJSON (all fields, ~2 KB a
//! record) through the client into a discarding sink, gzip and plain, and prints the
//! figures; for reference also the generator alone and, when `curl` is installed,
//! `curl --compressed` against the same simulator. Both ends share the machine's
//! cores, so the figures are a lower bound for the client alone.
//!
//! Run: `cargo bench -p rainlogs-bench --bench logpull` (results in docs/BENCHMARKS.md).

use std::time::Instant;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rainlogs_fetch::logpull::{
    Credentials, LogpullClient, LogpullConfig, RetryPolicy, WindowRequest, ZoneId,
};
use rainlogs_logpull_sim::{Field, Selection, SimConfig, Simulator, TimestampFormat, ZoneVolume};

const ZONE: &str = "feedfacefeedfacefeedfacefeedface";
const RPM: u64 = 20_000;
/// Windows of 10 minutes (~400 MB each); three make ≥ 1 GiB.
const WINDOWS: i64 = 3;
const WINDOW_MINUTES: i64 = 10;

fn windows() -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let end = Utc::now()
        .duration_trunc(TimeDelta::minutes(1))
        .unwrap_or_else(|_| Utc::now())
        - TimeDelta::hours(2);
    (0..WINDOWS)
        .map(|i| {
            let s = end - TimeDelta::minutes(WINDOW_MINUTES * (i + 1));
            (s, s + TimeDelta::minutes(WINDOW_MINUTES))
        })
        .collect()
}

fn mb_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sim = Simulator::start_local(SimConfig {
        default_volume: ZoneVolume {
            records_per_minute: RPM,
            empty_ratio: 0.0,
            late_ratio: 0.0,
            late_max_seconds: 0,
        },
        tokens: vec!["bench".to_owned()],
        ..SimConfig::default()
    })
    .await?;
    let zone = ZoneId::parse(ZONE)?;
    let fields: Vec<String> = Field::ALL.iter().map(|f| f.name().to_owned()).collect();

    // The generator alone: the ceiling the simulator puts on every figure below.
    let t = Instant::now();
    let mut generated = 0u64;
    let mut buf = Vec::with_capacity(1 << 20);
    for (s, e) in windows() {
        let sel = Selection {
            start_ns: s.timestamp_nanos_opt().unwrap_or(0),
            end_ns: e.timestamp_nanos_opt().unwrap_or(0),
            fields: Field::ALL.to_vec(),
            timestamps: TimestampFormat::UnixNano,
            count: None,
            sample: None,
            by_received: false,
        };
        let mut it = sim.generator().window(ZONE, sim.volume(ZONE), sel);
        while it.write_next(&mut buf) {
            if buf.len() > 1 << 20 {
                generated += buf.len() as u64;
                buf.clear();
            }
        }
        generated += buf.len() as u64;
        buf.clear();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "generator alone        : {:>7.1} MB/s ({} bytes in {secs:.2} s)",
        mb_s(generated, secs),
        generated
    );

    for gzip in [true, false] {
        let client = LogpullClient::new(
            LogpullConfig {
                base_url: sim.base_url(),
                retry: RetryPolicy::none(),
                gzip,
                ..LogpullConfig::default()
            },
            &Credentials::token("bench"),
        )?;
        let t = Instant::now();
        let (mut raw, mut wire, mut records) = (0u64, 0u64, 0u64);
        for (s, e) in windows() {
            let req = WindowRequest::new(zone.clone(), s, e).fields(fields.clone());
            let summary = client.fetch_into(&req, &mut tokio::io::sink()).await?;
            raw += summary.raw_bytes;
            wire += summary.wire_bytes;
            records += summary.records;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "client {:<5} (checked) : {:>7.1} MB/s raw NDJSON ({raw} raw, {wire} wire bytes, {records} records in {secs:.2} s)",
            if gzip { "gzip" } else { "plain" },
            mb_s(raw, secs)
        );
    }

    // Reference: curl decoding gzip from the same simulator (no line checking, no hash).
    let mut curl_raw = 0u64;
    let t = Instant::now();
    for (s, e) in windows() {
        let url = format!(
            "{}/client/v4/zones/{ZONE}/logs/received?start={}&end={}&fields={}",
            sim.base_url(),
            s.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            e.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            fields.join(",")
        );
        let child = tokio::process::Command::new("curl")
            .args([
                "-sS",
                "--compressed",
                "-H",
                "Authorization: Bearer bench",
                &url,
            ])
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            println!("curl --compressed      : not available");
            return Ok(());
        };
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no curl stdout"))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut stdout, &mut buf).await?;
            if n == 0 {
                break;
            }
            curl_raw += n as u64;
        }
        child.wait().await?;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "curl --compressed (ref): {:>7.1} MB/s raw NDJSON ({curl_raw} bytes in {secs:.2} s)",
        mb_s(curl_raw, secs)
    );
    Ok(())
}
