//! Prompt templates and the grounded-answer prompt.
//!
//! Templates are plain files (`prompts/` in the repository, embedded here as defaults); a file
//! of the same name in the configured folder (`rag.prompts_dir`, default
//! `<data_dir>/prompts`) replaces the built-in one, read again at every question so that an
//! admin's edit takes effect without a restart. Placeholders are `{name}`, replaced in one
//! pass: text coming from documents or users is never scanned for placeholders again.
//!
//! Instructions live in the system message; the retrieved passages, numbered `[1]`, `[2]`…,
//! and the question live in the user message, each passage quoted as data
//! ([`super::guard::quote_passage`]: whatever the `source.md` template says, a passage cannot
//! pose as instructions).

use std::path::{Path, PathBuf};

use crate::generate::{ChatMessage, Generator};
use crate::retrieve::Hit;

use super::RagError;
use super::lang::Lang;

/// Built-in templates: (file name, text).
const BUILT_IN: &[(&str, &str)] = &[
    (
        "answer.system.zh.md",
        include_str!("../../prompts/answer.system.zh.md"),
    ),
    (
        "answer.system.en.md",
        include_str!("../../prompts/answer.system.en.md"),
    ),
    (
        "answer.user.zh.md",
        include_str!("../../prompts/answer.user.zh.md"),
    ),
    (
        "answer.user.en.md",
        include_str!("../../prompts/answer.user.en.md"),
    ),
    ("source.md", include_str!("../../prompts/source.md")),
    (
        "condense.zh.md",
        include_str!("../../prompts/condense.zh.md"),
    ),
    (
        "condense.en.md",
        include_str!("../../prompts/condense.en.md"),
    ),
    (
        "not_found.zh.md",
        include_str!("../../prompts/not_found.zh.md"),
    ),
    (
        "not_found.en.md",
        include_str!("../../prompts/not_found.en.md"),
    ),
    (
        "extractive.zh.md",
        include_str!("../../prompts/extractive.zh.md"),
    ),
    (
        "extractive.en.md",
        include_str!("../../prompts/extractive.en.md"),
    ),
    ("blocked.zh.md", include_str!("../../prompts/blocked.zh.md")),
    ("blocked.en.md", include_str!("../../prompts/blocked.en.md")),
];

/// Names of every template (for documentation and tests).
pub fn template_names() -> impl Iterator<Item = &'static str> {
    BUILT_IN.iter().map(|(n, _)| *n)
}

/// Where templates come from: an override folder, then the built-in files.
#[derive(Debug, Clone, Default)]
pub struct Prompts {
    dir: Option<PathBuf>,
}

impl Prompts {
    /// Templates from `dir` where present there, else built in.
    pub fn new(dir: Option<&Path>) -> Self {
        Self {
            dir: dir.map(Path::to_path_buf),
        }
    }

    /// The built-in templates only.
    pub fn built_in() -> Self {
        Self::default()
    }

    /// The template `name` (trailing whitespace trimmed).
    pub fn get(&self, name: &str) -> Result<String, RagError> {
        if let Some(dir) = &self.dir {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => return Ok(text.trim_end().to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(RagError::Prompt { path, source }),
            }
        }
        BUILT_IN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.trim_end().to_string())
            .ok_or_else(|| RagError::Prompt {
                path: PathBuf::from(name),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such template"),
            })
    }

    /// `<base>.<lang>.md`.
    pub fn get_lang(&self, base: &str, lang: Lang) -> Result<String, RagError> {
        self.get(&format!("{base}.{}.md", lang.code()))
    }
}

/// Replace `{name}` placeholders in one pass; unknown placeholders and lone braces stay as
/// they are, and replaced text is not scanned again.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}');
        let value = close.and_then(|c| {
            let name = &after[..c];
            vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (c, *v))
        });
        match value {
            Some((c, v)) => {
                out.push_str(v);
                rest = &after[c + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The numbered sources block: each passage through `source.md`, numbered from 1 in rank
/// order, separated by blank lines.
pub fn format_sources(template: &str, hits: &[&Hit], lang: Lang) -> String {
    hits.iter()
        .enumerate()
        .map(|(i, h)| {
            let page = if h.page > 0 {
                match lang {
                    Lang::Zh => format!("（第{}页）", h.page),
                    Lang::En => format!(" (p. {})", h.page),
                }
            } else {
                String::new()
            };
            let index = (i + 1).to_string();
            let text = super::guard::quote_passage(h.text.trim(), lang);
            render(
                template,
                &[
                    ("index", &index),
                    ("title", &h.title),
                    ("page", &page),
                    ("document", &h.document),
                    ("text", &text),
                ],
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// A grounded-answer prompt and the passages it holds (`sources[i]` is `[i + 1]`).
#[derive(Debug, Clone)]
pub struct AnswerPrompt<'h> {
    pub messages: Vec<ChatMessage>,
    pub sources: Vec<&'h Hit>,
}

/// Build the answer prompt for `question` from `hits` (best first). With a generator, the
/// prompt must fit `budget` tokens by its `count_prompt_tokens`: the lowest-ranked passages
/// are dropped until it does; an error when even one passage does not fit.
pub fn answer_prompt<'h>(
    prompts: &Prompts,
    lang: Lang,
    question: &str,
    hits: &[&'h Hit],
    fit: Option<(&dyn Generator, usize)>,
) -> Result<AnswerPrompt<'h>, RagError> {
    let system = prompts.get_lang("answer.system", lang)?;
    let user = prompts.get_lang("answer.user", lang)?;
    let source = prompts.get("source.md")?;
    let mut n = hits.len();
    loop {
        let sources = &hits[..n];
        let block = format_sources(&source, sources, lang);
        let messages = vec![
            ChatMessage::system(system.clone()),
            ChatMessage::user(render(
                &user,
                &[("sources", &block), ("question", question)],
            )),
        ];
        let Some((generator, budget)) = fit else {
            return Ok(AnswerPrompt {
                messages,
                sources: sources.to_vec(),
            });
        };
        let tokens = generator.count_prompt_tokens(&messages)?;
        if tokens <= budget {
            if n < hits.len() {
                tracing::debug!(
                    kept = n,
                    dropped = hits.len() - n,
                    tokens,
                    budget,
                    "sources fitted to the context"
                );
            }
            return Ok(AnswerPrompt {
                messages,
                sources: sources.to_vec(),
            });
        }
        if n <= 1 {
            return Err(RagError::ContextTooSmall { tokens, budget });
        }
        n -= 1;
    }
}
