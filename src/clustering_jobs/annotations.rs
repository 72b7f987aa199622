//! Annotations in clustering, pure: which windows overlap annotations with given labels (to
//! restrict a clustering to them), and each window's reference category for
//! `reference_field: "annotation_label"` (the label of the positive annotation overlapping it
//! most; `(none)` when no positive annotation overlaps it).

use std::collections::BTreeSet;

use crate::domain::events::AnnotationKind;
use crate::domain::ids::AudioFileId;
use crate::domain::state::DomainState;

/// The reference field that compares clusters with the user's own labels.
pub const ANNOTATION_LABEL_FIELD: &str = "annotation_label";
/// The category of a window that no positive annotation overlaps.
pub const NO_ANNOTATION: &str = "(none)";

#[derive(Debug, Clone, PartialEq)]
pub struct LabelledSpan {
    pub start_seconds: f64,
    pub end_seconds: f64,
    pub label: String,
    pub kind: AnnotationKind,
}

/// A recording's annotations, by start time.
pub fn recording_spans(state: &DomainState, audio: AudioFileId) -> Vec<LabelledSpan> {
    let mut spans: Vec<LabelledSpan> = state
        .annotations
        .values()
        .filter(|annotation| annotation.audio_file_id == audio)
        .map(|annotation| LabelledSpan {
            start_seconds: annotation.start_seconds,
            end_seconds: annotation.end_seconds,
            label: annotation.label.clone(),
            kind: annotation.kind,
        })
        .collect();
    spans.sort_by(|a, b| a.start_seconds.total_cmp(&b.start_seconds));
    spans
}

/// Every recording's annotations, by start time, in one pass over the state.
pub fn spans_by_recording(state: &DomainState) -> std::collections::BTreeMap<AudioFileId, Vec<LabelledSpan>> {
    let mut spans: std::collections::BTreeMap<AudioFileId, Vec<LabelledSpan>> = std::collections::BTreeMap::new();
    for annotation in state.annotations.values() {
        spans.entry(annotation.audio_file_id).or_default().push(LabelledSpan {
            start_seconds: annotation.start_seconds,
            end_seconds: annotation.end_seconds,
            label: annotation.label.clone(),
            kind: annotation.kind,
        });
    }
    for recording in spans.values_mut() {
        recording.sort_by(|a, b| a.start_seconds.total_cmp(&b.start_seconds));
    }
    spans
}

fn overlap(span: &LabelledSpan, start: f64, end: f64) -> f64 {
    (span.end_seconds.min(end) - span.start_seconds.max(start)).max(0.0)
}

/// Whether a window overlaps (by more than nothing) an annotation that is not negative and
/// carries one of `labels`.
pub fn overlaps_labels(spans: &[LabelledSpan], start: f64, end: f64, labels: &BTreeSet<String>) -> bool {
    spans.iter().any(|span| {
        span.kind != AnnotationKind::Negative && labels.contains(&span.label) && overlap(span, start, end) > 0.0
    })
}

/// The label of the positive annotation overlapping the window most (ties: the earlier one).
pub fn window_category(spans: &[LabelledSpan], start: f64, end: f64) -> String {
    let mut best: Option<(&LabelledSpan, f64)> = None;
    for span in spans.iter().filter(|span| span.kind == AnnotationKind::Positive) {
        let shared = overlap(span, start, end);
        if shared > 0.0 && best.is_none_or(|(_, most)| shared > most) {
            best = Some((span, shared));
        }
    }
    best.map_or_else(|| NO_ANNOTATION.to_string(), |(span, _)| span.label.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: f64, end: f64, label: &str, kind: AnnotationKind) -> LabelledSpan {
        LabelledSpan { start_seconds: start, end_seconds: end, label: label.into(), kind }
    }

    #[test]
    fn a_window_takes_the_label_of_the_positive_annotation_it_overlaps_most() {
        let spans = vec![
            span(0.0, 1.5, "A", AnnotationKind::Positive),
            span(1.0, 5.0, "B", AnnotationKind::Positive),
            span(0.0, 5.0, "C", AnnotationKind::Negative),
            span(9.0, 9.5, "D", AnnotationKind::Uncertain),
        ];
        assert_eq!(window_category(&spans, 1.0, 4.0), "B");
        assert_eq!(window_category(&spans, 0.0, 1.0), "A");
        assert_eq!(window_category(&spans, 9.0, 10.0), NO_ANNOTATION, "uncertain ones are not a reference");
        assert_eq!(window_category(&spans, 1.5, 1.5), NO_ANNOTATION, "an empty window overlaps nothing");
    }

    #[test]
    fn restricting_by_label_keeps_windows_overlapping_non_negative_annotations_with_that_label() {
        let spans = vec![span(2.0, 3.0, "A", AnnotationKind::Uncertain), span(5.0, 6.0, "A", AnnotationKind::Negative)];
        let labels: BTreeSet<String> = ["A".to_string()].into();
        assert!(overlaps_labels(&spans, 0.0, 2.5, &labels));
        assert!(!overlaps_labels(&spans, 0.0, 2.0, &labels), "touching is not overlapping");
        assert!(!overlaps_labels(&spans, 5.0, 6.0, &labels), "negative annotations do not count");
        assert!(!overlaps_labels(&spans, 2.0, 3.0, &["B".to_string()].into()));
    }
}
