//! Records → token ids with a loss mask, and padded batches.
//!
//! A record is rendered as a whole conversation with the base model's own chat template
//! (the same tokenizer, template and BOS rule the generator uses, `generate::candle::
//! ChatFormat`), so training sees exactly the token ids answering later feeds the model.
//! The loss counts only the assistant's reply and the end-of-turn token that closes it:
//! the prompt (rendered with the generation prompt, as at answer time) must be a prefix of
//! the conversation; the reply runs from there to the first end-of-sequence token after
//! the reply's text (appended when the template writes none, e.g. GLM's).

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::model::{BaseModel, PADDING};
use super::{FinetuneError, Record, Result};
use crate::generate::candle::ChatFormat;

/// One tokenised training example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    pub ids: Vec<u32>,
    /// `targets[i]`: token `i` belongs to the reply, so predicting it counts in the loss.
    pub targets: Vec<bool>,
}

impl Example {
    /// Tokens whose prediction counts (the first token is never predicted).
    pub fn target_count(&self) -> usize {
        self.targets.iter().skip(1).filter(|t| **t).count()
    }
}

/// Encodes records for one base model.
pub struct Encoder {
    format: ChatFormat,
}

/// What encoding a file produced.
#[derive(Debug, Default)]
pub struct Encoded {
    pub examples: Vec<Example>,
    /// Records whose reply lies entirely beyond `max_len` (dropped, counted).
    pub too_long: usize,
    /// Records cut at `max_len` that kept part of their reply.
    pub truncated: usize,
}

impl Encoder {
    /// The tokenizer and chat template of `base` (its GGUF metadata or its folder).
    pub fn for_model(base: &BaseModel) -> Result<Self> {
        let format = ChatFormat::load(&base.path, None, base.gguf_metadata.as_ref(), &[])?;
        Ok(Self { format })
    }

    /// The tokenizer and chat template of the model at `path` (a GGUF file or a Hugging
    /// Face folder) without loading its weights: only the GGUF header is read.
    pub fn for_path(path: &std::path::Path) -> Result<Self> {
        let metadata = if path.is_file() {
            let read = |source| FinetuneError::Read {
                path: path.to_path_buf(),
                source,
            };
            let mut f = std::fs::File::open(path).map_err(read)?;
            let content = candle_core::quantized::gguf_file::Content::read(&mut f)
                .map_err(|e| FinetuneError::Model(format!("{}: {e}", path.display())))?;
            Some(content.metadata)
        } else {
            None
        };
        let format = ChatFormat::load(path, None, metadata.as_ref(), &[])?;
        Ok(Self { format })
    }

    /// Tokens of the whole record as training sees it (prompt, reply, end-of-turn, BOS).
    pub fn token_count(&self, record: &Record) -> Result<usize> {
        Ok(encode_record(&self.format, record, usize::MAX)?.map_or(0, |(e, _)| e.ids.len()))
    }

    /// Token ids and reply mask of one record, cut at `max_len` tokens. `None` when no
    /// reply token is left after the cut.
    pub fn encode(&self, record: &Record, max_len: usize) -> Result<Option<(Example, bool)>> {
        encode_record(&self.format, record, max_len)
    }

    /// Text of token ids (special tokens kept out, as the generator streams it).
    pub fn decode(&self, ids: &[u32]) -> String {
        self.format.tokenizer.decode(ids, true).unwrap_or_default()
    }

    /// Encode every record.
    pub fn encode_all(&self, records: &[Record], max_len: usize) -> Result<Encoded> {
        let mut out = Encoded::default();
        for r in records {
            match self.encode(r, max_len)? {
                Some((ex, cut)) => {
                    out.truncated += usize::from(cut);
                    out.examples.push(ex);
                }
                None => out.too_long += 1,
            }
        }
        Ok(out)
    }
}

