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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::embeddings_parquet::{EmbeddingRow, EmbeddingSetWriter};
    use crate::classifier::artifact::{publish, read};
    use crate::classifier::detections::{merge_detections, ScoredWindow};
    use crate::clustering::random::SeededRandom;
    use crate::domain::events::AnnotationKind;
    use crate::domain::ids::{AnnotationId, EmbeddingSetId, EncodingSignature};
    use crate::domain::state::{AnnotationState, EmbeddingSetState};

    const DIMS: usize = 8;
    const WINDOWS: u64 = 40;

    /// Rows 10..14 and 25..27 of each recording are calls (vectors shifted along the first axis).
    fn is_call(row: u64) -> bool {
        (10..14).contains(&row) || (25..27).contains(&row)
    }

    fn write_set(root: &Path, state: &mut DomainState, set: u64, audio: u64, model_version: &str, calls: bool) {
        let relative = format!("embeddings/{set}.parquet");
        let mut writer = EmbeddingSetWriter::create(&root.join(&relative), DIMS, Vec::new()).unwrap();
        let mut random = SeededRandom::new(set);
        let rows: Vec<EmbeddingRow> = (0..WINDOWS)
            .map(|row| EmbeddingRow {
                row_index: row,
                start_seconds: row as f64 * 5.0,
                end_seconds: row as f64 * 5.0 + 5.0,
                padded: false,
                overlapped: false,
                embedding: (0..DIMS)
                    .map(|d| {
                        (random.next_normal() * 0.5 + if d == 0 && calls && is_call(row) { 3.0 } else { 0.0 }) as f32
                    })
                    .collect(),
            })
            .collect();
        writer.write_rows(&rows).unwrap();
        writer.finish_and_promote().unwrap();
        state.embedding_sets.insert(
            EmbeddingSetId(set),
            EmbeddingSetState {
                audio_file_id: AudioFileId(audio),
                parquet_path: relative,
                encoding_signature: EncodingSignature(format!("signature-{set}")),
                model_version: model_version.into(),
                vector_dim: DIMS as u32,
                row_count: WINDOWS,
            },
        );
    }

    fn annotate(state: &mut DomainState, audio: u64, start: f64, end: f64, label: &str, kind: AnnotationKind) {
        let id = AnnotationId(state.annotations.len() as u64 + 1);
        state.annotations.insert(
            id,
            AnnotationState {
                audio_file_id: AudioFileId(audio),
                start_seconds: start,
                end_seconds: end,
                low_hz: None,
                high_hz: None,
                label: label.into(),
                kind,
                note: None,
            },
        );
    }

    #[test]
    fn a_classifier_trained_on_annotated_windows_finds_the_unlabelled_calls() {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path();
        let mut state = DomainState::default();
        // recording 3 is a quiet one: its unannotated windows are honest negatives
        for audio in 1..=3 {
            write_set(root, &mut state, audio, audio, "fake_v1", audio != 3);
        }
        write_set(root, &mut state, 9, 1, "other_v1", true);
        // recordings 1 and 2: the first call run annotated, the quiet start annotated as negative
        for audio in 1..=2 {
            annotate(&mut state, audio, 50.0, 70.0, "song", AnnotationKind::Positive);
            annotate(&mut state, audio, 0.0, 40.0, "song", AnnotationKind::Negative);
        }
        let request: TrainClassifierRequest = serde_json::from_value(serde_json::json!({
            "labels": ["song"], "model_version": "fake_v1", "folds": 2,
            "negatives": {"unannotated": {"embedding_set_ids": [3], "count": 10, "seed": 1}}
        }))
        .unwrap();
        let mut fractions = Vec::new();
        let artifact =
            train_classifier(&state, root, ClassifierId(1), &request, &|| true, &mut |f| fractions.push(f)).unwrap();
        assert_eq!(fractions.last(), Some(&1.0));
        let description = &artifact.training_set;
        assert_eq!(description.positive_windows["song"], 8);
        assert_eq!(description.negative_annotation_windows, 16);
        assert_eq!(description.unannotated_windows, 10);
        assert_eq!(description.recordings, 3);
        let metrics = &artifact.metrics[0];
        assert_eq!((metrics.positive_recordings, metrics.folds), (2, 2));
        assert!(metrics.roc_auc.unwrap() > 0.99, "{metrics:?}");

        let version = publish(root, &artifact).unwrap();
        let back = read(root, ClassifierId(1), Some(&version)).unwrap();
        assert_eq!(
            (&back.labels, &back.training_set, back.vector_dim),
            (&artifact.labels, &artifact.training_set, DIMS)
        );
        assert!(read(root, ClassifierId(1), Some("0000000000000000")).is_err());

        // a detection run over recordings 1 and 3 finds recording 1's calls, the unlabelled
        // second run included, and nothing in the quiet recording 3
        let scores_path = root.join("detections/1/scores.parquet");
        let outcome = crate::classifier::detect::run_detection(
            &state,
            root,
            &back,
            &[EmbeddingSetId(1), EmbeddingSetId(3)],
            back.threshold,
            &scores_path,
            &|| true,
        )
        .unwrap();
        assert_eq!(outcome.windows_scored, 2 * WINDOWS);
        let found: Vec<(u64, u64, u64)> = outcome
            .detections
            .iter()
            .map(|d| (d.audio_file_id.0, d.detection.first_row, d.detection.last_row))
            .collect();
        assert_eq!(found, vec![(1, 10, 13), (1, 25, 26)]);
        assert!(scores_path.exists());
        let wrong = crate::classifier::detect::run_detection(
            &state,
            root,
            &back,
            &[EmbeddingSetId(9)],
            0.5,
            &root.join("detections/2/scores.parquet"),
            &|| true,
        );
        assert!(matches!(wrong, Err(crate::classifier::detect::DetectionError::WrongModel { .. })));

        // every window of recording 1, the unlabelled second run included, scored and merged
        let model = back.model();
        let loaded = load_candidate_windows(&state, root, &request, &|| true).unwrap();
        let scored: Vec<ScoredWindow> = loaded
            .places
            .iter()
            .enumerate()
            .filter(|(_, place)| place.embedding_set_id == EmbeddingSetId(1))
            .map(|(index, place)| ScoredWindow {
                row_index: place.row_index,
                start_seconds: place.start_seconds,
                end_seconds: place.end_seconds,
                score: model.probabilities(&loaded.vectors[index * DIMS..(index + 1) * DIMS])[0],
            })
            .collect();
        let detections = merge_detections(&scored, back.threshold);
        let runs: Vec<(u64, u64)> = detections.iter().map(|d| (d.first_row, d.last_row)).collect();
        assert_eq!(runs, vec![(10, 13), (25, 26)]);
    }

    #[test]
    fn training_without_sets_of_the_model_version_says_so() {
        let directory = tempfile::tempdir().unwrap();
        let mut state = DomainState::default();
        write_set(directory.path(), &mut state, 1, 1, "fake_v1", true);
        annotate(&mut state, 1, 50.0, 70.0, "song", AnnotationKind::Positive);
        let request: TrainClassifierRequest =
            serde_json::from_value(serde_json::json!({"labels": ["song"], "model_version": "missing"})).unwrap();
        let error =
            train_classifier(&state, directory.path(), ClassifierId(1), &request, &|| true, &mut |_| {}).unwrap_err();
        assert!(matches!(error, TrainingError::NoSets(_)), "{error}");
        assert!(train_classifier(&state, directory.path(), ClassifierId(1), &request, &|| false, &mut |_| {}).is_err());
    }
}
