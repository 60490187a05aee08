//! `zhiku finetune data` through the real retrieval and prompt code: RAG-form records carry
//! exactly the prompt an answer is asked with, cite the passage holding the answer, and the
//! held-out split shares no question and no cited passage with the training split.

mod common;

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Mutex;

use zhiku_core::engine::Engine;
use zhiku_core::index;
use zhiku_core::progress::Silent;
use zhiku_core::rag;
use zhiku_llm::finetune::data::{self, DataOptions, general_count};
use zhiku_llm::finetune::{Record, heldout_path, read_jsonl};
use zhiku_llm::generate::{
    ChatMessage, FinishReason, GenerationStats, Generator, Result as GenResult, SamplingParams,
};

/// Records every prompt; answers "好".
struct Recorder(Mutex<Vec<Vec<ChatMessage>>>);

impl Generator for Recorder {
    fn model_id(&self) -> &str {
        "recorder"
    }
    fn context_length(&self) -> usize {
        100_000
    }
    fn count_prompt_tokens(&self, messages: &[ChatMessage]) -> GenResult<usize> {
        Ok(messages.iter().map(|m| m.content.chars().count()).sum())
    }
    fn generate(
        &self,
        messages: &[ChatMessage],
        _: &SamplingParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> GenResult<GenerationStats> {
        self.0.lock().unwrap().push(messages.to_vec());
        let _ = on_text("好");
        Ok(GenerationStats {
            prompt_tokens: 0,
            completion_tokens: 1,
            ttft_ms: 0.0,
            total_ms: 0.0,
            tokens_per_s: 0.0,
            finish: FinishReason::Stop,
        })
    }
}

const CITIES: [&str; 12] = [
    "青岚",
    "白鹭洲",
    "松溪",
    "云屏",
    "赤岩",
    "金沙渡",
    "玉泉镇",
    "雁回",
    "石门关",
    "桃花坞",
    "北辰",
    "落霞",
];
const FLOWERS: [&str; 12] = [
    "玉兰", "茉莉", "杜鹃", "山茶", "月季", "桂花", "紫薇", "海棠", "荷花", "梅花", "菊花", "兰花",
];

/// A SQuAD-layout file: one paragraph per city, two questions each, plus a question whose
/// answer is in no paragraph and the same question asked on two paragraphs.
fn write_qa(path: &Path) {
    let mut paragraphs = Vec::new();
    for (i, (city, flower)) in CITIES.iter().zip(FLOWERS).enumerate() {
        let year = 1500 + i * 37;
        let mut qas = vec![
            serde_json::json!({"id": format!("Q{i}a"), "question": format!("{city}建于哪一年？"),
                               "answers": [{"text": format!("{year}年"), "answer_start": 0}]}),
            serde_json::json!({"id": format!("Q{i}b"), "question": format!("{city}的市花是什么？"),
                               "answers": [{"text": flower, "answer_start": 0}]}),
        ];
        if i < 2 {
            qas.push(
                serde_json::json!({"id": format!("Q{i}c"), "question": "哪座城市以瀑布闻名？",
                                        "answers": [{"text": city, "answer_start": 0}]}),
            );
        }
        if i == 3 {
            qas.push(
                serde_json::json!({"id": "Q3x", "question": format!("{city}有多少人口？"),
                                        "answers": [{"text": "八十二万", "answer_start": 0}]}),
            );
        }
        paragraphs.push(serde_json::json!({
            "id": format!("P{i}"),
            "context": format!("{city}位于江南，建于{year}年，以瀑布闻名。{city}的市花是{flower}，每年春天举办花会。"),
            "qas": qas,
        }));
    }
    let doc = serde_json::json!({"data": [{"title": "城市", "paragraphs": paragraphs}]});
    std::fs::write(path, doc.to_string()).unwrap();
}

/// An engine on `dir` with the QA file's paragraphs in knowledge base `wiki` (hash
/// embedder, lexical relevance gate only).
fn wiki(dir: &Path) -> (Engine, std::path::PathBuf) {
    let mut config = common::config(&dir.join("data"));
    config.rag.min_dense_score = 2.0;
    let engine = Engine::open(config)
        .unwrap()
        .with_embedder(common::HashEmbedder::new());
    let qa = dir.join("cities.json");
    write_qa(&qa);
    index::ingest_qa_contexts(&engine, "wiki", &qa, &Silent).unwrap();
    (engine, qa)
}

fn question_of(r: &Record) -> String {
    r.input.rsplit("问题：").next().unwrap().trim().to_string()
}

/// The text of source `[n]` in a RAG-form input.
fn source_text(input: &str, n: usize) -> &str {
    let start = input.find(&format!("[{n}] ")).expect("source marker");
    let rest = &input[start..];
    let end = rest
        .find(&format!("\n\n[{}] ", n + 1))
        .or_else(|| rest.find("问题："))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The marker number and the body of a grounded reply ("…[n]。").
fn cited(output: &str) -> (usize, String) {
    let open = output.rfind('[').expect("a citation marker");
    let close = output[open..].find(']').unwrap() + open;
    let n = output[open + 1..close].parse().unwrap();
    (n, output[..open].to_string())
}

#[test]
fn rag_records_are_answer_prompts_citing_the_answer_and_splits_share_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (engine, qa) = wiki(tmp.path());
    let mut opts = DataOptions::new("wiki");
    opts.qa = vec![qa];
    opts.heldout_share = 0.25;
    opts.general_share = 0.0;
    let set = data::build(&engine, &opts, &Silent).unwrap();
    let s = &set.stats;
    assert_eq!(s.candidates.get("qa"), Some(&27), "{s}");
    assert!(
        s.dropped.get("answer not in the retrieved passages") >= Some(&1),
        "the population question has no answer in any passage: {s}"
    );
    let all: Vec<&Record> = set.train.iter().chain(&set.heldout).collect();
    assert!(all.len() >= 20, "{s}");
    assert!(!set.heldout.is_empty());

    let kb = engine.meta.require_kb("wiki").unwrap();
    let recorder = Recorder(Mutex::new(Vec::new()));
    for r in &all {
        // The same prompt the answer pipeline builds for this question.
        let q = question_of(r);
        rag::ask(&engine, Some(&recorder), &q, &[], &[kb], &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
        let prompt = recorder.0.lock().unwrap().pop().unwrap();
        assert_eq!(prompt.len(), 2);
        assert_eq!(r.instruction, prompt[0].content, "{q}");
        assert_eq!(r.input, prompt[1].content, "{q}");
        // The reply cites the source that holds it.
        let (n, body) = cited(&r.output);
        assert!(
            source_text(&r.input, n).contains(&body),
            "{q}: [{n}] does not hold {body:?}"
        );
    }

    // No question and no cited passage in both splits.
    let questions = |v: &[Record]| -> HashSet<String> { v.iter().map(question_of).collect() };
    let passages = |v: &[Record]| -> HashSet<String> {
        v.iter()
            .map(|r| {
                let (n, _) = cited(&r.output);
                let text = source_text(&r.input, n);
                // Without the "[n] " that numbers it in this prompt.
                text[text.find(' ').unwrap()..].to_string()
            })
            .collect()
    };
    let shared_q: Vec<_> = questions(&set.train)
        .intersection(&questions(&set.heldout))
        .cloned()
        .collect();
    assert!(shared_q.is_empty(), "{shared_q:?}");
    let shared_p: Vec<_> = passages(&set.train)
        .intersection(&passages(&set.heldout))
        .cloned()
        .collect();
    assert!(shared_p.is_empty(), "{shared_p:?}");

    // Written where the trainer looks, and read back as written.
    let out = tmp.path().join("out").join("train.jsonl");
    let held = data::write(&set, &out).unwrap();
    assert_eq!(held, heldout_path(&out));
    assert_eq!(read_jsonl(&out).unwrap(), set.train);
    assert_eq!(read_jsonl(&held).unwrap(), set.heldout);
}

#[test]
fn general_share_is_honoured_and_a_shortage_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let (engine, qa) = wiki(tmp.path());
    let general = tmp.path().join("general.jsonl");
    let lines: Vec<String> = (0..60)
        .map(|i| {
            serde_json::json!({"instruction": format!("Write the number {i} in words."),
                               "output": format!("The number {i}, spelled out.")})
            .to_string()
        })
        .collect();
    std::fs::write(&general, lines.join("\n")).unwrap();
    let mut opts = DataOptions::new("wiki");
    opts.qa = vec![qa];
    opts.general = Some(general.clone());
    opts.general_share = 0.25;
    let set = data::build(&engine, &opts, &Silent).unwrap();
    let s = &set.stats;
    let domain = set.train.len() - s.general_used;
    assert_eq!(s.general_used, general_count(domain, 0.25), "{s}");
    assert!(
        (s.general_share - 0.25).abs() <= 1.0 / set.train.len() as f64,
        "{s}"
    );
    let in_train = set
        .train
        .iter()
        .filter(|r| r.instruction.starts_with("Write the number"))
        .count();
    assert_eq!(in_train, s.general_used);
    assert!(
        set.heldout
            .iter()
            .all(|r| !r.instruction.starts_with("Write the number")),
        "general examples never go into the held-out split"
    );

    // Too few general examples: all are used and the share reached says so.
    std::fs::write(&general, &lines[0]).unwrap();
    let set = data::build(&engine, &opts, &Silent).unwrap();
    assert_eq!(
        (set.stats.general_available, set.stats.general_used),
        (1, 1)
    );
    assert!(set.stats.general_share < 0.25);
    assert!(set.stats.to_string().contains("1 of 1 available"));
}

#[test]
fn malformed_admin_records_fail_with_line_numbers_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (engine, qa) = wiki(tmp.path());
    let admin = tmp.path().join("admin.jsonl");
    std::fs::write(
        &admin,
        "{\"instruction\":\"报销时限？\",\"output\":\"30天内。\"}\n{broken\n\n{\"output\":\"x\"}\n",
    )
    .unwrap();
    let mut opts = DataOptions::new("wiki");
    opts.qa = vec![qa];
    opts.jsonl = vec![admin];
    opts.general_share = 0.0;
    let e = data::build(&engine, &opts, &Silent)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("2 malformed line(s)") && e.contains("line 2:") && e.contains("line 4:"),
        "{e}"
    );
    // Bad shares are refused up front.
    let mut bad = DataOptions::new("wiki");
    bad.general_share = 0.3;
    let e = data::build(&engine, &bad, &Silent).unwrap_err().to_string();
    assert!(e.contains("--general"), "{e}");
    bad.general_share = 0.0;
    bad.heldout_share = 1.0;
    assert!(data::build(&engine, &bad, &Silent).is_err());
}

