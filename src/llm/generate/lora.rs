//! PEFT LoRA adapters, merged into the base weights at load time.
//!
//! An adapter folder holds `adapter_config.json` (`r`, `lora_alpha`, `target_modules`,
//! `use_rslora`) and `adapter_model.safetensors` with PEFT names such as
//! `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` (shape r × in) and
//! `….lora_B.weight` (out × r). Merging replaces each targeted weight `W` (out × in) by
//! `W + s·B·A` with `s = lora_alpha / r` (rsLoRA: `lora_alpha / √r`), computed in f32. The
//! module names are whatever the base model uses: Qwen/Llama (`q_proj`, `k_proj`, `v_proj`,
//! `o_proj`, `gate_proj`, `up_proj`, `down_proj`) and ChatGLM/GLM-4 (`query_key_value`,
//! `dense`, `dense_h_to_4h`, `dense_4h_to_h`) both work, because the base weight name is the
//! PEFT name without `base_model.model.` and `.lora_X`.
//!
//! Merged weights cost nothing at inference time; the price is one load per adapter (a
//! knowledge base with its own adapter gets its own generator). GGUF bases: the targeted
//! tensors are dequantised, merged and kept in f32 (see `arch.rs`); the others stay as
//! they are.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::{GenerateError, Result};

#[derive(Debug, Clone, Deserialize)]
struct AdapterConfig {
    r: usize,
    lora_alpha: f64,
    #[serde(default)]
    target_modules: Option<TargetModules>,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    fan_in_fan_out: bool,
    #[serde(default)]
    rank_pattern: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    alpha_pattern: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    use_dora: bool,
    #[serde(default)]
    peft_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum TargetModules {
    List(Vec<String>),
    /// A regex or `all-linear`: every module the adapter file has weights for.
    One(serde::de::IgnoredAny),
}

/// One low-rank update: `W[base_name] += scale · B · A`.
#[derive(Debug, Clone)]
pub struct LoraDelta {
    /// Name of the base weight in Hugging Face naming, e.g.
    /// `model.layers.0.self_attn.q_proj.weight`.
    pub base_name: String,
    /// r × in.
    pub a: Tensor,
    /// out × r.
    pub b: Tensor,
    pub scale: f64,
}

impl LoraDelta {
    /// `scale · B · A` in f32 (out × in).
    pub fn update(&self) -> candle_core::Result<Tensor> {
        let a = self.a.to_dtype(DType::F32)?;
        let b = self.b.to_dtype(DType::F32)?;
        b.matmul(&a)?.affine(self.scale, 0.0)
    }
}

/// A loaded PEFT LoRA adapter.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    pub dir: PathBuf,
    pub deltas: Vec<LoraDelta>,
}

fn lora_err(dir: &Path, message: impl Into<String>) -> GenerateError {
    GenerateError::Load {
        path: dir.display().to_string(),
        message: format!("LoRA adapter: {}", message.into()),
    }
}

