//! `cronmgr next EXPR` and `cronmgr validate EXPR`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Ctx;
use crate::invalid;
use crate::output::{self, Column};
use crate::schedule::{self, Schedule};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct NextArgs {
    /// A cron expression (quote it: '0 3 * * *')
    pub expression: String,
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
pub struct ValidateArgs {
    /// A cron expression
    pub expression: String,
}

#[derive(Serialize)]
struct Next {
    expression: String,
    timezone: String,
    description: String,
    next: Vec<String>,
}

/// Parse an instant given on the command line: RFC 3339, or a date and time taken as UTC.
pub fn parse_instant(text: &str) -> anyhow::Result<DateTime<Utc>> {
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

pub fn next(args: NextArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let schedule = Schedule::parse(&args.expression)?;
    let tz = match &args.tz {
        Some(name) => schedule::parse_timezone(name)?,
        None if ctx.db_path().exists() => {
            schedule::parse_timezone(&ctx.store()?.settings(ctx.system())?.timezone)?
        }
        None => schedule::host_timezone(),
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
    if ctx.global.json {
        output::json(&Next {
            expression: schedule.as_str().to_string(),
            timezone: tz.name().to_string(),
            description: schedule.describe(),
            next: times.iter().map(|t| output::utc(*t)).collect(),
        })?;
        return Ok(ExitCode::Ok);
    }
    let mut text = format!("{}: {}\n", schedule.as_str(), schedule.describe());
    if schedule.is_reboot() {
        text.push_str("fires once each time the runner starts\n");
        output::text(&text)?;
        return Ok(ExitCode::Ok);
    }
    if times.is_empty() {
        text.push_str("never fires\n");
    } else {
        let zone_header = format!("LOCAL ({})", tz.name());
        let rows = times.iter().map(|t| {
            vec![
                output::local(*t, tz),
                output::utc(*t),
                schedule::dst_note(&schedule, *t, tz).unwrap_or_default(),
            ]
        });
        let columns = [
            Column::new(&zone_header),
            Column::new("UTC"),
            Column::new("NOTE").fill(10),
        ];
        text.push_str(&output::table(&columns, rows));
    }
    output::text(&text)?;
    Ok(ExitCode::Ok)
}

pub fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let schedule = Schedule::parse(&args.expression)?;
    output::text(&format!("valid: {}", schedule.describe()))?;
    Ok(ExitCode::Ok)
}
