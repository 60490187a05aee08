//! Ingestion jobs: files (or QA-file paragraphs) → `zhiku-ingest` → SQLite → embeddings →
//! vector store + keyword index, in batches, crash-safe.
//!
//! Per batch: documents and chunks are written to SQLite as `indexing`; their vectors and
//! keywords are written and made durable; then one SQLite transaction makes them `ready`
//! and retires the documents they replace, which are then purged from the derived indexes.
//! A crash anywhere leaves either the old version or the new one visible, never half of
//! one, and [`recover`] (run at the start of every job) clears what was left behind.
//!
//! The command line ingests a whole job in [`Batch`]es ([`ingest_paths`]); the server queues
//! uploaded files in SQLite and its worker ([`queue`]) takes them in order through the same
//! [`Batch`], recording each file's status. Uploaded originals are kept in [`originals`].

pub mod originals;
pub mod queue;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::progress::Progress;
use serde::Serialize;
use tracing::{info, info_span, warn};

use crate::engine::{Engine, EngineError};
use crate::store::keyword::KeywordDoc;
use crate::store::meta::{
    ChunkChange, ChunkState, IndexEntry, JobCounts, NewDocument, PageReading,
};
use crate::store::vector::VectorPoint;
use crate::store::{ChunkId, DocId, KbId};

/// Flush a batch when it holds this many chunks…
const BATCH_CHUNKS: usize = 256;
/// …or this many documents.
const BATCH_DOCS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot read {path}: {source}")]
    Walk {
        path: String,
        source: std::io::Error,
    },
    #[error("QA file {path}: {message}")]
    QaFile { path: String, message: String },
}

impl From<crate::store::meta::MetaError> for IndexError {
    fn from(e: crate::store::meta::MetaError) -> Self {
        Self::Engine(e.into())
    }
}
impl From<crate::store::keyword::KeywordError> for IndexError {
    fn from(e: crate::store::keyword::KeywordError) -> Self {
        Self::Engine(e.into())
    }
}
impl From<crate::store::vector::VectorError> for IndexError {
    fn from(e: crate::store::vector::VectorError) -> Self {
        Self::Engine(e.into())
    }
}
impl From<crate::embed::EmbedError> for IndexError {
    fn from(e: crate::embed::EmbedError) -> Self {
        Self::Engine(e.into())
    }
}

pub type Result<T> = std::result::Result<T, IndexError>;

/// One thing to ingest.
#[derive(Debug, Clone)]
pub struct Item {
    /// The document's key in its knowledge base: an absolute path or an external id.
    pub source: String,
    /// Title to use when the document has none of its own.
    pub title: String,
    /// Name whose extension picks the format.
    pub file_name: String,
    pub data: ItemData,
}

#[derive(Debug, Clone)]
pub enum ItemData {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// What a job did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestReport {
    pub job: i64,
    #[serde(flatten)]
    pub counts: JobCounts,
    /// Files skipped because a document with the same content is already in the base.
    pub duplicates: u64,
    /// (source, reason) for each file that could not be ingested.
    pub failures: Vec<(String, String)>,
    /// (source, warning) for problems that did not stop a file (e.g. a garbled page).
    pub warnings: Vec<(String, String)>,
    /// How the pages of each added or changed document were read.
    pub documents: Vec<DocumentPages>,
    /// Why OCR could not run, when some document has failed pages and OCR is on but its
    /// models or onnxruntime are missing (the pages that needed it are in `failed_pages`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ocr_unavailable: Option<String>,
    /// Files in a walked folder whose format is not supported (not counted as failures).
    pub unsupported: Vec<String>,
}

/// One document's pages, as the job read them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentPages {
    pub source: String,
    pub pages: u32,
    #[serde(flatten)]
    pub reading: PageReading,
}

/// Options of one job.
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// Remove documents whose files are gone from the walked folders.
    pub sync: bool,
}

/// Extensions a job takes: the ingest crate's list (the only one), plus `zip`: archives are
/// unpacked ([`crate::unpack`], the code uploads use) and their files ingested.
pub fn supported_extensions() -> impl Iterator<Item = &'static str> {
    zhiku_ingest::extract::SUPPORTED_EXTENSIONS
        .iter()
        .copied()
        .chain(std::iter::once("zip"))
}

fn supported(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| {
            let e = e.to_ascii_lowercase();
            supported_extensions().any(|s| s == e)
        })
        .unwrap_or(false)
}

