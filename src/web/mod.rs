//! The web UI: thin HTML handlers that read rows, call the core, and render `crate::views`.
//! Forms work without JavaScript; `assets/live.js` only keeps job status and progress current.

mod annotations;
mod classifiers;
mod clustering;
mod models;
mod pages;
mod processing;
mod recording_time;
mod recordings;
mod search;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::Markup;
use serde::Deserialize;

use crate::domain::decide::Command;
use crate::http::{ApiError, ApiState};
use crate::views::{self, Notice};

/// The largest request an upload form may send (all its files together).
pub const MAX_UPLOAD_REQUEST_BYTES: usize = 16 * 1024 * 1024 * 1024;
/// The largest single recording accepted by upload or import.
pub const MAX_RECORDING_BYTES: u64 = 8 * 1024 * 1024 * 1024;

const STYLE_CSS: &str = include_str!("assets/style.css");
const LIVE_JS: &str = include_str!("assets/live.js");
const SELECTION_JS: &str = include_str!("assets/selection.js");
const UPLOAD_JS: &str = include_str!("assets/upload.js");
const SCATTER_JS: &str = include_str!("assets/scatter.js");
const TILES_JS: &str = include_str!("assets/tiles.js");

/// The HTML pages, to be merged into the main router.
pub fn router() -> Router<ApiState> {
    Router::new()
        .merge(recording_time::routes())
        .route("/", get(pages::home))
        .route("/audio", get(recordings::list))
        .route("/audio/upload", post(recordings::upload).layer(DefaultBodyLimit::max(MAX_UPLOAD_REQUEST_BYTES)))
        .route("/audio/import", post(recordings::import))
        .route("/audio/{id}", get(recordings::detail))
        .route("/audio/{id}/metadata", post(recordings::save_metadata))
        .route("/audio/{id}/annotations", post(annotations::add))
        .route("/audio/{id}/annotations/{annotation_id}/delete", post(annotations::remove))
        .route("/processing", get(processing::list))
        .route("/processing/queue", post(processing::queue))
        .route("/processing/{id}", get(processing::detail))
        .route("/processing/{id}/cancel", post(processing::cancel))
        .route("/processing/{id}/retry", post(processing::retry))
        .route("/events", get(pages::events))
        .route("/clustering", get(clustering::list))
        .route("/clustering/queue", post(clustering::queue))
        .route("/clustering/check", post(clustering::check))
        .route("/clustering/{id}", get(clustering::detail))
        .route("/clustering/{id}/points.json", get(clustering::points))
        .route("/clustering/{id}/cancel", post(clustering::cancel))
        .route("/clustering/{id}/retry", post(clustering::retry))
        .route("/clusters/{id}", get(clustering::cluster))
        .route("/classifiers", get(classifiers::list))
        .route("/classifiers/train", post(classifiers::train))
        .route("/classifiers/{id}", get(classifiers::show))
        .route("/classifiers/{id}/retrain", post(classifiers::retrain))
        .route("/classifiers/{id}/detect", post(classifiers::detect))
        .route("/classifiers/{id}/label-next", get(classifiers::label_next))
        .route("/detection-jobs/{id}", get(classifiers::detection_job))
        .route("/models", get(models::list))
        .route(
            "/models/add",
            post(models::add).layer(DefaultBodyLimit::max(
                crate::http::models_api::MAX_MODEL_UPLOAD_BYTES + crate::http::models_api::MODEL_UPLOAD_FRAMING_BYTES,
            )),
        )
        .route("/models/{name}/retire", post(models::retire))
        .route("/search/selections.txt", get(search::search_raven))
        .route("/search/selections.csv", get(search::search_csv))
        .route(
            "/search",
            get(search::search)
                .post(search::search_with_clip)
                .layer(DefaultBodyLimit::max(crate::http::search_api::SEARCH_BODY_LIMIT)),
        )
        .route("/assets/style.css", get(style_css))
        .route("/assets/live.js", get(live_js))
        .route("/assets/selection.js", get(selection_js))
        .route("/assets/upload.js", get(upload_js))
        .route("/assets/scatter.js", get(scatter_js))
        .route("/assets/tiles.js", get(tiles_js))
}

async fn style_css() -> Response {
    asset(STYLE_CSS, "text/css; charset=utf-8")
}

async fn live_js() -> Response {
    asset(LIVE_JS, "text/javascript; charset=utf-8")
}

async fn selection_js() -> Response {
    asset(SELECTION_JS, "text/javascript; charset=utf-8")
}

async fn upload_js() -> Response {
    asset(UPLOAD_JS, "text/javascript; charset=utf-8")
}

async fn scatter_js() -> Response {
    asset(SCATTER_JS, "text/javascript; charset=utf-8")
}

