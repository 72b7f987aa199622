//! UMAP, our own implementation of umap-learn's algorithm (McInnes, Healy & Melville 2018):
//!
//! 1. kNN graph (self included): exact below `EXACT_KNN_LIMIT` rows (umap-learn's threshold),
//!    above it approximate (random-projection forest, then NN-descent; see `knn.rs`);
//! 2. fuzzy simplicial set: per-row `rho` (nearest non-zero distance) and `sigma` by the
//!    smooth-kNN binary search to `log2(k)`, memberships `exp(-(d - rho) / sigma)`;
//! 3. symmetrisation by fuzzy union `A + A^T - A∘A^T`, pruning of weights below
//!    `max / n_epochs`;
//! 4. initialisation: PCA of the (possibly normalised) data, scaled as umap-learn's
//!    `init="pca"` does (max |coordinate| 10, noise 1e-4), then min-max to [0, 10]
//!    (spectral initialisation is left out);
//! 5. SGD with `1 / (1 + a d^(2b))` (a, b fitted from `min_dist` like `find_ab_params`),
//!    the attractive gradient `-2ab d^(2(b-1)) / (1 + a d^(2b))`, 5 negative samples per
//!    positive with the repulsive gradient `2b / ((0.001 + d^2)(1 + a d^(2b)))`, clipped at
//!    4, learning rate decaying linearly from 1. On every core: the head rows are cut into
//!    blocks that threads take as they become free; a block moves only its own rows and reads the
//!    other rows as they were at the start of the epoch (each pair is in the edge list both ways,
//!    so the attraction is doubled to match umap-learn's `move_other`), and negative samples come
//!    from a counter-based generator: a seed fixes the result whatever the thread count. Unlike
//!    umap-learn, which moves the row after every sample, an edge's attraction and its negative
//!    samples are evaluated together (8 at a time, in vector registers) against the row's
//!    position before them, and their clipped steps added up.

use std::time::Instant;

use super::knn::{approximate_knn, exact_knn, ApproximateSearch, NeighborLists};
use super::parameters::{DistanceMetric, UmapParameters};
use super::random::SeededRandom;
use super::reduce::{pca_reduce, pca_reduce_randomized, rows_for_metric};

/// Below this many rows the kNN graph is exact; from it on it is approximate (umap-learn
/// switches to pynndescent at the same size).
pub const EXACT_KNN_LIMIT: usize = 4096;

/// How the kNN graph is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighborSearch {
    /// Exact below `EXACT_KNN_LIMIT` rows, approximate from it on.
    BySize,
    Exact,
    Approximate,
}

impl NeighborSearch {
    pub fn is_exact_for(self, rows: usize) -> bool {
        match self {
            NeighborSearch::BySize => rows < EXACT_KNN_LIMIT,
            NeighborSearch::Exact => true,
            NeighborSearch::Approximate => false,
        }
    }
}

/// Seconds spent in each stage of one `umap_embed_timed` run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UmapStageSeconds {
    pub neighbors: f64,
    pub fuzzy_set: f64,
    pub initialisation: f64,
    pub optimisation: f64,
}

const SMOOTH_K_TOLERANCE: f64 = 1e-5;
const MIN_K_DIST_SCALE: f64 = 1e-3;
const NEGATIVE_SAMPLE_RATE: f64 = 5.0;

