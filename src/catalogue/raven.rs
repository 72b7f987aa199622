//! Raven Pro selection tables (tab-separated) and the same columns as CSV: a writer, and a
//! tolerant reader (a byte-order mark, CRLF or LF, quoted or bare cells, columns in any order,
//! unknown columns ignored). Pure: text in, rows out.
//!
//! A table has the standard columns first (`Selection`, `View`, `Channel`, `Begin Time (s)`,
//! `End Time (s)`, `Low Freq (Hz)`, `High Freq (Hz)`); a multi-file table adds `Begin File`,
//! `File Offset (s)` and `Begin Path`, and in it `Begin Time (s)` runs on across the files, as
//! if they were played one after another, while `File Offset (s)` is the time within the file.

/// Tab-separated (Raven) or comma-separated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    Raven,
    Csv,
}

impl TableFormat {
    pub fn parse(text: &str) -> Option<TableFormat> {
        match text.trim().to_ascii_lowercase().as_str() {
            "raven" | "txt" | "tsv" | "tab" => Some(TableFormat::Raven),
            "csv" => Some(TableFormat::Csv),
            _ => None,
        }
    }

    pub fn delimiter(self) -> char {
        match self {
            TableFormat::Raven => '\t',
            TableFormat::Csv => ',',
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            TableFormat::Raven => "text/tab-separated-values; charset=utf-8",
            TableFormat::Csv => "text/csv; charset=utf-8",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            TableFormat::Raven => "txt",
            TableFormat::Csv => "csv",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RavenError {
    #[error("the table is empty (no header line)")]
    Empty,
    #[error("the table has no {0:?} column (its columns: {1})")]
    MissingColumn(String, String),
    #[error("line {0}: a quoted cell is not closed")]
    UnclosedQuote(usize),
}

pub const SELECTION: &str = "Selection";
pub const VIEW: &str = "View";
pub const CHANNEL: &str = "Channel";
pub const BEGIN_TIME: &str = "Begin Time (s)";
pub const END_TIME: &str = "End Time (s)";
pub const LOW_FREQ: &str = "Low Freq (Hz)";
pub const HIGH_FREQ: &str = "High Freq (Hz)";
pub const BEGIN_FILE: &str = "Begin File";
pub const FILE_OFFSET: &str = "File Offset (s)";
pub const BEGIN_PATH: &str = "Begin Path";
pub const ANNOTATION: &str = "Annotation";
pub const KIND: &str = "Kind";
pub const CLUSTER: &str = "Cluster";
pub const SCORE: &str = "Score";
pub const BEGIN_DATE: &str = "Begin Date";
pub const BEGIN_CLOCK_TIME: &str = "Begin Clock Time";
pub const BEGIN_TIME_UTC: &str = "Begin Time UTC";

/// The recording a selection belongs to, as a table names it.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectionFile {
    /// Used to tell files apart (the recording id); never written.
    pub key: u64,
    /// The original file name.
    pub name: String,
    /// The original folder (relative, may be empty).
    pub folder: String,
    pub duration_seconds: f64,
    /// When the recording started, where known: a table then gives each selection's date and
    /// clock time (UTC).
    pub recorded_at: Option<crate::recording_time::UtcTime>,
}

/// One row of a table to write. Times are within the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub file: SelectionFile,
    pub start_seconds: f64,
    pub end_seconds: f64,
    pub low_hz: f64,
    pub high_hz: f64,
    pub annotation: Option<String>,
    pub kind: Option<String>,
    pub cluster: Option<i64>,
    pub score: Option<f64>,
}

/// Which optional columns a table has.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TableColumns {
    pub multi_file: bool,
    pub annotation: bool,
    pub kind: bool,
    pub cluster: bool,
    pub score: bool,
}

fn number(value: f64) -> String {
    // Rust prints the shortest text that reads back to the same number, never in exponent form.
    format!("{value}")
}

/// One cell, made safe for the format: a cell with the delimiter, a quote or a line break is
/// quoted (quotes doubled), which both pandas and [`read_table`] read back.
fn cell(text: &str, format: TableFormat) -> String {
    let needs_quotes = text.contains(format.delimiter()) || text.contains(['"', '\n', '\r']);
    if !needs_quotes {
        return text.to_string();
    }
    let cleaned: String = match format {
        // Raven reads one line per row: line breaks and tabs become spaces.
        TableFormat::Raven => text.replace(['\t', '\r', '\n'], " "),
        TableFormat::Csv => text.to_string(),
    };
    if cleaned.contains(['"', format.delimiter()]) || cleaned.contains(['\n', '\r']) {
        format!("\"{}\"", cleaned.replace('"', "\"\""))
    } else {
        cleaned
    }
}

