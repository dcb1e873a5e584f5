//! The receiver binary: serves `POST /push/{destination_id}` on
//! `RAINLOGS_RECEIVER_LISTEN` (default 127.0.0.1:8787) — over HTTPS when
//! `RAINLOGS_RECEIVER_TLS_CERT` and `RAINLOGS_RECEIVER_TLS_KEY` name a PEM chain and
//! key, else plain HTTP (only behind a TLS-terminating proxy: Logpush pushes to HTTPS).
//! Under a Lambda runtime (`AWS_LAMBDA_RUNTIME_API` set) it serves invocations from a
//! function URL, API Gateway or an ALB instead (`lambda` module).

use std::path::Path;

use rainlogs_core::config::ConfigSource;
use rainlogs_receiver::tls::{serve_tls, server_config, TLS_CERT_VAR, TLS_KEY_VAR};
use rainlogs_receiver::{serve, Receiver, LISTEN_VAR};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    rainlogs_core::telemetry::init();
    match serve_from_env().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, every cause: what is wrong and which setting (never a secret).
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn serve_from_env() -> anyhow::Result<()> {
    let src = ConfigSource::from_env()?;
    let tls = match (src.get(TLS_CERT_VAR), src.get(TLS_KEY_VAR)) {
        (Some(cert), Some(key)) => Some(server_config(Path::new(cert), Path::new(key))?),
        (None, None) => None,
        _ => anyhow::bail!("set both {TLS_CERT_VAR} and {TLS_KEY_VAR}, or neither"),
    };
    let receiver = Receiver::from_config(&src).await?;
    if src.get("AWS_LAMBDA_RUNTIME_API").is_some() {
        // Under a Lambda runtime (function URL, API Gateway, ALB): one request per
        // invocation, the same router.
        tracing::info!("receiver serving Lambda invocations");
        return rainlogs_receiver::lambda::run(receiver)
            .await
            .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"));
    }
    let addr = src.get(LISTEN_VAR).unwrap_or("127.0.0.1:8787").to_owned();
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(%addr, tls = tls.is_some(), "receiver listening");
    match tls {
        Some(config) => serve_tls(listener, receiver, config).await?,
        None => serve(listener, receiver).await?,
    }
    Ok(())
}
