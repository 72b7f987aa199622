//! A clustering job's files: `clusters/{job}/clusters.json` (parameters, metrics, clusters with
//! their metadata summaries) and `clusters/{job}/assignments.parquet` (one row per window:
//! embedding set, row index, start and end seconds, cluster label, membership probability,
//! 2-D plot coordinates, and last `start_time_utc`: the window's absolute start as known when
//! the job ran, nanoseconds UTC, null when unknown; humpback itself derives window times from
//! the recordings' current starts). Both are written to temporary paths and promoted.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, Float32Array, Float64Array, Int64Array, RecordBatch, TimestampNanosecondArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::artifacts::files::{promote, temp_sibling};
use crate::artifacts::ArtifactError;
use crate::domain::events::{AssignmentsFile, ClusterAssignmentRecord};
use crate::domain::ids::EmbeddingSetId;

/// One clustered window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignmentRow {
    pub embedding_set_id: u64,
    pub row_index: u64,
    pub start_seconds: f64,
    pub end_seconds: f64,
    pub cluster_label: i64,
    pub probability: f32,
    pub x: Option<f32>,
    pub y: Option<f32>,
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("embedding_set_id", DataType::UInt64, false),
        Field::new("row_index", DataType::UInt64, false),
        Field::new("start_seconds", DataType::Float64, false),
        Field::new("end_seconds", DataType::Float64, false),
        Field::new("cluster_label", DataType::Int64, false),
        Field::new("probability", DataType::Float32, false),
        Field::new("x", DataType::Float32, true),
        Field::new("y", DataType::Float32, true),
        Field::new("start_time_utc", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), true),
    ]))
}

fn parquet_error(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> ArtifactError + '_ {
    move |source| ArtifactError::Parquet { path: path.to_path_buf(), source }
}

/// Writes the assignments (in row groups) and promotes the file; `start_time_utc` is null.
pub fn write_assignments(path: &Path, rows: &[AssignmentRow]) -> Result<(), ArtifactError> {
    write_assignments_with_times(path, rows, &[])
}

/// As [`write_assignments`], with each row's absolute start (`starts[i]` for row i; missing
/// entries are null).
pub fn write_assignments_with_times(
    path: &Path,
    rows: &[AssignmentRow],
    starts: &[Option<crate::recording_time::UtcTime>],
) -> Result<(), ArtifactError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| ArtifactError::Io {
            doing: "creating",
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let temp = temp_sibling(path);
    let file =
        File::create(&temp).map_err(|source| ArtifactError::Io { doing: "creating", path: temp.clone(), source })?;
    let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = ArrowWriter::try_new(file, schema(), Some(properties)).map_err(parquet_error(&temp))?;
    for (chunk_index, chunk) in rows.chunks(65_536).enumerate() {
        let first = chunk_index * 65_536;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(chunk.iter().map(|r| r.embedding_set_id))),
            Arc::new(UInt64Array::from_iter_values(chunk.iter().map(|r| r.row_index))),
            Arc::new(Float64Array::from_iter_values(chunk.iter().map(|r| r.start_seconds))),
            Arc::new(Float64Array::from_iter_values(chunk.iter().map(|r| r.end_seconds))),
            Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.cluster_label))),
            Arc::new(Float32Array::from_iter_values(chunk.iter().map(|r| r.probability))),
            Arc::new(Float32Array::from(chunk.iter().map(|r| r.x).collect::<Vec<_>>())),
            Arc::new(Float32Array::from(chunk.iter().map(|r| r.y).collect::<Vec<_>>())),
            Arc::new(
                TimestampNanosecondArray::from(
                    (first..first + chunk.len())
                        .map(|i| starts.get(i).copied().flatten().and_then(|start| start.micros().checked_mul(1000)))
                        .collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
        ];
        let batch = RecordBatch::try_new(schema(), columns)
            .map_err(|source| ArtifactError::Arrow { path: temp.clone(), source })?;
        writer.write(&batch).map_err(parquet_error(&temp))?;
    }
    writer.close().map_err(parquet_error(&temp))?;
    promote(&temp, path)
}

