//! When recordings started and when windows happened: a recording's start time (read, set,
//! cleared, read again for a folder at an offset), a folder's time line with its gaps and
//! overlaps, and a clustering job's windows per cluster over time.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::audio_api::parse_id;
use super::{blocking, ApiError, ApiState};
use crate::domain::decide::{Command, SetRecordingStartTime};
use crate::domain::ids::{AudioFileId, EmbeddingSetId};
use crate::projections::queries;
use crate::projections::recording_time_queries::{self, FolderRecordingRow, RecordingTimeEditRow};
use crate::recording_time::occurrence::{count_occurrences, OccurrenceBin, OccurrenceCount};
use crate::recording_time::timeline::{gaps_and_overlaps, TimelineGap, TimelineOverlap, TimelineRecording};
use crate::recording_time::{find_recording_time, window_start_utc, RecordingTimeSource, UtcOffset, UtcTime};

/// The response header saying how many windows an occurrence count left out (start unknown).
pub const WINDOWS_WITHOUT_START_HEADER: &str = "x-humpback-windows-without-start";

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/audio/recorded-at", post(reread_folder))
        .route("/api/audio/timeline", get(timeline))
        .route("/api/audio/{id}/recorded-at", get(show_recorded_at).put(put_recorded_at))
        .route("/api/clustering-jobs/{id}/occurrence", get(occurrence))
}

/// Who a request says it is (`x-humpback-user`), at most 200 characters.
pub fn request_user(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-humpback-user")
        .and_then(|value| value.to_str().ok())
        .map(|value| value.chars().take(200).collect::<String>())
        .filter(|value| !value.trim().is_empty())
}

#[derive(Debug, Serialize)]
pub struct RecordedAtResponse {
    pub audio_file_id: u64,
    pub recorded_at: Option<String>,
    pub recorded_at_source: Option<String>,
    /// Every change, newest first.
    pub history: Vec<RecordingTimeEditRow>,
}

pub fn load_recorded_at(state: &ApiState, id: u64) -> Result<RecordedAtResponse, ApiError> {
    state.humpback.reader.with_connection(|connection| {
        let Some(file) = queries::audio_file(connection, id)? else {
            return Ok(Err(ApiError::not_found(format!("audio file {id} does not exist"))));
        };
        Ok(Ok(RecordedAtResponse {
            audio_file_id: id,
            recorded_at: file.recorded_at,
            recorded_at_source: file.recorded_at_source,
            history: recording_time_queries::recording_time_edits(connection, id)?,
        }))
    })?
}

async fn show_recorded_at(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<RecordedAtResponse>, ApiError> {
    let id = parse_id(&id, "audio file")?;
    blocking(move || load_recorded_at(&state, id).map(Json)).await
}

/// Parses `{"recorded_at": "2024-07-01T06:30:00Z" | null}`.
pub fn parse_recorded_at_body(body: &[u8]) -> Result<Option<UtcTime>, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::unprocessable(format!("the body is not valid JSON: {error}")))?;
    let field = value.as_object().and_then(|object| object.get("recorded_at")).ok_or_else(|| {
        ApiError::unprocessable(r#"the body must be {"recorded_at": "2024-07-01T06:30:00Z"} (or null for unknown)"#)
    })?;
    match field {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(text) => {
            UtcTime::parse_iso8601(text).map(Some).map_err(|error| ApiError::unprocessable(error.to_string()))
        }
        _ => Err(ApiError::unprocessable("recorded_at must be an ISO 8601 string with a zone, or null")),
    }
}

/// Records a person's start time (or unknown) for one recording.
pub async fn set_recorded_at_by_hand(
    state: &ApiState,
    id: u64,
    recorded_at: Option<UtcTime>,
    set_by: Option<String>,
) -> Result<(), ApiError> {
    state
        .humpback
        .execute(Command::SetRecordingStartTimes(vec![SetRecordingStartTime {
            audio_file_id: AudioFileId(id),
            recorded_at,
            source: RecordingTimeSource::User,
            derivation: String::new(),
            set_by,
        }]))
        .await?;
    Ok(())
}

