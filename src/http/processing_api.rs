//! Processing jobs: queue (encode once per signature), list, show, cancel, retry; the models
//! they can use; the embedding sets they produce.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::params::parse_id;
use super::{blocking, ApiError, ApiState};
use crate::domain::decide::{Command, Rejection};
use crate::domain::events::Event;
use crate::domain::ids::{AudioFileId, ProcessingJobId};
use crate::folders::clean_folder;
use crate::processing::config::{resolve, EncodingRequest};
use crate::projections::queries::{self, EmbeddingSetRow, Page, ProcessingJobRow};
use crate::writer::WriterError;

#[derive(Debug, Deserialize)]
pub struct QueueRequest {
    #[serde(default)]
    pub audio_file_id: Option<u64>,
    #[serde(default)]
    pub audio_file_ids: Option<Vec<u64>>,
    /// Every file in this folder and below it.
    #[serde(default)]
    pub folder: Option<String>,
    #[serde(flatten)]
    pub encoding: EncodingRequest,
}

const QUEUE_FIELDS: &[&str] = &[
    "audio_file_id",
    "audio_file_ids",
    "folder",
    "model",
    "window_seconds",
    "hop_seconds",
    "target_sample_rate",
    "feature_config",
];

/// A job as the API shows it.
#[derive(Debug, Serialize)]
pub struct JobJson {
    #[serde(flatten)]
    pub job: ProcessingJobRow,
    /// True when the request found the file already encoded with this configuration.
    pub skipped: bool,
    /// Windows done out of total, 0 to 1, when known.
    pub progress: Option<f64>,
    /// What to know about the model before trusting the result (e.g. its sample rate is assumed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_warning: Option<String>,
}

impl JobJson {
    fn new(job: ProcessingJobRow, skipped: bool) -> JobJson {
        let progress = match (job.status.as_str(), job.windows_done, job.windows_total) {
            ("complete", _, _) => Some(1.0),
            (_, Some(done), Some(total)) if total > 0 => Some((done as f64 / total as f64).min(1.0)),
            _ => None,
        };
        JobJson { job, skipped, progress, model_warning: None }
    }
}

enum Queued {
    New(ProcessingJobId),
    Existing { job: ProcessingJobId, skipped: bool },
}

fn queue_one(state: &ApiState, audio_file_id: AudioFileId, encoding: &EncodingRequest) -> Result<Queued, ApiError> {
    let humpback = &state.humpback;
    let model_name = encoding.model.clone().unwrap_or_else(|| humpback.models.default_model_name().to_string());
    let model = humpback.models.find_for_new_jobs(&model_name).ok_or_else(|| {
        let known: Vec<String> = humpback.models.models().iter().map(|m| m.info.name.clone()).collect();
        let retired = if humpback.models.is_retired(&model_name) { " (it is retired)" } else { "" };
        ApiError::unprocessable(format!(
            "model: {model_name:?} is not a registered model{retired} (registered: {})",
            known.join(", ")
        ))
    })?;
    let resolved = resolve(encoding, &model.info).map_err(|error| ApiError::unprocessable(error.to_string()))?;
    let checksum = humpback
        .writer
        .read_state(|s| s.audio_files.get(&audio_file_id).map(|file| file.checksum_sha256.clone()))
        .ok_or_else(|| ApiError::not_found(format!("audio file {audio_file_id} does not exist")))?;
    let signature = resolved.signature(&checksum);
    let command = Command::QueueProcessingJob {
        audio_file_id,
        encoding_signature: signature.clone(),
        config: resolved.encoding_config(),
    };
    match humpback.writer.execute(command) {
        Ok(envelopes) => envelopes
            .iter()
            .find_map(|envelope| match &envelope.event {
                Event::ProcessingJobQueued(queued) => Some(Queued::New(queued.job_id)),
                Event::ProcessingJobRetried(retried) => Some(Queued::New(retried.job_id)),
                _ => None,
            })
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("queueing recorded no job"))),
        Err(WriterError::Rejected(Rejection::AlreadyQueued(job))) => Ok(Queued::Existing { job, skipped: false }),
        Err(WriterError::Rejected(Rejection::AlreadyEncoded { .. })) => {
            let job = humpback
                .writer
                .read_state(|s| s.job_for_signature(&signature))
                .ok_or_else(|| ApiError::internal(anyhow::anyhow!("an encoded signature has no job")))?;
            Ok(Queued::Existing { job, skipped: true })
        }
        Err(error) => Err(error.into()),
    }
}

