//! Configuration: one `zhiku.toml` plus environment overrides, every key with a default.
//!
//! A file holds only the keys it changes. Precedence, lowest first: built-in defaults, the
//! file (`--config`, env `ZHIKU_CONFIG`, else `./zhiku.toml` when present), environment
//! variables `ZHIKU_<SECTION>__<KEY>` (e.g. `ZHIKU_VECTOR__URL=http://qdrant:6334`,
//! `ZHIKU_RETRIEVE__FUSION=rrf`), then command-line flags (`--data-dir` / `ZHIKU_DATA_DIR`).
//! Values in environment variables are read as TOML scalars when they parse as one
//! (numbers, booleans) and as strings otherwise.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration. See README "Configuration" for every key and its default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Folder holding all state: SQLite metadata, the embedded vector store, the keyword
    /// index. Default `./data`.
    pub data_dir: PathBuf,
    pub embed: EmbedConfig,
    pub vector: VectorConfig,
    pub keyword: KeywordConfig,
    pub ingest: IngestConfig,
    pub retrieve: RetrieveConfig,
    pub generate: GenerateConfig,
    pub rag: RagConfig,
    pub server: ServerConfig,
    pub wecom: WecomConfig,
    pub auth: AuthConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            embed: EmbedConfig::default(),
            vector: VectorConfig::default(),
            keyword: KeywordConfig::default(),
            ingest: IngestConfig::default(),
            retrieve: RetrieveConfig::default(),
            generate: GenerateConfig::default(),
            rag: RagConfig::default(),
            server: ServerConfig::default(),
            wecom: WecomConfig::default(),
            auth: AuthConfig::default(),
        }
    }
}

/// Which engine runs the embedding model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbedBackend {
    /// candle (built in): a Hugging Face BERT / XLM-R folder with `model.safetensors`.
    Candle,
    /// onnxruntime through fastembed (cargo feature `onnx`): a folder with `model.onnx`.
    Onnx,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedConfig {
    /// `candle` (default) or `onnx` (needs a binary built with `--features onnx`).
    pub backend: EmbedBackend,
    /// A Hugging Face BERT / XLM-R folder (config.json, tokenizer.json, model.safetensors;
    /// model.onnx for the onnx backend). Default `models/multilingual-e5-small` (written by
    /// `scripts/fetch-models.sh`).
    pub model: PathBuf,
    /// Passages per forward pass. Default 16.
    pub batch_size: usize,
    /// Prefix for queries; default chosen by model family ("query: " for e5, none otherwise).
    pub query_prefix: Option<String>,
    /// Prefix for passages; default chosen by model family ("passage: " for e5).
    pub passage_prefix: Option<String>,
    /// onnx backend: the onnxruntime library (`libonnxruntime.so.*`, 1.24 or newer). Default:
    /// env `ORT_DYLIB_PATH`, else `models/onnxruntime/libonnxruntime.so.1.31.1` when present
    /// (written by `scripts/fetch-models.sh`).
    pub onnxruntime: Option<PathBuf>,
    /// candle backend: `auto` (default: int8 linear layers on the best kernel the CPU runs,
    /// AVX-512 VNNI, AVX-VNNI or AVX2; f32 without AVX2), `f32` or `int8`.
    pub precision: crate::embed::Precision,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        Self {
            backend: EmbedBackend::Candle,
            model: PathBuf::from("models/multilingual-e5-small"),
            batch_size: 16,
            query_prefix: None,
            passage_prefix: None,
            onnxruntime: None,
            precision: crate::embed::Precision::Auto,
        }
    }
}

/// `[ingest]`: how files become chunks. The sections are the ingest crate's own options
/// (`clean`, `mask`, `chunk`, `pdf`), and `[ingest.ocr]` adds where the OCR engine is;
/// [`IngestConfig::options`] is what the ingest crate gets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Where each file's extraction (PDFium, OCR, Office and image decoders) runs:
    /// `process` (default: a supervised child process, `zhiku extract-worker`, so a hang is
    /// killed and a native crash fails that file only; see [`crate::extractor`]) or `thread`
    /// (in this process, for embedders of the library: a hang is abandoned, not killed, and
    /// a native crash ends the process).
    pub isolation: Isolation,
    /// Wall-clock limit on one file's extraction (text, OCR), seconds; past it the file
    /// fails with "timed out after N s" and the job or upload queue goes on. With `process`
    /// isolation the worker is killed. Default 900 (measured: a 2,000-page text PDF takes
    /// ~30 s, a 50-page 200-dpi scan ~150 s on a loaded 2-core machine; README
    /// "Configuration"). 0: no limit.
    pub file_timeout_secs: u64,
    /// Memory cap of the extract worker (its address space, `RLIMIT_AS`), MiB; a file that
    /// needs more fails with "ran out of memory" and the worker is restarted. Default 4096.
    /// 0: no cap. Only with `process` isolation.
    pub worker_memory_mb: u64,
    /// The `zhiku` binary that runs `zhiku extract-worker`. Default: this program
    /// (`std::env::current_exe()`); programs embedding the library point it at a `zhiku`
    /// binary, or use `isolation = "thread"`.
    pub worker_binary: Option<PathBuf>,
    pub clean: zhiku_ingest::CleanConfig,
    pub mask: zhiku_ingest::MaskConfig,
    pub chunk: zhiku_ingest::ChunkConfig,
    pub pdf: zhiku_ingest::PdfOptions,
    pub ocr: OcrConfig,
    /// `[ingest.office]`: LibreOffice (`soffice`) converts legacy .doc/.ppt.
    pub office: zhiku_ingest::OfficeOptions,
}

/// `[ingest.ocr]`: OCR of pages without a usable text layer (PP-OCRv5 on onnxruntime; the
/// library is `[embed] onnxruntime`'s).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OcrConfig {
    /// `auto` (default: pages with no text layer or a failed garble check), `always` (every
    /// page; its text layer is not indexed) or `off`.
    pub mode: zhiku_ingest::OcrMode,
    /// Resolution PDF pages are rendered at for OCR. Default 200 (10.5 pt body text ~29 px
    /// high; PP-OCR wants at least ~20 px).
    pub dpi: u32,
    /// Lines recognised below this confidence (0–1) are kept and counted in a warning.
    /// Default 0.8.
    pub min_confidence: f32,
    /// The PP-OCRv5 models folder (`det/det.onnx`, `cls/cls.onnx`, `rec/rec.onnx`,
    /// `ppocrv5_dict.txt`). Default `models/ppocrv5` (written by `scripts/fetch-models.sh`).
    pub models: PathBuf,
    /// onnxruntime threads for detection and classification, and as many single-threaded
    /// recognition sessions reading lines side by side (at most 4); 0 (default): every core.
    pub threads: usize,
}

impl Default for OcrConfig {
    fn default() -> Self {
        let o = zhiku_ingest::OcrOptions::default();
        Self {
            mode: o.mode,
            dpi: o.dpi,
            min_confidence: o.min_confidence,
            models: PathBuf::from("models/ppocrv5"),
            threads: 0,
        }
    }
}

/// `[ingest] isolation`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// A supervised child process (`zhiku extract-worker`).
    #[default]
    Process,
    /// A thread of this process with a deadline.
    Thread,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            isolation: Isolation::Process,
            file_timeout_secs: 900,
            worker_memory_mb: 4096,
            worker_binary: None,
            clean: Default::default(),
            mask: Default::default(),
            chunk: Default::default(),
            pdf: Default::default(),
            ocr: Default::default(),
            office: Default::default(),
        }
    }
}

