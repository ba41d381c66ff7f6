//! One execution, shared by the runner and `run-now`: what to spawn, how long it may take, and how
//! its outcome is recorded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::process::{Ending, Outcome, RunAs, Spec};
use crate::config::Config;
use crate::executor::{self, ParamError};
use crate::limits::Limits;
use crate::model::size::human_bytes;
use crate::store::{Backoff, Finish, Job, Settings, Status};

/// Combined output kept per execution.
pub const OUTPUT_CAP: usize = 1024 * 1024;
/// After TERM, how long a process group gets before KILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// The job's timeout, else its system's default.
pub fn timeout(job: &Job, settings: &Settings) -> Duration {
    Duration::from_secs(job.timeout.unwrap_or(settings.default_timeout).max(1))
}

/// The timeout of one attempt: the job's timeout, cut to what is left of `max_runtime` since the
/// first attempt started. None when max_runtime is already used up.
pub fn attempt_timeout(
    job: &Job,
    settings: &Settings,
    first_started: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let timeout = timeout(job, settings);
    match job.max_runtime {
        None => Some(timeout),
        Some(max) => {
            let used = (now - first_started).to_std().unwrap_or_default();
            let left = Duration::from_secs(max).checked_sub(used)?;
            (!left.is_zero()).then(|| timeout.min(left))
        }
    }
}

/// How long to wait before attempt `next_attempt` (2, 3, …): at most
/// [`bounds::MAX_DURATION`](crate::model::bounds::MAX_DURATION), however far the backoff grows (a
/// delay of a day, doubled, passes it at the 10th attempt).
pub fn retry_delay(job: &Job, next_attempt: u32) -> Duration {
    let failed = next_attempt.saturating_sub(1).max(1);
    let secs = match job.backoff {
        Backoff::Linear => job.retry_delay.saturating_mul(u64::from(failed)),
        Backoff::Exponential => job
            .retry_delay
            .saturating_mul(1u64.checked_shl(failed - 1).unwrap_or(u64::MAX)),
    };
    Duration::from_secs(secs.min(crate::model::bounds::MAX_DURATION))
}

/// When attempt `next_attempt` may start after a failure at `now`; None only when that instant
/// is past the end of the calendar chrono can hold (never a panic).
pub fn retry_at(job: &Job, next_attempt: u32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let delay = chrono::Duration::from_std(retry_delay(job, next_attempt)).ok()?;
    now.checked_add_signed(delay)
}

/// Everything the child needs, checked against the allowlist now (the database may have been edited).
pub struct Context<'a> {
    pub job: &'a Job,
    /// The database, given to the child as `CRONMGR_DB` (built-ins such as `report` read it).
    pub db_path: &'a Path,
    pub config: &'a Config,
    pub execution_id: i64,
    pub attempt: u32,
    pub scheduled_for: DateTime<Utc>,
    pub timeout: Duration,
    pub live_log: Option<PathBuf>,
    /// The job's system's settings: the default resource limits.
    pub settings: &'a Settings,
}

pub fn spec(ctx: &Context<'_>) -> Result<Spec, ParamError> {
    let job = ctx.job;
    let exec = executor::find(&job.command, ctx.config)?;
    let inv = exec.invocation(&job.params, ctx.config)?; // checks the params again
    let mut env = inv.env;
    let db = executor::absolute(ctx.db_path);
    env.retain(|(k, _)| k != "CRONMGR_DB");
    env.extend([
        ("CRONMGR_DB".to_string(), db.display().to_string()),
        ("CRONMGR_JOB".to_string(), job.name.clone()),
        ("CRONMGR_SYSTEM".to_string(), job.system.clone()),
        (
            "CRONMGR_EXECUTION_ID".to_string(),
            ctx.execution_id.to_string(),
        ),
        ("CRONMGR_ATTEMPT".to_string(), ctx.attempt.to_string()),
        (
            "CRONMGR_SCHEDULED_FOR".to_string(),
            crate::store::fmt_time(ctx.scheduled_for),
        ),
    ]);
    let run_as = run_as(job)?;
    if let Some((user, _)) = &run_as {
        env.retain(|(k, _)| !matches!(k.as_str(), "HOME" | "USER" | "LOGNAME"));
        env.extend([
            ("HOME".to_string(), user.home.clone()),
            ("USER".to_string(), user.name.clone()),
            ("LOGNAME".to_string(), user.name.clone()),
        ]);
    }
    Ok(Spec {
        program: inv.program,
        args: inv.args,
        env,
        cwd: inv.cwd,
        timeout: ctx.timeout,
        grace: KILL_GRACE,
        output_cap: OUTPUT_CAP,
        live_log: ctx.live_log.clone(),
        stdin_null: true,
        limits: Limits::of(job, ctx.settings),
        run_as: run_as.map(|(_, r)| r),
    })
}