/// `PUT /api/audio/{id}/recorded-at {"recorded_at": "..." | null}`.
async fn put_recorded_at(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<RecordedAtResponse>, ApiError> {
    let id = parse_id(&id, "audio file")?;
    let recorded_at = parse_recorded_at_body(&body)?;
    set_recorded_at_by_hand(&state, id, recorded_at, request_user(&headers)).await?;
    blocking(move || load_recorded_at(&state, id).map(Json)).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RereadRequest {
    /// This folder and below; `""` for every recording.
    pub folder: String,
    /// Read local times (bext stamps and names) at this offset; none: each pattern's own (UTC
    /// for the built-in families).
    pub utc_offset: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct FileWithoutTime {
    pub audio_file_id: u64,
    pub filename: String,
}

#[derive(Debug, Serialize)]
pub struct RereadSummary {
    pub folder: String,
    pub utc_offset: String,
    /// Recordings whose start time changed.
    pub updated: Vec<u64>,
    pub unchanged: u64,
    /// Recordings whose name and file hold no time (left as they were).
    pub without_time: Vec<FileWithoutTime>,
}

/// Reads the start times of a folder's recordings again (bext, then name), local times at
/// `offset` when given, and records those that changed.
pub async fn reread_folder_times(
    state: &ApiState,
    folder: String,
    offset: Option<UtcOffset>,
    set_by: Option<String>,
) -> Result<RereadSummary, ApiError> {
    let folder = super::audio_api::clean_folder(&folder);
    let reader_state = state.clone();
    let reader_folder = folder.clone();
    let recordings: Vec<FolderRecordingRow> = blocking(move || {
        Ok(reader_state
            .humpback
            .reader
            .with_connection(|c| recording_time_queries::recordings_in_folder(c, &reader_folder))?)
    })
    .await?;
    if recordings.is_empty() {
        return Err(ApiError::not_found(format!("no recordings in folder {folder:?}")));
    }
    let storage = state.humpback.storage.clone();
    let patterns = state.humpback.settings.time_patterns.clone();
    let (changes, without_time) = blocking(move || {
        let mut changes = Vec::new();
        let mut without_time = Vec::new();
        for recording in recordings {
            // The stored path was built by the writer from the id and a fixed extension list.
            let path = storage.readable_path(&recording.stored_path).ok();
            match find_recording_time(path.as_deref(), &recording.filename, &patterns, offset) {
                Some(found) => changes.push(SetRecordingStartTime {
                    audio_file_id: AudioFileId(recording.audio_file_id),
                    recorded_at: Some(found.recorded_at),
                    source: found.source,
                    derivation: found.derivation,
                    set_by: set_by.clone(),
                }),
                None => without_time
                    .push(FileWithoutTime { audio_file_id: recording.audio_file_id, filename: recording.filename }),
            }
        }
        Ok((changes, without_time))
    })
    .await?;
    let considered = changes.len() as u64;
    let envelopes = state.humpback.execute(Command::SetRecordingStartTimes(changes)).await?;
    let updated: Vec<u64> = envelopes
        .iter()
        .flat_map(|envelope| envelope.event.aggregates())
        .filter_map(|aggregate| match aggregate {
            crate::domain::ids::AggregateRef::AudioFile(id) => Some(id.0),
            _ => None,
        })
        .collect();
    Ok(RereadSummary {
        folder,
        utc_offset: offset.map_or_else(|| "as each pattern says".to_string(), |offset| offset.to_string()),
        unchanged: considered - updated.len() as u64,
        updated,
        without_time,
    })
}

/// `POST /api/audio/recorded-at {"folder": "site-a", "utc_offset": "+10:00"}`.
async fn reread_folder(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<RereadSummary>, ApiError> {
    let request: RereadRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::unprocessable(format!(
            r#"the body must be {{"folder": "site-a", "utc_offset": "+10:00"}} (utc_offset optional): {error}"#
        ))
    })?;
    let offset = request
        .utc_offset
        .as_deref()
        .map(UtcOffset::parse)
        .transpose()
        .map_err(|error| ApiError::unprocessable(error.to_string()))?;
    reread_folder_times(&state, request.folder, offset, request_user(&headers)).await.map(Json)
}

#[derive(Debug, Deserialize, Default)]
pub struct TimelineParameters {
    pub folder: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    pub audio_file_id: u64,
    pub filename: String,
    pub folder: String,
    pub recorded_at: String,
    pub ends_at: String,
    pub duration_seconds: f64,
    pub recorded_at_source: Option<String>,
    #[serde(skip)]
    pub start: UtcTime,
    #[serde(skip)]
    pub end: UtcTime,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub folder: String,
    /// By start time.
    pub recordings: Vec<TimelineEntry>,
    pub without_start: Vec<FileWithoutTimeRow>,
    pub gaps: Vec<TimelineGap>,
    pub overlaps: Vec<TimelineOverlap>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileWithoutTimeRow {
    pub audio_file_id: u64,
    pub filename: String,
}

/// A folder's recordings on a time line, with gaps and overlaps.
pub fn load_timeline(state: &ApiState, folder: &str) -> Result<Timeline, ApiError> {
    let folder = super::audio_api::clean_folder(folder);
    let rows = state.humpback.reader.with_connection(|c| recording_time_queries::recordings_in_folder(c, &folder))?;
    let mut recordings = Vec::new();
    let mut without_start = Vec::new();
    for row in rows {
        match row.recorded_at_micros {
            Some(micros) => {
                let start = UtcTime(micros);
                let end = window_start_utc(start, row.duration_seconds);
                recordings.push(TimelineEntry {
                    audio_file_id: row.audio_file_id,
                    filename: row.filename,
                    folder: row.folder,
                    recorded_at: start.to_iso8601(),
                    ends_at: end.to_iso8601(),
                    duration_seconds: row.duration_seconds,
                    recorded_at_source: row.recorded_at_source,
                    start,
                    end,
                });
            }
            None => without_start.push(FileWithoutTimeRow { audio_file_id: row.audio_file_id, filename: row.filename }),
        }
    }
    let spans: Vec<TimelineRecording> = recordings
        .iter()
        .map(|entry| TimelineRecording {
            audio_file_id: entry.audio_file_id,
            start: entry.start,
            duration_seconds: entry.duration_seconds,
        })
        .collect();
    let (gaps, overlaps) = gaps_and_overlaps(&spans);
    Ok(Timeline { folder, recordings, without_start, gaps, overlaps })
}

async fn timeline(
    State(state): State<ApiState>,
    parameters: Result<Query<TimelineParameters>, QueryRejection>,
) -> Result<Json<Timeline>, ApiError> {
    let Query(parameters) = parameters.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    blocking(move || load_timeline(&state, parameters.folder.as_deref().unwrap_or("")).map(Json)).await
}

#[derive(Debug, Deserialize, Default)]
pub struct OccurrenceParameters {
    pub bin: Option<String>,
    pub utc_offset: Option<String>,
}

/// Parses `bin` (default `day`) and `utc_offset` (default UTC).
pub fn parse_occurrence_parameters(parameters: &OccurrenceParameters) -> Result<(OccurrenceBin, UtcOffset), ApiError> {
    let bin_text = parameters.bin.as_deref().unwrap_or("day");
    let bin = OccurrenceBin::parse(bin_text)
        .ok_or_else(|| ApiError::bad_request(format!("bin {bin_text:?} is not one of hour, day, hour_of_day")))?;
    let offset = match parameters.utc_offset.as_deref().map(str::trim).filter(|text| !text.is_empty()) {
        Some(text) => UtcOffset::parse(text).map_err(|error| ApiError::bad_request(error.to_string()))?,
        None => UtcOffset::UTC,
    };
    Ok((bin, offset))
}

/// Every clustered window's label and absolute start (`None` where its recording's start is
/// unknown), from the job's assignments and the recordings' current start times.
pub fn clustered_window_starts(state: &ApiState, job_id: u64) -> Result<Vec<(i64, Option<UtcTime>)>, ApiError> {
    let job = state
        .humpback
        .reader
        .with_connection(|c| queries::clustering_job(c, job_id))?
        .ok_or_else(|| ApiError::not_found(format!("clustering job {job_id} does not exist")))?;
    let path = job.assignments_path.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            format!("clustering job {job_id} is {}, it has no assignments yet", job.status),
        )
    })?;
    let rows =
        crate::clustering_jobs::outputs::read_assignments(&state.humpback.storage.readable_path(&path)?, |_| true)
            .map_err(|error| ApiError::internal(error.into()))?;
    Ok(state.humpback.writer.read_state(|domain| {
        rows.iter()
            .map(|row| {
                let start = domain
                    .embedding_set_recorded_at(EmbeddingSetId(row.embedding_set_id))
                    .map(|recorded_at| window_start_utc(recorded_at, row.start_seconds));
                (row.cluster_label, start)
            })
            .collect()
    }))
}

/// Windows per cluster per bin, and how many windows had no known start.
pub fn load_occurrence(
    state: &ApiState,
    job_id: u64,
    bin: OccurrenceBin,
    offset: UtcOffset,
) -> Result<(Vec<OccurrenceCount>, u64), ApiError> {
    Ok(count_occurrences(clustered_window_starts(state, job_id)?, bin, offset))
}

/// `GET /api/clustering-jobs/{id}/occurrence?bin=hour|day|hour_of_day[&utc_offset=+10:00]`:
/// `[{"label", "bin", "count"}]`; windows without a known start are not counted, and their
/// number is in the `x-humpback-windows-without-start` header.
async fn occurrence(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    parameters: Result<Query<OccurrenceParameters>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(parameters) = parameters.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let id = parse_id(&id, "clustering job")?;
    let (bin, offset) = parse_occurrence_parameters(&parameters)?;
    let (counts, without_start) = blocking(move || load_occurrence(&state, id, bin, offset)).await?;
    Ok(([(WINDOWS_WITHOUT_START_HEADER, without_start.to_string())], Json(counts)).into_response())
}
