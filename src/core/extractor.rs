//! Each file's extraction in a supervised child process: `zhiku extract-worker`.
//!
//! Extraction is where hostile input meets native code (PDFium, onnxruntime, LibreOffice):
//! a file can hang it, blow up its memory, or crash it. With `[ingest] isolation =
//! "process"` (the default) the [`Supervisor`] runs [`zhiku_ingest::extract_file`] in a
//! worker process and the rest of the pipeline (clean, mask, chunk, embed, write) stays in
//! this one, so:
//! - a file past `[ingest] file_timeout_secs` is killed with its worker ("timed out after
//!   N s"), and the next file gets a fresh worker;
//! - the worker's address space is capped (`RLIMIT_AS`, `[ingest] worker_memory_mb`, set in
//!   the child before exec): a file that needs more fails with "ran out of memory";
//! - a native crash fails that file only ("the extractor crashed (signal 11, SIGSEGV)").
//!
//! A worker lives for many files (PDFium and the OCR models are loaded once per worker) and
//! is replaced after a crash or a kill. What is committed to the stores, and when, does not
//! change: the worker only returns what [`zhiku_ingest::extract_file`] returns.
//!
//! The protocol, over the worker's stdin/stdout: frames of a little-endian `u32` length and
//! a JSON message, then a little-endian `u64` length and raw bytes (the file, for a
//! request; empty otherwise). The worker says [`FromWorker::Ready`] first, then for each
//! [`ToWorker::Extract`] sends any number of [`FromWorker::Page`] (progress) and
//! [`FromWorker::Known`] (the garble check's tokenizer signal, answered by
//! [`ToWorker::Known`]: the tokenizer stays here) and one [`FromWorker::Done`]. The worker's
//! own stdout is moved to its stderr before any library loads, so nothing a native library
//! prints can corrupt a frame; its stderr (logs) is read here and logged.

use std::collections::VecDeque;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{debug, info, info_span, warn};
use zhiku_ingest::{Extracted, KnownPieces};

/// Bumped when a message changes; a worker of another version is refused.
const PROTOCOL: u32 = 1;
/// How long a new worker may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest JSON message accepted (an `Extracted` of a very long document is tens of MB).
const MAX_MESSAGE: u32 = 1 << 30;
/// How often a busy worker's memory is sampled.
const SAMPLE: Duration = Duration::from_millis(100);
/// A worker at its memory cap that uses no CPU for this long is stuck, and killed.
const STUCK: Duration = Duration::from_secs(3);
/// Lines of the worker's stderr kept to explain a death.
const STDERR_TAIL: usize = 40;

/// Where the worker's OCR engine comes from (the app's PP-OCRv5 files, `crate::ocr`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcrSetup {
    pub models: PathBuf,
    pub runtime: PathBuf,
    pub threads: usize,
}

/// Parent → worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToWorker {
    /// Extract the file in the frame's bytes.
    Extract {
        file_name: String,
        options: Box<zhiku_ingest::Options>,
        ocr: Option<OcrSetup>,
        /// Whether to ask for the tokenizer's known-piece share of each page.
        known_pieces: bool,
    },
    /// The answer to [`FromWorker::Known`].
    Known { share: f32 },
}

/// Worker → parent.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromWorker {
    Ready {
        protocol: u32,
        pid: u32,
    },
    /// Page `page` of `pages` is being read (`ocr`: by OCR).
    Page {
        page: u32,
        pages: u32,
        ocr: bool,
    },
    /// The known-piece share of this text, please.
    Known {
        text: String,
    },
    /// The file's result; the error is the extractor's message.
    Done {
        result: Result<Box<Extracted>, String>,
    },
}

fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T, payload: &[u8]) -> std::io::Result<()> {
    let json = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    w.write_all(&(json.len() as u32).to_le_bytes())?;
    w.write_all(&json)?;
    w.write_all(&(payload.len() as u64).to_le_bytes())?;
    w.write_all(payload)?;
    w.flush()
}

