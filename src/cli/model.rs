//! `zhiku model`: merge an adapter, quantise to GGUF, measure perplexity. Needs no data
//! folder.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use zhiku_core::config::Config;
use zhiku_llm::generate;

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Merge a PEFT LoRA adapter into its base: a Hugging Face folder gives a folder, a
    /// GGUF file gives a GGUF file.
    Merge {
        #[arg(long)]
        base: PathBuf,
        #[arg(long)]
        adapter: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a GGUF (llama, qwen2, qwen3) from a Hugging Face folder, tokenizer and chat
    /// template included, or re-quantise a GGUF.
    Quantize {
        #[arg(long = "in", value_name = "DIR|FILE.gguf")]
        input: PathBuf,
        #[arg(long, value_name = "FILE.gguf")]
        out: PathBuf,
        /// q8_0, q4_k or q4_0 (f16, f32: unquantised).
        #[arg(long = "type", default_value = "q8_0")]
        ty: String,
        /// Report the perplexity before and after on these records.
        #[arg(long, value_name = "FILE.jsonl")]
        heldout: Option<PathBuf>,
    },
    /// Perplexity of a model on instruction records (.jsonl: the replies) or plain text.
    Perplexity {
        /// A .gguf file or a Hugging Face folder.
        #[arg(long)]
        model: PathBuf,
        /// A PEFT LoRA adapter merged at load.
        #[arg(long)]
        adapter: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        data: PathBuf,
        /// Records are cut at this many tokens, as `finetune train --max-len` cuts them:
        /// give the training's value to reproduce its eval perplexity.
        #[arg(long, default_value_t = 1024)]
        max_len: usize,
    },
}

/// A candle generator for a model file on the configured device.
pub fn candle_model(
    config: &Config,
    model: &std::path::Path,
    adapter: Option<PathBuf>,
) -> anyhow::Result<generate::CandleGenerator> {
    let mut opts = generate::CandleOptions::new(model);
    opts.device = config.generate.device;
    opts.cuda_device = config.generate.cuda_device;
    opts.lora = adapter;
    generate::CandleGenerator::load(&opts).with_context(|| format!("loading {}", model.display()))
}

pub fn run(config: &Config, action: ModelCommand) -> anyhow::Result<ExitCode> {
    use zhiku_llm::finetune::{merge, perplexity, quantize};
    match action {
        ModelCommand::Merge { base, adapter, out } => {
            let r = merge::merge(&base, &adapter, &out)?;
            println!(
                "merged {} weights; wrote {} tensors ({} MB) to {}",
                r.merged,
                r.tensors,
                r.bytes >> 20,
                r.out.display()
            );
            if !r.copied.is_empty() {
                println!("copied from the base: {}", r.copied.join(", "));
            }
        }
        ModelCommand::Quantize {
            input,
            out,
            ty,
            heldout,
        } => {
            let ty: quantize::QuantType = ty.parse()?;
            // Measure the source first: a missing held-out file fails before any writing.
            let before = match &heldout {
                Some(h) => Some(perplexity::of_file(
                    &candle_model(config, &input, None)?,
                    h,
                    perplexity::RECORD_MAX_LEN,
                )?),
                None => None,
            };
            let r = quantize::quantize(&input, &out, ty)?;
            println!(
                "{} ({}): {:.1} MB in → {:.1} MB GGUF ({:.2}× the input)",
                out.display(),
                r.arch,
                r.in_bytes as f64 / 1e6,
                r.out_bytes as f64 / 1e6,
                r.out_bytes as f64 / r.in_bytes.max(1) as f64
            );
            println!("tensors: {}", r.type_counts());
            for f in r.fallback_summary() {
                println!("fallback: {f}");
            }
            if let (Some(h), Some(before)) = (&heldout, before) {
                let after = perplexity::of_file(
                    &candle_model(config, &out, None)?,
                    h,
                    perplexity::RECORD_MAX_LEN,
                )?;
                println!(
                    "perplexity on {} ({} tokens): {:.4} → {:.4} ({:+.2} %)",
                    h.display(),
                    after.tokens,
                    before.perplexity,
                    after.perplexity,
                    (after.perplexity / before.perplexity - 1.0) * 100.0
                );
            }
        }
        ModelCommand::Perplexity {
            model,
            adapter,
            data,
            max_len,
        } => {
            let g = candle_model(config, &model, adapter)?;
            let p = perplexity::of_file(&g, &data, max_len)?;
            let records = if data.extension().is_some_and(|e| e == "jsonl") {
                format!(
                    " records, {} cut at --max-len {max_len}, {} skipped (no reply token \
                     within it)",
                    p.cut, p.skipped
                )
            } else {
                " windows".into()
            };
            println!(
                "perplexity {:.4} (mean NLL {:.4} nats over {} tokens, {}{records})",
                p.perplexity, p.mean_nll, p.tokens, p.items
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
