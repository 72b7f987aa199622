//! An `.onnx` file run by ONNX Runtime 1.22 (through the `ort` crate, linked against the
//! `libonnxruntime.so` build.rs fetches): what the file shows about itself (inputs, outputs, opset,
//! `metadata_props`), its [`ModelInfo`], and the runner that embeds windows in batches.
//!
//! ONNX Runtime logs through `tracing` (ort's `tracing` feature) at level warning and above; a
//! session runs on [`RunOptions::intra_op_threads`] threads (the worker's share of `--threads`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;

use ort::logging::LogLevel;
use ort::session::Session;
use ort::tensor::TensorElementType;
use ort::value::{TensorRef, ValueType};
use serde::Serialize;

use crate::model::batching::plan_batches;
use crate::model::describe::{describe_model_file, ModelFileShapes};
use crate::model::info::{DeclaredFacts, ModelFormat, ModelInfo, OutputDescription};
use crate::model::inspect::TensorSummary;
use crate::model::sidecar::ModelSidecar;
use crate::model::tflite_model::{check_window_lengths, sha256_hex, RunOptions};
use crate::model::{EmbeddingModel, ModelError};

/// `metadata_props` keys humpback reads as declared facts.
pub const METADATA_SAMPLE_RATE: &str = "sample_rate";
pub const METADATA_WINDOW_SECONDS: &str = "window_seconds";
pub const METADATA_EMBEDDING_OUTPUT: &str = "embedding_output";

/// What an `.onnx` file contains, as `models inspect` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OnnxInspection {
    pub file: String,
    /// The default-domain opset the graph imports.
    pub opset: Option<u32>,
    pub producer: Option<String>,
    pub inputs: Vec<TensorSummary>,
    pub outputs: Vec<TensorSummary>,
    /// The model's `metadata_props`, sorted by key.
    pub metadata_props: BTreeMap<String, String>,
}

impl OnnxInspection {
    /// Why this model cannot run here, in words a person can act on; `None` when it can.
    pub fn why_it_cannot_run(&self) -> Option<String> {
        let mut reasons = Vec::new();
        if self.inputs.len() != 1 {
            reasons.push(format!(
                "it has {} inputs; humpback runs models with exactly one audio or spectrogram input",
                self.inputs.len()
            ));
        }
        if let Some(input) = self.inputs.first() {
            if input.element_type != "float32" {
                reasons.push(format!("its input {:?} is {}, humpback feeds float32", input.name, input.element_type));
            }
        }
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// The facts the file declares in `metadata_props`; a value that does not parse is an error.
    pub fn declared_facts(&self, model: &str) -> Result<DeclaredFacts, ModelError> {
        let invalid = |key: &str, value: &str, what: &str| ModelError::InvalidConfiguration {
            model: model.to_string(),
            reason: format!("metadata_props {key} = {value:?} is not {what}"),
        };
        let mut declared = DeclaredFacts::default();
        if let Some(value) = self.metadata_props.get(METADATA_SAMPLE_RATE) {
            let rate = value.trim().parse::<u32>().ok().filter(|&rate| rate > 0);
            declared.sample_rate = Some(rate.ok_or_else(|| invalid(METADATA_SAMPLE_RATE, value, "a rate in Hz"))?);
        }
        if let Some(value) = self.metadata_props.get(METADATA_WINDOW_SECONDS) {
            let seconds = value.trim().parse::<f64>().ok().filter(|seconds| seconds.is_finite() && *seconds > 0.0);
            declared.window_seconds =
                Some(seconds.ok_or_else(|| invalid(METADATA_WINDOW_SECONDS, value, "a positive number of seconds"))?);
        }
        if let Some(value) = self.metadata_props.get(METADATA_EMBEDDING_OUTPUT) {
            declared.embedding_output = Some(value.trim().to_string());
        }
        Ok(declared)
    }

    /// The report printed by `humpback models inspect FILE.onnx`.
    pub fn render_text(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "file: {}", self.file);
        let opset = self.opset.map_or_else(|| "(unknown)".to_string(), |opset| opset.to_string());
        let _ =
            writeln!(text, "format: onnx, opset {opset}, producer {}", self.producer.as_deref().unwrap_or("(none)"));
        for (title, tensors) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            let _ = writeln!(text, "{title}:");
            for (index, tensor) in tensors.iter().enumerate() {
                let _ = writeln!(text, "  {index}: {} {:?} {}", tensor.name, tensor.shape, tensor.element_type);
            }
        }
        if self.metadata_props.is_empty() {
            let _ = writeln!(text, "metadata_props: (none; the sample rate will be assumed unless a sidecar gives it)");
        } else {
            let _ = writeln!(text, "metadata_props:");
            for (key, value) in &self.metadata_props {
                let _ = writeln!(text, "  {key} = {value:?}");
            }
        }
        match self.why_it_cannot_run() {
            None => {
                let _ = writeln!(text, "runs here: yes (onnx runtime {} loads it)", ONNX_RUNTIME_VERSION);
            }
            Some(reason) => {
                let _ = writeln!(text, "runs here: no: {reason}");
            }
        }
        text
    }
}

