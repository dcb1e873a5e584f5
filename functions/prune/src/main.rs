//! The prune function binary: a Lambda function under `AWS_LAMBDA_RUNTIME_API`, or a
//! one-shot run over an event file (or stdin) for local debugging.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    rainlogs_shared::function::run_binary(|| async {
        let src = rainlogs_shared::config::ConfigSource::from_env()?;
        rainlogs_prune::PruneFunction::from_config(&src).await
    })
    .await
}