impl IngestConfig {
    /// The ingest crate's options (without the OCR engine and the known-piece scorer, which
    /// the engine sets: [`crate::engine::Engine::ingest_options`]).
    pub fn options(&self) -> zhiku_ingest::Options {
        zhiku_ingest::Options {
            clean: self.clean.clone(),
            mask: self.mask.clone(),
            chunk: self.chunk.clone(),
            pdf: self.pdf.clone(),
            ocr: zhiku_ingest::OcrOptions {
                mode: self.ocr.mode,
                dpi: self.ocr.dpi,
                min_confidence: self.ocr.min_confidence,
                engine: Default::default(),
                progress: Default::default(),
            },
            office: self.office.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VectorConfig {
    /// Qdrant server gRPC URL (e.g. `http://127.0.0.1:6334`). Unset (default): the embedded
    /// engine under `<data_dir>/vectors`.
    pub url: Option<String>,
    /// API key for the Qdrant server, if it requires one.
    pub api_key: Option<Secret>,
    /// Collection name on the server. Default `zhiku_chunks`.
    pub collection: String,
    /// Per-request timeout for the server, seconds. Default 10.
    pub timeout_secs: u64,
}

impl Default for VectorConfig {
    fn default() -> Self {
        Self {
            url: None,
            api_key: None,
            collection: "zhiku_chunks".into(),
            timeout_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeywordConfig {
    /// jieba user dictionary (one term a line: `word [freq] [tag]`) for company terms.
    /// Default: `<data_dir>/userdict.txt` when that file exists, else none.
    pub user_dict: Option<PathBuf>,
}

/// How the dense and keyword rankings are fused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fusion {
    /// Reciprocal rank fusion: score = Σ w / (k + rank).
    Rrf,
    /// Min-max normalised scores, weighted sum.
    Weighted,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrieveConfig {
    /// `weighted` (default, chosen by measurement on CMRC 2018 trial) or `rrf`.
    pub fusion: Fusion,
    /// RRF constant k. Default 60.
    pub rrf_k: f32,
    /// Weight of the dense ranking, 0–1; the keyword ranking gets 1 − this. Default 0.5.
    pub dense_weight: f32,
    /// Candidates taken from each index before fusion. Default 50.
    pub candidates: usize,
    /// Results returned when the caller does not say. Default 5.
    pub top_k: usize,
}

impl Default for RetrieveConfig {
    fn default() -> Self {
        Self {
            fusion: Fusion::Weighted,
            rrf_k: 60.0,
            dense_weight: 0.5,
            candidates: 50,
            top_k: 5,
        }
    }
}

/// Which engine writes answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GenerateBackend {
    /// `openai` when `url` is set, else `candle` when `model` is set, else `none`.
    Auto,
    /// No generator: answers are the best-matching sentences, highlighted and cited.
    None,
    /// A model inside this process on candle (GGUF file or Hugging Face folder).
    Candle,
    /// An OpenAI-compatible chat-completions server (vLLM, llama.cpp server, Ollama).
    Openai,
}

/// Where the in-process model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GenerateDevice {
    /// CUDA when the binary was built with `--features cuda` and a GPU is present, else CPU.
    Auto,
    Cpu,
    Cuda,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerateConfig {
    /// `auto` (default), `none`, `candle` or `openai`.
    pub backend: GenerateBackend,
    /// candle: a `.gguf` file or a Hugging Face folder (config.json, tokenizer.json,
    /// *.safetensors). Unset by default: no model small enough to ship answers well, so a
    /// fresh install answers extractively. `scripts/fetch-models.sh` writes the English demo
    /// model `models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf` (135M parameters:
    /// it shows the pipeline working, it is not a reliable answerer, and it knows no Chinese).
    pub model: Option<PathBuf>,
    /// candle: a `tokenizer.json` to use instead of the model's own (or of the one rebuilt
    /// from GGUF metadata).
    pub tokenizer: Option<PathBuf>,
    /// candle: `auto` (default), `cpu` or `cuda` (GPU index with `cuda_device`).
    pub device: GenerateDevice,
    /// candle: which GPU. Default 0.
    pub cuda_device: usize,
    /// Context window in tokens; default the model's own.
    pub context_length: Option<usize>,
    /// candle: a PEFT LoRA adapter folder merged into the weights at load time.
    pub lora: Option<PathBuf>,
    /// candle: an adapter per knowledge base (`[generate.lora_per_kb] hr = "adapters/hr"`),
    /// used instead of `lora` for questions to that knowledge base.
    pub lora_per_kb: std::collections::BTreeMap<String, PathBuf>,
    /// openai: base URL of the server, e.g. `http://vllm:8000/v1`.
    pub url: Option<String>,
    /// openai: bearer token, if the server needs one.
    pub api_key: Option<Secret>,
    /// openai: the `model` field sent to the server. Default: the server's first model.
    pub remote_model: Option<String>,
    /// openai: seconds before a request (or a silent stream) is abandoned. Default 120.
    pub timeout_secs: u64,
    /// openai: retries after a connection error or a 5xx/429 answer, before any text was
    /// streamed. Default 2.
    pub max_retries: u32,
    /// Sampling defaults for every answer.
    pub sampling: crate::generate::SamplingParams,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        Self {
            backend: GenerateBackend::Auto,
            model: None,
            tokenizer: None,
            device: GenerateDevice::Auto,
            cuda_device: 0,
            context_length: None,
            lora: None,
            lora_per_kb: Default::default(),
            url: None,
            api_key: None,
            remote_model: None,
            timeout_secs: 120,
            max_retries: 2,
            sampling: crate::generate::SamplingParams::default(),
        }
    }
}

/// The answer pipeline: condense → retrieve → relevance gate → prompt → generate → cite.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RagConfig {
    /// Folder of prompt templates read at every question (a file there overrides the built-in
    /// template of the same name, see prompts/README.md). Default `<data_dir>/prompts`.
    pub prompts_dir: Option<PathBuf>,
    /// Passages retrieved per question, before the relevance gate. Default 8.
    pub retrieve_top_k: usize,
    /// Most passages put into the prompt (fewer when they do not fit the generator's
    /// context; the lowest-ranked are dropped first). Default 5.
    pub sources: usize,
    /// Relevance gate, lexical part: a passage is relevant when it contains at least this
    /// share (0–1) of the question's key terms. Default 0.5.
    pub min_term_coverage: f32,
    /// Relevance gate, semantic part: a passage is also relevant when its dense cosine
    /// similarity to the question is at least this. Depends on the embedding model; 0.88 was
    /// measured for multilingual-e5-small (unrelated questions score up to 0.87). Set above 1
    /// to use the lexical part alone. Default 0.88.
    pub min_dense_score: f32,
    /// Earlier turns of a chat used to rewrite a follow-up question and put in the answer
    /// prompt before the sources (the oldest are dropped first when the prompt does not fit
    /// the context). Default 4.
    pub max_history_turns: usize,
    /// Rewrite follow-up questions with the generator (when one is configured); otherwise,
    /// or when false, with the key-term rule (README "Answers"). Default true.
    pub condense_with_generator: bool,
    /// Extractive answers (no generator): most sentences quoted. Default 3.
    pub extractive_sentences: usize,
    /// Tokens kept free in the generator's context besides `generate.sampling.max_tokens`
    /// (a margin for the estimate of remote servers). Default 64.
    pub context_margin_tokens: usize,
    /// Citation check: a cited sentence is supported when its cited passages hold at least
    /// this share (0–1) of its key terms, and every number in it (README "Citation check").
    /// Default 0.5.
    pub claim_min_coverage: f32,
}

impl Default for RagConfig {
    fn default() -> Self {
        Self {
            prompts_dir: None,
            retrieve_top_k: 8,
            sources: 5,
            min_term_coverage: 0.5,
            min_dense_score: 0.88,
            max_history_turns: 4,
            condense_with_generator: true,
            extractive_sentences: 3,
            context_margin_tokens: 64,
            claim_min_coverage: 0.5,
        }
    }
}

/// `zhiku serve`: the web chat, admin pages, REST and OpenAI-compatible API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (`zhiku serve --addr` overrides). Default `127.0.0.1:8080`;
    /// use `0.0.0.0:8080` to serve the network.
    pub addr: String,
    /// The address users reach zhiku at (e.g. `https://zhiku.example.com`), for links sent
    /// outside the browser (WeCom) and to mark session cookies `Secure` when it is https.
    /// Default none.
    pub public_url: Option<String>,
    /// How long a browser login lasts, in hours. Default 168 (a week).
    pub session_hours: u64,
    /// Question endpoints (`/api/ask`, `/v1/chat/completions`): requests per second allowed
    /// per client IP, with bursts of twice that; over it the answer is 429 with Retry-After.
    /// Default 10.
    pub ip_questions_per_s: u32,
    /// The same, per logged-in user or API token owner. Default 5.
    pub user_questions_per_s: u32,
    /// Failed password logins allowed per account name within `login_lockout_minutes`;
    /// more attempts for that name get 429 with Retry-After until the window has passed
    /// (only failures count; a successful login clears the name's count). 0 = no limit.
    /// Default 10.
    pub login_failures_per_name: u32,
    /// The same per client address (whatever names it tries). 0 = no limit. Default 50.
    pub login_failures_per_ip: u32,
    /// The window of the two limits above, in minutes. Default 15.
    pub login_lockout_minutes: u64,
    /// Answers being generated at once (more wait in the queue). Default 1: one in-process
    /// model answers one question at a time; raise it for an LLM server.
    pub generation_slots: usize,
    /// Questions allowed to wait for a generation slot; more get 503 with Retry-After.
    /// Default 32.
    pub generation_queue: usize,
    /// Most time a non-streamed request may take, in seconds. Default 300.
    pub request_timeout_secs: u64,
    /// Most time one upload request may take (the body arrives at the client's pace), in
    /// seconds. Default 3600.
    pub upload_timeout_secs: u64,
    /// Largest upload request, in MiB (a folder or zip in one request). Default 512.
    pub max_upload_mb: u64,
    /// Most files in one upload (after unpacking zips). Default 2000.
    pub max_upload_files: usize,
    /// Most bytes unpacked from the zips of one upload together, in MiB (zip-bomb defence;
    /// counted as the bytes come out, not taken from the zip's headers). Default 2048.
    pub max_unzipped_mb: u64,
    /// Words that must not appear in answers (the output content filter); an answer that
    /// contains one is replaced by a refusal and logged for admins. Default none.
    pub blocked_words: Vec<String>,
    /// A secret that Prometheus sends as `Authorization: Bearer …` to scrape `/metrics`.
    /// Unset (default): `/metrics` answers requests from loopback addresses that came through
    /// no proxy, and admins (session or API token) from anywhere; set it to scrape from
    /// another machine without an admin's token.
    pub metrics_token: Option<Secret>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".into(),
            public_url: None,
            session_hours: 168,
            ip_questions_per_s: 10,
            user_questions_per_s: 5,
            login_failures_per_name: 10,
            login_failures_per_ip: 50,
            login_lockout_minutes: 15,
            generation_slots: 1,
            generation_queue: 32,
            request_timeout_secs: 300,
            upload_timeout_secs: 3600,
            max_upload_mb: 512,
            max_upload_files: 2000,
            max_unzipped_mb: 2048,
            blocked_words: Vec::new(),
            metrics_token: None,
        }
    }
}