/// `Begin Date` (`2024/07/01`, as Raven writes it), `Begin Clock Time` (`06:30:05.250`) and the
/// ISO 8601 instant of a selection starting `start_seconds` into a recording that started at
/// `recorded_at` (all UTC); empty cells when the start is unknown.
fn absolute_cells(recorded_at: Option<crate::recording_time::UtcTime>, start_seconds: f64) -> [String; 3] {
    let Some(recorded_at) = recorded_at else { return Default::default() };
    let start = crate::recording_time::window_start_utc(recorded_at, start_seconds);
    let offset = crate::recording_time::UtcOffset::UTC;
    let micros_of_day = start.local_second_of_day(offset) * 1_000_000 + start.micros().rem_euclid(1_000_000);
    let millis = (micros_of_day + 500) / 1000;
    let clock = format!(
        "{:02}:{:02}:{:02}.{:03}",
        millis / 3_600_000,
        millis % 3_600_000 / 60_000,
        millis % 60_000 / 1000,
        millis % 1000
    );
    [start.date_at(offset).replace('-', "/"), clock, start.to_iso8601()]
}

/// Writes a selection table. Rows are numbered from 1 in the order given. In a multi-file
/// table, files are laid end to end in the order they first appear, and `Begin Time (s)` is the
/// file's start on that line plus the time within the file.
pub fn write_selection_table(selections: &[Selection], columns: TableColumns, format: TableFormat) -> String {
    let mut header: Vec<&str> = vec![SELECTION, VIEW, CHANNEL, BEGIN_TIME, END_TIME, LOW_FREQ, HIGH_FREQ];
    if columns.multi_file {
        header.extend([BEGIN_FILE, FILE_OFFSET, BEGIN_PATH]);
    }
    for (wanted, name) in
        [(columns.annotation, ANNOTATION), (columns.kind, KIND), (columns.cluster, CLUSTER), (columns.score, SCORE)]
    {
        if wanted {
            header.push(name);
        }
    }
    // Absolute times as soon as one recording's start is known: Raven's own `Begin Date` and
    // `Begin Clock Time` (UTC), and the instant in ISO 8601.
    let absolute = selections.iter().any(|selection| selection.file.recorded_at.is_some());
    if absolute {
        header.extend([BEGIN_DATE, BEGIN_CLOCK_TIME, BEGIN_TIME_UTC]);
    }
    let delimiter = format.delimiter().to_string();
    let mut out = header.join(&delimiter);
    out.push('\n');
    let mut file_starts: Vec<(u64, f64)> = Vec::new();
    let mut line_end = 0.0;
    for (index, selection) in selections.iter().enumerate() {
        let file_start = match file_starts.iter().find(|(key, _)| *key == selection.file.key) {
            Some((_, start)) => *start,
            None => {
                let start = line_end;
                file_starts.push((selection.file.key, start));
                line_end += selection.file.duration_seconds.max(0.0);
                start
            }
        };
        let offset = if columns.multi_file { file_start } else { 0.0 };
        let mut cells = vec![
            (index + 1).to_string(),
            "Spectrogram 1".to_string(),
            "1".to_string(),
            number(offset + selection.start_seconds),
            number(offset + selection.end_seconds),
            number(selection.low_hz),
            number(selection.high_hz),
        ];
        if columns.multi_file {
            let path = if selection.file.folder.is_empty() {
                selection.file.name.clone()
            } else {
                format!("{}/{}", selection.file.folder, selection.file.name)
            };
            cells.extend([cell(&selection.file.name, format), number(selection.start_seconds), cell(&path, format)]);
        }
        if columns.annotation {
            cells.push(cell(selection.annotation.as_deref().unwrap_or(""), format));
        }
        if columns.kind {
            cells.push(cell(selection.kind.as_deref().unwrap_or(""), format));
        }
        if columns.cluster {
            cells.push(selection.cluster.map(|cluster| cluster.to_string()).unwrap_or_default());
        }
        if columns.score {
            cells.push(selection.score.map(number).unwrap_or_default());
        }
        if absolute {
            cells.extend(absolute_cells(selection.file.recorded_at, selection.start_seconds));
        }
        out.push_str(&cells.join(&delimiter));
        out.push('\n');
    }
    out
}

