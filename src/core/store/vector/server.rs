//! Vector store on a Qdrant server or cluster, over gRPC with `qdrant-client` (usually port
//! 6334).
//!
//! The store owns a small current-thread tokio runtime and `block_on`s every call, so the
//! [`VectorStore`] methods are synchronous. **Call them from a blocking context** (a plain
//! thread or `tokio::task::spawn_blocking`), never directly from async code: blocking on a
//! runtime inside another runtime's worker panics. Likewise, drop the store outside async
//! code.
//!
//! One collection per store: one unnamed dense vector (cosine), point id = chunk id, payload
//! `kb` and `doc` (integers) and `readers` (keywords) with payload indexes. Writes use `wait=true`, so they are applied
//! (and, per Qdrant, written to its WAL) when a call returns.

use std::time::Duration;

use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter, PointStruct, PointsIdsList,
    QueryPointsBuilder, SetPayloadPointsBuilder, UpsertPointsBuilder, VectorParamsBuilder,
    point_id::PointIdOptions, vectors_config,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use tokio::runtime::Runtime;

use super::{
    ChunkId, DocId, KbId, Reader, Result, ScoredChunk, VectorError, VectorPoint, VectorStore,
};

const KB_FIELD: &str = "kb";
const DOC_FIELD: &str = "doc";
const READERS_FIELD: &str = "readers";
/// Points per upsert request (keeps each gRPC message well under the 32 MiB default limit
/// for 1024-d vectors).
const UPSERT_BATCH: usize = 256;

/// Vector store backed by a collection on a Qdrant server.
pub struct ServerVectorStore {
    client: Qdrant,
    runtime: Runtime,
    url: String,
    collection: String,
    dim: usize,
}

impl std::fmt::Debug for ServerVectorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerVectorStore")
            .field("url", &self.url)
            .field("collection", &self.collection)
            .field("dim", &self.dim)
            .finish_non_exhaustive()
    }
}

