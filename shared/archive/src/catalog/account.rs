//! Accounts of the HTTP API: users (of one tenant, or provider-wide), their role, and
//! their API keys — how a key looks, how it is stored, and how a presented key becomes
//! a [`Principal`] (docs/API.md "Accounts and keys"). The `rainlogs user|key` commands
//! and the API's own user and key endpoints call these functions; every change writes
//! an audit row in the same transaction.
//!
//! A key is `rl_<env>_<27 base62 random><6 base62 CRC-32>`: 160 random bits, and a
//! checksum over everything before it so a secret scanner (and [`parse_key`]) tells a
//! Rainlogs key from noise without asking anyone. Only the key's SHA-256 is stored,
//! with its prefix (`rl_<env>_` and 8 random characters) in an index: a malformed key
//! is refused without touching Postgres, an unknown one costs one index lookup, a
//! known one one constant-time comparison. A key has 160 random bits, so a fast hash is
//! enough (no password-style slow hash that would make every request — or an attacker's
//! flood of guesses — expensive).

use chrono::{DateTime, TimeDelta, Utc};
use rainlogs_core::db::DbError;
use rainlogs_core::error::{Classify, ErrorClass};
use rand::RngCore;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::audit::{self, AuditEvent};
use crate::catalog::tenant;

/// What a user may do. Every role reads its tenant's metadata; the tenant boundary
/// holds for all of them (a provider-wide user is the only one that spans tenants).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type, serde::Serialize, serde::Deserialize,
)]
#[sqlx(type_name = "api_role", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including tenants' retention and legal hold, users and keys.
    Admin,
    /// Zones: add, pause, resume, mode, retry failed windows; verify.
    Operator,
    /// Read, verify and the audit log.
    Auditor,
    /// Read metadata only.
    Viewer,
}

/// What a request needs its caller's role to grant ([`Role::grants`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Tenants, zones, windows, coverage: metadata, never log content.
    ReadMetadata,
    /// The audit log.
    ReadAudit,
    /// Run a verification and read its findings.
    Verify,
    /// Add zones, pause and resume them, change their mode, retry failed windows.
    ManageZones,
    /// Retention and legal hold of tenants and zones; creating tenants (provider-wide
    /// only).
    ManageTenants,
    /// Users and API keys.
    ManageUsers,
    /// Queue and pipeline health (provider-wide only: queues are shared).
    ReadHealth,
    /// Act on the task queues: pause, resume, run, delete, cancel, re-drive (the
    /// monitor; provider-wide only: queues are shared).
    ManageQueues,
    /// Read log content: restore a zone's records (audited).
    ReadLogs,
    /// Take the archive away: download sealed objects and export tenant keys for
    /// offline decryption (audited).
    ExportArchive,
    /// Data-subject access requests: search a tenant's records for a person, and read
    /// the record of requests (audited).
    DataSubjectAccess,
    /// Erase a tenant (crypto-shredding and deletion; two steps, audited).
    Erase,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Auditor, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Viewer => "viewer",
        }
    }

    /// Whether this role may do what `permission` names (the one table of the policy).
    pub fn grants(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Operator => {
                matches!(
                    permission,
                    ReadMetadata | Verify | ManageZones | ReadHealth | ManageQueues | ReadLogs
                )
            }
            Role::Auditor => matches!(
                permission,
                ReadMetadata | ReadAudit | Verify | ReadLogs | ExportArchive | DataSubjectAccess
            ),
            Role::Viewer => matches!(permission, ReadMetadata),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = AccountError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| AccountError::InvalidRole(s.to_owned()))
    }
}

