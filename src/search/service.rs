//! Running a search: resolve the scope, make the query vector (a stored window's, or a span or
//! clip embedded on the fly with the scope's model), open (or build) each set's vector cache,
//! scan, and describe the hits with their recordings. Blocking.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::cache::{open_or_build, CacheStatus, SourceIdentity, VectorCache};
use super::compact::{compact_top_k, CompactSlab};
use super::request::{resolve_search, SearchQuery, SearchRequest};
use super::SearchError;
use crate::domain::ids::EmbeddingSetId;
use crate::domain::state::EmbeddingSetState;
use crate::processing::config::from_recorded;
use crate::processing::pipeline::{embed_file_windows, embed_window_at, PipelineError};
use crate::services::Humpback;

/// An uploaded clip gives at most this many windows to the query (their mean is the query).
pub const MAX_CLIP_WINDOWS: usize = 120;

/// One ranked window.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SearchResult {
    /// 1 for the best.
    pub rank: usize,
    pub audio_file_id: u64,
    /// The recording's original file name.
    pub recording: String,
    pub folder: String,
    pub embedding_set_id: u64,
    pub row_index: u64,
    pub start_seconds: f64,
    pub end_seconds: f64,
    /// Cosine similarity (higher is better) or Euclidean distance (lower is better).
    pub score: f32,
    /// When the window started (ISO 8601, UTC), where the recording's start is known.
    #[serde(default)]
    pub start_time_utc: Option<String>,
}

/// The answer of `POST /api/search`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SearchAnswer {
    pub results: Vec<SearchResult>,
    pub metric: String,
    pub k: usize,
    /// Windows scored (every row of every set in scope).
    pub searched_windows: u64,
    /// Of those, the windows whose compact-copy bounds could reach the top k, scored again
    /// from their f32 vectors (the answer is the f32 scan's either way).
    pub rescored_windows: usize,
    pub searched_sets: usize,
    pub model_version: String,
    /// Always true: the same top-k as a brute-force scan (no approximate index).
    pub exact: bool,
    /// What the query was: the window, the span (with the start actually used) or the clip.
    pub query: serde_json::Value,
    /// Vector caches built (or rebuilt) for this search.
    pub caches_built: usize,
    pub elapsed_ms: f64,
}

/// `cache/vectors/{id}.f32`.
pub fn cache_path(humpback: &Humpback, id: EmbeddingSetId) -> PathBuf {
    humpback.data_dir.vector_cache_dir().join(format!("{id}.f32"))
}

/// The current vector cache of a set, built from its Parquet file when missing or stale.
pub fn open_set_cache(
    humpback: &Humpback,
    id: EmbeddingSetId,
    set: &EmbeddingSetState,
) -> Result<(VectorCache, CacheStatus), SearchError> {
    let parquet = humpback.storage.readable_path(&set.parquet_path)?;
    let identity = SourceIdentity::of_parquet(&parquet, set.vector_dim, set.row_count, &set.encoding_signature.0)?;
    Ok(open_or_build(&parquet, &cache_path(humpback, id), &identity)?)
}

fn scan_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |threads| threads.get())
}

