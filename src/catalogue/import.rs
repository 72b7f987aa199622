//! Planning an import of a selection table: which rows become which annotations, which rows
//! are bad (and why), and how many are already there. Pure: the table's text and the folded
//! state in, a plan out. The HTTP shell shows the plan (preview) or records it.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::raven::{
    read_table, ParsedRow, RavenError, TableFormat, BEGIN_FILE, BEGIN_PATH, BEGIN_TIME, END_TIME, FILE_OFFSET,
    HIGH_FREQ, KIND, LOW_FREQ,
};
use crate::domain::annotation_rules::{check_annotation, AnnotationFields, AnnotationKey};
use crate::domain::events::AnnotationKind;
use crate::domain::ids::AudioFileId;
use crate::domain::state::DomainState;

#[derive(Debug, Clone, PartialEq)]
pub struct ImportOptions {
    pub format: TableFormat,
    /// Every row to this recording; otherwise rows are matched by `Begin File` / `Begin Path`.
    pub audio_file_id: Option<AudioFileId>,
    /// Default `Annotation`.
    pub label_column: String,
    /// Default: `Kind` when the table has it; otherwise every row is positive.
    pub kind_column: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BadRow {
    /// 1 for the first row after the header.
    pub row: usize,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedAnnotation {
    pub row: usize,
    pub fields: AnnotationFields,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportPlan {
    /// What would be recorded (duplicates left out).
    pub annotations: Vec<PlannedAnnotation>,
    pub bad_rows: Vec<BadRow>,
    /// Good rows already annotated (or repeated in the table), not recorded again.
    pub duplicates: usize,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Table(#[from] RavenError),
    #[error("audio file {0} does not exist")]
    UnknownRecording(AudioFileId),
    #[error(
        "the table has neither a \"Begin File\" nor a \"Begin Path\" column to match rows to recordings; \
         give audio_file_id to import every row to one recording"
    )]
    NoFileColumn,
}

/// Below half a hertz from the Nyquist frequency counts as "up to Nyquist".
const NYQUIST_TOLERANCE_HZ: f64 = 0.5;

/// The last part of a path written with either slash.
fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path).trim()
}

struct RecordingIndex<'a> {
    state: &'a DomainState,
    by_name: HashMap<&'a str, Vec<AudioFileId>>,
    by_lowercase_name: HashMap<String, Vec<AudioFileId>>,
}

impl<'a> RecordingIndex<'a> {
    fn new(state: &'a DomainState) -> RecordingIndex<'a> {
        let mut by_name: HashMap<&str, Vec<AudioFileId>> = HashMap::new();
        let mut by_lowercase_name: HashMap<String, Vec<AudioFileId>> = HashMap::new();
        for (id, file) in &state.audio_files {
            by_name.entry(file.original_filename.as_str()).or_default().push(*id);
            by_lowercase_name.entry(file.original_filename.to_lowercase()).or_default().push(*id);
        }
        RecordingIndex { state, by_name, by_lowercase_name }
    }

    /// The one recording a row names, or why there is none.
    fn find(&self, name: &str, path: &str) -> Result<AudioFileId, String> {
        let exact = self.by_name.get(name).filter(|ids| !ids.is_empty());
        let candidates = match exact {
            Some(ids) => ids.clone(),
            None => self.by_lowercase_name.get(&name.to_lowercase()).cloned().unwrap_or_default(),
        };
        match candidates.as_slice() {
            [] => Err(format!("no recording is named {name:?}")),
            [one] => Ok(*one),
            many => {
                // A path with folders can tell recordings of the same name apart.
                let path = path.replace('\\', "/");
                let matching: Vec<AudioFileId> = many
                    .iter()
                    .copied()
                    .filter(|id| {
                        self.state.audio_files.get(id).is_some_and(|file| {
                            !file.folder.is_empty()
                                && path.ends_with(&format!("{}/{}", file.folder, file.original_filename))
                        })
                    })
                    .collect();
                match matching.as_slice() {
                    [one] => Ok(*one),
                    _ => Err(format!(
                        "{} recordings are named {name:?} (audio files {}); give audio_file_id or a Begin Path with \
                         the folder",
                        many.len(),
                        many.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(", ")
                    )),
                }
            }
        }
    }
}

fn number_cell(row: &ParsedRow, column: Option<usize>, name: &str) -> Result<Option<f64>, String> {
    let text = row.get(column);
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(Some(value)),
        _ => Err(format!("{name} {text:?} is not a number")),
    }
}

