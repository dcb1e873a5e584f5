//! Where a zone's logs come from, and so where its token may go: a property of the
//! zone, recorded in its row, never of the process that happens to call Cloudflare.
//!
//! A zone is either a real Cloudflare zone — its token may go only to the Cloudflare API
//! base a process is configured with, and that base must be on the allow-list
//! ([`CloudflareApi`]: `https://api.cloudflare.com` unless `RAINLOGS_CLOUDFLARE_API`
//! names another base, which must then be on `RAINLOGS_CLOUDFLARE_API_ALLOW`, origins
//! `scheme://host[:port]`, comma-separated) — or a simulated one, registered with the
//! URL of a simulator (the demo and tests do this): its token goes to that URL and
//! nowhere else, whatever the configuration says. So a process started with another
//! endpoint (a test, a benchmark, the demo, a misconfigured host) can never send a real
//! zone's token to it. The check happens when the configuration is read, so a process
//! that would send tokens elsewhere refuses to start. The Logpull client (fetch) and the
//! Logpush jobs client ([`crate::logpush`]) both go through [`CloudflareApi::base_for`],
//! and neither follows redirects.

use rainlogs_core::config::{ConfigError, ConfigSource};
use reqwest::Url;
use serde::{Deserialize, Serialize};

/// Cloudflare's API base.
pub const CLOUDFLARE_API: &str = "https://api.cloudflare.com";

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

/// Optional: the Cloudflare API base for real zones (default `https://api.cloudflare.com`).
pub const CLOUDFLARE_API_VAR: &str = "RAINLOGS_CLOUDFLARE_API";
/// Optional: the origins `RAINLOGS_CLOUDFLARE_API` may point at.
pub const CLOUDFLARE_API_ALLOW_VAR: &str = "RAINLOGS_CLOUDFLARE_API_ALLOW";

/// The Cloudflare API base real zones are fetched from, checked against the allow-list.
/// Only [`CloudflareApi::new`] and [`CloudflareApi::from_source`] make one, and both
/// check, so holding one means its base is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudflareApi {
    base: String,
}

/// Why a Cloudflare API base was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("{url:?} is not a URL: {reason}")]
    NotAUrl { url: String, reason: String },
    #[error(
        "{url:?} is not on the allow-list ({allowed}): a real zone's Cloudflare token is sent \
         only to an allowed Cloudflare API origin (simulated zones carry their own URL)"
    )]
    NotAllowed { url: String, allowed: String },
}

impl Default for CloudflareApi {
    fn default() -> Self {
        Self {
            base: CLOUDFLARE_API.to_owned(),
        }
    }
}

/// `scheme://host[:port]` with the scheme's default port left out, lowercased.
fn origin(url: &str) -> Result<String, EndpointError> {
    let parsed = Url::parse(url.trim()).map_err(|e| EndpointError::NotAUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    let host = parsed.host_str().ok_or_else(|| EndpointError::NotAUrl {
        url: url.to_owned(),
        reason: "no host".into(),
    })?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(EndpointError::NotAUrl {
            url: url.to_owned(),
            reason: format!("scheme {:?} (want https)", parsed.scheme()),
        });
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(EndpointError::NotAUrl {
            url: "(redacted)".to_owned(),
            reason: "credentials in the URL".into(),
        });
    }
    Ok(match parsed.port() {
        Some(port) => format!("{}://{}:{port}", parsed.scheme(), host.to_ascii_lowercase()),
        None => format!("{}://{}", parsed.scheme(), host.to_ascii_lowercase()),
    })
}

impl CloudflareApi {
    /// `base` if its origin is one of `allowed` (origins such as `https://api.cloudflare.com`).
    pub fn new(base: &str, allowed: &[String]) -> Result<Self, EndpointError> {
        let want = origin(base)?;
        let mut origins = Vec::new();
        for a in allowed {
            origins.push(origin(a)?);
        }
        if !origins.contains(&want) {
            return Err(EndpointError::NotAllowed {
                url: base.to_owned(),
                allowed: if origins.is_empty() {
                    "empty".into()
                } else {
                    origins.join(", ")
                },
            });
        }
        Ok(Self {
            base: base.trim().trim_end_matches('/').to_owned(),
        })
    }

