//! Metadata in SQLite: knowledge bases, documents (with content hash and status), chunks
//! (with text and provenance), ingestion jobs and per-file outcomes. This is the source of
//! truth; the vector and keyword indexes are rebuilt from it by `zhiku reindex`.
//!
//! Crash safety: a document is written with status `indexing` together with its chunks, then
//! the derived indexes are written, then (in one transaction) the document becomes `ready`
//! and any document it replaces is deleted and queued in `pending_deletes` until the derived
//! indexes have forgotten it too. Readers only see chunks of `ready` documents, so a crash at
//! any point leaves nothing half-visible, and [`MetaStore::unfinished`] tells the next run what
//! to clean up.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{ChunkId, DocId, KbId};

mod accounts;
mod activity;
mod audit;
mod catalog;
mod directory;
mod edits;
mod migrate;
mod oidc;
mod rules;
mod stats;
mod uploads;
mod wecom;

pub use accounts::{
    ApiToken, Group, GroupId, Role, Session, TokenId, User, UserId, valid_account_name,
};
pub use activity::{
    BlockedEntry, Conversation, ConversationId, Feedback, FeedbackEntry, Message, MessageId,
    NewMessage, QueryEntry, QueryFilter, QueryRecord, Via,
};
pub use audit::AuditEntry;
pub use catalog::DocumentSummary;
pub use directory::{DirectoryAccount, GroupChanges};
pub use edits::{ChunkChange, ChunkEdit, ChunkState, EditReview, EditableChunk, IndexEntry};
pub use migrate::{LATEST as SCHEMA_VERSION, MigrateError};
pub use oidc::{OidcLogin, OidcTake};
pub use rules::{
    AccessRule, DocumentAccess, MAX_RULE_GROUPS, RuleChange, RuleKind, normalise_path,
};
pub use uploads::{
    ClaimedFile, FileStatus, JobFile, JobFileCounts, JobKind, JobStatus, NewJobFile, QueueCounts,
    UploadJob,
};
pub use wecom::{WecomMessage, WecomRecovery};

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "knowledge base `{0}` does not exist (create it with `zhiku kb create {0}` or ingest into it)"
    )]
    NoSuchKb(String),
    #[error("knowledge base `{0}` already exists")]
    KbExists(String),
    #[error(
        "invalid knowledge base name `{0}`: use 1–64 letters, digits, CJK characters, `-`, `_` or `.`"
    )]
    BadKbName(String),
    #[error("user `{0}` does not exist (add it with `zhiku user add {0} --password …`)")]
    NoSuchUser(String),
    #[error("user `{0}` already exists")]
    UserExists(String),
    #[error("group `{0}` does not exist (add it with `zhiku group add {0}`)")]
    NoSuchGroup(String),
    #[error("group `{0}` already exists")]
    GroupExists(String),
    #[error(
        "invalid {kind} name `{name}`: use 1–64 letters, digits, CJK characters, `-`, `_`, `.` or `@`"
    )]
    BadAccountName { kind: &'static str, name: String },
    #[error(
        "WeCom userid `{wecom_user}` is already linked to user `{user}`; unlink it from `{user}` first (admin page, or `zhiku user wecom {user}`)"
    )]
    WecomUserTaken { wecom_user: String, user: String },
    #[error(
        "invalid WeCom userid `{0}`: use the userid the WeCom console shows (1–64 letters, digits, `_`, `-`, `@` or `.`)"
    )]
    BadWecomUser(String),
    #[error("no passage {0} (it was deleted, or its document was re-ingested)")]
    NoSuchChunk(ChunkId),
    #[error("invalid chunk edit: {0}")]
    BadEdit(String),
    #[error("metadata database {path}: {source}")]
    Schema { path: PathBuf, source: MigrateError },
    #[error("the last admin cannot be {0}: make another user an admin first")]
    LastAdmin(&'static str),
    #[error("invalid access rule: {0}")]
    BadRule(String),
}

pub type Result<T> = std::result::Result<T, MetaError>;

/// Schema step 1 (see [`migrate`]): frozen, a change is a new step.
const SCHEMA: &str = r#"
PRAGMA foreign_keys = ON;
CREATE TABLE IF NOT EXISTS knowledge_bases (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    id            INTEGER PRIMARY KEY,
    kb_id         INTEGER NOT NULL REFERENCES knowledge_bases(id) ON DELETE CASCADE,
    source        TEXT NOT NULL,
    title         TEXT NOT NULL,
    format        TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    size          INTEGER NOT NULL,
    pages         INTEGER NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('indexing', 'ready')),
    warnings      TEXT NOT NULL DEFAULT '[]',
    masked        INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    text_pages    INTEGER,
    ocr_pages     TEXT NOT NULL DEFAULT '[]',
    failed_pages  TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS documents_kb_source ON documents(kb_id, source);
