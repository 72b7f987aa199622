//! The whole application's routes: the JSON API, the web pages and the media, every one behind
//! [`access::guard`]. Above both `http` handlers and `web` pages (which use `http`'s state and
//! errors), so neither depends on the other through the router.

use std::sync::Arc;

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::watch;

use super::*;
use crate::log::EventLog;
use crate::services::Humpback;

/// The whole application for a router driven without a socket (tests): the access rules of
/// the settings, with any port accepted for loopback host names.
pub fn router(humpback: Arc<Humpback>, stopping: watch::Receiver<bool>) -> Router {
    let access = access::unbound_policy(&humpback.settings.access);
    router_with_access(humpback, stopping, access)
}

/// The whole application: every route behind [`access::guard`].
pub fn router_with_access(
    humpback: Arc<Humpback>,
    stopping: watch::Receiver<bool>,
    access: Arc<access::AccessPolicy>,
) -> Router {
    let state = ApiState { humpback: humpback.clone(), stopping, access };
    Router::new()
        .route("/health", get(health))
        .route("/login", get(access::login_page).post(access::login))
        .route("/logout", post(access::logout))
        .route("/api/events", get(events_api::list))
        .route("/api/events/stats", get(events_api::stats))
        .route("/api/events/verify", get(events_api::verify))
        .route("/api/events/{seq}", get(events_api::show))
        .route(
            "/api/audio",
            // The file's own limit is checked as it is written; the request may carry a little
            // more (the multipart framing and the folder field, and what is read of a refused
            // file so that its sender sees the 413).
            get(audio_api::list).post(audio_api::upload).layer(axum::extract::DefaultBodyLimit::max(
                usize::try_from(humpback.settings.max_upload_bytes)
                    .unwrap_or(usize::MAX)
                    .saturating_add(MULTIPART_FRAMING_BYTES)
                    .saturating_add(audio_api::DRAIN_AFTER_REFUSAL_BYTES),
            )),
        )
        .route("/api/audio/import", post(audio_api::import))
        .route("/api/audio/{id}", get(audio_api::detail))
        .route("/api/audio/{id}/download", get(audio_api::download))
        .route(
            "/api/audio/{id}/metadata",
            get(audio_api::metadata).put(audio_api::put_metadata).patch(audio_api::patch_metadata),
        )
        .route("/api/processing-jobs", get(processing_api::list).post(processing_api::queue))
        .route("/api/processing-jobs/{id}", get(processing_api::show))
        .route("/api/processing-jobs/{id}/cancel", post(processing_api::cancel))
        .route("/api/processing-jobs/{id}/retry", post(processing_api::retry))
        .route("/api/classifiers", get(classifiers_api::list).post(classifiers_api::queue))
        .route("/api/classifiers/{id}", get(classifiers_api::show))
        .route("/api/classifiers/{id}/cancel", post(classifiers_api::cancel))
        .route("/api/classifiers/{id}/retry", post(classifiers_api::retry))
        .route("/api/classifiers/{id}/retrain", post(classifiers_api::retrain))
        .route("/api/classifiers/{id}/label-next", get(classifiers_api::label_next_api))
        .route("/api/detection-jobs", post(detections_api::queue))
        .route("/api/detection-jobs/{id}", get(detections_api::show))
        .route("/api/detection-jobs/{id}/detections", get(detections_api::detections))
        .route("/api/detection-jobs/{id}/selections.txt", get(detections_api::selections_raven))
        .route("/api/detection-jobs/{id}/selections.csv", get(detections_api::selections_csv))
        .route("/api/detection-jobs/{id}/cancel", post(detections_api::cancel))
        .route("/api/detection-jobs/{id}/retry", post(detections_api::retry))
        .route("/api/clustering-jobs", get(clustering_api::list).post(clustering_api::queue))
        .route("/api/clustering-jobs/{id}", get(clustering_api::show))
        .route("/api/clustering-jobs/{id}/cancel", post(clustering_api::cancel))
        .route("/api/clustering-jobs/{id}/retry", post(clustering_api::retry))
        .route("/api/clustering-jobs/{id}/clusters", get(clustering_api::clusters))
        .route("/api/clustering-jobs/{id}/clusters/{label}/members", get(clustering_api::members_by_label))
        .route("/api/clustering-jobs/{id}/assignments.csv", get(clustering_api::assignments_csv))
        .route("/api/clustering-jobs/{id}/clusters.json", get(clustering_api::clusters_json))
        .route("/api/clusters/{id}/members", get(clustering_api::members))
        .route(
            "/api/models",
            get(processing_api::models).post(models_api::add).layer(axum::extract::DefaultBodyLimit::max(
                models_api::MAX_MODEL_UPLOAD_BYTES + models_api::MODEL_UPLOAD_FRAMING_BYTES,
            )),
        )
        .route("/api/models/{name}/retire", post(models_api::retire))
        .route("/api/embedding-sets", get(processing_api::embedding_sets))
        .route("/api/embedding-sets/{id}", get(processing_api::embedding_set))
        .route(
            "/api/search",
            post(search_api::search).layer(axum::extract::DefaultBodyLimit::max(search_api::SEARCH_BODY_LIMIT)),
        )
        .route("/api/projections", get(projections_api::status))
        .route("/api/projections/rebuild", post(projections_api::rebuild))
        .merge(crate::web::router())
        .merge(media_api::routes())
        .merge(annotations_api::routes())
        .merge(selections_api::routes())
        .merge(recording_time_api::routes())
        .merge(workers_api::routes())
        .fallback(not_found)
        // JSON and form bodies are read by the guard up to its limit; uploads set their own.
        .layer(axum::extract::DefaultBodyLimit::max(access::MAX_REQUEST_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), access::guard))
        .with_state(state)
}

/// Room in an upload request for the multipart framing and the small fields around the file.
const MULTIPART_FRAMING_BYTES: usize = 64 * 1024;

/// Always open, so it says where the data lives only when the server needs no token.
async fn health(axum::extract::State(state): axum::extract::State<ApiState>) -> Json<serde_json::Value> {
    let mut health = json!({
        "status": "ok",
        "service": "humpback",
        "version": env!("CARGO_PKG_VERSION"),
        "log_head": state.humpback.log.head().0,
    });
    if !state.access.token_required() {
        health["data_dir"] = json!(state.humpback.data_dir.root().display().to_string());
    }
    Json(health)
}

/// An unknown path: a page for a browser (one that asks for HTML and not under `/api/`), JSON
/// for everyone else.
async fn not_found(uri: axum::http::Uri, headers: axum::http::HeaderMap) -> axum::response::Response {
    use axum::response::IntoResponse;
    let wants_html = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if wants_html && !uri.path().starts_with("/api/") {
        let message = format!("there is no page at {}", uri.path());
        return (axum::http::StatusCode::NOT_FOUND, crate::views::error_page(404, "Not Found", &message))
            .into_response();
    }
    ApiError::not_found(format!("no such endpoint: {}", uri.path())).into_response()
}
