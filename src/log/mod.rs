//! The event log: the only truth. An append-only sequence of [`Envelope`]s behind the
//! [`EventLog`] trait; [`SledEventLog`] stores it in a sled tree keyed by big-endian sequence.

pub mod envelope;
pub mod filter;
pub mod sled_log;

use std::ops::RangeInclusive;
use std::path::PathBuf;

pub use envelope::{Envelope, EnvelopeError, RecordedAt};
pub use filter::EventFilter;
pub use sled_log::SledEventLog;

use crate::domain::events::Event;
use crate::domain::ids::EventSeq;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(
        "the event log at {path} is locked by another process (is a humpback server running on this data directory?)"
    )]
    Locked { path: PathBuf },
    #[error("cannot open the event log at {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error("event log storage failed while {doing}: {source}")]
    Storage { doing: &'static str, source: sled::Error },
    #[error("event {seq} cannot be read: {source}")]
    Corrupt { seq: EventSeq, source: EnvelopeError },
    #[error("event log key {key:?} is not a sequence number")]
    BadKey { key: Vec<u8> },
    #[error("cannot record {event_type}: {source}")]
    Encode { event_type: &'static str, source: EnvelopeError },
}

/// A raw record as stored: key bytes and value bytes.
pub type RawRecord = (Vec<u8>, Vec<u8>);

/// An append-only, durable, ordered log of events.
pub trait EventLog: Send + Sync + 'static {
    /// Appends the events atomically (all or none) and durably (flushed to disk) before
    /// returning their envelopes. An empty batch appends nothing.
    fn append(&self, events: &[Event]) -> Result<Vec<Envelope>, LogError>;

    /// The sequence of the last event, or `EventSeq(0)` for an empty log.
    fn head(&self) -> EventSeq;

    /// Events with sequences in `range`, oldest first (or newest first if `newest_first`).
    fn scan(
        &self,
        range: RangeInclusive<EventSeq>,
        newest_first: bool,
    ) -> Box<dyn Iterator<Item = Result<Envelope, LogError>> + Send + '_>;

    /// Raw records, oldest first, for verification: `(key, value)` bytes as stored.
    fn scan_raw(&self) -> Box<dyn Iterator<Item = Result<RawRecord, LogError>> + Send + '_>;

    /// A receiver of the head sequence, updated after every durable append.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<EventSeq>;

    /// Events after `after`, oldest first, at most `limit`.
    fn read_after(&self, after: EventSeq, limit: usize) -> Result<Vec<Envelope>, LogError> {
        self.scan(after.next()..=EventSeq(u64::MAX), false).take(limit).collect()
    }

    /// One event by sequence.
    fn get(&self, seq: EventSeq) -> Result<Option<Envelope>, LogError> {
        self.scan(seq..=seq, false).next().transpose()
    }
}

/// The outcome of [`verify`]: how many records were read, and the first problem if any.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifyReport {
    pub records: u64,
    pub head: EventSeq,
    pub first_problem: Option<VerifyProblem>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifyProblem {
    /// The sequence where the problem was found (or expected).
    pub seq: u64,
    pub problem: String,
}

/// Checks that sequence numbers run 1, 2, 3... without gaps and that every record decodes.
pub fn verify(log: &dyn EventLog) -> VerifyReport {
    let mut expected = EventSeq(1);
    let mut records = 0;
    for item in log.scan_raw() {
        let (key, value) = match item {
            Ok(pair) => pair,
            Err(error) => {
                return VerifyReport {
                    records,
                    head: log.head(),
                    first_problem: Some(VerifyProblem { seq: expected.0, problem: error.to_string() }),
                }
            }
        };
        let problem = match EventSeq::from_key(&key) {
            None => Some((expected, format!("key {key:?} is not an 8-byte sequence number"))),
            Some(seq) if seq != expected => {
                Some((expected, format!("sequence {expected} is missing: the next record is {seq}")))
            }
            Some(seq) => envelope::decode_record(seq, &value).err().map(|error| (seq, error.to_string())),
        };
        if let Some((seq, problem)) = problem {
            return VerifyReport {
                records,
                head: log.head(),
                first_problem: Some(VerifyProblem { seq: seq.0, problem }),
            };
        }
        records += 1;
        expected = expected.next();
    }
    VerifyReport { records, head: log.head(), first_problem: None }
}
