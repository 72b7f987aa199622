//! Detection, the shell: score every window of the chosen embedding sets with a published
//! classifier, write `detections/{job_id}/scores.parquet`, and merge each recording's
//! consecutive windows at or above the threshold into detections, per label. The job machinery
//! (events, projection, endpoints) is to come; this is what its worker will call.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::artifact::ClassifierArtifact;
use super::detections::{merge_detections, Detection, ScoredWindow};
use super::scores_parquet::ScoresWriter;
use super::training_set::WindowPlace;
use crate::artifacts::embeddings_parquet::read_batches;
use crate::artifacts::ArtifactError;
use crate::domain::ids::{AudioFileId, EmbeddingSetId};
use crate::domain::state::DomainState;

const BATCH_ROWS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum DetectionError {
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("embedding set {0} does not exist")]
    UnknownSet(EmbeddingSetId),
    #[error("embedding set {set} is of model version {found:?}; the classifier was trained on {expected:?}")]
    WrongModel { set: EmbeddingSetId, found: String, expected: String },
    #[error("canceled")]
    Canceled,
}

/// One merged detection of one label in one recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionRecord {
    pub embedding_set_id: EmbeddingSetId,
    pub audio_file_id: AudioFileId,
    pub label: String,
    #[serde(flatten)]
    pub detection: Detection,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DetectionOutcome {
    pub windows_scored: u64,
    pub detections: Vec<DetectionRecord>,
}

/// Score the sets (each one recording) into `scores_path` and merge detections.
pub fn run_detection(
    state: &DomainState,
    root: &Path,
    classifier: &ClassifierArtifact,
    embedding_set_ids: &[EmbeddingSetId],
    threshold: f64,
    scores_path: &Path,
    keep_going: &dyn Fn() -> bool,
) -> Result<DetectionOutcome, DetectionError> {
    for set_id in embedding_set_ids {
        let set = state.embedding_sets.get(set_id).ok_or(DetectionError::UnknownSet(*set_id))?;
        if set.model_version != classifier.model_version {
            return Err(DetectionError::WrongModel {
                set: *set_id,
                found: set.model_version.clone(),
                expected: classifier.model_version.clone(),
            });
        }
    }
    let model = classifier.model();
    let mut writer = ScoresWriter::create(scores_path, &classifier.labels)?;
    let mut windows_scored = 0;
    let mut detections = Vec::new();
    for set_id in embedding_set_ids {
        let Some(set) = state.embedding_sets.get(set_id) else { continue };
        let mut per_label: Vec<Vec<ScoredWindow>> = vec![Vec::new(); classifier.labels.len()];
        for batch in read_batches(&root.join(&set.parquet_path), BATCH_ROWS)? {
            if !keep_going() {
                writer.abandon()?;
                return Err(DetectionError::Canceled);
            }
            let batch = batch?;
            let dims = batch.vector_dim;
            let places: Vec<WindowPlace> = batch
                .row_index
                .iter()
                .zip(&batch.start_seconds)
                .zip(&batch.end_seconds)
                .map(|((row_index, start), end)| WindowPlace {
                    embedding_set_id: *set_id,
                    row_index: *row_index,
                    audio_file_id: set.audio_file_id,
                    start_seconds: *start,
                    end_seconds: *end,
                })
                .collect();
            let scores: Vec<Vec<f64>> = batch.vectors.chunks_exact(dims).map(|row| model.probabilities(row)).collect();
            for (place, row_scores) in places.iter().zip(&scores) {
                for (label, score) in row_scores.iter().enumerate() {
                    per_label[label].push(ScoredWindow {
                        row_index: place.row_index,
                        start_seconds: place.start_seconds,
                        end_seconds: place.end_seconds,
                        score: *score,
                    });
                }
            }
            writer.write(&places, &scores)?;
            windows_scored += places.len() as u64;
        }
        // one row group per set (one recording), so a reader of one recording skips the rest
        writer.end_row_group()?;
        for (label, windows) in classifier.labels.iter().zip(&per_label) {
            detections.extend(merge_detections(windows, threshold).into_iter().map(|detection| DetectionRecord {
                embedding_set_id: *set_id,
                audio_file_id: set.audio_file_id,
                label: label.clone(),
                detection,
            }));
        }
    }
    writer.finish_and_promote()?;
    Ok(DetectionOutcome { windows_scored, detections })
}
