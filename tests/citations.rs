//! Citation labels by format, end to end through the `zhiku` binary: a spreadsheet made by
//! openpyxl and a deck made by python-pptx (ingest/tests/fixtures, from
//! scripts/make-office-fixtures.py) are ingested, and `zhiku search` and `zhiku ask` (text
//! and JSON) cite "Sheet 住宿标准, rows 2–9" and "slide 2", never "p. 2".

mod common;

use std::path::Path;
use std::process::Output;

fn zhiku(data: &Path, e5: &Path, args: &[&str]) -> Output {
    common::zhiku(data, e5, args)
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

#[test]
fn sheets_and_slides_are_cited_by_sheet_rows_and_slide() {
    let Some(e5) = common::e5_model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("ingest/tests/fixtures");
    for f in ["standards.xlsx", "training.pptx"] {
        std::fs::copy(fixtures.join(f), docs.join(f)).unwrap();
    }
    let out = ok(&zhiku(
        &data,
        &e5,
        &["ingest", docs.to_str().unwrap(), "--kb", "office"],
    ));
    assert!(out.contains("2 added"), "{out}");

    // The sheet: its rows, by the numbers the spreadsheet shows.
    let q = "二线城市经理每晚住宿上限是多少元";
    let hits: serde_json::Value = serde_json::from_str(&ok(&zhiku(
        &data,
        &e5,
        &["search", q, "--kb", "office", "--json"],
    )))
    .unwrap();
    let sheet = hits
        .as_array()
        .unwrap()
        .iter()
        .take(3)
        .find(|h| h["text"].as_str().unwrap_or_default().contains("650"))
        .unwrap_or_else(|| panic!("the 650 row in the top 3: {hits}"));
    let label = sheet["location"].as_str().unwrap();
    assert!(label.starts_with("Sheet 住宿标准, row"), "{sheet}");
    let rows = |l: &str| -> (u32, u32) {
        let r = l.rsplit(' ').next().unwrap();
        match r.split_once('–') {
            Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
            None => (r.parse().unwrap(), r.parse().unwrap()),
        }
    };
    let (a, b) = rows(label);
    assert!(a <= 4 && 4 <= b, "the 650 row is row 4: {label}");
    assert_eq!(sheet["place"]["kind"], "sheet", "{sheet}");
    let text = ok(&zhiku(&data, &e5, &["search", q, "--kb", "office"]));
    assert!(text.contains(&format!("({label})")), "{text}");
    assert!(!text.contains("(p. "), "{text}");

    let answer: serde_json::Value = serde_json::from_str(&ok(&zhiku(
        &data,
        &e5,
        &["ask", q, "--kb", "office", "--json"],
    )))
    .unwrap();
    let cited = answer["citations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["document"].as_str().unwrap().ends_with("standards.xlsx"))
        .unwrap_or_else(|| panic!("the sheet is cited: {answer}"));
    assert!(
        cited["location"]
            .as_str()
            .unwrap()
            .starts_with("Sheet 住宿标准, row"),
        "{cited}"
    );
    let text = ok(&zhiku(&data, &e5, &["ask", q, "--kb", "office"]));
    assert!(text.contains("(Sheet 住宿标准, row"), "{text}");

    // The deck: the slide the fact is on.
    let q = "上班时间是几点到几点";
    let answer: serde_json::Value = serde_json::from_str(&ok(&zhiku(
        &data,
        &e5,
        &["ask", q, "--kb", "office", "--json"],
    )))
    .unwrap();
    let cited = answer["citations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["text"].as_str().unwrap().contains("9:00"))
        .unwrap_or_else(|| panic!("the working hours are cited: {answer}"));
    assert_eq!(cited["location"], "slide 2", "{cited}");
    assert_eq!(cited["page"], 2, "{cited}");
    let text = ok(&zhiku(&data, &e5, &["ask", q, "--kb", "office"]));
    assert!(text.contains("(slide 2)"), "{text}");
    assert!(!text.contains("(p. 2)"), "{text}");
}
