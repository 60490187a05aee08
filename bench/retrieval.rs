//! Retrieval quality and latency on the CMRC 2018 trial set: every passage ingested as one
//! document with the real embedding model, every question asked with each fusion setting,
//! next to the Python peers measured on the same questions.
//!
//! `cargo bench --bench retrieval [-- QA_FILE]` (default `../shared/data/cmrc2018_trial.json`,
//! env `ZHIKU_BENCH_QA`; model: env `ZHIKU_BENCH_MODEL`, default `models/multilingual-e5-small`).

#[path = "common/mod.rs"]
mod common;
#[path = "common/qa.rs"]
mod qa;

use std::time::Instant;

use zhiku_core::config::{Fusion, RetrieveConfig};
use zhiku_core::progress::Silent;
use zhiku_core::{eval, index};

use common::{Table, f};

/// Peer figures for the same 1002 questions, from `../shared/data/README.md` (Python on a
/// larger corpus: these 256 passages plus 848 more, so they are harder than ours).
/// (name, hit@1, hit@5, MRR@10, answer recall@1, answer recall@5, median ms), percentages.
const PEERS: &[(&str, f64, f64, f64, f64, f64, f64)] = &[
    ("BM25 (rank_bm25, jieba)", 93.7, 98.1, 95.6, 81.9, 94.8, 7.7),
    ("dense e5-small (numpy)", 93.6, 97.3, 95.2, 77.8, 93.1, 31.8),
    ("RRF k=60", 96.1, 98.6, 97.2, 82.9, 95.8, 39.6),
    ("min-max fusion 0.5/0.5", 97.2, 99.0, 98.0, 87.4, 96.2, 39.7),
];

fn main() {
    let model = common::model_dir();
    let (qa_path, set) = qa::load();
    let data = tempfile::tempdir().expect("temporary folder");
    let embedder = common::load_embedder(&model);
    let engine = common::open_engine(data.path(), &model, embedder);
    println!("## Retrieval: {}", qa_path.display());
    println!();
    println!("machine: {}", common::machine());

    let t0 = Instant::now();
    let report = index::ingest_qa_contexts(&engine, "cmrc", &qa_path, &Silent)
        .expect("ingest the QA file's passages");
    let ingest_s = t0.elapsed().as_secs_f64();
    let kb = engine.meta.require_kb("cmrc").expect("knowledge base");
    println!(
        "index: {} passages → {} chunks in {:.1} s ({:.1} chunks/s, e5 embedding included), {:.1} MiB on disk",
        report.counts.added,
        report.counts.chunks,
        ingest_s,
        report.counts.chunks as f64 / ingest_s,
        common::dir_size_mib(data.path())
    );
    println!("questions: {}", set.questions.len());
    println!();

    let weighted = |w: f32| RetrieveConfig {
        fusion: Fusion::Weighted,
        dense_weight: w,
        ..Default::default()
    };
    let runs: Vec<(String, RetrieveConfig)> = vec![
        ("keyword only (BM25)".into(), weighted(0.0)),
        ("dense only (e5-small)".into(), weighted(1.0)),
        (
            "RRF k=60".into(),
            RetrieveConfig {
                fusion: Fusion::Rrf,
                ..Default::default()
            },
        ),
        ("weighted 0.3 dense".into(), weighted(0.3)),
        ("weighted 0.5 dense (default)".into(), weighted(0.5)),
        ("weighted 0.7 dense".into(), weighted(0.7)),
    ];
    let mut table = Table::new(&[
        "retriever",
        "hit@1",
        "hit@5",
        "MRR@10",
        "answer recall@1",
        "answer recall@5",
        "p50 ms",
        "p95 ms",
        "embed p50 ms",
    ]);
    let pct = |x: f64| f(100.0 * x, 1);
    for (name, config) in &runs {
        let r = eval::eval_retrieval(&engine, &set, &[kb], config).expect("evaluation");
        table.row(vec![
            format!("zhiku {name}"),
            pct(r.hit1),
            pct(r.hit5),
            pct(r.mrr10),
            pct(r.recall1),
            pct(r.recall5),
            f(r.latency_ms_p50, 1),
            f(r.latency_ms_p95, 1),
            f(r.embed_ms_p50, 1),
        ]);
        eprintln!("{name}: done");
    }
    for &(name, h1, h5, mrr, r1, r5, ms) in PEERS {
        table.row(vec![
            format!("peer: {name}"),
            f(h1, 1),
            f(h5, 1),
            f(mrr, 1),
            f(r1, 1),
            f(r5, 1),
            f(ms, 1),
            "—".into(),
            "—".into(),
        ]);
    }
    table.print();
    println!(
        "Latency: one query at a time, wall clock of the whole search (query embedding ∥ BM25, \
         vector search, fusion, SQLite hydration); every row runs both indexes (the weights only \
         change the fusion), so every row pays for the query embedding (embed p50). Peers: Python on 1,104 passages (harder), from ../shared/data/README.md."
    );
    println!(
        "machine after: {}; peak RSS {:.0} MiB",
        common::machine(),
        common::peak_rss_mib()
    );
}
