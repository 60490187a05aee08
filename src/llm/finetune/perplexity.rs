//! Perplexity of an inference model (`zhiku model perplexity`): `exp` of the mean negative
//! log-likelihood per token, through the same loader and tokenizer answers use
//! ([`CandleGenerator`]), so a base, a base + adapter, a merged folder and a quantised GGUF
//! are measured the same way.
//!
//! - **Instruction records** (JSONL): the tokens the trainer's held-out loss counts
//!   (`train::evaluate`), encoded by the same code ([`encode::encode_record`]): the whole
//!   conversation rendered with the model's chat template and tokenised in one piece, BOS
//!   as the model wants it, cut at `max_len` tokens; the reply's tokens and the end-of-turn
//!   token that closes it count (the model must learn to stop). A record cut inside its
//!   reply counts what is left of it ([`Perplexity::cut`]); one whose reply lies beyond
//!   `max_len` (or the model's context) is skipped and counted. With the `max_len` of the
//!   training run the figure is the trainer's eval perplexity of that model.
//! - **Plain text**: every token but the first of each window (or all of them after a BOS,
//!   when the model has one), in consecutive windows of at most [`TEXT_WINDOW`] tokens.
//!
//! The architectures return the last position's logits only, so the reply is fed one token
//! at a time through the KV cache: slow for long texts, fine for held-out sets of a few
//! hundred records.

use std::path::Path;

use serde::Serialize;

use super::encode::encode_record;
use super::{FinetuneError, Record, Result, read_jsonl};
use crate::generate::candle::CandleGenerator;
use crate::generate::{GenerateError, Generator};

/// Longest window of plain text scored at once, in tokens.
pub const TEXT_WINDOW: usize = 512;

/// Where records are cut by default: `zhiku finetune train`'s default `--max-len`.
pub const RECORD_MAX_LEN: usize = 1024;

/// A perplexity measurement.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Perplexity {
    /// Tokens scored.
    pub tokens: usize,
    /// Mean negative log-likelihood per token (nats).
    pub mean_nll: f64,
    pub perplexity: f64,
    /// Records (or text windows) scored, and records skipped: their reply lies beyond
    /// `max_len` or the model's context.
    pub items: usize,
    pub skipped: usize,
    /// Records cut at `max_len` inside their reply: the part before the cut is scored.
    #[serde(default)]
    pub cut: usize,
}

fn gen_err(e: GenerateError) -> FinetuneError {
    FinetuneError::Invalid(format!("scoring: {e}"))
}

fn finish(nll: f64, tokens: usize, items: usize, skipped: usize, cut: usize) -> Result<Perplexity> {
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
        cut,
    })
}

/// Perplexity of the replies (with their end-of-turn tokens) of `records`, each cut at
/// `max_len` tokens or the model's context, whichever is shorter (see the module doc).
pub fn of_records(g: &CandleGenerator, records: &[Record], max_len: usize) -> Result<Perplexity> {
    let _span = tracing::info_span!("perplexity", records = records.len(), max_len).entered();
    let max_len = max_len.min(g.context_length());
    let (mut nll, mut tokens, mut items, mut skipped, mut cut) = (0.0, 0, 0, 0, 0);
    for r in records {
        let Some((ex, was_cut)) = encode_record(g.chat_format(), r, max_len)? else {
            skipped += 1;
            continue;
        };
        // The reply is the tail of the example (the mask is "ends after the prompt"); the
        // first token is never predicted, as in the trainer's shifted loss.
        let first = ex
            .targets
            .iter()
            .skip(1)
            .position(|t| *t)
            .map_or(0, |i| i + 1);
        if first == 0 || ex.targets[first..].iter().any(|t| !t) {
            return Err(FinetuneError::Invalid(format!(
                "the reply of record {:?} is not the end of its encoded conversation",
                r.instruction.chars().take(60).collect::<String>()
            )));
        }
        let (context, target) = ex.ids.split_at(first);
        nll += g.score(context, target).map_err(gen_err)?;
        tokens += target.len();
        items += 1;
        cut += usize::from(was_cut);
    }
    finish(nll, tokens, items, skipped, cut)
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
    finish(nll, tokens, items, 0, 0)
}

