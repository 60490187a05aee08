//! [`Embedder`] on onnxruntime through fastembed (cargo feature `onnx`): an ONNX export of a
//! BERT-style sentence model whose output is `last_hidden_state`, mean pooling over the
//! attention mask, L2 normalisation.
//!
//! The model folder holds `model.onnx` and `tokenizer.json`, and optionally `config.json`,
//! `special_tokens_map.json` and `tokenizer_config.json` (the usual Hugging Face files;
//! defaults stand in for the optional ones). `scripts/fetch-models.sh --all` writes
//! `models/all-minilm-l6-v2-onnx` (all-MiniLM-L6-v2, int8 weights) and
//! `models/onnxruntime/libonnxruntime.so.1.31.1`.
//!
//! onnxruntime is loaded at run time (ort's `load-dynamic`), from `[embed] onnxruntime`, else
//! env `ORT_DYLIB_PATH`, else [`DEFAULT_ONNXRUNTIME`] when that file exists. One process
//! loads one onnxruntime library.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use fastembed::{InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles};
use fastembed::{QuantizationMode, UserDefinedEmbeddingModel};
use tokenizers::Tokenizer;

use super::{EmbedError, EmbedOptions, Embedder, Result, folder_name};
use crate::onnxruntime::panic_message;
#[cfg(test)]
use crate::onnxruntime::resolve_onnxruntime_with;
pub use crate::onnxruntime::{DEFAULT_ONNXRUNTIME, load_onnxruntime, resolve_onnxruntime};

const FETCH_HINT: &str = "run scripts/fetch-models.sh --all to create models/all-minilm-l6-v2-onnx, \
     or point [embed] model at a folder with model.onnx and tokenizer.json";

fn load_err(dir: &Path, message: impl Into<String>) -> EmbedError {
    EmbedError::Load {
        path: dir.display().to_string(),
        message: message.into(),
    }
}

fn run_err(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Run(e.to_string())
}

/// An ONNX sentence embedder (mean pooling, L2-normalised) on onnxruntime's CPU provider.
pub struct OnnxEmbedder {
    model: Mutex<TextEmbedding>,
    /// The model's tokenizer without truncation or padding, for [`Embedder::count_tokens`].
    counter: std::sync::Arc<Tokenizer>,
    model_id: String,
    dim: usize,
    max_tokens: usize,
    query_prefix: String,
    passage_prefix: String,
    batch_size: usize,
}

fn read_json(dir: &Path, file: &str) -> Result<serde_json::Value> {
    let path = dir.join(file);
    if !path.is_file() {
        return Ok(serde_json::json!({}));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| load_err(dir, format!("cannot read {file}: {e}")))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| load_err(dir, format!("{file}: {e}")))?;
    if !value.is_object() {
        return Err(load_err(dir, format!("{file}: not a JSON object")));
    }
    Ok(value)
}