impl LoraAdapter {
    /// Read `adapter_config.json` and `adapter_model.safetensors` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let _span = tracing::info_span!("lora_load", dir = %dir.display()).entered();
        let cfg_path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| {
            lora_err(
                dir,
                format!(
                    "cannot read {}: {e} (expected a PEFT adapter folder with \
                     adapter_config.json and adapter_model.safetensors)",
                    cfg_path.display()
                ),
            )
        })?;
        let cfg: AdapterConfig = serde_json::from_str(&text)
            .map_err(|e| lora_err(dir, format!("adapter_config.json: {e}")))?;
        if let Some(t) = cfg.peft_type.as_deref()
            && !t.eq_ignore_ascii_case("lora")
        {
            return Err(lora_err(dir, format!("peft_type {t} is not LORA")));
        }
        if cfg.r == 0 {
            return Err(lora_err(dir, "r is 0"));
        }
        if cfg.fan_in_fan_out {
            return Err(lora_err(
                dir,
                "fan_in_fan_out adapters (GPT-2 Conv1D) are not supported",
            ));
        }
        if cfg.use_dora {
            return Err(lora_err(dir, "DoRA adapters (use_dora) are not supported"));
        }
        if !cfg.rank_pattern.is_empty() || !cfg.alpha_pattern.is_empty() {
            return Err(lora_err(
                dir,
                "per-module rank_pattern/alpha_pattern are not supported; merge the adapter \
                 with PEFT (merge_and_unload) and load the merged model instead",
            ));
        }
        let scale = if cfg.use_rslora {
            cfg.lora_alpha / (cfg.r as f64).sqrt()
        } else {
            cfg.lora_alpha / cfg.r as f64
        };

        let weights_path = dir.join("adapter_model.safetensors");
        if !weights_path.is_file() {
            let hint = if dir.join("adapter_model.bin").is_file() {
                " (only adapter_model.bin found: re-save the adapter with \
                 save_pretrained(..., safe_serialization=True))"
            } else {
                ""
            };
            return Err(lora_err(
                dir,
                format!("{} is missing{hint}", weights_path.display()),
            ));
        }
        let tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu)
            .map_err(|e| lora_err(dir, format!("{}: {e}", weights_path.display())))?;

        // Pair lora_A / lora_B by module.
        let mut a_of: BTreeMap<String, Tensor> = BTreeMap::new();
        let mut b_of: BTreeMap<String, Tensor> = BTreeMap::new();
        for (name, t) in tensors {
            let n = name.replace(".default.", ".");
            if let Some(m) = n.strip_suffix(".lora_A.weight") {
                a_of.insert(m.to_string(), t);
            } else if let Some(m) = n.strip_suffix(".lora_B.weight") {
                b_of.insert(m.to_string(), t);
            } else if n.contains("lora_embedding") || n.contains("lora_magnitude") {
                return Err(lora_err(dir, format!("unsupported adapter tensor {name}")));
            } else {
                tracing::warn!(tensor = %name, "LoRA adapter tensor ignored (not lora_A/lora_B)");
            }
        }
        let mut deltas = Vec::with_capacity(a_of.len());
        for (module, a) in a_of {
            let b = b_of
                .remove(&module)
                .ok_or_else(|| lora_err(dir, format!("{module} has lora_A but no lora_B")))?;
            let (ra, _in) = a
                .dims2()
                .map_err(|e| lora_err(dir, format!("{module}: {e}")))?;
            let (_out, rb) = b
                .dims2()
                .map_err(|e| lora_err(dir, format!("{module}: {e}")))?;
            if ra != cfg.r || rb != cfg.r {
                return Err(lora_err(
                    dir,
                    format!(
                        "{module}: rank of lora_A ({ra}) / lora_B ({rb}) differs from r = {}",
                        cfg.r
                    ),
                ));
            }
            let base = module
                .strip_prefix("base_model.model.")
                .unwrap_or(&module)
                .to_string();
            deltas.push(LoraDelta {
                base_name: format!("{base}.weight"),
                a,
                b,
                scale,
            });
        }
        if let Some(module) = b_of.keys().next() {
            return Err(lora_err(dir, format!("{module} has lora_B but no lora_A")));
        }
        if deltas.is_empty() {
            return Err(lora_err(
                dir,
                "adapter_model.safetensors holds no lora_A/lora_B pairs",
            ));
        }
        // Every listed target module must have weights.
        if let Some(TargetModules::List(targets)) = &cfg.target_modules {
            let present: BTreeSet<&str> = deltas
                .iter()
                .filter_map(|d| {
                    d.base_name
                        .strip_suffix(".weight")
                        .and_then(|m| m.rsplit('.').next())
                })
                .collect();
            for t in targets {
                if !present.contains(t.as_str()) {
                    return Err(lora_err(
                        dir,
                        format!(
                            "target module `{t}` matches no lora_A/lora_B weights in the \
                             adapter (modules with weights: {})",
                            present.iter().copied().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
        }
        tracing::info!(
            modules = deltas.len(),
            r = cfg.r,
            scale,
            rslora = cfg.use_rslora,
            "LoRA adapter loaded"
        );
        Ok(Self {
            dir: dir.to_path_buf(),
            deltas,
        })
    }

    /// Merge into Hugging Face-named base weights (before `VarBuilder::from_tensors`).
    /// Merged weights become f32; every delta must find its weight with the right shape.
    pub fn merge_into(&self, weights: &mut HashMap<String, Tensor>) -> Result<()> {
        self.merge_with(weights, |name| Some(name.to_string()), |_, u| Ok(u))
    }

    /// Merge with a name mapping (`base_name` → key in `weights`, `None` = unsupported)
    /// and a transform applied to each update before it is added (GGUF llama's row
    /// permutation of q/k).
    pub(crate) fn merge_with(
        &self,
        weights: &mut HashMap<String, Tensor>,
        map_name: impl Fn(&str) -> Option<String>,
        transform: impl Fn(&str, Tensor) -> candle_core::Result<Tensor>,
    ) -> Result<()> {
        let _span = tracing::info_span!("lora_merge", dir = %self.dir.display()).entered();
        for d in &self.deltas {
            let key = map_name(&d.base_name).ok_or_else(|| {
                lora_err(
                    &self.dir,
                    format!("{} has no counterpart in this model format", d.base_name),
                )
            })?;
            let w = weights.get(&key).ok_or_else(|| {
                lora_err(
                    &self.dir,
                    format!(
                        "target {} (model weight {key}) is not in the base model: was the \
                         adapter trained on another architecture?",
                        d.base_name
                    ),
                )
            })?;
            let update = d
                .update()
                .and_then(|u| transform(&key, u))
                .map_err(|e| lora_err(&self.dir, format!("{}: {e}", d.base_name)))?;
            if update.dims() != w.dims() {
                return Err(lora_err(
                    &self.dir,
                    format!(
                        "shape mismatch for {}: base weight {:?}, B·A {:?} (adapter for \
                         another model size?)",
                        d.base_name,
                        w.dims(),
                        update.dims()
                    ),
                ));
            }
            let merged = w
                .to_dtype(DType::F32)
                .and_then(|w| w.to_device(&Device::Cpu))
                .and_then(|w| w + update)
                .map_err(|e| lora_err(&self.dir, format!("{}: {e}", d.base_name)))?;
            weights.insert(key, merged);
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Write a random PEFT adapter for `modules` (base names without `.weight`, with their
    /// (out, in) shapes) into `dir`.
    pub(crate) fn write_adapter(
        dir: &Path,
        modules: &[(&str, (usize, usize))],
        r: usize,
        alpha: f64,
        rslora: bool,
        seed: u64,
    ) {
        std::fs::create_dir_all(dir).unwrap();
        let mut targets: Vec<String> = modules
            .iter()
            .map(|(m, _)| m.rsplit('.').next().unwrap().to_string())
            .collect();
        targets.sort();
        targets.dedup();
        let cfg = serde_json::json!({
            "peft_type": "LORA", "r": r, "lora_alpha": alpha, "use_rslora": rslora,
            "target_modules": targets, "lora_dropout": 0.0, "bias": "none",
            "fan_in_fan_out": false,
        });
        std::fs::write(dir.join("adapter_config.json"), cfg.to_string()).unwrap();
        let mut ts = HashMap::new();
        let mut rng = seed;
        for (m, (out, inp)) in modules {
            ts.insert(
                format!("base_model.model.{m}.lora_A.weight"),
                super::super::arch::tests::rand_tensor(&mut rng, &[r, *inp], 0.2),
            );
            ts.insert(
                format!("base_model.model.{m}.lora_B.weight"),
                super::super::arch::tests::rand_tensor(&mut rng, &[*out, r], 0.2),
            );
        }
        candle_core::safetensors::save(&ts, dir.join("adapter_model.safetensors")).unwrap();
    }

    #[test]
    fn merge_adds_scaled_low_rank_update() {
        let tmp = tempfile::tempdir().unwrap();
        write_adapter(tmp.path(), &[("layer.q_proj", (6, 4))], 2, 8.0, false, 1);
        let ad = LoraAdapter::load(tmp.path()).unwrap();
        assert_eq!(ad.deltas.len(), 1);
        assert_eq!(ad.deltas[0].scale, 4.0);
        let base = Tensor::ones((6, 4), DType::F32, &Device::Cpu).unwrap();
        let mut w = HashMap::from([("layer.q_proj.weight".to_string(), base.clone())]);
        ad.merge_into(&mut w).unwrap();
        let d = &ad.deltas[0];
        let expect = (base + d.b.matmul(&d.a).unwrap().affine(4.0, 0.0).unwrap()).unwrap();
        let diff = crate::generate::arch::tests::max_diff(&w["layer.q_proj.weight"], &expect);
        assert!(diff < 1e-6, "{diff}");

        // rsLoRA scale alpha/sqrt(r).
        let tmp2 = tempfile::tempdir().unwrap();
        write_adapter(tmp2.path(), &[("layer.q_proj", (6, 4))], 4, 8.0, true, 1);
        assert_eq!(LoraAdapter::load(tmp2.path()).unwrap().deltas[0].scale, 4.0);
    }

    #[test]
    fn missing_target_and_shape_mismatch_are_clear_errors() {
        let tmp = tempfile::tempdir().unwrap();
        write_adapter(tmp.path(), &[("layer.q_proj", (6, 4))], 2, 4.0, false, 1);
        let ad = LoraAdapter::load(tmp.path()).unwrap();
        let mut w = HashMap::from([(
            "other.weight".to_string(),
            Tensor::zeros((6, 4), DType::F32, &Device::Cpu).unwrap(),
        )]);
        let e = ad.merge_into(&mut w).unwrap_err().to_string();
        assert!(
            e.contains("layer.q_proj.weight") && e.contains("not in the base"),
            "{e}"
        );
        let mut w = HashMap::from([(
            "layer.q_proj.weight".to_string(),
            Tensor::zeros((4, 6), DType::F32, &Device::Cpu).unwrap(),
        )]);
        let e = ad.merge_into(&mut w).unwrap_err().to_string();
        assert!(e.contains("shape mismatch"), "{e}");

        // A target module listed in the config without weights.
        let cfg =
            serde_json::json!({"r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "gate_proj"]});
        std::fs::write(tmp.path().join("adapter_config.json"), cfg.to_string()).unwrap();
        let e = LoraAdapter::load(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("`gate_proj` matches no"), "{e}");
        // No adapter at all.
        let e = LoraAdapter::load(&tmp.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("adapter_config.json"), "{e}");
    }
}
