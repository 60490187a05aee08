//! The `zhiku` command: a thin shell over the library.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use zhiku::config::{Config, Fusion};
use zhiku::engine::Engine;
use zhiku::{eval, index, retrieve};

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
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config => unreachable!("handled above"),
    }
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
