//! Cutting a mono stream into fixed-length windows.
//!
//! Rules (the pure [`plan_windows`] and the streaming [`Windower`] follow the same ones):
//! - windows start at `k * hop` samples and are `window` samples long, while they fit in the file;
//! - if the file does not divide evenly, one more window is shifted back to end exactly at the end
//!   of the file (marked `overlapped`), so no window is zero-padded in the middle of a recording;
//! - a file shorter than one window gives, with `pad`, one window zero-padded after the audio
//!   (marked `padded`), and with `skip`, no windows and a warning;
//! - an empty stream gives no windows.

use serde::{Deserialize, Serialize};

use super::error::AudioError;

/// What to do with a file shorter than one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShortFilePolicy {
    /// One window: the audio followed by zeros.
    #[default]
    Pad,
    /// No windows, and a warning.
    Skip,
}

/// How to cut the stream. Serialised into the encoding signature, so omitted JSON fields take the
/// defaults: `{}` equals `{"window_seconds":5.0,"hop_seconds":5.0,"short_file":"pad"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowConfig {
    /// Window length in seconds. Default 5.0 (Perch).
    pub window_seconds: f64,
    /// Distance between window starts in seconds; `None` means equal to the window (no overlap).
    pub hop_seconds: Option<f64>,
    /// What to do with files shorter than one window. Default `pad`.
    pub short_file: ShortFilePolicy,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            window_seconds: 5.0,
            hop_seconds: None,
            short_file: ShortFilePolicy::Pad,
        }
    }
}

impl WindowConfig {
    /// The effective hop in seconds.
    pub fn effective_hop_seconds(&self) -> f64 {
        self.hop_seconds.unwrap_or(self.window_seconds)
    }

    /// Window and hop in samples at `sample_rate`, after checking the configuration.
    ///
    /// Errors when the window or hop is not positive or not finite, when the hop exceeds the
    /// window (audio between windows would never be looked at), or when either rounds to zero
    /// samples.
    pub fn samples_at(&self, sample_rate: u32) -> Result<WindowSamples, AudioError> {
        let invalid = |reason: String| AudioError::InvalidWindowConfig { reason };
        let hop_seconds = self.effective_hop_seconds();
        if !self.window_seconds.is_finite() || self.window_seconds <= 0.0 {
            return Err(invalid(format!(
                "window_seconds must be a positive number, got {}",
                self.window_seconds
            )));
        }
        if !hop_seconds.is_finite() || hop_seconds <= 0.0 {
            return Err(invalid(format!("hop_seconds must be a positive number, got {hop_seconds}")));
        }
        if hop_seconds > self.window_seconds {
            return Err(invalid(format!(
                "hop_seconds ({hop_seconds}) is longer than window_seconds ({}); audio between windows \
                 would be skipped, use a hop at most as long as the window",
                self.window_seconds
            )));
        }
        if sample_rate == 0 {
            return Err(invalid("the sample rate must be positive".to_string()));
        }
        let rate = f64::from(sample_rate);
        let window = (self.window_seconds * rate).round();
        let hop = (hop_seconds * rate).round();
        if window < 1.0 || hop < 1.0 {
            return Err(invalid(format!(
                "window ({} s) and hop ({hop_seconds} s) must each be at least one sample at {sample_rate} hz",
                self.window_seconds
            )));
        }
        if window > 1e12 {
            return Err(invalid(format!("window_seconds {} is absurdly long", self.window_seconds)));
        }
        Ok(WindowSamples {
            window: window as u64,
            hop: (hop as u64).min(window as u64),
        })
    }
}

/// Window and hop lengths in samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSamples {
    pub window: u64,
    pub hop: u64,
}

/// Where one window sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedWindow {
    pub index: u64,
    pub start_sample: u64,
    /// Zeros were appended after the audio (file shorter than one window).
    pub padded: bool,
    /// Shifted back to end at the end of the file; overlaps its predecessor more than the hop says.
    pub overlapped: bool,
}

/// The complete window layout of a file, known before decoding (for progress bars).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowPlan {
    pub total_samples: u64,
    pub window_samples: u64,
    pub hop_samples: u64,
    /// Number of regular windows at `k * hop`.
    regular_count: u64,
    /// Start of the extra window shifted back to end at the end of the file, if any.
    shifted_last_start: Option<u64>,
    /// The single zero-padded window of a short file under `pad`.
    padded_single: bool,
    /// True when the file was shorter than a window and the policy was `skip`.
    pub skipped_short_file: bool,
}

impl WindowPlan {
    /// Total number of windows.
    pub fn count(&self) -> u64 {
        self.regular_count + u64::from(self.shifted_last_start.is_some()) + u64::from(self.padded_single)
    }

    /// The `index`-th window, if there is one.
    pub fn window(&self, index: u64) -> Option<PlannedWindow> {
        if self.padded_single {
            return (index == 0).then_some(PlannedWindow {
                index,
                start_sample: 0,
                padded: true,
                overlapped: false,
            });
        }
        if index < self.regular_count {
            return Some(PlannedWindow {
                index,
                start_sample: index * self.hop_samples,
                padded: false,
                overlapped: false,
            });
        }
        match self.shifted_last_start {
            Some(start_sample) if index == self.regular_count => Some(PlannedWindow {
                index,
                start_sample,
                padded: false,
                overlapped: true,
            }),
            _ => None,
        }
    }

