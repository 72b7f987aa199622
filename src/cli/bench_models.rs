//! `humpback bench models`: windows per second of `.tflite` models through humpback's LiteRT runner
//! and of `.onnx` models through its ONNX Runtime runner, single-threaded, at several batch sizes.
//! The default models are the same two networks in both formats (the ONNX fixtures are twins of
//! the TFLite ones: same weights, same outputs), so the runtimes are compared on equal work.
//! `scripts/bench-models` runs this next to Python's `ai-edge-litert` and `onnxruntime`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use crate::model::{EmbeddingModel, OnnxEmbeddingModel, RunOptions, TfliteEmbeddingModel};

#[derive(Debug, clap::Args)]
pub struct BenchModelsArgs {
    /// Model files to time (default: the fixture waveform/STFT and log-mel models).
    #[arg(long = "model")]
    pub models: Vec<PathBuf>,
    /// Windows embedded per measurement.
    #[arg(long, default_value_t = 256)]
    pub windows: usize,
    /// Batch sizes to time (a fixed-batch model always runs at its own batch size).
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    pub batch_sizes: Vec<usize>,
    /// Print one JSON object per measurement instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn default_models() -> Vec<PathBuf> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models");
    ["waveform_stft.tflite", "waveform_dft.onnx", "logmel_dynamic.tflite", "logmel_dynamic.onnx"]
        .iter()
        .map(|name| fixtures.join(name))
        .collect()
}

/// Opens a model file with the runtime its extension names; the runtime's label.
fn open_model(path: &Path, options: RunOptions) -> anyhow::Result<(Box<dyn EmbeddingModel>, &'static str)> {
    let is_onnx = path.extension().is_some_and(|extension| extension.eq_ignore_ascii_case("onnx"));
    let loaded: (Box<dyn EmbeddingModel>, &'static str) = if is_onnx {
        (Box::new(OnnxEmbeddingModel::open_file(path, options)?), "onnxruntime")
    } else {
        (Box::new(TfliteEmbeddingModel::open_file(path, options)?), "litert")
    };
    Ok(loaded)
}

/// Deterministic input: values in [-0.5, 0.5) from a fixed linear congruential sequence.
/// `scripts/bench-models` generates exactly the same values.
pub fn benchmark_input(value_count: usize) -> Vec<f32> {
    let mut state: u32 = 12_345;
    (0..value_count)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            ((state >> 16) & 0x7fff) as f32 / 32_768.0 - 0.5
        })
        .collect()
}

pub fn run(args: BenchModelsArgs) -> anyhow::Result<()> {
    let models = if args.models.is_empty() { default_models() } else { args.models.clone() };
    if !args.json {
        println!(
            "{:<28} {:<12} {:>6} {:>8} {:>10} {:>12}",
            "model", "runtime", "batch", "windows", "seconds", "windows/s"
        );
    }
    for path in &models {
        for &batch_size in &args.batch_sizes {
            let (mut model, runtime) = open_model(path, RunOptions::with_batch_size(batch_size))
                .with_context(|| format!("loading {}", path.display()))?;
            let window_values = model.info().window_value_count();
            let input = benchmark_input(window_values * args.windows.max(1));
            let windows: Vec<&[f32]> = input.chunks_exact(window_values).collect();
            // Warm-up: the first run at a batch size allocates buffers.
            let warm_up_count = windows.len().min(batch_size.max(1));
            model.embed_batch(&windows[..warm_up_count]).context("warm-up run")?;
            let started = Instant::now();
            let embeddings = model.embed_batch(&windows).context("timed run")?;
            let seconds = started.elapsed().as_secs_f64();
            let windows_per_second = embeddings.len() as f64 / seconds.max(f64::EPSILON);
            let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into());
            if args.json {
                let line = serde_json::json!({
                    "runtime": "humpback",
                    "engine": runtime,
                    "model": name,
                    "batch": batch_size,
                    "effective_batch": model.info().batch_support.to_string(),
                    "windows": embeddings.len(),
                    "seconds": seconds,
                    "windows_per_second": windows_per_second,
                });
                println!("{line}");
            } else {
                println!(
                    "{name:<28} {runtime:<12} {batch_size:>6} {:>8} {seconds:>10.3} {windows_per_second:>12.1}",
                    embeddings.len()
                );
            }
        }
    }
    Ok(())
}
