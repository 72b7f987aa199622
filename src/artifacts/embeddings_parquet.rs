//! Embedding sets as Parquet: written incrementally (bounded row groups, never all vectors in
//! memory) to `{signature}.tmp.parquet`, then promoted to `{signature}.parquet`.
//!
//! Columns: `row_index` (uint64), `start_seconds`, `end_seconds` (float64), `padded`,
//! `overlapped` (bool), `embedding` (fixed-size list of float32), and last `start_time_utc`
//! (timestamp, nanoseconds, UTC; null when the recording's start was unknown when the set was
//! written; sets written before it existed lack the column and still load). File key-value metadata
//! carries the signature, the model, the audio checksum and the full configuration, so a file
//! explains itself to pyarrow or pandas without humpback.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, RecordBatch,
    TimestampNanosecondArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::files::{promote, remove_if_exists, temp_sibling};
use super::ArtifactError;

/// Version of this file layout, stored as `humpback.format_version`.
/// 2 added `start_time_utc`.
pub const EMBEDDINGS_FORMAT_VERSION: &str = "2";
/// Key of the row count recorded when the file is finished (a recovered file must match it).
pub const ROW_COUNT_KEY: &str = "humpback.row_count";
/// Key of the recording's start time (ISO 8601 UTC) when the set was written: given in the
/// writer's metadata, it fills the `start_time_utc` column.
pub const RECORDED_AT_KEY: &str = "humpback.recorded_at";
/// Name of the absolute window start column.
pub const START_TIME_UTC_COLUMN: &str = "start_time_utc";

/// Rows per row group at most; with 1536 dims that is 24 MiB of float32 before encoding.
pub const MAX_ROWS_PER_ROW_GROUP: usize = 4096;

/// One window's embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingRow {
    pub row_index: u64,
    pub start_seconds: f64,
    pub end_seconds: f64,
    pub padded: bool,
    pub overlapped: bool,
    pub embedding: Vec<f32>,
}

pub fn schema(vector_dim: usize) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("row_index", DataType::UInt64, false),
        Field::new("start_seconds", DataType::Float64, false),
        Field::new("end_seconds", DataType::Float64, false),
        Field::new("padded", DataType::Boolean, false),
        Field::new("overlapped", DataType::Boolean, false),
        Field::new(
            "embedding",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), vector_dim as i32),
            false,
        ),
        Field::new(START_TIME_UTC_COLUMN, DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), true),
    ]))
}

/// Writes an embedding set to its temporary path; `finish_and_promote` makes it final.
pub struct EmbeddingSetWriter {
    final_path: PathBuf,
    temp_path: PathBuf,
    vector_dim: usize,
    schema: SchemaRef,
    writer: Option<ArrowWriter<File>>,
    rows_written: u64,
    /// The recording's start (from [`RECORDED_AT_KEY`]), for `start_time_utc`.
    recorded_at: Option<crate::recording_time::UtcTime>,
}

