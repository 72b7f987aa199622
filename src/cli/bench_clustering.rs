//! `humpback bench clustering`: times our UMAP or HDBSCAN on a raw little-endian f32 matrix
//! and writes the result next to it, so `scripts/bench-clustering` can compare with
//! umap-learn, scikit-learn and hdbscan on the same data (time and peak memory come from
//! `/usr/bin/time -v` around this command).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::clustering::hdbscan::hdbscan;
use crate::clustering::metrics::trustworthiness;
use crate::clustering::random::SeededRandom;
use crate::clustering::umap::{umap_embed_timed, NeighborSearch};
use crate::clustering::{check_matrix, ClusterSelection, HdbscanParameters, UmapParameters};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchStage {
    /// UMAP of the input to `--n-components` dimensions (writes f32).
    Umap,
    /// HDBSCAN of the input (writes i64 labels).
    Hdbscan,
}

/// The kNN search of `--stage umap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchKnn {
    /// As a clustering job does: exact for small inputs, approximate above.
    Auto,
    Exact,
    Approximate,
}

#[derive(Debug, Args)]
pub struct BenchClusteringArgs {
    #[arg(long, value_enum)]
    pub stage: BenchStage,
    /// Row-major little-endian f32 matrix.
    #[arg(long)]
    pub input: PathBuf,
    /// Columns of the input.
    #[arg(long)]
    pub dims: usize,
    /// Where to write the embedding (f32) or the labels (i64), little-endian.
    #[arg(long)]
    pub output: PathBuf,
    #[arg(long, default_value_t = 5)]
    pub n_components: usize,
    #[arg(long, default_value_t = 15)]
    pub n_neighbors: usize,
    #[arg(long)]
    pub n_epochs: Option<usize>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = BenchKnn::Auto)]
    pub knn: BenchKnn,
    #[arg(long, default_value_t = 5)]
    pub min_cluster_size: usize,
    /// Also report trustworthiness (k = 15) of the UMAP output on a seeded sample of this
    /// many rows (0 = skip).
    #[arg(long, default_value_t = 0)]
    pub trustworthiness_sample: usize,
}

fn read_matrix(path: &PathBuf, dims: usize) -> anyhow::Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(bytes.len() % 4 == 0, "{} is not a whole number of f32 values", path.display());
    let values: Vec<f32> =
        bytes.chunks_exact(4).map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]])).collect();
    check_matrix(&values, dims)?;
    Ok(values)
}

pub fn run(args: BenchClusteringArgs) -> anyhow::Result<()> {
    let values = read_matrix(&args.input, args.dims)?;
    let rows = values.len() / args.dims;
    let mut report = serde_json::Map::new();
    report.insert("rows".into(), rows.into());
    report.insert("dims".into(), args.dims.into());
    match args.stage {
        BenchStage::Umap => {
            let parameters = UmapParameters {
                n_neighbors: args.n_neighbors,
                n_components: args.n_components,
                n_epochs: args.n_epochs,
                seed: args.seed,
                ..Default::default()
            };
            let search = match args.knn {
                BenchKnn::Auto => NeighborSearch::BySize,
                BenchKnn::Exact => NeighborSearch::Exact,
                BenchKnn::Approximate => NeighborSearch::Approximate,
            };
            let started = Instant::now();
            let (layout, stages) = umap_embed_timed(&values, args.dims, &parameters, search, &mut None, &mut |_| true)
                .map_err(|_| anyhow::anyhow!("cancelled"))?;
            report.insert("umap_seconds".into(), started.elapsed().as_secs_f64().into());
            report.insert("knn".into(), if search.is_exact_for(rows) { "exact" } else { "approximate" }.into());
            report.insert("knn_seconds".into(), stages.neighbors.into());
            report.insert("fuzzy_set_seconds".into(), stages.fuzzy_set.into());
            report.insert("initialisation_seconds".into(), stages.initialisation.into());
            report.insert("optimisation_seconds".into(), stages.optimisation.into());
            let mut file = std::io::BufWriter::new(std::fs::File::create(&args.output)?);
            for value in &layout {
                file.write_all(&value.to_le_bytes())?;
            }
            file.flush()?;
            if args.trustworthiness_sample > 0 {
                let sample = SeededRandom::new(0).sample_indices(rows, args.trustworthiness_sample);
                let mut high = Vec::with_capacity(sample.len() * args.dims);
                let mut low = Vec::with_capacity(sample.len() * args.n_components);
                for row in &sample {
                    high.extend_from_slice(&values[row * args.dims..(row + 1) * args.dims]);
                    low.extend_from_slice(&layout[row * args.n_components..(row + 1) * args.n_components]);
                }
                let started = Instant::now();
                let score = trustworthiness(&high, args.dims, &low, args.n_components, 15);
                report.insert("trustworthiness_k15".into(), score.into());
                report.insert("trustworthiness_rows".into(), sample.len().into());
                report.insert("trustworthiness_seconds".into(), started.elapsed().as_secs_f64().into());
            }
        }
        BenchStage::Hdbscan => {
            let parameters = HdbscanParameters {
                min_cluster_size: args.min_cluster_size,
                cluster_selection: ClusterSelection::Eom,
                ..Default::default()
            };
            let started = Instant::now();
            let output = hdbscan(&values, args.dims, &parameters);
            report.insert("hdbscan_seconds".into(), started.elapsed().as_secs_f64().into());
            let clusters = output.labels.iter().copied().max().map(|max| max + 1).unwrap_or(0);
            report.insert("clusters".into(), clusters.into());
            report.insert("noise".into(), output.labels.iter().filter(|label| **label < 0).count().into());
            let mut file = std::io::BufWriter::new(std::fs::File::create(&args.output)?);
            for label in &output.labels {
                file.write_all(&label.to_le_bytes())?;
            }
            file.flush()?;
        }
    }
    println!("{}", serde_json::Value::Object(report));
    Ok(())
}
