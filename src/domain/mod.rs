//! The functional core of the write side: ids, events, the folded state and `decide`.

pub mod annotation_rules;
pub mod decide;
pub mod events;
pub mod ids;
pub mod json_text;
pub mod sample_events;
pub mod state;
