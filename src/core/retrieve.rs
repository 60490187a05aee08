//! Hybrid retrieval: dense top-N and BM25 top-N, fused, filtered by knowledge base and by
//! the reader's rights (folder and document rules) inside both stores, hydrated from SQLite
//! (only chunks of ready documents that SQLite, the truth, also lets the reader read: while
//! a changed rule is being written to the stores, a chunk is returned only when both the old
//! and the new readers allow it).

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;
use tracing::debug_span;

use crate::config::{Fusion, RetrieveConfig};
use crate::engine::{Engine, EngineError};
use crate::store::{ChunkId, KbId, Reader, ScoredChunk};

/// How one result scored.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScoreBreakdown {
    /// Cosine similarity from the vector store, when the chunk was among its candidates.
    pub dense: Option<f32>,
    /// 1-based rank among the dense candidates.
    pub dense_rank: Option<usize>,
    /// BM25 score, when the chunk was among the keyword candidates.
    pub keyword: Option<f32>,
    /// 1-based rank among the keyword candidates.
    pub keyword_rank: Option<usize>,
    /// The fused score the results are ordered by.
    pub fused: f32,
}

/// One retrieved chunk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub chunk: ChunkId,
    pub text: String,
    /// The document's source: its file path or external id.
    pub document: String,
    pub document_id: i64,
    pub title: String,
    pub page: u32,
    /// Where in the document, by its format (page, slide, or sheet and rows).
    pub place: crate::rag::location::Location,
    /// [`Hit::place`]'s label: `p. 3`, `slide 3`, `Sheet 住宿标准, rows 2–9`.
    pub location: String,
    pub heading_path: Vec<String>,
    pub char_start: u32,
    pub char_end: u32,
    pub kb: KbId,
    /// The fused score (same as `scores.fused`).
    pub score: f32,
    pub scores: ScoreBreakdown,
}

/// Timings of one search, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SearchTimings {
    pub embed_ms: f64,
    pub dense_ms: f64,
    pub keyword_ms: f64,
    pub total_ms: f64,
}

/// Fuse two best-first candidate lists. Returns (chunk, breakdown) best first.
pub fn fuse(
    dense: &[ScoredChunk],
    keyword: &[ScoredChunk],
    config: &RetrieveConfig,
) -> Vec<(ChunkId, ScoreBreakdown)> {
    let mut map: HashMap<ChunkId, ScoreBreakdown> = HashMap::new();
    for (i, s) in dense.iter().enumerate() {
        let e = map.entry(s.chunk).or_default();
        e.dense = Some(s.score);
        e.dense_rank = Some(i + 1);
    }
    for (i, s) in keyword.iter().enumerate() {
        let e = map.entry(s.chunk).or_default();
        e.keyword = Some(s.score);
        e.keyword_rank = Some(i + 1);
    }
    let wd = config.dense_weight;
    let wk = 1.0 - config.dense_weight;
    match config.fusion {
        Fusion::Rrf => {
            let k = config.rrf_k;
            for b in map.values_mut() {
                let d = b.dense_rank.map(|r| wd / (k + r as f32)).unwrap_or(0.0);
                let s = b.keyword_rank.map(|r| wk / (k + r as f32)).unwrap_or(0.0);
                // Scale so equal weights give the textbook Σ 1/(k+rank).
                b.fused = 2.0 * (d + s);
            }
        }
        Fusion::Weighted => {
            let (dmin, dmax) = min_max(dense);
            let (kmin, kmax) = min_max(keyword);
            for b in map.values_mut() {
                let d = b.dense.map(|v| norm(v, dmin, dmax)).unwrap_or(0.0);
                let s = b.keyword.map(|v| norm(v, kmin, kmax)).unwrap_or(0.0);
                b.fused = wd * d + wk * s;
            }
        }
    }
    let mut out: Vec<(ChunkId, ScoreBreakdown)> = map.into_iter().collect();
    out.sort_by(|a, b| {
        b.1.fused
            .total_cmp(&a.1.fused)
            .then_with(|| {
                a.1.dense_rank
                    .unwrap_or(usize::MAX)
                    .cmp(&b.1.dense_rank.unwrap_or(usize::MAX))
            })
            .then_with(|| a.0.cmp(&b.0))
    });
    out
}

