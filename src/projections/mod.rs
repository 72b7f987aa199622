//! SQLite projections of the log: the tables that the API, the UI and the CLI read.
//!
//! Each projection owns the tables of `projections/NAME.sql` (whose first line is
//! `-- version: N`) and a checkpoint: the last sequence it has applied. Events are applied in
//! one transaction together with the checkpoints, so a crash never leaves a projection half
//! a batch ahead. A projection whose version changed is dropped and rebuilt from the log when
//! the store opens; a projection that is behind catches up.

pub mod annotation_queries;
mod apply;
pub mod event_index;
pub mod queries;
pub mod read;
pub mod recording_time_queries;
pub mod runner;
pub mod ui_queries;

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::domain::ids::EventSeq;
use crate::log::LogError;

pub use runner::{ProjectionStatus, Projector};

/// How a projection applies one event.
pub enum Apply {
    /// From the event alone.
    Event(fn(&rusqlite::Transaction<'_>, &crate::log::Envelope) -> rusqlite::Result<()>),
    /// From the event and the artifacts it vouches for (checked against the event), found
    /// below the data directory given.
    WithArtifacts(
        fn(&rusqlite::Transaction<'_>, &crate::log::Envelope, &crate::storage::Storage) -> rusqlite::Result<()>,
    ),
}

/// One projection: a name, its DDL (with a version header) and how it applies events.
pub struct ProjectionDefinition {
    pub name: &'static str,
    pub ddl: &'static str,
    pub apply: Apply,
}

impl ProjectionDefinition {
    /// The `-- version: N` header of the DDL.
    pub fn version(&self) -> u32 {
        self.ddl
            .lines()
            .find_map(|line| line.trim().strip_prefix("-- version:"))
            .and_then(|version| version.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The tables the DDL creates, in order.
    pub fn tables(&self) -> Vec<&'static str> {
        self.ddl
            .lines()
            .filter_map(|line| line.trim().strip_prefix("CREATE TABLE "))
            .filter_map(|rest| rest.split_whitespace().next())
            .collect()
    }
}

/// Every projection, in the order they are applied.
pub const PROJECTIONS: &[ProjectionDefinition] = &[
    ProjectionDefinition {
        name: "models",
        ddl: include_str!("../../projections/models.sql"),
        apply: Apply::Event(apply::models),
    },
    ProjectionDefinition {
        name: "audio_files",
        ddl: include_str!("../../projections/audio_files.sql"),
        apply: Apply::Event(apply::audio_files),
    },
    ProjectionDefinition {
        name: "audio_metadata",
        ddl: include_str!("../../projections/audio_metadata.sql"),
        apply: Apply::Event(apply::audio_metadata),
    },
    ProjectionDefinition {
        name: "processing_jobs",
        ddl: include_str!("../../projections/processing_jobs.sql"),
        apply: Apply::Event(apply::processing_jobs),
    },
    ProjectionDefinition {
        name: "embedding_sets",
        ddl: include_str!("../../projections/embedding_sets.sql"),
        apply: Apply::Event(apply::embedding_sets),
    },
    ProjectionDefinition {
        name: "clustering_jobs",
        ddl: include_str!("../../projections/clustering_jobs.sql"),
        apply: Apply::Event(apply::clustering_jobs),
    },
    ProjectionDefinition {
        name: "clusters",
        ddl: include_str!("../../projections/clusters.sql"),
        apply: Apply::Event(apply::clusters),
    },
    ProjectionDefinition {
        name: "cluster_assignments",
        ddl: include_str!("../../projections/cluster_assignments.sql"),
        apply: Apply::WithArtifacts(apply::cluster_assignments),
    },
    ProjectionDefinition {
        name: "annotations",
        ddl: include_str!("../../projections/annotations.sql"),
        apply: Apply::Event(apply::annotations),
    },
    ProjectionDefinition {
        name: "recording_times",
        ddl: include_str!("../../projections/recording_times.sql"),
        apply: Apply::Event(apply::recording_times),
    },
    ProjectionDefinition {
        name: "classifiers",
        ddl: include_str!("../../projections/classifiers.sql"),
        apply: Apply::Event(apply::classifiers),
    },
    ProjectionDefinition {
        name: "detections",
        ddl: include_str!("../../projections/detections.sql"),
        apply: Apply::Event(apply::detections),
    },
    ProjectionDefinition {
        name: "event_index",
        ddl: include_str!("../../projections/event_index.sql"),
        apply: Apply::Event(apply::event_index),
    },
];

/// Migrations of what cannot be derived from the log, applied in order, each once.
pub const MIGRATIONS: &[(u32, &str, &str)] =
    &[(1, "projection_checkpoints", include_str!("../../migrations/0001_projection_checkpoints.sql"))];

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("projection database {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("projection database failed while {doing}: {source}")]
    Sql { doing: String, source: rusqlite::Error },
    #[error("projection {name} expected event {expected} next but the log gave {found}: the log has a gap")]
    Gap { name: &'static str, expected: EventSeq, found: EventSeq },
    #[error("unknown projection {0:?}; projections are: {1}")]
    UnknownProjection(String, String),
    #[error(transparent)]
    Log(#[from] LogError),
}

pub(crate) fn sql_error(doing: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> ProjectionError {
    let doing = doing.into();
    move |source| ProjectionError::Sql { doing, source }
}

/// Every row `sql` gives for `parameters`, each turned into a value by `map_row`, collected.
/// `doing` names the work in an error ("listing clusters").
pub(crate) fn query_all<Item, Collection: FromIterator<Item>>(
    connection: &Connection,
    sql: &str,
    parameters: impl rusqlite::Params,
    map_row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<Item>,
    doing: &str,
) -> Result<Collection, ProjectionError> {
    let mut statement = connection.prepare_cached(sql).map_err(sql_error(doing))?;
    let rows = statement.query_map(parameters, map_row).map_err(sql_error(doing))?;
    rows.collect::<Result<Collection, _>>().map_err(sql_error(doing))
}

/// Opens the projection database for writing, in WAL mode, and applies pending migrations.
pub fn open_write_connection(path: &Path) -> Result<Connection, ProjectionError> {
    let connection =
        Connection::open(path).map_err(|source| ProjectionError::Open { path: path.display().to_string(), source })?;
    configure(&connection)?;
    migrate(&connection)?;
    Ok(connection)
}

/// Opens a read-only connection (for API and UI queries).
pub fn open_read_connection(path: &Path) -> Result<Connection, ProjectionError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|source| ProjectionError::Open { path: path.display().to_string(), source })?;
    connection.busy_timeout(std::time::Duration::from_secs(5)).map_err(sql_error("setting the busy timeout"))?;
    Ok(connection)
}

fn configure(connection: &Connection) -> Result<(), ProjectionError> {
    connection.pragma_update(None, "journal_mode", "WAL").map_err(sql_error("switching to WAL mode"))?;
    connection.pragma_update(None, "synchronous", "NORMAL").map_err(sql_error("setting synchronous mode"))?;
    connection.busy_timeout(std::time::Duration::from_secs(5)).map_err(sql_error("setting the busy timeout"))?;
    Ok(())
}

fn migrate(connection: &Connection) -> Result<(), ProjectionError> {
    connection
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
        )
        .map_err(sql_error("creating schema_migrations"))?;
    for (version, name, sql) in MIGRATIONS {
        let applied: bool = connection
            .query_row("SELECT COUNT(*) > 0 FROM schema_migrations WHERE version = ?1", [version], |row| row.get(0))
            .map_err(sql_error("reading schema_migrations"))?;
        if applied {
            continue;
        }
        let transaction = connection.unchecked_transaction().map_err(sql_error("starting a migration"))?;
        transaction.execute_batch(sql).map_err(sql_error(format!("applying migration {version} {name}")))?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![version, name, crate::log::RecordedAt::now().to_rfc3339()],
            )
            .map_err(sql_error("recording a migration"))?;
        transaction.commit().map_err(sql_error(format!("committing migration {version}")))?;
    }
    Ok(())
}

/// A canonical text dump of every projection table: rows sorted, one per line. Two stores
/// with the same content give the same dump (used to compare incremental and rebuilt).
pub fn dump(connection: &Connection) -> Result<String, ProjectionError> {
    let mut out = String::new();
    for projection in PROJECTIONS {
        for table in projection.tables() {
            out.push_str(&format!("## {table}\n"));
            let mut statement =
                connection.prepare(&format!("SELECT * FROM {table}")).map_err(sql_error(format!("dumping {table}")))?;
            let columns: Vec<String> = statement.column_names().map(|name| name.to_string()).collect();
            let mut lines: Vec<String> = statement
                .query_map([], |row| {
                    let mut cells = Vec::with_capacity(columns.len());
                    for (index, column) in columns.iter().enumerate() {
                        let value: rusqlite::types::Value = row.get(index)?;
                        cells.push(format!("{column}={}", render_value(&value)));
                    }
                    Ok(cells.join(" | "))
                })
                .map_err(sql_error(format!("dumping {table}")))?
                .collect::<Result<_, _>>()
                .map_err(sql_error(format!("dumping {table}")))?;
            lines.sort();
            for line in lines {
                out.push_str(&line);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

fn render_value(value: &rusqlite::types::Value) -> String {
    use rusqlite::types::Value;
    match value {
        Value::Null => "NULL".into(),
        Value::Integer(integer) => integer.to_string(),
        Value::Real(real) => format!("{real:?}"),
        Value::Text(text) => format!("{text:?}"),
        Value::Blob(blob) => format!("<{} bytes>", blob.len()),
    }
}
