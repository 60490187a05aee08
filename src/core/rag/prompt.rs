//! Prompt templates and the grounded-answer prompt.
//!
//! Templates are plain files (`prompts/` in the repository, embedded here as defaults); a file
//! of the same name in the configured folder (`rag.prompts_dir`, default
//! `<data_dir>/prompts`) replaces the built-in one, read again at every question so that an
//! admin's edit takes effect without a restart. Placeholders are `{name}`, replaced in one
//! pass: text coming from documents or users is never scanned for placeholders again.
//!
//! Instructions live in the system message; the earlier turns of a chat follow as
//! user/assistant messages; the retrieved passages, numbered `[1]`, `[2]`…, and the question
//! live in the last user message, each passage quoted as data
//! ([`super::guard::quote_passage`]: whatever the `source.md` template says, a passage cannot
//! pose as instructions).

use std::path::{Path, PathBuf};

use crate::generate::{ChatMessage, Generator};
use crate::retrieve::Hit;

use super::cite::strip_markers;
use super::lang::Lang;
use super::{RagError, Turn};

/// Built-in templates: (file name, text).
const BUILT_IN: &[(&str, &str)] = &[
    (
        "answer.system.zh.md",
        include_str!("../../../prompts/answer.system.zh.md"),
    ),
    (
        "answer.system.en.md",
        include_str!("../../../prompts/answer.system.en.md"),
    ),
    (
        "answer.user.zh.md",
        include_str!("../../../prompts/answer.user.zh.md"),
    ),
    (
        "answer.user.en.md",
        include_str!("../../../prompts/answer.user.en.md"),
    ),
    ("source.md", include_str!("../../../prompts/source.md")),
    (
        "condense.zh.md",
        include_str!("../../../prompts/condense.zh.md"),
    ),
    (
        "condense.en.md",
        include_str!("../../../prompts/condense.en.md"),
    ),
    (
        "not_found.zh.md",
        include_str!("../../../prompts/not_found.zh.md"),
    ),
    (
        "not_found.en.md",
        include_str!("../../../prompts/not_found.en.md"),
    ),
    (
        "extractive.zh.md",
        include_str!("../../../prompts/extractive.zh.md"),
    ),
    (
        "extractive.en.md",
        include_str!("../../../prompts/extractive.en.md"),
    ),
    (
        "blocked.zh.md",
        include_str!("../../../prompts/blocked.zh.md"),
    ),
    (
        "blocked.en.md",
        include_str!("../../../prompts/blocked.en.md"),
    ),
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
            let page = match h.place.label(lang) {
                l if l.is_empty() => l,
                l => match lang {
                    Lang::Zh => format!("（{l}）"),
                    Lang::En => format!(" ({l})"),
                },
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
    /// Earlier turns in the prompt (the most recent ones of those given).
    pub history: usize,
}

/// Earlier turns as chat messages: each question as a user message, its answer as an
/// assistant message without citation markers (they numbered sources of that turn's
/// prompt, not of this one; left in, the model would copy numbers that now point at other
/// passages).
pub fn history_messages(history: &[Turn]) -> Vec<ChatMessage> {
    history
        .iter()
        .flat_map(|t| {
            [
                ChatMessage::user(t.question.trim()),
                ChatMessage::assistant(strip_markers(&t.answer).trim()),
            ]
        })
        .collect()
}

/// Build the answer prompt for `question` from `hits` (best first) after the chat so far
/// (`history`, oldest first): the system message, the earlier turns as user/assistant
/// pairs, then the user message with the numbered sources and the question.
///
/// With a generator, the prompt must fit `budget` tokens by its `count_prompt_tokens`: the
/// oldest turns are dropped first (the sources answer the question; the chat only helps to
/// read it), then the lowest-ranked passages; an error when even one passage does not fit
/// without any history.
pub fn answer_prompt<'h>(
    prompts: &Prompts,
    lang: Lang,
    question: &str,
    hits: &[&'h Hit],
    history: &[Turn],
    fit: Option<(&dyn Generator, usize)>,
) -> Result<AnswerPrompt<'h>, RagError> {
    let system = prompts.get_lang("answer.system", lang)?;
    let user = prompts.get_lang("answer.user", lang)?;
    let source = prompts.get("source.md")?;
    let turns = history_messages(history);
    let mut n = hits.len();
    let mut h = history.len();
    loop {
        let sources = &hits[..n];
        let block = format_sources(&source, sources, lang);
        let mut messages = Vec::with_capacity(2 + 2 * h);
        messages.push(ChatMessage::system(system.clone()));
        messages.extend_from_slice(&turns[2 * (history.len() - h)..]);
        messages.push(ChatMessage::user(render(
            &user,
            &[("sources", &block), ("question", question)],
        )));
        let prompt = AnswerPrompt {
            messages,
            sources: sources.to_vec(),
            history: h,
        };
        let Some((generator, budget)) = fit else {
            return Ok(prompt);
        };
        let tokens = generator.count_prompt_tokens(&prompt.messages)?;
        if tokens <= budget {
            if n < hits.len() || h < history.len() {
                tracing::debug!(
                    sources = n,
                    dropped_sources = hits.len() - n,
                    turns = h,
                    dropped_turns = history.len() - h,
                    tokens,
                    budget,
                    "prompt fitted to the context"
                );
            }
            return Ok(prompt);
        }
        if h > 0 {
            h -= 1;
        } else if n > 1 {
            n -= 1;
        } else {
            return Err(RagError::ContextTooSmall { tokens, budget });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ops::ControlFlow;

    use super::*;
    use crate::generate::{GenerationStats, Result as GenResult, Role, SamplingParams};
    use crate::rag::cite::tests::hit;

    /// Counts a token per character; never generates.
    struct Chars;

    impl Generator for Chars {
        fn model_id(&self) -> &str {
            "chars"
        }
        fn context_length(&self) -> usize {
            100_000
        }
        fn count_prompt_tokens(&self, messages: &[ChatMessage]) -> GenResult<usize> {
            Ok(messages.iter().map(|m| m.content.chars().count()).sum())
        }
        fn generate(
            &self,
            _: &[ChatMessage],
            _: &SamplingParams,
            _: &mut dyn FnMut(&str) -> ControlFlow<()>,
        ) -> GenResult<GenerationStats> {
            unreachable!("prompts are only counted")
        }
    }

    fn turn(q: &str, a: &str) -> Turn {
        Turn {
            question: q.into(),
            answer: a.into(),
        }
    }

    fn history() -> Vec<Turn> {
        vec![
            turn("年假怎么计算？", "按工龄计算[1]，满一年5天【2】。"),
            turn("病假需要什么证明？", "需要医院证明[1, 3]。"),
        ]
    }

    #[test]
    fn history_goes_between_instructions_and_sources_without_markers() {
        let hits = [hit(1), hit(2)];
        let refs: Vec<&Hit> = hits.iter().collect();
        let p = answer_prompt(
            &Prompts::built_in(),
            Lang::Zh,
            "婚假几天？",
            &refs,
            &history(),
            None,
        )
        .unwrap();
        let roles: Vec<Role> = p.messages.iter().map(|m| m.role).collect();
        use Role::{Assistant, System, User};
        assert_eq!(roles, [System, User, Assistant, User, Assistant, User]);
        let text: Vec<&str> = p.messages.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(
            text[1..5],
            [
                "年假怎么计算？",
                "按工龄计算，满一年5天。",
                "病假需要什么证明？",
                "需要医院证明。"
            ]
        );
        assert!(text[0].contains("只根据"), "{}", text[0]);
        let last = text[5];
        assert!(
            last.contains("[1] ") && last.contains("[2] ") && last.contains("passage 2"),
            "{last}"
        );
        assert!(last.ends_with("问题：婚假几天？"), "{last}");
        assert_eq!((p.sources.len(), p.history), (2, 2));
        // No history, no turns: the two messages as before.
        let p = answer_prompt(
            &Prompts::built_in(),
            Lang::Zh,
            "婚假几天？",
            &refs,
            &[],
            None,
        )
        .unwrap();
        assert_eq!(p.messages.len(), 2);
        assert_eq!(p.messages[1].content, last);
    }

    #[test]
    fn fitting_drops_the_oldest_turns_before_any_source() {
        let hits = [hit(1), hit(2), hit(3)];
        let refs: Vec<&Hit> = hits.iter().collect();
        let history = history();
        fn build<'h>(
            hits: &[&'h Hit],
            history: &[Turn],
            budget: Option<usize>,
        ) -> Result<AnswerPrompt<'h>, RagError> {
            let fit = budget.map(|b| (&Chars as &dyn Generator, b));
            answer_prompt(
                &Prompts::built_in(),
                Lang::Zh,
                "婚假几天？",
                hits,
                history,
                fit,
            )
        }
        let size = |hits: &[&Hit], history: &[Turn]| {
            Chars
                .count_prompt_tokens(&build(hits, history, None).unwrap().messages)
                .unwrap()
        };
        let kept = |budget: usize| {
            let p = build(&refs, &history, Some(budget)).unwrap();
            assert!(Chars.count_prompt_tokens(&p.messages).unwrap() <= budget);
            // The turns kept are the latest ones.
            if p.history == 1 {
                assert_eq!(p.messages[1].content, "病假需要什么证明？");
            }
            (p.history, p.sources.len())
        };
        assert_eq!(kept(size(&refs, &history)), (2, 3));
        // One token short: the older turn goes, every source stays.
        assert_eq!(kept(size(&refs, &history) - 1), (1, 3));
        assert_eq!(kept(size(&refs, &history[1..])), (1, 3));
        // Then the other turn, and only then sources, lowest-ranked first.
        assert_eq!(kept(size(&refs, &history[1..]) - 1), (0, 3));
        assert_eq!(kept(size(&refs, &[]) - 1), (0, 2));
        let p = build(&refs, &history, Some(size(&refs[..1], &[]))).unwrap();
        assert_eq!((p.history, p.sources.len()), (0, 1));
        assert_eq!(p.sources[0].chunk, 1, "the best passage is kept");
        // Not even one passage without history: ContextTooSmall, as without a chat.
        let e = build(&refs, &history, Some(size(&refs[..1], &[]) - 1))
            .err()
            .unwrap();
        assert!(matches!(e, RagError::ContextTooSmall { .. }), "{e}");
    }
}
