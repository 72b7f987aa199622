//! `POST /api/search` (and `humpback search`): what a request means, resolved against the domain
//! state. Pure.
//!
//! The query is a stored window (`{"embedding_set_id", "row_index"}`), a span of a recording
//! (`{"audio_file_id", "start_seconds"}`) or an uploaded clip (multipart). The scope is
//! `embedding_set_ids`, or `folder` and/or `model_version`; without one, every set of the
//! query's model version. Every set in scope must share one model version (400 otherwise).

use std::collections::BTreeMap;

use serde_json::Value;

use super::scan::Metric;
use super::SearchError;
use crate::domain::events::EncodingConfig;
use crate::domain::ids::{AudioFileId, EmbeddingSetId};
use crate::domain::state::DomainState;

pub const DEFAULT_K: usize = 20;
pub const MAX_K: usize = 1000;

const FIELDS: &[&str] =
    &["query", "embedding_set_ids", "folder", "model_version", "k", "metric", "exclude_same_recording", "exact"];

#[derive(Debug, Clone, PartialEq)]
pub enum SearchQuery {
    Window {
        embedding_set_id: EmbeddingSetId,
        row_index: u64,
    },
    Span {
        audio_file_id: AudioFileId,
        start_seconds: f64,
    },
    /// An uploaded clip (its bytes travel beside the request).
    Clip,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub query: SearchQuery,
    pub embedding_set_ids: Option<Vec<EmbeddingSetId>>,
    pub folder: Option<String>,
    pub model_version: Option<String>,
    pub k: usize,
    pub metric: Metric,
    pub exclude_same_recording: bool,
}

fn invalid(message: impl Into<String>) -> SearchError {
    SearchError::Invalid(message.into())
}

fn whole_number(value: &Value, field: &str) -> Result<u64, SearchError> {
    value.as_u64().ok_or_else(|| invalid(format!("{field}: must be a whole number, not {value}")))
}

fn parse_query(value: Option<&Value>, has_clip: bool) -> Result<SearchQuery, SearchError> {
    let value = value.filter(|value| !value.is_null());
    if has_clip {
        return match value {
            None => Ok(SearchQuery::Clip),
            Some(_) => Err(invalid("query: the uploaded clip is the query; leave query out")),
        };
    }
    let Some(value) = value else {
        return Err(invalid(
            "query: missing; give {\"embedding_set_id\", \"row_index\"} or {\"audio_file_id\", \"start_seconds\"}, \
             or upload a clip",
        ));
    };
    let Value::Object(fields) = value else {
        return Err(invalid(format!("query: must be an object, not {value}")));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|key| !["embedding_set_id", "row_index", "audio_file_id", "start_seconds"].contains(&key.as_str()))
    {
        return Err(invalid(format!(
            "query.{unknown}: unknown field (a query is embedding_set_id + row_index, or audio_file_id + start_seconds)"
        )));
    }
    match (
        fields.get("embedding_set_id"),
        fields.get("row_index"),
        fields.get("audio_file_id"),
        fields.get("start_seconds"),
    ) {
        (Some(set), Some(row), None, None) => Ok(SearchQuery::Window {
            embedding_set_id: EmbeddingSetId(whole_number(set, "query.embedding_set_id")?),
            row_index: whole_number(row, "query.row_index")?,
        }),
        (None, None, Some(audio), Some(start)) => {
            let start_seconds = start.as_f64().filter(|start| start.is_finite() && *start >= 0.0).ok_or_else(|| {
                invalid(format!("query.start_seconds: must be a number of seconds >= 0, not {start}"))
            })?;
            Ok(SearchQuery::Span {
                audio_file_id: AudioFileId(whole_number(audio, "query.audio_file_id")?),
                start_seconds,
            })
        }
        (Some(_), None, None, None) => {
            Err(invalid("query.row_index: missing (a window is embedding_set_id + row_index)"))
        }
        (None, None, Some(_), None) => {
            Err(invalid("query.start_seconds: missing (a span is audio_file_id + start_seconds)"))
        }
        _ => Err(invalid(
            "query: give either embedding_set_id + row_index (a window) or audio_file_id + start_seconds (a span)",
        )),
    }
}

