//! The LoRA training loop: `zhiku finetune train`.
//!
//! - **Data order and dropout are functions of the seed**: epoch `e` visits the examples
//!   in a permutation drawn from `(seed, e)`; the dropout masks of micro-batch `m` of step
//!   `s` come from `(seed, s, m)` and the decoder layer. A run resumed from a checkpoint therefore continues on
//!   exactly the loss curve of an uninterrupted run.
//! - **Memory**: each micro-batch goes through `finetune::step`, which keeps one layer's
//!   graph at a time and computes logits only where the loss counts.
//! - **Steps**: a step is `grad_accum` micro-batches of `batch_size` examples (right-padded
//!   to the longest); the loss is the mean negative log-likelihood over the reply tokens
//!   of the whole step (token-weighted, as if it were one big batch). Gradients are
//!   clipped to a global L2 norm of `clip`, then AdamW updates the LoRA weights with the
//!   learning rate of the cosine schedule with linear warmup.
//! - **Evaluation**: loss and perplexity on the held-out examples before training, after
//!   every epoch and every `eval_every` steps. Each improvement writes the adapter to the
//!   output folder (so it always holds the best one); `patience` evaluations without
//!   improvement stop the run early.
//! - **Checkpoints** every `save_every` steps: `checkpoint.json` (step, logs, early-stopping
//!   state and the run's identity: base, data, hyper-parameters) and
//!   `checkpoint-<step>.safetensors` (LoRA weights and AdamW moments), each written to a
//!   temporary file and renamed; the JSON is renamed last, so it always names a complete
//!   weights file. `resume` continues from it and refuses a checkpoint of another run.
//! - **Divergence**: a loss or gradient that is NaN or infinite stops the run with an error
//!   naming the step; the last checkpoint stays as it was.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::adapter;
use super::encode::{Batch, Encoder, Example};
use super::model::{BaseModel, LoraConfig, LoraWeights, compute, mix};
use super::optim::{AdamW, global_norm, lr_at};
use super::step;
use super::{FinetuneError, Result};

/// Hyper-parameters and bookkeeping of a training run (the CLI's flags).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Passes over the training data. Default 3.
    pub epochs: usize,
    /// Peak learning rate. Default 2e-4.
    pub lr: f64,
    /// Rows per micro-batch: examples, or with `pack` rows of packed examples. Default 4.
    pub batch_size: usize,
    /// Micro-batches per optimizer step. Default 1.
    pub grad_accum: usize,
    /// Longest example in tokens (longer ones are cut). Default 1024.
    pub max_len: usize,
    /// Pack examples into rows of up to `max_len` tokens ([`pack`]). Default off.
    #[serde(default)]
    pub pack: bool,
    /// r 16, alpha 32, dropout 0.05, q/k/v/o and gate/up/down by default.
    pub lora: LoraConfig,
    /// Warmup steps; default 3% of the optimizer steps (at least 1).
    pub warmup: Option<usize>,
    /// Decoupled weight decay. Default 0.01 (PyTorch AdamW's).
    pub weight_decay: f64,
    /// Global gradient-norm limit (0 = no clipping). Default 1.0.
    pub clip: f64,
    /// Also evaluate every N steps (0 = only after each epoch). Default 0.
    pub eval_every: usize,
    /// Checkpoint every N steps (0 = never). Default 50.
    pub save_every: usize,
    /// Stop after this many evaluations without improvement (0 = never). Default 3.
    pub patience: usize,
    /// Seed of the LoRA initialisation, the data order and dropout. Default 42.
    pub seed: u64,
    /// End the run after this many optimizer steps with a checkpoint (`--resume`
    /// continues it), e.g. to train in slices on a shared machine.
    pub stop_after: Option<usize>,
    /// Draw a progress bar on a terminal.
    #[serde(skip)]
    pub progress: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 3,
            lr: 2e-4,
            batch_size: 4,
            grad_accum: 1,
            max_len: 1024,
            pack: false,
            lora: LoraConfig::default(),
            warmup: None,
            weight_decay: 0.01,
            clip: 1.0,
            eval_every: 0,
            save_every: 50,
            patience: 3,
            seed: 42,
            stop_after: None,
            progress: false,
        }
    }
}

/// One optimizer step in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    pub step: usize,
    /// Fractional epoch at the end of the step.
    pub epoch: f64,
    /// Mean loss over the step's reply tokens.
    pub loss: f64,
    pub lr: f64,
    /// Before clipping.
    pub grad_norm: f64,
    /// Real tokens in the step's batches.
    pub tokens: usize,
}

/// One evaluation on the held-out examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalLog {
    pub step: usize,
    pub epoch: f64,
    pub loss: f64,
    pub perplexity: f64,
}

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// All epochs ran.
    Completed,
    /// `patience` evaluations without improvement.
    EarlyStopped,
    /// `stop_after` steps reached; a checkpoint waits for `--resume`.
    Paused,
}

/// What a run did (also `trainer_state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    pub ending: Ending,
    pub steps: usize,
    pub total_steps: usize,
    pub epochs: f64,
    /// Real tokens processed (over all sessions of a resumed run).
    pub tokens: usize,
    pub secs: f64,
    pub tokens_per_s: f64,
    pub trainable_parameters: usize,
    pub final_train_loss: Option<f64>,
    pub final_eval: Option<EvalLog>,
    /// The evaluation whose adapter is in the output folder.
    pub best_eval: Option<EvalLog>,
    pub log: Vec<StepLog>,
    pub evals: Vec<EvalLog>,
}

