use clap::Parser;

fn main() {
    humpback::cli::init_tracing();
    let cli = humpback::cli::Cli::parse();
    match humpback::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(1);
        }
    }
}