/// Clean up after an interrupted run: purge never-finished documents and queued deletions
/// from the derived indexes, then from SQLite.
pub fn recover(engine: &Engine) -> Result<()> {
    let left = engine.meta.unfinished()?;
    let n = engine
        .meta
        .fail_running_jobs("interrupted (the process stopped before the job finished)")?;
    apply_chunk_updates(engine)?;
    apply_access_updates(engine)?;
    if left.indexing.is_empty() && left.pending_deletes.is_empty() && n == 0 {
        return Ok(());
    }
    warn!(
        indexing = left.indexing.len(),
        pending_deletes = left.pending_deletes.len(),
        jobs = n,
        "recovering from an interrupted run"
    );
    let all: Vec<DocId> = left
        .indexing
        .iter()
        .chain(&left.pending_deletes)
        .copied()
        .collect();
    if !all.is_empty() {
        engine.vector()?.delete_documents(&all)?;
        engine.keyword.delete_documents(&all)?;
        engine.keyword.commit()?;
    }
    engine.meta.drop_unfinished(&left.indexing)?;
    engine.meta.clear_pending_deletes(&left.pending_deletes)?;
    Ok(())
}

/// List the files under `paths` (recursively), sorted. Unsupported files in folders go to
/// `unsupported`; an unreadable path is an error for that path only.
pub fn collect_files(
    paths: &[PathBuf],
    report: &mut IngestReport,
) -> Result<Vec<(PathBuf, PathBuf)>> {
    let mut out = Vec::new();
    for root in paths {
        let root_abs = std::fs::canonicalize(root).map_err(|source| IndexError::Walk {
            path: root.display().to_string(),
            source,
        })?;
        if root_abs.is_file() {
            out.push((root_abs.clone(), root_abs));
            continue;
        }
        for entry in walkdir::WalkDir::new(&root_abs).sort_by_file_name() {
            match entry {
                Ok(e) if e.file_type().is_file() => {
                    let hidden = e
                        .file_name()
                        .to_str()
                        .map(|n| n.starts_with('.') || n.starts_with("~$"))
                        .unwrap_or(false);
                    if hidden {
                        continue;
                    }
                    if supported(e.path()) {
                        out.push((root_abs.clone(), e.into_path()));
                    } else {
                        report.unsupported.push(e.path().display().to_string());
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    let p = err
                        .path()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| root.display().to_string());
                    report.failures.push((p, format!("cannot read: {err}")));
                    report.counts.failed += 1;
                }
            }
        }
    }
    Ok(out)
}

/// Ingest files and folders into knowledge base `kb` (created if missing).
pub fn ingest_paths(
    engine: &Engine,
    kb_name: &str,
    paths: &[PathBuf],
    options: &IngestOptions,
    progress: &dyn Progress,
) -> Result<IngestReport> {
    let kb = engine.meta.ensure_kb(kb_name)?;
    let mut report = IngestReport::default();
    let files = collect_files(paths, &mut report)?;
    let roots: Vec<PathBuf> = {
        let mut r: Vec<PathBuf> = files.iter().map(|(root, _)| root.clone()).collect();
        r.dedup();
        r
    };
    let staging = Staging::new(engine.data_dir());
    let mut items = Vec::with_capacity(files.len());
    for (i, (_, path)) in files.into_iter().enumerate() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if crate::unpack::is_zip(&name) {
            let dir = staging.folder(i).map_err(|source| IndexError::Walk {
                path: staging.root.display().to_string(),
                source,
            })?;
            let limits = crate::unpack::Limits::from_config(&engine.config.server);
            items.extend(zip_items(&path, &name, &dir, &limits, &mut report)?);
            continue;
        }
        items.push(Item {
            source: path.display().to_string(),
            title: path
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            file_name: name,
            data: ItemData::Path(path),
        });
    }
    let label = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    run_job(
        engine,
        kb,
        &label,
        items,
        report,
        progress,
        |engine, seen, report| {
            if !options.sync {
                return Ok(());
            }
            // Remove documents under the walked folders whose files are gone.
            let mut gone = Vec::new();
            for doc in engine.meta.documents(kb)? {
                let p = Path::new(&doc.source);
                let under = roots.iter().any(|r| p.starts_with(r));
                if under && !seen.contains(&doc.source) {
                    gone.push(doc.id);
                }
            }
            if !gone.is_empty() {
                engine.meta.delete_documents(&gone)?;
                purge(engine, &gone)?;
                report.counts.removed += gone.len() as u64;
            }
            Ok(())
        },
    )
}

/// Where a job unpacks its zips (`<data_dir>/unpack/cli-<pid>-<n>`), removed when the job is
/// done, however it ends.
struct Staging {
    root: PathBuf,
}

impl Staging {
    fn new(data_dir: &Path) -> Self {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self {
            root: data_dir
                .join("unpack")
                .join(format!("cli-{}-{n}", std::process::id())),
        }
    }

    /// An empty folder for the `i`th file's zip.
    fn folder(&self, i: usize) -> std::io::Result<PathBuf> {
        let dir = self.root.join(i.to_string());
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.root.exists()
            && let Err(e) = std::fs::remove_dir_all(&self.root)
        {
            warn!(path = %self.root.display(), error = %e, "cannot remove unpacked files");
        }
    }
}

