//! `builtin-logmel-stats`: the default model, which needs no download. It is NOT a Perch model and
//! has learned nothing: it summarises each log-mel window with per-band statistics, a transparent
//! baseline that lets humpback run end to end and gives clusters driven by spectral shape.
//!
//! Input: one log-mel window of `frames x bins` values, frame after frame (default 128 x 128, as
//! computed by the audio front end for 5 s at 32 kHz). Output, per mel band, in this order:
//! mean over time, standard deviation over time, and mean absolute frame-to-frame change (delta),
//! so `embedding_dim = 3 x bins` (384 by default). Deterministic: no randomness, no weights.

use crate::domain::events::ModelInputKind;
use crate::model::info::{BatchSupport, EmbeddingOutputChoice, ModelInfo, OutputChoiceReason, WindowShape};
use crate::model::tflite_model::check_window_lengths;
use crate::model::{EmbeddingModel, ModelError};

pub const BUILTIN_MODEL_NAME: &str = "builtin-logmel-stats";
/// Bump when the computation changes, so encoding signatures change with it.
const BUILTIN_MODEL_VERSION: &str = "1";

pub const BUILTIN_SAMPLE_RATE: u32 = 32_000;
pub const BUILTIN_WINDOW_SECONDS: f64 = 5.0;
pub const BUILTIN_FRAMES: usize = 128;
pub const BUILTIN_MEL_BINS: usize = 128;

pub struct BuiltinLogMelStatsModel {
    info: ModelInfo,
    frames: usize,
    bins: usize,
}

impl BuiltinLogMelStatsModel {
    /// The default: 128 frames x 128 mel bins, 5 s at 32 kHz.
    pub fn new() -> Self {
        Self::with_shape(BUILTIN_FRAMES, BUILTIN_MEL_BINS)
    }

    /// Frames and bins must be positive; zero is raised to one.
    pub fn with_shape(frames: usize, bins: usize) -> Self {
        let (frames, bins) = (frames.max(1), bins.max(1));
        let shaped_version = if (frames, bins) == (BUILTIN_FRAMES, BUILTIN_MEL_BINS) {
            BUILTIN_MODEL_VERSION.to_string()
        } else {
            format!("{BUILTIN_MODEL_VERSION}-{frames}x{bins}")
        };
        BuiltinLogMelStatsModel {
            info: ModelInfo {
                name: BUILTIN_MODEL_NAME.to_string(),
                version: shaped_version,
                file_sha256: None,
                source: "builtin".to_string(),
                input_kind: ModelInputKind::Spectrogram,
                sample_rate: BUILTIN_SAMPLE_RATE,
                window_seconds: BUILTIN_WINDOW_SECONDS,
                input_shape: WindowShape::Frames { frames, bins, channels: 1 },
                embedding_dim: u32::try_from(3 * bins).unwrap_or(u32::MAX),
                embedding_output: EmbeddingOutputChoice {
                    index: 0,
                    name: "band_statistics".to_string(),
                    reason: OutputChoiceReason::BuiltIn,
                },
                batch_support: BatchSupport::Dynamic,
                log_mel: None,
                format: crate::model::info::ModelFormat::Builtin,
                facts: crate::model::info::FactSources::default(),
                warnings: Vec::new(),
            },
            frames,
            bins,
        }
    }
}

impl Default for BuiltinLogMelStatsModel {
    fn default() -> Self {
        Self::new()
    }
}

/// Per-band mean, standard deviation and mean absolute delta of one `frames x bins` window. Pure.
pub fn log_mel_band_statistics(window: &[f32], frames: usize, bins: usize) -> Vec<f32> {
    let mut mean = vec![0.0f64; bins];
    let mut square = vec![0.0f64; bins];
    let mut delta = vec![0.0f64; bins];
    for (frame_index, frame) in window.chunks_exact(bins).take(frames).enumerate() {
        for (band, &value) in frame.iter().enumerate() {
            let value = f64::from(value);
            mean[band] += value;
            square[band] += value * value;
            if frame_index > 0 {
                delta[band] += (value - f64::from(window[(frame_index - 1) * bins + band])).abs();
            }
        }
    }
    let count = frames as f64;
    let delta_count = (frames.saturating_sub(1)).max(1) as f64;
    let mut embedding = Vec::with_capacity(3 * bins);
    embedding.extend(mean.iter().map(|sum| (sum / count) as f32));
    embedding.extend(
        mean.iter().zip(&square).map(|(sum, squares)| (squares / count - (sum / count).powi(2)).max(0.0).sqrt() as f32),
    );
    embedding.extend(delta.iter().map(|sum| (sum / delta_count) as f32));
    embedding
}

impl EmbeddingModel for BuiltinLogMelStatsModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn embed_batch(&mut self, windows: &[&[f32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        check_window_lengths(&self.info, windows)?;
        Ok(windows.iter().map(|window| log_mel_band_statistics(window, self.frames, self.bins)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_a_128_by_128_log_mel_model_with_384_dimensions() {
        let model = BuiltinLogMelStatsModel::new();
        let info = model.info();
        assert_eq!(info.input_kind, ModelInputKind::Spectrogram);
        assert_eq!(info.window_value_count(), 128 * 128);
        assert_eq!((info.sample_rate, info.window_seconds, info.embedding_dim), (32_000, 5.0, 384));
        assert_eq!(info.to_registered_event().file_sha256, None);
    }

    #[test]
    fn statistics_are_exact_on_a_small_window_and_deterministic() {
        // 3 frames x 2 bins: band 0 = 1, 2, 3; band 1 = 5, 5, 5.
        let window = [1.0, 5.0, 2.0, 5.0, 3.0, 5.0];
        let statistics = log_mel_band_statistics(&window, 3, 2);
        let expected_std = (2.0f32 / 3.0).sqrt();
        assert_eq!(statistics[..2], [2.0, 5.0]);
        assert!((statistics[2] - expected_std).abs() < 1e-6 && statistics[3] == 0.0);
        assert_eq!(statistics[4..], [1.0, 0.0]);
        let mut model = BuiltinLogMelStatsModel::with_shape(3, 2);
        let twice = model.embed_batch(&[&window, &window]).unwrap();
        assert_eq!(twice[0], statistics);
        assert_eq!(twice[1], statistics);
    }
}
