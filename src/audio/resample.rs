//! Streaming, band-limited sample-rate conversion with rubato's synchronous `Fft` resampler.
//!
//! The stream is aligned (rubato's startup delay is dropped) and exactly
//! `round(input_samples * output_rate / input_rate)` samples long once [`StreamingResampler::finish`]
//! has flushed the tail. Same-rate input passes through untouched.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler, WindowFunction};

use super::error::AudioError;

/// Input frames handed to rubato per call.
const INPUT_CHUNK_FRAMES: usize = 8192;
/// Wanted FFT block size on the input side. Larger blocks put the anti-aliasing cutoff closer to
/// Nyquist (about 0.95 x the output Nyquist at 44.1 -> 32 kHz) at the cost of a longer delay,
/// which we trim anyway.
const WANTED_FFT_BLOCK_FRAMES: usize = 2048;

/// Exact number of output samples for `input_samples` at `input_rate` converted to `output_rate`:
/// `round(input_samples * output_rate / input_rate)`, halves rounded up, in integer arithmetic.
pub fn resampled_length(input_samples: u64, input_rate: u32, output_rate: u32) -> u64 {
    if input_rate == 0 {
        return 0;
    }
    let numerator = u128::from(input_samples) * u128::from(output_rate) * 2 + u128::from(input_rate);
    let length = numerator / (u128::from(input_rate) * 2);
    u64::try_from(length).unwrap_or(u64::MAX)
}

/// Mono streaming resampler: push any number of samples, get aligned output, flush at the end.
pub struct StreamingResampler {
    input_rate: u32,
    output_rate: u32,
    engine: Option<Fft<f32>>,
    pending_input: Vec<f32>,
    engine_output: Vec<f32>,
    delay_frames_left_to_drop: usize,
    input_samples_seen: u64,
    output_samples_emitted: u64,
    finished: bool,
}

impl StreamingResampler {
    /// A resampler from `input_rate` to `output_rate` Hz. Equal rates give a pass-through.
    pub fn new(input_rate: u32, output_rate: u32) -> Result<Self, AudioError> {
        let construction_error = |reason: String| AudioError::Resampler {
            input_rate,
            output_rate,
            reason,
        };
        if input_rate == 0 || output_rate == 0 {
            return Err(construction_error("sample rates must be positive".to_string()));
        }
        let engine = if input_rate == output_rate {
            None
        } else {
            let sub_chunks = (INPUT_CHUNK_FRAMES / WANTED_FFT_BLOCK_FRAMES).max(1);
            let engine = Fft::<f32>::new_custom(
                input_rate as usize,
                output_rate as usize,
                INPUT_CHUNK_FRAMES,
                sub_chunks,
                1,
                WindowFunction::BlackmanHarris2,
                FixedSync::Input,
            )
            .map_err(|error| construction_error(error.to_string()))?;
            Some(engine)
        };
        let delay_frames_left_to_drop = engine.as_ref().map(|engine| engine.output_delay()).unwrap_or(0);
        let engine_output_len = engine.as_ref().map(|engine| engine.output_frames_max()).unwrap_or(0);
        Ok(StreamingResampler {
            input_rate,
            output_rate,
            engine,
            pending_input: Vec::new(),
            engine_output: vec![0.0; engine_output_len],
            delay_frames_left_to_drop,
            input_samples_seen: 0,
            output_samples_emitted: 0,
            finished: false,
        })
    }

    /// Input rate in Hz.
    pub fn input_rate(&self) -> u32 {
        self.input_rate
    }

    /// Output rate in Hz.
    pub fn output_rate(&self) -> u32 {
        self.output_rate
    }

    /// Anti-aliasing cutoff in Hz (the output Nyquist for a pass-through).
    pub fn cutoff_hz(&self) -> f64 {
        match &self.engine {
            Some(engine) => f64::from(engine.cutoff()) * f64::from(self.input_rate) / 2.0,
            None => f64::from(self.output_rate) / 2.0,
        }
    }

