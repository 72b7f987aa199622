//! Fixture-based tests: every committed file under fixtures/audio and fixtures/logmel.
