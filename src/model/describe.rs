//! From what a model file shows (its input and output shapes, what it declares about itself) and
//! its optional sidecar to a [`ModelInfo`], recording where every fact came from. Pure; shared by
//! TFLite and ONNX files.
//!
//! Precedence, for each fact: the sidecar, then what the file declares, then what the shapes
//! imply, and only then an assumed default (which makes a warning).

use crate::domain::events::ModelInputKind;
use crate::domain::ids::Sha256Hex;
use crate::model::info::{
    choose_embedding_output, warnings_for, BatchSupport, DeclaredFacts, FactSource, FactSources, ModelFormat,
    ModelInfo, OutputChoiceReason, OutputDescription, OutputPreference, WindowShape,
};
use crate::model::sidecar::ModelSidecar;
use crate::model::ModelError;

/// Sample rate assumed when neither the sidecar, nor the file, nor the shapes say otherwise (Perch
/// models use 32 kHz).
pub const DEFAULT_SAMPLE_RATE: u32 = 32_000;
/// Window length assumed for spectrogram models without a sidecar (Perch uses 5 s windows).
pub const DEFAULT_SPECTROGRAM_WINDOW_SECONDS: f64 = 5.0;

/// What the file shows about itself, whatever its format.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFileShapes {
    pub format: ModelFormat,
    pub input_name: String,
    /// The input's shape, -1 for a dynamic dimension.
    pub input_shape: Vec<i64>,
    pub outputs: Vec<OutputDescription>,
    pub declared: DeclaredFacts,
}