impl EmbeddingSetWriter {
    /// Starts `final_path`'s temporary sibling, replacing any leftover from an earlier attempt.
    pub fn create(
        final_path: &Path,
        vector_dim: usize,
        metadata: Vec<(String, String)>,
    ) -> Result<EmbeddingSetWriter, ArtifactError> {
        if vector_dim == 0 || vector_dim > i32::MAX as usize {
            return Err(ArtifactError::Invalid {
                path: final_path.to_path_buf(),
                reason: format!("vector dimension {vector_dim} is not usable"),
            });
        }
        let temp_path = temp_sibling(final_path);
        if let Some(parent) = final_path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ArtifactError::Io {
                doing: "creating",
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let file = File::create(&temp_path).map_err(|source| ArtifactError::Io {
            doing: "creating",
            path: temp_path.clone(),
            source,
        })?;
        let recorded_at = metadata
            .iter()
            .find(|(key, _)| key == RECORDED_AT_KEY)
            .and_then(|(_, value)| crate::recording_time::UtcTime::parse_iso8601(value).ok());
        let mut key_values =
            vec![KeyValue::new("humpback.format_version".into(), EMBEDDINGS_FORMAT_VERSION.to_string())];
        key_values.extend(metadata.into_iter().map(|(key, value)| KeyValue::new(key, value)));
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(MAX_ROWS_PER_ROW_GROUP))
            .set_key_value_metadata(Some(key_values))
            .build();
        let schema = schema(vector_dim);
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(properties))
            .map_err(|source| ArtifactError::Parquet { path: temp_path.clone(), source })?;
        Ok(EmbeddingSetWriter {
            final_path: final_path.to_path_buf(),
            temp_path,
            vector_dim,
            schema,
            writer: Some(writer),
            rows_written: 0,
            recorded_at,
        })
    }

    pub fn temp_path(&self) -> &Path {
        &self.temp_path
    }

    pub fn rows_written(&self) -> u64 {
        self.rows_written
    }

    /// Appends rows (typically one inference batch). Row groups are flushed as they fill.
    pub fn write_rows(&mut self, rows: &[EmbeddingRow]) -> Result<(), ArtifactError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut values = Vec::with_capacity(rows.len() * self.vector_dim);
        for row in rows {
            if row.embedding.len() != self.vector_dim {
                return Err(ArtifactError::WrongDimension {
                    path: self.temp_path.clone(),
                    row_index: row.row_index,
                    found: row.embedding.len(),
                    expected: self.vector_dim,
                });
            }
            values.extend_from_slice(&row.embedding);
        }
        let arrow = |source| ArtifactError::Arrow { path: self.temp_path.clone(), source };
        let embedding = FixedSizeListArray::try_new(
            Arc::new(Field::new("item", DataType::Float32, false)),
            self.vector_dim as i32,
            Arc::new(Float32Array::from(values)),
            None,
        )
        .map_err(arrow)?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|row| row.row_index))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|row| row.start_seconds))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|row| row.end_seconds))),
            Arc::new(BooleanArray::from(rows.iter().map(|row| row.padded).collect::<Vec<_>>())),
            Arc::new(BooleanArray::from(rows.iter().map(|row| row.overlapped).collect::<Vec<_>>())),
            Arc::new(embedding),
            Arc::new(
                TimestampNanosecondArray::from(
                    rows.iter()
                        .map(|row| {
                            let start = crate::recording_time::window_start_utc(self.recorded_at?, row.start_seconds);
                            start.micros().checked_mul(1000)
                        })
                        .collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
        ];
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|source| ArtifactError::Arrow { path: self.temp_path.clone(), source })?;
        let writer = self.writer.as_mut().ok_or_else(|| ArtifactError::Invalid {
            path: self.temp_path.clone(),
            reason: "the writer was already closed".into(),
        })?;
        writer.write(&batch).map_err(|source| ArtifactError::Parquet { path: self.temp_path.clone(), source })?;
        self.rows_written += rows.len() as u64;
        Ok(())
    }

    /// Closes the file, fsyncs it, renames it to its final path and fsyncs the directory.
    pub fn finish_and_promote(mut self) -> Result<u64, ArtifactError> {
        if let Some(mut writer) = self.writer.take() {
            writer.append_key_value_metadata(KeyValue::new(ROW_COUNT_KEY.into(), self.rows_written.to_string()));
            writer.close().map_err(|source| ArtifactError::Parquet { path: self.temp_path.clone(), source })?;
        }
        promote(&self.temp_path, &self.final_path)?;
        Ok(self.rows_written)
    }

    /// Stops writing and removes the temporary file.
    pub fn abandon(mut self) -> Result<(), ArtifactError> {
        self.writer.take();
        remove_if_exists(&self.temp_path).map(|_| ())
    }
}

/// What a readable embedding set holds.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingSetSummary {
    pub rows: u64,
    pub vector_dim: usize,
    pub metadata: Vec<(String, String)>,
}

impl EmbeddingSetSummary {
    /// Whether the file is complete: it states its row count and holds exactly that many rows.
    pub fn is_complete(&self) -> bool {
        self.metadata_value(ROW_COUNT_KEY).and_then(|count| count.parse::<u64>().ok()) == Some(self.rows)
    }

    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Reads the footer and schema: the file is complete and has the expected shape.
pub fn inspect(path: &Path) -> Result<EmbeddingSetSummary, ArtifactError> {
    let file =
        File::open(path).map_err(|source| ArtifactError::Io { doing: "opening", path: path.to_path_buf(), source })?;
    let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|source| ArtifactError::Parquet { path: path.to_path_buf(), source })?;
    summarize(&metadata, path)
}

