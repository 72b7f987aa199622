//! The projector: applies the log to the projection tables, checkpointed, and rebuilds them.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;
use tokio::sync::watch;

use super::{open_write_connection, sql_error, Apply, ProjectionDefinition, ProjectionError, PROJECTIONS};
use crate::domain::ids::EventSeq;
use crate::log::{EventLog, RecordedAt};

/// Events read from the log per transaction while catching up.
const CATCH_UP_BATCH: usize = 2_000;

/// Where one projection stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ProjectionStatus {
    pub name: String,
    /// The version in `projections/NAME.sql` of this build.
    pub schema_version: u32,
    /// The version the database was built with (equal after start-up).
    pub stored_version: Option<u32>,
    pub last_seq: u64,
    /// Events in the log not yet applied.
    pub lag: u64,
    pub rebuilt_at: Option<String>,
}

/// What a rebuild did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RebuildReport {
    pub projections: Vec<String>,
    pub events_replayed: u64,
    pub seconds: f64,
}

/// Owns the write connection of the projection database.
pub struct Projector {
    connection: Connection,
    checkpoint_sender: watch::Sender<EventSeq>,
    /// Where artifacts an event vouches for are read (the data directory by default).
    storage: crate::storage::Storage,
}

impl Projector {
    /// Opens the database, applies migrations, and drops any projection whose schema version
    /// changed (it is rebuilt by the next [`Projector::catch_up`]). Artifacts the log vouches
    /// for (a clustering's `assignments.parquet`) are read below `data_root`.
    pub fn open(path: &Path, data_root: &Path) -> Result<Projector, ProjectionError> {
        Projector::open_with_storage(path, crate::storage::Storage::folder(data_root))
    }

    /// [`Projector::open`] with artifacts read from `storage` (a shared folder or a bucket).
    pub fn open_with_storage(path: &Path, storage: crate::storage::Storage) -> Result<Projector, ProjectionError> {
        let connection = open_write_connection(path)?;
        let (checkpoint_sender, _) = watch::channel(EventSeq(0));
        let mut projector = Projector { connection, checkpoint_sender, storage };
        projector.reset_changed_schemas()?;
        let lowest = projector.lowest_checkpoint()?;
        projector.checkpoint_sender.send_replace(lowest);
        Ok(projector)
    }

    /// The lowest checkpoint over all projections: every projection has applied at least
    /// this far. Updated after every committed batch.
    pub fn subscribe(&self) -> watch::Receiver<EventSeq> {
        self.checkpoint_sender.subscribe()
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Names of projections whose stored schema differs from this build's (rebuilt here).
    fn reset_changed_schemas(&mut self) -> Result<Vec<&'static str>, ProjectionError> {
        let mut reset = Vec::new();
        for projection in PROJECTIONS {
            let stored = self.stored_version(projection.name)?;
            if stored != Some(projection.version()) {
                if let Some(stored) = stored {
                    tracing::info!(
                        projection = projection.name,
                        from = stored,
                        to = projection.version(),
                        "projection schema changed; rebuilding it from the log"
                    );
                }
                let transaction = self.connection.transaction().map_err(sql_error("starting a schema reset"))?;
                recreate(&transaction, projection)?;
                transaction.commit().map_err(sql_error("committing a schema reset"))?;
                reset.push(projection.name);
            }
        }
        Ok(reset)
    }

    fn stored_version(&self, name: &str) -> Result<Option<u32>, ProjectionError> {
        self.connection
            .query_row("SELECT schema_version FROM projection_checkpoints WHERE name = ?1", [name], |row| row.get(0))
            .optional()
            .map_err(sql_error("reading a projection version"))
    }

    fn checkpoints(&self) -> Result<HashMap<String, EventSeq>, ProjectionError> {
        read_checkpoints(&self.connection)
    }

    fn lowest_checkpoint(&self) -> Result<EventSeq, ProjectionError> {
        lowest_checkpoint(&self.connection)
    }

