//! The server's side of remote workers: registration, claims with a lease, renewals (which
//! answer whether cancel was requested), progress, completion after the staged artifact is
//! checked, failure, stop, and the sweep that turns a lapsed lease into an abandoned attempt
//! (the job is queued again). Leases live in memory; the log records only what happened.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::clustering::{encode_inputs, staged_clustering_keys, ClusteringAssignment};
use super::leases::{JobKind, LeaseRefusal, LeaseTable, LeasedJob, WorkerDirectory};
use super::processing::{ProcessingAssignment, ProcessingCompletion, Renewal};
use crate::artifacts::files::temp_sibling;
use crate::clustering_jobs::compute::ComputedClustering;
use crate::domain::decide::{Command, NewEmbeddingSet, Rejection};
use crate::domain::events::Event;
use crate::domain::ids::{ClusteringJobId, ProcessingJobId, WorkerId};
use crate::storage::Storage;
use crate::writer::{Writer, WriterError};

/// Why a worker's request was refused.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("worker {0} is not registered (the server restarted or forgot it); register again")]
    UnknownWorker(String),
    #[error("{kind} job {job_id} attempt {attempt} is not leased to worker {worker_id} (it ended, or another attempt holds the job)")]
    LeaseNotHeld { kind: &'static str, job_id: u64, attempt: u32, worker_id: String },
    #[error(
        "the lease of {kind} job {job_id} attempt {attempt} lapsed; the attempt was abandoned and the job queued again"
    )]
    LeaseLapsed { kind: &'static str, job_id: u64, attempt: u32 },
    #[error("the staged embeddings were refused: {0}")]
    ArtifactRefused(String),
    #[error(transparent)]
    Writer(#[from] WriterError),
}

/// What a worker says about itself when it registers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// What to call it in listings (`host:pid` by default).
    #[serde(default)]
    pub name: String,
    pub kinds: Vec<JobKind>,
    #[serde(default = "one")]
    pub threads: usize,
}

fn one() -> usize {
    1
}

/// The server's answer to a registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registered {
    pub worker_id: String,
    /// Where the server's storage is (a path on the server's machine; a worker whose mount
    /// differs passes `--storage`).
    pub storage: String,
    pub lease_seconds: f64,
    /// The server's `--batch-size`, when given; otherwise each worker uses the batch size it
    /// measures for each model on its own machine.
    pub batch_size: Option<usize>,
}

/// One job a worker runs now, for listings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeasedJobView {
    pub kind: JobKind,
    pub job_id: u64,
    pub attempt: u32,
    pub windows_done: Option<u64>,
    pub windows_total: Option<u64>,
    /// A clustering's fraction done (its windows are not counted as it runs).
    #[serde(default)]
    pub fraction: Option<f64>,
    pub running_seconds: f64,
    pub lease_expires_in_seconds: f64,
}

/// A connected worker, for `GET /api/workers`, `humpback workers` and the jobs page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerView {
    pub worker_id: String,
    pub name: String,
    pub kinds: Vec<JobKind>,
    pub threads: usize,
    pub registered_at_unix: u64,
    pub last_heard_seconds_ago: f64,
    pub jobs: Vec<LeasedJobView>,
}

/// Everything `GET /api/workers` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkersListing {
    pub workers: Vec<WorkerView>,
    pub lease_seconds: f64,
    /// Worker API calls answered since the server started, and attempts abandoned because
    /// their lease lapsed.
    pub api_calls: u64,
    pub lapsed_leases: u64,
}

struct Tables {
    leases: LeaseTable,
    directory: WorkerDirectory,
}

/// Owned by the server (`Humpback`); every operation is blocking (call it off async threads).
pub struct WorkerCoordinator {
    tables: Mutex<Tables>,
    api_calls: AtomicU64,
    lapsed_leases: AtomicU64,
}

