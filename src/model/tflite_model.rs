//! A `.tflite` file run by LiteRT: how its [`ModelInfo`] is derived from the file (pure) and the
//! runner that embeds windows in batches.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::model::batching::plan_batches;
use crate::model::describe::{describe_model_file, ModelFileShapes};
use crate::model::info::{BatchSupport, DeclaredFacts, ModelFormat, ModelInfo, OutputDescription};
use crate::model::inspect::{inspect_tflite_bytes, ModelInspection};
use crate::model::litert_runtime::LiteRtSession;
use crate::model::sidecar::ModelSidecar;
use crate::model::{EmbeddingModel, ModelError};

/// Lowercase hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Derives a model's description from its file contents and optional sidecar. Pure.
///
/// - `name`: the registry name (file stem); `source`: the file name below the models directory;
/// - the file's TFLite Metadata (audio properties: sample rate) counts as declared;
/// - the rest as [`describe_model_file`]: input kind and timing from the input shape, batch support
///   from the first dimension, the embedding output via [`crate::model::choose_embedding_output`].
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
    let input = &inspection.inputs[0];
    let shapes = ModelFileShapes {
        format: ModelFormat::Tflite,
        input_name: input.name.clone(),
        input_shape: input.shape.iter().map(|&dimension| i64::from(dimension)).collect(),
        outputs: inspection
            .outputs
            .iter()
            .map(|output| OutputDescription {
                name: output.name.clone(),
                tensor_name: output.tensor_name.clone(),
                shape: output.shape.clone(),
            })
            .collect(),
        declared: DeclaredFacts {
            sample_rate: inspection.declared_sample_rate,
            channels: inspection.declared_channels,
            ..DeclaredFacts::default()
        },
    };
    let info = describe_model_file(name, source, &sha256_hex(bytes), &shapes, sidecar, default_output_name)?;
    Ok((info, inspection))
}

/// Run-time options of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Windows per run when the batch dimension is dynamic (ignored for a fixed batch).
    pub batch_size: usize,
    /// Threads one run may use inside the runtime (ONNX Runtime's intra-op pool). LiteRT 2.1.4's
    /// C library does not export its CPU options, so a LiteRT run stays on one thread.
    pub intra_op_threads: usize,
}

impl RunOptions {
    /// `batch_size` windows per run, one thread per run.
    pub fn with_batch_size(batch_size: usize) -> RunOptions {
        RunOptions { batch_size, ..RunOptions::default() }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { batch_size: crate::model::batching::DEFAULT_BATCH_SIZE, intra_op_threads: 1 }
    }
}

/// A `.tflite` model run by LiteRT on the CPU, single-threaded.
pub struct TfliteEmbeddingModel {
    info: ModelInfo,
    /// The model file, kept to compile one more session per batch size.
    model_bytes: Vec<u8>,
    /// One compiled LiteRT session per batch size used (one: the last run is padded).
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

    /// How many LiteRT sessions this instance holds (one arena each).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
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