/// Fits `a`, `b` of `1 / (1 + a x^(2b))` to umap-learn's target curve (spread 1) by
/// Levenberg-Marquardt least squares, as `umap.umap_.find_ab_params` does with scipy.
pub fn find_ab_params(spread: f64, min_dist: f64) -> (f64, f64) {
    let xs: Vec<f64> = (0..300).map(|index| index as f64 * (spread * 3.0) / 299.0).collect();
    let ys: Vec<f64> = xs.iter().map(|x| if *x < min_dist { 1.0 } else { (-(x - min_dist) / spread).exp() }).collect();
    let residual_sum = |a: f64, b: f64| -> f64 {
        xs.iter()
            .zip(&ys)
            .map(|(x, y)| {
                let prediction = 1.0 / (1.0 + a * x.powf(2.0 * b));
                (prediction - y) * (prediction - y)
            })
            .sum()
    };
    let (mut a, mut b) = (1.0f64, 1.0f64);
    let mut damping = 1e-3;
    let mut current = residual_sum(a, b);
    for _ in 0..500 {
        // Normal equations J^T J and J^T r.
        let (mut jaa, mut jab, mut jbb, mut ga, mut gb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (x, y) in xs.iter().zip(&ys) {
            let u = if *x > 0.0 { x.powf(2.0 * b) } else { 0.0 };
            let denominator = 1.0 + a * u;
            let prediction = 1.0 / denominator;
            let residual = prediction - y;
            let derivative_a = -u / (denominator * denominator);
            let derivative_b = if *x > 0.0 { -a * u * 2.0 * x.ln() / (denominator * denominator) } else { 0.0 };
            jaa += derivative_a * derivative_a;
            jab += derivative_a * derivative_b;
            jbb += derivative_b * derivative_b;
            ga += derivative_a * residual;
            gb += derivative_b * residual;
        }
        let mut improved = false;
        for _ in 0..30 {
            let maa = jaa * (1.0 + damping);
            let mbb = jbb * (1.0 + damping);
            let determinant = maa * mbb - jab * jab;
            if determinant.abs() < 1e-300 {
                damping *= 10.0;
                continue;
            }
            let step_a = -(mbb * ga - jab * gb) / determinant;
            let step_b = -(maa * gb - jab * ga) / determinant;
            let candidate = residual_sum(a + step_a, b + step_b);
            if candidate.is_finite() && candidate < current {
                let relative = (current - candidate) / current.max(1e-300);
                a += step_a;
                b += step_b;
                current = candidate;
                damping = (damping / 10.0).max(1e-12);
                improved = relative > 1e-15;
                break;
            }
            damping *= 10.0;
        }
        if !improved {
            break;
        }
    }
    (a, b)
}

/// A symmetric weighted graph as a list of directed edges (both directions present).
pub struct FuzzyGraph {
    pub heads: Vec<u32>,
    pub tails: Vec<u32>,
    pub weights: Vec<f32>,
}

/// smooth-kNN distances: per-row (sigma, rho), as umap-learn's `smooth_knn_dist` with
/// `local_connectivity = 1`, `bandwidth = 1`, 64 bisection steps.
pub fn smooth_knn_distances(neighbors: &NeighborLists) -> (Vec<f64>, Vec<f64>) {
    let rows = neighbors.rows();
    let k = neighbors.k;
    let target = (k as f64).log2();
    let mean_all = if neighbors.distances.is_empty() {
        0.0
    } else {
        neighbors.distances.iter().map(|value| *value as f64).sum::<f64>() / neighbors.distances.len() as f64
    };
    let mut sigmas = vec![0.0f64; rows];
    let mut rhos = vec![0.0f64; rows];
    for row in 0..rows {
        let distances = neighbors.row_distances(row);
        let rho = distances.iter().map(|value| *value as f64).find(|value| *value > 0.0).unwrap_or(0.0);
        let (mut low, mut high, mut middle) = (0.0f64, f64::INFINITY, 1.0f64);
        for _ in 0..64 {
            let mut sum = 0.0;
            for distance in &distances[1..] {
                let excess = *distance as f64 - rho;
                sum += if excess > 0.0 { (-(excess / middle)).exp() } else { 1.0 };
            }
            if (sum - target).abs() < SMOOTH_K_TOLERANCE {
                break;
            }
            if sum > target {
                high = middle;
                middle = (low + high) / 2.0;
            } else {
                low = middle;
                if high == f64::INFINITY {
                    middle *= 2.0;
                } else {
                    middle = (low + high) / 2.0;
                }
            }
        }
        let mut sigma = middle;
        if rho > 0.0 {
            let mean_row = distances.iter().map(|value| *value as f64).sum::<f64>() / distances.len() as f64;
            sigma = sigma.max(MIN_K_DIST_SCALE * mean_row);
        } else {
            sigma = sigma.max(MIN_K_DIST_SCALE * mean_all);
        }
        sigmas[row] = sigma;
        rhos[row] = rho;
    }
    (sigmas, rhos)
}

/// The fuzzy simplicial set of a kNN graph, symmetrised by fuzzy union.
pub fn fuzzy_simplicial_set(neighbors: &NeighborLists) -> FuzzyGraph {
    let (sigmas, rhos) = smooth_knn_distances(neighbors);
    let rows = neighbors.rows();
    // (row, column, weight, is_reverse)
    let mut entries: Vec<(u32, u32, f32, bool)> = Vec::with_capacity(rows * neighbors.k * 2);
    for row in 0..rows {
        for (neighbor, distance) in neighbors.row_indices(row).iter().zip(neighbors.row_distances(row)) {
            if *neighbor as usize == row {
                continue;
            }
            let excess = *distance as f64 - rhos[row];
            let weight = if excess <= 0.0 || sigmas[row] == 0.0 { 1.0 } else { (-(excess / sigmas[row])).exp() };
            if weight > 0.0 {
                entries.push((row as u32, *neighbor, weight as f32, false));
                entries.push((*neighbor, row as u32, weight as f32, true));
            }
        }
    }
    entries.sort_unstable_by_key(|entry| (entry.0, entry.1, entry.3));
    let mut graph = FuzzyGraph { heads: Vec::new(), tails: Vec::new(), weights: Vec::new() };
    let mut index = 0;
    while index < entries.len() {
        let (row, column) = (entries[index].0, entries[index].1);
        let (mut forward, mut backward) = (0.0f32, 0.0f32);
        while index < entries.len() && entries[index].0 == row && entries[index].1 == column {
            if entries[index].3 {
                backward = backward.max(entries[index].2);
            } else {
                forward = forward.max(entries[index].2);
            }
            index += 1;
        }
        let weight = forward + backward - forward * backward;
        if weight > 0.0 {
            graph.heads.push(row);
            graph.tails.push(column);
            graph.weights.push(weight);
        }
    }
    graph
}

/// umap-learn's default epoch count.
pub fn default_epochs(rows: usize) -> usize {
    if rows <= 10_000 {
        500
    } else {
        200
    }
}

/// Stop requested by the progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

/// The kNN graph UMAP uses (distances in the requested metric).
pub fn umap_neighbors(
    values: &[f32],
    dims: usize,
    parameters: &UmapParameters,
    search: NeighborSearch,
) -> NeighborLists {
    let rows = values.len() / dims.max(1);
    let k = parameters.n_neighbors.min(rows);
    let rows_in_metric = rows_for_metric(values, dims, parameters.metric);
    let data: &[f32] = &rows_in_metric;
    let mut neighbors = if search.is_exact_for(rows) {
        exact_knn(data, dims, k)
    } else {
        approximate_knn(data, dims, k, &ApproximateSearch::for_rows(rows, k, parameters.seed ^ 0x9e37_79b9_7f4a_7c15))
    };
    if parameters.metric == DistanceMetric::Cosine {
        // Between unit vectors, 1 - cos = |x - y|^2 / 2.
        neighbors.distances.iter_mut().for_each(|distance| *distance = *distance * *distance / 2.0);
    }
    neighbors
}

/// A kNN graph kept between the UMAP runs of one job (the clustering layout and the 2-D
/// plot layout share it when neighbours, metric and seed agree).
pub struct NeighborCache {
    key: (usize, DistanceMetric, u64),
    neighbors: NeighborLists,
}

/// Embeds `values` (`rows x dims`) into `parameters.n_components` dimensions. `progress`
/// receives the fraction done (0 to 1) and returns false to cancel.
pub fn umap_embed(
    values: &[f32],
    dims: usize,
    parameters: &UmapParameters,
    progress: &mut dyn FnMut(f64) -> bool,
) -> Result<Vec<f32>, Cancelled> {
    umap_embed_cached(values, dims, parameters, &mut None, progress)
}

/// `umap_embed`, reusing the kNN graph in `cache` when it was built for the same data with the
/// same `n_neighbors`, metric and seed (the caller guarantees the data is the same), and
/// leaving the graph there for the next run.
pub fn umap_embed_cached(
    values: &[f32],
    dims: usize,
    parameters: &UmapParameters,
    cache: &mut Option<NeighborCache>,
    progress: &mut dyn FnMut(f64) -> bool,
) -> Result<Vec<f32>, Cancelled> {
    umap_embed_timed(values, dims, parameters, NeighborSearch::BySize, cache, progress).map(|(layout, _)| layout)
}

/// `umap_embed_cached` with the neighbour search chosen by the caller, returning the time
/// spent in each stage too (for benchmarks and tests of the approximate path).
pub fn umap_embed_timed(
    values: &[f32],
    dims: usize,
    parameters: &UmapParameters,
    search: NeighborSearch,
    cache: &mut Option<NeighborCache>,
    progress: &mut dyn FnMut(f64) -> bool,
) -> Result<(Vec<f32>, UmapStageSeconds), Cancelled> {
    let rows = values.len() / dims.max(1);
    let components = parameters.n_components;
    let mut seconds = UmapStageSeconds::default();
    if rows < 3 {
        // Too few rows for a neighbourhood graph: everything at the origin.
        return Ok((vec![0.0; rows * components], seconds));
    }
    let started = Instant::now();
    let key = (parameters.n_neighbors, parameters.metric, parameters.seed);
    if cache.as_ref().map(|cached| cached.key) != Some(key) {
        *cache = Some(NeighborCache { key, neighbors: umap_neighbors(values, dims, parameters, search) });
    }
    seconds.neighbors = started.elapsed().as_secs_f64();
    if !progress(0.2) {
        return Err(Cancelled);
    }
    let started = Instant::now();
    let graph = match cache.as_ref() {
        Some(cached) => fuzzy_simplicial_set(&cached.neighbors),
        None => fuzzy_simplicial_set(&umap_neighbors(values, dims, parameters, search)),
    };
    seconds.fuzzy_set = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let initial = initial_layout(values, dims, parameters);
    seconds.initialisation = started.elapsed().as_secs_f64();
    if !progress(0.3) {
        return Err(Cancelled);
    }
    let started = Instant::now();
    let epochs = parameters.n_epochs.unwrap_or_else(|| default_epochs(rows));
    let mut report = |fraction: f64| progress(0.3 + 0.7 * fraction);
    let layout = optimize_layout(initial, rows, &graph, parameters, epochs, &mut report)?;
    seconds.optimisation = started.elapsed().as_secs_f64();
    Ok((layout, seconds))
}

fn initial_layout(values: &[f32], dims: usize, parameters: &UmapParameters) -> Vec<f32> {
    let rows = values.len() / dims.max(1);
    let components = parameters.n_components;
    let mut random = SeededRandom::new(parameters.seed);
    let rows_in_metric = rows_for_metric(values, dims, parameters.metric);
    let data: &[f32] = &rows_in_metric;
    // The exact covariance PCA costs rows x dims^2; above EXACT_KNN_LIMIT rows and 64 columns
    // a randomized subspace iteration finds the same leading axes for a fraction of it.
    let (projected, projected_dims) = if rows >= EXACT_KNN_LIMIT && dims > 64 {
        pca_reduce_randomized(data, dims, components, parameters.seed ^ 0x6a09_e667_f3bc_c908)
    } else {
        pca_reduce(data, dims, components)
    };
    let mut layout = vec![0.0f32; rows * components];
    for row in 0..rows {
        for column in 0..components {
            layout[row * components + column] =
                if column < projected_dims { projected[row * projected_dims + column] } else { 0.0 };
        }
    }
    let largest = layout.iter().fold(0.0f32, |best, value| best.max(value.abs()));
    let expansion = if largest > 0.0 { 10.0 / largest } else { 1.0 };
    for value in layout.iter_mut() {
        *value = *value * expansion + (random.next_normal() * 1e-4) as f32;
    }
    for column in 0..components {
        let (mut low, mut high) = (f32::INFINITY, f32::NEG_INFINITY);
        for row in 0..rows {
            low = low.min(layout[row * components + column]);
            high = high.max(layout[row * components + column]);
        }
        let range = high - low;
        for row in 0..rows {
            let value = &mut layout[row * components + column];
            *value = if range > 0.0 { 10.0 * (*value - low) / range } else { 0.0 };
        }
    }
    layout
}

#[inline]
fn clip(value: f32) -> f32 {
    value.clamp(-4.0, 4.0)
}

/// `x^y` for `x > 0` as `2^(y log2 x)` with short series (relative error below 1e-5): the SGD
/// takes one power per sample, and this is cheaper than `powf` and the same on every platform.
/// Only float and integer lane operations (no division, no float-to-integer conversion, no
/// branch), so the compiler evaluates a batch of samples in vector registers.
#[inline(always)]
fn power(x: f32, y: f32) -> f32 {
    let bits = x.to_bits();
    let exponent = ((bits >> 23) & 0xff) as i32 - 127;
    // The mantissa in [1, 2), then moved into [sqrt(1/2), sqrt(2)) so that log2(1 + f) is
    // smooth enough for a short polynomial.
    let mantissa = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let above = mantissa > std::f32::consts::SQRT_2;
    let mantissa = if above { mantissa * 0.5 } else { mantissa };
    let exponent = exponent + above as i32;
    let f = mantissa - 1.0;
    // log2(1 + f) for f in [-0.293, 0.415], absolute error below 4e-7 (weighted least-squares
    // fit, `f` times a degree-6 polynomial so that log2(1) is exactly 0).
    let log2_mantissa = f
        * (1.442_699_7
            + f * (-0.721_375_8
                + f * (0.480_465_35
                    + f * (-0.358_963_9 + f * (0.297_259_9 + f * (-0.272_679_18 + f * 0.170_620_65))))));
    let scaled = (y * (exponent as f32 + log2_mantissa)).clamp(-126.0, 126.0);
    // Round to the nearest integer by adding 1.5 * 2^23: the integer lands in the low mantissa
    // bits of the sum (no float-to-integer conversion, no SSE4.1 `roundps` in the baseline).
    const ROUNDING: f32 = 12_582_912.0;
    let shifted = scaled + ROUNDING;
    let whole = shifted - ROUNDING;
    let whole_bits = shifted.to_bits().wrapping_sub(ROUNDING.to_bits());
    let fraction = (scaled - whole) * std::f32::consts::LN_2;
    // e^f for |f| <= ln 2 / 2.
    let series = 1.0
        + fraction
            * (1.0
                + fraction
                    * (0.5
                        + fraction
                            * (1.0 / 6.0 + fraction * (1.0 / 24.0 + fraction * (1.0 / 120.0 + fraction / 720.0)))));
    series * f32::from_bits(whole_bits.wrapping_add(127) << 23)
}

/// A counter-based random draw below `bound` (splitmix64 of the counter): the same for a given
/// (seed, epoch, edge, sample) whichever thread draws it.
#[inline]
fn counter_random_below(counter: u64, bound: usize) -> usize {
    let mut value = counter.wrapping_add(0x9e37_79b9_7f4a_7c15);
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^= value >> 31;
    ((value as u128 * bound as u128) >> 64) as usize
}

/// Samples whose gradients are evaluated together: the attraction of one edge and its negative
/// samples, `SAMPLE_BATCH` at a time, all against the head's position before the batch. The
/// samples of a batch do not wait on each other, so the loops over them become vector code
/// (one after the other, each sample's power and divisions were a chain of dependent steps).
const SAMPLE_BATCH: usize = 8;

/// The edges of the SGD grouped by head row: the edges of head `row` are
/// `row_starts[row]..row_starts[row + 1]` (the fuzzy graph is sorted by head).
struct EdgeTable {
    row_starts: Vec<usize>,
    edges: Vec<Edge>,
}

/// One edge of the SGD: its tail, and every how many epochs it is sampled (max weight over its
/// weight). f32 and side by side with the clocks, so the edges streamed through every epoch
/// take 16 bytes each and leave the cache to the layout the samples read at random.
#[derive(Clone, Copy)]
struct Edge {
    tail: u32,
    epochs_per_sample: f32,
}

/// When an edge is next due, and how far its negative samples have been drawn.
#[derive(Clone, Copy)]
struct EdgeClock {
    next_sample: f32,
    next_negative_sample: f32,
}

/// What every row block of one epoch shares.
struct EpochConstants {
    a: f32,
    b: f32,
    alpha: f32,
    epoch: f32,
    rows: usize,
    seed: u64,
}

/// One block of head rows and the state only it changes in an epoch: its rows of the layout
/// and the sampling schedule of its edges.
struct RowBlock<'a, const COMPONENTS: usize> {
    first_row: usize,
    own: &'a mut [[f32; COMPONENTS]],
    clocks: &'a mut [EdgeClock],
}

