//! The home page: counts and recent activity.

use std::collections::BTreeMap;

use maud::{html, Markup};

use super::events::event_row_list;
use super::processing::job_table;
use super::{format_duration, layout, live_updates_after, Notice, Section};
use crate::domain::ids::EventSeq;
use crate::log::envelope::EnvelopeJson;
use crate::projections::queries::ProcessingJobRow;
use crate::projections::ui_queries::DashboardCounts;

pub struct DashboardView {
    pub counts: DashboardCounts,
    /// Jobs running or waiting, running first.
    pub active_jobs: Vec<ProcessingJobRow>,
    /// The newest events, newest first.
    pub recent_events: Vec<EnvelopeJson>,
    pub notice: Option<Notice>,
    /// Names of the recordings of the active jobs.
    pub recording_names: BTreeMap<u64, String>,
    /// The log position the page shows; live updates start after it.
    pub events_after: EventSeq,
}

pub fn dashboard_page(view: &DashboardView) -> Markup {
    let counts = &view.counts;
    let jobs_total: u64 = counts.processing_jobs_by_status.iter().map(|(_, count)| count).sum();
    layout(
        "Overview",
        Section::Home,
        view.notice.as_ref(),
        html! {
            h1 { "Overview" }
            (live_updates_after(view.events_after))
            section.cards aria-label="Totals" {
                a.card href="/audio" {
                    span.card-number { (counts.audio_files) }
                    span.card-label { "recordings" }
                    span.card-detail { (format_duration(counts.total_duration_seconds)) " in " (counts.folders) @if counts.folders == 1 { " folder" } @else { " folders" } }
                }
                a.card href="/processing" {
                    span.card-number { (jobs_total) }
                    span.card-label { "processing jobs" }
                    span.card-detail {
                        @for (index, (status, count)) in counts.processing_jobs_by_status.iter().enumerate() {
                            @if index > 0 { ", " }
                            (count) " " (status)
                        }
                    }
                }
                div.card {
                    span.card-number { (counts.embedding_sets) }
                    span.card-label { "embedding sets" }
                }
                a.card href="/clustering" {
                    span.card-number { (counts.clustering_jobs) }
                    span.card-label { "clustering jobs" }
                }
            }
            @if !view.active_jobs.is_empty() {
                section aria-labelledby="active-heading" {
                    h2 #active-heading { "In progress" }
                    (job_table(&view.active_jobs, Some(&view.recording_names)))
                }
            }
            section aria-labelledby="recent-heading" {
                h2 #recent-heading { "Recent activity" }
                @if view.recent_events.is_empty() {
                    p { "Nothing has happened yet. Start by " a href="/audio#upload" { "uploading recordings" } "." }
                } @else {
                    (event_row_list(&view.recent_events))
                    p { a href="/events" { "All events →" } }
                }
            }
        },
    )
}