impl std::fmt::Display for TrainSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ending = match self.ending {
            Ending::Completed => "completed",
            Ending::EarlyStopped => "stopped early (no eval improvement)",
            Ending::Paused => "paused (continue with --resume)",
        };
        writeln!(
            f,
            "training {ending}: {}/{} steps, {:.2} epochs, {} tokens in {:.1} s ({:.1} tokens/s), \
             {} trainable parameters",
            self.steps,
            self.total_steps,
            self.epochs,
            self.tokens,
            self.secs,
            self.tokens_per_s,
            self.trainable_parameters
        )?;
        if let Some(l) = self.final_train_loss {
            writeln!(
                f,
                "final train loss {l:.4} (perplexity {:.2})",
                l.min(50.0).exp()
            )?;
        }
        if let Some(e) = &self.final_eval {
            writeln!(
                f,
                "final eval loss {:.4} (perplexity {:.2})",
                e.loss, e.perplexity
            )?;
        }
        if let (Some(b), Some(first)) = (&self.best_eval, self.evals.first()) {
            writeln!(
                f,
                "best eval loss {:.4} (perplexity {:.2}) at step {} (epoch {:.2}); before \
                 training {:.4} (perplexity {:.2})",
                b.loss, b.perplexity, b.step, b.epoch, first.loss, first.perplexity
            )?;
        }
        Ok(())
    }
}

/// Everything that must match for a checkpoint to continue a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunIdentity {
    base: String,
    train_data: String,
    eval_data: String,
    epochs: usize,
    lr: f64,
    batch_size: usize,
    grad_accum: usize,
    max_len: usize,
    #[serde(default)]
    pack: bool,
    lora: LoraConfig,
    warmup: usize,
    weight_decay: f64,
    clip: f64,
    seed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checkpoint {
    identity: RunIdentity,
    step: usize,
    weights_file: String,
    best: Option<EvalLog>,
    bad_evals: usize,
    tokens: usize,
    secs: f64,
    log: Vec<StepLog>,
    evals: Vec<EvalLog>,
}

const CHECKPOINT: &str = "checkpoint.json";
const LOG: &str = "training_log.jsonl";

/// Fingerprint of tokenised examples (covers the data file, tokenizer, template, max_len).
fn fingerprint(examples: &[Example]) -> String {
    let mut h = blake3::Hasher::new();
    for e in examples {
        h.update(&(e.ids.len() as u64).to_le_bytes());
        for (id, t) in e.ids.iter().zip(&e.targets) {
            h.update(&id.to_le_bytes());
            h.update(&[u8::from(*t)]);
        }
    }
    h.finalize().to_hex().to_string()
}

/// Rows of example indices, each holding at most `capacity` tokens: best-fit decreasing
/// (the longest examples first, each into the fullest row it still fits). Deterministic.
pub fn pack(examples: &[Example], capacity: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(examples[i].ids.len()), i));
    let mut rows: Vec<Vec<usize>> = Vec::new();
    // Free space → rows with that much room left.
    let mut room: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for i in order {
        let len = examples[i].ids.len();
        let fit = room.range(len..).next().map(|(&free, _)| free);
        let (row, free) = match fit {
            Some(free) => {
                let list = room.get_mut(&free).expect("key just found");
                let row = list.pop().expect("no empty lists are kept");
                if list.is_empty() {
                    room.remove(&free);
                }
                (row, free)
            }
            None => {
                rows.push(Vec::new());
                (rows.len() - 1, capacity.max(len))
            }
        };
        rows[row].push(i);
        let left = free - len;
        if left > 0 {
            room.entry(left).or_default().push(row);
        }
    }
    rows
}

/// The example order of `epoch`.
fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(mix(seed, epoch as u64, 0x0da7a)));
    order
}

/// Mean loss over the reply tokens of `examples` (no dropout).
pub fn evaluate(
    base: &BaseModel,
    lora: Option<&LoraWeights>,
    examples: &[Example],
    batch_size: usize,
) -> Result<f64> {
    let mut nll = 0f64;
    let mut count = 0usize;
    for chunk in examples.chunks(batch_size.max(1)) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let batch = Batch::new(&refs, &base.device).map_err(compute("building an eval batch"))?;
        let s = step::nll(base, lora, &batch).map_err(compute("eval pass"))?;
        nll += s;
        count += batch.target_tokens;
    }
    Ok(nll / count.max(1) as f64)
}

struct Run<'a> {
    base: &'a BaseModel,
    lora: LoraWeights,
    opt: AdamW,
    opts: &'a TrainOptions,
    out: &'a Path,
    identity: RunIdentity,
    step: usize,
    best: Option<EvalLog>,
    bad_evals: usize,
    tokens: usize,
    secs_before: f64,
    log: Vec<StepLog>,
    evals: Vec<EvalLog>,
    last_checkpoint: Option<usize>,
}

