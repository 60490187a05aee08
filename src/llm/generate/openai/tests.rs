//! The OpenAI-compatible client against a scripted HTTP server on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use super::*;
use crate::generate::{CandleGenerator, CandleOptions};
use serde_json::json;
use zhiku_core::generate::contract::Counting;

/// What the mock server does with one connection.
enum Reply {
    /// Status, JSON body.
    Json(u16, String),
    /// 200 `text/event-stream`: (delay before, raw event data) pairs, then the connection is
    /// closed.
    Sse(Vec<(u64, String)>),
    /// Headers of a 200 stream, then silence for this many ms.
    Silent(u64),
}

struct Mock {
    url: String,
    /// Request line, headers and body of every request, in order.
    requests: Arc<Mutex<Vec<String>>>,
    /// Whether a write to the client failed (it hung up early).
    hung_up: Arc<Mutex<bool>>,
}

fn read_request(stream: &mut TcpStream) -> String {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = String::new();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

fn mock(replies: Vec<Reply>) -> Mock {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let hung_up = Arc::new(Mutex::new(false));
    let (req, hup) = (requests.clone(), hung_up.clone());
    thread::spawn(move || {
        for reply in replies {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            req.lock().unwrap().push(read_request(&mut s));
            let ok = match reply {
                Reply::Json(status, body) => write!(
                    s,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .is_ok(),
                Reply::Sse(events) => {
                    let mut ok = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
                        .is_ok();
                    for (delay, data) in events {
                        thread::sleep(Duration::from_millis(delay));
                        ok = ok
                            && s.write_all(format!("data: {data}\r\n\r\n").as_bytes()).is_ok()
                            && s.flush().is_ok();
                        if !ok {
                            break;
                        }
                    }
                    ok
                }
                Reply::Silent(ms) => {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n");
                    thread::sleep(Duration::from_millis(ms));
                    true
                }
            };
            if !ok {
                *hup.lock().unwrap() = true;
            }
        }
    });
    Mock {
        url,
        requests,
        hung_up,
    }
}

fn config(url: &str, model: Option<&str>) -> GenerateConfig {
    GenerateConfig {
        url: Some(url.to_string()),
        api_key: Some("sk-test".into()),
        remote_model: model.map(str::to_string),
        timeout_secs: 1,
        max_retries: 2,
        ..Default::default()
    }
}

fn delta(text: &str) -> String {
    json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
        .to_string()
}

fn finish(reason: &str) -> String {
    json!({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}).to_string()
}

fn models() -> Reply {
    Reply::Json(
        200,
        json!({"object": "list", "data": [{"id": "qwen2.5-7b", "max_model_len": 8192}, {"id": "other"}]})
            .to_string(),
    )
}

fn collect(
    g: &OpenAiGenerator,
    params: &SamplingParams,
    stop_after: Option<usize>,
) -> (String, Result<GenerationStats>) {
    let mut text = String::new();
    let mut n = 0;
    let r = g.generate(&[ChatMessage::user("年假几天？")], params, &mut |p| {
        text.push_str(p);
        n += 1;
        if stop_after.is_some_and(|s| n >= s) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    (text, r)
}

#[test]
fn streams_an_answer() {
    let m = mock(vec![
        models(),
        Reply::Sse(vec![
            (0, delta("年假")),
            (5, delta("5天[1]")),
            (5, delta("。")),
            (0, finish("stop")),
            (
                0,
                json!({"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 4}})
                    .to_string(),
            ),
            (0, "[DONE]".into()),
        ]),
    ]);
    let g = OpenAiGenerator::connect(&config(&m.url, None)).unwrap();
    assert_eq!(g.model_id(), "qwen2.5-7b");
    assert_eq!(g.context_length(), 8192);
    let params = SamplingParams {
        top_k: 20,
        ..Default::default()
    };
    let (text, r) = collect(&g, &params, None);
    let stats = r.unwrap();
    assert_eq!(text, "年假5天[1]。");
    assert_eq!(stats.finish, FinishReason::Stop);
    assert_eq!(stats.prompt_tokens, 30);
    assert_eq!(stats.completion_tokens, 4);
    let reqs = m.requests.lock().unwrap();
    assert!(reqs[0].starts_with("GET /v1/models "), "{}", reqs[0]);
    let chat = &reqs[1];
    assert!(chat.starts_with("POST /v1/chat/completions "), "{chat}");
    assert!(
        chat.to_ascii_lowercase()
            .contains("authorization: bearer sk-test"),
        "{chat}"
    );
    let body: Value = serde_json::from_str(&chat[chat.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(body["model"], "qwen2.5-7b");
    assert_eq!(body["top_k"], 20);
    assert_eq!(body["max_tokens"], 512);
    assert_eq!(body["seed"], 42);
    assert!((body["repetition_penalty"].as_f64().unwrap() - 1.1).abs() < 1e-6);
    assert_eq!(body["messages"][0]["role"], "user");
}

/// The server hands each piece to its async side with a tokio `blocking_send`, which panics
/// when called inside a runtime: `on_text` must run outside the client's own runtime.
#[test]
fn the_text_callback_may_block_on_a_tokio_channel() {
    let m = mock(vec![
        models(),
        Reply::Sse(vec![
            (0, delta("年假")),
            (5, delta("5天[1]")),
            (0, finish("stop")),
            (0, "[DONE]".into()),
        ]),
    ]);
    let g = OpenAiGenerator::connect(&config(&m.url, None)).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1);
    let reader = thread::spawn(move || {
        let mut all = String::new();
        while let Some(p) = rx.blocking_recv() {
            all.push_str(&p);
        }
        all
    });
    let r = g.generate(
        &[ChatMessage::user("年假几天？")],
        &SamplingParams::default(),
        &mut |p| match tx.blocking_send(p.to_string()) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        },
    );
    drop(tx);
    assert_eq!(r.unwrap().finish, FinishReason::Stop);
    assert_eq!(reader.join().unwrap(), "年假5天[1]");
}

#[test]
fn retries_after_a_503() {
    let m = mock(vec![
        models(),
        Reply::Json(503, json!({"error": {"message": "warming up"}}).to_string()),
        Reply::Sse(vec![
            (0, delta("ok")),
            (0, finish("length")),
            (0, "[DONE]".into()),
        ]),
    ]);
    let g = OpenAiGenerator::connect(&config(&m.url, Some("other")))
        .unwrap()
        .with_backoff(Duration::from_millis(10));
    assert_eq!(g.model_id(), "other");
    assert_eq!(
        g.context_length(),
        DEFAULT_CONTEXT,
        "no max_model_len for `other`"
    );
    let (text, r) = collect(&g, &SamplingParams::default(), None);
    assert_eq!(r.unwrap().finish, FinishReason::Length);
    assert_eq!(text, "ok");
    assert_eq!(m.requests.lock().unwrap().len(), 3);
}

#[test]
fn unauthorized_is_a_clear_error_without_retry() {
    let body = json!({"error": {"message": "Invalid API key", "type": "auth"}}).to_string();
    let m = mock(vec![Reply::Json(401, body.clone())]);
    let e = OpenAiGenerator::connect(&config(&m.url, None))
        .err()
        .expect("401 must fail")
        .to_string();
    assert!(
        e.contains("401") && e.contains("Invalid API key") && e.contains("api_key"),
        "{e}"
    );
    assert!(e.contains(&m.url), "{e}");

    // With the model named, connect survives and the chat request reports the 401, once.
    let m = mock(vec![Reply::Json(401, body.clone()), Reply::Json(401, body)]);
    let g = OpenAiGenerator::connect(&config(&m.url, Some("qwen"))).unwrap();
    let (_, r) = collect(&g, &SamplingParams::default(), None);
    let e = r.expect_err("401").to_string();
    assert!(e.contains("401") && e.contains("Invalid API key"), "{e}");
    assert_eq!(m.requests.lock().unwrap().len(), 2, "a 401 is not retried");
}

#[test]
fn a_silent_stream_times_out() {
    let m = mock(vec![models(), Reply::Silent(3000)]);
    let mut c = config(&m.url, None);
    c.max_retries = 0;
    let g = OpenAiGenerator::connect(&c).unwrap();
    let t = Instant::now();
    let (_, r) = collect(&g, &SamplingParams::default(), None);
    let e = r.expect_err("timeout").to_string();
    assert!(e.contains("silent for 1 s"), "{e}");
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn cancelling_stops_the_stream() {
    let events: Vec<(u64, String)> = (0..100).map(|i| (20, delta(&format!("{i} ")))).collect();
    let m = mock(vec![models(), Reply::Sse(events)]);
    let g = OpenAiGenerator::connect(&config(&m.url, None)).unwrap();
    let t = Instant::now();
    let (text, r) = collect(&g, &SamplingParams::default(), Some(2));
    assert_eq!(r.unwrap().finish, FinishReason::Cancelled);
    assert_eq!(text, "0 1 ");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    // The server notices the client went away long before its 2 s of events.
    let t = Instant::now();
    while !*m.hung_up.lock().unwrap() && t.elapsed() < Duration::from_secs(3) {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(*m.hung_up.lock().unwrap(), "the connection was not closed");
}

#[test]
fn stop_strings_are_enforced_client_side() {
    let m = mock(vec![
        models(),
        Reply::Sse(vec![
            (0, delta("答案")),
            (0, delta("<|im_")),
            (0, delta("end|>多余")),
            (0, finish("stop")),
            (0, "[DONE]".into()),
        ]),
    ]);
    let g = OpenAiGenerator::connect(&config(&m.url, None)).unwrap();
    let params = SamplingParams {
        stop: vec!["<|im_end|>".into()],
        ..Default::default()
    };
    let (text, r) = collect(&g, &params, None);
    assert_eq!(text, "答案");
    let stats = r.unwrap();
    assert_eq!(stats.finish, FinishReason::Stop);
    // Cut before any usage came: the estimate stands in for the prompt tokens, not 0.
    let estimate = g
        .count_prompt_tokens(&[ChatMessage::user("年假几天？")])
        .unwrap();
    assert_eq!(stats.prompt_tokens, estimate);
}

#[test]
fn a_cut_stream_is_an_error_and_not_retried_after_text() {
    let m = mock(vec![
        models(),
        Reply::Sse(vec![(0, delta("半句"))]),
        Reply::Sse(vec![(0, delta("again")), (0, "[DONE]".into())]),
    ]);
    let g = OpenAiGenerator::connect(&config(&m.url, None))
        .unwrap()
        .with_backoff(Duration::from_millis(10));
    let (text, r) = collect(&g, &SamplingParams::default(), None);
    let e = r.expect_err("cut").to_string();
    assert!(e.contains("ended before the answer was complete"), "{e}");
    assert_eq!(text, "半句");
    assert_eq!(
        m.requests.lock().unwrap().len(),
        2,
        "no retry once text was shown"
    );
}

#[test]
fn connection_refused_is_clear() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = config(&format!("http://127.0.0.1:{port}/v1"), None);
    c.max_retries = 0;
    let e = OpenAiGenerator::connect(&c).err().unwrap().to_string();
    assert!(e.contains("cannot connect"), "{e}");
    let e = OpenAiGenerator::connect(&GenerateConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("needs url"), "{e}");
}

#[test]
fn sse_parser_and_stop_filter() {
    let mut p = SseParser::default();
    assert!(p.feed(b"data: {\"a\"").is_empty());
    assert_eq!(
        p.feed(b":1}\r\n\r\n: comment\n\ndata: [DONE]\n\n"),
        vec!["{\"a\":1}".to_string(), "[DONE]".to_string()]
    );
    // The stop buffer is the one the candle generator uses (sampling::StopBuffer).
    let released = |text: &str, stopped| Released {
        text: text.to_string(),
        stopped,
    };
    let mut f = StopBuffer::new(&["</s>".to_string(), "\n\n".to_string()]);
    assert_eq!(f.push("ab<"), released("ab", false));
    assert_eq!(f.push("x"), released("<x", false));
    assert_eq!(f.push("c\n"), released("c", false));
    assert_eq!(f.push("\nrest"), released("", true));
    let mut f = StopBuffer::new(&["</s>".to_string()]);
    assert_eq!(f.push("尾巴</"), released("尾巴", false));
    assert_eq!(f.flush(), "</");
    assert_eq!(estimate_tokens("年假"), 2);
    assert_eq!(estimate_tokens("abcdef"), 2);
}

#[test]
fn a_prompt_too_long_for_the_server_is_a_context_overflow() {
    // vLLM's wording, with its numbers.
    let vllm = json!({"object": "error", "message": "This model's maximum context length is 4096 tokens. However, you requested 4612 tokens (4100 in the messages, 512 in the completion). Please reduce the length of the messages or completion.", "type": "BadRequestError", "code": 400}).to_string();
    // llama.cpp server's wording, without numbers.
    let llama = json!({"error": {"code": 400, "message": "the request exceeds the available context size, try increasing it", "type": "exceed_context_size_error"}}).to_string();
    let m = mock(vec![
        models(),
        Reply::Json(400, vllm),
        Reply::Json(400, llama),
    ]);
    let g = OpenAiGenerator::connect(&config(&m.url, Some("qwen"))).unwrap();
    let params = SamplingParams {
        max_tokens: 512,
        ..Default::default()
    };
    let (_, r) = collect(&g, &params, None);
    match r {
        Err(GenerateError::ContextOverflow {
            prompt_tokens,
            max_new_tokens,
            context_length,
        }) => assert_eq!(
            (prompt_tokens, max_new_tokens, context_length),
            (4100, 512, 4096)
        ),
        other => panic!("expected ContextOverflow, got {other:?}"),
    }
    let (_, r) = collect(&g, &params, None);
    assert!(
        matches!(r, Err(GenerateError::ContextOverflow { context_length, .. }) if context_length == g.context_length()),
        "{r:?}"
    );
    assert_eq!(m.requests.lock().unwrap().len(), 3, "a 400 is not retried");
}

#[test]
fn other_bad_requests_stay_server_errors() {
    let body = json!({"error": {"message": "temperature must be non-negative"}}).to_string();
    let m = mock(vec![models(), Reply::Json(400, body)]);
    let g = OpenAiGenerator::connect(&config(&m.url, Some("qwen"))).unwrap();
    let (_, r) = collect(&g, &SamplingParams::default(), None);
    let e = r.expect_err("400");
    assert!(matches!(e, GenerateError::Server { .. }), "{e}");
    assert!(e.to_string().contains("temperature"), "{e}");
}

/// An OpenAI-compatible chat-completions server on 127.0.0.1 backed by a real generator,
/// speaking as vLLM does: `GET /v1/models` with `max_model_len`, streamed
/// `chat.completion.chunk` deltas, a last chunk with `finish_reason` and `usage`, `[DONE]`,
/// and a 400 in vLLM's words when the prompt does not fit. One connection at a time;
/// serves until dropped. `ignore_stop` makes it a server that does not honour `stop`
/// (the client must then cut the text itself).
struct ModelServer {
    url: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ModelServer {
    fn start(generator: Arc<dyn Generator>, ignore_stop: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let quit = stop.clone();
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if quit.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                if let Ok(mut s) = stream {
                    serve(generator.as_ref(), ignore_stop, &mut s);
                }
            }
        });
        Self {
            url,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(
            self.url
                .trim_start_matches("http://")
                .trim_end_matches("/v1"),
        );
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One server-sent event; false when the client has gone.
fn send(s: &mut TcpStream, data: &str) -> bool {
    s.write_all(format!("data: {data}\n\n").as_bytes()).is_ok() && s.flush().is_ok()
}

fn respond_json(s: &mut TcpStream, status: u16, body: &Value) {
    let body = body.to_string();
    let _ = write!(
        s,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Sampling parameters from a request body, with vLLM's defaults for what is absent (a
/// random seed: an unforwarded seed shows as text that differs between runs).
fn request_params(v: &Value) -> std::result::Result<SamplingParams, String> {
    let float = |k: &str, default: f64| v[k].as_f64().unwrap_or(default) as f32;
    let stop = match &v["stop"] {
        Value::Null => Vec::new(),
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|s| s.as_str().map(str::to_string).ok_or("stop: not a string"))
            .collect::<std::result::Result<_, _>>()?,
        other => return Err(format!("stop: {other}")),
    };
    let seed = v["seed"].as_u64().unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    Ok(SamplingParams {
        max_tokens: v["max_tokens"].as_u64().unwrap_or(16) as usize,
        temperature: float("temperature", 1.0),
        top_p: float("top_p", 1.0),
        // vLLM: -1 (or absent) is off.
        top_k: v["top_k"].as_i64().filter(|&k| k > 0).unwrap_or(0) as usize,
        repetition_penalty: float("repetition_penalty", 1.0),
        repeat_last_n: v["repeat_last_n"].as_u64().unwrap_or(64) as usize,
        seed,
        stop,
    })
}

/// Answer one HTTP request on `s` with `g`.
fn serve(g: &dyn Generator, ignore_stop: bool, s: &mut TcpStream) {
    let request = read_request(s);
    let body = &request[request.find("\r\n\r\n").map_or(request.len(), |i| i + 4)..];
    if request.starts_with("GET /v1/models ") {
        let models = json!({"object": "list", "data": [
            {"id": g.model_id(), "object": "model", "max_model_len": g.context_length()}
        ]});
        return respond_json(s, 200, &models);
    }
    if !request.starts_with("POST /v1/chat/completions ") {
        return respond_json(s, 404, &json!({"error": {"message": "no such route"}}));
    }
    let bad = |s: &mut TcpStream, m: String| {
        respond_json(
            s,
            400,
            &json!({"object": "error", "message": m, "type": "BadRequestError", "code": 400}),
        )
    };
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return bad(s, format!("not JSON: {e}")),
    };
    let messages: Vec<ChatMessage> = match serde_json::from_value(v["messages"].clone()) {
        Ok(m) => m,
        Err(e) => return bad(s, format!("messages: {e}")),
    };
    let mut params = match request_params(&v) {
        Ok(p) => p,
        Err(e) => return bad(s, e),
    };
    if ignore_stop {
        params.stop.clear();
    }
    let model = g.model_id().to_string();
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0,
               "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let stream = v["stream"].as_bool().unwrap_or(false);
    // Headers go out with the first piece: an error before it is still an HTTP status.
    let mut started = false;
    let mut text = String::new();
    let result = {
        let s = &mut *s;
        g.generate(&messages, &params, &mut |piece| {
            if !stream {
                text.push_str(piece);
                return ControlFlow::Continue(());
            }
            if !started {
                started = true;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                if s.write_all(head.as_bytes()).is_err()
                    || !send(s, &chunk(json!({"role": "assistant", "content": ""}), None).to_string())
                {
                    return ControlFlow::Break(());
                }
            }
            // The client went away: stop generating, as vLLM aborts the request.
            if send(s, &chunk(json!({"content": piece}), None).to_string()) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        })
    };
    let stats = match result {
        Ok(stats) => stats,
        Err(GenerateError::ContextOverflow {
            prompt_tokens,
            max_new_tokens,
            context_length,
        }) => {
            return bad(
                s,
                format!(
                    "This model's maximum context length is {context_length} tokens. However, \
                     you requested {} tokens ({prompt_tokens} in the messages, \
                     {max_new_tokens} in the completion). Please reduce the length of the \
                     messages or completion.",
                    prompt_tokens + max_new_tokens
                ),
            );
        }
        Err(e) => {
            return respond_json(s, 500, &json!({"error": {"message": e.to_string()}}));
        }
    };
    let finish = match stats.finish {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Cancelled => return,
    };
    let usage = json!({
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": stats.prompt_tokens + stats.completion_tokens,
    });
    if !stream {
        let reply = json!({"id": "chatcmpl-test", "object": "chat.completion", "created": 0,
            "model": g.model_id(), "usage": usage, "choices": [{"index": 0,
            "message": {"role": "assistant", "content": text}, "finish_reason": finish}]});
        return respond_json(s, 200, &reply);
    }
    if !started {
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
        let _ = s.write_all(head.as_bytes());
    }
    let mut last = chunk(json!({}), Some(finish));
    last["usage"] = usage;
    let _ = send(s, &last.to_string()) && send(s, "[DONE]");
}

/// SmolLM2 on candle with a 512-token window (the contract's too-long prompt is then quick
/// to tokenise), or `None` when the model is missing.
fn smollm2_512() -> Option<Arc<CandleGenerator>> {
    let path = crate::generate::candle::tests::smollm2()?;
    let mut opts = CandleOptions::new(&path);
    opts.context_length = Some(512);
    Some(Arc::new(CandleGenerator::load(&opts).unwrap()))
}

/// The client against a [`ModelServer`] on `model`, configured with the served context.
fn behind_a_server(
    model: &Arc<CandleGenerator>,
    ignore_stop: bool,
) -> (ModelServer, OpenAiGenerator) {
    let server = ModelServer::start(model.clone(), ignore_stop);
    let mut cfg = config(&server.url, None);
    cfg.timeout_secs = 60;
    cfg.context_length = Some(model.context_length());
    let client = OpenAiGenerator::connect(&cfg).unwrap();
    (server, client)
}

#[test]
fn the_client_passes_the_contract_against_smollm2_behind_a_server() {
    let Some(model) = smollm2_512() else {
        return;
    };
    let (_server, client) = behind_a_server(&model, false);
    assert_eq!(client.model_id(), model.model_id());
    assert_eq!(client.context_length(), 512);
    zhiku_core::generate::contract::check_generator(&client, Counting::Estimate);
    // A server that does not honour stop strings: the client cuts the text itself.
    let (_server, client) = behind_a_server(&model, true);
    zhiku_core::generate::contract::check_generator(&client, Counting::Estimate);
}

#[test]
fn the_client_forwards_every_sampling_parameter() {
    let Some(model) = smollm2_512() else {
        return;
    };
    let (_server, client) = behind_a_server(&model, false);
    // Through the client, the same text as in process, for parameters that change it: a
    // parameter dropped on the way shows as different text.
    let msgs = [ChatMessage::user("Write a short poem about the sea.")];
    let run = |g: &dyn Generator, p: &SamplingParams| {
        let mut text = String::new();
        let stats = g
            .generate(&msgs, p, &mut |t| {
                text.push_str(t);
                ControlFlow::Continue(())
            })
            .unwrap();
        (text, stats.finish, stats.completion_tokens)
    };
    let base = SamplingParams {
        max_tokens: 24,
        temperature: 1.3,
        top_p: 1.0,
        top_k: 0,
        repetition_penalty: 1.0,
        seed: 7,
        ..Default::default()
    };
    let variants = [
        base.clone(),
        SamplingParams {
            seed: 8,
            ..base.clone()
        },
        SamplingParams {
            top_k: 3,
            ..base.clone()
        },
        SamplingParams {
            top_p: 0.5,
            ..base.clone()
        },
        SamplingParams {
            repetition_penalty: 1.8,
            repeat_last_n: 8,
            ..base.clone()
        },
        SamplingParams {
            temperature: 0.0,
            max_tokens: 5,
            ..base.clone()
        },
    ];
    let mut texts = Vec::new();
    for p in &variants {
        let direct = run(model.as_ref(), p);
        assert_eq!(run(&client, p), direct, "{p:?}");
        texts.push(direct.0);
    }
    texts.sort();
    texts.dedup();
    assert!(
        texts.len() >= 5,
        "the parameters do not change the text enough to test: {texts:?}"
    );
}
