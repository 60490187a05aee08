//! Grounded answers: condense → retrieve → relevance gate → prompt → generate → cite.
//!
//! One module per step: [`condense`] (follow-ups → standalone questions), [`terms`] (key terms
//! and coverage: the lexical relevance gate), [`prompt`] (templates, numbered sources, context
//! fitting), [`cite`] (markers → passages), [`extract`] (the answer without a generator).
//! [`ask`] runs them in order for one question.

pub mod cite;
pub mod condense;
pub mod extract;
pub mod lang;
pub mod prompt;
pub mod terms;

use std::ops::ControlFlow;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tracing::info_span;

use crate::engine::{Engine, EngineError};
use crate::generate::{GenerateError, GenerationStats, Generator, SamplingParams};
use crate::retrieve::{self, Hit};
use crate::store::KbId;

pub use cite::Citation;
pub use lang::Lang;
pub use prompt::Prompts;

#[derive(Debug, thiserror::Error)]
pub enum RagError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error(
        "prompt template {path}: {source} (fix or delete the file to use the built-in template)"
    )]
    Prompt {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the generator's context is too small for even one passage ({tokens} prompt tokens, \
         {budget} available); raise generate.context_length, lower generate.sampling.max_tokens \
         or shorten the templates"
    )]
    ContextTooSmall { tokens: usize, budget: usize },
}

/// One earlier exchange of a chat: the (standalone) question and the answer given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub question: String,
    pub answer: String,
}

/// How an answer was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The generator wrote it from the passages.
    Generated,
    /// Quoted sentences (no generator configured).
    Extractive,
    /// No passage was relevant enough: a plain "not found" in the question's language.
    NotFound,
}

/// How relevant one retrieved passage is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Relevance {
    /// Share of the question's key terms in the passage.
    pub coverage: f32,
    /// Dense cosine similarity, when the passage was a dense candidate.
    pub dense: Option<f32>,
    pub relevant: bool,
}

/// An answer with its sources.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub question: String,
    /// The question retrieval ran with (differs from `question` for a rewritten follow-up).
    pub standalone_question: String,
    pub lang: Lang,
    pub outcome: Outcome,
    /// The answer: markdown with `[n]` citation markers (out-of-range markers removed).
    pub answer: String,
    /// A line to show before an extractive answer (it says no generator wrote it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// The cited passages, by marker number.
    pub citations: Vec<Citation>,
    /// Passages that passed the relevance gate and were offered (to the prompt or the
    /// extractor), best first.
    pub sources: usize,
    pub retrieval_ms: f64,
    /// From the question to the first piece of answer text, when a generator ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<GenerationStats>,
    pub total_ms: f64,
}

/// Judge every hit by the gate of `rag.min_term_coverage` / `rag.min_dense_score`.
pub fn judge(engine: &Engine, terms: &[String], hits: &[Hit]) -> Vec<Relevance> {
    let c = &engine.config.rag;
    hits.iter()
        .map(|h| {
            let coverage = terms::coverage(terms, &terms::Passage::new(&engine.keyword, &h.text));
            let dense = h.scores.dense;
            let relevant = (!terms.is_empty() && coverage >= c.min_term_coverage)
                || dense.is_some_and(|d| d >= c.min_dense_score);
            Relevance {
                coverage,
                dense,
                relevant,
            }
        })
        .collect()
}

/// Answer `question` from the knowledge bases `kbs`, streaming the text through `on_text`
/// (`Break` cancels generation). Without a generator the answer is extractive. Sampling is
/// `generate.sampling` from the configuration.
pub fn ask(
    engine: &Engine,
    generator: Option<&dyn Generator>,
    question: &str,
    history: &[Turn],
    kbs: &[KbId],
    on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
) -> Result<Answer, RagError> {
    let sampling = &engine.config.generate.sampling;
    ask_with(engine, generator, sampling, question, history, kbs, on_text)
}

