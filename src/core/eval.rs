//! Evaluation on SQuAD-layout QA files (CMRC 2018): retrieval quality and latency, and
//! answer quality (exact match, F1, citation precision) with latency.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::RetrieveConfig;
use crate::engine::{Engine, EngineError};
use crate::retrieve;
use crate::store::KbId;

#[derive(Debug, thiserror::Error)]
pub enum QaError {
    #[error("cannot read: {0}")]
    Read(#[from] std::io::Error),
    #[error("not a SQuAD-layout JSON file (data[].paragraphs[].context/qas): {0}")]
    Json(#[from] serde_json::Error),
    #[error("holds no paragraphs")]
    Empty,
}

#[derive(Deserialize)]
struct SquadFile {
    data: Vec<SquadArticle>,
}
#[derive(Deserialize)]
struct SquadArticle {
    #[serde(default)]
    title: String,
    #[serde(default)]
    id: Option<String>,
    paragraphs: Vec<SquadParagraph>,
}
#[derive(Deserialize)]
struct SquadParagraph {
    #[serde(default)]
    id: Option<String>,
    context: String,
    #[serde(default)]
    qas: Vec<SquadQa>,
}
#[derive(Deserialize)]
struct SquadQa {
    id: String,
    question: String,
    #[serde(default)]
    answers: Vec<SquadAnswer>,
}
#[derive(Deserialize)]
struct SquadAnswer {
    text: String,
}

/// A paragraph of a QA file.
#[derive(Debug, Clone)]
pub struct Paragraph {
    /// The paragraph's id (CMRC: `TRIAL_800`); generated as `<article>_<n>` when absent.
    pub id: String,
    pub title: String,
    pub context: String,
}

/// A question with its paragraph and gold answers.
#[derive(Debug, Clone)]
pub struct Question {
    pub id: String,
    pub paragraph: String,
    pub question: String,
    pub answers: Vec<String>,
}

/// A QA file: its paragraphs and questions.
#[derive(Debug, Clone)]
pub struct QaSet {
    pub paragraphs: Vec<Paragraph>,
    pub questions: Vec<Question>,
}

impl QaSet {
    pub fn load(path: &Path) -> Result<Self, QaError> {
        let text = std::fs::read_to_string(path)?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, QaError> {
        let file: SquadFile = serde_json::from_str(text)?;
        let mut paragraphs = Vec::new();
        let mut questions = Vec::new();
        for (ai, article) in file.data.into_iter().enumerate() {
            let aid = article.id.clone().unwrap_or_else(|| format!("A{ai}"));
            for (pi, p) in article.paragraphs.into_iter().enumerate() {
                let id = p.id.unwrap_or_else(|| format!("{aid}_{pi}"));
                for qa in p.qas {
                    questions.push(Question {
                        id: qa.id,
                        paragraph: id.clone(),
                        question: qa.question,
                        answers: qa.answers.into_iter().map(|a| a.text).collect(),
                    });
                }
                paragraphs.push(Paragraph {
                    id,
                    title: article.title.clone(),
                    context: p.context,
                });
            }
        }
        if paragraphs.is_empty() {
            return Err(QaError::Empty);
        }
        Ok(Self {
            paragraphs,
            questions,
        })
    }
}

/// Retrieval metrics. Fractions 0–1; latencies in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetrievalReport {
    pub queries: usize,
    #[serde(rename = "hit@1")]
    pub hit1: f64,
    #[serde(rename = "hit@3")]
    pub hit3: f64,
    #[serde(rename = "hit@5")]
    pub hit5: f64,
    #[serde(rename = "hit@10")]
    pub hit10: f64,
    #[serde(rename = "answer_recall@1")]
    pub recall1: f64,
    #[serde(rename = "answer_recall@3")]
    pub recall3: f64,
    #[serde(rename = "answer_recall@5")]
    pub recall5: f64,
    #[serde(rename = "answer_recall@10")]
    pub recall10: f64,
    #[serde(rename = "mrr@10")]
    pub mrr10: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p95: f64,
    /// Median of the query-embedding part alone.
    pub embed_ms_p50: f64,
}

const KS: [usize; 4] = [1, 3, 5, 10];

/// Ask every question of `set` against `kbs` and score the results.
pub fn eval_retrieval(
    engine: &Engine,
    set: &QaSet,
    kbs: &[KbId],
    config: &RetrieveConfig,
) -> Result<RetrievalReport, EngineError> {
    // Warm up: the first query pays for lazy loading.
    if let Some(q) = set.questions.first() {
        retrieve::search_with(engine, &q.question, kbs, 10, config)?;
    }
    let mut hits = [0usize; 4];
    let mut recalls = [0usize; 4];
    let mut mrr = 0.0;
    let mut lat = Vec::with_capacity(set.questions.len());
    let mut emb = Vec::with_capacity(set.questions.len());
    for q in &set.questions {
        let (results, t) = retrieve::search_with(engine, &q.question, kbs, 10, config)?;
        lat.push(t.total_ms);
        emb.push(t.embed_ms);
        let first_hit = results.iter().position(|h| h.document == q.paragraph);
        let first_answer = results.iter().position(|h| {
            q.answers
                .iter()
                .any(|a| !a.is_empty() && h.text.contains(a.as_str()))
        });
        for (i, k) in KS.iter().enumerate() {
            if first_hit.is_some_and(|p| p < *k) {
                hits[i] += 1;
            }
            if first_answer.is_some_and(|p| p < *k) {
                recalls[i] += 1;
            }
        }
        if let Some(p) = first_hit {
            mrr += 1.0 / (p as f64 + 1.0);
        }
    }
    let n = set.questions.len().max(1) as f64;
    let frac = |x: usize| x as f64 / n;
    Ok(RetrievalReport {
        queries: set.questions.len(),
        hit1: frac(hits[0]),
        hit3: frac(hits[1]),
        hit5: frac(hits[2]),
        hit10: frac(hits[3]),
        recall1: frac(recalls[0]),
        recall3: frac(recalls[1]),
        recall5: frac(recalls[2]),
        recall10: frac(recalls[3]),
        mrr10: mrr / n,
        latency_ms_p50: percentile(&mut lat, 0.50),
        latency_ms_p95: percentile(&mut lat, 0.95),
        embed_ms_p50: percentile(&mut emb, 0.50),
    })
}

/// Answer metrics. Fractions 0–1; latencies in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AnswerReport {
    /// Questions asked.
    pub questions: usize,
    /// `generated`, `extractive` (no generator) or a mix.
    pub mode: String,
    /// The generator's model id, when one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// CMRC 2018 exact match: the normalised answer equals a normalised gold answer.
    pub exact_match: f64,
    /// CMRC 2018 F1 (longest common substring of the mixed segmentation), best gold answer.
    pub f1: f64,
    /// Share of answers whose normalised text contains a normalised gold answer.
    pub answer_contains_gold: f64,
    /// Share of questions answered "not found" by the relevance gate.
    pub not_found: f64,
    /// Share of citations whose passage contains a gold answer or comes from the question's
    /// own paragraph (micro average over all citations).
    pub citation_precision: f64,
    /// Citations per answer, mean.
    pub citations_per_answer: f64,
    /// Whole question, condense to last piece of text.
    pub latency_ms_p50: f64,
    pub latency_ms_p95: f64,
    /// Time to first token, from the question (generator runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_ms_p50: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_ms_p95: Option<f64>,
    /// Decode speed, mean over answers (generator runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f64>,
    /// Cited sentences in all answers (the citation check's claims).
    pub cited_sentences: usize,
    /// Share of cited sentences the citation check found unsupported by their passages.
    pub unsupported_rate: f64,
    /// Share of answers (not "not found") holding a number no cited passage holds.
    pub answers_with_unsourced_numbers: f64,
    /// The citation check against a labelled sample (`--labelled`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim_check: Option<ClaimCheckReport>,
}

/// One cited sentence with the passages it cites: what `eval answers --claims-out` writes
/// (with the check's verdict) and what a labelled sample holds (with a person's verdict).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimSample {
    #[serde(default)]
    pub question_id: String,
    /// `generated` or `extractive`.
    #[serde(default)]
    pub mode: String,
    pub sentence: String,
    pub passages: Vec<String>,
    /// Supported by its passages: the check's verdict, or the label.
    pub supported: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The citation check measured on a labelled sample. "Positive" = unsupported.
#[derive(Debug, Clone, Serialize)]
pub struct ClaimCheckReport {
    pub sentences: usize,
    /// Sentences labelled unsupported.
    pub labelled_unsupported: usize,
    /// Sentences the check flagged unsupported.
    pub flagged: usize,
    /// Of the flagged, the share labelled unsupported.
    pub precision: f64,
    /// Of the labelled unsupported, the share flagged.
    pub recall: f64,
    /// Share of sentences where the check and the label agree.
    pub agreement: f64,
}

/// Run the citation check over a labelled sample (JSONL of [`ClaimSample`]) and compare.
pub fn eval_claim_check(
    keyword: &crate::store::keyword::KeywordIndex,
    path: &Path,
    min_coverage: f32,
) -> Result<ClaimCheckReport, QaError> {
    let text = std::fs::read_to_string(path)?;
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        samples.push(serde_json::from_str::<ClaimSample>(line)?);
    }
    if samples.is_empty() {
        return Err(QaError::Empty);
    }
    let (mut flagged, mut labelled, mut both, mut agree) = (0, 0, 0, 0);
    for s in &samples {
        let passages: Vec<&str> = s.passages.iter().map(String::as_str).collect();
        let verdict =
            crate::rag::claims::judge_sentence(keyword, &s.sentence, &passages, min_coverage);
        let flag = !verdict.supported;
        let bad = !s.supported;
        flagged += usize::from(flag);
        labelled += usize::from(bad);
        both += usize::from(flag && bad);
        agree += usize::from(flag == bad);
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Ok(ClaimCheckReport {
        sentences: samples.len(),
        labelled_unsupported: labelled,
        flagged,
        precision: ratio(both, flagged),
        recall: ratio(both, labelled),
        agreement: ratio(agree, samples.len()),
    })
}

/// Ask the first `limit` questions of `set` through the answer pipeline and score them.
pub fn eval_answers(
    engine: &Engine,
    generator: Option<&dyn crate::generate::Generator>,
    set: &QaSet,
    kbs: &[KbId],
    limit: Option<usize>,
    mut claims_out: Option<&mut Vec<ClaimSample>>,
) -> Result<AnswerReport, crate::rag::RagError> {
    use crate::rag::{self, Outcome};
    let questions: Vec<&Question> = set
        .questions
        .iter()
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    let (mut em, mut f1, mut contains, mut not_found) = (0.0, 0.0, 0usize, 0usize);
    let (mut cites, mut good_cites) = (0usize, 0usize);
    let (mut lat, mut ttft, mut tps) = (Vec::new(), Vec::new(), Vec::new());
    let (mut generated, mut extractive) = (0usize, 0usize);
    let (mut claims, mut unsupported, mut unsourced) = (0usize, 0usize, 0usize);
    for q in &questions {
        let a = rag::ask(engine, generator, &q.question, &[], kbs, &mut |_| {
            std::ops::ControlFlow::Continue(())
        })?;
        lat.push(a.total_ms);
        ttft.extend(a.ttft_ms);
        tps.extend(a.tokens_per_s);
        match a.outcome {
            Outcome::NotFound | Outcome::Blocked => not_found += 1,
            Outcome::Generated => generated += 1,
            Outcome::Extractive => extractive += 1,
        }
        claims += a.check.claims.len();
        unsupported += a.check.unsupported();
        unsourced += usize::from(!a.check.unsourced_numbers.is_empty());
        if let Some(out) = claims_out.as_deref_mut() {
            let mode = if a.outcome == Outcome::Generated {
                "generated"
            } else {
                "extractive"
            };
            for c in &a.check.claims {
                out.push(ClaimSample {
                    question_id: q.id.clone(),
                    mode: mode.into(),
                    sentence: c.sentence.clone(),
                    passages: a
                        .citations
                        .iter()
                        .filter(|x| c.cites.contains(&x.index))
                        .map(|x| x.text.clone())
                        .collect(),
                    supported: c.supported,
                    note: (!c.supported).then(|| {
                        format!(
                            "missing numbers {:?}, terms {:?}, coverage {:.2}",
                            c.missing_numbers,
                            c.missing_terms,
                            c.coverage.unwrap_or(1.0)
                        )
                    }),
                });
            }
        }
        let text = if a.outcome == Outcome::NotFound {
            String::new()
        } else {
            rag::cite::strip_markup(&a.answer)
        };
        em += exact_match(&text, &q.answers);
        f1 += f1_score(&text, &q.answers);
        let norm = normalize(&text);
        if q.answers.iter().any(|g| {
            let g = normalize(g);
            !g.is_empty() && norm.contains(&g)
        }) {
            contains += 1;
        }
        for c in &a.citations {
            cites += 1;
            let has_gold = q
                .answers
                .iter()
                .any(|g| !g.is_empty() && c.text.contains(g.as_str()));
            if has_gold || c.document == q.paragraph {
                good_cites += 1;
            }
        }
    }
    let n = questions.len().max(1) as f64;
    let mode = match (generated, extractive) {
        (0, _) => "extractive",
        (_, 0) => "generated",
        _ => "mixed",
    };
    let p = |v: &mut Vec<f64>, q| (!v.is_empty()).then(|| percentile(v, q));
    Ok(AnswerReport {
        questions: questions.len(),
        mode: mode.into(),
        model: generator.map(|g| g.model_id().to_string()),
        exact_match: em / n,
        f1: f1 / n,
        answer_contains_gold: contains as f64 / n,
        not_found: not_found as f64 / n,
        citation_precision: if cites == 0 {
            0.0
        } else {
            good_cites as f64 / cites as f64
        },
        citations_per_answer: cites as f64 / n,
        latency_ms_p50: percentile(&mut lat, 0.5),
        latency_ms_p95: percentile(&mut lat, 0.95),
        ttft_ms_p50: p(&mut ttft, 0.5),
        ttft_ms_p95: p(&mut ttft, 0.95),
        tokens_per_s: (!tps.is_empty()).then(|| tps.iter().sum::<f64>() / tps.len() as f64),
        cited_sentences: claims,
        unsupported_rate: if claims == 0 {
            0.0
        } else {
            unsupported as f64 / claims as f64
        },
        answers_with_unsourced_numbers: {
            let answered = questions.len() - not_found;
            if answered == 0 {
                0.0
            } else {
                unsourced as f64 / answered as f64
            }
        },
        claim_check: None,
    })
}

/// Punctuation the official CMRC 2018 script removes (plus every Unicode punctuation and
/// symbol character of the ASCII and CJK blocks).
fn is_punct(c: char) -> bool {
    c.is_ascii_punctuation()
        || "－：＿＊＾／＼～｀＋＝，。：？！“”；’《》……·、「」（）－～『』【】〔〕［］｛｝〈〉〖〗"
            .contains(c)
        || matches!(c as u32, 0x2000..=0x206F | 0x3000..=0x303F | 0xFF00..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65)
}

/// CMRC 2018 "mixed segmentation": every CJK character (and punctuation character) is a
/// token, runs of other characters split on whitespace are tokens; lower-cased, punctuation
/// and whitespace dropped.
pub fn segments(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let flush = |w: &mut String, out: &mut Vec<String>| {
        if !w.is_empty() {
            out.push(std::mem::take(w));
        }
    };
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_whitespace() {
            flush(&mut word, &mut out);
        } else if crate::rag::lang::is_han(c) || is_punct(c) {
            flush(&mut word, &mut out);
            if !is_punct(c) {
                out.push(c.to_string());
            }
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Lower-cased, punctuation and whitespace removed (the official EM comparison).
pub fn normalize(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .filter(|c| !c.is_whitespace() && !is_punct(*c))
        .collect()
}

/// 1 when the normalised prediction equals a normalised gold answer.
pub fn exact_match(prediction: &str, gold: &[String]) -> f64 {
    let p = normalize(prediction);
    if gold.iter().any(|g| normalize(g) == p) {
        1.0
    } else {
        0.0
    }
}

/// The official CMRC 2018 F1: precision and recall of the longest common (contiguous)
/// substring of the segmentations; the best over the gold answers.
pub fn f1_score(prediction: &str, gold: &[String]) -> f64 {
    let p = segments(prediction);
    gold.iter()
        .map(|g| {
            let g = segments(g);
            let lcs = longest_common_substring(&p, &g);
            if lcs == 0 {
                return 0.0;
            }
            let precision = lcs as f64 / p.len() as f64;
            let recall = lcs as f64 / g.len() as f64;
            2.0 * precision * recall / (precision + recall)
        })
        .fold(0.0, f64::max)
}

fn longest_common_substring(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut best = 0;
    for x in a {
        let mut cur = vec![0usize; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            if x == y {
                cur[j + 1] = prev[j] + 1;
                best = best.max(cur[j + 1]);
            }
        }
        prev = cur;
    }
    best
}

/// Nearest-rank percentile (0 for an empty list).
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_squad_layout() {
        let json = r#"{"version":"v1","data":[{"id":"A","title":"泡泡战士","paragraphs":[
            {"id":"P1","context":"生命数耗完即算为踢爆。","qas":[{"id":"Q1","question":"生命数耗完即算为什么？","answers":[{"text":"踢爆","answer_start":8}]}]},
            {"context":"无编号段落。","qas":[]}]}]}"#;
        let s = QaSet::parse(json).unwrap();
        assert_eq!(s.paragraphs.len(), 2);
        assert_eq!(s.paragraphs[0].id, "P1");
        assert_eq!(s.paragraphs[1].id, "A_1");
        assert_eq!(s.paragraphs[0].title, "泡泡战士");
        assert_eq!(s.questions.len(), 1);
        assert_eq!(s.questions[0].paragraph, "P1");
        assert_eq!(s.questions[0].answers, vec!["踢爆".to_string()]);
    }

    #[test]
    fn bad_files_are_clear_errors() {
        assert!(matches!(QaSet::parse("{}"), Err(QaError::Json(_))));
        assert!(matches!(
            QaSet::parse(r#"{"data":[]}"#),
            Err(QaError::Empty)
        ));
    }

    #[test]
    fn exact_match_and_f1() {
        let gold = vec!["1999年".to_string(), "一九九九年".to_string()];
        assert_eq!(exact_match("1999年。", &gold), 1.0);
        assert_eq!(exact_match(" 一九九九年 ", &gold), 1.0);
        assert_eq!(exact_match("1999", &gold), 0.0);
        // "1999" "年" vs prediction "于" "1999" "年" "成" "立": lcs 2, p 2/5, r 2/2 → 4/7.
        assert!((f1_score("于1999年成立", &gold) - 4.0 / 7.0).abs() < 1e-9);
        assert_eq!(f1_score("毫无关系", &gold), 0.0);
        assert_eq!(f1_score("", &gold), 0.0);
        assert_eq!(f1_score("1999年", &gold), 1.0);
        assert_eq!(
            segments("Hello, World 中文！abc"),
            vec!["hello", "world", "中", "文", "abc"]
        );
        // The longest common substring, not subsequence: 年…月 apart counts 1.
        let g = vec!["三月".to_string()];
        assert!(
            (f1_score("三年后的五月", &g) - 2.0 * (1.0 / 6.0) * 0.5 / (1.0 / 6.0 + 0.5)).abs()
                < 1e-9
        );
    }

    #[test]
    fn percentiles() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&mut v, 0.5), 3.0);
        assert_eq!(percentile(&mut v, 0.95), 5.0);
        assert_eq!(percentile(&mut [], 0.5), 0.0);
    }
}
