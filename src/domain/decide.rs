//! Commands and the pure `decide` function: given the folded state and a command, the events
//! that record what happened, or a rejection that says why nothing did.

use super::annotation_rules::{
    check_annotation, AnnotationFields, AnnotationKey, FieldProblem, MAX_ANNOTATIONS_PER_COMMAND, MAX_SOURCE_CHARS,
};
use super::events::*;
use super::ids::{
    AnnotationId, AudioFileId, ClassifierId, ClusteringJobId, DetectionJobId, EmbeddingSetId, EncodingSignature,
    ProcessingJobId, Sha256Hex, WorkerId,
};
use super::json_text::JsonText;
use super::state::{DomainState, JobStatus};

/// What a caller asks the writer to do. Imperative names; the events say what was done.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    RegisterModel(ModelRegistered),
    /// Hide a registered model from new jobs.
    RetireModel {
        name: String,
    },
    RegisterAudioFile(RegisterAudioFile),
    EditAudioMetadata(EditAudioMetadata),
    QueueProcessingJob {
        audio_file_id: AudioFileId,
        encoding_signature: EncodingSignature,
        config: EncodingConfig,
    },
    /// Claim the oldest queued processing job.
    ClaimProcessingJob {
        worker: WorkerId,
    },
    ReportProcessingProgress {
        job_id: ProcessingJobId,
        attempt: u32,
        windows_done: u64,
        windows_total: u64,
    },
    /// Record a finished encoding: its promoted artifact (if any) and the job's completion.
    CompleteProcessingJob {
        job_id: ProcessingJobId,
        attempt: u32,
        embedding_set: Option<NewEmbeddingSet>,
        warning: Option<String>,
    },
    FailProcessingJob {
        job_id: ProcessingJobId,
        attempt: u32,
        reason: String,
    },
    CancelProcessingJob {
        job_id: ProcessingJobId,
    },
    /// A worker stopped a job whose cancel was requested.
    ConfirmProcessingJobCanceled {
        job_id: ProcessingJobId,
        attempt: u32,
    },
    /// A running attempt will not finish (found at start-up): back to the queue.
    AbandonProcessingJob {
        job_id: ProcessingJobId,
        attempt: u32,
        reason: String,
    },
    RetryProcessingJob {
        job_id: ProcessingJobId,
    },
    QueueClusteringJob {
        embedding_set_ids: Vec<EmbeddingSetId>,
        parameters: JsonText,
    },
    ClaimClusteringJob {
        worker: WorkerId,
    },
    ReportClusteringProgress {
        job_id: ClusteringJobId,
        attempt: u32,
        stage: String,
        fraction: f64,
    },
    /// Clusters come with `cluster_id` 0; the writer numbers them.
    CompleteClusteringJob(ClusteringJobCompleted),
    FailClusteringJob {
        job_id: ClusteringJobId,
        attempt: u32,
        reason: String,
    },
    CancelClusteringJob {
        job_id: ClusteringJobId,
    },
    ConfirmClusteringJobCanceled {
        job_id: ClusteringJobId,
        attempt: u32,
    },
    AbandonClusteringJob {
        job_id: ClusteringJobId,
        attempt: u32,
        reason: String,
    },
    RetryClusteringJob {
        job_id: ClusteringJobId,
    },
    /// Queue the training of a new classifier; `request` is the validated request as JSON.
    QueueClassifierTraining {
        labels: Vec<String>,
        model_version: String,
        request: JsonText,
    },
    ClaimClassifierTraining {
        worker: WorkerId,
    },
    ReportClassifierTrainingProgress {
        classifier_id: ClassifierId,
        attempt: u32,
        stage: String,
        fraction: f64,
    },
    /// The artifact is already published (staged, fsynced, renamed) when this is decided.
    CompleteClassifierTraining(ClassifierTrainingCompleted),
    FailClassifierTraining {
        classifier_id: ClassifierId,
        attempt: u32,
        reason: String,
    },
    CancelClassifierTraining {
        classifier_id: ClassifierId,
    },
    ConfirmClassifierTrainingCanceled {
        classifier_id: ClassifierId,
        attempt: u32,
    },
    AbandonClassifierTraining {
        classifier_id: ClassifierId,
        attempt: u32,
        reason: String,
    },
    RetryClassifierTraining {
        classifier_id: ClassifierId,
    },
    /// Queue a detection job; the scope is already resolved to embedding sets.
    QueueDetectionJob {
        classifier_id: ClassifierId,
        embedding_set_ids: Vec<EmbeddingSetId>,
        /// `None`: the classifier's own threshold.
        threshold: Option<f64>,
        scope: JsonText,
    },
    ClaimDetectionJob {
        worker: WorkerId,
    },
    ReportDetectionProgress {
        job_id: DetectionJobId,
        attempt: u32,
        fraction: f64,
    },
    /// The scores file is already published when this is decided.
    CompleteDetectionJob(DetectionJobCompleted),
    FailDetectionJob {
        job_id: DetectionJobId,
        attempt: u32,
        reason: String,
    },
    CancelDetectionJob {
        job_id: DetectionJobId,
    },
    ConfirmDetectionJobCanceled {
        job_id: DetectionJobId,
        attempt: u32,
    },
    AbandonDetectionJob {
        job_id: DetectionJobId,
        attempt: u32,
        reason: String,
    },
    RetryDetectionJob {
        job_id: DetectionJobId,
    },
    /// Add annotations, all or none. Ones identical to an existing annotation (or to an earlier
    /// one in the same command) are left out, so importing a table twice doubles nothing.
    AddAnnotations(AddAnnotations),
    ChangeAnnotation(ChangeAnnotation),
    RemoveAnnotation {
        annotation_id: AnnotationId,
        removed_by: Option<String>,
    },
    /// Set recordings' start times (an edit, or read again for a folder); a time equal to the
    /// current one (same instant and source) records nothing.
    SetRecordingStartTimes(Vec<SetRecordingStartTime>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AddAnnotations {
    pub annotations: Vec<NewAnnotation>,
    pub created_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewAnnotation {
    pub fields: AnnotationFields,
    /// `manual`, `cluster:{id}`, `windows`, `import:{file name}`.
    pub source: String,
}

/// The fields to change; `None` keeps a field. For the optional fields, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeAnnotation {
    pub annotation_id: AnnotationId,
    pub start_seconds: Option<f64>,
    pub end_seconds: Option<f64>,
    pub low_hz: Option<Option<f64>>,
    pub high_hz: Option<Option<f64>>,
    pub label: Option<String>,
    pub kind: Option<AnnotationKind>,
    pub note: Option<Option<String>>,
    pub changed_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SetRecordingStartTime {
    pub audio_file_id: AudioFileId,
    /// `None`: unknown (only a person can clear a time).
    pub recorded_at: Option<crate::recording_time::UtcTime>,
    pub source: RecordingTimeSource,
    pub derivation: String,
    pub set_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegisterAudioFile {
    pub original_filename: String,
    pub folder: String,
    pub checksum_sha256: Sha256Hex,
    pub size_bytes: u64,
    pub duration_seconds: f64,
    pub sample_rate: u32,
    pub channels: u16,
    pub codec: String,
    /// Lowercase extension of the stored copy (`wav`, `mp3`, `flac`), chosen from the probed codec.
    pub extension: String,
    /// The start time found in the file (`bext`) or its name, recorded right after the registration.
    pub recorded_at: Option<crate::recording_time::FoundRecordingTime>,
    /// Where the bytes are kept.
    pub location: AudioLocation,
}

/// Where a registered recording's bytes are kept (its `stored_path`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AudioLocation {
    /// `audio/raw/{id}/original.{ext}` in storage (the seed layout; moved there by rename).
    #[default]
    ById,
    /// `audio/raw/sha256/{checksum}.{ext}` in storage: a bucket, where the upload happens
    /// before the id is known (an object cannot be renamed cheaply).
    ByChecksum,
    /// Where it already sits, by object URL (`s3://archive/2019/a.flac`) or absolute
    /// `file:///` path on a shared filesystem: registered without a copy.
    InPlace(String),
}

/// How an edit's documents combine with what is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataEditMode {
    /// Each given document replaces the field (`PUT`).
    Replace,
    /// Each given document is a JSON merge patch (RFC 7386) of the field (`PATCH`): keys are
    /// added or replaced, `null` removes a key.
    MergePatch,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EditAudioMetadata {
    pub audio_file_id: AudioFileId,
    pub mode: MetadataEditMode,
    pub tag_data: Option<JsonText>,
    pub visual_observations: Option<JsonText>,
    pub group_composition: Option<JsonText>,
    pub prey_density_proxy: Option<JsonText>,
    pub edited_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewEmbeddingSet {
    pub vector_dim: u32,
    pub row_count: u64,
    pub parquet_path: String,
}

/// Why a command changed nothing. Each says what a person can do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("audio file {0} does not exist")]
    AudioFileNotFound(AudioFileId),
    #[error("these bytes are already registered as audio file {0}")]
    AudioFileAlreadyRegistered(AudioFileId),
    #[error("the audio extension {0:?} is not one of wav, mp3, flac")]
    UnsupportedAudioExtension(String),
    #[error("the metadata edit changes no field")]
    EmptyMetadataEdit,
    #[error(
        "audio file {audio_file_id} is already encoded with this configuration (embedding set {embedding_set_id:?})"
    )]
    AlreadyEncoded { audio_file_id: AudioFileId, embedding_set_id: Option<EmbeddingSetId> },
    #[error("processing job {0} already encodes this file with this configuration")]
    AlreadyQueued(ProcessingJobId),
    #[error("processing job {0} does not exist")]
    ProcessingJobNotFound(ProcessingJobId),
    #[error("clustering job {0} does not exist")]
    ClusteringJobNotFound(ClusteringJobId),
    #[error("classifier {0} does not exist")]
    ClassifierNotFound(ClassifierId),
    #[error("detection job {0} does not exist")]
    DetectionJobNotFound(DetectionJobId),
    #[error("no job is waiting in the queue")]
    NothingToClaim,
    #[error("job {job} is {status}, not running attempt {attempt}")]
    NotRunningAttempt { job: String, status: JobStatus, attempt: u32 },
    #[error("job {job} is {status} and cannot be canceled")]
    NotCancelable { job: String, status: JobStatus },
    #[error("job {job} is {status}; only failed or canceled jobs can be retried")]
    NotRetryable { job: String, status: JobStatus },
    #[error("embedding set {0} does not exist")]
    EmbeddingSetNotFound(EmbeddingSetId),
    #[error("a clustering job needs at least one embedding set")]
    NoEmbeddingSets,
    #[error("embedding sets {0:?} do not share one model version and dimension")]
    MixedEmbeddingSets(Vec<EmbeddingSetId>),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("annotation {0} does not exist")]
    AnnotationNotFound(AnnotationId),
    /// An annotation breaks a rule: which one (its position in the request, when there were
    /// several), which field and why.
    #[error("{}", invalid_annotation_message(*index, field, reason))]
    InvalidAnnotation { index: Option<usize>, field: &'static str, reason: String },
}