/// The query vector of a span or a clip, embedded with the model of the scope's sets.
fn embed_query(
    humpback: &Humpback,
    encoding: &crate::domain::events::EncodingConfig,
    audio: &Path,
    start_seconds: Option<f64>,
) -> Result<(Vec<f32>, serde_json::Value), SearchError> {
    let registered = humpback.models.find(&encoding.model_name).ok_or_else(|| {
        SearchError::ModelUnavailable(format!(
            "model {} (which encoded the sets in scope) is not available now, so the query cannot be embedded; \
             search from a stored window instead",
            encoding.model_name
        ))
    })?;
    if registered.info.version != encoding.model_version {
        return Err(SearchError::ModelUnavailable(format!(
            "model {} changed since the sets in scope were encoded (version {} is now {}), so a new embedding would \
             not be comparable; search from a stored window instead",
            encoding.model_name, encoding.model_version, registered.info.version
        )));
    }
    let resolved = from_recorded(encoding, registered.info.input_kind, registered.info.embedding_dim)
        .map_err(|error| SearchError::Invalid(format!("the recorded encoding of the scope: {error}")))?;
    let mut model = humpback.models.open(&encoding.model_name).map_err(PipelineError::from)?;
    match start_seconds {
        Some(start) => {
            let (vector, used) =
                embed_window_at(audio, &resolved, model.as_mut(), start).map_err(|error| match error {
                    PipelineError::OutsideRecording { .. } => {
                        SearchError::Invalid(format!("query.start_seconds: {error}"))
                    }
                    other => other.into(),
                })?;
            Ok((vector, serde_json::json!({"start_seconds": used, "window_seconds": resolved.window.window_seconds})))
        }
        None => {
            let windows =
                embed_file_windows(audio, &resolved, model.as_mut(), registered.batch.batch_size, MAX_CLIP_WINDOWS)
                    .map_err(|error| match error {
                        PipelineError::Audio(error) => {
                            SearchError::BadClip(format!("the clip cannot be used: {error}"))
                        }
                        other => other.into(),
                    })?;
            let Some(first) = windows.first() else {
                return Err(SearchError::BadClip(format!(
                    "the clip gives no {} s window (it is shorter than one window and the scope's short_file policy \
                     is skip)",
                    resolved.window.window_seconds
                )));
            };
            let mut mean = vec![0.0f32; first.len()];
            for window in &windows {
                for (sum, value) in mean.iter_mut().zip(window) {
                    *sum += value;
                }
            }
            let count = windows.len() as f32;
            mean.iter_mut().for_each(|value| *value /= count);
            Ok((
                mean,
                serde_json::json!({"clip_windows": windows.len(), "window_seconds": resolved.window.window_seconds}),
            ))
        }
    }
}

