//! Plain-English descriptions of schedules ("At 03:00, every day").
//!
//! Ours rather than croner's: croner describes the normalized value lists we hand it, which
//! reads worse than the user's own ranges and steps, and knows nothing of the OR rule.

use super::parse::{Field, FieldSpec, Item};
use super::Fields;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 8] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Most explicit times listed one by one ("At 08:00, 12:00 and 18:00").
const MAX_LISTED_TIMES: usize = 6;

pub(crate) fn describe(cron: &Fields) -> String {
    let mut parts = vec![describe_time(cron)];
    let days = describe_days(cron);
    // "Every 15 minutes" needs no ", every day".
    if !(cron.hour.starts_with_star() && cron.day_of_month.is_star() && cron.day_of_week.is_star())
    {
        parts.push(days);
    }
    if !cron.month.is_star() {
        parts.push(format!("in {}", list(&cron.month, "and")));
    }
    parts.join(", ")
}

/// How one time field repeats.
enum Shape {
    /// `*`
    Every,
    /// `*/n`
    EveryN(u32),
    /// Anything else, as words.
    Listed(String),
}

fn shape(spec: &FieldSpec) -> Shape {
    match spec.items.as_slice() {
        [Item::Every { step: 1 }] => Shape::Every,
        [Item::Every { step }] => Shape::EveryN(*step),
        _ => Shape::Listed(list(spec, "and")),
    }
}

/// Only single values, no ranges or steps.
fn only_values(spec: &FieldSpec) -> bool {
    spec.items.iter().all(|item| matches!(item, Item::Value(_)))
}

fn describe_time(cron: &Fields) -> String {
    let seconds_matter = cron.second.as_ref().filter(|s| s.text != "0");
    let all_values = only_values(&cron.minute)
        && only_values(&cron.hour)
        && cron.second.as_ref().is_none_or(only_values);
    if all_values {
        let seconds = cron
            .second
            .as_ref()
            .map_or_else(|| vec![0], FieldSpec::value_list);
        let mut times = Vec::new();
        for hour in cron.hour.value_list() {
            for minute in cron.minute.value_list() {
                for second in &seconds {
                    times.push(if seconds_matter.is_some() {
                        format!("{hour:02}:{minute:02}:{second:02}")
                    } else {
                        format!("{hour:02}:{minute:02}")
                    });
                }
            }
        }
        if times.len() <= MAX_LISTED_TIMES {
            return format!("At {}", join(&times, "and"));
        }
    }

    let mut clauses = Vec::new();
    if let Some(second) = seconds_matter {
        clauses.push(match shape(second) {
            Shape::Every => "every second".to_string(),
            Shape::EveryN(n) => format!("every {n} seconds"),
            Shape::Listed(words) => format!("at second {words}"),
        });
    }
    let minute = shape(&cron.minute);
    let minute_is_every = matches!(minute, Shape::Every);
    let minute_repeats = matches!(minute, Shape::Every | Shape::EveryN(_));
    match minute {
        // "Every second" already says every minute.
        Shape::Every if !clauses.is_empty() => {}
        Shape::Every => clauses.push("every minute".to_string()),
        Shape::EveryN(n) => clauses.push(format!("every {n} minutes")),
        Shape::Listed(words) if !clauses.is_empty() => {
            clauses.push(format!("during minute {words}"));
        }
        Shape::Listed(words) => clauses.push(format!("at minute {words}")),
    }
    let joiner = if minute_is_every { "during" } else { "of" };
    match shape(&cron.hour) {
        Shape::Every if minute_repeats => {}
        Shape::Every => clauses.push(format!("{joiner} every hour")),
        Shape::EveryN(n) => clauses.push(format!("{joiner} every {} hour", ordinal(n))),
        Shape::Listed(words) => clauses.push(format!("{joiner} hour {words}")),
    }
    capitalize(&clauses.join(" "))
}

fn describe_days(cron: &Fields) -> String {
    let dom = &cron.day_of_month;
    let dow = &cron.day_of_week;
    let dom_words = || {
        if let [Item::Every { step }] = dom.items.as_slice() {
            return format!("every {step} days of the month from the 1st");
        }
        match (dom.last, dom.items.len()) {
            (true, 1) => "the last day of the month".to_string(),
            (true, _) => format!("day {} and the last day of the month", list(dom, "and")),
            (false, _) => format!("day {} of the month", list(dom, "and")),
        }
    };
    match (dom.is_star(), dow.is_star()) {
        (true, true) => "every day".to_string(),
        (false, true) => format!("on {}", dom_words()),
        (true, false) => format!("on {}", list(dow, "and")),
        (false, false) if dom.starts_with_star() || dow.starts_with_star() => {
            // Cronie's AND rule: a `*`-led day field narrows the other one.
            let weekdays: Vec<String> = dow
                .value_list()
                .iter()
                .map(|d| name(Field::DayOfWeek, *d))
                .collect();
            format!("on {}, if it is a {}", dom_words(), join(&weekdays, "or"))
        }
        (false, false) => format!("on {} and on every {}", dom_words(), list(dow, "and")),
    }
}

