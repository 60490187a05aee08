//! Image documents read end to end through zhiku-ingest and the real PP-OCRv5 engine
//! (zhiku-ocr), joined at ingest's OCR seam as the app joins them: the existing
//! ingest/tests/fixtures/scan-page.jpg (page 1 of chromium-zh.pdf rasterised by pdftoppm) and
//! a two-page TIFF (scripts/make-ocr-fixtures.py). Here, not in ingest/tests, because ingest
//! and zhiku-ocr are both layer 0 and may not depend on each other (tests/layers.rs). Needs
//! the models and onnxruntime from scripts/fetch-models.sh: skipped with a message without
//! them, a failure when `CI` is set.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use zhiku_ingest::{ExtractError, Format, Ocr, OcrEngine, OcrError, OcrLine, OcrOptions, Options};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("ingest/tests/fixtures")
            .join(name),
    )
    .expect("fixture")
}

/// zhiku-ocr behind ingest's seam (what the app does).
struct PpOcrSeam(zhiku_ocr::PpOcr);

impl Ocr for PpOcrSeam {
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

fn engine() -> Option<Arc<dyn Ocr>> {
    static ENGINE: OnceLock<Result<Arc<dyn Ocr>, String>> = OnceLock::new();
    let r = ENGINE.get_or_init(|| {
        let root = std::env::var_os("ZHIKU_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"));
        let paths = zhiku_ocr::OcrPaths {
            models_dir: root.join("ppocrv5"),
            onnxruntime: std::env::var_os("ORT_DYLIB_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("onnxruntime/libonnxruntime.so.1.31.1")),
        };
        zhiku_ocr::PpOcr::load_with(
            &paths,
            zhiku_ocr::OcrOptions {
                intra_threads: 2,
                ..Default::default()
            },
        )
        .map(|e| Arc::new(PpOcrSeam(e)) as Arc<dyn Ocr>)
        .map_err(|e| e.to_string())
    });
    match r {
        Ok(e) => Some(e.clone()),
        Err(msg) if std::env::var_os("CI").is_some() => panic!("OCR models needed under CI: {msg}"),
        Err(msg) => {
            eprintln!("skipped: {msg}");
            None
        }
    }
}

fn options(engine: Arc<dyn Ocr>) -> Options {
    Options {
        ocr: OcrOptions {
            engine: OcrEngine(Some(engine)),
            ..OcrOptions::default()
        },
        ..Options::default()
    }
}

fn count(t: &str) -> usize {
    t.chars().count()
}

fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

#[test]
fn a_two_page_tiff_is_two_ocr_pages_grey_and_bilevel() {
    let Some(engine) = engine() else { return };
    let bytes = fixture("scan-2pages.tif");
    assert_eq!(
        zhiku_ingest::sniff::check_bytes("scan.tif", &bytes),
        Ok(Format::Image)
    );
    let p = zhiku_ingest::process(&bytes, "scan.tif", &options(engine), &count).expect("process");
    assert_eq!(p.format, Format::Image);
    assert_eq!((p.pages, p.text_pages), (2, 0));
    assert_eq!(p.ocr_pages, vec![1, 2]);
    assert!(p.failed_pages.is_empty(), "{:?}", p.warnings);
    let truth = String::from_utf8(fixture("scan-2pages.txt")).unwrap();
    for (i, page_truth) in truth.split('\u{c}').enumerate() {
        let number = i as u32 + 1;
        let got: String = p
            .chunks
            .iter()
            .filter(|c| c.page == number)
            .map(|c| c.text.as_str())
            .collect();
        let c = zhiku_ocr::cer(&squeeze(page_truth), &squeeze(&got));
        eprintln!("page {number}: CER {:.2} %: {got}", c * 100.0);
        assert!(c <= 0.03, "page {number}: CER {c}: {got}");
    }
    let c = p
        .chunks
        .iter()
        .find(|c| c.text.contains("财务总监"))
        .unwrap();
    assert_eq!(c.page, 2);
}

#[test]
fn the_scanned_jpeg_is_read_by_ocr() {
    let Some(engine) = engine() else { return };
    let bytes = fixture("scan-page.jpg");
    let p = zhiku_ingest::process(&bytes, "扫描件.jpg", &options(engine), &count).expect("process");
    assert_eq!((p.pages, p.ocr_pages.clone()), (1, vec![1]));
    let got: String = p.chunks.iter().map(|c| c.text.as_str()).collect();
    // The reference: pdftotext of the page this JPEG was rendered from (72 dpi, ~10 px
    // text: small for OCR, so the bound is looser than for 150-dpi scans).
    let truth = String::from_utf8(fixture("chromium-zh.txt")).unwrap();
    let page1 = truth.split('\u{c}').next().unwrap();
    let c = zhiku_ocr::cer(&squeeze(page1), &squeeze(&got));
    eprintln!("scan-page.jpg: CER {:.2} %\n{got}", c * 100.0);
    assert!(c <= 0.10, "CER {c}: {got}");
    assert!(squeeze(&got).contains("二线城市经理650"), "{got}");
}

#[test]
fn without_an_engine_an_image_is_a_clear_per_file_error() {
    let e = zhiku_ingest::process(
        &fixture("scan-page.jpg"),
        "scan.jpg",
        &Options::default(),
        &count,
    )
    .unwrap_err();
    assert!(matches!(e, ExtractError::NoOcr(_)), "{e}");
    assert!(e.to_string().contains("scripts/fetch-models.sh"), "{e}");
}

#[test]
fn image_names_are_checked_by_content() {
    let jpeg = fixture("scan-page.jpg");
    // Content sniffing accepts any image signature for an image name: the decoder picks
    // the codec from the content, so a JPEG named .png still reads.
    assert_eq!(
        zhiku_ingest::sniff::check_bytes("x.png", &jpeg),
        Ok(Format::Image)
    );
    let e = zhiku_ingest::sniff::check_bytes("x.png", b"just text, not an image").unwrap_err();
    assert!(e.to_string().contains("not an image"), "{e}");
}
