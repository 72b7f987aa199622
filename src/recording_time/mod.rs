//! When a recording started, and when each of its windows did: pure functions only.
//!
//! - [`UtcTime`]: an instant as microseconds since 1970-01-01T00:00:00Z, with our own small
//!   civil-date arithmetic (proleptic Gregorian), ISO 8601 formatting and parsing.
//! - [`UtcOffset`]: a fixed offset from UTC (`+10:00`), for local file-name times and for
//!   binning by local hour or day.
//! - [`names`]: start times from file names (built-in recorder families and `--time-pattern`s).
//! - [`bext`]: the Broadcast WAV `bext` chunk's origination date and time, by a bounded RIFF reader.
//! - [`window_start_utc`] and [`WindowTimeFilter`]: a window's absolute start, and the date and
//!   hour-of-day filter clustering (and later search and detection) scopes share.
//!
//! Local times (a BWF `bext` stamp, an AudioMoth or Wildlife Acoustics name) carry no zone: they
//! are taken as UTC unless a pattern or a bulk "these files are UTC+10" says otherwise.

pub mod bext;
pub mod filter;
pub mod names;
pub mod occurrence;
pub mod timeline;

use serde::{Deserialize, Serialize};

pub use filter::{HourRange, WindowTimeFilter};
pub use names::{time_from_file_name, NameTime, TimePattern};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordingTimeError {
    #[error("{0:?} is not an ISO 8601 time like 2024-07-01T06:30:00Z (a zone, Z or +10:00, is required)")]
    BadTime(String),
    #[error("{0:?} is not an ISO 8601 date or time like 2024-07-01 or 2024-07-01T06:30:00Z")]
    BadDateOrTime(String),
    #[error("{0:?} is not a UTC offset like +10:00, -03:30 or Z (at most 18 hours)")]
    BadOffset(String),
    #[error("time pattern {pattern:?}: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("hours must be whole numbers from 0 to 23 (from {from}, to {to})")]
    BadHours { from: i64, to: i64 },
}

const MICROS_PER_SECOND: i64 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// A date and time of day without a zone, every field checked when built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CivilDateTime {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

pub fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

pub fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days from 1970-01-01 to a civil date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date of a day number from 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year as i32, month, day)
}

impl CivilDateTime {
    /// `None` unless every field is in range (month 1-12, a day the month has, hour < 24, ...).
    pub fn new(year: i32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Option<CivilDateTime> {
        let valid = (1..=9999).contains(&year)
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month)
            && hour < 24
            && minute < 60
            && second < 60;
        valid.then_some(CivilDateTime { year, month, day, hour, minute, second })
    }

    /// This local time at `offset` as an instant.
    pub fn at_offset(self, offset: UtcOffset) -> UtcTime {
        let seconds = days_from_civil(self.year, self.month, self.day) * SECONDS_PER_DAY
            + i64::from(self.hour * 3600 + self.minute * 60 + self.second)
            - i64::from(offset.seconds);
        UtcTime(seconds * MICROS_PER_SECOND)
    }
}

/// An instant: microseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, bincode::Encode, bincode::Decode)]
pub struct UtcTime(pub i64);

impl UtcTime {
    pub fn micros(self) -> i64 {
        self.0
    }

    /// Whole days since 1970-01-01 at `offset` (the local date's day number).
    pub fn local_day(self, offset: UtcOffset) -> i64 {
        (self.0.div_euclid(MICROS_PER_SECOND) + i64::from(offset.seconds)).div_euclid(SECONDS_PER_DAY)
    }

    /// Seconds since the local midnight at `offset`.
    pub fn local_second_of_day(self, offset: UtcOffset) -> i64 {
        (self.0.div_euclid(MICROS_PER_SECOND) + i64::from(offset.seconds)).rem_euclid(SECONDS_PER_DAY)
    }

    /// The hour of day (0-23) at `offset`.
    pub fn local_hour(self, offset: UtcOffset) -> u32 {
        (self.local_second_of_day(offset) / 3600) as u32
    }

    /// The start of this instant's local hour at `offset`.
    pub fn floor_to_hour(self, offset: UtcOffset) -> UtcTime {
        let seconds = self.0.div_euclid(MICROS_PER_SECOND) + i64::from(offset.seconds);
        UtcTime((seconds.div_euclid(3600) * 3600 - i64::from(offset.seconds)) * MICROS_PER_SECOND)
    }