/// The identity the job's `user`/`group` name, resolved now; None to run as the runner. Refused
/// (the job is recorded failed, never spawned) when a runner that is not root would have to
/// switch, or a name no longer resolves.
fn run_as(job: &Job) -> Result<Option<(crate::access::User, RunAs)>, ParamError> {
    if job.run_user.is_none() && job.run_group.is_none() {
        return Ok(None);
    }
    let me = crate::host::euid();
    let user = match &job.run_user {
        Some(name) => crate::access::user_by_name(name).ok_or_else(|| {
            ParamError(format!(
                "the job runs as user {name:?}, which does not exist"
            ))
        })?,
        None => crate::access::user_by_uid(me)
            .ok_or_else(|| ParamError(format!("the runner's uid {me} has no user name")))?,
    };
    let gid = match &job.run_group {
        Some(name) => crate::access::group_gid(name).ok_or_else(|| {
            ParamError(format!(
                "the job runs with group {name:?}, which does not exist"
            ))
        })?,
        None => user.gid,
    };
    if !crate::config::is_root() {
        // SAFETY: getegid has no preconditions and cannot fail.
        let my_gid = unsafe { libc::getegid() };
        if user.uid == me && gid == my_gid {
            return Ok(None); // already who it should be
        }
        return Err(ParamError(format!(
            "the job runs as {}{}, but the runner is not root (uid {me}) and cannot switch users",
            user.name,
            job.run_group
                .as_deref()
                .map(|g| format!(":{g}"))
                .unwrap_or_default()
        )));
    }
    let mut groups = crate::access::user_groups(&user);
    if !groups.contains(&gid) {
        groups.push(gid);
    }
    let run_as = RunAs {
        uid: user.uid,
        gid,
        groups,
    };
    Ok(Some((user, run_as)))
}

/// The record of an execution that ran.
/// Runs shorter than this record no CPU percentage: the kernel accounts CPU time per scheduler
/// tick (1 to 10 ms), so the share of a few milliseconds' run is noise (`echo` showed 60 to 97 %).
/// From one second on, a tick's error is under one percentage point.
pub const CPU_PERCENT_MIN_RUN: Duration = Duration::from_secs(1);

