//! The trained classifier as an artifact: one JSON document under `classifiers/{id}/`, written
//! stage-then-publish, identified by a version hash of its content (recorded by the completion
//! event, so a reader can tell the file is the one the log speaks of).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::evaluation::HeadMetrics;
use super::logistic::{BinaryLogisticModel, ClassWeighting, OneVsRestModel};
use super::training_set::TrainingSetDescription;
use crate::artifacts::files::write_atomically;
use crate::artifacts::ArtifactError;
use crate::domain::ids::ClassifierId;

pub const FORMAT: &str = "humpback-classifier";
pub const FORMAT_VERSION: u32 = 1;

/// One head as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredHead {
    pub label: String,
    pub weights: Vec<f64>,
    pub bias: f64,
    pub iterations: usize,
    pub converged: bool,
}

/// Everything a detection job needs, and everything a user compares between versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierArtifact {
    pub format: String,
    pub format_version: u32,
    pub classifier_id: ClassifierId,
    pub model_version: String,
    pub vector_dim: usize,
    pub labels: Vec<String>,
    pub heads: Vec<StoredHead>,
    pub threshold: f64,
    pub c: f64,
    pub class_weighting: ClassWeighting,
    pub folds: usize,
    pub training_set: TrainingSetDescription,
    pub metrics: Vec<HeadMetrics>,
    /// Why some heads have no cross-validated figures (e.g. one recording only), if so.
    pub evaluation_note: Option<String>,
}

impl ClassifierArtifact {
    /// The canonical bytes (serde_json keeps struct field order, so the same classifier always
    /// gives the same bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// The version of the bytes this classifier is written as.
    pub fn version(&self) -> String {
        version_of(&self.to_bytes())
    }

    pub fn model(&self) -> OneVsRestModel {
        OneVsRestModel {
            labels: self.labels.clone(),
            heads: self
                .heads
                .iter()
                .map(|head| BinaryLogisticModel {
                    weights: head.weights.clone(),
                    bias: head.bias,
                    iterations: head.iterations,
                    converged: head.converged,
                })
                .collect(),
        }
    }
}

/// The first 16 hex digits of the SHA-256 of a classifier file's bytes (the bytes, not the
/// values read back: JSON decimal text need not round-trip every last bit of an f64).
pub fn version_of(bytes: &[u8]) -> String {
    crate::model::sha256_hex(bytes)[..16].to_string()
}

/// `classifiers/{id}/classifier.json` under the data directory root.
pub fn artifact_path(root: &Path, classifier: ClassifierId) -> PathBuf {
    root.join("classifiers").join(classifier.to_string()).join("classifier.json")
}

/// The artifact's storage key: `classifiers/{id}/classifier.json`.
pub fn classifier_key(classifier: ClassifierId) -> String {
    format!("classifiers/{classifier}/classifier.json")
}

/// Write through a temporary sibling, fsync, rename, fsync the directory; the version written.
pub fn publish(root: &Path, artifact: &ClassifierArtifact) -> Result<String, ArtifactError> {
    write_atomically(&artifact_path(root, artifact.classifier_id), &artifact.to_bytes())?;
    Ok(artifact.version())
}

/// Read a published classifier back, checking its format and, when given, its version.
pub fn read(
    root: &Path,
    classifier: ClassifierId,
    expected_version: Option<&str>,
) -> Result<ClassifierArtifact, ArtifactError> {
    let path = artifact_path(root, classifier);
    let bytes =
        std::fs::read(&path).map_err(|source| ArtifactError::Io { doing: "reading", path: path.clone(), source })?;
    let invalid = |reason: String| ArtifactError::Invalid { path: path.clone(), reason };
    let artifact: ClassifierArtifact = serde_json::from_slice(&bytes).map_err(|error| invalid(error.to_string()))?;
    if artifact.format != FORMAT || artifact.format_version != FORMAT_VERSION {
        return Err(invalid(format!("format {} version {}", artifact.format, artifact.format_version)));
    }
    if artifact.heads.iter().any(|head| head.weights.len() != artifact.vector_dim) {
        return Err(invalid("a head's weights do not match vector_dim".into()));
    }
    if let Some(expected) = expected_version {
        let found = version_of(&bytes);
        if found != expected {
            return Err(invalid(format!("version {found}, the log says {expected}")));
        }
    }
    Ok(artifact)
}
