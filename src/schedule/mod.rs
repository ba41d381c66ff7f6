//! Cron expressions with crontab (cronie) semantics on top of `croner`.
//!
//! - [`parse`] checks every field with cronie's rules and our own messages, then hands croner a
//!   normalized pattern of plain value lists.
//! - [`dst`] turns croner's wall-clock matches into instants the way cronie does across daylight
//!   saving changes (fixed-time jobs versus wildcard jobs).
//! - [`describe`] says a schedule in plain English; [`zone`] finds time zones.
//!
//! Pure functions: no I/O except [`host_timezone`], the clock is always passed in.

mod describe;
mod dst;
pub mod hash;
mod parse;
mod zone;

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};

pub use dst::dst_note;
pub use parse::{Field, FieldProblem};
pub use zone::{host_timezone, parse_timezone};

use parse::FieldSpec;

/// The macros crontab accepts, and what each stands for.
const MACROS: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

const FIELDS_HELP: &str =
    "minute hour day-of-month month day-of-week, optionally after a leading second field";

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    /// The schedule as a whole is malformed (empty, wrong number of fields, unknown macro).
    #[error("invalid schedule {expr:?}: {reason}")]
    Invalid { expr: String, reason: String },
    /// One field is malformed.
    #[error("invalid schedule {expr:?}: {}", .problem.render(*.field, .text))]
    Field {
        expr: String,
        field: Field,
        text: String,
        problem: FieldProblem,
    },
    #[error(
        "unknown time zone {0:?} (use an IANA name such as UTC, Europe/Madrid or America/New_York)"
    )]
    UnknownTimezone(String),
}

/// Always the user's input: exit status 2.
impl crate::exit::Coded for ScheduleError {
    fn exit_code(&self) -> crate::exit::ExitCode {
        crate::exit::ExitCode::Usage
    }
}

/// A parsed crontab schedule.
///
/// It keeps what finding fire times needs (the pattern croner is fed, a few flags), not the
/// fields as written: a runner holds one per distinct expression for its whole life, and the
/// written fields (kept for [`Schedule::describe`]) are read again from the text when wanted.
#[derive(Debug, Clone)]
pub struct Schedule {
    source: String,
    cron: Option<Box<CronTimes>>,
}

/// What a schedule that is not `@reboot` needs to find its fire times.
#[derive(Debug, Clone)]
struct CronTimes {
    /// The pattern croner is fed (see [`Matcher`]).
    normalized: Box<str>,
    /// Croner's day rule: a day must match both day fields (cronie, when either starts with `*`).
    dom_and_dow: bool,
    /// Neither the minute nor the hour field starts with `*` (see [`Schedule::is_fixed_time`]).
    fixed_time: bool,
    /// The 6-field form.
    seconds: bool,
    /// The fields parsed, when they are not the source's own: `H` resolved for the job.
    resolved: Option<Box<str>>,
}

/// The time fields of a schedule as written, checked.
#[derive(Debug, Clone)]
struct Fields {
    /// `None` for the 5-field form.
    second: Option<FieldSpec>,
    minute: FieldSpec,
    hour: FieldSpec,
    day_of_month: FieldSpec,
    month: FieldSpec,
    day_of_week: FieldSpec,
    /// The pattern croner is fed (see [`Matcher`]).
    normalized: String,
    /// Croner's day rule: a day must match both day fields (cronie, when either starts with `*`).
    dom_and_dow: bool,
}

/// The schedule of a job with no time of its own (a chain's child, or a job run by hand).
pub const NEVER: &str = "@never";

impl Schedule {
    /// The schedule of the job `name` of `system`: `H` resolved for it (see [`hash`]), then
    /// parsed. Shown (`as_str`, `Display`) as written.
    pub fn parse_for(expr: &str, system: &str, name: &str) -> Result<Schedule, ScheduleError> {
        let resolved = hash::resolve(expr, &format!("{system}/{name}"))?;
        let mut schedule = Schedule::parse(&resolved)?;
        let source = expr.trim();
        if source != schedule.source {
            if let Some(cron) = schedule.cron.as_mut() {
                cron.resolved = Some(std::mem::take(&mut schedule.source).into_boxed_str());
            }
            schedule.source = source.to_string();
        }
        Ok(schedule)
    }