/// How an execution that ran ended. `started_at` is its row's start: `finished_at` is that plus
/// the process's own run time (from spawn to reap, on the monotonic clock), so `duration_ms`
/// is always `finished_at − started_at`. `builtin` names a built-in executor: its one-line
/// reason (the child's last `NAME: …` line) goes into the error message.
pub fn finish(
    outcome: &Outcome,
    timeout: Duration,
    started_at: DateTime<Utc>,
    builtin: Option<&str>,
) -> Finish {
    let (status, error_message) = match outcome.ending {
        Ending::Exited(0) => (Status::Success, None),
        Ending::MemoryLimit => (
            Status::Failed,
            Some(match outcome.limits.memory {
                Some(m) => format!(
                    "killed by the kernel: memory limit of {} reached (cgroup memory.max)",
                    human_bytes(m)
                ),
                None => "killed by the kernel: out of memory in its cgroup".to_string(),
            }),
        ),
        Ending::Signaled(sig) if cpu_limit_hit(outcome, sig).is_some() => (
            Status::Failed,
            cpu_limit_hit(outcome, sig).map(|secs| {
                format!(
                    "CPU limit of {} reached (killed by {})",
                    crate::duration::human_secs(secs),
                    signal_name(sig)
                )
            }),
        ),
        Ending::Exited(code) => (
            Status::Failed,
            Some(with_limit_hint(
                match builtin.and_then(|name| builtin_reason(name, &outcome.output)) {
                    Some(reason) => format!("exited with status {code}: {reason}"),
                    None => format!("exited with status {code}"),
                },
                outcome,
            )),
        ),
        Ending::Signaled(sig) => (
            Status::Failed,
            Some(with_limit_hint(
                format!("killed by signal {} ({})", sig, signal_name(sig)),
                outcome,
            )),
        ),
        Ending::TimedOut => (
            Status::Timeout,
            Some(format!(
                "timed out after {}; the process group was stopped",
                crate::duration::Human(timeout)
            )),
        ),
        Ending::Cancelled => (
            Status::Interrupted,
            Some("stopped: the runner was shutting down or the execution was killed".to_string()),
        ),
    };
    let ran = chrono::Duration::from_std(outcome.duration).unwrap_or(chrono::Duration::zero());
    let ran_ms = ran.num_milliseconds();
    Finish {
        status,
        // Whole milliseconds on both sides, so the difference of the stored instants is exact.
        finished_at: started_at
            .checked_add_signed(chrono::Duration::milliseconds(ran_ms))
            .unwrap_or(started_at),
        duration_ms: ran_ms,
        output: outcome.output.clone(),
        error_message,
        exit_code: outcome.exit_code,
        memory_used_mb: Some(outcome.max_rss_mb),
        cpu_used_percent: (outcome.duration >= CPU_PERCENT_MIN_RUN).then_some(outcome.cpu_percent),
        memory_upper_bound: Some(outcome.memory_upper_bound),
        cpu_quota_enforced: outcome.cpu_quota_enforced,
    }
}

/// A built-in's reason for failing: the last line of its output that starts with `NAME: `
/// (what `cronmgr __exec NAME` prints on stderr before exiting 1), at most 300 characters.
fn builtin_reason(name: &str, output: &str) -> Option<String> {
    let prefix = format!("{name}: ");
    let line = output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with(&prefix))?;
    let reason: String = line[prefix.len()..].chars().take(300).collect();
    (!reason.is_empty()).then_some(reason)
}

/// The CPU limit, when it is what ended the job: SIGXCPU, or SIGKILL once its seconds are used.
fn cpu_limit_hit(outcome: &Outcome, sig: i32) -> Option<u64> {
    let limit = outcome.limits.cpu?;
    let used_up = outcome.cpu_seconds + 0.5 >= limit as f64;
    (sig == libc::SIGXCPU || (sig == libc::SIGKILL && used_up)).then_some(limit)
}

/// A failed job's message, naming the limit the evidence points at: what the output says
/// (the C library's and common runtimes' wording), or a crash under a memory limit.
fn with_limit_hint(message: String, outcome: &Outcome) -> String {
    let out = &outcome.output;
    let l = &outcome.limits;
    let crashed = matches!(
        outcome.ending,
        Ending::Signaled(libc::SIGSEGV | libc::SIGABRT | libc::SIGBUS)
    );
    let says = |needles: &[&str]| needles.iter().any(|n| out.contains(n));
    let hint = if let Some(m) = l.memory.filter(|_| {
        crashed
            || says(&[
                "Cannot allocate memory",
                "MemoryError",
                "out of memory",
                "Out of memory",
                "memory allocation",
                "std::bad_alloc",
            ])
    }) {
        Some(format!(
            "hit its memory limit ({} address space)?",
            human_bytes(m)
        ))
    } else if let Some(n) = l.nproc.filter(|_| {
        says(&[
            "Resource temporarily unavailable",
            "Cannot fork",
            "can't fork",
            "fork: retry",
        ])
    }) {
        Some(format!("hit its process limit ({n} processes)?"))
    } else {
        l.nofile
            .filter(|_| says(&["Too many open files"]))
            .map(|n| format!("hit its open-file limit ({n} files)?"))
    };
    match hint {
        Some(h) => format!("{message}; {h}"),
        None => message,
    }
}

