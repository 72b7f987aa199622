//! The write side: one writer owns the domain state, folded from the whole log at start-up,
//! and handles commands one at a time: `decide`, then append (durably), then apply.
//! Serialising commands here is what makes "one claim per job" and "one embedding set per
//! signature" hold without locks anywhere else.

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

pub struct Writer {
    log: Arc<dyn EventLog>,
    state: Mutex<DomainState>,
}

impl Writer {
    /// Folds the whole log into the domain state.
    pub fn open(log: Arc<dyn EventLog>) -> Result<Writer, LogError> {
        let mut state = DomainState::default();
        for envelope in log.scan(EventSeq(1)..=EventSeq(u64::MAX), false) {
            let envelope = envelope?;
            state.apply(envelope.seq, &envelope.event);
        }
        Ok(Writer { log, state: Mutex::new(state) })
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
        Ok(envelopes)
    }

    /// Reads the current state (for answers that depend on it, like "which job holds this
    /// signature").
    pub fn read_state<T>(&self, read: impl FnOnce(&DomainState) -> T) -> T {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        read(&state)
    }
}
