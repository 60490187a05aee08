//! Plain text with encoding detection: BOM, then UTF-8, then a statistical guess
//! (GBK/GB18030, Big5, Shift_JIS, windows-125x, …).

use encoding_rs::{Encoding, UTF_8, UTF_16BE, UTF_16LE};

use super::{ExtractError, Extracted, Format, Page, paragraphs};

/// Decode bytes to a String. `hint` is an encoding label found in the content (HTML meta).
pub fn decode(bytes: &[u8], hint: Option<&str>) -> Result<String, ExtractError> {
    if let Some((enc, bom_len)) = Encoding::for_bom(bytes) {
        let (text, had_errors) = enc.decode_without_bom_handling(&bytes[bom_len..]);
        return check(text.into_owned(), had_errors, enc);
    }
    if looks_utf16(bytes) {
        let enc = if bytes.len() > 1 && bytes[0] == 0 {
            UTF_16BE
        } else {
            UTF_16LE
        };
        let (text, had_errors) = enc.decode_without_bom_handling(bytes);
        return check(text.into_owned(), had_errors, enc);
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Ok(s.to_string());
    }
    let enc = hint
        .and_then(|h| Encoding::for_label(h.trim().as_bytes()))
        .filter(|e| *e != UTF_8)
        .unwrap_or_else(|| {
            let mut det = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Allow);
            det.feed(bytes, true);
            det.guess(None, chardetng::Utf8Detection::Allow)
        });
    // GBK is decoded as GB18030, its superset.
    let enc = if enc == encoding_rs::GBK {
        encoding_rs::GB18030
    } else {
        enc
    };
    let (text, _, had_errors) = enc.decode(bytes);
    check(text.into_owned(), had_errors, enc)
}

fn check(text: String, had_errors: bool, enc: &'static Encoding) -> Result<String, ExtractError> {
    if had_errors {
        let bad = text.chars().filter(|c| *c == '\u{FFFD}').count();
        let total = text.chars().count().max(1);
        if bad * 50 > total {
            return Err(ExtractError::Encoding(format!(
                "{bad} of {total} characters are invalid as {}",
                enc.name()
            )));
        }
    }
    Ok(text)
}

/// UTF-16 without BOM: many NUL bytes at even or odd positions.
fn looks_utf16(bytes: &[u8]) -> bool {
    let n = bytes.len().min(4096) & !1;
    if n < 8 {
        return false;
    }
    let even = bytes[..n].iter().step_by(2).filter(|b| **b == 0).count();
    let odd = bytes[1..n].iter().step_by(2).filter(|b| **b == 0).count();
    let half = n / 2;
    (even * 10 > half * 4 && odd * 10 < half) || (odd * 10 > half * 4 && even * 10 < half)
}

/// True when bytes look like a binary file rather than text in any encoding.
pub fn is_binary(bytes: &[u8]) -> bool {
    if Encoding::for_bom(bytes).is_some() || looks_utf16(bytes) {
        return false;
    }
    let sample = &bytes[..bytes.len().min(8192)];
    if sample.contains(&0) {
        return true;
    }
    let ctrl = sample
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0c | 0x1b))
        .count();
    ctrl * 20 > sample.len()
}

/// Decode text, refusing binary content.
pub fn decode_text(
    bytes: &[u8],
    format: &'static str,
    hint: Option<&str>,
) -> Result<String, ExtractError> {
    if is_binary(bytes) {
        return Err(ExtractError::Binary { format });
    }
    let text = decode(bytes, hint)?;
    let ctrl = text
        .chars()
        .filter(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        .count();
    if ctrl * 20 > text.chars().count() {
        return Err(ExtractError::Binary { format });
    }
    if text.trim().is_empty() {
        return Err(ExtractError::Empty);
    }
    Ok(text)
}

pub(super) fn extract_txt(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let text = decode_text(bytes, "text", None)?;
    Ok(Extracted {
        format: Format::Txt,
        title: None,
        pages: vec![Page {
            number: 1,
            blocks: paragraphs(&text),
        }],
        warnings: Vec::new(),
        failed_pages: Vec::new(),
        ocr_pages: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        let s = "年假怎么计算？員工請假規定。";
        let gbk = encoding_rs::GBK.encode("年假怎么计算？病假需要证明。").0;
        assert_eq!(decode(&gbk, None).unwrap(), "年假怎么计算？病假需要证明。");
        let big5 = encoding_rs::BIG5.encode("員工請假規定，須事先申請。").0;
        assert_eq!(decode(&big5, None).unwrap(), "員工請假規定，須事先申請。");
        let mut bom = vec![0xEF, 0xBB, 0xBF];
        bom.extend_from_slice(s.as_bytes());
        assert_eq!(decode(&bom, None).unwrap(), s);
        let mut u16le = vec![0xFF, 0xFE];
        u16le.extend(s.encode_utf16().flat_map(|u| u.to_le_bytes()));
        assert_eq!(decode(&u16le, None).unwrap(), s);
        let u16be: Vec<u8> = "plain english text"
            .encode_utf16()
            .flat_map(|u| u.to_be_bytes())
            .collect();
        assert_eq!(decode(&u16be, None).unwrap(), "plain english text");
    }

    #[test]
    fn binary_is_refused() {
        let bin: Vec<u8> = (0..4096u32).map(|i| (i * 37 % 256) as u8).collect();
        assert!(matches!(
            decode_text(&bin, "text", None),
            Err(ExtractError::Binary { .. })
        ));
        assert!(!is_binary("正常文本\n第二行".as_bytes()));
    }
}