CREATE INDEX IF NOT EXISTS documents_kb_hash ON documents(kb_id, content_hash);
CREATE TABLE IF NOT EXISTS chunks (
    id            INTEGER PRIMARY KEY,
    document_id   INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    kb_id         INTEGER NOT NULL,
    ordinal       INTEGER NOT NULL,
    page          INTEGER NOT NULL,
    heading_path  TEXT NOT NULL,
    char_start    INTEGER NOT NULL,
    char_end      INTEGER NOT NULL,
    text          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_id);
CREATE TABLE IF NOT EXISTS pending_deletes (
    document_id   INTEGER PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS jobs (
    id           INTEGER PRIMARY KEY,
    kb_id        INTEGER NOT NULL REFERENCES knowledge_bases(id) ON DELETE CASCADE,
    source       TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    added        INTEGER NOT NULL DEFAULT 0,
    changed      INTEGER NOT NULL DEFAULT 0,
    unchanged    INTEGER NOT NULL DEFAULT 0,
    removed      INTEGER NOT NULL DEFAULT 0,
    failed       INTEGER NOT NULL DEFAULT 0,
    chunks       INTEGER NOT NULL DEFAULT 0,
    message      TEXT
);
CREATE TABLE IF NOT EXISTS job_files (
    job_id   INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    source   TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    message  TEXT
);
CREATE TABLE IF NOT EXISTS settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
"#;

/// A knowledge base.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KnowledgeBase {
    pub id: KbId,
    pub name: String,
    pub documents: u64,
    pub chunks: u64,
}

/// A document as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocumentRecord {
    pub id: DocId,
    pub kb: KbId,
    /// Where it came from: an absolute file path, or an external id (e.g. a CMRC paragraph id).
    pub source: String,
    pub title: String,
    pub format: String,
    pub content_hash: String,
    pub size: u64,
    pub pages: u32,
    pub ready: bool,
    pub warnings: Vec<String>,
    pub masked: u64,
    /// How its pages were read; `None` for documents ingested before this was recorded.
    pub reading: Option<PageReading>,
}

/// How a document's pages were read: the truth an admin needs about a scan or a broken PDF.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PageReading {
    /// Pages indexed from their text layer.
    pub text_pages: u32,
    /// Pages indexed from OCR, 1-based.
    pub ocr_pages: Vec<u32>,
    /// Pages not indexed (no text layer and no OCR, garbled text, OCR failed), 1-based; the
    /// document's warnings say why.
    pub failed_pages: Vec<u32>,
}

impl PageReading {
    /// The ingest crate's counts for one processed file.
    pub fn of(p: &zhiku_ingest::Processed) -> Self {
        Self {
            text_pages: p.text_pages as u32,
            ocr_pages: p.ocr_pages.clone(),
            failed_pages: p.failed_pages.clone(),
        }
    }

    /// "2 text, 1 OCR (page 3), 1 failed (page 4)".
    pub fn describe(&self) -> String {
        let list = |p: &[u32]| {
            let shown: Vec<String> = p.iter().take(20).map(u32::to_string).collect();
            let more = if p.len() > 20 { ", …" } else { "" };
            format!(
                " (page{} {}{more})",
                if p.len() == 1 { "" } else { "s" },
                shown.join(", ")
            )
        };
        let mut s = format!("{} text, {} OCR", self.text_pages, self.ocr_pages.len());
        if !self.ocr_pages.is_empty() {
            s.push_str(&list(&self.ocr_pages));
        }
        s.push_str(&format!(", {} failed", self.failed_pages.len()));
        if !self.failed_pages.is_empty() {
            s.push_str(&list(&self.failed_pages));
        }
        s
    }
}

/// Read the `documents` columns of a [`PageReading`] (`text_pages` NULL: not recorded).
fn reading_from(
    text_pages: Option<i64>,
    ocr_pages: &str,
    failed_pages: &str,
) -> Option<PageReading> {
    text_pages.map(|t| PageReading {
        text_pages: t as u32,
        ocr_pages: serde_json::from_str(ocr_pages).unwrap_or_default(),
        failed_pages: serde_json::from_str(failed_pages).unwrap_or_default(),
    })
}

/// Add the page-reading columns to a `documents` table made before them (SQLite adds
/// columns in place; older documents keep NULL, "not recorded"). Part of schema step 1, in
/// its transaction, after [`SCHEMA`].
fn upgrade_documents(conn: &Connection) -> rusqlite::Result<()> {
    let has: bool = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('documents') WHERE name = 'text_pages'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if has {
        return Ok(());
    }
    conn.execute_batch(
        "ALTER TABLE documents ADD COLUMN text_pages INTEGER;
         ALTER TABLE documents ADD COLUMN ocr_pages TEXT NOT NULL DEFAULT '[]';
         ALTER TABLE documents ADD COLUMN failed_pages TEXT NOT NULL DEFAULT '[]';",
    )
}

