//! Chinese-aware chunking: sentences (。！？；!? newlines and English sentence ends) packed
//! into chunks of at most `max_tokens` embedding-model tokens, with sentence overlap, the
//! heading path carried as metadata, never crossing a page.

use serde::{Deserialize, Serialize};

use crate::extract::Page;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChunkConfig {
    /// Chunk size limit in embedding-model tokens (the model's prefix and special tokens
    /// included). Default 320.
    pub max_tokens: usize,
    /// Tokens of trailing sentences repeated at the start of the next chunk. Default 48.
    pub overlap_tokens: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        Self {
            max_tokens: 320,
            overlap_tokens: 48,
        }
    }
}

/// A chunk with its provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub text: String,
    /// 1-based page number (1 for formats without pages).
    pub page: u32,
    /// Headings above this chunk, outermost first.
    pub heading_path: Vec<String>,
    /// Character (not byte) offsets of `text` in the page text: the page's cleaned, masked
    /// blocks joined by `\n`. `text == page_text.chars().skip(char_start).take(char_end - char_start)`.
    pub char_start: usize,
    pub char_end: usize,
}

/// The text a page's chunk offsets refer to.
pub fn page_text(page: &Page) -> String {
    page.blocks
        .iter()
        .map(|b| b.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

const CLOSERS: &str = "”’\"'）)」』】》〕]";
const ABBREVIATIONS: &[&str] = &[
    "e.g", "i.e", "etc", "mr", "mrs", "ms", "dr", "prof", "no", "vs", "fig", "inc", "ltd", "co",
    "st",
];

/// Sentence ranges (char indices, end exclusive) of `chars`, whitespace trimmed.
pub fn sentences(chars: &[char]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let n = chars.len();
    while i < n {
        let c = chars[i];
        let mut end = None;
        if "。！？；!?;\n".contains(c)
            || (c == '…' && chars.get(i + 1) != Some(&'…'))
            || (c == '.' && english_sentence_end(chars, i))
        {
            end = Some(i + 1);
        }
        if let Some(mut e) = end {
            while e < n && CLOSERS.contains(chars[e]) {
                e += 1;
            }
            push_trimmed(chars, start, e, &mut out);
            start = e;
            i = e;
        } else {
            i += 1;
        }
    }
    push_trimmed(chars, start, n, &mut out);
    out
}

fn english_sentence_end(chars: &[char], i: usize) -> bool {
    let next = chars.get(i + 1).copied();
    if !matches!(next, None | Some(' ') | Some('\n')) && !next.is_some_and(|c| CLOSERS.contains(c))
    {
        return false;
    }
    // The word before the period.
    let mut s = i;
    while s > 0 && (chars[s - 1].is_alphanumeric() || chars[s - 1] == '.') {
        s -= 1;
    }
    let word: String = chars[s..i].iter().collect::<String>().to_lowercase();
    if word.len() == 1 && word.chars().all(|c| c.is_alphabetic()) {
        return false; // an initial: "J. Smith"
    }
    if ABBREVIATIONS.contains(&word.as_str()) {
        return false;
    }
    if word.chars().all(|c| c.is_ascii_digit()) && !word.is_empty() {
        // "1. Purpose": a list number at a line start is not a sentence.
        let at_line_start = s == 0 || chars[s - 1] == '\n';
        if at_line_start {
            return false;
        }
    }
    true
}

fn push_trimmed(chars: &[char], mut s: usize, mut e: usize, out: &mut Vec<(usize, usize)>) {
    while s < e && chars[s].is_whitespace() {
        s += 1;
    }
    while e > s && chars[e - 1].is_whitespace() {
        e -= 1;
    }
    if s < e {
        out.push((s, e));
    }
}

struct Counter<'a> {
    f: &'a dyn Fn(&str) -> usize,
    overhead: usize,
}

impl Counter<'_> {
    /// Tokens of a piece of text without the model's fixed overhead (prefix, special tokens).
    fn piece(&self, chars: &[char]) -> usize {
        let s: String = chars.iter().collect();
        (self.f)(&s).saturating_sub(self.overhead).max(1)
    }
    fn whole(&self, chars: &[char]) -> usize {
        let s: String = chars.iter().collect();
        (self.f)(&s)
    }
}