    /// Parses a crontab schedule: 5 fields, 6 with a leading second field, or a macro.
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let source = expr.trim();
        let invalid = |reason: String| ScheduleError::Invalid {
            expr: source.to_string(),
            reason,
        };
        if source.contains('H') && !source.starts_with('@') {
            return Err(invalid(
                "H is derived from a job's system and name, so only a job's schedule can use it \
                 (`cronmgr next --job NAME` shows a job's fire times)"
                    .into(),
            ));
        }
        if source.is_empty() {
            return Err(invalid(format!(
                "it is empty (expected 5 fields: {FIELDS_HELP})"
            )));
        }
        if source.starts_with('@') {
            if source.eq_ignore_ascii_case("@reboot") || source.eq_ignore_ascii_case(NEVER) {
                return Ok(Schedule {
                    source: source.to_string(),
                    cron: None,
                });
            }
            let expansion = expand_macro(source).ok_or_else(|| {
                let names: Vec<&str> = MACROS.iter().map(|(name, _)| *name).collect();
                invalid(format!(
                    "unknown macro (accepted: @reboot, @never, {}; a macro stands alone)",
                    names.join(", ")
                ))
            })?;
            let cron = CronTimes::of(&Fields::parse(source, expansion)?);
            return Ok(Schedule {
                source: source.to_string(),
                cron: Some(Box::new(cron)),
            });
        }
        let cron = CronTimes::of(&Fields::parse(source, source)?);
        Ok(Schedule {
            source: source.to_string(),
            cron: Some(Box::new(cron)),
        })
    }

    /// The expression as the user wrote it (trimmed).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// `@reboot`: runs when the runner starts, never has a next time.
    pub fn is_reboot(&self) -> bool {
        self.cron.is_none() && !self.is_never()
    }

    /// `@never`: no time of its own; the job runs when its parents' ends trigger it (a chain,
    /// `--after`) or on `run-now`.
    pub fn is_never(&self) -> bool {
        self.source.eq_ignore_ascii_case(NEVER)
    }

    /// Cronie's DST class: true unless the minute or hour field starts with `*`.
    ///
    /// A fixed-time job whose wall-clock time is skipped by a forward change runs once right
    /// after the change, and in a repeated hour runs only in the first pass. A wildcard job runs
    /// at every real instant whose wall-clock time matches.
    pub fn is_fixed_time(&self) -> bool {
        self.cron.as_ref().is_some_and(|c| c.is_fixed_time())
    }

    /// The 6-field form, with a leading second field.
    pub fn has_seconds(&self) -> bool {
        self.cron.as_ref().is_some_and(|c| c.seconds)
    }

    /// Plain English, e.g. "At 03:00, every day".
    pub fn describe(&self) -> String {
        match &self.cron {
            Some(c) => {
                let text = match &c.resolved {
                    Some(resolved) => resolved,
                    None => expand_macro(&self.source).unwrap_or(&self.source),
                };
                // Invariant: these fields parsed when the schedule was made.
                let fields = Fields::parse(&self.source, text).expect("a parsed schedule parses");
                describe::describe(&fields)
            }
            None if self.is_never() => {
                "never on its own (after its parents, see --after, or run-now)".to_string()
            }
            None => "when the runner starts".to_string(),
        }
    }

    /// First fire instant strictly after `after`, for a job in zone `tz`. `None` for `@reboot`,
    /// and when nothing fires within [`dst::HORIZON_DAYS`] days: never, since a parsed schedule
    /// fires within that bound from any instant (but in a zone whose clock always skips its
    /// times, or after the year 4900).
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let cron = self.cron.as_ref()?;
        cron.next_after(&cron.matcher()?, after, tz)
    }

    /// The first fire after `after` (None for `@reboot`), or an error when the schedule never
    /// fires in `tz`: the rule for a valid schedule at `add`, `validate` and the like.
    pub fn first_fire(
        &self,
        after: DateTime<Utc>,
        tz: Tz,
    ) -> Result<Option<DateTime<Utc>>, ScheduleError> {
        if self.cron.is_none() {
            return Ok(None);
        }
        match self.next_after(after, tz) {
            Some(t) => Ok(Some(t)),
            None => Err(ScheduleError::Invalid {
                expr: self.source.clone(),
                reason: format!(
                    "it never fires in {} (no fire time within {} days after {})",
                    tz.name(),
                    dst::HORIZON_DAYS,
                    after.format("%Y-%m-%d %H:%M:%S UTC")
                ),
            }),
        }
    }

    /// Fire instants in `(from, to]`, at most `limit` of them, in order.
    pub fn fires_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        tz: Tz,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut fires = Vec::new();
        let Some((cron, matcher)) = self.cron.as_ref().and_then(|c| Some((c, c.matcher()?))) else {
            return fires;
        };
        let mut cursor = from;
        while fires.len() < limit {
            match cron.next_after(&matcher, cursor, tz) {
                Some(next) if next <= to => {
                    fires.push(next);
                    cursor = next;
                }
                _ => break,
            }
        }
        fires
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

