//! What a processing request means: the model, windows, sample rate and features, with every
//! default filled in, checked against the model's input, and hashed into the encoding signature.
//! Pure.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audio::{LogMelConfig, ShortFilePolicy, WindowConfig};
use crate::domain::events::{EncodingConfig, ModelInputKind};
use crate::domain::ids::{EncodingSignature, Sha256Hex};
use crate::domain::json_text::JsonText;
use crate::model::{ModelInfo, WindowShape};

/// The optional parameters of `POST /api/processing-jobs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EncodingRequest {
    /// A registered model name; default: the built-in default model.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub window_seconds: Option<f64>,
    #[serde(default)]
    pub hop_seconds: Option<f64>,
    #[serde(default)]
    pub target_sample_rate: Option<u32>,
    /// `{"short_file": "pad"|"skip", "log_mel": {...}}`.
    #[serde(default)]
    pub feature_config: Option<serde_json::Value>,
}

/// Feature extraction and windowing policy, every field present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureConfig {
    #[serde(default)]
    pub short_file: ShortFilePolicy,
    /// Log-mel parameters for spectrogram models; `None` for waveform models.
    #[serde(default)]
    pub log_mel: Option<LogMelConfig>,
}

/// A request resolved against a model: what the worker runs and what the signature hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedEncoding {
    pub model_name: String,
    pub model_version: String,
    pub input_kind: ModelInputKind,
    pub window: WindowConfig,
    pub target_sample_rate: u32,
    pub features: FeatureConfig,
    pub vector_dim: u32,
}

/// A parameter that cannot be used, named so a person can fix it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct EncodingConfigError {
    pub field: String,
    pub reason: String,
}

fn invalid(field: &str, reason: impl Into<String>) -> EncodingConfigError {
    EncodingConfigError { field: field.to_string(), reason: reason.into() }
}

/// Fills in every default from the model and checks that the windows fit the model's input.
pub fn resolve(request: &EncodingRequest, model: &ModelInfo) -> Result<ResolvedEncoding, EncodingConfigError> {
    let target_sample_rate = request.target_sample_rate.unwrap_or(model.sample_rate);
    if !(crate::audio::MINIMUM_SAMPLE_RATE..=crate::audio::MAXIMUM_SAMPLE_RATE).contains(&target_sample_rate) {
        return Err(invalid(
            "target_sample_rate",
            format!(
                "{target_sample_rate} Hz is outside {} to {} Hz",
                crate::audio::MINIMUM_SAMPLE_RATE,
                crate::audio::MAXIMUM_SAMPLE_RATE
            ),
        ));
    }
    let window_seconds = request.window_seconds.unwrap_or(model.window_seconds);
    let hop_seconds = request.hop_seconds.unwrap_or(window_seconds);
    let mut feature_json = request.feature_config.clone().unwrap_or_else(|| serde_json::json!({}));
    let serde_json::Value::Object(ref mut feature_object) = feature_json else {
        return Err(invalid("feature_config", "must be a JSON object like {\"short_file\": \"skip\"}"));
    };
    let user_log_mel = feature_object.remove("log_mel");
    let short_file: ShortFilePolicy = match feature_object.remove("short_file") {
        None => ShortFilePolicy::default(),
        Some(value) => serde_json::from_value(value)
            .map_err(|_| invalid("feature_config.short_file", "must be \"pad\" or \"skip\""))?,
    };
    if let Some(unknown) = feature_object.keys().next() {
        return Err(invalid(
            &format!("feature_config.{unknown}"),
            "is not a feature setting (the settings are short_file and log_mel)",
        ));
    }
    let window = WindowConfig { window_seconds, hop_seconds: Some(hop_seconds), short_file };
    let window_samples = window
        .samples_at(target_sample_rate)
        .map_err(|error| {
            invalid(if error.to_string().contains("hop") { "hop_seconds" } else { "window_seconds" }, error.to_string())
        })?
        .window as usize;
    let log_mel = match model.input_kind {
        ModelInputKind::Waveform => {
            if user_log_mel.is_some() {
                return Err(invalid(
                    "feature_config.log_mel",
                    format!("model {} takes raw audio, not a log-mel spectrogram", model.name),
                ));
            }
            if let WindowShape::Samples { samples } = model.input_shape {
                if window_samples != samples {
                    return Err(invalid(
                        "window_seconds",
                        format!(
                            "{window_seconds} s at {target_sample_rate} Hz is {window_samples} samples, but model {} takes \
                             {samples} samples per window ({} s at {} Hz)",
                            model.name, model.window_seconds, model.sample_rate
                        ),
                    ));
                }
            }
            None
        }
        ModelInputKind::Spectrogram => {
            let mut merged = serde_json::to_value(LogMelConfig::default()).unwrap_or_default();
            for layer in [model.log_mel.clone(), user_log_mel].into_iter().flatten() {
                let serde_json::Value::Object(layer) = layer else {
                    return Err(invalid("feature_config.log_mel", "must be a JSON object"));
                };
                if let serde_json::Value::Object(target) = &mut merged {
                    target.extend(layer);
                }
            }
            if let serde_json::Value::Object(target) = &mut merged {
                // The log-mel hop is derived from the processing window, not set separately.
                target.insert("window_seconds".into(), serde_json::json!(window_seconds));
            }
            let config: LogMelConfig =
                serde_json::from_value(merged).map_err(|error| invalid("feature_config.log_mel", error.to_string()))?;
            let extractor = crate::audio::LogMelExtractor::new(target_sample_rate, &config)
                .map_err(|error| invalid("feature_config.log_mel", error.to_string()))?;
            let frames = extractor.frame_count(window_samples);
            if let WindowShape::Frames { frames: model_frames, bins, channels } = model.input_shape {
                if frames != model_frames || config.mel_bins != bins || channels != 1 {
                    return Err(invalid(
                        "feature_config.log_mel",
                        format!(
                            "these settings give {frames} frames x {} bins per window, but model {} takes {}",
                            config.mel_bins, model.name, model.input_shape
                        ),
                    ));
                }
            }
            Some(config)
        }
    };
    Ok(ResolvedEncoding {
        model_name: model.name.clone(),
        model_version: model.version.clone(),
        input_kind: model.input_kind,
        window,
        target_sample_rate,
        features: FeatureConfig { short_file, log_mel },
        vector_dim: model.embedding_dim,
    })
}

