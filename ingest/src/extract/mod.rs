//! Extraction: file bytes → pages of text blocks (headings kept), per format.

mod docx;
pub mod garble;
mod html;
mod image;
pub mod legacy;
mod markdown;
pub mod ocr;
mod pdf;
pub mod pdfium;
mod pptx;
mod sheet;
mod table;
pub mod text;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use pdf::is_cjk as is_cjk_char;

/// Supported formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Pdf,
    Docx,
    Txt,
    Markdown,
    Html,
    /// XLSX, XLS, ODS.
    Sheet,
    /// PowerPoint: one page per slide.
    Pptx,
    /// PNG, JPEG, TIFF (one page per frame), BMP, WebP, read by OCR.
    Image,
}

impl Format {
    /// The format for a file name, by extension.
    pub fn from_name(file_name: &str) -> Option<Self> {
        let ext = file_name.rsplit_once('.')?.1.to_ascii_lowercase();
        Some(match ext.as_str() {
            "pdf" => Self::Pdf,
            "docx" => Self::Docx,
            "txt" | "text" | "log" | "csv" => Self::Txt,
            "md" | "markdown" => Self::Markdown,
            "html" | "htm" => Self::Html,
            "xlsx" | "xlsm" | "xls" | "ods" => Self::Sheet,
            "pptx" => Self::Pptx,
            "png" | "jpg" | "jpeg" | "tif" | "tiff" | "bmp" | "webp" => Self::Image,
            // Legacy Office: converted with LibreOffice when it is installed (else a per-file
            // error that says how), then read as what it was converted to.
            "doc" => Self::Docx,
            "ppt" => Self::Pptx,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Docx => "docx",
            Self::Txt => "txt",
            Self::Markdown => "markdown",
            Self::Html => "html",
            Self::Sheet => "sheet",
            Self::Pptx => "pptx",
            Self::Image => "image",
        }
    }
}

/// Extensions that [`Format::from_name`] recognises.
pub const SUPPORTED_EXTENSIONS: &[&str] = &[
    "pdf", "docx", "txt", "text", "log", "csv", "md", "markdown", "html", "htm", "xlsx", "xlsm",
    "xls", "ods", "pptx", "png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp", "doc", "ppt",
];

/// A block of text: a heading (level 1–9), a paragraph, or a table row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub heading_level: Option<u8>,
    pub text: String,
    /// A table or sheet row rendered with its header (`header: value | …`): the chunker
    /// keeps it whole (never split at sentence ends inside a cell), so a row's facts and
    /// their header meaning stay in one chunk.
    pub table_row: bool,
}

impl Block {
    pub fn para(text: impl Into<String>) -> Self {
        Self {
            heading_level: None,
            text: text.into(),
            table_row: false,
        }
    }
    pub fn heading(level: u8, text: impl Into<String>) -> Self {
        Self {
            heading_level: Some(level.clamp(1, 9)),
            text: text.into(),
            table_row: false,
        }
    }
    pub fn row(text: impl Into<String>) -> Self {
        Self {
            heading_level: None,
            text: text.into(),
            table_row: true,
        }
    }
}

/// One page (formats without pages have exactly one, numbered 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// 1-based page number.
    pub number: u32,
    pub blocks: Vec<Block>,
}

/// What extraction found in a file (serialisable: the app's extract worker sends it from a
/// child process).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Extracted {
    pub format: Format,
    pub title: Option<String>,
    pub pages: Vec<Page>,
    /// Problems that did not stop the file (a garbled or empty page, …).
    pub warnings: Vec<String>,
    /// 1-based numbers of pages that were not indexed (no text layer, garbled text); each
    /// has a warning saying why.
    pub failed_pages: Vec<u32>,
    /// 1-based numbers of pages indexed from OCR instead of a text layer.
    pub ocr_pages: Vec<u32>,
}

/// Which PDF reader runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PdfEngine {
    /// PDFium, falling back to lopdf/pdf_oxide (with a warning) when the library is missing.
    #[default]
    Pdfium,
    /// lopdf/pdf_oxide only.
    Legacy,
}

