//! Users, groups and API tokens. Admins manage everyone; every user may list, create and
//! revoke their own API tokens (which carry exactly their rights).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use zhiku_core::access;
use zhiku_core::store::meta::{ApiToken, Group, MetaError, Role, User};

use super::auth::{Admin, Caller};
use super::error::ApiError;
use super::state::AppState;

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewUser {
    pub name: String,
    pub password: String,
    #[serde(default = "member")]
    pub role: Role,
    /// Groups to join (created when missing).
    #[serde(default)]
    pub groups: Vec<String>,
    /// The user's WeCom userid: their WeCom questions are answered as this user. It must not
    /// be linked to another user (409).
    #[serde(default)]
    pub wecom_user: Option<String>,
}

fn member() -> Role {
    Role::Member
}

/// Changes to a user; absent fields stay as they are.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UserChange {
    pub password: Option<String>,
    pub role: Option<Role>,
    /// The user's groups, replacing the current ones (created when missing).
    pub groups: Option<Vec<String>>,
    /// Link the user to this WeCom userid (their WeCom questions are answered as them);
    /// `null` or `""` unlinks. A userid linked to another user is refused (409) and then
    /// nothing is changed.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub wecom_user: Option<Option<String>>,
}

/// A field that is present, `null` included (`Some(None)`), as opposed to absent (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A WeCom userid as typed: trimmed; blank means none.
fn wecom_userid(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|w| !w.is_empty())
}

/// Everyone (admins).
#[utoipa::path(get, path = "/api/users", tag = "accounts", responses((status = 200, body = [User])))]
pub async fn list_users(
    State(state): State<AppState>,
    _a: Admin,
) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(state.engine.meta.list_users()?))
}

/// Add a user (admins).
#[utoipa::path(post, path = "/api/users", tag = "accounts", request_body = NewUser,
    responses((status = 201, body = User), (status = 400), (status = 409)))]
pub async fn create_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    body: JsonBody<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let Json(b) = body?;
    let meta = &state.engine.meta;
    let name = b.name.trim().to_string();
    if !zhiku_core::store::meta::valid_account_name(&name) {
        return Err(
            zhiku_core::store::meta::MetaError::BadAccountName { kind: "user", name }.into(),
        );
    }
    let wecom = wecom_userid(b.wecom_user.as_deref());
    if let Some(w) = wecom {
        meta.check_wecom_userid(w)?;
    }
    let hash = hash_blocking(b.password).await?;
    let id = meta.create_user(&name, Some(&hash), b.role)?;
    if let Some(w) = wecom
        && let Err(e) = meta.link_wecom_user(id, Some(w))
    {
        // Linked to someone else since the check: no half-made user stays behind.
        meta.delete_user(id)?;
        return Err(e.into());
    }
    for g in &b.groups {
        meta.add_to_group(id, meta.ensure_group(g.trim())?)?;
    }
    let user = meta
        .user(id)?
        .ok_or_else(|| ApiError::internal("user vanished"))?;
    let mut detail = format!(
        "role {} groups {}",
        user.role.as_str(),
        user.groups.join(",")
    );
    if let Some(w) = &user.wecom_user {
        detail.push_str(&format!(" wecom {w}"));
    }
    admin.audit(&state, "user.create", &user.name, &detail);
    Ok((StatusCode::CREATED, Json(user)))
}

async fn hash_blocking(password: String) -> Result<String, ApiError> {
    Ok(
        tokio::task::spawn_blocking(move || access::hash_password(&password))
            .await
            .map_err(ApiError::internal)??,
    )
}

/// Change a user's password, role, groups or WeCom userid (admins).
#[utoipa::path(patch, path = "/api/users/{name}", tag = "accounts", request_body = UserChange,
    params(("name" = String, Path)),
    responses((status = 200, body = User), (status = 400), (status = 404), (status = 409)))]
