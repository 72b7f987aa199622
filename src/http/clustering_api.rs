//! Clustering jobs: queue, list, show, cancel, retry; clusters, members and exports.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::audio_api::parse_id;
use super::{blocking, ApiError, ApiState};
use crate::clustering_jobs::outputs::{read_assignments, AssignmentRow};
use crate::clustering_jobs::request::{parse_request, RequestError};
use crate::domain::decide::Command;
use crate::domain::events::Event;
use crate::domain::ids::ClusteringJobId;
use crate::projections::queries::{self, ClusterRow, ClusteringJobRow, Page};

fn load_job(state: &ApiState, id: u64) -> Result<ClusteringJobRow, ApiError> {
    state
        .humpback
        .reader
        .with_connection(|c| queries::clustering_job(c, id))?
        .ok_or_else(|| ApiError::not_found(format!("clustering job {id} does not exist")))
}

/// `POST /api/clustering-jobs`: `{"embedding_set_ids": [..], ...parameters}`.
pub async fn queue(
    State(state): State<ApiState>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|rejection| ApiError::unprocessable(rejection.body_text()))?;
    let request = state.humpback.writer.read_state(|s| parse_request(&body, s)).map_err(|error| match error {
        RequestError::Invalid(message) => ApiError::unprocessable(message),
        RequestError::NothingSelected(message) => ApiError::not_found(message),
    })?;
    let envelopes = state
        .humpback
        .execute(Command::QueueClusteringJob {
            embedding_set_ids: request.embedding_set_ids,
            parameters: request.stored.to_json_text(),
        })
        .await?;
    let job_id = envelopes
        .iter()
        .find_map(|envelope| match &envelope.event {
            Event::ClusteringJobQueued(queued) => Some(queued.job_id),
            _ => None,
        })
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("queueing recorded no clustering job")))?;
    let job = blocking(move || load_job(&state, job_id.0)).await?;
    Ok((StatusCode::CREATED, Json(job)).into_response())
}

#[derive(Debug, Deserialize, Default)]
pub struct PageParameters {
    pub offset: Option<u64>,
    pub limit: Option<u64>,
}

pub async fn list(
    State(state): State<ApiState>,
    parameters: Result<Query<PageParameters>, QueryRejection>,
) -> Result<Json<Page<ClusteringJobRow>>, ApiError> {
    let Query(parameters) = parameters.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let humpback = state.humpback.clone();
    blocking(move || {
        Ok(Json(humpback.reader.with_connection(|c| {
            queries::clustering_jobs(c, parameters.offset.unwrap_or(0), parameters.limit.unwrap_or(50).clamp(1, 500))
        })?))
    })
    .await
}

