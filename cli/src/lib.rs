//! The `rainlogs` subcommands. Each lives in its own module; this one only parses
//! arguments, loads configuration once and hands over.

pub mod account;
pub mod adopt;
pub mod decrypt;
#[cfg(feature = "demo")]
pub mod demo;
#[cfg(feature = "demo")]
pub mod demo_push;
pub mod evidence;
mod health;
pub mod kms;
pub mod logpush;
pub mod logs;
mod probe;
pub mod prune;
mod queue;
mod run;
pub mod tenant;
pub mod verify;
pub mod zone;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rainlogs_core::config::{ConfigSource, DatabaseConfig};
use tokio::sync::watch;

use rainlogs_dispatcher::app::App;

#[derive(Debug, Parser)]
#[command(
    name = "rainlogs",
    version,
    about = "Cloudflare log archive: operator CLI"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending database migrations.
    Migrate,
    /// Check configuration and that Postgres, Redis and S3 answer.
    Check,
    /// Ask a running dispatcher on this host for its health (GET /healthz on its metrics
    /// endpoint): exit 0 when healthy. The container image's health check.
    Health(health::HealthArgs),
    /// Run the dispatcher until SIGINT/SIGTERM (invoker, queues, limits: RAINLOGS_* settings).
    Run {
        /// Queues to consume, comma-separated (overrides RAINLOGS_QUEUES).
        #[arg(long, value_delimiter = ',')]
        queues: Vec<String>,
    },
    /// Inspect and repair the task queues: stats, dead letters, pause/resume.
    Queue(queue::QueueArgs),
    /// Enqueue end-to-end probes and wait for a running dispatcher to complete them.
    Probe(probe::ProbeArgs),
    /// Walking-skeleton self-test: migrate, start a dispatcher in-process, send probes
    /// through Redis → dispatcher → upload function → Garage + Postgres, and report.
    SelfTest(probe::ProbeArgs),
    /// Archive demo: simulator + three zones through fetch → encrypt → upload, then
    /// volumes, compression, throughput and chain verification (needs the keyring).
    Demo(DemoArgs),
    /// Key management: status, rotation, shredding, key export.
    Kms {
        #[command(subcommand)]
        command: kms::KmsCommand,
    },
    /// Tenants: add, list, set (retention, legal hold).
    Tenant {
        #[command(subcommand)]
        command: tenant::TenantCommand,
    },
    /// Zones: add (token read from an env var, stored encrypted), list, pause, resume,
    /// set (retention override, legal hold), coverage.
    Zone {
        #[command(subcommand)]
        command: zone::ZoneCommand,
    },
    /// Logpush jobs at Cloudflare: create (destination, secret and job), list, status,
    /// disable, delete.
    Logpush {
        #[command(subcommand)]
        command: logpush::LogpushCommand,
    },
    /// Open a sealed object offline and write its NDJSON to stdout.
    Decrypt(decrypt::DecryptArgs),
    /// Auditor evidence: `evidence export --tenant T --out DIR` (docs/CHAIN.md).
    Evidence {
        #[command(subcommand)]
        command: evidence::EvidenceCommand,
    },
    /// MAC every zone's chain tip into the bucket now (the scheduler does it hourly).
    Checkpoint(evidence::CheckpointArgs),
    /// Verify the archive: chain, objects, catalog, pruned windows, coverage
    /// (exit 0 clean, 1 findings, 2 could not verify).
    Verify(verify::VerifyArgs),
    /// Restore logs: `logs get --zone Z --from T1 --to T2` streams verified NDJSON.
    Logs {
        #[command(subcommand)]
        command: logs::LogsCommand,
    },
    /// API users: add (to a tenant, or provider-wide), list, disable (docs/API.md).
    User {
        #[command(subcommand)]
        command: account::UserCommand,
    },
    /// API keys: create (printed once), list, revoke (docs/API.md).
    Key {
        #[command(subcommand)]
        command: account::KeyCommand,
    },
    /// Delete what retention says must go, and sweep orphaned and stale staged objects
    /// (in-process; the daily `prune.run` schedule does the same). See docs/RETENTION.md.
    Prune(prune::PruneArgs),
    /// Re-adopt orphaned archive objects (no catalog row: a Postgres restored from an
    /// older backup, dropped rows): each verified, then given its window, catalog row
    /// and chain link back. See docs/RETENTION.md, "Orphans".
    Adopt(adopt::AdoptArgs),
}

