//! Classifiers (detectors): queue a training, list them side by side, show one, cancel, retry.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::audio_api::parse_id;
use super::clustering_api::PageParameters;
use super::{blocking, ApiError, ApiState};
use crate::classifier::detection_worker::scores_path;
use crate::classifier::label_next::{label_next, LabelNextReason};
use crate::classifier::request::TrainClassifierRequest;
use crate::classifier::scores_parquet::read_scores;
use crate::domain::decide::Command;
use crate::domain::events::Event;
use crate::domain::ids::ClassifierId;
use crate::domain::json_text::JsonText;
use crate::domain::state::JobStatus;
use crate::projections::queries::{self, ClassifierRow, Page};

fn load_classifier(state: &ApiState, id: u64) -> Result<ClassifierRow, ApiError> {
    state
        .humpback
        .reader
        .with_connection(|c| queries::classifier(c, id))?
        .ok_or_else(|| ApiError::not_found(format!("classifier {id} does not exist")))
}

/// `POST /api/classifiers`: a `TrainClassifierRequest`; answers the queued classifier.
pub async fn queue(
    State(state): State<ApiState>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|rejection| ApiError::unprocessable(rejection.body_text()))?;
    let request: TrainClassifierRequest =
        serde_json::from_value(body).map_err(|error| ApiError::unprocessable(error.to_string()))?;
    request.validate().map_err(|error| ApiError::unprocessable(error.to_string()))?;
    let classifier_id = queue_training(&state, &request).await?;
    let classifier = blocking(move || load_classifier(&state, classifier_id.0)).await?;
    Ok((StatusCode::CREATED, Json(classifier)).into_response())
}

/// Queues a training from a parsed request; the new classifier's id.
pub async fn queue_training(state: &ApiState, request: &TrainClassifierRequest) -> Result<ClassifierId, ApiError> {
    let stored = serde_json::to_value(request).map_err(|error| ApiError::internal(error.into()))?;
    let envelopes = state
        .humpback
        .execute(Command::QueueClassifierTraining {
            labels: request.labels.clone(),
            model_version: request.model_version.clone(),
            request: JsonText::from_value(&stored),
        })
        .await?;
    envelopes
        .iter()
        .find_map(|envelope| match &envelope.event {
            Event::ClassifierTrainingQueued(queued) => Some(queued.classifier_id),
            _ => None,
        })
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("queueing recorded no classifier")))
}

/// The request a classifier was trained with, to train its next version.
pub fn recorded_request(state: &ApiState, id: ClassifierId) -> Result<TrainClassifierRequest, ApiError> {
    let request = state
        .humpback
        .writer
        .read_state(|s| s.classifiers.get(&id).map(|classifier| classifier.request.to_value()))
        .ok_or_else(|| ApiError::not_found(format!("classifier {id} does not exist")))?;
    serde_json::from_value(request).map_err(|error| {
        ApiError::unprocessable(format!("classifier {id}: its recorded request does not parse: {error}"))
    })
}

/// `POST /api/classifiers/{id}/retrain`: queues the next version of a classifier — a new
/// classifier with the same request, trained on the annotations as they are now. 201 with it.
pub async fn retrain(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = ClassifierId(parse_id(&id, "classifier")?);
    let request = recorded_request(&state, id)?;
    let next = queue_training(&state, &request).await?;
    let classifier = blocking(move || load_classifier(&state, next.0)).await?;
    Ok((StatusCode::CREATED, Json(classifier)).into_response())
}

#[derive(Debug, Deserialize, Default)]
pub struct LabelNextParameters {
    pub limit: Option<usize>,
}

/// One window of `GET /api/classifiers/{id}/label-next`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LabelNextItem {
    pub embedding_set_id: u64,
    pub row_index: u64,
    pub audio_file_id: u64,
    pub recording: String,
    pub start_seconds: f64,
    pub end_seconds: f64,
    pub label: String,
    pub score: f64,
    pub reason: LabelNextReason,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LabelNextAnswer {
    pub classifier_id: u64,
    /// The detection job whose scores were read.
    pub detection_job_id: u64,
    pub threshold: f64,
    pub items: Vec<LabelNextItem>,
}

/// Default and largest number of windows offered at once.
pub const LABEL_NEXT_DEFAULT: usize = 24;
pub const LABEL_NEXT_MAX: usize = 200;

