//! TEMPORARY wiring from the `model` branch so `models` and `bench-models` can be run before the
//! lead's CLI lands; the lead re-wires these into src/cli/mod.rs when merging.

mod cli {
    pub mod bench_models;
    pub mod models;
}

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "humpback")]
struct Arguments {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// List or inspect embedding models.
    Models(cli::models::ModelsArgs),
    /// Time the LiteRT runner on model files.
    BenchModels(cli::bench_models::BenchModelsArgs),
}

fn main() -> anyhow::Result<()> {
    match Arguments::parse().command {
        Command::Models(args) => cli::models::run(args),
        Command::BenchModels(args) => cli::bench_models::run(args),
    }
}
