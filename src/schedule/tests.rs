//! Tests of the public schedule API: syntax, crontab day rules, DST, properties.

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

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
fn never_firing_schedules_end() {
    assert_eq!(next("0 0 30 2 *", "2026-01-01T00:00:00Z", Tz::UTC), None);
    assert_eq!(
        next("0 0 31 4,6,9,11 *", "2026-01-01T00:00:00Z", MADRID),
        None
    );
    assert_eq!(next("* * 31 2 *", "2026-01-01T00:00:00Z", MADRID), None);
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

// ---- DST ------------------------------------------------------------------------------------

/// The instants where `tz` changes offset in `[from, to)`, with the offsets either side.
fn changes(tz: Tz, from: &str, to: &str) -> Vec<(DateTime<Utc>, i32, i32)> {
    use chrono::Offset;
    let offset = |t: DateTime<Utc>| {
        tz.offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc()
    };
    let (mut t, end) = (utc(from), utc(to));
    let mut out = Vec::new();
    while t < end {
        let later = t + Duration::minutes(1);
        if offset(later) != offset(t) {
            out.push((later, offset(t), offset(later)));
        }
        t = later;
    }
    out
}

#[test]
fn chrono_tz_agrees_with_the_dates_we_assert() {
    assert_eq!(
        changes(MADRID, "2027-03-27T00:00:00Z", "2027-03-29T00:00:00Z"),
        [(utc("2027-03-28T01:00:00Z"), 3600, 7200)]
    );
    assert_eq!(
        changes(MADRID, "2026-10-24T00:00:00Z", "2026-10-26T00:00:00Z"),
        [(utc("2026-10-25T01:00:00Z"), 7200, 3600)]
    );
    // New York: 02:00 EST → 03:00 EDT, 02:00 EDT → 01:00 EST.
    assert_eq!(
        changes(NEW_YORK, "2027-03-13T00:00:00Z", "2027-03-15T00:00:00Z"),
        [(utc("2027-03-14T07:00:00Z"), -18000, -14400)]
    );
    assert_eq!(
        changes(NEW_YORK, "2026-10-31T00:00:00Z", "2026-11-02T00:00:00Z"),
        [(utc("2026-11-01T06:00:00Z"), -14400, -18000)]
    );
    // Lord Howe: 02:00 +10:30 → 02:30 +11:00, and 02:00 +11:00 → 01:30 +10:30.
    assert_eq!(
        changes(LORD_HOWE, "2026-10-03T00:00:00Z", "2026-10-05T00:00:00Z"),
        [(utc("2026-10-03T15:30:00Z"), 37800, 39600)]
    );
    assert_eq!(
        changes(LORD_HOWE, "2027-04-03T00:00:00Z", "2027-04-05T00:00:00Z"),
        [(utc("2027-04-03T15:00:00Z"), 39600, 37800)]
    );
}

#[test]
fn madrid_fixed_time_in_the_spring_gap_runs_right_after_the_change() {
    assert_eq!(
        nexts("30 2 * * *", "2027-03-28T00:00:00Z", MADRID, 2),
        ["2027-03-28T01:00:00Z", "2027-03-29T00:30:00Z"]
    );
    // Several slots in the gap collapse into one fire; 03:00 itself is a separate slot only if
    // it is a different instant, which it is not.
    assert_eq!(
        nexts("0,15,30,45 2 * * *", "2027-03-27T23:00:00Z", MADRID, 2),
        ["2027-03-28T01:00:00Z", "2027-03-29T00:00:00Z"]
    );
    assert_eq!(
        nexts("30 2,3 * * *", "2027-03-28T00:00:00Z", MADRID, 3),
        [
            "2027-03-28T01:00:00Z",
            "2027-03-28T01:30:00Z",
            "2027-03-29T00:30:00Z"
        ]
    );
}

#[test]
fn madrid_fixed_time_in_the_autumn_repeat_runs_in_the_first_pass_only() {
    assert_eq!(
        nexts("30 2 * * *", "2026-10-24T23:30:00Z", MADRID, 2),
        ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
    );
    // Asked from inside the second pass, it still waits for the next day.
    assert_eq!(
        next("30 2 * * *", "2026-10-25T01:10:00Z", MADRID).as_deref(),
        Some("2026-10-26T01:30:00Z")
    );
    assert_eq!(
        next("30 2 * * *", "2026-10-25T00:30:00Z", MADRID).as_deref(),
        Some("2026-10-26T01:30:00Z")
    );
}

#[test]
fn madrid_wildcard_skips_the_gap_and_runs_both_passes() {
    let s = sched("*/15 * * * *");
    let spring = s.fires_between(
        utc("2027-03-28T00:00:00Z"),
        utc("2027-03-28T02:00:00Z"),
        MADRID,
        100,
    );
    // 01:00–01:45 CET, then 03:00 CEST onwards: nothing with a 02 wall clock.
    let wall: Vec<String> = spring
        .iter()
        .map(|t| t.with_timezone(&MADRID).format("%H:%M").to_string())
        .collect();
    assert_eq!(
        wall,
        ["01:15", "01:30", "01:45", "03:00", "03:15", "03:30", "03:45", "04:00"]
    );

    let autumn = s.fires_between(
        utc("2026-10-24T23:59:00Z"),
        utc("2026-10-25T02:00:00Z"),
        MADRID,
        100,
    );
    let in_repeated_hour = autumn
        .iter()
        .filter(|t| t.with_timezone(&MADRID).format("%H").to_string() == "02")
        .count();
    assert_eq!(in_repeated_hour, 8);
    assert_eq!(autumn.len(), 9); // 00:00Z..02:00Z every 15 minutes
    assert!(autumn
        .windows(2)
        .all(|w| w[1] - w[0] == Duration::minutes(15)));
}

#[test]
fn madrid_wildcard_hour_fields() {
    // `* 2 * * *`: nothing on the spring day, 120 runs on the autumn day.
    let s = sched("* 2 * * *");
    let spring = s.fires_between(
        utc("2027-03-27T12:00:00Z"),
        utc("2027-03-28T12:00:00Z"),
        MADRID,
        1000,
    );
    assert!(spring.is_empty(), "{spring:?}");
    let autumn = s.fires_between(
        utc("2026-10-24T12:00:00Z"),
        utc("2026-10-25T12:00:00Z"),
        MADRID,
        1000,
    );
    assert_eq!(autumn.len(), 120);
    // @hourly: both 02:00s in autumn.
    let hourly = sched("@hourly").fires_between(
        utc("2026-10-24T23:30:00Z"),
        utc("2026-10-25T02:30:00Z"),
        MADRID,
        10,
    );
    assert_eq!(
        hourly,
        [
            utc("2026-10-25T00:00:00Z"),
            utc("2026-10-25T01:00:00Z"),
            utc("2026-10-25T02:00:00Z")
        ]
    );
}

#[test]
fn new_york_changes() {
    // Spring 2027-03-14: 02:30 does not exist, runs at 03:00 EDT (07:00Z).
    assert_eq!(
        nexts("30 2 * * *", "2027-03-13T12:00:00Z", NEW_YORK, 3),
        [
            "2027-03-14T07:00:00Z",
            "2027-03-15T06:30:00Z",
            "2027-03-16T06:30:00Z"
        ]
    );
    // Autumn 2026-11-01: 01:30 twice, first pass (EDT, 05:30Z) only.
    assert_eq!(
        nexts("30 1 * * *", "2026-10-31T12:00:00Z", NEW_YORK, 2),
        ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
    );
    // Wildcard in the repeated hour: both passes.
    assert_eq!(
        nexts("30 * * * *", "2026-11-01T05:00:00Z", NEW_YORK, 3),
        [
            "2026-11-01T05:30:00Z",
            "2026-11-01T06:30:00Z",
            "2026-11-01T07:30:00Z"
        ]
    );
}

#[test]
fn lord_howe_half_hour_changes() {
    // Forward 2026-10-04 02:00 (+10:30) → 02:30 (+11:00) at 15:30Z on the 3rd.
    assert_eq!(
        nexts("15 2 * * *", "2026-10-03T12:00:00Z", LORD_HOWE, 2),
        ["2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"]
    );
    // 02:30 itself exists on that day.
    assert_eq!(
        next("30 2 * * *", "2026-10-03T12:00:00Z", LORD_HOWE).as_deref(),
        Some("2026-10-03T15:30:00Z")
    );
    let s = sched("*/10 * * * *");
    let forward = s.fires_between(
        utc("2026-10-03T15:00:00Z"),
        utc("2026-10-03T16:00:00Z"),
        LORD_HOWE,
        100,
    );
    let wall: Vec<String> = forward
        .iter()
        .map(|t| t.with_timezone(&LORD_HOWE).format("%H:%M").to_string())
        .collect();
    assert_eq!(wall, ["01:40", "01:50", "02:30", "02:40", "02:50", "03:00"]);

    // Back 2027-04-04 02:00 (+11:00) → 01:30 (+10:30) at 15:00Z on the 3rd: 01:30–01:59 twice.
    assert_eq!(
        nexts("45 1 * * *", "2027-04-03T12:00:00Z", LORD_HOWE, 2),
        ["2027-04-03T14:45:00Z", "2027-04-04T15:15:00Z"]
    );
    let back = s.fires_between(
        utc("2027-04-03T14:20:00Z"),
        utc("2027-04-03T15:40:00Z"),
        LORD_HOWE,
        100,
    );
    let wall: Vec<String> = back
        .iter()
        .map(|t| t.with_timezone(&LORD_HOWE).format("%H:%M").to_string())
        .collect();
    assert_eq!(
        wall,
        ["01:30", "01:40", "01:50", "01:30", "01:40", "01:50", "02:00", "02:10"]
    );
}

#[test]
fn dst_notes() {
    let fixed = sched("30 2 * * *");
    assert_eq!(
        dst_note(&fixed, utc("2027-03-28T01:00:00Z"), MADRID).as_deref(),
        Some("02:30 does not exist on 2027-03-28 (clocks jump 02:00→03:00); runs right after the change")
    );
    assert_eq!(
        dst_note(&fixed, utc("2026-10-25T00:30:00Z"), MADRID).as_deref(),
        Some("02:30 occurs twice on 2026-10-25; runs in the first pass only")
    );
    assert_eq!(dst_note(&fixed, utc("2026-10-26T01:30:00Z"), MADRID), None);
    let wild = sched("*/15 * * * *");
    assert_eq!(
        dst_note(&wild, utc("2026-10-25T01:30:00Z"), MADRID).as_deref(),
        Some("02:30 occurs twice on 2026-10-25; runs in both passes")
    );
    assert_eq!(dst_note(&wild, utc("2027-03-28T01:00:00Z"), MADRID), None);
    // 03:00 exists: a job at 03:00 on the change day needs no note.
    assert_eq!(
        dst_note(&sched("0 3 * * *"), utc("2027-03-28T01:00:00Z"), MADRID),
        None
    );
    assert_eq!(
        dst_note(&sched("15 2 * * *"), utc("2026-10-03T15:30:00Z"), LORD_HOWE).as_deref(),
        Some("02:15 does not exist on 2026-10-04 (clocks jump 02:00→02:30); runs right after the change")
    );
    assert_eq!(
        dst_note(&sched("@reboot"), utc("2026-10-03T15:30:00Z"), LORD_HOWE),
        None
    );
}

// ---- properties -----------------------------------------------------------------------------

/// No regression files: they would land in `proptest-regressions/` at the crate root, outside
/// this module. A failure prints its minimal case; add it as a plain test instead.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn field_strategy(min: u32, max: u32) -> impl Strategy<Value = String> {
    let item = prop_oneof![
        Just("*".to_string()),
        (1..=(max - min + 1)).prop_map(|n| format!("*/{n}")),
        (min..=max).prop_map(|v| v.to_string()),
        (min..=max, min..=max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        (min..=max, min..=max, 1..=(max - min + 1)).prop_map(|(a, b, n)| format!(
            "{}-{}/{n}",
            a.min(b),
            a.max(b)
        )),
    ];
    proptest::collection::vec(item, 1..3).prop_map(|items| items.join(","))
}

fn five_fields() -> impl Strategy<Value = String> {
    (
        field_strategy(0, 59),
        field_strategy(0, 23),
        prop_oneof![4 => field_strategy(1, 31), 1 => Just("L".to_string())],
        field_strategy(1, 12),
        field_strategy(0, 7),
    )
        .prop_map(|(m, h, dom, mon, dow)| format!("{m} {h} {dom} {mon} {dow}"))
}

fn expression_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => five_fields(),
        1 => (field_strategy(0, 59), five_fields()).prop_map(|(s, rest)| format!("{s} {rest}")),
        1 => proptest::sample::select(vec!["@yearly", "@monthly", "@weekly", "@daily", "@hourly", "@reboot"])
            .prop_map(str::to_string),
    ]
}

