//! Recordings pages: list, upload, folder import, detail, metadata edits.

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use serde::Deserialize;

use super::{
    blocking_page, page, parse_page_id, redirect_with_notice, HtmlError, NoticeParameters, PageResult,
    MAX_RECORDING_BYTES,
};
use crate::domain::decide::{Command, EditAudioMetadata, MetadataEditMode};
use crate::domain::ids::AudioFileId;
use crate::domain::json_text::JsonText;
use crate::http::audio_api::{self, ListParameters, METADATA_FIELDS};
use crate::http::{ApiError, ApiState};
use crate::ingest::{self, IngestError, IngestOutcome, StagedFile, StagingWriter};
use crate::log::EventLog;
use crate::projections::annotation_queries;
use crate::projections::queries::{self, AudioMetadataRow};
use crate::projections::runner::lowest_checkpoint;
use crate::projections::ui_queries;
use crate::views::processing::QueueFormDefaults;
use crate::views::recordings::{
    ingest_results_page, recording_detail_page, recordings_page, IngestResultRow, MetadataForm, RecordingDetailView,
    RecordingsFilter, RecordingsView,
};
use crate::views::Notice;

const RECORDINGS_PER_PAGE: u64 = 50;
/// What the detail page's spectrogram and player show when no range is chosen.
const DEFAULT_VIEW_SECONDS: f64 = 60.0;

fn queue_defaults(model_names: Vec<String>) -> QueueFormDefaults {
    QueueFormDefaults { model_names, ..QueueFormDefaults::default() }
}

fn non_empty(text: &Option<String>) -> Option<String> {
    text.as_ref().map(|text| text.trim().to_string()).filter(|text| !text.is_empty())
}

pub async fn list(
    State(state): State<ApiState>,
    parameters: Result<Query<ListParameters>, QueryRejection>,
    Query(notice): Query<NoticeParameters>,
) -> PageResult {
    let Query(parameters) = parameters?;
    let parameters = ListParameters {
        folder: non_empty(&parameters.folder),
        search: non_empty(&parameters.search),
        sort: non_empty(&parameters.sort),
        order: non_empty(&parameters.order),
        offset: parameters.offset,
        limit: Some(RECORDINGS_PER_PAGE),
        recorded_from: non_empty(&parameters.recorded_from),
        recorded_to: non_empty(&parameters.recorded_to),
    };
    let (query, filter_error) = match parameters.to_query() {
        Ok(query) => (query, None),
        Err(error) => {
            let fallback = ListParameters {
                sort: None,
                order: None,
                folder: parameters.folder.clone(),
                search: parameters.search.clone(),
                offset: parameters.offset,
                limit: parameters.limit,
                recorded_from: None,
                recorded_to: None,
            };
            (fallback.to_query()?, Some(error.message))
        }
    };
    let humpback = state.humpback.clone();
    let (events_after, files, folders, badges, model_names) = blocking_page(move || {
        Ok(humpback.reader.with_connection(|connection| {
            let events_after = lowest_checkpoint(connection)?;
            let files = queries::list_audio_files(connection, &query)?;
            let folders = queries::audio_folders(connection)?;
            let ids: Vec<u64> = files.items.iter().map(|file| file.id).collect();
            let badges = ui_queries::job_badges_for_files(connection, &ids)?;
            let model_names = ui_queries::model_names(connection)?;
            Ok((events_after, files, folders, badges, model_names))
        })?)
    })
    .await?;
    let view = RecordingsView {
        page: files,
        folders,
        badges,
        filter: RecordingsFilter {
            folder: parameters.folder,
            search: parameters.search,
            sort: parameters.sort,
            order: parameters.order,
            recorded_from: parameters.recorded_from,
            recorded_to: parameters.recorded_to,
        },
        filter_error,
        notice: notice.to_notice(),
        queue_defaults: queue_defaults(model_names),
        import_roots: state.humpback.settings.import_roots.iter().map(|root| root.display().to_string()).collect(),
        events_after,
    };
    Ok(page(StatusCode::OK, recordings_page(&view)))
}