impl ResolvedEncoding {
    pub fn hop_seconds(&self) -> f64 {
        self.window.effective_hop_seconds()
    }

    /// The feature configuration in canonical form (sorted keys, all defaults present).
    pub fn feature_config_json(&self) -> JsonText {
        JsonText::from_value(&serde_json::to_value(&self.features).unwrap_or_default())
    }

    /// The configuration as recorded in events.
    pub fn encoding_config(&self) -> EncodingConfig {
        EncodingConfig {
            model_name: self.model_name.clone(),
            model_version: self.model_version.clone(),
            window_seconds: self.window.window_seconds,
            hop_seconds: self.hop_seconds(),
            target_sample_rate: self.target_sample_rate,
            feature_config: self.feature_config_json(),
        }
    }

    /// SHA-256 over the canonical form of (audio checksum, model version, window, hop, sample
    /// rate, feature config with every default filled in). The model name is not part of it:
    /// the version identifies the model's bytes.
    pub fn signature(&self, audio_checksum: &Sha256Hex) -> EncodingSignature {
        let canonical = serde_json::json!({
            "audio_checksum_sha256": audio_checksum.0,
            "model_version": self.model_version,
            "window_seconds": self.window.window_seconds,
            "hop_seconds": self.hop_seconds(),
            "target_sample_rate": self.target_sample_rate,
            "feature_config": self.feature_config_json().to_value(),
        });
        let mut hasher = Sha256::new();
        hasher.update(b"humpback.encoding_signature.v1\n");
        hasher.update(canonical.to_string().as_bytes());
        EncodingSignature(crate::domain::ids::hex(&hasher.finalize()))
    }
}

