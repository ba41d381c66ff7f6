//! The job flags `add` and `edit` share, and the checks every job passes before it is stored.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use crate::config::Config;
use crate::duration;
use crate::executor;
use crate::invalid;
use crate::model::bounds::{self, Unit};
use crate::schedule::{self, Schedule};
use crate::store::{Backoff, CatchUp, Job, Settings};

#[derive(Debug, Clone, clap::Args)]
pub struct JobArgs {
    /// Cron expression: 5 fields, 6 with leading seconds, or @hourly/@daily/@weekly/@monthly/@yearly/@reboot; @never (the default with --after): only when triggered
    #[arg(long, short = 's', value_name = "EXPR")]
    pub schedule: Option<String>,
    /// Run when JOB (of the same system) ends: on success (the default), failure (failed or timed out) or any of them, after its last retry; repeatable; `none` clears
    #[arg(long = "after", value_name = "JOB[:success|failure|any]")]
    pub after: Vec<String>,
    /// What the job is for
    #[arg(long, short = 'd')]
    pub description: Option<String>,
    /// A label to group jobs: CLEANUP, SYNC, BACKUP, MAINTENANCE, REPORT, HEALTH, …
    #[arg(long, short = 'c')]
    pub category: Option<String>,
    /// 1 (most urgent) to 10; when more jobs are due than can run, lower numbers start first [default: 5]
    #[arg(long, short = 'p', value_parser = clap::value_parser!(u8).range(1..=10))]
    pub priority: Option<u8>,
    /// Kill the job after this long (90, 30s, 5m, 2h) [default: the system's default_timeout]
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Further attempts after a failure or timeout [default: 0]
    #[arg(long)]
    pub retries: Option<u32>,
    /// Wait between attempts [default: 60s]
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION")]
    pub retry_delay: Option<String>,
    /// How the retry delay grows: linear (delay × attempt) or exponential (delay × 2^(attempt-1))
    #[arg(long, value_name = "linear|exponential")]
    pub backoff: Option<String>,
    /// Hard ceiling on a run including all its retries
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION")]
    pub max_runtime: Option<String>,
    /// Let a new run start while the previous one is still going
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub allow_concurrent: Option<bool>,
    /// Time zone of the schedule (IANA name) [default: the system's]
    #[arg(long, short = 'z', value_name = "ZONE")]
    pub timezone: Option<String>,
    /// Slots missed while the runner was down: none (as cron) or latest (run the last one once)
    #[arg(long, value_name = "none|latest")]
    pub catch_up: Option<String>,
    /// With --catch-up latest: how late the missed slot may still start [default: no limit]
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION")]
    pub starting_deadline: Option<String>,
    /// Fire each slot up to DURATION late (a delay derived from the job and the slot), so jobs
    /// of one schedule do not all start at once; shorter than the schedule's shortest interval
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION")]
    pub jitter: Option<String>,
    /// The executor to run (default: shell, with the program given after --)
    #[arg(long, value_name = "EXECUTOR")]
    pub command: Option<String>,
    /// An executor parameter; VALUE may be JSON (repeatable)
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Send this job's alerts to these addresses (comma-separated) instead of the system's alert_email
    #[arg(long, value_name = "ADDRESSES", help_heading = "Alerts")]
    pub alert_email: Option<String>,
    /// Send this job's Slack alerts to this incoming-webhook URL instead of the system's slack_webhook; `none` clears
    #[arg(long, value_name = "URL", help_heading = "Alerts")]
    pub alert_slack: Option<String>,
    /// POST this job's alerts to this webhook URL instead of the system's webhook_url (signed with webhook_secret); `none` clears
    #[arg(long, value_name = "URL", help_heading = "Alerts")]
    pub alert_webhook: Option<String>,
    /// Escalate (alert the escalate_to list too) after this many failures in a row [default: the system's]
    #[arg(long, value_name = "N", help_heading = "Alerts")]
    pub escalate_after: Option<String>,
    /// Disable the job after this many failures in a row [default: the system's]
    #[arg(long, value_name = "N", help_heading = "Alerts")]
    pub disable_after: Option<String>,
    /// Alert when the job has not succeeded for this long, whatever the reason (e.g. 26h) [default: the system's]
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "DURATION",
        help_heading = "Alerts"
    )]
    pub max_silence: Option<String>,
    /// Send no alert at all for this job (auto-disable still applies)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL", help_heading = "Alerts")]
    pub no_alerts: Option<bool>,
    /// Only admins (root, or [admins] of the config file) may change, remove, disable, run or kill it
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL", help_heading = "Limits and permissions")]
    pub critical: Option<bool>,
    /// Address space of each of the job's processes (RLIMIT_AS): 512M, 2G; `none` clears [default: the system's default_memory_limit]
    #[arg(long, value_name = "SIZE", help_heading = "Limits and permissions")]
    pub memory_limit: Option<String>,
    /// CPU time of each of the job's processes (RLIMIT_CPU): 90s, 10m; `none` clears [default: the system's default_cpu_limit]
    #[arg(long, value_name = "DURATION", help_heading = "Limits and permissions")]
    pub cpu_limit: Option<String>,
    /// A share of CPU time (cgroup cpu.max, needs the runner's cgroup cpu controller): CPUs (0.5, 2) or percent of one CPU (50%); `none` clears
    #[arg(long, value_name = "CPUS", help_heading = "Limits and permissions")]
    pub cpu_quota: Option<String>,
    /// Open files per process (RLIMIT_NOFILE); `none` clears [default: the system's default_nofile_limit]
    #[arg(long, value_name = "N", help_heading = "Limits and permissions")]
    pub nofile_limit: Option<String>,
    /// Processes of the job's user, all counted (RLIMIT_NPROC; not enforced for root); `none` clears [default: the system's default_nproc_limit]
    #[arg(long, value_name = "N", help_heading = "Limits and permissions")]
    pub nproc_limit: Option<String>,
    /// Run as this user (the runner must be root); `none` clears
    #[arg(long, value_name = "NAME", help_heading = "Limits and permissions")]
    pub user: Option<String>,
    /// Run with this group [default: the user's primary group]; `none` clears
    #[arg(long, value_name = "NAME", help_heading = "Limits and permissions")]
    pub group: Option<String>,
    /// Run only on runners started with this label (`cronmgr run --label`); repeat for several, all required; `none` clears
    #[arg(
        long = "runner-label",
        value_name = "LABEL",
        help_heading = "Limits and permissions"
    )]
    pub runner_labels: Vec<String>,
    /// The program and its arguments, for the shell executor
    #[arg(last = true, value_name = "PROGRAM ARG")]
    pub argv: Vec<String>,
}

