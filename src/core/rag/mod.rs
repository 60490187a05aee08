//! Grounded answers: condense → retrieve → relevance gate → prompt → generate → cite.
//!
//! One module per step: [`condense`] (follow-ups → standalone questions), [`terms`] (key terms
//! and coverage: the lexical relevance gate), [`prompt`] (templates, numbered sources, context
//! fitting), [`cite`] (markers → passages), [`extract`] (the answer without a generator),
//! [`claims`] (each cited sentence checked against its passages).
//! [`ask`] runs them in order for one question.

pub mod cite;
pub mod claims;
pub mod condense;
pub mod extract;
pub mod guard;
pub mod inspect;
pub mod lang;
pub mod location;
pub mod prompt;
pub mod terms;

use std::ops::ControlFlow;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tracing::info_span;

use crate::engine::{Engine, EngineError};
use crate::generate::{GenerateError, GenerationStats, Generator, SamplingParams};
use crate::retrieve::{self, Hit};
use crate::store::{KbId, Reader};

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
    /// The output content filter (`server.blocked_words`) withheld the answer: a refusal in
    /// the question's language, no citations. Set by the server; [`ask`] never returns it.
    Blocked,
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
    /// Each cited sentence checked against the passages it cites, and the numbers no cited
    /// passage holds ([`claims::check`]; empty for "not found").
    #[serde(flatten)]
    pub check: claims::ClaimCheck,
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
    /// Instruction-like text in the question or the offered passages ([`guard::flags`]):
    /// answered as usual, recorded in the server's query log.
    #[serde(skip)]
    pub flags: Vec<guard::Flag>,
}

/// Most prompts tried for one answer when the generator finds them too long.
pub const MAX_PROMPT_ATTEMPTS: usize = 3;

/// An answer as generated, and the prompt it came from.
struct Generated<'h> {
    /// Its sources are the ones the answer's citation markers number.
    prompt: prompt::AnswerPrompt<'h>,
    text: String,
    /// When the first text came, ms after the question.
    first_ms: Option<f64>,
    stats: GenerationStats,
}

