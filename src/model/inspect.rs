//! `models inspect`: inputs, outputs and operators of a `.tflite` file, read from the flatbuffer
//! without running it, and whether the LiteRT runtime linked into humpback can run it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::model::flatbuffer::{parse_tflite_flatbuffer, TensorDescription, TfliteFlatbuffer};
use crate::model::operator_names::{BUILTIN_OPERATOR_NAMES, CUSTOM_OPERATOR_CODE, DELEGATE_OPERATOR_CODE};
use crate::model::ModelError;

/// What a `.tflite` file contains.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInspection {
    pub file: String,
    pub schema_version: u32,
    /// The signature used (`serving_default` for converted Keras/TF models), if the file has one.
    pub signature_key: Option<String>,
    pub inputs: Vec<TensorSummary>,
    pub outputs: Vec<TensorSummary>,
    /// Every operator kind used, with how often it occurs (all subgraphs), sorted by name.
    pub operators: Vec<OperatorUsage>,
    pub subgraph_count: usize,
    /// The input's sample rate declared by the file's TFLite Metadata (audio properties), if any.
    pub declared_sample_rate: Option<u32>,
    /// The input's channel count declared by the file's TFLite Metadata, if any.
    pub declared_channels: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorSummary {
    /// Signature name when the file has a signature, else the tensor name.
    pub name: String,
    pub tensor_name: String,
    /// -1 marks a dynamic dimension.
    pub shape: Vec<i32>,
    pub element_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperatorUsage {
    pub name: String,
    pub count: usize,
    pub support: OperatorSupport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorSupport {
    /// A TFLite builtin operator; LiteRT has a kernel for it.
    Builtin,
    /// A TensorFlow "select" operator (`Flex...`): needs the Flex delegate, which humpback does not ship.
    Flex,
    /// A custom operator: needs a kernel registered by the application; humpback registers none.
    Custom,
    /// A delegate placeholder: the model was compiled for a specific accelerator.
    Delegate,
    /// A builtin code newer than LiteRT 2.1.4's schema.
    UnknownBuiltin,
}

impl OperatorSupport {
    pub fn runs_here(self) -> bool {
        self == OperatorSupport::Builtin
    }
}

impl ModelInspection {
    /// Operators the LiteRT runtime in humpback cannot run.
    pub fn unsupported_operators(&self) -> Vec<&OperatorUsage> {
        self.operators.iter().filter(|operator| !operator.support.runs_here()).collect()
    }

    /// Why this model cannot run here, in words a person can act on; `None` when it can.
    pub fn why_it_cannot_run(&self) -> Option<String> {
        let names_of = |support: OperatorSupport| -> Vec<&str> {
            self.operators.iter().filter(|o| o.support == support).map(|o| o.name.as_str()).collect()
        };
        let mut reasons = Vec::new();
        let flex = names_of(OperatorSupport::Flex);
        if !flex.is_empty() {
            reasons.push(format!(
                "it needs TensorFlow select (Flex) ops {}, which need the TensorFlow Flex delegate that humpback's \
                 LiteRT runtime does not include; convert the model with only TFLite builtin ops (no SELECT_TF_OPS), \
                 or convert the TensorFlow model to ONNX (scripts/convert-savedmodel, which uses tf2onnx) and use \
                 the .onnx file",
                flex.join(", ")
            ));
        }
        let custom = names_of(OperatorSupport::Custom);
        if !custom.is_empty() {
            reasons.push(format!(
                "it needs custom ops {}, for which humpback registers no kernels; convert the model without custom ops \
                 (or to ONNX with scripts/convert-savedmodel)",
                custom.join(", ")
            ));
        }
        let delegate = names_of(OperatorSupport::Delegate);
        if !delegate.is_empty() {
            reasons.push("it was compiled for a hardware delegate; use the plain (CPU) .tflite file".to_string());
        }
        let unknown = names_of(OperatorSupport::UnknownBuiltin);
        if !unknown.is_empty() {
            reasons.push(format!(
                "it uses builtin op codes {} that are newer than LiteRT 2.1.4; convert it with an older converter",
                unknown.join(", ")
            ));
        }
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

    /// The report printed by `humpback models inspect FILE`.
    pub fn render_text(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "file: {}", self.file);
        let _ = writeln!(text, "schema version: {}, subgraphs: {}", self.schema_version, self.subgraph_count);
        let _ = writeln!(text, "signature: {}", self.signature_key.as_deref().unwrap_or("(none)"));
        match (self.declared_sample_rate, self.declared_channels) {
            (None, None) => {
                let _ = writeln!(text, "tflite metadata: no audio properties (the sample rate will be assumed)");
            }
            (rate, channels) => {
                let show = |value: Option<u32>| value.map_or_else(|| "(not given)".to_string(), |v| v.to_string());
                let _ = writeln!(text, "tflite metadata: sample rate {} Hz, {} channel(s)", show(rate), show(channels));
            }
        }
        for (title, tensors) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            let _ = writeln!(text, "{title}:");
            for (index, tensor) in tensors.iter().enumerate() {
                let _ = writeln!(
                    text,
                    "  {index}: {} {:?} {} (tensor {})",
                    tensor.name, tensor.shape, tensor.element_type, tensor.tensor_name
                );
            }
        }
        let _ = writeln!(text, "operators ({} kinds):", self.operators.len());
        for operator in &self.operators {
            let note = match operator.support {
                OperatorSupport::Builtin => "",
                OperatorSupport::Flex => "  <- tensorflow select (flex) op: cannot run here",
                OperatorSupport::Custom => "  <- custom op: cannot run here",
                OperatorSupport::Delegate => "  <- delegate op: cannot run here",
                OperatorSupport::UnknownBuiltin => "  <- unknown to litert 2.1.4",
            };
            let _ = writeln!(text, "  {} x{}{note}", operator.name, operator.count);
        }
        match self.why_it_cannot_run() {
            None => {
                let _ = writeln!(text, "runs here: yes (all ops are litert builtins)");
            }
            Some(reason) => {
                let _ = writeln!(text, "runs here: no: {reason}");
            }
        }
        text
    }
}

/// Reads and inspects a model file.
pub fn inspect_tflite_file(path: &Path) -> Result<ModelInspection, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
    inspect_tflite_bytes(&path.display().to_string(), &bytes)
}

