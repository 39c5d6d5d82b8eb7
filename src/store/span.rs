//! How a summary's time range splits between the rollups, which hold whole days, hours and
//! minutes, and the per-request records, which hold the rest: a summary then reads a few
//! rollup rows per model however many requests the range holds.

use crate::store::Granularity;

/// Rollup bucket sizes, in milliseconds (UTC: buckets start at multiples of their size).
const MINUTE: i64 = Granularity::Minute.ms();
const HOUR: i64 = Granularity::Hour.ms();
const DAY: i64 = Granularity::Day.ms();

/// How long minute rollups are kept (`purge` deletes older ones); hours and days are kept.
pub(crate) const MINUTE_ROLLUPS_KEPT_MS: i64 = 2 * DAY;

/// A minute piece is read from the minute rollups only when it starts this much inside
/// their keeping: a purge run on another instance's clock must not have taken it yet.
const MINUTE_ROLLUPS_MARGIN_MS: i64 = HOUR;

/// The half-open ranges `[start, end)` of one summary, each read from one source; an
/// empty range is `(0, 0)`. Together they cover the summary's range exactly once.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pieces {
    /// Started in these ranges: read from the per-request records (the partial minutes at
    /// either end, and partial hours older than the minute rollups).
    pub records: [(i64, i64); 2],
    /// Buckets starting in this range, from the day rollups.
    pub days: (i64, i64),
    /// From the hour rollups: the partial days before and after `days`.
    pub hours: [(i64, i64); 2],
    /// From the minute rollups: the partial hours before and after the hours.
    pub minutes: [(i64, i64); 2],
}

/// `x` rounded up to a multiple of `unit`, if that fits.
fn ceil(x: i64, unit: i64) -> Option<i64> {
    x.checked_add((unit - x.rem_euclid(unit)) % unit)
}

/// `x` rounded down to a multiple of `unit`, if that fits.
fn floor(x: i64, unit: i64) -> Option<i64> {
    x.checked_sub(x.rem_euclid(unit))
}

/// The aligned part `[lo, hi)` of `[from, to)` at `unit`, if it is not empty.
fn aligned(from: i64, to: i64, unit: i64) -> Option<(i64, i64)> {
    let (lo, hi) = (ceil(from, unit)?, floor(to, unit)?);
    (lo < hi).then_some((lo, hi))
}

/// A range as a piece: `(0, 0)` when empty.
fn piece(start: i64, end: i64) -> (i64, i64) {
    if start < end { (start, end) } else { (0, 0) }
}

/// Where minute pieces may start, for a summary read at `now_ms` from rollups that keep
/// minutes (`pieces`).
pub(crate) fn minute_rollups_from(now_ms: i64) -> i64 {
    now_ms.saturating_sub(MINUTE_ROLLUPS_KEPT_MS - MINUTE_ROLLUPS_MARGIN_MS)
}