/// Streams one uploaded file into `tmp/`, hashing it on the way.
async fn stage_field(state: &ApiState, field: &mut axum::extract::multipart::Field<'_>) -> Result<StagedFile, String> {
    let tmp_dir = state.humpback.data_dir.tmp_dir();
    let mut writer = blocking_page(move || {
        StagingWriter::create(&tmp_dir, MAX_RECORDING_BYTES)
            .map_err(|error| HtmlError::from(ApiError::internal(error.into())))
    })
    .await
    .map_err(|error| error.message)?;
    loop {
        let chunk = match field.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(error) => {
                writer.abort();
                return Err(format!("the upload was interrupted: {}", error.body_text()));
            }
        };
        let outcome = tokio::task::spawn_blocking(move || {
            let written = writer.write_chunk(&chunk);
            (writer, written)
        })
        .await;
        let (returned, written) = outcome.map_err(|error| format!("staging the upload failed: {error}"))?;
        writer = returned;
        if let Err(error) = written {
            writer.abort();
            return Err(match error {
                IngestError::TooLarge { limit, .. } => format!("the file is larger than the limit of {limit} bytes"),
                other => {
                    tracing::error!(error = %other, "staging an upload failed");
                    "the file could not be stored (details are in the server log)".to_string()
                }
            });
        }
    }
    tokio::task::spawn_blocking(move || writer.finish())
        .await
        .map_err(|error| format!("staging the upload failed: {error}"))?
        .map_err(|error| {
            tracing::error!(error = %error, "finishing an upload failed");
            "the file could not be stored (details are in the server log)".to_string()
        })
}

fn ingest_error_reason(error: IngestError) -> String {
    match error {
        IngestError::NotAudio(reason) => reason,
        IngestError::TooLarge { limit, .. } => format!("the file is larger than the limit of {limit} bytes"),
        other => {
            tracing::error!(error = %other, "registering a recording failed");
            "the file could not be registered (details are in the server log)".to_string()
        }
    }
}

/// `POST /audio/upload` (multipart: `file` fields, optional `folder`): stages every file, then
/// registers each, and shows what happened to each.
pub async fn upload(State(state): State<ApiState>, mut multipart: Multipart) -> PageResult {
    let mut staged: Vec<(String, Result<StagedFile, String>)> = Vec::new();
    let mut folder = String::new();
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(error) => {
                discard_all(staged);
                return Err(HtmlError::bad_request(format!("the upload could not be read: {}", error.body_text())));
            }
        };
        let field_name = field.name().map(str::to_string);
        match field_name.as_deref() {
            Some("folder") => {
                folder = field
                    .text()
                    .await
                    .map_err(|error| {
                        HtmlError::bad_request(format!("the folder could not be read: {}", error.body_text()))
                    })?
                    .trim()
                    .trim_matches('/')
                    .chars()
                    .take(500)
                    .collect();
            }
            Some("file") => {
                let name = field.file_name().unwrap_or("").to_string();
                let result = stage_field(&state, &mut field).await;
                // A form submitted without choosing a file sends one empty, nameless part.
                if name.is_empty() && matches!(&result, Ok(file) if file.size_bytes == 0) {
                    if let Ok(file) = result {
                        file.discard();
                    }
                    continue;
                }
                let name = if name.is_empty() { "(unnamed file)".to_string() } else { name };
                staged.push((name, result));
            }
            _ => {}
        }
    }
    let humpback = state.humpback.clone();
    let results = blocking_page(move || {
        let mut results = Vec::new();
        for (name, staged_file) in staged {
            let row = match staged_file.map(|file| ingest::register_staged(&humpback, file, &name, &folder)) {
                Ok(Ok(IngestOutcome::Added(id))) => IngestResultRow::Added { name, audio_file_id: id.0 },
                Ok(Ok(IngestOutcome::Duplicate(id))) => IngestResultRow::AlreadyThere { name, audio_file_id: id.0 },
                Ok(Err(error)) => IngestResultRow::Rejected { name, reason: ingest_error_reason(error) },
                Err(reason) => IngestResultRow::Rejected { name, reason },
            };
            results.push(row);
        }
        Ok(results)
    })
    .await?;
    // Registration does not wait for the projections; the links on the page should work.
    state.humpback.wait_until_projected(state.humpback.log.head()).await;
    let status = if results.is_empty() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    Ok(page(status, ingest_results_page("Upload results", None, &results)))
}

