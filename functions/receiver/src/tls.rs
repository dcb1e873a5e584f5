//! HTTPS for the local server: Logpush only pushes to HTTPS destinations, so the
//! receiver terminates TLS itself (rustls, ring provider) from a configured PEM
//! certificate chain and key (`RAINLOGS_RECEIVER_TLS_CERT`, `RAINLOGS_RECEIVER_TLS_KEY`).
//! Cloudflare requires a certificate it trusts (a public CA), not a self-signed one.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::Receiver;

/// PEM certificate chain, leaf first (`RAINLOGS_RECEIVER_TLS_CERT`).
pub const TLS_CERT_VAR: &str = "RAINLOGS_RECEIVER_TLS_CERT";
/// PEM private key of the leaf (`RAINLOGS_RECEIVER_TLS_KEY`).
pub const TLS_KEY_VAR: &str = "RAINLOGS_RECEIVER_TLS_KEY";

/// A TLS configuration problem, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("TLS key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The server configuration from a PEM chain and key (HTTP/1.1 only).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
        path: cert.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| TlsError::Config(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves the receiver over TLS on `listener` until the process ends. A failed
/// handshake or connection is logged and ends that connection only.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    receiver: Receiver,
    config: Arc<rustls::ServerConfig>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    let app = receiver.router();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of descriptors and the like: keep serving the connections we have.
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    tower::ServiceExt::oneshot(app.clone(), req.map(axum::body::Body::new))
                });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/tls")
            .join(name)
    }

    #[test]
    fn loads_the_test_pair_and_names_bad_files() {
        server_config(&fixture("cert.pem"), &fixture("key.pem")).expect("test pair loads");
        let err = server_config(&fixture("key.pem"), &fixture("key.pem")).unwrap_err();
        assert!(err.to_string().contains("key.pem"), "{err}");
        let err = server_config(&fixture("cert.pem"), &fixture("missing.pem")).unwrap_err();
        assert!(matches!(err, TlsError::Key { .. }), "{err}");
    }
}
