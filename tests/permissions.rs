//! Folder and document rules end to end on 127.0.0.1: three users (root, an admin; alice
//! of group A; bob of group B) × a folder restricted to A, a document restricted to B and an
//! unrestricted document × every interface that reads a knowledge base: `/api/ask`,
//! `/api/chunks/{id}` (the passage view), document download, the document list,
//! `/v1/chat/completions`, WeCom answers (a mock WeCom API), the hit test viewed as each user
//! and `finetune data`. Every forbidden read is denied, and no restricted text (or title)
//! appears in any answer, citation, list or error. A second test checks the order of a rule
//! change: denied at once, before the indexes' filters have been rewritten.
//!
//! Uses the hashing test embedder (fast, lexical) and extractive answers.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::{get, post};
use serde_json::{Value, json};
use zhiku_core::config::Config;
use zhiku_core::engine::Engine;
use zhiku_core::store::meta::Role;
use zhiku_core::store::{DocId, Reader};
use zhiku_server::wecom::crypto::Crypto;

use common::HashEmbedder;
use common::http::{Client, Multipart, Response, TestServer};

/// One document of the test knowledge base: its upload name, text, and the strings that
/// must never reach someone who may not read it (none of them in any question: answers and
/// the hit test repeat the asker's own question and its key terms).
struct Doc {
    name: &'static str,
    text: &'static str,
    secret: &'static str,
    question: &'static str,
    /// Further text only this document holds (its title and a phrase of its body).
    marks: &'static [&'static str],
}

const OPEN: Doc = Doc {
    name: "公开/休假制度.txt",
    text: "# 休假制度\n\n年休假制度是OPENTEXT规定的员工每年带薪休假五天的制度。员工入职满一年后可以申请年休假。\n",
    secret: "OPENTEXT",
    question: "OPENTEXT 年休假制度是什么",
    marks: &[],
};
const FOLDER: Doc = Doc {
    name: "薪酬/高管方案.txt",
    text: "# 高管年薪\n\n高管年薪方案是FOLDERSECRET规定的总经理年薪一百万元的方案。奖金按季度发放。\n",
    secret: "FOLDERSECRET",
    question: "FOLDERSECRET 高管年薪方案是什么",
    marks: &["高管方案", "总经理年薪一百万"],
};
const DOCUMENT: Doc = Doc {
    name: "并购/星辰项目.txt",
    text: "# 星辰并购\n\n收购计划是DOCSECRET规定的收购星辰科技公司的计划。交割日期为明年三月。\n",
    secret: "DOCSECRET",
    question: "DOCSECRET 收购计划是什么",
    marks: &["星辰项目", "星辰科技", "星辰并购"],
};
/// Uploaded into the restricted folder after its rule: inherits it.
const LATER: Doc = Doc {
    name: "薪酬/新版方案.txt",
    text: "# 新版年薪\n\n新版年薪方案是LATERSECRET规定的副总年薪八十万元的方案。\n",
    secret: "LATERSECRET",
    question: "LATERSECRET 新版年薪方案是什么",
    marks: &["新版方案", "副总年薪八十万"],
};

const DOCS: [&Doc; 4] = [&OPEN, &FOLDER, &DOCUMENT, &LATER];

/// Who may read which document.
fn allowed(user: &str, doc: &Doc) -> bool {
    match user {
        "root" => true,
        "alice" => doc.name != DOCUMENT.name,
        "bob" => doc.name != FOLDER.name && doc.name != LATER.name,
        _ => unreachable!(),
    }
}

const USERS: [&str; 3] = ["root", "alice", "bob"];

/// Fail when `text` holds anything of a document `user` may not read.
fn assert_nothing_forbidden(user: &str, what: &str, text: &str) {
    for d in DOCS.iter().filter(|d| !allowed(user, d)) {
        for s in std::iter::once(&d.secret).chain(d.marks) {
            assert!(
                !text.contains(s),
                "{user}: {what} shows `{s}` of {} it may not read:\n{text}",
                d.name
            );
        }
    }
}

// ---- a mock WeCom API: gettoken and message/send ----

const TOKEN: &str = "QDG6eK";
const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const CORP: &str = "wx5823bf96d3bd56c7";
const SECRET: &str = "app-secret-1";
const AGENT: u64 = 1000002;

