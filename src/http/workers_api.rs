//! The worker API (issue 14): remote `humpback worker` processes register, claim a job with a
//! lease, renew it (learning whether cancel was requested), report progress, and complete,
//! fail or stop it. Every route needs the token when the server has one (they are writes).
//! `GET /api/workers` lists connected workers.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{blocking, ApiError, ApiState};
use crate::log::EventLog;
use crate::services::Humpback;
use crate::workers::coordinator::{AttemptEnding, RegisterRequest, Registered};
use crate::workers::leases::LeasedJob;
use crate::workers::processing::ProcessingCompletion;
use crate::workers::{CoordinatorError, JobKind};

impl From<CoordinatorError> for ApiError {
    fn from(error: CoordinatorError) -> ApiError {
        match error {
            CoordinatorError::UnknownWorker(_) => ApiError::not_found(error.to_string()),
            CoordinatorError::LeaseNotHeld { .. } | CoordinatorError::LeaseLapsed { .. } => {
                ApiError::new(StatusCode::CONFLICT, error.to_string())
            }
            CoordinatorError::ArtifactRefused(_) => ApiError::unprocessable(error.to_string()),
            CoordinatorError::Writer(error) => error.into(),
        }
    }
}

fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(value)| value).map_err(|rejection| ApiError::unprocessable(rejection.body_text()))
}

/// `w`, digits, and the run tag (`w1-k3f9`), as the server hands them out.
fn worker_id(text: &str) -> Result<String, ApiError> {
    let (number, run) = text.strip_prefix('w').map_or(("", ""), |rest| rest.split_once('-').unwrap_or((rest, "")));
    let valid = text.len() <= 32
        && !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit())
        && run.chars().all(|c| c.is_ascii_alphanumeric());
    if valid {
        Ok(text.to_string())
    } else {
        Err(ApiError::bad_request(format!(
            "worker id {:?} is not one this server hands out (w1-k3f9, w2-k3f9, ...)",
            text.chars().take(40).collect::<String>()
        )))
    }
}

fn job_id(text: &str) -> Result<u64, ApiError> {
    super::audio_api::parse_id(text, "processing job")
}

/// `POST /api/workers/register`: `{name, kinds: ["processing"], threads}` -> the worker's id,
/// where storage is, the lease and the batch size.
pub async fn register(
    State(state): State<ApiState>,
    request: Result<Json<RegisterRequest>, JsonRejection>,
) -> Result<Json<Registered>, ApiError> {
    state.humpback.remote_workers.count_call();
    let request = body(request)?;
    if request.kinds.is_empty() {
        return Err(ApiError::unprocessable("kinds: name at least one kind of job (processing)"));
    }
    let humpback = state.humpback.clone();
    let worker_id = humpback.remote_workers.register(&request);
    Ok(Json(Registered {
        worker_id,
        storage: humpback.storage.describe(),
        lease_seconds: humpback.remote_workers.lease_duration().as_secs_f64(),
        batch_size: humpback.settings.batch_size,
    }))
}

/// `GET /api/workers`: connected workers, what each runs, when each was last heard from.
pub async fn list(State(state): State<ApiState>) -> Json<crate::workers::coordinator::WorkersListing> {
    Json(state.humpback.remote_workers.listing())
}

/// `POST /api/workers/{worker}/leave`: a worker stopping cleanly.
pub async fn leave(State(state): State<ApiState>, Path(worker): Path<String>) -> Result<StatusCode, ApiError> {
    state.humpback.remote_workers.count_call();
    let worker = worker_id(&worker)?;
    state.humpback.remote_workers.leave(&worker)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// Wait up to this long for a job to be queued (long poll; at most 30 s).
    #[serde(default)]
    pub wait_seconds: f64,
}

/// Longest long poll of a claim.
const MAX_CLAIM_WAIT: Duration = Duration::from_secs(30);

