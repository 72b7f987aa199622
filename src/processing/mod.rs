//! Processing: from a request to an embedding set. `config` (pure: defaults, validation,
//! encoding signature), `pipeline` (streaming encode of one file), `worker` (claim, run,
//! report, recover after a crash).

pub mod config;
pub mod pipeline;
pub mod worker;
