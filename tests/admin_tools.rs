//! Knowledge admin tools end to end on 127.0.0.1: hit testing (`/api/kbs/{kb}/search-test`)
//! against the answer path, view-as-user, the prompt's token budget; chunk view and edit
//! (text, disable, keywords and questions) reaching both indexes, versioned, audited,
//! surviving re-ingestion of the unchanged file and flagged when the file changes; an edit
//! interrupted before the indexes were written is finished by recovery. Uses the hashing
//! test embedder (lexical, fast).

mod common;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zhiku_core::engine::Engine;
use zhiku_core::store::meta::ChunkChange;
use zhiku_llm::generate::{
    ChatMessage, GenerationStats, Generator, Result as GenResult, SamplingParams,
};

use common::HashEmbedder;
use common::http::{Client, Multipart, TestServer};

fn engine(dir: &std::path::Path, tweak: impl FnOnce(&mut zhiku_core::config::Config)) -> Engine {
    let mut config = common::config(dir);
    tweak(&mut config);
    Engine::open(config)
        .unwrap()
        .with_embedder(HashEmbedder::new())
}

fn test(c: &Client, kb: &str, body: Value) -> common::http::Response {
    c.post_json(&format!("/api/kbs/{kb}/search-test"), &body)
}

fn ok(r: common::http::Response) -> Value {
    assert!((200..300).contains(&r.status), "{} {}", r.status, r.text());
    r.json()
}

fn chunk_ids(list: &Value) -> Vec<u64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|h| {
            h["hit"]["chunk"]
                .as_u64()
                .unwrap_or_else(|| h["chunk"].as_u64().unwrap())
        })
        .collect()
}

/// Counts a token per character; its context length can be changed while serving. It is
/// never asked to generate by a hit test.
struct Chars(Arc<AtomicUsize>);

impl Generator for Chars {
    fn model_id(&self) -> &str {
        "chars"
    }
    fn context_length(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
    fn count_prompt_tokens(&self, messages: &[ChatMessage]) -> GenResult<usize> {
        Ok(messages.iter().map(|m| m.content.chars().count()).sum())
    }
    fn generate(
        &self,
        _: &[ChatMessage],
        _: &SamplingParams,
        _: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> GenResult<GenerationStats> {
        panic!("a hit test must not generate")
    }
}

#[test]
fn hit_test_shows_what_the_answer_path_does() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir.path().join("data"), |_| {});
    common::hr_and_it(&e);
    let s = TestServer::start(e, None);
    let root = s.client().login("root", "password-1");
    let alice = s.client().login("alice", "password-1");
    let q = "累计工作已满10年的年休假有几天";

