-- version: 1
-- Embedding models registered with humpback, latest registration per name.
CREATE TABLE models (
    name TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    file_sha256 TEXT,
    source TEXT NOT NULL,
    input_kind TEXT NOT NULL,
    sample_rate INTEGER NOT NULL,
    window_seconds REAL NOT NULL,
    embedding_dim INTEGER NOT NULL,
    embedding_output TEXT NOT NULL,
    registered_at TEXT NOT NULL
);
