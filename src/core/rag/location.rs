//! Where in its document a passage is, said the way its format counts: `p. 3` for pages,
//! `slide 3` for presentations, `Sheet 住宿标准, rows 2–9` for spreadsheets. Built here
//! once, from the document's format and the chunk's provenance, and used by every surface
//! that cites (the command line's search and ask, the prompt's sources, the API's
//! `location` field, WeCom replies, the web chat).

use serde::Serialize;

use super::lang::Lang;

/// A passage's place in its document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Location {
    /// A page (PDF, image frame; 1 for formats without pages).
    Page { page: u32 },
    /// A slide of a presentation (the chunk's page is the slide number).
    Slide { slide: u32 },
    /// Rows of a spreadsheet's sheet (`rows`: first and last, as the spreadsheet numbers
    /// them; `None` when the chunk holds no numbered row, e.g. a header alone).
    Sheet {
        sheet: String,
        rows: Option<(u32, u32)>,
    },
}

impl Location {
    /// The place of a chunk of a document of `format` (the ingest crate's format name:
    /// `pdf`, `pptx`, `sheet`, …) on `page` under `heading_path`, with text `text`.
    pub fn of(format: &str, page: u32, heading_path: &[String], text: &str) -> Self {
        match format {
            "pptx" => Self::Slide { slide: page },
            "sheet" => {
                let sheet = heading_path
                    .iter()
                    .find_map(|h| h.strip_prefix("Sheet "))
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{page}"));
                // Rows are rendered `row N: header: value | …`, one per line.
                let rows: Vec<u32> = text
                    .lines()
                    .filter_map(|l| l.trim_start().strip_prefix("row "))
                    .filter_map(|l| l.split_once(':'))
                    .filter_map(|(n, _)| n.trim().parse().ok())
                    .collect();
                let rows = match (rows.iter().min(), rows.iter().max()) {
                    (Some(a), Some(b)) => Some((*a, *b)),
                    _ => None,
                };
                Self::Sheet { sheet, rows }
            }
            _ => Self::Page { page },
        }
    }

    /// The label in `lang`: `p. 3` / `第 3 页`, `slide 3` / `第 3 张幻灯片`,
    /// `Sheet 住宿标准, rows 2–9` / `工作表 住宿标准，第 2–9 行`. Empty for page 0 (a
    /// document without page numbers).
    pub fn label(&self, lang: Lang) -> String {
        match (self, lang) {
            (Self::Page { page: 0 }, _) => String::new(),
            (Self::Page { page }, Lang::En) => format!("p. {page}"),
            (Self::Page { page }, Lang::Zh) => format!("第 {page} 页"),
            (Self::Slide { slide }, Lang::En) => format!("slide {slide}"),
            (Self::Slide { slide }, Lang::Zh) => format!("第 {slide} 张幻灯片"),
            (Self::Sheet { sheet, rows }, Lang::En) => match rows {
                Some((a, b)) if a == b => format!("Sheet {sheet}, row {a}"),
                Some((a, b)) => format!("Sheet {sheet}, rows {a}–{b}"),
                None => format!("Sheet {sheet}"),
            },
            (Self::Sheet { sheet, rows }, Lang::Zh) => match rows {
                Some((a, b)) if a == b => format!("工作表 {sheet}，第 {a} 行"),
                Some((a, b)) => format!("工作表 {sheet}，第 {a}–{b} 行"),
                None => format!("工作表 {sheet}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_by_format() {
        let sheet = Location::of(
            "sheet",
            2,
            &["Sheet 住宿标准".to_string()],
            "row 2: 城市类别: 一线城市 | 员工级别: 经理\nrow 9: 城市类别: 二线城市\nrow 5: x: y",
        );
        assert_eq!(sheet.label(Lang::En), "Sheet 住宿标准, rows 2–9");
        assert_eq!(sheet.label(Lang::Zh), "工作表 住宿标准，第 2–9 行");
        let one = Location::of("sheet", 1, &["Sheet S".into()], "row 4: a: b");
        assert_eq!(one.label(Lang::En), "Sheet S, row 4");
        let header_only = Location::of("sheet", 1, &["Sheet S".into()], "a | b");
        assert_eq!(header_only.label(Lang::En), "Sheet S");
        let slide = Location::of("pptx", 3, &["培训".into()], "text");
        assert_eq!(slide.label(Lang::En), "slide 3");
        assert_eq!(slide.label(Lang::Zh), "第 3 张幻灯片");
        let page = Location::of("pdf", 7, &[], "row 2: not a sheet");
        assert_eq!(page.label(Lang::En), "p. 7");
        assert_eq!(page.label(Lang::Zh), "第 7 页");
        assert_eq!(Location::of("txt", 0, &[], "").label(Lang::En), "");
    }
}
