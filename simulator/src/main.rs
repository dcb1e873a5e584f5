//! `rainlogs-logpull-sim`: the Cloudflare Logpull and Logpush simulator as a process,
//! for the demo, benchmarks and tests that run the pipeline out of process.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use clap::Parser;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rainlogs_logpull_sim::{
    FaultRule, PushClock, PushConfig, PushFaultRule, SimConfig, Simulator, ZoneVolume,
};

#[derive(Parser, Debug)]
#[command(
    name = "rainlogs-logpull-sim",
    version,
    about = "Cloudflare Logpull and Logpush simulator"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1", env = "RAINLOGS_SIM_HOST")]
    host: IpAddr,
    /// Port to listen on (0 picks a free one; the chosen address is printed).
    #[arg(long, default_value_t = 8787, env = "RAINLOGS_SIM_PORT")]
    port: u16,
    /// Seed of the record generator: same seed, same records.
    #[arg(long, default_value_t = 1, env = "RAINLOGS_SIM_SEED")]
    seed: u64,
    /// Records per minute of zones without a --zone entry.
    #[arg(long, default_value_t = 100)]
    records_per_minute: u64,
    /// Fraction of minutes (chosen deterministically) with no records, for zones without a --zone entry.
    #[arg(long, default_value_t = 0.0)]
    empty_ratio: f64,
    /// Fraction of records (chosen deterministically, every zone) that Cloudflare
    /// receives late: `logs/received` serves them in a later window than their time.
    #[arg(long, default_value_t = 0.0)]
    late_ratio: f64,
    /// How many seconds after its time a late record is received, at most.
    #[arg(long, default_value_t = 120)]
    late_max_seconds: u32,
    /// Per-zone volume: ZONE=RECORDS_PER_MINUTE[:EMPTY_RATIO]. Repeatable.
    #[arg(long = "zone", value_name = "ZONE=RPM[:EMPTY_RATIO]")]
    zones: Vec<String>,
    /// Accepted API token (Authorization: Bearer). Repeatable; default "sim-token".
    #[arg(long = "token")]
    tokens: Vec<String>,
    /// Accepted legacy key pair EMAIL:KEY (X-Auth-Email / X-Auth-Key). Repeatable.
    #[arg(long = "api-key", value_name = "EMAIL:KEY")]
    api_keys: Vec<String>,
    /// A fault: kind[:arg][,zone=Z][,times=N][,window=FROM-TO unix secs]; kinds 429[:retry_after_secs], 500|502|503|504,
    /// reset[:after_bytes], truncate[:after_bytes], malformed[:line], stall[:ms], slow[:delay_ms], bad-token.
    #[arg(long = "fault")]
    faults: Vec<String>,
    /// gzip level (0-9) for clients sending Accept-Encoding: gzip.
    #[arg(long, default_value_t = 1)]
    gzip_level: u32,
    /// Start with log retention switched off for every zone.
    #[arg(long)]
    retention_off: bool,
    /// Logpush clock: `realtime`, or `manual[:RFC3339 start]` (moved only by
    /// POST /__sim/logpush/clock {"advance_secs": N}; default start: now, to the minute).
    #[arg(
        long,
        default_value = "realtime",
        value_name = "realtime|manual[:START]"
    )]
    push_clock: String,
    /// Logpush: first pause after a failed delivery, doubled per failure (ms).
    #[arg(long, default_value_t = 1000)]
    push_retry_base_ms: u64,
    /// Logpush: longest pause between delivery attempts (ms).
    #[arg(long, default_value_t = 60_000)]
    push_retry_cap_ms: u64,
    /// Logpush: a batch still failing this long after its first attempt is dropped (s).
    #[arg(long, default_value_t = 300)]
    push_give_up_secs: u64,
    /// Logpush: allow plain http:// destinations beyond loopback (Cloudflare: HTTPS only).
    #[arg(long)]
    push_allow_http: bool,
    /// Logpush: trust these PEM root certificates for HTTPS destinations (a test CA).
    #[arg(long, value_name = "PEM")]
    push_ca: Option<std::path::PathBuf>,
    /// A Logpush delivery fault: kind[:arg][,job=N][,zone=Z][,times=N]; kinds duplicate,
    /// reset[:after_bytes], slow[:chunk_delay_ms], huge[:bytes], wrong-secret.
    #[arg(long = "push-fault")]
    push_faults: Vec<String>,
}

