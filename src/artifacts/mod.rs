//! Artifacts on disk: written to a temporary path, fsynced, renamed into place, and the
//! directory fsynced, before any event makes them visible ("stage, then publish").

pub mod embeddings_parquet;
pub mod files;
pub mod janitor;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{doing} {path}: {source}")]
    Io { doing: &'static str, path: std::path::PathBuf, source: std::io::Error },
    #[error("parquet {path}: {source}")]
    Parquet { path: std::path::PathBuf, source: parquet::errors::ParquetError },
    #[error("arrow data for {path}: {source}")]
    Arrow { path: std::path::PathBuf, source: arrow_schema::ArrowError },
    #[error("{path}: embedding of row {row_index} has {found} values, the set has {expected} dimensions")]
    WrongDimension { path: std::path::PathBuf, row_index: u64, found: usize, expected: usize },
    #[error("{path} is not a valid embedding set: {reason}")]
    Invalid { path: std::path::PathBuf, reason: String },
}