fn discard_all(staged: Vec<(String, Result<StagedFile, String>)>) {
    for file in staged.into_iter().filter_map(|(_, file)| file.ok()) {
        file.discard();
    }
}

#[derive(Debug, Deserialize)]
pub struct ImportForm {
    pub path: String,
}

/// `POST /audio/import` (form: `path`): imports every recording below a folder on the server.
pub async fn import(State(state): State<ApiState>, form: Result<Form<ImportForm>, FormRejection>) -> PageResult {
    let Form(form) = form?;
    if form.path.trim().is_empty() {
        return Err(HtmlError::new(StatusCode::UNPROCESSABLE_ENTITY, "the folder path is empty"));
    }
    let roots = state.humpback.settings.import_roots.clone();
    let path = ingest::resolve_import_folder(std::path::Path::new(form.path.trim()), &roots).map_err(|refusal| {
        let status = if refusal.is_forbidden() { StatusCode::FORBIDDEN } else { StatusCode::UNPROCESSABLE_ENTITY };
        HtmlError::new(status, refusal.to_string())
    })?;
    let humpback = state.humpback.clone();
    let shown_path = path.display().to_string();
    let summary = blocking_page(move || {
        ingest::import_folder(&humpback, &path, MAX_RECORDING_BYTES, Some(&roots), |_, _, _, _| {}).map_err(|error| {
            HtmlError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("importing {} failed: {error}", path.display()))
        })
    })
    .await?;
    state.humpback.wait_until_projected(state.humpback.log.head()).await;
    let mut results = Vec::new();
    for file in summary.added {
        results.push(IngestResultRow::Added { name: file.path, audio_file_id: file.audio_file_id.0 });
    }
    for file in summary.duplicates {
        results.push(IngestResultRow::AlreadyThere { name: file.path, audio_file_id: file.audio_file_id.0 });
    }
    for file in summary.rejected {
        results.push(IngestResultRow::Rejected { name: file.path, reason: file.reason });
    }
    for entry in summary.skipped {
        results.push(IngestResultRow::Skipped { name: entry.path, reason: entry.reason });
    }
    let intro = format!("From {shown_path} on the server.");
    Ok(page(StatusCode::OK, ingest_results_page("Import results", Some(&intro), &results)))
}

#[derive(Debug, Deserialize, Default)]
pub struct DetailParameters {
    pub start: Option<f64>,
    pub duration: Option<f64>,
    pub max_frequency: Option<f64>,
    /// With `window`: show window number `window` of this embedding set, from the start and
    /// end stored for it in the set's Parquet.
    pub embedding_set: Option<u64>,
    pub window: Option<u64>,
    /// The detection job whose scores the score track shows (default: the latest completed
    /// one that scored this recording).
    pub detection_job: Option<u64>,
}

fn metadata_texts(metadata: Option<&AudioMetadataRow>) -> [String; 4] {
    let pretty = |value: &serde_json::Value| serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into());
    match metadata {
        Some(metadata) => [
            pretty(&metadata.tag_data),
            pretty(&metadata.visual_observations),
            pretty(&metadata.group_composition),
            pretty(&metadata.prey_density_proxy),
        ],
        None => Default::default(),
    }
}

