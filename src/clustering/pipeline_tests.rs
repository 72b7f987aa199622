//! End-to-end behaviour of `run_clustering` / `run_sweep`, and property tests of the
//! invariants every clustering must keep.

use proptest::prelude::*;

use super::metrics::{adjusted_rand_index, normalized_mutual_information};
use super::random::SeededRandom;
use super::*;

/// `per_blob` rows around each of `blobs` random centres in `dims` dimensions.
fn structured_blobs(blobs: usize, per_blob: usize, dims: usize, seed: u64) -> (Vec<f32>, Vec<i64>) {
    let mut random = SeededRandom::new(seed);
    let centres: Vec<Vec<f32>> =
        (0..blobs).map(|_| (0..dims).map(|_| (random.next_normal() * 4.0) as f32).collect()).collect();
    let mut values = Vec::new();
    let mut truth = Vec::new();
    for (label, centre) in centres.iter().enumerate() {
        for _ in 0..per_blob {
            values.extend(centre.iter().map(|c| c + (random.next_normal() * 0.5) as f32));
            truth.push(label as i64);
        }
    }
    (values, truth)
}

fn quick_umap(n_components: usize) -> UmapParameters {
    UmapParameters { n_components, n_epochs: Some(60), ..Default::default() }
}

fn no_progress() -> impl FnMut(&str, f64) -> bool {
    |_: &str, _: f64| true
}

#[test]
fn hdbscan_after_umap_recovers_the_blobs() {
    let (values, truth) = structured_blobs(4, 60, 16, 1);
    let parameters = ClusteringParameters {
        normalize_l2: false,
        reduction: Reduction::Umap(quick_umap(5)),
        plot_2d: true,
        ..Default::default()
    };
    let mut stages = Vec::new();
    let result = run_clustering(&values, 16, &parameters, &mut |stage: &str, fraction: f64| {
        stages.push((stage.to_string(), fraction));
        true
    })
    .unwrap();
    let ari = adjusted_rand_index(&truth, &result.labels);
    assert!(ari >= 0.95, "ari {ari}");
    assert_eq!(result.cluster_count, 4);
    assert_eq!(result.clustered_dims, 5);
    assert_eq!(result.coordinates_2d.as_ref().map(Vec::len), Some(240));
    assert!(stages.windows(2).all(|pair| pair[0].1 <= pair[1].1), "progress must not go back");
    assert_eq!(stages.last().map(|s| s.1), Some(1.0));
    assert!(result.metrics.silhouette.unwrap() > 0.5);
}

#[test]
fn the_same_seed_gives_identical_labels_and_layouts() {
    let (values, _) = structured_blobs(3, 40, 8, 2);
    let parameters =
        ClusteringParameters { reduction: Reduction::Umap(quick_umap(3)), plot_2d: false, ..Default::default() };
    let first = run_clustering(&values, 8, &parameters, &mut no_progress()).unwrap();
    let second = run_clustering(&values, 8, &parameters, &mut no_progress()).unwrap();
    assert_eq!(first, second);
}

#[test]
fn a_matrix_given_up_to_the_run_gives_the_same_result_as_a_borrowed_one() {
    let (values, _) = structured_blobs(3, 40, 8, 5);
    for plot_2d in [false, true] {
        let parameters = ClusteringParameters {
            normalize_l2: true,
            reduction: Reduction::Umap(quick_umap(3)),
            plot_2d,
            ..Default::default()
        };
        let borrowed = run_clustering(&values, 8, &parameters, &mut no_progress()).unwrap();
        let consumed = run_clustering_consuming(values.clone(), 8, &parameters, &mut no_progress()).unwrap();
        assert_eq!(borrowed, consumed);
    }
}

#[test]
fn kmeans_gives_exactly_k_clusters_and_no_noise() {
    let (values, _) = structured_blobs(5, 20, 6, 3);
    let parameters = ClusteringParameters {
        reduction: Reduction::Pca { n_components: 4 },
        plot_2d: false,
        algorithm: Algorithm::Kmeans { k: 5, seed: 1 },
        ..Default::default()
    };
    let result = run_clustering(&values, 6, &parameters, &mut no_progress()).unwrap();
    assert_eq!(result.cluster_count, 5);
    assert!(result.labels.iter().all(|label| (0..5).contains(label)));
}