    /// The start of this instant's local day at `offset`.
    pub fn floor_to_day(self, offset: UtcOffset) -> UtcTime {
        UtcTime((self.local_day(offset) * SECONDS_PER_DAY - i64::from(offset.seconds)) * MICROS_PER_SECOND)
    }

    /// ISO 8601 in UTC: `2024-07-01T06:30:00Z`, with `.ffffff` only when there are fractions.
    pub fn to_iso8601(self) -> String {
        self.to_iso8601_at(UtcOffset::UTC)
    }

    /// ISO 8601 at `offset`: `2024-07-01T16:30:00+10:00` (`Z` at UTC).
    pub fn to_iso8601_at(self, offset: UtcOffset) -> String {
        let local_seconds = self.0.div_euclid(MICROS_PER_SECOND) + i64::from(offset.seconds);
        let fraction = self.0.rem_euclid(MICROS_PER_SECOND);
        let (year, month, day) = civil_from_days(local_seconds.div_euclid(SECONDS_PER_DAY));
        let second_of_day = local_seconds.rem_euclid(SECONDS_PER_DAY);
        let mut text = format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            second_of_day / 3600,
            second_of_day % 3600 / 60,
            second_of_day % 60
        );
        if fraction != 0 {
            text.push_str(&format!(".{fraction:06}"));
        }
        text.push_str(&offset.to_string());
        text
    }

    /// The local date at `offset` as `2024-07-01`.
    pub fn date_at(self, offset: UtcOffset) -> String {
        let (year, month, day) = civil_from_days(self.local_day(offset));
        format!("{year:04}-{month:02}-{day:02}")
    }

    /// Parses `2024-07-01T06:30:00Z`, `2024-07-01T16:30:00.5+10:00` (a space for the `T` too).
    /// A zone is required: a time without one could be any of 27 instants.
    pub fn parse_iso8601(text: &str) -> Result<UtcTime, RecordingTimeError> {
        parse_date_or_time(text.trim()).ok_or_else(|| RecordingTimeError::BadTime(text.to_string()))
    }

    /// A date (`2024-07-01`, its midnight at `offset`) or a time with its zone.
    pub fn parse_date_or_time(text: &str, offset: UtcOffset) -> Result<UtcTime, RecordingTimeError> {
        let text = text.trim();
        if let Some((year, month, day)) = parse_date(text) {
            if let Some(civil) = CivilDateTime::new(year, month, day, 0, 0, 0) {
                return Ok(civil.at_offset(offset));
            }
        }
        parse_date_or_time(text).ok_or_else(|| RecordingTimeError::BadDateOrTime(text.to_string()))
    }
}

fn digits(text: &str) -> Option<u32> {
    (!text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())).then(|| text.parse().ok()).flatten()
}

fn parse_date(text: &str) -> Option<(i32, u32, u32)> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    Some((digits(&text[0..4])? as i32, digits(&text[5..7])?, digits(&text[8..10])?))
}

fn parse_date_or_time(text: &str) -> Option<UtcTime> {
    if !text.is_ascii() || text.len() < 20 {
        return None;
    }
    let (year, month, day) = parse_date(&text[..10])?;
    if !matches!(text.as_bytes()[10], b'T' | b't' | b' ') {
        return None;
    }
    let rest = &text[11..];
    let bytes = rest.as_bytes();
    if bytes.len() < 9 || bytes[2] != b':' || bytes[5] != b':' {
        return None;
    }
    let civil = CivilDateTime::new(year, month, day, digits(&rest[0..2])?, digits(&rest[3..5])?, digits(&rest[6..8])?)?;
    let mut rest = &rest[8..];
    let mut micros = 0i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction.find(|c: char| !c.is_ascii_digit()).unwrap_or(fraction.len());
        if end == 0 || end > 9 {
            return None;
        }
        let padded = format!("{:0<6}", &fraction[..end.min(6)]);
        micros = i64::from(digits(&padded)?);
        rest = &fraction[end..];
    }
    let offset = UtcOffset::parse(rest).ok()?;
    Some(UtcTime(civil.at_offset(offset).0 + micros))
}

/// A fixed offset from UTC, in seconds (east positive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct UtcOffset {
    pub seconds: i32,
}

impl UtcOffset {
    pub const UTC: UtcOffset = UtcOffset { seconds: 0 };

