//! The generators: a model on candle ([`candle`]) and an OpenAI-compatible server
//! ([`openai`]), chosen by `[generate]` ([`from_config`]). The trait they implement, with
//! its messages, parameters and contract suite, is `zhiku_core::generate`, re-exported here.

pub mod openai;

use std::sync::Arc;

pub(crate) mod arch;
pub mod candle;
pub mod lora;
mod sampling;
pub(crate) mod template;
pub(crate) mod tensor_names;
pub(crate) mod tokenizer;

pub use arch::{F32_GGUF_LIMIT_BYTES, GgufWeights};
pub use candle::{CandleGenerator, CandleOptions};
pub use lora::LoraAdapter;
pub use zhiku_core::generate::*;

/// The generator `[generate]` asks for, for questions to knowledge base `kb`, or `None`
/// (answers are then extractive).
///
/// `none` → `None`; `candle` → the model on candle (with `lora_per_kb[kb]`, else `lora`,
/// merged); `openai` → [`openai::OpenAiGenerator`] on `url`; `auto` → `openai` when `url` is
/// set, else candle when `generate.model` is set, else `None`.
pub fn from_config(
    cfg: &zhiku_core::config::GenerateConfig,
    kb: Option<&str>,
) -> Result<Option<Arc<dyn Generator>>> {
    use zhiku_core::config::GenerateBackend;
    let candle = || -> Result<Option<Arc<dyn Generator>>> {
        let lora = kb
            .and_then(|k| cfg.lora_per_kb.get(k))
            .or(cfg.lora.as_ref())
            .cloned();
        let model = cfg.model.clone().ok_or_else(|| GenerateError::Load {
            path: "(not set)".into(),
            message: "generate.backend = \"candle\" needs generate.model: a .gguf file or a \
                      Hugging Face model folder"
                .into(),
        })?;
        let opts = CandleOptions {
            model,
            tokenizer: cfg.tokenizer.clone(),
            device: cfg.device,
            cuda_device: cfg.cuda_device,
            context_length: cfg.context_length,
            lora,
            gguf_weights: GgufWeights::Auto,
        };
        Ok(Some(Arc::new(CandleGenerator::load(&opts)?)))
    };
    let openai = || -> Result<Option<Arc<dyn Generator>>> {
        Ok(Some(Arc::new(openai::OpenAiGenerator::connect(cfg)?)))
    };
    match cfg.backend {
        GenerateBackend::None => Ok(None),
        GenerateBackend::Candle => candle(),
        GenerateBackend::Openai => openai(),
        GenerateBackend::Auto if cfg.url.as_deref().is_some_and(|u| !u.trim().is_empty()) => {
            openai()
        }
        GenerateBackend::Auto if cfg.model.is_some() => candle(),
        GenerateBackend::Auto => {
            tracing::info!(
                "no generator configured ([generate] model or url); answers are extracted \
                 sentences"
            );
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zhiku_core::config::{GenerateBackend, GenerateConfig};

    #[test]
    fn from_config_backends() {
        let mut cfg = GenerateConfig {
            backend: GenerateBackend::None,
            ..Default::default()
        };
        assert!(from_config(&cfg, None).unwrap().is_none());
        cfg.backend = GenerateBackend::Auto;
        assert!(from_config(&cfg, None).unwrap().is_none());
        cfg.backend = GenerateBackend::Candle;
        let e = from_config(&cfg, None).err().unwrap();
        assert!(e.to_string().contains("needs generate.model"), "{e}");
        cfg.model = Some("/nonexistent/model.gguf".into());
        let e = from_config(&cfg, None).err().unwrap();
        assert!(matches!(e, GenerateError::Load { .. }), "{e}");
        // auto with a model set means candle (and fails loudly on a bad path).
        cfg.backend = GenerateBackend::Auto;
        assert!(from_config(&cfg, None).is_err());
        cfg.backend = GenerateBackend::Candle;

        // lora_per_kb wins over lora for its knowledge base.
        let tmp = tempfile::tempdir().unwrap();
        arch::tests::write_tiny_qwen2(tmp.path(), 21);
        cfg.model = Some(tmp.path().to_path_buf());
        cfg.device = zhiku_core::config::GenerateDevice::Cpu;
        cfg.lora = Some(tmp.path().join("no-such-adapter"));
        cfg.lora_per_kb
            .insert("hr".into(), tmp.path().join("hr-adapter"));
        let e = from_config(&cfg, Some("hr")).err().unwrap().to_string();
        assert!(e.contains("hr-adapter"), "{e}");
        let e = from_config(&cfg, Some("other")).err().unwrap().to_string();
        assert!(e.contains("no-such-adapter"), "{e}");
        cfg.lora = None;
        let g = from_config(&cfg, Some("other")).unwrap().unwrap();
        assert_eq!(g.context_length(), 128);
    }
}
