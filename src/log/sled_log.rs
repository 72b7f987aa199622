//! The sled implementation of the event log.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::sync::watch;

use super::envelope::{decode_record, encode_record, Envelope, RecordedAt};
use super::{EventLog, LogError};
use crate::domain::events::Event;
use crate::domain::ids::EventSeq;

const EVENTS_TREE: &str = "events";

/// A sled database holding one tree, `events`, keyed by big-endian sequence.
///
/// Appends are serialised by a mutex (sequence assignment must be gapless), applied as one
/// sled batch (atomic), and flushed (fsync) before returning: an acknowledged event survives
/// a crash. sled allows one process per directory: a second `open` fails with
/// [`LogError::Locked`].
pub struct SledEventLog {
    path: PathBuf,
    database: sled::Db,
    events: sled::Tree,
    append_lock: Mutex<EventSeq>,
    head_sender: watch::Sender<EventSeq>,
}

/// How long a held lock is waited for before it is reported as held by another process.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

impl SledEventLog {
    pub fn open(path: &Path) -> Result<SledEventLog, LogError> {
        // The file lock of a log this process has just closed can outlive its handle for a
        // moment (sled's flusher thread lets go of it after the handle is dropped), so a lock
        // is only reported as held by someone else once it has stayed held for a while.
        let started = std::time::Instant::now();
        let database = loop {
            match sled::Config::new().path(path).open() {
                Ok(database) => break database,
                Err(source) if source.to_string().contains("could not acquire lock") => {
                    if started.elapsed() >= LOCK_PATIENCE {
                        return Err(LogError::Locked { path: path.to_path_buf() });
                    }
                    std::thread::park_timeout(std::time::Duration::from_millis(20));
                }
                Err(source) => return Err(LogError::Open { path: path.to_path_buf(), source }),
            }
        };
        let events =
            database.open_tree(EVENTS_TREE).map_err(|source| LogError::Open { path: path.to_path_buf(), source })?;
        let head = match events.last().map_err(|source| LogError::Storage { doing: "reading the head", source })? {
            Some((key, _)) => EventSeq::from_key(&key).ok_or_else(|| LogError::BadKey { key: key.to_vec() })?,
            None => EventSeq::BEFORE_FIRST,
        };
        let (head_sender, _) = watch::channel(head);
        Ok(SledEventLog { path: path.to_path_buf(), database, events, append_lock: Mutex::new(head), head_sender })
    }

    /// How many receivers watch the head (tests use it to know a long poll is parked).
    pub fn subscriber_count(&self) -> usize {
        self.head_sender.receiver_count()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes everything to disk (also done by every append).
    pub fn flush(&self) -> Result<(), LogError> {
        self.database.flush().map(|_| ()).map_err(|source| LogError::Storage { doing: "flushing", source })
    }

    fn decode_item(item: sled::Result<(sled::IVec, sled::IVec)>) -> Result<Envelope, LogError> {
        let (key, value) = item.map_err(|source| LogError::Storage { doing: "scanning", source })?;
        let seq = EventSeq::from_key(&key).ok_or_else(|| LogError::BadKey { key: key.to_vec() })?;
        decode_record(seq, &value).map_err(|source| LogError::Corrupt { seq, source })
    }
}

impl EventLog for SledEventLog {
    fn append(&self, events: &[Event]) -> Result<Vec<Envelope>, LogError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // A poisoned lock only means another append panicked; the head it guards is still
        // the last durable sequence, because it is updated after the flush.
        let mut head = self.append_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let recorded_at = RecordedAt::now();
        let mut batch = sled::Batch::default();
        let mut envelopes = Vec::with_capacity(events.len());
        let mut seq = *head;
        for event in events {
            seq = seq.next();
            let value = encode_record(event, recorded_at)
                .map_err(|source| LogError::Encode { event_type: event.type_name(), source })?;
            batch.insert(&seq.to_key(), value);
            envelopes.push(Envelope { seq, recorded_at, event_version: event.type_version(), event: event.clone() });
        }
        self.events.apply_batch(batch).map_err(|source| LogError::Storage { doing: "appending", source })?;
        self.database.flush().map_err(|source| LogError::Storage { doing: "flushing an append", source })?;
        *head = seq;
        self.head_sender.send_replace(seq);
        Ok(envelopes)
    }

