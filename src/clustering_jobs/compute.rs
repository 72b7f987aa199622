//! The clustering of one job, from the state it reads and its storage: load the embedding sets
//! (keeping each row's set, index and time), filter, run the clustering core with progress and
//! cancellation, measure, summarise metadata per cluster, write `clusters.json` and
//! `assignments.parquet`. The same code runs in the server's clustering workers
//! (`worker.rs`) and in a remote `humpback worker` (`workers::clustering`).

use anyhow::{anyhow, Context};

use super::annotations::{overlaps_labels, recording_spans, window_category, LabelledSpan, ANNOTATION_LABEL_FIELD};
use super::outputs::{describe_assignments_file, write_assignments_with_times, AssignmentRow};
use super::request::{file_documents, metadata_value, StoredClusteringParameters};
use crate::artifacts::embeddings_parquet::read_batches;
use crate::artifacts::files::write_atomically;
use crate::clustering::{
    reference_metrics, run_clustering_consuming, run_sweep, summarize_clusters, ClusteringError, FileContext,
};
use crate::domain::events::{ClusterAssignments, ClusterRecord, ClusteringJobCompleted};
use crate::domain::ids::{AudioFileId, ClusterId, ClusteringJobId, EmbeddingSetId};
use crate::domain::json_text::JsonText;
use crate::domain::state::DomainState;
use crate::storage::Storage;

