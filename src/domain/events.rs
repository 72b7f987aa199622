//! The domain's events: past-tense facts, the only truth humpback keeps.
//!
//! Each variant of [`Event`] wraps a payload struct of the same name. A payload's encoded form
//! is versioned per event type ([`Event::type_version`]); when a payload changes shape, the old
//! struct is kept under `events::v1` (or older), its decoder upcasts it to the current one in
//! `log::envelope`, and a golden file of the old version stays in `fixtures/events/`.
//! `apply` (in `state.rs`) holds no business logic: rules live in `decide.rs`.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use super::ids::{
    AggregateRef, AnnotationId, AudioFileId, ClassifierId, ClusterId, ClusteringJobId, DetectionJobId, EmbeddingSetId,
    EncodingSignature, ProcessingJobId, Sha256Hex, WorkerId,
};
use super::json_text::JsonText;
pub use crate::recording_time::RecordingTimeSource;

/// What a model takes as input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelInputKind {
    /// Raw audio samples, `[batch, samples]`.
    Waveform,
    /// A (log-mel) spectrogram, `[batch, frames, bins]` or with a channel axis.
    Spectrogram,
}

/// Everything that decides what an encoding produces. Its canonical form, together with the
/// audio checksum, hashes to the [`EncodingSignature`].
#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct EncodingConfig {
    pub model_name: String,
    /// The model's version, including a hash of its file.
    pub model_version: String,
    pub window_seconds: f64,
    pub hop_seconds: f64,
    pub target_sample_rate: u32,
    /// Feature extraction and windowing policy, with every default filled in.
    pub feature_config: JsonText,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ModelRegistered {
    pub name: String,
    pub version: String,
    /// SHA-256 of the model file; `None` for built-in models.
    pub file_sha256: Option<Sha256Hex>,
    /// Where the model came from: a path below the models directory, or `builtin`.
    pub source: String,
    pub input_kind: ModelInputKind,
    pub sample_rate: u32,
    pub window_seconds: f64,
    pub embedding_dim: u32,
    /// Which output tensor gives the embedding (name or index).
    pub embedding_output: String,
}

/// A model was retired: new jobs can no longer use it; its embedding sets stay usable.
#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ModelRetired {
    pub name: String,
    /// The version registered when it was retired.
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct AudioFileRegistered {
    pub audio_file_id: AudioFileId,
    /// The name the user gave the file. Metadata only: never used to build a path.
    pub original_filename: String,
    /// Relative folder the file was imported from (`site-a/2024-07`), empty if uploaded.
    pub folder: String,
    pub checksum_sha256: Sha256Hex,
    pub size_bytes: u64,
    pub duration_seconds: f64,
    pub sample_rate: u32,
    pub channels: u16,
    pub codec: String,
    /// Where the bytes are stored, relative to the data directory.
    pub stored_path: String,
}

/// The edited fields' new values (whole documents). `None` leaves a field unchanged.
#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct AudioMetadataEdited {
    pub audio_file_id: AudioFileId,
    pub tag_data: Option<JsonText>,
    pub visual_observations: Option<JsonText>,
    pub group_composition: Option<JsonText>,
    pub prey_density_proxy: Option<JsonText>,
    /// Who made the edit, when known (API clients may say).
    pub edited_by: Option<String>,
}

