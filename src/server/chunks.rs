//! Chunk view and edit (admins): a document's chunks in order with page and heading path;
//! fixing a chunk's text, disabling or enabling it, adding keywords or questions that
//! should find it; the edit history; and the review of edits a changed file left stale.
//!
//! Edits are versioned in SQLite and reach the vector and keyword indexes through the
//! indexer's write path ([`zhiku_core::index::edit_chunk`]); each one is in the audit log.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use zhiku_core::index;
use zhiku_core::store::meta::{ChunkChange, ChunkEdit, ChunkState, EditReview, EditableChunk};
use zhiku_core::store::{ChunkId, DocId};

use super::auth::Admin;
use super::documents::{display_name, index_error, kb_name};
use super::error::ApiError;
use super::state::AppState;

/// A document's chunks for the editor.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentChunks {
    pub id: DocId,
    pub kb: String,
    pub title: String,
    pub name: String,
    /// Set when the file changed after its chunks were edited.
    pub review: Option<EditReview>,
    pub chunks: Vec<EditableChunk>,
}

/// What an edit did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EditResult {
    pub chunk: ChunkId,
    pub before: ChunkState,
    pub after: ChunkState,
}

fn document(
    state: &AppState,
    id: DocId,
) -> Result<zhiku_core::store::meta::DocumentRecord, ApiError> {
    state
        .engine
        .meta
        .document(id)?
        .ok_or_else(|| ApiError::NotFound(format!("no document {id}")))
}

/// A document's chunks in order, with their current (edited) state (admins).
#[utoipa::path(get, path = "/api/documents/{id}/chunks", tag = "documents",
    params(("id" = i64, Path)),
    responses((status = 200, body = DocumentChunks), (status = 403), (status = 404)))]
pub async fn list(
    State(state): State<AppState>,
    _a: Admin,
    Path(id): Path<DocId>,
) -> Result<Json<DocumentChunks>, ApiError> {
    let doc = document(&state, id)?;
    let meta = &state.engine.meta;
    Ok(Json(DocumentChunks {
        id,
        kb: kb_name(&state, doc.kb)?,
        name: display_name(&doc.source),
        title: doc.title,
        review: meta.edit_review(id)?,
        chunks: meta.editable_chunks(id)?,
    }))
}

/// Edit a chunk (admins): any of `text`, `enabled`, `keywords`, `questions`; the others
/// stay. The next search finds the new state; a disabled chunk is never retrieved.
#[utoipa::path(patch, path = "/api/chunks/{id}", tag = "documents",
    params(("id" = u64, Path)), request_body = ChunkChange,
    responses((status = 200, body = EditResult),
        (status = 400, description = "empty text, too long, or nothing changed"),
        (status = 403), (status = 404)))]
pub async fn edit(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<ChunkId>,
    body: Result<Json<ChunkChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<EditResult>, ApiError> {
    let Json(change) = body?;
    let engine = state.engine.clone();
    let actor = admin.user.name.clone();
    let source = engine.meta.chunk_source(id)?;
    let (before, after) =
        tokio::task::spawn_blocking(move || index::edit_chunk(&engine, id, &change, &actor))
            .await
            .map_err(ApiError::internal)?
            .map_err(index_error)?;
    let target = match &source {
        Some((kb, source)) => format!("{}/{}", kb_name(&state, *kb)?, display_name(source)),
        None => format!("chunk {id}"),
    };
    admin.audit(
        &state,
        "chunk.edit",
        &target,
        &describe(id, &before, &after),
    );
    Ok(Json(EditResult {
        chunk: id,
        before,
        after,
    }))
}

/// The audit log's line for an edit.
fn describe(id: ChunkId, before: &ChunkState, after: &ChunkState) -> String {
    let mut what = Vec::new();
    if before.text != after.text {
        what.push(format!(
            "text {} → {} characters",
            before.text.chars().count(),
            after.text.chars().count()
        ));
    }
    if before.enabled != after.enabled {
        what.push(if after.enabled { "enabled" } else { "disabled" }.to_string());
    }
    if before.keywords != after.keywords {
        what.push(format!("keywords: {}", after.keywords.join(", ")));
    }
    if before.questions != after.questions {
        what.push(format!("questions: {}", after.questions.join(" | ")));
    }
    format!("chunk {id}: {}", what.join("; "))
}

/// Every edit of a document's chunks, this version's and earlier ones', newest first
/// (admins).
#[utoipa::path(get, path = "/api/documents/{id}/edits", tag = "documents",
    params(("id" = i64, Path)),
    responses((status = 200, body = [ChunkEdit]), (status = 403), (status = 404)))]
pub async fn history(
    State(state): State<AppState>,
    _a: Admin,
    Path(id): Path<DocId>,
) -> Result<Json<Vec<ChunkEdit>>, ApiError> {
    document(&state, id)?;
    Ok(Json(state.engine.meta.chunk_edits(id)?))
}

/// Mark a changed document's stale edits as reviewed (admins): the flag goes, and so do
/// the edits that no longer apply; their history stays.
#[utoipa::path(post, path = "/api/documents/{id}/review", tag = "documents",
    params(("id" = i64, Path)),
    responses((status = 204), (status = 403), (status = 404),
        (status = 409, description = "the document is not flagged")))]
pub async fn review(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<DocId>,
) -> Result<axum::http::StatusCode, ApiError> {
    let doc = document(&state, id)?;
    if !state.engine.meta.finish_review(id)? {
        return Err(ApiError::Conflict(format!(
            "document {id} has no edits waiting for review"
        )));
    }
    let target = format!("{}/{}", kb_name(&state, doc.kb)?, display_name(&doc.source));
    admin.audit(
        &state,
        "document.review",
        &target,
        &format!("document {id}: stale chunk edits reviewed"),
    );
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_lines_say_what_changed() {
        let before = ChunkState {
            text: "年休假5天".into(),
            enabled: true,
            keywords: vec![],
            questions: vec![],
        };
        let after = ChunkState {
            text: "年休假15天".into(),
            enabled: false,
            keywords: vec!["带薪假".into()],
            questions: vec![],
        };
        assert_eq!(
            describe(7, &before, &after),
            "chunk 7: text 5 → 6 characters; disabled; keywords: 带薪假"
        );
    }
}
