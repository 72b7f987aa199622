//! Decoding with symphonia: probing a file's header, and a chunked decoder that yields mono f32
//! samples at the file's native rate (channels averaged). Plain PCM packets are converted here from
//! their bytes (`PlainPcm`), every other codec by symphonia.
//!
//! Nothing here holds more than one decoded packet in memory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use symphonia::core::codecs::audio::well_known as codec_ids;
use symphonia::core::codecs::audio::{
    AudioCodecId, AudioCodecParameters, AudioDecoder, AudioDecoderOptions, CODEC_ID_NULL_AUDIO,
};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, SeekMode, SeekTo, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::units::Timestamp;

use super::error::{AudioError, DecodeWarning};

/// Lowest sample rate we accept. Anything lower is almost certainly a damaged header.
pub const MINIMUM_SAMPLE_RATE: u32 = 1_000;
/// Highest sample rate we accept (1 MHz; some bat and porpoise recorders reach 500 kHz).
pub const MAXIMUM_SAMPLE_RATE: u32 = 1_000_000;

/// At most this many individual "skipped a damaged packet" warnings are kept per file; later ones
/// are counted into the last warning's text instead of growing the list without bound.
const MAXIMUM_SKIPPED_PACKET_WARNINGS: usize = 20;

/// What a file's header says, read without decoding the audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioProbe {
    /// Length in seconds: `frame_count / sample_rate` when the frame count is known, else 0.
    pub duration_seconds: f64,
    /// Native sample rate in Hz.
    pub sample_rate: u32,
    /// Number of channels in the file (they are averaged to mono when decoding).
    pub channels: u16,
    /// Short lowercase codec name: `pcm_s16le`, `pcm_s24le`, `pcm_s32le`, `pcm_u8`, `pcm_f32le`,
    /// `pcm_f64le`, `pcm_alaw`, `pcm_mulaw`, `mp3`, `flac`, ...
    pub codec: String,
    /// Suggested file extension for the container: `wav`, `mp3` or `flac`.
    pub suggested_extension: String,
    /// Number of frames (samples per channel) when the container states it.
    ///
    /// Exact for WAV and for FLAC files whose STREAMINFO has a total. For MP3 it comes from the
    /// Xing/LAME/VBRI header when there is one (exact, encoder delay and padding removed);
    /// without such a header symphonia estimates it from the file size and the first frame's
    /// bitrate, which is close for CBR and can be off by several percent for VBR. See
    /// `frame_count_is_estimate`.
    pub frame_count: Option<u64>,
    /// True when `frame_count` may be an estimate (MP3), false when the container states it exactly.
    pub frame_count_is_estimate: bool,
    /// Bits per sample of the encoded data, when meaningful (PCM and FLAC).
    pub bits_per_sample: Option<u32>,
}

/// Short lowercase name of a codec.
pub fn codec_short_name(codec: AudioCodecId) -> String {
    let name = match codec {
        codec_ids::CODEC_ID_PCM_S8 => "pcm_s8",
        codec_ids::CODEC_ID_PCM_U8 => "pcm_u8",
        codec_ids::CODEC_ID_PCM_S16LE => "pcm_s16le",
        codec_ids::CODEC_ID_PCM_S16BE => "pcm_s16be",
        codec_ids::CODEC_ID_PCM_S24LE => "pcm_s24le",
        codec_ids::CODEC_ID_PCM_S24BE => "pcm_s24be",
        codec_ids::CODEC_ID_PCM_S32LE => "pcm_s32le",
        codec_ids::CODEC_ID_PCM_S32BE => "pcm_s32be",
        codec_ids::CODEC_ID_PCM_U16LE => "pcm_u16le",
        codec_ids::CODEC_ID_PCM_U24LE => "pcm_u24le",
        codec_ids::CODEC_ID_PCM_U32LE => "pcm_u32le",
        codec_ids::CODEC_ID_PCM_F32LE => "pcm_f32le",
        codec_ids::CODEC_ID_PCM_F32BE => "pcm_f32be",
        codec_ids::CODEC_ID_PCM_F64LE => "pcm_f64le",
        codec_ids::CODEC_ID_PCM_F64BE => "pcm_f64be",
        codec_ids::CODEC_ID_PCM_ALAW => "pcm_alaw",
        codec_ids::CODEC_ID_PCM_MULAW => "pcm_mulaw",
        codec_ids::CODEC_ID_ADPCM_MS => "adpcm_ms",
        codec_ids::CODEC_ID_ADPCM_IMA_WAV => "adpcm_ima_wav",
        codec_ids::CODEC_ID_MP1 => "mp1",
        codec_ids::CODEC_ID_MP2 => "mp2",
        codec_ids::CODEC_ID_MP3 => "mp3",
        codec_ids::CODEC_ID_FLAC => "flac",
        codec_ids::CODEC_ID_VORBIS => "vorbis",
        codec_ids::CODEC_ID_OPUS => "opus",
        codec_ids::CODEC_ID_AAC => "aac",
        codec_ids::CODEC_ID_ALAC => "alac",
        other => return format!("unknown_codec_{other:?}").to_lowercase(),
    };
    name.to_string()
}