pub async fn show(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<ClusteringJobRow>, ApiError> {
    let id = parse_id(&id, "clustering job")?;
    blocking(move || load_job(&state, id).map(Json)).await
}

async fn act(
    state: ApiState,
    id: String,
    command: impl FnOnce(ClusteringJobId) -> Command,
) -> Result<Json<ClusteringJobRow>, ApiError> {
    let id = parse_id(&id, "clustering job")?;
    state.humpback.execute(command(ClusteringJobId(id))).await?;
    blocking(move || load_job(&state, id).map(Json)).await
}

pub async fn cancel(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<ClusteringJobRow>, ApiError> {
    act(state, id, |job_id| Command::CancelClusteringJob { job_id }).await
}

pub async fn retry(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<ClusteringJobRow>, ApiError> {
    act(state, id, |job_id| Command::RetryClusteringJob { job_id }).await
}

/// The clusters of a job, each with `label` (-1 for noise), `size` and its metadata summary.
pub async fn clusters(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<ClusterRow>>, ApiError> {
    let id = parse_id(&id, "clustering job")?;
    blocking(move || {
        let job = load_job(&state, id)?;
        if job.status != "complete" {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("clustering job {id} is {}, it has no clusters yet", job.status),
            ));
        }
        Ok(Json(state.humpback.reader.with_connection(|c| queries::clusters(c, id))?))
    })
    .await
}

#[derive(Debug, Serialize)]
pub struct MemberJson {
    #[serde(flatten)]
    pub assignment: AssignmentRow,
    pub audio_file_id: Option<u64>,
    /// The window's absolute start (ISO 8601 UTC), where its recording's start is known.
    pub start_time_utc: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MembersPage {
    pub cluster: ClusterRow,
    pub items: Vec<MemberJson>,
    pub total: u64,
    pub offset: u64,
    pub limit: u64,
}

fn members_page(state: &ApiState, cluster: ClusterRow, offset: u64, limit: u64) -> Result<MembersPage, ApiError> {
    let job = load_job(state, cluster.clustering_job_id)?;
    let path =
        job.assignments_path.ok_or_else(|| ApiError::internal(anyhow::anyhow!("a complete job has no assignments")))?;
    let label = cluster.label;
    let all = read_assignments(&state.humpback.storage.readable_path(&path)?, |row| row.cluster_label == label)
        .map_err(|error| ApiError::internal(error.into()))?;
    let total = all.len() as u64;
    let items = all
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|assignment| {
            let set_id = crate::domain::ids::EmbeddingSetId(assignment.embedding_set_id);
            let (audio_file_id, recorded_at) = state.humpback.writer.read_state(|s| {
                (s.embedding_sets.get(&set_id).map(|set| set.audio_file_id.0), s.embedding_set_recorded_at(set_id))
            });
            let start_time_utc = crate::recording_time::window_start_iso8601(recorded_at, assignment.start_seconds);
            MemberJson { assignment, audio_file_id, start_time_utc }
        })
        .collect();
    Ok(MembersPage { cluster, items, total, offset, limit })
}

/// `GET /api/clustering-jobs/{id}/clusters/{label}/members` (label -1: noise), paged.
pub async fn members_by_label(
    State(state): State<ApiState>,
    Path((id, label)): Path<(String, String)>,
    parameters: Result<Query<PageParameters>, QueryRejection>,
) -> Result<Json<MembersPage>, ApiError> {
    let Query(parameters) = parameters.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let id = parse_id(&id, "clustering job")?;
    let label: i64 =
        label.parse().map_err(|_| ApiError::bad_request(format!("cluster label {label:?} is not a whole number")))?;
    blocking(move || {
        let cluster = state
            .humpback
            .reader
            .with_connection(|c| queries::clusters(c, id))?
            .into_iter()
            .find(|cluster| cluster.label == label)
            .ok_or_else(|| ApiError::not_found(format!("clustering job {id} has no cluster labelled {label}")))?;
        members_page(&state, cluster, parameters.offset.unwrap_or(0), parameters.limit.unwrap_or(100).clamp(1, 1000))
            .map(Json)
    })
    .await
}

/// `GET /api/clusters/{cluster_id}/members`, paged.
pub async fn members(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    parameters: Result<Query<PageParameters>, QueryRejection>,
) -> Result<Json<MembersPage>, ApiError> {
    let Query(parameters) = parameters.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let id = parse_id(&id, "cluster")?;
    blocking(move || {
        let cluster = state
            .humpback
            .reader
            .with_connection(|c| queries::cluster(c, id))?
            .ok_or_else(|| ApiError::not_found(format!("cluster {id} does not exist")))?;
        members_page(&state, cluster, parameters.offset.unwrap_or(0), parameters.limit.unwrap_or(100).clamp(1, 1000))
            .map(Json)
    })
    .await
}

/// Every assignment as CSV (for spreadsheets and R).
pub async fn assignments_csv(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id(&id, "clustering job")?;
    let csv = blocking(move || {
        let job = load_job(&state, id)?;
        let path = job.assignments_path.ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                format!("clustering job {id} is {}, it has no assignments yet", job.status),
            )
        })?;
        let rows = read_assignments(&state.humpback.storage.readable_path(&path)?, |_| true)
            .map_err(|error| ApiError::internal(error.into()))?;
        let mut csv = String::from(
            "embedding_set_id,audio_file_id,row_index,start_seconds,end_seconds,cluster_label,probability,x,y,\
             start_time_utc\n",
        );
        state.humpback.writer.read_state(|s| {
            for row in &rows {
                let set_id = crate::domain::ids::EmbeddingSetId(row.embedding_set_id);
                let audio =
                    s.embedding_sets.get(&set_id).map(|set| set.audio_file_id.0.to_string()).unwrap_or_default();
                let start_time_utc =
                    crate::recording_time::window_start_iso8601(s.embedding_set_recorded_at(set_id), row.start_seconds)
                        .unwrap_or_default();
                let coordinate = |value: Option<f32>| value.map(|v| v.to_string()).unwrap_or_default();
                csv.push_str(&format!(
                    "{},{audio},{},{},{},{},{},{},{},{start_time_utc}\n",
                    row.embedding_set_id,
                    row.row_index,
                    row.start_seconds,
                    row.end_seconds,
                    row.cluster_label,
                    row.probability,
                    coordinate(row.x),
                    coordinate(row.y)
                ));
            }
        });
        Ok(csv)
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"clustering-{id}-assignments.csv\"")),
        ],
        csv,
    )
        .into_response())
}

/// The job's `clusters.json`.
pub async fn clusters_json(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id(&id, "clustering job")?;
    let bytes = blocking(move || {
        let job = load_job(&state, id)?;
        let path = job.clusters_json_path.ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                format!("clustering job {id} is {}, it has no clusters yet", job.status),
            )
        })?;
        std::fs::read(state.humpback.storage.readable_path(&path)?).map_err(|error| ApiError::internal(error.into()))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}
