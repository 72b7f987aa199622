//! `POST /api/search`: search by example. JSON with a `query` (a stored window or a span of a
//! recording), or multipart with the query as an uploaded clip in `file` (embedded on the fly,
//! never registered as a recording) and the rest in a `request` JSON field or plain form fields.

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::Json;
use serde_json::Value;

use super::{blocking, ApiError, ApiState};
use crate::search::{parse_search_request, run_search, SearchAnswer, SearchError};

/// Largest clip accepted (a clip is a call or a few, not a recording).
pub const MAX_CLIP_BYTES: u64 = 64 * 1024 * 1024;
/// The request around the clip: multipart framing and the small fields.
pub const SEARCH_BODY_LIMIT: usize = MAX_CLIP_BYTES as usize + 256 * 1024;

impl From<SearchError> for ApiError {
    fn from(error: SearchError) -> ApiError {
        match error {
            SearchError::Invalid(message) | SearchError::BadClip(message) => ApiError::unprocessable(message),
            SearchError::NotFound(message) => ApiError::not_found(message),
            SearchError::MixedModelVersions(message) => ApiError::bad_request(message),
            SearchError::ModelUnavailable(message) => ApiError::new(StatusCode::CONFLICT, message),
            SearchError::Storage(error) => error.into(),
            other => ApiError::internal(anyhow::Error::new(other).context("searching")),
        }
    }
}

/// A staged clip, removed when dropped (after the search, or when the request fails).
pub(crate) struct StagedClip(std::path::PathBuf);

impl StagedClip {
    /// The staged file's path; the caller removes it when done.
    pub(crate) fn into_path(self) -> std::path::PathBuf {
        let path = self.0.clone();
        std::mem::forget(self);
        path
    }
}

impl Drop for StagedClip {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(error.status(), format!("the clip is larger than the limit of {MAX_CLIP_BYTES} bytes"));
    }
    ApiError::new(error.status(), format!("the upload could not be read: {}", error.body_text()))
}

/// Reads the multipart form: the clip is staged in `tmp/`, the other fields make the request.
pub(crate) async fn read_clip_form(
    state: &ApiState,
    mut multipart: Multipart,
) -> Result<(Value, Option<StagedClip>), ApiError> {
    let mut body = serde_json::Map::new();
    let mut clip = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            let limit = MAX_CLIP_BYTES.min(state.humpback.settings.max_upload_bytes);
            let mut writer = crate::ingest::StagingWriter::create(&state.humpback.data_dir.tmp_dir(), limit)
                .map_err(|error| ApiError::internal(error.into()))?;
            loop {
                match field.chunk().await {
                    Ok(Some(chunk)) => {
                        if let Err(error) = writer.write_chunk(&chunk) {
                            writer.abort();
                            return Err(match error {
                                crate::ingest::IngestError::TooLarge { limit, .. } => ApiError::new(
                                    StatusCode::PAYLOAD_TOO_LARGE,
                                    format!("the clip is larger than the limit of {limit} bytes"),
                                ),
                                other => ApiError::internal(other.into()),
                            });
                        }
                    }
                    Ok(None) => break,
                    Err(error) => {
                        writer.abort();
                        return Err(multipart_error(error));
                    }
                }
            }
            let staged = writer.finish().map_err(|error| ApiError::internal(error.into()))?;
            clip = Some(StagedClip(staged.temp_path));
            continue;
        }
        let text = field.text().await.map_err(multipart_error)?;
        if name == "request" {
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(fields)) => body.extend(fields),
                _ => return Err(ApiError::unprocessable("request: must be a JSON object")),
            }
        } else {
            // A plain form field: JSON when it parses (`5`, `true`, `[1, 2]`), else text.
            let value = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
            body.insert(name, value);
        }
    }
    Ok((Value::Object(body), clip))
}

#[derive(Debug, serde::Deserialize, Default)]
pub struct SearchOutput {
    /// `raven` or `csv`: the ranked windows as a selection table instead of JSON.
    pub format: Option<String>,
}

/// `POST /api/search` (`?format=raven|csv` answers with a selection table of the results).
pub async fn search(
    State(state): State<ApiState>,
    output: Result<axum::extract::Query<SearchOutput>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let axum::extract::Query(output) = output.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let table_format = match output.format.as_deref() {
        None | Some("json") => None,
        Some(text) => Some(
            crate::catalogue::raven::TableFormat::parse(text)
                .ok_or_else(|| ApiError::bad_request(format!("format {text:?} is not json, raven or csv")))?,
        ),
    };
    let Json(answer) = search_json(&state, request).await?;
    match table_format {
        None => Ok(Json(answer).into_response()),
        Some(format) => {
            let text =
                state.humpback.writer.read_state(|domain| super::selections_api::search_table(domain, &answer, format));
            Ok(super::selections_api::table_response(text, format, "search"))
        }
    }
}

async fn search_json(state: &ApiState, request: Request) -> Result<Json<SearchAnswer>, ApiError> {
    let state = state.clone();
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("multipart/form-data"));
    let (body, clip) = if is_multipart {
        let multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
        let (body, clip) = read_clip_form(&state, multipart).await?;
        if clip.is_none() {
            return Err(ApiError::unprocessable("file: a multipart search needs the clip in a field named \"file\""));
        }
        (body, clip)
    } else {
        let Json(body) = Json::<Value>::from_request(request, &state)
            .await
            .map_err(|rejection| ApiError::unprocessable(rejection.body_text()))?;
        (body, None)
    };
    let parsed = parse_search_request(&body, clip.is_some())?;
    let humpback = state.humpback.clone();
    blocking(move || {
        let answer = run_search(&humpback, &parsed, clip.as_ref().map(|clip| clip.0.as_path()));
        drop(clip);
        Ok(Json(answer?))
    })
    .await
}
