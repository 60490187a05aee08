//! DOCX: paragraphs of word/document.xml, headings from paragraph styles (English "heading N",
//! Chinese "标题 N", or the style ids Word writes for them), title from docProps/core.xml.
//! Tables stay in document order, each body row one block rendered with its header row
//! (`城市类别: 一线城市 | 员工级别: 经理 | …`, merged cells resolved, see [`super::table`]);
//! a table nested in a cell is flattened into that cell's text.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use quick_xml::Reader;
use quick_xml::events::Event;

use super::table::{self, Cell};
use super::{Block, ExtractError, Extracted, Format, Page};

/// Largest decompressed XML part read (a defence against zip bombs).
const MAX_PART: u64 = 64 << 20;

fn part(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
) -> Result<Option<String>, ExtractError> {
    zip_part(zip, name, ExtractError::Docx)
}

/// One XML part of an Office zip, `None` when absent; `err` makes the format's error.
pub(super) fn zip_part(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    err: fn(String) -> ExtractError,
) -> Result<Option<String>, ExtractError> {
    let file = match zip.by_name(name) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(err(format!("{name}: {e}"))),
    };
    let mut s = String::new();
    file.take(MAX_PART + 1)
        .read_to_string(&mut s)
        .map_err(|e| err(format!("{name}: {e}")))?;
    if s.len() as u64 > MAX_PART {
        return Err(err(format!("{name} is larger than {} MB", MAX_PART >> 20)));
    }
    Ok(Some(s))
}

fn heading_level_of_name(name: &str) -> Option<u8> {
    let n = name.trim().to_lowercase();
    if n == "title" || n == "标题" {
        return Some(1);
    }
    let rest = n
        .strip_prefix("heading")
        .or_else(|| n.strip_prefix("标题"))?
        .trim();
    rest.parse::<u8>().ok().filter(|l| (1..=9).contains(l))
}

/// styleId → heading level, from styles.xml.
fn heading_styles(xml: &str) -> HashMap<String, u8> {
    let mut map = HashMap::new();
    let mut reader = Reader::from_str(xml);
    let mut current: Option<String> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match e.local_name().as_ref() {
                b"style" => {
                    current = attr(&e, b"styleId");
                }
                b"name" => {
                    if let (Some(id), Some(name)) = (&current, attr(&e, b"val"))
                        && let Some(l) = heading_level_of_name(&name)
                    {
                        map.insert(id.clone(), l);
                    }
                }
                _ => {}
            },
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    map
}

pub(super) fn attr(e: &quick_xml::events::BytesStart<'_>, local: &[u8]) -> Option<String> {
    e.attributes().flatten().find_map(|a| {
        (a.key.local_name().as_ref() == local)
            .then(|| a.unescape_value().ok().map(|v| v.into_owned()))
            .flatten()
    })
}

pub(super) fn core_title(xml: &str) -> Option<String> {
    let mut reader = Reader::from_str(xml);
    let mut inside = false;
    let mut out = String::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) if e.local_name().as_ref() == b"title" => inside = true,
            Ok(Event::End(e)) if e.local_name().as_ref() == b"title" => break,
            Ok(Event::Text(t)) if inside => out.push_str(&t.decode().ok()?),
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    let t = out.trim().to_string();
    (!t.is_empty()).then_some(t)
}

