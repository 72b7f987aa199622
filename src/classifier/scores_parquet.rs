//! `detections/{job_id}/scores.parquet`: every window a detection job scored, one row each —
//! `embedding_set_id`, `row_index`, `audio_file_id` (uint64), `start_seconds`, `end_seconds`
//! (float64) and one float64 column per label, named `score_{label}` — written through a
//! temporary sibling and promoted (fsync, rename, fsync the directory) when complete.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::training_set::WindowPlace;
use crate::artifacts::files::{promote, remove_if_exists, temp_sibling};
use crate::artifacts::ArtifactError;

/// The column of a label's scores.
pub fn score_column(label: &str) -> String {
    format!("score_{label}")
}

pub fn schema(labels: &[String]) -> SchemaRef {
    let mut fields = vec![
        Field::new("embedding_set_id", DataType::UInt64, false),
        Field::new("row_index", DataType::UInt64, false),
        Field::new("audio_file_id", DataType::UInt64, false),
        Field::new("start_seconds", DataType::Float64, false),
        Field::new("end_seconds", DataType::Float64, false),
    ];
    fields.extend(labels.iter().map(|label| Field::new(score_column(label), DataType::Float64, false)));
    Arc::new(Schema::new(fields))
}

pub struct ScoresWriter {
    final_path: PathBuf,
    temp_path: PathBuf,
    schema: SchemaRef,
    labels: usize,
    writer: Option<ArrowWriter<File>>,
    rows_written: u64,
}

impl ScoresWriter {
    pub fn create(final_path: &Path, labels: &[String]) -> Result<ScoresWriter, ArtifactError> {
        let temp_path = temp_sibling(final_path);
        let io = |doing: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| ArtifactError::Io { doing, path, source }
        };
        if let Some(parent) = final_path.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        let file = File::create(&temp_path).map_err(io("creating", &temp_path))?;
        let schema = schema(labels);
        let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(properties))
            .map_err(|source| ArtifactError::Parquet { path: temp_path.clone(), source })?;
        Ok(ScoresWriter {
            final_path: final_path.to_path_buf(),
            temp_path,
            schema,
            labels: labels.len(),
            writer: Some(writer),
            rows_written: 0,
        })
    }

    /// Appends windows with their scores (`scores[i]` has one value per label).
    pub fn write(&mut self, windows: &[WindowPlace], scores: &[Vec<f64>]) -> Result<(), ArtifactError> {
        let invalid = |reason: String| ArtifactError::Invalid { path: self.temp_path.clone(), reason };
        if windows.len() != scores.len() || scores.iter().any(|row| row.len() != self.labels) {
            return Err(invalid("scores do not match the windows and labels".into()));
        }
        if windows.is_empty() {
            return Ok(());
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(windows.iter().map(|w| w.embedding_set_id.0))),
            Arc::new(UInt64Array::from_iter_values(windows.iter().map(|w| w.row_index))),
            Arc::new(UInt64Array::from_iter_values(windows.iter().map(|w| w.audio_file_id.0))),
            Arc::new(Float64Array::from_iter_values(windows.iter().map(|w| w.start_seconds))),
            Arc::new(Float64Array::from_iter_values(windows.iter().map(|w| w.end_seconds))),
        ];
        for label in 0..self.labels {
            columns.push(Arc::new(Float64Array::from_iter_values(scores.iter().map(|row| row[label]))));
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|source| ArtifactError::Arrow { path: self.temp_path.clone(), source })?;
        let writer = self.writer.as_mut().ok_or_else(|| invalid("the writer was already closed".into()))?;
        writer.write(&batch).map_err(|source| ArtifactError::Parquet { path: self.temp_path.clone(), source })?;
        self.rows_written += windows.len() as u64;
        Ok(())
    }

    /// Ends the current row group (the writer starts one per set, so that each row group's
    /// statistics name one recording and `read_scores` of one recording reads only its own).
    pub fn end_row_group(&mut self) -> Result<(), ArtifactError> {
        let path = self.temp_path.clone();
        let writer = self.writer.as_mut().ok_or_else(|| ArtifactError::Invalid {
            path: path.clone(),
            reason: "the writer was already closed".into(),
        })?;
        writer.flush().map_err(|source| ArtifactError::Parquet { path, source })
    }

    /// Closes, fsyncs and renames into place; the rows written.
    pub fn finish_and_promote(mut self) -> Result<u64, ArtifactError> {
        if let Some(writer) = self.writer.take() {
            writer.close().map_err(|source| ArtifactError::Parquet { path: self.temp_path.clone(), source })?;
        }
        promote(&self.temp_path, &self.final_path)?;
        Ok(self.rows_written)
    }

    /// Drops the temporary file (a canceled or failed job).
    pub fn abandon(mut self) -> Result<(), ArtifactError> {
        self.writer.take();
        remove_if_exists(&self.temp_path).map(|_| ())
    }
}

