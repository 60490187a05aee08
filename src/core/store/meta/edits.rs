//! Chunk edits: an admin's fixes to a chunk's text, disabling or enabling it, and keywords
//! or questions that should find it; versioned, and kept across re-ingestion.
//!
//! An edit is keyed by what it was made to — knowledge base, document source, the file's
//! content hash, the chunk's ordinal — and the chunk's text as ingested (`original`), not by
//! chunk id: a re-ingest of the unchanged file (same hash, same chunking) gives new chunk
//! rows that the same edits apply to. Everything that reads chunks sees the edited state:
//! [`MetaStore::chunks`] (retrieval, citations; disabled chunks are never returned) and
//! [`MetaStore::index_entries`] (what the indexer embeds and segments: the text plus the
//! keywords and questions). When the file changes, the edits no longer match; they stay as
//! history, and the document is flagged for review ([`MetaStore::flag_stale_edits`]).
//!
//! Crash safety: the edit, its history row and a `pending_chunk_updates` row are one
//! transaction; the derived indexes are then updated from SQLite and the pending row
//! cleared. A crash in between leaves the pending row, and the next recovery
//! (`index::recover`) redoes the update.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{ChunkId, DocId, KbId, MetaError, MetaStore, Result, now};

/// Part of schema step 1 (`migrate.rs`): frozen; a schema change is a new step there.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS chunk_overrides (
    kb_id         INTEGER NOT NULL REFERENCES knowledge_bases(id) ON DELETE CASCADE,
    source        TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    ordinal       INTEGER NOT NULL,
    original      TEXT NOT NULL,
    text          TEXT,
    enabled       INTEGER NOT NULL DEFAULT 1,
    keywords      TEXT NOT NULL DEFAULT '[]',
    questions     TEXT NOT NULL DEFAULT '[]',
    updated_by    TEXT NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (kb_id, source, content_hash, ordinal)
);
CREATE TABLE IF NOT EXISTS chunk_edits (
    id            INTEGER PRIMARY KEY,
    kb_id         INTEGER NOT NULL REFERENCES knowledge_bases(id) ON DELETE CASCADE,
    source        TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    ordinal       INTEGER NOT NULL,
    chunk_id      INTEGER NOT NULL,
    actor         TEXT NOT NULL,
    at            INTEGER NOT NULL,
    before        TEXT NOT NULL,
    after         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunk_edits_source ON chunk_edits(kb_id, source);
CREATE TABLE IF NOT EXISTS pending_chunk_updates (
    chunk_id      INTEGER PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS edit_reviews (
    kb_id         INTEGER NOT NULL REFERENCES knowledge_bases(id) ON DELETE CASCADE,
    source        TEXT NOT NULL,
    stale_edits   INTEGER NOT NULL,
    flagged_at    INTEGER NOT NULL,
    PRIMARY KEY (kb_id, source)
);
"#;

/// Longest chunk text an edit may set, in characters.
pub const MAX_EDIT_CHARS: usize = 20_000;
/// Most keywords plus questions on one chunk.
pub const MAX_EXTRA_TERMS: usize = 50;
/// Longest keyword or question, in characters.
pub const MAX_TERM_CHARS: usize = 200;

/// The editable state of a chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChunkState {
    pub text: String,
    pub enabled: bool,
    pub keywords: Vec<String>,
    pub questions: Vec<String>,
}

/// A change to a chunk: the fields given are set, the others kept.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct ChunkChange {
    pub text: Option<String>,
    pub enabled: Option<bool>,
    pub keywords: Option<Vec<String>>,
    pub questions: Option<Vec<String>>,
}

/// One chunk of a document as the editor shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EditableChunk {
    pub id: ChunkId,
    pub ordinal: u32,
    pub page: u32,
    pub heading_path: Vec<String>,
    /// The text as ingested.
    pub original: String,
    /// The current state (the original when never edited).
    #[serde(flatten)]
    pub state: ChunkState,
    /// Whether an edit applies to this chunk.
    pub edited: bool,
}

/// One edit in the history.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ChunkEdit {
    pub id: i64,
    /// The chunk's id when the edit was made (a re-ingest gives chunks new ids).
    pub chunk_id: ChunkId,
    pub ordinal: u32,
    /// The file version (content hash) the edit was made to.
    pub content_hash: String,
    /// Whether the edit applies to the current version of the document.
    pub current: bool,
    pub actor: String,
    /// Unix seconds.
    pub at: i64,
    pub before: ChunkState,
    pub after: ChunkState,
}

