//! `cronmgr status [--watch [SECONDS]]`: the dashboard. Totals, the runner, the next runs, the
//! last executions, each chain's last run, health over the last day and the open alerts, from
//! bounded indexed queries.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Ctx;
use crate::output::{self, Column};
use crate::runner::process::Accounting;
use crate::store::{Alert, ChainRun, ChainStep, ExecutionBrief, StatusTotals, Store};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Refresh every SECONDS (default 2) until interrupted
    #[arg(long, num_args = 0..=1, default_missing_value = "2", value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub watch: Option<u64>,
    /// Every system, not only --system
    #[arg(long, short = 'A')]
    pub all_systems: bool,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub system: Option<String>,
    pub generated_at: DateTime<Utc>,
    pub jobs: Jobs,
    pub runner: Runner,
    /// On a shared PostgreSQL database: every runner that has not stopped or been declared
    /// lost, whatever host it runs on (absent on SQLite, where `runner` is the one runner).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<Fleet>,
    pub next_runs: Vec<NextRun>,
    pub last_executions: Vec<ExecutionBrief>,
    /// Each chain's last run (a root job with children and no parents): its root's last
    /// execution and what its end caused, linked by `caused_by`.
    pub chains: Vec<ChainRun>,
    /// Over the last 24 hours.
    pub mean_duration_ms: Option<f64>,
    pub success_rate: Option<f64>,
    pub executions_24h: std::collections::BTreeMap<String, u64>,
    pub active_alerts: Vec<Alert>,
}

#[derive(Debug, Serialize)]
pub struct Jobs {
    pub total: u64,
    pub active: u64,
    pub running: u64,
    pub failed_24h: u64,
}

#[derive(Debug, Serialize)]
pub struct Fleet {
    /// Runners whose heartbeat is within their lease.
    pub runners_up: u64,
    pub runners: Vec<FleetRunner>,
}

#[derive(Debug, Serialize)]
pub struct FleetRunner {
    pub id: i64,
    pub host: String,
    pub pid: u32,
    /// `up`, or `silent` (past its lease, about to be declared lost).
    pub state: &'static str,
    pub labels: Vec<String>,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// Seconds since its last heartbeat, by the database's clock.
    pub heartbeat_age_seconds: f64,
    pub lease_seconds: u64,
    /// Executions it is running now (its load).
    pub running: u64,
    pub max_concurrent: Option<u32>,
}

