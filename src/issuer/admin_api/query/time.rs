//! RFC 3339 date-times in query strings (`since`, `until` of the audit log),
//! as whole seconds since the Unix epoch, the unit the audit log keeps.

/// The instant `text` names (`2026-01-31T12:00:00Z`, `…T12:00:00.5+02:00`,
/// `t` and `z` in either case), rounded up to the whole second: an entry at
/// second `s` is at or after the instant exactly when `s` is at or after
/// the rounded value, and before it exactly when `s` is before the rounded
/// value. `None` for anything else (a date alone, a day past the month's
/// end, an hour 24, a missing offset).
pub(super) fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter().try_fold(0i64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let at = |i: usize, c: u8| b.get(i).is_some_and(|x| x.eq_ignore_ascii_case(&c));
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour <= 23
        && minute <= 59
        && second <= 60;
    if !valid {
        return None;
    }
    // The fraction: one digit at least; any non-zero digit rounds up.
    let mut i = 19;
    let mut round_up = false;
    if at(i, b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            round_up |= b[i] != b'0';
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i..)? {
        [z] if z.eq_ignore_ascii_case(&b'Z') => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (digits(i + 1, 2)?, digits(i + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'+' { minutes } else { -minutes }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let local = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(local - offset * 60 + i64::from(round_up))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_times_are_seconds_since_the_epoch() {
        let cases = [
            ("1970-01-01T00:00:00Z", 0),
            ("1970-01-01t00:00:01z", 1),
            ("2000-02-29T12:00:00Z", 951_825_600),
            ("2000-02-29T14:00:00+02:00", 951_825_600),
            ("2000-02-29T11:30:00-00:30", 951_825_600),
            ("1969-12-31T23:59:59Z", -1),
            ("0001-01-01T00:00:00Z", -62_135_596_800),
            ("9999-12-31T23:59:59Z", 253_402_300_799),
            // A fraction rounds up to the next whole second, unless zero.
            ("1970-01-01T00:00:00.000Z", 0),
            ("1970-01-01T00:00:00.001Z", 1),
            ("1970-01-01T00:00:59.999999999Z", 60),
            // A leap second is the next second's first instant.
            ("2016-12-31T23:59:60Z", 1_483_228_800),
        ];
        for (text, secs) in cases {
            assert_eq!(parse_rfc3339(text), Some(secs), "{text}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for text in [
            "",
            "2000-02-29",
            "2000-02-29T12:00:00",
            "2000-02-30T12:00:00Z",
            "2001-02-29T12:00:00Z",
            "2000-13-01T12:00:00Z",
            "2000-00-01T12:00:00Z",
            "2000-01-01T24:00:00Z",
            "2000-01-01T12:60:00Z",
            "2000-01-01T12:00:61Z",
            "2000-01-01T12:00:00.Z",
            "2000-01-01T12:00:00+24:00",
            "2000-01-01T12:00:00+02",
            "2000-01-01T12:00:00+0200",
            "2000-01-01 12:00:00Z",
            "+2000-01-01T12:00:00Z",
            "2000-01-01T12:00:00Zjunk",
            "２000-01-01T12:00:00Z",
            "1700000000",
        ] {
            assert_eq!(parse_rfc3339(text), None, "{text:?}");
        }
    }
}