async fn tiles_js() -> Response {
    asset(TILES_JS, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// An error shown as a page (the HTML counterpart of [`ApiError`]).
#[derive(Debug)]
pub struct HtmlError {
    pub status: StatusCode,
    pub message: String,
}

impl HtmlError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> HtmlError {
        HtmlError { status, message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> HtmlError {
        HtmlError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn bad_request(message: impl Into<String>) -> HtmlError {
        HtmlError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<ApiError> for HtmlError {
    fn from(error: ApiError) -> HtmlError {
        HtmlError::new(error.status, error.message)
    }
}

impl From<crate::projections::ProjectionError> for HtmlError {
    fn from(error: crate::projections::ProjectionError) -> HtmlError {
        ApiError::from(error).into()
    }
}

impl From<crate::log::LogError> for HtmlError {
    fn from(error: crate::log::LogError) -> HtmlError {
        ApiError::from(error).into()
    }
}

impl From<crate::writer::WriterError> for HtmlError {
    fn from(error: crate::writer::WriterError) -> HtmlError {
        ApiError::from(error).into()
    }
}

impl From<QueryRejection> for HtmlError {
    fn from(rejection: QueryRejection) -> HtmlError {
        HtmlError::bad_request(rejection.body_text())
    }
}

impl From<FormRejection> for HtmlError {
    fn from(rejection: FormRejection) -> HtmlError {
        HtmlError::new(StatusCode::UNPROCESSABLE_ENTITY, rejection.body_text())
    }
}

impl IntoResponse for HtmlError {
    fn into_response(self) -> Response {
        let reason = self.status.canonical_reason().unwrap_or("Error");
        (self.status, views::error_page(self.status.as_u16(), reason, &self.message)).into_response()
    }
}

pub type PageResult = Result<Response, HtmlError>;

/// A rendered page with a status.
pub fn page(status: StatusCode, markup: Markup) -> Response {
    (status, markup).into_response()
}

/// Runs blocking reads off the async threads, with errors as pages.
pub async fn blocking_page<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, HtmlError> + Send + 'static,
) -> Result<T, HtmlError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join_error| HtmlError::from(ApiError::internal(anyhow::anyhow!("page task failed: {join_error}"))))?
}

/// Cancel or retry from a page: runs `command` and goes back to `back` with a notice saying what
/// happened (or why not). `what` names the job in messages ("processing job 3").
pub async fn job_action_page(state: &ApiState, command: Command, what: &str, cancel: bool, back: &str) -> PageResult {
    match state.humpback.execute(command).await {
        Ok(_) => {
            let done = if cancel { "cancel requested" } else { "queued again" };
            Ok(redirect_with_notice(back, &format!("{what}: {done}"), false))
        }
        Err(error) => {
            let error = ApiError::from(error);
            if error.status == StatusCode::NOT_FOUND {
                return Err(HtmlError::not_found(format!("there is no {what}")));
            }
            if error.status.is_server_error() {
                return Err(error.into());
            }
            Ok(redirect_with_notice(back, &error.message, true))
        }
    }
}

/// Parses an id from a path, or answers with a 404 page (an id that is not a number names nothing).
pub fn parse_page_id(text: &str, what: &str) -> Result<u64, HtmlError> {
    text.parse().map_err(|_| HtmlError::not_found(format!("there is no {what} {text:?}")))
}

/// The one-time message carried by a redirect (`?notice=...&notice_kind=error`).
#[derive(Debug, Deserialize, Default)]
pub struct NoticeParameters {
    pub notice: Option<String>,
    pub notice_kind: Option<String>,
}

impl NoticeParameters {
    pub fn to_notice(&self) -> Option<Notice> {
        self.notice.as_ref().filter(|text| !text.is_empty()).map(|text| Notice {
            text: text.chars().take(500).collect(),
            is_error: self.notice_kind.as_deref() == Some("error"),
        })
    }
}

/// A path on this site to come back to after a form, or `fallback` when `requested` is not one.
pub fn safe_return_path(requested: Option<&str>, fallback: &str) -> String {
    match requested {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control) =>
        {
            path.to_string()
        }
        _ => fallback.to_string(),
    }
}

/// A 303 redirect to `path` carrying a notice.
pub fn redirect_with_notice(path: &str, text: &str, is_error: bool) -> Response {
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut location = format!("{path}{separator}notice={}", views::url_encode(text));
    if is_error {
        location.push_str("&notice_kind=error");
    }
    Redirect::to(&location).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(safe_return_path(Some("/processing/3"), "/processing"), "/processing/3");
        assert_eq!(safe_return_path(Some("//evil.example"), "/processing"), "/processing");
        assert_eq!(safe_return_path(Some("https://evil.example"), "/processing"), "/processing");
        assert_eq!(safe_return_path(Some("/\\evil"), "/processing"), "/processing");
        assert_eq!(safe_return_path(None, "/processing"), "/processing");
    }

    #[test]
    fn notices_are_carried_in_the_query() {
        let response = redirect_with_notice("/processing?status=failed", "job 3 retried", false);
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[header::LOCATION], "/processing?status=failed&notice=job%203%20retried");
    }
}
