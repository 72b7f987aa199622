//! Per-cluster summaries of the recordings' metadata (pure): for every field on the member
//! files, the distribution of its values (counts for strings, booleans and other
//! categorical values; count/min/median/max for numbers), nested objects flattened with
//! dotted paths (`deployment.group_composition.adults`), plus the distribution of windows
//! over folders and over recordings. Metadata values are counted once per member file;
//! folders and recordings are counted in windows. Noise (label -1) gets a summary too.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::ClusteringError;

/// At most this many distinct values are listed per field (most frequent first); the rest
/// are counted in `other_values`.
pub const MAX_LISTED_VALUES: usize = 50;

/// What we know of the file a window came from.
#[derive(Debug, Clone, PartialEq)]
pub struct FileContext {
    pub recording_id: String,
    pub folder: String,
    /// The file's metadata documents by name (e.g. the four documents of the file); each
    /// field is reported as `name.path`.
    pub documents: Vec<(String, Value)>,
}

/// One cluster's summary; `summary` is the JSON document to store (see `JsonText`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSummary {
    pub label: i64,
    pub size: u64,
    pub summary: Value,
}

#[derive(Default)]
struct FieldValues {
    files: u64,
    categorical: BTreeMap<String, u64>,
    numbers: Vec<f64>,
}

fn flatten(prefix: &str, value: &Value, output: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&path, inner, output);
            }
        }
        Value::Array(items) => {
            for item in items {
                flatten(prefix, item, output);
            }
        }
        Value::Null => {}
        scalar => output.push((prefix.to_string(), scalar.clone())),
    }
}

/// Every scalar leaf of a file's documents as `document.path` with its value as text (a string
/// as it is, anything else as JSON), in document order. Arrays give one entry per item.
pub fn flattened_fields(documents: &[(String, Value)]) -> Vec<(String, String)> {
    let mut leaves = Vec::new();
    for (name, document) in documents {
        flatten(name, document, &mut leaves);
    }
    leaves
        .into_iter()
        .map(|(path, value)| {
            let text = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
            (path, text)
        })
        .collect()
}

fn top_counts(counts: &BTreeMap<String, u64>, limit: usize) -> (Map<String, Value>, u64) {
    let mut sorted: Vec<(&String, &u64)> = counts.iter().collect();
    sorted.sort_by(|left, right| right.1.cmp(left.1).then(left.0.cmp(right.0)));
    let mut listed = Map::new();
    let mut other = 0;
    for (position, (value, count)) in sorted.into_iter().enumerate() {
        if position < limit {
            listed.insert(value.clone(), json!(count));
        } else {
            other += count;
        }
    }
    (listed, other)
}

