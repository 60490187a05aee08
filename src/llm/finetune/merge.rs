//! `zhiku model merge`: a PEFT LoRA adapter merged into its base model for good, with the
//! same loader and merger the generator uses at load time ([`LoraAdapter::load`],
//! `merge_into`), so a merged model answers exactly as base + adapter does.
//!
//! - **Hugging Face folder base** → a Hugging Face folder: `model.safetensors` (sharded with
//!   `model.safetensors.index.json` past [`SHARD_BYTES`]) plus every other file of the base
//!   folder copied as it is (config.json, generation_config.json, the tokenizer files, the
//!   chat template). Each merged weight is computed in f32 (`W + s·B·A`) and stored in the
//!   base weight's own dtype (a bf16 base stays bf16; an f32 base merges exactly).
//! - **GGUF base** → a GGUF file: the targeted tensors dequantised, merged and stored in f32,
//!   every other tensor and all metadata (tokenizer, chat template) as stored; the
//!   quantisation of the rest is kept, so there is no folder to re-quantise from.
//!
//! The output must not exist yet: a merge never overwrites a model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Content};
use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use super::{FinetuneError, Result};
use crate::generate::{GenerateError, LoraAdapter, arch};

/// Largest safetensors shard written, in bytes.
pub const SHARD_BYTES: u64 = 2 << 30;

/// What a merge wrote.
#[derive(Debug, Clone, Serialize)]
pub struct MergeReport {
    pub out: PathBuf,
    /// Weights changed by the adapter.
    pub merged: usize,
    /// Tensors written.
    pub tensors: usize,
    /// Bytes of weights written.
    pub bytes: u64,
    /// Files copied from the base folder.
    pub copied: Vec<String>,
}

fn gen_err(e: GenerateError) -> FinetuneError {
    FinetuneError::Invalid(e.to_string())
}

fn candle_err(what: &Path, e: candle_core::Error) -> FinetuneError {
    FinetuneError::Invalid(format!("{}: {e}", what.display()))
}

fn io_write(path: &Path) -> impl Fn(std::io::Error) -> FinetuneError + '_ {
    move |source| FinetuneError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Merge `adapter` into `base` (a folder or a `.gguf` file), writing `out`.
pub fn merge(base: &Path, adapter: &Path, out: &Path) -> Result<MergeReport> {
    let _span =
        tracing::info_span!("model_merge", base = %base.display(), adapter = %adapter.display())
            .entered();
    if out.exists() {
        return Err(FinetuneError::Invalid(format!(
            "{} already exists; choose a new --out (a merge never overwrites a model)",
            out.display()
        )));
    }
    let adapter = LoraAdapter::load(adapter).map_err(gen_err)?;
    if base.is_dir() {
        merge_folder(base, &adapter, out)
    } else if base.is_file() {
        merge_gguf(base, &adapter, out)
    } else {
        Err(FinetuneError::Invalid(format!(
            "base model {} does not exist (a Hugging Face folder or a .gguf file)",
            base.display()
        )))
    }
}

fn merge_folder(base: &Path, adapter: &LoraAdapter, out: &Path) -> Result<MergeReport> {
    let files = arch::safetensors_files(base).map_err(gen_err)?;
    let mut weights: HashMap<String, Tensor> = HashMap::new();
    for f in &files {
        let ts = candle_core::safetensors::load(f, &Device::Cpu).map_err(|e| candle_err(f, e))?;
        weights.extend(ts);
    }
    let dtypes: HashMap<String, DType> = weights
        .iter()
        .map(|(k, t)| (k.clone(), t.dtype()))
        .collect();
    adapter.merge_into(&mut weights).map_err(gen_err)?;
    let mut merged = 0;
    for d in &adapter.deltas {
        let t = weights
            .get_mut(&d.base_name)
            .expect("merge_into checked the name");
        let dtype = dtypes[&d.base_name];
        if t.dtype() != dtype {
            *t = t.to_dtype(dtype).map_err(|e| candle_err(base, e))?;
        }
        merged += 1;
    }

    let tmp = out.with_file_name(format!(
        ".{}.partial",
        out.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io_write(&tmp))?;
    let bytes = write_safetensors(&tmp, weights.iter().collect(), SHARD_BYTES)?;

    // Every other file of the base folder: config, tokenizer, chat template.
    let mut copied = Vec::new();
    let entries = std::fs::read_dir(base).map_err(|source| FinetuneError::Read {
        path: base.to_path_buf(),
        source,
    })?;
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let weight_file = name.ends_with(".safetensors")
            || name == "model.safetensors.index.json"
            || name.ends_with(".bin")
            || name.ends_with(".pt")
            || name.ends_with(".pth")
            || name.ends_with(".gguf");
        if !path.is_file() || weight_file {
            continue;
        }
        std::fs::copy(&path, tmp.join(&name)).map_err(io_write(&tmp))?;
        copied.push(name);
    }
    copied.sort();
    std::fs::rename(&tmp, out).map_err(io_write(out))?;
    tracing::info!(merged, bytes, "adapter merged");
    Ok(MergeReport {
        out: out.to_path_buf(),
        merged,
        tensors: weights.len(),
        bytes,
        copied,
    })
}

