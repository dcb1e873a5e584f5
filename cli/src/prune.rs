//! `rainlogs prune [--dry-run] [--as-of T] [--tenant T] [--json]`: the prune library
//! run in this process (Postgres and the bucket only, no queue), with a summary.
//!
//! Same rules, receipts and audit row as the daily `prune.run` task
//! (docs/RETENTION.md); without a time budget, it runs to the end.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use rainlogs_core::config::ConfigSource;
use rainlogs_prune::{PruneReport, PruneTask, SweepReport};

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Report what would be deleted; delete and mark nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Judge retention and object ages as of this instant (RFC 3339, not in the future).
    #[arg(long)]
    pub as_of: Option<DateTime<Utc>>,
    /// Only this tenant (name or id).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Windows / listed objects per page (1-1000).
    #[arg(long, default_value_t = rainlogs_prune::DEFAULT_PAGE_SIZE)]
    pub page_size: u32,
    /// Uncatalogued archive objects younger than this are left alone (default 24).
    #[arg(long)]
    pub orphan_grace_hours: Option<u32>,
    /// Staged payloads younger than this are left alone (default 48).
    #[arg(long)]
    pub staging_max_age_hours: Option<u32>,
    /// Print the report as JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

pub(crate) async fn run(src: &ConfigSource, args: &PruneArgs) -> anyhow::Result<ExitCode> {
    let (pool, store) = rainlogs_core::function::connect_stores(src).await?;
    let tenant = match &args.tenant {
        Some(t) => Some(rainlogs_archive::catalog::tenant::resolve(&pool, t).await?),
        None => None,
    };
    let task = PruneTask {
        dry_run: args.dry_run,
        as_of: args.as_of,
        page_size: Some(args.page_size),
        tenant,
        orphan_grace_hours: args.orphan_grace_hours,
        staging_max_age_hours: args.staging_max_age_hours,
    };
    let mut opts = task.options(Utc::now())?;
    opts.actor = super::cli_actor("prune");
    let report = rainlogs_prune::prune(&pool, &store, &opts).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", summary(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// The human summary of a report.
pub fn summary(r: &PruneReport) -> String {
    use std::fmt::Write;
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "prune run {} as of {}{}",
        r.run_id,
        r.as_of.format("%Y-%m-%dT%H:%M:%SZ"),
        if r.dry_run {
            " (dry run: nothing deleted)"
        } else {
            ""
        }
    );
    let t = &r.retention;
    let _ = writeln!(
        out,
        "  retention: {verb} {} windows ({} bytes) in {} pages of at most {}; \
         {} past retention held ({} bytes); {} inside retention",
        t.windows, t.bytes, t.pages, r.page_size, t.held_windows, t.held_bytes, t.inside_retention
    );
    let sweep = |out: &mut String, name: &str, s: &SweepReport| {
        let _ = writeln!(
            out,
            "  {name}: listed {}, {verb} {}, reported and kept {} ({} bytes); kept {} young, {} in flight",
            s.listed, s.deleted, s.reported, s.bytes, s.kept_young, s.kept_in_flight
        );
    };
    sweep(&mut out, "orphans", &r.orphans);
    sweep(&mut out, "staging", &r.staging);
    for (name, sample) in [
        ("retention", &t.sample),
        ("orphans", &r.orphans.sample),
        ("staging", &r.staging.sample),
    ] {
        for key in sample {
            let _ = writeln!(out, "    {name}: {key}");
        }
    }
    if !r.complete {
        let _ = writeln!(out, "  stopped early (time budget); run again to continue");
    }
    let _ = writeln!(out, "  took {} ms", r.elapsed_ms);
    out
}