#[test]
fn without_qa_files_questions_come_from_defining_sentences() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = common::config(&tmp.path().join("data"));
    config.rag.min_dense_score = 2.0;
    let engine = Engine::open(config)
        .unwrap()
        .with_embedder(common::HashEmbedder::new());
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        docs.join("术语表.txt"),
        "术语表\n\n年休假是员工每年享有的带薪假期，天数按累计工作年限计算。\n\
         陪产假是男员工在配偶生育期间享有的假期，共15天。\n\
         报销时限：出差结束后30天内提交报销单。\n\
         这是一份内部文件。\n",
    )
    .unwrap();
    std::fs::write(
        docs.join("glossary.md"),
        "# Glossary\n\nZVPN is the company's virtual private network for remote access.\n\n\
         It is available around the clock.\n",
    )
    .unwrap();
    index::ingest_paths(&engine, "terms", &[docs], &Default::default(), &Silent).unwrap();
    let mut opts = DataOptions::new("terms");
    opts.heldout_share = 0.0;
    opts.general_share = 0.0;
    let set = data::build(&engine, &opts, &Silent).unwrap();
    let mut questions: Vec<String> = set.train.iter().map(question_of).collect();
    questions.sort();
    let en: Vec<&Record> = set
        .train
        .iter()
        .filter(|r| r.input.contains("What is ZVPN?"))
        .collect();
    assert_eq!(en.len(), 1, "{questions:?}");
    assert!(
        en[0]
            .output
            .starts_with("ZVPN is the company's virtual private network")
            && en[0].output.ends_with("]."),
        "{}",
        en[0].output
    );
    for q in ["年休假是什么？", "陪产假是什么？", "报销时限是什么？"] {
        assert!(questions.iter().any(|x| x == q), "{q} not in {questions:?}");
    }
    let r = set
        .train
        .iter()
        .find(|r| question_of(r) == "陪产假是什么？")
        .unwrap();
    let (n, body) = cited(&r.output);
    assert_eq!(body, "陪产假是男员工在配偶生育期间享有的假期，共15天");
    assert!(source_text(&r.input, n).contains(&body));
    assert_eq!(set.stats.candidates.get("chunk"), Some(&4), "{}", set.stats);
}

