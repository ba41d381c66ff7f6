//! The text of a `missed` row: how many slots, from when to when, and why (the calendar's
//! [`super::calendar::Fire::Missed`]). On a shared database, slots the fleet's other runners
//! ran are not counted as missed; a gap they ran whole gets no row at all.

use chrono::{DateTime, Utc};

use super::calendar::MISSED_CAP;

/// `missed` of the gap's `slots` slots (from `first` to `last`) were run by no one: the row's
/// text. `why` says why, and what became of the latest slot.
pub fn text(
    missed: usize,
    slots: usize,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    why: &str,
) -> String {
    let (first, last) = (crate::output::utc(first), crate::output::utc(last));
    if missed < slots {
        return format!(
            "missed {missed} of the {slots} slots from {first} to {last} (the fleet's other runners ran the rest): {why}"
        );
    }
    let capped = if slots >= MISSED_CAP { "at least " } else { "" };
    let plural = if slots == 1 { "" } else { "s" };
    format!("missed {capped}{slots} slot{plural} from {first} to {last}: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, h, 0, 0).unwrap()
    }

    #[test]
    fn a_missed_row_counts_the_slots_no_one_ran() {
        assert_eq!(
            text(2, 2, t(1), t(2), "the runner was not running"),
            "missed 2 slots from 2026-03-01T01:00:00Z to 2026-03-01T02:00:00Z: the runner was not running"
        );
        assert_eq!(
            text(1, 1, t(1), t(1), "the runner was busy or blocked; ran the latest once"),
            "missed 1 slot from 2026-03-01T01:00:00Z to 2026-03-01T01:00:00Z: the runner was busy or blocked; ran the latest once"
        );
        assert_eq!(
            text(3, 44, t(1), t(2), "the runner was busy or blocked"),
            "missed 3 of the 44 slots from 2026-03-01T01:00:00Z to 2026-03-01T02:00:00Z (the fleet's other runners ran the rest): the runner was busy or blocked"
        );
        assert!(text(MISSED_CAP, MISSED_CAP, t(1), t(2), "x")
            .starts_with("missed at least 100000 slots"));
    }
}
