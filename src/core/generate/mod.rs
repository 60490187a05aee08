//! Generator seam: chat messages in, streamed text out.
//!
//! This module is the seam: the [`Generator`] trait, its messages and parameters, and the
//! [`contract`] every implementation passes. The implementations live in the `zhiku-llm`
//! crate: a model running inside this process on candle (Qwen2/2.5/3, ChatGLM3/GLM-4,
//! llama-architecture GGUF; CPU f32 or CUDA bf16; LoRA merged at load time) and an
//! OpenAI-compatible chat-completions server inside the network (vLLM, llama.cpp server,
//! Ollama). Answering ([`crate::rag`]) and evaluation only ever see the trait.
//!
//! Generation is synchronous and streams through a callback: a model on candle is CPU/GPU
//! bound and runs on a blocking thread anyway; the server wraps a call in `spawn_blocking`
//! and forwards the pieces over a channel.

pub mod contract;

use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The model, tokenizer, template or adapter could not be loaded.
    #[error("generator model {path}: {message}")]
    Load { path: String, message: String },
    /// The prompt does not fit the model's context window.
    #[error(
        "prompt of {prompt_tokens} tokens plus {max_new_tokens} new tokens exceeds the \
         model's context of {context_length} tokens; shorten the question or lower \
         rag.sources (passages per prompt) / generate.sampling.max_tokens"
    )]
    ContextOverflow {
        prompt_tokens: usize,
        max_new_tokens: usize,
        context_length: usize,
    },
    /// The chat template failed to render these messages.
    #[error("chat template: {0}")]
    Template(String),
    /// The remote server failed or answered something unusable (after retries).
    #[error("LLM server {url}: {message}")]
    Server { url: String, message: String },
    /// Anything else that went wrong while generating.
    #[error("generation failed: {0}")]
    Run(String),
}

pub type Result<T> = std::result::Result<T, GenerateError>;

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// How the next token is chosen and when generation stops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingParams {
    /// Most new tokens. Default 512.
    pub max_tokens: usize,
    /// 0 = greedy. Default 0.2 (grounded answers want little randomness).
    pub temperature: f32,
    /// Nucleus sampling mass, 0–1 (1 = off). Default 0.9.
    pub top_p: f32,
    /// Keep only the k most likely tokens (0 = off). Default 0.
    pub top_k: usize,
    /// Penalty > 1 discourages tokens seen in the last `repeat_last_n` tokens. Default 1.1.
    pub repetition_penalty: f32,
    /// Window of the repetition penalty, tokens. Default 64.
    pub repeat_last_n: usize,
    /// Random seed: the same seed, prompt and model give the same text. Default 42.
    pub seed: u64,
    /// Generation stops before any of these strings; they are not part of the output.
    pub stop: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            max_tokens: 512,
            temperature: 0.2,
            top_p: 0.9,
            top_k: 0,
            repetition_penalty: 1.1,
            repeat_last_n: 64,
            seed: 42,
            stop: Vec::new(),
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The callback asked to stop (client went away, Ctrl-C).
    Cancelled,
}

/// Timings of one generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationStats {
    /// Tokens of the prompt: counted by the model's tokenizer, or, from a server that did
    /// not report them, [`Generator::count_prompt_tokens`]'s estimate.
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// From the call to the first streamed piece of text, milliseconds.
    pub ttft_ms: f64,
    /// Whole call, milliseconds.
    pub total_ms: f64,
    /// Decode speed after the first token (completion tokens − 1 over the time after it).
    pub tokens_per_s: f64,
    pub finish: FinishReason,
}

/// Streams a reply to chat messages.
pub trait Generator: Send + Sync {
    /// Short identifier of the model (file or folder name, or the remote model name).
    fn model_id(&self) -> &str;
    /// Context window in tokens (prompt + completion).
    fn context_length(&self) -> usize;
    /// Tokens of the prompt these messages render to with the model's chat template: exact
    /// for in-process models, a conservative estimate for remote ones.
    fn count_prompt_tokens(&self, messages: &[ChatMessage]) -> Result<usize>;
    /// Generate a reply, calling `on_text` with each new piece of text (valid UTF-8, stop
    /// strings withheld) as soon as it is known. `on_text` returning `Break` cancels.
    fn generate(
        &self,
        messages: &[ChatMessage],
        params: &SamplingParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<GenerationStats>;
}
