//! LoRA training speed: `zhiku finetune train`'s loop (`finetune::train::train`) on random
//! token sequences (every token counts in the loss), r 16, alpha 32, dropout 0.05, all
//! seven linear modules, AdamW, no evaluation, no checkpoints. Per case: optimizer steps
//! timed after a separate warm-up run, ms per step, tokens/s, peak RSS of the process so
//! far (VmHWM: cases run smallest first, so each figure covers that case).
//!
//! `cargo bench --bench finetune` on the CPU: a tiny random Qwen2 (written here) at 128 and
//! 512 tokens, and SmolLM2-135M (the demo GGUF, dequantised to f32) at 2 × 128, 2 × 256
//! and 1 × 1024 tokens.
//!
//! The GPU comparison with Python peft (`../shared/gpu/peft_bench.py`: bf16 base, batch
//! 4 × 512, 20 timed steps after 3 warm-up): on the GPU machine
//!
//! ```bash
//! python3 ../shared/gpu/make_random_qwen2.py --out /tmp/qwen2-random    # random Qwen2.5-0.5B
//! python3 ../shared/gpu/peft_bench.py /tmp/qwen2-random
//! ZHIKU_BENCH_FT_QWEN2=/tmp/qwen2-random ZHIKU_BENCH_FT_OUT=/tmp/ft cargo bench --features cuda --bench finetune
//! python3 bench/finetune_peft_check.py /tmp/qwen2-random /tmp/ft
//! ```
//!
//! runs the same configuration on that folder (`random` instead of a folder writes random
//! Qwen2.5-0.5B weights here, no Python needed) and, with `ZHIKU_BENCH_FT_OUT`, leaves the
//! trained adapter and zhiku's logits on fixed ids there for the peft logits check.
//! Env: `ZHIKU_BENCH_FT_STEPS` (timed steps, default 3 on the CPU, 20 with a Qwen2 folder),
//! `ZHIKU_BENCH_GEN_MODEL` (the GGUF), `ZHIKU_BENCH_FT_DEVICE` (`cpu`, `cuda`, `auto`).

#[path = "common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use zhiku_core::config::GenerateDevice;
use zhiku_llm::finetune::encode::Example;
use zhiku_llm::finetune::model::{BaseModel, LoraConfig, LoraWeights};
use zhiku_llm::finetune::train::{TrainOptions, train};
use zhiku_llm::finetune::{adapter, model};

use common::{Table, f};

/// Random Qwen2 folder (config.json + f32 safetensors) with these dimensions.
fn write_random_qwen2(dir: &Path, cfg: serde_json::Value) {
    std::fs::create_dir_all(dir).unwrap();
    let n = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let (vocab, hidden, inter) = (n("vocab_size"), n("hidden_size"), n("intermediate_size"));
    let (heads, kv) = (n("num_attention_heads"), n("num_key_value_heads"));
    let kv_dim = kv * hidden / heads;
    let dev = Device::Cpu;
    let rnd = |shape: &[usize]| Tensor::randn(0f32, 0.02, shape, &dev).unwrap();
    let mut w: HashMap<String, Tensor> = HashMap::new();
    w.insert("model.embed_tokens.weight".into(), rnd(&[vocab, hidden]));
    w.insert(
        "model.norm.weight".into(),
        Tensor::ones(hidden, DType::F32, &dev).unwrap(),
    );
    if !cfg["tie_word_embeddings"].as_bool().unwrap_or(false) {
        w.insert("lm_head.weight".into(), rnd(&[vocab, hidden]));
    }
    for l in 0..n("num_hidden_layers") {
        let p = format!("model.layers.{l}");
        for (name, shape) in [
            ("self_attn.q_proj.weight", vec![hidden, hidden]),
            ("self_attn.q_proj.bias", vec![hidden]),
            ("self_attn.k_proj.weight", vec![kv_dim, hidden]),
            ("self_attn.k_proj.bias", vec![kv_dim]),
            ("self_attn.v_proj.weight", vec![kv_dim, hidden]),
            ("self_attn.v_proj.bias", vec![kv_dim]),
            ("self_attn.o_proj.weight", vec![hidden, hidden]),
            ("mlp.gate_proj.weight", vec![inter, hidden]),
            ("mlp.up_proj.weight", vec![inter, hidden]),
            ("mlp.down_proj.weight", vec![hidden, inter]),
        ] {
            w.insert(format!("{p}.{name}"), rnd(&shape));
        }
        for name in ["input_layernorm.weight", "post_attention_layernorm.weight"] {
            w.insert(
                format!("{p}.{name}"),
                Tensor::ones(hidden, DType::F32, &dev).unwrap(),
            );
        }
    }
    candle_core::safetensors::save(&w, dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
}

fn qwen2_config(
    vocab: usize,
    hidden: usize,
    inter: usize,
    layers: usize,
    heads: usize,
    kv: usize,
    tie: bool,
) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": vocab,
        "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv,
        "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": tie, "hidden_act": "silu", "sliding_window": 32768,
        "max_window_layers": layers, "use_sliding_window": false,
    })
}

/// `count` random sequences of `len` tokens (peft_bench's setup: every token is a label).
fn random_examples(count: usize, len: usize, vocab: usize, seed: u64) -> Vec<Example> {
    let mut s = seed;
    (0..count)
        .map(|_| Example {
            ids: (0..len)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((s >> 33) % vocab as u64) as u32
                })
                .collect(),
            targets: vec![true; len],
        })
        .collect()
}

