//! From wall-clock matches to instants, the way cronie runs jobs across DST changes.
//!
//! Croner finds the wall-clock (naive) times that match a pattern; this module alone decides
//! which real instants those are. Croner's own zone handling is not used.
//!
//! - Fixed-time jobs (minute and hour fields both without a leading `*`): a wall-clock time
//!   skipped by a forward change runs once, at the instant of the change (several skipped slots
//!   collapse into that one fire); a repeated wall-clock time runs in the first pass only.
//! - Wildcard jobs: every real instant whose wall-clock time matches, so nothing in a skipped
//!   hour and both passes of a repeated one.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

use super::{Matcher, Schedule};

/// How far ahead `next_after` looks before giving up: the longest wait between two fires of any
/// schedule, so giving up means "never" and a schedule is valid iff it fires within it.
///
/// Fires are found by croner, whatever their distance; this bound only decides when a match
/// comes too late to count, so it costs nothing in the common case. The longest wait is for a
/// day restricted by both day fields (one starting with `*`, so both must match): a month-day on
/// one weekday. Over the Gregorian calendar's 400-year cycle (146,097 days, a whole number of
/// weeks, so the cycle repeats weekdays too) the longest gaps are (`schedule::tests`
/// recomputes them day by day):
/// - Feb 29 on a given weekday: 14,609 days (40 years less a day), across a skipped century
///   leap year, e.g. a Sunday 2088-02-29 → 2128-02-29. Feb 29 alone: 2,921 days (2096 → 2104).
/// - any other month-day (or `L`) on a given weekday: 4,382 days (12 years), across 2100.
///
/// Two days more cover the fires' time of day and a change of UTC offset between the two.
pub(crate) const HORIZON_DAYS: i64 = LONGEST_GAP_DAYS + 2;

/// The longest gap between two dates of the same (month, day or last day, weekday), in days.
pub(crate) const LONGEST_GAP_DAYS: i64 = 14_609;

/// Bound on loop turns in one search; each turn moves past at least one match or one offset
/// change, so real schedules need a handful.
const MAX_TURNS: usize = 10_000;

/// Distance between offset samples when looking for a change; zones never change twice within it.
const SAMPLE_HOURS: i64 = 12;

/// The UTC offset in force at `instant`, in seconds east of UTC.
fn offset_at(tz: Tz, instant: DateTime<Utc>) -> i32 {
    tz.offset_from_utc_datetime(&instant.naive_utc())
        .fix()
        .local_minus_utc()
}

fn seconds(n: i32) -> Duration {
    Duration::seconds(i64::from(n))
}

/// The wall-clock time `naive` at a fixed `offset`, as an instant.
fn at_offset(naive: NaiveDateTime, offset: i32) -> DateTime<Utc> {
    (naive - seconds(offset)).and_utc()
}

/// Instants the search handles: croner's calendar ends in year 5000, and keeping well inside
/// chrono's range lets the arithmetic below stay unchecked.
fn searchable(instant: DateTime<Utc>) -> bool {
    (2..=4900).contains(&instant.year())
}

fn floor_second(instant: DateTime<Utc>) -> DateTime<Utc> {
    instant.with_nanosecond(0).unwrap_or(instant)
}

