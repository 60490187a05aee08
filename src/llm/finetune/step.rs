//! One micro-batch's loss and LoRA gradients in bounded memory.
//!
//! Backpropagating through one graph of the whole model keeps every layer's activations
//! (the seq × seq attention scores among them) until the end of the backward pass: on
//! the CPU a single 1,000-token example of a 135M model took 18 GB. Here the forward pass
//! keeps only each layer's input (batch × seq × hidden), and the backward pass walks the
//! layers from the top, recomputing one layer at a time with a graph and pulling the
//! incoming gradient through it (`sum(layer(x) ⊙ grad)` differentiated gives the
//! vector–Jacobian product). Peak memory is the layer inputs plus one layer's graph; the
//! price is a second forward pass of each layer. Dropout masks are drawn per layer from
//! [`layer_seed`], so the recomputed layer is the layer of the forward pass.
//!
//! The loss needs the logits only at the positions that count (the reply tokens), so the
//! output projection runs on those rows alone, in chunks of at most [`HEAD_ELEMENTS`]
//! logits: with a 150k vocabulary the full logits of a 2,048-token batch are over 1 GB.

use std::collections::HashMap;

use candle_core::{D, Tensor, TensorId, Var};

use super::encode::Batch;
use super::model::{BaseModel, Dropout, LoraWeights, layer_seed};

/// Logits materialised at once by the loss (rows × vocab): 16M f32 = 64 MB per copy.
pub const HEAD_ELEMENTS: usize = 1 << 24;

/// Running sums of the LoRA gradients of one optimizer step, in
/// [`LoraWeights::named_vars`] order.
pub struct Gradients {
    pub sums: Vec<Tensor>,
    index: HashMap<TensorId, usize>,
    /// Per layer: the (index, var) pairs of its modules.
    by_layer: Vec<Vec<(usize, Var)>>,
}

impl Gradients {
    /// Zeroed sums for every trainable tensor of `lora`.
    pub fn zeros(base: &BaseModel, lora: &LoraWeights) -> candle_core::Result<Self> {
        let vars = lora.named_vars();
        let mut by_layer = vec![Vec::new(); base.config.layers];
        let mut index = HashMap::new();
        let mut sums = Vec::with_capacity(vars.len());
        for (i, (name, var)) in vars.iter().enumerate() {
            sums.push(var.zeros_like()?);
            index.insert(var.id(), i);
            let layer = name
                .strip_prefix("base_model.model.model.layers.")
                .and_then(|r| r.split('.').next())
                .and_then(|l| l.parse::<usize>().ok());
            match layer {
                Some(l) if l < by_layer.len() => by_layer[l].push((i, (*var).clone())),
                _ => candle_core::bail!("LoRA tensor {name} belongs to no decoder layer"),
            }
        }
        Ok(Self {
            sums,
            index,
            by_layer,
        })
    }

    fn add(&mut self, i: usize, g: &Tensor) -> candle_core::Result<()> {
        self.sums[i] = (&self.sums[i] + g)?;
        Ok(())
    }

    /// The sum for `var`, if it is one of ours.
    pub fn get(&self, var: &Var) -> Option<&Tensor> {
        self.index.get(&var.id()).map(|&i| &self.sums[i])
    }
}

/// Summed negative log-likelihood of `targets` (n, u32) under `logits` (n × vocab).
fn nll_sum(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    candle_nn::ops::log_softmax(logits, D::Minus1)?
        .gather(&targets.unsqueeze(1)?, 1)?
        .sum_all()?
        .neg()
}

/// The rows of the final hidden states (batch × seq × hidden) whose prediction counts,
/// with their targets, or `None` when no position counts.
fn counted_rows(
    base: &BaseModel,
    x: &Tensor,
    batch: &Batch,
) -> candle_core::Result<Option<(Tensor, Tensor, Tensor)>> {
    if batch.target_rows.is_empty() {
        return Ok(None);
    }
    let (b, t, h) = x.dims3()?;
    let rows = Tensor::new(batch.target_rows.as_slice(), &base.device)?;
    let targets = Tensor::new(batch.target_ids.as_slice(), &base.device)?;
    let x = x.reshape((b * t, h))?.index_select(&rows, 0)?;
    Ok(Some((x, rows, targets)))
}

fn chunk_rows(base: &BaseModel) -> usize {
    (HEAD_ELEMENTS / base.config.vocab.max(1)).max(1)
}

