//! The monitor's login sessions (docs/MONITOR.md): a browser presents an API key once
//! ([`open`], which authenticates it exactly as the API does) and then carries a
//! random 256-bit session secret in a cookie; only its SHA-256 is stored
//! (`monitor_sessions`). Each request [`resume`]s the session, which re-reads the key
//! and its user: a revoked or expired key, a disabled user or a changed role takes
//! effect on the next page, as for API calls. Each session has its own CSRF token,
//! which every form carries. Opening and ending a session are audited
//! (`session.open`, `session.end`).

use chrono::{DateTime, TimeDelta, Utc};
use rainlogs_core::db::DbError;
use rand::RngCore;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::{self, AuditEvent};
use crate::catalog::account::{self, AuthError, Principal, Role};

/// Hex characters of a session secret or a CSRF token (256 random bits).
const TOKEN_HEX: usize = 64;

/// A live session: who, and the token its forms must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: Uuid,
    pub principal: Principal,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// A session just opened, with its secret (for the cookie; never stored or logged).
pub struct Opened {
    pub secret: SecretString,
    pub session: Session,
}

/// 256 random bits as lowercase hex.
pub fn random_token() -> String {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn well_formed(token: &str) -> bool {
    token.len() == TOKEN_HEX
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Opens a session for API key `key` (authenticated as [`account::authenticate`]
/// does), valid for `ttl`. Audited as `session.open`.
pub async fn open(
    pool: &PgPool,
    key: &str,
    ttl: TimeDelta,
    now: DateTime<Utc>,
) -> Result<Opened, AuthError> {
    let principal = account::authenticate(pool, key, now).await?;
    let secret = random_token();
    let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    let session = Session {
        id: Uuid::now_v7(),
        principal,
        csrf_token: random_token(),
        expires_at: now + ttl,
    };
    let op = |what| move |e| AuthError::Db(DbError::query(what, e));
    let mut tx = pool.begin().await.map_err(op("begin session"))?;
    sqlx::query!(
        "INSERT INTO monitor_sessions (id, secret_sha256, key_id, csrf_token, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        session.id,
        &hash[..],
        session.principal.key_id,
        session.csrf_token,
        now,
        session.expires_at,
    )
    .execute(&mut *tx)
    .await
    .map_err(op("insert session"))?;
    let actor = session.principal.actor();
    let event = AuditEvent {
        tenant: session.principal.tenant_id,
        detail: serde_json::json!({
            "session": session.id, "key": session.principal.key_id, "expires_at": session.expires_at,
        }),
        ..AuditEvent::new(&actor, "session.open", "ok")
    };
    audit::record(&mut *tx, &event)
        .await
        .map_err(op("write session audit row"))?;
    tx.commit().await.map_err(op("commit session"))?;
    Ok(Opened {
        secret: SecretString::from(secret),
        session,
    })
}

/// The session whose secret is `secret`, with its key's user as it is now. `Ok(None)`:
/// no such session, or it ended or expired (sign in again); `Err`: its key or user
/// no longer authenticates (revoked, expired, disabled), or Postgres failed.
pub async fn resume(
    pool: &PgPool,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<Option<Session>, AuthError> {
    if !well_formed(secret) {
        return Ok(None);
    }
    let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    // One row at most (the hash is unique); a lookup by the hash of a 256-bit secret
    // tells a guesser nothing by its timing.
    let row = sqlx::query!(
        r#"SELECT s.id, s.csrf_token, s.expires_at, s.ended_at,
                  k.id AS key_id, k.expires_at AS key_expires_at, k.revoked_at,
                  u.id AS user_id, u.name AS user_name, u.tenant_id, u.role AS "role: Role",
                  u.disabled_at, t.name AS "tenant_name?"
           FROM monitor_sessions s
           JOIN api_keys k ON k.id = s.key_id
           JOIN api_users u ON u.id = k.user_id
           LEFT JOIN tenants t ON t.id = u.tenant_id
           WHERE s.secret_sha256 = $1"#,
        &hash[..]
    )
    .fetch_optional(pool)
    .await
    .map_err(|e| DbError::query("find session", e))?;
    let Some(row) = row else { return Ok(None) };
    if row.ended_at.is_some() || row.expires_at <= now {
        return Ok(None);
    }
    if row.revoked_at.is_some() {
        return Err(AuthError::Revoked(row.key_id));
    }
    if row.key_expires_at.is_some_and(|at| at <= now) {
        return Err(AuthError::Expired(row.key_id));
    }
    if row.disabled_at.is_some() {
        return Err(AuthError::UserDisabled(row.key_id));
    }
    Ok(Some(Session {
        id: row.id,
        principal: Principal {
            user_id: row.user_id,
            user_name: row.user_name,
            tenant_id: row.tenant_id,
            tenant_name: row.tenant_name,
            role: row.role,
            key_id: row.key_id,
        },
        csrf_token: row.csrf_token,
        expires_at: row.expires_at,
    }))
}

/// Ends `session` (sign out). Audited as `session.end`.
pub async fn end(pool: &PgPool, session: &Session, now: DateTime<Utc>) -> Result<(), DbError> {
    let op = |what| move |e| DbError::query(what, e);
    let mut tx = pool.begin().await.map_err(op("begin session end"))?;
    sqlx::query!(
        "UPDATE monitor_sessions SET ended_at = $2 WHERE id = $1 AND ended_at IS NULL",
        session.id,
        now
    )
    .execute(&mut *tx)
    .await
    .map_err(op("end session"))?;
    let actor = session.principal.actor();
    let event = AuditEvent {
        tenant: session.principal.tenant_id,
        detail: serde_json::json!({ "session": session.id }),
        ..AuditEvent::new(&actor, "session.end", "ok")
    };
    audit::record(&mut *tx, &event)
        .await
        .map_err(op("write session audit row"))?;
    tx.commit().await.map_err(op("commit session end"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_random_bits_in_hex_and_only_those_are_looked_up() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert!(well_formed(&a) && well_formed(&b));
        assert!(!well_formed(&a[1..]));
        assert!(!well_formed(&a.to_uppercase()));
        assert!(!well_formed("rl_live_abc"));
    }
}
