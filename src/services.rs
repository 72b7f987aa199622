//! The shared services every handler and worker uses: the log, the writer, the projections
//! and their catch-up, the model registry and the remote workers' leases (`Humpback`), the
//! settings, and the loop that drives a blocking worker. Below the HTTP application, the CLI
//! and the workers; `app.rs` adds start-up recovery and the server around it.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::sync::watch;

use crate::config::DataDir;
use crate::domain::decide::Command;
use crate::domain::ids::EventSeq;
use crate::log::{Envelope, EventLog, SledEventLog};
use crate::projections::read::ProjectionReader;
use crate::projections::Projector;
use crate::writer::{Writer, WriterError};

/// Tunables of a running humpback.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest accepted upload, in bytes (larger answers 413).
    pub max_upload_bytes: u64,
    /// Where `.tflite` models (and their `NAME.toml` sidecars) are found; `None`: `{data_dir}/models`.
    pub models_dir: Option<std::path::PathBuf>,
    /// Offer the deterministic `fake` model (tests and demos only).
    pub enable_fake_model: bool,
    /// Processing workers in the server.
    pub processing_workers: usize,
    /// Windows per inference batch (`--batch-size`); `None`: each model's measured choice.
    pub batch_size: Option<usize>,
    /// What one processing worker's model may use (`--model-memory`); the batch size is chosen within it.
    pub model_memory_bytes: u64,
    /// Time each model at a few batch sizes when it is registered (the server); off: the default size.
    pub measure_batch_sizes: bool,
    /// Cores humpback's processing may use in all (`--threads`): each processing worker's
    /// model gets `threads / processing_workers` intra-op threads (at least one).
    pub threads: usize,
    /// Clustering jobs that may run at once.
    pub clustering_workers: usize,
    /// Known host names, the access token and whether reads need it.
    pub access: crate::access_settings::AccessSettings,
    /// Folders (canonical) below which import by server path over HTTP is allowed; none: off.
    pub import_roots: Vec<std::path::PathBuf>,
    /// File-name time patterns (`--time-pattern`), tried before the built-in families.
    pub time_patterns: Vec<crate::recording_time::TimePattern>,
    /// How long a remote worker's claim holds without a renewal.
    pub lease: std::time::Duration,
    /// Leave the files remote workers staged in `tmp/workers/` at open instead of removing
    /// them (`humpback artifacts orphans` lists them first).
    pub keep_staged_worker_files: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            models_dir: None,
            enable_fake_model: false,
            processing_workers: default_worker_count(),
            batch_size: None,
            model_memory_bytes: crate::model::DEFAULT_MODEL_MEMORY_BYTES,
            measure_batch_sizes: false,
            threads: default_worker_count(),
            clustering_workers: 1,
            access: Default::default(),
            import_roots: Vec::new(),
            time_patterns: Vec::new(),
            lease: std::time::Duration::from_secs_f64(crate::workers::DEFAULT_LEASE_SECONDS),
            keep_staged_worker_files: false,
        }
    }
}

/// Each processing worker's share of `threads` for its model's runs, so that the workers
/// together use the cores they were given and no more (at least one each).
pub fn intra_op_threads_per_worker(threads: usize, processing_workers: usize) -> usize {
    (threads / processing_workers.max(1)).max(1)
}

/// One worker per core.
pub fn default_worker_count() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// 4 GiB: a few hours of 96 kHz 24-bit stereo WAV.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 4 << 30;

/// The services every handler and worker shares.
pub struct Humpback {
    pub data_dir: DataDir,
    pub settings: Settings,
    pub models: Arc<crate::model::ModelRegistry>,
    /// What start-up recovery found and did.
    pub recovery: crate::processing::job::RecoveryReport,
    pub log: Arc<SledEventLog>,
    pub writer: Arc<Writer>,
    pub projector: Arc<Mutex<Projector>>,
    pub reader: ProjectionReader,
    /// Remote workers: their leases and who is connected.
    pub remote_workers: Arc<crate::workers::WorkerCoordinator>,
    projected: watch::Receiver<EventSeq>,
}