/// Describes a model file. `file_sha256` is the hash of the file's bytes; `source` its file name.
pub fn describe_model_file(
    name: &str,
    source: &str,
    file_sha256: &str,
    shapes: &ModelFileShapes,
    sidecar: Option<&ModelSidecar>,
    default_output_name: &str,
) -> Result<ModelInfo, ModelError> {
    let default_sidecar = ModelSidecar::default();
    let sidecar = sidecar.unwrap_or(&default_sidecar);
    let declared = &shapes.declared;
    let invalid = |reason: String| ModelError::InvalidConfiguration { model: name.to_string(), reason };
    let input_shape = &shapes.input_shape;
    if input_shape.iter().skip(1).any(|&dimension| dimension <= 0) {
        return Err(invalid(format!(
            "input {:?} has shape {input_shape:?}; only the first (batch) dimension may be dynamic",
            shapes.input_name
        )));
    }
    let dimensions: Vec<usize> =
        input_shape.iter().skip(1).map(|&dimension| usize::try_from(dimension).unwrap_or(0)).collect();
    let batch_support = match input_shape.first() {
        Some(&size) if size > 0 => BatchSupport::Fixed(usize::try_from(size).unwrap_or(1)),
        _ => BatchSupport::Dynamic,
    };
    let inferred_kind = match dimensions.len() {
        1 => ModelInputKind::Waveform,
        2 | 3 => ModelInputKind::Spectrogram,
        _ => {
            return Err(invalid(format!(
                "input {:?} has shape {input_shape:?}; expected [batch, samples] or [batch, frames, bins(, channels)]",
                shapes.input_name
            )))
        }
    };
    let (kind, kind_source) = match sidecar.input_kind {
        Some(kind) => (kind, FactSource::Sidecar),
        None => (inferred_kind, FactSource::InferredFromShapes),
    };
    let (input_kind, window_shape) = match (kind, dimensions.as_slice()) {
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
                "the sidecar says input_kind = {kind:?}, but input {:?} has shape {input_shape:?}",
                shapes.input_name
            )))
        }
    };
    let given_rate = sidecar
        .sample_rate
        .map(|rate| (rate, FactSource::Sidecar))
        .or(declared.sample_rate.map(|rate| (rate, FactSource::Declared)));
    let given_seconds = sidecar
        .window_seconds
        .map(|seconds| (seconds, FactSource::Sidecar))
        .or(declared.window_seconds.map(|seconds| (seconds, FactSource::Declared)));
    let ((sample_rate, rate_source), (window_seconds, seconds_source)) = match window_shape {
        WindowShape::Samples { samples } => waveform_timing(samples, given_rate, given_seconds).map_err(invalid)?,
        WindowShape::Frames { .. } => (
            given_rate.unwrap_or((DEFAULT_SAMPLE_RATE, FactSource::Assumed)),
            given_seconds.unwrap_or((DEFAULT_SPECTROGRAM_WINDOW_SECONDS, FactSource::Assumed)),
        ),
    };
    let outputs = &shapes.outputs;
    let sidecar_preference = OutputPreference { name: sidecar.output_name.clone(), index: sidecar.output_index };
    let (mut embedding_output, output_source) = if sidecar_preference != OutputPreference::default() {
        (choose_embedding_output(name, outputs, &sidecar_preference, default_output_name)?, FactSource::Sidecar)
    } else if let Some(declared_name) = &declared.embedding_output {
        let preference = OutputPreference { name: Some(declared_name.clone()), index: None };
        let mut choice = choose_embedding_output(name, outputs, &preference, default_output_name)?;
        choice.reason = OutputChoiceReason::DeclaredName;
        (choice, FactSource::Declared)
    } else {
        let choice = choose_embedding_output(name, outputs, &OutputPreference::default(), default_output_name)?;
        let source = if choice.reason == OutputChoiceReason::FirstOutputFallback {
            FactSource::Assumed
        } else {
            FactSource::InferredFromShapes
        };
        (choice, source)
    };
    let output_shape = &outputs[embedding_output.index].shape;
    if output_shape.iter().skip(1).any(|&dimension| dimension <= 0) || output_shape.is_empty() {
        return Err(invalid(format!(
            "embedding output {:?} has shape {output_shape:?}; it must be [batch, dim] with a fixed dim",
            embedding_output.name
        )));
    }
    embedding_output.name = outputs[embedding_output.index].name.clone();
    let embedding_dim: usize = output_shape.iter().skip(1).map(|&dimension| dimension as usize).product();
    let mut version = match &sidecar.version {
        Some(version) => format!("{version}+sha256.{}", &file_sha256[..12.min(file_sha256.len())]),
        None => format!("sha256.{}", &file_sha256[..12.min(file_sha256.len())]),
    };
    if *sidecar != ModelSidecar::default() {
        // A sidecar changes what the model means (timing, output, log-mel parameters): editing it
        // must change the version too.
        version.push_str(&format!(".sidecar.{}", &sidecar.content_sha256()[..8]));
    }
    let mut info = ModelInfo {
        name: name.to_string(),
        version,
        file_sha256: Some(Sha256Hex(file_sha256.to_string())),
        source: source.to_string(),
        input_kind,
        sample_rate,
        window_seconds,
        input_shape: window_shape,
        embedding_dim: u32::try_from(embedding_dim).map_err(|_| invalid("embedding is too large".to_string()))?,
        embedding_output,
        batch_support,
        log_mel: sidecar.log_mel_as_json(),
        format: shapes.format,
        facts: FactSources {
            input_kind: kind_source,
            sample_rate: rate_source,
            window_seconds: seconds_source,
            embedding_output: output_source,
        },
        warnings: Vec::new(),
    };
    info.warnings = warnings_for(&info);
    Ok(info)
}

type SourcedRate = (u32, FactSource);
type SourcedSeconds = (f64, FactSource);

