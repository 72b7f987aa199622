//! The one error type of the model layer.

use std::path::PathBuf;

/// Everything that can go wrong while finding, describing, loading or running an embedding model.
/// Messages are lowercase, name the file or tensor involved, and say what a person can do.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{file} is not a valid tflite model: {reason}")]
    NotTflite { file: String, reason: String },

    #[error("{file} cannot run here: {reason}")]
    UnsupportedModel { file: String, reason: String },

    #[error("sidecar {path} is invalid: {reason}")]
    InvalidSidecar { path: PathBuf, reason: String },

    #[error("model {model}: {reason}")]
    InvalidConfiguration { model: String, reason: String },

    #[error(
        "model {model}: no output named {wanted:?} (outputs: {available}); set output_name or output_index in the \
         sidecar"
    )]
    OutputNameNotFound { model: String, wanted: String, available: String },

    #[error("model {model}: output index {index} is out of range, the model has {count} outputs")]
    OutputIndexOutOfRange { model: String, index: usize, count: usize },

    #[error("model {model}: window {window} has {actual} values, the model expects {expected}")]
    WrongWindowLength { model: String, window: usize, actual: usize, expected: usize },

    #[error("{file} is not an onnx model onnx runtime can load: {reason}")]
    NotOnnx { file: String, reason: String },

    #[error("onnx runtime failed to {operation} for model {model}: {reason}")]
    OnnxRuntime { model: String, operation: &'static str, reason: String },

    #[error("litert runtime failed to {operation} for model {model}: status {status} ({meaning})")]
    Runtime { model: String, operation: &'static str, status: i32, meaning: &'static str },

    #[error("model {model}: {reason}")]
    UnexpectedTensor { model: String, reason: String },

    #[error("no model named {name:?}; available: {available}")]
    UnknownModel { name: String, available: String },

    #[error("{0}")]
    Refused(String),

    #[error("model file {path} changed since it was registered (sha256 {expected} -> {actual}); rescan the models directory")]
    ModelFileChanged { path: PathBuf, expected: String, actual: String },
}
