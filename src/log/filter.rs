//! Filtering and paging the log, shared by the CLI (direct) and `GET /api/events`.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::envelope::{Envelope, RecordedAt};
use super::{EventLog, LogError};
use crate::domain::events::Event;
use crate::domain::ids::{AggregateRef, EventSeq};

/// Which events to show. Every criterion that is set must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Event type names (any of them); empty means all types.
    pub types: Vec<String>,
    pub aggregate: Option<AggregateRef>,
    pub from_seq: Option<EventSeq>,
    pub to_seq: Option<EventSeq>,
    pub since: Option<RecordedAt>,
    pub until: Option<RecordedAt>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FilterError {
    #[error("unknown event type {0:?}; known types: {1}")]
    UnknownType(String, String),
    #[error("time {0:?} is neither an RFC 3339 time (2026-11-24T10:00:00Z) nor a duration ago (90m, 2h, 1day)")]
    BadTime(String),
}

impl EventFilter {
    /// Checks that every named type exists, so a typo is an error rather than an empty list.
    pub fn validate(&self) -> Result<(), FilterError> {
        for name in &self.types {
            if !Event::TYPES.iter().any(|(known, _)| known == name) {
                let known: Vec<&str> = Event::TYPES.iter().map(|(known, _)| *known).collect();
                return Err(FilterError::UnknownType(name.clone(), known.join(", ")));
            }
        }
        Ok(())
    }

    pub fn matches(&self, envelope: &Envelope) -> bool {
        if !self.types.is_empty() && !self.types.iter().any(|name| name == envelope.event.type_name()) {
            return false;
        }
        if let Some(aggregate) = self.aggregate {
            if !envelope.event.aggregates().contains(&aggregate) {
                return false;
            }
        }
        if self.since.is_some_and(|since| envelope.recorded_at < since) {
            return false;
        }
        if self.until.is_some_and(|until| envelope.recorded_at > until) {
            return false;
        }
        true
    }

    fn seq_range(&self) -> std::ops::RangeInclusive<EventSeq> {
        self.from_seq.unwrap_or(EventSeq(1))..=self.to_seq.unwrap_or(EventSeq(u64::MAX))
    }
}

/// Parses `2026-11-24T10:00:00Z` or a duration ago such as `90m`, `2h`, `3days`.
pub fn parse_time(text: &str) -> Result<RecordedAt, FilterError> {
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return Ok(RecordedAt::from_system_time(time));
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        let time = SystemTime::now().checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH);
        return Ok(RecordedAt::from_system_time(time));
    }
    Err(FilterError::BadTime(text.to_string()))
}

/// The JSON parameters of `GET /api/events` (also built by the CLI when it goes through a server).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EventQuery {
    /// Comma-separated event types.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub types: Option<String>,
    /// `KIND:ID`, e.g. `audio_file:3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Page size (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Continue a page: only events after (or, newest first, before) this sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// Long poll: when nothing matches yet, wait up to this many seconds for new events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error(transparent)]
    Aggregate(#[from] crate::domain::ids::AggregateRefParseError),
    #[error("order must be \"asc\" or \"desc\", not {0:?}")]
    BadOrder(String),
}

pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;

/// A parsed, validated page request.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    pub filter: EventFilter,
    pub limit: usize,
    pub cursor: Option<EventSeq>,
    pub newest_first: bool,
}

impl EventQuery {
    pub fn parse(&self) -> Result<PageRequest, QueryError> {
        let types = self
            .types
            .as_deref()
            .map(|types| types.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect())
            .unwrap_or_default();
        let filter = EventFilter {
            types,
            aggregate: self.aggregate.as_deref().map(str::parse).transpose()?,
            from_seq: self.from_seq.map(EventSeq),
            to_seq: self.to_seq.map(EventSeq),
            since: self.since.as_deref().map(parse_time).transpose()?,
            until: self.until.as_deref().map(parse_time).transpose()?,
        };
        filter.validate()?;
        let newest_first = match self.order.as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => return Err(QueryError::BadOrder(other.to_string())),
        };
        Ok(PageRequest {
            filter,
            limit: self.limit.unwrap_or(DEFAULT_PAGE_SIZE).clamp(1, MAX_PAGE_SIZE),
            cursor: self.cursor.map(EventSeq),
            newest_first,
        })
    }
}

/// One page of matching events, and the cursor to ask for the next one (None at the end).
#[derive(Debug, Clone)]
pub struct EventPage {
    pub events: Vec<Envelope>,
    pub next_cursor: Option<EventSeq>,
    pub head: EventSeq,
}

/// Reads one page of events matching the request, scanning the log.
pub fn read_page(log: &dyn EventLog, request: &PageRequest) -> Result<EventPage, LogError> {
    let head = log.head();
    let range = request.range();
    if range.start() > range.end() {
        return Ok(EventPage { events: Vec::new(), next_cursor: None, head });
    }
    page_from(log.scan(range, request.newest_first), request, head)
}

