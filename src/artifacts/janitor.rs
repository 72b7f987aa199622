//! Files in the data directory that no event references: left by a crash between staging an
//! artifact and recording it, or by an interrupted upload. Reported, and removable on request.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::services::Humpback;

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct OrphanReport {
    /// Paths relative to the data directory.
    pub orphans: Vec<String>,
    pub bytes: u64,
    pub removed: bool,
}

fn walk(root: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => walk(&path, found),
            Ok(kind) if kind.is_file() => found.push(path),
            _ => {}
        }
    }
}

/// Lists (and with `remove`, deletes) unreferenced files under `audio/raw`, `embeddings` and
/// `tmp`. Must run while no worker writes (the caller holds the data directory).
pub fn find_orphans(humpback: &Humpback, remove: bool) -> std::io::Result<OrphanReport> {
    let referenced: BTreeSet<String> = humpback.writer.read_state(|state| {
        state
            .audio_files
            .values()
            .map(|file| file.stored_path.clone())
            .chain(state.embedding_sets.values().map(|set| set.parquet_path.clone()))
            .collect()
    });
    let root = humpback.data_dir.root();
    let mut files = Vec::new();
    for dir in [humpback.data_dir.audio_raw_dir(), humpback.data_dir.embeddings_dir(), humpback.data_dir.tmp_dir()] {
        walk(&dir, &mut files);
    }
    let mut report = OrphanReport { removed: remove, ..OrphanReport::default() };
    for path in files {
        let Ok(relative) = path.strip_prefix(root) else { continue };
        let relative = relative.to_string_lossy().replace('\\', "/");
        if referenced.contains(&relative) {
            continue;
        }
        report.bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if remove {
            std::fs::remove_file(&path)?;
        }
        report.orphans.push(relative);
    }
    report.orphans.sort();
    Ok(report)
}
