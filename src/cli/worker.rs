//! `humpback worker`: runs processing jobs for a server from another process or machine. It
//! registers, learns where storage is (or takes `--storage`), claims jobs through the worker
//! API with a lease, renews it while the pipeline runs, and completes, fails or stops each job
//! through the API. `humpback workers` lists the connected workers.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use serde::de::DeserializeOwned;

use super::client::ServerClient;
use crate::clustering_jobs::compute::ComputedClustering;
use crate::workers::clustering::{run_clustering_assignment, ClusteringAssignment, ClusteringJobSource};
use crate::workers::coordinator::{RegisterRequest, Registered, WorkersListing};
use crate::workers::processing::{
    run_assignment, AttemptEnd, ProcessingAssignment, ProcessingCompletion, ProcessingJobSource, Renewal, SourceError,
};
use crate::workers::{Assignment, JobKind};

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The server's URL (`http://host:8080`).
    #[arg(long, env = "HUMPBACK_SERVER")]
    pub server: String,
    /// Kinds of job to run (comma-separated): processing, clustering. A clustering job holds
    /// its windows' vectors in memory (about 5 GB per million 1280-dimension windows).
    #[arg(long, value_delimiter = ',', default_value = "processing")]
    pub kinds: Vec<String>,
    /// Jobs run at once (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where this machine sees the server's storage: a folder (the same share mounted at
    /// another path) or a bucket URL (`s3://bucket/prefix`). Default: what the server reports.
    #[arg(long, env = "HUMPBACK_STORAGE")]
    pub storage: Option<String>,
    /// Where the models are (default: STORAGE/models; from a bucket, copied to a local cache).
    #[arg(long, env = "HUMPBACK_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Offer the deterministic `fake` model (tests and demos; the server must offer it too).
    #[arg(long, env = "HUMPBACK_ENABLE_FAKE_MODEL")]
    pub enable_fake_model: bool,
    /// What to call this worker in listings (default: host:pid).
    #[arg(long)]
    pub name: Option<String>,
}

/// The worker's cache folder, removed when the worker stops.
struct WorkerCache(PathBuf);

impl Drop for WorkerCache {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The server's worker API as a [`ProcessingJobSource`]. The worker id changes when the
/// worker registers again after the server forgot it (a restart).
struct HttpJobSource {
    client: ServerClient,
    worker_id: std::sync::RwLock<String>,
    /// Held while registering again, so that one thread registers for all.
    registering: std::sync::Mutex<()>,
}

/// What asking for a job gave.
enum Claimed {
    Job(Option<Box<Assignment>>),
    /// The server does not know this worker id (it restarted, or forgot a silent worker).
    Forgotten,
    Failed(SourceError),
}

impl HttpJobSource {
    fn new(client: ServerClient, worker_id: String) -> HttpJobSource {
        HttpJobSource { client, worker_id: std::sync::RwLock::new(worker_id), registering: std::sync::Mutex::new(()) }
    }

