//! Detectors, the pure core: a small classifier on frozen embeddings.
//!
//! - `logistic.rs`: L2-regularised logistic regression, our own L-BFGS on exactly scikit-learn's
//!   objective (`C * sum(w_i * logloss_i) + 0.5 * ||w||^2`, intercept not penalised), with
//!   optional balanced class weights; several labels are one-vs-rest heads.
//! - `evaluation.rs`: k-fold cross-validation grouped by recording, ROC AUC, average precision,
//!   precision and recall at a threshold, confusion counts.
//! - `training_set.rs`: which windows count as positive or negative for each label, from their
//!   overlap with annotations.
//! - `request.rs`: the training request, its defaults and validation.
//! - `detections.rs`: consecutive windows above a threshold merged into detections.
//! - `artifact.rs` and `train.rs` (the shell): the classifier document written stage-then-publish
//!   under `classifiers/{id}/` with a version hash; reading the Parquet sets, fitting, evaluating.

pub mod artifact;
pub mod detect;
pub mod detection_worker;
pub mod detections;
pub mod evaluation;
pub mod label_next;
pub mod logistic;
pub mod request;
pub mod scores_parquet;
pub mod train;
pub mod training_set;
pub mod worker;

#[cfg(test)]
mod reference_tests;

/// Why a classifier could not be trained or evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClassifierError {
    #[error("no labelled windows to train on")]
    NoWindows,
    #[error("the features have {values} values, not a multiple of {dims} dimensions")]
    BadShape { values: usize, dims: usize },
    #[error("{targets} targets for {rows} windows")]
    TargetCount { targets: usize, rows: usize },
    #[error("label {label:?} has no {missing} windows; a classifier needs both")]
    OneClassOnly { label: String, missing: &'static str },
    #[error("a feature value is not finite (row {row})")]
    NotFinite { row: usize },
    #[error("C must be a positive finite number, not {0}")]
    BadRegularisation(f64),
    #[error("cross-validation needs at least 2 recordings, there are {0}")]
    TooFewGroups(usize),
}
