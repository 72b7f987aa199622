//! The clustering workflow (the imperative shell around `crate::clustering`): what a request
//! means (`request`), one job's clustering from its inputs and storage (`compute`: load the
//! embedding sets, cluster, measure, summarise, write `clusters.json` and `assignments.parquet`),
//! the server's workers that run it (`worker`), and those files (`outputs`).

pub mod annotations;
pub mod compute;
pub mod outputs;
pub mod request;
pub mod worker;
