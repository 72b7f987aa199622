//! `humpback bench audio`: how fast the audio front end runs, as times-realtime on one core.
//!
//! For each file it measures three stages, each from a fresh open of the file:
//! - `decode`: symphonia decode + downmix to mono at the native rate;
//! - `decode+resample`: the above plus rubato resampling to the target rate (default 32 kHz);
//! - `decode+resample+logmel`: the full streaming path, [`WindowStream`] cut into 5 s windows and
//!   a 128 x 128 log-mel per window.
//!
//! Everything runs on the calling thread. `--stream-only` runs the full path once on one file and
//! nothing else, for measuring peak memory with `/usr/bin/time -v`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

// `crate::audio` is the library module once this file is `crate::cli::bench_audio`; in the audio
// branch's temporary src/main.rs it resolves to the `use humpback::audio` there.
use crate::audio::{
    probe, DecodedAudio, LogMelConfig, LogMelExtractor, LogMelWindowStream, StreamingResampler, WindowConfig,
    WindowStream,
};

#[derive(clap::Args, Debug, Clone)]
pub struct BenchAudioArgs {
    /// Audio files (wav, mp3, flac) to benchmark.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,

    /// Rate to resample to, in Hz.
    #[arg(long, default_value_t = 32_000)]
    pub target_sample_rate: u32,

    /// Repeat each measurement this many times and report the fastest.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,

    /// Run only the full streaming path (decode, resample, windows, log-mel) once on each file,
    /// printing nothing but a summary; use it under `/usr/bin/time -v` to read peak memory.
    #[arg(long)]
    pub stream_only: bool,
}

/// One measurement.
#[derive(Debug, Clone)]
struct StageResult {
    stage: &'static str,
    audio_seconds: f64,
    wall_seconds: f64,
}

impl StageResult {
    fn times_realtime(&self) -> f64 {
        self.audio_seconds / self.wall_seconds.max(1e-9)
    }
}

fn bench_decode(path: &std::path::Path) -> anyhow::Result<StageResult> {
    let started = Instant::now();
    let mut decoded = DecodedAudio::open(path)?;
    let mut checksum = 0.0f64;
    while let Some(chunk) = decoded.next_chunk()? {
        checksum += f64::from(chunk.first().copied().unwrap_or(0.0));
    }
    std::hint::black_box(checksum);
    Ok(StageResult {
        stage: "decode",
        audio_seconds: decoded.frames_decoded() as f64 / f64::from(decoded.sample_rate()),
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

fn bench_decode_resample(path: &std::path::Path, target_sample_rate: u32) -> anyhow::Result<StageResult> {
    let started = Instant::now();
    let mut decoded = DecodedAudio::open(path)?;
    let mut resampler = StreamingResampler::new(decoded.sample_rate(), target_sample_rate)?;
    let mut output = Vec::new();
    let mut produced = 0u64;
    while let Some(chunk) = decoded.next_chunk()? {
        output.clear();
        resampler.process(chunk, &mut output)?;
        produced += output.len() as u64;
    }
    output.clear();
    resampler.finish(&mut output)?;
    produced += output.len() as u64;
    std::hint::black_box(produced);
    Ok(StageResult {
        stage: "decode+resample",
        audio_seconds: decoded.frames_decoded() as f64 / f64::from(decoded.sample_rate()),
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

fn bench_full_stream(path: &std::path::Path, target_sample_rate: u32) -> anyhow::Result<(StageResult, u64)> {
    let started = Instant::now();
    let windows = WindowStream::open(path, target_sample_rate, &WindowConfig::default())?;
    let extractor = LogMelExtractor::new(target_sample_rate, &LogMelConfig::default())?;
    let mut stream = LogMelWindowStream::new(windows, extractor)?;
    let mut window_count = 0u64;
    let mut checksum = 0.0f64;
    for feature in stream.by_ref() {
        let feature = feature?;
        window_count += 1;
        checksum += f64::from(feature.log_mel.values[0]);
    }
    std::hint::black_box(checksum);
    let audio_seconds = stream
        .windows()
        .final_plan()
        .map(|plan| plan.total_samples as f64 / f64::from(target_sample_rate))
        .unwrap_or(0.0);
    for warning in stream.windows().warnings() {
        eprintln!("warning: {}: {}", path.display(), warning.message());
    }
    Ok((
        StageResult { stage: "decode+resample+logmel", audio_seconds, wall_seconds: started.elapsed().as_secs_f64() },
        window_count,
    ))
}

fn fastest(repeat: usize, mut measure: impl FnMut() -> anyhow::Result<StageResult>) -> anyhow::Result<StageResult> {
    let mut best: Option<StageResult> = None;
    for _ in 0..repeat.max(1) {
        let result = measure()?;
        if best.as_ref().is_none_or(|current| result.wall_seconds < current.wall_seconds) {
            best = Some(result);
        }
    }
    best.context("no measurement was taken")
}

/// Machine-readable line: `RESULT <implementation> <stage> <file> <audio_s> <wall_s> <x_realtime>`.
fn print_result(path: &std::path::Path, result: &StageResult) {
    println!(
        "RESULT rust {} {} {:.3} {:.4} {:.1}",
        result.stage,
        path.display(),
        result.audio_seconds,
        result.wall_seconds,
        result.times_realtime()
    );
}

pub fn run(args: BenchAudioArgs) -> anyhow::Result<()> {
    for path in &args.files {
        let probed = probe(path).with_context(|| format!("probing {}", path.display()))?;
        eprintln!(
            "{}: {} {} hz, {} channel(s), {:.1} s",
            path.display(),
            probed.codec,
            probed.sample_rate,
            probed.channels,
            probed.duration_seconds
        );
        if args.stream_only {
            let (result, windows) = bench_full_stream(path, args.target_sample_rate)?;
            eprintln!(
                "streamed {windows} windows ({:.1} s of audio) in {:.2} s, {:.0}x realtime",
                result.audio_seconds,
                result.wall_seconds,
                result.times_realtime()
            );
            print_result(path, &result);
            continue;
        }
        let decode = fastest(args.repeat, || bench_decode(path))?;
        print_result(path, &decode);
        let resample = fastest(args.repeat, || bench_decode_resample(path, args.target_sample_rate))?;
        print_result(path, &resample);
        let full = fastest(args.repeat, || bench_full_stream(path, args.target_sample_rate).map(|(result, _)| result))?;
        print_result(path, &full);
    }
    Ok(())
}
