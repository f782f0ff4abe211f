//! Calendar arithmetic for display and date arguments (UTC, proleptic
//! Gregorian; Howard Hinnant's civil-date algorithms), and URL query escaping.

/// (year, month, day, hour, minute, second, weekday with 0 = Sunday) of a
/// time in milliseconds since the Unix epoch.
pub fn utc(ms: u64) -> (i64, i64, i64, u64, u64, u64, i64) {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60, (days + 4).rem_euclid(7))
}

/// Days since the Unix epoch of a calendar date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// `YYYY-MM-DD` (a time of day after it is ignored) as ms since the epoch; `None` if malformed.
pub fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.trim().get(..10)?.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (it.next()??, it.next()??, it.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400_000)
}

/// `YYYY-MM-DD HH:MM UTC`.
pub fn display(ms: u64) -> String {
    let (y, m, d, hh, mm, _, _) = utc(ms);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02} UTC")
}

/// Percent-encodes everything but unreserved characters, for query values.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_known_dates() {
        assert_eq!(utc(0), (1970, 1, 1, 0, 0, 0, 4));
        assert_eq!(display(1_709_210_096_000), "2024-02-29 12:34 UTC");
        assert_eq!(parse_date("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(parse_date("2024-13-01"), None);
        assert_eq!(parse_date("soon"), None);
        for day in [-1000i64, 0, 59, 60, 11_016, 20_000] {
            let (y, m, d, ..) = utc(u64::try_from(day.max(0) * 86_400_000).unwrap_or(0));
            assert_eq!(days_from_civil(y, m, d), day.max(0));
        }
        assert_eq!(urlencode("a b/ü"), "a%20b%2F%C3%BC");
    }
}
