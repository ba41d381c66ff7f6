//! Tests of the public schedule API: syntax and days here, DST in [`dst`], properties in
//! [`props`].

mod dst;
mod props;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::*;

const MADRID: Tz = Tz::Europe__Madrid;
const NEW_YORK: Tz = Tz::America__New_York;
const LORD_HOWE: Tz = Tz::Australia__Lord_Howe;

fn sched(expr: &str) -> Schedule {
    Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr:?} should parse: {e}"))
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("bad test instant {text:?}: {e}"))
        .with_timezone(&Utc)
}

/// The next `n` fire instants after `after`, as RFC 3339 UTC strings.
fn nexts(expr: &str, after: &str, tz: Tz, n: usize) -> Vec<String> {
    let schedule = sched(expr);
    let mut cursor = utc(after);
    let mut out = Vec::new();
    for _ in 0..n {
        match schedule.next_after(cursor, tz) {
            Some(next) => {
                out.push(next.format("%Y-%m-%dT%H:%M:%SZ").to_string());
                cursor = next;
            }
            None => break,
        }
    }
    out
}

fn next(expr: &str, after: &str, tz: Tz) -> Option<String> {
    nexts(expr, after, tz, 1).pop()
}

fn err(expr: &str) -> String {
    match Schedule::parse(expr) {
        Ok(_) => panic!("{expr:?} should be refused"),
        Err(e) => e.to_string(),
    }
}

// ---- syntax ---------------------------------------------------------------------------------

#[test]
fn keeps_the_trimmed_source() {
    let s = sched("  */5\t*  * * *  ");
    assert_eq!(s.as_str(), "*/5\t*  * * *");
    assert!(!s.has_seconds());
    assert!(sched("*/10 * * * * *").has_seconds());
}

#[test]
fn every_refusal_names_the_field() {
    assert_eq!(
        err("61 * * * *"),
        "invalid schedule \"61 * * * *\": minute field \"61\" is out of range (0-59)"
    );
    let cases = [
        ("60 * * * * *", "second field"),
        ("* 24 * * *", "hour field"),
        ("* * 32 * *", "day-of-month field"),
        ("* * 0 * *", "day-of-month field"),
        ("* * * 13 *", "month field"),
        ("* * * 0 *", "month field"),
        ("* * * * 8", "day-of-week field"),
        ("5/15 * * * *", "minute field"),
        ("* */0 * * *", "hour field"),
        ("* 5-1 * * *", "hour field"),
        ("* * * * 1#2", "day-of-week field"),
        ("* * 15W * *", "day-of-month field"),
        ("* * ? * *", "day-of-month field"),
        ("* * * * ?", "day-of-week field"),
        ("* * * * +1", "day-of-week field"),
        ("* * * * 5L", "day-of-week field"),
        ("* * * * L", "day-of-week field"),
        ("L * * * *", "minute field"),
        ("* * * foo *", "month field"),
        ("* * * * funday", "day-of-week field"),
        ("* * * mon *", "month field"),
        ("* * * * jan", "day-of-week field"),
        ("1,,2 * * * *", "minute field"),
        ("*/61 * * * *", "minute field"),
    ];
    for (expr, field) in cases {
        let message = err(expr);
        assert!(
            message.contains(field),
            "{expr:?}: {message:?} should name the {field}"
        );
        assert!(
            message.starts_with(&format!("invalid schedule {expr:?}: ")),
            "{message}"
        );
    }
    assert!(err("5/15 * * * *").contains("use a-b/n or */n"));
}

#[test]
fn refuses_bad_shapes_and_macros() {
    assert!(err("").contains("empty"));
    assert!(err("   ").contains("empty"));
    assert!(err("* * * *").contains("found 4 fields"));
    assert!(err("* * * * * * *").contains("year field is not supported"));
    assert!(err("* * * * * * * *").contains("found 8 fields"));
    let message = err("@fortnightly");
    assert!(message.contains("unknown macro"), "{message}");
    assert!(
        message.contains("@reboot") && message.contains("@hourly") && message.contains("@midnight")
    );
    assert!(err("@daily 5").contains("unknown macro"));
}

