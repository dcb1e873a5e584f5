//! `rainlogs`: the operator CLI (dispatcher, migrations, probes, demo).

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    rainlogs_core::telemetry::init();
    let cli = rainlogs_cli::Cli::parse();
    match rainlogs_cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            // One line, no backtrace: the chain of contexts is the message.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
