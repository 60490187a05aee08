//! `GET/POST /wecom/callback` (`wecom.callback_path`): employees ask zhiku from the WeCom
//! self-built app.
//!
//! - `GET` is WeCom's URL check: verify the signature, decrypt `echostr`, return it.
//! - `POST` carries an encrypted message. After the checks (timestamp within
//!   `wecom.max_clock_skew_secs`, signature, nonce not seen in that window: 403 otherwise,
//!   logged) the message is recorded by its MsgId and the callback answered at once with an
//!   empty 200; the answer is written in the background and sent with `message/send`.
//!   WeCom gives up on a callback after 5 s and posts it again (three times): a MsgId seen
//!   before is answered 200 and otherwise ignored, across restarts too (the states are in
//!   [`zhiku_core::store::meta`]'s `wecom` module). [`start`] finishes, after a restart, the
//!   messages accepted but not yet answered.
//! - The sender is mapped to a zhiku user (`[wecom.users]`, else the account linked to the
//!   WeCom userid, else a new member of `wecom.default_group`), and the answer uses only the
//!   knowledge bases that user may read, logged like any question (via `wecom`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tracing::Instrument;

use crate::wecom::message::{Envelope, Incoming};
use crate::wecom::robot::{PER_MINUTE, Window};
use crate::wecom::{App, Wecom, WecomError, check_timestamp, reply};
use zhiku_core::rag::Lang;
use zhiku_core::store::meta::{
    MetaError, Role, User, Via, WecomMessage, WecomRecovery, valid_account_name,
};

use crate::activity::Asker;
use crate::ask::{answer_in_background, check_question, final_answer, scope};
use crate::auth::{Caller, Credential};
use crate::error::ApiError;
use crate::state::AppState;

/// Attempts at sending one message when WeCom cannot be reached.
const SEND_ATTEMPTS: u32 = 3;
/// Wait before the second attempt; doubled for each one after.
const SEND_BACKOFF: Duration = Duration::from_millis(500);

/// The callback's routes, when the WeCom app is configured.
pub fn routes(state: &AppState) -> Option<Router<AppState>> {
    let w = state.wecom.as_ref()?;
    w.app.as_ref()?;
    Some(Router::new().route(&w.config.callback_path, get(verify).post(receive)))
}