#[test]
fn macros_expand_like_crontab() {
    let after = "2026-06-10T12:34:00Z";
    assert_eq!(
        next("@yearly", after, Tz::UTC).as_deref(),
        Some("2027-01-01T00:00:00Z")
    );
    assert_eq!(
        next("@annually", after, Tz::UTC).as_deref(),
        Some("2027-01-01T00:00:00Z")
    );
    assert_eq!(
        next("@monthly", after, Tz::UTC).as_deref(),
        Some("2026-07-01T00:00:00Z")
    );
    // 2026-06-10 is a Wednesday; the next Sunday is the 14th.
    assert_eq!(
        next("@weekly", after, Tz::UTC).as_deref(),
        Some("2026-06-14T00:00:00Z")
    );
    assert_eq!(
        next("@daily", after, Tz::UTC).as_deref(),
        Some("2026-06-11T00:00:00Z")
    );
    assert_eq!(
        next("@midnight", after, Tz::UTC).as_deref(),
        Some("2026-06-11T00:00:00Z")
    );
    assert_eq!(
        next("@hourly", after, Tz::UTC).as_deref(),
        Some("2026-06-10T13:00:00Z")
    );
    assert_eq!(
        next("@DAILY", after, Tz::UTC).as_deref(),
        Some("2026-06-11T00:00:00Z")
    );
    let reboot = sched("@reboot");
    assert!(reboot.is_reboot());
    assert!(!reboot.is_fixed_time());
    assert_eq!(reboot.next_after(utc(after), Tz::UTC), None);
    assert!(reboot
        .fires_between(utc(after), utc("2030-01-01T00:00:00Z"), Tz::UTC, 10)
        .is_empty());
}

#[test]
fn dst_classes_follow_cronie() {
    for fixed in [
        "30 2 * * *",
        "0 0 * * *",
        "0,30 1-3 * * *",
        "@daily",
        "*/10 0 2 * * *",
        "0 0 1 * *",
    ] {
        assert!(sched(fixed).is_fixed_time(), "{fixed} should be fixed-time");
    }
    for wild in [
        "*/15 * * * *",
        "* 2 * * *",
        "0 * * * *",
        "@hourly",
        "0 */2 * * *",
        "0 0 * * * *",
    ] {
        assert!(!sched(wild).is_fixed_time(), "{wild} should be wildcard");
    }
}

// ---- days -----------------------------------------------------------------------------------

#[test]
fn day_fields_or_when_both_restricted() {
    // The 1st, the 15th and every Friday of May 2026 (Fridays: 1, 8, 15, 22, 29).
    let fires = nexts("0 0 1,15 * 5", "2026-04-30T12:00:00Z", Tz::UTC, 5);
    assert_eq!(
        fires,
        [
            "2026-05-01T00:00:00Z",
            "2026-05-08T00:00:00Z",
            "2026-05-15T00:00:00Z",
            "2026-05-22T00:00:00Z",
            "2026-05-29T00:00:00Z"
        ]
    );
    // 2026-06-01 is a Monday, not a Friday, and still fires.
    assert_eq!(
        next("0 0 1 * 5", "2026-05-29T12:00:00Z", Tz::UTC).as_deref(),
        Some("2026-06-01T00:00:00Z")
    );
}

