-- version: 1
-- Each recording's start time (UTC) where one was found or set, and the history of changes.
CREATE TABLE recording_times (
    audio_file_id INTEGER PRIMARY KEY,
    recorded_at TEXT,
    recorded_at_micros INTEGER,
    source TEXT,
    derivation TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX recording_times_by_time ON recording_times (recorded_at_micros);
CREATE TABLE recording_time_edits (
    seq INTEGER PRIMARY KEY,
    audio_file_id INTEGER NOT NULL,
    recorded_at TEXT,
    source TEXT NOT NULL,
    derivation TEXT NOT NULL,
    set_by TEXT,
    set_at TEXT NOT NULL
);
CREATE INDEX recording_time_edits_by_file ON recording_time_edits (audio_file_id, seq);
