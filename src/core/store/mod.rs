//! The three stores. SQLite ([`meta`]) holds the truth of which documents and chunks exist,
//! with chunk text; the vector store ([`vector`]) and the keyword index ([`keyword`]) are
//! derived indexes that `zhiku reindex` rebuilds from it.

pub mod keyword;
pub mod meta;
pub mod vector;

/// Identifier of a chunk: SQLite's rowid of the `chunks` table, shared by all three stores.
pub type ChunkId = u64;
/// Identifier of a document (SQLite rowid of `documents`).
pub type DocId = i64;
/// Identifier of a knowledge base (SQLite rowid of `knowledge_bases`).
pub type KbId = i64;

/// One hit from a derived index: a chunk id and that index's own score (higher is better).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredChunk {
    pub chunk: ChunkId,
    pub score: f32,
}
