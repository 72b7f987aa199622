//! How good a classifier is: k-fold cross-validation grouped by recording (the windows of one
//! recording are never on both sides of a split, since neighbouring windows of one recording
//! are near copies), and the figures scikit-learn users know.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::logistic::{fit_binary, LogisticParameters};
use super::ClassifierError;

/// The fold of every window: groups (recordings) are placed largest first into the fold with the
/// fewest windows so far, as scikit-learn's `GroupKFold`; ties go to the lower fold, so the
/// split is deterministic. `folds` is capped at the number of distinct groups.
pub fn grouped_folds<G: Ord + Clone>(groups: &[G], folds: usize) -> Result<(Vec<usize>, usize), ClassifierError> {
    let mut sizes: BTreeMap<G, usize> = BTreeMap::new();
    for group in groups {
        *sizes.entry(group.clone()).or_default() += 1;
    }
    if sizes.len() < 2 {
        return Err(ClassifierError::TooFewGroups(sizes.len()));
    }
    let folds = folds.clamp(2, sizes.len());
    let mut ordered: Vec<(G, usize)> = sizes.into_iter().collect();
    // largest first; equal sizes keep the groups' order
    ordered.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    let mut fold_sizes = vec![0usize; folds];
    let mut fold_of_group: BTreeMap<G, usize> = BTreeMap::new();
    for (group, size) in ordered {
        let lightest = (0..folds).min_by_key(|fold| (fold_sizes[*fold], *fold)).unwrap_or(0);
        fold_sizes[lightest] += size;
        fold_of_group.insert(group, lightest);
    }
    let assignment = groups.iter().map(|group| fold_of_group.get(group).copied().unwrap_or(0)).collect();
    Ok((assignment, folds))
}

/// ROC AUC (the probability that a random positive scores above a random negative, ties
/// counting half); `None` when one class is missing.
pub fn roc_auc(scores: &[f64], truth: &[bool]) -> Option<f64> {
    let positives = truth.iter().filter(|t| **t).count();
    let negatives = truth.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    // average ranks over ties (1-based)
    let mut rank_sum_of_positives = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && scores[order[end + 1]] == scores[order[start]] {
            end += 1;
        }
        let average_rank = (start + end) as f64 / 2.0 + 1.0;
        rank_sum_of_positives += order[start..=end].iter().filter(|i| truth[**i]).count() as f64 * average_rank;
        start = end + 1;
    }
    let p = positives as f64;
    Some((rank_sum_of_positives - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// Average precision as scikit-learn computes it: sum over distinct thresholds (high to low) of
/// (recall step) * precision; `None` without positives.
pub fn average_precision(scores: &[f64], truth: &[bool]) -> Option<f64> {
    let positives = truth.iter().filter(|t| **t).count();
    if positives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    let (mut true_positives, mut seen, mut previous_recall, mut total) = (0usize, 0usize, 0.0, 0.0);
    let mut index = 0;
    while index < order.len() {
        let threshold = scores[order[index]];
        while index < order.len() && scores[order[index]] == threshold {
            true_positives += usize::from(truth[order[index]]);
            seen += 1;
            index += 1;
        }
        let recall = true_positives as f64 / positives as f64;
        let precision = true_positives as f64 / seen as f64;
        total += (recall - previous_recall) * precision;
        previous_recall = recall;
    }
    Some(total)
}

/// Confusion counts at a threshold (a window is called positive when its score is at or above it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ConfusionCounts {
    pub true_positives: usize,
    pub false_positives: usize,
    pub true_negatives: usize,
    pub false_negatives: usize,
}

impl ConfusionCounts {
    pub fn at_threshold(scores: &[f64], truth: &[bool], threshold: f64) -> ConfusionCounts {
        let mut counts = ConfusionCounts::default();
        for (score, positive) in scores.iter().zip(truth) {
            match (*score >= threshold, *positive) {
                (true, true) => counts.true_positives += 1,
                (true, false) => counts.false_positives += 1,
                (false, false) => counts.true_negatives += 1,
                (false, true) => counts.false_negatives += 1,
            }
        }
        counts
    }

    /// `None` when nothing was called positive.
    pub fn precision(&self) -> Option<f64> {
        let called = self.true_positives + self.false_positives;
        (called > 0).then(|| self.true_positives as f64 / called as f64)
    }

    /// `None` when there are no positives.
    pub fn recall(&self) -> Option<f64> {
        let positives = self.true_positives + self.false_negatives;
        (positives > 0).then(|| self.true_positives as f64 / positives as f64)
    }
}

/// The cross-validated figures of one label's head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadMetrics {
    pub label: String,
    pub folds: usize,
    /// Folds whose training side lacked one class, so their windows were not scored.
    pub skipped_folds: usize,
    pub roc_auc: Option<f64>,
    pub average_precision: Option<f64>,
    pub threshold: f64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub confusion: ConfusionCounts,
    pub positive_windows: usize,
    pub negative_windows: usize,
    pub positive_recordings: usize,
    pub negative_recordings: usize,
}

