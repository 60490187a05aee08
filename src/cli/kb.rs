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
    /// Restrict a folder (a path prefix, `政策/薪酬`) or one document (its name as listed)
    /// of a knowledge base to groups: only they (and admins) may read it. The nearest rule
    /// wins; new documents inherit the nearest folder's.
    Restrict {
        name: String,
        path: String,
        /// A group that may read it (repeat for more).
        #[arg(long = "group", required = true)]
        groups: Vec<String>,
    },
    /// Make a user an editor of a knowledge base (uploads, deletes and restricts its
    /// documents without being a site admin), or with --remove no longer one.
    Editor {
        name: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        remove: bool,
    },
    /// Remove the rule of a folder or document (it then follows the folder above it).
    Unrestrict { name: String, path: String },
    /// List a knowledge base's rules, and with --documents who may read each document.
    Rules {
        name: String,
        #[arg(long)]
        documents: bool,
        #[arg(long)]
        json: bool,
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
        KbCommand::Restrict { name, path, groups } => {
            let kb = engine.meta.require_kb(&name)?;
            let change = engine.meta.set_rule(kb, &path, &groups, "cli", None)?;
            println!(
                "{} {} of {name} readable only by {} (and admins); {} document(s) changed",
                kind(change.kind),
                change.path,
                change.groups.join(", "),
                change.documents
            );
            apply(engine);
        }
        KbCommand::Editor { name, user, remove } => {
            let m = &engine.meta;
            let kb = m.require_kb(&name)?;
            let u = m.require_user(&user)?;
            m.set_kb_editor(kb, u.id, !remove)?;
            let action = if remove {
                "kb.editor.remove"
            } else {
                "kb.editor.add"
            };
            m.audit("cli", action, &name, &format!("user {user}"), None)?;
            if remove {
                println!("{user} is no longer an editor of {name}");
            } else {
                println!("{user} may upload, delete and restrict documents of {name}");
            }
        }
        KbCommand::Unrestrict { name, path } => {
            let kb = engine.meta.require_kb(&name)?;
            let change = engine.meta.set_rule(kb, &path, &[], "cli", None)?;
            println!(
                "{} {} of {name} has no rule of its own; {} document(s) changed",
                kind(change.kind),
                change.path,
                change.documents
            );
            apply(engine);
        }
        KbCommand::Rules {
            name,
            documents,
            json,
        } => {
            let kb = engine.meta.require_kb(&name)?;
            let rules = engine.meta.rules(kb)?;
            let docs = if documents {
                engine.meta.document_access(kb)?
            } else {
                Vec::new()
            };
            if json {
                let v = serde_json::json!({ "rules": rules, "documents": docs });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            if rules.is_empty() {
                println!("no rules: every document of {name} is readable by its readers");
            }
            for r in &rules {
                println!("{}\t{}\t{}", kind(r.kind), r.path, r.groups.join(", "));
            }
            for d in &docs {
                let who = if d.groups.is_empty() && d.rule.is_none() {
                    "everyone".to_string()
                } else if d.groups.is_empty() {
                    "admins only".to_string()
                } else {
                    d.groups.join(", ")
                };
                let pending = if d.pending {
                    "\t(index update queued)"
                } else {
                    ""
                };
                println!("{}\t{who}{pending}", d.source);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn kind(k: zhiku_core::store::meta::RuleKind) -> &'static str {
    match k {
        zhiku_core::store::meta::RuleKind::Folder => "folder",
        zhiku_core::store::meta::RuleKind::Document => "document",
    }
}

/// Write the changed readers to the indexes now; when a running server holds them, its
/// worker does it within seconds (the rule already holds: retrieval checks SQLite too).
fn apply(engine: &Engine) {
    match index::apply_access_updates(engine) {
        Ok(n) => println!("index filters updated ({n} chunks)"),
        Err(e) => println!(
            "the index filters are updated by the running server (or the next `zhiku` job): {e}"
        ),
    }
}
