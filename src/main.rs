// TEMPORARY (audio branch only): a minimal dispatch so `humpback bench audio ...` runs before the
// real CLI is merged. Replace with the wiring in src/cli/mod.rs when merging.
#[path = "cli/bench_audio.rs"]
mod bench_audio;

use clap::{Parser, Subcommand};
// Lets src/cli/bench_audio.rs say `crate::audio`, as it will inside the library's cli module.
use humpback::audio;

#[derive(Parser)]
#[command(name = "humpback")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// The audio front end: decode, resample, log-mel, as times-realtime.
    Audio(bench_audio::BenchAudioArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Bench {
            what: Bench::Audio(args),
        } => bench_audio::run(args),
    }
}
