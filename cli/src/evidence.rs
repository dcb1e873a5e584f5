//! `rainlogs evidence export` and `rainlogs checkpoint`: thin front ends of
//! [`rainlogs_archive::evidence`] (the auditor's bundle) and
//! [`rainlogs_archive::checkpoint`] (chain tips MACed into the bucket). docs/CHAIN.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use rainlogs_archive::evidence::{self, ExportRequest};
use rainlogs_core::config::{ConfigSource, DatabaseConfig, S3Config};
use rainlogs_core::storage::ObjectStore;
use rainlogs_sealed::kms::Kms;

#[derive(Debug, clap::Subcommand)]
pub enum EvidenceCommand {
    /// Write a self-contained evidence bundle of a tenant (or one zone) into DIR:
    /// chain rows, checkpoints, receipts, windows, the bucket listing and the documents
    /// defining them. `docs/tools/chain_check.py DIR` checks it.
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Tenant (name or id).
    #[arg(long)]
    pub tenant: String,
    /// Only this zone (Rainlogs id, Cloudflare zone id or name).
    #[arg(long)]
    pub zone: Option<String>,
    /// Output directory (created; must be new or empty).
    #[arg(long)]
    pub out: PathBuf,
    /// Include the tenant's chain keys, so the auditor can check MACs. Whoever holds
    /// them can also forge this tenant's links: hand the bundle over accordingly.
    #[arg(long)]
    pub include_chain_key: bool,
    /// Copy every archive object of the zones into the bundle too.
    #[arg(long)]
    pub with_objects: bool,
}

#[derive(Debug, clap::Args)]
pub struct CheckpointArgs {
    /// Only this tenant's zones (name or id).
    #[arg(long)]
    pub tenant: Option<String>,
}

fn actor(what: &str) -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}:{what}")
}

async fn kms(src: &ConfigSource, pool: &sqlx::PgPool, what: &str) -> anyhow::Result<Arc<dyn Kms>> {
    if !rainlogs_kms::MasterKeyring::configured(src) {
        anyhow::bail!(
            "{what} needs the master keyring ({} or {}; docs/KMS.md)",
            rainlogs_kms::MasterKeyring::KEYS,
            rainlogs_kms::MasterKeyring::KEYS_FILE
        );
    }
    let keyring = rainlogs_kms::MasterKeyring::from_source(src)?;
    Ok(Arc::new(rainlogs_kms::KmsService::new(
        pool.clone(),
        keyring,
        actor(what),
    )))
}

pub async fn run(src: &ConfigSource, command: EvidenceCommand) -> anyhow::Result<ExitCode> {
    let EvidenceCommand::Export(args) = command;
    let pool = rainlogs_core::db::connect(&DatabaseConfig::from_source(src)?).await?;
    let store = ObjectStore::connect(&S3Config::from_source(src)?).await;
    let kms = if args.include_chain_key {
        Some(kms(src, &pool, "evidence.export").await?)
    } else {
        None
    };
    let req = ExportRequest {
        tenant: args.tenant,
        zone: args.zone,
        out: args.out.clone(),
        include_chain_key: args.include_chain_key,
        with_objects: args.with_objects,
        actor: actor("evidence.export"),
    };
    let m = evidence::export(&pool, &store, kms.as_deref(), &req, Utc::now())
        .await
        .context("evidence export")?;
    for z in &m.zones {
        println!(
            "zone {} {}: {} links, {} windows, {} receipts, {} checkpoints, {} objects",
            z.name, z.zone_id, z.links, z.windows, z.receipts, z.checkpoints, z.objects
        );
    }
    println!(
        "evidence bundle {} written{}; check it with: python3 docs/tools/chain_check.py {}",
        args.out.display(),
        if m.chain_keys_included {
            " (with chain keys)"
        } else {
            ""
        },
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `rainlogs checkpoint`: checkpoint every zone's tip now. Exit 1 when a zone's chain
/// does not verify (it is not checkpointed).
pub async fn checkpoint(src: &ConfigSource, args: CheckpointArgs) -> anyhow::Result<ExitCode> {
    let pool = rainlogs_core::db::connect(&DatabaseConfig::from_source(src)?).await?;
    let store = ObjectStore::connect(&S3Config::from_source(src)?).await;
    let kms = kms(src, &pool, "checkpoint").await?;
    let tenant = match &args.tenant {
        Some(t) => Some(rainlogs_archive::catalog::tenant::resolve(&pool, t).await?),
        None => None,
    };
    let r = rainlogs_archive::checkpoint::checkpoint_all(
        &pool,
        &store,
        kms.as_ref(),
        tenant,
        Utc::now(),
    )
    .await
    .context("checkpoint")?;
    for why in &r.refused {
        eprintln!("refused: {why}");
    }
    println!(
        "checkpoint: {} zones, {} written, {} already checkpointed, {} refused",
        r.zones,
        r.written,
        r.unchanged,
        r.refused.len()
    );
    Ok(if r.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