impl ServerVectorStore {
    /// Connect to the Qdrant server at `url` (gRPC, e.g. `http://localhost:6334`) and use
    /// `collection` for `dim`-dimensional vectors.
    ///
    /// Creates the collection if it does not exist (cosine, `dim`) with integer payload
    /// indexes on `kb` and `doc` (also added to an existing collection that lacks them). An
    /// existing collection with another dimension gives [`VectorError::Dimension`]; one with
    /// another distance or with named vectors gives [`VectorError::Backend`]. `timeout`
    /// bounds connecting and each request. Call from a blocking context (see the module docs).
    pub fn connect(
        url: &str,
        api_key: Option<&str>,
        collection: &str,
        dim: usize,
        timeout: Duration,
    ) -> Result<Self> {
        let location = location(url, collection);
        let err = |message: String| VectorError::Backend {
            location: location.clone(),
            message,
        };
        if dim == 0 {
            return Err(err("vector dimension must be positive".into()));
        }
        if collection.is_empty() {
            return Err(err("collection name must not be empty".into()));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| err(format!("cannot start the client runtime: {e}")))?;
        let client = Qdrant::from_url(url)
            .api_key(api_key.map(str::to_owned))
            .timeout(timeout)
            .connect_timeout(timeout)
            .skip_compatibility_check()
            .build()
            .map_err(|e| err(format!("invalid client configuration: {e}")))?;
        let store = Self {
            client,
            runtime,
            url: url.to_owned(),
            collection: collection.to_owned(),
            dim,
        };
        store.ensure_collection()?;
        Ok(store)
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The collection name.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// Delete the whole collection (used by tests and by tooling that drops a store).
    pub fn delete_collection(&self) -> Result<()> {
        self.runtime
            .block_on(self.client.delete_collection(self.collection.as_str()))
            .map_err(|e| self.qdrant_err("delete collection", e))?;
        Ok(())
    }

    fn err(&self, message: impl Into<String>) -> VectorError {
        VectorError::Backend {
            location: location(&self.url, &self.collection),
            message: message.into(),
        }
    }

    fn qdrant_err(&self, what: &str, e: QdrantError) -> VectorError {
        self.err(format!("{what} failed: {e}"))
    }

    fn ensure_collection(&self) -> Result<()> {
        let name = self.collection.as_str();
        let exists = self
            .runtime
            .block_on(self.client.collection_exists(name))
            .map_err(|e| self.qdrant_err("connect (collection exists)", e))?;
        if !exists {
            let created =
                self.runtime.block_on(self.client.create_collection(
                    CreateCollectionBuilder::new(name).vectors_config(VectorParamsBuilder::new(
                        self.dim as u64,
                        Distance::Cosine,
                    )),
                ));
            if let Err(e) = created {
                // Another process may have created it in between; validate it below.
                let exists_now = self
                    .runtime
                    .block_on(self.client.collection_exists(name))
                    .unwrap_or(false);
                if !exists_now {
                    return Err(self.qdrant_err("create collection", e));
                }
            }
        }
        let info = self
            .runtime
            .block_on(self.client.collection_info(name))
            .map_err(|e| self.qdrant_err("collection info", e))?
            .result
            .ok_or_else(|| self.err("the server returned no collection info"))?;
        let params = info
            .config
            .and_then(|c| c.params)
            .and_then(|p| p.vectors_config)
            .and_then(|v| v.config)
            .ok_or_else(|| self.err("the collection reports no vector configuration"))?;
        let params = match params {
            vectors_config::Config::Params(p) => p,
            vectors_config::Config::ParamsMap(_) => {
                return Err(self.err(
                    "the collection uses named vectors; zhiku needs a collection with a single \
                     unnamed vector (use another collection name)",
                ));
            }
        };
        if params.size as usize != self.dim {
            return Err(VectorError::Dimension {
                stored: params.size as usize,
                given: self.dim,
            });
        }
        if params.distance != Distance::Cosine as i32 {
            return Err(self.err(format!(
                "the collection uses distance {:?}, zhiku needs Cosine (use another collection \
                 name)",
                Distance::try_from(params.distance).unwrap_or(Distance::UnknownDistance)
            )));
        }
        for (field, kind) in [
            (KB_FIELD, FieldType::Integer),
            (DOC_FIELD, FieldType::Integer),
            (READERS_FIELD, FieldType::Keyword),
        ] {
            if info.payload_schema.contains_key(field) {
                continue;
            }
            self.runtime
                .block_on(self.client.create_field_index(
                    CreateFieldIndexCollectionBuilder::new(name, field, kind).wait(true),
                ))
                .map_err(|e| self.qdrant_err(&format!("create payload index on `{field}`"), e))?;
        }
        Ok(())
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

    fn delete_by_filter(&self, filter: Filter, what: &str) -> Result<()> {
        self.runtime
            .block_on(
                self.client.delete_points(
                    DeletePointsBuilder::new(self.collection.as_str())
                        .points(filter)
                        .wait(true),
                ),
            )
            .map_err(|e| self.qdrant_err(what, e))?;
        Ok(())
    }
}

impl VectorStore for ServerVectorStore {
    fn dim(&self) -> usize {
        self.dim
    }

    fn upsert(&self, points: &[VectorPoint]) -> Result<()> {
        for p in points {
            self.check_dim(p.vector.len())?;
        }
        for batch in points.chunks(UPSERT_BATCH) {
            let structs: Vec<PointStruct> = batch
                .iter()
                .map(|p| {
                    let mut payload = Payload::with_capacity(3);
                    payload.insert(KB_FIELD, p.kb);
                    payload.insert(DOC_FIELD, p.doc);
                    payload.insert(READERS_FIELD, readers_value(&p.readers));
                    PointStruct::new(p.chunk, p.vector.clone(), payload)
                })
                .collect();
            self.runtime
                .block_on(self.client.upsert_points(
                    UpsertPointsBuilder::new(self.collection.as_str(), structs).wait(true),
                ))
                .map_err(|e| self.qdrant_err("upsert", e))?;
        }
        Ok(())
    }

    fn delete_chunks(&self, chunks: &[ChunkId]) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let ids = PointsIdsList {
            ids: chunks.iter().map(|c| (*c).into()).collect(),
        };
        self.runtime
            .block_on(
                self.client.delete_points(
                    DeletePointsBuilder::new(self.collection.as_str())
                        .points(ids)
                        .wait(true),
                ),
            )
            .map_err(|e| self.qdrant_err("delete chunks", e))?;
        Ok(())
    }

    fn delete_documents(&self, docs: &[DocId]) -> Result<()> {
        if docs.is_empty() {
            return Ok(());
        }
        self.delete_by_filter(
            Filter::must([Condition::matches(DOC_FIELD, docs.to_vec())]),
            "delete documents",
        )
    }

    fn set_readers(&self, updates: &[(ChunkId, Vec<String>)]) -> Result<()> {
        for (readers, chunks) in super::edge::by_readers(updates) {
            let mut payload = Payload::with_capacity(1);
            payload.insert(READERS_FIELD, readers_value(&readers));
            // A filter on ids (not a list of points) skips ids the collection lacks.
            let filter = Filter::must([Condition::has_id(chunks)]);
            self.runtime
                .block_on(
                    self.client.set_payload(
                        SetPayloadPointsBuilder::new(self.collection.as_str(), payload)
                            .points_selector(filter)
                            .wait(true),
                    ),
                )
                .map_err(|e| self.qdrant_err("set readers", e))?;
        }
        Ok(())
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
        let mut must = vec![Condition::matches(KB_FIELD, kbs.to_vec())];
        if let Some(principals) = reader.principals() {
            must.push(Condition::matches(READERS_FIELD, principals.to_vec()));
        }
        let response = self
            .runtime
            .block_on(
                self.client.query(
                    QueryPointsBuilder::new(self.collection.as_str())
                        .query(vector.to_vec())
                        .filter(Filter::must(must))
                        .limit(limit as u64)
                        .with_payload(false)
                        .with_vectors(false),
                ),
            )
            .map_err(|e| self.qdrant_err("search", e))?;
        response
            .result
            .into_iter()
            .map(|p| match p.id.and_then(|id| id.point_id_options) {
                Some(PointIdOptions::Num(chunk)) => Ok(ScoredChunk {
                    chunk,
                    score: p.score.clamp(-1.0, 1.0),
                }),
                other => Err(self.err(format!(
                    "unexpected point id {other:?} (not a zhiku chunk id)"
                ))),
            })
            .collect()
    }

    fn count(&self) -> Result<usize> {
        let response = self
            .runtime
            .block_on(
                self.client
                    .count(CountPointsBuilder::new(self.collection.as_str()).exact(true)),
            )
            .map_err(|e| self.qdrant_err("count", e))?;
        Ok(response.result.map_or(0, |r| r.count as usize))
    }

    /// Deletes every point (an empty filter matches all) but keeps the collection and its
    /// settings (shards, replicas, quantization an administrator may have set).
    fn clear(&self) -> Result<()> {
        self.delete_by_filter(Filter::default(), "clear")
    }

    /// No-op: the server optimises and indexes in the background.
    fn optimize(&self) -> Result<()> {
        Ok(())
    }
}

fn readers_value(readers: &[String]) -> qdrant_client::qdrant::Value {
    serde_json::Value::from(readers.to_vec()).into()
}

fn location(url: &str, collection: &str) -> String {
    format!("{url} (collection `{collection}`)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::vector::contract;

    const SKIP: &str = "skipped: set QDRANT_URL to run the Qdrant server contract tests";

    fn server() -> Option<(String, Option<String>)> {
        let url = std::env::var("QDRANT_URL").ok().filter(|u| !u.is_empty())?;
        let key = std::env::var("QDRANT_API_KEY")
            .ok()
            .filter(|k| !k.is_empty());
        Some((url, key))
    }

    fn unique_collection(test: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("zhiku_test_{test}_{}_{nanos}", std::process::id())
    }

    fn connect(
        url: &str,
        key: Option<&str>,
        collection: &str,
        dim: usize,
    ) -> Result<ServerVectorStore> {
        ServerVectorStore::connect(url, key, collection, dim, Duration::from_secs(10))
    }

    /// Deletes the collection when dropped, also when the test fails.
    struct Cleanup<'a>(&'a str, Option<&'a str>, &'a str);

    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            if let Ok(store) = connect(self.0, self.1, self.2, contract::DIM) {
                let _ = store.delete_collection();
            }
        }
    }

    #[test]
    fn server_contract() {
        let Some((url, key)) = server() else {
            eprintln!("{SKIP}");
            return;
        };
        let collection = unique_collection("contract");
        let _cleanup = Cleanup(&url, key.as_deref(), &collection);
        contract::run_all(&|dim| {
            Ok(Box::new(connect(&url, key.as_deref(), &collection, dim)?) as Box<dyn VectorStore>)
        });
    }

    #[test]
    fn server_errors_name_url_and_collection() {
        // Port 9 (discard) is closed on test machines: connecting fails fast.
        let url = "http://127.0.0.1:9";
        let err = ServerVectorStore::connect(url, None, "c1", 4, Duration::from_secs(2))
            .unwrap_err()
            .to_string();
        assert!(err.contains(url) && err.contains("c1"), "{err}");
    }

    #[test]
    fn server_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ServerVectorStore>();
    }
}
