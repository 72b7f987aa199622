//! Search by example: exact top-k over the embedding sets in a scope.
//!
//! - [`scan`]: the pure core (metrics, the threaded scan with bounded heaps, tie order);
//! - [`cache`]: the vector cache, a memory-mapped copy of each set's vectors derived from its
//!   Parquet file (the truth), rebuilt when missing or stale;
//! - [`request`]: what a request means, resolved against the domain state (pure);
//! - [`service`]: the imperative shell: resolve, embed a span or clip, open caches, scan, describe.

pub mod cache;
pub mod compact;
pub mod request;
pub mod scan;
pub mod service;

pub use request::{parse_search_request, resolve_search, SearchQuery, SearchRequest, DEFAULT_K, MAX_K};
pub use scan::{top_k, Hit, Metric, VectorSlab};
pub use service::{run_search, SearchAnswer, SearchResult};

/// Why a search could not run.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// 422: a field is wrong (the message starts with the field's name).
    #[error("{0}")]
    Invalid(String),
    /// 404: a named set or recording does not exist, or the scope selects nothing.
    #[error("{0}")]
    NotFound(String),
    /// 400: the scope mixes model versions.
    #[error("{0}")]
    MixedModelVersions(String),
    /// 409: the model the scope was encoded with is not available now.
    #[error("{0}")]
    ModelUnavailable(String),
    /// 422: the uploaded clip cannot be used.
    #[error("{0}")]
    BadClip(String),
    /// 500: a cache that cannot be built or read.
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
    /// 500: a stored recording that cannot be decoded or embedded.
    #[error("embedding the query: {0}")]
    Embedding(#[from] crate::processing::pipeline::PipelineError),
    /// 500: the projections cannot be read.
    #[error(transparent)]
    Projection(#[from] crate::projections::ProjectionError),
    /// 500: the vectors do not fit the query (a cache that disagrees with the log).
    #[error(transparent)]
    Scan(#[from] scan::ScanError),
    /// 503: an embedding set or recording cannot be fetched from storage.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}
