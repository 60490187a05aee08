//! Embedder seam: text → dense vectors. The default implementation runs a standard Hugging
//! Face BERT / XLM-R folder (config.json, tokenizer.json, model.safetensors) on candle; with
//! the `onnx` cargo feature, [`onnx::OnnxEmbedder`] runs an ONNX export of such a model on
//! onnxruntime (through fastembed). Every implementation passes the suite in `contract.rs`.

use std::path::Path;

use serde::{Deserialize, Serialize};

pub mod candle;
#[cfg(test)]
mod contract;
pub mod int8;
#[cfg(feature = "onnx")]
pub mod onnx;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("embedding model folder {path}: {message}")]
    Load { path: String, message: String },
    #[error("embedding failed: {0}")]
    Run(String),
}

pub type Result<T> = std::result::Result<T, EmbedError>;

/// Turns text into L2-normalised vectors. Queries and passages may get different
/// prefixes (e5: "query: " / "passage: ").
pub trait Embedder: Send + Sync {
    /// Short identifier of the model, stored with the index so a model change is detected.
    fn model_id(&self) -> &str;
    /// Vector dimension.
    fn dim(&self) -> usize;
    /// Largest input in model tokens (longer input is truncated).
    fn max_tokens(&self) -> usize;
    /// Tokens the model sees for `text` as a passage (prefix included), used by the chunker.
    fn count_tokens(&self, text: &str) -> usize;
    /// Embed passages in batches.
    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
    /// Embed one query.
    fn embed_query(&self, text: &str) -> Result<Vec<f32>>;
    /// The garble check's second signal: the share of a text's characters the model's
    /// tokenizer covers with known whole pieces ([`known_pieces`]). `None` for embedders
    /// without a tokenizer (the check then runs on its other signals).
    fn known_pieces(&self) -> Option<zhiku_ingest::KnownPieces> {
        None
    }
}

/// Tokens that stand for "not in the vocabulary".
const UNKNOWN_TOKENS: &[&str] = &["<unk>", "[UNK]", "<UNK>"];

/// A byte-fallback piece (`<0xE4>`): the tokenizer did not know the character.
fn is_byte_piece(token: &str) -> bool {
    token.len() == 6
        && token.starts_with("<0x")
        && token.ends_with('>')
        && token.as_bytes()[3..5].iter().all(u8::is_ascii_hexdigit)
}

/// The share (0–1) of `text`'s non-whitespace characters inside tokens the tokenizer knows
/// (not its unknown token, not a byte-fallback piece). A text the tokenizer cannot encode
/// at all scores 1: that is no evidence about the page.
pub fn known_share(tokenizer: &tokenizers::Tokenizer, unknown: &[u32], text: &str) -> f32 {
    let Ok(enc) = tokenizer.encode_char_offsets(text, false) else {
        return 1.0;
    };
    let chars: Vec<char> = text.chars().collect();
    let mut covered = vec![false; chars.len()];
    for ((id, token), &(start, end)) in enc
        .get_ids()
        .iter()
        .zip(enc.get_tokens())
        .zip(enc.get_offsets())
    {
        if unknown.contains(id) || is_byte_piece(token) {
            continue;
        }
        for c in covered.iter_mut().take(end).skip(start) {
            *c = true;
        }
    }
    let (mut n, mut known) = (0usize, 0usize);
    for (c, k) in chars.iter().zip(&covered) {
        if !c.is_whitespace() {
            n += 1;
            known += usize::from(*k);
        }
    }
    if n == 0 { 1.0 } else { known as f32 / n as f32 }
}

/// [`known_share`] over `tokenizer` as the ingest crate's scorer.
pub fn known_pieces(tokenizer: std::sync::Arc<tokenizers::Tokenizer>) -> zhiku_ingest::KnownPieces {
    let unknown: Vec<u32> = UNKNOWN_TOKENS
        .iter()
        .filter_map(|t| tokenizer.token_to_id(t))
        .collect();
    std::sync::Arc::new(move |text: &str| known_share(&tokenizer, &unknown, text))
}

/// How texts are prepared for the model (shared by every backend).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EmbedOptions {
    /// Prefix for queries; `None` picks by model family ("query: " for e5, none otherwise).
    pub query_prefix: Option<String>,
    /// Prefix for passages; `None` picks by model family ("passage: " for e5, none otherwise).
    pub passage_prefix: Option<String>,
    /// Passages per forward pass (at least 1). Default 16.
    pub batch_size: usize,
    /// Largest input in model tokens, special tokens included; `None` (and anything larger)
    /// means the model's own limit (512 for BERT-style models).
    pub max_tokens: Option<usize>,
    /// Arithmetic of the encoder's linear layers (candle backend). Default `auto`.
    pub precision: Precision,
}

/// Arithmetic of the candle encoder's linear layers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// int8 on the best kernel this CPU runs (AVX-512 VNNI, AVX-VNNI or AVX2: faster than
    /// f32, embeddings within 0.99 cosine of f32; every kernel computes the same integers),
    /// f32 on CPUs without AVX2.
    #[default]
    Auto,
    /// f32 weights and arithmetic.
    F32,
    /// int8 weights and activations; without AVX2 this runs a slow portable kernel, so it
    /// is an error there (use `auto`).
    Int8,
}

impl Precision {
    /// Whether the int8 kernel is to be used on this CPU.
    pub fn int8(self) -> Result<bool> {
        match self {
            Self::Auto => Ok(int8::fast_kernel_available()),
            Self::F32 => Ok(false),
            Self::Int8 if int8::fast_kernel_available() => Ok(true),
            Self::Int8 => Err(EmbedError::Run(
                "embed.precision = \"int8\" needs a CPU with AVX2 (x86-64); use \"auto\" or \"f32\""
                    .into(),
            )),
        }
    }

    /// What the linear layers run on this CPU: an int8 kernel's name, or f32.
    pub fn describe(self) -> String {
        match self.int8() {
            Ok(true) => int8::Kernel::best().name().to_string(),
            Ok(false) => "f32".to_string(),
            Err(e) => format!("none ({e})"),
        }
    }
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self {
            query_prefix: None,
            passage_prefix: None,
            batch_size: 16,
            max_tokens: None,
            precision: Precision::Auto,
        }
    }
}

impl EmbedOptions {
    /// The (query, passage) prefixes for a model known by `names` (its folder name, the
    /// `_name_or_path` of its config.json, …): the configured ones, else the family default
    /// ("query: " / "passage: " for e5, none otherwise).
    pub fn prefixes(&self, names: &[&str]) -> (String, String) {
        let (q, p) = if names.iter().any(|n| is_e5(n)) {
            ("query: ", "passage: ")
        } else {
            ("", "")
        };
        (
            self.query_prefix.clone().unwrap_or_else(|| q.into()),
            self.passage_prefix.clone().unwrap_or_else(|| p.into()),
        )
    }
}

/// True when a model name looks like the e5 family ("multilingual-e5-small", "e5-base-v2").
pub(crate) fn is_e5(name: &str) -> bool {
    name.to_ascii_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|part| part.starts_with("e5"))
}

/// The model's name for ids and family detection: the folder's own name (symlinks resolved).
pub(crate) fn folder_name(dir: &Path) -> String {
    dir.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into())
}
