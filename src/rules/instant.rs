//! When a chain starts: `at` in its three formats (the module doc of `rules` lists them) and
//! the delays added to it as exact spans.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use crate::domain::duration::Span;

pub fn parse_instant(value: &Value, timezone: Tz) -> Option<DateTime<Utc>> {
    match value {
        Value::Number(millis) => DateTime::from_timestamp_millis(millis.as_i64()?),
        Value::String(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            DateTime::from_timestamp_millis(text.parse().ok()?)
        }
        Value::String(text) if is_calendar_date(text) => {
            let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
            local_midnight(date, timezone)
        }
        Value::String(text) => DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|time| time.with_timezone(&Utc)),
        _ => None,
    }
}

/// Exactly `dddd-dd-dd`: chrono's `%Y` alone would also take `+12024` or `24-1-5`.
fn is_calendar_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
}

/// Midnight of `date` in `timezone`. When a DST change makes midnight ambiguous the earlier
/// instant wins; when midnight does not exist (clocks jump from 00:00), the day starts at the
/// first instant after the gap.
fn local_midnight(date: NaiveDate, timezone: Tz) -> Option<DateTime<Utc>> {
    let midnight = date.and_time(NaiveTime::MIN);
    timezone
        .from_local_datetime(&midnight)
        .earliest()
        .map(|time| time.with_timezone(&Utc))
        .or_else(|| first_instant_after_gap(timezone, midnight))
}

/// The earliest instant whose local time in `timezone` is later than `local`, found by
/// bisection: UTC offsets lie within ±15 hours, so the answer lies within 15 hours either side
/// of `local` read as UTC, and no zone changes its offset twice in that window.
fn first_instant_after_gap(timezone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    const WINDOW_SECS: i64 = 15 * 3600;
    let is_after = |secs: i64| {
        DateTime::from_timestamp(secs, 0)
            .is_some_and(|time| time.with_timezone(&timezone).naive_local() > local)
    };
    let target = local.and_utc().timestamp();
    let (mut before, mut after) = (target - WINDOW_SECS, target + WINDOW_SECS);
    while after - before > 1 {
        let middle = before + (after - before) / 2;
        if is_after(middle) {
            after = middle;
        } else {
            before = middle;
        }
    }
    DateTime::from_timestamp(after, 0)
}

/// `span` after `time`, if that is still a time chrono can represent.
pub(super) fn later(time: DateTime<Utc>, span: Span) -> Option<DateTime<Utc>> {
    time.checked_add_signed(span.to_chrono())
}
