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
    /// The fake model's shape when it is offered (benchmarks change its dimension).
    pub fake_model_config: crate::model::FakeModelConfig,
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
    /// Bucket prefixes (`s3://archive/2019`) below which recordings may be registered where
    /// they sit over HTTP; none: off.
    pub import_buckets: Vec<String>,
    /// File-name time patterns (`--time-pattern`), tried before the built-in families.
    pub time_patterns: Vec<crate::recording_time::TimePattern>,
    /// How long a remote worker's claim holds without a renewal.
    pub lease: std::time::Duration,
    /// Leave the files remote workers staged in `tmp/workers/` at open instead of removing
    /// them (`humpback artifacts orphans` lists them first).
    pub keep_staged_worker_files: bool,
    /// Where artifacts live (`--storage`): a folder or a bucket URL; `None`: what the data
    /// directory recorded when it was created, else the data directory itself.
    pub storage: Option<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            models_dir: None,
            enable_fake_model: false,
            fake_model_config: crate::model::FakeModelConfig::default(),
            processing_workers: default_worker_count(),
            batch_size: None,
            model_memory_bytes: crate::model::DEFAULT_MODEL_MEMORY_BYTES,
            measure_batch_sizes: false,
            threads: default_worker_count(),
            clustering_workers: 1,
            access: Default::default(),
            import_roots: Vec::new(),
            import_buckets: Vec::new(),
            time_patterns: Vec::new(),
            lease: std::time::Duration::from_secs_f64(crate::workers::DEFAULT_LEASE_SECONDS),
            keep_staged_worker_files: false,
            storage: None,
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

/// Opens the data directory's storage: the one it recorded when created (`storage-location`),
/// or `requested` for a new data directory (then recorded), else the data directory itself. A
/// request for another storage than the recorded one is refused: the log's keys name objects
/// in the recorded one.
pub fn open_storage(
    data_dir: &DataDir,
    requested: Option<&str>,
    has_history: bool,
) -> anyhow::Result<crate::storage::Storage> {
    use crate::storage::{parse_storage_spec, Storage, StorageSpec};
    let record = data_dir.storage_record();
    let recorded = match std::fs::read_to_string(&record) {
        Ok(text) => Some(text.trim().to_string()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(anyhow::anyhow!("reading {}: {error}", record.display())),
    };
    let normalised = |spec: &str| -> anyhow::Result<String> {
        Ok(match parse_storage_spec(spec)? {
            StorageSpec::Folder(path) => std::path::absolute(&path).unwrap_or(path).display().to_string(),
            StorageSpec::Bucket(url) => url,
        })
    };
    let chosen = match (recorded, requested) {
        (Some(recorded), Some(requested)) if normalised(requested)? != recorded => {
            return Err(anyhow::anyhow!(
                "this data directory keeps its artifacts in {recorded}, not {requested} (recorded in {}): \
                 start without --storage, or copy the artifacts and change that file",
                record.display()
            ))
        }
        (Some(recorded), _) => Some(recorded),
        (None, Some(requested)) => {
            let requested = normalised(requested)?;
            let data_dir_itself = std::path::absolute(data_dir.root()).map(|root| root.display().to_string()).ok();
            if has_history && Some(&requested) != data_dir_itself.as_ref() {
                return Err(anyhow::anyhow!(
                    "this data directory already keeps artifacts in itself; the storage is chosen when a data \
                     directory is created (start a new one with --storage {requested})"
                ));
            }
            crate::artifacts::files::write_atomically(&record, format!("{requested}\n").as_bytes())?;
            Some(requested)
        }
        (None, None) => None,
    };
    Ok(match chosen {
        None => Storage::folder(data_dir.root()),
        Some(spec) => {
            let storage = Storage::open(&spec, &data_dir.storage_cache_dir())?;
            if let Some(root) = (!storage.is_bucket()).then(|| storage.local_root().to_path_buf()) {
                std::fs::create_dir_all(&root)
                    .with_context(|| format!("creating the storage folder {}", root.display()))?;
            }
            tracing::info!(storage = %storage.describe(), "storage open");
            storage
        }
    })
}

/// Copies the model files to `models/` in storage when storage is not the data directory, so
/// that remote workers find them there (`humpback worker` reads `STORAGE/models`). Done when a
/// server starts and when a model is added (workers talk to a server; other commands need not
/// pay for it). A file that cannot be copied is reported and skipped: the server still has it.
pub fn share_models_with_workers(
    storage: &crate::storage::Storage,
    models_dir: &std::path::Path,
    data_root: &std::path::Path,
) {
    if !storage.is_bucket() && storage.local_root() == data_root {
        return;
    }
    let Ok(entries) = std::fs::read_dir(models_dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()).map(str::to_string) else { continue };
        if !entry.file_type().is_ok_and(|kind| kind.is_file()) || name.starts_with('.') || name.contains(".tmp") {
            continue;
        }
        if let Err(error) = storage.put_copy(&path, &format!("models/{name}")) {
            tracing::warn!(model_file = %name, error = %error, "could not copy a model file to storage for workers");
        }
    }
}

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
    /// Where audio, embedding sets and other artifacts live (the log and projections stay in
    /// the data directory).
    pub storage: crate::storage::Storage,
    projected: watch::Receiver<EventSeq>,
}