/// Why an account operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("user name must be 1-200 characters")]
    InvalidName,
    #[error("key name must be 1-200 characters")]
    InvalidKeyName,
    #[error("role {0:?} is not one of admin, operator, auditor, viewer")]
    InvalidRole(String),
    #[error("key environment {0:?} must be 1-16 lowercase letters or digits")]
    InvalidEnv(String),
    #[error("expiry must be in the future and at most 3650 days away")]
    InvalidExpiry,
    #[error("user {0:?} already exists")]
    UserExists(String),
    #[error("no user {0:?} (give its id, or a name only one user has)")]
    UnknownUser(String),
    #[error("user name {0:?} is used in several tenants; give the user's id")]
    AmbiguousUser(String),
    #[error("user {0} is disabled")]
    UserDisabled(Uuid),
    #[error("no API key {0}")]
    UnknownKey(Uuid),
    #[error(transparent)]
    Tenant(#[from] tenant::TenantError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Classify for AccountError {
    fn class(&self) -> ErrorClass {
        match self {
            AccountError::Db(e) => e.class(),
            AccountError::Tenant(e) => e.class(),
            _ => ErrorClass::Permanent,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AccountError::InvalidName => "user.invalid_name",
            AccountError::InvalidKeyName => "key.invalid_name",
            AccountError::InvalidRole(_) => "user.invalid_role",
            AccountError::InvalidEnv(_) => "key.invalid_env",
            AccountError::InvalidExpiry => "key.invalid_expiry",
            AccountError::UserExists(_) => "user.exists",
            AccountError::UnknownUser(_) => "user.unknown",
            AccountError::AmbiguousUser(_) => "user.ambiguous",
            AccountError::UserDisabled(_) => "user.disabled",
            AccountError::UnknownKey(_) => "key.unknown",
            AccountError::Tenant(e) => e.code(),
            AccountError::Db(e) => e.code(),
        }
    }
}

/// Why a presented key does not authenticate. The secret is never part of it.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no API key presented (Authorization: Bearer rl_…)")]
    Missing,
    #[error("not a Rainlogs API key (wrong shape or checksum)")]
    Malformed,
    #[error("unknown API key")]
    Unknown,
    #[error("API key {0} has expired")]
    Expired(Uuid),
    #[error("API key {0} has been revoked")]
    Revoked(Uuid),
    #[error("the user of API key {0} is disabled")]
    UserDisabled(Uuid),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Classify for AuthError {
    fn class(&self) -> ErrorClass {
        match self {
            AuthError::Db(e) => e.class(),
            _ => ErrorClass::Permanent,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "auth.missing",
            AuthError::Malformed => "auth.malformed",
            AuthError::Unknown => "auth.unknown_key",
            AuthError::Expired(_) => "auth.key_expired",
            AuthError::Revoked(_) => "auth.key_revoked",
            AuthError::UserDisabled(_) => "auth.user_disabled",
            AuthError::Db(e) => e.code(),
        }
    }
}

/// The key environment used when none is configured (`RAINLOGS_API_KEY_ENV`).
pub const DEFAULT_KEY_ENV: &str = "live";
/// Base62 characters of a key's random part (160 bits).
const RANDOM_CHARS: usize = 27;
/// Base62 characters of a key's checksum (CRC-32).
const CHECKSUM_CHARS: usize = 6;
/// Random characters kept in the indexed prefix.
const PREFIX_RANDOM_CHARS: usize = 8;
/// The longest expiry [`create_key`] accepts.
pub const MAX_KEY_LIFETIME: TimeDelta = TimeDelta::days(3650);
/// How stale `last_used_at` may get before a request writes it again.
const LAST_USED_GRANULARITY: TimeDelta = TimeDelta::minutes(1);

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `bytes` as a big-endian number in base62, left-padded with '0' to `width`.
fn base62(bytes: &[u8], width: usize) -> String {
    let mut digits = Vec::with_capacity(width);
    let mut n: Vec<u8> = bytes.to_vec();
    while n.iter().any(|&b| b != 0) {
        // One long division of n by 62.
        let mut rem = 0u32;
        for b in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 62) as u8;
            rem = cur % 62;
        }
        digits.push(BASE62[rem as usize]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).expect("base62 is ASCII")
}

/// Whether `env` may name a key environment (`live`, `test`, `dev`, …).
pub fn valid_env(env: &str) -> bool {
    (1..=16).contains(&env.len())
        && env
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn checksum(head: &str) -> String {
    base62(
        &crc32fast::hash(head.as_bytes()).to_be_bytes(),
        CHECKSUM_CHARS,
    )
}

/// A well-formed key's parts ([`parse_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyShape<'a> {
    pub env: &'a str,
    /// `rl_<env>_` and the first random characters: what the index finds.
    pub prefix: &'a str,
}