/// A field's items as words: "1, 15 and the last", "Monday to Friday", "every 2 from 1 to 9".
fn list(spec: &FieldSpec, conjunction: &str) -> String {
    let words: Vec<String> = spec
        .items
        .iter()
        .filter(|item| **item != Item::Last)
        .map(|item| match *item {
            Item::Every { step } => every(spec, step),
            Item::Value(v) => name(spec.field, v),
            Item::Range { from, to, step: 1 } => {
                format!("{} to {}", name(spec.field, from), name(spec.field, to))
            }
            Item::Range { from, to, step } => format!(
                "every {step} from {} to {}",
                name(spec.field, from),
                name(spec.field, to)
            ),
            Item::Last => String::new(),
        })
        .collect();
    join(&words, conjunction)
}

/// `*` or `*/n` inside a list: weekdays and months by name, other fields as "every 15th minute".
fn every(spec: &FieldSpec, step: u32) -> String {
    let (min, max) = spec.field.bounds();
    match spec.field {
        Field::DayOfWeek | Field::Month => {
            let last = if spec.field == Field::DayOfWeek {
                6
            } else {
                max
            };
            let names: Vec<String> = (min..=last)
                .step_by(step as usize)
                .map(|v| name(spec.field, v))
                .collect();
            join(&names, "and")
        }
        _ => {
            let unit = match spec.field {
                Field::Second => "second",
                Field::Minute => "minute",
                Field::Hour => "hour",
                _ => "day",
            };
            if step == 1 {
                format!("every {unit}")
            } else {
                format!("every {} {unit}", ordinal(step))
            }
        }
    }
}

/// 1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, …
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn name(field: Field, value: u32) -> String {
    let index = value as usize;
    match field {
        Field::Month => MONTHS.get(index.wrapping_sub(1)).map(ToString::to_string),
        Field::DayOfWeek => WEEKDAYS.get(index).map(ToString::to_string),
        _ => None,
    }
    .unwrap_or_else(|| value.to_string())
}

fn join(words: &[String], conjunction: &str) -> String {
    match words {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} {conjunction} {last}", init.join(", ")),
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use crate::schedule::Schedule;

    fn describe(expr: &str) -> String {
        Schedule::parse(expr).expect("valid schedule").describe()
    }

    #[test]
    fn describes_common_schedules() {
        assert_eq!(describe("0 3 * * *"), "At 03:00, every day");
        assert_eq!(describe("@daily"), "At 00:00, every day");
        assert_eq!(describe("@reboot"), "when the runner starts");
        assert_eq!(describe("*/15 * * * *"), "Every 15 minutes");
        assert_eq!(describe("* * * * *"), "Every minute");
        assert_eq!(describe("@hourly"), "At minute 0 of every hour");
        assert_eq!(
            describe("30 8 * * mon-fri"),
            "At 08:30, on Monday to Friday"
        );
        assert_eq!(
            describe("0 8,12,18 * * *"),
            "At 08:00, 12:00 and 18:00, every day"
        );
        assert_eq!(
            describe("0 0 1 1 *"),
            "At 00:00, on day 1 of the month, in January"
        );
        assert_eq!(
            describe("0 0 L * *"),
            "At 00:00, on the last day of the month"
        );
        assert_eq!(
            describe("0 0 1,15 * 5"),
            "At 00:00, on day 1 and 15 of the month and on every Friday"
        );
        assert_eq!(
            describe("0 0 */2 * 1"),
            "At 00:00, on every 2 days of the month from the 1st, if it is a Monday"
        );
        assert_eq!(describe("*/10 * * * * *"), "Every 10 seconds");
        assert_eq!(describe("30 0 3 * * *"), "At 03:00:30, every day");
        assert_eq!(
            describe("* 2 * * *"),
            "Every minute during hour 2, every day"
        );
        assert_eq!(
            describe("0 9-17 * * *"),
            "At minute 0 of hour 9 to 17, every day"
        );
        assert_eq!(describe("0 */2 * * *"), "At minute 0 of every 2nd hour");
        assert_eq!(
            describe("0 0 * * */2"),
            "At 00:00, on Sunday, Tuesday, Thursday and Saturday"
        );
        assert_eq!(
            describe("0 0 1 */3 *"),
            "At 00:00, on day 1 of the month, in January, April, July and October"
        );
        assert_eq!(
            describe("*/10 30 2 * * *"),
            "Every 10 seconds during minute 30 of hour 2, every day"
        );
        assert_eq!(
            describe("0 12 1 * 1-5"),
            "At 12:00, on day 1 of the month and on every Monday to Friday"
        );
    }

    #[test]
    fn a_job_schedule_with_h_is_described_as_resolved_and_shown_as_written() {
        let s = Schedule::parse_for("H 3 * * mon-fri", "default", "backup").unwrap();
        assert_eq!(s.as_str(), "H 3 * * mon-fri");
        let minute = s.next_after(chrono::Utc::now(), chrono_tz::UTC).unwrap();
        let minute = chrono::Timelike::minute(&minute);
        assert_eq!(
            s.describe(),
            format!("At 03:{minute:02}, on Monday to Friday")
        );
        assert!(s.is_fixed_time());
        let written = Schedule::parse_for("*/5 * * * *", "default", "backup").unwrap();
        assert_eq!(written.describe(), "Every 5 minutes");
    }
}
