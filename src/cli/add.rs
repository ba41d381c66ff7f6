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
    if args.job.schedule.is_none() {
        invalid!("--schedule is required (e.g. --schedule '0 3 * * *')");
    }
    if args.job.command.is_none() && args.job.argv.is_empty() {
        invalid!("nothing to run: give a program after `--` (cronmgr add NAME --schedule EXPR -- /path/to/program ARG...) or --command EXECUTOR --param KEY=VALUE");
    }
    let mut job = Job::new(ctx.system(), &args.name, "", "shell");
    job.is_active = !args.disabled;
    args.job.apply(&mut job, false)?;
    crate::model::secrets::resolve(&mut job.params, None).map_err(crate::exit::Failure::usage)?;
    let store = ctx.store()?;
    let settings = store.settings(ctx.system())?;
    let now = ctx.now();
    job.next_run_at = job_args::validate(&job, &settings, ctx.config()?, now)?;
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