    fn worker_id(&self) -> String {
        self.worker_id.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Posts JSON; 2xx gives the parsed answer (`None` for 204), 409 a lost lease.
    fn post<T: DeserializeOwned>(&self, path: &str, body: serde_json::Value) -> Result<Option<T>, SourceError> {
        let bytes = serde_json::to_vec(&body).map_err(|error| SourceError::Other(error.into()))?;
        let (status, answer) =
            self.client.send_raw("POST", path, Some("application/json"), bytes).map_err(SourceError::Other)?;
        Self::answer(path, status, &answer)
    }

    fn answer<T: DeserializeOwned>(path: &str, status: u16, answer: &[u8]) -> Result<Option<T>, SourceError> {
        let message = || {
            serde_json::from_slice::<serde_json::Value>(answer)
                .ok()
                .and_then(|json| json.get("error").and_then(|error| error.as_str()).map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(answer).into_owned())
        };
        match status {
            204 => Ok(None),
            200..=299 => serde_json::from_slice(answer)
                .map(Some)
                .map_err(|error| SourceError::Other(anyhow!("the answer of {path} is not the expected JSON: {error}"))),
            409 | 404 => Err(SourceError::LeaseLost(message())),
            401 => Err(SourceError::Other(anyhow!("the server needs the access token (--token or HUMPBACK_TOKEN)"))),
            _ => Err(SourceError::Other(anyhow!("the server answered {status} to {path}: {}", message()))),
        }
    }

    fn job_path(&self, job: &ProcessingAssignment, action: &str) -> String {
        format!("/api/workers/{}/processing-jobs/{}/{action}", self.worker_id(), job.job_id)
    }

    fn clustering_path(&self, job: &ClusteringAssignment, action: &str) -> String {
        format!("/api/workers/{}/clustering-jobs/{}/{action}", self.worker_id(), job.job_id)
    }

    /// Asks for a job as `worker_id`, telling a forgotten worker (404) from other failures.
    fn claim_as(&self, worker_id: &str) -> Claimed {
        let path = format!("/api/workers/{worker_id}/claim");
        let body = serde_json::json!({ "wait_seconds": 10.0 }).to_string().into_bytes();
        match self.client.send_raw("POST", &path, Some("application/json"), body) {
            Ok((404, _)) => Claimed::Forgotten,
            Ok((status, answer)) => match Self::answer(&path, status, &answer) {
                Ok(job) => Claimed::Job(job.map(Box::new)),
                Err(error) => Claimed::Failed(error),
            },
            Err(error) => Claimed::Failed(SourceError::Other(error)),
        }
    }

    /// Registers again after the server forgot `stale_id`, unless another thread already did;
    /// retries with a growing pause (at most [`MAX_PAUSE`]) while the server cannot be reached.
    /// False when stopping first or when the server refuses the registration.
    fn register_again(&self, stale_id: &str, request: &RegisterRequest, stopping: &AtomicBool) -> bool {
        let _registering = self.registering.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.worker_id() != stale_id {
            return true;
        }
        let mut pause = FIRST_PAUSE;
        while !stopping.load(Ordering::Relaxed) {
            match register(&self.client, request) {
                Ok(registered) => {
                    tracing::warn!(old = %stale_id, new = %registered.worker_id, "the server forgot this worker; registered again");
                    // The same line as at start (scripts read it); a closed stdout is no reason to stop.
                    let line = format!(
                        "humpback worker {} registered with {}\n",
                        registered.worker_id,
                        self.client.base_url()
                    );
                    let _ = std::io::Write::write_all(&mut std::io::stdout(), line.as_bytes());
                    *self.worker_id.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = registered.worker_id;
                    return true;
                }
                Err(RegisterError::Refused(error)) => {
                    tracing::error!(error = format!("{error:#}"), "the server refused to register this worker again");
                    return false;
                }
                Err(RegisterError::Unreachable(error)) => {
                    tracing::warn!(error = format!("{error:#}"), "cannot register again; trying again");
                    pause_unless_stopping(pause, stopping);
                    pause = (pause * 2).min(MAX_PAUSE);
                }
            }
        }
        false
    }
}

const FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);
const MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(10);

/// Sleeps for `pause`, waking early (within 100 ms) when the worker is stopping.
fn pause_unless_stopping(pause: std::time::Duration, stopping: &AtomicBool) {
    let until = std::time::Instant::now() + pause;
    while !stopping.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(std::time::Duration::from_millis(100)));
    }
}

impl ProcessingJobSource for HttpJobSource {
    fn claim(&self) -> Result<Option<ProcessingAssignment>, SourceError> {
        match self.claim_as(&self.worker_id()) {
            Claimed::Job(None) => Ok(None),
            Claimed::Job(Some(job)) => match *job {
                Assignment::Processing(job) => Ok(Some(job)),
                Assignment::Clustering(job) => Err(SourceError::Other(anyhow!(
                    "clustering job {} arrived where a processing job was asked for",
                    job.job_id
                ))),
            },
            Claimed::Forgotten => Err(SourceError::LeaseLost("the server does not know this worker".into())),
            Claimed::Failed(error) => Err(error),
        }
    }

    fn renew(&self, job: &ProcessingAssignment, progress: Option<(u64, u64)>) -> Result<Renewal, SourceError> {
        let answer = match progress {
            Some((done, total)) => self.post(
                &self.job_path(job, "progress"),
                serde_json::json!({ "attempt": job.attempt, "windows_done": done, "windows_total": total }),
            ),
            None => self.post(&self.job_path(job, "renew"), serde_json::json!({ "attempt": job.attempt })),
        }?;
        Ok(answer.unwrap_or(Renewal { cancel_requested: false }))
    }

