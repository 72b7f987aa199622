//! [`ProcessingJobSource`] answered in this process by the coordinator itself: the same claims,
//! leases, checks and records as the HTTP worker API, without the HTTP. For tests, benchmarks
//! and a worker that shares the server's process.

use std::sync::Arc;

use super::coordinator::{AttemptEnding, CoordinatorError, RegisterRequest};
use super::leases::LeasedJob;
use super::processing::{ProcessingAssignment, ProcessingCompletion, ProcessingJobSource, Renewal, SourceError};
use super::JobKind;
use crate::services::Humpback;

pub struct InProcessJobSource {
    humpback: Arc<Humpback>,
    worker_id: String,
}

impl InProcessJobSource {
    /// Registers a worker named `name` with the coordinator.
    pub fn register(humpback: Arc<Humpback>, name: &str) -> InProcessJobSource {
        let request = RegisterRequest { name: name.to_string(), kinds: vec![JobKind::Processing], threads: 1 };
        let worker_id = humpback.remote_workers.register(&request);
        InProcessJobSource { humpback, worker_id }
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }
}

fn source_error(error: CoordinatorError) -> SourceError {
    match error {
        CoordinatorError::UnknownWorker(_)
        | CoordinatorError::LeaseNotHeld { .. }
        | CoordinatorError::LeaseLapsed { .. } => SourceError::LeaseLost(error.to_string()),
        other => SourceError::Other(other.into()),
    }
}

impl ProcessingJobSource for InProcessJobSource {
    fn claim(&self) -> Result<Option<ProcessingAssignment>, SourceError> {
        let humpback = &self.humpback;
        humpback
            .remote_workers
            .claim_processing(&humpback.writer, &self.worker_id, humpback.settings.batch_size)
            .map_err(source_error)
    }

    fn renew(&self, job: &ProcessingAssignment, progress: Option<(u64, u64)>) -> Result<Renewal, SourceError> {
        let humpback = &self.humpback;
        humpback
            .remote_workers
            .renew_processing(&humpback.writer, &humpback.storage, &self.worker_id, job.job_id, job.attempt, progress)
            .map_err(source_error)
    }

    fn complete(&self, job: &ProcessingAssignment, completion: ProcessingCompletion) -> Result<(), SourceError> {
        let humpback = &self.humpback;
        humpback
            .remote_workers
            .complete_processing(
                &humpback.writer,
                &humpback.storage,
                &self.worker_id,
                job.job_id,
                job.attempt,
                completion,
            )
            .map_err(source_error)
    }

    fn fail(&self, job: &ProcessingAssignment, reason: String) -> Result<(), SourceError> {
        let humpback = &self.humpback;
        humpback
            .remote_workers
            .end_attempt(
                &humpback.writer,
                &humpback.storage,
                &self.worker_id,
                LeasedJob { kind: JobKind::Processing, job_id: job.job_id },
                job.attempt,
                AttemptEnding::Failed(reason),
            )
            .map_err(source_error)
    }

    fn stop(&self, job: &ProcessingAssignment, canceled: bool) -> Result<(), SourceError> {
        let humpback = &self.humpback;
        humpback
            .remote_workers
            .end_attempt(
                &humpback.writer,
                &humpback.storage,
                &self.worker_id,
                LeasedJob { kind: JobKind::Processing, job_id: job.job_id },
                job.attempt,
                if canceled { AttemptEnding::Canceled } else { AttemptEnding::HandedBack },
            )
            .map_err(source_error)
    }
}