/// Generate an answer from the prompt `build` makes for a token budget: the context less
/// `reserved` tokens (the answer's and the margin's).
///
/// A remote server counts with its own tokenizer, which may find more tokens than the
/// estimate the prompt was fitted by, and refuse it (`ContextOverflow`, with its numbers).
/// When that happens before any text was streamed, the prompt is built again for a budget
/// scaled by those numbers ([`retry_budget`]), so that fewer earlier turns and sources are
/// in it; at most [`MAX_PROMPT_ATTEMPTS`] prompts, then the server's error.
fn generate_fitted<'h>(
    g: &dyn Generator,
    params: &SamplingParams,
    reserved: usize,
    build: impl Fn(usize) -> Result<prompt::AnswerPrompt<'h>, RagError>,
    start: Instant,
    on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
) -> Result<Generated<'h>, RagError> {
    let mut budget = first_budget(g, reserved);
    // The last refusal and the prompt refused.
    let mut refused: Option<(GenerateError, prompt::AnswerPrompt<'h>)> = None;
    for attempt in 1..=MAX_PROMPT_ATTEMPTS {
        let prompt = match (build(budget), refused) {
            (Ok(p), None) => p,
            (Ok(p), Some((error, before))) => {
                tracing::info!(
                    attempt,
                    %error,
                    budget,
                    sources = p.sources.len(),
                    dropped_sources = ?before
                        .sources
                        .iter()
                        .skip(p.sources.len())
                        .map(|h| h.title.as_str())
                        .collect::<Vec<_>>(),
                    turns = p.history,
                    dropped_turns = before.history.saturating_sub(p.history),
                    "the generator found the prompt too long; trying again with less of it"
                );
                p
            }
            // Not even one source fits the smaller budget: the refusal says why, with the
            // server's numbers.
            (Err(RagError::ContextTooSmall { .. }), Some((error, _))) => return Err(error.into()),
            (Err(e), _) => return Err(e),
        };
        let mut text = String::new();
        let mut first_ms: Option<f64> = None;
        let result = g.generate(&prompt.messages, params, &mut |piece| {
            if first_ms.is_none() && !piece.is_empty() {
                first_ms = Some(start.elapsed().as_secs_f64() * 1e3);
            }
            text.push_str(piece);
            on_text(piece)
        });
        match result {
            Ok(stats) => {
                return Ok(Generated {
                    prompt,
                    text,
                    first_ms,
                    stats,
                });
            }
            Err(
                error @ GenerateError::ContextOverflow {
                    prompt_tokens,
                    context_length,
                    ..
                },
            ) if text.is_empty() && attempt < MAX_PROMPT_ATTEMPTS => {
                let counted = g.count_prompt_tokens(&prompt.messages)?;
                budget = retry_budget(counted, prompt_tokens, reserved, context_length);
                refused = Some((error, prompt));
            }
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!("the last attempt returns")
}

/// Tokens of the context kept free of the prompt: the answer's (`max_tokens`) and the
/// configured margin (`rag.context_margin_tokens`).
pub fn reserved_tokens(engine: &Engine, params: &SamplingParams) -> usize {
    params.max_tokens + engine.config.rag.context_margin_tokens
}

/// The token budget of the first prompt tried for an answer.
pub fn first_budget(g: &dyn Generator, reserved: usize) -> usize {
    g.context_length().saturating_sub(reserved)
}

/// The budget, by the generator's own count, for the prompt to try after one it counted
/// `counted` tokens was refused as `prompt_tokens` tokens of a `context_length` context of
/// which `reserved` must stay free: the room the refusing side has for a prompt, converted
/// to the generator's count at the ratio of the two counts, less 5 % (the ratio varies a
/// little from passage to passage; `reserved` holds the configured margin too); and at
/// most 90 % of `counted`, so that every attempt is smaller even when a server gives no
/// numbers (the client then reports its own).
pub fn retry_budget(
    counted: usize,
    prompt_tokens: usize,
    reserved: usize,
    context_length: usize,
) -> usize {
    let room = context_length.saturating_sub(reserved) as f64;
    let ratio = counted as f64 / prompt_tokens.max(1) as f64;
    let scaled = (room * ratio * 0.95) as usize;
    scaled.min(counted - counted.div_ceil(10))
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

/// What retrieval and the relevance gate make of a question: the hits, the question's key
/// terms and the gate's verdict on each hit. Answering starts here, and so does the
/// fine-tune data builder, so training data offers the model exactly the passages an
/// answer would.
pub struct Gated {
    pub hits: Vec<Hit>,
    pub key: Vec<String>,
    pub judged: Vec<Relevance>,
    /// Every candidate of both stores, fused order (for hit testing).
    pub candidates: Vec<retrieve::Candidate>,
}

impl Gated {
    /// Retrieve `rag.retrieve_top_k` hits for `question` from `kbs`, with `reader`'s
    /// rights, and judge each.
    pub fn search(
        engine: &Engine,
        question: &str,
        kbs: &[KbId],
        reader: &Reader,
    ) -> Result<Self, EngineError> {
        let found = retrieve::search_explained(
            engine,
            question,
            kbs,
            reader,
            engine.config.rag.retrieve_top_k,
            &engine.config.retrieve,
        )?;
        let hits = found.hits;
        let key = terms::key_terms(&engine.keyword, question);
        let judged = judge(engine, &key, &hits);
        Ok(Self {
            hits,
            key,
            judged,
            candidates: found.candidates,
        })
    }

    /// The hits that pass the gate, best first, at most `sources` of them.
    pub fn relevant(&self, sources: usize) -> Vec<&Hit> {
        self.hits
            .iter()
            .zip(&self.judged)
            .filter(|(_, r)| r.relevant)
            .map(|(h, _)| h)
            .take(sources)
            .collect()
    }
}

/// Answer `question` from the knowledge bases `kbs` (every chunk readable: the operator's
/// command line; users' answers go through [`ask_with`] with their [`Reader`]), streaming the
/// text through `on_text`
/// (`Break` cancels generation). Without a generator the answer is extractive. The last
/// `rag.max_history_turns` turns of `history` (oldest first) turn a follow-up into a
/// standalone question for retrieval, and go into the answer prompt so that the generator
/// sees the conversation too. Sampling is `generate.sampling` from the configuration.
pub fn ask(
    engine: &Engine,
    generator: Option<&dyn Generator>,
    question: &str,
    history: &[Turn],
    kbs: &[KbId],
    on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
) -> Result<Answer, RagError> {
    let sampling = &engine.config.generate.sampling;
    ask_with(
        engine,
        generator,
        sampling,
        question,
        history,
        kbs,
        &Reader::All,
        on_text,
    )
}

/// [`ask`] with the caller's sampling parameters for the answer (an API client's
/// `max_tokens`, `temperature`, `stop`, `seed`…), so that one server honours each request's
/// settings; the context budget for passages follows its `max_tokens`. Only chunks `reader`
/// may read are retrieved, so neither the answer nor its citations can hold another's.
#[allow(clippy::too_many_arguments)]
pub fn ask_with(
    engine: &Engine,
    generator: Option<&dyn Generator>,
    sampling: &SamplingParams,
    question: &str,
    history: &[Turn],
    kbs: &[KbId],
    reader: &Reader,
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
    let gated = Gated::search(engine, &standalone, kbs, reader)?;
    let relevant = gated.relevant(cfg.sources);
    let retrieval_ms = t.elapsed().as_secs_f64() * 1e3;
    tracing::debug!(
        hits = gated.hits.len(),
        relevant = relevant.len(),
        judged = ?gated.judged,
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
        check: claims::ClaimCheck::default(),
        sources: relevant.len(),
        retrieval_ms,
        ttft_ms: None,
        tokens_per_s: None,
        generation: None,
        total_ms: 0.0,
        flags: guard::flags(question, &relevant),
    };

    if relevant.is_empty() {
        answer.answer = prompts.get_lang("not_found", lang)?;
        let _ = on_text(&answer.answer);
    } else if let Some(g) = generator {
        let params = sampling;
        let reserved = reserved_tokens(engine, params);
        let build = |budget| {
            prompt::answer_prompt(
                &prompts,
                lang,
                &standalone,
                &relevant,
                history,
                Some((g, budget)),
            )
        };
        let done = generate_fitted(g, params, reserved, build, start, on_text)?;
        answer.sources = done.prompt.sources.len();
        let (cleaned, citations) = cite::resolve(&done.text, &done.prompt.sources);
        answer.outcome = Outcome::Generated;
        answer.answer = cleaned;
        answer.citations = citations;
        answer.ttft_ms = done.first_ms;
        answer.tokens_per_s = Some(done.stats.tokens_per_s);
        answer.generation = Some(done.stats);
    } else {
        let e = extract::extract(
            &engine.keyword,
            &relevant,
            &gated.key,
            cfg.extractive_sentences,
        );
        answer.outcome = Outcome::Extractive;
        answer.notice = Some(prompts.get_lang("extractive", lang)?);
        answer.answer = e.text;
        answer.citations = e.citations;
        let _ = on_text(&answer.answer);
    }
    if answer.outcome != Outcome::NotFound {
        answer.check = claims::check(
            &engine.keyword,
            &answer.answer,
            &answer.citations,
            cfg.claim_min_coverage,
        );
    }
    answer.total_ms = start.elapsed().as_secs_f64() * 1e3;
    tracing::info!(
        outcome = ?answer.outcome,
        citations = answer.citations.len(),
        cited_sentences = answer.check.claims.len(),
        unsupported = answer.check.unsupported(),
        unsourced_numbers = ?answer.check.unsourced_numbers,
        ms = answer.total_ms,
        "answered"
    );
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::retry_budget;

    #[test]
    fn retry_budget_shrinks_by_the_servers_count() {
        // The server counts 1.5× the estimate: 4096 − 576 of room is 2346 estimated
        // tokens, less 5 %.
        assert_eq!(retry_budget(3000, 4500, 576, 4096), 2229);
        // A server that gives no numbers (the client reports its own estimate and
        // context): 10 % less each time.
        assert_eq!(retry_budget(3000, 3000, 576, 4096), 2700);
        assert_eq!(retry_budget(2700, 2700, 576, 4096), 2430);
        // No room at all: 0, which no prompt fits.
        assert_eq!(retry_budget(3000, 4500, 5000, 4096), 0);
        assert_eq!(retry_budget(0, 0, 0, 4096), 0);
    }
}
