//! Cloudflare API credentials, held so they can only leave through a request header.
//!
//! Both forms are kept in `secrecy` types; `Debug` prints the kind only, and header
//! values are marked sensitive so HTTP-level logging redacts them.

use std::fmt;

use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

/// How the client authenticates.
#[derive(Clone)]
pub enum Credentials {
    /// `Authorization: Bearer <token>` (an API token with Logs:Read).
    ApiToken(SecretString),
    /// The legacy global key: `X-Auth-Email` and `X-Auth-Key`.
    ApiKey {
        email: SecretString,
        key: SecretString,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::ApiToken(_) => f.write_str("Credentials::ApiToken(<redacted>)"),
            Credentials::ApiKey { .. } => f.write_str("Credentials::ApiKey(<redacted>)"),
        }
    }
}

/// A credential that cannot go in an HTTP header; names the part, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Cloudflare {0} contains characters not allowed in an HTTP header")]
pub struct InvalidCredential(pub &'static str);

impl Credentials {
    pub fn token(token: impl Into<String>) -> Self {
        Credentials::ApiToken(SecretString::from(token.into()))
    }

    pub fn api_key(email: impl Into<String>, key: impl Into<String>) -> Self {
        Credentials::ApiKey {
            email: SecretString::from(email.into()),
            key: SecretString::from(key.into()),
        }
    }

    /// The authentication headers, marked sensitive.
    pub(crate) fn headers(&self) -> Result<HeaderMap, InvalidCredential> {
        let mut h = HeaderMap::new();
        match self {
            Credentials::ApiToken(token) => {
                let value = Zeroizing::new(format!("Bearer {}", token.expose_secret()));
                h.insert(
                    reqwest::header::AUTHORIZATION,
                    sensitive(&value, "API token")?,
                );
            }
            Credentials::ApiKey { email, key } => {
                h.insert(
                    "x-auth-email",
                    sensitive(email.expose_secret(), "account email")?,
                );
                h.insert("x-auth-key", sensitive(key.expose_secret(), "API key")?);
            }
        }
        Ok(h)
    }
}

fn sensitive(value: &str, what: &'static str) -> Result<HeaderValue, InvalidCredential> {
    let mut v = HeaderValue::from_str(value).map_err(|_| InvalidCredential(what))?;
    v.set_sensitive(true);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let t = Credentials::token("super-secret-token");
        let k = Credentials::api_key("ops@example.com", "super-secret-key");
        for c in [t, k] {
            let dbg = format!("{c:?}");
            assert!(!dbg.contains("super-secret"), "{dbg}");
            assert!(!dbg.contains("ops@"), "{dbg}");
            let headers = c.headers().expect("valid header values");
            assert!(headers.values().all(|v| v.is_sensitive()));
            assert!(!format!("{headers:?}").contains("super-secret"));
        }
    }

    #[test]
    fn a_token_with_a_newline_is_refused_without_echoing_it() {
        let err = Credentials::token("abc\ndef")
            .headers()
            .expect_err("invalid header");
        assert!(!err.to_string().contains("abc"));
    }
}
