//! Workers beyond the server (issue 14): a `humpback worker` process on any machine that
//! reaches the server and the storage claims jobs through the server's API, holds a lease on
//! each attempt, renews it, and completes or fails through the API.
//!
//! - `leases.rs` (pure): the lease table and the directory of connected workers.
//! - `coordinator.rs`: the server's side: claim with a lease, renew (answering whether cancel
//!   was requested), progress, complete (after checking the staged artifact), fail, stop, and
//!   the sweep that turns a lapsed lease into an abandoned attempt.
//! - `clustering.rs`: running one claimed clustering job (the state it reads arrives with it)
//!   against [`clustering::ClusteringJobSource`].
//! - `processing.rs`: running one claimed processing job against [`processing::ProcessingJobSource`],
//!   the one interface a worker talks to: the HTTP API from a remote worker (`cli/worker.rs`),
//!   or the coordinator in this process (`local.rs`).

pub mod clustering;
pub mod coordinator;
pub mod leases;
pub mod local;
pub mod processing;

pub use coordinator::{CoordinatorError, WorkerCoordinator};
pub use leases::JobKind;

/// A claimed job, as `POST /api/workers/{worker}/claim` answers it: the assignment's fields
/// with `"kind": "processing"` or `"kind": "clustering"`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Assignment {
    Processing(processing::ProcessingAssignment),
    Clustering(clustering::ClusteringAssignment),
}

/// Where a remote worker stages a processing job's Parquet, relative to the storage root:
/// `tmp/workers/processing-{job}-{attempt}.parquet` (its `.tmp.parquet` sibling while
/// writing). The server moves it into place before recording the completion.
pub fn staged_processing_path(job_id: u64, attempt: u32) -> String {
    format!("{STAGING_DIR}/processing-{job_id}-{attempt}.parquet")
}

/// Below the storage root; emptied when a data directory is opened (no lease survives).
pub const STAGING_DIR: &str = "tmp/workers";

/// The default lease: a worker that is not heard from for this long has lost its attempt.
pub const DEFAULT_LEASE_SECONDS: f64 = 30.0;
