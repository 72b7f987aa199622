//! Recording start times in pages: the list's column and range filter, the recording page's
//! editor and history, a folder's time line (SVG), and a clustering job's occurrence heatmaps.

use maud::{html, Markup};

use super::{format_duration, format_time, layout, url_with_query, Notice, Section};
use crate::http::recording_time_api::Timeline;
use crate::projections::queries::AudioFileRow;
use crate::projections::recording_time_queries::RecordingTimeEditRow;
use crate::recording_time::occurrence::{BinKey, OccurrenceCount};
use crate::recording_time::UtcOffset;

/// `2024-07-01T06:30:00Z` as `2024-07-01 06:30:00`.
fn readable(iso: &str) -> String {
    iso.trim_end_matches('Z').replacen('T', " ", 1)
}

fn source_label(source: &str) -> &'static str {
    match source {
        "bext" => "from the file's bext chunk",
        "file_name" => "from the file name",
        "user" => "set by hand",
        _ => "",
    }
}

/// The recordings list's "Started (UTC)" cell.
pub fn started_cell(file: &AudioFileRow) -> Markup {
    html! {
        @match &file.recorded_at {
            Some(recorded_at) => time datetime=(recorded_at) title=[file.recorded_at_source.as_deref().map(source_label)] { (readable(recorded_at)) },
            None => span.muted { "unknown" },
        }
    }
}

/// The list filter's start-time range.
pub fn recorded_range_inputs(recorded_from: Option<&str>, recorded_to: Option<&str>) -> Markup {
    html! {
        label for="recorded-from" { "Started from" }
        input #recorded-from type="text" name="recorded_from" value=[recorded_from]
            placeholder="2024-07-01" size="12";
        label for="recorded-to" { "to" }
        input #recorded-to type="text" name="recorded_to" value=[recorded_to]
            placeholder="2024-07-31" size="12";
    }
}

pub fn timeline_link(folder: Option<&str>) -> Markup {
    let href = url_with_query("/audio/timeline", &[("folder", folder.map(String::from))]);
    html! {
        p { a href=(href) { "Time line of " @if let Some(folder) = folder { "folder " (folder) } @else { "all recordings" } } " (gaps and overlaps)" }
    }
}

