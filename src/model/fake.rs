//! `fake`: a deterministic stand-in for a real model, for tests and demos. Only available when the
//! configuration enables it.
//!
//! Each window is reduced to six cheap content features (RMS, zero-crossing rate, a
//! spectral-centroid-like ratio of first-difference energy to energy, peak, mean, and how the energy
//! is split between the two halves of the window); each embedding value is a sine or cosine of one
//! feature at a small multiple of its frequency. Similar windows give nearby vectors, different
//! sounds give different vectors, and the same window always gives the same vector, whatever the
//! batch. The window's position in the file is deliberately not used: it would make the same sound
//! at two times look different and break "batch equals one at a time".

use crate::domain::events::ModelInputKind;
use crate::model::batching::plan_batches;
use crate::model::info::{BatchSupport, EmbeddingOutputChoice, ModelInfo, OutputChoiceReason, WindowShape};
use crate::model::tflite_model::check_window_lengths;
use crate::model::{EmbeddingModel, ModelError};

pub const FAKE_MODEL_NAME: &str = "fake";

/// Shape of the fake model's input and output.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeModelConfig {
    pub input_kind: ModelInputKind,
    pub sample_rate: u32,
    pub window_seconds: f64,
    /// For spectrogram input: frames x bins per window. Ignored for waveform input.
    pub spectrogram_frames_and_bins: (usize, usize),
    pub embedding_dim: u32,
}

impl Default for FakeModelConfig {
    /// Waveform input, 1 s windows at 16 kHz (small, fast), 32-dimensional embeddings.
    fn default() -> Self {
        FakeModelConfig {
            input_kind: ModelInputKind::Waveform,
            sample_rate: 16_000,
            window_seconds: 1.0,
            spectrogram_frames_and_bins: (128, 128),
            embedding_dim: 32,
        }
    }
}

pub struct FakeModel {
    info: ModelInfo,
    /// Windows per run; the last run is padded with silence like a real model's, its outputs dropped.
    batch_size: usize,
}

impl FakeModel {
    pub fn new(config: &FakeModelConfig) -> Result<Self, ModelError> {
        let invalid = |reason: &str| ModelError::InvalidConfiguration {
            model: FAKE_MODEL_NAME.to_string(),
            reason: reason.to_string(),
        };
        if config.embedding_dim == 0 || config.sample_rate == 0 {
            return Err(invalid("embedding_dim and sample_rate must be positive"));
        }
        if !(config.window_seconds.is_finite() && config.window_seconds > 0.0) {
            return Err(invalid("window_seconds must be positive"));
        }
        let input_shape = match config.input_kind {
            ModelInputKind::Waveform => {
                let samples = (config.window_seconds * f64::from(config.sample_rate)).round() as usize;
                WindowShape::Samples { samples: samples.max(1) }
            }
            ModelInputKind::Spectrogram => {
                let (frames, bins) = config.spectrogram_frames_and_bins;
                if frames == 0 || bins == 0 {
                    return Err(invalid("spectrogram frames and bins must be positive"));
                }
                WindowShape::Frames { frames, bins, channels: 1 }
            }
        };
        Ok(FakeModel {
            info: ModelInfo {
                name: FAKE_MODEL_NAME.to_string(),
                version: format!("fake-1-{}d", config.embedding_dim),
                file_sha256: None,
                source: "builtin".to_string(),
                input_kind: config.input_kind,
                sample_rate: config.sample_rate,
                window_seconds: config.window_seconds,
                input_shape,
                embedding_dim: config.embedding_dim,
                embedding_output: EmbeddingOutputChoice {
                    index: 0,
                    name: "embedding".to_string(),
                    reason: OutputChoiceReason::BuiltIn,
                },
                batch_support: BatchSupport::Dynamic,
                log_mel: None,
                format: crate::model::info::ModelFormat::Builtin,
                facts: crate::model::info::FactSources::default(),
                warnings: Vec::new(),
            },
            batch_size: crate::model::DEFAULT_BATCH_SIZE,
        })
    }

    /// The same model run in batches of `batch_size` windows.
    pub fn with_batch_size(mut self, batch_size: usize) -> FakeModel {
        self.batch_size = batch_size.max(1);
        self
    }
}