#[test]
fn small_and_awkward_inputs_give_defined_answers() {
    let plain = ClusteringParameters { reduction: Reduction::None, plot_2d: false, ..Default::default() };
    // One row: all noise.
    let result = run_clustering(&[1.0, 2.0, 3.0], 3, &plain, &mut no_progress()).unwrap();
    assert_eq!(result.labels, vec![-1]);
    assert_eq!(result.cluster_sizes, vec![(-1, 1)]);
    // Fewer rows than min_cluster_size: all noise, metrics None.
    let result = run_clustering(&[0.0, 1.0, 2.0, 3.0], 2, &plain, &mut no_progress()).unwrap();
    assert_eq!(result.labels, vec![-1, -1]);
    assert!(result.metrics.silhouette.is_none());
    // One row through UMAP with the plot.
    let result = run_clustering(&[1.0, 2.0], 2, &ClusteringParameters::default(), &mut no_progress()).unwrap();
    assert_eq!(result.labels, vec![-1]);
    assert_eq!(result.coordinates_2d, Some(vec![[0.0, 0.0]]));
    // Zero-variance data through the default pipeline.
    let result = run_clustering(&[0.25f32; 40 * 4], 4, &ClusteringParameters::default(), &mut no_progress()).unwrap();
    assert_eq!(result.labels.len(), 40);
    assert!(result.coordinates_2d.unwrap().iter().all(|p| p[0].is_finite() && p[1].is_finite()));
}

#[test]
fn bad_matrices_are_typed_errors() {
    let parameters = ClusteringParameters::default();
    let error = run_clustering(&[1.0, f32::NAN, 0.0, 0.0], 2, &parameters, &mut no_progress()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "row 0 has a non-finite value (NaN or infinity) in column 1; repair or drop that embedding"
    );
    assert_eq!(run_clustering(&[], 4, &parameters, &mut no_progress()).unwrap_err(), ClusteringError::Empty);
    assert!(matches!(
        run_clustering(&[1.0; 5], 2, &parameters, &mut no_progress()),
        Err(ClusteringError::RaggedMatrix { .. })
    ));
    let first = vec![0.0f32; 1536];
    let third = vec![0.0f32; 1280];
    let error = stack_embedding_sets(&[(1, first.as_slice(), 1536), (3, third.as_slice(), 1280)]).unwrap_err();
    assert_eq!(error.to_string(), "embedding dimension mismatch: set 3 has 1280, set 1 has 1536");
    let (stacked, dims) =
        stack_embedding_sets(&[("a", first.as_slice(), 1536), ("b", first.as_slice(), 1536)]).unwrap();
    assert_eq!((stacked.len(), dims), (3072, 1536));
}

#[test]
fn cancelling_stops_between_stages_and_epochs() {
    let (values, _) = structured_blobs(2, 30, 4, 4);
    let error =
        run_clustering(&values, 4, &ClusteringParameters::default(), &mut |stage: &str, _| stage != "clustering")
            .unwrap_err();
    assert_eq!(error.to_string(), "cancelled during clustering");
    let mut calls = 0;
    let error = run_clustering(&values, 4, &ClusteringParameters::default(), &mut |_: &str, _| {
        calls += 1;
        calls < 10
    })
    .unwrap_err();
    assert_eq!(error.to_string(), "cancelled during reducing");
}

#[test]
fn a_sweep_scores_every_setting_and_reports_bad_ones() {
    let (values, _) = structured_blobs(3, 30, 4, 5);
    let parameters = ClusteringParameters { reduction: Reduction::None, normalize_l2: false, ..Default::default() };
    let sweep = SweepParameters::Hdbscan {
        min_cluster_size_from: 5,
        min_cluster_size_to: 15,
        min_cluster_size_step: 5,
        cluster_selections: vec![ClusterSelection::Eom, ClusterSelection::Leaf],
        min_samples: None,
        metric: DistanceMetric::Euclidean,
    };
    let entries = run_sweep(&values, 4, &parameters, &sweep, &mut no_progress()).unwrap();
    assert_eq!(entries.len(), 6);
    assert!(entries.iter().all(|entry| entry.error.is_none() && entry.cluster_count == 3));
    let sweep = SweepParameters::Kmeans { k_from: 2, k_to: 4, seed: 1 };
    let entries = run_sweep(&values[..4 * 3], 4, &parameters, &sweep, &mut no_progress()).unwrap();
    assert_eq!(entries[0].cluster_count, 2);
    assert_eq!(entries[2].error.as_deref(), Some("k 4 exceeds the 3 rows to cluster"));
}

