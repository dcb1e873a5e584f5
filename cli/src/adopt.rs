//! `rainlogs adopt [--tenant T [--zone Z]] [--dry-run] [--json]`: orphaned archive
//! objects (no catalog row) verified and given back their window, catalog row and chain
//! link — the re-adoption path of `rainlogs_archive::adopt` (docs/RETENTION.md,
//! "Orphans"). Exit 0 when every orphan was adopted (or none was found), 1 when some
//! were left alone (listed with why), 2 when the run could not finish.

use std::process::ExitCode;

use anyhow::Context;
use rainlogs_archive::adopt::{adopt_orphans, AdoptReport, AdoptRequest};
use rainlogs_core::config::ConfigSource;

#[derive(Debug, clap::Args)]
pub struct AdoptArgs {
    /// Only this tenant's objects (name or id).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this zone's objects (name, Cloudflare id or Rainlogs id; needs --tenant).
    #[arg(long, requires = "tenant")]
    pub zone: Option<String>,
    /// Verify and report what would be adopted; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the adoption; the report, then the exit code.
pub async fn adopt(src: &ConfigSource, args: &AdoptArgs) -> anyhow::Result<AdoptReport> {
    let (pool, store) = rainlogs_core::function::connect_stores(src).await?;
    let kms = super::verify::kms_for(src, &pool, &[], "adopt")
        .await?
        .context("adopting needs the master keyring (RAINLOGS_MASTER_KEYS_FILE): each object is opened and verified")?;
    let tenant = match &args.tenant {
        Some(t) => Some(rainlogs_archive::catalog::tenant::resolve(&pool, t).await?),
        None => None,
    };
    let zone = match &args.zone {
        Some(z) => Some(rainlogs_archive::catalog::zone::resolve(&pool, z).await?),
        None => None,
    };
    let req = AdoptRequest {
        tenant,
        zone,
        dry_run: args.dry_run,
        actor: super::cli_actor("adopt"),
    };
    Ok(adopt_orphans(&pool, &store, kms, &req).await?)
}

pub(crate) async fn run(src: &ConfigSource, args: &AdoptArgs) -> anyhow::Result<ExitCode> {
    let report = adopt(src, args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let verb = if report.dry_run {
            "would adopt"
        } else {
            "adopted"
        };
        for a in &report.adopted {
            println!(
                "{verb} {}  zone {} [{}, {})  {} records{}",
                a.key,
                a.zone_id,
                a.window_start.to_rfc3339(),
                a.window_end.to_rfc3339(),
                a.record_count,
                a.seq
                    .map(|s| format!("  chain seq {s}"))
                    .unwrap_or_default()
            );
        }
        for (key, why) in &report.skipped {
            println!("left {key}: {why}");
        }
        println!(
            "{} objects listed, {} catalogued, {} {verb}, {} left alone{}",
            report.listed,
            report.catalogued,
            report.adopted_count,
            report.skipped_count,
            if report.adopted_count + report.skipped_count
                > (report.adopted.len() + report.skipped.len()) as u64
            {
                " (the first 1000 of each are shown; every one is in the log)"
            } else {
                ""
            }
        );
    }
    Ok(if report.skipped_count == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
