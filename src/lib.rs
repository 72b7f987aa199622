//! humpback: turn humpback-whale recordings into embedding vectors and cluster them.
//!
//! See ARCHITECTURE.md for the bird's-eye view, the code map and the invariants.

pub mod access_settings;
pub mod app;
pub mod artifacts;
pub mod audio;
pub mod catalogue;
pub mod classifier;
pub mod cli;
pub mod clustering;
pub mod clustering_jobs;
pub mod config;
pub mod domain;
pub mod folders;
pub mod http;
pub mod huge_pages;
pub mod ingest;
pub mod log;
pub mod model;
pub mod processing;
pub mod projections;
pub mod recording_time;
pub mod search;
pub mod services;
pub mod spectrogram;
pub mod state_snapshot;
pub mod storage;
pub mod views;
pub mod web;
pub mod workers;
pub mod writer;
