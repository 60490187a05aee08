//! The server under load: 50 concurrent question clients for 60 s against an in-process
//! server on 127.0.0.1, through `POST /v1/chat/completions` (streamed, with an API token),
//! first with extractive answers (retrieval only), then, when the SmolLM2 GGUF is present,
//! with generated ones (loaded through `generate::from_config`, one generation slot as the
//! default config has, the queue sized for every client so that none is turned away).
//! Reports requests, errors by status, answers/s, and p50/p95/p99 of time to first content
//! and of the whole answer as the clients saw them (queueing included), with the load
//! average before and after: figures taken beside a build are not comparable.
//!
//! `cargo bench --bench serve_load`. Data: the sample documents (tests/samples) embedded with
//! e5-small (`ZHIKU_BENCH_MODEL`, default `models/multilingual-e5-small`; missing → skipped).
//! Environment: `ZHIKU_BENCH_CLIENTS` (50), `ZHIKU_BENCH_SECS` (60 per phase),
//! `ZHIKU_BENCH_DRAIN_SECS` (60: how long answers still in flight at the end may take before
//! they are abandoned and counted unfinished), `ZHIKU_BENCH_MAX_REQUESTS` (100000 per phase),
//! `ZHIKU_BENCH_MAX_TOKENS` (64, sent as `max_tokens`), `ZHIKU_BENCH_GEN_MODEL` (default the
//! first `models/smollm2-135m-instruct/*.gguf`; `none` skips the generated phase).

#[path = "common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use zhiku_core::config::{GenerateBackend, GenerateConfig};
use zhiku_core::embed::Embedder;
use zhiku_core::engine::Engine;
use zhiku_core::index;
use zhiku_core::progress::Silent;
use zhiku_core::store::meta::Role;
use zhiku_llm::generate::{self, Generator};
use zhiku_server::AppState;

use common::{Table, f};

/// Questions about the sample documents, Chinese and English, asked in turn.
const QUESTIONS: &[&str] = &[
    "累计工作已满10年的年休假有几天",
    "How many days per week can employees work remotely?",
    "病假超过3天要怎么办",
    "What is the home-office allowance?",
    "婚假有多少天",
    "忘记密码怎么办",
    "Can public Wi-Fi be used for confidential data?",
    "出差住宿标准是多少",
    "如何申请VPN账号",
    "What are the core hours for remote employees?",
];

struct Settings {
    clients: usize,
    secs: u64,
    drain_secs: u64,
    max_requests: usize,
    max_tokens: usize,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Self {
        Self {
            clients: env_or("ZHIKU_BENCH_CLIENTS", 50usize).max(1),
            secs: env_or("ZHIKU_BENCH_SECS", 60u64).max(1),
            drain_secs: env_or("ZHIKU_BENCH_DRAIN_SECS", 60u64),
            max_requests: env_or("ZHIKU_BENCH_MAX_REQUESTS", 100_000usize).max(1),
            max_tokens: env_or("ZHIKU_BENCH_MAX_TOKENS", 64usize).max(1),
        }
    }
}

/// The generator model: env `ZHIKU_BENCH_GEN_MODEL` (`none`: no generated phase), else the
/// first `.gguf` in `models/smollm2-135m-instruct`.
fn generator_model() -> Option<PathBuf> {
    match std::env::var("ZHIKU_BENCH_GEN_MODEL") {
        Ok(v) if v == "none" => None,
        Ok(v) => Some(PathBuf::from(v)).filter(|p| p.is_file()),
        Err(_) => {
            let mut found: Vec<PathBuf> = std::fs::read_dir("models/smollm2-135m-instruct")
                .ok()?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
                .collect();
            found.sort();
            found.into_iter().next()
        }
    }
}

/// Ingest the sample documents into knowledge base `handbook`, readable by group `bench`;
/// returns an API token of a member of that group.
fn prepare(data: &Path, model: &Path, embedder: Arc<dyn Embedder>) -> String {
    let engine = common::open_engine(data, model, embedder);
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&samples)
        .expect("tests/samples")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let t = Instant::now();
    index::ingest_paths(
        &engine,
        "handbook",
        &files,
        &index::IngestOptions::default(),
        &Silent,
    )
    .expect("ingest the samples");
    eprintln!(
        "ingested {} files ({} chunks) in {:.1} s",
        files.len(),
        engine.meta.chunk_count().unwrap_or(0),
        t.elapsed().as_secs_f64()
    );
    let m = &engine.meta;
    let group = m.create_group("bench").unwrap();
    m.grant(m.require_kb("handbook").unwrap(), group).unwrap();
    let user = m.create_user("loadtest", None, Role::Member).unwrap();
    m.add_to_group(user, group).unwrap();
    zhiku_core::access::create_token(m, user, "bench")
        .unwrap()
        .1
}

