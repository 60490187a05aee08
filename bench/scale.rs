//! Query latency at 100k chunks. Embedding 100k chunks with the real model would take hours
//! on two cores, so the passage vectors are synthetic: every sentence of the CMRC trial
//! passages is embedded for real once, the corpus is made of documents recombining those
//! sentences, and a chunk's vector is the normalised mean of its sentences' real vectors.
//! Queries (CMRC questions) are embedded with the real model. This measures latency and
//! index size at scale, not quality.
//!
//! `cargo bench --bench scale [-- QA_FILE]`; env `ZHIKU_BENCH_CHUNKS` (default 100000),
//! `ZHIKU_BENCH_QUERIES` (default 200), `ZHIKU_BENCH_QA`, `ZHIKU_BENCH_MODEL`.

#[path = "common/mod.rs"]
mod common;
#[path = "common/qa.rs"]
mod qa;
#[path = "common/rng.rs"]
mod rng;

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use zhiku_core::embed::{self, Embedder};
use zhiku_core::eval::percentile;
use zhiku_core::progress::Silent;
use zhiku_core::{index, retrieve};
use zhiku_ingest::{Block, ChunkConfig, CleanConfig, Page, chunk};

use common::{Table, f};
use rng::Rng;

/// Sentences of `text` as the chunker sees them.
fn split(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chunk::sentences(&chars)
        .into_iter()
        .map(|(a, b)| chars[a..b].iter().collect())
        .collect()
}

/// Real query vectors; passage vectors from a table of real sentence vectors.
struct Synthetic {
    real: Arc<dyn Embedder>,
    model_id: String,
    sentences: HashMap<String, Vec<f32>>,
    found: AtomicU64,
    missing: AtomicU64,
}

impl Synthetic {
    fn vector(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.real.dim()];
        for s in split(text) {
            match self.sentences.get(&s) {
                Some(sv) => {
                    self.found.fetch_add(1, Ordering::Relaxed);
                    v.iter_mut().zip(sv).for_each(|(a, b)| *a += b);
                }
                None => {
                    // A sentence the table lacks (cut by the chunker): a random direction.
                    self.missing.fetch_add(1, Ordering::Relaxed);
                    let mut rng = Rng::from_text(&s);
                    v.iter_mut().for_each(|a| {
                        *a += (rng.next_u64() as f64 / u64::MAX as f64 * 2.0 - 1.0) as f32 * 0.05
                    });
                }
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }
}

impl Embedder for Synthetic {
    fn model_id(&self) -> &str {
        &self.model_id
    }
    fn dim(&self) -> usize {
        self.real.dim()
    }
    fn max_tokens(&self) -> usize {
        self.real.max_tokens()
    }
    fn count_tokens(&self, text: &str) -> usize {
        self.real.count_tokens(text)
    }
    fn embed_passages(&self, texts: &[&str]) -> embed::Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|t| self.vector(t)).collect())
    }
    fn embed_query(&self, text: &str) -> embed::Result<Vec<f32>> {
        self.real.embed_query(text)
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}")),
        Err(_) => default,
    }
}

/// p50 / p95 / p99 / mean of `values` as table cells.
fn stats(label: &str, values: &[f64]) -> Vec<String> {
    let mut v = values.to_vec();
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    vec![
        label.to_string(),
        f(percentile(&mut v, 0.50), 1),
        f(percentile(&mut v, 0.95), 1),
        f(percentile(&mut v, 0.99), 1),
        f(mean, 1),
    ]
}

