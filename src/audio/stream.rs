//! The streaming pipeline: decode -> downmix -> resample -> windows (-> log-mel), as iterators with
//! bounded buffers. Memory stays flat regardless of the file's length: one decoded packet, one
//! resampler chunk and about one window of samples are held at a time.

use std::collections::VecDeque;
use std::path::Path;

use super::decode::{AudioProbe, DecodedAudio, MAXIMUM_SAMPLE_RATE, MINIMUM_SAMPLE_RATE};
use super::error::{AudioError, AudioWarning};
use super::logmel::{LogMel, LogMelExtractor};
use super::resample::{resampled_length, StreamingResampler};
use super::windows::{plan_windows, Window, WindowConfig, WindowPlan, Windower};

/// Windows of mono audio at the target rate, read from a file as they are needed.
///
/// Yields `Ok(Window)` in order. A typed error ends the stream (the next call returns `None`).
/// A truncated or partly damaged file yields every good window and records a warning, readable
/// with [`WindowStream::warnings`] once the iterator is exhausted.
pub struct WindowStream {
    decoded: DecodedAudio,
    resampler: StreamingResampler,
    windower: Windower,
    target_sample_rate: u32,
    resampled: Vec<f32>,
    batch: Vec<Window>,
    ready: VecDeque<Window>,
    planned_window_count: Option<u64>,
    final_plan: Option<WindowPlan>,
    own_warnings: Vec<AudioWarning>,
    done: bool,
}

impl std::fmt::Debug for WindowStream {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("WindowStream")
            .field("probe", self.decoded.probe())
            .field("target_sample_rate", &self.target_sample_rate)
            .field("planned_window_count", &self.planned_window_count)
            .finish_non_exhaustive()
    }
}

impl WindowStream {
    /// Open `path` and prepare to stream windows resampled to `target_sample_rate` (Perch: 32000).
    ///
    /// Fails early, before any decoding, on unreadable files, unsupported formats, damaged headers
    /// and invalid window configurations.
    pub fn open(path: &Path, target_sample_rate: u32, config: &WindowConfig) -> Result<Self, AudioError> {
        if !(MINIMUM_SAMPLE_RATE..=MAXIMUM_SAMPLE_RATE).contains(&target_sample_rate) {
            return Err(AudioError::InvalidTargetSampleRate {
                sample_rate: target_sample_rate,
                minimum: MINIMUM_SAMPLE_RATE,
                maximum: MAXIMUM_SAMPLE_RATE,
            });
        }
        let windower = Windower::new(target_sample_rate, config)?;
        let decoded = DecodedAudio::open(path)?;
        let native_rate = decoded.sample_rate();
        let resampler = StreamingResampler::new(native_rate, target_sample_rate)?;
        let planned_window_count = decoded
            .probe()
            .frame_count
            .map(|frames| resampled_length(frames, native_rate, target_sample_rate))
            .map(|samples| plan_windows(samples, target_sample_rate, config).map(|plan| plan.count()))
            .transpose()?;
        Ok(WindowStream {
            decoded,
            resampler,
            windower,
            target_sample_rate,
            resampled: Vec::new(),
            batch: Vec::new(),
            ready: VecDeque::new(),
            planned_window_count,
            final_plan: None,
            own_warnings: Vec::new(),
            done: false,
        })
    }

    /// What the file's header says.
    pub fn probe(&self) -> &AudioProbe {
        self.decoded.probe()
    }

    pub fn target_sample_rate(&self) -> u32 {
        self.target_sample_rate
    }

    /// Samples per window at the target rate.
    pub fn window_samples(&self) -> u64 {
        self.windower.window_samples()
    }

    /// Number of windows the header's frame count implies, for progress bars; `None` when the
    /// container does not state its length. Exact for WAV and FLAC; for MP3 it rests on the frame
    /// count (see [`AudioProbe::frame_count`]); a truncated file yields fewer. The windows actually
    /// yielded are authoritative.
    pub fn planned_window_count(&self) -> Option<u64> {
        self.planned_window_count
    }

