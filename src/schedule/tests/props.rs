//! Property tests: monotonic `next_after`, a minute-by-minute cronie oracle, a panic-free parser.

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::{utc, LORD_HOWE, MADRID, NEW_YORK};
use crate::schedule::Schedule;

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
        // 1900 .. 2100: historic zone rules included.
        start in -2_208_988_800i64..4_102_444_800i64,
    ) {
        let schedule = parsed(&expr)?;
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

    /// Valid iff it fires within the bound: every schedule that parses has a next fire from any
    /// instant, however rare its day (a month-day on one weekday: day-of-week `*/7`).
    #[test]
    fn every_valid_schedule_fires_from_any_instant(
        expr in prop_oneof![
            2 => expression_strategy(),
            1 => (field_strategy(1, 31), field_strategy(1, 12), 1u32..=7).prop_map(|(dom, mon, n)| {
                format!("0 0 {dom} {mon} */{n}")
            }),
            1 => (1u32..=12, 0u32..=6).prop_map(|(mon, dow)| format!("0 12 */28 {mon} {dow}")),
        ],
        tz in zone_strategy(),
        // 1900 .. 4800.
        start in -2_208_988_800i64..89_790_000_000i64,
    ) {
        let schedule = parsed(&expr)?;
        let start = Utc.timestamp_opt(start, 0).single().ok_or_else(|| TestCaseError::fail("bad start"))?;
        if !schedule.is_reboot() {
            let next = schedule.next_after(start, tz);
            prop_assert!(next.is_some(), "{expr} in {tz}: nothing after {start}");
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

/// A generated expression, parsed; one that never fires (`0 0 30 2 *`) is refused by design and
/// skipped here.
fn parsed(expr: &str) -> Result<Schedule, TestCaseError> {
    match Schedule::parse(expr) {
        Ok(s) => Ok(s),
        Err(e) if e.to_string().contains("never fires") => {
            Err(TestCaseError::reject(e.to_string()))
        }
        Err(e) => Err(TestCaseError::fail(e.to_string())),
    }
}

// ---- oracle ---------------------------------------------------------------------------------

/// Cronie's rule checked minute by minute: does a job fire at whole-minute instant `t`?
fn oracle_fires(schedule: &Schedule, t: DateTime<Utc>, tz: Tz) -> bool {
    use chrono::{LocalResult, Offset};
    let Some(cron) = schedule.cron.as_ref().and_then(|c| c.matcher()) else {
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

#[test]
fn extreme_instants_do_not_panic() {
    let extremes = [
        DateTime::<Utc>::MIN_UTC,
        DateTime::<Utc>::MAX_UTC,
        utc("0001-01-01T00:00:00Z"),
        utc("4999-12-31T23:00:00Z"),
        utc("9999-12-31T23:59:59Z"),
    ];
    for expr in [
        "* * * * *",
        "30 2 * * *",
        "0 0 29 2 *",
        "*/10 * * * * *",
        "@reboot",
    ] {
        let schedule = Schedule::parse(expr).expect("valid");
        for tz in [Tz::UTC, MADRID, Tz::Pacific__Kiritimati, Tz::Etc__GMTPlus12] {
            for instant in extremes {
                let _ = schedule.next_after(instant, tz);
                let _ = schedule.fires_between(instant, DateTime::<Utc>::MAX_UTC, tz, 3);
                let _ = crate::schedule::dst_note(&schedule, instant, tz);
            }
        }
    }
}
