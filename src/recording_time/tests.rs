use proptest::prelude::*;

use super::*;

fn utc(year: i32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> UtcTime {
    CivilDateTime::new(year, month, day, hour, minute, second).expect("valid test date").at_offset(UtcOffset::UTC)
}

#[test]
fn civil_dates_round_trip_through_day_numbers() {
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    assert_eq!(civil_from_days(19_905), (2024, 7, 1));
    for days in -800_000..800_000i64 {
        if days % 97 == 0 {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days);
        }
    }
}

#[test]
fn iso8601_formats_and_parses_with_zones() {
    let time = utc(2024, 7, 1, 6, 30, 0);
    assert_eq!(time.0, 1_719_815_400_000_000);
    assert_eq!(time.to_iso8601(), "2024-07-01T06:30:00Z");
    assert_eq!(time.to_iso8601_at(UtcOffset::parse("+10:00").unwrap()), "2024-07-01T16:30:00+10:00");
    assert_eq!(UtcTime::parse_iso8601("2024-07-01T16:30:00+10:00"), Ok(time));
    assert_eq!(UtcTime::parse_iso8601("2024-07-01 06:30:00.250Z"), Ok(UtcTime(time.0 + 250_000)));
    assert_eq!(UtcTime(time.0 + 250_000).to_iso8601(), "2024-07-01T06:30:00.250000Z");
    assert!(UtcTime::parse_iso8601("2024-07-01T06:30:00").is_err(), "a time without a zone is ambiguous");
    assert!(UtcTime::parse_iso8601("2024-02-30T06:30:00Z").is_err());
    assert!(UtcTime::parse_iso8601("2024-07-01T24:00:00Z").is_err());
    assert_eq!(UtcTime::parse_date_or_time("2024-07-01", UtcOffset::UTC), Ok(utc(2024, 7, 1, 0, 0, 0)));
}

#[test]
fn offsets_parse_within_eighteen_hours() {
    assert_eq!(UtcOffset::parse("+10:00").unwrap().seconds, 36_000);
    assert_eq!(UtcOffset::parse("-03:30").unwrap().seconds, -12_600);
    assert_eq!(UtcOffset::parse("+0545").unwrap().seconds, 20_700);
    assert_eq!(UtcOffset::parse("Z").unwrap(), UtcOffset::UTC);
    for bad in ["10:00", "+19:00", "+10:60", "+1", "", "+aa:00"] {
        assert!(UtcOffset::parse(bad).is_err(), "{bad:?} should be refused");
    }
    assert_eq!(UtcOffset::parse("-03:30").unwrap().to_string(), "-03:30");
}

#[test]
fn local_hours_and_days_follow_the_offset() {
    let time = utc(2024, 7, 1, 20, 15, 0);
    let brisbane = UtcOffset::parse("+10:00").unwrap();
    assert_eq!(time.local_hour(UtcOffset::UTC), 20);
    assert_eq!(time.local_hour(brisbane), 6);
    assert_eq!(time.date_at(brisbane), "2024-07-02");
    assert_eq!(time.floor_to_day(brisbane).to_iso8601_at(brisbane), "2024-07-02T00:00:00+10:00");
    assert_eq!(time.floor_to_hour(UtcOffset::UTC).to_iso8601(), "2024-07-01T20:00:00Z");
}

#[test]
fn window_starts_add_their_offset_to_the_recording_start() {
    let start = utc(2024, 7, 1, 6, 30, 0);
    assert_eq!(window_start_utc(start, 7.5).to_iso8601(), "2024-07-01T06:30:07.500000Z");
    assert_eq!(window_start_iso8601(None, 7.5), None);
}

#[test]
fn the_three_builtin_families_are_read() {
    let expected = utc(2024, 7, 1, 6, 30, 5);
    for name in [
        "5783.240701063005.wav",
        "20240701_063005.WAV",
        "SM4_20240701_063005.flac",
        "site/a/AM12_20240701_063005.wav",
        "hydrophone_20240701T063005Z.wav",
        "2024-07-01T06:30:05Z.flac",
        "2024-07-01T06-30-05Z.wav",
    ] {
        let found = time_from_file_name(name, &[], None).unwrap_or_else(|| panic!("{name} has a time"));
        assert_eq!(found.recorded_at, expected, "{name}");
    }
}