fn suggested_extension_for(format_short_name: &str, codec_name: &str) -> String {
    match (format_short_name, codec_name) {
        ("flac", _) | (_, "flac") => "flac",
        ("mp3", _) | (_, "mp3") => "mp3",
        _ => "wav",
    }
    .to_string()
}

/// A `File` that records how far the reader has read, so a decode warning can say roughly where
/// in the file a problem was found.
struct PositionTrackingFile {
    file: File,
    position: Arc<AtomicU64>,
    length: u64,
}

impl Read for PositionTrackingFile {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let count = self.file.read(buffer)?;
        self.position.fetch_add(count as u64, Ordering::Relaxed);
        Ok(count)
    }
}

impl Seek for PositionTrackingFile {
    fn seek(&mut self, target: SeekFrom) -> std::io::Result<u64> {
        let new_position = self.file.seek(target)?;
        self.position.store(new_position, Ordering::Relaxed);
        Ok(new_position)
    }
}

impl MediaSource for PositionTrackingFile {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        Some(self.length)
    }
}

/// An opened container with its audio track chosen and checked.
struct OpenedContainer {
    reader: Box<dyn FormatReader>,
    probe: AudioProbe,
    track_id: u32,
    bytes_read: Arc<AtomicU64>,
}

fn map_probe_error(path: &Path, error: SymphoniaError) -> AudioError {
    let path = path.to_path_buf();
    match error {
        SymphoniaError::Unsupported(reason) => AudioError::NotAudio { path, reason: reason.to_string() },
        SymphoniaError::IoError(source) if source.kind() == std::io::ErrorKind::UnexpectedEof => {
            AudioError::CorruptHeader { path, reason: "the file ends inside its header".to_string() }
        }
        SymphoniaError::IoError(source) => AudioError::Io { path, source },
        other => {
            let reason = other.to_string();
            if reason.contains("channel") {
                AudioError::ZeroChannels { path }
            } else {
                AudioError::CorruptHeader { path, reason }
            }
        }
    }
}

