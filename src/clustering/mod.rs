//! The pure clustering core: reduce embeddings (L2 normalisation, PCA, UMAP), cluster them
//! (HDBSCAN by default; K-Means, DBSCAN, Gaussian mixture, agglomerative), measure the
//! result, sweep parameters, and summarise each cluster's metadata. No I/O, no clocks, no
//! global random state: the same input, parameters and seeds give the same output.
//!
//! The worker calls [`run_clustering`] (or [`run_sweep`]), then
//! [`metadata::summarize_clusters`] and, when the user picked a reference field,
//! [`metrics::reference_metrics`].

// Numeric kernels index several parallel arrays by row and column; index loops read better
// there than zipped iterators.
#![allow(clippy::needless_range_loop)]

pub mod alternatives;
pub mod hdbscan;
pub mod knn;
pub mod metadata;
pub mod metrics;
pub mod parameters;
pub mod random;
pub mod reduce;
pub mod umap;

#[cfg(test)]
mod pipeline_tests;
#[cfg(test)]
mod reference_tests;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

pub use metadata::{flattened_fields, summarize_clusters, ClusterSummary, FileContext};
pub use metrics::{reference_metrics, InternalMetrics, ReferenceMetrics};
pub use parameters::{
    Algorithm, ClusterSelection, ClusteringParameters, DistanceMetric, HdbscanParameters, Linkage, Reduction,
    SweepParameters, UmapParameters,
};

/// Everything that can go wrong, each with a message a person can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClusteringError {
    #[error("{0}")]
    InvalidParameter(String),
    #[error("no embeddings to cluster")]
    Empty,
    #[error("embedding dimension is 0")]
    ZeroDimension,
    #[error("matrix of {values} values is not a whole number of rows of {dims}")]
    RaggedMatrix { values: usize, dims: usize },
    #[error("embedding dimension mismatch: set {set} has {dims}, set {first_set} has {first_dims}")]
    DimensionMismatch { set: String, dims: usize, first_set: String, first_dims: usize },
    #[error("row {row} has a non-finite value (NaN or infinity) in column {column}; repair or drop that embedding")]
    NonFinite { row: usize, column: usize },
    #[error("{parameter} {value} exceeds the {rows} rows to cluster")]
    TooFewRows { parameter: &'static str, value: usize, rows: usize },
    #[error("{parameter} {value} exceeds the {distinct} distinct rows; lower it")]
    TooFewDistinctRows { parameter: &'static str, value: usize, distinct: usize },
    #[error(
        "{algorithm} keeps all pairwise distances: {rows} rows exceed its limit of {limit}; use hdbscan or kmeans"
    )]
    TooManyRows { algorithm: &'static str, rows: usize, limit: usize },
    #[error("{what} has {given} entries but there are {rows} rows")]
    LengthMismatch { what: &'static str, given: usize, rows: usize },
    #[error("{algorithm} failed: {message}")]
    Backend { algorithm: &'static str, message: String },
    #[error("cancelled during {stage}")]
    Cancelled { stage: String },
}

/// The outcome of one clustering run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusteringResult {
    /// Per row: -1 for noise, otherwise `0..cluster_count` (contiguous).
    pub labels: Vec<i64>,
    /// Per row: membership strength in [0, 1] (HDBSCAN as scikit-learn computes it, the
    /// Gaussian mixture's posterior; 1 for K-Means and agglomerative members; 0 for noise).
    pub probabilities: Vec<f32>,
    /// Per row: the 2-D UMAP layout for the plot, when `plot_2d`.
    pub coordinates_2d: Option<Vec<[f32; 2]>>,
    /// The matrix that was clustered (row-major, `clustered_dims` wide).
    pub clustered_space: Vec<f32>,
    pub clustered_dims: usize,
    pub cluster_count: usize,
    /// `(label, size)` for every label, noise included, sorted by label.
    pub cluster_sizes: Vec<(i64, u64)>,
    pub metrics: InternalMetrics,
}

/// Checks the matrix shape and values: every value finite, `values.len()` a multiple of
/// `dims`. Returns the number of rows.
pub fn check_matrix(values: &[f32], dims: usize) -> Result<usize, ClusteringError> {
    if dims == 0 {
        return Err(ClusteringError::ZeroDimension);
    }
    if values.len() % dims != 0 {
        return Err(ClusteringError::RaggedMatrix { values: values.len(), dims });
    }
    if values.is_empty() {
        return Err(ClusteringError::Empty);
    }
    if let Some(position) = values.iter().position(|value| !value.is_finite()) {
        return Err(ClusteringError::NonFinite { row: position / dims, column: position % dims });
    }
    Ok(values.len() / dims)
}

/// Stacks the matrices of several embedding sets (`(name, values, dims)`) into one, refusing
/// sets of different dimension.
pub fn stack_embedding_sets<N: std::fmt::Display>(
    sets: &[(N, &[f32], usize)],
) -> Result<(Vec<f32>, usize), ClusteringError> {
    let Some((first_name, _, first_dims)) = sets.first() else {
        return Err(ClusteringError::Empty);
    };
    let mut stacked = Vec::with_capacity(sets.iter().map(|(_, values, _)| values.len()).sum());
    for (name, values, dims) in sets {
        if dims != first_dims {
            return Err(ClusteringError::DimensionMismatch {
                set: name.to_string(),
                dims: *dims,
                first_set: first_name.to_string(),
                first_dims: *first_dims,
            });
        }
        if *dims == 0 || values.len() % dims != 0 {
            return Err(ClusteringError::RaggedMatrix { values: values.len(), dims: *dims });
        }
        stacked.extend_from_slice(values);
    }
    Ok((stacked, *first_dims))
}

/// Progress callback: `(stage, fraction of the whole run in 0..=1)`; return false to cancel.
/// Stages: `reducing`, `clustering`, `measuring`, `plotting`.
pub type Progress<'a> = &'a mut dyn FnMut(&str, f64) -> bool;

fn report(progress: &mut dyn FnMut(&str, f64) -> bool, stage: &str, fraction: f64) -> Result<(), ClusteringError> {
    if progress(stage, fraction.clamp(0.0, 1.0)) {
        Ok(())
    } else {
        Err(ClusteringError::Cancelled { stage: stage.to_string() })
    }
}

/// `(prepared, reduced, reduced_dims)`.
type PreparedAndReduced<'m> = (Cow<'m, [f32]>, Vec<f32>, usize);

