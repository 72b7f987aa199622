//! Training, the shell: read the windows of the chosen model's embedding sets from their Parquet
//! files, label them (`training_set`), fit one head per label, cross-validate each head grouped by
//! recording, and describe it all as a `ClassifierArtifact` (not yet published).
//!
//! Only sets whose recording has annotations, or that the request names for unannotated
//! negatives, are read: no other window can be labelled.

use std::collections::BTreeSet;
use std::path::Path;

use super::artifact::{ClassifierArtifact, StoredHead, FORMAT, FORMAT_VERSION};
use super::evaluation::cross_validate;
use super::logistic::OneVsRestModel;
use super::request::TrainClassifierRequest;
use super::training_set::{label_windows, WindowPlace};
use super::ClassifierError;
use crate::artifacts::embeddings_parquet::read_batches;
use crate::artifacts::ArtifactError;
use crate::clustering_jobs::annotations::spans_by_recording;
use crate::domain::ids::{AudioFileId, ClassifierId};
use crate::domain::state::DomainState;

/// Why training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    #[error(transparent)]
    Classifier(#[from] ClassifierError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("no embedding set of model version {0:?} has annotated windows")]
    NoSets(String),
    #[error("embedding sets of model version {model_version:?} disagree on dimensions ({first} and {other})")]
    MixedDimensions { model_version: String, first: usize, other: usize },
    #[error("canceled")]
    Canceled,
}

const BATCH_ROWS: usize = 4096;

/// Windows and their vectors, row-major.
pub struct LoadedWindows {
    pub places: Vec<WindowPlace>,
    pub vectors: Vec<f32>,
    pub vector_dim: usize,
}

/// Read the windows of every set of `request.model_version` that can give a label.
pub fn load_candidate_windows(
    state: &DomainState,
    root: &Path,
    request: &TrainClassifierRequest,
    keep_going: &dyn Fn() -> bool,
) -> Result<LoadedWindows, TrainingError> {
    let annotated: BTreeSet<AudioFileId> = state.annotations.values().map(|a| a.audio_file_id).collect();
    let unannotated_sets: BTreeSet<_> =
        request.negatives.unannotated.iter().flat_map(|u| u.embedding_set_ids.iter().copied()).collect();
    let mut loaded = LoadedWindows { places: Vec::new(), vectors: Vec::new(), vector_dim: 0 };
    for (set_id, set) in &state.embedding_sets {
        if set.model_version != request.model_version
            || !(annotated.contains(&set.audio_file_id) || unannotated_sets.contains(set_id))
        {
            continue;
        }
        if !keep_going() {
            return Err(TrainingError::Canceled);
        }
        for batch in read_batches(&root.join(&set.parquet_path), BATCH_ROWS)? {
            let batch = batch?;
            if loaded.vector_dim == 0 {
                loaded.vector_dim = batch.vector_dim;
            } else if batch.vector_dim != loaded.vector_dim {
                return Err(TrainingError::MixedDimensions {
                    model_version: request.model_version.clone(),
                    first: loaded.vector_dim,
                    other: batch.vector_dim,
                });
            }
            for ((row_index, start), end) in batch.row_index.iter().zip(&batch.start_seconds).zip(&batch.end_seconds) {
                loaded.places.push(WindowPlace {
                    embedding_set_id: *set_id,
                    row_index: *row_index,
                    audio_file_id: set.audio_file_id,
                    start_seconds: *start,
                    end_seconds: *end,
                });
            }
            loaded.vectors.extend_from_slice(&batch.vectors);
        }
    }
    if loaded.places.is_empty() {
        return Err(TrainingError::NoSets(request.model_version.clone()));
    }
    Ok(loaded)
}

/// Train and evaluate; `progress(fraction)` is told as heads finish.
pub fn train_classifier(
    state: &DomainState,
    root: &Path,
    classifier_id: ClassifierId,
    request: &TrainClassifierRequest,
    keep_going: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(f64),
) -> Result<ClassifierArtifact, TrainingError> {
    let loaded = load_candidate_windows(state, root, request, keep_going)?;
    let spans = spans_by_recording(state);
    let labelled =
        label_windows(&loaded.places, &spans, &request.labels, &request.negatives, request.min_overlap_fraction);
    if labelled.windows.is_empty() {
        return Err(ClassifierError::NoWindows.into());
    }
    let dims = loaded.vector_dim;
    let features: Vec<f32> = labelled
        .windows
        .iter()
        .flat_map(|index| loaded.vectors[index * dims..(index + 1) * dims].iter().copied())
        .collect();
    let groups: Vec<AudioFileId> = labelled.windows.iter().map(|index| loaded.places[*index].audio_file_id).collect();
    progress(0.1);
    let parameters = request.logistic_parameters();
    let model = OneVsRestModel::fit(&features, dims, &request.labels, &labelled.targets, &parameters)?;
    let settings = request.cross_validation();
    let mut metrics = Vec::new();
    let mut evaluation_note = None;
    for (head, (label, targets)) in request.labels.iter().zip(&labelled.targets).enumerate() {
        if !keep_going() {
            return Err(TrainingError::Canceled);
        }
        match cross_validate(&features, dims, targets, &groups, label, &settings) {
            Ok(head_metrics) => metrics.push(head_metrics),
            Err(ClassifierError::TooFewGroups(count)) => {
                evaluation_note = Some(format!("not cross-validated: the windows come from {count} recording(s)"));
            }
            Err(other) => return Err(other.into()),
        }
        progress(0.1 + 0.9 * (head + 1) as f64 / request.labels.len() as f64);
    }
    Ok(ClassifierArtifact {
        format: FORMAT.to_string(),
        format_version: FORMAT_VERSION,
        classifier_id,
        model_version: request.model_version.clone(),
        vector_dim: dims,
        labels: request.labels.clone(),
        heads: model
            .labels
            .iter()
            .zip(model.heads)
            .map(|(label, head)| StoredHead {
                label: label.clone(),
                weights: head.weights,
                bias: head.bias,
                iterations: head.iterations,
                converged: head.converged,
            })
            .collect(),
        threshold: request.threshold,
        c: request.c,
        class_weighting: request.class_weighting,
        folds: request.folds,
        training_set: labelled.description,
        metrics,
        evaluation_note,
    })
}
