//! The contract every [`VectorStore`] implementation passes, plus test helpers.
//!
//! [`run_all`] takes an `open(dim)` function that opens (or connects to) the *same* store
//! location on every call, so it can check reopening: durability and dimension mismatch.
//! Each check starts from `clear()`, and every store the suite opens is dropped before the
//! next `open` (the embedded store refuses a second concurrent open of one directory).

use super::{
    ChunkId, DocId, KbId, Reader, Result, ScoredChunk, VectorError, VectorPoint, VectorStore,
};

/// Dimension used by the contract checks.
pub(crate) const DIM: usize = 8;
const EPS: f32 = 1e-3;

pub(crate) type Open<'a> = &'a dyn Fn(usize) -> Result<Box<dyn VectorStore>>;

/// Run every contract check against the store that `open` opens.
pub(crate) fn run_all(open: Open<'_>) {
    nearest_first_with_cosine_scores(open);
    kb_filter(open);
    readers_filter(open);
    set_readers_changes_only_the_filter(open);
    upsert_replaces(open);
    delete_documents_removes_exactly_those(open);
    delete_chunks_removes_exactly_those(open);
    count_and_clear(open);
    limit_respected(open);
    durable_across_reopen(open);
    dimension_checks(open);
}

fn fresh(open: Open<'_>) -> Box<dyn VectorStore> {
    let store = open(DIM).expect("open store");
    assert_eq!(store.dim(), DIM);
    store.clear().expect("clear");
    assert_eq!(store.count().unwrap(), 0, "clear leaves no point");
    store
}

/// Unit basis vector `i` of [`DIM`] scaled by `s`.
fn e(i: usize, s: f32) -> Vec<f32> {
    let mut v = vec![0.0; DIM];
    v[i] = s;
    v
}

fn point(chunk: ChunkId, kb: KbId, doc: DocId, vector: Vec<f32>) -> VectorPoint {
    VectorPoint {
        chunk,
        kb,
        doc,
        readers: vec!["*".into()],
        vector,
    }
}

fn restricted(chunk: ChunkId, kb: KbId, readers: &[&str], vector: Vec<f32>) -> VectorPoint {
    VectorPoint {
        readers: readers.iter().map(|r| r.to_string()).collect(),
        ..point(chunk, kb, chunk as DocId, vector)
    }
}

/// Close to `e(0, 1.0)` but not the same direction (cosine ≈ 0.95).
fn near_e0() -> Vec<f32> {
    let mut v = e(0, 0.9);
    v[1] = 0.3;
    v
}

fn principals(p: &[&str]) -> Reader {
    Reader::Principals(p.iter().map(|r| r.to_string()).collect())
}

fn ids(hits: &[ScoredChunk]) -> Vec<ChunkId> {
    hits.iter().map(|h| h.chunk).collect()
}

fn assert_valid_scores(hits: &[ScoredChunk]) {
    for h in hits {
        assert!(
            (-1.0..=1.0).contains(&h.score),
            "cosine score out of [-1, 1]: {hits:?}"
        );
    }
    assert!(
        hits.windows(2).all(|w| w[0].score >= w[1].score),
        "hits not best first: {hits:?}"
    );
}

fn nearest_first_with_cosine_scores(open: Open<'_>) {
    let store = fresh(open);
    let diag: Vec<f32> = (0..DIM)
        .map(|i| if i < 2 { 3.0 } else { 0.0 })
        .collect::<Vec<_>>();
    store
        .upsert(&[
            point(4, 1, 1, e(0, -2.0)), // opposite: cos -1
            point(3, 1, 1, e(1, 5.0)),  // orthogonal: cos 0
            point(2, 1, 1, diag),       // 45°: cos 0.707
            point(1, 1, 1, e(0, 0.5)),  // same direction, other length: cos 1
        ])
        .unwrap();
    let hits = store.search(&e(0, 7.0), &[1], 10).unwrap();
    assert_eq!(ids(&hits), vec![1, 2, 3, 4], "{hits:?}");
    assert_valid_scores(&hits);
    let expected = [1.0, std::f32::consts::FRAC_1_SQRT_2, 0.0, -1.0];
    for (h, want) in hits.iter().zip(expected) {
        assert!((h.score - want).abs() < EPS, "{hits:?}");
    }
}

