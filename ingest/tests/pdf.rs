//! PDF tests on real producers' files (fixtures made by scripts/make-pdf-fixtures.sh).

use std::path::PathBuf;

use zhiku_ingest::extract::garble::{self, Quality};
use zhiku_ingest::{PdfEngine, PdfOptions};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .expect("fixture")
}

/// libpdfium.so for tests: `$PDFIUM_DYNAMIC_LIB_PATH`, else `<repo>/models/pdfium/`. Skips
/// (None, with the reason printed) when missing; panics when `CI` is set, since CI fetches
/// it with scripts/fetch-models.sh.
fn pdfium_or_skip() -> Option<PathBuf> {
    let path = std::env::var_os("PDFIUM_DYNAMIC_LIB_PATH")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/pdfium/libpdfium.so")
        });
    if path.is_file() {
        return Some(path);
    }
    let why = format!(
        "{} missing: run scripts/fetch-models.sh (or set PDFIUM_DYNAMIC_LIB_PATH)",
        path.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    None
}

fn ngrams(s: &str) -> std::collections::HashMap<[char; 3], usize> {
    let c: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    let mut m = std::collections::HashMap::new();
    for w in c.windows(3) {
        *m.entry([w[0], w[1], w[2]]).or_insert(0) += 1;
    }
    m
}

/// Character 3-gram similarity (Dice over multisets), whitespace removed.
fn similarity(a: &str, b: &str) -> f64 {
    let (x, y) = (ngrams(a), ngrams(b));
    let common: usize = x
        .iter()
        .map(|(k, n)| (*n).min(*y.get(k).unwrap_or(&0)))
        .sum();
    let total: usize = x.values().sum::<usize>() + y.values().sum::<usize>();
    if total == 0 {
        0.0
    } else {
        2.0 * common as f64 / total as f64
    }
}

