//! The event log page: newest first, filtered by type and aggregate, paged with cursors.

use maud::{html, Markup};

use super::{aggregate_href, format_time, layout, url_with_query, Notice, Section};
use crate::log::envelope::EnvelopeJson;

pub struct EventsView {
    pub events: Vec<EnvelopeJson>,
    /// Every event type name, for the filter.
    pub known_types: Vec<&'static str>,
    pub selected_type: Option<String>,
    pub aggregate: Option<String>,
    /// The cursor this page was asked with (None for the newest page).
    pub cursor: Option<u64>,
    pub next_cursor: Option<u64>,
    pub head: u64,
    /// A filter the log could not understand, shown next to the form.
    pub filter_error: Option<String>,
    pub notice: Option<Notice>,
}

pub fn events_page(view: &EventsView) -> Markup {
    let page_link = |cursor: Option<u64>| {
        url_with_query(
            "/events",
            &[
                ("type", view.selected_type.clone()),
                ("aggregate", view.aggregate.clone()),
                ("cursor", cursor.map(|cursor| cursor.to_string())),
            ],
        )
    };
    layout(
        "Events",
        Section::Events,
        view.notice.as_ref(),
        html! {
            h1 { "Events" }
            p.lead { "Every change is an event in the log; the log holds " (view.head) " events." }
            form.filters method="get" action="/events" {
                label for="event-type" { "Type" }
                select #event-type name="type" {
                    option value="" { "all types" }
                    @for name in &view.known_types {
                        option value=(name) selected[view.selected_type.as_deref() == Some(*name)] { (name) }
                    }
                }
                label for="event-aggregate" { "Concerning" }
                input #event-aggregate type="text" name="aggregate" placeholder="audio_file:3"
                    value=[view.aggregate.as_deref()];
                button type="submit" { "Filter" }
                @if view.selected_type.is_some() || view.aggregate.is_some() {
                    " " a href="/events" { "clear" }
                }
            }
            @if let Some(error) = &view.filter_error {
                p.field-error role="alert" { (error) }
            }
            @if view.events.is_empty() {
                p { "No events match." }
            } @else {
                (event_row_list(&view.events))
            }
            nav.pager aria-label="Pages" {
                @if view.cursor.is_some() {
                    a href=(page_link(None)) { "← newest" }
                    " "
                }
                @if let Some(next) = view.next_cursor {
                    a href=(page_link(Some(next))) rel="next" { "older →" }
                }
            }
        },
    )
}

/// A table of events, each linked to what it concerns.
pub fn event_row_list(events: &[EnvelopeJson]) -> Markup {
    html! {
        div.table-wrap {
            table.events {
                thead {
                    tr {
                        th scope="col" { "#" }
                        th scope="col" { "When (UTC)" }
                        th scope="col" { "Type" }
                        th scope="col" { "Concerning" }
                        th scope="col" { "What happened" }
                    }
                }
                tbody {
                    @for event in events {
                        tr {
                            td.number {
                                a href=(format!("/api/events/{}", event.seq.0)) title="the event as JSON" { (event.seq.0) }
                            }
                            td.nowrap { (format_time(&event.recorded_at.to_rfc3339())) }
                            td { code { (event.event_type) } }
                            td {
                                @for aggregate in &event.aggregates {
                                    @if let Some(href) = aggregate_href(aggregate) {
                                        a.aggregate href=(href) { (aggregate) }
                                    } @else {
                                        span.aggregate { (aggregate) }
                                    }
                                    " "
                                }
                            }
                            td { (event.summary) }
                        }
                    }
                }
            }
        }
    }
}