/// What one request came to.
enum Sample {
    Answered {
        ttft: Option<Duration>,
        total: Duration,
        outcome: String,
        prompt_tokens: usize,
    },
    Status(u16),
    Failed(String),
}

/// One client's connection, reopened when the server closed it.
struct Connection {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        let usable = match &mut self.sender {
            Some(s) => s.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            let tcp = tokio::net::TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("just set"))
    }

    /// Ask one question, streamed; time the first content and the end.
    async fn ask(&mut self, token: &str, body: Bytes) -> Sample {
        let start = Instant::now();
        let req = hyper::Request::post("/v1/chat/completions")
            .header(hyper::header::HOST, self.addr.to_string())
            .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .expect("a valid request");
        let sender = match self.sender().await {
            Ok(s) => s,
            Err(e) => return Sample::Failed(e),
        };
        let res = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                self.sender = None;
                return Sample::Failed(format!("request: {e}"));
            }
        };
        let status = res.status().as_u16();
        let mut body = res.into_body();
        if status != 200 {
            while let Some(Ok(_)) = body.frame().await {}
            return Sample::Status(status);
        }
        let mut buf = String::new();
        let mut ttft = None;
        let mut outcome = None;
        let mut prompt_tokens = 0;
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    self.sender = None;
                    return Sample::Failed(format!("body: {e}"));
                }
            };
            let Some(data) = frame.data_ref() else {
                continue;
            };
            buf.push_str(&String::from_utf8_lossy(data));
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                for line in event.lines() {
                    let Some(data) = line.strip_prefix("data: ") else {
                        continue;
                    };
                    if data == "[DONE]" {
                        return match outcome.take() {
                            Some(outcome) => Sample::Answered {
                                ttft,
                                total: start.elapsed(),
                                outcome,
                                prompt_tokens,
                            },
                            None => Sample::Failed("[DONE] without a finish chunk".into()),
                        };
                    }
                    let v: serde_json::Value = match serde_json::from_str(data) {
                        Ok(v) => v,
                        Err(e) => return Sample::Failed(format!("bad chunk: {e}")),
                    };
                    if let Some(e) = v.get("error") {
                        return Sample::Failed(format!("stream error: {}", e["code"]));
                    }
                    let content = v["choices"][0]["delta"]["content"].as_str();
                    if ttft.is_none() && content.is_some_and(|c| !c.is_empty()) {
                        ttft = Some(start.elapsed());
                    }
                    if let Some(o) = v["zhiku"]["outcome"].as_str() {
                        outcome = Some(o.to_string());
                    }
                    if let Some(n) = v["usage"]["prompt_tokens"].as_u64() {
                        prompt_tokens = n as usize;
                    }
                }
            }
        }
        Sample::Failed("the stream ended without [DONE]".into())
    }
}