/// Inspects the bytes of a model; `file` is only used in messages.
pub fn inspect_tflite_bytes(file: &str, bytes: &[u8]) -> Result<ModelInspection, ModelError> {
    let model =
        parse_tflite_flatbuffer(bytes).map_err(|reason| ModelError::NotTflite { file: file.to_string(), reason })?;
    describe(file, &model).map_err(|reason| ModelError::NotTflite { file: file.to_string(), reason })
}

fn describe(file: &str, model: &TfliteFlatbuffer) -> Result<ModelInspection, String> {
    let signature = model.signatures.first();
    let subgraph_index = signature.map_or(0, |signature| signature.subgraph_index as usize);
    let subgraph = model
        .subgraphs
        .get(subgraph_index)
        .ok_or_else(|| format!("signature refers to subgraph {subgraph_index}, which does not exist"))?;
    let summary = |name: &str, tensor: &TensorDescription| TensorSummary {
        name: name.to_string(),
        tensor_name: tensor.name.clone(),
        shape: tensor.shape_with_dynamic_dimensions(),
        element_type: tensor.element_type_name().to_string(),
    };
    let tensor_at =
        |index: usize| subgraph.tensors.get(index).ok_or_else(|| format!("tensor index {index} is out of range"));
    let (inputs, outputs) = match signature {
        Some(signature) => {
            let map = |tensors: &[crate::model::flatbuffer::SignatureTensor]| {
                tensors
                    .iter()
                    .map(|entry| tensor_at(entry.tensor_index as usize).map(|tensor| summary(&entry.name, tensor)))
                    .collect::<Result<Vec<_>, String>>()
            };
            (map(&signature.inputs)?, map(&signature.outputs)?)
        }
        None => {
            let map = |indices: &[i32]| {
                indices
                    .iter()
                    .map(|&index| {
                        let tensor = tensor_at(usize::try_from(index).map_err(|_| "negative tensor index")?)?;
                        Ok(summary(&tensor.name, tensor))
                    })
                    .collect::<Result<Vec<_>, String>>()
            };
            (map(&subgraph.inputs)?, map(&subgraph.outputs)?)
        }
    };
    let mut operators: BTreeMap<String, OperatorUsage> = BTreeMap::new();
    for operator_code_index in model.subgraphs.iter().flat_map(|subgraph| &subgraph.operator_code_indices) {
        let code = model
            .operator_codes
            .get(*operator_code_index as usize)
            .ok_or_else(|| format!("operator refers to operator code {operator_code_index}, which does not exist"))?;
        let (name, support) = classify_operator(code.builtin_code, code.custom_code.as_deref());
        operators.entry(name.clone()).or_insert(OperatorUsage { name, count: 0, support }).count += 1;
    }
    Ok(ModelInspection {
        file: file.to_string(),
        schema_version: model.schema_version,
        signature_key: signature.and_then(|signature| signature.key.clone()),
        inputs,
        outputs,
        operators: operators.into_values().collect(),
        subgraph_count: model.subgraphs.len(),
        declared_sample_rate: model.declared_audio.and_then(|audio| audio.sample_rate),
        declared_channels: model.declared_audio.and_then(|audio| audio.channels),
    })
}