/// PDF options (`[ingest.pdf]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PdfOptions {
    pub engine: PdfEngine,
    /// `libpdfium.so` to load; `None`: `$PDFIUM_DYNAMIC_LIB_PATH`, else
    /// `models/pdfium/libpdfium.so`. The library is loaded once per process (the first
    /// PDF's setting wins).
    pub pdfium_library: Option<PathBuf>,
    /// The embedding tokenizer's known-piece share for the garble check; set by the app.
    #[serde(skip)]
    pub known_pieces: garble::KnownPiecesScorer,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(
        "unsupported format `{extension}` (supported: pdf, docx, pptx, txt, md, html, xlsx, xls, ods, png, jpg, tiff, bmp, webp; doc and ppt with LibreOffice)"
    )]
    Unsupported { extension: String },
    #[error(
        "legacy Office format `.{extension}`: save it as .{to} and ingest that, or install LibreOffice (Debian: apt-get install libreoffice-writer-nogui libreoffice-impress-nogui): zhiku converts .doc/.ppt with `soffice --headless --convert-to {to}` when `soffice` is on PATH{why}"
    )]
    Legacy {
        extension: String,
        to: &'static str,
        /// Why a conversion that was tried failed ("" when soffice is not installed).
        why: String,
    },
    #[error("corrupt or unreadable presentation: {0}")]
    Pptx(String),
    #[error("unreadable image: {0}")]
    Image(String),
    #[error(
        "image files are read by OCR, and {0}; run scripts/fetch-models.sh (it fetches the PP-OCRv5 models and onnxruntime) and keep [ingest.ocr] mode = \"auto\""
    )]
    NoOcr(String),
    #[error("corrupt or unreadable spreadsheet: {0}")]
    Sheet(String),
    #[error("empty file")]
    Empty,
    #[error("binary content in a text file (is it really {format}?)")]
    Binary { format: &'static str },
    #[error("cannot decode the text: {0}")]
    Encoding(String),
    #[error("corrupt or unreadable PDF: {0}")]
    Pdf(String),
    #[error("password-protected PDF: remove the password and ingest it again")]
    Encrypted,
    #[error("corrupt or unreadable DOCX: {0}")]
    Docx(String),
    #[error("no text found: {0}")]
    NoText(String),
    #[error("the extractor crashed on this file ({0}); the file was skipped")]
    Panicked(String),
}

/// Extract one file with default options. The format comes from the name's extension; the
/// content is checked.
pub fn extract(bytes: &[u8], file_name: &str) -> Result<Extracted, ExtractError> {
    extract_with(
        bytes,
        file_name,
        &PdfOptions::default(),
        &ocr::OcrOptions::default(),
    )
}

/// Extract one file. The format comes from the name's extension; the content is checked.
pub fn extract_with(
    bytes: &[u8],
    file_name: &str,
    pdf_options: &PdfOptions,
    ocr_options: &ocr::OcrOptions,
) -> Result<Extracted, ExtractError> {
    let ext = file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if let Some(to) = legacy::target(&ext) {
        // Without conversion options: the error that says how to convert.
        return Err(legacy::not_converted(&ext, to, String::new()));
    }
    let format = Format::from_name(file_name).ok_or_else(|| ExtractError::Unsupported {
        extension: file_name
            .rsplit_once('.')
            .map(|(_, e)| e.to_string())
            .unwrap_or_else(|| "(none)".into()),
    })?;
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ExtractError::Empty);
    }
    let run = || -> Result<Extracted, ExtractError> {
        match format {
            Format::Pdf => pdf::extract(bytes, pdf_options, ocr_options),
            Format::Docx => docx::extract(bytes),
            Format::Txt => text::extract_txt(bytes),
            Format::Markdown => markdown::extract(bytes),
            Format::Html => html::extract(bytes),
            Format::Sheet => sheet::extract(bytes),
            Format::Pptx => pptx::extract(bytes),
            Format::Image => image::extract(bytes, ocr_options),
        }
    };
    // Third-party parsers meet hostile input: a panic becomes this file's error.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(r) => r,
        Err(p) => Err(ExtractError::Panicked(panic_message(&p))),
    }
}

pub(crate) fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// Split plain text into paragraph blocks at blank lines (single newlines are kept).
pub(crate) fn paragraphs(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.trim().is_empty() {
                out.push(Block::para(std::mem::take(&mut cur)));
            }
            cur.clear();
        } else {
            if !cur.is_empty() {
                cur.push('\n');
            }
            cur.push_str(line);
        }
    }
    if !cur.trim().is_empty() {
        out.push(Block::para(cur));
    }
    out
}
