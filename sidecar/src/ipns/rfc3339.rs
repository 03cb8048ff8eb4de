//! RFC 3339 timestamps as IPNS uses them for `Validity` (ValidityType 0, EOL),
//! with nanosecond precision.
//!
//! Owns: [`parse`] (string → [`SystemTime`]) and [`format`] (the inverse, in
//! the shape Go's `time.RFC3339Nano` prints, which is what boxo/Kubo sign).
//!
//! What [`parse`] accepts is the strict RFC 3339 grammar, cut down to a
//! subset of what boxo accepts (Go `time.Parse(time.RFC3339Nano, s)`), so a
//! record this module accepts is never refused by Kubo:
//! `YYYY-MM-DDTHH:MM:SS[.F]` then `Z` or `±HH:MM`, where `F` is 1 to 9
//! digits; upper-case `T` and `Z` only (Go refuses lower case); dates are
//! checked against the calendar (leap years), seconds are 00–59 (Go refuses
//! leap second 60); years are 0000–9999. A numeric offset is accepted
//! because boxo accepts it (and converts to UTC). Go's fallback parser also
//! takes a one-digit hour, a comma before the fraction and more than nine
//! fraction digits (truncated); no implementation emits those, so they are
//! refused here.
//!
//! Called by: [`super::record`] (validation) and [`super::testing`] (record
//! creation). Must never: read the clock, or allocate in [`parse`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds in a day.
const SECS_PER_DAY: i64 = 86_400;
/// Nanoseconds in a second.
const NANOS_PER_SEC: u32 = 1_000_000_000;
/// Most fraction digits kept: nanosecond precision (spec: "Expiration date
/// of the record with nanoseconds precision").
const MAX_FRACTION_DIGITS: usize = 9;
/// Year range of the four-digit `YYYY` field.
const MAX_YEAR: i64 = 9999;

/// Parses an RFC 3339 timestamp (see the module doc for the exact grammar).
/// The error says what is wrong, in a few words.
pub fn parse(s: &str) -> Result<SystemTime, &'static str> {
    let b = s.as_bytes();
    if b.len() < "YYYY-MM-DDTHH:MM:SSZ".len() {
        return Err("too short for YYYY-MM-DDTHH:MM:SSZ");
    }
    let year = digits(b, 0, 4).ok_or("year is not 4 digits")?;
    expect(b, 4, b'-', "expected '-' after the year")?;
    let month = digits(b, 5, 2).ok_or("month is not 2 digits")?;
    expect(b, 7, b'-', "expected '-' after the month")?;
    let day = digits(b, 8, 2).ok_or("day is not 2 digits")?;
    expect(b, 10, b'T', "expected upper-case 'T' between date and time")?;
    let hour = digits(b, 11, 2).ok_or("hour is not 2 digits")?;
    expect(b, 13, b':', "expected ':' after the hour")?;
    let minute = digits(b, 14, 2).ok_or("minute is not 2 digits")?;
    expect(b, 16, b':', "expected ':' after the minute")?;
    let second = digits(b, 17, 2).ok_or("second is not 2 digits")?;

    if !(1..=12).contains(&month) {
        return Err("month out of range 01-12");
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err("day out of range for the month");
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err("time of day out of range (leap seconds are not accepted)");
    }

    let mut pos = 19;
    let mut nanos: u32 = 0;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        let n = pos - start;
        if n == 0 {
            return Err("'.' is not followed by a digit");
        }
        if n > MAX_FRACTION_DIGITS {
            return Err("more than 9 fraction digits");
        }
        for &d in &b[start..pos] {
            nanos = nanos * 10 + u32::from(d - b'0');
        }
        nanos *= 10u32.pow((MAX_FRACTION_DIGITS - n) as u32);
    }

    let offset_secs: i64 = match &b[pos..] {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let oh = digits(b, pos + 1, 2).ok_or("offset hour is not 2 digits")?;
            let om = digits(b, pos + 4, 2).ok_or("offset minute is not 2 digits")?;
            if oh > 23 || om > 59 {
                return Err("offset out of range");
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'-' { -off } else { off }
        }
        [] => return Err("missing time zone ('Z' or ±HH:MM)"),
        _ => return Err("time zone is not 'Z' or ±HH:MM, or trailing characters"),
    };

    let secs =
        days_from_civil(year, month, day) * SECS_PER_DAY + hour * 3600 + minute * 60 + second
            - offset_secs;
    to_system_time(secs, nanos).ok_or("out of the range this platform's clock represents")
}

/// Formats `t` as UTC the way Go's `time.RFC3339Nano` does (boxo's
/// `util.FormatRFC3339`): fraction digits with trailing zeros trimmed, no
/// fraction at all for a whole second, `Z`. `None` outside years 0000–9999.
pub fn format(t: SystemTime) -> Option<String> {
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (i64::try_from(d.as_secs()).ok()?, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let mut secs = -i64::try_from(d.as_secs()).ok()?;
            let mut nanos = d.subsec_nanos();
            if nanos > 0 {
                secs -= 1;
                nanos = NANOS_PER_SEC - nanos;
            }
            (secs, nanos)
        }
    };
    let days = secs.div_euclid(SECS_PER_DAY);
    let tod = secs.rem_euclid(SECS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    if !(0..=MAX_YEAR).contains(&year) {
        return None;
    }
    let mut s = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    Some(s)
}