fn kb_filter(open: Open<'_>) {
    let store = fresh(open);
    store
        .upsert(&[
            point(10, 1, 1, e(1, 1.0)),
            point(11, 1, 1, e(2, 1.0)),
            point(20, 2, 2, e(0, 1.0)), // exact match, other kb
        ])
        .unwrap();
    let query = e(0, 1.0);
    let hits = store.search(&query, &[1], 10).unwrap();
    assert!(!ids(&hits).contains(&20), "kb 2 leaked into kb 1: {hits:?}");
    assert_eq!(hits.len(), 2);
    let hits = store.search(&query, &[1, 2], 10).unwrap();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0].chunk, 20);
    let hits = store.search(&query, &[2], 10).unwrap();
    assert_eq!(ids(&hits), vec![20]);
    assert!(store.search(&query, &[], 10).unwrap().is_empty());
    assert!(store.search(&query, &[3], 10).unwrap().is_empty());
}

/// Chunks come back only to readers holding one of their principals, filtered inside the
/// store (the exact match of a restricted chunk is not in the top hits of others), and the
/// knowledge-base filter still applies on top.
fn readers_filter(open: Open<'_>) {
    let store = fresh(open);
    store
        .upsert(&[
            restricted(1, 1, &["g:7"], e(0, 1.0)), // exact match, group 7 only
            restricted(2, 1, &["g:7", "g:8"], near_e0()), // groups 7 and 8
            point(3, 1, 3, e(1, 1.0)),             // everyone
            restricted(4, 2, &["g:8"], e(0, 1.0)), // other kb
        ])
        .unwrap();
    let query = e(0, 1.0);
    let hits = store
        .search_as(&query, &[1], &principals(&["*"]), 10)
        .unwrap();
    assert_eq!(ids(&hits), vec![3], "a reader without groups: {hits:?}");
    let hits = store
        .search_as(&query, &[1], &principals(&["*", "g:8"]), 1)
        .unwrap();
    assert_eq!(ids(&hits), vec![2], "group 8's best match: {hits:?}");
    let hits = store
        .search_as(&query, &[1], &principals(&["*", "g:7"]), 10)
        .unwrap();
    assert_eq!(ids(&hits), vec![1, 2, 3]);
    let hits = store
        .search_as(&query, &[1, 2], &principals(&["*", "g:8"]), 10)
        .unwrap();
    assert_eq!(ids(&hits).len(), 3);
    assert!(!ids(&hits).contains(&1), "{hits:?}");
    // No `*`: only the restricted chunks of that group.
    let hits = store
        .search_as(&query, &[1], &principals(&["g:7"]), 10)
        .unwrap();
    assert_eq!(ids(&hits), vec![1, 2]);
    let hits = store.search_as(&query, &[1], &principals(&[]), 10).unwrap();
    assert!(hits.is_empty(), "no principal reads nothing: {hits:?}");
    let hits = store.search_as(&query, &[1], &Reader::All, 10).unwrap();
    assert_eq!(ids(&hits), vec![1, 2, 3]);
    assert_eq!(ids(&store.search(&query, &[1], 10).unwrap()), vec![1, 2, 3]);
}

/// `set_readers` moves chunks between readers without touching their vectors, ignores
/// unknown ids, and lasts across a reopen.
fn set_readers_changes_only_the_filter(open: Open<'_>) {
    let store = fresh(open);
    store
        .upsert(&[point(1, 1, 1, e(0, 1.0)), point(2, 1, 1, e(1, 1.0))])
        .unwrap();
    let everyone = principals(&["*"]);
    let query = e(0, 1.0);
    assert_eq!(
        ids(&store.search_as(&query, &[1], &everyone, 10).unwrap()),
        vec![1, 2]
    );
    store
        .set_readers(&[(1, vec!["g:5".into()]), (999, vec!["g:5".into()])])
        .unwrap();
    store.set_readers(&[]).unwrap();
    assert_eq!(store.count().unwrap(), 2, "an unknown id adds no point");
    assert_eq!(
        ids(&store.search_as(&query, &[1], &everyone, 10).unwrap()),
        vec![2]
    );
    let hits = store
        .search_as(&query, &[1], &principals(&["*", "g:5"]), 10)
        .unwrap();
    assert_eq!(ids(&hits), vec![1, 2]);
    assert!(
        (hits[0].score - 1.0).abs() < EPS,
        "the vector is kept: {hits:?}"
    );
    drop(store);
    let store = open(DIM).expect("reopen");
    assert_eq!(
        ids(&store.search_as(&query, &[1], &everyone, 10).unwrap()),
        vec![2]
    );
    store.set_readers(&[(1, vec!["*".into()])]).unwrap();
    assert_eq!(
        ids(&store.search_as(&query, &[1], &everyone, 10).unwrap()),
        vec![1, 2]
    );
    // The kb and doc payload survive: deleting the document removes the point.
    store.delete_documents(&[1]).unwrap();
    assert_eq!(store.count().unwrap(), 0);
}

