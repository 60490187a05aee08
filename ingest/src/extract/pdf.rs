//! PDF text per page. PDFium first (see [`super::pdfium`]): measured on the fixtures it is the
//! only one of the three that reads Chromium-printed Type 3 CJK fonts. When `libpdfium.so` is
//! missing (or `engine = "legacy"`), the older path runs, reported as a warning: lopdf first
//! (fast; ToUnicode maps and predefined CJK CMaps), pdf_oxide for pages lopdf cannot read
//! (CID CFF fonts with embedded CMaps). Everything runs behind `catch_unwind`, and every
//! page's output goes through the garble check ([`super::garble`]) so a garbled or empty page
//! is reported with its number, never indexed silently.

use super::garble::{KnownPieces, Quality, quality};
use super::ocr::OcrOptions;
use super::pdfium::{self, Failure, PageOut};
use super::{Block, ExtractError, Extracted, Format, Page, PdfEngine, PdfOptions, panic_message};

pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0xF900..=0xFAFF | 0x3040..=0x30FF | 0xAC00..=0xD7AF)
}

fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| panic_message(&p))
}

fn pdf_string(bytes: &[u8]) -> String {
    if bytes.starts_with(&[0xFE, 0xFF]) {
        let units: Vec<u16> = bytes[2..]
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else if let Ok(s) = std::str::from_utf8(bytes) {
        s.to_string()
    } else {
        bytes.iter().map(|&b| b as char).collect()
    }
}

fn title(doc: &lopdf::Document) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let dict = match info {
        lopdf::Object::Reference(id) => doc.get_object(*id).ok()?.as_dict().ok()?,
        lopdf::Object::Dictionary(d) => d,
        _ => return None,
    };
    let t = dict.get(b"Title").ok()?.as_str().ok()?;
    let t = pdf_string(t).trim().to_string();
    (!t.is_empty()).then_some(t)
}

fn page_result(
    number: u32,
    text: String,
    known: Option<&KnownPieces>,
    pages: &mut Vec<Page>,
    failed: &mut Vec<u32>,
    warnings: &mut Vec<String>,
) {
    match quality(&text, known) {
        Quality::Good => pages.push(Page {
            number,
            blocks: vec![Block::para(text)],
        }),
        Quality::Empty => {
            failed.push(number);
            warnings.push(format!(
                "page {number}: no text layer (a scanned image?) and no OCR, not indexed"
            ))
        }
        Quality::Garbled(why) => {
            failed.push(number);
            warnings.push(format!(
                "page {number}: text looks garbled ({why}), not indexed"
            ))
        }
    }
}

fn finish(
    title: Option<String>,
    total: usize,
    pages: Vec<Page>,
    failed_pages: Vec<u32>,
    warnings: Vec<String>,
    ocr_pages: Vec<u32>,
) -> Result<Extracted, ExtractError> {
    if pages.is_empty() {
        return Err(ExtractError::NoText(format!(
            "none of the {total} pages has readable text ({})",
            warnings
                .iter()
                .find(|w| w.starts_with("page "))
                .cloned()
                .unwrap_or_default()
        )));
    }
    Ok(Extracted {
        format: Format::Pdf,
        title,
        pages,
        warnings,
        failed_pages,
        ocr_pages,
    })
}

fn check_header(bytes: &[u8]) -> Result<(), ExtractError> {
    if !bytes.starts_with(b"%PDF")
        && !bytes[..bytes.len().min(1024)]
            .windows(4)
            .any(|w| w == b"%PDF")
    {
        return Err(ExtractError::Pdf(
            "no PDF header (is it really a PDF?)".into(),
        ));
    }
    Ok(())
}

