//! Processing jobs: the list (status filter, paging, live progress, cancel and retry), the
//! detail of one job with its events, and the form that queues processing.

use std::collections::BTreeMap;

use maud::{html, Markup};

use super::events::event_row_list;
use super::{
    format_time, job_progress, layout, live_updates_after, offset_pager, status_badge, url_with_query, Notice, Section,
};
use crate::domain::ids::EventSeq;
use crate::log::envelope::EnvelopeJson;
use crate::projections::queries::{Page, ProcessingJobRow};

/// Every status a processing job can have, in the order of its life.
pub const JOB_STATUSES: [&str; 5] = ["queued", "running", "complete", "failed", "canceled"];

/// What the queue form offers and fills in.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueFormDefaults {
    /// Registered models; the first is selected.
    pub model_names: Vec<String>,
    pub window_seconds: f64,
    pub hop_seconds: f64,
    pub target_sample_rate: u32,
    pub feature_config: String,
}

impl Default for QueueFormDefaults {
    fn default() -> Self {
        QueueFormDefaults {
            model_names: Vec::new(),
            window_seconds: 5.0,
            hop_seconds: 5.0,
            target_sample_rate: 32_000,
            feature_config: "{}".into(),
        }
    }
}

/// The encoding fields of the queue form. They belong to the form with id `form_id` (declared
/// elsewhere on the page, so that checkboxes in a table can belong to it too).
pub fn queue_form(defaults: &QueueFormDefaults, form_id: &str, error: Option<&str>) -> Markup {
    let id = |name: &str| format!("{form_id}-{name}");
    html! {
        div.queue-form {
            @if let Some(error) = error {
                p.field-error role="alert" { (error) }
            }
            p {
                label for=(id("model")) { "Model" }
                @if defaults.model_names.is_empty() {
                    input id=(id("model")) type="text" name="model_name" form=(form_id) required placeholder="perch";
                } @else {
                    select id=(id("model")) name="model_name" form=(form_id) {
                        @for name in &defaults.model_names {
                            option value=(name) { (name) }
                        }
                    }
                }
            }
            p.inline-fields {
                span {
                    label for=(id("window")) { "Window (s)" }
                    input id=(id("window")) type="number" name="window_seconds" form=(form_id) min="0.1" step="any"
                        value=(defaults.window_seconds);
                }
                span {
                    label for=(id("hop")) { "Hop (s)" }
                    input id=(id("hop")) type="number" name="hop_seconds" form=(form_id) min="0.1" step="any"
                        value=(defaults.hop_seconds);
                }
                span {
                    label for=(id("rate")) { "Sample rate (Hz)" }
                    input id=(id("rate")) type="number" name="target_sample_rate" form=(form_id) min="1000" step="1"
                        value=(defaults.target_sample_rate);
                }
            }
            p {
                label for=(id("features")) { "Feature configuration (JSON)" }
                textarea id=(id("features")) name="feature_config" form=(form_id) rows="2" {
                    (defaults.feature_config)
                }
            }
            button type="submit" form=(form_id) { "Queue processing" }
        }
    }
}

/// Cancel or retry buttons for a job, each a small form that comes back to `return_to`. Both
/// are always rendered (hidden when they do not apply) so `live.js` can show the one that
/// applies as the job's status changes (`data-shown-when` lists those statuses).
pub fn job_actions(job: &ProcessingJobRow, return_to: &str) -> Markup {
    let cancelable = matches!(job.status.as_str(), "queued" | "running") && !job.cancel_requested;
    let retryable = matches!(job.status.as_str(), "failed" | "canceled");
    html! {
        form.inline method="post" action=(format!("/processing/{}/cancel", job.id))
            data-shown-when="queued running" hidden[!cancelable] {
            input type="hidden" name="return_to" value=(return_to);
            button.secondary type="submit" aria-label=(format!("cancel processing job {}", job.id)) { "Cancel" }
        }
        @if job.cancel_requested && job.status == "running" {
            span.muted { "cancel requested" }
        }
        form.inline method="post" action=(format!("/processing/{}/retry", job.id))
            data-shown-when="failed canceled" hidden[!retryable] {
            input type="hidden" name="return_to" value=(return_to);
            button.secondary type="submit" aria-label=(format!("retry processing job {}", job.id)) { "Retry" }
        }
    }
}

