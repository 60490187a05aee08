//! `zhiku search`.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use zhiku_core::engine::Engine;
use zhiku_core::retrieve;

#[derive(Args)]
pub struct SearchArgs {
    query: String,
    #[arg(long)]
    kb: Vec<String>,
    /// Number of results (default: retrieve.top_k).
    #[arg(long)]
    top: Option<usize>,
    /// Print a JSON array, best first.
    #[arg(long)]
    json: bool,
}

pub fn run(engine: &Engine, args: SearchArgs) -> anyhow::Result<ExitCode> {
    let SearchArgs {
        query,
        kb,
        top,
        json,
    } = args;
    let kbs = super::kb_ids(engine, &kb)?;
    let top = top.unwrap_or(engine.config.retrieve.top_k).max(1);
    let (hits, timings) = retrieve::search(engine, &query, &kbs, top)?;
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
            "[{}] {:.3}  {} ({}){}\n    {}\n    dense {} · keyword {}\n",
            i + 1,
            h.score,
            h.title,
            h.location,
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