fn invalid_annotation_message(index: Option<usize>, field: &str, reason: &str) -> String {
    match index {
        Some(index) => format!("annotations[{index}].{field}: {reason}"),
        None => format!("{field}: {reason}"),
    }
}

fn invalid_annotation(index: Option<usize>) -> impl Fn(FieldProblem) -> Rejection {
    move |problem| Rejection::InvalidAnnotation { index, field: problem.field, reason: problem.reason }
}

const AUDIO_EXTENSIONS: &[&str] = &["wav", "mp3", "flac"];

/// The rules of the domain, as a pure function.
pub fn decide(state: &DomainState, command: Command) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::RegisterModel(model) => {
            if state.models.get(&model.name) == Some(&model) {
                return Ok(vec![]);
            }
            Ok(vec![Event::ModelRegistered(model)])
        }
        Command::RetireModel { name } => {
            let model = state
                .models
                .get(&name)
                .ok_or_else(|| Rejection::Invalid(format!("model {name:?} is not registered")))?;
            if state.retired_models.contains(&name) {
                return Err(Rejection::Invalid(format!("model {name:?} is already retired")));
            }
            Ok(vec![Event::ModelRetired(ModelRetired { name, version: model.version.clone() })])
        }
        Command::RegisterAudioFile(register) => {
            if let Some(existing) = state.audio_file_by_checksum.get(&register.checksum_sha256) {
                return Err(Rejection::AudioFileAlreadyRegistered(*existing));
            }
            let extension = register.extension.to_ascii_lowercase();
            if !AUDIO_EXTENSIONS.contains(&extension.as_str()) {
                return Err(Rejection::UnsupportedAudioExtension(register.extension));
            }
            if let AudioLocation::InPlace(url) = &register.location {
                if !crate::storage::spec::is_in_place_location(url) {
                    return Err(Rejection::Invalid(format!(
                        "{url:?} is not an object URL (s3://, gs://, az://) or an absolute file:/// path"
                    )));
                }
            }
            if register.location == AudioLocation::ByChecksum
                && !register.checksum_sha256.0.chars().all(|c| c.is_ascii_hexdigit())
            {
                return Err(Rejection::Invalid("the checksum is not hexadecimal".into()));
            }
            let audio_file_id = state.next_audio_file_id();
            let start_time = register.recorded_at.map(|found| {
                Event::RecordingStartTimeSet(RecordingStartTimeSet {
                    audio_file_id,
                    recorded_at_micros: Some(found.recorded_at.micros()),
                    source: found.source,
                    derivation: found.derivation,
                    set_by: None,
                })
            });
            let stored_path = match register.location {
                AudioLocation::ById => format!("audio/raw/{audio_file_id}/original.{extension}"),
                AudioLocation::ByChecksum => format!("audio/raw/sha256/{}.{extension}", register.checksum_sha256.0),
                AudioLocation::InPlace(url) => url,
            };
            let registered = Event::AudioFileRegistered(AudioFileRegistered {
                audio_file_id,
                original_filename: register.original_filename,
                folder: register.folder,
                checksum_sha256: register.checksum_sha256,
                size_bytes: register.size_bytes,
                duration_seconds: register.duration_seconds,
                sample_rate: register.sample_rate,
                channels: register.channels,
                codec: register.codec,
                stored_path,
            });
            Ok(std::iter::once(registered).chain(start_time).collect())
        }
        Command::SetRecordingStartTimes(changes) => {
            let mut events = Vec::new();
            for change in changes {
                if !state.audio_files.contains_key(&change.audio_file_id) {
                    return Err(Rejection::AudioFileNotFound(change.audio_file_id));
                }
                if change.recorded_at.is_none() && change.source != RecordingTimeSource::User {
                    return Err(Rejection::Invalid("only a person can set a start time to unknown".into()));
                }
                let current = state.recording_start_times.get(&change.audio_file_id).copied();
                if current.map(|(time, _)| time) == change.recorded_at
                    && (change.recorded_at.is_none() || current.map(|(_, source)| source) == Some(change.source))
                {
                    continue;
                }
                events.push(Event::RecordingStartTimeSet(RecordingStartTimeSet {
                    audio_file_id: change.audio_file_id,
                    recorded_at_micros: change.recorded_at.map(|time| time.micros()),
                    source: change.source,
                    derivation: change.derivation,
                    set_by: change.set_by,
                }));
            }
            Ok(events)
        }
        Command::EditAudioMetadata(edit) => {
            let file =
                state.audio_files.get(&edit.audio_file_id).ok_or(Rejection::AudioFileNotFound(edit.audio_file_id))?;
            if edit.tag_data.is_none()
                && edit.visual_observations.is_none()
                && edit.group_composition.is_none()
                && edit.prey_density_proxy.is_none()
            {
                return Err(Rejection::EmptyMetadataEdit);
            }
            let current = &file.metadata;
            let combine =
                |current: &Option<JsonText>, given: Option<JsonText>| -> Result<Option<JsonText>, Rejection> {
                    let Some(given) = given else { return Ok(None) };
                    let value = given.to_value();
                    if !value.is_object() {
                        return Err(Rejection::Invalid("each metadata field must be a JSON object".into()));
                    }
                    Ok(Some(match edit.mode {
                        MetadataEditMode::Replace => given,
                        MetadataEditMode::MergePatch => {
                            let mut merged =
                                current.as_ref().map(JsonText::to_value).unwrap_or_else(|| serde_json::json!({}));
                            json_merge_patch(&mut merged, &value);
                            JsonText::from_value(&merged)
                        }
                    }))
                };
            Ok(vec![Event::AudioMetadataEdited(AudioMetadataEdited {
                audio_file_id: edit.audio_file_id,
                tag_data: combine(&current.tag_data, edit.tag_data)?,
                visual_observations: combine(&current.visual_observations, edit.visual_observations)?,
                group_composition: combine(&current.group_composition, edit.group_composition)?,
                prey_density_proxy: combine(&current.prey_density_proxy, edit.prey_density_proxy)?,
                edited_by: edit.edited_by,
            })])
        }
        Command::QueueProcessingJob { audio_file_id, encoding_signature, config } => {
            if !state.audio_files.contains_key(&audio_file_id) {
                return Err(Rejection::AudioFileNotFound(audio_file_id));
            }
            if let Some(embedding_set_id) = state.completed_encoding(&encoding_signature) {
                return Err(Rejection::AlreadyEncoded { audio_file_id, embedding_set_id });
            }
            match state.job_for_signature(&encoding_signature) {
                // A signature has one job for ever: asking again after a failure retries it.
                Some(job_id) => match state.processing_jobs.get(&job_id).map(|job| job.status) {
                    Some(JobStatus::Failed | JobStatus::Canceled) => {
                        Ok(vec![Event::ProcessingJobRetried(ProcessingJobRetried { job_id })])
                    }
                    _ => Err(Rejection::AlreadyQueued(job_id)),
                },
                None => Ok(vec![Event::ProcessingJobQueued(ProcessingJobQueued {
                    job_id: state.next_processing_job_id(),
                    audio_file_id,
                    encoding_signature,
                    config,
                })]),
            }
        }
        Command::ClaimProcessingJob { worker } => {
            let next = state
                .processing_jobs
                .iter()
                .filter(|(_, job)| job.status == JobStatus::Queued)
                .min_by_key(|(id, job)| (job.queued_at, **id));
            let Some((job_id, job)) = next else {
                return Err(Rejection::NothingToClaim);
            };
            Ok(vec![Event::ProcessingJobClaimed(ProcessingJobClaimed {
                job_id: *job_id,
                worker,
                attempt: job.attempt + 1,
            })])
        }
        Command::ReportProcessingProgress { job_id, attempt, windows_done, windows_total } => {
            running_processing_attempt(state, job_id, attempt)?;
            Ok(vec![Event::ProcessingJobProgressed(ProcessingJobProgressed {
                job_id,
                attempt,
                windows_done,
                windows_total,
            })])
        }
        Command::CompleteProcessingJob { job_id, attempt, embedding_set, warning } => {
            let job = running_processing_attempt(state, job_id, attempt)?;
            if let Some(existing) = state.completed_encoding(&job.encoding_signature) {
                return Err(Rejection::AlreadyEncoded { audio_file_id: job.audio_file_id, embedding_set_id: existing });
            }
            let mut events = Vec::new();
            let embedding_set_id = embedding_set.map(|set| {
                let embedding_set_id = state.next_embedding_set_id();
                events.push(Event::EmbeddingSetPromoted(EmbeddingSetPromoted {
                    embedding_set_id,
                    job_id,
                    audio_file_id: job.audio_file_id,
                    encoding_signature: job.encoding_signature.clone(),
                    model_name: job.config.model_name.clone(),
                    model_version: job.config.model_version.clone(),
                    window_seconds: job.config.window_seconds,
                    hop_seconds: job.config.hop_seconds,
                    target_sample_rate: job.config.target_sample_rate,
                    vector_dim: set.vector_dim,
                    row_count: set.row_count,
                    parquet_path: set.parquet_path,
                }));
                embedding_set_id
            });
            events.push(Event::ProcessingJobCompleted(ProcessingJobCompleted {
                job_id,
                attempt,
                embedding_set_id,
                warning,
            }));
            Ok(events)
        }
        Command::FailProcessingJob { job_id, attempt, reason } => {
            running_processing_attempt(state, job_id, attempt)?;
            Ok(vec![Event::ProcessingJobFailed(ProcessingJobFailed { job_id, attempt, reason })])
        }
        Command::CancelProcessingJob { job_id } => {
            let job = state.processing_jobs.get(&job_id).ok_or(Rejection::ProcessingJobNotFound(job_id))?;
            cancel_job(
                || format!("processing job {job_id}"),
                job.status,
                job.cancel_requested,
                Event::ProcessingJobCanceled(ProcessingJobCanceled { job_id }),
                Event::ProcessingJobCancelRequested(ProcessingJobCancelRequested { job_id }),
            )
        }
        Command::ConfirmProcessingJobCanceled { job_id, attempt } => {
            running_processing_attempt(state, job_id, attempt)?;
            Ok(vec![Event::ProcessingJobCanceled(ProcessingJobCanceled { job_id })])
        }
        Command::AbandonProcessingJob { job_id, attempt, reason } => {
            let job = running_processing_attempt(state, job_id, attempt)?;
            Ok(abandon_job(
                job.cancel_requested,
                Event::ProcessingJobAbandoned(ProcessingJobAbandoned { job_id, attempt, reason }),
                Event::ProcessingJobCanceled(ProcessingJobCanceled { job_id }),
            ))
        }
        Command::RetryProcessingJob { job_id } => {
            let job = state.processing_jobs.get(&job_id).ok_or(Rejection::ProcessingJobNotFound(job_id))?;
            ensure_retryable(|| format!("processing job {job_id}"), job.status)?;
            if let Some(embedding_set_id) = state.completed_encoding(&job.encoding_signature) {
                return Err(Rejection::AlreadyEncoded { audio_file_id: job.audio_file_id, embedding_set_id });
            }
            Ok(vec![Event::ProcessingJobRetried(ProcessingJobRetried { job_id })])
        }
        Command::QueueClusteringJob { embedding_set_ids, parameters } => {
            if embedding_set_ids.is_empty() {
                return Err(Rejection::NoEmbeddingSets);
            }
            let mut sets = Vec::with_capacity(embedding_set_ids.len());
            for id in &embedding_set_ids {
                sets.push((*id, state.embedding_sets.get(id).ok_or(Rejection::EmbeddingSetNotFound(*id))?));
            }
            let (_, first) = sets[0];
            let offending: Vec<EmbeddingSetId> = sets
                .iter()
                .filter(|(_, set)| set.model_version != first.model_version || set.vector_dim != first.vector_dim)
                .map(|(id, _)| *id)
                .collect();
            if !offending.is_empty() {
                return Err(Rejection::MixedEmbeddingSets(offending));
            }
            Ok(vec![Event::ClusteringJobQueued(ClusteringJobQueued {
                job_id: state.next_clustering_job_id(),
                embedding_set_ids,
                parameters,
            })])
        }
        Command::ClaimClusteringJob { worker } => {
            let next = state
                .clustering_jobs
                .iter()
                .filter(|(_, job)| job.status == JobStatus::Queued)
                .min_by_key(|(id, job)| (job.queued_at, **id));
            let Some((job_id, job)) = next else {
                return Err(Rejection::NothingToClaim);
            };
            Ok(vec![Event::ClusteringJobClaimed(ClusteringJobClaimed {
                job_id: *job_id,
                worker,
                attempt: job.attempt + 1,
            })])
        }
        Command::ReportClusteringProgress { job_id, attempt, stage, fraction } => {
            running_clustering_attempt(state, job_id, attempt)?;
            if !(0.0..=1.0).contains(&fraction) {
                return Err(Rejection::Invalid(format!("progress fraction {fraction} is not between 0 and 1")));
            }
            Ok(vec![Event::ClusteringJobProgressed(ClusteringJobProgressed { job_id, attempt, stage, fraction })])
        }
        Command::CompleteClusteringJob(mut completed) => {
            running_clustering_attempt(state, completed.job_id, completed.attempt)?;
            check_clusters_match_assignments(&completed)?;
            for (cluster_id, cluster) in (state.next_cluster_id().0..).zip(completed.clusters.iter_mut()) {
                cluster.cluster_id = super::ids::ClusterId(cluster_id);
            }
            Ok(vec![Event::ClusteringJobCompleted(completed)])
        }
        Command::FailClusteringJob { job_id, attempt, reason } => {
            running_clustering_attempt(state, job_id, attempt)?;
            Ok(vec![Event::ClusteringJobFailed(ClusteringJobFailed { job_id, attempt, reason })])
        }
        Command::CancelClusteringJob { job_id } => {
            let job = state.clustering_jobs.get(&job_id).ok_or(Rejection::ClusteringJobNotFound(job_id))?;
            cancel_job(
                || format!("clustering job {job_id}"),
                job.status,
                job.cancel_requested,
                Event::ClusteringJobCanceled(ClusteringJobCanceled { job_id }),
                Event::ClusteringJobCancelRequested(ClusteringJobCancelRequested { job_id }),
            )
        }
        Command::ConfirmClusteringJobCanceled { job_id, attempt } => {
            running_clustering_attempt(state, job_id, attempt)?;
            Ok(vec![Event::ClusteringJobCanceled(ClusteringJobCanceled { job_id })])
        }
        Command::AbandonClusteringJob { job_id, attempt, reason } => {
            let job = running_clustering_attempt(state, job_id, attempt)?;
            Ok(abandon_job(
                job.cancel_requested,
                Event::ClusteringJobAbandoned(ClusteringJobAbandoned { job_id, attempt, reason }),
                Event::ClusteringJobCanceled(ClusteringJobCanceled { job_id }),
            ))
        }
        Command::RetryClusteringJob { job_id } => {
            let job = state.clustering_jobs.get(&job_id).ok_or(Rejection::ClusteringJobNotFound(job_id))?;
            ensure_retryable(|| format!("clustering job {job_id}"), job.status)?;
            Ok(vec![Event::ClusteringJobRetried(ClusteringJobRetried { job_id })])
        }
        Command::QueueClassifierTraining { labels, model_version, request } => {
            queue_classifier_training(state, labels, model_version, request)
        }
        Command::ClaimClassifierTraining { worker } => {
            let next = state
                .classifiers
                .iter()
                .filter(|(_, classifier)| classifier.status == JobStatus::Queued)
                .min_by_key(|(id, classifier)| (classifier.queued_at, **id));
            let Some((classifier_id, classifier)) = next else {
                return Err(Rejection::NothingToClaim);
            };
            Ok(vec![Event::ClassifierTrainingClaimed(ClassifierTrainingClaimed {
                classifier_id: *classifier_id,
                worker,
                attempt: classifier.attempt + 1,
            })])
        }
        Command::ReportClassifierTrainingProgress { classifier_id, attempt, stage, fraction } => {
            running_training_attempt(state, classifier_id, attempt)?;
            if !(0.0..=1.0).contains(&fraction) {
                return Err(Rejection::Invalid(format!("progress fraction {fraction} is not between 0 and 1")));
            }
            Ok(vec![Event::ClassifierTrainingProgressed(ClassifierTrainingProgressed {
                classifier_id,
                attempt,
                stage,
                fraction,
            })])
        }
        Command::CompleteClassifierTraining(completed) => {
            running_training_attempt(state, completed.classifier_id, completed.attempt)?;
            Ok(vec![Event::ClassifierTrainingCompleted(completed)])
        }
        Command::FailClassifierTraining { classifier_id, attempt, reason } => {
            running_training_attempt(state, classifier_id, attempt)?;
            Ok(vec![Event::ClassifierTrainingFailed(ClassifierTrainingFailed { classifier_id, attempt, reason })])
        }
        Command::CancelClassifierTraining { classifier_id } => {
            let classifier =
                state.classifiers.get(&classifier_id).ok_or(Rejection::ClassifierNotFound(classifier_id))?;
            cancel_job(
                || format!("classifier {classifier_id}"),
                classifier.status,
                classifier.cancel_requested,
                Event::ClassifierTrainingCanceled(ClassifierTrainingCanceled { classifier_id }),
                Event::ClassifierTrainingCancelRequested(ClassifierTrainingCancelRequested { classifier_id }),
            )
        }
        Command::ConfirmClassifierTrainingCanceled { classifier_id, attempt } => {
            running_training_attempt(state, classifier_id, attempt)?;
            Ok(vec![Event::ClassifierTrainingCanceled(ClassifierTrainingCanceled { classifier_id })])
        }
        Command::AbandonClassifierTraining { classifier_id, attempt, reason } => {
            let classifier = running_training_attempt(state, classifier_id, attempt)?;
            Ok(abandon_job(
                classifier.cancel_requested,
                Event::ClassifierTrainingAbandoned(ClassifierTrainingAbandoned { classifier_id, attempt, reason }),
                Event::ClassifierTrainingCanceled(ClassifierTrainingCanceled { classifier_id }),
            ))
        }
        Command::RetryClassifierTraining { classifier_id } => {
            let classifier =
                state.classifiers.get(&classifier_id).ok_or(Rejection::ClassifierNotFound(classifier_id))?;
            ensure_retryable(|| format!("classifier {classifier_id}"), classifier.status)?;
            Ok(vec![Event::ClassifierTrainingRetried(ClassifierTrainingRetried { classifier_id })])
        }
        Command::QueueDetectionJob { classifier_id, embedding_set_ids, threshold, scope } => {
            queue_detection_job(state, classifier_id, embedding_set_ids, threshold, scope)
        }
        Command::ClaimDetectionJob { worker } => {
            let next = state
                .detection_jobs
                .iter()
                .filter(|(_, job)| job.status == JobStatus::Queued)
                .min_by_key(|(id, job)| (job.queued_at, **id));
            let Some((job_id, job)) = next else {
                return Err(Rejection::NothingToClaim);
            };
            Ok(vec![Event::DetectionJobClaimed(DetectionJobClaimed {
                job_id: *job_id,
                worker,
                attempt: job.attempt + 1,
            })])
        }
        Command::ReportDetectionProgress { job_id, attempt, fraction } => {
            running_detection_attempt(state, job_id, attempt)?;
            if !(0.0..=1.0).contains(&fraction) {
                return Err(Rejection::Invalid(format!("progress fraction {fraction} is not between 0 and 1")));
            }
            Ok(vec![Event::DetectionJobProgressed(DetectionJobProgressed { job_id, attempt, fraction })])
        }
        Command::CompleteDetectionJob(completed) => {
            running_detection_attempt(state, completed.job_id, completed.attempt)?;
            Ok(vec![Event::DetectionJobCompleted(completed)])
        }
        Command::FailDetectionJob { job_id, attempt, reason } => {
            running_detection_attempt(state, job_id, attempt)?;
            Ok(vec![Event::DetectionJobFailed(DetectionJobFailed { job_id, attempt, reason })])
        }
        Command::CancelDetectionJob { job_id } => {
            let job = state.detection_jobs.get(&job_id).ok_or(Rejection::DetectionJobNotFound(job_id))?;
            cancel_job(
                || format!("detection job {job_id}"),
                job.status,
                job.cancel_requested,
                Event::DetectionJobCanceled(DetectionJobCanceled { job_id }),
                Event::DetectionJobCancelRequested(DetectionJobCancelRequested { job_id }),
            )
        }
        Command::ConfirmDetectionJobCanceled { job_id, attempt } => {
            running_detection_attempt(state, job_id, attempt)?;
            Ok(vec![Event::DetectionJobCanceled(DetectionJobCanceled { job_id })])
        }
        Command::AbandonDetectionJob { job_id, attempt, reason } => {
            let job = running_detection_attempt(state, job_id, attempt)?;
            Ok(abandon_job(
                job.cancel_requested,
                Event::DetectionJobAbandoned(DetectionJobAbandoned { job_id, attempt, reason }),
                Event::DetectionJobCanceled(DetectionJobCanceled { job_id }),
            ))
        }
        Command::RetryDetectionJob { job_id } => {
            let job = state.detection_jobs.get(&job_id).ok_or(Rejection::DetectionJobNotFound(job_id))?;
            ensure_retryable(|| format!("detection job {job_id}"), job.status)?;
            Ok(vec![Event::DetectionJobRetried(DetectionJobRetried { job_id })])
        }
        Command::AddAnnotations(add) => add_annotations(state, add),
        Command::ChangeAnnotation(change) => change_annotation(state, change),
        Command::RemoveAnnotation { annotation_id, removed_by } => {
            let annotation =
                state.annotations.get(&annotation_id).ok_or(Rejection::AnnotationNotFound(annotation_id))?;
            Ok(vec![Event::AnnotationRemoved(AnnotationRemoved {
                annotation_id,
                audio_file_id: annotation.audio_file_id,
                removed_by,
            })])
        }
    }
}

