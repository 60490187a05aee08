//! The claim-level citation check: is each cited sentence of an answer backed by the
//! passages it cites? Run after every answer, with no second model call.
//!
//! A cited sentence is the text a `[n]` marker (or a run of adjacent markers) closes: back to
//! the previous full stop, line break or marker, the same carrier rule as the chat page's
//! passage highlighting (`web/static/markdown.js`, `carrierSentence`). It is **supported**
//! when
//! - every number and date in it occurs in one of its cited passages (Arabic or Chinese
//!   numerals, full-width digits, thousands separators and trailing decimal zeros are read
//!   alike: `1,200` = `1200`, `十五天` = `15天`, `二〇一九年` = `2019年`), and
//! - at least `rag.claim_min_coverage` of its key terms (the relevance gate's terms, less
//!   numbers) occur in them, by the same look-up the gate uses (analyzer terms, and Han terms
//!   as gapped substrings).
//!
//! Numbers anywhere in the answer, cited sentence or not, that no cited passage holds are
//! listed on their own ([`ClaimCheck::unsourced_numbers`]): a made-up figure is the error
//! users can least afford. The method and its threshold were chosen on a labelled sample of
//! the CMRC 2018 trial (`bench/claims/`, README "Citation check").

use std::collections::HashSet;

use serde::Serialize;

use crate::store::KbId;
use crate::store::keyword::KeywordIndex;

use super::cite::{self, Citation};
use super::terms::{self, Passage};

/// One cited sentence and the verdict on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claim {
    /// The sentence as plain text (markers and emphasis removed).
    pub sentence: String,
    /// The marker numbers that cite it (those of the answer's citations).
    pub cites: Vec<usize>,
    pub supported: bool,
    /// Share of the sentence's key terms found in its cited passages; `None` when it has no
    /// key terms (only its numbers are checked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f32>,
    /// Key terms that none of its cited passages holds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_terms: Vec<String>,
    /// Numbers and dates that none of its cited passages holds (one is enough to make the
    /// sentence unsupported).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_numbers: Vec<String>,
    /// The knowledge bases of its cited passages (for the per-KB rate).
    #[serde(skip)]
    pub kbs: Vec<KbId>,
}

/// The check of one answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClaimCheck {
    /// Every cited sentence, in order.
    pub claims: Vec<Claim>,
    /// Numbers and dates anywhere in the answer that no cited passage holds, each once.
    pub unsourced_numbers: Vec<String>,
}

impl ClaimCheck {
    /// Cited sentences found unsupported.
    pub fn unsupported(&self) -> usize {
        self.claims.iter().filter(|c| !c.supported).count()
    }
}

/// A cited passage as the check sees it: its marker number, text and knowledge base.
#[derive(Debug, Clone, Copy)]
pub struct Cited<'a> {
    pub index: usize,
    pub text: &'a str,
    pub kb: KbId,
}

/// Check `answer` (markdown with `[n]` markers, already resolved against `citations`):
/// each cited sentence against the passages it cites, and every number against all of them.
/// `min_coverage`: `rag.claim_min_coverage`.
pub fn check(
    keyword: &KeywordIndex,
    answer: &str,
    citations: &[Citation],
    min_coverage: f32,
) -> ClaimCheck {
    let cited: Vec<Cited> = citations
        .iter()
        .map(|c| Cited {
            index: c.index,
            text: &c.text,
            kb: c.kb,
        })
        .collect();
    check_cited(keyword, answer, &cited, min_coverage)
}

