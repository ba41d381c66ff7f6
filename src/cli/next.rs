//! `cronmgr next EXPR` and `cronmgr validate EXPR`.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::Ctx;
use crate::invalid;
use crate::output::{self, Column};
use crate::schedule::{self, Schedule};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "With --json: {\"expression\", \"timezone\", \"description\", \"at_reboot\", \
                  \"next\": [UTC times], \"fires\": [{\"utc\", \"local\", \"note\"}]}; \
                  a note says what a DST change does to that fire time, else it is null."
)]
pub struct NextArgs {
    /// A cron expression (quote it: '0 3 * * *')
    #[arg(required_unless_present = "job", conflicts_with = "job")]
    pub expression: Option<String>,
    /// A job's real fire times instead: its schedule (`H` resolved), zone and jitter
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
    /// Time zone [default: the system's]
    #[arg(long, short = 'z', value_name = "ZONE")]
    pub tz: Option<String>,
    /// Start after this instant (RFC 3339, e.g. 2027-03-28T00:00:00Z) [default: now]
    #[arg(long, value_name = "INSTANT")]
    pub after: Option<String>,
    /// How many fire times
    #[arg(long, short = 'n', default_value_t = 5)]
    pub count: usize,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "With --json: {\"expression\", \"valid\": true, \"description\", \"timezone\", \"at_reboot\", \
                  \"next\": {\"utc\", \"local\", \"note\"} or null for @reboot}. \
                  An invalid schedule (bad syntax, or one that never fires) exits 2 with the reason on stderr."
)]
pub struct ValidateArgs {
    /// A cron expression
    pub expression: String,
    /// Time zone it must fire in [default: the system's]
    #[arg(long, short = 'z', value_name = "ZONE")]
    pub tz: Option<String>,
    /// Look for its first fire after this instant (RFC 3339) [default: now]
    #[arg(long, value_name = "INSTANT")]
    pub after: Option<String>,
}

/// One fire time, as the table shows it.
#[derive(Serialize)]
struct Fire {
    /// RFC 3339, UTC.
    utc: String,
    /// In the schedule's zone, with its abbreviation.
    local: String,
    /// What a DST change does to it (skipped time run after the change, repeated hour), or null.
    note: Option<String>,
    /// With `--job` and a jitter: the slot (RFC 3339, UTC) this fire time delays; else absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    slot: Option<String>,
}

impl Fire {
    fn of(schedule: &Schedule, t: DateTime<Utc>, tz: Tz) -> Fire {
        Fire {
            utc: output::utc(t),
            local: output::local(t, tz),
            note: schedule::dst_note(schedule, t, tz),
            slot: None,
        }
    }

    /// Slot `slot` of `job`, at the time it fires (its jitter added).
    fn of_job(job: &crate::store::Job, schedule: &Schedule, slot: DateTime<Utc>, tz: Tz) -> Fire {
        let at = crate::runner::fire_at(job, slot);
        let mut fire = Fire::of(schedule, at, tz);
        fire.note = schedule::dst_note(schedule, slot, tz);
        if job.jitter.is_some_and(|j| j > 0) {
            fire.slot = Some(output::utc(slot));
        }
        fire
    }
}

#[derive(Serialize)]
struct Next {
    expression: String,
    timezone: String,
    description: String,
    /// `@reboot`: fires each time the runner starts, never at a time.
    at_reboot: bool,
    /// The fire times, UTC (the same as `fires[].utc`).
    next: Vec<String>,
    fires: Vec<Fire>,
}

#[derive(Serialize)]
struct Validation {
    expression: String,
    valid: bool,
    description: String,
    timezone: String,
    at_reboot: bool,
    /// The first fire time; null for `@reboot`.
    next: Option<Fire>,
}

/// The zone asked for, else the system's (when there is a database), else the host's.
fn zone(tz: Option<&str>, ctx: &Ctx) -> crate::exit::Result<Tz> {
    Ok(match tz {
        Some(name) => schedule::parse_timezone(name)?,
        None if ctx.db_path().exists() => {
            schedule::parse_timezone(&ctx.store()?.settings(ctx.system())?.timezone)?
        }
        None => schedule::host_timezone(),
    })
}

/// Parse an instant given on the command line: RFC 3339, or a date and time taken as UTC.
pub fn parse_instant(text: &str) -> crate::exit::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, fmt) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    invalid!("invalid instant {text:?}: use RFC 3339 such as 2027-03-28T00:00:00Z, or YYYY-MM-DD [HH:MM[:SS]] (UTC)")
}

