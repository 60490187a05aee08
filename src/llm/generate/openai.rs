//! An OpenAI-compatible chat-completions server inside the network (vLLM, llama.cpp server,
//! Ollama, TGI): `POST {url}/chat/completions` with `stream: true`, read as server-sent
//! events.
//!
//! - The model is `generate.remote_model`, else the first id of `GET {url}/models`.
//! - Timeouts: connecting (at most 10 s, or `timeout_secs` when lower), the answer's headers
//!   and every silence in the stream (`timeout_secs`).
//! - Retries (`max_retries`, exponential backoff from 250 ms, or the server's `Retry-After`
//!   up to 10 s) after a connection error, a 5xx or a 429, and only while no text has been
//!   passed on: a retry never repeats text the caller already showed.
//! - Sampling: `temperature`, `top_p`, `max_tokens`, `seed`, `stop` are standard;
//!   `top_k` (when above 0), `repetition_penalty` (vLLM, TGI) and `repeat_penalty` /
//!   `repeat_last_n` (llama.cpp, Ollama) are sent as the extra fields those servers read and
//!   the others ignore. OpenAI's `frequency_penalty` is not sent: it is additive, not the
//!   multiplicative penalty configured here. Stop strings are also enforced here, since not
//!   every server honours them.
//! - `http://` and `https://` (system root certificates) URLs; a bearer token from `api_key`.
//!
//! The client is hyper 1 on a private one-thread tokio runtime: `generate` is synchronous and
//! may be called from any thread, including `spawn_blocking` threads of another runtime.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Response, StatusCode};
use serde_json::Value;

use super::sampling::{Released, StopBuffer};
use super::{
    ChatMessage, FinishReason, GenerateError, GenerationStats, Generator, Result, SamplingParams,
};
use zhiku_core::config::GenerateConfig;
use zhiku_core::http::{Connection, Endpoint};

/// Context window assumed when neither the configuration nor the server says.
const DEFAULT_CONTEXT: usize = 4096;
/// Longest error body quoted in a message, bytes.
const MAX_ERROR_BODY: usize = 2000;

pub struct OpenAiGenerator {
    /// The base URL as configured, for messages.
    url: String,
    endpoint: Endpoint,
    api_key: Option<String>,
    model: String,
    context_length: usize,
    timeout: Duration,
    connect_timeout: Duration,
    max_retries: u32,
    backoff: Duration,
    rt: Option<tokio::runtime::Runtime>,
}

/// One failed attempt: the error, and whether another attempt may help.
struct Failure {
    error: GenerateError,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl OpenAiGenerator {
    /// Connect to the server at `cfg.url` (e.g. `http://vllm:8000/v1`): find the model (the
    /// configured one, or the server's first) and its context window.
    pub fn connect(cfg: &GenerateConfig) -> Result<Self> {
        let url = cfg
            .url
            .clone()
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| GenerateError::Server {
                url: "(unset)".into(),
                message: "[generate] backend = \"openai\" needs url, the server's base URL \
                          such as http://vllm:8000/v1"
                    .into(),
            })?;
        let bad = |message: String| GenerateError::Server {
            url: url.clone(),
            message,
        };
        let endpoint = Endpoint::parse(&url).map_err(|e| bad(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("zhiku-openai")
            .enable_all()
            .build()
            .map_err(|e| bad(format!("cannot start the HTTP client: {e}")))?;
        let timeout = Duration::from_secs(cfg.timeout_secs.max(1));
        let mut g = Self {
            url: url.trim().trim_end_matches('/').to_string(),
            endpoint,
            api_key: zhiku_core::config::Secret::exposed(&cfg.api_key)
                .filter(|k| !k.is_empty())
                .map(str::to_string),
            model: cfg.remote_model.clone().unwrap_or_default(),
            context_length: cfg.context_length.unwrap_or(DEFAULT_CONTEXT),
            timeout,
            connect_timeout: timeout.min(Duration::from_secs(10)),
            max_retries: cfg.max_retries,
            backoff: Duration::from_millis(250),
            rt: Some(rt),
        };
        match g.list_models() {
            Ok(models) => {
                let chosen = if g.model.is_empty() {
                    models.first().cloned().ok_or_else(|| {
                        bad("GET /models listed no model; set generate.remote_model".into())
                    })?
                } else {
                    models
                        .iter()
                        .find(|(id, _)| *id == g.model)
                        .cloned()
                        .unwrap_or((g.model.clone(), None))
                };
                g.model = chosen.0;
                if cfg.context_length.is_none()
                    && let Some(n) = chosen.1
                {
                    g.context_length = n;
                }
            }
            // With the model named, a server that is down now may be up at the first
            // question; without it there is nothing to send.
            Err(e) if !g.model.is_empty() => {
                tracing::warn!("{e}; using generate.remote_model = {}", g.model);
            }
            Err(e) => return Err(e),
        }
        Ok(g)
    }

    /// Use this first retry delay instead of 250 ms (tests).
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("runtime lives until drop")
    }

    fn server_error(&self, message: impl Into<String>) -> GenerateError {
        GenerateError::Server {
            url: self.url.clone(),
            message: message.into(),
        }
    }

    fn failure(&self, message: impl Into<String>, retryable: bool) -> Failure {
        Failure {
            error: self.server_error(message),
            retryable,
            retry_after: None,
        }
    }

    /// (id, context window) of every model the server lists.
    fn list_models(&self) -> Result<Vec<(String, Option<usize>)>> {
        let body = self.rt().block_on(async {
            let (resp, _conn) = self
                .send(Method::GET, "/models", None)
                .await
                .map_err(|f| f.error)?;
            let status = resp.status();
            let bytes = tokio::time::timeout(self.timeout, resp.into_body().collect())
                .await
                .map_err(|_| self.server_error("timed out reading GET /models"))?
                .map_err(|e| self.server_error(format!("reading GET /models: {e}")))?
                .to_bytes();
            if !status.is_success() {
                return Err(self.server_error(status_message(status, &bytes, "GET /models")));
            }
            Ok(bytes)
        })?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| self.server_error(format!("GET /models: not JSON: {e}")))?;
        let list = v["data"].as_array().cloned().unwrap_or_default();
        Ok(list
            .iter()
            .filter_map(|m| {
                let id = m["id"].as_str()?.to_string();
                let ctx = m["max_model_len"]
                    .as_u64()
                    .or_else(|| m["meta"]["n_ctx"].as_u64())
                    .map(|n| n as usize);
                Some((id, ctx))
            })
            .collect())
    }