    fn complete(&self, job: &ProcessingAssignment, completion: ProcessingCompletion) -> Result<(), SourceError> {
        let body =
            serde_json::json!({ "attempt": job.attempt, "rows": completion.rows, "warnings": completion.warnings });
        self.post::<serde_json::Value>(&self.job_path(job, "complete"), body).map(|_| ())
    }

    fn fail(&self, job: &ProcessingAssignment, reason: String) -> Result<(), SourceError> {
        let body = serde_json::json!({ "attempt": job.attempt, "reason": reason });
        self.post::<serde_json::Value>(&self.job_path(job, "fail"), body).map(|_| ())
    }

    fn stop(&self, job: &ProcessingAssignment, canceled: bool) -> Result<(), SourceError> {
        let body = serde_json::json!({ "attempt": job.attempt, "canceled": canceled });
        self.post::<serde_json::Value>(&self.job_path(job, "stop"), body).map(|_| ())
    }
}

impl ClusteringJobSource for HttpJobSource {
    fn renew_clustering(
        &self,
        job: &ClusteringAssignment,
        progress: Option<(String, f64)>,
    ) -> Result<Renewal, SourceError> {
        let body = match progress {
            Some((stage, fraction)) => {
                serde_json::json!({ "attempt": job.attempt, "stage": stage, "fraction": fraction })
            }
            None => serde_json::json!({ "attempt": job.attempt }),
        };
        Ok(self.post(&self.clustering_path(job, "renew"), body)?.unwrap_or(Renewal { cancel_requested: false }))
    }

    fn complete_clustering(&self, job: &ClusteringAssignment, computed: ComputedClustering) -> Result<(), SourceError> {
        let mut body = serde_json::to_value(&computed).map_err(|error| SourceError::Other(error.into()))?;
        body["attempt"] = serde_json::json!(job.attempt);
        self.post::<serde_json::Value>(&self.clustering_path(job, "complete"), body).map(|_| ())
    }

    fn fail_clustering(&self, job: &ClusteringAssignment, reason: String) -> Result<(), SourceError> {
        let body = serde_json::json!({ "attempt": job.attempt, "reason": reason });
        self.post::<serde_json::Value>(&self.clustering_path(job, "fail"), body).map(|_| ())
    }

    fn stop_clustering(&self, job: &ClusteringAssignment, canceled: bool) -> Result<(), SourceError> {
        let body = serde_json::json!({ "attempt": job.attempt, "canceled": canceled });
        self.post::<serde_json::Value>(&self.clustering_path(job, "stop"), body).map(|_| ())
    }
}

/// Why a registration did not succeed: worth retrying, or not.
enum RegisterError {
    Unreachable(anyhow::Error),
    Refused(anyhow::Error),
}

fn register(client: &ServerClient, request: &RegisterRequest) -> Result<Registered, RegisterError> {
    let path = "/api/workers/register";
    let body = serde_json::to_vec(request).map_err(|error| RegisterError::Refused(error.into()))?;
    let (status, answer) = client.send_raw("POST", path, Some("application/json"), body).map_err(|error| {
        RegisterError::Unreachable(error.context(format!("registering with {}", client.base_url())))
    })?;
    match HttpJobSource::answer::<Registered>(path, status, &answer) {
        Ok(Some(registered)) => Ok(registered),
        Ok(None) => Err(RegisterError::Refused(anyhow!("the server gave no answer to the registration"))),
        Err(SourceError::LeaseLost(message)) => {
            Err(RegisterError::Refused(anyhow!("the server refused the registration: {message}")))
        }
        // A server starting or overloaded (5xx) is worth another try; 4xx is not.
        Err(SourceError::Other(error)) if status >= 500 => Err(RegisterError::Unreachable(error)),
        Err(SourceError::Other(error)) => Err(RegisterError::Refused(error)),
    }
}

