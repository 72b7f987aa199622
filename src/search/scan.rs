//! Exact top-k over embedding vectors: a scan of every row in scope, split over threads, each
//! keeping a bounded heap of its best rows; the heaps are merged at the end. Pure (no I/O): the
//! vectors come in as slices (memory-mapped cache files in the server, plain vectors in tests).
//!
//! Scores: `cosine` is the cosine similarity (higher is better; 0 when either vector is all
//! zeros); `euclidean` is the Euclidean distance (lower is better). Results are always ranked
//! best first, and rows whose scores are equal are ranked by (embedding set, row), so the
//! answer never depends on how the work was split.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use serde::{Deserialize, Serialize};

/// How similarity is measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Cosine similarity, in [-1, 1]; higher is better.
    #[default]
    Cosine,
    /// Euclidean distance; lower is better.
    Euclidean,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Euclidean => "euclidean",
        }
    }

    pub fn parse(text: &str) -> Option<Metric> {
        match text {
            "cosine" => Some(Metric::Cosine),
            "euclidean" => Some(Metric::Euclidean),
            _ => None,
        }
    }
}

/// The rows of one embedding set: `vectors` holds `norms.len()` rows of `dim` values, row-major;
/// `norms[row]` is the Euclidean length of that row.
#[derive(Debug, Clone, Copy)]
pub struct VectorSlab<'a> {
    pub embedding_set_id: u64,
    pub dim: usize,
    pub vectors: &'a [f32],
    pub norms: &'a [f32],
}

impl VectorSlab<'_> {
    pub fn rows(&self) -> usize {
        self.norms.len()
    }

    fn row(&self, row: usize) -> &[f32] {
        &self.vectors[row * self.dim..(row + 1) * self.dim]
    }
}

/// A row's ranking key (higher is better): cosine similarity, or the negated squared Euclidean
/// distance; a row that gives NaN ranks last. The plain scan and the compact scan's exact
/// re-scoring both rank by this, so they give the same hits.
pub(super) fn row_key(metric: Metric, query: &[f32], query_norm: f32, slab: &VectorSlab<'_>, row: usize) -> f32 {
    let vector = slab.row(row);
    let key = match metric {
        Metric::Cosine => {
            let denominator = query_norm * slab.norms[row];
            if denominator > 0.0 {
                dot(query, vector) / denominator
            } else {
                0.0
            }
        }
        Metric::Euclidean => -squared_distance(query, vector),
    };
    if key.is_nan() {
        f32::NEG_INFINITY
    } else {
        key
    }
}

/// One ranked window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub embedding_set_id: u64,
    pub row_index: u64,
    /// Cosine similarity or Euclidean distance (see [`Metric`]).
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScanError {
    #[error("the query has {query} dimensions, embedding set {embedding_set_id} has {set}")]
    DimensionMismatch { embedding_set_id: u64, query: usize, set: usize },
    #[error("embedding set {embedding_set_id} holds {values} values, not {rows} rows of {dim}")]
    MalformedSlab { embedding_set_id: u64, values: usize, rows: usize, dim: usize },
}

/// Rows per unit of work handed to a thread.
const ROWS_PER_CHUNK: usize = 4096;

/// Dot product with 16 independent accumulators, so that the compiler vectorises it.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let (chunks_a, chunks_b) = (a.chunks_exact(16), b.chunks_exact(16));
    let (rest_a, rest_b) = (chunks_a.remainder(), chunks_b.remainder());
    for (x, y) in chunks_a.zip(chunks_b) {
        for lane in 0..16 {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for (x, y) in rest_a.iter().zip(rest_b) {
        sum += x * y;
    }
    sum
}

/// Squared Euclidean distance, vectorised the same way.
pub fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let (chunks_a, chunks_b) = (a.chunks_exact(16), b.chunks_exact(16));
    let (rest_a, rest_b) = (chunks_a.remainder(), chunks_b.remainder());
    for (x, y) in chunks_a.zip(chunks_b) {
        for lane in 0..16 {
            let difference = x[lane] - y[lane];
            lanes[lane] += difference * difference;
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for (x, y) in rest_a.iter().zip(rest_b) {
        let difference = x - y;
        sum += difference * difference;
    }
    sum
}

/// Euclidean length of each row of `vectors` (`dim` values per row).
pub fn row_norms(vectors: &[f32], dim: usize) -> Vec<f32> {
    if dim == 0 {
        return Vec::new();
    }
    vectors.chunks_exact(dim).map(|row| dot(row, row).sqrt()).collect()
}

/// A candidate in a heap: `key` is higher-is-better for every metric (cosine similarity, or the
/// negated squared distance); NaN never enters (it becomes negative infinity).
#[derive(Debug, Clone, Copy)]
struct Candidate {
    key: f32,
    embedding_set_id: u64,
    row_index: u64,
}

impl Candidate {
    /// `Less` when `self` ranks before `other`.
    fn rank_order(&self, other: &Candidate) -> Ordering {
        other
            .key
            .total_cmp(&self.key)
            .then(self.embedding_set_id.cmp(&other.embedding_set_id))
            .then(self.row_index.cmp(&other.row_index))
    }
}

/// Ordered so that the heap's maximum is the worst candidate kept.
struct WorstFirst(Candidate);

impl PartialEq for WorstFirst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for WorstFirst {}
impl PartialOrd for WorstFirst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for WorstFirst {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.rank_order(&other.0)
    }
}

/// The k best candidates seen so far.
struct BoundedHeap {
    k: usize,
    heap: BinaryHeap<WorstFirst>,
}

impl BoundedHeap {
    fn new(k: usize) -> BoundedHeap {
        BoundedHeap { k, heap: BinaryHeap::with_capacity(k + 1) }
    }

    /// The key a new candidate must reach to possibly enter.
    fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.heap.peek().map_or(f32::NEG_INFINITY, |worst| worst.0.key)
        }
    }

    fn offer(&mut self, candidate: Candidate) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(WorstFirst(candidate));
        } else if let Some(worst) = self.heap.peek() {
            if candidate.rank_order(&worst.0) == Ordering::Less {
                self.heap.pop();
                self.heap.push(WorstFirst(candidate));
            }
        }
    }
}

