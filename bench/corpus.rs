//! The producer corpus (bench/corpus/make-corpus.sh): the same four known pages (two
//! Chinese, two English) printed by real PDF producers, scanned variants, and office files from
//! their usual writers, read by zhiku's extraction (PDFium + garble check, OCR through
//! zhiku-ocr's PP-OCRv5 for pages that need it, the office readers).
//!
//! Per producer and path: pages, pages/s, character 3-gram similarity to poppler's
//! `pdftotext` after whitespace removal (text-layer PDFs) and the share of pages ≥ 0.9, CER
//! against the known source text (every PDF: it also shows where pdftotext itself is wrong),
//! facts found on their page (office files).
//!
//! `cargo bench --bench corpus`; env `ZHIKU_BENCH_OCR_DPI` (PDF page render resolution for
//! OCR, default `[ingest.ocr] dpi`), `ZHIKU_BENCH_VERBOSE` (print what was read on pages
//! with CER > 3 %), `ZHIKU_BENCH_CORPUS` (default `target/bench-corpus`,
//! built by `bench/corpus/make-corpus.sh` when missing), `ZHIKU_MODELS_DIR` (default
//! `models`), `OCR_THREADS` (onnxruntime intra-op threads, default 2), `OCR_DET_SIDE` (detection input
//! longer side, default 960), `OCR_BATCH` (recogniser crops per batch, default 6), `OCR_PAPER=off`
//! (no paper-to-white levels on the line crops, to see what it changes).

#[path = "common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use common::{Table, f};
use zhiku_ingest::{Ocr, OcrEngine, OcrError, OcrLine, OcrOptions, Options, PdfOptions};

/// zhiku-ocr behind ingest's OCR seam.
struct Seam(zhiku_ocr::PpOcr);

impl Ocr for Seam {
    fn recognize(&self, page: &image::RgbImage) -> Result<Vec<OcrLine>, OcrError> {
        Ok(self
            .0
            .recognize(page)
            .map_err(|e| OcrError(e.to_string()))?
            .into_iter()
            .map(|l| OcrLine {
                text: l.text,
                bbox: l.bbox,
                confidence: l.confidence,
            })
            .collect())
    }
}

fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Character 3-gram similarity (Dice over multisets), whitespace removed.
fn similarity(a: &str, b: &str) -> f64 {
    let grams = |s: &str| {
        let c: Vec<char> = squeeze(s).chars().collect();
        let mut m: HashMap<[char; 3], usize> = HashMap::new();
        for w in c.windows(3) {
            *m.entry([w[0], w[1], w[2]]).or_insert(0) += 1;
        }
        m
    };
    let (x, y) = (grams(a), grams(b));
    let common: usize = x
        .iter()
        .map(|(k, n)| (*n).min(*y.get(k).unwrap_or(&0)))
        .sum();
    let total: usize = x.values().sum::<usize>() + y.values().sum::<usize>();
    if total == 0 {
        return if squeeze(a) == squeeze(b) { 1.0 } else { 0.0 };
    }
    2.0 * common as f64 / total as f64
}

