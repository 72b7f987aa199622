//! Processing workers: claim a job through the writer, run the pipeline, report progress,
//! honour cancellation within one batch, and record the outcome. A failure or a panic in a job
//! becomes `ProcessingJobFailed` with the reason; it never takes the server down.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context};

use super::pipeline::{encode_file, EncodeOutcome, Proceed};
use crate::artifacts::files::{remove_if_exists, temp_sibling};
use crate::domain::decide::{Command, NewEmbeddingSet, Rejection};
use crate::domain::events::Event;
use crate::domain::ids::{ProcessingJobId, WorkerId};
use crate::domain::state::JobStatus;
use crate::model::EmbeddingModel;
use crate::services::Humpback;
use crate::writer::WriterError;

pub use super::job::{
    embedding_metadata, embeddings_relative_path, open_job_model, safe_path_component, RecoveryReport,
    PROGRESS_INTERVAL,
};

/// What one step of a worker did.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    /// Nothing was waiting.
    Idle,
    /// A job was claimed and ended with this status (`queued` again when it was interrupted by
    /// shutdown).
    Ran { job_id: ProcessingJobId, status: JobStatus },
}

pub struct ProcessingWorker {
    humpback: Arc<Humpback>,
    worker_id: WorkerId,
    stopping: Arc<AtomicBool>,
    cached_model: Option<(String, Box<dyn EmbeddingModel>)>,
}

impl ProcessingWorker {
    pub fn new(humpback: Arc<Humpback>, worker_id: WorkerId, stopping: Arc<AtomicBool>) -> ProcessingWorker {
        ProcessingWorker { humpback, worker_id, stopping, cached_model: None }
    }

    /// Claims the oldest queued job, if any, and runs it to its end. Blocking.
    pub fn step(&mut self) -> anyhow::Result<StepOutcome> {
        let claimed = match self.humpback.writer.execute(Command::ClaimProcessingJob { worker: self.worker_id.clone() })
        {
            Ok(envelopes) => envelopes.into_iter().find_map(|envelope| match envelope.event {
                Event::ProcessingJobClaimed(claimed) => Some((claimed.job_id, claimed.attempt)),
                _ => None,
            }),
            Err(WriterError::Rejected(Rejection::NothingToClaim)) => None,
            Err(error) => return Err(error).context("claiming a processing job"),
        };
        let Some((job_id, attempt)) = claimed else { return Ok(StepOutcome::Idle) };
        let status = self.run_claimed(job_id, attempt);
        Ok(StepOutcome::Ran { job_id, status })
    }

    /// Runs a job this worker has claimed, and records how it ended.
    pub fn run_claimed(&mut self, job_id: ProcessingJobId, attempt: u32) -> JobStatus {
        let result = catch_unwind(AssertUnwindSafe(|| self.encode(job_id, attempt)));
        let reason = match result {
            Ok(Ok(status)) => return status,
            Ok(Err(error)) => format!("{error:#}"),
            Err(panic) => {
                self.cached_model = None;
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                format!("the worker panicked: {message}")
            }
        };
        tracing::warn!(job = %job_id, attempt, reason = %reason, "processing job failed");
        if let Some(path) = self.final_path_of(job_id) {
            let _ = remove_if_exists(&temp_sibling(&path));
        }
        match self.humpback.writer.execute(Command::FailProcessingJob { job_id, attempt, reason }) {
            Ok(_) => JobStatus::Failed,
            Err(error) => {
                tracing::error!(job = %job_id, error = %error, "could not record a failed job");
                self.humpback
                    .writer
                    .read_state(|state| state.processing_jobs.get(&job_id).map_or(JobStatus::Failed, |job| job.status))
            }
        }
    }

    fn final_path_of(&self, job_id: ProcessingJobId) -> Option<PathBuf> {
        let relative = self.humpback.writer.read_state(|state| {
            let job = state.processing_jobs.get(&job_id)?;
            Some(embeddings_relative_path(&job.config.model_version, job.audio_file_id, &job.encoding_signature))
        })?;
        self.humpback.storage.local_path(&relative).ok()
    }

