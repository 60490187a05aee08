//! The OpenAI-compatible API (`/v1/models`, `/v1/chat/completions`) and `/metrics`, end to
//! end on 127.0.0.1: the real `openai` Python package against the server (streamed and not,
//! citations in the `zhiku` extension, models filtered by permission), and with the test
//! HTTP client: error shapes, 401/404/429, sampling parameters reaching the generator,
//! cancellation when the client disconnects, the metrics series and who may read them.
//! Uses the hashing test embedder (fast, lexical) and a scripted generator.

mod common;

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zhiku_core::engine::Engine;
use zhiku_core::index;
use zhiku_core::progress::Silent;
use zhiku_llm::generate::{
    ChatMessage, FinishReason, GenerationStats, Generator, Result as GenResult, SamplingParams,
};

use common::HashEmbedder;
use common::http::{Client, Response, TestServer};

/// The scripted answer, in the pieces the generator streams (one token each).
const REPLY: [&str; 4] = ["累计工作已满10年的，", "年休假", "10天", "[1]。"];
const QUESTION: &str = "累计工作已满10年的年休假有几天";

/// Streams `pieces` (at most `max_tokens` of them), sleeping `delay` before each, until the
/// callback cancels; records the sampling parameters of every call.
struct Scripted {
    pieces: Vec<&'static str>,
    delay: Duration,
    params: Mutex<Vec<SamplingParams>>,
    running: AtomicUsize,
    sent: AtomicUsize,
}

impl Scripted {
    fn new(pieces: Vec<&'static str>, delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            pieces,
            delay,
            params: Mutex::new(Vec::new()),
            running: AtomicUsize::new(0),
            sent: AtomicUsize::new(0),
        })
    }
    fn reply() -> Arc<Self> {
        Self::new(REPLY.to_vec(), Duration::ZERO)
    }
    fn last_params(&self) -> SamplingParams {
        self.params.lock().unwrap().last().cloned().expect("a call")
    }
}

impl Generator for Scripted {
    fn model_id(&self) -> &str {
        "scripted"
    }
    fn context_length(&self) -> usize {
        100_000
    }
    fn count_prompt_tokens(&self, m: &[ChatMessage]) -> GenResult<usize> {
        Ok(m.iter().map(|m| m.content.chars().count()).sum())
    }
    fn generate(
        &self,
        m: &[ChatMessage],
        p: &SamplingParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> GenResult<GenerationStats> {
        self.params.lock().unwrap().push(p.clone());
        self.running.fetch_add(1, SeqCst);
        let start = Instant::now();
        let mut finish = if p.max_tokens < self.pieces.len() {
            FinishReason::Length
        } else {
            FinishReason::Stop
        };
        let mut n = 0;
        for piece in self.pieces.iter().take(p.max_tokens) {
            std::thread::sleep(self.delay);
            n += 1;
            self.sent.fetch_add(1, SeqCst);
            if on_text(piece).is_break() {
                finish = FinishReason::Cancelled;
                break;
            }
        }
        self.running.fetch_sub(1, SeqCst);
        Ok(GenerationStats {
            prompt_tokens: self.count_prompt_tokens(m)?,
            completion_tokens: n,
            ttft_ms: 1.0,
            total_ms: start.elapsed().as_secs_f64() * 1e3,
            tokens_per_s: 100.0,
            finish,
        })
    }
}

/// Two knowledge bases: `hr` (leave policy, group staff: alice) and `it` (IT help desk, group
/// ops: bob); root is an admin. Returns the engine and API tokens of alice, bob and root.
fn setup(
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut zhiku_core::config::Config),
) -> (Engine, [String; 3]) {
    let mut config = common::config(dir);
    tweak(&mut config);
    let e = Engine::open(config)
        .unwrap()
        .with_embedder(HashEmbedder::new());
    let samples = common::samples();
    let pb = Silent;
    let opts = index::IngestOptions::default();
    for (kb, file) in [
        ("hr", "员工手册-休假制度.txt"),
        ("it", "IT服务台常见问题.txt"),
    ] {
        index::ingest_paths(&e, kb, &[samples.join(file)], &opts, &pb).unwrap();
    }
    let [alice, bob, root] = common::people(&e, &["hr"], &["it"]);
    let token = |u| {
        zhiku_core::access::create_token(&e.meta, u, "test")
            .unwrap()
            .1
    };
    let tokens = [token(alice), token(bob), token(root)];
    (e, tokens)
}

