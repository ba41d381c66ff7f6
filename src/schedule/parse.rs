//! Our own tokenizer for crontab time fields.
//!
//! Croner accepts a superset of crontab syntax (`#`, `W`, `?`, `+`, `a/n`, a year field), and its
//! messages name neither the field nor what would have been accepted. So every field is checked
//! here first, with cronie's rules, and croner only ever sees a normalized pattern of plain value
//! lists.

use std::fmt;

/// One time field of a crontab line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Field {
    /// The name users see in messages.
    pub fn name(self) -> &'static str {
        match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        }
    }

    /// Smallest and largest value a user may write.
    pub(crate) fn bounds(self) -> (u32, u32) {
        match self {
            Field::Second | Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (0, 7),
        }
    }

    fn names(self) -> Option<(&'static [&'static str], u32)> {
        match self {
            Field::Month => Some((&MONTH_NAMES, 1)),
            Field::DayOfWeek => Some((&WEEKDAY_NAMES, 0)),
            _ => None,
        }
    }

    fn range_text(self) -> String {
        let (min, max) = self.bounds();
        match self {
            Field::Month => format!("{min}-{max}, or jan-dec"),
            Field::DayOfWeek => format!("{min}-{max} with 0 and 7 both Sunday, or sun-sat"),
            _ => format!("{min}-{max}"),
        }
    }

    /// What a field accepts, for messages.
    fn accepted(self) -> String {
        let last = if self == Field::DayOfMonth {
            ", L for the last day of the month"
        } else {
            ""
        };
        format!(
            "accepted: values {}, *, lists a,b, ranges a-b, steps */n and a-b/n{last}",
            self.range_text()
        )
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong with one field; `token` is the offending piece of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldProblem {
    EmptyItem,
    NotAValue { token: String },
    OutOfRange { token: String },
    Reversed { token: String },
    ZeroStep { token: String },
    StepTooLarge { token: String },
    BareStep { token: String },
    Unsupported { token: String, what: &'static str },
}

impl FieldProblem {
    /// The message after `invalid schedule "…": `.
    pub(crate) fn render(&self, field: Field, text: &str) -> String {
        let subject = |token: &str| {
            if token == text {
                format!("{field} field {text:?}")
            } else {
                format!("{field} field {text:?}: {token:?}")
            }
        };
        match self {
            FieldProblem::EmptyItem => {
                format!(
                    "{field} field {text:?} has an empty list item ({})",
                    field.accepted()
                )
            }
            FieldProblem::NotAValue { token } => {
                format!(
                    "{} is not a valid value ({})",
                    subject(token),
                    field.accepted()
                )
            }
            FieldProblem::OutOfRange { token } => {
                format!(
                    "{} is out of range ({})",
                    subject(token),
                    field.range_text()
                )
            }
            FieldProblem::Reversed { token } => format!(
                "{} is a reversed range; write the smaller value first, as in a-b",
                subject(token)
            ),
            FieldProblem::ZeroStep { token } => {
                format!(
                    "{} has a step of 0; a step must be at least 1",
                    subject(token)
                )
            }
            FieldProblem::StepTooLarge { token } => {
                let (min, max) = field.bounds();
                format!(
                    "{} has a step larger than the field allows (at most {})",
                    subject(token),
                    max + 1 - min
                )
            }
            FieldProblem::BareStep { token } => format!(
                "{} uses a/n, which cron implementations read differently; use a-b/n or */n",
                subject(token)
            ),
            FieldProblem::Unsupported { token, what } => format!(
                "{} uses {what}, which crontab does not support ({})",
                subject(token),
                field.accepted()
            ),
        }
    }
}

/// One comma-separated piece of a field, as written (values already resolved from names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item {
    /// `*` or `*/step`.
    Every { step: u32 },
    /// A single value.
    Value(u32),
    /// `from-to` or `from-to/step`.
    Range { from: u32, to: u32, step: u32 },
    /// `L` in day-of-month: the last day of the month.
    Last,
}

/// A parsed, checked field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldSpec {
    pub field: Field,
    pub text: String,
    pub items: Vec<Item>,
    /// Bit `v` set when value `v` matches; day-of-week 7 is folded into 0.
    pub values: u64,
    /// Day-of-month `L` was given.
    pub last: bool,
}

