//! The answer without a generator: the sentences of the relevant passages that hold the most
//! of the question's key terms, those terms in `**bold**`, each sentence cited `[n]`.

use std::ops::Range;

use crate::retrieve::Hit;
use crate::store::keyword::KeywordIndex;

use super::cite::Citation;
use super::terms::{Passage, weight};

/// Longest quoted sentence, characters; longer ones are cut with "…".
const MAX_SENTENCE_CHARS: usize = 240;
/// Sentences with fewer letters, digits or ideographs than this are headings.
const MIN_QUOTE_CHARS: usize = 10;
/// Most sentences quoted from one passage.
const MAX_PER_PASSAGE: usize = 2;

/// The sentences of `text` as byte ranges (trimmed, at least 4 characters with a letter,
/// digit or ideograph).
pub fn sentences(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end_here = match c {
            '。' | '！' | '？' | '!' | '?' | '；' | ';' | '\n' => true,
            '.' => chars.peek().is_none_or(|(_, n)| n.is_whitespace()),
            _ => false,
        };
        if end_here {
            push_sentence(text, start..i + c.len_utf8(), &mut out);
            start = i + c.len_utf8();
        }
    }
    push_sentence(text, start..text.len(), &mut out);
    out
}

fn push_sentence(text: &str, r: Range<usize>, out: &mut Vec<Range<usize>>) {
    let s = &text[r.clone()];
    let lead = s.len() - s.trim_start().len();
    let trimmed = s.trim();
    let meaningful = trimmed.chars().filter(|c| c.is_alphanumeric()).count();
    if meaningful >= 4 {
        out.push(r.start + lead..r.start + lead + trimmed.len());
    }
}

/// `sentence` with every occurrence of `terms` in `**bold**` (ASCII case-insensitive; an
/// English term matches from a word start to the word's end, so the stem "expens" marks
/// "expenses").
pub fn highlight(sentence: &str, terms: &[String]) -> String {
    let lower = sentence.to_ascii_lowercase();
    let mut spans: Vec<Range<usize>> = Vec::new();
    for t in terms {
        if t.is_empty() {
            continue;
        }
        if t.chars().any(super::lang::is_han) {
            spans.extend(super::terms::find_gapped(&lower, t));
            continue;
        }
        let ascii = t.is_ascii();
        for (i, _) in lower.match_indices(t.as_str()) {
            let mut end = i + t.len();
            if ascii {
                let before = lower[..i].chars().next_back();
                if before.is_some_and(|c| c.is_ascii_alphanumeric()) {
                    continue;
                }
                end += lower[end..]
                    .find(|c: char| !c.is_ascii_alphanumeric())
                    .unwrap_or(lower.len() - end);
            }
            spans.push(i..end);
        }
    }
    spans.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    let mut merged: Vec<Range<usize>> = Vec::new();
    for s in spans {
        match merged.last_mut() {
            Some(m) if s.start <= m.end => m.end = m.end.max(s.end),
            _ => merged.push(s),
        }
    }
    let mut out = String::with_capacity(sentence.len() + merged.len() * 4);
    let mut last = 0;
    for m in merged {
        out.push_str(&sentence[last..m.start]);
        out.push_str("**");
        out.push_str(&sentence[m.clone()]);
        out.push_str("**");
        last = m.end;
    }
    out.push_str(&sentence[last..]);
    out
}

/// An extractive answer: its text (one `- sentence [n]` line per quote) and citations.
#[derive(Debug, Clone, Default)]
pub struct Extract {
    pub text: String,
    pub citations: Vec<Citation>,
    /// The quoted sentences, plain (for scoring).
    pub quotes: Vec<String>,
}

/// Quote the best sentences of `hits` (relevant passages, best first) for `terms`.
pub fn extract(keyword: &KeywordIndex, hits: &[&Hit], terms: &[String], max: usize) -> Extract {
    struct Cand {
        hit: usize,
        range: Range<usize>,
        score: f32,
    }
    let mut cands = Vec::new();
    for (hi, h) in hits.iter().enumerate() {
        for r in sentences(&h.text) {
            let p = Passage::new(keyword, &h.text[r.clone()]);
            let matched: f32 = terms
                .iter()
                .filter(|t| p.contains(t))
                .map(|t| weight(t))
                .sum();
            if matched > 0.0 {
                // Earlier passages win ties.
                cands.push(Cand {
                    hit: hi,
                    range: r,
                    score: matched - hi as f32 * 0.01,
                });
            }
        }
    }
    if cands.is_empty() {
        // Relevant by meaning but sharing no term: quote the best passage's opening.
        if let Some(h) = hits.first()
            && let Some(r) = sentences(&h.text).into_iter().next()
        {
            cands.push(Cand {
                hit: 0,
                range: r,
                score: 0.0,
            });
        }
    }
    // Headings ("第二条 年休假", "Passwords") match well and say little: quote them only
    // when there is nothing longer.
    let long = |c: &Cand| {
        hits[c.hit].text[c.range.clone()]
            .chars()
            .filter(|ch| ch.is_alphanumeric())
            .count()
            >= MIN_QUOTE_CHARS
    };
    if cands.iter().any(long) {
        cands.retain(long);
    }
    cands.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.hit.cmp(&b.hit))
            .then(a.range.start.cmp(&b.range.start))
    });
    let mut per_hit = vec![0usize; hits.len()];
    let mut order: Vec<usize> = Vec::new(); // hit index of each citation number − 1
    let mut out = Extract::default();
    let mut lines = Vec::new();
    for c in cands {
        if out.quotes.len() == max {
            break;
        }
        if per_hit[c.hit] == MAX_PER_PASSAGE {
            continue;
        }
        per_hit[c.hit] += 1;
        let n = match order.iter().position(|&h| h == c.hit) {
            Some(p) => p + 1,
            None => {
                order.push(c.hit);
                order.len()
            }
        };
        let full = &hits[c.hit].text[c.range];
        let sentence: String = if full.chars().count() > MAX_SENTENCE_CHARS {
            let cut: String = full.chars().take(MAX_SENTENCE_CHARS).collect();
            format!("{cut}…")
        } else {
            full.to_string()
        };
        lines.push(format!("- {} [{n}]", highlight(&sentence, terms)));
        out.quotes.push(sentence);
    }
    out.text = lines.join("\n");
    out.citations = order
        .iter()
        .enumerate()
        .map(|(i, &h)| Citation::from_hit(i + 1, hits[h]))
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_sentences() {
        let t = "第一条 年假5天。病假需证明！\nPasswords must be 12 characters. Use MFA; ok";
        let s: Vec<&str> = sentences(t).into_iter().map(|r| &t[r]).collect();
        assert_eq!(
            s,
            vec![
                "第一条 年假5天。",
                "病假需证明！",
                "Passwords must be 12 characters.",
                "Use MFA;"
            ]
        );
    }

    #[test]
    fn highlights_terms() {
        let terms = vec!["年假".to_string(), "expens".to_string(), "mfa".to_string()];
        assert_eq!(highlight("年假5天", &terms), "**年假**5天");
        assert_eq!(
            highlight("Travel expenses need MFA, not unexpensive", &terms),
            "Travel **expenses** need **MFA**, not unexpensive"
        );
        let terms = vec!["年假".to_string(), "假".to_string()];
        assert_eq!(highlight("年假", &terms), "**年假**");
        assert_eq!(highlight("年休假5天", &terms), "**年休假**5天");
    }
}