/// A zip's files as items (sources `<zip path>/<path in the zip>`), unpacked into `dir` with
/// the uploads' checks. A zip that is an attack (a path climbing out, a bomb, too many
/// files) fails alone; an entry that is merely wrong fails alone, and one of an unsupported
/// type is skipped as in a folder.
fn zip_items(
    zip: &Path,
    name: &str,
    dir: &Path,
    limits: &crate::unpack::Limits,
    report: &mut IngestReport,
) -> Result<Vec<Item>> {
    use crate::unpack::{Part, UnpackError, Verdict, check_parts};
    let part = Part {
        name: name.to_string(),
        path: zip.to_path_buf(),
    };
    let checked = match check_parts(vec![part], dir, limits) {
        Ok(c) => c,
        Err(UnpackError::Io(source)) => {
            return Err(IndexError::Walk {
                path: zip.display().to_string(),
                source,
            });
        }
        Err(e) => {
            warn!(zip = %zip.display(), why = %e, "zip not ingested");
            report
                .failures
                .push((zip.display().to_string(), e.to_string()));
            report.counts.failed += 1;
            return Ok(Vec::new());
        }
    };
    let mut items = Vec::new();
    for c in checked {
        let source = if c.name == name {
            zip.display().to_string()
        } else {
            zip.join(&c.name).display().to_string()
        };
        match c.verdict {
            Verdict::Accepted { staged, .. } => {
                let file = c.name.rsplit('/').next().unwrap_or(&c.name).to_string();
                let title = file
                    .rsplit_once('.')
                    .map(|(stem, _)| stem.to_string())
                    .unwrap_or_else(|| file.clone());
                items.push(Item {
                    source,
                    title,
                    file_name: file,
                    data: ItemData::Path(staged),
                });
            }
            Verdict::Refused {
                wrong_type: true, ..
            } if zhiku_ingest::sniff::format_of(&c.name).is_err()
                && !crate::unpack::is_zip(&c.name) =>
            {
                report.unsupported.push(source)
            }
            Verdict::Refused { message, .. } => {
                report.failures.push((source, message));
                report.counts.failed += 1;
            }
        }
    }
    Ok(items)
}

/// Ingest every paragraph of a SQuAD-layout file (CMRC 2018) as one document whose source is
/// the paragraph's `id` and whose title is the article's title.
pub fn ingest_qa_contexts(
    engine: &Engine,
    kb_name: &str,
    qa_file: &Path,
    progress: &dyn Progress,
) -> Result<IngestReport> {
    let kb = engine.meta.ensure_kb(kb_name)?;
    let set = crate::eval::QaSet::load(qa_file).map_err(|e| IndexError::QaFile {
        path: qa_file.display().to_string(),
        message: e.to_string(),
    })?;
    let items = set
        .paragraphs
        .into_iter()
        .map(|p| Item {
            source: p.id.clone(),
            title: p.title,
            file_name: format!("{}.txt", p.id),
            data: ItemData::Bytes(p.context.into_bytes()),
        })
        .collect();
    run_job(
        engine,
        kb,
        &qa_file.display().to_string(),
        items,
        IngestReport::default(),
        progress,
        |_, _, _| Ok(()),
    )
}

/// What became of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    /// A new document.
    Added {
        doc: DocId,
        chunks: usize,
        warnings: Vec<String>,
        pages: u32,
        reading: PageReading,
    },
    /// A new version of the document with the same source, which it replaced.
    Changed {
        doc: DocId,
        replaced: DocId,
        chunks: usize,
        warnings: Vec<String>,
        pages: u32,
        reading: PageReading,
    },
    /// The same content as the document already indexed under this source.
    Unchanged { doc: DocId },
    /// The same content as another document of the knowledge base (`doc` once that one is
    /// indexed; `None` while it waits in the same batch): not indexed twice.
    Duplicate { doc: Option<DocId>, source: String },
    /// Not ingested, with the reason.
    Failed { reason: String },
}

/// A document read, hashed and chunked, waiting for its batch to be written.
struct Prepared {
    item: Item,
    title: String,
    format: String,
    hash: String,
    size: u64,
    processed: zhiku_ingest::Processed,
    replaces: Option<DocId>,
}

/// A file either prepared for writing or already settled (unchanged, duplicate, failed).
enum Prep {
    Ready(Box<Prepared>),
    Settled(FileOutcome),
}

type AfterWalk<'a> = dyn FnOnce(&Engine, &HashSet<String>, &mut IngestReport) -> Result<()> + 'a;