    /// Open a connection and send one request; the response's headers are back.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> std::result::Result<(Response<Incoming>, Connection), Failure> {
        let mut conn = self
            .endpoint
            .connect(self.connect_timeout)
            .await
            .map_err(|e| self.failure(e.to_string(), e.is_retryable()))?;
        let mut req = self.endpoint.request(method, path);
        if let Some(key) = &self.api_key {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let req = match body {
            Some(b) => req
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header(hyper::header::ACCEPT, "text/event-stream")
                .body(Full::new(Bytes::from(b))),
            None => req.body(Full::new(Bytes::new())),
        }
        .map_err(|e| self.failure(format!("bad request: {e}"), false))?;
        let resp = tokio::time::timeout(self.timeout, conn.sender.send_request(req))
            .await
            .map_err(|_| {
                self.failure(
                    format!(
                        "no answer within {} s (generate.timeout_secs)",
                        self.timeout.as_secs()
                    ),
                    true,
                )
            })?
            .map_err(|e| self.failure(format!("request failed: {e}"), true))?;
        Ok((resp, conn))
    }

    fn request_body(&self, messages: &[ChatMessage], p: &SamplingParams) -> Vec<u8> {
        let penalty = (p.repetition_penalty - 1.0).abs() > f32::EPSILON;
        let body = wire::ChatRequest {
            model: &self.model,
            messages,
            stream: true,
            stream_options: wire::StreamOptions {
                include_usage: true,
            },
            max_tokens: p.max_tokens,
            temperature: p.temperature,
            top_p: p.top_p,
            seed: p.seed,
            stop: (!p.stop.is_empty()).then_some(&p.stop),
            top_k: (p.top_k > 0).then_some(p.top_k),
            repetition_penalty: penalty.then_some(p.repetition_penalty),
            repeat_penalty: penalty.then_some(p.repetition_penalty),
            repeat_last_n: penalty.then_some(p.repeat_last_n),
        };
        serde_json::to_vec(&body).expect("serialisable")
    }