/// A document whose file changed after its chunks were edited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EditReview {
    /// Edited chunks of an earlier version that no longer apply.
    pub stale_edits: u64,
    /// Unix seconds.
    pub flagged_at: i64,
}

/// What the indexer writes for one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub chunk: ChunkId,
    pub kb: KbId,
    pub doc: DocId,
    pub title: String,
    /// The text with the keywords and questions, one a line.
    pub text: String,
    /// The document's readers (who may read the chunk).
    pub readers: Vec<String>,
}

/// The override that applies to chunk `c` of document `d` (SQL fragment).
pub(super) const OVERRIDE_JOIN: &str = "LEFT JOIN chunk_overrides o
       ON o.kb_id = d.kb_id AND o.source = d.source AND o.content_hash = d.content_hash
      AND o.ordinal = c.ordinal AND o.original = c.text";

fn clean_terms(kind: &str, list: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for t in list {
        let t = t.trim();
        if t.is_empty() || out.iter().any(|x| x == t) {
            continue;
        }
        if t.chars().count() > MAX_TERM_CHARS {
            return Err(MetaError::BadEdit(format!(
                "a {kind} is longer than {MAX_TERM_CHARS} characters: `{}…`",
                t.chars().take(20).collect::<String>()
            )));
        }
        out.push(t.to_string());
    }
    Ok(out)
}

impl ChunkState {
    /// The text the indexer embeds and segments.
    pub fn index_text(&self) -> String {
        let mut s = self.text.clone();
        for t in self.keywords.iter().chain(&self.questions) {
            s.push('\n');
            s.push_str(t);
        }
        s
    }

    /// This state with `change` applied, checked.
    pub fn apply(&self, change: &ChunkChange) -> Result<ChunkState> {
        let mut next = self.clone();
        if let Some(t) = &change.text {
            let t = t.trim();
            if t.is_empty() {
                return Err(MetaError::BadEdit(
                    "the text is empty; disable the chunk instead of emptying it".into(),
                ));
            }
            if t.chars().count() > MAX_EDIT_CHARS {
                return Err(MetaError::BadEdit(format!(
                    "the text is longer than {MAX_EDIT_CHARS} characters"
                )));
            }
            next.text = t.to_string();
        }
        if let Some(e) = change.enabled {
            next.enabled = e;
        }
        if let Some(k) = &change.keywords {
            next.keywords = clean_terms("keyword", k)?;
        }
        if let Some(q) = &change.questions {
            next.questions = clean_terms("question", q)?;
        }
        if next.keywords.len() + next.questions.len() > MAX_EXTRA_TERMS {
            return Err(MetaError::BadEdit(format!(
                "at most {MAX_EXTRA_TERMS} keywords and questions on one chunk"
            )));
        }
        Ok(next)
    }
}