/// Token ids and reply mask of one record in `format`, cut at `max_len` tokens. `None`
/// when no reply token is left after the cut. The trainer (through [`Encoder`]) and
/// `finetune::perplexity` (through the generator's format) both encode with this, so
/// they count the same tokens.
pub(crate) fn encode_record(
    format: &ChatFormat,
    record: &Record,
    max_len: usize,
) -> Result<Option<(Example, bool)>> {
    let template = &format.template;
    let prompt = template.render(&record.prompt())?;
    let mut full = template.render_conversation(&record.messages())?;
    if !full.starts_with(&prompt) {
        return Err(FinetuneError::Invalid(format!(
            "the model's chat template renders the prompt differently inside a finished \
             conversation (prompt {prompt:?} is not a prefix of {full:?}), so the reply's \
             tokens cannot be found; this template cannot be trained on"
        )));
    }
    // The reply ends with the first end-of-sequence token after its text.
    let reply_at = full[prompt.len()..]
        .find(record.output.as_str())
        .map(|i| prompt.len() + i + record.output.len())
        .unwrap_or(prompt.len());
    let eos = format.eos.as_deref().filter(|e| !e.is_empty());
    let end = match eos {
        Some(e) => match full[reply_at..].find(e) {
            Some(i) => reply_at + i + e.len(),
            None => {
                full.truncate(reply_at);
                full.push_str(e);
                full.len()
            }
        },
        None => full.len(),
    };
    full.truncate(end);
    let enc = format
        .tokenizer
        .encode(full.as_str(), false)
        .map_err(|e| FinetuneError::Invalid(format!("tokenising a record: {e}")))?;
    let mut ids = enc.get_ids().to_vec();
    // A token is a reply token when it ends inside the reply (a token straddling the
    // prompt/reply boundary counts as reply).
    let mut targets: Vec<bool> = enc
        .get_offsets()
        .iter()
        .map(|&(_, e)| e > prompt.len())
        .collect();
    if let Some(bos) = format.bos_prepend
        && ids.first() != Some(&bos)
    {
        ids.insert(0, bos);
        targets.insert(0, false);
    }
    let cut = ids.len() > max_len;
    ids.truncate(max_len);
    targets.truncate(max_len);
    let ex = Example { ids, targets };
    Ok((ex.target_count() > 0).then_some((ex, cut)))
}

/// A padded batch (right padding). A row holds one example, or several packed one after
/// another ([`Batch::packed`]): each keeps its own positions and attends only to itself.
pub struct Batch {
    /// batch × seq token ids.
    pub ids: Tensor,
    /// Real tokens per row.
    pub lengths: Vec<usize>,
    /// Positions that count.
    pub target_tokens: usize,
    /// Real (unpadded) tokens.
    pub tokens: usize,
    /// Position of each token inside its example (batch·seq, row-major).
    pub positions: Vec<u32>,
    /// Which example of its row each token belongs to; [`PADDING`] for padding.
    pub segments: Vec<u32>,
    /// Row-major indices (into batch·seq) of the positions that count, ascending …
    pub target_rows: Vec<u32>,
    /// … and the token each of them must predict.
    pub target_ids: Vec<u32>,
}

impl Batch {
    /// One example per row.
    pub fn new(examples: &[&Example], device: &Device) -> candle_core::Result<Self> {
        let rows: Vec<Vec<&Example>> = examples.iter().map(|e| vec![*e]).collect();
        Self::packed(&rows, device)
    }

