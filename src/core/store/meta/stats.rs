//! Counts for monitoring: documents and ingestion jobs by status, read by `GET /metrics` on
//! every scrape (so they are right after a restart and across processes sharing the data
//! folder), and when each knowledge base was created (`GET /v1/models`).

use std::collections::HashMap;

use super::{KbId, MetaStore, Result};

/// Rows per status: every status in the table, with its count.
pub type StatusCounts = Vec<(String, u64)>;

impl MetaStore {
    /// Documents per status (`indexing`, `ready`) over all knowledge bases.
    pub fn document_status_counts(&self) -> Result<StatusCounts> {
        self.status_counts("SELECT status, COUNT(*) FROM documents GROUP BY status")
    }

    /// Ingestion jobs per status (`running`, `done`, `failed`).
    pub fn job_status_counts(&self) -> Result<StatusCounts> {
        self.status_counts("SELECT status, COUNT(*) FROM jobs GROUP BY status")
    }

    fn status_counts(&self, sql: &str) -> Result<StatusCounts> {
        self.read(|c| {
            let mut stmt = c.prepare(sql)?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
            rows.collect()
        })
    }

    /// When each knowledge base was created, Unix seconds.
    pub fn kb_created_at(&self) -> Result<HashMap<KbId, i64>> {
        self.read(|c| {
            let mut stmt = c.prepare("SELECT id, created_at FROM knowledge_bases")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_jobs_and_knowledge_bases() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaStore::open(&dir.path().join("z.sqlite")).unwrap();
        assert!(meta.job_status_counts().unwrap().is_empty());
        assert!(meta.document_status_counts().unwrap().is_empty());
        let kb = meta.create_kb("hr").unwrap();
        let a = meta.start_job(kb, "a").unwrap();
        meta.start_job(kb, "b").unwrap();
        meta.finish_job(a, &Default::default(), Some("broken file"))
            .unwrap();
        let mut jobs = meta.job_status_counts().unwrap();
        jobs.sort();
        assert_eq!(
            jobs,
            [("failed".to_string(), 1), ("running".to_string(), 1)]
        );
        let created = meta.kb_created_at().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((now - created[&kb]).abs() < 60, "{created:?}");
    }
}
