//! Hit testing (admins): `POST /api/kbs/{kb}/search-test` runs a question through the answer
//! path's own retrieval, relevance gate and prompt fitting ([`zhiku_core::rag::inspect`]) and
//! returns every step's result, without generating.
//!
//! "View as user" (`as_user`) runs it with that user's rights: the scope comes from
//! [`ask::scope`] for a caller with that user's identity, the function `/api/ask` uses, so
//! whatever restricts what a user may read restricts the test the same way.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use zhiku_core::rag::inspect::{self, Inspection};
use zhiku_core::store::{ChunkId, Reader};

use super::ask::{self, check_question};
use super::auth::{Admin, Caller};
use super::error::ApiError;
use super::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SearchTestRequest {
    pub question: String,
    /// Run with this user's rights instead of the caller's (user name).
    pub as_user: Option<String>,
}

/// A candidate with its passage (for display).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CandidateView {
    pub chunk: ChunkId,
    pub rank: usize,
    /// `hit`, `below_top_k` or `hidden` (document not ready, chunk disabled, or another
    /// knowledge base).
    pub status: String,
    pub dense: Option<f32>,
    pub dense_rank: Option<usize>,
    pub keyword: Option<f32>,
    pub keyword_rank: Option<usize>,
    pub fused: f32,
    /// The passage's document title and text, when it is still visible.
    pub title: Option<String>,
    pub document_id: Option<i64>,
    pub page: Option<u32>,
    pub text: Option<String>,
}

/// What the answer path makes of the question.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchTestResult {
    pub kb: String,
    /// The user whose rights were used.
    pub user: String,
    /// Whether that user may read the knowledge base (if not, nothing is searched).
    pub readable: bool,
    pub candidates: Vec<CandidateView>,
    /// The hits with the gate's verdict, reason and placement (`prompt`, `cut_by_budget`,
    /// `cut_by_sources`, `cut_by_gate`), the verdict, the prompt's chunks and budget.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub inspection: Inspection,
}

/// Run a question through retrieval, the relevance gate and prompt fitting, and show every
/// step (admins). Nothing is generated and nothing is logged as a question.
#[utoipa::path(post, path = "/api/kbs/{kb}/search-test", tag = "admin",
    params(("kb" = String, Path)), request_body = SearchTestRequest,
    responses((status = 200, body = SearchTestResult), (status = 400), (status = 403),
        (status = 404, description = "no such knowledge base or user")))]
pub async fn search_test(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(kb): Path<String>,
    body: Result<Json<SearchTestRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SearchTestResult>, ApiError> {
    let Json(req) = body?;
    let question = check_question(&req.question)?.to_string();
    let meta = &state.engine.meta;
    meta.require_kb(&kb)?;
    let viewer = match req
        .as_user
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(name) => Caller {
            user: meta.require_user(name)?,
            ..admin.clone()
        },
        None => admin.clone(),
    };
    // The scope /api/ask would give this user for this knowledge base.
    let (kbs, reader) = match ask::scope(&state, &viewer, Some(&kb)) {
        Ok(scope) => (scope.kbs, scope.reader),
        Err(ApiError::NotFound(_)) => (Vec::new(), Reader::everyone()),
        Err(e) => return Err(e),
    };
    let readable = !kbs.is_empty();
    let generator = state.load_generator(vec![kb.clone()]).await?;
    let engine = state.engine.clone();
    let (inspection, texts) = tokio::task::spawn_blocking(move || {
        let sampling = &engine.config.generate.sampling;
        let found = inspect::inspect(
            &engine,
            generator.as_deref(),
            sampling,
            &question,
            &kbs,
            &reader,
        )?;
        let ids: Vec<ChunkId> = found.candidates.iter().map(|c| c.chunk).collect();
        // A candidate the viewer may not read (its rule changed a moment ago) shows no text.
        let mut records = engine.meta.chunks(&ids)?;
        records.retain(|r| reader.allows(&r.readers));
        Ok::<_, ApiError>((found, records))
    })
    .await
    .map_err(ApiError::internal)??;
    let by_id: HashMap<ChunkId, _> = texts.into_iter().map(|r| (r.id, r)).collect();
    let candidates = inspection
        .candidates
        .iter()
        .map(|c| {
            let r = by_id.get(&c.chunk);
            CandidateView {
                chunk: c.chunk,
                rank: c.rank,
                status: serde_json::to_value(c.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                dense: c.scores.dense,
                dense_rank: c.scores.dense_rank,
                keyword: c.scores.keyword,
                keyword_rank: c.scores.keyword_rank,
                fused: c.scores.fused,
                title: r.map(|r| r.title.clone()),
                document_id: r.map(|r| r.document_id),
                page: r.map(|r| r.page),
                text: r.map(|r| r.text.clone()),
            }
        })
        .collect();
    let mut inspection = inspection;
    inspection.candidates.clear();
    Ok(Json(SearchTestResult {
        kb,
        user: viewer.user.name,
        readable,
        candidates,
        inspection,
    }))
}