fn run_job<F>(
    engine: &Engine,
    kb: KbId,
    label: &str,
    items: Vec<Item>,
    mut report: IngestReport,
    progress: &dyn Progress,
    after: F,
) -> Result<IngestReport>
where
    F: FnOnce(&Engine, &HashSet<String>, &mut IngestReport) -> Result<()>,
{
    let span = info_span!("ingest_job", kb, source = label);
    let _enter = span.enter();
    recover(engine)?;
    engine.check_model(false)?;
    let job = engine.meta.start_job(kb, label)?;
    report.job = job;
    let result = run_items(
        engine,
        kb,
        job,
        items,
        &mut report,
        progress,
        Box::new(after),
    );
    let error = result.as_ref().err().map(|e| e.to_string());
    engine
        .meta
        .finish_job(job, &report.counts, error.as_deref())?;
    progress.finish();
    result.map(|_| report)
}

fn run_items(
    engine: &Engine,
    kb: KbId,
    job: i64,
    items: Vec<Item>,
    report: &mut IngestReport,
    progress: &dyn Progress,
    after: Box<AfterWalk<'_>>,
) -> Result<()> {
    progress.set_length(items.len() as u64);
    let mut seen = HashSet::new();
    let mut batch = Batch::new(engine, kb)?;
    let files = items.len();
    for (i, item) in items.into_iter().enumerate() {
        progress.set_message(&format!("file {}/{files} · {}", i + 1, item.file_name));
        seen.insert(item.source.clone());
        let source = item.source.clone();
        let pages = |page: u32, pages: u32, ocr: bool| progress.set_page(page, pages, ocr);
        if let Some(outcome) = batch.add_watched(engine, item, false, &pages)? {
            record(engine, job, report, &source, &outcome)?;
            progress.inc(1);
        } else if batch.is_full() {
            for (source, outcome) in batch.write(engine)? {
                record(engine, job, report, &source, &outcome)?;
                progress.inc(1);
            }
        }
    }
    for (source, outcome) in batch.write(engine)? {
        record(engine, job, report, &source, &outcome)?;
        progress.inc(1);
    }
    after(engine, &seen, report)?;
    engine.vector()?.optimize()?;
    Ok(())
}

/// Files of one knowledge base on their way into the stores, for the command line's jobs
/// and the server's queue alike. Each file is read, hashed and processed when added, and
/// settled at once when it is unchanged, a duplicate or unreadable; the others wait until
/// [`Batch::write`] embeds and writes them together (crash-safe, see the module doc).
pub struct Batch {
    kb: KbId,
    embedder: std::sync::Arc<dyn crate::embed::Embedder>,
    ready: Vec<Prepared>,
    chunks: usize,
    /// Content hash → source of the files waiting (duplicates within the batch).
    hashes: HashMap<String, String>,
    /// The ingest crate's options, OCR engine and known-piece scorer set.
    options: zhiku_ingest::Options,
}

impl Batch {
    /// An empty batch for `kb` (fails when the index was built with another model).
    pub fn new(engine: &Engine, kb: KbId) -> Result<Self> {
        engine.check_model(false)?;
        Ok(Self {
            kb,
            embedder: engine.embedder()?,
            ready: Vec::new(),
            chunks: 0,
            hashes: HashMap::new(),
            options: engine.ingest_options()?,
        })
    }

    /// Read and process one file. `Some` when it is settled now; `None` when it waits for
    /// [`Batch::write`]. `force` processes a file again even when its content is unchanged
    /// (re-indexing after a change of extractor or settings). Add no two files with the
    /// same source to one batch (see [`Batch::waits_for`]).
    pub fn add(&mut self, engine: &Engine, item: Item, force: bool) -> Result<Option<FileOutcome>> {
        self.add_watched(engine, item, force, &|_, _, _| {})
    }

    /// [`Batch::add`], telling `pages` of per-page work: (page, pages, by OCR) as each page
    /// of a paged document starts (with `[ingest] isolation = "process"`).
    pub fn add_watched(
        &mut self,
        engine: &Engine,
        item: Item,
        force: bool,
        pages: &(dyn Fn(u32, u32, bool) + Sync),
    ) -> Result<Option<FileOutcome>> {
        let (options, embedder) = (&self.options, &self.embedder);
        match prepare(
            engine,
            self.kb,
            item,
            force,
            options,
            embedder,
            &self.hashes,
            pages,
        )? {
            Prep::Settled(outcome) => Ok(Some(outcome)),
            Prep::Ready(p) => {
                self.hashes.insert(p.hash.clone(), p.item.source.clone());
                self.chunks += p.processed.chunks.len();
                self.ready.push(*p);
                Ok(None)
            }
        }
    }

    /// Whether a file with this source waits in the batch (a second version of it must wait
    /// for the next batch, or both would replace the same document).
    pub fn waits_for(&self, source: &str) -> bool {
        self.ready.iter().any(|p| p.item.source == source)
    }

    /// Enough waits to be written.
    pub fn is_full(&self) -> bool {
        self.chunks >= BATCH_CHUNKS || self.ready.len() >= BATCH_DOCS
    }