/// [`ask`] with the caller's sampling parameters for the answer (an API client's
/// `max_tokens`, `temperature`, `stop`, `seed`…), so that one server honours each request's
/// settings; the context budget for passages follows its `max_tokens`.
pub fn ask_with(
    engine: &Engine,
    generator: Option<&dyn Generator>,
    sampling: &SamplingParams,
    question: &str,
    history: &[Turn],
    kbs: &[KbId],
    on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
) -> Result<Answer, RagError> {
    let start = Instant::now();
    let cfg = &engine.config.rag;
    let lang = Lang::detect(question);
    let _span = info_span!("ask", kbs = ?kbs, lang = lang.code()).entered();
    let prompts = Prompts::new(Some(&engine.config.prompts_dir()));
    let history = &history[history.len().saturating_sub(cfg.max_history_turns)..];

    let standalone = match generator {
        Some(g) if cfg.condense_with_generator && !history.is_empty() => {
            condense::by_generator(g, &prompts, &engine.keyword, question, history)?
        }
        _ => condense::by_rule(&engine.keyword, question, history),
    };
    if standalone != question {
        tracing::debug!(standalone = %standalone, "follow-up rewritten");
    }

    let t = Instant::now();
    let (hits, _) = retrieve::search(engine, &standalone, kbs, cfg.retrieve_top_k)?;
    let key = terms::key_terms(&engine.keyword, &standalone);
    let judged = judge(engine, &key, &hits);
    let relevant: Vec<&Hit> = hits
        .iter()
        .zip(&judged)
        .filter(|(_, r)| r.relevant)
        .map(|(h, _)| h)
        .take(cfg.sources)
        .collect();
    let retrieval_ms = t.elapsed().as_secs_f64() * 1e3;
    tracing::debug!(
        hits = hits.len(),
        relevant = relevant.len(),
        ?judged,
        "relevance gate"
    );

    let mut answer = Answer {
        question: question.to_string(),
        standalone_question: standalone.clone(),
        lang,
        outcome: Outcome::NotFound,
        answer: String::new(),
        notice: None,
        citations: Vec::new(),
        sources: relevant.len(),
        retrieval_ms,
        ttft_ms: None,
        tokens_per_s: None,
        generation: None,
        total_ms: 0.0,
    };

    if relevant.is_empty() {
        answer.answer = prompts.get_lang("not_found", lang)?;
        let _ = on_text(&answer.answer);
    } else if let Some(g) = generator {
        let params = sampling;
        let budget = g
            .context_length()
            .saturating_sub(params.max_tokens + cfg.context_margin_tokens);
        let p = prompt::answer_prompt(&prompts, lang, &standalone, &relevant, Some((g, budget)))?;
        answer.sources = p.sources.len();
        let mut text = String::new();
        let mut first: Option<f64> = None;
        let stats = g.generate(&p.messages, params, &mut |piece| {
            if first.is_none() && !piece.is_empty() {
                first = Some(start.elapsed().as_secs_f64() * 1e3);
            }
            text.push_str(piece);
            on_text(piece)
        })?;
        let (cleaned, citations) = cite::resolve(&text, &p.sources);
        answer.outcome = Outcome::Generated;
        answer.answer = cleaned;
        answer.citations = citations;
        answer.ttft_ms = first;
        answer.tokens_per_s = Some(stats.tokens_per_s);
        answer.generation = Some(stats);
    } else {
        let e = extract::extract(&engine.keyword, &relevant, &key, cfg.extractive_sentences);
        answer.outcome = Outcome::Extractive;
        answer.notice = Some(prompts.get_lang("extractive", lang)?);
        answer.answer = e.text;
        answer.citations = e.citations;
        let _ = on_text(&answer.answer);
    }
    answer.total_ms = start.elapsed().as_secs_f64() * 1e3;
    tracing::info!(
        outcome = ?answer.outcome,
        citations = answer.citations.len(),
        ms = answer.total_ms,
        "answered"
    );
    Ok(answer)
}
