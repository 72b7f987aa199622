//! Media for people: spectrogram images and window audio of a recording, embedding-set
//! downloads, and the live event stream (server-sent events) the web pages listen to.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::Stream;
use serde::Deserialize;
use tower::ServiceExt;

use super::audio_api::parse_id;
use super::{blocking, ApiError, ApiState};
use crate::domain::ids::EventSeq;
use crate::log::EventLog;
use crate::projections::queries::{self, AudioFileRow};
use crate::spectrogram::{self, SpectrogramRequest};

/// The longest range a spectrogram or a window of audio may cover.
pub const MAX_RANGE_SECONDS: f64 = 600.0;
/// When no duration is given: the first minute (or less, when the recording is shorter).
pub const DEFAULT_SPECTROGRAM_SECONDS: f64 = 60.0;
pub const DEFAULT_WINDOW_SECONDS: f64 = 5.0;
pub const DEFAULT_SPECTROGRAM_WIDTH: u32 = 1000;
pub const DEFAULT_SPECTROGRAM_HEIGHT: u32 = 320;
/// How often an idle event stream sends a comment so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Events read from the log per step of a stream.
const STREAM_BATCH: usize = 200;
/// Decoding and rendering are heavy: at most this many run at once; other requests wait.
static MEDIA_WORK: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

async fn media_work_permit() -> Result<tokio::sync::SemaphorePermit<'static>, ApiError> {
    MEDIA_WORK.acquire().await.map_err(|_| ApiError::internal(anyhow::anyhow!("the media work queue is closed")))
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/audio/{id}/spectrogram.png", get(spectrogram_png))
        .route("/api/audio/{id}/window", get(window_wav))
        .route("/api/embedding-sets/{id}/download", get(embedding_set_download))
        .route("/api/events/stream", get(event_stream))
}

#[derive(Debug, Deserialize, Default)]
pub struct RangeParameters {
    pub start: Option<f64>,
    pub duration: Option<f64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// The highest frequency shown in a spectrogram, in Hz (default: half the sample rate).
    pub max_frequency: Option<f64>,
}

/// A checked time range inside a recording.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckedRange {
    pub start_seconds: f64,
    pub duration_seconds: f64,
}

/// Checks a requested range against the recording; every problem is listed in the message.
pub fn check_range(
    start: Option<f64>,
    duration: Option<f64>,
    default_duration: f64,
    recording_seconds: f64,
) -> Result<CheckedRange, ApiError> {
    let start_seconds = start.unwrap_or(0.0);
    let mut reasons = Vec::new();
    if !start_seconds.is_finite() || start_seconds < 0.0 {
        reasons.push(format!("start {start_seconds} must be a number of seconds, 0 or more"));
    } else if start_seconds >= recording_seconds {
        reasons.push(format!(
            "start {start_seconds} s is beyond the end of the recording ({recording_seconds:.3} s long)"
        ));
    }
    let duration_seconds = match duration {
        Some(duration) => {
            if !duration.is_finite() || duration <= 0.0 {
                reasons.push(format!("duration {duration} must be a positive number of seconds"));
            } else if duration > MAX_RANGE_SECONDS {
                reasons.push(format!("duration {duration} s is longer than the limit of {MAX_RANGE_SECONDS} s"));
            }
            duration
        }
        None => default_duration,
    };
    if !reasons.is_empty() {
        return Err(ApiError::unprocessable(reasons.join("; ")));
    }
    // A range running past the end is cut at the end.
    let available = (recording_seconds - start_seconds).max(0.0);
    Ok(CheckedRange { start_seconds, duration_seconds: duration_seconds.min(available) })
}

/// The recording, the query and the checked time range a media request asks for
/// (`default_seconds` long when no duration is given).
async fn requested_range(
    state: &ApiState,
    id: &str,
    parameters: Result<Query<RangeParameters>, QueryRejection>,
    default_seconds: f64,
) -> Result<(AudioFileRow, RangeParameters, CheckedRange), ApiError> {
    let id = parse_id(id, "audio file")?;
    let Query(parameters) = parameters.map_err(|rejection| ApiError::unprocessable(rejection.body_text()))?;
    let file = load_audio_file(state, id).await?;
    let range = check_range(parameters.start, parameters.duration, default_seconds, file.duration_seconds)?;
    Ok((file, parameters, range))
}

