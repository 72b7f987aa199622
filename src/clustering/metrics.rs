//! Quality measures, with scikit-learn's definitions: internal (silhouette, Davies-Bouldin,
//! Calinski-Harabasz) on the clustered space with noise excluded, external against a
//! categorical reference (ARI, NMI with arithmetic averaging, homogeneity, completeness,
//! V-measure, purity, contingency table), and trustworthiness of an embedding.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::knn::{exact_knn, squared_euclidean};
use super::random::SeededRandom;

/// A cross-tabulation of two labelings: `counts[row][column]`.
struct Contingency {
    counts: Vec<Vec<u64>>,
    row_sums: Vec<u64>,
    column_sums: Vec<u64>,
    total: u64,
}

fn contingency<A: Ord + Clone, B: Ord + Clone>(first: &[A], second: &[B]) -> Contingency {
    let first_index: BTreeMap<A, usize> = first
        .iter()
        .cloned()
        .collect::<std::collections::BTreeSet<A>>()
        .into_iter()
        .enumerate()
        .map(|(i, v)| (v, i))
        .collect();
    let second_index: BTreeMap<B, usize> = second
        .iter()
        .cloned()
        .collect::<std::collections::BTreeSet<B>>()
        .into_iter()
        .enumerate()
        .map(|(i, v)| (v, i))
        .collect();
    let mut counts = vec![vec![0u64; second_index.len()]; first_index.len()];
    for (a, b) in first.iter().zip(second) {
        counts[first_index[a]][second_index[b]] += 1;
    }
    let row_sums = counts.iter().map(|row| row.iter().sum()).collect();
    let column_sums = (0..second_index.len()).map(|column| counts.iter().map(|row| row[column]).sum()).collect();
    Contingency { counts, row_sums, column_sums, total: first.len().min(second.len()) as u64 }
}

fn entropy_of_counts(counts: &[u64], total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let total = total as f64;
    counts
        .iter()
        .filter(|count| **count > 0)
        .map(|count| {
            let p = *count as f64 / total;
            -p * p.ln()
        })
        .sum()
}

fn mutual_information(table: &Contingency) -> f64 {
    let total = table.total as f64;
    let mut sum = 0.0;
    for (row, counts) in table.counts.iter().enumerate() {
        for (column, count) in counts.iter().enumerate() {
            if *count > 0 {
                let c = *count as f64;
                sum += c / total * (total * c / (table.row_sums[row] as f64 * table.column_sums[column] as f64)).ln();
            }
        }
    }
    sum.max(0.0)
}

/// Adjusted Rand index (scikit-learn's `adjusted_rand_score`; every label, -1 included, is
/// a category).
pub fn adjusted_rand_index<A: Ord + Clone, B: Ord + Clone>(truth: &[A], predicted: &[B]) -> f64 {
    let table = contingency(truth, predicted);
    let n = table.total as f64;
    let sum_squares: f64 = table.counts.iter().flatten().map(|c| (*c as f64) * (*c as f64)).sum();
    let sum_rows: f64 = table.row_sums.iter().map(|c| (*c as f64) * (*c as f64)).sum();
    let sum_columns: f64 = table.column_sums.iter().map(|c| (*c as f64) * (*c as f64)).sum();
    let true_positive = sum_squares - n;
    let false_positive = sum_columns - sum_squares;
    let false_negative = sum_rows - sum_squares;
    let true_negative = n * n - false_positive - false_negative - sum_squares;
    if false_negative == 0.0 && false_positive == 0.0 {
        return 1.0;
    }
    2.0 * (true_positive * true_negative - false_negative * false_positive)
        / ((true_positive + false_negative) * (false_negative + true_negative)
            + (true_positive + false_positive) * (false_positive + true_negative))
}

