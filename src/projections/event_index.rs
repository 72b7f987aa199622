//! Filtering the log through the `event_index` projection: the events of one aggregate, or of
//! some types, are found by sequence in SQLite and only those records are decoded. Events the
//! projections have not applied yet are found by scanning the log's tail. The pages are the same
//! as [`read_page`]'s (a test checks), only cheaper on a long log.

use std::collections::VecDeque;
use std::ops::RangeInclusive;

use rusqlite::params_from_iter;

use super::read::ProjectionReader;
use super::runner::lowest_checkpoint;
use super::{query_all, ProjectionError};
use crate::domain::ids::EventSeq;
use crate::log::filter::{page_from, read_page, EventFilter, EventPage, PageRequest};
use crate::log::{Envelope, EventLog};

/// Sequences fetched from the index per query.
const BATCH: usize = 512;

/// One page of events matching the request, like [`read_page`], using the index for filters
/// by aggregate or type.
pub fn read_page_indexed(
    log: &dyn EventLog,
    reader: &ProjectionReader,
    request: &PageRequest,
) -> Result<EventPage, ProjectionError> {
    let filter = &request.filter;
    if filter.aggregate.is_none() && filter.types.is_empty() {
        return Ok(read_page(log, request)?);
    }
    let head = log.head();
    let range = request.range();
    if range.start() > range.end() {
        return Ok(EventPage { events: Vec::new(), next_cursor: None, head });
    }
    let indexed_to = reader.with_connection(lowest_checkpoint)?;
    let indexed = *range.start()..=(*range.end()).min(indexed_to);
    let tail = (*range.start()).max(indexed_to.next())..=*range.end();
    let from_index = IndexedSeqs::new(reader, filter, indexed, request.newest_first).filter_map(|seq| match seq {
        Ok(seq) => log.get(seq).map_err(ProjectionError::from).transpose(),
        Err(error) => Some(Err(error)),
    });
    let from_tail = scan(log, tail, request.newest_first);
    if request.newest_first {
        page_from(from_tail.chain(from_index), request, head)
    } else {
        page_from(from_index.chain(from_tail), request, head)
    }
}

/// The log's records in `range` (nothing when it is empty), as projection results.
fn scan<'a>(
    log: &'a dyn EventLog,
    range: RangeInclusive<EventSeq>,
    newest_first: bool,
) -> Box<dyn Iterator<Item = Result<Envelope, ProjectionError>> + 'a> {
    if range.start() > range.end() {
        return Box::new(std::iter::empty());
    }
    Box::new(log.scan(range, newest_first).map(|envelope| envelope.map_err(ProjectionError::from)))
}

/// Sequences of the events in a range that concern the filter's aggregate (or, without one, are
/// of one of its types), in order, fetched from the index a batch at a time.
struct IndexedSeqs<'a> {
    reader: &'a ProjectionReader,
    filter: &'a EventFilter,
    /// What is still to be fetched; empty when `low > high`.
    low: u64,
    high: u64,
    newest_first: bool,
    fetched: VecDeque<u64>,
    finished: bool,
}

impl<'a> IndexedSeqs<'a> {
    fn new(
        reader: &'a ProjectionReader,
        filter: &'a EventFilter,
        range: RangeInclusive<EventSeq>,
        newest_first: bool,
    ) -> IndexedSeqs<'a> {
        // SQLite integers are signed; no sequence is near the top of u64.
        let clamp = |seq: EventSeq| seq.0.min(i64::MAX as u64);
        let (low, high) = (clamp(*range.start()), clamp(*range.end()));
        IndexedSeqs { reader, filter, low, high, newest_first, fetched: VecDeque::new(), finished: low > high }
    }

    fn fetch(&mut self) -> Result<(), ProjectionError> {
        let order = if self.newest_first { "DESC" } else { "ASC" };
        let mut parameters: Vec<rusqlite::types::Value> = Vec::new();
        let condition = match &self.filter.aggregate {
            Some(aggregate) => {
                parameters.push(aggregate.to_string().into());
                "SELECT seq FROM event_aggregates WHERE aggregate = ?1".to_string()
            }
            None => {
                parameters.extend(self.filter.types.iter().map(|name| name.clone().into()));
                let placeholders: Vec<String> = (1..=self.filter.types.len()).map(|n| format!("?{n}")).collect();
                format!("SELECT seq FROM event_types WHERE event_type IN ({})", placeholders.join(", "))
            }
        };
        let next = parameters.len() + 1;
        let sql =
            format!("{condition} AND seq >= ?{next} AND seq <= ?{} ORDER BY seq {order} LIMIT ?{}", next + 1, next + 2);
        parameters.push((self.low as i64).into());
        parameters.push((self.high as i64).into());
        parameters.push((BATCH as i64).into());
        let seqs: Vec<u64> = self.reader.with_connection(|connection| {
            query_all(
                connection,
                &sql,
                params_from_iter(parameters.iter()),
                |row| row.get(0),
                "reading the event index",
            )
        })?;
        if seqs.len() < BATCH {
            self.finished = true;
        }
        match (self.newest_first, seqs.last()) {
            (true, Some(last)) => match last.checked_sub(1) {
                Some(below) if below >= self.low => self.high = below,
                _ => self.finished = true,
            },
            (false, Some(last)) => match last.checked_add(1) {
                Some(above) if above <= self.high => self.low = above,
                _ => self.finished = true,
            },
            (_, None) => self.finished = true,
        }
        self.fetched.extend(seqs);
        Ok(())
    }
}

