//! Raven selection tables (and CSV): export a recording's annotations or clustered windows, a
//! clustering job's windows, or an annotation query; import a table as annotations.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::annotations_api::{added_ids, request_user, ListParameters};
use super::audio_api::parse_id;
use super::{blocking, ApiError, ApiState};
use crate::catalogue::import::{plan_import, ImportError, ImportOptions, ImportPlan};
use crate::catalogue::raven::{write_selection_table, Selection, SelectionFile, TableColumns, TableFormat};
use crate::clustering_jobs::outputs::read_assignments;
use crate::domain::decide::{AddAnnotations, Command, NewAnnotation};
use crate::domain::ids::{AudioFileId, EmbeddingSetId};
use crate::domain::state::DomainState;
use crate::projections::annotation_queries::{self, AnnotationRow};

/// The largest selection table an import reads.
pub const MAX_TABLE_BYTES: usize = 16 * 1024 * 1024;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/audio/{id}/selections.txt", get(audio_selections_raven))
        .route("/api/audio/{id}/selections.csv", get(audio_selections_csv))
        .route("/api/clustering-jobs/{id}/selections.txt", get(clustering_selections_raven))
        .route("/api/clustering-jobs/{id}/selections.csv", get(clustering_selections_csv))
        .route("/api/annotations/selections.txt", get(annotation_selections_raven))
        .route("/api/annotations/selections.csv", get(annotation_selections_csv))
        .route("/api/annotations.csv", get(annotation_selections_csv))
        .route(
            "/api/annotations/import",
            post(import).layer(axum::extract::DefaultBodyLimit::max(MAX_TABLE_BYTES + 64 * 1024)),
        )
}

#[derive(Debug, Deserialize, Default)]
pub struct ExportParameters {
    /// `raven` (tab-separated, the default for `.txt`) or `csv`.
    pub format: Option<String>,
    pub clustering_job_id: Option<u64>,
    pub audio_file_id: Option<u64>,
    pub label: Option<String>,
    pub kind: Option<String>,
}

impl ExportParameters {
    fn format(&self, default: TableFormat) -> Result<TableFormat, ApiError> {
        match self.format.as_deref() {
            None => Ok(default),
            Some(text) => TableFormat::parse(text)
                .ok_or_else(|| ApiError::bad_request(format!("format {text:?} is not raven or csv"))),
        }
    }
}

pub(crate) fn table_response(text: String, format: TableFormat, name: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}.{}\"", format.extension())),
        ],
        text,
    )
        .into_response()
}

pub(super) fn selection_file(state: &DomainState, audio: AudioFileId) -> Option<(SelectionFile, f64)> {
    let file = state.audio_files.get(&audio)?;
    Some((
        SelectionFile {
            key: audio.0,
            name: file.original_filename.clone(),
            folder: file.folder.clone(),
            duration_seconds: file.duration_seconds,
            recorded_at: state.recorded_at(audio),
        },
        f64::from(file.sample_rate) / 2.0,
    ))
}

/// A search's ranked windows as a multi-file table with their `Score`, best first.
pub(crate) fn search_table(
    state: &crate::domain::state::DomainState,
    answer: &crate::search::SearchAnswer,
    format: TableFormat,
) -> String {
    let selections: Vec<Selection> = answer
        .results
        .iter()
        .filter_map(|result| {
            let (file, nyquist) = selection_file(state, AudioFileId(result.audio_file_id))?;
            Some(Selection {
                file,
                start_seconds: result.start_seconds,
                end_seconds: result.end_seconds,
                low_hz: 0.0,
                high_hz: nyquist,
                annotation: None,
                kind: None,
                cluster: None,
                score: Some(f64::from(result.score)),
            })
        })
        .collect();
    let columns = TableColumns { multi_file: true, score: true, ..TableColumns::default() };
    crate::catalogue::raven::write_selection_table(&selections, columns, format)
}

/// Annotations as selections (no band: 0 to the Nyquist frequency).
fn annotation_selections(state: &DomainState, rows: &[AnnotationRow]) -> Vec<Selection> {
    rows.iter()
        .filter_map(|row| {
            let (file, nyquist) = selection_file(state, AudioFileId(row.audio_file_id))?;
            Some(Selection {
                file,
                start_seconds: row.start_seconds,
                end_seconds: row.end_seconds,
                low_hz: row.low_hz.unwrap_or(0.0),
                high_hz: row.high_hz.unwrap_or(nyquist),
                annotation: Some(row.label.clone()),
                kind: Some(row.kind.clone()),
                cluster: None,
                score: None,
            })
        })
        .collect()
}