#[test]
fn a_small_share_still_holds_out_a_group_and_a_single_group_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let (engine, _) = wiki(tmp.path());
    let admin = tmp.path().join("admin.jsonl");
    // Admin records only (no generated questions): `groups` questions, each asked with
    // three different replies, so each question is one group of three.
    let write = |groups: usize| {
        let lines: Vec<String> = (0..groups * 3)
            .map(|i| {
                serde_json::json!({"instruction": format!("第{}条制度是什么？", i / 3),
                                   "output": format!("第{}条制度的说明，版本{}。", i / 3, i % 3)})
                .to_string()
            })
            .collect();
        std::fs::write(&admin, lines.join("\n")).unwrap();
    };
    let mut opts = DataOptions::new("wiki");
    opts.jsonl = vec![admin.clone()];
    opts.limit = Some(0);
    opts.general_share = 0.0;
    opts.heldout_share = 0.1;

    // 10 % of nine examples rounds to one, less than a group: one group goes all the same.
    write(3);
    let set = data::build(&engine, &opts, &Silent).unwrap();
    let s = &set.stats;
    assert_eq!((set.train.len(), set.heldout.len()), (6, 3), "{s}");
    assert_eq!((s.groups, s.heldout_groups), (3, 1), "{s}");
    let held_q: HashSet<&str> = set.heldout.iter().map(|r| r.instruction.as_str()).collect();
    assert_eq!(held_q.len(), 1, "one whole group: {held_q:?}");
    assert!(
        set.train
            .iter()
            .all(|r| !held_q.contains(r.instruction.as_str()))
    );
    let printed = s.to_string();
    assert!(
        printed.contains("train:      6 (admin 6), 2 of 3 groups"),
        "{printed}"
    );
    assert!(
        printed.contains("held out:   3 (admin 3), 1 of 3 groups"),
        "{printed}"
    );
    assert!(
        printed.contains("warning:    held out 3 of 9 domain examples (33 %, asked 10 %)"),
        "{printed}"
    );

    // One group: nothing can be held out; said in a warning, not an error.
    write(1);
    let set = data::build(&engine, &opts, &Silent).unwrap();
    assert_eq!((set.train.len(), set.heldout.len()), (3, 0));
    let printed = set.stats.to_string();
    assert!(
        printed.contains("held out:   0 (none), 0 of 1 groups"),
        "{printed}"
    );
    assert!(
        printed.contains("warning:    nothing held out: the 3 domain example(s) form 1 group(s)"),
        "{printed}"
    );

    // No held-out share asked: nothing held out and nothing to warn about.
    write(3);
    opts.heldout_share = 0.0;
    let set = data::build(&engine, &opts, &Silent).unwrap();
    assert!(
        set.heldout.is_empty() && set.stats.warnings.is_empty(),
        "{}",
        set.stats
    );
}
