//! Snapshots of the writer's `DomainState`, so start-up folds only the events after the last
//! snapshot instead of the whole log.
//!
//! A snapshot file is `body ++ SHA-256(body)`, the body being the bincode encoding of
//! [`SnapshotBody`]: the format version, a fingerprint of the state's shape, the sequence it
//! covers, the SHA-256 of the covered event (re-encoded as stored) and the encoded state. It
//! is written stage-then-publish (temp file, fsync, rename, fsync the directory).
//!
//! A snapshot is only a shortcut: it is trusted only when its checksum holds, its format and
//! state shape are this build's, the position it covers exists in the log, the event at that
//! position is still the one it covered, and the state decodes to the last byte. Anything
//! else is ignored with a warning and the writer folds the whole log, as without a snapshot.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::artifacts::files::write_atomically;
use crate::domain::ids::EventSeq;
use crate::domain::state::DomainState;
use crate::log::envelope::encode_record;
use crate::log::{Envelope, EventLog, LogError};

/// Bumped when the file layout changes.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// Events between two snapshots the writer takes while running.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read the snapshot {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the snapshot is too short to hold a checksum")]
    Truncated,
    #[error("the snapshot's checksum does not match its contents")]
    Checksum,
    #[error("the snapshot cannot be decoded: {0}")]
    Decode(String),
    #[error("the snapshot has format version {found}, this build writes {expected}")]
    FormatVersion { found: u32, expected: u32 },
    #[error("the snapshot was written by a build with another state layout")]
    StateShape,
    #[error("the snapshot covers event {covered}, beyond the log's head {head}")]
    BeyondHead { covered: EventSeq, head: EventSeq },
    #[error("event {covered} in the log is not the event the snapshot covered")]
    DifferentEvent { covered: EventSeq },
    #[error("the snapshot's state does not match the position it claims")]
    Inconsistent,
    #[error("cannot encode the snapshot: {0}")]
    Encode(String),
    #[error("cannot write the snapshot: {0}")]
    Write(String),
    #[error(transparent)]
    Log(#[from] LogError),
}

#[derive(Debug, bincode::Encode, bincode::Decode)]
struct SnapshotBody {
    format_version: u32,
    state_shape: [u8; 32],
    covered_seq: u64,
    covered_event_sha256: [u8; 32],
    state: Vec<u8>,
}

/// A fingerprint of the source of every type the state is made of: a snapshot written by a
/// build whose state (or event payload) types differ is never decoded with this build's.
pub fn state_shape_fingerprint() -> [u8; 32] {
    let mut hasher = Sha256::new();
    for source in [
        include_str!("domain/state.rs"),
        include_str!("domain/events.rs"),
        include_str!("domain/ids.rs"),
        include_str!("domain/json_text.rs"),
        // `UtcTime` and `RecordingTimeSource` are kept in the state.
        include_str!("recording_time/mod.rs"),
    ] {
        hasher.update((source.len() as u64).to_le_bytes());
        hasher.update(source.as_bytes());
    }
    hasher.finalize().into()
}

/// The SHA-256 of an event as the log stores it (re-encoded from its envelope).
fn event_sha256(envelope: &Envelope) -> Result<[u8; 32], SnapshotError> {
    let bytes = encode_record(&envelope.event, envelope.recorded_at)
        .map_err(|error| SnapshotError::Encode(error.to_string()))?;
    Ok(Sha256::digest(&bytes).into())
}

/// The snapshot's bytes for `state` (which must be folded from `log` up to `state.last_seq`).
pub fn encode_snapshot(state: &DomainState, log: &dyn EventLog) -> Result<Vec<u8>, SnapshotError> {
    let config = bincode::config::standard();
    let covered_event_sha256 = match log.get(state.last_seq)? {
        Some(envelope) => event_sha256(&envelope)?,
        None if state.last_seq == EventSeq(0) => [0; 32],
        None => return Err(SnapshotError::BeyondHead { covered: state.last_seq, head: log.head() }),
    };
    let body = SnapshotBody {
        format_version: SNAPSHOT_FORMAT_VERSION,
        state_shape: state_shape_fingerprint(),
        covered_seq: state.last_seq.0,
        covered_event_sha256,
        state: bincode::encode_to_vec(state, config).map_err(|error| SnapshotError::Encode(error.to_string()))?,
    };
    let mut bytes = bincode::encode_to_vec(&body, config).map_err(|error| SnapshotError::Encode(error.to_string()))?;
    let checksum: [u8; 32] = Sha256::digest(&bytes).into();
    bytes.extend_from_slice(&checksum);
    Ok(bytes)
}

/// Writes a snapshot of `state` to `path` (stage, fsync, rename, fsync the directory).
pub fn write_snapshot(path: &Path, state: &DomainState, log: &dyn EventLog) -> Result<(), SnapshotError> {
    let bytes = encode_snapshot(state, log)?;
    write_atomically(path, &bytes).map_err(|error| SnapshotError::Write(error.to_string()))
}