/// Normalises (when asked) and reduces the matrix: returns `(prepared, reduced, reduced_dims)`
/// where `prepared` is the (normalised) input the reduction saw. A borrowed matrix is copied
/// only when it must be normalised; an owned one is normalised in place (a million 1280-d rows
/// are 5 GB: a second copy would double the peak).
fn prepare_and_reduce<'m>(
    matrix: Cow<'m, [f32]>,
    dims: usize,
    parameters: &ClusteringParameters,
    progress: &mut dyn FnMut(&str, f64) -> bool,
    stage_span: (f64, f64),
    neighbor_cache: &mut Option<umap::NeighborCache>,
) -> Result<PreparedAndReduced<'m>, ClusteringError> {
    let mut prepared = matrix;
    if parameters.normalize_l2 {
        reduce::normalize_rows_l2(prepared.to_mut(), dims);
    }
    let (start, end) = stage_span;
    report(progress, "reducing", start)?;
    let (reduced, reduced_dims) = match &parameters.reduction {
        Reduction::None => (prepared.to_vec(), dims),
        Reduction::Pca { n_components } => reduce::pca_reduce(&prepared, dims, *n_components),
        Reduction::Umap(umap_parameters) => {
            let mut inner = |fraction: f64| progress("reducing", start + (end - start) * fraction);
            let layout = umap::umap_embed_cached(&prepared, dims, umap_parameters, neighbor_cache, &mut inner)
                .map_err(|_| ClusteringError::Cancelled { stage: "reducing".to_string() })?;
            (layout, umap_parameters.n_components)
        }
    };
    report(progress, "reducing", end)?;
    Ok((prepared, reduced, reduced_dims))
}