/// Write `weights` as `model.safetensors`, or as numbered shards with an index when they
/// exceed [`SHARD_BYTES`]. Returns the bytes of tensor data.
pub(crate) fn write_safetensors(
    dir: &Path,
    mut weights: Vec<(&String, &Tensor)>,
    shard_bytes: u64,
) -> Result<u64> {
    weights.sort_by(|a, b| a.0.cmp(b.0));
    let size = |t: &Tensor| (t.elem_count() * t.dtype().size_in_bytes()) as u64;
    let total: u64 = weights.iter().map(|(_, t)| size(t)).sum();
    let mut shards: Vec<Vec<(&String, &Tensor)>> = vec![Vec::new()];
    let mut current = 0u64;
    for (name, t) in weights {
        if current + size(t) > shard_bytes && !shards.last().is_none_or(Vec::is_empty) {
            shards.push(Vec::new());
            current = 0;
        }
        current += size(t);
        shards
            .last_mut()
            .expect("one shard at least")
            .push((name, t));
    }
    let n = shards.len();
    let mut index = serde_json::Map::new();
    for (i, shard) in shards.into_iter().enumerate() {
        let file = if n == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{n:05}.safetensors", i + 1)
        };
        for (name, _) in &shard {
            index.insert((*name).clone(), serde_json::Value::String(file.clone()));
        }
        let path = dir.join(&file);
        candle_core::safetensors::save(
            &shard
                .into_iter()
                .map(|(k, t)| (k.clone(), t.clone()))
                .collect::<HashMap<_, _>>(),
            &path,
        )
        .map_err(|e| candle_err(&path, e))?;
    }
    if n > 1 {
        let doc = serde_json::json!({"metadata": {"total_size": total}, "weight_map": index});
        let path = dir.join("model.safetensors.index.json");
        std::fs::write(&path, doc.to_string()).map_err(io_write(&path))?;
    }
    Ok(total)
}

