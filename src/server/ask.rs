//! Questions: `POST /api/ask` answers from the knowledge bases the caller may read,
//! streamed as server-sent events (`delta` pieces of text, then `done` with the whole
//! answer and its citations, or `error`), or as one JSON answer with `"stream": false`.
//!
//! The answer pipeline is blocking (model inference); it runs on a blocking thread and
//! hands text to the response through a channel. When the client goes away the channel
//! closes, the next piece of text fails to send, and generation stops.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::generate::{Generator, SamplingParams};
use crate::rag::{self, Answer, Turn};
use crate::store::KbId;

use super::auth::Caller;
use super::error::ApiError;
use super::state::AppState;

/// Longest question accepted, in characters.
pub const MAX_QUESTION_CHARS: usize = 4000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AskRequest {
    pub question: String,
    /// Knowledge base to ask; default: every one the caller may read.
    pub kb: Option<String>,
    /// Earlier turns of this chat, oldest first (for follow-up questions).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub history: Vec<Turn>,
    /// Stream server-sent events (default) or return one JSON answer.
    #[serde(default = "yes")]
    pub stream: bool,
}

fn yes() -> bool {
    true
}

/// What one question will be answered from: the caller's knowledge bases (ids and names).
pub struct Scope {
    pub kbs: Vec<KbId>,
    pub names: Vec<String>,
}

/// The knowledge bases a question by `caller` may use: `kb` if given and readable (a 404
/// otherwise, the same whether it is missing or forbidden, so names do not leak), else all
/// the caller may read (403 when that is none).
pub fn scope(state: &AppState, caller: &Caller, kb: Option<&str>) -> Result<Scope, ApiError> {
    let readable = caller.readable_kbs(state)?;
    let all = state.engine.meta.list_kbs()?;
    let mine = all.into_iter().filter(|k| readable.contains(&k.id));
    let chosen: Vec<_> = match kb {
        Some(name) => {
            let found: Vec<_> = mine.filter(|k| k.name == name).collect();
            if found.is_empty() {
                return Err(ApiError::NotFound(format!(
                    "no knowledge base `{name}` that you may read"
                )));
            }
            found
        }
        None => mine.collect(),
    };
    if chosen.is_empty() {
        return Err(ApiError::Forbidden(
            "you may not read any knowledge base yet; ask an admin to grant your group one".into(),
        ));
    }
    Ok(Scope {
        kbs: chosen.iter().map(|k| k.id).collect(),
        names: chosen.into_iter().map(|k| k.name).collect(),
    })
}

/// Check a question's text.
pub fn check_question(q: &str) -> Result<&str, ApiError> {
    let q = q.trim();
    if q.is_empty() {
        return Err(ApiError::BadRequest("the question is empty".into()));
    }
    if q.chars().count() > MAX_QUESTION_CHARS {
        return Err(ApiError::BadRequest(format!(
            "the question is longer than {MAX_QUESTION_CHARS} characters"
        )));
    }
    Ok(q)
}

/// What the answering thread sends.
pub enum Progress {
    Text(String),
    Done(Box<Answer>),
    Failed(ApiError),
}

/// What `/api/ask` and `/v1/chat/completions` both do with a question: count it against the
/// rate limits (refused questions count too), check its text, pick the knowledge bases
/// (`kb`, else all the caller may read), then answer it in the background.
pub async fn start_answer(
    state: &AppState,
    peer: std::net::IpAddr,
    caller: &Caller,
    question: &str,
    kb: Option<&str>,
    history: Vec<Turn>,
    sampling: Option<SamplingParams>,
) -> Result<mpsc::Receiver<Progress>, ApiError> {
    state.check_question_rate(peer, caller.user.id)?;
    let question = check_question(question)?.to_string();
    let scope = scope(state, caller, kb)?;
    answer_in_background(state, scope, question, history, sampling).await
}

/// Answer `question` on a blocking thread, sending its text as it comes. Waits for a
/// generation slot first when a generator will run (503 at once when the queue is full).
/// `sampling`: the request's own parameters; `None` = `generate.sampling`.
pub async fn answer_in_background(
    state: &AppState,
    scope: Scope,
    question: String,
    history: Vec<Turn>,
    sampling: Option<SamplingParams>,
) -> Result<mpsc::Receiver<Progress>, ApiError> {
    let names = scope.names.clone();
    let s = state.clone();
    let generator: Option<Arc<dyn Generator>> =
        tokio::task::spawn_blocking(move || s.generator_for(&names))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::Unavailable {
                retry_after: 30,
                message: format!("the answer model cannot be loaded: {e}"),
            })?;
    let permit = match generator {
        Some(_) => Some(state.generation_slot().await?),
        None => None,
    };
    let (tx, rx) = mpsc::channel(64);
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let engine = &state.engine;
        let sampling = sampling.unwrap_or_else(|| engine.config.generate.sampling.clone());
        let result = rag::ask_with(
            engine,
            generator.as_deref(),
            &sampling,
            &question,
            &history,
            &scope.kbs,
            &mut |piece| match tx.blocking_send(Progress::Text(piece.to_string())) {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            },
        );
        state.metrics.observe_answer(result.as_ref().ok());
        let last = match result {
            Ok(answer) => Progress::Done(Box::new(answer)),
            Err(e) => Progress::Failed(e.into()),
        };
        let _ = tx.blocking_send(last);
    });
    Ok(rx)
}

/// Wait for the whole answer (a non-streamed response), skipping the pieces of text.
pub async fn final_answer(mut rx: mpsc::Receiver<Progress>) -> Result<Box<Answer>, ApiError> {
    while let Some(p) = rx.recv().await {
        match p {
            Progress::Text(_) => {}
            Progress::Done(answer) => return Ok(answer),
            Progress::Failed(e) => return Err(e),
        }
    }
    Err(ApiError::internal("the answer stopped without a result"))
}

/// Ask a question of the knowledge bases you may read.
#[utoipa::path(post, path = "/api/ask", tag = "answers", request_body = AskRequest,
    responses(
        (status = 200, description = "`text/event-stream` of `delta` {text}, then `done` (the answer with citations) or `error`; with stream=false one JSON answer"),
        (status = 400), (status = 401), (status = 404), (status = 429), (status = 503)))]
pub async fn ask(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    body: Result<Json<AskRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    let rx = start_answer(
        &state,
        peer.ip(),
        &caller,
        &req.question,
        req.kb.as_deref(),
        req.history,
        None,
    )
    .await?;
    if !req.stream {
        return Ok(Json(final_answer(rx).await?).into_response());
    }
    Ok(Sse::new(events(rx))
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn events(rx: mpsc::Receiver<Progress>) -> impl Stream<Item = Result<Event, Infallible>> {
    ReceiverStream::new(rx).map(|p| {
        Ok(match p {
            Progress::Text(text) => Event::default()
                .event("delta")
                .data(serde_json::json!({ "text": text }).to_string()),
            Progress::Done(answer) => Event::default()
                .event("done")
                .data(serde_json::to_string(&answer).unwrap_or_default()),
            Progress::Failed(e) => {
                tracing::warn!(error = %e, "answer failed");
                Event::default().event("error").data(e.body().to_string())
            }
        })
    })
}