    /// The plan for the samples actually decoded; available once the stream is exhausted.
    pub fn final_plan(&self) -> Option<&WindowPlan> {
        self.final_plan.as_ref()
    }

    /// Warnings so far: decode problems (truncation, damaged packets) and a skipped short file.
    pub fn warnings(&self) -> Vec<AudioWarning> {
        self.decoded
            .warnings()
            .iter()
            .cloned()
            .map(AudioWarning::Decode)
            .chain(self.own_warnings.iter().cloned())
            .collect()
    }

    fn pull(&mut self) -> Result<(), AudioError> {
        match self.decoded.next_chunk()? {
            Some(chunk) => {
                self.resampled.clear();
                self.resampler.process(chunk, &mut self.resampled)?;
                self.windower.push(&self.resampled, &mut self.batch);
            }
            None => {
                self.resampled.clear();
                self.resampler.finish(&mut self.resampled)?;
                self.windower.push(&self.resampled, &mut self.batch);
                let plan = self.windower.finish(&mut self.batch);
                if plan.skipped_short_file {
                    self.own_warnings.push(AudioWarning::ShortFileSkipped {
                        file_samples: plan.total_samples,
                        window_samples: plan.window_samples,
                        message: format!(
                            "the file is shorter than one window: it has {} samples at {} hz ({:.3} s) and a \
                             window needs {} samples; no windows were produced (short_file policy is skip, \
                             use pad to keep it)",
                            plan.total_samples,
                            self.target_sample_rate,
                            plan.total_samples as f64 / f64::from(self.target_sample_rate),
                            plan.window_samples
                        ),
                    });
                }
                self.final_plan = Some(plan);
                self.done = true;
            }
        }
        self.ready.extend(self.batch.drain(..));
        Ok(())
    }
}

impl Iterator for WindowStream {
    type Item = Result<Window, AudioError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(window) = self.ready.pop_front() {
                return Some(Ok(window));
            }
            if self.done {
                return None;
            }
            if let Err(error) = self.pull() {
                self.done = true;
                self.ready.clear();
                return Some(Err(error));
            }
        }
    }
}

/// A window together with its log-mel spectrogram.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureWindow {
    pub window: Window,
    pub log_mel: LogMel,
}

/// [`WindowStream`] followed by log-mel extraction, still streaming.
pub struct LogMelWindowStream {
    windows: WindowStream,
    extractor: LogMelExtractor,
}

impl LogMelWindowStream {
    /// The extractor must work at the stream's target rate.
    pub fn new(windows: WindowStream, extractor: LogMelExtractor) -> Result<Self, AudioError> {
        if extractor.sample_rate() != windows.target_sample_rate() {
            return Err(AudioError::InvalidLogMelConfig {
                reason: format!(
                    "the extractor is built for {} hz but the windows are at {} hz",
                    extractor.sample_rate(),
                    windows.target_sample_rate()
                ),
            });
        }
        Ok(LogMelWindowStream { windows, extractor })
    }

    /// The underlying window stream (for the plan and warnings).
    pub fn windows(&self) -> &WindowStream {
        &self.windows
    }
}

impl Iterator for LogMelWindowStream {
    type Item = Result<FeatureWindow, AudioError>;

    fn next(&mut self) -> Option<Self::Item> {
        let window = match self.windows.next()? {
            Ok(window) => window,
            Err(error) => return Some(Err(error)),
        };
        let log_mel = self.extractor.extract(&window.samples);
        Some(Ok(FeatureWindow { window, log_mel }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}
    fn assert_sync<T: Sync>() {}

    /// The processing worker moves streams onto blocking threads.
    #[test]
    fn streams_can_move_between_threads() {
        assert_send::<WindowStream>();
        assert_send::<LogMelWindowStream>();
        assert_send::<LogMelExtractor>();
        assert_sync::<LogMelExtractor>();
    }
}
