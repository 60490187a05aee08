//! Admin views of what happens: feedback on answers, the query log, the audit log, the
//! answers the content filter blocked; and the keyword user dictionary (jieba), so company
//! terms that jieba would split can be added from the admin pages.
//!
//! Lists are newest first and paged with `limit` (1–500, default 50) and `offset`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use zhiku_core::engine::Engine;
use zhiku_core::store::keyword::check_user_dict;
use zhiku_core::store::meta::{AuditEntry, BlockedEntry, FeedbackEntry, QueryEntry, QueryFilter};

use super::auth::Admin;
use super::error::ApiError;
use super::state::AppState;

/// Rows per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 50;
/// Most rows per page.
pub const MAX_LIMIT: usize = 500;

/// Paging of a log view.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Rows to return, 1–500 (default 50).
    pub limit: Option<usize>,
    /// Rows to skip (default 0).
    pub offset: Option<usize>,
}

/// Paging and filters of the query log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueryLogParams {
    /// Rows to return, 1–500 (default 50).
    pub limit: Option<usize>,
    /// Rows to skip (default 0).
    pub offset: Option<usize>,
    /// Only this user's questions (user name).
    pub user: Option<String>,
    /// Only questions that searched this knowledge base (name).
    pub kb: Option<String>,
}

fn params<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(p)| p)
        .map_err(|e| ApiError::BadRequest(format!("invalid query parameters: {}", e.body_text())))
}

/// (limit, offset) with the defaults, or 400.
fn paging(limit: Option<usize>, offset: Option<usize>) -> Result<(usize, usize), ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}, not {limit}"
        )));
    }
    Ok((limit, offset.unwrap_or(0)))
}

/// Feedback on answers, newest first, with the question, answer and user (admins).
#[utoipa::path(get, path = "/api/admin/feedback", tag = "admin", params(Page),
    responses((status = 200, body = [FeedbackEntry]), (status = 400), (status = 403)))]
pub async fn feedback(
    State(state): State<AppState>,
    _a: Admin,
    q: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Vec<FeedbackEntry>>, ApiError> {
    let p = params(q)?;
    let (limit, offset) = paging(p.limit, p.offset)?;
    Ok(Json(state.engine.meta.feedback_log(limit, offset)?))
}

/// Every question asked (web, API, OpenAI-compatible, WeCom), newest first (admins).
#[utoipa::path(get, path = "/api/admin/queries", tag = "admin", params(QueryLogParams),
    responses((status = 200, body = [QueryEntry]), (status = 400), (status = 403)))]
pub async fn queries(
    State(state): State<AppState>,
    _a: Admin,
    q: Result<Query<QueryLogParams>, QueryRejection>,
) -> Result<Json<Vec<QueryEntry>>, ApiError> {
    let p = params(q)?;
    let (limit, offset) = paging(p.limit, p.offset)?;
    let filter = QueryFilter {
        user: p.user.as_deref().map(str::trim).filter(|s| !s.is_empty()),
        kb: p.kb.as_deref().map(str::trim).filter(|s| !s.is_empty()),
        limit,
        offset,
    };
    Ok(Json(state.engine.meta.query_log(&filter)?))
}

/// The audit log: who changed what, newest first (admins).
#[utoipa::path(get, path = "/api/admin/audit", tag = "admin", params(Page),
    responses((status = 200, body = [AuditEntry]), (status = 400), (status = 403)))]
pub async fn audit(
    State(state): State<AppState>,
    _a: Admin,
    q: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let p = params(q)?;
    let (limit, offset) = paging(p.limit, p.offset)?;
    Ok(Json(state.engine.meta.audit_log(limit, offset)?))
}

/// Answers the content filter (`server.blocked_words`) withheld, newest first (admins).
#[utoipa::path(get, path = "/api/admin/blocked", tag = "admin", params(Page),
    responses((status = 200, body = [BlockedEntry]), (status = 400), (status = 403)))]
pub async fn blocked(
    State(state): State<AppState>,
    _a: Admin,
    q: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Vec<BlockedEntry>>, ApiError> {
    let p = params(q)?;
    let (limit, offset) = paging(p.limit, p.offset)?;
    Ok(Json(state.engine.meta.blocked_log(limit, offset)?))
}

/// Where `PUT /api/admin/dictionary` writes: `keyword.user_dict`, else
/// `<data_dir>/userdict.txt` (which `Config::user_dict` picks up once it exists).
fn dictionary_path(engine: &Engine) -> PathBuf {
    engine
        .config
        .keyword
        .user_dict
        .clone()
        .unwrap_or_else(|| engine.config.data_dir.join("userdict.txt"))
}

/// The jieba user dictionary in force, as text: one `word [freq] [tag]` a line (admins).
/// Empty when there is none.
#[utoipa::path(get, path = "/api/admin/dictionary", tag = "admin",
    responses((status = 200, content_type = "text/plain", body = String), (status = 403)))]
