-- version: 1
-- Which events concern which aggregate, and which events are of which type: lets the log be
-- filtered without decoding every record (see `projections::event_index`).
CREATE TABLE event_aggregates (
    aggregate TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (aggregate, seq)
) WITHOUT ROWID;
CREATE TABLE event_types (
    event_type TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (event_type, seq)
) WITHOUT ROWID;