    /// All windows in order.
    pub fn windows(&self) -> impl Iterator<Item = PlannedWindow> + '_ {
        (0..self.count()).filter_map(move |index| self.window(index))
    }
}

/// Compute the window layout for `total_samples` at `sample_rate` (pure; no audio needed).
pub fn plan_windows(total_samples: u64, sample_rate: u32, config: &WindowConfig) -> Result<WindowPlan, AudioError> {
    let WindowSamples { window, hop } = config.samples_at(sample_rate)?;
    Ok(plan_windows_in_samples(total_samples, window, hop, config.short_file))
}

/// [`plan_windows`] with lengths already in samples (`window >= hop >= 1`).
pub fn plan_windows_in_samples(
    total_samples: u64,
    window_samples: u64,
    hop_samples: u64,
    short_file: ShortFilePolicy,
) -> WindowPlan {
    let window = window_samples.max(1);
    let hop = hop_samples.clamp(1, window);
    let mut plan = WindowPlan {
        total_samples,
        window_samples: window,
        hop_samples: hop,
        regular_count: 0,
        shifted_last_start: None,
        padded_single: false,
        skipped_short_file: false,
    };
    if total_samples == 0 {
        return plan;
    }
    if total_samples < window {
        match short_file {
            ShortFilePolicy::Pad => plan.padded_single = true,
            ShortFilePolicy::Skip => plan.skipped_short_file = true,
        }
        return plan;
    }
    plan.regular_count = (total_samples - window) / hop + 1;
    let last_regular_end = (plan.regular_count - 1) * hop + window;
    if last_regular_end < total_samples {
        plan.shifted_last_start = Some(total_samples - window);
    }
    plan
}

/// One window of mono audio at the target rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Position in the file's window sequence, from 0.
    pub index: u64,
    /// First sample's position in the resampled stream.
    pub start_sample: u64,
    /// `start_sample / sample_rate`, exact to f64 precision.
    pub start_seconds: f64,
    /// Exactly `window_samples` samples.
    pub samples: Vec<f32>,
    /// Zeros were appended after the audio (file shorter than one window).
    pub padded: bool,
    /// Shifted back to end at the end of the file (overlaps its predecessor more than the hop).
    pub overlapped: bool,
}

/// Streaming window cutter. Keeps at most about one window plus one input chunk of samples.
pub struct Windower {
    sample_rate: u32,
    window: u64,
    hop: u64,
    short_file: ShortFilePolicy,
    /// Samples from `buffer_start` on.
    buffer: Vec<f32>,
    buffer_start: u64,
    total_pushed: u64,
    next_regular_index: u64,
    finished: bool,
}

impl Windower {
    pub fn new(sample_rate: u32, config: &WindowConfig) -> Result<Self, AudioError> {
        let WindowSamples { window, hop } = config.samples_at(sample_rate)?;
        Ok(Windower {
            sample_rate,
            window,
            hop,
            short_file: config.short_file,
            buffer: Vec::new(),
            buffer_start: 0,
            total_pushed: 0,
            next_regular_index: 0,
            finished: false,
        })
    }

    pub fn window_samples(&self) -> u64 {
        self.window
    }

    pub fn hop_samples(&self) -> u64 {
        self.hop
    }

    pub fn total_pushed(&self) -> u64 {
        self.total_pushed
    }

    fn make_window(&self, index: u64, start_sample: u64, padded: bool, overlapped: bool) -> Window {
        let from = (start_sample - self.buffer_start) as usize;
        let to = (from + self.window as usize).min(self.buffer.len());
        let mut samples = Vec::with_capacity(self.window as usize);
        samples.extend_from_slice(&self.buffer[from..to]);
        samples.resize(self.window as usize, 0.0);
        Window {
            index,
            start_sample,
            start_seconds: start_sample as f64 / f64::from(self.sample_rate),
            samples,
            padded,
            overlapped,
        }
    }

    /// Add samples; every window that became complete is appended to `ready`.
    pub fn push(&mut self, samples: &[f32], ready: &mut Vec<Window>) {
        self.buffer.extend_from_slice(samples);
        self.total_pushed += samples.len() as u64;
        loop {
            let start = self.next_regular_index * self.hop;
            if start + self.window > self.total_pushed {
                break;
            }
            ready.push(self.make_window(self.next_regular_index, start, false, false));
            self.next_regular_index += 1;
        }
        // Keep what the next regular window needs, and the last `window` samples for a possible
        // final window shifted back to end at the end of the file.
        let next_start = self.next_regular_index * self.hop;
        let keep_from = next_start.min(self.total_pushed.saturating_sub(self.window));
        if keep_from > self.buffer_start {
            let drop = (keep_from - self.buffer_start) as usize;
            self.buffer.drain(..drop);
            self.buffer_start = keep_from;
        }
    }

    /// End of stream: appends the final shifted or padded window if the plan has one.
    /// Returns the plan for the samples actually seen.
    pub fn finish(&mut self, ready: &mut Vec<Window>) -> WindowPlan {
        let plan = plan_windows_in_samples(self.total_pushed, self.window, self.hop, self.short_file);
        if self.finished {
            return plan;
        }
        self.finished = true;
        for planned in plan.windows().skip(self.next_regular_index as usize) {
            ready.push(self.make_window(
                planned.index,
                planned.start_sample,
                planned.padded,
                planned.overlapped,
            ));
        }
        self.next_regular_index = plan.count();
        self.buffer.clear();
        plan
    }
}
