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
    /// Start-up of the writer on a long log: the whole fold against a snapshot plus the rest.
    /// Builds the log (the sample event stream, appended in batches) in `--dir` unless it is
    /// already there, so a second run measures only the opening.
    LogOpen {
        /// Events in the log.
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        /// Data directory to build or reuse (its `events/` and `snapshots/`).
        #[arg(long)]
        dir: std::path::PathBuf,
        /// Events appended after the snapshot (the tail folded on open).
        #[arg(long, default_value_t = 5_000)]
        tail: u64,
        /// Only the opening from the snapshot: skip the whole fold, and reuse the snapshot a
        /// previous run left when it covers the same position.
        #[arg(long)]
        snapshot_only: bool,
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
    /// Windows per inference batch (default: measured, as `serve` chooses it, within --model-memory).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// What one worker's model may use, as `serve --model-memory` (bytes, or with K, M, G).
    #[arg(long, value_parser = crate::model::parse_memory_size, default_value = "512M")]
    pub model_memory: u64,
    /// Cores the processing may use in all, as `serve --threads` (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also time a bare loop over the model alone: the first file's first N windows, cut and
    /// transformed beforehand, run through one model instance with every thread given
    /// (`--threads`), and print the pipeline's windows/s against it.
    #[arg(long)]
    pub bare_runtime_windows: Option<usize>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<i32> {
    match args.command {
        BenchCommand::Audio(args) => super::bench_audio::run(args).map(|()| 0),
        BenchCommand::Models(args) => super::bench_models::run(args).map(|()| 0),
        BenchCommand::Processing(args) => bench_processing(args),
        BenchCommand::Clustering(args) => super::bench_clustering::run(args).map(|()| 0),
        BenchCommand::Ui(args) => super::bench_ui::run(args).map(|()| 0),
        BenchCommand::Search(args) => super::bench_search::run(args).map(|()| 0),
        BenchCommand::LogOpen { events, dir, tail, snapshot_only } => {
            bench_log_open(events, &dir, tail, snapshot_only).map(|()| 0)
        }
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
            let mut projector = Projector::open(&scratch.path().join("projections.sqlite3"), scratch.path())
                .context("opening projections")?;
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

fn bench_log_open(events: u64, dir: &std::path::Path, tail: u64, snapshot_only: bool) -> anyhow::Result<()> {
    use std::sync::Arc;

    use crate::config::DataDir;
    let data_dir = DataDir::new(dir);
    let snapshot_path = data_dir.writer_snapshot();
    let started = Instant::now();
    let log = Arc::new(SledEventLog::open(&data_dir.events_dir())?);
    println!("sled open: {:.2} s (head {})", started.elapsed().as_secs_f64(), log.head());
    let before_snapshot = events.saturating_sub(tail);
    if log.head().0 < events {
        let _ = std::fs::remove_file(&snapshot_path);
        let started = Instant::now();
        let mut stream = realistic_event_stream(events as usize).skip(log.head().0 as usize);
        let mut batch = Vec::with_capacity(10_000);
        loop {
            batch.clear();
            batch.extend(stream.by_ref().take(10_000));
            if batch.is_empty() {
                break;
            }
            log.append(&batch)?;
        }
        log.flush()?;
        println!("built: {} events in {:.1} s", log.head(), started.elapsed().as_secs_f64());
    }
    if !snapshot_only {
        open_by_folding_everything(&log)?;
    }
    let covered = crate::state_snapshot::read_snapshot_position(snapshot_path.as_path());
    if !snapshot_only || covered != Some(crate::domain::ids::EventSeq(before_snapshot)) {
        write_snapshot_before_head(&log, &snapshot_path, before_snapshot)?;
    }
    let started = Instant::now();
    let (state, covered) = crate::state_snapshot::fold_from_snapshot(Some(&snapshot_path), log.as_ref())?;
    let snapshot_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        covered.0 == before_snapshot,
        "the snapshot was not used (it covers {covered}, expected {before_snapshot}): see the warning above"
    );
    println!("open from the snapshot + {tail} events: {snapshot_seconds:.2} s (head {})", state.last_seq);
    drop(state);
    drop(log);
    // The whole start-up as `serve` does it: sled's opening beside the snapshot's reading,
    // then the check against the log and the tail.
    let started = Instant::now();
    let (log, snapshot) = crate::services::open_log_beside_snapshot(&data_dir.events_dir(), &snapshot_path)?;
    let snapshot_read = snapshot.seconds;
    let settings = crate::writer::SnapshotSettings { path: snapshot_path.clone(), every: 0 };
    let writer = crate::writer::Writer::open_with_read_snapshot(log.clone(), settings, snapshot)?;
    let head = writer.read_state(|state| state.last_seq);
    println!(
        "start-up as `serve` does it (sled opened beside the snapshot's reading, {snapshot_read:.2} s): {:.2} s (head {head})",
        started.elapsed().as_secs_f64()
    );
    // What the writer pays, holding its lock, each time it snapshots while serving.
    let again = snapshot_path.with_extension("bench-again");
    let (written, megabytes) = writer.read_state(|state| write_snapshot_timed(&again, state, log.as_ref()))?;
    std::fs::remove_file(&again)?;
    println!("snapshot of that state: {megabytes:.1} MB written in {written:.2} s");
    Ok(())
}

/// Writes a snapshot of `state` to `path`: the seconds it took and its size in MB.
fn write_snapshot_timed(
    path: &std::path::Path,
    state: &crate::domain::state::DomainState,
    log: &dyn crate::log::EventLog,
) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    crate::state_snapshot::write_snapshot(path, state, log)?;
    let seconds = started.elapsed().as_secs_f64();
    let size = std::fs::metadata(path).map(|metadata| metadata.len()).unwrap_or(0);
    Ok((seconds, size as f64 / 1e6))
}

fn open_by_folding_everything(log: &std::sync::Arc<SledEventLog>) -> anyhow::Result<()> {
    use crate::writer::Writer;
    let started = Instant::now();
    let writer = Writer::open(log.clone())?;
    let full_seconds = started.elapsed().as_secs_f64();
    let state_summary = writer.read_state(|state| {
        format!(
            "{} audio files, {} processing jobs, {} embedding sets",
            state.audio_files.len(),
            state.processing_jobs.len(),
            state.embedding_sets.len()
        )
    });
    println!("open, folding all {} events: {full_seconds:.2} s ({state_summary})", log.head());
    drop(writer);
    Ok(())
}

fn write_snapshot_before_head(
    log: &std::sync::Arc<SledEventLog>,
    snapshot_path: &std::path::Path,
    before_snapshot: u64,
) -> anyhow::Result<()> {
    // A snapshot `tail` events before the head, as a writer that snapshots every so often
    // leaves it (written from a fold up to there).
    let started = Instant::now();
    let mut state = crate::domain::state::DomainState::default();
    for envelope in log.scan(crate::domain::ids::EventSeq(1)..=crate::domain::ids::EventSeq(before_snapshot), false) {
        let envelope = envelope?;
        state.apply(envelope.seq, &envelope.event);
    }
    let folded = started.elapsed().as_secs_f64();
    let (written, megabytes) = write_snapshot_timed(snapshot_path, &state, log.as_ref())?;
    println!(
        "snapshot at event {before_snapshot}: {megabytes:.1} MB, folded in {folded:.2} s, written in {written:.2} s"
    );
    Ok(())
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
        let thread_budget = args.threads.unwrap_or_else(crate::app::default_worker_count).max(1);
        let settings = Settings {
            models_dir: args.models_dir.clone(),
            // The registry sizes each model's intra-op threads by the workers that share the cores.
            processing_workers: workers,
            threads: thread_budget,
            batch_size: args.batch_size.map(|size| size.max(1)),
            model_memory_bytes: args.model_memory,
            measure_batch_sizes: true,
            ..Settings::default()
        };
        let humpback = Arc::new(Humpback::open_with(DataDir::new(scratch.path()), settings)?);
        let registered = humpback
            .models
            .find(&args.model)
            .with_context(|| format!("model {} is not in the registry", args.model))?;
        let batch = registered.batch.clone();
        println!("batch size {} ({})", batch.batch_size, batch.batch_size_source.label());
        for measurement in &batch.batch_measurements {
            println!(
                "  measured batch {:>3}: {:>9.1} windows/s, {:>5} MiB",
                measurement.batch_size,
                measurement.windows_per_second,
                measurement.memory_bytes >> 20
            );
        }
        let model = registered.info;
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
            "model {}, {workers} worker(s), {thread_budget} thread(s): {jobs} files, {:.1} min of audio in {seconds:.1} s = \
             {:.2} min of audio per second ({:.0}x realtime)",
            args.model,
            audio_seconds / 60.0,
            audio_seconds / 60.0 / seconds,
            audio_seconds / seconds
        );
        let windows_done: u64 =
            humpback.writer.read_state(|state| state.embedding_sets.values().map(|set| set.row_count).sum());
        let pipeline_rate = windows_done as f64 / seconds;
        if let (Some(limit), Some(first)) = (args.bare_runtime_windows, args.files.first()) {
            let inputs = crate::processing::pipeline::model_inputs(first, &resolved, limit)?;
            let views: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
            // The pipeline's time includes opening the model (its runtime session) and the
            // first, slower batch; a loop timed the same way, from opening to the last window
            // (it also warms the session for the passes after it):
            let started = Instant::now();
            let mut bare = humpback.models.open(&args.model)?;
            let opened_seconds = started.elapsed().as_secs_f64();
            let from_opening_rate = bare.embed_batch(&views)?.len() as f64 / started.elapsed().as_secs_f64();
            // Two timed passes, their rates averaged: on a shared machine one pass can land in a
            // slow or a fast minute.
            let mut rates = Vec::new();
            let mut embedded = 0;
            for _ in 0..2 {
                let started = Instant::now();
                embedded = bare.embed_batch(&views)?.len();
                rates.push(embedded as f64 / started.elapsed().as_secs_f64());
            }
            let bare_rate = rates.iter().sum::<f64>() / rates.len() as f64;
            println!(
                "  pipeline {pipeline_rate:.1} windows/s ({windows_done} windows); bare runtime loop {bare_rate:.1} \
                 windows/s (mean of {:.1} and {:.1}; {embedded} windows, inputs prepared beforehand, same model, \
                 batch {}, {} intra-op thread(s)); pipeline / bare = {:.2}",
                rates[0],
                rates[1],
                batch.batch_size,
                crate::services::intra_op_threads_per_worker(thread_budget, workers),
                pipeline_rate / bare_rate
            );
            println!(
                "  bare runtime loop timed from opening the model, as the pipeline is: {from_opening_rate:.1} \
                 windows/s (opening {opened_seconds:.2} s); pipeline / bare = {:.2}",
                pipeline_rate / from_opening_rate
            );
        }
    }
    Ok(0)
}
