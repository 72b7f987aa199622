//! A `.tflite` file run by LiteRT: how its [`ModelInfo`] is derived from the file (pure) and the
//! runner that embeds windows in batches.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::domain::events::ModelInputKind;
use crate::domain::ids::Sha256Hex;
use crate::model::batching::plan_batches;
use crate::model::info::{
    choose_embedding_output, BatchSupport, ModelInfo, OutputDescription, OutputPreference, WindowShape,
};
use crate::model::inspect::{inspect_tflite_bytes, ModelInspection};
use crate::model::litert_runtime::LiteRtSession;
use crate::model::sidecar::ModelSidecar;
use crate::model::{EmbeddingModel, ModelError};

/// Sample rate assumed when neither the sidecar nor the shapes say otherwise (Perch models use 32 kHz).
pub const DEFAULT_SAMPLE_RATE: u32 = 32_000;
/// Window length assumed for spectrogram models without a sidecar (Perch uses 5 s windows).
pub const DEFAULT_SPECTROGRAM_WINDOW_SECONDS: f64 = 5.0;

/// Lowercase hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Derives a model's description from its file contents and optional sidecar. Pure.
///
/// - `name`: the registry name (file stem); `source`: the file name below the models directory;
/// - input kind from the input rank: `[batch, samples]` is a waveform (window = samples / sample rate),
///   `[batch, frames, bins]` or `[batch, frames, bins, channels]` a spectrogram;
/// - batch support from the first dimension: -1 dynamic, else fixed;
/// - the embedding output and its dimension via [`choose_embedding_output`].
pub fn describe_tflite_model(
    name: &str,
    source: &str,
    bytes: &[u8],
    sidecar: Option<&ModelSidecar>,
    default_output_name: &str,
) -> Result<(ModelInfo, ModelInspection), ModelError> {
    let inspection = inspect_tflite_bytes(source, bytes)?;
    if let Some(reason) = inspection.why_it_cannot_run() {
        return Err(ModelError::UnsupportedModel { file: source.to_string(), reason });
    }
    let default_sidecar = ModelSidecar::default();
    let sidecar = sidecar.unwrap_or(&default_sidecar);
    let invalid = |reason: String| ModelError::InvalidConfiguration { model: name.to_string(), reason };
    let input = &inspection.inputs[0];
    let dimensions: Vec<usize> = input.shape.iter().skip(1).map(|&dimension| dimension.max(0) as usize).collect();
    if input.shape.iter().skip(1).any(|&dimension| dimension <= 0) {
        return Err(invalid(format!(
            "input {:?} has shape {:?}; only the first (batch) dimension may be dynamic",
            input.name, input.shape
        )));
    }
    let batch_support = match input.shape.first() {
        Some(&size) if size > 0 => BatchSupport::Fixed(size as usize),
        _ => BatchSupport::Dynamic,
    };
    let inferred_kind = match dimensions.len() {
        1 => ModelInputKind::Waveform,
        2 | 3 => ModelInputKind::Spectrogram,
        _ => {
            return Err(invalid(format!(
                "input {:?} has shape {:?}; expected [batch, samples] or [batch, frames, bins(, channels)]",
                input.name, input.shape
            )))
        }
    };
    let (input_kind, input_shape) = match (sidecar.input_kind.unwrap_or(inferred_kind), dimensions.as_slice()) {
        (ModelInputKind::Waveform, &[samples]) | (ModelInputKind::Waveform, &[samples, 1]) => {
            (ModelInputKind::Waveform, WindowShape::Samples { samples })
        }
        (ModelInputKind::Spectrogram, &[frames, bins]) => {
            (ModelInputKind::Spectrogram, WindowShape::Frames { frames, bins, channels: 1 })
        }
        (ModelInputKind::Spectrogram, &[frames, bins, channels]) => {
            (ModelInputKind::Spectrogram, WindowShape::Frames { frames, bins, channels })
        }
        (kind, _) => {
            return Err(invalid(format!(
                "the sidecar says input_kind = {kind:?}, but input {:?} has shape {:?}",
                input.name, input.shape
            )))
        }
    };
    let (sample_rate, window_seconds) = match input_shape {
        WindowShape::Samples { samples } => waveform_timing(samples, sidecar).map_err(invalid)?,
        WindowShape::Frames { .. } => (
            sidecar.sample_rate.unwrap_or(DEFAULT_SAMPLE_RATE),
            sidecar.window_seconds.unwrap_or(DEFAULT_SPECTROGRAM_WINDOW_SECONDS),
        ),
    };
    let outputs: Vec<OutputDescription> = inspection
        .outputs
        .iter()
        .map(|output| OutputDescription {
            name: output.name.clone(),
            tensor_name: output.tensor_name.clone(),
            shape: output.shape.clone(),
        })
        .collect();
    let preference = OutputPreference { name: sidecar.output_name.clone(), index: sidecar.output_index };
    let embedding_output = choose_embedding_output(name, &outputs, &preference, default_output_name)?;
    let output_shape = &outputs[embedding_output.index].shape;
    if output_shape.iter().skip(1).any(|&dimension| dimension <= 0) || output_shape.is_empty() {
        return Err(invalid(format!(
            "embedding output {:?} has shape {output_shape:?}; it must be [batch, dim] with a fixed dim",
            embedding_output.name
        )));
    }
    let embedding_dim: usize = output_shape.iter().skip(1).map(|&dimension| dimension as usize).product();
    let sha256 = sha256_hex(bytes);
    let mut version = match &sidecar.version {
        Some(version) => format!("{version}+sha256.{}", &sha256[..12]),
        None => format!("sha256.{}", &sha256[..12]),
    };
    if *sidecar != ModelSidecar::default() {
        // A sidecar changes what the model means (timing, output, log-mel parameters): editing it
        // must change the version too.
        version.push_str(&format!(".sidecar.{}", &sidecar.content_sha256()[..8]));
    }
    let info = ModelInfo {
        name: name.to_string(),
        version,
        file_sha256: Some(Sha256Hex(sha256)),
        source: source.to_string(),
        input_kind,
        sample_rate,
        window_seconds,
        input_shape,
        embedding_dim: u32::try_from(embedding_dim).map_err(|_| invalid("embedding is too large".to_string()))?,
        embedding_output,
        batch_support,
        log_mel: sidecar.log_mel_as_json(),
    };
    Ok((info, inspection))
}

