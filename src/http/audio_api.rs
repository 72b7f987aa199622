//! Audio files and their metadata: list, detail, download (with HTTP ranges), metadata edits.

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

use super::{blocking, ApiError, ApiState};
use crate::domain::decide::{Command, EditAudioMetadata, MetadataEditMode};
use crate::domain::ids::AudioFileId;
use crate::domain::json_text::JsonText;
use crate::projections::queries::{self, AudioFileRow, AudioListQuery, AudioMetadataRow, AudioSort, Page};

pub const MAX_PAGE: u64 = 500;

pub use super::params::parse_id;

#[derive(Debug, Deserialize, Default)]
pub struct ListParameters {
    pub folder: Option<String>,
    #[serde(alias = "q")]
    pub search: Option<String>,
    pub sort: Option<String>,
    pub order: Option<String>,
    pub offset: Option<u64>,
    pub limit: Option<u64>,
    /// Recordings that started at or after this date or time (`2024-07-01`, or with a zone).
    pub recorded_from: Option<String>,
    /// Recordings that started before this time (a date: up to the end of that day).
    pub recorded_to: Option<String>,
}

impl ListParameters {
    pub fn to_query(&self) -> Result<AudioListQuery, ApiError> {
        let sort = match self.sort.as_deref() {
            None => AudioSort::Id,
            Some(text) => AudioSort::parse(text).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "sort {text:?} is not one of id, name, folder, duration, created, recorded_at"
                ))
            })?,
        };
        let descending = match self.order.as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => return Err(ApiError::bad_request(format!("order must be asc or desc, not {other:?}"))),
        };
        fn empty(text: &Option<String>) -> Option<&str> {
            text.as_deref().map(str::trim).filter(|text| !text.is_empty())
        }
        let range = crate::recording_time::WindowTimeFilter::from_request(
            empty(&self.recorded_from),
            empty(&self.recorded_to),
            None,
            None,
        )
        .map_err(|error| ApiError::bad_request(format!("recorded_from/recorded_to: {error}")))?;
        Ok(AudioListQuery {
            recorded_from_micros: range.from.map(|time| time.micros()),
            recorded_to_micros: range.to.map(|time| time.micros()),
            folder: self.folder.clone(),
            search: self.search.clone(),
            sort,
            descending,
            offset: self.offset.unwrap_or(0),
            limit: self.limit.unwrap_or(50).clamp(1, MAX_PAGE),
        })
    }
}

pub async fn list(
    State(state): State<ApiState>,
    parameters: Result<Query<ListParameters>, QueryRejection>,
) -> Result<Json<Page<AudioFileRow>>, ApiError> {
    let Query(parameters) = parameters.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let query = parameters.to_query()?;
    let humpback = state.humpback.clone();
    blocking(move || Ok(Json(humpback.reader.with_connection(|c| queries::list_audio_files(c, &query))?))).await
}

#[derive(Debug, Serialize)]
pub struct AudioFileDetail {
    #[serde(flatten)]
    pub file: AudioFileRow,
    pub metadata: Option<AudioMetadataRow>,
    pub processing_jobs: Vec<queries::ProcessingJobRow>,
    pub embedding_sets: Vec<queries::EmbeddingSetRow>,
}

pub fn load_detail(state: &ApiState, id: u64) -> Result<AudioFileDetail, ApiError> {
    state.humpback.reader.with_connection(|connection| {
        let Some(file) = queries::audio_file(connection, id)? else {
            return Ok(Err(ApiError::not_found(format!("audio file {id} does not exist"))));
        };
        Ok(Ok(AudioFileDetail {
            metadata: queries::audio_metadata(connection, id)?,
            processing_jobs: queries::processing_jobs(connection, Some(id), None, 0, 1000)?.items,
            embedding_sets: queries::embedding_sets(connection, Some(id), None)?,
            file,
        }))
    })?
}

