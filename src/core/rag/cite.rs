//! Citation markers in a generated answer → the passages they point at.
//!
//! Recognised: `[1]`, `[1][2]`, `[1, 2]`, `[1，2]`, `[1、2]`, full-width `【1】` and `［1］`. A
//! number outside the prompt's sources is dropped (its marker is rewritten without it, or
//! removed when nothing is left), so an answer never cites a passage the model did not see.

use std::ops::Range;

use serde::Serialize;

use crate::retrieve::Hit;
use crate::store::ChunkId;

/// A passage an answer cites.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Citation {
    /// The number used in the answer's markers (`[index]`).
    pub index: usize,
    pub chunk: ChunkId,
    /// The document's source: file path or external id.
    pub document: String,
    pub document_id: i64,
    pub title: String,
    pub page: u32,
    /// Where in the document, by its format (page, slide, or sheet and rows).
    pub place: super::location::Location,
    /// [`Citation::place`]'s label: `p. 3`, `slide 3`, `Sheet 住宿标准, rows 2–9`.
    pub location: String,
    /// The passage text.
    pub text: String,
    /// Its knowledge base (for the per-KB rates of the citation check).
    #[serde(skip)]
    pub kb: crate::store::KbId,
}

impl Citation {
    pub fn from_hit(index: usize, h: &Hit) -> Self {
        Self {
            index,
            chunk: h.chunk,
            document: h.document.clone(),
            document_id: h.document_id,
            title: h.title.clone(),
            page: h.page,
            place: h.place.clone(),
            location: h.location.clone(),
            text: h.text.clone(),
            kb: h.kb,
        }
    }
}

/// A marker: its byte range in the text and the numbers it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub range: Range<usize>,
    pub numbers: Vec<usize>,
}

fn closing(open: char) -> Option<char> {
    match open {
        '[' => Some(']'),
        '【' => Some('】'),
        '［' => Some('］'),
        _ => None,
    }
}

/// Every citation marker in `text`, in order.
pub fn markers(text: &str) -> Vec<Marker> {
    let mut out = Vec::new();
    let mut iter = text.char_indices().peekable();
    while let Some((start, c)) = iter.next() {
        let Some(close) = closing(c) else { continue };
        let body_start = start + c.len_utf8();
        // A marker is short: digits and separators up to the closing bracket.
        let mut end = None;
        for (i, d) in text[body_start..].char_indices().take(40) {
            if d == close {
                end = Some(body_start + i);
                break;
            }
            let ok = d.is_ascii_digit()
                || matches!(d, ',' | '，' | '、' | ' ' | ';' | '；')
                || ('０'..='９').contains(&d);
            if !ok {
                break;
            }
        }
        let Some(end) = end else { continue };
        let numbers: Vec<usize> = text[body_start..end]
            .split(|d: char| !(d.is_ascii_digit() || ('０'..='９').contains(&d)))
            .filter(|s| !s.is_empty())
            .filter_map(|s| {
                let ascii: String = s
                    .chars()
                    .map(|d| match d {
                        '０'..='９' => char::from(b'0' + (d as u32 - '０' as u32) as u8),
                        d => d,
                    })
                    .collect();
                ascii.parse().ok()
            })
            .collect();
        if numbers.is_empty() {
            continue;
        }
        let range = start..end + close.len_utf8();
        while iter.peek().is_some_and(|(i, _)| *i < range.end) {
            iter.next();
        }
        out.push(Marker { range, numbers });
    }
    out
}