/// Names: what a shell, a file name and a URL can carry without quoting.
pub fn check_name(name: &str) -> crate::exit::Result<()> {
    if name.is_empty()
        || name.len() > 100
        || name.starts_with(['-', '.'])
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        invalid!(
            "invalid job name {name:?}: use 1 to 100 letters, digits, '.', '_' or '-', not starting with '-' or '.'"
        );
    }
    Ok(())
}

fn positive_secs(flag: &str, text: &str) -> crate::exit::Result<u64> {
    if duration::parse_secs(text) == Ok(0) {
        invalid!("--{flag} must be more than zero, got {text:?}");
    }
    secs_within(flag, text, 1)
}

/// A duration flag within `min` and [`bounds::MAX_DURATION`].
fn secs_within(flag: &str, text: &str, min: u64) -> crate::exit::Result<u64> {
    bounds::parse_duration(&format!("--{flag}"), text, min)
        .map_err(|e| crate::exit::Failure::usage(e.to_string()))
}

/// A limit already parsed by `limits`, checked against its ceiling.
fn limit_within(
    flag: &str,
    value: Option<u64>,
    max: u64,
    unit: Unit,
) -> crate::exit::Result<Option<u64>> {
    if let Some(n) = value {
        bounds::check(flag, n, unit.show(n), (1, max), unit)
            .map_err(|e| crate::exit::Failure::usage(e.to_string()))?;
    }
    Ok(value)
}

/// An optional duration; with `clearable`, `none`/`default` clears it.
fn opt_secs(flag: &str, text: &str, clearable: bool) -> crate::exit::Result<Option<u64>> {
    if clearable && matches!(text, "none" | "default") {
        return Ok(None);
    }
    positive_secs(flag, text).map(Some)
}

impl JobArgs {
    /// True when no flag at all was given.
    pub fn is_empty(&self) -> bool {
        self.schedule.is_none()
            && self.after.is_empty()
            && self.description.is_none()
            && self.category.is_none()
            && self.priority.is_none()
            && self.timeout.is_none()
            && self.retries.is_none()
            && self.retry_delay.is_none()
            && self.backoff.is_none()
            && self.max_runtime.is_none()
            && self.allow_concurrent.is_none()
            && self.timezone.is_none()
            && self.catch_up.is_none()
            && self.starting_deadline.is_none()
            && self.jitter.is_none()
            && self.command.is_none()
            && self.params.is_empty()
            && self.argv.is_empty()
            && self.alert_email.is_none()
            && self.alert_slack.is_none()
            && self.alert_webhook.is_none()
            && self.escalate_after.is_none()
            && self.disable_after.is_none()
            && self.max_silence.is_none()
            && self.no_alerts.is_none()
            && self.critical.is_none()
            && self.memory_limit.is_none()
            && self.cpu_limit.is_none()
            && self.cpu_quota.is_none()
            && self.nofile_limit.is_none()
            && self.nproc_limit.is_none()
            && self.user.is_none()
            && self.group.is_none()
            && self.runner_labels.is_empty()
    }