/// A clustering job's windows as selections, with their cluster and membership probability;
/// only those of `audio` when given. Ordered by recording, then time.
fn clustering_selections(state: &ApiState, job_id: u64, audio: Option<u64>) -> Result<Vec<Selection>, ApiError> {
    let job = state
        .humpback
        .reader
        .with_connection(|c| crate::projections::queries::clustering_job(c, job_id))?
        .ok_or_else(|| ApiError::not_found(format!("clustering job {job_id} does not exist")))?;
    let path = job.assignments_path.ok_or_else(|| {
        ApiError::new(StatusCode::CONFLICT, format!("clustering job {job_id} is {}, it has no windows yet", job.status))
    })?;
    let rows = read_assignments(&state.humpback.storage.readable_path(&path)?, |_| true)
        .map_err(|error| ApiError::internal(error.into()))?;
    let mut selections: Vec<(u64, Selection)> = state.humpback.writer.read_state(|s| {
        rows.iter()
            .filter_map(|row| {
                let audio_file_id = s.embedding_sets.get(&EmbeddingSetId(row.embedding_set_id))?.audio_file_id;
                if audio.is_some_and(|wanted| wanted != audio_file_id.0) {
                    return None;
                }
                let (file, nyquist) = selection_file(s, audio_file_id)?;
                let end_seconds = row.end_seconds.min(file.duration_seconds.max(row.start_seconds));
                Some((
                    audio_file_id.0,
                    Selection {
                        file,
                        start_seconds: row.start_seconds,
                        end_seconds,
                        low_hz: 0.0,
                        high_hz: nyquist,
                        annotation: None,
                        kind: None,
                        cluster: Some(row.cluster_label),
                        score: Some(f64::from(row.probability)),
                    },
                ))
            })
            .collect()
    });
    selections.sort_by(|(a, x), (b, y)| a.cmp(b).then(x.start_seconds.total_cmp(&y.start_seconds)));
    Ok(selections.into_iter().map(|(_, selection)| selection).collect())
}

const CLUSTER_COLUMNS: TableColumns =
    TableColumns { multi_file: false, annotation: false, kind: false, cluster: true, score: true };
const ANNOTATION_COLUMNS: TableColumns =
    TableColumns { multi_file: false, annotation: true, kind: true, cluster: false, score: false };

async fn audio_selections(
    state: ApiState,
    id: String,
    parameters: Result<Query<ExportParameters>, QueryRejection>,
    default: TableFormat,
) -> Result<Response, ApiError> {
    let Query(parameters) = parameters.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let format = parameters.format(default)?;
    let id = parse_id(&id, "audio file")?;
    if !state.humpback.writer.read_state(|s| s.audio_files.contains_key(&AudioFileId(id))) {
        return Err(ApiError::not_found(format!("audio file {id} does not exist")));
    }
    let text = blocking(move || match parameters.clustering_job_id {
        Some(job) => Ok(write_selection_table(&clustering_selections(&state, job, Some(id))?, CLUSTER_COLUMNS, format)),
        None => {
            let query = annotation_queries::AnnotationQuery { audio_file_id: Some(id), ..Default::default() };
            let rows = state.humpback.reader.with_connection(|c| annotation_queries::list_annotations(c, &query))?;
            let selections = state.humpback.writer.read_state(|s| annotation_selections(s, &rows.items));
            Ok(write_selection_table(&selections, ANNOTATION_COLUMNS, format))
        }
    })
    .await?;
    Ok(table_response(text, format, &format!("audio-{id}-selections")))
}

/// `GET /api/audio/{id}/selections.txt`: the recording's annotations (or, with
/// `clustering_job_id`, its windows in that job with their cluster).
pub async fn audio_selections_raven(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    parameters: Result<Query<ExportParameters>, QueryRejection>,
) -> Result<Response, ApiError> {
    audio_selections(state, id, parameters, TableFormat::Raven).await
}