/// A table of jobs, with a recording column (named from `recording_names`) when given.
pub fn job_table(jobs: &[ProcessingJobRow], recording_names: Option<&BTreeMap<u64, String>>) -> Markup {
    html! {
        div.table-wrap {
            table.jobs {
                thead {
                    tr {
                        th scope="col" { "Job" }
                        @if recording_names.is_some() { th scope="col" { "Recording" } }
                        th scope="col" { "Model" }
                        th scope="col" { "Window / hop / rate" }
                        th scope="col" { "Status" }
                        th scope="col" { "Progress" }
                        th scope="col" { "Queued / started / finished (UTC)" }
                        th scope="col" { "Error" }
                        th scope="col" { span.visually-hidden { "Actions" } }
                    }
                }
                tbody {
                    @for job in jobs {
                        tr data-job-id=(job.id) data-status=(job.status) {
                            td { a href=(format!("/processing/{}", job.id)) { (job.id) } }
                            @if let Some(names) = recording_names {
                                td {
                                    a href=(format!("/audio/{}", job.audio_file_id)) {
                                        @match names.get(&job.audio_file_id) {
                                            Some(name) => { (name) }
                                            None => { "recording " (job.audio_file_id) }
                                        }
                                    }
                                }
                            }
                            td { (job.model_name) br; span.muted { (job.model_version) } }
                            td.nowrap { (job.window_seconds) " s / " (job.hop_seconds) " s / " (job.target_sample_rate) " Hz" }
                            td { (status_badge(&job.status)) @if job.attempt > 1 { " " span.muted { "attempt " (job.attempt) } } }
                            td { (job_progress(job)) }
                            td.nowrap.small {
                                (format_time(&job.created_at)) br;
                                (job.started_at.as_deref().map(format_time).unwrap_or_else(|| "—".into())) br;
                                (job.finished_at.as_deref().map(format_time).unwrap_or_else(|| "—".into()))
                            }
                            td.small {
                                @if let Some(error) = &job.error_message { span.error-text { (error) } }
                                @if let Some(warning) = &job.warning { span.warning-text { (warning) } }
                            }
                            td { (job_actions(job, &format!("/processing/{}", job.id))) }
                        }
                    }
                }
            }
        }
    }
}

pub struct ProcessingListView {
    pub page: Page<ProcessingJobRow>,
    pub status: Option<String>,
    pub notice: Option<Notice>,
    /// The log position the page shows; live updates start after it.
    pub events_after: EventSeq,
    pub filter_error: Option<String>,
    pub queue_defaults: QueueFormDefaults,
    /// Names of the recordings of the listed jobs.
    pub recording_names: BTreeMap<u64, String>,
    /// Remote workers connected now.
    pub workers: crate::workers::coordinator::WorkersListing,
}

pub fn processing_list_page(view: &ProcessingListView) -> Markup {
    let link = |offset: u64| {
        url_with_query(
            "/processing",
            &[("status", view.status.clone()), ("offset", (offset > 0).then(|| offset.to_string()))],
        )
    };
    layout(
        "Processing",
        Section::Processing,
        view.notice.as_ref(),
        html! {
            h1 { "Processing" }
            (live_updates_after(view.events_after))
            form.filters method="get" action="/processing" {
                label for="status" { "Status" }
                select #status name="status" {
                    option value="" { "any status" }
                    @for status in JOB_STATUSES {
                        option value=(status) selected[view.status.as_deref() == Some(status)] { (status) }
                    }
                }
                button type="submit" { "Filter" }
            }
            @if let Some(error) = &view.filter_error {
                p.field-error role="alert" { (error) }
            }
            @if view.page.items.is_empty() {
                p { "No processing jobs" @if let Some(status) = &view.status { " with status " (status) } "." }
            } @else {
                (job_table(&view.page.items, Some(&view.recording_names)))
            }
            (offset_pager(view.page.total, view.page.offset, view.page.limit, link))
            (super::workers::workers_section(&view.workers))
            section.panel aria-labelledby="queue-heading" {
                h2 #queue-heading { "Queue processing" }
                form #queue-standalone method="post" action="/processing/queue" {
                    p.inline-fields {
                        span {
                            label for="queue-audio" { "Recording id" }
                            input #queue-audio type="number" name="audio_file_id" min="1" step="1";
                        }
                        span {
                            label for="queue-folder" { "or every recording in folder" }
                            input #queue-folder type="text" name="folder" placeholder="site-a";
                        }
                    }
                }
                (queue_form(&view.queue_defaults, "queue-standalone", None))
            }
        },
    )
}

