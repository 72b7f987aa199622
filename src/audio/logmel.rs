//! Log-mel spectrograms for spectrogram-input models, matching librosa.
//!
//! The pipeline is librosa's `melspectrogram(y, sr, n_fft, hop_length, window='hann', center=True,
//! pad_mode='constant', power, n_mels, fmin, fmax, htk=False, norm='slaney')` followed by
//! `power_to_db(S, ref=reference, amin, top_db)`, computed in f64:
//! - centring: the signal is padded with `n_fft / 2` zeros on both sides (librosa 0.10+ default
//!   `pad_mode='constant'`), frame `t` covers padded samples `t * hop .. t * hop + n_fft`, so there
//!   are `1 + (len + 2 * (n_fft / 2) - n_fft) / hop` frames (`1 + len / hop` for even `n_fft`);
//! - window: periodic Hann of length `n_fft` (scipy `get_window('hann', n_fft, fftbins=True)`);
//! - spectrum: `|rfft|^power`, no scaling;
//! - mel filterbank: Slaney mel scale, triangular filters between `n_mels + 2` mel-spaced edges,
//!   each scaled by `2 / (upper_hz - lower_hz)` (Slaney area normalisation);
//! - decibels: `10 * log10(max(amin, S)) - 10 * log10(max(amin, reference))`, then clipped from
//!   below at `max - top_db`, the maximum taken over the whole extracted input.
//!
//! Agreement with librosa 0.11 is tested against committed references (fixtures/logmel, written by
//! scripts/gen-logmel-reference.py). The per-window normalisation is a separate, later step.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};

use super::error::AudioError;

/// What to do with the dB values of each window before handing them to a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogMelNormalization {
    /// Subtract the window's maximum, so the loudest bin is 0 dB and the rest lie in
    /// `[-top_db, 0]` (librosa `ref=np.max`). Robust to recorder gain differences.
    #[default]
    PerWindowMax,
    /// Keep dB relative to the fixed `db_reference`, comparable across windows and files.
    GlobalRef,
    /// Subtract the window's mean and divide by its standard deviation (zero mean, unit variance).
    Standardize,
}

/// Log-mel settings. Omitted JSON fields take the defaults, which give a 128 x 128 log-mel per
/// 5 s window at 32 kHz: 128 mel bins, n_fft 2048, hop derived from 128 frames per 5 s window
/// (hop 1259 samples at 32 kHz, see [`LogMelConfig::hop_samples`]), 0 Hz to Nyquist, power 2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogMelConfig {
    /// Number of mel bins (`n_mels`).
    pub mel_bins: usize,
    /// FFT length and analysis window length in samples.
    pub n_fft: usize,
    /// Frame hop in samples. When `None` it is derived from `frames_per_window` and `window_seconds`.
    pub hop_length: Option<usize>,
    /// Frames wanted per window when the hop is derived.
    pub frames_per_window: usize,
    /// Window length (seconds) used to derive the hop.
    pub window_seconds: f64,
    /// Lowest filter edge in Hz.
    pub fmin_hz: f64,
    /// Highest filter edge in Hz; `None` means the Nyquist frequency.
    pub fmax_hz: Option<f64>,
    /// Exponent of the magnitude spectrum (2 = power, 1 = magnitude).
    pub power: f64,
    /// Reference value for the dB conversion (`ref` in librosa's `power_to_db`).
    pub db_reference: f64,
    /// Floor applied before the logarithm (`amin`).
    pub amin: f64,
    /// Dynamic range kept below the maximum, in dB (`top_db`); `None` keeps everything.
    pub top_db: Option<f64>,
    /// Per-window normalisation applied by [`LogMelExtractor::extract`].
    pub normalization: LogMelNormalization,
}

