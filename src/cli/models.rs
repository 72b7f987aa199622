//! `humpback models list|inspect|add|retire`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};

use super::access::{open_log, LogAccess};
use crate::config::DataDir;
use crate::model::{
    inspect_onnx_file, inspect_tflite_file, BatchChoice, FakeModelConfig, ModelInfo, ModelListing, ModelRegistry,
    ModelUpload, OnnxEmbeddingModel, RegistryConfig, RunOptions, TfliteEmbeddingModel,
};

#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// List the usable models (built-in, `.tflite` and `.onnx` files in the models directory) with
    /// where each fact came from and any warning, and the files that cannot be used, with the reason.
    List {
        /// Directory holding the model files and optional `NAME.toml` sidecars (default: DATA_DIR/models).
        #[arg(long, env = "HUMPBACK_MODELS_DIR")]
        models_dir: Option<PathBuf>,
        /// Also offer the deterministic `fake` model (for tests and demos).
        #[arg(long)]
        enable_fake_model: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show the inputs, outputs, operators (TFLite) or opset and metadata_props (ONNX) of a model
    /// file, what it declares, and whether it can run here.
    Inspect {
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a `.tflite` or `.onnx` file (it loads, runs one window, gives the expected dimension)
    /// and add it: through the running server (usable at once), or into a stopped data directory's
    /// models directory (registered when the server starts).
    Add {
        file: PathBuf,
        /// The model's name (default: the file name without extension).
        #[arg(long)]
        name: Option<String>,
        /// The sample rate the model expects, in Hz, when the file does not declare it (written to
        /// the model's sidecar).
        #[arg(long)]
        sample_rate: Option<u32>,
        /// The output that is the embedding (written to the model's sidecar).
        #[arg(long)]
        output: Option<String>,
        /// The URL of the server to add it through (default: the one holding the data directory).
        #[arg(long)]
        server: Option<String>,
    },
    /// Hide a model from new jobs (its embedding sets stay usable): records `ModelRetired`.
    Retire {
        name: String,
        /// The URL of the server (default: the one holding the data directory, if any).
        #[arg(long)]
        server: Option<String>,
    },
}

pub fn run(data_dir: &DataDir, bind: &str, args: ModelsArgs) -> anyhow::Result<()> {
    match args.command {
        ModelsCommand::List { models_dir, enable_fake_model, json } => {
            let models_dir = models_dir.unwrap_or_else(|| data_dir.root().join("models"));
            list(models_dir, data_dir.batch_measurements_dir(), enable_fake_model, json)
        }
        ModelsCommand::Inspect { file, json } => inspect(file, json),
        ModelsCommand::Add { file, name, sample_rate, output, server } => {
            add(data_dir, bind, server.as_deref(), &file, name, sample_rate, output)
        }
        ModelsCommand::Retire { name, server } => retire(data_dir, bind, server.as_deref(), &name),
    }
}

/// Lists the models; batch sizes as the server last measured them (read from the cache, never measured here).
fn list(
    models_directory: PathBuf,
    measurements_directory: PathBuf,
    enable_fake_model: bool,
    json: bool,
) -> anyhow::Result<()> {
    let mut config = RegistryConfig::new(&models_directory);
    config.measurements_directory = Some(measurements_directory);
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
    print!("{}", render_listing(&listing));
    Ok(())
}

/// The text of `models list`. Pure.
pub fn render_listing(listing: &ModelListing) -> String {
    let mut text = format!("models directory: {}\n", listing.models_directory);
    for info in &listing.models {
        let default_marker = if info.name == listing.default_model { " (default)" } else { "" };
        text.push_str(&format!("{}{default_marker} [{}]\n", info.name, info.format.label()));
        text.push_str(&describe_model(info));
        text.push_str(&describe_batch(&info.batch));
    }
    if !listing.problems.is_empty() {
        text.push_str("files that cannot be used:\n");
        for problem in &listing.problems {
            text.push_str(&format!("  {}: {}\n", problem.file, problem.reason));
        }
    }
    text
}

/// The batch-size line and, when measured, one line per measured size.
fn describe_batch(batch: &BatchChoice) -> String {
    let mut text = format!(
        "  batch size: {} ({}; memory budget {} MiB per worker)\n",
        batch.batch_size,
        batch.batch_size_source.label(),
        batch.model_memory_bytes >> 20
    );
    for measurement in &batch.batch_measurements {
        let marker = if measurement.batch_size == batch.batch_size { " <- chosen" } else { "" };
        text.push_str(&format!(
            "    batch {:>3}: {:>9.0} windows/s, {:>5} MiB{marker}\n",
            measurement.batch_size,
            measurement.windows_per_second,
            measurement.memory_bytes >> 20
        ));
    }
    text
}

fn describe_model(info: &ModelInfo) -> String {
    let facts = &info.facts;
    let mut text = format!("  version: {}  source: {}\n", info.version, info.source);
    text.push_str(&format!(
        "  input: {:?}, {}, batch {} ({})\n",
        info.input_kind,
        info.input_shape,
        info.batch_support,
        facts.input_kind.label()
    ));
    text.push_str(&format!("  sample rate: {} Hz ({})\n", info.sample_rate, facts.sample_rate.label()));
    text.push_str(&format!("  window: {} s ({})\n", info.window_seconds, facts.window_seconds.label()));
    text.push_str(&format!(
        "  embedding: {} values from {} ({})\n",
        info.embedding_dim,
        info.embedding_output,
        facts.embedding_output.label()
    ));
    for warning in &info.warnings {
        text.push_str(&format!("  WARNING: {warning}\n"));
    }
    text
}

fn is_onnx(file: &Path) -> bool {
    file.extension().is_some_and(|extension| extension.eq_ignore_ascii_case("onnx"))
}

fn inspect(file: PathBuf, json: bool) -> anyhow::Result<()> {
    if is_onnx(&file) {
        return inspect_onnx(file, json);
    }
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
        Some(Ok(info)) => {
            println!("litert loads it: yes");
            print!("{}", describe_model(&info));
        }
        Some(Err(error)) => println!("litert loads it: no: {error}"),
        None => {}
    }
    Ok(())
}

