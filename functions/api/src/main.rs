//! The API binary: serves `/v1/…` on `RAINLOGS_API_ADDR` (default 127.0.0.1:8788),
//! plain HTTP (put it behind a TLS-terminating proxy), configured like every Rainlogs
//! binary (`RAINLOGS_*` variables over the env file). Under a Lambda runtime
//! (`AWS_LAMBDA_RUNTIME_API` set) it serves invocations from a function URL, API
//! Gateway or an ALB instead (`lambda` module).

use rainlogs_api::{serve, Api, ADDR_VAR, DEFAULT_ADDR};
use rainlogs_core::config::ConfigSource;

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
    let api = Api::from_config(&src).await?;
    if src.get("AWS_LAMBDA_RUNTIME_API").is_some() {
        tracing::info!("api serving Lambda invocations");
        return rainlogs_api::lambda::run(api)
            .await
            .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"));
    }
    let addr = src.get(ADDR_VAR).unwrap_or(DEFAULT_ADDR).to_owned();
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(%addr, "api listening");
    serve(listener, api).await?;
    Ok(())
}
