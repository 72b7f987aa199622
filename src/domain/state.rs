//! The write side's state, folded from the whole log. `apply` records facts; it decides
//! nothing (rules live in `decide.rs`), so replaying the log always rebuilds the same state.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::events::{AnnotationKind, EncodingConfig, Event, ModelRegistered};
use super::ids::{
    AnnotationId, AudioFileId, ClassifierId, ClusterId, ClusteringJobId, DetectionJobId, EmbeddingSetId,
    EncodingSignature, EventSeq, ProcessingJobId, Sha256Hex,
};
use super::json_text::JsonText;

/// The lifecycle of a job (processing or clustering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, bincode::Encode, bincode::Decode)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Complete,
    Failed,
    Canceled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Complete => "complete",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
        }
    }

    /// Queued or running: the job still holds its encoding signature.
    pub fn is_active(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, bincode::Encode, bincode::Decode)]
pub struct AudioFileState {
    pub checksum_sha256: Sha256Hex,
    /// Relative to the data directory.
    pub stored_path: String,
    pub folder: String,
    /// The original file name (metadata only, for matching imported selection tables).
    pub original_filename: String,
    pub duration_seconds: f64,
    /// The original sample rate (annotations' frequencies stay below its Nyquist).
    pub sample_rate: u32,
    pub metadata: AudioMetadataState,
}

#[derive(Debug, Clone, Default, PartialEq, bincode::Encode, bincode::Decode)]
pub struct AudioMetadataState {
    pub tag_data: Option<JsonText>,
    pub visual_observations: Option<JsonText>,
    pub group_composition: Option<JsonText>,
    pub prey_density_proxy: Option<JsonText>,
}

#[derive(Debug, Clone, PartialEq, bincode::Encode, bincode::Decode)]
pub struct ProcessingJobState {
    pub audio_file_id: AudioFileId,
    pub encoding_signature: EncodingSignature,
    /// Shared with the other jobs queued with the same configuration (see `apply`).
    pub config: std::sync::Arc<EncodingConfig>,
    pub status: JobStatus,
    /// Attempts claimed so far (0 before the first claim).
    pub attempt: u32,
    pub cancel_requested: bool,
    pub embedding_set_id: Option<EmbeddingSetId>,
    /// Queue order: the sequence of the event that (re)queued it.
    pub queued_at: EventSeq,
}

/// One encoding signature's processing job and outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, bincode::Encode, bincode::Decode)]
pub struct SignatureState {
    /// The one processing job of the signature (a signature never gets a second job: queueing
    /// a failed or canceled signature again retries its job).
    pub job: Option<ProcessingJobId>,
    /// Set once the encoding is done: with the embedding set, or `None` when the file produced
    /// no windows (short-file `skip` policy).
    pub completed: Option<Option<EmbeddingSetId>>,
}

#[derive(Debug, Clone, PartialEq, bincode::Encode, bincode::Decode)]
pub struct EmbeddingSetState {
    pub audio_file_id: AudioFileId,
    /// Relative to the data directory.
    pub parquet_path: String,
    pub encoding_signature: EncodingSignature,
    pub model_version: String,
    pub vector_dim: u32,
    pub row_count: u64,
}

#[derive(Debug, Clone, PartialEq, bincode::Encode, bincode::Decode)]
pub struct ClusteringJobState {
    pub embedding_set_ids: Vec<EmbeddingSetId>,
    pub parameters: JsonText,
    pub status: JobStatus,
    pub attempt: u32,
    pub cancel_requested: bool,
    pub queued_at: EventSeq,
}

#[derive(Debug, Clone, PartialEq, bincode::Encode, bincode::Decode)]
pub struct AnnotationState {
    pub audio_file_id: AudioFileId,
    pub start_seconds: f64,
    pub end_seconds: f64,
    pub low_hz: Option<f64>,
    pub high_hz: Option<f64>,
    pub label: String,
    pub kind: AnnotationKind,
    pub note: Option<String>,
}