/// [`check`] with the citations as the check sees them (a stored conversation's, read back
/// as JSON).
pub fn check_cited(
    keyword: &KeywordIndex,
    answer: &str,
    citations: &[Cited],
    min_coverage: f32,
) -> ClaimCheck {
    let mut claims = Vec::new();
    for (sentence, cites) in cited_sentences(answer) {
        let cited: Vec<&Cited> = citations
            .iter()
            .filter(|c| cites.contains(&c.index))
            .collect();
        if cited.is_empty() {
            continue;
        }
        let texts: Vec<&str> = cited.iter().map(|c| c.text).collect();
        let mut kbs: Vec<KbId> = cited.iter().map(|c| c.kb).collect();
        kbs.sort_unstable();
        kbs.dedup();
        claims.push(judge(keyword, &sentence, cites, &texts, min_coverage, kbs));
    }
    let all: Vec<&str> = citations.iter().map(|c| c.text).collect();
    let known = numbers_of_passages(&all);
    let mut seen = HashSet::new();
    let unsourced_numbers = numbers(&plain(&cite::strip_markup(answer)), Side::Answer)
        .into_iter()
        .filter(|n| !known.contains(n) && seen.insert(n.clone()))
        .collect();
    ClaimCheck {
        claims,
        unsourced_numbers,
    }
}

/// The verdict on `sentence` against the passage texts `passages` (labelled samples and the
/// bench call this directly).
pub fn judge_sentence(
    keyword: &KeywordIndex,
    sentence: &str,
    passages: &[&str],
    min_coverage: f32,
) -> Claim {
    judge(
        keyword,
        sentence,
        Vec::new(),
        passages,
        min_coverage,
        Vec::new(),
    )
}

fn judge(
    keyword: &KeywordIndex,
    sentence: &str,
    cites: Vec<usize>,
    passages: &[&str],
    min_coverage: f32,
    kbs: Vec<KbId>,
) -> Claim {
    let known = numbers_of_passages(passages);
    let mut missing_numbers: Vec<String> = Vec::new();
    for n in numbers(sentence, Side::Answer) {
        if !known.contains(&n) && !missing_numbers.contains(&n) {
            missing_numbers.push(n);
        }
    }
    let key: Vec<String> = terms::key_terms(keyword, sentence)
        .into_iter()
        .filter(|t| !is_numeric_term(t))
        .collect();
    let joined = passages.join("\n");
    let passage = Passage::new(keyword, &joined);
    let coverage = (!key.is_empty()).then(|| terms::coverage(&key, &passage));
    let missing_terms: Vec<String> = key.into_iter().filter(|t| !passage.contains(t)).collect();
    let supported = missing_numbers.is_empty() && coverage.is_none_or(|c| c >= min_coverage);
    Claim {
        sentence: sentence.to_string(),
        cites,
        supported,
        coverage,
        missing_terms,
        missing_numbers,
        kbs,
    }
}

fn is_numeric_term(t: &str) -> bool {
    t.chars()
        .all(|c| c.is_ascii_digit() || is_fullwidth_digit(c) || cn_digit(c).is_some() || c == '.')
}

/// Sentence ends for the carrier rule (a `.` only before whitespace or the end).
fn is_terminator(text: &str, i: usize, c: char) -> bool {
    match c {
        '。' | '！' | '？' | '!' | '?' | '\n' => true,
        '.' => text[i + 1..].chars().next().is_none_or(char::is_whitespace),
        _ => false,
    }
}

fn is_edge_punct(c: char) -> bool {
    c.is_whitespace() || "。！？!?；;.,，:：".contains(c)
}

/// The cited sentences of `answer`: for each run of adjacent markers, the plain text it
/// closes and the numbers it cites (sorted, each once). A marker after a full stop cites the
/// sentence before it; a sentence shorter than 4 characters ("是的[1]") takes in the one
/// before it.
pub fn cited_sentences(answer: &str) -> Vec<(String, Vec<usize>)> {
    let markers = cite::markers(answer);
    let mut out = Vec::new();
    let mut prev_end = 0;
    let mut i = 0;
    while i < markers.len() {
        let start = markers[i].range.start;
        let mut end = markers[i].range.end;
        let mut numbers = markers[i].numbers.clone();
        while i + 1 < markers.len() && answer[end..markers[i + 1].range.start].trim().is_empty() {
            i += 1;
            end = markers[i].range.end;
            numbers.extend(&markers[i].numbers);
        }
        let before = plain(&answer[prev_end..start]);
        let before = before.trim_end_matches(is_edge_punct);
        let cut = before
            .char_indices()
            .filter(|&(k, c)| is_terminator(before, k, c))
            .map(|(k, c)| k + c.len_utf8())
            .next_back()
            .unwrap_or(0);
        let mut sentence = before[cut..].trim_start_matches(is_edge_punct);
        if sentence.chars().count() < 4 && cut > 0 {
            sentence = before.trim_start_matches(is_edge_punct);
        }
        numbers.sort_unstable();
        numbers.dedup();
        out.push((sentence.trim().to_string(), numbers));
        prev_end = end;
        i += 1;
    }
    out
}

