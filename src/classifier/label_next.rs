//! "Label next" (active learning), pure: from a detection job's scores, the windows worth a
//! person's judgement — those whose score sits closest to the threshold (where the classifier is
//! least sure), and the top-scoring windows of recordings nobody has annotated yet (where it may
//! find what the training set never showed). Windows an annotation already touches are left out.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::scores_parquet::ScoresTable;
use super::training_set::WindowPlace;
use crate::clustering_jobs::annotations::LabelledSpan;
use crate::domain::ids::AudioFileId;

/// Why a window is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelNextReason {
    /// Its score is among those closest to the threshold.
    NearThreshold,
    /// It scores high in a recording that has no annotation yet.
    TopInUnannotatedRecording,
}

/// One window to judge: the label whose score decided it, and that score.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelNextWindow {
    pub place: WindowPlace,
    pub label: String,
    pub score: f64,
    pub reason: LabelNextReason,
}

fn touches_an_annotation(spans: Option<&Vec<LabelledSpan>>, place: &WindowPlace) -> bool {
    spans.is_some_and(|spans| {
        spans.iter().any(|span| span.start_seconds < place.end_seconds && span.end_seconds > place.start_seconds)
    })
}

/// Up to `limit` windows: half (rounded up) closest to the threshold, the rest the best of
/// recordings without annotations; when one kind runs short the other fills the gap. A window is
/// offered once. `annotations` holds every recording's annotations (any label, any kind).
pub fn label_next(
    table: &ScoresTable,
    threshold: f64,
    annotations: &BTreeMap<AudioFileId, Vec<LabelledSpan>>,
    limit: usize,
) -> Vec<LabelNextWindow> {
    if table.labels.is_empty() || limit == 0 {
        return Vec::new();
    }
    // Per unannotated window: the label nearest the threshold, and the best label.
    let mut near: Vec<(f64, usize, usize)> = Vec::new();
    let mut top: Vec<(f64, usize, usize)> = Vec::new();
    for (index, window) in table.windows.iter().enumerate() {
        let spans = annotations.get(&window.place.audio_file_id);
        if touches_an_annotation(spans, &window.place) {
            continue;
        }
        let closest = (0..window.scores.len())
            .min_by(|a, b| (window.scores[*a] - threshold).abs().total_cmp(&(window.scores[*b] - threshold).abs()));
        if let Some(label) = closest {
            near.push(((window.scores[label] - threshold).abs(), index, label));
        }
        if spans.is_none_or(Vec::is_empty) {
            let best = (0..window.scores.len()).max_by(|a, b| window.scores[*a].total_cmp(&window.scores[*b]));
            if let Some(label) = best {
                top.push((-window.scores[label], index, label));
            }
        }
    }
    let order = |a: &(f64, usize, usize), b: &(f64, usize, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    near.sort_by(order);
    top.sort_by(order);
    let near_share = limit.div_ceil(2).min(near.len());
    let top_share = (limit - near_share).min(top.len());
    let near_share = (limit - top_share).min(near.len());
    let mut chosen: BTreeSet<usize> = BTreeSet::new();
    let mut offered = Vec::with_capacity(limit);
    let mut take = |candidates: &[(f64, usize, usize)], wanted: usize, reason: LabelNextReason| {
        let mut taken = 0;
        for (_, index, label) in candidates {
            if taken == wanted {
                break;
            }
            if chosen.insert(*index) {
                let window = &table.windows[*index];
                offered.push(LabelNextWindow {
                    place: window.place,
                    label: table.labels[*label].clone(),
                    score: window.scores[*label],
                    reason,
                });
                taken += 1;
            }
        }
    };
    take(&near, near_share, LabelNextReason::NearThreshold);
    take(&top, top_share, LabelNextReason::TopInUnannotatedRecording);
    offered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::scores_parquet::ScoredWindow;
    use crate::domain::events::AnnotationKind;
    use crate::domain::ids::EmbeddingSetId;

    fn window(audio: u64, row: u64, score: f64) -> ScoredWindow {
        ScoredWindow {
            place: WindowPlace {
                embedding_set_id: EmbeddingSetId(audio),
                row_index: row,
                audio_file_id: AudioFileId(audio),
                start_seconds: row as f64 * 5.0,
                end_seconds: row as f64 * 5.0 + 5.0,
            },
            scores: vec![score],
        }
    }

    #[test]
    fn it_offers_the_least_certain_windows_and_the_best_of_unannotated_recordings() {
        // Recording 1 is annotated (rows 0-1 covered), recording 2 is not.
        let table = ScoresTable {
            labels: vec!["song".into()],
            windows: vec![
                window(1, 0, 0.5),
                window(1, 1, 0.49),
                window(1, 2, 0.45),
                window(1, 3, 0.9),
                window(2, 0, 0.99),
                window(2, 1, 0.97),
                window(2, 2, 0.2),
            ],
        };
        let annotations: BTreeMap<AudioFileId, Vec<LabelledSpan>> = [(
            AudioFileId(1),
            vec![LabelledSpan {
                start_seconds: 0.0,
                end_seconds: 10.0,
                label: "song".into(),
                kind: AnnotationKind::Positive,
            }],
        )]
        .into();
        let offered = label_next(&table, 0.5, &annotations, 4);
        let picked: Vec<(u64, u64, LabelNextReason)> =
            offered.iter().map(|w| (w.place.audio_file_id.0, w.place.row_index, w.reason)).collect();
        assert_eq!(
            picked,
            vec![
                (1, 2, LabelNextReason::NearThreshold),
                (2, 2, LabelNextReason::NearThreshold),
                (2, 0, LabelNextReason::TopInUnannotatedRecording),
                (2, 1, LabelNextReason::TopInUnannotatedRecording),
            ],
            "annotated windows are never offered, and no window twice"
        );
        assert_eq!(offered[2].score, 0.99);
    }

    #[test]
    fn one_kind_running_short_leaves_room_for_the_other() {
        let table = ScoresTable {
            labels: vec!["song".into()],
            windows: (0..6).map(|row| window(3, row, 0.1 * row as f64)).collect(),
        };
        let offered = label_next(&table, 0.5, &BTreeMap::new(), 10);
        assert_eq!(offered.len(), 6);
        assert_eq!(label_next(&table, 0.5, &BTreeMap::new(), 0), vec![]);
    }
}
