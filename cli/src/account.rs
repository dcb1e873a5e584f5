//! `rainlogs user add|list|disable` and `rainlogs key create|list|revoke`: the HTTP
//! API's accounts, from the server's shell — how the first admin and its key come to
//! be (docs/API.md). Parses, calls `rainlogs_archive::catalog::account`, prints. A
//! key's secret is printed once, on stdout, by `key create`.

use std::process::ExitCode;

use chrono::{TimeDelta, Utc};
use rainlogs_archive::catalog::account::{self, Role};
use rainlogs_core::config::{ConfigSource, DatabaseConfig};
use secrecy::ExposeSecret;

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Add an API user to a tenant, or a provider-wide one (every tenant) with --provider.
    Add {
        /// The user's name (unique in its tenant).
        name: String,
        /// Its tenant (name or id).
        #[arg(
            long,
            required_unless_present = "provider",
            conflicts_with = "provider"
        )]
        tenant: Option<String>,
        /// A provider-wide user: its role applies to every tenant.
        #[arg(long)]
        provider: bool,
        /// admin, operator, auditor or viewer.
        #[arg(long)]
        role: Role,
    },
    /// List users (of one tenant with --tenant).
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Disable a user: its keys stop working at once.
    Disable {
        /// The user's id, or a name only one user has.
        user: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Create an API key for a user; the key is printed once, on stdout.
    Create {
        /// The user's id, or a name only one user has.
        #[arg(long)]
        user: String,
        /// What the key is for.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Days until it stops working (default: never).
        #[arg(long)]
        expires_in_days: Option<i64>,
    },
    /// List keys (never their secrets), of one user with --user.
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a key: it stops working at once.
    Revoke {
        /// The key's id.
        key: uuid::Uuid,
    },
}

async fn pool(src: &ConfigSource) -> anyhow::Result<sqlx::PgPool> {
    Ok(rainlogs_core::db::connect(&DatabaseConfig::from_source(src)?).await?)
}

pub(crate) async fn user(src: &ConfigSource, cmd: UserCommand) -> anyhow::Result<ExitCode> {
    let pool = pool(src).await?;
    let actor = super::cli_actor("user");
    match cmd {
        UserCommand::Add {
            name,
            tenant,
            provider: _,
            role,
        } => {
            let id = account::add_user(&pool, tenant.as_deref(), &name, role, &actor).await?;
            let scope = tenant.as_deref().unwrap_or("every tenant (provider-wide)");
            println!("user {name} added: {id}, role {role}, {scope}");
            println!("  create its key: rainlogs key create --user {id}");
        }
        UserCommand::List { tenant } => {
            let tenant = match tenant {
                Some(t) => Some(rainlogs_archive::catalog::tenant::resolve(&pool, &t).await?),
                None => None,
            };
            println!("{:<36}  {:<8}  {:<20}  name", "id", "role", "tenant");
            for u in account::list_users(&pool, tenant).await? {
                println!(
                    "{:<36}  {:<8}  {:<20}  {}{}",
                    u.id,
                    u.role,
                    u.tenant.as_deref().unwrap_or("(provider)"),
                    u.name,
                    if u.disabled_at.is_some() {
                        "  DISABLED"
                    } else {
                        ""
                    }
                );
            }
        }
        UserCommand::Disable { user } => {
            let id = account::resolve_user(&pool, &user).await?;
            let changed = account::disable_user(&pool, id, &actor).await?;
            println!(
                "user {id} {}",
                if changed {
                    "disabled"
                } else {
                    "was already disabled"
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn key(src: &ConfigSource, cmd: KeyCommand) -> anyhow::Result<ExitCode> {
    let pool = pool(src).await?;
    let actor = super::cli_actor("key");
    match cmd {
        KeyCommand::Create {
            user,
            name,
            expires_in_days,
        } => {
            let env = src
                .get("RAINLOGS_API_KEY_ENV")
                .unwrap_or(account::DEFAULT_KEY_ENV)
                .to_owned();
            let user = account::resolve_user(&pool, &user).await?;
            let now = Utc::now();
            let expires = expires_in_days.map(|d| now + TimeDelta::days(d));
            let new = account::create_key(&pool, user, &name, &env, expires, now, &actor).await?;
            eprintln!(
                "key {} ({}) created for user {user}; it is shown once, here:",
                new.key.id, new.key.prefix
            );
            println!("{}", new.secret.expose_secret());
        }
        KeyCommand::List { user } => {
            let user = match user {
                Some(u) => Some(account::resolve_user(&pool, &u).await?),
                None => None,
            };
            let fmt = "%Y-%m-%dT%H:%M:%SZ";
            let at = |t: Option<chrono::DateTime<Utc>>| {
                t.map(|t| t.format(fmt).to_string())
                    .unwrap_or_else(|| "-".into())
            };
            println!(
                "{:<36}  {:<20}  {:<36}  {:<20}  {:<20}  state",
                "id", "prefix", "user", "expires", "last used"
            );
            for k in account::list_keys(&pool, user, None).await? {
                let state = match (k.revoked_at, k.expires_at) {
                    (Some(_), _) => "revoked",
                    (None, Some(e)) if e <= Utc::now() => "expired",
                    _ => "live",
                };
                println!(
                    "{:<36}  {:<20}  {:<36}  {:<20}  {:<20}  {state}  {}",
                    k.id,
                    k.prefix,
                    k.user_id,
                    at(k.expires_at),
                    at(k.last_used_at),
                    k.name
                );
            }
        }
        KeyCommand::Revoke { key } => {
            let changed = account::revoke_key(&pool, key, &actor).await?;
            println!(
                "key {key} {}",
                if changed {
                    "revoked"
                } else {
                    "was already revoked"
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