/// Reads `text` and plans its annotations against `state`.
pub fn plan_import(text: &str, options: &ImportOptions, state: &DomainState) -> Result<ImportPlan, ImportError> {
    let table = read_table(text, options.format)?;
    let label_column = table.require_column(&options.label_column)?;
    let kind_column = match &options.kind_column {
        Some(name) => Some(table.require_column(name)?),
        None => table.column(KIND),
    };
    let begin_column = table.require_column(BEGIN_TIME)?;
    let end_column = table.require_column(END_TIME)?;
    let offset_column = table.column(FILE_OFFSET);
    let low_column = table.column(LOW_FREQ);
    let high_column = table.column(HIGH_FREQ);
    let note_column = table.column("Note");
    let file_column = table.column(BEGIN_FILE);
    let path_column = table.column(BEGIN_PATH);
    if let Some(id) = options.audio_file_id {
        if !state.audio_files.contains_key(&id) {
            return Err(ImportError::UnknownRecording(id));
        }
    } else if file_column.is_none() && path_column.is_none() {
        return Err(ImportError::NoFileColumn);
    }
    let recordings = RecordingIndex::new(state);
    let mut plan = ImportPlan::default();
    let mut seen: HashSet<AnnotationKey> = HashSet::new();
    let mut seen_recordings: HashSet<AudioFileId> = HashSet::new();
    for row in &table.rows {
        let planned = (|| -> Result<AnnotationFields, String> {
            let audio_file_id = match options.audio_file_id {
                Some(id) => id,
                None => {
                    let path = row.get(path_column);
                    // A Begin File is a name (which may hold a slash: names are the user's); a
                    // path's last part is a name too.
                    let names: Vec<&str> = [row.get(file_column), base_name(row.get(file_column)), base_name(path)]
                        .into_iter()
                        .filter(|name| !name.is_empty())
                        .collect();
                    let Some(first) = names.first() else {
                        return Err("no Begin File or Begin Path to match a recording".into());
                    };
                    let mut found = recordings.find(first, path);
                    for name in &names[1..] {
                        if found.is_ok() {
                            break;
                        }
                        if let Ok(id) = recordings.find(name, path) {
                            found = Ok(id);
                        }
                    }
                    found?
                }
            };
            let label = row.get(Some(label_column));
            if label.is_empty() {
                return Err(format!("no label (the {:?} cell is empty)", options.label_column));
            }
            let kind = match row.get(kind_column) {
                "" => AnnotationKind::Positive,
                text => AnnotationKind::parse(text)
                    .ok_or_else(|| format!("kind {text:?} is not positive, negative or uncertain"))?,
            };
            let begin = number_cell(row, Some(begin_column), BEGIN_TIME)?.ok_or("no Begin Time (s)")?;
            let end = number_cell(row, Some(end_column), END_TIME)?.ok_or("no End Time (s)")?;
            let (start_seconds, end_seconds) = match number_cell(row, offset_column, FILE_OFFSET)? {
                Some(offset) => (offset, offset + (end - begin)),
                None => (begin, end),
            };
            let mut low_hz = number_cell(row, low_column, LOW_FREQ)?;
            let mut high_hz = number_cell(row, high_column, HIGH_FREQ)?;
            let nyquist = state.audio_files.get(&audio_file_id).map_or(0.0, |file| f64::from(file.sample_rate) / 2.0);
            // The full band (how a table writes "no band") is no band.
            if low_hz.is_none_or(|low| low == 0.0)
                && high_hz.is_none_or(|high| (high - nyquist).abs() < NYQUIST_TOLERANCE_HZ)
            {
                low_hz = None;
                high_hz = None;
            }
            let note = Some(row.get(note_column).to_string()).filter(|note| !note.is_empty());
            let fields = AnnotationFields {
                audio_file_id,
                start_seconds,
                end_seconds,
                low_hz,
                high_hz,
                label: label.to_string(),
                kind,
                note,
            };
            check_annotation(fields, state.audio_files.get(&audio_file_id))
                .map_err(|problem| format!("{}: {}", problem.field, problem.reason))
        })();
        match planned {
            Err(reason) => plan.bad_rows.push(BadRow { row: row.row, reason }),
            Ok(fields) => {
                if seen_recordings.insert(fields.audio_file_id) {
                    seen.extend(
                        state
                            .annotations
                            .values()
                            .filter(|annotation| annotation.audio_file_id == fields.audio_file_id)
                            .map(AnnotationKey::of_state),
                    );
                }
                if seen.insert(AnnotationKey::of_fields(&fields)) {
                    plan.annotations.push(PlannedAnnotation { row: row.row, fields });
                } else {
                    plan.duplicates += 1;
                }
            }
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::{AudioFileRegistered, Event};
    use crate::domain::ids::{EventSeq, Sha256Hex};

    fn state_with(files: &[(&str, &str)]) -> DomainState {
        let mut state = DomainState::default();
        for (index, (name, folder)) in files.iter().enumerate() {
            let id = index as u64 + 1;
            state.apply(
                EventSeq(id),
                &Event::AudioFileRegistered(AudioFileRegistered {
                    audio_file_id: AudioFileId(id),
                    original_filename: name.to_string(),
                    folder: folder.to_string(),
                    checksum_sha256: Sha256Hex(format!("{id}")),
                    size_bytes: 1,
                    duration_seconds: 60.0,
                    sample_rate: 16_000,
                    channels: 1,
                    codec: "pcm_s16le".into(),
                    stored_path: format!("audio/raw/{id}/original.wav"),
                }),
            );
        }
        state
    }

    fn options() -> ImportOptions {
        ImportOptions {
            format: TableFormat::Raven,
            audio_file_id: None,
            label_column: "Annotation".into(),
            kind_column: None,
        }
    }

    #[test]
    fn rows_are_matched_by_file_name_and_offsets_and_the_full_band_means_no_band() {
        let state = state_with(&[("a.wav", "x"), ("b.wav", "y")]);
        let text =
            "Begin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tBegin File\tFile Offset (s)\tAnnotation\n\
                    5\t6\t0\t8000\ta.wav\t5\tsong\n\
                    62\t63.5\t100\t900\tb.wav\t2\tgrunt\n";
        let plan = plan_import(text, &options(), &state).unwrap();
        assert!(plan.bad_rows.is_empty(), "{:?}", plan.bad_rows);
        let [first, second] = plan.annotations.as_slice() else { panic!("{plan:?}") };
        assert_eq!(
            (first.fields.audio_file_id, first.fields.low_hz, first.fields.high_hz),
            (AudioFileId(1), None, None)
        );
        assert_eq!(second.fields.audio_file_id, AudioFileId(2));
        assert_eq!((second.fields.start_seconds, second.fields.end_seconds), (2.0, 3.5));
        assert_eq!((second.fields.low_hz, second.fields.high_hz), (Some(100.0), Some(900.0)));
    }

    #[test]
    fn bad_rows_say_which_row_and_why() {
        let state = state_with(&[("a.wav", "x"), ("same.wav", "p"), ("same.wav", "q")]);
        let text = "Begin Time (s)\tEnd Time (s)\tBegin Path\tAnnotation\tKind\n\
                    1\t2\tC:\\data\\nope.wav\tsong\t\n\
                    1\tx\ta.wav\tsong\t\n\
                    1\t2\ta.wav\t \t\n\
                    1\t2\tsame.wav\tsong\t\n\
                    1\t2\t/d/q/same.wav\tsong\t\n\
                    50\t70\ta.wav\tsong\t\n\
                    1\t2\ta.wav\tsong\tmaybe\n";
        let plan = plan_import(text, &options(), &state).unwrap();
        let reasons: Vec<(usize, &str)> = plan.bad_rows.iter().map(|bad| (bad.row, bad.reason.as_str())).collect();
        assert_eq!(reasons.len(), 6, "{reasons:?}");
        assert!(reasons[0].1.contains("nope.wav"), "{reasons:?}");
        assert!(reasons[1].1.contains("not a number"), "{reasons:?}");
        assert!(reasons[2].1.contains("no label"), "{reasons:?}");
        assert!(reasons[3].1.contains("2 recordings are named"), "{reasons:?}");
        assert_eq!(reasons[4].0, 6);
        assert!(reasons[4].1.starts_with("end_seconds"), "{reasons:?}");
        assert!(reasons[5].1.contains("maybe"), "{reasons:?}");
        let [only] = plan.annotations.as_slice() else { panic!("{plan:?}") };
        assert_eq!((only.row, only.fields.audio_file_id), (5, AudioFileId(3)), "the folder in the path decides");
    }

    #[test]
    fn repeated_rows_count_as_duplicates_and_a_missing_column_is_an_error() {
        let state = state_with(&[("a.wav", "")]);
        let text = "Begin Time (s),End Time (s),Tag\n1,2,song\n1,2,song\n";
        let options = ImportOptions {
            format: TableFormat::Csv,
            audio_file_id: Some(AudioFileId(1)),
            label_column: "Tag".into(),
            ..options()
        };
        let plan = plan_import(text, &options, &state).unwrap();
        assert_eq!((plan.annotations.len(), plan.duplicates), (1, 1));
        let missing = ImportOptions { label_column: "Call".into(), ..options };
        assert!(matches!(plan_import(text, &missing, &state), Err(ImportError::Table(RavenError::MissingColumn(..)))));
    }
}
