//! OCR in the app: `zhiku-ocr`'s PP-OCRv5 adapted to the ingest crate's [`zhiku_ingest::Ocr`]
//! seam, with the models and onnxruntime found from the configuration (`[ingest.ocr] models`,
//! `threads`; the onnxruntime library of `[embed] onnxruntime`).
//!
//! The engine loads lazily, once per [`crate::engine::Engine`] (one per process), when a page
//! first needs OCR: most ingests are text documents, and `zhiku serve` should not spend the
//! load (three onnxruntime sessions, ~1 s and ~100 MB) until an upload needs it. Whether the
//! files are there is checked up front ([`availability`], cheap), so a missing model is one
//! clear warning at the start of a job (mode `auto`: the pages that needed OCR are reported
//! failed with their numbers) or an error (mode `always`), never a surprise mid-way.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tracing::{info, warn};
use zhiku_ingest::{Ocr, OcrError, OcrLine, OcrMode};
use zhiku_ocr::{OcrPaths, PpOcr};

use crate::config::Config;

/// What OCR can do with this configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// `[ingest.ocr] mode = "off"`.
    Off,
    /// The model files and the onnxruntime library are there (loaded on first use).
    Ready { models: PathBuf, runtime: PathBuf },
    /// Something is missing: what, and how to get it.
    Missing(String),
}

/// The files the PP-OCRv5 models folder must hold.
const MODEL_FILES: &[&str] = &[
    "det/det.onnx",
    "cls/cls.onnx",
    "rec/rec.onnx",
    "ppocrv5_dict.txt",
];

/// Check (without loading anything) whether OCR can run with `config`.
pub fn availability(config: &Config) -> Availability {
    let c = &config.ingest.ocr;
    if c.mode == OcrMode::Off {
        return Availability::Off;
    }
    let missing: Vec<String> = MODEL_FILES
        .iter()
        .map(|f| c.models.join(f))
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        return Availability::Missing(format!(
            "the PP-OCRv5 models are missing ({}); run scripts/fetch-models.sh to fetch them, \
             or point [ingest.ocr] models (env ZHIKU_INGEST__OCR__MODELS) at a folder holding \
             {}",
            missing.join(", "),
            MODEL_FILES.join(", ")
        ));
    }
    match crate::onnxruntime::resolve_onnxruntime(config.embed.onnxruntime.as_deref()) {
        Ok(runtime) if runtime.is_file() => Availability::Ready {
            models: c.models.clone(),
            runtime,
        },
        Ok(runtime) => Availability::Missing(format!(
            "the onnxruntime library {} does not exist; run scripts/fetch-models.sh, or set \
             [embed] onnxruntime (env ZHIKU_EMBED__ONNXRUNTIME) or ORT_DYLIB_PATH",
            runtime.display()
        )),
        Err(why) => Availability::Missing(why),
    }
}

impl Availability {
    /// One line for `zhiku config`.
    pub fn describe(&self) -> String {
        match self {
            Self::Off => "off ([ingest.ocr] mode = \"off\")".into(),
            Self::Ready { models, runtime } => format!(
                "available (PP-OCRv5 from {}, onnxruntime {}; loaded when a page first needs it)",
                models.display(),
                runtime.display()
            ),
            Self::Missing(why) => format!("not available: {why}"),
        }
    }
}

/// PP-OCRv5, loaded when first asked to read a page.
pub struct LazyPpOcr {
    paths: OcrPaths,
    options: zhiku_ocr::OcrOptions,
    loaded: OnceLock<Result<PpOcr, String>>,
}

impl LazyPpOcr {
    pub fn new(models: &Path, runtime: &Path, threads: usize) -> Self {
        Self {
            paths: OcrPaths {
                models_dir: models.to_path_buf(),
                onnxruntime: runtime.to_path_buf(),
            },
            options: zhiku_ocr::OcrOptions {
                intra_threads: threads,
                ..Default::default()
            },
            loaded: OnceLock::new(),
        }
    }

    /// The engine, loading it on the first call (later calls get the same engine, or the
    /// same load error, at once).
    pub fn engine(&self) -> Result<&PpOcr, OcrError> {
        self.loaded
            .get_or_init(|| {
                let started = std::time::Instant::now();
                // One onnxruntime per process: the same check the onnx embedder makes.
                crate::onnxruntime::load_onnxruntime(&self.paths.onnxruntime)?;
                match PpOcr::load_with(&self.paths, self.options.clone()) {
                    Ok(e) => {
                        info!(
                            models = %self.paths.models_dir.display(),
                            ms = started.elapsed().as_millis() as u64,
                            "OCR engine loaded"
                        );
                        Ok(e)
                    }
                    Err(e) => {
                        warn!(error = %e, "OCR engine cannot be loaded; pages that need OCR fail");
                        Err(e.to_string())
                    }
                }
            })
            .as_ref()
            .map_err(|e| OcrError(e.clone()))
    }
}

impl Ocr for LazyPpOcr {
    fn recognize(&self, page: &image::RgbImage) -> Result<Vec<OcrLine>, OcrError> {
        let lines = self
            .engine()?
            .recognize(page)
            .map_err(|e| OcrError(e.to_string()))?;
        Ok(lines
            .into_iter()
            .map(|l| OcrLine {
                text: l.text,
                bbox: l.bbox,
                confidence: l.confidence,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_in(dir: &Path) -> Config {
        let mut c = Config::load_with_env(None, &[]).unwrap();
        c.ingest.ocr.models = dir.join("ppocrv5");
        c
    }

    #[test]
    fn missing_models_say_how_to_get_them() {
        let dir = tempfile::tempdir().unwrap();
        let c = config_in(dir.path());
        let Availability::Missing(why) = availability(&c) else {
            panic!("must be missing")
        };
        assert!(why.contains("scripts/fetch-models.sh"), "{why}");
        assert!(why.contains("det/det.onnx"), "{why}");
        assert!(why.contains("[ingest.ocr] models"), "{why}");
        let mut off = c.clone();
        off.ingest.ocr.mode = OcrMode::Off;
        assert_eq!(availability(&off), Availability::Off);
    }

    /// Model files present but onnxruntime missing: named, with the keys that point at it.
    #[test]
    fn missing_runtime_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config_in(dir.path());
        for f in MODEL_FILES {
            let p = c.ingest.ocr.models.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"x").unwrap();
        }
        c.embed.onnxruntime = Some(dir.path().join("libonnxruntime.so.1.31.1"));
        let Availability::Missing(why) = availability(&c) else {
            panic!("must be missing")
        };
        assert!(why.contains("libonnxruntime.so.1.31.1"), "{why}");
        assert!(why.contains("[embed] onnxruntime"), "{why}");
    }

    /// A models folder whose files are not models: the first page needing OCR gets the load
    /// error, and so does every later one, without a second load.
    #[test]
    fn a_broken_model_is_an_error_for_each_page_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("ppocrv5");
        for f in MODEL_FILES {
            let p = models.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"not a model").unwrap();
        }
        let runtime = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../models/onnxruntime/libonnxruntime.so.1.31.1");
        let ocr = LazyPpOcr::new(&models, &runtime, 1);
        let page = image::RgbImage::new(64, 64);
        let first = ocr.recognize(&page).unwrap_err().to_string();
        let second = ocr.recognize(&page).unwrap_err().to_string();
        assert_eq!(first, second);
        assert!(
            first.contains("OCR") || first.contains("onnxruntime"),
            "{first}"
        );
    }
}