fn inspect_onnx(file: PathBuf, json: bool) -> anyhow::Result<()> {
    let inspection = inspect_onnx_file(&file).with_context(|| format!("inspecting {}", file.display()))?;
    let loaded = match inspection.why_it_cannot_run() {
        Some(_) => None,
        None => Some(OnnxEmbeddingModel::open_file(&file, RunOptions::default()).map(|model| {
            use crate::model::EmbeddingModel;
            model.info().clone()
        })),
    };
    if json {
        let value = serde_json::json!({
            "inspection": inspection,
            "runs_here": inspection.why_it_cannot_run().is_none() && loaded.as_ref().is_some_and(Result::is_ok),
            "why_it_cannot_run": inspection.why_it_cannot_run(),
            "model_info": loaded.as_ref().and_then(|result| result.as_ref().ok()),
            "load_error": loaded.as_ref().and_then(|result| result.as_ref().err()).map(ToString::to_string),
        });
        println!("{}", serde_json::to_string_pretty(&value).context("serializing the inspection")?);
        return Ok(());
    }
    print!("{}", inspection.render_text());
    match loaded {
        Some(Ok(info)) => print!("{}", describe_model(&info)),
        Some(Err(error)) => println!("humpback can use it: no: {error}"),
        None => {}
    }
    Ok(())
}

fn add(
    data_dir: &DataDir,
    bind: &str,
    server: Option<&str>,
    file: &Path,
    name: Option<String>,
    sample_rate: Option<u32>,
    output: Option<String>,
) -> anyhow::Result<()> {
    let file_name = file
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .ok_or_else(|| anyhow!("{} is not a file name", file.display()))?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let upload = ModelUpload { file_name, name, sample_rate, output_name: output, bytes };
    let through_server = if server.is_some() || data_dir.has_event_log() {
        match open_log(data_dir, bind, server)? {
            LogAccess::Server(client) => Some(client),
            LogAccess::Direct(_) => None,
        }
    } else {
        None
    };
    let info = match through_server {
        Some(client) => {
            let (status, answer) = client.upload_model(&upload)?;
            if !(200..300).contains(&status) {
                let reason = answer.get("error").and_then(|error| error.as_str()).unwrap_or("no reason given");
                return Err(anyhow!("the server refused the model ({status}): {reason}"));
            }
            let info: ModelInfo = serde_json::from_value(answer).context("reading the server's answer")?;
            println!("added {} through the server at {}; jobs can use it now", info.name, client.base_url());
            info
        }
        None => {
            let models_directory = data_dir.root().join("models");
            std::fs::create_dir_all(&models_directory)
                .with_context(|| format!("creating {}", models_directory.display()))?;
            let registry = ModelRegistry::discover(RegistryConfig::new(&models_directory))
                .with_context(|| format!("scanning {}", models_directory.display()))?;
            let added = registry.add(upload).context("the model was refused")?;
            println!(
                "added {} to {}; it is registered when humpback starts on this data directory",
                added.info.name,
                models_directory.display()
            );
            added.info
        }
    };
    print!("{}", describe_model(&info));
    Ok(())
}

fn retire(data_dir: &DataDir, bind: &str, server: Option<&str>, name: &str) -> anyhow::Result<()> {
    match open_log(data_dir, bind, server)? {
        LogAccess::Server(client) => {
            let path = format!("/api/models/{}/retire", crate::views::url_encode(name));
            let _: serde_json::Value = client.post_json(&path, &serde_json::json!({}))?;
            println!("retired {name} through the server at {}", client.base_url());
        }
        LogAccess::Direct(log) => {
            drop(log);
            let humpback = crate::app::Humpback::open(data_dir.clone()).context("opening the data directory")?;
            humpback
                .writer
                .execute(crate::domain::decide::Command::RetireModel { name: name.to_string() })
                .with_context(|| format!("retiring {name}"))?;
            humpback.log.flush().context("flushing the event log")?;
            println!("retired {name}: hidden from new jobs; its embedding sets stay usable");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_names_fact_sources_and_warnings() {
        let directory = tempfile::tempdir().unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models");
        std::fs::copy(fixtures.join("logmel_dynamic.onnx"), directory.path().join("plain.onnx")).unwrap();
        std::fs::copy(fixtures.join("waveform_dft.onnx"), directory.path().join("declared.onnx")).unwrap();
        let registry = ModelRegistry::discover(RegistryConfig::new(directory.path())).unwrap();
        let text = render_listing(&registry.listing());
        assert!(
            text.contains("declared [onnx]") && text.contains("sample rate: 16000 Hz (declared by the file)"),
            "{text}"
        );
        assert!(
            text.contains("sample rate: 32000 Hz (assumed)")
                && text.contains("WARNING: sample rate 32000 Hz is assumed"),
            "{text}"
        );
    }
}
