//! The envelope: how one event is stored in the log, and how old versions are read.
//!
//! A record's key is its sequence number (big-endian u64); its value is a format byte
//! followed by a bincode-encoded [`StoredRecord`]: the time it was recorded, the event type's
//! name and payload version, and the payload itself (bincode, `config::standard()`).
//! Keeping the type and version outside the payload means a reader can filter by type
//! without decoding, and can upcast an old payload version to the current one.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bincode::{Decode, Encode};
use serde::Serialize;

use crate::domain::events::Event;
use crate::domain::ids::{AggregateRef, EventSeq};

/// The only envelope format so far. A new format gets a new byte; old ones keep decoding.
pub const RECORD_FORMAT_V1: u8 = 1;

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct RecordedAt(pub i64);

impl RecordedAt {
    pub fn now() -> RecordedAt {
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        RecordedAt(i64::try_from(millis).unwrap_or(i64::MAX))
    }

    pub fn to_system_time(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_millis(self.0.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_millis(self.0.unsigned_abs())
        }
    }

    pub fn from_system_time(time: SystemTime) -> RecordedAt {
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => RecordedAt(i64::try_from(after.as_millis()).unwrap_or(i64::MAX)),
            Err(before) => RecordedAt(-i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }

    /// RFC 3339 with milliseconds, e.g. `2026-11-24T16:21:27.123Z`.
    pub fn to_rfc3339(self) -> String {
        humantime::format_rfc3339_millis(self.to_system_time()).to_string()
    }
}

impl fmt::Display for RecordedAt {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.to_rfc3339())
    }
}

impl Serialize for RecordedAt {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

/// The value stored under a sequence key (after the format byte).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct StoredRecord {
    pub recorded_at: RecordedAt,
    pub event_type: String,
    pub event_version: u16,
    pub payload: Vec<u8>,
}

/// An event as read from the log: where it is, when it was recorded, which payload version it
/// was written in, and the event itself (upcast to the current version).
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub seq: EventSeq,
    pub recorded_at: RecordedAt,
    pub event_version: u16,
    pub event: Event,
}

/// How many annotations of a bulk `AnnotationsAdded` the brief JSON shows.
pub const BRIEF_ANNOTATIONS: usize = 20;

/// The JSON form of an envelope, for the API, `--json` and `export --jsonl`.
#[derive(Debug, Serialize)]
pub struct EnvelopeJson {
    pub seq: EventSeq,
    pub recorded_at: RecordedAt,
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub version: u16,
    pub aggregates: Vec<String>,
    pub summary: String,
    pub data: serde_json::Value,
}

impl Envelope {
    /// The whole event as JSON (the log API, the CLI, exports).
    pub fn to_json(&self) -> EnvelopeJson {
        let data = match serde_json::to_value(&self.event) {
            Ok(serde_json::Value::Object(mut tagged)) => tagged.remove("data").unwrap_or(serde_json::Value::Null),
            Ok(other) => other,
            Err(error) => serde_json::Value::String(format!("unserialisable event: {error}")),
        };
        self.with_data(data)
    }

    /// The event as JSON for pages and the live stream: the same, except that the per-window
    /// assignments an old (version 1) clustering completion carries (100 000 rows make 5 MB of
    /// JSON) are left out and counted (`assignment_count`); they are in the job's
    /// `assignments.parquet` and in `/api/events/{seq}`. Version 2 carries none.
    ///
    /// Likewise a bulk annotation (a whole cluster can be annotated at once) shows its first
    /// [`BRIEF_ANNOTATIONS`] annotations and their aggregates, with `annotation_count`.
    pub fn to_brief_json(&self) -> EnvelopeJson {
        if let Event::AnnotationsAdded(added) = &self.event {
            if added.annotations.len() <= BRIEF_ANNOTATIONS {
                return self.to_json();
            }
            let crate::domain::events::AnnotationsAdded { annotations, created_by } = added;
            let data = serde_json::json!({
                "annotations": &annotations[..BRIEF_ANNOTATIONS],
                "annotation_count": annotations.len(),
                "created_by": created_by,
            });
            let mut brief = self.with_data(data);
            let shown: std::collections::HashSet<String> = annotations[..BRIEF_ANNOTATIONS]
                .iter()
                .map(|annotation| AggregateRef::Annotation(annotation.annotation_id).to_string())
                .collect();
            brief.aggregates.retain(|aggregate| !aggregate.starts_with("annotation:") || shown.contains(aggregate));
            return brief;
        }
        let Event::ClusteringJobCompleted(completed) = &self.event else {
            return self.to_json();
        };
        // Every field named, so a new one cannot be left out silently.
        let crate::domain::events::ClusteringJobCompleted {
            job_id,
            attempt,
            clusters,
            assignments,
            metrics,
            clusters_json_path,
            assignments_path,
        } = completed;
        let crate::domain::events::ClusterAssignments::Carried(carried) = assignments else {
            return self.to_json();
        };
        let data = serde_json::json!({
            "job_id": job_id,
            "attempt": attempt,
            "clusters": clusters,
            "assignment_count": carried.len(),
            "metrics": metrics,
            "clusters_json_path": clusters_json_path,
            "assignments_path": assignments_path,
        });
        self.with_data(data)
    }