fn open_container(path: &Path) -> Result<OpenedContainer, AudioError> {
    let io_error = |source| AudioError::Io { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io_error)?;
    let length = file.metadata().map_err(io_error)?.len();
    if length == 0 {
        return Err(AudioError::EmptyFile { path: path.to_path_buf() });
    }
    let bytes_read = Arc::new(AtomicU64::new(0));
    let source = PositionTrackingFile { file, position: Arc::clone(&bytes_read), length };
    let stream = MediaSourceStream::new(Box::new(source), Default::default());
    let mut hint = Hint::new();
    if let Some(extension) = path.extension().and_then(|extension| extension.to_str()) {
        hint.with_extension(&extension.to_ascii_lowercase());
    }
    let reader = symphonia::default::get_probe()
        .probe(&hint, stream, FormatOptions::default(), MetadataOptions::default())
        .map_err(|error| map_probe_error(path, error))?;

    let track = reader.default_track(TrackType::Audio).ok_or_else(|| AudioError::NotAudio {
        path: path.to_path_buf(),
        reason: "the container has no audio track".to_string(),
    })?;
    let parameters = track.codec_params.as_ref().and_then(|parameters| parameters.audio()).ok_or_else(|| {
        AudioError::NotAudio { path: path.to_path_buf(), reason: "the audio track has no codec parameters".to_string() }
    })?;
    if parameters.codec == CODEC_ID_NULL_AUDIO {
        return Err(AudioError::UnsupportedCodec { path: path.to_path_buf(), codec: "unknown".to_string() });
    }
    let codec = codec_short_name(parameters.codec);
    let sample_rate =
        parameters.sample_rate.ok_or_else(|| AudioError::MissingSampleRate { path: path.to_path_buf() })?;
    check_sample_rate(path, sample_rate)?;
    let channels = parameters.channels.as_ref().map(|channels| channels.count()).unwrap_or(0);
    if channels == 0 {
        return Err(AudioError::ZeroChannels { path: path.to_path_buf() });
    }
    let channels = u16::try_from(channels).map_err(|_| AudioError::CorruptHeader {
        path: path.to_path_buf(),
        reason: format!("{channels} channels is not plausible"),
    })?;
    let frame_count = track.num_frames;
    let duration_seconds = frame_count.map(|frames| frames as f64 / f64::from(sample_rate)).unwrap_or(0.0);
    let format_name = reader.format_info().short_name;
    let probe = AudioProbe {
        duration_seconds,
        sample_rate,
        channels,
        suggested_extension: suggested_extension_for(format_name, &codec),
        frame_count_is_estimate: codec == "mp3",
        bits_per_sample: parameters.bits_per_coded_sample.or(parameters.bits_per_sample),
        codec,
        frame_count,
    };
    let track_id = track.id;
    Ok(OpenedContainer { reader, probe, track_id, bytes_read })
}

pub(crate) fn check_sample_rate(path: &Path, sample_rate: u32) -> Result<(), AudioError> {
    if !(MINIMUM_SAMPLE_RATE..=MAXIMUM_SAMPLE_RATE).contains(&sample_rate) {
        return Err(AudioError::AbsurdSampleRate {
            path: path.to_path_buf(),
            sample_rate: u64::from(sample_rate),
            minimum: MINIMUM_SAMPLE_RATE,
            maximum: MAXIMUM_SAMPLE_RATE,
        });
    }
    Ok(())
}

/// Read a file's header: duration, rate, channels, codec. Does not decode the audio.
pub fn probe(path: &Path) -> Result<AudioProbe, AudioError> {
    open_container(path).map(|container| container.probe)
}

/// A chunked decoder producing mono f32 samples at the file's native rate.
///
/// Damaged packets in the middle are replaced by the same duration of silence (so later audio
/// keeps its timing) and recorded as warnings; an unreadable or truncated tail ends decoding with
/// a warning. Only when nothing at all can be decoded is it an error.
pub struct DecodedAudio {
    path: PathBuf,
    reader: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    /// Set for the plain PCM layouts, whose packets are converted here instead of by `decoder`.
    plain_pcm: Option<PlainPcm>,
    track_id: u32,
    probe: AudioProbe,
    bytes_read: Arc<AtomicU64>,
    interleaved: Vec<f32>,
    mono: Vec<f32>,
    frames_decoded: u64,
    /// Frame index (native rate, from the start of the file) of the first sample of the next chunk.
    next_chunk_start_frame: u64,
    warnings: Vec<DecodeWarning>,
    skipped_packets: u64,
    finished: bool,
}

impl DecodedAudio {
    /// Open a file and prepare to decode it.
    pub fn open(path: &Path) -> Result<Self, AudioError> {
        let container = open_container(path)?;
        let track = container.reader.tracks().iter().find(|track| track.id == container.track_id).ok_or_else(|| {
            AudioError::NotAudio {
                path: path.to_path_buf(),
                reason: "the audio track disappeared after probing".to_string(),
            }
        })?;
        let parameters = track.codec_params.as_ref().and_then(|parameters| parameters.audio()).ok_or_else(|| {
            AudioError::NotAudio {
                path: path.to_path_buf(),
                reason: "the audio track has no codec parameters".to_string(),
            }
        })?;
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(parameters, &AudioDecoderOptions::default())
            .map_err(|error| match error {
                SymphoniaError::Unsupported(_) => {
                    AudioError::UnsupportedCodec { path: path.to_path_buf(), codec: container.probe.codec.clone() }
                }
                other => AudioError::CorruptHeader { path: path.to_path_buf(), reason: other.to_string() },
            })?;
        let plain_pcm = PlainPcm::for_parameters(parameters);
        Ok(DecodedAudio {
            path: path.to_path_buf(),
            reader: container.reader,
            decoder,
            plain_pcm,
            track_id: container.track_id,
            probe: container.probe,
            bytes_read: container.bytes_read,
            interleaved: Vec::new(),
            mono: Vec::new(),
            frames_decoded: 0,
            next_chunk_start_frame: 0,
            warnings: Vec::new(),
            skipped_packets: 0,
            finished: false,
        })
    }