pub async fn audio_selections_csv(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    parameters: Result<Query<ExportParameters>, QueryRejection>,
) -> Result<Response, ApiError> {
    audio_selections(state, id, parameters, TableFormat::Csv).await
}

async fn clustering_table(
    state: ApiState,
    id: String,
    parameters: Result<Query<ExportParameters>, QueryRejection>,
    default: TableFormat,
) -> Result<Response, ApiError> {
    let Query(parameters) = parameters.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let format = parameters.format(default)?;
    let id = parse_id(&id, "clustering job")?;
    let text = blocking(move || {
        let selections = clustering_selections(&state, id, None)?;
        Ok(write_selection_table(&selections, TableColumns { multi_file: true, ..CLUSTER_COLUMNS }, format))
    })
    .await?;
    Ok(table_response(text, format, &format!("clustering-{id}-selections")))
}

/// `GET /api/clustering-jobs/{id}/selections.txt`: every window of the job, multi-file.
pub async fn clustering_selections_raven(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    parameters: Result<Query<ExportParameters>, QueryRejection>,
) -> Result<Response, ApiError> {
    clustering_table(state, id, parameters, TableFormat::Raven).await
}

pub async fn clustering_selections_csv(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    parameters: Result<Query<ExportParameters>, QueryRejection>,
) -> Result<Response, ApiError> {
    clustering_table(state, id, parameters, TableFormat::Csv).await
}

async fn annotation_table(
    state: ApiState,
    parameters: Result<Query<ExportParameters>, QueryRejection>,
    default: TableFormat,
) -> Result<Response, ApiError> {
    let Query(parameters) = parameters.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let format = parameters.format(default)?;
    let query = ListParameters {
        audio_file_id: parameters.audio_file_id,
        label: parameters.label.clone(),
        kind: parameters.kind.clone(),
        offset: None,
        limit: None,
    }
    .to_query(false)?;
    let text = blocking(move || {
        let rows = state.humpback.reader.with_connection(|c| annotation_queries::list_annotations(c, &query))?;
        let selections = state.humpback.writer.read_state(|s| annotation_selections(s, &rows.items));
        Ok(write_selection_table(&selections, TableColumns { multi_file: true, ..ANNOTATION_COLUMNS }, format))
    })
    .await?;
    Ok(table_response(text, format, "annotations-selections"))
}

/// `GET /api/annotations/selections.txt?label=&kind=&audio_file_id=`: multi-file.
pub async fn annotation_selections_raven(
    State(state): State<ApiState>,
    parameters: Result<Query<ExportParameters>, QueryRejection>,
) -> Result<Response, ApiError> {
    annotation_table(state, parameters, TableFormat::Raven).await
}

/// `GET /api/annotations.csv` (and `/api/annotations/selections.csv`).
pub async fn annotation_selections_csv(
    State(state): State<ApiState>,
    parameters: Result<Query<ExportParameters>, QueryRejection>,
) -> Result<Response, ApiError> {
    annotation_table(state, parameters, TableFormat::Csv).await
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the selection table is larger than the limit of {MAX_TABLE_BYTES} bytes"),
        );
    }
    ApiError::new(error.status(), format!("the upload could not be read: {}", error.body_text()))
}

fn flag(text: &str, name: &str) -> Result<bool, ApiError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" | "0" | "false" | "no" | "off" => Ok(false),
        "1" | "true" | "yes" | "on" => Ok(true),
        other => Err(ApiError::unprocessable(format!("{name}: {other:?} is not true or false"))),
    }
}

fn planned_json(state: &DomainState, plan: &ImportPlan) -> Vec<Value> {
    plan.annotations
        .iter()
        .map(|planned| {
            let fields = &planned.fields;
            let filename = state
                .audio_files
                .get(&fields.audio_file_id)
                .map(|file| file.original_filename.clone())
                .unwrap_or_default();
            json!({
                "row": planned.row, "audio_file_id": fields.audio_file_id, "filename": filename,
                "start_seconds": fields.start_seconds, "end_seconds": fields.end_seconds,
                "low_hz": fields.low_hz, "high_hz": fields.high_hz, "label": fields.label,
                "kind": fields.kind, "note": fields.note,
            })
        })
        .collect()
}

