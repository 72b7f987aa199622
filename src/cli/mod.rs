//! The command line: `serve`, and tools that inspect the log and the projections. Every
//! inspection command opens a stopped data directory directly, or goes through the API of the
//! server that holds it.

mod access;
mod annotations;
mod artifacts;
mod bench;
mod bench_audio;
mod bench_classifier;
mod bench_clustering;
mod bench_models;
mod bench_search;
mod bench_ui;
mod client;
mod cluster;
mod events;
mod import;
mod models;
mod process;
mod projections;
mod search;
mod worker;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::app::{Application, ServeConfig};
use crate::config::{DataDir, DEFAULT_BIND, DEFAULT_DATA_DIR};

#[derive(Debug, Parser)]
#[command(name = "humpback", version, about = "Embed and cluster humpback-whale recordings")]
pub struct Cli {
    /// Where humpback keeps its event log, projections, audio and embeddings.
    #[arg(long, global = true, env = "HUMPBACK_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// Address the server listens on (and where the CLI looks for a running server).
    #[arg(long, global = true, env = "HUMPBACK_BIND", default_value = DEFAULT_BIND)]
    pub bind: String,

    /// The access token: `serve` requires it of clients; other commands send it to the server.
    #[arg(long, global = true, env = "HUMPBACK_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    #[command(subcommand)]
    pub command: Commands,
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Run the web server and its workers.
    Serve(ServeArgs),
    /// Register every WAV, MP3 and FLAC file below a folder (recursively).
    Import(import::ImportArgs),
    /// Inspect the event log.
    Events(events::EventsArgs),
    /// Inspect and rebuild the SQLite projections.
    Projections(projections::ProjectionsArgs),
    /// List, inspect, add or retire embedding models (.tflite, .onnx).
    Models(models::ModelsArgs),
    /// Queue processing for files, a folder or recordings, following the jobs with a progress bar.
    Process(process::ProcessArgs),
    /// Cluster embedding sets, following the job with a progress bar.
    Cluster(cluster::ClusterArgs),
    /// Export or import annotations as Raven selection tables (or CSV).
    Annotations(annotations::AnnotationsArgs),
    /// Search by example: the windows most like a stored window, a span of a recording or a clip.
    Search(search::SearchArgs),
    /// Find (and remove) files no event references.
    Artifacts(artifacts::ArtifactsArgs),
    /// Measure humpback's own performance.
    Bench(bench::BenchArgs),
    /// Run processing jobs for a server from this process (any machine that reaches the server
    /// and its storage).
    Worker(worker::WorkerArgs),
    /// List the remote workers connected to the server: what each runs, when each was heard from.
    Workers(worker::WorkersArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Largest accepted upload in bytes.
    #[arg(long, env = "HUMPBACK_MAX_UPLOAD_BYTES", default_value_t = crate::app::DEFAULT_MAX_UPLOAD_BYTES)]
    pub max_upload_bytes: u64,
    /// Where .tflite models and their NAME.toml sidecars are (default: DATA_DIR/models).
    #[arg(long, env = "HUMPBACK_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Processing workers (default: one per core).
    #[arg(long, env = "HUMPBACK_WORKERS")]
    pub workers: Option<usize>,
    /// Windows per inference batch for every model (default: each model's fastest measured size
    /// within --model-memory).
    #[arg(long, env = "HUMPBACK_BATCH_SIZE")]
    pub batch_size: Option<usize>,
    /// What one processing worker's model may use, in bytes or with K, M, G (e.g. 256M, 1G): the
    /// batch size is the fastest measured one within it.
    #[arg(long, env = "HUMPBACK_MODEL_MEMORY", value_parser = crate::model::parse_memory_size, default_value = "512M")]
    pub model_memory: u64,
    /// Cores processing may use in all (default: every core): each processing worker's model
    /// runs on threads / workers intra-op threads (ONNX Runtime; LiteRT runs stay on one).
    #[arg(long, env = "HUMPBACK_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Offer the deterministic `fake` model (for tests and demos; its embeddings mean nothing).
    #[arg(long, env = "HUMPBACK_ENABLE_FAKE_MODEL")]
    pub enable_fake_model: bool,
    /// Clustering jobs that may run at once.
    #[arg(long, env = "HUMPBACK_CLUSTERING_WORKERS", default_value_t = 1)]
    pub clustering_workers: usize,
    /// Another host name the server answers to (repeatable; `name` or `name:port`), e.g. the
    /// machine's DNS name when bound to 0.0.0.0. Requests naming any other host are refused.
    #[arg(long = "public-host", env = "HUMPBACK_PUBLIC_HOSTS", value_delimiter = ',')]
    pub public_hosts: Vec<String>,
    /// With --token: let reads (pages, GET requests) through without it; writes still need it.
    #[arg(long, env = "HUMPBACK_OPEN_READS")]
    pub open_reads: bool,
    /// Serve on a non-loopback address without a token (anyone who reaches it can change anything).
    #[arg(long, env = "HUMPBACK_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// A folder below which import by server path over HTTP is allowed, or a bucket prefix
    /// (`s3://archive/2019`) below which recordings may be registered where they sit
    /// (repeatable; none: off).
    #[arg(long = "import-root", env = "HUMPBACK_IMPORT_ROOTS", value_delimiter = ',')]
    pub import_roots: Vec<PathBuf>,
    /// Where artifacts (audio, embeddings, cluster outputs, detectors) live: a folder (a shared
    /// filesystem path) or a bucket (`s3://bucket/prefix`, `gs://…`, `az://…`; credentials
    /// from the usual environment). Chosen when the data directory is created and remembered;
    /// default: the data directory itself. The log and projections stay in the data directory.
    #[arg(long, env = "HUMPBACK_STORAGE")]
    pub storage: Option<String>,
    /// A file-name time pattern (repeatable), tried before the built-in recorder families:
    /// strftime-like fields %Y %y %m %d %H %M %S, `*` for any text, then `@+10:00` when the
    /// names are local time at that offset (default UTC), e.g. `*%Y%m%d_%H%M%S.wav@+10:00`.
    #[arg(long = "time-pattern", env = "HUMPBACK_TIME_PATTERN")]
    pub time_patterns: Vec<String>,
    /// Seconds a remote worker's claim holds without a renewal; a lapsed lease abandons the
    /// attempt and queues the job again.
    #[arg(long, env = "HUMPBACK_LEASE_SECONDS", default_value_t = crate::workers::DEFAULT_LEASE_SECONDS)]
    pub lease_seconds: f64,
}

impl ServeArgs {
    fn settings(&self, token: Option<&str>) -> anyhow::Result<crate::app::Settings> {
        let mut import_roots = Vec::new();
        let mut import_buckets = Vec::new();
        for root in &self.import_roots {
            let text = root.to_string_lossy();
            if crate::storage::is_object_url(&text) {
                match crate::storage::parse_storage_spec(&text)? {
                    crate::storage::StorageSpec::Bucket(url) => import_buckets.push(url),
                    crate::storage::StorageSpec::Folder(_) => {}
                }
                continue;
            }
            let canonical = std::fs::canonicalize(root)
                .map_err(|error| anyhow::anyhow!("--import-root {}: {error}", root.display()))?;
            if !canonical.is_dir() {
                anyhow::bail!("--import-root {}: not a folder", root.display());
            }
            import_roots.push(canonical);
        }
        if !(self.lease_seconds.is_finite() && (0.1..=86_400.0).contains(&self.lease_seconds)) {
            anyhow::bail!("--lease-seconds: between 0.1 and 86400 seconds");
        }
        Ok(crate::app::Settings {
            lease: std::time::Duration::from_secs_f64(self.lease_seconds),
            keep_staged_worker_files: false,
            max_upload_bytes: self.max_upload_bytes,
            models_dir: self.models_dir.clone(),
            enable_fake_model: self.enable_fake_model,
            fake_model_config: crate::model::FakeModelConfig::default(),
            processing_workers: self.workers.unwrap_or_else(crate::app::default_worker_count),
            batch_size: self.batch_size.map(|size| size.max(1)),
            model_memory_bytes: self.model_memory,
            measure_batch_sizes: true,
            threads: self.threads.map_or_else(crate::app::default_worker_count, usize::from),
            clustering_workers: self.clustering_workers,
            access: crate::http::access::AccessSettings {
                token: token.and_then(crate::http::access::AccessToken::new),
                public_hosts: self
                    .public_hosts
                    .iter()
                    .map(|host| host.trim().to_string())
                    .filter(|h| !h.is_empty())
                    .collect(),
                open_reads: self.open_reads,
            },
            import_roots,
            import_buckets,
            storage: self.storage.clone(),
            time_patterns: self
                .time_patterns
                .iter()
                .map(|pattern| crate::recording_time::TimePattern::parse(pattern))
                .collect::<Result<_, _>>()
                .map_err(|error| anyhow::anyhow!("--time-pattern: {error}"))?,
        })
    }
}

static CLIENT_TOKEN: std::sync::OnceLock<Option<crate::http::access::AccessToken>> = std::sync::OnceLock::new();

/// The token CLI commands send to a server (`--token` or `HUMPBACK_TOKEN`), set once by [`run`].
pub(crate) fn client_token() -> Option<crate::http::access::AccessToken> {
    CLIENT_TOKEN.get().cloned().flatten()
}

/// A server reachable beyond this machine must have a token, unless told otherwise: refuses
/// to start (with the reason) when `bind` resolves to any non-loopback address without one.
pub fn check_exposure(bind: &str, has_token: bool, insecure_no_auth: bool) -> anyhow::Result<()> {
    use std::net::ToSocketAddrs;
    if has_token || insecure_no_auth {
        return Ok(());
    }
    let addresses: Vec<std::net::SocketAddr> = bind
        .to_socket_addrs()
        .map_err(|error| anyhow::anyhow!("cannot understand the address to listen on ({bind}): {error}"))?
        .collect();
    if let Some(exposed) = addresses.iter().find(|address| !address.ip().is_loopback()) {
        anyhow::bail!(
            "refusing to listen on {bind} ({exposed} is reachable from other machines) without an access token: \
             start with --token TOKEN (or HUMPBACK_TOKEN) so that only people with the token can change anything, \
             or pass --insecure-no-auth to serve without one"
        );
    }
    Ok(())
}

/// Runs the parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let data_dir = DataDir::new(cli.data_dir.clone());
    let _ = CLIENT_TOKEN.set(cli.token.as_deref().and_then(crate::http::access::AccessToken::new));
    match cli.command {
        Commands::Import(args) => import::run(&data_dir, &cli.bind, args),
        Commands::Serve(serve_args) => {
            check_exposure(&cli.bind, client_token().is_some(), serve_args.insecure_no_auth)?;
            let settings = serve_args.settings(cli.token.as_deref())?;
            serve(ServeConfig { data_dir, settings, bind: cli.bind })?;
            Ok(0)
        }
        Commands::Events(args) => events::run(&data_dir, &cli.bind, args),
        Commands::Projections(args) => projections::run(&data_dir, &cli.bind, args),
        Commands::Models(args) => models::run(&data_dir, &cli.bind, args).map(|()| 0),
        Commands::Artifacts(args) => artifacts::run(&data_dir, args),
        Commands::Cluster(args) => cluster::run(&data_dir, &cli.bind, args),
        Commands::Process(args) => process::run(&data_dir, &cli.bind, args),
        Commands::Annotations(args) => annotations::run(&data_dir, &cli.bind, args),
        Commands::Search(args) => search::run(&data_dir, &cli.bind, args),
        Commands::Bench(args) => bench::run(args),
        Commands::Worker(args) => worker::run(args),
        Commands::Workers(args) => worker::list(&cli.bind, args),
    }
}

fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let application = Application::build(config).await?;
        let address = application.local_addr()?;
        // Tests and scripts read this line to learn the port when binding port 0.
        println!("humpback listening on http://{address}");
        tracing::info!(%address, "listening");
        application.run_until(crate::app::shutdown_signal()).await
    })
}

/// Logging to stderr, `RUST_LOG` to filter (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sled=warn,ort=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