impl Default for LogMelConfig {
    fn default() -> Self {
        LogMelConfig {
            mel_bins: 128,
            n_fft: 2048,
            hop_length: None,
            frames_per_window: 128,
            window_seconds: 5.0,
            fmin_hz: 0.0,
            fmax_hz: None,
            power: 2.0,
            db_reference: 1.0,
            amin: 1e-10,
            top_db: Some(80.0),
            normalization: LogMelNormalization::PerWindowMax,
        }
    }
}

/// Number of centred frames librosa produces for `signal_len` samples.
pub fn centred_frame_count(signal_len: usize, n_fft: usize, hop: usize) -> usize {
    let padded = signal_len + 2 * (n_fft / 2);
    if padded < n_fft || hop == 0 {
        return 0;
    }
    1 + (padded - n_fft) / hop
}

impl LogMelConfig {
    /// The frame hop in samples at `sample_rate`.
    ///
    /// When derived: `hop = floor(window_samples / (frames_per_window - 1))`, so that centred
    /// framing of exactly one window gives `frames_per_window` frames whose centres run from the
    /// first to (nearly) the last sample. At 32 kHz and 5 s: 160000 / 127 -> 1259.
    pub fn hop_samples(&self, sample_rate: u32) -> Result<usize, AudioError> {
        let invalid = |reason: String| AudioError::InvalidLogMelConfig { reason };
        if let Some(hop) = self.hop_length {
            if hop == 0 {
                return Err(invalid("hop_length must be at least 1".to_string()));
            }
            return Ok(hop);
        }
        if self.frames_per_window < 2 {
            return Err(invalid(format!(
                "frames_per_window must be at least 2 to derive a hop, got {}",
                self.frames_per_window
            )));
        }
        if !self.window_seconds.is_finite() || self.window_seconds <= 0.0 {
            return Err(invalid(format!("window_seconds must be positive, got {}", self.window_seconds)));
        }
        let window_samples = (self.window_seconds * f64::from(sample_rate)).round() as usize;
        let hop = window_samples / (self.frames_per_window - 1);
        if hop == 0 || centred_frame_count(window_samples, self.n_fft, hop) != self.frames_per_window {
            return Err(invalid(format!(
                "cannot fit {} frames into {} samples ({} s at {sample_rate} hz); use fewer frames per window \
                 or set hop_length explicitly",
                self.frames_per_window, window_samples, self.window_seconds
            )));
        }
        Ok(hop)
    }
}

/// A log-mel spectrogram: `frames x bins`, row-major (`values[frame * bins + bin]`).
#[derive(Debug, Clone, PartialEq)]
pub struct LogMel {
    pub frames: usize,
    pub bins: usize,
    pub values: Vec<f32>,
}

impl LogMel {
    /// Value at (`frame`, `bin`), if in range.
    pub fn get(&self, frame: usize, bin: usize) -> Option<f32> {
        if frame < self.frames && bin < self.bins {
            self.values.get(frame * self.bins + bin).copied()
        } else {
            None
        }
    }
}

/// Slaney mel scale (librosa `hz_to_mel(htk=False)`): linear below 1 kHz, logarithmic above.
pub fn hz_to_mel_slaney(frequency_hz: f64) -> f64 {
    let linear_step_hz = 200.0 / 3.0;
    let log_start_hz = 1000.0;
    let log_start_mel = log_start_hz / linear_step_hz;
    let log_step = 6.4_f64.ln() / 27.0;
    if frequency_hz >= log_start_hz {
        log_start_mel + (frequency_hz / log_start_hz).ln() / log_step
    } else {
        frequency_hz / linear_step_hz
    }
}

/// Inverse of [`hz_to_mel_slaney`].
pub fn mel_to_hz_slaney(mel: f64) -> f64 {
    let linear_step_hz = 200.0 / 3.0;
    let log_start_hz = 1000.0;
    let log_start_mel = log_start_hz / linear_step_hz;
    let log_step = 6.4_f64.ln() / 27.0;
    if mel >= log_start_mel {
        log_start_hz * (log_step * (mel - log_start_mel)).exp()
    } else {
        mel * linear_step_hz
    }
}