/// Parses a request body. `has_clip`: a clip was uploaded with it (then it is the query).
pub fn parse_search_request(body: &Value, has_clip: bool) -> Result<SearchRequest, SearchError> {
    let Value::Object(fields) = body else {
        return Err(invalid("the body must be a JSON object"));
    };
    if let Some(unknown) = fields.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        return Err(invalid(format!("{unknown}: unknown field (the fields are {})", FIELDS.join(", "))));
    }
    let present = |name: &str| fields.get(name).filter(|value| !value.is_null());
    let query = parse_query(present("query"), has_clip)?;
    let embedding_set_ids = match present("embedding_set_ids") {
        None => None,
        Some(value) => {
            let ids: Vec<u64> = serde_json::from_value(value.clone())
                .map_err(|_| invalid("embedding_set_ids: must be a list of whole numbers"))?;
            if ids.is_empty() {
                return Err(invalid("embedding_set_ids: the list is empty"));
            }
            let mut ids: Vec<EmbeddingSetId> = ids.into_iter().map(EmbeddingSetId).collect();
            ids.sort();
            ids.dedup();
            Some(ids)
        }
    };
    let folder = match present("folder") {
        None => None,
        Some(Value::String(folder)) => Some(crate::folders::clean_folder(folder)),
        Some(other) => return Err(invalid(format!("folder: must be a folder name, not {other}"))),
    };
    let model_version = match present("model_version") {
        None => None,
        Some(Value::String(version)) if !version.trim().is_empty() => Some(version.trim().to_string()),
        Some(other) => return Err(invalid(format!("model_version: must be a model version, not {other}"))),
    };
    if embedding_set_ids.is_some() && (folder.is_some() || model_version.is_some()) {
        return Err(invalid("embedding_set_ids: give either embedding_set_ids or folder / model_version, not both"));
    }
    let k = match present("k") {
        None => DEFAULT_K,
        Some(value) => value
            .as_u64()
            .filter(|k| (1..=MAX_K as u64).contains(k))
            .ok_or_else(|| invalid(format!("k: must be a whole number from 1 to {MAX_K}, not {value}")))?
            as usize,
    };
    let metric = match present("metric") {
        None => Metric::default(),
        Some(value) => value
            .as_str()
            .and_then(Metric::parse)
            .ok_or_else(|| invalid(format!("metric: must be \"cosine\" or \"euclidean\", not {value}")))?,
    };
    let boolean = |name: &str| match present(name) {
        None => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(other) => Err(invalid(format!("{name}: must be true or false, not {other}"))),
    };
    let exclude_same_recording = boolean("exclude_same_recording")?.unwrap_or(false);
    if boolean("exact")? == Some(false) {
        return Err(invalid("exact: only exact search is available (there is no approximate index yet)"));
    }
    Ok(SearchRequest { query, embedding_set_ids, folder, model_version, k, metric, exclude_same_recording })
}

/// A request resolved against the state: which sets to scan, with what model.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedSearch {
    pub model_version: String,
    /// The sets to scan (after `exclude_same_recording`), by id.
    pub embedding_set_ids: Vec<EmbeddingSetId>,
    /// The recording the query comes from (none for a clip).
    pub query_audio_file_id: Option<AudioFileId>,
    /// How to embed a span or a clip: the recorded configuration of one set in scope (the
    /// query recording's own set when it has one). `None` for a window query.
    pub encoding: Option<EncodingConfig>,
}

fn versions_message(sets: &[(EmbeddingSetId, &str)]) -> String {
    let mut by_version: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (id, version) in sets {
        by_version.entry(version).or_default().push(id.to_string());
    }
    by_version
        .iter()
        .map(|(version, ids)| format!("{version} (sets {})", ids.join(", ")))
        .collect::<Vec<_>>()
        .join(" and ")
}

