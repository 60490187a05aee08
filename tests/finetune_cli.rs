//! Fine-tuning through the real binary, the way an admin runs it: train a LoRA adapter on
//! the SmolLM2 demo model, compare base and adapter with `eval answers --adapter`, merge the
//! adapter into the GGUF, quantise it, and check that every step agrees on the perplexity of
//! the held-out replies.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};

fn smollm2() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.is_file() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: CI must run scripts/fetch-models.sh",
        p.display()
    );
    eprintln!("skipped: run scripts/fetch-models.sh");
    None
}

fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The number after "perplexity " in `zhiku model perplexity`'s report.
fn perplexity(report: &str) -> f64 {
    report
        .split("perplexity ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no perplexity in {report}"))
}

fn records(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(q, a)| json!({"instruction": q, "input": "", "output": a}).to_string() + "\n")
        .collect()
}

#[test]
fn train_compare_merge_and_quantize_agree() {
    let (Some(model), Some(embedder)) = (smollm2(), common::e5_model()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let p = |name: &str| dir.path().join(name);
    let s = |path: &Path| path.to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_zhiku"))
            .args(args)
            .env("ZHIKU_DATA_DIR", &data)
            .env("ZHIKU_EMBED__MODEL", &embedder)
            .env("ZHIKU_GENERATE__MODEL", format!("{:?}", s(&model)))
            .env("ZHIKU_GENERATE__SAMPLING__MAX_TOKENS", "24")
            .env_remove("ZHIKU_CONFIG")
            .current_dir(dir.path())
            .output()
            .expect("run zhiku")
    };

    // A small policy handbook as instruction records: six to train on, two held out that
    // follow the same pattern.
    let train = [
        (
            "What is the annual leave for new staff?",
            "New staff get 5 days of annual leave.",
        ),
        (
            "How do I reset my VPN password?",
            "Open the IT portal and choose Reset VPN password.",
        ),
        (
            "Who approves travel expenses?",
            "Your department head approves travel expenses.",
        ),
        (
            "What is the hotel limit in Beijing?",
            "The hotel limit in Beijing is 500 yuan per night.",
        ),
        (
            "When are expense claims due?",
            "Expense claims are due within 30 days of the trip.",
        ),
        (
            "How many sick days need a note?",
            "More than 2 sick days need a doctor's note.",
        ),
    ];
    let heldout = [
        (
            "Where do I report a lost laptop?",
            "Report a lost laptop to the IT service desk.",
        ),
        (
            "What is the meal allowance?",
            "The meal allowance is 100 yuan per day.",
        ),
    ];
    std::fs::write(p("policy.jsonl"), records(&train)).unwrap();
    std::fs::write(p("policy.heldout.jsonl"), records(&heldout)).unwrap();
    // One question with its paragraph (SQuAD layout) for the answer comparison.
    let context = "The meal allowance on business trips is 100 yuan per day.";
    let qa = json!({"version": "test", "data": [{"paragraphs": [{"id": "p1", "context": context,
        "qas": [{"id": "q1", "question": "How much is the meal allowance per day?",
                 "answers": [{"text": "100 yuan", "answer_start": 42}]}]}]}]});
    std::fs::write(p("qa.json"), qa.to_string()).unwrap();
    ok(run(&[
        "ingest",
        "--kb",
        "policy",
        "--qa-contexts",
        &s(&p("qa.json")),
    ]));

    // Train: three steps of two records, evaluated on the held-out file beside the data.
    let adapter = p("adapter");
    let report = ok(run(&[
        "finetune",
        "train",
        "--base",
        &s(&model),
        "--data",
        &s(&p("policy.jsonl")),
        "--out",
        &s(&adapter),
        "--max-len",
        "256",
        "--batch-size",
        "2",
        "--epochs",
        "1",
        "--lr",
        "1e-3",
    ]));
    assert!(report.contains("training completed"), "{report}");
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "trainer_state.json",
    ] {
        assert!(adapter.join(f).is_file(), "{f} missing: {report}");
    }

    // Base and adapter side by side on the same question, with the perplexity of the
    // held-out replies (as the "general" file): the adapter learned the pattern.
    let compare: Value = serde_json::from_str(&ok(run(&[
        "eval",
        "answers",
        "--qa",
        &s(&p("qa.json")),
        "--kb",
        "policy",
        "--limit",
        "1",
        "--adapter",
        &s(&adapter),
        "--general",
        &s(&p("policy.heldout.jsonl")),
        "--json",
    ])))
    .unwrap();
    let ppl = |who: &str| {
        compare[who]["general_perplexity"]["perplexity"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(compare["base"]["answers"]["questions"], 1, "{compare}");
    assert_eq!(compare["adapter"]["answers"]["questions"], 1, "{compare}");
    let (base, tuned) = (ppl("base"), ppl("adapter"));
    assert!(tuned < base * 0.8, "base {base}, adapter {tuned}");

    // Merging for good gives the adapter's model; q8_0 keeps it within 2 %.
    let merged = p("merged.gguf");
    ok(run(&[
        "model",
        "merge",
        "--base",
        &s(&model),
        "--adapter",
        &s(&adapter),
        "--out",
        &s(&merged),
    ]));
    let held = s(&p("policy.heldout.jsonl"));
    let merged_ppl = perplexity(&ok(run(&[
        "model",
        "perplexity",
        "--model",
        &s(&merged),
        "--data",
        &held,
        "--max-len",
        "256",
    ])));
    assert!(
        (merged_ppl - tuned).abs() < 1e-3 * tuned,
        "merged {merged_ppl}, adapter {tuned}"
    );
    // The trainer's own figure for the adapter it kept counts the same tokens (replies
    // and their end-of-turn tokens, cut at the same --max-len): the same number.
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(adapter.join("trainer_state.json")).unwrap())
            .unwrap();
    let trainer_ppl = state["best_eval"]["perplexity"].as_f64().unwrap();
    assert!(
        (merged_ppl - trainer_ppl).abs() < 1e-3 * trainer_ppl,
        "model perplexity {merged_ppl}, trainer's eval {trainer_ppl}"
    );
    let q8 = p("q8.gguf");
    ok(run(&[
        "model",
        "quantize",
        "--in",
        &s(&merged),
        "--out",
        &s(&q8),
        "--type",
        "q8_0",
    ]));
    assert!(std::fs::metadata(&q8).unwrap().len() * 3 < std::fs::metadata(&merged).unwrap().len());
    let q8_ppl = perplexity(&ok(run(&[
        "model",
        "perplexity",
        "--model",
        &s(&q8),
        "--data",
        &held,
    ])));
    assert!(
        (q8_ppl - merged_ppl).abs() < 0.02 * merged_ppl,
        "q8 {q8_ppl}, merged {merged_ppl}"
    );
}