impl OnnxEmbedder {
    /// Load a model folder (`model.onnx`, `tokenizer.json`, optional `config.json`,
    /// `special_tokens_map.json`, `tokenizer_config.json`) with the onnxruntime library at
    /// `onnxruntime` (see [`resolve_onnxruntime`] for the default).
    pub fn load(dir: &Path, options: &EmbedOptions, onnxruntime: Option<&Path>) -> Result<Self> {
        if !dir.is_dir() {
            return Err(load_err(
                dir,
                format!("model folder does not exist; {FETCH_HINT}"),
            ));
        }
        for file in ["model.onnx", "tokenizer.json"] {
            if !dir.join(file).is_file() {
                return Err(load_err(
                    dir,
                    format!(
                        "{file} is missing (the onnx backend needs an ONNX model); {FETCH_HINT}"
                    ),
                ));
            }
        }
        let runtime = resolve_onnxruntime(onnxruntime).map_err(|m| load_err(dir, m))?;
        load_onnxruntime(&runtime).map_err(|m| load_err(dir, m))?;

        let config = read_json(dir, "config.json")?;
        let mut tokenizer_config = read_json(dir, "tokenizer_config.json")?;
        let special_tokens_map = read_json(dir, "special_tokens_map.json")?;
        let tokenizer_bytes = std::fs::read(dir.join("tokenizer.json"))
            .map_err(|e| load_err(dir, format!("cannot read tokenizer.json: {e}")))?;
        let mut counter = Tokenizer::from_bytes(&tokenizer_bytes)
            .map_err(|e| load_err(dir, format!("tokenizer.json: {e}")))?;
        let own_pad = counter.get_padding().map(|p| p.pad_token.clone());
        counter.with_padding(None);
        counter
            .with_truncation(None)
            .map_err(|e| load_err(dir, format!("tokenizer.json: {e}")))?;

        // The model's own length limit: tokenizer_config's model_max_length, the positions of
        // config.json (RoBERTa-style models lose pad_token_id + 1 of them), else 512.
        let model_type = config["model_type"].as_str().unwrap_or("bert");
        let positions = config["max_position_embeddings"].as_u64().map(|n| {
            let offset = match model_type {
                "xlm-roberta" | "roberta" | "camembert" => {
                    config["pad_token_id"].as_u64().unwrap_or(1) + 1
                }
                _ => 0,
            };
            n.saturating_sub(offset) as usize
        });
        let declared = tokenizer_config["model_max_length"]
            .as_f64()
            .filter(|n| (1.0..1e9).contains(n))
            .map(|n| n as usize);
        let model_max = match (positions, declared) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => 512,
        };
        let max_tokens = options
            .max_tokens
            .map_or(model_max, |m| m.min(model_max))
            .max(3);

        // fastembed wants a numeric model_max_length and a pad_token in tokenizer_config.json.
        let obj = tokenizer_config
            .as_object_mut()
            .expect("read_json returns objects");
        obj.insert("model_max_length".into(), serde_json::json!(max_tokens));
        if !obj.get("pad_token").is_some_and(|p| {
            p.is_string() || p.get("content").is_some_and(serde_json::Value::is_string)
        }) {
            let pad = own_pad
                .or_else(|| {
                    ["[PAD]", "<pad>"]
                        .into_iter()
                        .find(|t| counter.token_to_id(t).is_some())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "[PAD]".into());
            obj.insert("pad_token".into(), serde_json::json!(pad));
        }

        let onnx_file = std::fs::read(dir.join("model.onnx"))
            .map_err(|e| load_err(dir, format!("cannot read model.onnx: {e}")))?;
        let files = TokenizerFiles {
            tokenizer_file: tokenizer_bytes,
            config_file: config.to_string().into_bytes(),
            special_tokens_map_file: special_tokens_map.to_string().into_bytes(),
            tokenizer_config_file: tokenizer_config.to_string().into_bytes(),
        };
        let user_model = UserDefinedEmbeddingModel::new(onnx_file, files)
            .with_pooling(Pooling::Mean)
            .with_quantization(QuantizationMode::None);
        let init = InitOptionsUserDefined::new().with_max_length(max_tokens);
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            TextEmbedding::try_new_from_user_defined(user_model, init)
        }));
        let mut model = match built {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return Err(load_err(dir, format!("cannot load model.onnx: {e}"))),
            Err(panic) => {
                return Err(load_err(
                    dir,
                    format!("cannot load model.onnx: {}", panic_message(&*panic)),
                ));
            }
        };

        let dim = match config["hidden_size"].as_u64() {
            Some(d) => d as usize,
            None => model
                .embed(["dimension probe"], None)
                .map_err(|e| load_err(dir, format!("model.onnx does not run: {e}")))?
                .pop()
                .map_or(0, |v| v.len()),
        };
        if dim == 0 {
            return Err(load_err(dir, "model.onnx returned an empty embedding"));
        }

        let name = folder_name(dir);
        let name_or_path = config["_name_or_path"].as_str().unwrap_or("");
        let (query_prefix, passage_prefix) = options.prefixes(&[&name, name_or_path]);
        Ok(Self {
            model: Mutex::new(model),
            counter: std::sync::Arc::new(counter),
            model_id: format!("{name}:{dim}"),
            dim,
            max_tokens,
            query_prefix,
            passage_prefix,
            batch_size: options.batch_size.max(1),
        })
    }

    /// The prefixes in use (query, passage).
    pub fn prefixes(&self) -> (&str, &str) {
        (&self.query_prefix, &self.passage_prefix)
    }

    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let mut model = self.model.lock().unwrap_or_else(PoisonError::into_inner);
        let out = model.embed(texts, Some(self.batch_size)).map_err(run_err)?;
        if out.len() != texts.len() || out.iter().any(|v| v.len() != self.dim) {
            return Err(EmbedError::Run(format!(
                "model.onnx returned {} vectors of {} values for {} texts (expected {} values)",
                out.len(),
                out.first().map_or(0, Vec::len),
                texts.len(),
                self.dim
            )));
        }
        Ok(out)
    }
}