/// Sample rate and window length of a waveform model taking `samples` values per window.
fn waveform_timing(samples: usize, sidecar: &ModelSidecar) -> Result<(u32, f64), String> {
    match (sidecar.sample_rate, sidecar.window_seconds) {
        (Some(sample_rate), Some(seconds)) => {
            let implied = (seconds * f64::from(sample_rate)).round();
            if implied != samples as f64 {
                return Err(format!(
                    "the sidecar says {seconds} s at {sample_rate} Hz = {implied} samples, but the model takes {samples}"
                ));
            }
            Ok((sample_rate, seconds))
        }
        (None, Some(seconds)) => {
            let sample_rate = (samples as f64 / seconds).round();
            if sample_rate < 1.0 || sample_rate > f64::from(u32::MAX) {
                return Err(format!("window_seconds = {seconds} gives no usable sample rate for {samples} samples"));
            }
            Ok((sample_rate as u32, seconds))
        }
        (sample_rate, None) => {
            let sample_rate = sample_rate.unwrap_or(DEFAULT_SAMPLE_RATE);
            Ok((sample_rate, samples as f64 / f64::from(sample_rate)))
        }
    }
}

/// Run-time options of a LiteRT model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Windows per run when the batch dimension is dynamic (ignored for a fixed batch).
    pub batch_size: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { batch_size: crate::model::batching::DEFAULT_BATCH_SIZE }
    }
}

/// A `.tflite` model run by LiteRT on the CPU, single-threaded.
pub struct TfliteEmbeddingModel {
    info: ModelInfo,
    /// The model file, kept to compile one more session per batch size.
    model_bytes: Vec<u8>,
    /// One compiled LiteRT session per batch size used (at most two: the batch size and 1).
    sessions: Vec<(usize, LiteRtSession)>,
    runtime_output_index: usize,
    options: RunOptions,
}

impl TfliteEmbeddingModel {
    /// Loads `bytes` (already described by `info`, e.g. by the registry) and compiles it.
    pub fn from_bytes(info: ModelInfo, bytes: Vec<u8>, options: RunOptions) -> Result<Self, ModelError> {
        let session = LiteRtSession::new(&info.name, bytes.clone())?;
        if !session.input.is_float32 {
            return Err(ModelError::UnexpectedTensor {
                model: info.name.clone(),
                reason: format!("input {:?} is not float32", session.input.name),
            });
        }
        let wanted = &info.embedding_output;
        let runtime_output_index = session
            .outputs
            .iter()
            .position(|output| output.name == wanted.name || output.tensor_name == wanted.name)
            .or_else(|| (wanted.index < session.outputs.len()).then_some(wanted.index))
            .ok_or_else(|| ModelError::OutputIndexOutOfRange {
                model: info.name.clone(),
                index: wanted.index,
                count: session.outputs.len(),
            })?;
        if !session.outputs[runtime_output_index].is_float32 {
            return Err(ModelError::UnexpectedTensor {
                model: info.name.clone(),
                reason: format!("embedding output {:?} is not float32", wanted.name),
            });
        }
        Ok(TfliteEmbeddingModel {
            info,
            model_bytes: bytes,
            sessions: vec![(0, session)],
            runtime_output_index,
            options,
        })
    }

