//! Reads over the `annotations` projection: pages of annotations, one annotation, labels with
//! their counts by kind, and history.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::queries::Page;
use super::{query_all, sql_error, ProjectionError};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AnnotationRow {
    pub id: u64,
    pub audio_file_id: u64,
    /// The recording's original file name and folder (metadata, never a server path).
    pub filename: String,
    pub folder: String,
    pub start_seconds: f64,
    pub end_seconds: f64,
    pub low_hz: Option<f64>,
    pub high_hz: Option<f64>,
    pub label: String,
    pub kind: String,
    pub note: Option<String>,
    pub source: String,
    pub created_by: Option<String>,
    pub created_at: String,
    pub updated_by: Option<String>,
    pub updated_at: String,
}

const COLUMNS: &str = "a.id, a.audio_file_id, f.filename, f.folder, a.start_seconds, a.end_seconds, a.low_hz, \
                       a.high_hz, a.label, a.kind, a.note, a.source, a.created_by, a.created_at, a.updated_by, \
                       a.updated_at";

fn annotation_row(row: &Row<'_>) -> rusqlite::Result<AnnotationRow> {
    Ok(AnnotationRow {
        id: row.get(0)?,
        audio_file_id: row.get(1)?,
        filename: row.get(2)?,
        folder: row.get(3)?,
        start_seconds: row.get(4)?,
        end_seconds: row.get(5)?,
        low_hz: row.get(6)?,
        high_hz: row.get(7)?,
        label: row.get(8)?,
        kind: row.get(9)?,
        note: row.get(10)?,
        source: row.get(11)?,
        created_by: row.get(12)?,
        created_at: row.get(13)?,
        updated_by: row.get(14)?,
        updated_at: row.get(15)?,
    })
}

/// Which annotations to list. `label` matches exactly (labels keep their case).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnnotationQuery {
    pub audio_file_id: Option<u64>,
    pub label: Option<String>,
    pub kind: Option<String>,
    pub offset: u64,
    /// `None`: every match (exports).
    pub limit: Option<u64>,
}

const FILTER: &str = "WHERE (?1 IS NULL OR a.audio_file_id = ?1) AND (?2 IS NULL OR a.label = ?2)
                      AND (?3 IS NULL OR a.kind = ?3)";

/// Annotations by recording, then time, then id.
pub fn list_annotations(
    connection: &Connection,
    query: &AnnotationQuery,
) -> Result<Page<AnnotationRow>, ProjectionError> {
    let filter_parameters = params![query.audio_file_id, query.label, query.kind];
    let total: u64 = connection
        .query_row(&format!("SELECT COUNT(*) FROM annotations a {FILTER}"), filter_parameters, |row| row.get(0))
        .map_err(sql_error("counting annotations"))?;
    let limit = query.limit.map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
    let items = query_all(
        connection,
        &format!(
            "SELECT {COLUMNS} FROM annotations a JOIN audio_files f ON f.id = a.audio_file_id {FILTER}
             ORDER BY a.audio_file_id, a.start_seconds, a.id LIMIT ?4 OFFSET ?5"
        ),
        params![query.audio_file_id, query.label, query.kind, limit, query.offset],
        annotation_row,
        "listing annotations",
    )?;
    Ok(Page { items, total, offset: query.offset, limit: query.limit.unwrap_or(total) })
}

pub fn annotation(connection: &Connection, id: u64) -> Result<Option<AnnotationRow>, ProjectionError> {
    connection
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM annotations a JOIN audio_files f ON f.id = a.audio_file_id WHERE a.id = ?1"
            ),
            [id],
            annotation_row,
        )
        .optional()
        .map_err(sql_error("reading an annotation"))
}

/// These annotations, in the order of `ids` (unknown ids left out).
pub fn annotations_by_ids(connection: &Connection, ids: &[u64]) -> Result<Vec<AnnotationRow>, ProjectionError> {
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        rows.extend(annotation(connection, *id)?);
    }
    Ok(rows)
}

/// A label with how many annotations of each kind carry it.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct LabelCounts {
    pub label: String,
    pub total: u64,
    pub positive: u64,
    pub negative: u64,
    pub uncertain: u64,
}

/// Every label in use, alphabetically (case-insensitive), with counts by kind.
pub fn labels(connection: &Connection) -> Result<Vec<LabelCounts>, ProjectionError> {
    let rows: Vec<(String, String, u64)> = query_all(
        connection,
        "SELECT label, kind, COUNT(*) FROM annotations GROUP BY label, kind ORDER BY label COLLATE NOCASE, label",
        [],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        "counting labels",
    )?;
    let mut labels: Vec<LabelCounts> = Vec::new();
    for (label, kind, count) in rows {
        if labels.last().is_none_or(|last| last.label != label) {
            labels.push(LabelCounts { label: label.clone(), ..LabelCounts::default() });
        }
        if let Some(entry) = labels.last_mut() {
            entry.total += count;
            match kind.as_str() {
                "positive" => entry.positive += count,
                "negative" => entry.negative += count,
                _ => entry.uncertain += count,
            }
        }
    }
    Ok(labels)
}

/// One step in an annotation's life.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AnnotationHistoryRow {
    pub seq: u64,
    pub annotation_id: u64,
    pub audio_file_id: u64,
    pub label: String,
    /// `added`, `changed` or `removed`.
    pub action: String,
    pub by: Option<String>,
    pub at: String,
    /// The annotation's values after this step (empty after a removal).
    pub annotation: serde_json::Value,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryQuery {
    pub annotation_id: Option<u64>,
    pub audio_file_id: Option<u64>,
    pub label: Option<String>,
    pub limit: u64,
}

/// History, newest first.
pub fn annotation_history(
    connection: &Connection,
    query: &HistoryQuery,
) -> Result<Vec<AnnotationHistoryRow>, ProjectionError> {
    query_all(
        connection,
        "SELECT seq, annotation_id, audio_file_id, label, action, actor, at, annotation FROM annotation_history
             WHERE (?1 IS NULL OR annotation_id = ?1) AND (?2 IS NULL OR audio_file_id = ?2)
                 AND (?3 IS NULL OR label = ?3)
             ORDER BY seq DESC, annotation_id DESC LIMIT ?4",
        params![query.annotation_id, query.audio_file_id, query.label, query.limit],
        |row| {
            let annotation: String = row.get(7)?;
            Ok(AnnotationHistoryRow {
                seq: row.get(0)?,
                annotation_id: row.get(1)?,
                audio_file_id: row.get(2)?,
                label: row.get(3)?,
                action: row.get(4)?,
                by: row.get(5)?,
                at: row.get(6)?,
                annotation: serde_json::from_str(&annotation).unwrap_or(serde_json::Value::Null),
            })
        },
        "reading annotation history",
    )
}
