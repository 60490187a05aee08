//! The answer pipeline end to end: a scripted generator through the real pipeline (prompt,
//! context fitting, citations, condensation, template overrides), and `zhiku ask --json`
//! through the real binary and embedding model with no generator (extractive answers).

mod common;

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Mutex;

use zhiku_core::engine::Engine;
use zhiku_core::index;
use zhiku_core::progress::Silent;
use zhiku_core::rag::{self, Outcome, Turn};
use zhiku_llm::generate::{
    ChatMessage, FinishReason, GenerateError, GenerationStats, Generator, Result as GenResult,
    Role, SamplingParams,
};

use common::zhiku;

/// Replies with scripted texts in order, a few characters at a time; records every prompt.
/// Tokens are characters.
struct Scripted {
    replies: Mutex<VecDeque<String>>,
    seen: Mutex<Vec<Vec<ChatMessage>>>,
    context: usize,
}

impl Scripted {
    fn new(replies: &[&str], context: usize) -> Self {
        Self {
            replies: Mutex::new(replies.iter().map(|s| s.to_string()).collect()),
            seen: Mutex::new(Vec::new()),
            context,
        }
    }
    fn prompts(&self) -> Vec<Vec<ChatMessage>> {
        self.seen.lock().unwrap().clone()
    }
}

impl Generator for Scripted {
    fn model_id(&self) -> &str {
        "scripted"
    }
    fn context_length(&self) -> usize {
        self.context
    }
    fn count_prompt_tokens(&self, messages: &[ChatMessage]) -> GenResult<usize> {
        Ok(messages.iter().map(|m| m.content.chars().count()).sum())
    }
    fn generate(
        &self,
        messages: &[ChatMessage],
        _params: &SamplingParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> GenResult<GenerationStats> {
        self.seen.lock().unwrap().push(messages.to_vec());
        let reply = self.replies.lock().unwrap().pop_front().unwrap_or_default();
        let chars: Vec<char> = reply.chars().collect();
        for piece in chars.chunks(3) {
            let s: String = piece.iter().collect();
            if on_text(&s).is_break() {
                break;
            }
        }
        Ok(GenerationStats {
            prompt_tokens: 0,
            completion_tokens: chars.len(),
            ttft_ms: 1.0,
            total_ms: 2.0,
            tokens_per_s: 100.0,
            finish: FinishReason::Stop,
        })
    }
}

/// The samples in knowledge base `handbook`, hash embedder, lexical relevance gate only.
fn handbook(dir: &Path) -> Engine {
    let mut config = common::config(dir);
    config.rag.min_dense_score = 2.0;
    let engine = Engine::open(config)
        .unwrap()
        .with_embedder(common::HashEmbedder::new());
    index::ingest_paths(
        &engine,
        "handbook",
        &[common::samples()],
        &Default::default(),
        &Silent,
    )
    .unwrap();
    engine
}

fn kb(engine: &Engine) -> Vec<i64> {
    vec![engine.meta.require_kb("handbook").unwrap()]
}

fn ask(
    engine: &Engine,
    g: Option<&dyn Generator>,
    q: &str,
    history: &[Turn],
) -> (rag::Answer, String) {
    let mut streamed = String::new();
    let a = rag::ask(engine, g, q, history, &kb(engine), &mut |p| {
        streamed.push_str(p);
        ControlFlow::Continue(())
    })
    .unwrap();
    (a, streamed)
}

#[test]
fn generated_answer_cites_only_prompt_sources() {
    let dir = tempfile::tempdir().unwrap();
    let engine = handbook(&dir.path().join("data"));
    let g = Scripted::new(&["年假按工龄计算[1]，另见【2】和[1, 9]。"], 32_000);
    let (a, streamed) = ask(&engine, Some(&g), "年假怎么计算？", &[]);
    assert_eq!(a.outcome, Outcome::Generated);
    assert_eq!(streamed, "年假按工龄计算[1]，另见【2】和[1, 9]。");
    assert_eq!(a.answer, "年假按工龄计算[1]，另见【2】和[1]。");
    let prompt = &g.prompts()[0];
    assert_eq!(prompt[0].role, Role::System);
    assert!(prompt[0].content.contains("只根据"), "Chinese template");
    assert!(
        !prompt[0].content.contains("年假"),
        "no retrieved text in the instructions"
    );
    let user = &prompt[1].content;
    assert!(user.contains("问题：年假怎么计算？"), "{user}");
    assert!(user.contains("[1] ") && user.contains("[2] "), "{user}");
    // The first source is the leave policy, and citation [1] is that passage.
    assert!(a.sources >= 2);
    let idx: Vec<usize> = a.citations.iter().map(|c| c.index).collect();
    assert_eq!(idx, vec![1, 2]);
    let first = &a.citations[0];
    assert!(
        first.document.ends_with("员工手册-休假制度.txt"),
        "{first:?}"
    );
    let numbered = format!("[1] {}", first.title);
    assert!(
        user.contains(&numbered),
        "[1] is the first cited passage: {user}"
    );
    assert!(user.contains(first.text.trim()));
    assert!(a.ttft_ms.is_some());
}

#[test]
fn english_question_gets_the_english_template() {
    let dir = tempfile::tempdir().unwrap();
    let engine = handbook(&dir.path().join("data"));
    let g = Scripted::new(&["At least 12 characters [1]."], 32_000);
    let (a, _) = ask(&engine, Some(&g), "How long must a password be?", &[]);
    let prompt = &g.prompts()[0];
    assert!(
        prompt[0].content.starts_with("You are"),
        "{}",
        prompt[0].content
    );
    assert!(
        prompt[1]
            .content
            .contains("Question: How long must a password be?")
    );
    assert_eq!(a.citations.len(), 1);
    assert!(
        a.citations[0]
            .document
            .ends_with("information-security-policy.pdf")
    );
}

#[test]
fn sources_are_fitted_to_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let engine = handbook(&dir.path().join("data"));
    let question = "年假怎么计算？";
    // Room for the templates and about one passage: max_tokens 512 + margin 64 are reserved.
    let probe = Scripted::new(&["x"], 100_000);
    let _ = ask(&engine, Some(&probe), question, &[]);
    let full: usize = probe.count_prompt_tokens(&probe.prompts()[0]).unwrap();
    assert!(
        probe.prompts()[0][1].content.contains("\n\n[2] "),
        "needs two sources to drop one"
    );
    let g = Scripted::new(&["标准见[1]和[2]。"], full - 1 + 512 + 64);
    let (a, _) = ask(&engine, Some(&g), question, &[]);
    let user = &g.prompts()[0][1].content;
    assert!(a.sources >= 1);
    let full_sources = probe.prompts()[0][1].content.matches("\n[").count();
    let kept = user.matches("\n[").count();
    assert!(kept >= 1 && kept < full_sources, "{kept} of {full_sources}");
    assert!(g.count_prompt_tokens(&g.prompts()[0]).unwrap() < full);
    // [2] may be cited only when a second passage was kept.
    let idx: Vec<usize> = a.citations.iter().map(|c| c.index).collect();
    assert!(
        idx.iter().all(|&i| i <= a.sources),
        "{idx:?} of {}",
        a.sources
    );
    // Too small for even one passage: a clear error.
    let tiny = Scripted::new(&["x"], 600);
    let e = rag::ask(
        &engine,
        Some(&tiny),
        question,
        &[],
        &kb(&engine),
        &mut |_| ControlFlow::Continue(()),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("context is too small"), "{e}");
}

