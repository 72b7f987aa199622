-- Not derivable from the log: where each projection stands. Each projection writes its rows
-- and its checkpoint in one transaction.
CREATE TABLE projection_checkpoints (
    name TEXT PRIMARY KEY,
    schema_version INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    rebuilt_at TEXT NOT NULL
);
