//! `GET /api/projections` and `POST /api/projections/rebuild`.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{blocking, ApiError, ApiState};
use crate::log::EventLog;
use crate::projections::runner::RebuildReport;
use crate::projections::ProjectionStatus;

#[derive(Debug, Serialize, Deserialize)]
pub struct ProjectionsJson {
    pub head: u64,
    pub projections: Vec<ProjectionStatus>,
}

pub async fn status(State(state): State<ApiState>) -> Result<Json<ProjectionsJson>, ApiError> {
    let humpback = state.humpback.clone();
    blocking(move || {
        let head = humpback.log.head();
        let projector = humpback.projector.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(Json(ProjectionsJson { head: head.0, projections: projector.status(head)? }))
    })
    .await
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RebuildRequest {
    /// Projections to rebuild; empty or absent means all.
    #[serde(default)]
    pub names: Vec<String>,
}

pub async fn rebuild(
    State(state): State<ApiState>,
    body: Result<Json<RebuildRequest>, JsonRejection>,
) -> Result<Json<RebuildReport>, ApiError> {
    let request = match body {
        Ok(Json(request)) => request,
        Err(JsonRejection::MissingJsonContentType(_)) => RebuildRequest::default(),
        Err(rejection) => return Err(ApiError::unprocessable(rejection.body_text())),
    };
    let humpback = state.humpback.clone();
    blocking(move || {
        let mut projector = humpback.projector.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(Json(projector.rebuild(humpback.log.as_ref(), &request.names)?))
    })
    .await
}
