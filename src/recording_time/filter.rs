//! The window-time filter shared by clustering (and, later, search and detection) scopes: a date
//! range and an hour-of-day range, read at a fixed offset.

use serde::{Deserialize, Serialize};

use super::{RecordingTimeError, UtcOffset, UtcTime};

/// Hours of the day `from` to `to`, both included; `from > to` wraps midnight (20 to 4 is
/// 20:00-04:59).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourRange {
    pub from: u32,
    pub to: u32,
}

impl HourRange {
    pub fn new(from: i64, to: i64) -> Result<HourRange, RecordingTimeError> {
        if !(0..24).contains(&from) || !(0..24).contains(&to) {
            return Err(RecordingTimeError::BadHours { from, to });
        }
        Ok(HourRange { from: from as u32, to: to as u32 })
    }

    pub fn contains(self, hour: u32) -> bool {
        if self.from <= self.to {
            (self.from..=self.to).contains(&hour)
        } else {
            hour >= self.from || hour <= self.to
        }
    }
}

/// Which windows a scope keeps by their absolute start. A filter with no bounds keeps every
/// window, even one whose start is unknown; any bound drops windows whose start is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowTimeFilter {
    /// Inclusive.
    pub from: Option<UtcTime>,
    /// Exclusive when a time was given; a date `to` means the end of that day.
    pub to: Option<UtcTime>,
    pub hours: Option<HourRange>,
    /// The offset hours and dates are read at.
    pub offset: UtcOffset,
}

impl WindowTimeFilter {
    /// `date_from` / `date_to` (a date `2024-07-01` or a time with its zone; a date `to`
    /// includes that whole day), `hours` and `utc_offset` as given in a request.
    pub fn from_request(
        date_from: Option<&str>,
        date_to: Option<&str>,
        hours: Option<HourRange>,
        utc_offset: Option<&str>,
    ) -> Result<WindowTimeFilter, RecordingTimeError> {
        let offset = utc_offset.map(UtcOffset::parse).transpose()?.unwrap_or(UtcOffset::UTC);
        let from = date_from.map(|text| UtcTime::parse_date_or_time(text, offset)).transpose()?;
        let to = date_to
            .map(|text| {
                let start = UtcTime::parse_date_or_time(text, offset)?;
                // A bare date means up to the end of that day.
                Ok::<_, RecordingTimeError>(if text.trim().len() == 10 {
                    UtcTime(start.0 + 86_400 * 1_000_000)
                } else {
                    start
                })
            })
            .transpose()?;
        Ok(WindowTimeFilter { from, to, hours, offset })
    }

    pub fn is_unbounded(&self) -> bool {
        self.from.is_none() && self.to.is_none() && self.hours.is_none()
    }

    /// Whether a window starting at `start` (`None`: unknown) is kept.
    pub fn keeps(&self, start: Option<UtcTime>) -> bool {
        if self.is_unbounded() {
            return true;
        }
        let Some(start) = start else { return false };
        self.from.is_none_or(|from| start >= from)
            && self.to.is_none_or(|to| start < to)
            && self.hours.is_none_or(|hours| hours.contains(start.local_hour(self.offset)))
    }
}