    /// The header information.
    pub fn probe(&self) -> &AudioProbe {
        &self.probe
    }

    /// Native sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.probe.sample_rate
    }

    /// Warnings collected so far.
    pub fn warnings(&self) -> &[DecodeWarning] {
        &self.warnings
    }

    /// Mono frames handed out so far, including silence substituted for damaged packets.
    pub fn frames_decoded(&self) -> u64 {
        self.frames_decoded
    }

    /// Frame index (native rate, from the start of the file) where the next chunk returned by
    /// [`DecodedAudio::next_chunk`] will start. After a seek this is where decoding resumed, which
    /// may be before the requested frame.
    pub fn next_chunk_start_frame(&self) -> u64 {
        self.next_chunk_start_frame
    }

    fn seconds_decoded(&self) -> f64 {
        self.frames_decoded as f64 / f64::from(self.probe.sample_rate)
    }

    fn stop_with_warning(&mut self, reason: String) {
        self.finished = true;
        let warning = DecodeWarning {
            seconds_decoded: self.seconds_decoded(),
            byte_offset: Some(self.bytes_read.load(Ordering::Relaxed)),
            reason,
        };
        self.warnings.push(warning);
    }

    fn record_skipped_packet(&mut self, reason: &str, silence_frames: u64) {
        self.skipped_packets += 1;
        let text = format!(
            "a damaged packet was skipped and replaced by {silence_frames} samples of silence ({reason}); \
             {} damaged packet(s) so far",
            self.skipped_packets
        );
        let warning = DecodeWarning {
            seconds_decoded: self.seconds_decoded(),
            byte_offset: Some(self.bytes_read.load(Ordering::Relaxed)),
            reason: text,
        };
        if self.warnings.len() < MAXIMUM_SKIPPED_PACKET_WARNINGS {
            self.warnings.push(warning);
        } else if let Some(last) = self.warnings.last_mut() {
            *last = warning;
        }
    }

    /// At a clean end of stream: if the header announced clearly more audio than was decoded, the
    /// file was cut short (or damaged data was dropped), so say so.
    fn check_for_missing_tail(&mut self) {
        let Some(announced) = self.probe.frame_count else {
            return;
        };
        let tolerance = if self.probe.frame_count_is_estimate {
            // MP3 counts can be estimates: allow two frames or 1 %, whichever is more.
            (2 * 1_152).max(announced / 100)
        } else {
            0
        };
        if self.frames_decoded + tolerance < announced {
            let rate = f64::from(self.probe.sample_rate);
            let reason = format!(
                "the file ended after {:.3} s of the {:.3} s its header announces; it is probably truncated \
                 (a recording cut off mid-write) or had damaged data dropped; the audio before this point is usable",
                self.frames_decoded as f64 / rate,
                announced as f64 / rate
            );
            self.warnings.push(DecodeWarning {
                seconds_decoded: self.seconds_decoded(),
                byte_offset: Some(self.bytes_read.load(Ordering::Relaxed)),
                reason,
            });
        }
    }

    /// Seek so that the next chunk starts at or before `frame` (native rate). Returns the frame
    /// the next chunk will start at. Falls back to decoding from the start when the container
    /// cannot seek.
    pub fn seek_to_frame(&mut self, frame: u64) -> Result<u64, AudioError> {
        let timestamp = Timestamp::new(i64::try_from(frame).unwrap_or(i64::MAX));
        match self.reader.seek(SeekMode::Accurate, SeekTo::Timestamp { ts: timestamp, track_id: self.track_id }) {
            Ok(seeked) => {
                self.decoder.reset();
                let actual = u64::try_from(seeked.actual_ts.get()).unwrap_or(0);
                self.next_chunk_start_frame = actual;
                self.frames_decoded = actual;
                self.finished = false;
                Ok(actual)
            }
            Err(_) => Ok(self.next_chunk_start_frame),
        }
    }

    /// Decode the next packet. Returns `Ok(None)` at the end of the usable audio.
    pub fn next_chunk(&mut self) -> Result<Option<&[f32]>, AudioError> {
        loop {
            if self.finished {
                return Ok(None);
            }
            let packet = match self.reader.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) => {
                    self.finished = true;
                    self.check_for_missing_tail();
                    return Ok(None);
                }
                Err(SymphoniaError::IoError(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                    self.stop_with_warning(
                        "the file ends in the middle of a frame (truncated recording); \
                         the audio before this point is usable"
                            .to_string(),
                    );
                    return Ok(None);
                }
                Err(error) => {
                    if self.frames_decoded == 0 {
                        self.finished = true;
                        return Err(AudioError::DecodeFailed { path: self.path.clone(), reason: error.to_string() });
                    }
                    self.stop_with_warning(format!(
                        "the container could not be read further ({error}); the audio before this point is usable"
                    ));
                    return Ok(None);
                }
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let packet_start_frame = u64::try_from(packet.pts.get()).unwrap_or(0);
            if let Some(pcm) = self.plain_pcm {
                let output = if pcm.channels == 1 { &mut self.mono } else { &mut self.interleaved };
                pcm.decode_into(&packet.data, output);
                if output.is_empty() {
                    continue;
                }
                if pcm.channels > 1 {
                    downmix_to_mono(&self.interleaved, pcm.channels, &mut self.mono);
                }
                return self.hand_out_mono(packet_start_frame);
            }
            let silence_frames = packet.dur.get();
            let channel_count;
            match self.decoder.decode(&packet) {
                Ok(buffer) => {
                    if buffer.frames() == 0 {
                        continue;
                    }
                    channel_count = buffer.spec().channels().count();
                    buffer.copy_to_vec_interleaved::<f32>(&mut self.interleaved);
                }
                Err(SymphoniaError::DecodeError(reason)) => {
                    self.record_skipped_packet(reason, silence_frames);
                    self.mono.clear();
                    self.mono.resize(usize::try_from(silence_frames).unwrap_or(0), 0.0);
                    self.next_chunk_start_frame = packet_start_frame + silence_frames;
                    self.frames_decoded += silence_frames;
                    if self.mono.is_empty() {
                        continue;
                    }
                    return Ok(Some(&self.mono));
                }
                Err(SymphoniaError::ResetRequired) => {
                    self.decoder.reset();
                    continue;
                }
                Err(error) => {
                    if self.frames_decoded == 0 {
                        self.finished = true;
                        return Err(AudioError::DecodeFailed { path: self.path.clone(), reason: error.to_string() });
                    }
                    self.stop_with_warning(format!(
                        "decoding stopped ({error}); the audio before this point is usable"
                    ));
                    return Ok(None);
                }
            }
            if channel_count == 0 {
                return Err(AudioError::ZeroChannels { path: self.path.clone() });
            }
            downmix_to_mono(&self.interleaved, channel_count, &mut self.mono);
            return self.hand_out_mono(packet_start_frame);
        }
    }

    /// Checks the packet's mono samples, counts them and hands them out.
    fn hand_out_mono(&mut self, packet_start_frame: u64) -> Result<Option<&[f32]>, AudioError> {
        // A check without an early exit runs in vector registers (searching for the position
        // straight away took half the time of decoding a 16-bit WAV); the position is looked
        // for only when there is one.
        let all_finite = self.mono.iter().fold(true, |finite, sample| finite & sample.is_finite());
        let first_non_finite = if all_finite { None } else { self.mono.iter().position(|sample| !sample.is_finite()) };
        if let Some(position) = first_non_finite {
            let sample_index = self.frames_decoded + position as u64;
            self.finished = true;
            return Err(AudioError::NonFiniteSamples {
                path: self.path.clone(),
                seconds: sample_index as f64 / f64::from(self.probe.sample_rate),
                sample_index,
            });
        }
        self.frames_decoded += self.mono.len() as u64;
        self.next_chunk_start_frame = packet_start_frame + self.mono.len() as u64;
        Ok(Some(&self.mono))
    }

    /// Decodes PCM through symphonia's decoder as every other codec (the reference the plain
    /// PCM conversion is tested against).
    #[cfg(test)]
    pub(crate) fn decode_pcm_through_symphonia(&mut self) {
        self.plain_pcm = None;
    }

    #[cfg(test)]
    pub(crate) fn uses_plain_pcm(&self) -> bool {
        self.plain_pcm.is_some()
    }
}

