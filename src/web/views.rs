//! The read-only views: each reads the store with bounded queries and gives a page body and the
//! JSON of the same data.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use chrono_tz::Tz;
use maud::{html, Markup};
use serde_json::{json, Value};

use super::charts::{self, Bar, Lane};
use super::pages::{
    chart, executions_table, job_href, ms, opt_when, pairs, rel, status_badge, when,
};
use super::User;
use crate::schedule::{self, Schedule};
use crate::store::{
    AuditFilter, Execution, ExecutionFilter, Job, JobFilter, Settings, Status, Store,
};

pub type View = anyhow::Result<(Markup, Value)>;

mod records;
pub use records::{alerts, audit, runners, settings, timeline};

/// The zone of a job: its own, else its system's.
pub fn job_tz(job: &Job, settings: &Settings) -> Tz {
    let name = if job.timezone.is_empty() {
        &settings.timezone
    } else {
        &job.timezone
    };
    schedule::parse_timezone(name).unwrap_or(Tz::UTC)
}

pub fn system_tz(settings: &Settings) -> Tz {
    schedule::parse_timezone(&settings.timezone).unwrap_or(Tz::UTC)
}

pub struct Ctx<'a> {
    pub store: &'a Store,
    pub system: &'a str,
    pub default_system: &'a str,
    pub runner_pid: Option<u32>,
    pub user: &'a User,
    pub allow_actions: bool,
}

