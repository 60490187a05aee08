//! The contract every [`Embedder`] implementation passes, plus test helpers.
//!
//! [`run_all`] takes the embedder loaded with default options and a `load(options)` function
//! that loads the same model with other options (prefixes, token limit). The checks are
//! model-agnostic apart from [`Expect`]; the semantic check is English, so any model that
//! claims English passes it.
//!
//! Run for candle (multilingual-e5-small, all-MiniLM-L6-v2) in `candle.rs` and for onnx
//! (all-MiniLM-L6-v2 int8) in `onnx.rs`. A missing model folder skips with the reason
//! printed, except under `CI`, where it fails (CI runs `scripts/fetch-models.sh --all`).

use std::path::{Path, PathBuf};

use super::{EmbedOptions, Embedder, Result};

/// Largest difference tolerated between two computations of the same embedding (batching,
/// padding, threads).
const TOL: f32 = 1e-4;

/// What the suite needs to know about the model under test.
pub(crate) struct Expect {
    pub dim: usize,
    /// The model's own token limit (special tokens included).
    pub max_tokens: usize,
    /// The model family has default prefixes (e5: "query: " / "passage: ").
    pub prefixed: bool,
}

pub(crate) type Load<'a> = &'a dyn Fn(&EmbedOptions) -> Result<Box<dyn Embedder>>;

/// Run every contract check.
pub(crate) fn run_all(m: &dyn Embedder, load: Load<'_>, expect: &Expect) {
    dimension_and_id(m, expect);
    unit_norm(m);
    empty_batch_and_empty_text(m);
    batch_equals_one_by_one(m);
    deterministic_across_threads(m);
    long_input_is_truncated(m, expect);
    count_tokens_monotone_with_special_tokens(m);
    english_question_finds_its_passage(m);
    options_prefixes_and_token_limit(m, load, expect);
}

/// `models/NAME` under `ZHIKU_MODELS_DIR` or the crate root when it holds `file`; else
/// `None` with the reason printed (a failure under `CI`).
pub(crate) fn model_dir(name: &str, file: &str) -> Option<PathBuf> {
    let dir = models_base().join(name);
    if dir.join(file).is_file() {
        return Some(dir);
    }
    missing(&dir.join(file))
}

/// The onnxruntime library for tests: `ORT_DYLIB_PATH`, else the one
/// `scripts/fetch-models.sh --all` writes; `None` (reason printed) when absent.
#[cfg(feature = "onnx")]
pub(crate) fn onnxruntime_lib() -> Option<PathBuf> {
    let path = std::env::var_os("ORT_DYLIB_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| models_base().join("onnxruntime/libonnxruntime.so.1.31.1"));
    if path.is_file() {
        Some(path)
    } else {
        missing(&path)
    }
}

fn models_base() -> PathBuf {
    std::env::var_os("ZHIKU_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("models"))
}

fn missing(path: &Path) -> Option<PathBuf> {
    let all = if path.to_string_lossy().contains("multilingual-e5-small") {
        ""
    } else {
        " --all"
    };
    let reason = format!(
        "{} not found (run scripts/fetch-models.sh{all}, or set ZHIKU_MODELS_DIR)",
        path.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{reason}: CI must fetch the models");
    }
    eprintln!("skipped: {reason}");
    None
}

pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "vector lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn assert_unit(v: &[f32], what: &str) {
    let n = norm(v);
    assert!((n - 1.0).abs() < 1e-4, "{what}: norm {n}, want 1");
    assert!(v.iter().all(|x| x.is_finite()), "{what}: non-finite value");
}

fn one(m: &dyn Embedder, text: &str) -> Vec<f32> {
    let mut v = m.embed_passages(&[text]).expect("embed one passage");
    assert_eq!(v.len(), 1);
    v.pop().unwrap()
}

const TEXTS: [&str; 6] = [
    "Travel expenses are reimbursed within ten working days after the invoice is submitted.",
    "ok",
    "差旅费报销需要发票和行程单。",
    "The quarterly report shows revenue grew by 12 percent year over year, driven by strong \
     demand in the enterprise segment, while costs stayed flat and margins improved.",
    "Reset your password from the login page.",
    "A",
];

fn dimension_and_id(m: &dyn Embedder, expect: &Expect) {
    assert_eq!(m.dim(), expect.dim, "dim()");
    assert!(!m.model_id().is_empty(), "model_id() must name the model");
    assert!(
        m.model_id().contains(&expect.dim.to_string()),
        "model_id() {} should carry the dimension",
        m.model_id()
    );
    assert_eq!(m.max_tokens(), expect.max_tokens, "max_tokens()");
    assert_eq!(m.embed_query("hello").unwrap().len(), expect.dim);
    for v in m.embed_passages(&TEXTS).unwrap() {
        assert_eq!(v.len(), expect.dim);
    }
}

fn unit_norm(m: &dyn Embedder) {
    for (t, v) in TEXTS.iter().zip(m.embed_passages(&TEXTS).unwrap()) {
        assert_unit(&v, t);
    }
    assert_unit(
        &m.embed_query("How are travel costs paid back?").unwrap(),
        "query",
    );
}

fn empty_batch_and_empty_text(m: &dyn Embedder) {
    assert!(
        m.embed_passages(&[]).unwrap().is_empty(),
        "no texts, no vectors"
    );
    let v = m
        .embed_passages(&["", "text"])
        .expect("an empty passage is not an error");
    assert_eq!(v.len(), 2);
    assert_unit(&v[0], "empty passage");
    assert_unit(&m.embed_query("").expect("empty query"), "empty query");
}

fn batch_equals_one_by_one(m: &dyn Embedder) {
    // More texts than a batch holds, so several batches of mixed lengths run.
    let texts: Vec<String> = (0..40)
        .map(|i| format!("{} #{i}", TEXTS[i % TEXTS.len()]))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batch = m.embed_passages(&refs).unwrap();
    assert_eq!(batch.len(), refs.len());
    for (i, t) in refs.iter().enumerate().step_by(3) {
        let d = max_diff(&batch[i], &one(m, t));
        assert!(d < TOL, "{t}: batch vs alone max diff {d}");
    }
    // Order is kept: the same texts reversed give the same vectors reversed.
    let rev: Vec<&str> = refs.iter().rev().copied().collect();
    for (a, b) in m.embed_passages(&rev).unwrap().iter().rev().zip(&batch) {
        assert!(max_diff(a, b) < TOL, "order not preserved");
    }
}

fn deterministic_across_threads(m: &dyn Embedder) {
    let reference = m.embed_passages(&TEXTS).unwrap();
    let q = m.embed_query(TEXTS[0]).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    (
                        m.embed_passages(&TEXTS).unwrap(),
                        m.embed_query(TEXTS[0]).unwrap(),
                    )
                })
            })
            .collect();
        for h in handles {
            let (p, q2) = h.join().expect("embedding thread panicked");
            for (a, b) in p.iter().zip(&reference) {
                assert!(max_diff(a, b) < TOL, "concurrent result differs");
            }
            assert!(max_diff(&q, &q2) < TOL, "concurrent query differs");
        }
    });
}

