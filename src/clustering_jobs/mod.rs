//! The clustering workflow (the imperative shell around `crate::clustering`): what a request
//! means (`request`), the worker that loads embedding sets, clusters, measures, summarises and
//! writes `clusters.json` and `assignments.parquet` (`worker`), and those files (`outputs`).

pub mod annotations;
pub mod outputs;
pub mod request;
pub mod worker;
