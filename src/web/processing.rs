//! Processing pages: the job list, one job with its events, cancel and retry.

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Form;
use serde::Deserialize;

use super::{
    blocking_page, page, parse_page_id, redirect_with_notice, safe_return_path, HtmlError, NoticeParameters, PageResult,
};
use crate::domain::decide::Command;
use crate::domain::ids::{AggregateRef, ProcessingJobId};
use crate::http::{ApiError, ApiState};
use crate::log::filter::{read_page, EventFilter, PageRequest};
use crate::projections::{queries, ui_queries};
use crate::views::processing::{
    processing_detail_page, processing_list_page, ProcessingDetailView, ProcessingListView, QueueFormDefaults,
    JOB_STATUSES,
};
use crate::views::{message_page, Section};

const JOBS_PER_PAGE: u64 = 50;
const EVENTS_PER_JOB: usize = 500;

#[derive(Debug, Deserialize, Default)]
pub struct ListParameters {
    pub status: Option<String>,
    pub offset: Option<u64>,
}

pub async fn list(
    State(state): State<ApiState>,
    parameters: Result<Query<ListParameters>, QueryRejection>,
    Query(notice): Query<NoticeParameters>,
) -> PageResult {
    let Query(parameters) = parameters?;
    let requested = parameters.status.filter(|status| !status.is_empty());
    let (status, filter_error) = match requested {
        Some(status) if !JOB_STATUSES.contains(&status.as_str()) => (
            None,
            Some(format!("status {status:?} is not one of {}", JOB_STATUSES.join(", "))),
        ),
        other => (other, None),
    };
    let offset = parameters.offset.unwrap_or(0);
    let humpback = state.humpback.clone();
    let status_for_query = status.clone();
    let (jobs, model_names) = blocking_page(move || {
        Ok(humpback.reader.with_connection(|connection| {
            Ok((
                queries::processing_jobs(connection, None, status_for_query.as_deref(), offset, JOBS_PER_PAGE)?,
                ui_queries::model_names(connection)?,
            ))
        })?)
    })
    .await?;
    let view = ProcessingListView {
        page: jobs,
        status,
        notice: notice.to_notice(),
        filter_error,
        queue_defaults: QueueFormDefaults {
            model_names,
            ..QueueFormDefaults::default()
        },
    };
    Ok(page(StatusCode::OK, processing_list_page(&view)))
}

pub async fn detail(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(notice): Query<NoticeParameters>,
) -> PageResult {
    let id = parse_page_id(&id, "processing job")?;
    let humpback = state.humpback.clone();
    let (job, recording_name, events) = blocking_page(move || {
        let found = humpback.reader.with_connection(|connection| {
            let Some(job) = queries::processing_job(connection, id)? else {
                return Ok(None);
            };
            let recording = queries::audio_file(connection, job.audio_file_id)?;
            Ok(Some((job, recording.map(|file| file.filename))))
        })?;
        let Some((job, recording_name)) = found else {
            return Err(HtmlError::not_found(format!("there is no processing job {id}")));
        };
        let request = PageRequest {
            filter: EventFilter {
                aggregate: Some(AggregateRef::ProcessingJob(ProcessingJobId(id))),
                ..EventFilter::default()
            },
            limit: EVENTS_PER_JOB,
            cursor: None,
            newest_first: true,
        };
        let events = read_page(humpback.log.as_ref(), &request)?;
        Ok((job, recording_name, events))
    })
    .await?;
    let view = ProcessingDetailView {
        job,
        recording_name,
        events: events.events.iter().map(|envelope| envelope.to_json()).collect(),
        notice: notice.to_notice(),
    };
    Ok(page(StatusCode::OK, processing_detail_page(&view)))
}

#[derive(Debug, Deserialize, Default)]
pub struct ActionForm {
    pub return_to: Option<String>,
}

async fn job_action(
    state: ApiState,
    id: String,
    form: Result<Form<ActionForm>, FormRejection>,
    cancel: bool,
) -> PageResult {
    let id = parse_page_id(&id, "processing job")?;
    let Form(form) = form?;
    let return_to = safe_return_path(form.return_to.as_deref(), &format!("/processing/{id}"));
    let command = if cancel {
        Command::CancelProcessingJob {
            job_id: ProcessingJobId(id),
        }
    } else {
        Command::RetryProcessingJob {
            job_id: ProcessingJobId(id),
        }
    };
    match state.humpback.execute(command).await {
        Ok(_) => {
            let done = if cancel { "cancel requested" } else { "queued again" };
            Ok(redirect_with_notice(
                &return_to,
                &format!("processing job {id}: {done}"),
                false,
            ))
        }
        Err(error) => {
            let error = ApiError::from(error);
            if error.status == StatusCode::NOT_FOUND {
                return Err(HtmlError::not_found(format!("there is no processing job {id}")));
            }
            if error.status.is_server_error() {
                return Err(error.into());
            }
            Ok(redirect_with_notice(&return_to, &error.message, true))
        }
    }
}

/// `POST /processing/{id}/cancel`
pub async fn cancel(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> PageResult {
    job_action(state, id, form, true).await
}

/// `POST /processing/{id}/retry`
pub async fn retry(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> PageResult {
    job_action(state, id, form, false).await
}

/// `POST /processing/queue`: wired by the lead to the queue function.
pub async fn queue() -> PageResult {
    Ok(page(
        StatusCode::NOT_IMPLEMENTED,
        message_page(
            "Queue processing",
            Section::Processing,
            "The processing queue handler is wired by the lead; nothing was queued.",
            "/processing",
            "Back to processing",
        ),
    ))
}
