//! `GET /api/events` (paged, filtered, long-poll), `/api/events/{seq}`, `/stats`, `/verify`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Serialize;

use super::{blocking, ApiError, ApiState};
use crate::domain::ids::EventSeq;
use crate::log::envelope::EnvelopeJson;
use crate::log::filter::EventQuery;
use crate::log::{EventLog, VerifyReport};

/// Longest a client may ask to wait for new events.
const MAX_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct EventPageJson {
    pub events: Vec<serde_json::Value>,
    /// Pass as `cursor` to get the next page; null at the end.
    pub next_cursor: Option<u64>,
    pub head: u64,
}

pub async fn list(
    State(state): State<ApiState>,
    query: Result<Query<EventQuery>, QueryRejection>,
) -> Result<Json<EventPageJson>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let request = query.parse().map_err(|error| ApiError::bad_request(error.to_string()))?;
    let wait = Duration::from_secs(query.wait_seconds.unwrap_or(0)).min(MAX_WAIT);
    let mut head = state.humpback.log.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        head.borrow_and_update();
        let humpback = state.humpback.clone();
        let request_copy = request.clone();
        let page = blocking(move || Ok(humpback.read_events(&request_copy)?)).await?;
        let waiting_is_useful = !request.newest_first && page.events.is_empty() && !wait.is_zero();
        if !waiting_is_useful || tokio::time::Instant::now() >= deadline {
            return Ok(Json(EventPageJson {
                events: page.events.iter().map(|envelope| to_value(envelope.to_json())).collect(),
                next_cursor: page.next_cursor.map(EventSeq::get),
                head: page.head.0,
            }));
        }
        let mut stopping = state.stopping.clone();
        tokio::select! {
            _ = head.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = stopping.wait_for(|stopped| *stopped) => {}
        }
        if *state.stopping.borrow() {
            return Ok(Json(EventPageJson { events: vec![], next_cursor: None, head: state.humpback.log.head().0 }));
        }
    }
}

fn to_value(json: EnvelopeJson) -> serde_json::Value {
    serde_json::to_value(json).unwrap_or_else(|error| serde_json::Value::String(error.to_string()))
}

pub async fn show(State(state): State<ApiState>, Path(seq): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let seq: u64 =
        seq.parse().map_err(|_| ApiError::bad_request(format!("event sequence {seq:?} is not a whole number")))?;
    let log = state.humpback.log.clone();
    let envelope = blocking(move || Ok(log.get(EventSeq(seq))?)).await?;
    match envelope {
        Some(envelope) => Ok(Json(to_value(envelope.to_json()))),
        None => Err(ApiError::not_found(format!(
            "event {seq} does not exist (the log holds events 1 to {})",
            state.humpback.log.head()
        ))),
    }
}

#[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct EventStats {
    pub total: u64,
    pub head: u64,
    pub first_recorded_at: Option<String>,
    pub last_recorded_at: Option<String>,
    pub by_type: BTreeMap<String, u64>,
}

/// Counts events by type by reading record envelopes (payloads are not decoded).
pub fn compute_stats(log: &dyn EventLog) -> Result<EventStats, crate::log::LogError> {
    let mut stats = EventStats {
        total: 0,
        head: log.head().0,
        first_recorded_at: None,
        last_recorded_at: None,
        by_type: BTreeMap::new(),
    };
    for item in log.scan_raw() {
        let (key, value) = item?;
        let seq = EventSeq::from_key(&key).ok_or(crate::log::LogError::BadKey { key: key.clone() })?;
        let record = crate::log::envelope::decode_stored_record(&value)
            .map_err(|source| crate::log::LogError::Corrupt { seq, source })?;
        stats.total += 1;
        *stats.by_type.entry(record.event_type).or_default() += 1;
        if stats.first_recorded_at.is_none() {
            stats.first_recorded_at = Some(record.recorded_at.to_rfc3339());
        }
        stats.last_recorded_at = Some(record.recorded_at.to_rfc3339());
    }
    Ok(stats)
}

pub async fn stats(State(state): State<ApiState>) -> Result<Json<EventStats>, ApiError> {
    let log = state.humpback.log.clone();
    Ok(Json(blocking(move || Ok(compute_stats(log.as_ref())?)).await?))
}

pub async fn verify(State(state): State<ApiState>) -> Result<Json<VerifyReport>, ApiError> {
    let log = state.humpback.log.clone();
    Ok(Json(blocking(move || Ok(crate::log::verify(log.as_ref()))).await?))
}