/// A macro's fields (`@daily` → `0 0 * * *`); `None` for an unknown one.
fn expand_macro(source: &str) -> Option<&'static str> {
    MACROS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(source))
        .map(|(_, expansion)| *expansion)
}

impl Fields {
    /// Parses `fields` (the source, or a macro's expansion); errors quote `source`.
    fn parse(source: &str, fields: &str) -> Result<Fields, ScheduleError> {
        let invalid = |reason: String| ScheduleError::Invalid {
            expr: source.to_string(),
            reason,
        };
        let parts: Vec<&str> = fields
            .split([' ', '\t'])
            .filter(|part| !part.is_empty())
            .collect();
        let (second_text, rest) = match parts.len() {
            5 => (None, &parts[..]),
            6 => (Some(parts[0]), &parts[1..]),
            7 => {
                return Err(invalid(format!(
                    "found 7 fields, but a year field is not supported (expected {FIELDS_HELP})"
                )))
            }
            n => {
                return Err(invalid(format!(
                    "found {n} fields (expected 5: {FIELDS_HELP})"
                )))
            }
        };
        let field = |field: Field, text: &str| {
            parse::parse_field(field, text).map_err(|problem| ScheduleError::Field {
                expr: source.to_string(),
                field,
                text: text.to_string(),
                problem,
            })
        };
        let second = second_text
            .map(|text| field(Field::Second, text))
            .transpose()?;
        let minute = field(Field::Minute, rest[0])?;
        let hour = field(Field::Hour, rest[1])?;
        let day_of_month = field(Field::DayOfMonth, rest[2])?;
        let month = field(Field::Month, rest[3])?;
        let day_of_week = field(Field::DayOfWeek, rest[4])?;

        // Cronie: when either day field starts with `*`, a day must match both; otherwise
        // either. Croner's own test only looks for a bare `*`, so `*/2` would be OR there.
        let dom_and_dow = day_of_month.starts_with_star() || day_of_week.starts_with_star();
        let normalized = format!(
            "{} {} {} {} {} {}",
            second
                .as_ref()
                .map_or_else(|| "0".to_string(), FieldSpec::normalized),
            minute.normalized(),
            hour.normalized(),
            day_of_month.normalized(),
            month.normalized(),
            day_of_week.normalized(),
        );
        // Built here once so that a pattern croner refuses is refused now; searches build their own.
        Matcher::build(&normalized, dom_and_dow)
            .map_err(|e| invalid(format!("the cron engine refused {normalized:?}: {e}")))?;
        // A schedule is valid iff it fires within the search bound (dst::HORIZON_DAYS): in the
        // calendar, iff some day can match at all, since a matching date recurs within the bound.
        if !days_can_match(&day_of_month, &month, &day_of_week) {
            return Err(invalid(format!(
                "it never fires: no month of month field {:?} has a day of day-of-month field {:?}",
                month.text, day_of_month.text
            )));
        }
        Ok(Fields {
            second,
            minute,
            hour,
            day_of_month,
            month,
            day_of_week,
            normalized,
            dom_and_dow,
        })
    }

