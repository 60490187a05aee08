//! Markdown: headings kept as heading blocks; paragraphs, list items, table rows and code as
//! text.

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use super::text::decode_text;
use super::{Block, ExtractError, Extracted, Format, Page};

pub(super) fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let text = decode_text(bytes, "markdown", None)?;
    let mut blocks = Vec::new();
    let mut cur = String::new();
    let mut heading: Option<u8> = None;
    let flush = |cur: &mut String, heading: Option<u8>, blocks: &mut Vec<Block>| {
        let t = cur.trim();
        if !t.is_empty() {
            blocks.push(match heading {
                Some(l) => Block::heading(l, t),
                None => Block::para(t),
            });
        }
        cur.clear();
    };
    for ev in Parser::new_ext(&text, Options::ENABLE_TABLES) {
        match ev {
            Event::Start(Tag::Heading { level, .. }) => {
                flush(&mut cur, None, &mut blocks);
                heading = Some(match level {
                    HeadingLevel::H1 => 1,
                    HeadingLevel::H2 => 2,
                    HeadingLevel::H3 => 3,
                    HeadingLevel::H4 => 4,
                    HeadingLevel::H5 => 5,
                    HeadingLevel::H6 => 6,
                });
            }
            Event::End(TagEnd::Heading(_)) => {
                flush(&mut cur, heading, &mut blocks);
                heading = None;
            }
            Event::End(
                TagEnd::Paragraph
                | TagEnd::Item
                | TagEnd::TableRow
                | TagEnd::TableHead
                | TagEnd::CodeBlock,
            ) => flush(&mut cur, None, &mut blocks),
            Event::End(TagEnd::TableCell) => cur.push_str(" | "),
            Event::Text(t) | Event::Code(t) => cur.push_str(&t),
            Event::SoftBreak | Event::HardBreak => cur.push('\n'),
            _ => {}
        }
    }
    flush(&mut cur, None, &mut blocks);
    if blocks.is_empty() {
        return Err(ExtractError::NoText("the Markdown file has no text".into()));
    }
    let title = blocks
        .iter()
        .find(|b| b.heading_level == Some(1))
        .map(|b| b.text.clone());
    Ok(Extracted {
        format: Format::Markdown,
        title,
        pages: vec![Page { number: 1, blocks }],
        warnings: Vec::new(),
        failed_pages: Vec::new(),
        ocr_pages: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_headings_and_text() {
        let md = "# 远程办公指南\n\n## 适用范围\n转正后的员工可以申请。\n\n- 每周最多两天\n- 需经理批准\n\n| 项目 | 标准 |\n|---|---|\n| 补贴 | 300元 |\n";
        let x = extract(md.as_bytes()).unwrap();
        assert_eq!(x.title.as_deref(), Some("远程办公指南"));
        let b = &x.pages[0].blocks;
        assert_eq!(b[0], Block::heading(1, "远程办公指南"));
        assert_eq!(b[1], Block::heading(2, "适用范围"));
        assert_eq!(b[2].text, "转正后的员工可以申请。");
        assert!(b.iter().any(|x| x.text == "每周最多两天"));
        assert!(
            b.iter()
                .any(|x| x.text.contains("补贴") && x.text.contains("300元"))
        );
    }
}