/// Splits `[from, to)`: whole days and hours for their rollups, whole minutes starting at
/// or after `minutes_from` for the minute rollups (`i64::MAX` for rollups without
/// minutes), and the rest for the records.
pub(crate) fn pieces(from: i64, to: i64, minutes_from: i64) -> Pieces {
    let mut p = Pieces::default();
    let Some((lo_m, hi_m)) = aligned(from, to, MINUTE) else {
        p.records[0] = piece(from, to);
        return p;
    };
    // The whole minutes: whole hours inside them, and the minutes on either side.
    let (left, right) = match aligned(lo_m, hi_m, HOUR) {
        None => ((lo_m, hi_m), (hi_m, hi_m)),
        Some((lo_h, hi_h)) => {
            match aligned(lo_h, hi_h, DAY) {
                None => p.hours[0] = (lo_h, hi_h),
                Some((lo_d, hi_d)) => {
                    p.days = (lo_d, hi_d);
                    p.hours = [piece(lo_h, lo_d), piece(hi_d, hi_h)];
                }
            }
            ((lo_m, lo_h), (hi_h, hi_m))
        }
    };
    // Each side's minutes come from the minute rollups while they are kept, or else from
    // the records, together with that side's partial minute.
    if left.0 >= minutes_from {
        p.minutes[0] = piece(left.0, left.1);
        p.records[0] = piece(from, lo_m);
    } else {
        p.records[0] = piece(from, left.1);
    }
    if right.0 >= minutes_from {
        p.minutes[1] = piece(right.0, right.1);
        p.records[1] = piece(hi_m, to);
    } else {
        p.records[1] = piece(right.0, to);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The source that covers `t`, and how many do.
    fn covering(p: &Pieces, t: i64) -> Vec<&'static str> {
        let within = |(s, e): (i64, i64)| s <= t && t < e;
        let mut at = Vec::new();
        for r in p.records {
            if within(r) {
                at.push("records");
            }
        }
        if within(p.days) {
            at.push("days");
        }
        for h in p.hours {
            if within(h) {
                at.push("hours");
            }
        }
        for m in p.minutes {
            if within(m) {
                at.push("minutes");
            }
        }
        at
    }

    /// Every rollup piece is whole buckets of its size.
    fn aligned_to_buckets(p: &Pieces) -> bool {
        let whole =
            |(s, e): (i64, i64), unit: i64| (s, e) == (0, 0) || (s % unit == 0 && e % unit == 0);
        whole(p.days, DAY)
            && p.hours.iter().all(|&h| whole(h, HOUR))
            && p.minutes.iter().all(|&m| whole(m, MINUTE))
    }

    #[test]
    fn a_month_reads_whole_days_hours_and_minutes_and_the_records_only_at_its_edges() {
        let now = 1_800_000_000_000 - 1_800_000_000_000 % DAY;
        let from = now - 30 * DAY + 5 * HOUR + 7 * MINUTE + 1_234;
        let to = now - 2 * HOUR - 3 * MINUTE - 500;
        let p = pieces(from, to, minute_rollups_from(now));
        assert_eq!(p.days, (now - 29 * DAY, now - DAY));
        assert_eq!(
            p.hours,
            [
                (from - 1_234 + 53 * MINUTE, now - 29 * DAY),
                (now - DAY, now - 3 * HOUR)
            ]
        );
        // The start is a month old: its minutes' rollups are gone, the records hold them.
        assert_eq!(
            p.minutes,
            [(0, 0), (now - 3 * HOUR, now - 2 * HOUR - 4 * MINUTE)]
        );
        assert_eq!(
            p.records,
            [
                (from, from - 1_234 + 53 * MINUTE),
                (now - 2 * HOUR - 4 * MINUTE, to)
            ]
        );
    }

    #[test]
    fn all_time_is_whole_days_but_for_the_last_partial_day() {
        let now = 1_800_000_000_123;
        let p = pieces(0, i64::MAX, minute_rollups_from(now));
        assert_eq!(p.days.0, 0);
        assert_eq!(p.records[0], (0, 0));
        assert_eq!(p.records[1].1, i64::MAX);
    }

    #[test]
    fn a_range_inside_one_minute_is_read_from_the_records() {
        let p = pieces(61_000, 62_000, minute_rollups_from(70_000));
        assert_eq!(
            p,
            Pieces {
                records: [(61_000, 62_000), (0, 0)],
                ..Pieces::default()
            }
        );
        assert_eq!(pieces(5, 5, 0), Pieces::default());
        assert_eq!(pieces(9, 5, 0), Pieces::default());
    }

    #[test]
    fn without_minute_rollups_the_partial_hours_are_read_from_the_records() {
        let now = 1_800_000_000_000 - 1_800_000_000_000 % DAY;
        let (from, to) = (now - 3 * HOUR - 5 * MINUTE - 7, now - 10 * MINUTE);
        assert_eq!(
            pieces(from, to, i64::MAX),
            Pieces {
                records: [(from, now - 3 * HOUR), (now - HOUR, to)],
                hours: [(now - 3 * HOUR, now - HOUR), (0, 0)],
                ..Pieces::default()
            }
        );
    }

    proptest! {
        #[test]
        fn the_pieces_cover_the_range_exactly_once(
            from in -5 * DAY..40 * DAY,
            len in 0i64..12 * DAY,
            now in 0i64..45 * DAY,
            probes in proptest::collection::vec(0i64..12 * DAY, 16),
            minutes in any::<bool>(),
        ) {
            let to = from + len;
            // Rollups that keep minutes for two days, or none.
            let kept_from = if minutes {
                now - MINUTE_ROLLUPS_KEPT_MS + MINUTE_ROLLUPS_MARGIN_MS
            } else {
                i64::MAX
            };
            let p = pieces(from, to, if minutes { minute_rollups_from(now) } else { i64::MAX });
            prop_assert!(aligned_to_buckets(&p), "{p:?}");
            prop_assert!(p.minutes.iter().all(|&m| m == (0, 0) || m.0 >= kept_from), "{p:?}");
            let edges = [from, to - 1, from - 1, to];
            for t in probes.iter().map(|d| from + d).chain(edges) {
                let n = covering(&p, t).len();
                prop_assert_eq!(n, usize::from(from <= t && t < to), "t={} {:?}", t, p);
            }
        }

        #[test]
        fn extreme_ranges_do_not_overflow(from in any::<i64>(), to in any::<i64>(), now in any::<i64>()) {
            let p = pieces(from, to, minute_rollups_from(now));
            prop_assert!(aligned_to_buckets(&p));
        }
    }
}