/// One row of a scores file: where the window lies and its score per label.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredWindow {
    pub place: WindowPlace,
    /// One score per label, in the file's label order.
    pub scores: Vec<f64>,
}

/// A scores file read back: its labels (from the `score_{label}` columns) and its rows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScoresTable {
    pub labels: Vec<String>,
    pub windows: Vec<ScoredWindow>,
}

impl ScoresTable {
    /// The position of `label` among the score columns.
    pub fn label_index(&self, label: &str) -> Option<usize> {
        self.labels.iter().position(|known| known == label)
    }
}

/// Whether a row group may hold rows of `audio_file_id` (by its statistics; without them, yes).
fn row_group_may_hold(
    row_group: &parquet::file::metadata::RowGroupMetaData,
    column: usize,
    audio_file_id: u64,
) -> bool {
    use parquet::file::statistics::Statistics;
    let Some(Statistics::Int64(statistics)) = row_group.column(column).statistics() else { return true };
    // uint64 is stored as int64 bits; ids stay far below 2^63
    match (statistics.min_opt(), statistics.max_opt(), i64::try_from(audio_file_id)) {
        (Some(min), Some(max), Ok(wanted)) => *min <= wanted && wanted <= *max,
        _ => true,
    }
}

/// Reads a scores file; with `audio_file_id`, only that recording's rows are kept (and only the
/// row groups whose statistics may hold it are read).
pub fn read_scores(path: &Path, audio_file_id: Option<u64>) -> Result<ScoresTable, ArtifactError> {
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let owned = path.to_path_buf();
    let file =
        File::open(path).map_err(|source| ArtifactError::Io { doing: "opening", path: owned.clone(), source })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|source| ArtifactError::Parquet { path: owned.clone(), source })?;
    let labels: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .filter_map(|field| field.name().strip_prefix("score_").map(str::to_string))
        .collect();
    let builder = match audio_file_id {
        Some(wanted) => {
            let column = builder.parquet_schema().columns().iter().position(|column| column.name() == "audio_file_id");
            let groups: Vec<usize> = match column {
                Some(column) => (0..builder.metadata().num_row_groups())
                    .filter(|index| row_group_may_hold(builder.metadata().row_group(*index), column, wanted))
                    .collect(),
                None => (0..builder.metadata().num_row_groups()).collect(),
            };
            builder.with_row_groups(groups)
        }
        None => builder,
    };
    let reader = builder.build().map_err(|source| ArtifactError::Parquet { path: owned.clone(), source })?;
    let invalid = |reason: String| ArtifactError::Invalid { path: owned.clone(), reason };
    let mut windows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|source| ArtifactError::Arrow { path: owned.clone(), source })?;
        let whole = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|column| column.as_any().downcast_ref::<UInt64Array>())
                .cloned()
                .ok_or_else(|| invalid(format!("no uint64 column {name:?}")))
        };
        let real = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|column| column.as_any().downcast_ref::<Float64Array>())
                .cloned()
                .ok_or_else(|| invalid(format!("no float64 column {name:?}")))
        };
        let (sets, rows, audio) = (whole("embedding_set_id")?, whole("row_index")?, whole("audio_file_id")?);
        let (starts, ends) = (real("start_seconds")?, real("end_seconds")?);
        let score_columns: Vec<Float64Array> =
            labels.iter().map(|label| real(&score_column(label))).collect::<Result<_, _>>()?;
        for i in 0..batch.num_rows() {
            if audio_file_id.is_some_and(|wanted| wanted != audio.value(i)) {
                continue;
            }
            windows.push(ScoredWindow {
                place: WindowPlace {
                    embedding_set_id: crate::domain::ids::EmbeddingSetId(sets.value(i)),
                    row_index: rows.value(i),
                    audio_file_id: crate::domain::ids::AudioFileId(audio.value(i)),
                    start_seconds: starts.value(i),
                    end_seconds: ends.value(i),
                },
                scores: score_columns.iter().map(|column| column.value(i)).collect(),
            });
        }
    }
    Ok(ScoresTable { labels, windows })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{AudioFileId, EmbeddingSetId};

    #[test]
    fn one_recordings_scores_are_read_from_its_own_row_group() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("detections/4/scores.parquet");
        let labels = vec!["song".to_string()];
        let mut writer = ScoresWriter::create(&path, &labels).unwrap();
        for audio in [3u64, 7, 9] {
            let windows: Vec<WindowPlace> = (0..5)
                .map(|row| WindowPlace {
                    embedding_set_id: EmbeddingSetId(audio),
                    row_index: row,
                    audio_file_id: AudioFileId(audio),
                    start_seconds: row as f64,
                    end_seconds: row as f64 + 1.0,
                })
                .collect();
            writer.write(&windows, &vec![vec![audio as f64 / 10.0]; 5]).unwrap();
            writer.end_row_group().unwrap();
        }
        writer.finish_and_promote().unwrap();
        let file = File::open(&path).unwrap();
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        assert_eq!(builder.metadata().num_row_groups(), 3);
        let table = read_scores(&path, Some(7)).unwrap();
        assert_eq!(table.windows.len(), 5);
        assert!(table.windows.iter().all(|w| w.place.audio_file_id == AudioFileId(7) && w.scores == vec![0.7]));
        assert_eq!(read_scores(&path, None).unwrap().windows.len(), 15);
        assert!(read_scores(&path, Some(8)).unwrap().windows.is_empty());
    }

    #[test]
    fn the_scores_file_is_promoted_whole_and_pyarrow_reads_a_column_per_label() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("detections/3/scores.parquet");
        let labels = vec!["song unit A".to_string(), "grunt".to_string()];
        let mut writer = ScoresWriter::create(&path, &labels).unwrap();
        let windows: Vec<WindowPlace> = (0..10)
            .map(|row| WindowPlace {
                embedding_set_id: EmbeddingSetId(2),
                row_index: row,
                audio_file_id: AudioFileId(5),
                start_seconds: row as f64 * 5.0,
                end_seconds: row as f64 * 5.0 + 5.0,
            })
            .collect();
        let scores: Vec<Vec<f64>> = (0..10).map(|row| vec![row as f64 / 10.0, 1.0 - row as f64 / 10.0]).collect();
        writer.write(&windows[..4], &scores[..4]).unwrap();
        assert!(!path.exists(), "nothing is visible before it is complete");
        writer.write(&windows[4..], &scores[4..]).unwrap();
        assert!(writer.write(&windows[..1], &[vec![0.5]]).is_err(), "one score per label");
        assert_eq!(writer.finish_and_promote().unwrap(), 10);
        assert!(path.exists() && !temp_sibling(&path).exists());
        let table = read_scores(&path, None).unwrap();
        assert_eq!(table.labels, labels);
        assert_eq!(table.windows.len(), 10);
        assert_eq!(table.windows[7].scores, vec![0.7, 1.0 - 0.7]);
        assert_eq!(table.windows[7].place, windows[7]);
        assert_eq!(read_scores(&path, Some(6)).unwrap().windows.len(), 0, "another recording has no rows");
        let script = "import sys, json, pyarrow.parquet as pq\n\
                      t = pq.read_table(sys.argv[1])\n\
                      print(json.dumps({'rows': t.num_rows, 'columns': t.column_names,\n\
                      'score': t.column('score_song unit A').to_pylist()[7], 'set': t.column('embedding_set_id').to_pylist()[0]}))";
        let Ok(output) = std::process::Command::new("python3").arg("-c").arg(script).arg(&path).output() else {
            return;
        };
        if String::from_utf8_lossy(&output.stderr).contains("No module named 'pyarrow'") {
            eprintln!("pyarrow not installed: skipping the pyarrow check");
            return;
        }
        assert!(output.status.success(), "pyarrow: {}", String::from_utf8_lossy(&output.stderr));
        let read: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(read["rows"], 10);
        assert_eq!(
            read["columns"],
            serde_json::json!([
                "embedding_set_id",
                "row_index",
                "audio_file_id",
                "start_seconds",
                "end_seconds",
                "score_song unit A",
                "score_grunt"
            ])
        );
        assert_eq!(read["score"], 0.7);
        assert_eq!(read["set"], 2);
    }
}
