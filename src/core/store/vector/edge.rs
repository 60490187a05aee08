//! The embedded vector store: Qdrant's in-process engine `qdrant-edge` (pinned to 0.7.2, the
//! newest release that builds on Rust 1.95).
//!
//! Layout of the store directory:
//!
//! ```text
//! <dir>/LOCK     exclusive advisory lock held while a process has the store open
//! <dir>/shard/   the engine's shard (edge_config.json, wal/, segments/, payload index schema)
//! ```
//!
//! One unnamed dense vector (cosine) per point; point id = chunk id; payload `kb` and `doc`
//! (integers) and `readers` (keywords: `*` or `g:<group id>`) with payload indexes, so the
//! knowledge-base and reader filters run inside the engine.
//!
//! Facts about qdrant-edge 0.7.2 this module works around (see the notes at each use):
//! - Nothing runs in the background: no flusher, no optimizer. [`VectorStore::optimize`] runs the
//!   engine's optimizers (segment merge, vacuum, HNSW build) in the calling thread.
//! - `EdgeShard::load` does **not** replay its write-ahead log, so an update is only durable
//!   once the segments are flushed; every write here ends with a flush.
//! - The WAL is never acknowledged/truncated by the engine, so `<dir>/shard/wal` grows with every
//!   write until [`VectorStore::clear`] (which recreates the shard) — `zhiku reindex` bounds it.
//! - `EdgeShard::flush` uses `try_lock` + `expect` internally and panics if another thread is
//!   inside the engine; every write (and flush) here holds our own write lock, reads hold the
//!   read lock, and a panic inside flush is caught and returned as an error.

use std::fs::{self, File, TryLockError};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use qdrant_edge::{
    Condition, CountRequest, CreateIndex, DEFAULT_VECTOR_NAME, Distance, EdgeConfig, EdgeShard,
    EdgeVectorParams, FieldCondition, FieldIndexOperations, Filter, JsonPath, Match,
    OperationError, PayloadFieldSchema, PayloadOps, PayloadSchemaType, PointId,
    PointInsertOperations, PointOperations, PointStruct, PointStructPersisted, QueryEnum,
    QueryRequest, ScoringQuery, SearchParams, SetPayloadOp, UpdateOperation, WithPayloadInterface,
    WithVector,
};

use super::{
    ChunkId, DocId, KbId, Reader, Result, ScoredChunk, VectorError, VectorPoint, VectorStore,
};

const SHARD_DIR: &str = "shard";
const LOCK_FILE: &str = "LOCK";
const KB_FIELD: &str = "kb";
const DOC_FIELD: &str = "doc";
const READERS_FIELD: &str = "readers";
/// HNSW beam width at search time (the engine's default is `ef_construct` = 100).
const HNSW_EF: usize = 256;
/// Points per engine update operation (each one is a WAL record).
const UPSERT_BATCH: usize = 1024;

/// Vector store backed by an embedded `qdrant-edge` shard on local disk.
///
/// `Send + Sync`: searches and counts run concurrently under a read lock; writes, `clear` and
/// `optimize` take the write lock. Only one process may open a directory at a time (an
/// advisory lock on `<dir>/LOCK`).
pub struct EdgeVectorStore {
    dir: PathBuf,
    dim: usize,
    /// `None` only after a failed [`VectorStore::clear`] left no shard behind.
    shard: RwLock<Option<EdgeShard>>,
    /// Holds the advisory lock for the lifetime of the store.
    _lock: File,
}

impl std::fmt::Debug for EdgeVectorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeVectorStore")
            .field("dir", &self.dir)
            .field("dim", &self.dim)
            .finish_non_exhaustive()
    }
}

