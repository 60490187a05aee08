//! `zhiku kb`: knowledge bases and who may read them.

use std::process::ExitCode;

use clap::Subcommand;
use zhiku_core::engine::Engine;
use zhiku_core::index;

#[derive(Subcommand)]
pub enum KbCommand {
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

pub fn run(engine: &Engine, action: KbCommand) -> anyhow::Result<ExitCode> {
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
            let n = index::delete_kb(engine, &name)?;
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
