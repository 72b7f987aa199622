-- version: 1
-- Classifiers (detectors): each one's training job and, once trained, its artifact, version and
-- cross-validated figures. Retraining is a new row, so versions sit side by side.
CREATE TABLE classifiers (
    id INTEGER PRIMARY KEY,
    status TEXT NOT NULL,
    labels TEXT NOT NULL,
    model_version TEXT NOT NULL,
    request TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker TEXT,
    cancel_requested INTEGER NOT NULL,
    stage TEXT,
    progress REAL,
    version TEXT,
    artifact_path TEXT,
    vector_dim INTEGER,
    threshold REAL,
    metrics TEXT,
    training_set TEXT,
    error_message TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);
CREATE INDEX classifiers_by_status ON classifiers (status);