/// One triangular mel filter, stored sparsely.
#[derive(Debug, Clone)]
struct MelFilter {
    first_fft_bin: usize,
    weights: Vec<f64>,
}

/// Slaney-normalised mel filterbank as dense rows (`mel_bins x (n_fft / 2 + 1)`), as librosa's
/// `filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False, norm='slaney')`.
pub fn mel_filterbank(sample_rate: u32, n_fft: usize, mel_bins: usize, fmin_hz: f64, fmax_hz: f64) -> Vec<Vec<f64>> {
    let fft_bins = n_fft / 2 + 1;
    let fft_frequencies: Vec<f64> =
        (0..fft_bins).map(|bin| bin as f64 * f64::from(sample_rate) / n_fft as f64).collect();
    let mel_low = hz_to_mel_slaney(fmin_hz);
    let mel_high = hz_to_mel_slaney(fmax_hz);
    let edge_count = mel_bins + 2;
    let edges_hz: Vec<f64> = (0..edge_count)
        .map(|index| {
            let fraction = index as f64 / (edge_count - 1) as f64;
            mel_to_hz_slaney(mel_low + (mel_high - mel_low) * fraction)
        })
        .collect();
    (0..mel_bins)
        .map(|mel| {
            let (lower, centre, upper) = (edges_hz[mel], edges_hz[mel + 1], edges_hz[mel + 2]);
            let area_normalisation = 2.0 / (upper - lower);
            fft_frequencies
                .iter()
                .map(|&frequency| {
                    let rising = (frequency - lower) / (centre - lower);
                    let falling = (upper - frequency) / (upper - centre);
                    rising.min(falling).max(0.0) * area_normalisation
                })
                .collect()
        })
        .collect()
}

/// Reusable log-mel extractor: filterbank, window and FFT plan computed once.
pub struct LogMelExtractor {
    sample_rate: u32,
    config: LogMelConfig,
    hop: usize,
    hann_window: Vec<f64>,
    filters: Vec<MelFilter>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl std::fmt::Debug for LogMelExtractor {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LogMelExtractor")
            .field("sample_rate", &self.sample_rate)
            .field("config", &self.config)
            .field("hop", &self.hop)
            .finish_non_exhaustive()
    }
}

