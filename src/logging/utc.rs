//! Wall-clock timestamps in UTC, `2026-11-21T10:15:30.123Z`, computed from `SystemTime`
//! with the civil-from-days calendar arithmetic (no time-zone database, no dependency).
//! Sub-second digits are truncated, not rounded, so the human and JSON lines carry the
//! same stamp the human lines always had.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

const NANOS_PER_MILLI: i128 = 1_000_000;
const SECONDS_PER_DAY: i128 = 86_400;

/// Appends `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn push_timestamp(out: &mut String, t: SystemTime) {
    let nanos: i128 = match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
        Err(before) => -i128::try_from(before.duration().as_nanos()).unwrap_or(i128::MAX),
    };
    let millis = nanos.div_euclid(NANOS_PER_MILLI);
    let seconds = millis.div_euclid(1000);
    let milli = millis.rem_euclid(1000);
    let days = i64::try_from(seconds.div_euclid(SECONDS_PER_DAY)).unwrap_or(0);
    let of_day = seconds.rem_euclid(SECONDS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    );
}

/// The proleptic Gregorian date of `days` since 1970-01-01: (year, month 1-12, day 1-31).
/// Eras of 400 years (146,097 days) repeat exactly; within an era the year is counted
/// from March, so the leap day is the era-year's last day.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468); // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // [0, 11]
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // day in [1, 31] and month in [1, 12] by construction.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stamp(t: SystemTime) -> String {
        let mut s = String::new();
        push_timestamp(&mut s, t);
        s
    }

    fn at(seconds: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_millis(millis)
    }

    #[test]
    fn known_instants() {
        assert_eq!(stamp(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(stamp(at(1_795_256_130, 123)), "2026-11-21T10:15:30.123Z");
        assert_eq!(stamp(at(253_402_300_799, 999)), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn leap_days() {
        // 1972: divisible by 4; 2000: by 400; 2024: by 4; 2100: by 100, not a leap year.
        assert_eq!(stamp(at(68_169_600, 0)), "1972-02-29T00:00:00.000Z");
        assert_eq!(stamp(at(951_782_400, 0)), "2000-02-29T00:00:00.000Z");
        assert_eq!(stamp(at(1_709_251_199, 0)), "2024-02-29T23:59:59.000Z");
        assert_eq!(stamp(at(4_107_542_399, 0)), "2100-02-28T23:59:59.000Z");
        assert_eq!(stamp(at(4_107_542_400, 0)), "2100-03-01T00:00:00.000Z");
        assert_eq!(stamp(at(1_709_251_200, 0)), "2024-03-01T00:00:00.000Z");
        assert_eq!(stamp(at(1_735_689_599, 0)), "2024-12-31T23:59:59.000Z");
    }

    #[test]
    fn milliseconds_are_truncated() {
        let t = at(1, 0) + Duration::from_nanos(999_999_999);
        assert_eq!(stamp(t), "1970-01-01T00:00:01.999Z");
    }

    #[test]
    fn before_the_epoch() {
        // A gateway without a real-time clock may start with any time.
        let t = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(stamp(t), "1969-12-31T23:59:59.500Z");
        let t = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(stamp(t), "1969-12-31T23:59:59.000Z");
    }

    #[test]
    fn every_day_of_four_centuries_follows_the_one_before() {
        // Day by day from 1900 to 2300: the date always advances by exactly one day, and
        // a month ends after its length (February by the leap-year rule).
        let mut previous = civil_from_days(-25_567);
        assert_eq!(previous, (1900, 1, 1));
        for days in -25_566..120_000 {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = previous;
            if d == 1 {
                let leap = (py % 4 == 0 && py % 100 != 0) || py % 400 == 0;
                let length = match pm {
                    2 if leap => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                assert_eq!(pd, length, "end of {py}-{pm}");
                let expected = if pm == 12 { (py + 1, 1) } else { (py, pm + 1) };
                assert_eq!((y, m), expected, "after {previous:?}");
            } else {
                assert_eq!((y, m, d), (py, pm, pd + 1), "after {previous:?}");
            }
            previous = (y, m, d);
        }
        assert_eq!(previous, (2298, 7, 19));
    }
}