impl Run<'_> {
    fn append_log(&self, line: serde_json::Value) -> Result<()> {
        let path = self.out.join(LOG);
        let werr = |source| FinetuneError::Write {
            path: path.clone(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(werr)?;
        writeln!(f, "{line}").map_err(werr)
    }

    /// Rewrite the log file from the in-memory logs (after a resume).
    fn rewrite_log(&self) -> Result<()> {
        let mut lines: Vec<(usize, u8, serde_json::Value)> = Vec::new();
        for s in &self.log {
            lines.push((s.step, 0, serde_json::json!({"kind": "train", "entry": s})));
        }
        for e in &self.evals {
            lines.push((e.step, 1, serde_json::json!({"kind": "eval", "entry": e})));
        }
        lines.sort_by_key(|(s, k, _)| (*s, *k));
        let text: String = lines.iter().map(|(_, _, l)| format!("{l}\n")).collect();
        adapter::write_atomic(&self.out.join(LOG), text.as_bytes())
    }

    fn save_checkpoint(&mut self, secs: f64) -> Result<()> {
        let _span = tracing::info_span!("finetune_checkpoint", step = self.step).entered();
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (i, (name, var)) in self.lora.named_vars().into_iter().enumerate() {
            tensors.insert(format!("{name}.adam_m"), self.opt.m[i].clone());
            tensors.insert(format!("{name}.adam_v"), self.opt.v[i].clone());
            tensors.insert(name, var.as_tensor().clone());
        }
        let weights_file = format!("checkpoint-{}.safetensors", self.step);
        adapter::save_tensors(&tensors, &self.out.join(&weights_file))?;
        let ck = Checkpoint {
            identity: self.identity.clone(),
            step: self.step,
            weights_file: weights_file.clone(),
            best: self.best.clone(),
            bad_evals: self.bad_evals,
            tokens: self.tokens,
            secs,
            log: self.log.clone(),
            evals: self.evals.clone(),
        };
        let text = serde_json::to_string(&ck).expect("checkpoint serialises");
        adapter::write_atomic(&self.out.join(CHECKPOINT), text.as_bytes())?;
        // Older weights files are no longer named by any checkpoint.
        if let Ok(dir) = std::fs::read_dir(self.out) {
            for e in dir.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with("checkpoint-") && n.ends_with(".safetensors") && n != weights_file
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        self.last_checkpoint = Some(self.step);
        Ok(())
    }

    fn resume(&mut self) -> Result<()> {
        let path = self.out.join(CHECKPOINT);
        let text = std::fs::read_to_string(&path).map_err(|source| FinetuneError::Read {
            path: path.clone(),
            source,
        })?;
        let ck: Checkpoint = serde_json::from_str(&text)
            .map_err(|e| FinetuneError::Invalid(format!("{}: {e}", path.display())))?;
        if ck.identity != self.identity {
            let a = serde_json::to_value(&ck.identity).expect("serialises");
            let b = serde_json::to_value(&self.identity).expect("serialises");
            let differ: Vec<String> = a
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, v)| b.get(k.as_str()) != Some(v))
                .map(|(k, v)| format!("{k}: checkpoint {v}, now {}", b[k.as_str()]))
                .collect();
            return Err(FinetuneError::Invalid(format!(
                "{} belongs to another run ({}); resume with the same base, data and \
                 hyper-parameters, or train into a new --out folder",
                path.display(),
                differ.join("; ")
            )));
        }
        let wpath = self.out.join(&ck.weights_file);
        let tensors = candle_core::safetensors::load(&wpath, &self.base.device)
            .map_err(|e| FinetuneError::Invalid(format!("{}: {e}", wpath.display())))?;
        self.lora.set_from(&tensors, &wpath)?;
        let names: Vec<String> = self.lora.named_vars().into_iter().map(|(n, _)| n).collect();
        for (i, n) in names.iter().enumerate() {
            let get = |suffix: &str| {
                tensors
                    .get(&format!("{n}.{suffix}"))
                    .cloned()
                    .ok_or_else(|| {
                        FinetuneError::Invalid(format!(
                            "{}: {n}.{suffix} is missing",
                            wpath.display()
                        ))
                    })
            };
            self.opt.m[i] = get("adam_m")?;
            self.opt.v[i] = get("adam_v")?;
        }
        self.opt.t = ck.step;
        self.step = ck.step;
        self.best = ck.best;
        self.bad_evals = ck.bad_evals;
        self.tokens = ck.tokens;
        self.secs_before = ck.secs;
        self.log = ck.log;
        self.evals = ck.evals;
        self.last_checkpoint = Some(ck.step);
        self.rewrite_log()?;
        tracing::info!(step = self.step, "resumed from checkpoint");
        Ok(())
    }

    /// Evaluate; on improvement save the adapter. Returns whether patience ran out.
    fn eval(&mut self, eval: &[Example], epoch: f64, pb: &ProgressBar) -> Result<bool> {
        if eval.is_empty() || self.evals.last().is_some_and(|e| e.step == self.step) {
            return Ok(false);
        }
        let _span = tracing::info_span!("finetune_eval", step = self.step).entered();
        let loss = evaluate(self.base, Some(&self.lora), eval, self.opts.batch_size)?;
        if !loss.is_finite() {
            return Err(FinetuneError::Diverged {
                step: self.step,
                what: "eval loss".into(),
                value: loss,
                checkpoint: self.checkpoint_hint(),
            });
        }
        let e = EvalLog {
            step: self.step,
            epoch,
            loss,
            perplexity: loss.exp(),
        };
        pb.println(format!(
            "step {}: eval loss {:.4}, perplexity {:.2}",
            e.step, e.loss, e.perplexity
        ));
        self.append_log(serde_json::json!({"kind": "eval", "entry": &e}))?;
        self.evals.push(e.clone());
        if self.best.as_ref().is_none_or(|b| loss < b.loss) {
            adapter::save(&self.lora, &self.identity.base, self.out)?;
            self.best = Some(e);
            self.bad_evals = 0;
        } else if self.step > 0 {
            self.bad_evals += 1;
        }
        Ok(self.opts.patience > 0 && self.bad_evals >= self.opts.patience)
    }

    fn checkpoint_hint(&self) -> String {
        match self.last_checkpoint {
            Some(s) => format!(
                "the last good checkpoint (step {s}) is in {}; fix the settings and run again \
                 with --resume, or start over",
                self.out.display()
            ),
            None => "no checkpoint was written yet".into(),
        }
    }
}

