//! Pages about when recordings started: a folder's time line, reading a folder's start times
//! again at an offset, and a recording's start time form.

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::{blocking_page, page, parse_page_id, redirect_with_notice, NoticeParameters, PageResult};
use crate::http::recording_time_api::{self, TimelineParameters};
use crate::http::ApiState;
use crate::recording_time::{UtcOffset, UtcTime};
use crate::views::url_with_query;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/audio/timeline", get(timeline))
        .route("/audio/timeline/recorded-at", post(reread))
        .route("/audio/{id}/recorded-at", post(save))
}

async fn timeline(
    State(state): State<ApiState>,
    parameters: Result<Query<TimelineParameters>, QueryRejection>,
    Query(notice): Query<NoticeParameters>,
) -> PageResult {
    let Query(parameters) = parameters?;
    let folder = parameters.folder.unwrap_or_default();
    let timeline = blocking_page(move || Ok(recording_time_api::load_timeline(&state, &folder)?)).await?;
    Ok(page(StatusCode::OK, crate::views::recording_time::timeline_page(&timeline, notice.to_notice().as_ref())))
}

#[derive(Debug, Deserialize)]
pub struct RereadForm {
    pub folder: Option<String>,
    pub utc_offset: Option<String>,
}

async fn reread(State(state): State<ApiState>, form: Result<Form<RereadForm>, FormRejection>) -> PageResult {
    let Form(form) = form?;
    let folder = form.folder.unwrap_or_default();
    let back = url_with_query("/audio/timeline", &[("folder", Some(folder.clone()).filter(|f| !f.is_empty()))]);
    let offset = match form.utc_offset.as_deref().map(str::trim).filter(|text| !text.is_empty()) {
        None => None,
        Some(text) => match UtcOffset::parse(text) {
            Ok(offset) => Some(offset),
            Err(error) => return Ok(redirect_with_notice(&back, &error.to_string(), true)),
        },
    };
    match recording_time_api::reread_folder_times(&state, folder, offset, Some("web".into())).await {
        Ok(summary) => Ok(redirect_with_notice(
            &back,
            &format!(
                "start times read again: {} changed, {} unchanged, {} without a time",
                summary.updated.len(),
                summary.unchanged,
                summary.without_time.len()
            ),
            false,
        )),
        Err(error) => Ok(redirect_with_notice(&back, &error.message, true)),
    }
}

#[derive(Debug, Deserialize)]
pub struct RecordedAtForm {
    pub recorded_at: Option<String>,
    pub clear: Option<String>,
}

async fn save(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    form: Result<Form<RecordedAtForm>, FormRejection>,
) -> PageResult {
    let id = parse_page_id(&id, "recording")?;
    let Form(form) = form?;
    let back = format!("/audio/{id}");
    let recorded_at = if form.clear.is_some() {
        None
    } else {
        match UtcTime::parse_iso8601(form.recorded_at.as_deref().unwrap_or("")) {
            Ok(time) => Some(time),
            Err(error) => return Ok(redirect_with_notice(&back, &error.to_string(), true)),
        }
    };
    match recording_time_api::set_recorded_at_by_hand(&state, id, recorded_at, Some("web".into())).await {
        Ok(()) => Ok(redirect_with_notice(&back, "start time saved", false)),
        Err(error) if error.status == StatusCode::NOT_FOUND => Err(error.into()),
        Err(error) => Ok(redirect_with_notice(&back, &error.message, true)),
    }
}
