//! `NAME.toml` next to `NAME.tflite`: what the file's shapes cannot say (sample rate, window length,
//! which output is the embedding, log-mel parameters).
//!
//! ```toml
//! version = "perch-v2"      # optional; the file hash is always appended
//! sample_rate = 32000       # Hz the audio is resampled to
//! window_seconds = 5.0      # for spectrogram models; waveform models derive it from the input length
//! output_name = "embedding" # or output_index = 1
//! input_kind = "waveform"   # optional; checked against the input's rank
//! [log_mel]                 # passed unchanged to the audio front end
//! mel_bins = 128
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::domain::events::ModelInputKind;
use crate::model::ModelError;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSidecar {
    pub version: Option<String>,
    pub description: Option<String>,
    pub input_kind: Option<ModelInputKind>,
    pub sample_rate: Option<u32>,
    pub window_seconds: Option<f64>,
    pub output_name: Option<String>,
    pub output_index: Option<usize>,
    pub log_mel: Option<toml::Table>,
}

impl ModelSidecar {
    /// Parses sidecar text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ModelError> {
        let invalid = |reason: String| ModelError::InvalidSidecar { path: path.to_path_buf(), reason };
        let sidecar: ModelSidecar =
            toml::from_str(text).map_err(|error| invalid(error.to_string().trim().to_string()))?;
        if sidecar.sample_rate == Some(0) {
            return Err(invalid("sample_rate must be positive".to_string()));
        }
        if let Some(seconds) = sidecar.window_seconds {
            if !(seconds.is_finite() && seconds > 0.0) {
                return Err(invalid(format!("window_seconds must be a positive number, not {seconds}")));
            }
        }
        if sidecar.output_name.is_some() && sidecar.output_index.is_some() {
            return Err(invalid("give output_name or output_index, not both".to_string()));
        }
        Ok(sidecar)
    }

    /// Reads the sidecar at `path`, or `None` when there is none.
    pub fn read_if_present(path: &Path) -> Result<Option<Self>, ModelError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text).map(Some),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ModelError::Io { path: path.to_path_buf(), source }),
        }
    }

    /// SHA-256 of the parsed sidecar in a canonical form (JSON with sorted keys), so comments and
    /// formatting do not count but every value does.
    pub fn content_sha256(&self) -> String {
        let canonical = serde_json::to_value(self).map(|value| value.to_string()).unwrap_or_default();
        crate::domain::ids::hex(&<sha2::Sha256 as sha2::Digest>::digest(canonical.as_bytes()))
    }

    /// The `[log_mel]` table as JSON, for `ModelInfo::log_mel`.
    pub fn log_mel_as_json(&self) -> Option<serde_json::Value> {
        self.log_mel.as_ref().and_then(|table| serde_json::to_value(table).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_sidecar_parses_and_keeps_log_mel_opaque() {
        let sidecar = ModelSidecar::parse(
            Path::new("perch.toml"),
            "version = \"v2\"\nsample_rate = 32000\nwindow_seconds = 5.0\noutput_name = \"embedding\"\n\
             input_kind = \"waveform\"\n[log_mel]\nmel_bins = 128\nfmin = 60.0\n",
        )
        .unwrap();
        assert_eq!(sidecar.input_kind, Some(ModelInputKind::Waveform));
        assert_eq!(sidecar.log_mel_as_json(), Some(serde_json::json!({"mel_bins": 128, "fmin": 60.0})));
    }

    #[test]
    fn a_typo_or_a_bad_value_is_reported_with_the_file() {
        let typo = ModelSidecar::parse(Path::new("m.toml"), "sample_rat = 32000").unwrap_err().to_string();
        assert!(typo.contains("m.toml") && typo.contains("sample_rat"), "{typo}");
        assert!(ModelSidecar::parse(Path::new("m.toml"), "window_seconds = -1.0").is_err());
        assert!(ModelSidecar::parse(Path::new("m.toml"), "output_name = \"a\"\noutput_index = 1").is_err());
    }

    #[test]
    fn the_content_hash_ignores_formatting_but_not_values() {
        let path = Path::new("m.toml");
        let plain = ModelSidecar::parse(path, "sample_rate = 32000\n[log_mel]\nmel_bins = 128\n").unwrap();
        let reformatted =
            ModelSidecar::parse(path, "# comment\nsample_rate   = 32000\n\n[log_mel]\nmel_bins=128").unwrap();
        let changed = ModelSidecar::parse(path, "sample_rate = 32000\n[log_mel]\nmel_bins = 64\n").unwrap();
        assert_eq!(plain.content_sha256(), reformatted.content_sha256());
        assert_ne!(plain.content_sha256(), changed.content_sha256());
    }
}
