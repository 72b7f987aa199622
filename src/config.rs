//! Where humpback keeps its data, and how the server is reached.

use std::path::{Path, PathBuf};

pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./data";

/// The layout of a data directory (seed spec section 8, plus the log and projections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot create {path}: {source}")]
pub struct DataDirError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Batch-size measurements, one JSON file per model version (a cache: safe to delete).
    pub fn batch_measurements_dir(&self) -> PathBuf {
        self.root.join("batch-measurements")
    }

    /// The sled event log.
    pub fn events_dir(&self) -> PathBuf {
        self.root.join("events")
    }

    /// The writer's latest state snapshot (a shortcut for start-up; see `state_snapshot.rs`).
    pub fn writer_snapshot(&self) -> PathBuf {
        self.root.join("snapshots").join("writer-state.bin")
    }

    /// The SQLite projection database.
    pub fn projections_db(&self) -> PathBuf {
        self.root.join("projections.sqlite3")
    }

    pub fn audio_raw_dir(&self) -> PathBuf {
        self.root.join("audio").join("raw")
    }

    pub fn embeddings_dir(&self) -> PathBuf {
        self.root.join("embeddings")
    }

    pub fn clusters_dir(&self) -> PathBuf {
        self.root.join("clusters")
    }

    /// Derived vector caches (`{embedding_set_id}.f32`), rebuilt from the Parquet files whenever
    /// missing or stale; never referenced by an event.
    pub fn vector_cache_dir(&self) -> PathBuf {
        self.root.join("cache").join("vectors")
    }

    /// Which storage holds this data directory's artifacts, when not the directory itself
    /// (written when a data directory is created with `--storage`).
    pub fn storage_record(&self) -> PathBuf {
        self.root.join("storage-location")
    }

    /// Local copies of a bucket's objects (a cache: safe to delete while the server is stopped).
    pub fn storage_cache_dir(&self) -> PathBuf {
        self.root.join("cache").join("storage")
    }

    /// Scratch space for uploads in progress (same filesystem, so moves are atomic renames).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Whether anything was ever written here (a log exists).
    pub fn has_event_log(&self) -> bool {
        self.events_dir().join("db").exists() || self.events_dir().join("conf").exists()
    }

    /// Creates the directory layout.
    pub fn create_layout(&self) -> Result<(), DataDirError> {
        for path in
            [self.audio_raw_dir(), self.embeddings_dir(), self.clusters_dir(), self.tmp_dir(), self.events_dir()]
        {
            std::fs::create_dir_all(&path).map_err(|source| DataDirError { path: path.clone(), source })?;
        }
        Ok(())
    }
}