impl FieldSpec {
    /// The field starts with `*` (`*`, `*/n`, `*,5`): cronie's MIN_STAR / HR_STAR / DOM_STAR /
    /// DOW_STAR flags.
    pub fn starts_with_star(&self) -> bool {
        self.text.starts_with('*')
    }

    pub fn is_star(&self) -> bool {
        self.text == "*"
    }

    pub fn contains(&self, value: u32) -> bool {
        value < 64 && self.values & (1 << value) != 0
    }

    pub fn value_list(&self) -> Vec<u32> {
        (0..64).filter(|v| self.contains(*v)).collect()
    }

    /// The field as croner should see it: `*` or a plain list of values.
    pub fn normalized(&self) -> String {
        if self.is_star() {
            return "*".to_string();
        }
        let mut parts: Vec<String> = self.value_list().iter().map(u32::to_string).collect();
        if self.last {
            parts.push("L".to_string());
        }
        parts.join(",")
    }
}

/// Parses one field. `text` is never empty (fields come from splitting on whitespace).
pub(crate) fn parse_field(field: Field, text: &str) -> Result<FieldSpec, FieldProblem> {
    let mut spec = FieldSpec {
        field,
        text: text.to_string(),
        items: Vec::new(),
        values: 0,
        last: false,
    };
    for token in text.split(',') {
        if token.is_empty() {
            return Err(FieldProblem::EmptyItem);
        }
        let item = parse_item(field, token)?;
        let (min, max) = field.bounds();
        match item {
            Item::Every { step } => set_range(&mut spec, min, max, step),
            Item::Value(v) => set_range(&mut spec, v, v, 1),
            Item::Range { from, to, step } => set_range(&mut spec, from, to, step),
            Item::Last => spec.last = true,
        }
        spec.items.push(item);
    }
    Ok(spec)
}

fn set_range(spec: &mut FieldSpec, from: u32, to: u32, step: u32) {
    let mut v = from;
    while v <= to {
        let bit = if spec.field == Field::DayOfWeek && v == 7 {
            0
        } else {
            v
        };
        spec.values |= 1 << bit;
        v += step;
    }
}

fn parse_item(field: Field, token: &str) -> Result<Item, FieldProblem> {
    let owned = || token.to_string();
    if let Some(problem) = unsupported(field, token) {
        return Err(problem);
    }
    if token.eq_ignore_ascii_case("l") {
        return Ok(Item::Last);
    }
    let (base, step) = match token.split_once('/') {
        Some((base, step_text)) => (base, Some(parse_step(field, token, step_text)?)),
        None => (token, None),
    };
    if base == "*" {
        return Ok(Item::Every {
            step: step.unwrap_or(1),
        });
    }
    if let Some((from_text, to_text)) = base.split_once('-') {
        let from = parse_value(field, token, from_text)?;
        let mut to = parse_value(field, token, to_text)?;
        // `fri-sun`: a range may end on Sunday by name, read as 7 (cronie reads 0 and refuses).
        if field == Field::DayOfWeek && to == 0 && to_text.eq_ignore_ascii_case("sun") {
            to = 7;
        }
        if from > to {
            return Err(FieldProblem::Reversed { token: owned() });
        }
        return Ok(Item::Range {
            from,
            to,
            step: step.unwrap_or(1),
        });
    }
    if step.is_some() {
        // `5/10`, `/10`: vixie cron reads `5-max/10`, others `5/10` alone or reject it.
        return Err(FieldProblem::BareStep { token: owned() });
    }
    Ok(Item::Value(parse_value(field, token, base)?))
}

/// Croner (and Quartz) extensions that crontab does not have.
fn unsupported(field: Field, token: &str) -> Option<FieldProblem> {
    let what = if token.contains('#') {
        "\"#\" (nth weekday)"
    } else if token.contains('?') {
        "\"?\""
    } else if token.contains('+') {
        "\"+\""
    } else if field == Field::DayOfMonth && token.eq_ignore_ascii_case("l") {
        return None;
    } else if token.eq_ignore_ascii_case("l") {
        "\"L\" (only accepted alone in the day-of-month field)"
    } else if field == Field::DayOfMonth && token.to_ascii_lowercase().ends_with('w') {
        "\"W\" (nearest weekday)"
    } else if is_nth_last(token) {
        "\"L\" (last weekday of the month)"
    } else {
        return None;
    };
    Some(FieldProblem::Unsupported {
        token: token.to_string(),
        what,
    })
}

