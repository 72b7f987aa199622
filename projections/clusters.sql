-- version: 1
-- Clusters found by clustering jobs (seed spec: Cluster). Label -1 is noise, never a cluster.
CREATE TABLE clusters (
    id INTEGER PRIMARY KEY,
    clustering_job_id INTEGER NOT NULL,
    cluster_label INTEGER NOT NULL,
    is_noise INTEGER NOT NULL,
    size INTEGER NOT NULL,
    metadata_summary TEXT NOT NULL,
    UNIQUE (clustering_job_id, cluster_label)
);