/// Clusters a (reduced) matrix with one algorithm: `(labels, probabilities)`.
pub fn cluster(values: &[f32], dims: usize, algorithm: &Algorithm) -> Result<(Vec<i64>, Vec<f32>), ClusteringError> {
    parameters::validate_algorithm(algorithm)?;
    let rows = values.len() / dims.max(1);
    let members_are_certain = |labels: Vec<i64>| {
        let probabilities = labels.iter().map(|label| if *label >= 0 { 1.0 } else { 0.0 }).collect();
        (labels, probabilities)
    };
    match algorithm {
        Algorithm::Hdbscan(hdbscan_parameters) => {
            let output = hdbscan::hdbscan(values, dims, hdbscan_parameters);
            Ok((output.labels, output.probabilities))
        }
        Algorithm::Kmeans { k, seed } => {
            alternatives::kmeans(values, dims, *k, *seed).map(|labels| members_are_certain(renumber(labels)))
        }
        Algorithm::Dbscan { eps, min_points } => {
            alternatives::dbscan(values, dims, *eps, *min_points).map(|labels| members_are_certain(renumber(labels)))
        }
        Algorithm::GaussianMixture { n_components, seed } => {
            let (labels, probabilities) = alternatives::gaussian_mixture(values, dims, *n_components, *seed)?;
            let labels = renumber(labels);
            Ok((labels, probabilities))
        }
        Algorithm::Agglomerative { n_clusters, linkage } => {
            if rows == 0 {
                return Ok((Vec::new(), Vec::new()));
            }
            alternatives::agglomerative(values, dims, *n_clusters, *linkage)
                .map(|labels| members_are_certain(renumber(labels)))
        }
    }
}

/// Renumbers non-noise labels to `0..k` in order of first appearance (an empty mixture
/// component or a skipped id would otherwise leave gaps).
pub fn renumber(labels: Vec<i64>) -> Vec<i64> {
    let mut mapping = std::collections::HashMap::new();
    labels
        .into_iter()
        .map(|label| {
            if label < 0 {
                -1
            } else {
                let next = mapping.len() as i64;
                *mapping.entry(label).or_insert(next)
            }
        })
        .collect()
}

/// Seed of the silhouette sample.
const SILHOUETTE_SEED: u64 = 0x51;

/// The whole run: normalise, reduce, cluster, measure, and lay out in 2-D for the plot.
pub fn run_clustering(
    matrix: &[f32],
    dims: usize,
    parameters: &ClusteringParameters,
    progress: &mut dyn FnMut(&str, f64) -> bool,
) -> Result<ClusteringResult, ClusteringError> {
    run_clustering_on(Cow::Borrowed(matrix), dims, parameters, progress)
}

/// [`run_clustering`] on a matrix the caller gives up: normalised in place, so the run holds
/// one copy of the input (the clustering job's way).
pub fn run_clustering_consuming(
    matrix: Vec<f32>,
    dims: usize,
    parameters: &ClusteringParameters,
    progress: &mut dyn FnMut(&str, f64) -> bool,
) -> Result<ClusteringResult, ClusteringError> {
    run_clustering_on(Cow::Owned(matrix), dims, parameters, progress)
}