fn add_annotations(state: &DomainState, add: AddAnnotations) -> Result<Vec<Event>, Rejection> {
    if add.annotations.is_empty() {
        return Err(Rejection::Invalid("no annotations were given".into()));
    }
    if add.annotations.len() > MAX_ANNOTATIONS_PER_COMMAND {
        return Err(Rejection::Invalid(format!(
            "{} annotations in one request; at most {MAX_ANNOTATIONS_PER_COMMAND}",
            add.annotations.len()
        )));
    }
    let mut checked = Vec::with_capacity(add.annotations.len());
    for (index, annotation) in add.annotations.into_iter().enumerate() {
        let recording = state.audio_files.get(&annotation.fields.audio_file_id);
        let fields = check_annotation(annotation.fields, recording).map_err(invalid_annotation(Some(index)))?;
        if annotation.source.trim().is_empty() || annotation.source.chars().count() > MAX_SOURCE_CHARS {
            return Err(Rejection::InvalidAnnotation {
                index: Some(index),
                field: "source",
                reason: format!("must be 1 to {MAX_SOURCE_CHARS} characters"),
            });
        }
        checked.push((fields, annotation.source));
    }
    let recordings: std::collections::HashSet<AudioFileId> =
        checked.iter().map(|(fields, _)| fields.audio_file_id).collect();
    let mut seen: std::collections::HashSet<AnnotationKey> = state
        .annotations
        .values()
        .filter(|annotation| recordings.contains(&annotation.audio_file_id))
        .map(AnnotationKey::of_state)
        .collect();
    let mut next_id = state.next_annotation_id().0;
    let mut records = Vec::new();
    for (fields, source) in checked {
        if !seen.insert(AnnotationKey::of_fields(&fields)) {
            continue;
        }
        records.push(AnnotationRecord {
            annotation_id: AnnotationId(next_id),
            audio_file_id: fields.audio_file_id,
            start_seconds: fields.start_seconds,
            end_seconds: fields.end_seconds,
            low_hz: fields.low_hz,
            high_hz: fields.high_hz,
            label: fields.label,
            kind: fields.kind,
            note: fields.note,
            source,
        });
        next_id += 1;
    }
    if records.is_empty() {
        return Ok(vec![]);
    }
    Ok(vec![Event::AnnotationsAdded(AnnotationsAdded { annotations: records, created_by: add.created_by })])
}