/// Train a LoRA adapter on `train` (tokenised examples), evaluating on `eval`, writing the
/// adapter, logs and checkpoints into `out`. `base_name` goes into the adapter's
/// `base_model_name_or_path`.
pub fn train(
    base: &BaseModel,
    train: &[Example],
    eval: &[Example],
    out: &Path,
    opts: &TrainOptions,
    resume: bool,
) -> Result<TrainSummary> {
    let span = tracing::info_span!("finetune_train", out = %out.display());
    let _enter = span.enter();
    if train.is_empty() {
        return Err(FinetuneError::Invalid(
            "no training examples (every record was empty or too long for --max-len)".into(),
        ));
    }
    for (what, v) in [
        ("--epochs", opts.epochs),
        ("--batch-size", opts.batch_size),
        ("--grad-accum", opts.grad_accum),
        ("--max-len", opts.max_len),
    ] {
        if v == 0 {
            return Err(FinetuneError::Invalid(format!("{what} must be at least 1")));
        }
    }
    if !(opts.lr > 0.0 && opts.lr.is_finite()) {
        return Err(FinetuneError::Invalid(format!(
            "--lr must be a positive number, got {}",
            opts.lr
        )));
    }
    std::fs::create_dir_all(out).map_err(|source| FinetuneError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    if !resume && out.join(CHECKPOINT).exists() {
        return Err(FinetuneError::Invalid(format!(
            "{} already holds a training run (checkpoint.json); continue it with --resume or \
             choose another --out",
            out.display()
        )));
    }

    // The rows of the batches: one example each, or packed once (the epochs shuffle rows).
    let rows: Vec<Vec<usize>> = if opts.pack {
        pack(train, opts.max_len)
    } else {
        (0..train.len()).map(|i| vec![i]).collect()
    };
    if opts.pack {
        tracing::info!(
            examples = train.len(),
            rows = rows.len(),
            "packed the training examples"
        );
    }
    let micro_batches = rows.len().div_ceil(opts.batch_size);
    let steps_per_epoch = micro_batches.div_ceil(opts.grad_accum);
    let total_steps = steps_per_epoch * opts.epochs;
    let warmup = opts
        .warmup
        .unwrap_or_else(|| (total_steps as f64 * 0.03).ceil().max(1.0) as usize);
    let lora = LoraWeights::new(base, opts.lora.clone(), opts.seed)?;
    let vars: Vec<&Var> = lora.named_vars().into_iter().map(|(_, v)| v).collect();
    let opt = AdamW::new(&vars, opts.weight_decay).map_err(compute("optimizer state"))?;
    let identity = RunIdentity {
        base: base.path.display().to_string(),
        train_data: fingerprint(train),
        eval_data: fingerprint(eval),
        epochs: opts.epochs,
        lr: opts.lr,
        batch_size: opts.batch_size,
        grad_accum: opts.grad_accum,
        max_len: opts.max_len,
        pack: opts.pack,
        lora: opts.lora.clone(),
        warmup,
        weight_decay: opts.weight_decay,
        clip: opts.clip,
        seed: opts.seed,
    };
    let mut run = Run {
        base,
        lora,
        opt,
        opts,
        out,
        identity,
        step: 0,
        best: None,
        bad_evals: 0,
        tokens: 0,
        secs_before: 0.0,
        log: Vec::new(),
        evals: Vec::new(),
        last_checkpoint: None,
    };
    if resume {
        run.resume()?;
    } else {
        // A fresh run: an old log from an abandoned attempt must not mix in.
        let _ = std::fs::remove_file(out.join(LOG));
    }

    let pb = if opts.progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let pb =
            ProgressBar::with_draw_target(Some(total_steps as u64), ProgressDrawTarget::stderr());
        pb.set_style(
            ProgressStyle::with_template(
                "[{bar:30}] {pos}/{len} {elapsed_precise}<{eta} {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        pb
    } else {
        ProgressBar::hidden()
    };
    pb.set_position(run.step as u64);

    let started = Instant::now();
    let mut session_tokens = 0usize;
    let epoch_of = |step: usize| step as f64 / steps_per_epoch as f64;
    let mut ending = Ending::Completed;
    if run.step == 0 {
        // The baseline: the first evaluation always "improves", so it never stops the run.
        run.eval(eval, 0.0, &pb)?;
    }
    'epochs: for epoch in run.step / steps_per_epoch..opts.epochs {
        let order = epoch_order(rows.len(), opts.seed, epoch);
        let batches: Vec<&[usize]> = order.chunks(opts.batch_size).collect();
        for (i, group) in batches.chunks(opts.grad_accum).enumerate() {
            let global = epoch * steps_per_epoch + i;
            if global < run.step {
                continue;
            }
            let lr = lr_at(global, total_steps, warmup, opts.lr);
            let targets: usize = group
                .iter()
                .flat_map(|b| b.iter())
                .flat_map(|&r| rows[r].iter())
                .map(|&j| train[j].target_count())
                .sum();
            let mut sums =
                step::Gradients::zeros(base, &run.lora).map_err(compute("gradient buffers"))?;
            let mut nll = 0f64;
            let mut tokens = 0usize;
            for (m, idx) in group.iter().enumerate() {
                let batch_rows: Vec<Vec<&Example>> = idx
                    .iter()
                    .map(|&r| rows[r].iter().map(|&j| &train[j]).collect())
                    .collect();
                let batch = Batch::packed(&batch_rows, &base.device)
                    .map_err(compute("building a batch"))?;
                let value = step::backprop(
                    base,
                    &run.lora,
                    &batch,
                    Some(mix(opts.seed, global as u64 + 1, m as u64)),
                    1.0 / targets.max(1) as f64,
                    &mut sums,
                )
                .map_err(compute("training pass"))?;
                if !value.is_finite() {
                    return Err(FinetuneError::Diverged {
                        step: global + 1,
                        what: "training loss".into(),
                        value,
                        checkpoint: run.checkpoint_hint(),
                    });
                }
                nll += value;
                tokens += batch.tokens;
            }
            let vars: Vec<&Var> = run.lora.named_vars().into_iter().map(|(_, v)| v).collect();
            let mut grads = sums.sums;
            let norm = global_norm(&grads).map_err(compute("gradient norm"))?;
            if !norm.is_finite() {
                return Err(FinetuneError::Diverged {
                    step: global + 1,
                    what: "gradient norm".into(),
                    value: norm,
                    checkpoint: run.checkpoint_hint(),
                });
            }
            if opts.clip > 0.0 && norm > opts.clip {
                let s = opts.clip / (norm + 1e-6);
                grads = grads
                    .iter()
                    .map(|g| g * s)
                    .collect::<candle_core::Result<_>>()
                    .map_err(compute("clipping"))?;
            }
            run.opt
                .step(&vars, &grads, lr)
                .map_err(compute("optimizer step"))?;
            run.step = global + 1;
            run.tokens += tokens;
            session_tokens += tokens;
            let entry = StepLog {
                step: run.step,
                epoch: epoch_of(run.step),
                loss: nll / targets.max(1) as f64,
                lr,
                grad_norm: norm,
                tokens,
            };
            let secs = started.elapsed().as_secs_f64();
            pb.set_position(run.step as u64);
            pb.set_message(format!(
                "loss {:.4}  lr {:.2e}  {:.0} tok/s",
                entry.loss,
                lr,
                session_tokens as f64 / secs.max(1e-9)
            ));
            tracing::debug!(step = run.step, loss = entry.loss, lr, norm, "step");
            run.append_log(serde_json::json!({"kind": "train", "entry": &entry}))?;
            run.log.push(entry);

            let epoch_end = run.step.is_multiple_of(steps_per_epoch);
            let mut stop = false;
            if (opts.eval_every > 0 && run.step.is_multiple_of(opts.eval_every)) || epoch_end {
                stop = run.eval(eval, epoch_of(run.step), &pb)?;
            }
            let paused = opts.stop_after.is_some_and(|s| run.step >= s) && run.step < total_steps;
            if (opts.save_every > 0 && run.step.is_multiple_of(opts.save_every)) || stop || paused {
                run.save_checkpoint(run.secs_before + started.elapsed().as_secs_f64())?;
            }
            if stop {
                ending = Ending::EarlyStopped;
                break 'epochs;
            }
            if paused {
                ending = Ending::Paused;
                break 'epochs;
            }
        }
    }
    pb.finish_and_clear();
    if eval.is_empty() && ending != Ending::Paused {
        adapter::save(&run.lora, &run.identity.base, out)?;
    }
    let secs = run.secs_before + started.elapsed().as_secs_f64();
    let summary = TrainSummary {
        ending,
        steps: run.step,
        total_steps,
        epochs: epoch_of(run.step),
        tokens: run.tokens,
        secs,
        tokens_per_s: session_tokens as f64 / started.elapsed().as_secs_f64().max(1e-9),
        trainable_parameters: run.lora.num_parameters(),
        final_train_loss: run.log.last().map(|s| s.loss),
        final_eval: run.evals.last().cloned(),
        best_eval: run.best.clone(),
        log: run.log,
        evals: run.evals,
    };
    let text = serde_json::to_string_pretty(&summary).expect("summary serialises");
    adapter::write_atomic(&out.join("trainer_state.json"), text.as_bytes())?;
    tracing::info!(
        steps = summary.steps,
        tokens = summary.tokens,
        secs,
        "training finished"
    );
    Ok(summary)
}

/// Where `zhiku finetune train` reads and writes.
#[derive(Debug, Clone)]
pub struct TrainFiles {
    /// A `.gguf` file or a Hugging Face folder.
    pub base: PathBuf,
    /// Training records (JSONL).
    pub data: PathBuf,
    /// Held-out records; default `heldout_path(data)` when that file exists.
    pub eval: Option<PathBuf>,
    /// The adapter folder.
    pub out: PathBuf,
}

/// Load the base, read and encode the records, train. Prints data statistics to stderr.
pub fn train_files(
    files: &TrainFiles,
    device: &Device,
    opts: &TrainOptions,
    resume: bool,
) -> Result<TrainSummary> {
    let base = BaseModel::load(&files.base, device)?;
    let encoder = Encoder::for_model(&base)?;
    let records = super::read_jsonl(&files.data)?;
    let eval_path = files.eval.clone().or_else(|| {
        let p = super::heldout_path(&files.data);
        p.is_file().then_some(p)
    });
    let eval_records = match &eval_path {
        Some(p) => super::read_jsonl(p)?,
        None => Vec::new(),
    };
    let train_set = encoder.encode_all(&records, opts.max_len)?;
    let eval_set = encoder.encode_all(&eval_records, opts.max_len)?;
    let tokens: usize = train_set.examples.iter().map(|e| e.ids.len()).sum();
    eprintln!(
        "base {} ({:?}, {} layers, {:.1} M parameters, {:?} on {}); training on {} examples \
         ({} tokens, {} cut at --max-len {}, {} dropped: reply beyond it){}",
        files.base.display(),
        base.config.family,
        base.config.layers,
        base.num_parameters() as f64 / 1e6,
        base.dtype,
        if device.is_cpu() { "cpu" } else { "cuda" },
        train_set.examples.len(),
        tokens,
        train_set.truncated,
        opts.max_len,
        train_set.too_long,
        match &eval_path {
            Some(p) => format!(
                "; evaluating on {} held-out examples from {}",
                eval_set.examples.len(),
                p.display()
            ),
            None => "; no held-out file: no evaluation, no early stopping".into(),
        }
    );
    train(
        &base,
        &train_set.examples,
        &eval_set.examples,
        &files.out,
        opts,
        resume,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finetune::Record;
    use crate::generate::arch::tests::{max_diff, write_tiny_qwen2};
    use crate::generate::arch::{self, GgufWeights};
    use crate::generate::{
        CandleGenerator, CandleOptions, ChatMessage, Generator, LoraAdapter, SamplingParams,
    };

    const COLOURS: [&str; 4] = ["red", "blue", "green", "gold"];

    /// Records with a learnable pattern: the colour of item i is COLOURS[i % 4].
    fn records(range: std::ops::Range<usize>) -> Vec<Record> {
        range
            .map(|i| Record {
                instruction: format!("What colour is item {i}?"),
                input: String::new(),
                output: format!("Item {i} is {}.", COLOURS[i % 4]),
            })
            .collect()
    }

    fn encoded(base: &BaseModel, range: std::ops::Range<usize>) -> Vec<Example> {
        Encoder::for_model(base)
            .unwrap()
            .encode_all(&records(range), 256)
            .unwrap()
            .examples
    }

    fn tiny_options() -> TrainOptions {
        TrainOptions {
            epochs: 3,
            lr: 1e-2,
            batch_size: 2,
            grad_accum: 2,
            max_len: 256,
            lora: LoraConfig {
                r: 8,
                alpha: 16.0,
                dropout: 0.05,
                ..LoraConfig::default()
            },
            warmup: Some(2),
            save_every: 4,
            patience: 0,
            ..TrainOptions::default()
        }
    }

    fn losses(s: &TrainSummary) -> Vec<f64> {
        s.log.iter().map(|l| l.loss).collect()
    }

    /// The adapter saved in `dir`, back in the trainer's form.
    fn reloaded(base: &BaseModel, config: &LoraConfig, dir: &Path) -> LoraWeights {
        let lora = LoraWeights::new(base, config.clone(), 0).unwrap();
        adapter::load_into(&lora, dir).unwrap();
        lora
    }

    /// Last-position logits of the trainer's forward on `ids`.
    fn last_logits(base: &BaseModel, lora: Option<&LoraWeights>, ids: &[u32]) -> Tensor {
        let t = Tensor::new(ids, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        base.forward(&t, &[ids.len()], lora, None)
            .unwrap()
            .get(0)
            .unwrap()
            .get(ids.len() - 1)
            .unwrap()
    }

    /// Last-position logits of `ids` from the generator's loader, with the adapter saved
    /// in `adapter_dir` merged into `model`.
    fn merged_logits(model: &Path, adapter_dir: &Path, ids: &[u32]) -> Tensor {
        let adapter = LoraAdapter::load(adapter_dir).unwrap();
        arch::load(model, &Device::Cpu, GgufWeights::Auto, Some(&adapter))
            .unwrap()
            .forward(ids, 0)
            .unwrap()
    }

    #[test]
    fn packing_fills_rows_without_losing_or_splitting_examples() {
        let ex = |n: usize| Example {
            ids: vec![1; n],
            targets: vec![true; n],
        };
        let examples: Vec<Example> = [70, 30, 50, 20, 100, 10, 45, 55, 5].map(ex).to_vec();
        let rows = pack(&examples, 100);
        let mut seen: Vec<usize> = rows.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..examples.len()).collect::<Vec<_>>());
        for r in &rows {
            let len: usize = r.iter().map(|&i| examples[i].ids.len()).sum();
            assert!(len <= 100, "row {r:?} holds {len} tokens");
        }
        // 385 tokens fit in 4 rows of 100; best-fit decreasing finds them.
        assert_eq!(rows.len(), 4, "{rows:?}");
        assert_eq!(pack(&examples, 100), rows, "packing must be deterministic");
    }

    #[test]
    fn a_packed_run_takes_fewer_steps_and_still_learns() {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_qwen2(&tmp.path().join("base"), 31);
        let base = BaseModel::load(&tmp.path().join("base"), &Device::Cpu).unwrap();
        let (train_set, eval_set) = (encoded(&base, 0..32), encoded(&base, 100..108));
        let longest = train_set.iter().map(|e| e.ids.len()).max().unwrap();
        let opts = TrainOptions {
            pack: true,
            max_len: 4 * longest,
            batch_size: 1,
            grad_accum: 1,
            ..tiny_options()
        };
        let run = train(
            &base,
            &train_set,
            &eval_set,
            &tmp.path().join("p"),
            &opts,
            false,
        )
        .unwrap();
        // At least 4 examples per row: at most 8 rows, so at most 8 steps an epoch.
        assert!(run.total_steps <= 3 * 8, "{} steps", run.total_steps);
        assert_eq!(
            run.tokens,
            3 * train_set.iter().map(|e| e.ids.len()).sum::<usize>()
        );
        let (first, last) = (&run.evals[0], run.evals.last().unwrap());
        assert!(
            last.perplexity < 0.8 * first.perplexity,
            "held-out perplexity did not fall: {:?}",
            run.evals
        );
    }

    #[test]
    fn loss_and_heldout_perplexity_fall_and_a_resumed_run_follows_the_same_curve() {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_qwen2(&tmp.path().join("base"), 31);
        let base = BaseModel::load(&tmp.path().join("base"), &Device::Cpu).unwrap();
        let (train_set, eval_set) = (encoded(&base, 0..32), encoded(&base, 100..108));
        let opts = tiny_options();

        let full = train(
            &base,
            &train_set,
            &eval_set,
            &tmp.path().join("a"),
            &opts,
            false,
        )
        .unwrap();
        assert_eq!(
            (full.ending, full.steps, full.total_steps),
            (Ending::Completed, 24, 24)
        );
        let l = losses(&full);
        let tail = l[l.len() - 4..].iter().sum::<f64>() / 4.0;
        assert!(tail < 0.6 * l[0], "training loss did not fall: {l:?}");
        // Baseline + one evaluation per epoch.
        assert_eq!(
            full.evals.iter().map(|e| e.step).collect::<Vec<_>>(),
            [0, 8, 16, 24]
        );
        let (first, last) = (&full.evals[0], full.evals.last().unwrap());
        assert!(
            last.perplexity < 0.7 * first.perplexity,
            "held-out perplexity did not fall: {:?}",
            full.evals
        );

        // Interrupted after step 10 (checkpoint), resumed: the same losses.
        let out = tmp.path().join("b");
        let paused = train(
            &base,
            &train_set,
            &eval_set,
            &out,
            &TrainOptions {
                stop_after: Some(10),
                ..opts.clone()
            },
            false,
        )
        .unwrap();
        assert_eq!((paused.ending, paused.steps), (Ending::Paused, 10));
        // A crash after the checkpoint leaves log lines the checkpoint does not know.
        std::fs::write(
            out.join(LOG),
            std::fs::read_to_string(out.join(LOG)).unwrap() + "{\"kind\":\"train\"}\n",
        )
        .unwrap();
        // Starting over into the same folder without --resume is refused.
        let e = train(&base, &train_set, &eval_set, &out, &opts, false).unwrap_err();
        assert!(e.to_string().contains("--resume"), "{e}");
        // Resuming with other hyper-parameters is refused, naming them.
        let other = TrainOptions {
            lr: 5e-3,
            ..opts.clone()
        };
        let e = train(&base, &train_set, &eval_set, &out, &other, true).unwrap_err();
        assert!(
            e.to_string().contains("lr: checkpoint 0.01, now 0.005"),
            "{e}"
        );

        let resumed = train(&base, &train_set, &eval_set, &out, &opts, true).unwrap();
        assert_eq!((resumed.ending, resumed.steps), (Ending::Completed, 24));
        let (a, b) = (losses(&full), losses(&resumed));
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() < 1e-5,
                "step {}: {x} vs {y} after resume",
                i + 1
            );
        }
        for (x, y) in full.evals.iter().zip(&resumed.evals) {
            assert!((x.loss - y.loss).abs() < 1e-5, "{x:?} vs {y:?}");
        }
        let log = std::fs::read_to_string(out.join(LOG)).unwrap();
        assert_eq!(log.lines().count(), 24 + 4, "{log}");
    }

    #[test]
    fn a_qwen3_adapter_trains_and_merges_in_the_generator_to_the_same_logits() {
        let tmp = tempfile::tempdir().unwrap();
        let base_dir = tmp.path().join("base");
        crate::generate::arch::tests::write_tiny_qwen3(&base_dir, 5);
        let base = BaseModel::load(&base_dir, &Device::Cpu).unwrap();
        let out = tmp.path().join("adapter");
        let (train_set, eval_set) = (encoded(&base, 0..16), encoded(&base, 100..104));
        let opts = TrainOptions {
            epochs: 2,
            ..tiny_options()
        };
        let run = train(&base, &train_set, &eval_set, &out, &opts, false).unwrap();
        let (first, last) = (&run.evals[0], run.evals.last().unwrap());
        assert!(last.loss < first.loss, "{:?}", run.evals);
        // q_proj is 64 wide (4 heads × head_dim 16) on a 32-wide model.
        let names =
            candle_core::safetensors::load(out.join("adapter_model.safetensors"), &Device::Cpu)
                .unwrap();
        assert_eq!(
            names["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"].dims(),
            [64, 8]
        );
        let lora = reloaded(&base, &opts.lora, &out);
        let ids = [3u32, 77, 120, 9, 45, 200, 1, 64];
        let merged = merged_logits(&base_dir, &out, &ids);
        let d = max_diff(&last_logits(&base, Some(&lora), &ids), &merged);
        assert!(
            d < 1e-4,
            "merged adapter differs from the unmerged forward by {d}"
        );
        assert!(
            max_diff(&last_logits(&base, None, &ids), &merged) > 1e-2,
            "the adapter changed nothing"
        );
    }

    #[test]
    fn saved_adapter_loads_in_the_generator_and_gives_the_unmerged_outputs() {
        let tmp = tempfile::tempdir().unwrap();
        let base_dir = tmp.path().join("base");
        write_tiny_qwen2(&base_dir, 32);
        let base = BaseModel::load(&base_dir, &Device::Cpu).unwrap();
        let out = tmp.path().join("adapter");
        let summary = train(
            &base,
            &encoded(&base, 0..32),
            &[],
            &out,
            &TrainOptions {
                epochs: 2,
                ..tiny_options()
            },
            false,
        )
        .unwrap();
        assert_eq!(summary.steps, 16);

        let cfg: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("adapter_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(cfg["peft_type"], "LORA");
        assert_eq!(cfg["task_type"], "CAUSAL_LM");
        assert_eq!(
            (cfg["r"].as_u64(), cfg["lora_alpha"].as_f64()),
            (Some(8), Some(16.0))
        );
        assert_eq!(cfg["target_modules"].as_array().unwrap().len(), 7);
        let names =
            candle_core::safetensors::load(out.join("adapter_model.safetensors"), &Device::Cpu)
                .unwrap();
        assert_eq!(names.len(), 2 * 7 * 2);
        assert_eq!(
            names["base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"].dims(),
            [8, 64]
        );

        // Our unmerged forward with the saved adapter …
        let lora = reloaded(&base, &tiny_options().lora, &out);
        let prompt = [ChatMessage::user("What colour is item 9?")];
        let generator_opts = CandleOptions {
            lora: Some(out.clone()),
            device: zhiku_core::config::GenerateDevice::Cpu,
            ..CandleOptions::new(&base_dir)
        };
        let generator = CandleGenerator::load(&generator_opts).unwrap();
        let ids = generator.prompt_ids(&prompt).unwrap();
        // … equals the generator's merged weights, and differs from the base.
        let merged = merged_logits(&base_dir, &out, &ids);
        let d = max_diff(&last_logits(&base, Some(&lora), &ids), &merged);
        assert!(
            d < 1e-4,
            "merged adapter differs from the unmerged forward by {d}"
        );
        assert!(
            max_diff(&last_logits(&base, None, &ids), &merged) > 1e-2,
            "the adapter changed nothing"
        );

        // Greedy decoding: the generator's text is what our forward picks token by token.
        let mut ctx = ids.clone();
        let mut ours = Vec::new();
        for _ in 0..12 {
            let next = last_logits(&base, Some(&lora), &ctx)
                .argmax(0)
                .unwrap()
                .to_scalar::<u32>()
                .unwrap();
            if next == 0 || next == 2 {
                break;
            }
            ours.push(next);
            ctx.push(next);
        }
        let params = SamplingParams {
            max_tokens: 12,
            temperature: 0.0,
            repetition_penalty: 1.0,
            ..SamplingParams::default()
        };
        let mut text = String::new();
        generator
            .generate(&prompt, &params, &mut |t| {
                text.push_str(t);
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
        let encoder = Encoder::for_model(&base).unwrap();
        let want = encoder.decode(&ours);
        assert_eq!(text, want);
        assert!(
            text.starts_with("Item "),
            "the adapter did not learn the pattern: {text:?}"
        );
    }

    #[test]
    fn a_diverging_run_stops_with_a_clear_error_and_keeps_its_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_qwen2(&tmp.path().join("base"), 33);
        let base = BaseModel::load(&tmp.path().join("base"), &Device::Cpu).unwrap();
        let out = tmp.path().join("out");
        let e = train(
            &base,
            &encoded(&base, 0..16),
            &[],
            &out,
            &TrainOptions {
                lr: 1e30,
                warmup: Some(0),
                save_every: 1,
                ..tiny_options()
            },
            false,
        )
        .unwrap_err();
        let FinetuneError::Diverged { step, .. } = &e else {
            panic!("{e}")
        };
        assert!(*step >= 2, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("diverged at step {step}"))
                && msg.contains(&format!("checkpoint (step {})", step - 1)),
            "{msg}"
        );
        let ck: Checkpoint =
            serde_json::from_str(&std::fs::read_to_string(out.join(CHECKPOINT)).unwrap()).unwrap();
        assert_eq!(ck.step, step - 1);
    }

    /// SmolLM2 (the demo GGUF, llama architecture, tied embeddings), a few steps:
    /// the loss falls and the adapter loads in the generator on the GGUF.
    #[test]
    fn smollm2_gguf_trains_and_its_adapter_reloads() {
        let Some(path) = crate::generate::candle::tests::smollm2() else {
            return;
        };
        let base = BaseModel::load(&path, &Device::Cpu).unwrap();
        let examples: Vec<Example> = Encoder::for_model(&base)
            .unwrap()
            .encode_all(
                &(0..4)
                    .map(|i| Record {
                        instruction: format!("Code word {i}?"),
                        input: String::new(),
                        output: "Zhiku knows.".into(),
                    })
                    .collect::<Vec<_>>(),
                128,
            )
            .unwrap()
            .examples;
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("adapter");
        let opts = TrainOptions {
            epochs: 2,
            lr: 2e-3,
            batch_size: 2,
            warmup: Some(1),
            save_every: 0,
            lora: LoraConfig {
                r: 4,
                alpha: 8.0,
                dropout: 0.0,
                targets: vec![
                    "q_proj".into(),
                    "k_proj".into(),
                    "v_proj".into(),
                    "o_proj".into(),
                ],
            },
            ..TrainOptions::default()
        };
        let s = train(&base, &examples, &[], &out, &opts, false).unwrap();
        let l = losses(&s);
        assert_eq!(l.len(), 4);
        assert!(l[3] < l[0], "loss did not fall: {l:?}");

        let lora = reloaded(&base, &opts.lora, &out);
        let ids = &examples[0].ids;
        let d = max_diff(
            &last_logits(&base, Some(&lora), ids),
            &merged_logits(&path, &out, ids),
        );
        assert!(d < 2e-3, "GGUF generator with the adapter differs by {d}");
    }
}