/// Summed NLL of the batch's counted tokens, without gradients: the evaluation pass.
/// No graph is kept beyond one layer.
pub fn nll(
    base: &BaseModel,
    lora: Option<&LoraWeights>,
    batch: &Batch,
) -> candle_core::Result<f64> {
    let (b, t) = batch.ids.dims2()?;
    let ctx = base.attention_context(b, t, &batch.positions, &batch.segments)?;
    let mut x = base.embed(&batch.ids)?;
    for l in 0..base.config.layers {
        x = base.layer(l, &x, &ctx, lora, None)?.detach();
    }
    let Some((x, _, targets)) = counted_rows(base, &x, batch)? else {
        return Ok(0.0);
    };
    let n = x.dim(0)?;
    let step = chunk_rows(base);
    let mut total = 0f64;
    for s in (0..n).step_by(step) {
        let c = step.min(n - s);
        let logits = base.logits(&x.narrow(0, s, c)?)?;
        total += nll_sum(&logits, &targets.narrow(0, s, c)?)?.to_scalar::<f32>()? as f64;
    }
    Ok(total)
}

/// Forward and backward pass of one micro-batch: adds `scale ×` the gradient of the
/// summed NLL to `grads` and returns the summed NLL (unscaled). `dropout_seed`: the
/// micro-batch's dropout seed (`None`: no dropout).
///
/// A NaN or infinite loss is returned before any backward work, with `grads` untouched.
pub fn backprop(
    base: &BaseModel,
    lora: &LoraWeights,
    batch: &Batch,
    dropout_seed: Option<u64>,
    scale: f64,
    grads: &mut Gradients,
) -> candle_core::Result<f64> {
    let (b, t) = batch.ids.dims2()?;
    let layers = base.config.layers;
    let ctx = base.attention_context(b, t, &batch.positions, &batch.segments)?;
    let dropout = |l: usize| dropout_seed.map(|s| Dropout::new(layer_seed(s, l)));
    // Forward: keep each layer's input, nothing else.
    let mut inputs = Vec::with_capacity(layers + 1);
    inputs.push(base.embed(&batch.ids)?);
    for l in 0..layers {
        let y = base
            .layer(l, &inputs[l], &ctx, Some(lora), dropout(l))?
            .detach();
        inputs.push(y);
    }
    let last = inputs.pop().expect("one input per layer and the output");
    let Some((x, rows, targets)) = counted_rows(base, &last, batch)? else {
        return Ok(0.0);
    };
    // Loss and its gradient for the counted rows, chunk by chunk.
    let n = x.dim(0)?;
    let step = chunk_rows(base);
    let mut total = 0f64;
    let mut row_grads = Vec::with_capacity(n.div_ceil(step));
    for s in (0..n).step_by(step) {
        let c = step.min(n - s);
        let xc = Var::from_tensor(&x.narrow(0, s, c)?)?;
        let loss = nll_sum(&base.logits(xc.as_tensor())?, &targets.narrow(0, s, c)?)?;
        let value = loss.to_scalar::<f32>()? as f64;
        if !value.is_finite() {
            return Ok(value);
        }
        total += value;
        let g = (loss * scale)?.backward()?;
        row_grads.push(match g.get(xc.as_tensor()) {
            Some(g) => g.clone(),
            None => xc.zeros_like()?,
        });
    }
    let h = base.config.hidden;
    let mut grad = last
        .reshape((b * t, h))?
        .zeros_like()?
        .index_add(&rows, &Tensor::cat(&row_grads, 0)?, 0)?
        .reshape((b, t, h))?;
    drop(row_grads);
    // Backward through the layers, recomputing each.
    for l in (0..layers).rev() {
        let input = inputs.pop().expect("one input per layer");
        // The embeddings are frozen: layer 0 needs no input gradient.
        let var = if l == 0 {
            None
        } else {
            Some(Var::from_tensor(&input)?)
        };
        let x = var.as_ref().map_or(&input, |v| v.as_tensor());
        let y = base.layer(l, x, &ctx, Some(lora), dropout(l))?;
        let store = (y * &grad)?.sum_all()?.backward()?;
        for (i, var) in &grads.by_layer[l].clone() {
            if let Some(g) = store.get(var.as_tensor()) {
                grads.add(*i, g)?;
            }
        }
        if let Some(var) = var {
            grad = match store.get(var.as_tensor()) {
                Some(g) => g.clone(),
                None => var.zeros_like()?,
            };
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finetune::encode::Example;
    use crate::finetune::model::LoraConfig;
    use crate::generate::arch::tests::{max_diff, write_tiny_qwen2};
    use candle_core::Device;

    /// Reference loss: log-softmax over the full logits (batch × seq × vocab) of a
    /// one-graph forward, picked at the batch's counted positions.
    fn reference_nll(logits: &Tensor, batch: &Batch) -> Tensor {
        let (b, t, v) = logits.dims3().unwrap();
        let rows = Tensor::new(batch.target_rows.as_slice(), &Device::Cpu).unwrap();
        let ids = Tensor::new(batch.target_ids.as_slice(), &Device::Cpu).unwrap();
        candle_nn::ops::log_softmax(&logits.reshape((b * t, v)).unwrap(), D::Minus1)
            .unwrap()
            .index_select(&rows, 0)
            .unwrap()
            .gather(&ids.unsqueeze(1).unwrap(), 1)
            .unwrap()
            .sum_all()
            .unwrap()
            .neg()
            .unwrap()
    }

    fn example(ids: &[u32], reply_from: usize) -> Example {
        Example {
            ids: ids.to_vec(),
            targets: (0..ids.len()).map(|i| i >= reply_from).collect(),
        }
    }

    /// A tiny Qwen2 with an adapter whose B is not zero (so every LoRA tensor has a
    /// gradient) and dropout on.
    fn setup(dir: &std::path::Path) -> (BaseModel, LoraWeights) {
        write_tiny_qwen2(dir, 11);
        let base = BaseModel::load(dir, &Device::Cpu).unwrap();
        let config = LoraConfig {
            r: 4,
            alpha: 8.0,
            dropout: 0.2,
            ..LoraConfig::default()
        };
        let lora = LoraWeights::new(&base, config, 3).unwrap();
        for m in lora.modules.values() {
            m.b.set(&Tensor::randn(0f32, 0.2, m.b.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
        (base, lora)
    }

    #[test]
    fn recomputed_gradients_equal_one_graph_backprop() {
        let tmp = tempfile::tempdir().unwrap();
        let (base, lora) = setup(tmp.path());
        let a = example(&[5, 40, 77, 3, 120, 9, 200, 31, 8, 64], 4);
        let b = example(&[7, 8, 9, 10, 11, 12], 2);
        let batch = Batch::new(&[&a, &b], &Device::Cpu).unwrap();
        let seed = 1234;
        let scale = 1.0 / batch.target_tokens as f64;

        // Reference: one graph through the model, candle's backward.
        let logits = base
            .forward(&batch.ids, &batch.lengths, Some(&lora), Some(seed))
            .unwrap();
        let loss = reference_nll(&logits, &batch);
        let expected_nll = loss.to_scalar::<f32>().unwrap() as f64;
        let store = (loss * scale).unwrap().backward().unwrap();

        let mut grads = Gradients::zeros(&base, &lora).unwrap();
        let got = backprop(&base, &lora, &batch, Some(seed), scale, &mut grads).unwrap();
        assert!(
            (got - expected_nll).abs() < 1e-4 * expected_nll,
            "{got} vs {expected_nll}"
        );
        let mut compared = 0;
        for (name, var) in lora.named_vars() {
            let want = store.get(var.as_tensor()).unwrap();
            let have = grads.get(var).unwrap();
            let scale = want
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(scale > 0.0, "{name} has no gradient in the reference");
            let d = max_diff(want, have);
            assert!(d < 1e-4 * scale.max(1.0), "{name}: gradients differ by {d}");
            compared += 1;
        }
        assert_eq!(compared, lora.named_vars().len());

        // The evaluation pass gives the same loss without dropout.
        let plain = base
            .forward(&batch.ids, &batch.lengths, Some(&lora), None)
            .unwrap();
        let want = reference_nll(&plain, &batch).to_scalar::<f32>().unwrap() as f64;
        let have = nll(&base, Some(&lora), &batch).unwrap();
        assert!((have - want).abs() < 1e-4 * want, "{have} vs {want}");
    }

    #[test]
    fn packed_examples_do_not_see_each_other() {
        let tmp = tempfile::tempdir().unwrap();
        let (base, lora) = setup(tmp.path());
        let a = example(&[5, 40, 77, 3, 120, 9], 3);
        let b = example(&[7, 8, 9, 10], 1);
        let c = example(&[200, 31, 8, 64, 5], 2);
        let separate = Batch::new(&[&a, &b, &c], &Device::Cpu).unwrap();
        let packed = Batch::packed(&[vec![&a, &b], vec![&c]], &Device::Cpu).unwrap();
        assert_eq!(packed.ids.dims(), &[2, 10]);
        assert_eq!(packed.target_tokens, separate.target_tokens);
        let want = nll(&base, Some(&lora), &separate).unwrap();
        let have = nll(&base, Some(&lora), &packed).unwrap();
        assert!((have - want).abs() < 1e-4 * want, "{have} vs {want}");

        let scale = 1.0 / separate.target_tokens as f64;
        let mut g1 = Gradients::zeros(&base, &lora).unwrap();
        let mut g2 = Gradients::zeros(&base, &lora).unwrap();
        backprop(&base, &lora, &separate, None, scale, &mut g1).unwrap();
        backprop(&base, &lora, &packed, None, scale, &mut g2).unwrap();
        for (name, var) in lora.named_vars() {
            let d = max_diff(g1.get(var).unwrap(), g2.get(var).unwrap());
            assert!(d < 1e-5, "{name}: packing changed the gradient by {d}");
        }
    }
}