    fn is_fixed_time(&self) -> bool {
        !self.minute.starts_with_star() && !self.hour.starts_with_star()
    }
}

impl CronTimes {
    fn of(fields: &Fields) -> CronTimes {
        CronTimes {
            normalized: fields.normalized.as_str().into(),
            dom_and_dow: fields.dom_and_dow,
            fixed_time: fields.is_fixed_time(),
            seconds: fields.second.is_some(),
            resolved: None,
        }
    }

    fn is_fixed_time(&self) -> bool {
        self.fixed_time
    }

    /// Croner for one search. `None` only if croner refuses a pattern it accepted at parse time.
    fn matcher(&self) -> Option<Matcher> {
        Matcher::build(&self.normalized, self.dom_and_dow).ok()
    }

    fn next_after(&self, matcher: &Matcher, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        if self.is_fixed_time() {
            dst::next_fixed(matcher, after, tz)
        } else {
            dst::next_wildcard(matcher, after, tz)
        }
    }
}

/// Croner fed the normalized pattern; only ever used on wall-clock (naive) times.
///
/// Not kept in the schedule: a built pattern carries a table of 5,000 years (5 KB), and a
/// runner holding a thousand distinct schedules would keep 5 MB of them for nothing. The last
/// [`MATCHERS`] built on a thread are reused, so a schedule searched again and again (a busy
/// job, a test walking a year) builds once.
struct Matcher(std::rc::Rc<croner::Cron>);

/// How many built patterns a thread keeps (a few hundred KB at most).
const MATCHERS: usize = 32;

thread_local! {
    /// Most recently used first: (normalized pattern, day rule, built).
    static BUILT: std::cell::RefCell<Vec<(String, bool, std::rc::Rc<croner::Cron>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl Matcher {
    fn build(normalized: &str, dom_and_dow: bool) -> Result<Matcher, croner::errors::CronError> {
        let hit = BUILT.with_borrow_mut(|built| {
            let i = built
                .iter()
                .position(|(p, d, _)| p == normalized && *d == dom_and_dow)?;
            let entry = built.remove(i);
            let cron = entry.2.clone();
            built.insert(0, entry);
            Some(cron)
        });
        if let Some(cron) = hit {
            return Ok(Matcher(cron));
        }
        let cron = std::rc::Rc::new(
            CronParser::builder()
                .seconds(Seconds::Required)
                .year(Year::Disallowed)
                .dom_and_dow(dom_and_dow)
                .build()
                .parse(normalized)?,
        );
        BUILT.with_borrow_mut(|built| {
            built.insert(0, (normalized.to_string(), dom_and_dow, cron.clone()));
            built.truncate(MATCHERS);
        });
        Ok(Matcher(cron))
    }

    /// The first wall-clock time matching the pattern after `start` (or at it, if `inclusive`).
    fn next_naive(&self, start: NaiveDateTime, inclusive: bool) -> Option<NaiveDateTime> {
        self.0.find_next_occurrence(&start, inclusive).ok()
    }

    fn matches_naive(&self, time: NaiveDateTime) -> bool {
        self.0.is_time_matching(&time).unwrap_or(false)
    }
}

/// Whether any day can ever match: if not, the schedule is refused (it would also send croner
/// searching to year 5000).
///
/// Day-of-month starting with `*` always holds the 1st; in OR mode a restricted day-of-week adds
/// days of its own. Otherwise (day-of-week starts with `*`, AND mode) only day-of-month limits,
/// and every weekday comes round eventually, so some selected month must have a selected day.
fn days_can_match(day_of_month: &FieldSpec, month: &FieldSpec, day_of_week: &FieldSpec) -> bool {
    if day_of_month.starts_with_star() || !day_of_week.starts_with_star() {
        return true;
    }
    const LONGEST: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    (1..=12u32).filter(|m| month.contains(*m)).any(|m| {
        let longest = LONGEST[(m - 1) as usize];
        day_of_month.last || (1..=longest).any(|d| day_of_month.contains(d))
    })
}

#[cfg(test)]
mod tests;
