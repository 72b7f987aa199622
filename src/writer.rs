//! The write side: one writer owns the domain state, folded at start-up from the last trusted
//! snapshot (see `state_snapshot.rs`) and the events after it, or from the whole log, and
//! handles commands one at a time: `decide`, then append (durably), then apply. With a
//! snapshot path it writes a new snapshot every `every` events (spaced out further when a
//! large state's snapshot takes seconds: see [`snapshot_due`]) and at clean shutdown.
//! Serialising commands here is what makes "one claim per job" and "one embedding set per
//! signature" hold without locks anywhere else.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::domain::decide::{decide, Command, Rejection};
use crate::domain::ids::EventSeq;
use crate::domain::state::DomainState;
use crate::log::{Envelope, EventLog, LogError};

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Log(#[from] LogError),
    /// The artifact a command's events refer to could not be put in place; nothing was recorded.
    #[error("{0}")]
    Staging(String),
}

/// Where and how often the writer snapshots its state.
#[derive(Debug, Clone)]
pub struct SnapshotSettings {
    pub path: PathBuf,
    /// Events between two snapshots (0: only at shutdown).
    pub every: u64,
}

/// A snapshot writing this long or longer spaces the next ones out (see [`snapshot_due`]).
pub const SLOW_SNAPSHOT: Duration = Duration::from_secs(1);

/// At most this share of the writer's time goes to snapshots that take [`SLOW_SNAPSHOT`] or longer.
pub const SNAPSHOT_TIME_SHARE: f64 = 0.05;

/// Whether the writer should snapshot now: `every` events since the last snapshot (never when
/// `every` is 0), and, when the last one took [`SLOW_SNAPSHOT`] or longer, enough time since it
/// ended that snapshots hold the writer at most [`SNAPSHOT_TIME_SHARE`] of the time. A snapshot
/// is written under the writer's lock, and at 1.4 million recordings one takes 3.5-10 s: every
/// 10 000 events would stop a busy server for seconds every minute or so.
pub fn snapshot_due(events_since: u64, every: u64, since_last_ended: Duration, last_took: Duration) -> bool {
    if every == 0 || events_since < every {
        return false;
    }
    last_took < SLOW_SNAPSHOT || since_last_ended.as_secs_f64() * SNAPSHOT_TIME_SHARE >= last_took.as_secs_f64()
}

/// The last snapshot written or read: the position it covers, when writing it ended and how
/// long it took (zero for one read at start-up).
struct LastSnapshot {
    covered: EventSeq,
    ended: Instant,
    took: Duration,
}

impl LastSnapshot {
    fn at(covered: EventSeq) -> Self {
        LastSnapshot { covered, ended: Instant::now(), took: Duration::ZERO }
    }
}

pub struct Writer {
    log: Arc<dyn EventLog>,
    state: Mutex<DomainState>,
    snapshots: Option<SnapshotSettings>,
    /// One snapshot is written at a time.
    last_snapshot: Mutex<LastSnapshot>,
}

impl Writer {
    /// Folds the whole log into the domain state (no snapshots).
    pub fn open(log: Arc<dyn EventLog>) -> Result<Writer, LogError> {
        let (state, _) = crate::state_snapshot::fold_from_snapshot(None, log.as_ref())?;
        Ok(Writer {
            log,
            state: Mutex::new(state),
            snapshots: None,
            last_snapshot: Mutex::new(LastSnapshot::at(EventSeq(0))),
        })
    }

    /// Starts from the snapshot at `settings.path` when it can be trusted, folds the events
    /// after it, and snapshots every `settings.every` events from then on.
    pub fn open_with_snapshots(log: Arc<dyn EventLog>, settings: SnapshotSettings) -> Result<Writer, LogError> {
        let snapshot = crate::state_snapshot::ReadSnapshot::read(settings.path.clone());
        Self::open_with_read_snapshot(log, settings, snapshot)
    }

    /// Like [`Writer::open_with_snapshots`], from the snapshot at `settings.path` already read
    /// (start-up reads it while the log opens); it is verified against `log` here.
    pub fn open_with_read_snapshot(
        log: Arc<dyn EventLog>,
        settings: SnapshotSettings,
        snapshot: crate::state_snapshot::ReadSnapshot,
    ) -> Result<Writer, LogError> {
        let (state, covered) = crate::state_snapshot::fold_from_read_snapshot(Some(snapshot), log.as_ref())?;
        Ok(Writer {
            log,
            state: Mutex::new(state),
            snapshots: Some(settings),
            last_snapshot: Mutex::new(LastSnapshot::at(covered)),
        })
    }

    /// Writes a snapshot of the current state now (at shutdown, say), if snapshots are on and
    /// the state moved since the last one. A failure is logged and otherwise harmless.
    pub fn write_snapshot(&self) {
        let Some(settings) = &self.snapshots else { return };
        let mut last_snapshot = self.last_snapshot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.last_seq == last_snapshot.covered {
            return;
        }
        Self::snapshot(settings, &state, self.log.as_ref(), &mut last_snapshot);
    }