impl EdgeVectorStore {
    /// Open the store in `dir` (created if missing) for `dim`-dimensional vectors.
    ///
    /// A new store gets one cosine dense vector of `dim` and integer payload indexes on `kb`
    /// and `doc`. An existing store that holds vectors of another dimension gives
    /// [`VectorError::Dimension`]; a directory already opened by another process gives
    /// [`VectorError::Backend`].
    pub fn open(dir: &Path, dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(backend(dir, "vector dimension must be positive"));
        }
        fs::create_dir_all(dir)
            .map_err(|e| backend(dir, format!("cannot create directory: {e}")))?;
        let lock = lock_dir(dir)?;
        let shard_dir = dir.join(SHARD_DIR);
        let shard = if shard_dir.join("edge_config.json").exists() {
            let shard = EdgeShard::load(&shard_dir, None).map_err(|e| engine(dir, "load", e))?;
            let stored = stored_dim(&shard);
            if stored != Some(dim) {
                return Err(match stored {
                    Some(stored) => VectorError::Dimension { stored, given: dim },
                    None => backend(dir, "the shard has no dense vector configured"),
                });
            }
            shard
        } else {
            create_shard(dir, &shard_dir, dim)?
        };
        // Idempotent; also covers a fresh appendable segment created after optimisation.
        ensure_payload_indexes(dir, &shard)?;
        let store = Self {
            dir: dir.to_path_buf(),
            dim,
            shard: RwLock::new(Some(shard)),
            _lock: lock,
        };
        Ok(store)
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of vectors held in HNSW-indexed segments (0 until [`VectorStore::optimize`] has
    /// built an index; small stores stay brute force, which is exact and fast).
    pub fn indexed_vectors(&self) -> Result<usize> {
        self.read(|shard| Ok(shard.info().indexed_vectors_count))
    }

    fn err(&self, message: impl Into<String>) -> VectorError {
        backend(&self.dir, message)
    }

    fn read<T>(&self, f: impl FnOnce(&EdgeShard) -> Result<T>) -> Result<T> {
        let guard = self.shard.read().unwrap_or_else(|p| p.into_inner());
        let shard = guard.as_ref().ok_or_else(|| self.closed())?;
        f(shard)
    }

    /// Run `f` under the write lock, then flush so the change is on disk when this returns.
    fn write(&self, f: impl FnOnce(&EdgeShard) -> Result<()>) -> Result<()> {
        let guard = self.shard.write().unwrap_or_else(|p| p.into_inner());
        let shard = guard.as_ref().ok_or_else(|| self.closed())?;
        f(shard)?;
        flush(&self.dir, shard)
    }

    fn closed(&self) -> VectorError {
        self.err("the store is unusable after a failed clear; reopen it or run `zhiku reindex`")
    }

    fn check_dim(&self, len: usize) -> Result<()> {
        if len == self.dim {
            Ok(())
        } else {
            Err(VectorError::Dimension {
                stored: self.dim,
                given: len,
            })
        }
    }
}

impl VectorStore for EdgeVectorStore {
    fn dim(&self) -> usize {
        self.dim
    }

    fn upsert(&self, points: &[VectorPoint]) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        for p in points {
            self.check_dim(p.vector.len())?;
        }
        self.write(|shard| {
            for batch in points.chunks(UPSERT_BATCH) {
                let list: Vec<PointStructPersisted> = batch
                    .iter()
                    .map(|p| {
                        PointStruct::new(
                            PointId::NumId(p.chunk),
                            p.vector.clone(),
                            serde_json::json!({
                                KB_FIELD: p.kb,
                                DOC_FIELD: p.doc,
                                READERS_FIELD: p.readers,
                            }),
                        )
                        .into()
                    })
                    .collect();
                let op = UpdateOperation::PointOperation(PointOperations::UpsertPoints(
                    PointInsertOperations::PointsList(list),
                ));
                shard
                    .update(op)
                    .map_err(|e| engine(&self.dir, "upsert", e))?;
            }
            Ok(())
        })
    }