/// The recording page's start time: what it is, where it came from, a form to change or clear
/// it (works without JavaScript), and its history.
pub fn recorded_at_section(file: &AudioFileRow, history: &[RecordingTimeEditRow]) -> Markup {
    html! {
        section aria-labelledby="recorded-at-heading" {
            h2 #recorded-at-heading { "Recording start" }
            p {
                @match &file.recorded_at {
                    Some(recorded_at) => {
                        "Started " strong { time datetime=(recorded_at) { (readable(recorded_at)) " UTC" } }
                        @if let Some(source) = &file.recorded_at_source { " (" (source_label(source)) ")" }
                        "."
                    }
                    None => "The start time is unknown: neither a bext chunk nor the file name says it.",
                }
                " "
                a href=(url_with_query("/audio/timeline", &[("folder", Some(file.folder.clone()).filter(|folder| !folder.is_empty()))])) {
                    "See the folder's time line"
                }
            }
            form.filters method="post" action=(format!("/audio/{}/recorded-at", file.id)) {
                label for="recorded-at" { "Start (ISO 8601 with a zone)" }
                input #recorded-at type="text" name="recorded_at" size="28"
                    value=[file.recorded_at.as_deref()] placeholder="2024-07-01T06:30:00Z";
                button type="submit" { "Save start time" }
                button type="submit" name="clear" value="1" { "Set to unknown" }
            }
            @if !history.is_empty() {
                details {
                    summary { "History (" (history.len()) ")" }
                    table {
                        thead { tr { th scope="col" { "When (UTC)" } th scope="col" { "Start (UTC)" } th scope="col" { "Source" } th scope="col" { "How" } th scope="col" { "By" } } }
                        tbody {
                            @for edit in history {
                                tr {
                                    td.nowrap { (format_time(&edit.set_at)) }
                                    td.nowrap { (edit.recorded_at.as_deref().map_or("unknown".to_string(), readable)) }
                                    td { (edit.source) }
                                    td { (edit.derivation) }
                                    td { (edit.set_by.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

const SVG_WIDTH: f64 = 1000.0;
const LANE_HEIGHT: f64 = 28.0;
const MIN_BAR_WIDTH: f64 = 4.0;
const DAY_MICROS: i64 = 86_400_000_000;
const AXIS_HEIGHT: f64 = 48.0;
const MAX_LANES: usize = 24;

/// Lanes for bars: each recording goes to the first lane free at its start, so lane 2 and
/// beyond hold only recordings that overlap another.
fn assign_lanes(spans: &[(i64, i64)]) -> Vec<usize> {
    let mut lane_ends: Vec<i64> = Vec::new();
    spans
        .iter()
        .map(|&(start, end)| match lane_ends.iter().position(|&lane_end| lane_end <= start + 1_000_000) {
            Some(lane) => {
                lane_ends[lane] = end;
                lane
            }
            None => {
                lane_ends.push(end);
                lane_ends.len() - 1
            }
        })
        .collect()
}

/// The time line as SVG: recordings as bars (overlapping ones on lower lanes, in red), gaps
/// shaded, a time axis below.
pub fn timeline_svg(timeline: &Timeline) -> Markup {
    let Some(first) = timeline.recordings.iter().map(|entry| entry.start.0).min() else {
        return html! {};
    };
    let last = timeline.recordings.iter().map(|entry| entry.end.0).max().unwrap_or(first).max(first + 1_000_000);
    let span = (last - first) as f64;
    let x = |micros: i64| ((micros - first) as f64 / span * (SVG_WIDTH - 20.0) + 10.0).clamp(0.0, SVG_WIDTH);
    let spans: Vec<(i64, i64)> = timeline.recordings.iter().map(|entry| (entry.start.0, entry.end.0)).collect();
    let lanes = assign_lanes(&spans);
    let lane_count = lanes.iter().copied().max().unwrap_or(0).min(MAX_LANES - 1) + 1;
    let height = lane_count as f64 * LANE_HEIGHT + AXIS_HEIGHT + 8.0;
    // Midnights (UTC) as ticks when the span is a day to six weeks; else six even ticks.
    let first_midnight = (first.div_euclid(DAY_MICROS) + 1) * DAY_MICROS;
    let midnights: Vec<i64> = (0..).map(|day| first_midnight + day * DAY_MICROS).take_while(|m| *m < last).collect();
    let ticks: Vec<(i64, String)> = if (1..=42).contains(&midnights.len()) {
        midnights
            .iter()
            .map(|micros| (*micros, crate::recording_time::UtcTime(*micros).date_at(UtcOffset::UTC)[5..].to_string()))
            .collect()
    } else {
        (0..=6)
            .map(|tick| {
                let micros = first + ((last - first) as f64 * f64::from(tick) / 6.0) as i64;
                (micros, readable(&crate::recording_time::UtcTime(micros).to_iso8601()).chars().take(16).collect())
            })
            .collect()
    };
    html! {
        svg.timeline xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {SVG_WIDTH} {height}")) width="100%"
            role="img" aria-label=(format!("time line of {} recordings, {} gaps, {} overlaps", timeline.recordings.len(), timeline.gaps.len(), timeline.overlaps.len())) {
            @for gap in &timeline.gaps {
                @if let (Ok(from), Ok(to)) = (crate::recording_time::UtcTime::parse_iso8601(&gap.from), crate::recording_time::UtcTime::parse_iso8601(&gap.to)) {
                    rect x=(format!("{:.1}", x(from.0))) y="0" width=(format!("{:.1}", (x(to.0) - x(from.0)).max(1.0)))
                        height=(format!("{:.1}", lane_count as f64 * LANE_HEIGHT)) fill="#fbe3c0" {
                        title { "gap of " (format_duration(gap.seconds)) ": " (readable(&gap.from)) " to " (readable(&gap.to)) " UTC" }
                    }
                }
            }
            @for (entry, lane) in timeline.recordings.iter().zip(&lanes) {
                @let lane = (*lane).min(MAX_LANES - 1);
                @let overlapping = timeline.overlaps.iter().any(|o| o.audio_file_id == entry.audio_file_id || o.overlaps_audio_file_id == entry.audio_file_id);
                a href=(format!("/audio/{}", entry.audio_file_id)) {
                    rect x=(format!("{:.1}", x(entry.start.0))) y=(format!("{:.1}", lane as f64 * LANE_HEIGHT + 3.0))
                        width=(format!("{:.1}", (x(entry.end.0) - x(entry.start.0)).max(MIN_BAR_WIDTH))) height=(format!("{:.1}", LANE_HEIGHT - 6.0))
                        fill=(if overlapping { "#c0392b" } else { "#2a6f97" }) {
                        title { (entry.filename) ": " (readable(&entry.recorded_at)) " to " (readable(&entry.ends_at)) " UTC" }
                    }
                }
            }
            @let axis_y = lane_count as f64 * LANE_HEIGHT + 4.0;
            line x1="10" x2=(SVG_WIDTH - 10.0) y1=(axis_y) y2=(axis_y) stroke="#555" {}
            @for (micros, label) in &ticks {
                @let tick_x = x(*micros);
                line x1=(format!("{tick_x:.1}")) x2=(format!("{tick_x:.1}")) y1="0" y2=(axis_y + 5.0) stroke="#999" stroke-dasharray="2 3" {}
                text x=(format!("{tick_x:.1}")) y=(axis_y + 18.0) font-size="11" text-anchor="middle" { (label) }
            }
            text x="10" y=(axis_y + 32.0) font-size="11" { (readable(&crate::recording_time::UtcTime(first).to_iso8601())) " UTC" }
            text x=(SVG_WIDTH - 10.0) y=(axis_y + 32.0) font-size="11" text-anchor="end" { (readable(&crate::recording_time::UtcTime(last).to_iso8601())) " UTC" }
        }
    }
}

fn count(number: usize, noun: &str) -> String {
    if number == 1 {
        format!("1 {noun}")
    } else {
        format!("{number} {noun}s")
    }
}

pub fn timeline_page(timeline: &Timeline, notice: Option<&Notice>) -> Markup {
    let folder_label =
        if timeline.folder.is_empty() { "all recordings".to_string() } else { format!("folder {}", timeline.folder) };
    layout(
        "Time line",
        Section::Recordings,
        notice,
        html! {
            p.breadcrumbs { a href="/audio" { "Recordings" } " / time line" }
            h1 { "Time line of " (folder_label) }
            p {
                (count(timeline.recordings.len(), "recording")) " with a known start, "
                (count(timeline.gaps.len(), "gap")) ", " (count(timeline.overlaps.len(), "overlap"))
                @if !timeline.without_start.is_empty() { ", " (timeline.without_start.len()) " without a start time" }
                ". Times are UTC. Bars are recordings (red: overlapping another), shaded spans are gaps."
            }
            @if timeline.recordings.is_empty() {
                p { "No recording here has a known start time." }
            } @else {
                div.timeline-wrap { (timeline_svg(timeline)) }
            }
            section.panel aria-labelledby="bulk-heading" {
                h2 #bulk-heading { "Read the start times again" }
                p { "Reads each file's bext chunk, then its name, again. Give an offset when the recorder's clock was set to local time (\"these files are UTC+10\")." }
                form.filters method="post" action="/audio/timeline/recorded-at" {
                    input type="hidden" name="folder" value=(timeline.folder);
                    label for="bulk-offset" { "Local time at UTC offset" }
                    input #bulk-offset type="text" name="utc_offset" placeholder="+10:00" size="8";
                    button type="submit" { "Read again" }
                }
            }
            @if !timeline.overlaps.is_empty() {
                h2 { "Overlaps" }
                table {
                    thead { tr { th scope="col" { "Recording" } th scope="col" { "Overlaps" } th scope="col" { "From (UTC)" } th scope="col" { "To (UTC)" } th scope="col" { "Length" } } }
                    tbody {
                        @for overlap in &timeline.overlaps {
                            tr {
                                td { a href=(format!("/audio/{}", overlap.audio_file_id)) { (overlap.audio_file_id) } }
                                td { a href=(format!("/audio/{}", overlap.overlaps_audio_file_id)) { (overlap.overlaps_audio_file_id) } }
                                td.nowrap { (readable(&overlap.from)) }
                                td.nowrap { (readable(&overlap.to)) }
                                td.nowrap { (format_duration(overlap.seconds)) }
                            }
                        }
                    }
                }
            }
            @if !timeline.gaps.is_empty() {
                h2 { "Gaps" }
                table {
                    thead { tr { th scope="col" { "After" } th scope="col" { "Before" } th scope="col" { "From (UTC)" } th scope="col" { "To (UTC)" } th scope="col" { "Length" } } }
                    tbody {
                        @for gap in &timeline.gaps {
                            tr {
                                td { a href=(format!("/audio/{}", gap.after_audio_file_id)) { (gap.after_audio_file_id) } }
                                td { a href=(format!("/audio/{}", gap.before_audio_file_id)) { (gap.before_audio_file_id) } }
                                td.nowrap { (readable(&gap.from)) }
                                td.nowrap { (readable(&gap.to)) }
                                td.nowrap { (format_duration(gap.seconds)) }
                            }
                        }
                    }
                }
            }
            h2 { "Recordings" }
            table {
                thead { tr { th scope="col" { "Recording" } th scope="col" { "Folder" } th scope="col" { "Start (UTC)" } th scope="col" { "End (UTC)" } th scope="col" { "Source" } } }
                tbody {
                    @for entry in &timeline.recordings {
                        tr {
                            td { a href=(format!("/audio/{}", entry.audio_file_id)) { (entry.filename) } }
                            td { (entry.folder) }
                            td.nowrap { (readable(&entry.recorded_at)) }
                            td.nowrap { (readable(&entry.ends_at)) }
                            td { (entry.recorded_at_source.as_deref().map(source_label).unwrap_or("")) }
                        }
                    }
                    @for file in &timeline.without_start {
                        tr {
                            td { a href=(format!("/audio/{}", file.audio_file_id)) { (file.filename) } }
                            td {} td.muted { "unknown" } td {} td {}
                        }
                    }
                }
            }
        },
    )
}

/// At most this many day columns are drawn (the most recent are dropped, and the page says so).
pub const MAX_HEATMAP_DAYS: usize = 92;

/// A table with shaded cells: one row per cluster label, one column per bin.
fn heatmap_table(caption: &str, counts: &[OccurrenceCount], columns: &[BinKey]) -> Markup {
    let mut labels: Vec<i64> = counts.iter().map(|count| count.label).collect();
    labels.dedup();
    let max = counts.iter().map(|count| count.count).max().unwrap_or(1).max(1) as f64;
    let lookup: std::collections::HashMap<(i64, &BinKey), u64> =
        counts.iter().map(|count| ((count.label, &count.bin), count.count)).collect();
    let column_label = |bin: &BinKey| match bin {
        BinKey::HourOfDay(hour) => format!("{hour:02}"),
        BinKey::Start(start) => start.get(5..10).unwrap_or(start).to_string(),
    };
    html! {
        div.table-wrap {
            table.heatmap {
                caption { (caption) }
                thead {
                    tr {
                        th scope="col" { "Cluster" }
                        @for column in columns { th scope="col" title=(match column { BinKey::Start(s) => s.clone(), BinKey::HourOfDay(h) => format!("{h:02}:00") }) { (column_label(column)) } }
                    }
                }
                tbody {
                    @for label in &labels {
                        tr {
                            th scope="row" { @if *label < 0 { "noise" } @else { (label) } }
                            @for column in columns {
                                @let count = lookup.get(&(*label, column)).copied().unwrap_or(0);
                                @let alpha = if count == 0 { 0.0 } else { 0.12 + 0.88 * count as f64 / max };
                                td style=(format!("background: rgba(42, 111, 151, {alpha:.3}); color: {}", if alpha > 0.55 { "#fff" } else { "#222" }))
                                    title=(format!("cluster {label}, {}: {count} windows", column_label(column))) {
                                    @if count > 0 { (count) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The clustering job page's occurrence section: windows per cluster per day and per hour of
/// day, at a chosen offset, with a form to change it (no JavaScript needed).
pub fn occurrence_section(
    job_id: u64,
    by_day: &[OccurrenceCount],
    by_hour: &[OccurrenceCount],
    offset: UtcOffset,
    windows_without_start: u64,
) -> Markup {
    let mut days: Vec<BinKey> = by_day.iter().map(|count| count.bin.clone()).collect();
    days.sort();
    days.dedup();
    let truncated = days.len() > MAX_HEATMAP_DAYS;
    days.truncate(MAX_HEATMAP_DAYS);
    let hours: Vec<BinKey> = (0..24).map(BinKey::HourOfDay).collect();
    let zone = if offset == UtcOffset::UTC { "UTC".to_string() } else { format!("UTC{offset}") };
    html! {
        section #occurrence aria-labelledby="occurrence-heading" {
            h2 #occurrence-heading { "Occurrence over time" }
            form.filters method="get" action=(format!("/clustering/{job_id}")) {
                label for="occurrence-offset" { "Times at UTC offset" }
                input #occurrence-offset type="text" name="utc_offset" value=(offset.to_string()) size="8" placeholder="+10:00";
                button type="submit" { "Show" }
                " "
                a href=(format!("/api/clustering-jobs/{job_id}/occurrence?bin=day&utc_offset={}", super::url_encode(&offset.to_string()))) { "as JSON" }
            }
            @if windows_without_start > 0 {
                p.muted { (windows_without_start) " clustered windows come from recordings whose start is unknown and are not counted." }
            }
            @if by_day.is_empty() {
                p { "No clustered window has a known start time (set the recordings' start times to see when each cluster occurs)." }
            } @else {
                (heatmap_table(&format!("Windows per cluster per day ({zone})"), by_day, &days))
                @if truncated { p.muted { "Only the first " (MAX_HEATMAP_DAYS) " days are drawn; the JSON has them all." } }
                (heatmap_table(&format!("Windows per cluster per hour of day ({zone})"), by_hour, &hours))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_recordings_go_to_lower_lanes() {
        let second = 1_000_000;
        assert_eq!(
            assign_lanes(&[(0, 10 * second), (10 * second, 20 * second), (15 * second, 30 * second)]),
            vec![0, 0, 1]
        );
    }

    #[test]
    fn heatmap_cells_are_shaded_by_count_and_names_are_escaped() {
        let counts = vec![
            OccurrenceCount { label: 0, bin: BinKey::HourOfDay(3), count: 4 },
            OccurrenceCount { label: 1, bin: BinKey::HourOfDay(3), count: 1 },
        ];
        let html = occurrence_section(7, &counts, &counts, UtcOffset::UTC, 2).into_string();
        assert!(html.contains("rgba(42, 111, 151, 1.000)"), "{html}");
        assert!(html.contains("2 clustered windows"));
    }
}