fn run_clustering_on(
    matrix: Cow<'_, [f32]>,
    dims: usize,
    parameters: &ClusteringParameters,
    progress: &mut dyn FnMut(&str, f64) -> bool,
) -> Result<ClusteringResult, ClusteringError> {
    parameters.validate()?;
    check_matrix(&matrix, dims)?;
    let plot_separately = parameters.plot_2d
        && !matches!(&parameters.reduction, Reduction::Umap(umap_parameters) if umap_parameters.n_components == 2);
    let reduce_end = if plot_separately { 0.5 } else { 0.8 };
    let mut neighbor_cache = None;
    let (prepared, reduced, reduced_dims) =
        prepare_and_reduce(matrix, dims, parameters, progress, (0.0, reduce_end), &mut neighbor_cache)?;
    // The (normalised) input is needed again only for a separate plot layout: otherwise it is
    // let go before clustering.
    let plot_input = plot_separately.then_some(prepared);
    report(progress, "clustering", reduce_end)?;
    let (labels, probabilities) = cluster(&reduced, reduced_dims, &parameters.algorithm)?;
    let clustering_end = reduce_end + 0.1;
    report(progress, "measuring", clustering_end)?;
    let metrics =
        metrics::internal_metrics(&reduced, reduced_dims, &labels, parameters.silhouette_sample_size, SILHOUETTE_SEED);
    let coordinates_2d = if !parameters.plot_2d {
        None
    } else if let Some(plot_input) = plot_input.as_deref() {
        let start = clustering_end + 0.1;
        report(progress, "plotting", start)?;
        let mut inner = |fraction: f64| progress("plotting", start + (1.0 - start) * fraction);
        let layout =
            umap::umap_embed_cached(plot_input, dims, &parameters.plot_umap(), &mut neighbor_cache, &mut inner)
                .map_err(|_| ClusteringError::Cancelled { stage: "plotting".to_string() })?;
        Some(layout.chunks(2).map(|pair| [pair[0], pair[1]]).collect())
    } else {
        Some(reduced.chunks(2).map(|pair| [pair[0], pair[1]]).collect())
    };
    report(progress, "done", 1.0)?;
    let cluster_sizes = metrics::label_counts(&labels);
    Ok(ClusteringResult {
        cluster_count: metrics.cluster_count,
        labels,
        probabilities,
        coordinates_2d,
        clustered_space: reduced,
        clustered_dims: reduced_dims,
        cluster_sizes,
        metrics,
    })
}

/// One setting of a sweep and how it scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepEntry {
    pub algorithm: Algorithm,
    pub cluster_count: usize,
    pub noise_count: usize,
    pub metrics: InternalMetrics,
    /// Set when this setting could not run (e.g. k above the row count); the others still do.
    pub error: Option<String>,
}

/// Reduces once (as `parameters` say), then clusters with every setting of `sweep` and
/// measures each. `parameters.algorithm` is ignored.
pub fn run_sweep(
    matrix: &[f32],
    dims: usize,
    parameters: &ClusteringParameters,
    sweep: &SweepParameters,
    progress: &mut dyn FnMut(&str, f64) -> bool,
) -> Result<Vec<SweepEntry>, ClusteringError> {
    parameters.validate()?;
    check_matrix(matrix, dims)?;
    let settings = sweep.settings()?;
    let (_, reduced, reduced_dims) =
        prepare_and_reduce(Cow::Borrowed(matrix), dims, parameters, progress, (0.0, 0.5), &mut None)?;
    let total = settings.len();
    let mut entries = Vec::with_capacity(total);
    for (index, algorithm) in settings.into_iter().enumerate() {
        report(progress, "clustering", 0.5 + 0.5 * index as f64 / total.max(1) as f64)?;
        let entry = match cluster(&reduced, reduced_dims, &algorithm) {
            Ok((labels, _)) => {
                let metrics = metrics::internal_metrics(
                    &reduced,
                    reduced_dims,
                    &labels,
                    parameters.silhouette_sample_size,
                    SILHOUETTE_SEED,
                );
                SweepEntry {
                    algorithm,
                    cluster_count: metrics.cluster_count,
                    noise_count: metrics.noise_count,
                    metrics,
                    error: None,
                }
            }
            Err(error) => SweepEntry {
                algorithm,
                cluster_count: 0,
                noise_count: 0,
                metrics: metrics::internal_metrics(&[], reduced_dims, &[], 2, 0),
                error: Some(error.to_string()),
            },
        };
        entries.push(entry);
    }
    report(progress, "done", 1.0)?;
    Ok(entries)
}
