//! `rainlogs zone add|list|pause|resume|set|coverage|retry-failed`: parses, calls
//! `rainlogs_archive::catalog::zone`, prints. The API token is read from an environment
//! variable named on the command line (never from argv, which other users can read in
//! `ps`).

use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use rainlogs_archive::catalog::zone::{
    add_by, coverage, list, retry_failed, set_mode, set_paused_by, set_retention, set_token,
    NewZone, ZoneMode, ZoneProbe, ZoneRetentionChange,
};
use rainlogs_archive::endpoint::ZoneEndpoint;
use rainlogs_core::config::{ConfigSource, DatabaseConfig};
use secrecy::SecretString;
use uuid::Uuid;

#[derive(Debug, clap::Subcommand)]
pub enum ZoneCommand {
    /// Add a zone to a tenant; its token is read from the environment variable named by
    /// --token-env and stored encrypted.
    Add {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// Cloudflare zone id (32 lowercase hex characters).
        #[arg(long)]
        zone_id: String,
        /// Display name (usually the domain).
        #[arg(long)]
        name: String,
        /// Window length in seconds (15-3600).
        #[arg(long, default_value_t = 60)]
        cadence_seconds: i32,
        /// How far back to start archiving, in minutes (at most 7 days).
        #[arg(long, default_value_t = 30)]
        backfill_minutes: i64,
        /// Name of the environment variable holding the Cloudflare API token.
        #[arg(long)]
        token_env: String,
        /// Fetch this zone from a Logpull simulator at URL instead of Cloudflare (demos
        /// and tests: the token is sent to this URL and nowhere else).
        #[arg(long, value_name = "URL")]
        simulator: Option<String>,
        /// Switch the zone's log retention on if it is off (else the zone is refused:
        /// Logpull would have nothing to fetch). Not for push zones.
        #[arg(long)]
        enable_retention: bool,
        /// How its logs arrive: `pull` (Logpull, Enterprise; the token is checked there),
        /// `push` (Logpush only, any plan: the token is checked at the Logpush jobs API;
        /// then `rainlogs logpush create`), or `hybrid` (both; checked at Logpull).
        #[arg(long, value_enum, default_value = "pull")]
        mode: ModeArg,
        /// Archive only these Logpull fields (comma-separated, each checked against the
        /// zone's fields endpoint). Default: every field Cloudflare offers for the zone
        /// — a field not fetched within Cloudflare's 7 days can never be added later.
        #[arg(long, value_delimiter = ',', value_name = "FIELD,...")]
        fields: Option<Vec<String>>,
    },
    /// List zones with their tenant and state.
    List,
    /// Stop planning and enqueuing the zone's windows.
    Pause { zone: String },
    /// Resume a paused zone.
    Resume { zone: String },
    /// Change a zone's Cloudflare token, retention override or legal hold (each change
    /// writes an audit row).
    Set {
        zone: String,
        /// Replace the Cloudflare token with the one in this environment variable: probed
        /// at the zone's endpoint first, then stored encrypted. Resumes a zone Rainlogs
        /// parked (e.g. after Cloudflare refused the old token).
        #[arg(long, value_name = "VAR")]
        token_env: Option<String>,
        /// With --token-env: switch the zone's log retention on if it is off.
        #[arg(long, requires = "token_env")]
        enable_retention: bool,
        /// Keep this zone's archives this many days (overrides the tenant's; 1-36500).
        #[arg(long, conflicts_with = "inherit_retention")]
        retention_days: Option<i32>,
        /// Drop the override: the tenant's retention applies again.
        #[arg(long)]
        inherit_retention: bool,
        /// A legal hold blocks every deletion of the zone's archives.
        #[arg(long)]
        legal_hold: Option<crate::tenant::OnOff>,
        /// Accept a retention below the legal minimum (395 days; docs/RETENTION.md).
        #[arg(long, requires = "retention_days")]
        confirm_short_retention: bool,
    },
    /// How the zone's logs arrive: `pull` (Logpull windows, Enterprise), `push`
    /// (Logpush batches only) or `hybrid` (Logpush, Logpull repairing gaps). Audited.
    Mode { zone: String, mode: ModeArg },
    /// Which minutes of the zone are archived, empty, failed, in flight or missing.
    Coverage {
        zone: String,
        /// Start (RFC 3339); default: the zone's backfill start.
        #[arg(long)]
        from: Option<DateTime<Utc>>,
        /// End (RFC 3339); default: now.
        #[arg(long)]
        to: Option<DateTime<Utc>>,
    },
    /// Re-plan the zone's failed windows still inside Cloudflare's 7 days, so they are
    /// fetched again (after fixing a token, a clock-skew or outage failure). Refuses a
    /// --from older than 7 days: those windows are lost for good.
    RetryFailed {
        zone: String,
        /// Oldest window start to retry (RFC 3339); default: the oldest Logpull still serves.
        #[arg(long)]
        from: Option<DateTime<Utc>>,
        /// Retry windows starting before this (RFC 3339); default: now.
        #[arg(long)]
        to: Option<DateTime<Utc>>,
    },
}