/// Loads everything the detail page shows; the metadata form comes from the stored metadata
/// unless `form` (the person's rejected text) is given.
async fn detail_view(
    state: &ApiState,
    id: u64,
    parameters: &DetailParameters,
    form: Option<MetadataForm>,
    notice: Option<Notice>,
) -> Result<RecordingDetailView, HtmlError> {
    let state_copy = state.clone();
    let (events_after, detail, edits, model_names, annotations, recorded_at_history) = blocking_page(move || {
        let events_after = state_copy.humpback.reader.with_connection(lowest_checkpoint)?;
        let detail = audio_api::load_detail(&state_copy, id)?;
        let (edits, model_names, annotations, recorded_at_history) =
            state_copy.humpback.reader.with_connection(|connection| {
                let query = annotation_queries::AnnotationQuery {
                    audio_file_id: Some(id),
                    limit: Some(crate::views::annotations::ANNOTATIONS_SHOWN),
                    ..Default::default()
                };
                Ok((
                    queries::audio_metadata_edits(connection, id)?,
                    ui_queries::model_names(connection)?,
                    annotation_queries::list_annotations(connection, &query)?,
                    crate::projections::recording_time_queries::recording_time_edits(connection, id)?,
                ))
            })?;
        Ok((events_after, detail, edits, model_names, annotations, recorded_at_history))
    })
    .await
    .map_err(|error| {
        if error.status == StatusCode::NOT_FOUND {
            HtmlError::not_found(format!("there is no recording {id}"))
        } else {
            error
        }
    })?;
    let length = detail.file.duration_seconds.max(0.0);
    // A window of an embedding set plays from the start stored for it (the last window of a
    // file is shifted back to end with the file, so it is not simply number × hop).
    let mut notice = notice;
    let chosen_set = parameters.embedding_set.zip(parameters.window).and_then(|(set_id, window)| {
        detail.embedding_sets.iter().find(|set| set.id == set_id).map(|set| (set, window))
    });
    let chosen_window = match chosen_set {
        Some((set, window)) => {
            let path = state.humpback.artifact_path(&set.parquet_path).await.map_err(ApiError::from)?;
            let (set_id, rows) = (set.id, set.row_count);
            let times = blocking_page(move || Ok(crate::artifacts::embeddings_parquet::window_times(&path, window)))
                .await
                .and_then(|read| {
                    read.map_err(|error| {
                        tracing::error!(error = %error, "reading the window times of embedding set {set_id}");
                        HtmlError::new(StatusCode::INTERNAL_SERVER_ERROR, "details are in the server log")
                    })
                });
            match times {
                Ok(Some((start, end))) => Some((start, end - start)),
                Ok(None) => {
                    notice = Some(Notice {
                        text: format!(
                            "embedding set {set_id} has no window {window}: its windows are 0 to {}",
                            rows.saturating_sub(1)
                        ),
                        is_error: true,
                    });
                    None
                }
                Err(error) => {
                    notice = Some(Notice {
                        text: format!("the windows of embedding set {set_id} cannot be read ({})", error.message),
                        is_error: true,
                    });
                    None
                }
            }
        }
        None => None,
    };
    let (requested_start, requested_duration) = match chosen_window {
        Some((start, duration)) => (Some(start), Some(duration)),
        None => (parameters.start, parameters.duration),
    };
    let nyquist = f64::from(detail.file.sample_rate) / 2.0;
    let start = requested_start.filter(|start| start.is_finite() && *start >= 0.0 && *start < length).unwrap_or(0.0);
    let duration = requested_duration
        .filter(|duration| duration.is_finite() && *duration > 0.0)
        .unwrap_or(DEFAULT_VIEW_SECONDS)
        .min(crate::http::media_api::MAX_RANGE_SECONDS)
        .min((length - start).max(0.001));
    let metadata_form = form
        .unwrap_or_else(|| MetadataForm { texts: metadata_texts(detail.metadata.as_ref()), ..MetadataForm::default() });
    let tiles_set = detail
        .embedding_sets
        .iter()
        .find(|set| Some(set.id) == parameters.embedding_set)
        .or_else(|| detail.embedding_sets.iter().max_by_key(|set| set.id))
        .cloned();
    let window_tiles = match &tiles_set {
        Some(set) => windows_in_range(state, set, &detail.file.filename, start, start + duration).await,
        None => Vec::new(),
    };
    let known_labels = {
        let state = state.clone();
        blocking_page(move || super::clustering::known_labels(&state)).await.unwrap_or_default()
    };
    let score_track = score_track(state, id, parameters.detection_job, start, start + duration).await;
    Ok(RecordingDetailView {
        score_track,
        window_tiles,
        window_tiles_set: tiles_set.map(|set| set.id),
        known_labels,
        edit_count: detail.metadata.as_ref().map_or(0, |metadata| metadata.edit_count),
        file: detail.file,
        metadata_form,
        metadata_edits: edits,
        recorded_at_history,
        processing_jobs: detail.processing_jobs,
        embedding_sets: detail.embedding_sets,
        view_start_seconds: (start * 1000.0).round() / 1000.0,
        view_duration_seconds: (duration * 1000.0).round() / 1000.0,
        view_max_frequency_hz: parameters.max_frequency.filter(|hz| hz.is_finite() && *hz >= 10.0 && *hz < nyquist),
        notice,
        queue_defaults: queue_defaults(model_names),
        events_after,
        annotations,
    })
}

