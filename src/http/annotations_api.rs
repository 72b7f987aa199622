//! Annotations: add (one or many), list, show, change, remove, labels with counts, history,
//! and whole clusters or lists of windows annotated in one command.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::audio_api::parse_id;
use super::{blocking, ApiError, ApiState};
use crate::domain::annotation_rules::AnnotationFields;
use crate::domain::decide::{AddAnnotations, ChangeAnnotation, Command, NewAnnotation};
use crate::domain::events::{AnnotationKind, Event};
use crate::domain::ids::{AnnotationId, AudioFileId, EmbeddingSetId};
use crate::domain::state::DomainState;
use crate::log::Envelope;
use crate::projections::annotation_queries::{self, AnnotationQuery, AnnotationRow, HistoryQuery};

/// Most windows one `POST /api/annotations/windows` may name.
pub const MAX_WINDOWS_PER_REQUEST: usize = 10_000;
const MAX_PAGE: u64 = 1000;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/annotations", get(list).post(add))
        .route("/api/annotations/history", get(history))
        .route("/api/annotations/windows", post(annotate_windows))
        .route("/api/annotations/{id}", get(show).patch(change).delete(remove))
        .route("/api/annotations/{id}/history", get(annotation_history))
        .route("/api/labels", get(labels))
        .route("/api/clusters/{id}/annotate", post(annotate_cluster))
}

/// Who is asking, from `x-humpback-user` (as for metadata edits), at most 200 characters.
pub fn request_user(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-humpback-user")
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().chars().take(200).collect::<String>())
        .filter(|value| !value.is_empty())
}

fn item_error(index: Option<usize>, field: &str, reason: impl std::fmt::Display) -> ApiError {
    let message = match index {
        Some(index) => format!("annotations[{index}].{field}: {reason}"),
        None => format!("{field}: {reason}"),
    };
    ApiError::unprocessable(message).with_details(json!({ "index": index, "field": field }))
}

fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|error| ApiError::unprocessable(format!("the body is not JSON: {error}")))
}

fn number_field(item: &Map<String, Value>, index: Option<usize>, field: &str) -> Result<Option<f64>, ApiError> {
    match item.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            value.as_f64().map(Some).ok_or_else(|| item_error(index, field, format!("must be a number, not {value}")))
        }
    }
}

fn text_field(item: &Map<String, Value>, index: Option<usize>, field: &str) -> Result<Option<String>, ApiError> {
    match item.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(value) => Err(item_error(index, field, format!("must be text, not {value}"))),
    }
}

fn kind_field(item: &Map<String, Value>, index: Option<usize>) -> Result<Option<AnnotationKind>, ApiError> {
    match text_field(item, index, "kind")? {
        None => Ok(None),
        Some(text) => AnnotationKind::parse(&text)
            .map(Some)
            .ok_or_else(|| item_error(index, "kind", format!("{text:?} is not positive, negative or uncertain"))),
    }
}

const ITEM_FIELDS: &[&str] =
    &["audio_file_id", "start_seconds", "end_seconds", "low_hz", "high_hz", "label", "kind", "note"];

/// One annotation of a request body, with the failing field named.
pub fn parse_annotation_item(value: &Value, index: Option<usize>) -> Result<AnnotationFields, ApiError> {
    let Value::Object(item) = value else {
        return Err(item_error(index, "annotation", "must be a JSON object"));
    };
    if let Some(unknown) = item.keys().find(|key| !ITEM_FIELDS.contains(&key.as_str())) {
        return Err(item_error(
            index,
            unknown,
            format!("is not a field of an annotation ({})", ITEM_FIELDS.join(", ")),
        ));
    }
    let audio_file_id = match item.get("audio_file_id") {
        Some(value) => value.as_u64().ok_or_else(|| item_error(index, "audio_file_id", "must be a whole number"))?,
        None => return Err(item_error(index, "audio_file_id", "is required")),
    };
    let required = |field: &str| -> Result<f64, ApiError> {
        number_field(item, index, field)?.ok_or_else(|| item_error(index, field, "is required"))
    };
    Ok(AnnotationFields {
        audio_file_id: AudioFileId(audio_file_id),
        start_seconds: required("start_seconds")?,
        end_seconds: required("end_seconds")?,
        low_hz: number_field(item, index, "low_hz")?,
        high_hz: number_field(item, index, "high_hz")?,
        label: text_field(item, index, "label")?.ok_or_else(|| item_error(index, "label", "is required"))?,
        kind: kind_field(item, index)?.unwrap_or(AnnotationKind::Positive),
        note: text_field(item, index, "note")?,
    })
}

