//! `cronmgr history [NAME] [--status S] [--since DURATION|INSTANT] [--until DURATION|INSTANT]
//! [--limit N] [--format table|csv|json]`

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::next::parse_instant;
use super::Ctx;
use crate::output::{self, Column};
use crate::store::{Execution, ExecutionFilter, Status};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  cronmgr history backup --since 2026-11-01 --until 2026-12-01 --format csv > november.csv\n  \
                  cronmgr history --status failed --since 7d\n\n\
                  --format csv: RFC 4180 (CRLF line ends, fields with commas, quotes or line breaks quoted), \
                  a header row, then one execution per row, newest first, in these columns: id, system, job, \
                  status, triggered_by, attempt, scheduled_for, started_at, finished_at, duration_ms, \
                  exit_code, memory_used_mb, cpu_used_percent, error_message, memory_upper_bound, caused_by \
                  (memory_upper_bound true: memory_used_mb is an upper bound, see docs/limits.md; caused_by: \
                  the execution whose end started this one, see --after). Times are RFC 3339 UTC, an \
                  absent value is empty, and text starting with = + - @ gets a leading ' so that \
                  spreadsheets show it rather than run it.\n\n\
                  --since and --until select by when each execution began (its start, else its slot): \
                  since included, until excluded."
)]
pub struct Args {
    /// Only this job's executions
    pub name: Option<String>,
    /// Only executions with this status (running, success, failed, timeout, skipped, missed, interrupted, cancelled)
    #[arg(long)]
    pub status: Option<String>,
    /// Only executions that began at or after this instant (RFC 3339, or YYYY-MM-DD [HH:MM[:SS]]
    /// in UTC), or this long ago (30m, 2h, 7d)
    #[arg(long, value_name = "DURATION|INSTANT")]
    pub since: Option<String>,
    /// Only executions that began before this instant, or this long ago (same forms as --since)
    #[arg(long, value_name = "DURATION|INSTANT")]
    pub until: Option<String>,
    /// At most this many, newest first
    #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub limit: usize,
    /// table (the default), csv (RFC 4180 with a header row, for spreadsheets), or json (as --json)
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,
}

/// How `history` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// The columns of `history --format csv`, in order. Stable: scripts and spreadsheets read them
/// by position; add new ones at the end.
pub const CSV_COLUMNS: &[&str] = &[
    "id",
    "system",
    "job",
    "status",
    "triggered_by",
    "attempt",
    "scheduled_for",
    "started_at",
    "finished_at",
    "duration_ms",
    "exit_code",
    "memory_used_mb",
    "cpu_used_percent",
    "error_message",
    "memory_upper_bound",
    "caused_by",
];

/// `--since`: a duration back from now, or an instant.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> crate::exit::Result<DateTime<Utc>> {
    parse_time_arg("--since", text, now)
}

/// The value of a time flag (`--since`, `--until`): a duration back from now, or an instant.
pub fn parse_time_arg(
    flag: &str,
    text: &str,
    now: DateTime<Utc>,
) -> crate::exit::Result<DateTime<Utc>> {
    if let Ok(d) = crate::duration::parse(text) {
        let back = chrono::Duration::from_std(d).ok();
        return match back.and_then(|b| now.checked_sub_signed(b)) {
            Some(t) => Ok(t),
            None => crate::invalid!("{flag} {text} reaches back past the start of the calendar"),
        };
    }
    parse_instant(text).map_err(|_| {
        crate::exit::Failure::usage(format!(
            "invalid {flag} {text:?}: use a duration back from now (30m, 2h, 7d, 1h30m) or an \
             instant (RFC 3339 such as 2027-03-28T00:00:00Z, or YYYY-MM-DD [HH:MM[:SS]] in UTC)"
        ))
    })
}

