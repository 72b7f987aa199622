//! Detection jobs: run a classifier over a scope, follow it, page its detections.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::audio_api::parse_id;
use super::{blocking, ApiError, ApiState};
use crate::domain::decide::Command;
use crate::domain::events::Event;
use crate::domain::ids::{ClassifierId, DetectionJobId, EmbeddingSetId};
use crate::domain::json_text::JsonText;
use crate::domain::state::DomainState;
use crate::projections::queries::{self, DetectionJobRow, DetectionRow, Page};

/// `POST /api/detection-jobs`. The scope is one of `embedding_set_ids`, `folder` (the sets of
/// recordings in that folder or below it) or `model_version`; none means every set of the
/// classifier's model version. A folder or model version selects only sets of the classifier's
/// model version.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionRequest {
    pub classifier_id: u64,
    #[serde(default)]
    pub embedding_set_ids: Option<Vec<u64>>,
    #[serde(default)]
    pub folder: Option<String>,
    #[serde(default)]
    pub model_version: Option<String>,
    #[serde(default)]
    pub threshold: Option<f64>,
}

/// The sets a request's scope names (pure; `decide` checks they exist and fit the classifier).
pub fn resolve_scope(state: &DomainState, request: &DetectionRequest) -> Result<Vec<EmbeddingSetId>, String> {
    let given = [request.embedding_set_ids.is_some(), request.folder.is_some(), request.model_version.is_some()];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err("give one scope: embedding_set_ids, folder or model_version".into());
    }
    if let Some(ids) = &request.embedding_set_ids {
        return Ok(ids.iter().map(|id| EmbeddingSetId(*id)).collect());
    }
    let classifier = state
        .classifiers
        .get(&ClassifierId(request.classifier_id))
        .ok_or_else(|| format!("classifier_id: classifier {} does not exist", request.classifier_id))?;
    let model_version = request.model_version.as_deref().unwrap_or(&classifier.model_version);
    let folder = request.folder.as_deref().map(|folder| folder.trim_end_matches('/'));
    let in_folder = |audio| {
        folder.is_none_or(|folder| {
            state.audio_files.get(&audio).is_some_and(|file: &crate::domain::state::AudioFileState| {
                file.folder == folder || file.folder.starts_with(&format!("{folder}/"))
            })
        })
    };
    let sets: Vec<EmbeddingSetId> = state
        .embedding_sets
        .iter()
        .filter(|(_, set)| set.model_version == model_version && in_folder(set.audio_file_id))
        .map(|(id, _)| *id)
        .collect();
    Ok(sets)
}

fn load_job(state: &ApiState, id: u64) -> Result<DetectionJobRow, ApiError> {
    state
        .humpback
        .reader
        .with_connection(|c| queries::detection_job(c, id))?
        .ok_or_else(|| ApiError::not_found(format!("detection job {id} does not exist")))
}

pub async fn queue(
    State(state): State<ApiState>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|rejection| ApiError::unprocessable(rejection.body_text()))?;
    let request: DetectionRequest =
        serde_json::from_value(body.clone()).map_err(|error| ApiError::unprocessable(error.to_string()))?;
    let job_id = queue_detection(&state, &request, &body).await?;
    let job = blocking(move || load_job(&state, job_id.0)).await?;
    Ok((StatusCode::CREATED, Json(job)).into_response())
}

/// Queues a detection job for a parsed request (`body` is recorded as its scope); its id.
pub async fn queue_detection(
    state: &ApiState,
    request: &DetectionRequest,
    body: &serde_json::Value,
) -> Result<DetectionJobId, ApiError> {
    let sets = state.humpback.writer.read_state(|s| resolve_scope(s, request)).map_err(ApiError::unprocessable)?;
    let envelopes = state
        .humpback
        .execute(Command::QueueDetectionJob {
            classifier_id: ClassifierId(request.classifier_id),
            embedding_set_ids: sets,
            threshold: request.threshold,
            scope: JsonText::from_value(body),
        })
        .await?;
    envelopes
        .iter()
        .find_map(|envelope| match &envelope.event {
            Event::DetectionJobQueued(queued) => Some(queued.job_id),
            _ => None,
        })
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("queueing recorded no detection job")))
}

