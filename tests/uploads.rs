//! Uploads end to end on 127.0.0.1: a folder and a zip uploaded through multipart, ingested
//! by the background worker, listed, searchable, downloadable, re-indexed and deleted; every
//! upload attack refused with nothing stored and the server still healthy; other groups'
//! documents answer 404; an interrupted queue finishes after a restart without duplicates.
//! Uses the hashing test embedder (fast, lexical).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zhiku_core::engine::Engine;
use zhiku_core::progress::Silent;
use zhiku_core::store::meta::{JobKind, MetaStore, NewDocument, NewJobFile};

use common::HashEmbedder;
use common::http::{Client, Multipart, Response, TestServer};

/// Knowledge bases `hr` (read by group staff) and `it` (read by group ops), both empty.
/// alice is in staff, bob in ops, root is an admin.
fn setup(data: &Path, tweak: impl FnOnce(&mut zhiku_core::config::Config)) -> Engine {
    let mut config = common::config(data);
    tweak(&mut config);
    let e = Engine::open(config)
        .unwrap()
        .with_embedder(HashEmbedder::new());
    e.meta.create_kb("hr").unwrap();
    e.meta.create_kb("it").unwrap();
    common::people(&e, &["hr"], &["it"]);
    e
}

fn server(tweak: impl FnOnce(&mut zhiku_core::config::Config)) -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let e = setup(&dir.path().join("data"), tweak);
    (dir, TestServer::start(e, None))
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(common::samples().join(name)).unwrap()
}

