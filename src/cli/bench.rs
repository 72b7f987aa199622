//! `humpback bench ...`: measurements anyone can rerun (see `scripts/bench-*`).

use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::domain::sample_events::realistic_event_stream;
use crate::log::{EventLog, SledEventLog};
use crate::projections::Projector;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Durable appends per second (one event per flush, and batched), and projection replay speed.
    EventLog {
        /// Events to append one at a time (each flushed).
        #[arg(long, default_value_t = 2_000)]
        single: usize,
        /// Events to append in batches.
        #[arg(long, default_value_t = 200_000)]
        batched: usize,
        /// Events per batch.
        #[arg(long, default_value_t = 1_000)]
        batch_size: usize,
        /// Where to put the scratch data directory (default: a temporary directory).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// The audio front end: decode, resample, log-mel, as times realtime on one core.
    Audio(super::bench_audio::BenchAudioArgs),
    /// Embedding models: windows per second at batch 1 and 32, single thread.
    Models(super::bench_models::BenchModelsArgs),
    /// Clustering: UMAP and HDBSCAN time and memory on synthetic structured embeddings.
    Clustering(super::bench_clustering::BenchClusteringArgs),
    /// End to end: import, queue and process recordings with N workers; minutes of audio per second.
    Processing(BenchProcessingArgs),
    /// Search by example: exact top-k latency over synthetic vector caches, cold and warm, and memory.
    Search(super::bench_search::BenchSearchArgs),
    /// Detector training: one fit and the grouped cross-validation on synthetic labelled windows.
    Classifier(super::bench_classifier::BenchClassifierArgs),
    /// Web page speed with a realistic library (built through the real import, processing and
    /// clustering code, or reused with --dir): median and p95 latency and size of every page.
    Ui(super::bench_ui::BenchUiArgs),
}

#[derive(Debug, clap::Args)]
pub struct BenchProcessingArgs {
    /// Recordings to process (each becomes one job).
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,
    /// The model to encode with.
    #[arg(long, default_value = crate::model::BUILTIN_MODEL_NAME)]
    pub model: String,
    /// A models directory holding the model (for .tflite models).
    #[arg(long)]
    pub models_dir: Option<std::path::PathBuf>,
    /// Worker counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    /// Windows per inference batch.
    #[arg(long, default_value_t = crate::model::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
}

pub fn run(args: BenchArgs) -> anyhow::Result<i32> {
    match args.command {
        BenchCommand::Audio(args) => super::bench_audio::run(args).map(|()| 0),
        BenchCommand::Models(args) => super::bench_models::run(args).map(|()| 0),
        BenchCommand::Processing(args) => bench_processing(args),
        BenchCommand::Clustering(args) => super::bench_clustering::run(args).map(|()| 0),
        BenchCommand::Ui(args) => super::bench_ui::run(args).map(|()| 0),
        BenchCommand::Search(args) => super::bench_search::run(args).map(|()| 0),
        BenchCommand::Classifier(args) => super::bench_classifier::run(args).map(|()| 0),
        BenchCommand::EventLog { single, batched, batch_size, dir } => {
            let scratch = match dir {
                Some(dir) => tempfile::Builder::new().prefix("humpback-bench-").tempdir_in(dir)?,
                None => tempfile::Builder::new().prefix("humpback-bench-").tempdir()?,
            };
            let log = SledEventLog::open(&scratch.path().join("events"))?;
            let mut stream = realistic_event_stream(single + batched);

            let started = Instant::now();
            for event in stream.by_ref().take(single) {
                log.append(std::slice::from_ref(&event))?;
            }
            let single_seconds = started.elapsed().as_secs_f64();
            println!(
                "append, one event per flush: {single} events in {single_seconds:.2} s = {:.0} events/s",
                single as f64 / single_seconds
            );

            let batch_size = batch_size.max(1);
            let started = Instant::now();
            let mut appended = 0;
            while appended < batched {
                let batch: Vec<_> = stream.by_ref().take(batch_size.min(batched - appended)).collect();
                log.append(&batch)?;
                appended += batch.len();
            }
            let batched_seconds = started.elapsed().as_secs_f64();
            println!(
                "append, {batch_size} events per flush: {batched} events in {batched_seconds:.2} s = {:.0} events/s",
                batched as f64 / batched_seconds
            );

            let total = log.head().0;
            let mut projector =
                Projector::open(&scratch.path().join("projections.sqlite3")).context("opening projections")?;
            let started = Instant::now();
            projector.catch_up(&log)?;
            let replay_seconds = started.elapsed().as_secs_f64();
            println!(
                "projection replay into SQLite: {total} events in {replay_seconds:.2} s = {:.0} events/s",
                total as f64 / replay_seconds
            );
            let report = projector.rebuild(&log, &[])?;
            println!(
                "projection rebuild (drop + replay, one transaction): {} events in {:.2} s = {:.0} events/s",
                report.events_replayed,
                report.seconds,
                report.events_replayed as f64 / report.seconds
            );
            Ok(0)
        }
    }
}