/// `POST /api/annotations/import`: multipart `file` (a Raven selection table or CSV), `format`
/// (`raven` default, or `csv`), `audio_file_id`, `label_column` (default `Annotation`),
/// `kind_column`, `preview`, `skip_bad_rows`.
pub async fn import(
    State(state): State<ApiState>,
    headers: HeaderMap,
    multipart: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut multipart = multipart.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let mut table: Option<(String, Vec<u8>)> = None;
    let mut format = TableFormat::Raven;
    let mut audio_file_id = None;
    let mut label_column = "Annotation".to_string();
    let mut kind_column = None;
    let mut preview = false;
    let mut skip_bad_rows = false;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            let file_name: String = field.file_name().unwrap_or("selections.txt").chars().take(200).collect::<String>();
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                if bytes.len() + chunk.len() > MAX_TABLE_BYTES {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("the selection table is larger than the limit of {MAX_TABLE_BYTES} bytes"),
                    ));
                }
                bytes.extend_from_slice(&chunk);
            }
            table = Some((file_name, bytes));
            continue;
        }
        let text = field.text().await.map_err(multipart_error)?;
        match name.as_str() {
            "format" => {
                format = TableFormat::parse(&text)
                    .ok_or_else(|| ApiError::unprocessable(format!("format: {text:?} is not raven or csv")))?;
            }
            "audio_file_id" if !text.trim().is_empty() => {
                audio_file_id =
                    Some(AudioFileId(text.trim().parse().map_err(|_| {
                        ApiError::unprocessable(format!("audio_file_id: {text:?} is not a whole number"))
                    })?));
            }
            "label_column" if !text.trim().is_empty() => label_column = text.trim().to_string(),
            "kind_column" if !text.trim().is_empty() => kind_column = Some(text.trim().to_string()),
            "preview" => preview = flag(&text, "preview")?,
            "skip_bad_rows" => skip_bad_rows = flag(&text, "skip_bad_rows")?,
            _ => {}
        }
    }
    let (file_name, bytes) =
        table.ok_or_else(|| ApiError::unprocessable("the upload has no multipart field named \"file\""))?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let options = ImportOptions { format, audio_file_id, label_column, kind_column };
    let humpback = state.humpback.clone();
    let (planned, plan) = blocking(move || {
        humpback
            .writer
            .read_state(|s| plan_import(&text, &options, s).map(|plan| (planned_json(s, &plan), plan)))
            .map_err(|error| match error {
                ImportError::UnknownRecording(_) => ApiError::not_found(error.to_string()),
                other => ApiError::unprocessable(other.to_string()),
            })
    })
    .await?;
    let bad_rows = serde_json::to_value(&plan.bad_rows).unwrap_or_default();
    if preview {
        return Ok(Json(json!({
            "preview": true, "annotations": planned, "bad_rows": bad_rows, "duplicates": plan.duplicates,
        }))
        .into_response());
    }
    if !plan.bad_rows.is_empty() && !skip_bad_rows {
        let first = &plan.bad_rows[0];
        return Err(ApiError::unprocessable(format!(
            "{} bad rows, nothing was recorded (send skip_bad_rows=true to record the good ones); row {}: {}",
            plan.bad_rows.len(),
            first.row,
            first.reason
        ))
        .with_details(json!({ "bad_rows": bad_rows, "duplicates": plan.duplicates })));
    }
    let planned_count = plan.annotations.len();
    let mut ids = Vec::new();
    if planned_count > 0 {
        let source = format!("import:{file_name}");
        let annotations = plan
            .annotations
            .into_iter()
            .map(|planned| NewAnnotation { fields: planned.fields, source: source.clone() })
            .collect();
        let envelopes = state
            .humpback
            .execute(Command::AddAnnotations(AddAnnotations { annotations, created_by: request_user(&headers) }))
            .await?;
        ids = added_ids(&envelopes);
    }
    let duplicates = plan.duplicates + (planned_count - ids.len());
    let status = if ids.is_empty() { StatusCode::OK } else { StatusCode::CREATED };
    let rows = blocking(move || {
        Ok(state.humpback.reader.with_connection(|c| annotation_queries::annotations_by_ids(c, &ids))?)
    })
    .await?;
    Ok((
        status,
        Json(json!({ "count": rows.len(), "annotations": rows, "bad_rows": bad_rows, "duplicates": duplicates })),
    )
        .into_response())
}
