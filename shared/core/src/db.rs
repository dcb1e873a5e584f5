//! PostgreSQL access: the pool, the embedded migrations and error classification.
//!
//! Postgres is the source of truth (the window ledger, the chain, keys, audit), so
//! every binary that touches it connects through here. Migrations live in the
//! repository's `migrations/` folder and are embedded at compile time; the policy is
//! forward-only (docs/MIGRATIONS.md): a released migration is never edited, a change
//! is a new migration.

use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;

use crate::config::{redact_url, DatabaseConfig};
use crate::error::{Classify, ErrorClass, TaskError};

/// The schema migrations, embedded in every binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// A database failure, naming the operation.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("postgres: cannot connect to {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("postgres: migration failed: {0}")]
    Migrate(String),
    #[error("postgres: {op}: {reason}")]
    Query {
        op: &'static str,
        reason: String,
        retryable: bool,
    },
}

impl Classify for DbError {
    fn class(&self) -> ErrorClass {
        match self {
            DbError::Unreachable { .. } => ErrorClass::Retryable,
            DbError::Query {
                retryable: true, ..
            } => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            DbError::Unreachable { .. } => "postgres.unreachable",
            DbError::Migrate(_) => "postgres.migrate",
            DbError::Query { .. } => "postgres.query",
        }
    }
}

impl From<DbError> for TaskError {
    fn from(e: DbError) -> Self {
        TaskError::classified(&e)
    }
}

impl DbError {
    /// Classifies a query error: connection trouble and serialisation conflicts are
    /// worth retrying, constraint violations and bad SQL are not.
    pub fn query(op: &'static str, err: sqlx::Error) -> Self {
        let retryable = match &err {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => matches!(
                db.code().as_deref(),
                // serialization_failure, deadlock_detected, admin_shutdown, cannot_connect_now
                Some("40001" | "40P01" | "57P01" | "57P03")
            ),
            _ => false,
        };
        DbError::Query {
            op,
            reason: err.to_string(),
            retryable,
        }
    }
}

/// Opens a pool and proves the server answers (one round trip).
pub async fn connect(cfg: &DatabaseConfig) -> Result<PgPool, DbError> {
    let url = cfg.url.expose_secret();
    let unreachable = |reason: String| DbError::Unreachable {
        url: redact_url(url),
        reason,
    };
    let options = PgConnectOptions::from_str(url).map_err(|e| unreachable(e.to_string()))?;
    PgPoolOptions::new()
        .max_connections(cfg.max_connections)
        .acquire_timeout(cfg.connect_timeout)
        .connect_with(options)
        .await
        .map_err(|e| unreachable(e.to_string()))
}

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| DbError::Migrate(e.to_string()))
}
