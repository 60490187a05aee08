//! zhiku-llm: the language models.
//!
//! - [`generate`]: the generators behind `zhiku_core::generate::Generator`: a model running
//!   in this process on candle (Qwen2/2.5/3, ChatGLM3/GLM-4, llama-architecture GGUF; CPU
//!   f32 or CUDA bf16; LoRA adapters merged at load time) and a client for an
//!   OpenAI-compatible server inside the network (vLLM, llama.cpp server, Ollama), chosen
//!   by `[generate]`.
//! - [`finetune`]: instruction data from a knowledge base, LoRA training on candle, merging
//!   and GGUF quantisation.
//!
//! Invariants: a model's weights and tokenizer load from a local folder or file, never from
//! a hub; the only network call is to the server `generate.url` names. Every generator
//! passes `zhiku_core::generate::contract`.
//!
//! Built on `zhiku-core` (the seam, the configuration, and for `finetune data` the
//! knowledge bases); the server and the binary are built on it.

pub mod finetune;
pub mod generate;