#[test]
fn day_fields_and_when_one_starts_with_star() {
    // Odd days that are also Mondays: June 2026 Mondays are 1, 8, 15, 22, 29.
    let fires = nexts("0 0 */2 * 1", "2026-05-31T12:00:00Z", Tz::UTC, 3);
    assert_eq!(
        fires,
        [
            "2026-06-01T00:00:00Z",
            "2026-06-15T00:00:00Z",
            "2026-06-29T00:00:00Z"
        ]
    );
    // `*` day-of-month: only the weekday counts.
    assert_eq!(
        next("0 0 * * 1", "2026-06-02T00:00:00Z", Tz::UTC).as_deref(),
        Some("2026-06-08T00:00:00Z")
    );
    // Day-of-week `*/3` (Sun, Wed, Sat) narrows day-of-month 1-10: June 3 is a Wednesday.
    assert_eq!(
        next("0 0 1-10 * */3", "2026-06-01T12:00:00Z", Tz::UTC).as_deref(),
        Some("2026-06-03T00:00:00Z")
    );
}

#[test]
fn sunday_is_zero_and_seven() {
    let after = "2026-06-10T00:00:00Z"; // a Wednesday
    assert_eq!(
        next("0 0 * * 0", after, Tz::UTC).as_deref(),
        Some("2026-06-14T00:00:00Z")
    );
    assert_eq!(
        next("0 0 * * 7", after, Tz::UTC).as_deref(),
        Some("2026-06-14T00:00:00Z")
    );
    assert_eq!(
        next("0 0 * * sun", after, Tz::UTC).as_deref(),
        Some("2026-06-14T00:00:00Z")
    );
    // 5-7: Friday, Saturday, Sunday.
    assert_eq!(
        nexts("0 0 * * 5-7", after, Tz::UTC, 4),
        [
            "2026-06-12T00:00:00Z",
            "2026-06-13T00:00:00Z",
            "2026-06-14T00:00:00Z",
            "2026-06-19T00:00:00Z"
        ]
    );
}

#[test]
fn names_and_name_ranges() {
    assert_eq!(
        nexts("0 9 * * MON-wed", "2026-06-10T10:00:00Z", Tz::UTC, 3),
        [
            "2026-06-15T09:00:00Z",
            "2026-06-16T09:00:00Z",
            "2026-06-17T09:00:00Z"
        ]
    );
    assert_eq!(
        nexts("0 0 1 jan-mar *", "2026-06-10T00:00:00Z", Tz::UTC, 4),
        [
            "2027-01-01T00:00:00Z",
            "2027-02-01T00:00:00Z",
            "2027-03-01T00:00:00Z",
            "2028-01-01T00:00:00Z"
        ]
    );
    assert_eq!(
        next("0 0 1 Dec *", "2026-06-10T00:00:00Z", Tz::UTC).as_deref(),
        Some("2026-12-01T00:00:00Z")
    );
}

#[test]
fn steps_and_range_steps() {
    assert_eq!(
        nexts("*/20 * * * *", "2026-06-10T10:05:00Z", Tz::UTC, 3),
        [
            "2026-06-10T10:20:00Z",
            "2026-06-10T10:40:00Z",
            "2026-06-10T11:00:00Z"
        ]
    );
    assert_eq!(
        nexts("10-30/10 8-9 * * *", "2026-06-10T08:15:00Z", Tz::UTC, 5),
        [
            "2026-06-10T08:20:00Z",
            "2026-06-10T08:30:00Z",
            "2026-06-10T09:10:00Z",
            "2026-06-10T09:20:00Z",
            "2026-06-10T09:30:00Z"
        ]
    );
}

#[test]
fn leap_days_and_month_ends() {
    assert_eq!(
        next("0 0 29 2 *", "2027-01-01T00:00:00Z", Tz::UTC).as_deref(),
        Some("2028-02-29T00:00:00Z")
    );
    // 31st: January, March, May (skips February and April).
    assert_eq!(
        nexts("0 0 31 * *", "2027-01-01T00:00:00Z", Tz::UTC, 3),
        [
            "2027-01-31T00:00:00Z",
            "2027-03-31T00:00:00Z",
            "2027-05-31T00:00:00Z"
        ]
    );
    assert_eq!(
        nexts("0 0 L * *", "2027-01-31T12:00:00Z", Tz::UTC, 3),
        [
            "2027-02-28T00:00:00Z",
            "2027-03-31T00:00:00Z",
            "2027-04-30T00:00:00Z"
        ]
    );
    assert_eq!(
        next("0 0 L 2 *", "2027-03-01T00:00:00Z", Tz::UTC).as_deref(),
        Some("2028-02-29T00:00:00Z")
    );
}

