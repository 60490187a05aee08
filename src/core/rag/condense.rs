//! Follow-up questions → standalone questions, so that retrieval sees what "it" means.
//!
//! With a generator (and `rag.condense_with_generator`), the `condense.<lang>.md` template
//! asks the model to rewrite the question, given the last `rag.max_history_turns` turns.
//! Without one, a rule: when the question looks like a follow-up — it holds a pronoun or
//! demonstrative (它, 这个, 那, 该, 上述…; it, this, that, they…), is very short (at most four
//! Han characters or three words), or starts like "那…呢", "what about", "how about", "and" —
//! the key terms of the previous (standalone) question that the follow-up lacks are put in
//! front of it: after "年假怎么计算？", "病假呢？" becomes "年假 计算 病假呢？".

use std::ops::ControlFlow;

use crate::generate::{ChatMessage, Generator, SamplingParams};
use crate::store::keyword::KeywordIndex;

use super::lang::{Lang, is_han};
use super::prompt::{Prompts, render};
use super::{RagError, Turn};

const ZH_ANAPHORA: &[&str] = &[
    "它", "这个", "那个", "这些", "那些", "这项", "该", "此", "上述", "前者", "后者", "他们",
    "她们", "它们", "其中", "这种", "那种", "那么", "这",
];
const EN_ANAPHORA: &[&str] = &[
    "it", "its", "this", "that", "these", "those", "they", "them", "their", "there", "same", "he",
    "she", "him", "her",
];

/// Whether `question` looks like it depends on the conversation before it.
pub fn is_follow_up(question: &str) -> bool {
    let q = question.trim();
    match Lang::detect(q) {
        Lang::Zh => {
            let han = q.chars().filter(|&c| is_han(c)).count();
            han <= 4
                || ZH_ANAPHORA.iter().any(|a| q.contains(a))
                || q.starts_with('那')
                || q.starts_with("还有")
                || q.trim_end_matches(['？', '?', '。']).ends_with('呢')
        }
        Lang::En => {
            let lower = q.to_lowercase();
            let words: Vec<&str> = lower
                .split(|c: char| !c.is_alphanumeric() && c != '\'')
                .filter(|w| !w.is_empty())
                .collect();
            words.len() <= 3
                || words.iter().any(|w| EN_ANAPHORA.contains(w))
                || lower.starts_with("what about")
                || lower.starts_with("how about")
                || lower.starts_with("and ")
        }
    }
}

/// The rule: the previous question's key terms missing from a follow-up, put in front of it.
pub fn by_rule(keyword: &KeywordIndex, question: &str, history: &[Turn]) -> String {
    let Some(prev) = history.last() else {
        return question.to_string();
    };
    if !is_follow_up(question) {
        return question.to_string();
    }
    let have = super::terms::key_terms(keyword, question);
    let missing: Vec<String> = super::terms::key_terms(keyword, &prev.question)
        .into_iter()
        .filter(|t| !have.contains(t))
        .collect();
    if missing.is_empty() {
        return question.to_string();
    }
    format!("{} {}", missing.join(" "), question.trim())
}

/// The generator rewrites the question; falls back to the rule when it answers nothing
/// usable.
pub fn by_generator(
    generator: &dyn Generator,
    prompts: &Prompts,
    keyword: &KeywordIndex,
    question: &str,
    history: &[Turn],
) -> Result<String, RagError> {
    if history.is_empty() {
        return Ok(question.to_string());
    }
    let lang = Lang::detect(question);
    let (q_label, a_label) = match lang {
        Lang::Zh => ("用户", "助手"),
        Lang::En => ("User", "Assistant"),
    };
    let transcript: Vec<String> = history
        .iter()
        .map(|t| {
            let answer: String = super::cite::strip_markup(&t.answer)
                .chars()
                .take(300)
                .collect();
            format!("{q_label}: {}\n{a_label}: {}", t.question, answer.trim())
        })
        .collect();
    let template = prompts.get_lang("condense", lang)?;
    let prompt = render(
        &template,
        &[("history", &transcript.join("\n")), ("question", question)],
    );
    let params = SamplingParams {
        max_tokens: 96,
        temperature: 0.0,
        stop: vec!["\n".into()],
        ..Default::default()
    };
    let mut text = String::new();
    generator.generate(&[ChatMessage::user(prompt)], &params, &mut |piece| {
        text.push_str(piece);
        ControlFlow::Continue(())
    })?;
    let rewritten = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .trim_matches(['"', '“', '”'])
        .to_string();
    // A rewrite should be a question of similar size, not an essay or nothing.
    let len = rewritten.chars().count();
    if len == 0 || len > question.chars().count() * 4 + 120 {
        return Ok(by_rule(keyword, question, history));
    }
    Ok(rewritten)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_up_detection() {
        assert!(is_follow_up("病假呢？"));
        assert!(is_follow_up("那它需要什么材料？"));
        assert!(is_follow_up("What about sick leave?"));
        assert!(is_follow_up("How do I request it?"));
        assert!(!is_follow_up("出差住酒店每晚最多报销多少钱"));
        assert!(!is_follow_up("How long must a password be?"));
    }

    #[test]
    fn rule_prefixes_previous_key_terms() {
        let dir = tempfile::tempdir().unwrap();
        let kw = KeywordIndex::open(dir.path(), None).unwrap();
        let history = vec![Turn {
            question: "年假怎么计算？".into(),
            answer: "按工龄计算[1]。".into(),
        }];
        let q = by_rule(&kw, "病假呢？", &history);
        assert!(
            q.starts_with("年") && q.contains("计算") && q.ends_with("病假呢？"),
            "{q}"
        );
        assert!(!q.contains("怎么"), "{q}");
        // A standalone question is left alone, and so is any question without history.
        let q = by_rule(&kw, "出差住酒店每晚最多报销多少钱", &history);
        assert_eq!(q, "出差住酒店每晚最多报销多少钱");
        assert_eq!(by_rule(&kw, "病假呢？", &[]), "病假呢？");
        let history = vec![Turn {
            question: "How long must a password be?".into(),
            answer: "12 characters [1].".into(),
        }];
        let q = by_rule(&kw, "How often must I change it?", &history);
        assert!(q.contains("password"), "{q}");
    }
}
