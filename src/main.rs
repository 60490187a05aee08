//! The `zhiku` command: a thin shell over the library.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use zhiku::config::{Config, Fusion};
use zhiku::engine::Engine;
use zhiku::generate::Generator;
use zhiku::rag::{self, Outcome, Turn};
use zhiku::{access, eval, finetune, generate, index, retrieve};

#[derive(Parser)]
#[command(
    name = "zhiku",
    version,
    about = "知库: an on-premises knowledge-base assistant"
)]
struct Cli {
    /// Configuration file (default: ./zhiku.toml when present).
    #[arg(long, global = true, env = "ZHIKU_CONFIG")]
    config: Option<PathBuf>,
    /// Data folder holding all state (default ./data).
    #[arg(long, global = true, env = "ZHIKU_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ingest files and folders (recursively) into a knowledge base, or the paragraphs of a
    /// SQuAD-layout QA file with --qa-contexts.
    Ingest {
        /// Files or folders.
        paths: Vec<PathBuf>,
        /// Knowledge base (created when missing).
        #[arg(long)]
        kb: String,
        /// Also remove documents whose files are gone from the given folders.
        #[arg(long)]
        sync: bool,
        /// Ingest every paragraph of this SQuAD-layout file (CMRC 2018) as one document.
        #[arg(long, value_name = "FILE.json")]
        qa_contexts: Vec<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Hybrid search in a knowledge base.
    Search {
        query: String,
        #[arg(long)]
        kb: Vec<String>,
        /// Number of results (default: retrieve.top_k).
        #[arg(long)]
        top: Option<usize>,
        /// Print a JSON array, best first.
        #[arg(long)]
        json: bool,
    },
    /// Answer a question from a knowledge base, with citations. Uses the configured
    /// generator ([generate]); without one, quotes the best-matching sentences.
    Ask {
        question: String,
        #[arg(long)]
        kb: Vec<String>,
        /// Print one JSON object: answer, citations, timings.
        #[arg(long)]
        json: bool,
    },
    /// Multi-turn questions on standard input, one per line; follow-ups may refer to earlier
    /// turns. Ctrl-D ends.
    Chat {
        #[arg(long)]
        kb: Vec<String>,
    },
    /// Evaluate against a QA file.
    Eval {
        #[command(subcommand)]
        what: EvalCommand,
    },
    /// Rebuild the vector and keyword indexes from the metadata database.
    Reindex,
    /// Knowledge bases.
    Kb {
        #[command(subcommand)]
        action: KbCommand,
    },
    /// Print the configuration in force, every key with its value.
    Config,
    /// Serve the web chat, admin pages, REST API and OpenAI-compatible API. On first start
    /// the account `admin` is created, with the password in ZHIKU_ADMIN_PASSWORD or a
    /// generated one printed once.
    Serve {
        /// Address to listen on (default: server.addr, 127.0.0.1:8080).
        #[arg(long)]
        addr: Option<String>,
    },
    /// User accounts.
    User {
        #[command(subcommand)]
        action: UserCommand,
    },
    /// Groups (members of a group may read the knowledge bases granted to it).
    Group {
        #[command(subcommand)]
        action: GroupCommand,
    },
    /// API tokens (sent as `Authorization: Bearer …`; they carry their user's rights).
    Token {
        #[command(subcommand)]
        action: TokenCommand,
    },
    /// Fine-tuning data and training.
    Finetune {
        #[command(subcommand)]
        action: FinetuneCommand,
    },
    /// Model files: merge an adapter, quantise to GGUF, measure perplexity.
    Model {
        #[command(subcommand)]
        action: ModelCommand,
    },
}

#[derive(Subcommand)]
enum FinetuneCommand {
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
        /// Print the statistics as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
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

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user.
    Add {
        name: String,
        #[arg(long, env = "ZHIKU_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value = "member")]
        role: zhiku::store::meta::Role,
        /// Groups to join (created when missing).
        #[arg(long)]
        group: Vec<String>,
        /// The user's WeCom userid: their WeCom questions are answered as this user.
        #[arg(long)]
        wecom: Option<String>,
    },
    /// List users with their role and groups.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password (their sessions end).
    Passwd {
        name: String,
        #[arg(long, env = "ZHIKU_USER_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Add a user to groups (created when missing).
    Join { name: String, groups: Vec<String> },
    /// Link a user to their WeCom userid (their WeCom questions are answered as this user);
    /// without ID, unlink.
    Wecom { name: String, id: Option<String> },
    /// Delete a user with their sessions and tokens.
    Delete { name: String },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Add a group.
    Add { name: String },
    /// List groups with their member counts and knowledge bases.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a group (its members stay).
    Delete { name: String },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token for a user and print it (only this once).
    Create {
        #[arg(long)]
        user: String,
        /// What the token is for.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id.
    Revoke { id: i64 },
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Passage hit@k, answer recall@k, MRR@10 and latency of retrieval.
    Retrieval {
        #[arg(long, value_name = "FILE.json")]
        qa: PathBuf,
        #[arg(long)]
        kb: Vec<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Override the fusion method (rrf or weighted) for this run.
        #[arg(long)]
        fusion: Option<String>,
        /// Override the dense weight for this run.
        #[arg(long)]
        dense_weight: Option<f32>,
    },
    /// Answer quality: CMRC 2018 exact match and F1, citation precision, latency.
    Answers {
        #[arg(long, value_name = "FILE.json")]
        qa: PathBuf,
        #[arg(long)]
        kb: Vec<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Ask only the first N questions.
        #[arg(long)]
        limit: Option<usize>,
        /// Only the questions of this held-out file (`zhiku finetune data` output).
        #[arg(long, value_name = "FILE.jsonl")]
        heldout: Option<PathBuf>,
        /// Compare the configured candle model without and with this LoRA adapter, side by
        /// side.
        #[arg(long, value_name = "DIR")]
        adapter: Option<PathBuf>,
        /// With --adapter: perplexity of both on this general text (.txt) or records
        /// (.jsonl), to show forgetting.
        #[arg(long, value_name = "FILE", requires = "adapter")]
        general: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KbCommand {
    /// List knowledge bases with their document and chunk counts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Create a knowledge base.
    Create { name: String },
    /// Delete a knowledge base and everything in it.
    Delete { name: String },
    /// Let a group read a knowledge base.
    Grant {
        name: String,
        #[arg(long)]
        group: String,
    },
    /// Stop a group reading a knowledge base.
    Revoke {
        name: String,
        #[arg(long)]
        group: String,
    },
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZHIKU_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // qdrant-edge 0.7 warns that two of Qdrant's server start-up checks (feature flags,
    // multi-mmap support) never ran; the embedded engine cannot run them and falls back to
    // the right defaults, so these warnings only alarm users.
    let filter = [
        "qdrant_edge::common::flags=error",
        "qdrant_edge::common::mmap::ops=error",
    ]
    .iter()
    .filter_map(|d| d.parse().ok())
    .fold(filter, |f, d| f.add_directive(d));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{bar:30}] {pos}/{len} {elapsed_precise} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb
}

fn kb_ids(engine: &Engine, names: &[String]) -> anyhow::Result<Vec<i64>> {
    if names.is_empty() {
        bail!("name a knowledge base with --kb (see `zhiku kb list`)");
    }
    names
        .iter()
        .map(|n| engine.meta.require_kb(n).map_err(Into::into))
        .collect()
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(d) = cli.data_dir {
        config.data_dir = d;
    }
    if let Command::Config = cli.command {
        print!("{}", config.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    // Model files need no data folder.
    if let Command::Model { action } = cli.command {
        return model_command(&config, action);
    }
    // Training needs no data folder.
    if let Command::Finetune {
        action: action @ FinetuneCommand::Train { .. },
    } = cli.command
    {
        return finetune_train(action);
    }
    let engine = Engine::open(config)?;
    match cli.command {
        Command::Ingest {
            paths,
            kb,
            sync,
            qa_contexts,
            json,
        } => {
            if paths.is_empty() && qa_contexts.is_empty() {
                bail!("give files or folders to ingest, or --qa-contexts FILE.json");
            }
            let mut reports = Vec::new();
            for qa in &qa_contexts {
                let r = index::ingest_qa_contexts(&engine, &kb, qa, &progress_bar())
                    .with_context(|| format!("ingesting {}", qa.display()))?;
                reports.push(r);
            }
            if !paths.is_empty() {
                let opts = index::IngestOptions { sync };
                let r = index::ingest_paths(&engine, &kb, &paths, &opts, &progress_bar())?;
                reports.push(r);
            }
            let failed: u64 = reports.iter().map(|r| r.counts.failed).sum();
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                for r in &reports {
                    print_report(&kb, r);
                }
            }
            Ok(if failed > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Search {
            query,
            kb,
            top,
            json,
        } => {
            let kbs = kb_ids(&engine, &kb)?;
            let top = top.unwrap_or(engine.config.retrieve.top_k).max(1);
            let (hits, timings) = retrieve::search(&engine, &query, &kbs, top)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&hits)?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut out = std::io::stdout().lock();
            if hits.is_empty() {
                writeln!(out, "no results")?;
            }
            for (i, h) in hits.iter().enumerate() {
                let heading = if h.heading_path.is_empty() {
                    String::new()
                } else {
                    format!(" › {}", h.heading_path.join(" › "))
                };
                writeln!(
                    out,
                    "[{}] {:.3}  {} (p. {}){}\n    {}\n    dense {} · keyword {}\n",
                    i + 1,
                    h.score,
                    h.title,
                    h.page,
                    heading,
                    h.text.replace('\n', " "),
                    h.scores
                        .dense
                        .map(|s| format!("{s:.3} (#{})", h.scores.dense_rank.unwrap_or(0)))
                        .unwrap_or_else(|| "–".into()),
                    h.scores
                        .keyword
                        .map(|s| format!("{s:.2} (#{})", h.scores.keyword_rank.unwrap_or(0)))
                        .unwrap_or_else(|| "–".into()),
                )?;
            }
            writeln!(out, "{:.1} ms", timings.total_ms)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval {
            what:
                EvalCommand::Retrieval {
                    qa,
                    kb,
                    json,
                    fusion,
                    dense_weight,
                },
        } => {
            let kbs = kb_ids(&engine, &kb)?;
            let set =
                eval::QaSet::load(&qa).with_context(|| format!("QA file {}", qa.display()))?;
            let mut rc = engine.config.retrieve.clone();
            match fusion.as_deref() {
                None => {}
                Some("rrf") => rc.fusion = Fusion::Rrf,
                Some("weighted") => rc.fusion = Fusion::Weighted,
                Some(other) => bail!("--fusion must be rrf or weighted, not `{other}`"),
            }
            if let Some(w) = dense_weight {
                if !(0.0..=1.0).contains(&w) {
                    bail!("--dense-weight must be between 0 and 1");
                }
                rc.dense_weight = w;
            }
            let r = eval::eval_retrieval(&engine, &set, &kbs, &rc)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "queries {}  fusion {:?} (dense weight {}, rrf k {})",
                    r.queries, rc.fusion, rc.dense_weight, rc.rrf_k
                );
                println!(
                    "| hit@1 | hit@3 | hit@5 | hit@10 | recall@1 | recall@3 | recall@5 | recall@10 | MRR@10 | p50 ms | p95 ms |"
                );
                println!("|---|---|---|---|---|---|---|---|---|---|---|");
                println!(
                    "| {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
                    r.hit1 * 100.0,
                    r.hit3 * 100.0,
                    r.hit5 * 100.0,
                    r.hit10 * 100.0,
                    r.recall1 * 100.0,
                    r.recall3 * 100.0,
                    r.recall5 * 100.0,
                    r.recall10 * 100.0,
                    r.mrr10 * 100.0,
                    r.latency_ms_p50,
                    r.latency_ms_p95
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ask { question, kb, json } => {
            let kbs = kb_ids(&engine, &kb)?;
            let generator = load_generator(&engine, &kb)?;
            let g = generator.as_deref();
            let streaming = !json && g.is_some();
            if streaming {
                interrupts();
            }
            let mut out = std::io::stdout().lock();
            let answer = rag::ask(&engine, g, &question, &[], &kbs, &mut |piece| {
                stream_to(&mut out, streaming, piece)
            })?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&answer)?)?;
            } else {
                print_answer(&mut out, &answer, streaming)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Chat { kb } => {
            let kbs = kb_ids(&engine, &kb)?;
            let generator = load_generator(&engine, &kb)?;
            let g = generator.as_deref();
            let interactive = std::io::stdin().is_terminal();
            let mut history: Vec<Turn> = Vec::new();
            let mut line = String::new();
            loop {
                if interactive {
                    eprint!("> ");
                }
                line.clear();
                if std::io::stdin().read_line(&mut line)? == 0 {
                    break;
                }
                let question = line.trim();
                if question.is_empty() {
                    continue;
                }
                let streaming = g.is_some();
                if streaming {
                    interrupts().store(false, std::sync::atomic::Ordering::SeqCst);
                }
                let mut out = std::io::stdout().lock();
                let answer = rag::ask(&engine, g, question, &history, &kbs, &mut |piece| {
                    stream_to(&mut out, streaming, piece)
                });
                let answer = match answer {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("error: {e}");
                        continue;
                    }
                };
                if answer.standalone_question != question {
                    eprintln!("(searched for: {})", answer.standalone_question);
                }
                print_answer(&mut out, &answer, streaming)?;
                writeln!(out)?;
                history.push(Turn {
                    question: answer.standalone_question.clone(),
                    answer: answer.answer.clone(),
                });
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval {
            what:
                EvalCommand::Answers {
                    qa,
                    kb,
                    json,
                    limit,
                    heldout,
                    adapter,
                    general,
                },
        } => {
            let kbs = kb_ids(&engine, &kb)?;
            let mut set =
                eval::QaSet::load(&qa).with_context(|| format!("QA file {}", qa.display()))?;
            if let Some(h) = &heldout {
                // A held-out record's input ends with its question (the answer prompt).
                let records = finetune::read_jsonl(h)?;
                set.questions.retain(|q| {
                    let q = q.question.trim();
                    records.iter().any(|r| r.input.trim_end().ends_with(q))
                });
                if set.questions.is_empty() {
                    bail!(
                        "no question of {} is in {} (was it made from this QA file?)",
                        qa.display(),
                        h.display()
                    );
                }
            }
            if let Some(adapter) = adapter {
                return compare_adapter(&engine, &set, &kbs, limit, &adapter, general, json);
            }
            let generator = load_generator(&engine, &kb)?;
            let r = eval::eval_answers(&engine, generator.as_deref(), &set, &kbs, limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "questions {}  mode {}{}",
                    r.questions,
                    r.mode,
                    r.model
                        .as_deref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                );
                println!(
                    "| EM | F1 | contains gold | not found | citation precision | citations/answer | p50 ms | p95 ms | TTFT p50 ms | tokens/s |"
                );
                println!("|---|---|---|---|---|---|---|---|---|---|");
                println!(
                    "| {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {} | {} |",
                    r.exact_match * 100.0,
                    r.f1 * 100.0,
                    r.answer_contains_gold * 100.0,
                    r.not_found * 100.0,
                    r.citation_precision * 100.0,
                    r.citations_per_answer,
                    r.latency_ms_p50,
                    r.latency_ms_p95,
                    r.ttft_ms_p50
                        .map(|v| format!("{v:.0}"))
                        .unwrap_or_else(|| "–".into()),
                    r.tokens_per_s
                        .map(|v| format!("{v:.1}"))
                        .unwrap_or_else(|| "–".into()),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reindex => {
            let n = index::reindex(&engine, &progress_bar())?;
            println!("reindexed {n} chunks");
            Ok(ExitCode::SUCCESS)
        }
        Command::Kb { action } => {
            match action {
                KbCommand::List { json } => {
                    let kbs = engine.meta.list_kbs()?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&kbs)?);
                    } else if kbs.is_empty() {
                        println!("no knowledge bases yet (zhiku ingest PATH --kb NAME)");
                    } else {
                        for k in kbs {
                            println!("{}\t{} documents\t{} chunks", k.name, k.documents, k.chunks);
                        }
                    }
                }
                KbCommand::Create { name } => {
                    engine.meta.create_kb(&name)?;
                    println!("created knowledge base {name}");
                }
                KbCommand::Delete { name } => {
                    let n = index::delete_kb(&engine, &name)?;
                    println!("deleted knowledge base {name} ({n} documents)");
                }
                KbCommand::Grant { name, group } => {
                    let m = &engine.meta;
                    m.grant(m.require_kb(&name)?, m.require_group(&group)?)?;
                    m.audit("cli", "kb.grant", &name, &format!("group {group}"), None)?;
                    println!("group {group} may read knowledge base {name}");
                }
                KbCommand::Revoke { name, group } => {
                    let m = &engine.meta;
                    m.revoke(m.require_kb(&name)?, m.require_group(&group)?)?;
                    m.audit("cli", "kb.revoke", &name, &format!("group {group}"), None)?;
                    println!("group {group} may no longer read knowledge base {name}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { addr } => serve(engine, addr),
        Command::User { action } => {
            let m = &engine.meta;
            match action {
                UserCommand::Add {
                    name,
                    password,
                    role,
                    group,
                    wecom,
                } => {
                    if let Some(w) = &wecom {
                        m.check_wecom_userid(w)?;
                    }
                    let id =
                        m.create_user(&name, Some(&access::hash_password(&password)?), role)?;
                    for g in &group {
                        m.add_to_group(id, m.ensure_group(g)?)?;
                    }
                    if let Some(w) = &wecom {
                        link_wecom(m, id, &name, Some(w))?;
                    }
                    m.audit(
                        "cli",
                        "user.create",
                        &name,
                        &format!("role {}", role.as_str()),
                        None,
                    )?;
                    println!("added {} {name}", role.as_str());
                }
                UserCommand::List { json } => {
                    let users = m.list_users()?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&users)?);
                    }
                    for u in users.iter().filter(|_| !json) {
                        println!("{}\t{}\t{}", u.name, u.role.as_str(), u.groups.join(","));
                    }
                }
                UserCommand::Passwd { name, password } => {
                    m.set_password(
                        m.require_user(&name)?.id,
                        &access::hash_password(&password)?,
                    )?;
                    m.audit("cli", "user.update", &name, "password", None)?;
                    println!("password of {name} changed");
                }
                UserCommand::Join { name, groups } => {
                    let id = m.require_user(&name)?.id;
                    for g in &groups {
                        m.add_to_group(id, m.ensure_group(g)?)?;
                    }
                    println!("{name} is in {}", m.require_user(&name)?.groups.join(", "));
                }
                UserCommand::Wecom { name, id } => {
                    let user = m.require_user(&name)?.id;
                    link_wecom(m, user, &name, id.as_deref())?;
                    match id {
                        Some(id) => println!("{name} answers as WeCom user {id}"),
                        None => println!("{name} is no longer linked to a WeCom user"),
                    }
                }
                UserCommand::Delete { name } => {
                    let u = m.require_user(&name)?;
                    if u.is_admin() && m.admin_count()? <= 1 {
                        bail!("{name} is the last admin; make another admin first");
                    }
                    m.delete_user(u.id)?;
                    m.audit("cli", "user.delete", &name, "", None)?;
                    println!("deleted user {name}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Group { action } => {
            let m = &engine.meta;
            match action {
                GroupCommand::Add { name } => {
                    m.create_group(&name)?;
                    m.audit("cli", "group.create", &name, "", None)?;
                    println!("added group {name}");
                }
                GroupCommand::List { json } => {
                    let groups = m.list_groups()?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&groups)?);
                    }
                    for g in groups.iter().filter(|_| !json) {
                        println!(
                            "{}\t{} members\t{}",
                            g.name,
                            g.members,
                            g.knowledge_bases.join(",")
                        );
                    }
                }
                GroupCommand::Delete { name } => {
                    m.delete_group(m.require_group(&name)?)?;
                    m.audit("cli", "group.delete", &name, "", None)?;
                    println!("deleted group {name}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Token { action } => {
            let m = &engine.meta;
            match action {
                TokenCommand::Create { user, name } => {
                    let (id, token) = access::create_token(m, m.require_user(&user)?.id, &name)?;
                    m.audit(
                        "cli",
                        "token.create",
                        &id.to_string(),
                        &format!("for {user}: {name}"),
                        None,
                    )?;
                    eprintln!("token {id} for {user} (shown only now; store it safely):");
                    println!("{token}");
                }
                TokenCommand::List => {
                    for t in m.list_tokens(None)? {
                        println!(
                            "{}\t{}\t{}\t{}…\t{}",
                            t.id,
                            t.user,
                            t.name,
                            t.prefix,
                            if t.revoked { "revoked" } else { "active" }
                        );
                    }
                }
                TokenCommand::Revoke { id } => {
                    if !m.revoke_token(id)? {
                        bail!("no active token {id} (see `zhiku token list`)");
                    }
                    m.audit("cli", "token.revoke", &id.to_string(), "", None)?;
                    println!("revoked token {id}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config
        | Command::Model { .. }
        | Command::Finetune {
            action: FinetuneCommand::Train { .. },
        } => unreachable!("handled above"),
        Command::Finetune {
            action:
                FinetuneCommand::Data {
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
                    json,
                },
        } => {
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
            };
            let data = finetune::data::build(&engine, &opts, &progress_bar())?;
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
    }
}

/// `zhiku serve`: first-run admin, then the server until Ctrl-C or SIGTERM (requests in
/// flight finish first).
fn serve(engine: Engine, addr: Option<String>) -> anyhow::Result<ExitCode> {
    let addr = addr.unwrap_or_else(|| engine.config.server.addr.clone());
    let env_password = std::env::var("ZHIKU_ADMIN_PASSWORD").ok();
    match access::ensure_first_admin(&engine.meta, env_password.as_deref())? {
        access::FirstAdmin::Existing => {}
        access::FirstAdmin::FromEnv => {
            eprintln!("created user admin with the password from ZHIKU_ADMIN_PASSWORD")
        }
        access::FirstAdmin::Generated(p) => eprintln!(
            "created user admin with password {p}\n(shown only now; change it with `zhiku user passwd admin`)"
        ),
    }
    index::recover(&engine)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let state = zhiku::server::AppState::new(engine);
        // Load the embedding model now rather than on the first question (/readyz says
        // when it is done).
        let warm = state.engine.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = warm.embedder() {
                tracing::error!(error = %e, "the embedding model cannot be loaded");
            }
        });
        println!("zhiku serving on http://{}", listener.local_addr()?);
        zhiku::server::serve(state, listener, shutdown_signal()).await?;
        eprintln!("zhiku stopped");
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// The configured generator, or none (extractive answers). The first knowledge base picks a
/// per-knowledge-base adapter where the backend has one.
/// Ctrl-C while an answer is being generated stops that answer (the part written so far and
/// its citations are kept); a second Ctrl-C before the next question quits. Installed only
/// when a generator runs: extractive answers are instant.
fn interrupts() -> &'static std::sync::atomic::AtomicBool {
    use std::sync::atomic::{AtomicBool, Ordering};
    static FLAG: std::sync::OnceLock<&'static AtomicBool> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        let installed = std::thread::Builder::new()
            .name("ctrl-c".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async {
                    while tokio::signal::ctrl_c().await.is_ok() {
                        if flag.swap(true, Ordering::SeqCst) {
                            std::process::exit(130);
                        }
                        eprintln!("\n(stopped; Ctrl-C again to quit)");
                    }
                });
            });
        if let Err(e) = installed {
            tracing::warn!("Ctrl-C handler not installed: {e}");
        }
        flag
    })
}

/// Streams answer pieces to `out`; `Break` once Ctrl-C was pressed.
fn stream_to(out: &mut impl Write, streaming: bool, piece: &str) -> std::ops::ControlFlow<()> {
    if streaming {
        if interrupts().load(std::sync::atomic::Ordering::SeqCst) {
            return std::ops::ControlFlow::Break(());
        }
        let _ = out.write_all(piece.as_bytes());
        let _ = out.flush();
    }
    std::ops::ControlFlow::Continue(())
}

/// `zhiku eval answers --adapter`: the configured candle model without and with an
/// adapter on the same questions, and their perplexity on general text.
fn compare_adapter(
    engine: &Engine,
    set: &eval::QaSet,
    kbs: &[i64],
    limit: Option<usize>,
    adapter: &std::path::Path,
    general: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config = &engine.config;
    let model = config.generate.model.clone().context(
        "--adapter compares the candle model of generate.model without and with the adapter; \
         set generate.model",
    )?;
    let mut base_cfg = config.generate.clone();
    base_cfg.backend = zhiku::config::GenerateBackend::Candle;
    base_cfg.lora = None;
    base_cfg.lora_per_kb.clear();
    let mut tuned_cfg = base_cfg.clone();
    tuned_cfg.lora = Some(adapter.to_path_buf());
    let mut rows = Vec::new();
    for (name, cfg, lora) in [
        ("base", &base_cfg, None),
        ("adapter", &tuned_cfg, Some(adapter.to_path_buf())),
    ] {
        let g = generate::from_config(cfg, None)
            .with_context(|| format!("loading the {name} model"))?
            .context("no generator")?;
        let report = eval::eval_answers(engine, Some(g.as_ref()), set, kbs, limit)?;
        drop(g);
        let ppl = match &general {
            Some(path) => Some(finetune::perplexity::of_file(
                &candle_model(config, &model, lora)?,
                path,
                finetune::perplexity::RECORD_MAX_LEN,
            )?),
            None => None,
        };
        rows.push((name, report, ppl));
    }
    if json {
        let doc: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|(name, r, p)| {
                (
                    name.to_string(),
                    serde_json::json!({"answers": r, "general_perplexity": p}),
                )
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "questions {}  model {}  adapter {}",
        rows[0].1.questions,
        model.display(),
        adapter.display()
    );
    println!(
        "| model | EM | F1 | contains gold | not found | citation precision | p50 ms | general perplexity |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, r, p) in &rows {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {} |",
            r.exact_match * 100.0,
            r.f1 * 100.0,
            r.answer_contains_gold * 100.0,
            r.not_found * 100.0,
            r.citation_precision * 100.0,
            r.latency_ms_p50,
            p.map(|p| format!("{:.3}", p.perplexity))
                .unwrap_or_else(|| "–".into())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A candle generator for a model file on the configured device.
fn candle_model(
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

fn model_command(config: &Config, action: ModelCommand) -> anyhow::Result<ExitCode> {
    use zhiku::finetune::{merge, perplexity, quantize};
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

fn load_generator(
    engine: &Engine,
    kb: &[String],
) -> anyhow::Result<Option<std::sync::Arc<dyn Generator>>> {
    generate::from_config(&engine.config.generate, kb.first().map(String::as_str))
        .context("starting the generator ([generate] in the configuration)")
}

/// `**bold**` as terminal bold when stdout is a terminal, as is otherwise.
fn terminal_bold(text: &str) -> String {
    if !std::io::stdout().is_terminal() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    for (i, part) in text.split("**").enumerate() {
        if i > 0 {
            out.push_str(if i % 2 == 1 { "\x1b[1m" } else { "\x1b[0m" });
        }
        out.push_str(part);
    }
    if text.matches("**").count() % 2 == 1 {
        out.push_str("\x1b[0m");
    }
    out
}

/// The answer (unless it was streamed already), then its sources.
fn print_answer(out: &mut impl Write, a: &rag::Answer, streamed: bool) -> anyhow::Result<()> {
    if streamed {
        writeln!(out)?;
    } else {
        if let Some(n) = &a.notice {
            writeln!(out, "{n}")?;
        }
        writeln!(out, "{}", terminal_bold(&a.answer))?;
    }
    if a.outcome == Outcome::NotFound || a.citations.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "{}",
        if a.lang == rag::Lang::Zh {
            "来源："
        } else {
            "Sources:"
        }
    )?;
    for c in &a.citations {
        let snippet: String = c.text.replace('\n', " ").chars().take(120).collect();
        let more = if c.text.chars().count() > 120 {
            "…"
        } else {
            ""
        };
        writeln!(
            out,
            "[{}] {} (p. {}) — {}\n    {snippet}{more}",
            c.index, c.title, c.page, c.document
        )?;
    }
    if let (Some(t), Some(g)) = (a.ttft_ms, &a.generation) {
        writeln!(
            out,
            "\n{:.0} ms to first token, {:.1} tokens/s, {} tokens",
            t, g.tokens_per_s, g.completion_tokens
        )?;
    }
    Ok(())
}

fn print_report(kb: &str, r: &index::IngestReport) {
    let c = &r.counts;
    println!(
        "knowledge base {kb}: {} added, {} changed, {} unchanged, {} removed, {} duplicates, {} failed; {} chunks",
        c.added, c.changed, c.unchanged, c.removed, r.duplicates, c.failed, c.chunks
    );
    for (src, why) in &r.failures {
        println!("  failed: {src}: {why}");
    }
    for (src, w) in &r.warnings {
        println!("  warning: {src}: {w}");
    }
    if !r.unsupported.is_empty() {
        println!(
            "  skipped {} files of unsupported formats (supported: {})",
            r.unsupported.len(),
            index::SUPPORTED.join(", ")
        );
    }
}

fn finetune_train(action: FinetuneCommand) -> anyhow::Result<ExitCode> {
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
        "auto" => zhiku::config::GenerateDevice::Auto,
        "cpu" => zhiku::config::GenerateDevice::Cpu,
        "cuda" => zhiku::config::GenerateDevice::Cuda,
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

/// Link `user` (`name`) to a WeCom userid, or unlink it (the rules are
/// [`zhiku::store::meta::MetaStore::link_wecom_user`]'s, shared with the admin API).
fn link_wecom(
    m: &zhiku::store::meta::MetaStore,
    user: i64,
    name: &str,
    wecom: Option<&str>,
) -> anyhow::Result<()> {
    m.link_wecom_user(user, wecom)?;
    m.audit(
        "cli",
        "user.update",
        name,
        &format!("wecom {}", wecom.unwrap_or("(none)")),
        None,
    )?;
    Ok(())
}
