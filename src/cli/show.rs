//! `cronmgr show NAME`: every field, the next runs and the recent executions.

use serde::Serialize;

use super::job_args;
use super::Ctx;
use crate::duration::human_secs;
use crate::output;
use crate::schedule::Schedule;
use crate::store::{Execution, ExecutionFilter, Job};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job
    pub name: String,
}

#[derive(Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    job: &'a Job,
    effective_timezone: String,
    effective_timeout: u64,
    description_of_schedule: String,
    /// The jobs this one runs after are its `after`; these run after it, as `NAME:ON`.
    children: Vec<String>,
    upcoming: Vec<String>,
    recent_executions: Vec<Execution>,
}

pub fn run(args: Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let store = ctx.store()?;
    let job = store.job(ctx.system(), &args.name)?.redacted();
    let settings = store.settings(ctx.system())?;
    let tz = job_args::effective_tz(&job, &settings)?;
    let schedule = Schedule::parse_for(&job.schedule, &job.system, &job.name)?;
    let mut upcoming = Vec::new();
    let mut at = ctx.now();
    while job.is_active && upcoming.len() < 3 {
        match schedule.next_after(at, tz) {
            Some(t) => {
                upcoming.push(t);
                at = t;
            }
            None => break,
        }
    }
    let recent = store.executions(&ExecutionFilter {
        system: Some(job.system.clone()),
        job: Some(job.name.clone()),
        limit: Some(5),
        ..Default::default()
    })?;
    let timeout = job.timeout.unwrap_or(settings.default_timeout);
    let children = super::chains::children(
        &store.jobs(&crate::store::JobFilter {
            system: Some(job.system.clone()),
            ..Default::default()
        })?,
        &job.name,
    );
    if ctx.global.json {
        output::json(&Shown {
            job: &job,
            effective_timezone: tz.name().to_string(),
            effective_timeout: timeout,
            description_of_schedule: schedule.describe(),
            children: children.clone(),
            upcoming: upcoming.iter().map(|t| output::utc(*t)).collect(),
            recent_executions: recent,
        })?;
        return Ok(ExitCode::Ok);
    }
    let params = serde_json::Value::Object(job.params.clone()).to_string();
    let rows = vec![
        ("name", job.name.clone()),
        ("system", job.system.clone()),
        ("description", output::opt(job.description.as_ref())),
        (
            "schedule",
            format!("{} ({})", job.schedule, schedule.describe()),
        ),
        ("runs after", chain_line(&job.after)),
        ("runs before", chain_line(&children)),
        (
            "timezone",
            if job.timezone.is_empty() {
                format!("{} (the system's)", tz.name())
            } else {
                job.timezone.clone()
            },
        ),
        (
            "active",
            match (&job.is_active, &job.disabled_reason) {
                (true, _) => "yes".into(),
                (false, Some(why)) => format!("no ({why})"),
                (false, None) => "no".into(),
            },
        ),
        ("command", job.command.clone()),
        ("params", params),
        ("category", output::opt(job.category.as_ref())),
        ("priority", job.priority.to_string()),
        (
            "timeout",
            match job.timeout {
                Some(t) => human_secs(t),
                None => format!("{} (the system's default)", human_secs(timeout)),
            },
        ),
        (
            "retries",
            format!(
                "{} ({} delay {})",
                job.retries,
                job.backoff,
                human_secs(job.retry_delay)
            ),
        ),
        ("max runtime", output::opt(job.max_runtime.map(human_secs))),
        (
            "allow concurrent",
            if job.allow_concurrent { "yes" } else { "no" }.into(),
        ),
        (
            "catch up",
            match job.starting_deadline {
                Some(d) => format!("{} (within {})", job.catch_up, human_secs(d)),
                None => job.catch_up.to_string(),
            },
        ),
        (
            "jitter",
            match job.jitter {
                Some(j) => format!("up to {} after each slot", human_secs(j)),
                None => "none".into(),
            },
        ),
        ("alerts", alerts_line(&job, &settings)),
        (
            "critical",
            if job.is_critical {
                "yes (admins only)"
            } else {
                "no"
            }
            .into(),
        ),
        (
            "limits",
            crate::limits::Limits::of(&job, &settings).describe(),
        ),
        ("cpu quota", quota_line(&job, &recent)),
        (
            "runs on",
            if job.runner_labels.is_empty() {
                "any runner".into()
            } else {
                format!("runners labelled {}", job.runner_labels.join(", "))
            },
        ),
        (
            "runs as",
            match (&job.run_user, &job.run_group) {
                (None, None) => "the runner's user".into(),
                (u, g) => format!(
                    "{}{}",
                    u.as_deref().unwrap_or("the runner's user"),
                    g.as_deref()
                        .map(|g| format!(" (group {g})"))
                        .unwrap_or_default()
                ),
            },
        ),
        (
            "failure streak",
            format!(
                "{}{}",
                job.failure_streak,
                match job.last_success_at {
                    Some(t) => format!(" (last success {})", output::local(t, tz)),
                    None => String::new(),
                }
            ),
        ),
        ("created", output::local(job.created_at, tz)),
        ("updated", output::local(job.updated_at, tz)),
        ("last run", output::opt_local(job.last_run_at, tz)),
        (
            "next runs",
            if upcoming.is_empty() {
                "-".into()
            } else {
                upcoming
                    .iter()
                    .map(|t| output::local(*t, tz))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
    ];
    let mut text = output::pairs(&rows);
    if !recent.is_empty() {
        text.push_str("\n\nrecent executions:\n");
        text.push_str(&super::history::table(&recent, tz, false));
    }
    output::text(&text)?;
    Ok(ExitCode::Ok)
}

/// The job's CPU quota, and whether its last run had it enforced.
fn quota_line(job: &Job, recent: &[Execution]) -> String {
    let Some(q) = job.cpu_quota else {
        return "none".into();
    };
    let shown = crate::model::quota::describe(q);
    match recent.iter().find_map(|e| e.cpu_quota_enforced) {
        Some(true) => format!("{shown}, enforced (cgroup cpu.max) on the last run"),
        Some(false) => format!(
            "{shown}, NOT enforced on the last run (no cgroup cpu controller: see `cronmgr status`)"
        ),
        None => format!("{shown} (enforced only where the runner has the cgroup cpu controller)"),
    }
}

/// Chain entries (`NAME:ON`) as `NAME (on success), …`; `-` for none.
fn chain_line(entries: &[String]) -> String {
    if entries.is_empty() {
        return "-".into();
    }
    (crate::model::chain::parents(entries).iter())
        .map(|a| format!("{} (on {})", a.job, a.on))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The job's alert rules, its own or (marked) its system's.
fn alerts_line(job: &Job, settings: &crate::store::Settings) -> String {
    if !job.alerts_enabled {
        return "off (--no-alerts)".into();
    }
    let mut parts = Vec::new();
    let own = |mine: bool| if mine { "" } else { " (system)" };
    if let Some(to) = job.alert_email.as_ref().or(settings.alert_email.as_ref()) {
        parts.push(format!("email {to}{}", own(job.alert_email.is_some())));
    }
    // `job` is redacted already; the system's URLs are redacted here.
    let system_url = |u: &Option<String>| u.as_deref().map(crate::model::redact::secret);
    for (what, mine, system) in [
        (
            "slack",
            &job.alert_slack,
            system_url(&settings.slack_webhook),
        ),
        (
            "webhook",
            &job.alert_webhook,
            system_url(&settings.webhook_url),
        ),
    ] {
        if let Some(url) = mine.clone().or(system) {
            parts.push(format!("{what} {url}{}", own(mine.is_some())));
        }
    }
    if let Some(n) = job.escalate_after.or(settings.escalate_after) {
        parts.push(format!(
            "escalate after {n}{}",
            own(job.escalate_after.is_some())
        ));
    }
    if let Some(n) = job.disable_after.or(settings.disable_after) {
        parts.push(format!(
            "disable after {n}{}",
            own(job.disable_after.is_some())
        ));
    }
    if let Some(s) = job.max_silence.or(settings.max_silence) {
        parts.push(format!(
            "max silence {}{}",
            human_secs(s),
            own(job.max_silence.is_some())
        ));
    }
    if parts.is_empty() {
        "on".into()
    } else {
        format!("on: {}", parts.join(", "))
    }
}
