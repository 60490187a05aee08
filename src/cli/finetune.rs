//! `zhiku finetune data` and `zhiku finetune train`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use zhiku_core::engine::Engine;
use zhiku_llm::{finetune, generate};

use super::terminal;

#[derive(Subcommand)]
pub enum FinetuneCommand {
    /// Train a LoRA adapter on instruction records (JSONL) with candle, no Python. Writes a
    /// PEFT adapter (adapter_config.json, adapter_model.safetensors) that zhiku's generator
    /// (generate.lora) and Python peft load, plus training_log.jsonl, trainer_state.json
    /// and checkpoints. With a held-out file the folder holds the adapter of the best
    /// evaluation.
    Train {
        /// Base model: a .gguf file (llama, qwen2; dequantised to f32) or a Hugging Face
        /// folder (Qwen2, Llama).
        #[arg(long)]
        base: PathBuf,
        /// Training records ({"instruction", "input", "output"} per line).
        #[arg(long, value_name = "FILE.jsonl")]
        data: PathBuf,
        /// Held-out records (default: DATA.heldout.jsonl beside --data, when it exists).
        #[arg(long, value_name = "FILE.jsonl")]
        eval: Option<PathBuf>,
        /// Adapter folder.
        #[arg(long, value_name = "ADAPTER_DIR")]
        out: PathBuf,
        #[arg(long, default_value_t = 3)]
        epochs: usize,
        /// Peak learning rate (cosine schedule after a linear warmup).
        #[arg(long, default_value_t = 2e-4)]
        lr: f64,
        /// Examples per micro-batch (padded to the longest); with --pack, rows of packed
        /// examples.
        #[arg(long, default_value_t = 4)]
        batch_size: usize,
        /// Micro-batches per optimizer step.
        #[arg(long, default_value_t = 1)]
        grad_accum: usize,
        /// Longest example in tokens; longer ones are cut.
        #[arg(long, default_value_t = 1024)]
        max_len: usize,
        /// Pack several short examples into one row of up to --max-len tokens (each
        /// still sees only itself): less padding, fewer steps on short data.
        #[arg(long)]
        pack: bool,
        /// LoRA rank.
        #[arg(long, default_value_t = 16)]
        r: usize,
        /// LoRA alpha (the update is scaled by alpha / r).
        #[arg(long, default_value_t = 32.0)]
        alpha: f64,
        /// Dropout on the LoRA inputs.
        #[arg(long, default_value_t = 0.05)]
        dropout: f32,
        /// Modules to adapt, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
        )]
        target_modules: Vec<String>,
        /// Warmup steps (default: 3% of the optimizer steps, at least 1).
        #[arg(long)]
        warmup: Option<usize>,
        /// Decoupled (AdamW) weight decay.
        #[arg(long, default_value_t = 0.01)]
        weight_decay: f64,
        /// Clip gradients to this global L2 norm (0 = off).
        #[arg(long, default_value_t = 1.0)]
        clip: f64,
        /// Also evaluate every N steps (0 = after each epoch only).
        #[arg(long, default_value_t = 0)]
        eval_every: usize,
        /// Write a checkpoint every N steps (0 = never).
        #[arg(long, default_value_t = 50)]
        save_every: usize,
        /// Stop after N evaluations without improvement (0 = never).
        #[arg(long, default_value_t = 3)]
        patience: usize,
        /// Seed of the LoRA initialisation, data order and dropout.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Stop after this many steps with a checkpoint (continue with --resume).
        #[arg(long)]
        stop_after: Option<usize>,
        /// Continue the run whose checkpoint is in --out.
        #[arg(long)]
        resume: bool,
        /// cpu, cuda or auto (CUDA when built with it and a GPU is present).
        #[arg(long, default_value = "auto")]
        device: String,
    },
    /// Instruction data (JSONL) from a knowledge base in RAG form: questions from --qa
    /// files, or generated from the knowledge base's defining sentences, answered from
    /// zhiku's own retrieval with [n] citations; plus admin records and general examples.
    /// Writes the training split to --out and the held-out split to OUT.heldout.jsonl.
    Data {
        #[arg(long)]
        kb: String,
        #[arg(long, value_name = "FILE.jsonl")]
        out: PathBuf,
        /// SQuAD-layout question/answer files (CMRC 2018).
        #[arg(long, value_name = "FILE.json")]
        qa: Vec<PathBuf>,
        /// Admin-given records ({"instruction", "input", "output"} per line).
        #[arg(long, value_name = "FILE.jsonl")]
        jsonl: Vec<PathBuf>,
        /// General (non-domain) records, against forgetting.
        #[arg(long, value_name = "FILE.jsonl")]
        general: Option<PathBuf>,
        /// Share of general examples in the training split (default 0.2 with --general).
        #[arg(long)]
        general_share: Option<f64>,
        /// Share of the domain examples held out.
        #[arg(long, default_value_t = 0.1)]
        heldout_share: f64,
        /// Longest example (instruction + input + output), in characters.
        #[arg(long, default_value_t = 6000)]
        max_chars: usize,
        /// The model to be trained (.gguf or Hugging Face folder): also measure examples in
        /// its tokens, as `finetune train` encodes them (its tokenizer and template only).
        #[arg(long, value_name = "MODEL")]
        base: Option<PathBuf>,
        /// With --base: longest example in its tokens (`finetune train --max-len`).
        #[arg(long, default_value_t = 1024)]
        max_tokens: usize,
        /// Shortest reply, in characters.
        #[arg(long, default_value_t = 2)]
        min_output_chars: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Use only the first N questions.
        #[arg(long)]
        limit: Option<usize>,
        /// Build from what this user may read. Without it (or --all-documents) only documents
        /// readable by everyone who may read the knowledge base are used: a tuned model
        /// answers everyone, so it must not learn restricted folders' text.
        #[arg(long, value_name = "USER", conflicts_with = "all_documents")]
        as_user: Option<String>,
        /// Use restricted folders and documents too (the model will have read them).
        #[arg(long)]
        all_documents: bool,
        /// Print the statistics as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `zhiku finetune data`: instruction records from a knowledge base.
pub fn data(engine: &Engine, action: FinetuneCommand) -> anyhow::Result<ExitCode> {
    let FinetuneCommand::Data {
        kb,
        out,
        qa,
        jsonl,
        general,
        general_share,
        heldout_share,
        max_chars,
        base,
        max_tokens,
        min_output_chars,
        seed,
        limit,
        as_user,
        all_documents,
        json,
    } = action
    else {
        unreachable!("only `finetune data` comes here")
    };
    let general_share = general_share.unwrap_or(if general.is_some() { 0.2 } else { 0.0 });
    let opts = finetune::data::DataOptions {
        kb,
        qa,
        jsonl,
        general,
        general_share,
        heldout_share,
        max_chars,
        base,
        max_tokens,
        min_output_chars,
        seed,
        limit,
        reader: match (as_user, all_documents) {
            (_, true) => zhiku_core::store::Reader::All,
            (Some(name), false) => engine.meta.reader_of(&engine.meta.require_user(&name)?)?,
            (None, false) => zhiku_core::store::Reader::everyone(),
        },
    };
    let data = finetune::data::build(engine, &opts, &terminal::progress_bar())?;
    let held = finetune::data::write(&data, &out)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&data.stats)?);
    } else {
        println!("{}", data.stats);
        println!(
            "wrote {} ({} records) and {} ({} records)",
            out.display(),
            data.train.len(),
            held.display(),
            data.heldout.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `zhiku finetune train`: needs no data folder.
pub fn train(action: FinetuneCommand) -> anyhow::Result<ExitCode> {
    let FinetuneCommand::Train {
        base,
        data,
        eval,
        out,
        epochs,
        lr,
        batch_size,
        grad_accum,
        max_len,
        pack,
        r,
        alpha,
        dropout,
        target_modules,
        warmup,
        weight_decay,
        clip,
        eval_every,
        save_every,
        patience,
        seed,
        stop_after,
        resume,
        device,
    } = action
    else {
        unreachable!("only `finetune train` comes here")
    };
    let device = match device.as_str() {
        "auto" => zhiku_core::config::GenerateDevice::Auto,
        "cpu" => zhiku_core::config::GenerateDevice::Cpu,
        "cuda" => zhiku_core::config::GenerateDevice::Cuda,
        other => bail!("--device {other}: expected cpu, cuda or auto"),
    };
    let device = generate::candle::select_device(device, 0)?;
    let opts = finetune::train::TrainOptions {
        epochs,
        lr,
        batch_size,
        grad_accum,
        max_len,
        pack,
        lora: finetune::model::LoraConfig {
            r,
            alpha,
            dropout,
            targets: target_modules
                .into_iter()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect(),
        },
        warmup,
        weight_decay,
        clip,
        eval_every,
        save_every,
        patience,
        seed,
        stop_after,
        progress: true,
    };
    let files = finetune::train::TrainFiles {
        base,
        data,
        eval,
        out: out.clone(),
    };
    let summary = finetune::train::train_files(&files, &device, &opts, resume)
        .with_context(|| format!("training into {}", out.display()))?;
    print!("{summary}");
    println!("adapter: {}", out.display());
    Ok(ExitCode::SUCCESS)
}
