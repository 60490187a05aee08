//! `[ingest] file_timeout_secs`, in a test process of its own: the abandoned extraction
//! keeps running (it holds PDFium's process-wide lock while it "OCRs"), which would stall the
//! PDFs of any other test in the same process.

mod common;

use std::path::Path;

use zhiku_core::index::{self, IngestOptions};
use zhiku_core::progress::Silent;

/// An OCR engine that never finishes a page (a pathological file's stand-in).
struct HangingOcr;

impl zhiku_ingest::Ocr for HangingOcr {
    fn recognize(
        &self,
        _: &image::RgbImage,
    ) -> Result<Vec<zhiku_ingest::OcrLine>, zhiku_ingest::OcrError> {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        Ok(Vec::new())
    }
}

/// `[ingest] file_timeout_secs`: a file whose extraction hangs (a scan whose OCR never
/// returns) fails alone with a clear message once the limit has passed, and the next file
/// is ingested.
#[test]
fn a_hanging_extraction_fails_its_file_alone() {
    let Some(m) = common::document_models() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("ingest/tests/fixtures");
    std::fs::copy(fixtures.join("scan-zh.pdf"), docs.join("a-scan.pdf")).unwrap();
    std::fs::write(docs.join("b.txt"), "报销须在返回后十个工作日内提交。").unwrap();
    let mut config = common::config(&dir.path().join("data"));
    config.ingest.file_timeout_secs = 2;
    // The in-process mode (the stand-in OCR engine lives in this process).
    config.ingest.isolation = zhiku_core::config::Isolation::Thread;
    let mut options = config.ingest.options();
    options.pdf.pdfium_library = Some(m.pdfium);
    options.ocr.engine = zhiku_ingest::OcrEngine(Some(std::sync::Arc::new(HangingOcr)));
    let e = zhiku_core::engine::Engine::open(config)
        .unwrap()
        .with_embedder(common::HashEmbedder::new())
        .with_ingest_options(options);
    let started = std::time::Instant::now();
    let r = index::ingest_paths(&e, "kb", &[docs], &IngestOptions::default(), &Silent).unwrap();
    assert!(started.elapsed().as_secs() < 60, "{:?}", started.elapsed());
    assert_eq!((r.counts.added, r.counts.failed), (1, 1), "{r:?}");
    let (source, why) = &r.failures[0];
    assert!(source.ends_with("a-scan.pdf"), "{source}");
    assert!(
        why.contains("longer than 2 s") && why.contains("file_timeout_secs"),
        "{why}"
    );
    let kb = e.meta.require_kb("kb").unwrap();
    let hits = zhiku_core::retrieve::search(&e, "报销期限", &[kb], 3)
        .unwrap()
        .0;
    assert!(hits[0].document.ends_with("b.txt"), "{hits:?}");
}
