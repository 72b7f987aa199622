//! Which windows a classifier learns from, pure: each window is labelled by its overlap with the
//! annotations of its recording.
//!
//! For every label (head) a window is
//! - a **positive** when a positive annotation with that label covers at least
//!   `min_overlap_fraction` of the window;
//! - a **negative** when it is not a positive and one of the chosen negative sources covers it by
//!   the same fraction: a `negative` annotation (of any label), or a positive annotation of a label
//!   the classifier does not learn (`other_labels`);
//! - otherwise, when it overlaps no annotation at all and lies in one of the
//!   `unannotated.embedding_set_ids`, a candidate negative: `unannotated.count` of those are drawn
//!   with `unannotated.seed`.
//!
//! A window that is a positive of one head is a negative of the others (one-vs-rest). Windows a
//! positive and a `negative` annotation of the same label both cover are left out as
//! conflicting; windows covered only by `uncertain` annotations are left out.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::clustering::random::SeededRandom;
use crate::clustering_jobs::annotations::LabelledSpan;
use crate::domain::events::AnnotationKind;
use crate::domain::ids::{AudioFileId, EmbeddingSetId};

pub const DEFAULT_MIN_OVERLAP_FRACTION: f64 = 0.5;

/// Unannotated windows drawn as negatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnannotatedNegatives {
    pub embedding_set_ids: Vec<EmbeddingSetId>,
    pub count: usize,
    #[serde(default)]
    pub seed: u64,
}

/// Where negatives come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NegativeSources {
    #[serde(default = "yes")]
    pub negative_annotations: bool,
    #[serde(default = "yes")]
    pub other_labels: bool,
    #[serde(default)]
    pub unannotated: Option<UnannotatedNegatives>,
}

fn yes() -> bool {
    true
}

impl Default for NegativeSources {
    fn default() -> Self {
        NegativeSources { negative_annotations: true, other_labels: true, unannotated: None }
    }
}

/// One window of an embedding set, where it lies in its recording.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowPlace {
    pub embedding_set_id: EmbeddingSetId,
    pub row_index: u64,
    pub audio_file_id: AudioFileId,
    pub start_seconds: f64,
    pub end_seconds: f64,
}

/// The labelled windows: indices into the windows given, and per head whether each is a positive.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledWindows {
    pub windows: Vec<usize>,
    /// `targets[head][i]` for `windows[i]`.
    pub targets: Vec<Vec<bool>>,
    pub description: TrainingSetDescription,
}

/// What a training set was made of, stored with the classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TrainingSetDescription {
    pub windows: usize,
    pub recordings: usize,
    pub positive_windows: BTreeMap<String, usize>,
    pub negative_annotation_windows: usize,
    pub other_label_windows: usize,
    pub unannotated_windows: usize,
    pub conflicting_windows_left_out: usize,
    pub min_overlap_fraction: f64,
}

fn covers(span: &LabelledSpan, window: &WindowPlace, fraction: f64) -> bool {
    let length = window.end_seconds - window.start_seconds;
    let shared = span.end_seconds.min(window.end_seconds) - span.start_seconds.max(window.start_seconds);
    length > 0.0 && shared > 0.0 && shared >= fraction * length
}

fn touches(span: &LabelledSpan, window: &WindowPlace) -> bool {
    span.end_seconds.min(window.end_seconds) - span.start_seconds.max(window.start_seconds) > 0.0
}

#[derive(Clone, Copy, PartialEq)]
enum Source {
    Positive,
    NegativeAnnotation,
    OtherLabel,
}