fn classify_operator(builtin_code: i32, custom_code: Option<&str>) -> (String, OperatorSupport) {
    if builtin_code == CUSTOM_OPERATOR_CODE {
        let name = custom_code.unwrap_or("(unnamed custom op)").to_string();
        let support = if name.starts_with("Flex") { OperatorSupport::Flex } else { OperatorSupport::Custom };
        return (name, support);
    }
    if builtin_code == DELEGATE_OPERATOR_CODE {
        return ("DELEGATE".to_string(), OperatorSupport::Delegate);
    }
    match usize::try_from(builtin_code).ok().and_then(|code| BUILTIN_OPERATOR_NAMES.get(code)) {
        Some(name) => (name.to_string(), OperatorSupport::Builtin),
        None => (format!("BUILTIN_{builtin_code}"), OperatorSupport::UnknownBuiltin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_path(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models").join(name)
    }

    #[test]
    fn the_waveform_model_uses_the_stft_ops_and_runs_here() {
        let inspection = inspect_tflite_file(&fixture_path("waveform_stft.tflite")).unwrap();
        let names: Vec<&str> = inspection.operators.iter().map(|operator| operator.name.as_str()).collect();
        assert!(names.contains(&"RFFT2D") && names.contains(&"COMPLEX_ABS"), "{names:?}");
        assert_eq!(inspection.why_it_cannot_run(), None);
        assert_eq!(inspection.inputs[0].shape, [-1, 16000]);
        assert_eq!(inspection.outputs.len(), 3);
        assert!(inspection.render_text().contains("runs here: yes"));
    }

    #[test]
    fn a_model_with_a_flex_op_is_flagged_with_the_reason() {
        let inspection = inspect_tflite_file(&fixture_path("flex_select_op.tflite")).unwrap();
        let unsupported: Vec<&str> =
            inspection.unsupported_operators().iter().map(|operator| operator.name.as_str()).collect();
        assert_eq!(unsupported, ["FlexMatrixInverse"]);
        let reason = inspection.why_it_cannot_run().unwrap();
        assert!(reason.contains("Flex") && reason.contains("SELECT_TF_OPS"), "{reason}");
        assert!(inspection.render_text().contains("cannot run here"));
    }

    #[test]
    fn a_model_with_a_custom_op_is_flagged() {
        let mut bytes = std::fs::read(fixture_path("flex_select_op.tflite")).unwrap();
        // Rename the op in place (same length), turning the Flex op into an application custom op.
        let position = bytes.windows(17).position(|window| window == b"FlexMatrixInverse").unwrap();
        bytes[position..position + 17].copy_from_slice(b"WhaleMatrixInvert");
        let inspection = inspect_tflite_bytes("custom.tflite", &bytes).unwrap();
        assert_eq!(inspection.unsupported_operators()[0].support, OperatorSupport::Custom);
        assert!(inspection.why_it_cannot_run().unwrap().contains("WhaleMatrixInvert"));
    }

    #[test]
    fn a_non_tflite_file_is_a_clear_error() {
        let error = inspect_tflite_bytes("notes.tflite", b"this is a text file, not a model").unwrap_err();
        assert!(error.to_string().contains("notes.tflite is not a valid tflite model"), "{error}");
    }
}
