//! Where a zone's logs come from: a property of the zone, recorded in its row, never of
//! the process that happens to fetch it.
//!
//! A zone is either a real Cloudflare zone — its token may go only to the Cloudflare API
//! base a worker is configured with, and that base must be on the worker's allow-list
//! (`rainlogs_fetch::CloudflareApi`) — or a simulated one, registered with the URL of a
//! Logpull simulator (the demo and tests do this): its token goes to that URL and
//! nowhere else. So a worker started with another endpoint (a test, a benchmark, the
//! demo, a misconfigured host) can never send a real zone's token to it.

use serde::{Deserialize, Serialize};

/// The `logpull_endpoint` column type (migration 0004).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type, Serialize, Deserialize)]
#[sqlx(type_name = "logpull_endpoint", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    Cloudflare,
    Simulator,
}

/// Where one zone's logs are fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneEndpoint {
    /// Cloudflare's API, through the worker's configured (allow-listed) base.
    Cloudflare,
    /// A Logpull simulator at this base URL (`http://127.0.0.1:PORT`).
    Simulator { url: String },
}

/// A zone row whose endpoint columns disagree (the table's CHECK forbids it; this is
/// the typed answer should a row ever get past it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("zone endpoint is {kind:?} but its simulator_url is {}", if *.has_url { "set" } else { "missing" })]
pub struct EndpointColumnsError {
    pub kind: EndpointKind,
    pub has_url: bool,
}

impl ZoneEndpoint {
    /// From the zone's `endpoint` and `simulator_url` columns.
    pub fn from_columns(
        kind: EndpointKind,
        simulator_url: Option<String>,
    ) -> Result<Self, EndpointColumnsError> {
        match (kind, simulator_url) {
            (EndpointKind::Cloudflare, None) => Ok(ZoneEndpoint::Cloudflare),
            (EndpointKind::Simulator, Some(url)) => Ok(ZoneEndpoint::Simulator { url }),
            (kind, url) => Err(EndpointColumnsError {
                kind,
                has_url: url.is_some(),
            }),
        }
    }

    /// The `endpoint` column's value.
    pub fn kind(&self) -> EndpointKind {
        match self {
            ZoneEndpoint::Cloudflare => EndpointKind::Cloudflare,
            ZoneEndpoint::Simulator { .. } => EndpointKind::Simulator,
        }
    }

    /// The `simulator_url` column's value.
    pub fn simulator_url(&self) -> Option<&str> {
        match self {
            ZoneEndpoint::Cloudflare => None,
            ZoneEndpoint::Simulator { url } => Some(url),
        }
    }

    /// How `zone list` shows it.
    pub fn describe(&self) -> String {
        match self {
            ZoneEndpoint::Cloudflare => "cloudflare".into(),
            ZoneEndpoint::Simulator { url } => format!("simulator {url}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_round_trip_and_mismatches_are_typed() {
        let sim = ZoneEndpoint::Simulator {
            url: "http://127.0.0.1:9".into(),
        };
        assert_eq!(
            ZoneEndpoint::from_columns(sim.kind(), sim.simulator_url().map(str::to_owned)),
            Ok(sim)
        );
        assert_eq!(
            ZoneEndpoint::from_columns(EndpointKind::Cloudflare, None),
            Ok(ZoneEndpoint::Cloudflare)
        );
        let e = ZoneEndpoint::from_columns(EndpointKind::Cloudflare, Some("http://x".into()))
            .unwrap_err();
        assert!(e.to_string().contains("set"), "{e}");
        assert!(ZoneEndpoint::from_columns(EndpointKind::Simulator, None).is_err());
    }
}