#[test]
fn never_firing_schedules_are_refused() {
    for expr in [
        "0 0 30 2 *",
        "0 0 31 4,6,9,11 *",
        "* * 31 2 *",
        "0 0 30-31 feb *",
    ] {
        let e = err(expr);
        assert!(e.contains("never fires"), "{expr}: {e}");
    }
    // Rare is not never, and in OR mode a weekday always comes.
    for expr in ["0 0 29 2 *", "0 0 29 2 */7", "0 0 30 2 1", "0 0 L 2 *"] {
        sched(expr);
    }
}

#[test]
fn first_fire_says_never_in_a_zone() {
    let after = utc("2026-01-01T00:00:00Z");
    assert_eq!(sched("@reboot").first_fire(after, Tz::UTC), Ok(None));
    assert_eq!(
        sched("0 0 29 2 *").first_fire(after, Tz::UTC),
        Ok(Some(utc("2028-02-29T00:00:00Z")))
    );
    // After the end of the searchable calendar nothing fires: said as such, not as valid.
    let e = sched("0 0 * * *")
        .first_fire(utc("4950-01-01T00:00:00Z"), Tz::UTC)
        .unwrap_err()
        .to_string();
    assert!(e.contains("never fires in UTC"), "{e}");
}

#[test]
fn a_month_day_on_one_weekday_is_found_decades_away() {
    // The case: the 13th of May on a Sunday, 11 years after 2046.
    assert_eq!(
        next("0 0 13 5 */7", "2046-05-14T00:00:00Z", Tz::UTC).as_deref(),
        Some("2057-05-13T00:00:00Z")
    );
    // January 1st on a Saturday, across 2200 (not a leap year): 12 years.
    assert_eq!(
        next("0 0 */31 1 6", "2191-01-02T00:00:00Z", Tz::UTC).as_deref(),
        Some("2203-01-01T00:00:00Z")
    );
    // The 29th of February on a Sunday: 40 years, the longest wait of all; and in a zone.
    assert_eq!(
        next("0 0 29 2 */7", "2088-03-01T00:00:00Z", Tz::UTC).as_deref(),
        Some("2128-02-29T00:00:00Z")
    );
    assert_eq!(
        next("30 2 29 2 */7", "2088-03-01T00:00:00Z", MADRID).as_deref(),
        Some("2128-02-29T01:30:00Z")
    );
    assert_eq!(
        next("* 2 29 2 */7", "2088-03-01T00:00:00Z", NEW_YORK).as_deref(),
        Some("2128-02-29T07:00:00Z")
    );
}

/// The bound of the search, recomputed: walk two 400-year cycles day by day and find the longest
/// gap between two dates with the same (month, day of month or last day, weekday).
#[test]
fn the_horizon_is_the_calendars_longest_gap() {
    use chrono::{Datelike, NaiveDate};
    // (month 1-12, day 1-31 or 32 for the last day, weekday 0-6) -> last date seen.
    let mut last = vec![None::<NaiveDate>; 13 * 33 * 7];
    let mut longest = 0;
    let mut longest_not_feb_29 = 0;
    let mut day = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
    let end = NaiveDate::from_ymd_opt(2800, 12, 31).unwrap();
    while day <= end {
        let next = day.succ_opt().unwrap();
        let w = day.weekday().num_days_from_sunday() as usize;
        let mut days = vec![day.day() as usize];
        if next.month() != day.month() {
            days.push(32);
        }
        for d in days {
            let key = (day.month() as usize * 33 + d) * 7 + w;
            if let Some(prev) = last[key] {
                let gap = (day - prev).num_days();
                longest = longest.max(gap);
                if !(day.month() == 2 && d == 29) {
                    longest_not_feb_29 = longest_not_feb_29.max(gap);
                }
            }
            last[key] = Some(day);
        }
        day = next;
    }
    assert_eq!(longest, crate::schedule::dst::LONGEST_GAP_DAYS);
    assert_eq!(longest_not_feb_29, 4_382);
    use crate::schedule::dst::{HORIZON_DAYS, LONGEST_GAP_DAYS};
    assert_eq!(HORIZON_DAYS, LONGEST_GAP_DAYS + 2);
}