pub(super) fn extract(
    bytes: &[u8],
    options: &PdfOptions,
    ocr: &OcrOptions,
) -> Result<Extracted, ExtractError> {
    check_header(bytes)?;
    let known = options.known_pieces.0.as_ref();
    let mut warnings = Vec::new();
    if options.engine == PdfEngine::Pdfium {
        match catch(|| pdfium::read(bytes, options.pdfium_library.as_deref(), known, ocr)) {
            Ok(Ok(doc)) => {
                let total = doc.pages.len();
                if total == 0 {
                    return Err(ExtractError::Pdf("the document has no pages".into()));
                }
                let (mut pages, mut failed, mut ocred) = (Vec::new(), Vec::new(), Vec::new());
                for (number, out) in doc.pages {
                    match out {
                        PageOut::Text(text) => {
                            page_result(number, text, known, &mut pages, &mut failed, &mut warnings)
                        }
                        PageOut::Ocr(lines) => super::ocr::add_page(
                            number,
                            lines,
                            ocr.min_confidence,
                            &mut pages,
                            &mut ocred,
                            &mut failed,
                            &mut warnings,
                        ),
                    }
                }
                return finish(doc.title, total, pages, failed, warnings, ocred);
            }
            Ok(Err(Failure::Encrypted)) => return Err(ExtractError::Encrypted),
            Ok(Err(Failure::Missing(why))) => {
                warnings.push(format!("{why}; read with the lopdf fallback instead"))
            }
            Ok(Err(Failure::Corrupt(why))) => {
                warnings.push(format!("PDFium cannot open the file ({why}); tried lopdf"))
            }
            Err(p) => warnings.push(format!("PDFium crashed ({p}); tried lopdf")),
        }
    }
    legacy(bytes, known, warnings)
}

/// The lopdf/pdf_oxide path: the fallback without PDFium.
fn legacy(
    bytes: &[u8],
    known: Option<&KnownPieces>,
    mut warnings: Vec<String>,
) -> Result<Extracted, ExtractError> {
    if !bytes.starts_with(b"%PDF")
        && !bytes[..bytes.len().min(1024)]
            .windows(4)
            .any(|w| w == b"%PDF")
    {
        return Err(ExtractError::Pdf(
            "no PDF header (is it really a PDF?)".into(),
        ));
    }
    let mut doc = catch(|| lopdf::Document::load_mem(bytes))
        .map_err(|p| ExtractError::Pdf(format!("parser crashed: {p}")))?
        .map_err(|e| ExtractError::Pdf(e.to_string()))?;
    if doc.is_encrypted() && doc.decrypt("").is_err() {
        return Err(ExtractError::Encrypted);
    }
    let numbers: Vec<u32> = doc.get_pages().keys().copied().collect();
    if numbers.is_empty() {
        return Err(ExtractError::Pdf("the document has no pages".into()));
    }
    let title = title(&doc);
    // pdf_oxide is opened only when some page needs it.
    let mut oxide: Option<Option<pdf_oxide::PdfDocument>> = None;
    let mut pages = Vec::with_capacity(numbers.len());
    let mut failed = Vec::new();
    for (index, &number) in numbers.iter().enumerate() {
        let first = catch(|| doc.extract_text(&[number]))
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default();
        let mut text = first;
        let mut q = quality(&text, known);
        if q != Quality::Good {
            let ox = oxide.get_or_insert_with(|| {
                catch(|| pdf_oxide::PdfDocument::from_bytes(bytes.to_vec()))
                    .ok()
                    .and_then(|r| r.ok())
            });
            if let Some(ox) = ox.as_mut() {
                let alt = catch(|| ox.extract_text(index)).ok().and_then(|r| r.ok());
                if let Some(alt) = alt {
                    let aq = quality(&alt, known);
                    if aq == Quality::Good || (q == Quality::Empty && aq != Quality::Empty) {
                        text = alt;
                        q = aq;
                    }
                }
            }
        }
        let _ = q;
        page_result(number, text, known, &mut pages, &mut failed, &mut warnings);
    }
    finish(title, numbers.len(), pages, failed, warnings, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_judgement() {
        let q = |t: &str| quality(t, None);
        assert_eq!(q("年假五天。Annual leave is 5 days."), Quality::Good);
        assert_eq!(q("  \n "), Quality::Empty);
        assert!(matches!(
            q("\u{FFFD}\u{FFFD}\u{FFFD}年"),
            Quality::Garbled(_)
        ));
        assert!(matches!(q("ÃÂÅÆÇÈÉÊËÌÍÎ ÏÐÑÒ ¤¦¨ª«¬"), Quality::Garbled(_)));
        assert!(matches!(
            q("\u{E001}\u{E002}\u{E003}ab"),
            Quality::Garbled(_)
        ));
    }

    #[test]
    fn not_a_pdf() {
        assert!(matches!(
            extract(b"hello", &PdfOptions::default(), &OcrOptions::default()),
            Err(ExtractError::Pdf(_))
        ));
        assert!(matches!(
            extract(
                b"%PDF-1.7\n1 0 obj garbage",
                &PdfOptions::default(),
                &OcrOptions::default()
            ),
            Err(ExtractError::Pdf(_))
        ));
    }
}
