//! PDF text through PDFium (the engine of Chrome's PDF viewer), loaded at run time.
//!
//! Why PDFium first: Chromium/Edge "Save as PDF" writes CJK text in Type 3 fonts with a
//! ToUnicode map; lopdf turns every such page into mojibake and pdf_oxide is no better, while
//! PDFium reads them exactly (see the fixture tests). The lopdf/pdf_oxide path stays only as
//! the fallback when `libpdfium.so` is missing, behind the same garble check.
//!
//! Text is rebuilt from PDFium's character boxes: characters on one baseline form one line
//! (so a table row's cells stay on one line and in one chunk), lines run top to bottom,
//! characters left to right, with a space where the gap between two characters is wide.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use pdfium_render::prelude::*;

use super::garble::{KnownPieces, Quality, quality};
use super::ocr::{OcrLine, OcrMode, OcrOptions};

/// Where `libpdfium.so` comes from when neither the caller nor the environment says.
pub const DEFAULT_LIBRARY: &str = "models/pdfium/libpdfium.so";
/// The environment variable that points at another copy.
pub const LIBRARY_ENV: &str = "PDFIUM_DYNAMIC_LIB_PATH";

/// The library path: the caller's explicit one, else `$PDFIUM_DYNAMIC_LIB_PATH`, else
/// [`DEFAULT_LIBRARY`] (relative to the working directory).
pub fn library_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os(LIBRARY_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_LIBRARY),
    }
}

/// PDFium, loaded once per process. PDFium is not thread-safe: every use holds this mutex
/// (pdfium-render's `thread_safe` feature serialises single calls; a document's calls must
/// not interleave with another document's either).
struct Loaded {
    path: PathBuf,
    pdfium: Mutex<Pdfium>,
}

static LOADED: OnceLock<Result<Loaded, String>> = OnceLock::new();

/// The error text when the library cannot be loaded: says how to get it.
fn missing(path: &Path, why: &str) -> String {
    format!(
        "PDFium library not loaded from {} ({why}); run scripts/fetch-models.sh (it writes \
         models/pdfium/libpdfium.so) or set {LIBRARY_ENV} / the pdfium library path in the \
         config to a libpdfium.so",
        path.display()
    )
}

fn load(explicit: Option<&Path>) -> Result<&'static Loaded, String> {
    let r = LOADED.get_or_init(|| {
        let path = library_path(explicit);
        if !path.is_file() {
            return Err(missing(&path, "no such file"));
        }
        let bindings = std::panic::catch_unwind(|| Pdfium::bind_to_library(&path))
            .map_err(|p| missing(&path, &super::panic_message(&p)))?
            .map_err(|e| missing(&path, &e.to_string()))?;
        Ok(Loaded {
            path: path.clone(),
            pdfium: Mutex::new(Pdfium::new(bindings)),
        })
    });
    r.as_ref().map_err(|e| e.clone())
}

/// Is PDFium available (loading it on first call)? `Err` says how to get it.
pub fn available(explicit: Option<&Path>) -> Result<PathBuf, String> {
    load(explicit).map(|l| l.path.clone())
}

/// What PDFium read from a document.
pub(super) struct Doc {
    pub title: Option<String>,
    /// Per page (1-based number, what was read).
    pub pages: Vec<(u32, PageOut)>,
}

pub(super) enum PageOut {
    /// The text layer, in reading order.
    Text(String),
    /// The page was rendered and OCRed (its text layer is not used).
    Ocr(Result<Vec<OcrLine>, String>),
}

pub(super) enum Failure {
    /// The library is missing or unusable: fall back.
    Missing(String),
    Encrypted,
    Corrupt(String),
}

/// Pages rendered for OCR per turn under the lock (an A4 page at 200 dpi is ~11.6 MB).
const RENDER_AHEAD: usize = 4;

/// Read a document: each page's text layer, and the OCR of pages that need it. PDFium work
/// (parsing, text, rendering) holds the process-wide lock; OCR does not: pages are rendered
/// [`RENDER_AHEAD`] at a time under the lock, which is then released while they are read,
/// so another document's PDFium work is not queued behind a long (or hung) OCR.
pub(super) fn read(
    bytes: &[u8],
    explicit: Option<&Path>,
    known: Option<&KnownPieces>,
    ocr: &OcrOptions,
) -> Result<Doc, Failure> {
    let loaded = load(explicit).map_err(Failure::Missing)?;
    let engine = ocr.engine.0.as_deref().filter(|_| ocr.mode != OcrMode::Off);
    let lock = || {
        loaded
            .pdfium
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    // Under the lock: the title and every page's text, and which pages need OCR.
    let (title, texts, need) = {
        let guard = lock();
        let doc = open(&guard, bytes)?;
        let title = doc
            .metadata()
            .get(PdfDocumentMetadataTagType::Title)
            .map(|t| t.value().trim().to_string())
            .filter(|t| !t.is_empty());
        let total = doc.pages().len() as u32;
        let mut texts = Vec::new();
        let mut need = Vec::new();
        for (i, page) in doc.pages().iter().enumerate() {
            let number = i as u32 + 1;
            let text = match page.text() {
                Ok(t) => page_text(&t),
                Err(_) => String::new(),
            };
            let needs_ocr = engine.is_some()
                && match ocr.mode {
                    OcrMode::Always => true,
                    OcrMode::Auto => quality(&text, known) != Quality::Good,
                    OcrMode::Off => false,
                };
            if needs_ocr {
                need.push(i);
            } else {
                ocr.progress.page(number, total, false);
            }
            texts.push(text);
        }
        drop(doc);
        drop(guard);
        (title, texts, need)
    };
    let total = texts.len() as u32;
    let mut ocred: Vec<Option<Result<Vec<OcrLine>, String>>> = vec![None; texts.len()];
    if let Some(engine) = engine {
        for turn in need.chunks(RENDER_AHEAD) {
            // Render this turn's pages under the lock…
            let images: Vec<(usize, Result<image::RgbImage, String>)> = {
                let guard = lock();
                let doc = open(&guard, bytes)?;
                let pages = doc.pages();
                let images = turn
                    .iter()
                    .map(|&i| {
                        let img = pages
                            .get(i as PdfPageIndex)
                            .map_err(|e| format!("cannot load the page: {e}"))
                            .and_then(|p| render(&p, ocr.dpi));
                        (i, img)
                    })
                    .collect();
                drop(doc);
                drop(guard);
                images
            };
            // …and read them without it.
            for (i, img) in images {
                ocr.progress.page(i as u32 + 1, total, true);
                let lines = img.and_then(|img| {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        engine.recognize(&img)
                    }))
                    .map_err(|p| format!("the OCR engine crashed: {}", super::panic_message(&p)))?
                    .map_err(|e| e.to_string())
                });
                ocred[i] = Some(lines);
            }
        }
    }
    let pages = texts
        .into_iter()
        .zip(ocred)
        .enumerate()
        .map(|(i, (text, lines))| {
            let out = match lines {
                Some(lines) => PageOut::Ocr(lines),
                None => PageOut::Text(text),
            };
            (i as u32 + 1, out)
        })
        .collect();
    Ok(Doc { title, pages })
}