fn min_max(list: &[ScoredChunk]) -> (f32, f32) {
    list.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), s| {
            (lo.min(s.score), hi.max(s.score))
        })
}

fn norm(v: f32, lo: f32, hi: f32) -> f32 {
    if hi - lo <= f32::EPSILON {
        1.0
    } else {
        (v - lo) / (hi - lo)
    }
}

/// Search the given knowledge bases with every chunk readable (the operator's command-line
/// tools; users' searches go through [`search_explained`] with their [`Reader`]). An empty
/// `kbs` finds nothing.
pub fn search(
    engine: &Engine,
    query: &str,
    kbs: &[KbId],
    top_k: usize,
) -> Result<(Vec<Hit>, SearchTimings), EngineError> {
    search_with(engine, query, kbs, top_k, &engine.config.retrieve)
}

/// [`search`] with explicit retrieval settings (for evaluation of fusion choices).
pub fn search_with(
    engine: &Engine,
    query: &str,
    kbs: &[KbId],
    top_k: usize,
    config: &RetrieveConfig,
) -> Result<(Vec<Hit>, SearchTimings), EngineError> {
    let s = search_explained(engine, query, kbs, &Reader::All, top_k, config)?;
    Ok((s.hits, s.timings))
}

/// What became of one fused candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateStatus {
    /// Returned as a hit.
    Hit,
    /// Ranked below the `top_k` hits returned.
    BelowTopK,
    /// Not returned: its document is not ready (being replaced or deleted), the chunk is
    /// disabled, it belongs to a knowledge base that was not searched, or its readers just
    /// changed and no longer include the reader.
    Hidden,
}

/// One candidate of either store, with how it scored and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub chunk: ChunkId,
    /// 1-based rank by fused score among all candidates.
    pub rank: usize,
    pub scores: ScoreBreakdown,
    pub status: CandidateStatus,
}

/// A search with everything it considered: the hits, and every candidate of the dense and
/// keyword stores in fused order (hit testing shows them; answers use the hits).
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub hits: Vec<Hit>,
    pub candidates: Vec<Candidate>,
    pub timings: SearchTimings,
}

