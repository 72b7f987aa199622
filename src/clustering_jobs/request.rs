//! `POST /api/clustering-jobs`: `{"embedding_set_ids": [..]}` (or `"folder"`, or
//! `"model_version"` for all sets of a model), optional `"filters"`, `"reference_field"`,
//! `"sweep"`, and the clustering parameters at the top level. Pure.

use serde::{Deserialize, Serialize};

use crate::clustering::{ClusteringParameters, SweepParameters};
use crate::domain::ids::EmbeddingSetId;
use crate::domain::json_text::JsonText;
use crate::domain::state::DomainState;

/// Keys that select rows rather than configure the clustering.
const SELECTION_KEYS: &[&str] = &[
    "embedding_set_ids",
    "folder",
    "model_version",
    "filters",
    "reference_field",
    "sweep",
    "detection_job_id",
    "min_score",
    "score_label",
];

/// What a clustering job records as its parameters (canonical, defaults filled in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredClusteringParameters {
    pub parameters: ClusteringParameters,
    /// A categorical reference for ARI/NMI/...: `folder` or a metadata path such as
    /// `visual_observations.behaviour`.
    #[serde(default)]
    pub reference_field: Option<String>,
    #[serde(default)]
    pub sweep: Option<SweepParameters>,
    #[serde(default)]
    pub filters: Filters,
}

/// Which recordings' sets to include.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filters {
    /// Only recordings in this folder or below it.
    pub folder_prefix: Option<String>,
    /// Only recordings whose metadata has these values, by dotted path
    /// (`{"visual_observations.behaviour": "feeding"}`).
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Only windows overlapping an annotation (positive or uncertain) with one of these labels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub annotation_labels: Vec<String>,
    /// Only windows that started on or after this date (`2024-07-01`) or time (with its zone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_from: Option<String>,
    /// Only windows that started before this time, or on or before this date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_to: Option<String>,
    /// Only windows that started in these hours of the day (`{"from": 20, "to": 4}` wraps midnight).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hours: Option<crate::recording_time::HourRange>,
    /// The offset dates and hours are read at (default UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utc_offset: Option<String>,
    /// Only windows a detection job scored at or above `min_score` ("cluster only the calls");
    /// the scores come from that job's `scores.parquet`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detection_job_id: Option<u64>,
    /// The least score kept (default: the job's threshold, recorded as given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f64>,
    /// Which label's score counts (default: a window's best score over the job's labels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score_label: Option<String>,
}

impl Filters {
    /// The window-time part of the filters (unbounded when none is given).
    pub fn window_time_filter(&self) -> Result<crate::recording_time::WindowTimeFilter, RequestError> {
        if let Some(hours) = self.hours {
            crate::recording_time::HourRange::new(i64::from(hours.from), i64::from(hours.to))
                .map_err(|error| RequestError::Invalid(format!("filters.hours: {error}")))?;
        }
        crate::recording_time::WindowTimeFilter::from_request(
            self.date_from.as_deref(),
            self.date_to.as_deref(),
            self.hours,
            self.utc_offset.as_deref(),
        )
        .map_err(|error| RequestError::Invalid(format!("filters: {error}")))
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// 422: the body or a parameter is wrong.
    #[error("{0}")]
    Invalid(String),
    /// 404: nothing matched the selection.
    #[error("{0}")]
    NothingSelected(String),
}

/// A parsed request: the sets to cluster and the stored parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusteringRequest {
    pub embedding_set_ids: Vec<EmbeddingSetId>,
    pub stored: StoredClusteringParameters,
}

impl StoredClusteringParameters {
    pub fn to_json_text(&self) -> JsonText {
        JsonText::from_value(&serde_json::to_value(self).unwrap_or_default())
    }

    pub fn from_json_text(text: &JsonText) -> Result<StoredClusteringParameters, RequestError> {
        serde_json::from_value(text.to_value())
            .map_err(|error| RequestError::Invalid(format!("recorded parameters do not parse: {error}")))
    }
}