/// A sample layout of plain PCM: little-endian, each sample filling its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlainPcmSample {
    U8,
    S16,
    S24,
    S32,
    F32,
    F64,
}

/// Plain PCM packets (what nearly every hydrophone WAV holds) converted to f32 straight from the
/// packet's bytes. symphonia's PCM decoder reads every sample through a per-sample callback
/// into its own buffer, which is then converted and copied again: about 3 ns a sample, 3 % of a
/// one-hour job's CPU with a Perch-sized model. The formulas are symphonia's
/// (`symphonia_core::audio::conv`), so the samples are the same to the bit (tested against its
/// decoder on random files of every layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PlainPcm {
    sample: PlainPcmSample,
    channels: usize,
}

impl PlainPcm {
    /// The plain layout of these parameters, or `None` for every other codec and for samples
    /// coded narrower than they decode (symphonia shifts those; none of our containers
    /// produce them, so they stay with its decoder).
    fn for_parameters(parameters: &AudioCodecParameters) -> Option<PlainPcm> {
        let (sample, width) = match parameters.codec {
            codec_ids::CODEC_ID_PCM_U8 => (PlainPcmSample::U8, 8),
            codec_ids::CODEC_ID_PCM_S16LE => (PlainPcmSample::S16, 16),
            codec_ids::CODEC_ID_PCM_S24LE => (PlainPcmSample::S24, 24),
            codec_ids::CODEC_ID_PCM_S32LE => (PlainPcmSample::S32, 32),
            codec_ids::CODEC_ID_PCM_F32LE => (PlainPcmSample::F32, 32),
            codec_ids::CODEC_ID_PCM_F64LE => (PlainPcmSample::F64, 64),
            _ => return None,
        };
        let decoded_width = parameters.bits_per_sample.unwrap_or(width);
        let coded_width = parameters.bits_per_coded_sample.unwrap_or(decoded_width);
        let channels = parameters.channels.as_ref().map(|channels| channels.count()).unwrap_or(0);
        (decoded_width == coded_width && decoded_width <= width && channels > 0)
            .then_some(PlainPcm { sample, channels })
    }

