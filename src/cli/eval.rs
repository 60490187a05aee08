//! `zhiku eval retrieval` and `zhiku eval answers`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use zhiku_core::config::Fusion;
use zhiku_core::engine::Engine;
use zhiku_core::eval;
use zhiku_llm::{finetune, generate};

use super::ask::load_generator;
use super::model::candle_model;

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Passage hit@k, answer recall@k, MRR@10 and latency of retrieval.
    Retrieval {
        #[arg(long, value_name = "FILE.json")]
        qa: PathBuf,
        #[arg(long)]
        kb: Vec<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Override the fusion method (rrf or weighted) for this run.
        #[arg(long)]
        fusion: Option<String>,
        /// Override the dense weight for this run.
        #[arg(long)]
        dense_weight: Option<f32>,
    },
    /// Answer quality: CMRC 2018 exact match and F1, citation precision, latency.
    Answers {
        #[arg(long, value_name = "FILE.json")]
        qa: PathBuf,
        #[arg(long)]
        kb: Vec<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Ask only the first N questions.
        #[arg(long)]
        limit: Option<usize>,
        /// Only the questions of this held-out file (`zhiku finetune data` output).
        #[arg(long, value_name = "FILE.jsonl")]
        heldout: Option<PathBuf>,
        /// Compare the configured candle model without and with this LoRA adapter, side by
        /// side.
        #[arg(long, value_name = "DIR")]
        adapter: Option<PathBuf>,
        /// With --adapter: perplexity of both on this general text (.txt) or records
        /// (.jsonl), to show forgetting.
        #[arg(long, value_name = "FILE", requires = "adapter")]
        general: Option<PathBuf>,
        /// Write every cited sentence with its passages and the citation check's verdict
        /// (JSONL): the raw material of a labelled sample.
        #[arg(long, value_name = "FILE.jsonl")]
        claims_out: Option<PathBuf>,
        /// Also measure the citation check against this labelled sample (JSONL records of
        /// `sentence`, `passages`, `supported`), e.g. bench/claims/cmrc-trial-labelled.jsonl.
        #[arg(long, value_name = "FILE.jsonl")]
        labelled: Option<PathBuf>,
    },
}

pub fn run(engine: &Engine, what: EvalCommand) -> anyhow::Result<ExitCode> {
    match what {
        EvalCommand::Retrieval {
            qa,
            kb,
            json,
            fusion,
            dense_weight,
        } => retrieval(engine, qa, kb, json, fusion, dense_weight),
        EvalCommand::Answers {
            qa,
            kb,
            json,
            limit,
            heldout,
            adapter,
            general,
            claims_out,
            labelled,
        } => {
            let claims = ClaimFiles {
                out: claims_out,
                labelled,
            };
            answers(
                engine, qa, kb, json, limit, heldout, adapter, general, claims,
            )
        }
    }
}

