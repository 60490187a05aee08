//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use zhiku_core::config::Config;
use zhiku_core::embed::{EmbedError, Embedder};
use zhiku_core::engine::Engine;

/// Run the `zhiku` binary on data folder `data` (its parent is the working directory) with
/// embedding model `model`, no configuration file and no answer generator.
pub fn zhiku(data: &Path, model: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_zhiku"))
        .args(args)
        .env("ZHIKU_DATA_DIR", data)
        .env("ZHIKU_EMBED__MODEL", model)
        .env("ZHIKU_GENERATE__BACKEND", "none")
        .env_remove("ZHIKU_CONFIG")
        .current_dir(data.parent().unwrap())
        .output()
        .expect("run zhiku")
}

/// A small deterministic embedder for pipeline tests: hashed character unigrams and bigrams,
/// L2-normalised. Lexical, not semantic, which is all these tests need. `fail_after` makes
/// `embed_passages` fail once it has been called that many times (a simulated crash).
pub struct HashEmbedder {
    pub calls: AtomicUsize,
    pub fail_after: Option<usize>,
}

pub const DIM: usize = 64;

impl HashEmbedder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            fail_after: None,
        })
    }
    pub fn failing_after(n: usize) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            fail_after: Some(n),
        })
    }
    fn vector(text: &str) -> Vec<f32> {
        let mut v = vec![0f32; DIM];
        let chars: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
        for (i, c) in chars.iter().enumerate() {
            v[(*c as usize * 31) % DIM] += 1.0;
            if let Some(n) = chars.get(i + 1) {
                v[((*c as usize) * 131 + *n as usize) % DIM] += 1.0;
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }
}

impl Embedder for HashEmbedder {
    fn model_id(&self) -> &str {
        "test-hash-64"
    }
    fn dim(&self) -> usize {
        DIM
    }
    fn max_tokens(&self) -> usize {
        512
    }
    fn count_tokens(&self, text: &str) -> usize {
        text.chars().count()
    }
    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_after.is_some_and(|f| n >= f) {
            return Err(EmbedError::Run("simulated crash".into()));
        }
        Ok(texts.iter().map(|t| Self::vector(t)).collect())
    }
    fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        Ok(Self::vector(text))
    }
}

/// A config whose data folder is `dir`, defaults otherwise (no file, no environment), with
/// extraction in workers of the `zhiku` binary cargo built for these tests (this test
/// program is not one).
pub fn config(dir: &Path) -> Config {
    let mut c = Config::load_with_env(None, &[]).expect("default config");
    c.data_dir = dir.to_path_buf();
    c.ingest.worker_binary = Some(PathBuf::from(env!("CARGO_BIN_EXE_zhiku")));
    c
}

pub fn engine(dir: &Path, embedder: Arc<dyn Embedder>) -> Engine {
    Engine::open(config(dir))
        .expect("open engine")
        .with_embedder(embedder)
}

/// The repo's sample documents.
pub fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples")
}

/// A tool or model a test needs is missing: `None` (the test is skipped, said on stderr)
/// outside CI; a failure under `CI`, where `.ci/run` must have installed it.
pub fn missing<T>(what: &str) -> Option<T> {
    if std::env::var_os("CI").is_some() {
        panic!("{what} (CI must install it: see .ci/run)");
    }
    eprintln!("skipped: {what}");
    None
}

/// The multilingual e5 model folder, if `scripts/fetch-models.sh` has run. In CI a missing
/// model is a failure, not a skip.
pub fn e5_model() -> Option<PathBuf> {
    let base = std::env::var_os("ZHIKU_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    let dir = base.join("multilingual-e5-small");
    if dir.join("model.safetensors").exists() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} is missing: CI must run scripts/fetch-models.sh",
            dir.display()
        );
    }
    eprintln!("skipped: run scripts/fetch-models.sh to test with the real embedding model");
    None
}

