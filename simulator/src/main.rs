//! `rainlogs-logpull-sim`: the Cloudflare Logpull simulator as a process, for the demo,
//! benchmarks and tests that run the pipeline out of process.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use clap::Parser;
use rainlogs_logpull_sim::{FaultRule, SimConfig, Simulator, ZoneVolume};

#[derive(Parser, Debug)]
#[command(
    name = "rainlogs-logpull-sim",
    version,
    about = "Cloudflare Logpull API simulator"
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
        },
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let zones: HashMap<String, ZoneVolume> = args
        .zones
        .iter()
        .map(|z| parse_zone(z))
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
    let config = SimConfig {
        seed: args.seed,
        default_volume: ZoneVolume {
            records_per_minute: args.records_per_minute,
            empty_ratio: args.empty_ratio,
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
