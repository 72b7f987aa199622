//! The write side: one writer owns the domain state, folded at start-up from the last trusted
//! snapshot (see `state_snapshot.rs`) and the events after it, or from the whole log, and
//! handles commands one at a time: `decide`, then append (durably), then apply. With a
//! snapshot path it writes a new snapshot every `every` events and at clean shutdown.
//! Serialising commands here is what makes "one claim per job" and "one embedding set per
//! signature" hold without locks anywhere else.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

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

pub struct Writer {
    log: Arc<dyn EventLog>,
    state: Mutex<DomainState>,
    snapshots: Option<SnapshotSettings>,
    /// The position of the last snapshot written or read; one snapshot is written at a time.
    last_snapshot: Mutex<EventSeq>,
}

impl Writer {
    /// Folds the whole log into the domain state (no snapshots).
    pub fn open(log: Arc<dyn EventLog>) -> Result<Writer, LogError> {
        let (state, _) = crate::state_snapshot::fold_from_snapshot(None, log.as_ref())?;
        Ok(Writer { log, state: Mutex::new(state), snapshots: None, last_snapshot: Mutex::new(EventSeq(0)) })
    }

    /// Starts from the snapshot at `settings.path` when it can be trusted, folds the events
    /// after it, and snapshots every `settings.every` events from then on.
    pub fn open_with_snapshots(log: Arc<dyn EventLog>, settings: SnapshotSettings) -> Result<Writer, LogError> {
        let (state, covered) = crate::state_snapshot::fold_from_snapshot(Some(&settings.path), log.as_ref())?;
        Ok(Writer { log, state: Mutex::new(state), snapshots: Some(settings), last_snapshot: Mutex::new(covered) })
    }

    /// Writes a snapshot of the current state now (at shutdown, say), if snapshots are on and
    /// the state moved since the last one. A failure is logged and otherwise harmless.
    pub fn write_snapshot(&self) {
        let Some(settings) = &self.snapshots else { return };
        let mut last_snapshot = self.last_snapshot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.last_seq == *last_snapshot {
            return;
        }
        match crate::state_snapshot::write_snapshot(&settings.path, &state, self.log.as_ref()) {
            Ok(()) => *last_snapshot = state.last_seq,
            Err(error) => tracing::warn!(path = %settings.path.display(), %error, "snapshot not written"),
        }
    }

    /// After an append: a snapshot when `every` events passed since the last one (skipped
    /// while another snapshot is being written).
    fn snapshot_if_due(&self, state: &DomainState) {
        let Some(settings) = &self.snapshots else { return };
        if settings.every == 0 {
            return;
        }
        let Ok(mut last_snapshot) = self.last_snapshot.try_lock() else { return };
        if state.last_seq.0 < last_snapshot.0 + settings.every {
            return;
        }
        match crate::state_snapshot::write_snapshot(&settings.path, state, self.log.as_ref()) {
            Ok(()) => *last_snapshot = state.last_seq,
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