/// Soft boundaries inside a long sentence.
const SENTENCE_SOFT: &str = "，、,：: ";
/// Inside a long table row: only between cells, so every piece keeps `header: value` pairs.
const ROW_SOFT: &str = "|";

/// Split a sentence longer than the limit: at `soft` characters (commas and spaces for
/// sentences, cell separators for table rows) first, then by characters.
fn split_long(
    chars: &[char],
    (mut s, mut e): (usize, usize),
    budget: usize,
    soft: &str,
    counter: &Counter<'_>,
    out: &mut Vec<(usize, usize, usize)>,
) {
    while s < e && chars[s].is_whitespace() {
        s += 1;
    }
    while e > s && chars[e - 1].is_whitespace() {
        e -= 1;
    }
    if s >= e {
        return;
    }
    let tokens = counter.piece(&chars[s..e]);
    if tokens <= budget {
        out.push((s, e, tokens));
        return;
    }
    let cuts: Vec<usize> = (s + 1..e)
        .filter(|&i| soft.contains(chars[i - 1]))
        .collect();
    if !cuts.is_empty() {
        let mid = (s + e) / 2;
        let cut = *cuts.iter().min_by_key(|&&i| i.abs_diff(mid)).unwrap();
        if cut > s && cut < e {
            split_long(chars, (s, cut), budget, soft, counter, out);
            split_long(chars, (cut, e), budget, soft, counter, out);
            return;
        }
    }
    // Hard split by characters, sized by the observed chars-per-token ratio.
    let len = e - s;
    let mut take = (len * budget / tokens.max(1)).max(1);
    let mut start = s;
    while start < e {
        let mut end = (start + take).min(e);
        loop {
            let t = counter.piece(&chars[start..end]);
            if t <= budget || end - start <= 1 {
                out.push((start, end, t));
                break;
            }
            end = start + ((end - start) * 9 / 10).max(1);
            take = end - start;
        }
        start = end;
    }
}

/// A heading path and the section's blocks as (start, end, is a table row), in page chars.
type Section = (Vec<String>, Vec<(usize, usize, bool)>);

