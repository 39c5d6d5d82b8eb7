//! Wall-clock helpers: epoch milliseconds and RFC 3339 parsing/formatting (UTC).
//!
//! Parsing is `jiff`'s (strict RFC 3339 and calendar rules); formatting and month starts
//! are small exact integer arithmetic. The store keeps every timestamp as i64 epoch-ms.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// The first instant (UTC) of the day containing `ms`.
pub fn day_start_ms(ms: i64) -> i64 {
    ms - ms.rem_euclid(86_400_000)
}

/// The first instant (UTC) of the month containing `ms`.
pub fn month_start_ms(ms: i64) -> i64 {
    let (y, m, _) = civil_from_days(ms.div_euclid(86_400_000));
    days_from_civil(y, m, 1) * 86_400_000
}

/// Formats epoch-ms as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// A text that is neither an RFC 3339 timestamp with an offset nor a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "must be an RFC 3339 timestamp with an offset (2026-11-24T08:00:00Z) or a date (2026-11-24)"
)]
pub struct BadTimestamp;

/// Parses `YYYY-MM-DD` (midnight UTC), or an RFC 3339 timestamp with an offset
/// (`2026-11-24T08:00:00Z`, `…+02:00`, fractions allowed), into epoch-ms.
///
/// Parsed by `jiff`: invalid calendar dates (`2026-02-31`), offsets past ±25:59 and
/// anything else malformed are errors, never a panic or a silently shifted instant.
pub fn parse_rfc3339(text: &str) -> Result<i64, BadTimestamp> {
    let t = text.trim();
    let bad = || BadTimestamp;
    if t.len() > 64 {
        return Err(bad());
    }
    if t.len() == 10 {
        let date: jiff::civil::Date = t.parse().map_err(|_| bad())?;
        let ts = date
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map_err(|_| bad())?
            .timestamp();
        return Ok(ts.as_millisecond());
    }
    let ts: jiff::Timestamp = t.parse().map_err(|_| bad())?;
    Ok(ts.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_rfc3339() {
        let ms = parse_rfc3339("2026-11-24T08:15:30.250Z").unwrap();
        assert_eq!(format_rfc3339(ms), "2026-11-24T08:15:30.250Z");
        assert_eq!(parse_rfc3339("1970-01-01").unwrap(), 0);
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00").unwrap(), 0);
        assert!(parse_rfc3339("yesterday").is_err());
        assert!(parse_rfc3339("2026-13-01").is_err());
    }

    #[test]
    fn impossible_dates_and_offsets_are_errors_not_panics() {
        for bad in [
            "2026-02-31",
            "2026-01-01T00:00:00+99:99",
            "2026-01-01T00:00:00+12é0",
            "2026-01-01T25:00:00Z",
            "2026-01-01T00:00:00",
            "ééééééééééé",
            "2026-01-01Té",
            "",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_rfc3339("2026-01-01T12:00:00+12:00").unwrap(),
            parse_rfc3339("2026-01-01").unwrap()
        );
        assert_eq!(
            parse_rfc3339("2026-11-24T08:15:30.250Z").unwrap() % 1000,
            250
        );
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_errs_without_panicking(s in "\\PC{0,40}") {
            let _ = parse_rfc3339(&s);
        }

        #[test]
        fn formatted_instants_parse_back(ms in 0i64..253_402_300_799_999) {
            proptest::prop_assert_eq!(parse_rfc3339(&format_rfc3339(ms)).unwrap(), ms);
        }
    }
}
