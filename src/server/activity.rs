//! What is kept of every question, whichever endpoint it came through: a row in the query
//! log, the blocked answer for admins when the content filter stopped it, and the turn in
//! its conversation when it was asked in the web chat.
//!
//! Recording never fails a question: the answer has been given, so an error writing these
//! rows is logged and the answer goes out.

use zhiku_core::rag::{Answer, Outcome, Prompts};
use zhiku_core::store::meta::{ConversationId, MessageId, MetaStore, NewMessage, QueryRecord, Via};

use super::auth::{Caller, Credential};
use super::error::ApiError;

/// Who asks a question, how it came in, and where its turn is kept.
#[derive(Debug, Clone)]
pub struct Asker {
    pub user_id: i64,
    pub user: String,
    pub via: Via,
    /// The web chat's conversation the finished turn is stored in; `None` stores nothing.
    pub conversation: Option<ConversationId>,
}

impl Asker {
    /// `caller` asking through `via`, outside any conversation.
    pub fn new(caller: &Caller, via: Via) -> Self {
        Self {
            user_id: caller.user.id,
            user: caller.user.name.clone(),
            via,
            conversation: None,
        }
    }

    /// `caller` asking through the REST API: the web chat for a browser session, the API
    /// for a token.
    pub fn rest(caller: &Caller) -> Self {
        let via = match caller.credential {
            Credential::Session { .. } => Via::Web,
            Credential::Token => Via::Api,
        };
        Self::new(caller, via)
    }
}

/// The outcome as stored: `generated`, `extractive`, `not_found` or `blocked`.
pub fn outcome_name(outcome: Outcome) -> String {
    serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Record one question in the query log: `result` is its answer, or the error that ended
/// it (outcome `error`). `kbs` are the knowledge bases searched.
pub fn log_query(
    meta: &MetaStore,
    asker: &Asker,
    kbs: &[String],
    question: &str,
    result: Result<&Answer, &ApiError>,
) {
    let flags: Vec<String> = match result {
        Ok(a) => a.flags.iter().map(|f| f.to_string()).collect(),
        Err(_) => zhiku_core::rag::guard::injection(question)
            .map(|phrase| {
                zhiku_core::rag::guard::Flag {
                    chunk: None,
                    phrase,
                }
                .to_string()
            })
            .into_iter()
            .collect(),
    };
    let outcome = match result {
        Ok(a) => outcome_name(a.outcome),
        Err(_) => "error".into(),
    };
    let answer = result.ok();
    let record = QueryRecord {
        user_id: Some(asker.user_id),
        user: &asker.user,
        kbs,
        question,
        outcome: &outcome,
        citations: answer.map_or(0, |a| a.citations.len()),
        retrieval_ms: answer.map(|a| a.retrieval_ms),
        total_ms: answer.map(|a| a.total_ms),
        ttft_ms: answer.and_then(|a| a.ttft_ms),
        via: asker.via,
        flags: &flags,
    };
    if !flags.is_empty() {
        tracing::warn!(user = %asker.user, ?flags, "instruction-like text in a question or its passages");
    }
    if let Err(e) = meta.log_query(&record) {
        tracing::error!(error = %e, "cannot write the query log");
    }
}

/// Replace an answer that contains the blocked `word` by the refusal in its language (the
/// `blocked` template), without citations, and log it for admins with what had been
/// written.
pub fn withhold(
    meta: &MetaStore,
    prompts: &Prompts,
    asker: &Asker,
    answer: &mut Answer,
    word: &str,
) {
    if let Err(e) = meta.log_blocked(
        &asker.user,
        asker.via,
        &answer.question,
        word,
        &answer.answer,
    ) {
        tracing::error!(error = %e, "cannot log a blocked answer");
    }
    tracing::warn!(user = %asker.user, word, "answer blocked by the content filter");
    let refusal = prompts
        .get_lang("blocked", answer.lang)
        .or_else(|_| Prompts::built_in().get_lang("blocked", answer.lang))
        .unwrap_or_default();
    answer.answer = refusal;
    answer.outcome = Outcome::Blocked;
    answer.citations.clear();
    answer.check = Default::default();
    answer.notice = None;
}

/// Store a finished answer as the next turn of `conversation`; `None` (logged) when it
/// cannot be written.
pub fn store_turn(
    meta: &MetaStore,
    conversation: ConversationId,
    answer: &Answer,
) -> Option<MessageId> {
    let citations = serde_json::to_string(&answer.citations).unwrap_or_else(|_| "[]".into());
    let outcome = outcome_name(answer.outcome);
    let message = NewMessage {
        question: &answer.question,
        standalone_question: &answer.standalone_question,
        answer: &answer.answer,
        citations: &citations,
        outcome: &outcome,
        notice: answer.notice.as_deref(),
        retrieval_ms: answer.retrieval_ms,
        ttft_ms: answer.ttft_ms,
        total_ms: answer.total_ms,
    };
    match meta.add_message(conversation, &message) {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::error!(error = %e, conversation, "cannot store the conversation turn");
            None
        }
    }
}