/// Decodes and verifies snapshot bytes against `log` (see the module documentation).
pub fn decode_snapshot(bytes: &[u8], log: &dyn EventLog) -> Result<DomainState, SnapshotError> {
    let config = bincode::config::standard();
    if bytes.len() < 32 {
        return Err(SnapshotError::Truncated);
    }
    let (body_bytes, checksum) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body_bytes).as_slice() != checksum {
        return Err(SnapshotError::Checksum);
    }
    let (body, read): (SnapshotBody, usize) =
        bincode::decode_from_slice(body_bytes, config).map_err(|error| SnapshotError::Decode(error.to_string()))?;
    if read != body_bytes.len() {
        return Err(SnapshotError::Decode("trailing bytes".into()));
    }
    if body.format_version != SNAPSHOT_FORMAT_VERSION {
        return Err(SnapshotError::FormatVersion { found: body.format_version, expected: SNAPSHOT_FORMAT_VERSION });
    }
    if body.state_shape != state_shape_fingerprint() {
        return Err(SnapshotError::StateShape);
    }
    let covered = EventSeq(body.covered_seq);
    let head = log.head();
    if covered > head {
        return Err(SnapshotError::BeyondHead { covered, head });
    }
    if covered != EventSeq(0) {
        let envelope = log.get(covered)?.ok_or(SnapshotError::DifferentEvent { covered })?;
        if event_sha256(&envelope)? != body.covered_event_sha256 {
            return Err(SnapshotError::DifferentEvent { covered });
        }
    }
    let (state, read): (DomainState, usize) =
        bincode::decode_from_slice(&body.state, config).map_err(|error| SnapshotError::Decode(error.to_string()))?;
    if read != body.state.len() {
        return Err(SnapshotError::Decode("trailing bytes in the state".into()));
    }
    if state.last_seq != covered {
        return Err(SnapshotError::Inconsistent);
    }
    Ok(state)
}

/// Reads and verifies the snapshot at `path`: `Ok(None)` when there is none.
pub fn read_snapshot(path: &Path, log: &dyn EventLog) -> Result<Option<DomainState>, SnapshotError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SnapshotError::Read { path: path.to_path_buf(), source }),
    };
    decode_snapshot(&bytes, log).map(Some)
}

