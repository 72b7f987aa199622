//! Running one claimed processing job outside the server: read the audio from storage, encode
//! it with the pipeline into the staged path, renew the lease while it runs, and report the end
//! through [`ProcessingJobSource`], the one interface a worker talks to.

use crate::storage::Storage;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::domain::events::EncodingConfig;
use crate::model::EmbeddingModel;
use crate::processing::job::{open_job_model, PROGRESS_INTERVAL};
use crate::processing::pipeline::{encode_file, EncodeOutcome, Proceed};

/// A claimed processing job: everything a worker needs, with paths relative to the storage root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessingAssignment {
    pub job_id: u64,
    pub attempt: u32,
    pub lease_seconds: f64,
    pub audio_file_id: u64,
    pub audio_path: String,
    pub config: EncodingConfig,
    pub encoding_signature: String,
    /// Where to write the Parquet (the server moves it into place).
    pub staged_path: String,
    /// The Parquet's key-value metadata.
    pub metadata: Vec<(String, String)>,
    /// The server's `--batch-size`, when given; `None`: the worker's own choice for the model.
    pub batch_size: Option<usize>,
}

/// A renewal's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewal {
    pub cancel_requested: bool,
}

/// How an attempt ended well: the rows staged (`None`: the file gave no windows) and warnings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessingCompletion {
    pub rows: Option<u64>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Why the source refused a report.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The attempt is no longer this worker's (its lease lapsed, or the server restarted):
    /// stop, nothing more to report.
    #[error("the lease was lost: {0}")]
    LeaseLost(String),
    #[error("{0:#}")]
    Other(anyhow::Error),
}

/// Where a worker gets processing jobs and reports on them: the server's worker API for a
/// remote worker.
pub trait ProcessingJobSource: Sync {
    /// The oldest queued job, leased to this worker; `None` when nothing waits.
    fn claim(&self) -> Result<Option<ProcessingAssignment>, SourceError>;
    /// Keeps the lease (with progress when given); answers whether cancel was requested.
    fn renew(&self, job: &ProcessingAssignment, progress: Option<(u64, u64)>) -> Result<Renewal, SourceError>;
    fn complete(&self, job: &ProcessingAssignment, completion: ProcessingCompletion) -> Result<(), SourceError>;
    fn fail(&self, job: &ProcessingAssignment, reason: String) -> Result<(), SourceError>;
    /// Canceled as asked (`true`) or abandoned because the worker stops (`false`).
    fn stop(&self, job: &ProcessingAssignment, canceled: bool) -> Result<(), SourceError>;
}

/// How a job ended, as this worker saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptEnd {
    Completed,
    Failed,
    Canceled,
    /// Stopped because the worker is shutting down (the job is queued again).
    Abandoned,
    /// The lease was lost; the server has already queued the job again.
    LeaseLost,
}

/// Runs one claimed job to its end and reports it. `cached` keeps the last model open between
/// jobs. Blocking; renews the lease from a helper thread while the pipeline runs.
pub fn run_assignment(
    source: &dyn ProcessingJobSource,
    storage: &Storage,
    models: &crate::model::ModelRegistry,
    cached: &mut Option<(String, Box<dyn EmbeddingModel>)>,
    job: &ProcessingAssignment,
    stopping: &AtomicBool,
) -> AttemptEnd {
    let cancel_requested = AtomicBool::new(false);
    let lease_lost = AtomicBool::new(false);
    let (cancel, lost) = (&cancel_requested, &lease_lost);
    let outcome = while_renewing(
        job.job_id,
        job.lease_seconds,
        cancel,
        lost,
        || source.renew(job, None),
        || encode_assignment(source, storage, models, cached, job, stopping, cancel, lost),
    );
    let reported = match outcome {
        Ok(Encoded::Done(completion)) => {
            let completed = source.complete(job, completion).map(|()| AttemptEnd::Completed);
            if matches!(completed, Err(SourceError::LeaseLost(_))) {
                // The attempt is no longer ours (a server that restarted does not know it, so
                // it would not remove the file): the staged file names this attempt only.
                let _ = storage.remove(&job.staged_path);
            }
            completed
        }
        Ok(Encoded::Stopped) if lease_lost.load(Ordering::Relaxed) => Ok(AttemptEnd::LeaseLost),
        Ok(Encoded::Stopped) if cancel_requested.load(Ordering::Relaxed) => {
            source.stop(job, true).map(|()| AttemptEnd::Canceled)
        }
        Ok(Encoded::Stopped) => source.stop(job, false).map(|()| AttemptEnd::Abandoned),
        Err(error) => {
            *cached = None;
            if let Ok(staged) = storage.local_path(&job.staged_path) {
                let _ = crate::artifacts::files::remove_if_exists(&crate::artifacts::files::temp_sibling(&staged));
                if storage.is_bucket() {
                    let _ = crate::artifacts::files::remove_if_exists(&staged);
                }
            }
            let reason = format!("{error:#}");
            tracing::warn!(job = job.job_id, attempt = job.attempt, reason = %reason, "processing job failed");
            source.fail(job, reason).map(|()| AttemptEnd::Failed)
        }
    };
    settle(reported, job.job_id, job.attempt)
}