/// A server whose tokenizer finds `ratio` tokens for every one the client estimates (the
/// estimate is a token per character): like a server, it refuses a prompt whose own count
/// plus `max_tokens` exceeds its context, with its numbers; with `refuse_all` it refuses
/// every prompt. Otherwise it answers citing [1], [2] and [5]. Records every prompt.
struct Picky {
    ratio: f64,
    context: usize,
    refuse_all: bool,
    seen: Mutex<Vec<Vec<ChatMessage>>>,
}

impl Picky {
    fn new(ratio: f64, context: usize, refuse_all: bool) -> Self {
        Self {
            ratio,
            context,
            refuse_all,
            seen: Mutex::new(Vec::new()),
        }
    }
    fn prompts(&self) -> Vec<Vec<ChatMessage>> {
        self.seen.lock().unwrap().clone()
    }
}

impl Generator for Picky {
    fn model_id(&self) -> &str {
        "picky"
    }
    fn context_length(&self) -> usize {
        self.context
    }
    fn count_prompt_tokens(&self, messages: &[ChatMessage]) -> GenResult<usize> {
        Ok(messages.iter().map(|m| m.content.chars().count()).sum())
    }
    fn generate(
        &self,
        messages: &[ChatMessage],
        params: &SamplingParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> GenResult<GenerationStats> {
        self.seen.lock().unwrap().push(messages.to_vec());
        let own = (self.count_prompt_tokens(messages)? as f64 * self.ratio).ceil() as usize;
        if self.refuse_all || own + params.max_tokens > self.context {
            return Err(GenerateError::ContextOverflow {
                prompt_tokens: own,
                max_new_tokens: params.max_tokens,
                context_length: self.context,
            });
        }
        let _ = on_text("见[1]，另见[2]和[5]。");
        Ok(GenerationStats {
            prompt_tokens: own,
            completion_tokens: 12,
            ttft_ms: 1.0,
            total_ms: 2.0,
            tokens_per_s: 100.0,
            finish: FinishReason::Stop,
        })
    }
}

/// Sources numbered in a prompt's last message.
fn numbered(prompt: &[ChatMessage]) -> usize {
    let user = &prompt.last().unwrap().content;
    (1..)
        .take_while(|i| user.contains(&format!("[{i}] ")))
        .count()
}

#[test]
fn a_prompt_the_server_finds_too_long_is_retried_with_fewer_sources() {
    let dir = tempfile::tempdir().unwrap();
    let engine = handbook(&dir.path().join("data"));
    let question = "年假怎么计算？";
    let probe = Scripted::new(&["x"], 100_000);
    let _ = ask(&engine, Some(&probe), question, &[]);
    let full = probe.count_prompt_tokens(&probe.prompts()[0]).unwrap();
    let all = numbered(&probe.prompts()[0]);
    assert!(all >= 2, "needs two sources to drop one");
    // By the client's estimate every source fits (512 answer + 64 margin reserved); the
    // server counts 25 % more and refuses.
    let g = Picky::new(1.25, full + 512 + 64, false);
    let (a, streamed) = ask(&engine, Some(&g), question, &[]);
    let prompts = g.prompts();
    assert_eq!(prompts.len(), 2, "one refusal, one retry");
    assert_eq!(numbered(&prompts[0]), all);
    let kept = numbered(&prompts[1]);
    assert!(kept >= 1 && kept < all, "{kept} of {all}");
    assert_eq!(a.outcome, Outcome::Generated);
    assert_eq!(a.sources, kept);
    // Citations refer to the sources of the prompt that answered, and only to those.
    assert_eq!(streamed, "见[1]，另见[2]和[5]。");
    let last = &prompts[1].last().unwrap().content;
    for c in &a.citations {
        assert!(c.index <= kept, "[{}] of {kept}", c.index);
        assert!(
            last.contains(&format!("[{}] {}", c.index, c.title)),
            "{last}"
        );
        assert!(last.contains(c.text.trim()));
    }
    assert!(!a.answer.contains("[5]"), "{}", a.answer);
    if kept < 2 {
        assert!(!a.answer.contains("[2]"), "{}", a.answer);
    }
}

#[test]
fn a_prompt_that_keeps_overflowing_fails_after_three_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = handbook(&dir.path().join("data"));
    // The rule condenses, so that every generator call is an answer prompt.
    engine.config.rag.condense_with_generator = false;
    // Earlier turns give the retries more to drop than two sources do.
    let history: Vec<Turn> = ["病假", "婚假", "产假"]
        .iter()
        .map(|l| Turn {
            question: format!("{l}有几天？"),
            answer: format!("{l}的天数按公司休假制度和国家规定执行，具体以人事部门审批为准[1]。"),
        })
        .collect();
    let g = Picky::new(1.0, 32_000, true);
    let mut streamed = String::new();
    let e = rag::ask(
        &engine,
        Some(&g),
        "年假怎么计算？",
        &history,
        &kb(&engine),
        &mut |p| {
            streamed.push_str(p);
            ControlFlow::Continue(())
        },
    )
    .expect_err("every prompt is refused");
    assert!(
        matches!(
            e,
            rag::RagError::Generate(GenerateError::ContextOverflow { .. })
        ),
        "{e}"
    );
    assert!(streamed.is_empty());
    // Three attempts, each at least 10 % smaller than the one before; the turns go first.
    let prompts = g.prompts();
    let sizes: Vec<usize> = prompts
        .iter()
        .map(|p| g.count_prompt_tokens(p).unwrap())
        .collect();
    assert_eq!(sizes.len(), rag::MAX_PROMPT_ATTEMPTS, "{sizes:?}");
    assert!(sizes.windows(2).all(|w| w[1] * 10 <= w[0] * 9), "{sizes:?}");
    assert_eq!(prompts[0].len(), 2 + 2 * history.len());
    assert!(prompts[2].len() < prompts[0].len());
    assert_eq!(numbered(&prompts[0]), numbered(&prompts[1]));
}