/// The annotations an accepted command recorded (their ids, in order).
pub fn added_ids(envelopes: &[Envelope]) -> Vec<u64> {
    envelopes
        .iter()
        .filter_map(|envelope| match &envelope.event {
            Event::AnnotationsAdded(added) => Some(added.annotations.iter().map(|a| a.annotation_id.0)),
            _ => None,
        })
        .flatten()
        .collect()
}

fn load_annotation(state: &ApiState, id: u64) -> Result<AnnotationRow, ApiError> {
    state
        .humpback
        .reader
        .with_connection(|c| annotation_queries::annotation(c, id))?
        .ok_or_else(|| ApiError::not_found(format!("annotation {id} does not exist")))
}

/// `POST /api/annotations`: one annotation object, or `{"annotations": [...]}`. All or nothing.
pub async fn add(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let body = json_body(&body)?;
    let (items, single) = match &body {
        Value::Object(fields) if fields.contains_key("annotations") => match &fields["annotations"] {
            Value::Array(items) => (items.iter().enumerate().map(|(i, v)| (Some(i), v)).collect::<Vec<_>>(), false),
            other => return Err(item_error(None, "annotations", format!("must be a list, not {other}"))),
        },
        Value::Object(_) => (vec![(None, &body)], true),
        _ => return Err(ApiError::unprocessable("the body must be an annotation object or {\"annotations\": [...]}")),
    };
    if items.is_empty() {
        return Err(item_error(None, "annotations", "the list is empty"));
    }
    let mut annotations = Vec::with_capacity(items.len());
    for (index, value) in items {
        annotations.push(NewAnnotation { fields: parse_annotation_item(value, index)?, source: "manual".into() });
    }
    let given = annotations.len();
    let envelopes = state
        .humpback
        .execute(Command::AddAnnotations(AddAnnotations { annotations, created_by: request_user(&headers) }))
        .await
        .map_err(|error| {
            // A single object's error names its field without an index.
            let mut error = ApiError::from(error);
            if single {
                error.message = error.message.replacen("annotations[0].", "", 1);
                if let Some(Value::Object(details)) = &mut error.details {
                    details.insert("index".into(), Value::Null);
                }
            }
            error
        })?;
    let ids = added_ids(&envelopes);
    let rows = blocking(move || {
        Ok(state.humpback.reader.with_connection(|c| annotation_queries::annotations_by_ids(c, &ids))?)
    })
    .await?;
    let status = if rows.is_empty() { StatusCode::OK } else { StatusCode::CREATED };
    let mut answer = json!({ "count": rows.len(), "duplicates": given - rows.len() });
    if let (true, [row]) = (single, rows.as_slice()) {
        // One object in, the annotation out (also listed under "annotations").
        if let (Value::Object(answer), Ok(Value::Object(row))) = (&mut answer, serde_json::to_value(row)) {
            answer.extend(row);
        }
    }
    answer["annotations"] = serde_json::to_value(&rows).unwrap_or_default();
    Ok((status, Json(answer)).into_response())
}

#[derive(Debug, Deserialize, Default)]
pub struct ListParameters {
    pub audio_file_id: Option<u64>,
    pub label: Option<String>,
    pub kind: Option<String>,
    pub offset: Option<u64>,
    pub limit: Option<u64>,
}

impl ListParameters {
    /// The query, with `kind` checked; `limit` `None` for every match.
    pub fn to_query(&self, paged: bool) -> Result<AnnotationQuery, ApiError> {
        let kind = match self.kind.as_deref().map(str::trim).filter(|kind| !kind.is_empty()) {
            None => None,
            Some(text) => Some(
                AnnotationKind::parse(text)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("kind {text:?} is not positive, negative or uncertain"))
                    })?
                    .as_str()
                    .to_string(),
            ),
        };
        Ok(AnnotationQuery {
            audio_file_id: self.audio_file_id,
            label: self.label.as_deref().map(str::trim).filter(|label| !label.is_empty()).map(str::to_string),
            kind,
            offset: if paged { self.offset.unwrap_or(0) } else { 0 },
            limit: paged.then(|| self.limit.unwrap_or(100).clamp(1, MAX_PAGE)),
        })
    }
}

