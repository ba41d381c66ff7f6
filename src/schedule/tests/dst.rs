//! Daylight saving changes in Madrid, New York and Lord Howe (30-minute shifts).

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;

use super::{next, nexts, sched, utc, LORD_HOWE, MADRID, NEW_YORK};
use crate::schedule::dst_note;

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