/// What a footer says of an embedding set (read from a file, or from a bucket with ranged
/// reads); `name` only labels errors.
pub fn summarize(
    metadata: &parquet::file::metadata::ParquetMetaData,
    name: &Path,
) -> Result<EmbeddingSetSummary, ArtifactError> {
    let file_metadata = metadata.file_metadata();
    let rows = u64::try_from(file_metadata.num_rows()).unwrap_or(0);
    let pairs = file_metadata
        .key_value_metadata()
        .map(|pairs| pairs.iter().map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default())).collect())
        .unwrap_or_default();
    let schema =
        parquet::arrow::parquet_to_arrow_schema(file_metadata.schema_descr(), file_metadata.key_value_metadata())
            .map_err(|source| ArtifactError::Parquet { path: name.to_path_buf(), source })?;
    let vector_dim = match schema.field_with_name("embedding").map(|field| field.data_type().clone()) {
        Ok(DataType::FixedSizeList(_, size)) => size as usize,
        _ => {
            return Err(ArtifactError::Invalid {
                path: name.to_path_buf(),
                reason: "no fixed-size list column named \"embedding\"".into(),
            })
        }
    };
    Ok(EmbeddingSetSummary { rows, vector_dim, metadata: pairs })
}

/// The stored start and end (seconds) of row `row` of an embedding set, reading only the time
/// columns of the row group that holds it. `None` when the set has no such row.
pub fn window_times(path: &Path, row: u64) -> Result<Option<(f64, f64)>, ArtifactError> {
    let owned = path.to_path_buf();
    let file =
        File::open(path).map_err(|source| ArtifactError::Io { doing: "opening", path: owned.clone(), source })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|source| ArtifactError::Parquet { path: owned.clone(), source })?;
    let mut first_row_of_group = 0u64;
    let mut group = None;
    for (index, row_group) in builder.metadata().row_groups().iter().enumerate() {
        let rows = u64::try_from(row_group.num_rows()).unwrap_or(0);
        if row < first_row_of_group + rows {
            group = Some(index);
            break;
        }
        first_row_of_group += rows;
    }
    let Some(group) = group else {
        return Ok(None);
    };
    let columns = ProjectionMask::columns(builder.parquet_schema(), ["row_index", "start_seconds", "end_seconds"]);
    let reader = builder
        .with_row_groups(vec![group])
        .with_projection(columns)
        .build()
        .map_err(|source| ArtifactError::Parquet { path: owned.clone(), source })?;
    let invalid = |reason: &str| ArtifactError::Invalid { path: owned.clone(), reason: reason.to_string() };
    for batch in reader {
        let batch = batch.map_err(|source| ArtifactError::Arrow { path: owned.clone(), source })?;
        let column =
            |name: &str| batch.column_by_name(name).ok_or_else(|| invalid(&format!("no column {name:?}"))).cloned();
        let (indexes, starts, ends) = (column("row_index")?, column("start_seconds")?, column("end_seconds")?);
        let indexes =
            indexes.as_any().downcast_ref::<UInt64Array>().ok_or_else(|| invalid("row_index is not uint64"))?;
        let starts =
            starts.as_any().downcast_ref::<Float64Array>().ok_or_else(|| invalid("start_seconds is not float64"))?;
        let ends = ends.as_any().downcast_ref::<Float64Array>().ok_or_else(|| invalid("end_seconds is not float64"))?;
        if let Some(position) = indexes.values().iter().position(|index| *index == row) {
            return Ok(Some((starts.value(position), ends.value(position))));
        }
    }
    Ok(None)
}