/// How answers are sent to WeCom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WecomMessageType {
    /// Rendered (bold, links) in the WeCom app; the WeChat plugin (微信插件) cannot show it.
    Markdown,
    /// Plain text: shown everywhere.
    Text,
}

/// `[wecom]`: the WeCom (企业微信) self-built app and group robot (README "WeCom").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WecomConfig {
    /// The company's CorpID (我的企业 → 企业信息). The app is on when this, `token` and
    /// `encoding_aes_key` are set. Default none.
    #[serde(deserialize_with = "string_or_number")]
    pub corp_id: Option<String>,
    /// The app's AgentId (应用管理 → the app). Default none.
    pub agent_id: Option<u64>,
    /// The app's Secret, for access tokens. Secret. Default none.
    pub secret: Option<Secret>,
    /// The callback Token (接收消息 → 设置API接收). Secret. Default none.
    pub token: Option<Secret>,
    /// The callback EncodingAESKey (43 characters). Secret. Default none.
    pub encoding_aes_key: Option<Secret>,
    /// The WeCom API. Default `https://qyapi.weixin.qq.com`; tests and private proxies point
    /// it elsewhere (`http://` is allowed).
    pub api_base: String,
    /// The group robot for admin notifications: its webhook URL
    /// (`https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…`) or just the key. Secret.
    /// Default none (no notifications).
    pub robot_webhook: Option<Secret>,
    /// Where WeCom posts messages (the URL given in the console is the public address plus
    /// this path). Default `/wecom/callback`.
    pub callback_path: String,
    /// WeCom userid → zhiku user name, for employees who already have an account
    /// (`[wecom.users] ZhangSan = "zhangsan"`). Others are matched by the user's linked
    /// WeCom id (`zhiku user wecom NAME ID`), else provisioned into `default_group`.
    pub users: std::collections::BTreeMap<String, String>,
    /// The group employees provisioned from WeCom join (created when missing); grant it the
    /// knowledge bases everyone may read. Default `wecom`.
    pub default_group: String,
    /// `markdown` (default) or `text`.
    pub message_type: WecomMessageType,
    /// Callbacks whose timestamp is further than this from the server's clock are refused
    /// (replay defence), seconds. Default 300.
    pub max_clock_skew_secs: u64,
    /// Questions one employee may ask per minute; more get a polite note. Default 10.
    pub user_questions_per_minute: u32,
    /// At start-up, questions accepted before a stop but not yet answered are answered if
    /// they are at most this old, in seconds; older ones are marked `expired` and not
    /// answered, since after a long outage an answer to a question from hours ago would
    /// arrive out of the blue (the employee has asked again or moved on); 0 answers none.
    /// Default 1800.
    pub recover_max_age_secs: u64,
}

impl Default for WecomConfig {
    fn default() -> Self {
        Self {
            corp_id: None,
            agent_id: None,
            secret: None,
            token: None,
            encoding_aes_key: None,
            api_base: "https://qyapi.weixin.qq.com".into(),
            robot_webhook: None,
            callback_path: "/wecom/callback".into(),
            users: Default::default(),
            default_group: "wecom".into(),
            message_type: WecomMessageType::Markdown,
            max_clock_skew_secs: 300,
            user_questions_per_minute: 10,
            recover_max_age_secs: 1800,
        }
    }
}

impl WecomConfig {
    /// Whether the app's callback is on: `corp_id`, `token` and `encoding_aes_key` set.
    pub fn enabled(&self) -> bool {
        [
            self.corp_id.as_deref(),
            Secret::exposed(&self.token),
            Secret::exposed(&self.encoding_aes_key),
        ]
        .iter()
        .all(|v| v.is_some_and(|s| !s.trim().is_empty()))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let set = |v: Option<&str>| v.is_some_and(|s| !s.trim().is_empty());
        let app_keys = [
            ("corp_id", set(self.corp_id.as_deref())),
            ("token", set(Secret::exposed(&self.token))),
            (
                "encoding_aes_key",
                set(Secret::exposed(&self.encoding_aes_key)),
            ),
        ];
        let missing: Vec<&str> = app_keys.iter().filter(|k| !k.1).map(|k| k.0).collect();
        if missing.len() == app_keys.len() {
            return Ok(());
        }
        let mut missing: Vec<String> = missing.iter().map(|k| format!("wecom.{k}")).collect();
        if !set(Secret::exposed(&self.secret)) {
            missing.push("wecom.secret".into());
        }
        if self.agent_id.is_none() {
            missing.push("wecom.agent_id".into());
        }
        if !missing.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "the WeCom app is half configured: set {} too (README \"WeCom\")",
                missing.join(", ")
            )));
        }
        if let Some(k) = &self.encoding_aes_key {
            decode_aes_key(k.expose()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        if !self.callback_path.starts_with('/') || self.callback_path.len() < 2 {
            return Err(ConfigError::Invalid(format!(
                "wecom.callback_path must start with / (got `{}`)",
                self.callback_path
            )));
        }
        if self.default_group.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "wecom.default_group must name a group".into(),
            ));
        }
        Ok(())
    }
}

/// `[auth]`: where accounts come from besides the local ones (README "Identity").
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub ldap: LdapConfig,
    pub oidc: OidcConfig,
}

/// How the account of an LDAP user is found and their password checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LdapBind {
    /// Bind as the service account (`bind_dn`, or anonymously without it), search the user
    /// with `user_filter`, then bind as the DN found with the user's password.
    Search,
    /// Bind as `user_dn_template` with `{login}` replaced (e.g. `uid={login},ou=people,…` or
    /// AD's `{login}@corp.example.com`), then read the user's own entry with `user_filter`.
    Direct,
}

/// Where a user's LDAP groups come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LdapGroups {
    /// Groups under `group_base_dn` matching `group_filter` (`member`, `uniqueMember`,
    /// `memberUid`).
    Search,
    /// The user entry's `member_of_attribute` (AD, or OpenLDAP's memberof overlay).
    MemberOf,
    /// No groups from the directory.
    None,
}

/// How groups inside groups are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LdapNested {
    /// Direct groups only.
    None,
    /// zhiku follows groups of groups itself, at most `nested_depth` levels, each group once
    /// (for servers without in-chain matching, such as OpenLDAP).
    Recursive,
    /// Active Directory resolves the whole chain in one search:
    /// `(member:1.2.840.113556.1.4.1941:={dn})` under `group_base_dn` (LDAP_MATCHING_RULE_IN_CHAIN).
    InChain,
}

/// Which directory groups become zhiku groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LdapGroupRule {
    /// Every group, under its own name (names zhiku cannot use are skipped with a warning).
    All,
    /// Only the groups in `allowed_groups`.
    AllowList,
    /// Only the groups in `group_map`, renamed to the zhiku group given there.
    Map,
}

