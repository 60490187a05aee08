//! In-process generation speed on the CPU: SmolLM2-135M-Instruct (GGUF Q4_1) with its
//! weights dequantised to f32 at load time (the default on the CPU) and as stored (Q4_1
//! kernels). For prompts of about 30, 300 and 1,000 tokens: time to first token (prefill +
//! first decode step), prefill tokens/s and decode tokens/s (greedy, 32 new tokens).
//!
//! `cargo bench --bench generate` (model: env `ZHIKU_BENCH_GEN_MODEL`, default
//! `models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf`; `ZHIKU_BENCH_GEN_TOKENS`
//! new tokens, default 32).

#[path = "common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use zhiku_llm::generate::{
    CandleGenerator, CandleOptions, ChatMessage, Generator, GgufWeights, SamplingParams,
};

use common::{Table, f};

const PASSAGE: &str = "Employees accrue annual leave at a rate of 1.25 days per month of \
    service. Leave not taken by the end of March of the following year expires unless the \
    manager approved a carry-over in writing. Part-time staff accrue leave pro rata. ";

/// Messages whose prompt is about `target` tokens: a RAG-style context and a question.
fn messages(g: &dyn Generator, target: usize) -> Vec<ChatMessage> {
    let build = |n: usize| {
        vec![
            ChatMessage::system("Answer the question from the context. Be thorough."),
            ChatMessage::user(format!(
                "Context:\n{}\nQuestion: explain in detail how annual leave works.",
                PASSAGE.repeat(n)
            )),
        ]
    };
    let mut n = 0;
    while g.count_prompt_tokens(&build(n + 1)).unwrap() <= target {
        n += 1;
    }
    build(n)
}

fn main() {
    let model = std::env::var_os("ZHIKU_BENCH_GEN_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    if !model.is_file() {
        common::skip(&format!(
            "no generator model at {} (run scripts/fetch-models.sh or set ZHIKU_BENCH_GEN_MODEL)",
            model.display()
        ));
    }
    let new_tokens: usize = std::env::var("ZHIKU_BENCH_GEN_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    println!("## Generation: {}", model.display());
    println!();
    println!("machine: {}", common::machine());
    println!();
    let mut table = Table::new(&[
        "weights",
        "load s",
        "prompt tokens",
        "TTFT ms",
        "prefill tok/s",
        "decode tok/s",
        "new tokens",
    ]);
    for (name, mode) in [
        ("f32 (dequantised, default)", GgufWeights::F32),
        ("Q4_1 as stored", GgufWeights::Quantized),
    ] {
        let mut opts = CandleOptions::new(&model);
        opts.gguf_weights = mode;
        let t0 = Instant::now();
        let g = CandleGenerator::load(&opts).expect("load the generator");
        let load_s = t0.elapsed().as_secs_f64();
        let params = SamplingParams {
            max_tokens: new_tokens,
            temperature: 0.0,
            repetition_penalty: 1.0,
            ..Default::default()
        };
        // Warm-up (allocations, page cache).
        g.generate(&messages(&g, 30), &params, &mut |_| {
            ControlFlow::Continue(())
        })
        .expect("warm-up generation");
        for target in [30, 300, 1000] {
            let msgs = messages(&g, target);
            let s = g
                .generate(&msgs, &params, &mut |_| ControlFlow::Continue(()))
                .expect("generate");
            // TTFT includes one decode step; prefill rate is prompt tokens over TTFT.
            table.row(vec![
                name.to_string(),
                f(load_s, 2),
                s.prompt_tokens.to_string(),
                f(s.ttft_ms, 0),
                f(s.prompt_tokens as f64 / (s.ttft_ms / 1e3), 0),
                f(s.tokens_per_s, 1),
                s.completion_tokens.to_string(),
            ]);
        }
    }
    table.print();
}