/// Rebuilds the resolved encoding a job was queued with (for the worker).
pub fn from_recorded(
    config: &EncodingConfig,
    input_kind: ModelInputKind,
    vector_dim: u32,
) -> Result<ResolvedEncoding, EncodingConfigError> {
    let features: FeatureConfig = serde_json::from_value(config.feature_config.to_value())
        .map_err(|error| invalid("feature_config", format!("recorded configuration does not parse: {error}")))?;
    Ok(ResolvedEncoding {
        model_name: config.model_name.clone(),
        model_version: config.model_version.clone(),
        input_kind,
        window: WindowConfig {
            window_seconds: config.window_seconds,
            hop_seconds: Some(config.hop_seconds),
            short_file: features.short_file,
        },
        target_sample_rate: config.target_sample_rate,
        features,
        vector_dim,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BuiltinLogMelStatsModel, EmbeddingModel, FakeModel, FakeModelConfig};
    use proptest::prelude::*;

    fn builtin() -> ModelInfo {
        BuiltinLogMelStatsModel::new().info().clone()
    }

    fn fake() -> ModelInfo {
        FakeModel::new(&FakeModelConfig::default()).unwrap().info().clone()
    }

    fn checksum() -> Sha256Hex {
        Sha256Hex("ab".repeat(32))
    }

    #[test]
    fn omitting_defaults_and_stating_them_give_the_same_signature() {
        let model = builtin();
        let empty = resolve(&EncodingRequest::default(), &model).unwrap();
        let stated = resolve(
            &EncodingRequest {
                model: Some(model.name.clone()),
                window_seconds: Some(5.0),
                hop_seconds: Some(5.0),
                target_sample_rate: Some(32_000),
                feature_config: Some(serde_json::json!({
                    "short_file": "pad",
                    "log_mel": {"mel_bins": 128, "n_fft": 2048, "normalization": "per_window_max", "top_db": 80.0}
                })),
            },
            &model,
        )
        .unwrap();
        assert_eq!(empty.signature(&checksum()), stated.signature(&checksum()));
        assert_eq!(empty.feature_config_json(), stated.feature_config_json());
    }

    #[test]
    fn every_part_of_the_configuration_changes_the_signature() {
        let model = builtin();
        let base = resolve(&EncodingRequest::default(), &model).unwrap();
        let skip = resolve(
            &EncodingRequest { feature_config: Some(serde_json::json!({"short_file": "skip"})), ..Default::default() },
            &model,
        )
        .unwrap();
        let normalised = resolve(
            &EncodingRequest {
                feature_config: Some(serde_json::json!({"log_mel": {"normalization": "standardize"}})),
                ..Default::default()
            },
            &model,
        )
        .unwrap();
        let hop = resolve(&EncodingRequest { hop_seconds: Some(2.5), ..Default::default() }, &model).unwrap();
        let signatures = [&base, &skip, &normalised, &hop].map(|r| r.signature(&checksum()));
        for (i, a) in signatures.iter().enumerate() {
            for b in &signatures[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_ne!(base.signature(&checksum()), base.signature(&Sha256Hex("cd".repeat(32))));
        let mut other_version = base.clone();
        other_version.model_version = "2".into();
        assert_ne!(base.signature(&checksum()), other_version.signature(&checksum()));
    }

    #[test]
    fn parameters_that_do_not_fit_the_model_name_the_field() {
        let model = builtin();
        let error = resolve(
            &EncodingRequest {
                feature_config: Some(serde_json::json!({"log_mel": {"mel_bins": 64}})),
                ..Default::default()
            },
            &model,
        )
        .unwrap_err();
        assert_eq!(error.field, "feature_config.log_mel");
        assert!(error.reason.contains("model builtin-logmel-stats takes 128 frames x 128 bins"), "{error}");
        let error = resolve(&EncodingRequest { hop_seconds: Some(6.0), ..Default::default() }, &model).unwrap_err();
        assert_eq!(error.field, "hop_seconds", "{error}");
        let error = resolve(&EncodingRequest { hop_seconds: Some(-1.0), ..Default::default() }, &model).unwrap_err();
        assert_eq!(error.field, "hop_seconds", "{error}");
        let error =
            resolve(&EncodingRequest { target_sample_rate: Some(10), ..Default::default() }, &model).unwrap_err();
        assert_eq!(error.field, "target_sample_rate");
        let error = resolve(
            &EncodingRequest { feature_config: Some(serde_json::json!({"shortfile": "skip"})), ..Default::default() },
            &model,
        )
        .unwrap_err();
        assert_eq!(error.field, "feature_config.shortfile");
        let error = resolve(
            &EncodingRequest {
                feature_config: Some(serde_json::json!({"log_mel": {"mel_binz": 3}})),
                ..Default::default()
            },
            &model,
        )
        .unwrap_err();
        assert_eq!(error.field, "feature_config.log_mel");
        let fake = fake();
        let error = resolve(&EncodingRequest { window_seconds: Some(2.0), ..Default::default() }, &fake).unwrap_err();
        assert!(error.reason.contains("takes 16000 samples per window"), "{error}");
        let error = resolve(
            &EncodingRequest { feature_config: Some(serde_json::json!({"log_mel": {}})), ..Default::default() },
            &fake,
        )
        .unwrap_err();
        assert!(error.reason.contains("takes raw audio"), "{error}");
    }

    #[test]
    fn the_recorded_configuration_resolves_back_to_the_same_encoding() {
        let model = builtin();
        let resolved = resolve(&EncodingRequest { hop_seconds: Some(2.5), ..Default::default() }, &model).unwrap();
        let back = from_recorded(&resolved.encoding_config(), model.input_kind, model.embedding_dim).unwrap();
        assert_eq!(back, resolved);
    }

    proptest! {
        #[test]
        fn key_order_and_stated_defaults_never_change_the_signature(
            skip in any::<bool>(),
            state_short_file in any::<bool>(),
            state_bins in any::<bool>(),
            normalization in prop::sample::select(vec!["per_window_max", "global_ref", "standardize"]),
            reverse in any::<bool>(),
        ) {
            let model = builtin();
            let mut log_mel = serde_json::Map::new();
            let mut entries: Vec<(&str, serde_json::Value)> = vec![("normalization", serde_json::json!(normalization))];
            if state_bins { entries.push(("mel_bins", serde_json::json!(128))); }
            if reverse { entries.reverse(); }
            for (key, value) in entries { log_mel.insert(key.to_string(), value); }
            let mut feature = serde_json::Map::new();
            if skip || state_short_file {
                feature.insert("short_file".into(), serde_json::json!(if skip { "skip" } else { "pad" }));
            }
            feature.insert("log_mel".into(), serde_json::Value::Object(log_mel));
            let request = EncodingRequest { feature_config: Some(serde_json::Value::Object(feature)), ..Default::default() };
            let minimal = EncodingRequest {
                feature_config: Some(serde_json::json!({
                    "short_file": if skip { "skip" } else { "pad" },
                    "log_mel": {"normalization": normalization}
                })),
                ..Default::default()
            };
            let a = resolve(&request, &model).unwrap().signature(&checksum());
            let b = resolve(&minimal, &model).unwrap().signature(&checksum());
            prop_assert_eq!(a, b);
        }
    }
}
