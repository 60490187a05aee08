//! The server's ingestion worker: one thread takes queued files in order (uploads and
//! re-indexes alike) through the same [`Batch`] as the command line, writing each file's
//! status to SQLite as it goes (`extracting`, `embedding`, then `done` or `failed` with the
//! reason). Files that follow each other in one knowledge base share a batch.
//!
//! Like meilisearch's task queue, the queue lives in the database, so it survives a restart:
//! at start-up the worker first cleans up what a stopped process left half-written
//! ([`super::recover`]), then queues again the files that were being extracted or embedded.
//! A file run twice is harmless: a document already indexed with the same content is found
//! unchanged, and a half-written one was purged.
//!
//! One worker per data folder: the embedder already uses every core for one batch, and one
//! writer keeps the stores' crash safety simple.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tracing::{error, info, info_span, warn};

use super::{Batch, FileOutcome, Item, ItemData, originals};
use crate::engine::Engine;
use crate::store::meta::PageReading;
use crate::store::meta::{ClaimedFile, FileStatus, JobKind, MetaError, UploadJob};

/// How long an idle worker sleeps before looking at the queue again without being woken.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// Wakes the worker when files are queued.
#[derive(Debug, Default)]
pub struct Signal {
    pending: Mutex<bool>,
    cv: Condvar,
}

impl Signal {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Files were queued (or the worker should stop): wake it.
    pub fn notify(&self) {
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }

    /// Sleep until notified or `timeout` has passed.
    fn wait(&self, timeout: Duration) {
        let guard = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (mut pending, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |p| !*p)
            .unwrap_or_else(|p| p.into_inner());
        *pending = false;
    }
}

/// Told about events admins want to hear of (e.g. the WeCom group robot), so the worker
/// knows nothing of where they go. Called on the worker's thread: it must not wait.
pub trait Notifier: Send + Sync {
    /// A job's last file has finished (`job.status` is `done` or `failed`).
    fn job_finished(&self, job: &UploadJob);
}

/// Tells nobody.
struct Silent;

impl Notifier for Silent {
    fn job_finished(&self, _: &UploadJob) {}
}

/// The running worker thread.
pub struct Worker {
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    signal: Arc<Signal>,
}

impl Worker {
    /// Start the worker for `engine`'s data folder. Uploads left in staging by a stopped
    /// process are deleted now, before any request can stage new ones; recovery and the
    /// queue then run on the worker's thread.
    pub fn start(engine: Arc<Engine>, signal: Arc<Signal>) -> std::io::Result<Self> {
        Self::start_notifying(engine, signal, Arc::new(Silent))
    }

