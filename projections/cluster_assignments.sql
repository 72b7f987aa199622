-- version: 2
-- Which cluster each embedding row belongs to (seed spec: ClusterAssignment). Rows are
-- (embedding set, row index in its Parquet file): vectors never live in SQL.
CREATE TABLE cluster_assignments (
    clustering_job_id INTEGER NOT NULL,
    embedding_set_id INTEGER NOT NULL,
    row_index INTEGER NOT NULL,
    cluster_id INTEGER NOT NULL,
    cluster_label INTEGER NOT NULL,
    PRIMARY KEY (clustering_job_id, embedding_set_id, row_index)
);
CREATE INDEX cluster_assignments_by_cluster ON cluster_assignments (cluster_id, embedding_set_id, row_index);
-- Where each complete job's rows came from: `event` (a version 1 completion carried them) or
-- `file` (the assignments.parquet the completion vouches for by SHA-256 and row count). When
-- that file is missing or differs, `problem` says so and the job has no rows here; restoring
-- the file and running `humpback projections rebuild cluster_assignments` fills them.
CREATE TABLE cluster_assignment_sources (
    clustering_job_id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    row_count INTEGER NOT NULL,
    problem TEXT
);
