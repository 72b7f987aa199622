-- version: 1
-- Audio files registered with humpback (seed spec: AudioFile).
CREATE TABLE audio_files (
    id INTEGER PRIMARY KEY,
    filename TEXT NOT NULL,
    folder TEXT NOT NULL,
    checksum_sha256 TEXT NOT NULL UNIQUE,
    size_bytes INTEGER NOT NULL,
    duration_seconds REAL NOT NULL,
    sample_rate_original INTEGER NOT NULL,
    channels INTEGER NOT NULL,
    codec TEXT NOT NULL,
    stored_path TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX audio_files_by_folder ON audio_files (folder);
