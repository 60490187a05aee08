//! Cleaning: compatibility characters folded where that is safe for Chinese text, widths and
//! whitespace normalised, control and zero-width characters removed, repeated PDF page
//! headers/footers dropped, wrapped PDF lines re-joined.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::extract::Page;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CleanConfig {
    /// Fold compatibility characters (Kangxi radicals and CJK compatibility ideographs that
    /// PDFs emit, ligatures, half-width katakana, full-width letters and digits) to their
    /// normal forms. Chinese punctuation (，。！？；：（）) is kept. Default true.
    pub normalize: bool,
    /// Drop lines repeated at the top or bottom of most PDF pages (running headers, page
    /// numbers). Default true.
    pub drop_headers_footers: bool,
    /// Re-join PDF lines that were wrapped mid-sentence. Default true.
    pub join_wrapped_lines: bool,
}

impl Default for CleanConfig {
    fn default() -> Self {
        Self {
            normalize: true,
            drop_headers_footers: true,
            join_wrapped_lines: true,
        }
    }
}

/// Chinese full-width punctuation that stays full width (the chunker and readers rely on it).
const KEEP_FULLWIDTH: &str = "！（），：；？［］｛｝";

fn is_cjk(c: char) -> bool {
    crate::extract::is_cjk_char(c)
}

fn fold_char(c: char, out: &mut String) {
    let u = c as u32;
    match u {
        // Full-width ASCII variants, except Chinese punctuation.
        0xFF01..=0xFF5E if !KEEP_FULLWIDTH.contains(c) => {
            out.push(char::from_u32(u - 0xFEE0).unwrap_or(c))
        }
        0x3000 | 0x00A0 | 0x2007 | 0x202F => out.push(' '),
        // Kangxi radicals, CJK radicals supplement, CJK compatibility ideographs, ligatures,
        // half-width katakana, enclosed/compat CJK: NFKC.
        0x2E80..=0x2FDF
        | 0xF900..=0xFAFF
        | 0xFB00..=0xFB4F
        | 0xFF61..=0xFF9F
        | 0x2F800..=0x2FA1F => {
            unicode_normalization::char::decompose_compatible(c, |d| out.push(d))
        }
        _ => out.push(c),
    }
}