fn upsert_replaces(open: Open<'_>) {
    let store = fresh(open);
    store
        .upsert(&[point(1, 1, 1, e(0, 1.0)), point(2, 1, 1, e(3, 1.0))])
        .unwrap();
    // Same chunk id: new vector, kb and doc.
    store.upsert(&[point(1, 2, 2, e(1, 1.0))]).unwrap();
    assert_eq!(store.count().unwrap(), 2);
    let hits = store.search(&e(1, 1.0), &[2], 10).unwrap();
    assert_eq!(ids(&hits), vec![1]);
    assert!((hits[0].score - 1.0).abs() < EPS);
    let hits = store.search(&e(0, 1.0), &[1], 10).unwrap();
    assert_eq!(ids(&hits), vec![2], "old kb must not keep the chunk");
    // The old doc no longer owns the chunk; the new one does.
    store.delete_documents(&[1]).unwrap();
    assert_eq!(store.count().unwrap(), 1);
    store.delete_documents(&[2]).unwrap();
    assert_eq!(store.count().unwrap(), 0);
    // Replacing only the vector keeps the point count.
    store
        .upsert(&[point(5, 1, 1, e(0, 1.0)), point(6, 1, 1, e(1, 1.0))])
        .unwrap();
    store.upsert(&[point(5, 1, 1, e(2, 1.0))]).unwrap();
    assert_eq!(store.count().unwrap(), 2);
    let hits = store.search(&e(2, 1.0), &[1], 1).unwrap();
    assert_eq!(ids(&hits), vec![5]);
    assert!((hits[0].score - 1.0).abs() < EPS);
}

fn delete_documents_removes_exactly_those(open: Open<'_>) {
    let store = fresh(open);
    let mut rng = Rng::new(1);
    let points: Vec<VectorPoint> = (0..30)
        .map(|i| {
            point(
                i,
                1 + (i % 2) as KbId,
                100 + (i / 10) as DocId,
                rng.unit_vector(DIM),
            )
        })
        .collect();
    store.upsert(&points).unwrap();
    assert_eq!(store.count().unwrap(), 30);
    store.delete_documents(&[]).unwrap();
    store.delete_documents(&[999]).unwrap();
    assert_eq!(store.count().unwrap(), 30);
    store.delete_documents(&[100, 102]).unwrap();
    assert_eq!(store.count().unwrap(), 10);
    for p in &points {
        let hits = store.search(&p.vector, &[1, 2], 30).unwrap();
        let found = ids(&hits).contains(&p.chunk);
        assert_eq!(found, p.doc == 101, "chunk {} of doc {}", p.chunk, p.doc);
    }
}

fn delete_chunks_removes_exactly_those(open: Open<'_>) {
    let store = fresh(open);
    let mut rng = Rng::new(2);
    let points: Vec<VectorPoint> = (0..20)
        .map(|i| point(i, 1, 100 + (i / 10) as DocId, rng.unit_vector(DIM)))
        .collect();
    store.upsert(&points).unwrap();
    store.delete_chunks(&[]).unwrap();
    store.delete_chunks(&[999]).unwrap();
    assert_eq!(store.count().unwrap(), 20);
    store.delete_chunks(&[3, 15]).unwrap();
    assert_eq!(store.count().unwrap(), 18);
    for p in &points {
        let hits = store.search(&p.vector, &[1], 20).unwrap();
        let found = ids(&hits).contains(&p.chunk);
        assert_eq!(found, p.chunk != 3 && p.chunk != 15, "chunk {}", p.chunk);
    }
    // A deleted chunk comes back when upserted again.
    store.upsert(&points[3..4]).unwrap();
    assert_eq!(store.count().unwrap(), 19);
}

fn count_and_clear(open: Open<'_>) {
    let store = fresh(open);
    let mut rng = Rng::new(2);
    let points: Vec<VectorPoint> = (0..25)
        .map(|i| point(1000 + i, 1, 1, rng.unit_vector(DIM)))
        .collect();
    store.upsert(&points[..10]).unwrap();
    assert_eq!(store.count().unwrap(), 10);
    store.upsert(&points).unwrap();
    assert_eq!(store.count().unwrap(), 25);
    store.upsert(&[]).unwrap();
    assert_eq!(store.count().unwrap(), 25);
    store.clear().unwrap();
    assert_eq!(store.count().unwrap(), 0);
    assert!(store.search(&points[0].vector, &[1], 5).unwrap().is_empty());
    store.upsert(&points[..3]).unwrap();
    assert_eq!(store.count().unwrap(), 3);
    store.optimize().unwrap();
    assert_eq!(store.count().unwrap(), 3);
}