/// Checks a presented key's shape and checksum without any I/O.
pub fn parse_key(key: &str) -> Option<KeyShape<'_>> {
    let rest = key.strip_prefix("rl_")?;
    let (env, body) = rest.split_once('_')?;
    if !valid_env(env) || body.len() != RANDOM_CHARS + CHECKSUM_CHARS {
        return None;
    }
    if !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let head_len = key.len() - CHECKSUM_CHARS;
    let (head, sum) = key.split_at(head_len);
    if checksum(head).as_bytes().ct_eq(sum.as_bytes()).unwrap_u8() != 1 {
        return None;
    }
    let prefix_len = 3 + env.len() + 1 + PREFIX_RANDOM_CHARS;
    Some(KeyShape {
        env,
        prefix: &key[..prefix_len],
    })
}

/// A fresh key for environment `env`: the secret (show it once), its prefix, its hash.
pub fn generate_key(env: &str) -> Result<(SecretString, String, [u8; 32]), AccountError> {
    if !valid_env(env) {
        return Err(AccountError::InvalidEnv(env.to_owned()));
    }
    let mut random = zeroize::Zeroizing::new([0u8; 20]);
    rand::rngs::OsRng.fill_bytes(random.as_mut());
    let head = zeroize::Zeroizing::new(format!(
        "rl_{env}_{}",
        base62(random.as_ref(), RANDOM_CHARS)
    ));
    let key = format!("{}{}", head.as_str(), checksum(&head));
    let prefix = key[..3 + env.len() + 1 + PREFIX_RANDOM_CHARS].to_owned();
    let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    Ok((SecretString::from(key), prefix, hash))
}

/// Who is calling: an authenticated key's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: Uuid,
    pub user_name: String,
    /// `None`: a provider-wide user (every tenant).
    pub tenant_id: Option<Uuid>,
    pub tenant_name: Option<String>,
    pub role: Role,
    pub key_id: Uuid,
}

impl Principal {
    /// The audit actor: `api:<user>@<tenant or "provider">:<role>`.
    pub fn actor(&self) -> String {
        format!(
            "api:{}@{}:{}",
            self.user_name,
            self.tenant_name.as_deref().unwrap_or("provider"),
            self.role
        )
    }

    /// Whether this caller may see resources of `tenant` (its own, or any when
    /// provider-wide).
    pub fn sees(&self, tenant: Uuid) -> bool {
        self.tenant_id.is_none_or(|own| own == tenant)
    }
}

/// Authenticates a presented key: shape and checksum first (no I/O), then the indexed
/// prefix, a constant-time comparison of SHA-256 hashes, and the key's and user's
/// state. Touches `last_used_at` at most once a minute.
pub async fn authenticate(
    pool: &PgPool,
    presented: &str,
    now: DateTime<Utc>,
) -> Result<Principal, AuthError> {
    let shape = parse_key(presented).ok_or(AuthError::Malformed)?;
    let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let rows = sqlx::query!(
        r#"SELECT k.id, k.secret_sha256, k.expires_at, k.revoked_at, k.last_used_at,
                  u.id AS user_id, u.name AS user_name, u.tenant_id, u.role AS "role: Role",
                  u.disabled_at, t.name AS "tenant_name?"
           FROM api_keys k JOIN api_users u ON u.id = k.user_id
           LEFT JOIN tenants t ON t.id = u.tenant_id
           WHERE k.prefix = $1"#,
        shape.prefix
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("find api key", e))?;
    // Every candidate is compared, so the time taken does not say which matched.
    let mut found = None;
    for row in rows {
        if row.secret_sha256.ct_eq(&hash[..]).unwrap_u8() == 1 {
            found = Some(row);
        }
    }
    let row = found.ok_or(AuthError::Unknown)?;
    if row.revoked_at.is_some() {
        return Err(AuthError::Revoked(row.id));
    }
    if row.expires_at.is_some_and(|at| at <= now) {
        return Err(AuthError::Expired(row.id));
    }
    if row.disabled_at.is_some() {
        return Err(AuthError::UserDisabled(row.id));
    }
    if row
        .last_used_at
        .is_none_or(|at| now - at >= LAST_USED_GRANULARITY)
    {
        sqlx::query!(
            "UPDATE api_keys SET last_used_at = $2 WHERE id = $1",
            row.id,
            now
        )
        .execute(pool)
        .await
        .map_err(|e| DbError::query("touch api key", e))?;
    }
    Ok(Principal {
        user_id: row.user_id,
        user_name: row.user_name,
        tenant_id: row.tenant_id,
        tenant_name: row.tenant_name,
        role: row.role,
        key_id: row.id,
    })
}