    fn with_data(&self, data: serde_json::Value) -> EnvelopeJson {
        EnvelopeJson {
            seq: self.seq,
            recorded_at: self.recorded_at,
            event_type: self.event.type_name(),
            version: self.event_version,
            aggregates: self.event.aggregates().iter().map(AggregateRef::to_string).collect(),
            summary: self.event.summary(),
            data,
        }
    }
}

impl EnvelopeJson {
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|error| format!(r#"{{"error":"{error}"}}"#))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("record is empty")]
    Empty,
    #[error("record format {0} is unknown to this version of humpback")]
    UnknownFormat(u8),
    #[error("record envelope does not decode: {0}")]
    Envelope(String),
    #[error("event type {0:?} is unknown to this version of humpback")]
    UnknownEventType(String),
    #[error("{event_type} version {version} is unknown to this version of humpback (current is {current})")]
    UnknownEventVersion { event_type: String, version: u16, current: u16 },
    #[error("{event_type} v{version} payload does not decode: {reason}")]
    Payload { event_type: String, version: u16, reason: String },
    #[error("{event_type} does not encode: {reason}")]
    Encode { event_type: &'static str, reason: String },
}

/// Encodes an event in its current version as a record value.
pub fn encode_record(event: &Event, recorded_at: RecordedAt) -> Result<Vec<u8>, EnvelopeError> {
    let payload = event
        .encode_payload()
        .map_err(|error| EnvelopeError::Encode { event_type: event.type_name(), reason: error.to_string() })?;
    let record = StoredRecord {
        recorded_at,
        event_type: event.type_name().to_string(),
        event_version: event.type_version(),
        payload,
    };
    let mut bytes = vec![RECORD_FORMAT_V1];
    bincode::encode_into_std_write(&record, &mut bytes, bincode::config::standard())
        .map_err(|error| EnvelopeError::Encode { event_type: event.type_name(), reason: error.to_string() })?;
    Ok(bytes)
}

/// Reads a record value's envelope without decoding its payload.
pub fn decode_stored_record(bytes: &[u8]) -> Result<StoredRecord, EnvelopeError> {
    let (&format, rest) = bytes.split_first().ok_or(EnvelopeError::Empty)?;
    if format != RECORD_FORMAT_V1 {
        return Err(EnvelopeError::UnknownFormat(format));
    }
    let (record, read): (StoredRecord, usize) = bincode::decode_from_slice(rest, bincode::config::standard())
        .map_err(|error| EnvelopeError::Envelope(error.to_string()))?;
    if read != rest.len() {
        return Err(EnvelopeError::Envelope(format!("{} trailing bytes", rest.len() - read)));
    }
    Ok(record)
}

/// Decodes a whole record, upcasting old payload versions to the current event.
pub fn decode_record(seq: EventSeq, bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    let record = decode_stored_record(bytes)?;
    let event = decode_payload(&record.event_type, record.event_version, &record.payload)?;
    Ok(Envelope { seq, recorded_at: record.recorded_at, event_version: record.event_version, event })
}

/// A bincode payload that must be used up exactly.
fn decode_whole<T: Decode<()>>(payload: &[u8]) -> Result<T, String> {
    let (value, read) =
        bincode::decode_from_slice(payload, bincode::config::standard()).map_err(|error| error.to_string())?;
    if read != payload.len() {
        return Err(format!("{} trailing bytes after the payload", payload.len() - read));
    }
    Ok(value)
}

/// Decodes a payload of any known version, upcasting retired versions (kept under
/// `domain::events::v1`) to the current event: `ClusteringJobCompleted` version 1 carried
/// its assignments, version 2 records the Parquet file instead.
pub fn decode_payload(event_type: &str, version: u16, payload: &[u8]) -> Result<Event, EnvelopeError> {
    let current = Event::TYPES
        .iter()
        .find(|(name, _)| *name == event_type)
        .map(|(_, version)| *version)
        .ok_or_else(|| EnvelopeError::UnknownEventType(event_type.to_string()))?;
    let payload_error = |reason: String| EnvelopeError::Payload { event_type: event_type.to_string(), version, reason };
    match (event_type, version) {
        ("ClusteringJobCompleted", 1) => {
            let old: crate::domain::events::v1::ClusteringJobCompleted =
                decode_whole(payload).map_err(payload_error)?;
            return Ok(Event::ClusteringJobCompleted(old.upcast()));
        }
        _ if version != current => {
            return Err(EnvelopeError::UnknownEventVersion { event_type: event_type.to_string(), version, current });
        }
        _ => {}
    }
    match Event::decode_current_payload(event_type, payload) {
        Some(Ok(event)) => Ok(event),
        Some(Err(error)) => {
            Err(EnvelopeError::Payload { event_type: event_type.to_string(), version, reason: error.to_string() })
        }
        None => Err(EnvelopeError::UnknownEventType(event_type.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sample_events::one_event_of_every_type;

    #[test]
    fn every_event_type_round_trips_through_a_record() {
        for event in one_event_of_every_type() {
            let bytes = encode_record(&event, RecordedAt(1_700_000_000_123)).unwrap();
            let envelope = decode_record(EventSeq(42), &bytes).unwrap();
            assert_eq!(envelope.event, event);
            assert_eq!(envelope.seq, EventSeq(42));
            assert_eq!(envelope.recorded_at, RecordedAt(1_700_000_000_123));
            assert_eq!(envelope.event_version, event.type_version());
        }
    }

    #[test]
    fn the_brief_json_leaves_out_only_the_assignments_an_old_clustering_carries() {
        for event in one_event_of_every_type() {
            let envelope = Envelope { seq: EventSeq(7), recorded_at: RecordedAt(0), event_version: 1, event };
            let full = serde_json::to_value(envelope.to_json()).unwrap();
            let brief = serde_json::to_value(envelope.to_brief_json()).unwrap();
            assert_eq!(brief, full, "{}", envelope.event.type_name());
        }
        let bytes = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/events/ClusteringJobCompleted.v1.bin"),
        )
        .unwrap();
        let old = decode_record(EventSeq(7), &bytes).unwrap();
        let Event::ClusteringJobCompleted(completed) = &old.event else { panic!("{:?}", old.event) };
        let crate::domain::events::ClusterAssignments::Carried(carried) = &completed.assignments else {
            panic!("version 1 carries its assignments")
        };
        assert!(!carried.is_empty(), "the golden file has assignments to leave out");
        let mut expected = serde_json::to_value(old.to_json()).unwrap();
        let data = expected["data"].as_object_mut().unwrap();
        data.remove("assignments");
        data.insert("assignment_count".into(), serde_json::json!(carried.len()));
        assert_eq!(serde_json::to_value(old.to_brief_json()).unwrap(), expected);
    }

    #[test]
    fn a_version_1_clustering_completion_is_upcast_with_its_assignments_carried() {
        let old = crate::domain::events::v1::ClusteringJobCompleted {
            job_id: crate::domain::ids::ClusteringJobId(3),
            attempt: 2,
            clusters: vec![],
            assignments: vec![crate::domain::events::ClusterAssignmentRecord {
                embedding_set_id: crate::domain::ids::EmbeddingSetId(1),
                row_index: 9,
                label: -1,
            }],
            metrics: crate::domain::json_text::JsonText::empty_object(),
            clusters_json_path: "clusters/3/clusters.json".into(),
            assignments_path: "clusters/3/assignments.parquet".into(),
        };
        let payload = bincode::encode_to_vec(&old, bincode::config::standard()).unwrap();
        let event = decode_payload("ClusteringJobCompleted", 1, &payload).unwrap();
        assert_eq!(event, Event::ClusteringJobCompleted(old.clone().upcast()));
        let mut trailing = payload.clone();
        trailing.push(0);
        assert!(decode_payload("ClusteringJobCompleted", 1, &trailing).is_err());
        assert!(matches!(
            decode_payload("ClusteringJobCompleted", 3, &payload),
            Err(EnvelopeError::UnknownEventVersion { version: 3, current: 2, .. })
        ));
    }

    #[test]
    fn the_brief_json_of_a_bulk_annotation_shows_the_first_ones_and_counts_them() {
        let Some(Event::AnnotationsAdded(mut added)) =
            one_event_of_every_type().into_iter().find(|event| matches!(event, Event::AnnotationsAdded(_)))
        else {
            panic!("the samples have an AnnotationsAdded")
        };
        let template = added.annotations[0].clone();
        added.annotations = (1..=1000u64)
            .map(|id| crate::domain::events::AnnotationRecord {
                annotation_id: crate::domain::ids::AnnotationId(id),
                ..template.clone()
            })
            .collect();
        let envelope = Envelope {
            seq: EventSeq(7),
            recorded_at: RecordedAt(0),
            event_version: 1,
            event: Event::AnnotationsAdded(added),
        };
        let brief = serde_json::to_value(envelope.to_brief_json()).unwrap();
        assert_eq!(brief["data"]["annotation_count"], 1000);
        assert_eq!(brief["data"]["annotations"].as_array().unwrap().len(), BRIEF_ANNOTATIONS);
        assert_eq!(brief["aggregates"].as_array().unwrap().len(), BRIEF_ANNOTATIONS + 1, "and audio_file:1");
        let full = serde_json::to_value(envelope.to_json()).unwrap();
        assert_eq!(full["data"]["annotations"].as_array().unwrap().len(), 1000);
    }

    #[test]
    fn a_record_of_an_unknown_format_is_refused_not_misread() {
        let mut bytes = encode_record(&one_event_of_every_type()[0], RecordedAt(0)).unwrap();
        bytes[0] = 9;
        assert!(matches!(decode_record(EventSeq(1), &bytes), Err(EnvelopeError::UnknownFormat(9))));
    }

    #[test]
    fn a_truncated_record_is_an_error() {
        let bytes = encode_record(&one_event_of_every_type()[1], RecordedAt(0)).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode_record(EventSeq(1), &bytes[..cut]).is_err(), "cut at {cut} decoded");
        }
    }

    #[test]
    fn an_unknown_event_type_or_version_is_named_in_the_error() {
        let record = StoredRecord {
            recorded_at: RecordedAt(0),
            event_type: "WhaleSang".into(),
            event_version: 1,
            payload: vec![],
        };
        let mut bytes = vec![RECORD_FORMAT_V1];
        bincode::encode_into_std_write(&record, &mut bytes, bincode::config::standard()).unwrap();
        let error = decode_record(EventSeq(1), &bytes).unwrap_err();
        assert!(error.to_string().contains("WhaleSang"), "{error}");

        let record = StoredRecord { event_type: "AudioFileRegistered".into(), event_version: 99, ..record };
        let mut bytes = vec![RECORD_FORMAT_V1];
        bincode::encode_into_std_write(&record, &mut bytes, bincode::config::standard()).unwrap();
        let error = decode_record(EventSeq(1), &bytes).unwrap_err();
        assert!(error.to_string().contains("version 99"), "{error}");
    }

    #[test]
    fn json_form_carries_type_version_aggregates_and_data() {
        let event =
            one_event_of_every_type().into_iter().find(|event| event.type_name() == "ProcessingJobQueued").unwrap();
        let envelope = Envelope { seq: EventSeq(5), recorded_at: RecordedAt(0), event_version: 1, event };
        let json: serde_json::Value = serde_json::from_str(&envelope.to_json().to_json_line()).unwrap();
        assert_eq!(json["seq"], 5);
        assert_eq!(json["type"], "ProcessingJobQueued");
        assert_eq!(json["recorded_at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(json["aggregates"], serde_json::json!(["processing_job:1", "audio_file:1"]));
        assert_eq!(json["data"]["config"]["feature_config"]["short_file"], "pad");
    }
}
