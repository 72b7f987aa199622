//! The JSON API. Thin handlers: parse, ask the core, map errors to statuses people can act on.

pub mod access;
pub mod annotations_api;
pub mod audio_api;
pub mod classifiers_api;
pub mod clustering_api;
pub mod detections_api;
mod error;
pub mod events_api;
pub mod media_api;
pub mod models_api;
pub mod params;
pub mod processing_api;
pub mod projections_api;
pub mod recording_time_api;
pub mod routes;
pub mod search_api;
pub mod selections_api;
pub mod workers_api;

use std::sync::Arc;

use tokio::sync::watch;

pub use error::ApiError;

use crate::services::Humpback;

/// Shared by every handler.
#[derive(Clone)]
pub struct ApiState {
    pub humpback: Arc<Humpback>,
    /// Turns true when the server is shutting down (long polls return early).
    pub stopping: watch::Receiver<bool>,
    /// Known hosts, the token and browser sessions.
    pub access: Arc<access::AccessPolicy>,
}

/// Runs blocking work (sled scans, SQLite) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join_error| ApiError::internal(anyhow::anyhow!("request task failed: {join_error}")))?
}