    /// `Z`, `UTC`, `+10:00`, `-03:30`, `+1000` or `+10`; at most 18 hours either way.
    pub fn parse(text: &str) -> Result<UtcOffset, RecordingTimeError> {
        let bad = || RecordingTimeError::BadOffset(text.to_string());
        let trimmed = text.trim();
        if matches!(trimmed, "Z" | "z" | "UTC" | "utc") {
            return Ok(UtcOffset::UTC);
        }
        let (sign, rest) = match trimmed.as_bytes().first() {
            Some(b'+') => (1, &trimmed[1..]),
            Some(b'-') => (-1, &trimmed[1..]),
            _ => return Err(bad()),
        };
        let (hours, minutes) = match (rest.len(), rest.find(':')) {
            (5, Some(2)) => (digits(&rest[..2]), digits(&rest[3..])),
            (4, None) => (digits(&rest[..2]), digits(&rest[2..])),
            (2, None) => (digits(rest), Some(0)),
            _ => (None, None),
        };
        let (Some(hours), Some(minutes)) = (hours, minutes) else { return Err(bad()) };
        if minutes >= 60 || hours * 60 + minutes > 18 * 60 {
            return Err(bad());
        }
        Ok(UtcOffset { seconds: sign * (hours * 3600 + minutes * 60) as i32 })
    }
}

impl std::fmt::Display for UtcOffset {
    /// `Z` at UTC, else `+10:00`.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.seconds == 0 {
            return formatter.write_str("Z");
        }
        let sign = if self.seconds < 0 { '-' } else { '+' };
        let minutes = self.seconds.unsigned_abs() / 60;
        write!(formatter, "{sign}{:02}:{:02}", minutes / 60, minutes % 60)
    }
}

/// Where a recording's start time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
#[serde(rename_all = "snake_case")]
pub enum RecordingTimeSource {
    /// The Broadcast WAV `bext` chunk's origination date and time.
    Bext,
    /// A file-name pattern (built in or `--time-pattern`).
    FileName,
    /// Set by a person.
    User,
}

impl RecordingTimeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingTimeSource::Bext => "bext",
            RecordingTimeSource::FileName => "file_name",
            RecordingTimeSource::User => "user",
        }
    }

    pub fn parse(text: &str) -> Option<RecordingTimeSource> {
        Some(match text {
            "bext" => RecordingTimeSource::Bext,
            "file_name" => RecordingTimeSource::FileName,
            "user" => RecordingTimeSource::User,
            _ => return None,
        })
    }
}

/// A start time found for a recording, with where it came from and how (`pattern ... at +10:00`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundRecordingTime {
    pub recorded_at: UtcTime,
    pub source: RecordingTimeSource,
    pub derivation: String,
}

/// A window's absolute start: the recording's start plus the window's offset into it (rounded
/// to the microsecond).
pub fn window_start_utc(recorded_at: UtcTime, start_seconds: f64) -> UtcTime {
    let offset = (start_seconds * MICROS_PER_SECOND as f64).round();
    let offset = if offset.is_finite() { offset.clamp(i64::MIN as f64 / 4.0, i64::MAX as f64 / 4.0) as i64 } else { 0 };
    UtcTime(recorded_at.0.saturating_add(offset))
}

/// [`window_start_utc`] in ISO 8601 when the recording's start is known.
pub fn window_start_iso8601(recorded_at: Option<UtcTime>, start_seconds: f64) -> Option<String> {
    recorded_at.map(|start| window_start_utc(start, start_seconds).to_iso8601())
}

/// A recording's start time, in this order: the `bext` chunk of a WAV file at `path` (when it has
/// one with a valid date), then its file name against `patterns` and the built-in families.
/// `offset_override` reads every local time (bext and names) at that offset instead.
pub fn find_recording_time(
    path: Option<&std::path::Path>,
    file_name: &str,
    patterns: &[TimePattern],
    offset_override: Option<UtcOffset>,
) -> Option<FoundRecordingTime> {
    if let Some(path) = path {
        if let Some(civil) = bext::read_origination_from_path(path) {
            let offset = offset_override.unwrap_or(UtcOffset::UTC);
            return Some(FoundRecordingTime {
                recorded_at: civil.at_offset(offset),
                source: RecordingTimeSource::Bext,
                derivation: format!("bext origination date and time at {offset}"),
            });
        }
    }
    let found = time_from_file_name(file_name, patterns, offset_override)?;
    Some(FoundRecordingTime {
        recorded_at: found.recorded_at,
        source: RecordingTimeSource::FileName,
        derivation: format!("file name pattern {} at {}", found.pattern, found.offset),
    })
}

#[cfg(test)]
mod tests;