#[derive(Default)]
struct Phase {
    ttft_ms: Vec<f64>,
    total_ms: Vec<f64>,
    errors: BTreeMap<String, usize>,
    outcomes: BTreeMap<String, usize>,
    requests: usize,
    unfinished: usize,
    secs: f64,
    load_before: String,
    load_after: String,
    /// The server's own means (after the slot was granted: no queueing).
    server_retrieval_ms: f64,
    server_ttft_ms: f64,
    server_answer_ms: f64,
    prompt_tokens: Vec<usize>,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Nearest-rank percentiles of `v` (sorted here), as "p50 / p95 / p99".
fn percentiles(v: &mut [f64]) -> String {
    if v.is_empty() {
        return "—".into();
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    format!(
        "{} / {} / {}",
        f(at(0.50), 0),
        f(at(0.95), 0),
        f(at(0.99), 0)
    )
}

/// Mean of a Prometheus histogram (all its label sets) from the server's `/metrics`
/// (`_sum` / `_count`), in ms.
fn histogram_mean_ms(metrics: &str, name: &str) -> f64 {
    let total = |suffix: &str| -> f64 {
        let series = format!("{name}{suffix}");
        metrics
            .lines()
            .filter(|l| {
                l.strip_prefix(&series)
                    .is_some_and(|rest| rest.starts_with([' ', '{']))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let n = total("_count");
    if n > 0.0 {
        total("_sum") / n * 1e3
    } else {
        f64::NAN
    }
}

/// A gauge's value from `/metrics`.
fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

async fn scrape(addr: SocketAddr) -> String {
    let mut c = Connection { addr, sender: None };
    let Ok(sender) = c.sender().await else {
        return String::new();
    };
    let req = hyper::Request::get("/metrics")
        .header(hyper::header::HOST, addr.to_string())
        .body(Full::new(Bytes::new()))
        .expect("a valid request");
    match sender.send_request(req).await {
        Ok(res) => res
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn body(question: &str, max_tokens: usize) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "model": "handbook",
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": question}],
        })
        .to_string(),
    )
}

/// Serve `engine` on 127.0.0.1 and run the clients against it.
fn run_phase(
    rt: &tokio::runtime::Runtime,
    engine: Engine,
    generator: Option<Arc<dyn Generator>>,
    token: &str,
    s: &Settings,
) -> Phase {
    let state = AppState::with_generator(engine, generator);
    // The next phase opens the same data folder, whose vector store allows one owner.
    let engine_alive = Arc::downgrade(&state.engine);
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(zhiku_server::serve(state, listener, async move {
            let _ = stopped.await;
        }));

        // Warm up (first query embedding, first generation) outside the timed run.
        let mut warm = Connection { addr, sender: None };
        for q in QUESTIONS.iter().take(2) {
            match warm.ask(token, body(q, s.max_tokens)).await {
                Sample::Answered { .. } => {}
                Sample::Status(code) => panic!("warm-up question answered {code}"),
                Sample::Failed(e) => panic!("warm-up question failed: {e}"),
            }
        }

        let mut phase = Phase {
            load_before: load_average(),
            ..Default::default()
        };
        let started = Instant::now();
        let stop_asking = started + Duration::from_secs(s.secs);
        let give_up = stop_asking + Duration::from_secs(s.drain_secs);
        let issued = Arc::new(AtomicUsize::new(0));
        let mut clients = Vec::with_capacity(s.clients);
        for i in 0..s.clients {
            let token = token.to_string();
            let issued = issued.clone();
            let max_requests = s.max_requests;
            let max_tokens = s.max_tokens;
            clients.push(tokio::spawn(async move {
                let mut conn = Connection { addr, sender: None };
                let mut samples = Vec::new();
                let mut unfinished = 0;
                let mut n = i;
                while Instant::now() < stop_asking
                    && issued.fetch_add(1, Ordering::SeqCst) < max_requests
                {
                    let q = QUESTIONS[n % QUESTIONS.len()];
                    n += 1;
                    let ask = conn.ask(&token, body(q, max_tokens));
                    match tokio::time::timeout_at(give_up.into(), ask).await {
                        Ok(sample) => samples.push(sample),
                        Err(_) => {
                            unfinished += 1;
                            break;
                        }
                    }
                }
                (samples, unfinished)
            }));
        }
        for c in clients {
            let (samples, unfinished) = c.await.expect("client task");
            phase.unfinished += unfinished;
            for sample in samples {
                phase.requests += 1;
                match sample {
                    Sample::Answered {
                        ttft,
                        total,
                        outcome,
                        prompt_tokens,
                    } => {
                        if outcome == "generated" {
                            phase.prompt_tokens.push(prompt_tokens);
                        }
                        if let Some(t) = ttft {
                            phase.ttft_ms.push(t.as_secs_f64() * 1e3);
                        }
                        phase.total_ms.push(total.as_secs_f64() * 1e3);
                        *phase.outcomes.entry(outcome).or_default() += 1;
                    }
                    Sample::Status(code) => *phase.errors.entry(code.to_string()).or_default() += 1,
                    Sample::Failed(why) => *phase.errors.entry(why).or_default() += 1,
                }
            }
        }
        phase.secs = started.elapsed().as_secs_f64();
        phase.load_after = load_average();
        // Every client is gone: once the server has seen them leave, nothing may still hold
        // a place in the generation queue.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut metrics = scrape(addr).await;
        while gauge(&metrics, "zhiku_generation_queue_depth") != Some(0.0)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
            metrics = scrape(addr).await;
        }
        let depth = gauge(&metrics, "zhiku_generation_queue_depth");
        if depth != Some(0.0) {
            eprintln!("warning: generation queue depth {depth:?} 30 s after the run");
        }
        phase.server_retrieval_ms = histogram_mean_ms(&metrics, "zhiku_answer_retrieval_seconds");
        phase.server_ttft_ms = histogram_mean_ms(&metrics, "zhiku_answer_ttft_seconds");
        phase.server_answer_ms = histogram_mean_ms(&metrics, "zhiku_answer_duration_seconds");
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(30), server).await;
        // Abandoned answers finish on their blocking threads, then let go of the engine.
        let deadline = Instant::now() + Duration::from_secs(120);
        while engine_alive.strong_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        phase
    })
}