/// What OCR of real documents needs, as absolute paths: the PP-OCRv5 models folder, the
/// onnxruntime library and PDFium (all written by `scripts/fetch-models.sh`). `None` (a
/// skip, said on stderr) when they are missing; in CI a failure.
pub struct DocumentModels {
    pub ppocrv5: PathBuf,
    pub onnxruntime: PathBuf,
    pub pdfium: PathBuf,
}

pub fn document_models() -> Option<DocumentModels> {
    let base = std::env::var_os("ZHIKU_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    let m = DocumentModels {
        ppocrv5: base.join("ppocrv5"),
        onnxruntime: base.join("onnxruntime/libonnxruntime.so.1.31.1"),
        pdfium: base.join("pdfium/libpdfium.so"),
    };
    let missing: Vec<String> = [
        m.ppocrv5.join("rec/rec.onnx"),
        m.onnxruntime.clone(),
        m.pdfium.clone(),
    ]
    .into_iter()
    .filter(|p| !p.is_file())
    .map(|p| p.display().to_string())
    .collect();
    if missing.is_empty() {
        return Some(m);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} missing: CI must run scripts/fetch-models.sh",
            missing.join(", ")
        );
    }
    eprintln!(
        "skipped: {} missing; run scripts/fetch-models.sh to test OCR of real documents",
        missing.join(", ")
    );
    None
}

/// The usual test company on `e`: knowledge base `hr` (the leave policy sample) read by
/// group staff, `it` (the IT help desk sample) read by group ops, and [`people`] alice
/// (staff), bob (ops) and root (admin).
pub fn hr_and_it(e: &Engine) -> [i64; 3] {
    let samples = samples();
    let opts = zhiku_core::index::IngestOptions::default();
    let pb = zhiku_core::progress::Silent;
    for (kb, file) in [
        ("hr", "员工手册-休假制度.txt"),
        ("it", "IT服务台常见问题.txt"),
    ] {
        zhiku_core::index::ingest_paths(e, kb, &[samples.join(file)], &opts, &pb).unwrap();
    }
    people(e, &["hr"], &["it"])
}

/// Chunk counts of the three stores: (SQLite ready chunks, vectors, keyword docs).
pub fn store_counts(e: &Engine) -> (u64, usize, usize) {
    (
        e.meta.chunk_count().unwrap(),
        e.vector().unwrap().count().unwrap(),
        e.keyword.count().unwrap(),
    )
}
pub mod http;

/// The test company on `e`'s existing knowledge bases: group `staff` reads `staff_kbs`,
/// group `ops` reads `ops_kbs`; members alice (staff) and bob (ops) and admin root, all with
/// password `password-1`. Returns their user ids `[alice, bob, root]`.
pub fn people(e: &Engine, staff_kbs: &[&str], ops_kbs: &[&str]) -> [i64; 3] {
    use zhiku_core::store::meta::Role;
    let m = &e.meta;
    let staff = m.create_group("staff").unwrap();
    let ops = m.create_group("ops").unwrap();
    for (group, kbs) in [(staff, staff_kbs), (ops, ops_kbs)] {
        for kb in kbs {
            m.grant(m.require_kb(kb).unwrap(), group).unwrap();
        }
    }
    let hash = zhiku_core::access::hash_password("password-1").unwrap();
    let alice = m.create_user("alice", Some(&hash), Role::Member).unwrap();
    let bob = m.create_user("bob", Some(&hash), Role::Member).unwrap();
    let root = m.create_user("root", Some(&hash), Role::Admin).unwrap();
    m.add_to_group(alice, staff).unwrap();
    m.add_to_group(bob, ops).unwrap();
    [alice, bob, root]
}

/// A zip archive of `(name, content)` entries, in order (default options).
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let o = zip::write::SimpleFileOptions::default();
        for (name, data) in entries {
            z.start_file(*name, o).unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap();
    }
    buf.into_inner()
}

/// Wait for `child` (a browser script that bounds itself), killing it and failing the test
/// when it runs past `limit`: the backstop, so a hung script cannot hang the test run.
pub fn wait_bounded(
    child: &mut std::process::Child,
    limit: std::time::Duration,
    what: &str,
) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} ran past {} minutes", limit.as_secs() / 60);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
