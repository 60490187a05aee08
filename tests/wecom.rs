//! The WeCom integration end to end on 127.0.0.1: a mock WeCom API (gettoken, message/send,
//! webhook/send) records what zhiku sends; encrypted callbacks go in through the test client.
//! Answers are extractive (fast) except where a gated fake generator proves that the
//! callback is answered before the answer exists.

mod common;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::{get, post};
use serde_json::{Value, json};
use zhiku_core::config::Config;
use zhiku_core::engine::Engine;
use zhiku_core::store::meta::WecomMessage;
use zhiku_llm::generate::{
    ChatMessage, FinishReason, GenerationStats, Generator, Result as GenResult, SamplingParams,
};
use zhiku_server::wecom::crypto::Crypto;

use common::HashEmbedder;
use common::http::{Client, Multipart, Response, TestServer};

const TOKEN: &str = "QDG6eK";
const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const CORP: &str = "wx5823bf96d3bd56c7";
const SECRET: &str = "app-secret-1";
const AGENT: u64 = 1000002;

// ---- the mock WeCom API ----

/// One request the mock received: its path, query and JSON body.
#[derive(Debug, Clone)]
struct Call {
    path: String,
    query: HashMap<String, String>,
    body: Value,
}

#[derive(Default)]
struct Recorded {
    calls: Mutex<Vec<Call>>,
    tokens: AtomicUsize,
    /// Answer message/send with 42001 (token expired) this many times.
    expire_sends: AtomicUsize,
}

