//! The `zhiku` command: a thin shell over the library crates. Each subcommand lives in its
//! own module under `cli/`; this file only parses the command line and dispatches.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use zhiku_core::config::Config;
use zhiku_core::engine::Engine;

use cli::accounts::{GroupCommand, TokenCommand, UserCommand};
use cli::eval::EvalCommand;
use cli::finetune::FinetuneCommand;
use cli::kb::KbCommand;
use cli::model::ModelCommand;

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
    Ingest(cli::ingest::IngestArgs),
    /// Hybrid search in a knowledge base.
    Search(cli::search::SearchArgs),
    /// Answer a question from a knowledge base, with citations. Uses the configured
    /// generator ([generate]); without one, quotes the best-matching sentences.
    Ask(cli::ask::AskArgs),
    /// Multi-turn questions on standard input, one per line; follow-ups may refer to earlier
    /// turns. Ctrl-D ends.
    Chat(cli::ask::ChatArgs),
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
    /// Internal: one supervised extraction worker, started by zhiku itself (`[ingest]
    /// isolation = "process"`); speaks framed messages on stdin/stdout.
    #[command(hide = true)]
    ExtractWorker,
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

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::ExtractWorker = cli.command {
        // Everything it needs comes with each request; no configuration, no data folder.
        zhiku_core::extractor::run_worker()?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(d) = cli.data_dir {
        config.data_dir = d;
    }
    // Commands on the configuration and on model files need no data folder.
    match cli.command {
        Command::Config => {
            print!("{}", config.to_toml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Model { action } => cli::model::run(&config, action),
        Command::Finetune {
            action: action @ FinetuneCommand::Train { .. },
        } => cli::finetune::train(action),
        command => dispatch(Engine::open(config)?, command),
    }
}

fn dispatch(engine: Engine, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Ingest(args) => cli::ingest::run(&engine, args),
        Command::Search(args) => cli::search::run(&engine, args),
        Command::Ask(args) => cli::ask::ask(&engine, args),
        Command::Chat(args) => cli::ask::chat(&engine, args),
        Command::Eval { what } => cli::eval::run(&engine, what),
        Command::Reindex => cli::ingest::reindex(&engine),
        Command::Kb { action } => cli::kb::run(&engine, action),
        Command::Serve { addr } => cli::serve::run(engine, addr),
        Command::User { action } => cli::accounts::user(&engine, action),
        Command::Group { action } => cli::accounts::group(&engine, action),
        Command::Token { action } => cli::accounts::token(&engine, action),
        Command::Finetune { action } => cli::finetune::data(&engine, action),
        Command::Config | Command::Model { .. } | Command::ExtractWorker => {
            unreachable!("run() handles these")
        }
    }
}
