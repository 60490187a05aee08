//! Fine-tuning in the box: instruction data from a knowledge base → LoRA training on
//! candle → merge → quantise. No Python.
//!
//! The instruction data is JSONL, one [`Record`] per line (`{"instruction", "input",
//! "output"}`, the Alpaca layout). `zhiku finetune data --out train.jsonl` writes the
//! training split there and the held-out split beside it ([`heldout_path`]);
//! `zhiku finetune train --data train.jsonl` evaluates on that held-out file.
//!
//! After training: `zhiku model merge` ([`merge`]) folds an adapter into its base,
//! `zhiku model quantize` ([`quantize`]) writes a GGUF the generator loads, and
//! `zhiku model perplexity` ([`perplexity`]) measures what either changed.

pub mod adapter;
pub mod data;
pub mod encode;
pub mod merge;
pub mod model;
pub mod ops;
pub mod optim;
pub mod perplexity;
pub mod quantize;
pub mod record;
pub mod step;
pub mod train;

pub use record::{Record, heldout_path, read_jsonl};

/// What can go wrong while preparing data, training, merging or quantising.
#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// Lines of a JSONL file that are not records; every bad line is listed (up to 20),
    /// so an admin can fix the file in one go.
    #[error("{path}: {count} malformed line(s):\n{}", .lines.iter().map(|(n, e)| format!("  line {n}: {e}")).collect::<Vec<_>>().join("\n"))]
    Malformed {
        path: std::path::PathBuf,
        count: usize,
        lines: Vec<(usize, String)>,
    },
    #[error("{0}")]
    Invalid(String),
    /// The base model cannot be used for training.
    #[error("base model {0}")]
    Model(String),
    /// A tensor computation failed (shapes, device memory).
    #[error("{0}")]
    Compute(String),
    /// The tokenizer or chat template of the base model.
    #[error(transparent)]
    Generate(#[from] crate::generate::GenerateError),
    /// The loss or the gradients stopped being finite numbers.
    #[error(
        "training diverged at step {step}: the {what} is {value}; lower --lr, keep --clip on          or raise --warmup ({checkpoint})"
    )]
    Diverged {
        step: usize,
        what: String,
        value: f64,
        checkpoint: String,
    },
}

pub type Result<T> = std::result::Result<T, FinetuneError>;