impl WorkerCoordinator {
    /// A coordinator with no leases; files staged by workers of an earlier run are removed
    /// (their attempts were abandoned by start-up recovery).
    pub fn open(storage: &Storage, lease: Duration) -> WorkerCoordinator {
        match storage.list(super::STAGING_DIR) {
            Ok(staged) => {
                for object in staged {
                    if let Err(error) = storage.remove(&object.key) {
                        tracing::warn!(key = %object.key, error = %error, "could not remove a staged file of an earlier run");
                    }
                }
            }
            Err(error) => tracing::warn!(error = %error, "could not list the files staged by an earlier run"),
        }
        WorkerCoordinator::new(lease)
    }

    /// A coordinator with no leases that leaves staged files where they are.
    pub fn new(lease: Duration) -> WorkerCoordinator {
        WorkerCoordinator {
            tables: Mutex::new(Tables {
                leases: LeaseTable::new(lease),
                directory: WorkerDirectory::for_run(&run_tag()),
            }),
            api_calls: AtomicU64::new(0),
            lapsed_leases: AtomicU64::new(0),
        }
    }

    /// The staged paths (relative to the storage root, with their `.tmp` siblings) that a
    /// live processing lease may still write or complete; any other file in `tmp/workers/`
    /// is an orphan.
    pub fn held_staged_paths(&self) -> Vec<String> {
        let now = Instant::now();
        let held = self.tables().leases.live(now);
        held.into_iter()
            .flat_map(|(job, lease)| match job.kind {
                JobKind::Processing => vec![super::staged_processing_path(job.job_id, lease.attempt)],
                JobKind::Clustering => {
                    let (clusters_json, assignments) =
                        super::clustering::staged_clustering_keys(job.job_id, lease.attempt);
                    vec![clusters_json, assignments]
                }
            })
            .flat_map(|staged| {
                let writing = crate::storage::key_of(&temp_sibling(Path::new(&staged)));
                [staged, writing]
            })
            .collect()
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn lease_duration(&self) -> Duration {
        self.tables().leases.duration()
    }

    /// Counts one request of the worker API (for the coordination cost per job).
    pub fn count_call(&self) {
        self.api_calls.fetch_add(1, Ordering::Relaxed);
    }

    pub fn register(&self, request: &RegisterRequest) -> String {
        let registered_at =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs());
        let name: String = request.name.chars().filter(|c| !c.is_control()).take(120).collect();
        let worker_id = self.tables().directory.register(
            &name,
            request.kinds.clone(),
            request.threads.clamp(1, 1024),
            registered_at,
            Instant::now(),
        );
        tracing::info!(worker = %worker_id, name = %name, "worker registered");
        worker_id
    }

    /// A worker leaving on its own (its leases were ended first).
    pub fn leave(&self, worker_id: &str) -> Result<(), CoordinatorError> {
        self.tables().directory.remove(worker_id).map(|_| ()).ok_or_else(|| unknown(worker_id))
    }

    /// Notes that the worker is alive; refuses one that is not registered.
    pub fn heard_from(&self, worker_id: &str) -> Result<(), CoordinatorError> {
        if self.tables().directory.heard_from(worker_id, Instant::now()) {
            Ok(())
        } else {
            Err(unknown(worker_id))
        }
    }

    /// Claims a job of a kind the worker runs: a queued clustering job first (they are few, and
    /// someone waits for each), else the oldest queued processing job. `None` when nothing waits.
    pub fn claim(
        &self,
        writer: &Writer,
        worker_id: &str,
        batch_size: Option<usize>,
    ) -> Result<Option<super::Assignment>, CoordinatorError> {
        let kinds = self.kinds_of(worker_id)?;
        if kinds.contains(&JobKind::Clustering) {
            if let Some(job) = self.claim_clustering(writer, worker_id)? {
                return Ok(Some(super::Assignment::Clustering(job)));
            }
        }
        if kinds.contains(&JobKind::Processing) {
            return Ok(self.claim_processing(writer, worker_id, batch_size)?.map(super::Assignment::Processing));
        }
        Ok(None)
    }