fn zone_strategy() -> impl Strategy<Value = Tz> {
    proptest::sample::select(vec![
        Tz::UTC,
        MADRID,
        NEW_YORK,
        LORD_HOWE,
        Tz::Australia__Sydney,
        Tz::America__St_Johns,
        Tz::Asia__Kolkata,
    ])
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn next_after_is_strictly_increasing(
        expr in expression_strategy(),
        tz in zone_strategy(),
        // 2025-01-01 .. 2035-01-01, with DST-change days over-represented by chance alone.
        start in 1_735_689_600i64..2_051_222_400i64,
    ) {
        let schedule = Schedule::parse(&expr).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut cursor = Utc.timestamp_opt(start, 0).single().ok_or_else(|| TestCaseError::fail("bad start"))?;
        for _ in 0..6 {
            match schedule.next_after(cursor, tz) {
                Some(next) => {
                    prop_assert!(next > cursor, "{expr} in {tz}: {next} is not after {cursor}");
                    cursor = next;
                }
                None => break,
            }
        }
    }

    #[test]
    fn parse_never_panics(text in "\\PC{0,40}") {
        let _ = Schedule::parse(&text);
    }

    #[test]
    fn parse_never_panics_on_cron_like_noise(text in "[0-9*/,\\-LW#?+@a-zA-Z \\t]{0,40}") {
        let _ = Schedule::parse(&text);
    }
}

