//! `/v1/me`, `/v1/tenants/{tenant}/users`, `/v1/users/{user}/…`, `/v1/keys/{key}/…`:
//! who is calling; a tenant's users and their API keys (admins) — over
//! `catalog::account`, each change audited there. A key's secret is in the answer
//! that creates it, and nowhere else, ever.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use rainlogs_archive::catalog::account::{self, AccountError, KeyRow, Role, UserRow};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{created, tenant_of, Body, Path};
use crate::auth::{visible, Principal};
use crate::problem::{Problem, ProblemBody};
use crate::Api;

/// A role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApiRole {
    /// Everything: tenants' retention and legal hold, users and keys, zones.
    Admin,
    /// Zones (add, pause, resume, mode, retry failed windows), verify.
    Operator,
    /// Read, verify, the audit log.
    Auditor,
    /// Read metadata only.
    Viewer,
}

impl From<Role> for ApiRole {
    fn from(r: Role) -> Self {
        match r {
            Role::Admin => ApiRole::Admin,
            Role::Operator => ApiRole::Operator,
            Role::Auditor => ApiRole::Auditor,
            Role::Viewer => ApiRole::Viewer,
        }
    }
}

impl From<ApiRole> for Role {
    fn from(r: ApiRole) -> Self {
        match r {
            ApiRole::Admin => Role::Admin,
            ApiRole::Operator => Role::Operator,
            ApiRole::Auditor => Role::Auditor,
            ApiRole::Viewer => Role::Viewer,
        }
    }
}

/// The caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub user_id: Uuid,
    pub user: String,
    /// `null`: a provider-wide user (every tenant).
    pub tenant_id: Option<Uuid>,
    pub tenant: Option<String>,
    pub role: ApiRole,
    /// The key this request was made with.
    pub key_id: Uuid,
}

/// A user.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    /// `null`: provider-wide.
    pub tenant_id: Option<Uuid>,
    pub tenant: Option<String>,
    pub name: String,
    pub role: ApiRole,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub disabled_at: Option<DateTime<Utc>>,
}

impl From<UserRow> for User {
    fn from(u: UserRow) -> Self {
        Self {
            id: u.id,
            tenant_id: u.tenant_id,
            tenant: u.tenant,
            name: u.name,
            role: u.role.into(),
            created_at: u.created_at,
            created_by: u.created_by,
            disabled_at: u.disabled_at,
        }
    }
}

/// The users of a tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<User>,
}

/// A user to add to the tenant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// 1-200 characters, unique in the tenant.
    pub name: String,
    pub role: ApiRole,
}

/// An API key (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    /// The key's first characters (`rl_<env>_` and 8 more): enough to recognise it.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Updated at most once a minute.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<KeyRow> for ApiKey {
    fn from(k: KeyRow) -> Self {
        Self {
            id: k.id,
            user_id: k.user_id,
            name: k.name,
            prefix: k.prefix,
            created_at: k.created_at,
            created_by: k.created_by,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            last_used_at: k.last_used_at,
        }
    }
}

/// A user's keys, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<ApiKey>,
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKeyRequest {
    /// What the key is for (1-200 characters).
    pub name: String,
    /// When it stops working (at most 10 years away); default: never.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key just created: `secret` is shown this once and cannot be read again.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub key: ApiKey,
    /// `rl_<env>_…`: send it as `Authorization: Bearer <secret>`.
    pub secret: String,
}

/// A change of a user's or a key's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct StateChange {
    pub id: Uuid,
    /// The call changed something (false: it was already so).
    pub changed: bool,
}