#[test]
fn follow_up_is_condensed_by_the_generator() {
    let dir = tempfile::tempdir().unwrap();
    let engine = handbook(&dir.path().join("data"));
    let g = Scripted::new(
        &["病假需要什么证明？\n多余的行", "需要医院证明[1]。"],
        32_000,
    );
    let history = [Turn {
        question: "年假怎么计算？".into(),
        answer: "按工龄[1]。".into(),
    }];
    let (a, _) = ask(&engine, Some(&g), "那病假呢？", &history);
    assert_eq!(a.standalone_question, "病假需要什么证明？");
    let prompts = g.prompts();
    assert_eq!(prompts.len(), 2);
    assert!(prompts[0][0].content.contains("后续问题：那病假呢？"));
    assert!(prompts[0][0].content.contains("用户: 年假怎么计算？"));
    // The answer prompt holds the earlier turn (its [1] numbered another prompt's source),
    // then the sources and the standalone question.
    let p = &prompts[1];
    let roles: Vec<Role> = p.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [Role::System, Role::User, Role::Assistant, Role::User]
    );
    assert_eq!(p[1].content, "年假怎么计算？");
    assert_eq!(p[2].content, "按工龄。");
    assert!(p[3].content.contains("问题：病假需要什么证明？"));
    assert!(p[3].content.contains("[1] "), "{}", p[3].content);
    assert!(a.citations.iter().all(|c| c.index <= a.sources));
}

