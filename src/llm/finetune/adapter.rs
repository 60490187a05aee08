//! The trained adapter as PEFT writes it: `adapter_config.json` and
//! `adapter_model.safetensors` with PEFT's tensor names
//! (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`, r × in;
//! `….lora_B.weight`, out × r), so it loads in Python `peft` (`PeftModel.from_pretrained`)
//! and in zhiku's generator (`generate.lora`, merged at load time).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::model::{LoraWeights, compute};
use super::{FinetuneError, Result};

/// The temporary file beside `path` that [`commit`] renames onto it.
pub(crate) fn temp_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Rename the finished temporary file onto `path`: a crash leaves the old file or the
/// new one, never half of one.
pub(crate) fn commit(path: &Path) -> Result<()> {
    std::fs::rename(temp_path(path), path).map_err(|source| FinetuneError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Write `bytes` to `path` atomically (temporary file, then rename).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(temp_path(path), bytes).map_err(|source| FinetuneError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    commit(path)
}

/// Save f32 copies of `tensors` as safetensors at `path`, atomically.
pub(crate) fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let cpu: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?)))
        .collect::<candle_core::Result<_>>()
        .map_err(compute("copying tensors for saving"))?;
    candle_core::safetensors::save(&cpu, temp_path(path))
        .map_err(|e| FinetuneError::Compute(format!("writing {}: {e}", path.display())))?;
    commit(path)
}

/// Save `lora` (trained on the base at `base_name`) into `dir`.
pub fn save(lora: &LoraWeights, base_name: &str, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| FinetuneError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let tensors: HashMap<String, Tensor> = lora
        .named_vars()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    save_tensors(&tensors, &dir.join("adapter_model.safetensors"))?;
    let c = &lora.config;
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_name,
        "r": c.r,
        "lora_alpha": c.alpha,
        "lora_dropout": c.dropout,
        "target_modules": c.targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "use_rslora": false,
        "use_dora": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": null,
    });
    let text = serde_json::to_string_pretty(&config).expect("JSON values serialise");
    write_atomic(&dir.join("adapter_config.json"), text.as_bytes())
}

/// Load a saved adapter's weights into `lora` (same modules and rank).
pub fn load_into(lora: &LoraWeights, dir: &Path) -> Result<()> {
    let path = dir.join("adapter_model.safetensors");
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
        .map_err(|e| FinetuneError::Invalid(format!("{}: {e}", path.display())))?;
    lora.set_from(&tensors, &path)
}