    /// Embed and write the waiting files; each one's source and outcome, in the order they
    /// were added. The batch is empty afterwards, even when writing failed (run [`recover`]
    /// then).
    pub fn write(&mut self, engine: &Engine) -> Result<Vec<(String, FileOutcome)>> {
        self.chunks = 0;
        self.hashes.clear();
        write_batch(engine, self.kb, std::mem::take(&mut self.ready))
    }
}

/// Read, hash and process one file; settle it at once when it is unchanged, a duplicate or
/// unreadable. `pending` holds the hashes (→ sources) of files waiting in the same batch.
#[allow(clippy::too_many_arguments)] // the batch's parts, passed apart to borrow them
fn prepare(
    engine: &Engine,
    kb: KbId,
    item: Item,
    force: bool,
    options: &zhiku_ingest::Options,
    embedder: &std::sync::Arc<dyn crate::embed::Embedder>,
    pending: &HashMap<String, String>,
    pages: &(dyn Fn(u32, u32, bool) + Sync),
) -> Result<Prep> {
    let failed = |reason: String| Ok(Prep::Settled(FileOutcome::Failed { reason }));
    let bytes = match &item.data {
        ItemData::Bytes(b) => Ok(b.clone()),
        ItemData::Path(p) => std::fs::read(p),
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) => return failed(format!("cannot read: {e}")),
    };
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let existing = engine.meta.document_by_source(kb, &item.source)?;
    if let Some(d) = existing
        .as_ref()
        .filter(|d| d.content_hash == hash && !force)
    {
        return Ok(Prep::Settled(FileOutcome::Unchanged { doc: d.id }));
    }
    if existing.is_none() {
        let dup = engine.meta.document_by_hash(kb, &hash)?;
        if let Some(d) = dup.filter(|d| d.source != item.source) {
            return Ok(Prep::Settled(FileOutcome::Duplicate {
                doc: Some(d.id),
                source: d.source,
            }));
        }
        if let Some(other) = pending.get(&hash) {
            return Ok(Prep::Settled(FileOutcome::Duplicate {
                doc: None,
                source: other.clone(),
            }));
        }
    }
    let size = bytes.len() as u64;
    let limit = engine.config.ingest.file_timeout_secs;
    let processed = match engine.config.ingest.isolation {
        crate::config::Isolation::Process => process_isolated(
            engine,
            &bytes,
            &item.file_name,
            options,
            embedder,
            limit,
            pages,
        ),
        crate::config::Isolation::Thread => {
            process_limited(bytes, &item.file_name, options, embedder, limit)
        }
    };
    let processed = match processed {
        Ok(p) => p,
        Err(e) => return failed(e),
    };
    if processed.chunks.is_empty() {
        return failed(if processed.warnings.is_empty() {
            "no text to index".to_string()
        } else {
            format!("no text to index: {}", processed.warnings.join("; "))
        });
    }
    Ok(Prep::Ready(Box::new(Prepared {
        title: processed
            .title
            .clone()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| item.title.clone()),
        format: format!("{:?}", processed.format).to_lowercase(),
        hash,
        size,
        processed,
        replaces: existing.map(|d| d.id),
        item,
    })))
}

/// Run the ingest crate on one file with `[ingest] isolation = "process"`: the extraction in
/// an extract worker ([`crate::extractor`]: killed past `[ingest] file_timeout_secs`, its
/// memory capped, a crash fails this file only), cleaning, masking and chunking here.
fn process_isolated(
    engine: &Engine,
    bytes: &[u8],
    file_name: &str,
    options: &zhiku_ingest::Options,
    embedder: &std::sync::Arc<dyn crate::embed::Embedder>,
    limit_secs: u64,
    pages: &(dyn Fn(u32, u32, bool) + Sync),
) -> std::result::Result<zhiku_ingest::Processed, String> {
    let supervisor = engine.extractor()?;
    let request = crate::extractor::Request {
        bytes,
        file_name,
        options,
        ocr: engine
            .ocr_setup()
            .filter(|_| options.ocr.engine.0.is_some()),
        known: options.pdf.known_pieces.0.as_ref(),
        limit: (limit_secs > 0).then(|| std::time::Duration::from_secs(limit_secs)),
        progress: pages,
    };
    let extracted = supervisor.extract(&request)?;
    let count = |t: &str| embedder.count_tokens(t);
    Ok(zhiku_ingest::finish(extracted, options, &count))
}