    /// Apply the given flags to `job`. `editing` allows clearing optional values with `none`.
    pub fn apply(&self, job: &mut Job, editing: bool) -> crate::exit::Result<()> {
        if let Some(s) = &self.schedule {
            job.schedule = s.trim().to_string();
        }
        if !self.after.is_empty() {
            job.after = super::chains::parse_after(&self.after)?;
        }
        if let Some(d) = &self.description {
            job.description = (!d.is_empty()).then(|| d.clone());
        }
        if let Some(c) = &self.category {
            let c = c.trim();
            if !c.is_empty()
                && !c
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "_-".contains(ch))
            {
                invalid!("invalid category {c:?}: use letters, digits, '_' or '-'");
            }
            job.category = (!c.is_empty()).then(|| c.to_ascii_uppercase());
        }
        if let Some(p) = self.priority {
            job.priority = p;
        }
        if let Some(t) = &self.timeout {
            job.timeout = opt_secs("timeout", t, editing)?;
        }
        if let Some(r) = self.retries {
            let max = u64::from(bounds::MAX_RETRIES);
            bounds::check("--retries", u64::from(r), r, (0, max), Unit::Count)
                .map_err(|e| crate::exit::Failure::usage(e.to_string()))?;
            job.retries = r;
        }
        if let Some(d) = &self.retry_delay {
            job.retry_delay = secs_within("retry-delay", d, 0)?;
        }
        if let Some(b) = &self.backoff {
            job.backoff = b.parse::<Backoff>().map_err(crate::exit::Failure::usage)?;
        }
        if let Some(m) = &self.max_runtime {
            job.max_runtime = opt_secs("max-runtime", m, editing)?;
        }
        if let Some(a) = self.allow_concurrent {
            job.allow_concurrent = a;
        }
        if let Some(z) = &self.timezone {
            job.timezone = if z.is_empty() {
                String::new()
            } else {
                schedule::parse_timezone(z)?.name().to_string()
            };
        }
        if let Some(c) = &self.catch_up {
            job.catch_up = c.parse::<CatchUp>().map_err(crate::exit::Failure::usage)?;
        }
        if let Some(d) = &self.starting_deadline {
            job.starting_deadline = opt_secs("starting-deadline", d, editing)?;
        }
        if let Some(d) = &self.jitter {
            job.jitter = opt_secs("jitter", d, editing)?.filter(|s| *s > 0);
        }
        self.apply_alerts(job, editing)?;
        self.apply_limits(job)?;
        self.apply_command(job)
    }

    fn apply_limits(&self, job: &mut Job) -> crate::exit::Result<()> {
        use crate::model::size as limits;
        let bad = |e: String| crate::exit::Failure::usage(e);
        if let Some(c) = self.critical {
            job.is_critical = c;
        }
        if let Some(v) = &self.memory_limit {
            let flag = "--memory-limit";
            let n = limits::parse_opt_bytes(flag, v.trim()).map_err(bad)?;
            job.memory_limit = limit_within(flag, n, bounds::MAX_MEMORY, Unit::Bytes)?;
        }
        if let Some(v) = &self.cpu_limit {
            let flag = "--cpu-limit";
            let n = limits::parse_opt_cpu(flag, v.trim()).map_err(bad)?;
            job.cpu_limit = limit_within(flag, n, bounds::MAX_DURATION, Unit::Seconds)?;
        }
        if let Some(v) = &self.cpu_quota {
            job.cpu_quota = crate::model::quota::parse("--cpu-quota", v).map_err(bad)?;
        }
        if let Some(v) = &self.nofile_limit {
            let flag = "--nofile-limit";
            let n = limits::parse_opt_count(flag, v.trim()).map_err(bad)?;
            job.nofile_limit = limit_within(flag, n, bounds::MAX_NOFILE, Unit::Count)?;
        }
        if let Some(v) = &self.nproc_limit {
            let flag = "--nproc-limit";
            let n = limits::parse_opt_count(flag, v.trim()).map_err(bad)?;
            job.nproc_limit = limit_within(flag, n, bounds::MAX_NPROC, Unit::Count)?;
        }
        let name = |v: &str| (!matches!(v.trim(), "" | "none")).then(|| v.trim().to_string());
        if let Some(u) = &self.user {
            job.run_user = name(u);
        }
        if let Some(g) = &self.group {
            job.run_group = name(g);
        }
        if !self.runner_labels.is_empty() {
            job.runner_labels = runner_labels(&self.runner_labels).map_err(bad)?;
        }
        Ok(())
    }

    fn apply_alerts(&self, job: &mut Job, editing: bool) -> crate::exit::Result<()> {
        if let Some(e) = &self.alert_email {
            let e = e.trim();
            if (editing && matches!(e, "none" | "default")) || e.is_empty() {
                job.alert_email = None;
            } else if e
                .split(',')
                .all(|a| crate::model::looks_like_email(a.trim()))
            {
                job.alert_email = Some(e.to_string());
            } else {
                invalid!("--alert-email must be an email address or a comma-separated list of them, got {e:?}");
            }
        }
        let url = |flag: &str, v: &str| {
            crate::model::alert::parse_url(flag, v).map_err(crate::exit::Failure::usage)
        };
        if let Some(u) = &self.alert_slack {
            job.alert_slack = url("--alert-slack", u)?;
        }
        if let Some(u) = &self.alert_webhook {
            job.alert_webhook = url("--alert-webhook", u)?;
        }
        let count = |flag: &str, v: &str| -> crate::exit::Result<Option<u32>> {
            if editing && matches!(v, "none" | "default") {
                return Ok(None);
            }
            let range = (1, u64::from(bounds::MAX_FAILURES));
            let n = bounds::parse_count(&format!("--{flag}"), v, range)
                .map_err(crate::exit::Failure::usage)?;
            // Within MAX_FAILURES, which a u32 holds.
            Ok(Some(u32::try_from(n).unwrap_or(bounds::MAX_FAILURES)))
        };
        if let Some(v) = &self.escalate_after {
            job.escalate_after = count("escalate-after", v)?;
        }
        if let Some(v) = &self.disable_after {
            job.disable_after = count("disable-after", v)?;
        }
        if let Some(v) = &self.max_silence {
            job.max_silence = opt_secs("max-silence", v, editing)?;
        }
        if let Some(off) = self.no_alerts {
            job.alerts_enabled = !off;
        }
        Ok(())
    }

    fn apply_command(&self, job: &mut Job) -> crate::exit::Result<()> {
        if self.command.is_none() && self.params.is_empty() && self.argv.is_empty() {
            return Ok(());
        }
        let command = self.command.clone().unwrap_or_else(|| {
            if self.argv.is_empty() {
                job.command.clone()
            } else {
                "shell".to_string()
            }
        });
        if !self.argv.is_empty() && command != "shell" {
            invalid!(
                "a program after `--` is for the shell executor, not {command:?}; give its parameters with --param"
            );
        }
        // A new executor starts from empty parameters; the same one keeps what it had, so
        // `edit NAME -- PROG ARGS` replaces argv and keeps env and cwd (secrets included).
        if command != job.command {
            job.params.clear();
        }
        job.command = command;
        for p in &self.params {
            let (k, v) = executor::parse_param(p)?;
            job.params.insert(k, v);
        }
        if !self.argv.is_empty() {
            job.params.insert(
                "argv".into(),
                Value::Array(self.argv.iter().cloned().map(Value::String).collect()),
            );
        }
        Ok(())
    }
}

