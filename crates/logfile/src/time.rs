//! Calendar arithmetic for the two timestamps upstream writes: zap's `ISO8601TimeEncoder`
//! (`2006-01-02T15:04:05.000Z0700`, the `ts` of every line) and lumberjack's backup-name
//! stamp (`backupTimeFormat`, `2006-01-02T15-04-05.000`, UTC). Both are written in UTC here
//! (the aws-node container has no time zone configured, so upstream's are UTC too).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (negative before 1970).
pub type UnixMillis = i64;

/// Now, in milliseconds since the epoch (a clock before 1970 counts as the epoch).
pub fn now_millis() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A UTC date and time of day, to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub milli: u32,
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // day in 1..=31 and month in 1..=12 by construction.
    (year, month as u32, day as u32)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Civil {
    pub fn from_millis(ms: UnixMillis) -> Civil {
        let days = ms.div_euclid(86_400_000);
        let rest = ms.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        // rest < 86_400_000 fits in u32.
        let rest = rest as u32;
        Civil {
            year,
            month,
            day,
            hour: rest / 3_600_000,
            minute: rest / 60_000 % 60,
            second: rest / 1_000 % 60,
            milli: rest % 1_000,
        }
    }

    pub fn to_millis(self) -> UnixMillis {
        let days = days_from_civil(self.year, self.month, self.day);
        let in_day = i64::from(self.hour) * 3_600_000
            + i64::from(self.minute) * 60_000
            + i64::from(self.second) * 1_000
            + i64::from(self.milli);
        days * 86_400_000 + in_day
    }

    fn is_valid(self) -> bool {
        (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year, self.month)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60
            && self.milli < 1_000
    }
}

/// zap's `ISO8601TimeEncoder` in UTC: `2024-05-16T20:06:51.404Z`.
pub fn iso8601(ms: UnixMillis) -> String {
    let c = Civil::from_millis(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.milli
    )
}

/// lumberjack's backup stamp (`2006-01-02T15-04-05.000`, UTC): `2024-05-16T20-06-51.404`.
pub fn backup_stamp(ms: UnixMillis) -> String {
    let c = Civil::from_millis(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}-{:02}-{:02}.{:03}",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.milli
    )
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The time a [`backup_stamp`] stands for; `None` for anything else (exact layout only,
/// as Go's `time.Parse` with lumberjack's format).
pub fn parse_backup_stamp(s: &str) -> Option<UnixMillis> {
    let b = s.as_bytes();
    if b.len() != 23 {
        return None;
    }
    let seps = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b'-'),
        (16, b'-'),
        (19, b'.'),
    ];
    if seps.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let c = Civil {
        year: i64::from(digits(s.get(0..4)?)?),
        month: digits(s.get(5..7)?)?,
        day: digits(s.get(8..10)?)?,
        hour: digits(s.get(11..13)?)?,
        minute: digits(s.get(14..16)?)?,
        second: digits(s.get(17..19)?)?,
        milli: digits(s.get(20..23)?)?,
    };
    c.is_valid().then(|| c.to_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        // 2024-05-16T20:06:51.404Z, the spec's example.
        assert_eq!(iso8601(1_715_890_011_404), "2024-05-16T20:06:51.404Z");
        assert_eq!(backup_stamp(1_715_890_011_404), "2024-05-16T20-06-51.404");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            parse_backup_stamp("2024-05-16T20-06-51.404"),
            Some(1_715_890_011_404)
        );
    }

    #[test]
    fn malformed_stamps_are_not_backups() {
        for s in [
            "",
            "2024-05-16T20:06:51.404",
            "2024-05-16T20-06-51",
            "2024-05-16T20-06-51.4040",
            "2024-13-16T20-06-51.404",
            "2023-02-29T20-06-51.404",
            "2024-05-16T24-06-51.404",
            "2024-05-16T20-06-6x.404",
            "+024-05-16T20-06-51.404",
        ] {
            assert_eq!(parse_backup_stamp(s), None, "{s}");
        }
        assert!(parse_backup_stamp("2024-02-29T23-59-59.999").is_some());
    }

    proptest! {
        #[test]
        fn stamps_round_trip(ms in 0i64..253_402_300_799_999) {
            prop_assert_eq!(parse_backup_stamp(&backup_stamp(ms)), Some(ms));
            prop_assert_eq!(Civil::from_millis(ms).to_millis(), ms);
            let iso = iso8601(ms);
            prop_assert_eq!(iso.len(), 24);
            let dashed = iso.replace(':', "-");
            prop_assert_eq!(dashed.trim_end_matches('Z'), backup_stamp(ms));
        }

        #[test]
        fn order_of_stamps_is_order_of_time(a in 0i64..253_402_300_799_999, b in 0i64..253_402_300_799_999) {
            prop_assert_eq!(a.cmp(&b), backup_stamp(a).cmp(&backup_stamp(b)));
        }
    }
}
