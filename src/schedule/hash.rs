//! `H` in a schedule, as Jenkins has it: a value derived from a hash of the job's system and
//! name, so a hundred jobs written `H 3 * * *` each run at 03:MM every day, but each at its own
//! minute, and a fleet's jobs do not all start in the same second.
//!
//! Forms, in any time field: `H` (a value in the field's range), `H(a-b)` (in a-b), `H/n` (every n,
//! from an offset below n), `H(a-b)/n` (every n within a-b, from an offset). Day-of-month takes
//! `H` from 1-28 (every month has those days), day-of-week from 0-6. The value depends only on
//! the system, the name and the field, so it is the same on every host and across restarts, and
//! it changes only when the job is renamed.

use std::borrow::Cow;

use super::parse::Field;
use super::ScheduleError;

/// The expression with each `H` replaced for the job `seed` (its `system/name`); unchanged
/// (borrowed) when it has none.
pub fn resolve<'e>(expr: &'e str, seed: &str) -> Result<Cow<'e, str>, ScheduleError> {
    let source = expr.trim();
    if !source.contains('H') {
        return Ok(Cow::Borrowed(expr));
    }
    let invalid = |reason: String| ScheduleError::Invalid {
        expr: source.to_string(),
        reason,
    };
    if source.starts_with('@') {
        return Err(invalid("H cannot be used with a macro".into()));
    }
    let fields: Vec<&str> = source.split_whitespace().collect();
    let kinds: &[Field] = match fields.len() {
        5 => &[
            Field::Minute,
            Field::Hour,
            Field::DayOfMonth,
            Field::Month,
            Field::DayOfWeek,
        ],
        6 => &[
            Field::Second,
            Field::Minute,
            Field::Hour,
            Field::DayOfMonth,
            Field::Month,
            Field::DayOfWeek,
        ],
        // The parser says what is wrong with the field count.
        _ => return Ok(Cow::Borrowed(expr)),
    };
    let mut out = Vec::with_capacity(fields.len());
    for (i, (text, field)) in fields.iter().zip(kinds).enumerate() {
        if !text.contains('H') {
            out.push(text.to_string());
            continue;
        }
        let h = hash(seed, i as u8);
        let items: Result<Vec<String>, String> = text
            .split(',')
            .map(|item| item_for(item, *field, h))
            .collect();
        match items {
            Ok(items) => out.push(items.join(",")),
            Err(why) => return Err(invalid(format!("{field} field {text:?}: {why}"))),
        }
    }
    Ok(Cow::Owned(out.join(" ")))
}

/// The range `H` picks from in `field`.
fn hash_range(field: Field) -> (u32, u32) {
    match field {
        Field::DayOfMonth => (1, 28),
        Field::DayOfWeek => (0, 6),
        other => other.bounds(),
    }
}

/// One comma-separated item: `H`, `H(a-b)`, `H/n`, `H(a-b)/n`, or an item without `H`.
fn item_for(item: &str, field: Field, h: u64) -> Result<String, String> {
    let Some(rest) = item.strip_prefix('H') else {
        if item.contains('H') {
            return Err(format!(
                "{item:?}: H must start the item (H, H(a-b), H/n, H(a-b)/n)"
            ));
        }
        return Ok(item.to_string());
    };
    let (range, step) = match rest.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (rest, None),
    };
    let number = |s: &str| {
        s.parse::<u32>()
            .map_err(|_| format!("{item:?}: {s:?} is not a number"))
    };
    let (lo, hi) = if range.is_empty() {
        hash_range(field)
    } else {
        let inner = range
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| format!("{item:?}: write a range as H(a-b)"))?;
        let (a, b) = inner
            .split_once('-')
            .ok_or_else(|| format!("{item:?}: write a range as H(a-b)"))?;
        let (a, b) = (number(a)?, number(b)?);
        let (min, max) = field.bounds();
        if a > b || a < min || b > max {
            return Err(format!(
                "{item:?}: the range must be within {min}-{max}, smaller value first"
            ));
        }
        (a, b)
    };
    let span = u64::from(hi - lo + 1);
    match step {
        None => Ok((u64::from(lo) + h % span).to_string()),
        Some(step) => {
            let n = number(step)?;
            if n == 0 || u64::from(n) > span {
                return Err(format!("{item:?}: the step must be 1 to {span}"));
            }
            let start = u64::from(lo) + h % u64::from(n);
            Ok(format!("{start}-{hi}/{n}"))
        }
    }
}