fn load_job(state: &ApiState, id: u64) -> Result<ProcessingJobRow, ApiError> {
    state
        .humpback
        .reader
        .with_connection(|c| queries::processing_job(c, id))?
        .ok_or_else(|| ApiError::not_found(format!("processing job {id} does not exist")))
}

/// `POST /api/processing-jobs`: one file (`audio_file_id`), several (`audio_file_ids`) or a
/// folder (`folder`), with optional `model`, `window_seconds`, `hop_seconds`,
/// `target_sample_rate` and `feature_config`. One file answers with the job; several with a list.
pub async fn queue(
    State(state): State<ApiState>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|rejection| ApiError::unprocessable(rejection.body_text()))?;
    let serde_json::Value::Object(fields) = &body else {
        return Err(ApiError::unprocessable("the body must be a JSON object"));
    };
    for key in fields.keys() {
        if !QUEUE_FIELDS.contains(&key.as_str()) {
            return Err(ApiError::unprocessable(format!(
                "{key}: unknown parameter (parameters: {})",
                QUEUE_FIELDS.join(", ")
            )));
        }
    }
    for (key, what) in [
        ("window_seconds", "a number of seconds"),
        ("hop_seconds", "a number of seconds"),
        ("target_sample_rate", "a whole number of hertz"),
    ] {
        if let Some(value) = fields.get(key) {
            if !value.is_number() && !value.is_null() {
                return Err(ApiError::unprocessable(format!("{key}: must be {what}, not {value}")));
            }
        }
    }
    let request: QueueRequest =
        serde_json::from_value(body).map_err(|error| ApiError::unprocessable(error.to_string()))?;
    let single = request.audio_file_id.is_some();
    let (jobs, any_new) = queue_jobs(&state, request).await?;
    let status = if any_new { StatusCode::CREATED } else { StatusCode::OK };
    if single {
        let job = jobs.into_iter().next().ok_or_else(|| ApiError::internal(anyhow::anyhow!("no job")))?;
        Ok((status, Json(job)).into_response())
    } else {
        Ok((status, Json(jobs)).into_response())
    }
}