    fn encode(&mut self, job_id: ProcessingJobId, attempt: u32) -> anyhow::Result<JobStatus> {
        let (job, audio, recorded_at) = self
            .humpback
            .writer
            .read_state(|state| {
                let job = state.processing_jobs.get(&job_id)?.clone();
                let audio = state.audio_files.get(&job.audio_file_id)?.clone();
                let recorded_at = state.recorded_at(job.audio_file_id);
                Some((job, audio, recorded_at))
            })
            .ok_or_else(|| anyhow!("processing job {job_id} or its audio file is unknown"))?;
        let (encoding, mut model, model_version, batch_size) =
            open_job_model(&self.humpback.models, &job.config, &mut self.cached_model)?;
        let relative = embeddings_relative_path(&job.config.model_version, job.audio_file_id, &job.encoding_signature);
        let final_path = self.humpback.storage.local_path(&relative)?;
        let audio_path =
            self.humpback.storage.readable_path(&audio.stored_path).context("reading the recording from storage")?;
        let metadata = embedding_metadata(&job, &audio, recorded_at);
        let humpback = self.humpback.clone();
        let stopping = self.stopping.clone();
        let mut last_report: Option<Instant> = None;
        let mut cancel_requested = false;
        let mut after_batch = |done: u64, planned: Option<u64>| {
            if last_report.is_none_or(|at| at.elapsed() >= PROGRESS_INTERVAL) {
                last_report = Some(Instant::now());
                let total = planned.unwrap_or(0).max(done);
                let _ = humpback.writer.execute(Command::ReportProcessingProgress {
                    job_id,
                    attempt,
                    windows_done: done,
                    windows_total: total,
                });
            }
            cancel_requested = humpback
                .writer
                .read_state(|state| state.processing_jobs.get(&job_id).is_some_and(|job| job.cancel_requested));
            if cancel_requested || stopping.load(Ordering::Relaxed) {
                Proceed::Stop
            } else {
                Proceed::Continue
            }
        };
        let outcome =
            encode_file(&audio_path, &encoding, model.as_mut(), &final_path, metadata, batch_size, &mut after_batch);
        self.cached_model = Some((model_version, model));
        let outcome = outcome.with_context(|| format!("encoding audio file {}", job.audio_file_id))?;
        if matches!(outcome, EncodeOutcome::Promoted { .. }) {
            // In a bucket: uploaded before the event names it.
            self.humpback.storage.publish(&relative).context("uploading the embeddings to storage")?;
        }
        let command = match outcome {
            EncodeOutcome::Promoted { rows, warnings } => Command::CompleteProcessingJob {
                job_id,
                attempt,
                embedding_set: Some(NewEmbeddingSet {
                    vector_dim: encoding.vector_dim,
                    row_count: rows,
                    parquet_path: relative,
                }),
                warning: (!warnings.is_empty()).then(|| warnings.join("; ")),
            },
            EncodeOutcome::NoWindows { warnings } => Command::CompleteProcessingJob {
                job_id,
                attempt,
                embedding_set: None,
                warning: Some(if warnings.is_empty() {
                    "the file produced no windows".to_string()
                } else {
                    warnings.join("; ")
                }),
            },
            EncodeOutcome::Stopped if cancel_requested => Command::ConfirmProcessingJobCanceled { job_id, attempt },
            EncodeOutcome::Stopped => Command::AbandonProcessingJob {
                job_id,
                attempt,
                reason: "the server shut down while the job was running".into(),
            },
        };
        let status = match &command {
            Command::CompleteProcessingJob { .. } => JobStatus::Complete,
            Command::ConfirmProcessingJobCanceled { .. } => JobStatus::Canceled,
            _ => JobStatus::Queued,
        };
        self.humpback.writer.execute(command).context("recording the end of the job")?;
        Ok(status)
    }
}

/// At start-up, before workers run: every job still `running` belongs to a process that died.
/// A complete promoted Parquet gets its completion recorded; otherwise the attempt is recorded
/// as abandoned (the job is queued again) and its files removed. Every leftover
/// `*.tmp.parquet` is removed.
pub fn recover_running_jobs(humpback: &Humpback) -> anyhow::Result<RecoveryReport> {
    let mut report = RecoveryReport::default();
    let running: Vec<(ProcessingJobId, u32, String, u32)> = humpback.writer.read_state(|state| {
        state
            .processing_jobs
            .iter()
            .filter(|(_, job)| job.status == JobStatus::Running)
            .map(|(id, job)| {
                let relative =
                    embeddings_relative_path(&job.config.model_version, job.audio_file_id, &job.encoding_signature);
                let dim = state.models.get(&job.config.model_name).map_or(0, |model| model.embedding_dim);
                (*id, job.attempt, relative, dim)
            })
            .collect()
    });
    for (job_id, attempt, relative, _) in running {
        let final_path = humpback.storage.local_path(&relative)?;
        // Complete when whole here and (in a bucket) uploaded again without error.
        let complete = crate::artifacts::embeddings_parquet::inspect(&final_path)
            .ok()
            .filter(|summary| summary.is_complete())
            .filter(|_| humpback.storage.publish(&relative).is_ok());
        let command = match complete {
            Some(summary) => {
                report.completed.push(job_id);
                Command::CompleteProcessingJob {
                    job_id,
                    attempt,
                    embedding_set: Some(NewEmbeddingSet {
                        vector_dim: summary.vector_dim as u32,
                        row_count: summary.rows,
                        parquet_path: relative.clone(),
                    }),
                    warning: None,
                }
            }
            None => {
                remove_if_exists(&final_path)?;
                report.requeued.push(job_id);
                Command::AbandonProcessingJob {
                    job_id,
                    attempt,
                    reason: "the process running it stopped before it finished".into(),
                }
            }
        };
        humpback.writer.execute(command).with_context(|| format!("recovering processing job {job_id}"))?;
    }
    for path in find_files(&humpback.storage.local_root().join("embeddings"), ".tmp.parquet")? {
        if remove_if_exists(&path)? {
            report.removed_temporary_files.push(path.display().to_string());
        }
    }
    if !report.completed.is_empty() || !report.requeued.is_empty() || !report.removed_temporary_files.is_empty() {
        tracing::info!(
            completed = report.completed.len(),
            requeued = report.requeued.len(),
            removed = report.removed_temporary_files.len(),
            "recovered processing jobs after a restart"
        );
    }
    Ok(report)
}

/// Files below `root` whose names end with `suffix`.
pub fn find_files(root: &std::path::Path, suffix: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let path = entry.path();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                pending.push(path);
            } else if path.file_name().and_then(|n| n.to_str()).is_some_and(|name| name.ends_with(suffix)) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Runs workers until `stop` turns true: each claims jobs while there are any, then waits for
/// the next event in the log.
pub async fn run_worker(
    humpback: Arc<Humpback>,
    index: usize,
    stopping: Arc<AtomicBool>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let worker_id = WorkerId(format!("{}:{}", std::process::id(), index));
    let worker = ProcessingWorker::new(humpback.clone(), worker_id, stopping);
    crate::services::drive_blocking_worker(
        humpback,
        worker,
        "processing",
        |worker| worker.step().map(|outcome| matches!(outcome, StepOutcome::Ran { .. })),
        stop,
    )
    .await
}
