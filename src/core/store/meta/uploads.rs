//! The ingestion queue of the server: upload and re-index jobs, and each of their files
//! with its status (`queued → extracting → embedding → done | failed`, with the reason).
//!
//! The file rows are the one source of truth: a job's own status (`queued`, `running`,
//! `done`, `failed`) and its counts are derived from its files when read, never stored
//! twice. Statuses are written as the worker goes, so after a crash the files it was working
//! on are found in `extracting`/`embedding` and queued again ([`MetaStore::requeue_interrupted`]);
//! the index module's crash safety makes running a file twice harmless.
//!
//! Jobs of the command line (`zhiku ingest`) stay in `jobs`/`job_files`: they run in the
//! foreground with their own report and never wait in this queue.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{DocId, KbId, MetaStore, Result, now};

/// Part of schema step 1 (`migrate.rs`): frozen; a schema change is a new step there.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS upload_jobs (
    id           INTEGER PRIMARY KEY,
    kb_id        INTEGER NOT NULL REFERENCES knowledge_bases(id) ON DELETE CASCADE,
    kind         TEXT NOT NULL CHECK (kind IN ('upload', 'reindex')),
    actor        TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    started_at   INTEGER,
    finished_at  INTEGER
);
CREATE TABLE IF NOT EXISTS upload_files (
    id           INTEGER PRIMARY KEY,
    job_id       INTEGER NOT NULL REFERENCES upload_jobs(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    blob         TEXT,
    size         INTEGER NOT NULL DEFAULT 0,
    status       TEXT NOT NULL
                 CHECK (status IN ('queued', 'extracting', 'embedding', 'done', 'failed')),
    message      TEXT,
    document_id  INTEGER,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS upload_files_status ON upload_files(status, id);
CREATE INDEX IF NOT EXISTS upload_files_job ON upload_files(job_id);
CREATE INDEX IF NOT EXISTS upload_jobs_kb ON upload_jobs(kb_id, id);
"#;

/// Where a file is in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    Queued,
    Extracting,
    Embedding,
    Done,
    Failed,
}

impl FileStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Extracting => "extracting",
            Self::Embedding => "embedding",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "queued" => Self::Queued,
            "extracting" => Self::Extracting,
            "embedding" => Self::Embedding,
            "done" => Self::Done,
            _ => Self::Failed,
        }
    }

    /// Done or failed: the worker will not touch it again.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Done | Self::Failed)
    }
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Files uploaded by an admin.
    Upload,
    /// A document extracted again from its stored original.
    Reindex,
}

impl JobKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Reindex => "reindex",
        }
    }

    fn parse(s: &str) -> Self {
        if s == "reindex" {
            Self::Reindex
        } else {
            Self::Upload
        }
    }
}

/// A job's status, derived from its files: `queued` until the worker takes its first file,
/// `running` while files remain, then `done` (at least one file done) or `failed` (none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Failed,
}

/// A file to record in a new job.
#[derive(Debug, Clone)]
pub struct NewJobFile<'a> {
    /// The document's source: the path relative to the upload (`政策/休假制度.txt`), or the
    /// source of the document being re-indexed.
    pub name: &'a str,
    /// The stored original (its content hash), when there is one.
    pub blob: Option<&'a str>,
    pub size: u64,
    /// Refused at intake (queued otherwise), with the reason.
    pub refused: Option<&'a str>,
    /// Re-index: the document to replace.
    pub document_id: Option<DocId>,
}

/// One file of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct JobFile {
    pub name: String,
    pub status: FileStatus,
    /// Why it failed, or a note (unchanged, same content as another document, warnings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The document it became (done files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_id: Option<DocId>,
}

/// Files of a job by outcome; `queued` counts every file not finished yet (waiting, being
/// extracted or being embedded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct JobFileCounts {
    pub queued: u64,
    pub done: u64,
    pub failed: u64,
}

/// A job as the admin pages show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UploadJob {
    pub id: i64,
    /// Knowledge base name.
    pub kb: String,
    pub kind: JobKind,
    pub status: JobStatus,
    /// Who queued it.
    pub actor: String,
    /// Unix seconds.
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub files: Vec<JobFile>,
    pub counts: JobFileCounts,
}

/// A file the worker has taken (now `extracting`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedFile {
    pub id: i64,
    pub job: i64,
    pub kb: KbId,
    pub kind: JobKind,
    pub name: String,
    pub blob: Option<String>,
    pub document_id: Option<DocId>,
}

