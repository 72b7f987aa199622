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
}