pub async fn update_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
    body: JsonBody<UserChange>,
) -> Result<Json<User>, ApiError> {
    let Json(b) = body?;
    let meta = &state.engine.meta;
    let user = meta.require_user(&name)?;
    // The changes that can be refused come first, so that a refused one changes nothing.
    if b.password.is_some()
        && let Some(d) = &user.directory
    {
        return Err(ApiError::Conflict(format!(
            "{name} is a {d} account: its password is the directory's"
        )));
    }
    // A quick look, so that a refused demotion changes nothing else; the rule itself is
    // enforced by `set_role` below in one transaction (two admins demoting each other at
    // once cannot both pass it).
    if let Some(role) = b.role
        && user.is_admin()
        && role != Role::Admin
        && meta.admin_count()? <= 1
    {
        return Err(MetaError::LastAdmin("demoted").into());
    }
    let wecom = b
        .wecom_user
        .as_ref()
        .map(|w| wecom_userid(w.as_deref()).map(str::to_string));
    if let Some(w) = &wecom {
        meta.link_wecom_user(user.id, w.as_deref())?;
    }
    if let Some(role) = b.role {
        meta.set_role(user.id, role)?;
    }
    let password_changed = b.password.is_some();
    if let Some(p) = b.password {
        meta.set_password(user.id, &hash_blocking(p).await?)?;
    }
    let groups_changed = b.groups.clone();
    if let Some(groups) = b.groups {
        let wanted = groups
            .iter()
            .map(|g| meta.ensure_group(g.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        for g in &user.groups {
            if let Some(id) = meta.group_id(g)? {
                meta.remove_from_group(user.id, id)?;
            }
        }
        for id in wanted {
            meta.add_to_group(user.id, id)?;
        }
    }
    let mut changed = Vec::new();
    changed.extend(b.role.map(|r| format!("role {}", r.as_str())));
    changed.extend(password_changed.then(|| "password".to_string()));
    changed.extend(groups_changed.map(|g| format!("groups {}", g.join(","))));
    changed.extend(wecom.map(|w| format!("wecom {}", w.as_deref().unwrap_or("(none)"))));
    admin.audit(&state, "user.update", &name, &changed.join("; "));
    Ok(Json(meta.require_user(&name)?))
}

/// Delete a user with their sessions and tokens (admins; not the last admin).
#[utoipa::path(delete, path = "/api/users/{name}", tag = "accounts",
    params(("name" = String, Path)), responses((status = 204), (status = 404), (status = 409)))]
pub async fn delete_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let meta = &state.engine.meta;
    let user = meta.require_user(&name)?;
    meta.delete_user(user.id)?;
    admin.audit(&state, "user.delete", &name, "");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct GroupName {
    pub name: String,
}

/// Groups with their member counts and readable knowledge bases (admins).
#[utoipa::path(get, path = "/api/groups", tag = "accounts", responses((status = 200, body = [Group])))]
pub async fn list_groups(
    State(state): State<AppState>,
    _a: Admin,
) -> Result<Json<Vec<Group>>, ApiError> {
    Ok(Json(state.engine.meta.list_groups()?))
}

/// Add a group (admins).
#[utoipa::path(post, path = "/api/groups", tag = "accounts", request_body = GroupName,
    responses((status = 201), (status = 400), (status = 409)))]
pub async fn create_group(
    State(state): State<AppState>,
    Admin(admin): Admin,
    body: JsonBody<GroupName>,
) -> Result<StatusCode, ApiError> {
    let Json(b) = body?;
    state.engine.meta.create_group(b.name.trim())?;
    admin.audit(&state, "group.create", b.name.trim(), "");
    Ok(StatusCode::CREATED)
}

/// Delete a group; its members stay, its grants go (admins).
#[utoipa::path(delete, path = "/api/groups/{name}", tag = "accounts",
    params(("name" = String, Path)), responses((status = 204), (status = 404)))]
pub async fn delete_group(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let meta = &state.engine.meta;
    meta.delete_group(meta.require_group(&name)?)?;
    admin.audit(&state, "group.delete", &name, "");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewToken {
    /// What the token is for (shown in lists).
    pub name: String,
    /// Admins may create a token for another user; it carries that user's rights.
    pub user: Option<String>,
}

/// A new token: `token` is shown this once and stored only hashed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    pub id: i64,
    pub token: String,
}

/// The caller's tokens (admins: everyone's).
#[utoipa::path(get, path = "/api/tokens", tag = "accounts", responses((status = 200, body = [ApiToken])))]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ApiToken>>, ApiError> {
    let who = (!caller.user.is_admin()).then_some(caller.user.id);
    Ok(Json(state.engine.meta.list_tokens(who)?))
}

/// Create an API token.
#[utoipa::path(post, path = "/api/tokens", tag = "accounts", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 403)))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let Json(b) = body?;
    let meta = &state.engine.meta;
    let owner = match b.user.as_deref() {
        None => caller.user.id,
        Some(n) if n == caller.user.name => caller.user.id,
        Some(n) if caller.user.is_admin() => meta.require_user(n)?.id,
        Some(_) => {
            return Err(ApiError::Forbidden(
                "only admins may create tokens for other users".into(),
            ));
        }
    };
    let name = b.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::BadRequest(
            "give the token a name of 1–100 characters".into(),
        ));
    }
    let (id, token) = access::create_token(meta, owner, name)?;
    caller.audit(&state, "token.create", &id.to_string(), name);
    Ok((StatusCode::CREATED, Json(CreatedToken { id, token })))
}

/// Revoke a token (one's own; admins: anyone's).
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "accounts",
    params(("id" = i64, Path)), responses((status = 204), (status = 404)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let meta = &state.engine.meta;
    match meta.token_owner(id)? {
        Some(owner) if owner == caller.user.id || caller.user.is_admin() => {
            meta.revoke_token(id)?;
            caller.audit(&state, "token.revoke", &id.to_string(), "");
            Ok(StatusCode::NO_CONTENT)
        }
        // Someone else's token is reported like a missing one.
        _ => Err(ApiError::NotFound(format!("no token {id}"))),
    }
}
