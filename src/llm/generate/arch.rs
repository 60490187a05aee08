//! Model architectures the candle generator runs, and how their weights are loaded.
//!
//! | source | architecture (`general.architecture` / config.json `model_type`) | candle module |
//! |---|---|---|
//! | GGUF | `llama` (SmolLM2, Llama, Mistral) | `quantized_llama` |
//! | GGUF | `qwen2` | `quantized_qwen2` |
//! | GGUF | `qwen3` | `quantized_qwen3` |
//! | safetensors | `qwen2` (Qwen2, Qwen2.5) | `qwen2` |
//! | safetensors | `qwen3` | `qwen3` |
//! | safetensors | `llama` | `llama` |
//! | safetensors | `chatglm` (ChatGLM3, GLM-4-9B-chat) | `glm4` (ChatGLM3 is GLM-4 with `rope_ratio` 1) |
//! | safetensors | `glm4` (GLM-4-0414, `Glm4ForCausalLM`) | `glm4_new` |
//!
//! **GGUF on the CPU is dequantised to f32 at load time** (when the f32 copy fits
//! [`F32_GGUF_LIMIT_BYTES`]): every weight becomes a GGUF `F32` tensor, which candle's
//! `QMatMul` runs as a plain f32 matmul (gemm, all cores) instead of the quantised
//! vector-dot kernels. Measured with `cargo bench --bench generate` on SmolLM2-135M
//! Q4_1, 2 cores shared with other builds (load average 3.8), greedy, 32 new tokens:
//!
//! | weights | load | prompt 38 tok: TTFT | 260 tok: TTFT | 975 tok: TTFT | decode |
//! |---|---|---|---|---|---|
//! | Q4_1 as stored | 0.3 s | 2.65 s (14 tok/s) | 18.3 s (14 tok/s) | 60.6 s (16 tok/s) | 2.1–2.3 tok/s |
//! | dequantised f32 | 3.5 s | 0.17 s (219 tok/s) | 0.50 s (516 tok/s) | 4.3 s (228 tok/s) | 25–33 tok/s |
//!
//! f32 wins both phases (prefill becomes one gemm per weight; decode of a 135M model is
//! not memory-bound on this machine), so the mixed "f32 prefill, quantised decode" path
//! was not needed. The f32 copy costs 4 bytes per parameter (SmolLM2: ≈ 540 MB instead of 98 MB).
//! Bigger GGUF models, and every GGUF on CUDA, keep their quantised weights.
//! Safetensors models run in f32 on the CPU and bf16 on CUDA.

use std::collections::HashMap;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{self, Content, TensorInfo};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{
    glm4, glm4_new, llama, quantized_llama, quantized_qwen2, quantized_qwen3, qwen2, qwen3,
};
use serde_json::Value as Json;

use super::lora::LoraAdapter;
use super::{GenerateError, Result};

/// Largest f32 copy of a GGUF model made for the CPU fast path (≈ 500 M parameters).
pub const F32_GGUF_LIMIT_BYTES: u64 = 2 << 30;

/// How GGUF weights are held on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GgufWeights {
    /// f32 when the copy fits [`F32_GGUF_LIMIT_BYTES`] and the device is the CPU, else as
    /// stored.
    #[default]
    Auto,
    /// As stored (quantised matmul kernels).
    Quantized,
    /// Dequantised to f32 at load time.
    F32,
}

/// A causal language model with its own KV cache.
pub(crate) enum Model {
    QLlama(quantized_llama::ModelWeights),
    QQwen2(quantized_qwen2::ModelWeights),
    QQwen3(quantized_qwen3::ModelWeights),
    Llama {
        model: llama::Llama,
        config: llama::Config,
        cache: llama::Cache,
        dtype: DType,
        device: Device,
    },
    Qwen2(qwen2::ModelForCausalLM),
    Qwen3(qwen3::ModelForCausalLM),
    ChatGlm(glm4::Model),
    Glm4(glm4_new::ModelForCausalLM),
}

impl Model {
    /// Feed `ids` at positions `pos..`; returns the f32 logits (vocab) of the last one.
    /// `pos` must equal the number of tokens already in the cache.
    pub fn forward(
        &mut self,
        ids: &[u32],
        pos: usize,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let input = Tensor::new(ids, device)?.unsqueeze(0)?;
        let logits = match self {
            Model::QLlama(m) => m.forward(&input, pos)?,
            Model::QQwen2(m) => m.forward(&input, pos)?,
            Model::QQwen3(m) => m.forward(&input, pos)?,
            Model::Llama { model, cache, .. } => model.forward(&input, pos, cache)?,
            Model::Qwen2(m) => m.forward(&input, pos)?,
            Model::Qwen3(m) => m.forward(&input, pos)?,
            // Tracks its position in its own KV cache.
            Model::ChatGlm(m) => m.forward(&input)?,
            Model::Glm4(m) => m.forward(&input, pos)?,
        };
        let vocab = logits.dim(candle_core::D::Minus1)?;
        let rows = logits.elem_count() / vocab;
        logits
            .reshape((rows, vocab))?
            .get(rows - 1)?
            .to_dtype(DType::F32)
    }