fn check_label_invariants(labels: &[i64], sizes: &[(i64, u64)], rows: usize) -> Result<(), TestCaseError> {
    prop_assert_eq!(labels.len(), rows);
    prop_assert_eq!(sizes.iter().map(|(_, size)| *size).sum::<u64>(), rows as u64);
    let clusters: std::collections::BTreeSet<i64> = labels.iter().copied().filter(|label| *label >= 0).collect();
    prop_assert!(labels.iter().all(|label| *label >= -1));
    let expected: std::collections::BTreeSet<i64> = (0..clusters.len() as i64).collect();
    prop_assert_eq!(clusters, expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_algorithm_keeps_the_label_invariants(
        rows in 1usize..40,
        dims in 1usize..4,
        seed in 0u64..1000,
        choice in 0usize..5,
        size in 2usize..8,
    ) {
        let mut random = SeededRandom::new(seed);
        let values: Vec<f32> = (0..rows * dims).map(|_| (random.next_normal() * 3.0).round() as f32).collect();
        let algorithm = match choice {
            0 => Algorithm::Hdbscan(HdbscanParameters { min_cluster_size: size, ..Default::default() }),
            1 => Algorithm::Hdbscan(HdbscanParameters {
                min_cluster_size: size,
                cluster_selection: ClusterSelection::Leaf,
                ..Default::default()
            }),
            2 => Algorithm::Kmeans { k: size.min(rows), seed },
            3 => Algorithm::Dbscan { eps: 1.5, min_points: size },
            _ => Algorithm::Agglomerative { n_clusters: size.min(rows), linkage: Linkage::Average },
        };
        let parameters = ClusteringParameters {
            normalize_l2: false,
            reduction: Reduction::None,
            plot_2d: false,
            algorithm,
            ..Default::default()
        };
        match run_clustering(&values, dims, &parameters, &mut no_progress()) {
            Ok(result) => {
                check_label_invariants(&result.labels, &result.cluster_sizes, rows)?;
                prop_assert!(result.probabilities.iter().all(|p| (0.0..=1.0).contains(p)));
                if let Some(silhouette) = result.metrics.silhouette {
                    prop_assert!((-1.0..=1.0).contains(&silhouette));
                }
                if let Some(davies_bouldin) = result.metrics.davies_bouldin {
                    prop_assert!(davies_bouldin >= 0.0);
                }
                if let Some(calinski_harabasz) = result.metrics.calinski_harabasz {
                    prop_assert!(calinski_harabasz >= 0.0);
                }
            }
            // Only K-Means may refuse, on too few distinct rows.
            Err(error) => prop_assert!(matches!(error, ClusteringError::TooFewDistinctRows { .. }), "{}", error),
        }
    }

    #[test]
    fn external_scores_are_bounded_and_ignore_label_names(
        truth in proptest::collection::vec(0i64..4, 1..60),
        predicted_seed in 0u64..1000,
        shift in 1i64..50,
    ) {
        let mut random = SeededRandom::new(predicted_seed);
        let predicted: Vec<i64> = truth.iter().map(|_| random.next_below(5) as i64 - 1).collect();
        let renamed: Vec<i64> = predicted.iter().map(|label| label * 7 + shift).collect();
        let ari = adjusted_rand_index(&truth, &predicted);
        prop_assert!(ari <= 1.0 + 1e-12);
        prop_assert!((ari - adjusted_rand_index(&truth, &renamed)).abs() < 1e-12);
        let nmi = normalized_mutual_information(&truth, &predicted);
        prop_assert!((-1e-12..=1.0 + 1e-12).contains(&nmi));
        prop_assert!((nmi - normalized_mutual_information(&truth, &renamed)).abs() < 1e-12);
        let categories: Vec<String> = truth.iter().map(|t| format!("folder-{t}")).collect();
        let reference = reference_metrics(&predicted, &categories).unwrap();
        for score in [reference.homogeneity, reference.completeness, reference.v_measure, reference.purity] {
            prop_assert!((-1e-12..=1.0 + 1e-12).contains(&score));
        }
        let total: u64 = reference.contingency.counts.iter().flatten().sum();
        prop_assert_eq!(total, truth.len() as u64);
    }
}

#[test]
fn the_plot_layout_reuses_the_neighbour_graph_without_changing_the_result() {
    let (values, _) = structured_blobs(3, 30, 6, 8);
    let parameters = ClusteringParameters { reduction: Reduction::Umap(quick_umap(3)), ..Default::default() };
    let result = run_clustering(&values, 6, &parameters, &mut no_progress()).unwrap();
    let mut normalized = values.clone();
    reduce::normalize_rows_l2(&mut normalized, 6);
    let alone = umap::umap_embed(&normalized, 6, &parameters.plot_umap(), &mut |_| true).unwrap();
    let expected: Vec<[f32; 2]> = alone.chunks(2).map(|pair| [pair[0], pair[1]]).collect();
    assert_eq!(result.coordinates_2d, Some(expected));
}
