//! Tokenizers for the in-process generator: a `tokenizer.json`, or one rebuilt from GGUF
//! metadata, and incremental detokenisation that streams only valid UTF-8.
//!
//! A GGUF file of a BPE model (`tokenizer.ggml.model = "gpt2"`: SmolLM2, Qwen2, Llama 3)
//! carries its vocabulary (`tokenizer.ggml.tokens`), merges (`tokenizer.ggml.merges`,
//! `"a b"` strings), token types (3 = control, 4 = user-defined: both become added tokens,
//! so `<|im_start|>` in a rendered prompt is one token) and the name of the pre-tokeniser
//! (`tokenizer.ggml.pre`). [`from_gguf_metadata`] turns that into the equivalent Hugging
//! Face `tokenizer.json` (BPE model, ByteLevel pre-tokeniser and decoder) and loads it with
//! `tokenizers`. SentencePiece GGUF vocabularies (`llama`) are not rebuilt: point
//! `generate.tokenizer` at the model's `tokenizer.json` instead.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use serde_json::json;
use tokenizers::Tokenizer;

/// Split regex of the Llama 3 (`llama-bpe`) and GLM-4 pre-tokenisers.
pub(crate) const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Split regex of the Qwen2 pre-tokeniser (single digits).
pub(crate) const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF token types (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

fn md_str<'a>(md: &'a HashMap<String, Value>, key: &str) -> Option<&'a str> {
    md.get(key)
        .and_then(|v| v.to_string().ok())
        .map(|s| s.as_str())
}

fn md_u32(md: &HashMap<String, Value>, key: &str) -> Option<u32> {
    let v = md.get(key)?;
    v.to_u32()
        .ok()
        .or_else(|| v.to_i32().ok().map(|x| x as u32))
        .or_else(|| v.to_u64().ok().map(|x| x as u32))
}

fn md_bool(md: &HashMap<String, Value>, key: &str) -> Option<bool> {
    md.get(key).and_then(|v| v.to_bool().ok())
}

fn md_strings(md: &HashMap<String, Value>, key: &str) -> Result<Vec<String>, String> {
    let v = md
        .get(key)
        .ok_or_else(|| format!("GGUF metadata has no `{key}`"))?;
    let items = v
        .to_vec()
        .map_err(|e| format!("GGUF `{key}` is not an array: {e}"))?;
    items
        .iter()
        .map(|x| {
            x.to_string()
                .cloned()
                .map_err(|e| format!("GGUF `{key}` holds a non-string: {e}"))
        })
        .collect()
}

fn md_i32s(md: &HashMap<String, Value>, key: &str) -> Option<Vec<i32>> {
    let items = md.get(key)?.to_vec().ok()?;
    items
        .iter()
        .map(|x| {
            x.to_i32()
                .ok()
                .or_else(|| x.to_u32().ok().map(|u| u as i32))
        })
        .collect()
}

