//! `logs EXECUTION [--follow]`, `kill EXECUTION`, `prune [--dry-run]`.

use std::time::Duration;

use serde::Serialize;

use super::follow::follow;
use super::Ctx;
use crate::invalid;
use crate::output;
use crate::runner::{execute, process};
use crate::store::{AuditEvent, Cancelling, Execution, Status};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Execution id (from `cronmgr history`)
    pub execution: i64,
    /// Keep printing a running execution's output until it ends
    #[arg(long, short = 'f')]
    pub follow: bool,
}

#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// Execution id (from `cronmgr history --status running`)
    pub execution: i64,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Only count what would be deleted
    #[arg(long)]
    pub dry_run: bool,
}

/// `logs ID --json`: the output so far (all of it once the execution ended).
#[derive(Serialize)]
struct Logs<'a> {
    execution: i64,
    status: Status,
    /// Who cancelled it, when someone did.
    cancelled_by: Option<&'a str>,
    output: String,
}

/// `kill ID --json`.
#[derive(Serialize)]
struct Killed<'a> {
    execution: i64,
    job: &'a str,
    /// False when no process of it was left to stop.
    killed: bool,
    /// Who cancels it (this user, or whoever did first).
    cancelled_by: Option<&'a str>,
    /// A second kill: `cancelling` (still running) or `cancelled` (ended); nothing was signalled.
    #[serde(skip_serializing_if = "Option::is_none")]
    already: Option<&'static str>,
    /// Why nothing was signalled, when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// `prune --json`.
#[derive(Serialize)]
struct Pruned {
    /// Executions deleted (0 on a dry run).
    deleted: usize,
    /// Executions a run deletes (on a dry run: would delete).
    would_delete: usize,
    audit_deleted: usize,
    dry_run: bool,
}

pub fn logs(args: LogsArgs, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    if args.follow && ctx.global.json {
        invalid!(
            "--follow streams the output as text; without it, --json prints the output so far"
        );
    }
    let store = ctx.store()?;
    let e = store.execution(args.execution)?;
    if e.status != Status::Running {
        let out = e.output.unwrap_or_default();
        if ctx.global.json {
            output::json(&Logs {
                execution: e.id,
                status: e.status,
                cancelled_by: e.cancelled_by.as_deref(),
                output: out,
            })?;
        } else {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(out.as_bytes())?;
            stdout.flush()?;
        }
        return Ok(ExitCode::Ok);
    }
    let path = crate::store::live_log_path(&ctx.db_path(), e.id);
    if !args.follow {
        let text = super::follow::read_live(&path);
        if ctx.global.json {
            output::json(&Logs {
                execution: e.id,
                status: e.status,
                cancelled_by: e.cancelled_by.as_deref(),
                output: String::from_utf8_lossy(&text).into_owned(),
            })?;
            return Ok(ExitCode::Ok);
        }
        use std::io::Write;
        std::io::stdout().write_all(&text)?;
        return Ok(ExitCode::Ok);
    }
    let id = e.id;
    let mut last_check = std::time::Instant::now();
    let mut finished = false;
    let found = follow(&path, Duration::from_secs(2), || {
        if finished {
            return true;
        }
        if last_check.elapsed() >= Duration::from_millis(200) {
            last_check = std::time::Instant::now();
            finished = store
                .execution(id)
                .map(|e| e.status != Status::Running)
                .unwrap_or(true);
        }
        finished
    })?;
    if !found {
        // It ended before we could open its live output: print what was recorded.
        let e = store.execution(id)?;
        output::text(&e.output.unwrap_or_default())?;
    }
    Ok(ExitCode::Ok)
}

/// `kill`: cancel a running execution. The request is written first (the row's `cancelled_by`
/// and the audit row, in one transaction), then the process group gets TERM, the grace period,
/// KILL; whoever records the end (the runner, `run-now`, or recovery after a crash) records it
/// `cancelled`. Exit 0 when it is cancelled or already being cancelled (no second signal, no
/// second audit row); 2 when it is not running; 0 without a signal when its process is gone or
/// its pid now belongs to another process.
pub fn kill(args: KillArgs, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let store = ctx.store()?;
    let e = store.execution(args.execution)?;
    if e.system != ctx.system() {
        invalid!(
            "execution {} belongs to system {:?}, not {:?} (pass --system {})",
            e.id,
            e.system,
            ctx.system(),
            e.system
        );
    }
    let cancelling =
        e.cancelled_by.is_some() && matches!(e.status, Status::Running | Status::Cancelled);
    if e.status != Status::Running && !cancelling {
        invalid!("execution {} is not running (it is {})", e.id, e.status);
    }
    if let Some(job) = store.job_by_id(e.job_id)? {
        ctx.require_admin(&store, "kill", &job.name, &[&job])?;
    }
    if let (true, Some(by)) = (cancelling, &e.cancelled_by) {
        return already(ctx, &e, by, e.status == Status::Cancelled);
    }
    let Some(pid) = e.pid else {
        invalid!(
            "execution {} has no process yet; try again in a moment",
            e.id
        );
    };
    // A pid is reused once its process is gone: signal the group only if its leader started
    // with the execution (as start-up recovery checks).
    if !process::group_is_executions(pid, e.started_at) || !process::group_alive(pid) {
        let why = if process::group_alive(pid) {
            format!("process {pid} is no longer its (the pid was reused); nothing was signalled")
        } else {
            format!("process group {pid} is gone")
        };
        if ctx.global.json {
            output::json(&Killed {
                execution: e.id,
                job: &e.job,
                killed: false,
                cancelled_by: None,
                already: None,
                reason: Some(why),
            })?;
        } else {
            output::text(&format!(
                "execution {} of {} had no live process left ({why}); the runner records its end",
                e.id, e.job
            ))?;
        }
        return Ok(ExitCode::Ok);
    }
    let reason = Some(format!("execution {} (process group {pid})", e.id));
    let event = AuditEvent {
        system: ctx.system(),
        target: Some(&e.job),
        refused: false,
        reason,
        diff: serde_json::Value::Object(Default::default()),
    };
    let by = match store.request_cancel(e.id, ctx.by("kill"), &event, ctx.now())? {
        Cancelling::Requested { by } => by,
        Cancelling::Already { by, ended } => return already(ctx, &e, &by, ended),
        Cancelling::NotRunning(status) => {
            invalid!("execution {} is not running (it is {status})", e.id)
        }
    };
    let existed = process::kill_group(pid, execute::KILL_GRACE);
    if ctx.global.json {
        output::json(&Killed {
            execution: e.id,
            job: &e.job,
            killed: existed,
            cancelled_by: Some(&by),
            already: None,
            reason: None,
        })?;
    } else if existed {
        output::text(&format!(
            "cancelled execution {} of {} (process group {pid} killed)",
            e.id, e.job
        ))?;
    } else {
        output::text(&format!(
            "cancelled execution {} of {}: it had no live process left; the runner records its end",
            e.id, e.job
        ))?;
    }
    Ok(ExitCode::Ok)
}

