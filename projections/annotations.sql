-- version: 1
-- Annotations: labelled time spans of recordings (and their history, per annotation, recording
-- and label). They belong to recordings, not to models or embedding sets.
CREATE TABLE annotations (
    id INTEGER PRIMARY KEY,
    audio_file_id INTEGER NOT NULL,
    start_seconds REAL NOT NULL,
    end_seconds REAL NOT NULL,
    low_hz REAL,
    high_hz REAL,
    label TEXT NOT NULL,
    kind TEXT NOT NULL,
    note TEXT,
    source TEXT NOT NULL,
    created_by TEXT,
    created_at TEXT NOT NULL,
    updated_by TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX annotations_by_audio_file ON annotations (audio_file_id, start_seconds);
CREATE INDEX annotations_by_label ON annotations (label, kind);
CREATE TABLE annotation_history (
    seq INTEGER NOT NULL,
    annotation_id INTEGER NOT NULL,
    audio_file_id INTEGER NOT NULL,
    label TEXT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT,
    at TEXT NOT NULL,
    annotation TEXT NOT NULL,
    PRIMARY KEY (seq, annotation_id)
);
CREATE INDEX annotation_history_by_annotation ON annotation_history (annotation_id, seq);
CREATE INDEX annotation_history_by_audio_file ON annotation_history (audio_file_id, seq);
CREATE INDEX annotation_history_by_label ON annotation_history (label, seq);
