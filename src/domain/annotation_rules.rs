//! The rules an annotation must follow, as pure functions `decide` calls: its span lies inside
//! the recording, its band below the Nyquist frequency of the recording's original rate, its
//! label is short and not blank. Also the key under which two annotations count as the same.

use super::events::AnnotationKind;
use super::ids::AudioFileId;
use super::state::{AnnotationState, AudioFileState};

/// A span may end this far past the recording's probed duration (decoders disagree by a few
/// samples about where a file ends).
pub const DURATION_EPSILON_SECONDS: f64 = 0.001;
pub const MAX_LABEL_CHARS: usize = 200;
pub const MAX_NOTE_CHARS: usize = 2000;
pub const MAX_SOURCE_CHARS: usize = 300;
/// At most this many annotations in one request.
pub const MAX_ANNOTATIONS_PER_COMMAND: usize = 200_000;

/// An annotation's fields as asked for, before the rules are checked.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnotationFields {
    pub audio_file_id: AudioFileId,
    pub start_seconds: f64,
    pub end_seconds: f64,
    pub low_hz: Option<f64>,
    pub high_hz: Option<f64>,
    pub label: String,
    pub kind: AnnotationKind,
    pub note: Option<String>,
}

/// Which field broke which rule.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldProblem {
    pub field: &'static str,
    pub reason: String,
}

fn problem(field: &'static str, reason: impl Into<String>) -> FieldProblem {
    FieldProblem { field, reason: reason.into() }
}

/// Checks `fields` against its recording and returns them cleaned (label trimmed, a blank note
/// dropped), or the first field that breaks a rule.
pub fn check_annotation(
    fields: AnnotationFields,
    recording: Option<&AudioFileState>,
) -> Result<AnnotationFields, FieldProblem> {
    let Some(recording) = recording else {
        return Err(problem("audio_file_id", format!("audio file {} does not exist", fields.audio_file_id)));
    };
    if !fields.start_seconds.is_finite() || fields.start_seconds < 0.0 {
        return Err(problem("start_seconds", format!("must be 0 or more, not {}", fields.start_seconds)));
    }
    if !fields.end_seconds.is_finite() || fields.end_seconds <= fields.start_seconds {
        return Err(problem(
            "end_seconds",
            format!("must be greater than start_seconds ({}), not {}", fields.start_seconds, fields.end_seconds),
        ));
    }
    if fields.end_seconds > recording.duration_seconds + DURATION_EPSILON_SECONDS {
        return Err(problem(
            "end_seconds",
            format!(
                "{} is past the end of audio file {} ({} s long)",
                fields.end_seconds, fields.audio_file_id, recording.duration_seconds
            ),
        ));
    }
    let nyquist = f64::from(recording.sample_rate) / 2.0;
    if let Some(low) = fields.low_hz {
        if !low.is_finite() || low < 0.0 || low >= nyquist {
            return Err(problem("low_hz", format!("must be from 0 to below {nyquist} Hz (Nyquist), not {low}")));
        }
    }
    if let Some(high) = fields.high_hz {
        if !high.is_finite() || high <= 0.0 || high > nyquist {
            return Err(problem("high_hz", format!("must be above 0 and at most {nyquist} Hz (Nyquist), not {high}")));
        }
        if let Some(low) = fields.low_hz {
            if high <= low {
                return Err(problem("high_hz", format!("must be greater than low_hz ({low}), not {high}")));
            }
        }
    }
    let label = fields.label.trim().to_string();
    if label.is_empty() {
        return Err(problem("label", "must not be empty"));
    }
    if label.chars().count() > MAX_LABEL_CHARS {
        return Err(problem("label", format!("must be at most {MAX_LABEL_CHARS} characters")));
    }
    let note = fields.note.map(|note| note.trim().to_string()).filter(|note| !note.is_empty());
    if note.as_ref().is_some_and(|note| note.chars().count() > MAX_NOTE_CHARS) {
        return Err(problem("note", format!("must be at most {MAX_NOTE_CHARS} characters")));
    }
    Ok(AnnotationFields { label, note, ..fields })
}

/// Two annotations with the same key are the same annotation for imports: same recording,
/// times (to the microsecond), band (to the millihertz), label and kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnnotationKey {
    audio_file_id: AudioFileId,
    start_micros: i64,
    end_micros: i64,
    low_millihertz: Option<i64>,
    high_millihertz: Option<i64>,
    label: String,
    kind: AnnotationKind,
}