fn open<'a>(pdfium: &'a Pdfium, bytes: &'a [u8]) -> Result<PdfDocument<'a>, Failure> {
    match pdfium.load_pdf_from_byte_slice(bytes, None) {
        Ok(d) => Ok(d),
        Err(PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::PasswordError)) => {
            Err(Failure::Encrypted)
        }
        Err(e) => Err(Failure::Corrupt(e.to_string())),
    }
}

/// Render a page at `dpi` to RGB.
fn render(page: &PdfPage, dpi: u32) -> Result<image::RgbImage, String> {
    let scale = dpi.clamp(36, 600) as f32 / 72.0;
    let config = PdfRenderConfig::new()
        .scale_page_by_factor(scale)
        .set_format(PdfBitmapFormat::BGRA);
    let bitmap = page
        .render_with_config(&config)
        .map_err(|e| format!("cannot render the page: {e}"))?;
    let (w, h) = (bitmap.width() as u32, bitmap.height() as u32);
    let rgba = bitmap.as_rgba_bytes();
    if rgba.len() != w as usize * h as usize * 4 {
        return Err(format!("unexpected bitmap size {} for {w}x{h}", rgba.len()));
    }
    let rgb: Vec<u8> = rgba
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    image::RgbImage::from_raw(w, h, rgb).ok_or_else(|| "bitmap buffer too small".to_string())
}

struct Glyph {
    c: char,
    x0: f32,
    x1: f32,
    /// Baseline (PDF points, origin bottom-left).
    y: f32,
    h: f32,
}

/// Rebuild the page's text from character boxes (see the module doc).
fn page_text(text: &PdfPageText) -> String {
    let mut glyphs = Vec::new();
    for ch in text.chars().iter() {
        if ch.is_generated().unwrap_or(false) {
            continue;
        }
        let Some(c) = ch.unicode_char() else { continue };
        if c.is_whitespace() || c.is_control() {
            continue;
        }
        let Ok(b) = ch.loose_bounds() else { continue };
        let y = ch.origin_y().map(|v| v.value).unwrap_or(b.bottom().value);
        glyphs.push(Glyph {
            c,
            x0: b.left().value,
            x1: b.right().value,
            y,
            h: (b.top().value - b.bottom().value).abs().max(1.0),
        });
    }
    // Lines: glyphs in content order join the current line while their baseline stays
    // within half a glyph height of it; then lines are sorted top to bottom and merged when
    // they share a baseline (a table row written cell by cell, column by column).
    let mut lines: Vec<(f32, f32, Vec<Glyph>)> = Vec::new(); // (baseline, height, glyphs)
    for g in glyphs {
        let tol = g.h * 0.5;
        if let Some(line) = lines
            .iter_mut()
            .rev()
            .take(64)
            .find(|(y, h, _)| (g.y - *y).abs() <= tol.min(*h * 0.5))
        {
            line.2.push(g);
        } else {
            lines.push((g.y, g.h, vec![g]));
        }
    }
    lines.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out = String::new();
    for (_, h, mut gs) in lines {
        gs.sort_by(|a, b| a.x0.total_cmp(&b.x0));
        if !out.is_empty() {
            out.push('\n');
        }
        let mut prev: Option<&Glyph> = None;
        for g in &gs {
            if let Some(p) = prev {
                let gap = g.x0 - p.x1;
                // Word gaps in Latin text are ~0.25 em; CJK text has none. A wider gap is a
                // column gap: two spaces keep table cells apart.
                // CJK glyph boxes can be narrower than their advance: no single space there.
                let cjk = super::pdf::is_cjk(p.c) || super::pdf::is_cjk(g.c);
                if gap > h * 1.5 {
                    out.push_str("  ");
                } else if gap > h * if cjk { 0.6 } else { 0.2 } {
                    out.push(' ');
                }
            }
            out.push(g.c);
            prev = Some(g);
        }
    }
    out
}