    fn delete_chunks(&self, chunks: &[ChunkId]) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        self.write(|shard| {
            let ids = chunks.iter().map(|c| PointId::NumId(*c)).collect();
            let op = UpdateOperation::PointOperation(PointOperations::DeletePoints { ids });
            shard
                .update(op)
                .map_err(|e| engine(&self.dir, "delete chunks", e))
        })
    }

    fn delete_documents(&self, docs: &[DocId]) -> Result<()> {
        if docs.is_empty() {
            return Ok(());
        }
        self.write(|shard| {
            let filter = match_any(DOC_FIELD, docs.to_vec());
            let op = UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(filter));
            shard
                .update(op)
                .map_err(|e| engine(&self.dir, "delete documents", e))
        })
    }

    fn set_readers(&self, updates: &[(ChunkId, Vec<String>)]) -> Result<()> {
        if updates.is_empty() {
            return Ok(());
        }
        self.write(|shard| {
            for (readers, chunks) in by_readers(updates) {
                // A filter on ids (not a list of points) skips ids the shard does not hold.
                let filter = Filter::new().with_point_ids(chunks.into_iter().map(PointId::NumId));
                let payload = serde_json::json!({ READERS_FIELD: readers });
                let serde_json::Value::Object(map) = payload else {
                    unreachable!("a JSON object literal")
                };
                let op = UpdateOperation::PayloadOperation(PayloadOps::SetPayload(SetPayloadOp {
                    payload: qdrant_edge::Payload(map),
                    points: None,
                    filter: Some(filter),
                    key: None,
                }));
                shard
                    .update(op)
                    .map_err(|e| engine(&self.dir, "set readers", e))?;
            }
            Ok(())
        })
    }

    fn search_as(
        &self,
        vector: &[f32],
        kbs: &[KbId],
        reader: &Reader,
        limit: usize,
    ) -> Result<Vec<ScoredChunk>> {
        self.check_dim(vector.len())?;
        if kbs.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let mut must = vec![kb_condition(KB_FIELD, kbs.to_vec())];
        if let Some(principals) = reader.principals() {
            must.push(Condition::Field(FieldCondition::new_match(
                json_path(READERS_FIELD),
                Match::from(principals.to_vec()),
            )));
        }
        let request = QueryRequest {
            prefetches: Vec::new(),
            query: Some(ScoringQuery::Vector(QueryEnum::from(vector.to_vec()))),
            filter: Some(Filter {
                must: Some(must),
                ..Filter::new()
            }),
            score_threshold: None,
            limit,
            offset: 0,
            params: Some(SearchParams {
                hnsw_ef: Some(HNSW_EF.max(limit)),
                ..SearchParams::default()
            }),
            with_vector: WithVector::Bool(false),
            with_payload: WithPayloadInterface::Bool(false),
        };
        let points = self.read(|shard| {
            shard
                .query(request)
                .map_err(|e| engine(&self.dir, "search", e))
        })?;
        points
            .into_iter()
            .map(|p| match p.id {
                PointId::NumId(chunk) => Ok(ScoredChunk {
                    chunk,
                    score: p.score.clamp(-1.0, 1.0),
                }),
                PointId::Uuid(u) => Err(self.err(format!("unexpected UUID point id {u}"))),
            })
            .collect()
    }

    fn count(&self) -> Result<usize> {
        self.read(|shard| {
            shard
                .count(CountRequest {
                    filter: None,
                    exact: true,
                })
                .map_err(|e| engine(&self.dir, "count", e))
        })
    }

    /// Recreates the shard from scratch: faster than deleting every point, and the only way to
    /// reclaim the WAL, which qdrant-edge 0.7.2 never truncates.
    fn clear(&self) -> Result<()> {
        let mut guard = self.shard.write().unwrap_or_else(|p| p.into_inner());
        // Dropping the shard flushes it and releases its files.
        if let Some(old) = guard.take() {
            catch_unwind(AssertUnwindSafe(move || drop(old)))
                .map_err(|_| self.err("flushing the old shard panicked"))?;
        }
        let shard_dir = self.dir.join(SHARD_DIR);
        if shard_dir.exists() {
            fs::remove_dir_all(&shard_dir)
                .map_err(|e| self.err(format!("cannot remove {}: {e}", shard_dir.display())))?;
        }
        let shard = create_shard(&self.dir, &shard_dir, self.dim)?;
        ensure_payload_indexes(&self.dir, &shard)?;
        flush(&self.dir, &shard)?;
        *guard = Some(shard);
        Ok(())
    }

    /// Runs the engine's optimizers to completion in this thread: merges small segments,
    /// vacuums deleted points and builds the HNSW index for segments above the indexing
    /// threshold (10 MB of vectors by default, ≈ 6.5k 384-d points). Blocks writers and
    /// readers while it runs.
    fn optimize(&self) -> Result<()> {
        self.write(|shard| {
            shard
                .optimize()
                .map_err(|e| engine(&self.dir, "optimize", e))?;
            // A new appendable segment may have been created without the payload indexes.
            ensure_payload_indexes(&self.dir, shard)
        })
    }
}

fn backend(dir: &Path, message: impl Into<String>) -> VectorError {
    VectorError::Backend {
        location: dir.display().to_string(),
        message: message.into(),
    }
}

