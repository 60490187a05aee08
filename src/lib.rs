//! zhiku: an on-premises knowledge-base assistant.
//!
//! Data flow, one module per step:
//! `ingest` (crate: bytes → clean chunks) → [`index`] (jobs: embed, write the stores)
//! → [`store`] (SQLite metadata = truth; Qdrant vectors and tantivy keywords = derived indexes)
//! → [`retrieve`] (dense + BM25, fused, filtered by knowledge base) → [`eval`].

pub mod access;
pub mod config;
pub mod embed;
pub mod engine;
pub mod eval;
pub mod finetune;
pub mod generate;
pub mod index;
pub mod rag;
pub mod retrieve;
pub mod server;
pub mod store;
pub mod wecom;