#[test]
fn seconds_field() {
    assert_eq!(
        nexts("*/10 * * * * *", "2026-06-10T10:00:05Z", Tz::UTC, 3),
        [
            "2026-06-10T10:00:10Z",
            "2026-06-10T10:00:20Z",
            "2026-06-10T10:00:30Z"
        ]
    );
    assert_eq!(
        next("30 0 3 * * *", "2026-06-10T10:00:00Z", Tz::UTC).as_deref(),
        Some("2026-06-11T03:00:30Z")
    );
    // Sub-second `after`: the fire at the next whole second still comes.
    let s = sched("* * * * * *");
    let after = utc("2026-06-10T10:00:05.5Z");
    assert_eq!(
        s.next_after(after, Tz::UTC),
        Some(utc("2026-06-10T10:00:06Z"))
    );
}

#[test]
fn fires_between_is_half_open_and_limited() {
    let s = sched("0 * * * *");
    let fires = s.fires_between(
        utc("2026-06-10T10:00:00Z"),
        utc("2026-06-10T13:00:00Z"),
        Tz::UTC,
        10,
    );
    assert_eq!(
        fires,
        [
            utc("2026-06-10T11:00:00Z"),
            utc("2026-06-10T12:00:00Z"),
            utc("2026-06-10T13:00:00Z")
        ]
    );
    let limited = s.fires_between(
        utc("2026-06-10T10:00:00Z"),
        utc("2026-06-11T10:00:00Z"),
        Tz::UTC,
        2,
    );
    assert_eq!(limited.len(), 2);
}

#[test]
fn zones_shift_fire_times() {
    assert_eq!(
        next("0 3 * * *", "2026-06-10T00:00:00Z", MADRID).as_deref(),
        Some("2026-06-10T01:00:00Z")
    );
    assert_eq!(
        next("0 3 * * *", "2026-01-10T00:00:00Z", NEW_YORK).as_deref(),
        Some("2026-01-10T08:00:00Z")
    );
}

/// The cost of one `next_after` (the runner's per-fire work), for the report:
/// `cargo test --release --lib schedule::tests::next_after_cost -- --ignored --nocapture`.
#[test]
#[ignore = "a timing to read, not a check: run it by name with --ignored --nocapture"]
fn next_after_cost() {
    let start = utc("2026-06-10T10:00:00Z");
    for (expr, tz) in [
        ("* * * * * *", Tz::UTC),
        ("*/5 * * * *", MADRID),
        ("0 3 * * *", MADRID),
        ("30 2 * * *", MADRID),
        ("0 0 1 * *", NEW_YORK),
        ("0 0 29 2 *", Tz::UTC),
        ("0 0 13 5 */7", Tz::UTC),
        ("0 0 29 2 */7", Tz::UTC),
    ] {
        let s = sched(expr);
        let n = 2000;
        let mut cursor = start;
        let t0 = std::time::Instant::now();
        for _ in 0..n {
            cursor = s.next_after(cursor, tz).unwrap_or(start);
        }
        let per = t0.elapsed() / n;
        println!("{expr:>16} {tz:<16} {per:?} per next_after");
    }
}
