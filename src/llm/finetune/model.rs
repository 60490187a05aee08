//! The trainable model: a Llama / Qwen2 decoder written with plain candle ops so that
//! candle's autograd can differentiate it (candle-transformers' inference models use fused
//! kernels without backward passes, and a KV cache training does not need).
//!
//! The base weights are plain [`Tensor`]s in Hugging Face naming and layout (never
//! [`Var`]s: frozen, no optimizer state): f32 on the CPU, bf16 on CUDA. A GGUF base is
//! dequantised to f32 and llama's q/k rows are un-permuted from llama.cpp's interleaved
//! RoPE layout back to Hugging Face's, so the trained adapter is in the layout PEFT and
//! zhiku's loader (`generate::lora`) expect.
//!
//! Every targeted Linear computes `W·x (+ bias) + (alpha/r)·B·A·dropout(x)`, with `A`
//! (r × in, Kaiming-uniform like PEFT) and `B` (out × r, zeros) f32 [`Var`]s: with `B = 0`
//! the model is exactly the base model.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use candle_core::{D, DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{FinetuneError, Result, ops};

/// The module names LoRA can target in Llama / Qwen2 models.
pub const TARGETABLE: &[&str] = &[
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// Which decoder family the weights belong to. They differ in the q/k/v biases (Qwen2),
/// the per-head RMS norms of q and k before RoPE (Qwen3), and GGUF's q/k row order (Llama).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Llama,
    Qwen2,
    Qwen3,
}

/// Shape of the base model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub family: Family,
    pub vocab: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f64,
    pub rms_eps: f64,
    /// The output projection is the embedding matrix.
    pub tie_embeddings: bool,
    pub context_length: usize,
}

/// The frozen base model.
pub struct BaseModel {
    pub config: ModelConfig,
    /// The `.gguf` file or Hugging Face folder it came from.
    pub path: PathBuf,
    pub device: Device,
    /// f32 on the CPU, bf16 on CUDA.
    pub dtype: DType,
    weights: HashMap<String, Tensor>,
    /// GGUF metadata (tokenizer, chat template) of a GGUF base.
    pub(crate) gguf_metadata: Option<HashMap<String, gguf_file::Value>>,
}

impl std::fmt::Debug for BaseModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseModel")
            .field("path", &self.path)
            .field("config", &self.config)
            .field("dtype", &self.dtype)
            .finish_non_exhaustive()
    }
}

fn model_err(path: &Path, message: impl std::fmt::Display) -> FinetuneError {
    FinetuneError::Model(format!("{}: {message}", path.display()))
}

/// A candle error while computing `what`.
pub(crate) fn compute(what: &str) -> impl Fn(candle_core::Error) -> FinetuneError + '_ {
    move |e| FinetuneError::Compute(format!("{what}: {e}"))
}

use crate::generate::tensor_names::gguf_to_hf as gguf_to_hf_name;

/// Inverse of llama.cpp's q/k row permutation (`generate::arch::permute_rows`): back to
/// Hugging Face's half-split RoPE layout. Works on weights (out × in) and biases (out).
pub(crate) fn unpermute_rows(t: &Tensor, n_head: usize) -> candle_core::Result<Tensor> {
    let dims = t.dims().to_vec();
    let out = dims[0];
    let inp: usize = dims[1..].iter().product();
    t.reshape((n_head, out / n_head / 2, 2, inp))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)
}

fn json_usize(cfg: &Json, key: &str) -> Option<usize> {
    cfg.get(key).and_then(|v| v.as_u64()).map(|v| v as usize)
}