pub async fn detail(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<AudioFileDetail>, ApiError> {
    let id = parse_id(&id, "audio file")?;
    blocking(move || load_detail(&state, id).map(Json)).await
}

/// The stored recording, with `Range` support (for players and resumable downloads).
pub async fn download(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    request: Request<Body>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "audio file")?;
    let humpback = state.humpback.clone();
    let file = blocking(move || Ok(humpback.reader.with_connection(|c| queries::audio_file(c, id))?)).await?;
    let file = file.ok_or_else(|| ApiError::not_found(format!("audio file {id} does not exist")))?;
    // The stored path was built by the writer from the id and a fixed extension list.
    let path = state.humpback.artifact_path(&file.stored_path).await?;
    let response = tower_http::services::ServeFile::new(&path)
        .oneshot(request)
        .await
        .map_err(|error| ApiError::internal(anyhow::anyhow!("serving {}: {error}", path.display())))?;
    if response.status() == axum::http::StatusCode::NOT_FOUND {
        return Err(ApiError::internal(anyhow::anyhow!(
            "audio file {id} is registered but {} is missing",
            path.display()
        )));
    }
    let mut response = response.into_response();
    let extension = std::path::Path::new(&file.stored_path).extension().and_then(|e| e.to_str()).unwrap_or("bin");
    let name = download_name(&file.filename, id, extension);
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// A file name safe for a header: the original name's letters, digits, `.`, `-` and `_`.
pub fn download_name(original: &str, id: u64, extension: &str) -> String {
    // Not a path: a user's name may contain slashes, which must not be taken as folders.
    let stem = original.rsplit_once('.').map_or(original, |(stem, _)| stem);
    let safe: String =
        stem.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')).take(100).collect();
    if safe.is_empty() {
        format!("audio-{id}.{extension}")
    } else {
        format!("{safe}.{extension}")
    }
}

pub async fn metadata(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<MetadataResponse>, ApiError> {
    let id = parse_id(&id, "audio file")?;
    blocking(move || load_metadata(&state, id).map(Json)).await
}

#[derive(Debug, Serialize)]
pub struct MetadataResponse {
    #[serde(flatten)]
    pub metadata: AudioMetadataRow,
    /// Every edit, newest first, from the log.
    pub history: Vec<queries::MetadataEditRow>,
}

fn load_metadata(state: &ApiState, id: u64) -> Result<MetadataResponse, ApiError> {
    state.humpback.reader.with_connection(|connection| {
        let Some(metadata) = queries::audio_metadata(connection, id)? else {
            return Ok(Err(ApiError::not_found(format!("audio file {id} does not exist"))));
        };
        Ok(Ok(MetadataResponse { metadata, history: queries::audio_metadata_edits(connection, id)? }))
    })?
}

pub const METADATA_FIELDS: [&str; 4] = ["tag_data", "visual_observations", "group_composition", "prey_density_proxy"];

/// Parses a metadata body: a JSON object whose keys are among the four fields, each an object.
pub fn parse_metadata_body(body: &[u8]) -> Result<[Option<JsonText>; 4], ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::unprocessable(format!("the body is not valid JSON: {error}")))?;
    let serde_json::Value::Object(object) = value else {
        return Err(ApiError::unprocessable(format!(
            "the body must be a JSON object with any of the fields {}",
            METADATA_FIELDS.join(", ")
        )));
    };
    let mut fields: [Option<JsonText>; 4] = Default::default();
    for (key, value) in object {
        let Some(position) = METADATA_FIELDS.iter().position(|field| *field == key) else {
            return Err(ApiError::unprocessable(format!(
                "unknown metadata field {key:?}; the fields are {}",
                METADATA_FIELDS.join(", ")
            )));
        };
        if !value.is_object() {
            return Err(ApiError::unprocessable(format!(
                "{key} must be a JSON object (like {{\"behaviour\": \"feeding\"}}), not {}",
                json_kind(&value)
            )));
        }
        fields[position] = Some(JsonText::from_value(&value));
    }
    Ok(fields)
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

async fn edit_metadata(
    state: ApiState,
    id: String,
    headers: axum::http::HeaderMap,
    body: Bytes,
    mode: MetadataEditMode,
) -> Result<Json<MetadataResponse>, ApiError> {
    let id = parse_id(&id, "audio file")?;
    let [mut tag_data, mut visual_observations, mut group_composition, mut prey_density_proxy] =
        parse_metadata_body(&body)?;
    if mode == MetadataEditMode::Replace {
        // PUT replaces the whole metadata: fields left out become empty.
        for field in [&mut tag_data, &mut visual_observations, &mut group_composition, &mut prey_density_proxy] {
            field.get_or_insert_with(JsonText::empty_object);
        }
    }
    let edited_by = headers
        .get("x-humpback-user")
        .and_then(|value| value.to_str().ok())
        .map(|value| value.chars().take(200).collect());
    state
        .humpback
        .execute(Command::EditAudioMetadata(EditAudioMetadata {
            audio_file_id: AudioFileId(id),
            mode,
            tag_data,
            visual_observations,
            group_composition,
            prey_density_proxy,
            edited_by,
        }))
        .await?;
    blocking(move || load_metadata(&state, id).map(Json)).await
}

pub async fn put_metadata(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Json<MetadataResponse>, ApiError> {
    edit_metadata(state, id, headers, body, MetadataEditMode::Replace).await
}

pub async fn patch_metadata(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Json<MetadataResponse>, ApiError> {
    edit_metadata(state, id, headers, body, MetadataEditMode::MergePatch).await
}

/// `POST /api/audio`: a multipart upload with the recording in the field `file` (and optionally
/// a `folder` field before it). Streamed to disk while hashed; 201 when new, 200 when the same
/// bytes were already registered, 422 when it is not decodable audio, 413 when too large.
pub async fn upload(
    State(state): State<ApiState>,
    multipart: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<(axum::http::StatusCode, Json<AudioFileDetail>), ApiError> {
    let mut multipart = multipart.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let mut folder = String::new();
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("folder") => {
                folder = clean_folder(&field.text().await.map_err(multipart_error)?);
            }
            Some("file") => {
                let original_filename = field.file_name().unwrap_or("upload").to_string();
                let humpback = state.humpback.clone();
                let mut writer = crate::ingest::StagingWriter::create(
                    &humpback.data_dir.tmp_dir(),
                    humpback.settings.max_upload_bytes,
                )
                .map_err(|error| ApiError::internal(error.into()))?;
                loop {
                    match field.chunk().await {
                        Ok(Some(chunk)) => {
                            if let Err(error) = writer.write_chunk(&chunk) {
                                writer.abort();
                                if matches!(error, crate::ingest::IngestError::TooLarge { .. }) {
                                    drop(field);
                                    drain_after_refusal(multipart).await;
                                }
                                return Err(ingest_error(error));
                            }
                        }
                        Ok(None) => break,
                        Err(error) => {
                            writer.abort();
                            return Err(multipart_error(error));
                        }
                    }
                }
                let staged = writer.finish().map_err(ingest_error)?;
                let outcome = blocking({
                    let humpback = humpback.clone();
                    move || {
                        crate::ingest::register_staged(&humpback, staged, &original_filename, &folder)
                            .map_err(ingest_error)
                    }
                })
                .await?;
                humpback.wait_until_projected(humpback.log_head()).await;
                let id = outcome.audio_file_id().0;
                let detail = blocking(move || load_detail(&state, id)).await?;
                let status = match outcome {
                    crate::ingest::IngestOutcome::Added(_) => axum::http::StatusCode::CREATED,
                    crate::ingest::IngestOutcome::Duplicate(_) => axum::http::StatusCode::OK,
                };
                return Ok((status, Json(detail)));
            }
            _ => {}
        }
    }
    Err(ApiError::unprocessable("the upload has no multipart field named \"file\""))
}

/// How much of a refused upload is still read (and thrown away) before answering. A client
/// that is still sending when the answer comes and the connection closes gets a broken pipe
/// instead of the 413; reading a little more lets most clients see the answer. The request
/// body limit (the upload limit plus this plus the framing) stops the reading beyond it.
pub const DRAIN_AFTER_REFUSAL_BYTES: usize = 8 * 1024 * 1024;

/// Reads and discards the rest of a refused upload (the request body limit bounds it).
async fn drain_after_refusal(mut multipart: axum::extract::Multipart) {
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    if error.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            error.status(),
            "the upload is larger than the server's limit (see --max-upload-bytes)".to_string(),
        );
    }
    ApiError::new(error.status(), format!("the upload could not be read: {}", error.body_text()))
}

