//! Training workers, the shell: claim a classifier's training, train it (`train.rs`) with
//! progress and cancellation, publish the artifact (stage, fsync, rename), then record it.
//! Follows `clustering_jobs::worker`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use super::artifact::{classifier_key, publish};
use super::request::TrainClassifierRequest;
use super::train::{train_classifier, TrainingError};
use crate::domain::decide::{Command, Rejection};
use crate::domain::events::{ClassifierTrainingCompleted, Event};
use crate::domain::ids::{ClassifierId, WorkerId};
use crate::domain::json_text::JsonText;
use crate::domain::state::{DomainState, JobStatus};
use crate::services::Humpback;
use crate::writer::WriterError;

const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, PartialEq)]
pub enum TrainingStep {
    Idle,
    Ran { classifier_id: ClassifierId, status: JobStatus },
}

pub struct TrainingWorker {
    humpback: Arc<Humpback>,
    worker_id: WorkerId,
    stopping: Arc<AtomicBool>,
}

impl TrainingWorker {
    pub fn new(humpback: Arc<Humpback>, worker_id: WorkerId, stopping: Arc<AtomicBool>) -> TrainingWorker {
        TrainingWorker { humpback, worker_id, stopping }
    }

    /// Claims the oldest queued training, if any, and runs it to its end. Blocking.
    pub fn step(&mut self) -> anyhow::Result<TrainingStep> {
        let claimed =
            match self.humpback.writer.execute(Command::ClaimClassifierTraining { worker: self.worker_id.clone() }) {
                Ok(envelopes) => envelopes.into_iter().find_map(|envelope| match envelope.event {
                    Event::ClassifierTrainingClaimed(claimed) => Some((claimed.classifier_id, claimed.attempt)),
                    _ => None,
                }),
                Err(WriterError::Rejected(Rejection::NothingToClaim)) => None,
                Err(error) => return Err(error).context("claiming a classifier training"),
            };
        let Some((classifier_id, attempt)) = claimed else { return Ok(TrainingStep::Idle) };
        let result = catch_unwind(AssertUnwindSafe(|| self.run(classifier_id, attempt)));
        let reason = match result {
            Ok(Ok(status)) => return Ok(TrainingStep::Ran { classifier_id, status }),
            Ok(Err(error)) => format!("{error:#}"),
            Err(_) => "the training worker panicked".to_string(),
        };
        tracing::warn!(classifier = %classifier_id, reason = %reason, "classifier training failed");
        self.humpback.writer.execute(Command::FailClassifierTraining { classifier_id, attempt, reason })?;
        Ok(TrainingStep::Ran { classifier_id, status: JobStatus::Failed })
    }