/// `[auth.ldap]`: log in with the company directory (OpenLDAP, Active Directory). On when
/// `url` is set. Names starting with `{…}` in filters and templates are replaced with the
/// RFC 4515-escaped value (`{login}`: what the user typed; `{dn}`: the user's DN).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://host:389` or `ldaps://host:636`. Default none (LDAP off).
    pub url: Option<String>,
    /// Upgrade an `ldap://` connection with StartTLS. Default false.
    pub starttls: bool,
    /// PEM file of the CA(s) that signed the server's certificate; without it the system's
    /// roots are used. Default none.
    pub ca_file: Option<PathBuf>,
    /// Limit on connecting and on each LDAP operation, seconds. Default 10.
    pub timeout_secs: u64,
    /// `search` (default) or `direct`.
    pub bind: LdapBind,
    /// The service account that searches users and groups (and syncs); none binds
    /// anonymously. Default none.
    pub bind_dn: Option<String>,
    /// The service account's password. Secret (env `ZHIKU_AUTH__LDAP__BIND_PASSWORD`).
    /// Default none.
    pub bind_password: Option<Secret>,
    /// Direct bind: the DN (or AD user principal name) bound as, with `{login}`. Default none.
    pub user_dn_template: Option<String>,
    /// Where users are searched (subtree). Required when `url` is set.
    pub base_dn: String,
    /// Default `(&(objectClass=inetOrgPerson)(uid={login}))`; AD:
    /// `(&(objectClass=user)(|(sAMAccountName={login})(userPrincipalName={login})))`.
    pub user_filter: String,
    /// The attribute whose value becomes the zhiku user name. Default `uid` (AD:
    /// `sAMAccountName`).
    pub login_attribute: String,
    /// Default `cn` (AD: `displayName`).
    pub display_name_attribute: String,
    /// Default `mail`.
    pub mail_attribute: String,
    /// A user entry that matches this filter is disabled: refused at login, locked out at the
    /// next sync. Default none; AD: `(userAccountControl:1.2.840.113556.1.4.803:=2)`;
    /// OpenLDAP e.g. `(pwdAccountLockedTime=*)` or an attribute of your own.
    pub disabled_filter: Option<String>,
    /// `search` (default), `member_of` or `none`.
    pub groups: LdapGroups,
    /// Where groups are searched. Default `base_dn`.
    pub group_base_dn: Option<String>,
    /// The groups a user is in directly, with `{dn}` and `{login}`. Default
    /// `(|(member={dn})(uniqueMember={dn})(memberUid={login}))`.
    pub group_filter: String,
    /// The groups a group is in (nested groups, `recursive`), with `{dn}` the group's DN.
    /// Default `(|(member={dn})(uniqueMember={dn}))`.
    pub nested_group_filter: String,
    /// Default `memberOf`.
    pub member_of_attribute: String,
    /// The attribute naming a group. Default `cn`.
    pub group_name_attribute: String,
    /// `recursive` (default), `none` or `in_chain` (Active Directory).
    pub nested: LdapNested,
    /// Levels of groups inside groups followed by `recursive`. Default 8.
    pub nested_depth: u32,
    /// `all` (default), `allow_list` or `map`.
    pub group_rule: LdapGroupRule,
    /// `allow_list`: the directory groups that become zhiku groups. Default empty.
    pub allowed_groups: Vec<String>,
    /// `map`: directory group → zhiku group (`[auth.ldap.group_map] "Domain Admins" = "it"`).
    pub group_map: std::collections::BTreeMap<String, String>,
    /// How often all directory accounts are checked (groups refreshed, users gone or
    /// disabled in the directory locked out), seconds; 0: only at login and by
    /// `zhiku user sync-ldap`. Default 900.
    pub sync_interval_secs: u64,
}

impl Default for LdapConfig {
    fn default() -> Self {
        Self {
            url: None,
            starttls: false,
            ca_file: None,
            timeout_secs: 10,
            bind: LdapBind::Search,
            bind_dn: None,
            bind_password: None,
            user_dn_template: None,
            base_dn: String::new(),
            user_filter: "(&(objectClass=inetOrgPerson)(uid={login}))".into(),
            login_attribute: "uid".into(),
            display_name_attribute: "cn".into(),
            mail_attribute: "mail".into(),
            disabled_filter: None,
            groups: LdapGroups::Search,
            group_base_dn: None,
            group_filter: "(|(member={dn})(uniqueMember={dn})(memberUid={login}))".into(),
            nested_group_filter: "(|(member={dn})(uniqueMember={dn}))".into(),
            member_of_attribute: "memberOf".into(),
            group_name_attribute: "cn".into(),
            nested: LdapNested::Recursive,
            nested_depth: 8,
            group_rule: LdapGroupRule::All,
            allowed_groups: Vec::new(),
            group_map: Default::default(),
            sync_interval_secs: 900,
        }
    }
}

impl LdapConfig {
    /// Whether LDAP login is on (`url` set).
    pub fn enabled(&self) -> bool {
        self.url.as_deref().is_some_and(|u| !u.trim().is_empty())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        let bad = |m: String| Err(ConfigError::Invalid(format!("auth.ldap.{m}")));
        let url = self.url.as_deref().unwrap_or_default().trim();
        let ldaps = url.starts_with("ldaps://");
        if !(ldaps || url.starts_with("ldap://")) {
            return bad(format!(
                "url must start with ldap:// or ldaps:// (got `{url}`)"
            ));
        }
        if ldaps && self.starttls {
            return bad("starttls is for ldap:// URLs; an ldaps:// URL is TLS already".into());
        }
        if self.base_dn.trim().is_empty() {
            return bad(
                "base_dn must be set when auth.ldap.url is (where users are searched)".into(),
            );
        }
        if self.timeout_secs == 0 {
            return bad("timeout_secs must be at least 1".into());
        }
        if self.bind == LdapBind::Direct
            && !self
                .user_dn_template
                .as_deref()
                .is_some_and(|t| t.contains("{login}"))
        {
            return bad("user_dn_template must be set, with {login}, for bind = \"direct\"".into());
        }
        if self.bind_dn.is_some() != self.bind_password.is_some() {
            return bad(
                "bind_dn and bind_password go together (env ZHIKU_AUTH__LDAP__BIND_PASSWORD)"
                    .into(),
            );
        }
        for (key, filter) in [
            ("user_filter", Some(&self.user_filter)),
            ("group_filter", Some(&self.group_filter)),
            ("nested_group_filter", Some(&self.nested_group_filter)),
            ("disabled_filter", self.disabled_filter.as_ref()),
        ] {
            if let Some(f) = filter
                && !(f.trim().starts_with('(') && f.trim().ends_with(')'))
            {
                return bad(format!(
                    "{key} must be an LDAP filter in parentheses (got `{f}`)"
                ));
            }
        }
        if !self.user_filter.contains("{login}") {
            return bad("user_filter must contain {login}".into());
        }
        check_group_mapping(self.group_rule, &self.allowed_groups, &self.group_map)
            .map_or(Ok(()), bad)
    }
}

/// The group-mapping rules `[auth.ldap]` and `[auth.oidc]` share: a rule that maps no group
/// is a mistake, and every zhiku group named must be a valid group name. The message has no
/// section prefix.
fn check_group_mapping(
    rule: LdapGroupRule,
    allowed_groups: &[String],
    group_map: &std::collections::BTreeMap<String, String>,
) -> Option<String> {
    if rule == LdapGroupRule::AllowList && allowed_groups.is_empty() {
        return Some(
            "allowed_groups is empty: group_rule = \"allow_list\" would map no group".into(),
        );
    }
    if rule == LdapGroupRule::Map && group_map.is_empty() {
        return Some("group_map is empty: group_rule = \"map\" would map no group".into());
    }
    group_map
        .values()
        .chain(allowed_groups)
        .find(|n| !crate::store::meta::valid_account_name(n))
        .map(|n| format!(
            "`{n}` cannot be a zhiku group name (1–64 letters, digits, CJK, `-`, `_`, `.`, `@`); map it to one in group_map"
        ))
}