/// Fields drop in order: the server (and its stores) before the folder they live in.
struct Fixture {
    server: TestServer,
    alice: Client,
    bob: Client,
    root: Client,
    _dir: tempfile::TempDir,
}

fn start(
    generator: Option<Arc<dyn Generator>>,
    tweak: impl FnOnce(&mut zhiku_core::config::Config),
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (e, [a, b, r]) = setup(&dir.path().join("data"), |c| {
        c.server.ip_questions_per_s = 1000;
        c.server.user_questions_per_s = 1000;
        tweak(c)
    });
    let server = TestServer::start(e, generator);
    let client = |t: &str| server.client().bearer(t);
    Fixture {
        alice: client(&a),
        bob: client(&b),
        root: client(&r),
        server,
        _dir: dir,
    }
}

fn complete(c: &Client, body: Value) -> Response {
    c.post_json("/v1/chat/completions", &body)
}

fn question(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": QUESTION}]})
}

fn with(mut body: Value, extra: Value) -> Value {
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

/// The data of each event of an SSE response, as JSON (`[DONE]` as a string).
fn chunks(r: &Response) -> Vec<Value> {
    r.events()
        .into_iter()
        .map(|(_, d)| serde_json::from_str(&d).unwrap_or(Value::String(d)))
        .collect()
}

fn assert_openai_error(r: &Response, status: u16, code: &str) -> String {
    assert_eq!(r.status, status, "{}", r.text());
    let e = &r.json()["error"];
    assert_eq!(e["code"], code, "{e}");
    assert!(e["type"].is_string(), "{e}");
    e["message"].as_str().expect("a message").to_string()
}

// ---- the real OpenAI client -------------------------------------------------------------

/// A python that can `import openai`: `ZHIKU_TEST_PYTHON`, the venv of
/// scripts/install-test-tools.sh, or python3. Missing: a failure under CI, else a skip.
fn python_with_openai() -> Option<PathBuf> {
    let cache = std::env::var_os("ZHIKU_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/zhiku")));
    let candidates = std::env::var_os("ZHIKU_TEST_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain(cache.map(|c| c.join("test-venv/bin/python")))
        .chain([PathBuf::from("python3")]);
    for py in candidates {
        let ok = std::process::Command::new(&py)
            .args(["-c", "import openai"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(py);
        }
    }
    if std::env::var_os("CI").is_some() {
        panic!("python's `openai` package is missing: CI must run scripts/install-test-tools.sh");
    }
    eprintln!("skipped: python's `openai` package is missing (run scripts/install-test-tools.sh)");
    None
}

#[test]
fn the_openai_python_client_streams_and_gets_citations_and_only_its_models() {
    let Some(python) = python_with_openai() else {
        return;
    };
    let g = Scripted::reply();
    let f = start(Some(g.clone()), |_| {});
    let token = |c: &Client| c.headers[0].1.strip_prefix("Bearer ").unwrap().to_string();
    let out = std::process::Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/openai_client.py"
        ))
        .args(["--base-url", &format!("http://{}/v1", f.server.addr)])
        .args(["--token", &token(&f.alice)])
        .args(["--other-token", &token(&f.bob)])
        .args(["--model", "hr", "--question", QUESTION])
        .output()
        .expect("run tests/openai_client.py");
    assert!(
        out.status.success(),
        "openai_client.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("openai {}", r["openai_version"]);
    let reply = REPLY.concat();

    assert_eq!(r["models"], json!(["hr"]), "{r}");
    assert_eq!(r["other_models"], json!(["it"]), "{r}");

    let c = &r["completion"];
    assert_eq!(c["object"], "chat.completion", "{c}");
    assert_eq!(c["model"], "hr");
    assert_eq!(c["role"], "assistant");
    assert_eq!(c["content"], reply.as_str());
    assert_eq!(c["finish_reason"], "stop");
    assert_eq!(c["usage"]["completion_tokens"], REPLY.len());
    assert_eq!(c["zhiku"]["outcome"], "generated", "{c}");
    assert_eq!(c["zhiku"]["standalone_question"], QUESTION);
    let cited = &c["zhiku"]["citations"][0];
    assert_eq!(cited["index"], 1, "{c}");
    assert!(
        cited["document"].as_str().unwrap().contains("休假制度"),
        "{c}"
    );
    assert!(cited["text"].as_str().unwrap().contains("年休假"), "{c}");

    let s = &r["stream"];
    assert_eq!(s["objects"], json!(["chat.completion.chunk"]), "{s}");
    assert_eq!(s["first_role"], "assistant", "{s}");
    assert_eq!(s["content"], reply.as_str(), "{s}");
    assert_eq!(s["finish_reasons"], json!(["stop"]), "{s}");
    assert_eq!(s["zhiku_on_finish_chunk"], true, "{s}");
    assert_eq!(s["zhiku"].as_array().unwrap().len(), 1, "{s}");
    assert_eq!(s["zhiku"][0]["citations"], c["zhiku"]["citations"]);
    assert_eq!(s["usage"]["completion_tokens"], REPLY.len(), "{s}");
    // First chunk (role), one per piece, the finish chunk, the usage chunk.
    assert_eq!(s["chunks"], REPLY.len() + 3, "{s}");

    // bob's token (group ops) may not read hr: the same answer as for a missing model.
    let denied = &r["other_completion"];
    let missing = &r["missing_model"];
    assert_eq!(denied["status"], 404, "{r}");
    assert_eq!(denied["code"], "model_not_found", "{r}");
    assert_eq!(missing["code"], "model_not_found", "{r}");
    assert_eq!(
        denied["message"]
            .as_str()
            .unwrap()
            .replace("hr", "no-such-kb"),
        missing["message"].as_str().unwrap()
    );
    assert_eq!(r["bad_token"]["status"], 401, "{r}");

    // The client's seed and max_tokens reached the generator.
    assert_eq!(g.params.lock().unwrap()[0].seed, 7);
    assert_eq!(g.last_params().max_tokens, 64);
}

