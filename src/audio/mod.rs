//! The audio front end: decode -> downmix to mono -> resample -> fixed windows -> log-mel.
//!
//! Pure and streaming: every stage is a function or an iterator over bounded buffers, so a
//! multi-hour recording never sits in memory whole.
//!
//! Module map:
//! - [`decode`]: symphonia probing ([`probe`]) and chunked decoding to mono at the native rate,
//!   plus [`read_samples_range`] to serve a window's audio back;
//! - [`resample`]: rubato `Fft` streaming resampler, aligned and exactly `round(n * out / in)` long;
//! - [`windows`]: [`WindowConfig`], the pure [`plan_windows`] and the streaming [`windows::Windower`];
//! - [`logmel`]: [`LogMelConfig`] and [`LogMelExtractor`], matching librosa;
//! - [`stream`]: [`WindowStream`] and [`LogMelWindowStream`], the iterators the worker consumes;
//! - [`error`]: [`AudioError`] and the non-fatal [`AudioWarning`] / [`DecodeWarning`].

pub mod decode;
pub mod error;
pub mod logmel;
pub mod resample;
pub mod stream;
pub mod windows;

#[cfg(test)]
mod tests;

pub use decode::{probe, read_samples_range, AudioProbe, DecodedAudio, MAXIMUM_SAMPLE_RATE, MINIMUM_SAMPLE_RATE};
pub use error::{AudioError, AudioWarning, DecodeWarning};
pub use logmel::{LogMel, LogMelConfig, LogMelExtractor, LogMelNormalization};
pub use resample::{resample_all, resampled_length, StreamingResampler};
pub use stream::{FeatureWindow, LogMelWindowStream, WindowStream};
pub use windows::{plan_windows, ShortFilePolicy, Window, WindowConfig, WindowPlan};

/// Perch's input sample rate.
pub const PERCH_SAMPLE_RATE: u32 = 32_000;
