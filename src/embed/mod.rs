//! Embedder seam: text → dense vectors. The default implementation runs a standard Hugging
//! Face BERT / XLM-R folder (config.json, tokenizer.json, model.safetensors) on candle.

pub mod candle;

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
}