fn change_annotation(state: &DomainState, change: ChangeAnnotation) -> Result<Vec<Event>, Rejection> {
    let id = change.annotation_id;
    let current = state.annotations.get(&id).ok_or(Rejection::AnnotationNotFound(id))?;
    let wanted = AnnotationFields {
        audio_file_id: current.audio_file_id,
        start_seconds: change.start_seconds.unwrap_or(current.start_seconds),
        end_seconds: change.end_seconds.unwrap_or(current.end_seconds),
        low_hz: change.low_hz.unwrap_or(current.low_hz),
        high_hz: change.high_hz.unwrap_or(current.high_hz),
        label: change.label.unwrap_or_else(|| current.label.clone()),
        kind: change.kind.unwrap_or(current.kind),
        note: change.note.unwrap_or_else(|| current.note.clone()),
    };
    let fields =
        check_annotation(wanted, state.audio_files.get(&current.audio_file_id)).map_err(invalid_annotation(None))?;
    let unchanged = fields.start_seconds == current.start_seconds
        && fields.end_seconds == current.end_seconds
        && fields.low_hz == current.low_hz
        && fields.high_hz == current.high_hz
        && fields.label == current.label
        && fields.kind == current.kind
        && fields.note == current.note;
    if unchanged {
        return Ok(vec![]);
    }
    Ok(vec![Event::AnnotationChanged(AnnotationChanged {
        annotation_id: id,
        audio_file_id: fields.audio_file_id,
        start_seconds: fields.start_seconds,
        end_seconds: fields.end_seconds,
        low_hz: fields.low_hz,
        high_hz: fields.high_hz,
        label: fields.label,
        kind: fields.kind,
        note: fields.note,
        changed_by: change.changed_by,
    })])
}