pub fn overview(c: &Ctx<'_>) -> View {
    let now = Utc::now();
    let st = c.store;
    let settings = st.settings(c.system)?;
    let tz = system_tz(&settings);
    let totals = st.status_totals(Some(c.system), now - Duration::hours(24))?;
    let state = st.runner_state()?.filter(|s| Some(s.pid) == c.runner_pid);
    let fleet = st.runners(false)?;
    let due: Vec<_> = st
        .upcoming(Some(c.system), 200)?
        .into_iter()
        .filter(|(_, _, at)| *at <= now + Duration::hours(1))
        .collect();
    let running: Vec<Execution> = st
        .running(None)?
        .into_iter()
        .filter(|e| e.system == c.system)
        .collect();
    let mut failures = Vec::new();
    for status in [Status::Failed, Status::Timeout] {
        failures.extend(st.executions(&ExecutionFilter {
            system: Some(c.system.to_string()),
            status: Some(status),
            limit: Some(10),
            ..Default::default()
        })?);
    }
    failures.sort_by_key(|e| std::cmp::Reverse(e.id));
    failures.truncate(10);
    let alerts = st.alerts(Some(c.system), true, 20)?;
    let recent = st.recent_executions(Some(c.system), 15)?;
    let up = c.runner_pid.is_some() || fleet.iter().any(|r| r.state(now) == "up");
    let rate = totals
        .success_rate
        .map(|r| format!("{:.1}%", r * 100.0))
        .unwrap_or_else(|| "–".into());
    let body = html! {
        h1 { "Overview" span.muted { " · " (c.system) " · " (when(now, tz)) " " (tz.name()) } }
        div.tiles {
            div class=(if up { "tile ok" } else { "tile bad" }) {
                span.k { "Runner" }
                span.v { @if up { "up" } @else { "down" } }
                span.s {
                    @if let Some(s) = &state {
                        "pid " (s.pid) ", " (rel(s.started_at, now).replace("ago", "")) "up · "
                        (s.capacity) " slots, " (s.queued) " queued"
                    } @else if !fleet.is_empty() {
                        (fleet.iter().filter(|r| r.state(now) == "up").count()) " of " (fleet.len()) " fleet runners up"
                    } @else { "nothing fires: start cronmgr run" }
                }
            }
            div.tile { span.k { "Jobs" } span.v { (totals.jobs) } span.s { (totals.active) " active" } }
            div class=(if totals.running > 0 { "tile busy" } else { "tile" }) { span.k { "Running" } span.v { (totals.running) } span.s { "now" } }
            div class=(if totals.failed_recent > 0 { "tile bad" } else { "tile" }) { span.k { "Failed" } span.v { (totals.failed_recent) } span.s { "last 24 h" } }
            div.tile { span.k { "Success" } span.v { (rate) } span.s { "mean " (ms(totals.mean_duration_ms.map(|m| m as i64))) } }
            div class=(if alerts.is_empty() { "tile" } else { "tile bad" }) { span.k { "Alerts" } span.v { (alerts.len()) } span.s { "active" } }
        }
        div.cols {
            section.card {
                h2 { "Due in the next hour" span.count { (due.len()) } }
                @if due.is_empty() { p.muted { "nothing" } } @else {
                    table.grid { tbody {
                        @for (sys, job, at) in due.iter().take(25) {
                            tr {
                                td { a href=(job_href(sys, job, c.default_system)) { (job) } }
                                td.mono { (when(*at, tz)) }
                                td.num.muted { @if *at < now { span.badge.failed { "overdue" } } @else { (rel(*at, now)) } }
                            }
                        }
                    } }
                }
            }
            section.card {
                h2 { "Running now" span.count { (running.len()) } }
                @if running.is_empty() { p.muted { "nothing" } } @else {
                    table.grid { tbody {
                        @for e in &running {
                            tr {
                                td.num { a href=(format!("/executions/{}", e.id)) { (e.id) } }
                                td { a href=(job_href(&e.system, &e.job, c.default_system)) { (e.job) } }
                                td.muted { "started " (e.started_at.map(|t| rel(t, now)).unwrap_or_default()) }
                            }
                        }
                    } }
                }
            }
        }
        div.cols {
            section.card {
                h2 { "Last failures" }
                @if failures.is_empty() { p.muted { "none" } } @else {
                    table.grid { tbody {
                        @for e in &failures {
                            tr {
                                td.num { a href=(format!("/executions/{}", e.id)) { (e.id) } }
                                td { a href=(job_href(&e.system, &e.job, c.default_system)) { (e.job) } }
                                td { (status_badge(e.status)) }
                                td.mono { (when(e.scheduled_for, tz)) }
                                td.clip { (e.error_message.clone().unwrap_or_default()) }
                            }
                        }
                    } }
                }
            }
            section.card {
                h2 { "Active alerts" span.count { (alerts.len()) } }
                @if alerts.is_empty() { p.muted { "none" } } @else {
                    table.grid { tbody {
                        @for a in &alerts {
                            tr {
                                td { span.badge.failed { (a.kind.to_string()) } }
                                td { (a.summary) }
                                td.mono { (when(a.created_at, tz)) }
                            }
                        }
                    } }
                }
            }
        }
        section.card {
            h2 { "Last executions" }
            (executions_table(&recent, tz, c.default_system, true))
        }
    };
    let api = json!({
        "system": c.system,
        "generated_at": now,
        "jobs": {"total": totals.jobs, "active": totals.active, "running": totals.running, "failed_24h": totals.failed_recent},
        "runner": {"up": up, "pid": c.runner_pid, "started_at": state.as_ref().map(|s| s.started_at),
                   "capacity": state.as_ref().map(|s| s.capacity), "queued": state.as_ref().map(|s| s.queued)},
        "due_next_hour": due.iter().map(|(s, j, at)| json!({"system": s, "job": j, "at": at})).collect::<Vec<_>>(),
        "running": running.iter().map(|e| json!({"id": e.id, "job": e.job, "started_at": e.started_at})).collect::<Vec<_>>(),
        "last_failures": failures.iter().map(|e| json!({"id": e.id, "job": e.job, "status": e.status, "scheduled_for": e.scheduled_for, "error_message": e.error_message})).collect::<Vec<_>>(),
        "last_executions": recent,
        "mean_duration_ms": totals.mean_duration_ms,
        "success_rate": totals.success_rate,
        "executions_24h": totals.recent_by_status,
        "active_alerts": alerts,
    });
    Ok((body, api))
}

pub struct ListQuery {
    pub category: Option<String>,
    /// active, inactive, failing
    pub state: Option<String>,
    pub sort: String,
    pub all_systems: bool,
}

