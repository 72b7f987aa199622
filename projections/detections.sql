-- version: 1
-- Detection jobs (a classifier over embedding sets) and the detections each one found: runs of
-- consecutive windows at or above the threshold, per recording and label.
CREATE TABLE detection_jobs (
    id INTEGER PRIMARY KEY,
    status TEXT NOT NULL,
    classifier_id INTEGER NOT NULL,
    classifier_version TEXT NOT NULL,
    embedding_set_ids TEXT NOT NULL,
    threshold REAL NOT NULL,
    scope TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker TEXT,
    cancel_requested INTEGER NOT NULL,
    progress REAL,
    scores_path TEXT,
    windows_scored INTEGER,
    detection_count INTEGER,
    error_message TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);
CREATE TABLE detections (
    detection_job_id INTEGER NOT NULL,
    ordinal INTEGER NOT NULL,
    embedding_set_id INTEGER NOT NULL,
    audio_file_id INTEGER NOT NULL,
    label TEXT NOT NULL,
    start_seconds REAL NOT NULL,
    end_seconds REAL NOT NULL,
    max_score REAL NOT NULL,
    mean_score REAL NOT NULL,
    windows INTEGER NOT NULL,
    first_row INTEGER NOT NULL,
    last_row INTEGER NOT NULL,
    PRIMARY KEY (detection_job_id, ordinal)
);
CREATE INDEX detections_by_score ON detections (detection_job_id, max_score DESC);
