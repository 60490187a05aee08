//! Content sniffing: is a file what its name says it is?
//!
//! Uploads are typed by content, not by name: a `.pdf` must start with a PDF header, a
//! `.docx` must be a zip holding `word/document.xml`, a text file (`.txt`, `.md`, `.html`, …)
//! must decode as text without NUL bytes. A program renamed `报告.pdf` is refused here, with
//! a message that says what the file really is, before anything is stored or parsed.
//!
//! Only the start of a file is read (and, for a `.docx`, the zip's central directory), so
//! checking a large upload costs next to nothing.

use std::io::{Read, Seek};

use crate::extract::{Format, text};

/// Bytes read from the start of a file to judge it.
const HEAD: usize = 64 * 1024;

/// Why a file is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SniffError {
    #[error(
        "unsupported file type `{extension}` (supported: pdf, docx, pptx, xlsx, xls, ods, txt, md, html, png, jpg, tiff, bmp, webp, doc, ppt)"
    )]
    Unsupported { extension: String },
    #[error("the file is empty")]
    Empty,
    #[error("not {expected}: {found}")]
    Mismatch {
        expected: &'static str,
        found: String,
    },
    #[error("cannot read the file: {0}")]
    Io(String),
}

impl SniffError {
    /// The file's type is the problem (unsupported, or content not matching the name), as
    /// opposed to an empty or unreadable file.
    pub fn is_wrong_type(&self) -> bool {
        matches!(self, Self::Unsupported { .. } | Self::Mismatch { .. })
    }
}

/// The format a file name promises (by extension), or why it is not supported.
pub fn format_of(file_name: &str) -> Result<Format, SniffError> {
    Format::from_name(file_name).ok_or_else(|| SniffError::Unsupported {
        extension: file_name
            .rsplit_once('.')
            .filter(|(_, e)| !e.contains('/'))
            .map(|(_, e)| format!(".{e}"))
            .unwrap_or_else(|| "(no extension)".into()),
    })
}

/// Check that the content of `file_name` matches its extension; returns its format.
pub fn check<R: Read + Seek>(file_name: &str, mut reader: R) -> Result<Format, SniffError> {
    let format = format_of(file_name)?;
    let mut head = Vec::with_capacity(HEAD);
    (&mut reader)
        .take(HEAD as u64)
        .read_to_end(&mut head)
        .map_err(|e| SniffError::Io(e.to_string()))?;
    let complete = head.len() < HEAD;
    if head.is_empty() || (complete && head.iter().all(|b| b.is_ascii_whitespace())) {
        return Err(SniffError::Empty);
    }
    let lower = file_name.to_ascii_lowercase();
    if (lower.ends_with(".doc") || lower.ends_with(".ppt")) && head.starts_with(OLE2) {
        // A legacy Office file, named as one: converted (or refused with how) at extraction.
        return Ok(format);
    }
    match format {
        Format::Pdf => check_pdf(&head),
        Format::Docx => check_ooxml(
            &head,
            reader,
            "a Word document (.docx)",
            "word/document.xml",
        ),
        Format::Pptx => check_ooxml(
            &head,
            reader,
            "a PowerPoint presentation (.pptx)",
            "ppt/presentation.xml",
        ),
        Format::Image => check_image(&head),
        Format::Txt | Format::Markdown | Format::Html => check_text(&head, complete, format),
        Format::Sheet => check_sheet(file_name, &head, reader),
    }?;
    Ok(format)
}

/// [`check`] on bytes in memory.
pub fn check_bytes(file_name: &str, bytes: &[u8]) -> Result<Format, SniffError> {
    check(file_name, std::io::Cursor::new(bytes))
}

fn mismatch(expected: &'static str, head: &[u8], otherwise: &str) -> SniffError {
    SniffError::Mismatch {
        expected,
        found: match describe(head) {
            Some(what) => format!("the content is {what}"),
            None => otherwise.to_string(),
        },
    }
}

/// The OLE2 compound file signature (.doc, .xls, .ppt).
const OLE2: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

fn check_image(head: &[u8]) -> Result<(), SniffError> {
    const IMAGES: &[&[u8]] = &[
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff",
        b"II*\0",
        b"MM\0*",
        b"BM",
    ];
    let webp = head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP";
    if webp || IMAGES.iter().any(|m| head.starts_with(m)) {
        return Ok(());
    }
    Err(mismatch(
        "an image (PNG, JPEG, TIFF, BMP, WebP)",
        head,
        "it has no image signature",
    ))
}

