//! `rainlogs kms …`: key status, master and tenant rotation, tenant shredding and key
//! export, run directly against Postgres with this process's master keyring. Every
//! operation is audited with actor `cli:<user>`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use rainlogs_core::config::{ConfigSource, DatabaseConfig};
use rainlogs_kms::KmsService;
use uuid::Uuid;

#[derive(Debug, clap::Subcommand)]
pub enum KmsCommand {
    /// Master keyring versions and tenant keys by master version and state.
    Status {
        /// List this tenant's key versions too.
        #[arg(long)]
        tenant: Option<Uuid>,
    },
    /// Re-wrap every tenant key under the active master version (no object is rewritten).
    RotateMaster,
    /// Give a tenant a new key version for new objects; old objects stay readable.
    RotateTenant { tenant: Uuid },
    /// Destroy every key version of a tenant: all its archived logs, in every copy,
    /// become unreadable. Irreversible.
    ShredTenant {
        tenant: Uuid,
        /// Required: confirms the erasure.
        #[arg(long)]
        yes_destroy_all_data: bool,
    },
    /// Approve a destructive operation served from the queue: prints the approval id a
    /// `kms.shred_tenant` task must carry (`{"tenant": …, "approval": …}`); used once.
    Approve {
        /// The operation: `shred-tenant`.
        operation: ApproveOperation,
        tenant: Uuid,
        /// Minutes the approval stays usable.
        #[arg(long, default_value_t = 60)]
        ttl_minutes: i64,
    },
    /// Write a tenant key version to a key file for offline `rainlogs decrypt --key-file`.
    /// The file holds the key in the clear: keep it like the key itself.
    ExportTenantKey {
        tenant: Uuid,
        #[arg(long)]
        version: u32,
        /// Where to write it (created, never overwritten, mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Operations `kms approve` can approve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ApproveOperation {
    ShredTenant,
}

/// The kms as this CLI user: Postgres plus the master keyring from configuration.
pub async fn connect(src: &ConfigSource, what: &str) -> anyhow::Result<KmsService> {
    let db = DatabaseConfig::from_source(src)?;
    let pool = rainlogs_core::db::connect(&db).await?;
    Ok(KmsService::from_config(pool, src, super::cli_actor(what))?)
}

pub async fn run(src: &ConfigSource, cmd: KmsCommand) -> anyhow::Result<ExitCode> {
    let kms = connect(src, "kms").await?;
    match cmd {
        KmsCommand::Status { tenant } => {
            let status = kms.status().await?;
            println!(
                "master keyring: versions {:?}, active {}",
                status.master_versions, status.active_master_version
            );
            for (master, state, count) in &status.tenant_keys {
                println!("tenant keys: master v{master} {state}: {count}");
            }
            if status.unreadable_tenant_keys > 0 {
                println!(
                    "WARNING: {} tenant keys are wrapped under master versions missing from the keyring",
                    status.unreadable_tenant_keys
                );
            }
            if let Some(t) = tenant {
                for row in kms.tenant_keys(Some(t)).await? {
                    println!(
                        "tenant {} key v{}: {} (master v{}, {} encryptions of {} before automatic rotation)",
                        row.tenant_id,
                        row.version,
                        row.state,
                        row.master_version,
                        row.wraps,
                        kms.rotate_after_wraps()
                    );
                }
            }
        }
        KmsCommand::RotateMaster => {
            let r = kms.rotate_master().await?;
            println!(
                "re-wrapped {} tenant keys under master v{}",
                r.rewrapped, r.to_master_version
            );
        }
        KmsCommand::RotateTenant { tenant } => {
            let v = kms.rotate_tenant(tenant).await?;
            println!("tenant {tenant}: key v{v} is now active");
        }
        KmsCommand::Approve {
            operation: ApproveOperation::ShredTenant,
            tenant,
            ttl_minutes,
        } => {
            let id = rainlogs_kms::approval::approve(
                kms.pool(),
                rainlogs_kms::kinds::SHRED_TENANT,
                tenant,
                &super::cli_actor("kms-approve"),
                chrono::TimeDelta::minutes(ttl_minutes.max(1)),
            )
            .await?;
            println!("approval {id}: kms.shred_tenant of tenant {tenant}, usable once within {ttl_minutes} min");
        }
        KmsCommand::ShredTenant {
            tenant,
            yes_destroy_all_data,
        } => {
            if !yes_destroy_all_data {
                bail!("shredding tenant {tenant} destroys all its archived logs for good; pass --yes-destroy-all-data");
            }
            let n = kms.shred_tenant(tenant).await?;
            println!("tenant {tenant}: {n} key versions shredded");
        }
        KmsCommand::ExportTenantKey {
            tenant,
            version,
            out,
        } => {
            let key = kms.export_tenant_key(tenant, version).await?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(&out)
                .with_context(|| format!("create key file {}", out.display()))?;
            file.write_all(key.to_key_file().as_bytes())
                .with_context(|| format!("write key file {}", out.display()))?;
            println!(
                "tenant {tenant} key v{version} written to {}",
                out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
