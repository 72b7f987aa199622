//! What humpback knows about a model before running it: [`ModelInfo`] and its parts.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::events::{ModelInputKind, ModelRegistered};
use crate::domain::ids::Sha256Hex;

/// Everything the rest of humpback needs to know about an embedding model. Serializable for the
/// API/UI; convertible into the `ModelRegistered` event with [`ModelInfo::to_registered_event`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Unique within the registry: the file stem for `.tflite` files, or a built-in name.
    pub name: String,
    /// Always contains the first 12 hex digits of the model file's SHA-256 for file models, so that
    /// replacing the file changes every encoding signature that uses it.
    pub version: String,
    /// SHA-256 of the model file; `None` for built-in models.
    pub file_sha256: Option<Sha256Hex>,
    /// The file name below the models directory, or `builtin`.
    pub source: String,
    pub input_kind: ModelInputKind,
    /// Sample rate the audio front end must resample to.
    pub sample_rate: u32,
    /// Length of one input window in seconds.
    pub window_seconds: f64,
    /// Shape of one window (without the batch dimension).
    pub input_shape: WindowShape,
    /// Length of one embedding vector.
    pub embedding_dim: u32,
    /// Which output tensor is the embedding, and why.
    pub embedding_output: EmbeddingOutputChoice,
    /// What the model's batch dimension allows.
    pub batch_support: BatchSupport,
    /// Log-mel parameters from the sidecar (`[log_mel]` table), passed through unchanged to the audio
    /// front end, which owns their meaning. `None` when the sidecar has none.
    pub log_mel: Option<serde_json::Value>,
    /// What kind of file (or built-in code) the model is.
    #[serde(default)]
    pub format: ModelFormat,
    /// Where each fact above came from.
    #[serde(default)]
    pub facts: FactSources,
    /// What a person should know before using the model (e.g. an assumed sample rate).
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl ModelInfo {
    /// Number of `f32` values in one input window.
    pub fn window_value_count(&self) -> usize {
        self.input_shape.value_count()
    }

    /// The payload of the `ModelRegistered` event for this model.
    pub fn to_registered_event(&self) -> ModelRegistered {
        ModelRegistered {
            name: self.name.clone(),
            version: self.version.clone(),
            file_sha256: self.file_sha256.clone(),
            source: self.source.clone(),
            input_kind: self.input_kind,
            sample_rate: self.sample_rate,
            window_seconds: self.window_seconds,
            embedding_dim: self.embedding_dim,
            embedding_output: self.embedding_output.event_text(),
        }
    }
}

impl From<&ModelInfo> for ModelRegistered {
    fn from(info: &ModelInfo) -> Self {
        info.to_registered_event()
    }
}

/// The kind of model file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelFormat {
    /// Implemented in humpback itself.
    #[default]
    Builtin,
    Tflite,
    Onnx,
}

impl ModelFormat {
    pub fn label(self) -> &'static str {
        match self {
            ModelFormat::Builtin => "built-in",
            ModelFormat::Tflite => "tflite",
            ModelFormat::Onnx => "onnx",
        }
    }
}

/// Where a fact about a model came from, most trusted first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactSource {
    /// Built into humpback (the built-in and fake models).
    #[default]
    BuiltIn,
    /// The sidecar `NAME.toml` (also written by `models add --sample-rate/--output`); overrides the file.
    Sidecar,
    /// The file declares it: TFLite Metadata (audio properties) or ONNX `metadata_props`.
    Declared,
    /// Worked out from the input and output shapes (and the other facts).
    InferredFromShapes,
    /// Nothing says it, so humpback assumes a default; may be wrong.
    Assumed,
}

impl FactSource {
    pub fn label(self) -> &'static str {
        match self {
            FactSource::BuiltIn => "built in",
            FactSource::Sidecar => "sidecar",
            FactSource::Declared => "declared by the file",
            FactSource::InferredFromShapes => "inferred from shapes",
            FactSource::Assumed => "assumed",
        }
    }
}

/// Where each fact of a [`ModelInfo`] came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactSources {
    pub input_kind: FactSource,
    pub sample_rate: FactSource,
    pub window_seconds: FactSource,
    pub embedding_output: FactSource,
}

/// What a model file says about itself (TFLite Metadata, ONNX `metadata_props`); all optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeclaredFacts {
    pub sample_rate: Option<u32>,
    pub window_seconds: Option<f64>,
    pub embedding_output: Option<String>,
    pub channels: Option<u32>,
}

