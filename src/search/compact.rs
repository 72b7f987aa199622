//! A compact scan copy: each vector as int8 codes with one scale per vector, scanned first to
//! bound every row's score from above and below; only the rows whose upper bound reaches the
//! k-th best lower bound are scored again from the f32 vectors, with the same kernel as
//! [`super::scan::top_k`]. So the answer is exactly the f32 scan's (same rows, same scores to the
//! bit, same tie order), while the pass over all rows reads a quarter of the bytes and works in
//! integers.
//!
//! The bounds: a row is v = s c + e with int8 codes c, scale s and `residual` >= |e|; the query
//! is q = t d + f with int16 codes d (at most 2047, fewer for very long vectors, so that the
//! integer dot product d.c cannot overflow), scale t and |f| <= r. Then
//! |q.v - t s (d.c)| <= |t d| |e| + r |v| = E, and d.c is exact. The f32 kernels' own scores
//! differ from the real-number ones by at most g |q| |v| (cosine) or g (|q| + |v|)^2 (squared
//! distance), with g = 2 (n + 4) u / (1 - (n + 4) u) for n dimensions and u = 2^-24 (twice the
//! textbook bound), and the norms they divide by by a relative g each; all of that is added.

use std::cmp::Ordering;

use super::scan::{dot, row_key, Hit, Metric, ScanError, VectorSlab};

/// The int8 copy of one set, beside its f32 vectors.
#[derive(Debug, Clone, Copy)]
pub struct CompactSlab<'a> {
    pub exact: VectorSlab<'a>,
    /// Row-major codes, `dim` per row.
    pub codes: &'a [i8],
    pub scales: &'a [f32],
    /// Upper bounds of |v - scale * codes|.
    pub residuals: &'a [f32],
}

/// One row quantised: codes, scale, and an upper bound of the residual.
pub fn quantize_row(vector: &[f32]) -> (Vec<i8>, f32, f32) {
    let largest =
        vector.iter().fold(0.0f32, |largest, value| if value.is_finite() { largest.max(value.abs()) } else { largest });
    let scale = if largest > 0.0 { largest / 127.0 } else { 0.0 };
    let codes: Vec<i8> = vector
        .iter()
        .map(
            |value| {
                if scale > 0.0 && value.is_finite() {
                    (value / scale).round().clamp(-127.0, 127.0) as i8
                } else {
                    0
                }
            },
        )
        .collect();
    let residual = vector
        .iter()
        .zip(&codes)
        .map(|(value, code)| (f64::from(*value) - f64::from(scale) * f64::from(*code)).powi(2))
        .sum::<f64>()
        .sqrt();
    (codes, scale, round_up(residual))
}

/// An f32 not below `value` (>= 0), one step above the nearest, covering the conversion itself;
/// infinity when it does not fit.
fn round_up(value: f64) -> f32 {
    let next_up = |x: f32| if x.is_finite() { f32::from_bits(x.to_bits() + 1) } else { f32::INFINITY };
    let rounded = value as f32;
    let up = if f64::from(rounded) < value { next_up(rounded) } else { rounded };
    next_up(up)
}

/// The exact integer dot product of the query's codes and a row's codes. The query's codes are
/// bounded (see [`QuantizedQuery`]) so that the sum never overflows.
pub fn dot_codes(query_codes: &[i16], codes: &[i8]) -> i32 {
    // Widen 32 codes to i16 first: an i16 x i16 sum of products is the shape compilers turn
    // into multiply-add instructions (pmaddwd) over whole registers.
    let (query_chunks, code_chunks) = (query_codes.chunks_exact(32), codes.chunks_exact(32));
    let rest: i32 =
        query_chunks.remainder().iter().zip(code_chunks.remainder()).map(|(d, c)| i32::from(*d) * i32::from(*c)).sum();
    let mut total = rest;
    for (query_chunk, code_chunk) in query_chunks.zip(code_chunks) {
        let mut wide = [0i16; 32];
        for (wide, code) in wide.iter_mut().zip(code_chunk) {
            *wide = i16::from(*code);
        }
        total += query_chunk.iter().zip(&wide).map(|(d, c)| i32::from(*d) * i32::from(*c)).sum::<i32>();
    }
    total
}

/// The query as int16 codes `codes` times `scale`, `residual` >= |query - scale * codes|.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedQuery {
    pub codes: Vec<i16>,
    pub scale: f64,
    /// |scale * codes|, rounded up.
    pub norm: f64,
    pub residual: f64,
}