async fn load_audio_file(state: &ApiState, id: u64) -> Result<AudioFileRow, ApiError> {
    let humpback = state.humpback.clone();
    let file = blocking(move || Ok(humpback.reader.with_connection(|c| queries::audio_file(c, id))?)).await?;
    file.ok_or_else(|| ApiError::not_found(format!("audio file {id} does not exist")))
}

fn read_range(state: &ApiState, file: &AudioFileRow, range: CheckedRange) -> Result<Vec<f32>, ApiError> {
    // The stored path was built by the writer from the id and a fixed extension list.
    let path = state.humpback.storage.readable_path(&file.stored_path)?;
    crate::audio::read_samples_range(&path, range.start_seconds, range.duration_seconds).map_err(|error| {
        ApiError::internal(anyhow::anyhow!(error).context(format!("reading audio file {} for the web page", file.id)))
    })
}

/// `GET /api/audio/{id}/spectrogram.png?start=&duration=&width=&height=`
pub async fn spectrogram_png(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    parameters: Result<Query<RangeParameters>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (file, parameters, range) = requested_range(&state, &id, parameters, DEFAULT_SPECTROGRAM_SECONDS).await?;
    let request = SpectrogramRequest {
        sample_rate: file.sample_rate,
        start_seconds: range.start_seconds,
        width: parameters.width.unwrap_or(DEFAULT_SPECTROGRAM_WIDTH),
        height: parameters.height.unwrap_or(DEFAULT_SPECTROGRAM_HEIGHT),
        max_frequency_hz: parameters.max_frequency,
    };
    // Size problems are the caller's: check them before decoding anything.
    let mut size_reasons = Vec::new();
    if !(spectrogram::MIN_WIDTH..=spectrogram::MAX_WIDTH).contains(&request.width) {
        size_reasons.push(spectrogram::SpectrogramError::BadWidth(request.width).to_string());
    }
    if !(spectrogram::MIN_HEIGHT..=spectrogram::MAX_HEIGHT).contains(&request.height) {
        size_reasons.push(spectrogram::SpectrogramError::BadHeight(request.height).to_string());
    }
    if let Some(max) = parameters.max_frequency {
        if !max.is_finite() || max < 10.0 {
            size_reasons.push(format!("max_frequency {max} must be at least 10 Hz"));
        }
    }
    if !size_reasons.is_empty() {
        return Err(ApiError::unprocessable(size_reasons.join("; ")));
    }
    let _permit = media_work_permit().await?;
    let png = blocking(move || {
        let samples = read_range(&state, &file, range)?;
        spectrogram::render_spectrogram_png(&samples, &request)
            .map_err(|error| ApiError::internal(anyhow::anyhow!(error).context("rendering a spectrogram")))
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/png")),
            (header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600")),
        ],
        png,
    )
        .into_response())
}

/// `GET /api/audio/{id}/window?start=&duration=`: 16-bit PCM mono WAV at the file's own rate.
pub async fn window_wav(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    parameters: Result<Query<RangeParameters>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (file, _, range) = requested_range(&state, &id, parameters, DEFAULT_WINDOW_SECONDS).await?;
    let sample_rate = file.sample_rate;
    let _permit = media_work_permit().await?;
    let wav = blocking(move || Ok(encode_wav_pcm16_mono(&read_range(&state, &file, range)?, sample_rate))).await?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"))], wav).into_response())
}

/// A RIFF/WAVE file: 16-bit signed little-endian PCM, one channel. Samples are clipped to -1..=1.
pub fn encode_wav_pcm16_mono(samples: &[f32], sample_rate: u32) -> Vec<u8> {
    let data_bytes = (samples.len() * 2) as u32;
    let mut wav = Vec::with_capacity(44 + samples.len() * 2);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_bytes).to_le_bytes());
    wav.extend_from_slice(b"WAVE");
    wav.extend_from_slice(b"fmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // channels
    wav.extend_from_slice(&sample_rate.to_le_bytes());
    wav.extend_from_slice(&(sample_rate * 2).to_le_bytes()); // bytes per second
    wav.extend_from_slice(&2u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_bytes.to_le_bytes());
    for sample in samples {
        let value = if sample.is_finite() { sample.clamp(-1.0, 1.0) } else { 0.0 };
        wav.extend_from_slice(&((value * 32767.0).round() as i16).to_le_bytes());
    }
    wav
}

