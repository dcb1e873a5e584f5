//! `rainlogs tenant add|list`: the customers whose zones are archived. The functions
//! here work on a pool so tests drive the same code as the CLI.

use std::process::ExitCode;

use rainlogs_shared::config::{ConfigSource, DatabaseConfig};
use rainlogs_shared::db::DbError;
use rainlogs_shared::error::{Classify, ErrorClass};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, clap::Subcommand)]
pub enum TenantCommand {
    /// Add a tenant.
    Add {
        name: String,
        /// How long its archives are kept (days).
        #[arg(long, default_value_t = 395)]
        retention_days: i32,
    },
    /// List tenants with their zone counts.
    List,
}

/// Why a tenant operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("tenant name must be 1-200 characters")]
    InvalidName,
    #[error("retention must be at least one day, got {0}")]
    InvalidRetention(i32),
    #[error("tenant {0:?} already exists")]
    Exists(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Classify for TenantError {
    fn class(&self) -> ErrorClass {
        match self {
            TenantError::Db(e) => e.class(),
            _ => ErrorClass::Permanent,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            TenantError::InvalidName => "tenant.invalid_name",
            TenantError::InvalidRetention(_) => "tenant.invalid_retention",
            TenantError::Exists(_) => "tenant.exists",
            TenantError::Db(e) => e.code(),
        }
    }
}

/// One row of `tenant list`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantRow {
    pub id: Uuid,
    pub name: String,
    pub retention_days: i32,
    pub legal_hold: bool,
    pub zones: i64,
}

/// Adds tenant `name`; returns its id.
pub async fn add(pool: &PgPool, name: &str, retention_days: i32) -> Result<Uuid, TenantError> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(TenantError::InvalidName);
    }
    if retention_days < 1 {
        return Err(TenantError::InvalidRetention(retention_days));
    }
    let id = Uuid::new_v4();
    let inserted = sqlx::query(
        "INSERT INTO tenants (id, name, retention_days) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(id)
    .bind(name)
    .bind(retention_days)
    .execute(pool)
    .await
    .map_err(|e| DbError::query("insert tenant", e))?;
    if inserted.rows_affected() == 0 {
        return Err(TenantError::Exists(name.to_owned()));
    }
    Ok(id)
}

/// Every tenant, by name.
pub async fn list(pool: &PgPool) -> Result<Vec<TenantRow>, TenantError> {
    Ok(sqlx::query_as(
        "SELECT t.id, t.name, t.retention_days, t.legal_hold,
                (SELECT count(*) FROM zones z WHERE z.tenant_id = t.id) AS zones
         FROM tenants t ORDER BY t.name",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("list tenants", e))?)
}

pub(crate) async fn run(src: &ConfigSource, cmd: TenantCommand) -> anyhow::Result<ExitCode> {
    let pool = rainlogs_shared::db::connect(&DatabaseConfig::from_source(src)?).await?;
    match cmd {
        TenantCommand::Add {
            name,
            retention_days,
        } => {
            let id = add(&pool, &name, retention_days).await?;
            println!("tenant {name} added: {id}");
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
