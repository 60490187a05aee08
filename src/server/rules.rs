//! Folder and document rules of a knowledge base (admins and the knowledge base's editors),
//! and its editors (admins): `GET /api/kbs/{kb}/rules` lists
//! the rules and who may read each document (the admin page's folder tree), `PUT` restricts
//! a folder or document to groups, `DELETE ?path=` removes its rule. Both go through
//! [`zhiku_core::store::meta::MetaStore::set_rule`], the function `zhiku kb restrict` uses
//! (validated, audited, one transaction); the worker then updates the indexes' filters in
//! the background, and retrieval denies what the new rule denies meanwhile.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};

use zhiku_core::store::meta::{AccessRule, DocumentAccess, RuleChange};

use super::auth::{Admin, Caller};
use super::error::ApiError;
use super::state::AppState;

/// A knowledge base's rules and every document's readers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Rules {
    pub kb: String,
    pub rules: Vec<AccessRule>,
    pub documents: Vec<DocumentAccess>,
}

/// Restrict a folder (a path prefix of document names, `政策/薪酬`) or a document (its name)
/// to these groups.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Restrict {
    pub path: String,
    pub groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct RulePath {
    path: String,
}

fn kb_id(state: &AppState, kb: &str) -> Result<i64, ApiError> {
    Ok(state.engine.meta.require_kb(kb)?)
}

/// The knowledge base `name` when `caller` may manage it (an admin or its editor). A caller
/// who may not even read it gets the same 404 as for a knowledge base that does not exist, so
/// its name is never confirmed to outsiders; a reader who may not manage it gets 403.
pub(crate) fn managed_kb(state: &AppState, caller: &Caller, name: &str) -> Result<i64, ApiError> {
    let hidden = || ApiError::NotFound(format!("no knowledge base `{name}` that you may read"));
    let meta = &state.engine.meta;
    let Some(id) = meta.kb_id(name)? else {
        return Err(hidden());
    };
    if meta.may_manage(&caller.user, id)? {
        return Ok(id);
    }
    if caller.readable_kbs(state)?.contains(&id) {
        require_manager(state, caller, id)?;
    }
    Err(hidden())
}

/// 403 unless `caller` is an admin or an editor of `kb`.
pub(crate) fn require_manager(state: &AppState, caller: &Caller, kb: i64) -> Result<(), ApiError> {
    if state.engine.meta.may_manage(&caller.user, kb)? {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only admins and editors of this knowledge base may do this".into(),
        ))
    }
}

/// The rules of a knowledge base and who may read each document (admins and its editors).
#[utoipa::path(get, path = "/api/kbs/{kb}/rules", tag = "knowledge bases",
    params(("kb" = String, Path)),
    responses((status = 200, body = Rules), (status = 403), (status = 404)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(kb): Path<String>,
) -> Result<Json<Rules>, ApiError> {
    let id = managed_kb(&state, &caller, &kb)?;
    let meta = &state.engine.meta;
    Ok(Json(Rules {
        rules: meta.rules(id)?,
        documents: meta.document_access(id)?,
        kb,
    }))
}

/// Restrict a folder or document to groups (admins and the knowledge base's editors);
/// replaces the groups of its rule.
#[utoipa::path(put, path = "/api/kbs/{kb}/rules", tag = "knowledge bases",
    params(("kb" = String, Path)), request_body = Restrict,
    responses((status = 200, body = RuleChange),
        (status = 400, description = "no group, or the path is no folder or document of the knowledge base"),
        (status = 403), (status = 404, description = "no such knowledge base or group")))]
pub async fn restrict(
    State(state): State<AppState>,
    admin: Caller,
    Path(kb): Path<String>,
    body: Result<Json<Restrict>, JsonRejection>,
) -> Result<Json<RuleChange>, ApiError> {
    let Json(b) = body?;
    if b.groups.iter().all(|g| g.trim().is_empty()) {
        return Err(ApiError::BadRequest(
            "name at least one group (DELETE removes a rule)".into(),
        ));
    }
    let groups: Vec<String> = b
        .groups
        .iter()
        .map(|g| g.trim().to_string())
        .filter(|g| !g.is_empty())
        .collect();
    change(&state, &admin, &kb, &b.path, &groups)
}

/// Remove the rule of a folder or document (admins and the knowledge base's editors): it
/// then follows the folder above it.
#[utoipa::path(delete, path = "/api/kbs/{kb}/rules", tag = "knowledge bases",
    params(("kb" = String, Path), ("path" = String, Query)),
    responses((status = 200, body = RuleChange), (status = 400), (status = 403),
        (status = 404)))]
pub async fn unrestrict(
    State(state): State<AppState>,
    admin: Caller,
    Path(kb): Path<String>,
    query: Result<Query<RulePath>, QueryRejection>,
) -> Result<Json<RuleChange>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    change(&state, &admin, &kb, &q.path, &[])
}

fn change(
    state: &AppState,
    admin: &super::auth::Caller,
    kb: &str,
    path: &str,
    groups: &[String],
) -> Result<Json<RuleChange>, ApiError> {
    let id = managed_kb(state, admin, kb)?;
    let ip = admin.ip.map(|i| i.to_string());
    let change = state
        .engine
        .meta
        .set_rule(id, path, groups, &admin.user.name, ip.as_deref())?;
    // The worker writes the new readers to both indexes.
    state.ingest.notify();
    Ok(Json(change))
}

/// Make a user an editor of a knowledge base (admins): they may then upload, delete and
/// restrict its documents.
#[utoipa::path(put, path = "/api/kbs/{kb}/editors/{user}", tag = "knowledge bases",
    params(("kb" = String, Path), ("user" = String, Path)),
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn add_editor(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path((kb, user)): Path<(String, String)>,
) -> Result<axum::http::StatusCode, ApiError> {
    set_editor(&state, &admin, &kb, &user, true)
}

/// Stop a user being an editor of a knowledge base (admins).
#[utoipa::path(delete, path = "/api/kbs/{kb}/editors/{user}", tag = "knowledge bases",
    params(("kb" = String, Path), ("user" = String, Path)),
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn remove_editor(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path((kb, user)): Path<(String, String)>,
) -> Result<axum::http::StatusCode, ApiError> {
    set_editor(&state, &admin, &kb, &user, false)
}

fn set_editor(
    state: &AppState,
    admin: &Caller,
    kb: &str,
    user: &str,
    editor: bool,
) -> Result<axum::http::StatusCode, ApiError> {
    let meta = &state.engine.meta;
    let id = kb_id(state, kb)?;
    let u = meta.require_user(user)?;
    meta.set_kb_editor(id, u.id, editor)?;
    let action = if editor {
        "kb.editor.add"
    } else {
        "kb.editor.remove"
    };
    admin.audit(state, action, kb, &format!("user {user}"));
    Ok(axum::http::StatusCode::NO_CONTENT)
}