    /// Forget the KV cache (before every generation).
    pub fn clear(&mut self) -> candle_core::Result<()> {
        match self {
            Model::QLlama(m) => m.clear_kv_cache(),
            Model::QQwen2(m) => m.clear_kv_cache(),
            Model::QQwen3(m) => m.clear_kv_cache(),
            Model::Llama {
                config,
                cache,
                dtype,
                device,
                ..
            } => *cache = llama::Cache::new(true, *dtype, config, device)?,
            Model::Qwen2(m) => m.clear_kv_cache(),
            Model::Qwen3(m) => m.clear_kv_cache(),
            Model::ChatGlm(m) => m.reset_kv_cache(),
            Model::Glm4(m) => m.clear_kv_cache(),
        }
        Ok(())
    }
}

/// A loaded model and what the generator needs to know about it.
pub(crate) struct Loaded {
    pub model: Model,
    pub device: Device,
    /// `general.architecture` or config.json `model_type`.
    pub arch: String,
    /// The model's own context window (capped by what candle's implementation supports).
    pub context_length: usize,
    /// End-of-sequence ids from config.json / generation_config.json / GGUF metadata.
    pub eos_ids: Vec<u32>,
    /// How the weights are held, for logs and benches ("Q4_1 quantised", "f32", …).
    pub weights: String,
    /// GGUF metadata (tokenizer, chat template), when the model is a GGUF file.
    pub gguf_metadata: Option<HashMap<String, gguf_file::Value>>,
}

impl Loaded {
    pub fn forward(&mut self, ids: &[u32], pos: usize) -> candle_core::Result<Tensor> {
        self.model.forward(ids, pos, &self.device)
    }
}

fn load_err(path: &Path, message: impl Into<String>) -> GenerateError {
    GenerateError::Load {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Load a `.gguf` file or a Hugging Face folder.
pub(crate) fn load(
    path: &Path,
    device: &Device,
    gguf: GgufWeights,
    lora: Option<&LoraAdapter>,
) -> Result<Loaded> {
    if path.is_dir() {
        load_folder(path, device, lora)
    } else if path.is_file() {
        load_gguf(path, device, gguf, lora)
    } else {
        Err(load_err(
            path,
            "no such file or folder (expected a .gguf file or a Hugging Face folder with \
             config.json, tokenizer.json and *.safetensors; scripts/fetch-models.sh writes \
             the default SmolLM2 GGUF)",
        ))
    }
}

// --- GGUF -------------------------------------------------------------------------------

pub(crate) fn md_u32(md: &HashMap<String, gguf_file::Value>, key: &str) -> Option<u32> {
    let v = md.get(key)?;
    v.to_u32()
        .ok()
        .or_else(|| v.to_u64().ok().map(|x| x as u32))
        .or_else(|| v.to_i32().ok().map(|x| x as u32))
}

// Hugging Face weight name → GGUF tensor name (llama.cpp's naming), for LoRA on GGUF.
use super::tensor_names::layer_hf_to_gguf as hf_to_gguf_name;

/// llama.cpp's conversion permutes the rows of llama q/k weights for its interleaved
/// RoPE; a LoRA update (in Hugging Face row order) gets the same permutation.
pub(crate) fn permute_rows(t: Tensor, n_head: usize) -> candle_core::Result<Tensor> {
    let (out, inp) = t.dims2()?;
    t.reshape((n_head, 2, out / n_head / 2, inp))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, inp))
}

fn f32_size(ct: &Content) -> u64 {
    ct.tensor_infos
        .values()
        .map(|i| i.shape.elem_count() as u64 * 4)
        .sum()
}

fn load_gguf(
    path: &Path,
    device: &Device,
    mode: GgufWeights,
    lora: Option<&LoraAdapter>,
) -> Result<Loaded> {
    let _span = tracing::info_span!("gguf_load", path = %path.display()).entered();
    let mut file =
        std::fs::File::open(path).map_err(|e| load_err(path, format!("cannot open: {e}")))?;
    let ct = Content::read(&mut file)
        .map_err(|e| load_err(path, format!("not a readable GGUF file: {e}")))?;
    let arch = ct
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    if !matches!(arch.as_str(), "llama" | "qwen2" | "qwen3") {
        return Err(load_err(
            path,
            format!(
                "GGUF architecture `{arch}` is not supported (supported: llama, qwen2, \
                 qwen3; ChatGLM/GLM-4 load from a safetensors folder)"
            ),
        ));
    }
    let f32_bytes = f32_size(&ct);
    let dequantize = match mode {
        GgufWeights::Quantized => false,
        GgufWeights::F32 => true,
        GgufWeights::Auto => device.is_cpu() && f32_bytes <= F32_GGUF_LIMIT_BYTES,
    };
    let stored = {
        let mut kinds: Vec<String> = ct
            .tensor_infos
            .values()
            .map(|i| format!("{:?}", i.ggml_dtype))
            .collect();
        kinds.sort();
        kinds.dedup();
        kinds.join("+")
    };
    let md = ct.metadata.clone();
    let ctx_key = format!("{arch}.context_length");
    let mut context_length = md_u32(&md, &ctx_key).unwrap_or(4096) as usize;
    if arch == "llama" && context_length > quantized_llama::MAX_SEQ_LEN {
        // candle's quantized_llama precomputes RoPE for MAX_SEQ_LEN positions only.
        context_length = quantized_llama::MAX_SEQ_LEN;
    }
    let eos_ids: Vec<u32> = md_u32(&md, "tokenizer.ggml.eos_token_id")
        .into_iter()
        .collect();

    let started = std::time::Instant::now();
    let model = if dequantize || lora.is_some() {
        let (ct2, mut reader) = rewrite_gguf(path, &ct, &mut file, dequantize, lora, &arch)?;
        build_gguf(path, &arch, ct2, &mut reader, device)?
    } else {
        build_gguf(path, &arch, ct, &mut file, device)?
    };
    let weights = if dequantize {
        format!("f32 (dequantised from {stored}, {} MB)", f32_bytes >> 20)
    } else if lora.is_some() {
        format!("{stored}, LoRA-merged tensors f32")
    } else {
        format!("{stored} quantised")
    };
    tracing::info!(
        arch,
        weights,
        secs = started.elapsed().as_secs_f64(),
        "GGUF model loaded"
    );
    Ok(Loaded {
        model,
        device: device.clone(),
        arch,
        context_length,
        eos_ids,
        weights,
        gguf_metadata: Some(md),
    })
}

