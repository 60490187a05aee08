//! The pipeline on the sample documents the repo ships (tests/samples, made by
//! scripts/make-samples.py): a Chinese PDF with an embedded CJK font subset, an English PDF,
//! a GBK text file, UTF-8 text and Markdown.

use std::path::PathBuf;

use zhiku_ingest::{Format, Options, chunk::page_text, extract};

fn sample(name: &str) -> (Vec<u8>, PathBuf) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/samples")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (bytes, path)
}

/// One "token" per character: enough for chunk sizes in these tests.
fn chars(text: &str) -> usize {
    text.chars().count()
}

#[test]
fn chinese_pdf_with_cjk_font_extracts_every_page_without_running_headers() {
    let (bytes, _) = sample("差旅费报销管理办法.pdf");
    let extracted = extract::extract(&bytes, "差旅费报销管理办法.pdf").unwrap();
    assert_eq!(extracted.format, Format::Pdf);
    assert!(
        extracted.pages.len() >= 2,
        "{} pages",
        extracted.pages.len()
    );
    // Every page read (a missing libpdfium.so only adds the fallback warning).
    assert!(
        extracted.failed_pages.is_empty(),
        "{:?}",
        extracted.warnings
    );
    assert!(
        extracted.warnings.iter().all(|w| !w.starts_with("page ")),
        "{:?}",
        extracted.warnings
    );
    let all: String = extracted.pages.iter().map(page_text).collect();
    for needle in [
        "差旅费",
        "住宿费实行限额标准",
        "每人每晚不超过600元",
        "伙食补助费",
    ] {
        assert!(all.contains(needle), "missing {needle}");
    }

    let processed = zhiku_ingest::process(
        &bytes,
        "差旅费报销管理办法.pdf",
        &Options::default(),
        &chars,
    )
    .unwrap();
    assert_eq!(processed.pages, extracted.pages.len());
    let text: String = processed.chunks.iter().map(|c| c.text.as_str()).collect();
    // The running header and the page-number footer are on every page: dropped.
    assert!(!text.contains("内部制度文件"), "header kept");
    assert!(!text.contains("共 "), "footer kept");
    assert!(text.contains("每人每晚不超过600元"));
    // Chunks cover more than the first page and point into it.
    assert!(processed.chunks.iter().any(|c| c.page > 1));
    assert!(processed.chunks.iter().all(|c| c.char_end > c.char_start));
}

#[test]
fn english_pdf_keeps_words_and_sentences() {
    let (bytes, _) = sample("information-security-policy.pdf");
    let p = zhiku_ingest::process(
        &bytes,
        "information-security-policy.pdf",
        &Options::default(),
        &chars,
    )
    .unwrap();
    assert_eq!(p.format, Format::Pdf);
    let text: String = p.chunks.iter().map(|c| c.text.as_str()).collect();
    assert!(text.contains("Passwords"), "{text}");
    assert!(
        !text.contains("Huayuan Technology - Internal"),
        "header kept"
    );
}

#[test]
fn gbk_text_file_is_decoded() {
    let (bytes, _) = sample("IT服务台常见问题.txt");
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "the sample must stay GBK"
    );
    let p =
        zhiku_ingest::process(&bytes, "IT服务台常见问题.txt", &Options::default(), &chars).unwrap();
    let text: String = p.chunks.iter().map(|c| c.text.as_str()).collect();
    assert!(text.contains("忘记邮箱密码怎么办"), "{text}");
}

#[test]
fn markdown_sample_has_heading_paths() {
    let (bytes, _) = sample("remote-work-guidelines.md");
    let p = zhiku_ingest::process(
        &bytes,
        "remote-work-guidelines.md",
        &Options::default(),
        &chars,
    )
    .unwrap();
    assert_eq!(p.title.as_deref(), Some("Remote Work Guidelines"));
    assert!(
        p.chunks
            .iter()
            .any(|c| c.heading_path.last().is_some_and(|h| h == "Eligibility")),
        "{:?}",
        p.chunks.iter().map(|c| &c.heading_path).collect::<Vec<_>>()
    );
}
