//! The home page and the events page.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;

use super::{blocking_page, page, NoticeParameters, PageResult};
use crate::domain::events::Event;
use crate::http::ApiState;
use crate::log::filter::{read_page, EventQuery, PageRequest};
use crate::log::EventLog;
use crate::projections::runner::lowest_checkpoint;
use crate::projections::{queries, ui_queries};
use crate::views::dashboard::{dashboard_page, DashboardView};
use crate::views::events::{events_page, EventsView};

const RECENT_EVENTS: usize = 12;
const ACTIVE_JOBS: u64 = 10;
const EVENTS_PER_PAGE: usize = 50;

pub async fn home(State(state): State<ApiState>, Query(notice): Query<NoticeParameters>) -> PageResult {
    let humpback = state.humpback.clone();
    let (events_after, counts, active_jobs, recording_names, recent) = blocking_page(move || {
        let (events_after, counts, active_jobs, recording_names) = humpback.reader.with_connection(|connection| {
            let events_after = lowest_checkpoint(connection)?;
            let counts = ui_queries::dashboard_counts(connection)?;
            let mut active = queries::processing_jobs(connection, None, Some("running"), 0, ACTIVE_JOBS)?.items;
            active.extend(queries::processing_jobs(connection, None, Some("queued"), 0, ACTIVE_JOBS)?.items);
            active.truncate(ACTIVE_JOBS as usize);
            let ids: Vec<u64> = active.iter().map(|job| job.audio_file_id).collect();
            let names = ui_queries::audio_file_names_of(connection, &ids)?;
            Ok((events_after, counts, active, names))
        })?;
        let request =
            PageRequest { filter: Default::default(), limit: RECENT_EVENTS, cursor: None, newest_first: true };
        let recent = read_page(humpback.log.as_ref(), &request)?;
        Ok((events_after, counts, active_jobs, recording_names, recent))
    })
    .await?;
    let view = DashboardView {
        counts,
        active_jobs,
        recent_events: recent.events.iter().map(|envelope| envelope.to_brief_json()).collect(),
        notice: notice.to_notice(),
        recording_names,
        events_after,
    };
    Ok(page(StatusCode::OK, dashboard_page(&view)))
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.map(|text| text.trim().to_string()).filter(|text| !text.is_empty())
}

pub async fn events(
    State(state): State<ApiState>,
    query: Result<Query<EventQuery>, QueryRejection>,
    Query(notice): Query<NoticeParameters>,
) -> PageResult {
    let Query(query) = query?;
    let query = EventQuery {
        types: non_empty(query.types),
        aggregate: non_empty(query.aggregate),
        order: Some("desc".into()),
        limit: Some(EVENTS_PER_PAGE),
        wait_seconds: None,
        ..query
    };
    let mut view = EventsView {
        events: Vec::new(),
        known_types: Event::TYPES.iter().map(|(name, _)| *name).collect(),
        selected_type: query.types.clone(),
        aggregate: query.aggregate.clone(),
        cursor: query.cursor,
        next_cursor: None,
        head: 0,
        filter_error: None,
        notice: notice.to_notice(),
    };
    let request = match query.parse() {
        Ok(request) => request,
        Err(error) => {
            view.filter_error = Some(error.to_string());
            view.head = state.humpback.log.head().0;
            return Ok(page(StatusCode::BAD_REQUEST, events_page(&view)));
        }
    };
    let humpback = state.humpback.clone();
    let found = blocking_page(move || Ok(humpback.read_events(&request)?)).await?;
    view.events = found.events.iter().map(|envelope| envelope.to_brief_json()).collect();
    view.next_cursor = found.next_cursor.map(|seq| seq.0);
    view.head = found.head.0;
    Ok(page(StatusCode::OK, events_page(&view)))
}
