//! The web chat's conversations: list, start, rename, delete, read back, and feedback on
//! answers. Each user sees only their own; someone else's conversation or message answers
//! 404, as if it did not exist. Turns are stored by `POST /api/ask` with a
//! `conversation_id` ([`super::activity::store_turn`]).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use zhiku_core::rag::Turn;
use zhiku_core::rag::claims::{self, Cited, ClaimCheck};
use zhiku_core::store::meta::{Conversation, ConversationId, Feedback, Message, MessageId};

use super::ask;
use super::auth::Caller;
use super::error::ApiError;
use super::state::AppState;

/// Longest conversation title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest feedback comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 2000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewConversation {
    /// Default: empty, named after the first question.
    #[serde(default)]
    pub title: String,
    /// A knowledge base you may read; default: all of them.
    pub kb: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Rename {
    pub title: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewFeedback {
    /// 1 (helpful) or -1 (not helpful).
    pub rating: i64,
    /// At most 2000 characters.
    pub comment: Option<String>,
}

fn id<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(id)| id)
        .map_err(|e| ApiError::BadRequest(format!("invalid id in the path: {}", e.body_text())))
}

fn check_title(title: &str, may_be_empty: bool) -> Result<String, ApiError> {
    let t = title.trim();
    if t.is_empty() && !may_be_empty {
        return Err(ApiError::BadRequest("the title is empty".into()));
    }
    if t.chars().count() > MAX_TITLE_CHARS {
        return Err(ApiError::BadRequest(format!(
            "the title is longer than {MAX_TITLE_CHARS} characters"
        )));
    }
    Ok(t.to_string())
}

fn no_conversation(id: ConversationId) -> ApiError {
    ApiError::NotFound(format!("you have no conversation {id}"))
}

/// The caller's conversation `id` (404 when it is missing or someone else's).
pub fn owned(
    state: &AppState,
    caller: &Caller,
    id: ConversationId,
) -> Result<Conversation, ApiError> {
    state
        .engine
        .meta
        .conversation(caller.user.id, id)?
        .ok_or_else(|| no_conversation(id))
}

/// The history for the next question of a conversation: its last `rag.max_history_turns`
/// turns, oldest first, each with the question retrieval ran with.
pub fn history(state: &AppState, id: ConversationId) -> Result<Vec<Turn>, ApiError> {
    let n = state.engine.config.rag.max_history_turns;
    Ok(state
        .engine
        .meta
        .messages(id, Some(n))?
        .into_iter()
        .map(|m| Turn {
            question: m.standalone_question,
            answer: m.answer,
        })
        .collect())
}

/// Conversations listed per page unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 100;
/// Most conversations in one page.
const MAX_PAGE: usize = 500;

#[derive(Debug, Deserialize)]
pub struct Page {
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

/// Your conversations, most recently used first, a page at a time.
#[utoipa::path(get, path = "/api/conversations", tag = "conversations",
    params(("offset" = Option<usize>, Query, description = "skip this many (default 0)"),
        ("limit" = Option<usize>, Query, description = "default 100, at most 500")),
    responses((status = 200, body = [Conversation]), (status = 400), (status = 401)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Vec<Conversation>>, ApiError> {
    let Query(page) = page.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = page.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    Ok(Json(state.engine.meta.conversations(
        caller.user.id,
        page.offset,
        limit,
    )?))
}

/// Start a conversation (optionally about one knowledge base).
#[utoipa::path(post, path = "/api/conversations", tag = "conversations",
    request_body = NewConversation,
    responses((status = 201, body = Conversation), (status = 400),
        (status = 404, description = "no such knowledge base that you may read")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<NewConversation>, JsonRejection>,
) -> Result<(StatusCode, Json<Conversation>), ApiError> {
    let Json(b) = body?;
    let title = check_title(&b.title, true)?;
    let kb = b.kb.as_deref().map(str::trim).filter(|k| !k.is_empty());
    if let Some(kb) = kb {
        ask::scope(&state, &caller, Some(kb))?;
    }
    let c = state
        .engine
        .meta
        .create_conversation(caller.user.id, &title, kb)?;
    Ok((StatusCode::CREATED, Json(c)))
}

/// Rename one of your conversations.
#[utoipa::path(patch, path = "/api/conversations/{id}", tag = "conversations",
    request_body = Rename, params(("id" = i64, Path)),
    responses((status = 200, body = Conversation), (status = 400), (status = 404)))]