/// Applies a JSON merge patch (RFC 7386) to `target`.
pub fn json_merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::json!({});
    }
    if let serde_json::Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                json_merge_patch(target.entry(key.clone()).or_insert(serde_json::Value::Null), value);
            }
        }
    }
}

/// A completion records its assignments file (never the assignments themselves, which only
/// old version 1 events carry), every cluster label once, and cluster sizes that add up to
/// the file's rows. The worker checked the file row by row before recording it.
fn check_clusters_match_assignments(completed: &ClusteringJobCompleted) -> Result<(), Rejection> {
    let ClusterAssignments::InFile(file) = &completed.assignments else {
        return Err(Rejection::Invalid(
            "a clustering completion records its assignments file, not the assignments".into(),
        ));
    };
    let mut labels = std::collections::BTreeSet::new();
    for cluster in &completed.clusters {
        if !labels.insert(cluster.label) {
            return Err(Rejection::Invalid(format!("cluster label {} appears twice", cluster.label)));
        }
    }
    let sized: u64 = completed.clusters.iter().map(|cluster| cluster.size).sum();
    if sized != file.row_count {
        return Err(Rejection::Invalid(format!(
            "the clusters hold {sized} rows but the assignments file has {}",
            file.row_count
        )));
    }
    Ok(())
}