/// Samples gathered for one batch: the other row of each lane (component-major, so the loops
/// over lanes vectorise), its weight (2 for the attraction, doubled because each pair is in the
/// edge list both ways; 1 for a negative sample; 0 for an unused or skipped lane) and whether it
/// attracts.
struct SampleBatch<const COMPONENTS: usize> {
    others: [[f32; SAMPLE_BATCH]; COMPONENTS],
    weights: [f32; SAMPLE_BATCH],
    attracts: [bool; SAMPLE_BATCH],
    filled: usize,
}

impl<const COMPONENTS: usize> SampleBatch<COMPONENTS> {
    fn new() -> Self {
        SampleBatch {
            others: [[0.0; SAMPLE_BATCH]; COMPONENTS],
            weights: [0.0; SAMPLE_BATCH],
            attracts: [false; SAMPLE_BATCH],
            filled: 0,
        }
    }

    #[inline(always)]
    fn push(&mut self, other: &[f32; COMPONENTS], weight: f32, attracts: bool) {
        let lane = self.filled;
        for (column, value) in other.iter().enumerate() {
            self.others[column][lane] = *value;
        }
        self.weights[lane] = weight;
        self.attracts[lane] = attracts;
        self.filled += 1;
    }

    /// Moves `current` by the batch's clipped gradients (umap-learn's formulas, each sample
    /// clipped at 4 per coordinate as there) and empties the batch.
    #[inline(always)]
    fn apply(&mut self, current: &mut [f32; COMPONENTS], a: f32, b: f32, alpha: f32) {
        for lane in self.filled..SAMPLE_BATCH {
            self.weights[lane] = 0.0;
        }
        let mut differences = [[0.0f32; SAMPLE_BATCH]; COMPONENTS];
        let mut dist_squared = [0.0f32; SAMPLE_BATCH];
        for column in 0..COMPONENTS {
            for lane in 0..SAMPLE_BATCH {
                let difference = current[column] - self.others[column][lane];
                differences[column][lane] = difference;
                dist_squared[lane] += difference * difference;
            }
        }
        let mut coefficients = [0.0f32; SAMPLE_BATCH];
        let (attraction_scale, repulsion_scale) = (-2.0 * a * b, 2.0 * b);
        for lane in 0..SAMPLE_BATCH {
            let distance = dist_squared[lane];
            // d^(2b); the attraction's d^(2(b-1)) is d^(2b) / d^2 (one power instead of two).
            // Attraction -2ab d^(2(b-1)) / (1 + a d^(2b)), repulsion 2b / ((0.001 + d^2)
            // (1 + a d^(2b))): one division for either.
            let power = power(distance, b);
            let (numerator, denominator) = if self.attracts[lane] {
                (attraction_scale * power, distance)
            } else {
                (repulsion_scale, 0.001 + distance)
            };
            let coefficient = numerator / (denominator * (a * power + 1.0));
            coefficients[lane] = if (distance > 0.0) & (self.weights[lane] > 0.0) { coefficient } else { 0.0 };
        }
        for column in 0..COMPONENTS {
            let mut step = 0.0f32;
            for lane in 0..SAMPLE_BATCH {
                step += self.weights[lane] * clip(coefficients[lane] * differences[column][lane]);
            }
            current[column] += step * alpha;
        }
        self.filled = 0;
    }
}