fn build_gguf<R: Read + Seek>(
    path: &Path,
    arch: &str,
    ct: Content,
    reader: &mut R,
    device: &Device,
) -> Result<Model> {
    let err = |e: candle_core::Error| load_err(path, format!("building the {arch} model: {e}"));
    Ok(match arch {
        "llama" => Model::QLlama(
            quantized_llama::ModelWeights::from_gguf(ct, reader, device).map_err(err)?,
        ),
        "qwen2" => Model::QQwen2(
            quantized_qwen2::ModelWeights::from_gguf(ct, reader, device).map_err(err)?,
        ),
        _ => Model::QQwen3(
            quantized_qwen3::ModelWeights::from_gguf(ct, reader, device).map_err(err)?,
        ),
    })
}

/// Copy a GGUF into memory with some tensors replaced by f32: all of them (`dequantize`)
/// or those a LoRA adapter targets (dequantised, merged). The result reads like a file.
pub(crate) fn rewrite_gguf(
    path: &Path,
    ct: &Content,
    file: &mut std::fs::File,
    dequantize: bool,
    lora: Option<&LoraAdapter>,
    arch: &str,
) -> Result<(Content, Cursor<Vec<u8>>)> {
    let _span = tracing::info_span!("gguf_rewrite", dequantize, lora = lora.is_some()).entered();
    let err = |m: String| load_err(path, m);
    // LoRA updates by GGUF tensor name.
    let mut updates: HashMap<String, Tensor> = HashMap::new();
    if let Some(ad) = lora {
        let n_head = md_u32(&ct.metadata, &format!("{arch}.attention.head_count")).unwrap_or(1);
        let n_kv =
            md_u32(&ct.metadata, &format!("{arch}.attention.head_count_kv")).unwrap_or(n_head);
        // Load only the targeted tensors, merge with LoraAdapter's checks.
        let mut targets: HashMap<String, Tensor> = HashMap::new();
        for d in &ad.deltas {
            let Some(name) = hf_to_gguf_name(&d.base_name) else {
                continue;
            };
            if ct.tensor_infos.contains_key(&name) {
                let t = ct
                    .tensor(file, &name, &Device::Cpu)
                    .and_then(|q| q.dequantize(&Device::Cpu))
                    .map_err(|e| err(format!("reading {name}: {e}")))?;
                targets.insert(name, t);
            }
        }
        let permute = arch == "llama";
        ad.merge_with(&mut targets, hf_to_gguf_name, |name, u| {
            if permute && name.ends_with("attn_q.weight") {
                permute_rows(u, n_head as usize)
            } else if permute && name.ends_with("attn_k.weight") {
                permute_rows(u, n_kv as usize)
            } else {
                Ok(u)
            }
        })?;
        updates = targets;
    }

    let mut names: Vec<&String> = ct.tensor_infos.keys().collect();
    names.sort();
    let total: u64 = ct
        .tensor_infos
        .values()
        .map(|i| {
            if dequantize {
                i.shape.elem_count() as u64 * 4
            } else {
                (i.shape.elem_count() / i.ggml_dtype.block_size() * i.ggml_dtype.type_size()) as u64
            }
        })
        .sum();
    let mut buf: Vec<u8> = Vec::with_capacity(total as usize);
    let mut infos = HashMap::with_capacity(names.len());
    for name in names {
        let info = &ct.tensor_infos[name];
        let offset = buf.len() as u64;
        let f32_tensor = if let Some(t) = updates.remove(name) {
            Some(t)
        } else if dequantize && info.ggml_dtype != GgmlDType::F32 {
            Some(
                ct.tensor(file, name, &Device::Cpu)
                    .and_then(|q| q.dequantize(&Device::Cpu))
                    .map_err(|e| err(format!("dequantising {name}: {e}")))?,
            )
        } else {
            None
        };
        let dtype = if let Some(t) = f32_tensor {
            let v: Vec<f32> = t
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .map_err(|e| err(format!("{name}: {e}")))?;
            buf.reserve(v.len() * 4);
            for x in v {
                buf.extend_from_slice(&x.to_le_bytes());
            }
            GgmlDType::F32
        } else {
            let size = info.shape.elem_count() / info.ggml_dtype.block_size()
                * info.ggml_dtype.type_size();
            file.seek(SeekFrom::Start(ct.tensor_data_offset + info.offset))
                .map_err(|e| err(format!("{name}: {e}")))?;
            let start = buf.len();
            buf.resize(start + size, 0);
            file.read_exact(&mut buf[start..])
                .map_err(|e| err(format!("reading {name}: {e} (truncated file?)")))?;
            info.ggml_dtype
        };
        infos.insert(
            name.clone(),
            TensorInfo {
                ggml_dtype: dtype,
                shape: info.shape.clone(),
                offset,
            },
        );
    }
    let content = Content {
        magic: ct.magic,
        metadata: ct.metadata.clone(),
        tensor_infos: infos,
        tensor_data_offset: 0,
    };
    Ok((content, Cursor::new(buf)))
}

