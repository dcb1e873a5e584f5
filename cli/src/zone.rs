//! `rainlogs zone add|list|pause|resume|set|coverage`: parses, calls
//! `rainlogs_archive::catalog::zone`, prints. The API token is read from an environment
//! variable named on the command line (never from argv, which other users can read in
//! `ps`).

use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use rainlogs_archive::catalog::zone::{
    add, coverage, list, set_paused, set_retention, NewZone, ZoneRetentionChange,
};
use rainlogs_archive::endpoint::ZoneEndpoint;
use rainlogs_core::config::{ConfigSource, DatabaseConfig};
use secrecy::SecretString;

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
    },
    /// List zones with their tenant and state.
    List,
    /// Stop planning and enqueuing the zone's windows.
    Pause { zone: String },
    /// Resume a paused zone.
    Resume { zone: String },
    /// Change a zone's retention override or legal hold (each change writes an audit row).
    Set {
        zone: String,
        /// Keep this zone's archives this many days (overrides the tenant's; 1-36500).
        #[arg(long, conflicts_with = "inherit_retention")]
        retention_days: Option<i32>,
        /// Drop the override: the tenant's retention applies again.
        #[arg(long)]
        inherit_retention: bool,
        /// A legal hold blocks every deletion of the zone's archives.
        #[arg(long)]
        legal_hold: Option<crate::tenant::OnOff>,
    },
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
        } => {
            let token = std::env::var(&token_env)
                .map(SecretString::from)
                .with_context(|| {
                    format!("--token-env: environment variable {token_env} is not set")
                })?;
            let keyring = rainlogs_kms::MasterKeyring::from_source(src)?;
            let kms =
                rainlogs_kms::KmsService::new(pool.clone(), keyring, super::cli_actor("zone"));
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
            };
            let id = add(&pool, &kms, &zone, &token, Utc::now()).await?;
            println!("zone {name} ({zone_id}) added to {tenant}: {id}");
        }
        ZoneCommand::List => {
            for z in list(&pool).await? {
                let source = match (&z.simulator_url, z.demo) {
                    (Some(url), true) => format!("  demo simulator {url}"),
                    (Some(url), false) => format!("  simulator {url}"),
                    (None, _) => String::new(),
                };
                println!(
                    "{}  {}  {:<20} {:<30} {:>5}s  {}{}{}{}",
                    z.id,
                    z.cf_zone_id,
                    z.tenant,
                    z.name,
                    z.cadence_seconds,
                    if z.paused { "paused" } else { "active" },
                    source,
                    if z.has_token { "" } else { "  (no token)" },
                    z.last_error
                        .map(|e| format!("  last error: {e}"))
                        .unwrap_or_default(),
                );
            }
        }
        ZoneCommand::Pause { zone } => {
            let id = set_paused(&pool, &zone, true).await?;
            println!("zone {id} paused");
        }
        ZoneCommand::Resume { zone } => {
            let id = set_paused(&pool, &zone, false).await?;
            println!("zone {id} resumed");
        }
        ZoneCommand::Set {
            zone,
            retention_days,
            inherit_retention,
            legal_hold,
        } => {
            let change = ZoneRetentionChange {
                retention_days: if inherit_retention {
                    Some(None)
                } else {
                    retention_days.map(Some)
                },
                legal_hold: legal_hold.map(crate::tenant::OnOff::is_on),
            };
            let actor = super::cli_actor("zone");
            let applied = set_retention(&pool, &zone, change, &actor).await?;
            let (id, days, hold) = (applied.id, applied.retention_days, applied.legal_hold);
            println!(
                "zone {id}: retention {}, legal hold {}",
                days.map(|d| format!("{d} days"))
                    .unwrap_or_else(|| "as the tenant's".into()),
                if hold { "on" } else { "off" }
            );
        }
        ZoneCommand::Coverage { zone, from, to } => {
            let c = coverage(&pool, &zone, from, to, Utc::now()).await?;
            let fmt = "%Y-%m-%dT%H:%M:%SZ";
            println!("coverage {} .. {}", c.from.format(fmt), c.to.format(fmt));
            for (state, n) in &c.states {
                println!("  {state:<17} {n} windows");
            }
            for (kind, start, end) in &c.spans {
                println!(
                    "  {:<9} {} .. {}  ({} min)",
                    kind.to_string(),
                    start.format(fmt),
                    end.format(fmt),
                    (*end - *start).num_minutes()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