/// Schema step 3 (folder and document rules): the rules' tables, and the `readers` column of
/// `documents`. No rule existed before, so every document is readable by everyone; the derived
/// indexes lack the readers their filters need, so every document is queued for a readers
/// update (`index::apply_access_updates`): until it has run, members find nothing in them
/// rather than too much.
fn add_readers(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(rules::SCHEMA)?;
    conn.execute_batch(
        r#"ALTER TABLE documents ADD COLUMN readers TEXT NOT NULL DEFAULT '["*"]';
           INSERT OR IGNORE INTO pending_access_updates(document_id, generation)
               SELECT id, 0 FROM documents;"#,
    )
}

/// A document to insert, with its chunks.
#[derive(Debug, Clone)]
pub struct NewDocument<'a> {
    pub kb: KbId,
    pub source: &'a str,
    pub title: &'a str,
    pub format: &'a str,
    pub content_hash: &'a str,
    pub size: u64,
    pub pages: u32,
    pub warnings: &'a [String],
    pub masked: u64,
    pub reading: &'a PageReading,
    pub chunks: &'a [zhiku_ingest::Chunk],
}

/// A chunk with its document's display fields, as retrieval returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkRecord {
    pub id: ChunkId,
    pub kb: KbId,
    pub document_id: DocId,
    pub document: String,
    pub title: String,
    /// The document's format (`pdf`, `pptx`, `sheet`, …), for its citation label.
    pub format: String,
    pub page: u32,
    pub heading_path: Vec<String>,
    pub char_start: u32,
    pub char_end: u32,
    pub text: String,
    /// Who may read it now (the document's readers in SQLite, the truth).
    pub readers: Vec<String>,
}

/// Counters of one ingestion job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JobCounts {
    pub added: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub removed: u64,
    pub failed: u64,
    pub chunks: u64,
}

/// What an earlier, interrupted run left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unfinished {
    /// Documents written but never made ready: purge from the derived indexes, then delete.
    pub indexing: Vec<DocId>,
    /// Documents deleted from SQLite whose vectors/keywords may still exist.
    pub pending_deletes: Vec<DocId>,
}

/// The metadata store: one writer connection, and read-only connections for reads.
///
/// SQLite in WAL mode lets readers run beside a writer, each on its own snapshot of the last
/// commit, so a question's lookups (session, user, grants, the chunks of its hits) never
/// queue behind an ingestion batch's write transaction. Writes stay on one connection behind
/// a mutex: they are serialised anyway by SQLite, and a closure given to `with` keeps running
/// alone, as the rules that check then write (last admin, taken WeCom userids) expect.
/// Reader connections are opened on demand and kept for reuse (at most [`IDLE_READERS`]);
/// no pool crate: a read-only SQLite connection needs no health checks or timeouts, which
/// is what r2d2 and deadpool add, with a thread or an async runtime of their own.
pub struct MetaStore {
    conn: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
}

/// Idle reader connections kept for reuse; more may be open at a busy moment.
const IDLE_READERS: usize = 8;

/// A reader connection, back among the idle ones when dropped.
struct ReadConn<'a> {
    store: &'a MetaStore,
    conn: Option<Connection>,
}

impl std::ops::Deref for ReadConn<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("a reader holds its connection until dropped")
    }
}

impl Drop for ReadConn<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut idle = self.store.readers.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Valid knowledge base names: short, no spaces or path characters.
pub fn valid_kb_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=64).contains(&n)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name != "."
        && name != ".."
}