// --- Hugging Face folders -------------------------------------------------------------

pub(crate) fn read_json(path: &Path) -> Result<Json> {
    let text =
        std::fs::read_to_string(path).map_err(|e| load_err(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| load_err(path, format!("invalid JSON: {e}")))
}

/// `eos_token_id` as an int or a list.
pub(crate) fn json_ids(v: Option<&Json>) -> Vec<u32> {
    match v {
        Some(Json::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Json::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64())
            .map(|x| x as u32)
            .collect(),
        _ => Vec::new(),
    }
}

/// Which architecture a config.json describes.
pub(crate) fn folder_arch(cfg: &Json) -> Option<&'static str> {
    let model_type = cfg.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
    let archs: Vec<&str> = cfg
        .get("architectures")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    let has = |s: &str| archs.iter().any(|a| a.starts_with(s));
    match model_type {
        "qwen2" => Some("qwen2"),
        "qwen3" => Some("qwen3"),
        "llama" | "mistral" => Some("llama"),
        "chatglm" => Some("chatglm"),
        "glm4" => Some("glm4"),
        _ if has("Qwen2ForCausalLM") => Some("qwen2"),
        _ if has("Qwen3ForCausalLM") => Some("qwen3"),
        _ if has("LlamaForCausalLM") => Some("llama"),
        _ if has("ChatGLM") => Some("chatglm"),
        _ if has("Glm4ForCausalLM") => Some("glm4"),
        _ => None,
    }
}

