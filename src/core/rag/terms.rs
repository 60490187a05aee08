//! Key terms of a question (the keyword analyzer's terms less question words and function
//! words) and how much of them a passage covers: the lexical half of the relevance gate, the
//! condensation rule and the extractive answer all use them.

use std::collections::HashSet;

use crate::store::keyword::KeywordIndex;

use super::lang::is_han;

/// Words that say nothing about a question's topic, beyond the keyword index's own query
/// stopwords. Matched after analysis (English stopwords are stemmed the same way).
const STOPWORDS: &str = "的 了 吗 呢 吧 啊 呀 嘛 么 是 在 有 和 与 及 或 或者 还是 就 都 也 又 被 把 给 对 从 \
    由 向 为 以 于 之 其 而 什么 怎么 怎样 怎么样 如何 多少 哪些 哪里 哪儿 哪个 哪 为什么 是否 可以 能否 \
    能 会 要 需要 应该 应当 请问 请 一下 我 我们 你 你们 他 她 它 他们 她们 它们 这 那 这个 那个 这些 \
    那些 些 个 谁 几 时候 吗？ 呢？ 啥 咋 多 \
    what which who whom whose is are was were be been being do does did done can could should \
    would will shall may might must i me my we our you your a an the of to in on at for by \
    with about from and or not it its this that these those they them their he she his her \
    there here how when where why please tell any some into than then so if as";

/// The key terms of `text`, each once, in order of appearance. Runs of single Han
/// characters that stand together in `text` are joined again (jieba without a user
/// dictionary cuts 年假 into 年 + 假, and 年 alone matches nearly every passage).
pub fn key_terms(keyword: &KeywordIndex, text: &str) -> Vec<String> {
    let stop: HashSet<String> = keyword.analyze(STOPWORDS).into_iter().collect();
    let folded = text.to_lowercase();
    let mut joined: Vec<String> = Vec::new();
    let mut run = String::new();
    let single_han = |t: &str| t.chars().count() == 1 && t.chars().all(is_han);
    for t in keyword.analyze(text) {
        if stop.contains(&t) {
            flush(&mut run, &mut joined);
            continue;
        }
        if single_han(&t) {
            let mut longer = run.clone();
            longer.push_str(&t);
            if !run.is_empty() && !folded.contains(&longer) {
                flush(&mut run, &mut joined);
            }
            run.push_str(&t);
            continue;
        }
        flush(&mut run, &mut joined);
        joined.push(t);
    }
    flush(&mut run, &mut joined);
    let mut seen = HashSet::new();
    joined.retain(|t| seen.insert(t.clone()));
    joined
}

fn flush(run: &mut String, out: &mut Vec<String>) {
    if !run.is_empty() {
        out.push(std::mem::take(run));
    }
}

/// A passage prepared for term look-ups: its analyzer terms and its lower-cased text.
pub struct Passage {
    terms: HashSet<String>,
    folded: String,
}

impl Passage {
    pub fn new(keyword: &KeywordIndex, text: &str) -> Self {
        Self {
            terms: keyword.analyze(text).into_iter().collect(),
            folded: text.to_lowercase(),
        }
    }

    /// Whether the passage holds `term`: as an analyzer term, or (for terms with Han
    /// characters, whose segmentation depends on the context) as a substring.
    pub fn contains(&self, term: &str) -> bool {
        self.terms.contains(term)
            || (term.chars().any(is_han) && !find_gapped(&self.folded, term).is_empty())
    }
}

/// Byte ranges where the characters of `term` occur in order in `text` with at most one
/// other character between neighbours: 年假 is found in 年休假, 报销标准 in 报销的标准.
pub fn find_gapped(text: &str, term: &str) -> Vec<std::ops::Range<usize>> {
    let want: Vec<char> = term.chars().collect();
    let Some(&first) = want.first() else {
        return Vec::new();
    };
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].1 != first {
            i += 1;
            continue;
        }
        let mut pos = i;
        let mut ok = true;
        for &w in &want[1..] {
            match (pos + 1..(pos + 3).min(chars.len())).find(|&j| chars[j].1 == w) {
                Some(j) => pos = j,
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            let end = chars[pos].0 + chars[pos].1.len_utf8();
            out.push(chars[i].0..end);
            i = pos + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// Weight of a term: its length in characters, capped at 2 (a single Han character or
/// letter says less than a word).
pub fn weight(term: &str) -> f32 {
    term.chars().count().min(2) as f32
}

/// Share (0–1) of `terms` found in `passage`, by [`weight`]. 0 when `terms` is empty.
pub fn coverage(terms: &[String], passage: &Passage) -> f32 {
    let total: f32 = terms.iter().map(|t| weight(t)).sum();
    if total == 0.0 {
        return 0.0;
    }
    let found: f32 = terms
        .iter()
        .filter(|t| passage.contains(t))
        .map(|t| weight(t))
        .sum();
    found / total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_terms_drop_question_words() {
        let dir = tempfile::tempdir().unwrap();
        let kw = KeywordIndex::open(dir.path(), None).unwrap();
        let t = key_terms(&kw, "年假怎么计算？");
        // Without a user dictionary jieba cuts 年假 into 年 + 假; they are joined again.
        assert_eq!(t, vec!["年假".to_string(), "计算".to_string()]);
        assert!(!t.iter().any(|x| x == "怎么"), "{t:?}");
        let t = key_terms(&kw, "How long must a password be?");
        assert!(t.contains(&"password".to_string()), "{t:?}");
        assert!(!t.iter().any(|x| x == "how" || x == "must"), "{t:?}");
        let passage = Passage::new(&kw, "员工年假按工龄计算：满1年不满10年的，年假5天。");
        let q = key_terms(&kw, "年假怎么计算？");
        assert!(coverage(&q, &passage) > 0.99, "{q:?}");
        let q = key_terms(&kw, "火星上有多少颗卫星");
        assert!(coverage(&q, &passage) < 0.01, "{q:?}");
        assert_eq!(
            find_gapped("员工年休假5天，年假", "年假"),
            vec![6..15, 22..28]
        );
        assert!(find_gapped("年度休假", "年假").is_empty());
        let q = key_terms(&kw, "病假怎么计算？");
        assert!((coverage(&q, &passage) - 0.5).abs() < 1e-6, "{q:?}");
        assert_eq!(coverage(&[], &passage), 0.0);
    }
}
