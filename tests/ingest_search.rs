//! End to end: folders in, hybrid search out, through the library with a small deterministic
//! embedder (fast), covering incremental sync, crash recovery and knowledge-base filtering.

mod common;

use std::path::Path;

use zhiku_core::index::{self, IngestOptions};
use zhiku_core::progress::Silent;
use zhiku_core::retrieve;

fn ingest(
    e: &zhiku_core::engine::Engine,
    kb: &str,
    path: &Path,
    sync: bool,
) -> index::IngestReport {
    index::ingest_paths(
        e,
        kb,
        &[path.to_path_buf()],
        &IngestOptions { sync },
        &Silent,
    )
    .expect("ingest")
}

fn top_doc(e: &zhiku_core::engine::Engine, q: &str, kb: &str) -> Option<retrieve::Hit> {
    let kb = e.meta.require_kb(kb).unwrap();
    retrieve::search(e, q, &[kb], 5)
        .unwrap()
        .0
        .into_iter()
        .next()
}

#[test]
fn samples_ingest_and_search() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine(dir.path(), common::HashEmbedder::new());
    let r = ingest(&e, "handbook", &common::samples(), false);
    assert_eq!(r.counts.failed, 0, "{:?}", r.failures);
    assert_eq!(r.counts.added, 5, "{r:?}");
    let (meta, vectors, keywords) = common::store_counts(&e);
    assert!(meta > 5);
    assert_eq!((meta as usize, meta as usize), (vectors, keywords));

    let hit = top_doc(&e, "年休假天数", "handbook").unwrap();
    assert!(hit.document.ends_with("员工手册-休假制度.txt"), "{hit:?}");
    assert!(hit.text.contains("年休假"));
    // The PDF's pages are searchable and carry page numbers; headers/footers are gone.
    let hit = top_doc(&e, "住宿费限额标准", "handbook").unwrap();
    assert!(hit.document.ends_with("差旅费报销管理办法.pdf"), "{hit:?}");
    assert!(hit.page >= 1);
    assert!(
        !hit.text.contains("内部制度文件"),
        "running header kept: {}",
        hit.text
    );
    // GBK text is decoded.
    let hit = top_doc(&e, "VPN账号申请", "handbook").unwrap();
    assert!(hit.document.ends_with("IT服务台常见问题.txt"), "{hit:?}");
    // Personal data is masked before anything is stored.
    let kb = e.meta.require_kb("handbook").unwrap();
    let (all, _) = retrieve::search(&e, "人力资源部联系人 电话 邮箱", &[kb], 20).unwrap();
    assert!(
        all.iter()
            .all(|h| !h.text.contains("13812345678") && !h.text.contains("wangmin@example.com"))
    );
    assert!(all.iter().any(|h| h.text.contains("<MASK>")));
}

#[test]
fn incremental_sync_add_change_delete() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(docs.join("sub")).unwrap();
    std::fs::write(docs.join("a.txt"), "报销须在返回后十个工作日内提交。").unwrap();
    std::fs::write(docs.join("sub/b.txt"), "年假原则上应在当年度内休完。").unwrap();
    std::fs::write(docs.join("c.md"), "# 打印\n打印机编号贴在机身右侧。").unwrap();
    std::fs::write(docs.join("photo.gif"), b"GIF89a").unwrap();
    let e = common::engine(&dir.path().join("data"), common::HashEmbedder::new());

    let r = ingest(&e, "kb", &docs, true);
    assert_eq!(
        (r.counts.added, r.counts.failed, r.unsupported.len()),
        (3, 0, 1),
        "{r:?}"
    );
    let r = ingest(&e, "kb", &docs, true);
    assert_eq!(
        (r.counts.added, r.counts.unchanged, r.counts.changed),
        (0, 3, 0),
        "{r:?}"
    );

    std::fs::write(
        docs.join("sub/b.txt"),
        "病假期间工资按基本工资的百分之八十发放。",
    )
    .unwrap();
    let r = ingest(&e, "kb", &docs, true);
    assert_eq!((r.counts.changed, r.counts.unchanged), (1, 2), "{r:?}");
    let hit = top_doc(&e, "病假工资", "kb").unwrap();
    assert!(hit.text.contains("病假"), "{hit:?}");
    let kb = e.meta.require_kb("kb").unwrap();
    let (old, _) = retrieve::search(&e, "年假原则上应在当年度内休完", &[kb], 10).unwrap();
    assert!(
        old.iter().all(|h| !h.text.contains("年假原则上")),
        "old version still found"
    );

    std::fs::remove_file(docs.join("c.md")).unwrap();
    let r = ingest(&e, "kb", &docs, false);
    assert_eq!(r.counts.removed, 0, "without --sync nothing is removed");
    let r = ingest(&e, "kb", &docs, true);
    assert_eq!(r.counts.removed, 1, "{r:?}");
    assert_eq!(e.meta.documents(kb).unwrap().len(), 2);
    let (m, v, k) = common::store_counts(&e);
    assert_eq!((m as usize, m as usize), (v, k));

    // Same content under another name is a duplicate, not a second document.
    std::fs::write(docs.join("copy.txt"), "报销须在返回后十个工作日内提交。").unwrap();
    let r = ingest(&e, "kb", &docs, true);
    assert_eq!((r.duplicates, r.counts.added), (1, 0), "{r:?}");
}