/// Runs one parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let src = ConfigSource::from_env()?;
    match cli.command {
        Command::Migrate => {
            let db = DatabaseConfig::from_source(&src)?;
            let pool = rainlogs_core::db::connect(&db).await?;
            rainlogs_core::db::migrate(&pool).await?;
            println!("migrations applied");
            // Migration 0019's data step: it needs the bucket prefix, which SQL cannot know.
            match rainlogs_core::config::S3Config::from_source(&src) {
                Ok(s3) => {
                    let n =
                        rainlogs_archive::pipeline::complete_catalog_keys(&pool, &s3.key_prefix)
                            .await?;
                    if n > 0 {
                        println!("{n} catalog keys completed with the bucket prefix {:?}", s3.key_prefix);
                    }
                }
                Err(e) => println!(
                    "catalog keys not completed with the bucket prefix (S3 not configured: {e}); `rainlogs run` does it at start"
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => {
            App::connect(&src).await?;
            println!("postgres, redis and s3 answer; configuration is valid");
            Ok(ExitCode::SUCCESS)
        }
        Command::Health(args) => health::run(&src, &args).await,
        Command::Run { queues } => run::run(&src, queues).await,
        Command::Queue(args) => queue::run(&src, args).await,
        Command::Probe(args) => {
            let app = App::connect(&src).await?;
            probe::probe(&app, &args).await
        }
        #[cfg(feature = "demo")]
        Command::Demo(args) => {
            let app = App::connect(&src).await?;
            let opts =
                demo::DemoOptions::new(args.backfill_minutes, Duration::from_secs(args.timeout));
            Ok(demo::print(&demo::run_demo(&app, &opts).await?))
        }
        #[cfg(not(feature = "demo"))]
        Command::Demo(_) => anyhow::bail!(
            "this build of rainlogs has no demo (it does not link the Logpull simulator): \
             build it with `cargo build --bin rainlogs --features demo`, or run infra/demo.sh"
        ),
        Command::SelfTest(args) => {
            let app = App::connect(&src).await?;
            rainlogs_core::db::migrate(&app.pool).await?;
            let (tx, rx) = watch::channel(false);
            let worker = app.worker(vec![args.queue.clone()]);
            let handle = tokio::spawn(async move { worker.run(rx).await });
            let result = probe::probe(&app, &args).await;
            let _ = tx.send(true);
            tokio::time::timeout(Duration::from_secs(30), handle)
                .await
                .context("dispatcher did not stop within 30 s")?
                .context("dispatcher task panicked")?
                .context("dispatcher")?;
            result
        }
        Command::Kms { command } => kms::run(&src, command).await,
        Command::Tenant { command } => tenant::run(&src, command).await,
        Command::Zone { command } => zone::run(&src, command).await,
        Command::Logpush { command } => logpush::run(&src, command).await,
        Command::Decrypt(args) => decrypt::run(&src, &args).await,
        Command::Verify(args) => verify::run(&src, &args).await,
        Command::Evidence { command } => evidence::run(&src, command).await,
        Command::Checkpoint(args) => evidence::checkpoint(&src, args).await,
        Command::Logs { command } => logs::run(&src, command).await,
        Command::Prune(args) => prune::run(&src, &args).await,
        Command::Adopt(args) => adopt::run(&src, &args).await,
        Command::User { command } => account::user(&src, command).await,
        Command::Key { command } => account::key(&src, command).await,
    }
}

/// `rainlogs demo`'s arguments (the command itself needs the `demo` feature).
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Give up (and exit non-zero) after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Minutes of history each demo zone backfills.
    #[arg(long, default_value_t = 30)]
    pub backfill_minutes: i64,
}

/// `cli:<user>:<command>`, the audit actor of operator commands.
pub fn cli_actor(command: &str) -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}:{command}")
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