/// The six content features of one window, each scaled to roughly 0..1.
fn content_features(window: &[f32]) -> [f64; 6] {
    let count = window.len().max(1) as f64;
    let energy: f64 = window.iter().map(|&value| f64::from(value) * f64::from(value)).sum();
    let rms = (energy / count).sqrt();
    let zero_crossings = window.windows(2).filter(|pair| (pair[0] >= 0.0) != (pair[1] >= 0.0)).count() as f64;
    let difference_energy: f64 = window.windows(2).map(|pair| f64::from(pair[1] - pair[0]).powi(2)).sum();
    let centroid_like = if energy > 0.0 { (difference_energy / energy / 4.0).min(1.0) } else { 0.0 };
    let peak = window.iter().fold(0.0f64, |peak, &value| peak.max(f64::from(value).abs()));
    let mean = window.iter().map(|&value| f64::from(value)).sum::<f64>() / count;
    let half = window.len() / 2;
    let first_half_energy: f64 = window[..half].iter().map(|&value| f64::from(value).powi(2)).sum();
    let balance = if energy > 0.0 { first_half_energy / energy } else { 0.5 };
    [rms.tanh(), zero_crossings / count, centroid_like, peak.tanh(), mean.tanh(), balance]
}

/// The fake embedding of one window. Pure.
pub fn fake_embedding(window: &[f32], embedding_dim: usize) -> Vec<f32> {
    let features = content_features(window);
    (0..embedding_dim)
        .map(|index| {
            let feature = features[index % features.len()];
            let harmonic = (index / features.len()) as f64 / 2.0 + 1.0;
            let angle = std::f64::consts::PI * harmonic * feature;
            (if (index / features.len()) % 2 == 0 { angle.sin() } else { angle.cos() }) as f32
        })
        .collect()
}

impl EmbeddingModel for FakeModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn embed_batch(&mut self, windows: &[&[f32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        check_window_lengths(&self.info, windows)?;
        let silence = vec![0.0f32; self.info.window_value_count()];
        let mut embeddings = Vec::with_capacity(windows.len());
        for run in plan_batches(windows.len(), self.batch_size, self.info.batch_support) {
            let real = &windows[run.first_window..run.first_window + run.window_count];
            let padding = std::iter::repeat_n(silence.as_slice(), run.run_batch_size - run.window_count);
            let batch: Vec<Vec<f32>> = real
                .iter()
                .copied()
                .chain(padding)
                .map(|window| fake_embedding(window, self.info.embedding_dim as usize))
                .collect();
            embeddings.extend(batch.into_iter().take(run.window_count));
        }
        Ok(embeddings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(frequency: f32, amplitude: f32, samples: usize) -> Vec<f32> {
        (0..samples)
            .map(|index| amplitude * (frequency * index as f32 / 16_000.0 * std::f32::consts::TAU).sin())
            .collect()
    }

    fn distance(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f32>().sqrt()
    }

    #[test]
    fn the_same_window_always_gives_the_same_vector_whatever_the_batch() {
        let mut model = FakeModel::new(&FakeModelConfig::default()).unwrap();
        let low = tone(200.0, 0.5, 16_000);
        let high = tone(3_000.0, 0.5, 16_000);
        let together = model.embed_batch(&[&low, &high, &low]).unwrap();
        let alone = model.embed_batch(&[&high]).unwrap();
        assert_eq!(together[0], together[2]);
        assert_eq!(together[1], alone[0]);
        assert_eq!(together[0].len(), 32);
    }

    #[test]
    fn a_padded_last_batch_gives_the_same_embeddings_as_one_at_a_time() {
        let windows: Vec<Vec<f32>> = (0..7).map(|index| tone(100.0 + 300.0 * index as f32, 0.4, 16_000)).collect();
        let views: Vec<&[f32]> = windows.iter().map(Vec::as_slice).collect();
        let padded = FakeModel::new(&FakeModelConfig::default()).unwrap().with_batch_size(4).embed_batch(&views);
        let mut one_at_a_time = FakeModel::new(&FakeModelConfig::default()).unwrap().with_batch_size(1);
        let alone: Vec<Vec<f32>> =
            views.iter().flat_map(|window| one_at_a_time.embed_batch(&[window]).unwrap()).collect();
        assert_eq!(padded.unwrap(), alone);
    }

    #[test]
    fn similar_sounds_are_closer_than_different_sounds() {
        let mut model = FakeModel::new(&FakeModelConfig::default()).unwrap();
        let low = tone(200.0, 0.5, 16_000);
        let low_bit_louder = tone(210.0, 0.55, 16_000);
        let high = tone(4_000.0, 0.5, 16_000);
        let vectors = model.embed_batch(&[&low, &low_bit_louder, &high]).unwrap();
        assert!(distance(&vectors[0], &vectors[1]) * 3.0 < distance(&vectors[0], &vectors[2]));
    }

    #[test]
    fn a_window_of_the_wrong_length_is_rejected() {
        let mut model = FakeModel::new(&FakeModelConfig::default()).unwrap();
        let error = model.embed_batch(&[&[0.0; 10]]).unwrap_err().to_string();
        assert!(error.contains("has 10 values") && error.contains("16000"), "{error}");
    }
}
