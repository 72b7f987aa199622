//! Detections, pure: consecutive windows of one recording whose score is at or above the
//! threshold merge into one detection (start of the first, end of the last, max and mean score).
//! Windows are consecutive when the next starts no later than the previous ends (overlapping or
//! touching windows); a window below the threshold, or a gap, ends a detection.

use serde::{Deserialize, Serialize};

/// One scored window of one recording, for one label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredWindow {
    pub row_index: u64,
    pub start_seconds: f64,
    pub end_seconds: f64,
    pub score: f64,
}

/// A run of windows at or above the threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub start_seconds: f64,
    pub end_seconds: f64,
    pub max_score: f64,
    pub mean_score: f64,
    pub windows: usize,
    pub first_row: u64,
    pub last_row: u64,
}

/// Merge the windows (in any order) of one recording and label.
pub fn merge_detections(windows: &[ScoredWindow], threshold: f64) -> Vec<Detection> {
    let mut ordered: Vec<&ScoredWindow> = windows.iter().collect();
    ordered.sort_by(|a, b| a.start_seconds.total_cmp(&b.start_seconds).then(a.row_index.cmp(&b.row_index)));
    let mut detections: Vec<Detection> = Vec::new();
    let mut open: Option<(Detection, f64)> = None; // the detection and its score sum
    for window in ordered {
        if window.score >= threshold {
            match &mut open {
                Some((detection, sum)) if window.start_seconds <= detection.end_seconds => {
                    detection.end_seconds = detection.end_seconds.max(window.end_seconds);
                    detection.max_score = detection.max_score.max(window.score);
                    detection.windows += 1;
                    detection.last_row = window.row_index;
                    *sum += window.score;
                }
                _ => {
                    if let Some((detection, sum)) = open.take() {
                        detections.push(finish(detection, sum));
                    }
                    open = Some((
                        Detection {
                            start_seconds: window.start_seconds,
                            end_seconds: window.end_seconds,
                            max_score: window.score,
                            mean_score: 0.0,
                            windows: 1,
                            first_row: window.row_index,
                            last_row: window.row_index,
                        },
                        window.score,
                    ));
                }
            }
        } else if let Some((detection, sum)) = open.take() {
            detections.push(finish(detection, sum));
        }
    }
    if let Some((detection, sum)) = open {
        detections.push(finish(detection, sum));
    }
    detections
}

fn finish(mut detection: Detection, sum: f64) -> Detection {
    detection.mean_score = sum / detection.windows as f64;
    detection
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn window(row: u64, start: f64, length: f64, score: f64) -> ScoredWindow {
        ScoredWindow { row_index: row, start_seconds: start, end_seconds: start + length, score }
    }

    #[test]
    fn adjacent_windows_above_the_threshold_merge_and_a_low_window_splits_them() {
        let scores = [0.1, 0.9, 0.7, 0.2, 0.8, 0.95, 0.6, 0.3];
        let windows: Vec<ScoredWindow> =
            scores.iter().enumerate().map(|(row, score)| window(row as u64, row as f64 * 5.0, 5.0, *score)).collect();
        let detections = merge_detections(&windows, 0.5);
        assert_eq!(detections.len(), 2);
        assert_eq!((detections[0].start_seconds, detections[0].end_seconds), (5.0, 15.0));
        assert_eq!(detections[0].max_score, 0.9);
        assert!((detections[0].mean_score - 0.8).abs() < 1e-12);
        assert_eq!((detections[1].start_seconds, detections[1].end_seconds, detections[1].windows), (20.0, 35.0, 3));
        assert_eq!((detections[1].first_row, detections[1].last_row), (4, 6));
    }

    #[test]
    fn overlapping_windows_merge_and_a_gap_splits() {
        // hop 2.5 s, 5 s windows; then a gap (a window starting after the previous ended)
        let windows = vec![window(0, 0.0, 5.0, 0.9), window(1, 2.5, 5.0, 0.9), window(2, 20.0, 5.0, 0.9)];
        let detections = merge_detections(&windows, 0.5);
        assert_eq!(detections.len(), 2);
        assert_eq!(detections[0].end_seconds, 7.5);
    }

    proptest! {
        #[test]
        fn every_window_at_or_above_the_threshold_is_in_exactly_one_detection(
            scores in proptest::collection::vec(0.0f64..1.0, 0..60),
            threshold in 0.0f64..1.0,
        ) {
            let windows: Vec<ScoredWindow> =
                scores.iter().enumerate().map(|(row, s)| window(row as u64, row as f64, 1.0, *s)).collect();
            let detections = merge_detections(&windows, threshold);
            let above = scores.iter().filter(|s| **s >= threshold).count();
            prop_assert_eq!(detections.iter().map(|d| d.windows).sum::<usize>(), above);
            for detection in &detections {
                prop_assert!(detection.mean_score >= threshold && detection.mean_score <= detection.max_score + 1e-12);
            }
            for pair in detections.windows(2) {
                prop_assert!(pair[0].end_seconds < pair[1].start_seconds, "detections are separated by a low window");
            }
        }
    }
}