/// `GET /api/embedding-sets/{id}/download`: the set's Parquet file.
pub async fn embedding_set_download(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    request: Request<Body>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "embedding set")?;
    let humpback = state.humpback.clone();
    let set = blocking(move || Ok(humpback.reader.with_connection(|c| queries::embedding_set(c, id))?)).await?;
    let set = set.ok_or_else(|| ApiError::not_found(format!("embedding set {id} does not exist")))?;
    let relative = std::path::Path::new(&set.parquet_path);
    if !relative.components().all(|component| matches!(component, std::path::Component::Normal(_))) {
        return Err(ApiError::internal(anyhow::anyhow!(
            "embedding set {id} has an unexpected path {:?}",
            set.parquet_path
        )));
    }
    let path = state.humpback.artifact_path(&set.parquet_path).await?;
    let response = tower_http::services::ServeFile::new(&path)
        .oneshot(request)
        .await
        .map_err(|error| ApiError::internal(anyhow::anyhow!("serving {}: {error}", path.display())))?;
    if response.status() == StatusCode::NOT_FOUND {
        return Err(ApiError::not_found(format!(
            "embedding set {id} is recorded but its file is missing from the data directory"
        )));
    }
    let mut response = response.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.apache.parquet"));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"embedding-set-{id}.parquet\"")) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

#[derive(Debug, Deserialize, Default)]
pub struct StreamParameters {
    /// Start after this sequence (the `Last-Event-ID` header wins when both are given).
    pub after: Option<u64>,
}

/// Where a stream starts: after `Last-Event-ID`, else after `?after=`, else after `now` (what the
/// projections have applied).
pub fn stream_start(headers: &HeaderMap, after: Option<u64>, now: EventSeq) -> Result<EventSeq, ApiError> {
    if let Some(value) = headers.get("last-event-id") {
        let text = value.to_str().map_err(|_| ApiError::bad_request("last-event-id is not text"))?;
        let seq: u64 = text
            .trim()
            .parse()
            .map_err(|_| ApiError::bad_request(format!("last-event-id {text:?} is not a whole number")))?;
        return Ok(EventSeq(seq));
    }
    Ok(after.map(EventSeq).unwrap_or(now))
}

struct StreamState {
    state: ApiState,
    last: EventSeq,
    pending: VecDeque<crate::log::Envelope>,
    /// How far the projections have applied the log: the stream goes no further, so a page
    /// that is fetched because of an event already shows it.
    projected: tokio::sync::watch::Receiver<EventSeq>,
    failed: bool,
}

/// `GET /api/events/stream`: every new event as a server-sent event whose id is its sequence,
/// so a reconnecting `EventSource` resumes with `Last-Event-ID`. An event is sent once the
/// projections have applied it. Ends when the server stops.
pub async fn event_stream(
    State(state): State<ApiState>,
    headers: HeaderMap,
    parameters: Result<Query<StreamParameters>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let Query(parameters) = parameters.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let projected = state.humpback.subscribe_projected();
    let reached = *projected.borrow();
    let last = stream_start(&headers, parameters.after, reached)?;
    let stream_state = StreamState { state, last, pending: VecDeque::new(), projected, failed: false };
    let stream = futures_util::stream::unfold(stream_state, next_stream_event);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")))
}