fn merge_gguf(base: &Path, adapter: &LoraAdapter, out: &Path) -> Result<MergeReport> {
    let read = |source| FinetuneError::Read {
        path: base.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(base).map_err(read)?;
    let ct = Content::read(&mut file).map_err(|e| candle_err(base, e))?;
    let arch_name = ct
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    let (merged_ct, mut reader) =
        arch::rewrite_gguf(base, &ct, &mut file, false, Some(adapter), &arch_name)
            .map_err(gen_err)?;
    let mut names: Vec<&String> = merged_ct.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for name in &names {
        let t = merged_ct
            .tensor(&mut reader, name, &Device::Cpu)
            .map_err(|e| candle_err(base, e))?;
        tensors.push((name.as_str(), t));
    }
    let merged = names.iter().filter(|n| adapter_targets(adapter, n)).count();
    let mut md: Vec<(&str, &gguf_file::Value)> = merged_ct
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    md.sort_by(|a, b| a.0.cmp(b.0));
    let refs: Vec<(&str, &candle_core::quantized::QTensor)> =
        tensors.iter().map(|(n, t)| (*n, t)).collect();
    let bytes = super::quantize::write_gguf(out, &md, &refs)?;
    Ok(MergeReport {
        out: out.to_path_buf(),
        merged,
        tensors: tensors.len(),
        bytes,
        copied: Vec::new(),
    })
}

/// Whether a GGUF tensor name is one of the adapter's targets (a layer's weight).
fn adapter_targets(adapter: &LoraAdapter, gguf_name: &str) -> bool {
    crate::generate::tensor_names::layer_gguf_to_hf(gguf_name)
        .is_some_and(|name| adapter.deltas.iter().any(|d| d.base_name == name))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::ops::ControlFlow;

    use super::*;
    use crate::generate::arch::tests::{HEAD_DIM, HIDDEN, INTER, KV_HEADS, write_tiny_qwen2};
    use crate::generate::{CandleGenerator, CandleOptions, ChatMessage, Generator, SamplingParams};

    /// Greedy text of `g` for a fixed prompt.
    pub(crate) fn greedy_text(g: &CandleGenerator, n: usize) -> String {
        let mut out = String::new();
        let params = SamplingParams {
            max_tokens: n,
            temperature: 0.0,
            repetition_penalty: 1.0,
            ..Default::default()
        };
        g.generate(&[ChatMessage::user("hello world")], &params, &mut |t| {
            out.push_str(t);
            ControlFlow::Continue(())
        })
        .unwrap();
        out
    }

    /// A tiny Qwen2 base and an adapter on four of its modules.
    pub(crate) fn base_and_adapter(dir: &Path) -> (PathBuf, PathBuf) {
        let base = dir.join("base");
        write_tiny_qwen2(&base, 21);
        let adapter = dir.join("adapter");
        let kv = KV_HEADS * HEAD_DIM;
        crate::generate::lora::tests::write_adapter(
            &adapter,
            &[
                ("model.layers.0.self_attn.q_proj", (HIDDEN, HIDDEN)),
                ("model.layers.0.self_attn.v_proj", (kv, HIDDEN)),
                ("model.layers.1.mlp.up_proj", (INTER, HIDDEN)),
                ("model.layers.1.mlp.down_proj", (HIDDEN, INTER)),
            ],
            4,
            16.0,
            false,
            5,
        );
        (base, adapter)
    }

    #[test]
    fn merged_folder_answers_exactly_as_base_plus_adapter() {
        let tmp = tempfile::tempdir().unwrap();
        let (base, adapter) = base_and_adapter(tmp.path());
        let out = tmp.path().join("merged");
        let report = merge(&base, &adapter, &out).unwrap();
        assert_eq!(report.merged, 4);
        assert!(
            report.copied.contains(&"config.json".to_string())
                && report.copied.contains(&"tokenizer.json".to_string())
                && report.copied.contains(&"tokenizer_config.json".to_string()),
            "{:?}",
            report.copied
        );
        let merged = CandleGenerator::load(&CandleOptions::new(&out)).unwrap();
        let mut opts = CandleOptions::new(&base);
        opts.lora = Some(adapter.clone());
        let with_adapter = CandleGenerator::load(&opts).unwrap();
        let plain = CandleGenerator::load(&CandleOptions::new(&base)).unwrap();

        let context = merged.prompt_ids(&[ChatMessage::user("hello")]).unwrap();
        let target = merged.encode("hello world").unwrap();
        let a = merged.score(&context, &target).unwrap();
        let b = with_adapter.score(&context, &target).unwrap();
        let c = plain.score(&context, &target).unwrap();
        assert!((a - b).abs() < 1e-4, "merged {a} vs base + adapter {b}");
        assert!(
            (a - c).abs() > 1e-3,
            "the adapter changed nothing: {a} vs {c}"
        );
        assert_eq!(greedy_text(&merged, 12), greedy_text(&with_adapter, 12));

        // Never over an existing model.
        let e = merge(&base, &adapter, &out).unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        // An adapter for another model is the loader's clear error, and nothing is written.
        let other = tmp.path().join("other-adapter");
        crate::generate::lora::tests::write_adapter(
            &other,
            &[("model.layers.0.self_attn.q_proj", (HIDDEN * 2, HIDDEN))],
            2,
            4.0,
            false,
            1,
        );
        let bad_out = tmp.path().join("bad");
        let e = merge(&base, &other, &bad_out).unwrap_err().to_string();
        assert!(e.contains("shape mismatch"), "{e}");
        assert!(!bad_out.exists());
    }

    #[test]
    fn sharded_weights_load_like_one_file() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        let w = write_tiny_qwen2(&base, 3);
        let sharded = tmp.path().join("sharded");
        std::fs::create_dir_all(&sharded).unwrap();
        for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(base.join(f), sharded.join(f)).unwrap();
        }
        // About 10 kB per shard: several shards.
        let total = write_safetensors(&sharded, w.iter().collect(), 10_000).unwrap();
        let expected: usize = w.values().map(|t| t.elem_count() * 4).sum();
        assert_eq!(total, expected as u64);
        let shards = std::fs::read_dir(&sharded)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".safetensors")
            })
            .count();
        assert!(shards > 2, "{shards} shards");
        assert!(sharded.join("model.safetensors.index.json").is_file());
        let a = CandleGenerator::load(&CandleOptions::new(&base)).unwrap();
        let b = CandleGenerator::load(&CandleOptions::new(&sharded)).unwrap();
        let context = a.prompt_ids(&[ChatMessage::user("hello")]).unwrap();
        let target = a.encode("hello world").unwrap();
        assert_eq!(
            a.score(&context, &target).unwrap(),
            b.score(&context, &target).unwrap()
        );
    }

    #[test]
    fn gguf_base_merges_into_a_gguf_that_loads() {
        let Some(smol) = crate::generate::candle::tests::smollm2() else {
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        let adapter = tmp.path().join("adapter");
        crate::generate::lora::tests::write_adapter(
            &adapter,
            &[
                ("model.layers.0.self_attn.q_proj", (576, 576)),
                ("model.layers.1.mlp.down_proj", (576, 1536)),
            ],
            4,
            64.0,
            false,
            3,
        );
        let out = tmp.path().join("merged.gguf");
        let report = merge(&smol, &adapter, &out).unwrap();
        assert_eq!(report.merged, 2);
        let merged = CandleGenerator::load(&CandleOptions::new(&out)).unwrap();
        let mut opts = CandleOptions::new(&smol);
        opts.lora = Some(adapter);
        let with_adapter = CandleGenerator::load(&opts).unwrap();
        let context = merged
            .prompt_ids(&[ChatMessage::user("Name three colours.")])
            .unwrap();
        let target = merged.encode("Red, green and blue.").unwrap();
        let a = merged.score(&context, &target).unwrap();
        let b = with_adapter.score(&context, &target).unwrap();
        assert!(
            (a - b).abs() < 1e-3,
            "merged GGUF {a} vs base + adapter {b}"
        );
        assert_eq!(merged.context_length(), with_adapter.context_length());
    }
}
