//! The encoding pipeline for one file: decode -> resample -> windows -> (log-mel) -> batched
//! inference -> incremental Parquet. Streaming: at most one batch of windows is in memory.

use std::path::Path;

use super::config::ResolvedEncoding;
use crate::artifacts::embeddings_parquet::{EmbeddingRow, EmbeddingSetWriter};
use crate::artifacts::ArtifactError;
use crate::audio::{AudioError, LogMelExtractor, WindowStream};
use crate::model::{EmbeddingModel, ModelError};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("the model returned {found} embeddings for {expected} windows")]
    WrongBatch { expected: usize, found: usize },
}

/// What the caller wants after each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proceed {
    Continue,
    /// Stop now: the temporary file is removed and nothing is promoted.
    Stop,
}

/// How an encoding ended.
#[derive(Debug, Clone, PartialEq)]
pub enum EncodeOutcome {
    /// The Parquet file was promoted with this many rows.
    Promoted { rows: u64, warnings: Vec<String> },
    /// The file produced no windows (short file under the `skip` policy): nothing was written.
    NoWindows { warnings: Vec<String> },
    /// The observer asked to stop.
    Stopped,
}

/// Encodes `audio_path` into `final_path` (through its `.tmp.parquet` sibling).
/// `after_batch(windows_done, windows_planned)` is called after every batch.
pub fn encode_file(
    audio_path: &Path,
    encoding: &ResolvedEncoding,
    model: &mut dyn EmbeddingModel,
    final_path: &Path,
    metadata: Vec<(String, String)>,
    batch_size: usize,
    after_batch: &mut dyn FnMut(u64, Option<u64>) -> Proceed,
) -> Result<EncodeOutcome, PipelineError> {
    let mut windows = WindowStream::open(audio_path, encoding.target_sample_rate, &encoding.window)?;
    let planned = windows.planned_window_count();
    let extractor = match &encoding.features.log_mel {
        Some(config) => Some(LogMelExtractor::new(encoding.target_sample_rate, config)?),
        None => None,
    };
    let window_seconds = encoding.window.window_seconds;
    let mut writer: Option<EmbeddingSetWriter> = None;
    let mut done = 0u64;
    let batch_size = batch_size.max(1);
    loop {
        let mut batch_rows: Vec<EmbeddingRow> = Vec::with_capacity(batch_size);
        let mut inputs: Vec<Vec<f32>> = Vec::with_capacity(batch_size);
        for window in windows.by_ref().take(batch_size) {
            let window = window?;
            let input = match &extractor {
                Some(extractor) => extractor.extract(&window.samples).values,
                None => window.samples,
            };
            inputs.push(input);
            batch_rows.push(EmbeddingRow {
                row_index: window.index,
                start_seconds: window.start_seconds,
                end_seconds: window.start_seconds + window_seconds,
                padded: window.padded,
                overlapped: window.overlapped,
                embedding: Vec::new(),
            });
        }
        if inputs.is_empty() {
            break;
        }
        let views: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
        let embeddings = model.embed_batch(&views)?;
        if embeddings.len() != batch_rows.len() {
            return Err(PipelineError::WrongBatch { expected: batch_rows.len(), found: embeddings.len() });
        }
        for (row, embedding) in batch_rows.iter_mut().zip(embeddings) {
            row.embedding = embedding;
        }
        if writer.is_none() {
            writer = Some(EmbeddingSetWriter::create(final_path, encoding.vector_dim as usize, metadata.clone())?);
        }
        if let Some(writer) = writer.as_mut() {
            writer.write_rows(&batch_rows)?;
        }
        done += batch_rows.len() as u64;
        if after_batch(done, planned) == Proceed::Stop {
            if let Some(writer) = writer.take() {
                writer.abandon()?;
            }
            return Ok(EncodeOutcome::Stopped);
        }
    }
    let warnings: Vec<String> = windows.warnings().iter().map(|warning| warning.message()).collect();
    match writer {
        Some(writer) => {
            let rows = writer.finish_and_promote()?;
            Ok(EncodeOutcome::Promoted { rows, warnings })
        }
        None => Ok(EncodeOutcome::NoWindows { warnings }),
    }
}
