//! Request parameters for a clustering run and for a parameter sweep. Every field has a
//! default (`#[serde(default)]`), so a request that omits a field equals one that states the
//! default; unknown fields are rejected so a typo never silently falls back to a default.

use serde::{Deserialize, Serialize};

use super::ClusteringError;

/// Distance used for neighbour searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DistanceMetric {
    #[default]
    Euclidean,
    /// 1 - cosine similarity (rows are compared after scaling to unit length).
    Cosine,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UmapParameters {
    pub n_neighbors: usize,
    pub min_dist: f32,
    pub n_components: usize,
    pub metric: DistanceMetric,
    /// `None` = umap-learn's rule: 500 epochs up to 10 000 rows, 200 above.
    pub n_epochs: Option<usize>,
    pub seed: u64,
}

impl Default for UmapParameters {
    fn default() -> Self {
        UmapParameters {
            n_neighbors: 15,
            min_dist: 0.1,
            n_components: 5,
            metric: DistanceMetric::Euclidean,
            n_epochs: None,
            seed: 42,
        }
    }
}

impl UmapParameters {
    /// The parameters of the 2-D layout for the plot: these, with two components.
    pub fn for_plot(&self) -> UmapParameters {
        UmapParameters { n_components: 2, ..self.clone() }
    }

    fn validate(&self, prefix: &str) -> Result<(), ClusteringError> {
        if self.n_neighbors < 2 {
            return Err(invalid(format!("{prefix}.n_neighbors {} is below 2", self.n_neighbors)));
        }
        if !(self.min_dist.is_finite() && self.min_dist >= 0.0 && self.min_dist <= 1.0) {
            return Err(invalid(format!("{prefix}.min_dist {} is outside 0 to 1", self.min_dist)));
        }
        if self.n_components < 1 {
            return Err(invalid(format!("{prefix}.n_components 0 is below 1")));
        }
        if self.n_components > 100 {
            return Err(invalid(format!("{prefix}.n_components {} is above 100", self.n_components)));
        }
        if self.n_epochs == Some(0) {
            return Err(invalid(format!("{prefix}.n_epochs 0 is below 1")));
        }
        Ok(())
    }
}

/// Dimension reduction applied before clustering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reduction {
    None,
    Pca { n_components: usize },
    Umap(UmapParameters),
}