/// One frame; `Ok(None)` at a clean end of stream.
fn read_frame<T: for<'de> Deserialize<'de>>(
    r: &mut impl Read,
) -> std::io::Result<Option<(T, Vec<u8>)>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_MESSAGE {
        return Err(std::io::Error::other(format!("message of {len} bytes")));
    }
    let mut json = vec![0u8; len as usize];
    r.read_exact(&mut json)?;
    let mut plen = [0u8; 8];
    r.read_exact(&mut plen)?;
    let mut payload = vec![0u8; u64::from_le_bytes(plen) as usize];
    r.read_exact(&mut payload)?;
    let msg = serde_json::from_slice(&json).map_err(std::io::Error::other)?;
    Ok(Some((msg, payload)))
}

// ---------------------------------------------------------------------------------------
// The worker (the child).

/// `zhiku extract-worker`: serve extraction requests on stdin/stdout until stdin closes.
pub fn run_worker() -> std::io::Result<()> {
    // Frames go to a copy of stdout; fd 1 itself becomes stderr, so whatever a native
    // library prints cannot land in the middle of a frame.
    // SAFETY: plain fd calls on this process's own descriptors, before any thread starts.
    let out_fd = unsafe {
        let fd = libc::dup(1);
        if fd < 0 || libc::dup2(2, 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        fd
    };
    // SAFETY: `out_fd` was just created by dup and is owned by nothing else.
    let out: std::fs::File = unsafe { std::os::fd::FromRawFd::from_raw_fd(out_fd) };
    let io = Arc::new(WorkerIo {
        input: Mutex::new(BufReader::new(std::io::stdin())),
        output: Mutex::new(BufWriter::new(out)),
    });
    io.send(&FromWorker::Ready {
        protocol: PROTOCOL,
        pid: std::process::id(),
    })?;
    let mut ocr: Option<(OcrSetup, Arc<crate::ocr::LazyPpOcr>)> = None;
    loop {
        let frame = read_frame::<ToWorker>(&mut *io.input.lock().unwrap())?;
        let Some((msg, bytes)) = frame else {
            return Ok(());
        };
        let ToWorker::Extract {
            file_name,
            mut options,
            ocr: setup,
            known_pieces,
        } = msg
        else {
            return Err(std::io::Error::other("expected an extract request"));
        };
        let _span = info_span!("extract_worker", file = %file_name, bytes = bytes.len()).entered();
        if let Some(setup) = setup {
            let engine = match &ocr {
                Some((s, e)) if *s == setup => e.clone(),
                _ => {
                    let e = Arc::new(crate::ocr::LazyPpOcr::new(
                        &setup.models,
                        &setup.runtime,
                        setup.threads,
                    ));
                    ocr = Some((setup, e.clone()));
                    e
                }
            };
            options.ocr.engine = zhiku_ingest::OcrEngine(Some(engine));
        }
        if known_pieces {
            let io = io.clone();
            options.pdf.known_pieces =
                zhiku_ingest::KnownPiecesScorer(Some(Arc::new(move |text: &str| {
                    io.known(text).unwrap_or_else(|e| {
                        warn!(error = %e, "no known-piece answer from the supervisor");
                        1.0
                    })
                })));
        }
        {
            let io = io.clone();
            options.ocr.progress = zhiku_ingest::PageProgress(Some(Arc::new(
                move |page: u32, pages: u32, ocr: bool| {
                    let _ = io.send(&FromWorker::Page { page, pages, ocr });
                },
            )));
        }
        let started = Instant::now();
        let result = zhiku_ingest::extract_file(&bytes, &file_name, &options);
        debug!(
            ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "extracted"
        );
        io.send(&FromWorker::Done {
            result: result.map(Box::new).map_err(|e| e.to_string()),
        })?;
    }
}

struct WorkerIo {
    input: Mutex<BufReader<std::io::Stdin>>,
    output: Mutex<BufWriter<std::fs::File>>,
}

impl WorkerIo {
    fn send(&self, msg: &FromWorker) -> std::io::Result<()> {
        write_frame(&mut *self.output.lock().unwrap(), msg, &[])
    }

    fn known(&self, text: &str) -> std::io::Result<f32> {
        self.send(&FromWorker::Known {
            text: text.to_string(),
        })?;
        match read_frame::<ToWorker>(&mut *self.input.lock().unwrap())? {
            Some((ToWorker::Known { share }, _)) => Ok(share),
            _ => Err(std::io::Error::other("expected a known-piece answer")),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The supervisor (the parent).

/// One file's extraction request, as the supervisor gets it.
pub struct Request<'a> {
    pub bytes: &'a [u8],
    pub file_name: &'a str,
    /// The ingest crate's options (the OCR engine and known-piece scorer in them are not
    /// sent: `ocr` and `known` stand for them).
    pub options: &'a zhiku_ingest::Options,
    pub ocr: Option<OcrSetup>,
    pub known: Option<&'a KnownPieces>,
    /// `None`: no limit.
    pub limit: Option<Duration>,
    /// Called for each page as the worker starts it: (page, pages, by OCR).
    pub progress: &'a (dyn Fn(u32, u32, bool) + Sync),
}

/// Starts, feeds, times and restarts extract workers.
pub struct Supervisor {
    binary: PathBuf,
    memory_mb: u64,
    idle: Mutex<Vec<Worker>>,
    busy: Mutex<Vec<u32>>,
}

struct Worker {
    child: Child,
    pid: u32,
    stdin: BufWriter<ChildStdin>,
    frames: Receiver<(FromWorker, Vec<u8>)>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a worker failed a request (an extraction error is not one: the worker goes on).
enum Failure {
    /// The worker could not take the request (it died idle): try a fresh one.
    Stale(String),
    /// The worker died or was killed on this file: the file's reason.
    Dead(String),
}

impl Supervisor {
    /// `binary`: the `zhiku` executable; `memory_mb`: the worker's address-space cap (0: none).
    pub fn new(binary: PathBuf, memory_mb: u64) -> Self {
        Self {
            binary,
            memory_mb,
            idle: Mutex::new(Vec::new()),
            busy: Mutex::new(Vec::new()),
        }
    }

    /// The binary from `[ingest] worker_binary`, else this program.
    pub fn from_config(c: &crate::config::IngestConfig) -> Result<Self, String> {
        let binary = match &c.worker_binary {
            Some(b) => b.clone(),
            None => std::env::current_exe()
                .map_err(|e| format!("cannot find this program to start the extract worker: {e}; set [ingest] worker_binary"))?,
        };
        Ok(Self::new(binary, c.worker_memory_mb))
    }

    /// Process ids of the workers busy with a file now (tests send them signals; they are
    /// also logged when a worker starts).
    pub fn busy_pids(&self) -> Vec<u32> {
        self.busy.lock().unwrap().clone()
    }

    /// Extract one file in a worker. The error is the file's reason, ready to show.
    pub fn extract(&self, req: &Request<'_>) -> Result<Extracted, String> {
        let mut fresh = false;
        loop {
            let worker = self.idle.lock().unwrap().pop();
            let mut worker = match worker {
                Some(w) => w,
                None => {
                    fresh = true;
                    self.spawn()?
                }
            };
            self.busy.lock().unwrap().push(worker.pid);
            let r = self.run(&mut worker, req);
            self.busy.lock().unwrap().retain(|p| *p != worker.pid);
            match r {
                Ok(result) => {
                    self.idle.lock().unwrap().push(worker);
                    return result;
                }
                Err(Failure::Stale(why)) if !fresh => {
                    debug!(
                        pid = worker.pid,
                        why, "idle extract worker gone; starting another"
                    );
                }
                Err(Failure::Stale(why)) | Err(Failure::Dead(why)) => return Err(why),
            }
        }
    }

    fn spawn(&self) -> Result<Worker, String> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("extract-worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // glibc reserves 64 MB of address space per malloc arena (up to 8 per core):
            // under RLIMIT_AS that is cap spent on nothing.
            .env("MALLOC_ARENA_MAX", "2");
        let bytes = self.memory_mb.saturating_mul(1 << 20) as libc::rlim_t;
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        // (No PR_SET_PDEATHSIG: it fires when the spawning *thread* ends, and a pooled
        // worker outlives it. An idle worker ends when its stdin closes with this process.)
        unsafe {
            cmd.pre_exec(move || {
                if bytes > 0 {
                    let limit = libc::rlimit {
                        rlim_cur: bytes,
                        rlim_max: bytes,
                    };
                    if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let cannot = |why: String| {
            format!(
                "cannot start the extract worker `{} extract-worker`: {why}; [ingest] \
                 worker_binary must name the zhiku binary (or set [ingest] isolation = \
                 \"thread\")",
                self.binary.display()
            )
        };
        let mut child = cmd.spawn().map_err(|e| cannot(e.to_string()))?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped");
        let stderr_pipe = child.stderr.take().expect("piped");
        let stdin = BufWriter::new(child.stdin.take().expect("piped"));
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        {
            let tail = stderr.clone();
            std::thread::Builder::new()
                .name("extract-stderr".into())
                .spawn(move || {
                    use std::io::BufRead;
                    for line in BufReader::new(stderr_pipe).lines() {
                        let Ok(line) = line else { break };
                        if line.contains(" WARN ") || line.contains(" ERROR ") {
                            warn!(pid, "extract worker: {line}");
                        } else {
                            debug!(pid, "extract worker: {line}");
                        }
                        let mut t = tail.lock().unwrap();
                        if t.len() == STDERR_TAIL {
                            t.pop_front();
                        }
                        t.push_back(line);
                    }
                })
                .map_err(|e| cannot(e.to_string()))?;
        }
        let (tx, frames) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("extract-frames".into())
            .spawn(move || {
                let mut r = BufReader::new(stdout);
                while let Ok(Some(frame)) = read_frame::<FromWorker>(&mut r) {
                    if tx.send(frame).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| cannot(e.to_string()))?;
        let mut worker = Worker {
            child,
            pid,
            stdin,
            frames,
            stderr,
        };
        match worker.frames.recv_timeout(START_TIMEOUT) {
            Ok((FromWorker::Ready { protocol, .. }, _)) if protocol == PROTOCOL => {
                info!(pid, binary = %self.binary.display(), memory_mb = self.memory_mb, "extract worker started");
                Ok(worker)
            }
            Ok((FromWorker::Ready { protocol, .. }, _)) => Err(cannot(format!(
                "it speaks protocol {protocol}, this program {PROTOCOL} (a different zhiku version)"
            ))),
            Ok(_) => Err(cannot("it did not say it was ready".into())),
            Err(RecvTimeoutError::Timeout) => Err(cannot(format!(
                "not ready within {} s",
                START_TIMEOUT.as_secs()
            ))),
            Err(RecvTimeoutError::Disconnected) => {
                let status = worker.child.wait().ok();
                let tail = tail_text(&worker.stderr, 3);
                Err(cannot(format!(
                    "it ended at once ({}){}",
                    status
                        .map(describe_status)
                        .unwrap_or_else(|| "no status".into()),
                    if tail.is_empty() {
                        String::new()
                    } else {
                        format!(": {tail}")
                    }
                )))
            }
        }
    }

    fn run(&self, w: &mut Worker, req: &Request<'_>) -> Result<Result<Extracted, String>, Failure> {
        let msg = ToWorker::Extract {
            file_name: req.file_name.to_string(),
            options: Box::new(req.options.clone()),
            ocr: req.ocr.clone(),
            known_pieces: req.known.is_some(),
        };
        if let Err(e) = write_frame(&mut w.stdin, &msg, req.bytes) {
            return Err(Failure::Stale(format!("the extract worker is gone ({e})")));
        }
        let started = Instant::now();
        let deadline = req.limit.map(|l| started + l);
        // The worker's address space, sampled while it works: PDFium aborts without a word
        // when an allocation fails under the cap, so a death near the cap is out of memory.
        let mut peak = 0u64;
        let cap = self.memory_mb << 20;
        // At the cap and using no CPU: an allocation failed and the worker is stuck (seen:
        // PDFium's bindings deadlocked while unwinding from a failed allocation). Since when.
        let mut stuck: Option<(Instant, u64)> = None;
        loop {
            let vm = address_space(w.pid).unwrap_or(0);
            peak = peak.max(vm);
            if cap > 0 && vm >= cap / 100 * 97 {
                let cpu = cpu_ticks(w.pid).unwrap_or(0);
                match stuck {
                    Some((since, ticks)) if ticks == cpu => {
                        if since.elapsed() >= STUCK {
                            warn!(
                                pid = w.pid,
                                file = req.file_name,
                                "extract worker stuck at its memory cap; killed"
                            );
                            let _ = w.child.kill();
                            let _ = w.child.wait();
                            return Err(Failure::Dead(out_of_memory(
                                self.memory_mb,
                                "stuck at the cap, stopped",
                            )));
                        }
                    }
                    _ => stuck = Some((Instant::now(), cpu)),
                }
            } else {
                stuck = None;
            }
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(SAMPLE),
                None => SAMPLE,
            };
            let frame = match w.frames.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) if deadline.is_none_or(|d| Instant::now() < d) => {
                    continue;
                }
                f => f,
            };
            match frame {
                Ok((FromWorker::Page { page, pages, ocr }, _)) => (req.progress)(page, pages, ocr),
                Ok((FromWorker::Known { text }, _)) => {
                    let share = req.known.map(|k| k(&text)).unwrap_or(1.0);
                    let reply = ToWorker::Known { share };
                    if write_frame(&mut w.stdin, &reply, &[]).is_err() {
                        return Err(self.died(w, started, peak));
                    }
                }
                Ok((FromWorker::Done { result }, _)) => return Ok(result.map(|x| *x)),
                Ok((FromWorker::Ready { .. }, _)) => {
                    return Err(Failure::Dead(
                        "the extract worker restarted mid-file".into(),
                    ));
                }
                Err(RecvTimeoutError::Timeout) => {
                    let secs = req.limit.unwrap_or_default().as_secs();
                    warn!(
                        pid = w.pid,
                        file = req.file_name,
                        secs,
                        "extraction timed out; worker killed"
                    );
                    let _ = w.child.kill();
                    let _ = w.child.wait();
                    if cap > 0 && peak >= cap / 100 * 95 {
                        return Err(Failure::Dead(out_of_memory(
                            self.memory_mb,
                            &format!("at the cap when stopped after {secs} s"),
                        )));
                    }
                    return Err(Failure::Dead(format!(
                        "timed out after {secs} s ([ingest] file_timeout_secs): the extractor \
                         was stopped and the file skipped"
                    )));
                }
                Err(RecvTimeoutError::Disconnected) => return Err(self.died(w, started, peak)),
            }
        }
    }

    /// The worker's stream ended mid-request: why, from its exit status and stderr.
    fn died(&self, w: &mut Worker, started: Instant, peak: u64) -> Failure {
        let status = w.child.wait();
        // The stderr reader may still hold the last lines for a moment.
        std::thread::sleep(Duration::from_millis(50));
        let tail = tail_text(&w.stderr, 40);
        let why = match status {
            Ok(s) => death_reason(s, &tail, self.memory_mb, peak),
            Err(e) => format!("the extractor stopped ({e}); the file was skipped"),
        };
        warn!(
            pid = w.pid,
            secs = started.elapsed().as_secs(),
            why,
            "extract worker died"
        );
        Failure::Dead(why)
    }
}

fn tail_text(t: &Mutex<VecDeque<String>>, n: usize) -> String {
    let t = t.lock().unwrap();
    let skip = t.len().saturating_sub(n);
    t.iter().skip(skip).cloned().collect::<Vec<_>>().join(" | ")
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGTRAP => "SIGTRAP",
        _ => "signal",
    }
}

fn describe_status(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.signal(), s.code()) {
        (Some(sig), _) => format!("signal {sig}, {}", signal_name(sig)),
        (_, Some(code)) => format!("exit status {code}"),
        _ => s.to_string(),
    }
}

/// The reason for a file that needed more memory than the cap (`how`: how it ended).
fn out_of_memory(memory_mb: u64, how: &str) -> String {
    format!(
        "ran out of memory: the extractor needed more than [ingest] worker_memory_mb = \
         {memory_mb} MiB ({how}); the file was skipped"
    )
}

/// CPU time the worker has used (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The worker's address space (VmSize), bytes.
fn address_space(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    Some(pages * page)
}

/// The file's reason for a worker that died with `status`, last wrote `stderr` and was seen
/// using `peak` bytes of address space.
fn death_reason(status: ExitStatus, stderr: &str, memory_mb: u64, peak: u64) -> String {
    let near_cap = memory_mb > 0 && peak >= (memory_mb << 20) / 10 * 8;
    let out_of_memory = near_cap
        || [
            "memory allocation of",
            "bad_alloc",
            "out of memory",
            "Out of memory",
        ]
        .iter()
        .any(|m| stderr.contains(m));
    if out_of_memory {
        return self::out_of_memory(memory_mb, &describe_status(status));
    }
    format!(
        "the extractor crashed ({}); the file was skipped{}",
        describe_status(status),
        match stderr.rsplit(" | ").next().filter(|l| !l.trim().is_empty()) {
            Some(last) => format!(" (its last words: {})", truncate(last, 200)),
            None => String::new(),
        }
    )
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        let msg = FromWorker::Page {
            page: 3,
            pages: 40,
            ocr: true,
        };
        write_frame(&mut buf, &msg, b"abc").unwrap();
        write_frame(&mut buf, &FromWorker::Known { text: "页".into() }, &[]).unwrap();
        let mut r = &buf[..];
        let (m, p) = read_frame::<FromWorker>(&mut r).unwrap().unwrap();
        assert!(matches!(
            m,
            FromWorker::Page {
                page: 3,
                pages: 40,
                ocr: true
            }
        ));
        assert_eq!(p, b"abc");
        let (m, p) = read_frame::<FromWorker>(&mut r).unwrap().unwrap();
        assert!(matches!(m, FromWorker::Known { ref text } if text == "页"));
        assert!(p.is_empty());
        assert!(read_frame::<FromWorker>(&mut r).unwrap().is_none());
        // A stream cut mid-frame is an error, not a clean end.
        let mut cut = &buf[..6];
        assert!(read_frame::<FromWorker>(&mut cut).is_err());
    }

    #[test]
    fn deaths_are_named() {
        let segv = ExitStatus::from_raw(libc::SIGSEGV);
        let why = death_reason(segv, "", 4096, 100 << 20);
        assert!(why.contains("crashed (signal 11, SIGSEGV)"), "{why}");
        let abort = ExitStatus::from_raw(libc::SIGABRT);
        let why = death_reason(
            abort,
            "x | memory allocation of 1048576 bytes failed",
            512,
            0,
        );
        assert!(why.starts_with("ran out of memory"), "{why}");
        assert!(why.contains("worker_memory_mb = 512"), "{why}");
        // A silent abort seen near the cap (PDFium's way) is out of memory too.
        let why = death_reason(abort, "", 512, 500 << 20);
        assert!(why.starts_with("ran out of memory"), "{why}");
        let why = death_reason(abort, "", 512, 100 << 20);
        assert!(why.contains("crashed (signal 6, SIGABRT)"), "{why}");
        let exit = ExitStatus::from_raw(3 << 8);
        let why = death_reason(exit, "error: boom", 0, 0);
        assert!(
            why.contains("exit status 3") && why.contains("boom"),
            "{why}"
        );
    }

    /// A binary that is not a zhiku (here: `true`, which exits at once) is a clear error
    /// naming the key to set, not a hang.
    #[test]
    fn a_wrong_binary_is_a_clear_error() {
        let s = Supervisor::new(PathBuf::from("/bin/true"), 0);
        let opts = zhiku_ingest::Options::default();
        let req = Request {
            bytes: b"hello",
            file_name: "a.txt",
            options: &opts,
            ocr: None,
            known: None,
            limit: Some(Duration::from_secs(5)),
            progress: &|_, _, _| {},
        };
        let why = s.extract(&req).unwrap_err();
        assert!(
            why.contains("worker_binary") && why.contains("/bin/true"),
            "{why}"
        );
    }
}
