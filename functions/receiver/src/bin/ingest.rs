//! The `ingest` function binary (`ingest.landing`: landing bucket objects into the
//! archive): a Lambda function under `AWS_LAMBDA_RUNTIME_API`, or a one-shot run over
//! an event file (or stdin) for local debugging.

use std::process::ExitCode;

use rainlogs_core::config::ConfigSource;

#[tokio::main]
async fn main() -> ExitCode {
    rainlogs_core::function::run_binary(|| async {
        let src = ConfigSource::from_env()?;
        rainlogs_receiver::landing::LandingFunction::from_config(&src).await
    })
    .await
}