/// `text` without markdown emphasis and code marks, and without the list, heading and quote
/// marks that open its lines (so that "1. " is not read as a number).
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (k, line) in text.split('\n').enumerate() {
        if k > 0 {
            out.push('\n');
        }
        let t = line.trim_start();
        let t = t.trim_start_matches(['#', '>']).trim_start();
        let t = strip_list_mark(t);
        out.push_str(&t.replace("**", "").replace("__", "").replace('`', ""));
    }
    out
}

fn strip_list_mark(t: &str) -> &str {
    for m in ["- ", "* ", "+ ", "• ", "· "] {
        if let Some(rest) = t.strip_prefix(m) {
            return rest.trim_start();
        }
    }
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=3).contains(&digits) {
        let rest = &t[digits..];
        for m in [". ", ") ", "、", "）"] {
            if let Some(r) = rest.strip_prefix(m) {
                return r.trim_start();
            }
        }
    }
    t
}

fn is_fullwidth_digit(c: char) -> bool {
    ('０'..='９').contains(&c)
}

fn ascii_digit(c: char) -> Option<u32> {
    if c.is_ascii_digit() {
        c.to_digit(10)
    } else if is_fullwidth_digit(c) {
        Some(c as u32 - '０' as u32)
    } else {
        None
    }
}

fn cn_digit(c: char) -> Option<u64> {
    Some(match c {
        '零' | '〇' => 0,
        '一' => 1,
        '二' | '两' => 2,
        '三' => 3,
        '四' => 4,
        '五' => 5,
        '六' => 6,
        '七' => 7,
        '八' => 8,
        '九' => 9,
        _ => return None,
    })
}

fn cn_unit(c: char) -> Option<u64> {
    Some(match c {
        '十' => 10,
        '百' => 100,
        '千' => 1_000,
        '万' => 10_000,
        '亿' => 100_000_000,
        _ => return None,
    })
}

/// Measure words after which a Chinese numeral in an answer is read as a number (一样, 统一,
/// 十分 stay words).
const MEASURES: &str = "年月日天号个元块角次人岁时周倍页条项名位家种件米克斤里度届期章节册";

/// Which text the numbers are read from: an answer counts Chinese numerals only before a
/// measure word (or of two or more characters); a passage counts every one, so that an
/// answer's `5天` finds the passage's `五天`.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Answer,
    Passage,
}

/// The value of a run of Chinese numerals: positional when it has 十百千万亿 (十五 = 15,
/// 三千二百 = 3200), digit by digit otherwise (二〇一九 = 2019).
fn cn_value(run: &[char]) -> Option<u64> {
    if !run.iter().any(|&c| cn_unit(c).is_some()) {
        let mut v: u64 = 0;
        for &c in run {
            v = v.checked_mul(10)?.checked_add(cn_digit(c)?)?;
        }
        return Some(v);
    }
    let (mut total, mut section, mut number) = (0u64, 0u64, 0u64);
    for &c in run {
        if let Some(d) = cn_digit(c) {
            number = d;
        } else if let Some(u) = cn_unit(c) {
            if u >= 10_000 {
                total = (total + section + number).checked_mul(u)?;
                section = 0;
            } else {
                section += number.max(u64::from(number == 0 && section == 0)) * u;
            }
            number = 0;
        }
    }
    Some(total + section + number)
}

