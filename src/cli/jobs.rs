//! `rm`, `enable`, `disable`, `list`.

use std::collections::HashMap;

use serde::Serialize;

use super::job_args;
use super::Ctx;
use crate::output::{self, Column};
use crate::schedule::Schedule;
use crate::store::{Job, JobFilter, Status};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct NameArgs {
    /// The job
    pub name: String,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only jobs of this category
    #[arg(long, short = 'c')]
    pub category: Option<String>,
    /// Only enabled jobs
    #[arg(long, conflicts_with = "inactive")]
    pub active: bool,
    /// Only disabled jobs
    #[arg(long)]
    pub inactive: bool,
    /// Jobs of every system, not only --system
    #[arg(long, short = 'A')]
    pub all_systems: bool,
}

pub fn rm(args: NameArgs, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let store = ctx.store()?;
    let job = store.job(ctx.system(), &args.name)?;
    let jobs = store.jobs(&JobFilter {
        system: Some(ctx.system().to_string()),
        ..Default::default()
    })?;
    let children: Vec<String> = (super::chains::children(&jobs, &job.name).into_iter())
        .map(|c| {
            c.rsplit_once(':')
                .map_or(c.clone(), |(name, _)| name.to_string())
        })
        .collect();
    if !children.is_empty() {
        crate::invalid!(
            "job {:?} cannot be removed: {} run{} after it (remove {} first, or edit {} --after none)",
            job.name,
            children.join(", "),
            if children.len() == 1 { "s" } else { "" },
            if children.len() == 1 { "it" } else { "them" },
            if children.len() == 1 { "it" } else { "each" },
        );
    }
    ctx.require_admin(&store, "rm", &job.name, &[&job])?;
    let job = store.delete_job(ctx.system(), &args.name, ctx.now(), ctx.by("rm"))?;
    crate::runner::nudge(&ctx.db_path());
    if ctx.global.json {
        output::json(&job.redacted())?;
    } else {
        output::text(&format!("removed {}", job.name))?;
    }
    Ok(ExitCode::Ok)
}

pub fn set_active(args: NameArgs, active: bool, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let store = ctx.store()?;
    let mut job = store.job(ctx.system(), &args.name)?;
    let settings = store.settings(ctx.system())?;
    let now = ctx.now();
    job.is_active = active;
    if active {
        // Enabling clears why it was disabled (and, in the store, resets the failure streak).
        job.disabled_reason = None;
    }
    // A job edited behind our back may no longer parse: say so rather than enabling it.
    let schedule = Schedule::parse_for(&job.schedule, &job.system, &job.name)?;
    let tz = job_args::effective_tz(&job, &settings)?;
    job.next_run_at = job_args::next_run(&job, &schedule, tz, now);
    let action = if active { "enable" } else { "disable" };
    if !active {
        ctx.require_admin(&store, action, &job.name, &[&job])?;
    }
    let job = store.update_job(&job, now, ctx.by(action))?;
    crate::runner::nudge(&ctx.db_path());
    if ctx.global.json {
        output::json(&job.redacted())?;
    } else if active {
        output::text(&format!(
            "enabled {}, next run {}",
            job.name,
            output::opt_local(job.next_run_at, tz)
        ))?;
    } else {
        output::text(&format!("disabled {}", job.name))?;
    }
    Ok(ExitCode::Ok)
}

/// A job as `list --json` prints it: every stored field (secrets redacted) plus its last status.
#[derive(Serialize)]
struct Listed {
    #[serde(flatten)]
    job: Job,
    last_status: Option<Status>,
}

pub fn list(args: ListArgs, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let store = ctx.store()?;
    let filter = JobFilter {
        system: (!args.all_systems).then(|| ctx.system().to_string()),
        category: args.category.clone(),
        active: match (args.active, args.inactive) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
    };
    let jobs = store.jobs(&filter)?;
    let last = store.last_statuses(filter.system.as_deref())?;
    if ctx.global.json {
        let listed: Vec<Listed> = jobs
            .iter()
            .map(|job| Listed {
                job: job.redacted(),
                last_status: last.get(&job.id).copied(),
            })
            .collect();
        output::json(&listed)?;
        return Ok(ExitCode::Ok);
    }
    if jobs.is_empty() {
        eprintln!("no jobs (add one with: cronmgr add NAME --schedule EXPR -- PROGRAM ARG...)");
        return Ok(ExitCode::Ok);
    }
    let mut settings = HashMap::new();
    let mut rows = Vec::new();
    for job in &jobs {
        if !settings.contains_key(&job.system) {
            settings.insert(job.system.clone(), store.settings(&job.system)?);
        }
        let tz = job_args::effective_tz(job, &settings[&job.system]).unwrap_or(chrono_tz::Tz::UTC);
        let mut row = Vec::new();
        if args.all_systems {
            row.push(job.system.clone());
        }
        row.extend([
            job.name.clone(),
            job.schedule.clone(),
            if job.is_active {
                output::opt_local(job.next_run_at, tz)
            } else {
                "-".into()
            },
            output::opt(last.get(&job.id)),
            job.category.clone().unwrap_or_else(|| "-".into()),
            job.priority.to_string(),
            if job.is_active { "yes" } else { "no" }.into(),
        ]);
        rows.push(row);
    }
    let mut columns = vec![];
    if args.all_systems {
        columns.push(Column::new("SYSTEM").shrink(8));
    }
    // On a narrow terminal PRI goes first, then ACTIVE (NEXT RUN is "-" for a disabled job).
    columns.extend([
        Column::new("NAME").fill(12),
        Column::new("SCHEDULE"),
        Column::new("NEXT RUN"),
        Column::new("LAST STATUS"),
        Column::new("CATEGORY").shrink(8).drop(3),
        Column::new("PRI").drop(1),
        Column::new("ACTIVE").drop(2),
    ]);
    output::text(&output::table(&columns, rows))?;
    Ok(ExitCode::Ok)
}
