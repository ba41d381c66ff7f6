//! `cronmgr run-now NAME [--no-retry] [--force] [--no-alert]`: run a job in the foreground,
//! streaming its output. Its final end goes through the same alert rules as a scheduled run's
//! (failure, timeout, streaks, escalation, auto-disable, recovery), and this command delivers
//! what they raise before it exits, unless `--no-alert`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::exit::Context as _;

use super::follow::follow;
use super::Ctx;
use crate::alert::delivery::Deliverer;
use crate::alert::monitor::RunEnd;
use crate::alert::Monitor;
use crate::invalid;
use crate::output;
use crate::runner::execute;
use crate::runner::process::{self, Cancel};
use crate::store::{Execution, NewExecution, Status, Trigger};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job
    pub name: String,
    /// One attempt only, even if the job has retries
    #[arg(long)]
    pub no_retry: bool,
    /// Run even if the job is running now and does not allow concurrent runs
    #[arg(long)]
    pub force: bool,
    /// With a shared PostgreSQL database: if this command dies, the runners declare its run lost (interrupted) after this long without its heartbeat
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub lease: String,
    /// Raise no alert for this run and leave the failure streak as it is (a test run); by
    /// default its end counts as a scheduled run's would: alerts, escalation, auto-disable
    #[arg(long)]
    pub no_alert: bool,
    /// The dashboard's run-now: the id of the audit row it already wrote in the web user's
    /// name, so this process writes none of its own (one row per run-now, as from a shell).
    /// Checked: a recent `run-now` row of this job by a web user, or refused.
    #[arg(long, hide = true, value_name = "AUDIT_ID")]
    pub audited: Option<i64>,
}

/// How recent the dashboard's audit row must be for `--audited` to stand in for this run's.
const AUDITED_WITHIN: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// How long `run-now` waits, at most, for its alerts to be delivered before it exits; what is not
/// sent by then stays in the outbox, for the runner to retry.
const ALERT_GRACE: Duration = Duration::from_secs(15);