pub fn jobs(c: &Ctx<'_>, q: &ListQuery) -> View {
    let st = c.store;
    let system = (!q.all_systems).then(|| c.system.to_string());
    let mut jobs = st.jobs(&JobFilter {
        system: system.clone(),
        category: q.category.clone().filter(|s| !s.is_empty()),
        active: match q.state.as_deref() {
            Some("active") => Some(true),
            Some("inactive") => Some(false),
            _ => None,
        },
    })?;
    let last = st.newest_statuses(system.as_deref())?;
    if q.state.as_deref() == Some("failing") {
        jobs.retain(|j| matches!(last.get(&j.id), Some(Status::Failed | Status::Timeout)));
    }
    let categories: std::collections::BTreeSet<String> = st
        .jobs(&JobFilter {
            system: system.clone(),
            ..Default::default()
        })?
        .into_iter()
        .filter_map(|j| j.category)
        .collect();
    match q.sort.as_str() {
        "next" => jobs.sort_by_key(|j| (j.next_run_at.is_none(), j.next_run_at)),
        "priority" => jobs.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.name.cmp(&b.name))),
        "last" => jobs.sort_by_key(|j| std::cmp::Reverse(j.last_run_at)),
        "status" => jobs.sort_by_key(|j| last.get(&j.id).map(|s| s.to_string())),
        _ => jobs.sort_by(|a, b| (&a.system, &a.name).cmp(&(&b.system, &b.name))),
    }
    let settings = st.settings(c.system)?;
    let tz = system_tz(&settings);
    let now = Utc::now();
    let link = |sort: &str| {
        let mut l = format!("/jobs?sort={sort}");
        if let Some(cat) = &q.category {
            l.push_str(&format!("&category={}", super::http::encode(cat)));
        }
        if let Some(s) = &q.state {
            l.push_str(&format!("&state={}", super::http::encode(s)));
        }
        if q.all_systems {
            l.push_str("&all=1");
        }
        l
    };
    let head = |key: &str, label: &str| {
        html! { th { a href=(link(key)) class=(if q.sort == key { "sorted" } else { "" }) { (label) } } }
    };
    let body = html! {
        h1 { "Jobs" span.count { (jobs.len()) }
            @if c.allow_actions { a.button.primary.right href="/jobs/new" { "New job" } } }
        form.filters method="get" action="/jobs" {
            label { "Category " select name="category" {
                option value="" { "all" }
                @for cat in &categories { option value=(cat) selected[q.category.as_deref() == Some(cat)] { (cat) } }
            } }
            label { "State " select name="state" {
                @for (v, l) in [("", "all"), ("active", "active"), ("inactive", "disabled"), ("failing", "failing")] {
                    option value=(v) selected[q.state.as_deref().unwrap_or("") == v] { (l) }
                }
            } }
            label { input type="checkbox" name="all" value="1" checked[q.all_systems]; " every system" }
            input type="hidden" name="sort" value=(q.sort);
            button { "Filter" }
        }
        table.grid.jobs {
            thead { tr {
                @if q.all_systems { th { "System" } }
                (head("name", "Name")) th { "Schedule" } (head("next", "Next run")) (head("status", "Last status"))
                (head("last", "Last run")) th { "Category" } (head("priority", "Pri")) th { "Active" }
            } }
            tbody {
                @for j in &jobs {
                    tr class=(if j.is_active { "" } else { "off" }) {
                        @if q.all_systems { td { (j.system) } }
                        td { a href=(job_href(&j.system, &j.name, c.default_system)) { (j.name) }
                             @if j.is_critical { " " span.tag { "critical" } } }
                        td.mono { (j.schedule) }
                        td.mono { @if let (true, Some(t)) = (j.is_active, j.next_run_at) { (when(t, tz)) " " span.muted { (rel(t, now)) } } @else { "–" } }
                        td { @if let Some(s) = last.get(&j.id) { (status_badge(*s)) } @else { span.muted { "never" } } }
                        td.mono { (opt_when(j.last_run_at, tz)) }
                        td { (j.category.clone().unwrap_or_default()) }
                        td.num { (j.priority) }
                        td { @if j.is_active { "yes" } @else { span.muted { "no" } } }
                    }
                }
            }
        }
    };
    let api: Vec<Value> = jobs
        .iter()
        .map(|j| {
            let mut v = serde_json::to_value(j.redacted()).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("last_status".into(), json!(last.get(&j.id)));
            }
            v
        })
        .collect();
    Ok((body, Value::Array(api)))
}