    /// One attempt at a streamed completion. `emitted` becomes true once text was passed on.
    /// `prompt_estimate` stands in for the prompt tokens when the server reports no usage:
    /// servers without `stream_options`, and answers this side ends early (a stop string
    /// the server did not honour, a cancel), before the last chunk that carries it.
    async fn attempt(
        &self,
        body: &[u8],
        prompt_estimate: usize,
        params: &SamplingParams,
        start: Instant,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
        emitted: &mut bool,
    ) -> std::result::Result<GenerationStats, Failure> {
        let (resp, _conn) = self
            .send(Method::POST, "/chat/completions", Some(body.to_vec()))
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let retry_after = resp
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s.min(10)));
            let bytes = read_capped(resp.into_body(), self.timeout).await;
            let retryable = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
            return Err(Failure {
                error: self.server_error(status_message(status, &bytes, "POST /chat/completions")),
                retryable,
                retry_after,
            });
        }
        let event_stream = resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|ct| ct.contains("event-stream"));
        let mut body = resp.into_body();
        let mut sse = SseParser::default();
        let mut stop = StopBuffer::new(&params.stop);
        let mut state = StreamState::default();
        let mut whole = Vec::new();
        let mut first: Option<Instant> = None;
        let mut finish = None;
        'read: loop {
            let frame = tokio::time::timeout(self.timeout, body.frame())
                .await
                .map_err(|_| {
                    self.failure(
                        format!(
                            "the stream was silent for {} s (generate.timeout_secs)",
                            self.timeout.as_secs()
                        ),
                        true,
                    )
                })?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| self.failure(format!("stream broken: {e}"), true))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if !event_stream {
                whole.extend_from_slice(&data);
                continue;
            }
            for event in sse.feed(&data) {
                let pieces = state.event(&event).map_err(|m| self.failure(m, false))?;
                for piece in pieces {
                    let Released { text: out, stopped } = stop.push(&piece);
                    if !out.is_empty() {
                        first.get_or_insert_with(Instant::now);
                        *emitted = true;
                        if on_text(&out).is_break() {
                            finish = Some(FinishReason::Cancelled);
                            break 'read;
                        }
                    }
                    if stopped {
                        finish = Some(FinishReason::Stop);
                        break 'read;
                    }
                }
                if state.done {
                    break 'read;
                }
            }
        }
        if finish.is_none() {
            if !event_stream {
                // A server that ignored `stream: true`: one JSON completion.
                let v: Value = serde_json::from_slice(&whole)
                    .map_err(|e| self.failure(format!("answer is not JSON: {e}"), false))?;
                state
                    .event(&v.to_string())
                    .map_err(|m| self.failure(m, false))?;
                let text = v["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let Released { text: out, stopped } = stop.push(&text);
                if stopped {
                    finish = Some(FinishReason::Stop);
                }
                if !out.is_empty() {
                    first.get_or_insert_with(Instant::now);
                    *emitted = true;
                    if on_text(&out).is_break() {
                        finish = Some(FinishReason::Cancelled);
                    }
                }
            } else if !state.done && state.finish.is_none() {
                // Cut off: retried only when nothing was passed on yet (see `generate`).
                return Err(self.failure("the stream ended before the answer was complete", true));
            }
        }
        if finish.is_none() {
            let rest = stop.flush();
            if !rest.is_empty() {
                first.get_or_insert_with(Instant::now);
                *emitted = true;
                if on_text(&rest).is_break() {
                    finish = Some(FinishReason::Cancelled);
                }
            }
        }
        let finish = finish.or(state.finish).unwrap_or(FinishReason::Stop);
        let end = Instant::now();
        let completion_tokens = state.completion_tokens.unwrap_or(state.pieces);
        let ttft = first.map(|f| f - start).unwrap_or(end - start);
        let decode = first.map(|f| (end - f).as_secs_f64()).unwrap_or(0.0);
        let tokens_per_s = if completion_tokens > 1 && decode > 0.0 {
            (completion_tokens - 1) as f64 / decode
        } else {
            0.0
        };
        Ok(GenerationStats {
            prompt_tokens: state.prompt_tokens.unwrap_or(prompt_estimate),
            completion_tokens,
            ttft_ms: ttft.as_secs_f64() * 1e3,
            total_ms: (end - start).as_secs_f64() * 1e3,
            tokens_per_s,
            finish,
        })
    }
}