pub async fn show(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<DetectionJobRow>, ApiError> {
    let id = parse_id(&id, "detection job")?;
    blocking(move || load_job(&state, id).map(Json)).await
}

#[derive(Debug, Deserialize, Default)]
pub struct DetectionPage {
    pub offset: Option<u64>,
    pub limit: Option<u64>,
    pub audio_file_id: Option<u64>,
}

/// `GET /api/detection-jobs/{id}/detections`: highest score first, `offset`, `limit` (100, at
/// most 1000), `audio_file_id`.
pub async fn detections(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    parameters: Result<Query<DetectionPage>, QueryRejection>,
) -> Result<Json<Page<DetectionRow>>, ApiError> {
    let id = parse_id(&id, "detection job")?;
    let Query(parameters) = parameters.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    blocking(move || {
        load_job(&state, id)?;
        Ok(Json(state.humpback.reader.with_connection(|c| {
            queries::detections(
                c,
                id,
                parameters.audio_file_id,
                parameters.offset.unwrap_or(0),
                parameters.limit.unwrap_or(100).clamp(1, 1000),
            )
        })?))
    })
    .await
}

async fn act(
    state: ApiState,
    id: String,
    command: impl FnOnce(DetectionJobId) -> Command,
) -> Result<Json<DetectionJobRow>, ApiError> {
    let id = parse_id(&id, "detection job")?;
    state.humpback.execute(command(DetectionJobId(id))).await?;
    blocking(move || load_job(&state, id).map(Json)).await
}

pub async fn cancel(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<DetectionJobRow>, ApiError> {
    act(state, id, |job_id| Command::CancelDetectionJob { job_id }).await
}

pub async fn retry(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<DetectionJobRow>, ApiError> {
    act(state, id, |job_id| Command::RetryDetectionJob { job_id }).await
}

#[derive(Debug, Deserialize, Default)]
pub struct DetectionExport {
    pub audio_file_id: Option<u64>,
}

/// A job's detections as a selection table: label as `Annotation`, the best window's probability
/// as `Score`; multi-file (`Begin File`, `File Offset (s)`) unless one recording is asked for.
async fn detection_table(
    state: ApiState,
    id: String,
    parameters: Result<Query<DetectionExport>, QueryRejection>,
    format: crate::catalogue::raven::TableFormat,
) -> Result<Response, ApiError> {
    use crate::catalogue::raven::{write_selection_table, Selection, TableColumns};
    let id = parse_id(&id, "detection job")?;
    let Query(parameters) = parameters.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let text = blocking(move || {
        load_job(&state, id)?;
        let page = state
            .humpback
            .reader
            .with_connection(|c| queries::detections(c, id, parameters.audio_file_id, 0, u64::MAX >> 1))?;
        let mut rows = page.items;
        rows.sort_by(|a, b| a.audio_file_id.cmp(&b.audio_file_id).then(a.start_seconds.total_cmp(&b.start_seconds)));
        let selections: Vec<Selection> = state.humpback.writer.read_state(|s| {
            rows.iter()
                .filter_map(|row| {
                    let (file, nyquist) =
                        super::selections_api::selection_file(s, crate::domain::ids::AudioFileId(row.audio_file_id))?;
                    let end_seconds = row.end_seconds.min(file.duration_seconds.max(row.start_seconds));
                    Some(Selection {
                        file,
                        start_seconds: row.start_seconds,
                        end_seconds,
                        low_hz: 0.0,
                        high_hz: nyquist,
                        annotation: Some(row.label.clone()),
                        kind: None,
                        cluster: None,
                        score: Some(row.max_score),
                    })
                })
                .collect()
        });
        let columns = TableColumns {
            multi_file: parameters.audio_file_id.is_none(),
            annotation: true,
            kind: false,
            cluster: false,
            score: true,
        };
        Ok(write_selection_table(&selections, columns, format))
    })
    .await?;
    Ok(super::selections_api::table_response(text, format, &format!("detection-job-{id}")))
}

/// `GET /api/detection-jobs/{id}/selections.txt` (Raven), `?audio_file_id=` for one recording.
pub async fn selections_raven(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    parameters: Result<Query<DetectionExport>, QueryRejection>,
) -> Result<Response, ApiError> {
    detection_table(state, id, parameters, crate::catalogue::raven::TableFormat::Raven).await
}

/// `GET /api/detection-jobs/{id}/selections.csv`.
pub async fn selections_csv(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    parameters: Result<Query<DetectionExport>, QueryRejection>,
) -> Result<Response, ApiError> {
    detection_table(state, id, parameters, crate::catalogue::raven::TableFormat::Csv).await
}
