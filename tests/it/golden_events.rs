//! Golden files: every event type's encoded form, for every version ever written, must keep
//! decoding to the same event. Files live in `fixtures/events/TYPE.vN.bin` with the expected
//! JSON beside them. A new type or version gets its files with HUMPBACK_BLESS_GOLDEN=1; existing
//! files are never rewritten.

use std::path::PathBuf;

use humpback::domain::events::Event;
use humpback::domain::ids::EventSeq;
use humpback::domain::sample_events::one_event_of_every_type;
use humpback::log::envelope::{decode_record, encode_record, RecordedAt};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("events")
}

const GOLDEN_TIME: RecordedAt = RecordedAt(1_764_000_000_000);

#[test]
fn every_current_event_version_has_a_golden_file() {
    let bless = std::env::var_os("HUMPBACK_BLESS_GOLDEN").is_some();
    let mut missing = Vec::new();
    for event in one_event_of_every_type() {
        let stem = format!("{}.v{}", event.type_name(), event.type_version());
        let bin = golden_dir().join(format!("{stem}.bin"));
        if bin.exists() {
            continue;
        }
        if bless {
            std::fs::create_dir_all(golden_dir()).unwrap();
            let bytes = encode_record(&event, GOLDEN_TIME).unwrap();
            std::fs::write(&bin, &bytes).unwrap();
            let envelope = decode_record(EventSeq(1), &bytes).unwrap();
            let json = serde_json::to_string_pretty(&envelope.to_json()).unwrap();
            std::fs::write(golden_dir().join(format!("{stem}.json")), json + "\n").unwrap();
        } else {
            missing.push(stem);
        }
    }
    assert!(missing.is_empty(), "no golden file for {missing:?}: run with HUMPBACK_BLESS_GOLDEN=1 and commit them");
}

#[test]
fn every_golden_file_of_every_version_still_decodes_to_its_recorded_json() {
    let mut checked = 0;
    for entry in std::fs::read_dir(golden_dir()).expect("fixtures/events exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("bin") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let envelope = decode_record(EventSeq(1), &bytes)
            .unwrap_or_else(|error| panic!("{} no longer decodes: {error}", path.display()));
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path.with_extension("json")).unwrap()).unwrap();
        assert_eq!(serde_json::to_value(envelope.to_json()).unwrap(), expected, "{}", path.display());
        checked += 1;
    }
    assert!(checked >= Event::TYPES.len(), "only {checked} golden files found");
}
