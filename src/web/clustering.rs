//! Clustering pages: the queue form and job list, one job, its plot data, one cluster, models.

use std::collections::BTreeMap;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::{Form, Json};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{
    blocking_page, job_action_page, page, parse_page_id, redirect_with_notice, HtmlError, NoticeParameters, PageResult,
};
use crate::clustering_jobs::outputs::{read_assignments, AssignmentRow};
use crate::clustering_jobs::request::{parse_request, ClusteringRequest, RequestError};
use crate::domain::decide::Command;
use crate::domain::events::Event;
use crate::domain::ids::{ClusteringJobId, EmbeddingSetId};
use crate::domain::state::DomainState;
use crate::http::{ApiError, ApiState};
use crate::projections::queries::{self, ClusteringJobRow};
use crate::projections::runner::lowest_checkpoint;
use crate::projections::ui_queries;
use crate::views::clustering::{
    cluster_page, clustering_job_page, clustering_list_page, ClusterView, ClusteringJobView, ClusteringListView,
    MemberWithRecording, SubmittedForm,
};
use crate::views::Notice;

const JOBS_SHOWN: u64 = 50;
const MEMBERS_PER_PAGE: u64 = 50;
/// The scatter plot draws at most this many points; larger jobs are evenly thinned.
pub const MAX_PLOTTED_POINTS: usize = 100_000;

pub async fn list(State(state): State<ApiState>, Query(notice): Query<NoticeParameters>) -> PageResult {
    let view = list_view(&state, notice.to_notice(), None).await?;
    Ok(page(StatusCode::OK, clustering_list_page(&view)))
}

/// The clustering page; a refused form comes back with its fields and the reason.
async fn list_view(
    state: &ApiState,
    notice: Option<Notice>,
    submitted: Option<SubmittedForm>,
) -> Result<ClusteringListView, HtmlError> {
    let humpback = state.humpback.clone();
    let (events_after, jobs, sets) = blocking_page(move || {
        Ok(humpback.reader.with_connection(|connection| {
            Ok((
                lowest_checkpoint(connection)?,
                queries::clustering_jobs(connection, 0, JOBS_SHOWN)?,
                ui_queries::embedding_set_choices(connection)?,
            ))
        })?)
    })
    .await?;
    Ok(ClusteringListView { total_jobs: jobs.total, jobs: jobs.items, sets, notice, events_after, submitted })
}

/// The clustering page again with the form as sent and what to fix (422).
async fn refused_form(state: &ApiState, fields: Vec<(String, String)>, error: String) -> PageResult {
    let view = list_view(state, None, Some(SubmittedForm { fields, error })).await?;
    Ok(page(StatusCode::UNPROCESSABLE_ENTITY, clustering_list_page(&view)))
}