    /// From `RAINLOGS_CLOUDFLARE_API` and `RAINLOGS_CLOUDFLARE_API_ALLOW`.
    pub fn from_source(src: &ConfigSource) -> Result<Self, ConfigError> {
        let allowed: Vec<String> = match src.get(CLOUDFLARE_API_ALLOW_VAR) {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            None => vec![CLOUDFLARE_API.to_owned()],
        };
        let base = src.get(CLOUDFLARE_API_VAR).unwrap_or(CLOUDFLARE_API);
        Self::new(base, &allowed).map_err(|e| ConfigError::Invalid {
            var: match e {
                EndpointError::NotAUrl { .. } if src.get(CLOUDFLARE_API_VAR).is_none() => {
                    CLOUDFLARE_API_ALLOW_VAR.to_owned()
                }
                EndpointError::NotAllowed { .. } => {
                    format!("{CLOUDFLARE_API_VAR} (with {CLOUDFLARE_API_ALLOW_VAR})")
                }
                _ => CLOUDFLARE_API_VAR.to_owned(),
            },
            reason: e.to_string(),
        })
    }

    /// The base URL real zones are fetched from.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The base URL `zone`'s logs (and so its token) go to.
    pub fn base_for<'a>(&'a self, zone: &'a ZoneEndpoint) -> &'a str {
        match zone {
            ZoneEndpoint::Cloudflare => &self.base,
            ZoneEndpoint::Simulator { url } => url.trim_end_matches('/'),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rainlogs_core::config::ConfigSource;

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

    fn src(pairs: &[(&str, &str)]) -> ConfigSource {
        ConfigSource::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn default_is_cloudflare() {
        let api = CloudflareApi::from_source(&src(&[])).unwrap();
        assert_eq!(api.base(), "https://api.cloudflare.com");
        assert_eq!(api, CloudflareApi::default());
    }

    #[test]
    fn a_base_off_the_allow_list_is_refused_naming_both_variables() {
        for base in [
            "http://127.0.0.1:8080",
            "http://api.cloudflare.com",
            "https://api.cloudflare.com.evil.example",
            "https://api.cloudflare.com:8443",
        ] {
            let e = CloudflareApi::from_source(&src(&[(CLOUDFLARE_API_VAR, base)])).unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains(CLOUDFLARE_API_VAR) && text.contains(CLOUDFLARE_API_ALLOW_VAR),
                "{text}"
            );
        }
    }

    #[test]
    fn an_allow_listed_proxy_is_accepted_and_origins_compare_normalised() {
        let api = CloudflareApi::from_source(&src(&[
            (CLOUDFLARE_API_VAR, "http://127.0.0.1:8080/"),
            (
                CLOUDFLARE_API_ALLOW_VAR,
                "https://api.cloudflare.com, http://127.0.0.1:8080",
            ),
        ]))
        .unwrap();
        assert_eq!(api.base(), "http://127.0.0.1:8080");
        assert!(
            CloudflareApi::new("https://API.cloudflare.com:443", &[CLOUDFLARE_API.into()]).is_ok()
        );
    }

    #[test]
    fn credentials_in_the_url_are_refused_without_echoing_them() {
        let e = CloudflareApi::new(
            "https://u:secret@api.cloudflare.com",
            &[CLOUDFLARE_API.into()],
        )
        .unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn a_simulated_zone_goes_to_its_own_url_whatever_the_base() {
        let api = CloudflareApi::default();
        let sim = ZoneEndpoint::Simulator {
            url: "http://127.0.0.1:9/".into(),
        };
        assert_eq!(api.base_for(&sim), "http://127.0.0.1:9");
        assert_eq!(
            api.base_for(&ZoneEndpoint::Cloudflare),
            "https://api.cloudflare.com"
        );
    }
}