pub(super) fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| ExtractError::Docx(format!("not a DOCX (zip) file: {e}")))?;
    let doc = part(&mut zip, "word/document.xml")?
        .ok_or_else(|| ExtractError::Docx("word/document.xml is missing".into()))?;
    let styles = part(&mut zip, "word/styles.xml")?
        .map(|s| heading_styles(&s))
        .unwrap_or_default();
    let title = part(&mut zip, "docProps/core.xml")?.and_then(|s| core_title(&s));

    let mut blocks = Vec::new();
    let mut reader = Reader::from_str(&doc);
    let mut para = String::new();
    let mut level: Option<u8> = None;
    let mut in_text = false;
    // Open tables, innermost last.
    let mut tables: Vec<TableState> = Vec::new();
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| ExtractError::Docx(format!("word/document.xml: {e}")))?;
        match ev {
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                b"p" => {
                    para.clear();
                    level = None;
                }
                b"pStyle" => {
                    if let Some(id) = attr(&e, b"val") {
                        level = styles
                            .get(&id)
                            .copied()
                            .or_else(|| heading_level_of_name(&id));
                    }
                }
                b"outlineLvl" if level.is_none() => {
                    level = attr(&e, b"val")
                        .and_then(|v| v.parse::<u8>().ok())
                        .filter(|l| *l < 9)
                        .map(|l| l + 1);
                }
                b"tbl" => tables.push(TableState::default()),
                b"tr" => {
                    if let Some(t) = tables.last_mut() {
                        t.row = Some(Vec::new());
                    }
                }
                b"tc" => {
                    if let Some(t) = tables.last_mut() {
                        t.cell = Some(Cell::new(""));
                    }
                }
                b"gridSpan" => {
                    if let Some(c) = tables.last_mut().and_then(|t| t.cell.as_mut()) {
                        c.span = attr(&e, b"val").and_then(|v| v.parse().ok()).unwrap_or(1);
                    }
                }
                b"vMerge" => {
                    if let Some(c) = tables.last_mut().and_then(|t| t.cell.as_mut()) {
                        // No val (or "continue"): the cell continues the one above.
                        c.merged_from_above = attr(&e, b"val").is_none_or(|v| v == "continue");
                    }
                }
                b"t" => in_text = true,
                b"tab" => para.push('\t'),
                b"br" | b"cr" => para.push('\n'),
                _ => {}
            },
            Event::Text(t) if in_text => {
                para.push_str(&t.decode().map_err(|e| ExtractError::Docx(e.to_string()))?)
            }
            Event::GeneralRef(r) if in_text => push_ref(&r, &mut para),
            Event::End(e) => match e.local_name().as_ref() {
                b"t" => in_text = false,
                b"p" => {
                    let text = para.trim();
                    if let Some(c) = tables.last_mut().and_then(|t| t.cell.as_mut()) {
                        if !text.is_empty() {
                            if !c.text.is_empty() {
                                c.text.push('\n');
                            }
                            c.text.push_str(text);
                        }
                    } else if !text.is_empty() {
                        blocks.push(match level {
                            Some(l) => Block::heading(l, text),
                            None => Block::para(text),
                        });
                    }
                    para.clear();
                }
                b"tc" => {
                    if let Some(t) = tables.last_mut()
                        && let Some(c) = t.cell.take()
                    {
                        t.row.get_or_insert_with(Vec::new).push(c);
                    }
                }
                b"tr" => {
                    if let Some(t) = tables.last_mut()
                        && let Some(r) = t.row.take()
                    {
                        t.rows.push(r);
                    }
                }
                b"tbl" => {
                    if let Some(t) = tables.pop() {
                        let lines = table::render(&t.rows);
                        match tables.last_mut().and_then(|o| o.cell.as_mut()) {
                            // A nested table: its lines become the outer cell's text.
                            Some(outer) => {
                                for l in lines {
                                    if !outer.text.is_empty() {
                                        outer.text.push('\n');
                                    }
                                    outer.text.push_str(&l);
                                }
                            }
                            None => blocks.extend(lines.into_iter().map(Block::row)),
                        }
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    if blocks.is_empty() {
        return Err(ExtractError::NoText(
            "the document has no text paragraphs".into(),
        ));
    }
    Ok(Extracted {
        format: Format::Docx,
        title,
        pages: vec![Page { number: 1, blocks }],
        warnings: Vec::new(),
        failed_pages: Vec::new(),
        ocr_pages: Vec::new(),
    })
}

/// An entity or character reference inside text (`&amp;`, `&#20013;`).
pub(super) fn push_ref(r: &quick_xml::events::BytesRef<'_>, out: &mut String) {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        out.push(c);
    } else {
        let name = r.decode().unwrap_or_default();
        out.push_str(match name.as_ref() {
            "amp" => "&",
            "lt" => "<",
            "gt" => ">",
            "quot" => "\"",
            "apos" => "'",
            _ => "",
        });
    }
}

/// A table being read: finished rows, the open row and the open cell.
#[derive(Default)]
struct TableState {
    rows: Vec<Vec<Cell>>,
    row: Option<Vec<Cell>>,
    cell: Option<Cell>,
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use super::*;

    /// A minimal real DOCX: styles with a Chinese heading style, two headings, paragraphs.
    pub fn make_docx() -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            let o = zip::write::SimpleFileOptions::default();
            z.start_file("[Content_Types].xml", o).unwrap();
            z.write_all(br#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>"#).unwrap();
            z.start_file("word/styles.xml", o).unwrap();
            z.write_all(r#"<?xml version="1.0" encoding="UTF-8"?><w:styles xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">
<w:style w:type="paragraph" w:styleId="1"><w:name w:val="heading 1"/></w:style>
<w:style w:type="paragraph" w:styleId="a3"><w:name w:val="标题 2"/></w:style></w:styles>"#.as_bytes()).unwrap();
            z.start_file("docProps/core.xml", o).unwrap();
            z.write_all(r#"<?xml version="1.0"?><cp:coreProperties xmlns:cp="c" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>考勤管理制度</dc:title></cp:coreProperties>"#.as_bytes()).unwrap();
            z.start_file("word/document.xml", o).unwrap();
            z.write_all(r#"<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>
<w:p><w:pPr><w:pStyle w:val="1"/></w:pPr><w:r><w:t>第一章 总则</w:t></w:r></w:p>
<w:p><w:r><w:t xml:space="preserve">员工应按时上下班，</w:t></w:r><w:r><w:t>迟到超过30分钟按旷工半天处理。</w:t></w:r></w:p>
<w:p><w:pPr><w:pStyle w:val="a3"/></w:pPr><w:r><w:t>打卡规定</w:t></w:r></w:p>
<w:p><w:r><w:t>R&amp;D 部门实行弹性工作制。</w:t></w:r></w:p>
</w:body></w:document>"#.as_bytes()).unwrap();
            z.finish().unwrap();
        }
        buf.into_inner()
    }

    #[test]
    fn docx_paragraphs_headings_title() {
        let x = extract(&make_docx()).unwrap();
        assert_eq!(x.title.as_deref(), Some("考勤管理制度"));
        let b = &x.pages[0].blocks;
        assert_eq!(b[0], Block::heading(1, "第一章 总则"));
        assert_eq!(
            b[1],
            Block::para("员工应按时上下班，迟到超过30分钟按旷工半天处理。")
        );
        assert_eq!(b[2], Block::heading(2, "打卡规定"));
        assert_eq!(b[3], Block::para("R&D 部门实行弹性工作制。"));
    }

    #[test]
    fn corrupt_docx() {
        assert!(matches!(
            extract(b"PK\x03\x04 broken"),
            Err(ExtractError::Docx(_))
        ));
    }
}
