//! humpback: turn humpback-whale recordings into embedding vectors and cluster them.
//!
//! See ARCHITECTURE.md for the bird's-eye view, the code map and the invariants.

pub mod domain;
pub mod model;
