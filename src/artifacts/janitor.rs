//! Files in the data directory that no event references: left by a crash between staging an
//! artifact and recording it, or by an interrupted upload. Reported, and removable on request.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::services::Humpback;

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct OrphanReport {
    /// Paths relative to the data directory.
    pub orphans: Vec<String>,
    pub bytes: u64,
    pub removed: bool,
}

/// Lists (and with `remove`, deletes) unreferenced files under `audio/raw`, `embeddings` and
/// `tmp`, among them files remote workers staged in `tmp/workers/` that no live lease holds
/// (left by an attempt that lapsed or ended while the server was down). Must run while no
/// in-process worker writes (the caller holds the data directory).
pub fn find_orphans(humpback: &Humpback, remove: bool) -> std::io::Result<OrphanReport> {
    let mut referenced: BTreeSet<String> = humpback.writer.read_state(|state| {
        state
            .audio_files
            .values()
            .map(|file| file.stored_path.clone())
            .chain(state.embedding_sets.values().map(|set| set.parquet_path.clone()))
            .collect()
    });
    referenced.extend(humpback.remote_workers.held_staged_paths());
    let mut report = OrphanReport { removed: remove, ..OrphanReport::default() };
    // In storage (the data directory itself by default; a shared folder or a bucket).
    let storage = &humpback.storage;
    for prefix in ["audio/raw", "embeddings", "tmp"] {
        let objects = storage.list(prefix).map_err(std::io::Error::other)?;
        for object in objects {
            if referenced.contains(&object.key) {
                continue;
            }
            report.bytes += object.size_bytes;
            if remove {
                storage.remove(&object.key).map_err(std::io::Error::other)?;
            }
            report.orphans.push(object.key);
        }
    }
    // Uploads in progress stay in the data directory when storage is elsewhere.
    let root = humpback.data_dir.root();
    if storage.is_bucket() || storage.local_root() != root {
        let mut files = Vec::new();
        crate::storage::walk_files(&humpback.data_dir.tmp_dir(), &mut files);
        for path in files {
            let Ok(relative) = path.strip_prefix(root) else { continue };
            report.bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if remove {
                std::fs::remove_file(&path)?;
            }
            report.orphans.push(format!("(data directory) {}", crate::storage::key_of(relative)));
        }
    }
    report.orphans.sort();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::decide::Command;
    use crate::domain::ids::AudioFileId;
    use crate::services::Settings;

    #[test]
    fn staged_worker_files_no_live_lease_holds_are_orphans_and_removable() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = crate::config::DataDir::new(dir.path());
        let staging = dir.path().join(crate::workers::STAGING_DIR);
        std::fs::create_dir_all(&staging).unwrap();
        // Left by a worker whose completion came after the server had stopped.
        std::fs::write(staging.join("processing-7-2.parquet"), b"late").unwrap();
        let settings = Settings {
            processing_workers: 0,
            clustering_workers: 0,
            enable_fake_model: true,
            keep_staged_worker_files: true,
            ..Settings::default()
        };
        let humpback = std::sync::Arc::new(crate::services::Humpback::open_with(data_dir, settings).unwrap());
        // One recording, one queued job, claimed by a remote worker: its lease is live.
        let samples: Vec<f32> = (0..16_000 * 6).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        let wav = crate::http::media_api::encode_wav_pcm16_mono(&samples, 16_000);
        let staged = crate::ingest::stage_copy(&humpback.data_dir.tmp_dir(), &wav[..], u64::MAX).unwrap();
        crate::ingest::register_staged(&humpback, staged, "a.wav", "survey").unwrap();
        let model = humpback.models.find("fake").unwrap().info.clone();
        let resolved = crate::processing::config::resolve(
            &crate::processing::config::EncodingRequest { model: Some("fake".into()), ..Default::default() },
            &model,
        )
        .unwrap();
        let checksum = humpback.writer.read_state(|s| s.audio_files[&AudioFileId(1)].checksum_sha256.clone());
        humpback
            .writer
            .execute(Command::QueueProcessingJob {
                audio_file_id: AudioFileId(1),
                encoding_signature: resolved.signature(&checksum),
                config: resolved.encoding_config(),
            })
            .unwrap();
        let request = crate::workers::coordinator::RegisterRequest {
            name: "remote".into(),
            kinds: vec![crate::workers::JobKind::Processing],
            threads: 1,
        };
        let worker = humpback.remote_workers.register(&request);
        let job = humpback.remote_workers.claim_processing(&humpback.writer, &worker, None).unwrap().unwrap();
        let writing = crate::artifacts::files::temp_sibling(&dir.path().join(&job.staged_path));
        std::fs::write(&writing, b"being written").unwrap();

        let report = find_orphans(&humpback, false).unwrap();
        assert_eq!(report.orphans, vec!["tmp/workers/processing-7-2.parquet".to_string()], "{report:?}");
        assert!(staging.join("processing-7-2.parquet").exists(), "listing removes nothing");
        let removed = find_orphans(&humpback, true).unwrap();
        assert_eq!(removed.orphans.len(), 1);
        assert!(!staging.join("processing-7-2.parquet").exists(), "removed on request");
        assert!(writing.exists(), "the file a live lease is writing stays");
        assert!(find_orphans(&humpback, false).unwrap().orphans.is_empty());
    }
}
