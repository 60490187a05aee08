//! The document catalogue as the admin pages and downloads see it: a page of a knowledge
//! base's documents (searched by title or name), and one document by id. Only `ready`
//! documents: one being written is not there yet.

use rusqlite::{OptionalExtension, params};

use super::{DocId, DocumentRecord, KbId, MetaStore, PageReading, Result, reading_from};
use crate::store::Reader;

/// A document in a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentSummary {
    pub id: DocId,
    pub title: String,
    pub source: String,
    pub format: String,
    pub pages: u32,
    pub chunks: u64,
    pub size: u64,
    /// Unix seconds.
    pub created_at: i64,
    pub warnings: Vec<String>,
    /// How its pages were read (`None`: ingested before this was recorded).
    pub reading: Option<PageReading>,
}

/// `%`, `_` and the escape character itself match literally in a LIKE pattern.
fn like_pattern(q: &str) -> String {
    let mut p = String::with_capacity(q.len() + 2);
    p.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The reader's principals as a JSON array for [`readable_by`]; `None` reads everything.
fn principals_json(reader: &Reader) -> Option<String> {
    reader
        .principals()
        .map(|p| serde_json::to_string(p).unwrap_or_else(|_| "[]".into()))
}

/// SQL true for a document `d` whose readers include one of the principals bound to
/// `param` (a JSON array, or NULL for a reader of everything).
fn readable_by(param: &str) -> String {
    format!(
        "({param} IS NULL OR EXISTS (SELECT 1 FROM json_each(d.readers) r
                                    WHERE r.value IN (SELECT value FROM json_each({param}))))"
    )
}