/// A second `kill`: say who is cancelling it; nothing is signalled or written.
fn already(ctx: &Ctx, e: &Execution, by: &str, ended: bool) -> crate::exit::Result<ExitCode> {
    if ctx.global.json {
        output::json(&Killed {
            execution: e.id,
            job: &e.job,
            killed: false,
            cancelled_by: Some(by),
            already: Some(if ended { "cancelled" } else { "cancelling" }),
            reason: None,
        })?;
    } else if ended {
        output::text(&format!(
            "execution {} of {} was already cancelled by {by}",
            e.id, e.job
        ))?;
    } else {
        output::text(&format!(
            "execution {} of {} is already being cancelled (by {by}); not signalled again",
            e.id, e.job
        ))?;
    }
    Ok(ExitCode::Ok)
}

pub fn prune(args: PruneArgs, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let store = ctx.store()?;
    let s = store.settings(ctx.system())?;
    // A cleanup_days too large for a date keeps everything, as 0 does.
    let older = (s.cleanup_days > 0)
        .then(|| {
            i64::try_from(s.cleanup_days)
                .ok()
                .and_then(chrono::Duration::try_days)
                .and_then(|d| ctx.now().checked_sub_signed(d))
        })
        .flatten();
    let keep = if s.keep_executions == 0 {
        u64::MAX >> 1
    } else {
        s.keep_executions
    };
    let mut audit_deleted = 0;
    if !args.dry_run {
        loop {
            let n = store.prune_audit(ctx.system(), ctx.now(), 1000)?;
            audit_deleted += n;
            if n < 1000 {
                break;
            }
        }
    }
    let count = if args.dry_run {
        store.prune_count(ctx.system(), keep, older)?
    } else {
        let mut quota = store.over_quota(ctx.system(), keep)?;
        let mut total = 0;
        loop {
            let n = store.prune_batch(ctx.system(), keep, older, 1000, &mut quota)?;
            total += n;
            if n < 1000 {
                break total;
            }
        }
    };
    if !args.dry_run {
        ctx.audit(
            &store,
            "prune",
            None,
            Some(format!(
                "deleted {count} executions and {audit_deleted} audit rows"
            )),
        )?;
    }
    if ctx.global.json {
        output::json(&Pruned {
            deleted: if args.dry_run { 0 } else { count },
            would_delete: count,
            audit_deleted,
            dry_run: args.dry_run,
        })?;
    } else {
        output::text(&format!(
            "{} {count} execution{} ({})",
            if args.dry_run {
                "would delete"
            } else {
                "deleted"
            },
            plural(count as u64),
            retention(s.keep_executions, s.cleanup_days)
        ))?;
    }
    Ok(ExitCode::Ok)
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// What the system's retention keeps, in words: `keeping the newest 100 per job and nothing older
/// than 1 day`, `keeping every execution`.
fn retention(keep_executions: u64, cleanup_days: u64) -> String {
    let per_job = match keep_executions {
        0 => None,
        n => Some(format!("the newest {n} per job")),
    };
    let age = match cleanup_days {
        0 => None,
        d => Some(format!("nothing older than {d} day{}", plural(d))),
    };
    match (per_job, age) {
        (None, None) => "keeping every execution: keep_executions and cleanup_days are 0".into(),
        (Some(k), None) => format!("keeping {k}"),
        (None, Some(a)) => format!("keeping {a}"),
        (Some(k), Some(a)) => format!("keeping {k} and {a}"),
    }
}

#[cfg(test)]
mod tests {
    use super::retention;

    #[test]
    fn retention_in_words() {
        assert_eq!(
            retention(100, 1),
            "keeping the newest 100 per job and nothing older than 1 day"
        );
        assert_eq!(retention(0, 30), "keeping nothing older than 30 days");
        assert_eq!(retention(1, 0), "keeping the newest 1 per job");
        assert_eq!(
            retention(0, 0),
            "keeping every execution: keep_executions and cleanup_days are 0"
        );
    }
}