#[test]
fn crash_mid_ingest_then_clean_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    // More documents than one batch holds, so the job crashes between batches.
    for i in 0..80 {
        std::fs::write(
            docs.join(format!("doc{i:03}.txt")),
            format!("第{i}号文件：编号{i}的制度条款内容。"),
        )
        .unwrap();
    }
    let data = dir.path().join("data");
    {
        let e = common::engine(&data, common::HashEmbedder::failing_after(1));
        let err = index::ingest_paths(
            &e,
            "kb",
            std::slice::from_ref(&docs),
            &IngestOptions::default(),
            &Silent,
        );
        assert!(err.is_err(), "the simulated crash must surface");
        let (m, v, k) = common::store_counts(&e);
        assert!(m > 0 && m < 80, "first batch landed, second did not: {m}");
        // Derived indexes hold nothing that SQLite does not show as ready…
        assert_eq!((m as usize, m as usize), (v, k));
        // …and half-written documents are invisible.
        assert!(!e.meta.unfinished().unwrap().indexing.is_empty());
    }
    let e = common::engine(&data, common::HashEmbedder::new());
    let r = ingest(&e, "kb", &docs, false);
    assert_eq!(r.counts.failed, 0);
    assert_eq!(r.counts.added + r.counts.unchanged, 80, "{r:?}");
    assert!(e.meta.unfinished().unwrap().indexing.is_empty());
    let (m, v, k) = common::store_counts(&e);
    assert_eq!(m, 80);
    assert_eq!((v, k), (80, 80));
    let hit = top_doc(&e, "第79号文件", "kb").unwrap();
    assert!(hit.text.contains("第79号"), "{hit:?}");
}

#[test]
fn knowledge_base_filter_is_inside_retrieval() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(a.join("hr.txt"), "年休假五天，病假需医院证明。").unwrap();
    std::fs::write(b.join("salary.txt"), "高管薪酬方案：总经理年薪三百万元。").unwrap();
    let e = common::engine(&dir.path().join("data"), common::HashEmbedder::new());
    ingest(&e, "public", &a, false);
    ingest(&e, "secret", &b, false);
    let public = e.meta.require_kb("public").unwrap();
    let secret = e.meta.require_kb("secret").unwrap();
    let (hits, _) = retrieve::search(&e, "高管薪酬方案 总经理年薪", &[public], 10).unwrap();
    assert!(!hits.is_empty(), "the public base still answers");
    assert!(
        hits.iter()
            .all(|h| h.kb == public && !h.text.contains("薪酬")),
        "{hits:?}"
    );
    let (hits, _) = retrieve::search(&e, "高管薪酬方案", &[], 10).unwrap();
    assert!(hits.is_empty(), "no readable knowledge base, no results");
    let (hits, _) = retrieve::search(&e, "高管薪酬方案", &[public, secret], 10).unwrap();
    assert!(hits[0].text.contains("薪酬"));
    // Deleting a knowledge base removes its chunks from every store.
    assert_eq!(index::delete_kb(&e, "secret").unwrap(), 1);
    let (m, v, k) = common::store_counts(&e);
    assert_eq!((m, v, k), (1, 1, 1));
}

#[test]
fn bad_files_get_clear_errors_and_the_rest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        docs.join("good.txt"),
        "这是一份正常的文件，内容可以被检索。",
    )
    .unwrap();
    std::fs::write(docs.join("empty.txt"), "").unwrap();
    std::fs::write(
        docs.join("broken.pdf"),
        b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage",
    )
    .unwrap();
    let mut bin = vec![0u8; 2048];
    bin.iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (i * 37 % 256) as u8);
    std::fs::write(docs.join("program.txt"), &bin).unwrap();
    let e = common::engine(&dir.path().join("data"), common::HashEmbedder::new());
    let r = ingest(&e, "kb", &docs, false);
    assert_eq!(r.counts.added, 1, "{r:?}");
    assert_eq!(r.counts.failed, 3, "{r:?}");
    let reason = |name: &str| {
        r.failures
            .iter()
            .find(|(s, _)| s.ends_with(name))
            .map(|(_, w)| w.to_lowercase())
            .unwrap_or_else(|| panic!("no failure for {name}: {r:?}"))
    };
    assert!(reason("empty.txt").contains("empty"), "{r:?}");
    assert!(reason("broken.pdf").contains("pdf"), "{r:?}");
    assert!(reason("program.txt").contains("binary"), "{r:?}");
    let missing = index::ingest_paths(
        &e,
        "kb",
        &[dir.path().join("no-such-folder")],
        &IngestOptions::default(),
        &Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(missing.contains("no-such-folder"), "{missing}");
}

