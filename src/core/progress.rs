//! How long jobs (ingestion, reindexing, building training data) report progress without
//! knowing who watches: the command line draws a bar, the server and tests watch nothing.

/// A watcher of one job's progress. Every method has a do-nothing default.
pub trait Progress: Send + Sync {
    /// The job has `len` steps in all.
    fn set_length(&self, _len: u64) {}
    /// `n` more steps are done.
    fn inc(&self, _n: u64) {}
    /// What the job is working on now (a file name, a phase).
    fn set_message(&self, _message: &str) {}
    /// Work inside the current step: page `page` of `pages` (0: not known yet) of a long
    /// document is being read, by OCR when `ocr`.
    fn set_page(&self, _page: u32, _pages: u32, _ocr: bool) {}
    /// The job is over; a drawn bar disappears.
    fn finish(&self) {}
}

/// Watches nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {}