/// Run the ingest crate on one file in this process (`[ingest] isolation = "thread"`).
/// With `[ingest] file_timeout_secs` (not 0) it runs on a
/// thread of its own and the file fails once the limit has passed, so one pathological file
/// cannot stall the job or the upload queue. What this guarantees, and what not: the job goes
/// on at once; the runaway extraction cannot be stopped from outside (Rust has no way to
/// kill a thread), so it keeps its CPU and memory until it ends by itself or zhiku stops,
/// and a native crash in PDFium or onnxruntime still ends the whole process (only a child
/// process would contain that). A panic fails the file alone.
fn process_limited(
    bytes: Vec<u8>,
    file_name: &str,
    options: &zhiku_ingest::Options,
    embedder: &std::sync::Arc<dyn crate::embed::Embedder>,
    limit_secs: u64,
) -> std::result::Result<zhiku_ingest::Processed, String> {
    if limit_secs == 0 {
        let count = |t: &str| embedder.count_tokens(t);
        return zhiku_ingest::process(&bytes, file_name, options, &count)
            .map_err(|e| e.to_string());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let (name, options, embedder) = (file_name.to_string(), options.clone(), embedder.clone());
    std::thread::Builder::new()
        .name("extract".into())
        .spawn(move || {
            let count = |t: &str| embedder.count_tokens(t);
            let _ = tx.send(zhiku_ingest::process(&bytes, &name, &options, &count));
        })
        .map_err(|e| format!("cannot start the extractor: {e}"))?;
    match rx.recv_timeout(std::time::Duration::from_secs(limit_secs)) {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            warn!(
                file = file_name,
                limit_secs, "extraction ran past [ingest] file_timeout_secs; file skipped"
            );
            Err(format!(
                "extraction took longer than {limit_secs} s ([ingest] file_timeout_secs), the \
                 file was skipped; its extractor may keep running in the background until it \
                 finishes"
            ))
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            Err("the extractor crashed on this file; the file was skipped".into())
        }
    }
}

/// Count one file's outcome in the CLI job's report and its `job_files` row.
fn record(
    engine: &Engine,
    job: i64,
    report: &mut IngestReport,
    source: &str,
    outcome: &FileOutcome,
) -> Result<()> {
    let row = |outcome: &str, message: Option<&str>| {
        engine.meta.record_file(job, source, outcome, message)
    };
    match outcome {
        FileOutcome::Added {
            chunks,
            warnings,
            pages,
            reading,
            ..
        }
        | FileOutcome::Changed {
            chunks,
            warnings,
            pages,
            reading,
            ..
        } => {
            if !reading.failed_pages.is_empty() && report.ocr_unavailable.is_none() {
                report.ocr_unavailable = engine.ocr_unavailable();
            }
            report.documents.push(DocumentPages {
                source: source.to_string(),
                pages: *pages,
                reading: reading.clone(),
            });
            let added = matches!(outcome, FileOutcome::Added { .. });
            if added {
                report.counts.added += 1;
            } else {
                report.counts.changed += 1;
            }
            report.counts.chunks += *chunks as u64;
            for w in warnings {
                report.warnings.push((source.to_string(), w.clone()));
            }
            row(if added { "added" } else { "changed" }, None)?;
        }
        FileOutcome::Unchanged { .. } => report.counts.unchanged += 1,
        FileOutcome::Duplicate { source: of, .. } => {
            report.duplicates += 1;
            row("duplicate", Some(of))?;
        }
        FileOutcome::Failed { reason } => {
            warn!(source, why = %reason, "file not ingested");
            report.counts.failed += 1;
            report.failures.push((source.to_string(), reason.clone()));
            row("failed", Some(reason))?;
        }
    }
    Ok(())
}

/// Write a batch to the three stores (crash-safe, see the module doc); returns each file's
/// source and outcome, in order.
fn write_batch(
    engine: &Engine,
    kb: KbId,
    batch: Vec<Prepared>,
) -> Result<Vec<(String, FileOutcome)>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let _span = info_span!("batch", docs = batch.len()).entered();
    // 1. SQLite: documents + chunks, status `indexing`.
    let mut written = Vec::with_capacity(batch.len());
    for p in &batch {
        let pages = p.processed.pages as u32;
        let reading = PageReading::of(&p.processed);
        let (doc, ids) = engine.meta.insert_document(&NewDocument {
            kb,
            source: &p.item.source,
            title: &p.title,
            format: &p.format,
            content_hash: &p.hash,
            size: p.size,
            pages,
            warnings: &p.processed.warnings,
            masked: p.processed.masked as u64,
            reading: &reading,
            chunks: &p.processed.chunks,
        })?;
        written.push((doc, ids));
    }
    // 2. and 3. Vectors (durable on return) and keywords (durable on commit), of the chunks
    // as stored: edits made to this same file version apply (see `store::meta::edits`).
    let mut entries = Vec::new();
    for (doc, _) in &written {
        entries.extend(engine.meta.index_entries(*doc)?);
    }
    let points = write_entries(engine, &entries)?;
    // 4. One transaction: ready, and retire the replaced versions.
    let done: Vec<(DocId, Option<DocId>)> = written
        .iter()
        .zip(&batch)
        .map(|((doc, _), p)| (*doc, p.replaces))
        .collect();
    let gone = engine.meta.finish_documents(&done)?;
    if !gone.is_empty() {
        // The knowledge base was deleted while this batch was being written: its purge may
        // have run before our vectors and keywords landed, so remove them now.
        warn!(
            docs = gone.len(),
            "knowledge base deleted while its documents were being indexed; removing them"
        );
        purge(engine, &gone)?;
    }
    let replaced: Vec<DocId> = batch
        .iter()
        .zip(&written)
        .filter(|(_, (doc, _))| !gone.contains(doc))
        .filter_map(|(p, _)| p.replaces)
        .collect();
    purge(engine, &replaced)?;
    for (doc, _) in written.iter().filter(|(doc, _)| !gone.contains(doc)) {
        let stale = engine.meta.flag_stale_edits(*doc)?;
        if stale > 0 {
            warn!(
                doc,
                stale, "the file changed after its chunks were edited: flagged for review"
            );
        }
    }
    info!(docs = batch.len(), chunks = points, "batch indexed");
    Ok(batch
        .into_iter()
        .zip(written)
        .map(|(p, (doc, _))| {
            if gone.contains(&doc) {
                let reason = "its knowledge base was deleted while it was being indexed".into();
                return (p.item.source, FileOutcome::Failed { reason });
            }
            let chunks = p.processed.chunks.len();
            let pages = p.processed.pages as u32;
            let reading = PageReading::of(&p.processed);
            let warnings = p.processed.warnings;
            let outcome = match p.replaces {
                Some(replaced) => FileOutcome::Changed {
                    doc,
                    replaced,
                    chunks,
                    warnings,
                    pages,
                    reading,
                },
                None => FileOutcome::Added {
                    doc,
                    chunks,
                    warnings,
                    pages,
                    reading,
                },
            };
            (p.item.source, outcome)
        })
        .collect())
}

