//! Questions: `POST /api/ask` answers from the knowledge bases the caller may read,
//! streamed as server-sent events (`delta` pieces of text, then `done` with the whole
//! answer and its citations, or `error`), or as one JSON answer with `"stream": false`.
//!
//! The answer pipeline is blocking (model inference); it runs on a blocking thread and
//! hands text to the response through a channel. When the client goes away the channel
//! closes, the next piece of text fails to send, and generation stops.
//!
//! Every answer passes the output content filter on its way out (a `replace` event carries
//! the refusal when a blocked word appears; see [`zhiku_core::rag::guard`]) and is recorded
//! ([`super::activity`]): the query log always, the conversation's turn when the question
//! names a `conversation_id` (its history then comes from the stored turns).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::ops::ControlFlow;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use zhiku_core::rag::guard::ContentFilter;
use zhiku_core::rag::{self, Answer, Outcome, Prompts, Turn};
use zhiku_core::store::meta::{ConversationId, MessageId};
use zhiku_core::store::{KbId, Reader};
use zhiku_llm::generate::SamplingParams;

use super::activity::{self, Asker};
use super::auth::Caller;
use super::conversations;
use super::error::ApiError;
use super::state::AppState;

/// Longest question accepted, in characters.
pub const MAX_QUESTION_CHARS: usize = 4000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AskRequest {
    pub question: String,
    /// Knowledge base to ask; default: every one the caller may read.
    pub kb: Option<String>,
    /// Earlier turns of this chat, oldest first (for follow-up questions). Ignored with
    /// `conversation_id`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub history: Vec<Turn>,
    /// One of your conversations: its stored turns are the history, and this turn is stored
    /// in it (the `done` answer then carries `message_id` and `conversation_id`). Its
    /// knowledge base is asked unless `kb` says otherwise.
    pub conversation_id: Option<ConversationId>,
    /// Stream server-sent events (default) or return one JSON answer.
    #[serde(default = "yes")]
    pub stream: bool,
}

fn yes() -> bool {
    true
}

/// What one question will be answered from: the caller's knowledge bases (ids and names)
/// and their rights inside them (folder and document rules), which both stores filter on.
pub struct Scope {
    pub kbs: Vec<KbId>,
    pub names: Vec<String>,
    pub reader: Reader,
}