/// The record of an execution that could not start.
pub fn not_started(reason: String, now: DateTime<Utc>) -> Finish {
    Finish {
        status: Status::Failed,
        finished_at: now,
        duration_ms: 0,
        output: String::new(),
        error_message: Some(reason),
        exit_code: None,
        memory_used_mb: None,
        cpu_used_percent: None,
        memory_upper_bound: None,
        cpu_quota_enforced: None,
    }
}

pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGBUS => "SIGBUS",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn job() -> Job {
        let mut j = Job::new("s", "j", "* * * * *", "shell");
        j.retry_delay = 10;
        j
    }

    fn outcome(ending: Ending, exit_code: i32, limits: Limits) -> Outcome {
        Outcome {
            ending,
            exit_code: Some(exit_code),
            output: String::new(),
            output_bytes: 0,
            duration: Duration::from_millis(300),
            max_rss_mb: 64.0,
            memory_upper_bound: true,
            cpu_quota_enforced: None,
            cpu_percent: 0.0,
            cpu_seconds: 0.1,
            pid: 4242,
            limits,
            live_log: false,
        }
    }

    #[test]
    fn a_kill_at_the_cgroups_memory_max_is_recorded_as_the_memory_limit() {
        let limits = Limits {
            memory: Some(64 << 20),
            ..Limits::default()
        };
        let f = finish(
            &outcome(Ending::MemoryLimit, 137, limits),
            Duration::from_secs(60),
            Utc::now(),
            None,
        );
        assert_eq!(f.status, Status::Failed);
        assert_eq!(
            f.error_message.as_deref(),
            Some("killed by the kernel: memory limit of 64 MiB reached (cgroup memory.max)")
        );
        assert_eq!(f.exit_code, Some(137));
        let f = finish(
            &outcome(Ending::MemoryLimit, 137, Limits::default()),
            Duration::from_secs(60),
            Utc::now(),
            None,
        );
        assert_eq!(
            f.error_message.as_deref(),
            Some("killed by the kernel: out of memory in its cgroup")
        );
    }

    #[test]
    fn backoff_grows_as_documented() {
        let mut j = job();
        let delays: Vec<u64> = (2..=5).map(|a| retry_delay(&j, a).as_secs()).collect();
        assert_eq!(delays, vec![10, 20, 30, 40]);
        j.backoff = Backoff::Exponential;
        let delays: Vec<u64> = (2..=5).map(|a| retry_delay(&j, a).as_secs()).collect();
        assert_eq!(delays, vec![10, 20, 40, 80]);
    }

    #[test]
    fn a_huge_delay_or_backoff_waits_at_most_the_ceiling_and_never_panics() {
        let max = Duration::from_secs(crate::model::bounds::MAX_DURATION);
        let mut j = Job::new("s", "j", "@daily", "shell");
        j.retry_delay = u64::MAX;
        for backoff in [Backoff::Linear, Backoff::Exponential] {
            j.backoff = backoff;
            for attempt in [2, 3, 64, 65, 100, u32::MAX] {
                assert_eq!(retry_delay(&j, attempt), max, "{backoff} {attempt}");
            }
        }
        j.retry_delay = 86_400;
        assert_eq!(retry_delay(&j, 2), Duration::from_secs(86_400));
        assert_eq!(retry_delay(&j, 11), max);
        let now = Utc::now();
        assert_eq!(retry_at(&j, 2, now), Some(now + chrono::Duration::days(1)));
        assert_eq!(retry_at(&j, 2, DateTime::<Utc>::MAX_UTC), None);
    }

    #[test]
    fn max_runtime_caps_every_attempt() {
        let settings = Settings::defaults("s", "UTC");
        let mut j = job();
        j.timeout = Some(100);
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(
            attempt_timeout(&j, &settings, t0, t0),
            Some(Duration::from_secs(100))
        );
        j.max_runtime = Some(150);
        let later = t0 + chrono::Duration::seconds(120);
        assert_eq!(
            attempt_timeout(&j, &settings, t0, later),
            Some(Duration::from_secs(30))
        );
        let too_late = t0 + chrono::Duration::seconds(150);
        assert_eq!(attempt_timeout(&j, &settings, t0, too_late), None);
        j.timeout = None;
        assert_eq!(
            attempt_timeout(&j, &settings, t0, t0),
            Some(Duration::from_secs(150))
        );
    }
}