/// How one epoch's block of rows is moved: `optimize_block` compiled for the baseline or for
/// AVX2 (eight lanes at once; the same operations in the same order, so the same bits).
type BlockOptimizer<const COMPONENTS: usize> =
    fn(RowBlock<'_, COMPONENTS>, &EdgeTable, &[[f32; COMPONENTS]], &EpochConstants);

/// The fastest `BlockOptimizer` this CPU runs (`allow_avx2` false: the baseline one, for tests).
fn block_optimizer<const COMPONENTS: usize>(allow_avx2: bool) -> BlockOptimizer<COMPONENTS> {
    #[cfg(target_arch = "x86_64")]
    if allow_avx2 && std::arch::is_x86_feature_detected!("avx2") {
        return |block, table, previous, constants| {
            // SAFETY: the CPU supports AVX2 (checked when this optimizer was chosen).
            unsafe { optimize_block_avx2(block, table, previous, constants) }
        };
    }
    let _ = allow_avx2;
    optimize_block
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn optimize_block_avx2<const COMPONENTS: usize>(
    block: RowBlock<'_, COMPONENTS>,
    table: &EdgeTable,
    previous: &[[f32; COMPONENTS]],
    constants: &EpochConstants,
) {
    optimize_block(block, table, previous, constants)
}

/// One epoch over one block of head rows. Only the block's own rows move; every other row is
/// read from `previous`, the layout at the start of the epoch. The edge list holds both
/// directions of every pair, so moving only heads, with the attraction doubled, moves each pair
/// as umap-learn's `move_other` does.
#[inline(always)]
fn optimize_block<const COMPONENTS: usize>(
    block: RowBlock<'_, COMPONENTS>,
    table: &EdgeTable,
    previous: &[[f32; COMPONENTS]],
    constants: &EpochConstants,
) {
    let EpochConstants { a, b, alpha, epoch, rows, seed } = *constants;
    let epoch_key = seed ^ (epoch as u64).wrapping_mul(0xd6e8_feb8_6659_fd93);
    let first_edge = table.row_starts[block.first_row];
    // The batches of one head row; kept (not cleared) between rows, `used` says how many are
    // current. Lanes past `filled` hold finite leftovers and get weight 0.
    let mut batches: Vec<SampleBatch<COMPONENTS>> = Vec::new();
    for (local_row, own_row) in block.own.iter_mut().enumerate() {
        let head = block.first_row + local_row;
        // First gather every sample of the row's edges due this epoch: which rows they are
        // does not depend on the row's position, so these loads are independent of each other
        // and of the arithmetic (many in flight at once, instead of one cache miss per step).
        let mut used = 0usize;
        let start_batch = |batches: &mut Vec<SampleBatch<COMPONENTS>>, used: &mut usize| {
            if *used == batches.len() {
                batches.push(SampleBatch::new());
            }
            batches[*used].filled = 0;
            *used += 1;
        };
        for edge in table.row_starts[head]..table.row_starts[head + 1] {
            let clock = &mut block.clocks[edge - first_edge];
            if clock.next_sample > epoch {
                continue;
            }
            let Edge { tail, epochs_per_sample } = table.edges[edge];
            clock.next_sample += epochs_per_sample;
            let per_negative = epochs_per_sample / NEGATIVE_SAMPLE_RATE as f32;
            let negative_samples = (epoch - clock.next_negative_sample) / per_negative;
            // Truncation is the floor for positive counts.
            let negative_samples = if negative_samples > 0.0 { negative_samples as usize } else { 0 };
            clock.next_negative_sample += negative_samples as f32 * per_negative;
            // Every edge starts a batch of its own.
            start_batch(&mut batches, &mut used);
            batches[used - 1].push(&previous[tail as usize], 2.0, true);
            let edge_key = epoch_key ^ (edge as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
            for sample in 0..negative_samples {
                if batches[used - 1].filled == SAMPLE_BATCH {
                    start_batch(&mut batches, &mut used);
                }
                let other = counter_random_below(edge_key.wrapping_add(sample as u64), rows);
                let weight = if other == head { 0.0 } else { 1.0 };
                batches[used - 1].push(&previous[other], weight, false);
            }
        }
        // Then move the row, batch by batch in edge order.
        let mut current = *own_row;
        for batch in &mut batches[..used] {
            batch.apply(&mut current, a, b, alpha);
        }
        *own_row = current;
    }
}

/// umap-learn's SGD schedule (positive samples by weight, `NEGATIVE_SAMPLE_RATE` negative
/// samples each, learning rate decaying linearly), run on every core: each block of head rows
/// reads the other rows as they were at the start of the epoch, and negative samples come from
/// a counter-based generator, so the layout depends on the seed only, not on the number of
/// threads, which thread takes which block, or their timing.
fn optimize_layout(
    layout: Vec<f32>,
    rows: usize,
    graph: &FuzzyGraph,
    parameters: &UmapParameters,
    epochs: usize,
    progress: &mut dyn FnMut(f64) -> bool,
) -> Result<Vec<f32>, Cancelled> {
    let workers = std::thread::available_parallelism().map(|count| count.get()).unwrap_or(1).clamp(1, 8);
    optimize_layout_on(workers, true, layout, rows, graph, parameters, epochs, progress)
}

/// `optimize_layout` on `workers` threads, with AVX2 where allowed and available (the result
/// depends on neither).
#[allow(clippy::too_many_arguments)]
fn optimize_layout_on(
    workers: usize,
    allow_avx2: bool,
    layout: Vec<f32>,
    rows: usize,
    graph: &FuzzyGraph,
    parameters: &UmapParameters,
    epochs: usize,
    progress: &mut dyn FnMut(f64) -> bool,
) -> Result<Vec<f32>, Cancelled> {
    macro_rules! with_components {
        ($($count:literal)*) => {
            match parameters.n_components {
                $($count => optimize_layout_fixed::<$count>(workers, allow_avx2, layout, rows, graph, parameters, epochs, progress),)*
                // More than 16 components is outside what the clustering parameters allow.
                _ => Ok(layout),
            }
        };
    }
    with_components!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
}

/// Blocks of head rows per epoch: many more than threads, so a thread slowed down by other
/// processes on its core takes fewer of them instead of holding up the epoch.
const ROW_BLOCKS: usize = 64;

#[allow(clippy::too_many_arguments)]
fn optimize_layout_fixed<const COMPONENTS: usize>(
    workers: usize,
    allow_avx2: bool,
    layout: Vec<f32>,
    rows: usize,
    graph: &FuzzyGraph,
    parameters: &UmapParameters,
    epochs: usize,
    progress: &mut dyn FnMut(f64) -> bool,
) -> Result<Vec<f32>, Cancelled> {
    let workers = workers.max(1);
    let move_block = block_optimizer::<COMPONENTS>(allow_avx2);
    let (a, b) = find_ab_params(1.0, parameters.min_dist as f64);
    let (a, b) = (a as f32, b as f32);
    let max_weight = graph.weights.iter().copied().fold(0.0f32, f32::max);
    let threshold = max_weight / epochs as f32;
    let mut table = EdgeTable { row_starts: vec![0; rows + 1], edges: Vec::new() };
    for index in 0..graph.weights.len() {
        let weight = graph.weights[index];
        let head = graph.heads[index] as usize;
        if weight >= threshold && weight > 0.0 && head < rows {
            table.row_starts[head + 1] += 1;
            table.edges.push(Edge { tail: graph.tails[index], epochs_per_sample: max_weight / weight });
        }
    }
    for row in 0..rows {
        table.row_starts[row + 1] += table.row_starts[row];
    }
    let mut clocks: Vec<EdgeClock> = table
        .edges
        .iter()
        .map(|edge| EdgeClock {
            next_sample: edge.epochs_per_sample,
            next_negative_sample: edge.epochs_per_sample / NEGATIVE_SAMPLE_RATE as f32,
        })
        .collect();
    // Block boundaries at head rows, about the same number of edges in each.
    let edges = table.edges.len();
    let mut block_rows = vec![0usize];
    for block in 1..ROW_BLOCKS {
        let target = edges * block / ROW_BLOCKS;
        let row = table.row_starts.partition_point(|start| *start < target).min(rows);
        if row > *block_rows.last().unwrap_or(&0) {
            block_rows.push(row);
        }
    }
    if *block_rows.last().unwrap_or(&0) < rows {
        block_rows.push(rows);
    }
    let mut layout: Vec<[f32; COMPONENTS]> =
        layout.chunks_exact(COMPONENTS).map(|row| std::array::from_fn(|column| row[column])).collect();
    let mut previous = layout.clone();
    let seed = parameters.seed.wrapping_add(1);
    for epoch in 0..epochs {
        previous.copy_from_slice(&layout);
        let constants =
            EpochConstants { a, b, alpha: 1.0 - epoch as f32 / epochs as f32, epoch: epoch as f32, rows, seed };
        let mut blocks = Vec::with_capacity(block_rows.len());
        let mut layout_rest: &mut [[f32; COMPONENTS]] = &mut layout;
        let mut clocks_rest: &mut [EdgeClock] = &mut clocks;
        for bounds in block_rows.windows(2) {
            let (first_row, last_row) = (bounds[0], bounds[1]);
            let block_edges = table.row_starts[last_row] - table.row_starts[first_row];
            let (own, rest) = std::mem::take(&mut layout_rest).split_at_mut(last_row - first_row);
            layout_rest = rest;
            let (block_clocks, rest) = std::mem::take(&mut clocks_rest).split_at_mut(block_edges);
            clocks_rest = rest;
            blocks.push(RowBlock { first_row, own, clocks: block_clocks });
        }
        let queue = std::sync::Mutex::new(blocks.into_iter());
        let work = || loop {
            let next = match queue.lock() {
                Ok(mut remaining) => remaining.next(),
                Err(_) => None,
            };
            let Some(block) = next else { break };
            move_block(block, &table, &previous, &constants);
        };
        std::thread::scope(|scope| {
            for _ in 1..workers {
                scope.spawn(work);
            }
            work();
        });
        if !progress((epoch + 1) as f64 / epochs as f64) {
            return Err(Cancelled);
        }
    }
    Ok(layout.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ab_curve_matches_umap_learn() {
        // umap-learn 0.5 (scipy curve_fit): min_dist 0.1 -> a 1.5769, b 0.8951;
        // min_dist 0.001 -> a 1.9292, b 0.7915.
        let (a, b) = find_ab_params(1.0, 0.1);
        assert!((a - 1.5769).abs() < 2e-3 && (b - 0.8951).abs() < 2e-3, "a {a} b {b}");
        let (a, b) = find_ab_params(1.0, 0.001);
        assert!((a - 1.9292).abs() < 2e-3 && (b - 0.7915).abs() < 2e-3, "a {a} b {b}");
    }

    #[test]
    fn the_sgd_power_is_within_1e_5_of_powf() {
        for exponent in [0.7915f32, 0.8951, 1.0, 1.5] {
            for step in 0..2000 {
                let x = 1e-4f32 * 1.01f32.powi(step);
                let (ours, exact) = (power(x, exponent), x.powf(exponent));
                assert!((ours - exact).abs() <= 1e-5 * exact, "{x}^{exponent}: {ours} vs {exact}");
            }
        }
    }

    #[test]
    fn smooth_knn_hits_the_log2_k_target() {
        let values: Vec<f32> = (0..40).map(|index| (index as f32 * 0.37).sin() * 3.0 + index as f32 * 0.1).collect();
        let neighbors = exact_knn(&values, 1, 8);
        let (sigmas, rhos) = smooth_knn_distances(&neighbors);
        for row in 0..40 {
            let sum: f64 = neighbors.row_distances(row)[1..]
                .iter()
                .map(|distance| {
                    let excess = *distance as f64 - rhos[row];
                    if excess > 0.0 {
                        (-(excess / sigmas[row])).exp()
                    } else {
                        1.0
                    }
                })
                .sum();
            assert!((sum - 3.0).abs() < 1e-3, "row {row}: {sum}");
        }
    }

    #[test]
    fn the_fuzzy_graph_is_symmetric_with_weights_in_0_1() {
        let mut random = SeededRandom::new(2);
        let values: Vec<f32> = (0..200 * 4).map(|_| random.next_normal() as f32).collect();
        let graph = fuzzy_simplicial_set(&exact_knn(&values, 4, 10));
        let mut lookup = std::collections::HashMap::new();
        for index in 0..graph.weights.len() {
            assert!(graph.weights[index] > 0.0 && graph.weights[index] <= 1.0);
            lookup.insert((graph.heads[index], graph.tails[index]), graph.weights[index]);
        }
        for ((head, tail), weight) in &lookup {
            assert_eq!(lookup.get(&(*tail, *head)), Some(weight));
        }
    }

    #[test]
    fn tiny_and_constant_inputs_give_finite_layouts() {
        let parameters = UmapParameters { n_epochs: Some(20), ..Default::default() };
        let layout = umap_embed(&[1.0, 2.0], 2, &parameters, &mut |_| true).unwrap();
        assert_eq!(layout, vec![0.0; 5]);
        let constant = vec![0.5f32; 30 * 3];
        let layout = umap_embed(&constant, 3, &parameters, &mut |_| true).unwrap();
        assert_eq!(layout.len(), 30 * 5);
        assert!(layout.iter().all(|value| value.is_finite()));
    }

    #[test]
    fn the_layout_is_the_same_on_any_number_of_threads() {
        let mut random = SeededRandom::new(4);
        let values: Vec<f32> = (0..300 * 6).map(|_| random.next_normal() as f32).collect();
        let parameters = UmapParameters { n_components: 3, ..Default::default() };
        let graph = fuzzy_simplicial_set(&exact_knn(&values, 6, 10));
        let initial = initial_layout(&values, 6, &parameters);
        let layouts: Vec<Vec<f32>> = [1, 2, 3, 5]
            .iter()
            .map(|workers| {
                optimize_layout_on(*workers, true, initial.clone(), 300, &graph, &parameters, 60, &mut |_| true)
                    .unwrap()
            })
            .collect();
        assert!(layouts.iter().all(|layout| layout == &layouts[0]));
        assert_ne!(layouts[0], initial, "the layout moved");
    }

    #[test]
    fn the_layout_is_the_same_to_the_bit_on_every_instruction_set() {
        let mut random = SeededRandom::new(5);
        let values: Vec<f32> = (0..300 * 6).map(|_| random.next_normal() as f32).collect();
        for n_components in [2, 5] {
            let parameters = UmapParameters { n_components, ..Default::default() };
            let graph = fuzzy_simplicial_set(&exact_knn(&values, 6, 10));
            let initial = initial_layout(&values, 6, &parameters);
            let [vector, baseline] = [true, false].map(|allow_avx2| {
                optimize_layout_on(2, allow_avx2, initial.clone(), 300, &graph, &parameters, 60, &mut |_| true).unwrap()
            });
            let bits = |layout: &[f32]| layout.iter().map(|value| value.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&vector), bits(&baseline), "{n_components} components");
        }
    }

    #[test]
    fn cancelling_stops_the_layout() {
        let mut random = SeededRandom::new(2);
        let values: Vec<f32> = (0..100 * 4).map(|_| random.next_normal() as f32).collect();
        let mut calls = 0;
        let result = umap_embed(&values, 4, &UmapParameters::default(), &mut |_| {
            calls += 1;
            calls < 5
        });
        assert_eq!(result, Err(Cancelled));
    }
}