pub fn run(args: Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let lease =
        crate::runner::fleet::parse_lease(&args.lease).map_err(crate::exit::Failure::usage)?;
    let store = ctx.store()?;
    let job = store.job(ctx.system(), &args.name)?;
    let settings = store.settings(ctx.system())?;
    let config = ctx.config()?;
    ctx.require_admin(&store, "run-now", &job.name, &[&job])?;
    // A row written behind cronmgr's back may hold numbers out of range: refused, as the runner
    // refuses to schedule it, before anything is claimed.
    if let Err(why) = crate::model::bounds::check_job(&job) {
        invalid!(
            "{} cannot run: {why}; fix the job (cronmgr edit {})",
            job.name,
            job.name
        );
    }
    if !args.force && !job.allow_concurrent {
        if let Some(e) = store.running(Some(job.id))?.first() {
            invalid!(
                "{} is running now (execution {}); wait for it, or pass --force to run it anyway",
                job.name,
                e.id
            );
        }
    }
    let cancel = Cancel::new();
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        let interrupted = interrupted.clone();
        let mut signals =
            signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM, libc::SIGHUP])
                .context("installing signal handlers")?;
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                interrupted.store(true, Ordering::SeqCst);
                cancel.cancel();
            }
        });
    }
    if let Some(id) = args.audited {
        check_audited(&store, ctx, &job.name, id)?;
    } else {
        audit(ctx, &store, &job.name, &args)?;
    }
    // On a shared database, be a (short-lived) member of the fleet: if this process dies, the
    // runners declare it lost after the lease and interrupt its execution.
    let presence = if store.backend() == crate::store::Backend::Postgres {
        Some(crate::runner::fleet::Presence::start(&store, lease)?)
    } else {
        None
    };
    let stream = !ctx.global.json && !ctx.global.quiet;
    let first_started = ctx.now();
    let mut attempt = 1;
    let last: Execution = loop {
        let now = ctx.now();
        let Some(timeout) = execute::attempt_timeout(&job, &settings, first_started, now) else {
            invalid!("max_runtime of {} is used up", job.name);
        };
        let id = store
            .claim(&NewExecution {
                job_id: job.id,
                status: Status::Running,
                scheduled_for: first_started,
                started_at: Some(now),
                triggered_by: if attempt == 1 {
                    Trigger::Manual
                } else {
                    Trigger::Retry
                },
                attempt,
                error_message: None,
                runner_pid: Some(std::process::id()),
                runner_id: presence.as_ref().map(|p| p.id),
                fleet: None,
                caused_by: None,
            })?
            .context("this run's slot was taken by another process")?;
        let live_log = crate::store::live_log_path(&ctx.db_path(), id);
        let db_path = ctx.db_path();
        let spec = execute::spec(&execute::Context {
            job: &job,
            db_path: &db_path,
            config,
            execution_id: id,
            attempt,
            scheduled_for: first_started,
            timeout,
            live_log: Some(live_log.clone()),
            settings: &settings,
        });
        let finish = match spec {
            Err(refused) => {
                let f = execute::not_started(format!("refused, not run: {refused}"), ctx.now());
                store.finish(id, &f)?;
                break store.execution(id)?;
            }
            Ok(spec) => {
                if stream && attempt > 1 {
                    eprintln!("--- attempt {attempt} ---");
                }
                let done = Arc::new(AtomicBool::new(false));
                let follower = stream.then(|| {
                    let done = done.clone();
                    let path = live_log.clone();
                    std::thread::spawn(move || {
                        follow(&path, Duration::from_secs(5), || {
                            done.load(Ordering::SeqCst)
                        })
                    })
                });
                let result = process::run(&spec, &cancel, |pid| {
                    let _ = store.set_pid(id, pid);
                });
                done.store(true, Ordering::SeqCst);
                if let Some(f) = follower {
                    let _ = f.join();
                }
                let _ = std::fs::remove_file(&live_log);
                match result {
                    Ok(outcome) => execute::finish(
                        &outcome,
                        timeout,
                        now,
                        (job.command != "shell").then_some(job.command.as_str()),
                    ),
                    Err(e) => execute::not_started(
                        format!("cannot start {}: {e}", spec.program.display()),
                        ctx.now(),
                    ),
                }
            }
        };
        store.finish(id, &finish)?;
        store.set_job_runs(job.id, Some(now), job.next_run_at)?;
        // As recorded: a `kill` from another process makes the end `cancelled`, and stops retries.
        let execution = store.execution(id)?;
        let failed = matches!(execution.status, Status::Failed | Status::Timeout);
        if !failed || args.no_retry || attempt > job.retries || interrupted.load(Ordering::SeqCst) {
            break execution;
        }
        let delay = execute::retry_delay(&job, attempt + 1);
        if stream {
            eprintln!(
                "{} ({}); retrying in {}",
                finish.status,
                finish.error_message.as_deref().unwrap_or(""),
                crate::duration::Human(delay)
            );
        }
        // At most bounds::MAX_DURATION (see retry_delay): far inside what an Instant holds.
        let until = std::time::Instant::now()
            .checked_add(delay)
            .context("the retry delay is past what this system's clock can count")?;
        while std::time::Instant::now() < until && !interrupted.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100).min(until - std::time::Instant::now()));
        }
        if interrupted.load(Ordering::SeqCst) {
            break execution;
        }
        attempt += 1;
    };
    if !args.no_alert {
        raise_alerts(ctx, &store, &job, &last)?;
    }
    if ctx.global.json {
        output::json(&last)?;
    } else {
        let tty = std::io::stderr().is_terminal();
        let _ = tty;
        eprintln!(
            "{}: {} in {} (execution {}, attempt {}{}){}",
            job.name,
            last.status,
            last.duration_ms
                .map(
                    |ms| crate::duration::Human(Duration::from_millis(ms.max(0) as u64))
                        .to_string()
                )
                .unwrap_or_else(|| "0ms".into()),
            last.id,
            last.attempt,
            last.exit_code
                .map(|c| format!(", exit code {c}"))
                .unwrap_or_default(),
            last.error_message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default(),
        );
    }
    if interrupted.load(Ordering::SeqCst) {
        return Ok(ExitCode::Interrupted);
    }
    Ok(match last.status {
        Status::Success => ExitCode::Ok,
        Status::Timeout => ExitCode::JobTimeout,
        // Stopped by a person (`cronmgr kill`), as Ctrl-C would have: not the job's failure.
        Status::Cancelled => ExitCode::Interrupted,
        _ => ExitCode::JobFailed,
    })
}

