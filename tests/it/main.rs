//! Integration tests: one binary (link once), one module per area.

mod api;
mod audio_api;
mod cli;
mod crash;
mod golden_events;
mod helpers;
mod projections;
mod roundtrip;
mod ui_pages;