/// The first instant in `(lo, hi]` whose offset differs from `lo`'s, given that `hi`'s does.
fn first_change(tz: Tz, lo: DateTime<Utc>, hi: DateTime<Utc>) -> DateTime<Utc> {
    let base = offset_at(tz, lo);
    let (mut lo, mut hi) = (lo, hi);
    // Invariant: offset(lo) == base, offset(hi) != base.
    while hi - lo > Duration::seconds(1) {
        let mid = lo + (hi - lo) / 2;
        let mid = floor_second(mid);
        if offset_at(tz, mid) == base {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// The first offset change in `(from, to]`, if any.
fn change_within(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let base = offset_at(tz, from);
    let mut previous = from;
    while previous < to {
        let sample = (previous + Duration::hours(SAMPLE_HOURS)).min(to);
        if offset_at(tz, sample) != base {
            return Some(first_change(tz, previous, sample));
        }
        previous = sample;
    }
    None
}

/// The offset change that makes wall-clock time `naive` skipped or repeated, found around it.
/// `None` if the offsets either side of `naive` agree (no change there).
fn change_around(tz: Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    // Offsets lie within -12h..+14h, so the change lies within this window.
    let lo = naive.and_utc() - Duration::hours(15);
    let hi = naive.and_utc() + Duration::hours(13);
    (offset_at(tz, lo) != offset_at(tz, hi)).then(|| first_change(tz, lo, hi))
}

/// Where a matching wall-clock time lands for a fixed-time job: the unique instant, the first
/// of two, or the instant of the change that skipped it.
fn fixed_instant(tz: Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        LocalResult::None => change_around(tz, naive),
    }
}

pub(crate) fn next_fixed(cron: &Matcher, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
    // Fire times are whole seconds: the first one after `after` is the first one after its
    // second. For a fixed-time job the mapping from wall clock to instant never goes backwards,
    // so walking the wall clock from `after`'s own finds every candidate in order.
    if !searchable(after) {
        return None;
    }
    let after = floor_second(after);
    let horizon = after + Duration::days(HORIZON_DAYS);
    let mut wall = after.with_timezone(&tz).naive_local();
    for _ in 0..MAX_TURNS {
        let naive = cron.next_naive(wall, false)?;
        let instant = fixed_instant(tz, naive)?;
        if instant > horizon {
            return None;
        }
        if instant > after {
            return Some(instant);
        }
        // Only the first pass of a repeated time runs, and `after` is already in the second
        // pass: jump to the end of the repetition instead of walking it slot by slot.
        wall = match tz.from_local_datetime(&naive) {
            LocalResult::Ambiguous(first, second) => {
                let change =
                    first_change(tz, first.with_timezone(&Utc), second.with_timezone(&Utc));
                // Wall clock just before the change, in the old offset: the repetition's end.
                let end =
                    change.naive_utc() + seconds(offset_at(tz, change - Duration::seconds(1)));
                (end - Duration::seconds(1)).max(naive)
            }
            _ => naive,
        };
    }
    None
}

pub(crate) fn next_wildcard(cron: &Matcher, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
    // Walk stretches of constant offset: within one, wall clock and instant move together, so
    // croner's next wall-clock match is the next instant unless an offset change comes first.
    // Then start again at the change, whose wall clock may have gone back (a repeated hour).
    if !searchable(after) {
        return None;
    }
    let after = floor_second(after);
    let horizon = after + Duration::days(HORIZON_DAYS);
    let mut from = after;
    let mut inclusive = false;
    for _ in 0..MAX_TURNS {
        let offset = offset_at(tz, from);
        let wall = from.naive_utc() + seconds(offset);
        let naive = cron.next_naive(wall, inclusive)?;
        let candidate = at_offset(naive, offset);
        if candidate > horizon {
            return None;
        }
        match change_within(tz, from, candidate) {
            None => return Some(candidate),
            Some(change) => {
                from = change;
                inclusive = true;
            }
        }
    }
    None
}

/// A note when `instant` (a fire time of `schedule`) falls on a DST change in `tz`.
///
/// Fixed-time jobs: "02:30 does not exist on 2027-03-28 (clocks jump 02:00→03:00); runs right
/// after the change", or "02:30 occurs twice on 2026-10-25; runs in the first pass only".
/// Wildcard jobs in a repeated hour: "…; runs in both passes". `None` otherwise.
pub fn dst_note(schedule: &Schedule, instant: DateTime<Utc>, tz: Tz) -> Option<String> {
    let cron = schedule.cron.as_ref()?.matcher()?;
    if !searchable(instant) {
        return None;
    }
    let instant = floor_second(instant);
    let wall = instant.with_timezone(&tz).naive_local();
    let clock = |t: NaiveDateTime| {
        if schedule.has_seconds() && t.second() != 0 {
            t.format("%H:%M:%S").to_string()
        } else {
            t.format("%H:%M").to_string()
        }
    };

    if let LocalResult::Ambiguous(..) = tz.from_local_datetime(&wall) {
        if !cron.matches_naive(wall) {
            return None;
        }
        let passes = if schedule.is_fixed_time() {
            "runs in the first pass only"
        } else {
            "runs in both passes"
        };
        return Some(format!(
            "{} occurs twice on {}; {passes}",
            clock(wall),
            wall.format("%Y-%m-%d")
        ));
    }

    if !schedule.is_fixed_time() {
        return None;
    }
    let before = offset_at(tz, instant - Duration::seconds(1));
    let now = offset_at(tz, instant);
    if now <= before {
        return None;
    }
    // `instant` is a forward change: wall clock jumped from `gap_start` to `wall`.
    let gap_start = wall - seconds(now - before);
    let mut skipped = Vec::new();
    let mut cursor = gap_start;
    let mut inclusive = true;
    while let Some(naive) = cron.next_naive(cursor, inclusive) {
        if naive >= wall {
            break;
        }
        skipped.push(naive);
        cursor = naive;
        inclusive = false;
    }
    let (first, rest) = skipped.split_first()?;
    let what = match rest.len() {
        0 => format!("{} does not exist", clock(*first)),
        1 => format!("{} and {} do not exist", clock(*first), clock(rest[0])),
        n => format!("{} and {n} later times do not exist", clock(*first)),
    };
    Some(format!(
        "{what} on {} (clocks jump {}→{}); runs right after the change",
        wall.format("%Y-%m-%d"),
        gap_start.format("%H:%M"),
        wall.format("%H:%M")
    ))
}