// ---- the same API through the test HTTP client ----------------------------------------

#[test]
fn models_are_the_readable_knowledge_bases_for_tokens_and_sessions() {
    let f = start(None, |_| {});
    let ids = |r: Response| -> Vec<String> {
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["object"], "list");
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                assert_eq!(m["object"], "model");
                assert_eq!(m["owned_by"], "zhiku");
                assert!(m["created"].as_i64().unwrap() > 1_600_000_000, "{m}");
                m["id"].as_str().unwrap().to_string()
            })
            .collect()
    };
    assert_eq!(ids(f.alice.get("/v1/models")), ["hr"]);
    assert_eq!(ids(f.bob.get("/v1/models")), ["it"]);
    assert_eq!(ids(f.root.get("/v1/models")), ["hr", "it"]);
    let session = f.server.client().login("alice", "password-1");
    assert_eq!(ids(session.get("/v1/models")), ["hr"]);

    assert_eq!(f.alice.get("/v1/models/hr").json()["id"], "hr");
    let denied = assert_openai_error(&f.bob.get("/v1/models/hr"), 404, "model_not_found");
    let missing = assert_openai_error(&f.bob.get("/v1/models/nope"), 404, "model_not_found");
    assert_eq!(denied.replace("hr", "nope"), missing);

    assert_openai_error(&f.server.client().get("/v1/models"), 401, "unauthorized");
    assert_openai_error(
        &f.server.client().bearer("zk_forged").get("/v1/models"),
        401,
        "unauthorized",
    );
}

#[test]
fn completions_answer_with_citations_and_refuse_bad_requests_in_the_openai_shape() {
    let g = Scripted::reply();
    let f = start(Some(g.clone()), |c| c.server.ip_questions_per_s = 1);

    let r = complete(&f.alice, question("hr"));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"), "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], REPLY.concat());
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let u = &v["usage"];
    assert_eq!(u["completion_tokens"], REPLY.len());
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + REPLY.len() as u64
    );
    assert!(u["prompt_tokens"].as_u64().unwrap() > 0, "{v}");
    assert!(
        v["zhiku"]["citations"][0]["document"]
            .as_str()
            .unwrap()
            .contains("休假制度"),
        "{v}"
    );

    // 400s with the reason, before any rate limit or generation.
    let no_user = complete(
        &f.alice,
        json!({"model": "hr", "messages": [{"role": "system", "content": "hi"}]}),
    );
    let m = assert_openai_error(&no_user, 400, "invalid_request");
    assert!(m.contains("user message"), "{m}");
    let m = assert_openai_error(
        &complete(&f.alice, with(question("hr"), json!({"temperature": 3}))),
        400,
        "invalid_request",
    );
    assert!(m.contains("temperature"), "{m}");
    let m = assert_openai_error(
        &complete(&f.alice, json!({"messages": []})),
        400,
        "invalid_request",
    );
    assert!(m.contains("model"), "{m}");
    assert_eq!(
        g.params.lock().unwrap().len(),
        1,
        "no generation for refused requests"
    );

    // One question per second, bursts of 2: the second passes, the third is refused.
    assert_eq!(complete(&f.alice, question("hr")).status, 200);
    let limited = complete(&f.alice, question("hr"));
    assert_openai_error(&limited, 429, "rate_limited");
    assert!(
        limited
            .header("retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_openai_error(
        &f.server
            .client()
            .post_json("/v1/chat/completions", &question("hr")),
        401,
        "unauthorized",
    );
}