/// Label the windows. `spans` holds each recording's annotations.
pub fn label_windows(
    windows: &[WindowPlace],
    spans: &BTreeMap<AudioFileId, Vec<LabelledSpan>>,
    labels: &[String],
    negatives: &NegativeSources,
    min_overlap_fraction: f64,
) -> LabelledWindows {
    let learned: BTreeSet<&str> = labels.iter().map(String::as_str).collect();
    let unannotated_sets: BTreeSet<EmbeddingSetId> =
        negatives.unannotated.iter().flat_map(|u| u.embedding_set_ids.iter().copied()).collect();
    let mut chosen: Vec<(usize, Vec<bool>, Source)> = Vec::new();
    let mut unannotated_candidates = Vec::new();
    let mut description = TrainingSetDescription { min_overlap_fraction, ..TrainingSetDescription::default() };
    let no_spans = Vec::new();
    for (index, window) in windows.iter().enumerate() {
        let recording = spans.get(&window.audio_file_id).unwrap_or(&no_spans);
        let covering: Vec<&LabelledSpan> =
            recording.iter().filter(|span| covers(span, window, min_overlap_fraction)).collect();
        let positive_of: Vec<bool> = labels
            .iter()
            .map(|label| covering.iter().any(|s| s.kind == AnnotationKind::Positive && &s.label == label))
            .collect();
        let conflicting = labels.iter().zip(&positive_of).any(|(label, positive)| {
            *positive && covering.iter().any(|s| s.kind == AnnotationKind::Negative && &s.label == label)
        });
        if conflicting {
            description.conflicting_windows_left_out += 1;
            continue;
        }
        if positive_of.iter().any(|p| *p) {
            chosen.push((index, positive_of, Source::Positive));
        } else if negatives.negative_annotations && covering.iter().any(|s| s.kind == AnnotationKind::Negative) {
            chosen.push((index, positive_of, Source::NegativeAnnotation));
        } else if negatives.other_labels
            && covering.iter().any(|s| s.kind == AnnotationKind::Positive && !learned.contains(s.label.as_str()))
        {
            chosen.push((index, positive_of, Source::OtherLabel));
        } else if unannotated_sets.contains(&window.embedding_set_id) && !recording.iter().any(|s| touches(s, window)) {
            unannotated_candidates.push(index);
        }
    }
    let mut picked_unannotated = Vec::new();
    if let Some(unannotated) = &negatives.unannotated {
        let count = unannotated.count.min(unannotated_candidates.len());
        let mut random = SeededRandom::new(unannotated.seed);
        let mut drawn = random.sample_indices(unannotated_candidates.len(), count);
        drawn.sort_unstable();
        picked_unannotated = drawn.into_iter().map(|i| unannotated_candidates[i]).collect();
    }
    for source in &chosen {
        match source.2 {
            Source::Positive => {}
            Source::NegativeAnnotation => description.negative_annotation_windows += 1,
            Source::OtherLabel => description.other_label_windows += 1,
        }
    }
    description.unannotated_windows = picked_unannotated.len();
    let mut rows: Vec<(usize, Vec<bool>)> = chosen.into_iter().map(|(index, targets, _)| (index, targets)).collect();
    rows.extend(picked_unannotated.into_iter().map(|index| (index, vec![false; labels.len()])));
    rows.sort_by_key(|(index, _)| *index);
    let mut targets = vec![Vec::with_capacity(rows.len()); labels.len()];
    for (_, row_targets) in &rows {
        for (head, positive) in row_targets.iter().enumerate() {
            targets[head].push(*positive);
        }
    }
    for (label, head) in labels.iter().zip(&targets) {
        description.positive_windows.insert(label.clone(), head.iter().filter(|p| **p).count());
    }
    let windows_chosen: Vec<usize> = rows.into_iter().map(|(index, _)| index).collect();
    description.windows = windows_chosen.len();
    description.recordings =
        windows_chosen.iter().map(|index| windows[*index].audio_file_id).collect::<BTreeSet<_>>().len();
    LabelledWindows { windows: windows_chosen, targets, description }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: f64, end: f64, label: &str, kind: AnnotationKind) -> LabelledSpan {
        LabelledSpan { start_seconds: start, end_seconds: end, label: label.into(), kind }
    }

    fn windows(set: u64, audio: u64, count: u64) -> Vec<WindowPlace> {
        (0..count)
            .map(|row| WindowPlace {
                embedding_set_id: EmbeddingSetId(set),
                row_index: row,
                audio_file_id: AudioFileId(audio),
                start_seconds: row as f64 * 5.0,
                end_seconds: row as f64 * 5.0 + 5.0,
            })
            .collect()
    }

    #[test]
    fn windows_are_labelled_by_how_much_of_them_an_annotation_covers() {
        let places = windows(1, 1, 8);
        let spans = BTreeMap::from([(
            AudioFileId(1),
            vec![
                span(0.0, 7.4, "song", AnnotationKind::Positive), // covers window 0 fully, window 1 by 48%
                span(10.0, 15.0, "noise", AnnotationKind::Negative), // window 2
                span(15.0, 20.0, "grunt", AnnotationKind::Positive), // window 3: another label
                span(20.0, 25.0, "song", AnnotationKind::Uncertain), // window 4: left out
                span(25.0, 30.0, "song", AnnotationKind::Positive), // window 5 ...
                span(25.0, 30.0, "song", AnnotationKind::Negative), // ... conflicting
            ],
        )]);
        let labelled = label_windows(&places, &spans, &["song".into()], &NegativeSources::default(), 0.5);
        assert_eq!(labelled.windows, vec![0, 2, 3]);
        assert_eq!(labelled.targets, vec![vec![true, false, false]]);
        assert_eq!(labelled.description.negative_annotation_windows, 1);
        assert_eq!(labelled.description.other_label_windows, 1);
        assert_eq!(labelled.description.conflicting_windows_left_out, 1);
        assert_eq!(labelled.description.positive_windows["song"], 1);
        let only_negatives = NegativeSources { other_labels: false, ..NegativeSources::default() };
        let labelled = label_windows(&places, &spans, &["song".into()], &only_negatives, 0.4);
        assert_eq!(labelled.windows, vec![0, 1, 2], "at 40% window 1 counts; grunt is no negative now");
    }

    #[test]
    fn unannotated_windows_are_drawn_with_the_seed_from_the_chosen_sets_only() {
        let mut places = windows(1, 1, 20);
        places.extend(windows(2, 2, 20));
        let spans = BTreeMap::from([(AudioFileId(1), vec![span(0.0, 5.0, "song", AnnotationKind::Positive)])]);
        let negatives = NegativeSources {
            unannotated: Some(UnannotatedNegatives { embedding_set_ids: vec![EmbeddingSetId(1)], count: 5, seed: 3 }),
            ..NegativeSources::default()
        };
        let first = label_windows(&places, &spans, &["song".into()], &negatives, 0.5);
        let second = label_windows(&places, &spans, &["song".into()], &negatives, 0.5);
        assert_eq!(first, second, "the same seed draws the same windows");
        assert_eq!(first.windows.len(), 6);
        assert_eq!(first.windows[0], 0);
        assert!(first.windows[1..].iter().all(|index| (1..20).contains(index)), "{:?}", first.windows);
        assert_eq!(first.description.unannotated_windows, 5);
        assert_eq!(first.description.recordings, 1);
    }

    #[test]
    fn a_positive_of_one_head_is_a_negative_of_the_other() {
        let places = windows(1, 1, 2);
        let spans = BTreeMap::from([(
            AudioFileId(1),
            vec![span(0.0, 5.0, "song", AnnotationKind::Positive), span(5.0, 10.0, "grunt", AnnotationKind::Positive)],
        )]);
        let labels = vec!["song".to_string(), "grunt".to_string()];
        let labelled = label_windows(&places, &spans, &labels, &NegativeSources::default(), 0.5);
        assert_eq!(labelled.targets, vec![vec![true, false], vec![false, true]]);
    }
}