    /// Claims the oldest queued job of `kind` for the worker (a claim event naming it) and
    /// leases the attempt: `(job, attempt, lease seconds)`, or `None` when nothing waits.
    fn claim_kind(
        &self,
        writer: &Writer,
        worker_id: &str,
        kind: JobKind,
    ) -> Result<Option<(u64, u32, f64)>, CoordinatorError> {
        self.heard_from(worker_id)?;
        let worker = WorkerId(worker_id.to_string());
        let command = match kind {
            JobKind::Processing => Command::ClaimProcessingJob { worker },
            JobKind::Clustering => Command::ClaimClusteringJob { worker },
        };
        let claimed = match writer.execute(command) {
            Ok(envelopes) => envelopes.into_iter().find_map(|envelope| match envelope.event {
                Event::ProcessingJobClaimed(claimed) => Some((claimed.job_id.0, claimed.attempt)),
                Event::ClusteringJobClaimed(claimed) => Some((claimed.job_id.0, claimed.attempt)),
                _ => None,
            }),
            Err(WriterError::Rejected(Rejection::NothingToClaim)) => None,
            Err(error) => return Err(error.into()),
        };
        let Some((job_id, attempt)) = claimed else { return Ok(None) };
        let mut tables = self.tables();
        tables.leases.grant(LeasedJob { kind, job_id }, worker_id, attempt, Instant::now());
        Ok(Some((job_id, attempt, tables.leases.duration().as_secs_f64())))
    }

    /// The kinds of job a registered worker runs.
    pub fn kinds_of(&self, worker_id: &str) -> Result<Vec<JobKind>, CoordinatorError> {
        self.tables()
            .directory
            .all()
            .find(|worker| worker.worker_id == worker_id)
            .map(|worker| worker.kinds.clone())
            .ok_or_else(|| unknown(worker_id))
    }

    /// Claims the oldest queued processing job for the worker and leases its attempt; `None`
    /// when nothing waits.
    pub fn claim_processing(
        &self,
        writer: &Writer,
        worker_id: &str,
        batch_size: Option<usize>,
    ) -> Result<Option<ProcessingAssignment>, CoordinatorError> {
        let Some((job_id, attempt, lease_seconds)) = self.claim_kind(writer, worker_id, JobKind::Processing)? else {
            return Ok(None);
        };
        let job_id = ProcessingJobId(job_id);
        let assignment = writer.read_state(|state| {
            let job = state.processing_jobs.get(&job_id)?;
            let audio = state.audio_files.get(&job.audio_file_id)?;
            Some(ProcessingAssignment {
                job_id: job_id.0,
                attempt,
                lease_seconds,
                audio_file_id: job.audio_file_id.0,
                audio_path: audio.stored_path.clone(),
                config: (*job.config).clone(),
                encoding_signature: job.encoding_signature.0.clone(),
                staged_path: super::staged_processing_path(job_id.0, attempt),
                metadata: crate::processing::job::embedding_metadata(job, audio, state.recorded_at(job.audio_file_id)),
                batch_size,
            })
        });
        tracing::info!(job = %job_id, attempt, worker = %worker_id, "processing job leased");
        Ok(assignment)
    }

    /// Extends the worker's lease on a processing attempt (recording progress when given) and
    /// answers whether cancel was requested. A lapsed lease is abandoned here and refused.
    pub fn renew_processing(
        &self,
        writer: &Writer,
        storage: &Storage,
        worker_id: &str,
        job_id: u64,
        attempt: u32,
        progress: Option<(u64, u64)>,
    ) -> Result<Renewal, CoordinatorError> {
        self.heard_from(worker_id)?;
        let job = LeasedJob { kind: JobKind::Processing, job_id };
        let renewed = self.tables().leases.renew(job, worker_id, attempt, progress, Instant::now());
        self.refused_unless_held(writer, storage, job, worker_id, attempt, renewed)?;
        if let Some((windows_done, windows_total)) = progress {
            writer.execute(Command::ReportProcessingProgress {
                job_id: ProcessingJobId(job_id),
                attempt,
                windows_done,
                windows_total,
            })?;
        }
        let cancel_requested = writer.read_state(|state| {
            state.processing_jobs.get(&ProcessingJobId(job_id)).is_some_and(|job| job.cancel_requested)
        });
        Ok(Renewal { cancel_requested })
    }

