//! Reads of the `recording_times` projection: a recording's start-time history, and a folder's
//! recordings with their start times (for the time line and bulk changes).

use rusqlite::{params, Connection};
use serde::Serialize;

use super::{query_all, ProjectionError};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecordingTimeEditRow {
    pub seq: u64,
    /// ISO 8601 UTC, `None` when set to unknown.
    pub recorded_at: Option<String>,
    pub source: String,
    pub derivation: String,
    pub set_by: Option<String>,
    pub set_at: String,
}

/// Every change of a recording's start time, newest first.
pub fn recording_time_edits(
    connection: &Connection,
    audio_file_id: u64,
) -> Result<Vec<RecordingTimeEditRow>, ProjectionError> {
    query_all(
        connection,
        "SELECT seq, recorded_at, source, derivation, set_by, set_at FROM recording_time_edits
         WHERE audio_file_id = ?1 ORDER BY seq DESC",
        [audio_file_id],
        |row| {
            Ok(RecordingTimeEditRow {
                seq: row.get(0)?,
                recorded_at: row.get(1)?,
                source: row.get(2)?,
                derivation: row.get(3)?,
                set_by: row.get(4)?,
                set_at: row.get(5)?,
            })
        },
        "reading start-time edits",
    )
}

/// A recording in a folder, with its start time.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FolderRecordingRow {
    pub audio_file_id: u64,
    pub filename: String,
    pub folder: String,
    pub stored_path: String,
    pub duration_seconds: f64,
    pub recorded_at_micros: Option<i64>,
    pub recorded_at_source: Option<String>,
}

/// The recordings in `folder` and below (every recording for an empty folder), by start time
/// (unknown last), then id.
pub fn recordings_in_folder(connection: &Connection, folder: &str) -> Result<Vec<FolderRecordingRow>, ProjectionError> {
    let folder = folder.trim_matches('/');
    let escaped = folder.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    query_all(
        connection,
        "SELECT audio_files.id, filename, folder, stored_path, duration_seconds, recorded_at_micros, source
         FROM audio_files LEFT JOIN recording_times ON recording_times.audio_file_id = audio_files.id
         WHERE ?1 = '' OR folder = ?1 OR folder LIKE ?2 ESCAPE '\\'
         ORDER BY (recorded_at_micros IS NULL), recorded_at_micros, audio_files.id",
        params![folder, format!("{escaped}/%")],
        |row| {
            Ok(FolderRecordingRow {
                audio_file_id: row.get(0)?,
                filename: row.get(1)?,
                folder: row.get(2)?,
                stored_path: row.get(3)?,
                duration_seconds: row.get(4)?,
                recorded_at_micros: row.get(5)?,
                recorded_at_source: row.get(6)?,
            })
        },
        "listing a folder's recordings",
    )
}