    fn bytes_per_sample(self) -> usize {
        match self.sample {
            PlainPcmSample::U8 => 1,
            PlainPcmSample::S16 => 2,
            PlainPcmSample::S24 => 3,
            PlainPcmSample::S32 | PlainPcmSample::F32 => 4,
            PlainPcmSample::F64 => 8,
        }
    }

    /// The whole frames of `bytes` as interleaved f32 in `output` (cleared first); a partial
    /// frame at the end is dropped, as symphonia's decoder does.
    fn decode_into(self, bytes: &[u8], output: &mut Vec<f32>) {
        output.clear();
        let width = self.bytes_per_sample();
        let whole = bytes.len() / (width * self.channels) * width * self.channels;
        let bytes = &bytes[..whole];
        match self.sample {
            PlainPcmSample::U8 => output.extend(bytes.iter().map(|&byte| f32::from(byte) / 128.0 - 1.0)),
            PlainPcmSample::S16 => output
                .extend(bytes.chunks_exact(2).map(|pair| f32::from(i16::from_le_bytes([pair[0], pair[1]])) / 32_768.0)),
            PlainPcmSample::S24 => output.extend(bytes.chunks_exact(3).map(|triple| {
                // Sign-extended from the top of an i32.
                let value = i32::from_le_bytes([0, triple[0], triple[1], triple[2]]) >> 8;
                value as f32 / 8_388_608.0
            })),
            PlainPcmSample::S32 => output.extend(bytes.chunks_exact(4).map(|quad| {
                let value = i32::from_le_bytes([quad[0], quad[1], quad[2], quad[3]]);
                (f64::from(value) / 2_147_483_648.0) as f32
            })),
            PlainPcmSample::F32 => output
                .extend(bytes.chunks_exact(4).map(|quad| f32::from_le_bytes([quad[0], quad[1], quad[2], quad[3]]))),
            PlainPcmSample::F64 => output.extend(bytes.chunks_exact(8).map(|octet| {
                let mut eight = [0u8; 8];
                eight.copy_from_slice(octet);
                f64::from_le_bytes(eight) as f32
            })),
        }
    }
}