pub(crate) fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    let mut files: Vec<PathBuf> = if index.is_file() {
        let idx = read_json(&index)?;
        let mut f: Vec<String> = idx
            .get("weight_map")
            .and_then(|m| m.as_object())
            .map(|m| {
                m.values()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        f.sort();
        f.dedup();
        f.into_iter().map(|n| dir.join(n)).collect()
    } else {
        std::fs::read_dir(dir)
            .map_err(|e| load_err(dir, format!("cannot list: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect()
    };
    files.sort();
    if files.is_empty() {
        return Err(load_err(
            dir,
            "no *.safetensors weights in the folder (PyTorch .bin checkpoints are not \
             read: convert them with transformers' save_pretrained(safe_serialization=True))",
        ));
    }
    for f in &files {
        if !f.is_file() {
            return Err(load_err(
                f,
                "listed in model.safetensors.index.json but missing",
            ));
        }
    }
    Ok(files)
}

fn load_folder(dir: &Path, device: &Device, lora: Option<&LoraAdapter>) -> Result<Loaded> {
    let _span = tracing::info_span!("hf_load", path = %dir.display()).entered();
    let cfg = read_json(&dir.join("config.json"))?;
    let arch = folder_arch(&cfg).ok_or_else(|| {
        load_err(
            dir,
            format!(
                "config.json model_type {:?} / architectures {} is not supported (supported: \
                 qwen2, qwen3, llama, chatglm, glm4)",
                cfg.get("model_type")
                    .and_then(|v| v.as_str())
                    .unwrap_or("(none)"),
                cfg.get("architectures")
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            ),
        )
    })?;
    let dtype = if device.is_cpu() {
        DType::F32
    } else {
        DType::BF16
    };
    let files = safetensors_files(dir)?;
    let started = std::time::Instant::now();
    let vb = match lora {
        None => unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device) }
            .map_err(|e| load_err(dir, format!("reading the safetensors weights: {e}")))?,
        Some(ad) => {
            let mut weights: HashMap<String, Tensor> = HashMap::new();
            for f in &files {
                let ts = candle_core::safetensors::load(f, &Device::Cpu)
                    .map_err(|e| load_err(f, format!("reading safetensors: {e}")))?;
                weights.extend(ts);
            }
            ad.merge_into(&mut weights)?;
            VarBuilder::from_tensors(weights, dtype, device)
        }
    };
    let parse = |what: &str, e: serde_json::Error| {
        load_err(
            &dir.join("config.json"),
            format!("not a valid {what} config: {e}"),
        )
    };
    let build = |e: candle_core::Error| {
        load_err(
            dir,
            format!("building the {arch} model: {e} (weights missing or of another shape?)"),
        )
    };
    let (model, context_length) = match arch {
        "qwen2" => {
            let c: qwen2::Config =
                serde_json::from_value(cfg.clone()).map_err(|e| parse("Qwen2", e))?;
            let ctx = c.max_position_embeddings;
            (
                Model::Qwen2(qwen2::ModelForCausalLM::new(&c, vb).map_err(build)?),
                ctx,
            )
        }
        "qwen3" => {
            let c: qwen3::Config =
                serde_json::from_value(cfg.clone()).map_err(|e| parse("Qwen3", e))?;
            let ctx = c.max_position_embeddings;
            (
                Model::Qwen3(qwen3::ModelForCausalLM::new(&c, vb).map_err(build)?),
                ctx,
            )
        }
        "llama" => {
            let c: llama::LlamaConfig =
                serde_json::from_value(cfg.clone()).map_err(|e| parse("Llama", e))?;
            let ctx = c.max_position_embeddings;
            let config = c.into_config(false);
            let model = llama::Llama::load(vb, &config).map_err(build)?;
            let cache = llama::Cache::new(true, dtype, &config, device).map_err(build)?;
            (
                Model::Llama {
                    model,
                    config,
                    cache,
                    dtype,
                    device: device.clone(),
                },
                ctx,
            )
        }
        "chatglm" => {
            let c: glm4::Config =
                serde_json::from_value(cfg.clone()).map_err(|e| parse("ChatGLM", e))?;
            let ctx = c.seq_length;
            (
                Model::ChatGlm(glm4::Model::new(&c, vb).map_err(build)?),
                ctx,
            )
        }
        _ => {
            let c: glm4_new::Config =
                serde_json::from_value(cfg.clone()).map_err(|e| parse("GLM-4", e))?;
            let ctx = c.max_position_embeddings;
            (
                Model::Glm4(glm4_new::ModelForCausalLM::new(&c, vb).map_err(build)?),
                ctx,
            )
        }
    };
    let mut eos_ids = json_ids(cfg.get("eos_token_id"));
    let gen_cfg = dir.join("generation_config.json");
    if gen_cfg.is_file()
        && let Ok(g) = read_json(&gen_cfg)
    {
        eos_ids.extend(json_ids(g.get("eos_token_id")));
    }
    tracing::info!(
        arch,
        ?dtype,
        secs = started.elapsed().as_secs_f64(),
        lora = lora.is_some(),
        "model loaded"
    );
    Ok(Loaded {
        model,
        device: device.clone(),
        arch: arch.to_string(),
        context_length,
        eos_ids,
        weights: format!("{dtype:?} safetensors"),
        gguf_metadata: None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Deterministic pseudo-random tensor, uniform in ±`scale` (splitmix64).
    pub(crate) fn rand_tensor(state: &mut u64, shape: &[usize], scale: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = *state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    pub(crate) const HIDDEN: usize = 32;
    pub(crate) const INTER: usize = 64;
    pub(crate) const LAYERS: usize = 2;
    pub(crate) const HEADS: usize = 4;
    pub(crate) const KV_HEADS: usize = 2;
    pub(crate) const HEAD_DIM: usize = HIDDEN / HEADS;

    /// A tiny byte-level BPE tokenizer.json + tokenizer_config.json (ChatML template)
    /// in `dir`; returns the vocabulary size.
    pub(crate) fn write_tiny_tokenizer(dir: &Path, template: &str, eos: &str) -> usize {
        let md = crate::generate::tokenizer::tests::tiny_gguf_metadata();
        let tok = crate::generate::tokenizer::from_gguf_metadata(&md).unwrap();
        tok.save(dir.join("tokenizer.json"), false).unwrap();
        let tc = serde_json::json!({"chat_template": template, "eos_token": eos,
                                    "bos_token": null});
        std::fs::write(dir.join("tokenizer_config.json"), tc.to_string()).unwrap();
        tok.get_vocab_size(true)
    }

    /// Tiny random Qwen2 folder (config.json, model.safetensors, tokenizer files).
    /// Returns the weights as written (for LoRA reference computations).
    pub(crate) fn write_tiny_qwen2(dir: &Path, seed: u64) -> HashMap<String, Tensor> {
        std::fs::create_dir_all(dir).unwrap();
        let vocab = write_tiny_tokenizer(dir, crate::generate::template::CHATML, "<|im_end|>");
        let cfg = serde_json::json!({
            "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
            "vocab_size": vocab, "hidden_size": HIDDEN, "intermediate_size": INTER,
            "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
            "num_key_value_heads": KV_HEADS, "max_position_embeddings": 128,
            "sliding_window": 128, "max_window_layers": LAYERS, "tie_word_embeddings": false,
            "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "use_sliding_window": false,
            "hidden_act": "silu", "eos_token_id": 2, "bos_token_id": 1,
        });
        std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
        let mut s = seed;
        let mut w = HashMap::new();
        let kv = KV_HEADS * HEAD_DIM;
        w.insert(
            "model.embed_tokens.weight".into(),
            rand_tensor(&mut s, &[vocab, HIDDEN], 1.0),
        );
        w.insert(
            "lm_head.weight".into(),
            rand_tensor(&mut s, &[vocab, HIDDEN], 0.5),
        );
        w.insert(
            "model.norm.weight".into(),
            Tensor::ones(HIDDEN, DType::F32, &Device::Cpu).unwrap(),
        );
        for l in 0..LAYERS {
            let p = format!("model.layers.{l}");
            let mut put = |n: &str, shape: &[usize], sc: f32| {
                w.insert(format!("{p}.{n}"), rand_tensor(&mut s, shape, sc));
            };
            put("self_attn.q_proj.weight", &[HIDDEN, HIDDEN], 0.3);
            put("self_attn.q_proj.bias", &[HIDDEN], 0.1);
            put("self_attn.k_proj.weight", &[kv, HIDDEN], 0.3);
            put("self_attn.k_proj.bias", &[kv], 0.1);
            put("self_attn.v_proj.weight", &[kv, HIDDEN], 0.3);
            put("self_attn.v_proj.bias", &[kv], 0.1);
            put("self_attn.o_proj.weight", &[HIDDEN, HIDDEN], 0.3);
            put("mlp.gate_proj.weight", &[INTER, HIDDEN], 0.3);
            put("mlp.up_proj.weight", &[INTER, HIDDEN], 0.3);
            put("mlp.down_proj.weight", &[HIDDEN, INTER], 0.3);
            for n in ["input_layernorm.weight", "post_attention_layernorm.weight"] {
                w.insert(
                    format!("{p}.{n}"),
                    Tensor::ones(HIDDEN, DType::F32, &Device::Cpu).unwrap(),
                );
            }
        }
        candle_core::safetensors::save(&w, dir.join("model.safetensors")).unwrap();
        w
    }

    /// Tiny random Qwen3 folder: no q/k/v biases, per-head q/k norms, and a head_dim
    /// (16) that is not hidden / heads, as in the real Qwen3 models.
    pub(crate) fn write_tiny_qwen3(dir: &Path, seed: u64) -> HashMap<String, Tensor> {
        std::fs::create_dir_all(dir).unwrap();
        let vocab = write_tiny_tokenizer(dir, crate::generate::template::CHATML, "<|im_end|>");
        let head_dim = 16;
        let cfg = serde_json::json!({
            "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
            "vocab_size": vocab, "hidden_size": HIDDEN, "intermediate_size": INTER,
            "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "head_dim": head_dim,
            "num_key_value_heads": KV_HEADS, "max_position_embeddings": 128,
            "attention_bias": false, "sliding_window": null, "max_window_layers": LAYERS,
            "tie_word_embeddings": true, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
            "use_sliding_window": false, "hidden_act": "silu", "eos_token_id": 2,
            "bos_token_id": 1,
        });
        std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
        let mut s = seed;
        let mut w = HashMap::new();
        let (q, kv) = (HEADS * head_dim, KV_HEADS * head_dim);
        w.insert(
            "model.embed_tokens.weight".into(),
            rand_tensor(&mut s, &[vocab, HIDDEN], 1.0),
        );
        w.insert(
            "model.norm.weight".into(),
            Tensor::ones(HIDDEN, DType::F32, &Device::Cpu).unwrap(),
        );
        for l in 0..LAYERS {
            let p = format!("model.layers.{l}");
            let mut put = |n: &str, shape: &[usize], sc: f32| {
                w.insert(format!("{p}.{n}"), rand_tensor(&mut s, shape, sc));
            };
            put("self_attn.q_proj.weight", &[q, HIDDEN], 0.3);
            put("self_attn.k_proj.weight", &[kv, HIDDEN], 0.3);
            put("self_attn.v_proj.weight", &[kv, HIDDEN], 0.3);
            put("self_attn.o_proj.weight", &[HIDDEN, q], 0.3);
            put("mlp.gate_proj.weight", &[INTER, HIDDEN], 0.3);
            put("mlp.up_proj.weight", &[INTER, HIDDEN], 0.3);
            put("mlp.down_proj.weight", &[HIDDEN, INTER], 0.3);
            // Norm weights away from 1, so a missing or misplaced norm shows.
            let mut norm = |n: &str, len: usize| {
                let t = (rand_tensor(&mut s, &[len], 0.5) + 1.0).unwrap();
                w.insert(format!("{p}.{n}"), t);
            };
            norm("self_attn.q_norm.weight", head_dim);
            norm("self_attn.k_norm.weight", head_dim);
            norm("input_layernorm.weight", HIDDEN);
            norm("post_attention_layernorm.weight", HIDDEN);
        }
        candle_core::safetensors::save(&w, dir.join("model.safetensors")).unwrap();
        w
    }

    /// Tiny random ChatGLM3/GLM-4 (`model_type: chatglm`) folder.
    pub(crate) fn write_tiny_glm(dir: &Path, seed: u64) -> HashMap<String, Tensor> {
        std::fs::create_dir_all(dir).unwrap();
        let glm_template = "[gMASK]<sop>{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
        let vocab = write_tiny_tokenizer(dir, glm_template, "<|endoftext|>");
        let groups = 2;
        let kv_channels = HEAD_DIM;
        let cfg = serde_json::json!({
            "architectures": ["ChatGLMModel"], "model_type": "chatglm",
            "num_layers": LAYERS, "padded_vocab_size": vocab, "hidden_size": HIDDEN,
            "ffn_hidden_size": INTER, "kv_channels": kv_channels,
            "num_attention_heads": HEADS, "seq_length": 128, "layernorm_epsilon": 1e-5,
            "rmsnorm": true, "apply_residual_connection_post_layernorm": false,
            "post_layer_norm": true, "add_bias_linear": false, "add_qkv_bias": true,
            "bias_dropout_fusion": true, "multi_query_attention": true,
            "multi_query_group_num": groups, "apply_query_key_layer_scaling": true,
            "attention_softmax_in_fp32": true, "fp32_residual_connection": false,
            "rope_ratio": 1, "eos_token_id": [0, 2],
        });
        std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
        let mut s = seed;
        let mut w = HashMap::new();
        let qkv = HIDDEN + 2 * groups * kv_channels;
        w.insert(
            "transformer.embedding.word_embeddings.weight".into(),
            rand_tensor(&mut s, &[vocab, HIDDEN], 1.0),
        );
        w.insert(
            "transformer.output_layer.weight".into(),
            rand_tensor(&mut s, &[vocab, HIDDEN], 0.5),
        );
        w.insert(
            "transformer.encoder.final_layernorm.weight".into(),
            Tensor::ones(HIDDEN, DType::F32, &Device::Cpu).unwrap(),
        );
        for l in 0..LAYERS {
            let p = format!("transformer.encoder.layers.{l}");
            let mut put = |n: &str, shape: &[usize], sc: f32| {
                w.insert(format!("{p}.{n}"), rand_tensor(&mut s, shape, sc));
            };
            put("self_attention.query_key_value.weight", &[qkv, HIDDEN], 0.3);
            put("self_attention.query_key_value.bias", &[qkv], 0.1);
            put("self_attention.dense.weight", &[HIDDEN, HIDDEN], 0.3);
            put("mlp.dense_h_to_4h.weight", &[2 * INTER, HIDDEN], 0.3);
            put("mlp.dense_4h_to_h.weight", &[HIDDEN, INTER], 0.3);
            for n in ["input_layernorm.weight", "post_attention_layernorm.weight"] {
                w.insert(
                    format!("{p}.{n}"),
                    Tensor::ones(HIDDEN, DType::F32, &Device::Cpu).unwrap(),
                );
            }
        }
        candle_core::safetensors::save(&w, dir.join("model.safetensors")).unwrap();
        w
    }

    /// Largest absolute element-wise difference of two tensors.
    pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// Shapes, determinism and KV-cache equivalence (incremental == full recomputation).
    fn check_forward(dir: &Path, vocab: usize) {
        let mut m = load(dir, &Device::Cpu, GgufWeights::Auto, None).unwrap();
        let ids: Vec<u32> = vec![5, 40, 77, 3, 120, 9, 200, 31];
        m.model.clear().unwrap();
        let full = m.forward(&ids, 0).unwrap();
        assert_eq!(full.dims(), [vocab]);
        m.model.clear().unwrap();
        let again = m.forward(&ids, 0).unwrap();
        assert_eq!(max_diff(&full, &again), 0.0, "forward is not deterministic");
        // Incremental: prefix, then one token at a time.
        m.model.clear().unwrap();
        m.forward(&ids[..5], 0).unwrap();
        m.forward(&ids[5..6], 5).unwrap();
        m.forward(&ids[6..7], 6).unwrap();
        let inc = m.forward(&ids[7..8], 7).unwrap();
        let d = max_diff(&full, &inc);
        assert!(
            d < 1e-4,
            "KV-cache decoding differs from full recomputation by {d}"
        );
        // Different context, different logits (the model does look at its input).
        m.model.clear().unwrap();
        let other = m.forward(&[5, 41, 77, 3, 120, 9, 200, 31], 0).unwrap();
        assert!(max_diff(&full, &other) > 1e-4);
    }

    #[test]
    fn qwen2_tiny_forward_shapes_determinism_kv_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let w = write_tiny_qwen2(tmp.path(), 1);
        let vocab = w["lm_head.weight"].dim(0).unwrap();
        check_forward(tmp.path(), vocab);
        let m = load(tmp.path(), &Device::Cpu, GgufWeights::Auto, None).unwrap();
        assert_eq!((m.arch.as_str(), m.context_length), ("qwen2", 128));
        assert_eq!(m.eos_ids, [2]);
    }

    #[test]
    fn glm_tiny_forward_shapes_determinism_kv_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let w = write_tiny_glm(tmp.path(), 2);
        let vocab = w["transformer.output_layer.weight"].dim(0).unwrap();
        check_forward(tmp.path(), vocab);
        let m = load(tmp.path(), &Device::Cpu, GgufWeights::Auto, None).unwrap();
        assert_eq!((m.arch.as_str(), m.context_length), ("chatglm", 128));
        assert_eq!(m.eos_ids, [0, 2]);
    }

    #[test]
    fn unsupported_architecture_is_a_load_error() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("config.json"), r#"{"model_type": "bert"}"#).unwrap();
        let e = load(tmp.path(), &Device::Cpu, GgufWeights::Auto, None)
            .err()
            .unwrap();
        assert!(
            matches!(&e, GenerateError::Load { message, .. } if message.contains("not supported")),
            "{e}"
        );
        let e = load(
            &tmp.path().join("missing.gguf"),
            &Device::Cpu,
            GgufWeights::Auto,
            None,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("no such file"), "{e}");
    }

    /// Merged model == base model with `W + s·B·A` written explicitly; logits change.
    fn check_lora(dir: &Path, base: &HashMap<String, Tensor>, modules: &[(&str, (usize, usize))]) {
        let ids: Vec<u32> = vec![7, 50, 90, 4, 33];
        let logits = |d: &Path, lora: Option<&LoraAdapter>| {
            let mut m = load(d, &Device::Cpu, GgufWeights::Auto, lora).unwrap();
            m.forward(&ids, 0).unwrap()
        };
        let base_logits = logits(dir, None);
        let ad_dir = dir.join("adapter");
        crate::generate::lora::tests::write_adapter(&ad_dir, modules, 4, 16.0, false, 9);
        let ad = LoraAdapter::load(&ad_dir).unwrap();
        let merged = logits(dir, Some(&ad));

        // The same update, computed by hand into a copy of the weights.
        let reference = dir.join("reference");
        std::fs::create_dir_all(&reference).unwrap();
        for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(dir.join(f), reference.join(f)).unwrap();
        }
        let mut w = base.clone();
        for d in &ad.deltas {
            let upd = d.b.matmul(&d.a).unwrap().affine(16.0 / 4.0, 0.0).unwrap();
            let t = w.get_mut(&d.base_name).unwrap();
            *t = (&*t + upd).unwrap();
        }
        candle_core::safetensors::save(&w, reference.join("model.safetensors")).unwrap();
        let expected = logits(&reference, None);
        let d = max_diff(&merged, &expected);
        assert!(d < 1e-4, "merged LoRA differs from W + s·B·A by {d}");
        assert!(
            max_diff(&merged, &base_logits) > 1e-3,
            "LoRA did not change the logits"
        );
    }

    #[test]
    fn lora_merge_matches_explicit_update_qwen2() {
        let tmp = tempfile::tempdir().unwrap();
        let w = write_tiny_qwen2(tmp.path(), 3);
        let kv = KV_HEADS * HEAD_DIM;
        check_lora(
            tmp.path(),
            &w,
            &[
                ("model.layers.0.self_attn.q_proj", (HIDDEN, HIDDEN)),
                ("model.layers.0.self_attn.v_proj", (kv, HIDDEN)),
                ("model.layers.1.mlp.down_proj", (HIDDEN, INTER)),
            ],
        );
    }

    #[test]
    fn lora_merge_matches_explicit_update_glm() {
        let tmp = tempfile::tempdir().unwrap();
        let w = write_tiny_glm(tmp.path(), 4);
        check_lora(
            tmp.path(),
            &w,
            &[
                (
                    "transformer.encoder.layers.0.self_attention.query_key_value",
                    (HIDDEN + 4 * HEAD_DIM, HIDDEN),
                ),
                (
                    "transformer.encoder.layers.1.self_attention.dense",
                    (HIDDEN, HIDDEN),
                ),
                (
                    "transformer.encoder.layers.1.mlp.dense_h_to_4h",
                    (2 * INTER, HIDDEN),
                ),
                (
                    "transformer.encoder.layers.0.mlp.dense_4h_to_h",
                    (HIDDEN, INTER),
                ),
            ],
        );
    }

    #[test]
    fn lora_shape_mismatch_against_model_is_a_load_error() {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_qwen2(tmp.path(), 5);
        let ad_dir = tmp.path().join("adapter");
        crate::generate::lora::tests::write_adapter(
            &ad_dir,
            &[("model.layers.0.self_attn.q_proj", (HIDDEN * 2, HIDDEN))],
            2,
            4.0,
            false,
            1,
        );
        let ad = LoraAdapter::load(&ad_dir).unwrap();
        let e = load(tmp.path(), &Device::Cpu, GgufWeights::Auto, Some(&ad))
            .err()
            .unwrap();
        assert!(e.to_string().contains("shape mismatch"), "{e}");
    }

    #[test]
    fn hf_names_map_to_gguf_names() {
        assert_eq!(
            hf_to_gguf_name("model.layers.3.self_attn.o_proj.weight").as_deref(),
            Some("blk.3.attn_output.weight")
        );
        assert_eq!(
            hf_to_gguf_name("model.layers.0.mlp.gate_proj.weight").as_deref(),
            Some("blk.0.ffn_gate.weight")
        );
        assert_eq!(hf_to_gguf_name("lm_head.weight"), None);
        // The llama q/k permutation: within each head, rows (0, d/2, 1, d/2+1, …) order.
        let t = Tensor::arange(0f32, 8.0, &Device::Cpu)
            .unwrap()
            .reshape((8, 1))
            .unwrap();
        let p = permute_rows(t, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(p, [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
    }
}
