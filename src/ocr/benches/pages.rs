//! Pages per second and CER on A4 pages assembled from the rendered fixtures (three copies of
//! the 150-dpi page crop stacked into 1240×1754 px; the 200-dpi page is the same scaled by
//! 4/3). `cargo bench -p zhiku-ocr` (needs scripts/fetch-models.sh). Environment:
//! `OCR_THREADS` (intra-op threads, default 2), `OCR_PAGES` (timed pages, default 5), `OCR_SPIN` (set: let onnxruntime threads spin), `OCR_BATCH` (crops per batch, 6).

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
    let ocr = match PpOcr::load_with(
        &paths,
        OcrOptions {
            intra_threads: threads,
            ..OcrOptions::default()
        },
    ) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: {e}");
            return;
        }
    };
    println!(
        "load {:.2} s, {threads} intra-op threads",
        t.elapsed().as_secs_f64()
    );
    for (name, dpi) in [("clean", 150), ("rotated_blurred", 150), ("clean", 200)] {
        let (page, truth) = a4(name, dpi);
        let lines = ocr.recognize(&page).expect("recognize"); // warm-up
        let text: String = lines.iter().map(|l| l.text.as_str()).collect();
        let t = Instant::now();
        for _ in 0..pages {
            ocr.recognize(&page).expect("recognize");
        }
        let secs = t.elapsed().as_secs_f64();
        let t = Instant::now();
        ocr.detect(&page).expect("detect");
        let det_ms = t.elapsed().as_secs_f64() * 1000.0;
        println!(
            "{name} A4 {dpi} dpi ({}x{}): {} lines, CER {:.2} %, {:.2} pages/s ({:.0} ms/page, detection {det_ms:.0} ms)",
            page.width(),
            page.height(),
            lines.len(),
            cer(&truth, &text) * 100.0,
            pages as f64 / secs,
            secs * 1000.0 / pages as f64
        );
    }
}
