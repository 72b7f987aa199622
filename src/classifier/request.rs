//! The request to train a classifier, pure: defaults and validation.

use serde::{Deserialize, Serialize};

use super::evaluation::CrossValidationSettings;
use super::logistic::{ClassWeighting, LogisticParameters};
use super::training_set::{NegativeSources, DEFAULT_MIN_OVERLAP_FRACTION};

pub const MAX_LABELS: usize = 32;
pub const MAX_UNANNOTATED_NEGATIVES: usize = 1_000_000;

/// `POST /api/classifiers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainClassifierRequest {
    /// Annotation labels to learn; several labels are one-vs-rest heads.
    pub labels: Vec<String>,
    /// Only embedding sets of this model version are used.
    pub model_version: String,
    #[serde(default)]
    pub negatives: NegativeSources,
    /// How much of a window an annotation must cover to label it.
    #[serde(default = "default_min_overlap_fraction")]
    pub min_overlap_fraction: f64,
    /// Inverse L2 strength (scikit-learn's `C`).
    #[serde(default = "default_c")]
    pub c: f64,
    #[serde(default)]
    pub class_weighting: ClassWeighting,
    #[serde(default = "default_folds")]
    pub folds: usize,
    /// The default threshold of detection jobs, and where precision and recall are measured.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
}

fn default_min_overlap_fraction() -> f64 {
    DEFAULT_MIN_OVERLAP_FRACTION
}
fn default_c() -> f64 {
    1.0
}
fn default_folds() -> usize {
    5
}
fn default_threshold() -> f64 {
    0.5
}

/// What is wrong with a request, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrainRequestError {
    #[error("labels: give between 1 and {MAX_LABELS} labels")]
    LabelCount,
    #[error("labels: {0:?} is blank or repeated")]
    BadLabel(String),
    #[error("model_version: must not be blank")]
    BlankModelVersion,
    #[error("min_overlap_fraction: must be above 0 and at most 1, not {0}")]
    OverlapFraction(f64),
    #[error("c: must be a positive number, not {0}")]
    Regularisation(f64),
    #[error("folds: must be between 2 and 20, not {0}")]
    Folds(usize),
    #[error("threshold: must be between 0 and 1, not {0}")]
    Threshold(f64),
    #[error("negatives.unannotated.count: at most {MAX_UNANNOTATED_NEGATIVES}, not {0}")]
    UnannotatedCount(usize),
}

impl TrainClassifierRequest {
    pub fn validate(&self) -> Result<(), TrainRequestError> {
        if self.labels.is_empty() || self.labels.len() > MAX_LABELS {
            return Err(TrainRequestError::LabelCount);
        }
        for (index, label) in self.labels.iter().enumerate() {
            if label.trim().is_empty() || self.labels[..index].contains(label) {
                return Err(TrainRequestError::BadLabel(label.clone()));
            }
        }
        if self.model_version.trim().is_empty() {
            return Err(TrainRequestError::BlankModelVersion);
        }
        if !(self.min_overlap_fraction > 0.0 && self.min_overlap_fraction <= 1.0) {
            return Err(TrainRequestError::OverlapFraction(self.min_overlap_fraction));
        }
        if !(self.c.is_finite() && self.c > 0.0) {
            return Err(TrainRequestError::Regularisation(self.c));
        }
        if !(2..=20).contains(&self.folds) {
            return Err(TrainRequestError::Folds(self.folds));
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(TrainRequestError::Threshold(self.threshold));
        }
        if let Some(unannotated) = &self.negatives.unannotated {
            if unannotated.count > MAX_UNANNOTATED_NEGATIVES {
                return Err(TrainRequestError::UnannotatedCount(unannotated.count));
            }
        }
        Ok(())
    }

    pub fn logistic_parameters(&self) -> LogisticParameters {
        LogisticParameters { c: self.c, class_weighting: self.class_weighting, ..LogisticParameters::default() }
    }

    pub fn cross_validation(&self) -> CrossValidationSettings {
        CrossValidationSettings { folds: self.folds, threshold: self.threshold, parameters: self.logistic_parameters() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_request_takes_the_defaults_and_bad_fields_are_named() {
        let request: TrainClassifierRequest =
            serde_json::from_str(r#"{"labels": ["song"], "model_version": "perch_v2"}"#).unwrap();
        assert_eq!(request.validate(), Ok(()));
        assert_eq!(request.min_overlap_fraction, 0.5);
        assert_eq!(request.class_weighting, ClassWeighting::Balanced);
        assert!(request.negatives.negative_annotations && request.negatives.other_labels);
        let twice = TrainClassifierRequest { labels: vec!["a".into(), "a".into()], ..request.clone() };
        assert_eq!(twice.validate(), Err(TrainRequestError::BadLabel("a".into())));
        let zero = TrainClassifierRequest { c: 0.0, ..request.clone() };
        assert!(zero.validate().unwrap_err().to_string().starts_with("c:"));
        let over = TrainClassifierRequest { min_overlap_fraction: 1.5, ..request };
        assert!(over.validate().unwrap_err().to_string().starts_with("min_overlap_fraction:"));
        assert!(
            serde_json::from_str::<TrainClassifierRequest>(r#"{"labels": [], "model_version": "m", "x": 1}"#).is_err()
        );
    }
}