fn long_input_is_truncated(m: &dyn Embedder, expect: &Expect) {
    let long = "The travel policy covers flights, hotels and meals for business trips. "
        .repeat(4 * expect.max_tokens / 12 + 1);
    let n = m.count_tokens(&long);
    assert!(
        n > m.max_tokens(),
        "count_tokens counts past the limit ({n} vs {})",
        m.max_tokens()
    );
    let a = one(m, &long);
    assert_unit(&a, "long passage");
    // Past the limit nothing more is seen.
    let b = one(
        m,
        &format!("{long} Pizza recipes with pineapple and anchovies."),
    );
    assert!(
        max_diff(&a, &b) < TOL,
        "text past max_tokens changed the vector"
    );
    let q = m
        .embed_query(&long)
        .expect("a long query is truncated, not an error");
    assert_unit(&q, "long query");
}

fn count_tokens_monotone_with_special_tokens(m: &dyn Embedder) {
    let empty = m.count_tokens("");
    assert!(
        empty >= 2,
        "count_tokens(\"\") = {empty}: special tokens (and prefix) are counted"
    );
    let mut prev = empty;
    let mut text = String::new();
    for w in ["Annual", "leave", "is", "fifteen", "days", "per", "year."] {
        text.push_str(w);
        text.push(' ');
        let n = m.count_tokens(&text);
        assert!(
            n > prev,
            "count_tokens not increasing at {text:?}: {n} <= {prev}"
        );
        prev = n;
    }
}

fn english_question_finds_its_passage(m: &dyn Embedder) {
    let q = m
        .embed_query("How do I get reimbursed for a business trip?")
        .unwrap();
    let passages = [
        "The cafeteria opens at eight in the morning and closes at two in the afternoon.",
        "After a business trip, submit the expense report with your receipts within ten \
         working days to be reimbursed.",
        "The server room must be kept between eighteen and twenty-seven degrees Celsius.",
        "New employees get five days of paid annual leave in their first year.",
    ];
    let p = m.embed_passages(&passages).unwrap();
    let scores: Vec<f32> = p.iter().map(|v| dot(&q, v)).collect();
    let best = (0..scores.len())
        .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
        .unwrap();
    assert_eq!(best, 1, "scores {scores:?}");
}

fn options_prefixes_and_token_limit(m: &dyn Embedder, load: Load<'_>, expect: &Expect) {
    let other = load(&EmbedOptions {
        query_prefix: Some("Reset ".into()),
        passage_prefix: Some(String::new()),
        max_tokens: Some(16),
        ..Default::default()
    })
    .expect("load with options");
    assert_eq!(
        other.model_id(),
        m.model_id(),
        "options do not change the model id"
    );
    assert_eq!(other.max_tokens(), 16);

    // count_tokens counts the passage prefix: the default one, or none when configured so.
    let t = "Annual leave is fifteen days.";
    if expect.prefixed {
        assert!(
            m.count_tokens(t) > other.count_tokens(t),
            "count_tokens must include the default passage prefix"
        );
    } else {
        assert_eq!(m.count_tokens(t), other.count_tokens(t));
    }

    // The configured query prefix is used: "Reset " + query == the whole text as a passage.
    let d = max_diff(
        &other.embed_query("your password.").unwrap(),
        &one(&*other, "Reset your password."),
    );
    assert!(d < TOL, "query prefix not applied: max diff {d}");
    // With the model's own prefixes, query and passage differ exactly when it has them.
    let short = "Reset your password.";
    let d = max_diff(&m.embed_query(short).unwrap(), &one(m, short));
    assert_eq!(
        d > TOL,
        expect.prefixed,
        "query vs passage, default prefixes: {d}"
    );

    // The token limit option truncates.
    let long = "Travel expenses are reimbursed within ten working days after the invoice \
                is submitted by the employee to the finance department.";
    assert!(other.count_tokens(long) > 20);
    let a = one(&*other, long);
    assert_unit(&a, "truncated to 16 tokens");
    let b = one(&*other, &format!("{long} Pizza recipes with pineapple."));
    assert!(max_diff(&a, &b) < TOL, "max_tokens = 16 not applied");
    assert!(
        max_diff(&a, &one(m, long)) > TOL,
        "max_tokens = 16 had no effect"
    );
}