impl Humpback {
    /// Opens (creating if needed) a data directory's services: its layout, the log, the domain
    /// state, the models and the projections, brought up to date with the log. Without
    /// recovery: `app::Humpback::open_with` runs the workers' start-up recovery after this.
    pub(crate) fn open_services(data_dir: DataDir, settings: Settings) -> anyhow::Result<Humpback> {
        data_dir.create_layout()?;
        let log = Arc::new(SledEventLog::open(&data_dir.events_dir())?);
        let snapshots = crate::writer::SnapshotSettings {
            path: data_dir.writer_snapshot(),
            every: crate::state_snapshot::DEFAULT_SNAPSHOT_EVERY,
        };
        let writer = Arc::new(
            Writer::open_with_snapshots(log.clone(), snapshots)
                .context("folding the event log into the domain state")?,
        );
        let models_dir = settings.models_dir.clone().unwrap_or_else(|| data_dir.root().join("models"));
        std::fs::create_dir_all(&models_dir).with_context(|| format!("creating {}", models_dir.display()))?;
        let mut registry_config = crate::model::RegistryConfig::new(&models_dir);
        if settings.enable_fake_model {
            registry_config.fake_model = Some(crate::model::FakeModelConfig::default());
        }
        registry_config.batch_size_override = settings.batch_size.map(|size| size.max(1));
        registry_config.model_memory_bytes = settings.model_memory_bytes;
        registry_config.measurements_directory = Some(data_dir.batch_measurements_dir());
        registry_config.measure_batch_sizes = settings.measure_batch_sizes;
        registry_config.run_options.intra_op_threads =
            intra_op_threads_per_worker(settings.threads, settings.processing_workers);
        let models = Arc::new(crate::model::ModelRegistry::discover(registry_config).context("discovering models")?);
        for problem in models.problems() {
            tracing::warn!(file = %problem.file, reason = %problem.reason, "model file skipped");
        }
        for model in models.models() {
            writer
                .execute(Command::RegisterModel(model.info.to_registered_event()))
                .with_context(|| format!("registering model {}", model.info.name))?;
        }
        let retired: Vec<String> = writer.read_state(|state| state.retired_models.iter().cloned().collect());
        models.mark_retired(retired.iter().map(String::as_str));
        let mut projector = Projector::open(&data_dir.projections_db(), data_dir.root())?;
        let reached = projector.catch_up(log.as_ref()).context("bringing the projections up to date")?;
        tracing::info!(head = %log.head(), projected = %reached, data_dir = %data_dir.root().display(), "data directory open");
        let projected = projector.subscribe();
        let reader = ProjectionReader::new(&data_dir.projections_db());
        let remote_workers = Arc::new(if settings.keep_staged_worker_files {
            crate::workers::WorkerCoordinator::new(settings.lease)
        } else {
            crate::workers::WorkerCoordinator::open(data_dir.root(), settings.lease)
        });
        Ok(Humpback {
            data_dir,
            settings,
            models,
            recovery: Default::default(),
            log,
            writer,
            projector: Arc::new(Mutex::new(projector)),
            reader,
            remote_workers,
            projected,
        })
    }

    /// Executes a command and waits until the projections reflect its events, so that a read
    /// right after a write sees it.
    pub async fn execute(self: &Arc<Self>, command: Command) -> Result<Vec<Envelope>, WriterError> {
        let writer = self.writer.clone();
        let envelopes =
            tokio::task::spawn_blocking(move || writer.execute(command)).await.unwrap_or_else(|join_error| {
                Err(WriterError::Rejected(crate::domain::decide::Rejection::Invalid(format!(
                    "the writer stopped: {join_error}"
                ))))
            })?;
        if let Some(last) = envelopes.last() {
            self.wait_until_projected(last.seq).await;
        }
        Ok(envelopes)
    }

    /// Checks, stores and registers a model offered while the server runs (`models add`, the upload
    /// form): the registry checks and stores it, then `ModelRegistered` is recorded; if recording
    /// fails, the model is unregistered and its files removed again.
    pub async fn add_model(
        self: &Arc<Self>,
        upload: crate::model::ModelUpload,
    ) -> Result<crate::model::ModelInfo, AddModelError> {
        let models = self.models.clone();
        let added = tokio::task::spawn_blocking(move || models.add(upload))
            .await
            .map_err(|join_error| AddModelError::Failed(anyhow::anyhow!("checking the model stopped: {join_error}")))?
            .map_err(AddModelError::Refused)?;
        let name = added.info.name.clone();
        match self.execute(Command::RegisterModel(added.info.to_registered_event())).await {
            Ok(_) => {
                tracing::info!(model = %name, version = %added.info.version, "model added");
                Ok(added.info)
            }
            Err(error) => {
                self.models.remove_added(&name);
                Err(AddModelError::Writer(error))
            }
        }
    }