fn check_pdf(head: &[u8]) -> Result<(), SniffError> {
    // The header may follow a little junk; readers accept it within the first 1024 bytes.
    let start = &head[..head.len().min(1024)];
    if start.windows(5).any(|w| w == b"%PDF-") {
        return Ok(());
    }
    Err(mismatch(
        "a PDF",
        head,
        "there is no %PDF- header in its first 1024 bytes",
    ))
}

/// The Office Open XML zips a .docx or .pptx may turn out to be: (main part, what it is and
/// how to name it).
const OOXML: &[(&str, &str)] = &[
    (
        "word/document.xml",
        "the content is a Word document; name it .docx",
    ),
    (
        "xl/workbook.xml",
        "the content is an Excel workbook; name it .xlsx",
    ),
    (
        "ppt/presentation.xml",
        "the content is a PowerPoint presentation; name it .pptx",
    ),
];

/// A .docx or .pptx: a zip holding `main_part`; another Office zip is named for what it is.
fn check_ooxml<R: Read + Seek>(
    head: &[u8],
    mut reader: R,
    expected: &'static str,
    main_part: &str,
) -> Result<(), SniffError> {
    if !head.starts_with(b"PK\x03\x04") {
        return Err(mismatch(
            expected,
            head,
            "it is not a zip-based Office file",
        ));
    }
    reader.rewind().map_err(|e| SniffError::Io(e.to_string()))?;
    let zip = zip::ZipArchive::new(reader).map_err(|e| SniffError::Mismatch {
        expected,
        found: format!("it is not a readable zip archive ({e})"),
    })?;
    let has = |name: &str| zip.index_for_name(name).is_some();
    if has(main_part) {
        return Ok(());
    }
    let found = OOXML
        .iter()
        .find(|(part, _)| *part != main_part && has(part))
        .map_or_else(
            || format!("it is a zip archive without {main_part}"),
            |(_, what)| what.to_string(),
        );
    Err(SniffError::Mismatch { expected, found })
}

/// XLSX/ODS are zips with `xl/workbook.xml` / `content.xml`; XLS is an OLE2 compound file.
fn check_sheet<R: Read + Seek>(
    file_name: &str,
    head: &[u8],
    mut reader: R,
) -> Result<(), SniffError> {
    const EXPECTED: &str = "a spreadsheet (.xlsx, .xls, .ods)";
    if head.starts_with(OLE2) {
        if file_name.to_ascii_lowercase().ends_with(".xls") {
            return Ok(());
        }
        return Err(SniffError::Mismatch {
            expected: EXPECTED,
            found: "the content is a legacy binary Office file; name it .xls if it is one".into(),
        });
    }
    if !head.starts_with(b"PK\x03\x04") {
        return Err(mismatch(EXPECTED, head, "it is not a spreadsheet file"));
    }
    reader.rewind().map_err(|e| SniffError::Io(e.to_string()))?;
    let zip = zip::ZipArchive::new(reader).map_err(|e| SniffError::Mismatch {
        expected: EXPECTED,
        found: format!("it is not a readable zip archive ({e})"),
    })?;
    if zip.index_for_name("xl/workbook.xml").is_some()
        || zip.index_for_name("content.xml").is_some()
    {
        return Ok(());
    }
    Err(SniffError::Mismatch {
        expected: EXPECTED,
        found: "it is a zip archive without a workbook".into(),
    })
}

fn check_text(head: &[u8], complete: bool, format: Format) -> Result<(), SniffError> {
    let expected = match format {
        Format::Html => "an HTML page",
        Format::Markdown => "a Markdown text",
        _ => "a text file",
    };
    if let Some(what) = describe(head) {
        return Err(SniffError::Mismatch {
            expected,
            found: format!("the content is {what}"),
        });
    }
    if text::is_binary(head) {
        return Err(SniffError::Mismatch {
            expected,
            found: "it contains binary data (NUL or control bytes)".into(),
        });
    }
    // A head cut from a longer file may end inside a UTF-8 character.
    let sample = if complete {
        head
    } else {
        match std::str::from_utf8(head) {
            Err(e) if e.error_len().is_none() => &head[..e.valid_up_to()],
            _ => head,
        }
    };
    text::decode(sample, None).map_err(|e| SniffError::Mismatch {
        expected,
        found: e.to_string(),
    })?;
    Ok(())
}