fn in_folder(file_folder: &str, folder: &str) -> bool {
    folder.is_empty() || file_folder == folder || file_folder.starts_with(&format!("{folder}/"))
}

/// Resolves the scope and the model version. 404 for unknown sets and recordings, 400 when the
/// scope mixes model versions.
pub fn resolve_search(request: &SearchRequest, state: &DomainState) -> Result<ResolvedSearch, SearchError> {
    let set = |id: EmbeddingSetId| {
        state.embedding_sets.get(&id).ok_or_else(|| SearchError::NotFound(format!("embedding set {id} does not exist")))
    };
    let (query_version, query_audio_file_id) = match &request.query {
        SearchQuery::Window { embedding_set_id, row_index } => {
            let query_set = set(*embedding_set_id)?;
            if *row_index >= query_set.row_count {
                return Err(SearchError::NotFound(format!(
                    "embedding set {embedding_set_id} has {} windows, there is no row_index {row_index}",
                    query_set.row_count
                )));
            }
            (Some(query_set.model_version.clone()), Some(query_set.audio_file_id))
        }
        SearchQuery::Span { audio_file_id, .. } => {
            if !state.audio_files.contains_key(audio_file_id) {
                return Err(SearchError::NotFound(format!("recording {audio_file_id} does not exist")));
            }
            (None, Some(*audio_file_id))
        }
        SearchQuery::Clip => (None, None),
    };
    // The sets the scope names, before any exclusion.
    let scope: Vec<EmbeddingSetId> = if let Some(ids) = &request.embedding_set_ids {
        for id in ids {
            set(*id)?;
        }
        ids.clone()
    } else if request.folder.is_some() || request.model_version.is_some() {
        let folder = request.folder.as_deref();
        // A folder holds sets of every model that encoded its recordings: a window query keeps
        // those of its own model version unless model_version says otherwise.
        let version = request.model_version.as_ref().or(query_version.as_ref());
        let selected: Vec<EmbeddingSetId> = state
            .embedding_sets
            .iter()
            .filter(|(_, set)| version.is_none_or(|version| &set.model_version == version))
            .filter(|(_, set)| {
                folder.is_none_or(|folder| {
                    state.audio_files.get(&set.audio_file_id).is_some_and(|file| in_folder(&file.folder, folder))
                })
            })
            .map(|(id, _)| *id)
            .collect();
        if selected.is_empty() {
            return Err(SearchError::NotFound(match (&request.folder, &request.model_version) {
                (Some(folder), Some(version)) => {
                    format!("no embedding sets of model version {version} in folder {folder:?}")
                }
                (Some(folder), None) => format!("no embedding sets in folder {folder:?}"),
                (_, Some(version)) => format!("no embedding sets of model version {version}"),
                (None, None) => "no embedding sets".into(),
            }));
        }
        selected
    } else {
        // No scope: every set of the query's model version.
        let version = match (&query_version, query_audio_file_id) {
            (Some(version), _) => version.clone(),
            (None, audio) => {
                let versions: std::collections::BTreeSet<&str> = state
                    .embedding_sets
                    .values()
                    .filter(|set| audio.is_none_or(|audio| set.audio_file_id == audio))
                    .map(|set| set.model_version.as_str())
                    .collect();
                let source = audio.map_or("the library".to_string(), |audio| format!("recording {audio}"));
                match versions.len() {
                    1 => versions.into_iter().next().unwrap_or_default().to_string(),
                    0 => {
                        return Err(invalid(format!(
                            "model_version: {source} has no embedding sets to choose a model from; give \
                             model_version or embedding_set_ids"
                        )))
                    }
                    _ => {
                        return Err(invalid(format!(
                            "model_version: {source} has embedding sets of several model versions ({}); say which \
                             with model_version",
                            versions.into_iter().collect::<Vec<_>>().join(", ")
                        )))
                    }
                }
            }
        };
        state.embedding_sets.iter().filter(|(_, set)| set.model_version == version).map(|(id, _)| *id).collect()
    };
    let mut named: Vec<(EmbeddingSetId, &str)> =
        scope.iter().map(|id| set(*id).map(|set| (*id, set.model_version.as_str()))).collect::<Result<_, _>>()?;
    named.sort();
    let model_version = named.first().map(|(_, version)| version.to_string()).unwrap_or_default();
    if named.iter().any(|(_, version)| *version != model_version) {
        return Err(SearchError::MixedModelVersions(format!(
            "the embedding sets in scope do not share one model version: {}; narrow the scope (model_version, \
             embedding_set_ids)",
            versions_message(&named)
        )));
    }
    if let (Some(version), SearchQuery::Window { embedding_set_id, .. }) = (&query_version, &request.query) {
        if *version != model_version {
            return Err(SearchError::MixedModelVersions(format!(
                "the query window comes from embedding set {embedding_set_id} of model version {version}, but the \
                 scope holds {}",
                versions_message(&named)
            )));
        }
    }
    let encoding = match request.query {
        SearchQuery::Window { .. } => None,
        SearchQuery::Span { .. } | SearchQuery::Clip => {
            let own = named.iter().find(|(id, _)| {
                query_audio_file_id
                    .is_some_and(|audio| state.embedding_sets.get(id).is_some_and(|s| s.audio_file_id == audio))
            });
            let chosen = own.or(named.first()).map(|(id, _)| *id);
            let config = chosen
                .and_then(|id| state.embedding_sets.get(&id))
                .and_then(|set| state.job_for_signature(&set.encoding_signature))
                .and_then(|job| state.processing_jobs.get(&job))
                .map(|job| (*job.config).clone())
                .ok_or_else(|| SearchError::NotFound("no processing configuration is recorded for the scope".into()))?;
            Some(config)
        }
    };
    let embedding_set_ids = named
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| {
            !(request.exclude_same_recording
                && query_audio_file_id
                    .is_some_and(|audio| state.embedding_sets.get(id).is_some_and(|set| set.audio_file_id == audio)))
        })
        .collect();
    Ok(ResolvedSearch { model_version, embedding_set_ids, query_audio_file_id, encoding })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::EncodingSignature;
    use crate::domain::state::{AudioFileState, AudioMetadataState, EmbeddingSetState};
    use serde_json::json;

    fn state() -> DomainState {
        let mut state = DomainState::default();
        for (audio, folder) in [(1, "maui/2024"), (2, "maui"), (3, "kauai")] {
            state.audio_files.insert(
                AudioFileId(audio),
                AudioFileState {
                    checksum_sha256: crate::domain::ids::Sha256Hex(format!("{audio}")),
                    stored_path: format!("audio/raw/{audio}/original.wav"),
                    folder: folder.into(),
                    original_filename: format!("{audio}.wav"),
                    duration_seconds: 60.0,
                    sample_rate: 32_000,
                    metadata: AudioMetadataState::default(),
                },
            );
        }
        for (set, audio, version) in [(1, 1, "a"), (2, 2, "a"), (3, 3, "b"), (4, 1, "b")] {
            state.embedding_sets.insert(
                EmbeddingSetId(set),
                EmbeddingSetState {
                    audio_file_id: AudioFileId(audio),
                    parquet_path: format!("embeddings/{version}/{audio}/{set}.parquet"),
                    encoding_signature: EncodingSignature(format!("s{set}")),
                    model_version: version.into(),
                    vector_dim: 4,
                    row_count: 10,
                },
            );
        }
        state
    }

    fn resolve(body: Value) -> Result<ResolvedSearch, SearchError> {
        resolve_search(&parse_search_request(&body, false)?, &state())
    }

    fn ids(resolved: &ResolvedSearch) -> Vec<u64> {
        resolved.embedding_set_ids.iter().map(|id| id.0).collect()
    }

    #[test]
    fn without_a_scope_a_window_searches_every_set_of_its_model_version() {
        let resolved = resolve(json!({"query": {"embedding_set_id": 1, "row_index": 3}})).unwrap();
        assert_eq!((ids(&resolved), resolved.model_version.as_str()), (vec![1, 2], "a"));
        let resolved =
            resolve(json!({"query": {"embedding_set_id": 1, "row_index": 3}, "exclude_same_recording": true})).unwrap();
        assert_eq!(ids(&resolved), vec![2]);
        let resolved = resolve(json!({"query": {"embedding_set_id": 4, "row_index": 0}, "folder": "maui"})).unwrap();
        assert_eq!(ids(&resolved), vec![4], "the folder's sets of the query's model version");
        let resolved = resolve(json!({"query": {"embedding_set_id": 1, "row_index": 3}, "folder": "maui"})).unwrap();
        assert_eq!(ids(&resolved), vec![1, 2], "maui and maui/2024");
        let error = resolve(json!({"query": {"audio_file_id": 3, "start_seconds": 0}, "folder": "maui"})).unwrap_err();
        assert!(matches!(error, SearchError::MixedModelVersions(_)), "a span has no model version of its own");
    }

    #[test]
    fn mixed_model_versions_are_refused_naming_them() {
        let error = resolve(json!({"query": {"embedding_set_id": 1, "row_index": 0}, "embedding_set_ids": [1, 3]}))
            .unwrap_err();
        assert!(
            matches!(&error, SearchError::MixedModelVersions(message)
            if message.contains("a (sets 1)") && message.contains("b (sets 3)")),
            "{error}"
        );
        let error =
            resolve(json!({"query": {"embedding_set_id": 1, "row_index": 0}, "model_version": "b"})).unwrap_err();
        assert!(matches!(&error, SearchError::MixedModelVersions(message) if message.contains("model version a")));
        let error = resolve(json!({"query": {"audio_file_id": 1, "start_seconds": 0}})).unwrap_err();
        assert!(error.to_string().contains("several model versions (a, b)"), "{error}");
    }

    #[test]
    fn unknown_sets_and_recordings_are_not_found_and_bad_fields_are_named() {
        for body in [
            json!({"query": {"embedding_set_id": 9, "row_index": 0}}),
            json!({"query": {"embedding_set_id": 1, "row_index": 10}}),
            json!({"query": {"audio_file_id": 9, "start_seconds": 0}}),
            json!({"query": {"embedding_set_id": 1, "row_index": 0}, "embedding_set_ids": [1, 77]}),
            json!({"query": {"embedding_set_id": 1, "row_index": 0}, "folder": "nowhere"}),
        ] {
            assert!(matches!(resolve(body.clone()), Err(SearchError::NotFound(_))), "{body}");
        }
        for (body, field) in [
            (json!({"query": {"embedding_set_id": 1, "row_index": 0}, "k": 0}), "k:"),
            (json!({"query": {"embedding_set_id": 1, "row_index": 0}, "k": 1001}), "k:"),
            (json!({"query": {"embedding_set_id": 1, "row_index": 0}, "metric": "dot"}), "metric:"),
            (json!({"query": {"embedding_set_id": 1, "row_index": -1}}), "query.row_index:"),
            (json!({"query": {"embedding_set_id": 1}}), "query.row_index:"),
            (json!({"query": {"audio_file_id": 1, "start_seconds": -2}}), "query.start_seconds:"),
            (json!({"query": {"audio_file_id": 1, "start": 2}}), "query.start:"),
            (json!({"query": {"embedding_set_id": 1, "row_index": 0}, "exact": false}), "exact:"),
            (json!({"query": {"embedding_set_id": 1, "row_index": 0}, "kk": 3}), "kk:"),
            (
                json!({"query": {"embedding_set_id": 1, "row_index": 0}, "exclude_same_recording": "yes"}),
                "exclude_same_recording:",
            ),
            (json!({}), "query:"),
        ] {
            let error = resolve(body.clone()).unwrap_err();
            assert!(matches!(&error, SearchError::Invalid(message) if message.starts_with(field)), "{body}: {error}");
        }
        assert!(parse_search_request(&json!({"query": {"embedding_set_id": 1, "row_index": 0}}), true).is_err());
        assert_eq!(parse_search_request(&json!({}), true).unwrap().query, SearchQuery::Clip);
    }
}