/// The windows to label next for a classifier, from the scores of its latest completed detection
/// job (`detections/{job}/scores.parquet`): none scored on the fly, so the answer is as fast as
/// reading that file and names the job it came from. Blocking.
pub fn label_next_windows(state: &ApiState, id: ClassifierId, limit: usize) -> Result<LabelNextAnswer, ApiError> {
    let (job, spans) = state.humpback.writer.read_state(|s| {
        let exists = s.classifiers.contains_key(&id);
        let job = s
            .detection_jobs
            .iter()
            .filter(|(_, job)| job.classifier_id == id && job.status == JobStatus::Complete)
            .map(|(job_id, job)| (*job_id, job.threshold))
            .next_back();
        (exists.then_some(job), crate::clustering_jobs::annotations::spans_by_recording(s))
    });
    let Some(job) = job else { return Err(ApiError::not_found(format!("classifier {id} does not exist"))) };
    let Some((job_id, threshold)) = job else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("classifier {id} has no completed detection job yet: run one (POST /api/detection-jobs) first"),
        ));
    };
    let path = state.humpback.storage.readable_path(&scores_path(job_id))?;
    let table = read_scores(&path, None).map_err(|error| ApiError::internal(error.into()))?;
    let windows = label_next(&table, threshold, &spans, limit);
    let names = state.humpback.writer.read_state(|s| {
        windows
            .iter()
            .map(|w| {
                s.audio_files.get(&w.place.audio_file_id).map(|file| file.original_filename.clone()).unwrap_or_default()
            })
            .collect::<Vec<String>>()
    });
    Ok(LabelNextAnswer {
        classifier_id: id.0,
        detection_job_id: job_id.0,
        threshold,
        items: windows
            .into_iter()
            .zip(names)
            .map(|(window, recording)| LabelNextItem {
                embedding_set_id: window.place.embedding_set_id.0,
                row_index: window.place.row_index,
                audio_file_id: window.place.audio_file_id.0,
                recording,
                start_seconds: window.place.start_seconds,
                end_seconds: window.place.end_seconds,
                label: window.label,
                score: window.score,
                reason: window.reason,
            })
            .collect(),
    })
}

/// `GET /api/classifiers/{id}/label-next?limit=` (24, at most 200).
pub async fn label_next_api(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    parameters: Result<Query<LabelNextParameters>, QueryRejection>,
) -> Result<Json<LabelNextAnswer>, ApiError> {
    let id = ClassifierId(parse_id(&id, "classifier")?);
    let Query(parameters) = parameters.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let limit = parameters.limit.unwrap_or(LABEL_NEXT_DEFAULT);
    if limit == 0 || limit > LABEL_NEXT_MAX {
        return Err(ApiError::bad_request(format!("limit: between 1 and {LABEL_NEXT_MAX}, not {limit}")));
    }
    blocking(move || label_next_windows(&state, id, limit).map(Json)).await
}

pub async fn list(
    State(state): State<ApiState>,
    parameters: Result<Query<PageParameters>, QueryRejection>,
) -> Result<Json<Page<ClassifierRow>>, ApiError> {
    let Query(parameters) = parameters.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let humpback = state.humpback.clone();
    blocking(move || {
        Ok(Json(humpback.reader.with_connection(|c| {
            queries::classifiers(c, parameters.offset.unwrap_or(0), parameters.limit.unwrap_or(50).clamp(1, 500))
        })?))
    })
    .await
}

pub async fn show(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<ClassifierRow>, ApiError> {
    let id = parse_id(&id, "classifier")?;
    blocking(move || load_classifier(&state, id).map(Json)).await
}

async fn act(
    state: ApiState,
    id: String,
    command: impl FnOnce(ClassifierId) -> Command,
) -> Result<Json<ClassifierRow>, ApiError> {
    let id = parse_id(&id, "classifier")?;
    state.humpback.execute(command(ClassifierId(id))).await?;
    blocking(move || load_classifier(&state, id).map(Json)).await
}

pub async fn cancel(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<ClassifierRow>, ApiError> {
    act(state, id, |classifier_id| Command::CancelClassifierTraining { classifier_id }).await
}

pub async fn retry(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<ClassifierRow>, ApiError> {
    act(state, id, |classifier_id| Command::RetryClassifierTraining { classifier_id }).await
}