/// Background work of the integration, at server start: the group robot's sender, and the
/// answers of messages accepted before a restart but never sent.
pub fn start(state: &AppState) {
    let Some(w) = state.wecom.clone() else {
        return;
    };
    if w.robot.is_some() {
        let robot = w.clone();
        tokio::spawn(async move {
            if let Some(r) = &robot.robot {
                r.run(Window::new(PER_MINUTE, Duration::from_secs(60)))
                    .await;
            }
        });
    }
    if w.app.is_none() {
        return;
    }
    let max_age_secs = w.config.recover_max_age_secs;
    match state.engine.meta.wecom_recover(max_age_secs) {
        Ok(WecomRecovery {
            unknown,
            expired,
            waiting,
        }) => {
            if unknown > 0 {
                tracing::warn!(
                    messages = unknown,
                    "WeCom answers were being sent when zhiku stopped; not sent again"
                );
            }
            if expired > 0 {
                tracing::warn!(
                    messages = expired,
                    max_age_secs,
                    "WeCom messages accepted before the restart are too old to answer \
                     (wecom.recover_max_age_secs); marked expired, not answered"
                );
            }
            if !waiting.is_empty() {
                tracing::info!(
                    messages = waiting.len(),
                    "answering WeCom messages accepted before the restart"
                );
                let state = state.clone();
                tokio::spawn(async move {
                    for msg in waiting {
                        answer(state.clone(), msg).await;
                    }
                });
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot read the WeCom messages waiting for answers"),
    }
}

/// The signed query of a callback.
#[derive(Debug, Deserialize)]
pub struct Signed {
    msg_signature: String,
    timestamp: String,
    nonce: String,
    /// URL check only.
    echostr: Option<String>,
}

/// A refused callback: 403 for a failed check (forgery or replay), 400 for a malformed one.
enum Refusal {
    Forbidden(String),
    BadRequest(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Forbidden(why) => {
                tracing::warn!(reason = %why, "WeCom callback refused");
                (StatusCode::FORBIDDEN, "forbidden").into_response()
            }
            Refusal::BadRequest(why) => {
                tracing::warn!(reason = %why, "malformed WeCom callback");
                (StatusCode::BAD_REQUEST, "bad request").into_response()
            }
        }
    }
}

fn app(state: &AppState) -> Result<(&Wecom, &App), Refusal> {
    let w = state
        .wecom
        .as_deref()
        .ok_or_else(|| Refusal::Forbidden("the WeCom app is not configured".into()))?;
    let app = w
        .app
        .as_ref()
        .ok_or_else(|| Refusal::Forbidden("the WeCom app is not configured".into()))?;
    Ok((w, app))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Timestamp in the window, signature right, nonce new (in that order: only signed
/// callbacks are remembered), then the decrypted text.
fn open(state: &AppState, q: &Signed, encrypted: &str) -> Result<String, Refusal> {
    let (w, app) = app(state)?;
    let skew = w.config.max_clock_skew_secs;
    let timestamp = check_timestamp(&q.timestamp, unix_now(), skew)
        .map_err(|e| Refusal::Forbidden(e.to_string()))?;
    app.crypto
        .verify(&q.msg_signature, &q.timestamp, &q.nonce, encrypted)
        .map_err(|e| Refusal::Forbidden(e.to_string()))?;
    match state
        .engine
        .meta
        .wecom_fresh_nonce(&q.nonce, timestamp, skew)
    {
        Ok(true) => {}
        Ok(false) => {
            return Err(Refusal::Forbidden(format!(
                "nonce {} was already used (a replayed callback)",
                q.nonce
            )));
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot check the WeCom nonce");
            return Err(Refusal::Forbidden("the nonce cannot be checked".into()));
        }
    }
    app.crypto
        .decrypt(encrypted)
        .map_err(|e| Refusal::BadRequest(e.to_string()))
}

/// WeCom's URL check (when the callback URL is saved in the admin console): the decrypted
/// `echostr`.
pub async fn verify(State(state): State<AppState>, Query(q): Query<Signed>) -> Response {
    // A `+` that reached us unescaped was decoded as a space; base64 has no spaces.
    let Some(echostr) = q.echostr.as_deref().map(|e| e.replace(' ', "+")) else {
        return Refusal::BadRequest("a GET without echostr".into()).into_response();
    };
    match open(&state, &q, &echostr) {
        Ok(plain) => {
            tracing::info!("WeCom callback URL verified");
            plain.into_response()
        }
        Err(r) => r.into_response(),
    }
}

/// A message from an employee: checked, recorded, answered later; the reply is an empty 200.
pub async fn receive(
    State(state): State<AppState>,
    Query(q): Query<Signed>,
    body: String,
) -> Response {
    let envelope = match Envelope::parse(&body) {
        Ok(e) => e,
        Err(e) => return Refusal::BadRequest(e.to_string()).into_response(),
    };
    let xml = match open(&state, &q, &envelope.encrypt) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let msg = match Incoming::parse(&xml) {
        Ok(Incoming::Text(t)) => WecomMessage {
            msg_id: t.msg_id,
            from_user: t.from,
            content: t.content,
        },
        Ok(Incoming::Other { kind, from, msg_id }) => {
            tracing::info!(kind, from = %from, "WeCom message that is not text");
            WecomMessage {
                msg_id,
                from_user: from,
                content: String::new(),
            }
        }
        Ok(Incoming::Event { kind, from }) => {
            tracing::debug!(kind, from = %from, "WeCom event ignored");
            return StatusCode::OK.into_response();
        }
        Err(e) => return Refusal::BadRequest(e.to_string()).into_response(),
    };
    match state.engine.meta.wecom_accept(&msg) {
        Ok(true) => {
            tokio::spawn(answer(state.clone(), msg));
        }
        Ok(false) => {
            tracing::info!(msg_id = %msg.msg_id, "WeCom retry of a message already accepted");
        }
        Err(e) => {
            // Not recorded, so not answered: a 500 makes WeCom try again.
            tracing::error!(error = %e, "cannot record a WeCom message");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    StatusCode::OK.into_response()
}

/// Answer an accepted message and send the answer (once).
pub async fn answer(state: AppState, msg: WecomMessage) {
    let span = tracing::info_span!("wecom_message", msg_id = %msg.msg_id, from = %msg.from_user);
    async move {
        let Ok((_, app)) = app(&state) else {
            return;
        };
        let parts = reply_for(&state, app, &msg).await;
        deliver(&state, app, &msg, &parts).await;
    }
    .instrument(span)
    .await
}

/// The short notes sent instead of an answer.
#[derive(Debug, Clone, Copy)]
enum Note {
    TextOnly,
    TooFast,
    NoKnowledgeBase,
    TooLong,
    Busy,
    Failed,
}

fn note(note: Note, lang: Lang) -> String {
    let zh = lang == Lang::Zh;
    let s = match (note, zh) {
        (Note::TextOnly, _) => {
            "目前只能回答文字消息，请用文字提问。\nI can only read text messages; please type your question."
        }
        (Note::TooFast, true) => "您提问太频繁了，请稍等一分钟再问。",
        (Note::TooFast, false) => "You are asking too quickly; please wait a minute and ask again.",
        (Note::NoKnowledgeBase, true) => "您还没有可以查询的知识库，请联系管理员为您所在的组授权。",
        (Note::NoKnowledgeBase, false) => {
            "You may not read any knowledge base yet; ask an admin to grant your group one."
        }
        (Note::TooLong, true) => "问题太长了，请精简后再问。",
        (Note::TooLong, false) => "The question is too long; please shorten it.",
        (Note::Busy, true) => "提问的人太多了，请稍后再问。",
        (Note::Busy, false) => "Too many questions are waiting; please ask again shortly.",
        (Note::Failed, true) => "抱歉，暂时无法回答，请稍后再试。",
        (Note::Failed, false) => "Sorry, I cannot answer right now; please try again later.",
    };
    s.to_string()
}

/// The messages to send for `msg`: the answer with its sources, or a note.
async fn reply_for(state: &AppState, app: &App, msg: &WecomMessage) -> Vec<String> {
    let lang = Lang::detect(&msg.content);
    let say = |n: Note| vec![note(n, lang)];
    if msg.content.trim().is_empty() {
        return say(Note::TextOnly);
    }
    if !app.allow_question(&msg.from_user) {
        tracing::info!("WeCom question over the per-user limit");
        return say(Note::TooFast);
    }
    let user = match resolve_user(state, app, &msg.from_user) {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "cannot map the WeCom user to a zhiku user");
            return say(Note::Failed);
        }
    };
    let caller = Caller {
        user,
        credential: Credential::Token,
        ip: None,
    };
    let question = match check_question(&msg.content) {
        Ok(q) => q.to_string(),
        Err(_) => return say(Note::TooLong),
    };
    let scope = match scope(state, &caller, None) {
        Ok(s) => s,
        Err(ApiError::Forbidden(_)) => return say(Note::NoKnowledgeBase),
        Err(e) => {
            tracing::error!(error = %e, "cannot find the user's knowledge bases");
            return say(Note::Failed);
        }
    };
    let asker = Asker::new(&caller, Via::Wecom);
    let finished = match answer_in_background(state, scope, asker, question, vec![], None).await {
        Ok(rx) => final_answer(rx).await,
        Err(e) => Err(e),
    };
    match finished {
        Ok(f) => {
            let cfg = &state.engine.config;
            let parts = reply::answer_messages(
                &f.answer,
                cfg.server.public_url.as_deref(),
                cfg.wecom.message_type,
            );
            if parts.is_empty() {
                say(Note::Failed)
            } else {
                parts
            }
        }
        Err(ApiError::Unavailable { .. }) => say(Note::Busy),
        Err(e) => {
            tracing::error!(error = %e, "the WeCom question could not be answered");
            say(Note::Failed)
        }
    }
}

/// The zhiku user behind a WeCom userid: `[wecom.users]` (userids compare without case, as
/// WeCom's do), else the account linked to it, else a new member of `wecom.default_group`
/// (created when missing), named after the userid (or `wecom-<userid>` when that name is
/// taken: an existing account is never taken over by name).
fn resolve_user(state: &AppState, app: &App, wecom_user: &str) -> Result<User, MetaError> {
    let m = &state.engine.meta;
    let cfg = &state.engine.config.wecom;
    if let Some((_, name)) = cfg
        .users
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(wecom_user))
    {
        return m.require_user(name);
    }
    // One provisioning at a time: two first messages of one employee make one account.
    let _one = app.provisioning.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(u) = m.user_by_wecom(wecom_user)? {
        return Ok(u);
    }
    let group = m.ensure_group(&cfg.default_group)?;
    let names = [wecom_user.to_string(), format!("wecom-{wecom_user}")];
    let mut last = MetaError::BadAccountName {
        kind: "user",
        name: wecom_user.to_string(),
    };
    for name in names.iter().filter(|n| valid_account_name(n)) {
        match m.create_user(name, None, Role::Member) {
            Ok(id) => {
                m.set_wecom_user(id, Some(wecom_user))?;
                m.add_to_group(id, group)?;
                let detail = format!(
                    "provisioned for WeCom user {wecom_user} into group {}",
                    cfg.default_group
                );
                if let Err(e) = m.audit("wecom", "user.create", name, &detail, None) {
                    tracing::error!(error = %e, "cannot write the audit log");
                }
                tracing::info!(user = %name, group = %cfg.default_group, "WeCom user provisioned");
                return m.require_user(name);
            }
            Err(e @ MetaError::UserExists(_)) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Send `parts` once: only a message still `accepted` is sent (a retry, or a second task,
/// finds it `sending` or finished and stops). A failure to reach WeCom is tried again; an
/// answer WeCom may have received is not.
async fn deliver(state: &AppState, app: &App, msg: &WecomMessage, parts: &[String]) {
    let meta = &state.engine.meta;
    match meta.wecom_start_sending(&msg.msg_id) {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::error!(error = %e, "cannot record the WeCom message's state; not sending");
            return;
        }
    }
    let mut failure: Option<WecomError> = None;
    'parts: for part in parts {
        let mut wait = SEND_BACKOFF;
        for attempt in 1..=SEND_ATTEMPTS {
            match app.api.send(&msg.from_user, part).await {
                Ok(()) => continue 'parts,
                Err(e @ WecomError::Unreachable { .. }) if attempt < SEND_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "WeCom unreachable; trying again");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => {
                    failure = Some(e);
                    break 'parts;
                }
            }
        }
    }
    let error = failure.map(|e| e.to_string());
    match &error {
        None => tracing::info!(messages = parts.len(), "WeCom answer sent"),
        Some(e) => tracing::error!(error = %e, "cannot send the WeCom answer"),
    }
    if let Err(e) = meta.wecom_finish(&msg.msg_id, error.as_deref()) {
        tracing::error!(error = %e, "cannot record the WeCom message's state");
    }
}

/// The integration for the shared state ([`AppState`]): logged and off when misconfigured.
pub fn from_config(cfg: &zhiku_core::config::WecomConfig) -> Option<Arc<Wecom>> {
    match Wecom::from_config(cfg) {
        Ok(w) => w.map(Arc::new),
        Err(e) => {
            tracing::error!(error = %e, "the WeCom integration is off");
            None
        }
    }
}