impl Embedder for OnnxEmbedder {
    fn known_pieces(&self) -> Option<zhiku_ingest::KnownPieces> {
        Some(super::known_pieces(self.counter.clone()))
    }

    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    fn count_tokens(&self, text: &str) -> usize {
        self.counter
            .encode_fast(format!("{}{text}", self.passage_prefix), true)
            .map_or(0, |e| e.len())
    }

    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        // Longest first, so texts of similar length share a batch (less padding).
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let inputs: Vec<String> = order
            .iter()
            .map(|&i| format!("{}{}", self.passage_prefix, texts[i]))
            .collect();
        let vectors = self.embed(&inputs)?;
        let mut out = vec![Vec::new(); texts.len()];
        for (i, v) in order.into_iter().zip(vectors) {
            out[i] = v;
        }
        Ok(out)
    }

    fn embed_query(&self, text: &str) -> Result<Vec<f32>> {
        self.embed(&[format!("{}{text}", self.query_prefix)])?
            .pop()
            .ok_or_else(|| EmbedError::Run("empty model output".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::contract;
    use std::path::PathBuf;

    #[test]
    fn runtime_path_precedence() {
        let cfg = Path::new("/opt/ort/libonnxruntime.so.1.31.1");
        let env = PathBuf::from("/env/libonnxruntime.so");
        assert_eq!(
            resolve_onnxruntime_with(Some(cfg), Some(env.clone())).unwrap(),
            cfg
        );
        assert_eq!(
            resolve_onnxruntime_with(None, Some(env.clone())).unwrap(),
            env
        );
        // The test binary runs in the crate root: the default is used when fetched.
        match resolve_onnxruntime_with(None, Some(PathBuf::new())) {
            Ok(p) => assert_eq!(p, Path::new(DEFAULT_ONNXRUNTIME)),
            Err(m) => {
                assert!(!Path::new(DEFAULT_ONNXRUNTIME).exists());
                assert!(m.contains("[embed] onnxruntime"), "{m}");
                assert!(m.contains("ORT_DYLIB_PATH"), "{m}");
                assert!(m.contains("fetch-models.sh"), "{m}");
            }
        }
    }

    /// A missing or bad library is a clear error, never a panic.
    #[test]
    fn bad_onnxruntime_is_an_error_not_a_panic() {
        let m = load_onnxruntime(Path::new("/nonexistent/libonnxruntime.so.1.31.1")).unwrap_err();
        assert!(m.contains("/nonexistent/libonnxruntime.so.1.31.1"), "{m}");
        assert!(m.contains("[embed] onnxruntime"), "{m}");
        assert!(m.contains("fetch-models.sh"), "{m}");

        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("libonnxruntime.so.1.31.1");
        std::fs::write(&fake, b"not a shared library").unwrap();
        // Either ort refuses it, or (another test loaded the real one first) the one
        // library per process rule does: an error naming the file either way.
        let m = load_onnxruntime(&fake).unwrap_err();
        assert!(m.contains(&fake.display().to_string()), "{m}");
        assert!(m.contains("onnxruntime"), "{m}");

        // Through the embedder: a Load error naming the key.
        let model = dir.path().join("model");
        std::fs::create_dir_all(&model).unwrap();
        std::fs::write(model.join("model.onnx"), b"x").unwrap();
        std::fs::write(model.join("tokenizer.json"), b"{}").unwrap();
        let err = OnnxEmbedder::load(
            &model,
            &EmbedOptions::default(),
            Some(Path::new("/nonexistent/libonnxruntime.so")),
        )
        .err()
        .expect("must fail");
        assert!(matches!(err, EmbedError::Load { .. }), "{err}");
        assert!(err.to_string().contains("[embed] onnxruntime"), "{err}");
    }

    #[test]
    fn missing_model_files_are_load_errors_with_a_hint() {
        let err = OnnxEmbedder::load(
            Path::new("/nonexistent/model"),
            &EmbedOptions::default(),
            None,
        )
        .err()
        .expect("must fail");
        assert!(matches!(err, EmbedError::Load { .. }), "{err}");
        assert!(err.to_string().contains("fetch-models.sh --all"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), b"{}").unwrap();
        let msg = OnnxEmbedder::load(dir.path(), &EmbedOptions::default(), None)
            .err()
            .expect("must fail")
            .to_string();
        assert!(msg.contains("model.onnx is missing"), "{msg}");
    }

    /// all-MiniLM-L6-v2 (int8 ONNX) and the onnxruntime library, when fetched.
    fn minilm_onnx() -> Option<(PathBuf, PathBuf)> {
        let dir = contract::model_dir("all-minilm-l6-v2-onnx", "model.onnx")?;
        Some((dir, contract::onnxruntime_lib()?))
    }

    #[test]
    fn minilm_onnx_contract() {
        let Some((dir, lib)) = minilm_onnx() else {
            return;
        };
        let m = OnnxEmbedder::load(&dir, &EmbedOptions::default(), Some(&lib)).unwrap();
        assert_eq!(m.model_id(), "all-minilm-l6-v2-onnx:384");
        assert_eq!(m.prefixes(), ("", ""));
        // [CLS] hello world [SEP]
        assert_eq!(m.count_tokens("hello world"), 4);
        let load = |o: &EmbedOptions| -> Result<Box<dyn Embedder>> {
            Ok(Box::new(OnnxEmbedder::load(&dir, o, Some(&lib))?))
        };
        let expect = contract::Expect {
            dim: 384,
            max_tokens: 512,
            prefixed: false,
        };
        contract::run_all(&m, &load, &expect);
    }

    /// The int8 ONNX export and candle's f32 run of all-MiniLM-L6-v2 give nearly the same
    /// vectors, and the same token counts.
    #[test]
    fn minilm_onnx_agrees_with_candle() {
        let Some((dir, lib)) = minilm_onnx() else {
            return;
        };
        let Some(candle_dir) = contract::model_dir("all-minilm-l6-v2", "model.safetensors") else {
            return;
        };
        let onnx = OnnxEmbedder::load(&dir, &EmbedOptions::default(), Some(&lib)).unwrap();
        let candle =
            super::super::candle::CandleEmbedder::load(&candle_dir, &EmbedOptions::default())
                .unwrap();
        let texts = [
            "Travel expenses are reimbursed within ten working days.",
            "How do I reset my password?",
            "The cafeteria opens at eight in the morning.",
            "Quarterly revenue grew by 12 percent, driven by the enterprise segment.",
            "",
            "差旅费报销需要发票。",
        ];
        let a = onnx.embed_passages(&texts).unwrap();
        let b = candle.embed_passages(&texts).unwrap();
        for ((t, x), y) in texts.iter().zip(&a).zip(&b) {
            let cos = contract::dot(x, y);
            assert!(cos > 0.98, "{t:?}: cosine {cos}");
            assert_eq!(onnx.count_tokens(t), candle.count_tokens(t), "{t:?}");
        }
        let q = contract::dot(
            &onnx.embed_query(texts[1]).unwrap(),
            &candle.embed_query(texts[1]).unwrap(),
        );
        assert!(q > 0.98, "query cosine {q}");
    }

    /// Timing, not a check (2 cores: see the bench README):
    /// `cargo test --release --features onnx --lib onnx::tests::bench -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn bench_backends_short_sentences() {
        use std::time::Instant;

        use crate::embed::candle::CandleEmbedder;
        let subjects = [
            "The new employee",
            "Our finance team",
            "The server room",
            "A business traveller",
            "The quarterly report",
            "Each manager",
            "The help desk",
            "The annual meeting",
        ];
        let rest = [
            "submits the expense report within ten days.",
            "needs a receipt for every hotel night.",
            "is kept between eighteen and twenty-seven degrees.",
            "shows that revenue grew by twelve percent.",
            "approves leave requests in the HR system.",
            "resets passwords from the login page.",
            "takes place in Shanghai in December.",
            "answers questions about the travel policy.",
            "books flights through the company portal.",
            "reviews the budget before the end of the month.",
            "keeps a copy of the signed contract.",
            "reports security incidents to the IT team.",
            "gets five days of paid annual leave.",
            "uses the shared calendar for meetings.",
            "follows the data protection rules.",
            "checks the invoices every Friday.",
            "updates the handbook twice a year.",
            "stores documents in the knowledge base.",
            "may work from home two days a week.",
            "signs in with a hardware key.",
            "orders office supplies online.",
            "explains the reimbursement process.",
            "calls the supplier about the delivery.",
            "prints the boarding pass at the airport.",
            "writes a short summary of the meeting.",
        ];
        let texts: Vec<String> = (0..200)
            .map(|i| format!("{} {}", subjects[i % subjects.len()], rest[i % rest.len()]))
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let run = |label: &str, m: &dyn Embedder| {
            let tokens: usize = refs.iter().map(|t| m.count_tokens(t)).sum();
            m.embed_passages(&refs[..32]).unwrap();
            let mut rates: Vec<f64> = (0..3)
                .map(|_| {
                    let t = Instant::now();
                    m.embed_passages(&refs).unwrap();
                    refs.len() as f64 / t.elapsed().as_secs_f64()
                })
                .collect();
            rates.sort_by(f64::total_cmp);
            eprintln!(
                "{label}: {:.0} sentences/s (median of 3; best {:.0}), {} sentences, {:.1} tokens each, batch 16",
                rates[1],
                rates[2],
                refs.len(),
                tokens as f64 / refs.len() as f64
            );
        };
        // The default batch size ([embed] batch_size = 16).
        let o = EmbedOptions::default();
        if let Some(dir) = contract::model_dir("all-minilm-l6-v2", "model.safetensors") {
            run(
                "candle all-MiniLM-L6-v2 f32",
                &CandleEmbedder::load(&dir, &o).unwrap(),
            );
        }
        if let Some((dir, lib)) = minilm_onnx() {
            run(
                "onnx all-MiniLM-L6-v2 int8",
                &OnnxEmbedder::load(&dir, &o, Some(&lib)).unwrap(),
            );
        }
        if let Some(dir) = contract::model_dir("multilingual-e5-small", "model.safetensors") {
            run(
                "candle multilingual-e5-small f32",
                &CandleEmbedder::load(&dir, &o).unwrap(),
            );
        }
    }
}