/// Poll a job until it is done or failed (at most 60 s).
fn wait_job(c: &Client, job: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = c.get(&format!("/api/jobs/{job}"));
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        if j["status"] == "done" || j["status"] == "failed" {
            return j;
        }
        assert!(Instant::now() < deadline, "job {job} still {}", j);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn upload(c: &Client, kb: &str, form: Multipart) -> Response {
    c.post_multipart(&format!("/api/kbs/{kb}/documents"), form)
}

/// Upload, expect 202, wait for the job; returns the finished job.
fn upload_and_wait(c: &Client, kb: &str, form: Multipart) -> Value {
    let r = upload(c, kb, form);
    assert_eq!(r.status, 202, "{}", r.text());
    wait_job(c, r.json()["job"].as_i64().unwrap())
}

fn error_message(r: &Response) -> String {
    r.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn documents(c: &Client, kb: &str, query: &str) -> Value {
    let r = c.get(&format!("/api/kbs/{kb}/documents{query}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// The stored originals of a knowledge base.
fn originals(data: &Path, e: &Engine, kb: &str) -> Vec<PathBuf> {
    let dir = zhiku_core::index::originals::kb_dir(data, e.meta.require_kb(kb).unwrap());
    match std::fs::read_dir(dir) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Percent-encoding for a query value.
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// RFC 5987 encoding of a file name, as Content-Disposition should carry it.
fn rfc5987(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// POST a multipart form with `Transfer-Encoding: chunked` (no Content-Length to check
/// up front); the answer is read even when the server stops reading the body early.
fn post_chunked(c: &Client, path: &str, form: Multipart) -> u16 {
    use std::io::Read;
    let content_type = form.content_type();
    let body = form.into_body();
    let mut s = std::net::TcpStream::connect(c.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n",
        c.addr
    );
    for (k, v) in &c.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut sent = s.write_all(head.as_bytes());
    for piece in body.chunks(64 * 1024) {
        if sent.is_err() {
            break;
        }
        sent = s
            .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .and_then(|_| s.write_all(piece))
            .and_then(|_| s.write_all(b"\r\n"));
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let head = String::from_utf8_lossy(&raw);
    head.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no answer (send: {sent:?}): {head}"))
}

#[test]
fn a_folder_and_a_zip_are_ingested_listed_searched_and_downloaded() {
    let (_d, s) = server(|_| {});
    let root = s.client().login("root", "password-1");
    let alice = s.client().login("alice", "password-1");
    let leave = sample("员工手册-休假制度.txt");
    let travel = sample("差旅费报销管理办法.pdf");
    let zip = common::zip_of(&[
        ("IT/IT服务台常见问题.txt", &sample("IT服务台常见问题.txt")),
        (
            "IT/remote-work-guidelines.md",
            &sample("remote-work-guidelines.md"),
        ),
        ("IT/", b""),
    ]);
    // A browser's folder upload: relative paths as file names, junk files included.
    let form = Multipart::new()
        .file("files", "政策/员工手册-休假制度.txt", &leave)
        .file("files", "政策/差旅费报销管理办法.pdf", &travel)
        .file("files", "政策/.DS_Store", b"\0\0junk")
        .file("files", "资料/it.zip", &zip);
    let r = upload(&root, "hr", form);
    assert_eq!(r.status, 202, "{}", r.text());
    let accepted = r.json();
    let names: Vec<&str> = accepted["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f["status"], "queued", "{f}");
            f["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        names,
        [
            "政策/员工手册-休假制度.txt",
            "政策/差旅费报销管理办法.pdf",
            "资料/IT/IT服务台常见问题.txt",
            "资料/IT/remote-work-guidelines.md",
        ]
    );
    let job_id = accepted["job"].as_i64().unwrap();
    let job = wait_job(&root, job_id);
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["kb"], "hr");
    assert_eq!(job["counts"], json!({"queued": 0, "done": 4, "failed": 0}));
    assert!(job["finished_at"].as_i64().unwrap() >= job["created_at"].as_i64().unwrap());
    for f in job["files"].as_array().unwrap() {
        assert_eq!(f["status"], "done", "{f}");
        assert!(f["document_id"].as_i64().is_some(), "{f}");
    }
    let jobs = root.get("/api/jobs?kb=hr").json();
    assert_eq!(jobs[0]["id"], job_id);
    assert_eq!(root.get("/api/jobs?kb=it").json(), json!([]));
    assert_eq!(root.get("/api/jobs?kb=nope").status, 404);

    // Listed by name, relative to the upload; searchable by title or name; paged.
    let list = documents(&alice, "hr", "");
    assert_eq!(list["total"], 4);
    let docs = list["documents"].as_array().unwrap();
    let pdf = docs
        .iter()
        .find(|d| d["name"] == "政策/差旅费报销管理办法.pdf")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(pdf["format"], "pdf");
    assert_eq!(pdf["pages"], 2);
    assert_eq!(pdf["size"], travel.len());
    assert!(pdf["chunks"].as_u64().unwrap() > 0);
    assert!(pdf["warnings"].is_array() && pdf["created_at"].is_i64());
    // How its pages were read: both from the text layer.
    assert_eq!(
        (&pdf["text_pages"], &pdf["ocr_pages"], &pdf["failed_pages"]),
        (&json!(2), &json!([]), &json!([])),
        "{pdf}"
    );
    let q = |text: &str| documents(&alice, "hr", &format!("?q={}", pct(text)))["total"].clone();
    assert_eq!(q("休假"), 1);
    assert_eq!(q("资料/IT"), 2);
    assert_eq!(q("差旅费报销"), 1);
    let page = documents(&alice, "hr", "?limit=3&offset=3");
    assert_eq!(
        (
            page["total"].as_u64(),
            page["documents"].as_array().unwrap().len()
        ),
        (Some(4), 1)
    );
    assert_eq!(alice.get("/api/kbs/hr/documents?limit=0").status, 400);
    assert_eq!(alice.get("/api/kbs/hr/documents?offset=x").status, 400);

    // Searchable: the answer cites the uploaded file by its relative name.
    let a = alice.post_json(
        "/api/ask",
        &json!({"question": "累计工作已满10年的年休假有几天", "kb": "hr", "stream": false}),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let a = a.json();
    let cite = a["citations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["document"] == "政策/员工手册-休假制度.txt")
        .unwrap_or_else(|| panic!("the uploaded policy is cited: {a}"));
    let doc = cite["document_id"].as_i64().unwrap();

    // The citation viewer's passage.
    let c = alice.get(&format!("/api/chunks/{}", cite["chunk"]));
    assert_eq!(c.status, 200, "{}", c.text());
    let c = c.json();
    assert_eq!(c["kb"], "hr");
    assert_eq!(c["document_id"], doc);
    assert_eq!(c["name"], "政策/员工手册-休假制度.txt");
    assert_eq!(c["text"], cite["text"]);
    assert_eq!(c["page"], 1);
    assert!(c["heading_path"].is_array() && c["title"].is_string());
    assert!(c["char_end"].as_u64() > c["char_start"].as_u64());

    // The original, byte for byte, with its Chinese name.
    let f = alice.get(&format!("/api/documents/{doc}/file"));
    assert_eq!(f.status, 200);
    assert_eq!(f.body, leave);
    assert_eq!(f.header("content-type"), Some("text/plain"));
    assert_eq!(f.header("x-content-type-options"), Some("nosniff"));
    let disposition = f.header("content-disposition").unwrap();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert!(
        disposition.contains(&format!(
            "filename*=UTF-8''{}",
            rfc5987("员工手册-休假制度.txt")
        )),
        "{disposition}"
    );
    let p = alice.get(&format!("/api/documents/{}/file", pdf["id"]));
    assert_eq!(
        (p.status, p.header("content-type")),
        (200, Some("application/pdf"))
    );
    assert_eq!(p.body, travel);

    // Uploads and downloads are audited.
    let log = s.state.engine.meta.audit_log(50, 0).unwrap();
    let find = |action: &str| log.iter().find(|e| e.action == action).cloned();
    let up = find("document.upload").expect("upload audited");
    assert_eq!((up.actor.as_str(), up.target.as_str()), ("root", "hr"));
    let down = find("document.download").expect("download audited");
    assert_eq!(down.actor, "alice");
    assert!(
        down.target.contains("休假制度") || down.target.contains("差旅费"),
        "{down:?}"
    );
}

#[test]
fn versions_reindex_and_delete_keep_the_three_stores_in_step() {
    let (d, s) = server(|_| {});
    let data = d.path().join("data");
    let e = &s.state.engine;
    let root = s.client().login("root", "password-1");
    let v1 = sample("员工手册-休假制度.txt");
    let name = "政策/休假制度.txt";
    let job = upload_and_wait(&root, "hr", Multipart::new().file("files", name, &v1));
    let d1 = job["files"][0]["document_id"].as_i64().unwrap();

    // The same file again: unchanged, nothing re-embedded.
    let counts = || {
        let n = e.meta.chunk_count().unwrap();
        (n, common::store_counts(e))
    };
    let before = counts();
    let job = upload_and_wait(&root, "hr", Multipart::new().file("files", name, &v1));
    let f = &job["files"][0];
    assert_eq!(
        (f["status"].as_str(), f["document_id"].as_i64()),
        (Some("done"), Some(d1))
    );
    assert!(f["message"].as_str().unwrap().contains("unchanged"), "{f}");
    assert_eq!(counts(), before);

    // A new version under the same name replaces the document and its stored original.
    let mut v2 = v1.clone();
    v2.extend_from_slice("\n第九条 补充规定\n员工每年另有生日假1天。\n".as_bytes());
    let job = upload_and_wait(&root, "hr", Multipart::new().file("files", name, &v2));
    let f = &job["files"][0];
    assert!(f["message"].as_str().unwrap().contains("replaced"), "{f}");
    let d2 = f["document_id"].as_i64().unwrap();
    assert_ne!(d2, d1);
    assert_eq!(documents(&root, "hr", "")["total"], 1);
    assert_eq!(
        originals(&data, e, "hr").len(),
        1,
        "the old original is gone"
    );
    assert_eq!(root.get(&format!("/api/documents/{d1}/file")).status, 404);
    assert_eq!(root.get(&format!("/api/documents/{d2}/file")).body, v2);

    // The same content under another name is not indexed twice.
    let job = upload_and_wait(&root, "hr", Multipart::new().file("files", "副本.txt", &v2));
    let f = &job["files"][0];
    assert!(
        f["message"].as_str().unwrap().contains("not indexed twice"),
        "{f}"
    );
    assert_eq!(f["document_id"], d2);
    assert_eq!(documents(&root, "hr", "")["total"], 1);

    // Two versions of one name queued back to back (likely in one batch of the worker):
    // the later one wins, once.
    let (w1, w2) = (
        "第一版：年假五天。".as_bytes(),
        "第二版：年假六天。".as_bytes(),
    );
    let j1 = upload(&root, "hr", Multipart::new().file("files", "连续.txt", w1));
    let j2 = upload(&root, "hr", Multipart::new().file("files", "连续.txt", w2));
    for j in [&j1, &j2] {
        assert_eq!(j.status, 202, "{}", j.text());
        let job = wait_job(&root, j.json()["job"].as_i64().unwrap());
        assert_eq!(job["status"], "done", "{job}");
    }
    let list = documents(&root, "hr", &format!("?q={}", pct("连续")));
    assert_eq!(list["total"], 1, "{list}");
    let id = &list["documents"][0]["id"];
    assert_eq!(root.get(&format!("/api/documents/{id}/file")).body, w2);
    assert_eq!(root.delete(&format!("/api/documents/{id}")).status, 204);

    // Re-index: extracted again from the stored original, as a job.
    let r = root.request("POST", &format!("/api/documents/{d2}/reindex"), None, &[]);
    assert_eq!(r.status, 202, "{}", r.text());
    let job = wait_job(&root, r.json()["job"].as_i64().unwrap());
    assert_eq!(
        (job["status"].as_str(), job["kind"].as_str()),
        (Some("done"), Some("reindex"))
    );
    let d3 = job["files"][0]["document_id"].as_i64().unwrap();
    assert_ne!(d3, d2, "re-indexed into a new version");
    assert_eq!(documents(&root, "hr", "")["total"], 1);
    let (sqlite, vectors, keywords) = common::store_counts(e);
    assert!(sqlite > 0);
    assert_eq!((vectors, keywords), (sqlite as usize, sqlite as usize));

    // A document ingested from the server's disk by the CLI: downloadable, re-indexable.
    let path = common::samples().join("IT服务台常见问题.txt");
    zhiku_core::index::ingest_paths(
        e,
        "it",
        std::slice::from_ref(&path),
        &Default::default(),
        &Silent,
    )
    .unwrap();
    let cli_doc = documents(&root, "it", "")["documents"][0].clone();
    assert_eq!(
        cli_doc["name"], "IT服务台常见问题.txt",
        "no server path shown"
    );
    let f = root.get(&format!("/api/documents/{}/file", cli_doc["id"]));
    assert_eq!(
        (f.status, f.body.len()),
        (200, sample("IT服务台常见问题.txt").len())
    );
    let r = root.request(
        "POST",
        &format!("/api/documents/{}/reindex", cli_doc["id"]),
        None,
        &[],
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let job = wait_job(&root, r.json()["job"].as_i64().unwrap());
    assert_eq!(job["status"], "done", "{job}");

    // Delete: gone from all three stores, with its original.
    assert_eq!(root.delete(&format!("/api/documents/{d3}")).status, 204);
    assert_eq!(documents(&root, "hr", "")["total"], 0);
    assert_eq!(root.get(&format!("/api/documents/{d3}/file")).status, 404);
    assert_eq!(root.delete(&format!("/api/documents/{d3}")).status, 404);
    assert_eq!(
        root.request("POST", &format!("/api/documents/{d3}/reindex"), None, &[])
            .status,
        404
    );
    assert!(originals(&data, e, "hr").is_empty());
    let it_chunks = e.meta.chunk_count().unwrap() as usize;
    let (_, vectors, keywords) = common::store_counts(e);
    assert_eq!(
        (vectors, keywords),
        (it_chunks, it_chunks),
        "only it's chunks are left"
    );
    let log = e.meta.audit_log(50, 0).unwrap();
    for action in ["document.delete", "document.reindex"] {
        assert!(log.iter().any(|l| l.action == action), "{action} audited");
    }
}

#[test]
fn upload_attacks_are_refused_with_nothing_stored_and_the_server_stays_healthy() {
    let (d, s) = server(|c| {
        c.server.max_upload_mb = 1;
        c.server.max_upload_files = 5;
        c.server.max_unzipped_mb = 2;
    });
    let data = d.path().join("data");
    let e = &s.state.engine;
    let root = s.client().login("root", "password-1");
    let healthy = |what: &str| {
        let r = s.client().get("/healthz");
        assert_eq!(r.status, 200, "after {what}");
    };
    let text = |i: usize| format!("第{i}份文件：年休假规定。").into_bytes();
    let refused = |form: Multipart, status: u16, needle: &str, what: &str| {
        let r = upload(&root, "hr", form);
        assert_eq!(r.status, status, "{what}: {}", r.text());
        let m = error_message(&r);
        assert!(m.contains(needle), "{what}: {m}");
        healthy(what);
    };

    // Larger than server.max_upload_mb.
    let big: Vec<u8> = "一".repeat(600_000).into_bytes();
    refused(
        Multipart::new().file("files", "big.txt", &big),
        413,
        "max_upload_mb",
        "a large body",
    );
    // …also when the body comes in chunks, with no length to check up front.
    let status = post_chunked(
        &root,
        "/api/kbs/hr/documents",
        Multipart::new().file("files", "big.txt", &big),
    );
    assert_eq!(status, 413, "a large chunked body");
    healthy("a large chunked body");
    // More files than server.max_upload_files, as parts or inside a zip.
    let mut six = Multipart::new();
    for i in 0..6 {
        six = six.file("files", &format!("{i}.txt"), &text(i));
    }
    refused(six, 400, "max_upload_files", "six parts");
    let entries: Vec<(String, Vec<u8>)> = (0..6).map(|i| (format!("{i}.txt"), text(i))).collect();
    let refs: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    refused(
        Multipart::new().file("files", "six.zip", &common::zip_of(&refs)),
        400,
        "max_upload_files",
        "six zip entries",
    );
    // Path traversal in part names (after a good part: nothing of it is kept either).
    for evil in [
        "../x.txt",
        "/etc/x.txt",
        "a/../../x.txt",
        "a\\..\\..\\x.txt",
        "..\\x.txt",
        "C:\\Windows\\x.txt",
        "C:x.txt",
        "\\\\server\\share\\x.txt",
    ] {
        let form = Multipart::new()
            .file("files", "ok.txt", &text(1))
            .file("files", evil, &text(2));
        refused(form, 400, "unsafe file name", evil);
    }
    let r = upload(
        &root,
        "hr",
        Multipart::new().file("files", "a\0b.txt", &text(3)),
    );
    assert_eq!(r.status, 400, "NUL in a name: {}", r.text());
    healthy("a NUL in a name");
    // …and in zip entries.
    for evil in [
        "../evil.txt",
        "/abs.txt",
        "a/../../evil.txt",
        "..\\evil.txt",
    ] {
        let zip = common::zip_of(&[("ok.txt", b"fine"), (evil, b"evil")]);
        refused(
            Multipart::new().file("files", "z.zip", &zip),
            400,
            "unsafe file name",
            evil,
        );
    }
    // Zip bombs: an absurd ratio, and more unpacked bytes than server.max_unzipped_mb.
    let zeros = vec![0u8; 3 << 20];
    refused(
        Multipart::new().file("files", "bomb.zip", &common::zip_of(&[("a.txt", &zeros)])),
        400,
        "zip bomb",
        "a ratio bomb",
    );
    // 3 MiB of text that compresses like text (a two-character alphabet, shuffled).
    let mut x = 0x9E37_79B9u32;
    let noise: String = (0..1_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if x & 1 == 0 { '年' } else { '假' }
        })
        .collect();
    let wide = common::zip_of(&[("a.txt", noise.as_bytes())]);
    assert!(wide.len() < 1 << 20, "the zip itself fits the upload limit");
    refused(
        Multipart::new().file("files", "wide.zip", &wide),
        400,
        "max_unzipped_mb",
        "too much unpacked",
    );
    // Only programs: 415 with what they really are.
    let exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00program".to_vec();
    refused(
        Multipart::new()
            .file("files", "报告.pdf", &exe)
            .file("files", "setup.exe", &exe),
        415,
        "Windows program",
        "programs",
    );
    // Not a multipart body at all.
    let r = root.post_json("/api/kbs/hr/documents", &json!({"files": []}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        upload(&root, "hr", Multipart::new()).status,
        400,
        "no files"
    );
    assert_eq!(
        upload(
            &root,
            "nope",
            Multipart::new().file("files", "a.txt", &text(0))
        )
        .status,
        404
    );

    // Nothing of any of that was stored or queued.
    assert!(originals(&data, e, "hr").is_empty());
    assert_eq!(root.get("/api/jobs").json(), json!([]));
    let staging = zhiku_core::index::originals::staging_root(&data);
    let left = std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "staging is emptied");

    // A wrong file among good ones is refused alone; a symbolic link in a zip is skipped.
    let mut linked = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut linked);
        let o = zip::write::SimpleFileOptions::default();
        z.add_symlink("link.txt", "/etc/passwd", o).unwrap();
        z.start_file("real.txt", o).unwrap();
        z.write_all(&text(7)).unwrap();
        z.finish().unwrap();
    }
    let form = Multipart::new()
        .file("files", "报告.pdf", &exe)
        .file("files", "good.txt", &text(8))
        .file("files", "l.zip", &linked.into_inner());
    let r = upload(&root, "hr", form);
    assert_eq!(r.status, 202, "{}", r.text());
    let files = r.json()["files"].clone();
    let by_name = |n: &str| {
        files
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == n)
            .unwrap_or_else(|| panic!("{n} in {files}"))
            .clone()
    };
    assert_eq!(by_name("报告.pdf")["status"], "failed");
    assert!(
        by_name("报告.pdf")["message"]
            .as_str()
            .unwrap()
            .contains("not a PDF: the content is a Windows program"),
        "{files}"
    );
    assert_eq!(by_name("link.txt")["status"], "failed");
    assert!(
        by_name("link.txt")["message"]
            .as_str()
            .unwrap()
            .contains("symbolic link")
    );
    assert_eq!(by_name("good.txt")["status"], "queued");
    assert_eq!(by_name("real.txt")["status"], "queued");
    let job = wait_job(&root, r.json()["job"].as_i64().unwrap());
    assert_eq!(
        job["counts"],
        json!({"queued": 0, "done": 2, "failed": 2}),
        "{job}"
    );
    assert_eq!(
        originals(&data, e, "hr").len(),
        2,
        "only the good files are kept"
    );

    // Still healthy, and a normal upload goes through.
    healthy("everything");
    let job = upload_and_wait(
        &root,
        "hr",
        Multipart::new().file("files", "政策/休假.txt", &sample("员工手册-休假制度.txt")),
    );
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(documents(&root, "hr", "")["total"], 3);
}

#[test]
fn other_groups_get_404_and_members_cannot_manage_documents() {
    let (_d, s) = server(|_| {});
    let root = s.client().login("root", "password-1");
    let alice = s.client().login("alice", "password-1");
    let bob = s.client().login("bob", "password-1");
    // The endpoints are in the API document, the upload as a multipart form.
    let doc = root.get("/api/openapi.json").json();
    for (path, method) in [
        ("/api/kbs/{kb}/documents", "get"),
        ("/api/kbs/{kb}/documents", "post"),
        ("/api/documents/{id}", "delete"),
        ("/api/documents/{id}/reindex", "post"),
        ("/api/documents/{id}/file", "get"),
        ("/api/chunks/{id}", "get"),
        ("/api/jobs", "get"),
        ("/api/jobs/{id}", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    assert!(
        doc["paths"]["/api/kbs/{kb}/documents"]["post"]["requestBody"]["content"]
            ["multipart/form-data"]
            .is_object()
    );
    let job = upload_and_wait(
        &root,
        "hr",
        Multipart::new().file("files", "休假.txt", &sample("员工手册-休假制度.txt")),
    );
    let job_id = job["id"].as_i64().unwrap();
    let doc = job["files"][0]["document_id"].as_i64().unwrap();
    let chunk = s.state.engine.meta.document_chunks(doc).unwrap()[0].0;
    // (path, the same for something that does not exist, what differs in their messages)
    let cases = [
        (
            "/api/kbs/hr/documents".to_string(),
            "/api/kbs/nope/documents",
            ("`hr`".to_string(), "`nope`"),
        ),
        (
            format!("/api/documents/{doc}/file"),
            "/api/documents/987654/file",
            (doc.to_string(), "987654"),
        ),
        (
            format!("/api/chunks/{chunk}"),
            "/api/chunks/987654",
            (chunk.to_string(), "987654"),
        ),
    ];
    let token = bob
        .post_json("/api/tokens", &json!({"name": "script"}))
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let bob_token = s.client().bearer(&token);
    for (path, missing, (real_id, missing_id)) in &cases {
        assert_eq!(alice.get(path).status, 200, "alice reads {path}");
        for (who, c) in [("bob", &bob), ("bob's token", &bob_token)] {
            let r = c.get(path);
            assert_eq!(r.status, 404, "{who}: {path}");
            let m = c.get(missing);
            assert_eq!(m.status, 404, "{who}: {missing}");
            assert_eq!(
                error_message(&r).replace(real_id.as_str(), "ID"),
                error_message(&m).replace(missing_id, "ID"),
                "the same answer as for something missing"
            );
        }
        assert_eq!(s.client().get(path).status, 401, "anonymous: {path}");
    }
    // Members manage nothing, not even in their own knowledge base.
    let form = || Multipart::new().file("files", "x.txt", "内容".as_bytes());
    assert_eq!(upload(&alice, "hr", form()).status, 403);
    assert_eq!(alice.delete(&format!("/api/documents/{doc}")).status, 403);
    assert_eq!(
        alice
            .request("POST", &format!("/api/documents/{doc}/reindex"), None, &[])
            .status,
        403
    );
    assert_eq!(alice.get("/api/jobs").status, 403);
    assert_eq!(alice.get(&format!("/api/jobs/{job_id}")).status, 403);
    assert_eq!(upload(&s.client(), "hr", form()).status, 401);
    // A cookie session needs its CSRF token to upload.
    let forged = root.clone().with_header("X-CSRF-Token", "forged");
    assert_eq!(upload(&forged, "hr", form()).status, 403);
    assert_eq!(documents(&alice, "hr", "")["total"], 1, "nothing changed");
}

#[test]
fn an_interrupted_queue_finishes_after_a_restart_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = TestServer::start(setup(&data, |_| {}), None);
    let root = s.client().login("root", "password-1");
    let first = upload_and_wait(
        &root,
        "hr",
        Multipart::new()
            .file("files", "a.txt", "甲文件：年休假五天。".as_bytes())
            .file("files", "b.txt", "乙文件：病假需要证明。".as_bytes()),
    );
    let a_doc = first["files"][0]["document_id"].as_i64().unwrap();
    // Stop with files still queued: the worker finishes the file in hand and stops.
    let mut many = Multipart::new();
    for i in 0..30 {
        many = many.file(
            "files",
            &format!("批量/{i}.txt"),
            format!("第{i}号通知：请于{i}日前提交报销单。").as_bytes(),
        );
    }
    let r = upload(&root, "hr", many);
    assert_eq!(r.status, 202, "{}", r.text());
    let second = r.json()["job"].as_i64().unwrap();
    drop(s);

    // A crash in the middle of files: a.txt's document was written but its status was
    // not; another file's document was half written.
    let meta = MetaStore::open(&data.join("zhiku.sqlite")).unwrap();
    let kb = meta.require_kb("hr").unwrap();
    let conn = rusqlite::Connection::open(data.join("zhiku.sqlite")).unwrap();
    conn.execute(
        "UPDATE upload_files SET status = 'embedding' WHERE name = 'a.txt'",
        [],
    )
    .unwrap();
    let chunk = zhiku_ingest::Chunk {
        text: "半截文档".into(),
        page: 1,
        heading_path: vec![],
        char_start: 0,
        char_end: 4,
    };
    meta.insert_document(&NewDocument {
        kb,
        source: "批量/29.txt",
        title: "29",
        format: "txt",
        content_hash: "half",
        size: 12,
        pages: 1,
        warnings: &[],
        masked: 0,
        reading: &Default::default(),
        chunks: &[chunk],
    })
    .unwrap();
    // Two versions of one name queued back to back: at the restart they meet in one batch
    // of the worker, where the second must wait for the first to be written.
    let versions = ["同名文件第一版：年假五天。", "同名文件第二版：年假六天。"];
    for (i, text) in versions.iter().enumerate() {
        let staged = data.join(format!("staged-{i}"));
        std::fs::write(&staged, text).unwrap();
        let hash = blake3::hash(text.as_bytes()).to_hex().to_string();
        zhiku_core::index::originals::keep(&data, kb, &hash, &staged).unwrap();
        meta.create_upload_job(
            kb,
            JobKind::Upload,
            "root",
            &[NewJobFile {
                name: "同名.txt",
                blob: Some(&hash),
                size: text.len() as u64,
                refused: None,
                document_id: None,
            }],
        )
        .unwrap();
    }
    // A crash between storing an upload and queueing it leaves an original that nothing
    // needs; a knowledge base deleted by a process that stopped may leave its folder.
    let stray_text = "没有排队的文件";
    let stray = data.join("stray");
    std::fs::write(&stray, stray_text).unwrap();
    let stray_hash = blake3::hash(stray_text.as_bytes()).to_hex().to_string();
    zhiku_core::index::originals::keep(&data, kb, &stray_hash, &stray).unwrap();
    let gone_kb = zhiku_core::index::originals::kb_dir(&data, kb + 1000);
    std::fs::create_dir_all(&gone_kb).unwrap();
    std::fs::write(gone_kb.join("a".repeat(64)), "x").unwrap();
    drop((meta, conn));

    // Start again on the same data folder: everything finishes, once.
    let e = Engine::open(common::config(&data))
        .unwrap()
        .with_embedder(HashEmbedder::new());
    let s = TestServer::start(e, None);
    let root = s.client().login("root", "password-1");
    let job = wait_job(&root, second);
    assert_eq!(
        job["counts"],
        json!({"queued": 0, "done": 30, "failed": 0}),
        "{job}"
    );
    let job = wait_job(&root, first["id"].as_i64().unwrap());
    let a = &job["files"][0];
    assert_eq!(
        (a["status"].as_str(), a["document_id"].as_i64()),
        (Some("done"), Some(a_doc))
    );
    assert!(a["message"].as_str().unwrap().contains("unchanged"), "{a}");
    let jobs = root.get("/api/jobs?kb=hr").json();
    for j in jobs.as_array().unwrap() {
        assert_eq!(wait_job(&root, j["id"].as_i64().unwrap())["status"], "done");
    }
    let list = documents(&root, "hr", "?limit=100");
    assert_eq!(list["total"], 33);
    let mut names: Vec<&str> = list["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    names.dedup();
    assert_eq!(names.len(), 33, "no duplicates");
    let same = list["documents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "同名.txt")
        .unwrap();
    let file = root.get(&format!("/api/documents/{}/file", same["id"]));
    assert_eq!(file.body, versions[1].as_bytes(), "the later version wins");
    let e = &s.state.engine;
    assert!(
        e.meta.unfinished().unwrap().indexing.is_empty(),
        "the half-written document is gone"
    );
    // Unneeded originals were swept at the start; every document keeps its own.
    let stray = zhiku_core::index::originals::path(&data, kb, &stray_hash).unwrap();
    assert!(!stray.exists(), "unqueued original swept");
    assert!(
        !gone_kb.exists(),
        "folder of a deleted knowledge base swept"
    );
    assert_eq!(originals(&data, e, "hr").len(), 33);
    let (sqlite, vectors, keywords) = common::store_counts(e);
    assert_eq!((vectors, keywords), (sqlite as usize, sqlite as usize));
}