    /// Records the end of a processing attempt the worker holds: a staged Parquet is checked
    /// (its size, its footer, its row count and what it encodes) and moved into place before
    /// the completion is recorded; a refused one is removed and the attempt recorded as failed.
    pub fn complete_processing(
        &self,
        writer: &Writer,
        storage: &Storage,
        worker_id: &str,
        job_id: u64,
        attempt: u32,
        completion: ProcessingCompletion,
    ) -> Result<(), CoordinatorError> {
        self.release_held(writer, storage, worker_id, LeasedJob { kind: JobKind::Processing, job_id }, attempt)?;
        let staged = super::staged_processing_path(job_id, attempt);
        let job_id = ProcessingJobId(job_id);
        let warning = (!completion.warnings.is_empty()).then(|| completion.warnings.join("; "));
        let Some(rows) = completion.rows else {
            remove_staged(storage, &staged);
            let warning = warning.unwrap_or_else(|| "the file produced no windows".to_string());
            writer.execute(Command::CompleteProcessingJob {
                job_id,
                attempt,
                embedding_set: None,
                warning: Some(warning),
            })?;
            return Ok(());
        };
        let expected = writer.read_state(|state| {
            let job = state.processing_jobs.get(&job_id)?;
            let dim = state.models.get(&job.config.model_name).map(|model| model.embedding_dim);
            Some((
                crate::processing::job::embeddings_relative_path(
                    &job.config.model_version,
                    job.audio_file_id,
                    &job.encoding_signature,
                ),
                job.encoding_signature.0.clone(),
                dim,
            ))
        });
        let Some((relative, signature, dim)) = expected else {
            remove_staged(storage, &staged);
            return Err(WriterError::Rejected(Rejection::ProcessingJobNotFound(job_id)).into());
        };
        let summary = match check_staged_embeddings(storage, &staged, rows, &signature, dim) {
            Ok(summary) => summary,
            Err(reason) => {
                let job = LeasedJob { kind: JobKind::Processing, job_id: job_id.0 };
                return Err(refuse_staged(writer, storage, worker_id, job, attempt, "the staged embeddings", reason));
            }
        };
        let final_key = relative.clone();
        let recorded = writer.execute_staged(
            Command::CompleteProcessingJob {
                job_id,
                attempt,
                embedding_set: Some(NewEmbeddingSet {
                    vector_dim: summary.vector_dim as u32,
                    row_count: rows,
                    parquet_path: relative,
                }),
                warning,
            },
            |_| storage.promote(&staged, &final_key).map_err(|error| error.to_string()),
        );
        if recorded.is_err() {
            remove_staged(storage, &staged);
        }
        recorded?;
        tracing::info!(job = %job_id, attempt, worker = %worker_id, rows, "processing job completed by a remote worker");
        Ok(())
    }

    /// Claims the oldest queued clustering job for the worker and leases its attempt; `None`
    /// when nothing waits. The assignment carries the state the job reads.
    pub fn claim_clustering(
        &self,
        writer: &Writer,
        worker_id: &str,
    ) -> Result<Option<ClusteringAssignment>, CoordinatorError> {
        let Some((job_id, attempt, lease_seconds)) = self.claim_kind(writer, worker_id, JobKind::Clustering)? else {
            return Ok(None);
        };
        let job_id = ClusteringJobId(job_id);
        let inputs = writer
            .read_state(|state| crate::clustering_jobs::compute::clustering_inputs(state, job_id))
            .ok_or_else(|| WriterError::Rejected(Rejection::Invalid(format!("clustering job {job_id} is unknown"))))?;
        let inputs = encode_inputs(&inputs).map_err(WriterError::Staging)?;
        let (staged_clusters_json, staged_assignments) = staged_clustering_keys(job_id.0, attempt);
        tracing::info!(job = %job_id, attempt, worker = %worker_id, "clustering job leased");
        Ok(Some(ClusteringAssignment {
            job_id: job_id.0,
            attempt,
            lease_seconds,
            inputs,
            staged_clusters_json,
            staged_assignments,
        }))
    }