/// `[auth.oidc]`: single sign-on with an OpenID Connect provider (Keycloak, Authing, Azure
/// AD / Entra ID, …): authorization code flow with PKCE. On when `issuer_url` is set. The
/// provider's users become zhiku accounts (source `oidc:<name>`) on their first login, and
/// their groups are refreshed from the ID token's claims at every login.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcConfig {
    /// A short name for the provider: accounts come from `oidc:<name>`, and the audit log
    /// names it. Default `sso`.
    pub name: String,
    /// The issuer, exactly as the provider's discovery document states it (discovery is read
    /// from `{issuer_url}/.well-known/openid-configuration`). Default none (SSO off).
    pub issuer_url: Option<String>,
    /// The client (application) id registered at the provider. Required with `issuer_url`.
    pub client_id: String,
    /// The client secret. Secret (env `ZHIKU_AUTH__OIDC__CLIENT_SECRET`). Default none (a
    /// public client, PKCE only).
    pub client_secret: Option<Secret>,
    /// Where the provider sends the browser back; register exactly this URL at the provider.
    /// Default `{server.public_url}/auth/oidc/callback`; one of the two must be set.
    pub redirect_url: Option<String>,
    /// Scopes asked for (`openid` is always added). Default `["openid", "profile", "email"]`.
    pub scopes: Vec<String>,
    /// The ID-token claim whose value becomes the zhiku user name. Default
    /// `preferred_username` (Authing: `email` or `phone_number` may suit better).
    pub username_claim: String,
    /// The claim with the user's groups (a list of strings, or one string). A dotted path
    /// reaches into objects (Keycloak `realm_access.roles`). Default `groups`.
    pub groups_claim: String,
    /// A second claim whose values count as groups too, e.g. Entra's app `roles`. Default
    /// none.
    pub roles_claim: Option<String>,
    /// `all` (default), `allow_list` or `map`: which of the provider's groups become zhiku
    /// groups, as in `[auth.ldap]`.
    pub group_rule: LdapGroupRule,
    /// `allow_list`: the provider's groups that become zhiku groups. Default empty.
    pub allowed_groups: Vec<String>,
    /// `map`: provider group → zhiku group (`[auth.oidc.group_map] "b4f…-guid" = "finance"`).
    pub group_map: std::collections::BTreeMap<String, String>,
    /// Only users whose `email` claim is at one of these domains may log in (an
    /// `email_verified = false` claim refuses too). Default empty: any.
    pub allowed_domains: Vec<String>,
    /// Only users whose ID token has this claim (a dotted path) with `required_value` (or,
    /// for a list, containing it) may log in, e.g. Entra's `tid`. Default none.
    pub required_claim: Option<String>,
    /// The value `required_claim` must have. Default none.
    pub required_value: Option<String>,
    /// The login page's button. Default empty: "使用单点登录 / Sign in with SSO".
    pub button_label: String,
    /// Limit on each call to the provider (discovery, token, keys), seconds. Default 10.
    pub timeout_secs: u64,
    /// How long a started login may take at the provider before its state expires, seconds.
    /// Default 600.
    pub login_ttl_secs: u64,
    /// Clock difference tolerated on the ID token's `exp` and `iat`, seconds. Default 60.
    pub clock_skew_secs: u64,
    /// Log out at the provider too (its `end_session_endpoint`, when its discovery offers
    /// one). Default true.
    pub provider_logout: bool,
    /// Where the provider sends the browser after its logout; register it there. Default
    /// `{server.public_url}/login` (or this server's `/login` as the browser reached it).
    pub post_logout_redirect_url: Option<String>,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            name: "sso".into(),
            issuer_url: None,
            client_id: String::new(),
            client_secret: None,
            redirect_url: None,
            scopes: vec!["openid".into(), "profile".into(), "email".into()],
            username_claim: "preferred_username".into(),
            groups_claim: "groups".into(),
            roles_claim: None,
            group_rule: LdapGroupRule::All,
            allowed_groups: Vec::new(),
            group_map: Default::default(),
            allowed_domains: Vec::new(),
            required_claim: None,
            required_value: None,
            button_label: String::new(),
            timeout_secs: 10,
            login_ttl_secs: 600,
            clock_skew_secs: 60,
            provider_logout: true,
            post_logout_redirect_url: None,
        }
    }
}

impl OidcConfig {
    /// Whether SSO is on (`issuer_url` set).
    pub fn enabled(&self) -> bool {
        self.issuer_url
            .as_deref()
            .is_some_and(|u| !u.trim().is_empty())
    }

    /// The account source of this provider's users.
    pub fn source(&self) -> String {
        format!("oidc:{}", self.name)
    }

    /// The callback URL: `redirect_url`, else derived from `public_url`.
    pub fn redirect_url(&self, public_url: Option<&str>) -> Option<String> {
        match &self.redirect_url {
            Some(u) if !u.trim().is_empty() => Some(u.trim().to_string()),
            _ => {
                public_url.map(|p| format!("{}/auth/oidc/callback", p.trim().trim_end_matches('/')))
            }
        }
    }

    fn validate(&self, public_url: Option<&str>) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        let bad = |m: String| Err(ConfigError::Invalid(format!("auth.oidc.{m}")));
        let issuer = self.issuer_url.as_deref().unwrap_or_default().trim();
        if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
            return bad(format!(
                "issuer_url must start with https:// (or http:// for a provider on this machine), got `{issuer}`"
            ));
        }
        if !crate::store::meta::valid_account_name(&self.name) || self.name.contains(':') {
            return bad(format!(
                "name `{}` must be a short name (letters, digits, `-`, `_`, `.`)",
                self.name
            ));
        }
        if self.client_id.trim().is_empty() {
            return bad("client_id must be set when auth.oidc.issuer_url is".into());
        }
        match self.redirect_url(public_url) {
            None => {
                return bad(
                    "redirect_url must be set (or server.public_url, to derive {public_url}/auth/oidc/callback)"
                        .into(),
                );
            }
            Some(u) if !(u.starts_with("https://") || u.starts_with("http://")) => {
                return bad(format!("redirect_url must be an http(s) URL, got `{u}`"));
            }
            Some(_) => {}
        }
        if self.username_claim.trim().is_empty() || self.groups_claim.trim().is_empty() {
            return bad("username_claim and groups_claim must name claims".into());
        }
        if self.timeout_secs == 0 || self.login_ttl_secs == 0 {
            return bad("timeout_secs and login_ttl_secs must be at least 1".into());
        }
        if self.required_claim.is_some() != self.required_value.is_some() {
            return bad("required_claim and required_value go together".into());
        }
        check_group_mapping(self.group_rule, &self.allowed_groups, &self.group_map)
            .map_or(Ok(()), bad)
    }
}

/// A secret from the configuration: an API key, token or password. Code reads it with
/// [`Secret::expose`]; `Debug` and `Serialize` (logs, `zhiku config`) show only that it is set
/// and its length, so no log line or printed configuration can carry it, whatever struct it
/// sits in, while an admin can still check their setup (is the 43-character AES key in?).
/// Every secret-bearing key has this type; a test fails for a key whose name looks secret
/// and is shown in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// An optional secret's value.
    pub fn exposed(secret: &Option<Secret>) -> Option<&str> {
        secret.as_ref().map(Secret::expose)
    }

    /// What is shown instead of the value.
    fn shown(&self) -> String {
        match self.0.chars().count() {
            1 => "<set, 1 character>".into(),
            n => format!("<set, {n} characters>"),
        }
    }

    /// Whether `s` is what [`Secret::shown`] prints (pasted back from `zhiku config`).
    fn is_placeholder(s: &str) -> bool {
        s.strip_prefix("<set, ")
            .is_some_and(|rest| rest.ends_with(" characters>") || rest.ends_with(" character>"))
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.shown())
    }
}

/// A string, or a number as environment variables may spell it (`ZHIKU_WECOM__TOKEN=123456`);
/// the placeholder `zhiku config` prints is refused, so a pasted copy of that output does not
/// silently send `<set, 32 characters>` as a key.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Scalar {
            S(String),
            I(i64),
        }
        let s = match Scalar::deserialize(d)? {
            Scalar::S(s) => s,
            Scalar::I(i) => i.to_string(),
        };
        if Secret::is_placeholder(&s) {
            return Err(serde::de::Error::custom(format!(
                "`{s}` is how `zhiku config` hides a secret; write the secret itself"
            )));
        }
        Ok(Self(s))
    }
}

/// A string that environment variables may spell as a number (`ZHIKU_WECOM__TOKEN=123456`
/// is read as a TOML integer).
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        I(i64),
    }
    Ok(Option::<Scalar>::deserialize(d)?.map(|v| match v {
        Scalar::S(s) => s,
        Scalar::I(i) => i.to_string(),
    }))
}