impl MetaStore {
    /// How many ready documents of `kb` `reader` may read, and how many chunks they have: what
    /// a knowledge-base list shows its reader (a restricted document is not counted for
    /// those who may not read it, nor its chunks).
    pub fn readable_counts(&self, kb: KbId, reader: &Reader) -> Result<(u64, u64)> {
        let principals = principals_json(reader);
        self.read(|c| {
            c.query_row(
                &format!(
                    "SELECT COUNT(*),
                            COALESCE(SUM((SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id)), 0)
                     FROM documents d
                     WHERE d.kb_id = ?1 AND d.status = 'ready' AND {}",
                    readable_by("?2")
                ),
                params![kb, principals],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
        })
    }

    /// Ready documents of `kb` whose title or source contains `q` (all when empty), by
    /// source, `limit` from `offset`; with the number that match.
    pub fn document_page(
        &self,
        kb: KbId,
        q: &str,
        offset: usize,
        limit: usize,
    ) -> Result<(u64, Vec<DocumentSummary>)> {
        self.readable_document_page(kb, q, &Reader::All, offset, limit)
    }

    /// [`document_page`](Self::document_page) of the documents `reader` may read (a
    /// restricted document's title and name are not shown to others).
    pub fn readable_document_page(
        &self,
        kb: KbId,
        q: &str,
        reader: &Reader,
        offset: usize,
        limit: usize,
    ) -> Result<(u64, Vec<DocumentSummary>)> {
        let pattern = like_pattern(q.trim());
        let principals = principals_json(reader);
        self.read(|c| {
            let filter = format!(
                "d.kb_id = ?1 AND d.status = 'ready'
                 AND (d.title LIKE ?2 ESCAPE '\\' OR d.source LIKE ?2 ESCAPE '\\')
                 AND {}",
                readable_by("?3")
            );
            let filter = filter.as_str();
            let total: i64 = c.query_row(
                &format!("SELECT COUNT(*) FROM documents d WHERE {filter}"),
                params![kb, pattern, principals],
                |r| r.get(0),
            )?;
            let mut stmt = c.prepare(&format!(
                "SELECT d.id, d.title, d.source, d.format, d.pages,
                        (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id),
                        d.size, d.created_at, d.warnings, d.text_pages, d.ocr_pages,
                        d.failed_pages
                 FROM documents d WHERE {filter}
                 ORDER BY d.source, d.id LIMIT ?4 OFFSET ?5"
            ))?;
            let rows = stmt.query_map(
                params![kb, pattern, principals, limit as i64, offset as i64],
                |r| {
                    let warnings: String = r.get(8)?;
                    Ok(DocumentSummary {
                        id: r.get(0)?,
                        title: r.get(1)?,
                        source: r.get(2)?,
                        format: r.get(3)?,
                        pages: r.get::<_, i64>(4)? as u32,
                        chunks: r.get::<_, i64>(5)? as u64,
                        size: r.get::<_, i64>(6)? as u64,
                        created_at: r.get(7)?,
                        warnings: serde_json::from_str(&warnings).unwrap_or_default(),
                        reading: reading_from(
                            r.get(9)?,
                            &r.get::<_, String>(10)?,
                            &r.get::<_, String>(11)?,
                        ),
                    })
                },
            )?;
            Ok((total as u64, rows.collect::<rusqlite::Result<_>>()?))
        })
    }

    /// A knowledge base's name by id (without the counts [`MetaStore::list_kbs`] adds).
    pub fn kb_name(&self, kb: KbId) -> Result<Option<String>> {
        self.read(|c| {
            c.query_row(
                "SELECT name FROM knowledge_bases WHERE id = ?1",
                [kb],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// A ready document by id.
    pub fn document(&self, id: DocId) -> Result<Option<DocumentRecord>> {
        let sql = format!(
            "SELECT {} FROM documents WHERE id = ?1 AND status = 'ready'",
            Self::DOC_COLS
        );
        self.read(|c| c.query_row(&sql, [id], Self::doc_from_row).optional())
    }
}

#[cfg(test)]
mod tests {
    use super::super::NewDocument;
    use super::*;

    #[test]
    fn pages_search_and_literal_wildcards() {
        let dir = tempfile::tempdir().unwrap();
        let s = MetaStore::open(&dir.path().join("zhiku.sqlite")).unwrap();
        let kb = s.create_kb("hr").unwrap();
        let other = s.create_kb("it").unwrap();
        let chunk = zhiku_ingest::Chunk {
            text: "年假".into(),
            page: 1,
            heading_path: vec![],
            char_start: 0,
            char_end: 2,
        };
        let mut ids = Vec::new();
        for (k, source, title) in [
            (kb, "政策/休假制度.txt", "休假制度"),
            (kb, "政策/100%_done.txt", "完成"),
            (kb, "报销.pdf", "差旅费报销管理办法"),
            (other, "it.txt", "休假"),
        ] {
            let chunks = [chunk.clone()];
            let (id, _) = s
                .insert_document(&NewDocument {
                    kb: k,
                    source,
                    title,
                    format: "txt",
                    content_hash: source,
                    size: 9,
                    pages: 1,
                    warnings: &["page 2: garbled".to_string()],
                    masked: 0,
                    reading: &PageReading {
                        text_pages: 1,
                        ocr_pages: vec![3],
                        failed_pages: vec![2],
                    },
                    chunks: &chunks,
                })
                .unwrap();
            s.finish_documents(&[(id, None)]).unwrap();
            ids.push(id);
        }
        let (total, page) = s.document_page(kb, "", 0, 2).unwrap();
        assert_eq!(total, 3);
        let names: Vec<_> = page.iter().map(|d| d.source.as_str()).collect();
        assert_eq!(names, ["报销.pdf", "政策/100%_done.txt"], "by name");
        assert_eq!(page[0].chunks, 1);
        assert_eq!(page[0].warnings, ["page 2: garbled"]);
        let reading = page[0].reading.as_ref().expect("recorded");
        assert_eq!(
            (
                reading.text_pages,
                &reading.ocr_pages[..],
                &reading.failed_pages[..]
            ),
            (1, &[3][..], &[2][..])
        );
        let rest = s.document_page(kb, "", 2, 2).unwrap().1;
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].source, "政策/休假制度.txt");
        let (n, hits) = s.document_page(kb, "休假", 0, 10).unwrap();
        assert_eq!(
            (n, hits[0].id),
            (1, ids[0]),
            "other knowledge bases stay out"
        );
        assert_eq!(s.document_page(kb, "报销", 0, 10).unwrap().0, 1, "by title");
        assert_eq!(s.document_page(kb, "%", 0, 10).unwrap().0, 1, "literal %");
        assert_eq!(s.document_page(kb, "_", 0, 10).unwrap().0, 1, "literal _");
        assert_eq!(s.document(ids[2]).unwrap().unwrap().source, "报销.pdf");
        assert_eq!(s.kb_name(other).unwrap().as_deref(), Some("it"));
        assert_eq!(s.kb_name(999).unwrap(), None);
        assert!(s.document(999).unwrap().is_none());
    }
}
