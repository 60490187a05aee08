//! Hit testing: what the answer path makes of a question, step by step, without generating.
//!
//! [`inspect`] runs the functions [`super::ask_with`] runs — [`Gated::search`] (retrieval with
//! every candidate kept, then the relevance gate), [`Gated::relevant`] (the passages offered),
//! [`prompt::answer_prompt`] fitted to the same token budget — and reports each step's
//! result: every candidate with its dense and keyword scores, ranks and fused score; the
//! gate's verdict on each hit and why; which passages the prompt would hold and which were
//! cut, and by what. Nothing is reimplemented here, so what an admin sees is what a question
//! gets.

use std::time::Instant;

use serde::Serialize;

use super::{Gated, Lang, Prompts, RagError, first_budget, prompt, reserved_tokens};
use crate::engine::Engine;
use crate::generate::{Generator, SamplingParams};
use crate::retrieve::{Candidate, Hit};
use crate::store::{ChunkId, KbId, Reader};

/// Why a hit is or is not offered to the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// In the prompt (or, without a generator, offered to the extractive answer).
    Prompt,
    /// Relevant, but the prompt's token budget had no room for it.
    CutByBudget,
    /// Relevant, but beyond the `rag.sources` passages offered.
    CutBySources,
    /// Did not pass the relevance gate.
    CutByGate,
}

/// One hit as the answer path judged it.
#[derive(Debug, Clone, Serialize)]
pub struct JudgedHit {
    pub hit: Hit,
    /// Share of the question's key terms in the passage.
    pub coverage: f32,
    pub relevant: bool,
    /// Why the gate decided as it did, with the numbers.
    pub reason: String,
    pub placement: Placement,
}

/// The gate's settings and its verdict on the question.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// At least one passage passed: the question is answered from the passages; otherwise
    /// the answer is "not found".
    pub answered: bool,
    pub reason: String,
    pub min_term_coverage: f32,
    pub min_dense_score: f32,
}

/// The prompt's token budget, when a generator is configured.
#[derive(Debug, Clone, Serialize)]
pub struct Budget {
    pub model: String,
    pub context_length: usize,
    /// Kept free for the answer and the margin.
    pub reserved: usize,
    /// What the prompt may use.
    pub budget: usize,
    /// What the fitted prompt uses, by the generator's count.
    pub prompt_tokens: usize,
}

/// Everything [`inspect`] found.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub question: String,
    pub lang: Lang,
    /// The question's key terms (the gate's coverage counts these).
    pub key_terms: Vec<String>,
    /// Every candidate of both stores, best fused score first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
    /// The hits retrieval returned (`rag.retrieve_top_k` at most), judged, best first.
    pub hits: Vec<JudgedHit>,
    pub verdict: Verdict,
    /// The chunks the prompt would hold, in source order (`[1]`, `[2]`, …).
    pub prompt: Vec<ChunkId>,
    /// `None` without a generator: the answer is extractive, from every offered passage.
    pub budget: Option<Budget>,
    pub retrieval_ms: f64,
}

fn reason(r: &super::Relevance, terms: usize, min_cov: f32, min_dense: f32) -> String {
    // + 0.0 turns a −0 coverage into 0 for display.
    let coverage = r.coverage + 0.0;
    let cov = if terms == 0 {
        "the question has no key terms".to_string()
    } else if coverage >= min_cov {
        format!("key-term coverage {coverage:.2} ≥ {min_cov:.2}")
    } else {
        format!("key-term coverage {coverage:.2} < {min_cov:.2}")
    };
    let dense = match r.dense {
        None => "not a dense candidate".to_string(),
        Some(d) if d >= min_dense => format!("dense {d:.3} ≥ {min_dense:.3}"),
        Some(d) => format!("dense {d:.3} < {min_dense:.3}"),
    };
    format!("{cov}; {dense}")
}

