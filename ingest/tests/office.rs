//! Spreadsheets and legacy Office files (fixtures by scripts/make-office-fixtures.py).

use std::path::PathBuf;

use zhiku_ingest::{ExtractError, Format, Options, extract};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .expect("fixture")
}

#[test]
fn xlsx_rows_keep_their_header_and_sheet() {
    let bytes = fixture("standards.xlsx");
    assert_eq!(
        zhiku_ingest::sniff::check_bytes("s.xlsx", &bytes),
        Ok(Format::Sheet)
    );
    let x = extract::extract(&bytes, "s.xlsx").expect("extract");
    assert_eq!(x.format, Format::Sheet);
    assert_eq!(x.pages.len(), 2);
    assert_eq!(x.pages[0].blocks[0].text, "Sheet 住宿标准");
    assert!(
        x.pages[0]
            .blocks
            .iter()
            .any(|b| b.text
                == "row 4: 城市类别: 二线城市 | 员工级别: 经理 | 每晚住宿上限（元）: 650"),
        "{:?}",
        x.pages[0].blocks
    );
    assert_eq!(x.pages[1].blocks[0].text, "Sheet 交通");
    let p = zhiku_ingest::process(&bytes, "s.xlsx", &Options::default(), &|t: &str| {
        t.chars().count()
    })
    .unwrap();
    let c = p.chunks.iter().find(|c| c.text.contains("650")).unwrap();
    assert!(c.text.contains("城市类别: 二线城市"), "{}", c.text);
    assert_eq!(c.page, 1);
}

#[test]
fn legacy_office_files_name_the_conversion() {
    let e = extract::extract(b"\xD0\xCF\x11\xE0junk", "old.doc").unwrap_err();
    assert!(matches!(e, ExtractError::Legacy { .. }));
    assert!(
        e.to_string()
            .contains("soffice --headless --convert-to docx"),
        "{e}"
    );
    let e = extract::extract(b"\xD0\xCF\x11\xE0junk", "old.ppt").unwrap_err();
    assert!(e.to_string().contains("--convert-to pptx"), "{e}");
}

#[test]
fn a_docx_renamed_xlsx_is_refused_by_content() {
    assert!(zhiku_ingest::sniff::check_bytes("a.xlsx", b"%PDF-1.7 hello").is_err());
    assert!(matches!(
        extract::extract(b"PK\x03\x04 not a zip", "a.xlsx"),
        Err(ExtractError::Sheet(_))
    ));
}