/// What a file is, by its magic bytes, for the formats people mistake for documents.
pub fn describe(head: &[u8]) -> Option<&'static str> {
    const MAGIC: &[(&[u8], &str)] = &[
        (b"%PDF-", "a PDF"),
        (b"MZ", "a Windows program (.exe or .dll)"),
        (b"\x7fELF", "a Linux program (ELF)"),
        (b"\xca\xfe\xba\xbe", "a macOS or Java program"),
        (b"\xcf\xfa\xed\xfe", "a macOS program"),
        (
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
            "an old-format Office file (.doc, .xls or .ppt); save it as .docx or PDF",
        ),
        (b"PK\x03\x04", "a zip archive (or a zip-based Office file)"),
        (b"PK\x05\x06", "an empty zip archive"),
        (b"Rar!\x1a\x07", "a RAR archive"),
        (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
        (b"\x1f\x8b", "a gzip archive"),
        (b"\x89PNG\r\n\x1a\n", "a PNG image"),
        (b"II*\0", "a TIFF image"),
        (b"MM\0*", "a TIFF image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"GIF87a", "a GIF image"),
        (b"GIF89a", "a GIF image"),
        (b"{\\rtf", "an RTF document; save it as .docx or PDF"),
    ];
    MAGIC
        .iter()
        .find(|(magic, _)| head.starts_with(magic))
        .map(|(_, what)| *what)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn docx_with(part: &str) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            let o = zip::write::SimpleFileOptions::default();
            z.start_file(part, o).unwrap();
            z.write_all(b"<xml/>").unwrap();
            z.finish().unwrap();
        }
        buf.into_inner()
    }

    #[test]
    fn documents_pass_when_content_matches_the_name() {
        assert_eq!(
            check_bytes("a.pdf", b"%PDF-1.7\n%\xe2\xe3\n1 0 obj"),
            Ok(Format::Pdf)
        );
        assert_eq!(
            check_bytes("政策/a.docx", &docx_with("word/document.xml")),
            Ok(Format::Docx)
        );
        assert_eq!(
            check_bytes("休假制度.txt", "年休假五天。\n".as_bytes()),
            Ok(Format::Txt)
        );
        let gbk = encoding_rs::GBK.encode("病假需要证明。").0;
        assert_eq!(check_bytes("gbk.TXT", &gbk), Ok(Format::Txt));
        assert_eq!(
            check_bytes("p.html", b"<html><title>t</title></html>"),
            Ok(Format::Html)
        );
        assert_eq!(
            check_bytes("r.md", b"# Title\n\ntext"),
            Ok(Format::Markdown)
        );
    }

    #[test]
    fn a_program_renamed_pdf_is_refused_with_what_it_is() {
        let mut exe = b"MZ\x90\x00\x03\x00\x00\x00".to_vec();
        exe.extend(std::iter::repeat_n(0u8, 500));
        let e = check_bytes("报告.pdf", &exe).unwrap_err();
        assert!(e.is_wrong_type());
        assert_eq!(
            e.to_string(),
            "not a PDF: the content is a Windows program (.exe or .dll)"
        );
        let e = check_bytes("x.txt", &exe).unwrap_err().to_string();
        assert!(
            e.contains("not a text file") && e.contains("Windows program"),
            "{e}"
        );
        let e = check_bytes("x.docx", &exe).unwrap_err().to_string();
        assert!(e.contains("Windows program"), "{e}");
    }

    #[test]
    fn mismatches_and_unsupported_types() {
        let e = check_bytes("a.pdf", b"just some text").unwrap_err();
        assert!(e.to_string().contains("no %PDF- header"), "{e}");
        let e = check_bytes("a.docx", &docx_with("xl/workbook.xml")).unwrap_err();
        assert!(e.to_string().contains("Excel workbook"), "{e}");
        let e = check_bytes("a.txt", b"%PDF-1.4 ...").unwrap_err();
        assert!(e.to_string().contains("the content is a PDF"), "{e}");
        let bin: Vec<u8> = (0..4096u32).map(|i| (i * 37 % 256) as u8).collect();
        let e = check_bytes("a.md", &bin).unwrap_err();
        assert!(e.to_string().contains("binary data"), "{e}");
        let e = check_bytes("setup.exe", b"MZ").unwrap_err();
        assert!(e.is_wrong_type());
        assert!(e.to_string().contains("`.exe`"), "{e}");
        let e = check_bytes("目录/README", b"text").unwrap_err();
        assert!(e.to_string().contains("(no extension)"), "{e}");
        assert_eq!(check_bytes("a.txt", b"  \n"), Err(SniffError::Empty));
        assert!(!SniffError::Empty.is_wrong_type());
    }

    #[test]
    fn long_text_cut_inside_a_character_is_still_text() {
        // 64 KiB boundary falls inside a 3-byte character.
        let text = format!("ab{}", "年".repeat(HEAD / 3 + 10));
        assert_eq!(check_bytes("long.txt", text.as_bytes()), Ok(Format::Txt));
    }
}
