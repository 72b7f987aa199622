-- version: 1
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
