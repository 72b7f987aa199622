//! The one error type of the audio front end, and the non-fatal warnings a stream collects.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything that can go wrong between a file on disk and log-mel windows.
///
/// Messages are lowercase, name the file, and say what a person can do about it.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error(
        "could not read {path}: {}; check that the file exists and is readable",
        .source.to_string().to_lowercase()
    )]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is empty (0 bytes); the upload or copy probably failed, copy the recording again")]
    EmptyFile { path: PathBuf },

    #[error("{path} is not a recognised audio file ({reason}); supported formats are wav, mp3 and flac")]
    NotAudio { path: PathBuf, reason: String },

    #[error("{path} has a damaged header ({reason}); try repairing or re-exporting it with sox or ffmpeg")]
    CorruptHeader { path: PathBuf, reason: String },

    #[error("{path} uses the audio codec {codec}, which is not supported; convert it to wav or flac first")]
    UnsupportedCodec { path: PathBuf, codec: String },

    #[error("{path} declares zero audio channels; the header is damaged, re-export the recording")]
    ZeroChannels { path: PathBuf },

    #[error(
        "{path} declares a sample rate of {sample_rate} hz, outside the plausible range \
         {minimum}..={maximum} hz; the header is probably damaged"
    )]
    AbsurdSampleRate { path: PathBuf, sample_rate: u64, minimum: u32, maximum: u32 },

    #[error("{path} has no sample rate in its header; re-export the recording with an explicit sample rate")]
    MissingSampleRate { path: PathBuf },

    #[error(
        "{path} contains a non-finite sample (nan or infinity) at {seconds:.6} s (sample {sample_index}); \
         the float data is corrupt, re-export the recording"
    )]
    NonFiniteSamples { path: PathBuf, seconds: f64, sample_index: u64 },

    #[error("{path}: decoding failed before any audio could be read ({reason}); the file is probably corrupt")]
    DecodeFailed { path: PathBuf, reason: String },

    #[error("invalid window configuration: {reason}")]
    InvalidWindowConfig { reason: String },

    #[error("invalid log-mel configuration: {reason}")]
    InvalidLogMelConfig { reason: String },

    #[error("the target sample rate {sample_rate} hz is outside {minimum}..={maximum} hz; perch models expect 32000")]
    InvalidTargetSampleRate { sample_rate: u32, minimum: u32, maximum: u32 },

    #[error("cannot resample from {input_rate} hz to {output_rate} hz: {reason}")]
    Resampler { input_rate: u32, output_rate: u32, reason: String },

    #[error("invalid sample range for {path}: {reason}")]
    InvalidRange { path: PathBuf, reason: String },
}

/// Decoding stopped early or skipped damaged data, but everything before it is usable.
///
/// A recording cut off mid-frame is common (a recorder that lost power); the stream yields all the
/// good windows and records one of these instead of failing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecodeWarning {
    /// Seconds of audio (at the file's native rate) decoded successfully before the problem.
    pub seconds_decoded: f64,
    /// How far into the file the reader had got when the problem was seen. The reader reads ahead,
    /// so this is an upper bound within one read buffer (32 KiB), not the exact damaged byte.
    pub byte_offset: Option<u64>,
    /// What happened, in words a person can act on.
    pub reason: String,
}

/// A non-fatal problem the caller should show to the person who uploaded the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AudioWarning {
    /// Decoding stopped before the end of the file, or damaged packets were replaced by silence.
    Decode(DecodeWarning),
    /// The file is shorter than one window and the short-file policy is `skip`.
    ShortFileSkipped {
        /// Samples the file had, at the target rate.
        file_samples: u64,
        /// Samples one window needs, at the target rate.
        window_samples: u64,
        message: String,
    },
}

impl AudioWarning {
    /// A one-line human description.
    pub fn message(&self) -> String {
        match self {
            AudioWarning::Decode(warning) => format!(
                "decoding stopped or skipped data after {:.3} s{}: {}",
                warning.seconds_decoded,
                warning.byte_offset.map(|offset| format!(" (near byte {offset})")).unwrap_or_default(),
                warning.reason
            ),
            AudioWarning::ShortFileSkipped { message, .. } => message.clone(),
        }
    }
}