/// Files in the queue by state, for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    /// Waiting for the worker.
    pub queued: u64,
    /// Being extracted or embedded now.
    pub running: u64,
    /// Failed, all time (until their job is deleted with its knowledge base).
    pub failed: u64,
}

impl MetaStore {
    /// Record a job and its files (queued, or refused at intake) in one transaction.
    pub fn create_upload_job(
        &self,
        kb: KbId,
        kind: JobKind,
        actor: &str,
        files: &[NewJobFile<'_>],
    ) -> Result<i64> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let t = now();
            tx.execute(
                "INSERT INTO upload_jobs(kb_id, kind, actor, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![kb, kind.as_str(), actor, t],
            )?;
            let job = tx.last_insert_rowid();
            {
                let mut stmt = tx.prepare(
                    "INSERT INTO upload_files(job_id, name, blob, size, status, message,
                                              document_id, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for f in files {
                    let status = if f.refused.is_some() {
                        FileStatus::Failed
                    } else {
                        FileStatus::Queued
                    };
                    stmt.execute(params![
                        job,
                        f.name,
                        f.blob,
                        f.size as i64,
                        status.as_str(),
                        f.refused,
                        f.document_id,
                        t
                    ])?;
                }
            }
            // A job refused entirely at intake is finished at once.
            tx.execute(
                "UPDATE upload_jobs SET finished_at = ?2 WHERE id = ?1 AND NOT EXISTS
                   (SELECT 1 FROM upload_files WHERE job_id = ?1 AND status = 'queued')",
                params![job, t],
            )?;
            tx.commit()?;
            Ok(job)
        })
    }

    /// Take the oldest queued file: it becomes `extracting` and its job is started. With
    /// `only_kb`, only when that file belongs to this knowledge base (the worker batches the
    /// files that follow each other in one knowledge base, keeping the order).
    pub fn claim_next_file(&self, only_kb: Option<KbId>) -> Result<Option<ClaimedFile>> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let file = tx
                .query_row(
                    "SELECT f.id, f.job_id, j.kb_id, j.kind, f.name, f.blob, f.document_id
                     FROM upload_files f JOIN upload_jobs j ON j.id = f.job_id
                     WHERE f.status = 'queued' ORDER BY f.id LIMIT 1",
                    [],
                    |r| {
                        Ok(ClaimedFile {
                            id: r.get(0)?,
                            job: r.get(1)?,
                            kb: r.get(2)?,
                            kind: JobKind::parse(&r.get::<_, String>(3)?),
                            name: r.get(4)?,
                            blob: r.get(5)?,
                            document_id: r.get(6)?,
                        })
                    },
                )
                .optional()?
                .filter(|f| only_kb.is_none_or(|kb| kb == f.kb));
            if let Some(f) = &file {
                let t = now();
                tx.execute(
                    "UPDATE upload_files SET status = 'extracting', updated_at = ?2 WHERE id = ?1",
                    params![f.id, t],
                )?;
                tx.execute(
                    "UPDATE upload_jobs SET started_at = COALESCE(started_at, ?2) WHERE id = ?1",
                    params![f.job, t],
                )?;
            }
            tx.commit()?;
            Ok(file)
        })
    }

    /// Move a file the worker holds to another stage (extracting, embedding).
    pub fn set_file_status(&self, file: i64, status: FileStatus) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE upload_files SET status = ?2, updated_at = ?3 WHERE id = ?1",
                params![file, status.as_str(), now()],
            )
            .map(|_| ())
        })
    }

    /// A file is done or failed; its job is finished when it was the last one (then true).
    pub fn finish_file(
        &self,
        file: i64,
        status: FileStatus,
        message: Option<&str>,
        document: Option<DocId>,
    ) -> Result<bool> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let t = now();
            tx.execute(
                "UPDATE upload_files SET status = ?2, message = ?3,
                        document_id = COALESCE(?4, document_id), updated_at = ?5
                 WHERE id = ?1",
                params![file, status.as_str(), message, document, t],
            )?;
            let ended = tx.execute(
                "UPDATE upload_jobs SET finished_at = ?2
                 WHERE id = (SELECT job_id FROM upload_files WHERE id = ?1)
                   AND NOT EXISTS (SELECT 1 FROM upload_files
                                   WHERE job_id = upload_jobs.id
                                     AND status IN ('queued', 'extracting', 'embedding'))",
                params![file, t],
            )?;
            tx.commit()?;
            Ok(ended > 0)
        })
    }

    /// Files a stopped process was working on go back to the queue; returns how many.
    pub fn requeue_interrupted(&self) -> Result<usize> {
        self.with(|c| {
            c.execute(
                "UPDATE upload_files SET status = 'queued', updated_at = ?1
                 WHERE status IN ('extracting', 'embedding')",
                [now()],
            )
        })
    }

    /// One job with its files.
    pub fn upload_job(&self, id: i64) -> Result<Option<UploadJob>> {
        Ok(self.upload_jobs_where("j.id = ?1", id, 1)?.pop())
    }

    /// The newest jobs (of one knowledge base, or all), newest first.
    pub fn upload_jobs(&self, kb: Option<KbId>, limit: usize) -> Result<Vec<UploadJob>> {
        match kb {
            Some(kb) => self.upload_jobs_where("j.kb_id = ?1", kb, limit),
            None => self.upload_jobs_where("?1 = 0", 0, limit),
        }
    }

    fn upload_jobs_where(&self, filter: &str, arg: i64, limit: usize) -> Result<Vec<UploadJob>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT j.id, k.name, j.kind, j.actor, j.created_at, j.started_at, j.finished_at
                 FROM upload_jobs j JOIN knowledge_bases k ON k.id = j.kb_id
                 WHERE {filter} ORDER BY j.id DESC LIMIT ?2"
            ))?;
            let heads = stmt
                .query_map(params![arg, limit as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        JobKind::parse(&r.get::<_, String>(2)?),
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, Option<i64>>(6)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut files = c.prepare_cached(
                "SELECT name, status, message, document_id FROM upload_files
                 WHERE job_id = ?1 ORDER BY id",
            )?;
            let mut out = Vec::with_capacity(heads.len());
            for (id, kb, kind, actor, created_at, started_at, finished_at) in heads {
                let files: Vec<JobFile> = files
                    .query_map([id], |r| {
                        Ok(JobFile {
                            name: r.get(0)?,
                            status: FileStatus::parse(&r.get::<_, String>(1)?),
                            message: r.get(2)?,
                            document_id: r.get(3)?,
                        })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                let counts = count_files(&files);
                out.push(UploadJob {
                    id,
                    kb,
                    kind,
                    status: job_status(&counts, started_at.is_some()),
                    actor,
                    created_at,
                    finished_at,
                    files,
                    counts,
                });
            }
            Ok(out)
        })
    }

    /// Files waiting, running and failed, over all jobs (for `/metrics`).
    pub fn upload_queue_counts(&self) -> Result<QueueCounts> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT status, COUNT(*) FROM upload_files GROUP BY status")?;
            let mut out = QueueCounts::default();
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (status, n) = row?;
                match FileStatus::parse(&status) {
                    FileStatus::Queued => out.queued += n as u64,
                    FileStatus::Extracting | FileStatus::Embedding => out.running += n as u64,
                    FileStatus::Failed => out.failed += n as u64,
                    FileStatus::Done => {}
                }
            }
            Ok(out)
        })
    }

    /// Whether a stored original (by content hash) is still needed: by a document of the
    /// knowledge base, or by a file of it not finished yet.
    pub fn blob_in_use(&self, kb: KbId, hash: &str) -> Result<bool> {
        self.with(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM documents WHERE kb_id = ?1 AND content_hash = ?2)
                     OR EXISTS (SELECT 1 FROM upload_files f JOIN upload_jobs j ON j.id = f.job_id
                                WHERE j.kb_id = ?1 AND f.blob = ?2
                                  AND f.status IN ('queued', 'extracting', 'embedding'))",
                params![kb, hash],
                |r| r.get(0),
            )
        })
    }
}