impl LogMelExtractor {
    /// Build an extractor for audio at `sample_rate`, checking the configuration.
    pub fn new(sample_rate: u32, config: &LogMelConfig) -> Result<Self, AudioError> {
        let invalid = |reason: String| AudioError::InvalidLogMelConfig { reason };
        if sample_rate == 0 {
            return Err(invalid("sample rate must be positive".to_string()));
        }
        if config.mel_bins == 0 {
            return Err(invalid("mel_bins must be at least 1".to_string()));
        }
        if config.n_fft < 2 || config.n_fft > 1 << 20 {
            return Err(invalid(format!("n_fft must be between 2 and 1048576, got {}", config.n_fft)));
        }
        let nyquist = f64::from(sample_rate) / 2.0;
        let fmax = config.fmax_hz.unwrap_or(nyquist);
        if !config.fmin_hz.is_finite() || config.fmin_hz < 0.0 || !fmax.is_finite() || fmax > nyquist + 1e-9 {
            return Err(invalid(format!(
                "need 0 <= fmin_hz < fmax_hz <= nyquist ({nyquist} hz), got fmin_hz {} and fmax_hz {fmax}",
                config.fmin_hz
            )));
        }
        if config.fmin_hz >= fmax {
            return Err(invalid(format!("fmin_hz ({}) must be below fmax_hz ({fmax})", config.fmin_hz)));
        }
        if !config.power.is_finite() || config.power <= 0.0 {
            return Err(invalid(format!("power must be positive, got {}", config.power)));
        }
        if !config.db_reference.is_finite() || config.db_reference <= 0.0 {
            return Err(invalid(format!("db_reference must be positive, got {}", config.db_reference)));
        }
        if !config.amin.is_finite() || config.amin <= 0.0 {
            return Err(invalid(format!("amin must be positive, got {}", config.amin)));
        }
        if let Some(top_db) = config.top_db {
            if !top_db.is_finite() || top_db < 0.0 {
                return Err(invalid(format!("top_db must be zero or positive, got {top_db}")));
            }
        }
        let hop = config.hop_samples(sample_rate)?;
        let n_fft = config.n_fft;
        let hann_window = (0..n_fft)
            .map(|index| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * index as f64 / n_fft as f64).cos())
            .collect();
        let filters = mel_filterbank(sample_rate, n_fft, config.mel_bins, config.fmin_hz, fmax)
            .into_iter()
            .map(|row| {
                let first = row.iter().position(|&weight| weight > 0.0).unwrap_or(0);
                let last = row.iter().rposition(|&weight| weight > 0.0).map(|at| at + 1).unwrap_or(0);
                MelFilter {
                    first_fft_bin: first,
                    weights: row.get(first..last.max(first)).map(<[f64]>::to_vec).unwrap_or_default(),
                }
            })
            .collect();
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n_fft);
        Ok(LogMelExtractor { sample_rate, config: config.clone(), hop, hann_window, filters, fft })
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    pub fn config(&self) -> &LogMelConfig {
        &self.config
    }

    /// Frame hop in samples.
    pub fn hop_samples(&self) -> usize {
        self.hop
    }

    /// Frames produced for `signal_len` samples.
    pub fn frame_count(&self, signal_len: usize) -> usize {
        centred_frame_count(signal_len, self.config.n_fft, self.hop)
    }

    /// Mel power spectrogram (before dB), `frames x bins` row-major, in f64.
    pub fn mel_power(&self, samples: &[f32]) -> (usize, Vec<f64>) {
        let n_fft = self.config.n_fft;
        let half = n_fft / 2;
        let frames = self.frame_count(samples.len());
        let bins = self.filters.len();
        let mut output = vec![0.0; frames * bins];
        let mut frame_buffer = self.fft.make_input_vec();
        let mut spectrum: Vec<Complex<f64>> = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power_spectrum = vec![0.0; spectrum.len()];
        for frame in 0..frames {
            // Padded index p maps to signal index p - half; outside the signal is zero.
            let padded_start = frame * self.hop;
            for (offset, value) in frame_buffer.iter_mut().enumerate() {
                let padded_index = padded_start + offset;
                let sample = padded_index
                    .checked_sub(half)
                    .and_then(|signal_index| samples.get(signal_index))
                    .copied()
                    .unwrap_or(0.0);
                *value = f64::from(sample) * self.hann_window[offset];
            }
            if self.fft.process_with_scratch(&mut frame_buffer, &mut spectrum, &mut scratch).is_err() {
                // Only possible with mismatched buffer lengths, which make_*_vec rules out.
                continue;
            }
            let power = self.config.power;
            for (target, value) in power_spectrum.iter_mut().zip(&spectrum) {
                let squared = value.norm_sqr();
                *target = if power == 2.0 { squared } else { squared.sqrt().powf(power) };
            }
            let row = &mut output[frame * bins..(frame + 1) * bins];
            for (target, filter) in row.iter_mut().zip(&self.filters) {
                let end = (filter.first_fft_bin + filter.weights.len()).min(power_spectrum.len());
                *target = power_spectrum[filter.first_fft_bin..end]
                    .iter()
                    .zip(&filter.weights)
                    .map(|(power, weight)| power * weight)
                    .sum();
            }
        }
        (frames, output)
    }

    /// Log-mel in dB (librosa `power_to_db` of the mel spectrogram), before normalisation.
    pub fn extract_decibels(&self, samples: &[f32]) -> LogMel {
        let (frames, power) = self.mel_power(samples);
        let reference_db = 10.0 * self.config.db_reference.max(self.config.amin).log10();
        let mut decibels: Vec<f64> =
            power.iter().map(|&value| 10.0 * value.max(self.config.amin).log10() - reference_db).collect();
        if let Some(top_db) = self.config.top_db {
            let maximum = decibels.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let floor = maximum - top_db;
            decibels.iter_mut().for_each(|value| *value = value.max(floor));
        }
        LogMel { frames, bins: self.filters.len(), values: decibels.into_iter().map(|value| value as f32).collect() }
    }

    /// Log-mel in dB with the configured per-window normalisation applied.
    pub fn extract(&self, samples: &[f32]) -> LogMel {
        let mut log_mel = self.extract_decibels(samples);
        normalize(&mut log_mel.values, self.config.normalization);
        log_mel
    }
}