impl Config {
    /// Load defaults ← file ← environment. `file` is the explicit `--config`; without it,
    /// `./zhiku.toml` is read when present.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(file, &vars)
    }

    /// As [`Config::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        vars: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let default_path = Path::new("zhiku.toml");
        let (path, required) = match file {
            Some(p) => (Some(p.to_path_buf()), true),
            None if default_path.exists() => (Some(default_path.to_path_buf()), false),
            None => (None, false),
        };
        let mut table = toml::Table::new();
        if let Some(path) = &path {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    table = text
                        .parse::<toml::Table>()
                        .map_err(|e| ConfigError::Parse {
                            path: path.clone(),
                            message: e.to_string(),
                        })?;
                }
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ConfigError::Read {
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
        // Validate the file alone first, so an error names the file rather than a variable.
        if let Some(path) = &path {
            toml::Value::Table(table.clone())
                .try_into::<Config>()
                .map_err(|e| ConfigError::Parse {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
        }
        for (var, value) in vars {
            apply_env(&mut table, var, value)?;
        }
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Env {
                    var: "ZHIKU_*".into(),
                    message: e.to_string(),
                })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let r = &self.retrieve;
        if !(0.0..=1.0).contains(&r.dense_weight) {
            return Err(ConfigError::Invalid(format!(
                "retrieve.dense_weight must be between 0 and 1, got {}",
                r.dense_weight
            )));
        }
        if r.rrf_k <= 0.0 {
            return Err(ConfigError::Invalid(
                "retrieve.rrf_k must be positive".into(),
            ));
        }
        if r.candidates == 0 || r.top_k == 0 {
            return Err(ConfigError::Invalid(
                "retrieve.candidates and retrieve.top_k must be at least 1".into(),
            ));
        }
        if self.embed.batch_size == 0 {
            return Err(ConfigError::Invalid(
                "embed.batch_size must be at least 1".into(),
            ));
        }
        let g = &self.rag;
        if !(0.0..=1.0).contains(&g.min_term_coverage) {
            return Err(ConfigError::Invalid(format!(
                "rag.min_term_coverage must be between 0 and 1, got {}",
                g.min_term_coverage
            )));
        }
        if !(0.0..=1.0).contains(&g.claim_min_coverage) {
            return Err(ConfigError::Invalid(format!(
                "rag.claim_min_coverage must be between 0 and 1, got {}",
                g.claim_min_coverage
            )));
        }
        if g.sources == 0 || g.retrieve_top_k == 0 || g.extractive_sentences == 0 {
            return Err(ConfigError::Invalid(
                "rag.sources, rag.retrieve_top_k and rag.extractive_sentences must be at least 1"
                    .into(),
            ));
        }
        let c = &self.ingest.chunk;
        if c.max_tokens < 16 || c.overlap_tokens >= c.max_tokens {
            return Err(ConfigError::Invalid(format!(
                "ingest.chunk: max_tokens must be at least 16 and overlap_tokens below it (got {} and {})",
                c.max_tokens, c.overlap_tokens
            )));
        }
        let o = &self.ingest.ocr;
        if !(72..=600).contains(&o.dpi) {
            return Err(ConfigError::Invalid(format!(
                "ingest.ocr.dpi must be between 72 and 600, got {}",
                o.dpi
            )));
        }
        if !(0.0..=1.0).contains(&o.min_confidence) {
            return Err(ConfigError::Invalid(format!(
                "ingest.ocr.min_confidence must be between 0 and 1, got {}",
                o.min_confidence
            )));
        }
        self.wecom.validate()?;
        self.auth.ldap.validate()?;
        self.auth.oidc.validate(self.server.public_url.as_deref())?;
        Ok(())
    }

    /// The jieba user dictionary in force: the configured one, or `<data_dir>/userdict.txt`.
    pub fn user_dict(&self) -> Option<PathBuf> {
        self.keyword.user_dict.clone().or_else(|| {
            let p = self.data_dir.join("userdict.txt");
            p.exists().then_some(p)
        })
    }

    /// The folder of prompt templates in force: `rag.prompts_dir` or `<data_dir>/prompts`.
    pub fn prompts_dir(&self) -> PathBuf {
        self.rag
            .prompts_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("prompts"))
    }

    /// The configuration as TOML (for `zhiku config`): every key that has a value, secrets
    /// as [`Secret`] shows them.
    pub fn to_toml(&self) -> String {
        format!(
            "# Secrets show as \"<set, N characters>\"; a key that is not listed is unset.\n\
             # Linear layers of the candle embedder on this CPU: {}.\n\
             # OCR: {}.\n{}",
            self.embed.precision.describe(),
            crate::ocr::availability(self).describe(),
            toml::to_string_pretty(self).unwrap_or_default()
        )
    }
}

/// Top-level keys and sections an environment variable may set.
const ENV_ROOTS: &[&str] = &[
    "data_dir", "embed", "vector", "keyword", "ingest", "retrieve", "generate", "rag", "server",
    "wecom", "auth",
];

fn apply_env(table: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let Some(rest) = var.strip_prefix("ZHIKU_") else {
        return Ok(());
    };
    let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
    if !ENV_ROOTS.contains(&path[0].as_str()) || path.iter().any(|p| p.is_empty()) {
        return Ok(());
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !v.is_table())
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let mut cursor = table;
    for key in &path[..path.len() - 1] {
        let entry = cursor
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cursor = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
            var: var.to_string(),
            message: format!("`{key}` is not a section"),
        })?;
    }
    cursor.insert(path[path.len() - 1].clone(), parsed);
    Ok(())
}

/// A WeCom `EncodingAESKey` that is not one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AesKeyError {
    #[error(
        "wecom.encoding_aes_key must be the 43 characters the WeCom console shows (got {0} characters)"
    )]
    Length(usize),
    #[error("wecom.encoding_aes_key is not valid base64: {0}")]
    Encoding(String),
}