fn retrieval(
    engine: &Engine,
    qa: PathBuf,
    kb: Vec<String>,
    json: bool,
    fusion: Option<String>,
    dense_weight: Option<f32>,
) -> anyhow::Result<ExitCode> {
    let kbs = super::kb_ids(engine, &kb)?;
    let set = eval::QaSet::load(&qa).with_context(|| format!("QA file {}", qa.display()))?;
    let mut rc = engine.config.retrieve.clone();
    match fusion.as_deref() {
        None => {}
        Some("rrf") => rc.fusion = Fusion::Rrf,
        Some("weighted") => rc.fusion = Fusion::Weighted,
        Some(other) => bail!("--fusion must be rrf or weighted, not `{other}`"),
    }
    if let Some(w) = dense_weight {
        if !(0.0..=1.0).contains(&w) {
            bail!("--dense-weight must be between 0 and 1");
        }
        rc.dense_weight = w;
    }
    let r = eval::eval_retrieval(engine, &set, &kbs, &rc)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "queries {}  fusion {:?} (dense weight {}, rrf k {})",
            r.queries, rc.fusion, rc.dense_weight, rc.rrf_k
        );
        println!(
            "| hit@1 | hit@3 | hit@5 | hit@10 | recall@1 | recall@3 | recall@5 | recall@10 | MRR@10 | p50 ms | p95 ms |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        println!(
            "| {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
            r.hit1 * 100.0,
            r.hit3 * 100.0,
            r.hit5 * 100.0,
            r.hit10 * 100.0,
            r.recall1 * 100.0,
            r.recall3 * 100.0,
            r.recall5 * 100.0,
            r.recall10 * 100.0,
            r.mrr10 * 100.0,
            r.latency_ms_p50,
            r.latency_ms_p95
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--claims-out` and `--labelled` of `zhiku eval answers`.
struct ClaimFiles {
    out: Option<PathBuf>,
    labelled: Option<PathBuf>,
}

#[allow(clippy::too_many_arguments)] // one per flag of `zhiku eval answers`
fn answers(
    engine: &Engine,
    qa: PathBuf,
    kb: Vec<String>,
    json: bool,
    limit: Option<usize>,
    heldout: Option<PathBuf>,
    adapter: Option<PathBuf>,
    general: Option<PathBuf>,
    claims: ClaimFiles,
) -> anyhow::Result<ExitCode> {
    let kbs = super::kb_ids(engine, &kb)?;
    let mut set = eval::QaSet::load(&qa).with_context(|| format!("QA file {}", qa.display()))?;
    if let Some(h) = &heldout {
        // A held-out record's input ends with its question (the answer prompt).
        let records = finetune::read_jsonl(h)?;
        set.questions.retain(|q| {
            let q = q.question.trim();
            records.iter().any(|r| r.input.trim_end().ends_with(q))
        });
        if set.questions.is_empty() {
            bail!(
                "no question of {} is in {} (was it made from this QA file?)",
                qa.display(),
                h.display()
            );
        }
    }
    if let Some(adapter) = adapter {
        return compare_adapter(engine, &set, &kbs, limit, &adapter, general, json);
    }
    let generator = load_generator(engine, &kb)?;
    let mut samples = Vec::new();
    let out = claims.out.is_some().then_some(&mut samples);
    let mut r = eval::eval_answers(engine, generator.as_deref(), &set, &kbs, limit, out)?;
    if let Some(path) = &claims.out {
        let mut text = String::new();
        for s in &samples {
            text.push_str(&serde_json::to_string(s)?);
            text.push('\n');
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &claims.labelled {
        let min = engine.config.rag.claim_min_coverage;
        r.claim_check = Some(
            eval::eval_claim_check(&engine.keyword, path, min)
                .with_context(|| format!("labelled sample {}", path.display()))?,
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "questions {}  mode {}{}",
            r.questions,
            r.mode,
            r.model
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        );
        println!(
            "| EM | F1 | contains gold | not found | citation precision | citations/answer | p50 ms | p95 ms | TTFT p50 ms | tokens/s |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
        println!(
            "| {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {} | {} |",
            r.exact_match * 100.0,
            r.f1 * 100.0,
            r.answer_contains_gold * 100.0,
            r.not_found * 100.0,
            r.citation_precision * 100.0,
            r.citations_per_answer,
            r.latency_ms_p50,
            r.latency_ms_p95,
            r.ttft_ms_p50
                .map(|v| format!("{v:.0}"))
                .unwrap_or_else(|| "–".into()),
            r.tokens_per_s
                .map(|v| format!("{v:.1}"))
                .unwrap_or_else(|| "–".into()),
        );
        println!(
            "citation check: {} cited sentences, {:.1} % unsupported; {:.1} % of answers hold a number no cited passage holds",
            r.cited_sentences,
            r.unsupported_rate * 100.0,
            r.answers_with_unsourced_numbers * 100.0
        );
        if let Some(c) = &r.claim_check {
            println!(
                "citation check on the labelled sample: {} sentences ({} labelled unsupported), {} flagged; precision {:.1} %, recall {:.1} %, agreement {:.1} %",
                c.sentences,
                c.labelled_unsupported,
                c.flagged,
                c.precision * 100.0,
                c.recall * 100.0,
                c.agreement * 100.0
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `zhiku eval answers --adapter`: the configured candle model without and with an
/// adapter on the same questions, and their perplexity on general text.
fn compare_adapter(
    engine: &Engine,
    set: &eval::QaSet,
    kbs: &[i64],
    limit: Option<usize>,
    adapter: &std::path::Path,
    general: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config = &engine.config;
    let model = config.generate.model.clone().context(
        "--adapter compares the candle model of generate.model without and with the adapter; \
         set generate.model",
    )?;
    let mut base_cfg = config.generate.clone();
    base_cfg.backend = zhiku_core::config::GenerateBackend::Candle;
    base_cfg.lora = None;
    base_cfg.lora_per_kb.clear();
    let mut tuned_cfg = base_cfg.clone();
    tuned_cfg.lora = Some(adapter.to_path_buf());
    let mut rows = Vec::new();
    for (name, cfg, lora) in [
        ("base", &base_cfg, None),
        ("adapter", &tuned_cfg, Some(adapter.to_path_buf())),
    ] {
        let g = generate::from_config(cfg, None)
            .with_context(|| format!("loading the {name} model"))?
            .context("no generator")?;
        let report = eval::eval_answers(engine, Some(g.as_ref()), set, kbs, limit, None)?;
        drop(g);
        let ppl = match &general {
            Some(path) => Some(finetune::perplexity::of_file(
                &candle_model(config, &model, lora)?,
                path,
                finetune::perplexity::RECORD_MAX_LEN,
            )?),
            None => None,
        };
        rows.push((name, report, ppl));
    }
    if json {
        let doc: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|(name, r, p)| {
                (
                    name.to_string(),
                    serde_json::json!({"answers": r, "general_perplexity": p}),
                )
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "questions {}  model {}  adapter {}",
        rows[0].1.questions,
        model.display(),
        adapter.display()
    );
    println!(
        "| model | EM | F1 | contains gold | not found | citation precision | p50 ms | general perplexity |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, r, p) in &rows {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {} |",
            r.exact_match * 100.0,
            r.f1 * 100.0,
            r.answer_contains_gold * 100.0,
            r.not_found * 100.0,
            r.citation_precision * 100.0,
            r.latency_ms_p50,
            p.map(|p| format!("{:.3}", p.perplexity))
                .unwrap_or_else(|| "–".into())
        );
    }
    Ok(ExitCode::SUCCESS)
}