/// Normal form of an Arabic number: ASCII digits, no thousands separators, no leading zeros
/// (`03` = `3`), no trailing decimal zeros (`3.50` = `3.5`, `2.0` = `2`).
fn normal(int: &str, frac: &str) -> String {
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    }
}

/// The numbers of `text` in normal form, in order (repeats kept).
fn numbers(text: &str, side: Side) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if ascii_digit(chars[i]).is_some() {
            let (mut int, mut frac) = (String::new(), String::new());
            while i < chars.len() {
                match ascii_digit(chars[i]) {
                    Some(d) => int.push(char::from(b'0' + d as u8)),
                    // 1,200 (a comma followed by exactly three digits) is one number.
                    None if chars[i] == ','
                        && chars.len() > i + 3
                        && (1..=3).all(|k| ascii_digit(chars[i + k]).is_some())
                        && chars.get(i + 4).is_none_or(|&c| ascii_digit(c).is_none()) =>
                    {
                        i += 1;
                        continue;
                    }
                    None => break,
                }
                i += 1;
            }
            if i + 1 < chars.len()
                && matches!(chars[i], '.' | '．')
                && ascii_digit(chars[i + 1]).is_some()
            {
                i += 1;
                while let Some(d) = chars.get(i).and_then(|&c| ascii_digit(c)) {
                    frac.push(char::from(b'0' + d as u8));
                    i += 1;
                }
            }
            out.push(normal(&int, &frac));
            continue;
        }
        if cn_digit(chars[i]).is_some() || cn_unit(chars[i]).is_some_and(|u| u <= 10) {
            let start = i;
            while i < chars.len() && (cn_digit(chars[i]).is_some() || cn_unit(chars[i]).is_some()) {
                i += 1;
            }
            let run = &chars[start..i];
            let before_measure = chars.get(i).is_some_and(|&c| MEASURES.contains(c));
            let value = cn_value(run);
            // A lone numeral is a number only before a measure word, and never a lone 一
            // (一样, 之一, 一次, 一个: words and articles more often than claims).
            let counts = match side {
                Side::Passage => true,
                Side::Answer => run.len() >= 2 || (before_measure && value != Some(1)),
            };
            if counts && let Some(v) = value {
                out.push(v.to_string());
            }
            continue;
        }
        i += 1;
    }
    out
}

