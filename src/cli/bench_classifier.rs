//! `humpback bench classifier`: training time of a detector on synthetic labelled windows
//! (a planted separating direction, windows grouped into recordings): one fit, and the grouped
//! cross-validation the training job runs, with the L-BFGS iterations and the AUC reached.
//! With `--score-windows N`, also the detection throughput: N windows in Parquet embedding sets
//! (written once under `--score-dir`, reused when already there) read alone, then read, scored
//! by the trained head, written to `scores.parquet` and merged into detections — the path a
//! detection job takes (`classifier::detect::run_detection`).

use std::time::Instant;

use clap::Args;

use crate::classifier::evaluation::{cross_validate, CrossValidationSettings};
use crate::classifier::logistic::{fit_binary, LogisticParameters};
use crate::clustering::random::SeededRandom;

#[derive(Debug, Args)]
pub struct BenchClassifierArgs {
    /// Labelled windows.
    #[arg(long, default_value_t = 10_000)]
    pub windows: usize,
    #[arg(long, default_value_t = 1280)]
    pub dims: usize,
    /// Windows per recording (the cross-validation groups).
    #[arg(long, default_value_t = 100)]
    pub windows_per_recording: usize,
    /// Fraction of positives.
    #[arg(long, default_value_t = 0.2)]
    pub positive_fraction: f64,
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    #[arg(long, default_value_t = 1.0)]
    pub c: f64,
    /// Windows to score for the detection throughput (0: skip it).
    #[arg(long, default_value_t = 0)]
    pub score_windows: usize,
    /// Windows per embedding set (one recording each) in the detection throughput.
    #[arg(long, default_value_t = 10_000)]
    pub windows_per_set: usize,
    /// Where the sets for the throughput are written (and reused); default a temporary dir.
    #[arg(long)]
    pub score_dir: Option<std::path::PathBuf>,
}

pub fn run(args: BenchClassifierArgs) -> anyhow::Result<()> {
    let mut random = SeededRandom::new(12);
    let direction: Vec<f64> = (0..args.dims).map(|_| random.next_normal()).collect();
    let norm = direction.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut features = Vec::with_capacity(args.windows * args.dims);
    let mut targets = Vec::with_capacity(args.windows);
    for _ in 0..args.windows {
        let positive = random.next_f64() < args.positive_fraction;
        let shift = if positive { 1.0 } else { -1.0 };
        features.extend(direction.iter().map(|d| (random.next_normal() + shift * d / norm) as f32));
        targets.push(positive);
    }
    let groups: Vec<usize> = (0..args.windows).map(|index| index / args.windows_per_recording.max(1)).collect();
    let parameters = LogisticParameters { c: args.c, ..LogisticParameters::default() };
    let started = Instant::now();
    let model = fit_binary(&features, args.dims, &targets, &parameters, "bench")?;
    let fit_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let settings = CrossValidationSettings { folds: args.folds, threshold: 0.5, parameters };
    let metrics = cross_validate(&features, args.dims, &targets, &groups, "bench", &settings)?;
    let cross_validation_seconds = started.elapsed().as_secs_f64();
    println!(
        "{} windows x {} dims, {} recordings: fit {:.2} s ({} iterations, converged {}), \
         {}-fold grouped cross-validation {:.2} s, AUC {:.4}, whole training {:.2} s",
        args.windows,
        args.dims,
        groups.last().map_or(0, |g| g + 1),
        fit_seconds,
        model.iterations,
        model.converged,
        metrics.folds,
        cross_validation_seconds,
        metrics.roc_auc.unwrap_or(f64::NAN),
        fit_seconds + cross_validation_seconds
    );
    if args.score_windows > 0 {
        let artifact = bench_artifact(&args, model);
        bench_scoring(&args, &artifact, &direction, norm)?;
    }
    Ok(())
}

fn bench_artifact(
    args: &BenchClassifierArgs,
    model: crate::classifier::logistic::BinaryLogisticModel,
) -> crate::classifier::artifact::ClassifierArtifact {
    use crate::classifier::artifact::{ClassifierArtifact, StoredHead, FORMAT, FORMAT_VERSION};
    ClassifierArtifact {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        classifier_id: crate::domain::ids::ClassifierId(1),
        model_version: "bench".into(),
        vector_dim: args.dims,
        labels: vec!["bench".into()],
        heads: vec![StoredHead {
            label: "bench".into(),
            weights: model.weights,
            bias: model.bias,
            iterations: model.iterations,
            converged: model.converged,
        }],
        threshold: 0.5,
        c: args.c,
        class_weighting: Default::default(),
        folds: args.folds,
        training_set: Default::default(),
        metrics: Vec::new(),
        evaluation_note: None,
    }
}