/// Every row's stored start and end (seconds), by row index, reading only the time columns.
pub fn all_window_times(path: &Path) -> Result<std::collections::HashMap<u64, (f64, f64)>, ArtifactError> {
    let owned = path.to_path_buf();
    let file =
        File::open(path).map_err(|source| ArtifactError::Io { doing: "opening", path: owned.clone(), source })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|source| ArtifactError::Parquet { path: owned.clone(), source })?;
    let columns = ProjectionMask::columns(builder.parquet_schema(), ["row_index", "start_seconds", "end_seconds"]);
    let reader = builder
        .with_projection(columns)
        .build()
        .map_err(|source| ArtifactError::Parquet { path: owned.clone(), source })?;
    let invalid = |reason: &str| ArtifactError::Invalid { path: owned.clone(), reason: reason.to_string() };
    let mut times = std::collections::HashMap::new();
    for batch in reader {
        let batch = batch.map_err(|source| ArtifactError::Arrow { path: owned.clone(), source })?;
        let column =
            |name: &str| batch.column_by_name(name).ok_or_else(|| invalid(&format!("no column {name:?}"))).cloned();
        let (indexes, starts, ends) = (column("row_index")?, column("start_seconds")?, column("end_seconds")?);
        let indexes =
            indexes.as_any().downcast_ref::<UInt64Array>().ok_or_else(|| invalid("row_index is not uint64"))?;
        let starts =
            starts.as_any().downcast_ref::<Float64Array>().ok_or_else(|| invalid("start_seconds is not float64"))?;
        let ends = ends.as_any().downcast_ref::<Float64Array>().ok_or_else(|| invalid("end_seconds is not float64"))?;
        for position in 0..indexes.len() {
            times.insert(indexes.value(position), (starts.value(position), ends.value(position)));
        }
    }
    Ok(times)
}

/// A batch of rows read back.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingBatch {
    pub row_index: Vec<u64>,
    pub start_seconds: Vec<f64>,
    pub end_seconds: Vec<f64>,
    pub vector_dim: usize,
    /// Row-major, `row_index.len() * vector_dim` values.
    pub vectors: Vec<f32>,
}

/// Streams an embedding set back in batches of at most `batch_rows` rows.
pub fn read_batches(
    path: &Path,
    batch_rows: usize,
) -> Result<impl Iterator<Item = Result<EmbeddingBatch, ArtifactError>>, ArtifactError> {
    let owned = path.to_path_buf();
    let file =
        File::open(path).map_err(|source| ArtifactError::Io { doing: "opening", path: owned.clone(), source })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|builder| builder.with_batch_size(batch_rows.max(1)).build())
        .map_err(|source| ArtifactError::Parquet { path: owned.clone(), source })?;
    Ok(reader.map(move |batch| {
        let batch = batch.map_err(|source| ArtifactError::Arrow { path: owned.clone(), source })?;
        decode_batch(&owned, &batch)
    }))
}

fn decode_batch(path: &Path, batch: &RecordBatch) -> Result<EmbeddingBatch, ArtifactError> {
    let invalid = |reason: &str| ArtifactError::Invalid { path: path.to_path_buf(), reason: reason.to_string() };
    let column = |name: &str| batch.column_by_name(name).ok_or_else(|| invalid(&format!("no column {name:?}")));
    let row_index = column("row_index")?
        .as_any()
        .downcast_ref::<UInt64Array>()
        .ok_or_else(|| invalid("row_index is not uint64"))?;
    let start = column("start_seconds")?
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or_else(|| invalid("start_seconds is not float64"))?;
    let end = column("end_seconds")?
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or_else(|| invalid("end_seconds is not float64"))?;
    let embedding = column("embedding")?
        .as_any()
        .downcast_ref::<FixedSizeListArray>()
        .ok_or_else(|| invalid("embedding is not a fixed-size list"))?;
    let values = embedding
        .values()
        .as_any()
        .downcast_ref::<Float32Array>()
        .ok_or_else(|| invalid("embedding values are not float32"))?;
    let vector_dim = embedding.value_length() as usize;
    let offset = embedding.offset() * vector_dim;
    let vectors = values.values()[offset..offset + embedding.len() * vector_dim].to_vec();
    Ok(EmbeddingBatch {
        row_index: row_index.values().to_vec(),
        start_seconds: start.values().to_vec(),
        end_seconds: end.values().to_vec(),
        vector_dim,
        vectors,
    })
}

