//! The engine: the stores, the embedder and the configuration opened together from one data
//! folder. The CLI and (later) the server are thin shells over it.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::config::{Config, EmbedBackend};
use crate::embed::{EmbedError, EmbedOptions, Embedder, candle::CandleEmbedder};
use crate::store::keyword::KeywordIndex;
use crate::store::meta::MetaStore;
use crate::store::vector::{VectorStore, edge::EdgeVectorStore, server::ServerVectorStore};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot create data folder {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Meta(#[from] crate::store::meta::MetaError),
    #[error(transparent)]
    Keyword(#[from] crate::store::keyword::KeywordError),
    #[error(transparent)]
    Vector(#[from] crate::store::vector::VectorError),
    #[error(transparent)]
    Embed(#[from] crate::embed::EmbedError),
    #[error("[ingest.ocr] mode = \"always\" but OCR cannot run: {0}")]
    OcrUnavailable(String),
    #[error(
        "the index was built with embedding model `{stored}` but the configured model is `{configured}`; run `zhiku reindex` to rebuild the vectors with the new model"
    )]
    ModelChanged { stored: String, configured: String },
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// Settings key holding the embedding model id the vectors were built with.
const MODEL_KEY: &str = "embed.model_id";
/// Settings key holding the vector dimension.
const DIM_KEY: &str = "embed.dim";

pub struct Engine {
    pub config: Config,
    pub meta: MetaStore,
    pub keyword: KeywordIndex,
    embedder: OnceLock<Arc<dyn Embedder>>,
    vector: OnceLock<Arc<dyn VectorStore>>,
    /// The ingest crate's options with the OCR engine and the known-piece scorer set.
    ingest: OnceLock<zhiku_ingest::Options>,
    /// PP-OCRv5, loaded when a page first needs it.
    ocr: OnceLock<Arc<crate::ocr::LazyPpOcr>>,
    /// The extract workers (`[ingest] isolation = "process"`), started on first use.
    extractor: OnceLock<std::result::Result<crate::extractor::Supervisor, String>>,
}

impl Engine {
    /// Open the data folder named by the configuration, creating it when missing. The
    /// embedder and the vector store are opened on first use (loading a model takes seconds,
    /// and `zhiku kb list` needs neither).
    pub fn open(config: Config) -> Result<Self> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| EngineError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
        let meta = MetaStore::open(&dir.join("zhiku.sqlite"))?;
        let user_dict = config.user_dict();
        let keyword = KeywordIndex::open(&dir.join("keywords"), user_dict.as_deref())?;
        if keyword.rebuilt() {
            // Re-added from SQLite with their readers by `index::apply_access_updates`.
            meta.queue_all_access_updates()?;
        }
        Ok(Self {
            config,
            meta,
            keyword,
            embedder: OnceLock::new(),
            vector: OnceLock::new(),
            ingest: OnceLock::new(),
            ocr: OnceLock::new(),
            extractor: OnceLock::new(),
        })
    }

    /// Use this embedder instead of loading the configured one (tests, benchmarks).
    pub fn with_embedder(self, embedder: Arc<dyn Embedder>) -> Self {
        let _ = self.embedder.set(embedder);
        self
    }

    /// Use these ingest options instead of the configured ones, OCR engine included (tests).
    pub fn with_ingest_options(self, options: zhiku_ingest::Options) -> Self {
        let _ = self.ingest.set(options);
        self
    }

    /// The embedder, loaded on first use.
    pub fn embedder(&self) -> Result<Arc<dyn Embedder>> {
        if let Some(e) = self.embedder.get() {
            return Ok(e.clone());
        }
        let c = &self.config.embed;
        let options = EmbedOptions {
            query_prefix: c.query_prefix.clone(),
            passage_prefix: c.passage_prefix.clone(),
            batch_size: c.batch_size,
            precision: c.precision,
            ..Default::default()
        };
        let loaded: Arc<dyn Embedder> = match c.backend {
            EmbedBackend::Candle => Arc::new(CandleEmbedder::load(&c.model, &options)?),
            EmbedBackend::Onnx => load_onnx(&c.model, &options, c.onnxruntime.as_deref())?,
        };
        Ok(self.embedder.get_or_init(|| loaded).clone())
    }

    /// What the ingest crate gets: `[ingest]` with the OCR engine (when its files are there;
    /// it loads on the first page that needs it) and the embedding tokenizer's known-piece
    /// scorer for the garble check. OCR that cannot run is a warning, once, with mode `auto`
    /// (pages needing it are reported failed), and an error with mode `always`.
    pub fn ingest_options(&self) -> Result<zhiku_ingest::Options> {
        if let Some(o) = self.ingest.get() {
            return Ok(o.clone());
        }
        let mut options = self.config.ingest.options();
        options.pdf.known_pieces = zhiku_ingest::KnownPiecesScorer(self.embedder()?.known_pieces());
        match crate::ocr::availability(&self.config) {
            crate::ocr::Availability::Off => {}
            crate::ocr::Availability::Ready { models, runtime } => {
                let threads = self.config.ingest.ocr.threads;
                let ocr = self.ocr.get_or_init(|| {
                    Arc::new(crate::ocr::LazyPpOcr::new(&models, &runtime, threads))
                });
                options.ocr.engine = zhiku_ingest::OcrEngine(Some(ocr.clone()));
            }
            crate::ocr::Availability::Missing(why) => {
                if self.config.ingest.ocr.mode == zhiku_ingest::OcrMode::Always {
                    return Err(EngineError::OcrUnavailable(why));
                }
                tracing::warn!(
                    "OCR is not available, so pages without a usable text layer (scans) are \
                     reported as failed: {why}"
                );
            }
        }
        Ok(self.ingest.get_or_init(|| options).clone())
    }

    /// The supervisor of the extract workers (`[ingest] isolation = "process"`); the error
    /// says why no worker can be started.
    pub fn extractor(&self) -> std::result::Result<&crate::extractor::Supervisor, String> {
        self.extractor
            .get_or_init(|| crate::extractor::Supervisor::from_config(&self.config.ingest))
            .as_ref()
            .map_err(|e| e.clone())
    }

    /// What an extract worker needs to run OCR: the PP-OCRv5 files when they are there
    /// (the worker loads them on the first page that needs them).
    pub fn ocr_setup(&self) -> Option<crate::extractor::OcrSetup> {
        match crate::ocr::availability(&self.config) {
            crate::ocr::Availability::Ready { models, runtime } => {
                Some(crate::extractor::OcrSetup {
                    models,
                    runtime,
                    threads: self.config.ingest.ocr.threads,
                })
            }
            _ => None,
        }
    }

    /// Why OCR cannot run, when it is on but its files are missing (for reports).
    pub fn ocr_unavailable(&self) -> Option<String> {
        match crate::ocr::availability(&self.config) {
            crate::ocr::Availability::Missing(why) => Some(why),
            _ => None,
        }
    }

    /// The vector store (embedded unless `[vector] url` is set), opened on first use with the
    /// embedder's dimension.
    pub fn vector(&self) -> Result<Arc<dyn VectorStore>> {
        if let Some(v) = self.vector.get() {
            return Ok(v.clone());
        }
        let dim = self.embedder()?.dim();
        let v = &self.config.vector;
        let store: Arc<dyn VectorStore> = match &v.url {
            Some(url) => Arc::new(ServerVectorStore::connect(
                url,
                crate::config::Secret::exposed(&v.api_key),
                &v.collection,
                dim,
                Duration::from_secs(v.timeout_secs),
            )?),
            None => Arc::new(EdgeVectorStore::open(
                &self.config.data_dir.join("vectors"),
                dim,
            )?),
        };
        Ok(self.vector.get_or_init(|| store).clone())
    }

    /// Check that the vectors were built with the configured model; record it when the
    /// index is new. `reindexing` accepts a change (the caller is rebuilding).
    pub fn check_model(&self, reindexing: bool) -> Result<()> {
        let e = self.embedder()?;
        let configured = e.model_id().to_string();
        match self.meta.setting(MODEL_KEY)? {
            Some(stored) if stored != configured && !reindexing => {
                Err(EngineError::ModelChanged { stored, configured })
            }
            Some(stored) if stored == configured => Ok(()),
            _ => {
                self.meta.set_setting(MODEL_KEY, &configured)?;
                self.meta.set_setting(DIM_KEY, &e.dim().to_string())?;
                Ok(())
            }
        }
    }

    /// The data folder.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }
}

#[cfg(feature = "onnx")]
fn load_onnx(
    model: &Path,
    options: &EmbedOptions,
    onnxruntime: Option<&Path>,
) -> std::result::Result<Arc<dyn Embedder>, EmbedError> {
    Ok(Arc::new(crate::embed::onnx::OnnxEmbedder::load(
        model,
        options,
        onnxruntime,
    )?))
}

#[cfg(not(feature = "onnx"))]
fn load_onnx(
    model: &Path,
    _options: &EmbedOptions,
    _onnxruntime: Option<&Path>,
) -> std::result::Result<Arc<dyn Embedder>, EmbedError> {
    Err(EmbedError::Load {
        path: model.display().to_string(),
        message: "[embed] backend = \"onnx\" but this zhiku was built without ONNX support; \
                  rebuild with --features onnx (cargo build --release --features onnx) or set \
                  [embed] backend = \"candle\""
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Selecting the onnx backend is a clear error: without the feature it names the
    /// feature, with it the missing model.onnx (the default model is a candle folder).
    #[test]
    fn onnx_backend_selection() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Default::default()
        };
        config.embed.backend = EmbedBackend::Onnx;
        config.embed.model = dir.path().join("no-such-model");
        let engine = Engine::open(config).unwrap();
        let e = engine.embedder().err().expect("must fail").to_string();
        if cfg!(feature = "onnx") {
            assert!(e.contains("model folder does not exist"), "{e}");
        } else {
            assert!(e.contains("rebuild with --features onnx"), "{e}");
        }
    }
}
