//! The OCR seam: ingest decides which pages need OCR and renders them; an engine outside
//! this crate (the app adapts `zhiku-ocr`'s PP-OCRv5 to [`Ocr`]) reads them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One recognised line, in reading order.
#[derive(Debug, Clone, PartialEq)]
pub struct OcrLine {
    pub text: String,
    /// x0, y0, x1, y1 in image pixels (origin top-left).
    pub bbox: [f32; 4],
    /// 0–1.
    pub confidence: f32,
}

#[derive(Debug, thiserror::Error)]
#[error("OCR failed: {0}")]
pub struct OcrError(pub String);

/// An OCR engine. Lines come back in reading order (columns, top to bottom).
pub trait Ocr: Send + Sync {
    fn recognize(&self, page: &image::RgbImage) -> Result<Vec<OcrLine>, OcrError>;
}

/// When pages are OCRed (`[ingest.ocr] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OcrMode {
    /// Pages with no text layer or a failed garble check.
    #[default]
    Auto,
    /// Every page (its text layer is then not indexed).
    Always,
    Off,
}

/// An optional engine, printable and defaulting to none.
#[derive(Clone, Default)]
pub struct OcrEngine(pub Option<Arc<dyn Ocr>>);

impl std::fmt::Debug for OcrEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "OcrEngine(Some)"
        } else {
            "OcrEngine(None)"
        })
    }
}

/// `[ingest.ocr]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OcrOptions {
    pub mode: OcrMode,
    /// Render resolution for PDF pages. 200 dpi puts 10.5 pt body text at ~29 px high and
    /// 8 pt footnotes at ~22 px (PP-OCR wants ≥ ~20 px).
    pub dpi: u32,
    /// Lines below this confidence are kept and counted in a warning, never dropped.
    pub min_confidence: f32,
    /// Set by the app; without one, pages needing OCR are reported as failed.
    #[serde(skip)]
    pub engine: OcrEngine,
    /// Told as each page of a paged document (PDF pages, image frames) starts; set by the
    /// app for its progress bar.
    #[serde(skip)]
    pub progress: PageProgress,
}

/// A watcher of per-page work: `(page, pages, by OCR)` as each page starts (`pages` is 0
/// when not known yet, as for a TIFF's frames).
pub type PageWatcher = Arc<dyn Fn(u32, u32, bool) + Send + Sync>;

/// An optional [`PageWatcher`], printable and defaulting to none.
#[derive(Clone, Default)]
pub struct PageProgress(pub Option<PageWatcher>);

impl PageProgress {
    pub fn page(&self, page: u32, pages: u32, ocr: bool) {
        if let Some(f) = &self.0 {
            f(page, pages, ocr)
        }
    }
}

impl std::fmt::Debug for PageProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "PageProgress(Some)"
        } else {
            "PageProgress(None)"
        })
    }
}

impl Default for OcrOptions {
    fn default() -> Self {
        Self {
            mode: OcrMode::Auto,
            dpi: 200,
            min_confidence: 0.8,
            engine: OcrEngine::default(),
            progress: PageProgress::default(),
        }
    }
}

/// Join lines into page text; returns (text, low-confidence line count). Consecutive lines
/// on one row (a table row's cells, read left to right) join into one line with two spaces
/// between cells, as the PDF text layer is rebuilt, so a row stays together.
pub(crate) fn page_text(lines: &[OcrLine], min_confidence: f32) -> (String, usize) {
    let low = lines
        .iter()
        .filter(|l| l.confidence < min_confidence)
        .count();
    let mut text = String::new();
    let mut prev: Option<&OcrLine> = None;
    for l in lines {
        let t = l.text.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(p) = prev {
            text.push_str(if same_row(p, l) { "  " } else { "\n" });
        }
        text.push_str(t);
        prev = Some(l);
    }
    (text, low)
}

/// One page's OCR result into a document's pages (scanned PDF pages and image frames alike):
/// its text as page `number` (listed in `ocred`), or a failed page whose reason goes to
/// `warnings`. Low-confidence lines are kept and counted in a warning.
pub(crate) fn add_page(
    number: u32,
    lines: Result<Vec<OcrLine>, String>,
    min_confidence: f32,
    pages: &mut Vec<super::Page>,
    ocred: &mut Vec<u32>,
    failed: &mut Vec<u32>,
    warnings: &mut Vec<String>,
) {
    let lines = match lines {
        Ok(lines) => lines,
        Err(why) => {
            failed.push(number);
            warnings.push(format!("page {number}: {why}, not indexed"));
            return;
        }
    };
    let (text, low) = page_text(&lines, min_confidence);
    if low > 0 {
        warnings.push(format!(
            "page {number}: {low} of {} OCR lines below confidence {min_confidence:.2}, kept",
            lines.len(),
        ));
    }
    if text.trim().is_empty() {
        failed.push(number);
        warnings.push(format!("page {number}: OCR found no text, not indexed"));
    } else {
        ocred.push(number);
        pages.push(super::Page {
            number,
            blocks: vec![super::Block::para(text)],
        });
    }
}

/// `b` continues `a`'s row: it starts right of `a` and their heights overlap by more than half.
fn same_row(a: &OcrLine, b: &OcrLine) -> bool {
    let overlap = a.bbox[3].min(b.bbox[3]) - a.bbox[1].max(b.bbox[1]);
    b.bbox[0] >= a.bbox[2] - 1.0
        && overlap > 0.5 * (a.bbox[3] - a.bbox[1]).min(b.bbox[3] - b.bbox[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, bbox: [f32; 4], confidence: f32) -> OcrLine {
        OcrLine {
            text: text.into(),
            bbox,
            confidence,
        }
    }

    #[test]
    fn row_cells_join_and_lines_below_break() {
        let lines = [
            line("一线城市", [10.0, 40.0, 60.0, 50.0], 0.99),
            line("经理", [80.0, 41.0, 120.0, 51.0], 0.95),
            line("800", [140.0, 40.0, 170.0, 50.0], 0.5),
            line(" ", [10.0, 50.0, 20.0, 55.0], 0.1),
            line("第四条", [10.0, 60.0, 60.0, 70.0], 0.99),
        ];
        assert_eq!(
            page_text(&lines, 0.8),
            ("一线城市  经理  800\n第四条".to_string(), 2)
        );
    }
}