fn median(sorted: &[f64]) -> f64 {
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

/// Summaries for every label in `labels` (noise included), sorted by label. `row_files[i]`
/// is the index in `files` of row i's file.
pub fn summarize_clusters(
    labels: &[i64],
    row_files: &[usize],
    files: &[FileContext],
) -> Result<Vec<ClusterSummary>, ClusteringError> {
    if labels.len() != row_files.len() {
        return Err(ClusteringError::LengthMismatch { what: "row_files", given: row_files.len(), rows: labels.len() });
    }
    if let Some(bad) = row_files.iter().find(|file| **file >= files.len()) {
        return Err(ClusteringError::InvalidParameter(format!(
            "row file index {bad} is beyond the {} files given",
            files.len()
        )));
    }
    // Per label: windows per file.
    let mut windows_by_label: BTreeMap<i64, BTreeMap<usize, u64>> = BTreeMap::new();
    for (label, file) in labels.iter().zip(row_files) {
        *windows_by_label.entry(*label).or_default().entry(*file).or_insert(0) += 1;
    }
    let flattened: Vec<Vec<(String, Value)>> = files
        .iter()
        .map(|file| {
            let mut fields = Vec::new();
            for (name, document) in &file.documents {
                flatten(name, document, &mut fields);
            }
            fields
        })
        .collect();
    let mut summaries = Vec::new();
    for (label, windows_per_file) in windows_by_label {
        let size: u64 = windows_per_file.values().sum();
        let mut folders: BTreeMap<String, u64> = BTreeMap::new();
        let mut recordings: BTreeMap<String, u64> = BTreeMap::new();
        let mut fields: BTreeMap<String, FieldValues> = BTreeMap::new();
        for (file, windows) in &windows_per_file {
            let context = &files[*file];
            *folders.entry(context.folder.clone()).or_insert(0) += windows;
            *recordings.entry(context.recording_id.clone()).or_insert(0) += windows;
            let mut seen_paths: Vec<&str> = Vec::new();
            for (path, value) in &flattened[*file] {
                let field = fields.entry(path.clone()).or_default();
                if !seen_paths.contains(&path.as_str()) {
                    field.files += 1;
                    seen_paths.push(path);
                }
                match value {
                    Value::Number(number) => match number.as_f64() {
                        Some(number) if number.is_finite() => field.numbers.push(number),
                        _ => *field.categorical.entry(number.to_string()).or_insert(0) += 1,
                    },
                    Value::String(text) => *field.categorical.entry(text.clone()).or_insert(0) += 1,
                    other => *field.categorical.entry(other.to_string()).or_insert(0) += 1,
                }
            }
        }
        let mut field_summaries = Map::new();
        for (path, mut field) in fields {
            let mut entry = Map::new();
            entry.insert("files".to_string(), json!(field.files));
            if !field.categorical.is_empty() {
                let (listed, other) = top_counts(&field.categorical, MAX_LISTED_VALUES);
                entry.insert("counts".to_string(), Value::Object(listed));
                if other > 0 {
                    entry.insert("other_values".to_string(), json!(other));
                }
            }
            if !field.numbers.is_empty() {
                field.numbers.sort_by(f64::total_cmp);
                entry.insert(
                    "numeric".to_string(),
                    json!({
                        "count": field.numbers.len(),
                        "min": field.numbers[0],
                        "median": median(&field.numbers),
                        "max": field.numbers[field.numbers.len() - 1],
                    }),
                );
            }
            field_summaries.insert(path, Value::Object(entry));
        }
        let (folder_counts, other_folders) = top_counts(&folders, MAX_LISTED_VALUES);
        let (recording_counts, other_recordings) = top_counts(&recordings, MAX_LISTED_VALUES);
        let summary = json!({
            "label": label,
            "noise": label < 0,
            "windows": size,
            "files": windows_per_file.len(),
            "folders": folder_counts,
            "other_folders_windows": other_folders,
            "recordings": recording_counts,
            "other_recordings_windows": other_recordings,
            "fields": field_summaries,
        });
        summaries.push(ClusterSummary { label, size, summary });
    }
    Ok(summaries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(recording: &str, folder: &str, site: &str, adults: i64, calves: Option<i64>) -> FileContext {
        let mut composition = json!({ "adults": adults });
        if let Some(calves) = calves {
            composition["calves"] = json!(calves);
        }
        FileContext {
            recording_id: recording.to_string(),
            folder: folder.to_string(),
            documents: vec![
                ("deployment".to_string(), json!({ "site": site, "group_composition": composition })),
                ("recording".to_string(), json!({ "singing": true, "tags": ["song", "chorus"] })),
            ],
        }
    }

    #[test]
    fn fields_are_flattened_and_counted_per_file() {
        let files = vec![
            file("r1", "2019/maui", "Maui", 2, Some(1)),
            file("r2", "2019/maui", "Maui", 4, None),
            file("r3", "2020/tonga", "Tonga", 3, None),
        ];
        let labels = [0, 0, 0, 0, -1, 0];
        let row_files = [0, 0, 1, 2, 2, 2];
        let summaries = summarize_clusters(&labels, &row_files, &files).unwrap();
        assert_eq!(summaries.len(), 2);
        let noise = &summaries[0];
        assert_eq!((noise.label, noise.size), (-1, 1));
        assert_eq!(noise.summary["noise"], json!(true));
        let cluster = &summaries[1].summary;
        assert_eq!(summaries[1].size, 5);
        assert_eq!(cluster["files"], json!(3));
        assert_eq!(cluster["folders"], json!({"2019/maui": 3, "2020/tonga": 2}));
        assert_eq!(cluster["recordings"]["r3"], json!(2));
        assert_eq!(cluster["fields"]["deployment.site"]["counts"], json!({"Maui": 2, "Tonga": 1}));
        let adults = &cluster["fields"]["deployment.group_composition.adults"]["numeric"];
        assert_eq!(adults, &json!({"count": 3, "min": 2.0, "median": 3.0, "max": 4.0}));
        assert_eq!(cluster["fields"]["deployment.group_composition.calves"]["files"], json!(1));
        assert_eq!(cluster["fields"]["recording.singing"]["counts"], json!({"true": 3}));
        assert_eq!(cluster["fields"]["recording.tags"]["counts"], json!({"chorus": 3, "song": 3}));
        assert_eq!(cluster["fields"]["recording.tags"]["files"], json!(3));
    }

    #[test]
    fn mismatched_inputs_are_typed_errors() {
        assert!(summarize_clusters(&[0, 1], &[0], &[]).is_err());
        assert!(summarize_clusters(&[0], &[3], &[]).is_err());
        assert!(summarize_clusters(&[], &[], &[]).unwrap().is_empty());
    }
}

/// At most this many dates are listed in a cluster's time summary (the earliest).
pub const MAX_LISTED_DATES: usize = 400;

/// Adds `time` to each summary: windows per hour of day (`"00"`-`"23"`) and per date, in UTC,
/// and how many windows had no known start. `row_starts[i]` is row i's absolute start;
/// `labels[i]` its label. Pure; summaries whose label has no rows are left as they are.
pub fn add_time_distributions(
    summaries: &mut [ClusterSummary],
    labels: &[i64],
    row_starts: &[Option<crate::recording_time::UtcTime>],
) {
    use crate::recording_time::UtcOffset;
    /// Windows per hour of day, per date, and without a start.
    type TimeCounts = (BTreeMap<String, u64>, BTreeMap<String, u64>, u64);
    let mut by_label: BTreeMap<i64, TimeCounts> = BTreeMap::new();
    for (label, start) in labels.iter().zip(row_starts) {
        let (hours, dates, unknown) = by_label.entry(*label).or_default();
        match start {
            Some(start) => {
                *hours.entry(format!("{:02}", start.local_hour(UtcOffset::UTC))).or_insert(0) += 1;
                *dates.entry(start.date_at(UtcOffset::UTC)).or_insert(0) += 1;
            }
            None => *unknown += 1,
        }
    }
    for summary in summaries.iter_mut() {
        let Some((hours, dates, unknown)) = by_label.remove(&summary.label) else { continue };
        let listed_dates: Map<String, Value> =
            dates.iter().take(MAX_LISTED_DATES).map(|(date, count)| (date.clone(), json!(count))).collect();
        if let Value::Object(object) = &mut summary.summary {
            object.insert(
                "time".to_string(),
                json!({
                    "hour_of_day_utc": hours,
                    "date_utc": listed_dates,
                    "dates": dates.len(),
                    "windows_without_start": unknown,
                }),
            );
        }
    }
}

#[cfg(test)]
mod time_tests {
    use super::*;
    use crate::recording_time::UtcTime;

    #[test]
    fn each_cluster_gets_its_hours_and_dates_and_the_windows_without_a_start() {
        let mut summaries = vec![
            ClusterSummary { label: 0, size: 3, summary: json!({"label": 0}) },
            ClusterSummary { label: 1, size: 1, summary: json!({"label": 1}) },
        ];
        let at = |text: &str| UtcTime::parse_iso8601(text).ok();
        add_time_distributions(
            &mut summaries,
            &[0, 0, 0, 1],
            &[at("2024-07-01T22:10:00Z"), at("2024-07-02T22:50:00Z"), None, at("2024-07-01T03:00:00Z")],
        );
        assert_eq!(summaries[0].summary["time"]["hour_of_day_utc"], json!({"22": 2}));
        assert_eq!(summaries[0].summary["time"]["date_utc"], json!({"2024-07-01": 1, "2024-07-02": 1}));
        assert_eq!(summaries[0].summary["time"]["windows_without_start"], 1);
        assert_eq!(summaries[1].summary["time"]["hour_of_day_utc"], json!({"03": 1}));
    }
}