fn json_list(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// The state of a chunk row with its override (columns: c.text, o.text, o.enabled,
/// o.keywords, o.questions from `offset`).
fn state_from_row(r: &rusqlite::Row<'_>, offset: usize) -> rusqlite::Result<(ChunkState, bool)> {
    let original: String = r.get(offset)?;
    let text: Option<String> = r.get(offset + 1)?;
    let enabled: Option<i64> = r.get(offset + 2)?;
    let keywords: Option<String> = r.get(offset + 3)?;
    let questions: Option<String> = r.get(offset + 4)?;
    let edited = enabled.is_some();
    Ok((
        ChunkState {
            text: text.unwrap_or(original),
            enabled: enabled.unwrap_or(1) != 0,
            keywords: keywords.as_deref().map(json_list).unwrap_or_default(),
            questions: questions.as_deref().map(json_list).unwrap_or_default(),
        },
        edited,
    ))
}

impl MetaStore {
    /// Every chunk of a ready document, in order, with its current state.
    pub fn editable_chunks(&self, doc: DocId) -> Result<Vec<EditableChunk>> {
        let sql = format!(
            "SELECT c.id, c.ordinal, c.page, c.heading_path,
                    c.text, o.text, o.enabled, o.keywords, o.questions
             FROM chunks c JOIN documents d ON d.id = c.document_id
             {OVERRIDE_JOIN}
             WHERE c.document_id = ?1 AND d.status = 'ready' ORDER BY c.ordinal"
        );
        self.read(|c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map([doc], |r| {
                let hp: String = r.get(3)?;
                let (state, edited) = state_from_row(r, 4)?;
                Ok(EditableChunk {
                    id: r.get::<_, i64>(0)? as ChunkId,
                    ordinal: r.get::<_, i64>(1)? as u32,
                    page: r.get::<_, i64>(2)? as u32,
                    heading_path: serde_json::from_str(&hp).unwrap_or_default(),
                    original: r.get(4)?,
                    state,
                    edited,
                })
            })?;
            rows.collect()
        })
    }

    /// Apply `change` to chunk `chunk` (of a ready document) by `actor`: the new state, the
    /// history row and the pending index update, in one transaction. Returns the state
    /// before and after; an edit that changes nothing is refused.
    pub fn edit_chunk(
        &self,
        chunk: ChunkId,
        change: &ChunkChange,
        actor: &str,
    ) -> Result<(ChunkState, ChunkState)> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let sql = format!(
            "SELECT d.kb_id, d.source, d.content_hash, c.ordinal,
                    c.text, o.text, o.enabled, o.keywords, o.questions
             FROM chunks c JOIN documents d ON d.id = c.document_id
             {OVERRIDE_JOIN}
             WHERE c.id = ?1 AND d.status = 'ready'"
        );
        let found = tx
            .query_row(&sql, [chunk as i64], |r| {
                let (state, _) = state_from_row(r, 4)?;
                Ok((
                    r.get::<_, KbId>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    state,
                ))
            })
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((kb, source, hash, ordinal, original, before)) = found else {
            return Err(MetaError::NoSuchChunk(chunk));
        };
        let after = before.apply(change)?;
        if after == before {
            return Err(MetaError::BadEdit("the edit changes nothing".into()));
        }
        let text = (after.text != original).then_some(after.text.as_str());
        tx.execute(
            "INSERT INTO chunk_overrides(kb_id, source, content_hash, ordinal, original, text,
                                         enabled, keywords, questions, updated_by, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT(kb_id, source, content_hash, ordinal) DO UPDATE SET
                original = excluded.original, text = excluded.text,
                enabled = excluded.enabled, keywords = excluded.keywords,
                questions = excluded.questions, updated_by = excluded.updated_by,
                updated_at = excluded.updated_at",
            params![
                kb,
                source,
                hash,
                ordinal,
                original,
                text,
                after.enabled as i64,
                to_json(&after.keywords),
                to_json(&after.questions),
                actor,
                now()
            ],
        )
        .map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO chunk_edits(kb_id, source, content_hash, ordinal, chunk_id, actor, at,
                                     before, after)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                kb,
                source,
                hash,
                ordinal,
                chunk as i64,
                actor,
                now(),
                to_json(&before),
                to_json(&after)
            ],
        )
        .map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT OR IGNORE INTO pending_chunk_updates(chunk_id) VALUES (?1)",
            [chunk as i64],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok((before, after))
    }

    /// The edits of a document's source (every version), newest first.
    pub fn chunk_edits(&self, doc: DocId) -> Result<Vec<ChunkEdit>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT e.id, e.chunk_id, e.ordinal, e.content_hash, e.content_hash = d.content_hash,
                        e.actor, e.at, e.before, e.after
                 FROM documents d JOIN chunk_edits e ON e.kb_id = d.kb_id AND e.source = d.source
                 WHERE d.id = ?1 ORDER BY e.id DESC",
            )?;
            let rows = stmt.query_map([doc], |r| {
                let before: String = r.get(7)?;
                let after: String = r.get(8)?;
                let parse = |s: &str| {
                    serde_json::from_str::<ChunkState>(s).map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            7,
                            rusqlite::types::Type::Text,
                            Box::new(e),
                        )
                    })
                };
                Ok(ChunkEdit {
                    id: r.get(0)?,
                    chunk_id: r.get::<_, i64>(1)? as ChunkId,
                    ordinal: r.get::<_, i64>(2)? as u32,
                    content_hash: r.get(3)?,
                    current: r.get(4)?,
                    actor: r.get(5)?,
                    at: r.get(6)?,
                    before: parse(&before)?,
                    after: parse(&after)?,
                })
            })?;
            rows.collect()
        })
    }

    /// What the indexer writes for the chunks of `doc` (any status): enabled chunks only,
    /// in order, with their edited text, keywords and questions.
    pub fn index_entries(&self, doc: DocId) -> Result<Vec<IndexEntry>> {
        self.entries("c.document_id = ?1", doc)
    }

    /// [`index_entries`](Self::index_entries) of one chunk: empty when it is disabled or gone.
    pub fn index_entry(&self, chunk: ChunkId) -> Result<Vec<IndexEntry>> {
        self.entries("c.id = ?1", chunk as i64)
    }

    fn entries(&self, filter: &str, id: i64) -> Result<Vec<IndexEntry>> {
        let sql = format!(
            "SELECT c.id, c.kb_id, c.document_id, d.title,
                    c.text, o.text, o.enabled, o.keywords, o.questions, d.readers
             FROM chunks c JOIN documents d ON d.id = c.document_id
             {OVERRIDE_JOIN}
             WHERE {filter} AND COALESCE(o.enabled, 1) = 1 ORDER BY c.ordinal"
        );
        self.read(|c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map([id], |r| {
                let (state, _) = state_from_row(r, 4)?;
                Ok(IndexEntry {
                    chunk: r.get::<_, i64>(0)? as ChunkId,
                    kb: r.get(1)?,
                    doc: r.get(2)?,
                    title: r.get(3)?,
                    text: state.index_text(),
                    readers: super::rules::parse_readers(&r.get::<_, String>(9)?),
                })
            })?;
            rows.collect()
        })
    }

    /// The knowledge base and document source of a chunk of a ready document.
    pub fn chunk_source(&self, chunk: ChunkId) -> Result<Option<(KbId, String)>> {
        self.read(|c| {
            c.query_row(
                "SELECT d.kb_id, d.source FROM chunks c JOIN documents d ON d.id = c.document_id
                 WHERE c.id = ?1 AND d.status = 'ready'",
                [chunk as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
    }

    /// Chunks whose index update has not been confirmed yet.
    pub fn pending_chunk_updates(&self) -> Result<Vec<ChunkId>> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT chunk_id FROM pending_chunk_updates ORDER BY chunk_id")?;
            let rows = stmt.query_map([], |r| Ok(r.get::<_, i64>(0)? as ChunkId))?;
            rows.collect()
        })
    }

    /// The derived indexes hold these chunks' current state.
    pub fn clear_pending_chunk_updates(&self, chunks: &[ChunkId]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        for c in chunks {
            tx.execute(
                "DELETE FROM pending_chunk_updates WHERE chunk_id = ?1",
                [*c as i64],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// After `doc` became the ready version of its source: edits of that source that do not
    /// apply to it (another file version, or chunking that no longer matches) flag it for
    /// review; with none, any earlier flag goes. Returns how many stale edited chunks there
    /// are (0: nothing flagged).
    pub fn flag_stale_edits(&self, doc: DocId) -> Result<u64> {
        self.with(|c| {
            let stale: i64 = c.query_row(
                "SELECT COUNT(*) FROM documents d JOIN chunk_overrides o
                   ON o.kb_id = d.kb_id AND o.source = d.source
                 WHERE d.id = ?1 AND NOT EXISTS (
                   SELECT 1 FROM chunks c WHERE c.document_id = d.id
                     AND o.content_hash = d.content_hash
                     AND c.ordinal = o.ordinal AND c.text = o.original)",
                [doc],
                |r| r.get(0),
            )?;
            if stale > 0 {
                c.execute(
                    "INSERT INTO edit_reviews(kb_id, source, stale_edits, flagged_at)
                     SELECT kb_id, source, ?2, ?3 FROM documents WHERE id = ?1
                     ON CONFLICT(kb_id, source) DO UPDATE SET
                        stale_edits = excluded.stale_edits, flagged_at = excluded.flagged_at",
                    params![doc, stale, now()],
                )?;
            } else {
                // Every edit applies again (the file went back to an edited version).
                c.execute(
                    "DELETE FROM edit_reviews WHERE (kb_id, source) IN (
                       SELECT kb_id, source FROM documents WHERE id = ?1)",
                    [doc],
                )?;
            }
            Ok(stale as u64)
        })
    }

    /// Whether `doc` is flagged for review of its edits.
    pub fn edit_review(&self, doc: DocId) -> Result<Option<EditReview>> {
        self.read(|c| {
            c.query_row(
                "SELECT r.stale_edits, r.flagged_at FROM documents d
                 JOIN edit_reviews r ON r.kb_id = d.kb_id AND r.source = d.source
                 WHERE d.id = ?1",
                [doc],
                |r| {
                    Ok(EditReview {
                        stale_edits: r.get::<_, i64>(0)? as u64,
                        flagged_at: r.get(1)?,
                    })
                },
            )
            .optional()
        })
    }

    /// The ready documents of `kb` flagged for review of their edits.
    pub fn documents_to_review(&self, kb: KbId) -> Result<Vec<DocId>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT d.id FROM documents d
                 JOIN edit_reviews r ON r.kb_id = d.kb_id AND r.source = d.source
                 WHERE d.kb_id = ?1 AND d.status = 'ready'",
            )?;
            let rows = stmt.query_map([kb], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// The admin has reviewed `doc`'s edits: the flag goes, and so do the edits that no
    /// longer apply (their history stays). Returns whether it was flagged.
    pub fn finish_review(&self, doc: DocId) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "DELETE FROM chunk_overrides WHERE rowid IN (
               SELECT o.rowid FROM documents d JOIN chunk_overrides o
                 ON o.kb_id = d.kb_id AND o.source = d.source
               WHERE d.id = ?1 AND NOT EXISTS (
                 SELECT 1 FROM chunks c WHERE c.document_id = d.id
                   AND o.content_hash = d.content_hash
                   AND c.ordinal = o.ordinal AND c.text = o.original))",
            [doc],
        )
        .map_err(|e| self.err(e))?;
        let n = tx
            .execute(
                "DELETE FROM edit_reviews WHERE (kb_id, source) IN (
                   SELECT kb_id, source FROM documents WHERE id = ?1)",
                [doc],
            )
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::meta::NewDocument;

    fn chunk(text: &str) -> zhiku_ingest::Chunk {
        zhiku_ingest::Chunk {
            text: text.into(),
            page: 1,
            heading_path: vec![],
            char_start: 0,
            char_end: text.chars().count(),
        }
    }

    /// A ready document of `kb` at `source` with content hash `hash`.
    fn doc(m: &MetaStore, kb: KbId, hash: &str, texts: &[&str]) -> (DocId, Vec<ChunkId>) {
        let chunks: Vec<_> = texts.iter().map(|t| chunk(t)).collect();
        let old = m.document_by_source(kb, "a.txt").unwrap().map(|d| d.id);
        let (id, ids) = m
            .insert_document(&NewDocument {
                kb,
                source: "a.txt",
                title: "A",
                format: "txt",
                content_hash: hash,
                size: 1,
                pages: 1,
                warnings: &[],
                masked: 0,
                reading: &crate::store::meta::PageReading {
                    text_pages: 1,
                    ..Default::default()
                },
                chunks: &chunks,
            })
            .unwrap();
        m.finish_documents(&[(id, old)]).unwrap();
        (id, ids)
    }

    #[test]
    fn edits_apply_to_the_same_file_version_and_flag_a_changed_one() {
        let dir = tempfile::tempdir().unwrap();
        let m = MetaStore::open(&dir.path().join("z.sqlite")).unwrap();
        let kb = m.create_kb("hr").unwrap();
        let (d1, ids) = doc(&m, kb, "h1", &["第一段", "第二段", "第三段"]);
        let fix = ChunkChange {
            text: Some("第一段（已更正）".into()),
            questions: Some(vec!["更正了什么？".into()]),
            ..Default::default()
        };
        let (before, after) = m.edit_chunk(ids[0], &fix, "root").unwrap();
        assert_eq!(before.text, "第一段");
        assert_eq!(after.text, "第一段（已更正）");
        let off = ChunkChange {
            enabled: Some(false),
            ..Default::default()
        };
        m.edit_chunk(ids[2], &off, "root").unwrap();
        assert_eq!(m.pending_chunk_updates().unwrap(), [ids[0], ids[2]]);
        // Readers see the edited text; the disabled chunk is gone for them and the indexer.
        let seen = m.chunks(&ids).unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].text, "第一段（已更正）");
        let entries = m.index_entries(d1).unwrap();
        let texts: Vec<&str> = entries.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["第一段（已更正）\n更正了什么？", "第二段"]);
        assert!(m.index_entry(ids[2]).unwrap().is_empty());
        assert_eq!(m.document_chunks(d1).unwrap().len(), 2);
        let editable = m.editable_chunks(d1).unwrap();
        assert_eq!(
            editable.iter().map(|c| c.edited).collect::<Vec<_>>(),
            [true, false, true]
        );
        assert_eq!(editable[0].original, "第一段");
        // History, newest first; an edit that changes nothing, or of an unknown chunk, is refused.
        let h = m.chunk_edits(d1).unwrap();
        assert_eq!(h.len(), 2);
        assert!(!h[0].after.enabled && h[0].before.enabled && h[0].current);
        assert!(matches!(
            m.edit_chunk(ids[2], &off, "root"),
            Err(MetaError::BadEdit(_))
        ));
        assert!(matches!(
            m.edit_chunk(999, &off, "root"),
            Err(MetaError::NoSuchChunk(999))
        ));

        // The same file again (new rows): the edits apply, nothing is flagged.
        let (d2, ids2) = doc(&m, kb, "h1", &["第一段", "第二段", "第三段"]);
        assert_eq!(m.flag_stale_edits(d2).unwrap(), 0);
        assert_eq!(m.chunks(&ids2).unwrap()[0].text, "第一段（已更正）");
        assert_eq!(m.chunks(&ids2).unwrap().len(), 2);
        assert!(m.edit_review(d2).unwrap().is_none());

        // A changed file: the edits no longer apply; the document is flagged.
        let (d3, ids3) = doc(&m, kb, "h2", &["第一段", "第二段", "第三段", "第四段"]);
        assert_eq!(m.flag_stale_edits(d3).unwrap(), 2);
        assert_eq!(m.chunks(&ids3).unwrap().len(), 4);
        assert_eq!(m.chunks(&ids3).unwrap()[0].text, "第一段");
        assert_eq!(m.edit_review(d3).unwrap().unwrap().stale_edits, 2);
        assert_eq!(m.documents_to_review(kb).unwrap(), [d3]);
        assert!(m.chunk_edits(d3).unwrap().iter().all(|e| !e.current));
        // Reviewed: the flag and the stale edits go, the history stays.
        assert!(m.finish_review(d3).unwrap());
        assert!(!m.finish_review(d3).unwrap());
        assert!(m.edit_review(d3).unwrap().is_none());
        assert_eq!(m.chunk_edits(d3).unwrap().len(), 2);
        assert_eq!(m.flag_stale_edits(d3).unwrap(), 0);
        m.clear_pending_chunk_updates(&[ids[0], ids[2]]).unwrap();
        assert!(m.pending_chunk_updates().unwrap().is_empty());
    }

    fn state(text: &str) -> ChunkState {
        ChunkState {
            text: text.into(),
            enabled: true,
            keywords: vec![],
            questions: vec![],
        }
    }

    #[test]
    fn changes_are_checked_and_index_text_holds_the_terms() {
        let s = state("年休假5天");
        let next = s
            .apply(&ChunkChange {
                keywords: Some(vec![" 带薪假 ".into(), "带薪假".into(), "".into()]),
                questions: Some(vec!["年假有几天？".into()]),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(next.keywords, ["带薪假"]);
        assert_eq!(next.index_text(), "年休假5天\n带薪假\n年假有几天？");
        let empty = s.apply(&ChunkChange {
            text: Some("  ".into()),
            ..Default::default()
        });
        assert!(matches!(empty, Err(MetaError::BadEdit(_))), "{empty:?}");
        let long = s.apply(&ChunkChange {
            keywords: Some(vec!["x".repeat(MAX_TERM_CHARS + 1)]),
            ..Default::default()
        });
        assert!(matches!(long, Err(MetaError::BadEdit(_))));
        let many = s.apply(&ChunkChange {
            keywords: Some((0..=MAX_EXTRA_TERMS).map(|i| i.to_string()).collect()),
            ..Default::default()
        });
        assert!(matches!(many, Err(MetaError::BadEdit(_))));
    }
}
