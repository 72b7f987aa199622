//! The annotations section of a recording's page: a table of its annotations with a remove
//! button each, and a form to add one. Plain forms (no JavaScript); every text escaped.

use maud::{html, Markup};

use crate::projections::annotation_queries::AnnotationRow;

fn band(row: &AnnotationRow) -> String {
    match (row.low_hz, row.high_hz) {
        (None, None) => "all".to_string(),
        (low, high) => format!(
            "{}–{} Hz",
            low.map_or_else(|| "0".to_string(), |hz| format!("{hz}")),
            high.map_or_else(|| "Nyquist".to_string(), |hz| format!("{hz}"))
        ),
    }
}

/// At most this many annotations are listed on a recording's page (the rest through the API).
pub const ANNOTATIONS_SHOWN: u64 = 500;

/// `audio_file_id`'s annotations (the first of `total`), a remove button for each, and an add
/// form that starts at the range the page shows.
pub fn annotations_section(
    audio_file_id: u64,
    rows: &[AnnotationRow],
    total: u64,
    start: f64,
    duration: f64,
) -> Markup {
    html! {
        section #annotations aria-labelledby="annotations-heading" {
            h2 #annotations-heading { "Annotations" }
            p.muted {
                (total) " annotations"
                @if (rows.len() as u64) < total {
                    " (the first " (rows.len()) " are listed; "
                    a href=(format!("/api/annotations?audio_file_id={audio_file_id}")) { "all of them" }
                    " through the API)"
                }
                ". Export as a "
                a href=(format!("/api/audio/{audio_file_id}/selections.txt")) { "Raven selection table" }
                " or "
                a href=(format!("/api/audio/{audio_file_id}/selections.csv")) { "CSV" }
                "."
            }
            @if !rows.is_empty() {
                div.table-wrap {
                    table {
                        thead { tr { th { "Label" } th { "Kind" } th { "Span (s)" } th { "Band" } th { "Note" } th { "By" } th { "Source" } th { span.visually-hidden { "Remove" } } } }
                        tbody {
                            @for row in rows {
                                tr {
                                    td { (row.label) }
                                    td { (row.kind) }
                                    td {
                                        a href=(format!("/audio/{audio_file_id}?start={}&duration={}#spectrogram-heading", row.start_seconds, (row.end_seconds - row.start_seconds).max(0.1))) {
                                            (format!("{:.3}–{:.3}", row.start_seconds, row.end_seconds))
                                        }
                                    }
                                    td { (band(row)) }
                                    td { (row.note.as_deref().unwrap_or("")) }
                                    td { (row.created_by.as_deref().unwrap_or("")) }
                                    td { (row.source) }
                                    td {
                                        form method="post" action=(format!("/audio/{audio_file_id}/annotations/{}/delete", row.id)) {
                                            button type="submit" aria-label=(format!("Remove annotation {} ({})", row.id, row.label)) { "Remove" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h3 { "Add an annotation" }
            form.filters method="post" action=(format!("/audio/{audio_file_id}/annotations")) {
                label for="annotation-start" { "Start (s)" }
                input #annotation-start type="number" name="start_seconds" min="0" step="any" required value=(start);
                label for="annotation-end" { "End (s)" }
                input #annotation-end type="number" name="end_seconds" min="0" step="any" required value=(((start + duration) * 1000.0).round() / 1000.0);
                label for="annotation-label" { "Label" }
                input #annotation-label type="text" name="label" maxlength="200" required;
                label for="annotation-kind" { "Kind" }
                select #annotation-kind name="kind" {
                    option value="positive" selected { "positive" }
                    option value="negative" { "negative" }
                    option value="uncertain" { "uncertain" }
                }
                label for="annotation-low" { "Low (Hz)" }
                input #annotation-low type="number" name="low_hz" min="0" step="any";
                label for="annotation-high" { "High (Hz)" }
                input #annotation-high type="number" name="high_hz" min="0" step="any";
                label for="annotation-note" { "Note" }
                input #annotation-note type="text" name="note" maxlength="2000";
                button type="submit" { "Add" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_notes_are_escaped() {
        let row = AnnotationRow {
            id: 4,
            audio_file_id: 1,
            filename: "a.wav".into(),
            folder: String::new(),
            start_seconds: 1.0,
            end_seconds: 2.5,
            low_hz: Some(100.0),
            high_hz: None,
            label: "<script>alert(1)</script>".into(),
            kind: "positive".into(),
            note: Some("a & b".into()),
            source: "manual".into(),
            created_by: Some("<b>ana</b>".into()),
            created_at: String::new(),
            updated_by: None,
            updated_at: String::new(),
        };
        let html = annotations_section(1, &[row], 3, 0.0, 10.0).into_string();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("a &amp; b") && html.contains("&lt;b&gt;ana&lt;/b&gt;"));
        assert!(html.contains("100–Nyquist Hz"));
        assert!(html.contains("action=\"/audio/1/annotations/4/delete\""));
        assert!(html.contains("the first 1 are listed"), "{html}");
    }
}
