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
}

impl Default for OcrOptions {
    fn default() -> Self {
        Self {
            mode: OcrMode::Auto,
            dpi: 200,
            min_confidence: 0.8,
            engine: OcrEngine::default(),
        }
    }
}

/// Join lines into page text; returns (text, low-confidence line count).
pub(crate) fn page_text(lines: &[OcrLine], min_confidence: f32) -> (String, usize) {
    let low = lines
        .iter()
        .filter(|l| l.confidence < min_confidence)
        .count();
    let text = lines
        .iter()
        .map(|l| l.text.trim())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    (text, low)
}
