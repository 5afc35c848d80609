//! The two wall-clock text formats the Edge protocol uses: JavaScript's `Date.toString()` (the
//! `X-Timestamp` header) and the HTTP `Date` header (to learn the server's clock after a 403).
//!
//! Deliberately tiny and UTC-only; it is not a date library and parses only the IMF-fixdate form
//! (`Sun, 06 Nov 1994 08:49:37 GMT`) that RFC 9110 requires servers to send.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Mon Nov 04 2024 15:20:12 GMT+0000 (Coordinated Universal Time)`, as Edge's JavaScript sends it.
pub(crate) fn javascript_date(time: SystemTime) -> String {
    let secs = unix_seconds(time);
    let days = secs.div_euclid(86_400);
    let second_of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let weekday = WEEKDAYS[(days + 4).rem_euclid(7) as usize];
    format!(
        "{weekday} {} {day:02} {year:04} {:02}:{:02}:{:02} GMT+0000 (Coordinated Universal Time)",
        MONTHS[(month - 1) as usize],
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// Parses an HTTP `Date` header in IMF-fixdate form; `None` for anything else.
pub(crate) fn parse_http_date(value: &str) -> Option<SystemTime> {
    let mut parts = value.split_ascii_whitespace();
    let _weekday = parts.next()?.strip_suffix(',')?;
    let day: u32 = parts.next()?.parse().ok()?;
    let month_name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as u32 + 1;
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60
    {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

pub(crate) fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), proleptic Gregorian (H. Hinnant).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = (if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    }) as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = i64::from((month + 9) % 12);
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn javascript_dates_match_python_gmtime() {
        // Expected strings from Python's time.strftime over time.gmtime, an independent formatter.
        for (secs, expected) in [
            (0, "Thu Jan 01 1970 00:00:00"),
            (951_782_400, "Tue Feb 29 2000 00:00:00"),
            (1_730_733_612, "Mon Nov 04 2024 15:20:12"),
        ] {
            assert_eq!(
                javascript_date(at(secs)),
                format!("{expected} GMT+0000 (Coordinated Universal Time)"),
                "the X-Timestamp of {secs} must read like Edge's JavaScript Date"
            );
        }
    }

    #[test]
    fn http_dates_round_trip_through_civil_days() {
        assert_eq!(
            parse_http_date("Mon, 04 Nov 2024 15:20:12 GMT"),
            Some(at(1_730_733_612)),
            "the RFC 9110 example form parses to the same instant"
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT"),
            Some(at(951_782_400)),
            "leap day"
        );
        for day in [0_i64, 59, 60, 365, 10_957, 20_000, 30_000] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(
                days_from_civil(y, m, d),
                day,
                "civil conversion must be its own inverse"
            );
        }
    }

    #[test]
    fn other_date_forms_are_rejected_not_misread() {
        for bad in [
            "",
            "yesterday",
            "Monday, 04-Nov-24 15:20:12 GMT",
            "Mon Nov  4 15:20:12 2024",
            "Mon, 04 Nov 2024 15:20:12 PST",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?} is not IMF-fixdate");
        }
    }
}