fn runtime_error(model: &str, operation: &'static str, error: ort::Error) -> ModelError {
    ModelError::OnnxRuntime { model: model.to_string(), operation, reason: error.to_string() }
}

/// The ONNX Runtime version build.rs links.
pub const ONNX_RUNTIME_VERSION: &str = "1.22.1";

/// Creates the process-wide ONNX Runtime environment once, logging through `tracing` at warning.
fn ensure_environment() {
    static INITIALISED: OnceLock<()> = OnceLock::new();
    INITIALISED.get_or_init(|| {
        match ort::init().with_name("humpback").with_telemetry(false).commit() {
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %error, "cannot configure the onnx runtime environment"),
        }
        if let Ok(environment) = ort::environment::get_environment() {
            environment.set_log_level(LogLevel::Warning);
        }
    });
}

/// A session whose runs use `intra_op_threads` threads (ONNX Runtime's intra-op pool, not
/// spinning while idle; operators run one after another, so no inter-op pool).
fn load_session(file: &str, bytes: &[u8], intra_op_threads: usize) -> Result<Session, ModelError> {
    ensure_environment();
    let not_onnx = |error: ort::Error| ModelError::NotOnnx { file: file.to_string(), reason: error.to_string() };
    Session::builder()
        .and_then(|builder| builder.with_intra_threads(intra_op_threads.max(1)))
        // Idle pool threads sleep instead of spinning: the cores are shared with the pipeline's
        // other stages and the other workers.
        .and_then(|builder| builder.with_intra_op_spinning(false))
        .and_then(|builder| builder.with_inter_threads(1))
        .and_then(|builder| builder.with_log_level(LogLevel::Warning))
        .and_then(|builder| builder.commit_from_memory(bytes))
        .map_err(not_onnx)
}

fn element_type_name(element_type: TensorElementType) -> String {
    match element_type {
        TensorElementType::Float32 => "float32".to_string(),
        TensorElementType::Float64 => "float64".to_string(),
        TensorElementType::Float16 => "float16".to_string(),
        TensorElementType::Int64 => "int64".to_string(),
        TensorElementType::Int32 => "int32".to_string(),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn summary(name: &str, value_type: &ValueType) -> TensorSummary {
    let (shape, element_type) = match value_type {
        ValueType::Tensor { ty, shape, .. } => (
            shape.iter().map(|&dimension| i32::try_from(dimension).unwrap_or(-1).max(-1)).collect(),
            element_type_name(*ty),
        ),
        other => (Vec::new(), format!("{other:?}").to_lowercase()),
    };
    TensorSummary { name: name.to_string(), tensor_name: name.to_string(), shape, element_type }
}

fn inspect_session(file: &str, session: &Session) -> Result<OnnxInspection, ModelError> {
    let not_onnx = |error: ort::Error| ModelError::NotOnnx { file: file.to_string(), reason: error.to_string() };
    let metadata = session.metadata().map_err(not_onnx)?;
    let mut metadata_props = BTreeMap::new();
    for key in metadata.custom_keys().map_err(not_onnx)? {
        if let Some(value) = metadata.custom(&key).map_err(not_onnx)? {
            metadata_props.insert(key, value);
        }
    }
    let producer = metadata.producer().ok().filter(|producer| !producer.is_empty());
    Ok(OnnxInspection {
        file: file.to_string(),
        opset: session.opset_for_domain("").ok(),
        producer,
        inputs: session.inputs.iter().map(|input| summary(&input.name, &input.input_type)).collect(),
        outputs: session.outputs.iter().map(|output| summary(&output.name, &output.output_type)).collect(),
        metadata_props,
    })
}

/// Loads the bytes of an `.onnx` file with ONNX Runtime and inspects it; `file` is only used in messages.
pub fn inspect_onnx_bytes(file: &str, bytes: &[u8]) -> Result<OnnxInspection, ModelError> {
    let session = load_session(file, bytes, 1)?;
    inspect_session(file, &session)
}

/// Reads and inspects an `.onnx` file.
pub fn inspect_onnx_file(path: &Path) -> Result<OnnxInspection, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
    inspect_onnx_bytes(&path.display().to_string(), &bytes)
}

/// Describes an ONNX model from its inspection, its `metadata_props` and an optional sidecar.
pub fn describe_onnx_inspection(
    name: &str,
    source: &str,
    file_sha256: &str,
    inspection: &OnnxInspection,
    sidecar: Option<&ModelSidecar>,
    default_output_name: &str,
) -> Result<ModelInfo, ModelError> {
    if let Some(reason) = inspection.why_it_cannot_run() {
        return Err(ModelError::UnsupportedModel { file: source.to_string(), reason });
    }
    let input = &inspection.inputs[0];
    let shapes = ModelFileShapes {
        format: ModelFormat::Onnx,
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
        declared: inspection.declared_facts(name)?,
    };
    describe_model_file(name, source, file_sha256, &shapes, sidecar, default_output_name)
}

/// Loads, inspects and describes an ONNX model's bytes.
pub fn describe_onnx_model(
    name: &str,
    source: &str,
    bytes: &[u8],
    sidecar: Option<&ModelSidecar>,
    default_output_name: &str,
) -> Result<(ModelInfo, OnnxInspection), ModelError> {
    let inspection = inspect_onnx_bytes(source, bytes)?;
    let info = describe_onnx_inspection(name, source, &sha256_hex(bytes), &inspection, sidecar, default_output_name)?;
    Ok((info, inspection))
}

/// An `.onnx` model run by ONNX Runtime on the CPU, on `options.intra_op_threads` threads.
pub struct OnnxEmbeddingModel {
    info: ModelInfo,
    session: Session,
    input_name: String,
    output_name: String,
    options: RunOptions,
}

impl OnnxEmbeddingModel {
    /// Loads `bytes` (already described by `info`, e.g. by the registry).
    pub fn from_bytes(info: ModelInfo, bytes: &[u8], options: RunOptions) -> Result<Self, ModelError> {
        let session = load_session(&info.source, bytes, options.intra_op_threads)?;
        let input = session.inputs.first().ok_or_else(|| ModelError::UnexpectedTensor {
            model: info.name.clone(),
            reason: "the model has no inputs".to_string(),
        })?;
        let input_name = input.name.clone();
        let output = session.outputs.get(info.embedding_output.index).ok_or(ModelError::OutputIndexOutOfRange {
            model: info.name.clone(),
            index: info.embedding_output.index,
            count: session.outputs.len(),
        })?;
        if !matches!(output.output_type, ValueType::Tensor { ty: TensorElementType::Float32, .. }) {
            return Err(ModelError::UnexpectedTensor {
                model: info.name.clone(),
                reason: format!("embedding output {:?} is not float32", output.name),
            });
        }
        let output_name = output.name.clone();
        Ok(OnnxEmbeddingModel { info, session, input_name, output_name, options })
    }

    /// Reads a model file and its sidecar (`NAME.toml` next to it), describes and loads it.
    pub fn open_file(path: &Path, options: RunOptions) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
        let sidecar = ModelSidecar::read_if_present(&path.with_extension("toml"))?;
        let name = path.file_stem().map_or_else(|| "model".to_string(), |stem| stem.to_string_lossy().into_owned());
        let source = path.file_name().map_or_else(|| name.clone(), |file| file.to_string_lossy().into_owned());
        let (info, _) = describe_onnx_model(
            &name,
            &source,
            &bytes,
            sidecar.as_ref(),
            crate::model::info::DEFAULT_EMBEDDING_OUTPUT_NAME,
        )?;
        Self::from_bytes(info, &bytes, options)
    }

    fn runtime_error(&self, operation: &'static str, error: ort::Error) -> ModelError {
        runtime_error(&self.info.name, operation, error)
    }
}

