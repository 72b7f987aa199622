//! Clustering workers in the server: claim a clustering job, run it (`compute.rs`) with progress
//! and cancellation, publish its outputs and record the result.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use super::compute::{clustering_inputs, compute_clustering};
use crate::domain::decide::{Command, Rejection};
use crate::domain::events::Event;
use crate::domain::ids::{ClusteringJobId, WorkerId};
use crate::domain::state::JobStatus;
use crate::services::Humpback;
use crate::writer::WriterError;

const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, PartialEq)]
pub enum ClusteringStep {
    Idle,
    Ran { job_id: ClusteringJobId, status: JobStatus },
}

pub struct ClusteringWorker {
    humpback: Arc<Humpback>,
    worker_id: WorkerId,
    stopping: Arc<AtomicBool>,
}

/// Where a job's files go, relative to the data directory.
pub fn output_paths(job: ClusteringJobId) -> (String, String) {
    (format!("clusters/{job}/clusters.json"), format!("clusters/{job}/assignments.parquet"))
}

enum Ended {
    Completed,
    Canceled,
    Interrupted,
}

impl ClusteringWorker {
    pub fn new(humpback: Arc<Humpback>, worker_id: WorkerId, stopping: Arc<AtomicBool>) -> ClusteringWorker {
        ClusteringWorker { humpback, worker_id, stopping }
    }

    /// Claims the oldest queued clustering job, if any, and runs it to its end. Blocking.
    pub fn step(&mut self) -> anyhow::Result<ClusteringStep> {
        let claimed = match self.humpback.writer.execute(Command::ClaimClusteringJob { worker: self.worker_id.clone() })
        {
            Ok(envelopes) => envelopes.into_iter().find_map(|envelope| match envelope.event {
                Event::ClusteringJobClaimed(claimed) => Some((claimed.job_id, claimed.attempt)),
                _ => None,
            }),
            Err(WriterError::Rejected(Rejection::NothingToClaim)) => None,
            Err(error) => return Err(error).context("claiming a clustering job"),
        };
        let Some((job_id, attempt)) = claimed else { return Ok(ClusteringStep::Idle) };
        let result = catch_unwind(AssertUnwindSafe(|| self.run(job_id, attempt)));
        let reason = match result {
            Ok(Ok(Ended::Completed)) => return Ok(ClusteringStep::Ran { job_id, status: JobStatus::Complete }),
            Ok(Ok(Ended::Canceled)) => return Ok(ClusteringStep::Ran { job_id, status: JobStatus::Canceled }),
            Ok(Ok(Ended::Interrupted)) => return Ok(ClusteringStep::Ran { job_id, status: JobStatus::Queued }),
            Ok(Err(error)) => format!("{error:#}"),
            Err(_) => "the clustering worker panicked".to_string(),
        };
        tracing::warn!(job = %job_id, reason = %reason, "clustering job failed");
        self.humpback.writer.execute(Command::FailClusteringJob { job_id, attempt, reason })?;
        Ok(ClusteringStep::Ran { job_id, status: JobStatus::Failed })
    }

    fn run(&mut self, job_id: ClusteringJobId, attempt: u32) -> anyhow::Result<Ended> {
        let humpback = self.humpback.clone();
        let inputs = humpback
            .writer
            .read_state(|state| clustering_inputs(state, job_id))
            .ok_or_else(|| anyhow!("clustering job {job_id} is unknown"))?;
        let mut last_report: Option<Instant> = None;
        let stopping = self.stopping.clone();
        let mut canceled = false;
        let mut progress = |stage: &str, fraction: f64| -> bool {
            if last_report.is_none_or(|at| at.elapsed() >= PROGRESS_INTERVAL) {
                last_report = Some(Instant::now());
                let _ = humpback.writer.execute(Command::ReportClusteringProgress {
                    job_id,
                    attempt,
                    stage: stage.to_string(),
                    fraction: fraction.clamp(0.0, 1.0),
                });
            }
            canceled =
                humpback.writer.read_state(|s| s.clustering_jobs.get(&job_id).is_some_and(|job| job.cancel_requested));
            !(canceled || stopping.load(Ordering::Relaxed))
        };
        let (clusters_json, assignments_parquet) = output_paths(job_id);
        let Some(computed) = compute_clustering(
            &inputs,
            &humpback.storage,
            job_id,
            (&clusters_json, &assignments_parquet),
            &mut progress,
        )?
        else {
            return self.stop(job_id, attempt, canceled);
        };
        // In a bucket: both uploaded before the completion names them.
        humpback.storage.publish(&assignments_parquet).context("uploading the assignments to storage")?;
        humpback.storage.publish(&clusters_json).context("uploading the clusters to storage")?;
        let completed = computed.into_completion(job_id, attempt, clusters_json, assignments_parquet);
        humpback.writer.execute(Command::CompleteClusteringJob(completed)).context("recording the clusters")?;
        Ok(Ended::Completed)
    }

    fn stop(&self, job_id: ClusteringJobId, attempt: u32, canceled: bool) -> anyhow::Result<Ended> {
        if canceled {
            self.humpback.writer.execute(Command::ConfirmClusteringJobCanceled { job_id, attempt })?;
            Ok(Ended::Canceled)
        } else {
            self.humpback.writer.execute(Command::AbandonClusteringJob {
                job_id,
                attempt,
                reason: "the server shut down while the job was running".into(),
            })?;
            Ok(Ended::Interrupted)
        }
    }
}

/// At start-up: a clustering job still running belongs to a process that died. Its outputs are
/// only recorded by its completion event, so it is abandoned, its partial files removed, and
/// queued again (the same seed gives the same result).
pub fn recover_running_clustering_jobs(humpback: &Humpback) -> anyhow::Result<Vec<ClusteringJobId>> {
    let running: Vec<(ClusteringJobId, u32)> = humpback.writer.read_state(|state| {
        state
            .clustering_jobs
            .iter()
            .filter(|(_, job)| job.status == JobStatus::Running)
            .map(|(id, job)| (*id, job.attempt))
            .collect()
    });
    for (job_id, attempt) in &running {
        let _ = std::fs::remove_dir_all(humpback.storage.local_root().join("clusters").join(job_id.to_string()));
        humpback.writer.execute(Command::AbandonClusteringJob {
            job_id: *job_id,
            attempt: *attempt,
            reason: "the process running it stopped before it finished".into(),
        })?;
    }
    Ok(running.into_iter().map(|(id, _)| id).collect())
}

/// Runs a clustering worker until `stop` turns true.
pub async fn run_clustering_worker(
    humpback: Arc<Humpback>,
    index: usize,
    stopping: Arc<AtomicBool>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let worker_id = WorkerId(format!("{}:clustering:{index}", std::process::id()));
    let worker = ClusteringWorker::new(humpback.clone(), worker_id, stopping);
    crate::services::drive_blocking_worker(
        humpback,
        worker,
        "clustering",
        |worker| worker.step().map(|outcome| matches!(outcome, ClusteringStep::Ran { .. })),
        stop,
    )
    .await
}
