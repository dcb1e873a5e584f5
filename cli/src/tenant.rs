//! `rainlogs tenant add|list|set`: parses, calls `rainlogs_archive::catalog::tenant`,
//! prints.

use std::process::ExitCode;

use rainlogs_archive::catalog::tenant::{
    check_short_retention, create, list, set, RetentionChange,
};
use rainlogs_core::config::{ConfigSource, DatabaseConfig};

#[derive(Debug, clap::Subcommand)]
pub enum TenantCommand {
    /// Add a tenant.
    Add {
        name: String,
        /// How long its archives are kept (days).
        #[arg(long, default_value_t = 395)]
        retention_days: i32,
        /// Accept a retention below the legal minimum (395 days; docs/RETENTION.md).
        #[arg(long)]
        confirm_short_retention: bool,
    },
    /// List tenants with their zone counts.
    List,
    /// Change a tenant's retention or legal hold (each change writes an audit row).
    Set {
        /// Tenant name or id.
        tenant: String,
        /// Keep archives this many days after their window ends (1-36500).
        #[arg(long)]
        retention_days: Option<i32>,
        /// A legal hold blocks every deletion of the tenant's archives.
        #[arg(long)]
        legal_hold: Option<OnOff>,
        /// Accept a retention below the legal minimum (395 days; docs/RETENTION.md).
        #[arg(long, requires = "retention_days")]
        confirm_short_retention: bool,
    },
}

/// `on` / `off` for switches on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    pub fn is_on(self) -> bool {
        self == OnOff::On
    }
}

pub(crate) async fn run(src: &ConfigSource, cmd: TenantCommand) -> anyhow::Result<ExitCode> {
    let pool = rainlogs_core::db::connect(&DatabaseConfig::from_source(src)?).await?;
    match cmd {
        TenantCommand::Add {
            name,
            retention_days,
            confirm_short_retention,
        } => {
            check_short_retention(retention_days, confirm_short_retention)?;
            let id = create(&pool, &name, retention_days, &super::cli_actor("tenant")).await?;
            println!("tenant {name} added: {id}");
        }
        TenantCommand::Set {
            tenant,
            retention_days,
            legal_hold,
            confirm_short_retention,
        } => {
            let change = RetentionChange {
                retention_days,
                legal_hold: legal_hold.map(OnOff::is_on),
                confirm_short_retention,
            };
            let applied = set(&pool, &tenant, change, &super::cli_actor("tenant")).await?;
            let (id, days, hold) = (applied.id, applied.retention_days, applied.legal_hold);
            println!(
                "tenant {tenant} ({id}): retention {days} days, legal hold {}",
                if hold { "on" } else { "off" }
            );
        }
        TenantCommand::List => {
            println!(
                "{:<36}  {:>9}  {:>5}  {:>4}  name",
                "id", "retention", "hold", "zones"
            );
            for t in list(&pool).await? {
                println!(
                    "{:<36}  {:>8}d  {:>5}  {:>5}  {}",
                    t.id, t.retention_days, t.legal_hold, t.zones, t.name
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