    /// Extends the worker's lease on a clustering attempt (recording the stage when given) and
    /// answers whether cancel was requested.
    pub fn renew_clustering(
        &self,
        writer: &Writer,
        storage: &Storage,
        worker_id: &str,
        job_id: u64,
        attempt: u32,
        progress: Option<(String, f64)>,
    ) -> Result<Renewal, CoordinatorError> {
        self.heard_from(worker_id)?;
        let job = LeasedJob { kind: JobKind::Clustering, job_id };
        let shown = progress.as_ref().map(|(_, fraction)| ((fraction.clamp(0.0, 1.0) * 1000.0) as u64, 1000));
        let renewed = self.tables().leases.renew(job, worker_id, attempt, shown, Instant::now());
        self.refused_unless_held(writer, storage, job, worker_id, attempt, renewed)?;
        let job_id = ClusteringJobId(job_id);
        if let Some((stage, fraction)) = progress {
            let stage: String = stage.chars().filter(|c| !c.is_control()).take(40).collect();
            writer.execute(Command::ReportClusteringProgress {
                job_id,
                attempt,
                stage,
                fraction: fraction.clamp(0.0, 1.0),
            })?;
        }
        let cancel_requested =
            writer.read_state(|state| state.clustering_jobs.get(&job_id).is_some_and(|job| job.cancel_requested));
        Ok(Renewal { cancel_requested })
    }

    /// Records a clustering attempt's end: the staged `assignments.parquet` must be the file the
    /// worker describes (its SHA-256 and row count) and `clusters.json` must be there; both are
    /// then moved to `clusters/{job}/` and the completion recorded. A refused attempt is failed.
    pub fn complete_clustering(
        &self,
        writer: &Writer,
        storage: &Storage,
        worker_id: &str,
        job_id: u64,
        attempt: u32,
        computed: ComputedClustering,
    ) -> Result<(), CoordinatorError> {
        let job =
            self.release_held(writer, storage, worker_id, LeasedJob { kind: JobKind::Clustering, job_id }, attempt)?;
        let (staged_clusters_json, staged_assignments) = staged_clustering_keys(job_id, attempt);
        let job_id = ClusteringJobId(job_id);
        let checked = check_staged_assignments(storage, &staged_clusters_json, &staged_assignments, &computed);
        if let Err(reason) = checked {
            return Err(refuse_staged(
                writer,
                storage,
                worker_id,
                job,
                attempt,
                "the staged clustering outputs",
                reason,
            ));
        }
        let (clusters_json, assignments) = crate::clustering_jobs::worker::output_paths(job_id);
        let completed = computed.into_completion(job_id, attempt, clusters_json.clone(), assignments.clone());
        let recorded = writer.execute_staged(Command::CompleteClusteringJob(completed), |_| {
            storage.promote(&staged_assignments, &assignments).map_err(|error| error.to_string())?;
            storage.promote(&staged_clusters_json, &clusters_json).map_err(|error| error.to_string())
        });
        if recorded.is_err() {
            remove_staged_of(storage, job, attempt);
        }
        recorded?;
        tracing::info!(job = %job_id, attempt, worker = %worker_id, "clustering job completed by a remote worker");
        Ok(())
    }

    /// Records how a held attempt ended other than completed: failed (with the worker's
    /// reason), canceled as asked, or handed back because the worker stops (the job is queued
    /// again). What the attempt staged is removed.
    pub fn end_attempt(
        &self,
        writer: &Writer,
        storage: &Storage,
        worker_id: &str,
        job: LeasedJob,
        attempt: u32,
        ending: AttemptEnding,
    ) -> Result<(), CoordinatorError> {
        self.release_held(writer, storage, worker_id, job, attempt)?;
        record_ending(writer, storage, worker_id, job, attempt, ending)
    }

