//! `zhiku model quantize`: a Hugging Face folder (a merged model) → one GGUF file that
//! zhiku's generator loads, quantised with candle (`QTensor::quantize`, `gguf_file::write`).
//!
//! - **Architectures**: `llama`, `qwen2`, `qwen3` (the GGUF paths of the generator);
//!   ChatGLM/GLM-4 have no GGUF path there and stay safetensors.
//! - **Tensors** get llama.cpp's names (`token_embd`, `blk.N.attn_q`, `ffn_down`, …). Llama
//!   q/k rows are permuted for the interleaved RoPE of llama.cpp's `llama` architecture
//!   (`arch::permute_rows`, as `convert_hf_to_gguf.py` does); Qwen uses the NeoX RoPE and
//!   keeps its order.
//! - **Types**: one-dimensional tensors (norms, biases) stay F32, as llama.cpp keeps them.
//!   Every matrix gets the asked type when its row length is a multiple of the type's block
//!   (32 for Q8_0/Q4_0, 256 for Q4_K). A k-quant that does not fit falls back as llama.cpp's
//!   `llama_tensor_get_type` does ("convert_incompatible_tensor") to the legacy 32-block
//!   type of about the same size (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0), so a `q4_k` file
//!   of a model with 576-wide rows (SmolLM2-135M) is mostly 5-bit rather than 8-bit; then
//!   Q8_0, F16, F32, the first that fits. The report counts the tensors per type and lists
//!   each fallback. Unlike llama.cpp's mixed `Q4_K_M`, the output and embedding matrices
//!   are not kept at a higher precision: the asked type is the type of every matrix that
//!   fits it.
//! - **Metadata**: the hyper-parameters candle's and llama.cpp's loaders read
//!   (`{arch}.embedding_length`, `.block_count`, `.attention.head_count(_kv)`, …), the
//!   tokenizer as `tokenizer.ggml.*` (byte-level BPE only: vocabulary, merges, token types,
//!   the pre-tokeniser's name, BOS/EOS ids) and `tokenizer.chat_template`, so the file is
//!   self-contained. A `rope_scaling` the GGUF loaders would ignore is refused rather than
//!   written into a model that would run differently.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Seek, Write};
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use serde::Serialize;
use serde_json::Value as Json;

use super::{FinetuneError, Result};
use crate::generate::tokenizer::{LLAMA3_SPLIT, QWEN2_SPLIT};
use crate::generate::{GenerateError, arch, candle as gen_candle};

/// The types `--type` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantType {
    F32,
    F16,
    Q8_0,
    Q4K,
    Q4_0,
}

impl std::str::FromStr for QuantType {
    type Err = FinetuneError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "f32" => Self::F32,
            "f16" => Self::F16,
            "q8_0" => Self::Q8_0,
            "q4_k" | "q4k" => Self::Q4K,
            "q4_0" => Self::Q4_0,
            _ => {
                return Err(FinetuneError::Invalid(format!(
                    "unknown quantisation type `{s}` (q8_0, q4_k, q4_0; f16 and f32 for \
                     unquantised files)"
                )));
            }
        })
    }
}

impl QuantType {
    fn ggml(self) -> GgmlDType {
        match self {
            Self::F32 => GgmlDType::F32,
            Self::F16 => GgmlDType::F16,
            Self::Q8_0 => GgmlDType::Q8_0,
            Self::Q4K => GgmlDType::Q4K,
            Self::Q4_0 => GgmlDType::Q4_0,
        }
    }

    fn is_quantized(self) -> bool {
        !matches!(self, Self::F32 | Self::F16)
    }

    /// llama.cpp's `general.file_type` (`llama_ftype`).
    fn file_type(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q8_0 => 7,
            Self::Q4K => 15,
        }
    }
}

/// What a quantisation wrote.
#[derive(Debug, Clone, Serialize)]
pub struct QuantizeReport {
    pub arch: String,
    /// The asked type, as llama.cpp names it (`q4_k`).
    pub asked: String,
    /// Bytes of the source safetensors files and of the GGUF written.
    pub in_bytes: u64,
    pub out_bytes: u64,
    /// Tensors per GGUF type, named as llama.cpp names them (`q4_k`, `q5_0`, `f32`).
    pub types: BTreeMap<String, usize>,
    /// Matrices that got another type than asked.
    pub fallbacks: Vec<Fallback>,
}

/// A matrix stored as another type than asked, because its rows do not fit the asked
/// type's block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fallback {
    pub tensor: String,
    /// The type it is stored as (`q5_0`).
    pub stored: String,
    /// Its row length.
    pub row: usize,
}

impl QuantizeReport {
    fn new(arch: String, asked: QuantType, in_bytes: u64) -> Self {
        Self {
            arch,
            asked: type_name(asked.ggml()),
            in_bytes,
            out_bytes: 0,
            types: BTreeMap::new(),
            fallbacks: Vec::new(),
        }
    }

