//! Pages per second and CER on A4 pages assembled from the rendered fixtures (three copies of
//! the 150-dpi page crop stacked into 1240×1754 px; the 200-dpi page is the same scaled by
//! 4/3). `cargo bench -p zhiku-ocr` (needs scripts/fetch-models.sh). Environment:
//! `OCR_THREADS` (intra-op threads, default 2), `OCR_PAGES` (timed pages, default 5),
//! `OCR_SPIN` (set: let onnxruntime threads spin), `OCR_BATCH` (crops per batch, 6),
//! `OCR_REC_WORKERS` (recognition sessions side by side, default the crate's),
//! `OCR_PAPER=off` (no paper-to-white levels on the crops).
//!
//! Besides wall-clock pages/s it prints CPU seconds per page (user + system of the whole
//! process, from `/proc/self/stat`), which a shared machine's load disturbs much less, and
//! the load average before and after.

use std::path::PathBuf;
use std::time::Instant;

use image::{RgbImage, imageops};
use zhiku_ocr::{OcrOptions, OcrPaths, PpOcr, cer};

fn a4(name: &str, dpi: u32) -> (RgbImage, String) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let crop = image::open(dir.join(format!("{name}.png")))
        .expect("fixture")
        .to_rgb8();
    let truth = std::fs::read_to_string(dir.join(format!("{name}.txt"))).expect("truth");
    let (w, h) = (1240, 1754);
    let mut page = RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    let mut text = String::new();
    let mut y = 0;
    while y + crop.height() <= h {
        imageops::overlay(&mut page, &crop, 0, y as i64);
        text.push_str(&truth);
        y += crop.height();
    }
    if dpi != 150 {
        let s = dpi as f32 / 150.0;
        let (nw, nh) = ((w as f32 * s) as u32, (h as f32 * s) as u32);
        page = imageops::resize(&page, nw, nh, imageops::FilterType::Triangle);
    }
    (page, text)
}

/// User + system CPU seconds of this process so far (Linux: `/proc/self/stat` fields 14
/// and 15, in clock ticks of 1/100 s).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may hold spaces: count fields after its closing paren.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // `rest` starts at field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let threads = std::env::var("OCR_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let pages: usize = std::env::var("OCR_PAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let paths = OcrPaths {
        models_dir: root.join("ppocrv5"),
        onnxruntime: root.join("onnxruntime/libonnxruntime.so.1.31.1"),
    };
    let t = Instant::now();
    let mut opts = OcrOptions {
        intra_threads: threads,
        allow_spinning: std::env::var_os("OCR_SPIN").is_some(),
        ..OcrOptions::default()
    };
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    if let Some(b) = env("OCR_BATCH") {
        opts.batch = b.max(1);
    }
    if let Some(w) = env("OCR_REC_WORKERS") {
        opts.rec_workers = w.max(1);
    }
    if std::env::var("OCR_PAPER").is_ok_and(|v| v == "off") {
        opts.paper_to_white = false;
    }
    let batch = opts.batch;
    let workers = match opts.rec_workers {
        0 => "one single-threaded recognition session per thread".to_string(),
        n => format!("{n} recognition session(s)"),
    };
    let ocr = match PpOcr::load_with(&paths, opts) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: {e}");
            return;
        }
    };
    println!(
        "load {:.2} s, {threads} intra-op threads, batch {batch}, {workers}, load average {}",
        t.elapsed().as_secs_f64(),
        load()
    );
    for (name, dpi) in [("clean", 150), ("rotated_blurred", 150), ("clean", 200)] {
        let (page, truth) = a4(name, dpi);
        let lines = ocr.recognize(&page).expect("recognize"); // warm-up
        let text: String = lines.iter().map(|l| l.text.as_str()).collect();
        let (t, cpu0, load0) = (Instant::now(), cpu_secs(), load());
        for _ in 0..pages {
            ocr.recognize(&page).expect("recognize");
        }
        let secs = t.elapsed().as_secs_f64();
        let cpu = (cpu_secs() - cpu0) / pages as f64;
        let t = Instant::now();
        let c = cpu_secs();
        for _ in 0..pages {
            ocr.detect(&page).expect("detect");
        }
        let det_ms = t.elapsed().as_secs_f64() * 1000.0 / pages as f64;
        let det_cpu = (cpu_secs() - c) / pages as f64;
        println!(
            "{name} A4 {dpi} dpi ({}x{}): {} lines, CER {:.2} %, {:.2} pages/s ({:.0} ms/page, {cpu:.2} CPU s/page, detection {det_ms:.0} ms, {det_cpu:.2} CPU s), load average {load0} → {}",
            page.width(),
            page.height(),
            lines.len(),
            cer(&truth, &text) * 100.0,
            pages as f64 / secs,
            secs * 1000.0 / pages as f64,
            load()
        );
    }
}
