//! The alternatives to HDBSCAN: K-Means, DBSCAN and Gaussian mixtures through
//! linfa-clustering 0.8 (guarded so bad input gives a typed error, never a panic), and our
//! own agglomerative clustering (nearest-neighbour chain with Lance-Williams updates on a
//! condensed distance matrix; exact for Ward, average and complete linkage).

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};

use linfa::prelude::*;
use linfa::DatasetBase;
use linfa_clustering::{Dbscan, GaussianMixtureModel, KMeans};
use ndarray::Array2;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;

use super::knn::squared_euclidean;
use super::parameters::Linkage;
use super::ClusteringError;

/// Agglomerative clustering keeps `n (n - 1) / 2` distances (4 bytes each).
pub const AGGLOMERATIVE_ROW_LIMIT: usize = 20_000;

fn records(values: &[f32], dims: usize) -> Result<Array2<f32>, ClusteringError> {
    Array2::from_shape_vec((values.len() / dims.max(1), dims), values.to_vec())
        .map_err(|error| ClusteringError::Backend { algorithm: "matrix", message: error.to_string() })
}

fn distinct_rows(values: &[f32], dims: usize, enough: usize) -> usize {
    let mut seen: HashSet<Vec<u32>> = HashSet::new();
    for row in values.chunks(dims.max(1)) {
        seen.insert(row.iter().map(|value| value.to_bits()).collect());
        if seen.len() >= enough {
            break;
        }
    }
    seen.len()
}

fn check_count(parameter: &'static str, value: usize, values: &[f32], dims: usize) -> Result<(), ClusteringError> {
    let rows = values.len() / dims.max(1);
    if value > rows {
        return Err(ClusteringError::TooFewRows { parameter, value, rows });
    }
    let distinct = distinct_rows(values, dims, value);
    if distinct < value {
        return Err(ClusteringError::TooFewDistinctRows { parameter, value, distinct });
    }
    Ok(())
}

fn guarded<T>(algorithm: &'static str, work: impl FnOnce() -> Result<T, String>) -> Result<T, ClusteringError> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(message)) => Err(ClusteringError::Backend { algorithm, message }),
        Err(_) => Err(ClusteringError::Backend {
            algorithm,
            message: "the solver stopped on this data (degenerate input)".to_string(),
        }),
    }
}

/// K-Means (k-means++ initialisation, 10 runs, at most 300 iterations), seeded.
pub fn kmeans(values: &[f32], dims: usize, k: usize, seed: u64) -> Result<Vec<i64>, ClusteringError> {
    check_count("k", k, values, dims)?;
    let data = records(values, dims)?;
    guarded("k-means", || {
        let dataset = DatasetBase::from(data.clone());
        let model = KMeans::params_with_rng(k, Xoshiro256Plus::seed_from_u64(seed))
            .n_runs(10)
            .max_n_iterations(300)
            .tolerance(1e-4)
            .fit(&dataset)
            .map_err(|error| error.to_string())?;
        Ok(model.predict(&data).iter().map(|label| *label as i64).collect())
    })
}

/// Gaussian mixture (full covariances, k-means initialisation), seeded; hard assignments
/// and the probability of the assigned component.
pub fn gaussian_mixture(
    values: &[f32],
    dims: usize,
    components: usize,
    seed: u64,
) -> Result<(Vec<i64>, Vec<f32>), ClusteringError> {
    check_count("n_components", components, values, dims)?;
    let data = records(values, dims)?.mapv(|value| value as f64);
    guarded("gaussian mixture", || {
        let dataset = DatasetBase::from(data.clone());
        let model = GaussianMixtureModel::params_with_rng(components, Xoshiro256Plus::seed_from_u64(seed))
            .n_runs(1)
            .max_n_iterations(200)
            .tolerance(1e-3)
            .fit(&dataset)
            .map_err(|error| error.to_string())?;
        let labels: Vec<i64> = model.predict(&data).iter().map(|label| *label as i64).collect();
        let probabilities = model.predict_proba(&data);
        let chosen =
            labels.iter().enumerate().map(|(row, label)| probabilities[[row, *label as usize]] as f32).collect();
        Ok((labels, chosen))
    })
}