fn count_files(files: &[JobFile]) -> JobFileCounts {
    let mut c = JobFileCounts::default();
    for f in files {
        match f.status {
            FileStatus::Done => c.done += 1,
            FileStatus::Failed => c.failed += 1,
            _ => c.queued += 1,
        }
    }
    c
}

fn job_status(counts: &JobFileCounts, started: bool) -> JobStatus {
    match (counts.queued, counts.done, started) {
        (0, 0, _) => JobStatus::Failed,
        (0, _, _) => JobStatus::Done,
        (_, _, true) => JobStatus::Running,
        (_, _, false) => JobStatus::Queued,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, MetaStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = MetaStore::open(&dir.path().join("zhiku.sqlite")).unwrap();
        (dir, s)
    }

    fn file<'a>(name: &'a str, refused: Option<&'a str>) -> NewJobFile<'a> {
        NewJobFile {
            name,
            blob: Some("b1"),
            size: 3,
            refused,
            document_id: None,
        }
    }

    #[test]
    fn a_job_moves_through_its_files_and_survives_a_restart() {
        let (_d, s) = store();
        let kb = s.create_kb("hr").unwrap();
        let job = s
            .create_upload_job(
                kb,
                JobKind::Upload,
                "root",
                &[
                    file("政策/a.txt", None),
                    file("b.exe", Some("unsupported")),
                    file("c.txt", None),
                ],
            )
            .unwrap();
        let j = s.upload_job(job).unwrap().unwrap();
        assert_eq!(
            (j.status, j.kb.as_str(), j.kind),
            (JobStatus::Queued, "hr", JobKind::Upload)
        );
        assert_eq!(
            j.counts,
            JobFileCounts {
                queued: 2,
                done: 0,
                failed: 1
            }
        );
        assert_eq!(j.files[1].message.as_deref(), Some("unsupported"));
        assert!(s.blob_in_use(kb, "b1").unwrap());

        let a = s.claim_next_file(None).unwrap().unwrap();
        assert_eq!((a.name.as_str(), a.kb, a.job), ("政策/a.txt", kb, job));
        s.set_file_status(a.id, FileStatus::Embedding).unwrap();
        assert_eq!(
            s.upload_job(job).unwrap().unwrap().status,
            JobStatus::Running
        );
        assert_eq!(
            s.upload_queue_counts().unwrap(),
            QueueCounts {
                queued: 1,
                running: 1,
                failed: 1
            }
        );
        // The process stops here; the next one queues the file again.
        assert_eq!(s.requeue_interrupted().unwrap(), 1);
        let again = s.claim_next_file(None).unwrap().unwrap();
        assert_eq!(again.id, a.id, "order is kept");
        s.finish_file(a.id, FileStatus::Done, None, Some(7))
            .unwrap();
        assert!(
            s.claim_next_file(Some(kb + 1)).unwrap().is_none(),
            "another kb's file"
        );
        let c = s.claim_next_file(Some(kb)).unwrap().unwrap();
        assert!(s.upload_job(job).unwrap().unwrap().finished_at.is_none());
        s.finish_file(c.id, FileStatus::Failed, Some("no text"), None)
            .unwrap();
        assert!(s.claim_next_file(None).unwrap().is_none());
        let j = s.upload_job(job).unwrap().unwrap();
        assert_eq!(j.status, JobStatus::Done);
        assert!(j.finished_at.is_some());
        assert_eq!(j.files[0].document_id, Some(7));
        assert_eq!(j.files[2].message.as_deref(), Some("no text"));
        assert!(!s.blob_in_use(kb, "b1").unwrap(), "no file waits for it");
    }

    #[test]
    fn jobs_are_listed_newest_first_and_go_with_their_knowledge_base() {
        let (_d, s) = store();
        let hr = s.create_kb("hr").unwrap();
        let it = s.create_kb("it").unwrap();
        let j1 = s
            .create_upload_job(hr, JobKind::Upload, "root", &[file("a.txt", None)])
            .unwrap();
        let j2 = s
            .create_upload_job(it, JobKind::Reindex, "root", &[file("b.txt", None)])
            .unwrap();
        let j3 = s
            .create_upload_job(hr, JobKind::Upload, "root", &[file("x.exe", Some("no"))])
            .unwrap();
        let ids = |v: Vec<UploadJob>| v.into_iter().map(|j| j.id).collect::<Vec<_>>();
        assert_eq!(ids(s.upload_jobs(None, 50).unwrap()), [j3, j2, j1]);
        assert_eq!(ids(s.upload_jobs(Some(hr), 50).unwrap()), [j3, j1]);
        assert_eq!(ids(s.upload_jobs(None, 1).unwrap()), [j3]);
        let refused = s.upload_job(j3).unwrap().unwrap();
        assert_eq!(refused.status, JobStatus::Failed);
        assert!(refused.finished_at.is_some());
        s.delete_kb(it).unwrap();
        assert!(s.upload_job(j2).unwrap().is_none());
    }
}
