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
        WindowConfig { window_seconds: 5.0, hop_seconds: None, short_file: ShortFilePolicy::Pad }
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
            return Err(invalid(format!("window_seconds must be a positive number, got {}", self.window_seconds)));
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
        Ok(WindowSamples { window: window as u64, hop: (hop as u64).min(window as u64) })
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
            return (index == 0).then_some(PlannedWindow { index, start_sample: 0, padded: true, overlapped: false });
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
            Some(start_sample) if index == self.regular_count => {
                Some(PlannedWindow { index, start_sample, padded: false, overlapped: true })
            }
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
        let from = (start_sample.saturating_sub(self.buffer_start) as usize).min(self.buffer.len());
        let to = (from + self.window as usize).min(self.buffer.len());
        let mut samples = Vec::with_capacity(self.window as usize);
        samples.extend_from_slice(self.buffer.get(from..to).unwrap_or(&[]));
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
        // Samples before `keep_from` are dead. Dropping them on every push moved the whole kept
        // window (5 s at 32 kHz: 640 kB) once per decoded chunk, 8% of an MP3 stream's
        // instructions; compacting only once the dead part is as long as the live part moves
        // each sample at most about once and keeps the buffer under twice what it must hold.
        if keep_from > self.buffer_start {
            let drop = (keep_from - self.buffer_start) as usize;
            if drop >= self.buffer.len() - drop.min(self.buffer.len()) {
                self.buffer.drain(..drop.min(self.buffer.len()));
                self.buffer_start = keep_from;
            }
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
            ready.push(self.make_window(planned.index, planned.start_sample, planned.padded, planned.overlapped));
        }
        self.next_regular_index = plan.count();
        self.buffer.clear();
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config(window_seconds: f64, hop_seconds: Option<f64>, short_file: ShortFilePolicy) -> WindowConfig {
        WindowConfig { window_seconds, hop_seconds, short_file }
    }

    fn starts(plan: &WindowPlan) -> Vec<u64> {
        plan.windows().map(|window| window.start_sample).collect()
    }

    #[test]
    fn evenly_dividing_file_gives_back_to_back_windows_without_flags() {
        let plan = plan_windows(10_000, 1_000, &WindowConfig::default()).unwrap();
        assert_eq!(plan.count(), 2);
        assert_eq!(starts(&plan), vec![0, 5_000]);
        assert!(plan.windows().all(|window| !window.padded && !window.overlapped));
    }

    #[test]
    fn uneven_file_shifts_the_last_window_back_to_end_at_the_end_of_file() {
        let plan = plan_windows(12_000, 1_000, &WindowConfig::default()).unwrap();
        assert_eq!(starts(&plan), vec![0, 5_000, 7_000]);
        let last = plan.window(2).unwrap();
        assert!(last.overlapped && !last.padded);
        assert!(!plan.window(1).unwrap().overlapped);
        assert_eq!(plan.window(3), None);
    }

    #[test]
    fn overlapping_hop_gives_windows_every_hop_and_a_shifted_tail() {
        let plan = plan_windows(12_000, 1_000, &config(5.0, Some(2.0), ShortFilePolicy::Pad)).unwrap();
        assert_eq!(starts(&plan), vec![0, 2_000, 4_000, 6_000, 7_000]);
        assert!(plan.window(4).unwrap().overlapped);
    }

    #[test]
    fn short_file_is_padded_or_skipped_by_policy() {
        let padded = plan_windows(3_000, 1_000, &config(5.0, None, ShortFilePolicy::Pad)).unwrap();
        assert_eq!(padded.count(), 1);
        let only = padded.window(0).unwrap();
        assert!(only.padded && !only.overlapped);
        assert_eq!(only.start_sample, 0);

        let skipped = plan_windows(3_000, 1_000, &config(5.0, None, ShortFilePolicy::Skip)).unwrap();
        assert_eq!(skipped.count(), 0);
        assert!(skipped.skipped_short_file);
    }

    #[test]
    fn empty_stream_gives_no_windows_under_either_policy() {
        for policy in [ShortFilePolicy::Pad, ShortFilePolicy::Skip] {
            let plan = plan_windows(0, 1_000, &config(5.0, None, policy)).unwrap();
            assert_eq!(plan.count(), 0);
        }
    }

    #[test]
    fn invalid_window_configurations_are_rejected_with_a_reason() {
        let cases = [
            config(5.0, Some(6.0), ShortFilePolicy::Pad),
            config(5.0, Some(0.0), ShortFilePolicy::Pad),
            config(5.0, Some(-1.0), ShortFilePolicy::Pad),
            config(0.0, None, ShortFilePolicy::Pad),
            config(-5.0, None, ShortFilePolicy::Pad),
            config(f64::NAN, None, ShortFilePolicy::Pad),
            config(5.0, Some(f64::INFINITY), ShortFilePolicy::Pad),
            config(0.000_01, None, ShortFilePolicy::Pad),
        ];
        for case in cases {
            match plan_windows(1_000, 1_000, &case) {
                Err(AudioError::InvalidWindowConfig { reason }) => assert!(!reason.is_empty()),
                other => panic!("{case:?} should be rejected, got {other:?}"),
            }
        }
    }

    #[test]
    fn json_with_omitted_fields_equals_the_defaults() {
        let empty: WindowConfig = serde_json::from_str("{}").unwrap();
        let explicit: WindowConfig =
            serde_json::from_str(r#"{"window_seconds":5.0,"hop_seconds":null,"short_file":"pad"}"#).unwrap();
        assert_eq!(empty, WindowConfig::default());
        assert_eq!(explicit, WindowConfig::default());
        let partial: WindowConfig = serde_json::from_str(r#"{"short_file":"skip"}"#).unwrap();
        assert_eq!(partial, config(5.0, None, ShortFilePolicy::Skip));
        let round_trip: WindowConfig = serde_json::from_str(&serde_json::to_string(&partial).unwrap()).unwrap();
        assert_eq!(round_trip, partial);
        assert!(serde_json::from_str::<WindowConfig>(r#"{"hop_second":1.0}"#).is_err());
    }

    #[test]
    fn start_seconds_is_the_exact_sample_position_over_the_rate() {
        let mut windower = Windower::new(32_000, &config(0.5, Some(0.25), ShortFilePolicy::Pad)).unwrap();
        let mut ready = Vec::new();
        windower.push(&vec![0.0; 32_000], &mut ready);
        windower.finish(&mut ready);
        let seconds: Vec<f64> = ready.iter().map(|window| window.start_seconds).collect();
        assert_eq!(seconds, vec![0.0, 0.25, 0.5]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn plan_invariants_hold_for_arbitrary_lengths_rates_and_hops(
            total in 0u64..400_000,
            rate in 1_000u32..96_000,
            window_seconds in 0.01f64..6.0,
            hop_fraction in 0.02f64..=1.0,
            skip in any::<bool>(),
        ) {
            let policy = if skip { ShortFilePolicy::Skip } else { ShortFilePolicy::Pad };
            let cfg = config(window_seconds, Some(window_seconds * hop_fraction), policy);
            let Ok(samples) = cfg.samples_at(rate) else { return Ok(()); };
            let plan = plan_windows(total, rate, &cfg).unwrap();
            let windows: Vec<PlannedWindow> = plan.windows().collect();
            prop_assert_eq!(windows.len() as u64, plan.count());
            for (position, window) in windows.iter().enumerate() {
                prop_assert_eq!(window.index, position as u64);
            }
            if total == 0 {
                prop_assert_eq!(plan.count(), 0);
            } else if total < samples.window {
                prop_assert_eq!(plan.count(), u64::from(!skip));
                prop_assert_eq!(plan.skipped_short_file, skip);
                if !skip {
                    prop_assert!(windows[0].padded && windows[0].start_sample == 0);
                }
            } else {
                let expected_count = (total - samples.window).div_ceil(samples.hop) + 1;
                prop_assert_eq!(plan.count(), expected_count);
                prop_assert_eq!(windows[0].start_sample, 0);
                let last = windows[windows.len() - 1];
                prop_assert_eq!(last.start_sample + samples.window, total);
                prop_assert!(windows.iter().all(|window| !window.padded));
                prop_assert!(windows.iter().all(|window| window.start_sample + samples.window <= total));
                for pair in windows.windows(2) {
                    // strictly increasing, and never a gap between consecutive windows
                    prop_assert!(pair[1].start_sample > pair[0].start_sample);
                    prop_assert!(pair[1].start_sample - pair[0].start_sample <= samples.hop);
                }
                let shifted = (total - samples.window) % samples.hop != 0;
                prop_assert_eq!(last.overlapped, shifted);
                prop_assert!(windows[..windows.len() - 1].iter().all(|window| !window.overlapped));
                prop_assert!(windows
                    .iter()
                    .filter(|window| !window.overlapped)
                    .all(|window| window.start_sample % samples.hop == 0));
            }
        }

        #[test]
        fn streaming_windower_matches_the_plan_for_any_chunking(
            total in 0usize..30_000,
            window in 1u64..4_000,
            hop_fraction in 0.05f64..=1.0,
            chunk in 1usize..5_000,
            skip in any::<bool>(),
        ) {
            let hop = ((window as f64 * hop_fraction).round() as u64).clamp(1, window);
            let rate = 1_000;
            let cfg = config(window as f64 / 1_000.0, Some(hop as f64 / 1_000.0), if skip {
                ShortFilePolicy::Skip
            } else {
                ShortFilePolicy::Pad
            });
            let signal: Vec<f32> = (0..total).map(|index| index as f32 + 1.0).collect();
            let mut windower = Windower::new(rate, &cfg).unwrap();
            let mut ready = Vec::new();
            for piece in signal.chunks(chunk) {
                windower.push(piece, &mut ready);
                // bounded: the live part is at most a window plus one chunk, and the dead part
                // kept before compaction is never longer than the live part
                prop_assert!(windower.buffer.len() as u64 <= 2 * (window + chunk as u64));
            }
            let plan = windower.finish(&mut ready);
            prop_assert_eq!(ready.len() as u64, plan.count());
            for (window_out, planned) in ready.iter().zip(plan.windows()) {
                prop_assert_eq!(window_out.index, planned.index);
                prop_assert_eq!(window_out.start_sample, planned.start_sample);
                prop_assert_eq!(window_out.padded, planned.padded);
                prop_assert_eq!(window_out.overlapped, planned.overlapped);
                prop_assert_eq!(window_out.samples.len() as u64, window);
                let start = planned.start_sample as usize;
                for (offset, value) in window_out.samples.iter().enumerate() {
                    let expected = signal.get(start + offset).copied().unwrap_or(0.0);
                    prop_assert_eq!(*value, expected);
                }
            }
        }
    }
}