    /// Applies every event the projections have not seen yet, one transaction per batch.
    /// Returns the sequence every projection has reached.
    pub fn catch_up(&mut self, log: &dyn EventLog) -> Result<EventSeq, ProjectionError> {
        loop {
            let mut checkpoints = self.checkpoints()?;
            let lowest = self.lowest_checkpoint()?;
            if lowest >= log.head() {
                self.checkpoint_sender.send_if_modified(|current| {
                    let changed = *current != lowest;
                    *current = lowest;
                    changed
                });
                return Ok(lowest);
            }
            let batch = read_durable(log, lowest, CATCH_UP_BATCH)?;
            if batch.is_empty() {
                return Ok(lowest);
            }
            let transaction = self.connection.transaction().map_err(sql_error("starting a catch-up batch"))?;
            apply_batch(&transaction, &batch, &mut checkpoints, &self.storage)?;
            transaction.commit().map_err(sql_error("committing a catch-up batch"))?;
            let reached = batch.last().map(|envelope| envelope.seq).unwrap_or(lowest);
            self.checkpoint_sender.send_replace(reached.min(self.lowest_checkpoint()?));
        }
    }

    /// Drops the named projections (all when `names` is empty) and replays the whole log into
    /// them, in one transaction: readers see the old rows until the new ones are complete.
    pub fn rebuild(&mut self, log: &dyn EventLog, names: &[String]) -> Result<RebuildReport, ProjectionError> {
        let started = Instant::now();
        let selected: Vec<&ProjectionDefinition> = if names.is_empty() {
            PROJECTIONS.iter().collect()
        } else {
            names.iter().map(|name| find(name)).collect::<Result<_, _>>()?
        };
        // Bring the others up to date first so that one transaction can replay everything.
        self.catch_up(log)?;
        let head = log.head();
        let transaction = self.connection.transaction().map_err(sql_error("starting a rebuild"))?;
        let mut checkpoints = read_checkpoints(&transaction)?;
        for projection in &selected {
            recreate(&transaction, projection)?;
            checkpoints.insert(projection.name.to_string(), EventSeq(0));
        }
        let mut replayed = 0u64;
        let mut after = EventSeq(0);
        while after < head {
            let batch = read_durable(log, after, CATCH_UP_BATCH)?;
            let Some(last) = batch.last() else { break };
            after = last.seq;
            replayed += batch.len() as u64;
            apply_batch(&transaction, &batch, &mut checkpoints, &self.storage)?;
        }
        transaction.commit().map_err(sql_error("committing a rebuild"))?;
        self.catch_up(log)?;
        Ok(RebuildReport {
            projections: selected.iter().map(|projection| projection.name.to_string()).collect(),
            events_replayed: replayed,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Every projection's version, checkpoint and lag behind `head`.
    pub fn status(&self, head: EventSeq) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        status(&self.connection, head)
    }
}

/// Events after `after`, up to the durable head only: an append becomes visible in the tree
/// before its flush finishes, and a projection must never apply an event a crash could still
/// take back (its sequence would then be reused by a different event).
fn read_durable(
    log: &dyn EventLog,
    after: EventSeq,
    limit: usize,
) -> Result<Vec<crate::log::Envelope>, ProjectionError> {
    let head = log.head();
    if after >= head {
        return Ok(Vec::new());
    }
    Ok(log.scan(after.next()..=head, false).take(limit).collect::<Result<_, _>>()?)
}

/// Status read from any connection (the CLI reads a stopped data directory read-only).
pub fn status(connection: &Connection, head: EventSeq) -> Result<Vec<ProjectionStatus>, ProjectionError> {
    let mut statement = connection
        .prepare("SELECT name, schema_version, last_seq, rebuilt_at FROM projection_checkpoints")
        .map_err(sql_error("reading projection checkpoints"))?;
    let stored: HashMap<String, (u32, u64, String)> = statement
        .query_map([], |row| Ok((row.get(0)?, (row.get(1)?, row.get(2)?, row.get(3)?))))
        .map_err(sql_error("reading projection checkpoints"))?
        .collect::<Result<_, _>>()
        .map_err(sql_error("reading projection checkpoints"))?;
    Ok(PROJECTIONS
        .iter()
        .map(|projection| {
            let entry = stored.get(projection.name);
            let last_seq = entry.map_or(0, |(_, last_seq, _)| *last_seq);
            ProjectionStatus {
                name: projection.name.to_string(),
                schema_version: projection.version(),
                stored_version: entry.map(|(version, _, _)| *version),
                last_seq,
                lag: head.0.saturating_sub(last_seq),
                rebuilt_at: entry.map(|(_, _, rebuilt_at)| rebuilt_at.clone()),
            }
        })
        .collect())
}

fn find(name: &str) -> Result<&'static ProjectionDefinition, ProjectionError> {
    PROJECTIONS.iter().find(|projection| projection.name == name).ok_or_else(|| {
        let known: Vec<&str> = PROJECTIONS.iter().map(|projection| projection.name).collect();
        ProjectionError::UnknownProjection(name.to_string(), known.join(", "))
    })
}

/// The lowest checkpoint over all projections: every projection has applied the log up to
/// here. A page records it so its live updates resume right after what it shows.
pub fn lowest_checkpoint(connection: &Connection) -> Result<EventSeq, ProjectionError> {
    let checkpoints = read_checkpoints(connection)?;
    Ok(PROJECTIONS
        .iter()
        .map(|projection| checkpoints.get(projection.name).copied().unwrap_or_default())
        .min()
        .unwrap_or_default())
}

fn read_checkpoints(connection: &Connection) -> Result<HashMap<String, EventSeq>, ProjectionError> {
    let mut statement = connection
        .prepare_cached("SELECT name, last_seq FROM projection_checkpoints")
        .map_err(sql_error("reading projection checkpoints"))?;
    let rows = statement
        .query_map([], |row| Ok((row.get::<_, String>(0)?, EventSeq(row.get(1)?))))
        .map_err(sql_error("reading projection checkpoints"))?
        .collect::<Result<_, _>>()
        .map_err(sql_error("reading projection checkpoints"));
    rows
}

/// Drops the projection's tables, creates them from its DDL and resets its checkpoint.
fn recreate(transaction: &Transaction<'_>, projection: &ProjectionDefinition) -> Result<(), ProjectionError> {
    for table in projection.tables() {
        transaction
            .execute_batch(&format!("DROP TABLE IF EXISTS {table}"))
            .map_err(sql_error(format!("dropping {table}")))?;
    }
    transaction.execute_batch(projection.ddl).map_err(sql_error(format!("creating projection {}", projection.name)))?;
    transaction
        .execute(
            "INSERT INTO projection_checkpoints (name, schema_version, last_seq, rebuilt_at) VALUES (?1, ?2, 0, ?3)
             ON CONFLICT (name) DO UPDATE SET schema_version = excluded.schema_version, last_seq = 0,
                 rebuilt_at = excluded.rebuilt_at",
            params![projection.name, projection.version(), RecordedAt::now().to_rfc3339()],
        )
        .map_err(sql_error(format!("resetting the checkpoint of {}", projection.name)))?;
    Ok(())
}

/// Applies a batch of consecutive envelopes to every projection that has not seen them, and
/// records the new checkpoints, all inside `transaction`.
fn apply_batch(
    transaction: &Transaction<'_>,
    batch: &[crate::log::Envelope],
    checkpoints: &mut HashMap<String, EventSeq>,
    storage: &crate::storage::Storage,
) -> Result<(), ProjectionError> {
    for projection in PROJECTIONS {
        let mut last = checkpoints.get(projection.name).copied().unwrap_or_default();
        let before = last;
        for envelope in batch {
            if envelope.seq <= last {
                continue;
            }
            if envelope.seq != last.next() {
                return Err(ProjectionError::Gap { name: projection.name, expected: last.next(), found: envelope.seq });
            }
            match projection.apply {
                Apply::Event(apply) => apply(transaction, envelope),
                Apply::WithArtifacts(apply) => apply(transaction, envelope, storage),
            }
            .map_err(sql_error(format!(
                "applying event {} ({}) to projection {}",
                envelope.seq,
                envelope.event.type_name(),
                projection.name
            )))?;
            last = envelope.seq;
        }
        if last != before {
            transaction
                .execute(
                    "UPDATE projection_checkpoints SET last_seq = ?2 WHERE name = ?1",
                    params![projection.name, last.0],
                )
                .map_err(sql_error(format!("advancing the checkpoint of {}", projection.name)))?;
            checkpoints.insert(projection.name.to_string(), last);
        }
    }
    Ok(())
}