impl BaseModel {
    /// Load a `.gguf` file (llama, qwen2) or a Hugging Face folder (qwen2, llama).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let _span = tracing::info_span!("finetune_base_load", path = %path.display()).entered();
        let dtype = if device.is_cpu() {
            DType::F32
        } else {
            DType::BF16
        };
        let (config, weights, gguf_metadata) = if path.is_dir() {
            let (c, w) = Self::read_folder(path)?;
            (c, w, None)
        } else if path.is_file() {
            let (c, w, md) = Self::read_gguf(path)?;
            (c, w, Some(md))
        } else {
            return Err(model_err(
                path,
                "no such file or folder (expected a .gguf file or a Hugging Face folder with \
                 config.json and *.safetensors)",
            ));
        };
        let weights = weights
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_dtype(dtype)?.to_device(device)?)))
            .collect::<candle_core::Result<HashMap<_, _>>>()
            .map_err(compute("moving the base weights to the device"))?;
        let model = Self {
            config,
            path: path.to_path_buf(),
            device: device.clone(),
            dtype,
            weights,
            gguf_metadata,
        };
        model.check_shapes()?;
        tracing::info!(config = ?model.config, ?dtype, "fine-tuning base model loaded");
        Ok(model)
    }

    fn read_folder(dir: &Path) -> Result<(ModelConfig, HashMap<String, Tensor>)> {
        let cfg = crate::generate::arch::read_json(&dir.join("config.json"))?;
        let family = match crate::generate::arch::folder_arch(&cfg) {
            Some("qwen2") => Family::Qwen2,
            Some("qwen3") => Family::Qwen3,
            Some("llama") => Family::Llama,
            other => {
                return Err(model_err(
                    dir,
                    format!(
                        "LoRA training supports Qwen2, Qwen3 and Llama models; this one is {}",
                        other.unwrap_or("of an unknown architecture")
                    ),
                ));
            }
        };
        if cfg.get("rope_scaling").is_some_and(|v| !v.is_null()) {
            return Err(model_err(
                dir,
                "config.json rope_scaling is not supported by the trainer (Llama 3.1-style \
                 scaled RoPE)",
            ));
        }
        let need = |key: &str| {
            json_usize(&cfg, key)
                .ok_or_else(|| model_err(dir, format!("config.json has no integer `{key}`")))
        };
        let hidden = need("hidden_size")?;
        let heads = need("num_attention_heads")?;
        let config = ModelConfig {
            family,
            vocab: need("vocab_size")?,
            hidden,
            intermediate: need("intermediate_size")?,
            layers: need("num_hidden_layers")?,
            heads,
            kv_heads: json_usize(&cfg, "num_key_value_heads").unwrap_or(heads),
            head_dim: json_usize(&cfg, "head_dim").unwrap_or(hidden / heads.max(1)),
            rope_theta: cfg
                .get("rope_theta")
                .and_then(|v| v.as_f64())
                .unwrap_or(10_000.0),
            rms_eps: cfg
                .get("rms_norm_eps")
                .and_then(|v| v.as_f64())
                .unwrap_or(1e-6),
            tie_embeddings: cfg
                .get("tie_word_embeddings")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            context_length: json_usize(&cfg, "max_position_embeddings").unwrap_or(4096),
        };
        let mut weights = HashMap::new();
        for f in crate::generate::arch::safetensors_files(dir)? {
            let ts = candle_core::safetensors::load(&f, &Device::Cpu)
                .map_err(|e| model_err(&f, format!("reading safetensors: {e}")))?;
            weights.extend(ts);
        }
        Ok((config, weights))
    }

    #[allow(clippy::type_complexity)]
    fn read_gguf(
        path: &Path,
    ) -> Result<(
        ModelConfig,
        HashMap<String, Tensor>,
        HashMap<String, gguf_file::Value>,
    )> {
        let mut file = std::fs::File::open(path).map_err(|source| FinetuneError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let ct = gguf_file::Content::read(&mut file)
            .map_err(|e| model_err(path, format!("not a readable GGUF file: {e}")))?;
        let md = &ct.metadata;
        let arch = md
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        let family = match arch.as_str() {
            "llama" => Family::Llama,
            "qwen2" => Family::Qwen2,
            "qwen3" => Family::Qwen3,
            other => {
                return Err(model_err(
                    path,
                    format!(
                        "LoRA training on a GGUF base supports llama, qwen2 and qwen3; this \
                         one is `{other}`"
                    ),
                ));
            }
        };
        let u = |key: &str| crate::generate::arch::md_u32(md, &format!("{arch}.{key}"));
        let need = |key: &str| {
            u(key)
                .map(|v| v as usize)
                .ok_or_else(|| model_err(path, format!("GGUF metadata has no `{arch}.{key}`")))
        };
        let f = |key: &str| {
            md.get(&format!("{arch}.{key}"))
                .and_then(|v| v.to_f32().ok())
                .map(f64::from)
        };
        let hidden = need("embedding_length")?;
        let heads = need("attention.head_count")?;
        let kv_heads = u("attention.head_count_kv")
            .map(|v| v as usize)
            .unwrap_or(heads);
        let embd = ct
            .tensor_infos
            .get("token_embd.weight")
            .ok_or_else(|| model_err(path, "GGUF has no token_embd.weight"))?;
        let mut config = ModelConfig {
            family,
            vocab: embd.shape.dims()[0],
            hidden,
            intermediate: need("feed_forward_length")?,
            layers: need("block_count")?,
            heads,
            kv_heads,
            head_dim: hidden / heads.max(1),
            rope_theta: f("rope.freq_base").unwrap_or(10_000.0),
            rms_eps: f("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            tie_embeddings: !ct.tensor_infos.contains_key("output.weight"),
            context_length: u("context_length").map(|v| v as usize).unwrap_or(4096),
        };
        // Qwen3's head_dim is not hidden / heads; llama.cpp records it as the key length.
        if let Some(d) = u("attention.key_length").or(u("rope.dimension_count")) {
            config.head_dim = d as usize;
        }
        let mut weights = HashMap::new();
        let mut names: Vec<&String> = ct.tensor_infos.keys().collect();
        names.sort();
        for name in names {
            let Some(hf) = gguf_to_hf_name(name) else {
                tracing::warn!(tensor = %name, "GGUF tensor not used by the trainer");
                continue;
            };
            let mut t = ct
                .tensor(&mut file, name, &Device::Cpu)
                .and_then(|q| q.dequantize(&Device::Cpu))
                .map_err(|e| model_err(path, format!("dequantising {name}: {e}")))?;
            if family == Family::Llama {
                let n = if hf.contains(".q_proj.") {
                    Some(config.heads)
                } else if hf.contains(".k_proj.") {
                    Some(config.kv_heads)
                } else {
                    None
                };
                if let Some(n) = n {
                    t = unpermute_rows(&t, n)
                        .map_err(|e| model_err(path, format!("un-permuting {name}: {e}")))?;
                }
            }
            weights.insert(hf, t);
        }
        Ok((config, weights, ct.metadata))
    }

    /// Every weight the forward pass reads exists with the shape the config implies.
    fn check_shapes(&self) -> Result<()> {
        let c = &self.config;
        let (q, kv) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let mut expect: Vec<(String, Vec<usize>)> = vec![
            ("model.embed_tokens.weight".into(), vec![c.vocab, c.hidden]),
            ("model.norm.weight".into(), vec![c.hidden]),
        ];
        if !c.tie_embeddings {
            expect.push(("lm_head.weight".into(), vec![c.vocab, c.hidden]));
        }
        for l in 0..c.layers {
            let p = format!("model.layers.{l}");
            for (n, s) in [
                ("input_layernorm.weight", vec![c.hidden]),
                ("post_attention_layernorm.weight", vec![c.hidden]),
                ("self_attn.q_proj.weight", vec![q, c.hidden]),
                ("self_attn.k_proj.weight", vec![kv, c.hidden]),
                ("self_attn.v_proj.weight", vec![kv, c.hidden]),
                ("self_attn.o_proj.weight", vec![c.hidden, q]),
                ("mlp.gate_proj.weight", vec![c.intermediate, c.hidden]),
                ("mlp.up_proj.weight", vec![c.intermediate, c.hidden]),
                ("mlp.down_proj.weight", vec![c.hidden, c.intermediate]),
            ] {
                expect.push((format!("{p}.{n}"), s));
            }
            if c.family == Family::Qwen3 {
                for n in ["self_attn.q_norm.weight", "self_attn.k_norm.weight"] {
                    expect.push((format!("{p}.{n}"), vec![c.head_dim]));
                }
            }
        }
        for (name, shape) in expect {
            match self.weights.get(&name) {
                None => return Err(model_err(&self.path, format!("weight {name} is missing"))),
                Some(t) if t.dims() != shape.as_slice() => {
                    return Err(model_err(
                        &self.path,
                        format!(
                            "weight {name} has shape {:?}, the config implies {shape:?}",
                            t.dims()
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Number of base parameters.
    pub fn num_parameters(&self) -> usize {
        self.weights.values().map(|t| t.elem_count()).sum()
    }

    fn w(&self, name: &str) -> candle_core::Result<&Tensor> {
        self.weights
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("base weight {name} is missing")))
    }

    /// (out, in) of the Linear `module` ("q_proj", …).
    pub fn linear_shape(&self, module: &str) -> Option<(usize, usize)> {
        let c = &self.config;
        let (q, kv) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        Some(match module {
            "q_proj" => (q, c.hidden),
            "k_proj" | "v_proj" => (kv, c.hidden),
            "o_proj" => (c.hidden, q),
            "gate_proj" | "up_proj" => (c.intermediate, c.hidden),
            "down_proj" => (c.hidden, c.intermediate),
            _ => return None,
        })
    }

    fn rms_norm(&self, x: &Tensor, weight: &str) -> candle_core::Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let var = x.sqr()?.mean_keepdim(D::Minus1)?;
        let x = x.broadcast_div(&(var + self.config.rms_eps)?.sqrt()?)?;
        x.to_dtype(dtype)?.broadcast_mul(self.w(weight)?)
    }

    /// `x` (N × in) through the base Linear `name` (full module path) plus its LoRA update.
    /// The base weight is frozen ([`ops::frozen_linear`]): backward computes no gradient
    /// for it.
    fn linear(
        &self,
        name: &str,
        x: &Tensor,
        lora: Option<&LoraWeights>,
        dropout: &mut Option<Dropout>,
    ) -> candle_core::Result<Tensor> {
        let w = self.w(&format!("{name}.weight"))?;
        let mut y = ops::frozen_linear(x, w)?;
        if let Some(b) = self.weights.get(&format!("{name}.bias")) {
            y = y.broadcast_add(b)?;
        }
        if let Some(lora) = lora
            && let Some(m) = lora.modules.get(name)
        {
            let mut xin = x.to_dtype(DType::F32)?;
            if let Some(d) = dropout.as_mut() {
                xin = d.apply(&xin, lora.config.dropout)?;
            }
            let upd = xin
                .matmul(&m.a.as_tensor().t()?)?
                .matmul(&m.b.as_tensor().t()?)?
                .affine(lora.scale(), 0.0)?;
            let upd = upd.to_dtype(y.dtype())?;
            y = (y + upd)?;
        }
        Ok(y)
    }

    /// RoPE tables and the attention mask of a batch whose rows hold one or more
    /// sequences: `positions[r·t + i]` is the position of token `i` of row `r` inside its
    /// sequence, `segments[r·t + i]` the sequence it belongs to ([`PADDING`] for padding).
    /// A token attends to the earlier tokens of its own sequence only.
    pub(crate) fn attention_context(
        &self,
        b: usize,
        t: usize,
        positions: &[u32],
        segments: &[u32],
    ) -> candle_core::Result<AttentionContext> {
        let d = self.config.head_dim;
        let span = positions.iter().copied().max().unwrap_or(0) as usize + 1;
        let inv: Vec<f32> = (0..d / 2)
            .map(|i| 1.0 / self.config.rope_theta.powf(2.0 * i as f64 / d as f64) as f32)
            .collect();
        let inv = Tensor::from_vec(inv, (1, d / 2), &self.device)?;
        let pos = Tensor::arange(0u32, span as u32, &self.device)?
            .to_dtype(DType::F32)?
            .reshape((span, 1))?;
        let freqs = pos.broadcast_mul(&inv)?;
        let emb = Tensor::cat(&[&freqs, &freqs], 1)?;
        let index = Tensor::new(positions, &self.device)?;
        let table = |t_: Tensor| -> candle_core::Result<Tensor> {
            t_.index_select(&index, 0)?
                .reshape((b, 1, t, d))?
                .to_dtype(self.dtype)
        };
        let (cos, sin) = (table(emb.cos()?)?, table(emb.sin()?)?);
        let mut bias = vec![f32::NEG_INFINITY; b * t * t];
        for r in 0..b {
            let seg = &segments[r * t..(r + 1) * t];
            for i in 0..t {
                let row = &mut bias[(r * t + i) * t..(r * t + i + 1) * t];
                if seg[i] == PADDING {
                    // Never read; attending to itself keeps its softmax finite.
                    row[i] = 0.0;
                    continue;
                }
                for j in 0..=i {
                    if seg[j] == seg[i] {
                        row[j] = 0.0;
                    }
                }
            }
        }
        let bias = Tensor::from_vec(bias, (b, 1, t, t), &self.device)?;
        Ok(AttentionContext { cos, sin, bias })
    }

    /// Token embeddings (batch × seq × hidden) of `ids` (batch × seq). The embedding
    /// matrix is frozen, so the result carries no graph.
    pub(crate) fn embed(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t) = ids.dims2()?;
        self.w("model.embed_tokens.weight")?
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, self.config.hidden))
    }

    /// Decoder layer `l` on `x` (batch × seq × hidden). `dropout` only while training.
    pub(crate) fn layer(
        &self,
        l: usize,
        x: &Tensor,
        ctx: &AttentionContext,
        lora: Option<&LoraWeights>,
        mut dropout: Option<Dropout>,
    ) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let (b, t, _) = x.dims3()?;
        let (hd, nh, nkv) = (c.head_dim, c.heads, c.kv_heads);
        let rope = |x: &Tensor| -> candle_core::Result<Tensor> {
            let x1 = x.narrow(D::Minus1, 0, hd / 2)?;
            let x2 = x.narrow(D::Minus1, hd / 2, hd / 2)?;
            let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
            x.broadcast_mul(&ctx.cos)? + rotated.broadcast_mul(&ctx.sin)?
        };
        let scale = 1.0 / (hd as f64).sqrt();
        let p = format!("model.layers.{l}");
        let h = self
            .rms_norm(x, &format!("{p}.input_layernorm.weight"))?
            .reshape((b * t, c.hidden))?;
        let heads = |y: Tensor, n: usize| -> candle_core::Result<Tensor> {
            y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()
        };
        let mut q = heads(
            self.linear(&format!("{p}.self_attn.q_proj"), &h, lora, &mut dropout)?,
            nh,
        )?;
        let mut k = heads(
            self.linear(&format!("{p}.self_attn.k_proj"), &h, lora, &mut dropout)?,
            nkv,
        )?;
        if c.family == Family::Qwen3 {
            q = self.rms_norm(&q, &format!("{p}.self_attn.q_norm.weight"))?;
            k = self.rms_norm(&k, &format!("{p}.self_attn.k_norm.weight"))?;
        }
        let v = heads(
            self.linear(&format!("{p}.self_attn.v_proj"), &h, lora, &mut dropout)?,
            nkv,
        )?;
        // Scaling q (seq × head_dim) is cheaper than scaling the seq × seq scores.
        let q = (rope(&q)? * scale)?;
        let k = candle_transformers::utils::repeat_kv(rope(&k)?, nh / nkv)?;
        let v = candle_transformers::utils::repeat_kv(v, nh / nkv)?;
        let scores = q
            .matmul(&k.t()?.contiguous()?)?
            .to_dtype(DType::F32)?
            .broadcast_add(&ctx.bias)?;
        let probs = ops::softmax(&scores)?.to_dtype(self.dtype)?;
        let o = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b * t, nh * hd))?;
        let o = self.linear(&format!("{p}.self_attn.o_proj"), &o, lora, &mut dropout)?;
        let x = (x + o.reshape((b, t, c.hidden))?)?;
        let h = self
            .rms_norm(&x, &format!("{p}.post_attention_layernorm.weight"))?
            .reshape((b * t, c.hidden))?;
        let g = self.linear(&format!("{p}.mlp.gate_proj"), &h, lora, &mut dropout)?;
        let u = self.linear(&format!("{p}.mlp.up_proj"), &h, lora, &mut dropout)?;
        let d = self.linear(
            &format!("{p}.mlp.down_proj"),
            &(g.silu()? * u)?,
            lora,
            &mut dropout,
        )?;
        x + d.reshape((b, t, c.hidden))?
    }

    /// Logits (N × vocab, f32) of final hidden states `x` (N × hidden): the last norm and
    /// the output projection.
    pub(crate) fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let head = if self.config.tie_embeddings {
            self.w("model.embed_tokens.weight")?
        } else {
            self.w("lm_head.weight")?
        };
        let x = self.rms_norm(x, "model.norm.weight")?;
        ops::frozen_linear(&x, head)?.to_dtype(DType::F32)
    }

    /// Logits (batch × seq × vocab, f32) of right-padded token ids (batch × seq, u32);
    /// `lengths[b]` real tokens in row `b` (keys beyond it are masked). With
    /// `dropout_seed` (training) layer `l` draws its masks from `layer_seed(seed, l)`.
    ///
    /// One graph through every layer: what tests and the logits checks use. Training
    /// goes through `finetune::step`, which recomputes each layer in the backward pass
    /// instead of keeping every activation, and gets the same gradients.
    pub fn forward(
        &self,
        ids: &Tensor,
        lengths: &[usize],
        lora: Option<&LoraWeights>,
        dropout_seed: Option<u64>,
    ) -> candle_core::Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let mut positions = Vec::with_capacity(b * t);
        let mut segments = Vec::with_capacity(b * t);
        for &len in lengths {
            for i in 0..t {
                positions.push(i as u32);
                segments.push(if i < len { 0 } else { PADDING });
            }
        }
        let ctx = self.attention_context(b, t, &positions, &segments)?;
        let mut x = self.embed(ids)?;
        for l in 0..self.config.layers {
            let dropout = dropout_seed.map(|s| Dropout::new(layer_seed(s, l)));
            x = self.layer(l, &x, &ctx, lora, dropout)?;
        }
        self.logits(&x.reshape((b * t, self.config.hidden))?)?
            .reshape((b, t, self.config.vocab))
    }
}