/// Turns the form's fields into the JSON body the API takes (`parse_request` checks it).
pub fn request_body_from_form(fields: &[(String, String)]) -> Result<Value, String> {
    let value = |name: &str| {
        fields
            .iter()
            .find(|(key, value)| key == name && !value.trim().is_empty())
            .map(|(_, value)| value.trim().to_string())
    };
    let whole = |name: &str| -> Result<Option<u64>, String> {
        value(name)
            .map(|text| text.parse::<u64>().map_err(|_| format!("{name}: {text:?} is not a whole number")))
            .transpose()
    };
    let real = |name: &str| -> Result<Option<f64>, String> {
        value(name)
            .map(|text| match text.parse::<f64>() {
                Ok(number) if number.is_finite() => Ok(number),
                _ => Err(format!("{name}: {text:?} is not a number")),
            })
            .transpose()
    };
    let checked = |name: &str| fields.iter().any(|(key, value)| key == name && value == "true");
    let mut body = Map::new();
    let ids: Vec<u64> = fields
        .iter()
        .filter(|(key, value)| key == "embedding_set_id" && !value.trim().is_empty())
        .map(|(_, value)| {
            value.trim().parse::<u64>().map_err(|_| format!("embedding set id {value:?} is not a whole number"))
        })
        .collect::<Result<_, _>>()?;
    if !ids.is_empty() {
        body.insert("embedding_set_ids".into(), json!(ids));
    } else if let Some(folder) = value("folder") {
        body.insert("folder".into(), json!(folder));
    } else if let Some(version) = value("model_version") {
        body.insert("model_version".into(), json!(version));
    } else {
        return Err("choose embedding sets, a folder or a model version to cluster".into());
    }
    let mut filters = Map::new();
    if let Some(prefix) = value("folder_prefix") {
        filters.insert("folder_prefix".into(), json!(prefix));
    }
    match (value("metadata_path"), value("metadata_value")) {
        (Some(path), Some(wanted)) => {
            // A value that reads as JSON (a number, true, ...) is compared as such, else as text.
            let wanted = serde_json::from_str::<Value>(&wanted)
                .ok()
                .filter(|parsed| !parsed.is_object() && !parsed.is_array())
                .unwrap_or(Value::String(wanted));
            filters.insert("metadata".into(), json!({ path: wanted }));
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err("a metadata filter needs both a field and a value".into());
        }
        (None, None) => {}
    }
    if !filters.is_empty() {
        body.insert("filters".into(), Value::Object(filters));
    }
    if let Some(reference) = value("reference_field") {
        body.insert("reference_field".into(), json!(reference));
    }
    if let Some(job) = whole("detection_job_id")? {
        body.insert("detection_job_id".into(), json!(job));
    }
    if let Some(min_score) = real("min_score")? {
        body.insert("min_score".into(), json!(min_score));
    }
    body.insert("normalize_l2".into(), json!(checked("normalize_l2")));
    body.insert("plot_2d".into(), json!(checked("plot_2d")));
    let reduction = match value("reduction_method").as_deref().unwrap_or("umap") {
        "none" => json!({"method": "none"}),
        "pca" => json!({"method": "pca", "n_components": whole("reduction_n_components")?.unwrap_or(10)}),
        "umap" => {
            let mut umap = Map::new();
            umap.insert("method".into(), json!("umap"));
            if let Some(components) = whole("reduction_n_components")? {
                umap.insert("n_components".into(), json!(components));
            }
            if let Some(neighbours) = whole("umap_n_neighbors")? {
                umap.insert("n_neighbors".into(), json!(neighbours));
            }
            if let Some(distance) = real("umap_min_dist")? {
                umap.insert("min_dist".into(), json!(distance));
            }
            if let Some(seed) = whole("seed")? {
                umap.insert("seed".into(), json!(seed));
            }
            Value::Object(umap)
        }
        other => return Err(format!("reduction method {other:?} is not one of umap, pca, none")),
    };
    body.insert("reduction".into(), reduction);
    let seed = whole("seed")?.unwrap_or(42);
    let clusters = whole("k")?.unwrap_or(8);
    let algorithm = match value("algorithm_method").as_deref().unwrap_or("hdbscan") {
        "hdbscan" => {
            let mut hdbscan = Map::new();
            hdbscan.insert("method".into(), json!("hdbscan"));
            if let Some(size) = whole("hdbscan_min_cluster_size")? {
                hdbscan.insert("min_cluster_size".into(), json!(size));
            }
            if let Some(samples) = whole("hdbscan_min_samples")? {
                hdbscan.insert("min_samples".into(), json!(samples));
            }
            Value::Object(hdbscan)
        }
        "kmeans" => json!({"method": "kmeans", "k": clusters, "seed": seed}),
        "dbscan" => json!({"method": "dbscan", "eps": real("dbscan_eps")?.unwrap_or(0.5),
                           "min_points": whole("dbscan_min_points")?.unwrap_or(5)}),
        "gaussian_mixture" => json!({"method": "gaussian_mixture", "n_components": clusters, "seed": seed}),
        "agglomerative" => json!({"method": "agglomerative", "n_clusters": clusters,
                                  "linkage": value("linkage").unwrap_or_else(|| "ward".into())}),
        other => {
            return Err(format!(
                "algorithm {other:?} is not one of hdbscan, kmeans, dbscan, gaussian_mixture, agglomerative"
            ))
        }
    };
    body.insert("algorithm".into(), algorithm);
    if let Some(method) = value("sweep_method") {
        let (from, to) = match (whole("sweep_from")?, whole("sweep_to")?) {
            (Some(from), Some(to)) => (from, to),
            _ => return Err("sweep: give both ends of the range (from and to)".into()),
        };
        let sweep = match method.as_str() {
            "hdbscan" => json!({"method": "hdbscan", "min_cluster_size_from": from, "min_cluster_size_to": to,
                                "min_cluster_size_step": whole("sweep_step")?.unwrap_or(1)}),
            "kmeans" => json!({"method": "kmeans", "k_from": from, "k_to": to, "seed": seed}),
            other => return Err(format!("sweep {other:?} is not one of hdbscan, kmeans")),
        };
        body.insert("sweep".into(), sweep);
    }
    Ok(Value::Object(body))
}

