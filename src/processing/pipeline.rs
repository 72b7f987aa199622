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
    #[error("{start_seconds} s is not inside the recording ({duration_seconds} s long)")]
    OutsideRecording { start_seconds: f64, duration_seconds: f64 },
}

/// What the model is given for one window: its log-mel spectrogram, or the samples themselves.
fn model_input(extractor: Option<&LogMelExtractor>, samples: Vec<f32>) -> Vec<f32> {
    match extractor {
        Some(extractor) => extractor.extract(&samples).values,
        None => samples,
    }
}

fn extractor_for(encoding: &ResolvedEncoding) -> Result<Option<LogMelExtractor>, PipelineError> {
    Ok(match &encoding.features.log_mel {
        Some(config) => Some(LogMelExtractor::new(encoding.target_sample_rate, config)?),
        None => None,
    })
}

fn embed_inputs(model: &mut dyn EmbeddingModel, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, PipelineError> {
    let views: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let embeddings = model.embed_batch(&views)?;
    if embeddings.len() != inputs.len() {
        return Err(PipelineError::WrongBatch { expected: inputs.len(), found: embeddings.len() });
    }
    Ok(embeddings)
}

/// The embeddings of the first `max_windows` windows of a file, cut exactly as [`encode_file`]
/// cuts them (for a search by an uploaded clip). Nothing is written.
pub fn embed_file_windows(
    audio_path: &Path,
    encoding: &ResolvedEncoding,
    model: &mut dyn EmbeddingModel,
    batch_size: usize,
    max_windows: usize,
) -> Result<Vec<Vec<f32>>, PipelineError> {
    let windows = WindowStream::open(audio_path, encoding.target_sample_rate, &encoding.window)?;
    let extractor = extractor_for(encoding)?;
    let mut embeddings = Vec::new();
    let mut inputs = Vec::new();
    for window in windows.take(max_windows) {
        inputs.push(model_input(extractor.as_ref(), window?.samples));
        if inputs.len() >= batch_size.max(1) {
            embeddings.extend(embed_inputs(model, &inputs)?);
            inputs.clear();
        }
    }
    if !inputs.is_empty() {
        embeddings.extend(embed_inputs(model, &inputs)?);
    }
    Ok(embeddings)
}

/// Audio decoded on each side of a window embedded on its own, so that resampling sees the
/// same neighbourhood it sees when the whole file is streamed.
const RESAMPLING_MARGIN_SECONDS: f64 = 0.5;

/// The embedding of the one window starting at `start_seconds` of a recording (moved back to
/// end at the end of the recording, as processing moves its last window), and the start used.
pub fn embed_window_at(
    audio_path: &Path,
    encoding: &ResolvedEncoding,
    model: &mut dyn EmbeddingModel,
    start_seconds: f64,
) -> Result<(Vec<f32>, f64), PipelineError> {
    let probe = crate::audio::probe(audio_path)?;
    let duration_seconds = if probe.duration_seconds > 0.0 { probe.duration_seconds } else { f64::INFINITY };
    if !start_seconds.is_finite() || start_seconds < 0.0 || start_seconds >= duration_seconds {
        return Err(PipelineError::OutsideRecording { start_seconds, duration_seconds });
    }
    let rate = encoding.target_sample_rate;
    let window_samples = encoding.window.samples_at(rate)?.window as usize;
    let window_seconds = window_samples as f64 / f64::from(rate);
    let start = start_seconds.min(duration_seconds - window_seconds).max(0.0);
    let from = (start - RESAMPLING_MARGIN_SECONDS).max(0.0);
    let native = crate::audio::read_samples_range(
        audio_path,
        from,
        (start - from) + window_seconds + RESAMPLING_MARGIN_SECONDS,
    )?;
    let resampled = crate::audio::resample_all(&native, probe.sample_rate, rate)?;
    let offset = ((start - from) * f64::from(rate)).round() as usize;
    let mut samples: Vec<f32> = resampled.iter().skip(offset).take(window_samples).copied().collect();
    samples.resize(window_samples, 0.0);
    let extractor = extractor_for(encoding)?;
    let mut embeddings = embed_inputs(model, &[model_input(extractor.as_ref(), samples)])?;
    let embedding = embeddings.pop().ok_or(PipelineError::WrongBatch { expected: 1, found: 0 })?;
    Ok((embedding, start))
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
    let extractor = extractor_for(encoding)?;
    let window_seconds = encoding.window.window_seconds;
    let mut writer: Option<EmbeddingSetWriter> = None;
    let mut done = 0u64;
    let batch_size = batch_size.max(1);
    loop {
        let mut batch_rows: Vec<EmbeddingRow> = Vec::with_capacity(batch_size);
        let mut inputs: Vec<Vec<f32>> = Vec::with_capacity(batch_size);
        for window in windows.by_ref().take(batch_size) {
            let window = window?;
            inputs.push(model_input(extractor.as_ref(), window.samples));
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
        let embeddings = embed_inputs(model, &inputs)?;
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