fn rounded(value: f64, scale: f64) -> i64 {
    (value * scale).round() as i64
}

impl AnnotationKey {
    pub fn of_fields(fields: &AnnotationFields) -> AnnotationKey {
        AnnotationKey {
            audio_file_id: fields.audio_file_id,
            start_micros: rounded(fields.start_seconds, 1e6),
            end_micros: rounded(fields.end_seconds, 1e6),
            low_millihertz: fields.low_hz.map(|hz| rounded(hz, 1e3)),
            high_millihertz: fields.high_hz.map(|hz| rounded(hz, 1e3)),
            label: fields.label.clone(),
            kind: fields.kind,
        }
    }

    pub fn of_state(annotation: &AnnotationState) -> AnnotationKey {
        AnnotationKey {
            audio_file_id: annotation.audio_file_id,
            start_micros: rounded(annotation.start_seconds, 1e6),
            end_micros: rounded(annotation.end_seconds, 1e6),
            low_millihertz: annotation.low_hz.map(|hz| rounded(hz, 1e3)),
            high_millihertz: annotation.high_hz.map(|hz| rounded(hz, 1e3)),
            label: annotation.label.clone(),
            kind: annotation.kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::Sha256Hex;

    fn recording() -> AudioFileState {
        AudioFileState {
            checksum_sha256: Sha256Hex("a".into()),
            stored_path: "audio/raw/1/original.wav".into(),
            folder: String::new(),
            original_filename: "a.wav".into(),
            duration_seconds: 10.0,
            sample_rate: 16_000,
            metadata: Default::default(),
        }
    }

    fn fields() -> AnnotationFields {
        AnnotationFields {
            audio_file_id: AudioFileId(1),
            start_seconds: 1.0,
            end_seconds: 2.0,
            low_hz: None,
            high_hz: None,
            label: "  song unit A ".into(),
            kind: AnnotationKind::Positive,
            note: Some("  ".into()),
        }
    }

    #[test]
    fn a_good_annotation_comes_back_trimmed_with_a_blank_note_dropped() {
        let checked = check_annotation(fields(), Some(&recording())).unwrap();
        assert_eq!(checked.label, "song unit A");
        assert_eq!(checked.note, None);
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases: Vec<(AnnotationFields, &str)> = vec![
            (AnnotationFields { start_seconds: -0.5, ..fields() }, "start_seconds"),
            (AnnotationFields { start_seconds: f64::NAN, ..fields() }, "start_seconds"),
            (AnnotationFields { end_seconds: 1.0, ..fields() }, "end_seconds"),
            (AnnotationFields { end_seconds: 10.01, ..fields() }, "end_seconds"),
            (AnnotationFields { low_hz: Some(8_000.0), ..fields() }, "low_hz"),
            (AnnotationFields { high_hz: Some(8_000.5), ..fields() }, "high_hz"),
            (AnnotationFields { low_hz: Some(500.0), high_hz: Some(400.0), ..fields() }, "high_hz"),
            (AnnotationFields { label: " \t".into(), ..fields() }, "label"),
            (AnnotationFields { label: "x".repeat(201), ..fields() }, "label"),
            (AnnotationFields { note: Some("n".repeat(2001)), ..fields() }, "note"),
        ];
        for (case, field) in cases {
            assert_eq!(check_annotation(case.clone(), Some(&recording())).unwrap_err().field, field, "{case:?}");
        }
        assert_eq!(check_annotation(fields(), None).unwrap_err().field, "audio_file_id");
    }

    #[test]
    fn the_edges_are_allowed() {
        let edge = AnnotationFields {
            start_seconds: 0.0,
            end_seconds: 10.0 + DURATION_EPSILON_SECONDS / 2.0,
            low_hz: Some(0.0),
            high_hz: Some(8_000.0),
            label: "é".repeat(200),
            ..fields()
        };
        assert!(check_annotation(edge, Some(&recording())).is_ok());
    }

    #[test]
    fn keys_ignore_differences_below_a_microsecond() {
        let a = AnnotationKey::of_fields(&fields());
        let b = AnnotationKey::of_fields(&AnnotationFields { start_seconds: 1.000_000_000_1, ..fields() });
        let c = AnnotationKey::of_fields(&AnnotationFields { kind: AnnotationKind::Negative, ..fields() });
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
