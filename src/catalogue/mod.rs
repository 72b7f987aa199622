//! The call catalogue's exchange formats, pure: Raven Pro selection tables (and the same
//! columns as CSV), written and read, and the plan of an import against the folded state.

pub mod import;
pub mod raven;
