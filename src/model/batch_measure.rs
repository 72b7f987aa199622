//! Timing a model at a few batch sizes (imperative shell of [`crate::model::choose_batch_size`]),
//! and the per-model-version cache of the results under the data directory.
//!
//! Each candidate size is loaded afresh, warmed up with one batch, then timed on the same
//! [`MEASURED_WINDOWS`] windows of synthetic input (the fastest of a few repetitions). Memory is measured, not computed: the peak RSS
//! (`VmHWM`, reset once through `/proc/self/clear_refs` before the first size) above the RSS before
//! the first size, read after each size; sizes go smallest first, so a later size reusing memory an
//! earlier one freed is still counted, and the figure can only over-estimate. Added to it: the
//! batches of input the processing pipeline's queues hold ([`QUEUED_BATCHES`]). Where `/proc` is
//! not available, the batch's input and output tensors stand in (computed from the shapes).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::artifacts::files::write_atomically;
use crate::model::batch_choice::BatchMeasurement;
use crate::model::info::ModelInfo;
use crate::model::tflite_model::sha256_hex;
use crate::model::{EmbeddingModel, ModelError};

/// Windows each candidate batch size is timed on (one run of 64, 64 runs of 1).
pub const MEASURED_WINDOWS: usize = 64;

/// Batches of model input the processing pipeline holds besides the one running: two queues of
/// two (see `processing::pipeline`).
pub const QUEUED_BATCHES: u64 = 4;

/// Each size's windows are timed again until this much time went into them (at most
/// [`MAXIMUM_REPETITIONS`] times), and the fastest repetition counts: other work on a shared
/// machine only ever slows a repetition down.
pub const TIMING_PER_SIZE: Duration = Duration::from_millis(200);
pub const MAXIMUM_REPETITIONS: usize = 5;

/// Once this much time went into measuring one model, larger sizes are left unmeasured.
pub const MEASURING_TIME_LIMIT: Duration = Duration::from_secs(3);

/// One model measured at a time: the peak-RSS reading is process-wide.
static MEASURING: Mutex<()> = Mutex::new(());

/// Deterministic synthetic input in -0.5..0.5 (a linear congruential sequence).
fn synthetic_windows(count: usize, values: usize) -> Vec<Vec<f32>> {
    let mut state: u32 = 0x1234_5678;
    (0..count)
        .map(|_| {
            (0..values)
                .map(|_| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                })
                .collect()
        })
        .collect()
}

/// A `kB` line of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kilobytes: u64 = line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kilobytes * 1024)
}

/// Resets the process's peak RSS to its current RSS; false where that is not possible.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok() && status_bytes("VmHWM:").is_some()
}

/// Times `info`'s model at each of `sizes` (ascending), opening it through `open(batch_size)`.
/// Stops after the first size needing more than `memory_budget_bytes` (larger ones need more), so
/// measuring never holds much more than the budget.
pub fn measure_batch_sizes(
    info: &ModelInfo,
    sizes: &[usize],
    memory_budget_bytes: u64,
    open: &mut dyn FnMut(usize) -> Result<Box<dyn EmbeddingModel>, ModelError>,
) -> Result<Vec<BatchMeasurement>, ModelError> {
    let _only_one = MEASURING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let window_values = info.window_value_count();
    let windows = synthetic_windows(MEASURED_WINDOWS, window_values);
    let window_refs: Vec<&[f32]> = windows.iter().map(Vec::as_slice).collect();
    let window_bytes = (window_values * std::mem::size_of::<f32>()) as u64;
    let embedding_bytes = u64::from(info.embedding_dim) * std::mem::size_of::<f32>() as u64;
    let mut sizes = sizes.to_vec();
    sizes.sort_unstable();
    sizes.dedup();
    let peak_readable = reset_peak_rss();
    let baseline = status_bytes("VmRSS:").unwrap_or(0);
    let started = Instant::now();
    let mut measurements = Vec::new();
    for batch_size in sizes.into_iter().filter(|&size| size >= 1) {
        if started.elapsed() > MEASURING_TIME_LIMIT {
            break;
        }
        let mut model = open(batch_size)?;
        model.embed_batch(&window_refs[..batch_size.min(MEASURED_WINDOWS)])?;
        let timing_started = Instant::now();
        let mut seconds = f64::INFINITY;
        for _ in 0..MAXIMUM_REPETITIONS {
            let timed = Instant::now();
            model.embed_batch(&window_refs)?;
            seconds = seconds.min(timed.elapsed().as_secs_f64().max(1e-9));
            if timing_started.elapsed() >= TIMING_PER_SIZE {
                break;
            }
        }
        let tensors = batch_size as u64 * (window_bytes + embedding_bytes);
        let model_bytes = match status_bytes("VmHWM:") {
            Some(peak) if peak_readable => peak.saturating_sub(baseline).max(tensors),
            _ => tensors,
        };
        drop(model);
        let memory_bytes = model_bytes + QUEUED_BATCHES * batch_size as u64 * window_bytes;
        measurements.push(BatchMeasurement {
            batch_size,
            windows_per_second: MEASURED_WINDOWS as f64 / seconds,
            memory_bytes,
        });
        if memory_bytes > memory_budget_bytes {
            break;
        }
    }
    Ok(measurements)
}

/// What the cache file holds.
#[derive(Debug, Serialize, Deserialize)]
struct CachedMeasurements {
    model: String,
    version: String,
    intra_op_threads: usize,
    measurements: Vec<BatchMeasurement>,
}

/// The cache file of a model version (named by a hash, never by the model's name).
fn cache_path(directory: &Path, info: &ModelInfo) -> PathBuf {
    let key = format!("{}\0{}", info.name, info.version);
    directory.join(format!("{}.json", &sha256_hex(key.as_bytes())[..32]))
}

/// The cached measurements of this model version, if any (an unreadable file counts as none);
/// with `Some(threads)`, only if they were measured on that many intra-op threads.
pub fn cached_measurements(
    directory: &Path,
    info: &ModelInfo,
    intra_op_threads: Option<usize>,
) -> Option<Vec<BatchMeasurement>> {
    let text = std::fs::read(cache_path(directory, info)).ok()?;
    let cached: CachedMeasurements = serde_json::from_slice(&text).ok()?;
    let same_threads = intra_op_threads.is_none_or(|threads| threads == cached.intra_op_threads);
    (cached.model == info.name && cached.version == info.version && same_threads).then_some(cached.measurements)
}

/// Stores measurements for the next start; failing to is only a warning (they are measured again).
pub fn cache_measurements(
    directory: &Path,
    info: &ModelInfo,
    intra_op_threads: usize,
    measurements: &[BatchMeasurement],
) {
    let cached = CachedMeasurements {
        model: info.name.clone(),
        version: info.version.clone(),
        intra_op_threads,
        measurements: measurements.to_vec(),
    };
    let stored = std::fs::create_dir_all(directory)
        .map_err(|error| error.to_string())
        .and_then(|()| serde_json::to_vec_pretty(&cached).map_err(|error| error.to_string()))
        .and_then(|bytes| write_atomically(&cache_path(directory, info), &bytes).map_err(|error| error.to_string()));
    if let Err(error) = stored {
        tracing::warn!(model = %info.name, error = %error, "cannot cache the batch-size measurements");
    }
}