/// `GET /api/annotations?audio_file_id=&label=&kind=&offset=&limit=`: a page, with `total`.
pub async fn list(
    State(state): State<ApiState>,
    parameters: Result<Query<ListParameters>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(parameters) = parameters.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let query = parameters.to_query(true)?;
    let page = blocking(move || {
        Ok(state.humpback.reader.with_connection(|c| annotation_queries::list_annotations(c, &query))?)
    })
    .await?;
    Ok(Json(page).into_response())
}

pub async fn show(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<AnnotationRow>, ApiError> {
    let id = parse_id(&id, "annotation")?;
    blocking(move || load_annotation(&state, id).map(Json)).await
}

const CHANGE_FIELDS: &[&str] = &["start_seconds", "end_seconds", "low_hz", "high_hz", "label", "kind", "note"];

/// `PATCH /api/annotations/{id}`: any of the fields; `null` clears `low_hz`, `high_hz`, `note`.
pub async fn change(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<AnnotationRow>, ApiError> {
    let id = parse_id(&id, "annotation")?;
    let Value::Object(fields) = json_body(&body)? else {
        return Err(ApiError::unprocessable("the body must be a JSON object of the fields to change"));
    };
    if let Some(unknown) = fields.keys().find(|key| !CHANGE_FIELDS.contains(&key.as_str())) {
        return Err(item_error(None, unknown, format!("cannot be changed (fields: {})", CHANGE_FIELDS.join(", "))));
    }
    let nullable_number = |field: &str| -> Result<Option<Option<f64>>, ApiError> {
        if fields.contains_key(field) {
            Ok(Some(number_field(&fields, None, field)?))
        } else {
            Ok(None)
        }
    };
    let not_null = |field: &str| -> Result<(), ApiError> {
        match fields.get(field) {
            Some(Value::Null) => Err(item_error(None, field, "cannot be cleared")),
            _ => Ok(()),
        }
    };
    for field in ["start_seconds", "end_seconds", "label", "kind"] {
        not_null(field)?;
    }
    let command = ChangeAnnotation {
        annotation_id: AnnotationId(id),
        start_seconds: number_field(&fields, None, "start_seconds")?,
        end_seconds: number_field(&fields, None, "end_seconds")?,
        low_hz: nullable_number("low_hz")?,
        high_hz: nullable_number("high_hz")?,
        label: text_field(&fields, None, "label")?,
        kind: kind_field(&fields, None)?,
        note: if fields.contains_key("note") { Some(text_field(&fields, None, "note")?) } else { None },
        changed_by: request_user(&headers),
    };
    state.humpback.execute(Command::ChangeAnnotation(command)).await?;
    blocking(move || load_annotation(&state, id).map(Json)).await
}

/// `DELETE /api/annotations/{id}`.
pub async fn remove(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "annotation")?;
    state
        .humpback
        .execute(Command::RemoveAnnotation { annotation_id: AnnotationId(id), removed_by: request_user(&headers) })
        .await?;
    Ok(Json(json!({ "id": id, "removed": true })))
}

/// `GET /api/labels`: every label with its counts by kind.
pub async fn labels(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let labels = blocking(move || Ok(state.humpback.reader.with_connection(annotation_queries::labels)?)).await?;
    let items: Vec<Value> = labels
        .iter()
        .map(|label| {
            json!({
                "label": label.label, "total": label.total, "positive": label.positive,
                "negative": label.negative, "uncertain": label.uncertain,
                "counts": {"positive": label.positive, "negative": label.negative, "uncertain": label.uncertain},
            })
        })
        .collect();
    Ok(Json(Value::Array(items)))
}

#[derive(Debug, Deserialize, Default)]
pub struct HistoryParameters {
    pub audio_file_id: Option<u64>,
    pub label: Option<String>,
    pub limit: Option<u64>,
}

/// `GET /api/annotations/history?audio_file_id=&label=`: what happened to annotations, newest first.
pub async fn history(
    State(state): State<ApiState>,
    parameters: Result<Query<HistoryParameters>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(parameters) = parameters.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let query = HistoryQuery {
        annotation_id: None,
        audio_file_id: parameters.audio_file_id,
        label: parameters.label.map(|label| label.trim().to_string()).filter(|label| !label.is_empty()),
        limit: parameters.limit.unwrap_or(100).clamp(1, MAX_PAGE),
    };
    let rows = blocking(move || {
        Ok(state.humpback.reader.with_connection(|c| annotation_queries::annotation_history(c, &query))?)
    })
    .await?;
    Ok(Json(rows).into_response())
}

/// `GET /api/annotations/{id}/history`: one annotation's life, newest first (also after removal).
pub async fn annotation_history(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id(&id, "annotation")?;
    let query = HistoryQuery { annotation_id: Some(id), limit: MAX_PAGE, ..HistoryQuery::default() };
    let rows = blocking(move || {
        Ok(state.humpback.reader.with_connection(|c| annotation_queries::annotation_history(c, &query))?)
    })
    .await?;
    if rows.is_empty() {
        return Err(ApiError::not_found(format!("annotation {id} does not exist")));
    }
    Ok(Json(rows).into_response())
}

/// The label, kind and note of a bulk annotation request.
struct BulkLabel {
    label: String,
    kind: AnnotationKind,
    note: Option<String>,
}

fn parse_bulk_label(body: &Map<String, Value>) -> Result<BulkLabel, ApiError> {
    Ok(BulkLabel {
        label: text_field(body, None, "label")?.ok_or_else(|| item_error(None, "label", "is required"))?,
        kind: kind_field(body, None)?.unwrap_or(AnnotationKind::Positive),
        note: text_field(body, None, "note")?,
    })
}

/// An annotation over one window: its span (cut at the recording's end, since the last window
/// of a padded recording reaches past it).
fn window_fields(
    state: &DomainState,
    set: EmbeddingSetId,
    start_seconds: f64,
    end_seconds: f64,
    label: &BulkLabel,
) -> Option<AnnotationFields> {
    let audio_file_id = state.embedding_sets.get(&set)?.audio_file_id;
    let duration = state.audio_files.get(&audio_file_id)?.duration_seconds;
    Some(AnnotationFields {
        audio_file_id,
        start_seconds,
        end_seconds: end_seconds.min(duration),
        low_hz: None,
        high_hz: None,
        label: label.label.clone(),
        kind: label.kind,
        note: label.note.clone(),
    })
}

async fn add_bulk(
    state: &ApiState,
    fields: Vec<AnnotationFields>,
    source: String,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let given = fields.len();
    let annotations = fields.into_iter().map(|fields| NewAnnotation { fields, source: source.clone() }).collect();
    let envelopes = state
        .humpback
        .execute(Command::AddAnnotations(AddAnnotations { annotations, created_by: request_user(headers) }))
        .await?;
    let ids = added_ids(&envelopes);
    let status = if ids.is_empty() { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(json!({ "count": ids.len(), "ids": ids, "duplicates": given - ids.len() }))).into_response())
}