#[test]
fn sampling_parameters_reach_the_generator_with_the_config_as_default() {
    let g = Scripted::reply();
    let f = start(Some(g.clone()), |c| {
        c.generate.sampling.max_tokens = 100;
        c.generate.sampling.stop = vec!["<END>".into()];
    });
    let configured = f.server.state.engine.config.generate.sampling.clone();

    assert_eq!(complete(&f.alice, question("hr")).status, 200);
    assert_eq!(g.last_params(), configured);

    let r = complete(
        &f.alice,
        with(
            question("hr"),
            json!({"max_tokens": 2, "temperature": 0.7, "top_p": 0.5, "stop": ["\n\n", "。"], "seed": 1234}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let p = g.last_params();
    assert_eq!(p.max_tokens, 2);
    assert_eq!(p.temperature, 0.7);
    assert_eq!(p.top_p, 0.5);
    assert_eq!(p.seed, 1234);
    assert_eq!(p.stop, ["<END>", "\n\n", "。"]);
    assert_eq!(p.repetition_penalty, configured.repetition_penalty);
    // The scripted generator honours max_tokens: two pieces, cut for length.
    let v = r.json();
    assert_eq!(v["choices"][0]["message"]["content"], REPLY[..2].concat());
    assert_eq!(v["choices"][0]["finish_reason"], "length");

    // max_completion_tokens wins over max_tokens; the configured maximum caps both.
    let body = with(
        question("hr"),
        json!({"max_tokens": 3, "max_completion_tokens": 1}),
    );
    assert_eq!(complete(&f.alice, body).status, 200);
    assert_eq!(g.last_params().max_tokens, 1);
    let body = with(question("hr"), json!({"max_tokens": 100_000, "stop": "x"}));
    assert_eq!(complete(&f.alice, body).status, 200);
    assert_eq!(g.last_params().max_tokens, 100);
    assert_eq!(g.last_params().stop, ["<END>", "x"]);

    // Streamed too: the finish chunk says why it stopped.
    let r = complete(
        &f.alice,
        with(question("hr"), json!({"stream": true, "max_tokens": 1})),
    );
    let cs = chunks(&r);
    let finish = &cs[cs.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "length", "{cs:?}");
    assert_eq!(cs.last().unwrap(), "[DONE]");
}

#[test]
fn streams_are_chunks_with_the_role_first_and_citations_last() {
    let f = start(None, |_| {});
    // No generator: the extractive answer arrives as one piece, with its notice.
    let r = complete(&f.alice, with(question("hr"), json!({"stream": true})));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let cs = chunks(&r);
    assert_eq!(cs.last().unwrap(), "[DONE]", "{cs:?}");
    let cs = &cs[..cs.len() - 1];
    let id = cs[0]["id"].as_str().unwrap();
    for c in cs {
        assert_eq!(c["object"], "chat.completion.chunk", "{c}");
        assert_eq!(c["id"], id, "one id per response");
        assert_eq!(c["model"], "hr");
    }
    assert_eq!(cs[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = cs
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(text.replace("**", "").contains("年休假10天"), "{text}");
    let last = cs.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert_eq!(last["zhiku"]["outcome"], "extractive", "{last}");
    assert!(last["zhiku"]["notice"].is_string(), "{last}");
    assert!(!last["zhiku"]["citations"].as_array().unwrap().is_empty());
    assert!(
        cs[..cs.len() - 1].iter().all(|c| c.get("zhiku").is_none()),
        "only the finish chunk carries the extension"
    );
    // Without stream_options.include_usage there is no usage chunk.
    assert!(cs.iter().all(|c| c.get("usage").is_none()));
}

/// Send a request on a raw socket and hang up: after the first bytes of the answer when
/// `read_first`, else once `started` says so.
fn hang_up(
    c: &Client,
    body: &Value,
    read_first: bool,
    started: impl Fn() -> bool + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let addr = c.addr;
    let headers = c.headers.clone();
    let body = body.to_string();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        let mut head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in &headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        sock.write_all(head.as_bytes()).unwrap();
        sock.write_all(body.as_bytes()).unwrap();
        if read_first {
            sock.set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut buf = [0u8; 512];
            let n = sock.read(&mut buf).unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while !started() {
            assert!(Instant::now() < deadline, "the generation never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(sock);
    })
}

/// Wait (bounded) until `/metrics` shows `series`.
fn wait_for_metric(c: &Client, series: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = c.get("/metrics").text();
        if text.contains(series) {
            return text;
        }
        assert!(Instant::now() < deadline, "no {series} in:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_client_that_disconnects_stops_the_generation() {
    let g = Scripted::new(vec!["年假[1]。"; 200], Duration::from_millis(25));
    let f = start(Some(g.clone()), |_| {});
    for (stream, read_first) in [(true, true), (false, false)] {
        let before = g.sent.load(SeqCst);
        let body = with(question("hr"), json!({"stream": stream}));
        let g2 = g.clone();
        hang_up(&f.alice, &body, read_first, move || {
            g2.sent.load(SeqCst) > before
        })
        .join()
        .unwrap();
        // All 200 pieces would take 5 s; the generation must stop soon after the hang-up.
        let deadline = Instant::now() + Duration::from_secs(20);
        while g.running.load(SeqCst) > 0 {
            assert!(Instant::now() < deadline, "the generation did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        let sent = g.sent.load(SeqCst) - before;
        assert!(
            sent < 100,
            "stream={stream}: {sent} pieces after the client left"
        );
    }
    wait_for_metric(&f.server.client(), "zhiku_answers_cancelled_total 2");
}

#[test]
fn a_client_that_leaves_the_generation_queue_frees_its_place() {
    let g = Scripted::new(vec!["年假[1]。"; 200], Duration::from_millis(25));
    let f = start(Some(g.clone()), |c| {
        c.server.generation_slots = 1;
        c.server.generation_queue = 1;
    });
    // One answer generating (5 s), one question waiting for its slot, whose client leaves.
    let generating = {
        let c = f.alice.clone();
        std::thread::spawn(move || complete(&c, question("hr")).status)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while g.running.load(SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the generation never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let state = f.server.state.clone();
    hang_up(&f.alice, &question("hr"), false, move || {
        state.queue_depth() == 1
    })
    .join()
    .unwrap();
    while f.server.state.queue_depth() > 0 {
        assert!(
            g.running.load(SeqCst) == 1,
            "the queue kept the place of a client that left"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Its place is free: another question may wait (a full queue would answer 503 at once).
    let waiting = {
        let c = f.alice.clone();
        std::thread::spawn(move || complete(&c, question("hr")).status)
    };
    assert_eq!(generating.join().unwrap(), 200);
    assert_eq!(waiting.join().unwrap(), 200);
    assert_eq!(
        g.params.lock().unwrap().len(),
        2,
        "the one that left never ran"
    );
}

fn metric_line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(series))
}

#[test]
fn metrics_expose_requests_answers_queue_and_ingestion_after_a_question() {
    let f = start(Some(Scripted::reply()), |c| c.server.ip_questions_per_s = 1);
    let anon = f.server.client();
    let before = anon.get("/metrics");
    assert_eq!(before.status, 200, "{}", before.text());
    assert!(
        before
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );

    assert_eq!(complete(&f.alice, question("hr")).status, 200);
    assert_eq!(f.alice.get("/v1/models/hr").status, 200);
    assert_eq!(f.alice.get("/v1/models/it").status, 404);
    assert_eq!(anon.get("/no/such/12345").status, 404);
    complete(&f.alice, question("hr"));
    assert_eq!(complete(&f.alice, question("hr")).status, 429);

    let text = anon.get("/metrics").text();
    for series in [
        r#"zhiku_http_request_duration_seconds_count{method="POST",route="/v1/chat/completions",status="200"} 2"#,
        r#"zhiku_http_request_duration_seconds_count{method="POST",route="/v1/chat/completions",status="429"} 1"#,
        r#"zhiku_http_request_duration_seconds_count{method="GET",route="/v1/models/{model}",status="200"} 1"#,
        r#"zhiku_http_request_duration_seconds_count{method="GET",route="/v1/models/{model}",status="404"} 1"#,
        r#"zhiku_http_request_duration_seconds_count{method="GET",route="unmatched",status="404"} 1"#,
        r#"zhiku_rate_limited_total{route="/v1/chat/completions"} 1"#,
        r#"zhiku_answers_total{outcome="generated"} 2"#,
        // The scripted reply is backed by its passage: counted, never unsupported.
        r#"zhiku_cited_sentences_total{kb="hr"} 2"#,
        "zhiku_answer_retrieval_seconds_count 2",
        "zhiku_answer_ttft_seconds_count 2",
        r#"zhiku_answer_duration_seconds_count{outcome="generated"} 2"#,
        "zhiku_answer_tokens_per_second_count 2",
        "zhiku_generation_queue_depth 0",
        r#"zhiku_documents{kb="hr"} 1"#,
        r#"zhiku_documents{kb="it"} 1"#,
        r#"zhiku_documents_by_status{status="ready"} 2"#,
        r#"zhiku_documents_by_status{status="indexing"} 0"#,
        r#"zhiku_ingest_jobs{status="done"} 2"#,
        r#"zhiku_ingest_jobs{status="failed"} 0"#,
    ] {
        assert!(text.contains(series), "missing {series}:\n{text}");
    }
    assert!(!text.contains("12345"), "raw paths are not labels");
    assert!(
        !text.contains("zhiku_unsupported_sentences_total{"),
        "{text}"
    );
    let chunks = metric_line(&text, r#"zhiku_chunks{kb="hr"}"#).expect("chunks of hr");
    let n: u64 = chunks.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(n, f.server.state.engine.meta.list_kbs().unwrap()[0].chunks);
    assert!(n > 0);
    assert!(
        text.contains("# TYPE zhiku_http_request_duration_seconds histogram"),
        "{text}"
    );
}

#[test]
fn metrics_are_for_loopback_admins_or_the_metrics_token() {
    // No metrics_token: loopback without a proxy header, or an admin.
    let f = start(None, |_| {});
    assert_eq!(f.server.client().get("/metrics").status, 200);
    assert_eq!(f.alice.get("/metrics").status, 200, "loopback is enough");
    let proxied = f
        .server
        .client()
        .with_header("X-Forwarded-For", "203.0.113.9");
    let m = assert_openai_error(&proxied.get("/metrics"), 403, "forbidden");
    assert!(m.contains("metrics_token"), "{m}");
    let admin_via_proxy = f.root.clone().with_header("X-Forwarded-For", "203.0.113.9");
    assert_eq!(admin_via_proxy.get("/metrics").status, 200);
    drop(f);

    // With metrics_token: that token or an admin, from anywhere; nobody else, not even local.
    let f = start(None, |c| {
        c.server.metrics_token = Some("scrape-secret-1".into())
    });
    let anon = f.server.client();
    let m = assert_openai_error(&anon.get("/metrics"), 401, "unauthorized");
    assert!(m.contains("metrics_token"), "{m}");
    assert_eq!(
        anon.clone()
            .bearer("scrape-secret-2")
            .get("/metrics")
            .status,
        401
    );
    assert_eq!(
        f.alice.get("/metrics").status,
        401,
        "a member's token is not enough"
    );
    let r = anon.clone().bearer("scrape-secret-1").get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("zhiku_generation_queue_depth"));
    assert_eq!(f.root.get("/metrics").status, 200);
    drop(f);

    // A blank metrics_token counts as unset (loopback only), not as a token to match.
    let f = start(None, |c| c.server.metrics_token = Some(" ".into()));
    let proxied = f
        .server
        .client()
        .with_header("X-Forwarded-For", "203.0.113.9");
    assert_eq!(proxied.clone().bearer(" ").get("/metrics").status, 403);
    assert_eq!(f.server.client().get("/metrics").status, 200);
    let anon = f.server.client();
    let doc = anon.get("/api/openapi.json").json();
    for path in [
        "/v1/models",
        "/v1/models/{model}",
        "/v1/chat/completions",
        "/metrics",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
}