/// Every assigned label has exactly one cluster whose size is its number of assignments, so
/// the projections can always resolve an assignment to its cluster.
pub fn check_assignments_match_clusters(
    clusters: &[ClusterRecord],
    assignments: &[ClusterAssignmentRecord],
) -> Result<(), String> {
    let mut counts = std::collections::BTreeMap::<i64, u64>::new();
    for assignment in assignments {
        *counts.entry(assignment.label).or_default() += 1;
    }
    let mut labels = std::collections::BTreeSet::new();
    for cluster in clusters {
        if !labels.insert(cluster.label) {
            return Err(format!("cluster label {} appears twice", cluster.label));
        }
        let assigned = counts.remove(&cluster.label).unwrap_or(0);
        if assigned != cluster.size {
            return Err(format!(
                "cluster label {} has size {} but {assigned} assignments",
                cluster.label, cluster.size
            ));
        }
    }
    if let Some((label, count)) = counts.into_iter().next() {
        return Err(format!("{count} rows are assigned to label {label}, which has no cluster"));
    }
    Ok(())
}

fn running_processing_attempt(
    state: &DomainState,
    job_id: ProcessingJobId,
    attempt: u32,
) -> Result<&super::state::ProcessingJobState, Rejection> {
    let job = state.processing_jobs.get(&job_id).ok_or(Rejection::ProcessingJobNotFound(job_id))?;
    if job.status != JobStatus::Running || job.attempt != attempt {
        return Err(Rejection::NotRunningAttempt {
            job: format!("processing job {job_id}"),
            status: job.status,
            attempt,
        });
    }
    Ok(job)
}