/// A recording's start time was found (at registration) or set (by a person, or again from
/// its name for a folder). Not part of the registration: it is editable, and its own history.
#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct RecordingStartTimeSet {
    pub audio_file_id: AudioFileId,
    /// Microseconds since 1970-01-01T00:00:00Z; `None`: unknown (cleared).
    pub recorded_at_micros: Option<i64>,
    pub source: RecordingTimeSource,
    /// How it was found (`file name pattern *%Y%m%d_%H%M%S.* at Z`); empty when set by hand.
    pub derivation: String,
    /// Who set it, when known (API clients may say).
    pub set_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ProcessingJobQueued {
    pub job_id: ProcessingJobId,
    pub audio_file_id: AudioFileId,
    pub encoding_signature: EncodingSignature,
    pub config: EncodingConfig,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ProcessingJobClaimed {
    pub job_id: ProcessingJobId,
    pub worker: WorkerId,
    /// 1 for the first attempt, then one more for each retry or recovery.
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ProcessingJobProgressed {
    pub job_id: ProcessingJobId,
    pub attempt: u32,
    pub windows_done: u64,
    pub windows_total: u64,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct EmbeddingSetPromoted {
    pub embedding_set_id: EmbeddingSetId,
    pub job_id: ProcessingJobId,
    pub audio_file_id: AudioFileId,
    pub encoding_signature: EncodingSignature,
    pub model_name: String,
    pub model_version: String,
    pub window_seconds: f64,
    pub hop_seconds: f64,
    pub target_sample_rate: u32,
    pub vector_dim: u32,
    pub row_count: u64,
    /// Relative to the data directory.
    pub parquet_path: String,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ProcessingJobCompleted {
    pub job_id: ProcessingJobId,
    pub attempt: u32,
    /// `None` when the file produced no windows (short file under the `skip` policy).
    pub embedding_set_id: Option<EmbeddingSetId>,
    pub warning: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ProcessingJobFailed {
    pub job_id: ProcessingJobId,
    pub attempt: u32,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ProcessingJobCancelRequested {
    pub job_id: ProcessingJobId,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ProcessingJobCanceled {
    pub job_id: ProcessingJobId,
}

/// A running attempt that will not finish (its worker died): the job goes back to the queue.
#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ProcessingJobAbandoned {
    pub job_id: ProcessingJobId,
    pub attempt: u32,
    pub reason: String,
}

/// A failed or canceled job was put back in the queue by a user.
#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ProcessingJobRetried {
    pub job_id: ProcessingJobId,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ClusteringJobQueued {
    pub job_id: ClusteringJobId,
    pub embedding_set_ids: Vec<EmbeddingSetId>,
    /// Selection filters, reduction and algorithm parameters, defaults filled in.
    pub parameters: JsonText,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ClusteringJobClaimed {
    pub job_id: ClusteringJobId,
    pub worker: WorkerId,
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ClusteringJobProgressed {
    pub job_id: ClusteringJobId,
    pub attempt: u32,
    /// `loading`, `reducing`, `clustering`, `measuring`, `writing`.
    pub stage: String,
    /// Progress through the whole job, 0 to 1.
    pub fraction: f64,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub cluster_id: ClusterId,
    /// -1 is noise (reported, never counted as a cluster).
    pub label: i64,
    pub size: u64,
    pub metadata_summary: JsonText,
}

#[derive(Debug, Clone, Copy, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ClusterAssignmentRecord {
    pub embedding_set_id: EmbeddingSetId,
    pub row_index: u64,
    pub label: i64,
}

/// What a completion records of the promoted `assignments.parquet` (at `assignments_path`):
/// the log vouches for exactly these bytes.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct AssignmentsFile {
    /// SHA-256 of the whole file.
    pub sha256: Sha256Hex,
    /// Rows in the file: one per clustered window.
    pub row_count: u64,
}

/// Where a completed clustering's per-window assignments are.
#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClusterAssignments {
    /// In the promoted Parquet file (version 2 on: the event stays small).
    InFile(AssignmentsFile),
    /// In the event itself: what version 1 carried, upcast unchanged. New completions never
    /// carry them (`decide` refuses).
    Carried(Vec<ClusterAssignmentRecord>),
}

impl ClusterAssignments {
    /// How many windows were assigned.
    pub fn row_count(&self) -> u64 {
        match self {
            ClusterAssignments::InFile(file) => file.row_count,
            ClusterAssignments::Carried(records) => records.len() as u64,
        }
    }
}

/// Version 2: the assignments live in `assignments_path`, recorded by checksum and row count
/// (version 1 carried every assignment, about 6 bytes per window; see [`v1`]).
#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ClusteringJobCompleted {
    pub job_id: ClusteringJobId,
    pub attempt: u32,
    pub clusters: Vec<ClusterRecord>,
    pub assignments: ClusterAssignments,
    pub metrics: JsonText,
    /// Relative to the data directory.
    pub clusters_json_path: String,
    pub assignments_path: String,
}

/// Payload versions no longer written, kept so that old logs decode; `log::envelope` upcasts
/// them to the current events.
pub mod v1 {
    use bincode::{Decode, Encode};

    use super::{ClusterAssignmentRecord, ClusterRecord, ClusteringJobId, JsonText};

    /// `ClusteringJobCompleted` version 1: every assignment in the event.
    #[derive(Debug, Clone, PartialEq, Encode, Decode)]
    pub struct ClusteringJobCompleted {
        pub job_id: ClusteringJobId,
        pub attempt: u32,
        pub clusters: Vec<ClusterRecord>,
        pub assignments: Vec<ClusterAssignmentRecord>,
        pub metrics: JsonText,
        pub clusters_json_path: String,
        pub assignments_path: String,
    }

    impl ClusteringJobCompleted {
        /// The same facts in version 2: the assignments stay carried by the event.
        pub fn upcast(self) -> super::ClusteringJobCompleted {
            super::ClusteringJobCompleted {
                job_id: self.job_id,
                attempt: self.attempt,
                clusters: self.clusters,
                assignments: super::ClusterAssignments::Carried(self.assignments),
                metrics: self.metrics,
                clusters_json_path: self.clusters_json_path,
                assignments_path: self.assignments_path,
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ClusteringJobFailed {
    pub job_id: ClusteringJobId,
    pub attempt: u32,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ClusteringJobCancelRequested {
    pub job_id: ClusteringJobId,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ClusteringJobCanceled {
    pub job_id: ClusteringJobId,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ClusteringJobAbandoned {
    pub job_id: ClusteringJobId,
    pub attempt: u32,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ClusteringJobRetried {
    pub job_id: ClusteringJobId,
}

/// A classifier's training was queued (`POST /api/classifiers`); retraining queues a new one.
#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ClassifierTrainingQueued {
    pub classifier_id: ClassifierId,
    pub labels: Vec<String>,
    pub model_version: String,
    /// The whole `TrainClassifierRequest`, defaults filled in.
    pub request: JsonText,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ClassifierTrainingClaimed {
    pub classifier_id: ClassifierId,
    pub worker: WorkerId,
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ClassifierTrainingProgressed {
    pub classifier_id: ClassifierId,
    pub attempt: u32,
    /// `loading`, `training`, `evaluating`, `writing`.
    pub stage: String,
    pub fraction: f64,
}

/// The classifier file was published; this event makes it the classifier.
#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ClassifierTrainingCompleted {
    pub classifier_id: ClassifierId,
    pub attempt: u32,
    /// Relative to the data directory (`classifiers/{id}/classifier.json`).
    pub artifact_path: String,
    /// The hash of the file's bytes (16 hex digits).
    pub version: String,
    pub vector_dim: u32,
    pub threshold: f64,
    /// The per-label cross-validated figures and the training-set description, as stored in
    /// the artifact.
    pub metrics: JsonText,
    pub training_set: JsonText,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ClassifierTrainingFailed {
    pub classifier_id: ClassifierId,
    pub attempt: u32,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ClassifierTrainingCancelRequested {
    pub classifier_id: ClassifierId,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ClassifierTrainingCanceled {
    pub classifier_id: ClassifierId,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ClassifierTrainingAbandoned {
    pub classifier_id: ClassifierId,
    pub attempt: u32,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct ClassifierTrainingRetried {
    pub classifier_id: ClassifierId,
}

/// A detection job was queued: one published classifier over resolved embedding sets.
#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct DetectionJobQueued {
    pub job_id: DetectionJobId,
    pub classifier_id: ClassifierId,
    /// The classifier's version when queued (the worker checks the file still has it).
    pub classifier_version: String,
    pub embedding_set_ids: Vec<EmbeddingSetId>,
    pub threshold: f64,
    /// The scope as asked (`embedding_set_ids`, `folder` or `model_version`).
    pub scope: JsonText,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct DetectionJobClaimed {
    pub job_id: DetectionJobId,
    pub worker: WorkerId,
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct DetectionJobProgressed {
    pub job_id: DetectionJobId,
    pub attempt: u32,
    pub fraction: f64,
}

/// One merged run of windows at or above the threshold.
#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct DetectionRecordEvent {
    pub embedding_set_id: EmbeddingSetId,
    pub audio_file_id: AudioFileId,
    pub label: String,
    pub start_seconds: f64,
    pub end_seconds: f64,
    pub max_score: f64,
    pub mean_score: f64,
    pub windows: u32,
    pub first_row: u64,
    pub last_row: u64,
}

/// `detections/{job_id}/scores.parquet` was published; this records it and the detections.
#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct DetectionJobCompleted {
    pub job_id: DetectionJobId,
    pub attempt: u32,
    pub scores_path: String,
    pub windows_scored: u64,
    pub detections: Vec<DetectionRecordEvent>,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct DetectionJobFailed {
    pub job_id: DetectionJobId,
    pub attempt: u32,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct DetectionJobCancelRequested {
    pub job_id: DetectionJobId,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct DetectionJobCanceled {
    pub job_id: DetectionJobId,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct DetectionJobAbandoned {
    pub job_id: DetectionJobId,
    pub attempt: u32,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct DetectionJobRetried {
    pub job_id: DetectionJobId,
}

/// Whether a span holds the labelled sound (`positive`), surely does not (`negative`), or
/// might (`uncertain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnnotationKind {
    Positive,
    Negative,
    Uncertain,
}

impl AnnotationKind {
    pub const ALL: [AnnotationKind; 3] =
        [AnnotationKind::Positive, AnnotationKind::Negative, AnnotationKind::Uncertain];

    pub fn as_str(self) -> &'static str {
        match self {
            AnnotationKind::Positive => "positive",
            AnnotationKind::Negative => "negative",
            AnnotationKind::Uncertain => "uncertain",
        }
    }

    /// `positive`, `negative` or `uncertain`, any case, surrounding blanks ignored.
    pub fn parse(text: &str) -> Option<AnnotationKind> {
        let text = text.trim();
        AnnotationKind::ALL.into_iter().find(|kind| kind.as_str().eq_ignore_ascii_case(text))
    }
}

impl std::fmt::Display for AnnotationKind {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// One annotation as recorded: a labelled time span (and optionally a frequency band) of a
/// recording. It belongs to the recording, not to any model or embedding set.
#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct AnnotationRecord {
    pub annotation_id: AnnotationId,
    pub audio_file_id: AudioFileId,
    pub start_seconds: f64,
    pub end_seconds: f64,
    pub low_hz: Option<f64>,
    pub high_hz: Option<f64>,
    /// Trimmed, case kept.
    pub label: String,
    pub kind: AnnotationKind,
    pub note: Option<String>,
    /// Where it came from: `manual`, `cluster:{id}`, `windows`, `import:{file name}`.
    pub source: String,
}

/// Annotations added in one request (one or many).
#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct AnnotationsAdded {
    pub annotations: Vec<AnnotationRecord>,
    /// Who added them, when known (`x-humpback-user`).
    pub created_by: Option<String>,
}

/// An annotation's new values (every field, changed or not).
#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct AnnotationChanged {
    pub annotation_id: AnnotationId,
    pub audio_file_id: AudioFileId,
    pub start_seconds: f64,
    pub end_seconds: f64,
    pub low_hz: Option<f64>,
    pub high_hz: Option<f64>,
    pub label: String,
    pub kind: AnnotationKind,
    pub note: Option<String>,
    pub changed_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode, Serialize, Deserialize)]
pub struct AnnotationRemoved {
    pub annotation_id: AnnotationId,
    pub audio_file_id: AudioFileId,
    pub removed_by: Option<String>,
}

macro_rules! event_enum {
    ($($variant:ident = $version:literal),* $(,)?) => {
        /// Every fact humpback records. See the module documentation for versioning.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", content = "data")]
        pub enum Event {
            $($variant($variant),)*
        }

        impl Event {
            /// Every event type with its current payload version.
            pub const TYPES: &'static [(&'static str, u16)] = &[$((stringify!($variant), $version),)*];

            /// The event type's name, as stored in the envelope and used in filters.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(Event::$variant(_) => stringify!($variant),)*
                }
            }

            /// The current payload version of this event's type.
            pub fn type_version(&self) -> u16 {
                match self {
                    $(Event::$variant(_) => $version,)*
                }
            }

            /// Encodes the payload (without the envelope) in its current version.
            pub fn encode_payload(&self) -> Result<Vec<u8>, bincode::error::EncodeError> {
                let config = bincode::config::standard();
                match self {
                    $(Event::$variant(payload) => bincode::encode_to_vec(payload, config),)*
                }
            }

            /// Decodes a payload written in the current version of `type_name`.
            /// Older versions are upcast in `log::envelope` before reaching here.
            pub fn decode_current_payload(
                type_name: &str,
                bytes: &[u8],
            ) -> Option<Result<Event, bincode::error::DecodeError>> {
                let config = bincode::config::standard();
                match type_name {
                    $(stringify!($variant) => Some(
                        bincode::decode_from_slice::<$variant, _>(bytes, config).and_then(|(payload, read)| {
                            if read == bytes.len() {
                                Ok(Event::$variant(payload))
                            } else {
                                Err(bincode::error::DecodeError::OtherString(format!(
                                    "{} trailing bytes after the payload", bytes.len() - read
                                )))
                            }
                        })
                    ),)*
                    _ => None,
                }
            }
        }
    };
}

event_enum! {
    ModelRegistered = 1,
    AudioFileRegistered = 1,
    AudioMetadataEdited = 1,
    ProcessingJobQueued = 1,
    ProcessingJobClaimed = 1,
    ProcessingJobProgressed = 1,
    EmbeddingSetPromoted = 1,
    ProcessingJobCompleted = 1,
    ProcessingJobFailed = 1,
    ProcessingJobCancelRequested = 1,
    ProcessingJobCanceled = 1,
    ProcessingJobAbandoned = 1,
    ProcessingJobRetried = 1,
    ClusteringJobQueued = 1,
    ClusteringJobClaimed = 1,
    ClusteringJobProgressed = 1,
    ClusteringJobCompleted = 2,
    ClusteringJobFailed = 1,
    ClusteringJobCancelRequested = 1,
    ClusteringJobCanceled = 1,
    ClusteringJobAbandoned = 1,
    ClusteringJobRetried = 1,
    AnnotationsAdded = 1,
    AnnotationChanged = 1,
    AnnotationRemoved = 1,
    RecordingStartTimeSet = 1,
    ModelRetired = 1,
    ClassifierTrainingQueued = 1,
    ClassifierTrainingClaimed = 1,
    ClassifierTrainingProgressed = 1,
    ClassifierTrainingCompleted = 1,
    ClassifierTrainingFailed = 1,
    ClassifierTrainingCancelRequested = 1,
    ClassifierTrainingCanceled = 1,
    ClassifierTrainingAbandoned = 1,
    ClassifierTrainingRetried = 1,
    DetectionJobQueued = 1,
    DetectionJobClaimed = 1,
    DetectionJobProgressed = 1,
    DetectionJobCompleted = 1,
    DetectionJobFailed = 1,
    DetectionJobCancelRequested = 1,
    DetectionJobCanceled = 1,
    DetectionJobAbandoned = 1,
    DetectionJobRetried = 1,
}

impl Event {
    /// The aggregates this event concerns, most specific first. Used to filter the log.
    pub fn aggregates(&self) -> Vec<AggregateRef> {
        use AggregateRef as A;
        match self {
            Event::ModelRegistered(_) => vec![],
            Event::AudioFileRegistered(e) => vec![A::AudioFile(e.audio_file_id)],
            Event::AudioMetadataEdited(e) => vec![A::AudioFile(e.audio_file_id)],
            Event::ProcessingJobQueued(e) => vec![A::ProcessingJob(e.job_id), A::AudioFile(e.audio_file_id)],
            Event::ProcessingJobClaimed(e) => vec![A::ProcessingJob(e.job_id)],
            Event::ProcessingJobProgressed(e) => vec![A::ProcessingJob(e.job_id)],
            Event::EmbeddingSetPromoted(e) => {
                vec![A::EmbeddingSet(e.embedding_set_id), A::ProcessingJob(e.job_id), A::AudioFile(e.audio_file_id)]
            }
            Event::ProcessingJobCompleted(e) => {
                let mut aggregates = vec![A::ProcessingJob(e.job_id)];
                aggregates.extend(e.embedding_set_id.map(A::EmbeddingSet));
                aggregates
            }
            Event::ProcessingJobFailed(e) => vec![A::ProcessingJob(e.job_id)],
            Event::ProcessingJobCancelRequested(e) => vec![A::ProcessingJob(e.job_id)],
            Event::ProcessingJobCanceled(e) => vec![A::ProcessingJob(e.job_id)],
            Event::ProcessingJobAbandoned(e) => vec![A::ProcessingJob(e.job_id)],
            Event::ProcessingJobRetried(e) => vec![A::ProcessingJob(e.job_id)],
            Event::ClusteringJobQueued(e) => {
                let mut aggregates = vec![A::ClusteringJob(e.job_id)];
                aggregates.extend(e.embedding_set_ids.iter().copied().map(A::EmbeddingSet));
                aggregates
            }
            Event::ClusteringJobClaimed(e) => vec![A::ClusteringJob(e.job_id)],
            Event::ClusteringJobProgressed(e) => vec![A::ClusteringJob(e.job_id)],
            Event::ClusteringJobCompleted(e) => {
                let mut aggregates = vec![A::ClusteringJob(e.job_id)];
                aggregates.extend(e.clusters.iter().map(|cluster| A::Cluster(cluster.cluster_id)));
                aggregates
            }
            Event::ClusteringJobFailed(e) => vec![A::ClusteringJob(e.job_id)],
            Event::ClusteringJobCancelRequested(e) => vec![A::ClusteringJob(e.job_id)],
            Event::ClusteringJobCanceled(e) => vec![A::ClusteringJob(e.job_id)],
            Event::ClusteringJobAbandoned(e) => vec![A::ClusteringJob(e.job_id)],
            Event::ClusteringJobRetried(e) => vec![A::ClusteringJob(e.job_id)],
            Event::AnnotationsAdded(e) => {
                let mut aggregates: Vec<AggregateRef> =
                    e.annotations.iter().map(|annotation| A::Annotation(annotation.annotation_id)).collect();
                let mut recordings: Vec<AudioFileId> =
                    e.annotations.iter().map(|annotation| annotation.audio_file_id).collect();
                recordings.sort();
                recordings.dedup();
                aggregates.extend(recordings.into_iter().map(A::AudioFile));
                aggregates
            }
            Event::AnnotationChanged(e) => vec![A::Annotation(e.annotation_id), A::AudioFile(e.audio_file_id)],
            Event::AnnotationRemoved(e) => vec![A::Annotation(e.annotation_id), A::AudioFile(e.audio_file_id)],
            Event::RecordingStartTimeSet(e) => vec![A::AudioFile(e.audio_file_id)],
            Event::ModelRetired(_) => vec![],
            Event::ClassifierTrainingQueued(e) => vec![A::Classifier(e.classifier_id)],
            Event::ClassifierTrainingClaimed(e) => vec![A::Classifier(e.classifier_id)],
            Event::ClassifierTrainingProgressed(e) => vec![A::Classifier(e.classifier_id)],
            Event::ClassifierTrainingCompleted(e) => vec![A::Classifier(e.classifier_id)],
            Event::ClassifierTrainingFailed(e) => vec![A::Classifier(e.classifier_id)],
            Event::ClassifierTrainingCancelRequested(e) => vec![A::Classifier(e.classifier_id)],
            Event::ClassifierTrainingCanceled(e) => vec![A::Classifier(e.classifier_id)],
            Event::ClassifierTrainingAbandoned(e) => vec![A::Classifier(e.classifier_id)],
            Event::ClassifierTrainingRetried(e) => vec![A::Classifier(e.classifier_id)],
            Event::DetectionJobQueued(e) => vec![A::DetectionJob(e.job_id), A::Classifier(e.classifier_id)],
            Event::DetectionJobClaimed(e) => vec![A::DetectionJob(e.job_id)],
            Event::DetectionJobProgressed(e) => vec![A::DetectionJob(e.job_id)],
            Event::DetectionJobCompleted(e) => vec![A::DetectionJob(e.job_id)],
            Event::DetectionJobFailed(e) => vec![A::DetectionJob(e.job_id)],
            Event::DetectionJobCancelRequested(e) => vec![A::DetectionJob(e.job_id)],
            Event::DetectionJobCanceled(e) => vec![A::DetectionJob(e.job_id)],
            Event::DetectionJobAbandoned(e) => vec![A::DetectionJob(e.job_id)],
            Event::DetectionJobRetried(e) => vec![A::DetectionJob(e.job_id)],
        }
    }

    /// A one-line human summary, for `humpback events list`.
    pub fn summary(&self) -> String {
        match self {
            Event::ModelRegistered(e) => format!(
                "model {} version {} ({:?}, {} Hz, {} s windows, {} dims) from {}",
                e.name, e.version, e.input_kind, e.sample_rate, e.window_seconds, e.embedding_dim, e.source
            ),
            Event::AudioFileRegistered(e) => format!(
                "audio file {} {:?} ({:.1} s, {} Hz, {} ch, {}) folder {:?}",
                e.audio_file_id, e.original_filename, e.duration_seconds, e.sample_rate, e.channels, e.codec, e.folder
            ),
            Event::AudioMetadataEdited(e) => {
                let mut fields = Vec::new();
                if e.tag_data.is_some() {
                    fields.push("tag_data");
                }
                if e.visual_observations.is_some() {
                    fields.push("visual_observations");
                }
                if e.group_composition.is_some() {
                    fields.push("group_composition");
                }
                if e.prey_density_proxy.is_some() {
                    fields.push("prey_density_proxy");
                }
                format!("audio file {} metadata edited: {}", e.audio_file_id, fields.join(", "))
            }
            Event::ProcessingJobQueued(e) => format!(
                "processing job {} queued for audio file {} with model {} (signature {})",
                e.job_id,
                e.audio_file_id,
                e.config.model_name,
                short_signature(&e.encoding_signature)
            ),
            Event::ProcessingJobClaimed(e) => {
                format!("processing job {} claimed by {} (attempt {})", e.job_id, e.worker, e.attempt)
            }
            Event::ProcessingJobProgressed(e) => {
                format!("processing job {} at {}/{} windows", e.job_id, e.windows_done, e.windows_total)
            }
            Event::EmbeddingSetPromoted(e) => format!(
                "embedding set {} promoted for audio file {}: {} rows x {} dims",
                e.embedding_set_id, e.audio_file_id, e.row_count, e.vector_dim
            ),
            Event::ProcessingJobCompleted(e) => match (e.embedding_set_id, &e.warning) {
                (Some(set), _) => format!("processing job {} complete: embedding set {set}", e.job_id),
                (None, Some(warning)) => format!("processing job {} complete without embeddings: {warning}", e.job_id),
                (None, None) => format!("processing job {} complete without embeddings", e.job_id),
            },
            Event::ProcessingJobFailed(e) => format!("processing job {} failed: {}", e.job_id, e.reason),
            Event::ProcessingJobCancelRequested(e) => format!("processing job {} cancel requested", e.job_id),
            Event::ProcessingJobCanceled(e) => format!("processing job {} canceled", e.job_id),
            Event::ProcessingJobAbandoned(e) => {
                format!("processing job {} attempt {} abandoned: {}", e.job_id, e.attempt, e.reason)
            }
            Event::ProcessingJobRetried(e) => format!("processing job {} queued again", e.job_id),
            Event::ClusteringJobQueued(e) => {
                format!("clustering job {} queued over {} embedding sets", e.job_id, e.embedding_set_ids.len())
            }
            Event::ClusteringJobClaimed(e) => {
                format!("clustering job {} claimed by {} (attempt {})", e.job_id, e.worker, e.attempt)
            }
            Event::ClusteringJobProgressed(e) => {
                format!("clustering job {} {} ({:.0}%)", e.job_id, e.stage, e.fraction * 100.0)
            }
            Event::ClusteringJobCompleted(e) => format!(
                "clustering job {} complete: {} clusters, {} assignments",
                e.job_id,
                e.clusters.iter().filter(|cluster| cluster.label >= 0).count(),
                e.assignments.row_count()
            ),
            Event::ClusteringJobFailed(e) => format!("clustering job {} failed: {}", e.job_id, e.reason),
            Event::ClusteringJobCancelRequested(e) => format!("clustering job {} cancel requested", e.job_id),
            Event::ClusteringJobCanceled(e) => format!("clustering job {} canceled", e.job_id),
            Event::ClusteringJobAbandoned(e) => {
                format!("clustering job {} attempt {} abandoned: {}", e.job_id, e.attempt, e.reason)
            }
            Event::ClusteringJobRetried(e) => format!("clustering job {} queued again", e.job_id),
            Event::AnnotationsAdded(e) => match e.annotations.as_slice() {
                [one] => format!(
                    "annotation {} added to audio file {}: {:?} ({}) {:.3}-{:.3} s",
                    one.annotation_id, one.audio_file_id, one.label, one.kind, one.start_seconds, one.end_seconds
                ),
                many => {
                    let mut labels: Vec<&str> = many.iter().map(|annotation| annotation.label.as_str()).collect();
                    labels.sort_unstable();
                    labels.dedup();
                    format!("{} annotations added, labels {:?}", many.len(), labels)
                }
            },
            Event::AnnotationChanged(e) => format!(
                "annotation {} of audio file {} changed: {:?} ({}) {:.3}-{:.3} s",
                e.annotation_id, e.audio_file_id, e.label, e.kind, e.start_seconds, e.end_seconds
            ),
            Event::AnnotationRemoved(e) => {
                format!("annotation {} of audio file {} removed", e.annotation_id, e.audio_file_id)
            }
            Event::RecordingStartTimeSet(e) => format!(
                "audio file {} recorded at {} ({})",
                e.audio_file_id,
                e.recorded_at_micros
                    .map_or("unknown".into(), |micros| crate::recording_time::UtcTime(micros).to_iso8601()),
                e.source.as_str()
            ),
            Event::ModelRetired(e) => format!("model {} version {} retired (hidden from new jobs)", e.name, e.version),
            Event::ClassifierTrainingQueued(e) => {
                format!("classifier {} training queued: labels {:?} on {}", e.classifier_id, e.labels, e.model_version)
            }
            Event::ClassifierTrainingClaimed(e) => {
                format!("classifier {} training claimed by {} (attempt {})", e.classifier_id, e.worker, e.attempt)
            }
            Event::ClassifierTrainingProgressed(e) => {
                format!("classifier {} training {} ({:.0}%)", e.classifier_id, e.stage, e.fraction * 100.0)
            }
            Event::ClassifierTrainingCompleted(e) => {
                format!("classifier {} trained: version {}", e.classifier_id, e.version)
            }
            Event::ClassifierTrainingFailed(e) => {
                format!("classifier {} training failed: {}", e.classifier_id, e.reason)
            }
            Event::ClassifierTrainingCancelRequested(e) => {
                format!("classifier {} training cancel requested", e.classifier_id)
            }
            Event::ClassifierTrainingCanceled(e) => format!("classifier {} training canceled", e.classifier_id),
            Event::ClassifierTrainingAbandoned(e) => {
                format!("classifier {} training attempt {} abandoned: {}", e.classifier_id, e.attempt, e.reason)
            }
            Event::ClassifierTrainingRetried(e) => format!("classifier {} training queued again", e.classifier_id),
            Event::DetectionJobQueued(e) => format!(
                "detection job {} queued: classifier {} over {} embedding sets at {}",
                e.job_id,
                e.classifier_id,
                e.embedding_set_ids.len(),
                e.threshold
            ),
            Event::DetectionJobClaimed(e) => {
                format!("detection job {} claimed by {} (attempt {})", e.job_id, e.worker, e.attempt)
            }
            Event::DetectionJobProgressed(e) => format!("detection job {} ({:.0}%)", e.job_id, e.fraction * 100.0),
            Event::DetectionJobCompleted(e) => format!(
                "detection job {} complete: {} windows scored, {} detections",
                e.job_id,
                e.windows_scored,
                e.detections.len()
            ),
            Event::DetectionJobFailed(e) => format!("detection job {} failed: {}", e.job_id, e.reason),
            Event::DetectionJobCancelRequested(e) => format!("detection job {} cancel requested", e.job_id),
            Event::DetectionJobCanceled(e) => format!("detection job {} canceled", e.job_id),
            Event::DetectionJobAbandoned(e) => {
                format!("detection job {} attempt {} abandoned: {}", e.job_id, e.attempt, e.reason)
            }
            Event::DetectionJobRetried(e) => format!("detection job {} queued again", e.job_id),
        }
    }
}

fn short_signature(signature: &EncodingSignature) -> &str {
    signature.0.get(..12).unwrap_or(&signature.0)
}