/// Processes the files from scratch once per worker count (a fresh data directory each time,
/// so nothing is skipped as already encoded) and reports the throughput.
fn bench_processing(args: BenchProcessingArgs) -> anyhow::Result<i32> {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use crate::app::{Humpback, Settings};
    use crate::config::DataDir;
    use crate::domain::decide::Command;
    use crate::domain::ids::WorkerId;
    use crate::processing::worker::{ProcessingWorker, StepOutcome};

    for &workers in &args.workers {
        let scratch = tempfile::Builder::new().prefix("humpback-bench-processing-").tempdir()?;
        let settings = Settings {
            models_dir: args.models_dir.clone(),
            processing_workers: 0,
            batch_size: args.batch_size.max(1),
            ..Settings::default()
        };
        let humpback = Arc::new(Humpback::open_with(DataDir::new(scratch.path()), settings)?);
        let model = humpback
            .models
            .find(&args.model)
            .with_context(|| format!("model {} is not in the registry", args.model))?
            .info
            .clone();
        let resolved = crate::processing::config::resolve(
            &crate::processing::config::EncodingRequest { model: Some(args.model.clone()), ..Default::default() },
            &model,
        )?;
        let mut audio_seconds = 0.0;
        for file in &args.files {
            let source = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
            let staged = crate::ingest::stage_copy(&humpback.data_dir.tmp_dir(), source, u64::MAX)?;
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let audio = crate::ingest::register_staged(&humpback, staged, &name, "")?.audio_file_id();
            let checksum = humpback.writer.read_state(|s| s.audio_files[&audio].checksum_sha256.clone());
            audio_seconds += crate::audio::probe(file)?.duration_seconds;
            humpback.writer.execute(Command::QueueProcessingJob {
                audio_file_id: audio,
                encoding_signature: resolved.signature(&checksum),
                config: resolved.encoding_config(),
            })?;
        }
        let started = Instant::now();
        let threads: Vec<_> = (0..workers)
            .map(|index| {
                let humpback = humpback.clone();
                std::thread::spawn(move || -> anyhow::Result<usize> {
                    let mut worker = ProcessingWorker::new(
                        humpback,
                        WorkerId(format!("bench:{index}")),
                        Arc::new(AtomicBool::new(false)),
                    );
                    let mut jobs = 0;
                    while let StepOutcome::Ran { status, job_id } = worker.step()? {
                        if status != crate::domain::state::JobStatus::Complete {
                            anyhow::bail!("job {job_id} ended {status}");
                        }
                        jobs += 1;
                    }
                    Ok(jobs)
                })
            })
            .collect();
        let mut jobs = 0;
        for thread in threads {
            jobs += thread.join().map_err(|_| anyhow::anyhow!("a worker thread panicked"))??;
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "model {}, {workers} worker(s): {jobs} files, {:.1} min of audio in {seconds:.1} s = {:.2} min of audio per second \
             ({:.0}x realtime)",
            args.model,
            audio_seconds / 60.0,
            audio_seconds / 60.0 / seconds,
            audio_seconds / seconds
        );
    }
    Ok(0)
}