fn text_of(x: &zhiku_ingest::Extracted) -> String {
    x.pages
        .iter()
        .flat_map(|p| p.blocks.iter().map(|b| b.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn chromium_pdf_through_pdfium_matches_pdftotext() {
    let Some(lib) = pdfium_or_skip() else { return };
    let opts = PdfOptions {
        pdfium_library: Some(lib),
        ..Default::default()
    };
    let x = zhiku_ingest::extract::extract_with(
        &fixture("chromium-zh.pdf"),
        "a.pdf",
        &opts,
        &Default::default(),
    )
    .expect("extract");
    let reference = String::from_utf8(fixture("chromium-zh.txt")).unwrap();
    let got = text_of(&x);
    let sim = similarity(&got, &reference);
    assert!(sim >= 0.9, "similarity {sim:.3}\n{got}");
    assert!(x.failed_pages.is_empty(), "{:?}", x.warnings);
    assert_eq!(x.pages.len(), 2);
    // A table row's cells stay on one line.
    assert!(
        got.lines()
            .any(|l| l.contains("二线城市") && l.contains("经理") && l.contains("650")),
        "{got}"
    );
}

#[test]
fn old_path_mojibake_on_chromium_pdf_is_rejected() {
    // lopdf on Chromium's Type 3 fonts: the mojibake the old check let through.
    let bytes = fixture("chromium-zh.pdf");
    let doc = lopdf::Document::load_mem(&bytes).unwrap();
    for page in [1, 2] {
        let moji = doc.extract_text(&[page]).unwrap();
        assert!(!moji.contains("差旅"), "{moji}");
        assert!(
            matches!(garble::quality(&moji, None), Quality::Garbled(_)),
            "page {page} passed: {moji} {:?}",
            garble::score(&moji, None)
        );
    }
    // So the fallback path now moves on to pdf_oxide, which reads these fonts.
    let opts = PdfOptions {
        engine: PdfEngine::Legacy,
        ..Default::default()
    };
    let x = zhiku_ingest::extract::extract_with(&bytes, "a.pdf", &opts, &Default::default())
        .expect("extract");
    let reference = String::from_utf8(fixture("chromium-zh.txt")).unwrap();
    let sim = similarity(&text_of(&x), &reference);
    assert!(sim >= 0.9, "similarity {sim:.3}");
}

#[test]
fn garble_check_rejects_type3_mojibake_and_passes_real_text() {
    let moji =
        "y1%'fi595yY2D&jTPˆ”<.r„d… Rł˛ª*Æ.·~œ˙¨TER˛ªª(æRł˜·(˙z˙¨ˇ50æ˙h*{Æ9·ł’mﬁTENˇı(IﬂM\\˙†$i;^{";
    assert!(matches!(garble::quality(moji, None), Quality::Garbled(_)));
    let real = [
        "第一条 为规范公司员工出差管理，合理控制差旅费用，根据国家有关规定，制定本办法。",
        "Annual leave requests are filed in the HR system before travel, at least 5 days ahead.",
        "年假 Annual leave：工作满 1 年不满 10 年的，年休假 5 天（“带薪”）…",
        "城市类别 员工级别 每晚住宿上限（元）\n一线城市 经理 800\n二线城市 经理 650\n2026-01-01 12.5% 3,400.00 ¥1,200",
        "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * 2).collect();\n    println!(\"{:?}\", v);\n}",
    ];
    for t in real {
        assert_eq!(
            garble::quality(t, None),
            Quality::Good,
            "{t}: {:?}",
            garble::score(t, None)
        );
    }
    // The tokenizer's known-piece share, when the app supplies it, is a further gate.
    let none_known: zhiku_ingest::KnownPieces = std::sync::Arc::new(|_| 0.1);
    assert!(matches!(
        garble::quality(real[0], Some(&none_known)),
        Quality::Garbled(_)
    ));
}

#[test]
fn ghostscript_pdf_through_pdfium_matches_pdftotext() {
    let Some(lib) = pdfium_or_skip() else { return };
    let opts = PdfOptions {
        pdfium_library: Some(lib),
        ..Default::default()
    };
    let x = zhiku_ingest::extract::extract_with(
        &fixture("gs-en.pdf"),
        "a.pdf",
        &opts,
        &Default::default(),
    )
    .expect("extract");
    let reference = String::from_utf8(fixture("gs-en.txt")).unwrap();
    let got = text_of(&x);
    let sim = similarity(&got, &reference);
    assert!(sim >= 0.9, "similarity {sim:.3}\n{got}");
    // The row's cells stay together on one line (pdftotext -raw splits them).
    assert!(
        got.lines()
            .any(|l| l.contains("Tier 2") && l.contains("650")),
        "{got}"
    );
}

#[test]
fn scanned_page_without_ocr_is_reported_failed_with_its_number() {
    let Some(lib) = pdfium_or_skip() else { return };
    let options = zhiku_ingest::Options {
        pdf: PdfOptions {
            pdfium_library: Some(lib),
            ..Default::default()
        },
        ..Default::default()
    };
    let p = zhiku_ingest::process(&fixture("mixed-zh.pdf"), "m.pdf", &options, &|t: &str| {
        t.chars().count()
    })
    .expect("process");
    assert_eq!(p.text_pages, 1);
    assert_eq!(p.failed_pages, vec![2]);
    assert_eq!(p.pages, 2);
    assert!(
        p.warnings
            .iter()
            .any(|w| w.starts_with("page 2: no text layer")),
        "{:?}",
        p.warnings
    );
    assert!(p.chunks.iter().all(|c| c.page == 1));
    assert!(p.chunks.iter().any(|c| c.text.contains("出差申请单")));
}

/// A test double: fixed lines, and it records the size of each page image it was given.
struct FixedOcr(std::sync::Mutex<Vec<(u32, u32)>>);

impl zhiku_ingest::Ocr for FixedOcr {
    fn recognize(
        &self,
        page: &image::RgbImage,
    ) -> Result<Vec<zhiku_ingest::OcrLine>, zhiku_ingest::OcrError> {
        self.0.lock().unwrap().push(page.dimensions());
        // The page was really rendered: not a blank buffer.
        assert!(page.pixels().any(|p| p.0[0] < 128), "blank render");
        Ok(vec![
            zhiku_ingest::OcrLine {
                text: "第三条 住宿费用按城市类别和员工级别实行限额标准。".into(),
                bbox: [10.0, 10.0, 900.0, 40.0],
                confidence: 0.97,
            },
            zhiku_ingest::OcrLine {
                text: "二线城市 经理 650".into(),
                bbox: [10.0, 50.0, 400.0, 80.0],
                confidence: 0.41,
            },
        ])
    }
}

fn with_ocr(
    mode: zhiku_ingest::OcrMode,
) -> Option<(zhiku_ingest::Options, std::sync::Arc<FixedOcr>)> {
    let lib = pdfium_or_skip()?;
    let ocr = std::sync::Arc::new(FixedOcr(Default::default()));
    let options = zhiku_ingest::Options {
        pdf: PdfOptions {
            pdfium_library: Some(lib),
            ..Default::default()
        },
        ocr: zhiku_ingest::OcrOptions {
            mode,
            engine: zhiku_ingest::OcrEngine(Some(ocr.clone())),
            ..Default::default()
        },
        ..Default::default()
    };
    Some((options, ocr))
}

#[test]
fn auto_ocr_reads_only_the_scanned_page_at_200_dpi_and_marks_low_confidence() {
    let Some((options, ocr)) = with_ocr(zhiku_ingest::OcrMode::Auto) else {
        return;
    };
    let p = zhiku_ingest::process(&fixture("mixed-zh.pdf"), "m.pdf", &options, &|t: &str| {
        t.chars().count()
    })
    .expect("process");
    assert_eq!(
        (p.text_pages, p.ocr_pages.clone(), p.failed_pages.clone()),
        (1, vec![2], vec![])
    );
    // US Letter at 200 dpi.
    assert_eq!(*ocr.0.lock().unwrap(), vec![(1700, 2200)]);
    assert!(
        p.chunks
            .iter()
            .any(|c| c.page == 2 && c.text.contains("650"))
    );
    assert!(
        p.chunks
            .iter()
            .any(|c| c.page == 1 && c.text.contains("出差申请单"))
    );
    assert!(
        p.warnings
            .iter()
            .any(|w| w.starts_with("page 2: 1 of 2 OCR lines below confidence")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn always_ocr_never_indexes_the_text_layer_too() {
    let Some((options, ocr)) = with_ocr(zhiku_ingest::OcrMode::Always) else {
        return;
    };
    let p = zhiku_ingest::process(&fixture("mixed-zh.pdf"), "m.pdf", &options, &|t: &str| {
        t.chars().count()
    })
    .expect("process");
    assert_eq!((p.text_pages, p.ocr_pages.clone()), (0, vec![1, 2]));
    assert_eq!(ocr.0.lock().unwrap().len(), 2);
    assert!(!p.chunks.iter().any(|c| c.text.contains("出差申请单")));
}