/// Opens the event log in `events_dir` and reads the writer's snapshot at `snapshot_path` at
/// the same time: on a large data directory sled's opening takes about a second (one core) and
/// the snapshot's decoding several (both cores), so start-up pays the longer, not the sum. The
/// snapshot is verified against the log afterwards, by `Writer::open_with_read_snapshot`.
pub fn open_log_beside_snapshot(
    events_dir: &std::path::Path,
    snapshot_path: &std::path::Path,
) -> anyhow::Result<(Arc<SledEventLog>, crate::state_snapshot::ReadSnapshot)> {
    let path = snapshot_path.to_path_buf();
    let reading = std::thread::Builder::new()
        .name("snapshot-read".into())
        .spawn(move || crate::state_snapshot::ReadSnapshot::read(path))
        .context("starting the thread that reads the writer's snapshot")?;
    // On an error here (another server holds the log) the reading thread is left to finish
    // on its own: nothing waits for it.
    let log = Arc::new(SledEventLog::open(events_dir)?);
    let snapshot = reading.join().unwrap_or_else(|_| {
        tracing::warn!("reading the writer's snapshot failed, folding the whole log");
        crate::state_snapshot::ReadSnapshot { path: snapshot_path.to_path_buf(), outcome: Ok(None), seconds: 0.0 }
    });
    Ok((log, snapshot))
}