/// A classifier can only be trained on labels some annotation carries and a model version some
/// embedding set has.
fn queue_classifier_training(
    state: &DomainState,
    labels: Vec<String>,
    model_version: String,
    request: JsonText,
) -> Result<Vec<Event>, Rejection> {
    if labels.is_empty() {
        return Err(Rejection::Invalid("labels: give at least one label".into()));
    }
    if !state.embedding_sets.values().any(|set| set.model_version == model_version) {
        return Err(Rejection::Invalid(format!("model_version: no embedding set has model version {model_version:?}")));
    }
    if let Some(unknown) =
        labels.iter().find(|label| !state.annotations.values().any(|annotation| &annotation.label == *label))
    {
        return Err(Rejection::Invalid(format!("labels: no annotation has the label {unknown:?}")));
    }
    Ok(vec![Event::ClassifierTrainingQueued(ClassifierTrainingQueued {
        classifier_id: state.next_classifier_id(),
        labels,
        model_version,
        request,
    })])
}

/// A detection job needs a trained classifier and sets of its model version.
fn queue_detection_job(
    state: &DomainState,
    classifier_id: ClassifierId,
    embedding_set_ids: Vec<EmbeddingSetId>,
    threshold: Option<f64>,
    scope: JsonText,
) -> Result<Vec<Event>, Rejection> {
    let classifier = state.classifiers.get(&classifier_id).ok_or(Rejection::ClassifierNotFound(classifier_id))?;
    let (Some((_, version)), Some(trained_threshold)) = (&classifier.artifact, classifier.threshold) else {
        return Err(Rejection::Invalid(format!(
            "classifier_id: classifier {classifier_id} is {}, not trained",
            classifier.status
        )));
    };
    if embedding_set_ids.is_empty() {
        return Err(Rejection::NoEmbeddingSets);
    }
    let mut offending = Vec::new();
    for id in &embedding_set_ids {
        let set = state.embedding_sets.get(id).ok_or(Rejection::EmbeddingSetNotFound(*id))?;
        if set.model_version != classifier.model_version {
            offending.push(*id);
        }
    }
    if !offending.is_empty() {
        return Err(Rejection::Invalid(format!(
            "embedding sets {offending:?} are not of model version {:?}, which the classifier was trained on",
            classifier.model_version
        )));
    }
    let threshold = threshold.unwrap_or(trained_threshold);
    if !(0.0..=1.0).contains(&threshold) {
        return Err(Rejection::Invalid(format!("threshold: must be between 0 and 1, not {threshold}")));
    }
    Ok(vec![Event::DetectionJobQueued(DetectionJobQueued {
        job_id: state.next_detection_job_id(),
        classifier_id,
        classifier_version: version.clone(),
        embedding_set_ids,
        threshold,
        scope,
    })])
}

