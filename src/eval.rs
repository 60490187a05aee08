//! Evaluation on SQuAD-layout QA files (CMRC 2018): retrieval quality and latency.

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
    fn percentiles() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&mut v, 0.5), 3.0);
        assert_eq!(percentile(&mut v, 0.95), 5.0);
        assert_eq!(percentile(&mut [], 0.5), 0.0);
    }
}