pub async fn rename(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<ConversationId>, PathRejection>,
    body: Result<Json<Rename>, JsonRejection>,
) -> Result<Json<Conversation>, ApiError> {
    let id = id(path)?;
    let Json(b) = body?;
    let title = check_title(&b.title, false)?;
    state
        .engine
        .meta
        .rename_conversation(caller.user.id, id, &title)?
        .map(Json)
        .ok_or_else(|| no_conversation(id))
}

/// Delete one of your conversations with its messages and feedback.
#[utoipa::path(delete, path = "/api/conversations/{id}", tag = "conversations",
    params(("id" = i64, Path)), responses((status = 204), (status = 404)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<ConversationId>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = id(path)?;
    if state.engine.meta.delete_conversation(caller.user.id, id)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_conversation(id))
    }
}

/// The turns of one of your conversations, oldest first, with your feedback on each, and
/// each answer's citation check (`claims`, `unsourced_numbers`, as in `/api/ask`'s `done`;
/// made again from the stored answer and passages, with today's `rag.claim_min_coverage`).
#[utoipa::path(get, path = "/api/conversations/{id}/messages", tag = "conversations",
    params(("id" = i64, Path)),
    responses((status = 200, body = [Message]), (status = 404)))]
pub async fn messages(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<ConversationId>, PathRejection>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let id = id(path)?;
    let c = owned(&state, &caller, id)?;
    let engine = &state.engine;
    let min = engine.config.rag.claim_min_coverage;
    let mut out = Vec::new();
    for m in engine.meta.messages(c.id, None)? {
        let check = if m.outcome == "generated" || m.outcome == "extractive" {
            let cited: Vec<Cited> = m
                .citations
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| {
                    Some(Cited {
                        index: usize::try_from(c.get("index")?.as_u64()?).ok()?,
                        text: c.get("text")?.as_str()?,
                        kb: 0,
                    })
                })
                .collect();
            claims::check_cited(&engine.keyword, &m.answer, &cited, min)
        } else {
            ClaimCheck::default()
        };
        let mut v = serde_json::to_value(&m).map_err(ApiError::internal)?;
        if let (Some(obj), serde_json::Value::Object(extra)) = (
            v.as_object_mut(),
            serde_json::to_value(&check).map_err(ApiError::internal)?,
        ) {
            obj.extend(extra);
        }
        out.push(v);
    }
    Ok(Json(out))
}

/// Rate one of your answers (posting again replaces your earlier rating).
#[utoipa::path(post, path = "/api/messages/{id}/feedback", tag = "conversations",
    request_body = NewFeedback, params(("id" = i64, Path)),
    responses((status = 204), (status = 400), (status = 404)))]
pub async fn feedback(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<MessageId>, PathRejection>,
    body: Result<Json<NewFeedback>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let id = id(path)?;
    let Json(b) = body?;
    if b.rating != 1 && b.rating != -1 {
        return Err(ApiError::BadRequest(format!(
            "rating must be 1 (helpful) or -1 (not helpful), not {}",
            b.rating
        )));
    }
    let comment = b
        .comment
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty());
    if comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS)
    {
        return Err(ApiError::BadRequest(format!(
            "the comment is longer than {MAX_COMMENT_CHARS} characters"
        )));
    }
    let f = Feedback {
        rating: b.rating as i8,
        comment,
    };
    if state.engine.meta.set_feedback(caller.user.id, id, &f)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("you have no message {id}")))
    }
}