/// Clean one block of text.
pub fn clean_text(text: &str, config: &CleanConfig) -> String {
    let mut folded = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => {}
            '\r' => {}
            '\n' => folded.push('\n'),
            '\t' => folded.push(' '),
            c if c.is_control() => {}
            c if config.normalize => fold_char(c, &mut folded),
            c => folded.push(c),
        }
    }
    // Whitespace: collapse runs, trim lines, at most one blank line, no space between two
    // CJK characters (PDF extraction inserts them).
    let mut out = String::with_capacity(folded.len());
    let mut blank = 0;
    for line in folded.lines() {
        let chars: Vec<char> = line.trim().chars().collect();
        if chars.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == ' ' {
                let mut j = i;
                while j < chars.len() && chars[j] == ' ' {
                    j += 1;
                }
                let prev = out.chars().last();
                let next = chars.get(j).copied();
                let between_cjk = prev.is_some_and(|p| is_cjk(p) || is_cjk_punct(p))
                    && next.is_some_and(|n| is_cjk(n) || is_cjk_punct(n));
                if !between_cjk {
                    out.push(' ');
                }
                i = j;
            } else {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn is_cjk_punct(c: char) -> bool {
    matches!(c as u32, 0x3000..=0x303F | 0xFF01..=0xFF0F | 0xFF1A..=0xFF1F)
}

fn line_key(line: &str) -> String {
    line.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

/// Drop running headers and footers: a first or last line (two of each are looked at) that,
/// with digits ignored, recurs on at least half the pages (and on at least two). Returns how
/// many lines were dropped.
pub fn drop_repeated_lines(pages: &mut [Page]) -> usize {
    if pages.len() < 2 {
        return 0;
    }
    let edge = |lines: &[&str]| -> Vec<String> {
        let n = lines.len();
        let mut idx: Vec<usize> = (0..n.min(2)).collect();
        idx.extend(n.saturating_sub(2)..n);
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter().map(|i| line_key(lines[i])).collect()
    };
    let mut counts: HashMap<String, usize> = HashMap::new();
    let texts: Vec<String> = pages.iter().map(page_text).collect();
    for t in &texts {
        let lines: Vec<&str> = t.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut keys = edge(&lines);
        keys.sort();
        keys.dedup();
        for k in keys.into_iter().filter(|k| !k.is_empty()) {
            *counts.entry(k).or_default() += 1;
        }
    }
    let threshold = pages.len().div_ceil(2).max(2);
    let repeated: Vec<&String> = counts
        .iter()
        .filter(|(_, n)| **n >= threshold)
        .map(|(k, _)| k)
        .collect();
    if repeated.is_empty() {
        return 0;
    }
    let mut dropped = 0;
    for (page, text) in pages.iter_mut().zip(&texts) {
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let n = lines.len();
        let kept: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(i, l)| {
                let at_edge = *i < 2 || *i + 2 >= n;
                let drop = at_edge && repeated.contains(&&line_key(l));
                if drop {
                    dropped += 1;
                }
                !drop
            })
            .map(|(_, l)| *l)
            .collect();
        page.blocks = vec![crate::extract::Block::para(kept.join("\n"))];
    }
    dropped
}

fn page_text(p: &Page) -> String {
    p.blocks
        .iter()
        .map(|b| b.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Re-join lines wrapped by the PDF layout. A line that ends a sentence, or is clearly
/// shorter than the page's full lines (a heading, the end of a paragraph), ends a paragraph.
pub fn join_wrapped_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut widths: Vec<usize> = lines
        .iter()
        .map(|l| display_width(l))
        .filter(|w| *w > 0)
        .collect();
    widths.sort_unstable();
    let full = widths.get(widths.len() * 9 / 10).copied().unwrap_or(0);
    let mut out = String::with_capacity(text.len());
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            if !out.ends_with('\n') && !out.is_empty() {
                out.push('\n');
            }
            continue;
        }
        out.push_str(line);
        let Some(next) = lines.get(i + 1).map(|l| l.trim()) else {
            break;
        };
        if next.is_empty() {
            continue;
        }
        let last = line.chars().last().unwrap_or(' ');
        let ends_sentence = "。！？；：!?;:".contains(last)
            || (last == '.' && !next.starts_with(char::is_lowercase));
        let short = display_width(line) * 10 < full * 8;
        if ends_sentence || short {
            out.push('\n');
        } else {
            let first = next.chars().next().unwrap_or(' ');
            if !(is_cjk(last) || is_cjk_punct(last) || is_cjk(first) || is_cjk_punct(first)) {
                out.push(' ');
            }
        }
    }
    out
}

/// Width in half-width units: CJK characters count two.
fn display_width(s: &str) -> usize {
    s.trim()
        .chars()
        .map(|c| if is_cjk(c) || is_cjk_punct(c) { 2 } else { 1 })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::Block;

    #[test]
    fn folds_widths_and_compat_but_keeps_chinese_punctuation() {
        let c = CleanConfig::default();
        assert_eq!(clean_text("ＡＢＣ１２３，ｘ＠ｙ。", &c), "ABC123，x@y。");
        assert_eq!(
            clean_text("⼈⼒资源", &c),
            "人力资源",
            "Kangxi radicals folded"
        );
        assert_eq!(clean_text("ﬁle", &c), "file");
        assert_eq!(clean_text("年假（带薪）！", &c), "年假（带薪）！");
    }

    #[test]
    fn whitespace_and_controls() {
        let c = CleanConfig::default();
        assert_eq!(
            clean_text("年 假  制 度\u{200B}\u{0007}\r\n\n\n\nA  B\tC", &c),
            "年假制度\n\nA B C"
        );
        assert_eq!(clean_text("  上海 Pudong 区  ", &c), "上海 Pudong 区");
    }

    #[test]
    fn headers_and_footers_dropped() {
        let mut pages: Vec<Page> = (1..=4)
            .map(|n| Page {
                number: n,
                blocks: vec![Block::para(format!("华远科技 内部资料\n第{n}页正文内容，各不相同。\n这是第{n}页。\n第 {n} 页 共 4 页"))],
            })
            .collect();
        assert_eq!(drop_repeated_lines(&mut pages), 8);
        assert_eq!(
            pages[2].blocks[0].text,
            "第3页正文内容，各不相同。\n这是第3页。"
        );
    }

    #[test]
    fn wrapped_lines_rejoined() {
        let t = "第一章 总则\n第一条 为规范公司差旅费用管理，合理控制\n成本，根据国家有关财务制度制定本办法。";
        assert_eq!(
            join_wrapped_lines(t),
            "第一章 总则\n第一条 为规范公司差旅费用管理，合理控制成本，根据国家有关财务制度制定本办法。"
        );
        let t = "1. Purpose\nThis policy applies to all employees and\ncontractors of the company in every office.\nIt starts today.";
        assert_eq!(
            join_wrapped_lines(t),
            "1. Purpose\nThis policy applies to all employees and contractors of the company in every office.\nIt starts today."
        );
    }
}
