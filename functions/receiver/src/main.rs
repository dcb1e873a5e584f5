//! The receiver binary: serves `POST /push/{destination_id}` on
//! `RAINLOGS_RECEIVER_LISTEN` (default 127.0.0.1:8787), plain HTTP — terminate TLS in
//! front of it until the built-in rustls listener lands (docs/INGEST.md, "Not yet").

use rainlogs_core::config::ConfigSource;
use rainlogs_receiver::{serve, Receiver, LISTEN_VAR};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rainlogs_core::telemetry::init();
    let src = ConfigSource::from_env()?;
    let receiver = Receiver::from_config(&src).await?;
    let addr = src.get(LISTEN_VAR).unwrap_or("127.0.0.1:8787").to_owned();
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(%addr, "receiver listening");
    serve(listener, receiver).await?;
    Ok(())
}