/// `pull` / `push` / `hybrid` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Pull,
    Push,
    Hybrid,
}

impl From<ModeArg> for ZoneMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Pull => ZoneMode::Pull,
            ModeArg::Push => ZoneMode::Push,
            ModeArg::Hybrid => ZoneMode::Hybrid,
        }
    }
}

pub(crate) async fn run(src: &ConfigSource, cmd: ZoneCommand) -> anyhow::Result<ExitCode> {
    let pool = rainlogs_core::db::connect(&DatabaseConfig::from_source(src)?).await?;
    match cmd {
        ZoneCommand::Add {
            tenant,
            zone_id,
            name,
            cadence_seconds,
            backfill_minutes,
            token_env,
            simulator,
            enable_retention,
            mode,
            fields,
        } => {
            let mode = ZoneMode::from(mode);
            if mode == ZoneMode::Push && enable_retention {
                anyhow::bail!("--enable-retention is for Logpull; a push zone does not use it");
            }
            let token = token_from_env(&token_env)?;
            let kms =
                rainlogs_kms::KmsService::from_config(pool.clone(), src, super::cli_actor("zone"))?;
            let probe = probe(src, mode, enable_retention)?;
            let zone = NewZone {
                tenant: &tenant,
                cf_zone_id: &zone_id,
                name: &name,
                cadence_seconds,
                backfill_minutes,
                endpoint: match simulator {
                    Some(url) => ZoneEndpoint::Simulator { url },
                    None => ZoneEndpoint::Cloudflare,
                },
                demo: false,
                fields: fields.as_deref(),
            };
            let actor = super::cli_actor("zone");
            let now = Utc::now();
            let id = add_by(
                &pool,
                &kms,
                probe.as_ref(),
                &zone,
                &token,
                mode,
                now,
                &actor,
            )
            .await?;
            println!(
                "zone {name} ({zone_id}) added to {tenant}: {id}, mode {mode} (token checked at its {})",
                if mode == ZoneMode::Push {
                    "Logpush jobs API"
                } else {
                    "endpoint"
                }
            );
        }
        ZoneCommand::List => {
            for z in list(&pool).await? {
                let source = match (&z.simulator_url, z.demo) {
                    (Some(url), true) => format!("  demo simulator {url}"),
                    (Some(url), false) => format!("  simulator {url}"),
                    (None, _) => String::new(),
                };
                println!(
                    "{}  {}  {:<20} {:<30} {:>5}s  {:<6} {}{}{}{}",
                    z.id,
                    z.cf_zone_id,
                    z.tenant,
                    z.name,
                    z.cadence_seconds,
                    z.mode.as_str(),
                    match (&z.paused_reason, z.paused) {
                        (Some(reason), _) => format!("PARKED ({reason})"),
                        (None, true) => "paused".into(),
                        (None, false) => "active".into(),
                    },
                    source,
                    if z.has_token { "" } else { "  (no token)" },
                    z.last_error
                        .map(|e| format!("  last error: {e}"))
                        .unwrap_or_default(),
                );
            }
        }
        ZoneCommand::Pause { zone } => {
            let change = set_paused_by(&pool, &zone, true, &super::cli_actor("zone")).await?;
            println!("zone {} paused", change.id);
        }
        ZoneCommand::Resume { zone } => {
            let change = set_paused_by(&pool, &zone, false, &super::cli_actor("zone")).await?;
            println!("zone {} resumed", change.id);
        }
        ZoneCommand::Set {
            zone,
            token_env,
            enable_retention,
            retention_days,
            inherit_retention,
            legal_hold,
            confirm_short_retention,
        } => {
            let actor = super::cli_actor("zone");
            if let Some(var) = token_env {
                let token = token_from_env(&var)?;
                let kms = rainlogs_kms::KmsService::from_config(pool.clone(), src, &actor)?;
                let mode = rainlogs_archive::catalog::zone::mode(&pool, &zone).await?;
                let probe = probe(src, mode, enable_retention)?;
                let r = set_token(&pool, &kms, probe.as_ref(), &zone, &token, &actor).await?;
                println!("zone {}: token replaced (checked at its endpoint)", r.zone);
                if r.probe.retention_enabled {
                    println!("  log retention switched on");
                }
                if r.resumed {
                    println!("  the zone was parked and runs again; `rainlogs zone retry-failed {}` re-plans windows that failed before", r.zone);
                } else if r.still_paused {
                    println!("  the zone stays paused (rainlogs zone resume {})", r.zone);
                }
                if retention_days.is_none() && !inherit_retention && legal_hold.is_none() {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            let change = ZoneRetentionChange {
                retention_days: if inherit_retention {
                    Some(None)
                } else {
                    retention_days.map(Some)
                },
                legal_hold: legal_hold.map(crate::tenant::OnOff::is_on),
                confirm_short_retention,
            };
            let applied = set_retention(&pool, &zone, change, &actor).await?;
            let (id, days, hold) = (applied.id, applied.retention_days, applied.legal_hold);
            println!(
                "zone {id}: retention {}, legal hold {}",
                days.map(|d| format!("{d} days"))
                    .unwrap_or_else(|| "as the tenant's".into()),
                if hold { "on" } else { "off" }
            );
        }
        ZoneCommand::Mode { zone, mode } => {
            let actor = super::cli_actor("zone");
            let mode = ZoneMode::from(mode);
            let old = set_mode(&pool, &zone, mode, &actor).await?;
            println!("zone {zone}: mode {old} -> {mode}");
        }
        ZoneCommand::RetryFailed { zone, from, to } => {
            let actor = super::cli_actor("zone");
            let r = retry_failed(&pool, &zone, from, to, Utc::now(), &actor).await?;
            let fmt = "%Y-%m-%dT%H:%M:%SZ";
            println!(
                "zone {}: {} failed windows re-planned ({} .. {})",
                r.zone,
                r.replanned.len(),
                r.from.format(fmt),
                r.to.format(fmt)
            );
            if r.unrecoverable > 0 {
                println!(
                    "  {} failed windows are older than Cloudflare's 7 days: lost for good, left failed",
                    r.unrecoverable
                );
            }
            if r.paused {
                println!("  the zone is paused: they are fetched once it is resumed (rainlogs zone resume {})", r.zone);
            } else if !r.replanned.is_empty() {
                // Send them now; if Redis cannot be reached, the scheduler's reconciler
                // sends planned windows on its own (RAINLOGS_RECONCILE_AFTER_MS).
                match enqueue(src, r.tenant, &r.replanned).await {
                    Ok(n) => println!("  {n} fetch tasks enqueued"),
                    Err(e) => println!(
                        "  not enqueued now ({e:#}); a running scheduler sends them within RAINLOGS_RECONCILE_AFTER_MS"
                    ),
                }
            }
        }
        ZoneCommand::Coverage { zone, from, to } => {
            let now = Utc::now();
            let id = rainlogs_archive::catalog::zone::resolve(&pool, &zone).await?;
            let mode = rainlogs_archive::verify::zone_mode(&pool, id).await?;
            if mode != "pull" {
                // Pushed logs: what arrived per minute of edge time, and delivery health.
                let from = from.unwrap_or(now - chrono::TimeDelta::days(1));
                let c = rainlogs_archive::push::coverage(&pool, id, from, to.unwrap_or(now), now)
                    .await?;
                print_push_coverage(&mode, &c);
                // Landing objects that could not be ingested are no batch: say so here.
                let rejected = rainlogs_archive::landing::rejects(&pool, Some(id)).await?;
                if !rejected.is_empty() {
                    println!(
                        "  REJECTED {} landing objects, kept under rejected/ (rainlogs logpush rejects --zone {zone})",
                        rejected.len()
                    );
                }
                if mode == "push" {
                    return Ok(ExitCode::SUCCESS);
                }
                println!("pulled windows (Logpull repair):");
            }
            let c = coverage(&pool, &zone, from, to, now).await?;
            let fmt = "%Y-%m-%dT%H:%M:%SZ";
            println!("coverage {} .. {}", c.from.format(fmt), c.to.format(fmt));
            for (state, n) in &c.states {
                println!("  {state:<17} {n} windows");
            }
            for (kind, start, end) in &c.spans {
                println!(
                    "  {:<9} {} .. {}  ({} min){}",
                    kind.to_string(),
                    start.format(fmt),
                    end.format(fmt),
                    (*end - *start).num_minutes(),
                    if *kind == rainlogs_archive::coverage::Cover::Lost {
                        "  unrecoverable: no window, and Logpull keeps only 7 days"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_push_coverage(mode: &str, c: &rainlogs_archive::push::PushCoverage) {
    let fmt = "%Y-%m-%dT%H:%M:%SZ";
    println!(
        "{mode} zone: pushed logs {} .. {}",
        c.from.format(fmt),
        c.to.format(fmt)
    );
    if c.destinations.is_empty() {
        println!("  no Logpush destination yet (rainlogs logpush create)");
    }
    for d in &c.datasets {
        println!(
            "  {:<16} {} records in {} minutes",
            d.dataset, d.records, d.minutes_with_records
        );
        for (start, end) in &d.quiet {
            println!(
                "    no records  {} .. {}  ({} min: no traffic, or not delivered)",
                start.format(fmt),
                end.format(fmt),
                (*end - *start).num_minutes()
            );
        }
    }
    for h in &c.destinations {
        let at = |t: Option<chrono::DateTime<Utc>>| {
            t.map(|t| t.format(fmt).to_string())
                .unwrap_or_else(|| "never".into())
        };
        println!(
            "  destination {} ({}){}: validated {}, last batch {}",
            h.id,
            h.dataset,
            if h.disabled { " disabled" } else { "" },
            at(h.validated_at),
            at(h.last_batch_at)
        );
        if let Some(alert) = &h.alert {
            println!("    ALERT: {alert}");
        }
    }
    for p in &c.failed {
        println!(
            "  GAP {:<12} {} .. {}  Cloudflare reported delivery failing: {}",
            p.dataset,
            p.from.format(fmt),
            p.to.map(|t| t.format(fmt).to_string())
                .unwrap_or_else(|| "now (still failing)".into()),
            p.error_message.as_deref().unwrap_or("")
        );
    }
}

/// Enqueues `fetch.window` for re-planned windows; returns how many entered the queue.
async fn enqueue(src: &ConfigSource, tenant: Uuid, window_ids: &[i64]) -> anyhow::Result<u64> {
    let redis = rainlogs_core::config::RedisConfig::from_source(src)?;
    let conn = rainlogs_core::redis_client::connect(&redis).await?;
    let queue = rainlogs_dispatcher::queue::Queue::new(conn, redis.key_prefix);
    let report =
        rainlogs_dispatcher::reconcile::enqueue_fetches(&queue, tenant, window_ids).await?;
    Ok(report.enqueued + report.duplicates)
}

/// The token in environment variable `var` (never argv: other users can read that).
fn token_from_env(var: &str) -> anyhow::Result<SecretString> {
    std::env::var(var)
        .map(SecretString::from)
        .with_context(|| format!("--token-env: environment variable {var} is not set"))
}

/// The token probe for a zone in `mode`, through the Cloudflare API base: a push zone's
/// at its Logpush jobs API, others' at Logpull with the fetch stage's client settings.
fn probe(
    src: &ConfigSource,
    mode: ZoneMode,
    enable_retention: bool,
) -> anyhow::Result<Box<dyn ZoneProbe>> {
    let cloudflare = rainlogs_fetch::CloudflareApi::from_source(src)?;
    Ok(match mode {
        ZoneMode::Push => Box::new(rainlogs_archive::logpush::JobsProbe::new(cloudflare)),
        ZoneMode::Pull | ZoneMode::Hybrid => Box::new(
            rainlogs_fetch::LogpullProbe::new(
                rainlogs_fetch::FetchFunction::logpull_config(src),
                cloudflare,
            )
            .enabling_retention(enable_retention),
        ),
    })
}
