//! Recordings: the list (search, folder tree, sort, paging, status badges, upload and import
//! forms), upload and import results, and the detail page of one recording.

use std::collections::BTreeMap;

use maud::{html, Markup};

use super::processing::{job_table, queue_form, QueueFormDefaults};
use super::{
    format_bytes, format_duration, format_time, layout, live_updates_after, offset_pager, status_badge, url_with_query,
    Notice, Section,
};
use crate::domain::ids::EventSeq;
use crate::http::audio_api::METADATA_FIELDS;
use crate::projections::queries::{AudioFileRow, EmbeddingSetRow, MetadataEditRow, Page, ProcessingJobRow};
use crate::projections::ui_queries::JobBadgeRow;

/// The list's filter as the person chose it (kept in links and forms).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordingsFilter {
    pub folder: Option<String>,
    pub search: Option<String>,
    pub sort: Option<String>,
    pub order: Option<String>,
    pub recorded_from: Option<String>,
    pub recorded_to: Option<String>,
}

impl RecordingsFilter {
    pub fn link(&self, offset: u64) -> String {
        url_with_query(
            "/audio",
            &[
                ("folder", self.folder.clone()),
                ("search", self.search.clone()),
                ("sort", self.sort.clone()),
                ("order", self.order.clone()),
                ("recorded_from", self.recorded_from.clone()),
                ("recorded_to", self.recorded_to.clone()),
                ("offset", (offset > 0).then(|| offset.to_string())),
            ],
        )
    }

    fn with_folder(&self, folder: Option<&str>) -> String {
        RecordingsFilter { folder: folder.map(String::from), ..self.clone() }.link(0)
    }
}

pub struct RecordingsView {
    pub page: Page<AudioFileRow>,
    /// Folders with how many files each holds directly.
    pub folders: Vec<(String, u64)>,
    pub badges: BTreeMap<u64, Vec<JobBadgeRow>>,
    pub filter: RecordingsFilter,
    /// A problem with the filter (bad sort, ...), shown next to the form.
    pub filter_error: Option<String>,
    pub notice: Option<Notice>,
    /// The log position the page shows; live updates start after it.
    pub events_after: EventSeq,
    pub queue_defaults: QueueFormDefaults,
    /// Folders the server may import from by path (`--import-root`); empty: import by path is off.
    pub import_roots: Vec<String>,
}

/// One folder in the tree: its path, depth, and files directly in it and below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderNode {
    pub path: String,
    pub name: String,
    pub depth: usize,
    pub files_here: u64,
    pub files_below: u64,
}

/// Builds the folder tree (every ancestor of a folder is a node), sorted by path.
pub fn folder_tree(folders: &[(String, u64)]) -> Vec<FolderNode> {
    let mut nodes: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (folder, count) in folders {
        let trimmed = folder.trim_matches('/');
        if trimmed.is_empty() {
            continue;
        }
        let parts: Vec<&str> = trimmed.split('/').collect();
        for end in 1..=parts.len() {
            let path = parts[..end].join("/");
            let entry = nodes.entry(path).or_default();
            entry.1 += count;
            if end == parts.len() {
                entry.0 += count;
            }
        }
    }
    nodes
        .into_iter()
        .map(|(path, (files_here, files_below))| {
            let depth = path.matches('/').count();
            let name = path.rsplit('/').next().unwrap_or(&path).to_string();
            FolderNode { path, name, depth, files_here, files_below }
        })
        .collect()
}

const SORTS: [(&str, &str); 6] = [
    ("recorded_at", "recording start"),
    ("id", "order added"),
    ("name", "file name"),
    ("folder", "folder"),
    ("duration", "duration"),
    ("created", "date added"),
];