    /// Ends the worker's lease on `job`'s attempt (the attempt is ending); refused as
    /// [`WorkerCoordinator::refused_unless_held`] says when the worker does not hold it.
    fn release_held(
        &self,
        writer: &Writer,
        storage: &Storage,
        worker_id: &str,
        job: LeasedJob,
        attempt: u32,
    ) -> Result<LeasedJob, CoordinatorError> {
        self.heard_from(worker_id)?;
        let released = self.tables().leases.release(job, worker_id, attempt, Instant::now()).map(|_| ());
        self.refused_unless_held(writer, storage, job, worker_id, attempt, released)?;
        Ok(job)
    }

    /// Turns a refused lease into the worker's error; a lapsed one is abandoned first. Either
    /// way, what the attempt staged is removed.
    fn refused_unless_held(
        &self,
        writer: &Writer,
        storage: &Storage,
        job: LeasedJob,
        worker_id: &str,
        attempt: u32,
        result: Result<(), LeaseRefusal>,
    ) -> Result<(), CoordinatorError> {
        let kind = job.kind.as_str();
        match result {
            Ok(()) => Ok(()),
            Err(LeaseRefusal::NotHeld) => {
                remove_staged_of(storage, job, attempt);
                Err(CoordinatorError::LeaseNotHeld {
                    kind,
                    job_id: job.job_id,
                    attempt,
                    worker_id: worker_id.to_string(),
                })
            }
            Err(LeaseRefusal::Lapsed(lease)) => {
                self.abandon_lapsed(writer, storage, job, &lease.worker_id, lease.attempt);
                Err(CoordinatorError::LeaseLapsed { kind, job_id: job.job_id, attempt })
            }
        }
    }

    fn abandon_lapsed(&self, writer: &Writer, storage: &Storage, job: LeasedJob, worker_id: &str, attempt: u32) {
        self.lapsed_leases.fetch_add(1, Ordering::Relaxed);
        let seconds = self.lease_duration().as_secs_f64();
        let reason = format!("worker {worker_id} was not heard from for {seconds} s (its lease lapsed)");
        remove_staged_of(storage, job, attempt);
        let command = match job.kind {
            JobKind::Processing => {
                Command::AbandonProcessingJob { job_id: ProcessingJobId(job.job_id), attempt, reason }
            }
            JobKind::Clustering => Command::AbandonClusteringJob {
                job_id: crate::domain::ids::ClusteringJobId(job.job_id),
                attempt,
                reason,
            },
        };
        match writer.execute(command) {
            Ok(_) => {
                tracing::warn!(kind = job.kind.as_str(), job = job.job_id, attempt, worker = %worker_id, "lease lapsed; job queued again")
            }
            // Already ended some other way (canceled while queued for cancel, recovered).
            Err(WriterError::Rejected(Rejection::NotRunningAttempt { .. })) => {}
            Err(error) => tracing::error!(error = %error, job = job.job_id, "could not record a lapsed lease"),
        }
    }

    /// Abandons every attempt whose lease lapsed (the job is queued again) and forgets workers
    /// silent for much longer. Returns how many attempts were abandoned.
    pub fn sweep(&self, writer: &Writer, storage: &Storage) -> usize {
        let now = Instant::now();
        let lapsed = {
            let mut tables = self.tables();
            let silence = tables.leases.duration() * 10 + Duration::from_secs(60);
            tables.directory.forget_silent(silence, now);
            tables.leases.take_lapsed(now)
        };
        for (job, lease) in &lapsed {
            self.abandon_lapsed(writer, storage, *job, &lease.worker_id, lease.attempt);
        }
        lapsed.len()
    }