impl Fleet {
    fn from_store(f: &crate::store::Fleet) -> Fleet {
        Fleet {
            runners_up: f.up().count() as u64,
            runners: f
                .runners
                .iter()
                .map(|r| FleetRunner {
                    id: r.id,
                    host: r.host.clone(),
                    pid: r.pid,
                    state: r.state(f.now),
                    labels: r.labels.clone(),
                    started_at: r.started_at,
                    heartbeat_at: r.heartbeat_at,
                    heartbeat_age_seconds: f.heartbeat_age(r),
                    lease_seconds: r.lease,
                    running: r.running,
                    max_concurrent: r.max_concurrent,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Runner {
    /// A runner is up: on SQLite the one holding the lock; on PostgreSQL any runner of the
    /// fleet (the other fields then describe this host's runner, if one is up here).
    pub up: bool,
    pub pid: Option<u32>,
    pub started_at: Option<DateTime<Utc>>,
    pub uptime_seconds: Option<i64>,
    pub cpu_percent: Option<f64>,
    pub memory_mb: Option<f64>,
    pub running: u64,
    pub capacity: Option<u32>,
    pub queued: Option<u32>,
    /// How the runner accounts for and limits its executions: cgroup v2 or rlimits (and so
    /// whether memory figures are exact or upper bounds); None when no runner is up here.
    pub resource_accounting: Option<Accounting>,
}

#[derive(Debug, Serialize)]
pub struct NextRun {
    pub system: String,
    pub job: String,
    pub at: DateTime<Utc>,
    /// The time has passed and the job has not started: no runner fired it (yet).
    pub overdue: bool,
}

pub fn collect(ctx: &Ctx, store: &Store, all: bool) -> crate::exit::Result<Status> {
    let now = Utc::now();
    let system = (!all).then(|| ctx.system());
    let totals: StatusTotals = store.status_totals(system, now - chrono::Duration::hours(24))?;
    let fleet = super::metrics::fleet(ctx, store)?;
    let pid = match &fleet {
        Some(f) => super::metrics::local_runner(f).map(|r| r.pid),
        None => super::metrics::live_runner_pid(ctx, store)?,
    };
    let fleet = fleet.as_ref().map(Fleet::from_store);
    let state = store.runner_state()?.filter(|s| Some(s.pid) == pid);
    let usage = pid.and_then(crate::host::process_usage);
    Ok(Status {
        system: system.map(str::to_string),
        generated_at: now,
        jobs: Jobs {
            total: totals.jobs,
            active: totals.active,
            running: totals.running,
            failed_24h: totals.failed_recent,
        },
        runner: Runner {
            up: pid.is_some() || fleet.as_ref().is_some_and(|f| f.runners_up > 0),
            pid,
            started_at: state.as_ref().map(|s| s.started_at),
            uptime_seconds: state.as_ref().map(|s| (now - s.started_at).num_seconds()),
            cpu_percent: usage.map(|u| u.0),
            memory_mb: usage.map(|u| u.1),
            running: totals.running,
            capacity: state.as_ref().map(|s| s.capacity),
            queued: state.as_ref().map(|s| s.queued),
            resource_accounting: pid.map(crate::runner::process::cgroup::of_process),
        },
        fleet,
        next_runs: store
            .upcoming(system, 10)?
            .into_iter()
            .map(|(system, job, at)| NextRun {
                system,
                job,
                at,
                // A second of slack: a runner that is up fires on the second.
                overdue: at + chrono::Duration::seconds(1) < now,
            })
            .collect(),
        last_executions: store.recent_executions(system, 10)?,
        chains: store.chain_runs(system)?,
        mean_duration_ms: totals.mean_duration_ms,
        success_rate: totals.success_rate,
        executions_24h: totals.recent_by_status,
        active_alerts: store.alerts(system, true, 20)?,
    })
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.1}%", v * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| crate::duration::Human(Duration::from_millis(v.max(0.0) as u64)).to_string())
        .unwrap_or_else(|| "-".into())
}

pub fn render(s: &Status) -> String {
    let r = &s.runner;
    let runner = if r.pid.is_some() {
        format!(
            "up (pid {}), since {}{}; load: cpu {}, memory {}; running {}/{}, queued {}",
            r.pid.map(|p| p.to_string()).unwrap_or_default(),
            output::opt(r.started_at.map(output::utc)),
            r.uptime_seconds
                .map(|u| format!(" ({})", crate::duration::human_secs(u.max(0) as u64)))
                .unwrap_or_default(),
            r.cpu_percent
                .map(|c| format!("{c:.1}%"))
                .unwrap_or_else(|| "-".into()),
            r.memory_mb
                .map(|m| format!("{m:.1} MB"))
                .unwrap_or_else(|| "-".into()),
            r.running,
            output::opt(r.capacity),
            output::opt(r.queued),
        )
    } else if let Some(f) = &s.fleet {
        format!(
            "none on this host; the fleet: {} up of {}",
            f.runners_up,
            f.runners.len()
        )
    } else {
        "not running".to_string()
    };
    let mut text = output::pairs(&[
        (
            "jobs",
            format!(
                "{} ({} active), {} running now, {} failed in the last 24 h",
                s.jobs.total, s.jobs.active, s.jobs.running, s.jobs.failed_24h
            ),
        ),
        ("runner", runner),
        (
            "resource accounting",
            r.resource_accounting
                .as_ref()
                .map_or_else(|| "-".to_string(), Accounting::summary),
        ),
        (
            "last 24 h",
            format!(
                "success rate {}, mean execution time {}",
                pct(s.success_rate),
                ms(s.mean_duration_ms)
            ),
        ),
        ("active alerts", s.active_alerts.len().to_string()),
    ]);
    if let Some(f) = &s.fleet {
        text.push_str("\n\nfleet:\n");
        text.push_str(&render_fleet(f));
    }
    text.push_str("\n\nnext runs:\n");
    if s.next_runs.is_empty() {
        text.push_str("  none\n");
    } else {
        text.push_str(&output::table_in(
            2,
            &[Column::new("JOB").fill(12), Column::new("AT")],
            s.next_runs.iter().map(|n| {
                let mut at = output::utc(n.at);
                if n.overdue {
                    at.push_str(" (overdue)");
                }
                vec![n.job.clone(), at]
            }),
        ));
        text.push('\n');
        if s.next_runs.iter().any(|n| n.overdue) {
            text.push_str(if s.runner.up {
                "  overdue: the runner is up and should start them now\n"
            } else {
                "  overdue: no runner is up to start them (cronmgr run)\n"
            });
        }
    }
    text.push_str("\nlast executions:\n");
    if s.last_executions.is_empty() {
        text.push_str("  none\n");
    } else {
        text.push_str(&output::table_in(
            2,
            &[
                Column::new("ID"),
                Column::new("JOB").fill(12),
                Column::new("STATUS"),
                Column::new("SCHEDULED"),
                Column::new("DURATION").drop(2),
                Column::new("EXIT").drop(1),
            ],
            s.last_executions.iter().map(|e| {
                vec![
                    e.id.to_string(),
                    e.job.clone(),
                    e.status.to_string(),
                    output::utc(e.scheduled_for),
                    ms(e.duration_ms.map(|d| d as f64)),
                    output::opt(e.exit_code),
                ]
            }),
        ));
        text.push('\n');
    }
    if !s.chains.is_empty() {
        text.push_str("\nchains (the last run of each):\n");
        let width = output::table::terminal_width();
        for c in &s.chains {
            let line = chain_line(c, s.system.is_none());
            let line = match width {
                Some(w) => output::table::ellipsize(&line, w.saturating_sub(2)),
                None => line,
            };
            text.push_str("  ");
            text.push_str(&line);
            text.push('\n');
        }
    }
    if !s.active_alerts.is_empty() {
        text.push_str("\nactive alerts:\n");
        text.push_str(&super::alerts::table(&s.active_alerts, 2));
        text.push('\n');
    }
    text
}

/// A chain's last run on one line: `backup #812 success 2026-12-05T12:00:03Z → verify #813
/// success → notify #814 failed`; several jobs after one: `a #1 failed … → (b (not triggered),
/// c #3 success)`. `system`: prefix the system (status of every system).
fn chain_line(c: &ChainRun, system: bool) -> String {
    let text = step_text(&c.run, true);
    if system {
        format!("{}: {text}", c.system)
    } else {
        text
    }
}

/// A step (`job #id status`, the root with its start; `job (not triggered)` when it did not
/// run) and, after `→`, the steps after it (in parentheses when there are several).
fn step_text(s: &ChainStep, root: bool) -> String {
    let mut head = match (s.execution, s.status) {
        (Some(id), Some(status)) => format!("{} #{id} {status}", s.job),
        _ => format!("{} ({})", s.job, s.not_run.unwrap_or("not run")),
    };
    if let (true, Some(at)) = (root, s.started_at) {
        head = format!("{head} {}", output::utc(at));
    }
    match s.children.as_slice() {
        [] => head,
        [one] => format!("{head} → {}", step_text(one, false)),
        many => format!(
            "{head} → ({})",
            many.iter()
                .map(|c| step_text(c, false))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The fleet's runners, one line each: where, how fresh its heartbeat, how loaded.
fn render_fleet(f: &Fleet) -> String {
    if f.runners.is_empty() {
        return "  no runner up".to_string();
    }
    output::table_in(
        2,
        &[
            Column::new("ID"),
            Column::new("HOST").fill(12),
            Column::new("PID"),
            Column::new("STATE"),
            Column::new("HEARTBEAT"),
            Column::new("RUNNING"),
            Column::new("LABELS").drop(1),
        ],
        f.runners.iter().map(|r| {
            vec![
                r.id.to_string(),
                r.host.clone(),
                r.pid.to_string(),
                r.state.to_string(),
                format!("{:.1} s ago", r.heartbeat_age_seconds),
                match r.max_concurrent {
                    Some(cap) => format!("{}/{cap}", r.running),
                    None => r.running.to_string(),
                },
                if r.labels.is_empty() {
                    "-".to_string()
                } else {
                    r.labels.join(",")
                },
            ]
        }),
    )
}

pub fn run(args: Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let store = ctx.store()?;
    let Some(every) = args.watch else {
        let s = collect(ctx, &store, args.all_systems)?;
        if ctx.global.json {
            output::json(&s)?;
        } else {
            output::text(&render(&s))?;
        }
        return Ok(ExitCode::Ok);
    };
    let tty = std::io::stdout().is_terminal();
    loop {
        let s = collect(ctx, &store, args.all_systems)?;
        if ctx.global.json {
            // One JSON document per line, for `jq` streams.
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, &s)?;
            writeln!(out)?;
            out.flush()?;
        } else {
            let mut out = std::io::stdout().lock();
            if tty {
                // Home the cursor and clear the screen, then draw.
                out.write_all(b"\x1b[H\x1b[2J")?;
            }
            out.write_all(render(&s).as_bytes())?;
            if !tty {
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
        std::thread::sleep(Duration::from_secs(every));
    }
}
