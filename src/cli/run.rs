//! `cronmgr run [--once] [--max-concurrent N]`: the runner.

use super::Ctx;
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Fire what is due now (and catch-up per policy), wait for it, and exit: 3 if any failed or timed out, else 130 if any was interrupted (a stop signal); cancelled ones (`kill`) do not count. Prints a one-line summary on stdout; with --json the object {started, succeeded, failed, interrupted, cancelled, skipped, missed}
    #[arg(long)]
    pub once: bool,
    /// At most this many executions at once, overriding every system's max_concurrent_jobs
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000), value_name = "N")]
    pub max_concurrent: Option<u64>,
    /// Run even if another runner holds the lock on this database (slots still run only once)
    #[arg(long)]
    pub force: bool,
    /// Rewrite this node_exporter textfile (Prometheus metrics) after every execution
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<std::path::PathBuf>,
    /// A label of this runner; jobs with `--runner-label` run only on runners carrying all of theirs (repeatable)
    #[arg(long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,
    /// With a shared PostgreSQL database: after this long without a heartbeat from this runner, the others declare it lost and interrupt its executions
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub lease: String,
    /// Stop by itself after this long (30s, 5m), as SIGTERM would: drain, then exit 0 — for a trial run
    #[arg(long = "for", value_name = "DURATION", conflicts_with = "once")]
    pub run_for: Option<String>,
}

pub fn run(args: Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let invalid = |e: String| crate::exit::Failure::usage(e);
    let labels =
        crate::runner::fleet::labels(&args.labels).map_err(|e| invalid(format!("--label: {e}")))?;
    let lease = crate::runner::fleet::parse_lease(&args.lease).map_err(invalid)?;
    let stop_after = match &args.run_for {
        Some(text) => match crate::duration::parse(text) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => return Err(invalid("--for: the duration must be above 0".into())),
            Err(e) => return Err(invalid(format!("--for: {e}"))),
        },
        None => None,
    };
    let summary = crate::runner::serve(crate::runner::ServeOptions {
        db: ctx.db_path(),
        config_path: ctx.global.config.clone(),
        once: args.once,
        max_concurrent: args.max_concurrent.map(|n| n as usize),
        force: args.force,
        metrics_file: args.metrics_file,
        labels,
        lease,
        stop_after,
    })?;
    if args.once {
        let once = OnceSummary::from(&summary);
        let printed = match ctx.global.json {
            true => crate::output::json(&once),
            false => crate::output::text(&once.to_string()),
        }
        .map_err(crate::exit::Failure::from);
        // A closed stdout pipe loses the summary, not the exit status the jobs earned.
        match printed {
            Err(e) if !e.is_broken_pipe() => return Err(e),
            _ => {}
        }
        return Ok(once_exit_code(&summary));
    }
    Ok(ExitCode::Ok)
}

/// What `run --once` did: data, so on stdout (`--json`: this object, with these field names).
/// Every started execution that ended is counted once in succeeded, failed (failed or timed
/// out), interrupted (by the runner's own stop) or cancelled (`cronmgr kill`).
#[derive(Debug, serde::Serialize)]
struct OnceSummary {
    started: usize,
    succeeded: usize,
    failed: usize,
    interrupted: usize,
    cancelled: usize,
    skipped: usize,
    missed: usize,
}

impl From<&crate::runner::Summary> for OnceSummary {
    fn from(s: &crate::runner::Summary) -> Self {
        OnceSummary {
            started: s.started,
            succeeded: s.succeeded,
            failed: s.failed,
            interrupted: s.interrupted,
            cancelled: s.cancelled,
            skipped: s.skipped,
            missed: s.missed,
        }
    }
}

impl std::fmt::Display for OnceSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ran {} (succeeded {}, failed {}, interrupted {}, cancelled {}), skipped {}, missed {}",
            self.started,
            self.succeeded,
            self.failed,
            self.interrupted,
            self.cancelled,
            self.skipped,
            self.missed
        )
    }
}

/// `run --once`: a failure (or timeout) is the job's; with none, an execution the runner's stop
/// interrupted means the run was interrupted. A cancel (`cronmgr kill`) was a person's choice.
fn once_exit_code(summary: &crate::runner::Summary) -> ExitCode {
    if summary.failed > 0 {
        ExitCode::JobFailed
    } else if summary.interrupted > 0 {
        ExitCode::Interrupted
    } else {
        ExitCode::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::Summary;

    #[test]
    fn once_exits_3_on_a_failure_130_on_an_interruption_and_0_for_cancels() {
        let s = |failed, interrupted, cancelled| Summary {
            started: failed + interrupted + cancelled,
            failed,
            interrupted,
            cancelled,
            ..Summary::default()
        };
        assert_eq!(once_exit_code(&s(1, 1, 1)), ExitCode::JobFailed);
        assert_eq!(once_exit_code(&s(0, 1, 1)), ExitCode::Interrupted);
        assert_eq!(once_exit_code(&s(0, 0, 1)), ExitCode::Ok);
        assert_eq!(once_exit_code(&s(0, 0, 0)), ExitCode::Ok);
    }
}