/// What the writer knows, folded from every event in the log. Encodable so the writer can
/// start from a snapshot of it (`crate::state_snapshot`).
#[derive(Debug, Clone, Default, PartialEq, bincode::Encode, bincode::Decode)]
pub struct DomainState {
    pub last_seq: EventSeq,
    pub models: BTreeMap<String, ModelRegistered>,
    /// Models hidden from new jobs, by name.
    pub retired_models: std::collections::BTreeSet<String>,
    pub audio_files: BTreeMap<AudioFileId, AudioFileState>,
    pub audio_file_by_checksum: HashMap<Sha256Hex, AudioFileId>,
    pub processing_jobs: BTreeMap<ProcessingJobId, ProcessingJobState>,
    /// What is known of each encoding signature: its job and whether its encoding is done
    /// (one map rather than two keyed alike: a million signatures are a million strings).
    pub signatures: HashMap<EncodingSignature, SignatureState>,
    pub embedding_sets: BTreeMap<EmbeddingSetId, EmbeddingSetState>,
    pub clustering_jobs: BTreeMap<ClusteringJobId, ClusteringJobState>,
    pub last_cluster_id: u64,
    /// Annotations not removed.
    pub annotations: BTreeMap<AnnotationId, AnnotationState>,
    /// The highest annotation id ever given (ids are not reused after a removal).
    pub last_annotation_id: u64,
    /// Each recording's start time where known, with where it came from.
    pub recording_start_times:
        HashMap<AudioFileId, (crate::recording_time::UtcTime, super::events::RecordingTimeSource)>,
    /// Classifiers (detectors) and their training jobs.
    pub classifiers: BTreeMap<ClassifierId, ClassifierState>,
    pub detection_jobs: BTreeMap<DetectionJobId, DetectionJobState>,
}

/// A detection job: a classifier (at a version) over embedding sets.
#[derive(Debug, Clone, PartialEq, bincode::Encode, bincode::Decode)]
pub struct DetectionJobState {
    pub classifier_id: ClassifierId,
    pub classifier_version: String,
    pub embedding_set_ids: Vec<EmbeddingSetId>,
    pub threshold: f64,
    pub status: JobStatus,
    pub attempt: u32,
    pub cancel_requested: bool,
    pub queued_at: EventSeq,
}

/// A classifier: its training job while it runs, its published artifact once trained.
#[derive(Debug, Clone, PartialEq, bincode::Encode, bincode::Decode)]
pub struct ClassifierState {
    pub labels: Vec<String>,
    pub model_version: String,
    pub request: JsonText,
    pub status: JobStatus,
    pub attempt: u32,
    pub cancel_requested: bool,
    pub queued_at: EventSeq,
    /// Set when trained: the artifact (relative path) and its version.
    pub artifact: Option<(String, String)>,
    pub threshold: Option<f64>,
}