/// The AES key of a WeCom EncodingAESKey (43 base64 characters without the trailing `=`):
/// checked here when the configuration loads, used by the callback's crypto.
pub fn decode_aes_key(encoding_aes_key: &str) -> Result<[u8; 32], AesKeyError> {
    use base64::Engine as _;
    let k = encoding_aes_key.trim();
    if k.len() != 43 {
        return Err(AesKeyError::Length(k.chars().count()));
    }
    // WeCom's keys are 43 random characters: the last one usually carries bits past the
    // 32nd byte, which a strict decoder refuses and WeCom's own SDKs ignore.
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let bytes = lenient
        .decode(format!("{k}="))
        .map_err(|e| AesKeyError::Encoding(e.to_string()))?;
    bytes
        .try_into()
        .map_err(|_| AesKeyError::Encoding("it does not decode to 32 bytes".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_without_file() {
        let c = Config::load_with_env(None, &[]).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("data"));
        assert_eq!(c.retrieve.fusion, Fusion::Weighted);
        assert_eq!(c.vector.url, None);
        assert!(c.ingest.mask.enabled);
        assert_eq!(c.embed.backend, EmbedBackend::Candle);
        assert_eq!(c.embed.onnxruntime, None);
    }

    #[test]
    fn embed_backend_from_file_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("zhiku.toml");
        std::fs::write(&f, "[embed]\nbackend = \"onnx\"\n").unwrap();
        let c = Config::load_with_env(
            Some(&f),
            &env(&[(
                "ZHIKU_EMBED__ONNXRUNTIME",
                "/opt/ort/libonnxruntime.so.1.31.1",
            )]),
        )
        .unwrap();
        assert_eq!(c.embed.backend, EmbedBackend::Onnx);
        assert_eq!(
            c.embed.onnxruntime.as_deref(),
            Some(Path::new("/opt/ort/libonnxruntime.so.1.31.1"))
        );
        let shown = c.to_toml();
        assert!(shown.contains("backend = \"onnx\""), "{shown}");
        assert!(shown.contains("onnxruntime = \"/opt/ort/"), "{shown}");
        let e = Config::load_with_env(None, &env(&[("ZHIKU_EMBED__BACKEND", "tensorflow")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tensorflow"), "{e}");
    }

    #[test]
    fn partial_file_and_env_override() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("zhiku.toml");
        std::fs::write(&f, "[retrieve]\ntop_k = 9\n[vector]\ncollection = \"c1\"\n").unwrap();
        let c = Config::load_with_env(
            Some(&f),
            &env(&[
                ("ZHIKU_VECTOR__URL", "http://127.0.0.1:6334"),
                ("ZHIKU_RETRIEVE__DENSE_WEIGHT", "0.7"),
                ("ZHIKU_DATA_DIR", "/tmp/zk"),
                ("ZHIKU_SERVER__REQUEST_TIMEOUT_SECS", "30"),
                ("ZHIKU_SERVER__ADDR", "0.0.0.0:9000"),
                ("ZHIKU_UNRELATED", "x"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.retrieve.top_k, 9);
        assert_eq!(c.vector.collection, "c1");
        assert_eq!(c.vector.url.as_deref(), Some("http://127.0.0.1:6334"));
        assert!((c.retrieve.dense_weight - 0.7).abs() < 1e-6);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/zk"));
        assert_eq!(c.server.request_timeout_secs, 30);
        assert_eq!(c.server.addr, "0.0.0.0:9000");
        assert_eq!(c.retrieve.candidates, 50, "untouched keys keep defaults");
    }

    #[test]
    fn unknown_key_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("zhiku.toml");
        std::fs::write(&f, "[retreive]\ntop_k = 9\n").unwrap();
        let e = Config::load_with_env(Some(&f), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("retreive") && e.contains("zhiku.toml"), "{e}");
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let e = Config::load_with_env(Some(Path::new("/nonexistent/zhiku.toml")), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/zhiku.toml"), "{e}");
    }

    #[test]
    fn ldap_from_env_validated_and_its_password_hidden() {
        let base = [
            ("ZHIKU_AUTH__LDAP__URL", "ldaps://ldap.example.com"),
            ("ZHIKU_AUTH__LDAP__BASE_DN", "ou=people,dc=example,dc=com"),
            ("ZHIKU_AUTH__LDAP__BIND_DN", "cn=svc,dc=example,dc=com"),
            ("ZHIKU_AUTH__LDAP__BIND_PASSWORD", "s3rvice-pw"),
            ("ZHIKU_AUTH__LDAP__NESTED", "in_chain"),
            ("ZHIKU_AUTH__LDAP__GROUP_MAP__Domain Admins", "it"),
            ("ZHIKU_AUTH__LDAP__GROUP_RULE", "map"),
        ];
        let c = Config::load_with_env(None, &env(&base)).unwrap();
        let l = &c.auth.ldap;
        assert!(l.enabled() && l.nested == LdapNested::InChain);
        assert_eq!(Secret::exposed(&l.bind_password), Some("s3rvice-pw"));
        assert_eq!(
            l.group_map["domain admins"], "it",
            "env keys are lower-cased"
        );
        assert_eq!(l.timeout_secs, 10);
        assert!(!c.to_toml().contains("s3rvice-pw"));
        assert!(!format!("{c:?}").contains("s3rvice-pw"));
        assert!(
            !Config::load_with_env(None, &[])
                .unwrap()
                .auth
                .ldap
                .enabled()
        );
        let refused = |extra: &[(&str, &str)]| {
            let mut vars = base.to_vec();
            vars.extend_from_slice(extra);
            Config::load_with_env(None, &env(&vars))
                .unwrap_err()
                .to_string()
        };
        assert!(refused(&[("ZHIKU_AUTH__LDAP__URL", "http://x")]).contains("ldap://"));
        assert!(refused(&[("ZHIKU_AUTH__LDAP__BASE_DN", "")]).contains("base_dn"));
        assert!(refused(&[("ZHIKU_AUTH__LDAP__STARTTLS", "true")]).contains("starttls"));
        assert!(
            refused(&[("ZHIKU_AUTH__LDAP__USER_FILTER", "uid={login}")]).contains("parentheses")
        );
        assert!(refused(&[("ZHIKU_AUTH__LDAP__USER_FILTER", "(uid=alice)")]).contains("{login}"));
        assert!(refused(&[("ZHIKU_AUTH__LDAP__BIND", "direct")]).contains("user_dn_template"));
        assert!(
            refused(&[("ZHIKU_AUTH__LDAP__GROUP_MAP__Staff", "all staff")]).contains("all staff")
        );
        assert!(
            refused(&[("ZHIKU_AUTH__LDAP__GROUP_RULE", "allow_list")]).contains("allowed_groups")
        );
    }

    #[test]
    fn wecom_from_env_with_secrets_redacted() {
        let c = Config::load_with_env(
            None,
            &env(&[
                ("ZHIKU_WECOM__CORP_ID", "wx5823bf96d3bd56c7"),
                ("ZHIKU_WECOM__AGENT_ID", "1000002"),
                ("ZHIKU_WECOM__SECRET", "s3cr3t-value"),
                ("ZHIKU_WECOM__TOKEN", "123456"),
                (
                    "ZHIKU_WECOM__ENCODING_AES_KEY",
                    "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
                ),
                ("ZHIKU_WECOM__ROBOT_WEBHOOK", "robot-key-1"),
                ("ZHIKU_WECOM__USERS__ZhangSan", "alice"),
            ]),
        )
        .unwrap();
        let w = &c.wecom;
        assert!(w.enabled());
        assert_eq!(w.agent_id, Some(1000002));
        assert_eq!(
            Secret::exposed(&w.token),
            Some("123456"),
            "numbers read as strings"
        );
        assert_eq!(w.users.get("zhangsan").map(String::as_str), Some("alice"));
        assert_eq!(w.default_group, "wecom");
        assert_eq!(w.callback_path, "/wecom/callback");
        assert_eq!(w.api_base, "https://qyapi.weixin.qq.com");
        for shown in [format!("{c:?}"), c.to_toml()] {
            for secret in ["s3cr3t-value", "123456", "jWmYm7qr5n", "robot-key-1"] {
                assert!(!shown.contains(secret), "{secret} shown in {shown}");
            }
            assert!(shown.contains("wx5823bf96d3bd56c7"), "{shown}");
        }
        assert!(!Config::load_with_env(None, &[]).unwrap().wecom.enabled());
    }

    /// A deserializer that gives every field of every struct a value, whatever fields exist:
    /// strings get `probe-<path>` (recorded), numbers 1, enums their first variant.
    struct Probe<'a> {
        path: String,
        strings: &'a std::cell::RefCell<Vec<(String, String)>>,
    }

    type ProbeError = serde::de::value::Error;

    macro_rules! probe_numbers {
        ($($($method:ident)+ => $visit:ident($value:expr));+) => {$($(
            fn $method<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
                v.$visit($value)
            }
        )+)+};
    }

    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = ProbeError;

        fn deserialize_any<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
            let value = format!("probe-{}", self.path);
            self.strings.borrow_mut().push((self.path, value.clone()));
            v.visit_string(value)
        }
        fn deserialize_bool<V: serde::de::Visitor<'de>>(
            self,
            v: V,
        ) -> Result<V::Value, ProbeError> {
            v.visit_bool(true)
        }
        probe_numbers! {
            deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_u8
            deserialize_u16 deserialize_u32 deserialize_u64 => visit_u64(1);
            deserialize_f32 deserialize_f64 => visit_f64(0.5)
        }
        fn deserialize_option<V: serde::de::Visitor<'de>>(
            self,
            v: V,
        ) -> Result<V::Value, ProbeError> {
            v.visit_some(self)
        }
        fn deserialize_seq<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
            v.visit_seq(serde::de::value::SeqDeserializer::new(std::iter::empty::<
                String,
            >()))
        }
        fn deserialize_map<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
            v.visit_map(serde::de::value::MapDeserializer::new(std::iter::empty::<(
                String,
                String,
            )>()))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            v: V,
        ) -> Result<V::Value, ProbeError> {
            v.visit_map(ProbeFields {
                parent: self.path,
                fields: fields.iter(),
                current: "",
                strings: self.strings,
            })
        }
        fn deserialize_enum<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            variants: &'static [&'static str],
            v: V,
        ) -> Result<V::Value, ProbeError> {
            use serde::de::IntoDeserializer;
            v.visit_enum(IntoDeserializer::<ProbeError>::into_deserializer(
                variants[0],
            ))
        }
        fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            v: V,
        ) -> Result<V::Value, ProbeError> {
            v.visit_newtype_struct(self)
        }
        serde::forward_to_deserialize_any! {
            i128 u128 char str string bytes byte_buf unit
            unit_struct tuple tuple_struct identifier ignored_any
        }
    }

    struct ProbeFields<'a> {
        parent: String,
        fields: std::slice::Iter<'static, &'static str>,
        current: &'static str,
        strings: &'a std::cell::RefCell<Vec<(String, String)>>,
    }

    impl<'de> serde::de::MapAccess<'de> for ProbeFields<'_> {
        type Error = ProbeError;

        fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, ProbeError> {
            use serde::de::IntoDeserializer;
            let Some(field) = self.fields.next() else {
                return Ok(None);
            };
            self.current = field;
            seed.deserialize(IntoDeserializer::<ProbeError>::into_deserializer(*field))
                .map(Some)
        }

        fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(
            &mut self,
            seed: V,
        ) -> Result<V::Value, ProbeError> {
            let path = match self.parent.as_str() {
                "" => self.current.to_string(),
                p => format!("{p}.{}", self.current),
            };
            seed.deserialize(Probe {
                path,
                strings: self.strings,
            })
        }
    }

    /// Every string key whose name looks secret is set to a known value, and neither the
    /// configuration's `Debug` (logs) nor `zhiku config` may show it. The keys are found by
    /// walking the configuration's own fields, so a secret added later without [`Secret`]
    /// fails here.
    #[test]
    fn no_secret_is_shown_in_logs_or_zhiku_config() {
        let strings = std::cell::RefCell::new(Vec::new());
        let c = Config::deserialize(Probe {
            path: String::new(),
            strings: &strings,
        })
        .unwrap();
        let strings = strings.into_inner();
        let looks_secret = |path: &str| {
            let name = path.rsplit('.').next().unwrap_or(path);
            name.split('_').any(|w| {
                matches!(
                    w,
                    "key"
                        | "apikey"
                        | "secret"
                        | "token"
                        | "password"
                        | "passwd"
                        | "webhook"
                        | "credential"
                        | "credentials"
                        | "auth"
                        | "bearer"
                )
            })
        };
        let secrets: Vec<&(String, String)> =
            strings.iter().filter(|(p, _)| looks_secret(p)).collect();
        let found: Vec<&str> = secrets.iter().map(|(p, _)| p.as_str()).collect();
        for known in [
            "vector.api_key",
            "generate.api_key",
            "server.metrics_token",
            "wecom.secret",
            "wecom.token",
            "wecom.encoding_aes_key",
            "wecom.robot_webhook",
            "auth.ldap.bind_password",
            "auth.oidc.client_secret",
        ] {
            assert!(found.contains(&known), "{known} not probed: {found:?}");
        }
        let shown = [format!("{c:?}"), format!("{:?}", c.wecom), c.to_toml()];
        for (path, value) in &secrets {
            for s in &shown {
                assert!(!s.contains(value.as_str()), "{path} shown in clear:\n{s}");
            }
        }
        // The probe's other strings do show, so the check above can see a leak.
        assert!(shown.iter().all(|s| s.contains("probe-wecom.corp_id")));
        let toml = c.to_toml();
        assert!(
            toml.contains("api_key = \"<set, 20 characters>\""),
            "{toml}"
        );
    }

    #[test]
    fn oidc_from_env_validated_and_its_secret_hidden() {
        let base = [
            (
                "ZHIKU_AUTH__OIDC__ISSUER_URL",
                "https://sso.example.com/realms/corp",
            ),
            ("ZHIKU_AUTH__OIDC__CLIENT_ID", "zhiku"),
            ("ZHIKU_AUTH__OIDC__CLIENT_SECRET", "oidc-client-s3cret"),
            ("ZHIKU_SERVER__PUBLIC_URL", "https://zhiku.example.com/"),
            ("ZHIKU_AUTH__OIDC__ROLES_CLAIM", "realm_access.roles"),
        ];
        let c = Config::load_with_env(None, &env(&base)).unwrap();
        let o = &c.auth.oidc;
        assert!(o.enabled());
        assert_eq!(o.source(), "oidc:sso");
        assert_eq!(
            Secret::exposed(&o.client_secret),
            Some("oidc-client-s3cret")
        );
        assert_eq!(
            o.redirect_url(c.server.public_url.as_deref()).as_deref(),
            Some("https://zhiku.example.com/auth/oidc/callback")
        );
        assert!(!format!("{c:?}").contains("oidc-client-s3cret"));
        assert!(!c.to_toml().contains("oidc-client-s3cret"));
        let refused = |extra: &[(&str, &str)], drop: &str| {
            let mut vars: Vec<(&str, &str)> =
                base.iter().copied().filter(|(k, _)| *k != drop).collect();
            vars.extend_from_slice(extra);
            Config::load_with_env(None, &env(&vars))
                .unwrap_err()
                .to_string()
        };
        assert!(refused(&[], "ZHIKU_AUTH__OIDC__CLIENT_ID").contains("client_id"));
        assert!(refused(&[], "ZHIKU_SERVER__PUBLIC_URL").contains("redirect_url"));
        assert!(
            refused(&[("ZHIKU_AUTH__OIDC__ISSUER_URL", "sso.example.com")], "")
                .contains("https://")
        );
        assert!(
            refused(&[("ZHIKU_AUTH__OIDC__REQUIRED_CLAIM", "tid")], "").contains("required_value")
        );
        assert!(refused(&[("ZHIKU_AUTH__OIDC__GROUP_RULE", "map")], "").contains("group_map"));
        assert!(
            refused(&[("ZHIKU_AUTH__OIDC__GROUP_MAP__abc", "all staff")], "").contains("all staff")
        );
    }

    #[test]
    fn a_pasted_placeholder_is_not_taken_for_a_secret() {
        let e = Config::load_with_env(
            None,
            &env(&[("ZHIKU_GENERATE__API_KEY", "<set, 32 characters>")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("write the secret itself"), "{e}");
        let c = Config::load_with_env(None, &env(&[("ZHIKU_GENERATE__API_KEY", "sk-1")])).unwrap();
        assert_eq!(Secret::exposed(&c.generate.api_key), Some("sk-1"));
        assert!(c.to_toml().contains("api_key = \"<set, 4 characters>\""));
    }

    #[test]
    fn half_configured_wecom_is_a_clear_error() {
        let e = Config::load_with_env(None, &env(&[("ZHIKU_WECOM__TOKEN", "abc")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("wecom.corp_id") && e.contains("wecom.encoding_aes_key"),
            "{e}"
        );
        let e = Config::load_with_env(
            None,
            &env(&[
                ("ZHIKU_WECOM__CORP_ID", "ww1"),
                ("ZHIKU_WECOM__AGENT_ID", "1"),
                ("ZHIKU_WECOM__SECRET", "s"),
                ("ZHIKU_WECOM__TOKEN", "t"),
                ("ZHIKU_WECOM__ENCODING_AES_KEY", "too-short"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("encoding_aes_key") && e.contains("43"), "{e}");
    }

    #[test]
    fn invalid_values_rejected() {
        let e = Config::load_with_env(None, &env(&[("ZHIKU_RETRIEVE__DENSE_WEIGHT", "1.5")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("dense_weight"), "{e}");
        let e = Config::load_with_env(None, &env(&[("ZHIKU_RETRIEVE__FUSION", "magic")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("magic") || e.contains("variant"), "{e}");
    }

    /// `[ingest.ocr]` and `[ingest.pdf]` reach the ingest crate from the file and from the
    /// environment; a misspelt key is an error, not silently ignored.
    #[test]
    fn ingest_ocr_keys_from_file_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("zhiku.toml");
        std::fs::write(
            &f,
            "[ingest.ocr]\nmode = \"always\"\ndpi = 150\nmodels = \"/opt/ppocrv5\"\n\
             [ingest.pdf]\nengine = \"legacy\"\n",
        )
        .unwrap();
        let c = Config::load_with_env(
            Some(&f),
            &env(&[
                ("ZHIKU_INGEST__OCR__MIN_CONFIDENCE", "0.6"),
                ("ZHIKU_INGEST__OCR__THREADS", "2"),
            ]),
        )
        .unwrap();
        let o = c.ingest.options();
        assert_eq!(o.ocr.mode, zhiku_ingest::OcrMode::Always);
        assert_eq!(o.ocr.dpi, 150);
        assert_eq!(o.ocr.min_confidence, 0.6);
        assert_eq!(o.pdf.engine, zhiku_ingest::PdfEngine::Legacy);
        assert_eq!(c.ingest.ocr.models, PathBuf::from("/opt/ppocrv5"));
        assert_eq!(c.ingest.ocr.threads, 2);
        let d = Config::load_with_env(None, &[]).unwrap();
        assert_eq!(d.ingest.ocr.models, PathBuf::from("models/ppocrv5"));
        assert_eq!(d.ingest.ocr.mode, zhiku_ingest::OcrMode::Auto);
        assert_eq!(d.ingest.ocr.dpi, 200);
        std::fs::write(&f, "[ingest.ocr]\nmodel = \"x\"\n").unwrap();
        let e = Config::load_with_env(Some(&f), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("model"), "{e}");
        std::fs::write(&f, "[ingest.ocr]\ndpi = 20\n").unwrap();
        let e = Config::load_with_env(Some(&f), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ingest.ocr.dpi"), "{e}");
        assert!(d.to_toml().contains("# OCR: "), "{}", d.to_toml());
    }

    /// `[ingest]`'s isolation keys: their defaults, and env overrides.
    #[test]
    fn isolation_keys() {
        let d = Config::load_with_env(None, &[]).unwrap();
        assert_eq!(d.ingest.isolation, Isolation::Process);
        assert_eq!(d.ingest.file_timeout_secs, 900);
        assert_eq!(d.ingest.worker_memory_mb, 4096);
        assert_eq!(d.ingest.worker_binary, None);
        let vars: Vec<(String, String)> = [
            ("ZHIKU_INGEST__ISOLATION", "thread"),
            ("ZHIKU_INGEST__WORKER_MEMORY_MB", "512"),
            ("ZHIKU_INGEST__WORKER_BINARY", "/opt/zhiku/bin/zhiku"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = Config::load_with_env(None, &vars).unwrap();
        assert_eq!(c.ingest.isolation, Isolation::Thread);
        assert_eq!(c.ingest.worker_memory_mb, 512);
        assert_eq!(
            c.ingest.worker_binary.as_deref(),
            Some(Path::new("/opt/zhiku/bin/zhiku"))
        );
        let bad = [("ZHIKU_INGEST__ISOLATION".to_string(), "fork".to_string())];
        assert!(Config::load_with_env(None, &bad).is_err());
    }

    /// Every key of the ingest crate's options is a key of `[ingest]` here (a new option
    /// there that this struct does not carry fails here, rather than being unreachable).
    #[test]
    fn every_ingest_option_is_configurable() {
        fn keys(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
            for (k, v) in t {
                let path = format!("{prefix}{k}");
                if let toml::Value::Table(inner) = v {
                    keys(&format!("{path}."), inner, out);
                }
                out.push(path);
            }
        }
        let theirs = toml::Table::try_from(zhiku_ingest::Options::default()).unwrap();
        let ours = toml::Table::try_from(IngestConfig::default()).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        keys("", &theirs, &mut a);
        keys("", &ours, &mut b);
        let missing: Vec<&String> = a.iter().filter(|k| !b.contains(k)).collect();
        assert!(missing.is_empty(), "not configurable: {missing:?}");
    }
}