/// Quantises a query so that `dim * levels * 127` fits in an i32; `None` for a query too long
/// (over 8 million dimensions) or not finite, which the caller scans in f32.
pub fn quantize_query(query: &[f32]) -> Option<QuantizedQuery> {
    let levels = (f64::from(i32::MAX) / (query.len().max(1) as f64 * 127.0)).floor().min(2047.0);
    if levels < 1.0 || query.iter().any(|value| !value.is_finite()) {
        return None;
    }
    let largest = query.iter().fold(0.0f64, |largest, value| largest.max(f64::from(value.abs())));
    let scale = if largest > 0.0 { largest / levels } else { 0.0 };
    let codes: Vec<i16> = query
        .iter()
        .map(|value| if scale > 0.0 { (f64::from(*value) / scale).round().clamp(-levels, levels) as i16 } else { 0 })
        .collect();
    let norm = codes.iter().map(|code| (scale * f64::from(*code)).powi(2)).sum::<f64>().sqrt();
    let residual = query
        .iter()
        .zip(&codes)
        .map(|(value, code)| (f64::from(*value) - scale * f64::from(*code)).powi(2))
        .sum::<f64>()
        .sqrt();
    // f64 rounding in these sums is far below the f32 terms the bounds add; 1e-9 covers it.
    Some(QuantizedQuery { codes, scale, norm: norm * (1.0 + 1e-9), residual: residual * (1.0 + 1e-9) + 1e-30 })
}

fn gamma(dim: usize) -> f64 {
    let nu = (dim as f64 + 4.0) * f64::from(f32::EPSILON) / 2.0;
    2.0 * nu / (1.0 - nu)
}

/// Bounds (lower, upper) of the key `top_k` ranks by (cosine similarity, or minus the squared
/// distance) for one row; `None` when the row must be scored exactly (a zero or non-finite norm).
fn key_bounds(
    metric: Metric,
    integer_dot: i32,
    slab: &CompactSlab<'_>,
    row: usize,
    query: &QuantizedQuery,
    query_norm: f64,
    g: f64,
) -> Option<(f64, f64)> {
    let scale = f64::from(slab.scales[row]);
    let norm = f64::from(slab.exact.norms[row]);
    let dot = query.scale * scale * f64::from(integer_dot);
    let dot_error = (query.norm * f64::from(slab.residuals[row]) + query.residual * norm * (1.0 + 2.0 * g))
        * (1.0 + 1e-9)
        + dot.abs() * 1e-12;
    // Far from any embedding's range the f32 kernels could overflow: score those rows exactly.
    const LARGEST_BOUNDED_NORM: f64 = 1e15;
    if !(dot.is_finite() && dot_error.is_finite() && norm <= LARGEST_BOUNDED_NORM && query_norm <= LARGEST_BOUNDED_NORM)
    {
        return None;
    }
    match metric {
        Metric::Cosine => {
            let denominator = query_norm * norm;
            if denominator <= 0.0 {
                return None;
            }
            let centre = dot / denominator;
            // The dot's error, the f32 kernel's own error, and the norms' relative errors.
            let slack = (dot_error + g * denominator) / denominator * (1.0 + 4.0 * g) + 4.0 * g * (centre.abs() + 1.0);
            Some((centre - slack, centre + slack))
        }
        Metric::Euclidean => {
            let centre = query_norm * query_norm + norm * norm - 2.0 * dot;
            let magnitude = (query_norm + norm) * (query_norm + norm);
            let slack = 2.0 * dot_error * (1.0 + g) + 4.0 * g * magnitude;
            Some((-(centre + slack), -(centre - slack)))
        }
    }
}

