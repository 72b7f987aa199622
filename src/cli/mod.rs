//! The command line: `serve`, and tools that inspect the log and the projections. Every
//! inspection command opens a stopped data directory directly, or goes through the API of the
//! server that holds it.

mod access;
mod artifacts;
mod bench;
mod bench_audio;
mod bench_clustering;
mod bench_models;
mod bench_search;
mod bench_ui;
mod client;
mod cluster;
mod events;
mod import;
mod models;
mod projections;
mod search;

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
    /// List the embedding models humpback can use, or inspect a .tflite file.
    Models(models::ModelsArgs),
    /// Cluster embedding sets, following the job with a progress bar.
    Cluster(cluster::ClusterArgs),
    /// Search by example: the windows most like a stored window, a span of a recording or a clip.
    Search(search::SearchArgs),
    /// Find (and remove) files no event references.
    Artifacts(artifacts::ArtifactsArgs),
    /// Measure humpback's own performance.
    Bench(bench::BenchArgs),
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
    /// Windows per inference batch.
    #[arg(long, env = "HUMPBACK_BATCH_SIZE", default_value_t = crate::model::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// Offer the deterministic `fake` model (for tests and demos; its embeddings mean nothing).
    #[arg(long, env = "HUMPBACK_ENABLE_FAKE_MODEL")]
    pub enable_fake_model: bool,
    /// Clustering jobs that may run at once.
    #[arg(long, env = "HUMPBACK_CLUSTERING_WORKERS", default_value_t = 1)]
    pub clustering_workers: usize,
}

impl ServeArgs {
    fn settings(&self) -> crate::app::Settings {
        crate::app::Settings {
            max_upload_bytes: self.max_upload_bytes,
            models_dir: self.models_dir.clone(),
            enable_fake_model: self.enable_fake_model,
            processing_workers: self.workers.unwrap_or_else(crate::app::default_worker_count),
            batch_size: self.batch_size.max(1),
            clustering_workers: self.clustering_workers,
        }
    }
}

/// Runs the parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let data_dir = DataDir::new(cli.data_dir.clone());
    match cli.command {
        Commands::Import(args) => import::run(&data_dir, &cli.bind, args),
        Commands::Serve(serve_args) => {
            serve(ServeConfig { data_dir, settings: serve_args.settings(), bind: cli.bind })?;
            Ok(0)
        }
        Commands::Events(args) => events::run(&data_dir, &cli.bind, args),
        Commands::Projections(args) => projections::run(&data_dir, &cli.bind, args),
        Commands::Models(args) => models::run(args).map(|()| 0),
        Commands::Artifacts(args) => artifacts::run(&data_dir, args),
        Commands::Cluster(args) => cluster::run(&data_dir, &cli.bind, args),
        Commands::Search(args) => search::run(&data_dir, &cli.bind, args),
        Commands::Bench(args) => bench::run(args),
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
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sled=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