async fn next_stream_event(mut stream: StreamState) -> Option<(Result<SseEvent, Infallible>, StreamState)> {
    loop {
        if stream.failed || *stream.state.stopping.borrow() {
            return None;
        }
        if let Some(envelope) = stream.pending.pop_front() {
            stream.last = envelope.seq;
            let json = envelope.to_brief_json();
            let event = SseEvent::default().id(envelope.seq.0.to_string()).data(json.to_json_line());
            return Some((Ok(event), stream));
        }
        let reached = *stream.projected.borrow_and_update();
        if reached > stream.last {
            let log = stream.state.humpback.log.clone();
            let after = stream.last;
            let limit = usize::try_from(reached.0 - after.0).unwrap_or(STREAM_BATCH).min(STREAM_BATCH);
            match blocking(move || Ok(log.read_after(after, limit)?)).await {
                Ok(envelopes) if !envelopes.is_empty() => {
                    stream.pending.extend(envelopes.into_iter().filter(|envelope| envelope.seq <= reached));
                    continue;
                }
                Ok(_) => {}
                Err(error) => {
                    // Tell the page, then end: its EventSource reconnects with Last-Event-ID.
                    stream.failed = true;
                    let event = SseEvent::default().event("error").data(error.message);
                    return Some((Ok(event), stream));
                }
            }
        }
        let mut stopping = stream.state.stopping.clone();
        tokio::select! {
            changed = stream.projected.changed() => if changed.is_err() { return None },
            _ = stopping.wait_for(|stopped| *stopped) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wav_header_describes_16_bit_mono_pcm() {
        let wav = encode_wav_pcm16_mono(&[0.0, 1.0, -1.0, 0.5, 2.0], 22_050);
        assert_eq!(wav.len(), 44 + 10);
        assert_eq!(&wav[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(wav[4..8].try_into().unwrap()), 36 + 10);
        assert_eq!(&wav[8..16], b"WAVEfmt ");
        assert_eq!(u16::from_le_bytes([wav[20], wav[21]]), 1);
        assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 1);
        assert_eq!(u32::from_le_bytes(wav[24..28].try_into().unwrap()), 22_050);
        assert_eq!(u32::from_le_bytes(wav[28..32].try_into().unwrap()), 44_100);
        assert_eq!(u16::from_le_bytes([wav[34], wav[35]]), 16);
        assert_eq!(&wav[36..40], b"data");
        assert_eq!(u32::from_le_bytes(wav[40..44].try_into().unwrap()), 10);
        let samples: Vec<i16> = wav[44..].chunks(2).map(|pair| i16::from_le_bytes([pair[0], pair[1]])).collect();
        assert_eq!(samples, vec![0, 32767, -32767, 16384, 32767]);
    }

    #[test]
    fn a_written_wav_decodes_to_the_same_samples() {
        let samples: Vec<f32> = (0..800).map(|i| ((i as f32) * 0.05).sin() * 0.5).collect();
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("tone.wav");
        std::fs::write(&path, encode_wav_pcm16_mono(&samples, 8000)).unwrap();
        let decoded = crate::audio::read_samples_range(&path, 0.0, 1.0).unwrap();
        assert_eq!(decoded.len(), 800);
        assert!(decoded.iter().zip(&samples).all(|(a, b)| (a - b).abs() < 1e-3));
    }

    #[test]
    fn ranges_are_checked_and_cut_at_the_end() {
        assert_eq!(
            check_range(Some(2.0), Some(5.0), 5.0, 4.0).unwrap(),
            CheckedRange { start_seconds: 2.0, duration_seconds: 2.0 }
        );
        assert_eq!(check_range(None, None, 60.0, 10.0).unwrap().duration_seconds, 10.0);
        let beyond = check_range(Some(11.0), None, 5.0, 10.0).unwrap_err();
        assert_eq!(beyond.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(beyond.message.contains("beyond the end"), "{}", beyond.message);
        let both = check_range(Some(-1.0), Some(601.0), 5.0, 10.0).unwrap_err();
        assert!(both.message.contains("0 or more") && both.message.contains("limit"), "{}", both.message);
        assert!(check_range(Some(0.0), Some(0.0), 5.0, 10.0).is_err());
    }

    #[test]
    fn a_stream_resumes_after_the_last_event_id() {
        let mut headers = HeaderMap::new();
        assert_eq!(stream_start(&headers, None, EventSeq(9)).unwrap(), EventSeq(9));
        assert_eq!(stream_start(&headers, Some(3), EventSeq(9)).unwrap(), EventSeq(3));
        headers.insert("last-event-id", HeaderValue::from_static("5"));
        assert_eq!(stream_start(&headers, Some(3), EventSeq(9)).unwrap(), EventSeq(5));
        headers.insert("last-event-id", HeaderValue::from_static("five"));
        assert!(stream_start(&headers, None, EventSeq(9)).is_err());
    }
}
