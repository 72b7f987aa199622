//! Read models over the projections: the rows the API returns and the UI renders.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::{query_all, sql_error, ProjectionError};

fn json_column(text: Option<String>) -> serde_json::Value {
    text.and_then(|text| serde_json::from_str(&text).ok()).unwrap_or(serde_json::Value::Null)
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AudioFileRow {
    pub id: u64,
    pub filename: String,
    pub folder: String,
    pub checksum_sha256: String,
    pub size_bytes: u64,
    pub duration_seconds: f64,
    pub sample_rate: u32,
    pub channels: u16,
    pub codec: String,
    pub stored_path: String,
    pub created_at: String,
    /// When the recording started (ISO 8601, UTC), where known.
    pub recorded_at: Option<String>,
    /// `bext`, `file_name` or `user`; `None` when the start is unknown.
    pub recorded_at_source: Option<String>,
}

const AUDIO_COLUMNS: &str =
    "id, filename, folder, checksum_sha256, size_bytes, duration_seconds, sample_rate_original, \
                             channels, codec, stored_path, created_at, recorded_at, source";

/// Audio files with their start times (the `recording_times` projection).
const AUDIO_FROM: &str = "audio_files LEFT JOIN recording_times ON recording_times.audio_file_id = audio_files.id";

fn audio_row(row: &Row<'_>) -> rusqlite::Result<AudioFileRow> {
    Ok(AudioFileRow {
        id: row.get(0)?,
        filename: row.get(1)?,
        folder: row.get(2)?,
        checksum_sha256: row.get(3)?,
        size_bytes: row.get(4)?,
        duration_seconds: row.get(5)?,
        sample_rate: row.get(6)?,
        channels: row.get(7)?,
        codec: row.get(8)?,
        stored_path: row.get(9)?,
        created_at: row.get(10)?,
        recorded_at: row.get(11)?,
        recorded_at_source: row.get(12)?,
    })
}

/// How to list audio files.
#[derive(Debug, Clone, Default)]
pub struct AudioListQuery {
    /// Only files in this folder or below it.
    pub folder: Option<String>,
    /// Case-insensitive substring of the file name or folder.
    pub search: Option<String>,
    pub sort: AudioSort,
    pub descending: bool,
    pub offset: u64,
    pub limit: u64,
    /// Only recordings that started at or after this instant (microseconds, UTC).
    pub recorded_from_micros: Option<i64>,
    /// Only recordings that started before this instant.
    pub recorded_to_micros: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AudioSort {
    #[default]
    Id,
    Name,
    Folder,
    Duration,
    Created,
    /// Unknown start times last, in either direction.
    RecordedAt,
}

impl AudioSort {
    pub fn parse(text: &str) -> Option<AudioSort> {
        Some(match text {
            "id" => AudioSort::Id,
            "name" | "filename" => AudioSort::Name,
            "folder" => AudioSort::Folder,
            "duration" => AudioSort::Duration,
            "created" | "created_at" => AudioSort::Created,
            "recorded_at" | "recorded" => AudioSort::RecordedAt,
            _ => return None,
        })
    }

    fn column(self) -> &'static str {
        match self {
            AudioSort::Id => "id",
            AudioSort::Name => "filename COLLATE NOCASE",
            AudioSort::Folder => "folder COLLATE NOCASE",
            AudioSort::Duration => "duration_seconds",
            AudioSort::Created => "created_at",
            AudioSort::RecordedAt => "(recorded_at_micros IS NULL), recorded_at_micros",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub offset: u64,
    pub limit: u64,
}

fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

pub fn list_audio_files(
    connection: &Connection,
    query: &AudioListQuery,
) -> Result<Page<AudioFileRow>, ProjectionError> {
    let folder = query.folder.as_deref().map(|folder| folder.trim_matches('/').to_string()).filter(|f| !f.is_empty());
    let search =
        query.search.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(|s| format!("%{}%", like_escape(s)));
    let filter = "WHERE (?1 IS NULL OR folder = ?1 OR folder LIKE ?2 ESCAPE '\\')
                  AND (?3 IS NULL OR filename LIKE ?3 ESCAPE '\\' OR folder LIKE ?3 ESCAPE '\\')
                  AND (?4 IS NULL OR recorded_at_micros >= ?4) AND (?5 IS NULL OR recorded_at_micros < ?5)";
    let folder_prefix = folder.as_ref().map(|folder| format!("{}/%", like_escape(folder)));
    let total: u64 = connection
        .query_row(
            &format!("SELECT COUNT(*) FROM {AUDIO_FROM} {filter}"),
            params![folder, folder_prefix, search, query.recorded_from_micros, query.recorded_to_micros],
            |row| row.get(0),
        )
        .map_err(sql_error("counting audio files"))?;
    let direction = if query.descending { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT {AUDIO_COLUMNS} FROM {AUDIO_FROM} {filter} ORDER BY {} {direction}, id {direction} LIMIT ?6 OFFSET ?7",
        query.sort.column()
    );
    let items = query_all(
        connection,
        &sql,
        params![
            folder,
            folder_prefix,
            search,
            query.recorded_from_micros,
            query.recorded_to_micros,
            query.limit,
            query.offset
        ],
        audio_row,
        "listing audio files",
    )?;
    Ok(Page { items, total, offset: query.offset, limit: query.limit })
}

pub fn audio_file(connection: &Connection, id: u64) -> Result<Option<AudioFileRow>, ProjectionError> {
    connection
        .query_row(&format!("SELECT {AUDIO_COLUMNS} FROM {AUDIO_FROM} WHERE id = ?1"), [id], audio_row)
        .optional()
        .map_err(sql_error("reading an audio file"))
}

/// Folders with how many files each holds directly.
pub fn audio_folders(connection: &Connection) -> Result<Vec<(String, u64)>, ProjectionError> {
    query_all(
        connection,
        "SELECT folder, COUNT(*) FROM audio_files GROUP BY folder ORDER BY folder",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
        "listing folders",
    )
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AudioMetadataRow {
    pub audio_file_id: u64,
    pub tag_data: serde_json::Value,
    pub visual_observations: serde_json::Value,
    pub group_composition: serde_json::Value,
    pub prey_density_proxy: serde_json::Value,
    pub edit_count: u64,
    pub updated_at: String,
}

pub fn audio_metadata(connection: &Connection, id: u64) -> Result<Option<AudioMetadataRow>, ProjectionError> {
    connection
        .query_row(
            "SELECT audio_file_id, tag_data, visual_observations, group_composition, prey_density_proxy, edit_count,
                    updated_at
             FROM audio_metadata WHERE audio_file_id = ?1",
            [id],
            |row| {
                let object = |text: Option<String>| match json_column(text) {
                    serde_json::Value::Null => serde_json::json!({}),
                    value => value,
                };
                Ok(AudioMetadataRow {
                    audio_file_id: row.get(0)?,
                    tag_data: object(row.get(1)?),
                    visual_observations: object(row.get(2)?),
                    group_composition: object(row.get(3)?),
                    prey_density_proxy: object(row.get(4)?),
                    edit_count: row.get(5)?,
                    updated_at: row.get(6)?,
                })
            },
        )
        .optional()
        .map_err(sql_error("reading audio metadata"))
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetadataEditRow {
    pub seq: u64,
    pub changes: serde_json::Value,
    pub edited_by: Option<String>,
    pub edited_at: String,
}

pub fn audio_metadata_edits(connection: &Connection, id: u64) -> Result<Vec<MetadataEditRow>, ProjectionError> {
    query_all(
        connection,
        "SELECT seq, changes, edited_by, edited_at FROM audio_metadata_edits WHERE audio_file_id = ?1
             ORDER BY seq DESC",
        [id],
        |row| {
            Ok(MetadataEditRow {
                seq: row.get(0)?,
                changes: json_column(row.get(1)?),
                edited_by: row.get(2)?,
                edited_at: row.get(3)?,
            })
        },
        "reading metadata edits",
    )
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProcessingJobRow {
    pub id: u64,
    pub audio_file_id: u64,
    pub status: String,
    pub encoding_signature: String,
    pub model_name: String,
    pub model_version: String,
    pub window_seconds: f64,
    pub hop_seconds: f64,
    pub target_sample_rate: u32,
    pub feature_config: serde_json::Value,
    pub attempt: u32,
    pub worker: Option<String>,
    pub cancel_requested: bool,
    pub windows_done: Option<u64>,
    pub windows_total: Option<u64>,
    pub embedding_set_id: Option<u64>,
    pub warning: Option<String>,
    pub error_message: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

const JOB_COLUMNS: &str =
    "id, audio_file_id, status, encoding_signature, model_name, model_version, window_size_seconds, \
     hop_seconds, target_sample_rate, feature_config, attempt, worker, cancel_requested, windows_done, windows_total, \
     embedding_set_id, warning, error_message, created_at, updated_at, started_at, finished_at";

fn job_row(row: &Row<'_>) -> rusqlite::Result<ProcessingJobRow> {
    Ok(ProcessingJobRow {
        id: row.get(0)?,
        audio_file_id: row.get(1)?,
        status: row.get(2)?,
        encoding_signature: row.get(3)?,
        model_name: row.get(4)?,
        model_version: row.get(5)?,
        window_seconds: row.get(6)?,
        hop_seconds: row.get(7)?,
        target_sample_rate: row.get(8)?,
        feature_config: json_column(row.get(9)?),
        attempt: row.get(10)?,
        worker: row.get(11)?,
        cancel_requested: row.get(12)?,
        windows_done: row.get(13)?,
        windows_total: row.get(14)?,
        embedding_set_id: row.get(15)?,
        warning: row.get(16)?,
        error_message: row.get(17)?,
        created_at: row.get(18)?,
        updated_at: row.get(19)?,
        started_at: row.get(20)?,
        finished_at: row.get(21)?,
    })
}

pub fn processing_job(connection: &Connection, id: u64) -> Result<Option<ProcessingJobRow>, ProjectionError> {
    connection
        .query_row(&format!("SELECT {JOB_COLUMNS} FROM processing_jobs WHERE id = ?1"), [id], job_row)
        .optional()
        .map_err(sql_error("reading a processing job"))
}

/// Processing jobs, newest first, optionally of one audio file or one status.
pub fn processing_jobs(
    connection: &Connection,
    audio_file_id: Option<u64>,
    status: Option<&str>,
    offset: u64,
    limit: u64,
) -> Result<Page<ProcessingJobRow>, ProjectionError> {
    let filter = "WHERE (?1 IS NULL OR audio_file_id = ?1) AND (?2 IS NULL OR status = ?2)";
    let total: u64 = connection
        .query_row(&format!("SELECT COUNT(*) FROM processing_jobs {filter}"), params![audio_file_id, status], |row| {
            row.get(0)
        })
        .map_err(sql_error("counting processing jobs"))?;
    let items = query_all(
        connection,
        &format!("SELECT {JOB_COLUMNS} FROM processing_jobs {filter} ORDER BY id DESC LIMIT ?3 OFFSET ?4"),
        params![audio_file_id, status, limit, offset],
        job_row,
        "listing processing jobs",
    )?;
    Ok(Page { items, total, offset, limit })
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EmbeddingSetRow {
    pub id: u64,
    pub audio_file_id: u64,
    pub processing_job_id: u64,
    pub encoding_signature: String,
    pub model_name: String,
    pub model_version: String,
    pub window_seconds: f64,
    pub hop_seconds: f64,
    pub target_sample_rate: u32,
    pub vector_dim: u32,
    pub row_count: u64,
    pub parquet_path: String,
    pub created_at: String,
}

const SET_COLUMNS: &str = "id, audio_file_id, processing_job_id, encoding_signature, model_name, model_version, \
     window_size_seconds, hop_seconds, target_sample_rate, vector_dim, row_count, parquet_path, created_at";

fn set_row(row: &Row<'_>) -> rusqlite::Result<EmbeddingSetRow> {
    Ok(EmbeddingSetRow {
        id: row.get(0)?,
        audio_file_id: row.get(1)?,
        processing_job_id: row.get(2)?,
        encoding_signature: row.get(3)?,
        model_name: row.get(4)?,
        model_version: row.get(5)?,
        window_seconds: row.get(6)?,
        hop_seconds: row.get(7)?,
        target_sample_rate: row.get(8)?,
        vector_dim: row.get(9)?,
        row_count: row.get(10)?,
        parquet_path: row.get(11)?,
        created_at: row.get(12)?,
    })
}

pub fn embedding_set(connection: &Connection, id: u64) -> Result<Option<EmbeddingSetRow>, ProjectionError> {
    connection
        .query_row(&format!("SELECT {SET_COLUMNS} FROM embedding_sets WHERE id = ?1"), [id], set_row)
        .optional()
        .map_err(sql_error("reading an embedding set"))
}

pub fn embedding_sets(
    connection: &Connection,
    audio_file_id: Option<u64>,
    model_version: Option<&str>,
) -> Result<Vec<EmbeddingSetRow>, ProjectionError> {
    query_all(
        connection,
        &format!(
            "SELECT {SET_COLUMNS} FROM embedding_sets WHERE (?1 IS NULL OR audio_file_id = ?1)
             AND (?2 IS NULL OR model_version = ?2) ORDER BY id"
        ),
        params![audio_file_id, model_version],
        set_row,
        "listing embedding sets",
    )
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClusteringJobRow {
    pub id: u64,
    pub status: String,
    pub embedding_set_ids: serde_json::Value,
    pub parameters: serde_json::Value,
    pub attempt: u32,
    pub worker: Option<String>,
    pub cancel_requested: bool,
    pub stage: Option<String>,
    pub progress: Option<f64>,
    pub metrics: serde_json::Value,
    pub clusters_json_path: Option<String>,
    pub assignments_path: Option<String>,
    /// Why the `cluster_assignments` projection holds no rows for this complete job (its
    /// assignments file is missing or is not the one the log vouches for); `None` otherwise.
    pub assignments_problem: Option<String>,
    pub error_message: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

const CLUSTERING_COLUMNS: &str = "id, status, embedding_set_ids, parameters, attempt, worker, cancel_requested, stage, \
     progress, metrics, clusters_json_path, assignments_path, error_message, created_at, updated_at, started_at, finished_at, \
     (SELECT problem FROM cluster_assignment_sources WHERE clustering_job_id = clustering_jobs.id)";

fn clustering_row(row: &Row<'_>) -> rusqlite::Result<ClusteringJobRow> {
    Ok(ClusteringJobRow {
        id: row.get(0)?,
        status: row.get(1)?,
        embedding_set_ids: json_column(row.get(2)?),
        parameters: json_column(row.get(3)?),
        attempt: row.get(4)?,
        worker: row.get(5)?,
        cancel_requested: row.get(6)?,
        stage: row.get(7)?,
        progress: row.get(8)?,
        metrics: json_column(row.get(9)?),
        clusters_json_path: row.get(10)?,
        assignments_path: row.get(11)?,
        error_message: row.get(12)?,
        created_at: row.get(13)?,
        updated_at: row.get(14)?,
        started_at: row.get(15)?,
        finished_at: row.get(16)?,
        assignments_problem: row.get(17)?,
    })
}

pub fn clustering_job(connection: &Connection, id: u64) -> Result<Option<ClusteringJobRow>, ProjectionError> {
    connection
        .query_row(&format!("SELECT {CLUSTERING_COLUMNS} FROM clustering_jobs WHERE id = ?1"), [id], clustering_row)
        .optional()
        .map_err(sql_error("reading a clustering job"))
}

pub fn clustering_jobs(
    connection: &Connection,
    offset: u64,
    limit: u64,
) -> Result<Page<ClusteringJobRow>, ProjectionError> {
    let total: u64 = connection
        .query_row("SELECT COUNT(*) FROM clustering_jobs", [], |row| row.get(0))
        .map_err(sql_error("counting clustering jobs"))?;
    let items = query_all(
        connection,
        &format!("SELECT {CLUSTERING_COLUMNS} FROM clustering_jobs ORDER BY id DESC LIMIT ?1 OFFSET ?2"),
        params![limit, offset],
        clustering_row,
        "listing clustering jobs",
    )?;
    Ok(Page { items, total, offset, limit })
}

/// A classifier as `GET /api/classifiers/{id}` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassifierRow {
    pub id: u64,
    pub status: String,
    pub labels: serde_json::Value,
    pub model_version: String,
    pub request: serde_json::Value,
    pub attempt: u32,
    pub worker: Option<String>,
    pub cancel_requested: bool,
    pub stage: Option<String>,
    pub progress: Option<f64>,
    pub version: Option<String>,
    pub artifact_path: Option<String>,
    pub vector_dim: Option<u32>,
    pub threshold: Option<f64>,
    pub metrics: serde_json::Value,
    pub training_set: serde_json::Value,
    pub error_message: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

const CLASSIFIER_COLUMNS: &str = "id, status, labels, model_version, request, attempt, worker, cancel_requested, \
    stage, progress, version, artifact_path, vector_dim, threshold, metrics, training_set, error_message, \
    created_at, updated_at, started_at, finished_at";

fn classifier_row(row: &Row<'_>) -> rusqlite::Result<ClassifierRow> {
    Ok(ClassifierRow {
        id: row.get(0)?,
        status: row.get(1)?,
        labels: json_column(row.get(2)?),
        model_version: row.get(3)?,
        request: json_column(row.get(4)?),
        attempt: row.get(5)?,
        worker: row.get(6)?,
        cancel_requested: row.get(7)?,
        stage: row.get(8)?,
        progress: row.get(9)?,
        version: row.get(10)?,
        artifact_path: row.get(11)?,
        vector_dim: row.get(12)?,
        threshold: row.get(13)?,
        metrics: json_column(row.get(14)?),
        training_set: json_column(row.get(15)?),
        error_message: row.get(16)?,
        created_at: row.get(17)?,
        updated_at: row.get(18)?,
        started_at: row.get(19)?,
        finished_at: row.get(20)?,
    })
}

pub fn classifier(connection: &Connection, id: u64) -> Result<Option<ClassifierRow>, ProjectionError> {
    connection
        .query_row(&format!("SELECT {CLASSIFIER_COLUMNS} FROM classifiers WHERE id = ?1"), [id], classifier_row)
        .optional()
        .map_err(sql_error("reading a classifier"))
}

/// Newest first, so each retraining sits beside the one before.
pub fn classifiers(connection: &Connection, offset: u64, limit: u64) -> Result<Page<ClassifierRow>, ProjectionError> {
    let total: u64 = connection
        .query_row("SELECT COUNT(*) FROM classifiers", [], |row| row.get(0))
        .map_err(sql_error("counting classifiers"))?;
    let items = query_all(
        connection,
        &format!("SELECT {CLASSIFIER_COLUMNS} FROM classifiers ORDER BY id DESC LIMIT ?1 OFFSET ?2"),
        params![limit, offset],
        classifier_row,
        "listing classifiers",
    )?;
    Ok(Page { items, total, offset, limit })
}

/// A detection job as `GET /api/detection-jobs/{id}` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DetectionJobRow {
    pub id: u64,
    pub status: String,
    pub classifier_id: u64,
    pub classifier_version: String,
    pub embedding_set_ids: serde_json::Value,
    pub threshold: f64,
    pub scope: serde_json::Value,
    pub attempt: u32,
    pub worker: Option<String>,
    pub cancel_requested: bool,
    pub progress: Option<f64>,
    pub scores_path: Option<String>,
    pub windows_scored: Option<u64>,
    pub detection_count: Option<u64>,
    pub error_message: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

pub fn detection_job(connection: &Connection, id: u64) -> Result<Option<DetectionJobRow>, ProjectionError> {
    connection
        .query_row(
            "SELECT id, status, classifier_id, classifier_version, embedding_set_ids, threshold, scope, attempt,
                 worker, cancel_requested, progress, scores_path, windows_scored, detection_count, error_message,
                 created_at, updated_at, started_at, finished_at
             FROM detection_jobs WHERE id = ?1",
            [id],
            |row| {
                Ok(DetectionJobRow {
                    id: row.get(0)?,
                    status: row.get(1)?,
                    classifier_id: row.get(2)?,
                    classifier_version: row.get(3)?,
                    embedding_set_ids: json_column(row.get(4)?),
                    threshold: row.get(5)?,
                    scope: json_column(row.get(6)?),
                    attempt: row.get(7)?,
                    worker: row.get(8)?,
                    cancel_requested: row.get(9)?,
                    progress: row.get(10)?,
                    scores_path: row.get(11)?,
                    windows_scored: row.get(12)?,
                    detection_count: row.get(13)?,
                    error_message: row.get(14)?,
                    created_at: row.get(15)?,
                    updated_at: row.get(16)?,
                    started_at: row.get(17)?,
                    finished_at: row.get(18)?,
                })
            },
        )
        .optional()
        .map_err(sql_error("reading a detection job"))
}

/// Detection jobs, newest first; with `classifier_id`, only that classifier's.
pub fn detection_jobs(
    connection: &Connection,
    classifier_id: Option<u64>,
    limit: u64,
) -> Result<Vec<DetectionJobRow>, ProjectionError> {
    let ids: Vec<u64> = query_all(
        connection,
        "SELECT id FROM detection_jobs WHERE (?1 IS NULL OR classifier_id = ?1) ORDER BY id DESC LIMIT ?2",
        params![classifier_id, limit],
        |row| row.get(0),
        "listing detection jobs",
    )?;
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(job) = detection_job(connection, id)? {
            jobs.push(job);
        }
    }
    Ok(jobs)
}

/// How many detections a job found in one recording, and the best score there.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecordingDetectionCount {
    pub audio_file_id: u64,
    pub recording: Option<String>,
    pub detections: u64,
    pub best_score: f64,
}

/// A job's detections counted per recording, most first.
pub fn detection_counts_by_recording(
    connection: &Connection,
    job: u64,
) -> Result<Vec<RecordingDetectionCount>, ProjectionError> {
    query_all(
        connection,
        "SELECT d.audio_file_id, a.filename, COUNT(*), MAX(d.max_score)
         FROM detections d LEFT JOIN audio_files a ON a.id = d.audio_file_id
         WHERE d.detection_job_id = ?1
         GROUP BY d.audio_file_id ORDER BY COUNT(*) DESC, d.audio_file_id",
        params![job],
        |row| {
            Ok(RecordingDetectionCount {
                audio_file_id: row.get(0)?,
                recording: row.get(1)?,
                detections: row.get(2)?,
                best_score: row.get(3)?,
            })
        },
        "counting detections per recording",
    )
}

/// One detection, with its recording's name and folder.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DetectionRow {
    pub embedding_set_id: u64,
    pub audio_file_id: u64,
    pub recording: Option<String>,
    pub folder: Option<String>,
    pub label: String,
    pub start_seconds: f64,
    pub end_seconds: f64,
    pub max_score: f64,
    pub mean_score: f64,
    pub windows: u32,
    pub first_row: u64,
    pub last_row: u64,
}

/// A job's detections, highest score first (ties: recording, start).
pub fn detections(
    connection: &Connection,
    job: u64,
    audio_file_id: Option<u64>,
    offset: u64,
    limit: u64,
) -> Result<Page<DetectionRow>, ProjectionError> {
    let total: u64 = connection
        .query_row(
            "SELECT COUNT(*) FROM detections WHERE detection_job_id = ?1 AND (?2 IS NULL OR audio_file_id = ?2)",
            params![job, audio_file_id],
            |row| row.get(0),
        )
        .map_err(sql_error("counting detections"))?;
    let items = query_all(
        connection,
        "SELECT d.embedding_set_id, d.audio_file_id, a.filename, a.folder, d.label, d.start_seconds,
             d.end_seconds, d.max_score, d.mean_score, d.windows, d.first_row, d.last_row
         FROM detections d LEFT JOIN audio_files a ON a.id = d.audio_file_id
         WHERE d.detection_job_id = ?1 AND (?2 IS NULL OR d.audio_file_id = ?2)
         ORDER BY d.max_score DESC, d.audio_file_id, d.start_seconds LIMIT ?3 OFFSET ?4",
        params![job, audio_file_id, limit, offset],
        |row| {
            Ok(DetectionRow {
                embedding_set_id: row.get(0)?,
                audio_file_id: row.get(1)?,
                recording: row.get(2)?,
                folder: row.get(3)?,
                label: row.get(4)?,
                start_seconds: row.get(5)?,
                end_seconds: row.get(6)?,
                max_score: row.get(7)?,
                mean_score: row.get(8)?,
                windows: row.get(9)?,
                first_row: row.get(10)?,
                last_row: row.get(11)?,
            })
        },
        "listing detections",
    )?;
    Ok(Page { items, total, offset, limit })
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClusterRow {
    pub id: u64,
    pub clustering_job_id: u64,
    /// -1 is noise.
    pub label: i64,
    pub noise: bool,
    pub size: u64,
    pub metadata_summary: serde_json::Value,
}

fn cluster_row(row: &Row<'_>) -> rusqlite::Result<ClusterRow> {
    Ok(ClusterRow {
        id: row.get(0)?,
        clustering_job_id: row.get(1)?,
        label: row.get(2)?,
        noise: row.get(3)?,
        size: row.get(4)?,
        metadata_summary: json_column(row.get(5)?),
    })
}

pub fn clusters(connection: &Connection, clustering_job_id: u64) -> Result<Vec<ClusterRow>, ProjectionError> {
    query_all(
        connection,
        "SELECT id, clustering_job_id, cluster_label, is_noise, size, metadata_summary FROM clusters
             WHERE clustering_job_id = ?1 ORDER BY cluster_label",
        [clustering_job_id],
        cluster_row,
        "listing clusters",
    )
}

pub fn cluster(connection: &Connection, id: u64) -> Result<Option<ClusterRow>, ProjectionError> {
    connection
        .query_row(
            "SELECT id, clustering_job_id, cluster_label, is_noise, size, metadata_summary FROM clusters WHERE id = ?1",
            [id],
            cluster_row,
        )
        .optional()
        .map_err(sql_error("reading a cluster"))
}

/// A cluster's members, paged, with their recording.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClusterMemberRow {
    pub embedding_set_id: u64,
    pub row_index: u64,
    pub audio_file_id: u64,
    pub filename: String,
}

pub fn cluster_members(
    connection: &Connection,
    cluster_id: u64,
    offset: u64,
    limit: u64,
) -> Result<Page<ClusterMemberRow>, ProjectionError> {
    let total: u64 = connection
        .query_row("SELECT COUNT(*) FROM cluster_assignments WHERE cluster_id = ?1", [cluster_id], |row| row.get(0))
        .map_err(sql_error("counting cluster members"))?;
    let items = query_all(
        connection,
        "SELECT a.embedding_set_id, a.row_index, s.audio_file_id, f.filename
             FROM cluster_assignments a
             JOIN embedding_sets s ON s.id = a.embedding_set_id
             JOIN audio_files f ON f.id = s.audio_file_id
             WHERE a.cluster_id = ?1 ORDER BY a.embedding_set_id, a.row_index LIMIT ?2 OFFSET ?3",
        params![cluster_id, limit, offset],
        |row| {
            Ok(ClusterMemberRow {
                embedding_set_id: row.get(0)?,
                row_index: row.get(1)?,
                audio_file_id: row.get(2)?,
                filename: row.get(3)?,
            })
        },
        "listing cluster members",
    )?;
    Ok(Page { items, total, offset, limit })
}