/// How many folds, the threshold the confusion counts are taken at, and the fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossValidationSettings {
    pub folds: usize,
    pub threshold: f64,
    pub parameters: LogisticParameters,
}

/// Grouped k-fold cross-validation of one head: out-of-fold probabilities for every window whose
/// fold could be trained, then the figures over all of them.
pub fn cross_validate<G: Ord + Clone>(
    features: &[f32],
    dims: usize,
    targets: &[bool],
    groups: &[G],
    label: &str,
    settings: &CrossValidationSettings,
) -> Result<HeadMetrics, ClassifierError> {
    let CrossValidationSettings { folds, threshold, parameters } = settings;
    let (folds, threshold) = (*folds, *threshold);
    let rows = super::logistic::check_features(features, dims)?;
    if targets.len() != rows || groups.len() != rows {
        return Err(ClassifierError::TargetCount { targets: targets.len().min(groups.len()), rows });
    }
    let (fold_of_row, folds) = grouped_folds(groups, folds)?;
    let mut scores = Vec::new();
    let mut truth = Vec::new();
    let mut skipped_folds = 0;
    for fold in 0..folds {
        let training: Vec<usize> = (0..rows).filter(|row| fold_of_row[*row] != fold).collect();
        let held_out: Vec<usize> = (0..rows).filter(|row| fold_of_row[*row] == fold).collect();
        let training_features: Vec<f32> =
            training.iter().flat_map(|row| features[row * dims..(row + 1) * dims].iter().copied()).collect();
        let training_targets: Vec<bool> = training.iter().map(|row| targets[*row]).collect();
        match fit_binary(&training_features, dims, &training_targets, parameters, label) {
            Ok(model) => {
                for row in held_out {
                    scores.push(model.probability(&features[row * dims..(row + 1) * dims]));
                    truth.push(targets[row]);
                }
            }
            Err(ClassifierError::OneClassOnly { .. }) => skipped_folds += 1,
            Err(other) => return Err(other),
        }
    }
    let confusion = ConfusionCounts::at_threshold(&scores, &truth, threshold);
    let recordings = |wanted: bool| {
        groups.iter().zip(targets).filter(|(_, t)| **t == wanted).map(|(g, _)| g).collect::<BTreeSet<_>>().len()
    };
    let positive_windows = targets.iter().filter(|t| **t).count();
    Ok(HeadMetrics {
        label: label.to_string(),
        folds,
        skipped_folds,
        roc_auc: roc_auc(&scores, &truth),
        average_precision: average_precision(&scores, &truth),
        threshold,
        precision: confusion.precision(),
        recall: confusion.recall(),
        confusion,
        positive_windows,
        negative_windows: rows - positive_windows,
        positive_recordings: recordings(true),
        negative_recordings: recordings(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn grouped_folds_never_put_one_recording_on_both_sides(
            groups in proptest::collection::vec(0u32..40, 2..400),
            folds in 2usize..8,
        ) {
            let distinct = groups.iter().collect::<BTreeSet<_>>().len();
            match grouped_folds(&groups, folds) {
                Err(error) => prop_assert!(distinct < 2, "{error}"),
                Ok((assignment, used)) => {
                    prop_assert_eq!(used, folds.min(distinct));
                    let mut fold_of_group = BTreeMap::new();
                    for (group, fold) in groups.iter().zip(&assignment) {
                        prop_assert!(*fold < used);
                        let first = *fold_of_group.entry(group).or_insert(*fold);
                        prop_assert_eq!(first, *fold, "group {} in folds {} and {}", group, first, fold);
                    }
                    // every fold holds something
                    let filled = assignment.iter().collect::<BTreeSet<_>>().len();
                    prop_assert_eq!(filled, used);
                }
            }
        }
    }

    #[test]
    fn roc_auc_and_average_precision_on_a_small_case() {
        // scikit-learn: roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) = 0.75,
        // average_precision_score(...) = 0.8333...
        let truth = [false, false, true, true];
        let scores = [0.1, 0.4, 0.35, 0.8];
        assert!((roc_auc(&scores, &truth).unwrap() - 0.75).abs() < 1e-12);
        assert!((average_precision(&scores, &truth).unwrap() - 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(roc_auc(&[0.5], &[true]), None);
    }

    #[test]
    fn confusion_counts_at_a_threshold() {
        let counts = ConfusionCounts::at_threshold(&[0.9, 0.6, 0.4, 0.2], &[true, false, true, false], 0.5);
        assert_eq!(
            counts,
            ConfusionCounts { true_positives: 1, false_positives: 1, true_negatives: 1, false_negatives: 1 }
        );
        assert_eq!(counts.precision(), Some(0.5));
        assert_eq!(counts.recall(), Some(0.5));
    }
}