/// Queues one job per selected file (or finds the one that exists): the jobs, and whether any
/// was new. Shared by the JSON API and the web form.
pub async fn queue_jobs(state: &ApiState, request: QueueRequest) -> Result<(Vec<JobJson>, bool), ApiError> {
    let state = state.clone();
    let chosen = [request.audio_file_id.is_some(), request.audio_file_ids.is_some(), request.folder.is_some()];
    if chosen.iter().filter(|chosen| **chosen).count() != 1 {
        return Err(ApiError::unprocessable("give exactly one of audio_file_id, audio_file_ids (a list) or folder"));
    }
    let ids: Vec<AudioFileId> = if let Some(id) = request.audio_file_id {
        vec![AudioFileId(id)]
    } else if let Some(ids) = &request.audio_file_ids {
        if ids.is_empty() {
            return Err(ApiError::unprocessable("audio_file_ids: the list is empty"));
        }
        ids.iter().copied().map(AudioFileId).collect()
    } else {
        let folder = clean_folder(request.folder.as_deref().unwrap_or(""));
        let prefix = format!("{folder}/");
        let ids: Vec<AudioFileId> = state.humpback.writer.read_state(|s| {
            s.audio_files
                .iter()
                .filter(|(_, file)| folder.is_empty() || file.folder == folder || file.folder.starts_with(&prefix))
                .map(|(id, _)| *id)
                .collect()
        });
        if ids.is_empty() {
            return Err(ApiError::not_found(format!("no audio files in folder {folder:?}")));
        }
        ids
    };
    let encoding = request.encoding.clone();
    let model_name = encoding.model.clone().unwrap_or_else(|| state.humpback.models.default_model_name().to_string());
    let warning = state.humpback.models.find(&model_name).and_then(|model| {
        (model.info.facts.sample_rate == crate::model::FactSource::Assumed)
            .then(|| format!("model {model_name}: {}", model.info.warnings.join("; ")))
    });
    let worker_state = state.clone();
    let outcomes =
        blocking(move || ids.iter().map(|id| queue_one(&worker_state, *id, &encoding)).collect::<Result<Vec<_>, _>>())
            .await?;
    state.humpback.wait_until_projected(state.humpback.log_head()).await;
    let any_new = outcomes.iter().any(|outcome| matches!(outcome, Queued::New(_)));
    let reader_state = state.clone();
    let jobs = blocking(move || {
        outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Queued::New(job) => load_job(&reader_state, job.0).map(|row| JobJson::new(row, false)),
                Queued::Existing { job, skipped } => {
                    load_job(&reader_state, job.0).map(|row| JobJson::new(row, skipped))
                }
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    let jobs = jobs.into_iter().map(|job| JobJson { model_warning: warning.clone(), ..job }).collect();
    Ok((jobs, any_new))
}

#[derive(Debug, Deserialize, Default)]
pub struct JobListParameters {
    pub status: Option<String>,
    pub audio_file_id: Option<u64>,
    pub offset: Option<u64>,
    pub limit: Option<u64>,
}

pub async fn list(
    State(state): State<ApiState>,
    parameters: Result<Query<JobListParameters>, QueryRejection>,
) -> Result<Json<Page<JobJson>>, ApiError> {
    let Query(parameters) = parameters.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    if let Some(status) = parameters.status.as_deref() {
        if !["queued", "running", "complete", "failed", "canceled"].contains(&status) {
            return Err(ApiError::bad_request(format!(
                "status {status:?} is not one of queued, running, complete, failed, canceled"
            )));
        }
    }
    let humpback = state.humpback.clone();
    blocking(move || {
        let page = humpback.reader.with_connection(|c| {
            queries::processing_jobs(
                c,
                parameters.audio_file_id,
                parameters.status.as_deref(),
                parameters.offset.unwrap_or(0),
                parameters.limit.unwrap_or(50).clamp(1, 500),
            )
        })?;
        Ok(Json(Page {
            items: page.items.into_iter().map(|job| JobJson::new(job, false)).collect(),
            total: page.total,
            offset: page.offset,
            limit: page.limit,
        }))
    })
    .await
}

pub async fn show(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<JobJson>, ApiError> {
    let id = parse_id(&id, "processing job")?;
    blocking(move || load_job(&state, id).map(|job| Json(JobJson::new(job, false)))).await
}

async fn act(
    state: ApiState,
    id: String,
    command: impl FnOnce(ProcessingJobId) -> Command,
) -> Result<Json<JobJson>, ApiError> {
    let id = parse_id(&id, "processing job")?;
    state.humpback.execute(command(ProcessingJobId(id))).await?;
    blocking(move || load_job(&state, id).map(|job| Json(JobJson::new(job, false)))).await
}

/// Cancels a queued job at once; a running one stops within one batch.
pub async fn cancel(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<JobJson>, ApiError> {
    act(state, id, |job_id| Command::CancelProcessingJob { job_id }).await
}

/// Queues a failed or canceled job again (a new attempt).
pub async fn retry(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<JobJson>, ApiError> {
    act(state, id, |job_id| Command::RetryProcessingJob { job_id }).await
}

pub async fn models(State(state): State<ApiState>) -> Json<crate::model::ModelListing> {
    Json(state.humpback.models.listing())
}

#[derive(Debug, Deserialize, Default)]
pub struct SetListParameters {
    pub audio_file_id: Option<u64>,
    pub model_version: Option<String>,
}

pub async fn embedding_sets(
    State(state): State<ApiState>,
    parameters: Result<Query<SetListParameters>, QueryRejection>,
) -> Result<Json<Vec<EmbeddingSetRow>>, ApiError> {
    let Query(parameters) = parameters.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let humpback = state.humpback.clone();
    blocking(move || {
        Ok(Json(humpback.reader.with_connection(|c| {
            queries::embedding_sets(c, parameters.audio_file_id, parameters.model_version.as_deref())
        })?))
    })
    .await
}

pub async fn embedding_set(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<EmbeddingSetRow>, ApiError> {
    let id = parse_id(&id, "embedding set")?;
    let humpback = state.humpback.clone();
    blocking(move || {
        humpback
            .reader
            .with_connection(|c| queries::embedding_set(c, id))?
            .map(Json)
            .ok_or_else(|| ApiError::not_found(format!("embedding set {id} does not exist")))
    })
    .await
}