    let r = ok(test(&root, "hr", json!({"question": q})));
    assert_eq!(
        (r["kb"].as_str(), r["user"].as_str()),
        (Some("hr"), Some("root"))
    );
    assert_eq!(r["readable"], true);
    assert_eq!(r["verdict"]["answered"], true, "{r}");
    assert!(r["budget"].is_null(), "no generator: extractive");
    let hits = r["hits"].as_array().unwrap();
    assert!(!hits.is_empty());
    // Every candidate of both stores, fused order; the hits are the visible top ones.
    let cands = r["candidates"].as_array().unwrap();
    assert!(cands.len() >= hits.len());
    let fused: Vec<f64> = cands.iter().map(|c| c["fused"].as_f64().unwrap()).collect();
    assert!(fused.windows(2).all(|w| w[0] >= w[1]), "{fused:?}");
    let returned: Vec<u64> = cands
        .iter()
        .filter(|c| c["status"] == "hit")
        .map(|c| c["chunk"].as_u64().unwrap())
        .collect();
    assert_eq!(returned, chunk_ids(&r["hits"]));
    for c in cands {
        assert!(c["dense"].is_number() || c["keyword"].is_number(), "{c}");
        assert_eq!(c["dense"].is_number(), c["dense_rank"].is_number());
        assert_eq!(c["keyword"].is_number(), c["keyword_rank"].is_number());
    }
    // The same scores as the search the answer path runs.
    let (direct, _) = zhiku_core::retrieve::search(
        &s.state.engine,
        q,
        &[s.state.engine.meta.require_kb("hr").unwrap()],
        s.state.engine.config.rag.retrieve_top_k,
    )
    .unwrap();
    assert_eq!(direct.len(), hits.len());
    for (d, h) in direct.iter().zip(hits) {
        assert_eq!(h["hit"]["chunk"].as_u64(), Some(d.chunk));
        let close = |v: &Value, x: Option<f32>| match x {
            Some(x) => (v.as_f64().unwrap() - x as f64).abs() < 1e-6,
            None => v.is_null(),
        };
        assert!(close(&h["hit"]["scores"]["dense"], d.scores.dense), "{h}");
        assert!(
            close(&h["hit"]["scores"]["keyword"], d.scores.keyword),
            "{h}"
        );
        assert!(
            close(&h["hit"]["scores"]["fused"], Some(d.scores.fused)),
            "{h}"
        );
        assert_eq!(
            h["hit"]["scores"]["dense_rank"].as_u64(),
            d.scores.dense_rank.map(|r| r as u64)
        );
        // Placement follows the gate.
        let placement = h["placement"].as_str().unwrap();
        assert_eq!(h["relevant"] == true, placement != "cut_by_gate", "{h}");
        assert!(h["reason"].as_str().unwrap().contains("coverage"), "{h}");
    }
    // /api/ask cites only passages the hit test puts in the prompt.
    let a = ok(alice.post_json(
        "/api/ask",
        &json!({"question": q, "kb": "hr", "stream": false}),
    ));
    assert_eq!(a["outcome"], "extractive", "{a}");
    let prompt: Vec<u64> = r["prompt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    let cited: Vec<u64> = a["citations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["chunk"].as_u64().unwrap())
        .collect();
    assert!(!cited.is_empty());
    assert!(
        cited.iter().all(|c| prompt.contains(c)),
        "{cited:?} ⊄ {prompt:?}"
    );
    assert_eq!(a["sources"].as_u64(), Some(prompt.len() as u64));

    // Viewed as alice (group staff reads hr): the same hits. As bob (no grant): nothing.
    let as_alice = ok(test(
        &root,
        "hr",
        json!({"question": q, "as_user": "alice"}),
    ));
    assert_eq!(as_alice["user"], "alice");
    assert_eq!(chunk_ids(&as_alice["hits"]), chunk_ids(&r["hits"]));
    let as_bob = ok(test(&root, "hr", json!({"question": q, "as_user": "bob"})));
    assert_eq!(as_bob["readable"], false);
    assert_eq!(as_bob["hits"], json!([]));
    assert!(as_bob["candidates"].as_array().unwrap().is_empty());
    assert_eq!(as_bob["verdict"]["answered"], false);
    assert_eq!(as_bob["prompt"], json!([]));

    // A question nothing in hr is about: not found, and the reason says why.
    let none = ok(test(&root, "hr", json!({"question": "VPN 连不上怎么办"})));
    assert_eq!(none["verdict"]["answered"], false, "{none}");
    assert!(
        none["verdict"]["reason"].as_str().unwrap().contains("gate") || none["hits"] == json!([]),
        "{none}"
    );

    // Admins only; bad input is a clear error.
    assert_eq!(test(&alice, "hr", json!({"question": q})).status, 403);
    assert_eq!(
        s.client()
            .post_json("/api/kbs/hr/search-test", &json!({"question": q}))
            .status,
        401
    );
    assert_eq!(test(&root, "nope", json!({"question": q})).status, 404);
    let r = test(&root, "hr", json!({"question": q, "as_user": "zed"}));
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(test(&root, "hr", json!({"question": "  "})).status, 400);
    assert_eq!(test(&root, "hr", json!({"q": q})).status, 400);

    // The OpenAPI document has the new endpoints.
    let doc = ok(root.get("/api/openapi.json"));
    assert!(doc["paths"]["/api/kbs/{kb}/search-test"]["post"].is_object());
    assert!(doc["paths"]["/api/chunks/{id}"]["patch"].is_object());
    assert!(doc["paths"]["/api/documents/{id}/chunks"]["get"].is_object());
}