fn parse_push_clock(spec: &str) -> anyhow::Result<PushClock> {
    match spec.split_once(':') {
        _ if spec == "realtime" => Ok(PushClock::Realtime),
        _ if spec == "manual" => {
            let now = Utc::now();
            let start =
                DateTime::from_timestamp(now.timestamp() - now.timestamp() % 60, 0).unwrap_or(now);
            Ok(PushClock::Manual { start })
        }
        Some(("manual", start)) => Ok(PushClock::Manual {
            start: DateTime::parse_from_rfc3339(start)
                .with_context(|| format!("--push-clock: {start:?} is not an RFC 3339 time"))?
                .with_timezone(&Utc),
        }),
        _ => anyhow::bail!("--push-clock {spec:?}: expected realtime or manual[:RFC3339]"),
    }
}

fn parse_zone(spec: &str) -> anyhow::Result<(String, ZoneVolume)> {
    let (zone, vol) = spec
        .split_once('=')
        .with_context(|| format!("--zone {spec:?}: expected ZONE=RPM[:EMPTY_RATIO]"))?;
    let (rpm, ratio) = match vol.split_once(':') {
        Some((r, e)) => (r, Some(e)),
        None => (vol, None),
    };
    let records_per_minute = rpm
        .parse()
        .with_context(|| format!("--zone {spec:?}: {rpm:?} is not a count"))?;
    let empty_ratio = match ratio {
        Some(e) => e
            .parse()
            .with_context(|| format!("--zone {spec:?}: {e:?} is not a ratio"))?,
        None => 0.0,
    };
    Ok((
        zone.to_owned(),
        ZoneVolume {
            records_per_minute,
            empty_ratio,
            late_ratio: 0.0,
            late_max_seconds: 0,
        },
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.late_ratio) {
        anyhow::bail!(
            "--late-ratio {}: expected a fraction in [0, 1]",
            args.late_ratio
        );
    }
    let late = |v: ZoneVolume| ZoneVolume {
        late_ratio: args.late_ratio,
        late_max_seconds: args.late_max_seconds,
        ..v
    };
    let zones: HashMap<String, ZoneVolume> = args
        .zones
        .iter()
        .map(|z| parse_zone(z).map(|(zone, v)| (zone, late(v))))
        .collect::<anyhow::Result<_>>()?;
    let api_keys = args
        .api_keys
        .iter()
        .map(|p| {
            p.split_once(':')
                .map(|(e, k)| (e.to_owned(), k.to_owned()))
                .with_context(|| "--api-key: expected EMAIL:KEY".to_owned())
        })
        .collect::<anyhow::Result<_>>()?;
    let faults = args
        .faults
        .iter()
        .map(|f| FaultRule::parse_cli(f).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<_>>()?;
    let push_faults = args
        .push_faults
        .iter()
        .map(|f| PushFaultRule::parse_cli(f).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<_>>()?;
    let push = PushConfig {
        clock: parse_push_clock(&args.push_clock)?,
        retry_base: Duration::from_millis(args.push_retry_base_ms),
        retry_cap: Duration::from_millis(args.push_retry_cap_ms),
        give_up_after: Duration::from_secs(args.push_give_up_secs),
        allow_http: args.push_allow_http,
        faults: push_faults,
        root_certificates_pem: match &args.push_ca {
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("--push-ca: cannot read {}", path.display()))?,
            ),
            None => None,
        },
        ..PushConfig::default()
    };
    let config = SimConfig {
        seed: args.seed,
        default_volume: ZoneVolume {
            records_per_minute: args.records_per_minute,
            empty_ratio: args.empty_ratio,
            late_ratio: args.late_ratio,
            late_max_seconds: args.late_max_seconds,
        },
        zones,
        tokens: if args.tokens.is_empty() {
            vec!["sim-token".to_owned()]
        } else {
            args.tokens
        },
        api_keys,
        faults,
        gzip_level: args.gzip_level,
        retention_default: !args.retention_off,
        push,
        ..SimConfig::default()
    };
    let sim = Simulator::start(config, SocketAddr::new(args.host, args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    // The one line a supervising script waits for.
    println!("rainlogs-logpull-sim listening on {}", sim.base_url());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    sim.shutdown().await.context("shutting down")?;
    Ok(())
}