/// `POST /api/clusters/{cluster_id}/annotate {"label", "kind"}`: every member window's span.
pub async fn annotate_cluster(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "cluster")?;
    let Value::Object(body) = json_body(&body)? else {
        return Err(ApiError::unprocessable("the body must be {\"label\": ..., \"kind\": ...}"));
    };
    let label = parse_bulk_label(&body)?;
    let fields = blocking({
        let state = state.clone();
        move || {
            let (cluster, job) = state
                .humpback
                .reader
                .with_connection(|c| {
                    let Some(cluster) = crate::projections::queries::cluster(c, id)? else { return Ok(None) };
                    let job = crate::projections::queries::clustering_job(c, cluster.clustering_job_id)?;
                    Ok(job.map(|job| (cluster, job)))
                })?
                .ok_or_else(|| ApiError::not_found(format!("cluster {id} does not exist")))?;
            let path = job
                .assignments_path
                .ok_or_else(|| ApiError::internal(anyhow::anyhow!("a complete job has no assignments")))?;
            let members = crate::clustering_jobs::outputs::read_assignments(
                &state.humpback.storage.readable_path(&path)?,
                |row| row.cluster_label == cluster.label,
            )
            .map_err(|error| ApiError::internal(error.into()))?;
            Ok(state.humpback.writer.read_state(|s| {
                members
                    .iter()
                    .filter_map(|row| {
                        window_fields(
                            s,
                            EmbeddingSetId(row.embedding_set_id),
                            row.start_seconds,
                            row.end_seconds,
                            &label,
                        )
                    })
                    .collect::<Vec<_>>()
            }))
        }
    })
    .await?;
    if fields.is_empty() {
        return Err(ApiError::unprocessable(format!("cluster {id} has no windows to annotate")));
    }
    add_bulk(&state, fields, format!("cluster:{id}"), &headers).await
}

