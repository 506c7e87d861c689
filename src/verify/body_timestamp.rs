//! A timestamp inside the signed body (source option `timestamp_pointer`), for senders that
//! sign only the body: Jira admin webhooks carry `/timestamp` in epoch milliseconds. Without
//! it a captured delivery verifies forever; with it, only within `tolerance_seconds`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Why a body's timestamp is not accepted. Both are answered 401 `stale_timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyTimestampError {
    #[error("the signed timestamp is outside the accepted tolerance")]
    Stale,
    /// Freshness cannot be shown, so the delivery is refused like a stale one: accepting it
    /// would let a replay drop the field to get past the check.
    #[error("the signed body has no readable timestamp")]
    Unreadable,
}

/// Epoch seconds at or above this are read as milliseconds: as seconds they would be past
/// the year 5000, as milliseconds they are after March 1973.
const MILLIS_FROM: f64 = 1e11;

/// Checks the value at `pointer` in the verified body against `now`, within `tolerance` in
/// either direction. The value may be epoch seconds or milliseconds (a JSON number or a
/// string of digits) or an RFC 3339 string.
pub fn check_body_timestamp(
    payload: &Value,
    pointer: &str,
    tolerance: Duration,
    now: DateTime<Utc>,
) -> Result<(), BodyTimestampError> {
    let sent_millis = payload
        .pointer(pointer)
        .and_then(epoch_millis)
        .ok_or(BodyTimestampError::Unreadable)?;
    let now_millis = now.timestamp_millis() as f64;
    let tolerance_millis = tolerance.as_millis() as f64;
    if (now_millis - sent_millis).abs() <= tolerance_millis {
        Ok(())
    } else {
        Err(BodyTimestampError::Stale)
    }
}

fn epoch_millis(value: &Value) -> Option<f64> {
    let number = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<f64>().ok()?
        }
        Value::String(s) => {
            return DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|at| at.timestamp_millis() as f64);
        }
        _ => return None,
    };
    if !number.is_finite() {
        return None;
    }
    Some(if number.abs() >= MILLIS_FROM {
        number
    } else {
        number * 1000.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const TOLERANCE: Duration = Duration::from_secs(300);

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("in range")
    }

    fn check(value: Value) -> Result<(), BodyTimestampError> {
        check_body_timestamp(
            &json!({ "timestamp": value }),
            "/timestamp",
            TOLERANCE,
            now(),
        )
    }

    #[test]
    fn reads_seconds_millis_and_rfc3339() {
        for fresh in [
            json!(1_700_000_000),
            json!(1_700_000_299),
            json!(1_699_999_701),
            json!(1_700_000_000_000_i64),
            json!(1_700_000_123_456_i64),
            json!(1_700_000_000.5),
            json!("1700000000"),
            json!("1700000000000"),
            json!("2023-11-14T22:13:20Z"),
            json!("2023-11-14T23:13:20+01:00"),
            json!("2023-11-14T22:15:00.250Z"),
        ] {
            assert_eq!(check(fresh.clone()), Ok(()), "{fresh}");
        }
    }

    #[test]
    fn outside_the_tolerance_is_stale_both_ways() {
        for stale in [
            json!(1_700_000_301),
            json!(1_699_999_699),
            json!(1_700_000_301_000_i64),
            json!(1_699_999_698_999_i64),
            json!("2023-11-14T22:05:00Z"),
            json!("2023-11-14T22:20:00Z"),
            json!(0),
            json!(-5),
        ] {
            assert_eq!(
                check(stale.clone()),
                Err(BodyTimestampError::Stale),
                "{stale}"
            );
        }
    }

    #[test]
    fn missing_or_unreadable_is_refused() {
        assert_eq!(
            check_body_timestamp(&json!({}), "/timestamp", TOLERANCE, now()),
            Err(BodyTimestampError::Unreadable)
        );
        for bad in [
            json!(null),
            json!(true),
            json!(""),
            json!("yesterday"),
            json!("2023-11-14"),
            json!("17e8"),
            json!(" 1700000000"),
            json!([1_700_000_000]),
            json!({ "at": 1_700_000_000 }),
        ] {
            assert_eq!(
                check(bad.clone()),
                Err(BodyTimestampError::Unreadable),
                "{bad}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_value_is_answered_without_panicking(text in ".{0,40}", number in any::<f64>()) {
            let _ = check(json!(text));
            let _ = check(json!(number));
        }

        #[test]
        fn seconds_and_millis_of_one_instant_agree(offset in -1_000i64..1_000) {
            let at = 1_700_000_000 + offset;
            prop_assert_eq!(check(json!(at)), check(json!(at * 1000)));
        }
    }
}