impl Drop for OpenAiGenerator {
    fn drop(&mut self) {
        // Dropping a runtime inside another runtime's async context panics; this does not.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Generator for OpenAiGenerator {
    fn model_id(&self) -> &str {
        &self.model
    }

    fn context_length(&self) -> usize {
        self.context_length
    }

    fn count_prompt_tokens(&self, messages: &[ChatMessage]) -> Result<usize> {
        Ok(3 + messages
            .iter()
            .map(|m| 4 + estimate_tokens(&m.content))
            .sum::<usize>())
    }

    fn generate(
        &self,
        messages: &[ChatMessage],
        params: &SamplingParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<GenerationStats> {
        let _span = tracing::debug_span!("openai", model = %self.model).entered();
        let body = self.request_body(messages, params);
        let prompt_estimate = self.count_prompt_tokens(messages)?;
        let start = Instant::now();
        // The request runs on the private runtime in a scoped thread, and its text comes back
        // over a channel: `on_text` runs here, on the caller's thread, outside any runtime.
        // A caller may block in it (the server hands each piece to its async side with
        // `blocking_send`), which inside `block_on` panics.
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let stop = &stop;
            let body = &body;
            let worker = s.spawn(move || {
                let mut forward = |piece: &str| {
                    if stop.load(Ordering::Relaxed) || tx.send(piece.to_string()).is_err() {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                };
                self.rt().block_on(self.attempts(
                    body,
                    prompt_estimate,
                    params,
                    start,
                    messages,
                    &mut forward,
                ))
            });
            for piece in &rx {
                if on_text(&piece).is_break() {
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
            }
            drop(rx);
            worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl OpenAiGenerator {
    /// Attempts of one request, with retries while no text was emitted.
    async fn attempts(
        &self,
        body: &[u8],
        prompt_estimate: usize,
        params: &SamplingParams,
        start: Instant,
        messages: &[ChatMessage],
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<GenerationStats> {
        let mut attempt = 0;
        loop {
            let mut emitted = false;
            match self
                .attempt(body, prompt_estimate, params, start, on_text, &mut emitted)
                .await
            {
                Ok(stats) => return Ok(stats),
                Err(f) if f.retryable && !emitted && attempt < self.max_retries => {
                    let delay = f
                        .retry_after
                        .unwrap_or(self.backoff * 2u32.saturating_pow(attempt));
                    tracing::warn!(
                        "{}; retry {} of {} in {:?}",
                        f.error,
                        attempt + 1,
                        self.max_retries,
                        delay
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(f) => {
                    return Err(self.as_context_overflow(f.error, messages, params));
                }
            }
        }
    }

    /// A server's "prompt too long" answer (vLLM, llama.cpp server, OpenAI's
    /// `context_length_exceeded`) as [`GenerateError::ContextOverflow`], with the server's
    /// numbers when its message has them, so callers can fit fewer sources and retry.
    fn as_context_overflow(
        &self,
        error: GenerateError,
        messages: &[ChatMessage],
        params: &SamplingParams,
    ) -> GenerateError {
        let GenerateError::Server { message, .. } = &error else {
            return error;
        };
        let lower = message.to_lowercase();
        let overflow = message.contains("HTTP 400")
            && [
                "maximum context length",
                "context_length_exceeded",
                "exceeds the available context",
                "context window",
            ]
            .iter()
            .any(|p| lower.contains(p));
        if !overflow {
            return error;
        }
        let context_length =
            number_after(&lower, "maximum context length is").unwrap_or(self.context_length);
        let prompt_tokens = number_before(&lower, "in the messages")
            .or_else(|| self.count_prompt_tokens(messages).ok())
            .unwrap_or(context_length + 1);
        GenerateError::ContextOverflow {
            prompt_tokens,
            max_new_tokens: params.max_tokens,
            context_length,
        }
    }
}

/// The first number after `phrase` in `text` ("maximum context length is 4096 tokens").
fn number_after(text: &str, phrase: &str) -> Option<usize> {
    let rest = &text[text.find(phrase)? + phrase.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The number just before `phrase` in `text` ("(4000 in the messages, …").
fn number_before(text: &str, phrase: &str) -> Option<usize> {
    let head = text[..text.find(phrase)?].trim_end();
    let start = head
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    head[start..].parse().ok()
}

/// A conservative token estimate for an unknown tokenizer: one per Han character (tokenizers
/// of Chinese models average 1.3–1.6 characters a token), one per three other bytes.
pub fn estimate_tokens(text: &str) -> usize {
    let han = text
        .chars()
        .filter(|&c| zhiku_core::rag::lang::is_han(c))
        .count();
    let other: usize = text
        .chars()
        .filter(|&c| !zhiku_core::rag::lang::is_han(c))
        .map(char::len_utf8)
        .sum();
    han + other.div_ceil(3)
}

/// "HTTP 401 Unauthorized from POST /chat/completions: <the server's message>", with a hint
/// for the usual causes.
fn status_message(status: StatusCode, body: &[u8], what: &str) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_BODY)]);
    let detail = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| {
            v["error"]["message"]
                .as_str()
                .or_else(|| v["error"].as_str())
                .or_else(|| v["message"].as_str())
                .or_else(|| v["detail"].as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| text.trim().to_string());
    let hint = match status.as_u16() {
        401 | 403 => " (check generate.api_key)",
        404 => " (check generate.url, usually ending in /v1, and generate.remote_model)",
        429 => " (the server is overloaded; retried generate.max_retries times)",
        500..=599 => " (the server failed; see its log)",
        _ => "",
    };
    format!("HTTP {status} from {what}: {detail}{hint}")
}

async fn read_capped(mut body: Incoming, timeout: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < MAX_ERROR_BODY {
        match tokio::time::timeout(timeout, body.frame()).await {
            Ok(Some(Ok(f))) => {
                if let Ok(d) = f.into_data() {
                    out.extend_from_slice(&d);
                }
            }
            _ => break,
        }
    }
    out
}

/// Server-sent events: bytes in, the `data` of each complete event out.
#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
    data: Option<String>,
}

impl SseParser {
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                if let Some(d) = self.data.take() {
                    events.push(d);
                }
            } else if let Some(rest) = line.strip_prefix("data:") {
                let rest = rest.strip_prefix(' ').unwrap_or(rest);
                match &mut self.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(rest);
                    }
                    None => self.data = Some(rest.to_string()),
                }
            }
            // Comments (":") and other fields (event, id, retry) carry nothing we use.
        }
        events
    }
}

/// What the chunks of a completion said so far.
#[derive(Default)]
struct StreamState {
    done: bool,
    finish: Option<FinishReason>,
    prompt_tokens: Option<usize>,
    completion_tokens: Option<usize>,
    /// Pieces of text received (the token count when the server sends no usage).
    pieces: usize,
}

impl StreamState {
    /// Digest one event's data; the new pieces of text.
    fn event(&mut self, data: &str) -> std::result::Result<Vec<String>, String> {
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(Vec::new());
        }
        let event: wire::StreamEvent = serde_json::from_str(data)
            .map_err(|e| format!("bad stream event ({e}): {}", truncate(data, 200)))?;
        if let Some(error) = event.error.filter(|e| !e.is_null()) {
            let m = error["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| error.to_string());
            return Err(format!("the server reported an error mid-stream: {m}"));
        }
        if let Some(u) = event.usage {
            self.prompt_tokens = u.prompt_tokens;
            self.completion_tokens = u.completion_tokens;
        }
        let mut out = Vec::new();
        if let Some(choice) = event.choices.into_iter().flatten().next() {
            if let Some(t) = choice
                .delta
                .and_then(|d| d.content)
                .filter(|t| !t.is_empty())
            {
                self.pieces += 1;
                out.push(t);
            }
            match choice.finish_reason.as_deref() {
                Some("length") => self.finish = Some(FinishReason::Length),
                Some(_) => self.finish = Some(FinishReason::Stop),
                None => {}
            }
        }
        Ok(out)
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[cfg(test)]
mod tests;

/// The chat-completions wire format, as this client sends and reads it. Reading is lenient:
/// fields the servers differ on are optional, unknown ones ignored.
mod wire {
    use serde::{Deserialize, Serialize};
    use serde_json::Value;

    use super::ChatMessage;

    #[derive(Serialize)]
    pub(super) struct ChatRequest<'a> {
        pub model: &'a str,
        pub messages: &'a [ChatMessage],
        pub stream: bool,
        pub stream_options: StreamOptions,
        pub max_tokens: usize,
        pub temperature: f32,
        pub top_p: f32,
        pub seed: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub stop: Option<&'a Vec<String>>,
        /// vLLM, llama.cpp, Ollama.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub top_k: Option<usize>,
        /// vLLM, TGI (multiplicative).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub repetition_penalty: Option<f32>,
        /// llama.cpp, Ollama.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub repeat_penalty: Option<f32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub repeat_last_n: Option<usize>,
    }

    #[derive(Serialize)]
    pub(super) struct StreamOptions {
        pub include_usage: bool,
    }

    /// One `data:` event of a streamed answer.
    #[derive(Deserialize)]
    pub(super) struct StreamEvent {
        /// Absent or `null` in some servers' usage-only events.
        pub choices: Option<Vec<Choice>>,
        pub usage: Option<Usage>,
        /// An error object or string some servers send mid-stream.
        pub error: Option<Value>,
    }

    #[derive(Deserialize)]
    pub(super) struct Choice {
        pub delta: Option<Delta>,
        pub finish_reason: Option<String>,
    }

    #[derive(Deserialize)]
    pub(super) struct Delta {
        pub content: Option<String>,
    }

    #[derive(Deserialize)]
    pub(super) struct Usage {
        pub prompt_tokens: Option<usize>,
        pub completion_tokens: Option<usize>,
    }
}