/// Runs clustering job `job_id` over `state` (at least its [`clustering_inputs`]), reading the
/// embedding sets (and detection scores) from `storage` and writing `clusters.json` and
/// `assignments.parquet` to the local paths of `output_keys` (the caller publishes them).
/// `progress(stage, fraction)` returns `false` to stop: then `Ok(None)`. The same code runs in
/// the server's clustering workers and in a remote `humpback worker`.
pub fn compute_clustering(
    state: &DomainState,
    storage: &Storage,
    job_id: ClusteringJobId,
    output_keys: (&str, &str),
    progress: &mut dyn FnMut(&str, f64) -> bool,
) -> anyhow::Result<Option<ComputedClustering>> {
    let (set_ids, stored) = state
        .clustering_jobs
        .get(&job_id)
        .map(|job| (job.embedding_set_ids.clone(), job.parameters.clone()))
        .ok_or_else(|| anyhow!("clustering job {job_id} is unknown"))?;
    let stored = StoredClusteringParameters::from_json_text(&stored)?;
    // Load every set, keeping each row's set, index and time.
    let mut matrix = Vec::new();
    let mut dims = 0usize;
    let mut rows: Vec<(EmbeddingSetId, u64, f64, f64, usize)> = Vec::new();
    // Each kept row's absolute start, and the filters' window-time part.
    let mut row_starts: Vec<Option<crate::recording_time::UtcTime>> = Vec::new();
    let time_filter = stored.filters.window_time_filter()?;
    let mut files: Vec<FileContext> = Vec::new();
    let mut file_positions: Vec<AudioFileId> = Vec::new();
    // Each recording's annotations, read once when the job runs.
    let mut file_spans: Vec<Vec<LabelledSpan>> = Vec::new();
    let annotation_labels: std::collections::BTreeSet<String> =
        stored.filters.annotation_labels.iter().cloned().collect();
    // "Cluster only the calls": each scored window's score, read once.
    let scores = match stored.filters.detection_job_id {
        Some(detection_job) => Some(window_scores(
            storage,
            crate::domain::ids::DetectionJobId(detection_job),
            stored.filters.score_label.as_deref(),
        )?),
        None => None,
    };
    let min_score = stored.filters.min_score.unwrap_or(0.0);
    let (mut windows_considered, mut windows_below_min_score) = (0u64, 0u64);
    for (position, set_id) in set_ids.iter().enumerate() {
        if !progress("loading", 0.05 * position as f64 / set_ids.len().max(1) as f64) {
            return Ok(None);
        }
        let (parquet, audio, folder, documents, recorded_at) = {
            let set = state.embedding_sets.get(set_id);
            let file = set.and_then(|set| state.audio_files.get(&set.audio_file_id));
            match (set, file) {
                (Some(set), Some(file)) => (
                    set.parquet_path.clone(),
                    set.audio_file_id,
                    file.folder.clone(),
                    file_documents(state, set.audio_file_id),
                    state.recorded_at(set.audio_file_id),
                ),
                _ => return Err(anyhow!("embedding set {set_id} or its recording is unknown")),
            }
        };
        let file_index = match file_positions.iter().position(|known| *known == audio) {
            Some(index) => index,
            None => {
                file_positions.push(audio);
                files.push(FileContext { recording_id: audio.to_string(), folder, documents });
                file_spans.push(recording_spans(state, audio));
                files.len() - 1
            }
        };
        let path = storage.readable_path(&parquet)?;
        for batch in read_batches(&path, 4096).with_context(|| format!("reading embedding set {set_id}"))? {
            let batch = batch.with_context(|| format!("reading embedding set {set_id}"))?;
            if dims == 0 {
                dims = batch.vector_dim;
                // Room for every row at once: growing by doubling would hold the old and the
                // new buffer together (a million 1280-d rows are 5 GB).
                let total_rows: u64 =
                    set_ids.iter().filter_map(|id| state.embedding_sets.get(id)).map(|set| set.row_count).sum();
                let values = usize::try_from(total_rows).unwrap_or(usize::MAX).saturating_mul(dims);
                matrix.try_reserve_exact(values).map_err(|_| {
                    anyhow!(
                        "the selected sets hold {total_rows} windows of {dims} dimensions ({:.1} GB as f32), \
                         more than this process can allocate; cluster fewer sets",
                        values as f64 * 4.0 / 1e9
                    )
                })?;
            } else if dims != batch.vector_dim {
                return Err(anyhow!("embedding set {set_id} has {} dimensions, the others {dims}", batch.vector_dim));
            }
            for i in 0..batch.row_index.len() {
                let (start, end) = (batch.start_seconds[i], batch.end_seconds[i]);
                windows_considered += 1;
                if let Some(scores) = &scores {
                    if scores.get(&(set_id.0, batch.row_index[i])).is_none_or(|score| *score < min_score) {
                        windows_below_min_score += 1;
                        continue;
                    }
                }
                if !annotation_labels.is_empty()
                    && !overlaps_labels(&file_spans[file_index], start, end, &annotation_labels)
                {
                    continue;
                }
                let start_utc = recorded_at.map(|at| crate::recording_time::window_start_utc(at, start));
                if !time_filter.keeps(start_utc) {
                    continue;
                }
                matrix.extend_from_slice(&batch.vectors[i * dims..(i + 1) * dims]);
                rows.push((*set_id, batch.row_index[i], start, end, file_index));
                row_starts.push(start_utc);
            }
        }
    }
    if rows.is_empty() && !annotation_labels.is_empty() {
        return Err(anyhow!(
            "no window of the selected embedding sets overlaps an annotation labelled {:?}",
            stored.filters.annotation_labels
        ));
    }
    if rows.is_empty() && scores.is_some() && windows_below_min_score == windows_considered {
        return Err(anyhow!("no window of the selected embedding sets scores at or above min_score {min_score}"));
    }
    if rows.is_empty() && !time_filter.is_unbounded() {
        return Err(anyhow!("the time filters (date_from, date_to, hours) keep no window of the selected sets"));
    }
    let sweep = match &stored.sweep {
        Some(sweep) => match run_sweep(&matrix, dims, &stored.parameters, sweep, &mut |stage, fraction| {
            progress(stage, 0.05 + 0.25 * fraction)
        }) {
            Ok(entries) => Some(entries),
            Err(ClusteringError::Cancelled { .. }) => return Ok(None),
            Err(error) => return Err(error.into()),
        },
        None => None,
    };
    let offset = if sweep.is_some() { 0.3 } else { 0.05 };
    let result = match run_clustering_consuming(matrix, dims, &stored.parameters, &mut |stage, fraction| {
        progress(stage, offset + (0.9 - offset) * fraction)
    }) {
        Ok(result) => result,
        Err(ClusteringError::Cancelled { .. }) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let row_files: Vec<usize> = rows.iter().map(|row| row.4).collect();
    let mut summaries = summarize_clusters(&result.labels, &row_files, &files)?;
    crate::clustering::metadata::add_time_distributions(&mut summaries, &result.labels, &row_starts);
    let reference = match &stored.reference_field {
        Some(field) => {
            let categories: Vec<String> = rows
                .iter()
                .map(|row| {
                    let file = &files[row.4];
                    if field == ANNOTATION_LABEL_FIELD {
                        return window_category(&file_spans[row.4], row.2, row.3);
                    }
                    if field == "folder" {
                        return file.folder.clone();
                    }
                    match metadata_value(&file.documents, field) {
                        Some(serde_json::Value::String(text)) => text.clone(),
                        Some(serde_json::Value::Null) | None => "(missing)".to_string(),
                        Some(other) => other.to_string(),
                    }
                })
                .collect();
            Some(reference_metrics(&result.labels, &categories)?)
        }
        None => None,
    };
    if !progress("writing", 0.95) {
        return Ok(None);
    }
    let mut metrics = serde_json::json!({
        "cluster_count": result.cluster_count,
        "noise_count": result.labels.iter().filter(|label| **label < 0).count(),
        "rows": result.labels.len(),
        "internal": result.metrics,
        "reference_field": stored.reference_field,
        "reference": reference,
        "sweep": sweep,
    });
    if let Some(detection_job_id) = stored.filters.detection_job_id {
        metrics["score_filter"] = serde_json::json!({
            "detection_job_id": detection_job_id,
            "min_score": min_score,
            "score_label": stored.filters.score_label,
            "windows_scored_at_or_above": windows_considered - windows_below_min_score,
            "windows_in_sets": windows_considered,
            "windows_kept": rows.len(),
        });
    }
    let (clusters_json, assignments_parquet) = output_keys;
    let assignments: Vec<AssignmentRow> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| AssignmentRow {
            embedding_set_id: row.0 .0,
            row_index: row.1,
            start_seconds: row.2,
            end_seconds: row.3,
            cluster_label: result.labels[i],
            probability: result.probabilities.get(i).copied().unwrap_or(0.0),
            x: result.coordinates_2d.as_ref().map(|c| c[i][0]),
            y: result.coordinates_2d.as_ref().map(|c| c[i][1]),
        })
        .collect();
    let assignments_full_path = storage.local_path(assignments_parquet)?;
    write_assignments_with_times(&assignments_full_path, &assignments, &row_starts)?;
    // The log vouches for these bytes: the projection reads the assignments back from them.
    let assignments_file = describe_assignments_file(&assignments_full_path)?;
    let document = serde_json::json!({
        "clustering_job_id": job_id.0,
        "embedding_set_ids": set_ids.iter().map(|id| id.0).collect::<Vec<_>>(),
        "parameters": serde_json::to_value(&stored).unwrap_or_default(),
        "metrics": metrics,
        "clusters": summaries.iter().map(|s| serde_json::json!({"label": s.label, "size": s.size, "noise": s.label < 0, "metadata_summary": s.summary})).collect::<Vec<_>>(),
    });
    write_atomically(&storage.local_path(clusters_json)?, serde_json::to_string_pretty(&document)?.as_bytes())?;
    Ok(Some(ComputedClustering {
        clusters: summaries
            .iter()
            .map(|summary| ClusterRecord {
                cluster_id: ClusterId(0),
                label: summary.label,
                size: summary.size,
                metadata_summary: JsonText::from_value(&summary.summary),
            })
            .collect(),
        metrics: JsonText::from_value(&metrics),
        assignments_file,
    }))
}