/// Embed and write chunks to the vector store (durable on return) and the keyword index
/// (committed): the one write path of ingestion, `zhiku reindex` and chunk edits. Returns the
/// number written.
fn write_entries(engine: &Engine, entries: &[IndexEntry]) -> Result<usize> {
    if entries.is_empty() {
        return Ok(0);
    }
    let texts: Vec<&str> = entries.iter().map(|e| e.text.as_str()).collect();
    let vectors = engine.embedder()?.embed_passages(&texts)?;
    let points: Vec<VectorPoint> = entries
        .iter()
        .zip(vectors)
        .map(|(e, vector)| VectorPoint {
            chunk: e.chunk,
            kb: e.kb,
            doc: e.doc,
            readers: e.readers.clone(),
            vector,
        })
        .collect();
    engine.vector()?.upsert(&points)?;
    engine.keyword.add(&keyword_docs(entries))?;
    engine.keyword.commit()?;
    Ok(points.len())
}

fn keyword_docs(entries: &[IndexEntry]) -> Vec<KeywordDoc<'_>> {
    entries
        .iter()
        .map(|e| KeywordDoc {
            chunk: e.chunk,
            kb: e.kb,
            doc: e.doc,
            title: &e.title,
            text: &e.text,
            readers: &e.readers,
        })
        .collect()
}

/// Write these chunks' readers to the derived indexes without embedding again: the vector
/// payload is replaced in place, and the keyword entries are deleted and added again from
/// the text in SQLite. The other half of [`write_entries`], for changed access rules.
fn write_readers(engine: &Engine, entries: &[IndexEntry]) -> Result<usize> {
    if entries.is_empty() {
        return Ok(0);
    }
    let updates: Vec<(ChunkId, Vec<String>)> = entries
        .iter()
        .map(|e| (e.chunk, e.readers.clone()))
        .collect();
    engine.vector()?.set_readers(&updates)?;
    engine.keyword.add(&keyword_docs(entries))?;
    engine.keyword.commit()?;
    Ok(entries.len())
}

/// Bring the derived indexes' readers up to date with SQLite for the documents whose rules
/// changed (or every document, after an upgrade): crash-safe like chunk edits, since the
/// queue rows (`pending_access_updates`) are cleared only once both indexes hold the new
/// readers, and a document changed again meanwhile stays queued. Runs in [`recover`], in
/// the server's worker after every wake, and in `zhiku kb restrict`. Returns the number of
/// chunks updated.
pub fn apply_access_updates(engine: &Engine) -> Result<u64> {
    let pending = engine.meta.pending_access_updates()?;
    if pending.is_empty() {
        return Ok(0);
    }
    let _span = info_span!("access_updates", docs = pending.len()).entered();
    let mut total = 0u64;
    for group in pending.chunks(BATCH_DOCS) {
        let mut entries = Vec::new();
        for (doc, _) in group {
            entries.extend(engine.meta.index_entries(*doc)?);
        }
        total += write_readers(engine, &entries)? as u64;
        engine.meta.clear_pending_access_updates(group)?;
    }
    info!(
        docs = pending.len(),
        chunks = total,
        "readers updated in the indexes"
    );
    Ok(total)
}

