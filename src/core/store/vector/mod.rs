//! Vector store seam: dense vectors of chunks, filtered by knowledge base and by the
//! chunk's readers inside the store.
//!
//! Two implementations pass one contract suite ([`contract`]): the embedded engine
//! ([`edge`], Qdrant's in-process `qdrant-edge`, the default) and a Qdrant server or cluster
//! ([`server`], via `qdrant-client`, when `[vector] url` is configured).

use super::{ChunkId, DocId, KbId, Reader, ScoredChunk};

pub mod edge;
pub mod server;

#[cfg(test)]
pub(crate) mod contract;

/// One chunk's vector with the payload the store filters on.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorPoint {
    pub chunk: ChunkId,
    pub kb: KbId,
    pub doc: DocId,
    /// Who may read the chunk: [`super::EVERYONE`] or group principals (payload `readers`).
    pub readers: Vec<String>,
    pub vector: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("vector store at {location}: {message}")]
    Backend { location: String, message: String },
    #[error(
        "vector dimension mismatch: the store holds {stored}-d vectors but the embedder makes {given}-d ones; run `zhiku reindex` after changing the embedding model"
    )]
    Dimension { stored: usize, given: usize },
}

pub type Result<T> = std::result::Result<T, VectorError>;

/// A store of chunk vectors (cosine similarity). All methods are synchronous; an
/// implementation that talks to a server blocks on its own runtime, so call it from a
/// blocking context (e.g. `tokio::task::spawn_blocking`) inside async code.
pub trait VectorStore: Send + Sync {
    /// Dimension of the vectors this store holds.
    fn dim(&self) -> usize;
    /// Insert or replace points (by chunk id). Durable when it returns.
    fn upsert(&self, points: &[VectorPoint]) -> Result<()>;
    /// Remove these chunks' points (unknown ids are ignored).
    fn delete_chunks(&self, chunks: &[ChunkId]) -> Result<()>;
    /// Remove every point of these documents.
    fn delete_documents(&self, docs: &[DocId]) -> Result<()>;
    /// Top `limit` chunks by cosine similarity, only from the given knowledge bases
    /// (an empty slice matches nothing), whatever their readers. Best first.
    fn search(&self, vector: &[f32], kbs: &[KbId], limit: usize) -> Result<Vec<ScoredChunk>> {
        self.search_as(vector, kbs, &Reader::All, limit)
    }
    /// [`search`](Self::search) with `reader`'s rights: only chunks whose `readers` payload
    /// holds one of its principals, filtered inside the store's query.
    fn search_as(
        &self,
        vector: &[f32],
        kbs: &[KbId],
        reader: &Reader,
        limit: usize,
    ) -> Result<Vec<ScoredChunk>>;
    /// Replace the readers of these chunks without touching their vectors (a changed access
    /// rule; unknown ids are ignored). Durable when it returns.
    fn set_readers(&self, updates: &[(ChunkId, Vec<String>)]) -> Result<()>;
    /// Number of points stored.
    fn count(&self) -> Result<usize>;
    /// Remove every point (used by `zhiku reindex`).
    fn clear(&self) -> Result<()>;
    /// Build or refresh the search index after a bulk load (HNSW for the embedded engine).
    fn optimize(&self) -> Result<()>;
}