/// The knowledge bases a question by `caller` may use: `kb` if given and readable (a 404
/// otherwise, the same whether it is missing or forbidden, so names do not leak), else all
/// the caller may read (403 when that is none). Within them, only what the caller's groups
/// may read ([`Scope::reader`]).
pub fn scope(state: &AppState, caller: &Caller, kb: Option<&str>) -> Result<Scope, ApiError> {
    let readable = caller.readable_kbs(state)?;
    let all = state.engine.meta.kb_names()?;
    let mine = all.into_iter().filter(|(id, _)| readable.contains(id));
    let chosen: Vec<_> = match kb {
        Some(name) => {
            let found: Vec<_> = mine.filter(|(_, n)| n == name).collect();
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
        kbs: chosen.iter().map(|(id, _)| *id).collect(),
        names: chosen.into_iter().map(|(_, n)| n).collect(),
        reader: state.engine.meta.reader_of(&caller.user)?,
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

/// A finished answer, with where its turn was stored (web chat).
#[derive(Debug, Serialize)]
pub struct Finished {
    #[serde(flatten)]
    pub answer: Answer,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<MessageId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<ConversationId>,
}

/// What the answering thread sends.
pub enum Progress {
    /// Answer text that passed the content filter.
    Text(String),
    /// The answer (for a blocked one: the refusal, outcome `blocked`, no citations).
    Done(Box<Finished>),
    Failed(ApiError),
}

/// What `/api/ask` and `/v1/chat/completions` both do with a question: count it against the
/// rate limits (refused questions count too), check its text, pick the knowledge bases
/// (`kb`, else all the caller may read), then answer it in the background.
#[allow(clippy::too_many_arguments)]
pub async fn start_answer(
    state: &AppState,
    peer: std::net::IpAddr,
    caller: &Caller,
    asker: Asker,
    question: &str,
    kb: Option<&str>,
    history: Vec<Turn>,
    sampling: Option<SamplingParams>,
) -> Result<mpsc::Receiver<Progress>, ApiError> {
    state.check_question_rate(peer, caller.user.id)?;
    let question = check_question(question)?.to_string();
    let scope = scope(state, caller, kb)?;
    answer_in_background(state, scope, asker, question, history, sampling).await
}

/// Answer `question` by `asker` on a blocking thread, sending its text as it comes through
/// the content filter, then record it ([`activity`]). Waits for a generation slot first when
/// a generator will run (503 at once when the queue is full). `sampling`: the request's own
/// parameters; `None` = `generate.sampling`.
pub async fn answer_in_background(
    state: &AppState,
    scope: Scope,
    asker: Asker,
    question: String,
    history: Vec<Turn>,
    sampling: Option<SamplingParams>,
) -> Result<mpsc::Receiver<Progress>, ApiError> {
    let generator = state.load_generator(scope.names.clone()).await?;
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
        let filter = ContentFilter::new(&engine.config.server.blocked_words);
        let mut stream = filter.stream();
        let mut blocked: Option<String> = None;
        let result = rag::ask_with(
            engine,
            generator.as_deref(),
            &sampling,
            &question,
            &history,
            &scope.kbs,
            &scope.reader,
            &mut |piece| {
                let passed = stream.push(piece);
                if !passed.text.is_empty() && tx.blocking_send(Progress::Text(passed.text)).is_err()
                {
                    return ControlFlow::Break(());
                }
                match passed.blocked {
                    Some(word) => {
                        blocked = Some(word);
                        ControlFlow::Break(())
                    }
                    None => ControlFlow::Continue(()),
                }
            },
        );
        let meta = &engine.meta;
        let last = match result {
            Ok(mut answer) => {
                // The final text too: dropping an invalid citation marker can join a word.
                let word = blocked.or_else(|| filter.find(&answer.answer).map(str::to_string));
                match word {
                    Some(word) => {
                        let prompts = Prompts::new(Some(&engine.config.prompts_dir()));
                        activity::withhold(meta, &prompts, &asker, &mut answer, &word);
                    }
                    None => {
                        let tail = stream.finish();
                        if !tail.is_empty() {
                            let _ = tx.blocking_send(Progress::Text(tail));
                        }
                    }
                }
                let kb_name = |id| {
                    let at = scope.kbs.iter().position(|&k| k == id)?;
                    scope.names.get(at).cloned()
                };
                state.metrics.observe_answer(Some(&answer), &kb_name);
                activity::log_query(meta, &asker, &scope.names, &question, Ok(&answer));
                let message_id = asker
                    .conversation
                    .and_then(|c| activity::store_turn(meta, c, &answer));
                Progress::Done(Box::new(Finished {
                    answer,
                    message_id,
                    conversation_id: asker.conversation,
                }))
            }
            Err(e) => {
                let e = ApiError::from(e);
                state.metrics.observe_answer(None, &|_| None);
                activity::log_query(meta, &asker, &scope.names, &question, Err(&e));
                Progress::Failed(e)
            }
        };
        let _ = tx.blocking_send(last);
    });
    Ok(rx)
}

/// Wait for the whole answer (a non-streamed response), skipping the pieces of text.
pub async fn final_answer(mut rx: mpsc::Receiver<Progress>) -> Result<Box<Finished>, ApiError> {
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
        (status = 200, description = "`text/event-stream` of `delta` {text}, then `done` (the answer with citations, and `message_id`/`conversation_id` when stored in a conversation) or `error`; when the content filter blocks the answer, a `replace` {text} event with the refusal comes before `done`. With stream=false one JSON answer"),
        (status = 400), (status = 401), (status = 404), (status = 429), (status = 503)))]
pub async fn ask(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    body: Result<Json<AskRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    let mut asker = Asker::rest(&caller);
    let (kb, history) = match req.conversation_id {
        Some(id) => {
            let c = conversations::owned(&state, &caller, id)?;
            asker.conversation = Some(c.id);
            let history = conversations::history(&state, c.id)?;
            (req.kb.or(c.kb), history)
        }
        None => (req.kb, req.history),
    };
    let rx = start_answer(
        &state,
        peer.ip(),
        &caller,
        asker,
        &req.question,
        kb.as_deref(),
        history,
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
    ReceiverStream::new(rx).flat_map(|p| {
        let events = match p {
            Progress::Text(text) => vec![
                Event::default()
                    .event("delta")
                    .data(serde_json::json!({ "text": text }).to_string()),
            ],
            Progress::Done(done) => {
                let mut events = Vec::with_capacity(2);
                if done.answer.outcome == Outcome::Blocked {
                    // Text already shown cannot be unsent: the page replaces it.
                    events.push(
                        Event::default()
                            .event("replace")
                            .data(serde_json::json!({ "text": done.answer.answer }).to_string()),
                    );
                }
                events.push(
                    Event::default()
                        .event("done")
                        .data(serde_json::to_string(&done).unwrap_or_default()),
                );
                events
            }
            Progress::Failed(e) => {
                tracing::warn!(error = %e, "answer failed");
                vec![Event::default().event("error").data(e.body().to_string())]
            }
        };
        futures_util::stream::iter(events.into_iter().map(Ok))
    })
}