/// Writes the sets (unless there), reads them alone, then runs the detection path over them.
fn bench_scoring(
    args: &BenchClassifierArgs,
    artifact: &crate::classifier::artifact::ClassifierArtifact,
    direction: &[f64],
    norm: f64,
) -> anyhow::Result<()> {
    use anyhow::Context;

    use crate::artifacts::embeddings_parquet::{read_batches, EmbeddingRow, EmbeddingSetWriter};
    use crate::domain::ids::{AudioFileId, EmbeddingSetId, EncodingSignature};
    use crate::domain::state::{DomainState, EmbeddingSetState};
    let temporary = tempfile::tempdir().context("creating a temporary directory")?;
    let root = args.score_dir.clone().unwrap_or_else(|| temporary.path().to_path_buf());
    let per_set = args.windows_per_set.max(1);
    let sets = args.score_windows.div_ceil(per_set);
    let mut state = DomainState::default();
    let mut random = SeededRandom::new(99);
    let started = Instant::now();
    let mut written = 0usize;
    for set in 0..sets {
        let rows = per_set.min(args.score_windows - set * per_set);
        let relative = format!("embeddings/bench-{}d/{set}-{rows}.parquet", args.dims);
        let path = root.join(&relative);
        if !path.exists() {
            let mut writer = EmbeddingSetWriter::create(&path, args.dims, Vec::new())?;
            for chunk_start in (0..rows).step_by(4096) {
                let chunk: Vec<EmbeddingRow> = (chunk_start..(chunk_start + 4096).min(rows))
                    .map(|row| {
                        // one window in ten is a call
                        let shift = if row % 10 == 0 { 1.0 } else { -1.0 };
                        EmbeddingRow {
                            row_index: row as u64,
                            start_seconds: row as f64 * 5.0,
                            end_seconds: row as f64 * 5.0 + 5.0,
                            padded: false,
                            overlapped: false,
                            embedding: direction
                                .iter()
                                .map(|d| (random.next_normal() + shift * d / norm) as f32)
                                .collect(),
                        }
                    })
                    .collect();
                writer.write_rows(&chunk)?;
            }
            writer.finish_and_promote()?;
            written += rows;
        }
        state.embedding_sets.insert(
            EmbeddingSetId(set as u64 + 1),
            EmbeddingSetState {
                audio_file_id: AudioFileId(set as u64 + 1),
                parquet_path: relative,
                encoding_signature: EncodingSignature(format!("bench-{set}")),
                model_version: "bench".into(),
                vector_dim: args.dims as u32,
                row_count: rows as u64,
            },
        );
    }
    if written > 0 {
        println!(
            "wrote {written} windows in {sets} sets under {} in {:.1} s",
            root.display(),
            started.elapsed().as_secs_f64()
        );
    }
    let ids: Vec<EmbeddingSetId> = state.embedding_sets.keys().copied().collect();
    let bytes: u64 = state
        .embedding_sets
        .values()
        .filter_map(|set| std::fs::metadata(root.join(&set.parquet_path)).ok())
        .map(|metadata| metadata.len())
        .sum();
    let started = Instant::now();
    let mut read_rows = 0usize;
    for set in state.embedding_sets.values() {
        for batch in read_batches(&root.join(&set.parquet_path), 4096)? {
            read_rows += batch?.row_index.len();
        }
    }
    let read_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let scores_path = root.join("detections/bench/scores.parquet");
    let outcome = crate::classifier::detect::run_detection(&state, &root, artifact, &ids, 0.5, &scores_path, &|| true)?;
    let detect_seconds = started.elapsed().as_secs_f64();
    println!(
        "{} windows x {} dims in {} Parquet sets ({:.2} GB): reading alone {:.1} s ({:.0} windows/s); \
         read + score + write scores.parquet + merge {:.1} s ({:.0} windows/s, {} detections)",
        read_rows,
        args.dims,
        sets,
        bytes as f64 / 1e9,
        read_seconds,
        read_rows as f64 / read_seconds,
        detect_seconds,
        outcome.windows_scored as f64 / detect_seconds,
        outcome.detections.len()
    );
    let _ = std::fs::remove_file(&scores_path);
    Ok(())
}