/// Average interleaved channels into mono. `output` is cleared first.
pub fn downmix_to_mono(interleaved: &[f32], channel_count: usize, output: &mut Vec<f32>) {
    output.clear();
    if channel_count <= 1 {
        output.extend_from_slice(interleaved);
        return;
    }
    let scale = 1.0 / channel_count as f32;
    output.extend(interleaved.chunks_exact(channel_count).map(|frame| frame.iter().sum::<f32>() * scale));
}

/// Decode `duration_seconds` of mono audio starting at `start_seconds`, at the file's native rate.
///
/// Returns fewer samples when the file ends first. Used to serve one window's audio back as WAV.
pub fn read_samples_range(path: &Path, start_seconds: f64, duration_seconds: f64) -> Result<Vec<f32>, AudioError> {
    if !start_seconds.is_finite() || start_seconds < 0.0 || !duration_seconds.is_finite() || duration_seconds < 0.0 {
        return Err(AudioError::InvalidRange {
            path: path.to_path_buf(),
            reason: format!(
                "start {start_seconds} s and duration {duration_seconds} s must be finite and not negative"
            ),
        });
    }
    let mut decoded = DecodedAudio::open(path)?;
    let rate = f64::from(decoded.sample_rate());
    let first_frame = (start_seconds * rate).round() as u64;
    let wanted_frames = (duration_seconds * rate).round() as u64;
    let wanted = usize::try_from(wanted_frames).map_err(|_| AudioError::InvalidRange {
        path: path.to_path_buf(),
        reason: format!("{duration_seconds} s is too long to hold in memory"),
    })?;
    let mut output = Vec::with_capacity(wanted.min(1 << 26));
    if wanted == 0 {
        return Ok(output);
    }
    // Seeking in MP3 is not sample exact across every encoder; decode MP3 from the start, which
    // is fast (hundreds of times realtime) and always exact.
    let mut position =
        if first_frame > 0 && decoded.probe().codec != "mp3" { decoded.seek_to_frame(first_frame)? } else { 0 };
    while let Some(chunk) = decoded.next_chunk()? {
        let chunk_start = position;
        let chunk_end = chunk_start + chunk.len() as u64;
        position = chunk_end;
        if chunk_end <= first_frame {
            continue;
        }
        let skip = first_frame.saturating_sub(chunk_start) as usize;
        let remaining = wanted - output.len();
        let available = &chunk[skip..];
        output.extend_from_slice(&available[..available.len().min(remaining)]);
        if output.len() >= wanted {
            break;
        }
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn codec_names_are_short_and_lowercase() {
        assert_eq!(codec_short_name(codec_ids::CODEC_ID_PCM_S16LE), "pcm_s16le");
        assert_eq!(codec_short_name(codec_ids::CODEC_ID_MP3), "mp3");
        assert_eq!(codec_short_name(codec_ids::CODEC_ID_FLAC), "flac");
        let unknown = codec_short_name(CODEC_ID_NULL_AUDIO);
        assert_eq!(unknown, unknown.to_lowercase());
        assert!(unknown.starts_with("unknown_codec"));
    }

    #[test]
    fn extension_follows_the_container() {
        assert_eq!(suggested_extension_for("wave", "pcm_s24le"), "wav");
        assert_eq!(suggested_extension_for("mp3", "mp3"), "mp3");
        assert_eq!(suggested_extension_for("flac", "flac"), "flac");
    }

    proptest! {
        #[test]
        fn downmix_averages_each_frame(
            frames in prop::collection::vec(prop::collection::vec(-1.0f32..1.0, 8), 0..200),
            channels in 1usize..8,
        ) {
            let interleaved: Vec<f32> = frames.iter().flat_map(|frame| frame[..channels].to_vec()).collect();
            let mut mono = vec![123.0];
            downmix_to_mono(&interleaved, channels, &mut mono);
            prop_assert_eq!(mono.len(), frames.len());
            for (value, frame) in mono.iter().zip(&frames) {
                let mean = frame[..channels].iter().sum::<f32>() / channels as f32;
                prop_assert!((value - mean).abs() < 1e-6);
            }
        }
    }
}
