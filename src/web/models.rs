//! The models page and its forms: add a model (multipart upload), retire one.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;

use super::{page, redirect_with_notice, NoticeParameters, PageResult};
use crate::http::ApiState;
use crate::views::models::models_page;

pub async fn list(State(state): State<ApiState>, Query(notice): Query<NoticeParameters>) -> PageResult {
    let listing = state.humpback.models.listing();
    Ok(page(StatusCode::OK, models_page(&listing, notice.to_notice().as_ref())))
}

/// `POST /models/add`: the upload form; back to the page with what happened (or why not).
pub async fn add(
    State(state): State<ApiState>,
    multipart: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> PageResult {
    let upload = match crate::http::models_api::read_model_upload(multipart).await {
        Ok(upload) => upload,
        Err(error) if error.status.is_server_error() => return Err(error.into()),
        Err(error) => return Ok(redirect_with_notice("/models", &error.message, true)),
    };
    match state.humpback.add_model(upload).await {
        Ok(info) => {
            let mut text = format!("model {} added ({} values per window)", info.name, info.embedding_dim);
            for warning in &info.warnings {
                text.push_str(&format!("; warning: {warning}"));
            }
            Ok(redirect_with_notice("/models", &text, false))
        }
        Err(error) => {
            let error = crate::http::ApiError::from(error);
            if error.status.is_server_error() {
                return Err(error.into());
            }
            Ok(redirect_with_notice("/models", &error.message, true))
        }
    }
}

/// `POST /models/{name}/retire`.
pub async fn retire(State(state): State<ApiState>, Path(name): Path<String>) -> PageResult {
    if state.humpback.models.find(&name).is_none() {
        return Ok(redirect_with_notice("/models", &format!("there is no model {name:?}"), true));
    }
    match state.humpback.retire_model(&name).await {
        Ok(()) => Ok(redirect_with_notice("/models", &format!("model {name} retired: hidden from new jobs"), false)),
        Err(error) => {
            let error = crate::http::ApiError::from(error);
            if error.status.is_server_error() {
                return Err(error.into());
            }
            Ok(redirect_with_notice("/models", &error.message, true))
        }
    }
}