    /// Connected workers, what each runs and when each was last heard from.
    pub fn listing(&self) -> WorkersListing {
        let now = Instant::now();
        let tables = self.tables();
        let workers = tables
            .directory
            .all()
            .map(|worker| WorkerView {
                worker_id: worker.worker_id.clone(),
                name: worker.name.clone(),
                kinds: worker.kinds.clone(),
                threads: worker.threads,
                registered_at_unix: worker.registered_at_unix,
                last_heard_seconds_ago: now.saturating_duration_since(worker.last_heard).as_secs_f64(),
                jobs: tables
                    .leases
                    .held_by(&worker.worker_id)
                    .into_iter()
                    .map(|(job, lease)| LeasedJobView {
                        kind: job.kind,
                        job_id: job.job_id,
                        attempt: lease.attempt,
                        // A clustering's progress is kept as a fraction in thousandths.
                        windows_done: lease.progress.filter(|_| job.kind == JobKind::Processing).map(|(done, _)| done),
                        windows_total: lease
                            .progress
                            .filter(|_| job.kind == JobKind::Processing)
                            .map(|(_, total)| total),
                        fraction: lease
                            .progress
                            .filter(|_| job.kind == JobKind::Clustering)
                            .map(|(done, total)| done as f64 / total.max(1) as f64),
                        running_seconds: now.saturating_duration_since(lease.claimed_at).as_secs_f64(),
                        lease_expires_in_seconds: lease.expires_at.saturating_duration_since(now).as_secs_f64(),
                    })
                    .collect(),
            })
            .collect();
        WorkersListing {
            workers,
            lease_seconds: tables.leases.duration().as_secs_f64(),
            api_calls: self.api_calls.load(Ordering::Relaxed),
            lapsed_leases: self.lapsed_leases.load(Ordering::Relaxed),
        }
    }
}

/// Four base-36 characters from the clock and the process id, different (almost surely) for
/// each run of the server.
fn run_tag() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_nanos());
    let mut value = (nanos ^ (u128::from(std::process::id()) << 20)) as u64;
    (0..4)
        .map(|_| {
            let digit = (value % 36) as u32;
            value /= 36;
            char::from_digit(digit, 36).unwrap_or('0')
        })
        .collect()
}

fn unknown(worker_id: &str) -> CoordinatorError {
    CoordinatorError::UnknownWorker(worker_id.chars().take(64).collect())
}

/// Records how an attempt of `job` ended (its lease already released) and removes what it
/// staged.
fn record_ending(
    writer: &Writer,
    storage: &Storage,
    worker_id: &str,
    job: LeasedJob,
    attempt: u32,
    ending: AttemptEnding,
) -> Result<(), CoordinatorError> {
    remove_staged_of(storage, job, attempt);
    let handed_back = || format!("worker {worker_id} stopped before it finished");
    let command = match job.kind {
        JobKind::Processing => {
            let job_id = ProcessingJobId(job.job_id);
            match ending {
                AttemptEnding::Failed(reason) => Command::FailProcessingJob { job_id, attempt, reason },
                AttemptEnding::Canceled => Command::ConfirmProcessingJobCanceled { job_id, attempt },
                AttemptEnding::HandedBack => Command::AbandonProcessingJob { job_id, attempt, reason: handed_back() },
            }
        }
        JobKind::Clustering => {
            let job_id = ClusteringJobId(job.job_id);
            match ending {
                AttemptEnding::Failed(reason) => Command::FailClusteringJob { job_id, attempt, reason },
                AttemptEnding::Canceled => Command::ConfirmClusteringJobCanceled { job_id, attempt },
                AttemptEnding::HandedBack => Command::AbandonClusteringJob { job_id, attempt, reason: handed_back() },
            }
        }
    };
    writer.execute(command)?;
    Ok(())
}

/// Fails an attempt whose staged artifacts (`what`) did not pass the check: they are removed,
/// the failure recorded with the reason, and the error to answer returned.
fn refuse_staged(
    writer: &Writer,
    storage: &Storage,
    worker_id: &str,
    job: LeasedJob,
    attempt: u32,
    what: &str,
    reason: String,
) -> CoordinatorError {
    tracing::warn!(job = job.job_id, attempt, worker = %worker_id, reason = %reason, "{what} refused");
    let ending = AttemptEnding::Failed(format!("{what} were refused: {reason}"));
    match record_ending(writer, storage, worker_id, job, attempt, ending) {
        Ok(()) => CoordinatorError::ArtifactRefused(reason),
        Err(error) => error,
    }
}