/// What a tokenizer rebuilt from GGUF metadata knows besides the vocabulary.
#[derive(Debug, Clone, Default)]
pub(crate) struct GgufSpecials {
    pub bos: Option<String>,
    pub eos: Option<String>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`: prepend BOS when the rendered prompt lacks it.
    pub add_bos: bool,
}

/// Special token ids and strings recorded in GGUF metadata (also useful when the
/// tokenizer itself comes from a `tokenizer.json` override).
pub(crate) fn gguf_specials(md: &HashMap<String, Value>) -> GgufSpecials {
    let tokens = md_strings(md, "tokenizer.ggml.tokens").unwrap_or_default();
    let bos_id = md_u32(md, "tokenizer.ggml.bos_token_id");
    let eos_id = md_u32(md, "tokenizer.ggml.eos_token_id");
    GgufSpecials {
        bos: bos_id.and_then(|i| tokens.get(i as usize).cloned()),
        eos: eos_id.and_then(|i| tokens.get(i as usize).cloned()),
        bos_id,
        eos_id,
        add_bos: md_bool(md, "tokenizer.ggml.add_bos_token").unwrap_or(false),
    }
}

/// Rebuild a `tokenizers` BPE tokenizer from GGUF metadata (see the module doc).
pub(crate) fn from_gguf_metadata(md: &HashMap<String, Value>) -> Result<Tokenizer, String> {
    let model = md_str(md, "tokenizer.ggml.model").unwrap_or("");
    if model != "gpt2" {
        return Err(format!(
            "GGUF tokenizer model `{model}` cannot be rebuilt (only byte-level BPE, `gpt2`, \
             can); set generate.tokenizer to the model's tokenizer.json"
        ));
    }
    let tokens = md_strings(md, "tokenizer.ggml.tokens")?;
    let merges = md_strings(md, "tokenizer.ggml.merges")?;
    let types = md_i32s(md, "tokenizer.ggml.token_type").unwrap_or_default();
    let pre = md_str(md, "tokenizer.ggml.pre").unwrap_or("default");

    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    for (id, t) in tokens.iter().enumerate() {
        vocab.insert(t.clone(), json!(id));
    }
    let merges: Vec<serde_json::Value> = merges
        .iter()
        .map(|m| match m.split_once(' ') {
            Some((a, b)) => Ok(json!([a, b])),
            None => Err(format!(
                "GGUF merge `{m}` is not two space-separated pieces"
            )),
        })
        .collect::<Result<_, _>>()?;
    let added: Vec<serde_json::Value> = types
        .iter()
        .enumerate()
        .filter(|(_, t)| **t == TOKEN_TYPE_CONTROL || **t == TOKEN_TYPE_USER_DEFINED)
        .filter_map(|(id, t)| {
            tokens.get(id).map(|content| {
                json!({
                    "id": id, "content": content, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": *t == TOKEN_TYPE_CONTROL,
                })
            })
        })
        .collect();

    let byte_level = |use_regex: bool| {
        json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false,
               "use_regex": use_regex})
    };
    let split = |regex: &str| {
        json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated",
               "invert": false})
    };
    let pre_tokenizer = match pre {
        // SmolLM / StarCoder: digits one by one, then GPT-2's split.
        "smollm" | "starcoder" | "refact" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        "qwen2" => json!({"type": "Sequence", "pretokenizers": [
            split(QWEN2_SPLIT), byte_level(false)]}),
        "llama-bpe" | "llama3" | "glm4" | "chatglm-bpe" | "smaug-bpe" => {
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(false)]})
        }
        "gpt2" | "default" => byte_level(true),
        other => {
            tracing::warn!(
                pre = other,
                "unknown GGUF pre-tokeniser; using GPT-2's split (set generate.tokenizer to \
                 the model's tokenizer.json for exact tokenisation)"
            );
            byte_level(true)
        }
    };
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                    "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    });
    let text = serde_json::to_string(&doc).map_err(|e| e.to_string())?;
    text.parse::<Tokenizer>()
        .map_err(|e| format!("rebuilding the tokenizer from GGUF metadata: {e}"))
}

/// Incremental detokeniser: turns generated ids into text pieces that are always valid,
/// complete UTF-8. Byte-level BPE splits a Chinese character over several tokens; decoding
/// such a prefix yields U+FFFD, so text is held back until the character is complete.
pub(crate) struct TextStream<'a> {
    tokenizer: &'a Tokenizer,
    ids: Vec<u32>,
    /// Start of the window that is re-decoded (the last emitted piece's tokens).
    prev: usize,
    /// End of the tokens already emitted.
    cur: usize,
}

impl<'a> TextStream<'a> {
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        Self {
            tokenizer,
            ids: Vec::new(),
            prev: 0,
            cur: 0,
        }
    }

    fn decode(&self, ids: &[u32]) -> Result<String, String> {
        if ids.is_empty() {
            return Ok(String::new());
        }
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| format!("decoding tokens: {e}"))
    }

    /// Add one token; returns the new text it completes, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>, String> {
        let before = self.decode(&self.ids[self.prev..self.cur])?;
        self.ids.push(id);
        let now = self.decode(&self.ids[self.prev..])?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') && now.starts_with(&before) {
            let piece = now[before.len()..].to_string();
            self.prev = self.cur;
            self.cur = self.ids.len();
            Ok(Some(piece))
        } else {
            Ok(None)
        }
    }

    /// Text still held back at the end of generation (an incomplete character decodes to
    /// U+FFFD here; nothing valid is lost).
    pub fn finish(&mut self) -> Result<String, String> {
        let before = self.decode(&self.ids[self.prev..self.cur])?;
        let now = self.decode(&self.ids[self.prev..])?;
        self.prev = self.ids.len();
        self.cur = self.ids.len();
        Ok(match now.strip_prefix(&before) {
            Some(rest) => rest.to_string(),
            None => String::new(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny byte-level BPE vocabulary as GGUF metadata: all 256 byte symbols, a few
    /// merges, `<|im_start|>`/`<|im_end|>`/`<|endoftext|>` as control tokens.
    pub(crate) fn tiny_gguf_metadata() -> HashMap<String, Value> {
        let mut tokens: Vec<String> = vec![
            "<|endoftext|>".into(),
            "<|im_start|>".into(),
            "<|im_end|>".into(),
        ];
        let mut types = vec![3i32, 3, 3];
        for c in byte_level_alphabet() {
            tokens.push(c.to_string());
            types.push(1);
        }
        let merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o"];
        for m in merges {
            tokens.push(m.replace(' ', ""));
            types.push(1);
        }
        let mut md = HashMap::new();
        md.insert(
            "tokenizer.ggml.model".to_string(),
            Value::String("gpt2".into()),
        );
        md.insert(
            "tokenizer.ggml.pre".to_string(),
            Value::String("smollm".into()),
        );
        md.insert(
            "tokenizer.ggml.tokens".to_string(),
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        );
        md.insert(
            "tokenizer.ggml.token_type".to_string(),
            Value::Array(types.into_iter().map(Value::I32).collect()),
        );
        md.insert(
            "tokenizer.ggml.merges".to_string(),
            Value::Array(
                merges
                    .iter()
                    .map(|m| Value::String(m.to_string()))
                    .collect(),
            ),
        );
        md.insert("tokenizer.ggml.bos_token_id".to_string(), Value::U32(1));
        md.insert("tokenizer.ggml.eos_token_id".to_string(), Value::U32(2));
        md
    }

    /// GPT-2's byte → printable character table, in byte order.
    pub(crate) fn byte_level_alphabet() -> Vec<char> {
        let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
            .chain(0xA1..=0xAC)
            .chain(0xAE..=0xFF)
            .collect();
        let mut cs = bs.clone();
        let mut n = 0;
        for b in 0..256u32 {
            if !bs.contains(&b) {
                bs.push(b);
                cs.push(256 + n);
                n += 1;
            }
        }
        let mut pairs: Vec<(u32, u32)> = bs.into_iter().zip(cs).collect();
        pairs.sort();
        pairs
            .into_iter()
            .map(|(_, c)| char::from_u32(c).unwrap())
            .collect()
    }

    #[test]
    fn gguf_tokenizer_rebuild_applies_merges_and_special_tokens() {
        let md = tiny_gguf_metadata();
        let tok = from_gguf_metadata(&md).unwrap();
        let enc = tok.encode("<|im_start|>hello wo<|im_end|>", false).unwrap();
        let pieces: Vec<&str> = enc.get_tokens().iter().map(|s| s.as_str()).collect();
        assert_eq!(pieces, ["<|im_start|>", "hello", "Ġwo", "<|im_end|>"]);
        assert_eq!(enc.get_ids()[0], 1);
        assert_eq!(*enc.get_ids().last().unwrap(), 2);
        // Special tokens are skipped on decode; bytes round-trip, Chinese included.
        assert_eq!(tok.decode(enc.get_ids(), true).unwrap(), "hello wo");
        let zh = "年假 3 天";
        let ids = tok.encode(zh, false).unwrap().get_ids().to_vec();
        assert_eq!(tok.decode(&ids, true).unwrap(), zh);
        let sp = gguf_specials(&md);
        assert_eq!(sp.eos.as_deref(), Some("<|im_end|>"));
        assert_eq!(sp.bos_id, Some(1));
    }

    #[test]
    fn sentencepiece_gguf_vocabulary_is_a_clear_error() {
        let mut md = tiny_gguf_metadata();
        md.insert(
            "tokenizer.ggml.model".to_string(),
            Value::String("llama".into()),
        );
        let err = from_gguf_metadata(&md).unwrap_err();
        assert!(err.contains("generate.tokenizer"), "{err}");
    }

    #[test]
    fn text_stream_holds_back_incomplete_utf8() {
        let tok = from_gguf_metadata(&tiny_gguf_metadata()).unwrap();
        // Every byte of "年" (3 bytes) is its own token here.
        let text = "a年b";
        let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(ids.len(), 5);
        let mut stream = TextStream::new(&tok);
        let mut pieces = Vec::new();
        for id in ids {
            pieces.push(stream.push(id).unwrap());
        }
        assert_eq!(
            pieces,
            [
                Some("a".to_string()),
                None,
                None,
                Some("年".to_string()),
                Some("b".to_string())
            ]
        );
        assert_eq!(stream.finish().unwrap(), "");
    }
}
