//! `cronmgr add NAME --schedule EXPR [...] [-- PROGRAM ARG...]`

use super::job_args::{self, JobArgs};
use super::Ctx;
use crate::invalid;
use crate::output;
use crate::store::Job;
use crate::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  cronmgr add nightly-backup --schedule '0 3 * * *' --category BACKUP -- /usr/bin/pg_dump -f /backup/db.sql app"
)]
pub struct Args {
    /// Job name, unique within its system
    pub name: String,
    #[command(flatten)]
    pub job: JobArgs,
    /// Create the job disabled
    #[arg(long)]
    pub disabled: bool,
}

pub fn run(args: Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    job_args::check_name(&args.name)?;
    if args.job.schedule.is_none() && args.job.after.is_empty() {
        invalid!("--schedule is required (e.g. --schedule '0 3 * * *'), unless the job runs only after others (--after JOB)");
    }
    if args.job.command.is_none() && args.job.argv.is_empty() {
        invalid!("nothing to run: give a program after `--` (cronmgr add NAME --schedule EXPR -- /path/to/program ARG...) or --command EXECUTOR --param KEY=VALUE");
    }
    // A job given parents and no schedule runs only when they trigger it (or on run-now).
    let mut job = Job::new(ctx.system(), &args.name, crate::schedule::NEVER, "shell");
    job.is_active = !args.disabled;
    args.job.apply(&mut job, false)?;
    crate::model::secrets::resolve(&mut job.params, None).map_err(crate::exit::Failure::usage)?;
    let store = ctx.store()?;
    let settings = store.settings(ctx.system())?;
    let now = ctx.now();
    job.next_run_at = job_args::validate(&job, &settings, ctx.config()?, now)?;
    let existing = store.jobs(&crate::store::JobFilter {
        system: Some(ctx.system().to_string()),
        ..Default::default()
    })?;
    super::chains::check(&existing, &[&job], &[], false)?;
    ctx.require_admin(&store, "add", &job.name, &[&job])?;
    let job = store.insert_job(&job, now, ctx.by("add"))?;
    crate::runner::nudge(&ctx.db_path());
    if ctx.global.json {
        output::json(&job.redacted())?;
    } else {
        let tz = job_args::effective_tz(&job, &settings)?;
        output::text(&format!(
            "added {} ({}), next run {}",
            job.name,
            job.schedule,
            output::opt_local(job.next_run_at, tz)
        ))?;
    }
    Ok(ExitCode::Ok)
}
