-- version: 1
-- Promoted embedding sets (seed spec: EmbeddingSet). At most one per encoding signature.
CREATE TABLE embedding_sets (
    id INTEGER PRIMARY KEY,
    audio_file_id INTEGER NOT NULL,
    processing_job_id INTEGER NOT NULL,
    encoding_signature TEXT NOT NULL UNIQUE,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    window_size_seconds REAL NOT NULL,
    hop_seconds REAL NOT NULL,
    target_sample_rate INTEGER NOT NULL,
    vector_dim INTEGER NOT NULL,
    row_count INTEGER NOT NULL,
    parquet_path TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX embedding_sets_by_audio_file ON embedding_sets (audio_file_id);
CREATE INDEX embedding_sets_by_model_version ON embedding_sets (model_version);