/// Segment id of padding positions (see [`BaseModel::attention_context`]).
pub const PADDING: u32 = u32::MAX;

/// RoPE tables (batch × 1 × seq × head_dim) and the additive attention mask
/// (batch × 1 × seq × seq, f32) of one batch, shared by every layer.
pub struct AttentionContext {
    cos: Tensor,
    sin: Tensor,
    bias: Tensor,
}

/// The dropout seed of layer `l` in a micro-batch whose seed is `seed`: each layer draws
/// its own masks, so recomputing a layer in the backward pass draws the same ones.
pub fn layer_seed(seed: u64, l: usize) -> u64 {
    mix(seed, l as u64 + 1, 0)
}

/// A seed for the stream `(seed, a, b)`: the splitmix64 finaliser over the combined words.
pub(crate) fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// LoRA hyper-parameters (PEFT's names in `adapter_config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f32,
    /// Module names ("q_proj", …), see [`TARGETABLE`].
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: 16,
            alpha: 32.0,
            dropout: 0.05,
            targets: TARGETABLE.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// The trainable pair of one targeted Linear.
#[derive(Debug)]
pub struct LoraModule {
    /// r × in.
    pub a: Var,
    /// out × r.
    pub b: Var,
}

/// The adapter being trained: one [`LoraModule`] per targeted Linear, keyed by the
/// module's Hugging Face path (`model.layers.0.self_attn.q_proj`).
#[derive(Debug)]
pub struct LoraWeights {
    pub config: LoraConfig,
    pub modules: BTreeMap<String, LoraModule>,
}

