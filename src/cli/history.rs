//! `cronmgr history [NAME] [--status S] [--since DURATION|INSTANT] [--limit N]`

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::next::parse_instant;
use super::Ctx;
use crate::output::{self, Column};
use crate::store::{Execution, ExecutionFilter, Status};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this job's executions
    pub name: Option<String>,
    /// Only executions with this status (running, success, failed, timeout, skipped, missed, interrupted, cancelled)
    #[arg(long)]
    pub status: Option<String>,
    /// Only executions since this long ago (30m, 2h, 7d) or this instant (RFC 3339)
    #[arg(long, value_name = "DURATION|INSTANT")]
    pub since: Option<String>,
    /// At most this many, newest first
    #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub limit: usize,
}

/// `--since`: a duration back from now, or an instant.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(d) = crate::duration::parse(text) {
        let back = chrono::Duration::from_std(d).ok();
        return match back.and_then(|b| now.checked_sub_signed(b)) {
            Some(t) => Ok(t),
            None => crate::invalid!("--since {text} reaches back past the start of the calendar"),
        };
    }
    parse_instant(text).map_err(|_| {
        anyhow::Error::new(crate::exit::Invalid(format!(
            "invalid --since {text:?}: use a duration back from now (30m, 2h, 7d, 1h30m) or an \
             instant (RFC 3339 such as 2027-03-28T00:00:00Z, or YYYY-MM-DD [HH:MM[:SS]] in UTC)"
        )))
    })
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let status = args
        .status
        .as_deref()
        .map(|s| s.parse::<Status>().map_err(crate::exit::Invalid))
        .transpose()?;
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, ctx.now()))
        .transpose()?;
    let store = ctx.store()?;
    if let Some(name) = &args.name {
        store.job(ctx.system(), name)?;
    }
    let executions = store.executions(&ExecutionFilter {
        system: Some(ctx.system().to_string()),
        job: args.name.clone(),
        status,
        since,
        limit: Some(args.limit),
    })?;
    if ctx.global.json {
        output::json(&executions)?;
        return Ok(ExitCode::Ok);
    }
    if executions.is_empty() {
        eprintln!("no executions");
        return Ok(ExitCode::Ok);
    }
    let tz =
        crate::schedule::parse_timezone(&store.settings(ctx.system())?.timezone).unwrap_or(Tz::UTC);
    output::text(&table(&executions, tz, args.name.is_none()))?;
    Ok(ExitCode::Ok)
}

/// The history table (also under `show`).
pub fn table(executions: &[Execution], tz: Tz, with_job: bool) -> String {
    let mut columns = vec![Column::new("ID")];
    if with_job {
        columns.push(Column::new("JOB").shrink(16));
    }
    // MESSAGE takes the room left; on a narrow terminal TRY goes first, EXIT (the message says
    // it) before DURATION.
    columns.extend([
        Column::new("STATUS"),
        Column::new("TRIGGER").drop(4),
        Column::new("TRY").drop(1),
        Column::new("SCHEDULED"),
        Column::new("DURATION").drop(6),
        Column::new("EXIT").drop(5),
        Column::new("MEM").drop(2),
        Column::new("CPU").drop(3),
        Column::new("MESSAGE").fill(16),
    ]);
    let rows = executions.iter().map(|e| {
        let mut row = vec![e.id.to_string()];
        if with_job {
            row.push(e.job.clone());
        }
        row.extend([
            e.status.to_string(),
            e.triggered_by.to_string(),
            e.attempt.to_string(),
            output::local(e.scheduled_for, tz),
            e.duration_ms
                .map(|ms| {
                    crate::duration::Human(std::time::Duration::from_millis(ms.max(0) as u64))
                        .to_string()
                })
                .unwrap_or_else(|| "-".into()),
            output::opt(e.exit_code),
            e.memory_used_mb
                .map(|m| format!("{m:.1}M"))
                .unwrap_or_else(|| "-".into()),
            e.cpu_used_percent
                .map(|c| format!("{c:.0}%"))
                .unwrap_or_else(|| "-".into()),
            e.error_message
                .as_deref()
                .and_then(|m| m.lines().next())
                .unwrap_or_default()
                .to_string(),
        ]);
        row
    });
    output::table(&columns, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_since_is_refused_not_a_panic() {
        let now = Utc::now();
        assert_eq!(
            parse_since("1h", now).unwrap(),
            now - chrono::Duration::hours(1)
        );
        for huge in ["99999999d", "18446744073709551615"] {
            let e = parse_since(huge, now).unwrap_err().to_string();
            assert!(e.contains("--since"), "{huge}: {e}");
        }
    }
}