#[test]
fn hit_test_fits_the_prompt_to_the_generators_budget() {
    let dir = tempfile::tempdir().unwrap();
    // Every hit passes the gate, so that more are relevant than fit.
    let e = engine(&dir.path().join("data"), |c| c.rag.min_term_coverage = 0.0);
    common::hr_and_it(&e);
    let context = Arc::new(AtomicUsize::new(1_000_000));
    let s = TestServer::start(e, Some(Arc::new(Chars(context.clone()))));
    let root = s.client().login("root", "password-1");
    let q = "年休假和病假怎么请";
    let r = ok(test(&root, "hr", json!({"question": q})));
    let b = &r["budget"];
    assert_eq!(b["model"], "chars");
    let sources = s.state.engine.config.rag.sources;
    let place = |r: &Value, p: &str| {
        r["hits"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["placement"] == p)
            .count()
    };
    let n = place(&r, "prompt");
    assert_eq!(n, sources.min(r["hits"].as_array().unwrap().len()), "{r}");
    assert_eq!(r["prompt"].as_array().unwrap().len(), n);
    if r["hits"].as_array().unwrap().len() > sources {
        assert!(place(&r, "cut_by_sources") > 0, "{r}");
    }
    // One token less than the whole prompt: the lowest-ranked passage is cut by the budget.
    let all = b["prompt_tokens"].as_u64().unwrap() as usize;
    let reserved = b["reserved"].as_u64().unwrap() as usize;
    context.store(reserved + all - 1, Ordering::SeqCst);
    let r2 = ok(test(&root, "hr", json!({"question": q})));
    assert!(r2["budget"]["prompt_tokens"].as_u64() <= r2["budget"]["budget"].as_u64());
    assert_eq!(place(&r2, "prompt"), n - 1, "{r2}");
    assert_eq!(place(&r2, "cut_by_budget"), 1, "{r2}");
    assert_eq!(
        r2["prompt"].as_array().unwrap()[..],
        r["prompt"].as_array().unwrap()[..n - 1]
    );
    // Not even one passage fits: nothing goes in, and the verdict says so.
    context.store(reserved + 10, Ordering::SeqCst);
    let r3 = ok(test(&root, "hr", json!({"question": q})));
    assert_eq!(r3["verdict"]["answered"], false, "{r3}");
    assert!(
        r3["verdict"]["reason"].as_str().unwrap().contains("budget"),
        "{r3}"
    );
}