#[derive(Default)]
struct Sent(std::sync::Mutex<Vec<Value>>);

struct MockWecom {
    base: String,
    sent: Arc<Sent>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

async fn gettoken() -> axum::Json<Value> {
    axum::Json(json!({"errcode": 0, "errmsg": "ok", "access_token": "TOKEN-1", "expires_in": 7200}))
}

async fn message_send(
    State(s): State<Arc<Sent>>,
    Query(_q): Query<HashMap<String, String>>,
    axum::Json(body): axum::Json<Value>,
) -> axum::Json<Value> {
    s.0.lock().unwrap().push(body);
    axum::Json(json!({"errcode": 0, "errmsg": "ok", "invaliduser": ""}))
}

impl MockWecom {
    fn start() -> Self {
        let sent = Arc::new(Sent::default());
        let app = axum::Router::new()
            .route("/cgi-bin/gettoken", get(gettoken))
            .route("/cgi-bin/message/send", post(message_send))
            .with_state(sent.clone());
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
            sent,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Wait (at most 60 s) for the `n`th message sent; returns its text and recipient.
    fn wait_for(&self, n: usize) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(b) = self.sent.0.lock().unwrap().get(n - 1) {
                let text = b["markdown"]["content"]
                    .as_str()
                    .or_else(|| b["text"]["content"].as_str())
                    .unwrap_or_default();
                return (text.to_string(), b["touser"].as_str().unwrap_or("").into());
            }
            assert!(Instant::now() < deadline, "no WeCom message {n} was sent");
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

static MSG: AtomicUsize = AtomicUsize::new(1);

/// Post a text message from WeCom user `from`, encrypted and signed as WeCom does.
fn wecom_ask(c: &Client, from: &str, content: &str) -> Response {
    let crypto = Crypto::new(TOKEN, AES_KEY, CORP).unwrap();
    let n = MSG.fetch_add(1, SeqCst);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let xml = format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName>\
         <CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>\
         <MsgId>{}</MsgId><AgentID>{AGENT}</AgentID></xml>",
        7_000_000_000u64 + n as u64
    );
    let encrypted = crypto.encrypt(&xml);
    let body = format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><AgentID><![CDATA[{AGENT}]]></AgentID>\
         <Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    );
    let nonce = format!("{}", 200_000_000 + n);
    let ts = now.to_string();
    let sig = crypto.signature(&ts, &nonce, &encrypted);
    c.request(
        "POST",
        &format!("/wecom/callback?msg_signature={sig}&timestamp={ts}&nonce={nonce}"),
        Some(body.into_bytes()),
        &[("Content-Type", "text/xml")],
    )
}

// ---- the company ----

fn wecom_config(c: &mut Config, api_base: &str) {
    let w = &mut c.wecom;
    w.corp_id = Some(CORP.into());
    w.agent_id = Some(AGENT);
    w.secret = Some(SECRET.into());
    w.token = Some(TOKEN.into());
    w.encoding_aes_key = Some(AES_KEY.into());
    w.api_base = api_base.into();
    for u in USERS {
        w.users.insert(format!("W-{u}"), u.into());
    }
    c.server.public_url = Some("https://zhiku.example.com/".into());
}

/// Knowledge base `hr`, read by groups A and B; root (admin), alice (A), bob (B).
fn company(dir: &std::path::Path, wecom: Option<&str>) -> Engine {
    let mut config = common::config(dir);
    // Many questions in a few seconds from one address: no rate limit in the way.
    config.server.ip_questions_per_s = 1000;
    config.server.user_questions_per_s = 1000;
    if let Some(base) = wecom {
        wecom_config(&mut config, base);
    }
    let e = Engine::open(config)
        .unwrap()
        .with_embedder(HashEmbedder::new());
    let m = &e.meta;
    let kb = m.create_kb("hr").unwrap();
    let a = m.create_group("A").unwrap();
    let b = m.create_group("B").unwrap();
    m.grant(kb, a).unwrap();
    m.grant(kb, b).unwrap();
    let hash = zhiku_core::access::hash_password("password-1").unwrap();
    m.create_user("root", Some(&hash), Role::Admin).unwrap();
    let alice = m.create_user("alice", Some(&hash), Role::Member).unwrap();
    let bob = m.create_user("bob", Some(&hash), Role::Member).unwrap();
    m.add_to_group(alice, a).unwrap();
    m.add_to_group(bob, b).unwrap();
    e
}

fn upload(root: &Client, docs: &[&Doc]) {
    let mut form = Multipart::new();
    for d in docs {
        form = form.file("files", d.name, d.text.as_bytes());
    }
    let r = root.post_multipart("/api/kbs/hr/documents", form);
    assert_eq!(r.status, 202, "{}", r.text());
    let job = r.json()["job"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = root.get(&format!("/api/jobs/{job}")).json();
        if j["status"] == "done" {
            return;
        }
        assert_ne!(j["status"], "failed", "{j}");
        assert!(Instant::now() < deadline, "job still {j}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait (bounded) until the worker has written every changed rule to the indexes.
fn wait_for_filters(e: &Engine) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !e.meta.pending_access_updates().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the index filters were never updated"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn doc_id(e: &Engine, d: &Doc) -> DocId {
    let kb = e.meta.require_kb("hr").unwrap();
    e.meta
        .document_by_source(kb, d.name)
        .unwrap()
        .unwrap_or_else(|| panic!("{} not ingested", d.name))
        .id
}

#[test]
fn every_interface_denies_what_the_rules_deny() {
    let mock = MockWecom::start();
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(company(&dir.path().join("data"), Some(&mock.base)), None);
    let e = s.state.engine.clone();
    let c = s.client();
    let root = c.login("root", "password-1");
    upload(&root, &[&OPEN, &FOLDER, &DOCUMENT]);

    // The rules, through the HTTP API; bad ones are refused clearly.
    let r = root.send_json(
        "PUT",
        "/api/kbs/hr/rules",
        &json!({"path": "薪酬/", "groups": ["A"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["kind"], "folder");
    let r = root.send_json(
        "PUT",
        "/api/kbs/hr/rules",
        &json!({"path": DOCUMENT.name, "groups": ["B"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["kind"], "document");
    let r = root.send_json(
        "PUT",
        "/api/kbs/hr/rules",
        &json!({"path": "薪酬", "groups": ["C"]}),
    );
    assert_eq!(r.status, 404, "unknown group: {}", r.text());
    let r = root.send_json(
        "PUT",
        "/api/kbs/hr/rules",
        &json!({"path": "人事", "groups": ["A"]}),
    );
    assert_eq!(
        r.status,
        400,
        "path not in the knowledge base: {}",
        r.text()
    );
    let alice_c = c.login("alice", "password-1");
    let r = alice_c.send_json(
        "PUT",
        "/api/kbs/hr/rules",
        &json!({"path": "薪酬", "groups": ["A"]}),
    );
    assert_eq!(r.status, 403, "members change no rule: {}", r.text());
    // A document uploaded into the restricted folder inherits its rule.
    upload(&root, &[&LATER]);
    wait_for_filters(&e);
    let rules = root.get("/api/kbs/hr/rules").json();
    assert_eq!(rules["rules"].as_array().unwrap().len(), 2, "{rules}");
    let later = rules["documents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["source"] == LATER.name)
        .unwrap();
    assert_eq!(later["groups"], json!(["A"]), "{later}");
    let audit = root.get("/api/admin/audit").text();
    assert!(audit.contains("kb.restrict"), "{audit}");

    let ids: HashMap<&str, DocId> = DOCS.iter().map(|d| (d.name, doc_id(&e, d))).collect();
    let chunks: HashMap<&str, Vec<u64>> = DOCS
        .iter()
        .map(|d| {
            let c = e.meta.document_chunks(ids[d.name]).unwrap();
            assert!(!c.is_empty());
            (d.name, c.into_iter().map(|(id, _)| id).collect())
        })
        .collect();

    for user in USERS {
        let client = c.login(user, "password-1");
        // The knowledge-base list counts only the documents (and their chunks) this user
        // may read.
        let kbs = client.get("/api/kbs").json();
        let hr = kbs
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == "hr")
            .unwrap();
        let readable: Vec<&&Doc> = DOCS.iter().filter(|d| allowed(user, d)).collect();
        let readable_chunks: usize = readable.iter().map(|d| chunks[d.name].len()).sum();
        assert_eq!(hr["documents"], readable.len() as u64, "{user}: {kbs}");
        assert_eq!(hr["chunks"], readable_chunks as u64, "{user}: {kbs}");
        let mut denials = 0;
        for d in DOCS {
            let may = allowed(user, d);

            // Web ask: the answer, its sources and citations.
            let r = client.post_json(
                "/api/ask",
                &json!({"question": d.question, "kb": "hr", "stream": false}),
            );
            assert_eq!(r.status, 200, "{}", r.text());
            // The answer repeats the question (and its standalone form): the asker's own words.
            let body = r.text().replace(d.question, "");
            assert_nothing_forbidden(user, &format!("/api/ask {}", d.question), &body);
            if may {
                assert!(
                    body.contains(d.secret),
                    "{user} may read {}: {body}",
                    d.name
                );
            }

            // /v1/chat/completions.
            let r = client.post_json(
                "/v1/chat/completions",
                &json!({"model": "hr", "messages": [{"role": "user", "content": d.question}]}),
            );
            assert_eq!(r.status, 200, "{}", r.text());
            let body = r.text().replace(d.question, "");
            assert_nothing_forbidden(user, "/v1/chat/completions", &body);
            if may {
                assert!(body.contains(d.secret), "{user} /v1 {}: {body}", d.name);
            }

            // The passage view.
            for chunk in &chunks[d.name] {
                let r = client.get(&format!("/api/chunks/{chunk}"));
                assert_nothing_forbidden(user, "/api/chunks", &r.text());
                if may {
                    assert_eq!(r.status, 200, "{user} chunk of {}: {}", d.name, r.text());
                    assert!(r.text().contains(d.secret));
                } else {
                    assert_eq!(r.status, 404, "{user} chunk of {}: {}", d.name, r.text());
                    denials += 1;
                }
            }

            // Download of the original.
            let r = client.get(&format!("/api/documents/{}/file", ids[d.name]));
            if may {
                assert_eq!(r.status, 200, "{user} download {}: {}", d.name, r.text());
                assert_eq!(r.text(), d.text);
            } else {
                assert_eq!(r.status, 404, "{user} download {}: {}", d.name, r.text());
                assert_nothing_forbidden(user, "a refused download", &r.text());
                denials += 1;
            }

            // The hit test viewed as this user (admins run it): no forbidden candidate at all.
            let r = root.post_json(
                "/api/kbs/hr/search-test",
                &json!({"question": d.question, "as_user": user}),
            );
            assert_eq!(r.status, 200, "{}", r.text());
            let body = r.text().replace(d.question, "");
            assert_nothing_forbidden(user, "the hit test", &body);
            let candidates: Vec<u64> = r.json()["candidates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["chunk"].as_u64().unwrap())
                .collect();
            for other in DOCS.iter().filter(|o| !allowed(user, o)) {
                for chunk in &chunks[other.name] {
                    assert!(
                        !candidates.contains(chunk),
                        "{user}: a store returned chunk {chunk} of {} ({candidates:?})",
                        other.name
                    );
                }
            }
            if may {
                assert!(
                    body.contains(d.secret),
                    "{user} hit test {}: {body}",
                    d.name
                );
            }

            // WeCom.
            let n = mock.sent.0.lock().unwrap().len() + 1;
            let r = wecom_ask(&c, &format!("W-{user}"), d.question);
            assert_eq!(r.status, 200, "{}", r.text());
            let (text, to) = mock.wait_for(n);
            let text = text.replace(d.question, "");
            assert_eq!(to, format!("W-{user}"));
            assert_nothing_forbidden(user, "the WeCom answer", &text);
            if may {
                assert!(text.contains(d.secret), "{user} WeCom {}: {text}", d.name);
            }
        }

        // The document list (titles and names).
        let list = client.get("/api/kbs/hr/documents");
        assert_eq!(list.status, 200);
        assert_nothing_forbidden(user, "the document list", &list.text());
        let listed = list.json()["total"].as_u64().unwrap();
        let readable = DOCS.iter().filter(|d| allowed(user, d)).count() as u64;
        assert_eq!(listed, readable, "{user}: {}", list.text());

        // finetune data as this user.
        let reader = e
            .meta
            .reader_of(&e.meta.require_user(user).unwrap())
            .unwrap();
        let records = finetune_records(&e, reader);
        assert_nothing_forbidden(user, "finetune data", &records);
        for d in DOCS.iter().filter(|d| allowed(user, d)) {
            assert!(
                records.contains(d.secret),
                "{user}: no example of {}",
                d.name
            );
        }
        if user != "root" {
            assert!(denials > 0, "{user} was denied nothing");
        }
    }

    // finetune data by default: only what everyone may read.
    let records = finetune_records(&e, Reader::everyone());
    assert!(records.contains(OPEN.secret));
    for d in [&FOLDER, &DOCUMENT, &LATER] {
        assert!(!records.contains(d.secret), "{}: {records}", d.name);
    }

    // Unrestricting the folder opens it to bob once the filters are rewritten.
    let r = root.delete(&format!("/api/kbs/hr/rules?path={}", urlencode("薪酬")));
    assert_eq!(r.status, 200, "{}", r.text());
    wait_for_filters(&e);
    let bob = c.login("bob", "password-1");
    let r = bob.post_json(
        "/api/ask",
        &json!({"question": FOLDER.question, "kb": "hr", "stream": false}),
    );
    assert!(r.text().contains(FOLDER.secret), "{}", r.text());
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every record `finetune data` makes from `hr` with `reader`'s rights, as one text.
fn finetune_records(e: &Engine, reader: Reader) -> String {
    let mut opts = zhiku_llm::finetune::data::DataOptions::new("hr");
    opts.general_share = 0.0;
    opts.heldout_share = 0.0;
    opts.reader = reader;
    let data = zhiku_llm::finetune::data::build(e, &opts, &zhiku_core::progress::Silent)
        .expect("finetune data");
    serde_json::to_string(&(&data.train, &data.heldout)).unwrap()
}

/// A tightened rule holds at once: the stores still carry the old readers until the update
/// is written, and retrieval also checks SQLite's, so the chunk is hidden in between; once
/// written, the stores do not even return it. A loosened rule takes effect when the stores
/// have the new readers (until then the old, narrower filter holds).
#[test]
fn a_changed_rule_errs_on_denial_until_the_indexes_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let e = company(&dir.path().join("data"), None);
    let folder = dir.path().join("docs");
    std::fs::create_dir_all(folder.join("薪酬")).unwrap();
    let file = folder.join("薪酬/方案.txt");
    std::fs::write(&file, FOLDER.text).unwrap();
    let opts = zhiku_core::index::IngestOptions::default();
    zhiku_core::index::ingest_paths(
        &e,
        "hr",
        std::slice::from_ref(&folder),
        &opts,
        &zhiku_core::progress::Silent,
    )
    .unwrap();
    let kb = e.meta.require_kb("hr").unwrap();
    let bob = e
        .meta
        .reader_of(&e.meta.require_user("bob").unwrap())
        .unwrap();
    let search = |reader: &Reader| {
        zhiku_core::retrieve::search_explained(
            &e,
            FOLDER.question,
            &[kb],
            reader,
            5,
            &e.config.retrieve,
        )
        .unwrap()
    };
    assert_eq!(search(&bob).hits.len(), 1, "unrestricted: bob reads it");

    let path = folder.join("薪酬").display().to_string();
    e.meta
        .set_rule(kb, &path, &["A".into()], "test", None)
        .unwrap();
    // Not yet written to the stores: they still return the chunk, SQLite hides it.
    let s = search(&bob);
    assert!(s.hits.is_empty(), "denied before the update: {:?}", s.hits);
    assert!(
        !s.candidates.is_empty(),
        "the stores still hold the old readers"
    );
    let n = zhiku_core::index::apply_access_updates(&e).unwrap();
    assert_eq!(n, 1);
    let s = search(&bob);
    assert!(
        s.hits.is_empty() && s.candidates.is_empty(),
        "{:?}",
        s.candidates
    );
    let alice = e
        .meta
        .reader_of(&e.meta.require_user("alice").unwrap())
        .unwrap();
    assert_eq!(search(&alice).hits.len(), 1);
    assert_eq!(search(&Reader::All).hits.len(), 1);

    // Loosened: bob waits for the update (the stores still say group A only).
    e.meta.set_rule(kb, &path, &[], "test", None).unwrap();
    assert!(search(&bob).hits.is_empty());
    zhiku_core::index::apply_access_updates(&e).unwrap();
    assert_eq!(search(&bob).hits.len(), 1);
    assert!(e.meta.pending_access_updates().unwrap().is_empty());
}

/// A knowledge-base editor uploads, deletes and restricts documents of their own knowledge
/// base without being a site admin, and nothing in another; each action is audited under
/// their name. Only admins name editors.
#[test]
fn a_kb_editor_manages_only_their_knowledge_base() {
    let dir = tempfile::tempdir().unwrap();
    let e = company(&dir.path().join("data"), None);
    let m = &e.meta;
    m.create_kb("it").unwrap();
    let hash = zhiku_core::access::hash_password("password-1").unwrap();
    let carol = m.create_user("carol", Some(&hash), Role::Member).unwrap();
    m.add_to_group(carol, m.require_group("A").unwrap())
        .unwrap();
    let s = TestServer::start(e, None);
    let c = s.client();
    let root = c.login("root", "password-1");
    let carol = c.login("carol", "password-1");
    let alice = c.login("alice", "password-1");

    let form = || Multipart::new().file("files", OPEN.name, OPEN.text.as_bytes());
    assert_eq!(
        carol.post_multipart("/api/kbs/hr/documents", form()).status,
        403,
        "not an editor yet"
    );
    assert_eq!(
        alice
            .request("PUT", "/api/kbs/hr/editors/carol", None, &[])
            .status,
        403
    );
    assert_eq!(
        root.request("PUT", "/api/kbs/hr/editors/carol", None, &[])
            .status,
        204
    );
    assert_eq!(
        root.request("PUT", "/api/kbs/hr/editors/nobody", None, &[])
            .status,
        404
    );

    upload(&carol, &[&OPEN, &FOLDER]);
    // Another knowledge base carol may not read: the same 404 as for one that does not
    // exist, so its name is not confirmed to her.
    let hidden = carol.post_multipart("/api/kbs/it/documents", form());
    let missing = carol.post_multipart("/api/kbs/nosuch/documents", form());
    assert_eq!(
        hidden.status,
        404,
        "an editor of hr only: {}",
        hidden.text()
    );
    assert_eq!(
        hidden.json()["error"]["message"]
            .as_str()
            .unwrap()
            .replace("`it`", "`?`"),
        missing.json()["error"]["message"]
            .as_str()
            .unwrap()
            .replace("`nosuch`", "`?`"),
    );
    assert_eq!(
        alice.post_multipart("/api/kbs/hr/documents", form()).status,
        403
    );
    let r = carol.send_json(
        "PUT",
        "/api/kbs/hr/rules",
        &json!({"path": "薪酬", "groups": ["B"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(carol.get("/api/kbs/hr/rules").status, 200);
    assert_eq!(carol.get("/api/kbs/it/rules").status, 404);
    assert_eq!(carol.get("/api/kbs/nosuch/rules").status, 404);
    let r = alice.send_json(
        "PUT",
        "/api/kbs/hr/rules",
        &json!({"path": "薪酬", "groups": ["A"]}),
    );
    assert_eq!(r.status, 403);
    let doc = doc_id(&s.state.engine, &OPEN);
    assert_eq!(alice.delete(&format!("/api/documents/{doc}")).status, 403);
    assert_eq!(carol.delete(&format!("/api/documents/{doc}")).status, 204);
    assert!(s.state.engine.meta.document(doc).unwrap().is_none());

    let audit = root.get("/api/admin/audit?limit=100").json();
    let by_carol: Vec<String> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["actor"] == "carol")
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect();
    for action in ["document.upload", "kb.restrict", "document.delete"] {
        assert!(
            by_carol.iter().any(|a| a == action),
            "{action} not audited: {by_carol:?}"
        );
    }
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "kb.editor.add"),
        "{audit}"
    );

    // No longer an editor: refused again.
    assert_eq!(root.delete("/api/kbs/hr/editors/carol").status, 204);
    assert_eq!(
        carol.post_multipart("/api/kbs/hr/documents", form()).status,
        403
    );
}