/// The scores of a recording's windows in `from..to` seconds from a detection job's
/// `scores.parquet`: the one asked for, else the latest completed job that scored one of the
/// recording's sets. `None` when there is none or its file cannot be read.
async fn score_track(
    state: &ApiState,
    audio: u64,
    requested_job: Option<u64>,
    from: f64,
    to: f64,
) -> Option<crate::views::classifiers::ScoreTrack> {
    use crate::domain::ids::AudioFileId;
    use crate::domain::state::JobStatus;
    let (job_id, threshold) = state.humpback.writer.read_state(|s| {
        s.detection_jobs
            .iter()
            .filter(|(id, job)| {
                job.status == JobStatus::Complete
                    && requested_job.is_none_or(|wanted| wanted == id.0)
                    && job
                        .embedding_set_ids
                        .iter()
                        .any(|set| s.embedding_sets.get(set).is_some_and(|set| set.audio_file_id == AudioFileId(audio)))
            })
            .map(|(id, job)| (*id, job.threshold))
            .next_back()
    })?;
    let path = state.humpback.artifact_path(&crate::classifier::detection_worker::scores_path(job_id)).await.ok()?;
    let table = tokio::task::spawn_blocking(move || crate::classifier::scores_parquet::read_scores(&path, Some(audio)))
        .await
        .ok()?
        .ok()?;
    let mut windows: Vec<(f64, f64, Vec<f64>)> = table
        .windows
        .into_iter()
        .filter(|window| window.place.end_seconds > from && window.place.start_seconds < to)
        .map(|window| (window.place.start_seconds, window.place.end_seconds, window.scores))
        .collect();
    windows.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some(crate::views::classifiers::ScoreTrack { detection_job_id: job_id.0, threshold, labels: table.labels, windows })
}

/// At most this many window tiles on a recording page.
const WINDOW_TILES_SHOWN: usize = 60;

/// The windows of `set` that overlap `from..to` seconds, as tiles (times from the set's
/// Parquet; none when it cannot be read).
async fn windows_in_range(
    state: &ApiState,
    set: &crate::projections::queries::EmbeddingSetRow,
    recording: &str,
    from: f64,
    to: f64,
) -> Vec<crate::views::WindowTile> {
    let Ok(path) = state.humpback.artifact_path(&set.parquet_path).await else { return Vec::new() };
    let (set_id, audio, recording) = (set.id, set.audio_file_id, recording.to_string());
    let times = tokio::task::spawn_blocking(move || crate::artifacts::embeddings_parquet::all_window_times(&path))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let mut rows: Vec<(u64, (f64, f64))> =
        times.into_iter().filter(|(_, (start, end))| *end > from && *start < to).collect();
    rows.sort_by_key(|(row, _)| *row);
    rows.into_iter()
        .take(WINDOW_TILES_SHOWN)
        .map(|(row, (start, end))| crate::views::WindowTile {
            audio_file_id: audio,
            recording: recording.clone(),
            start_seconds: start,
            duration_seconds: (end - start).max(0.0),
            embedding_set_id: Some(set_id),
            row_index: Some(row),
            caption: Some(format!("row {row}")),
            review_label: None,
        })
        .collect()
}

pub async fn detail(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    parameters: Result<Query<DetailParameters>, QueryRejection>,
    Query(notice): Query<NoticeParameters>,
) -> PageResult {
    let id = parse_page_id(&id, "recording")?;
    let Query(parameters) = parameters?;
    let view = detail_view(&state, id, &parameters, None, notice.to_notice()).await?;
    Ok(page(StatusCode::OK, recording_detail_page(&view)))
}

