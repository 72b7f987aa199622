//! Classifiers (detectors): queue a training, list them side by side, show one, cancel, retry.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::audio_api::parse_id;
use super::clustering_api::PageParameters;
use super::{blocking, ApiError, ApiState};
use crate::classifier::request::TrainClassifierRequest;
use crate::domain::decide::Command;
use crate::domain::events::Event;
use crate::domain::ids::ClassifierId;
use crate::domain::json_text::JsonText;
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
    let stored = serde_json::to_value(&request).map_err(|error| ApiError::internal(error.into()))?;
    let envelopes = state
        .humpback
        .execute(Command::QueueClassifierTraining {
            labels: request.labels.clone(),
            model_version: request.model_version.clone(),
            request: JsonText::from_value(&stored),
        })
        .await?;
    let classifier_id = envelopes
        .iter()
        .find_map(|envelope| match &envelope.event {
            Event::ClassifierTrainingQueued(queued) => Some(queued.classifier_id),
            _ => None,
        })
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("queueing recorded no classifier")))?;
    let classifier = blocking(move || load_classifier(&state, classifier_id.0)).await?;
    Ok((StatusCode::CREATED, Json(classifier)).into_response())
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