fn running_detection_attempt(
    state: &DomainState,
    job_id: DetectionJobId,
    attempt: u32,
) -> Result<&super::state::DetectionJobState, Rejection> {
    let job = state.detection_jobs.get(&job_id).ok_or(Rejection::DetectionJobNotFound(job_id))?;
    if job.status != JobStatus::Running || job.attempt != attempt {
        return Err(Rejection::NotRunningAttempt {
            job: format!("detection job {job_id}"),
            status: job.status,
            attempt,
        });
    }
    Ok(job)
}

fn running_training_attempt(
    state: &DomainState,
    classifier_id: ClassifierId,
    attempt: u32,
) -> Result<&super::state::ClassifierState, Rejection> {
    let classifier = state.classifiers.get(&classifier_id).ok_or(Rejection::ClassifierNotFound(classifier_id))?;
    if classifier.status != JobStatus::Running || classifier.attempt != attempt {
        return Err(Rejection::NotRunningAttempt {
            job: format!("classifier {classifier_id}"),
            status: classifier.status,
            attempt,
        });
    }
    Ok(classifier)
}

fn running_clustering_attempt(
    state: &DomainState,
    job_id: ClusteringJobId,
    attempt: u32,
) -> Result<&super::state::ClusteringJobState, Rejection> {
    let job = state.clustering_jobs.get(&job_id).ok_or(Rejection::ClusteringJobNotFound(job_id))?;
    if job.status != JobStatus::Running || job.attempt != attempt {
        return Err(Rejection::NotRunningAttempt {
            job: format!("clustering job {job_id}"),
            status: job.status,
            attempt,
        });
    }
    Ok(job)
}

/// Cancelling a job of any kind: a queued job is canceled at once, a running one is asked to
/// stop (once: asking again records nothing), any other is refused.
fn cancel_job(
    job: impl FnOnce() -> String,
    status: JobStatus,
    cancel_requested: bool,
    canceled: Event,
    cancel_requested_event: Event,
) -> Result<Vec<Event>, Rejection> {
    match status {
        JobStatus::Queued => Ok(vec![canceled]),
        JobStatus::Running if cancel_requested => Ok(vec![]),
        JobStatus::Running => Ok(vec![cancel_requested_event]),
        status => Err(Rejection::NotCancelable { job: job(), status }),
    }
}

/// An abandoned attempt of any kind of job; one whose cancel was requested ends canceled.
fn abandon_job(cancel_requested: bool, abandoned: Event, canceled: Event) -> Vec<Event> {
    if cancel_requested {
        vec![abandoned, canceled]
    } else {
        vec![abandoned]
    }
}

/// Only a failed or canceled job of any kind may be queued again.
fn ensure_retryable(job: impl FnOnce() -> String, status: JobStatus) -> Result<(), Rejection> {
    if matches!(status, JobStatus::Failed | JobStatus::Canceled) {
        Ok(())
    } else {
        Err(Rejection::NotRetryable { job: job(), status })
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