/// Fills a page from `candidates` (in the request's order, a superset of what matches): the
/// one paging loop, whichever way the candidates were found.
pub fn page_from<Error>(
    candidates: impl Iterator<Item = Result<Envelope, Error>>,
    request: &PageRequest,
    head: EventSeq,
) -> Result<EventPage, Error> {
    let mut events = Vec::new();
    let mut next_cursor = None;
    for envelope in candidates {
        let envelope = envelope?;
        if !request.filter.matches(&envelope) {
            continue;
        }
        if events.len() == request.limit {
            next_cursor = events.last().map(|last: &Envelope| last.seq);
            break;
        }
        events.push(envelope);
    }
    Ok(EventPage { events, next_cursor, head })
}

impl PageRequest {
    /// The sequences this page can come from: the filter's range, narrowed by the cursor.
    pub fn range(&self) -> std::ops::RangeInclusive<EventSeq> {
        let range = self.filter.seq_range();
        match self.cursor {
            Some(cursor) if self.newest_first => {
                *range.start()..=(*range.end()).min(EventSeq(cursor.0.saturating_sub(1)))
            }
            Some(cursor) => (*range.start()).max(cursor.next())..=*range.end(),
            None => range,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{AudioFileId, ProcessingJobId};
    use crate::domain::sample_events::one_event_of_every_type;
    use crate::log::SledEventLog;

    fn log_with_samples() -> (tempfile::TempDir, SledEventLog) {
        let dir = tempfile::tempdir().unwrap();
        let log = SledEventLog::open(dir.path()).unwrap();
        log.append(&one_event_of_every_type()).unwrap();
        (dir, log)
    }

    fn seqs(page: &EventPage) -> Vec<u64> {
        page.events.iter().map(|e| e.seq.0).collect()
    }

    #[test]
    fn filters_by_type_and_by_aggregate() {
        let (_dir, log) = log_with_samples();
        let query = EventQuery { types: Some("ProcessingJobQueued,ProcessingJobClaimed".into()), ..Default::default() };
        let page = read_page(&log, &query.parse().unwrap()).unwrap();
        assert_eq!(seqs(&page), vec![4, 5]);

        let query = EventQuery { aggregate: Some("processing_job:1".into()), ..Default::default() };
        let page = read_page(&log, &query.parse().unwrap()).unwrap();
        assert!(page
            .events
            .iter()
            .all(|e| e.event.aggregates().contains(&AggregateRef::ProcessingJob(ProcessingJobId(1)))));
        assert_eq!(seqs(&page), vec![4, 5, 6, 7, 8]);

        let query =
            EventQuery { aggregate: Some(AggregateRef::AudioFile(AudioFileId(1)).to_string()), ..Default::default() };
        assert_eq!(seqs(&read_page(&log, &query.parse().unwrap()).unwrap()), vec![2, 3, 4, 7]);
    }

    #[test]
    fn pages_continue_from_their_cursor_in_both_orders() {
        let (_dir, log) = log_with_samples();
        let total = one_event_of_every_type().len() as u64;
        let mut request = EventQuery { limit: Some(5), ..Default::default() }.parse().unwrap();
        let mut seen = Vec::new();
        loop {
            let page = read_page(&log, &request).unwrap();
            seen.extend(seqs(&page));
            match page.next_cursor {
                Some(cursor) => request.cursor = Some(cursor),
                None => break,
            }
        }
        assert_eq!(seen, (1..=total).collect::<Vec<_>>());

        let request = EventQuery { limit: Some(3), order: Some("desc".into()), cursor: Some(10), ..Default::default() };
        let page = read_page(&log, &request.parse().unwrap()).unwrap();
        assert_eq!(seqs(&page), vec![9, 8, 7]);
        assert_eq!(page.next_cursor, Some(EventSeq(7)));
    }

    #[test]
    fn sequence_and_time_ranges_bound_the_result() {
        let (_dir, log) = log_with_samples();
        let query = EventQuery { from_seq: Some(3), to_seq: Some(6), ..Default::default() };
        assert_eq!(seqs(&read_page(&log, &query.parse().unwrap()).unwrap()), vec![3, 4, 5, 6]);
        let query = EventQuery { since: Some("2999-01-01T00:00:00Z".into()), ..Default::default() };
        assert!(read_page(&log, &query.parse().unwrap()).unwrap().events.is_empty());
        let query = EventQuery { since: Some("1h".into()), ..Default::default() };
        assert_eq!(read_page(&log, &query.parse().unwrap()).unwrap().events.len(), one_event_of_every_type().len());
    }

    #[test]
    fn bad_queries_say_what_is_wrong() {
        let error = EventQuery { types: Some("WhaleSang".into()), ..Default::default() }.parse().unwrap_err();
        assert!(error.to_string().contains("unknown event type \"WhaleSang\""), "{error}");
        let error = EventQuery { since: Some("yesterday-ish".into()), ..Default::default() }.parse().unwrap_err();
        assert!(error.to_string().contains("RFC 3339"), "{error}");
        let error = EventQuery { aggregate: Some("audio:1".into()), ..Default::default() }.parse().unwrap_err();
        assert!(error.to_string().contains("unknown aggregate kind"), "{error}");
        let error = EventQuery { order: Some("up".into()), ..Default::default() }.parse().unwrap_err();
        assert!(error.to_string().contains("asc"), "{error}");
    }
}