/// `POST /api/workers/{worker}/claim`: a queued job of a kind the worker runs (a clustering job
/// first, else the oldest processing job), leased to the worker (200 with the assignment and its
/// `kind`), or 204 when none was queued within `wait_seconds`.
pub async fn claim(
    State(state): State<ApiState>,
    Path(worker): Path<String>,
    request: Result<Json<ClaimRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    state.humpback.remote_workers.count_call();
    let worker = worker_id(&worker)?;
    let request = body(request)?;
    if !(request.wait_seconds.is_finite() && request.wait_seconds >= 0.0) {
        return Err(ApiError::unprocessable("wait_seconds: a number of seconds, 0 or more"));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(request.wait_seconds).min(MAX_CLAIM_WAIT);
    let mut head = state.humpback.log.subscribe();
    let mut stopping = state.stopping.clone();
    loop {
        head.borrow_and_update();
        let humpback = state.humpback.clone();
        let worker_for_claim = worker.clone();
        let claimed = blocking(move || {
            humpback
                .remote_workers
                .claim(&humpback.writer, &worker_for_claim, humpback.settings.batch_size)
                .map_err(ApiError::from)
        })
        .await?;
        if let Some(assignment) = claimed {
            state.humpback.wait_until_projected(state.humpback.log_head()).await;
            return Ok(Json(assignment).into_response());
        }
        tokio::select! {
            changed = head.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep_until(deadline) => break,
            _ = stopping.wait_for(|stopped| *stopped) => break,
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    pub attempt: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressRequest {
    pub attempt: u32,
    pub windows_done: u64,
    pub windows_total: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    pub attempt: u32,
    #[serde(flatten)]
    pub completion: ProcessingCompletion,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    pub attempt: u32,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    pub attempt: u32,
    /// True: stopped because cancel was requested; false: the worker is shutting down.
    pub canceled: bool,
}

async fn renew_with(
    state: ApiState,
    worker: String,
    job: String,
    attempt: u32,
    progress: Option<(u64, u64)>,
) -> Result<Response, ApiError> {
    state.humpback.remote_workers.count_call();
    let worker = worker_id(&worker)?;
    let job = job_id(&job)?;
    let humpback = state.humpback.clone();
    let renewal = blocking(move || {
        humpback
            .remote_workers
            .renew_processing(&humpback.writer, &humpback.storage, &worker, job, attempt, progress)
            .map_err(ApiError::from)
    })
    .await?;
    Ok(Json(renewal).into_response())
}

/// `POST /api/workers/{worker}/processing-jobs/{job}/renew`: `{attempt}` -> `{cancel_requested}`;
/// 409 when the lease is not held (lapsed: the attempt was abandoned).
pub async fn renew(
    State(state): State<ApiState>,
    Path((worker, job)): Path<(String, String)>,
    request: Result<Json<RenewRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    renew_with(state, worker, job, request.attempt, None).await
}

/// `POST /api/workers/{worker}/processing-jobs/{job}/progress`: `{attempt, windows_done,
/// windows_total}`; renews the lease too and answers `{cancel_requested}`.
pub async fn progress(
    State(state): State<ApiState>,
    Path((worker, job)): Path<(String, String)>,
    request: Result<Json<ProgressRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    if request.windows_done > request.windows_total {
        return Err(ApiError::unprocessable("windows_done: more than windows_total"));
    }
    renew_with(state, worker, job, request.attempt, Some((request.windows_done, request.windows_total))).await
}

/// `POST /api/workers/{worker}/processing-jobs/{job}/complete`: `{attempt, rows, warnings}`
/// (rows null: no windows). The staged Parquet is checked and moved into place, then the
/// completion recorded; 409 from a lapsed lease, 422 when the staged file is refused.
pub async fn complete(
    State(state): State<ApiState>,
    Path((worker, job)): Path<(String, String)>,
    request: Result<Json<CompleteRequest>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    state.humpback.remote_workers.count_call();
    let request = body(request)?;
    let worker = worker_id(&worker)?;
    let job = job_id(&job)?;
    let humpback = state.humpback.clone();
    blocking(move || {
        humpback
            .remote_workers
            .complete_processing(&humpback.writer, &humpback.storage, &worker, job, request.attempt, request.completion)
            .map_err(ApiError::from)
    })
    .await?;
    state.humpback.wait_until_projected(state.humpback.log_head()).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/workers/{worker}/processing-jobs/{job}/fail`: `{attempt, reason}`.
pub async fn fail(
    State(state): State<ApiState>,
    Path((worker, job)): Path<(String, String)>,
    request: Result<Json<FailRequest>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let request = body(request)?;
    let ending = failed(&request);
    end_attempt(state, worker, JobKind::Processing, job, request.attempt, ending).await
}

/// `POST /api/workers/{worker}/processing-jobs/{job}/stop`: `{attempt, canceled}`: canceled as
/// asked, or abandoned because the worker stops (the job is queued again).
pub async fn stop(
    State(state): State<ApiState>,
    Path((worker, job)): Path<(String, String)>,
    request: Result<Json<StopRequest>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let request = body(request)?;
    let ending = stopped(&request);
    end_attempt(state, worker, JobKind::Processing, job, request.attempt, ending).await
}

/// A worker's failure report as an ending, its reason cut to 4000 characters.
fn failed(request: &FailRequest) -> AttemptEnding {
    AttemptEnding::Failed(request.reason.chars().take(4000).collect())
}

/// A worker's stop: canceled as asked, or handed back because the worker stops.
fn stopped(request: &StopRequest) -> AttemptEnding {
    if request.canceled {
        AttemptEnding::Canceled
    } else {
        AttemptEnding::HandedBack
    }
}

/// The end of a held attempt of either kind, other than completed.
async fn end_attempt(
    state: ApiState,
    worker: String,
    kind: JobKind,
    job: String,
    attempt: u32,
    ending: AttemptEnding,
) -> Result<StatusCode, ApiError> {
    state.humpback.remote_workers.count_call();
    let worker = worker_id(&worker)?;
    let job_id = match kind {
        JobKind::Processing => job_id(&job)?,
        JobKind::Clustering => clustering_job_id(&job)?,
    };
    let humpback = state.humpback.clone();
    blocking(move || {
        humpback
            .remote_workers
            .end_attempt(&humpback.writer, &humpback.storage, &worker, LeasedJob { kind, job_id }, attempt, ending)
            .map_err(ApiError::from)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusteringRenewRequest {
    pub attempt: u32,
    /// The stage running now (`umap`, `hdbscan`, ...) and the fraction done, when known.
    #[serde(default)]
    pub stage: Option<String>,
    #[serde(default)]
    pub fraction: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusteringCompleteRequest {
    pub attempt: u32,
    #[serde(flatten)]
    pub computed: crate::clustering_jobs::compute::ComputedClustering,
}

/// `POST /api/workers/{worker}/clustering-jobs/{job}/renew`: `{attempt, stage?, fraction?}` ->
/// `{cancel_requested}`; 409 when the lease is not held.
pub async fn renew_clustering(
    State(state): State<ApiState>,
    Path((worker, job)): Path<(String, String)>,
    request: Result<Json<ClusteringRenewRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    state.humpback.remote_workers.count_call();
    let request = body(request)?;
    let (worker, job) = (worker_id(&worker)?, clustering_job_id(&job)?);
    let progress = match (request.stage, request.fraction) {
        (Some(stage), Some(fraction)) if fraction.is_finite() => Some((stage, fraction)),
        (None, None) => None,
        _ => return Err(ApiError::unprocessable("stage, fraction: give both (a fraction between 0 and 1) or neither")),
    };
    let humpback = state.humpback.clone();
    let renewal = blocking(move || {
        humpback
            .remote_workers
            .renew_clustering(&humpback.writer, &humpback.storage, &worker, job, request.attempt, progress)
            .map_err(ApiError::from)
    })
    .await?;
    Ok(Json(renewal).into_response())
}

/// `POST /api/workers/{worker}/clustering-jobs/{job}/complete`: `{attempt, clusters, metrics,
/// assignments_file}`. The staged outputs are checked (the assignments' SHA-256 and rows) and
/// moved into place, then the completion recorded; 409 from a lapsed lease, 422 when refused.
pub async fn complete_clustering(
    State(state): State<ApiState>,
    Path((worker, job)): Path<(String, String)>,
    request: Result<Json<ClusteringCompleteRequest>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    state.humpback.remote_workers.count_call();
    let request = body(request)?;
    let (worker, job) = (worker_id(&worker)?, clustering_job_id(&job)?);
    let humpback = state.humpback.clone();
    blocking(move || {
        humpback
            .remote_workers
            .complete_clustering(&humpback.writer, &humpback.storage, &worker, job, request.attempt, request.computed)
            .map_err(ApiError::from)
    })
    .await?;
    state.humpback.wait_until_projected(state.humpback.log_head()).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/workers/{worker}/clustering-jobs/{job}/fail`: `{attempt, reason}`.
pub async fn fail_clustering(
    State(state): State<ApiState>,
    Path((worker, job)): Path<(String, String)>,
    request: Result<Json<FailRequest>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let request = body(request)?;
    let ending = failed(&request);
    end_attempt(state, worker, JobKind::Clustering, job, request.attempt, ending).await
}

/// `POST /api/workers/{worker}/clustering-jobs/{job}/stop`: `{attempt, canceled}`.
pub async fn stop_clustering(
    State(state): State<ApiState>,
    Path((worker, job)): Path<(String, String)>,
    request: Result<Json<StopRequest>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let request = body(request)?;
    let ending = stopped(&request);
    end_attempt(state, worker, JobKind::Clustering, job, request.attempt, ending).await
}

fn clustering_job_id(text: &str) -> Result<u64, ApiError> {
    crate::http::params::parse_id(text, "clustering job")
}

/// Abandons attempts whose lease lapsed, checking a few times per lease, until `stop`.
pub async fn sweep_leases(humpback: std::sync::Arc<Humpback>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let period =
        (humpback.remote_workers.lease_duration() / 4).clamp(Duration::from_millis(50), Duration::from_secs(2));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let app = humpback.clone();
        let _ = tokio::task::spawn_blocking(move || app.remote_workers.sweep(&app.writer, &app.storage)).await;
    }
}

/// The worker API's routes.
pub fn routes() -> axum::Router<ApiState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/api/workers", get(list))
        .route("/api/workers/register", post(register))
        .route("/api/workers/{worker}/leave", post(leave))
        .route("/api/workers/{worker}/claim", post(claim))
        .route("/api/workers/{worker}/processing-jobs/{job}/renew", post(renew))
        .route("/api/workers/{worker}/processing-jobs/{job}/progress", post(progress))
        .route("/api/workers/{worker}/processing-jobs/{job}/complete", post(complete))
        .route("/api/workers/{worker}/processing-jobs/{job}/fail", post(fail))
        .route("/api/workers/{worker}/processing-jobs/{job}/stop", post(stop))
        .route("/api/workers/{worker}/clustering-jobs/{job}/renew", post(renew_clustering))
        .route("/api/workers/{worker}/clustering-jobs/{job}/complete", post(complete_clustering))
        .route("/api/workers/{worker}/clustering-jobs/{job}/fail", post(fail_clustering))
        .route("/api/workers/{worker}/clustering-jobs/{job}/stop", post(stop_clustering))
}