// ---- oracle ---------------------------------------------------------------------------------

/// Cronie's rule checked minute by minute: does a job fire at whole-minute instant `t`?
fn oracle_fires(schedule: &Schedule, t: DateTime<Utc>, tz: Tz) -> bool {
    use chrono::{LocalResult, Offset};
    let Some(cron) = schedule.cron.as_ref() else {
        return false;
    };
    let wall = t.with_timezone(&tz).naive_local();
    let matches = cron.matches_naive(wall);
    if !schedule.is_fixed_time() {
        return matches;
    }
    if let LocalResult::Ambiguous(first, _) = tz.from_local_datetime(&wall) {
        return matches && first.with_timezone(&Utc) == t;
    }
    let offset = |i: DateTime<Utc>| {
        tz.offset_from_utc_datetime(&i.naive_utc())
            .fix()
            .local_minus_utc()
    };
    let jump = offset(t) - offset(t - Duration::seconds(1));
    if jump > 0 {
        // A forward change: everything the skipped wall clock would have run, runs now.
        let skipped =
            (1..=jump / 60).any(|m| cron.matches_naive(wall - Duration::minutes(i64::from(m))));
        return matches || skipped;
    }
    matches
}

fn five_field_busy() -> impl Strategy<Value = String> {
    // Schedules that fire often enough for a two-day window, biased to the small hours.
    let minute = prop_oneof![
        Just("*".to_string()),
        (1u32..=30).prop_map(|n| format!("*/{n}")),
        (0u32..60).prop_map(|v| v.to_string()),
        (0u32..60, 0u32..60).prop_map(|(a, b)| format!("{},{}", a.min(b), a.max(b))),
        (0u32..30, 30u32..60, 1u32..20).prop_map(|(a, b, n)| format!("{a}-{b}/{n}")),
    ];
    let hour = prop_oneof![
        Just("*".to_string()),
        (0u32..4).prop_map(|v| v.to_string()),
        (0u32..3, 1u32..4).prop_map(|(a, n)| format!("{a}-3/{n}")),
        (1u32..4).prop_map(|n| format!("*/{n}")),
        Just("1,2,3".to_string()),
    ];
    (minute, hour).prop_map(|(m, h)| format!("{m} {h} * * *"))
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn next_after_agrees_with_a_minute_by_minute_oracle(
        expr in five_field_busy(),
        (tz, change) in proptest::sample::select(vec![
            (MADRID, "2027-03-28T01:00:00Z"),
            (MADRID, "2026-10-25T01:00:00Z"),
            (NEW_YORK, "2027-03-14T07:00:00Z"),
            (NEW_YORK, "2026-11-01T06:00:00Z"),
            (LORD_HOWE, "2026-10-03T15:30:00Z"),
            (LORD_HOWE, "2027-04-03T15:00:00Z"),
        ]),
        minutes_before in 0i64..1500,
    ) {
        let schedule = Schedule::parse(&expr).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let start = utc(change) - Duration::minutes(minutes_before);
        let mut cursor = start;
        // Every fire in the next two days, both ways.
        let end = start + Duration::days(2);
        let mut t = start + Duration::minutes(1);
        while t <= end {
            if oracle_fires(&schedule, t, tz) {
                let got = schedule.next_after(cursor, tz);
                prop_assert_eq!(got, Some(t), "{} in {} after {}", expr, tz, cursor);
                cursor = t;
            }
            t += Duration::minutes(1);
        }
        let got = schedule.next_after(cursor, tz);
        prop_assert!(got.is_none_or(|g| g > end), "{} in {}: extra fire {:?} after {}", expr, tz, got, cursor);
    }
}