#[derive(Debug, Deserialize, Default)]
pub struct MetadataFormFields {
    pub tag_data: Option<String>,
    pub visual_observations: Option<String>,
    pub group_composition: Option<String>,
    pub prey_density_proxy: Option<String>,
}

/// Checks the four texts: each must be empty (meaning `{}`) or a JSON object. Returns the
/// objects, or the form with an error next to each bad field and the person's text kept.
pub fn validate_metadata_form(
    texts: [String; 4],
) -> Result<serde_json::Map<String, serde_json::Value>, Box<MetadataForm>> {
    let mut errors: [Option<String>; 4] = Default::default();
    let mut body = serde_json::Map::new();
    for (index, text) in texts.iter().enumerate() {
        let field = METADATA_FIELDS[index];
        if text.trim().is_empty() {
            body.insert(field.to_string(), serde_json::json!({}));
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value @ serde_json::Value::Object(_)) => {
                body.insert(field.to_string(), value);
            }
            Ok(other) => {
                let kind = match other {
                    serde_json::Value::Array(_) => "an array",
                    serde_json::Value::String(_) => "a string",
                    serde_json::Value::Number(_) => "a number",
                    serde_json::Value::Bool(_) => "a boolean",
                    _ => "null",
                };
                errors[index] =
                    Some(format!("{field} must be a JSON object (like {{\"behaviour\": \"feeding\"}}), not {kind}"));
            }
            Err(error) => errors[index] = Some(format!("{field} is not valid JSON: {error}")),
        }
    }
    if errors.iter().any(Option::is_some) {
        return Err(Box::new(MetadataForm { texts, errors, general_error: None }));
    }
    Ok(body)
}

/// `POST /audio/{id}/metadata` (form: the four fields): replaces the metadata, or shows the
/// form again with the errors and the text as typed.
pub async fn save_metadata(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    form: Result<Form<MetadataFormFields>, FormRejection>,
) -> PageResult {
    let id = parse_page_id(&id, "recording")?;
    let Form(fields) = form?;
    let texts = [
        fields.tag_data.unwrap_or_default(),
        fields.visual_observations.unwrap_or_default(),
        fields.group_composition.unwrap_or_default(),
        fields.prey_density_proxy.unwrap_or_default(),
    ];
    let body = match validate_metadata_form(texts.clone()) {
        Ok(body) => body,
        Err(form) => return rerender_metadata(&state, id, *form).await,
    };
    let bytes = serde_json::to_vec(&serde_json::Value::Object(body)).unwrap_or_default();
    let parsed = match audio_api::parse_metadata_body(&bytes) {
        Ok(parsed) => parsed,
        Err(error) => {
            let form = MetadataForm { texts, general_error: Some(error.message), ..MetadataForm::default() };
            return rerender_metadata(&state, id, form).await;
        }
    };
    let [tag_data, visual_observations, group_composition, prey_density_proxy] =
        parsed.map(|field| Some(field.unwrap_or_else(JsonText::empty_object)));
    let command = Command::EditAudioMetadata(EditAudioMetadata {
        audio_file_id: AudioFileId(id),
        mode: MetadataEditMode::Replace,
        tag_data,
        visual_observations,
        group_composition,
        prey_density_proxy,
        edited_by: Some("web".into()),
    });
    match state.humpback.execute(command).await {
        Ok(_) => Ok(redirect_with_notice(&format!("/audio/{id}"), "metadata saved", false)),
        Err(error) => {
            let error = ApiError::from(error);
            if error.status == StatusCode::NOT_FOUND {
                return Err(HtmlError::not_found(format!("there is no recording {id}")));
            }
            if error.status.is_server_error() {
                return Err(error.into());
            }
            let form = MetadataForm { texts, general_error: Some(error.message), ..MetadataForm::default() };
            rerender_metadata(&state, id, form).await
        }
    }
}

async fn rerender_metadata(state: &ApiState, id: u64, form: MetadataForm) -> Result<Response, HtmlError> {
    let view = detail_view(state, id, &DetailParameters::default(), Some(form), None).await?;
    Ok(page(StatusCode::UNPROCESSABLE_ENTITY, recording_detail_page(&view)))
}
