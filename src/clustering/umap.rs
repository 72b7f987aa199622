//! UMAP, our own implementation of umap-learn's algorithm (McInnes, Healy & Melville 2018):
//!
//! 1. kNN graph (self included): exact for up to `EXACT_KNN_LIMIT` rows, NN-descent above;
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
//!    4, learning rate decaying linearly from 1. Single threaded, so a seed fixes the result.

use super::knn::{exact_knn, nn_descent, NeighborLists};
use super::parameters::{DistanceMetric, UmapParameters};
use super::random::SeededRandom;
use super::reduce::{pca_reduce, rows_for_metric};

/// Up to this many rows the kNN graph is exact; above it NN-descent approximates it.
pub const EXACT_KNN_LIMIT: usize = 20_000;

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
pub fn umap_neighbors(values: &[f32], dims: usize, parameters: &UmapParameters) -> NeighborLists {
    let rows = values.len() / dims.max(1);
    let k = parameters.n_neighbors.min(rows);
    let rows_in_metric = rows_for_metric(values, dims, parameters.metric);
    let data: &[f32] = &rows_in_metric;
    let mut neighbors = if rows <= EXACT_KNN_LIMIT {
        exact_knn(data, dims, k)
    } else {
        nn_descent(data, dims, k, parameters.seed ^ 0x9e37_79b9_7f4a_7c15, 12)
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
    let rows = values.len() / dims.max(1);
    let components = parameters.n_components;
    if rows < 3 {
        // Too few rows for a neighbourhood graph: everything at the origin.
        return Ok(vec![0.0; rows * components]);
    }
    let key = (parameters.n_neighbors, parameters.metric, parameters.seed);
    if cache.as_ref().map(|cached| cached.key) != Some(key) {
        *cache = Some(NeighborCache { key, neighbors: umap_neighbors(values, dims, parameters) });
    }
    if !progress(0.2) {
        return Err(Cancelled);
    }
    let graph = match cache.as_ref() {
        Some(cached) => fuzzy_simplicial_set(&cached.neighbors),
        None => fuzzy_simplicial_set(&umap_neighbors(values, dims, parameters)),
    };
    let initial = initial_layout(values, dims, parameters);
    if !progress(0.3) {
        return Err(Cancelled);
    }
    let epochs = parameters.n_epochs.unwrap_or_else(|| default_epochs(rows));
    let mut report = |fraction: f64| progress(0.3 + 0.7 * fraction);
    optimize_layout(initial, rows, &graph, parameters, epochs, &mut report)
}

fn initial_layout(values: &[f32], dims: usize, parameters: &UmapParameters) -> Vec<f32> {
    let rows = values.len() / dims.max(1);
    let components = parameters.n_components;
    let mut random = SeededRandom::new(parameters.seed);
    let rows_in_metric = rows_for_metric(values, dims, parameters.metric);
    let data: &[f32] = &rows_in_metric;
    let (projected, projected_dims) = pca_reduce(data, dims, components);
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

fn optimize_layout(
    mut layout: Vec<f32>,
    rows: usize,
    graph: &FuzzyGraph,
    parameters: &UmapParameters,
    epochs: usize,
    progress: &mut dyn FnMut(f64) -> bool,
) -> Result<Vec<f32>, Cancelled> {
    let components = parameters.n_components;
    let (a, b) = find_ab_params(1.0, parameters.min_dist as f64);
    let (a, b) = (a as f32, b as f32);
    let max_weight = graph.weights.iter().copied().fold(0.0f32, f32::max);
    let threshold = max_weight / epochs as f32;
    let mut heads = Vec::new();
    let mut tails = Vec::new();
    let mut epochs_per_sample = Vec::new();
    for index in 0..graph.weights.len() {
        if graph.weights[index] >= threshold && graph.weights[index] > 0.0 {
            heads.push(graph.heads[index] as usize);
            tails.push(graph.tails[index] as usize);
            epochs_per_sample.push(max_weight as f64 / graph.weights[index] as f64);
        }
    }
    let epochs_per_negative_sample: Vec<f64> =
        epochs_per_sample.iter().map(|value| value / NEGATIVE_SAMPLE_RATE).collect();
    let mut epoch_of_next_negative_sample = epochs_per_negative_sample.clone();
    let mut epoch_of_next_sample = epochs_per_sample.clone();
    let mut random = SeededRandom::new(parameters.seed.wrapping_add(1));
    let mut current = vec![0.0f32; components];
    for epoch in 0..epochs {
        let alpha = 1.0 - epoch as f32 / epochs as f32;
        let epoch_f = epoch as f64;
        for edge in 0..heads.len() {
            if epoch_of_next_sample[edge] > epoch_f {
                continue;
            }
            let head = heads[edge];
            let tail = tails[edge];
            let dist_squared = squared_distance_between(&layout, components, head, tail);
            let grad_coeff = if dist_squared > 0.0 {
                -2.0 * a * b * dist_squared.powf(b - 1.0) / (a * dist_squared.powf(b) + 1.0)
            } else {
                0.0
            };
            for dimension in 0..components {
                let difference = layout[head * components + dimension] - layout[tail * components + dimension];
                let grad = clip(grad_coeff * difference);
                layout[head * components + dimension] += grad * alpha;
                layout[tail * components + dimension] -= grad * alpha;
            }
            epoch_of_next_sample[edge] += epochs_per_sample[edge];
            let negative_samples =
                ((epoch_f - epoch_of_next_negative_sample[edge]) / epochs_per_negative_sample[edge]).floor();
            let negative_samples = if negative_samples > 0.0 { negative_samples as usize } else { 0 };
            current.copy_from_slice(&layout[head * components..(head + 1) * components]);
            for _ in 0..negative_samples {
                let other = random.next_below(rows);
                if other == head {
                    continue;
                }
                let other_row = &layout[other * components..(other + 1) * components];
                let dist_squared: f32 =
                    current.iter().zip(other_row).map(|(left, right)| (left - right) * (left - right)).sum();
                if dist_squared <= 0.0 {
                    continue;
                }
                let grad_coeff = 2.0 * b / ((0.001 + dist_squared) * (a * dist_squared.powf(b) + 1.0));
                for dimension in 0..components {
                    current[dimension] += clip(grad_coeff * (current[dimension] - other_row[dimension])) * alpha;
                }
            }
            layout[head * components..(head + 1) * components].copy_from_slice(&current);
            epoch_of_next_negative_sample[edge] += negative_samples as f64 * epochs_per_negative_sample[edge];
        }
        if !progress((epoch + 1) as f64 / epochs as f64) {
            return Err(Cancelled);
        }
    }
    Ok(layout)
}

#[inline]
fn squared_distance_between(layout: &[f32], components: usize, first: usize, second: usize) -> f32 {
    let mut total = 0.0;
    for dimension in 0..components {
        let difference = layout[first * components + dimension] - layout[second * components + dimension];
        total += difference * difference;
    }
    total
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
