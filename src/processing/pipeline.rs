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
    #[error("a stage of the pipeline ended without a result")]
    StageLost,
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

/// The model inputs of the first `max_windows` windows of a file, cut and transformed exactly
/// as [`encode_file`] does, all in memory (for benchmarks that time the model alone).
pub fn model_inputs(
    audio_path: &Path,
    encoding: &ResolvedEncoding,
    max_windows: usize,
) -> Result<Vec<Vec<f32>>, PipelineError> {
    let windows = WindowStream::open(audio_path, encoding.target_sample_rate, &encoding.window)?;
    let extractor = extractor_for(encoding)?;
    windows.take(max_windows).map(|window| Ok(model_input(extractor.as_ref(), window?.samples))).collect()
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

/// Batches waiting between two stages of [`encode_file`]: enough that the next stage never
/// waits for the previous one while it has work, few enough that memory stays a few batches.
const BATCHES_IN_FLIGHT: usize = 2;

/// One batch on its way to the model: the rows (embeddings still empty) and what the model is
/// given for each (samples, or their log-mel spectrogram once the features stage has run).
struct PreparedBatch {
    rows: Vec<EmbeddingRow>,
    inputs: Vec<Vec<f32>>,
}

/// What a front-end stage hands on.
enum FrontEnd {
    Batch(PreparedBatch),
    /// The file is used up; the decoder's and windower's warnings.
    Finished {
        warnings: Vec<String>,
    },
    Failed(PipelineError),
}

/// Stage 1 (its own thread): decode, resample and cut windows, in batches.
fn cut_windows(
    mut windows: WindowStream,
    window_seconds: f64,
    batch_size: usize,
    next: &std::sync::mpsc::SyncSender<FrontEnd>,
) {
    loop {
        let mut batch = PreparedBatch { rows: Vec::with_capacity(batch_size), inputs: Vec::with_capacity(batch_size) };
        for window in windows.by_ref().take(batch_size) {
            let window = match window {
                Ok(window) => window,
                Err(error) => {
                    let _ = next.send(FrontEnd::Failed(error.into()));
                    return;
                }
            };
            batch.rows.push(EmbeddingRow {
                row_index: window.index,
                start_seconds: window.start_seconds,
                end_seconds: window.start_seconds + window_seconds,
                padded: window.padded,
                overlapped: window.overlapped,
                embedding: Vec::new(),
            });
            batch.inputs.push(window.samples);
        }
        if batch.inputs.is_empty() {
            let warnings = windows.warnings().iter().map(|warning| warning.message()).collect();
            let _ = next.send(FrontEnd::Finished { warnings });
            return;
        }
        // A closed channel means the model stage stopped: nothing more is wanted.
        if next.send(FrontEnd::Batch(batch)).is_err() {
            return;
        }
    }
}

/// Stage 2 (its own thread, only for spectrogram models): each window's log-mel spectrogram.
fn extract_features(
    extractor: &LogMelExtractor,
    previous: std::sync::mpsc::Receiver<FrontEnd>,
    next: &std::sync::mpsc::SyncSender<FrontEnd>,
) {
    for message in previous {
        let message = match message {
            FrontEnd::Batch(mut batch) => {
                for input in &mut batch.inputs {
                    *input = extractor.extract(input).values;
                }
                FrontEnd::Batch(batch)
            }
            other => other,
        };
        if next.send(message).is_err() {
            return;
        }
    }
}

/// Encodes `audio_path` into `final_path` (through its `.tmp.parquet` sibling).
/// `after_batch(windows_done, windows_planned)` is called after every batch.
///
/// The stages run on their own threads, joined by bounded channels ([`BATCHES_IN_FLIGHT`]):
/// decode + resample + windows, then log-mel features (spectrogram models), then inference
/// and the Parquet writer on the calling thread. While the model runs a batch, the next ones
/// are being decoded and transformed; a stage with nothing to do waits without spinning. The
/// result is the same as running the stages one after another.
pub fn encode_file(
    audio_path: &Path,
    encoding: &ResolvedEncoding,
    model: &mut dyn EmbeddingModel,
    final_path: &Path,
    metadata: Vec<(String, String)>,
    batch_size: usize,
    after_batch: &mut dyn FnMut(u64, Option<u64>) -> Proceed,
) -> Result<EncodeOutcome, PipelineError> {
    let windows = WindowStream::open(audio_path, encoding.target_sample_rate, &encoding.window)?;
    let planned = windows.planned_window_count();
    let extractor = extractor_for(encoding)?;
    let window_seconds = encoding.window.window_seconds;
    let batch_size = batch_size.max(1);
    std::thread::scope(|scope| {
        let (cut_sender, cut_receiver) = std::sync::mpsc::sync_channel(BATCHES_IN_FLIGHT);
        scope.spawn(move || cut_windows(windows, window_seconds, batch_size, &cut_sender));
        let prepared = match extractor {
            Some(extractor) => {
                let (features_sender, features_receiver) = std::sync::mpsc::sync_channel(BATCHES_IN_FLIGHT);
                scope.spawn(move || extract_features(&extractor, cut_receiver, &features_sender));
                features_receiver
            }
            None => cut_receiver,
        };
        // Returning drops `prepared`, which ends the front-end threads before the scope joins them.
        run_model_stage(prepared, encoding, model, final_path, metadata, planned, after_batch)
    })
}

/// Stage 3 (the calling thread): inference, then the Parquet writer.
fn run_model_stage(
    prepared: std::sync::mpsc::Receiver<FrontEnd>,
    encoding: &ResolvedEncoding,
    model: &mut dyn EmbeddingModel,
    final_path: &Path,
    metadata: Vec<(String, String)>,
    planned: Option<u64>,
    after_batch: &mut dyn FnMut(u64, Option<u64>) -> Proceed,
) -> Result<EncodeOutcome, PipelineError> {
    let mut writer: Option<EmbeddingSetWriter> = None;
    let mut done = 0u64;
    let abandon = |writer: Option<EmbeddingSetWriter>| -> Result<(), PipelineError> {
        if let Some(writer) = writer {
            writer.abandon()?;
        }
        Ok(())
    };
    loop {
        let message = prepared.recv().unwrap_or_else(|_| FrontEnd::Failed(PipelineError::StageLost));
        let mut batch = match message {
            FrontEnd::Batch(batch) => batch,
            FrontEnd::Failed(error) => {
                abandon(writer)?;
                return Err(error);
            }
            FrontEnd::Finished { warnings } => {
                return match writer {
                    Some(writer) => {
                        let rows = writer.finish_and_promote()?;
                        Ok(EncodeOutcome::Promoted { rows, warnings })
                    }
                    None => Ok(EncodeOutcome::NoWindows { warnings }),
                };
            }
        };
        let embeddings = match embed_inputs(model, &batch.inputs) {
            Ok(embeddings) => embeddings,
            Err(error) => {
                abandon(writer)?;
                return Err(error);
            }
        };
        for (row, embedding) in batch.rows.iter_mut().zip(embeddings) {
            row.embedding = embedding;
        }
        if writer.is_none() {
            writer = Some(EmbeddingSetWriter::create(final_path, encoding.vector_dim as usize, metadata.clone())?);
        }
        if let Some(writer) = writer.as_mut() {
            writer.write_rows(&batch.rows)?;
        }
        done += batch.rows.len() as u64;
        if after_batch(done, planned) == Proceed::Stop {
            abandon(writer)?;
            return Ok(EncodeOutcome::Stopped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BuiltinLogMelStatsModel, FakeModel, FakeModelConfig};
    use crate::processing::config::{resolve, EncodingRequest};

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/audio").join(name)
    }

    fn written_vectors(path: &Path) -> (Vec<u64>, Vec<f32>) {
        let mut rows = Vec::new();
        let mut vectors = Vec::new();
        for batch in crate::artifacts::embeddings_parquet::read_batches(path, 1024).unwrap() {
            let batch = batch.unwrap();
            rows.extend(batch.row_index);
            vectors.extend(batch.vectors);
        }
        (rows, vectors)
    }

    /// Encodes a file with the staged pipeline and embeds it window after window on one
    /// thread: the same rows in the same order, the same vectors to the bit.
    fn staged_equals_sequential(model: &mut dyn EmbeddingModel, audio: &str, batch_size: usize) {
        let encoding = resolve(&EncodingRequest::default(), model.info()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let final_path = dir.path().join("set.parquet");
        let mut batches_seen = 0;
        let outcome = encode_file(&fixture(audio), &encoding, model, &final_path, vec![], batch_size, &mut |_, _| {
            batches_seen += 1;
            Proceed::Continue
        })
        .unwrap();
        let EncodeOutcome::Promoted { rows, .. } = outcome else { panic!("{outcome:?}") };
        let sequential = embed_file_windows(&fixture(audio), &encoding, model, 1, usize::MAX).unwrap();
        assert_eq!(rows as usize, sequential.len());
        assert!(batches_seen >= 2, "several batches went through the stages ({rows} windows)");
        let (row_indices, vectors) = written_vectors(&final_path);
        assert_eq!(row_indices, (0..rows).collect::<Vec<_>>());
        assert_eq!(vectors, sequential.concat());
    }

    #[test]
    fn the_staged_pipeline_writes_what_the_stages_give_one_after_another() {
        // A spectrogram model: decode, features and inference each on their own thread.
        staged_equals_sequential(&mut BuiltinLogMelStatsModel::new(), "mp3_cbr_stereo_44k.mp3", 1);
        // A waveform model: no features stage.
        let mut fake = FakeModel::new(&FakeModelConfig::default()).unwrap();
        staged_equals_sequential(&mut fake, "flac16_mono_16k.flac", 2);
    }

    #[test]
    fn stopping_after_the_first_batch_ends_every_stage_and_leaves_no_file() {
        let mut model = BuiltinLogMelStatsModel::new();
        let encoding = resolve(&EncodingRequest::default(), model.info()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let final_path = dir.path().join("set.parquet");
        let outcome = encode_file(
            &fixture("mp3_cbr_stereo_44k.mp3"),
            &encoding,
            &mut model,
            &final_path,
            vec![],
            1,
            &mut |_, _| Proceed::Stop,
        )
        .unwrap();
        assert_eq!(outcome, EncodeOutcome::Stopped);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no file, not even a temporary one");
    }
}