/// The warnings a model's facts call for. Pure.
pub fn warnings_for(info: &ModelInfo) -> Vec<String> {
    let mut warnings = Vec::new();
    if info.facts.sample_rate == FactSource::Assumed {
        warnings.push(format!(
            "sample rate {} Hz is assumed: {} declares none, so audio is resampled to a rate that may be wrong and \
             the embeddings meaningless; give the rate in {}.toml (sample_rate = ...) or add the model again with \
             --sample-rate",
            info.sample_rate, info.source, info.name
        ));
    }
    if info.facts.window_seconds == FactSource::Assumed {
        warnings.push(format!(
            "window length {} s is assumed: set window_seconds in {}.toml if the model was trained on other windows",
            info.window_seconds, info.name
        ));
    }
    if info.embedding_output.reason == OutputChoiceReason::FirstOutputFallback {
        warnings.push(format!(
            "no output is named like an embedding, so output 0 ({:?}) is used; set output_name in {}.toml",
            info.embedding_output.name, info.name
        ));
    }
    warnings
}

/// Shape of one input window, without the batch dimension. Values are laid out row-major
/// (for spectrograms: frame after frame, `bins` values each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "layout")]
pub enum WindowShape {
    Samples { samples: usize },
    Frames { frames: usize, bins: usize, channels: usize },
}

impl WindowShape {
    pub fn value_count(&self) -> usize {
        match *self {
            WindowShape::Samples { samples } => samples,
            WindowShape::Frames { frames, bins, channels } => frames * bins * channels,
        }
    }
}

impl fmt::Display for WindowShape {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WindowShape::Samples { samples } => write!(formatter, "{samples} samples"),
            WindowShape::Frames { frames, bins, channels: 1 } => write!(formatter, "{frames} frames x {bins} bins"),
            WindowShape::Frames { frames, bins, channels } => {
                write!(formatter, "{frames} frames x {bins} bins x {channels} channels")
            }
        }
    }
}

/// What the first (batch) dimension of the model's input allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "size")]
pub enum BatchSupport {
    /// The batch dimension is dynamic (-1): the input is resized to the number of windows.
    Dynamic,
    /// The batch dimension is fixed: windows are run this many at a time, the last batch padded
    /// with zeros (1 means one window at a time).
    Fixed(usize),
}

impl fmt::Display for BatchSupport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchSupport::Dynamic => write!(formatter, "dynamic"),
            BatchSupport::Fixed(size) => write!(formatter, "fixed {size}"),
        }
    }
}

/// The output tensor used as the embedding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingOutputChoice {
    /// Position among the model's (signature) outputs.
    pub index: usize,
    /// The output's signature name, or its tensor name when the model has no signature.
    pub name: String,
    pub reason: OutputChoiceReason,
}

impl EmbeddingOutputChoice {
    /// The text stored in the `ModelRegistered` event, e.g. `embedding[0]`.
    pub fn event_text(&self) -> String {
        format!("{}[{}]", self.name, self.index)
    }
}

impl fmt::Display for EmbeddingOutputChoice {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "output {} {:?} ({})", self.index, self.name, self.reason)
    }
}

/// Why an output was chosen as the embedding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputChoiceReason {
    /// The sidecar or configuration named it (`output_name`).
    ConfiguredName,
    /// The sidecar or configuration gave its index (`output_index`).
    ConfiguredIndex,
    /// The model has a single output.
    OnlyOutput,
    /// Its name equals the default embedding output name.
    DefaultName,
    /// It is the only output whose name contains the default embedding output name.
    NameContainsDefault,
    /// Nothing matched, so the first output is used.
    FirstOutputFallback,
    /// A model implemented in humpback itself.
    BuiltIn,
    /// The file names it (ONNX `metadata_props` key `embedding_output`).
    DeclaredName,
}

impl fmt::Display for OutputChoiceReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            OutputChoiceReason::ConfiguredName => "named in the sidecar",
            OutputChoiceReason::ConfiguredIndex => "index given in the sidecar",
            OutputChoiceReason::OnlyOutput => "the model's only output",
            OutputChoiceReason::DefaultName => "named like the default embedding output",
            OutputChoiceReason::NameContainsDefault => "the only output whose name contains the default name",
            OutputChoiceReason::FirstOutputFallback => {
                "no output is named like an embedding, so the first output is used; set output_name in the sidecar"
            }
            OutputChoiceReason::BuiltIn => "built into humpback",
            OutputChoiceReason::DeclaredName => "named by the file's metadata",
        };
        formatter.write_str(text)
    }
}

/// A model output as described by the file (signature name when present, else tensor name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputDescription {
    pub name: String,
    pub tensor_name: String,
    /// Shape with -1 for dynamic dimensions.
    pub shape: Vec<i32>,
}

/// How to pick the embedding output; from the sidecar, else from the registry's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutputPreference {
    pub name: Option<String>,
    pub index: Option<usize>,
}

/// The default name looked for among a model's outputs (Perch models call it `embedding`).
pub const DEFAULT_EMBEDDING_OUTPUT_NAME: &str = "embedding";