/// Normalised mutual information, arithmetic mean normaliser (scikit-learn's default).
pub fn normalized_mutual_information<A: Ord + Clone, B: Ord + Clone>(truth: &[A], predicted: &[B]) -> f64 {
    let table = contingency(truth, predicted);
    let (classes, clusters) = (table.row_sums.len(), table.column_sums.len());
    if (classes == 1 && clusters == 1) || (classes == 0 && clusters == 0) {
        return 1.0;
    }
    let information = mutual_information(&table);
    if information == 0.0 {
        return 0.0;
    }
    let h_true = entropy_of_counts(&table.row_sums, table.total);
    let h_predicted = entropy_of_counts(&table.column_sums, table.total);
    information / ((h_true + h_predicted) / 2.0).max(f64::EPSILON)
}

/// (homogeneity, completeness, V-measure), scikit-learn's definitions with beta 1.
pub fn homogeneity_completeness_v_measure<A: Ord + Clone, B: Ord + Clone>(
    truth: &[A],
    predicted: &[B],
) -> (f64, f64, f64) {
    if truth.is_empty() {
        return (1.0, 1.0, 1.0);
    }
    let table = contingency(truth, predicted);
    let entropy_classes = entropy_of_counts(&table.row_sums, table.total);
    let entropy_clusters = entropy_of_counts(&table.column_sums, table.total);
    let information = mutual_information(&table);
    let homogeneity = if entropy_classes > 0.0 { information / entropy_classes } else { 1.0 };
    let completeness = if entropy_clusters > 0.0 { information / entropy_clusters } else { 1.0 };
    let v_measure = if homogeneity + completeness == 0.0 {
        0.0
    } else {
        2.0 * homogeneity * completeness / (homogeneity + completeness)
    };
    (homogeneity, completeness, v_measure)
}

/// Fraction of rows whose category is the majority category of their cluster.
pub fn purity<A: Ord + Clone, B: Ord + Clone>(truth: &[A], predicted: &[B]) -> f64 {
    if truth.is_empty() {
        return 1.0;
    }
    let table = contingency(predicted, truth);
    let majority: u64 = table.counts.iter().map(|row| row.iter().copied().max().unwrap_or(0)).sum();
    majority as f64 / table.total as f64
}

/// Clusters (rows) by reference categories (columns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContingencyTable {
    pub clusters: Vec<i64>,
    pub categories: Vec<String>,
    pub counts: Vec<Vec<u64>>,
}

pub fn contingency_table(labels: &[i64], categories: &[String]) -> ContingencyTable {
    let table = contingency(labels, categories);
    let mut clusters: Vec<i64> = labels.to_vec();
    clusters.sort_unstable();
    clusters.dedup();
    let mut names: Vec<String> = categories.to_vec();
    names.sort_unstable();
    names.dedup();
    ContingencyTable { clusters, categories: names, counts: table.counts }
}

/// Agreement of the clustering with a categorical reference (a metadata field or folder per
/// row). Scores use the non-noise rows; the contingency table includes noise (label -1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceMetrics {
    pub rows_scored: usize,
    pub adjusted_rand_index: f64,
    pub normalized_mutual_information: f64,
    pub homogeneity: f64,
    pub completeness: f64,
    pub v_measure: f64,
    pub purity: f64,
    pub contingency: ContingencyTable,
}

pub fn reference_metrics(labels: &[i64], categories: &[String]) -> Result<ReferenceMetrics, super::ClusteringError> {
    if labels.len() != categories.len() {
        return Err(super::ClusteringError::LengthMismatch {
            what: "categories",
            given: categories.len(),
            rows: labels.len(),
        });
    }
    let (kept_labels, kept_categories): (Vec<i64>, Vec<String>) = labels
        .iter()
        .zip(categories)
        .filter(|(label, _)| **label >= 0)
        .map(|(label, category)| (*label, category.clone()))
        .unzip();
    let (homogeneity, completeness, v_measure) = homogeneity_completeness_v_measure(&kept_categories, &kept_labels);
    Ok(ReferenceMetrics {
        rows_scored: kept_labels.len(),
        adjusted_rand_index: adjusted_rand_index(&kept_categories, &kept_labels),
        normalized_mutual_information: normalized_mutual_information(&kept_categories, &kept_labels),
        homogeneity,
        completeness,
        v_measure,
        purity: purity(&kept_categories, &kept_labels),
        contingency: contingency_table(labels, categories),
    })
}