    /// After an append: a snapshot when one is due (see [`snapshot_due`]; skipped while
    /// another snapshot is being written).
    fn snapshot_if_due(&self, state: &DomainState) {
        let Some(settings) = &self.snapshots else { return };
        let Ok(mut last_snapshot) = self.last_snapshot.try_lock() else { return };
        let events_since = state.last_seq.0.saturating_sub(last_snapshot.covered.0);
        if snapshot_due(events_since, settings.every, last_snapshot.ended.elapsed(), last_snapshot.took) {
            Self::snapshot(settings, state, self.log.as_ref(), &mut last_snapshot);
        }
    }

    fn snapshot(settings: &SnapshotSettings, state: &DomainState, log: &dyn EventLog, last: &mut LastSnapshot) {
        let started = Instant::now();
        match crate::state_snapshot::write_snapshot(&settings.path, state, log) {
            Ok(()) => {
                let took = started.elapsed();
                if took >= SLOW_SNAPSHOT {
                    tracing::info!(covered = state.last_seq.0, seconds = took.as_secs_f64(), "state snapshot written");
                }
                *last = LastSnapshot { covered: state.last_seq, ended: Instant::now(), took };
            }
            Err(error) => tracing::warn!(path = %settings.path.display(), %error, "snapshot not written"),
        }
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// Decides, appends and applies one command. Blocking (the append is flushed to disk):
    /// call it from `spawn_blocking` in async code.
    pub fn execute(&self, command: Command) -> Result<Vec<Envelope>, WriterError> {
        // A panic while holding the lock cannot leave the state half-applied in a way the log
        // does not reflect: events are applied only after their append succeeded.
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let events = decide(&state, command)?;
        let envelopes = self.log.append(&events)?;
        for envelope in &envelopes {
            state.apply(envelope.seq, &envelope.event);
        }
        self.snapshot_if_due(&state);
        Ok(envelopes)
    }

    /// Like [`Writer::execute`], but runs `stage` after deciding and before appending, with the
    /// events about to be recorded: the place to put an artifact where an event will say it is
    /// (stage, then publish). If `stage` fails nothing is appended.
    pub fn execute_staged(
        &self,
        command: Command,
        stage: impl FnOnce(&[crate::domain::events::Event]) -> Result<(), String>,
    ) -> Result<Vec<Envelope>, WriterError> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let events = decide(&state, command)?;
        stage(&events).map_err(WriterError::Staging)?;
        let envelopes = self.log.append(&events)?;
        for envelope in &envelopes {
            state.apply(envelope.seq, &envelope.event);
        }
        self.snapshot_if_due(&state);
        Ok(envelopes)
    }

    /// Reads the current state (for answers that depend on it, like "which job holds this
    /// signature").
    pub fn read_state<T>(&self, read: impl FnOnce(&DomainState) -> T) -> T {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        read(&state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MILLISECOND: Duration = Duration::from_millis(1);

    #[test]
    fn a_quick_snapshot_is_due_every_n_events() {
        assert!(!snapshot_due(9_999, 10_000, Duration::from_secs(3600), MILLISECOND));
        assert!(snapshot_due(10_000, 10_000, Duration::ZERO, MILLISECOND));
        assert!(snapshot_due(10_000, 10_000, Duration::ZERO, SLOW_SNAPSHOT - MILLISECOND));
        assert!(!snapshot_due(1_000_000, 0, Duration::from_secs(3600), Duration::ZERO), "0: only at shutdown");
    }

    #[test]
    fn a_slow_snapshot_spaces_the_next_out_to_a_twentieth_of_the_time() {
        let took = Duration::from_secs(4);
        assert!(!snapshot_due(10_000, 10_000, Duration::from_secs(79), took));
        assert!(snapshot_due(10_000, 10_000, Duration::from_secs(80), took));
        assert!(!snapshot_due(9_999, 10_000, Duration::from_secs(3600), took), "and still every n events at most");
    }

    proptest::proptest! {
        /// Whatever the events and times, a slow snapshot is only due after a gap so long
        /// that the last snapshot took at most 5% of it and the gap together.
        #[test]
        fn slow_snapshots_take_at_most_their_share(
            events in 0u64..100_000,
            every in 0u64..20_000,
            gap_ms in 0u64..1_000_000,
            took_ms in 0u64..100_000,
        ) {
            let (gap, took) = (Duration::from_millis(gap_ms), Duration::from_millis(took_ms));
            if snapshot_due(events, every, gap, took) {
                proptest::prop_assert!(every > 0 && events >= every);
                proptest::prop_assert!(took < SLOW_SNAPSHOT || took.as_secs_f64() <= (gap + took).as_secs_f64() * SNAPSHOT_TIME_SHARE + 1e-9);
            }
        }
    }
}
