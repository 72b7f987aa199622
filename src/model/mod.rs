//! Embedding models: turn windows of audio (or of log-mel spectrogram) into embedding vectors.
//!
//! - [`EmbeddingModel`]: the trait every model implements;
//! - [`TfliteEmbeddingModel`]: a `.tflite` file run by LiteRT 2.1.4 (CPU, single thread), in batches;
//! - [`OnnxEmbeddingModel`]: an `.onnx` file run by ONNX Runtime 1.22.1 (CPU, intra-op threads as configured), in batches;
//! - [`BuiltinLogMelStatsModel`] (`builtin-logmel-stats`): the default, needs no download, a baseline;
//! - [`FakeModel`] (`fake`): deterministic, for tests, only when the configuration enables it;
//! - [`ModelRegistry`]: discovers models in the models directory, reports unusable files, and
//!   chooses each one's batch size ([`choose_batch_size`], from timings by `batch_measure`);
//! - [`inspect_tflite_file`]: inputs, outputs and operators of a file, and whether it can run here.
//!
//! Every model records where each fact came from ([`FactSource`]: sidecar, declared by the file,
//! inferred from shapes, assumed); an assumed sample rate is a warning shown wherever the model is.
//!
//! Functional core: describing a model ([`describe_model_file`]), choosing its embedding output,
//! planning batches, parsing the flatbuffer, the fake and built-in computations are pure.
//! Imperative shell: reading files ([`ModelRegistry::discover`]) and the LiteRT calls
//! (`litert_runtime`, the only `unsafe` code).

mod batch_choice;
mod batch_measure;
mod batching;
mod builtin;
mod describe;
mod error;
mod fake;
mod flatbuffer;
mod info;
mod inspect;
mod litert_runtime;
mod onnx_model;
mod operator_names;
mod registry;
mod sidecar;
mod tflite_model;

pub use batch_choice::{
    choose_batch_size, parse_memory_size, BatchChoice, BatchMeasurement, BatchSizeSource, CANDIDATE_BATCH_SIZES,
    DEFAULT_MODEL_MEMORY_BYTES,
};
pub use batch_measure::{measure_batch_sizes, MEASURED_WINDOWS};
pub use batching::{plan_batches, BatchRun, DEFAULT_BATCH_SIZE};
pub use builtin::{log_mel_band_statistics, BuiltinLogMelStatsModel, BUILTIN_MODEL_NAME};
pub use describe::{describe_model_file, ModelFileShapes, DEFAULT_SAMPLE_RATE, DEFAULT_SPECTROGRAM_WINDOW_SECONDS};
pub use error::ModelError;
pub use fake::{fake_embedding, FakeModel, FakeModelConfig, FAKE_MODEL_NAME};
pub use info::{
    choose_embedding_output, warnings_for, BatchSupport, DeclaredFacts, EmbeddingOutputChoice, FactSource, FactSources,
    ModelFormat, ModelInfo, OutputChoiceReason, OutputDescription, OutputPreference, WindowShape,
    DEFAULT_EMBEDDING_OUTPUT_NAME,
};
pub use inspect::{
    inspect_tflite_bytes, inspect_tflite_file, ModelInspection, OperatorSupport, OperatorUsage, TensorSummary,
};
pub use onnx_model::{
    describe_onnx_model, inspect_onnx_bytes, inspect_onnx_file, OnnxEmbeddingModel, OnnxInspection,
    ONNX_RUNTIME_VERSION,
};
pub use registry::{
    check_model_name, ListedModel, ModelImplementation, ModelListing, ModelProblem, ModelRegistry, ModelUpload,
    RegisteredModel, RegistryConfig, MAXIMUM_MODEL_NAME_LENGTH,
};
pub use sidecar::ModelSidecar;
pub use tflite_model::{describe_tflite_model, sha256_hex, RunOptions, TfliteEmbeddingModel};

/// A model that turns windows into embeddings. `Send` so a worker thread can own it; not `Sync`:
/// one model instance runs one batch at a time (`&mut self`).
pub trait EmbeddingModel: Send {
    fn info(&self) -> &ModelInfo;

    /// Embeds any number of windows. Each window holds exactly `info().window_value_count()` values
    /// (samples, or frames x bins frame after frame). Returns one vector of `info().embedding_dim`
    /// values per window, in order. Implementations split the windows into runs of the configured
    /// batch size as the model allows; the result never depends on how windows were grouped.
    fn embed_batch(&mut self, windows: &[&[f32]]) -> Result<Vec<Vec<f32>>, ModelError>;
}

#[cfg(test)]
mod tests;