/// Who is calling: the key's user, tenant and role.
#[utoipa::path(get, path = "/v1/me", tag = "users",
    responses((status = 200, body = Me),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn me(Extension(p): Extension<Principal>) -> Json<Me> {
    Json(Me {
        user_id: p.user_id,
        user: p.user_name,
        tenant_id: p.tenant_id,
        tenant: p.tenant_name,
        role: p.role.into(),
        key_id: p.key_id,
    })
}

/// The tenant's users (admins).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/users", tag = "users",
    params(("tenant" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = UserList),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn list(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(tenant): Path<String>,
) -> Result<Json<UserList>, Problem> {
    let t = tenant_of(&api, &p, &tenant).await?;
    let users = account::list_users(&api.services().pool, Some(t.id)).await?;
    Ok(Json(UserList {
        users: users.into_iter().map(User::from).collect(),
    }))
}

/// Adds a user to the tenant (admins). Audited as `user.add`.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users", tag = "users", request_body = NewUser,
    params(("tenant" = String, Path, description = "tenant name or id")),
    responses((status = 201, body = User),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn add(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(tenant): Path<String>,
    Body(new): Body<NewUser>,
) -> Result<(StatusCode, Json<User>), Problem> {
    let t = tenant_of(&api, &p, &tenant).await?;
    let pool = &api.services().pool;
    let id = account::add_user(
        pool,
        Some(t.id.to_string().as_str()),
        &new.name,
        new.role.into(),
        &p.actor(),
    )
    .await?;
    Ok(created(account::get_user(pool, id).await?.into()))
}

/// A user `principal` sees; any other answers as unknown.
async fn user_of(api: &Api, p: &Principal, user: Uuid) -> Result<UserRow, Problem> {
    let row = account::get_user(&api.services().pool, user).await?;
    visible(p, row.tenant_id, || {
        AccountError::UnknownUser(user.to_string()).into()
    })?;
    Ok(row)
}

/// Disables a user: its keys stop working at once (admins). Audited as `user.disable`.
#[utoipa::path(post, path = "/v1/users/{user}/disable", tag = "users",
    params(("user" = Uuid, Path, description = "user id")),
    responses((status = 200, body = StateChange),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn disable(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(user): Path<Uuid>,
) -> Result<Json<StateChange>, Problem> {
    let u = user_of(&api, &p, user).await?;
    let changed = account::disable_user(&api.services().pool, u.id, &p.actor()).await?;
    Ok(Json(StateChange { id: u.id, changed }))
}

/// A user's API keys (admins), newest first.
#[utoipa::path(get, path = "/v1/users/{user}/keys", tag = "users",
    params(("user" = Uuid, Path, description = "user id")),
    responses((status = 200, body = KeyList),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn keys(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(user): Path<Uuid>,
) -> Result<Json<KeyList>, Problem> {
    let u = user_of(&api, &p, user).await?;
    let keys = account::list_keys(&api.services().pool, Some(u.id), None).await?;
    Ok(Json(KeyList {
        keys: keys.into_iter().map(ApiKey::from).collect(),
    }))
}

/// Creates an API key for a user (admins); the secret is in this answer only.
/// Audited as `key.create` (never the secret).
#[utoipa::path(post, path = "/v1/users/{user}/keys", tag = "users", request_body = NewKeyRequest,
    params(("user" = Uuid, Path, description = "user id")),
    responses((status = 201, body = CreatedKey),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn create_key(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(user): Path<Uuid>,
    Body(req): Body<NewKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKey>), Problem> {
    let u = user_of(&api, &p, user).await?;
    let new = account::create_key(
        &api.services().pool,
        u.id,
        &req.name,
        &api.config().key_env,
        req.expires_at,
        Utc::now(),
        &p.actor(),
    )
    .await?;
    Ok(created(CreatedKey {
        key: new.key.into(),
        secret: new.secret.expose_secret().to_owned(),
    }))
}

/// Revokes an API key: it stops working at once (admins). Audited as `key.revoke`.
#[utoipa::path(post, path = "/v1/keys/{key}/revoke", tag = "users",
    params(("key" = Uuid, Path, description = "key id")),
    responses((status = 200, body = StateChange),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn revoke_key(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(key): Path<Uuid>,
) -> Result<Json<StateChange>, Problem> {
    let pool = &api.services().pool;
    let k = account::get_key(pool, key).await?;
    visible(&p, k.tenant_id, || AccountError::UnknownKey(key).into())?;
    let changed = account::revoke_key(pool, k.id, &p.actor()).await?;
    Ok(Json(StateChange { id: k.id, changed }))
}