/// Looks up a dotted path (`group_composition.adults`) in a file's metadata documents.
pub fn metadata_value<'a>(documents: &'a [(String, serde_json::Value)], path: &str) -> Option<&'a serde_json::Value> {
    let (document, rest) = path.split_once('.').unwrap_or((path, ""));
    let mut value = &documents.iter().find(|(name, _)| name == document)?.1;
    for part in rest.split('.').filter(|part| !part.is_empty()) {
        value = value.get(part)?;
    }
    Some(value)
}

/// A file's four metadata documents, by name.
pub fn file_documents(state: &DomainState, audio: crate::domain::ids::AudioFileId) -> Vec<(String, serde_json::Value)> {
    let Some(file) = state.audio_files.get(&audio) else { return Vec::new() };
    let metadata = &file.metadata;
    [
        ("tag_data", &metadata.tag_data),
        ("visual_observations", &metadata.visual_observations),
        ("group_composition", &metadata.group_composition),
        ("prey_density_proxy", &metadata.prey_density_proxy),
    ]
    .into_iter()
    .map(|(name, value)| {
        (name.to_string(), value.as_ref().map(JsonText::to_value).unwrap_or_else(|| serde_json::json!({})))
    })
    .collect()
}

/// `detection_job_id`, `min_score` and `score_label` given at the top level of the request go
/// into the filters (where they are recorded); given in both places they must agree.
fn score_filter_from_fields(
    fields: &serde_json::Map<String, serde_json::Value>,
    filters: &mut Filters,
) -> Result<(), RequestError> {
    fn merge<T: serde::de::DeserializeOwned + PartialEq>(
        fields: &serde_json::Map<String, serde_json::Value>,
        key: &str,
        what: &str,
        slot: &mut Option<T>,
    ) -> Result<(), RequestError> {
        let Some(value) = fields.get(key).filter(|value| !value.is_null()) else { return Ok(()) };
        let given: T = serde_json::from_value(value.clone())
            .map_err(|_| RequestError::Invalid(format!("{key}: must be {what}, not {value}")))?;
        if slot.as_ref().is_some_and(|inside| *inside != given) {
            return Err(RequestError::Invalid(format!(
                "{key}: given twice (at the top and in filters) with different values"
            )));
        }
        *slot = Some(given);
        Ok(())
    }
    merge(fields, "detection_job_id", "a whole number", &mut filters.detection_job_id)?;
    merge(fields, "min_score", "a number", &mut filters.min_score)?;
    merge(fields, "score_label", "a label", &mut filters.score_label)?;
    Ok(())
}

/// Checks the score filter against the state (a completed detection job, a score between 0 and 1,
/// one of its classifier's labels) and fills in the default `min_score`; the job.
fn resolve_score_filter<'a>(
    state: &'a DomainState,
    job_id: u64,
    filters: &mut Filters,
) -> Result<&'a crate::domain::state::DetectionJobState, RequestError> {
    let job = state
        .detection_jobs
        .get(&crate::domain::ids::DetectionJobId(job_id))
        .ok_or_else(|| RequestError::Invalid(format!("detection_job_id: detection job {job_id} does not exist")))?;
    if job.status != crate::domain::state::JobStatus::Complete {
        return Err(RequestError::Invalid(format!(
            "detection_job_id: detection job {job_id} is {}, not complete",
            job.status.as_str()
        )));
    }
    let min_score = filters.min_score.unwrap_or(job.threshold);
    if !(0.0..=1.0).contains(&min_score) {
        return Err(RequestError::Invalid(format!("min_score: must be between 0 and 1, not {min_score}")));
    }
    filters.min_score = Some(min_score);
    if let Some(label) = &filters.score_label {
        let known =
            state.classifiers.get(&job.classifier_id).is_some_and(|classifier| classifier.labels.contains(label));
        if !known {
            return Err(RequestError::Invalid(format!(
                "score_label: detection job {job_id} has no score for label {label:?}"
            )));
        }
    }
    Ok(job)
}