impl Default for Reduction {
    fn default() -> Self {
        Reduction::Umap(UmapParameters::default())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterSelection {
    /// Excess of mass: the most stable clusters (scikit-learn's default).
    #[default]
    Eom,
    /// The leaves of the condensed tree: many small, homogeneous clusters.
    Leaf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Linkage {
    #[default]
    Ward,
    Average,
    Complete,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HdbscanParameters {
    pub min_cluster_size: usize,
    /// `None` = `min_cluster_size`. Counts the point itself, as scikit-learn's `HDBSCAN` does.
    pub min_samples: Option<usize>,
    pub cluster_selection: ClusterSelection,
    pub metric: DistanceMetric,
}

impl Default for HdbscanParameters {
    fn default() -> Self {
        HdbscanParameters {
            min_cluster_size: 5,
            min_samples: None,
            cluster_selection: ClusterSelection::Eom,
            metric: DistanceMetric::Euclidean,
        }
    }
}

impl HdbscanParameters {
    pub fn effective_min_samples(&self) -> usize {
        self.min_samples.unwrap_or(self.min_cluster_size)
    }
}

/// The clustering algorithm. HDBSCAN is the default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Algorithm {
    Hdbscan(HdbscanParameters),
    Kmeans {
        k: usize,
        #[serde(default = "default_seed")]
        seed: u64,
    },
    Dbscan {
        eps: f32,
        #[serde(default = "default_min_points")]
        min_points: usize,
    },
    GaussianMixture {
        n_components: usize,
        #[serde(default = "default_seed")]
        seed: u64,
    },
    Agglomerative {
        n_clusters: usize,
        #[serde(default)]
        linkage: Linkage,
    },
}

fn default_seed() -> u64 {
    42
}

fn default_min_points() -> usize {
    5
}

impl Default for Algorithm {
    fn default() -> Self {
        Algorithm::Hdbscan(HdbscanParameters::default())
    }
}

/// Everything a clustering run needs besides the embeddings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusteringParameters {
    /// Scale every embedding to unit length first (default true: Perch embeddings are
    /// compared by direction).
    pub normalize_l2: bool,
    pub reduction: Reduction,
    /// Also compute a 2-D UMAP layout for the plot (from the UMAP parameters of `reduction`
    /// when it is UMAP, otherwise from the UMAP defaults).
    pub plot_2d: bool,
    pub algorithm: Algorithm,
    /// Silhouette is quadratic in n; above this many clustered rows it is computed on a
    /// seeded sample of this size (reported in the metrics).
    pub silhouette_sample_size: usize,
}

impl Default for ClusteringParameters {
    fn default() -> Self {
        ClusteringParameters {
            normalize_l2: true,
            reduction: Reduction::default(),
            plot_2d: true,
            algorithm: Algorithm::default(),
            silhouette_sample_size: 10_000,
        }
    }
}

fn invalid(message: String) -> ClusteringError {
    ClusteringError::InvalidParameter(message)
}

impl ClusteringParameters {
    /// Checks every field; the error names the offending field and value.
    pub fn validate(&self) -> Result<(), ClusteringError> {
        match &self.reduction {
            Reduction::None => {}
            Reduction::Pca { n_components } => {
                if *n_components < 1 {
                    return Err(invalid("reduction.n_components 0 is below 1".to_string()));
                }
            }
            Reduction::Umap(umap) => umap.validate("reduction")?,
        }
        if self.silhouette_sample_size < 2 {
            return Err(invalid(format!("silhouette_sample_size {} is below 2", self.silhouette_sample_size)));
        }
        validate_algorithm(&self.algorithm)
    }

    /// The UMAP parameters of the 2-D plot layout.
    pub fn plot_umap(&self) -> UmapParameters {
        match &self.reduction {
            Reduction::Umap(umap) => umap.for_plot(),
            _ => UmapParameters::default().for_plot(),
        }
    }
}

pub(crate) fn validate_algorithm(algorithm: &Algorithm) -> Result<(), ClusteringError> {
    match algorithm {
        Algorithm::Hdbscan(hdbscan) => {
            if hdbscan.min_cluster_size < 2 {
                return Err(invalid(format!("min_cluster_size {} is below 2", hdbscan.min_cluster_size)));
            }
            if hdbscan.min_samples == Some(0) {
                return Err(invalid("min_samples 0 is below 1".to_string()));
            }
        }
        Algorithm::Kmeans { k, .. } => {
            if *k < 1 {
                return Err(invalid("k 0 is below 1".to_string()));
            }
        }
        Algorithm::Dbscan { eps, min_points } => {
            if !(eps.is_finite() && *eps > 0.0) {
                return Err(invalid(format!("eps {eps} is not a positive number")));
            }
            if *min_points < 1 {
                return Err(invalid("min_points 0 is below 1".to_string()));
            }
        }
        Algorithm::GaussianMixture { n_components, .. } => {
            if *n_components < 1 {
                return Err(invalid("n_components 0 is below 1".to_string()));
            }
        }
        Algorithm::Agglomerative { n_clusters, .. } => {
            if *n_clusters < 1 {
                return Err(invalid("n_clusters 0 is below 1".to_string()));
            }
        }
    }
    Ok(())
}

/// A grid of settings to compare on the same reduced data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum SweepParameters {
    /// HDBSCAN: every `min_cluster_size` in `min_cluster_size_from..=min_cluster_size_to`
    /// (stepping by `min_cluster_size_step`) for each listed selection method.
    Hdbscan {
        min_cluster_size_from: usize,
        min_cluster_size_to: usize,
        #[serde(default = "default_step")]
        min_cluster_size_step: usize,
        #[serde(default = "both_selections")]
        cluster_selections: Vec<ClusterSelection>,
        #[serde(default)]
        min_samples: Option<usize>,
        #[serde(default)]
        metric: DistanceMetric,
    },
    /// K-Means: every k in `k_from..=k_to`.
    Kmeans {
        k_from: usize,
        k_to: usize,
        #[serde(default = "default_seed")]
        seed: u64,
    },
}

fn default_step() -> usize {
    1
}

fn both_selections() -> Vec<ClusterSelection> {
    vec![ClusterSelection::Eom, ClusterSelection::Leaf]
}

/// At most this many settings per sweep.
pub const MAX_SWEEP_SETTINGS: usize = 200;

impl SweepParameters {
    /// The algorithm settings the sweep runs, in order.
    pub fn settings(&self) -> Result<Vec<Algorithm>, ClusteringError> {
        let settings: Vec<Algorithm> = match self {
            SweepParameters::Hdbscan {
                min_cluster_size_from,
                min_cluster_size_to,
                min_cluster_size_step,
                cluster_selections,
                min_samples,
                metric,
            } => {
                if min_cluster_size_from > min_cluster_size_to {
                    return Err(invalid(format!(
                        "min_cluster_size_from {min_cluster_size_from} is above min_cluster_size_to {min_cluster_size_to}"
                    )));
                }
                if *min_cluster_size_step < 1 {
                    return Err(invalid("min_cluster_size_step 0 is below 1".to_string()));
                }
                if cluster_selections.is_empty() {
                    return Err(invalid("cluster_selections is empty".to_string()));
                }
                let count = (min_cluster_size_to - min_cluster_size_from) / min_cluster_size_step + 1;
                if count.saturating_mul(cluster_selections.len()) > MAX_SWEEP_SETTINGS {
                    return Err(invalid(format!(
                        "the sweep has {} settings, above the limit of {MAX_SWEEP_SETTINGS}",
                        count.saturating_mul(cluster_selections.len())
                    )));
                }
                let mut settings = Vec::new();
                for selection in cluster_selections {
                    for size in (*min_cluster_size_from..=*min_cluster_size_to).step_by(*min_cluster_size_step) {
                        settings.push(Algorithm::Hdbscan(HdbscanParameters {
                            min_cluster_size: size,
                            min_samples: *min_samples,
                            cluster_selection: *selection,
                            metric: *metric,
                        }));
                    }
                }
                settings
            }
            SweepParameters::Kmeans { k_from, k_to, seed } => {
                if k_from > k_to {
                    return Err(invalid(format!("k_from {k_from} is above k_to {k_to}")));
                }
                if k_to - k_from + 1 > MAX_SWEEP_SETTINGS {
                    return Err(invalid(format!(
                        "the sweep has {} settings, above the limit of {MAX_SWEEP_SETTINGS}",
                        k_to - k_from + 1
                    )));
                }
                (*k_from..=*k_to).map(|k| Algorithm::Kmeans { k, seed: *seed }).collect()
            }
        };
        for setting in &settings {
            validate_algorithm(setting)?;
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_request_equals_the_defaults() {
        let parsed: ClusteringParameters = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, ClusteringParameters::default());
        let round_trip: ClusteringParameters =
            serde_json::from_str(&serde_json::to_string(&ClusteringParameters::default()).unwrap()).unwrap();
        assert_eq!(round_trip, ClusteringParameters::default());
    }

    #[test]
    fn a_partial_umap_request_fills_in_the_other_defaults() {
        let parsed: ClusteringParameters =
            serde_json::from_str(r#"{"reduction": {"method": "umap", "n_neighbors": 30}}"#).unwrap();
        let Reduction::Umap(umap) = parsed.reduction else { panic!("not umap") };
        assert_eq!(umap.n_neighbors, 30);
        assert_eq!(umap.min_dist, 0.1);
        assert_eq!(umap.n_components, 5);
        let parsed: ClusteringParameters =
            serde_json::from_str(r#"{"algorithm": {"method": "hdbscan", "cluster_selection": "leaf"}}"#).unwrap();
        let Algorithm::Hdbscan(hdbscan) = parsed.algorithm else { panic!("not hdbscan") };
        assert_eq!(hdbscan.min_cluster_size, 5);
        assert_eq!(hdbscan.cluster_selection, ClusterSelection::Leaf);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(serde_json::from_str::<ClusteringParameters>(r#"{"normalise": true}"#).is_err());
        assert!(serde_json::from_str::<ClusteringParameters>(
            r#"{"algorithm": {"method": "hdbscan", "min_clustersize": 3}}"#
        )
        .is_err());
    }

    #[test]
    fn validate_names_the_bad_field() {
        let parameters = ClusteringParameters {
            algorithm: Algorithm::Hdbscan(HdbscanParameters { min_cluster_size: 1, ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(parameters.validate().unwrap_err().to_string(), "min_cluster_size 1 is below 2");
        let parameters = ClusteringParameters {
            reduction: Reduction::Umap(UmapParameters { n_neighbors: 1, ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(parameters.validate().unwrap_err().to_string(), "reduction.n_neighbors 1 is below 2");
        let parameters =
            ClusteringParameters { algorithm: Algorithm::Dbscan { eps: -1.0, min_points: 3 }, ..Default::default() };
        assert!(parameters.validate().unwrap_err().to_string().starts_with("eps -1"));
    }

    #[test]
    fn sweeps_expand_to_their_grid() {
        let sweep: SweepParameters = serde_json::from_str(
            r#"{"method": "hdbscan", "min_cluster_size_from": 5, "min_cluster_size_to": 15, "min_cluster_size_step": 5}"#,
        )
        .unwrap();
        assert_eq!(sweep.settings().unwrap().len(), 6);
        let sweep = SweepParameters::Kmeans { k_from: 2, k_to: 9, seed: 1 };
        assert_eq!(sweep.settings().unwrap().len(), 8);
        let sweep = SweepParameters::Kmeans { k_from: 9, k_to: 2, seed: 1 };
        assert_eq!(sweep.settings().unwrap_err().to_string(), "k_from 9 is above k_to 2");
    }
}