    /// Tensors per type, `q4_k: 30, q5_0: 181, f32: 61`.
    pub fn type_counts(&self) -> String {
        self.types
            .iter()
            .map(|(t, n)| format!("{t}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One line per type fallen back to: how many matrices, which row lengths, an example.
    pub fn fallback_summary(&self) -> Vec<String> {
        let mut by_type: BTreeMap<&str, Vec<&Fallback>> = BTreeMap::new();
        for f in &self.fallbacks {
            by_type.entry(f.stored.as_str()).or_default().push(f);
        }
        by_type
            .into_iter()
            .map(|(stored, list)| {
                let mut rows: Vec<usize> = list.iter().map(|f| f.row).collect();
                rows.sort_unstable();
                rows.dedup();
                let rows: Vec<String> = rows.iter().map(usize::to_string).collect();
                format!(
                    "{} matrices stored as {stored} instead of {}: rows of {} do not fit its \
                     block (e.g. {})",
                    list.len(),
                    self.asked,
                    rows.join(", "),
                    list[0].tensor
                )
            })
            .collect()
    }

    fn add(&mut self, name: &str, dims: &[usize], stored: GgmlDType, fell_back: bool) {
        *self.types.entry(type_name(stored)).or_default() += 1;
        if fell_back {
            self.fallbacks.push(Fallback {
                tensor: name.to_string(),
                stored: type_name(stored),
                row: dims.last().copied().unwrap_or(0),
            });
        }
    }
}

/// llama.cpp's name of a GGML type: `q4_k`, `q5_0`, `f32`.
pub fn type_name(t: GgmlDType) -> String {
    let debug = format!("{t:?}").to_ascii_lowercase();
    match debug.strip_suffix('k') {
        Some(head) if !head.contains('_') => format!("{head}_k"),
        _ => debug,
    }
}

fn invalid(m: impl Into<String>) -> FinetuneError {
    FinetuneError::Invalid(m.into())
}

fn gen_err(e: GenerateError) -> FinetuneError {
    invalid(e.to_string())
}

fn at(path: &Path) -> impl Fn(candle_core::Error) -> FinetuneError + '_ {
    move |e| invalid(format!("{}: {e}", path.display()))
}

/// Hugging Face weight name → llama.cpp tensor name; `None` for tensors a GGUF does not hold,
/// `Err` for a name it has no GGUF name for.
fn gguf_name(hf: &str) -> Option<std::result::Result<String, ()>> {
    if hf.starts_with("model.layers.") && hf.ends_with("rotary_emb.inv_freq") {
        return None;
    }
    Some(crate::generate::tensor_names::hf_to_gguf(hf).ok_or(()))
}

/// The legacy 32-block type llama.cpp stores a k-quant matrix as when its rows are not a
/// multiple of 256 (`llama_tensor_get_type`, "convert_incompatible_tensor"): about the
/// same bits per weight.
fn legacy_partner(k: GgmlDType) -> Option<GgmlDType> {
    match k {
        GgmlDType::Q2K | GgmlDType::Q3K => Some(GgmlDType::Q4_0),
        GgmlDType::Q4K => Some(GgmlDType::Q5_0),
        GgmlDType::Q5K => Some(GgmlDType::Q5_1),
        GgmlDType::Q6K => Some(GgmlDType::Q8_0),
        _ => None,
    }
}

/// The type a tensor is stored as, and whether that is not the asked one.
fn tensor_type(shape: &[usize], asked: GgmlDType) -> (GgmlDType, bool) {
    if shape.len() < 2 {
        return (GgmlDType::F32, false);
    }
    let cols = shape[shape.len() - 1];
    let fits = |t: &GgmlDType| cols.is_multiple_of(t.block_size());
    if fits(&asked) {
        return (asked, false);
    }
    let chosen = legacy_partner(asked)
        .into_iter()
        .chain([GgmlDType::Q8_0, GgmlDType::F16])
        .find(fits)
        .unwrap_or(GgmlDType::F32);
    (chosen, true)
}

fn cfg_usize(cfg: &Json, key: &str) -> Option<usize> {
    cfg.get(key).and_then(|v| v.as_u64()).map(|v| v as usize)
}

/// The pre-tokeniser's llama.cpp name, recognised from tokenizer.json's structure (the
/// names `tokenizer::from_gguf_metadata` turns back into the same pre-tokeniser).
fn pre_tokenizer_name(pre: &Json) -> Option<&'static str> {
    let kind = |v: &Json| v.get("type").and_then(|t| t.as_str()).map(str::to_string);
    let byte_level = |v: &Json| kind(v).as_deref() == Some("ByteLevel");
    match kind(pre).as_deref() {
        Some("ByteLevel") => Some("gpt2"),
        Some("Sequence") => {
            let parts = pre.get("pretokenizers")?.as_array()?;
            let [first, second] = parts.as_slice() else {
                return None;
            };
            if !byte_level(second) {
                return None;
            }
            match kind(first).as_deref() {
                Some("Digits")
                    if first.get("individual_digits").and_then(|d| d.as_bool()) == Some(true) =>
                {
                    Some("smollm")
                }
                Some("Split") => {
                    let regex = first.get("pattern")?.get("Regex")?.as_str()?;
                    if regex == QWEN2_SPLIT {
                        Some("qwen2")
                    } else if regex == LLAMA3_SPLIT {
                        Some("llama-bpe")
                    } else {
                        None
                    }
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// `tokenizer.ggml.*` and `tokenizer.chat_template` metadata from a Hugging Face folder.
pub(crate) fn tokenizer_metadata(dir: &Path, cfg: &Json) -> Result<Vec<(String, Value)>> {
    let path = dir.join("tokenizer.json");
    let tok = arch::read_json(&path).map_err(gen_err)?;
    let model = tok.get("model").cloned().unwrap_or(Json::Null);
    if model.get("type").and_then(|t| t.as_str()) != Some("BPE")
        || tok
            .get("decoder")
            .and_then(|d| d.get("type"))
            .and_then(|t| t.as_str())
            != Some("ByteLevel")
    {
        return Err(invalid(format!(
            "{}: only byte-level BPE tokenizers (Qwen2, Llama 3, SmolLM2) can be written \
             into GGUF metadata that zhiku reads back",
            path.display()
        )));
    }
    let pre =
        pre_tokenizer_name(tok.get("pre_tokenizer").unwrap_or(&Json::Null)).ok_or_else(|| {
            invalid(format!(
                "{}: the pre-tokeniser is none that zhiku rebuilds from GGUF metadata \
                 (GPT-2, SmolLM, Qwen2, Llama 3); the GGUF would tokenise differently",
                path.display()
            ))
        })?;
    let mut by_id: BTreeMap<usize, (String, i32)> = BTreeMap::new();
    for (t, id) in model
        .get("vocab")
        .and_then(|v| v.as_object())
        .into_iter()
        .flatten()
    {
        if let Some(id) = id.as_u64() {
            by_id.insert(id as usize, (t.clone(), 1));
        }
    }
    for a in tok
        .get("added_tokens")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        let (Some(id), Some(content)) = (
            a.get("id").and_then(|v| v.as_u64()),
            a.get("content").and_then(|v| v.as_str()),
        ) else {
            continue;
        };
        let special = a.get("special").and_then(|v| v.as_bool()).unwrap_or(false);
        by_id.insert(
            id as usize,
            (content.to_string(), if special { 3 } else { 4 }),
        );
    }
    let n = by_id.keys().next_back().map_or(0, |m| m + 1);
    let vocab = cfg_usize(cfg, "vocab_size").unwrap_or(n).max(n);
    let mut tokens = Vec::with_capacity(vocab);
    let mut types = Vec::with_capacity(vocab);
    for id in 0..vocab {
        match by_id.get(&id) {
            Some((t, ty)) => {
                tokens.push(Value::String(t.clone()));
                types.push(Value::I32(*ty));
            }
            // Rows of a padded embedding matrix: unused (llama.cpp's type 5).
            None => {
                tokens.push(Value::String(format!("[PAD{id}]")));
                types.push(Value::I32(5));
            }
        }
    }
    let merges: Vec<Value> = model
        .get("merges")
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
        .filter_map(|m| match m {
            Json::String(s) => Some(s.clone()),
            Json::Array(p) => match p.as_slice() {
                [Json::String(a), Json::String(b)] => Some(format!("{a} {b}")),
                _ => None,
            },
            _ => None,
        })
        .map(Value::String)
        .collect();

    let tc_path = dir.join("tokenizer_config.json");
    let tc: Option<Json> = tc_path
        .is_file()
        .then(|| arch::read_json(&tc_path))
        .transpose()
        .map_err(gen_err)?;
    let id_of = |s: &str| {
        by_id
            .iter()
            .find(|(_, (t, _))| t == s)
            .map(|(id, _)| *id as u32)
    };
    let special_id = |key: &str, cfg_key: &str| {
        gen_candle::token_string(tc.as_ref().and_then(|c| c.get(key)))
            .and_then(|s| id_of(&s))
            .or_else(|| arch::json_ids(cfg.get(cfg_key)).first().copied())
    };
    let mut md = vec![
        (
            "tokenizer.ggml.model".to_string(),
            Value::String("gpt2".into()),
        ),
        ("tokenizer.ggml.pre".to_string(), Value::String(pre.into())),
        ("tokenizer.ggml.tokens".to_string(), Value::Array(tokens)),
        ("tokenizer.ggml.token_type".to_string(), Value::Array(types)),
        ("tokenizer.ggml.merges".to_string(), Value::Array(merges)),
        (
            "tokenizer.ggml.add_bos_token".to_string(),
            Value::Bool(
                tc.as_ref()
                    .and_then(|c| c.get("add_bos_token"))
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false),
            ),
        ),
    ];
    if let Some(id) = special_id("bos_token", "bos_token_id") {
        md.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(id)));
    }
    if let Some(id) = special_id("eos_token", "eos_token_id") {
        md.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(id)));
    }
    if let Some(t) = gen_candle::folder_template(dir, tc.as_ref()) {
        md.push(("tokenizer.chat_template".into(), Value::String(t)));
    }
    Ok(md)
}