/// The zone a job's schedule runs in: its own, else its system's.
pub fn effective_tz(job: &Job, settings: &Settings) -> crate::exit::Result<Tz> {
    let name = if job.timezone.is_empty() {
        &settings.timezone
    } else {
        &job.timezone
    };
    Ok(schedule::parse_timezone(name)?)
}

/// Check a job as `add` would, and its next run. The first problem, for `add` and `edit`;
/// [`problems`] gives every one.
pub fn validate(
    job: &Job,
    settings: &Settings,
    config: &Config,
    now: DateTime<Utc>,
) -> crate::exit::Result<Option<DateTime<Utc>>> {
    problems(job, settings, config, now).map_err(|all| {
        all.into_iter()
            .next()
            .unwrap_or_else(|| crate::exit::Failure::usage("the job cannot be scheduled"))
    })
}

/// Every problem of a job, each check independent of the others (`apply --check` reports them
/// all), or its next run when there is none.
pub fn problems(
    job: &Job,
    settings: &Settings,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, Vec<crate::exit::Failure>> {
    let mut found: Vec<crate::exit::Failure> = Vec::new();
    let mut keep = |r: crate::exit::Result<()>| {
        if let Err(e) = r {
            found.push(e);
        }
    };
    keep(check_name(&job.name));
    keep(bounds::check_job(job).map_err(crate::exit::Failure::usage));
    let schedule = Schedule::parse_for(&job.schedule, &job.system, &job.name)
        .map_err(|e| keep(Err(e.into())))
        .ok();
    let tz = effective_tz(job, settings).map_err(|e| keep(Err(e))).ok();
    let next = match (schedule, tz) {
        // A schedule that never fires in its zone is refused, disabled job or not.
        (Some(schedule), Some(tz)) => match schedule.first_fire(now, tz) {
            Ok(_) => {
                keep(check_jitter(job, &schedule, tz, now));
                Some(next_run(job, &schedule, tz, now))
            }
            Err(e) => {
                keep(Err(e.into()));
                None
            }
        },
        _ => None,
    };
    keep(executor::check(&job.command, &job.params, config).map_err(Into::into));
    keep(other_rules(job, settings));
    keep(check_run_as(job));
    match (found.is_empty(), next) {
        (true, Some(next)) => Ok(next),
        _ => Err(found),
    }
}

/// A jitter must be shorter than the schedule's shortest interval (over its next 100 fires), so
/// a delayed slot never runs after the next one.
fn check_jitter(
    job: &Job,
    schedule: &Schedule,
    tz: Tz,
    now: DateTime<Utc>,
) -> crate::exit::Result<()> {
    let Some(jitter) = job.jitter else {
        return Ok(());
    };
    if schedule.is_reboot() {
        invalid!("--jitter does not apply to @reboot (it fires when the runner starts)");
    }
    let mut at = now;
    let mut shortest: Option<i64> = None;
    let mut last: Option<DateTime<Utc>> = None;
    for _ in 0..100 {
        let Some(t) = schedule.next_after(at, tz) else {
            break;
        };
        if let Some(prev) = last {
            let gap = (t - prev).num_seconds();
            shortest = Some(shortest.map_or(gap, |s| s.min(gap)));
        }
        last = Some(t);
        at = t;
    }
    if let Some(gap) = shortest {
        if i64::try_from(jitter).unwrap_or(i64::MAX) >= gap {
            invalid!(
                "--jitter {} is not shorter than the schedule's shortest interval ({} between two fires)",
                crate::duration::human_secs(jitter),
                crate::duration::human_secs(gap.max(0) as u64)
            );
        }
    }
    Ok(())
}

/// The rules between fields: deadlines, timeouts.
fn other_rules(job: &Job, settings: &Settings) -> crate::exit::Result<()> {
    if job.catch_up == CatchUp::None && job.starting_deadline.is_some() {
        invalid!("--starting-deadline only applies with --catch-up latest");
    }
    if job.timeout == Some(0) || settings.default_timeout == 0 {
        invalid!("every job needs a timeout of more than zero");
    }
    if let (Some(t), Some(m)) = (job.timeout, job.max_runtime) {
        if t > m {
            invalid!(
                "the timeout ({}) is longer than max-runtime ({}), which caps every run",
                duration::human_secs(t),
                duration::human_secs(m)
            );
        }
    }
    Ok(())
}

/// `--runner-label` values: names of letters, digits, `.`, `_`, `-`; a lone `none` clears them.
pub fn runner_labels(given: &[String]) -> Result<Vec<String>, String> {
    if given.len() == 1 && given[0].trim() == "none" {
        return Ok(Vec::new());
    }
    crate::runner::fleet::labels(given).map_err(|e| format!("--runner-label: {e}"))
}

/// A job that runs as another user or group: the names must exist, and only root may ask.
fn check_run_as(job: &Job) -> crate::exit::Result<()> {
    if job.run_user.is_none() && job.run_group.is_none() {
        return Ok(());
    }
    if let Some(u) = &job.run_user {
        if crate::access::user_by_name(u).is_none() {
            invalid!("unknown user {u:?} (--user)");
        }
    }
    if let Some(g) = &job.run_group {
        if crate::access::group_gid(g).is_none() {
            invalid!("unknown group {g:?} (--group)");
        }
    }
    if !crate::config::is_root() {
        invalid!(
            "only root may run jobs as another user or group (--user, --group; jobs.d keys user, group): the runner must be root to switch"
        );
    }
    Ok(())
}

/// The next run of an active job; None when disabled or never.
pub fn next_run(
    job: &Job,
    schedule: &Schedule,
    tz: Tz,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if !job.is_active {
        return None;
    }
    schedule.next_after(now, tz)
}