/// Cluster-validity indices on the clustered space (noise excluded). Each is `None` with
/// fewer than two clusters (or, for silhouette, when every scored row is its own cluster).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InternalMetrics {
    pub cluster_count: usize,
    pub noise_count: usize,
    pub silhouette: Option<f64>,
    /// Rows the silhouette was computed on (a seeded sample when there are more than
    /// `silhouette_sample_size` clustered rows).
    pub silhouette_rows: usize,
    pub silhouette_sampled: bool,
    pub davies_bouldin: Option<f64>,
    pub calinski_harabasz: Option<f64>,
}

fn non_noise(values: &[f32], dims: usize, labels: &[i64]) -> (Vec<f32>, Vec<usize>, usize) {
    let mut kept = Vec::new();
    let mut kept_labels = Vec::new();
    let mut map: BTreeMap<i64, usize> = BTreeMap::new();
    for (row, label) in labels.iter().enumerate() {
        if *label >= 0 {
            let next = map.len();
            let index = *map.entry(*label).or_insert(next);
            kept.extend_from_slice(&values[row * dims..(row + 1) * dims]);
            kept_labels.push(index);
        }
    }
    (kept, kept_labels, map.len())
}

pub fn internal_metrics(values: &[f32], dims: usize, labels: &[i64], sample_size: usize, seed: u64) -> InternalMetrics {
    let (kept, kept_labels, cluster_count) = non_noise(values, dims, labels);
    let noise_count = labels.iter().filter(|label| **label < 0).count();
    let mut metrics = InternalMetrics {
        cluster_count,
        noise_count,
        silhouette: None,
        silhouette_rows: 0,
        silhouette_sampled: false,
        davies_bouldin: None,
        calinski_harabasz: None,
    };
    if cluster_count < 2 || dims == 0 {
        return metrics;
    }
    metrics.davies_bouldin = Some(davies_bouldin(&kept, dims, &kept_labels, cluster_count));
    metrics.calinski_harabasz = Some(calinski_harabasz(&kept, dims, &kept_labels, cluster_count));
    let rows = kept_labels.len();
    let (sample_values, sample_labels) = if rows > sample_size {
        let chosen = SeededRandom::new(seed).sample_indices(rows, sample_size);
        metrics.silhouette_sampled = true;
        let mut sample_values = Vec::with_capacity(chosen.len() * dims);
        for row in &chosen {
            sample_values.extend_from_slice(&kept[row * dims..(row + 1) * dims]);
        }
        (sample_values, chosen.iter().map(|row| kept_labels[*row]).collect::<Vec<_>>())
    } else {
        (kept.clone(), kept_labels.clone())
    };
    metrics.silhouette_rows = sample_labels.len();
    metrics.silhouette = silhouette(&sample_values, dims, &sample_labels);
    metrics
}