    fn head(&self) -> EventSeq {
        *self.head_sender.borrow()
    }

    fn scan(
        &self,
        range: RangeInclusive<EventSeq>,
        newest_first: bool,
    ) -> Box<dyn Iterator<Item = Result<Envelope, LogError>> + Send + '_> {
        let (start, end) = (range.start().to_key(), range.end().to_key());
        let iter = self.events.range(start..=end);
        if newest_first {
            Box::new(iter.rev().map(Self::decode_item))
        } else {
            Box::new(iter.map(Self::decode_item))
        }
    }

    fn scan_raw(&self) -> Box<dyn Iterator<Item = Result<super::RawRecord, LogError>> + Send + '_> {
        Box::new(self.events.iter().map(|item| {
            item.map(|(key, value)| (key.to_vec(), value.to_vec()))
                .map_err(|source| LogError::Storage { doing: "scanning", source })
        }))
    }

    fn subscribe(&self) -> watch::Receiver<EventSeq> {
        self.head_sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sample_events::one_event_of_every_type;

    #[test]
    fn appended_events_come_back_in_order_with_contiguous_sequences() {
        let dir = tempfile::tempdir().unwrap();
        let log = SledEventLog::open(dir.path()).unwrap();
        let events = one_event_of_every_type();
        let first = log.append(&events[..3]).unwrap();
        let second = log.append(&events[3..]).unwrap();
        assert_eq!(first.iter().map(|e| e.seq.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(second[0].seq, EventSeq(4));
        assert_eq!(log.head(), EventSeq(events.len() as u64));
        let read: Vec<Event> = log.scan(EventSeq(1)..=EventSeq(u64::MAX), false).map(|e| e.unwrap().event).collect();
        assert_eq!(read, events);
        let newest_first: Vec<u64> = log.scan(EventSeq(2)..=EventSeq(4), true).map(|e| e.unwrap().seq.0).collect();
        assert_eq!(newest_first, vec![4, 3, 2]);
    }

    #[test]
    fn the_log_survives_reopening_and_continues_its_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let events = one_event_of_every_type();
        {
            let log = SledEventLog::open(dir.path()).unwrap();
            log.append(&events[..2]).unwrap();
        }
        let log = SledEventLog::open(dir.path()).unwrap();
        assert_eq!(log.head(), EventSeq(2));
        let appended = log.append(&events[2..3]).unwrap();
        assert_eq!(appended[0].seq, EventSeq(3));
        assert_eq!(super::super::verify(&log).first_problem, None);
    }

    #[test]
    fn a_second_open_of_the_same_directory_says_it_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledEventLog::open(dir.path()).unwrap();
        let error = SledEventLog::open(dir.path()).err().unwrap();
        assert!(matches!(error, LogError::Locked { .. }), "{error}");
        assert!(error.to_string().contains("locked by another process"));
    }

    #[test]
    fn subscribers_see_the_new_head_after_an_append() {
        let dir = tempfile::tempdir().unwrap();
        let log = SledEventLog::open(dir.path()).unwrap();
        let mut receiver = log.subscribe();
        assert_eq!(*receiver.borrow_and_update(), EventSeq(0));
        log.append(&one_event_of_every_type()[..2]).unwrap();
        assert!(receiver.has_changed().unwrap());
        assert_eq!(*receiver.borrow_and_update(), EventSeq(2));
    }

    #[test]
    fn verify_names_the_first_gap_and_the_first_undecodable_record() {
        let dir = tempfile::tempdir().unwrap();
        let log = SledEventLog::open(dir.path()).unwrap();
        log.append(&one_event_of_every_type()[..4]).unwrap();
        log.events.insert(EventSeq(3).to_key(), vec![1u8, 2, 3]).unwrap();
        let report = super::super::verify(&log);
        assert_eq!(report.records, 2);
        assert_eq!(report.first_problem.as_ref().map(|p| p.seq), Some(3));

        log.events.remove(EventSeq(3).to_key()).unwrap();
        let report = super::super::verify(&log);
        let problem = report.first_problem.unwrap();
        assert_eq!(problem.seq, 3);
        assert!(problem.problem.contains("missing"), "{}", problem.problem);
    }
}