/// What a clustering run found: the facts its completion records (the outputs are in files).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ComputedClustering {
    pub clusters: Vec<ClusterRecord>,
    pub metrics: JsonText,
    /// `assignments.parquet` as written: the log vouches for these bytes.
    pub assignments_file: crate::domain::events::AssignmentsFile,
}

impl ComputedClustering {
    /// The completion event, naming the outputs at their final keys.
    pub fn into_completion(
        self,
        job_id: ClusteringJobId,
        attempt: u32,
        clusters_json_path: String,
        assignments_path: String,
    ) -> ClusteringJobCompleted {
        ClusteringJobCompleted {
            job_id,
            attempt,
            clusters: self.clusters,
            assignments: ClusterAssignments::InFile(self.assignments_file),
            metrics: self.metrics,
            clusters_json_path,
            assignments_path,
        }
    }
}

/// The part of the state clustering job `job_id` reads: the job, its embedding sets, their
/// recordings (folders, metadata, start times) and their annotations. What a remote worker is
/// sent with the job.
pub fn clustering_inputs(state: &DomainState, job_id: ClusteringJobId) -> Option<DomainState> {
    let job = state.clustering_jobs.get(&job_id)?;
    let embedding_sets: std::collections::BTreeMap<_, _> = job
        .embedding_set_ids
        .iter()
        .filter_map(|id| state.embedding_sets.get(id).map(|set| (*id, set.clone())))
        .collect();
    let recordings: std::collections::BTreeSet<AudioFileId> =
        embedding_sets.values().map(|set| set.audio_file_id).collect();
    Some(DomainState {
        clustering_jobs: std::iter::once((job_id, job.clone())).collect(),
        audio_files: recordings
            .iter()
            .filter_map(|id| state.audio_files.get(id).map(|file| (*id, file.clone())))
            .collect(),
        annotations: state
            .annotations
            .iter()
            .filter(|(_, annotation)| recordings.contains(&annotation.audio_file_id))
            .map(|(id, annotation)| (*id, annotation.clone()))
            .collect(),
        recording_start_times: state
            .recording_start_times
            .iter()
            .filter(|(id, _)| recordings.contains(id))
            .map(|(id, time)| (*id, *time))
            .collect(),
        embedding_sets,
        ..DomainState::default()
    })
}

/// Each window's score in a detection job's `scores.parquet`, by (embedding set, row): the
/// chosen label's, or the best over its labels.
fn window_scores(
    storage: &Storage,
    job: crate::domain::ids::DetectionJobId,
    label: Option<&str>,
) -> anyhow::Result<std::collections::HashMap<(u64, u64), f64>> {
    let path = storage.readable_path(&crate::classifier::detection_worker::scores_path(job))?;
    let table = crate::classifier::scores_parquet::read_scores(&path, None)
        .with_context(|| format!("reading the scores of detection job {job}"))?;
    let column = match label {
        Some(label) => Some(
            table.label_index(label).ok_or_else(|| anyhow!("detection job {job} has no score for label {label:?}"))?,
        ),
        None => None,
    };
    Ok(table
        .windows
        .iter()
        .map(|window| {
            let score = match column {
                Some(column) => window.scores[column],
                None => window.scores.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            };
            ((window.place.embedding_set_id.0, window.place.row_index), score)
        })
        .collect())
}