/// The next `n` fire times of a schedule, with DST notes.
pub fn upcoming(
    schedule: &Schedule,
    tz: Tz,
    n: usize,
) -> Vec<(chrono::DateTime<Utc>, Option<String>)> {
    let mut out = Vec::new();
    let mut at = Utc::now();
    while out.len() < n {
        let Some(t) = schedule.next_after(at, tz) else {
            break;
        };
        out.push((t, schedule::dst_note(schedule, t, tz)));
        at = t;
    }
    out
}

pub fn job(c: &Ctx<'_>, name: &str) -> View {
    let st = c.store;
    let job = st.job(c.system, name)?.redacted();
    let settings = st.settings(c.system)?;
    let tz = job_tz(&job, &settings);
    let parsed = Schedule::parse_for(&job.schedule, &job.system, &job.name);
    let described = parsed
        .as_ref()
        .map(|s| s.describe())
        .unwrap_or_else(|e| e.to_string());
    let next = match (&parsed, job.is_active) {
        (Ok(s), true) => upcoming(s, tz, 10),
        _ => Vec::new(),
    };
    let now = Utc::now();
    let history = st.executions(&ExecutionFilter {
        system: Some(job.system.clone()),
        job: Some(job.name.clone()),
        // The newest runs, by the job's index; the per-day chart keeps the last 14 days of them.
        limit: Some(500),
        ..Default::default()
    })?;
    let timeout = job.timeout.unwrap_or(settings.default_timeout);
    let runs: Vec<&Execution> = history
        .iter()
        .filter(|e| e.duration_ms.is_some() && e.status != Status::Running)
        .take(60)
        .collect();
    let ordered: Vec<&&Execution> = runs.iter().rev().collect();
    let dur = charts::bars(
        "duration per run",
        &ordered
            .iter()
            .map(|e| Bar {
                value: e.duration_ms.unwrap_or(0) as f64 / 1000.0,
                class: status_class(e.status),
                title: format!(
                    "#{} {} {} in {}",
                    e.id,
                    when(e.scheduled_for, tz),
                    e.status,
                    ms(e.duration_ms)
                ),
            })
            .collect::<Vec<_>>(),
        Some((
            timeout as f64,
            format!("timeout {}", crate::duration::human_secs(timeout)),
        )),
        &charts::secs,
    );
    let mem_bars: Vec<Bar> = ordered
        .iter()
        .map(|e| Bar {
            value: e.memory_used_mb.unwrap_or(0.0),
            class: status_class(e.status),
            title: format!("#{} peak {:.1} MB", e.id, e.memory_used_mb.unwrap_or(0.0)),
        })
        .collect();
    let limit_mb = job.memory_limit.or(settings.default_memory_limit).map(|b| {
        (
            b as f64 / 1_048_576.0,
            format!("limit {}", crate::model::size::human_bytes(b)),
        )
    });
    let mem = charts::bars("peak memory per run", &mem_bars, limit_mb, &|v| {
        format!("{v:.0} MB")
    });
    let mut days: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for d in 0..14 {
        let day = (now - Duration::days(13 - d))
            .with_timezone(&tz)
            .format("%Y-%m-%d")
            .to_string();
        days.insert(day, (0, 0));
    }
    for e in &history {
        let day = e
            .scheduled_for
            .with_timezone(&tz)
            .format("%Y-%m-%d")
            .to_string();
        if let Some(slot) = days.get_mut(&day) {
            match e.status {
                Status::Success => slot.0 += 1,
                Status::Failed | Status::Timeout => slot.1 += 1,
                _ => {}
            }
        }
    }
    let per_day = charts::per_day(
        &days
            .into_iter()
            .map(|(d, (a, b))| (d, a, b))
            .collect::<Vec<_>>(),
    );
    let recent: Vec<&Execution> = history.iter().take(20).collect();
    let params =
        serde_json::to_string_pretty(&Value::Object(job.params.clone())).unwrap_or_default();
    let csrf = super::pages::csrf(Some(c.user));
    let href = job_href(&job.system, &job.name, c.default_system);
    let action = |what: &str| {
        format!(
            "/jobs/{}/{what}{}",
            super::http::encode(&job.name),
            if job.system == c.default_system {
                String::new()
            } else {
                format!("?system={}", super::http::encode(&job.system))
            }
        )
    };
    let body = html! {
        h1 { (job.name)
            @if !job.is_active { " " span.badge.skipped { "disabled" } }
            @if job.is_critical { " " span.tag { "critical" } }
            span.muted { " · " (job.system) }
        }
        @if c.allow_actions {
            div.actions {
                a.button href=(action("edit")) { "Edit" }
                form.inline method="post" action=(action(if job.is_active { "disable" } else { "enable" })) {
                    (csrf) button { @if job.is_active { "Disable" } @else { "Enable" } } }
                form.inline method="post" action=(action("run")) { (csrf) button.primary { "Run now" } }
            }
        }
        @if let Some(d) = &job.description { p.lead { (d) } }
        div.cols {
            section.card {
                h2 { "Schedule" }
                p { code { (job.schedule) } " — " (described) }
                p.muted { "time zone " (tz.name()) @if job.timezone.is_empty() { " (the system's)" } }
                h3 { "Next " (next.len()) " fire times" }
                @if next.is_empty() { p.muted { @if job.is_active { "none" } @else { "disabled: it does not fire" } } }
                ol.fires {
                    @for (t, note) in &next {
                        li { span.mono { (when(*t, tz)) } " " span.muted { (rel(*t, now)) }
                             @if let Some(n) = note { br; span.note { "DST: " (n) } } }
                    }
                }
            }
            section.card {
                h2 { "Job" }
                (pairs(&[
                    ("command", html! { code { (job.command) } }),
                    ("params", html! { pre.params { (params) } }),
                    ("category", html! { (job.category.clone().unwrap_or_else(|| "–".into())) }),
                    ("priority", html! { (job.priority) }),
                    ("timeout", html! { (crate::duration::human_secs(timeout)) @if job.timeout.is_none() { span.muted { " (system default)" } } }),
                    ("retries", html! { (job.retries) " (" (job.backoff.to_string()) ", delay " (crate::duration::human_secs(job.retry_delay)) ")" }),
                    ("max runtime", html! { (job.max_runtime.map(crate::duration::human_secs).unwrap_or_else(|| "–".into())) }),
                    ("concurrent", html! { @if job.allow_concurrent { "allowed" } @else { "no" } }),
                    ("catch up", html! { (job.catch_up.to_string()) }),
                    ("alerts", html! { @if job.alerts_enabled { "on" } @else { "off" } }),
                    ("limits", html! { (crate::limits::Limits::of(&job, &settings).describe()) }),
                    ("runs as", html! { (job.run_user.clone().unwrap_or_else(|| "the runner's user".into())) }),
                    ("runs on", html! { @if job.runner_labels.is_empty() { "any runner" } @else { (job.runner_labels.join(", ")) } }),
                    ("failure streak", html! { (job.failure_streak) }),
                    ("disabled because", html! { (job.disabled_reason.clone().unwrap_or_else(|| "–".into())) }),
                    ("last success", html! { (opt_when(job.last_success_at, tz)) }),
                    ("last run", html! { (opt_when(job.last_run_at, tz)) }),
                    ("created", html! { (when(job.created_at, tz)) }),
                    ("updated", html! { (when(job.updated_at, tz)) }),
                ]))
            }
        }
        div.charts {
            (chart("Duration per run (last 60)", dur))
            (chart("Peak memory per run", mem))
            (chart("Succeeded / failed per day (14 days, of the last 500 runs)", per_day))
        }
        section.card {
            h2 { "Recent executions" a.right href=(format!("/api/jobs/{}/history", super::http::encode(&job.name))) { "JSON" } }
            (executions_table(&recent.iter().map(|e| brief(e)).collect::<Vec<_>>(), tz, c.default_system, false))
        }
        p.muted { a href=(href) { "permalink" } }
    };
    let api = json!({
        "job": job,
        "effective_timezone": tz.name(),
        "effective_timeout": timeout,
        "description_of_schedule": described,
        "upcoming": next.iter().map(|(t, n)| json!({"at": t, "dst_note": n})).collect::<Vec<_>>(),
        "recent_executions": recent.iter().map(|e| brief(e)).collect::<Vec<_>>(),
    });
    Ok((body, api))
}