fn main() {
    let model = common::model_dir();
    let s = Settings::from_env();
    let gen_model = generator_model();
    let dir = tempfile::tempdir().expect("temporary folder");
    let data = dir.path().join("data");
    let embedder = common::load_embedder(&model);
    let token = prepare(&data, &model, embedder.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    // The generator is handed to the server directly, so `[generate]` stays as it is.
    let engine = || {
        let mut config = common::config(&data, &model);
        let srv = &mut config.server;
        srv.ip_questions_per_s = 1_000_000;
        srv.user_questions_per_s = 1_000_000;
        srv.generation_queue = s.clients;
        srv.request_timeout_secs = s.secs + s.drain_secs + 60;
        Engine::open(config)
            .expect("open engine")
            .with_embedder(embedder.clone())
    };

    println!(
        "## Serving load: {} clients × {} s per phase",
        s.clients, s.secs
    );
    println!();
    println!("machine: {}", common::machine());
    println!();
    let mut table = Table::new(&[
        "answers",
        "requests",
        "errors",
        "unfinished",
        "answers/s",
        "first content p50 / p95 / p99 ms",
        "total p50 / p95 / p99 ms",
        "server mean ms: retrieval / TTFT / answer",
        "prompt tokens (mean)",
        "outcomes",
        "load before → after",
    ]);
    let mut add = |name: &str, mut p: Phase| {
        let errors = if p.errors.is_empty() {
            "0".to_string()
        } else {
            p.errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let outcomes = p
            .outcomes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        table.row(vec![
            name.to_string(),
            p.requests.to_string(),
            errors,
            p.unfinished.to_string(),
            f(p.total_ms.len() as f64 / p.secs, 1),
            percentiles(&mut p.ttft_ms),
            percentiles(&mut p.total_ms),
            format!(
                "{} / {} / {}",
                ms(p.server_retrieval_ms, 1),
                ms(p.server_ttft_ms, 0),
                ms(p.server_answer_ms, 0)
            ),
            if p.prompt_tokens.is_empty() {
                "—".into()
            } else {
                f(
                    p.prompt_tokens.iter().sum::<usize>() as f64 / p.prompt_tokens.len() as f64,
                    0,
                )
            },
            outcomes,
            format!("{} → {}", p.load_before, p.load_after),
        ]);
    };

    eprintln!("extractive phase ({} s)", s.secs);
    let p = run_phase(&rt, engine(), None, &token, &s);
    add("extractive (retrieval only)", p);

    match &gen_model {
        Some(path) => {
            let cfg = GenerateConfig {
                backend: GenerateBackend::Candle,
                model: Some(path.clone()),
                ..Default::default()
            };
            let t = Instant::now();
            let g = generate::from_config(&cfg, None)
                .expect("load the generator")
                .expect("a candle generator");
            eprintln!(
                "loaded {} in {:.1} s; generated phase ({} s)",
                path.display(),
                t.elapsed().as_secs_f64(),
                s.secs
            );
            let p = run_phase(&rt, engine(), Some(g), &token, &s);
            add(
                &format!("generated ({}, max_tokens {})", g_name(path), s.max_tokens),
                p,
            );
        }
        None => eprintln!(
            "no generator model (models/smollm2-135m-instruct/*.gguf or ZHIKU_BENCH_GEN_MODEL): \
             generated phase skipped"
        ),
    }
    table.print();
    println!(
        "Client times run from sending the request, queueing included; first content is the \
         first non-empty delta. Server means are the server's own histograms, timed from when \
         the question got its generation slot. Errors: statuses other than 200 and broken \
         streams. Unfinished: still in flight {} s after the run, abandoned.",
        s.drain_secs
    );
}

/// A mean in ms, or "—" when nothing was measured.
fn ms(v: f64, digits: usize) -> String {
    if v.is_nan() {
        "—".into()
    } else {
        f(v, digits)
    }
}

fn g_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