/// Mean silhouette (scikit-learn's `silhouette_score`; rows alone in their cluster score 0).
/// `labels` are `0..k`. `None` unless 2 <= k <= n - 1.
pub fn silhouette(values: &[f32], dims: usize, labels: &[usize]) -> Option<f64> {
    let rows = labels.len();
    let clusters = labels.iter().copied().max().map(|max| max + 1).unwrap_or(0);
    let distinct = labels.iter().collect::<std::collections::BTreeSet<_>>().len();
    if distinct < 2 || distinct > rows.saturating_sub(1) {
        return None;
    }
    let mut sizes = vec![0usize; clusters];
    labels.iter().for_each(|label| sizes[*label] += 1);
    let mut total = 0.0f64;
    let mut sums = vec![0.0f64; clusters];
    for row in 0..rows {
        sums.iter_mut().for_each(|sum| *sum = 0.0);
        let own = &values[row * dims..(row + 1) * dims];
        for other in 0..rows {
            if other != row {
                sums[labels[other]] += squared_euclidean(own, &values[other * dims..(other + 1) * dims]).sqrt() as f64;
            }
        }
        let label = labels[row];
        if sizes[label] <= 1 {
            continue;
        }
        let a = sums[label] / (sizes[label] - 1) as f64;
        let b = (0..clusters)
            .filter(|cluster| *cluster != label && sizes[*cluster] > 0)
            .map(|cluster| sums[cluster] / sizes[cluster] as f64)
            .fold(f64::INFINITY, f64::min);
        let denominator = a.max(b);
        if denominator > 0.0 {
            total += (b - a) / denominator;
        }
    }
    Some(total / rows as f64)
}

fn centroids(values: &[f32], dims: usize, labels: &[usize], clusters: usize) -> (Vec<f64>, Vec<usize>) {
    let mut sums = vec![0.0f64; clusters * dims];
    let mut sizes = vec![0usize; clusters];
    for (row, label) in labels.iter().enumerate() {
        sizes[*label] += 1;
        for column in 0..dims {
            sums[label * dims + column] += values[row * dims + column] as f64;
        }
    }
    for cluster in 0..clusters {
        for column in 0..dims {
            sums[cluster * dims + column] /= sizes[cluster].max(1) as f64;
        }
    }
    (sums, sizes)
}

fn distance_f64(left: &[f64], right: &[f64]) -> f64 {
    left.iter().zip(right).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt()
}

/// Davies-Bouldin index (lower is better). `labels` are `0..clusters`.
pub fn davies_bouldin(values: &[f32], dims: usize, labels: &[usize], clusters: usize) -> f64 {
    let (centres, sizes) = centroids(values, dims, labels, clusters);
    let mut scatter = vec![0.0f64; clusters];
    for (row, label) in labels.iter().enumerate() {
        let point: Vec<f64> = values[row * dims..(row + 1) * dims].iter().map(|v| *v as f64).collect();
        scatter[*label] += distance_f64(&point, &centres[label * dims..(label + 1) * dims]);
    }
    for cluster in 0..clusters {
        scatter[cluster] /= sizes[cluster].max(1) as f64;
    }
    // Each cluster's worst ratio is taken as the pairs are met: no clusters x clusters matrix
    // (18 036 HDBSCAN clusters of a million windows made it 2.6 GB).
    let close_to_zero = |value: f64| value.abs() <= 1e-8;
    let centre = |cluster: usize| &centres[cluster * dims..(cluster + 1) * dims];
    let mut any_separation = false;
    let mut total = 0.0;
    for first in 0..clusters {
        let mut worst = 0.0f64;
        for second in 0..clusters {
            if first == second {
                continue;
            }
            let separation = distance_f64(centre(first), centre(second));
            any_separation |= !close_to_zero(separation);
            let ratio = if separation == 0.0 { 0.0 } else { (scatter[first] + scatter[second]) / separation };
            worst = worst.max(ratio);
        }
        total += worst;
    }
    if scatter.iter().all(|s| close_to_zero(*s)) || !any_separation {
        return 0.0;
    }
    total / clusters as f64
}

/// Calinski-Harabasz index (higher is better). `labels` are `0..clusters`.
pub fn calinski_harabasz(values: &[f32], dims: usize, labels: &[usize], clusters: usize) -> f64 {
    let rows = labels.len();
    let (centres, sizes) = centroids(values, dims, labels, clusters);
    let mut mean = vec![0.0f64; dims];
    for row in 0..rows {
        for column in 0..dims {
            mean[column] += values[row * dims + column] as f64 / rows as f64;
        }
    }
    let mut between = 0.0;
    for cluster in 0..clusters {
        let d = distance_f64(&centres[cluster * dims..(cluster + 1) * dims], &mean);
        between += sizes[cluster] as f64 * d * d;
    }
    let mut within = 0.0;
    for (row, label) in labels.iter().enumerate() {
        for column in 0..dims {
            let difference = values[row * dims + column] as f64 - centres[label * dims + column];
            within += difference * difference;
        }
    }
    if within == 0.0 {
        return 1.0;
    }
    between * (rows - clusters) as f64 / (within * (clusters - 1) as f64)
}