    /// Each row holds the examples of one `rows` entry, back to back.
    pub fn packed(rows: &[Vec<&Example>], device: &Device) -> candle_core::Result<Self> {
        let b = rows.len();
        let row_len = |r: &Vec<&Example>| r.iter().map(|e| e.ids.len()).sum::<usize>();
        let t = rows.iter().map(row_len).max().unwrap_or(1).max(1);
        let mut ids = vec![0u32; b * t];
        let mut positions: Vec<u32> = (0..b * t).map(|i| (i % t) as u32).collect();
        let mut segments = vec![PADDING; b * t];
        let mut target_rows = Vec::new();
        let mut target_ids = Vec::new();
        let mut lengths = Vec::with_capacity(b);
        for (r, row) in rows.iter().enumerate() {
            let mut at = r * t;
            for (s, e) in row.iter().enumerate() {
                let n = e.ids.len();
                ids[at..at + n].copy_from_slice(&e.ids);
                for i in 0..n {
                    positions[at + i] = i as u32;
                    segments[at + i] = s as u32;
                }
                for i in 0..n.saturating_sub(1) {
                    if e.targets[i + 1] {
                        target_rows.push((at + i) as u32);
                        target_ids.push(e.ids[i + 1]);
                    }
                }
                at += n;
            }
            lengths.push(row_len(row));
        }
        Ok(Self {
            ids: Tensor::from_vec(ids, (b, t), device)?,
            target_tokens: target_rows.len(),
            tokens: lengths.iter().sum(),
            lengths,
            positions,
            segments,
            target_rows,
            target_ids,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::arch::tests::write_tiny_qwen2;

    fn reply_text(enc: &Encoder, ex: &Example) -> String {
        let ids: Vec<u32> = ex
            .ids
            .iter()
            .zip(&ex.targets)
            .filter(|(_, t)| **t)
            .map(|(i, _)| *i)
            .collect();
        enc.format.tokenizer.decode(&ids, false).unwrap()
    }

    fn record() -> Record {
        Record {
            instruction: "只根据资料回答。".into(),
            input: "问题：年假几天？".into(),
            output: "5 天 [1]。".into(),
        }
    }

    #[test]
    fn chatml_mask_covers_exactly_the_reply_and_end_of_turn() {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_qwen2(tmp.path(), 1);
        let base = BaseModel::load(tmp.path(), &Device::Cpu).unwrap();
        let enc = Encoder::for_model(&base).unwrap();
        let (ex, cut) = enc.encode(&record(), 512).unwrap().unwrap();
        assert!(!cut);
        assert_eq!(reply_text(&enc, &ex), "5 天 [1]。<|im_end|>");
        // The prompt part is the generator's prompt, token for token.
        let first = ex.targets.iter().position(|t| *t).unwrap();
        let prompt = enc.format.template.render(&record().prompt()).unwrap();
        let prompt_ids = enc.format.tokenizer.encode(prompt.as_str(), false).unwrap();
        assert_eq!(&ex.ids[..first], prompt_ids.get_ids());
        // Cut inside the reply: what is left of it still counts; cut before: dropped.
        let (short, cut) = enc.encode(&record(), first + 2).unwrap().unwrap();
        assert!(cut && short.target_count() == 2, "{short:?}");
        assert!(enc.encode(&record(), first).unwrap().is_none());
    }

    #[test]
    fn smollm2_mask_covers_exactly_the_reply_and_end_of_turn() {
        let Some(path) = crate::generate::candle::tests::smollm2() else {
            return;
        };
        // Only the tokenizer and template are needed; the base loads quickly enough.
        let base = BaseModel::load(&path, &Device::Cpu).unwrap();
        let enc = Encoder::for_model(&base).unwrap();
        let plain = Record {
            input: String::new(),
            ..record()
        };
        for r in [record(), plain] {
            let (ex, _) = enc.encode(&r, 512).unwrap().unwrap();
            assert_eq!(reply_text(&enc, &ex), "5 天 [1]。<|im_end|>");
            assert!(
                !ex.targets[..ex.targets.iter().position(|t| *t).unwrap()]
                    .iter()
                    .any(|t| *t)
            );
            // Nothing after the end-of-turn token.
            assert!(*ex.targets.last().unwrap());
        }
    }

    #[test]
    fn batch_shifts_targets_and_pads() {
        let a = Example {
            ids: vec![1, 2, 3, 4],
            targets: vec![false, false, true, true],
        };
        let b = Example {
            ids: vec![5, 6],
            targets: vec![false, true],
        };
        let batch = Batch::new(&[&a, &b], &Device::Cpu).unwrap();
        assert_eq!(batch.lengths, [4, 2]);
        assert_eq!(batch.target_tokens, 3);
        // Positions 1 and 2 of row 0 predict 3 and 4; position 0 of row 1 predicts 6.
        assert_eq!(batch.target_rows, [1, 2, 4]);
        assert_eq!(batch.target_ids, [3, 4, 6]);
        assert_eq!(batch.segments, [0, 0, 0, 0, 0, 0, PADDING, PADDING]);
        assert_eq!(batch.positions, [0, 1, 2, 3, 0, 1, 2, 3]);
    }
}
