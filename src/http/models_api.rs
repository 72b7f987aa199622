//! Adding and retiring models while the server runs: `POST /api/models` (multipart: `file`, and
//! optional `name`, `sample_rate`, `output`) and `POST /api/models/{name}/retire`. The list is
//! `GET /api/models` (in `processing_api`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::{ApiError, ApiState};
use crate::model::{check_model_name, ModelInfo, ModelUpload};
use crate::services::AddModelError;

/// The largest model file accepted by upload (Perch v2 is about 400 MB as ONNX).
pub const MAX_MODEL_UPLOAD_BYTES: usize = 1 << 30;
/// Room for the multipart framing and the small fields around the file.
pub const MODEL_UPLOAD_FRAMING_BYTES: usize = 64 * 1024;

/// Reads the multipart form of a model upload (shared by the API and the models page).
pub async fn read_model_upload(
    multipart: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<ModelUpload, ApiError> {
    let mut multipart = multipart.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let mut upload =
        ModelUpload { file_name: String::new(), name: None, sample_rate: None, output_name: None, bytes: Vec::new() };
    let mut has_file = false;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "file" => {
                upload.file_name = field.file_name().unwrap_or("model").to_string();
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    if upload.bytes.len() + chunk.len() > MAX_MODEL_UPLOAD_BYTES {
                        return Err(ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("the model is larger than the limit of {MAX_MODEL_UPLOAD_BYTES} bytes"),
                        ));
                    }
                    upload.bytes.extend_from_slice(&chunk);
                }
                has_file = true;
            }
            "name" | "sample_rate" | "output" => {
                let text = field.text().await.map_err(multipart_error)?;
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                if text.len() > 256 {
                    return Err(ApiError::unprocessable(format!("{name}: at most 256 characters")));
                }
                match name.as_str() {
                    "name" => upload.name = Some(text.to_string()),
                    "output" => upload.output_name = Some(text.to_string()),
                    _ => {
                        let rate = text.parse::<u32>().ok().filter(|rate| *rate > 0).ok_or_else(|| {
                            ApiError::unprocessable(format!("sample_rate: {text:?} is not a rate in hertz"))
                        })?;
                        upload.sample_rate = Some(rate);
                    }
                }
            }
            other => {
                return Err(ApiError::unprocessable(format!(
                    "{other}: unknown field (fields: file, name, sample_rate, output)"
                )))
            }
        }
    }
    if !has_file || upload.bytes.is_empty() {
        return Err(ApiError::unprocessable("file: no model file was sent"));
    }
    Ok(upload)
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            error.status(),
            format!("the model is larger than the limit of {MAX_MODEL_UPLOAD_BYTES} bytes"),
        );
    }
    ApiError::new(error.status(), format!("the upload could not be read: {}", error.body_text()))
}

impl From<AddModelError> for ApiError {
    fn from(error: AddModelError) -> ApiError {
        match error {
            AddModelError::Refused(error) => ApiError::unprocessable(format!("model refused: {error}")),
            AddModelError::Writer(error) => error.into(),
            AddModelError::Failed(error) => ApiError::internal(error),
        }
    }
}

/// `POST /api/models`: checks the model (it loads, runs a window, gives the expected dimension),
/// stores it and registers it; 201 with the model, or 422 with the reason and nothing stored.
pub async fn add(
    State(state): State<ApiState>,
    multipart: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<(StatusCode, Json<ModelInfo>), ApiError> {
    let upload = read_model_upload(multipart).await?;
    let info = state.humpback.add_model(upload).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// `POST /api/models/{name}/retire`: hides the model from new jobs; its embedding sets stay.
pub async fn retire(State(state): State<ApiState>, Path(name): Path<String>) -> Result<Json<ModelInfo>, ApiError> {
    if check_model_name(&name).is_err() {
        return Err(ApiError::not_found(format!("there is no model {name:?} to retire")));
    }
    let model = state
        .humpback
        .models
        .find(&name)
        .filter(|model| model.info.file_sha256.is_some())
        .ok_or_else(|| ApiError::not_found(format!("there is no model file {name:?} to retire")))?;
    state.humpback.retire_model(&name).await?;
    Ok(Json(model.info))
}