impl LoraWeights {
    /// Fresh adapter: `A` Kaiming-uniform (bound 1/√in, PEFT's `kaiming_uniform_(a=√5)`),
    /// `B` zeros, f32 on the base's device.
    pub fn new(base: &BaseModel, config: LoraConfig, seed: u64) -> Result<Self> {
        if config.r == 0 {
            return Err(FinetuneError::Invalid("--r must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&config.dropout) {
            return Err(FinetuneError::Invalid(format!(
                "--dropout must be in [0, 1), got {}",
                config.dropout
            )));
        }
        if config.targets.is_empty() {
            return Err(FinetuneError::Invalid(
                "--target-modules names no module".into(),
            ));
        }
        for t in &config.targets {
            if base.linear_shape(t).is_none() {
                return Err(FinetuneError::Invalid(format!(
                    "target module `{t}` is not one of {}",
                    TARGETABLE.join(", ")
                )));
            }
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut modules = BTreeMap::new();
        for l in 0..base.config.layers {
            for t in TARGETABLE
                .iter()
                .filter(|t| config.targets.iter().any(|x| x.as_str() == **t))
            {
                let (out, inp) = base.linear_shape(t).expect("checked above");
                let bound = 1.0 / (inp as f32).sqrt();
                let a: Vec<f32> = (0..config.r * inp)
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                let a = Tensor::from_vec(a, (config.r, inp), &base.device)
                    .and_then(|t| Var::from_tensor(&t))
                    .map_err(compute("initialising LoRA A"))?;
                let b = Var::zeros((out, config.r), DType::F32, &base.device)
                    .map_err(compute("initialising LoRA B"))?;
                let group = if matches!(*t, "gate_proj" | "up_proj" | "down_proj") {
                    "mlp"
                } else {
                    "self_attn"
                };
                modules.insert(format!("model.layers.{l}.{group}.{t}"), LoraModule { a, b });
            }
        }
        Ok(Self { config, modules })
    }

    /// `alpha / r`.
    pub fn scale(&self) -> f64 {
        self.config.alpha / self.config.r as f64
    }

    /// Every trainable tensor with its PEFT name
    /// (`base_model.model.<module>.lora_A.weight`), in a fixed order.
    pub fn named_vars(&self) -> Vec<(String, &Var)> {
        let mut v = Vec::with_capacity(self.modules.len() * 2);
        for (m, w) in &self.modules {
            v.push((format!("base_model.model.{m}.lora_A.weight"), &w.a));
            v.push((format!("base_model.model.{m}.lora_B.weight"), &w.b));
        }
        v
    }

    /// Number of trainable parameters.
    pub fn num_parameters(&self) -> usize {
        self.named_vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Replace every tensor by the one of the same PEFT name in `tensors` (a checkpoint
    /// or a saved adapter); all must be present with the same shapes.
    pub fn set_from(&self, tensors: &HashMap<String, Tensor>, source: &Path) -> Result<()> {
        for (name, var) in self.named_vars() {
            let t = tensors.get(&name).ok_or_else(|| {
                FinetuneError::Invalid(format!("{}: tensor {name} is missing", source.display()))
            })?;
            if t.dims() != var.dims() {
                return Err(FinetuneError::Invalid(format!(
                    "{}: tensor {name} has shape {:?}, expected {:?}",
                    source.display(),
                    t.dims(),
                    var.dims()
                )));
            }
            var.set(
                &t.to_dtype(DType::F32)
                    .and_then(|t| t.to_device(var.device()))
                    .map_err(compute("restoring LoRA weights"))?,
            )
            .map_err(compute("restoring LoRA weights"))?;
        }
        Ok(())
    }
}

/// Inverted dropout on the LoRA inputs, from a seeded generator so that a run (and a
/// resumed run) draws the same masks.
pub struct Dropout {
    rng: StdRng,
}

impl Dropout {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn apply(&mut self, x: &Tensor, p: f32) -> candle_core::Result<Tensor> {
        if p <= 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 / (1.0 - p);
        let mask: Vec<f32> = (0..x.elem_count())
            .map(|_| {
                if self.rng.random::<f32>() < p {
                    0.0
                } else {
                    keep
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?;
        x * mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::arch::tests::{max_diff, write_tiny_qwen2, write_tiny_qwen3};
    use crate::generate::arch::{self, GgufWeights};

    /// Last-position logits of our forward (no LoRA) and of candle-transformers' model.
    fn compare_with_inference(path: &Path, ids: &[u32], tolerance: f32) {
        let base = BaseModel::load(path, &Device::Cpu).unwrap();
        let lora = LoraWeights::new(&base, LoraConfig::default(), 1).unwrap();
        let input = Tensor::new(ids, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        // Zero B: the adapter must not change anything.
        let ours = base
            .forward(&input, &[ids.len()], Some(&lora), None)
            .unwrap()
            .get(0)
            .unwrap()
            .get(ids.len() - 1)
            .unwrap();
        let mut reference = arch::load(path, &Device::Cpu, GgufWeights::F32, None).unwrap();
        let expected = reference.forward(ids, 0).unwrap();
        let d = max_diff(&ours, &expected);
        assert!(d < tolerance, "{}: logits differ by {d}", path.display());
    }

    #[test]
    fn tiny_qwen2_forward_matches_candle_transformers() {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_qwen2(tmp.path(), 7);
        compare_with_inference(tmp.path(), &[3, 77, 120, 9, 45, 200, 1, 64], 1e-4);
    }

    #[test]
    fn tiny_qwen3_forward_matches_candle_transformers_from_folder_and_gguf() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("qwen3");
        write_tiny_qwen3(&dir, 9);
        let ids = [3, 77, 120, 9, 45, 200, 1, 64];
        compare_with_inference(&dir, &ids, 1e-4);
        // The GGUF llama.cpp layout (attn_q_norm, key_length = 16) reads back the same
        // model; both sides dequantise the same q8_0 weights and run different kernels
        // (candle's quantized_qwen3): 1e-4 of the logits' scale (13.5) apart, as SmolLM2's.
        let gguf = tmp.path().join("qwen3.gguf");
        crate::finetune::quantize::quantize(
            &dir,
            &gguf,
            crate::finetune::quantize::QuantType::Q8_0,
        )
        .unwrap();
        let base = BaseModel::load(&gguf, &Device::Cpu).unwrap();
        assert_eq!(
            (base.config.family, base.config.head_dim),
            (Family::Qwen3, 16)
        );
        compare_with_inference(&gguf, &ids, 2e-3);
    }

    #[test]
    fn smollm2_gguf_forward_matches_candle_transformers() {
        let Some(path) = crate::generate::candle::tests::smollm2() else {
            return;
        };
        compare_with_inference(&path, &[1, 504, 2240, 314, 253, 6233, 30], 2e-3);
    }

    #[test]
    fn padding_does_not_change_the_real_positions() {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_qwen2(tmp.path(), 8);
        let base = BaseModel::load(tmp.path(), &Device::Cpu).unwrap();
        let short = Tensor::new(&[[5u32, 6, 7]], &Device::Cpu).unwrap();
        let padded = Tensor::new(&[[5u32, 6, 7, 0, 0], [9, 8, 7, 6, 5]], &Device::Cpu).unwrap();
        let a = base.forward(&short, &[3], None, None).unwrap();
        let b = base.forward(&padded, &[3, 5], None, None).unwrap();
        let b = b.get(0).unwrap().narrow(0, 0, 3).unwrap();
        let d = max_diff(&a.get(0).unwrap(), &b);
        assert!(d < 1e-5, "padding leaked into real positions: {d}");
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        let t = Tensor::arange(0f32, 48.0, &Device::Cpu)
            .unwrap()
            .reshape((12, 4))
            .unwrap();
        let p = arch::permute_rows(t.clone(), 3).unwrap();
        assert!(max_diff(&p, &t) > 0.0);
        assert_eq!(max_diff(&unpermute_rows(&p, 3).unwrap(), &t), 0.0);
        assert_eq!(
            gguf_to_hf_name("blk.4.ffn_down.weight").as_deref(),
            Some("model.layers.4.mlp.down_proj.weight")
        );
        assert_eq!(
            gguf_to_hf_name("blk.0.attn_q.bias").as_deref(),
            Some("model.layers.0.self_attn.q_proj.bias")
        );
    }
}
