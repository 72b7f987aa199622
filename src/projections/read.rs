//! Read access to the projections for the API, the UI and the CLI.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::Connection;

use super::{open_read_connection, ProjectionError};

/// A small pool of read-only connections to the projection database.
pub struct ProjectionReader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ProjectionReader {
    pub fn new(path: &Path) -> ProjectionReader {
        ProjectionReader { path: path.to_path_buf(), idle: Mutex::new(Vec::new()) }
    }

    /// Runs `query` on a pooled read-only connection.
    pub fn with_connection<T>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, ProjectionError>,
    ) -> Result<T, ProjectionError> {
        let pooled = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        let connection = match pooled {
            Some(connection) => connection,
            None => open_read_connection(&self.path)?,
        };
        let result = query(&connection);
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < 8 {
            idle.push(connection);
        }
        result
    }
}