/// Reads assignments back, keeping those `keep` accepts (e.g. one cluster's members).
pub fn read_assignments(
    path: &Path,
    mut keep: impl FnMut(&AssignmentRow) -> bool,
) -> Result<Vec<AssignmentRow>, ArtifactError> {
    let file =
        File::open(path).map_err(|source| ArtifactError::Io { doing: "opening", path: path.to_path_buf(), source })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).and_then(|b| b.build()).map_err(parquet_error(path))?;
    let invalid = |reason: &str| ArtifactError::Invalid { path: path.to_path_buf(), reason: reason.to_string() };
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|source| ArtifactError::Arrow { path: path.to_path_buf(), source })?;
        let column = |index: usize| batch.column(index).as_any();
        let (
            Some(sets),
            Some(indices),
            Some(starts),
            Some(ends),
            Some(labels),
            Some(probabilities),
            Some(xs),
            Some(ys),
        ) = (
            column(0).downcast_ref::<UInt64Array>(),
            column(1).downcast_ref::<UInt64Array>(),
            column(2).downcast_ref::<Float64Array>(),
            column(3).downcast_ref::<Float64Array>(),
            column(4).downcast_ref::<Int64Array>(),
            column(5).downcast_ref::<Float32Array>(),
            column(6).downcast_ref::<Float32Array>(),
            column(7).downcast_ref::<Float32Array>(),
        )
        else {
            return Err(invalid("unexpected columns"));
        };
        for i in 0..batch.num_rows() {
            let row = AssignmentRow {
                embedding_set_id: sets.value(i),
                row_index: indices.value(i),
                start_seconds: starts.value(i),
                end_seconds: ends.value(i),
                cluster_label: labels.value(i),
                probability: probabilities.value(i),
                x: xs.is_valid(i).then(|| xs.value(i)),
                y: ys.is_valid(i).then(|| ys.value(i)),
            };
            if keep(&row) {
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

/// What a completion records of a promoted assignments file: its checksum and row count.
pub fn describe_assignments_file(path: &Path) -> Result<AssignmentsFile, ArtifactError> {
    let sha256 = crate::artifacts::files::sha256_of_file(path)?;
    let file =
        File::open(path).map_err(|source| ArtifactError::Io { doing: "opening", path: path.to_path_buf(), source })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_error(path))?;
    let row_count = u64::try_from(builder.metadata().file_metadata().num_rows())
        .map_err(|_| ArtifactError::Invalid { path: path.to_path_buf(), reason: "negative row count".to_string() })?;
    Ok(AssignmentsFile { sha256, row_count })
}

/// Why the assignments a completion vouches for could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VouchedAssignmentsError {
    #[error("{path} is missing")]
    Missing { path: String },
    #[error("{path} has SHA-256 {found}, the log recorded {recorded}")]
    ChecksumDiffers { path: String, found: String, recorded: String },
    #[error("{path} has {found} rows, the log recorded {recorded}")]
    RowCountDiffers { path: String, found: u64, recorded: u64 },
    #[error("{path} does not read: {reason}")]
    Unreadable { path: String, reason: String },
}

