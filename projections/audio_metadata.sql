-- version: 1
-- Editable metadata per audio file (seed spec: AudioMetadata), and the history of edits.
CREATE TABLE audio_metadata (
    audio_file_id INTEGER PRIMARY KEY,
    tag_data TEXT,
    visual_observations TEXT,
    group_composition TEXT,
    prey_density_proxy TEXT,
    edit_count INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE audio_metadata_edits (
    seq INTEGER PRIMARY KEY,
    audio_file_id INTEGER NOT NULL,
    changes TEXT NOT NULL,
    edited_by TEXT,
    edited_at TEXT NOT NULL
);
CREATE INDEX audio_metadata_edits_by_file ON audio_metadata_edits (audio_file_id, seq);
