//! Ingestion jobs (uploads and re-indexes) with each file's status, for the admin pages to
//! poll: `queued → extracting → embedding → done | failed` (with the reason).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use zhiku_core::store::meta::UploadJob;

use super::auth::{Admin, Caller};
use super::error::ApiError;
use super::state::AppState;

/// Most jobs listed.
const LISTED: usize = 50;

#[derive(Debug, Deserialize)]
pub struct JobsQuery {
    kb: Option<String>,
}

/// The newest jobs, of one knowledge base or all, newest first (admins).
#[utoipa::path(get, path = "/api/jobs", tag = "documents",
    params(("kb" = Option<String>, Query, description = "knowledge base name; default all")),
    responses((status = 200, body = [UploadJob]), (status = 403), (status = 404)))]
pub async fn list(
    State(state): State<AppState>,
    _a: Admin,
    query: Result<Query<JobsQuery>, QueryRejection>,
) -> Result<Json<Vec<UploadJob>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let meta = &state.engine.meta;
    let kb = match q.kb.as_deref().filter(|k| !k.is_empty()) {
        Some(name) => Some(meta.require_kb(name)?),
        None => None,
    };
    Ok(Json(meta.upload_jobs(kb, LISTED)?))
}

/// One job with its files (admins, and editors of its knowledge base).
#[utoipa::path(get, path = "/api/jobs/{id}", tag = "documents",
    params(("id" = i64, Path)),
    responses((status = 200, body = UploadJob), (status = 403), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<UploadJob>, ApiError> {
    let meta = &state.engine.meta;
    let job = meta.upload_job(id)?;
    if !caller.user.is_admin() {
        let kb = job.as_ref().and_then(|j| meta.kb_id(&j.kb).ok().flatten());
        match kb {
            Some(kb) => super::rules::require_manager(&state, &caller, kb)?,
            None => return Err(ApiError::Forbidden("only admins may do this".into())),
        }
    }
    job.map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))
}