fn engine(dir: &Path, what: &str, e: OperationError) -> VectorError {
    backend(dir, format!("qdrant-edge {what} failed: {e}"))
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            backend(
                dir,
                format!("cannot open lock file {}: {e}", path.display()),
            )
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(backend(
            dir,
            "the vector store is already open in another process (or another store object)",
        )),
        Err(TryLockError::Error(e)) => Err(backend(dir, format!("cannot lock: {e}"))),
    }
}

fn shard_config(dim: usize) -> EdgeConfig {
    EdgeConfig::builder()
        .vector(
            DEFAULT_VECTOR_NAME,
            EdgeVectorParams::builder(dim, Distance::Cosine).build(),
        )
        .build()
}

fn create_shard(dir: &Path, shard_dir: &Path, dim: usize) -> Result<EdgeShard> {
    fs::create_dir_all(shard_dir).map_err(|e| {
        backend(
            dir,
            format!("cannot create directory {}: {e}", shard_dir.display()),
        )
    })?;
    EdgeShard::new(shard_dir, shard_config(dim)).map_err(|e| engine(dir, "create shard", e))
}

fn stored_dim(shard: &EdgeShard) -> Option<usize> {
    shard
        .config()
        .vectors
        .get(DEFAULT_VECTOR_NAME)
        .map(|v| v.size)
}

fn ensure_payload_indexes(dir: &Path, shard: &EdgeShard) -> Result<()> {
    for (field, kind) in [
        (KB_FIELD, PayloadSchemaType::Integer),
        (DOC_FIELD, PayloadSchemaType::Integer),
        (READERS_FIELD, PayloadSchemaType::Keyword),
    ] {
        let op =
            UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(CreateIndex {
                field_name: json_path(field),
                field_schema: Some(PayloadFieldSchema::FieldType(kind)),
            }));
        shard
            .update(op)
            .map_err(|e| engine(dir, &format!("create payload index on `{field}`"), e))?;
    }
    Ok(())
}

/// Flush WAL and segments to disk. The engine panics (instead of erroring) on I/O failure
/// or lock contention here; the contention cannot happen under our write lock.
fn flush(dir: &Path, shard: &EdgeShard) -> Result<()> {
    catch_unwind(AssertUnwindSafe(|| shard.flush())).map_err(|_| {
        backend(
            dir,
            "qdrant-edge flush failed (see the panic message above)",
        )
    })
}

/// The payload keys used here (`kb`, `doc`) are plain identifiers, always valid paths.
fn json_path(field: &str) -> JsonPath {
    field
        .parse()
        .unwrap_or_else(|()| unreachable!("`{field}` is a valid JSON path"))
}

fn kb_condition(field: &str, values: Vec<i64>) -> Condition {
    Condition::Field(FieldCondition::new_match(
        json_path(field),
        Match::from(values),
    ))
}

fn match_any(field: &str, values: Vec<i64>) -> Filter {
    Filter::new_must(kb_condition(field, values))
}