/// Parses and resolves a request body against the current state.
pub fn parse_request(body: &serde_json::Value, state: &DomainState) -> Result<ClusteringRequest, RequestError> {
    let serde_json::Value::Object(fields) = body else {
        return Err(RequestError::Invalid("the body must be a JSON object".into()));
    };
    let mut parameter_fields = serde_json::Map::new();
    for (key, value) in fields {
        if !SELECTION_KEYS.contains(&key.as_str()) {
            parameter_fields.insert(key.clone(), value.clone());
        }
    }
    let parameters: ClusteringParameters = serde_json::from_value(serde_json::Value::Object(parameter_fields))
        .map_err(|error| RequestError::Invalid(format!("parameters: {error}")))?;
    parameters.validate().map_err(|error| RequestError::Invalid(error.to_string()))?;
    let sweep: Option<SweepParameters> = match fields.get("sweep") {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => Some(
            serde_json::from_value(value.clone()).map_err(|error| RequestError::Invalid(format!("sweep: {error}")))?,
        ),
    };
    if let Some(sweep) = &sweep {
        sweep.settings().map_err(|error| RequestError::Invalid(format!("sweep: {error}")))?;
    }
    let mut filters: Filters = match fields.get("filters") {
        None | Some(serde_json::Value::Null) => Filters::default(),
        Some(value) => {
            serde_json::from_value(value.clone()).map_err(|error| RequestError::Invalid(format!("filters: {error}")))?
        }
    };
    score_filter_from_fields(fields, &mut filters)?;
    let reference_field = match fields.get("reference_field") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(field)) if !field.trim().is_empty() => Some(field.trim().to_string()),
        Some(other) => {
            return Err(RequestError::Invalid(format!("reference_field: must be a field name, not {other}")))
        }
    };
    let chosen =
        ["embedding_set_ids", "folder", "model_version"].iter().filter(|key| fields.contains_key(**key)).count();
    if chosen != 1 {
        return Err(RequestError::Invalid("give exactly one of embedding_set_ids, folder or model_version".into()));
    }
    let mut ids: Vec<EmbeddingSetId> = if let Some(value) = fields.get("embedding_set_ids") {
        let ids: Vec<u64> = serde_json::from_value(value.clone())
            .map_err(|_| RequestError::Invalid("embedding_set_ids: must be a list of whole numbers".into()))?;
        if ids.is_empty() {
            return Err(RequestError::Invalid("embedding_set_ids: the list is empty".into()));
        }
        ids.into_iter().map(EmbeddingSetId).collect()
    } else if let Some(value) = fields.get("folder") {
        let folder = value.as_str().map(crate::folders::clean_folder).unwrap_or_default();
        let prefix = format!("{folder}/");
        state
            .embedding_sets
            .iter()
            .filter(|(_, set)| {
                state
                    .audio_files
                    .get(&set.audio_file_id)
                    .is_some_and(|file| folder.is_empty() || file.folder == folder || file.folder.starts_with(&prefix))
            })
            .map(|(id, _)| *id)
            .collect()
    } else {
        let version = fields.get("model_version").and_then(|v| v.as_str()).unwrap_or_default();
        state.embedding_sets.iter().filter(|(_, set)| set.model_version == version).map(|(id, _)| *id).collect()
    };
    if let Some(prefix) = filters.folder_prefix.as_deref().map(crate::folders::clean_folder) {
        let with_slash = format!("{prefix}/");
        ids.retain(|id| match state.embedding_sets.get(id).and_then(|set| state.audio_files.get(&set.audio_file_id)) {
            // An unknown set stays, so that the answer can say it does not exist (404).
            None => true,
            Some(file) => file.folder == prefix || file.folder.starts_with(&with_slash),
        });
    }
    if !filters.metadata.is_empty() {
        ids.retain(|id| {
            let Some(set) = state.embedding_sets.get(id) else { return true };
            let documents = file_documents(state, set.audio_file_id);
            filters.metadata.iter().all(|(path, wanted)| metadata_value(&documents, path) == Some(wanted))
        });
    }
    let mut filters = Filters {
        annotation_labels: filters
            .annotation_labels
            .iter()
            .map(|label| label.trim().to_string())
            .filter(|label| !label.is_empty())
            .collect(),
        ..filters
    };
    if !filters.annotation_labels.is_empty() {
        let labels: std::collections::BTreeSet<&str> = filters.annotation_labels.iter().map(String::as_str).collect();
        let annotated: std::collections::BTreeSet<crate::domain::ids::AudioFileId> = state
            .annotations
            .values()
            .filter(|annotation| {
                annotation.kind != crate::domain::events::AnnotationKind::Negative
                    && labels.contains(annotation.label.as_str())
            })
            .map(|annotation| annotation.audio_file_id)
            .collect();
        ids.retain(|id| match state.embedding_sets.get(id) {
            None => true,
            Some(set) => annotated.contains(&set.audio_file_id),
        });
        if ids.is_empty() {
            return Err(RequestError::NothingSelected(format!(
                "no selected recording has annotations labelled {:?}",
                filters.annotation_labels
            )));
        }
    }
    if let Some(job_id) = filters.detection_job_id {
        let job = resolve_score_filter(state, job_id, &mut filters)?;
        ids.retain(|id| !state.embedding_sets.contains_key(id) || job.embedding_set_ids.contains(id));
        if ids.is_empty() {
            return Err(RequestError::NothingSelected(format!(
                "detection job {job_id} scored none of the selected embedding sets"
            )));
        }
    }
    let time_filter = filters.window_time_filter()?;
    if !time_filter.is_unbounded() {
        // A set whose recording has no start time has no window a time filter keeps.
        ids.retain(|id| !state.embedding_sets.contains_key(id) || state.embedding_set_recorded_at(*id).is_some());
    }
    if ids.is_empty() {
        return Err(RequestError::NothingSelected("no embedding sets match the selection and filters".into()));
    }
    ids.sort();
    ids.dedup();
    Ok(ClusteringRequest {
        embedding_set_ids: ids,
        stored: StoredClusteringParameters { parameters, reference_field, sweep, filters },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_at_the_top_level_take_defaults_and_selection_keys_are_set_apart() {
        let mut state = DomainState::default();
        state.embedding_sets.insert(
            EmbeddingSetId(1),
            crate::domain::state::EmbeddingSetState {
                audio_file_id: crate::domain::ids::AudioFileId(1),
                parquet_path: "x".into(),
                encoding_signature: crate::domain::ids::EncodingSignature("s".into()),
                model_version: "1".into(),
                vector_dim: 4,
                row_count: 3,
            },
        );
        let request = parse_request(
            &serde_json::json!({"embedding_set_ids": [1], "algorithm": {"method": "kmeans", "k": 3, "seed": 1}}),
            &state,
        )
        .unwrap();
        assert_eq!(request.embedding_set_ids, vec![EmbeddingSetId(1)]);
        assert!(matches!(request.stored.parameters.algorithm, crate::clustering::Algorithm::Kmeans { k: 3, .. }));
        let error = parse_request(&serde_json::json!({"embedding_set_ids": [1], "algoritm": {}}), &state).unwrap_err();
        assert!(error.to_string().contains("algoritm"), "{error}");
        let error = parse_request(
            &serde_json::json!({"embedding_set_ids": [1], "algorithm": {"method": "hdbscan", "min_cluster_size": 1}}),
            &state,
        )
        .unwrap_err();
        assert!(error.to_string().contains("min_cluster_size"), "{error}");
        assert!(matches!(
            parse_request(&serde_json::json!({"embedding_set_ids": []}), &state),
            Err(RequestError::Invalid(_))
        ));
        assert!(matches!(
            parse_request(&serde_json::json!({"folder": "nowhere"}), &state),
            Err(RequestError::NothingSelected(_))
        ));
    }

    #[test]
    fn metadata_paths_reach_into_documents() {
        let documents =
            vec![("visual_observations".to_string(), serde_json::json!({"behaviour": "feeding", "pod": {"size": 3}}))];
        assert_eq!(metadata_value(&documents, "visual_observations.behaviour"), Some(&serde_json::json!("feeding")));
        assert_eq!(metadata_value(&documents, "visual_observations.pod.size"), Some(&serde_json::json!(3)));
        assert_eq!(metadata_value(&documents, "tag_data.tag"), None);
    }
}