/// The same answer as [`super::scan::top_k`] on the f32 vectors, scanning the int8 codes first.
/// Returns the hits and how many rows were scored exactly.
pub fn compact_top_k(
    query: &[f32],
    slabs: &[CompactSlab<'_>],
    k: usize,
    metric: Metric,
    threads: usize,
) -> Result<(Vec<Hit>, usize), ScanError> {
    for slab in slabs {
        let exact = &slab.exact;
        if exact.dim != query.len() {
            return Err(ScanError::DimensionMismatch {
                embedding_set_id: exact.embedding_set_id,
                query: query.len(),
                set: exact.dim,
            });
        }
        let rows = exact.rows();
        if exact.vectors.len() != rows * exact.dim
            || slab.codes.len() != rows * exact.dim
            || slab.scales.len() != rows
            || slab.residuals.len() != rows
        {
            return Err(ScanError::MalformedSlab {
                embedding_set_id: exact.embedding_set_id,
                values: slab.codes.len(),
                rows,
                dim: exact.dim,
            });
        }
    }
    if k == 0 {
        return Ok((Vec::new(), 0));
    }
    let query_norm_f32 = dot(query, query).sqrt();
    let query_norm = f64::from(query_norm_f32);
    let Some(quantized) = quantize_query(query) else {
        let exact: Vec<VectorSlab<'_>> = slabs.iter().map(|slab| slab.exact).collect();
        let rows = exact.iter().map(VectorSlab::rows).sum();
        return Ok((super::scan::top_k(query, &exact, k, metric, threads)?, rows));
    };
    let g = gamma(query.len());
    const CHUNK: usize = 4096;
    let chunks: Vec<(usize, usize)> = slabs
        .iter()
        .enumerate()
        .flat_map(|(index, slab)| (0..slab.exact.rows()).step_by(CHUNK).map(move |start| (index, start)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    // Pass 1, per thread: the k best lower bounds (a min-heap) and every row whose upper bound
    // reached the k-th best lower bound when it was seen.
    let work = || {
        let mut lowers: std::collections::BinaryHeap<std::cmp::Reverse<OrderedF64>> =
            std::collections::BinaryHeap::new();
        let mut candidates: Vec<(usize, usize, f64)> = Vec::new();
        loop {
            let chunk = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&(index, start)) = chunks.get(chunk) else { break };
            let slab = &slabs[index];
            let dim = slab.exact.dim;
            for row in start..(start + CHUNK).min(slab.exact.rows()) {
                let integer_dot = dot_codes(&quantized.codes, &slab.codes[row * dim..(row + 1) * dim]);
                let threshold = if lowers.len() < k {
                    f64::NEG_INFINITY
                } else {
                    lowers.peek().map_or(f64::NEG_INFINITY, |low| low.0 .0)
                };
                match key_bounds(metric, integer_dot, slab, row, &quantized, query_norm, g) {
                    Some((lower, upper)) => {
                        if upper < threshold {
                            continue;
                        }
                        candidates.push((index, row, upper));
                        if lowers.len() < k {
                            lowers.push(std::cmp::Reverse(OrderedF64(lower)));
                        } else if lower > threshold {
                            lowers.pop();
                            lowers.push(std::cmp::Reverse(OrderedF64(lower)));
                        }
                    }
                    None => candidates.push((index, row, f64::INFINITY)),
                }
            }
        }
        (lowers.into_iter().map(|low| low.0 .0).collect::<Vec<f64>>(), candidates)
    };
    let threads = threads.clamp(1, chunks.len().max(1));
    let parts: Vec<ThreadPart> = if threads == 1 {
        vec![work()]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
            handles
                .into_iter()
                .map(|handle| handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect()
        })
    };
    // The k-th best lower bound over all threads: at least k rows score at least this much.
    let mut all_lowers: Vec<f64> = parts.iter().flat_map(|(lowers, _)| lowers.iter().copied()).collect();
    all_lowers.sort_by(|a, b| b.total_cmp(a));
    let threshold = if all_lowers.len() >= k { all_lowers[k - 1] } else { f64::NEG_INFINITY };
    // Pass 2: score the remaining candidates exactly, as the f32 scan does.
    let mut scored: Vec<(f32, u64, u64)> = parts
        .iter()
        .flat_map(|(_, candidates)| candidates.iter())
        .filter(|(_, _, upper)| *upper >= threshold)
        .map(|&(index, row, _)| {
            let exact = &slabs[index].exact;
            (row_key(metric, query, query_norm_f32, exact, row), exact.embedding_set_id, row as u64)
        })
        .collect();
    let rescored = scored.len();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    scored.truncate(k);
    let hits = scored
        .into_iter()
        .map(|(key, embedding_set_id, row_index)| Hit {
            embedding_set_id,
            row_index,
            score: match metric {
                Metric::Cosine => key,
                Metric::Euclidean => (-key).max(0.0).sqrt(),
            },
        })
        .collect();
    Ok((hits, rescored))
}

/// What one thread of the pre-scan found: its k best lower bounds, and its candidate rows
/// (slab, row, upper bound).
type ThreadPart = (Vec<f64>, Vec<(usize, usize, f64)>);

#[derive(Debug, Clone, Copy, PartialEq)]
struct OrderedF64(f64);
impl Eq for OrderedF64 {}
impl PartialOrd for OrderedF64 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrderedF64 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::scan::{row_norms, top_k};
    use proptest::prelude::*;

    struct Owned {
        id: u64,
        vectors: Vec<f32>,
        norms: Vec<f32>,
        codes: Vec<i8>,
        scales: Vec<f32>,
        residuals: Vec<f32>,
    }

    fn owned(id: u64, vectors: Vec<f32>, dim: usize) -> Owned {
        let norms = row_norms(&vectors, dim);
        let mut set = Owned { id, vectors, norms, codes: vec![], scales: vec![], residuals: vec![] };
        for row in set.vectors.chunks_exact(dim) {
            let (codes, scale, residual) = quantize_row(row);
            set.codes.extend(codes);
            set.scales.push(scale);
            set.residuals.push(residual);
        }
        set
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        #[test]
        fn the_compact_scan_gives_exactly_the_f32_scan_s_answer(
            dim in 1usize..70,
            set_sizes in prop::collection::vec(0usize..400, 1..4),
            seed in any::<u64>(),
            k in 1usize..40,
            cosine in any::<bool>(),
            threads in 1usize..3,
            // Few distinct values make many exact ties and near-ties; many make none.
            levels in prop::sample::select(vec![3u64, 17, 1 << 20]),
            duplicate_query in any::<bool>(),
        ) {
            let metric = if cosine { Metric::Cosine } else { Metric::Euclidean };
            let mut state = seed | 1;
            let mut next = move || {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                ((state >> 11) % levels) as f32 / levels as f32 * 4.0 - 2.0
            };
            let sets: Vec<Owned> = set_sizes
                .iter()
                .enumerate()
                .map(|(index, rows)| owned(index as u64 + 1, (0..rows * dim).map(|_| next()).collect(), dim))
                .collect();
            let mut query: Vec<f32> = (0..dim).map(|_| next()).collect();
            if duplicate_query && !sets[0].vectors.is_empty() {
                query = sets[0].vectors[..dim].to_vec();
            }
            let exact: Vec<VectorSlab<'_>> = sets
                .iter()
                .map(|set| VectorSlab { embedding_set_id: set.id, dim, vectors: &set.vectors, norms: &set.norms })
                .collect();
            let compact: Vec<CompactSlab<'_>> = sets
                .iter()
                .zip(&exact)
                .map(|(set, exact)| CompactSlab {
                    exact: *exact,
                    codes: &set.codes,
                    scales: &set.scales,
                    residuals: &set.residuals,
                })
                .collect();
            let expected = top_k(&query, &exact, k, metric, 1).unwrap();
            let (hits, rescored) = compact_top_k(&query, &compact, k, metric, threads).unwrap();
            prop_assert_eq!(hits.len(), expected.len());
            for (hit, want) in hits.iter().zip(&expected) {
                prop_assert_eq!((hit.embedding_set_id, hit.row_index), (want.embedding_set_id, want.row_index));
                prop_assert_eq!(hit.score.to_bits(), want.score.to_bits());
            }
            prop_assert!(rescored >= hits.len());
        }
    }

    #[test]
    fn the_integer_dot_product_is_exact() {
        for dim in [1usize, 31, 32, 33, 100, 1280] {
            let query: Vec<i16> = (0..dim).map(|i| ((i * 37) % 4095) as i16 - 2047).collect();
            let codes: Vec<i8> = (0..dim).map(|i| ((i * 11) % 255) as i8).collect();
            let expected: i64 = query.iter().zip(&codes).map(|(d, c)| i64::from(*d) * i64::from(*c)).sum();
            assert_eq!(i64::from(dot_codes(&query, &codes)), expected, "{dim}");
        }
    }

    #[test]
    fn quantising_bounds_the_residual() {
        let vector: Vec<f32> = (0..1280).map(|i| ((i * 7919) % 1000) as f32 / 333.0 - 1.5).collect();
        let (codes, scale, residual) = quantize_row(&vector);
        let true_residual: f64 = vector
            .iter()
            .zip(&codes)
            .map(|(v, c)| (f64::from(*v) - f64::from(scale) * f64::from(*c)).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(f64::from(residual) >= true_residual && f64::from(residual) < true_residual * 1.001 + 1e-6);
        assert!(true_residual / f64::from(row_norms(&vector, 1280).iter().sum::<f32>()) < 0.01);
        assert_eq!(quantize_row(&[0.0, 0.0]).1, 0.0);
    }
}