/// Quartz's `nL` (the last weekday n of the month): digits and a final `L`, nothing else. By
/// grammar, not by the last letter: `6-jul` ends in `l` and is a month range.
fn is_nth_last(token: &str) -> bool {
    match token.strip_suffix(['l', 'L']) {
        Some(digits) => !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

fn parse_step(field: Field, token: &str, text: &str) -> Result<u32, FieldProblem> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldProblem::NotAValue {
            token: token.to_string(),
        });
    }
    let (min, max) = field.bounds();
    let step = text.parse::<u32>().unwrap_or(u32::MAX);
    if step == 0 {
        return Err(FieldProblem::ZeroStep {
            token: token.to_string(),
        });
    }
    if step > max + 1 - min {
        return Err(FieldProblem::StepTooLarge {
            token: token.to_string(),
        });
    }
    Ok(step)
}

/// A number or (month, day-of-week) a three-letter name, within the field's bounds.
fn parse_value(field: Field, token: &str, text: &str) -> Result<u32, FieldProblem> {
    let (min, max) = field.bounds();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for u32 is out of range too.
        let value = text.parse::<u32>().unwrap_or(u32::MAX);
        if value < min || value > max {
            let token = if text == token { token } else { text };
            return Err(FieldProblem::OutOfRange {
                token: token.to_string(),
            });
        }
        return Ok(value);
    }
    if let Some((names, first)) = field.names() {
        if let Some(index) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
            // Names index from 0; the array is at most 12 long.
            return Ok(first + index as u32);
        }
    }
    Err(FieldProblem::NotAValue {
        token: token.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(field: Field, text: &str) -> Vec<u32> {
        parse_field(field, text).expect("valid field").value_list()
    }

    #[test]
    fn lists_ranges_and_steps() {
        assert_eq!(values(Field::Minute, "1,5,10"), vec![1, 5, 10]);
        assert_eq!(values(Field::Hour, "9-12"), vec![9, 10, 11, 12]);
        assert_eq!(values(Field::Minute, "*/20"), vec![0, 20, 40]);
        assert_eq!(values(Field::Minute, "10-30/10"), vec![10, 20, 30]);
        assert_eq!(values(Field::DayOfMonth, "*/10"), vec![1, 11, 21, 31]);
        assert_eq!(values(Field::Second, "*/30"), vec![0, 30]);
    }

    #[test]
    fn names_are_case_insensitive_and_work_in_ranges() {
        assert_eq!(values(Field::DayOfWeek, "MON-fri"), vec![1, 2, 3, 4, 5]);
        assert_eq!(values(Field::Month, "jan-Mar"), vec![1, 2, 3]);
        assert_eq!(values(Field::Month, "DEC"), vec![12]);
        assert_eq!(values(Field::DayOfWeek, "sun"), vec![0]);
    }

    #[test]
    fn every_name_works_at_either_end_of_a_range_and_in_a_list() {
        for (i, name) in MONTH_NAMES.iter().enumerate() {
            let n = i as u32 + 1;
            let upper = name.to_ascii_uppercase();
            assert_eq!(
                values(Field::Month, &format!("1-{name}")),
                (1..=n).collect::<Vec<_>>()
            );
            assert_eq!(
                values(Field::Month, &format!("1-{upper}")),
                (1..=n).collect::<Vec<_>>()
            );
            assert_eq!(values(Field::Month, &format!("{n}-{name}")), vec![n]);
            assert_eq!(
                values(Field::Month, &format!("{name}-dec")),
                (n..=12).collect::<Vec<_>>()
            );
            assert_eq!(values(Field::Month, &format!("{name}-{name}/1")), vec![n]);
            let mut list = vec![1, n];
            list.dedup();
            assert_eq!(values(Field::Month, &format!("1,{name}")), list);
            assert_eq!(values(Field::Month, &format!("jan,{n}-{name}")), list);
        }
        for (i, name) in WEEKDAY_NAMES.iter().enumerate() {
            let n = i as u32;
            // A range ending on Sunday by name ends at 7: `0-sun` is every day.
            let upto = if n == 0 { 6 } else { n };
            assert_eq!(
                values(Field::DayOfWeek, &format!("0-{name}")),
                (0..=upto).collect::<Vec<_>>()
            );
            if n > 0 {
                assert_eq!(values(Field::DayOfWeek, &format!("{n}-{name}")), vec![n]);
            }
            assert_eq!(
                values(Field::DayOfWeek, &format!("{name}-sat")),
                (n..=6).collect::<Vec<_>>()
            );
            let mut list = vec![n, 6];
            list.dedup();
            assert_eq!(values(Field::DayOfWeek, &format!("{name},sat")), list);
        }
        // The cases, and Quartz's nL still refused.
        assert_eq!(values(Field::Month, "6-jul"), vec![6, 7]);
        assert_eq!(values(Field::Month, "5,6-jul"), vec![5, 6, 7]);
        assert_eq!(values(Field::Month, "jun-jul"), vec![6, 7]);
        assert!(problem(Field::DayOfWeek, "5l").contains("last weekday"));
        assert!(problem(Field::DayOfWeek, "15L").contains("last weekday"));
    }

    #[test]
    fn sunday_is_zero_and_seven() {
        assert_eq!(values(Field::DayOfWeek, "7"), vec![0]);
        assert_eq!(values(Field::DayOfWeek, "5-7"), vec![0, 5, 6]);
        assert_eq!(
            values(Field::DayOfWeek, "fri-sun"),
            values(Field::DayOfWeek, "5-7")
        );
    }

    #[test]
    fn last_day_of_month() {
        let spec = parse_field(Field::DayOfMonth, "L").expect("L");
        assert!(spec.last);
        assert_eq!(spec.normalized(), "L");
        assert_eq!(
            parse_field(Field::DayOfMonth, "15,L")
                .expect("15,L")
                .normalized(),
            "15,L"
        );
    }

    #[test]
    fn normalized_keeps_star_only_for_a_bare_star() {
        assert_eq!(
            parse_field(Field::DayOfMonth, "*").expect("*").normalized(),
            "*"
        );
        assert_eq!(
            parse_field(Field::Hour, "*/12").expect("*/12").normalized(),
            "0,12"
        );
    }

    fn problem(field: Field, text: &str) -> String {
        parse_field(field, text)
            .expect_err("should be refused")
            .render(field, text)
    }

    #[test]
    fn refusals_name_the_field_and_the_piece() {
        assert_eq!(
            problem(Field::Minute, "61"),
            "minute field \"61\" is out of range (0-59)"
        );
        assert_eq!(
            problem(Field::Hour, "1,24"),
            "hour field \"1,24\": \"24\" is out of range (0-23)"
        );
        assert!(problem(Field::Minute, "5/10").contains("use a-b/n or */n"));
        assert!(problem(Field::Minute, "*/0").contains("step of 0"));
        assert!(problem(Field::Hour, "5-1").contains("reversed range"));
        assert!(problem(Field::DayOfMonth, "0").contains("out of range (1-31)"));
        assert!(problem(Field::Month, "13").contains("out of range (1-12, or jan-dec)"));
        assert!(problem(Field::DayOfWeek, "8").starts_with("day-of-week field \"8\""));
        assert!(problem(Field::DayOfWeek, "1#2").contains("\"#\""));
        assert!(problem(Field::DayOfMonth, "15W").contains("\"W\""));
        assert!(problem(Field::DayOfMonth, "?").contains("\"?\""));
        assert!(problem(Field::DayOfWeek, "5L").contains("\"L\""));
        assert!(problem(Field::DayOfWeek, "L").contains("only accepted alone in the day-of-month"));
        assert!(problem(Field::Month, "mon").contains("is not a valid value"));
        assert!(problem(Field::DayOfWeek, "monday").contains("sun-sat"));
        assert!(problem(Field::Minute, "1,,2").contains("empty list item"));
        assert!(problem(Field::Minute, "*/61").contains("at most 60"));
        assert!(problem(Field::Minute, "99999999999").contains("out of range"));
        assert!(problem(Field::Second, "x").starts_with("second field \"x\""));
        assert!(problem(Field::Minute, "1-").contains("not a valid value"));
    }
}
