//! zhiku-ingest: bytes in, clean chunks with provenance out.
//!
//! Steps: [`extract`] (PDF through PDFium with a lopdf/pdf_oxide fallback and an OCR seam for
//! pages without a usable text layer, DOCX and PPTX (tables rendered row by row with their
//! header), XLSX/XLS/ODS, images (PNG, JPEG, multi-page TIFF, BMP, WebP) through OCR,
//! .doc/.ppt through LibreOffice when installed, TXT in any common Chinese/English
//! encoding, Markdown, HTML; every PDF page passes [`extract::garble`])
//! → [`clean`] (NFKC where safe, width and whitespace normalisation, control characters,
//! repeated page headers/footers) → [`mask`] (personal data) → [`chunk`] (sentence-aware,
//! sized in embedding-model tokens, with overlap and heading paths). This crate knows nothing
//! of stores, models or HTTP. [`sniff`] checks that a file's content matches its name
//! before any of that (uploads are typed by content).

pub mod chunk;
pub mod clean;
pub mod extract;
pub mod mask;
pub mod sniff;

pub use chunk::{Chunk, ChunkConfig};
pub use clean::CleanConfig;
pub use extract::garble::{GarbleScore, KnownPieces, KnownPiecesScorer, Quality};
pub use extract::legacy::OfficeOptions;
pub use extract::ocr::{
    Ocr, OcrEngine, OcrError, OcrLine, OcrMode, OcrOptions, PageProgress, PageWatcher,
};
pub use extract::{Block, ExtractError, Extracted, Format, Page, PdfEngine, PdfOptions};
pub use mask::MaskConfig;
pub use sniff::SniffError;

/// Options for the whole pipeline.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Options {
    pub clean: CleanConfig,
    pub mask: MaskConfig,
    pub chunk: ChunkConfig,
    pub pdf: PdfOptions,
    pub ocr: OcrOptions,
    /// `[ingest.office]`: LibreOffice for .doc/.ppt.
    pub office: OfficeOptions,
}

/// The result of processing one file.
#[derive(Debug, Clone)]
pub struct Processed {
    pub format: Format,
    /// Title from the document itself (PDF/DOCX metadata, first heading, HTML <title>) or
    /// `None`; the caller falls back to the file name.
    pub title: Option<String>,
    /// Number of pages (1 for formats without pages).
    pub pages: usize,
    /// Chunks in document order, exact duplicates removed.
    pub chunks: Vec<Chunk>,
    /// Problems that did not stop the file, e.g. "page 3: garbled text (52% replacement
    /// characters), not indexed". Never silently dropped.
    pub warnings: Vec<String>,
    /// How many personal-data items were masked.
    pub masked: usize,
    /// Pages indexed from their text layer.
    pub text_pages: usize,
    /// Pages indexed from OCR, 1-based.
    pub ocr_pages: Vec<u32>,
    /// Pages not indexed (no text layer, garbled text), 1-based; `warnings` says why.
    pub failed_pages: Vec<u32>,
}

/// Extract, clean, mask and chunk one file. `file_name` picks the format by extension, and
/// the content is checked (a binary file renamed `.txt` is an error). `count_tokens` measures
/// text in the embedding model's tokens for the chunk size limit. The same as
/// [`extract_file`] then [`finish`].
pub fn process(
    bytes: &[u8],
    file_name: &str,
    options: &Options,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Result<Processed, ExtractError> {
    Ok(finish(
        extract_file(bytes, file_name, options)?,
        options,
        count_tokens,
    ))
}

/// The part of [`process`] that parses the file (PDFium, OCR, Office and image decoders,
/// LibreOffice for legacy formats): what the app runs in a supervised child process, since
/// hostile input can hang or crash it.
pub fn extract_file(
    bytes: &[u8],
    file_name: &str,
    options: &Options,
) -> Result<Extracted, ExtractError> {
    let ext = file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match extract::legacy::target(&ext) {
        Some(to) => {
            let converted = extract::legacy::convert(bytes, &ext, &options.office)?;
            let mut x = extract::extract_with(
                &converted,
                &format!("converted.{to}"),
                &options.pdf,
                &options.ocr,
            )?;
            x.warnings.insert(
                0,
                format!("converted from .{ext} to .{to} with LibreOffice"),
            );
            Ok(x)
        }
        None => extract::extract_with(bytes, file_name, &options.pdf, &options.ocr),
    }
}

/// The rest of [`process`] on what [`extract_file`] found: clean, mask, chunk (pure text
/// work, in the caller's process).
pub fn finish(
    extracted: Extracted,
    options: &Options,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Processed {
    let Extracted {
        format,
        title,
        mut pages,
        warnings,
        failed_pages,
        ocr_pages,
    } = extracted;
    let text_pages = pages.len().saturating_sub(ocr_pages.len());
    if format == Format::Pdf && options.clean.drop_headers_footers {
        clean::drop_repeated_lines(&mut pages);
    }
    let mut masked = 0;
    for page in &mut pages {
        for block in &mut page.blocks {
            let mut text = clean::clean_text(&block.text, &options.clean);
            if format == Format::Pdf && options.clean.join_wrapped_lines {
                text = clean::join_wrapped_lines(&text);
            }
            let (text, n) = mask::mask(&text, &options.mask);
            masked += n;
            block.text = text;
        }
        page.blocks.retain(|b| !b.text.trim().is_empty());
    }
    let page_count = pages
        .iter()
        .map(|p| p.number)
        .chain(failed_pages.iter().copied())
        .max()
        .unwrap_or(1) as usize;
    let mut seen = std::collections::HashSet::new();
    let chunks: Vec<Chunk> = chunk::chunk_pages(&pages, &options.chunk, count_tokens)
        .into_iter()
        .filter(|c| seen.insert(c.text.clone()))
        .collect();
    let title = title
        .map(|t| mask::mask(&clean::clean_text(&t, &options.clean), &options.mask).0)
        .filter(|t| !t.trim().is_empty());
    Processed {
        format,
        title,
        pages: page_count.max(pages.len()),
        chunks,
        warnings,
        masked,
        text_pages,
        failed_pages,
        ocr_pages,
    }
}