/// Picks the embedding output. Pure; the rules, in order:
/// 1. a configured name must match an output's signature or tensor name exactly;
/// 2. a configured index must be in range;
/// 3. a single output is the embedding;
/// 4. an output named exactly `default_name`;
/// 5. the only output whose name contains `default_name` (case-insensitive);
/// 6. otherwise output 0, and the reason says so.
pub fn choose_embedding_output(
    model: &str,
    outputs: &[OutputDescription],
    preference: &OutputPreference,
    default_name: &str,
) -> Result<EmbeddingOutputChoice, crate::model::ModelError> {
    use crate::model::ModelError;
    let choice = |index: usize, reason| EmbeddingOutputChoice { index, name: outputs[index].name.clone(), reason };
    if outputs.is_empty() {
        return Err(ModelError::UnexpectedTensor {
            model: model.to_string(),
            reason: "the model has no outputs".into(),
        });
    }
    if let Some(wanted) = &preference.name {
        return outputs
            .iter()
            .position(|output| &output.name == wanted || &output.tensor_name == wanted)
            .map(|index| choice(index, OutputChoiceReason::ConfiguredName))
            .ok_or_else(|| ModelError::OutputNameNotFound {
                model: model.to_string(),
                wanted: wanted.clone(),
                available: outputs.iter().map(|output| output.name.as_str()).collect::<Vec<_>>().join(", "),
            });
    }
    if let Some(index) = preference.index {
        if index >= outputs.len() {
            return Err(ModelError::OutputIndexOutOfRange { model: model.to_string(), index, count: outputs.len() });
        }
        return Ok(choice(index, OutputChoiceReason::ConfiguredIndex));
    }
    if outputs.len() == 1 {
        return Ok(choice(0, OutputChoiceReason::OnlyOutput));
    }
    if let Some(index) = outputs.iter().position(|output| output.name == default_name) {
        return Ok(choice(index, OutputChoiceReason::DefaultName));
    }
    let lowercase_default = default_name.to_lowercase();
    let containing: Vec<usize> = outputs
        .iter()
        .enumerate()
        .filter(|(_, output)| output.name.to_lowercase().contains(&lowercase_default))
        .map(|(index, _)| index)
        .collect();
    if let [only] = containing[..] {
        return Ok(choice(only, OutputChoiceReason::NameContainsDefault));
    }
    Ok(choice(0, OutputChoiceReason::FirstOutputFallback))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(names: &[&str]) -> Vec<OutputDescription> {
        names
            .iter()
            .enumerate()
            .map(|(index, name)| OutputDescription {
                name: name.to_string(),
                tensor_name: format!("StatefulPartitionedCall:{index}"),
                shape: vec![-1, 8],
            })
            .collect()
    }

    fn choose(names: &[&str], preference: OutputPreference) -> Result<EmbeddingOutputChoice, String> {
        choose_embedding_output("m", &outputs(names), &preference, DEFAULT_EMBEDDING_OUTPUT_NAME)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn the_output_named_embedding_wins_over_earlier_outputs() {
        let chosen = choose(&["label", "embedding", "spatial_embedding"], OutputPreference::default()).unwrap();
        assert_eq!((chosen.index, chosen.reason), (1, OutputChoiceReason::DefaultName));
    }

    #[test]
    fn a_configured_name_matches_signature_or_tensor_names() {
        let by_signature =
            choose(&["embedding", "logits"], OutputPreference { name: Some("logits".into()), index: None }).unwrap();
        assert_eq!((by_signature.index, by_signature.reason), (1, OutputChoiceReason::ConfiguredName));
        let by_tensor = choose(
            &["embedding", "logits"],
            OutputPreference { name: Some("StatefulPartitionedCall:1".into()), index: None },
        )
        .unwrap();
        assert_eq!(by_tensor.index, 1);
    }

    #[test]
    fn a_configured_name_that_does_not_exist_lists_the_outputs() {
        let error =
            choose(&["embedding", "logits"], OutputPreference { name: Some("emb".into()), index: None }).unwrap_err();
        assert!(error.contains("embedding, logits"), "{error}");
    }

    #[test]
    fn a_configured_index_is_used_and_checked() {
        let chosen = choose(&["embedding", "logits"], OutputPreference { name: None, index: Some(1) }).unwrap();
        assert_eq!((chosen.index, chosen.reason), (1, OutputChoiceReason::ConfiguredIndex));
        assert!(choose(&["embedding"], OutputPreference { name: None, index: Some(3) }).is_err());
    }

    #[test]
    fn a_unique_name_containing_embedding_is_found_and_otherwise_the_first_output_is_a_declared_fallback() {
        let chosen = choose(&["logits", "frame_embedding"], OutputPreference::default()).unwrap();
        assert_eq!((chosen.index, chosen.reason), (1, OutputChoiceReason::NameContainsDefault));
        let fallback = choose(&["logits", "scores"], OutputPreference::default()).unwrap();
        assert_eq!((fallback.index, fallback.reason), (0, OutputChoiceReason::FirstOutputFallback));
        let ambiguous = choose(&["a_embedding", "b_embedding"], OutputPreference::default()).unwrap();
        assert_eq!(ambiguous.reason, OutputChoiceReason::FirstOutputFallback);
    }
}
