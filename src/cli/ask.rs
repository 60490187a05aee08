//! `zhiku ask` and `zhiku chat`: answers on the terminal, streamed when a generator runs.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use zhiku_core::engine::Engine;
use zhiku_core::rag::{self, Outcome, Turn};
use zhiku_llm::generate::{self, Generator};

use super::terminal::{interrupts, stream_to, terminal_bold};

#[derive(Args)]
pub struct AskArgs {
    question: String,
    #[arg(long)]
    kb: Vec<String>,
    /// Print one JSON object: answer, citations, timings.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ChatArgs {
    #[arg(long)]
    kb: Vec<String>,
}

pub fn ask(engine: &Engine, args: AskArgs) -> anyhow::Result<ExitCode> {
    let AskArgs { question, kb, json } = args;
    let kbs = super::kb_ids(engine, &kb)?;
    let generator = load_generator(engine, &kb)?;
    let g = generator.as_deref();
    let streaming = !json && g.is_some();
    if streaming {
        interrupts();
    }
    let mut out = std::io::stdout().lock();
    let answer = rag::ask(engine, g, &question, &[], &kbs, &mut |piece| {
        stream_to(&mut out, streaming, piece)
    })?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&answer)?)?;
    } else {
        print_answer(&mut out, &answer, streaming)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn chat(engine: &Engine, args: ChatArgs) -> anyhow::Result<ExitCode> {
    let ChatArgs { kb } = args;
    let kbs = super::kb_ids(engine, &kb)?;
    let generator = load_generator(engine, &kb)?;
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
        let answer = rag::ask(engine, g, question, &history, &kbs, &mut |piece| {
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

/// The configured generator, or none (extractive answers). The first knowledge base picks a
/// per-knowledge-base adapter where the backend has one.
pub fn load_generator(
    engine: &Engine,
    kb: &[String],
) -> anyhow::Result<Option<Arc<dyn Generator>>> {
    generate::from_config(&engine.config.generate, kb.first().map(String::as_str))
        .context("starting the generator ([generate] in the configuration)")
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
            "[{}] {} ({}) — {}\n    {snippet}{more}",
            c.index, c.title, c.location, c.document
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