pub async fn dictionary(State(state): State<AppState>, _a: Admin) -> Result<Response, ApiError> {
    let text = match state.engine.config.user_dict() {
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(ApiError::Internal(format!(
                    "cannot read the user dictionary {}: {e}",
                    path.display()
                )));
            }
        },
        None => String::new(),
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// What a dictionary change did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DictionaryUpdate {
    /// The file written.
    pub path: String,
    /// Words in the new dictionary.
    pub words: usize,
    /// Whether indexed text is being segmented again in the background (the audit log
    /// records `dictionary.reindex` when it is done).
    pub reindexing: bool,
    pub message: String,
}

/// One keyword re-index at a time: a second dictionary change waits for the first pass,
/// then runs its own, so the last dictionary is the one the index ends with.
static REINDEX: Mutex<()> = Mutex::new(());

/// Replace the jieba user dictionary (admins): the body is the whole file, UTF-8 lines
/// `word [freq] [tag]` (`#` comments and blank lines allowed). A bad line is a 400 naming it,
/// and nothing changes. Questions use the new words at once; documents already indexed are
/// segmented again in the background.
#[utoipa::path(put, path = "/api/admin/dictionary", tag = "admin",
    request_body(content = String, content_type = "text/plain"),
    responses((status = 200, body = DictionaryUpdate),
        (status = 400, description = "a line is malformed or not UTF-8; the message names it"),
        (status = 403)))]
pub async fn set_dictionary(
    State(state): State<AppState>,
    Admin(admin): Admin,
    body: Bytes,
) -> Result<Json<DictionaryUpdate>, ApiError> {
    let text = std::str::from_utf8(&body).map_err(|e| {
        let line = body[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        ApiError::BadRequest(format!(
            "line {line} is not valid UTF-8; save the dictionary as UTF-8"
        ))
    })?;
    let words =
        check_user_dict(text).map_err(|e| ApiError::BadRequest(format!("user dictionary, {e}")))?;
    let engine = state.engine.clone();
    let path = dictionary_path(&engine);
    let body = text.to_string();
    let p = path.clone();
    let chunks = tokio::task::spawn_blocking(move || -> Result<u64, ApiError> {
        write_atomically(&p, &body)?;
        engine
            .keyword
            .set_user_dict(Some(&p))
            .map_err(ApiError::internal)?;
        Ok(engine.meta.chunk_count()?)
    })
    .await
    .map_err(ApiError::internal)??;
    let reindexing = chunks > 0;
    let shown = path.display().to_string();
    admin.audit(
        &state,
        "dictionary.update",
        &shown,
        &format!("{words} words"),
    );
    if reindexing {
        let engine = state.engine.clone();
        let admin = admin.clone();
        let s = state.clone();
        tokio::task::spawn_blocking(move || {
            let _one = REINDEX.lock().unwrap_or_else(|p| p.into_inner());
            match zhiku_core::index::reindex_keywords(&engine) {
                Ok(n) => admin.audit(
                    &s,
                    "dictionary.reindex",
                    "keyword index",
                    &format!("{n} chunks segmented again"),
                ),
                Err(e) => {
                    tracing::error!(error = %e, "keyword re-index after a dictionary change failed");
                    admin.audit(
                        &s,
                        "dictionary.reindex",
                        "keyword index",
                        &format!("failed: {e}"),
                    );
                }
            }
        });
    }
    let message = if reindexing {
        format!(
            "{words} words saved; questions use them now. The {chunks} indexed passages are \
             being segmented again in the background (the audit log says when it is done)."
        )
    } else {
        format!("{words} words saved; nothing is indexed yet, so no re-index is needed.")
    };
    Ok(Json(DictionaryUpdate {
        path: shown,
        words,
        reindexing,
        message,
    }))
}

/// Write `text` to `path` through a temporary file and a rename, so that a crash never
/// leaves half a dictionary (which would stop the next start).
fn write_atomically(path: &Path, text: &str) -> Result<(), ApiError> {
    let fail = |e: std::io::Error| {
        ApiError::Internal(format!(
            "cannot write the user dictionary {}: {e}",
            path.display()
        ))
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}