/// Chunk pages. `count_tokens` measures text in the embedding model's tokens (including any
/// prefix and special tokens it adds; that fixed overhead is measured once).
pub fn chunk_pages(
    pages: &[Page],
    config: &ChunkConfig,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Vec<Chunk> {
    let counter = Counter {
        f: count_tokens,
        overhead: count_tokens(""),
    };
    let budget = config.max_tokens.saturating_sub(counter.overhead).max(8);
    let mut out = Vec::new();
    let mut path: Vec<(u8, String)> = Vec::new();
    for page in pages {
        let text = page_text(page);
        let chars: Vec<char> = text.chars().collect();
        // Sections: runs of blocks between headings. A heading starts a section and is its
        // first line.
        let mut offset = 0;
        let mut sections: Vec<Section> = Vec::new();
        for (bi, block) in page.blocks.iter().enumerate() {
            let len = block.text.chars().count();
            let range = (offset, offset + len, block.table_row);
            if let Some(level) = block.heading_level {
                path.retain(|(l, _)| *l < level);
                path.push((level, block.text.trim().to_string()));
                sections.push((path.iter().map(|(_, t)| t.clone()).collect(), vec![range]));
            } else if bi == 0 || sections.is_empty() {
                sections.push((path.iter().map(|(_, t)| t.clone()).collect(), vec![range]));
            } else if let Some(last) = sections.last_mut() {
                last.1.push(range);
            }
            offset += len + 1;
        }
        for (heading_path, blocks) in sections {
            let mut pieces = Vec::new();
            for (s, e, row) in blocks {
                if row {
                    // A table row is one piece: never cut at a 。 inside a cell.
                    split_long(&chars, (s, e), budget, ROW_SOFT, &counter, &mut pieces);
                    continue;
                }
                for (a, b) in sentences(&chars[s..e]) {
                    split_long(
                        &chars,
                        (a + s, b + s),
                        budget,
                        SENTENCE_SOFT,
                        &counter,
                        &mut pieces,
                    );
                }
            }
            pack(
                &chars,
                &pieces,
                budget,
                config.overlap_tokens,
                &counter,
                &mut |cs, ce| {
                    out.push(Chunk {
                        text: chars[cs..ce].iter().collect(),
                        page: page.number,
                        heading_path: heading_path.clone(),
                        char_start: cs,
                        char_end: ce,
                    });
                },
            );
        }
    }
    out
}

/// Greedy packing of pieces (start, end, tokens) into chunks within `budget`, with overlap.
fn pack(
    chars: &[char],
    pieces: &[(usize, usize, usize)],
    budget: usize,
    overlap: usize,
    counter: &Counter<'_>,
    emit: &mut dyn FnMut(usize, usize),
) {
    let mut i = 0;
    while i < pieces.len() {
        let mut j = i;
        let mut sum = 0;
        while j < pieces.len() && (j == i || sum + pieces[j].2 <= budget) {
            sum += pieces[j].2;
            j += 1;
        }
        // Sums of separately counted pieces can differ from the joined count: check when close.
        while j > i + 1
            && sum * 10 >= budget * 9
            && counter.whole(&chars[pieces[i].0..pieces[j - 1].1]) > budget + counter.overhead
        {
            j -= 1;
            sum -= pieces[j].2;
        }
        emit(pieces[i].0, pieces[j - 1].1);
        if j >= pieces.len() {
            break;
        }
        // Overlap: trailing pieces of this chunk, within the overlap budget, but always
        // moving forward.
        let mut k = j;
        let mut o = 0;
        while k > i + 1 && o + pieces[k - 1].2 <= overlap {
            o += pieces[k - 1].2;
            k -= 1;
        }
        i = k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::Block;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    fn sents(s: &str) -> Vec<String> {
        let c = chars(s);
        sentences(&c)
            .into_iter()
            .map(|(a, b)| c[a..b].iter().collect())
            .collect()
    }

    #[test]
    fn sentence_boundaries() {
        assert_eq!(
            sents("年假五天。病假需证明！能否顺延？可以；但须审批\n下一行"),
            vec![
                "年假五天。",
                "病假需证明！",
                "能否顺延？",
                "可以；",
                "但须审批",
                "下一行"
            ]
        );
        assert_eq!(
            sents("他说：“明天出发。”然后走了。"),
            vec!["他说：“明天出发。”", "然后走了。"]
        );
        assert_eq!(
            sents("Pi is 3.14 today. See e.g. the guide. J. Smith agreed. Done"),
            vec![
                "Pi is 3.14 today.",
                "See e.g. the guide.",
                "J. Smith agreed.",
                "Done"
            ]
        );
        assert_eq!(
            sents("1. Purpose\nText here."),
            vec!["1. Purpose", "Text here."]
        );
    }

    fn page(n: u32, blocks: Vec<Block>) -> Page {
        Page { number: n, blocks }
    }

    #[test]
    fn chunks_respect_limit_overlap_offsets_and_headings() {
        let count = |s: &str| s.chars().count() + 2; // 2 = fixed overhead, like special tokens
        let body: String = (0..40)
            .map(|i| format!("这是第{i}句话，内容用于测试分块。"))
            .collect();
        let pages = vec![
            page(
                1,
                vec![
                    Block::heading(1, "第一章 总则"),
                    Block::para(body.clone()),
                    Block::heading(2, "第一节 范围"),
                    Block::para("适用于全体员工。"),
                ],
            ),
            page(2, vec![Block::para("第二页的内容。")]),
        ];
        let cfg = ChunkConfig {
            max_tokens: 60,
            overlap_tokens: 20,
        };
        let chunks = chunk_pages(&pages, &cfg, &count);
        assert!(chunks.len() > 5);
        for c in &chunks {
            assert!(
                count(&c.text) <= 60,
                "over the limit: {} tokens: {}",
                count(&c.text),
                c.text
            );
            let pt = page_text(&pages[(c.page - 1) as usize]);
            let slice: String = pt
                .chars()
                .skip(c.char_start)
                .take(c.char_end - c.char_start)
                .collect();
            assert_eq!(slice, c.text, "offsets point at the text");
        }
        // Sentences are not cut: every chunk ends at a sentence end or a block end.
        for c in &chunks {
            let last = c.text.chars().last().unwrap();
            assert!(
                "。总则".contains(last) || c.text.ends_with("总则"),
                "cut mid-sentence: {}",
                c.text
            );
        }
        assert_eq!(chunks[0].heading_path, vec!["第一章 总则"]);
        assert!(chunks[0].text.starts_with("第一章 总则"));
        // Overlap: consecutive body chunks share a sentence.
        let a = &chunks[1];
        let b = &chunks[2];
        assert!(
            b.char_start < a.char_end,
            "no overlap between {a:?} and {b:?}"
        );
        let sec = chunks
            .iter()
            .find(|c| c.text.contains("适用于全体员工"))
            .unwrap();
        assert_eq!(sec.heading_path, vec!["第一章 总则", "第一节 范围"]);
        assert!(
            !sec.text.contains("测试分块"),
            "a heading starts a new chunk"
        );
        let p2 = chunks.iter().find(|c| c.page == 2).unwrap();
        assert_eq!(p2.text, "第二页的内容。");
        assert_eq!(
            p2.heading_path,
            vec!["第一章 总则", "第一节 范围"],
            "headings carry across pages"
        );
    }

    #[test]
    fn a_table_row_is_never_cut_at_a_sentence_end_inside_a_cell() {
        let count = |s: &str| s.chars().count();
        let row = "项目: 住宿 | 说明: 须提供发票。超标部分自理。 | 上限: 650";
        let mut blocks = vec![Block::heading(1, "标准")];
        for _ in 0..6 {
            blocks.push(Block::row(row));
        }
        let cfg = ChunkConfig {
            max_tokens: 60,
            overlap_tokens: 0,
        };
        let chunks = chunk_pages(&[page(1, blocks)], &cfg, &count);
        assert!(chunks.len() >= 3);
        for c in &chunks {
            for line in c.text.lines().skip_while(|l| *l == "标准") {
                assert_eq!(line, row, "a row was cut: {:?}", c.text);
            }
        }
        // A row longer than the limit is cut only between cells.
        let long = (0..12)
            .map(|i| format!("列{i}: 值{i}"))
            .collect::<Vec<_>>()
            .join(" | ");
        let chunks = chunk_pages(&[page(1, vec![Block::row(long.clone())])], &cfg, &count);
        assert!(chunks.len() >= 2);
        for c in &chunks {
            for cell in c.text.split(" | ") {
                let cell = cell.trim_matches(|ch: char| ch == '|' || ch.is_whitespace());
                assert!(cell.starts_with('列') && cell.contains(": 值"), "{cell:?}");
            }
        }
    }

    #[test]
    fn long_sentence_is_split() {
        let count = |s: &str| s.chars().count();
        let long = "甲".repeat(250) + "，" + &"乙".repeat(30) + "。";
        let chunks = chunk_pages(
            &[page(1, vec![Block::para(long.clone())])],
            &ChunkConfig {
                max_tokens: 100,
                overlap_tokens: 0,
            },
            &count,
        );
        assert!(chunks.len() >= 3);
        assert!(chunks.iter().all(|c| c.text.chars().count() <= 100));
        let joined: String = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(joined, long, "nothing lost");
    }
}
