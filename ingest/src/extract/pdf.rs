//! PDF text per page: lopdf first (fast; ToUnicode maps and predefined CJK CMaps), pdf_oxide
//! for pages lopdf cannot read (CID CFF fonts with embedded CMaps). Both run behind
//! `catch_unwind`; every page's output is checked so a garbled or empty page is reported,
//! never indexed silently.

use super::{Block, ExtractError, Extracted, Format, Page, panic_message};

/// How a page's text looks.
#[derive(Debug, Clone, PartialEq)]
pub enum Quality {
    Good,
    Empty,
    Garbled(String),
}

/// Judge extracted text: replacement / private-use / control characters, or a high share
/// of characters that are rare in real Chinese or English text, mean garbage.
pub fn quality(text: &str) -> Quality {
    let mut n = 0usize;
    let mut bad = 0usize;
    let mut odd = 0usize;
    for c in text.chars().filter(|c| !c.is_whitespace()) {
        n += 1;
        let u = c as u32;
        if c == '\u{FFFD}' || (0xE000..=0xF8FF).contains(&u) || c.is_control() {
            bad += 1;
        } else if !(c.is_ascii()
            || is_cjk(c)
            || (0x3000..=0x303F).contains(&u)
            || (0xFF00..=0xFFEF).contains(&u)
            || (0x2000..=0x206F).contains(&u)
            || c.is_alphanumeric() && (0x0370..=0x04FF).contains(&u))
        {
            odd += 1;
        }
    }
    if n == 0 {
        return Quality::Empty;
    }
    if bad * 10 > n {
        return Quality::Garbled(format!("{}% unreadable characters", bad * 100 / n));
    }
    if odd * 10 > n * 3 {
        return Quality::Garbled(format!("{}% unexpected symbols", odd * 100 / n));
    }
    Quality::Good
}

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

pub(super) fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
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
    let mut warnings = Vec::new();
    for (index, &number) in numbers.iter().enumerate() {
        let first = catch(|| doc.extract_text(&[number]))
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default();
        let mut text = first;
        let mut q = quality(&text);
        if q != Quality::Good {
            let ox = oxide.get_or_insert_with(|| {
                catch(|| pdf_oxide::PdfDocument::from_bytes(bytes.to_vec()))
                    .ok()
                    .and_then(|r| r.ok())
            });
            if let Some(ox) = ox.as_mut() {
                let alt = catch(|| ox.extract_text(index)).ok().and_then(|r| r.ok());
                if let Some(alt) = alt {
                    let aq = quality(&alt);
                    if aq == Quality::Good || (q == Quality::Empty && aq != Quality::Empty) {
                        text = alt;
                        q = aq;
                    }
                }
            }
        }
        match q {
            Quality::Good => pages.push(Page {
                number,
                blocks: vec![Block::para(text)],
            }),
            Quality::Empty => warnings.push(format!(
                "page {number}: no text layer (a scanned image?), not indexed"
            )),
            Quality::Garbled(why) => warnings.push(format!(
                "page {number}: text looks garbled ({why}), not indexed"
            )),
        }
    }
    if pages.is_empty() {
        return Err(ExtractError::NoText(format!(
            "none of the {} pages has readable text ({})",
            numbers.len(),
            warnings.first().cloned().unwrap_or_default()
        )));
    }
    Ok(Extracted {
        format: Format::Pdf,
        title,
        pages,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_judgement() {
        assert_eq!(quality("年假五天。Annual leave is 5 days."), Quality::Good);
        assert_eq!(quality("  \n "), Quality::Empty);
        assert!(matches!(
            quality("\u{FFFD}\u{FFFD}\u{FFFD}年"),
            Quality::Garbled(_)
        ));
        assert!(matches!(quality("ÃÂÅÆÇÈÉÊËÌÍÎ ÏÐÑÒ"), Quality::Garbled(_)));
        assert!(matches!(
            quality("\u{E001}\u{E002}\u{E003}ab"),
            Quality::Garbled(_)
        ));
    }

    #[test]
    fn not_a_pdf() {
        assert!(matches!(extract(b"hello"), Err(ExtractError::Pdf(_))));
        assert!(matches!(
            extract(b"%PDF-1.7\n1 0 obj garbage"),
            Err(ExtractError::Pdf(_))
        ));
    }
}