impl Humpback {
    /// Opens (creating if needed) a data directory's services: its layout, the log, the domain
    /// state, the models and the projections, brought up to date with the log. Without
    /// recovery: `app::Humpback::open_with` runs the workers' start-up recovery after this.
    pub(crate) fn open_services(data_dir: DataDir, settings: Settings) -> anyhow::Result<Humpback> {
        data_dir.create_layout()?;
        let had_log = data_dir.has_event_log();
        let snapshots = crate::writer::SnapshotSettings {
            path: data_dir.writer_snapshot(),
            every: crate::state_snapshot::DEFAULT_SNAPSHOT_EVERY,
        };
        let (log, snapshot) = open_log_beside_snapshot(&data_dir.events_dir(), &snapshots.path)?;
        let storage = open_storage(&data_dir, settings.storage.as_deref(), had_log && log.head().0 > 0)?;
        let writer = Writer::open_with_read_snapshot(log.clone(), snapshots, snapshot);
        let writer = Arc::new(writer.context("folding the event log into the domain state")?);
        let models_dir = settings.models_dir.clone().unwrap_or_else(|| data_dir.root().join("models"));
        std::fs::create_dir_all(&models_dir).with_context(|| format!("creating {}", models_dir.display()))?;
        let mut registry_config = crate::model::RegistryConfig::new(&models_dir);
        if settings.enable_fake_model {
            registry_config.fake_model = Some(settings.fake_model_config.clone());
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
        let mut projector = Projector::open_with_storage(&data_dir.projections_db(), storage.clone())?;
        let reached = projector.catch_up(log.as_ref()).context("bringing the projections up to date")?;
        tracing::info!(head = %log.head(), projected = %reached, data_dir = %data_dir.root().display(), "data directory open");
        let projected = projector.subscribe();
        let reader = ProjectionReader::new(&data_dir.projections_db());
        let remote_workers = Arc::new(if settings.keep_staged_worker_files {
            crate::workers::WorkerCoordinator::new(settings.lease)
        } else {
            crate::workers::WorkerCoordinator::open(&storage, settings.lease)
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
            storage,
            projected,
        })
    }

    /// A local path holding the artifact `key` (a stored path from the log): in place in a
    /// folder; fetched once into the cache from a bucket. For async code; blocking callers use
    /// `storage.readable_path`.
    pub async fn artifact_path(&self, key: &str) -> Result<std::path::PathBuf, crate::storage::StorageError> {
        if !self.storage.is_bucket() && !crate::storage::is_object_url(key) {
            return self.storage.readable_path(key);
        }
        let (storage, key) = (self.storage.clone(), key.to_string());
        tokio::task::spawn_blocking(move || storage.readable_path(&key))
            .await
            .unwrap_or(Err(crate::storage::StorageError::RuntimeGone("fetching an artifact")))
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
                let (storage, models_dir, data_root) = (
                    self.storage.clone(),
                    self.models.models_directory().to_path_buf(),
                    self.data_dir.root().to_path_buf(),
                );
                let _ =
                    tokio::task::spawn_blocking(move || share_models_with_workers(&storage, &models_dir, &data_root))
                        .await;
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

    #[test]
    fn a_snapshot_read_while_the_log_opens_is_verified_against_it() {
        use crate::domain::ids::EventSeq;
        use crate::domain::sample_events::{one_event_of_every_type, realistic_event_stream};
        use crate::log::{EventLog, SledEventLog};
        use crate::state_snapshot::{fold_from_read_snapshot, fold_from_snapshot, write_snapshot};

        let mut pool = one_event_of_every_type();
        pool.extend(realistic_event_stream(40));
        let full_fold = |log: &dyn EventLog| fold_from_snapshot(None, log).unwrap().0;
        let dir = tempfile::tempdir().unwrap();
        let (events, path) = (dir.path().join("events"), dir.path().join("state.bin"));
        let expected = {
            let log = SledEventLog::open(&events).unwrap();
            log.append(&pool[..30]).unwrap();
            write_snapshot(&path, &full_fold(&log), &log).unwrap();
            log.append(&pool[30..]).unwrap();
            full_fold(&log)
        };
        let (log, snapshot) = super::open_log_beside_snapshot(&events, &path).unwrap();
        assert_eq!(fold_from_read_snapshot(Some(snapshot), log.as_ref()).unwrap(), (expected, EventSeq(30)));
        drop(log);

        // Another history's snapshot has intact records, so it reads; against this log it is
        // not trusted, and the whole log is folded instead.
        {
            let other = SledEventLog::open(&dir.path().join("other")).unwrap();
            other.append(&pool[10..40]).unwrap();
            write_snapshot(&path, &full_fold(&other), &other).unwrap();
        }
        let (log, snapshot) = super::open_log_beside_snapshot(&events, &path).unwrap();
        assert!(matches!(snapshot.outcome, Ok(Some(_))));
        let folded = full_fold(log.as_ref());
        assert_eq!(fold_from_read_snapshot(Some(snapshot), log.as_ref()).unwrap(), (folded, EventSeq(0)));
    }
}