    /// Feed `input`; resampled samples are appended to `output`.
    pub fn process(&mut self, input: &[f32], output: &mut Vec<f32>) -> Result<(), AudioError> {
        self.input_samples_seen += input.len() as u64;
        if self.engine.is_none() {
            output.extend_from_slice(input);
            self.output_samples_emitted += input.len() as u64;
            return Ok(());
        }
        self.pending_input.extend_from_slice(input);
        let mut consumed = 0;
        loop {
            let needed = match &self.engine {
                Some(engine) => engine.input_frames_next(),
                None => break,
            };
            if self.pending_input.len() - consumed < needed {
                break;
            }
            let (used, _) = self.run_engine(consumed, needed, None, output)?;
            consumed += used;
        }
        self.pending_input.drain(..consumed);
        Ok(())
    }

    /// Flush the tail. After this the total output is exactly
    /// [`resampled_length`]`(input seen, input_rate, output_rate)`.
    pub fn finish(&mut self, output: &mut Vec<f32>) -> Result<(), AudioError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let expected_total = resampled_length(self.input_samples_seen, self.input_rate, self.output_rate);
        if self.engine.is_none() {
            return Ok(());
        }
        let remaining = self.pending_input.len();
        let output_start = output.len();
        if remaining > 0 {
            self.run_engine(0, remaining, Some(remaining), output)?;
            self.pending_input.clear();
        }
        // Pump silence until the delayed tail has come out.
        let mut guard = 0;
        while self.output_samples_emitted < expected_total {
            self.run_engine(0, 0, Some(0), output)?;
            guard += 1;
            if guard > 1_000 {
                return Err(AudioError::Resampler {
                    input_rate: self.input_rate,
                    output_rate: self.output_rate,
                    reason: "the resampler did not flush its tail".to_string(),
                });
            }
        }
        let surplus = (self.output_samples_emitted - expected_total) as usize;
        let keep = output.len().saturating_sub(surplus).max(output_start);
        output.truncate(keep);
        self.output_samples_emitted = expected_total;
        Ok(())
    }

    /// One call into rubato on `pending_input[offset..offset + frames]` (zero-padded to the
    /// chunk size when `partial_len` is set). Returns (input frames used, output frames kept).
    fn run_engine(
        &mut self,
        offset: usize,
        frames: usize,
        partial_len: Option<usize>,
        output: &mut Vec<f32>,
    ) -> Result<(usize, usize), AudioError> {
        let (input_rate, output_rate) = (self.input_rate, self.output_rate);
        let error = |reason: String| AudioError::Resampler {
            input_rate,
            output_rate,
            reason,
        };
        let Some(engine) = self.engine.as_mut() else {
            return Ok((0, 0));
        };
        let input_slice = &self.pending_input[offset..offset + frames];
        let input_adapter = InterleavedSlice::new(input_slice, 1, frames).map_err(|e| error(e.to_string()))?;
        let capacity = self.engine_output.len();
        let mut output_adapter =
            InterleavedSlice::new_mut(&mut self.engine_output, 1, capacity).map_err(|e| error(e.to_string()))?;
        let indexing = Indexing {
            input_offset: 0,
            output_offset: 0,
            partial_len,
            active_channels_mask: None,
        };
        let (used, produced) = engine
            .process_into_buffer(&input_adapter, &mut output_adapter, Some(&indexing))
            .map_err(|e| error(e.to_string()))?;
        let drop = self.delay_frames_left_to_drop.min(produced);
        self.delay_frames_left_to_drop -= drop;
        output.extend_from_slice(&self.engine_output[drop..produced]);
        let kept = produced - drop;
        self.output_samples_emitted += kept as u64;
        Ok((used, kept))
    }
}

/// Resample a whole in-memory signal (convenience for tests and short clips).
pub fn resample_all(input: &[f32], input_rate: u32, output_rate: u32) -> Result<Vec<f32>, AudioError> {
    let mut resampler = StreamingResampler::new(input_rate, output_rate)?;
    let mut output = Vec::with_capacity(resampled_length(input.len() as u64, input_rate, output_rate) as usize);
    resampler.process(input, &mut output)?;
    resampler.finish(&mut output)?;
    Ok(output)
}