    /// The session prepared for `batch` windows; the first session (compiled by `from_bytes`, not
    /// yet prepared) is taken by the first batch size asked for.
    fn session_for(&mut self, batch: usize) -> Result<&mut LiteRtSession, ModelError> {
        let resize = self.info.batch_support == BatchSupport::Dynamic;
        let position = match self.sessions.iter().position(|(size, _)| *size == batch) {
            Some(position) => position,
            None => {
                if let Some(unprepared) = self.sessions.iter().position(|(size, _)| *size == 0) {
                    self.sessions[unprepared].0 = batch;
                    unprepared
                } else {
                    let session = LiteRtSession::new(&self.info.name, self.model_bytes.clone())?;
                    self.sessions.push((batch, session));
                    self.sessions.len() - 1
                }
            }
        };
        let session = &mut self.sessions[position].1;
        session.prepare(batch, resize)?;
        Ok(session)
    }

    /// Reads a model file and its sidecar (`NAME.toml` next to it), describes and loads it.
    pub fn open_file(path: &Path, options: RunOptions) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
        let sidecar = ModelSidecar::read_if_present(&path.with_extension("toml"))?;
        let name = path.file_stem().map_or_else(|| "model".to_string(), |stem| stem.to_string_lossy().into_owned());
        let source = path.file_name().map_or_else(|| name.clone(), |file| file.to_string_lossy().into_owned());
        let (info, _) = describe_tflite_model(
            &name,
            &source,
            &bytes,
            sidecar.as_ref(),
            crate::model::info::DEFAULT_EMBEDDING_OUTPUT_NAME,
        )?;
        Self::from_bytes(info, bytes, options)
    }
}

impl EmbeddingModel for TfliteEmbeddingModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn embed_batch(&mut self, windows: &[&[f32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        let window_values = self.info.window_value_count();
        check_window_lengths(&self.info, windows)?;
        let embedding_dim = self.info.embedding_dim as usize;
        let mut embeddings = Vec::with_capacity(windows.len());
        let mut batch_values: Vec<f32> = Vec::new();
        for run in plan_batches(windows.len(), self.options.batch_size, self.info.batch_support) {
            let runtime_output_index = self.runtime_output_index;
            let session = self.session_for(run.run_batch_size)?;
            batch_values.clear();
            batch_values.resize(session.prepared_input_value_count(), 0.0);
            if batch_values.len() != run.run_batch_size * window_values {
                return Err(ModelError::UnexpectedTensor {
                    model: self.info.name.clone(),
                    reason: format!(
                        "input holds {} values for a batch of {}, expected {} per window",
                        batch_values.len(),
                        run.run_batch_size,
                        window_values
                    ),
                });
            }
            for (slot, window) in windows[run.first_window..run.first_window + run.window_count].iter().enumerate() {
                batch_values[slot * window_values..(slot + 1) * window_values].copy_from_slice(window);
            }
            let output = session.run(&batch_values, runtime_output_index)?;
            if output.len() != run.run_batch_size * embedding_dim {
                return Err(ModelError::UnexpectedTensor {
                    model: self.info.name.clone(),
                    reason: format!(
                        "embedding output has {} values for a batch of {}, expected {} per window",
                        output.len(),
                        run.run_batch_size,
                        embedding_dim
                    ),
                });
            }
            embeddings.extend(output.chunks_exact(embedding_dim).take(run.window_count).map(<[f32]>::to_vec));
        }
        Ok(embeddings)
    }
}

/// Every window must have exactly the model's input length.
pub(crate) fn check_window_lengths(info: &ModelInfo, windows: &[&[f32]]) -> Result<(), ModelError> {
    let expected = info.window_value_count();
    match windows.iter().position(|window| window.len() != expected) {
        None => Ok(()),
        Some(window) => Err(ModelError::WrongWindowLength {
            model: info.name.clone(),
            window,
            actual: windows[window].len(),
            expected,
        }),
    }
}