pub fn run(args: Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let status = args
        .status
        .as_deref()
        .map(|s| s.parse::<Status>().map_err(crate::exit::Failure::usage))
        .transpose()?;
    let now = ctx.now();
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, now))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|s| parse_time_arg("--until", s, now))
        .transpose()?;
    if let (Some(since), Some(until)) = (since, until) {
        if since >= until {
            crate::invalid!(
                "--since {} is not before --until {}: the window is empty",
                output::utc(since),
                output::utc(until)
            );
        }
    }
    let format = match (args.format, ctx.global.json) {
        (Some(Format::Csv | Format::Table), true) => crate::invalid!(
            "--format {} and --json ask for two formats; give one",
            if args.format == Some(Format::Csv) {
                "csv"
            } else {
                "table"
            }
        ),
        (_, true) => Format::Json,
        (Some(f), false) => f,
        (None, false) => Format::Table,
    };
    let store = ctx.store()?;
    if let Some(name) = &args.name {
        store.job(ctx.system(), name)?;
    }
    let filter = ExecutionFilter {
        system: Some(ctx.system().to_string()),
        job: args.name.clone(),
        status,
        since,
        limit: Some(args.limit),
    };
    let executions = match until {
        Some(until) => store.executions_until(&filter, until)?,
        None => store.executions(&filter)?,
    };
    match format {
        Format::Json => {
            output::json(&executions)?;
            return Ok(ExitCode::Ok);
        }
        Format::Csv => {
            output::text(&csv(&executions))?;
            return Ok(ExitCode::Ok);
        }
        Format::Table => {}
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

/// `history --format csv`: a header row ([`CSV_COLUMNS`]), then one record per execution; times
/// in RFC 3339 UTC with milliseconds (as `--json`), durations in milliseconds, an absent value as an empty field.
pub fn csv(executions: &[Execution]) -> String {
    use crate::output::csv::{record, text};
    use crate::store::fmt_time;
    let mut out = record(CSV_COLUMNS);
    let opt = |v: Option<String>| v.unwrap_or_default();
    for e in executions {
        out.push_str(&record(&[
            e.id.to_string(),
            text(&e.system).into_owned(),
            text(&e.job).into_owned(),
            e.status.to_string(),
            e.triggered_by.to_string(),
            e.attempt.to_string(),
            fmt_time(e.scheduled_for),
            opt(e.started_at.map(fmt_time)),
            opt(e.finished_at.map(fmt_time)),
            opt(e.duration_ms.map(|v| v.to_string())),
            opt(e.exit_code.map(|v| v.to_string())),
            opt(e.memory_used_mb.map(|v| v.to_string())),
            opt(e.cpu_used_percent.map(|v| v.to_string())),
            text(e.error_message.as_deref().unwrap_or_default()).into_owned(),
            opt(e.memory_upper_bound.map(|v| v.to_string())),
            opt(e.caused_by.map(|v| v.to_string())),
        ]));
    }
    out
}

/// A memory figure: `≤11.2M` when it is an upper bound (rusage, the runner's size counted in),
/// `1.4M` when exact (a cgroup's memory.peak) or unknown (recorded before cronmgr said which).
pub fn memory(mb: f64, upper_bound: Option<bool>) -> String {
    let bound = if upper_bound == Some(true) { "≤" } else { "" };
    format!("{bound}{mb:.1}M")
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
            match e.caused_by {
                // A chain's start (and its retries): the execution whose end triggered it.
                Some(cause) => format!("{} (after #{cause})", e.triggered_by),
                None => e.triggered_by.to_string(),
            },
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
                .map(|m| memory(m, e.memory_upper_bound))
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
    fn upper_bounds_are_marked_and_exact_figures_are_not() {
        assert_eq!(memory(11.23, Some(true)), "≤11.2M");
        assert_eq!(memory(1.4, Some(false)), "1.4M");
        assert_eq!(memory(1.4, None), "1.4M");
    }

    #[test]
    fn the_help_lists_the_csv_columns_in_order() {
        use clap::CommandFactory;
        let cli = super::super::Cli::command();
        let history = cli.find_subcommand("history").unwrap();
        let help = history.get_after_help().unwrap().to_string();
        let listed = CSV_COLUMNS.join(", ");
        assert!(help.contains(&listed), "{help}");
    }

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