fn scan_rows(
    query: &[f32],
    query_norm: f32,
    slab: &VectorSlab<'_>,
    rows: std::ops::Range<usize>,
    metric: Metric,
    heap: &mut BoundedHeap,
) {
    let mut threshold = heap.threshold();
    for row in rows {
        let key = row_key(metric, query, query_norm, slab, row);
        if key < threshold {
            continue;
        }
        heap.offer(Candidate { key, embedding_set_id: slab.embedding_set_id, row_index: row as u64 });
        threshold = heap.threshold();
    }
}

/// The `k` best rows over every slab, best first, computed on `threads` threads (at least one).
pub fn top_k(
    query: &[f32],
    slabs: &[VectorSlab<'_>],
    k: usize,
    metric: Metric,
    threads: usize,
) -> Result<Vec<Hit>, ScanError> {
    for slab in slabs {
        if slab.dim != query.len() {
            return Err(ScanError::DimensionMismatch {
                embedding_set_id: slab.embedding_set_id,
                query: query.len(),
                set: slab.dim,
            });
        }
        if slab.vectors.len() != slab.rows() * slab.dim {
            return Err(ScanError::MalformedSlab {
                embedding_set_id: slab.embedding_set_id,
                values: slab.vectors.len(),
                rows: slab.rows(),
                dim: slab.dim,
            });
        }
    }
    let query_norm = dot(query, query).sqrt();
    let chunks: Vec<(usize, std::ops::Range<usize>)> = slabs
        .iter()
        .enumerate()
        .flat_map(|(index, slab)| {
            (0..slab.rows())
                .step_by(ROWS_PER_CHUNK)
                .map(move |start| (index, start..(start + ROWS_PER_CHUNK).min(slab.rows())))
        })
        .collect();
    let next_chunk = AtomicUsize::new(0);
    let work = || {
        let mut heap = BoundedHeap::new(k);
        loop {
            let chunk = next_chunk.fetch_add(1, AtomicOrdering::Relaxed);
            let Some((slab, rows)) = chunks.get(chunk) else { break };
            scan_rows(query, query_norm, &slabs[*slab], rows.clone(), metric, &mut heap);
        }
        heap.heap.into_vec()
    };
    let threads = threads.clamp(1, chunks.len().max(1));
    let mut candidates: Vec<Candidate> = if threads == 1 {
        work().into_iter().map(|entry| entry.0).collect()
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
            handles
                .into_iter()
                .flat_map(|handle| handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .map(|entry| entry.0)
                .collect()
        })
    };
    candidates.sort_by(Candidate::rank_order);
    candidates.truncate(k);
    Ok(candidates
        .into_iter()
        .map(|candidate| Hit {
            embedding_set_id: candidate.embedding_set_id,
            row_index: candidate.row_index,
            score: match metric {
                Metric::Cosine => candidate.key,
                Metric::Euclidean => (-candidate.key).max(0.0).sqrt(),
            },
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: every row scored in f64, sorted, the first k.
    fn brute_force(query: &[f32], sets: &[(u64, Vec<Vec<f32>>)], k: usize, metric: Metric) -> Vec<(u64, u64, f64)> {
        let mut all = Vec::new();
        let query_norm = query.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        for (set, rows) in sets {
            for (row, vector) in rows.iter().enumerate() {
                let score = match metric {
                    Metric::Cosine => {
                        let dot: f64 = query.iter().zip(vector).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                        let norm = vector.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
                        if query_norm * norm > 0.0 {
                            dot / (query_norm * norm)
                        } else {
                            0.0
                        }
                    }
                    Metric::Euclidean => query
                        .iter()
                        .zip(vector)
                        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                        .sum::<f64>()
                        .sqrt(),
                };
                all.push((*set, row as u64, score));
            }
        }
        all.sort_by(|a, b| match metric {
            Metric::Cosine => b.2.total_cmp(&a.2),
            Metric::Euclidean => a.2.total_cmp(&b.2),
        });
        all.truncate(k);
        all
    }

    fn slabs_of(sets: &[(u64, Vec<Vec<f32>>)], dim: usize) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
        let flat: Vec<Vec<f32>> = sets.iter().map(|(_, rows)| rows.concat()).collect();
        let norms = flat.iter().map(|values| row_norms(values, dim)).collect();
        (flat, norms)
    }

    #[test]
    fn a_row_finds_itself_first_and_ties_rank_by_set_then_row() {
        let rows = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]];
        let values = rows.concat();
        let norms = row_norms(&values, 2);
        let slabs = [
            VectorSlab { embedding_set_id: 9, dim: 2, vectors: &values, norms: &norms },
            VectorSlab { embedding_set_id: 4, dim: 2, vectors: &values, norms: &norms },
        ];
        let hits = top_k(&[2.0, 0.0], &slabs, 5, Metric::Cosine, 2).unwrap();
        let order: Vec<(u64, u64)> = hits.iter().map(|hit| (hit.embedding_set_id, hit.row_index)).collect();
        assert_eq!(order, vec![(4, 0), (4, 2), (9, 0), (9, 2), (4, 1)]);
        assert!((hits[0].score - 1.0).abs() < 1e-6);
        let hits = top_k(&[0.0, 1.0], &slabs, 1, Metric::Euclidean, 1).unwrap();
        assert_eq!((hits[0].embedding_set_id, hits[0].row_index, hits[0].score), (4, 1, 0.0));
        assert!(top_k(&[1.0], &slabs, 1, Metric::Cosine, 1).is_err(), "a query of the wrong dimension is refused");
        assert!(top_k(&[1.0, 0.0], &slabs, 0, Metric::Cosine, 2).unwrap().is_empty());
    }

    #[test]
    fn all_zero_vectors_score_zero_and_nan_ranks_last() {
        let values = vec![0.0, 0.0, f32::NAN, 1.0, 1.0, 1.0];
        let norms = row_norms(&values, 2);
        let slabs = [VectorSlab { embedding_set_id: 1, dim: 2, vectors: &values, norms: &norms }];
        let hits = top_k(&[1.0, 1.0], &slabs, 3, Metric::Cosine, 1).unwrap();
        assert_eq!(hits.iter().map(|hit| hit.row_index).collect::<Vec<_>>(), vec![2, 0, 1]);
        assert_eq!(hits[1].score, 0.0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn the_scan_gives_the_brute_force_top_k(
            dim in 1usize..40,
            set_sizes in prop::collection::vec(0usize..300, 1..5),
            seed in any::<u64>(),
            k in 1usize..60,
            cosine in any::<bool>(),
            threads in 1usize..4,
            scope_mask in any::<u8>(),
        ) {
            let metric = if cosine { Metric::Cosine } else { Metric::Euclidean };
            let mut state = seed | 1;
            let mut next = move || {
                // xorshift: continuous values, ties have probability ~0.
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            };
            let all: Vec<(u64, Vec<Vec<f32>>)> = set_sizes
                .iter()
                .enumerate()
                .map(|(index, rows)| (index as u64 + 1, (0..*rows).map(|_| (0..dim).map(|_| next()).collect()).collect()))
                .collect();
            // A scope: a subset of the sets (the query may come from outside it).
            let scope: Vec<(u64, Vec<Vec<f32>>)> =
                all.iter().filter(|(id, _)| scope_mask & (1 << (id % 8)) != 0).cloned().collect();
            let query: Vec<f32> = (0..dim).map(|_| next()).collect();
            let (flat, norms) = slabs_of(&scope, dim);
            let slabs: Vec<VectorSlab<'_>> = scope
                .iter()
                .zip(flat.iter().zip(&norms))
                .map(|((id, _), (vectors, norms))| VectorSlab { embedding_set_id: *id, dim, vectors, norms })
                .collect();
            let hits = top_k(&query, &slabs, k, metric, threads).unwrap();
            let every_row = brute_force(&query, &scope, usize::MAX, metric);
            let expected = &every_row[..k.min(every_row.len())];
            prop_assert_eq!(hits.len(), expected.len());
            let mut seen = std::collections::BTreeSet::new();
            for (hit, (set, row, score)) in hits.iter().zip(expected) {
                // The score at each rank is the brute force's, and each hit's reported score is
                // its own true score: the same top-k, ties (within rounding) aside.
                prop_assert!((f64::from(hit.score) - score).abs() < 1e-4, "{:?} vs {}:{} {}", hit, set, row, score);
                let own = every_row.iter().find(|e| (e.0, e.1) == (hit.embedding_set_id, hit.row_index));
                prop_assert!(own.is_some_and(|own| (own.2 - f64::from(hit.score)).abs() < 1e-4), "{:?}", hit);
                prop_assert!(seen.insert((hit.embedding_set_id, hit.row_index)), "{:?} twice", hit);
            }
        }
    }
}
