//! `zhiku ingest` and `zhiku reindex`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use zhiku_core::engine::Engine;
use zhiku_core::index;

use super::terminal;

#[derive(Args)]
pub struct IngestArgs {
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
}

pub fn run(engine: &Engine, args: IngestArgs) -> anyhow::Result<ExitCode> {
    let IngestArgs {
        paths,
        kb,
        sync,
        qa_contexts,
        json,
    } = args;
    if paths.is_empty() && qa_contexts.is_empty() {
        bail!("give files or folders to ingest, or --qa-contexts FILE.json");
    }
    let mut reports = Vec::new();
    for qa in &qa_contexts {
        let r = index::ingest_qa_contexts(engine, &kb, qa, &terminal::progress_bar())
            .with_context(|| format!("ingesting {}", qa.display()))?;
        reports.push(r);
    }
    if !paths.is_empty() {
        let opts = index::IngestOptions { sync };
        let r = index::ingest_paths(engine, &kb, &paths, &opts, &terminal::progress_bar())?;
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

/// Rebuild the vector and keyword indexes from the metadata database.
pub fn reindex(engine: &Engine) -> anyhow::Result<ExitCode> {
    let n = index::reindex(engine, &terminal::progress_bar())?;
    println!("reindexed {n} chunks");
    Ok(ExitCode::SUCCESS)
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
    let sum = |f: fn(&index::DocumentPages) -> usize| r.documents.iter().map(f).sum::<usize>();
    let (text, ocr, failed) = (
        sum(|d| d.reading.text_pages as usize),
        sum(|d| d.reading.ocr_pages.len()),
        sum(|d| d.reading.failed_pages.len()),
    );
    if !r.documents.is_empty() {
        println!("  pages: {text} from the text layer, {ocr} by OCR, {failed} failed");
    }
    for d in &r.documents {
        if !d.reading.ocr_pages.is_empty() || !d.reading.failed_pages.is_empty() {
            println!(
                "  pages of {}: {} of {}",
                d.source,
                d.reading.describe(),
                d.pages
            );
        }
    }
    if let Some(why) = &r.ocr_unavailable {
        println!("  OCR did not run: {why}");
    }
    if !r.unsupported.is_empty() {
        println!(
            "  skipped {} files of unsupported formats (supported: {})",
            r.unsupported.len(),
            index::supported_extensions().collect::<Vec<_>>().join(", ")
        );
    }
}