/// An embedder during whose work an admin deletes the knowledge base being indexed (through
/// a second connection, as the server's delete does while its ingestion worker runs).
struct DeletedMidway {
    inner: std::sync::Arc<common::HashEmbedder>,
    db: std::path::PathBuf,
    kb: &'static str,
}

impl zhiku_core::embed::Embedder for DeletedMidway {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn max_tokens(&self) -> usize {
        self.inner.max_tokens()
    }
    fn count_tokens(&self, text: &str) -> usize {
        self.inner.count_tokens(text)
    }
    fn embed_passages(
        &self,
        texts: &[&str],
    ) -> Result<Vec<Vec<f32>>, zhiku_core::embed::EmbedError> {
        let meta = zhiku_core::store::meta::MetaStore::open(&self.db).unwrap();
        if let Some(kb) = meta.kb_id(self.kb).unwrap() {
            meta.delete_kb(kb).unwrap();
        }
        self.inner.embed_passages(texts)
    }
    fn embed_query(&self, text: &str) -> Result<Vec<f32>, zhiku_core::embed::EmbedError> {
        self.inner.embed_query(text)
    }
}

/// A knowledge base deleted while its documents are being embedded leaves nothing behind:
/// the vectors and keywords written after the delete's purge are removed by the ingestion,
/// and the files are reported as failed with the reason.
#[test]
fn deleting_a_knowledge_base_mid_ingest_leaves_no_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let e = common::engine(
        &data,
        std::sync::Arc::new(DeletedMidway {
            inner: common::HashEmbedder::new(),
            db: data.join("zhiku.sqlite"),
            kb: "doomed",
        }),
    );
    // The first batch finds its documents gone; later ones cannot even be written (the
    // knowledge base no longer exists), which ends the run with an error.
    let run = index::ingest_paths(
        &e,
        "doomed",
        &[common::samples()],
        &IngestOptions::default(),
        &Silent,
    );
    if let Ok(r) = &run {
        assert_eq!(r.counts.added, 0, "{r:?}");
        assert!(
            r.failures.iter().all(|(_, why)| why.contains("deleted")),
            "{:?}",
            r.failures
        );
    }
    assert_eq!(common::store_counts(&e), (0, 0, 0));
    assert!(e.meta.kb_id("doomed").unwrap().is_none());
}

/// `zhiku ingest` takes zips as uploads do: unpacked with the same checks, each entry its own
/// document named after the zip, an unsupported entry skipped, a wrong one failed alone, a
/// zip bomb failed alone while the rest goes in; nothing unpacked is left behind, and a
/// second run finds the entries unchanged.
#[test]
fn zips_are_ingested_like_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("a.txt"), "报销须在返回后十个工作日内提交。").unwrap();
    std::fs::write(
        docs.join("制度.zip"),
        common::zip_of(&[
            (
                "政策/年假.txt",
                "员工入职满一年后享有带薪年假五天。".as_bytes(),
            ),
            ("政策/", b""),
            ("__MACOSX/政策/._年假.txt", b"\0\0junk"),
            // GIF: not a document format (PNG and JPEG are, through OCR).
            ("photo.gif", b"GIF89a\x01\0\x01\0"),
            ("setup.pdf", b"MZ\x90\0program"),
        ]),
    )
    .unwrap();
    std::fs::write(
        docs.join("bomb.zip"),
        common::zip_of(&[("zeros.txt", &vec![b'0'; 3 << 20])]),
    )
    .unwrap();
    let e = common::engine(&dir.path().join("data"), common::HashEmbedder::new());
    let r = ingest(&e, "kb", &docs, true);
    assert_eq!(r.counts.added, 2, "{r:?}");
    assert_eq!(r.counts.failed, 2, "{r:?}");
    let zip = docs.canonicalize().unwrap().join("制度.zip");
    let failed: Vec<&str> = r.failures.iter().map(|(s, _)| s.as_str()).collect();
    assert!(failed.iter().any(|s| s.ends_with("bomb.zip")), "{failed:?}");
    let pdf = zip.join("setup.pdf").display().to_string();
    assert!(failed.contains(&pdf.as_str()), "{failed:?}");
    assert!(
        r.failures
            .iter()
            .any(|(s, why)| s.ends_with("bomb.zip") && why.contains("zip bomb")),
        "{:?}",
        r.failures
    );
    let gif = zip.join("photo.gif").display().to_string();
    assert_eq!(r.unsupported, [gif], "{r:?}");
    let hit = top_doc(&e, "带薪年假几天", "kb").unwrap();
    assert_eq!(
        hit.document,
        zip.join("政策/年假.txt").display().to_string()
    );
    assert_eq!(hit.title, "年假");
    let unpack = dir.path().join("data/unpack");
    let left: Vec<_> = std::fs::read_dir(&unpack)
        .map(|d| d.collect::<Vec<_>>())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
    let again = ingest(&e, "kb", &docs, true);
    assert_eq!(
        (
            again.counts.unchanged,
            again.counts.removed,
            again.counts.added
        ),
        (2, 0, 0),
        "{again:?}"
    );
}