/// Apply a per-window normalisation in place.
pub fn normalize(values: &mut [f32], normalization: LogMelNormalization) {
    if values.is_empty() {
        return;
    }
    match normalization {
        LogMelNormalization::GlobalRef => {}
        LogMelNormalization::PerWindowMax => {
            let maximum = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            values.iter_mut().for_each(|value| *value -= maximum);
        }
        LogMelNormalization::Standardize => {
            let count = values.len() as f64;
            let mean = values.iter().map(|&value| f64::from(value)).sum::<f64>() / count;
            let variance = values.iter().map(|&value| (f64::from(value) - mean).powi(2)).sum::<f64>() / count;
            // A constant window (digital silence) has zero spread: centre it, do not blow it up.
            let scale = if variance > 1e-12 { 1.0 / variance.sqrt() } else { 1.0 };
            values.iter_mut().for_each(|value| *value = ((f64::from(*value) - mean) * scale) as f32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn noise(count: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..count)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn defaults_give_128_by_128_per_5_second_window_at_32_khz() {
        let extractor = LogMelExtractor::new(32_000, &LogMelConfig::default()).unwrap();
        assert_eq!(extractor.hop_samples(), 1_259);
        let log_mel = extractor.extract(&noise(160_000, 1));
        assert_eq!((log_mel.frames, log_mel.bins), (128, 128));
        assert_eq!(log_mel.values.len(), 128 * 128);
        assert!(log_mel.values.iter().all(|value| value.is_finite()));
    }

    #[test]
    fn slaney_mel_scale_matches_known_values() {
        // librosa.hz_to_mel(1000.0) == 15.0, hz_to_mel(440.0) == 6.6, hz_to_mel(8000.0) == 45.245640471924965 (librosa 0.11)
        assert!((hz_to_mel_slaney(1_000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel_slaney(440.0) - 6.6).abs() < 1e-12);
        assert!((hz_to_mel_slaney(8_000.0) - 45.245_640_471_924_965).abs() < 1e-9);
        for frequency in [0.0, 50.0, 999.0, 1_000.0, 4_321.0, 16_000.0] {
            assert!((mel_to_hz_slaney(hz_to_mel_slaney(frequency)) - frequency).abs() < 1e-9);
        }
    }

    #[test]
    fn filterbank_triangles_are_slaney_area_normalised() {
        let bank = mel_filterbank(32_000, 2_048, 128, 0.0, 16_000.0);
        assert_eq!(bank.len(), 128);
        let bin_hz = 32_000.0 / 2_048.0;
        for (index, row) in bank.iter().enumerate() {
            assert_eq!(row.len(), 1_025);
            assert!(row.iter().all(|&weight| weight >= 0.0));
            assert!(row.iter().any(|&weight| weight > 0.0), "filter {index} is empty");
            // Area normalisation: each triangle integrates to about 1 over frequency.
            let area: f64 = row.iter().sum::<f64>() * bin_hz;
            if index > 4 {
                assert!((area - 1.0).abs() < 0.1, "filter {index} area {area}");
            }
        }
    }

    #[test]
    fn a_tone_lights_up_the_mel_bin_containing_it() {
        let extractor = LogMelExtractor::new(32_000, &LogMelConfig::default()).unwrap();
        let tone: Vec<f32> = (0..32_000)
            .map(|index| (2.0 * std::f64::consts::PI * 2_000.0 * index as f64 / 32_000.0).sin() as f32)
            .collect();
        let log_mel = extractor.extract_decibels(&tone);
        let middle_frame = log_mel.frames / 2;
        let row = &log_mel.values[middle_frame * log_mel.bins..(middle_frame + 1) * log_mel.bins];
        let loudest =
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (bin, &value)| if value > best.1 { (bin, value) } else { best });
        let edges: Vec<f64> =
            (0..130).map(|index| mel_to_hz_slaney(hz_to_mel_slaney(16_000.0) * index as f64 / 129.0)).collect();
        assert!(edges[loudest.0] < 2_000.0 && 2_000.0 < edges[loudest.0 + 2], "loudest bin {}", loudest.0);
    }

    #[test]
    fn silence_gives_the_amin_floor_not_nan() {
        let extractor = LogMelExtractor::new(32_000, &LogMelConfig::default()).unwrap();
        let log_mel = extractor.extract_decibels(&vec![0.0; 16_000]);
        assert!(log_mel.values.iter().all(|&value| (value + 100.0).abs() < 1e-4));
        for normalization in
            [LogMelNormalization::PerWindowMax, LogMelNormalization::GlobalRef, LogMelNormalization::Standardize]
        {
            let mut values = log_mel.values.clone();
            normalize(&mut values, normalization);
            assert!(values.iter().all(|value| value.is_finite()), "{normalization:?}");
        }
    }

    #[test]
    fn per_window_max_puts_the_peak_at_zero_db_and_keeps_top_db_of_range() {
        let config = LogMelConfig::default();
        let extractor = LogMelExtractor::new(32_000, &config).unwrap();
        let signal: Vec<f32> = noise(160_000, 3).iter().map(|value| value * 0.01).collect();
        let decibels = extractor.extract_decibels(&signal);
        let normalised = extractor.extract(&signal);
        let maximum = decibels.values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let normalised_maximum = normalised.values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let normalised_minimum = normalised.values.iter().copied().fold(f32::INFINITY, f32::min);
        assert!(maximum < -5.0, "quiet noise should sit below 0 db re 1, got {maximum}");
        assert_eq!(normalised_maximum, 0.0);
        assert!(normalised_minimum >= -80.0 - 1e-4);
        for (before, after) in decibels.values.iter().zip(&normalised.values) {
            assert!((before - maximum - after).abs() < 1e-4);
        }
    }

    #[test]
    fn global_ref_keeps_absolute_levels_so_louder_input_reads_louder() {
        let config = LogMelConfig { normalization: LogMelNormalization::GlobalRef, ..LogMelConfig::default() };
        let extractor = LogMelExtractor::new(32_000, &config).unwrap();
        let quiet = noise(32_000, 5);
        let loud: Vec<f32> = quiet.iter().map(|value| value * 10.0).collect();
        let quiet_mel = extractor.extract(&quiet);
        let loud_mel = extractor.extract(&loud);
        assert_eq!(quiet_mel, extractor.extract_decibels(&quiet));
        // x10 amplitude = +20 db in every bin (no clipping at this level)
        for (quiet_value, loud_value) in quiet_mel.values.iter().zip(&loud_mel.values) {
            assert!((loud_value - quiet_value - 20.0).abs() < 1e-3);
        }
    }

    #[test]
    fn standardize_gives_zero_mean_and_unit_variance() {
        let config = LogMelConfig { normalization: LogMelNormalization::Standardize, ..LogMelConfig::default() };
        let extractor = LogMelExtractor::new(32_000, &config).unwrap();
        let log_mel = extractor.extract(&noise(160_000, 9));
        let count = log_mel.values.len() as f64;
        let mean = log_mel.values.iter().map(|&value| f64::from(value)).sum::<f64>() / count;
        let variance = log_mel.values.iter().map(|&value| (f64::from(value) - mean).powi(2)).sum::<f64>() / count;
        assert!(mean.abs() < 1e-4, "mean {mean}");
        assert!((variance - 1.0).abs() < 1e-3, "variance {variance}");
    }

    #[test]
    fn json_with_omitted_fields_equals_the_defaults() {
        let empty: LogMelConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, LogMelConfig::default());
        let normalization: LogMelConfig = serde_json::from_str(r#"{"normalization":"standardize"}"#).unwrap();
        assert_eq!(normalization.normalization, LogMelNormalization::Standardize);
        let text = serde_json::to_string(&LogMelConfig::default()).unwrap();
        assert!(text.contains(r#""normalization":"per_window_max""#), "{text}");
        assert!(serde_json::from_str::<LogMelConfig>(r#"{"n_mels":64}"#).is_err());
    }

    #[test]
    fn invalid_configurations_are_rejected() {
        let base = LogMelConfig::default();
        let cases = [
            LogMelConfig { mel_bins: 0, ..base.clone() },
            LogMelConfig { n_fft: 1, ..base.clone() },
            LogMelConfig { fmin_hz: 9_000.0, fmax_hz: Some(8_000.0), ..base.clone() },
            LogMelConfig { fmax_hz: Some(20_000.0), ..base.clone() },
            LogMelConfig { power: 0.0, ..base.clone() },
            LogMelConfig { db_reference: -1.0, ..base.clone() },
            LogMelConfig { amin: 0.0, ..base.clone() },
            LogMelConfig { top_db: Some(-3.0), ..base.clone() },
            LogMelConfig { hop_length: Some(0), ..base.clone() },
            LogMelConfig { frames_per_window: 1, ..base.clone() },
            LogMelConfig { frames_per_window: 100_000, ..base.clone() },
        ];
        for case in cases {
            assert!(
                matches!(LogMelExtractor::new(32_000, &case), Err(AudioError::InvalidLogMelConfig { .. })),
                "{case:?} should be rejected"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn frame_count_follows_librosa_centring_for_any_length_and_hop(
            length in 0usize..20_000,
            hop in 1usize..3_000,
            n_fft_power in 6u32..12,
        ) {
            let n_fft = 1usize << n_fft_power;
            let config = LogMelConfig { n_fft, hop_length: Some(hop), mel_bins: 16, ..LogMelConfig::default() };
            let extractor = LogMelExtractor::new(16_000, &config).unwrap();
            let log_mel = extractor.extract(&noise(length, length as u64));
            prop_assert_eq!(log_mel.frames, 1 + length / hop);
            prop_assert_eq!(log_mel.bins, 16);
            prop_assert_eq!(log_mel.values.len(), log_mel.frames * 16);
            prop_assert!(log_mel.values.iter().all(|value| value.is_finite()));
        }

        #[test]
        fn derived_hop_gives_exactly_the_requested_frames_per_window(
            frames in 2usize..400,
            rate_index in 0usize..3,
            seconds in 1.0f64..10.0,
        ) {
            let rate = [16_000u32, 32_000, 48_000][rate_index];
            let config = LogMelConfig { frames_per_window: frames, window_seconds: seconds, ..LogMelConfig::default() };
            let window_samples = (seconds * f64::from(rate)).round() as usize;
            if let Ok(hop) = config.hop_samples(rate) {
                prop_assert_eq!(centred_frame_count(window_samples, config.n_fft, hop), frames);
            } else {
                // only refused when the frames cannot fit
                prop_assert!(window_samples < frames * frames);
            }
        }
    }
}
