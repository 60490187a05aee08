//! HTML: script, style and navigation dropped; h1–h6 kept as headings; block elements become
//! paragraphs; the title from <title>. The charset comes from a BOM, valid UTF-8, the
//! document's <meta charset>, or detection.

use scraper::{ElementRef, Html, Node, Selector};

use super::text::decode_text;
use super::{Block, ExtractError, Extracted, Format, Page};

const SKIP: &[&str] = &[
    "script", "style", "noscript", "nav", "template", "svg", "head", "iframe", "button", "form",
];
const BLOCK: &[&str] = &[
    "p",
    "div",
    "li",
    "tr",
    "section",
    "article",
    "main",
    "header",
    "footer",
    "aside",
    "blockquote",
    "pre",
    "table",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "figure",
    "figcaption",
    "br",
    "hr",
    "td",
    "th",
];

fn meta_charset(bytes: &[u8]) -> Option<String> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(2048)]).to_lowercase();
    let i = head.find("charset=")? + "charset=".len();
    let rest = head[i..].trim_start_matches(['"', '\'']);
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))?;
    Some(rest[..end].to_string())
}

fn walk(el: ElementRef<'_>, blocks: &mut Vec<Block>, cur: &mut String) {
    for child in el.children() {
        match child.value() {
            Node::Text(t) => {
                let s = t.trim_matches(|c: char| c.is_whitespace() && c != '\u{3000}');
                if !s.is_empty() {
                    if !cur.is_empty()
                        && !cur.ends_with(char::is_whitespace)
                        && t.starts_with(char::is_whitespace)
                    {
                        cur.push(' ');
                    }
                    cur.push_str(&s.split_whitespace().collect::<Vec<_>>().join(" "));
                    if t.ends_with(char::is_whitespace) {
                        cur.push(' ');
                    }
                }
            }
            Node::Element(e) => {
                let name = e.name();
                if SKIP.contains(&name) {
                    continue;
                }
                let Some(child_el) = ElementRef::wrap(child) else {
                    continue;
                };
                let level = match name {
                    "h1" => Some(1),
                    "h2" => Some(2),
                    "h3" => Some(3),
                    "h4" => Some(4),
                    "h5" => Some(5),
                    "h6" => Some(6),
                    _ => None,
                };
                if let Some(l) = level {
                    flush(cur, blocks);
                    let text: String = child_el.text().collect::<Vec<_>>().join("");
                    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                    if !text.is_empty() {
                        blocks.push(Block::heading(l, text));
                    }
                } else if BLOCK.contains(&name) {
                    flush(cur, blocks);
                    walk(child_el, blocks, cur);
                    flush(cur, blocks);
                } else {
                    walk(child_el, blocks, cur);
                }
            }
            _ => {}
        }
    }
}

fn flush(cur: &mut String, blocks: &mut Vec<Block>) {
    let t = cur.trim();
    if !t.is_empty() {
        blocks.push(Block::para(t));
    }
    cur.clear();
}

pub(super) fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let text = decode_text(bytes, "html", meta_charset(bytes).as_deref())?;
    let doc = Html::parse_document(&text);
    let title_sel = Selector::parse("title").expect("valid selector");
    let body_sel = Selector::parse("body").expect("valid selector");
    let title = doc
        .select(&title_sel)
        .next()
        .map(|t| t.text().collect::<String>().trim().to_string())
        .filter(|t| !t.is_empty());
    let root = doc
        .select(&body_sel)
        .next()
        .unwrap_or_else(|| doc.root_element());
    let mut blocks = Vec::new();
    let mut cur = String::new();
    walk(root, &mut blocks, &mut cur);
    flush(&mut cur, &mut blocks);
    if blocks.is_empty() {
        return Err(ExtractError::NoText(
            "the HTML page has no visible text".into(),
        ));
    }
    let title = title.or_else(|| {
        blocks
            .iter()
            .find(|b| b.heading_level == Some(1))
            .map(|b| b.text.clone())
    });
    Ok(Extracted {
        format: Format::Html,
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
    fn html_text_headings_title() {
        let html = r#"<!doctype html><html><head><meta charset="gbk"><title>报销指南</title><style>p{color:red}</style></head>
<body><nav>首页 | 关于</nav><h1>差旅报销</h1><p>出差返回后<b>10个工作日</b>内提交。</p><script>var x = 1;</script>
<h2>住宿</h2><ul><li>一线城市 600 元</li><li>其他城市 350 元</li></ul></body></html>"#;
        let bytes = encoding_rs::GBK.encode(html).0;
        let x = extract(&bytes).unwrap();
        assert_eq!(x.title.as_deref(), Some("报销指南"));
        let b = &x.pages[0].blocks;
        assert_eq!(b[0], Block::heading(1, "差旅报销"));
        assert_eq!(b[1].text, "出差返回后10个工作日内提交。");
        assert_eq!(b[2], Block::heading(2, "住宿"));
        assert!(b.iter().any(|x| x.text == "一线城市 600 元"));
        assert!(b.iter().all(|x| !x.text.contains("var x")
            && !x.text.contains("color")
            && !x.text.contains("首页")));
    }
}