/// `POST /api/annotations/windows {"windows": [{"embedding_set_id", "row_index"}], "label", "kind"}`.
pub async fn annotate_windows(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Value::Object(body) = json_body(&body)? else {
        return Err(ApiError::unprocessable("the body must be {\"windows\": [...], \"label\": ..., \"kind\": ...}"));
    };
    let label = parse_bulk_label(&body)?;
    let windows: Vec<(u64, u64)> = match body.get("windows") {
        Some(Value::Array(windows)) => windows
            .iter()
            .enumerate()
            .map(|(index, window)| {
                let number = |field: &str| {
                    window.get(field).and_then(Value::as_u64).ok_or_else(|| {
                        ApiError::unprocessable(format!("windows[{index}].{field}: must be a whole number"))
                            .with_details(json!({"index": index, "field": field}))
                    })
                };
                Ok((number("embedding_set_id")?, number("row_index")?))
            })
            .collect::<Result<_, ApiError>>()?,
        _ => return Err(item_error(None, "windows", "must be a list of {\"embedding_set_id\", \"row_index\"}")),
    };
    if windows.is_empty() || windows.len() > MAX_WINDOWS_PER_REQUEST {
        return Err(item_error(None, "windows", format!("give 1 to {MAX_WINDOWS_PER_REQUEST} windows")));
    }
    let fields = blocking({
        let state = state.clone();
        move || {
            let sets: BTreeMap<u64, String> = state.humpback.writer.read_state(|s| {
                windows
                    .iter()
                    .filter_map(|(set, _)| {
                        s.embedding_sets.get(&EmbeddingSetId(*set)).map(|x| (*set, x.parquet_path.clone()))
                    })
                    .collect()
            });
            // Each set's times are read once (only the time columns).
            let mut times: BTreeMap<u64, std::collections::HashMap<u64, (f64, f64)>> = BTreeMap::new();
            let mut spans = Vec::with_capacity(windows.len());
            for (index, (set, row)) in windows.iter().enumerate() {
                let path = sets.get(set).ok_or_else(|| {
                    ApiError::unprocessable(format!(
                        "windows[{index}].embedding_set_id: embedding set {set} does not exist"
                    ))
                    .with_details(json!({"index": index, "field": "embedding_set_id"}))
                })?;
                if !times.contains_key(set) {
                    let read = crate::artifacts::embeddings_parquet::all_window_times(
                        &state.humpback.storage.readable_path(path)?,
                    )
                    .map_err(|error| ApiError::internal(error.into()))?;
                    times.insert(*set, read);
                }
                let span = times.get(set).and_then(|rows| rows.get(row)).copied().ok_or_else(|| {
                    ApiError::unprocessable(format!("windows[{index}].row_index: embedding set {set} has no row {row}"))
                        .with_details(json!({"index": index, "field": "row_index"}))
                })?;
                spans.push((*set, span));
            }
            Ok(state.humpback.writer.read_state(|s| {
                spans
                    .iter()
                    .filter_map(|(set, (start, end))| window_fields(s, EmbeddingSetId(*set), *start, *end, &label))
                    .collect::<Vec<_>>()
            }))
        }
    })
    .await?;
    add_bulk(&state, fields, "windows".into(), &headers).await
}