/// Edit a chunk (see [`crate::store::meta::edits`]) and bring the vector and keyword
/// indexes up to date with it. Crash-safe: SQLite records the edit with a pending index
/// update in one transaction; the indexes are then written from SQLite and the update
/// cleared; [`recover`] redoes an update a crash interrupted. Returns the state before and
/// after.
pub fn edit_chunk(
    engine: &Engine,
    chunk: ChunkId,
    change: &ChunkChange,
    actor: &str,
) -> Result<(ChunkState, ChunkState)> {
    let _span = info_span!("edit_chunk", chunk).entered();
    engine.check_model(false)?;
    let (before, after) = engine.meta.edit_chunk(chunk, change, actor)?;
    apply_chunk_updates(engine)?;
    info!(chunk, enabled = after.enabled, "chunk edited");
    Ok((before, after))
}

/// Write the pending chunk updates to the derived indexes: each chunk's current state from
/// SQLite (a disabled or deleted chunk is removed), then clear them.
fn apply_chunk_updates(engine: &Engine) -> Result<()> {
    let pending = engine.meta.pending_chunk_updates()?;
    if pending.is_empty() {
        return Ok(());
    }
    let mut entries = Vec::new();
    let mut removed = Vec::new();
    for chunk in &pending {
        let e = engine.meta.index_entry(*chunk)?;
        if e.is_empty() {
            removed.push(*chunk);
        }
        entries.extend(e);
    }
    if !removed.is_empty() {
        engine.vector()?.delete_chunks(&removed)?;
        engine.keyword.delete_chunks(&removed)?;
        engine.keyword.commit()?;
    }
    write_entries(engine, &entries)?;
    engine.meta.clear_pending_chunk_updates(&pending)?;
    Ok(())
}

/// Delete documents from SQLite, then from the derived indexes (crash-safe: they wait in
/// `pending_deletes` until both indexes have forgotten them).
pub fn delete_documents(engine: &Engine, docs: &[DocId]) -> Result<()> {
    engine.meta.delete_documents(docs)?;
    purge(engine, docs)
}

/// Remove documents already deleted from SQLite from the derived indexes, then clear them
/// from the queue.
fn purge(engine: &Engine, docs: &[DocId]) -> Result<()> {
    if docs.is_empty() {
        return Ok(());
    }
    engine.vector()?.delete_documents(docs)?;
    engine.keyword.delete_documents(docs)?;
    engine.keyword.commit()?;
    engine.meta.clear_pending_deletes(docs)?;
    Ok(())
}

/// Delete a knowledge base and everything in it.
pub fn delete_kb(engine: &Engine, kb_name: &str) -> Result<usize> {
    let kb = engine.meta.require_kb(kb_name)?;
    let docs = engine.meta.delete_kb(kb)?;
    purge(engine, &docs)?;
    originals::remove_kb(engine.data_dir(), kb);
    Ok(docs.len())
}

/// Rebuild the vector and keyword indexes from SQLite (e.g. after changing the embedding
/// model or the keyword dictionary).
pub fn reindex(engine: &Engine, progress: &dyn Progress) -> Result<u64> {
    let _span = info_span!("reindex").entered();
    recover(engine)?;
    let docs = engine.meta.ready_documents()?;
    let vector = engine.vector()?;
    vector.clear()?;
    engine.keyword.clear()?;
    engine.check_model(true)?;
    progress.set_length(docs.len() as u64);
    let mut total = 0u64;
    for group in docs.chunks(BATCH_DOCS) {
        let mut entries = Vec::new();
        for (doc, _, _) in group {
            entries.extend(engine.meta.index_entries(*doc)?);
        }
        total += write_entries(engine, &entries)? as u64;
        progress.inc(group.len() as u64);
    }
    vector.optimize()?;
    progress.finish();
    Ok(total)
}

/// Re-add every ready chunk to the keyword index, so that text indexed with an older user
/// dictionary is segmented with the current one (after
/// [`KeywordIndex::set_user_dict`](crate::store::keyword::KeywordIndex::set_user_dict)).
/// The vectors are untouched. Nothing is cleared first: each chunk replaces itself, so
/// searches keep working meanwhile and a document ingested at the same time is not lost.
/// (A document deleted at the same time may leave keyword entries behind; retrieval ignores
/// them, since SQLite decides which chunks exist, and `zhiku reindex` drops them.)
/// Returns the number of chunks re-added.
pub fn reindex_keywords(engine: &Engine) -> Result<u64> {
    let _span = info_span!("reindex_keywords").entered();
    let docs = engine.meta.ready_documents()?;
    let mut total = 0u64;
    for group in docs.chunks(BATCH_DOCS) {
        let mut entries = Vec::new();
        for (doc, _, _) in group {
            entries.extend(engine.meta.index_entries(*doc)?);
        }
        engine.keyword.add(&keyword_docs(&entries))?;
        engine.keyword.commit()?;
        total += entries.len() as u64;
    }
    info!(chunks = total, "keyword index rebuilt");
    Ok(total)
}