fn limit_respected(open: Open<'_>) {
    let store = fresh(open);
    let mut rng = Rng::new(3);
    let points: Vec<VectorPoint> = (0..20)
        .map(|i| point(i, 1, 1, rng.unit_vector(DIM)))
        .collect();
    store.upsert(&points).unwrap();
    let query = rng.unit_vector(DIM);
    let five = store.search(&query, &[1], 5).unwrap();
    assert_eq!(five.len(), 5);
    assert_valid_scores(&five);
    assert!(store.search(&query, &[1], 0).unwrap().is_empty());
    let all = store.search(&query, &[1], 100).unwrap();
    assert_eq!(all.len(), 20);
    assert_valid_scores(&all);
    assert_eq!(ids(&all[..5]), ids(&five));
    // Brute force agrees on the order (distinct random scores).
    let mut expected: Vec<(f32, ChunkId)> = points
        .iter()
        .map(|p| (cosine(&p.vector, &query), p.chunk))
        .collect();
    expected.sort_by(|a, b| b.0.total_cmp(&a.0));
    assert_eq!(
        ids(&all),
        expected.iter().map(|(_, c)| *c).collect::<Vec<_>>()
    );
    for (h, (s, _)) in all.iter().zip(&expected) {
        assert!((h.score - s).abs() < EPS, "score {} vs {s}", h.score);
    }
}

fn durable_across_reopen(open: Open<'_>) {
    let mut rng = Rng::new(4);
    let points: Vec<VectorPoint> = (0..50)
        .map(|i| {
            point(
                500 + i,
                1 + (i % 2) as KbId,
                (i / 5) as DocId,
                rng.unit_vector(DIM),
            )
        })
        .collect();
    let query = rng.unit_vector(DIM);
    let before = {
        let store = fresh(open);
        store.upsert(&points).unwrap();
        store.delete_documents(&[0]).unwrap();
        store.search(&query, &[1, 2], 10).unwrap()
    };
    let store = open(DIM).expect("reopen");
    assert_eq!(store.count().unwrap(), 45);
    let after = store.search(&query, &[1, 2], 10).unwrap();
    assert_eq!(ids(&before), ids(&after));
    // Writes after a reopen are durable too, and an optimised store reopens.
    store.delete_documents(&[1]).unwrap();
    store.upsert(&[point(9999, 1, 77, query.clone())]).unwrap();
    store.optimize().unwrap();
    drop(store);
    let store = open(DIM).expect("reopen");
    assert_eq!(store.count().unwrap(), 41);
    let hits = store.search(&query, &[1], 1).unwrap();
    assert_eq!(ids(&hits), vec![9999]);
}

fn dimension_checks(open: Open<'_>) {
    let store = fresh(open);
    store.upsert(&[point(1, 1, 1, e(0, 1.0))]).unwrap();
    let err = store
        .upsert(&[point(2, 1, 1, vec![1.0; DIM + 1])])
        .unwrap_err();
    assert!(
        matches!(err, VectorError::Dimension { stored: DIM, given } if given == DIM + 1),
        "{err}"
    );
    let err = store.search(&[1.0; DIM - 1], &[1], 3).unwrap_err();
    assert!(matches!(err, VectorError::Dimension { .. }), "{err}");
    assert_eq!(store.count().unwrap(), 1);
    drop(store);
    match open(DIM + 8) {
        Err(VectorError::Dimension { stored, given }) => {
            assert_eq!((stored, given), (DIM, DIM + 8));
        }
        Err(other) => panic!("expected a dimension error, got {other}"),
        Ok(_) => panic!("reopening with another dimension must fail"),
    }
    // The store is untouched by the refused open.
    let store = open(DIM).expect("reopen");
    assert_eq!(store.count().unwrap(), 1);
}

/// Cosine similarity.
pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// Exact nearest chunk by cosine among `points` in `kbs`.
pub(crate) fn brute_force_top1(points: &[VectorPoint], query: &[f32], kbs: &[KbId]) -> ChunkId {
    points
        .iter()
        .filter(|p| kbs.contains(&p.kb))
        .map(|p| (cosine(&p.vector, query), p.chunk))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .expect("no point in these kbs")
        .1
}

/// Small deterministic PRNG for tests (SplitMix64), so no `rand` dependency is needed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    pub(crate) fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }

    /// Standard normal (Box–Muller).
    pub(crate) fn normal(&mut self) -> f32 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }

    /// Random direction, unit length.
    pub(crate) fn unit_vector(&mut self, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dim).map(|_| self.normal()).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }
}
