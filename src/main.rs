use clap::Parser;

// TEMPORARY (clustering branch): `humpback bench clustering` is dispatched here until the lead
// wires `cli/bench_clustering.rs` into `cli::BenchCommand`. The `use` makes that file's
// `crate::clustering` paths resolve inside this binary crate.
#[path = "cli/bench_clustering.rs"]
mod bench_clustering;
use humpback::clustering;

#[derive(Debug, Parser)]
#[command(name = "humpback bench clustering")]
struct BenchClusteringCommand {
    #[command(flatten)]
    args: bench_clustering::BenchClusteringArgs,
}

fn main() {
    humpback::cli::init_tracing();
    let arguments: Vec<String> = std::env::args().collect();
    if arguments.len() >= 3 && arguments[1] == "bench" && arguments[2] == "clustering" {
        let command = BenchClusteringCommand::parse_from(
            std::iter::once("humpback bench clustering".to_string()).chain(arguments[3..].iter().cloned()),
        );
        if let Err(error) = bench_clustering::run(command.args) {
            eprintln!("error: {error:#}");
            std::process::exit(1);
        }
        return;
    }
    let cli = humpback::cli::Cli::parse();
    match humpback::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(1);
        }
    }
}
