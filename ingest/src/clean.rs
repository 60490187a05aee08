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

/// A line compared across pages: whitespace removed, and with `mask_digits` every digit
/// replaced, so "第 3 页 共 9 页" and "第 4 页 共 9 页" compare equal.
fn line_key(line: &str, mask_digits: bool) -> String {
    line.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| {
            if mask_digits && c.is_ascii_digit() {
                '#'
            } else {
                c
            }
        })
        .collect()
}

/// The keys a page's line at `index` (of `n`) is compared by: its exact text when it is among
/// the two first or two last lines, and its text with digits masked (page numbers) when it is
/// within `masked_depth` lines of the top or bottom. Empty keys never match.
fn edge_keys(line: &str, index: usize, n: usize, masked_depth: usize) -> Vec<String> {
    let mut keys = Vec::new();
    if index < 2 || index + 2 >= n {
        keys.push(line_key(line, false));
    }
    if index < masked_depth || index + masked_depth >= n {
        keys.push(format!("#{}", line_key(line, true)));
    }
    keys.retain(|k| !k.is_empty() && k != "#");
    keys
}

/// For each page, which of its (non-empty) lines are running headers or footers.
fn repeated_lines(pages: &[Vec<&str>], masked_depth: usize) -> Vec<Vec<bool>> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for lines in pages {
        let n = lines.len();
        let mut keys: Vec<String> = lines
            .iter()
            .enumerate()
            .flat_map(|(i, l)| edge_keys(l, i, n, masked_depth))
            .collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            *counts.entry(k).or_default() += 1;
        }
    }
    let threshold = pages.len().div_ceil(2).max(2);
    pages
        .iter()
        .map(|lines| {
            let n = lines.len();
            (0..n)
                .map(|i| {
                    edge_keys(lines[i], i, n, masked_depth)
                        .iter()
                        .any(|k| counts.get(k).is_some_and(|&c| c >= threshold))
                })
                .collect()
        })
        .collect()
}

/// Drop running headers and footers: a line among the first two or last two of a page that
/// recurs on at least half the pages (and on at least two), also when only its digits change
/// (page numbers: "第 3 页 共 9 页"). When matching with digits masked that deep would leave a
/// page empty, body lines that merely contain the page number were caught too, and only the
/// very first and last lines are matched with digits masked. Returns how many lines were
/// dropped.
pub fn drop_repeated_lines(pages: &mut [Page]) -> usize {
    if pages.len() < 2 {
        return 0;
    }
    let texts: Vec<String> = pages.iter().map(page_text).collect();
    let lines: Vec<Vec<&str>> = texts
        .iter()
        .map(|t| t.lines().filter(|l| !l.trim().is_empty()).collect())
        .collect();
    let mut drop = repeated_lines(&lines, 2);
    let empties_a_page = drop
        .iter()
        .any(|page| !page.is_empty() && page.iter().all(|&d| d));
    if empties_a_page {
        drop = repeated_lines(&lines, 1);
    }
    let mut dropped = 0;
    for ((page, lines), drop) in pages.iter_mut().zip(&lines).zip(&drop) {
        let kept: Vec<&str> = lines
            .iter()
            .zip(drop)
            .filter(|(_, d)| !**d)
            .map(|(l, _)| *l)
            .collect();
        if kept.len() < lines.len() {
            dropped += lines.len() - kept.len();
            page.blocks = vec![crate::extract::Block::para(kept.join("\n"))];
        }
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
            let touches_cjk =
                is_cjk(last) || is_cjk_punct(last) || is_cjk(first) || is_cjk_punct(first);
            // A number wrapped inside Chinese text ("每天8" / "0元") is one number again.
            let number_in_cjk = last.is_ascii_digit() && first.is_ascii_digit() && mostly_cjk(line);
            if !touches_cjk && !number_in_cjk {
                out.push(' ');
            }
        }
    }
    out
}

/// More CJK characters than ASCII letters.
fn mostly_cjk(s: &str) -> bool {
    let cjk = s.chars().filter(|&c| is_cjk(c)).count();
    cjk > s.chars().filter(char::is_ascii_alphabetic).count()
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
        let t = "第七条 伙食补助费按出差自然天数计算，每人每天100元；市内交通费每人每天8\n0元，包干使用。";
        assert_eq!(
            join_wrapped_lines(t),
            "第七条 伙食补助费按出差自然天数计算，每人每天100元；市内交通费每人每天80元，包干使用。"
        );
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
