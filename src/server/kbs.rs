//! Knowledge bases: list (what the caller may read), create, rename, delete, and which
//! groups may read each.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::auth::{Admin, Caller};
use super::error::ApiError;
use super::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KbInfo {
    pub name: String,
    pub documents: u64,
    pub chunks: u64,
    /// Groups that may read it (shown to admins only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct KbName {
    pub name: String,
}

/// The knowledge bases the caller may read, with the number of documents and chunks in each
/// that they may read (admins: all, with their groups).
#[utoipa::path(get, path = "/api/kbs", tag = "knowledge bases",
    responses((status = 200, body = [KbInfo]), (status = 401)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<KbInfo>>, ApiError> {
    let meta = &state.engine.meta;
    let readable = caller.readable_kbs(&state)?;
    let admin = caller.user.is_admin();
    let reader = meta.reader_of(&caller.user)?;
    let mut out = Vec::new();
    for k in meta.list_kbs()? {
        if !readable.contains(&k.id) {
            continue;
        }
        // A member is not told how many documents they may not read exist.
        let (documents, chunks) = if admin {
            (k.documents, k.chunks)
        } else {
            meta.readable_counts(k.id, &reader)?
        };
        out.push(KbInfo {
            groups: if admin {
                Some(meta.kb_groups(k.id)?)
            } else {
                None
            },
            name: k.name,
            documents,
            chunks,
        });
    }
    Ok(Json(out))
}

/// Create a knowledge base (admins).
#[utoipa::path(post, path = "/api/kbs", tag = "knowledge bases", request_body = KbName,
    responses((status = 201), (status = 400), (status = 403), (status = 409)))]
pub async fn create(
    State(state): State<AppState>,
    Admin(admin): Admin,
    body: Result<Json<KbName>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(b) = body?;
    state.engine.meta.create_kb(b.name.trim())?;
    admin.audit(&state, "kb.create", b.name.trim(), "");
    Ok(StatusCode::CREATED)
}

/// Rename a knowledge base (admins).
#[utoipa::path(patch, path = "/api/kbs/{kb}", tag = "knowledge bases", request_body = KbName,
    params(("kb" = String, Path)),
    responses((status = 204), (status = 404), (status = 409)))]
pub async fn rename(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(kb): Path<String>,
    body: Result<Json<KbName>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(b) = body?;
    let meta = &state.engine.meta;
    let id = meta.require_kb(&kb)?;
    meta.rename_kb(id, b.name.trim())?;
    admin.audit(&state, "kb.rename", &kb, &format!("to {}", b.name.trim()));
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a knowledge base with its documents (admins).
#[utoipa::path(delete, path = "/api/kbs/{kb}", tag = "knowledge bases",
    params(("kb" = String, Path)), responses((status = 204), (status = 404)))]
pub async fn delete(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(kb): Path<String>,
) -> Result<StatusCode, ApiError> {
    let engine = state.engine.clone();
    let name = kb.clone();
    let n = tokio::task::spawn_blocking(move || zhiku_core::index::delete_kb(&engine, &name))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| match e {
            zhiku_core::index::IndexError::Engine(e) => e.into(),
            other => ApiError::internal(other),
        })?;
    admin.audit(&state, "kb.delete", &kb, &format!("{n} documents"));
    Ok(StatusCode::NO_CONTENT)
}

/// Let a group read a knowledge base (admins).
#[utoipa::path(put, path = "/api/kbs/{kb}/groups/{group}", tag = "knowledge bases",
    params(("kb" = String, Path), ("group" = String, Path)),
    responses((status = 204), (status = 404)))]
pub async fn grant(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path((kb, group)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let meta = &state.engine.meta;
    meta.grant(meta.require_kb(&kb)?, meta.require_group(&group)?)?;
    admin.audit(&state, "kb.grant", &kb, &format!("group {group}"));
    Ok(StatusCode::NO_CONTENT)
}

/// Stop a group reading a knowledge base (admins).
#[utoipa::path(delete, path = "/api/kbs/{kb}/groups/{group}", tag = "knowledge bases",
    params(("kb" = String, Path), ("group" = String, Path)),
    responses((status = 204), (status = 404)))]
pub async fn revoke(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path((kb, group)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let meta = &state.engine.meta;
    meta.revoke(meta.require_kb(&kb)?, meta.require_group(&group)?)?;
    admin.audit(&state, "kb.revoke", &kb, &format!("group {group}"));
    Ok(StatusCode::NO_CONTENT)
}