/// Each window's absolute start, `(row_index, start)`, derived from the recording's start as
/// known now (`None`: unknown, and every start is `None`). Works for sets written before the
/// `start_time_utc` column existed, and follows edits of the start made after encoding (the
/// stored column keeps the start known when the set was written, for tools outside humpback).
pub fn window_start_times(
    path: &Path,
    recorded_at: Option<crate::recording_time::UtcTime>,
) -> Result<Vec<(u64, Option<crate::recording_time::UtcTime>)>, ArtifactError> {
    let owned = path.to_path_buf();
    let file =
        File::open(path).map_err(|source| ArtifactError::Io { doing: "opening", path: owned.clone(), source })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|source| ArtifactError::Parquet { path: owned.clone(), source })?;
    let columns = ProjectionMask::columns(builder.parquet_schema(), ["row_index", "start_seconds"]);
    let reader = builder
        .with_projection(columns)
        .build()
        .map_err(|source| ArtifactError::Parquet { path: owned.clone(), source })?;
    let invalid = |reason: &str| ArtifactError::Invalid { path: owned.clone(), reason: reason.to_string() };
    let mut starts = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|source| ArtifactError::Arrow { path: owned.clone(), source })?;
        let indexes = batch
            .column_by_name("row_index")
            .and_then(|column| column.as_any().downcast_ref::<UInt64Array>().cloned())
            .ok_or_else(|| invalid("row_index is not uint64"))?;
        let seconds = batch
            .column_by_name("start_seconds")
            .and_then(|column| column.as_any().downcast_ref::<Float64Array>().cloned())
            .ok_or_else(|| invalid("start_seconds is not float64"))?;
        starts.extend(indexes.values().iter().zip(seconds.values()).map(|(index, seconds)| {
            (*index, recorded_at.map(|start| crate::recording_time::window_start_utc(start, *seconds)))
        }));
    }
    Ok(starts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_utc_is_the_recording_start_plus_start_seconds_and_sets_without_it_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let recorded_at = crate::recording_time::UtcTime::parse_iso8601("2024-07-01T06:30:00Z").unwrap();
        let path = dir.path().join("with.parquet");
        let mut writer =
            EmbeddingSetWriter::create(&path, 4, vec![(RECORDED_AT_KEY.into(), recorded_at.to_iso8601())]).unwrap();
        writer.write_rows(&rows(3, 4)).unwrap();
        writer.finish_and_promote().unwrap();
        let file = File::open(&path).unwrap();
        let batch = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().next().unwrap().unwrap();
        let column = batch.column_by_name(START_TIME_UTC_COLUMN).unwrap();
        assert_eq!(column.data_type(), &DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())));
        let times = column.as_any().downcast_ref::<TimestampNanosecondArray>().unwrap();
        for row in 0..3 {
            let expected = crate::recording_time::window_start_utc(recorded_at, row as f64 * 5.0);
            assert_eq!(times.value(row), expected.micros() * 1000);
        }
        // Unknown start: nulls.
        let unknown = dir.path().join("unknown.parquet");
        let mut writer = EmbeddingSetWriter::create(&unknown, 4, vec![]).unwrap();
        writer.write_rows(&rows(2, 4)).unwrap();
        writer.finish_and_promote().unwrap();
        let file = File::open(&unknown).unwrap();
        let batch = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().next().unwrap().unwrap();
        assert_eq!(batch.column_by_name(START_TIME_UTC_COLUMN).unwrap().null_count(), 2);
        // A set written before the column existed (format 1): the same columns minus the last.
        let old = dir.path().join("old.parquet");
        let old_schema = Arc::new(Schema::new(schema(4).fields()[..6].to_vec()));
        let full = {
            let file = File::open(&path).unwrap();
            ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().next().unwrap().unwrap()
        };
        let old_batch = RecordBatch::try_new(old_schema.clone(), full.columns()[..6].to_vec()).unwrap();
        let mut old_writer = ArrowWriter::try_new(File::create(&old).unwrap(), old_schema, None).unwrap();
        old_writer.write(&old_batch).unwrap();
        old_writer.close().unwrap();
        assert_eq!(inspect(&old).unwrap().vector_dim, 4);
        let read: Vec<EmbeddingBatch> = read_batches(&old, 10).unwrap().map(Result::unwrap).collect();
        assert_eq!(read[0].start_seconds, vec![0.0, 5.0, 10.0]);
        assert_eq!(window_times(&old, 2).unwrap(), Some((10.0, 15.0)));
        let derived = window_start_times(&old, Some(recorded_at)).unwrap();
        assert_eq!(derived[2], (2, Some(crate::recording_time::window_start_utc(recorded_at, 10.0))));
        assert_eq!(window_start_times(&old, None).unwrap()[0], (0, None));
    }

    fn rows(count: u64, dim: usize) -> Vec<EmbeddingRow> {
        (0..count)
            .map(|index| EmbeddingRow {
                row_index: index,
                start_seconds: index as f64 * 5.0,
                end_seconds: index as f64 * 5.0 + 5.0,
                padded: false,
                overlapped: index == count - 1,
                embedding: (0..dim).map(|d| (index * 100 + d as u64) as f32).collect(),
            })
            .collect()
    }

    #[test]
    fn a_window_s_stored_times_are_found_in_any_row_group() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("set.parquet");
        let mut writer = EmbeddingSetWriter::create(&path, 2, Vec::new()).unwrap();
        let mut all = rows(10_000, 2);
        // The last window is shifted back to end where the recording ends.
        let last = all.len() - 1;
        all[last].start_seconds = 49_997.5;
        all[last].end_seconds = 50_002.5;
        writer.write_rows(&all).unwrap();
        writer.finish_and_promote().unwrap();
        assert_eq!(window_times(&path, 0).unwrap(), Some((0.0, 5.0)));
        assert_eq!(window_times(&path, 4_100).unwrap(), Some((20_500.0, 20_505.0)), "in the second row group");
        assert_eq!(window_times(&path, 9_999).unwrap(), Some((49_997.5, 50_002.5)), "the stored start, not row x hop");
        assert_eq!(window_times(&path, 10_000).unwrap(), None);
        assert!(window_times(&dir.path().join("missing.parquet"), 0).is_err());
    }

    #[test]
    fn an_incrementally_written_set_is_invisible_until_promoted_then_reads_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let final_path = dir.path().join("m@1").join("7").join("abc.parquet");
        let mut writer =
            EmbeddingSetWriter::create(&final_path, 3, vec![("humpback.encoding_signature".into(), "abc".into())])
                .unwrap();
        let all = rows(10_000, 3);
        for chunk in all.chunks(777) {
            writer.write_rows(chunk).unwrap();
        }
        assert!(!final_path.exists(), "nothing is visible before promotion");
        assert!(writer.temp_path().ends_with("abc.tmp.parquet"));
        assert_eq!(writer.finish_and_promote().unwrap(), 10_000);
        assert!(!temp_sibling(&final_path).exists());

        let summary = inspect(&final_path).unwrap();
        assert_eq!(summary.rows, 10_000);
        assert_eq!(summary.vector_dim, 3);
        assert_eq!(summary.metadata_value("humpback.encoding_signature"), Some("abc"));
        assert_eq!(summary.metadata_value("humpback.format_version"), Some("2"));
        assert!(summary.is_complete());

        let mut read = Vec::new();
        for batch in read_batches(&final_path, 1000).unwrap() {
            let batch = batch.unwrap();
            for (position, row_index) in batch.row_index.iter().enumerate() {
                read.push((
                    *row_index,
                    batch.start_seconds[position],
                    batch.vectors[position * 3..position * 3 + 3].to_vec(),
                ));
            }
        }
        assert_eq!(read.len(), 10_000);
        for (row, expected) in read.iter().zip(&all) {
            assert_eq!(row.0, expected.row_index);
            assert_eq!(row.1, expected.start_seconds);
            assert_eq!(row.2, expected.embedding);
        }
    }

    #[test]
    fn a_row_of_the_wrong_dimension_is_refused_and_abandoning_removes_the_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let final_path = dir.path().join("x.parquet");
        let mut writer = EmbeddingSetWriter::create(&final_path, 4, vec![]).unwrap();
        let error = writer.write_rows(&rows(2, 3)).unwrap_err();
        assert!(error.to_string().contains("has 3 values, the set has 4 dimensions"), "{error}");
        let temp = writer.temp_path().to_path_buf();
        assert!(temp.exists());
        writer.abandon().unwrap();
        assert!(!temp.exists());
        assert!(!final_path.exists());
    }

    #[test]
    fn a_truncated_file_is_reported_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let final_path = dir.path().join("x.parquet");
        let mut writer = EmbeddingSetWriter::create(&final_path, 2, vec![]).unwrap();
        writer.write_rows(&rows(50, 2)).unwrap();
        writer.finish_and_promote().unwrap();
        let bytes = std::fs::read(&final_path).unwrap();
        std::fs::write(&final_path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(inspect(&final_path).is_err());
    }
}