#[test]
fn names_that_only_look_like_dates_give_no_time() {
    for name in [
        "123456789012.wav",
        "5783.wav",
        "5783.241301063005.wav",
        "20240230_063005.wav",
        "20240701_243005.wav",
        "20240701-063005.wav",
        "20240701T063005.wav",
        "HUMP_0600.wav",
        "",
    ] {
        assert_eq!(time_from_file_name(name, &[], None), None, "{name}");
    }
}

#[test]
fn user_patterns_come_first_and_carry_their_offset() {
    let pattern = TimePattern::parse("site-%d.%m.%Y-%H%M.wav@+10:00").unwrap();
    let found = time_from_file_name("SITE-01.07.2024-1630.WAV", &[pattern], None).unwrap();
    assert_eq!(found.recorded_at, utc(2024, 7, 1, 6, 30, 0));
    assert_eq!(found.offset.to_string(), "+10:00");
    let overridden =
        time_from_file_name("20240701_063000.wav", &[], Some(UtcOffset::parse("-03:00").unwrap())).unwrap();
    assert_eq!(overridden.recorded_at, utc(2024, 7, 1, 9, 30, 0));
}

#[test]
fn bad_patterns_are_refused_with_a_reason() {
    for bad in ["%Y%m%d.wav", "%Y%y%m%d%H%M", "%Q", "%Y%m%d%H%M@+30:00", "*%Y*%m*%d*%H%M*"] {
        assert!(TimePattern::parse(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn hour_ranges_wrap_midnight_and_the_filter_drops_unknown_starts_only_when_bounded() {
    let night = HourRange::new(20, 4).unwrap();
    assert!(night.contains(22) && night.contains(0) && night.contains(4));
    assert!(!night.contains(5) && !night.contains(19));
    assert!(HourRange::new(0, 24).is_err());
    let filter =
        WindowTimeFilter::from_request(Some("2024-07-01"), Some("2024-07-01"), Some(night), Some("+10:00")).unwrap();
    let local = |text: &str| UtcTime::parse_iso8601(text).ok();
    assert!(filter.keeps(local("2024-07-01T22:00:00+10:00")));
    assert!(filter.keeps(local("2024-07-01T03:00:00+10:00")));
    assert!(!filter.keeps(local("2024-07-01T12:00:00+10:00")));
    assert!(!filter.keeps(local("2024-07-02T01:00:00+10:00")));
    assert!(!filter.keeps(None));
    assert!(WindowTimeFilter::default().keeps(None));
}

#[test]
fn a_bext_stamp_is_read_and_wins_over_the_file_name() {
    let wav = bext::wav_with_bext("2023-12-31", "23:59:58", &[0i16; 800], 8000);
    assert_eq!(bext::read_origination(std::io::Cursor::new(&wav)), CivilDateTime::new(2023, 12, 31, 23, 59, 58));
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("20240701_063000.wav");
    std::fs::write(&path, &wav).unwrap();
    let found = find_recording_time(Some(&path), "20240701_063000.wav", &[], None).unwrap();
    assert_eq!(found.source, RecordingTimeSource::Bext);
    assert_eq!(found.recorded_at, utc(2023, 12, 31, 23, 59, 58));
    // Without a bext chunk the name is read.
    let plain = bext::wav_with_bext("", "", &[0i16; 800], 8000);
    std::fs::write(&path, &plain).unwrap();
    let found = find_recording_time(Some(&path), "20240701_063000.wav", &[], None).unwrap();
    assert_eq!(found.source, RecordingTimeSource::FileName);
    assert_eq!(found.recorded_at, utc(2024, 7, 1, 6, 30, 0));
}

#[test]
fn a_truncated_or_foreign_file_has_no_bext_time() {
    let wav = bext::wav_with_bext("2023-12-31", "23:59:58", &[0i16; 10], 8000);
    for length in [0, 4, 12, 20, 300, 350] {
        assert_eq!(bext::read_origination(std::io::Cursor::new(&wav[..length])), None, "length {length}");
    }
    assert_eq!(bext::read_origination(std::io::Cursor::new(b"fLaC\0\0\0\0\0\0\0\0".to_vec())), None);
}

fn civil_strategy() -> impl Strategy<Value = CivilDateTime> {
    (2000i32..2099, 1u32..=12, 1u32..=31, 0u32..24, 0u32..60, 0u32..60)
        .prop_filter_map("a real date", |(year, month, day, hour, minute, second)| {
            CivilDateTime::new(year, month, day, hour, minute, second)
        })
}

fn extension_strategy() -> impl Strategy<Value = String> {
    prop_oneof![Just("wav"), Just("WAV"), Just("Wav"), Just("flac"), Just("FLAC"), Just("mp3")].prop_map(String::from)
}

fn prefix_strategy() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[A-Za-z][A-Za-z0-9-]{0,8}_"]
}

proptest! {
    #[test]
    fn generated_soundtrap_names_give_their_time(civil in civil_strategy(), serial in 1u32..99_999_999, extension in extension_strategy()) {
        let name = format!(
            "{serial}.{:02}{:02}{:02}{:02}{:02}{:02}.{extension}",
            civil.year % 100, civil.month, civil.day, civil.hour, civil.minute, civil.second
        );
        prop_assert_eq!(time_from_file_name(&name, &[], None).map(|found| found.recorded_at), Some(civil.at_offset(UtcOffset::UTC)));
    }

    #[test]
    fn generated_audiomoth_names_give_their_time(civil in civil_strategy(), prefix in prefix_strategy(), extension in extension_strategy()) {
        let name = format!(
            "{prefix}{:04}{:02}{:02}_{:02}{:02}{:02}.{extension}",
            civil.year, civil.month, civil.day, civil.hour, civil.minute, civil.second
        );
        prop_assert_eq!(time_from_file_name(&name, &[], None).map(|found| found.recorded_at), Some(civil.at_offset(UtcOffset::UTC)));
    }

    #[test]
    fn generated_iso_names_give_their_time(civil in civil_strategy(), prefix in prefix_strategy(), style in 0usize..3, extension in extension_strategy()) {
        let (date, time) = match style {
            0 => ("", ""),
            1 => ("-", ":"),
            _ => ("-", "-"),
        };
        let name = format!(
            "{prefix}{:04}{date}{:02}{date}{:02}T{:02}{time}{:02}{time}{:02}Z.{extension}",
            civil.year, civil.month, civil.day, civil.hour, civil.minute, civil.second
        );
        prop_assert_eq!(time_from_file_name(&name, &[], None).map(|found| found.recorded_at), Some(civil.at_offset(UtcOffset::UTC)));
    }

    #[test]
    fn generated_local_names_read_at_their_pattern_offset(civil in civil_strategy(), minutes in -(18 * 60)..=(18 * 60i32), extension in extension_strategy()) {
        let offset = UtcOffset { seconds: minutes * 60 };
        let pattern = TimePattern::parse(&format!("rec-%Y%m%d-%H%M%S.*@{offset}")).unwrap();
        let name = format!(
            "REC-{:04}{:02}{:02}-{:02}{:02}{:02}.{extension}",
            civil.year, civil.month, civil.day, civil.hour, civil.minute, civil.second
        );
        let found = time_from_file_name(&name, &[pattern], None).map(|found| found.recorded_at);
        prop_assert_eq!(found, Some(civil.at_offset(offset)));
        prop_assert_eq!(found.map(|time| time.0 + i64::from(offset.seconds) * 1_000_000), Some(civil.at_offset(UtcOffset::UTC).0));
    }

    #[test]
    fn generated_serial_numbers_and_impossible_dates_give_no_time(
        digits in "[0-9]{1,20}",
        year in 2000u32..2099, month in 13u32..100, day in 0u32..100, hour in 24u32..100,
        extension in extension_strategy(),
    ) {
        prop_assert_eq!(time_from_file_name(&format!("{digits}.{extension}"), &[], None), None);
        let bad_month = format!("{year}{month:02}{:02}_000000.{extension}", day.clamp(1, 28));
        prop_assert_eq!(time_from_file_name(&bad_month, &[], None), None);
        let bad_hour = format!("{year}0101_{hour:02}0000.{extension}");
        prop_assert_eq!(time_from_file_name(&bad_hour, &[], None), None);
        let bad_day = format!("{year}0431_000000.{extension}");
        prop_assert_eq!(time_from_file_name(&bad_day, &[], None), None);
    }

    #[test]
    fn iso8601_round_trips(micros in -2_000_000_000_000_000i64..8_000_000_000_000_000, minutes in -(18 * 60)..=(18 * 60i32)) {
        let time = UtcTime(micros);
        let offset = UtcOffset { seconds: minutes * 60 };
        prop_assert_eq!(UtcTime::parse_iso8601(&time.to_iso8601()), Ok(time));
        prop_assert_eq!(UtcTime::parse_iso8601(&time.to_iso8601_at(offset)), Ok(time));
    }
}
