//! Processing: from a request to an embedding set. `config` (pure: defaults, validation,
//! encoding signature), `pipeline` (streaming encode of one file), `job` (what a job needs wherever it
//! runs: its paths, Parquet metadata and checked model), `worker` (claim, run,
//! report, recover after a crash).

pub mod config;
pub mod job;
pub mod pipeline;
pub mod worker;
