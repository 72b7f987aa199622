//! `humpback models list` and `humpback models inspect FILE`.

use std::path::PathBuf;

use anyhow::Context;

use crate::model::{
    inspect_tflite_file, FakeModelConfig, ModelRegistry, RegistryConfig, RunOptions, TfliteEmbeddingModel,
};

#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// List the usable models (built-in and `.tflite` files in the models directory) and the files
    /// that cannot be used, with the reason.
    List {
        /// Directory holding `NAME.tflite` files and optional `NAME.toml` sidecars.
        #[arg(long, env = "HUMPBACK_MODELS_DIR", default_value = "models")]
        models_dir: PathBuf,
        /// Also offer the deterministic `fake` model (for tests and demos).
        #[arg(long)]
        enable_fake_model: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show the inputs, outputs and operators of a `.tflite` file and whether it can run here.
    Inspect {
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: ModelsArgs) -> anyhow::Result<()> {
    match args.command {
        ModelsCommand::List { models_dir, enable_fake_model, json } => list(models_dir, enable_fake_model, json),
        ModelsCommand::Inspect { file, json } => inspect(file, json),
    }
}

fn list(models_directory: PathBuf, enable_fake_model: bool, json: bool) -> anyhow::Result<()> {
    let mut config = RegistryConfig::new(&models_directory);
    if enable_fake_model {
        config.fake_model = Some(FakeModelConfig::default());
    }
    let registry = ModelRegistry::discover(config)
        .with_context(|| format!("scanning models directory {}", models_directory.display()))?;
    let listing = registry.listing();
    if json {
        println!("{}", serde_json::to_string_pretty(&listing).context("serializing the model list")?);
        return Ok(());
    }
    println!("models directory: {}", listing.models_directory);
    for info in &listing.models {
        let default_marker = if info.name == listing.default_model { " (default)" } else { "" };
        println!("{}{default_marker}", info.name);
        println!("  version: {}  source: {}", info.version, info.source);
        println!(
            "  input: {:?}, {} at {} Hz, {} s windows, batch {}",
            info.input_kind, info.input_shape, info.sample_rate, info.window_seconds, info.batch_support
        );
        println!("  embedding: {} values from {}", info.embedding_dim, info.embedding_output);
    }
    if !listing.problems.is_empty() {
        println!("files that cannot be used:");
        for problem in &listing.problems {
            println!("  {}: {}", problem.file, problem.reason);
        }
    }
    Ok(())
}

fn inspect(file: PathBuf, json: bool) -> anyhow::Result<()> {
    let inspection = inspect_tflite_file(&file).with_context(|| format!("inspecting {}", file.display()))?;
    // The static check says whether every op is a builtin; compiling with LiteRT confirms it.
    let compiles = match inspection.why_it_cannot_run() {
        Some(_) => None,
        None => Some(TfliteEmbeddingModel::open_file(&file, RunOptions::default()).map(|model| {
            use crate::model::EmbeddingModel;
            model.info().clone()
        })),
    };
    if json {
        let value = serde_json::json!({
            "inspection": inspection,
            "runs_here": inspection.why_it_cannot_run().is_none(),
            "why_it_cannot_run": inspection.why_it_cannot_run(),
            "model_info": compiles.as_ref().and_then(|result| result.as_ref().ok()),
            "load_error": compiles.as_ref().and_then(|result| result.as_ref().err()).map(ToString::to_string),
        });
        println!("{}", serde_json::to_string_pretty(&value).context("serializing the inspection")?);
        return Ok(());
    }
    print!("{}", inspection.render_text());
    match compiles {
        Some(Ok(info)) => println!(
            "litert loads it: yes; embedding {} values from {}, {:?} input {} at {} Hz ({} s), batch {}",
            info.embedding_dim,
            info.embedding_output,
            info.input_kind,
            info.input_shape,
            info.sample_rate,
            info.window_seconds,
            info.batch_support
        ),
        Some(Err(error)) => println!("litert loads it: no: {error}"),
        None => {}
    }
    Ok(())
}
