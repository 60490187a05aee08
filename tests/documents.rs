//! Real documents through the real binary: a Chinese PDF printed by Chromium (Type 3 fonts,
//! read by PDFium) and the same pages scanned (image only, read by PP-OCRv5 in the default
//! build), each ingested beside the sample documents. A question whose answer is on page N
//! (where `pdftotext` finds it) is answered by a top-3 hit on page N of that document, and
//! the ingest report tells how every page was read. Needs e5, PP-OCRv5, onnxruntime and
//! PDFium from `scripts/fetch-models.sh` (a skip without them, a failure under `CI`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::DocumentModels;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ingest/tests/fixtures")
}

/// `zhiku` with the document models at absolute paths (the binary runs in a temp folder).
fn zhiku(data: &Path, e5: &Path, m: &DocumentModels, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_zhiku"))
        .args(args)
        .env("ZHIKU_DATA_DIR", data)
        .env("ZHIKU_EMBED__MODEL", e5)
        .env("ZHIKU_EMBED__ONNXRUNTIME", &m.onnxruntime)
        .env("ZHIKU_INGEST__OCR__MODELS", &m.ppocrv5)
        .env("ZHIKU_INGEST__PDF__PDFIUM_LIBRARY", &m.pdfium)
        .env("ZHIKU_GENERATE__BACKEND", "none")
        .env_remove("ZHIKU_CONFIG")
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("PDFIUM_DYNAMIC_LIB_PATH")
        .current_dir(data.parent().unwrap())
        .output()
        .expect("run zhiku")
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The samples plus `file`, in a folder of their own.
fn corpus(dir: &Path, name: &str, file: &str) -> PathBuf {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    for e in std::fs::read_dir(common::samples()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, folder.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::copy(fixtures().join(file), folder.join(file)).unwrap();
    folder
}

/// The 1-based page of the Chromium PDF where pdftotext (its output is in chromium-zh.txt,
/// pages separated by form feeds) finds `needle`.
fn pdftotext_page(needle: &str) -> u64 {
    let text = std::fs::read_to_string(fixtures().join("chromium-zh.txt")).unwrap();
    let i = text
        .split('\u{c}')
        .position(|page| page.replace(['\n', ' '], "").contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in chromium-zh.txt"));
    i as u64 + 1
}

/// The ingest JSON's page record of the document whose source ends in `file`.
fn pages_of<'a>(report: &'a serde_json::Value, file: &str) -> &'a serde_json::Value {
    report[0]["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .find(|d| d["source"].as_str().unwrap().ends_with(file))
        .unwrap_or_else(|| panic!("{file} not in {report}"))
}

/// A top-3 hit on page `page` of the document ending in `file`, for `question`.
fn assert_top3_on_page(
    data: &Path,
    e5: &Path,
    m: &DocumentModels,
    kb: &str,
    question: &str,
    file: &str,
    page: u64,
) {
    let out = zhiku(
        data,
        e5,
        m,
        &["search", question, "--kb", kb, "--top", "3", "--json"],
    );
    let hits: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let hits = hits.as_array().unwrap();
    assert!(
        hits.iter()
            .any(|h| h["document"].as_str().unwrap().ends_with(file) && h["page"] == page),
        "{kb}: {question} → no top-3 hit on page {page} of {file}: {hits:#?}"
    );
}

#[test]
fn chromium_pdf_and_its_scan_are_read_and_found_on_the_right_page() {
    let Some(e5) = common::e5_model() else { return };
    let Some(m) = common::document_models() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let question = "差旅费用管理办法由哪个部门负责解释？";
    let page = pdftotext_page("由财务部负责解释");
    assert_eq!(page, 2, "the fixture's answer is on its second page");

    // `zhiku config` says OCR is there.
    let config = ok(&zhiku(&data, &e5, &m, &["config"]));
    assert!(config.contains("# OCR: available"), "{config}");

    // The Chromium PDF: every page from its text layer, said in the summary.
    let text = corpus(dir.path(), "text", "chromium-zh.pdf");
    let out = ok(&zhiku(
        &data,
        &e5,
        &m,
        &["ingest", text.to_str().unwrap(), "--kb", "text"],
    ));
    assert!(out.contains("6 added"), "{out}");
    assert!(out.contains("0 by OCR, 0 failed"), "{out}");
    assert!(!out.contains("pages of"), "no document needed OCR: {out}");
    assert_top3_on_page(&data, &e5, &m, "text", question, "chromium-zh.pdf", page);

    // The scan: both pages by OCR, said in the JSON report.
    let scan = corpus(dir.path(), "scan", "scan-zh.pdf");
    let out = ok(&zhiku(
        &data,
        &e5,
        &m,
        &["ingest", scan.to_str().unwrap(), "--kb", "scan", "--json"],
    ));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report[0]["failed"], 0, "{report}");
    let d = pages_of(&report, "scan-zh.pdf");
    assert_eq!(d["pages"], 2, "{d}");
    assert_eq!(d["text_pages"], 0, "{d}");
    assert_eq!(d["ocr_pages"], serde_json::json!([1, 2]), "{d}");
    assert_eq!(d["failed_pages"], serde_json::json!([]), "{d}");
    let sample = pages_of(&report, "差旅费报销管理办法.pdf");
    assert_eq!(sample["ocr_pages"], serde_json::json!([]), "{sample}");
    assert!(report[0].get("ocr_unavailable").is_none(), "{report}");
    assert_top3_on_page(&data, &e5, &m, "scan", question, "scan-zh.pdf", page);
    // The OCR text holds the table's figures (a row read from the image).
    let out = zhiku(
        &data,
        &e5,
        &m,
        &[
            "search",
            "二线城市经理每晚住宿上限",
            "--kb",
            "scan",
            "--top",
            "3",
            "--json",
        ],
    );
    let hits: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert!(
        hits.as_array().unwrap().iter().any(|h| {
            h["document"].as_str().unwrap().ends_with("scan-zh.pdf")
                && h["page"] == 1
                && h["text"].as_str().unwrap().contains("650")
        }),
        "{hits:#}"
    );
}

/// Without the OCR models (mode auto), the scan's pages are failed with their numbers and
/// the report says, once, how to get the models; mode `always` is an error.
#[test]
fn without_ocr_models_scanned_pages_fail_with_their_numbers() {
    let Some(e5) = common::e5_model() else { return };
    let Some(mut m) = common::document_models() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    m.ppocrv5 = dir.path().join("no-ppocrv5");
    let mixed = dir.path().join("mixed-zh.pdf");
    std::fs::copy(fixtures().join("mixed-zh.pdf"), &mixed).unwrap();
    let config = ok(&zhiku(&data, &e5, &m, &["config"]));
    assert!(config.contains("# OCR: not available"), "{config}");
    assert!(config.contains("scripts/fetch-models.sh"), "{config}");

    let out = zhiku(
        &data,
        &e5,
        &m,
        &["ingest", mixed.to_str().unwrap(), "--kb", "kb", "--json"],
    );
    let report: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let d = pages_of(&report, "mixed-zh.pdf");
    assert_eq!(d["text_pages"], 1, "{d}");
    assert_eq!(d["failed_pages"], serde_json::json!([2]), "{d}");
    let why = report[0]["ocr_unavailable"].as_str().expect("said why");
    assert!(why.contains("scripts/fetch-models.sh"), "{why}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("OCR is not available").count(),
        1,
        "one warning: {stderr}"
    );
    // The summary says the same.
    let out = zhiku(
        &data,
        &e5,
        &m,
        &["ingest", mixed.to_str().unwrap(), "--kb", "kb2"],
    );
    let summary = ok(&out);
    assert!(
        summary.contains("pages: 1 from the text layer, 0 by OCR, 1 failed"),
        "{summary}"
    );
    assert!(
        summary.contains("1 text, 0 OCR, 1 failed (page 2) of 2"),
        "{summary}"
    );
    assert!(
        summary.contains("warning: ") && summary.contains("page 2"),
        "{summary}"
    );
    assert!(summary.contains("OCR did not run: "), "{summary}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zhiku"))
        .args(["ingest", mixed.to_str().unwrap(), "--kb", "always"])
        .env("ZHIKU_DATA_DIR", &data)
        .env("ZHIKU_EMBED__MODEL", &e5)
        .env("ZHIKU_INGEST__OCR__MODELS", &m.ppocrv5)
        .env("ZHIKU_INGEST__OCR__MODE", "always")
        .env("ZHIKU_INGEST__PDF__PDFIUM_LIBRARY", &m.pdfium)
        .env_remove("ZHIKU_CONFIG")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mode = \"always\"") && stderr.contains("fetch-models.sh"),
        "{stderr}"
    );
}