/// A mock WeCom API on 127.0.0.1; stops when dropped.
struct MockWecom {
    base: String,
    rec: Arc<Recorded>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

async fn gettoken(
    State(r): State<Arc<Recorded>>,
    Query(q): Query<HashMap<String, String>>,
) -> axum::Json<Value> {
    let ok = q.get("corpid").map(String::as_str) == Some(CORP)
        && q.get("corpsecret").map(String::as_str) == Some(SECRET);
    r.calls.lock().unwrap().push(Call {
        path: "gettoken".into(),
        query: q,
        body: Value::Null,
    });
    if !ok {
        return axum::Json(json!({"errcode": 40001, "errmsg": "invalid credential"}));
    }
    let n = r.tokens.fetch_add(1, SeqCst) + 1;
    axum::Json(
        json!({"errcode": 0, "errmsg": "ok", "access_token": format!("TOKEN-{n}"), "expires_in": 7200}),
    )
}

async fn message_send(
    State(r): State<Arc<Recorded>>,
    Query(q): Query<HashMap<String, String>>,
    axum::Json(body): axum::Json<Value>,
) -> axum::Json<Value> {
    let token_ok = q
        .get("access_token")
        .is_some_and(|t| t.starts_with("TOKEN-"));
    r.calls.lock().unwrap().push(Call {
        path: "message/send".into(),
        query: q,
        body,
    });
    let expire = r
        .expire_sends
        .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if expire {
        return axum::Json(json!({"errcode": 42001, "errmsg": "access_token expired"}));
    }
    if !token_ok {
        return axum::Json(json!({"errcode": 40014, "errmsg": "invalid access_token"}));
    }
    axum::Json(json!({"errcode": 0, "errmsg": "ok", "invaliduser": ""}))
}

async fn webhook_send(
    State(r): State<Arc<Recorded>>,
    Query(q): Query<HashMap<String, String>>,
    axum::Json(body): axum::Json<Value>,
) -> axum::Json<Value> {
    r.calls.lock().unwrap().push(Call {
        path: "webhook/send".into(),
        query: q,
        body,
    });
    axum::Json(json!({"errcode": 0, "errmsg": "ok"}))
}

impl MockWecom {
    fn start() -> Self {
        let rec = Arc::new(Recorded::default());
        let app = axum::Router::new()
            .route("/cgi-bin/gettoken", get(gettoken))
            .route("/cgi-bin/message/send", post(message_send))
            .route("/cgi-bin/webhook/send", post(webhook_send))
            .with_state(rec.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                axum::serve(l, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        Self {
            base: format!("http://{addr}"),
            rec,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn calls(&self, path: &str) -> Vec<Call> {
        let calls = self.rec.calls.lock().unwrap();
        calls.iter().filter(|c| c.path == path).cloned().collect()
    }

    fn all(&self) -> usize {
        self.rec.calls.lock().unwrap().len()
    }

    /// Wait (at most 60 s) until `path` was called `n` times; returns those calls.
    fn wait_for(&self, path: &str, n: usize) -> Vec<Call> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let calls = self.calls(path);
            if calls.len() >= n {
                return calls;
            }
            assert!(
                Instant::now() < deadline,
                "{path}: {} calls, waited for {n}",
                calls.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for MockWecom {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The text of a message/send body (markdown or text).
fn sent_text(c: &Call) -> String {
    c.body["markdown"]["content"]
        .as_str()
        .or_else(|| c.body["text"]["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

// ---- zhiku with WeCom on ----

fn wecom_config(c: &mut Config, api_base: &str) {
    let w = &mut c.wecom;
    w.corp_id = Some(CORP.into());
    w.agent_id = Some(AGENT);
    w.secret = Some(SECRET.into());
    w.token = Some(TOKEN.into());
    w.encoding_aes_key = Some(AES_KEY.into());
    w.api_base = api_base.into();
    w.users.insert("ZhangSan".into(), "alice".into());
    w.users.insert("WangWu".into(), "bob".into());
    c.server.public_url = Some("https://zhiku.example.com/".into());
}

/// Knowledge bases `hr` (leave policy: group staff, alice) and `it` (IT help desk: group
/// ops, bob); root is an admin. WeCom users ZhangSan → alice, WangWu → bob.
fn setup(dir: &Path, api_base: &str, tweak: impl FnOnce(&mut Config)) -> Engine {
    let e = open(dir, api_base, tweak);
    common::hr_and_it(&e);
    e
}

fn open(dir: &Path, api_base: &str, tweak: impl FnOnce(&mut Config)) -> Engine {
    let mut config = common::config(dir);
    wecom_config(&mut config, api_base);
    tweak(&mut config);
    Engine::open(config)
        .unwrap()
        .with_embedder(HashEmbedder::new())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

static NONCE: AtomicUsize = AtomicUsize::new(1);

/// A signed query for `encrypted` with a fresh nonce and the current time.
fn signed(encrypted: &str, timestamp: i64) -> String {
    let c = Crypto::new(TOKEN, AES_KEY, CORP).unwrap();
    let nonce = format!("{}", 100_000_000 + NONCE.fetch_add(1, SeqCst));
    let ts = timestamp.to_string();
    let sig = c.signature(&ts, &nonce, encrypted);
    format!("msg_signature={sig}&timestamp={ts}&nonce={nonce}")
}

fn message_xml(from: &str, content: &str, msg_id: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName>\
         <CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>\
         <MsgId>{msg_id}</MsgId><AgentID>{AGENT}</AgentID></xml>",
        unix_now()
    )
}

/// The POST WeCom makes for `xml`: the envelope body and its signed query.
fn callback(xml: &str) -> (String, String) {
    let c = Crypto::new(TOKEN, AES_KEY, CORP).unwrap();
    let encrypted = c.encrypt(xml);
    let body = format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><AgentID><![CDATA[{AGENT}]]></AgentID>\
         <Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    );
    (signed(&encrypted, unix_now()), body)
}

fn post_callback(c: &Client, query: &str, body: &str) -> Response {
    c.request(
        "POST",
        &format!("/wecom/callback?{query}"),
        Some(body.as_bytes().to_vec()),
        &[("Content-Type", "text/xml")],
    )
}

/// Post a text message as WeCom does; returns the response.
fn send(c: &Client, from: &str, content: &str, msg_id: &str) -> Response {
    let (query, body) = callback(&message_xml(from, content, msg_id));
    post_callback(c, &query, &body)
}

fn assert_empty_ok(r: &Response) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body.is_empty(), "body: {}", r.text());
}

// ---- a generator that waits for the test ----

/// Writes a cited answer once the gate opens.
struct Gated {
    open: Mutex<bool>,
    cv: Condvar,
    started: AtomicBool,
}

impl Gated {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            open: Mutex::new(false),
            cv: Condvar::new(),
            started: AtomicBool::new(false),
        })
    }
    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

impl Generator for Gated {
    fn model_id(&self) -> &str {
        "gated"
    }
    fn context_length(&self) -> usize {
        100_000
    }
    fn count_prompt_tokens(&self, m: &[ChatMessage]) -> GenResult<usize> {
        Ok(m.iter().map(|m| m.content.chars().count()).sum())
    }
    fn generate(
        &self,
        _: &[ChatMessage],
        _: &SamplingParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> GenResult<GenerationStats> {
        self.started.store(true, SeqCst);
        let open = self.open.lock().unwrap();
        // Bounded: a test that never opens the gate fails instead of hanging.
        let (open, _) = self
            .cv
            .wait_timeout_while(open, Duration::from_secs(120), |o| !*o)
            .unwrap();
        assert!(*open, "the gate was never opened");
        let _ = on_text("工作满1年不满10年的员工，年休假5天[1]。");
        Ok(GenerationStats {
            prompt_tokens: 10,
            completion_tokens: 10,
            ttft_ms: 1.0,
            total_ms: 1.0,
            tokens_per_s: 10.0,
            finish: FinishReason::Stop,
        })
    }
}

// ---- tests ----

/// The acceptance round trip: the empty 200 comes back while the answer is still being
/// written (the generator waits for the test, and WeCom's API has heard nothing); the answer
/// reaches message/send once, with its sources, although the message was posted three
/// times, and again not after a restart and a fourth post.
#[test]
fn round_trip_answers_once_with_sources_across_retries_and_restarts() {
    let mock = MockWecom::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gate = Gated::new();
    let server = TestServer::start(setup(&data, &mock.base, |_| {}), Some(gate.clone()));
    let c = server.client();

    let start = Instant::now();
    let r = send(&c, "ZhangSan", "年休假有几天", "4561255354251345929");
    let took = start.elapsed();
    assert_empty_ok(&r);
    // Replied before the answer exists: nothing went to WeCom yet.
    assert_eq!(
        mock.all(),
        0,
        "WeCom was called before the callback was answered"
    );
    // A generous bound for a busy 2-core machine; the callback itself does two small SQLite
    // writes (measured in single milliseconds), the order above is the real proof.
    eprintln!("callback answered in {took:?}");
    assert!(took < Duration::from_secs(2), "callback took {took:?}");
    // WeCom's retries of the same MsgId (each with its own nonce).
    for _ in 0..2 {
        assert_empty_ok(&send(&c, "ZhangSan", "年休假有几天", "4561255354251345929"));
    }
    assert_eq!(mock.all(), 0);
    gate.release();

    let sent = mock.wait_for("message/send", 1);
    let body = &sent[0].body;
    assert_eq!(body["touser"], "ZhangSan");
    assert_eq!(body["agentid"], AGENT);
    assert_eq!(body["msgtype"], "markdown");
    let text = sent_text(&sent[0]);
    assert!(text.contains("年休假5天[1]"), "{text}");
    assert!(text.contains("**来源**"), "{text}");
    assert!(
        text.contains("1. [员工手册-休假制度](https://zhiku.example.com/?chunk="),
        "{text}"
    );
    assert_eq!(sent[0].query["access_token"], "TOKEN-1");
    assert_eq!(mock.calls("gettoken").len(), 1);
    let gettoken = &mock.calls("gettoken")[0];
    assert_eq!(gettoken.query["corpsecret"], SECRET);
    wait_state(&server, "4561255354251345929", "sent");

    // Logged like any question, via wecom, as alice.
    let root = c.login("root", "password-1");
    let log = root.get("/api/admin/queries").json();
    let entry = log
        .as_array()
        .or_else(|| log["queries"].as_array())
        .and_then(|l| l.iter().find(|q| q["question"] == "年休假有几天"))
        .cloned()
        .unwrap_or_else(|| panic!("not in the query log: {log}"));
    assert_eq!(entry["via"], "wecom", "{entry}");
    assert_eq!(entry["user"], "alice", "{entry}");

    // Restart between retries: the fourth post is recognised too.
    drop(server);
    let server = TestServer::start(open(&data, &mock.base, |_| {}), None);
    let c = server.client();
    assert_empty_ok(&send(&c, "ZhangSan", "年休假有几天", "4561255354251345929"));
    // A new message is answered (extractively), after which the count is two: the repeat
    // started nothing.
    assert_empty_ok(&send(
        &c,
        "ZhangSan",
        "病假工资怎么发",
        "4561255354251345930",
    ));
    let sent = mock.wait_for("message/send", 2);
    wait_state(&server, "4561255354251345930", "sent");
    assert_eq!(mock.calls("message/send").len(), 2, "{sent:?}");
    assert!(
        sent_text(&sent[1]).contains("80%"),
        "{}",
        sent_text(&sent[1])
    );
}

/// Wait (at most 60 s) until the message's state is `want`.
fn wait_state(server: &TestServer, msg_id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = server.state.engine.meta.wecom_state(msg_id).unwrap();
        if s.as_deref() == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{msg_id} is {s:?}, not {want}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A message accepted by a process that stopped before answering is answered at the next
/// start; one that was being sent is not sent again.
#[test]
fn restart_finishes_accepted_messages_and_never_resends() {
    let mock = MockWecom::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let e = setup(&data, &mock.base, |_| {});
        for id in ["m-accepted", "m-sending"] {
            let m = WecomMessage {
                msg_id: id.into(),
                from_user: "ZhangSan".into(),
                content: "年休假有几天".into(),
            };
            assert!(e.meta.wecom_accept(&m).unwrap());
        }
        assert!(e.meta.wecom_start_sending("m-sending").unwrap());
    }
    let server = TestServer::start(open(&data, &mock.base, |_| {}), None);
    let sent = mock.wait_for("message/send", 1);
    wait_state(&server, "m-accepted", "sent");
    assert_eq!(
        server
            .state
            .engine
            .meta
            .wecom_state("m-sending")
            .unwrap()
            .as_deref(),
        Some("unknown")
    );
    assert_eq!(mock.calls("message/send").len(), 1);
    assert!(
        sent_text(&sent[0]).contains("年休假"),
        "{}",
        sent_text(&sent[0])
    );
}

/// After a long outage, messages accepted longer ago than `wecom.recover_max_age_secs` are
/// marked expired and not answered; younger ones are answered.
#[test]
fn restart_expires_messages_too_old_to_answer() {
    let mock = MockWecom::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let e = setup(&data, &mock.base, |_| {});
        for id in ["m-old", "m-recent"] {
            let m = WecomMessage {
                msg_id: id.into(),
                from_user: "ZhangSan".into(),
                content: "年休假有几天".into(),
            };
            assert!(e.meta.wecom_accept(&m).unwrap());
        }
    }
    // m-old was accepted two hours before the restart (the limit is one).
    let db = rusqlite::Connection::open(data.join("zhiku.sqlite")).unwrap();
    let old = unix_now() - 7200;
    db.execute(
        "UPDATE wecom_messages SET created_at = ?1, updated_at = ?1 WHERE msg_id = 'm-old'",
        [old],
    )
    .unwrap();
    drop(db);
    let server = TestServer::start(
        open(&data, &mock.base, |c| c.wecom.recover_max_age_secs = 3600),
        None,
    );
    wait_state(&server, "m-recent", "sent");
    let meta = &server.state.engine.meta;
    assert_eq!(
        meta.wecom_state("m-old").unwrap().as_deref(),
        Some("expired")
    );
    assert_eq!(
        mock.calls("message/send").len(),
        1,
        "only m-recent answered"
    );
    assert!(
        !meta.wecom_start_sending("m-old").unwrap(),
        "expired is final: nothing may send it"
    );
}

/// URL verification with the official SDK vector (its 2014 timestamp needs a wide window),
/// an `echostr` whose `+` arrives unescaped, and refusals.
#[test]
fn url_verification() {
    let mock = MockWecom::start();
    let dir = tempfile::tempdir().unwrap();
    let e = setup(&dir.path().join("data"), &mock.base, |c| {
        c.wecom.max_clock_skew_secs = 100 * 365 * 24 * 3600;
    });
    let server = TestServer::start(e, None);
    let c = server.client();
    let echostr =
        "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==";
    let encoded: String = url_encode(echostr);
    let r = c.get(&format!(
        "/wecom/callback?msg_signature=5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3&timestamp=1409659589&nonce=263014780&echostr={encoded}"
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "1616140317555161061");
    // The same request again: its nonce was used.
    let r = c.get(&format!(
        "/wecom/callback?msg_signature=5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3&timestamp=1409659589&nonce=263014780&echostr={encoded}"
    ));
    assert_eq!(r.status, 403);
    // A fresh echostr with `+` left unescaped in the URL.
    let crypto = Crypto::new(TOKEN, AES_KEY, CORP).unwrap();
    let (enc, plain) = (0..1000)
        .map(|i| {
            let plain = format!("{}", unix_now() * 1000 + i);
            (crypto.encrypt(&plain), plain)
        })
        .find(|(enc, _)| enc.contains('+'))
        .expect("some ciphertext has a +");
    let q = signed(&enc, unix_now());
    let r = c.get(&format!(
        "/wecom/callback?{q}&echostr={}",
        enc.replace('=', "%3D")
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), plain);
    // Wrong signature.
    let r = c.get(&format!(
        "/wecom/callback?msg_signature=0000ff5e21c57e6ad56bac8758b79b1d9ac89fd3&timestamp=1409659589&nonce=1&echostr={encoded}"
    ));
    assert_eq!(r.status, 403);
    assert_eq!(mock.all(), 0);
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Forged, replayed, stale and malformed callbacks are refused and answered nothing.
#[test]
fn forged_replayed_and_stale_callbacks_are_refused() {
    let mock = MockWecom::start();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(setup(&dir.path().join("data"), &mock.base, |_| {}), None);
    let c = server.client();
    let meta = &server.state.engine.meta;
    let xml = message_xml("ZhangSan", "年休假有几天", "900");

    // Wrong signature.
    let (query, body) = callback(&xml);
    let forged = query.replacen("msg_signature=", "msg_signature=0", 1);
    assert_eq!(post_callback(&c, &forged, &body).status, 403);
    // A body swapped under a valid signature.
    let (_, other_body) = callback(&message_xml("ZhangSan", "别的问题", "901"));
    assert_eq!(post_callback(&c, &query, &other_body).status, 403);
    // Expired timestamp (ten minutes old, signed correctly).
    let crypto = Crypto::new(TOKEN, AES_KEY, CORP).unwrap();
    let enc = crypto.encrypt(&xml);
    let stale = signed(&enc, unix_now() - 600);
    let envelope = format!(
        "<xml><ToUserName>{CORP}</ToUserName><AgentID>{AGENT}</AgentID><Encrypt>{enc}</Encrypt></xml>"
    );
    assert_eq!(post_callback(&c, &stale, &envelope).status, 403);
    // Encrypted for another corp: signature fine, receive id wrong.
    let other = Crypto::new(TOKEN, AES_KEY, "ww0000000000000000").unwrap();
    let enc = other.encrypt(&xml);
    let q = signed(&enc, unix_now());
    let envelope = format!(
        "<xml><ToUserName>{CORP}</ToUserName><AgentID>{AGENT}</AgentID><Encrypt>{enc}</Encrypt></xml>"
    );
    assert_eq!(post_callback(&c, &q, &envelope).status, 400);
    // Not XML.
    let (query, _) = callback(&xml);
    assert_eq!(post_callback(&c, &query, "hello").status, 400);
    assert_eq!(
        meta.wecom_state("900").unwrap(),
        None,
        "nothing was accepted"
    );

    // The genuine callback is accepted once; replaying it exactly is refused.
    let (query, body) = callback(&xml);
    assert_empty_ok(&post_callback(&c, &query, &body));
    assert_eq!(post_callback(&c, &query, &body).status, 403);
    mock.wait_for("message/send", 1);
    wait_state(&server, "900", "sent");
    assert_eq!(mock.calls("message/send").len(), 1);
}

/// WeCom says the token expired (42001): zhiku fetches a new one and sends again, once.
#[test]
fn expired_token_is_renewed_and_the_answer_sent() {
    let mock = MockWecom::start();
    mock.rec.expire_sends.store(1, SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        setup(&dir.path().join("data"), &mock.base, |c| {
            c.wecom.message_type = zhiku_core::config::WecomMessageType::Text;
        }),
        None,
    );
    let c = server.client();
    assert_empty_ok(&send(&c, "ZhangSan", "年休假有几天", "700"));
    let sent = mock.wait_for("message/send", 2);
    wait_state(&server, "700", "sent");
    assert_eq!(sent[0].query["access_token"], "TOKEN-1");
    assert_eq!(sent[1].query["access_token"], "TOKEN-2");
    assert_eq!(mock.calls("gettoken").len(), 2);
    assert_eq!(sent[1].body["msgtype"], "text");
    let text = sent_text(&sent[1]);
    assert!(text.contains("来源：\n[1] 员工手册-休假制度"), "{text}");
    assert_eq!(mock.calls("message/send").len(), 2);
}

/// Users are mapped or provisioned, and answered only from what they may read; the limit
/// per user gets a polite note; other message kinds get a note that only text is read.
#[test]
fn identity_permissions_limits_and_other_kinds() {
    let mock = MockWecom::start();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        setup(&dir.path().join("data"), &mock.base, |c| {
            c.wecom.user_questions_per_minute = 1;
        }),
        None,
    );
    let c = server.client();
    let meta = &server.state.engine.meta;

    // bob (ops) reads only `it`: the leave policy is not his to cite.
    assert_empty_ok(&send(&c, "WangWu", "年休假有几天", "1"));
    let sent = mock.wait_for("message/send", 1);
    let text = sent_text(&sent[0]);
    assert!(
        !text.contains("休假制度"),
        "bob was answered from hr: {text}"
    );
    assert_eq!(sent[0].body["touser"], "WangWu");

    // A new employee becomes a member of the default group, which reads nothing yet.
    assert_empty_ok(&send(&c, "LiSi", "年休假有几天", "2"));
    let sent = mock.wait_for("message/send", 2);
    let text = sent_text(&sent[1]);
    assert!(text.contains("知识库"), "{text}");
    let lisi = meta.user_by_wecom("LiSi").unwrap().expect("provisioned");
    assert_eq!(lisi.name, "LiSi");
    assert_eq!(lisi.groups, vec!["wecom".to_string()]);

    // Once the group is granted hr, LiSi is answered from it (a second question within the
    // minute is over LiSi's limit of one, so it is a new employee's turn: an existing
    // account named `alice` is never taken over, the new one is `wecom-alice`).
    let group = meta.group_id("wecom").unwrap().unwrap();
    meta.grant(meta.require_kb("hr").unwrap(), group).unwrap();
    assert_empty_ok(&send(&c, "LiSi", "年休假有几天", "3"));
    let sent = mock.wait_for("message/send", 3);
    assert!(
        sent_text(&sent[2]).contains("太频繁"),
        "{}",
        sent_text(&sent[2])
    );
    assert_empty_ok(&send(&c, "alice", "年休假有几天", "4"));
    let sent = mock.wait_for("message/send", 4);
    assert!(
        sent_text(&sent[3]).contains("休假制度"),
        "{}",
        sent_text(&sent[3])
    );
    let new = meta.user_by_wecom("alice").unwrap().unwrap();
    assert_eq!(new.name, "wecom-alice");
    assert_ne!(
        Some(new.id),
        meta.user_by_name("alice").unwrap().map(|u| u.id)
    );

    // An image.
    let xml = format!(
        "<xml><ToUserName>{CORP}</ToUserName><FromUserName>WangWu</FromUserName><CreateTime>1</CreateTime>\
         <MsgType>image</MsgType><PicUrl>http://x/y.png</PicUrl><MediaId>m</MediaId><MsgId>5</MsgId><AgentID>{AGENT}</AgentID></xml>"
    );
    let (q, body) = callback(&xml);
    assert_empty_ok(&post_callback(&c, &q, &body));
    let sent = mock.wait_for("message/send", 5);
    assert!(
        sent_text(&sent[4]).contains("文字"),
        "{}",
        sent_text(&sent[4])
    );
    // An event: nothing to answer.
    let xml = format!(
        "<xml><ToUserName>{CORP}</ToUserName><FromUserName>WangWu</FromUserName><CreateTime>1</CreateTime>\
         <MsgType>event</MsgType><Event>enter_agent</Event><AgentID>{AGENT}</AgentID></xml>"
    );
    let (q, body) = callback(&xml);
    assert_empty_ok(&post_callback(&c, &q, &body));
    wait_state(&server, "5", "sent");
    assert_eq!(mock.calls("message/send").len(), 5);
}

/// A finished upload job reaches the group robot with its knowledge base and counts.
#[test]
fn finished_jobs_notify_the_group_robot() {
    let mock = MockWecom::start();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        setup(&dir.path().join("data"), &mock.base, |c| {
            c.wecom.robot_webhook = Some("robot-key-1".into());
        }),
        None,
    );
    let root = server.client().login("root", "password-1");
    let form = Multipart::new()
        .file(
            "files",
            "公告.txt",
            "公司年会定于十二月举行，地点在总部大楼。".as_bytes(),
        )
        .file("files", "坏文件.pdf", b"%PDF-1.4 not really");
    let r = root.post_multipart("/api/kbs/hr/documents", form);
    assert_eq!(r.status, 202, "{}", r.text());
    let job = r.json()["job"].as_i64().unwrap();
    let calls = mock.wait_for("webhook/send", 1);
    assert_eq!(calls[0].query["key"], "robot-key-1");
    assert_eq!(calls[0].body["msgtype"], "markdown");
    let text = calls[0].body["markdown"]["content"].as_str().unwrap();
    assert!(
        text.contains("**hr**") && text.contains(&format!("#{job}")),
        "{text}"
    );
    assert!(text.contains("成功 1 个，失败 1 个"), "{text}");
    assert!(text.contains("坏文件.pdf"), "{text}");
    assert!(mock.calls("message/send").is_empty());
}