    /// [`Worker::start`], telling `notifier` when jobs finish.
    pub fn start_notifying(
        engine: Arc<Engine>,
        signal: Arc<Signal>,
        notifier: Arc<dyn Notifier>,
    ) -> std::io::Result<Self> {
        let staging = originals::staging_root(engine.data_dir());
        match std::fs::remove_dir_all(&staging) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (signal.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("zhiku-ingest".into())
            .spawn(move || run(&engine, &s, &st, notifier.as_ref()))?;
        Ok(Self {
            thread: Some(thread),
            stop,
            signal,
        })
    }

    /// Stop after the file in hand, waiting at most `patience`; true when the worker has
    /// stopped. A file cut short by the process ending is queued again at the next start.
    pub fn stop(mut self, patience: Duration) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        self.signal.notify();
        let Some(thread) = self.thread.take() else {
            return true;
        };
        let deadline = Instant::now() + patience;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if thread.is_finished() {
            let _ = thread.join();
            true
        } else {
            warn!(
                "the ingestion worker is still busy with a file; it will be queued again at the next start"
            );
            false
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.signal.notify();
    }
}

fn run(engine: &Engine, signal: &Signal, stop: &AtomicBool, notifier: &dyn Notifier) {
    if let Err(e) = start_up(engine) {
        error!(error = %e, "cannot recover the ingestion queue; queued files wait");
    }
    let mut ingested = false;
    while !stop.load(Ordering::SeqCst) {
        match ingest_next(engine, stop, notifier) {
            Ok(true) => {
                ingested = true;
                continue;
            }
            Ok(false) if ingested => {
                ingested = false;
                if let Err(e) = engine.vector().and_then(|v| Ok(v.optimize()?)) {
                    warn!(error = %e, "cannot optimise the vector store");
                }
            }
            Ok(false) => {}
            Err(e) => error!(error = %e, "cannot read the ingestion queue"),
        }
        // Changed access rules: the stores' reader filters follow SQLite's.
        if let Err(e) = super::apply_access_updates(engine) {
            error!(error = %e, "cannot update the readers in the indexes; retrying later");
        }
        signal.wait(IDLE_POLL);
    }
}

/// Clean up after a stopped process, then queue its interrupted files again.
fn start_up(engine: &Engine) -> super::Result<()> {
    super::recover(engine)?;
    let n = engine.meta.requeue_interrupted()?;
    if n > 0 {
        warn!(files = n, "files interrupted by a stop are queued again");
    }
    originals::sweep(engine)?;
    Ok(())
}

/// A claimed file waiting in the batch, with the content hash of the version it replaces.
struct Waiting {
    file: ClaimedFile,
    previous: Option<String>,
}

/// Ingest the oldest queued file and the queued files right behind it in the same knowledge
/// base, in batches (as the command line does: embedding many files' chunks together is
/// about twice as fast as one file at a time). False when the queue is empty.
fn ingest_next(
    engine: &Engine,
    stop: &AtomicBool,
    notifier: &dyn Notifier,
) -> Result<bool, MetaError> {
    let Some(first) = engine.meta.claim_next_file(None)? else {
        return Ok(false);
    };
    let kb = first.kb;
    let _span = info_span!("ingest_batch", kb).entered();
    let mut batch = match Batch::new(engine, kb) {
        Ok(b) => b,
        Err(e) => {
            error!(error = %e, "cannot ingest");
            finish(engine, notifier, &first, None, Err(e.to_string()));
            return Ok(true);
        }
    };
    let mut waiting = Vec::new();
    let mut next = Some(first);
    while let Some(file) = next {
        if batch.waits_for(&file.name) {
            flush(engine, notifier, &mut batch, &mut waiting);
        }
        add(engine, notifier, &mut batch, file, &mut waiting);
        if batch.is_full() {
            flush(engine, notifier, &mut batch, &mut waiting);
        }
        next = if stop.load(Ordering::SeqCst) {
            None
        } else {
            engine.meta.claim_next_file(Some(kb))?
        };
    }
    flush(engine, notifier, &mut batch, &mut waiting);
    Ok(true)
}

/// Process one claimed file into the batch; settle it now when it needs no writing.
fn add(
    engine: &Engine,
    notifier: &dyn Notifier,
    batch: &mut Batch,
    file: ClaimedFile,
    waiting: &mut Vec<Waiting>,
) {
    // The version this file may replace, whose original is released once it is replaced.
    let previous = engine
        .meta
        .document_by_source(file.kb, &file.name)
        .ok()
        .flatten()
        .map(|d| d.content_hash);
    let item = match item(engine, &file) {
        Ok(item) => item,
        Err(reason) => {
            return finish(
                engine,
                notifier,
                &file,
                previous,
                Ok(FileOutcome::Failed { reason }),
            );
        }
    };
    match batch.add(engine, item, file.kind == JobKind::Reindex) {
        Ok(Some(outcome)) => finish(engine, notifier, &file, previous, Ok(outcome)),
        Ok(None) => waiting.push(Waiting { file, previous }),
        Err(e) => finish(engine, notifier, &file, previous, Err(e.to_string())),
    }
}

/// Write the waiting files (now `embedding`) and settle each.
fn flush(engine: &Engine, notifier: &dyn Notifier, batch: &mut Batch, waiting: &mut Vec<Waiting>) {
    if waiting.is_empty() {
        return;
    }
    for w in waiting.iter() {
        if let Err(e) = engine
            .meta
            .set_file_status(w.file.id, FileStatus::Embedding)
        {
            warn!(error = %e, "cannot record a file's status");
        }
    }
    match batch.write(engine) {
        Ok(written) => {
            for (w, (_, outcome)) in waiting.drain(..).zip(written) {
                finish(engine, notifier, &w.file, w.previous, Ok(outcome));
            }
        }
        Err(e) => {
            error!(error = %e, files = waiting.len(), "writing a batch failed");
            // Drop what the failed write left behind before the next batch.
            if let Err(e) = super::recover(engine) {
                error!(error = %e, "cannot clean up after the failure");
            }
            let reason = e.to_string();
            for w in waiting.drain(..) {
                finish(engine, notifier, &w.file, w.previous, Err(reason.clone()));
            }
        }
    }
}

/// The file to ingest for a claimed queue entry, or why there is none.
fn item(engine: &Engine, file: &ClaimedFile) -> Result<Item, String> {
    let path = match &file.blob {
        Some(hash) => originals::path(engine.data_dir(), file.kb, hash),
        None if Path::new(&file.name).is_absolute() => Some(PathBuf::from(&file.name)),
        None => None,
    };
    let Some(path) = path.filter(|p| p.is_file()) else {
        return Err("the original file is not stored on the server; upload it again".into());
    };
    if file.kind == JobKind::Reindex {
        match engine.meta.document_by_source(file.kb, &file.name) {
            Ok(None) => return Err("the document was deleted before it could be re-indexed".into()),
            Ok(Some(d)) if file.blob.as_ref().is_some_and(|b| *b != d.content_hash) => {
                return Err("a newer version of the document was indexed meanwhile".into());
            }
            Ok(Some(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let name = originals::file_name(&file.name);
    Ok(Item {
        source: file.name.clone(),
        title: Path::new(name)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.to_string()),
        file_name: name.to_string(),
        data: ItemData::Path(path),
    })
}

/// Record how a file ended (an `Err` is a failure of the server, not of the file) and
/// release the originals nothing needs any more. The notifier hears of the job when this was
/// its last file.
fn finish(
    engine: &Engine,
    notifier: &dyn Notifier,
    file: &ClaimedFile,
    previous: Option<String>,
    result: Result<FileOutcome, String>,
) {
    let (status, message, doc) = match result {
        Ok(outcome) => settle(outcome),
        Err(reason) => (FileStatus::Failed, Some(reason), None),
    };
    info!(file = %file.name, status = status.as_str(), message = message.as_deref().unwrap_or(""), "file finished");
    match engine
        .meta
        .finish_file(file.id, status, message.as_deref(), doc)
    {
        Ok(true) => match engine.meta.upload_job(file.job) {
            Ok(Some(job)) => notifier.job_finished(&job),
            Ok(None) => {}
            Err(e) => warn!(error = %e, "cannot read the finished job"),
        },
        Ok(false) => {}
        Err(e) => error!(error = %e, "cannot record the file's status"),
    }
    if let Some(hash) = &file.blob {
        originals::release(engine, file.kb, hash);
    }
    if let Some(hash) = previous.filter(|h| Some(h) != file.blob.as_ref()) {
        originals::release(engine, file.kb, &hash);
    }
}

/// A file's final status, note and document.
fn settle(outcome: FileOutcome) -> (FileStatus, Option<String>, Option<i64>) {
    let with_warnings = |note: Option<&str>, warnings: &[String], reading: &PageReading| {
        let mut parts: Vec<String> = note.map(str::to_string).into_iter().collect();
        if !reading.ocr_pages.is_empty() || !reading.failed_pages.is_empty() {
            parts.push(format!("pages: {}", reading.describe()));
        }
        if !warnings.is_empty() {
            parts.push(format!(
                "{} warning{}: {}",
                warnings.len(),
                if warnings.len() == 1 { "" } else { "s" },
                warnings.join("; ")
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    };
    match outcome {
        FileOutcome::Added {
            doc,
            warnings,
            reading,
            ..
        } => (
            FileStatus::Done,
            with_warnings(None, &warnings, &reading),
            Some(doc),
        ),
        FileOutcome::Changed {
            doc,
            warnings,
            reading,
            ..
        } => (
            FileStatus::Done,
            with_warnings(Some("replaced the earlier version"), &warnings, &reading),
            Some(doc),
        ),
        FileOutcome::Unchanged { doc } => (
            FileStatus::Done,
            Some("unchanged: this content is already indexed".into()),
            Some(doc),
        ),
        FileOutcome::Duplicate { doc, source } => (
            FileStatus::Done,
            Some(format!(
                "not indexed twice: the same content is already indexed as `{source}`"
            )),
            doc,
        ),
        FileOutcome::Failed { reason } => (FileStatus::Failed, Some(reason), None),
    }
}
