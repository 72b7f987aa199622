//! Windows per label per time bin: by hour, by day, or by hour of day, at a fixed offset.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{UtcOffset, UtcTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OccurrenceBin {
    Hour,
    Day,
    HourOfDay,
}

impl OccurrenceBin {
    pub fn parse(text: &str) -> Option<OccurrenceBin> {
        Some(match text {
            "hour" => OccurrenceBin::Hour,
            "day" => OccurrenceBin::Day,
            "hour_of_day" => OccurrenceBin::HourOfDay,
            _ => return None,
        })
    }
}

/// A bin: an ISO 8601 hour start (`2024-07-01T16:00:00+10:00`), a date (`2024-07-01`) or an
/// hour of day (0-23).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(untagged)]
pub enum BinKey {
    HourOfDay(u32),
    Start(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OccurrenceCount {
    pub label: i64,
    pub bin: BinKey,
    pub count: u64,
}

/// Counts windows per (label, bin), sorted by label then bin; windows whose start is unknown
/// are not counted, and their number is returned beside.
pub fn count_occurrences(
    windows: impl IntoIterator<Item = (i64, Option<UtcTime>)>,
    bin: OccurrenceBin,
    offset: UtcOffset,
) -> (Vec<OccurrenceCount>, u64) {
    let mut counts: BTreeMap<(i64, i64), u64> = BTreeMap::new();
    let mut unknown = 0;
    for (label, start) in windows {
        let Some(start) = start else {
            unknown += 1;
            continue;
        };
        let key = match bin {
            OccurrenceBin::Hour => start.floor_to_hour(offset).0,
            OccurrenceBin::Day => start.local_day(offset),
            OccurrenceBin::HourOfDay => i64::from(start.local_hour(offset)),
        };
        *counts.entry((label, key)).or_default() += 1;
    }
    let rows = counts
        .into_iter()
        .map(|((label, key), count)| OccurrenceCount {
            label,
            bin: match bin {
                OccurrenceBin::Hour => BinKey::Start(UtcTime(key).to_iso8601_at(offset)),
                OccurrenceBin::Day => {
                    let (year, month, day) = super::civil_from_days(key);
                    BinKey::Start(format!("{year:04}-{month:02}-{day:02}"))
                }
                OccurrenceBin::HourOfDay => BinKey::HourOfDay(key as u32),
            },
            count,
        })
        .collect();
    (rows, unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_counted_per_label_and_bin_at_the_offset() {
        let hour = 3_600_000_000i64;
        let base = 1_719_792_000_000_000i64; // 2024-07-01T00:00:00Z
        let windows = vec![
            (0, Some(UtcTime(base + 13 * hour))),
            (0, Some(UtcTime(base + 13 * hour + 1))),
            (0, Some(UtcTime(base + 15 * hour))),
            (1, Some(UtcTime(base + 2 * hour))),
            (1, None),
        ];
        let brisbane = UtcOffset::parse("+10:00").unwrap();
        let (days, unknown) = count_occurrences(windows.clone(), OccurrenceBin::Day, brisbane);
        assert_eq!(unknown, 1);
        let days: Vec<(i64, BinKey, u64)> = days.into_iter().map(|c| (c.label, c.bin, c.count)).collect();
        assert_eq!(
            days,
            vec![
                (0, BinKey::Start("2024-07-01".into()), 2),
                (0, BinKey::Start("2024-07-02".into()), 1),
                (1, BinKey::Start("2024-07-01".into()), 1)
            ]
        );
        let (hours, _) = count_occurrences(windows.clone(), OccurrenceBin::HourOfDay, UtcOffset::UTC);
        assert_eq!(hours.iter().map(|c| c.count).sum::<u64>(), 4);
        assert_eq!(hours[0], OccurrenceCount { label: 0, bin: BinKey::HourOfDay(13), count: 2 });
        let (by_hour, _) = count_occurrences(windows, OccurrenceBin::Hour, brisbane);
        assert_eq!(by_hour[0].bin, BinKey::Start("2024-07-01T23:00:00+10:00".into()));
    }
}