fn expect(b: &[u8], at: usize, want: u8, err: &'static str) -> Result<(), &'static str> {
    if b.get(at) == Some(&want) {
        Ok(())
    } else {
        Err(err)
    }
}

/// `n` ASCII digits at `at` as a number, or `None`.
fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let s = b.get(at..at + n)?;
    s.iter().try_fold(0i64, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
    })
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`, public-domain algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn to_system_time(secs: i64, nanos: u32) -> Option<SystemTime> {
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs.unsigned_abs(), nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64, nanos: u32) -> SystemTime {
        to_system_time(secs, nanos).expect("in range")
    }

    #[test]
    fn parses_the_spec_and_fixture_examples() {
        assert_eq!(parse("1970-01-01T00:00:00.000000001Z"), Ok(at(0, 1)));
        assert_eq!(parse("1970-01-01T00:00:00Z"), Ok(UNIX_EPOCH));
        // The validity of the spec's test vectors (6 fraction digits).
        let t = parse("2123-08-14T12:17:03.694052Z").expect("valid");
        assert_eq!(t, at(4_847_689_023, 694_052_000));
        assert_eq!(
            parse("2024-01-19T16:33:20.858209Z"),
            Ok(at(1_705_682_000, 858_209_000))
        );
    }

    #[test]
    fn every_fraction_width_from_1_to_9_digits() {
        for n in 1..=9 {
            let s = format!("2000-03-01T00:00:00.{}Z", "1".repeat(n));
            let t = parse(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
            let nanos = t.duration_since(UNIX_EPOCH).expect("after").subsec_nanos();
            let want: u32 = "1".repeat(n).parse::<u32>().expect("digits") * 10u32.pow(9 - n as u32);
            assert_eq!(nanos, want, "{s}");
        }
        assert!(parse("2000-03-01T00:00:00.1234567891Z").is_err());
        assert!(parse("2000-03-01T00:00:00.Z").is_err());
        assert!(parse("2000-03-01T00:00:00,5Z").is_err());
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        let z = parse("2030-06-01T12:00:00Z").expect("valid");
        assert_eq!(parse("2030-06-01T14:30:00+02:30"), Ok(z));
        assert_eq!(parse("2030-06-01T02:00:00-10:00"), Ok(z));
        assert_eq!(parse("2030-06-01T12:00:00-00:00"), Ok(z));
        assert!(parse("2030-06-01T12:00:00+24:00").is_err());
        assert!(parse("2030-06-01T12:00:00+0200").is_err());
        assert!(parse("2030-06-01T12:00:00+02").is_err());
    }

    #[test]
    fn refuses_what_go_refuses_or_nobody_emits() {
        for bad in [
            "",
            "2030-06-01",
            "2030-06-01t12:00:00Z",
            "2030-06-01T12:00:00z",
            "2030-06-01 12:00:00Z",
            "2030-06-01T12:00:00",
            "2030-06-01T12:00:00ZZ",
            "2030-06-01T12:00:00Z ",
            "2030-6-01T12:00:00Z",
            "2030-06-01T1:00:00Z",
            "2030-13-01T12:00:00Z",
            "2030-00-01T12:00:00Z",
            "2030-02-29T12:00:00Z",
            "2030-04-31T12:00:00Z",
            "2030-06-00T12:00:00Z",
            "2030-06-01T24:00:00Z",
            "2030-06-01T12:60:00Z",
            "2030-06-01T12:00:60Z",
            "+2030-06-01T12:00:00Z",
            "2030-06-01T12:00:00.+1Z",
            "２０３０-06-01T12:00:00Z",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse("2032-02-29T12:00:00Z").is_ok());
        assert!(parse("2000-02-29T12:00:00Z").is_ok());
        assert!(parse("2100-02-29T12:00:00Z").is_err());
    }

    #[test]
    fn before_the_epoch_and_the_year_limits() {
        assert_eq!(parse("1969-12-31T23:59:59.5Z"), Ok(at(-1, 500_000_000)));
        let t0 = parse("0000-01-01T00:00:00Z").expect("year 0");
        assert_eq!(format(t0).as_deref(), Some("0000-01-01T00:00:00Z"));
        let t9 = parse("9999-12-31T23:59:59.999999999Z").expect("year 9999");
        assert_eq!(
            format(t9).as_deref(),
            Some("9999-12-31T23:59:59.999999999Z")
        );
        assert_eq!(format(t9 + Duration::from_nanos(1)), None);
    }

    #[test]
    fn format_matches_go_rfc3339nano() {
        assert_eq!(format(UNIX_EPOCH).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            format(at(0, 1)).as_deref(),
            Some("1970-01-01T00:00:00.000000001Z")
        );
        assert_eq!(
            format(at(4_847_689_023, 694_052_000)).as_deref(),
            Some("2123-08-14T12:17:03.694052Z")
        );
        assert_eq!(
            format(at(-1, 500_000_000)).as_deref(),
            Some("1969-12-31T23:59:59.5Z")
        );
    }

    #[test]
    fn format_then_parse_round_trips() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Seconds across years ~1600..~2340, any nanosecond.
            let secs = (x % 23_000_000_000) as i64 - 11_000_000_000;
            let nanos = (x >> 32) as u32 % NANOS_PER_SEC;
            let t = at(secs, nanos);
            let s = format(t).expect("in range");
            assert_eq!(parse(&s), Ok(t), "{s}");
        }
    }
}