/// One user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserRow {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub tenant: Option<String>,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub disabled_at: Option<DateTime<Utc>>,
}

/// Adds a user with `role` to `tenant` (name or id), or provider-wide when `None`;
/// returns its id. Audited as `user.add`.
pub async fn add_user(
    pool: &PgPool,
    tenant: Option<&str>,
    name: &str,
    role: Role,
    actor: &str,
) -> Result<Uuid, AccountError> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(AccountError::InvalidName);
    }
    let tenant_id = match tenant {
        Some(t) => Some(tenant::resolve(pool, t).await?),
        None => None,
    };
    let id = Uuid::new_v4();
    let op = |what| move |e| DbError::query(what, e);
    let mut tx = pool.begin().await.map_err(op("begin user add"))?;
    let inserted = sqlx::query!(
        "INSERT INTO api_users (id, tenant_id, name, role, created_by)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        id,
        tenant_id,
        name,
        role as Role,
        actor
    )
    .execute(&mut *tx)
    .await
    .map_err(op("insert user"))?;
    if inserted.rows_affected() == 0 {
        return Err(AccountError::UserExists(name.to_owned()));
    }
    let event = AuditEvent {
        tenant: tenant_id,
        detail: serde_json::json!({
            "user": id, "name": name, "role": role,
            "scope": if tenant_id.is_some() { "tenant" } else { "provider" },
        }),
        ..AuditEvent::new(actor, "user.add", "ok")
    };
    audit::record(&mut *tx, &event)
        .await
        .map_err(op("write user audit row"))?;
    tx.commit().await.map_err(op("commit user add"))?;
    Ok(id)
}

/// Users of `tenant` (`Some`), or every user (`None`), by tenant and name.
pub async fn list_users(pool: &PgPool, tenant: Option<Uuid>) -> Result<Vec<UserRow>, AccountError> {
    Ok(sqlx::query_as!(
        UserRow,
        r#"SELECT u.id, u.tenant_id, t.name AS "tenant?", u.name, u.role AS "role: Role",
                  u.created_at, u.created_by, u.disabled_at
           FROM api_users u LEFT JOIN tenants t ON t.id = u.tenant_id
           WHERE $1::uuid IS NULL OR u.tenant_id = $1
           ORDER BY t.name NULLS FIRST, u.name"#,
        tenant
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("list users", e))?)
}

/// One user by id.
pub async fn get_user(pool: &PgPool, id: Uuid) -> Result<UserRow, AccountError> {
    sqlx::query_as!(
        UserRow,
        r#"SELECT u.id, u.tenant_id, t.name AS "tenant?", u.name, u.role AS "role: Role",
                  u.created_at, u.created_by, u.disabled_at
           FROM api_users u LEFT JOIN tenants t ON t.id = u.tenant_id
           WHERE u.id = $1"#,
        id
    )
    .fetch_optional(pool)
    .await
    .map_err(|e| DbError::query("read user", e))?
    .ok_or_else(|| AccountError::UnknownUser(id.to_string()))
}

/// The id of a user given by id, or by a name only one user has.
pub async fn resolve_user(pool: &PgPool, user: &str) -> Result<Uuid, AccountError> {
    if let Ok(id) = Uuid::parse_str(user) {
        return Ok(get_user(pool, id).await?.id);
    }
    let found: Vec<Uuid> =
        sqlx::query_scalar!("SELECT id FROM api_users WHERE name = $1 LIMIT 2", user)
            .fetch_all(pool)
            .await
            .map_err(|e| DbError::query("find user", e))?;
    match found[..] {
        [id] => Ok(id),
        [] => Err(AccountError::UnknownUser(user.to_owned())),
        _ => Err(AccountError::AmbiguousUser(user.to_owned())),
    }
}