impl DomainState {
    pub fn from_events<'a>(events: impl IntoIterator<Item = (EventSeq, &'a Event)>) -> DomainState {
        let mut state = DomainState::default();
        for (seq, event) in events {
            state.apply(seq, event);
        }
        state
    }

    pub fn next_audio_file_id(&self) -> AudioFileId {
        AudioFileId(self.audio_files.keys().next_back().map_or(1, |id| id.0 + 1))
    }

    /// The processing job of an encoding signature, if one was ever queued.
    pub fn job_for_signature(&self, signature: &EncodingSignature) -> Option<ProcessingJobId> {
        self.signatures.get(signature).and_then(|known| known.job)
    }

    /// The outcome of a signature whose encoding is done: its embedding set, or `None` when
    /// the file produced no windows; `None` while it is not done.
    pub fn completed_encoding(&self, signature: &EncodingSignature) -> Option<Option<EmbeddingSetId>> {
        self.signatures.get(signature).and_then(|known| known.completed)
    }

    pub fn next_processing_job_id(&self) -> ProcessingJobId {
        ProcessingJobId(self.processing_jobs.keys().next_back().map_or(1, |id| id.0 + 1))
    }

    pub fn next_embedding_set_id(&self) -> EmbeddingSetId {
        EmbeddingSetId(self.embedding_sets.keys().next_back().map_or(1, |id| id.0 + 1))
    }

    pub fn next_detection_job_id(&self) -> DetectionJobId {
        DetectionJobId(self.detection_jobs.keys().next_back().map_or(1, |id| id.0 + 1))
    }

    pub fn next_classifier_id(&self) -> ClassifierId {
        ClassifierId(self.classifiers.keys().next_back().map_or(1, |id| id.0 + 1))
    }

    pub fn next_clustering_job_id(&self) -> ClusteringJobId {
        ClusteringJobId(self.clustering_jobs.keys().next_back().map_or(1, |id| id.0 + 1))
    }

    /// A recording's start time (UTC), where known.
    pub fn recorded_at(&self, audio_file_id: AudioFileId) -> Option<crate::recording_time::UtcTime> {
        self.recording_start_times.get(&audio_file_id).map(|(time, _)| *time)
    }

    /// The start time of the recording an embedding set encodes, where known.
    pub fn embedding_set_recorded_at(
        &self,
        embedding_set_id: EmbeddingSetId,
    ) -> Option<crate::recording_time::UtcTime> {
        self.recorded_at(self.embedding_sets.get(&embedding_set_id)?.audio_file_id)
    }

    pub fn next_cluster_id(&self) -> ClusterId {
        ClusterId(self.last_cluster_id + 1)
    }

    pub fn next_annotation_id(&self) -> AnnotationId {
        AnnotationId(self.last_annotation_id + 1)
    }

    /// Records one event. Never rejects: the event is already a fact.
    pub fn apply(&mut self, seq: EventSeq, event: &Event) {
        self.last_seq = seq;
        match event {
            Event::ModelRegistered(e) => {
                self.models.insert(e.name.clone(), e.clone());
            }
            Event::ModelRetired(e) => {
                self.retired_models.insert(e.name.clone());
            }
            Event::AudioFileRegistered(e) => {
                self.audio_file_by_checksum.insert(e.checksum_sha256.clone(), e.audio_file_id);
                self.audio_files.insert(
                    e.audio_file_id,
                    AudioFileState {
                        checksum_sha256: e.checksum_sha256.clone(),
                        stored_path: e.stored_path.clone(),
                        folder: e.folder.clone(),
                        original_filename: e.original_filename.clone(),
                        duration_seconds: e.duration_seconds,
                        sample_rate: e.sample_rate,
                        metadata: AudioMetadataState::default(),
                    },
                );
            }
            Event::AudioMetadataEdited(e) => {
                if let Some(file) = self.audio_files.get_mut(&e.audio_file_id) {
                    let metadata = &mut file.metadata;
                    for (target, edit) in [
                        (&mut metadata.tag_data, &e.tag_data),
                        (&mut metadata.visual_observations, &e.visual_observations),
                        (&mut metadata.group_composition, &e.group_composition),
                        (&mut metadata.prey_density_proxy, &e.prey_density_proxy),
                    ] {
                        if let Some(value) = edit {
                            *target = Some(value.clone());
                        }
                    }
                }
            }
            Event::ProcessingJobQueued(e) => {
                self.signatures.entry(e.encoding_signature.clone()).or_default().job = Some(e.job_id);
                // Jobs are queued in runs of one model and settings: the last job's
                // configuration is shared rather than copied (a million jobs, a few configurations).
                let config = match self.processing_jobs.values().next_back() {
                    Some(last) if *last.config == e.config => last.config.clone(),
                    _ => std::sync::Arc::new(e.config.clone()),
                };
                self.processing_jobs.insert(
                    e.job_id,
                    ProcessingJobState {
                        audio_file_id: e.audio_file_id,
                        encoding_signature: e.encoding_signature.clone(),
                        config,
                        status: JobStatus::Queued,
                        attempt: 0,
                        cancel_requested: false,
                        embedding_set_id: None,
                        queued_at: seq,
                    },
                );
            }
            Event::ProcessingJobClaimed(e) => {
                if let Some(job) = self.processing_jobs.get_mut(&e.job_id) {
                    job.status = JobStatus::Running;
                    job.attempt = e.attempt;
                }
            }
            Event::ProcessingJobProgressed(_) => {}
            Event::EmbeddingSetPromoted(e) => {
                self.embedding_sets.insert(
                    e.embedding_set_id,
                    EmbeddingSetState {
                        audio_file_id: e.audio_file_id,
                        parquet_path: e.parquet_path.clone(),
                        encoding_signature: e.encoding_signature.clone(),
                        model_version: e.model_version.clone(),
                        vector_dim: e.vector_dim,
                        row_count: e.row_count,
                    },
                );
                self.signatures.entry(e.encoding_signature.clone()).or_default().completed =
                    Some(Some(e.embedding_set_id));
            }
            Event::ProcessingJobCompleted(e) => {
                if let Some(job) = self.processing_jobs.get_mut(&e.job_id) {
                    job.status = JobStatus::Complete;
                    job.embedding_set_id = e.embedding_set_id;
                    let known = self.signatures.entry(job.encoding_signature.clone()).or_default();
                    known.completed.get_or_insert(e.embedding_set_id);
                }
            }
            Event::ProcessingJobFailed(e) => self.set_processing_status(e.job_id, JobStatus::Failed),
            Event::ProcessingJobCancelRequested(e) => {
                if let Some(job) = self.processing_jobs.get_mut(&e.job_id) {
                    job.cancel_requested = true;
                }
            }
            Event::ProcessingJobCanceled(e) => self.set_processing_status(e.job_id, JobStatus::Canceled),
            Event::ProcessingJobAbandoned(e) => {
                if let Some(job) = self.processing_jobs.get_mut(&e.job_id) {
                    job.status = JobStatus::Queued;
                    job.queued_at = seq;
                }
            }
            Event::ProcessingJobRetried(e) => {
                if let Some(job) = self.processing_jobs.get_mut(&e.job_id) {
                    job.status = JobStatus::Queued;
                    job.cancel_requested = false;
                    job.queued_at = seq;
                }
            }
            Event::ClusteringJobQueued(e) => {
                self.clustering_jobs.insert(
                    e.job_id,
                    ClusteringJobState {
                        embedding_set_ids: e.embedding_set_ids.clone(),
                        parameters: e.parameters.clone(),
                        status: JobStatus::Queued,
                        attempt: 0,
                        cancel_requested: false,
                        queued_at: seq,
                    },
                );
            }
            Event::ClusteringJobClaimed(e) => {
                if let Some(job) = self.clustering_jobs.get_mut(&e.job_id) {
                    job.status = JobStatus::Running;
                    job.attempt = e.attempt;
                }
            }
            Event::ClusteringJobProgressed(_) => {}
            Event::ClusteringJobCompleted(e) => {
                if let Some(job) = self.clustering_jobs.get_mut(&e.job_id) {
                    job.status = JobStatus::Complete;
                }
                if let Some(max) = e.clusters.iter().map(|cluster| cluster.cluster_id.0).max() {
                    self.last_cluster_id = self.last_cluster_id.max(max);
                }
            }
            Event::ClusteringJobFailed(e) => self.set_clustering_status(e.job_id, JobStatus::Failed),
            Event::ClusteringJobCancelRequested(e) => {
                if let Some(job) = self.clustering_jobs.get_mut(&e.job_id) {
                    job.cancel_requested = true;
                }
            }
            Event::ClusteringJobCanceled(e) => self.set_clustering_status(e.job_id, JobStatus::Canceled),
            Event::ClusteringJobAbandoned(e) => {
                if let Some(job) = self.clustering_jobs.get_mut(&e.job_id) {
                    job.status = JobStatus::Queued;
                    job.queued_at = seq;
                }
            }
            Event::ClusteringJobRetried(e) => {
                if let Some(job) = self.clustering_jobs.get_mut(&e.job_id) {
                    job.status = JobStatus::Queued;
                    job.cancel_requested = false;
                    job.queued_at = seq;
                }
            }
            Event::AnnotationsAdded(e) => {
                for record in &e.annotations {
                    self.last_annotation_id = self.last_annotation_id.max(record.annotation_id.0);
                    self.annotations.insert(
                        record.annotation_id,
                        AnnotationState {
                            audio_file_id: record.audio_file_id,
                            start_seconds: record.start_seconds,
                            end_seconds: record.end_seconds,
                            low_hz: record.low_hz,
                            high_hz: record.high_hz,
                            label: record.label.clone(),
                            kind: record.kind,
                            note: record.note.clone(),
                        },
                    );
                }
            }
            Event::AnnotationChanged(e) => {
                if let Some(annotation) = self.annotations.get_mut(&e.annotation_id) {
                    *annotation = AnnotationState {
                        audio_file_id: e.audio_file_id,
                        start_seconds: e.start_seconds,
                        end_seconds: e.end_seconds,
                        low_hz: e.low_hz,
                        high_hz: e.high_hz,
                        label: e.label.clone(),
                        kind: e.kind,
                        note: e.note.clone(),
                    };
                }
            }
            Event::AnnotationRemoved(e) => {
                self.annotations.remove(&e.annotation_id);
            }
            Event::RecordingStartTimeSet(e) => match e.recorded_at_micros {
                Some(micros) => {
                    self.recording_start_times
                        .insert(e.audio_file_id, (crate::recording_time::UtcTime(micros), e.source));
                }
                None => {
                    self.recording_start_times.remove(&e.audio_file_id);
                }
            },
            Event::ClassifierTrainingQueued(_)
            | Event::ClassifierTrainingClaimed(_)
            | Event::ClassifierTrainingProgressed(_)
            | Event::ClassifierTrainingCompleted(_)
            | Event::ClassifierTrainingFailed(_)
            | Event::ClassifierTrainingCancelRequested(_)
            | Event::ClassifierTrainingCanceled(_)
            | Event::ClassifierTrainingAbandoned(_)
            | Event::ClassifierTrainingRetried(_) => self.apply_classifier_event(seq, event),
            Event::DetectionJobQueued(_)
            | Event::DetectionJobClaimed(_)
            | Event::DetectionJobProgressed(_)
            | Event::DetectionJobCompleted(_)
            | Event::DetectionJobFailed(_)
            | Event::DetectionJobCancelRequested(_)
            | Event::DetectionJobCanceled(_)
            | Event::DetectionJobAbandoned(_)
            | Event::DetectionJobRetried(_) => self.apply_detection_event(seq, event),
        }
    }

    fn set_processing_status(&mut self, job_id: ProcessingJobId, status: JobStatus) {
        if let Some(job) = self.processing_jobs.get_mut(&job_id) {
            job.status = status;
        }
    }

    fn apply_classifier_event(&mut self, seq: EventSeq, event: &Event) {
        let set_status = |state: &mut DomainState, id: &ClassifierId, status: JobStatus| {
            if let Some(classifier) = state.classifiers.get_mut(id) {
                classifier.status = status;
            }
        };
        match event {
            Event::ClassifierTrainingQueued(e) => {
                self.classifiers.insert(
                    e.classifier_id,
                    ClassifierState {
                        labels: e.labels.clone(),
                        model_version: e.model_version.clone(),
                        request: e.request.clone(),
                        status: JobStatus::Queued,
                        attempt: 0,
                        cancel_requested: false,
                        queued_at: seq,
                        artifact: None,
                        threshold: None,
                    },
                );
            }
            Event::ClassifierTrainingClaimed(e) => {
                if let Some(classifier) = self.classifiers.get_mut(&e.classifier_id) {
                    classifier.status = JobStatus::Running;
                    classifier.attempt = e.attempt;
                }
            }
            Event::ClassifierTrainingCompleted(e) => {
                if let Some(classifier) = self.classifiers.get_mut(&e.classifier_id) {
                    classifier.status = JobStatus::Complete;
                    classifier.artifact = Some((e.artifact_path.clone(), e.version.clone()));
                    classifier.threshold = Some(e.threshold);
                }
            }
            Event::ClassifierTrainingFailed(e) => set_status(self, &e.classifier_id, JobStatus::Failed),
            Event::ClassifierTrainingCancelRequested(e) => {
                if let Some(classifier) = self.classifiers.get_mut(&e.classifier_id) {
                    classifier.cancel_requested = true;
                }
            }
            Event::ClassifierTrainingCanceled(e) => set_status(self, &e.classifier_id, JobStatus::Canceled),
            Event::ClassifierTrainingAbandoned(e) => {
                if let Some(classifier) = self.classifiers.get_mut(&e.classifier_id) {
                    classifier.status = JobStatus::Queued;
                    classifier.queued_at = seq;
                }
            }
            Event::ClassifierTrainingRetried(e) => {
                if let Some(classifier) = self.classifiers.get_mut(&e.classifier_id) {
                    classifier.status = JobStatus::Queued;
                    classifier.cancel_requested = false;
                    classifier.queued_at = seq;
                }
            }
            _ => {}
        }
    }

    fn apply_detection_event(&mut self, seq: EventSeq, event: &Event) {
        if let Event::DetectionJobQueued(e) = event {
            self.detection_jobs.insert(
                e.job_id,
                DetectionJobState {
                    classifier_id: e.classifier_id,
                    classifier_version: e.classifier_version.clone(),
                    embedding_set_ids: e.embedding_set_ids.clone(),
                    threshold: e.threshold,
                    status: JobStatus::Queued,
                    attempt: 0,
                    cancel_requested: false,
                    queued_at: seq,
                },
            );
            return;
        }
        let job_id = match event {
            Event::DetectionJobClaimed(e) => e.job_id,
            Event::DetectionJobCompleted(e) => e.job_id,
            Event::DetectionJobFailed(e) => e.job_id,
            Event::DetectionJobCancelRequested(e) => e.job_id,
            Event::DetectionJobCanceled(e) => e.job_id,
            Event::DetectionJobAbandoned(e) => e.job_id,
            Event::DetectionJobRetried(e) => e.job_id,
            _ => return,
        };
        let Some(job) = self.detection_jobs.get_mut(&job_id) else { return };
        match event {
            Event::DetectionJobClaimed(e) => {
                job.status = JobStatus::Running;
                job.attempt = e.attempt;
            }
            Event::DetectionJobCompleted(_) => job.status = JobStatus::Complete,
            Event::DetectionJobFailed(_) => job.status = JobStatus::Failed,
            Event::DetectionJobCancelRequested(_) => job.cancel_requested = true,
            Event::DetectionJobCanceled(_) => job.status = JobStatus::Canceled,
            Event::DetectionJobAbandoned(_) => {
                job.status = JobStatus::Queued;
                job.queued_at = seq;
            }
            Event::DetectionJobRetried(_) => {
                job.status = JobStatus::Queued;
                job.cancel_requested = false;
                job.queued_at = seq;
            }
            _ => {}
        }
    }

    fn set_clustering_status(&mut self, job_id: ClusteringJobId, status: JobStatus) {
        if let Some(job) = self.clustering_jobs.get_mut(&job_id) {
            job.status = status;
        }
    }
}