/// Removes what an attempt of `job` may have staged.
fn remove_staged_of(storage: &Storage, job: LeasedJob, attempt: u32) {
    match job.kind {
        JobKind::Processing => remove_staged(storage, &super::staged_processing_path(job.job_id, attempt)),
        JobKind::Clustering => {
            let (clusters_json, assignments) = super::clustering::staged_clustering_keys(job.job_id, attempt);
            remove_staged(storage, &clusters_json);
            remove_staged(storage, &assignments);
        }
    }
}

/// Removes a staged artifact and its temporary sibling (a worker killed while writing).
fn remove_staged(storage: &Storage, staged: &str) {
    let writing = crate::storage::key_of(&temp_sibling(Path::new(staged)));
    for key in [staged, writing.as_str()] {
        if let Err(error) = storage.remove(key) {
            tracing::warn!(error = %error, "could not remove a staged artifact");
        }
    }
}

/// How an attempt ended other than completed (as its worker reports it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptEnding {
    Failed(String),
    Canceled,
    HandedBack,
}

/// Checks a remote worker's staged clustering outputs: `clusters.json` is there and
/// `assignments.parquet` is the file the worker describes (SHA-256 and rows). The server reads
/// the assignments whole (its projection needs them anyway).
fn check_staged_assignments(
    storage: &Storage,
    clusters_json: &str,
    assignments: &str,
    computed: &ComputedClustering,
) -> Result<(), String> {
    match storage.size_of(clusters_json) {
        Ok(Some(size)) if size > 0 => {}
        Ok(_) => return Err("clusters.json was not staged".into()),
        Err(error) => return Err(format!("clusters.json cannot be read: {error}")),
    }
    let path =
        storage.readable_path(assignments).map_err(|error| format!("assignments.parquet cannot be read: {error}"))?;
    // The local copy stays: promotion makes it the final key's, and a refusal removes it.
    let described = crate::clustering_jobs::outputs::describe_assignments_file(&path)
        .map_err(|error| format!("assignments.parquet does not read: {error}"))?;
    if described != computed.assignments_file {
        return Err(format!(
            "assignments.parquet holds {} rows with SHA-256 {}, the worker reported {} rows with {}",
            described.row_count,
            described.sha256.0,
            computed.assignments_file.row_count,
            computed.assignments_file.sha256.0
        ));
    }
    let labelled: u64 = computed.clusters.iter().map(|cluster| cluster.size).sum();
    if labelled != described.row_count {
        return Err(format!("the clusters hold {labelled} windows, the assignments {}", described.row_count));
    }
    Ok(())
}

/// Checks a staged embedding set before it is put in place: not empty, its Parquet footer
/// readable, the row count it states equal to the rows it holds and to what the worker
/// reported, its encoding signature the job's and its dimension the model's.
pub fn check_staged_embeddings(
    storage: &Storage,
    staged: &str,
    rows: u64,
    signature: &str,
    vector_dim: Option<u32>,
) -> Result<crate::artifacts::embeddings_parquet::EmbeddingSetSummary, String> {
    let name = staged.rsplit('/').next().unwrap_or(staged);
    let size = storage
        .size_of(staged)
        .map_err(|error| format!("{name} cannot be read: {error}"))?
        .ok_or_else(|| format!("{name} was not found in storage"))?;
    if size == 0 {
        return Err("the staged file is empty".into());
    }
    let metadata =
        storage.parquet_metadata(staged).map_err(|error| format!("its Parquet footer does not read: {error}"))?;
    let summary = crate::artifacts::embeddings_parquet::summarize(&metadata, Path::new(name))
        .map_err(|error| format!("its Parquet footer does not read: {error}"))?;
    if !summary.is_complete() {
        return Err(format!("it holds {} rows but states another count", summary.rows));
    }
    if summary.rows != rows {
        return Err(format!("the worker reported {rows} rows but the file holds {}", summary.rows));
    }
    if summary.metadata_value("humpback.encoding_signature") != Some(signature) {
        return Err("it encodes another signature than the job's".into());
    }
    if let Some(dim) = vector_dim {
        if summary.vector_dim != dim as usize {
            return Err(format!("its vectors have {} dimensions, the model {dim}", summary.vector_dim));
        }
    }
    Ok(summary)
}