/// Perplexity of a file: JSONL records (`.jsonl`, cut at `max_len` tokens) or plain text
/// (anything else).
pub fn of_file(g: &CandleGenerator, path: &Path, max_len: usize) -> Result<Perplexity> {
    if path.extension().is_some_and(|e| e == "jsonl") {
        of_records(g, &read_jsonl(path)?, max_len)
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
    use candle_core::Device;

    use super::*;
    use crate::finetune::encode::{Encoder, Example};
    use crate::finetune::model::BaseModel;
    use crate::finetune::train;
    use crate::generate::candle::CandleOptions;

    fn record(instruction: &str, input: &str, output: &str) -> Record {
        Record {
            instruction: instruction.into(),
            input: input.into(),
            output: output.into(),
        }
    }

    /// The trainer's held-out loss (`train::evaluate` over `Encoder::encode_all`) and
    /// `of_records` on the same records and `max_len`: the same tokens (replies with their
    /// end-of-turn tokens, one reply cut, one record dropped) and the same mean NLL.
    fn agrees_with_the_trainer(model: &Path) {
        let short = record("Say yes.", "", "Yes.");
        let long = record(
            "You answer from the sources.",
            "What is the leave policy?",
            "New staff get five days of annual leave, which grows by one day for every year \
             of service up to fifteen days; unused days expire at the end of March.",
        );
        let lost = record(
            &"Read this carefully before answering. ".repeat(12),
            "",
            "Ok.",
        );
        let base = BaseModel::load(model, &Device::Cpu).unwrap();
        let enc = Encoder::for_model(&base).unwrap();
        // Cut inside the long reply, after the whole short record, before the lost reply.
        let (s, _) = enc.encode(&short, usize::MAX).unwrap().unwrap();
        let (l, _) = enc.encode(&long, usize::MAX).unwrap().unwrap();
        let (x, _) = enc.encode(&lost, usize::MAX).unwrap().unwrap();
        let reply_start = |e: &Example| e.targets.iter().position(|t| *t).unwrap();
        let max_len = s.ids.len().max(reply_start(&l) + 3);
        assert!(
            max_len < l.ids.len() && max_len <= reply_start(&x),
            "{max_len}"
        );
        let records = [short.clone(), long, lost];
        let set = enc.encode_all(&records, max_len).unwrap();
        assert_eq!((set.examples.len(), set.truncated, set.too_long), (2, 1, 1));
        let trainer = train::evaluate(&base, None, &set.examples, 2).unwrap();
        let counted: usize = set.examples.iter().map(Example::target_count).sum();
        drop(base);

        let g = CandleGenerator::load(&CandleOptions::new(model)).unwrap();
        assert!(max_len <= g.context_length());
        let p = of_records(&g, &records, max_len).unwrap();
        assert_eq!(p.tokens, counted, "{p:?}");
        assert_eq!((p.items, p.cut, p.skipped), (2, 1, 1), "{p:?}");
        let rel = (p.mean_nll - trainer).abs() / trainer;
        assert!(rel < 1e-4, "perplexity {} vs trainer {trainer}", p.mean_nll);
        // The reply's own tokens and the end-of-turn token that closes it.
        let one = of_records(&g, std::slice::from_ref(&short), max_len).unwrap();
        assert_eq!(one.tokens, g.encode(&short.output).unwrap().len() + 1);
    }

    #[test]
    fn records_count_the_tokens_the_trainer_counts() {
        let tmp = tempfile::tempdir().unwrap();
        crate::generate::arch::tests::write_tiny_qwen2(tmp.path(), 5);
        agrees_with_the_trainer(tmp.path());
        if let Some(path) = crate::generate::candle::tests::smollm2() {
            agrees_with_the_trainer(&path);
        }
    }

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
        let good = of_records(
            &g,
            &[record("The capital of France is Paris.")],
            RECORD_MAX_LEN,
        )
        .unwrap();
        let bad = of_records(
            &g,
            &[record("Purple elephants compile bananas.")],
            RECORD_MAX_LEN,
        )
        .unwrap();
        assert!(good.perplexity < bad.perplexity, "{good:?} {bad:?}");
        assert_eq!(good.items, 1);
    }
}