/// Runs one search. `clip`: the staged bytes of an uploaded clip (the query is then `Clip`).
pub fn run_search(
    humpback: &Humpback,
    request: &SearchRequest,
    clip: Option<&Path>,
) -> Result<SearchAnswer, SearchError> {
    let started = Instant::now();
    let (resolved, sets, query_audio_path, query_set) = humpback.writer.read_state(|state| {
        let resolved = resolve_search(request, state)?;
        let sets: Vec<(EmbeddingSetId, EmbeddingSetState)> = resolved
            .embedding_set_ids
            .iter()
            .filter_map(|id| state.embedding_sets.get(id).map(|set| (*id, set.clone())))
            .collect();
        let audio_path = resolved
            .query_audio_file_id
            .and_then(|audio| state.audio_files.get(&audio))
            .map(|file| file.stored_path.clone());
        let query_set = match &request.query {
            SearchQuery::Window { embedding_set_id, .. } => {
                state.embedding_sets.get(embedding_set_id).map(|set| (*embedding_set_id, set.clone()))
            }
            _ => None,
        };
        Ok::<_, SearchError>((resolved, sets, audio_path, query_set))
    })?;
    let mut caches_built = 0;
    let mut count_built = |status: &CacheStatus| {
        if matches!(status, CacheStatus::Built(_)) {
            caches_built += 1;
        }
    };
    let (query_vector, query_json) = match (&request.query, &resolved.encoding) {
        (SearchQuery::Window { embedding_set_id, row_index }, _) => {
            let (id, set) = query_set
                .ok_or_else(|| SearchError::NotFound(format!("embedding set {embedding_set_id} does not exist")))?;
            let (cache, status) = open_set_cache(humpback, id, &set)?;
            count_built(&status);
            let row = *row_index as usize;
            let vector = cache.vectors()[row * cache.dim()..(row + 1) * cache.dim()].to_vec();
            let (start, end) = cache.window_times(row).unwrap_or_default();
            (
                vector,
                serde_json::json!({"embedding_set_id": id.0, "row_index": row_index, "audio_file_id":
                    set.audio_file_id.0, "start_seconds": start, "end_seconds": end}),
            )
        }
        (SearchQuery::Span { audio_file_id, start_seconds }, Some(encoding)) => {
            let audio = query_audio_path
                .ok_or_else(|| SearchError::NotFound(format!("recording {audio_file_id} does not exist")))?;
            let audio = humpback.storage.readable_path(&audio)?;
            let (vector, mut described) = embed_query(humpback, encoding, &audio, Some(*start_seconds))?;
            described["audio_file_id"] = serde_json::json!(audio_file_id.0);
            (vector, described)
        }
        (SearchQuery::Clip, Some(encoding)) => {
            let clip = clip.ok_or_else(|| SearchError::BadClip("no clip was uploaded".into()))?;
            embed_query(humpback, encoding, clip, None)?
        }
        (_, None) => return Err(SearchError::NotFound("no processing configuration is recorded for the scope".into())),
    };
    let mut caches = Vec::with_capacity(sets.len());
    for (id, set) in &sets {
        let (cache, status) = open_set_cache(humpback, *id, set)?;
        count_built(&status);
        caches.push((*id, set.audio_file_id, cache));
    }
    let slabs: Vec<CompactSlab<'_>> = caches.iter().map(|(id, _, cache)| cache.compact_slab(id.0)).collect();
    let searched_windows = slabs.iter().map(|slab| slab.exact.rows() as u64).sum();
    let (hits, rescored_windows) = compact_top_k(&query_vector, &slabs, request.k, request.metric, scan_threads())?;
    let by_set: BTreeMap<u64, (u64, &VectorCache)> =
        caches.iter().map(|(id, audio, cache)| (id.0, (audio.0, cache))).collect();
    let audio_ids: std::collections::BTreeSet<u64> =
        hits.iter().filter_map(|hit| by_set.get(&hit.embedding_set_id).map(|(audio, _)| *audio)).collect();
    let recordings: BTreeMap<u64, (String, String)> = humpback.reader.with_connection(|connection| {
        let mut found = BTreeMap::new();
        for audio in &audio_ids {
            if let Some(row) = crate::projections::queries::audio_file(connection, *audio)? {
                found.insert(*audio, (row.filename, row.folder));
            }
        }
        Ok(found)
    })?;
    let recording_starts: BTreeMap<u64, crate::recording_time::UtcTime> = humpback.writer.read_state(|state| {
        audio_ids
            .iter()
            .filter_map(|audio| Some((*audio, state.recorded_at(crate::domain::ids::AudioFileId(*audio))?)))
            .collect()
    });
    let results = hits
        .iter()
        .enumerate()
        .map(|(position, hit)| {
            let (audio, cache) = by_set.get(&hit.embedding_set_id).copied().unzip();
            let audio = audio.unwrap_or_default();
            let (start, end) = cache.and_then(|cache| cache.window_times(hit.row_index as usize)).unwrap_or_default();
            let (recording, folder) = recordings.get(&audio).cloned().unwrap_or_default();
            SearchResult {
                rank: position + 1,
                audio_file_id: audio,
                recording,
                folder,
                embedding_set_id: hit.embedding_set_id,
                row_index: hit.row_index,
                start_seconds: start,
                end_seconds: end,
                score: hit.score,
                start_time_utc: crate::recording_time::window_start_iso8601(
                    recording_starts.get(&audio).copied(),
                    start,
                ),
            }
        })
        .collect();
    Ok(SearchAnswer {
        results,
        metric: request.metric.as_str().to_string(),
        k: request.k,
        searched_windows,
        rescored_windows,
        searched_sets: sets.len(),
        model_version: resolved.model_version,
        exact: true,
        query: query_json,
        caches_built,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}
