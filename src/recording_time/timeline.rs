//! A folder's recordings on a time line: where they leave gaps and where they overlap.

use serde::Serialize;

use super::{window_start_utc, UtcTime};

/// Differences up to this many seconds are rounding (names have whole seconds), not gaps or overlaps.
pub const TOLERANCE_SECONDS: f64 = 1.0;

#[derive(Debug, Clone, PartialEq)]
pub struct TimelineRecording {
    pub audio_file_id: u64,
    pub start: UtcTime,
    pub duration_seconds: f64,
}

impl TimelineRecording {
    pub fn end(&self) -> UtcTime {
        window_start_utc(self.start, self.duration_seconds)
    }
}

/// Time not covered by any recording, between the end of `after` and the start of `before`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineGap {
    pub after_audio_file_id: u64,
    pub before_audio_file_id: u64,
    pub from: String,
    pub to: String,
    pub seconds: f64,
}

/// Two recordings covering the same time (usually a clock or naming problem).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineOverlap {
    pub audio_file_id: u64,
    pub overlaps_audio_file_id: u64,
    pub from: String,
    pub to: String,
    pub seconds: f64,
}

fn seconds_between(from: UtcTime, to: UtcTime) -> f64 {
    (to.0 - from.0) as f64 / 1e6
}

/// Gaps between consecutive recordings (in start order) and every overlapping pair.
pub fn gaps_and_overlaps(recordings: &[TimelineRecording]) -> (Vec<TimelineGap>, Vec<TimelineOverlap>) {
    let mut sorted: Vec<&TimelineRecording> = recordings.iter().collect();
    sorted.sort_by_key(|recording| (recording.start, recording.audio_file_id));
    let mut gaps = Vec::new();
    let mut overlaps = Vec::new();
    // The recording reaching furthest so far: a gap starts after it, not after the last one.
    let mut furthest: Option<&TimelineRecording> = None;
    for (index, recording) in sorted.iter().enumerate() {
        for earlier in &sorted[..index] {
            let overlap = seconds_between(recording.start, earlier.end().min(recording.end()));
            if overlap > TOLERANCE_SECONDS {
                overlaps.push(TimelineOverlap {
                    audio_file_id: earlier.audio_file_id,
                    overlaps_audio_file_id: recording.audio_file_id,
                    from: recording.start.to_iso8601(),
                    to: earlier.end().min(recording.end()).to_iso8601(),
                    seconds: overlap,
                });
            }
        }
        if let Some(previous) = furthest {
            let gap = seconds_between(previous.end(), recording.start);
            if gap > TOLERANCE_SECONDS {
                gaps.push(TimelineGap {
                    after_audio_file_id: previous.audio_file_id,
                    before_audio_file_id: recording.audio_file_id,
                    from: previous.end().to_iso8601(),
                    to: recording.start.to_iso8601(),
                    seconds: gap,
                });
            }
        }
        if furthest.is_none_or(|previous| recording.end() > previous.end()) {
            furthest = Some(recording);
        }
    }
    (gaps, overlaps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64, duration_seconds: f64, audio_file_id: u64) -> TimelineRecording {
        TimelineRecording { audio_file_id, start: UtcTime(seconds * 1_000_000), duration_seconds }
    }

    #[test]
    fn a_duty_cycle_leaves_gaps_and_a_wrong_clock_overlaps() {
        let recordings = [at(0, 600.0, 1), at(1800, 600.0, 2), at(2100, 600.0, 3), at(2400, 0.5, 4)];
        let (gaps, overlaps) = gaps_and_overlaps(&recordings);
        assert_eq!(gaps.len(), 1);
        assert_eq!((gaps[0].after_audio_file_id, gaps[0].before_audio_file_id, gaps[0].seconds), (1, 2, 1200.0));
        let pairs: Vec<(u64, u64, f64)> =
            overlaps.iter().map(|o| (o.audio_file_id, o.overlaps_audio_file_id, o.seconds)).collect();
        assert_eq!(
            pairs,
            vec![(2, 3, 300.0)],
            "a half-second overlap (4 inside 3) is within tolerance? no: it is 0.5 s"
        );
    }

    #[test]
    fn back_to_back_files_have_neither() {
        let recordings = [at(0, 600.0, 1), at(600, 600.0, 2), at(1201, 600.0, 3)];
        assert_eq!(gaps_and_overlaps(&recordings), (vec![], vec![]));
    }
}
