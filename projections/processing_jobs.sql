-- version: 1
-- Processing (encoding) jobs (seed spec: ProcessingJob). One job per encoding signature.
CREATE TABLE processing_jobs (
    id INTEGER PRIMARY KEY,
    audio_file_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    encoding_signature TEXT NOT NULL UNIQUE,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    window_size_seconds REAL NOT NULL,
    hop_seconds REAL NOT NULL,
    target_sample_rate INTEGER NOT NULL,
    feature_config TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker TEXT,
    cancel_requested INTEGER NOT NULL,
    windows_done INTEGER,
    windows_total INTEGER,
    embedding_set_id INTEGER,
    warning TEXT,
    error_message TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);
CREATE INDEX processing_jobs_by_audio_file ON processing_jobs (audio_file_id);
CREATE INDEX processing_jobs_by_status ON processing_jobs (status);