/// [`search_with`] with `reader`'s rights, keeping every candidate: the one search the
/// answer path and hit testing share.
pub fn search_explained(
    engine: &Engine,
    query: &str,
    kbs: &[KbId],
    reader: &Reader,
    top_k: usize,
    config: &RetrieveConfig,
) -> Result<Search, EngineError> {
    let _span = debug_span!("search", kbs = ?kbs, top_k).entered();
    let mut t = SearchTimings::default();
    if kbs.is_empty() || query.trim().is_empty() {
        return Ok(Search::default());
    }
    // Loaded on first use (seconds for the model); not part of the query's time.
    let embedder = engine.embedder()?;
    let vector = engine.vector()?;
    let start = Instant::now();
    let n = config.candidates.max(top_k);
    // The keyword search runs on another thread while the query is embedded.
    let (keyword, dense) = std::thread::scope(|s| {
        let kw = s.spawn(|| {
            let t0 = Instant::now();
            let r = engine.keyword.search_as(query, kbs, reader, n);
            (r, t0.elapsed())
        });
        let t0 = Instant::now();
        let dense = embedder.embed_query(query).map(|q| {
            let embed = t0.elapsed();
            let t1 = Instant::now();
            (vector.search_as(&q, kbs, reader, n), embed, t1.elapsed())
        });
        (kw.join().expect("keyword search thread panicked"), dense)
    });
    let (kw, kw_time) = keyword;
    let keyword = kw?;
    let (dense, embed_time, dense_time) = dense?;
    let dense = dense?;
    t.embed_ms = embed_time.as_secs_f64() * 1e3;
    t.dense_ms = dense_time.as_secs_f64() * 1e3;
    t.keyword_ms = kw_time.as_secs_f64() * 1e3;
    let fused = fuse(&dense, &keyword, config);
    // Hydrate a few more than asked, in case some belong to documents being replaced.
    let want: Vec<ChunkId> = fused.iter().take(top_k + 8).map(|(c, _)| *c).collect();
    let records = engine.meta.chunks(&want)?;
    let by_id: HashMap<ChunkId, _> = records.into_iter().map(|r| (r.id, r)).collect();
    let mut hits = Vec::with_capacity(top_k);
    let mut candidates = Vec::with_capacity(fused.len());
    for (i, (chunk, scores)) in fused.into_iter().enumerate() {
        // The stores filter by knowledge base and readers; SQLite's readers decide too, so a
        // rule tightened a moment ago holds before the stores have caught up.
        let visible = by_id
            .get(&chunk)
            .filter(|r| kbs.contains(&r.kb) && reader.allows(&r.readers));
        let status = match visible {
            _ if hits.len() == top_k => CandidateStatus::BelowTopK,
            Some(r) => {
                let place =
                    crate::rag::location::Location::of(&r.format, r.page, &r.heading_path, &r.text);
                hits.push(Hit {
                    location: place.label(crate::rag::lang::Lang::En),
                    place,
                    chunk,
                    text: r.text.clone(),
                    document: r.document.clone(),
                    document_id: r.document_id,
                    title: r.title.clone(),
                    page: r.page,
                    heading_path: r.heading_path.clone(),
                    char_start: r.char_start,
                    char_end: r.char_end,
                    kb: r.kb,
                    score: scores.fused,
                    scores: scores.clone(),
                });
                CandidateStatus::Hit
            }
            None if i < want.len() => CandidateStatus::Hidden,
            None => CandidateStatus::BelowTopK,
        };
        candidates.push(Candidate {
            chunk,
            rank: i + 1,
            scores,
            status,
        });
    }
    t.total_ms = start.elapsed().as_secs_f64() * 1e3;
    Ok(Search {
        hits,
        candidates,
        timings: t,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc(list: &[(u64, f32)]) -> Vec<ScoredChunk> {
        list.iter()
            .map(|&(chunk, score)| ScoredChunk { chunk, score })
            .collect()
    }

    #[test]
    fn rrf_rewards_agreement() {
        let cfg = RetrieveConfig {
            fusion: Fusion::Rrf,
            ..Default::default()
        };
        let dense = sc(&[(1, 0.9), (2, 0.8), (3, 0.7)]);
        let kw = sc(&[(2, 12.0), (4, 11.0), (1, 3.0)]);
        let f = fuse(&dense, &kw, &cfg);
        let order: Vec<u64> = f.iter().map(|x| x.0).collect();
        // 1: 1/61 + 1/63, 2: 1/62 + 1/61 → 2 first, then 1.
        assert_eq!(&order[..2], &[2, 1]);
        assert_eq!(order.len(), 4);
        let two = &f[0].1;
        assert_eq!(two.dense_rank, Some(2));
        assert_eq!(two.keyword_rank, Some(1));
        assert!((two.fused - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-6);
    }

    #[test]
    fn weighted_uses_normalised_scores() {
        let cfg = RetrieveConfig {
            fusion: Fusion::Weighted,
            dense_weight: 0.5,
            ..Default::default()
        };
        let dense = sc(&[(1, 0.9), (2, 0.5)]);
        let kw = sc(&[(2, 10.0), (3, 0.0)]);
        let f = fuse(&dense, &kw, &cfg);
        let get = |id| f.iter().find(|x| x.0 == id).unwrap().1.fused;
        assert!((get(1) - 0.5).abs() < 1e-6);
        assert!((get(2) - 0.5).abs() < 1e-6);
        assert!((get(3) - 0.0).abs() < 1e-6);
        // Ties are broken by dense rank: 1 before 2.
        assert_eq!(f[0].0, 1);
        let cfg = RetrieveConfig {
            dense_weight: 0.0,
            ..cfg
        };
        assert_eq!(fuse(&dense, &kw, &cfg)[0].0, 2);
    }

    #[test]
    fn empty_lists() {
        let cfg = RetrieveConfig::default();
        assert!(fuse(&[], &[], &cfg).is_empty());
        let f = fuse(&sc(&[(5, 0.3)]), &[], &cfg);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].1.keyword, None);
    }
}