/// FNV-1a of the seed and the field's position: stable across builds, hosts and releases (not
/// std's randomly keyed hasher), then mixed so nearby names spread.
fn hash(seed: &str, field: u8) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes().chain([0xff, field]) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finalizer.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A delay in `0..=max` seconds for the slot at `slot` (seconds since the epoch) of job `seed`:
/// the same on every host, so runners of a fleet agree on when a jittered slot fires.
pub fn jitter(seed: &str, slot: i64, max: u64) -> u64 {
    if max == 0 {
        return 0;
    }
    let mixed = hash(seed, 0xee) ^ (slot as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut z = mixed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % (max + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h_becomes_a_value_of_the_field_that_depends_only_on_the_job() {
        let a = resolve("H 3 * * *", "default/backup").unwrap();
        let b = resolve("H 3 * * *", "default/backup").unwrap();
        assert_eq!(a, b, "stable");
        let fields: Vec<&str> = a.split(' ').collect();
        let minute: u32 = fields[0].parse().unwrap();
        assert!(minute < 60);
        assert_eq!(&fields[1..], ["3", "*", "*", "*"]);
        // No H: the text as given, borrowed.
        assert!(matches!(
            resolve("5 3 * * *", "x").unwrap(),
            Cow::Borrowed("5 3 * * *")
        ));
    }

    #[test]
    fn a_hundred_jobs_spread_over_the_hour() {
        let minutes: std::collections::BTreeSet<String> = (0..100)
            .map(|i| {
                let r = resolve("H * * * *", &format!("default/job-{i}")).unwrap();
                r.split(' ').next().unwrap().to_string()
            })
            .collect();
        // 100 draws from 60 values: a fair hash covers most of them (expected ~49).
        assert!(
            minutes.len() >= 40,
            "only {} distinct minutes",
            minutes.len()
        );
    }

    #[test]
    fn ranges_and_steps_stay_within_what_was_written() {
        for i in 0..200 {
            let seed = format!("s/{i}");
            let r = resolve("H(10-19)/5 H(1-5) H * H", &seed).unwrap();
            let f: Vec<&str> = r.split(' ').collect();
            let (start, rest) = f[0].split_once('-').unwrap();
            let start: u32 = start.parse().unwrap();
            assert!((10..15).contains(&start), "{r}");
            assert_eq!(rest, "19/5");
            let hour: u32 = f[1].parse().unwrap();
            assert!((1..=5).contains(&hour), "{r}");
            let dom: u32 = f[2].parse().unwrap();
            assert!((1..=28).contains(&dom), "{r}");
            assert_eq!(f[3], "*");
            let dow: u32 = f[4].parse().unwrap();
            assert!(dow <= 6, "{r}");
        }
        let r = resolve("H/15 * * * *", "default/x").unwrap();
        let first = r.split(' ').next().unwrap();
        let (start, rest) = first.split_once('-').unwrap();
        assert!(start.parse::<u32>().unwrap() < 15);
        assert_eq!(rest, "59/15");
        // Six fields: the seconds field too.
        let six = resolve("H H * * * *", "default/x").unwrap();
        assert_eq!(six.split(' ').count(), 6);
        assert!(!six.contains('H'));
    }

    #[test]
    fn bad_h_is_refused_naming_the_field() {
        let err = |e: &str| resolve(e, "s/n").unwrap_err().to_string();
        assert!(
            err("H(50-70) * * * *").contains("minute field"),
            "{}",
            err("H(50-70) * * * *")
        );
        assert!(err("H(9-3) * * * *").contains("smaller value first"));
        assert!(err("H/0 * * * *").contains("the step must be 1 to 60"));
        assert!(err("5H * * * *").contains("H must start the item"));
        assert!(err("H(1-5 * * * *").contains("H(a-b)"));
        assert!(err("@Hourly").contains("macro"));
    }

    #[test]
    fn jitter_is_stable_per_slot_and_within_its_bound() {
        let a = jitter("default/x", 1_700_000_000, 300);
        assert_eq!(a, jitter("default/x", 1_700_000_000, 300));
        assert!(a <= 300);
        assert_eq!(jitter("default/x", 1, 0), 0);
        let spread: std::collections::BTreeSet<u64> = (0..100)
            .map(|i| jitter("default/x", 1_700_000_000 + i * 60, 300))
            .collect();
        assert!(spread.len() > 50, "{}", spread.len());
    }
}