/// Trustworthiness of `low` (embedding) with respect to `high` (scikit-learn's
/// `sklearn.manifold.trustworthiness`, Euclidean): 1 - 2/(n k (2n - 3k - 1)) times the sum,
/// over each row's k embedding neighbours, of how far beyond k they rank in the original
/// space. Quadratic in n: callers sample large sets. `k` must be below n / 2.
pub fn trustworthiness(high: &[f32], high_dims: usize, low: &[f32], low_dims: usize, k: usize) -> Option<f64> {
    let rows = high.len() / high_dims.max(1);
    if rows == 0 || low.len() / low_dims.max(1) != rows || k == 0 || 2 * k >= rows {
        return None;
    }
    let embedded = exact_knn(low, low_dims, k + 1);
    let mut penalty = 0.0f64;
    let mut distances = vec![0.0f32; rows];
    for row in 0..rows {
        let own = &high[row * high_dims..(row + 1) * high_dims];
        for other in 0..rows {
            distances[other] = squared_euclidean(own, &high[other * high_dims..(other + 1) * high_dims]);
        }
        for neighbor in embedded.row_indices(row).iter().filter(|index| **index as usize != row).take(k) {
            let target = distances[*neighbor as usize];
            // 1-based rank among the other rows, ties broken by index as a stable sort would.
            let rank = 1 + distances
                .iter()
                .enumerate()
                .filter(|(other, distance)| {
                    *other != row && (**distance < target || (**distance == target && *other < *neighbor as usize))
                })
                .count();
            if rank > k {
                penalty += (rank - k) as f64;
            }
        }
    }
    let (n, k) = (rows as f64, k as f64);
    Some(1.0 - penalty * (2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0))))
}

/// Per-label counts (noise included), sorted by label.
pub fn label_counts(labels: &[i64]) -> Vec<(i64, u64)> {
    let mut counts: HashMap<i64, u64> = HashMap::new();
    labels.iter().for_each(|label| *counts.entry(*label).or_insert(0) += 1);
    let mut sorted: Vec<(i64, u64)> = counts.into_iter().collect();
    sorted.sort_unstable();
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 1e-6, "{actual} != {expected}");
    }

    #[test]
    fn identical_and_permuted_labelings_score_one() {
        let truth = [0, 0, 1, 1, 2, 2];
        let renamed = [5, 5, 3, 3, 9, 9];
        close(adjusted_rand_index(&truth, &renamed), 1.0);
        close(normalized_mutual_information(&truth, &renamed), 1.0);
        close(purity(&truth, &renamed), 1.0);
    }

    #[test]
    fn internal_metrics_need_two_clusters() {
        let values = [0.0f32, 0.0, 1.0, 1.0, 2.0, 2.0];
        let metrics = internal_metrics(&values, 2, &[0, 0, -1], 100, 1);
        assert_eq!(metrics.cluster_count, 1);
        assert_eq!(metrics.noise_count, 1);
        assert!(
            metrics.silhouette.is_none() && metrics.davies_bouldin.is_none() && metrics.calinski_harabasz.is_none()
        );
    }

    #[test]
    fn trustworthiness_of_the_data_itself_is_one() {
        let mut random = SeededRandom::new(4);
        let values: Vec<f32> = (0..60 * 3).map(|_| random.next_normal() as f32).collect();
        close(trustworthiness(&values, 3, &values, 3, 5).unwrap(), 1.0);
        assert!(trustworthiness(&values, 3, &values, 3, 40).is_none());
    }
}
