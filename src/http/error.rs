//! Mapping errors to HTTP answers: rejections a person can act on become 4xx with the reason;
//! anything else is an opaque 500, logged once with its cause chain.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::domain::decide::Rejection;
use crate::writer::WriterError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// More fields for the JSON body beside `error` (which item and field, which rows).
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), details: None }
    }

    /// Adds fields to the JSON body (an object's keys are merged beside `error`).
    pub fn with_details(mut self, details: serde_json::Value) -> ApiError {
        self.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn internal(error: anyhow::Error) -> ApiError {
        tracing::error!(error = format!("{error:#}"), "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error (details are in the server log)")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let (Some(serde_json::Value::Object(details)), Some(body)) = (self.details, body.as_object_mut()) {
            for (key, value) in details {
                body.entry(key).or_insert(value);
            }
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> ApiError {
        let status = match &rejection {
            Rejection::AudioFileNotFound(_)
            | Rejection::ProcessingJobNotFound(_)
            | Rejection::ClusteringJobNotFound(_)
            | Rejection::ClassifierNotFound(_)
            | Rejection::DetectionJobNotFound(_)
            | Rejection::EmbeddingSetNotFound(_)
            | Rejection::AnnotationNotFound(_) => StatusCode::NOT_FOUND,
            Rejection::AudioFileAlreadyRegistered(_)
            | Rejection::AlreadyEncoded { .. }
            | Rejection::AlreadyQueued(_)
            | Rejection::NotRunningAttempt { .. }
            | Rejection::NotCancelable { .. }
            | Rejection::NotRetryable { .. }
            | Rejection::NothingToClaim => StatusCode::CONFLICT,
            Rejection::MixedEmbeddingSets(_) => StatusCode::BAD_REQUEST,
            Rejection::UnsupportedAudioExtension(_)
            | Rejection::EmptyMetadataEdit
            | Rejection::NoEmbeddingSets
            | Rejection::Invalid(_)
            | Rejection::InvalidAnnotation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let details = match &rejection {
            Rejection::InvalidAnnotation { index, field, .. } => Some(json!({ "index": index, "field": field })),
            _ => None,
        };
        ApiError { status, message: rejection.to_string(), details }
    }
}

impl From<WriterError> for ApiError {
    fn from(error: WriterError) -> ApiError {
        match error {
            WriterError::Rejected(rejection) => rejection.into(),
            WriterError::Log(error) => ApiError::internal(error.into()),
            WriterError::Staging(message) => ApiError::internal(anyhow::anyhow!(message)),
        }
    }
}

/// Storage that cannot be reached or lost an artifact is the server's trouble, not the
/// request's: 503, with what went wrong.
impl From<crate::storage::StorageError> for ApiError {
    fn from(error: crate::storage::StorageError) -> ApiError {
        tracing::warn!(error = %error, "storage");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("storage: {error}"))
    }
}

impl From<crate::log::LogError> for ApiError {
    fn from(error: crate::log::LogError) -> ApiError {
        ApiError::internal(error.into())
    }
}

impl From<crate::projections::ProjectionError> for ApiError {
    fn from(error: crate::projections::ProjectionError) -> ApiError {
        match error {
            crate::projections::ProjectionError::UnknownProjection(..) => ApiError::not_found(error.to_string()),
            other => ApiError::internal(other.into()),
        }
    }
}