pub fn ingest_error(error: crate::ingest::IngestError) -> ApiError {
    match error {
        crate::ingest::IngestError::NotAudio(message) => ApiError::unprocessable(message),
        crate::ingest::IngestError::TooLarge { limit, .. } => ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("the upload is larger than the limit of {limit} bytes (see --max-upload-bytes)"),
        ),
        crate::ingest::IngestError::Writer(error) => error.into(),
        crate::ingest::IngestError::Storage(message) => {
            ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("storage: {message}"))
        }
        other => ApiError::internal(other.into()),
    }
}

pub use crate::folders::clean_folder;

#[derive(Debug, Deserialize)]
pub struct ImportRequest {
    /// A folder on the server's file system, or a bucket prefix (`s3://archive/2019/`) whose
    /// recordings are registered where they sit.
    pub path: std::path::PathBuf,
    /// Register a folder's recordings where they sit (`file:///…`) instead of copying them.
    #[serde(default)]
    pub in_place: bool,
}

/// `POST /api/audio/import {"path": "s3://bucket/prefix/"}`: registers every recording below
/// a bucket prefix without copying it; allowed below the server's `--import-root` bucket
/// prefixes only (403 otherwise).
async fn import_objects(state: ApiState, url: &str) -> Result<Json<crate::ingest::ImportSummary>, ApiError> {
    let url = match crate::storage::parse_storage_spec(url) {
        Ok(crate::storage::StorageSpec::Bucket(url)) => url,
        Ok(crate::storage::StorageSpec::Folder(_)) => return Err(ApiError::unprocessable("path: not a bucket URL")),
        Err(error) => return Err(ApiError::unprocessable(format!("path: {error}"))),
    };
    let allowed = state
        .humpback
        .settings
        .import_buckets
        .iter()
        .any(|root| url == *root || url.starts_with(&format!("{}/", root.trim_end_matches('/'))));
    if !allowed {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            format!("path: importing from {url} over HTTP needs the server started with --import-root naming it or a prefix of it"),
        ));
    }
    let humpback = state.humpback.clone();
    let summary =
        blocking(move || crate::ingest::import_object_prefix(&humpback, &url, |_, _, _, _| {}).map_err(ingest_error))
            .await?;
    state.humpback.wait_until_projected(state.humpback.log_head()).await;
    Ok(Json(summary))
}

