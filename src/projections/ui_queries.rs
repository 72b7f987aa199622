//! Read queries the web pages need beyond those of the JSON API: counts for the dashboard and a
//! compact processing status per recording for the recordings list.

use std::collections::BTreeMap;

use rusqlite::{params_from_iter, Connection};
use serde::Serialize;

use super::{query_all, sql_error, ProjectionError};

/// Totals shown on the home page.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DashboardCounts {
    pub audio_files: u64,
    pub total_duration_seconds: f64,
    pub folders: u64,
    pub embedding_sets: u64,
    pub clustering_jobs: u64,
    /// Processing jobs per status (`queued`, `running`, ...), sorted by status.
    pub processing_jobs_by_status: Vec<(String, u64)>,
}

pub fn dashboard_counts(connection: &Connection) -> Result<DashboardCounts, ProjectionError> {
    let (audio_files, total_duration_seconds, folders): (u64, f64, u64) = connection
        .query_row(
            "SELECT COUNT(*), COALESCE(SUM(duration_seconds), 0.0), COUNT(DISTINCT folder) FROM audio_files",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .map_err(sql_error("counting audio files"))?;
    let embedding_sets: u64 = connection
        .query_row("SELECT COUNT(*) FROM embedding_sets", [], |row| row.get(0))
        .map_err(sql_error("counting embedding sets"))?;
    let clustering_jobs: u64 = connection
        .query_row("SELECT COUNT(*) FROM clustering_jobs", [], |row| row.get(0))
        .map_err(sql_error("counting clustering jobs"))?;
    let processing_jobs_by_status = query_all(
        connection,
        "SELECT status, COUNT(*) FROM processing_jobs GROUP BY status ORDER BY status",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
        "counting processing jobs",
    )?;
    Ok(DashboardCounts {
        audio_files,
        total_duration_seconds,
        folders,
        embedding_sets,
        clustering_jobs,
        processing_jobs_by_status,
    })
}

/// One processing job, as much as a badge on the recordings list needs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobBadgeRow {
    pub job_id: u64,
    pub audio_file_id: u64,
    pub status: String,
    pub model_name: String,
    pub windows_done: Option<u64>,
    pub windows_total: Option<u64>,
}

/// The processing jobs of the given recordings, grouped by recording, oldest job first.
pub fn job_badges_for_files(
    connection: &Connection,
    audio_file_ids: &[u64],
) -> Result<BTreeMap<u64, Vec<JobBadgeRow>>, ProjectionError> {
    let mut grouped: BTreeMap<u64, Vec<JobBadgeRow>> = BTreeMap::new();
    if audio_file_ids.is_empty() {
        return Ok(grouped);
    }
    let placeholders = vec!["?"; audio_file_ids.len()].join(", ");
    let rows: Vec<JobBadgeRow> = query_all(
        connection,
        &format!(
            "SELECT id, audio_file_id, status, model_name, windows_done, windows_total FROM processing_jobs
             WHERE audio_file_id IN ({placeholders}) ORDER BY id"
        ),
        params_from_iter(audio_file_ids.iter()),
        |row| {
            Ok(JobBadgeRow {
                job_id: row.get(0)?,
                audio_file_id: row.get(1)?,
                status: row.get(2)?,
                model_name: row.get(3)?,
                windows_done: row.get(4)?,
                windows_total: row.get(5)?,
            })
        },
        "reading job statuses",
    )?;
    for row in rows {
        grouped.entry(row.audio_file_id).or_default().push(row);
    }
    Ok(grouped)
}

/// Names of registered models (for the queue form), sorted.
pub fn model_names(connection: &Connection) -> Result<Vec<String>, ProjectionError> {
    query_all(connection, "SELECT name FROM models ORDER BY name", [], |row| row.get(0), "listing models")
}

/// One embedding set as the clustering form lists it: with its recording's name and folder.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EmbeddingSetChoiceRow {
    pub id: u64,
    pub audio_file_id: u64,
    pub filename: String,
    pub folder: String,
    pub model_name: String,
    pub model_version: String,
    pub row_count: u64,
}

/// Every embedding set with its recording, oldest first.
pub fn embedding_set_choices(connection: &Connection) -> Result<Vec<EmbeddingSetChoiceRow>, ProjectionError> {
    query_all(
        connection,
        "SELECT e.id, e.audio_file_id, COALESCE(a.filename, ''), COALESCE(a.folder, ''), e.model_name,
                    e.model_version, e.row_count
             FROM embedding_sets e LEFT JOIN audio_files a ON a.id = e.audio_file_id ORDER BY e.id",
        [],
        |row| {
            Ok(EmbeddingSetChoiceRow {
                id: row.get(0)?,
                audio_file_id: row.get(1)?,
                filename: row.get(2)?,
                folder: row.get(3)?,
                model_name: row.get(4)?,
                model_version: row.get(5)?,
                row_count: row.get(6)?,
            })
        },
        "listing embedding sets for clustering",
    )
}

/// File names of recordings by id (for labels on plots and member lists).
/// Names of the given recordings, by id (unknown ids are left out).
pub fn audio_file_names_of(connection: &Connection, ids: &[u64]) -> Result<BTreeMap<u64, String>, ProjectionError> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let placeholders = vec!["?"; ids.len()].join(", ");
    query_all(
        connection,
        &format!("SELECT id, filename FROM audio_files WHERE id IN ({placeholders})"),
        params_from_iter(ids.iter()),
        |row| Ok((row.get(0)?, row.get(1)?)),
        "listing recording names",
    )
}

pub fn audio_file_names(connection: &Connection) -> Result<BTreeMap<u64, String>, ProjectionError> {
    query_all(
        connection,
        "SELECT id, filename FROM audio_files",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
        "listing recording names",
    )
}