/// Sample rate and window length of a waveform model taking `samples` values per window: given
/// both, they must agree with the input length; given one, the other follows from the input length.
fn waveform_timing(
    samples: usize,
    rate: Option<SourcedRate>,
    seconds: Option<SourcedSeconds>,
) -> Result<(SourcedRate, SourcedSeconds), String> {
    match (rate, seconds) {
        (Some((sample_rate, rate_source)), Some((seconds, seconds_source))) => {
            let implied = (seconds * f64::from(sample_rate)).round();
            if implied != samples as f64 {
                return Err(format!(
                    "{} says {seconds} s and {} says {sample_rate} Hz = {implied} samples, but the model takes {samples}",
                    seconds_source.label(),
                    rate_source.label()
                ));
            }
            Ok(((sample_rate, rate_source), (seconds, seconds_source)))
        }
        (None, Some((seconds, seconds_source))) => {
            let sample_rate = (samples as f64 / seconds).round();
            if sample_rate < 1.0 || sample_rate > f64::from(u32::MAX) {
                return Err(format!("window_seconds = {seconds} gives no usable sample rate for {samples} samples"));
            }
            Ok(((sample_rate as u32, FactSource::InferredFromShapes), (seconds, seconds_source)))
        }
        (Some((sample_rate, rate_source)), None) => {
            Ok(((sample_rate, rate_source), (samples as f64 / f64::from(sample_rate), FactSource::InferredFromShapes)))
        }
        (None, None) => Ok((
            (DEFAULT_SAMPLE_RATE, FactSource::Assumed),
            (samples as f64 / f64::from(DEFAULT_SAMPLE_RATE), FactSource::InferredFromShapes),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(input_shape: Vec<i64>, declared: DeclaredFacts) -> ModelFileShapes {
        ModelFileShapes {
            format: ModelFormat::Onnx,
            input_name: "audio".into(),
            input_shape,
            outputs: vec![
                OutputDescription { name: "logits".into(), tensor_name: "logits".into(), shape: vec![-1, 3] },
                OutputDescription { name: "features".into(), tensor_name: "features".into(), shape: vec![-1, 8] },
            ],
            declared,
        }
    }

    fn describe(shapes: &ModelFileShapes, sidecar: Option<&ModelSidecar>) -> Result<ModelInfo, ModelError> {
        describe_model_file("m", "m.onnx", &"ab".repeat(32), shapes, sidecar, "embedding")
    }

    #[test]
    fn a_file_that_declares_nothing_gets_an_assumed_rate_and_a_warning() {
        let info = describe(&shapes(vec![-1, 16_000], DeclaredFacts::default()), None).unwrap();
        assert_eq!((info.sample_rate, info.facts.sample_rate), (32_000, FactSource::Assumed));
        assert_eq!((info.window_seconds, info.facts.window_seconds), (0.5, FactSource::InferredFromShapes));
        assert_eq!(info.facts.embedding_output, FactSource::Assumed);
        assert!(info.warnings.iter().any(|warning| warning.contains("32000 Hz is assumed")), "{:?}", info.warnings);
    }

    #[test]
    fn declared_facts_are_used_and_a_sidecar_overrides_them() {
        let declared = DeclaredFacts {
            sample_rate: Some(16_000),
            embedding_output: Some("features".into()),
            ..DeclaredFacts::default()
        };
        let info = describe(&shapes(vec![-1, 16_000], declared.clone()), None).unwrap();
        assert_eq!((info.sample_rate, info.facts.sample_rate), (16_000, FactSource::Declared));
        assert_eq!((info.window_seconds, info.facts.window_seconds), (1.0, FactSource::InferredFromShapes));
        assert_eq!((info.embedding_dim, info.facts.embedding_output), (8, FactSource::Declared));
        assert_eq!(info.embedding_output.reason, OutputChoiceReason::DeclaredName);
        assert!(info.warnings.is_empty(), "{:?}", info.warnings);
        let sidecar = ModelSidecar { sample_rate: Some(8_000), output_index: Some(0), ..ModelSidecar::default() };
        let overridden = describe(&shapes(vec![-1, 16_000], declared), Some(&sidecar)).unwrap();
        assert_eq!((overridden.sample_rate, overridden.facts.sample_rate), (8_000, FactSource::Sidecar));
        assert_eq!((overridden.embedding_dim, overridden.facts.embedding_output), (3, FactSource::Sidecar));
    }

    #[test]
    fn a_declared_window_length_gives_the_rate_and_contradictions_are_refused() {
        let declared = DeclaredFacts { window_seconds: Some(2.0), ..DeclaredFacts::default() };
        let info = describe(&shapes(vec![-1, 16_000], declared), None).unwrap();
        assert_eq!((info.sample_rate, info.facts.sample_rate), (8_000, FactSource::InferredFromShapes));
        let contradicting =
            DeclaredFacts { window_seconds: Some(2.0), sample_rate: Some(16_000), ..DeclaredFacts::default() };
        let error = describe(&shapes(vec![-1, 16_000], contradicting), None).unwrap_err().to_string();
        assert!(error.contains("declared by the file") && error.contains("16000"), "{error}");
    }

    #[test]
    fn a_spectrogram_model_without_facts_assumes_both_rate_and_window() {
        let info = describe(&shapes(vec![2, 64, 32], DeclaredFacts::default()), None).unwrap();
        assert_eq!(info.batch_support, BatchSupport::Fixed(2));
        assert_eq!((info.facts.sample_rate, info.facts.window_seconds), (FactSource::Assumed, FactSource::Assumed));
        assert_eq!(info.warnings.len(), 3, "{:?}", info.warnings);
    }
}
