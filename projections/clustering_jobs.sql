-- version: 1
-- Clustering jobs (seed spec: ClusteringJob) and the embedding sets each one reads.
CREATE TABLE clustering_jobs (
    id INTEGER PRIMARY KEY,
    status TEXT NOT NULL,
    embedding_set_ids TEXT NOT NULL,
    parameters TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker TEXT,
    cancel_requested INTEGER NOT NULL,
    stage TEXT,
    progress REAL,
    metrics TEXT,
    clusters_json_path TEXT,
    assignments_path TEXT,
    error_message TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);
CREATE INDEX clustering_jobs_by_status ON clustering_jobs (status);
CREATE TABLE clustering_job_embedding_sets (
    clustering_job_id INTEGER NOT NULL,
    embedding_set_id INTEGER NOT NULL,
    PRIMARY KEY (clustering_job_id, embedding_set_id)
);
