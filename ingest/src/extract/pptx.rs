//! PPTX: one page per slide, numbered as PowerPoint shows them (the order of
//! `ppt/presentation.xml`'s slide list), so `page` is the slide number and a citation can say
//! "slide N". A slide is its title (a heading), its shapes' text in shape order (group shapes
//! included), its tables rendered row by row with the header (like sheet rows, see
//! [`super::table`]), and its speaker notes (`备注/Notes: …`). Slide numbers, dates and footers
//! (placeholders repeated on every slide) are left out.

use std::collections::HashMap;
use std::io::Cursor;

use quick_xml::Reader;
use quick_xml::events::Event;

use super::docx::{attr, core_title, push_ref, zip_part};
use super::table::{self, Cell};
use super::{Block, ExtractError, Extracted, Format, Page};

fn part(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
) -> Result<Option<String>, ExtractError> {
    zip_part(zip, name, ExtractError::Pptx)
}

/// `Id → Target` of a `.rels` part, targets resolved against `base` (the folder of the part
/// the relationships belong to), keeping only relationships whose type ends in `kind`.
fn rels(xml: &str, base: &str, kind: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut reader = Reader::from_str(xml);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e))
                if e.local_name().as_ref() == b"Relationship" =>
            {
                let ty = attr(&e, b"Type").unwrap_or_default();
                if let (Some(id), Some(target)) = (attr(&e, b"Id"), attr(&e, b"Target"))
                    && ty.ends_with(kind)
                {
                    out.insert(id, resolve(base, &target));
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    out
}

/// A relationship target relative to `base` ("ppt/slides") → a zip path.
fn resolve(base: &str, target: &str) -> String {
    if let Some(abs) = target.strip_prefix('/') {
        return abs.to_string();
    }
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for p in target.split('/') {
        match p {
            ".." => {
                parts.pop();
            }
            "." | "" => {}
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Slide parts in presentation order.
fn slide_parts(presentation: &str, rels_xml: &str) -> Vec<String> {
    let targets = rels(rels_xml, "ppt", "/slide");
    let mut out = Vec::new();
    let mut reader = Reader::from_str(presentation);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) if e.local_name().as_ref() == b"sldId" => {
                // The relationship id attribute is `r:id`: local name `id`, but so is the
                // numeric `id`; take the one whose value is a known relationship.
                for a in e.attributes().flatten() {
                    if let Ok(v) = a.unescape_value()
                        && let Some(t) = targets.get(v.as_ref())
                    {
                        out.push(t.clone());
                        break;
                    }
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    out
}

/// What one slide (or notes) part holds.
#[derive(Default)]
struct SlideText {
    title: Vec<String>,
    /// Body blocks in shape order.
    blocks: Vec<Block>,
}

/// The shape being read.
#[derive(Default)]
struct Shape {
    placeholder: Option<String>,
    paras: Vec<String>,
}

#[derive(Default)]
struct TableState {
    rows: Vec<Vec<Cell>>,
    row: Option<Vec<Cell>>,
    cell: Option<Cell>,
    /// The open cell is a horizontal-merge continuation (covered by a gridSpan): dropped.
    skip_cell: bool,
}

/// Placeholders that repeat on every slide or hold no content of their own.
fn boilerplate(placeholder: &str) -> bool {
    matches!(placeholder, "sldNum" | "dt" | "ftr" | "hdr" | "sldImg")
}

fn read_slide(xml: &str) -> Result<SlideText, ExtractError> {
    let mut out = SlideText::default();
    let mut reader = Reader::from_str(xml);
    let mut shapes: Vec<Shape> = Vec::new();
    let mut tables: Vec<TableState> = Vec::new();
    let mut para = String::new();
    let mut in_text = false;
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| ExtractError::Pptx(format!("slide XML: {e}")))?;
        let is_start = matches!(ev, Event::Start(_));
        match ev {
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                b"sp" => shapes.push(Shape::default()),
                b"ph" => {
                    if let Some(s) = shapes.last_mut() {
                        // No type: a body/content placeholder.
                        s.placeholder = Some(attr(&e, b"type").unwrap_or_else(|| "body".into()));
                    }
                }
                b"tbl" => tables.push(TableState::default()),
                b"tr" => {
                    if let Some(t) = tables.last_mut() {
                        t.row = Some(Vec::new());
                    }
                }
                b"tc" => {
                    if let Some(t) = tables.last_mut() {
                        let mut c = Cell::new("");
                        c.span = attr(&e, b"gridSpan")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(1);
                        c.merged_from_above =
                            attr(&e, b"vMerge").is_some_and(|v| v == "1" || v == "true");
                        t.skip_cell = attr(&e, b"hMerge").is_some_and(|v| v == "1" || v == "true");
                        t.cell = Some(c);
                    }
                }
                b"p" => para.clear(),
                b"t" => in_text = is_start,
                b"br" => para.push('\n'),
                _ => {}
            },
            Event::Text(t) if in_text => {
                para.push_str(&t.decode().map_err(|e| ExtractError::Pptx(e.to_string()))?)
            }
            Event::GeneralRef(r) if in_text => push_ref(&r, &mut para),
            Event::End(e) => match e.local_name().as_ref() {
                b"t" => in_text = false,
                b"p" => {
                    let text = para.trim().to_string();
                    para.clear();
                    if text.is_empty() {
                        continue;
                    }
                    if let Some(c) = tables.last_mut().and_then(|t| t.cell.as_mut()) {
                        if !c.text.is_empty() {
                            c.text.push('\n');
                        }
                        c.text.push_str(&text);
                    } else if let Some(s) = shapes.last_mut() {
                        s.paras.push(text);
                    }
                }
                b"tc" => {
                    if let Some(t) = tables.last_mut()
                        && let Some(c) = t.cell.take()
                        && !std::mem::take(&mut t.skip_cell)
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
                        out.blocks
                            .extend(table::render(&t.rows).into_iter().map(Block::row));
                    }
                }
                b"sp" => {
                    let Some(s) = shapes.pop() else { continue };
                    match s.placeholder.as_deref() {
                        Some("title" | "ctrTitle") => out.title.extend(s.paras),
                        Some(p) if boilerplate(p) => {}
                        _ => out.blocks.extend(s.paras.into_iter().map(Block::para)),
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

pub(super) fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| ExtractError::Pptx(format!("not a PPTX (zip) file: {e}")))?;
    let presentation = part(&mut zip, "ppt/presentation.xml")?
        .ok_or_else(|| ExtractError::Pptx("ppt/presentation.xml is missing".into()))?;
    let rels_xml = part(&mut zip, "ppt/_rels/presentation.xml.rels")?
        .ok_or_else(|| ExtractError::Pptx("ppt/_rels/presentation.xml.rels is missing".into()))?;
    let title = part(&mut zip, "docProps/core.xml")?.and_then(|s| core_title(&s));
    let slides = slide_parts(&presentation, &rels_xml);
    if slides.is_empty() {
        return Err(ExtractError::NoText(
            "the presentation has no slides".into(),
        ));
    }
    let mut pages = Vec::new();
    let mut warnings = Vec::new();
    for (i, path) in slides.iter().enumerate() {
        let number = i as u32 + 1;
        let Some(xml) = part(&mut zip, path)? else {
            warnings.push(format!("slide {number}: {path} is missing, skipped"));
            continue;
        };
        let slide = read_slide(&xml)?;
        let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
        let notes_target = part(&mut zip, &format!("{dir}/_rels/{file}.rels"))?
            .and_then(|r| rels(&r, dir, "/notesSlide").into_values().next());
        let notes = match notes_target {
            Some(n) => match part(&mut zip, &n)? {
                Some(xml) => read_slide(&xml)?
                    .blocks
                    .into_iter()
                    .map(|b| b.text)
                    .collect::<Vec<_>>(),
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        let mut blocks = Vec::new();
        let heading = slide.title.join(" ");
        // Every slide starts a section, so a slide without a title does not inherit the
        // previous slide's.
        blocks.push(if heading.is_empty() {
            Block::heading(1, format!("Slide {number}"))
        } else {
            Block::heading(1, heading)
        });
        let has_body = !slide.blocks.is_empty() || !notes.is_empty();
        blocks.extend(slide.blocks);
        if !notes.is_empty() {
            blocks.push(Block::para(format!("备注/Notes: {}", notes.join("\n"))));
        }
        if !has_body && slide.title.is_empty() {
            warnings.push(format!(
                "slide {number}: no text (pictures only?), nothing indexed"
            ));
            continue;
        }
        pages.push(Page { number, blocks });
    }
    if pages.is_empty() {
        return Err(ExtractError::NoText(format!(
            "none of the {} slides has text",
            slides.len()
        )));
    }
    Ok(Extracted {
        format: Format::Pptx,
        title,
        pages,
        warnings,
        failed_pages: Vec::new(),
        ocr_pages: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relationship_targets_resolve() {
        assert_eq!(resolve("ppt", "slides/slide1.xml"), "ppt/slides/slide1.xml");
        assert_eq!(
            resolve("ppt/slides", "../notesSlides/notesSlide2.xml"),
            "ppt/notesSlides/notesSlide2.xml"
        );
        assert_eq!(resolve("ppt", "/ppt/slides/s.xml"), "ppt/slides/s.xml");
    }

    #[test]
    fn corrupt_pptx() {
        assert!(matches!(
            extract(b"PK\x03\x04 broken"),
            Err(ExtractError::Pptx(_))
        ));
    }
}
