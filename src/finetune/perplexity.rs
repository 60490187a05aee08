//! Perplexity of an inference model (`zhiku model perplexity`): `exp` of the mean negative
//! log-likelihood per token, through the same loader and tokenizer answers use
//! ([`CandleGenerator`]), so a base, a base + adapter, a merged folder and a quantised GGUF
//! are measured the same way.
//!
//! - **Instruction records** (JSONL): only the reply's tokens count, after the prompt
//!   rendered with the model's chat template, as the trainer's loss does (the end-of-turn
//!   token is not counted: its form differs between templates). A record whose prompt and
//!   reply do not fit the context window is skipped and counted.
//! - **Plain text**: every token but the first of each window (or all of them after a BOS,
//!   when the model has one), in consecutive windows of at most [`TEXT_WINDOW`] tokens.
//!
//! The architectures return the last position's logits only, so the reply is fed one token
//! at a time through the KV cache: slow for long texts, fine for held-out sets of a few
//! hundred records.

use std::path::Path;

use serde::Serialize;

use super::{FinetuneError, Record, Result, read_jsonl};
use crate::generate::candle::CandleGenerator;
use crate::generate::{GenerateError, Generator};

/// Longest window of plain text scored at once, in tokens.
pub const TEXT_WINDOW: usize = 512;

/// A perplexity measurement.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Perplexity {
    /// Tokens scored.
    pub tokens: usize,
    /// Mean negative log-likelihood per token (nats).
    pub mean_nll: f64,
    pub perplexity: f64,
    /// Records (or text windows) scored and skipped (too long for the context).
    pub items: usize,
    pub skipped: usize,
}

fn gen_err(e: GenerateError) -> FinetuneError {
    FinetuneError::Invalid(format!("scoring: {e}"))
}

fn finish(nll: f64, tokens: usize, items: usize, skipped: usize) -> Result<Perplexity> {
    if tokens == 0 {
        return Err(FinetuneError::Invalid(format!(
            "nothing to score: {items} item(s), {skipped} too long for the model's context"
        )));
    }
    let mean_nll = nll / tokens as f64;
    Ok(Perplexity {
        tokens,
        mean_nll,
        perplexity: mean_nll.exp(),
        items,
        skipped,
    })
}

/// Perplexity of the replies of `records`.
pub fn of_records(g: &CandleGenerator, records: &[Record]) -> Result<Perplexity> {
    let _span = tracing::info_span!("perplexity", records = records.len()).entered();
    let (mut nll, mut tokens, mut items, mut skipped) = (0.0, 0, 0, 0);
    for r in records {
        let context = g.prompt_ids(&r.prompt()).map_err(gen_err)?;
        let target = g.encode(&r.output).map_err(gen_err)?;
        if target.is_empty() {
            continue;
        }
        match g.score(&context, &target) {
            Ok(v) => {
                nll += v;
                tokens += target.len();
                items += 1;
            }
            Err(GenerateError::ContextOverflow { .. }) => skipped += 1,
            Err(e) => return Err(gen_err(e)),
        }
    }
    finish(nll, tokens, items, skipped)
}

/// Perplexity of plain text.
pub fn of_text(g: &CandleGenerator, text: &str) -> Result<Perplexity> {
    let _span = tracing::info_span!("perplexity_text", chars = text.len()).entered();
    let ids = g.encode(text).map_err(gen_err)?;
    let window = TEXT_WINDOW.min(g.context_length()).max(2);
    let (mut nll, mut tokens, mut items) = (0.0, 0, 0);
    for w in ids.chunks(window - 1) {
        let (context, target): (Vec<u32>, &[u32]) = match g.bos_id() {
            Some(bos) => (vec![bos], w),
            None if w.len() >= 2 => (vec![w[0]], &w[1..]),
            None => continue,
        };
        nll += g.score(&context, target).map_err(gen_err)?;
        tokens += target.len();
        items += 1;
    }
    finish(nll, tokens, items, 0)
}

/// Perplexity of a file: JSONL records (`.jsonl`) or plain text (anything else).
pub fn of_file(g: &CandleGenerator, path: &Path) -> Result<Perplexity> {
    if path.extension().is_some_and(|e| e == "jsonl") {
        of_records(g, &read_jsonl(path)?)
    } else {
        let text = std::fs::read_to_string(path).map_err(|source| FinetuneError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        of_text(g, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::candle::CandleOptions;

    #[test]
    fn natural_text_is_less_perplexing_than_random_text() {
        let Some(path) = crate::generate::candle::tests::smollm2() else {
            return;
        };
        let g = CandleGenerator::load(&CandleOptions::new(&path)).unwrap();
        let natural = "The capital of France is Paris. It is known for the Eiffel Tower, \
                       which was built in 1889 for the World's Fair.";
        // The same letters, scrambled by a fixed permutation.
        let mut chars: Vec<char> = natural.chars().collect();
        let n = chars.len();
        for i in 0..n {
            chars.swap(i, (i * 7919 + 13) % n);
        }
        let scrambled: String = chars.into_iter().collect();
        let a = of_text(&g, natural).unwrap();
        let b = of_text(&g, &scrambled).unwrap();
        assert!(a.tokens > 20 && b.tokens > 20, "{a:?} {b:?}");
        assert!(
            a.perplexity * 5.0 < b.perplexity,
            "natural {a:?} vs scrambled {b:?}"
        );
        // A reply the model itself would give scores better than an absurd one.
        let record = |output: &str| Record {
            instruction: "What is the capital of France?".into(),
            input: String::new(),
            output: output.into(),
        };
        let good = of_records(&g, &[record("The capital of France is Paris.")]).unwrap();
        let bad = of_records(&g, &[record("Purple elephants compile bananas.")]).unwrap();
        assert!(good.perplexity < bad.perplexity, "{good:?} {bad:?}");
        assert_eq!(good.items, 1);
    }
}
