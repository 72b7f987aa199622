//! `humpback bench ...`: measurements anyone can rerun (see `scripts/bench-*`).

use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::domain::sample_events::one_event_of_every_type;
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
}

pub fn run(args: BenchArgs) -> anyhow::Result<i32> {
    match args.command {
        BenchCommand::Audio(args) => super::bench_audio::run(args).map(|()| 0),
        BenchCommand::Models(args) => super::bench_models::run(args).map(|()| 0),
        BenchCommand::EventLog { single, batched, batch_size, dir } => {
            let scratch = match dir {
                Some(dir) => tempfile::Builder::new().prefix("humpback-bench-").tempdir_in(dir)?,
                None => tempfile::Builder::new().prefix("humpback-bench-").tempdir()?,
            };
            let log = SledEventLog::open(&scratch.path().join("events"))?;
            let samples = one_event_of_every_type();

            let started = Instant::now();
            for index in 0..single {
                log.append(std::slice::from_ref(&samples[index % samples.len()]))?;
            }
            let single_seconds = started.elapsed().as_secs_f64();
            println!(
                "append, one event per flush: {single} events in {single_seconds:.2} s = {:.0} events/s",
                single as f64 / single_seconds
            );

            let batch_size = batch_size.max(1);
            let batch: Vec<_> = (0..batch_size).map(|index| samples[index % samples.len()].clone()).collect();
            let started = Instant::now();
            let mut appended = 0;
            while appended < batched {
                let take = batch_size.min(batched - appended);
                log.append(&batch[..take])?;
                appended += take;
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