/// What a clustering form would select, or why it cannot be queued.
#[derive(Debug, Serialize, PartialEq)]
pub struct SelectionCheck {
    pub embedding_sets: usize,
    pub windows: u64,
    pub error: Option<String>,
}

/// Checks a clustering form as queueing would (same parser), without queueing anything.
pub fn check_form(fields: &[(String, String)], state: &DomainState) -> SelectionCheck {
    match parse_form(fields, state) {
        Ok(request) => SelectionCheck {
            embedding_sets: request.embedding_set_ids.len(),
            windows: request
                .embedding_set_ids
                .iter()
                .filter_map(|id| state.embedding_sets.get(id).map(|set| set.row_count))
                .sum(),
            error: None,
        },
        Err(error) => SelectionCheck { embedding_sets: 0, windows: 0, error: Some(error) },
    }
}

/// A clustering form as the request the API would queue, or what to fix.
fn parse_form(fields: &[(String, String)], state: &DomainState) -> Result<ClusteringRequest, String> {
    let body = request_body_from_form(fields)?;
    parse_request(&body, state).map_err(|error| match error {
        RequestError::Invalid(message) | RequestError::NothingSelected(message) => message,
    })
}

/// `POST /clustering/check`: the form (as sent to `/clustering/queue`) in, a [`SelectionCheck`]
/// as JSON out, so the form can say what it selects (after filters) and what is wrong before
/// it is sent.
pub async fn check(
    State(state): State<ApiState>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Json<SelectionCheck>, ApiError> {
    let Form(fields) = form.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    Ok(Json(state.humpback.writer.read_state(|s| check_form(&fields, s))))
}

/// `POST /clustering/queue`: the form, checked by the API's own request parser.
pub async fn queue(
    State(state): State<ApiState>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let Form(fields) = form?;
    let request = match state.humpback.writer.read_state(|s| parse_form(&fields, s)) {
        Ok(request) => request,
        Err(message) => return refused_form(&state, fields, message).await,
    };
    let command = Command::QueueClusteringJob {
        embedding_set_ids: request.embedding_set_ids,
        parameters: request.stored.to_json_text(),
    };
    match state.humpback.execute(command).await {
        Ok(envelopes) => {
            let job_id = envelopes.iter().find_map(|envelope| match &envelope.event {
                Event::ClusteringJobQueued(queued) => Some(queued.job_id.0),
                _ => None,
            });
            match job_id {
                Some(id) => Ok(redirect_with_notice(
                    &format!("/clustering/{id}"),
                    &format!("clustering job {id} queued"),
                    false,
                )),
                None => Err(ApiError::internal(anyhow::anyhow!("queueing recorded no clustering job")).into()),
            }
        }
        Err(error) => {
            let error = ApiError::from(error);
            if error.status.is_server_error() {
                return Err(error.into());
            }
            refused_form(&state, fields, error.message).await
        }
    }
}

fn load_job(state: &ApiState, id: u64) -> Result<ClusteringJobRow, HtmlError> {
    state
        .humpback
        .reader
        .with_connection(|connection| queries::clustering_job(connection, id))?
        .ok_or_else(|| HtmlError::not_found(format!("there is no clustering job {id}")))
}

pub async fn detail(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(notice): Query<NoticeParameters>,
    occurrence: Result<Query<crate::http::recording_time_api::OccurrenceParameters>, QueryRejection>,
) -> PageResult {
    let id = parse_page_id(&id, "clustering job")?;
    let Query(occurrence) = occurrence?;
    let mut notice = notice.to_notice();
    let offset = crate::http::recording_time_api::parse_occurrence_parameters(&occurrence).map_or_else(
        |error| {
            notice = Some(crate::views::Notice { text: error.message, is_error: true });
            crate::recording_time::UtcOffset::UTC
        },
        |(_, offset)| offset,
    );
    let (events_after, job, clusters, occurrence) = blocking_page(move || {
        let events_after = state.humpback.reader.with_connection(lowest_checkpoint)?;
        let job = load_job(&state, id)?;
        let (clusters, occurrence) = if job.status == "complete" {
            let clusters = state.humpback.reader.with_connection(|connection| queries::clusters(connection, id))?;
            (clusters, occurrence_markup(&state, id, offset).ok())
        } else {
            (Vec::new(), None)
        };
        Ok((events_after, job, clusters, occurrence))
    })
    .await?;
    let view = ClusteringJobView { job, clusters, notice, events_after, occurrence };
    Ok(page(StatusCode::OK, clustering_job_page(&view)))
}

/// The job page's heatmaps: windows per cluster per day and per hour of day at `offset`.
fn occurrence_markup(
    state: &ApiState,
    id: u64,
    offset: crate::recording_time::UtcOffset,
) -> Result<maud::Markup, HtmlError> {
    use crate::recording_time::occurrence::{count_occurrences, OccurrenceBin};
    let windows = crate::http::recording_time_api::clustered_window_starts(state, id)?;
    let (by_day, without_start) = count_occurrences(windows.iter().copied(), OccurrenceBin::Day, offset);
    let (by_hour, _) = count_occurrences(windows, OccurrenceBin::HourOfDay, offset);
    Ok(crate::views::recording_time::occurrence_section(id, &by_day, &by_hour, offset, without_start))
}

async fn job_action(state: ApiState, id: String, cancel: bool) -> PageResult {
    let id = parse_page_id(&id, "clustering job")?;
    let command = if cancel {
        Command::CancelClusteringJob { job_id: ClusteringJobId(id) }
    } else {
        Command::RetryClusteringJob { job_id: ClusteringJobId(id) }
    };
    job_action_page(&state, command, &format!("clustering job {id}"), cancel, &format!("/clustering/{id}")).await
}

pub async fn cancel(State(state): State<ApiState>, Path(id): Path<String>) -> PageResult {
    job_action(state, id, true).await
}

pub async fn retry(State(state): State<ApiState>, Path(id): Path<String>) -> PageResult {
    job_action(state, id, false).await
}

/// What `scatter.js` draws: the points as columns (index `i` of every column is point `i`), so
/// that 100 000 points stay a few megabytes, and the recordings they come from once each.
#[derive(Debug, Serialize, Default)]
pub struct PlotData {
    /// Windows with 2-D coordinates in the job.
    pub total: usize,
    /// Points sent (fewer than `total` when evenly thinned to [`MAX_PLOTTED_POINTS`]).
    pub shown: usize,
    pub max_points: usize,
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    /// Cluster label (-1 is noise).
    pub label: Vec<i64>,
    pub set: Vec<u64>,
    pub row: Vec<u64>,
    /// The recording, when its embedding set is known.
    pub audio: Vec<Option<u64>>,
    pub start: Vec<f64>,
    pub duration: Vec<f64>,
    /// Each recording's name and folder, by id.
    pub recordings: BTreeMap<u64, PlotRecording>,
    /// Metadata fields (`document.path`) with each recording's value, for colouring.
    pub metadata: BTreeMap<String, BTreeMap<u64, String>>,
    /// Each point's annotation label: the positive annotation overlapping the window most.
    pub annotations: Vec<Option<String>>,
    /// Every annotation label in use (offered when annotating the selection).
    pub known_labels: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PlotRecording {
    pub name: String,
    pub folder: String,
}

/// Metadata fields with more distinct values than this are not offered for colouring.
const MAX_COLOURED_METADATA_VALUES: usize = 200;

/// Annotation labels in use, offered when annotating. Blocking.
pub(crate) fn known_labels(state: &ApiState) -> Result<Vec<String>, HtmlError> {
    let labels = state.humpback.reader.with_connection(crate::projections::annotation_queries::labels)?;
    Ok(labels.into_iter().map(|counts| counts.label).collect())
}

/// The assignments of a complete job that `keep` accepts.
fn job_assignments(
    state: &ApiState,
    job: &ClusteringJobRow,
    keep: impl FnMut(&AssignmentRow) -> bool,
) -> Result<Vec<AssignmentRow>, HtmlError> {
    let path = job.assignments_path.as_ref().ok_or_else(|| {
        HtmlError::new(
            StatusCode::CONFLICT,
            format!("clustering job {} is {}, it has no assignments yet", job.id, job.status),
        )
    })?;
    read_assignments(
        &state.humpback.storage.readable_path(path).map_err(|error| HtmlError::from(ApiError::from(error)))?,
        keep,
    )
    .map_err(|error| HtmlError::from(ApiError::internal(error.into())))
}

/// The recording (audio file id) of each embedding set the rows come from.
fn recordings_of_sets(state: &ApiState, rows: &[AssignmentRow]) -> BTreeMap<u64, u64> {
    state.humpback.writer.read_state(|s| {
        let mut wanted: Vec<u64> = rows.iter().map(|row| row.embedding_set_id).collect();
        wanted.sort_unstable();
        wanted.dedup();
        wanted
            .into_iter()
            .filter_map(|set| s.embedding_sets.get(&EmbeddingSetId(set)).map(|found| (set, found.audio_file_id.0)))
            .collect()
    })
}

/// Each row with its recording (id and name) when known.
fn with_recordings(
    state: &ApiState,
    rows: Vec<AssignmentRow>,
    names: &BTreeMap<u64, String>,
) -> Vec<MemberWithRecording> {
    let audio_of_set = recordings_of_sets(state, &rows);
    rows.into_iter()
        .map(|row| {
            let recording = audio_of_set
                .get(&row.embedding_set_id)
                .map(|audio| (*audio, names.get(audio).cloned().unwrap_or_else(|| format!("recording {audio}"))));
            (row, recording)
        })
        .collect()
}

/// Evenly thins `items` to at most `limit` (keeping the first).
pub fn thin<T>(items: Vec<T>, limit: usize) -> Vec<T> {
    if items.len() <= limit || limit == 0 {
        return items;
    }
    let total = items.len();
    let mut next = 0usize;
    items
        .into_iter()
        .enumerate()
        .filter_map(|(index, item)| {
            if next < limit && index == next * total / limit {
                next += 1;
                Some(item)
            } else {
                None
            }
        })
        .collect()
}

/// `GET /clustering/{id}/points.json`: the 2-D layout with each window's cluster and recording.
/// `<`, `>` and `&` become `\u003c`, `\u003e`, `\u0026`: still the same JSON, but no markup
/// can be read into it even if it were ever placed inside a page.
pub fn json_for_html(value: &impl Serialize) -> Result<String, serde_json::Error> {
    let text = serde_json::to_string(value)?;
    Ok(text.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026"))
}

pub async fn points(State(state): State<ApiState>, Path(id): Path<String>) -> Result<impl IntoResponse, HtmlError> {
    let id = parse_page_id(&id, "clustering job")?;
    let data = blocking_page(move || {
        let job = load_job(&state, id)?;
        let finite = |value: Option<f32>| value.is_some_and(f32::is_finite);
        let rows = job_assignments(&state, &job, |row| finite(row.x) && finite(row.y))?;
        let total = rows.len();
        // Thin first: only the points drawn need their recording.
        let rows = thin(rows, MAX_PLOTTED_POINTS);
        let audio_of_set = recordings_of_sets(&state, &rows);
        let mut data = PlotData { total, shown: rows.len(), max_points: MAX_PLOTTED_POINTS, ..PlotData::default() };
        for row in &rows {
            data.x.push(row.x.unwrap_or_default());
            data.y.push(row.y.unwrap_or_default());
            data.label.push(row.cluster_label);
            data.set.push(row.embedding_set_id);
            data.row.push(row.row_index);
            data.audio.push(audio_of_set.get(&row.embedding_set_id).copied());
            data.start.push(row.start_seconds);
            data.duration.push((row.end_seconds - row.start_seconds).max(0.0));
        }
        let mut recording_ids: Vec<u64> = audio_of_set.values().copied().collect();
        recording_ids.sort_unstable();
        recording_ids.dedup();
        let names = state.humpback.reader.with_connection(|c| ui_queries::audio_file_names_of(c, &recording_ids))?;
        state.humpback.writer.read_state(|domain| {
            for id in &recording_ids {
                let audio = crate::domain::ids::AudioFileId(*id);
                let Some(file) = domain.audio_files.get(&audio) else { continue };
                let name = names.get(id).cloned().unwrap_or_else(|| format!("recording {id}"));
                data.recordings.insert(*id, PlotRecording { name, folder: file.folder.clone() });
                let documents = crate::clustering_jobs::request::file_documents(domain, audio);
                for (field, value) in crate::clustering::flattened_fields(&documents) {
                    data.metadata.entry(field).or_default().insert(*id, value);
                }
            }
        });
        data.annotations = state.humpback.writer.read_state(|domain| {
            use crate::clustering_jobs::annotations::{spans_by_recording, window_category, NO_ANNOTATION};
            let spans = spans_by_recording(domain);
            (0..data.x.len())
                .map(|index| {
                    let recording = spans.get(&crate::domain::ids::AudioFileId(data.audio[index]?))?;
                    let end = data.start[index] + data.duration[index];
                    Some(window_category(recording, data.start[index], end)).filter(|label| label != NO_ANNOTATION)
                })
                .collect()
        });
        data.known_labels = known_labels(&state)?;
        data.metadata.retain(|_, values| {
            let mut distinct: Vec<&String> = values.values().collect();
            distinct.sort_unstable();
            distinct.dedup();
            distinct.len() <= MAX_COLOURED_METADATA_VALUES
        });
        Ok(data)
    })
    .await?;
    let body = json_for_html(&data).map_err(|error| HtmlError::from(ApiError::internal(error.into())))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    ))
}

#[derive(Debug, Deserialize, Default)]
pub struct MemberParameters {
    pub offset: Option<u64>,
}

pub async fn cluster(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    parameters: Result<Query<MemberParameters>, QueryRejection>,
) -> PageResult {
    let id = parse_page_id(&id, "cluster")?;
    let Query(parameters) = parameters?;
    let offset = parameters.offset.unwrap_or(0);
    let view = blocking_page(move || {
        let cluster = state
            .humpback
            .reader
            .with_connection(|connection| queries::cluster(connection, id))?
            .ok_or_else(|| HtmlError::not_found(format!("there is no cluster {id}")))?;
        let job = load_job(&state, cluster.clustering_job_id)?;
        let label = cluster.label;
        let rows = job_assignments(&state, &job, |row| row.cluster_label == label)?;
        let total = rows.len() as u64;
        // Only the members on this page need their recording.
        let shown: Vec<AssignmentRow> =
            rows.into_iter().skip(offset as usize).take(MEMBERS_PER_PAGE as usize).collect();
        let recording_names = state.humpback.reader.with_connection(ui_queries::audio_file_names)?;
        let members = with_recordings(&state, shown, &recording_names);
        Ok(ClusterView {
            cluster,
            members,
            total,
            offset,
            limit: MEMBERS_PER_PAGE,
            recording_names,
            known_labels: known_labels(&state)?,
        })
    })
    .await?;
    Ok(page(StatusCode::OK, cluster_page(&view)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    #[test]
    fn the_form_becomes_an_api_request() {
        let body = request_body_from_form(&fields(&[
            ("embedding_set_id", "1"),
            ("embedding_set_id", "2"),
            ("folder", "ignored because sets are ticked"),
            ("reduction_method", "pca"),
            ("reduction_n_components", "2"),
            ("algorithm_method", "kmeans"),
            ("k", "2"),
            ("metadata_path", "site"),
            ("metadata_value", "maui"),
            ("plot_2d", "true"),
        ]))
        .unwrap();
        assert_eq!(body["embedding_set_ids"], json!([1, 2]));
        assert!(body.get("folder").is_none());
        assert_eq!(body["reduction"], json!({"method": "pca", "n_components": 2}));
        assert_eq!(body["algorithm"], json!({"method": "kmeans", "k": 2, "seed": 42}));
        assert_eq!(body["filters"], json!({"metadata": {"site": "maui"}}));
        assert_eq!(body["normalize_l2"], json!(false));
        assert_eq!(body["plot_2d"], json!(true));
    }

    #[test]
    fn a_sweep_in_the_form_becomes_the_api_sweep_and_parses() {
        let hdbscan = request_body_from_form(&fields(&[
            ("folder", "site-a"),
            ("sweep_method", "hdbscan"),
            ("sweep_from", "5"),
            ("sweep_to", "30"),
            ("sweep_step", "5"),
        ]))
        .unwrap();
        assert_eq!(
            hdbscan["sweep"],
            json!({"method": "hdbscan", "min_cluster_size_from": 5, "min_cluster_size_to": 30, "min_cluster_size_step": 5})
        );
        let kmeans = request_body_from_form(&fields(&[
            ("folder", "site-a"),
            ("seed", "7"),
            ("sweep_method", "kmeans"),
            ("sweep_from", "2"),
            ("sweep_to", "12"),
        ]))
        .unwrap();
        assert_eq!(kmeans["sweep"], json!({"method": "kmeans", "k_from": 2, "k_to": 12, "seed": 7}));
        // What the form sends is what the API accepts.
        for body in [hdbscan, kmeans] {
            let sweep: crate::clustering::SweepParameters =
                serde_json::from_value(body["sweep"].clone()).expect("the API's sweep shape");
            assert!(sweep.settings().expect("a valid sweep").len() >= 6);
        }
        let no_sweep = request_body_from_form(&fields(&[("folder", "a"), ("sweep_method", "")])).unwrap();
        assert!(no_sweep.get("sweep").is_none());
        let half = request_body_from_form(&fields(&[("folder", "a"), ("sweep_method", "kmeans"), ("sweep_from", "2")]));
        assert!(half.unwrap_err().contains("both ends"));
    }

    #[test]
    fn an_empty_selection_and_bad_numbers_are_explained() {
        assert!(request_body_from_form(&fields(&[])).unwrap_err().contains("choose embedding sets"));
        let error = request_body_from_form(&fields(&[("folder", "a"), ("algorithm_method", "kmeans"), ("k", "two")]))
            .unwrap_err();
        assert!(error.contains("k: \"two\" is not a whole number"), "{error}");
    }

    #[test]
    fn json_for_pages_has_no_markup_characters_and_reads_back_the_same() {
        let value = json!({"file": "<script>alert(1)</script> & co"});
        let text = json_for_html(&value).unwrap();
        assert!(!text.contains('<') && !text.contains('>') && !text.contains('&'), "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
    }

    #[test]
    fn thinning_keeps_at_most_the_limit_spread_evenly() {
        let thinned = thin((0..100).collect::<Vec<_>>(), 10);
        assert_eq!(thinned.len(), 10);
        assert_eq!(thinned[0], 0);
        assert!(thinned[9] >= 90);
        assert_eq!(thin(vec![1, 2, 3], 10), vec![1, 2, 3]);
    }
}