impl MetaStore {
    /// Open (or create) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let err = |source| MetaError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        // Per connection, and a no-op inside a transaction: set before the migrations.
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        migrate::migrate(&mut conn).map_err(|e| match e {
            migrate::MigrateError::Sqlite(source) => err(source),
            e => MetaError::Schema {
                path: path.to_path_buf(),
                source: e,
            },
        })?;
        Ok(Self {
            conn: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
            path: path.to_path_buf(),
        })
    }

    /// The writer connection.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A read-only connection: for methods that only read.
    fn reader(&self) -> Result<ReadConn<'_>> {
        let idle = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| self.err(e))?;
                c.busy_timeout(std::time::Duration::from_secs(10))
                    .map_err(|e| self.err(e))?;
                c
            }
        };
        Ok(ReadConn {
            store: self,
            conn: Some(conn),
        })
    }

    /// Run a read-only `f` on a reader connection (see [`MetaStore`]).
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.reader()?;
        f(&conn).map_err(|e| self.err(e))
    }

    /// Run `f` on the connection, mapping SQLite errors to [`MetaError::Sqlite`].
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        f(&self.conn()).map_err(|e| self.err(e))
    }

    fn err(&self, source: rusqlite::Error) -> MetaError {
        MetaError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    // ---- settings ----

    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        self.reader()?
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO settings(key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    // ---- knowledge bases ----

    pub fn create_kb(&self, name: &str) -> Result<KbId> {
        if !valid_kb_name(name) {
            return Err(MetaError::BadKbName(name.into()));
        }
        let conn = self.conn();
        match conn.execute(
            "INSERT INTO knowledge_bases(name, created_at) VALUES (?1, ?2)",
            params![name, now()],
        ) {
            Ok(_) => Ok(conn.last_insert_rowid()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(MetaError::KbExists(name.into()))
            }
            Err(e) => Err(self.err(e)),
        }
    }

    pub fn kb_id(&self, name: &str) -> Result<Option<KbId>> {
        self.reader()?
            .query_row(
                "SELECT id FROM knowledge_bases WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The id of `name`, or a clear error when it does not exist.
    pub fn require_kb(&self, name: &str) -> Result<KbId> {
        self.kb_id(name)?
            .ok_or_else(|| MetaError::NoSuchKb(name.into()))
    }

    /// The id of `name`, creating it when missing.
    pub fn ensure_kb(&self, name: &str) -> Result<KbId> {
        match self.kb_id(name)? {
            Some(id) => Ok(id),
            None => self.create_kb(name),
        }
    }

    pub fn list_kbs(&self) -> Result<Vec<KnowledgeBase>> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare(
                "SELECT k.id, k.name,
                   (SELECT COUNT(*) FROM documents d WHERE d.kb_id = k.id AND d.status = 'ready'),
                   (SELECT COUNT(*) FROM chunks c JOIN documents d ON d.id = c.document_id
                     WHERE c.kb_id = k.id AND d.status = 'ready')
                 FROM knowledge_bases k ORDER BY k.name",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(KnowledgeBase {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    documents: r.get::<_, i64>(2)? as u64,
                    chunks: r.get::<_, i64>(3)? as u64,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Every knowledge base's id and name, by name: what a question's scope needs, without
    /// [`MetaStore::list_kbs`]'s document and chunk counts (a scan of the chunks table).
    pub fn kb_names(&self) -> Result<Vec<(KbId, String)>> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare("SELECT id, name FROM knowledge_bases ORDER BY name")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Rename a knowledge base (its id, documents and grants stay).
    pub fn rename_kb(&self, kb: KbId, name: &str) -> Result<()> {
        if !valid_kb_name(name) {
            return Err(MetaError::BadKbName(name.into()));
        }
        match self.conn().execute(
            "UPDATE knowledge_bases SET name = ?2 WHERE id = ?1",
            params![kb, name],
        ) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(MetaError::KbExists(name.into()))
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// Delete a knowledge base's rows; returns its documents' ids so the caller can purge
    /// them from the derived indexes (they are queued in `pending_deletes` meanwhile).
    pub fn delete_kb(&self, kb: KbId) -> Result<Vec<DocId>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let docs: Vec<DocId> = {
            let mut stmt = tx
                .prepare("SELECT id FROM documents WHERE kb_id = ?1")
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([kb], |r| r.get(0))
                .map_err(|e| self.err(e))?;
            rows.collect::<std::result::Result<_, _>>()
                .map_err(|e| self.err(e))?
        };
        for d in &docs {
            tx.execute(
                "INSERT OR IGNORE INTO pending_deletes(document_id) VALUES (?1)",
                [d],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.execute("DELETE FROM knowledge_bases WHERE id = ?1", [kb])
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(docs)
    }

    // ---- documents ----

    fn doc_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DocumentRecord> {
        let warnings: String = r.get(9)?;
        Ok(DocumentRecord {
            id: r.get(0)?,
            kb: r.get(1)?,
            source: r.get(2)?,
            title: r.get(3)?,
            format: r.get(4)?,
            content_hash: r.get(5)?,
            size: r.get::<_, i64>(6)? as u64,
            pages: r.get::<_, i64>(7)? as u32,
            ready: r.get::<_, String>(8)? == "ready",
            warnings: serde_json::from_str(&warnings).unwrap_or_default(),
            masked: r.get::<_, i64>(10)? as u64,
            reading: reading_from(
                r.get(11)?,
                &r.get::<_, String>(12)?,
                &r.get::<_, String>(13)?,
            ),
        })
    }

    const DOC_COLS: &'static str = "id, kb_id, source, title, format, content_hash, size, pages, \
         status, warnings, masked, text_pages, ocr_pages, failed_pages";

    /// The ready document of `kb` with this source, if any.
    pub fn document_by_source(&self, kb: KbId, source: &str) -> Result<Option<DocumentRecord>> {
        let sql = format!(
            "SELECT {} FROM documents WHERE kb_id = ?1 AND source = ?2 AND status = 'ready'",
            Self::DOC_COLS
        );
        self.reader()?
            .query_row(&sql, params![kb, source], Self::doc_from_row)
            .optional()
            .map_err(|e| self.err(e))
    }

    /// A ready document of `kb` with this content hash under another source, if any.
    pub fn document_by_hash(&self, kb: KbId, hash: &str) -> Result<Option<DocumentRecord>> {
        let sql = format!(
            "SELECT {} FROM documents WHERE kb_id = ?1 AND content_hash = ?2 AND status = 'ready' LIMIT 1",
            Self::DOC_COLS
        );
        self.reader()?
            .query_row(&sql, params![kb, hash], Self::doc_from_row)
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Ready documents of a knowledge base, by source.
    pub fn documents(&self, kb: KbId) -> Result<Vec<DocumentRecord>> {
        let sql = format!(
            "SELECT {} FROM documents WHERE kb_id = ?1 AND status = 'ready' ORDER BY source",
            Self::DOC_COLS
        );
        let conn = self.reader()?;
        let mut stmt = conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([kb], Self::doc_from_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Write a document in status `indexing` with its chunks, in one transaction. Returns the
    /// document id and the chunk ids in order.
    pub fn insert_document(&self, doc: &NewDocument<'_>) -> Result<(DocId, Vec<ChunkId>)> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        // A new document inherits the nearest rule (its own, when a replaced version had
        // one, else the deepest folder's).
        let readers = rules::readers_for(&tx, doc.kb, doc.source).map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO documents(kb_id, source, title, format, content_hash, size, pages,
                                   status, warnings, masked, created_at, text_pages,
                                   ocr_pages, failed_pages, readers)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'indexing', ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                doc.kb,
                doc.source,
                doc.title,
                doc.format,
                doc.content_hash,
                doc.size as i64,
                doc.pages as i64,
                serde_json::to_string(doc.warnings).unwrap_or_else(|_| "[]".into()),
                doc.masked as i64,
                now(),
                doc.reading.text_pages as i64,
                serde_json::to_string(&doc.reading.ocr_pages).unwrap_or_else(|_| "[]".into()),
                serde_json::to_string(&doc.reading.failed_pages).unwrap_or_else(|_| "[]".into()),
                serde_json::to_string(&readers).unwrap_or_else(|_| "[]".into()),
            ],
        )
        .map_err(|e| self.err(e))?;
        let doc_id = tx.last_insert_rowid();
        let mut ids = Vec::with_capacity(doc.chunks.len());
        {
            let mut stmt = tx
                .prepare(
                    "INSERT INTO chunks(document_id, kb_id, ordinal, page, heading_path,
                                        char_start, char_end, text)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(|e| self.err(e))?;
            for (i, c) in doc.chunks.iter().enumerate() {
                stmt.execute(params![
                    doc_id,
                    doc.kb,
                    i as i64,
                    c.page as i64,
                    serde_json::to_string(&c.heading_path).unwrap_or_else(|_| "[]".into()),
                    c.char_start as i64,
                    c.char_end as i64,
                    c.text
                ])
                .map_err(|e| self.err(e))?;
                ids.push(tx.last_insert_rowid() as ChunkId);
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok((doc_id, ids))
    }

    /// Make documents ready; each may replace an older document, which is deleted here and
    /// queued in `pending_deletes` for the derived indexes. One transaction. Returns the
    /// documents that were no longer there (their knowledge base was deleted while they
    /// were being indexed): the caller removes what it wrote for them from the indexes.
    pub fn finish_documents(&self, done: &[(DocId, Option<DocId>)]) -> Result<Vec<DocId>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let mut gone = Vec::new();
        for (doc, replaces) in done {
            let n = tx
                .execute("UPDATE documents SET status = 'ready' WHERE id = ?1", [doc])
                .map_err(|e| self.err(e))?;
            if n == 0 {
                gone.push(*doc);
                continue;
            }
            if let Some(old) = replaces {
                tx.execute(
                    "INSERT OR IGNORE INTO pending_deletes(document_id) VALUES (?1)",
                    [old],
                )
                .map_err(|e| self.err(e))?;
                tx.execute("DELETE FROM documents WHERE id = ?1", [old])
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(gone)
    }

    /// Delete documents (e.g. files removed under `--sync`), queueing them in
    /// `pending_deletes` in the same transaction.
    pub fn delete_documents(&self, docs: &[DocId]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        for d in docs {
            tx.execute(
                "INSERT OR IGNORE INTO pending_deletes(document_id) VALUES (?1)",
                [d],
            )
            .map_err(|e| self.err(e))?;
            tx.execute("DELETE FROM documents WHERE id = ?1", [d])
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The derived indexes have forgotten these documents.
    pub fn clear_pending_deletes(&self, docs: &[DocId]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        for d in docs {
            tx.execute("DELETE FROM pending_deletes WHERE document_id = ?1", [d])
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// What an interrupted run left behind.
    pub fn unfinished(&self) -> Result<Unfinished> {
        let conn = self.conn();
        let ids = |sql: &str| -> Result<Vec<DocId>> {
            let mut stmt = conn.prepare(sql).map_err(|e| self.err(e))?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| self.err(e))?;
            rows.collect::<std::result::Result<_, _>>()
                .map_err(|e| self.err(e))
        };
        Ok(Unfinished {
            indexing: ids("SELECT id FROM documents WHERE status = 'indexing' ORDER BY id")?,
            pending_deletes: ids("SELECT document_id FROM pending_deletes ORDER BY document_id")?,
        })
    }

    /// Remove rows of documents that never became ready (after purging the derived indexes).
    pub fn drop_unfinished(&self, docs: &[DocId]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        for d in docs {
            tx.execute(
                "DELETE FROM documents WHERE id = ?1 AND status = 'indexing'",
                [d],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    // ---- chunks ----

    /// Chunks by id, only those of ready documents and not disabled, with edited text; the
    /// order of `ids` is kept and unknown ids are skipped (an orphan in a derived index never
    /// surfaces).
    pub fn chunks(&self, ids: &[ChunkId]) -> Result<Vec<ChunkRecord>> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT c.id, c.kb_id, c.document_id, d.source, d.title, c.page, c.heading_path,
                        c.char_start, c.char_end, COALESCE(o.text, c.text), d.format,
                        d.readers
                 FROM chunks c JOIN documents d ON d.id = c.document_id
                 {}
                 WHERE c.id = ?1 AND d.status = 'ready' AND COALESCE(o.enabled, 1) = 1",
                edits::OVERRIDE_JOIN
            ))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let row = stmt
                .query_row([*id as i64], |r| {
                    let hp: String = r.get(6)?;
                    Ok(ChunkRecord {
                        id: r.get::<_, i64>(0)? as ChunkId,
                        kb: r.get(1)?,
                        document_id: r.get(2)?,
                        document: r.get(3)?,
                        title: r.get(4)?,
                        page: r.get::<_, i64>(5)? as u32,
                        heading_path: serde_json::from_str(&hp).unwrap_or_default(),
                        char_start: r.get::<_, i64>(7)? as u32,
                        char_end: r.get::<_, i64>(8)? as u32,
                        text: r.get(9)?,
                        format: r.get(10)?,
                        readers: rules::parse_readers(&r.get::<_, String>(11)?),
                    })
                })
                .optional()
                .map_err(|e| self.err(e))?;
            out.extend(row);
        }
        Ok(out)
    }

    /// Every enabled chunk of one document (any status), in order: (id, text), the text as
    /// edited. (The indexer writes [`index_entries`](Self::index_entries), which add the
    /// chunks' keywords and questions.)
    pub fn document_chunks(&self, doc: DocId) -> Result<Vec<(ChunkId, String)>> {
        let sql = format!(
            "SELECT c.id, COALESCE(o.text, c.text)
             FROM chunks c JOIN documents d ON d.id = c.document_id
             {}
             WHERE c.document_id = ?1 AND COALESCE(o.enabled, 1) = 1 ORDER BY c.ordinal",
            edits::OVERRIDE_JOIN
        );
        let conn = self.reader()?;
        let mut stmt = conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([doc], |r| Ok((r.get::<_, i64>(0)? as ChunkId, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// All ready documents' ids and knowledge bases (for `zhiku reindex`).
    pub fn ready_documents(&self) -> Result<Vec<(DocId, KbId, String)>> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare("SELECT id, kb_id, title FROM documents WHERE status = 'ready' ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Number of chunks of ready documents.
    pub fn chunk_count(&self) -> Result<u64> {
        self.reader()?
            .query_row(
                "SELECT COUNT(*) FROM chunks c JOIN documents d ON d.id = c.document_id
                 WHERE d.status = 'ready'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    // ---- jobs ----

    pub fn start_job(&self, kb: KbId, source: &str) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO jobs(kb_id, source, status, started_at) VALUES (?1, ?2, 'running', ?3)",
            params![kb, source, now()],
        )
        .map_err(|e| self.err(e))?;
        Ok(conn.last_insert_rowid())
    }

    pub fn record_file(
        &self,
        job: i64,
        source: &str,
        outcome: &str,
        message: Option<&str>,
    ) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO job_files(job_id, source, outcome, message) VALUES (?1, ?2, ?3, ?4)",
                params![job, source, outcome, message],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    pub fn finish_job(&self, job: i64, counts: &JobCounts, error: Option<&str>) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE jobs SET status = ?2, finished_at = ?3, added = ?4, changed = ?5,
                        unchanged = ?6, removed = ?7, failed = ?8, chunks = ?9, message = ?10
                 WHERE id = ?1",
                params![
                    job,
                    if error.is_some() { "failed" } else { "done" },
                    now(),
                    counts.added as i64,
                    counts.changed as i64,
                    counts.unchanged as i64,
                    counts.removed as i64,
                    counts.failed as i64,
                    counts.chunks as i64,
                    error
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Jobs still marked running (a crashed run): mark them failed with a note.
    pub fn fail_running_jobs(&self, note: &str) -> Result<usize> {
        self.conn()
            .execute(
                "UPDATE jobs SET status = 'failed', finished_at = ?1, message = ?2
                 WHERE status = 'running'",
                params![now(), note],
            )
            .map_err(|e| self.err(e))
    }

    /// (status, message) of a job.
    pub fn job_status(&self, job: i64) -> Result<Option<(String, Option<String>)>> {
        self.reader()?
            .query_row(
                "SELECT status, message FROM jobs WHERE id = ?1",
                [job],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(text: &str, page: u32) -> zhiku_ingest::Chunk {
        zhiku_ingest::Chunk {
            text: text.into(),
            page,
            heading_path: vec!["总则".into()],
            char_start: 0,
            char_end: text.chars().count(),
        }
    }

    fn store() -> (tempfile::TempDir, MetaStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = MetaStore::open(&dir.path().join("zhiku.sqlite")).unwrap();
        (dir, s)
    }

    fn new_doc<'a>(
        kb: KbId,
        source: &'a str,
        chunks: &'a [zhiku_ingest::Chunk],
    ) -> NewDocument<'a> {
        NewDocument {
            kb,
            source,
            title: "标题",
            format: "txt",
            content_hash: "h1",
            size: 10,
            pages: 1,
            warnings: &[],
            masked: 0,
            reading: &ONE_TEXT_PAGE,
            chunks,
        }
    }

    static ONE_TEXT_PAGE: PageReading = PageReading {
        text_pages: 1,
        ocr_pages: Vec::new(),
        failed_pages: Vec::new(),
    };

    /// A database made before the page-reading columns gains them when opened, its
    /// documents reading as "not recorded"; new documents record theirs.
    #[test]
    fn old_documents_table_gains_page_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zhiku.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            let old = SCHEMA.replace(
                ",\n    text_pages    INTEGER,\n    ocr_pages     TEXT NOT NULL DEFAULT '[]',\n    failed_pages  TEXT NOT NULL DEFAULT '[]'",
                "",
            );
            assert_ne!(
                old, SCHEMA,
                "the old schema is the current one minus the columns"
            );
            c.execute_batch(&old).unwrap();
            c.execute(
                "INSERT INTO knowledge_bases(id, name, created_at) VALUES (1, 'kb', 0)",
                [],
            )
            .unwrap();
            c.execute(
                "INSERT INTO documents(kb_id, source, title, format, content_hash, size, pages,
                                       status, created_at)
                 VALUES (1, '/old.pdf', 'old', 'pdf', 'h0', 1, 3, 'ready', 0)",
                [],
            )
            .unwrap();
        }
        let s = MetaStore::open(&path).unwrap();
        let old = s.document_by_source(1, "/old.pdf").unwrap().unwrap();
        assert_eq!(old.reading, None);
        let chunks = [chunk("扫描页", 1)];
        let reading = PageReading {
            text_pages: 1,
            ocr_pages: vec![2],
            failed_pages: vec![3],
        };
        let mut doc = new_doc(1, "/new.pdf", &chunks);
        doc.reading = &reading;
        let (id, _) = s.insert_document(&doc).unwrap();
        s.finish_documents(&[(id, None)]).unwrap();
        let new = s.document(id).unwrap().unwrap();
        assert_eq!(new.reading.as_ref(), Some(&reading));
        assert_eq!(
            reading.describe(),
            "1 text, 1 OCR (page 2), 1 failed (page 3)"
        );
        drop(s);
        // Opening again changes nothing.
        let s = MetaStore::open(&path).unwrap();
        assert_eq!(s.document(id).unwrap().unwrap().reading, Some(reading));
    }

    /// Reads do not wait for the writer: with a write transaction open (an ingestion batch,
    /// say), a lookup on another thread returns at once, from the last commit.
    #[test]
    fn reads_run_beside_an_open_write() {
        let (_d, s) = store();
        s.create_kb("handbook").unwrap();
        let s = std::sync::Arc::new(s);
        let mut writer = s.conn();
        let tx = writer.transaction().unwrap();
        tx.execute(
            "INSERT INTO knowledge_bases(name, created_at) VALUES ('uncommitted', 0)",
            [],
        )
        .unwrap();
        let (send, recv) = std::sync::mpsc::channel();
        let reader = std::sync::Arc::clone(&s);
        std::thread::spawn(move || {
            let _ = send.send(
                reader
                    .kb_names()
                    .map(|v| v.into_iter().map(|(_, n)| n).collect::<Vec<_>>()),
            );
        });
        let names = recv
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the read did not wait for the write transaction")
            .unwrap();
        assert_eq!(names, vec!["handbook".to_string()]);
        tx.commit().unwrap();
        drop(writer);
        assert_eq!(
            s.kb_names().unwrap().len(),
            2,
            "and sees the commit afterwards"
        );
    }

    #[test]
    fn kb_lifecycle_and_names() {
        let (_d, s) = store();
        let id = s.create_kb("人事制度").unwrap();
        assert_eq!(s.require_kb("人事制度").unwrap(), id);
        assert!(matches!(
            s.create_kb("人事制度"),
            Err(MetaError::KbExists(_))
        ));
        assert!(matches!(s.create_kb("a b"), Err(MetaError::BadKbName(_))));
        assert!(matches!(s.create_kb("../x"), Err(MetaError::BadKbName(_))));
        let e = s.require_kb("nope").unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("kb create"), "{e}");
        assert_eq!(s.ensure_kb("人事制度").unwrap(), id);
        assert_eq!(s.list_kbs().unwrap().len(), 1);
    }

    #[test]
    fn indexing_documents_are_invisible_until_ready() {
        let (_d, s) = store();
        let kb = s.create_kb("kb").unwrap();
        let chunks = [chunk("第一段", 1), chunk("第二段", 2)];
        let (doc, ids) = s.insert_document(&new_doc(kb, "/a.txt", &chunks)).unwrap();
        assert_eq!(ids.len(), 2);
        assert!(s.chunks(&ids).unwrap().is_empty(), "not ready yet");
        assert!(s.document_by_source(kb, "/a.txt").unwrap().is_none());
        assert_eq!(s.unfinished().unwrap().indexing, vec![doc]);
        s.finish_documents(&[(doc, None)]).unwrap();
        let got = s.chunks(&[ids[1], 999, ids[0]]).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].text, "第二段");
        assert_eq!(got[0].page, 2);
        assert_eq!(got[0].heading_path, vec!["总则".to_string()]);
        assert_eq!(got[0].document, "/a.txt");
        assert!(s.unfinished().unwrap().indexing.is_empty());
        assert_eq!(s.chunk_count().unwrap(), 2);
    }

    #[test]
    fn replacement_queues_the_old_document_for_the_indexes() {
        let (_d, s) = store();
        let kb = s.create_kb("kb").unwrap();
        let c1 = [chunk("旧", 1)];
        let (old, _) = s.insert_document(&new_doc(kb, "/a.txt", &c1)).unwrap();
        s.finish_documents(&[(old, None)]).unwrap();
        let c2 = [chunk("新", 1)];
        let (new, ids) = s.insert_document(&new_doc(kb, "/a.txt", &c2)).unwrap();
        // Until the new one is ready, the old one is what readers see.
        assert_eq!(s.document_by_source(kb, "/a.txt").unwrap().unwrap().id, old);
        s.finish_documents(&[(new, Some(old))]).unwrap();
        assert_eq!(s.document_by_source(kb, "/a.txt").unwrap().unwrap().id, new);
        assert_eq!(s.unfinished().unwrap().pending_deletes, vec![old]);
        s.clear_pending_deletes(&[old]).unwrap();
        assert!(s.unfinished().unwrap().pending_deletes.is_empty());
        assert_eq!(s.chunks(&ids).unwrap()[0].text, "新");
        assert_eq!(s.documents(kb).unwrap().len(), 1);
    }

    #[test]
    fn delete_kb_queues_its_documents() {
        let (_d, s) = store();
        let kb = s.create_kb("kb").unwrap();
        let c = [chunk("x", 1)];
        let (doc, _) = s.insert_document(&new_doc(kb, "/a.txt", &c)).unwrap();
        s.finish_documents(&[(doc, None)]).unwrap();
        assert_eq!(s.delete_kb(kb).unwrap(), vec![doc]);
        assert!(s.kb_id("kb").unwrap().is_none());
        assert_eq!(s.unfinished().unwrap().pending_deletes, vec![doc]);
        assert_eq!(s.chunk_count().unwrap(), 0);
    }

    #[test]
    fn jobs_and_settings() {
        let (_d, s) = store();
        let kb = s.create_kb("kb").unwrap();
        let job = s.start_job(kb, "/docs").unwrap();
        s.record_file(job, "/docs/a.pdf", "failed", Some("corrupt PDF"))
            .unwrap();
        assert_eq!(s.fail_running_jobs("interrupted").unwrap(), 1);
        assert_eq!(s.job_status(job).unwrap().unwrap().0, "failed");
        let job2 = s.start_job(kb, "/docs").unwrap();
        s.finish_job(
            job2,
            &JobCounts {
                added: 3,
                ..Default::default()
            },
            None,
        )
        .unwrap();
        assert_eq!(s.job_status(job2).unwrap().unwrap().0, "done");
        assert_eq!(s.setting("embed.model").unwrap(), None);
        s.set_setting("embed.model", "e5").unwrap();
        s.set_setting("embed.model", "e5b").unwrap();
        assert_eq!(s.setting("embed.model").unwrap().as_deref(), Some("e5b"));
    }
}