impl EmbeddingModel for OnnxEmbeddingModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn embed_batch(&mut self, windows: &[&[f32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        check_window_lengths(&self.info, windows)?;
        let window_values = self.info.window_value_count();
        let embedding_dim = self.info.embedding_dim as usize;
        // The input's own dimensions after the batch (all fixed: `describe_model_file` checked).
        let window_dimensions: Vec<usize> = self.session.inputs[0]
            .input_type
            .tensor_shape()
            .map(|shape| shape.iter().skip(1).map(|&dimension| usize::try_from(dimension).unwrap_or(1)).collect())
            .unwrap_or_else(|| vec![window_values]);
        let mut embeddings = Vec::with_capacity(windows.len());
        let mut batch_values: Vec<f32> = Vec::new();
        for run in plan_batches(windows.len(), self.options.batch_size, self.info.batch_support) {
            batch_values.clear();
            batch_values.resize(run.run_batch_size * window_values, 0.0);
            for (slot, window) in windows[run.first_window..run.first_window + run.window_count].iter().enumerate() {
                batch_values[slot * window_values..(slot + 1) * window_values].copy_from_slice(window);
            }
            let mut shape = vec![run.run_batch_size];
            shape.extend(&window_dimensions);
            let input = TensorRef::from_array_view((shape, batch_values.as_slice()))
                .map_err(|error| self.runtime_error("build the input tensor", error))?;
            let model_name = &self.info.name;
            let outputs = self
                .session
                .run(ort::inputs![self.input_name.as_str() => input])
                .map_err(|error| runtime_error(model_name, "run the model", error))?;
            let output = outputs.get(&self.output_name).ok_or_else(|| ModelError::UnexpectedTensor {
                model: model_name.clone(),
                reason: format!("the run produced no output {:?}", self.output_name),
            })?;
            let (_, values) = output
                .try_extract_tensor::<f32>()
                .map_err(|error| runtime_error(model_name, "read the embedding output", error))?;
            if values.len() != run.run_batch_size * embedding_dim {
                return Err(ModelError::UnexpectedTensor {
                    model: model_name.clone(),
                    reason: format!(
                        "embedding output has {} values for a batch of {}, expected {} per window",
                        values.len(),
                        run.run_batch_size,
                        embedding_dim
                    ),
                });
            }
            embeddings.extend(values.chunks_exact(embedding_dim).take(run.window_count).map(<[f32]>::to_vec));
        }
        Ok(embeddings)
    }
}