impl Iterator for IndexedSeqs<'_> {
    type Item = Result<EventSeq, ProjectionError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.fetched.is_empty() && !self.finished {
            if let Err(error) = self.fetch() {
                self.finished = true;
                return Some(Err(error));
            }
        }
        self.fetched.pop_front().map(|seq| Ok(EventSeq(seq)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sample_events::realistic_event_stream;
    use crate::log::filter::EventQuery;
    use crate::log::SledEventLog;
    use crate::projections::Projector;

    /// Every page, following cursors to the end.
    fn all_pages(mut request: PageRequest, mut read: impl FnMut(&PageRequest) -> EventPage) -> Vec<Vec<u64>> {
        let mut pages = Vec::new();
        loop {
            let page = read(&request);
            pages.push(page.events.iter().map(|envelope| envelope.seq.0).collect());
            match page.next_cursor {
                Some(cursor) => request.cursor = Some(cursor),
                None => return pages,
            }
        }
    }

    #[test]
    fn indexed_pages_equal_scanned_pages_including_events_not_yet_projected() {
        let dir = tempfile::tempdir().unwrap();
        let log = SledEventLog::open(&dir.path().join("events")).unwrap();
        let events: Vec<_> = realistic_event_stream(1_400).collect();
        // 1200 events projected, the last 200 only in the log (a projection behind the head).
        log.append(&events[..1_200]).unwrap();
        let database = dir.path().join("projections.sqlite3");
        Projector::open(&database, dir.path()).unwrap().catch_up(&log).unwrap();
        log.append(&events[1_200..]).unwrap();
        let reader = ProjectionReader::new(&database);
        assert_eq!(reader.with_connection(lowest_checkpoint).unwrap(), EventSeq(1_200));

        let queries = [
            EventQuery { aggregate: Some("processing_job:3".into()), ..Default::default() },
            EventQuery { aggregate: Some("audio_file:199".into()), order: Some("desc".into()), ..Default::default() },
            EventQuery { aggregate: Some("audio_file:172".into()), limit: Some(2), ..Default::default() },
            EventQuery {
                aggregate: Some("processing_job:180".into()),
                limit: Some(1),
                order: Some("desc".into()),
                ..Default::default()
            },
            EventQuery { aggregate: Some("audio_file:999".into()), ..Default::default() },
            EventQuery { types: Some("ProcessingJobCompleted".into()), limit: Some(37), ..Default::default() },
            EventQuery {
                types: Some("AudioFileRegistered,ProcessingJobClaimed".into()),
                limit: Some(600),
                order: Some("desc".into()),
                ..Default::default()
            },
            EventQuery {
                types: Some("ProcessingJobProgressed".into()),
                from_seq: Some(1_100),
                to_seq: Some(1_300),
                limit: Some(5),
                ..Default::default()
            },
            EventQuery {
                aggregate: Some("embedding_set:171".into()),
                types: Some("ProcessingJobCompleted".into()),
                ..Default::default()
            },
            EventQuery { limit: Some(300), order: Some("desc".into()), ..Default::default() },
        ];
        // More matches than one batch of the index, both ways.
        let many = "AudioFileRegistered,ProcessingJobClaimed,ProcessingJobProgressed,ProcessingJobCompleted";
        let queries = queries.into_iter().chain(["asc", "desc"].map(|order| EventQuery {
            types: Some(many.into()),
            limit: Some(1000),
            order: Some(order.into()),
            ..Default::default()
        }));
        for query in queries {
            let request = query.parse().unwrap();
            let scanned = all_pages(request.clone(), |request| read_page(&log, request).unwrap());
            let indexed = all_pages(request, |request| read_page_indexed(&log, &reader, request).unwrap());
            assert_eq!(indexed, scanned, "{query:?}");
            let found: usize = scanned.iter().map(Vec::len).sum();
            assert!(found > 0 || query.aggregate.as_deref() == Some("audio_file:999"), "{query:?}");
            if query.types.as_deref() == Some(many) {
                assert!(found > BATCH, "the index is read in more than one batch");
            }
        }
    }
}