fn page_texts(x: &zhiku_ingest::Extracted) -> HashMap<u32, String> {
    x.pages
        .iter()
        .map(|p| {
            (
                p.number,
                p.blocks
                    .iter()
                    .map(|b| b.text.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })
        .collect()
}

fn corpus_dir() -> PathBuf {
    let dir = std::env::var_os("ZHIKU_BENCH_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/bench-corpus"));
    if !dir.join("manifest.json").is_file() {
        eprintln!("building the corpus in {}", dir.display());
        let ok = std::process::Command::new("bench/corpus/make-corpus.sh")
            .arg(&dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            common::skip(&format!(
                "no corpus in {} and bench/corpus/make-corpus.sh failed (it needs chromium, \
                 ghostscript, poppler-utils and PyPI access once)",
                dir.display()
            ));
        }
    }
    dir
}

fn main() {
    let dir = corpus_dir();
    let models = std::env::var_os("ZHIKU_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models"));
    let pdfium = models.join("pdfium/libpdfium.so");
    if !pdfium.is_file() {
        common::skip(&format!(
            "{} missing (scripts/fetch-models.sh)",
            pdfium.display()
        ));
    }
    let threads = std::env::var("OCR_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let ocr = match zhiku_ocr::PpOcr::load_with(
        &zhiku_ocr::OcrPaths {
            models_dir: models.join("ppocrv5"),
            onnxruntime: models.join("onnxruntime/libonnxruntime.so.1.31.1"),
        },
        {
            let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
            let mut o = zhiku_ocr::OcrOptions {
                intra_threads: threads,
                ..Default::default()
            };
            if let Some(side) = env("OCR_DET_SIDE") {
                o.det.limit_side_len = side as u32;
            }
            if let Some(b) = env("OCR_BATCH") {
                o.batch = b.max(1);
            }
            if std::env::var("OCR_PAPER").is_ok_and(|v| v == "off") {
                o.paper_to_white = false;
            }
            o
        },
    ) {
        Ok(o) => Arc::new(Seam(o)) as Arc<dyn Ocr>,
        Err(e) => common::skip(&format!("OCR engine: {e}")),
    };
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json")).expect("manifest"),
    )
    .expect("manifest JSON");
    let pdf = PdfOptions {
        pdfium_library: Some(pdfium),
        ..Default::default()
    };
    let ocr_options = OcrOptions {
        engine: OcrEngine(Some(ocr)),
        dpi: std::env::var("ZHIKU_BENCH_OCR_DPI")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(OcrOptions::default().dpi),
        ..OcrOptions::default()
    };
    // Warm up PDFium and onnxruntime outside the timings.
    let first = manifest["files"][0]["file"].as_str().unwrap();
    let _ = zhiku_ingest::extract::extract_with(
        &std::fs::read(dir.join(first)).unwrap(),
        first,
        &pdf,
        &ocr_options,
    );

    let verbose = std::env::var_os("ZHIKU_BENCH_VERBOSE").is_some();
    let load_before = common::machine();
    let mut table = Table::new(&[
        "producer",
        "path",
        "pages",
        "pages/s",
        "3-gram similarity to pdftotext, mean (min)",
        "pages ≥ 0.9",
        "CER vs source text, mean (max)",
        "facts on their page",
    ]);
    let (mut text_pages, mut text_good, mut producers_ok) = (0usize, 0usize, 0usize);
    let mut details = Vec::new();
    for file in manifest["files"].as_array().unwrap() {
        let name = file["file"].as_str().unwrap();
        let producer = file["producer"].as_str().unwrap();
        let kind = file["kind"].as_str().unwrap();
        let bytes = std::fs::read(dir.join(name)).expect("corpus file");
        match kind {
            "text" | "scan" => {
                let t = Instant::now();
                let x = zhiku_ingest::extract::extract_with(&bytes, name, &pdf, &ocr_options);
                let secs = t.elapsed().as_secs_f64();
                let x = match x {
                    Ok(x) => x,
                    Err(e) => {
                        table.row(vec![
                            producer.into(),
                            format!("error: {e}"),
                            "0".into(),
                            "—".into(),
                            "—".into(),
                            "—".into(),
                            "—".into(),
                            "—".into(),
                        ]);
                        continue;
                    }
                };
                let texts = page_texts(&x);
                let total = x.pages.len() + x.failed_pages.len();
                let path = if x.ocr_pages.is_empty() {
                    "text layer".to_string()
                } else if x.ocr_pages.len() == total {
                    format!("OCR ({} dpi render)", ocr_options.dpi)
                } else {
                    format!("text layer, {} pages OCR", x.ocr_pages.len())
                };
                let path = if x.failed_pages.is_empty() {
                    path
                } else {
                    format!("{path}, {} failed", x.failed_pages.len())
                };
                let rate = f(total as f64 / secs, 2);
                // CER against the known source text of each page, for every PDF.
                let truth: Vec<String> = file["truth"]
                    .as_array()
                    .map(|a| a.iter().map(|t| t.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default();
                let cers: Vec<f64> = truth
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let n = i as u32 + 1;
                        let got = texts.get(&n).map(String::as_str).unwrap_or("");
                        let c = zhiku_ocr::cer(t, got);
                        if c > 0.03 && verbose {
                            details.push(format!(
                                "{name} page {n}: CER {:.2} %, read: {}",
                                c * 100.0,
                                got.replace('\n', " / ")
                            ));
                        }
                        c
                    })
                    .collect();
                let cer_cell = if cers.is_empty() {
                    "—".to_string()
                } else {
                    let mean = cers.iter().sum::<f64>() / cers.len() as f64;
                    let max = cers.iter().copied().fold(0.0, f64::max);
                    format!("{} % ({} %)", f(mean * 100.0, 2), f(max * 100.0, 2))
                };
                details.push(format!(
                    "{name}: CER per page {:?}",
                    cers.iter()
                        .map(|c| format!("{:.2} %", c * 100.0))
                        .collect::<Vec<_>>()
                ));
                let (sim_cell, good_cell) = if kind == "text" {
                    let reference =
                        std::fs::read_to_string(dir.join(format!("{name}.txt"))).unwrap();
                    let refs: Vec<&str> = reference.split('\u{c}').collect();
                    let sims: Vec<f64> = (1..=total as u32)
                        .map(|n| {
                            similarity(
                                texts.get(&n).map(String::as_str).unwrap_or(""),
                                refs.get(n as usize - 1).copied().unwrap_or(""),
                            )
                        })
                        .collect();
                    let good = sims.iter().filter(|s| **s >= 0.9).count();
                    text_pages += sims.len();
                    text_good += good;
                    if good == sims.len() {
                        producers_ok += 1;
                    }
                    let mean = sims.iter().sum::<f64>() / sims.len().max(1) as f64;
                    let min = sims.iter().copied().fold(1.0, f64::min);
                    details.push(format!(
                        "{name}: similarity per page {:?}",
                        sims.iter().map(|s| f(*s, 3)).collect::<Vec<_>>()
                    ));
                    (
                        format!("{} ({})", f(mean, 3), f(min, 3)),
                        format!("{good}/{}", sims.len()),
                    )
                } else {
                    ("—".to_string(), "—".to_string())
                };
                table.row(vec![
                    producer.into(),
                    path,
                    total.to_string(),
                    rate,
                    sim_cell,
                    good_cell,
                    cer_cell,
                    "—".into(),
                ]);
            }
            "office" => {
                let t = Instant::now();
                let p = zhiku_ingest::process(&bytes, name, &Options::default(), &|s: &str| {
                    s.chars().count()
                });
                let secs = t.elapsed().as_secs_f64();
                let p = match p {
                    Ok(p) => p,
                    Err(e) => {
                        details.push(format!("{name}: error {e}"));
                        continue;
                    }
                };
                let facts = file["facts"].as_array().unwrap();
                let found = facts
                    .iter()
                    .filter(|fact| {
                        let text = fact[0].as_str().unwrap();
                        let page = fact[1].as_u64().unwrap() as u32;
                        p.chunks
                            .iter()
                            .any(|c| c.page == page && c.text.contains(text))
                    })
                    .count();
                table.row(vec![
                    producer.into(),
                    format!("{} ({} chunks)", p.format.as_str(), p.chunks.len()),
                    p.pages.to_string(),
                    f(p.pages as f64 / secs, 1),
                    "—".into(),
                    "—".into(),
                    "—".into(),
                    format!("{found}/{}", facts.len()),
                ]);
            }
            other => panic!("unknown kind {other}"),
        }
    }
    println!(
        "### Producer corpus (`cargo bench --bench corpus`, {} known pages per producer)\n",
        manifest["pages"]
    );
    println!(
        "machine: {} before, {} after; OCR with {threads} onnxruntime threads\n",
        load_before,
        common::machine()
    );
    table.print();
    println!(
        "Text-layer pages ≥ 0.9 similarity: {text_good}/{text_pages} ({} %); producers with \
         every page ≥ 0.9: {producers_ok}.\n",
        f(100.0 * text_good as f64 / text_pages.max(1) as f64, 1)
    );
    for d in details {
        println!("- {d}");
    }
}
