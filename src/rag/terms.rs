//! Key terms of a question (the keyword analyzer's terms less question words and function
//! words) and how much of them a passage covers: the lexical half of the relevance gate, the
//! condensation rule and the extractive answer all use them.

use std::collections::HashSet;

use crate::store::keyword::KeywordIndex;

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

/// The key terms of `text`, each once, in order of appearance.
pub fn key_terms(keyword: &KeywordIndex, text: &str) -> Vec<String> {
    let stop: HashSet<String> = keyword.analyze(STOPWORDS).into_iter().collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for t in keyword.analyze(text) {
        if stop.contains(&t) || !seen.insert(t.clone()) {
            continue;
        }
        out.push(t);
    }
    out
}

/// The analyzer's terms of a passage, as a set.
pub fn term_set(keyword: &KeywordIndex, text: &str) -> HashSet<String> {
    keyword.analyze(text).into_iter().collect()
}

/// Share (0–1) of `terms` found in `passage`, each term weighted by its length in characters
/// capped at 2 (a single Han character or letter says less than a word). 0 when `terms` is
/// empty.
pub fn coverage(terms: &[String], passage: &HashSet<String>) -> f32 {
    let weight = |t: &String| t.chars().count().min(2) as f32;
    let total: f32 = terms.iter().map(weight).sum();
    if total == 0.0 {
        return 0.0;
    }
    let found: f32 = terms
        .iter()
        .filter(|t| passage.contains(*t))
        .map(weight)
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
        // Without a user dictionary jieba cuts 年假 into 年 + 假.
        assert!(t.contains(&"计算".to_string()) && t.contains(&"假".to_string()), "{t:?}");
        assert!(!t.iter().any(|x| x == "怎么"), "{t:?}");
        let t = key_terms(&kw, "How long must a password be?");
        assert!(t.contains(&"password".to_string()), "{t:?}");
        assert!(!t.iter().any(|x| x == "how" || x == "must"), "{t:?}");
        let passage = term_set(&kw, "员工年假按工龄计算：满1年不满10年的，年假5天。");
        let q = key_terms(&kw, "年假怎么计算？");
        assert!(coverage(&q, &passage) > 0.99, "{q:?}");
        let q = key_terms(&kw, "火星上有多少颗卫星");
        assert!(coverage(&q, &passage) < 0.01, "{q:?}");
        assert_eq!(coverage(&[], &passage), 0.0);
    }
}