    fn run(&mut self, classifier_id: ClassifierId, attempt: u32) -> anyhow::Result<JobStatus> {
        let humpback = self.humpback.clone();
        // Only what training reads: the embedding sets and the annotations as they are now.
        let (state, request) = humpback
            .writer
            .read_state(|state| {
                let classifier = state.classifiers.get(&classifier_id)?;
                let snapshot = DomainState {
                    embedding_sets: state.embedding_sets.clone(),
                    annotations: state.annotations.clone(),
                    ..DomainState::default()
                };
                Some((snapshot, classifier.request.clone()))
            })
            .ok_or_else(|| anyhow!("classifier {classifier_id} is unknown"))?;
        let request: TrainClassifierRequest =
            serde_json::from_str(request.as_str()).context("reading the stored training request")?;
        let canceled = AtomicBool::new(false);
        let keep_going = || {
            let cancel = humpback.writer.read_state(|s| {
                s.classifiers.get(&classifier_id).is_some_and(|classifier| classifier.cancel_requested)
            });
            canceled.store(cancel, Ordering::Relaxed);
            !(cancel || self.stopping.load(Ordering::Relaxed))
        };
        let mut last_report: Option<Instant> = None;
        let mut progress = |fraction: f64| {
            if last_report.is_none_or(|at| at.elapsed() >= PROGRESS_INTERVAL) || fraction >= 1.0 {
                last_report = Some(Instant::now());
                let stage = if fraction < 0.1 { "loading" } else { "evaluating" };
                let _ = humpback.writer.execute(Command::ReportClassifierTrainingProgress {
                    classifier_id,
                    attempt,
                    stage: stage.into(),
                    fraction: fraction.clamp(0.0, 1.0),
                });
            }
        };
        // The annotated recordings' sets, local (from a bucket: fetched into the cache first).
        let annotated: std::collections::BTreeSet<_> =
            state.annotations.values().map(|annotation| annotation.audio_file_id).collect();
        for set in state.embedding_sets.values().filter(|set| annotated.contains(&set.audio_file_id)) {
            humpback.storage.readable_path(&set.parquet_path).context("fetching an embedding set")?;
        }
        let root = humpback.storage.local_root().to_path_buf();
        let artifact = match train_classifier(&state, &root, classifier_id, &request, &keep_going, &mut progress) {
            Ok(artifact) => artifact,
            Err(TrainingError::Canceled) => {
                return if canceled.load(Ordering::Relaxed) {
                    humpback.writer.execute(Command::ConfirmClassifierTrainingCanceled { classifier_id, attempt })?;
                    Ok(JobStatus::Canceled)
                } else {
                    humpback.writer.execute(Command::AbandonClassifierTraining {
                        classifier_id,
                        attempt,
                        reason: "the server shut down while the training was running".into(),
                    })?;
                    Ok(JobStatus::Queued)
                };
            }
            Err(other) => return Err(other.into()),
        };
        let version = publish(&root, &artifact).context("publishing the classifier")?;
        humpback.storage.publish(&classifier_key(classifier_id)).context("uploading the classifier to storage")?;
        let relative = classifier_key(classifier_id);
        let completed = ClassifierTrainingCompleted {
            classifier_id,
            attempt,
            artifact_path: relative,
            version,
            vector_dim: artifact.vector_dim as u32,
            threshold: artifact.threshold,
            metrics: JsonText::from_value(&serde_json::to_value(&artifact.metrics)?),
            training_set: JsonText::from_value(&serde_json::to_value(&artifact.training_set)?),
        };
        humpback.writer.execute(Command::CompleteClassifierTraining(completed)).context("recording the classifier")?;
        Ok(JobStatus::Complete)
    }
}

/// At start-up: a training still running belongs to a process that died. Its artifact counts only
/// once its completion event is recorded, so the attempt is abandoned (queued again) and any
/// file it left is removed.
pub fn recover_running_trainings(humpback: &Humpback) -> anyhow::Result<Vec<ClassifierId>> {
    let running: Vec<(ClassifierId, u32)> = humpback.writer.read_state(|state| {
        state
            .classifiers
            .iter()
            .filter(|(_, classifier)| classifier.status == JobStatus::Running)
            .map(|(id, classifier)| (*id, classifier.attempt))
            .collect()
    });
    for (classifier_id, attempt) in &running {
        let _ =
            std::fs::remove_dir_all(humpback.storage.local_root().join("classifiers").join(classifier_id.to_string()));
        humpback.writer.execute(Command::AbandonClassifierTraining {
            classifier_id: *classifier_id,
            attempt: *attempt,
            reason: "the process running it stopped before it finished".into(),
        })?;
    }
    Ok(running.into_iter().map(|(id, _)| id).collect())
}

/// Runs a training worker until `stop` turns true.
pub async fn run_training_worker(
    humpback: Arc<Humpback>,
    stopping: Arc<AtomicBool>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let worker_id = WorkerId(format!("{}:training:0", std::process::id()));
    let worker = TrainingWorker::new(humpback.clone(), worker_id, stopping);
    crate::services::drive_blocking_worker(
        humpback,
        worker,
        "training",
        |worker| worker.step().map(|outcome| matches!(outcome, TrainingStep::Ran { .. })),
        stop,
    )
    .await
}