/// The alert rules on this run's final end, as the runner applies them after a scheduled run; then
/// deliver what they raised (up to [`ALERT_GRACE`]).
fn raise_alerts(
    ctx: &Ctx,
    store: &crate::store::Store,
    job: &crate::store::Job,
    last: &Execution,
) -> crate::exit::Result<()> {
    // As stored now: the streak and the alert settings may have changed while it ran.
    let job = store.job(ctx.system(), &job.name)?;
    let settings = store.settings(ctx.system())?;
    let end = RunEnd {
        execution_id: last.id,
        status: last.status,
        attempt: last.attempt,
        scheduled_for: last.scheduled_for,
        duration_ms: last.duration_ms.unwrap_or(0),
        exit_code: last.exit_code,
        error: last.error_message.as_deref(),
        output: last.output.as_deref().unwrap_or(""),
    };
    let smtp = ctx.config()?.smtp.clone();
    let deliverer = store
        .reopen()
        .map_err(std::io::Error::other)
        .and_then(|s| Deliverer::spawn(s, smtp));
    let deliverer = match deliverer {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start alert delivery; alerts stay queued for the runner");
            None
        }
    };
    let mut monitor = Monitor::new(&ctx.db_path(), deliverer);
    if monitor.after_run(store, &job, &settings, &end, ctx.now()) {
        tracing::warn!(job = %job.name, "the job was disabled by its failure streak");
    }
    monitor.stop(ALERT_GRACE);
    Ok(())
}

/// The audit row of a run-now from a shell: the flags that change what it does.
fn audit(
    ctx: &Ctx,
    store: &crate::store::Store,
    name: &str,
    args: &Args,
) -> crate::exit::Result<()> {
    ctx.audit(
        store,
        "run-now",
        Some(name),
        Some(
            [
                (args.no_retry, "--no-retry"),
                (args.force, "--force"),
                (args.no_alert, "--no-alert"),
            ]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, flag)| *flag)
            .collect::<Vec<_>>()
            .join(" "),
        )
        .filter(|r| !r.is_empty()),
    )?;
    Ok(())
}

/// The dashboard's identities in the audit log (`web:NAME`, `web-token`, `web-socket:UID`); an
/// OS account merely named `web…` is none of them.
fn is_web_user(user: &str) -> bool {
    user == "web-token" || user.starts_with("web:") || user.starts_with("web-socket:")
}

/// `--audited ID`: the dashboard wrote this run's audit row; make sure it did, recently, for
/// this job, so the flag cannot run a job unrecorded.
fn check_audited(
    store: &crate::store::Store,
    ctx: &Ctx,
    name: &str,
    id: i64,
) -> crate::exit::Result<()> {
    let rows = store.audit(&crate::store::AuditFilter {
        system: Some(ctx.system().to_string()),
        target: Some(name.to_string()),
        since: Some(ctx.now() - AUDITED_WITHIN),
        limit: None,
    })?;
    let found = rows
        .iter()
        .any(|r| r.id == id && r.action == "run-now" && r.outcome == "ok" && is_web_user(&r.user));
    if !found {
        invalid!("--audited {id}: no recent run-now of {name} by a web user in the audit log");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_web_user;

    #[test]
    fn only_the_dashboards_identities_count_as_web_users() {
        for u in ["web-token", "web:web", "web:alice", "web-socket:0"] {
            assert!(is_web_user(u), "{u}");
        }
        for u in ["webadmin", "web", "root", "web-tokens", "alice"] {
            assert!(!is_web_user(u), "{u}");
        }
    }
}