    /// Hides a model from new jobs: records `ModelRetired`, then the registry stops offering it.
    pub async fn retire_model(self: &Arc<Self>, name: &str) -> Result<(), WriterError> {
        self.execute(Command::RetireModel { name: name.to_string() }).await?;
        self.models.mark_retired([name]);
        tracing::info!(model = %name, "model retired");
        Ok(())
    }

    /// The sequence of the last recorded event.
    pub fn log_head(&self) -> EventSeq {
        self.log.head()
    }

    /// One page of events, using the event index for filters by aggregate or type. Blocking.
    pub fn read_events(
        &self,
        request: &crate::log::filter::PageRequest,
    ) -> Result<crate::log::filter::EventPage, crate::projections::ProjectionError> {
        crate::projections::event_index::read_page_indexed(self.log.as_ref(), &self.reader, request)
    }

    /// Follows how far every projection has applied the log.
    pub fn subscribe_projected(&self) -> watch::Receiver<EventSeq> {
        self.projected.clone()
    }

    /// Waits until every projection has applied `seq` (returns at once if it has).
    pub async fn wait_until_projected(&self, seq: EventSeq) {
        let mut projected = self.projected.clone();
        let _ = projected.wait_for(|reached| *reached >= seq).await;
    }

    /// Applies new events to the projections. Blocking.
    pub fn catch_up_projections(&self) -> Result<EventSeq, crate::projections::ProjectionError> {
        let mut projector = self.projector.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        projector.catch_up(self.log.as_ref())
    }

    /// Keeps the projections up to date with the log until `stop` turns true.
    pub async fn run_projection_catch_up(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut head = self.log.subscribe();
        loop {
            let app = self.clone();
            match tokio::task::spawn_blocking(move || app.catch_up_projections()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::error!(error = %error, "projection catch-up failed; retrying on the next event")
                }
                Err(join_error) => tracing::error!(error = %join_error, "projection catch-up panicked"),
            }
            tokio::select! {
                changed = head.changed() => if changed.is_err() { return },
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
        }
    }
}

/// Why a model was not added.
#[derive(Debug, thiserror::Error)]
pub enum AddModelError {
    /// The file is not usable (with the reason); nothing was stored.
    #[error("{0}")]
    Refused(crate::model::ModelError),
    #[error(transparent)]
    Writer(WriterError),
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

/// Drives a blocking worker until `stop` turns true: `step` runs off the async threads; when
/// it did work (true) it runs again at once, when idle (false) the worker waits for the next
/// event in the log. Shared by processing and clustering workers.
pub async fn drive_blocking_worker<W: Send + 'static>(
    humpback: Arc<Humpback>,
    worker: W,
    kind: &'static str,
    step: fn(&mut W) -> anyhow::Result<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut worker = Some(worker);
    let mut head = humpback.log.subscribe();
    loop {
        if *stop.borrow() {
            return;
        }
        head.borrow_and_update();
        let Some(mut current) = worker.take() else { return };
        let (returned, outcome) = match tokio::task::spawn_blocking(move || {
            let outcome = step(&mut current);
            (current, outcome)
        })
        .await
        {
            Ok(pair) => pair,
            Err(join_error) => {
                tracing::error!(error = %join_error, kind, "a worker stopped");
                return;
            }
        };
        worker = Some(returned);
        match outcome {
            Ok(true) => continue,
            Ok(false) => {}
            Err(error) => tracing::error!(error = format!("{error:#}"), kind, "worker step failed"),
        }
        tokio::select! {
            changed = head.changed() => if changed.is_err() { return },
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_workers_share_the_threads_and_each_gets_at_least_one() {
        use super::intra_op_threads_per_worker as share;
        assert_eq!(share(8, 1), 8, "one long recording gets every core");
        assert_eq!(share(8, 2), 4);
        assert_eq!(share(8, 3), 2, "never more than the cores given");
        assert_eq!(share(2, 4), 1);
        assert_eq!(share(4, 0), 4, "no background workers: the one in-process run gets them");
    }
}