#[test]
fn nothing_relevant_says_so_without_calling_the_generator() {
    let dir = tempfile::tempdir().unwrap();
    let engine = handbook(&dir.path().join("data"));
    let g = Scripted::new(&["编造的答案"], 32_000);
    let (a, streamed) = ask(&engine, Some(&g), "火星上有多少颗卫星", &[]);
    assert_eq!(a.outcome, Outcome::NotFound);
    assert!(a.answer.contains("没有找到"), "{}", a.answer);
    assert_eq!(streamed, a.answer);
    assert!(a.citations.is_empty());
    assert!(g.prompts().is_empty());
    let (a, _) = ask(&engine, None, "How do I bake sourdough bread?", &[]);
    assert_eq!(a.outcome, Outcome::NotFound);
    assert!(a.answer.starts_with("Sorry"), "{}", a.answer);
}

#[test]
fn templates_are_read_from_the_prompts_folder() {
    let dir = tempfile::tempdir().unwrap();
    let engine = handbook(&dir.path().join("data"));
    let prompts = engine.config.prompts_dir();
    std::fs::create_dir_all(&prompts).unwrap();
    std::fs::write(prompts.join("answer.system.zh.md"), "只用资料回答。\n").unwrap();
    std::fs::write(prompts.join("source.md"), "<<{index}>> {text}").unwrap();
    let g = Scripted::new(&["好[1]"], 32_000);
    let _ = ask(&engine, Some(&g), "年假怎么计算？", &[]);
    let p = &g.prompts()[0];
    assert_eq!(p[0].content, "只用资料回答。");
    assert!(p[1].content.contains("<<1>> "), "{}", p[1].content);
}

#[test]
fn extractive_answer_quotes_and_cites() {
    let dir = tempfile::tempdir().unwrap();
    let engine = handbook(&dir.path().join("data"));
    let (a, _) = ask(&engine, None, "年假怎么计算？", &[]);
    assert_eq!(a.outcome, Outcome::Extractive);
    assert!(a.notice.is_some());
    assert!(a.answer.contains("**年休假**"), "{}", a.answer);
    assert!(a.citations[0].document.ends_with("员工手册-休假制度.txt"));
    check_quotes(&a.answer, &a.citations);
    // Quotes are backed by what they quote.
    assert_eq!(a.check.claims.len(), a.answer.lines().count(), "{a:?}");
    assert_eq!(a.check.unsupported(), 0, "{:?}", a.check);
    assert!(a.check.unsourced_numbers.is_empty(), "{:?}", a.check);
}