pub fn status_class(s: Status) -> &'static str {
    match s {
        Status::Success => "success",
        Status::Failed => "failed",
        Status::Timeout => "timeout",
        Status::Running => "running",
        Status::Cancelled => "cancelled",
        _ => "skipped",
    }
}

pub fn brief(e: &Execution) -> crate::store::ExecutionBrief {
    crate::store::ExecutionBrief {
        id: e.id,
        job: e.job.clone(),
        system: e.system.clone(),
        status: e.status,
        scheduled_for: e.scheduled_for,
        started_at: e.started_at,
        duration_ms: e.duration_ms,
        exit_code: e.exit_code,
        cancelled_by: e.cancelled_by.clone(),
    }
}

pub fn execution(c: &Ctx<'_>, id: i64, live: Option<String>) -> View {
    let e = c.store.execution(id)?;
    let settings = c.store.settings(&e.system)?;
    let tz = system_tz(&settings);
    let output = match (&live, &e.output) {
        (Some(l), _) => l.clone(),
        (None, Some(o)) => o.clone(),
        (None, None) => String::new(),
    };
    let running = e.status == Status::Running;
    let body = html! {
        h1 { "Execution " (e.id) " " (status_badge(e.status)) span.muted { " · " a href=(job_href(&e.system, &e.job, c.default_system)) { (e.job) } } }
        @if running && c.allow_actions {
            div.actions { form.inline method="post" action=(format!("/executions/{}/kill", e.id)) {
                (super::pages::csrf(Some(c.user))) button.danger { "Kill" } } }
        }
        section.card {
            (pairs(&[
                ("triggered by", html! { (e.triggered_by.to_string()) " (attempt " (e.attempt) ")" }),
                ("scheduled for", html! { (when(e.scheduled_for, tz)) }),
                ("started", html! { (opt_when(e.started_at, tz)) }),
                ("finished", html! { (opt_when(e.finished_at, tz)) }),
                ("duration", html! { (ms(e.duration_ms)) }),
                ("exit code", html! { (e.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "–".into())) }),
                ("peak memory", html! { (e.memory_used_mb.map(|m| format!("{}{m:.1} MB", if e.memory_upper_bound == Some(true) { "≤ " } else { "" })).unwrap_or_else(|| "–".into())) }),
                ("cpu", html! { (e.cpu_used_percent.map(|m| format!("{m:.1}%")).unwrap_or_else(|| "–".into())) }),
                ("error", html! { (e.error_message.clone().unwrap_or_else(|| "–".into())) }),
                ("cancelled by", html! { (e.cancelled_by.clone().unwrap_or_else(|| "–".into())) }),
            ]))
        }
        section.card {
            h2 { "Output" @if running { " " span.badge.running #live-state { "live" } } }
            pre.output #output data-stream=[running.then(|| format!("/executions/{}/stream", e.id))] { (output) }
        }
    };
    let mut api = serde_json::to_value(&e)?;
    if let (Value::Object(m), Some(l)) = (&mut api, live) {
        m.insert("output".into(), Value::String(l));
    }
    Ok((body, api))
}

pub use super::pages::not_found;
