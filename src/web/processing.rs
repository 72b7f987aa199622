//! Processing pages: the job list, one job with its events, cancel and retry.

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Form;
use serde::Deserialize;

use super::{
    blocking_page, job_action_page, page, parse_page_id, redirect_with_notice, safe_return_path, HtmlError,
    NoticeParameters, PageResult,
};
use crate::domain::decide::Command;
use crate::domain::ids::{AggregateRef, ProcessingJobId};
use crate::http::ApiState;
use crate::log::filter::{EventFilter, PageRequest};
use crate::projections::runner::lowest_checkpoint;
use crate::projections::{queries, ui_queries};
use crate::views::processing::{
    processing_detail_page, processing_list_page, ProcessingDetailView, ProcessingListView, QueueFormDefaults,
    JOB_STATUSES,
};

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
        Some(status) if !JOB_STATUSES.contains(&status.as_str()) => {
            (None, Some(format!("status {status:?} is not one of {}", JOB_STATUSES.join(", "))))
        }
        other => (other, None),
    };
    let offset = parameters.offset.unwrap_or(0);
    let humpback = state.humpback.clone();
    let status_for_query = status.clone();
    let (events_after, jobs, model_names, recording_names) = blocking_page(move || {
        Ok(humpback.reader.with_connection(|connection| {
            let events_after = lowest_checkpoint(connection)?;
            let jobs = queries::processing_jobs(connection, None, status_for_query.as_deref(), offset, JOBS_PER_PAGE)?;
            let ids: Vec<u64> = jobs.items.iter().map(|job| job.audio_file_id).collect();
            let names = ui_queries::audio_file_names_of(connection, &ids)?;
            Ok((events_after, jobs, ui_queries::model_names(connection)?, names))
        })?)
    })
    .await?;
    let view = ProcessingListView {
        page: jobs,
        status,
        notice: notice.to_notice(),
        filter_error,
        queue_defaults: QueueFormDefaults { model_names, ..QueueFormDefaults::default() },
        events_after,
        recording_names,
        workers: state.humpback.remote_workers.listing(),
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
    let (events_after, job, recording_name, events) = blocking_page(move || {
        let found = humpback.reader.with_connection(|connection| {
            let events_after = lowest_checkpoint(connection)?;
            let Some(job) = queries::processing_job(connection, id)? else {
                return Ok(None);
            };
            let recording = queries::audio_file(connection, job.audio_file_id)?;
            Ok(Some((events_after, job, recording.map(|file| file.filename))))
        })?;
        let Some((events_after, job, recording_name)) = found else {
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
        let events = humpback.read_events(&request)?;
        Ok((events_after, job, recording_name, events))
    })
    .await?;
    let view = ProcessingDetailView {
        job,
        recording_name,
        events: events.events.iter().map(|envelope| envelope.to_brief_json()).collect(),
        notice: notice.to_notice(),
        events_after,
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
        Command::CancelProcessingJob { job_id: ProcessingJobId(id) }
    } else {
        Command::RetryProcessingJob { job_id: ProcessingJobId(id) }
    };
    job_action_page(&state, command, &format!("processing job {id}"), cancel, &return_to).await
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

/// `POST /processing/queue`: one file, a selection (repeated `audio_file_id`) or a `folder`,
/// with the model and parameters (empty fields take the model's defaults). Answers with the job
/// (one file) or the job list, with a notice saying what was queued and what was already done.
pub async fn queue(
    State(state): State<ApiState>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let Form(fields) = form?;
    let value = |name: &str| {
        fields
            .iter()
            .find(|(key, value)| key == name && !value.trim().is_empty())
            .map(|(_, value)| value.trim().to_string())
    };
    let return_to = safe_return_path(value("return_to").as_deref(), "/processing");
    let ids: Vec<u64> = fields
        .iter()
        .filter(|(key, value)| key == "audio_file_id" && !value.trim().is_empty())
        .map(|(_, value)| {
            value.trim().parse::<u64>().map_err(|_| format!("audio file id {value:?} is not a whole number"))
        })
        .collect::<Result<_, _>>()
        .map_err(|message| HtmlError::new(StatusCode::UNPROCESSABLE_ENTITY, message))?;
    let number = |name: &str| -> Result<Option<f64>, HtmlError> {
        value(name)
            .map(|text| {
                text.parse::<f64>().map_err(|_| {
                    HtmlError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{name}: {text:?} is not a number"))
                })
            })
            .transpose()
    };
    let feature_config = match value("feature_config") {
        Some(text) => Some(serde_json::from_str::<serde_json::Value>(&text).map_err(|error| {
            HtmlError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("feature_config is not valid JSON: {error}"))
        })?),
        None => None,
    };
    let request = crate::http::processing_api::QueueRequest {
        audio_file_id: (ids.len() == 1).then(|| ids[0]),
        audio_file_ids: (ids.len() > 1).then(|| ids.clone()),
        folder: if ids.is_empty() { value("folder") } else { None },
        encoding: crate::processing::config::EncodingRequest {
            model: value("model_name").or_else(|| value("model")),
            window_seconds: number("window_seconds")?,
            hop_seconds: number("hop_seconds")?,
            target_sample_rate: number("target_sample_rate")?.map(|rate| rate.round() as u32),
            feature_config,
        },
    };
    if request.audio_file_id.is_none() && request.audio_file_ids.is_none() && request.folder.is_none() {
        return Ok(redirect_with_notice(
            &return_to,
            "choose a recording, several recordings, or a folder to process",
            true,
        ));
    }
    match crate::http::processing_api::queue_jobs(&state, request).await {
        Ok((jobs, _)) => {
            let new = jobs.iter().filter(|job| !job.skipped && job.job.status == "queued").count();
            let skipped = jobs.iter().filter(|job| job.skipped).count();
            let other = jobs.len() - new - skipped;
            let mut parts = vec![format!("{new} job{} queued", if new == 1 { "" } else { "s" })];
            if skipped > 0 {
                parts.push(format!("{skipped} already encoded with this configuration (nothing to do)"));
            }
            if other > 0 {
                parts.push(format!("{other} already queued or running"));
            }
            if let Some(warning) = jobs.first().and_then(|job| job.model_warning.clone()) {
                parts.push(format!("warning: {warning}"));
            }
            let target = match jobs.as_slice() {
                [only] => format!("/processing/{}", only.job.id),
                _ => "/processing".to_string(),
            };
            Ok(redirect_with_notice(&target, &parts.join("; "), false))
        }
        Err(error) => Ok(redirect_with_notice(&return_to, &error.message, true)),
    }
}