#[test]
fn a_generated_sentence_its_passage_does_not_back_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let engine = handbook(&dir.path().join("data"));
    let g = Scripted::new(
        &[
            "已满10年不满20年的员工，年休假10天[1]。已满20年的，年休假30天[1]。食堂每周五供应免费的水果和咖啡[1]。此外，2019年起另有补贴。",
        ],
        32_000,
    );
    let (a, _) = ask(&engine, Some(&g), "年休假有几天？", &[]);
    assert_eq!(a.outcome, Outcome::Generated);
    assert!(
        a.citations[0].text.contains("年休假10天"),
        "{:?}",
        a.citations
    );
    let verdicts: Vec<(&str, bool)> = a
        .check
        .claims
        .iter()
        .map(|c| (c.sentence.as_str(), c.supported))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("已满10年不满20年的员工，年休假10天", true),
            ("已满20年的，年休假30天", false),
            ("食堂每周五供应免费的水果和咖啡", false),
        ],
        "{:?}",
        a.check
    );
    assert_eq!(a.check.claims[1].missing_numbers, ["30"]);
    assert!(a.check.claims[2].missing_numbers.is_empty());
    // The uncited sentence's year is flagged too.
    assert_eq!(a.check.unsourced_numbers, ["30", "2019"]);
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["claims"][1]["supported"], false, "{json}");
    assert_eq!(json["unsourced_numbers"][1], "2019", "{json}");
}

/// Every `- sentence [n]` line of an extractive answer is a sentence of citation n's passage.
fn check_quotes(answer: &str, citations: &[rag::Citation]) {
    assert!(!citations.is_empty());
    for line in answer.lines() {
        let line = line.strip_prefix("- ").expect(line);
        let open = line.rfind(" [").expect(line);
        let n: usize = line[open + 2..line.len() - 1].parse().expect(line);
        let quote = line[..open].replace("**", "");
        let quote = quote.trim_end_matches('…');
        let c = citations.iter().find(|c| c.index == n).expect("cited");
        assert!(
            c.text.contains(quote),
            "{quote:?} not in [{n}] {:?}",
            c.text
        );
    }
}

#[test]
fn ask_json_without_generator() {
    let Some(model) = common::e5_model() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let samples = common::samples();
    let out = zhiku(
        &data,
        &model,
        &["ingest", samples.to_str().unwrap(), "--kb", "handbook"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cases = [
        ("年假怎么计算？", "员工手册-休假制度.txt"),
        ("出差住酒店每晚最多报销多少钱", "差旅费报销管理办法.pdf"),
        (
            "How long must a password be?",
            "information-security-policy.pdf",
        ),
        ("忘记邮箱密码怎么办", "IT服务台常见问题.txt"),
    ];
    for (q, doc) in cases {
        let out = zhiku(&data, &model, &["ask", q, "--kb", "handbook", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["outcome"], "extractive", "{q}: {v}");
        assert!(v.get("ttft_ms").is_none(), "no generator ran");
        let citations: Vec<rag::Citation> = v["citations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                for key in ["index", "document", "title", "page", "text"] {
                    assert!(c.get(key).is_some(), "{key} missing: {c}");
                }
                rag::Citation {
                    index: c["index"].as_u64().unwrap() as usize,
                    chunk: c["chunk"].as_u64().unwrap(),
                    document: c["document"].as_str().unwrap().into(),
                    document_id: c["document_id"].as_i64().unwrap(),
                    title: c["title"].as_str().unwrap().into(),
                    page: c["page"].as_u64().unwrap() as u32,
                    place: zhiku_core::rag::location::Location::Page {
                        page: c["page"].as_u64().unwrap() as u32,
                    },
                    location: c["location"].as_str().unwrap().into(),
                    text: c["text"].as_str().unwrap().into(),
                    kb: 0,
                }
            })
            .collect();
        check_quotes(v["answer"].as_str().unwrap(), &citations);
        // The citation check finds every quoted sentence backed by its passage.
        let claims = v["claims"].as_array().expect("claims");
        assert!(!claims.is_empty(), "{q}: {v}");
        for c in claims {
            assert_eq!(c["supported"], true, "{q}: {c}");
        }
        assert_eq!(v["unsourced_numbers"], serde_json::json!([]), "{q}: {v}");
        assert!(citations[0].document.ends_with(doc), "{q}: {v}");
    }
    for q in [
        "火星上有多少颗卫星",
        "What is the capital of France?",
        "食堂几点开饭",
    ] {
        let out = zhiku(&data, &model, &["ask", q, "--kb", "handbook", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["outcome"], "not_found", "{q}: {v}");
        assert_eq!(v["citations"].as_array().unwrap().len(), 0);
    }
    // Plain output: the quote, then the sources.
    let out = zhiku(
        &data,
        &model,
        &["ask", "年假怎么计算？", "--kb", "handbook"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("来源：") && text.contains("[1] "), "{text}");
}