/// Disables a user: its keys stop working at the next request. Returns whether it was
/// enabled before (disabling twice changes nothing). Audited as `user.disable`.
pub async fn disable_user(pool: &PgPool, id: Uuid, actor: &str) -> Result<bool, AccountError> {
    let op = |what| move |e| DbError::query(what, e);
    let mut tx = pool.begin().await.map_err(op("begin user disable"))?;
    let row = sqlx::query!(
        "SELECT tenant_id, disabled_at FROM api_users WHERE id = $1 FOR UPDATE",
        id
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(op("lock user"))?
    .ok_or_else(|| AccountError::UnknownUser(id.to_string()))?;
    let was_enabled = row.disabled_at.is_none();
    if was_enabled {
        sqlx::query!("UPDATE api_users SET disabled_at = now() WHERE id = $1", id)
            .execute(&mut *tx)
            .await
            .map_err(op("disable user"))?;
    }
    let event = AuditEvent {
        tenant: row.tenant_id,
        detail: serde_json::json!({
            "user": id,
            "disabled": {"from": !was_enabled, "to": true},
        }),
        ..AuditEvent::new(actor, "user.disable", "ok")
    };
    audit::record(&mut *tx, &event)
        .await
        .map_err(op("write user audit row"))?;
    tx.commit().await.map_err(op("commit user disable"))?;
    Ok(was_enabled)
}

/// One API key, never its secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyRow {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The key's user's tenant (`None`: provider-wide).
    pub tenant_id: Option<Uuid>,
    pub name: String,
    /// `rl_<env>_` and the first random characters: enough to recognise a key.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A key just created: the secret is here once and nowhere else.
#[derive(Debug)]
pub struct NewKey {
    pub key: KeyRow,
    pub secret: SecretString,
}

/// Creates an API key for user `user_id` in environment `env`, expiring at
/// `expires_at` (`None`: never). Audited as `key.create` (never the secret).
pub async fn create_key(
    pool: &PgPool,
    user_id: Uuid,
    name: &str,
    env: &str,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<NewKey, AccountError> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(AccountError::InvalidKeyName);
    }
    if expires_at.is_some_and(|at| at <= now || at - now > MAX_KEY_LIFETIME) {
        return Err(AccountError::InvalidExpiry);
    }
    let (secret, prefix, hash) = generate_key(env)?;
    let op = |what| move |e| DbError::query(what, e);
    let mut tx = pool.begin().await.map_err(op("begin key create"))?;
    let user = sqlx::query!(
        "SELECT tenant_id, disabled_at FROM api_users WHERE id = $1 FOR SHARE",
        user_id
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(op("lock user"))?
    .ok_or_else(|| AccountError::UnknownUser(user_id.to_string()))?;
    if user.disabled_at.is_some() {
        return Err(AccountError::UserDisabled(user_id));
    }
    let id = Uuid::new_v4();
    let created_at = sqlx::query_scalar!(
        "INSERT INTO api_keys (id, user_id, name, prefix, secret_sha256, created_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING created_at",
        id,
        user_id,
        name,
        prefix,
        &hash[..],
        actor,
        expires_at
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(op("insert api key"))?;
    let event = AuditEvent {
        tenant: user.tenant_id,
        detail: serde_json::json!({
            "key": id, "user": user_id, "name": name, "prefix": prefix,
            "expires_at": expires_at,
        }),
        ..AuditEvent::new(actor, "key.create", "ok")
    };
    audit::record(&mut *tx, &event)
        .await
        .map_err(op("write key audit row"))?;
    tx.commit().await.map_err(op("commit key create"))?;
    Ok(NewKey {
        key: KeyRow {
            id,
            user_id,
            tenant_id: user.tenant_id,
            name: name.to_owned(),
            prefix,
            created_at,
            created_by: actor.to_owned(),
            expires_at,
            revoked_at: None,
            last_used_at: None,
        },
        secret,
    })
}

/// Keys of `user` (`Some`), or of every user of `tenant` (`Some`), or all keys; newest
/// first.
pub async fn list_keys(
    pool: &PgPool,
    user: Option<Uuid>,
    tenant: Option<Uuid>,
) -> Result<Vec<KeyRow>, AccountError> {
    Ok(sqlx::query_as!(
        KeyRow,
        r#"SELECT k.id, k.user_id, u.tenant_id, k.name, k.prefix, k.created_at, k.created_by,
                  k.expires_at, k.revoked_at, k.last_used_at
           FROM api_keys k JOIN api_users u ON u.id = k.user_id
           WHERE ($1::uuid IS NULL OR k.user_id = $1) AND ($2::uuid IS NULL OR u.tenant_id = $2)
           ORDER BY k.created_at DESC, k.id"#,
        user,
        tenant
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("list api keys", e))?)
}

/// One key by id.
pub async fn get_key(pool: &PgPool, id: Uuid) -> Result<KeyRow, AccountError> {
    sqlx::query_as!(
        KeyRow,
        r#"SELECT k.id, k.user_id, u.tenant_id, k.name, k.prefix, k.created_at, k.created_by,
                  k.expires_at, k.revoked_at, k.last_used_at
           FROM api_keys k JOIN api_users u ON u.id = k.user_id
           WHERE k.id = $1"#,
        id
    )
    .fetch_optional(pool)
    .await
    .map_err(|e| DbError::query("read api key", e))?
    .ok_or(AccountError::UnknownKey(id))
}

/// Revokes a key: it stops working at the next request. Returns whether it was live
/// before (revoking twice changes nothing). Audited as `key.revoke`.
pub async fn revoke_key(pool: &PgPool, id: Uuid, actor: &str) -> Result<bool, AccountError> {
    let op = |what| move |e| DbError::query(what, e);
    let mut tx = pool.begin().await.map_err(op("begin key revoke"))?;
    let row = sqlx::query!(
        "SELECT u.tenant_id, k.revoked_at, k.user_id FROM api_keys k
         JOIN api_users u ON u.id = k.user_id WHERE k.id = $1 FOR UPDATE OF k",
        id
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(op("lock api key"))?
    .ok_or(AccountError::UnknownKey(id))?;
    let was_live = row.revoked_at.is_none();
    if was_live {
        sqlx::query!("UPDATE api_keys SET revoked_at = now() WHERE id = $1", id)
            .execute(&mut *tx)
            .await
            .map_err(op("revoke api key"))?;
    }
    let event = AuditEvent {
        tenant: row.tenant_id,
        detail: serde_json::json!({
            "key": id, "user": row.user_id,
            "revoked": {"from": !was_live, "to": true},
        }),
        ..AuditEvent::new(actor, "key.revoke", "ok")
    };
    audit::record(&mut *tx, &event)
        .await
        .map_err(op("write key audit row"))?;
    tx.commit().await.map_err(op("commit key revoke"))?;
    Ok(was_live)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn generated_keys_parse_and_carry_their_prefix() {
        let (secret, prefix, hash) = generate_key("test").unwrap();
        let key = secret.expose_secret();
        assert!(key.starts_with("rl_test_"), "{key}");
        assert_eq!(key.len(), "rl_test_".len() + RANDOM_CHARS + CHECKSUM_CHARS);
        let shape = parse_key(key).expect("parses");
        assert_eq!(shape.env, "test");
        assert_eq!(shape.prefix, prefix);
        assert_eq!(hash, <[u8; 32]>::from(Sha256::digest(key.as_bytes())));
        assert_ne!(generate_key("test").unwrap().1, prefix, "random");
    }

    #[test]
    fn any_changed_character_breaks_the_checksum() {
        let (secret, _, _) = generate_key("live").unwrap();
        let key = secret.expose_secret();
        for i in "rl_live_".len()..key.len() {
            let mut bytes = key.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let changed = String::from_utf8(bytes).unwrap();
            assert!(parse_key(&changed).is_none(), "{i}");
        }
        for bad in [
            "",
            "rl_",
            "rl_live_",
            "rl_LIVE_x",
            "Bearer x",
            "rl_live_ünïcode",
        ] {
            assert!(parse_key(bad).is_none(), "{bad}");
        }
        assert!(generate_key("Live").is_err());
    }

    #[test]
    fn base62_pads_and_encodes_big_endian() {
        assert_eq!(base62(&[0, 0], 3), "000");
        assert_eq!(base62(&[61], 2), "0z");
        assert_eq!(base62(&[1, 0], 1), "48"); // 256 = 4*62 + 8
        assert_eq!(base62(&[0xff; 20], RANDOM_CHARS).len(), RANDOM_CHARS);
    }

    #[test]
    fn roles_grant_by_the_one_table() {
        use Permission::*;
        assert!(Role::Admin.grants(ManageUsers));
        assert!(!Role::Operator.grants(ManageTenants));
        assert!(Role::Operator.grants(ManageZones));
        assert!(Role::Auditor.grants(ReadAudit) && !Role::Auditor.grants(ManageZones));
        assert!(Role::Viewer.grants(ReadMetadata) && !Role::Viewer.grants(Verify));
        assert_eq!("auditor".parse::<Role>().unwrap(), Role::Auditor);
        assert!("root".parse::<Role>().is_err());
    }
}