/// A table as read: header names (trimmed) and rows of cells, each with its line number.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedTable {
    pub headers: Vec<String>,
    pub rows: Vec<ParsedRow>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRow {
    /// 1 for the first row after the header.
    pub row: usize,
    pub cells: Vec<String>,
}

impl ParsedTable {
    /// The position of a column, matched without regard to case or surrounding blanks.
    pub fn column(&self, name: &str) -> Option<usize> {
        let name = name.trim();
        self.headers.iter().position(|header| header.eq_ignore_ascii_case(name))
    }

    pub fn require_column(&self, name: &str) -> Result<usize, RavenError> {
        self.column(name).ok_or_else(|| RavenError::MissingColumn(name.to_string(), self.headers.join(", ")))
    }
}

impl ParsedRow {
    /// A cell by column position, trimmed; empty when the row is short.
    pub fn get(&self, column: Option<usize>) -> &str {
        column.and_then(|column| self.cells.get(column)).map(|text| text.trim()).unwrap_or("")
    }
}

/// Reads a delimited table. Blank lines are skipped; a row shorter than the header has empty
/// cells at the end, and cells beyond the header are ignored.
pub fn read_table(text: &str, format: TableFormat) -> Result<ParsedTable, RavenError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let delimiter = format.delimiter();
    let mut records: Vec<(usize, Vec<String>)> = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut field_started_quoted = false;
    let mut line = 1usize;
    let mut record_line = 1usize;
    let mut chars = text.chars().peekable();
    while let Some(character) = chars.next() {
        if in_quotes {
            match character {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                other => field.push(other),
            }
            continue;
        }
        match character {
            '"' if field.trim().is_empty() && !field_started_quoted => {
                field.clear();
                in_quotes = true;
                field_started_quoted = true;
            }
            c if c == delimiter => {
                fields.push(std::mem::take(&mut field));
                field_started_quoted = false;
            }
            '\r' => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                field_started_quoted = false;
                records.push((record_line, std::mem::take(&mut fields)));
                line += 1;
                record_line = line;
            }
            other => field.push(other),
        }
    }
    if in_quotes {
        return Err(RavenError::UnclosedQuote(record_line));
    }
    if !field.is_empty() || !fields.is_empty() {
        fields.push(field);
        records.push((record_line, fields));
    }
    let mut records = records.into_iter().filter(|(_, cells)| cells.iter().any(|cell| !cell.trim().is_empty()));
    let (_, headers) = records.next().ok_or(RavenError::Empty)?;
    let headers: Vec<String> = headers.into_iter().map(|header| header.trim().to_string()).collect();
    let rows = records.enumerate().map(|(index, (_, cells))| ParsedRow { row: index + 1, cells }).collect();
    Ok(ParsedTable { headers, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(key: u64, name: &str, duration: f64) -> SelectionFile {
        SelectionFile {
            key,
            name: name.into(),
            folder: "maui/2024".into(),
            duration_seconds: duration,
            recorded_at: None,
        }
    }

    fn selection(file: SelectionFile, start: f64, end: f64, label: &str) -> Selection {
        Selection {
            file,
            start_seconds: start,
            end_seconds: end,
            low_hz: 0.0,
            high_hz: 8000.0,
            annotation: Some(label.into()),
            kind: Some("positive".into()),
            cluster: None,
            score: None,
        }
    }

    #[test]
    fn selections_of_recordings_with_a_known_start_get_their_date_and_clock_time_in_utc() {
        let started = crate::recording_time::UtcTime::parse_iso8601("2024-07-01T23:59:58Z").unwrap();
        let known = SelectionFile { recorded_at: Some(started), ..file(1, "a.wav", 60.0) };
        let table = write_selection_table(
            &[selection(known, 3.25, 4.0, "song"), selection(file(2, "b.wav", 30.0), 1.0, 2.0, "grunt")],
            TableColumns { multi_file: true, annotation: true, ..Default::default() },
            TableFormat::Raven,
        );
        let parsed = read_table(&table, TableFormat::Raven).unwrap();
        let date = parsed.column(BEGIN_DATE).expect("Begin Date");
        let clock = parsed.column(BEGIN_CLOCK_TIME).expect("Begin Clock Time");
        let utc = parsed.column(BEGIN_TIME_UTC).expect("Begin Time UTC");
        let first = &parsed.rows[0];
        assert_eq!(first.get(Some(date)), "2024/07/02", "the call starts after midnight");
        assert_eq!(first.get(Some(clock)), "00:00:01.250");
        assert_eq!(first.get(Some(utc)), "2024-07-02T00:00:01.250000Z");
        assert_eq!(parsed.rows[1].get(Some(date)), "", "a recording without a known start leaves them empty");
        let without = write_selection_table(
            &[selection(file(2, "b.wav", 30.0), 1.0, 2.0, "grunt")],
            TableColumns::default(),
            TableFormat::Raven,
        );
        assert!(!without.contains(BEGIN_DATE), "no start known anywhere: no absolute columns");
    }

    #[test]
    fn a_multi_file_table_runs_begin_times_on_across_files_and_keeps_offsets_within_the_file() {
        let a = file(1, "a.wav", 60.0);
        let b = file(2, "b.wav", 30.0);
        let table = write_selection_table(
            &[selection(a.clone(), 5.0, 6.5, "song"), selection(b, 1.0, 2.0, "grunt"), selection(a, 50.0, 51.0, "x")],
            TableColumns { multi_file: true, annotation: true, kind: true, ..Default::default() },
            TableFormat::Raven,
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tBegin File\t\
             File Offset (s)\tBegin Path\tAnnotation\tKind"
        );
        assert_eq!(lines[1], "1\tSpectrogram 1\t1\t5\t6.5\t0\t8000\ta.wav\t5\tmaui/2024/a.wav\tsong\tpositive");
        assert_eq!(lines[2], "2\tSpectrogram 1\t1\t61\t62\t0\t8000\tb.wav\t1\tmaui/2024/b.wav\tgrunt\tpositive");
        assert_eq!(lines[3], "3\tSpectrogram 1\t1\t50\t51\t0\t8000\ta.wav\t50\tmaui/2024/a.wav\tx\tpositive");
    }

    #[test]
    fn the_reader_takes_a_bom_crlf_quotes_extra_columns_and_any_column_order() {
        let text = "\u{feff}Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\t\
                    Delta Time (s)\tAnnotation\r\n\
                    1\tSpectrogram 1\t1\t1.25\t2.5\t100\t900\t1.25\t\"song, unit \"\"A\"\"\"\r\n\
                    \r\n\
                    2\tWaveform 1\t1\t3\t4\t0\t8000\t1\t grunt \r\n";
        let table = read_table(text, TableFormat::Raven).unwrap();
        assert_eq!(table.headers[0], "Selection", "the byte-order mark is dropped");
        assert_eq!(table.rows.len(), 2);
        let annotation = table.column("annotation");
        assert_eq!(table.rows[0].get(annotation), "song, unit \"A\"");
        assert_eq!(table.rows[1].get(annotation), "grunt");
        assert_eq!(table.rows[1].row, 2);
        assert_eq!(table.rows[1].get(table.column(BEGIN_TIME)), "3");
    }

    #[test]
    fn what_the_writer_escapes_the_reader_reads_back() {
        for format in [TableFormat::Raven, TableFormat::Csv] {
            let labels = ["plain", "with, comma", "with \"quotes\"", "tab\there", "\"leading quote"];
            let selections: Vec<Selection> =
                labels.iter().map(|label| selection(file(1, "a,b.wav", 10.0), 1.0, 2.0, label)).collect();
            let columns = TableColumns { multi_file: true, annotation: true, ..Default::default() };
            let table = read_table(&write_selection_table(&selections, columns, format), format).unwrap();
            let column = table.column(ANNOTATION);
            let read: Vec<&str> = table.rows.iter().map(|row| row.get(column)).collect();
            let expected: Vec<String> = labels
                .iter()
                .map(|label| if format == TableFormat::Raven { label.replace('\t', " ") } else { label.to_string() })
                .collect();
            assert_eq!(read, expected, "{format:?}");
            assert_eq!(table.rows[0].get(table.column(BEGIN_FILE)), "a,b.wav");
        }
    }

    #[test]
    fn an_unclosed_quote_and_an_empty_table_are_errors() {
        assert_eq!(read_table("", TableFormat::Csv), Err(RavenError::Empty));
        assert_eq!(read_table("a,b\n\"x,1\n", TableFormat::Csv), Err(RavenError::UnclosedQuote(2)));
    }
}