fn main() {
    let model = common::model_dir();
    let (_, set) = qa::load();
    let target = env_usize("ZHIKU_BENCH_CHUNKS", 100_000);
    let n_queries = env_usize("ZHIKU_BENCH_QUERIES", 200).min(set.questions.len());
    println!("## Scale: query latency at {target} chunks");
    println!();
    println!("machine: {}", common::machine());
    let real = common::load_embedder(&model);

    // 1. Real vectors for every sentence of the passages (cleaned as ingestion cleans).
    let clean = CleanConfig::default();
    let mut pool: Vec<String> = Vec::new();
    for p in &set.paragraphs {
        for mut s in split(&zhiku_ingest::clean::clean_text(&p.context, &clean)) {
            if !s.ends_with(['。', '！', '？', '；', '!', '?', ';']) {
                s.push('。');
            }
            if (8..=160).contains(&s.chars().count()) {
                pool.push(s);
            }
        }
    }
    pool.sort();
    pool.dedup();
    let t = Instant::now();
    let refs: Vec<&str> = pool.iter().map(String::as_str).collect();
    let vectors = real.embed_passages(&refs).expect("embed sentences");
    println!(
        "sentence vectors: {} sentences embedded for real in {:.1} s",
        pool.len(),
        t.elapsed().as_secs_f64()
    );
    let synthetic = Arc::new(Synthetic {
        model_id: format!("{}+synthetic-passages", real.model_id()),
        real: real.clone(),
        sentences: pool.iter().cloned().zip(vectors).collect(),
        found: AtomicU64::new(0),
        missing: AtomicU64::new(0),
    });

    // 2. Documents of 2–7 chunks recombining those sentences, counted with the chunker
    //    until the corpus holds `target` chunks, written as a SQuAD-layout file.
    let t = Instant::now();
    let count_tokens = |t: &str| real.count_tokens(t);
    let config = ChunkConfig::default();
    let mut rng = Rng::from_text("zhiku bench scale corpus");
    let mut articles = Vec::new();
    let mut paragraphs = Vec::new();
    let mut chunks = 0usize;
    let mut docs = 0usize;
    while chunks < target {
        let len = rng.range(300, 2000);
        let mut text = String::new();
        while text.chars().count() < len {
            text.push_str(rng.pick(&pool).as_str());
        }
        let page = Page {
            number: 1,
            blocks: vec![Block::para(text.clone())],
        };
        chunks += chunk::chunk_pages(&[page], &config, &count_tokens).len();
        docs += 1;
        paragraphs.push(serde_json::json!({
            "id": format!("S{docs:07}"),
            "context": text,
            "qas": [],
        }));
        if paragraphs.len() == 500 || chunks >= target {
            articles.push(serde_json::json!({
                "title": format!("合成文档集 {}", articles.len() + 1),
                "paragraphs": std::mem::take(&mut paragraphs),
            }));
        }
    }
    let corpus = tempfile::NamedTempFile::new().expect("temporary file");
    let mut out = std::io::BufWriter::new(corpus.as_file());
    serde_json::to_writer(&mut out, &serde_json::json!({ "data": articles }))
        .expect("write corpus");
    out.flush().expect("write corpus");
    drop(out);
    println!(
        "corpus: {docs} documents, {chunks} chunks, generated in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // 3. Build the index through the normal ingestion path.
    let data = tempfile::tempdir().expect("temporary folder");
    let engine = common::open_engine(data.path(), &model, synthetic.clone());
    let t = Instant::now();
    let report = index::ingest_qa_contexts(&engine, "scale", corpus.path(), &Silent)
        .expect("build the index");
    let build_s = t.elapsed().as_secs_f64();
    let kb = engine.meta.require_kb("scale").expect("knowledge base");
    let found = synthetic.found.load(Ordering::Relaxed) as f64;
    let missing = synthetic.missing.load(Ordering::Relaxed) as f64;
    println!(
        "index: {} documents, {} chunks in {:.0} s ({:.0} chunks/s; synthetic passage vectors, \
         {:.1} % of chunk sentences had a real vector)",
        report.counts.added,
        report.counts.chunks,
        build_s,
        report.counts.chunks as f64 / build_s,
        100.0 * found / (found + missing).max(1.0)
    );
    let size = |p: &str| f(common::dir_size_mib(&data.path().join(p)), 0);
    let sqlite: f64 = ["zhiku.sqlite", "zhiku.sqlite-wal"]
        .iter()
        .map(|p| common::dir_size_mib(&data.path().join(p)))
        .sum();
    println!(
        "on disk: {} MiB in all (SQLite {:.0}, vectors {}, keywords {})",
        f(common::dir_size_mib(data.path()), 0),
        sqlite,
        size("vectors"),
        size("keywords")
    );
    println!();

    // 4. Queries, one at a time.
    let step = (set.questions.len() / n_queries.max(1)).max(1);
    let questions: Vec<&str> = set
        .questions
        .iter()
        .step_by(step)
        .take(n_queries)
        .map(|q| q.question.as_str())
        .collect();
    let top_k = engine.config.retrieve.top_k;
    for q in questions.iter().take(5) {
        retrieve::search(&engine, q, &[kb], top_k).expect("warm-up search");
    }
    let (mut total, mut emb, mut dense, mut kw, mut other) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for q in &questions {
        let (hits, t) = retrieve::search(&engine, q, &[kb], top_k).expect("search");
        assert!(!hits.is_empty(), "no results for {q:?}");
        total.push(t.total_ms);
        emb.push(t.embed_ms);
        dense.push(t.dense_ms);
        kw.push(t.keyword_ms);
        other.push(t.total_ms - (t.embed_ms + t.dense_ms).max(t.keyword_ms));
    }
    drop(engine);
    println!(
        "### {} queries (CMRC questions), top {top_k}, weighted fusion 0.5, {} candidates per index",
        questions.len(),
        zhiku_core::config::RetrieveConfig::default().candidates
    );
    println!();
    let mut table = Table::new(&["ms", "p50", "p95", "p99", "mean"]);
    table.row(stats("**total**", &total));
    table.row(stats("query embedding (e5-small)", &emb));
    table.row(stats("dense search (qdrant-edge)", &dense));
    table.row(stats("keyword search (tantivy BM25, parallel)", &kw));
    table.row(stats("fusion + SQLite hydration", &other));
    table.print();

    // 5. Cold start: reopen the data folder and answer one query.
    let t = Instant::now();
    let engine = common::open_engine(data.path(), &model, synthetic);
    retrieve::search(&engine, questions[0], &[kb], top_k).expect("search after reopen");
    println!(
        "reopen from disk + first query: {:.0} ms; peak RSS {:.0} MiB",
        t.elapsed().as_secs_f64() * 1e3,
        common::peak_rss_mib()
    );
    println!("machine after: {}", common::machine());
}