pub struct ProcessingDetailView {
    pub job: ProcessingJobRow,
    pub recording_name: Option<String>,
    /// The job's events, newest first.
    pub events: Vec<EnvelopeJson>,
    pub notice: Option<Notice>,
    /// The log position the page shows; live updates start after it.
    pub events_after: EventSeq,
}

pub fn processing_detail_page(view: &ProcessingDetailView) -> Markup {
    let job = &view.job;
    let title = format!("Processing job {}", job.id);
    layout(
        &title,
        Section::Processing,
        view.notice.as_ref(),
        html! {
            p.breadcrumbs { a href="/processing" { "Processing" } " / job " (job.id) }
            h1 { (title) }
            (live_updates_after(view.events_after))
            // When the job finishes, live.js fetches the page named by data-refresh-when-finished
            // and swaps these parts in.
            div #job-facts data-refresh-when-finished=(format!("/processing/{}", job.id)) data-job-id=(job.id) data-status=(job.status) {
                dl.facts {
                    dt { "Recording" }
                    dd {
                        a href=(format!("/audio/{}", job.audio_file_id)) {
                            (view.recording_name.as_deref().unwrap_or("(unknown recording)"))
                        }
                        " (id " (job.audio_file_id) ")"
                    }
                    dt { "Status" } dd { (status_badge(&job.status)) }
                    dt { "Progress" } dd { (job_progress(job)) }
                    dt { "Model" } dd { (job.model_name) " " span.muted { (job.model_version) } }
                    dt { "Window / hop" } dd { (job.window_seconds) " s / " (job.hop_seconds) " s" }
                    dt { "Sample rate" } dd { (job.target_sample_rate) " Hz" }
                    dt { "Feature configuration" } dd { code.json { (job.feature_config.to_string()) } }
                    dt { "Encoding signature" } dd { code.checksum { (job.encoding_signature) } }
                    dt { "Attempt" }
                    dd {
                        @if job.attempt == 0 { "not started yet" } @else { (job.attempt) }
                        @if let Some(worker) = &job.worker { " on " (worker) }
                    }
                    dt { "Queued" } dd { (format_time(&job.created_at)) }
                    dt { "Started" } dd { (job.started_at.as_deref().map(format_time).unwrap_or_else(|| "—".into())) }
                    dt { "Finished" } dd { (job.finished_at.as_deref().map(format_time).unwrap_or_else(|| "—".into())) }
                    // Marked for pages and tests; hidden until the job has them (the facts are fetched again
                    // when the job finishes).
                    div data-field="embedding-set-row" hidden[job.embedding_set_id.is_none()] {
                        dt { "Embedding set" }
                        dd {
                            span data-field="embedding-set" { (job.embedding_set_id.map(|set| set.to_string()).unwrap_or_default()) }
                            " · "
                            a data-field="embedding-set-download"
                                href=(job.embedding_set_id.map(|set| format!("/api/embedding-sets/{set}/download")).unwrap_or_default()) {
                                "download Parquet"
                            }
                        }
                    }
                    div data-field="error-row" hidden[job.error_message.is_none()] {
                        dt { "Error" } dd.error-text data-field="error" { (job.error_message.as_deref().unwrap_or_default()) }
                    }
                    @if let Some(warning) = &job.warning {
                        dt { "Warning" } dd.warning-text { (warning) }
                    }
                }
                p { (job_actions(job, &format!("/processing/{}", job.id))) }
            }
            section #job-events data-refresh-when-finished=(format!("/processing/{}", job.id)) aria-labelledby="events-heading" {
                h2 #events-heading { "Events" }
                @if view.events.is_empty() {
                    p.muted { "No events." }
                } @else {
                    (event_row_list(&view.events))
                }
            }
        },
    )
}