/// Runs until Ctrl-C or SIGTERM: jobs in progress are stopped within a batch and handed back.
pub fn run(args: WorkerArgs) -> anyhow::Result<i32> {
    let mut kinds = Vec::new();
    for kind in &args.kinds {
        match JobKind::parse(kind.trim()) {
            Some(kind) if !kinds.contains(&kind) => kinds.push(kind),
            Some(_) => {}
            None => bail!("--kinds: {kind:?} is not a kind of job (processing, clustering)"),
        }
    }
    if kinds.is_empty() {
        bail!("--kinds: name at least one kind of job (processing, clustering)");
    }
    let threads = args.threads.unwrap_or_else(crate::app::default_worker_count).max(1);
    let client = ServerClient::new(&args.server, super::client_token());
    let name = args.name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        format!("{}:{}", if host.is_empty() { "worker" } else { &host }, std::process::id())
    });
    let request = RegisterRequest { name: name.clone(), kinds, threads };
    let registered = register(&client, &request)
        .map_err(|(RegisterError::Unreachable(error) | RegisterError::Refused(error))| error)?;
    let storage_spec = args.storage.clone().unwrap_or_else(|| registered.storage.clone());
    // A bucket's objects are copied here while a job needs them (one folder per process).
    let cache = WorkerCache(std::env::temp_dir().join(format!("humpback-worker-{}", std::process::id())));
    let storage = crate::storage::Storage::open(&storage_spec, &cache.0)
        .with_context(|| format!("opening the storage {storage_spec}"))?;
    if !storage.is_bucket() && !storage.local_root().is_dir() {
        bail!(
            "the storage {} is not a folder on this machine; mount the server's storage and pass --storage PATH",
            storage.describe()
        );
    }
    let models_dir = match args.models_dir.clone() {
        Some(dir) => dir,
        None => storage.fetch_folder("models").context("copying the models from storage")?,
    };
    let mut registry_config = crate::model::RegistryConfig::new(&models_dir);
    if args.enable_fake_model {
        registry_config.fake_model = Some(crate::model::FakeModelConfig::default());
    }
    // The server's --batch-size when it gave one; otherwise each model's batch size is measured
    // on this machine (as `serve` does on its own), cached in this machine's temporary folder.
    registry_config.batch_size_override = registered.batch_size.map(|size| size.max(1));
    registry_config.measurements_directory = Some(std::env::temp_dir().join("humpback-batch-measurements"));
    registry_config.measure_batch_sizes = true;
    let models = Arc::new(crate::model::ModelRegistry::discover(registry_config).context("discovering models")?);
    tracing::info!(worker = %registered.worker_id, %name, storage = %storage.describe(), threads, "worker registered");
    // Tests and scripts read this line.
    println!("humpback worker {} registered with {}", registered.worker_id, client.base_url());
    let source = Arc::new(HttpJobSource::new(client, registered.worker_id.clone()));
    let request = Arc::new(request);
    let stopping = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let (source, stopping, models, storage, request) =
                (source.clone(), stopping.clone(), models.clone(), storage.clone(), request.clone());
            std::thread::Builder::new()
                .name(format!("worker-{thread}"))
                .spawn(move || work(source.as_ref(), &request, &storage, &models, &stopping))
        })
        .collect::<Result<_, _>>()
        .context("starting worker threads")?;
    let all_done = Arc::new(tokio::sync::Notify::new());
    let watcher = {
        let all_done = all_done.clone();
        std::thread::spawn(move || {
            for handle in handles {
                let _ = handle.join();
            }
            all_done.notify_one();
        })
    };
    runtime.block_on(async {
        tokio::select! {
            _ = crate::app::shutdown_signal() => {}
            _ = all_done.notified() => {}
        }
    });
    stopping.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let _ =
        source.post::<serde_json::Value>(&format!("/api/workers/{}/leave", source.worker_id()), serde_json::json!({}));
    Ok(0)
}