/// Poll a job until it is done or failed (at most 60 s).
fn wait_job(c: &Client, job: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = ok(c.get(&format!("/api/jobs/{job}")));
        if j["status"] == "done" || j["status"] == "failed" {
            return j;
        }
        assert!(Instant::now() < deadline, "job {job} still {j}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn upload(c: &Client, name: &str, data: &[u8]) -> Value {
    let r = c.post_multipart(
        "/api/kbs/hr/documents",
        Multipart::new().file("files", name, data),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    wait_job(c, r.json()["job"].as_i64().unwrap())
}

fn search(c: &Client, q: &str) -> Value {
    ok(test(c, "hr", json!({"question": q})))
}

/// The hit for `chunk` in a hit test, if any.
fn hit_of(r: &Value, chunk: u64) -> Option<Value> {
    r["hits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["hit"]["chunk"].as_u64() == Some(chunk))
        .cloned()
}

fn edit(c: &Client, chunk: u64, body: Value) -> common::http::Response {
    c.send_json("PATCH", &format!("/api/chunks/{chunk}"), &body)
}

#[test]
fn chunk_edits_reach_search_and_survive_reingest() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir.path().join("data"), |_| {});
    e.meta.create_kb("hr").unwrap();
    e.meta.create_kb("it").unwrap();
    common::people(&e, &["hr"], &["it"]);
    let s = TestServer::start(e, None);
    let e = &s.state.engine;
    let root = s.client().login("root", "password-1");
    let alice = s.client().login("alice", "password-1");
    let v1 = std::fs::read(common::samples().join("员工手册-休假制度.txt")).unwrap();
    let name = "政策/休假制度.txt";
    let job = upload(&root, name, &v1);
    let d1 = job["files"][0]["document_id"].as_i64().unwrap();

    // The chunks in order, with page and heading path.
    let doc = ok(root.get(&format!("/api/documents/{d1}/chunks")));
    let chunks = doc["chunks"].as_array().unwrap().clone();
    assert!(chunks.len() >= 3, "{doc}");
    assert!(doc["review"].is_null());
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c["ordinal"].as_u64(), Some(i as u64));
        assert!(c["page"].as_u64().unwrap() >= 1);
        assert_eq!(c["edited"], false);
        assert_eq!(c["text"], c["original"]);
    }
    let id = |i: usize| chunks[i]["id"].as_u64().unwrap();
    let (fix, tagged, off) = (id(0), id(1), id(2));

    // Nothing is about the new phrase yet.
    let phrase = "紫藤花疗养假";
    let before = search(&root, phrase);
    assert!(
        before["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["keyword"].is_null())
    );

    // Fix a chunk's text: the next search finds it by keyword and by dense similarity.
    let new_text = format!(
        "{}\n员工每年另享有{phrase}两天。",
        chunks[0]["text"].as_str().unwrap()
    );
    let r = ok(edit(&root, fix, json!({"text": new_text})));
    assert_eq!(r["before"]["text"], chunks[0]["text"]);
    assert_eq!(r["after"]["text"].as_str(), Some(new_text.trim()));
    let found = search(&root, phrase);
    let h = hit_of(&found, fix).unwrap_or_else(|| panic!("{found}"));
    assert_eq!(h["hit"]["scores"]["keyword_rank"], 1, "{h}");
    // The vector is the new text's: its cosine with the question, higher than before.
    let emb = e.embedder().unwrap();
    let qv = emb.embed_query(phrase).unwrap();
    let pv = emb.embed_passages(&[new_text.trim()]).unwrap().remove(0);
    let cosine: f32 = qv.iter().zip(&pv).map(|(a, b)| a * b).sum();
    let dense = h["hit"]["scores"]["dense"].as_f64().unwrap();
    assert!((dense - cosine as f64).abs() < 1e-4, "{dense} vs {cosine}");
    let dense_before = before["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["chunk"].as_u64() == Some(fix))
        .and_then(|c| c["dense"].as_f64())
        .unwrap_or(0.0);
    assert!(
        dense > dense_before + 0.01,
        "{dense} vs {dense_before} before the edit"
    );
    assert!(h["hit"]["text"].as_str().unwrap().contains(phrase));
    // The citation viewer shows the fixed text too.
    let v = ok(alice.get(&format!("/api/chunks/{fix}")));
    assert!(v["text"].as_str().unwrap().contains(phrase));

    // Keywords and questions find a chunk that does not contain them.
    let r = ok(edit(
        &root,
        tagged,
        json!({"keywords": ["犀牛湾团建"], "questions": ["公司的海岛奖励旅行怎么报名？"]}),
    ));
    assert_eq!(r["after"]["keywords"], json!(["犀牛湾团建"]));
    for q in ["犀牛湾团建", "海岛奖励旅行怎么报名"] {
        let found = search(&root, q);
        let h = hit_of(&found, tagged).unwrap_or_else(|| panic!("{q}: {found}"));
        assert_eq!(h["hit"]["scores"]["keyword_rank"], 1, "{q}: {h}");
    }

    // A disabled chunk disappears from search, from both indexes and from the viewer.
    let off_text = chunks[2]["text"].as_str().unwrap().to_string();
    let q_off: String = off_text.chars().take(40).collect();
    assert!(hit_of(&search(&root, &q_off), off).is_some());
    let (sqlite, vectors, keywords) = common::store_counts(e);
    assert_eq!((vectors as u64, keywords as u64), (sqlite, sqlite));
    ok(edit(&root, off, json!({"enabled": false})));
    let gone = search(&root, &q_off);
    assert!(hit_of(&gone, off).is_none(), "{gone}");
    assert!(
        gone["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["chunk"].as_u64() != Some(off))
    );
    assert_eq!(common::store_counts(e), (sqlite, vectors - 1, keywords - 1));
    assert_eq!(alice.get(&format!("/api/chunks/{off}")).status, 404);
    let a = ok(alice.post_json(
        "/api/ask",
        &json!({"question": q_off, "kb": "hr", "stream": false}),
    ));
    assert!(
        a["citations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["chunk"].as_u64() != Some(off)),
        "{a}"
    );

    // Versioned: who, when, before, after; and in the audit log.
    let hist = ok(root.get(&format!("/api/documents/{d1}/edits")));
    let hist = hist.as_array().unwrap();
    assert_eq!(hist.len(), 3);
    assert!(
        hist.iter()
            .all(|h| h["actor"] == "root" && h["current"] == true && h["at"].as_i64() > Some(0))
    );
    assert_eq!(hist[0]["chunk_id"].as_u64(), Some(off));
    assert_eq!(
        (
            hist[0]["before"]["enabled"].as_bool(),
            hist[0]["after"]["enabled"].as_bool()
        ),
        (Some(true), Some(false))
    );
    let audit = ok(root.get("/api/admin/audit"));
    let edits: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "chunk.edit")
        .collect();
    assert_eq!(edits.len(), 3, "{audit}");
    assert!(
        edits[0]["target"].as_str().unwrap().starts_with("hr/"),
        "{}",
        edits[0]
    );
    assert!(
        edits[0]["detail"].as_str().unwrap().contains("disabled"),
        "{}",
        edits[0]
    );

    // Refused: non-admins, bad edits, unknown chunks; nothing changes.
    assert_eq!(edit(&alice, fix, json!({"enabled": false})).status, 403);
    assert_eq!(
        alice.get(&format!("/api/documents/{d1}/chunks")).status,
        403
    );
    assert_eq!(edit(&root, fix, json!({"text": "   "})).status, 400);
    assert_eq!(
        edit(&root, fix, json!({"text": new_text})).status,
        400,
        "no change"
    );
    assert_eq!(edit(&root, 999_999, json!({"enabled": false})).status, 404);
    assert_eq!(edit(&root, fix, json!({"enabled": "no"})).status, 400);
    assert_eq!(
        ok(root.get(&format!("/api/documents/{d1}/edits")))
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let check_edits_apply = |doc: i64, fix: u64| {
        let list = ok(root.get(&format!("/api/documents/{doc}/chunks")));
        let c = &list["chunks"].as_array().unwrap()[..3];
        assert_eq!(
            (
                c[0]["edited"].as_bool(),
                c[1]["edited"].as_bool(),
                c[2]["edited"].as_bool()
            ),
            (Some(true), Some(true), Some(true))
        );
        assert_eq!(c[2]["enabled"], false);
        assert_eq!(c[1]["questions"], json!(["公司的海岛奖励旅行怎么报名？"]));
        let found = search(&root, phrase);
        assert_eq!(
            hit_of(&found, fix).unwrap()["hit"]["scores"]["keyword_rank"],
            1
        );
        assert!(
            search(&root, &q_off)["hits"]
                .as_array()
                .unwrap()
                .iter()
                .all(|h| h["hit"]["text"] != off_text.as_str())
        );
        assert!(list["review"].is_null());
    };

    // The unchanged file again: nothing re-ingested, the edits stay.
    let job = upload(&root, name, &v1);
    assert_eq!(job["files"][0]["document_id"].as_i64(), Some(d1));
    check_edits_apply(d1, fix);
    // Re-indexed from the stored original (new chunk rows): the edits apply to them.
    let r = ok(root.request("POST", &format!("/api/documents/{d1}/reindex"), None, &[]));
    let job = wait_job(&root, r["job"].as_i64().unwrap());
    let d2 = job["files"][0]["document_id"].as_i64().unwrap();
    assert_ne!(d2, d1);
    let fix2 = ok(root.get(&format!("/api/documents/{d2}/chunks")))["chunks"][0]["id"]
        .as_u64()
        .unwrap();
    assert_ne!(fix2, fix);
    check_edits_apply(d2, fix2);
    let (sqlite, vectors, keywords) = common::store_counts(e);
    assert_eq!(
        (vectors as u64, keywords as u64),
        (sqlite - 1, sqlite - 1),
        "the disabled chunk is not indexed"
    );

    // A changed file: the edits no longer apply; they stay as history, and the document is
    // flagged for review.
    let mut v2 = v1.clone();
    v2.extend_from_slice("\n第九条 补充规定\n员工每年另有生日假1天。\n".as_bytes());
    let job = upload(&root, name, &v2);
    let d3 = job["files"][0]["document_id"].as_i64().unwrap();
    let list = ok(root.get("/api/kbs/hr/documents"));
    assert_eq!(list["documents"][0]["edits_need_review"], true, "{list}");
    let doc = ok(root.get(&format!("/api/documents/{d3}/chunks")));
    assert_eq!(doc["review"]["stale_edits"], 3, "{doc}");
    assert!(
        doc["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["edited"] == false)
    );
    assert!(
        search(&root, phrase)["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| !h["hit"]["text"].as_str().unwrap().contains(phrase))
    );
    let hist = ok(root.get(&format!("/api/documents/{d3}/edits")));
    assert_eq!(hist.as_array().unwrap().len(), 3);
    assert!(
        hist.as_array()
            .unwrap()
            .iter()
            .all(|h| h["current"] == false)
    );
    // Reviewed: the flag goes, the history stays.
    assert_eq!(
        alice
            .request("POST", &format!("/api/documents/{d3}/review"), None, &[])
            .status,
        403
    );
    assert_eq!(
        root.request("POST", &format!("/api/documents/{d3}/review"), None, &[])
            .status,
        204
    );
    assert_eq!(
        root.request("POST", &format!("/api/documents/{d3}/review"), None, &[])
            .status,
        409
    );
    assert!(ok(root.get(&format!("/api/documents/{d3}/chunks")))["review"].is_null());
    assert_eq!(
        ok(root.get("/api/kbs/hr/documents"))["documents"][0]["edits_need_review"],
        false
    );
    assert_eq!(
        ok(root.get(&format!("/api/documents/{d3}/edits")))
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let audit = ok(root.get("/api/admin/audit"));
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "document.review")
    );
}

#[test]
fn an_interrupted_edit_is_finished_by_recovery_and_kept_by_reindex() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir.path().join("data"), |_| {});
    common::hr_and_it(&e);
    let hr = e.meta.require_kb("hr").unwrap();
    let doc = e.meta.documents(hr).unwrap()[0].id;
    let chunks = e.meta.editable_chunks(doc).unwrap();
    let (a, b) = (chunks[0].id, chunks[1].id);
    let top = |q: &str| -> Vec<u64> {
        zhiku_core::retrieve::search(&e, q, &[hr], 8)
            .unwrap()
            .0
            .iter()
            .filter(|h| h.scores.keyword.is_some())
            .map(|h| h.chunk)
            .collect()
    };
    // SQLite has the edit, the indexes not yet (as after a crash between the two).
    let change = ChunkChange {
        keywords: Some(vec!["琥珀港年会".into()]),
        ..Default::default()
    };
    e.meta.edit_chunk(a, &change, "root").unwrap();
    let off = ChunkChange {
        enabled: Some(false),
        ..Default::default()
    };
    e.meta.edit_chunk(b, &off, "root").unwrap();
    assert_eq!(e.meta.pending_chunk_updates().unwrap(), {
        let mut v = vec![a, b];
        v.sort();
        v
    });
    assert!(top("琥珀港年会").is_empty(), "not in the keyword index yet");
    // Disabled takes effect at once: SQLite decides what is returned.
    let b_text: String = chunks[1].original.chars().take(30).collect();
    assert!(!top(&b_text).contains(&b));
    zhiku_core::index::recover(&e).unwrap();
    assert!(e.meta.pending_chunk_updates().unwrap().is_empty());
    assert_eq!(top("琥珀港年会"), [a]);
    let (sqlite, vectors, keywords) = common::store_counts(&e);
    assert_eq!((vectors as u64, keywords as u64), (sqlite - 1, sqlite - 1));
    // `zhiku reindex` rebuilds from SQLite with the edits.
    zhiku_core::index::reindex(&e, &zhiku_core::progress::Silent).unwrap();
    assert_eq!(top("琥珀港年会"), [a]);
    assert_eq!(common::store_counts(&e), (sqlite, vectors, keywords));
    zhiku_core::index::reindex_keywords(&e).unwrap();
    assert_eq!(top("琥珀港年会"), [a]);
    assert_eq!(common::store_counts(&e), (sqlite, vectors, keywords));
}