/// The architecture's hyper-parameters as GGUF metadata.
fn arch_metadata(arch_name: &str, cfg: &Json, dir: &Path) -> Result<Vec<(String, Value)>> {
    let need = |key: &str| {
        cfg_usize(cfg, key)
            .ok_or_else(|| invalid(format!("{}: config.json has no `{key}`", dir.display())))
    };
    if cfg.get("rope_scaling").is_some_and(|v| !v.is_null()) {
        return Err(invalid(format!(
            "{}: config.json sets rope_scaling, which the GGUF loaders ignore; the quantised \
             model would not run like this one",
            dir.display()
        )));
    }
    let hidden = need("hidden_size")?;
    let heads = need("num_attention_heads")?;
    let kv_heads = cfg_usize(cfg, "num_key_value_heads").unwrap_or(heads);
    let head_dim = cfg_usize(cfg, "head_dim").unwrap_or(hidden / heads);
    let eps = cfg
        .get("rms_norm_eps")
        .and_then(|v| v.as_f64())
        .unwrap_or(1e-6) as f32;
    let theta = cfg
        .get("rope_theta")
        .and_then(|v| v.as_f64())
        .unwrap_or(10_000.0) as f32;
    let u = |v: usize| Value::U32(v as u32);
    let key = |k: &str| format!("{arch_name}.{k}");
    let mut md = vec![
        (key("context_length"), u(need("max_position_embeddings")?)),
        (key("embedding_length"), u(hidden)),
        (key("block_count"), u(need("num_hidden_layers")?)),
        (key("feed_forward_length"), u(need("intermediate_size")?)),
        (key("attention.head_count"), u(heads)),
        (key("attention.head_count_kv"), u(kv_heads)),
        (key("attention.layer_norm_rms_epsilon"), Value::F32(eps)),
        (key("rope.freq_base"), Value::F32(theta)),
        (key("rope.dimension_count"), u(head_dim)),
        (key("attention.key_length"), u(head_dim)),
        (key("attention.value_length"), u(head_dim)),
    ];
    if let Some(v) = cfg_usize(cfg, "vocab_size") {
        md.push((key("vocab_size"), u(v)));
    }
    Ok(md)
}