struct Case {
    name: String,
    path: PathBuf,
    batch: usize,
    seq: usize,
    steps: usize,
}

fn main() {
    let device = match std::env::var("ZHIKU_BENCH_FT_DEVICE").as_deref() {
        Ok("cuda") => GenerateDevice::Cuda,
        Ok("cpu") => GenerateDevice::Cpu,
        _ => GenerateDevice::Auto,
    };
    let device = zhiku_llm::generate::candle::select_device(device, 0).expect("device");
    let steps_env: Option<usize> = std::env::var("ZHIKU_BENCH_FT_STEPS")
        .ok()
        .and_then(|v| v.parse().ok());
    let tmp = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    match std::env::var("ZHIKU_BENCH_FT_QWEN2").ok() {
        Some(q) => {
            let path = if q == "random" {
                let dir = tmp.path().join("qwen2.5-0.5b-random");
                write_random_qwen2(&dir, qwen2_config(151936, 896, 4864, 24, 14, 2, true));
                dir
            } else {
                PathBuf::from(q)
            };
            cases.push(Case {
                name: "random Qwen2.5-0.5B".into(),
                path,
                batch: 4,
                seq: 512,
                steps: steps_env.unwrap_or(20),
            });
        }
        None => {
            let tiny = tmp.path().join("tiny-qwen2");
            write_random_qwen2(&tiny, qwen2_config(512, 64, 128, 2, 4, 2, false));
            for seq in [128, 512] {
                cases.push(Case {
                    name: "tiny random Qwen2 (64 hidden, 2 layers)".into(),
                    path: tiny.clone(),
                    batch: 4,
                    seq,
                    steps: steps_env.unwrap_or(10),
                });
            }
            let gguf = std::env::var_os("ZHIKU_BENCH_GEN_MODEL")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
                });
            if gguf.is_file() {
                // 1 × 1024: one RAG example (question + retrieved passages + answer).
                for (batch, seq) in [(2, 128), (2, 256), (1, 1024)] {
                    cases.push(Case {
                        name: "SmolLM2-135M (GGUF → f32)".into(),
                        path: gguf.clone(),
                        batch,
                        seq,
                        steps: steps_env.unwrap_or(3),
                    });
                }
            } else {
                eprintln!("SmolLM2 skipped: {} is missing", gguf.display());
            }
        }
    }

    println!(
        "machine: {}; device {}",
        common::machine(),
        if device.is_cpu() {
            "cpu (f32)"
        } else {
            "cuda (bf16 base, f32 LoRA)"
        }
    );
    let mut table = Table::new(&[
        "model",
        "batch × seq",
        "trainable params",
        "steps",
        "ms/step",
        "tokens/s",
        "final loss",
        "peak RSS MiB",
    ]);
    let out_dir = std::env::var_os("ZHIKU_BENCH_FT_OUT").map(PathBuf::from);
    for case in &cases {
        let base = BaseModel::load(&case.path, &device).expect("base model");
        let vocab = base.config.vocab;
        let opts = TrainOptions {
            epochs: 1,
            lr: 2e-4,
            batch_size: case.batch,
            grad_accum: 1,
            max_len: case.seq,
            lora: LoraConfig {
                r: 16,
                alpha: 32.0,
                dropout: 0.05,
                targets: model::TARGETABLE.iter().map(|s| s.to_string()).collect(),
            },
            warmup: Some(1),
            save_every: 0,
            patience: 0,
            ..TrainOptions::default()
        };
        // Warm-up (allocations, CUDA kernels), then the timed run.
        let warm = random_examples(case.batch, case.seq, vocab, 1);
        train(&base, &warm, &[], &tmp.path().join("warm"), &opts, false).expect("warm-up");
        let _ = std::fs::remove_dir_all(tmp.path().join("warm"));
        let examples = random_examples(case.batch * case.steps, case.seq, vocab, 2);
        let out = out_dir.clone().unwrap_or_else(|| tmp.path().join("run"));
        let _ = std::fs::remove_dir_all(&out);
        let s = train(&base, &examples, &[], &out, &opts, false).expect("training");
        table.row(vec![
            case.name.clone(),
            format!("{} × {}", case.batch, case.seq),
            s.trainable_parameters.to_string(),
            s.steps.to_string(),
            f(s.secs * 1e3 / s.steps as f64, 0),
            f(s.tokens_per_s, 0),
            f(s.final_train_loss.unwrap_or(f64::NAN), 3),
            f(common::peak_rss_mib(), 0),
        ]);
        if let Some(dir) = &out_dir {
            // zhiku's logits with the trained adapter on fixed ids, for
            // bench/finetune_peft_check.py (peft on the same base and adapter).
            let lora = LoraWeights::new(&base, opts.lora.clone(), 0).unwrap();
            adapter::load_into(&lora, dir).unwrap();
            let ids: Vec<u32> = (0..16u32).map(|i| (i * 7919 + 11) % vocab as u32).collect();
            let t = Tensor::new(ids.as_slice(), &device)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let logits = base
                .forward(&t, &[ids.len()], Some(&lora), None)
                .unwrap()
                .get(0)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let doc = serde_json::json!({"ids": ids, "logits": logits});
            std::fs::write(dir.join("zhiku_logits.json"), doc.to_string()).unwrap();
        }
        println!("{}: {s}", case.name);
    }
    table.print();
}