/// One thread: claim, run, report, until stopping. Errors reaching the server are retried
/// with a growing pause; when the server has forgotten this worker (it restarted), the worker
/// registers again and carries on. A job whose lease was lost that way is dropped: the
/// restarted server abandoned its attempt and queues the job again.
fn work(
    source: &HttpJobSource,
    request: &RegisterRequest,
    storage: &crate::storage::Storage,
    models: &crate::model::ModelRegistry,
    stopping: &AtomicBool,
) {
    let mut cached = None;
    let mut pause = FIRST_PAUSE;
    while !stopping.load(Ordering::Relaxed) {
        let worker_id = source.worker_id();
        match source.claim_as(&worker_id) {
            Claimed::Job(Some(job)) => {
                pause = FIRST_PAUSE;
                let (kind, job_id, attempt, end) = match *job {
                    Assignment::Processing(job) => {
                        let end = run_assignment(source, storage, models, &mut cached, &job, stopping);
                        ("processing", job.job_id, job.attempt, end)
                    }
                    Assignment::Clustering(job) => {
                        let end = run_clustering_assignment(source, storage, &job, stopping);
                        ("clustering", job.job_id, job.attempt, end)
                    }
                };
                tracing::info!(kind, job = job_id, attempt, end = ?end, "job ended");
                if end == AttemptEnd::Abandoned {
                    return;
                }
            }
            Claimed::Job(None) => pause = FIRST_PAUSE,
            Claimed::Forgotten => {
                if !source.register_again(&worker_id, request, stopping) {
                    return;
                }
                pause = FIRST_PAUSE;
            }
            Claimed::Failed(error) => {
                tracing::warn!(error = format!("{error:#}"), "cannot claim a job; trying again");
                pause_unless_stopping(pause, stopping);
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct WorkersArgs {
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `humpback workers`: the connected workers, what each runs and when each was last heard from.
pub fn list(bind: &str, args: WorkersArgs) -> anyhow::Result<i32> {
    let client = ServerClient::new(bind, super::client_token());
    let listing: WorkersListing = client.get("/api/workers", &[]).context("asking the server for its workers")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(0);
    }
    print!("{}", render_workers(&listing));
    Ok(0)
}

/// The table `humpback workers` prints.
pub fn render_workers(listing: &WorkersListing) -> String {
    let mut out = String::new();
    if listing.workers.is_empty() {
        out.push_str("no remote workers are connected (workers inside the server are not listed)\n");
        return out;
    }
    out.push_str(&format!("{:<8} {:<28} {:>7} {:>10}  doing\n", "id", "name", "threads", "heard"));
    for worker in &listing.workers {
        let doing = if worker.jobs.is_empty() {
            "idle".to_string()
        } else {
            worker
                .jobs
                .iter()
                .map(|job| match (job.windows_done, job.windows_total) {
                    _ if job.fraction.is_some() => format!(
                        "{} job {} (attempt {}, {:.0} %)",
                        job.kind.as_str(),
                        job.job_id,
                        job.attempt,
                        job.fraction.unwrap_or(0.0) * 100.0
                    ),
                    (Some(done), Some(total)) => {
                        format!(
                            "{} job {} (attempt {}, {done}/{total} windows)",
                            job.kind.as_str(),
                            job.job_id,
                            job.attempt
                        )
                    }
                    _ => format!("{} job {} (attempt {})", job.kind.as_str(), job.job_id, job.attempt),
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        out.push_str(&format!(
            "{:<8} {:<28} {:>7} {:>8.1}s  {doing}\n",
            worker.worker_id,
            worker.name.chars().take(28).collect::<String>(),
            worker.threads,
            worker.last_heard_seconds_ago
        ));
    }
    out.push_str(&format!(
        "lease {} s; {} worker API calls, {} lapsed leases since the server started\n",
        listing.lease_seconds, listing.api_calls, listing.lapsed_leases
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workers::coordinator::{LeasedJobView, WorkerView};

    #[test]
    fn the_table_shows_each_worker_its_job_and_when_it_was_heard_from() {
        let worker = |id: &str, jobs: Vec<LeasedJobView>| WorkerView {
            worker_id: id.into(),
            name: format!("node-{id}"),
            kinds: vec![JobKind::Processing],
            threads: 1,
            registered_at_unix: 0,
            last_heard_seconds_ago: 1.25,
            jobs,
        };
        let job = LeasedJobView {
            kind: JobKind::Processing,
            job_id: 4,
            attempt: 2,
            windows_done: Some(10),
            windows_total: Some(50),
            fraction: None,
            running_seconds: 3.0,
            lease_expires_in_seconds: 20.0,
        };
        let listing = WorkersListing {
            workers: vec![worker("w1", vec![job]), worker("w2", vec![])],
            lease_seconds: 30.0,
            api_calls: 12,
            lapsed_leases: 0,
        };
        let table = render_workers(&listing);
        assert!(table.contains("node-w1") && table.contains("processing job 4 (attempt 2, 10/50 windows)"), "{table}");
        assert!(table.contains("node-w2") && table.contains("idle"));
        assert!(table.contains("1.2s") || table.contains("1.3s"));
        assert!(render_workers(&WorkersListing { workers: vec![], ..listing }).contains("no remote workers"));
    }
}