/// Updates grouped by their readers list (a document's chunks usually share one), so that
/// each distinct list is one engine operation.
pub(super) fn by_readers(updates: &[(ChunkId, Vec<String>)]) -> Vec<(Vec<String>, Vec<ChunkId>)> {
    let mut groups: Vec<(Vec<String>, Vec<ChunkId>)> = Vec::new();
    for (chunk, readers) in updates {
        match groups.iter_mut().find(|(r, _)| r == readers) {
            Some((_, chunks)) => chunks.push(*chunk),
            None => groups.push((readers.clone(), vec![*chunk])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::vector::contract;

    fn open(dir: &Path, dim: usize) -> Result<Box<dyn VectorStore>> {
        Ok(Box::new(EdgeVectorStore::open(dir, dim)?))
    }

    #[test]
    fn edge_contract() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vectors");
        contract::run_all(&|dim| open(&dir, dim));
    }

    #[test]
    fn edge_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<EdgeVectorStore>();
    }

    #[test]
    fn edge_second_open_is_refused_while_first_is_open() {
        let tmp = tempfile::tempdir().unwrap();
        let first = EdgeVectorStore::open(tmp.path(), 4).unwrap();
        let err = EdgeVectorStore::open(tmp.path(), 4).unwrap_err();
        assert!(
            matches!(err, VectorError::Backend { .. }),
            "unexpected error: {err}"
        );
        drop(first);
        EdgeVectorStore::open(tmp.path(), 4).unwrap();
    }

    #[test]
    fn edge_concurrent_readers_and_writer() {
        let tmp = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(EdgeVectorStore::open(tmp.path(), 8).unwrap());
        let mut rng = contract::Rng::new(7);
        let points: Vec<VectorPoint> = (0..400)
            .map(|i| VectorPoint {
                chunk: i,
                kb: 1,
                doc: (i / 10) as i64,
                readers: vec!["*".into()],
                vector: rng.unit_vector(8),
            })
            .collect();
        std::thread::scope(|s| {
            let writer = {
                let store = store.clone();
                let points = points.clone();
                s.spawn(move || {
                    for batch in points.chunks(20) {
                        store.upsert(batch).unwrap();
                    }
                })
            };
            for t in 0..3 {
                let store = store.clone();
                s.spawn(move || {
                    let mut rng = contract::Rng::new(100 + t);
                    for _ in 0..100 {
                        let hits = store.search(&rng.unit_vector(8), &[1], 5).unwrap();
                        assert!(hits.len() <= 5);
                        store.count().unwrap();
                    }
                });
            }
            writer.join().unwrap();
        });
        assert_eq!(store.count().unwrap(), 400);
    }

    /// ~10k random 384-d points: after `optimize()` builds HNSW, the top-1 of queries near
    /// stored points matches brute force. Also prints timings (run with `--nocapture`).
    #[test]
    fn edge_hnsw_top1_matches_brute_force_10k() {
        use std::time::Instant;
        const N: u64 = 10_000;
        const DIM: usize = 384;
        let tmp = tempfile::tempdir().unwrap();
        let store = EdgeVectorStore::open(tmp.path(), DIM).unwrap();
        let mut rng = contract::Rng::new(42);
        let points: Vec<VectorPoint> = (0..N)
            .map(|i| VectorPoint {
                chunk: i,
                kb: (i % 3) as i64 + 1,
                doc: (i / 20) as i64,
                readers: vec!["*".into()],
                vector: rng.unit_vector(DIM),
            })
            .collect();

        let t = Instant::now();
        for batch in points.chunks(500) {
            store.upsert(batch).unwrap();
        }
        let upsert = t.elapsed();
        assert_eq!(store.count().unwrap(), N as usize);

        let t = Instant::now();
        store.optimize().unwrap();
        let optimize = t.elapsed();
        let indexed = store.indexed_vectors().unwrap();
        assert!(indexed > 0, "optimize() built no HNSW index");

        let kbs = [1, 2, 3];
        let mut search_total = std::time::Duration::ZERO;
        let queries = 20;
        for q in 0..queries {
            let target = &points[(q * 487) % N as usize];
            let query: Vec<f32> = target
                .vector
                .iter()
                .map(|x| x + 0.02 * rng.normal())
                .collect();
            let expected = contract::brute_force_top1(&points, &query, &kbs);
            let t = Instant::now();
            let hits = store.search(&query, &kbs, 10).unwrap();
            search_total += t.elapsed();
            assert_eq!(hits.len(), 10);
            assert_eq!(hits[0].chunk, expected, "query {q}");
            assert_eq!(hits[0].chunk, target.chunk, "query {q}");
            // Filtered search inside one kb.
            let in_kb = [target.kb];
            let expected = contract::brute_force_top1(&points, &query, &in_kb);
            let hits = store.search(&query, &in_kb, 10).unwrap();
            assert_eq!(hits[0].chunk, expected, "query {q}, kb {}", target.kb);
            assert!(
                hits.iter()
                    .all(|h| points[h.chunk as usize].kb == target.kb)
            );
        }
        // Random queries: HNSW is approximate on random data; report top-1 agreement only.
        let mut agree = 0;
        for _ in 0..queries {
            let query = rng.unit_vector(DIM);
            let expected = contract::brute_force_top1(&points, &query, &kbs);
            let hits = store.search(&query, &kbs, 10).unwrap();
            agree += usize::from(hits[0].chunk == expected);
        }
        let t = Instant::now();
        drop(store);
        let store = EdgeVectorStore::open(tmp.path(), DIM).unwrap();
        let reopen = t.elapsed();
        assert_eq!(store.count().unwrap(), N as usize);
        eprintln!(
            "edge 10k×384: upsert {upsert:?} (500/batch), optimize {optimize:?} \
             ({indexed} indexed), search top-10 avg {:?}, random-query top-1 agreement \
             {agree}/{queries}, reopen {reopen:?}",
            search_total / queries as u32
        );
    }
}