/// Runs `work` while a helper thread renews the lease every third of it (`renew`), until the
/// work ends or the lease is lost; a renewal's answer that cancel was requested sets `cancel`,
/// a lost lease sets `lost`. Shared by the processing and clustering runners.
pub(crate) fn while_renewing<T>(
    job_id: u64,
    lease_seconds: f64,
    cancel: &AtomicBool,
    lost: &AtomicBool,
    renew: impl Fn() -> Result<Renewal, SourceError> + Send,
    work: impl FnOnce() -> T,
) -> T {
    let renew_every = Duration::from_secs_f64((lease_seconds / 3.0).clamp(0.05, 10.0));
    let (stop_renewing, renewals_stop) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            // Renews until the work ends (the sender is dropped) or the lease is lost.
            while let Err(mpsc::RecvTimeoutError::Timeout) = renewals_stop.recv_timeout(renew_every) {
                match renew() {
                    Ok(renewal) => {
                        if renewal.cancel_requested {
                            cancel.store(true, Ordering::Relaxed);
                        }
                    }
                    Err(SourceError::LeaseLost(_)) => {
                        lost.store(true, Ordering::Relaxed);
                        return;
                    }
                    Err(error) => tracing::warn!(job = job_id, error = %error, "renewing the lease failed; retrying"),
                }
            }
        });
        let outcome = work();
        drop(stop_renewing);
        outcome
    })
}

/// An attempt's end once it was reported: a refused report means the attempt was no longer
/// this worker's; one that could not be sent leaves the lease to lapse.
pub(crate) fn settle(reported: Result<AttemptEnd, SourceError>, job_id: u64, attempt: u32) -> AttemptEnd {
    match reported {
        Ok(end) => end,
        Err(SourceError::LeaseLost(message)) => {
            tracing::warn!(job = job_id, attempt, %message, "the attempt was no longer ours");
            AttemptEnd::LeaseLost
        }
        Err(error) => {
            tracing::error!(job = job_id, error = %error, "could not report the end of a job; its lease will lapse");
            AttemptEnd::LeaseLost
        }
    }
}

enum Encoded {
    Done(ProcessingCompletion),
    Stopped,
}

#[allow(clippy::too_many_arguments)]
fn encode_assignment(
    source: &dyn ProcessingJobSource,
    storage: &Storage,
    models: &crate::model::ModelRegistry,
    cached: &mut Option<(String, Box<dyn EmbeddingModel>)>,
    job: &ProcessingAssignment,
    stopping: &AtomicBool,
    cancel_requested: &AtomicBool,
    lease_lost: &AtomicBool,
) -> anyhow::Result<Encoded> {
    let (encoding, mut model, model_version, measured_batch_size) = open_job_model(models, &job.config, cached)?;
    let batch_size = job.batch_size.unwrap_or(measured_batch_size);
    let audio_path = storage.readable_path(&job.audio_path).context("reading the recording from storage")?;
    let staged_path = storage.local_path(&job.staged_path)?;
    if let Some(parent) = staged_path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut last_report: Option<Instant> = None;
    let mut after_batch = |done: u64, planned: Option<u64>| {
        if last_report.is_none_or(|at| at.elapsed() >= PROGRESS_INTERVAL) {
            last_report = Some(Instant::now());
            match source.renew(job, Some((done, planned.unwrap_or(0).max(done)))) {
                Ok(renewal) if renewal.cancel_requested => cancel_requested.store(true, Ordering::Relaxed),
                Ok(_) => {}
                Err(SourceError::LeaseLost(_)) => lease_lost.store(true, Ordering::Relaxed),
                Err(error) => tracing::warn!(job = job.job_id, error = %error, "reporting progress failed"),
            }
        }
        if cancel_requested.load(Ordering::Relaxed)
            || lease_lost.load(Ordering::Relaxed)
            || stopping.load(Ordering::Relaxed)
        {
            Proceed::Stop
        } else {
            Proceed::Continue
        }
    };
    let outcome = encode_file(
        &audio_path,
        &encoding,
        model.as_mut(),
        &staged_path,
        job.metadata.clone(),
        batch_size.max(1),
        &mut after_batch,
    );
    *cached = Some((model_version, model));
    // A bucket's inputs are local copies for this job only.
    storage.forget_local_copy(&job.audio_path);
    let outcome = outcome.with_context(|| format!("encoding audio file {}", job.audio_file_id))?;
    Ok(match outcome {
        EncodeOutcome::Promoted { rows, warnings } => {
            // In a bucket: upload the staged key, then drop the local copy.
            storage.publish(&job.staged_path).context("uploading the staged embeddings")?;
            storage.forget_local_copy(&job.staged_path);
            Encoded::Done(ProcessingCompletion { rows: Some(rows), warnings })
        }
        EncodeOutcome::NoWindows { warnings } => Encoded::Done(ProcessingCompletion { rows: None, warnings }),
        EncodeOutcome::Stopped => Encoded::Stopped,
    })
}