/// DBSCAN; rows in no cluster are noise (-1).
pub fn dbscan(values: &[f32], dims: usize, eps: f32, min_points: usize) -> Result<Vec<i64>, ClusteringError> {
    if values.is_empty() {
        return Ok(Vec::new());
    }
    let data = records(values, dims)?;
    guarded("dbscan", || {
        let checked = Dbscan::params(min_points).tolerance(eps).check().map_err(|error| error.to_string())?;
        let memberships = checked.transform(&data);
        Ok(memberships.iter().map(|membership| membership.map(|label| label as i64).unwrap_or(-1)).collect())
    })
}

#[inline]
fn condensed_index(rows: usize, first: usize, second: usize) -> usize {
    let (i, j) = if first < second { (first, second) } else { (second, first) };
    i * rows - i * (i + 1) / 2 + (j - i - 1)
}

/// Agglomerative clustering cut at `n_clusters` (scikit-learn's `AgglomerativeClustering`
/// with Euclidean distances). Labels are numbered by first appearance.
pub fn agglomerative(
    values: &[f32],
    dims: usize,
    n_clusters: usize,
    linkage: Linkage,
) -> Result<Vec<i64>, ClusteringError> {
    let rows = values.len() / dims.max(1);
    if n_clusters > rows {
        return Err(ClusteringError::TooFewRows { parameter: "n_clusters", value: n_clusters, rows });
    }
    if rows > AGGLOMERATIVE_ROW_LIMIT {
        return Err(ClusteringError::TooManyRows {
            algorithm: "agglomerative clustering",
            rows,
            limit: AGGLOMERATIVE_ROW_LIMIT,
        });
    }
    if rows <= 1 {
        return Ok(vec![0; rows]);
    }
    let mut distances = vec![0.0f32; rows * (rows - 1) / 2];
    for first in 0..rows {
        for second in first + 1..rows {
            distances[condensed_index(rows, first, second)] = squared_euclidean(
                &values[first * dims..(first + 1) * dims],
                &values[second * dims..(second + 1) * dims],
            )
            .sqrt();
        }
    }
    let mut active = vec![true; rows];
    let mut sizes = vec![1usize; rows];
    let mut merges: Vec<(usize, usize, f32)> = Vec::with_capacity(rows - 1);
    let mut chain: Vec<usize> = Vec::new();
    while merges.len() < rows - 1 {
        if chain.is_empty() {
            chain.push(active.iter().position(|is_active| *is_active).unwrap_or(0));
        }
        let (first, second, distance) = loop {
            let current = chain[chain.len() - 1];
            let previous = if chain.len() >= 2 { Some(chain[chain.len() - 2]) } else { None };
            let mut best = (f32::INFINITY, usize::MAX);
            if let Some(previous) = previous {
                best = (distances[condensed_index(rows, current, previous)], previous);
            }
            for other in 0..rows {
                if !active[other] || other == current {
                    continue;
                }
                let distance = distances[condensed_index(rows, current, other)];
                if distance < best.0 {
                    best = (distance, other);
                }
            }
            if Some(best.1) == previous {
                chain.pop();
                chain.pop();
                break (current, best.1, best.0);
            }
            chain.push(best.1);
        };
        // Merge `first` into `second`.
        let (size_first, size_second) = (sizes[first] as f32, sizes[second] as f32);
        for other in 0..rows {
            if !active[other] || other == first || other == second {
                continue;
            }
            let to_first = distances[condensed_index(rows, other, first)];
            let to_second = distances[condensed_index(rows, other, second)];
            let size_other = sizes[other] as f32;
            let updated = match linkage {
                Linkage::Ward => (((size_first + size_other) * to_first * to_first
                    + (size_second + size_other) * to_second * to_second
                    - size_other * distance * distance)
                    / (size_first + size_second + size_other))
                    .max(0.0)
                    .sqrt(),
                Linkage::Average => (size_first * to_first + size_second * to_second) / (size_first + size_second),
                Linkage::Complete => to_first.max(to_second),
            };
            distances[condensed_index(rows, other, second)] = updated;
        }
        active[first] = false;
        sizes[second] += sizes[first];
        merges.push((first, second, distance));
    }
    // Apply the n - n_clusters cheapest merges.
    let mut order: Vec<usize> = (0..merges.len()).collect();
    order.sort_by(|left, right| merges[*left].2.total_cmp(&merges[*right].2).then(left.cmp(right)));
    let mut parent: Vec<usize> = (0..rows).collect();
    fn find(parent: &mut [usize], mut node: usize) -> usize {
        while parent[node] != node {
            parent[node] = parent[parent[node]];
            node = parent[node];
        }
        node
    }
    for index in order.into_iter().take(rows - n_clusters.max(1)) {
        let (first, second, _) = merges[index];
        let (root_first, root_second) = (find(&mut parent, first), find(&mut parent, second));
        parent[root_first] = root_second;
    }
    let mut label_of_root = std::collections::HashMap::new();
    let mut labels = Vec::with_capacity(rows);
    for row in 0..rows {
        let root = find(&mut parent, row);
        let next = label_of_root.len() as i64;
        labels.push(*label_of_root.entry(root).or_insert(next));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clustering::metrics::adjusted_rand_index;

    fn three_blobs() -> (Vec<f32>, Vec<i64>) {
        let mut random = crate::clustering::random::SeededRandom::new(11);
        let mut values = Vec::new();
        let mut truth = Vec::new();
        for (label, centre) in [[0.0f32, 0.0], [10.0, 0.0], [0.0, 10.0]].iter().enumerate() {
            for _ in 0..30 {
                values.push(centre[0] + random.next_normal() as f32);
                values.push(centre[1] + random.next_normal() as f32);
                truth.push(label as i64);
            }
        }
        (values, truth)
    }

    #[test]
    fn kmeans_gives_exactly_k_clusters_and_is_seeded() {
        let (values, truth) = three_blobs();
        let labels = kmeans(&values, 2, 3, 7).unwrap();
        let distinct: std::collections::BTreeSet<i64> = labels.iter().copied().collect();
        assert_eq!(distinct, [0, 1, 2].into_iter().collect());
        assert!(adjusted_rand_index(&truth, &labels) > 0.95);
        assert_eq!(labels, kmeans(&values, 2, 3, 7).unwrap());
    }

    #[test]
    fn kmeans_on_too_few_distinct_rows_is_a_typed_error() {
        let error = kmeans(&[1.0; 20], 2, 3, 1).unwrap_err();
        assert_eq!(error.to_string(), "k 3 exceeds the 1 distinct rows; lower it");
        let error = kmeans(&[1.0, 2.0], 2, 3, 1).unwrap_err();
        assert_eq!(error.to_string(), "k 3 exceeds the 1 rows to cluster");
    }

    #[test]
    fn dbscan_and_mixture_recover_blobs() {
        let (values, truth) = three_blobs();
        let labels = dbscan(&values, 2, 2.0, 4).unwrap();
        assert!(adjusted_rand_index(&truth, &labels) > 0.9);
        let (labels, probabilities) = gaussian_mixture(&values, 2, 3, 3).unwrap();
        assert!(adjusted_rand_index(&truth, &labels) > 0.95);
        assert!(probabilities.iter().all(|p| (0.0..=1.0).contains(p)));
    }

    #[test]
    fn agglomerative_linkages_recover_blobs_with_n_clusters() {
        let (values, truth) = three_blobs();
        for linkage in [Linkage::Ward, Linkage::Average, Linkage::Complete] {
            let labels = agglomerative(&values, 2, 3, linkage).unwrap();
            assert_eq!(labels.iter().collect::<std::collections::BTreeSet<_>>().len(), 3);
            assert!(adjusted_rand_index(&truth, &labels) > 0.95, "{linkage:?}");
        }
        assert_eq!(agglomerative(&[1.0, 2.0], 2, 1, Linkage::Ward).unwrap(), vec![0]);
    }
}
