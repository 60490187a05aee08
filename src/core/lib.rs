//! zhiku-core: the knowledge engine, with no HTTP server and no terminal in it.
//!
//! Data flow, one module per step: `zhiku-ingest` (bytes → clean chunks) → [`index`] (jobs:
//! embed, write the stores) → [`store`] (SQLite metadata = truth; Qdrant vectors and tantivy
//! keywords = derived indexes) → [`retrieve`] (dense + BM25, fused, filtered by what the
//! asker may read) → [`rag`] (grounded answers with citations, through the [`generate`]
//! seam) → [`eval`] (measured retrieval and answers). [`engine`] holds the open stores and
//! the embedder; [`access`] decides who may read what; [`config`] is every setting; [`http`] is
//! the one outbound HTTP client (an LLM server, the WeCom API).
//!
//! Invariants:
//! - SQLite holds the truth of which documents and chunks exist (with their text); the
//!   vector and keyword stores are derived and `index::reindex` rebuilds them. An ingestion
//!   batch lands in all three or is retried: a crash never leaves an orphan.
//! - Permissions are enforced inside retrieval, as a filter pushed into both stores: an
//!   answer is only ever built from chunks its asker may read.
//! - The only seams are traits: [`store::vector::VectorStore`] (embedded Qdrant or a Qdrant
//!   server), [`embed::Embedder`] and [`generate::Generator`]; each has one contract suite.
//! - Nothing here prints or draws: long jobs report through [`progress::Progress`].
//!
//! This crate depends on `zhiku-ingest` and `zhiku-ocr` (PP-OCRv5, adapted to ingest's OCR
//! seam in [`ocr`]) only; `zhiku-llm`, `zhiku-server` and the binary
//! are built on it.

pub mod access;
pub mod config;
pub mod embed;
pub mod engine;
pub mod eval;
pub mod extractor;
pub mod generate;
pub mod http;
pub mod index;
pub mod ocr;
pub mod onnxruntime;
pub mod progress;
pub mod rag;
pub mod retrieve;
pub mod store;
pub mod unpack;