/// The state at the log's head, and the position of the snapshot it started from: the
/// snapshot at `path` if it can be trusted (a warning says why when it cannot), then every
/// event after it.
pub fn fold_from_snapshot(path: Option<&Path>, log: &dyn EventLog) -> Result<(DomainState, EventSeq), LogError> {
    let mut state = match path.map(|path| (path, read_snapshot(path, log))) {
        Some((_, Ok(Some(state)))) => state,
        Some((path, Err(error))) => {
            tracing::warn!(path = %path.display(), %error, "snapshot ignored, folding the whole log");
            DomainState::default()
        }
        _ => DomainState::default(),
    };
    let covered = state.last_seq;
    for envelope in log.scan(covered.next()..=EventSeq(u64::MAX), false) {
        let envelope = envelope?;
        state.apply(envelope.seq, &envelope.event);
    }
    Ok((state, covered))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::domain::events::Event;
    use crate::domain::sample_events::{one_event_of_every_type, realistic_event_stream};
    use crate::log::SledEventLog;
    use crate::writer::{SnapshotSettings, Writer};

    /// A pool of events covering every type, some touching the same aggregates.
    fn event_pool() -> Vec<Event> {
        let mut pool = one_event_of_every_type();
        pool.extend(realistic_event_stream(40));
        pool
    }

    fn full_fold(log: &dyn EventLog) -> DomainState {
        fold_from_snapshot(None, log).unwrap().0
    }

    fn log_with(dir: &Path, events: &[Event]) -> SledEventLog {
        let log = SledEventLog::open(&dir.join("events")).unwrap();
        if !events.is_empty() {
            log.append(events).unwrap();
        }
        log
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Opening from a snapshot taken at any position, plus the events after it, gives
        /// exactly the state of folding the whole log.
        #[test]
        fn a_snapshot_plus_the_rest_of_the_log_equals_the_full_fold(
            picks in proptest::collection::vec(0usize..100, 0..60),
            cut in 0usize..60,
        ) {
            let pool = event_pool();
            let events: Vec<Event> = picks.iter().map(|pick| pool[pick % pool.len()].clone()).collect();
            let cut = cut.min(events.len());
            let dir = tempfile::tempdir().unwrap();
            let log = log_with(dir.path(), &events[..cut]);
            let path = dir.path().join("snapshots").join("state.bin");
            write_snapshot(&path, &full_fold(&log), &log).unwrap();
            if cut < events.len() {
                log.append(&events[cut..]).unwrap();
            }
            let (state, covered) = fold_from_snapshot(Some(&path), &log).unwrap();
            prop_assert_eq!(covered, EventSeq(cut as u64));
            prop_assert_eq!(&state, &full_fold(&log));
        }
    }

    #[test]
    fn a_corrupt_snapshot_is_ignored_and_the_whole_log_folded() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with(dir.path(), &event_pool());
        let path = dir.path().join("state.bin");
        write_snapshot(&path, &full_fold(&log), &log).unwrap();
        let good = std::fs::read(&path).unwrap();
        for position in [0, good.len() / 3, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[position] ^= 0x40;
            std::fs::write(&path, &bad).unwrap();
            assert!(matches!(read_snapshot(&path, &log), Err(SnapshotError::Checksum)), "byte {position}");
            let (state, covered) = fold_from_snapshot(Some(&path), &log).unwrap();
            assert_eq!(covered, EventSeq(0));
            assert_eq!(state, full_fold(&log));
        }
        std::fs::write(&path, &good[..20]).unwrap();
        assert!(matches!(read_snapshot(&path, &log), Err(SnapshotError::Truncated)));
    }

    #[test]
    fn a_snapshot_of_another_history_is_not_trusted() {
        let pool = event_pool();
        let dir = tempfile::tempdir().unwrap();
        let log = log_with(&dir.path().join("one"), &pool[..30]);
        let other = log_with(&dir.path().join("two"), &pool[10..40]);
        let path = dir.path().join("state.bin");
        write_snapshot(&path, &full_fold(&other), &other).unwrap();
        assert!(matches!(read_snapshot(&path, &log), Err(SnapshotError::DifferentEvent { .. })));
        assert_eq!(fold_from_snapshot(Some(&path), &log).unwrap(), (full_fold(&log), EventSeq(0)));
        // Taken further than the log goes (a log restored from an older backup, say).
        let longer = log_with(&dir.path().join("three"), &pool[..35]);
        write_snapshot(&path, &full_fold(&longer), &longer).unwrap();
        assert!(matches!(read_snapshot(&path, &log), Err(SnapshotError::BeyondHead { .. })));
        assert_eq!(fold_from_snapshot(Some(&path), &log).unwrap(), (full_fold(&log), EventSeq(0)));
    }

    #[test]
    fn a_snapshot_of_another_format_version_or_state_layout_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with(dir.path(), &event_pool());
        let state = full_fold(&log);
        let config = bincode::config::standard();
        let seal = |body: &SnapshotBody| {
            let mut bytes = bincode::encode_to_vec(body, config).unwrap();
            let checksum: [u8; 32] = Sha256::digest(&bytes).into();
            bytes.extend_from_slice(&checksum);
            bytes
        };
        let good = encode_snapshot(&state, &log).unwrap();
        let (body, _): (SnapshotBody, usize) = bincode::decode_from_slice(&good[..good.len() - 32], config).unwrap();
        let future = SnapshotBody { format_version: SNAPSHOT_FORMAT_VERSION + 1, ..body };
        assert!(matches!(decode_snapshot(&seal(&future), &log), Err(SnapshotError::FormatVersion { .. })));
        let other_build = SnapshotBody { format_version: SNAPSHOT_FORMAT_VERSION, state_shape: [7; 32], ..future };
        assert!(matches!(decode_snapshot(&seal(&other_build), &log), Err(SnapshotError::StateShape)));
        let lying = SnapshotBody { state_shape: state_shape_fingerprint(), covered_seq: 3, ..other_build };
        assert!(decode_snapshot(&seal(&lying), &log).is_err());
    }

    #[test]
    fn the_writer_snapshots_every_n_events_and_at_shutdown_and_starts_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(log_with(dir.path(), &event_pool()[..20]));
        let settings = SnapshotSettings { path: dir.path().join("state.bin"), every: 5 };
        let writer = Writer::open_with_snapshots(log.clone(), settings.clone()).unwrap();
        assert!(!settings.path.exists(), "nothing written before the first command");
        writer.write_snapshot();
        assert_eq!(read_snapshot(&settings.path, log.as_ref()).unwrap().unwrap().last_seq, EventSeq(20));
        log.append(&event_pool()[20..30]).unwrap();
        drop(writer);
        let reopened = Writer::open_with_snapshots(log.clone(), settings.clone()).unwrap();
        assert_eq!(reopened.read_state(|state| state.clone()), full_fold(log.as_ref()));
        assert_eq!(reopened.read_state(|state| state.last_seq), EventSeq(30));
        let command = crate::domain::decide::Command::RegisterModel(match &one_event_of_every_type()[0] {
            Event::ModelRegistered(model) => {
                crate::domain::events::ModelRegistered { name: "another".into(), ..model.clone() }
            }
            _ => unreachable!("the first sample event registers a model"),
        });
        reopened.execute(command).unwrap();
        // 31 events, the last snapshot at 20: due (every 5), so written after the command.
        assert_eq!(read_snapshot(&settings.path, log.as_ref()).unwrap().unwrap().last_seq, EventSeq(31));
    }
}