pub fn recordings_page(view: &RecordingsView) -> Markup {
    let filter = &view.filter;
    let tree = folder_tree(&view.folders);
    let unfiled: u64 =
        view.folders.iter().filter(|(folder, _)| folder.trim_matches('/').is_empty()).map(|(_, count)| count).sum();
    layout(
        "Recordings",
        Section::Recordings,
        view.notice.as_ref(),
        html! {
            h1 { "Recordings" }
            (live_updates_after(view.events_after))
            div.with-sidebar {
                aside.sidebar aria-labelledby="folders-heading" {
                    h2 #folders-heading { "Folders" }
                    ul.folder-tree {
                        li {
                            a href=(filter.with_folder(None)) aria-current=[filter.folder.is_none().then_some("true")] {
                                "All recordings"
                            }
                        }
                        @for node in &tree {
                            li style=(format!("padding-left: {}em", node.depth + 1)) {
                                a href=(filter.with_folder(Some(&node.path)))
                                    aria-current=[(filter.folder.as_deref() == Some(node.path.as_str())).then_some("true")] {
                                    (node.name)
                                }
                                " " span.count { (node.files_below) }
                            }
                        }
                        @if unfiled > 0 {
                            li.muted { (unfiled) " not in a folder" }
                        }
                    }
                }
                div.content {
                    form.filters method="get" action="/audio" role="search" {
                        @if let Some(folder) = &filter.folder {
                            input type="hidden" name="folder" value=(folder);
                        }
                        label for="search" { "Search" }
                        input #search type="search" name="search" value=[filter.search.as_deref()]
                            placeholder="file name or folder";
                        label for="sort" { "Sort by" }
                        select #sort name="sort" {
                            @for (value, label) in SORTS {
                                option value=(value) selected[filter.sort.as_deref() == Some(value)] { (label) }
                            }
                        }
                        label for="order" { "Order" }
                        select #order name="order" {
                            option value="asc" selected[filter.order.as_deref() != Some("desc")] { "ascending" }
                            option value="desc" selected[filter.order.as_deref() == Some("desc")] { "descending" }
                        }
                        (crate::views::recording_time::recorded_range_inputs(filter.recorded_from.as_deref(), filter.recorded_to.as_deref()))
                        button type="submit" { "Apply" }
                    }
                    (crate::views::recording_time::timeline_link(filter.folder.as_deref()))
                    @if let Some(error) = &view.filter_error {
                        p.field-error role="alert" { (error) }
                    }
                    @if let Some(folder) = &filter.folder {
                        p.muted { "In folder " strong { (folder) } " and below." }
                    }
                    form #queue-selection method="post" action="/processing/queue" {}
                    div.table-wrap {
                        table.recordings {
                            thead {
                                tr {
                                    th scope="col" { span.visually-hidden { "Select" } }
                                    th scope="col" { "Recording" }
                                    th scope="col" { "Folder" }
                                    th scope="col" { "Started (UTC)" }
                                    th scope="col" { "Duration" }
                                    th scope="col" { "Format" }
                                    th scope="col" { "Processing" }
                                }
                            }
                            tbody {
                                @for file in &view.page.items {
                                    tr {
                                        td {
                                            input type="checkbox" name="audio_file_id" value=(file.id)
                                                form="queue-selection"
                                                aria-label=(format!("select recording {}", file.id));
                                        }
                                        td { a href=(format!("/audio/{}", file.id)) { (file.filename) } }
                                        td {
                                            a.muted href=(filter.with_folder(Some(&file.folder))) { (file.folder) }
                                        }
                                        td.nowrap { (crate::views::recording_time::started_cell(file)) }
                                        td.nowrap { (format_duration(file.duration_seconds)) }
                                        td.nowrap { (file.codec) ", " (file.sample_rate) " Hz" }
                                        td { (file_badges(view.badges.get(&file.id).map(Vec::as_slice).unwrap_or(&[]))) }
                                    }
                                }
                            }
                        }
                    }
                    @if view.page.items.is_empty() {
                        p { "No recordings match." }
                    }
                    (offset_pager(view.page.total, view.page.offset, view.page.limit, |offset| filter.link(offset)))
                    details.panel {
                        summary { "Queue processing for the selected recordings" }
                        (queue_form(&view.queue_defaults, "queue-selection", None))
                    }
                    section.panel #upload aria-labelledby="upload-heading" {
                        h2 #upload-heading { "Upload recordings" }
                        form method="post" action="/audio/upload" enctype="multipart/form-data" data-upload-progress {
                            p {
                                label for="upload-files" { "WAV, MP3 or FLAC files" }
                                input #upload-files type="file" name="file" multiple required
                                    accept=".wav,.mp3,.flac,audio/*";
                            }
                            p {
                                label for="upload-folder" { "Folder (optional)" }
                                input #upload-folder type="text" name="folder" placeholder="site-a/2026-07"
                                    value=[filter.folder.as_deref()];
                            }
                            button type="submit" { "Upload" }
                            p aria-live="polite" {
                                progress data-upload-bar hidden max="1" value="0" {}
                                " "
                                span data-upload-text {}
                            }
                        }
                    }
                    section.panel aria-labelledby="import-heading" {
                        h2 #import-heading { "Import a folder on the server" }
                        @if view.import_roots.is_empty() {
                            p.hint data-import-off {
                                "Importing by a path on the server is off. To allow it, start the server with "
                                code { "--import-root DIR" } " (repeatable): folders below DIR can then be imported "
                                "here. On the server's machine, " code { "humpback import DIR" } " imports any folder."
                            }
                        } @else {
                            form method="post" action="/audio/import" {
                                p {
                                    label for="import-path" { "Folder path on the server" }
                                    input #import-path type="text" name="path" required
                                        placeholder=(view.import_roots.first().map(String::as_str).unwrap_or(""));
                                }
                                p.hint {
                                    "Every WAV, MP3 and FLAC file below it is copied in; sub-folders become folders. "
                                    "Allowed below: "
                                    @for (index, root) in view.import_roots.iter().enumerate() {
                                        @if index > 0 { ", " }
                                        code { (root) }
                                    }
                                    "."
                                }
                                button type="submit" { "Import" }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// Badges for a recording's processing: per job, its model and status.
pub fn file_badges(jobs: &[JobBadgeRow]) -> Markup {
    html! {
        @if jobs.is_empty() {
            span.muted { "not processed" }
        }
        @for job in jobs {
            a.job-badge href=(format!("/processing/{}", job.job_id)) data-job-id=(job.job_id)
                title=(format!("processing job {}", job.job_id)) {
                span.model { (job.model_name) } " "
                (status_badge(&job.status))
                @if job.status == "running" {
                    @if let (Some(done), Some(total)) = (job.windows_done, job.windows_total) {
                        " " span data-field="progress-text" { (done) "/" (total) }
                    }
                }
            }
            " "
        }
    }
}

/// What happened to one uploaded or imported file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestResultRow {
    Added {
        name: String,
        audio_file_id: u64,
    },
    AlreadyThere {
        name: String,
        audio_file_id: u64,
    },
    Rejected {
        name: String,
        reason: String,
    },
    /// A folder or link the import did not enter.
    Skipped {
        name: String,
        reason: String,
    },
}

pub fn ingest_results_page(title: &str, intro: Option<&str>, results: &[IngestResultRow]) -> Markup {
    let count = |wanted: fn(&IngestResultRow) -> bool| results.iter().filter(|row| wanted(row)).count();
    let added = count(|row| matches!(row, IngestResultRow::Added { .. }));
    let already = count(|row| matches!(row, IngestResultRow::AlreadyThere { .. }));
    let rejected = count(|row| matches!(row, IngestResultRow::Rejected { .. }));
    let skipped = count(|row| matches!(row, IngestResultRow::Skipped { .. }));
    layout(
        title,
        Section::Recordings,
        None,
        html! {
            h1 { (title) }
            @if let Some(intro) = intro { p { (intro) } }
            p.lead {
                (added) " added, " (already) " already there, " (rejected) " rejected"
                @if skipped > 0 { ", " (skipped) " folders or links skipped" }
                "."
            }
            @if results.is_empty() {
                p { "No files were received." }
            } @else {
                div.table-wrap {
                    table {
                        thead { tr { th scope="col" { "File" } th scope="col" { "Result" } } }
                        tbody {
                            @for row in results {
                                tr {
                                    @match row {
                                        IngestResultRow::Added { name, audio_file_id } => {
                                            td { (name) }
                                            td { span.badge.ok { "added" } " as " a href=(format!("/audio/{audio_file_id}")) { "recording " (audio_file_id) } }
                                        }
                                        IngestResultRow::AlreadyThere { name, audio_file_id } => {
                                            td { (name) }
                                            td { span.badge.queued { "already there" } " as " a href=(format!("/audio/{audio_file_id}")) { "recording " (audio_file_id) } }
                                        }
                                        IngestResultRow::Rejected { name, reason } => {
                                            td { (name) }
                                            td { span.badge.failed { "rejected" } " " (reason) }
                                        }
                                        IngestResultRow::Skipped { name, reason } => {
                                            td { (name) }
                                            td { span.badge.canceled { "skipped" } " " (reason) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            p { a href="/audio" { "Back to the recordings" } }
        },
    )
}

/// The metadata editor's state: the text in each of the four fields and any error per field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataForm {
    pub texts: [String; 4],
    pub errors: [Option<String>; 4],
    /// An error about the edit as a whole (for example, the writer refused it).
    pub general_error: Option<String>,
}

impl MetadataForm {
    pub fn has_errors(&self) -> bool {
        self.general_error.is_some() || self.errors.iter().any(Option::is_some)
    }
}

pub struct RecordingDetailView {
    pub file: AudioFileRow,
    pub metadata_form: MetadataForm,
    pub edit_count: u64,
    pub metadata_edits: Vec<MetadataEditRow>,
    /// Every change of the recording's start time, newest first.
    pub recorded_at_history: Vec<crate::projections::recording_time_queries::RecordingTimeEditRow>,
    pub processing_jobs: Vec<ProcessingJobRow>,
    pub embedding_sets: Vec<EmbeddingSetRow>,
    /// The range shown in the spectrogram and offered in the player.
    pub view_start_seconds: f64,
    pub view_duration_seconds: f64,
    /// The top of the spectrogram's frequency axis, when the person chose one.
    pub view_max_frequency_hz: Option<f64>,
    pub notice: Option<Notice>,
    /// The log position the page shows; live updates start after it.
    pub events_after: EventSeq,
    pub queue_defaults: QueueFormDefaults,
    /// The first of its annotations, with the total.
    pub annotations: crate::projections::queries::Page<crate::projections::annotation_queries::AnnotationRow>,
    /// The windows of one embedding set in the range shown, as tiles.
    pub window_tiles: Vec<super::WindowTile>,
    pub window_tiles_set: Option<u64>,
    pub known_labels: Vec<String>,
    /// A detector's scores over the range shown, aligned with the spectrogram.
    pub score_track: Option<crate::views::classifiers::ScoreTrack>,
}

fn field_label(field: &str) -> &'static str {
    match field {
        "tag_data" => "Tag data",
        "visual_observations" => "Visual observations",
        "group_composition" => "Group composition",
        "prey_density_proxy" => "Prey density proxy",
        _ => "Field",
    }
}

pub fn recording_detail_page(view: &RecordingDetailView) -> Markup {
    let file = &view.file;
    let start = view.view_start_seconds;
    let duration = view.view_duration_seconds;
    let max_frequency = view.view_max_frequency_hz;
    let frequency_query = max_frequency.map(|hz| format!("&max_frequency={hz}")).unwrap_or_default();
    let spectrogram_src = format!(
        "/api/audio/{}/spectrogram.png?start={start}&duration={duration}&width=1000&height=320{frequency_query}",
        file.id
    );
    let range_link = |new_start: f64| {
        format!(
            "/audio/{}?start={}&duration={duration}{frequency_query}#spectrogram-heading",
            file.id,
            (new_start * 1000.0).round() / 1000.0
        )
    };
    let earlier = (start > 0.0).then(|| range_link((start - duration).max(0.0)));
    let later = (start + duration < file.duration_seconds).then(|| range_link(start + duration));
    let window_src = format!("/api/audio/{}/window?start={start}&duration={duration}", file.id);
    let title = format!("Recording {}", file.id);
    layout(
        &title,
        Section::Recordings,
        view.notice.as_ref(),
        html! {
            p.breadcrumbs { a href="/audio" { "Recordings" } " / " a href=(url_with_query("/audio", &[("folder", Some(file.folder.clone()))])) { (file.folder) } }
            h1 { (file.filename) }
            (live_updates_after(view.events_after))
            section aria-labelledby="info-heading" {
                h2 #info-heading { "File" }
                dl.facts {
                    dt { "Recording id" } dd { (file.id) }
                    dt { "Folder" } dd { (file.folder) }
                    dt { "Duration" } dd { (format_duration(file.duration_seconds)) " (" (format!("{:.3}", file.duration_seconds)) " s)" }
                    dt { "Sample rate" } dd { (file.sample_rate) " Hz" }
                    dt { "Channels" } dd { (file.channels) }
                    dt { "Codec" } dd { (file.codec) }
                    dt { "Size" } dd { (format_bytes(file.size_bytes)) }
                    dt { "SHA-256" } dd { code.checksum { (file.checksum_sha256) } }
                    dt { "Added" } dd { (format_time(&file.created_at)) }
                }
                p {
                    a href=(format!("/api/audio/{}/download", file.id)) download { "Download the original" }
                    " · "
                    a href=(format!("/events?aggregate=audio_file%3A{}", file.id)) { "Everything that happened to it" }
                }
            }
            (crate::views::recording_time::recorded_at_section(file, &view.recorded_at_history))
            section aria-labelledby="spectrogram-heading" {
                h2 #spectrogram-heading { "Spectrogram and player" }
                form.filters method="get" action=(format!("/audio/{}", file.id)) {
                    label for="view-start" { "Start (s)" }
                    input #view-start type="number" name="start" min="0" step="any" value=(start);
                    label for="view-duration" { "Duration (s)" }
                    input #view-duration type="number" name="duration" min="0.1" max="600" step="any" value=(duration);
                    label for="view-max-frequency" { "Top frequency (Hz)" }
                    input #view-max-frequency type="number" name="max_frequency" min="10" step="any"
                        value=[max_frequency] placeholder=(file.sample_rate / 2);
                    button type="submit" { "Show" }
                }
                @if earlier.is_some() || later.is_some() {
                    nav.pager aria-label="Move through the recording" {
                        @if let Some(href) = &earlier { a href=(href) rel="prev" { "← earlier" } }
                        @if let Some(href) = &later { a href=(href) rel="next" { "later →" } }
                    }
                }
                figure.spectrogram {
                    img src=(spectrogram_src) width="1000" height="320" loading="lazy"
                        alt=(format!("spectrogram of {} from {start} s for {duration} s", file.filename));
                    @if let Some(track) = &view.score_track {
                        (crate::views::classifiers::score_track_section(track, file.id, start, duration))
                    }
                    figcaption { "From " (start) " s for " (duration) " s; colour is loudness in dB (80 dB range)." }
                }
                audio controls preload="none" src=(window_src) {
                    a href=(window_src) { "Download this range as WAV" }
                }
            }
            @if let Some(set) = view.window_tiles_set {
                section aria-labelledby="windows-heading" {
                    h2 #windows-heading { "Windows in this range" }
                    p.muted { "Embedding set " (set) " (choose another below); " (view.window_tiles.len()) " windows overlap the range shown." }
                    (super::tile_grid("recording-windows", &view.window_tiles, &view.known_labels))
                }
            }
            (crate::views::annotations::annotations_section(file.id, &view.annotations.items, view.annotations.total, start, duration))
            section aria-labelledby="metadata-heading" {
                h2 #metadata-heading { "Metadata" }
                p.muted { "Each field is a JSON object. Saving replaces all four fields. " (view.edit_count) " edits so far." }
                @if let Some(error) = &view.metadata_form.general_error {
                    p.field-error role="alert" { (error) }
                }
                form.metadata method="post" action=(format!("/audio/{}/metadata", file.id)) {
                    @for (index, field) in METADATA_FIELDS.iter().enumerate() {
                        @let id = format!("metadata-{field}");
                        @let error = view.metadata_form.errors[index].as_ref();
                        div.field.has-error[error.is_some()] {
                            label for=(id) { (field_label(field)) " " code { (field) } }
                            textarea id=(id) name=(field) rows="4"
                                aria-invalid=[error.is_some().then_some("true")]
                                aria-describedby=[error.map(|_| format!("{id}-error"))] {
                                (view.metadata_form.texts[index])
                            }
                            @if let Some(error) = error {
                                p.field-error id=(format!("{id}-error")) { (error) }
                            }
                        }
                    }
                    button type="submit" { "Save metadata" }
                }
                h3 { "History of edits" }
                @if view.metadata_edits.is_empty() {
                    p.muted { "No edits yet." }
                } @else {
                    div.table-wrap {
                        table {
                            thead { tr { th scope="col" { "Event" } th scope="col" { "When (UTC)" } th scope="col" { "By" } th scope="col" { "Changes" } } }
                            tbody {
                                @for edit in &view.metadata_edits {
                                    tr {
                                        td { a href=(format!("/events?cursor={}", edit.seq + 1)) { (edit.seq) } }
                                        td.nowrap { (format_time(&edit.edited_at)) }
                                        td { (edit.edited_by.as_deref().unwrap_or("—")) }
                                        td { code.json { (edit.changes.to_string()) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="processing-heading" {
                h2 #processing-heading { "Processing history" }
                @if view.processing_jobs.is_empty() {
                    p.muted { "This recording has not been processed yet." }
                } @else {
                    (job_table(&view.processing_jobs, None))
                }
                details.panel {
                    summary { "Queue processing of this recording" }
                    form #queue-this method="post" action="/processing/queue" {
                        input type="hidden" name="audio_file_id" value=(file.id);
                    }
                    (queue_form(&view.queue_defaults, "queue-this", None))
                }
            }
            section aria-labelledby="embeddings-heading" {
                h2 #embeddings-heading { "Embedding sets" }
                @if view.embedding_sets.is_empty() {
                    p.muted { "No embedding sets yet." }
                } @else {
                    div.table-wrap {
                        table {
                            thead {
                                tr {
                                    th scope="col" { "Set" } th scope="col" { "Model" } th scope="col" { "Window / hop" }
                                    th scope="col" { "Rate" } th scope="col" { "Windows" } th scope="col" { "Dimension" }
                                    th scope="col" { "Created (UTC)" } th scope="col" { "Download" }
                                    th scope="col" { "See and hear a window" }
                                }
                            }
                            tbody {
                                @for set in &view.embedding_sets {
                                    tr {
                                        td { (set.id) }
                                        td { (set.model_name) " " span.muted { (set.model_version) } }
                                        td.nowrap { (set.window_seconds) " s / " (set.hop_seconds) " s" }
                                        td.nowrap { (set.target_sample_rate) " Hz" }
                                        td { (set.row_count) }
                                        td { (set.vector_dim) }
                                        td.nowrap { (format_time(&set.created_at)) }
                                        td {
                                            a href=(format!("/api/embedding-sets/{}/download", set.id)) { "Parquet" }
                                            " · "
                                            a href=(format!("/audio/{}?embedding_set={}&start={start}&duration={duration}#windows-heading", file.id, set.id)) { "tiles" }
                                        }
                                        td {
                                            @if set.row_count > 0 {
                                                form.inline method="get" action=(format!("/audio/{}", file.id)) {
                                                    input type="hidden" name="embedding_set" value=(set.id);
                                                    label.visually-hidden for=(format!("window-of-set-{}", set.id)) {
                                                        "window number in embedding set " (set.id)
                                                    }
                                                    input id=(format!("window-of-set-{}", set.id)) type="number" name="window"
                                                        min="0" max=(set.row_count - 1) step="1" value="0" size="6";
                                                    " "
                                                    button.secondary type="submit" { "Show" }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_tree_has_every_ancestor_with_counts_below() {
        let tree = folder_tree(&[("a/b".into(), 2), ("a/c/d".into(), 1), ("e".into(), 4), ("".into(), 3)]);
        let summary: Vec<(&str, usize, u64, u64)> =
            tree.iter().map(|node| (node.path.as_str(), node.depth, node.files_here, node.files_below)).collect();
        assert_eq!(
            summary,
            vec![("a", 0, 0, 3), ("a/b", 1, 2, 2), ("a/c", 1, 0, 1), ("a/c/d", 2, 1, 1), ("e", 0, 4, 4)]
        );
    }
}