/// The (set, row, label) assignments of the file at `relative` below `data_root`, only if its
/// bytes are those `recorded` vouches for (checksum first, then the row count).
pub fn read_vouched_assignments(
    storage: &crate::storage::Storage,
    relative: &str,
    recorded: &AssignmentsFile,
) -> Result<Vec<ClusterAssignmentRecord>, VouchedAssignmentsError> {
    let path = match storage.readable_path(relative) {
        Ok(path) => path,
        Err(crate::storage::StorageError::NotFound { .. }) => {
            return Err(VouchedAssignmentsError::Missing { path: relative.to_string() })
        }
        Err(error) => {
            return Err(VouchedAssignmentsError::Unreadable { path: relative.to_string(), reason: error.to_string() })
        }
    };
    let unreadable = |error: ArtifactError| VouchedAssignmentsError::Unreadable {
        path: relative.to_string(),
        reason: error.to_string(),
    };
    if !path.is_file() {
        return Err(VouchedAssignmentsError::Missing { path: relative.to_string() });
    }
    let found = crate::artifacts::files::sha256_of_file(&path).map_err(unreadable)?;
    if found != recorded.sha256 {
        return Err(VouchedAssignmentsError::ChecksumDiffers {
            path: relative.to_string(),
            found: found.0,
            recorded: recorded.sha256.0.clone(),
        });
    }
    let rows = read_assignments(&path, |_| true).map_err(unreadable)?;
    if rows.len() as u64 != recorded.row_count {
        return Err(VouchedAssignmentsError::RowCountDiffers {
            path: relative.to_string(),
            found: rows.len() as u64,
            recorded: recorded.row_count,
        });
    }
    Ok(rows
        .into_iter()
        .map(|row| ClusterAssignmentRecord {
            embedding_set_id: EmbeddingSetId(row.embedding_set_id),
            row_index: row.row_index,
            label: row.cluster_label,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_round_trip_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("7").join("assignments.parquet");
        let rows: Vec<AssignmentRow> = (0..100)
            .map(|i| AssignmentRow {
                embedding_set_id: i % 3,
                row_index: i,
                start_seconds: i as f64 * 5.0,
                end_seconds: i as f64 * 5.0 + 5.0,
                cluster_label: (i % 4) as i64 - 1,
                probability: 0.5,
                x: (i % 2 == 0).then_some(i as f32),
                y: Some(1.0),
            })
            .collect();
        write_assignments(&path, &rows).unwrap();
        assert!(!temp_sibling(&path).exists());
        assert_eq!(read_assignments(&path, |_| true).unwrap(), rows);
        assert_eq!(read_assignments(&path, |row| row.cluster_label == -1).unwrap().len(), 25);
    }

    #[test]
    fn assignments_carry_each_window_s_absolute_start_and_null_when_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("assignments.parquet");
        let row = AssignmentRow {
            embedding_set_id: 1,
            row_index: 0,
            start_seconds: 0.0,
            end_seconds: 1.0,
            cluster_label: 0,
            probability: 1.0,
            x: None,
            y: None,
        };
        let start = crate::recording_time::UtcTime(1_719_815_400_000_000);
        write_assignments_with_times(&path, &[row.clone(), row.clone()], &[Some(start), None]).unwrap();
        assert_eq!(read_assignments(&path, |_| true).unwrap(), vec![row.clone(), row]);
        let batch = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let times = batch.column(8).as_any().downcast_ref::<TimestampNanosecondArray>().unwrap();
        assert_eq!((times.value(0), times.is_null(1)), (1_719_815_400_000_000_000, true));
    }

    fn sample_rows(count: u64) -> Vec<AssignmentRow> {
        (0..count)
            .map(|i| AssignmentRow {
                embedding_set_id: 1 + i % 2,
                row_index: i / 2,
                start_seconds: i as f64,
                end_seconds: i as f64 + 5.0,
                cluster_label: (i % 3) as i64 - 1,
                probability: 0.9,
                x: Some(i as f32),
                y: None,
            })
            .collect()
    }

    #[test]
    fn the_vouched_assignments_are_the_file_s_rows_when_checksum_and_count_hold() {
        let dir = tempfile::tempdir().unwrap();
        let rows = sample_rows(10);
        write_assignments(&dir.path().join("clusters/1/assignments.parquet"), &rows).unwrap();
        let recorded = describe_assignments_file(&dir.path().join("clusters/1/assignments.parquet")).unwrap();
        assert_eq!(recorded.row_count, 10);
        let read = read_vouched_assignments(
            &crate::storage::Storage::folder(dir.path()),
            "clusters/1/assignments.parquet",
            &recorded,
        )
        .unwrap();
        let expected: Vec<(u64, u64, i64)> =
            rows.iter().map(|row| (row.embedding_set_id, row.row_index, row.cluster_label)).collect();
        let found: Vec<(u64, u64, i64)> =
            read.iter().map(|record| (record.embedding_set_id.0, record.row_index, record.label)).collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn a_missing_changed_or_miscounted_assignments_file_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let relative = "clusters/1/assignments.parquet";
        write_assignments(&dir.path().join(relative), &sample_rows(10)).unwrap();
        let recorded = describe_assignments_file(&dir.path().join(relative)).unwrap();

        let miscounted = AssignmentsFile { row_count: 11, ..recorded.clone() };
        let error =
            read_vouched_assignments(&crate::storage::Storage::folder(dir.path()), relative, &miscounted).unwrap_err();
        assert_eq!(error.to_string(), format!("{relative} has 10 rows, the log recorded 11"));

        write_assignments(&dir.path().join(relative), &sample_rows(9)).unwrap();
        let error =
            read_vouched_assignments(&crate::storage::Storage::folder(dir.path()), relative, &recorded).unwrap_err();
        assert!(matches!(error, VouchedAssignmentsError::ChecksumDiffers { .. }), "{error}");
        assert!(error.to_string().contains(&recorded.sha256.0), "{error}");

        std::fs::remove_file(dir.path().join(relative)).unwrap();
        let error =
            read_vouched_assignments(&crate::storage::Storage::folder(dir.path()), relative, &recorded).unwrap_err();
        assert_eq!(error.to_string(), format!("{relative} is missing"));
    }

    #[test]
    fn a_completion_s_encoded_size_does_not_grow_with_the_window_count() {
        use crate::domain::events::{ClusterAssignments, ClusterRecord, ClusteringJobCompleted, Event};
        let dir = tempfile::tempdir().unwrap();
        let encoded_size = |windows: u64| {
            let relative = "clusters/1/assignments.parquet".to_string();
            write_assignments(&dir.path().join(&relative), &sample_rows(windows)).unwrap();
            let file = describe_assignments_file(&dir.path().join(&relative)).unwrap();
            let clusters = (-1..=1)
                .map(|label| ClusterRecord {
                    cluster_id: crate::domain::ids::ClusterId(0),
                    label,
                    size: windows / 3,
                    metadata_summary: crate::domain::json_text::JsonText::empty_object(),
                })
                .collect();
            let event = Event::ClusteringJobCompleted(ClusteringJobCompleted {
                job_id: crate::domain::ids::ClusteringJobId(1),
                attempt: 1,
                clusters,
                assignments: ClusterAssignments::InFile(file),
                metrics: crate::domain::json_text::JsonText::empty_object(),
                clusters_json_path: "clusters/1/clusters.json".into(),
                assignments_path: relative,
            });
            crate::log::envelope::encode_record(&event, crate::log::RecordedAt(0)).unwrap().len()
        };
        let small = encoded_size(30);
        let large = encoded_size(300_000);
        // Only the varints of the four counts may be longer (bincode: 1 byte below 251, 5 bytes
        // up to 2^32), and the file's checksum is as long for any size.
        assert!(large <= small + 16, "30 windows encode to {small} bytes, 300 000 to {large}");
        assert!(large < 400, "{large} bytes");
    }
}