fn numbers_of_passages(passages: &[&str]) -> HashSet<String> {
    passages
        .iter()
        .flat_map(|p| numbers(p, Side::Passage))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rag::cite::tests::hit;

    fn keyword() -> (tempfile::TempDir, KeywordIndex) {
        let dir = tempfile::tempdir().unwrap();
        let kw = KeywordIndex::open(dir.path(), None).unwrap();
        (dir, kw)
    }

    /// Numbers of `text` as an answer's are read.
    fn answer_numbers(text: &str) -> Vec<String> {
        numbers(text, Side::Answer)
    }

    fn citation(index: usize, text: &str) -> Citation {
        let mut h = hit(index as u64);
        h.text = text.to_string();
        h.kb = 7;
        Citation::from_hit(index, &h)
    }

    #[test]
    fn numbers_read_alike_in_every_notation() {
        assert_eq!(answer_numbers("满1年不满10年的，年假5天"), ["1", "10", "5"]);
        assert_eq!(answer_numbers("共1,200元，约3.50%"), ["1200", "3.5"]);
        assert_eq!(answer_numbers("２０１９年３月０５日"), ["2019", "3", "5"]);
        assert_eq!(
            answer_numbers("十五天，二〇一九年，三千二百元"),
            ["15", "2019", "3200"]
        );
        assert_eq!(answer_numbers("一百二十万人"), ["1200000"]);
        assert_eq!(answer_numbers("两个月"), ["2"]);
        // Words, not numbers.
        assert!(answer_numbers("统一标准，一样重要，十分必要，之一，一次，一个").is_empty());
        assert_eq!(numbers("年假五天", Side::Passage), ["5"]);
        assert_eq!(answer_numbers("1,2,3"), ["1", "2", "3"]);
        assert_eq!(answer_numbers("v2.0 和 2.5"), ["2", "2.5"]);
    }

    #[test]
    fn cited_sentences_follow_the_carrier_rule() {
        let s = cited_sentences("年假5天[1]。病假按医嘱[2][3]。\n- **婚假**3天。[1]\n是的[2]");
        let texts: Vec<&str> = s.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(texts, ["年假5天", "病假按医嘱", "婚假3天", "是的"]);
        assert_eq!(s[1].1, [2, 3]);
        // A marker closes the text since the previous marker: "A；[1]B；[2]" cites B with [2].
        let s = cited_sentences("满1年年假5天；[1]满10年年假10天；[2]");
        assert_eq!(s[1].0, "满10年年假10天");
        assert_eq!(
            cited_sentences("1. 第一条规定\n2. 第二条规定 [1, 2]")[0].0,
            "第二条规定"
        );
        // Too short to stand alone: the sentence before it comes too.
        assert_eq!(cited_sentences("年假5天。是的[1]")[0].0, "年假5天。是的");
    }

    #[test]
    fn a_quoted_sentence_is_supported() {
        let (_d, kw) = keyword();
        let c = [citation(
            1,
            "员工年假按工龄计算：满1年不满10年的，年假5天；满10年的，年假10天。",
        )];
        let r = check(
            &kw,
            "员工**年假**按工龄计算：满1年不满10年的，年假5天[1]。",
            &c,
            0.5,
        );
        assert_eq!(r.claims.len(), 1);
        assert!(r.claims[0].supported, "{r:?}");
        assert!(r.unsourced_numbers.is_empty());
        assert_eq!(r.claims[0].kbs, [7]);
        // A paraphrase in Chinese numerals is the same claim.
        let r = check(&kw, "工龄满十年的员工年假为十天[1]。", &c, 0.5);
        assert!(r.claims[0].supported, "{r:?}");
    }

    #[test]
    fn a_made_up_number_is_caught() {
        let (_d, kw) = keyword();
        let c = [citation(
            1,
            "员工年假按工龄计算：满1年不满10年的，年假5天。",
        )];
        let r = check(
            &kw,
            "满1年不满10年的员工年假15天[1]。另有2019年的新规。",
            &c,
            0.5,
        );
        assert!(!r.claims[0].supported);
        assert_eq!(r.claims[0].missing_numbers, ["15"]);
        // Uncited sentences' numbers are flagged too.
        assert_eq!(r.unsourced_numbers, ["15", "2019"]);
        assert_eq!(r.unsupported(), 1);
    }

    #[test]
    fn a_sentence_about_something_else_is_unsupported() {
        let (_d, kw) = keyword();
        let c = [
            citation(1, "员工年假按工龄计算，满1年的年假5天。"),
            citation(2, "差旅住宿标准：一线城市每晚不超过600元。"),
        ];
        let r = check(&kw, "出差住宿的报销标准由财务部审批[1]。", &c, 0.5);
        assert!(!r.claims[0].supported, "{r:?}");
        assert!(r.claims[0].coverage.unwrap() < 0.5);
        // The same sentence citing the right passage passes.
        let r = check(&kw, "差旅住宿标准为一线城市每晚不超过600元[2]。", &c, 0.5);
        assert!(r.claims[0].supported, "{r:?}");
        // Markers that cite nothing the answer has are not claims.
        assert!(check(&kw, "无关[9]", &c, 0.5).claims.is_empty());
    }

    #[test]
    fn english_sentences_are_checked_by_their_stems() {
        let (_d, kw) = keyword();
        let c = [citation(
            1,
            "Passwords must be at least 12 characters long and are rotated every 90 days.",
        )];
        let r = check(&kw, "A password needs at least 12 characters [1].", &c, 0.5);
        assert!(r.claims[0].supported, "{r:?}");
        let r = check(&kw, "Passwords are rotated every 30 days [1].", &c, 0.5);
        assert_eq!(r.claims[0].missing_numbers, ["30"]);
    }
}