/// `POST /api/audio/import {"path": DIR}`: registers every recording below a folder.
pub async fn import(
    State(state): State<ApiState>,
    body: Result<Json<ImportRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<crate::ingest::ImportSummary>, ApiError> {
    let Json(request) = body.map_err(|rejection| ApiError::unprocessable(rejection.body_text()))?;
    let requested = request.path.to_string_lossy().into_owned();
    if crate::storage::is_object_url(&requested) {
        return import_objects(state, &requested).await;
    }
    let roots = state.humpback.settings.import_roots.clone();
    let folder = crate::ingest::resolve_import_folder(&request.path, &roots).map_err(|refusal| {
        let status = if refusal.is_forbidden() {
            axum::http::StatusCode::FORBIDDEN
        } else {
            axum::http::StatusCode::UNPROCESSABLE_ENTITY
        };
        ApiError::new(status, refusal.to_string())
    })?;
    let humpback = state.humpback.clone();
    let summary = blocking(move || {
        let limit = humpback.settings.max_upload_bytes;
        if request.in_place {
            return crate::ingest::import_folder_in_place(&humpback, &folder, Some(&roots), |_, _, _, _| {})
                .map_err(ingest_error);
        }
        crate::ingest::import_folder(&humpback, &folder, limit, Some(&roots), |_, _, _, _| {}).map_err(ingest_error)
    })
    .await?;
    state.humpback.wait_until_projected(state.humpback.log_head()).await;
    Ok(Json(summary))
}