pub fn next(args: NextArgs, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let store = match &args.job {
        Some(_) => Some(ctx.store()?),
        None => None,
    };
    let job = match (&store, &args.job) {
        (Some(store), Some(name)) => Some(store.job(ctx.system(), name)?),
        _ => None,
    };
    let (schedule, tz) = match (&job, &args.expression) {
        (Some(job), _) => {
            let store = store.as_ref().expect("opened with the job");
            let settings = store.settings(&job.system)?;
            let tz = match &args.tz {
                Some(name) => schedule::parse_timezone(name)?,
                None => super::job_args::effective_tz(job, &settings)?,
            };
            (
                Schedule::parse_for(&job.schedule, &job.system, &job.name)?,
                tz,
            )
        }
        (None, Some(expr)) => (Schedule::parse(expr)?, zone(args.tz.as_deref(), ctx)?),
        (None, None) => invalid!("give a cron expression or --job NAME"),
    };
    let mut at = match &args.after {
        Some(text) => parse_instant(text)?,
        None => ctx.now(),
    };
    if args.count == 0 || args.count > 1000 {
        invalid!("--count must be between 1 and 1000");
    }
    let mut times = Vec::new();
    while times.len() < args.count {
        match schedule.next_after(at, tz) {
            Some(t) => {
                times.push(t);
                at = t;
            }
            None => break,
        }
    }
    let fires: Vec<Fire> = match &job {
        Some(job) => (times.iter())
            .map(|t| Fire::of_job(job, &schedule, *t, tz))
            .collect(),
        None => times.iter().map(|t| Fire::of(&schedule, *t, tz)).collect(),
    };
    if ctx.global.json {
        output::json(&Next {
            expression: schedule.as_str().to_string(),
            timezone: tz.name().to_string(),
            description: schedule.describe(),
            at_reboot: schedule.is_reboot(),
            next: fires.iter().map(|f| f.utc.clone()).collect(),
            fires,
        })?;
        return Ok(ExitCode::Ok);
    }
    let mut text = format!("{}: {}\n", schedule.as_str(), schedule.describe());
    if let Some(j) = job.as_ref().and_then(|j| j.jitter).filter(|j| *j > 0) {
        text.push_str(&format!(
            "each slot fires up to {} late (jitter); the times below include it\n",
            crate::duration::human_secs(j)
        ));
    }
    if schedule.is_reboot() {
        text.push_str("fires once each time the runner starts\n");
        output::text(&text)?;
        return Ok(ExitCode::Ok);
    }
    if fires.is_empty() {
        text.push_str("never fires\n");
    } else {
        let zone_header = format!("LOCAL ({})", tz.name());
        let jittered = fires.iter().any(|f| f.slot.is_some());
        let rows = fires.into_iter().map(|f| {
            let mut row = vec![f.local, f.utc];
            if jittered {
                row.push(f.slot.unwrap_or_default());
            }
            row.push(f.note.unwrap_or_default());
            row
        });
        let mut columns = vec![Column::new(&zone_header), Column::new("UTC")];
        if jittered {
            columns.push(Column::new("SLOT (UTC)"));
        }
        columns.push(Column::new("NOTE").fill(10));
        text.push_str(&output::table(&columns, rows));
    }
    output::text(&text)?;
    Ok(ExitCode::Ok)
}

/// Valid: it parses, and fires in its zone (within the search bound; see `schedule`).
pub fn validate(args: ValidateArgs, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let schedule = Schedule::parse(&args.expression)?;
    let tz = zone(args.tz.as_deref(), ctx)?;
    let after = match &args.after {
        Some(text) => parse_instant(text)?,
        None => ctx.now(),
    };
    let first = schedule
        .first_fire(after, tz)?
        .map(|t| Fire::of(&schedule, t, tz));
    if ctx.global.json {
        output::json(&Validation {
            expression: schedule.as_str().to_string(),
            valid: true,
            description: schedule.describe(),
            timezone: tz.name().to_string(),
            at_reboot: schedule.is_reboot(),
            next: first,
        })?;
        return Ok(ExitCode::Ok);
    }
    let next = match first {
        None => "when the runner starts".to_string(),
        Some(f) => match f.note {
            Some(note) => format!("{} ({}): {note}", f.local, f.utc),
            None => format!("{} ({})", f.local, f.utc),
        },
    };
    output::text(&format!(
        "valid: {}\ntimezone: {}\nnext run: {next}\n",
        schedule.describe(),
        tz.name()
    ))?;
    Ok(ExitCode::Ok)
}