/// Run `question` against `kbs` with `reader`'s rights (the knowledge bases and rights of
/// the asker: the caller's, or the user viewed as) through the answer path's retrieval, gate and prompt fitting.
/// `generator`: the one an answer would use (its context and token count fit the prompt);
/// `None` where answers are extractive. No history: the question is taken as standalone.
pub fn inspect(
    engine: &Engine,
    generator: Option<&dyn Generator>,
    sampling: &SamplingParams,
    question: &str,
    kbs: &[KbId],
    reader: &Reader,
) -> Result<Inspection, RagError> {
    let cfg = &engine.config.rag;
    let lang = Lang::detect(question);
    let t = Instant::now();
    let gated = Gated::search(engine, question, kbs, reader)?;
    let relevant = gated.relevant(cfg.sources);
    let retrieval_ms = t.elapsed().as_secs_f64() * 1e3;
    let (min_cov, min_dense) = (cfg.min_term_coverage, cfg.min_dense_score);

    let mut budget = None;
    let in_prompt: Vec<ChunkId> = match generator {
        Some(g) if !relevant.is_empty() => {
            let prompts = Prompts::new(Some(&engine.config.prompts_dir()));
            let reserved = reserved_tokens(engine, sampling);
            let b = first_budget(g, reserved);
            let fitted =
                prompt::answer_prompt(&prompts, lang, question, &relevant, &[], Some((g, b)));
            match fitted {
                Ok(p) => {
                    budget = Some(Budget {
                        model: g.model_id().to_string(),
                        context_length: g.context_length(),
                        reserved,
                        budget: b,
                        prompt_tokens: g.count_prompt_tokens(&p.messages)?,
                    });
                    p.sources.iter().map(|h| h.chunk).collect()
                }
                Err(RagError::ContextTooSmall { tokens, budget: b }) => {
                    budget = Some(Budget {
                        model: g.model_id().to_string(),
                        context_length: g.context_length(),
                        reserved,
                        budget: b,
                        prompt_tokens: tokens,
                    });
                    Vec::new()
                }
                Err(e) => return Err(e),
            }
        }
        _ => relevant.iter().map(|h| h.chunk).collect(),
    };
    let offered: Vec<ChunkId> = relevant.iter().map(|h| h.chunk).collect();

    let hits: Vec<JudgedHit> = gated
        .hits
        .iter()
        .zip(&gated.judged)
        .map(|(h, r)| JudgedHit {
            hit: h.clone(),
            coverage: r.coverage,
            relevant: r.relevant,
            reason: reason(r, gated.key.len(), min_cov, min_dense),
            placement: if in_prompt.contains(&h.chunk) {
                Placement::Prompt
            } else if offered.contains(&h.chunk) {
                Placement::CutByBudget
            } else if r.relevant {
                Placement::CutBySources
            } else {
                Placement::CutByGate
            },
        })
        .collect();

    let reason = if gated.hits.is_empty() {
        if kbs.is_empty() {
            "no knowledge base to search: the asker may not read this one".to_string()
        } else {
            "retrieval found no passage".to_string()
        }
    } else if relevant.is_empty() {
        format!(
            "none of the {} passages passed the gate (each needs key-term coverage ≥ \
             {min_cov:.2} or a dense score ≥ {min_dense:.3}): the answer is \"not found\"",
            gated.hits.len()
        )
    } else if in_prompt.is_empty() {
        "passages passed the gate, but not even one fits the prompt's token budget".to_string()
    } else {
        let n = hits.iter().filter(|h| h.relevant).count();
        format!(
            "{n} of {} passages passed the gate; {} go into the prompt",
            gated.hits.len(),
            in_prompt.len()
        )
    };
    Ok(Inspection {
        question: question.to_string(),
        lang,
        key_terms: gated.key.clone(),
        candidates: gated.candidates,
        verdict: Verdict {
            answered: !in_prompt.is_empty(),
            reason,
            min_term_coverage: min_cov,
            min_dense_score: min_dense,
        },
        prompt: in_prompt,
        budget,
        hits,
        retrieval_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rag::Relevance;

    #[test]
    fn reasons_name_the_numbers() {
        let r = Relevance {
            coverage: 0.75,
            dense: Some(0.5),
            relevant: true,
        };
        assert_eq!(
            reason(&r, 4, 0.5, 0.88),
            "key-term coverage 0.75 ≥ 0.50; dense 0.500 < 0.880"
        );
        let r = Relevance {
            coverage: 0.0,
            dense: None,
            relevant: false,
        };
        assert_eq!(
            reason(&r, 0, 0.5, 0.88),
            "the question has no key terms; not a dense candidate"
        );
        let r = Relevance {
            coverage: -0.0,
            dense: Some(0.9),
            relevant: true,
        };
        assert_eq!(
            reason(&r, 2, 0.5, 0.88),
            "key-term coverage 0.00 < 0.50; dense 0.900 ≥ 0.880"
        );
    }
}
