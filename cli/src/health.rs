//! `rainlogs health`: asks a running `rainlogs run` on this host for its health — the
//! container image's health check (it has no shell and no curl). Exit 0 when the process
//! answers `/healthz` with 200, else non-zero with the reason on stderr.

use std::net::SocketAddr;
use std::process::ExitCode;

use rainlogs_core::config::ConfigSource;
use rainlogs_dispatcher::config::DispatcherConfig;

/// `rainlogs health`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// The dispatcher's metrics address (default: RAINLOGS_METRICS_ADDR, the one
    /// `rainlogs run` serves on; an unspecified address such as 0.0.0.0 means this host).
    #[arg(long)]
    pub addr: Option<SocketAddr>,
}

pub(crate) async fn run(src: &ConfigSource, args: &HealthArgs) -> anyhow::Result<ExitCode> {
    let addr = match args.addr {
        Some(addr) => addr,
        None => {
            let raw = src.get(DispatcherConfig::METRICS_ADDR).ok_or_else(|| {
                anyhow::anyhow!(
                    "no address to ask: pass --addr or set {} (the endpoint `rainlogs run` serves)",
                    DispatcherConfig::METRICS_ADDR
                )
            })?;
            raw.trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("{}={raw:?}: {e}", DispatcherConfig::METRICS_ADDR))?
        }
    };
    let body = super::queue::fetch_text(&format!("http://{}/healthz", reachable(addr))).await?;
    print!("{body}");
    Ok(ExitCode::SUCCESS)
}

/// A listener on every interface is reached on loopback.
fn reachable(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::reachable;

    #[test]
    fn an_unspecified_address_is_asked_on_loopback() {
        assert_eq!(
            reachable("0.0.0.0:9090".parse().unwrap()).to_string(),
            "127.0.0.1:9090"
        );
        assert_eq!(
            reachable("[::]:9090".parse().unwrap()).to_string(),
            "[::1]:9090"
        );
        assert_eq!(
            reachable("127.0.0.2:9090".parse().unwrap()).to_string(),
            "127.0.0.2:9090"
        );
    }
}