/// Resolve the markers of `answer` against `sources` (`sources[i]` is `[i + 1]`): the
/// answer with out-of-range numbers removed, and the cited passages ordered by number.
pub fn resolve(answer: &str, sources: &[&Hit]) -> (String, Vec<Citation>) {
    let mut cited: Vec<usize> = Vec::new();
    let mut cleaned = String::with_capacity(answer.len());
    let mut last = 0;
    for m in markers(answer) {
        let valid: Vec<usize> = m
            .numbers
            .iter()
            .copied()
            .filter(|&n| n >= 1 && n <= sources.len())
            .collect();
        cited.extend(&valid);
        if valid.len() == m.numbers.len() {
            continue;
        }
        cleaned.push_str(&answer[last..m.range.start]);
        if !valid.is_empty() {
            let list: Vec<String> = valid.iter().map(|n| n.to_string()).collect();
            cleaned.push('[');
            cleaned.push_str(&list.join(", "));
            cleaned.push(']');
        }
        last = m.range.end;
    }
    cleaned.push_str(&answer[last..]);
    cited.sort_unstable();
    cited.dedup();
    let citations = cited
        .into_iter()
        .map(|n| Citation::from_hit(n, sources[n - 1]))
        .collect();
    (cleaned, citations)
}

/// `text` without citation markers and `**` emphasis (for scoring answers).
pub fn strip_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for m in markers(text) {
        out.push_str(&text[last..m.range.start]);
        last = m.range.end;
    }
    out.push_str(&text[last..]);
    out.replace("**", "")
}

/// `text` without citation markers, and without the spaces before each (so that "12
/// characters [1]." becomes "12 characters."); other markdown is kept.
pub fn strip_markers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for m in markers(text) {
        out.push_str(text[last..m.range.start].trim_end_matches([' ', '\t']));
        last = m.range.end;
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A passage "passage {id}" of document "doc{id}.txt".
    pub(crate) fn hit(id: u64) -> Hit {
        Hit {
            chunk: id,
            text: format!("passage {id}"),
            document: format!("doc{id}.txt"),
            document_id: id as i64,
            title: format!("Doc {id}"),
            page: 1,
            place: crate::rag::location::Location::Page { page: 1 },
            location: "p. 1".into(),
            heading_path: vec![],
            char_start: 0,
            char_end: 9,
            kb: 1,
            score: 1.0,
            scores: Default::default(),
        }
    }

    #[test]
    fn all_marker_forms() {
        let m = markers("a[1] b[2][3] c[1, 2] d【4】 e［5］ f[1，3、4]");
        let nums: Vec<Vec<usize>> = m.iter().map(|m| m.numbers.clone()).collect();
        assert_eq!(
            nums,
            vec![
                vec![1],
                vec![2],
                vec![3],
                vec![1, 2],
                vec![4],
                vec![5],
                vec![1, 3, 4]
            ]
        );
        assert!(markers("[a] [] [1x] 【注】 array[i] [").is_empty());
    }

    #[test]
    fn resolves_and_drops_out_of_range() {
        let hits = [hit(10), hit(20), hit(30)];
        let refs: Vec<&Hit> = hits.iter().collect();
        let (text, cites) = resolve("年假5天[1][7]。病假【3】, see [2, 9] and [0].", &refs);
        assert_eq!(text, "年假5天[1]。病假【3】, see [2] and .");
        let idx: Vec<usize> = cites.iter().map(|c| c.index).collect();
        assert_eq!(idx, vec![1, 2, 3]);
        assert_eq!(cites[1].chunk, 20);
        assert_eq!(cites[2].document, "doc30.txt");
        let (text, cites) = resolve("nothing cited [4]", &refs);
        assert_eq!(text, "nothing cited ");
        assert!(cites.is_empty());
    }

    #[test]
    fn strips_markup() {
        assert_eq!(strip_markup("**年假**5天[1][2]。"), "年假5天。");
        assert_eq!(strip_markers("**年假**5天[1][2]。"), "**年假**5天。");
        assert_eq!(
            strip_markers("At least 12 characters [1], see [2, 3] and 【4】.\n- list [5]\n"),
            "At least 12 characters, see and.\n- list\n"
        );
        assert_eq!(strip_markers("array[i] stays"), "array[i] stays");
    }
}