/// Write a GGUF file through a temporary file beside `out`; returns its size.
pub(crate) fn write_gguf(
    out: &Path,
    metadata: &[(&str, &Value)],
    tensors: &[(&str, &QTensor)],
) -> Result<u64> {
    let werr = |source| FinetuneError::Write {
        path: out.to_path_buf(),
        source,
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(werr)?;
    }
    let tmp = out.with_extension("gguf.partial");
    let file = std::fs::File::create(&tmp).map_err(werr)?;
    let mut w = BufWriter::new(file);
    candle_core::quantized::gguf_file::write(&mut w, metadata, tensors).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        invalid(format!("writing {}: {e}", out.display()))
    })?;
    w.flush().map_err(werr)?;
    let size = w.stream_position().map_err(werr)?;
    drop(w);
    std::fs::rename(&tmp, out).map_err(werr)?;
    Ok(size)
}

/// Quantise the Hugging Face folder (or GGUF file) `input` into the GGUF file `out` (see
/// the module doc).
pub fn quantize(input: &Path, out: &Path, ty: QuantType) -> Result<QuantizeReport> {
    let _span = tracing::info_span!("model_quantize", input = %input.display(), ?ty).entered();
    if out.exists() {
        return Err(invalid(format!(
            "{} already exists; choose a new --out",
            out.display()
        )));
    }
    if input.is_file() {
        return requantize(input, out, ty);
    }
    if !input.is_dir() {
        return Err(invalid(format!(
            "{} is not a Hugging Face model folder (config.json, tokenizer.json, \
             *.safetensors; `zhiku model merge` writes one)",
            input.display()
        )));
    }
    let cfg = arch::read_json(&input.join("config.json")).map_err(gen_err)?;
    let arch_name = match arch::folder_arch(&cfg) {
        Some(a @ ("llama" | "qwen2" | "qwen3")) => a,
        other => {
            return Err(invalid(format!(
                "{}: architecture {} has no GGUF path in zhiku's generator (llama, qwen2, \
                 qwen3 have); serve the safetensors folder instead",
                input.display(),
                other.unwrap_or("(unknown)")
            )));
        }
    };
    let tie = cfg
        .get("tie_word_embeddings")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let heads = cfg_usize(&cfg, "num_attention_heads").unwrap_or(1);
    let kv_heads = cfg_usize(&cfg, "num_key_value_heads").unwrap_or(heads);

    let mut metadata: Vec<(String, Value)> = vec![
        (
            "general.architecture".into(),
            Value::String(arch_name.into()),
        ),
        (
            "general.name".into(),
            Value::String(
                input
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
        ),
        ("general.file_type".into(), Value::U32(ty.file_type())),
        ("general.quantization_version".into(), Value::U32(2)),
    ];
    metadata.extend(arch_metadata(arch_name, &cfg, input)?);
    metadata.extend(tokenizer_metadata(input, &cfg)?);

    let files = arch::safetensors_files(input).map_err(gen_err)?;
    let in_bytes = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let mut weights: HashMap<String, Tensor> = HashMap::new();
    for f in &files {
        weights.extend(candle_core::safetensors::load(f, &Device::Cpu).map_err(at(f))?);
    }
    if tie {
        weights.remove("lm_head.weight");
    }
    let mut names: Vec<String> = weights.keys().cloned().collect();
    names.sort();
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    let mut report = QuantizeReport::new(arch_name.to_string(), ty, in_bytes);
    for hf in names {
        let Some(name) = gguf_name(&hf) else {
            continue;
        };
        let name = name.map_err(|()| {
            invalid(format!(
                "{}: weight {hf} has no llama.cpp counterpart for {arch_name}",
                input.display()
            ))
        })?;
        if arch_name == "llama" && (name.ends_with("attn_q.bias") || name.ends_with("attn_k.bias"))
        {
            return Err(invalid(format!(
                "{}: {hf}: attention biases are not part of the llama GGUF layout",
                input.display()
            )));
        }
        let mut t = weights[&hf].to_dtype(DType::F32).map_err(at(input))?;
        if arch_name == "llama" && name.ends_with("attn_q.weight") {
            t = arch::permute_rows(t, heads).map_err(at(input))?;
        } else if arch_name == "llama" && name.ends_with("attn_k.weight") {
            t = arch::permute_rows(t, kv_heads).map_err(at(input))?;
        }
        let (dtype, fell_back) = tensor_type(t.dims(), ty.ggml());
        let q = QTensor::quantize(&t, dtype).map_err(|e| invalid(format!("{name}: {e}")))?;
        report.add(&name, t.dims(), dtype, fell_back && ty.is_quantized());
        tensors.push((name, q));
    }
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    report.out_bytes = write_gguf(out, &md, &refs)?;
    tracing::info!(
        in_bytes = report.in_bytes,
        out_bytes = report.out_bytes,
        fallbacks = report.fallbacks.len(),
        "quantised"
    );
    Ok(report)
}

/// A GGUF file (e.g. `zhiku model merge` of a GGUF base: merged tensors in f32, the rest
/// as stored) re-quantised: every tensor dequantised and stored with the same type rules as
/// a folder, the metadata kept. Quantisation error adds up: from a 4-bit source, a q8_0
/// file is no better than its source.
fn requantize(input: &Path, out: &Path, ty: QuantType) -> Result<QuantizeReport> {
    let read = |source| FinetuneError::Read {
        path: input.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(input).map_err(read)?;
    let in_bytes = file.metadata().map_err(read)?.len();
    let ct = candle_core::quantized::gguf_file::Content::read(&mut file).map_err(at(input))?;
    let arch_name = ct
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    if !matches!(arch_name.as_str(), "llama" | "qwen2" | "qwen3") {
        return Err(invalid(format!(
            "{}: GGUF architecture `{arch_name}` has no path in zhiku's generator",
            input.display()
        )));
    }
    let mut report = QuantizeReport::new(arch_name, ty, in_bytes);
    let mut names: Vec<&String> = ct.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let t = ct
            .tensor(&mut file, name, &Device::Cpu)
            .and_then(|q| q.dequantize(&Device::Cpu))
            .map_err(|e| invalid(format!("{}: {name}: {e}", input.display())))?;
        let (dtype, fell_back) = tensor_type(t.dims(), ty.ggml());
        let q = QTensor::quantize(&t, dtype).map_err(|e| invalid(format!("{name}: {e}")))?;
        report.add(name, t.dims(), dtype, fell_back && ty.is_quantized());
        tensors.push((name.as_str(), q));
    }
    let file_type = Value::U32(ty.file_type());
    let mut md: Vec<(&str, &Value)> = ct
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "general.file_type")
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    md.push(("general.file_type", &file_type));
    md.sort_by(|a, b| a.0.cmp(b.0));
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    report.out_bytes = write_gguf(out, &md, &refs)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::quantized::gguf_file::Content;

    use super::*;
    use crate::finetune::merge::tests::greedy_text;
    use crate::generate::arch::tests::{rand_tensor, write_tiny_qwen2, write_tiny_tokenizer};
    use crate::generate::{CandleGenerator, CandleOptions, ChatMessage, GgufWeights};

    /// Mean NLL per token of a fixed reply.
    fn nll(g: &CandleGenerator) -> f64 {
        let context = g.prompt_ids(&[ChatMessage::user("hello world")]).unwrap();
        let target = g.encode("hello hello world").unwrap();
        g.score(&context, &target).unwrap() / target.len() as f64
    }

    /// A tiny random Llama folder: `hidden` × `inter` matrices, two layers.
    fn write_tiny_llama(dir: &Path, hidden: usize, inter: usize, heads: usize, kv_heads: usize) {
        std::fs::create_dir_all(dir).unwrap();
        let vocab = write_tiny_tokenizer(dir, crate::generate::template::CHATML, "<|im_end|>");
        let layers = 2;
        let cfg = serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": inter,
            "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "max_position_embeddings": 128,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": true,
            "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
        });
        std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
        let kv = kv_heads * hidden / heads;
        let mut s = 77;
        let mut w = HashMap::new();
        w.insert(
            "model.embed_tokens.weight".to_string(),
            rand_tensor(&mut s, &[vocab, hidden], 1.0),
        );
        w.insert(
            "model.norm.weight".to_string(),
            Tensor::ones(hidden, DType::F32, &Device::Cpu).unwrap(),
        );
        for l in 0..layers {
            let p = format!("model.layers.{l}");
            for (n, shape) in [
                ("self_attn.q_proj.weight", [hidden, hidden]),
                ("self_attn.k_proj.weight", [kv, hidden]),
                ("self_attn.v_proj.weight", [kv, hidden]),
                ("self_attn.o_proj.weight", [hidden, hidden]),
                ("mlp.gate_proj.weight", [inter, hidden]),
                ("mlp.up_proj.weight", [inter, hidden]),
                ("mlp.down_proj.weight", [hidden, inter]),
            ] {
                w.insert(format!("{p}.{n}"), rand_tensor(&mut s, &shape, 0.1));
            }
            for n in ["input_layernorm.weight", "post_attention_layernorm.weight"] {
                w.insert(
                    format!("{p}.{n}"),
                    Tensor::ones(hidden, DType::F32, &Device::Cpu).unwrap(),
                );
            }
        }
        candle_core::safetensors::save(&w, dir.join("model.safetensors")).unwrap();
    }

    fn gguf_metadata(path: &Path) -> HashMap<String, Value> {
        let mut f = std::fs::File::open(path).unwrap();
        Content::read(&mut f).unwrap().metadata
    }

    #[test]
    fn qwen2_gguf_loads_generates_and_q8_stays_close() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("qwen2");
        write_tiny_qwen2(&dir, 31);
        let reference = CandleGenerator::load(&CandleOptions::new(&dir)).unwrap();
        let base = nll(&reference);

        let f32_path = tmp.path().join("f32.gguf");
        let r = quantize(&dir, &f32_path, QuantType::F32).unwrap();
        assert_eq!(r.arch, "qwen2");
        let g = CandleGenerator::load(&CandleOptions::new(&f32_path)).unwrap();
        let d = (nll(&g) - base).abs();
        assert!(d < 1e-4, "f32 GGUF differs from the folder by {d}");
        assert_eq!(greedy_text(&g, 10), greedy_text(&reference, 10));

        let q8 = tmp.path().join("q8.gguf");
        let r = quantize(&dir, &q8, QuantType::Q8_0).unwrap();
        assert!(r.fallbacks.is_empty(), "{:?}", r.fallbacks);
        assert!(r.out_bytes * 3 < r.in_bytes, "{r:?}");
        assert_eq!(r.types.get("q8_0"), Some(&(2 + 7 * 2)), "{r:?}");
        let g = CandleGenerator::load(&CandleOptions::new(&q8)).unwrap();
        let d = (nll(&g) - base).abs();
        assert!(d < 0.02 * base.abs(), "q8_0 NLL {} vs f32 {base}", nll(&g));
        assert!(!greedy_text(&g, 6).is_empty());

        let q4 = tmp.path().join("q4.gguf");
        quantize(&dir, &q4, QuantType::Q4_0).unwrap();
        let mut opts = CandleOptions::new(&q4);
        opts.gguf_weights = GgufWeights::Quantized;
        let g = CandleGenerator::load(&opts).unwrap();
        assert!(g.description().contains("Q4_0"), "{}", g.description());
        assert!(!greedy_text(&g, 6).is_empty());

        // Rows of 32 cannot hold Q4_K's blocks of 256: Q5_0 instead, listed.
        let q4k = tmp.path().join("q4k.gguf");
        let r = quantize(&dir, &q4k, QuantType::Q4K).unwrap();
        assert!(
            r.fallbacks.contains(&Fallback {
                tensor: "blk.0.attn_q.weight".into(),
                stored: "q5_0".into(),
                row: 32
            }),
            "{:?}",
            r.fallbacks
        );
        // Never over an existing file.
        let e = quantize(&dir, &q4k, QuantType::Q4K)
            .unwrap_err()
            .to_string();
        assert!(e.contains("already exists"), "{e}");

        // A GGUF re-quantised: the f32 GGUF to q8_0 gives the same file as the folder did.
        let again = tmp.path().join("again.gguf");
        let r = quantize(&f32_path, &again, QuantType::Q8_0).unwrap();
        assert_eq!(r.types.get("q8_0"), Some(&(2 + 7 * 2)), "{r:?}");
        let g = CandleGenerator::load(&CandleOptions::new(&again)).unwrap();
        let from_folder = CandleGenerator::load(&CandleOptions::new(&q8)).unwrap();
        assert_eq!(nll(&g), nll(&from_folder));
    }

    #[test]
    fn llama_gguf_matches_the_folder_and_q4_k_generates() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("llama");
        // Rows of 256 and 512: Q4_K's block fits every matrix.
        write_tiny_llama(&dir, 256, 512, 4, 2);
        let reference = CandleGenerator::load(&CandleOptions::new(&dir)).unwrap();
        let base = nll(&reference);
        // f32: names, q/k permutation and hyper-parameters all right, or the NLL moves.
        let f32_path = tmp.path().join("f32.gguf");
        quantize(&dir, &f32_path, QuantType::F32).unwrap();
        let g = CandleGenerator::load(&CandleOptions::new(&f32_path)).unwrap();
        let d = (nll(&g) - base).abs();
        assert!(d < 1e-3, "llama f32 GGUF differs from the folder by {d}");

        let q4k = tmp.path().join("q4k.gguf");
        let r = quantize(&dir, &q4k, QuantType::Q4K).unwrap();
        assert!(r.fallbacks.is_empty(), "{:?}", r.fallbacks);
        assert_eq!(r.types.get("q4_k"), Some(&(1 + 7 * 2)), "{r:?}");
        let mut opts = CandleOptions::new(&q4k);
        opts.gguf_weights = GgufWeights::Quantized;
        let g = CandleGenerator::load(&opts).unwrap();
        assert!(!greedy_text(&g, 6).is_empty());
        let d = (nll(&g) - base).abs();
        assert!(d < 0.2 * base.abs(), "q4_k NLL {} vs f32 {base}", nll(&g));
    }

    /// SmolLM2-135M's shape: rows of 576 (hidden) do not fit Q4_K's block of 256, rows of
    /// 1536 (ffn_down's input) do. As in llama.cpp, the 576-wide matrices become Q5_0, not
    /// Q8_0, so the "4-bit" file is 4–5-bit and clearly smaller than the q8_0 one.
    #[test]
    fn q4_k_of_576_wide_rows_falls_back_to_q5_0_and_generates() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("llama576");
        write_tiny_llama(&dir, 576, 1536, 9, 3);
        let reference = CandleGenerator::load(&CandleOptions::new(&dir)).unwrap();
        let base = nll(&reference);

        let q8 = tmp.path().join("q8.gguf");
        let r8 = quantize(&dir, &q8, QuantType::Q8_0).unwrap();
        assert!(r8.fallbacks.is_empty(), "{:?}", r8.fallbacks);
        let q4k = tmp.path().join("q4k.gguf");
        let r = quantize(&dir, &q4k, QuantType::Q4K).unwrap();
        // Per layer: q, k, v, o, gate, up (rows of 576) → q5_0; down (rows of 1536) → q4_k;
        // the embedding (rows of 576) → q5_0; two norms per layer and the final one f32.
        assert_eq!(r.types.get("q8_0"), None, "{}", r.type_counts());
        assert_eq!(
            r.type_counts(),
            "f32: 5, q4_k: 2, q5_0: 13",
            "{:?}",
            r.fallbacks
        );
        assert_eq!(r.fallbacks.len(), 13);
        assert!(
            r.fallbacks
                .iter()
                .all(|f| f.stored == "q5_0" && f.row == 576)
        );
        let summary = r.fallback_summary();
        assert_eq!(summary.len(), 1, "{summary:?}");
        assert!(
            summary[0].starts_with("13 matrices stored as q5_0 instead of q4_k: rows of 576"),
            "{summary:?}"
        );
        assert!(
            r.out_bytes * 10 < r8.out_bytes * 7,
            "q4_k {} bytes, q8_0 {} bytes",
            r.out_bytes,
            r8.out_bytes
        );
        // The file as written holds the types reported.
        let mut f = std::fs::File::open(&q4k).unwrap();
        let ct = Content::read(&mut f).unwrap();
        assert_eq!(
            ct.tensor_infos["blk.1.attn_q.weight"].ggml_dtype,
            GgmlDType::Q5_0
        );
        assert_eq!(
            ct.tensor_infos["blk.1.ffn_down.weight"].ggml_dtype,
            GgmlDType::Q4K
        );
        // Loads with the quantised kernels (Q5_0 × Q8_0 dot products) and generates; the
        // f32 copy the CPU loads by default stays close to the folder.
        let mut opts = CandleOptions::new(&q4k);
        opts.gguf_weights = GgufWeights::Quantized;
        let g = CandleGenerator::load(&opts).unwrap();
        assert!(g.description().contains("Q5_0"), "{}", g.description());
        assert!(!greedy_text(&g, 6).is_empty());
        let g = CandleGenerator::load(&CandleOptions::new(&q4k)).unwrap();
        let d = (nll(&g) - base).abs();
        assert!(d < 0.2 * base.abs(), "q4_k NLL {} vs f32 {base}", nll(&g));
    }

    #[test]
    fn tokenizer_from_the_gguf_encodes_like_tokenizer_json() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("qwen2");
        write_tiny_qwen2(&dir, 32);
        let out = tmp.path().join("m.gguf");
        quantize(&dir, &out, QuantType::Q8_0).unwrap();
        let md = gguf_metadata(&out);
        let rebuilt = crate::generate::tokenizer::from_gguf_metadata(&md).unwrap();
        let source = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        for text in [
            "hello world",
            "<|im_start|>user\nhello<|im_end|>\n",
            "年假 2024 天数？ ok",
        ] {
            assert_eq!(
                rebuilt.encode(text, false).unwrap().get_ids(),
                source.encode(text, false).unwrap().get_ids(),
                "{text:?}"
            );
        }
        assert_eq!(
            md["tokenizer.chat_template"].to_string().unwrap(),
            crate::generate::template::CHATML
        );
        assert_eq!(md["tokenizer.ggml.eos_token_id"].to_u32().unwrap(), 2);

        // SmolLM2's real vocabulary (49 152 tokens, digits split): through tokenizer.json
        // and back.
        let Some(smol) = crate::generate::candle::tests::smollm2() else {
            return;
        };
        let smol_md = gguf_metadata(&smol);
        let smol_tok = crate::generate::tokenizer::from_gguf_metadata(&smol_md).unwrap();
        let sdir = tmp.path().join("smol");
        std::fs::create_dir_all(&sdir).unwrap();
        smol_tok.save(sdir.join("tokenizer.json"), false).unwrap();
        let back = tokenizer_metadata(&sdir, &serde_json::json!({})).unwrap();
        let back: HashMap<String, Value> = back.into_iter().collect();
        assert_eq!(back["tokenizer.ggml.pre"].to_string().unwrap(), "smollm");
        let again = crate::generate::tokenizer::from_gguf_metadata(&back).unwrap();
        for text in [
            "Hello, world! 12345",
            "年假怎么计算？",
            "<|im_start|>user\nhi<|im_end|>",
        ] {
            assert_eq!(
                again.encode(text, false).unwrap().get_ids(),
                smol_tok.encode(text, false).unwrap().get_ids(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn pre_tokenizers_are_recognised_or_refused() {
        let md = crate::generate::tokenizer::tests::tiny_gguf_metadata();
        for pre in ["qwen2", "llama-bpe", "smollm", "gpt2"] {
            let mut md = md.clone();
            md.insert("tokenizer.ggml.pre".into(), Value::String(pre.into()));
            let tok = crate::generate::tokenizer::from_gguf_metadata(&md).unwrap();
            let json: Json = serde_json::from_str(&tok.to_string(false).unwrap()).unwrap();
            assert_eq!(pre_tokenizer_name(&json["pre_tokenizer"]), Some(pre));
        }
        let bert = serde_json::json!({"type": "BertPreTokenizer"});
        assert_eq!(pre_tokenizer_name(&bert), None);
        assert_eq!(tensor_type(&[64], GgmlDType::Q4K), (GgmlDType::F32, false));
        assert_eq!(
            tensor_type(&[8, 512], GgmlDType::Q4K),
            (GgmlDType::Q4K, false)
        );
        // llama.cpp's fallbacks: a k-quant → its legacy 32-block partner, then Q8_0, F16.
        assert_eq!(
            tensor_type(&[8, 576], GgmlDType::Q4K),
            (GgmlDType::Q5_0, true)
        );
        assert_eq!(
            tensor_type(&[8, 96], GgmlDType::Q5K),
            (GgmlDType::Q5_1, true)
        );
        assert_eq!(
            tensor_type(&[8, 96], GgmlDType::Q6K),
            (GgmlDType::Q8_0, true)
        );
        assert_eq!(
            tensor_type(&[8, 50], GgmlDType::Q4K),
            (GgmlDType::F16, true)
        );
        assert_eq!(
            tensor_type(&[8, 50], GgmlDType::Q4_0),
            (GgmlDType::F16, true)
        );
        for (t, name) in [
            (GgmlDType::Q4K, "q4_k"),
            (GgmlDType::Q5_0, "q5_0"),
            (GgmlDType::Q8_0, "q8_0"),
            (GgmlDType::F32, "f32"),
            (GgmlDType::BF16, "bf16"),
        ] {
            assert_eq!(type_name(t), name);
        }
    }
}
