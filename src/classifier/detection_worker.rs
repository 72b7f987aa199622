//! Detection workers, the shell: claim a detection job, read the classifier it names (checking the
//! version the log recorded), run `detect::run_detection` (scores.parquet published whole), then
//! record the detections. Follows `worker.rs` (training).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Context};

use super::artifact::{classifier_key, read};
use super::detect::{run_detection, DetectionError};
use crate::domain::decide::{Command, Rejection};
use crate::domain::events::{DetectionJobCompleted, DetectionRecordEvent, Event};
use crate::domain::ids::{DetectionJobId, WorkerId};
use crate::domain::state::{DomainState, JobStatus};
use crate::services::Humpback;
use crate::writer::WriterError;

/// `detections/{job_id}/scores.parquet`, relative to the data directory.
pub fn scores_path(job: DetectionJobId) -> String {
    format!("detections/{job}/scores.parquet")
}

pub struct DetectionWorker {
    humpback: Arc<Humpback>,
    worker_id: WorkerId,
    stopping: Arc<AtomicBool>,
}

impl DetectionWorker {
    pub fn new(humpback: Arc<Humpback>, worker_id: WorkerId, stopping: Arc<AtomicBool>) -> DetectionWorker {
        DetectionWorker { humpback, worker_id, stopping }
    }

    /// Claims the oldest queued detection job, if any, and runs it to its end; whether it ran.
    pub fn step(&mut self) -> anyhow::Result<Option<(DetectionJobId, JobStatus)>> {
        let claimed = match self.humpback.writer.execute(Command::ClaimDetectionJob { worker: self.worker_id.clone() })
        {
            Ok(envelopes) => envelopes.into_iter().find_map(|envelope| match envelope.event {
                Event::DetectionJobClaimed(claimed) => Some((claimed.job_id, claimed.attempt)),
                _ => None,
            }),
            Err(WriterError::Rejected(Rejection::NothingToClaim)) => None,
            Err(error) => return Err(error).context("claiming a detection job"),
        };
        let Some((job_id, attempt)) = claimed else { return Ok(None) };
        let reason = match catch_unwind(AssertUnwindSafe(|| self.run(job_id, attempt))) {
            Ok(Ok(status)) => return Ok(Some((job_id, status))),
            Ok(Err(error)) => format!("{error:#}"),
            Err(_) => "the detection worker panicked".to_string(),
        };
        tracing::warn!(job = %job_id, reason = %reason, "detection job failed");
        self.humpback.writer.execute(Command::FailDetectionJob { job_id, attempt, reason })?;
        Ok(Some((job_id, JobStatus::Failed)))
    }

    fn run(&mut self, job_id: DetectionJobId, attempt: u32) -> anyhow::Result<JobStatus> {
        let humpback = self.humpback.clone();
        let (state, job) = humpback
            .writer
            .read_state(|state| {
                let job = state.detection_jobs.get(&job_id)?.clone();
                let snapshot = DomainState { embedding_sets: state.embedding_sets.clone(), ..DomainState::default() };
                Some((snapshot, job))
            })
            .ok_or_else(|| anyhow!("detection job {job_id} is unknown"))?;
        // The sets and the classifier, local (from a bucket: fetched into the cache first).
        for set_id in &job.embedding_set_ids {
            if let Some(set) = state.embedding_sets.get(set_id) {
                humpback.storage.readable_path(&set.parquet_path).context("fetching an embedding set")?;
            }
        }
        humpback
            .storage
            .readable_path(&classifier_key(job.classifier_id))
            .context("fetching the classifier from storage")?;
        let root = humpback.storage.local_root().to_path_buf();
        let classifier =
            read(&root, job.classifier_id, Some(&job.classifier_version)).context("reading the classifier")?;
        let canceled = AtomicBool::new(false);
        let keep_going = || {
            let cancel =
                humpback.writer.read_state(|s| s.detection_jobs.get(&job_id).is_some_and(|job| job.cancel_requested));
            canceled.store(cancel, Ordering::Relaxed);
            !(cancel || self.stopping.load(Ordering::Relaxed))
        };
        let relative = scores_path(job_id);
        let outcome = match run_detection(
            &state,
            &root,
            &classifier,
            &job.embedding_set_ids,
            job.threshold,
            &root.join(&relative),
            &keep_going,
        ) {
            Ok(outcome) => outcome,
            Err(DetectionError::Canceled) => {
                return if canceled.load(Ordering::Relaxed) {
                    humpback.writer.execute(Command::ConfirmDetectionJobCanceled { job_id, attempt })?;
                    Ok(JobStatus::Canceled)
                } else {
                    humpback.writer.execute(Command::AbandonDetectionJob {
                        job_id,
                        attempt,
                        reason: "the server shut down while the job was running".into(),
                    })?;
                    Ok(JobStatus::Queued)
                };
            }
            Err(other) => return Err(other.into()),
        };
        humpback.storage.publish(&relative).context("uploading the scores to storage")?;
        let detections = outcome
            .detections
            .into_iter()
            .map(|record| DetectionRecordEvent {
                embedding_set_id: record.embedding_set_id,
                audio_file_id: record.audio_file_id,
                label: record.label,
                start_seconds: record.detection.start_seconds,
                end_seconds: record.detection.end_seconds,
                max_score: record.detection.max_score,
                mean_score: record.detection.mean_score,
                windows: record.detection.windows as u32,
                first_row: record.detection.first_row,
                last_row: record.detection.last_row,
            })
            .collect();
        humpback
            .writer
            .execute(Command::CompleteDetectionJob(DetectionJobCompleted {
                job_id,
                attempt,
                scores_path: relative,
                windows_scored: outcome.windows_scored,
                detections,
            }))
            .context("recording the detections")?;
        Ok(JobStatus::Complete)
    }
}

/// At start-up: a detection job still running is abandoned (queued again), its files removed.
pub fn recover_running_detection_jobs(humpback: &Humpback) -> anyhow::Result<Vec<DetectionJobId>> {
    let running: Vec<(DetectionJobId, u32)> = humpback.writer.read_state(|state| {
        state
            .detection_jobs
            .iter()
            .filter(|(_, job)| job.status == JobStatus::Running)
            .map(|(id, job)| (*id, job.attempt))
            .collect()
    });
    for (job_id, attempt) in &running {
        let _ = std::fs::remove_dir_all(humpback.storage.local_root().join("detections").join(job_id.to_string()));
        humpback.writer.execute(Command::AbandonDetectionJob {
            job_id: *job_id,
            attempt: *attempt,
            reason: "the process running it stopped before it finished".into(),
        })?;
    }
    Ok(running.into_iter().map(|(id, _)| id).collect())
}

/// Runs a detection worker until `stop` turns true.
pub async fn run_detection_worker(
    humpback: Arc<Humpback>,
    stopping: Arc<AtomicBool>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let worker_id = WorkerId(format!("{}:detection:0", std::process::id()));
    let worker = DetectionWorker::new(humpback.clone(), worker_id, stopping);
    crate::services::drive_blocking_worker(
        humpback,
        worker,
        "detection",
        |worker| worker.step().map(|ran| ran.is_some()),
        stop,
    )
    .await
}
